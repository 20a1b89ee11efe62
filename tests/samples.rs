//! Genome samples, sequencing centres, key rotation and recontact, each on
//! SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::*;
use genomegate::pseudonym::genome_id::{IdKind, PrintedId};
use serde_json::{json, Value};

on_both_backends!(
    samples_register_replay_and_lookup,
    sequencing_centres_need_authorisation,
    bad_sample_input_writes_nothing,
    corrections_are_new_versions,
    patients_see_only_their_own_samples,
    rotation_keeps_old_ids_resolving,
    no_local_identifier_is_stored_in_plain_text,
    recontact_needs_two_different_approvers,
    recontact_refusals_write_nothing,
    tampered_vault_is_detected,
);

async fn setup(app: &TestApp) -> (String, String) {
    let version = app.publish("cancer", &first_draft()).await;
    let patient = app
        .consented_patient("hospital-a", "MRN-100", &version)
        .await;
    (version, patient)
}

async fn samples_register_replay_and_lookup(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, patient) = setup(&app).await;
    let staff = app.staff("hospital-a");
    let (s, sample) = app
        .register_sample(&staff, &sample_body("MRN-100", "SPEC-0001", "s1"))
        .await;
    assert_eq!(s, 201, "{sample}");
    let genome_id = sample["genome_id"].as_str().unwrap().to_owned();
    let parsed = PrintedId::parse(IdKind::Sample, &genome_id).unwrap();
    assert_eq!(parsed.version(), 1);
    assert!(genome_id.starts_with("GS1-"));
    let objects = sample["objects"].as_array().unwrap();
    assert_eq!(
        objects[0]["legal_class"], "identification_code",
        "a CRAM is sequence-level data"
    );
    assert_eq!(
        objects[1]["legal_class"], "identification_code",
        "a whole-genome VCF identifies too"
    );
    assert!(
        sample.get("patient_ref").is_none(),
        "samples never carry the patient pseudonym"
    );

    let (s, again) = app
        .register_sample(&staff, &sample_body("MRN-100", "SPEC-0001", "s1"))
        .await;
    assert_eq!(s, 200, "registration is idempotent");
    assert_eq!(again["genome_id"], sample["genome_id"]);
    assert_eq!(app.count("genome_samples"), 1);

    // A panel VCF is a derived result.
    let mut panel = sample_body("MRN-100", "SPEC-0002", "s2");
    panel["assay"] = json!("cgp_panel");
    panel["kind"] = json!("tumour");
    panel["tumour_category"] = json!("solid");
    panel["ccat_report_id"] = json!("CCAT-2026-00042");
    let (s, b) = app.register_sample(&staff, &panel).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["objects"][1]["legal_class"], "sensitive_personal");

    let (s, read) = app
        .get(&format!("/v1/samples/{genome_id}"), Some(&staff))
        .await;
    assert_eq!((s, &read["genome_id"]), (200, &json!(genome_id)));
    // Case and hyphen placement are forgiven.
    let (s, _) = app
        .get(
            &format!("/v1/samples/{}", genome_id.to_lowercase()),
            Some(&staff),
        )
        .await;
    assert_eq!(s, 200);

    let (s, lookup) = app
        .post(
            "/v1/patients/lookup",
            &staff,
            None,
            &json!({"local_patient_id": "MRN-100"}),
        )
        .await;
    assert_eq!(s, 200, "{lookup}");
    assert_eq!(lookup["patient_ref"], json!(patient));
    assert_eq!(lookup["samples"].as_array().unwrap().len(), 2);
    assert_eq!(lookup["consents"][0]["family"], "cancer");
    assert_eq!(lookup["consents"][0]["status"], "active");

    // Another hospital can neither read the sample nor tell it exists.
    let (s, b) = app
        .get(
            &format!("/v1/samples/{genome_id}"),
            Some(&app.staff("hospital-b")),
        )
        .await;
    assert_problem(s, &b, 404, "not_found");
}

