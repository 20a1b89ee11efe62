//! Table definitions shared by both backends. Written by hand to match
//! `migrations/{sqlite,postgres}`; the schema tests run every migration on
//! both engines and exercise every column.

diesel::table! {
    document_versions (id) {
        id -> Text,
        family -> Text,
        version_number -> Integer,
        status -> Text,
        title_ja -> Text,
        title_en -> Text,
        body_ja -> Text,
        body_en -> Text,
        content_hash -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        effective_from -> Nullable<Timestamp>,
        effective_to -> Nullable<Timestamp>,
    }
}

diesel::table! {
    document_scope_items (version_id, item_key) {
        version_id -> Text,
        item_key -> Text,
        position -> Integer,
        change_kind -> Text,
        label_ja -> Text,
        label_en -> Text,
        text_ja -> Text,
        text_en -> Text,
    }
}

diesel::table! {
    patients (pseudonym) {
        pseudonym -> Text,
        hospital_org -> Text,
        majority_on -> Nullable<Date>,
        deceased_on -> Nullable<Date>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    consent_events (id) {
        id -> Text,
        patient_pseudonym -> Text,
        family -> Text,
        document_version_id -> Text,
        kind -> Text,
        signer_kind -> Text,
        proxy_relationship -> Nullable<Text>,
        explained_by -> Text,
        signed_at -> Timestamp,
        recorded_at -> Timestamp,
        form_hash -> Text,
        hospital_org -> Text,
        recorded_by -> Text,
        idempotency_key -> Text,
        request_hash -> Text,
        decisions -> Text,
    }
}

diesel::table! {
    sequencing_authorizations (hospital_org, center_org) {
        hospital_org -> Text,
        center_org -> Text,
        granted_by -> Text,
        granted_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    genome_samples (genome_id) {
        genome_id -> Text,
        key_version -> Integer,
        patient_pseudonym -> Text,
        hospital_org -> Text,
        registered_by_org -> Text,
        registered_by -> Text,
        kind -> Text,
        assay -> Text,
        test_order_ref -> Nullable<Text>,
        ccat_report_id -> Nullable<Text>,
        tumour_category -> Nullable<Text>,
        request_hash -> Text,
        registered_at -> Timestamp,
    }
}

diesel::table! {
    genome_data_objects (genome_id, name, version) {
        genome_id -> Text,
        name -> Text,
        version -> Integer,
        uri -> Text,
        size_bytes -> BigInt,
        sha256 -> Text,
        format -> Text,
        legal_class -> Text,
        correction_reason -> Nullable<Text>,
        registered_by -> Text,
        registered_at -> Timestamp,
    }
}

diesel::table! {
    identity_vault (patient_pseudonym) {
        patient_pseudonym -> Text,
        hospital_org -> Text,
        key_version -> Integer,
        nonce -> Binary,
        ciphertext -> Binary,
        sealed_at -> Timestamp,
    }
}

diesel::table! {
    recontact_requests (id) {
        id -> Text,
        patient_pseudonym -> Text,
        hospital_org -> Text,
        family -> Text,
        genome_id -> Text,
        reason -> Text,
        on_behalf_of -> Nullable<Text>,
        state -> Text,
        opened_at -> Timestamp,
    }
}

diesel::table! {
    recontact_steps (request_id, seq) {
        request_id -> Text,
        seq -> Integer,
        step -> Text,
        actor -> Text,
        actor_org -> Text,
        note -> Nullable<Text>,
        at -> Timestamp,
    }
}

diesel::table! {
    patient_enquiries (id) {
        id -> Text,
        patient_pseudonym -> Text,
        hospital_org -> Text,
        kind -> Text,
        state -> Text,
        about_entry -> Nullable<BigInt>,
        about_family -> Nullable<Text>,
        sent_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    enquiry_messages (enquiry_id, seq) {
        enquiry_id -> Text,
        seq -> Integer,
        author -> Text,
        author_org -> Text,
        author_user -> Text,
        key_version -> Integer,
        nonce -> Binary,
        ciphertext -> Binary,
        at -> Timestamp,
    }
}

diesel::table! {
    access_log_entries (seq) {
        seq -> BigInt,
        entry -> Binary,
        recorded_at -> Timestamp,
        patient_pseudonym -> Text,
        actor_org -> Text,
        actor_user -> Text,
        action -> Text,
    }
}

diesel::table! {
    access_log_leaves (idx) {
        idx -> BigInt,
        seq -> BigInt,
    }
}

diesel::table! {
    access_log_nodes (level, idx) {
        level -> SmallInt,
        idx -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    access_log_checkpoints (size) {
        size -> BigInt,
        root -> Binary,
        note -> Text,
        signed_at -> Timestamp,
    }
}

diesel::table! {
    notification_outbox (seq) {
        seq -> BigInt,
        patient_pseudonym -> Text,
    }
}

diesel::table! {
    notification_endpoints (id) {
        id -> Text,
        kind -> Text,
        patient_pseudonym -> Nullable<Text>,
        hospital_org -> Nullable<Text>,
        target -> Text,
        key_version -> Nullable<Integer>,
        nonce -> Nullable<Binary>,
        ciphertext -> Nullable<Binary>,
        created_at -> Timestamp,
        disabled_at -> Nullable<Timestamp>,
        application_id -> Nullable<Text>,
        email_kinds -> Nullable<Text>,
    }
}

diesel::table! {
    notification_deliveries (endpoint_id, idx) {
        endpoint_id -> Text,
        idx -> BigInt,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    enrollment_codes (code_hash) {
        code_hash -> Text,
        patient_pseudonym -> Text,
        issued_by -> Text,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    patient_accounts (id) {
        id -> Text,
        patient_pseudonym -> Text,
        secret_hash -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        recovery_hash -> Nullable<Text>,
    }
}

diesel::table! {
    portal_sessions (id_hash) {
        id_hash -> Text,
        account_id -> Nullable<Text>,
        csrf_token -> Text,
        ceremony -> Nullable<Text>,
        ceremony_kind -> Nullable<Text>,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    portal_passkeys (credential_id) {
        credential_id -> Text,
        account_id -> Text,
        passkey -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    patient_preferences (patient_pseudonym) {
        patient_pseudonym -> Text,
        language -> Text,
        hospital_app -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    screening_reports (period_start) {
        period_start -> Timestamp,
        period_end -> Timestamp,
        generated_at -> Timestamp,
        rules_version -> Text,
        entries_screened -> BigInt,
        flagged -> BigInt,
        unusual_actors -> BigInt,
        report -> Text,
    }
}

diesel::table! {
    organizations (org) {
        org -> Text,
        kind -> Text,
        country -> Text,
        verified_by -> Text,
        verified_at -> Timestamp,
    }
}

diesel::table! {
    researcher_attestations (org, subject) {
        org -> Text,
        subject -> Text,
        training -> Text,
        completed_on -> Date,
        expires_on -> Date,
        recorded_by -> Text,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    datasets (id) {
        id -> Text,
        name -> Text,
        domain -> Text,
        terms -> Text,
        portfolio -> Text,
        created_by -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    dataset_samples (dataset_id, genome_id) {
        dataset_id -> Text,
        genome_id -> Text,
        diagnosis -> Nullable<Text>,
        added_at -> Timestamp,
        patient_pseudonym -> Text,
    }
}

diesel::table! {
    applications (id) {
        id -> Text,
        org -> Text,
        submitted_by -> Text,
        declaration -> Text,
        commercial -> Bool,
        matching -> Text,
        state -> Text,
        conditions -> Text,
        submitted_at -> Timestamp,
        decided_at -> Nullable<Timestamp>,
        access_started_at -> Nullable<Timestamp>,
        idempotency_key -> Nullable<Text>,
        request_hash -> Nullable<Text>,
    }
}

diesel::table! {
    application_transitions (application_id, seq) {
        application_id -> Text,
        seq -> Integer,
        state -> Text,
        actor -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    review_votes (application_id, voter) {
        application_id -> Text,
        voter -> Text,
        vote -> Text,
        voted_at -> Timestamp,
    }
}

diesel::table! {
    agreement_texts (version) {
        version -> Integer,
        body -> Text,
        sha256 -> Text,
        published_by -> Text,
        published_at -> Timestamp,
    }
}

diesel::table! {
    agreements (id) {
        id -> Text,
        application_id -> Text,
        state -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
        state_reason -> Nullable<Text>,
        state_changed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    agreement_transitions (agreement_id, seq) {
        agreement_id -> Text,
        seq -> Integer,
        state -> Text,
        reason -> Text,
        actor -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    agreement_acceptances (agreement_id, member_org, member, text_version) {
        agreement_id -> Text,
        member -> Text,
        text_version -> Integer,
        text_sha256 -> Text,
        accepted_at -> Timestamp,
        member_org -> Text,
    }
}

diesel::table! {
    application_partner_orgs (application_id, org) {
        application_id -> Text,
        org -> Text,
    }
}

diesel::table! {
    releases (id) {
        id -> Text,
        application_id -> Text,
        agreement_id -> Text,
        released_by -> Text,
        audience -> Text,
        released_at -> Timestamp,
        handle_expires_at -> Timestamp,
        included -> BigInt,
        excluded -> BigInt,
        provenance -> Text,
        excluded_by_reason -> Nullable<Text>,
    }
}

diesel::table! {
    release_samples (release_id, position) {
        release_id -> Text,
        position -> BigInt,
        dataset_id -> Text,
        genome_id -> Text,
        patient_pseudonym -> Text,
        project_sample_id -> Text,
        included -> Bool,
        reason -> Text,
        consent_version -> Nullable<Integer>,
    }
}

diesel::table! {
    recall_notices (id) {
        id -> Text,
        application_id -> Text,
        release_id -> Text,
        project_sample_id -> Text,
        reason -> Text,
        created_at -> Timestamp,
        seq -> Nullable<BigInt>,
    }
}

diesel::joinable!(genome_data_objects -> genome_samples (genome_id));
diesel::joinable!(dataset_samples -> genome_samples (genome_id));
diesel::joinable!(dataset_samples -> datasets (dataset_id));
diesel::joinable!(genome_samples -> patients (patient_pseudonym));
diesel::joinable!(recontact_steps -> recontact_requests (request_id));
diesel::joinable!(enquiry_messages -> patient_enquiries (enquiry_id));
diesel::joinable!(patient_enquiries -> patients (patient_pseudonym));
diesel::joinable!(document_scope_items -> document_versions (version_id));
diesel::joinable!(consent_events -> patients (patient_pseudonym));
diesel::joinable!(access_log_leaves -> access_log_entries (seq));
diesel::joinable!(patient_preferences -> patients (patient_pseudonym));
diesel::joinable!(notification_deliveries -> notification_endpoints (endpoint_id));

diesel::table! {
    sweep_marks (name) {
        name -> Text,
        through -> Date,
    }
}

diesel::table! {
    visa_issuances (jti) {
        jti -> Text,
        application_id -> Text,
        visa_type -> Text,
        member_org -> Text,
        member -> Text,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    idempotent_answers (org, key_tag) {
        org -> Text,
        key_tag -> Text,
        operation -> Text,
        request_hash -> Text,
        key_version -> Integer,
        nonce -> Binary,
        ciphertext -> Binary,
        answered_at -> Timestamp,
    }
}

diesel::table! {
    readiness_probe (id) {
        id -> Integer,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    document_versions,
    document_scope_items,
    patients,
    consent_events,
    sequencing_authorizations,
    genome_samples,
    genome_data_objects,
    identity_vault,
    recontact_requests,
    recontact_steps,
    patient_enquiries,
    enquiry_messages,
    access_log_entries,
    access_log_leaves,
    access_log_nodes,
    access_log_checkpoints,
    notification_outbox,
    notification_endpoints,
    notification_deliveries,
    enrollment_codes,
    patient_accounts,
    portal_sessions,
    portal_passkeys,
    patient_preferences,
    screening_reports,
    organizations,
    researcher_attestations,
    datasets,
    dataset_samples,
    applications,
    application_transitions,
    review_votes,
    agreement_texts,
    agreements,
    agreement_transitions,
    agreement_acceptances,
    application_partner_orgs,
    releases,
    release_samples,
    recall_notices,
    sweep_marks,
    visa_issuances,
);
