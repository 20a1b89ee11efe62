//! What each request field must be, as the description states it: the
//! same constants and vocabularies the validators read. Generated schemas
//! say a field is a string; these say which strings.
//!
//! Rules that hold across fields or against stored state (a period's end
//! after its start, a signature not in the future, a scope item the
//! predecessor version declared) are no schema's business: the service
//! answers them with `validation_failed` naming the field, and the fuzz's
//! hooks list them (`tests/fuzz/hooks.py`).

use super::shapes::*;
use crate::api::schema::{
    any_string, array, date, date_time, integer, matching, one_of, one_of_trimmed, or_null, text,
    text_or_blank, trimmed,
};
use serde_json::{json, Value};

/// One refinement: a property of a component schema, or a parameter of an
/// operation, and what it must be.
pub enum Target {
    Property(&'static str, &'static str),
    Parameter(&'static str, &'static str),
    /// A whole component, where its fields depend on each other.
    Component(&'static str),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Property(c, p) => write!(f, "{c}.{p}"),
            Target::Parameter(o, p) => write!(f, "{o}({p})"),
            Target::Component(c) => write!(f, "{c}"),
        }
    }
}

/// An identifier in a path: anything but a control character (a path
/// holding one is not found).
pub fn path_identifier() -> Value {
    matching(r"^[^\u0000-\u001f\u007f]+$")
}