async fn sequencing_centres_need_authorisation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (version, _) = setup(&app).await;
    app.consented_patient("hospital-b", "MRN-B1", &version)
        .await;
    let center = app.token(&["sequencing_center"], "seq-center-1");
    let mut body = sample_body("MRN-100", "SPEC-C1", "c1");
    body["hospital"] = json!("hospital-a");

    let (s, b) = app.register_sample(&center, &body).await;
    assert_problem(s, &b, 403, "forbidden");
    let staff = app.staff("hospital-a");
    let (s, b) = app
        .post(
            "/v1/sequencing-authorizations",
            &staff,
            None,
            &json!({"center_org": "seq-center-1"}),
        )
        .await;
    assert_eq!((s, &b["centers"]), (200, &json!(["seq-center-1"])), "{b}");

    let (s, b) = app.register_sample(&center, &body).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["registered_by_org"], "seq-center-1");
    assert!(!b.to_string().contains("patient_ref"));
    let genome_id = b["genome_id"].as_str().unwrap().to_owned();
    let (s, _) = app
        .get(&format!("/v1/samples/{genome_id}"), Some(&center))
        .await;
    assert_eq!(s, 200);

    // Hospital B never authorised the centre.
    let mut other = sample_body("MRN-B1", "SPEC-C2", "c2");
    other["hospital"] = json!("hospital-b");
    let (s, b) = app.register_sample(&center, &other).await;
    assert_problem(s, &b, 403, "forbidden");
    // Nor may hospital staff register for another hospital.
    let (s, b) = app.register_sample(&staff, &other).await;
    assert_problem(s, &b, 403, "forbidden");

    let resp = app
        .client
        .delete(app.url("/v1/sequencing-authorizations/seq-center-1"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let mut later = sample_body("MRN-100", "SPEC-C3", "c3");
    later["hospital"] = json!("hospital-a");
    let (s, b) = app.register_sample(&center, &later).await;
    assert_problem(s, &b, 403, "forbidden");
    let (s, b) = app
        .get(&format!("/v1/samples/{genome_id}"), Some(&center))
        .await;
    assert_problem(s, &b, 404, "not_found");
    assert_eq!(app.count("genome_samples"), 1);
}

async fn bad_sample_input_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, patient) = setup(&app).await;
    let staff = app.staff("hospital-a");
    let (_, first) = app
        .register_sample(&staff, &sample_body("MRN-100", "SPEC-1", "ok"))
        .await;
    let genome_id = first["genome_id"].as_str().unwrap().to_owned();
    let samples_before = app.count("genome_samples");
    let objects_before = app.count("genome_data_objects");

    // A wrong check character, and two swapped neighbours.
    let mut chars: Vec<char> = genome_id.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == '0' { '1' } else { '0' };
    let (s, b) = app
        .get(
            &format!("/v1/samples/{}", chars.iter().collect::<String>()),
            Some(&staff),
        )
        .await;
    assert_problem(s, &b, 422, "invalid_genome_id");
    assert_eq!(b["errors"][0]["field"], "genome_id");
    let mut swapped: Vec<char> = genome_id.chars().collect();
    let i = (4..swapped.len() - 1)
        .find(|i| swapped[*i] != swapped[i + 1] && swapped[*i] != '-' && swapped[i + 1] != '-')
        .unwrap();
    swapped.swap(i, i + 1);
    let (s, b) = app
        .get(
            &format!("/v1/samples/{}", swapped.iter().collect::<String>()),
            Some(&staff),
        )
        .await;
    assert_problem(s, &b, 422, "invalid_genome_id");

    // Unknown patient; another hospital's patient by pseudonym.
    let (s, b) = app
        .register_sample(&staff, &sample_body("MRN-NOBODY", "SPEC-2", "x2"))
        .await;
    assert_problem(s, &b, 422, "unknown_patient");
    assert_eq!(b["errors"][0]["field"], "local_patient_id");
    let mut by_ref = sample_body("unused", "SPEC-3", "x3");
    by_ref.as_object_mut().unwrap().remove("local_patient_id");
    by_ref["patient_ref"] = json!(patient);
    let (s, b) = app.register_sample(&app.staff("hospital-b"), &by_ref).await;
    assert_problem(s, &b, 422, "unknown_patient");

    // The same object again with another checksum.
    let mut changed = sample_body("MRN-100", "SPEC-1", "ok");
    changed["objects"][0]["sha256"] = json!("c".repeat(64));
    let (s, b) = app.register_sample(&staff, &changed).await;
    assert_problem(s, &b, 409, "object_checksum_conflict");
    // Another sample claiming an existing object's URI with other bytes.
    let mut thief = sample_body("MRN-100", "SPEC-4", "ok");
    thief["objects"][0]["sha256"] = json!("d".repeat(64));
    let (s, b) = app.register_sample(&staff, &thief).await;
    assert_problem(s, &b, 409, "object_checksum_conflict");
    // Same sample, other details.
    let mut different = sample_body("MRN-100", "SPEC-1", "ok");
    different["test_order_ref"] = json!("ORDER-2");
    let (s, b) = app.register_sample(&staff, &different).await;
    assert_problem(s, &b, 409, "sample_conflict");

    let mut invalid = sample_body("MRN-100", "SPEC-5", "x5");
    invalid["kind"] = json!("saliva");
    invalid["objects"][0]["sha256"] = json!("xyz");
    invalid["objects"][1]["format"] = json!("pdf");
    invalid["objects"][1]["uri"] = json!("ftp://somewhere");
    invalid["tumour_category"] = json!("solid");
    let (s, b) = app.register_sample(&staff, &invalid).await;
    assert_problem(s, &b, 422, "validation_failed");
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "kind",
        "objects[0].sha256",
        "objects[1].format",
        "objects[1].uri",
    ] {
        assert!(fields.contains(&f), "{f} in {b}");
    }
    assert_eq!(
        (
            app.count("genome_samples"),
            app.count("genome_data_objects")
        ),
        (samples_before, objects_before)
    );
}

async fn corrections_are_new_versions(backend: Backend) {
    use diesel::RunQueryDsl;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    setup(&app).await;
    let staff = app.staff("hospital-a");
    let (_, sample) = app
        .register_sample(&staff, &sample_body("MRN-100", "SPEC-1", "v1"))
        .await;
    let genome_id = sample["genome_id"].as_str().unwrap();
    let correction = json!({"uri": "s3://genome-store/v1/germline.realigned.cram", "size_bytes": 36_000_000_000i64,
        "sha256": "e".repeat(64), "format": "cram", "reason": "re-aligned to GRCh38 after a reference mix-up"});
    let path = format!("/v1/samples/{genome_id}/objects/germline.cram/versions");
    let (s, b) = app.post(&path, &staff, None, &correction).await;
    assert_eq!(s, 201, "{b}");
    let versions: Vec<&Value> = b["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["name"] == "germline.cram")
        .collect();
    assert_eq!(versions.len(), 2, "the old version stays");
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(
        versions[1]["correction_reason"],
        "re-aligned to GRCh38 after a reference mix-up"
    );
    let (s, _) = app.post(&path, &staff, None, &correction).await;
    assert_eq!(s, 200, "the same correction twice is one correction");
    let (s, b) = app
        .post(
            &format!("/v1/samples/{genome_id}/objects/no-such.cram/versions"),
            &staff,
            None,
            &correction,
        )
        .await;
    assert_problem(s, &b, 404, "not_found");

    let mut conn = app.raw_db();
    for sql in [
        "UPDATE genome_data_objects SET sha256 = 'f'",
        "DELETE FROM genome_data_objects",
        "UPDATE genome_samples SET kind = 'tumour'",
        "DELETE FROM genome_samples",
    ] {
        let err = diesel::sql_query(sql).execute(&mut conn).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(app.count("genome_data_objects"), 3);
}

async fn patients_see_only_their_own_samples(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (version, patient) = setup(&app).await;
    let other = app
        .consented_patient("hospital-a", "MRN-200", &version)
        .await;
    let staff = app.staff("hospital-a");
    app.register_sample(&staff, &sample_body("MRN-100", "SPEC-1", "p1"))
        .await;
    let token = app.patient_token(&patient);
    let (s, mine) = app
        .get(&format!("/v1/patients/{patient}/samples"), Some(&token))
        .await;
    assert_eq!(s, 200, "{mine}");
    let sample = &mine["samples"][0];
    assert_eq!(
        sample["what"]["en"],
        "The genetic information you were born with (from blood or saliva)"
    );
    assert!(sample["test"]["ja"].as_str().unwrap().contains("全ゲノム"));
    assert!(sample["data"][0]["explanation"]["en"]
        .as_str()
        .unwrap()
        .contains("never leaves the genome store"));
    assert!(
        !mine.to_string().contains("s3://"),
        "patients are not shown storage locations"
    );
    let (s, _) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&token),
        )
        .await;
    assert_eq!(s, 200, "a patient reads their own consent");

    for path in [
        format!("/v1/patients/{other}/samples"),
        format!("/v1/patients/{other}/consents/cancer"),
    ] {
        let (s, b) = app.get(&path, Some(&token)).await;
        assert_problem(s, &b, 404, "not_found");
    }
    let body = json!({"signer": {"kind": "patient"}, "explained_by": "self", "signed_at": now_rfc3339(), "form_hash": FORM_HASH});
    let (s, b) = app
        .post(
            &format!("/v1/patients/{patient}/consents/cancer/withdrawals"),
            &token,
            Some("p"),
            &body,
        )
        .await;
    assert_problem(s, &b, 403, "forbidden");
}