/// Every refinement, in the order of the resources.
pub fn refinements(v: &Vocabulary) -> Vec<(Target, Value)> {
    use crate::api::{agreements, applications, consents, datasets, organizations, samples};
    use Target::{Component, Parameter, Property};
    let mut all = vec![
        // documents
        (Property("DraftRequest", "title_ja"), consent_text(true)),
        (Property("DraftRequest", "title_en"), consent_text(true)),
        (Property("DraftRequest", "body_ja"), consent_text(true)),
        (Property("DraftRequest", "body_en"), consent_text(true)),
        (
            Property("DraftItem", "key"),
            one_of(v.scope_items.iter().map(String::as_str)),
        ),
        (
            Property("DraftItem", "change"),
            one_of(crate::consent::document::ChangeKind::ALL.map(|c| c.as_str())),
        ),
        (Property("DraftItem", "label_ja"), consent_text(false)),
        (Property("DraftItem", "label_en"), consent_text(false)),
        (Property("DraftItem", "text_ja"), consent_text(false)),
        (Property("DraftItem", "text_en"), consent_text(false)),
        (Parameter("get_version", "family"), family()),
        (
            Parameter("get_version", "number"),
            integer(1, u32::MAX.into()),
        ),
        // consents
        (
            Property("GrantRequest", "local_patient_id"),
            local_patient_id(),
        ),
        (
            Property("GrantRequest", "document_version"),
            document_version(),
        ),
        (Property("GrantRequest", "decisions"), decisions()),
        (
            Property("ChangeRequest", "document_version"),
            document_version(),
        ),
        (Property("ChangeRequest", "decisions"), decisions()),
        (
            Property("WithdrawalRequest", "items"),
            or_null(array(scope_item_key(), 1, 64)),
        ),
        (
            Property("LookupRequest", "local_patient_id"),
            local_patient_id(),
        ),
        (
            Property("PatientStatusRequest", "majority_on"),
            or_null(date()),
        ),
        (
            Property("PatientStatusRequest", "deceased_on"),
            or_null(date()),
        ),
        (Parameter("read_consent", "as_of"), date_time()),
        (Parameter("reconsent_tasks", "family"), family()),
        (Parameter("reconsent_tasks", "after"), query_text()),
        (
            Parameter("reconsent_tasks", "limit"),
            integer(1, crate::app::reconsent::MAX_RECONSENT_PAGE),
        ),
        // samples
        (
            Property("SampleRequest", "hospital"),
            or_null(organization_name()),
        ),
        (
            Property("SampleRequest", "local_patient_id"),
            or_null(local_patient_id()),
        ),
        (
            Property("SampleRequest", "patient_ref"),
            or_null(patient_ref()),
        ),
        (
            Property("SampleRequest", "sample_ref"),
            text(samples::REFERENCE),
        ),
        (
            Property("SampleRequest", "test_order_ref"),
            or_null(text(samples::REFERENCE)),
        ),
        (
            Property("SampleRequest", "ccat_report_id"),
            or_null(text(samples::REFERENCE)),
        ),
        (
            Property("SampleRequest", "kind"),
            one_of(crate::genome::SampleKind::ALL.iter().map(|k| k.as_str())),
        ),
        (
            Property("SampleRequest", "assay"),
            one_of(crate::genome::Assay::ALL.iter().map(|a| a.as_str())),
        ),
        (
            Property("SampleRequest", "tumour_category"),
            or_null(one_of(
                crate::genome::TumourCategory::ALL
                    .iter()
                    .map(|c| c.as_str()),
            )),
        ),
        (
            Property("SampleRequest", "objects"),
            array(
                json!({"$ref": "#/components/schemas/ObjectInput"}),
                1,
                samples::MAX_OBJECTS,
            ),
        ),
        (
            Property("ObjectInput", "name"),
            matching("^[A-Za-z0-9._-]{1,128}$"),
        ),
        (
            Property("CorrectionRequest", "reason"),
            text(samples::CORRECTION_REASON),
        ),
        (
            Property("AuthorizationRequest", "center_org"),
            organization_name(),
        ),
        (Parameter("get_sample", "genome_id"), genome_id()),
        (Parameter("correct_object", "genome_id"), genome_id()),
        (
            Parameter("correct_object", "name"),
            matching("^[A-Za-z0-9._-]{1,128}$"),
        ),
        // recontact
        (Property("OpenRequest", "genome_id"), genome_id()),
        (Property("OpenRequest", "family"), family()),
        (
            Property("OpenRequest", "reason"),
            text(crate::api::recontact::REASON),
        ),
        (
            Property("OpenRequest", "on_behalf_of"),
            or_null(text(crate::api::recontact::ON_BEHALF_OF)),
        ),
        (
            Property("StepRequest", "note"),
            or_null(text_or_blank(crate::api::recontact::REASON)),
        ),
        (
            Parameter("list_requests", "state"),
            one_of(crate::consent::recontact::RecontactState::ALL.map(|s| s.as_str())),
        ),
        // enquiries
        (
            Property("EnquiryRequest", "kind"),
            one_of(crate::consent::enquiry::EnquiryKind::ALL.map(|k| k.as_str())),
        ),
        (
            Property("EnquiryRequest", "text"),
            text(crate::api::enquiries::MESSAGE),
        ),
        (
            Property("EnquiryRequest", "about_entry"),
            or_null(integer(0, i64::MAX)),
        ),
        (
            Property("EnquiryRequest", "about_family"),
            or_null(family()),
        ),
        (
            Property("AnswerRequest", "text"),
            text(crate::api::enquiries::MESSAGE),
        ),
        (
            Parameter("list_enquiries", "state"),
            one_of(crate::consent::enquiry::EnquiryState::ALL.map(|s| s.as_str())),
        ),
        // log
        (Parameter("inclusion", "index"), integer(0, i64::MAX)),
        (Parameter("inclusion", "size"), integer(0, i64::MAX)),
        (Parameter("consistency", "from"), integer(0, i64::MAX)),
        (Parameter("consistency", "to"), integer(0, i64::MAX)),
        (Parameter("audit_log", "org"), query_text()),
        (Parameter("audit_log", "actor"), query_text()),
        (
            Parameter("audit_log", "action"),
            one_of(crate::ledger::entry::LogAction::ALL.map(|a| a.as_str())),
        ),
        (Parameter("audit_log", "from"), date_time()),
        (Parameter("audit_log", "to"), date_time()),
        (
            Parameter("audit_log", "before"),
            integer(i64::MIN, i64::MAX),
        ),
        (
            Parameter("audit_log", "limit"),
            integer(1, crate::app::portal::MAX_LOG_PAGE),
        ),
        (Parameter("screening", "from"), date_time()),
        (Parameter("screening", "to"), date_time()),
        (Parameter("screening_reports", "before"), date_time()),
        (
            Parameter("screening_reports", "limit"),
            integer(1, crate::app::portal::MAX_LOG_PAGE),
        ),
        // portal
        (Property("EnrollRequest", "code"), any_string()),
        (Property("SignInRequest", "account_id"), any_string()),
        (Property("SignInRequest", "account_secret"), any_string()),
        (Property("PreferencesBody", "language"), language()),
        (
            Parameter("my_access_log", "before"),
            integer(i64::MIN, i64::MAX),
        ),
        (
            Parameter("my_access_log", "limit"),
            integer(1, crate::app::portal::MAX_LOG_PAGE),
        ),
        (Parameter("my_access_log", "lang"), language()),
        (Property("WebhookRequest", "url"), webhook_url()),
        // data access
        (
            Property("OrganizationRequest", "kind"),
            one_of(organizations::KINDS),
        ),
        (
            Property("OrganizationRequest", "country"),
            trimmed("[A-Za-z]{2}"),
        ),
        (
            Property("AttestationRequest", "training"),
            text(organizations::TRAINING),
        ),
        (
            Parameter("verify_organization", "org"),
            text(organizations::NAME),
        ),
        (
            Parameter("record_attestation", "org"),
            text(organizations::NAME),
        ),
        (
            Parameter("record_attestation", "subject"),
            text(organizations::NAME),
        ),
        (
            Property("DatasetRequest", "name"),
            text(crate::app::register::DATASET_NAME),
        ),
        (Property("DatasetRequest", "domain"), family()),
        (Property("DatasetRequest", "terms"), data_use_terms(v)),
        (
            Property("DatasetRequest", "portfolio"),
            text(crate::app::register::DATASET_PORTFOLIO),
        ),
        (
            Property("DatasetSamplesRequest", "samples"),
            array(
                json!({"$ref": "#/components/schemas/DatasetSample"}),
                1,
                datasets::MAX_SAMPLES_PER_CALL,
            ),
        ),
        (Property("DatasetSample", "genome_id"), genome_id()),
        (
            Property("DatasetSample", "diagnosis"),
            or_null(one_of(v.diseases.iter().map(String::as_str))),
        ),
        (
            Property("AgreementTextRequest", "body"),
            text(agreements::AGREEMENT_TEXT),
        ),
        (
            Property("AcceptanceRequest", "text_sha256"),
            trimmed(&hex(64)),
        ),
        (
            Property("SanctionRequest", "state"),
            one_of(crate::access::review::AgreementState::ALL.map(|s| s.as_str())),
        ),
        (
            Property("SanctionRequest", "reason"),
            text(agreements::SANCTION_REASON),
        ),
        (
            Parameter("agreement_text", "version"),
            integer(1, i32::MAX.into()),
        ),
        (Component("PurposeRequest"), purpose(v)),
        (
            Property("ApplicationRequest", "title"),
            text(applications::TITLE),
        ),
        (
            Property("ApplicationRequest", "datasets"),
            array(any_string(), 1, applications::MAX_DATASETS),
        ),
        (
            Property("ApplicationRequest", "members"),
            json!({"type": "array", "items": text(applications::MEMBER)}),
        ),
        (
            Property("ApplicationRequest", "ethics_ref"),
            text(applications::ETHICS_REF),
        ),
        (Property("Member", "org"), text(applications::MEMBER)),
        (Property("Member", "researcher"), text(applications::MEMBER)),
        (
            Parameter("list_applications", "state"),
            one_of(crate::access::review::ApplicationState::ALL.map(|s| s.as_str())),
        ),
        (
            Parameter("list_applications", "after"),
            matching(r"^[+-]?[0-9]{1,18}_[^\u0000-\u001f\u007f]+$"),
        ),
        (
            Parameter("list_applications", "limit"),
            integer(1, applications::MAX_APPLICATION_PAGE),
        ),
        (Component("VoteRequest"), vote()),
        (
            Property("ReleaseRequest", "audience"),
            one_of_trimmed(v.audiences.iter().map(String::as_str)),
        ),
        (Property("ResolveRequest", "handle"), any_string()),
        (
            Property("ResolveRequest", "after"),
            or_null(integer(i64::MIN, i64::MAX)),
        ),
        (
            Property("ResolveRequest", "limit"),
            or_null(integer(1, crate::app::releases::MAX_PAGE)),
        ),
        (Parameter("manifest", "after"), integer(i64::MIN, i64::MAX)),
        (
            Parameter("manifest", "limit"),
            integer(1, crate::app::releases::MAX_PAGE),
        ),
    ];
    for operation in [
        "hospital_webhook_deliveries",
        "my_webhook_deliveries",
        "recall_webhook_deliveries",
    ] {
        all.push((
            Parameter(operation, "state"),
            one_of(crate::db::notify::DeliveryState::ALL.map(|s| s.as_str())),
        ));
    }
    for component in ["GrantRequest", "ChangeRequest", "WithdrawalRequest"] {
        all.extend([
            (Property(component, "signer"), signer()),
            (
                Property(component, "explained_by"),
                text(consents::EXPLAINED_BY),
            ),
            (Property(component, "signed_at"), date_time()),
            (
                Property(component, "form_hash"),
                matching(&format!("^sha256:{}$", hex(64))),
            ),
        ]);
    }
    for component in ["ObjectInput", "CorrectionRequest"] {
        all.extend(
            object_location()
                .into_iter()
                .map(|(property, schema)| (Property(component, property), schema)),
        );
    }
    for operation in [
        "read_consent",
        "list_events",
        "export_fhir",
        "change_consent",
        "withdraw_consent",
        "issue_enrollment_code",
        "patient_samples",
        "update_patient_status",
    ] {
        all.push((Parameter(operation, "patient_ref"), patient_ref()));
    }
    for operation in ["create_draft", "update_draft", "publish_version"] {
        all.push((Parameter(operation, "family"), family()));
    }
    all.push((
        Parameter("revoke_center", "center_org"),
        organization_name(),
    ));
    for operation in [
        "read_consent",
        "list_events",
        "export_fhir",
        "change_consent",
        "withdraw_consent",
    ] {
        all.push((Parameter(operation, "family"), family()));
    }
    all
}