async fn rotation_keeps_old_ids_resolving(backend: Backend) {
    use genomegate::pseudonym::keyring::{KeyDomain, Keyring};
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let (version, patient) = setup(&app).await;
    let staff = app.staff("hospital-a");
    let (_, old) = app
        .register_sample(&staff, &sample_body("MRN-100", "SPEC-OLD", "r1"))
        .await;
    let old_id = old["genome_id"].as_str().unwrap().to_owned();
    for domain in [KeyDomain::Sample, KeyDomain::Patient] {
        assert_eq!(
            Keyring::rotate_file(&app.config.keys.file, domain, chrono::Utc::now()).unwrap(),
            2
        );
    }
    app.restart().await;
    let staff = app.staff("hospital-a");

    let (s, again) = app
        .register_sample(&staff, &sample_body("MRN-100", "SPEC-OLD", "r1"))
        .await;
    assert_eq!(
        (s, again["genome_id"].as_str()),
        (200, Some(old_id.as_str())),
        "the old sample keeps its ID"
    );
    let (s, new) = app
        .register_sample(&staff, &sample_body("MRN-100", "SPEC-NEW", "r2"))
        .await;
    assert_eq!(s, 201, "{new}");
    assert!(
        new["genome_id"].as_str().unwrap().starts_with("GS2-"),
        "{new}"
    );
    let (s, _) = app
        .get(&format!("/v1/samples/{old_id}"), Some(&staff))
        .await;
    assert_eq!(s, 200, "old IDs still resolve");

    // The patient keeps their pseudonym across a patient-key rotation.
    let (_, lookup) = app
        .post(
            "/v1/patients/lookup",
            &staff,
            None,
            &json!({"local_patient_id": "MRN-100"}),
        )
        .await;
    assert_eq!(lookup["patient_ref"], json!(patient));
    let (s, event) = app
        .grant(
            "hospital-a",
            "MRN-100",
            &version,
            all_permit(),
            "after-rotation",
        )
        .await;
    assert_eq!(
        (s, event["patient_ref"].as_str()),
        (201, Some(patient.as_str()))
    );
    // A new patient gets a pseudonym under the new key.
    let (_, fresh) = app
        .grant("hospital-a", "MRN-NEW", &version, all_permit(), "fresh")
        .await;
    assert_ne!(fresh["patient_ref"], json!(patient));
    assert_eq!(app.count("patients"), 2);
}

async fn no_local_identifier_is_stored_in_plain_text(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    setup(&app).await;
    let staff = app.staff("hospital-a");
    app.register_sample(&staff, &sample_body("MRN-100", "SPEC-SECRET-77", "n1"))
        .await;
    let dump = match backend {
        Backend::Sqlite => {
            // Checkpoint the WAL so every page is in the main file, then read raw bytes.
            use diesel::RunQueryDsl;
            diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut app.raw_db())
                .unwrap();
            let path = app.dir.path().join("genomegate.db");
            String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
        }
        Backend::Postgres => {
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                t: String,
            }
            use diesel::RunQueryDsl;
            let mut conn = app.raw_db();
            let mut all = String::new();
            for table in [
                "patients",
                "consent_events",
                "genome_samples",
                "genome_data_objects",
                "identity_vault",
            ] {
                let rows: Vec<Row> =
                    diesel::sql_query(format!("SELECT to_jsonb(x)::text AS t FROM {table} x"))
                        .load(&mut conn)
                        .unwrap();
                all.extend(rows.into_iter().map(|r| r.t));
            }
            assert!(all.contains("genome-store"), "the dump has content");
            all
        }
    };
    for secret in ["MRN-100", "SPEC-SECRET-77"] {
        assert!(!dump.contains(secret), "`{secret}` is stored in plain text");
    }
    assert_eq!(
        app.count("identity_vault"),
        1,
        "the local ID is sealed, not dropped"
    );
}

async fn recontact_setup(app: &TestApp) -> (String, String) {
    let (_, patient) = setup(app).await;
    let (_, sample) = app
        .register_sample(
            &app.staff("hospital-a"),
            &sample_body("MRN-100", "SPEC-1", "rc"),
        )
        .await;
    (patient, sample["genome_id"].as_str().unwrap().to_owned())
}

/// Opens a recontact request for `genome_id` as the review committee.
async fn open_recontact(app: &TestApp, genome_id: &str) -> (u16, Value) {
    let committee = common::token_for(&["review_committee"], "committee", "chair-1");
    app.post(
        "/v1/recontact-requests",
        &committee,
        None,
        &open_body(genome_id),
    )
    .await
}

fn open_body(genome_id: &str) -> Value {
    json!({"genome_id": genome_id, "family": "cancer", "reason": "A pathogenic BRCA2 variant was reclassified; the study asks to offer counselling.", "on_behalf_of": "study-BRCA-2026"})
}

async fn recontact_needs_two_different_approvers(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, genome_id) = recontact_setup(&app).await;
    let (s, request) = open_recontact(&app, &genome_id).await;
    assert_eq!(s, 201, "{request}");
    assert_eq!(request["state"], "pending");
    let id = request["id"].as_str().unwrap().to_owned();
    let officer_a = common::token_for(&["governance"], "governance-body", "officer-a");
    let officer_b = common::token_for(&["governance"], "governance-body", "officer-b");
    let hospital = app.staff("hospital-a");

    let (s, b) = app
        .post(
            &format!("/v1/recontact-requests/{id}/approvals"),
            &officer_a,
            None,
            &json!({"note": "reason is sound"}),
        )
        .await;
    assert_eq!(
        (s, &b["approvals"], &b["state"]),
        (200, &json!(1), &json!("pending")),
        "{b}"
    );
    let (s, b) = app
        .post(
            &format!("/v1/recontact-requests/{id}/unseal"),
            &hospital,
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &b, 409, "insufficient_approvals");
    let (s, b) = app
        .post(
            &format!("/v1/recontact-requests/{id}/approvals"),
            &officer_a,
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &b, 409, "duplicate_approver");
    let (s, b) = app
        .post(
            &format!("/v1/recontact-requests/{id}/approvals"),
            &officer_b,
            None,
            &json!({}),
        )
        .await;
    assert_eq!((s, &b["state"]), (200, &json!("approved")), "{b}");

    let (s, b) = app
        .post(
            &format!("/v1/recontact-requests/{id}/unseal"),
            &app.staff("hospital-b"),
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &b, 404, "not_found");
    let (s, b) = app
        .post(
            &format!("/v1/recontact-requests/{id}/unseal"),
            &officer_a,
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &b, 403, "forbidden");
    let (s, released) = app
        .post(
            &format!("/v1/recontact-requests/{id}/unseal"),
            &hospital,
            None,
            &json!({}),
        )
        .await;
    assert_eq!(s, 200, "{released}");
    assert_eq!(released["local_patient_id"], "MRN-100");
    let (s, b) = app
        .post(
            &format!("/v1/recontact-requests/{id}/unseal"),
            &hospital,
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &b, 409, "recontact_closed");

    let (_, history) = app
        .get(&format!("/v1/recontact-requests/{id}"), Some(&hospital))
        .await;
    let steps: Vec<&str> = history["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["opened", "approved", "approved", "unsealed"],
        "every step is recorded"
    );
    assert!(
        !history.to_string().contains("MRN-100"),
        "the history never holds the local ID"
    );
}

async fn recontact_refusals_write_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let mut no_recontact = all_permit();
    no_recontact["recontact"] = json!("deny");
    let (_, event) = app
        .grant("hospital-a", "MRN-300", &version, no_recontact, "g300")
        .await;
    assert!(event["patient_ref"].is_string());
    let (s, sample) = app
        .register_sample(
            &app.staff("hospital-a"),
            &sample_body("MRN-300", "SPEC-300", "nr"),
        )
        .await;
    assert_eq!(s, 201);
    let genome_id = sample["genome_id"].as_str().unwrap();

    let researcher = common::token_for(&["researcher"], "university-x", "dr-who");
    let (s, b) = app
        .post(
            "/v1/recontact-requests",
            &researcher,
            None,
            &open_body(genome_id),
        )
        .await;
    assert_problem(s, &b, 403, "recontact_requires_committee");
    let committee = common::token_for(&["review_committee"], "committee", "chair-1");
    let (s, b) = app
        .post(
            "/v1/recontact-requests",
            &committee,
            None,
            &open_body(genome_id),
        )
        .await;
    assert_problem(s, &b, 409, "recontact_not_permitted");
    // A reason is plain text, one rule with every free-text field: no bell,
    // no terminal escape.
    for reason in ["ring \u{7}", "red \u{1b}[31m text"] {
        let mut body = open_body(genome_id);
        body["reason"] = json!(reason);
        let (s, b) = app
            .post("/v1/recontact-requests", &committee, None, &body)
            .await;
        assert_problem(s, &b, 422, "validation_failed");
        assert_eq!(b["errors"][0]["field"], "reason", "{b}");
    }
    let (s, b) = app
        .post(
            "/v1/recontact-requests",
            &app.staff("hospital-a"),
            None,
            &open_body(genome_id),
        )
        .await;
    assert_problem(s, &b, 403, "forbidden");
    assert_eq!(
        (
            app.count("recontact_requests"),
            app.count("recontact_steps")
        ),
        (0, 0)
    );

    // Consent withdrawn after opening: approval is refused, nothing written.
    let (_, patient_ref) = (
        0,
        app.consented_patient("hospital-a", "MRN-301", &version)
            .await,
    );
    let (_, s301) = app
        .register_sample(
            &app.staff("hospital-a"),
            &sample_body("MRN-301", "SPEC-301", "w"),
        )
        .await;
    let (s, request) = app
        .post(
            "/v1/recontact-requests",
            &committee,
            None,
            &open_body(s301["genome_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(s, 201);
    let withdrawal = json!({"items": ["recontact"], "signer": {"kind": "patient"}, "explained_by": "n", "signed_at": now_rfc3339(), "form_hash": FORM_HASH});
    let (s, _) = app
        .post(
            &format!("/v1/patients/{patient_ref}/consents/cancer/withdrawals"),
            &app.staff("hospital-a"),
            Some("w301"),
            &withdrawal,
        )
        .await;
    assert_eq!(s, 201);
    let steps_before = app.count("recontact_steps");
    let officer = common::token_for(&["governance"], "governance-body", "officer-a");
    let (s, b) = app
        .post(
            &format!(
                "/v1/recontact-requests/{}/approvals",
                request["id"].as_str().unwrap()
            ),
            &officer,
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &b, 409, "recontact_not_permitted");
    assert_eq!(app.count("recontact_steps"), steps_before);
}

async fn tampered_vault_is_detected(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, genome_id) = recontact_setup(&app).await;
    let (_, request) = open_recontact(&app, &genome_id).await;
    let id = request["id"].as_str().unwrap().to_owned();
    for officer in ["officer-a", "officer-b"] {
        let token = common::token_for(&["governance"], "governance-body", officer);
        let (s, _) = app
            .post(
                &format!("/v1/recontact-requests/{id}/approvals"),
                &token,
                None,
                &json!({}),
            )
            .await;
        assert_eq!(s, 200);
    }
    // Flip one bit of the stored ciphertext, as an attacker with database access would.
    {
        use diesel::prelude::*;
        use genomegate::db::schema::identity_vault as vault;
        let mut conn = app.raw_db();
        genomegate::db_run!(&mut conn, c => {
            let mut ciphertext: Vec<u8> = vault::table.select(vault::ciphertext).first(c).unwrap();
            ciphertext[0] ^= 0x01;
            let changed = diesel::update(vault::table).set(vault::ciphertext.eq(ciphertext)).execute(c).unwrap();
            assert_eq!(changed, 1);
        });
    }
    let steps_before = app.count("recontact_steps");
    let (s, b) = app
        .post(
            &format!("/v1/recontact-requests/{id}/unseal"),
            &app.staff("hospital-a"),
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &b, 500, "vault_integrity_failure");
    assert!(!b.to_string().contains("MRN"), "{b}");
    assert_eq!(
        app.count("recontact_steps"),
        steps_before,
        "nothing written"
    );
    let (_, after) = app
        .get(
            &format!("/v1/recontact-requests/{id}"),
            Some(&app.staff("hospital-a")),
        )
        .await;
    assert_eq!(after["state"], "approved");
}
