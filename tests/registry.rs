//! End-to-end tests of the consent registry, each on SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::*;
use serde_json::{json, Value};

on_both_backends!(
    document_lifecycle,
    consent_round_trip_and_fhir,
    idempotency_replays_and_refuses_reuse,
    concurrent_retries_write_one_event,
    bad_input_is_refused_and_writes_nothing,
    other_hospitals_patients_are_invisible,
    material_changes_need_reconsent_editorial_ones_do_not,
    withdrawal_and_as_of_queries,
    minors_and_deceased_patients,
    a_proxy_consent_recorded_after_majority_is_told_at_once,
    auditors_are_read_only,
    the_database_refuses_rewrites,
    decisions_survive_the_migration_that_inlined_them,
    a_new_version_reaches_consent_reads_on_every_instance,
);

async fn document_lifecycle(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let staff = app.staff("hospital-a");
    // Only the governance body drafts.
    let (s, b) = app
        .post(
            "/v1/documents/cancer/versions",
            &staff,
            None,
            &first_draft(),
        )
        .await;
    assert_problem(s, &b, 403, "forbidden");
    let (s, b) = app
        .send_json(
            reqwest::Method::POST,
            "/v1/documents/cancer/versions",
            None,
            None,
            &first_draft(),
        )
        .await;
    assert_problem(s, &b, 401, "missing_token");

    let (s, created) = app
        .post(
            "/v1/documents/cancer/versions",
            &app.admin(),
            None,
            &first_draft(),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let draft_view = created;
    assert_eq!(draft_view["id"], "cancer-v1");
    assert_eq!(draft_view["status"], "draft");
    assert!(draft_view["content_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        draft_view["items"][2]["duo"]["when_denied"],
        json!(["DUO:0000046"])
    );

    // Drafts are invisible to the public and to hospitals.
    let (s, _) = app.get("/v1/documents/cancer/versions/1", None).await;
    assert_eq!(s, 404);
    let (s, _) = app
        .get("/v1/documents/cancer/versions/1", Some(&staff))
        .await;
    assert_eq!(s, 404);
    let (s, list) = app.get("/v1/documents", None).await;
    assert_eq!((s, list["versions"].as_array().unwrap().len()), (200, 0));

    // A second draft waits for the first.
    let (s, b) = app
        .post(
            "/v1/documents/cancer/versions",
            &app.admin(),
            None,
            &first_draft(),
        )
        .await;
    assert_problem(s, &b, 409, "version_conflict");

    let (s, published) = app
        .post(
            "/v1/documents/cancer/versions/1/publish",
            &app.admin(),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(s, 200, "{published}");
    assert_eq!(published["status"], "active");
    assert!(published["effective_from"].is_string());
    assert_eq!(
        published["content_hash"], draft_view["content_hash"],
        "publishing does not change the content"
    );

    // Published: public, immutable.
    let (s, public) = app.get("/v1/documents/cancer/versions/1", None).await;
    assert_eq!((s, &public["title_ja"]), (200, &json!("統一同意説明文書")));
    let (s, b) = app
        .send_json(
            reqwest::Method::PUT,
            "/v1/documents/cancer/versions/1",
            Some(&app.admin()),
            None,
            &first_draft(),
        )
        .await;
    assert_problem(s, &b, 409, "version_immutable");
    let (s, b) = app
        .post(
            "/v1/documents/cancer/versions/1/publish",
            &app.admin(),
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &b, 409, "version_immutable");

    // v2 must declare every v1 item; "unchanged" must really be unchanged.
    let disguised = draft(vec![
        item("ccat_registration", "unchanged", "Register with C-CAT"),
        item(
            "secondary_use_academic",
            "unchanged",
            "Academic use, now including AI training",
        ),
        item("secondary_use_industry", "unchanged", "Industry use"),
    ]);
    let (s, b) = app
        .post(
            "/v1/documents/cancer/versions",
            &app.admin(),
            None,
            &disguised,
        )
        .await;
    assert_problem(s, &b, 422, "validation_failed");
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"items[1].change"), "{b}");
    assert!(fields.contains(&"items"), "recontact undeclared: {b}");

    let v2 = draft(vec![
        item("ccat_registration", "unchanged", "Register with C-CAT"),
        item("secondary_use_academic", "editorial", "Academic use."),
        item(
            "secondary_use_industry",
            "material",
            "Industry use including overseas affiliates",
        ),
        item("recontact", "removed", ""),
    ]);
    let (s, b) = app
        .post("/v1/documents/cancer/versions", &app.admin(), None, &v2)
        .await;
    assert_eq!(s, 201, "{b}");
    // Drafts can be edited until published.
    let (s, b) = app
        .send_json(
            reqwest::Method::PUT,
            "/v1/documents/cancer/versions/2",
            Some(&app.admin()),
            None,
            &v2,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app
        .post(
            "/v1/documents/cancer/versions/2/publish",
            &app.admin(),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v1) = app.get("/v1/documents/cancer/versions/1", None).await;
    assert_eq!(v1["status"], "retired");
    assert!(v1["effective_to"].is_string());
    let (_, list) = app.get("/v1/documents", None).await;
    assert_eq!(list["versions"].as_array().unwrap().len(), 2);

    // Unknown families and versions are plain 404s.
    let (s, b) = app.get("/v1/documents/lung/versions/1", None).await;
    assert_problem(s, &b, 404, "not_found");
}

async fn consent_round_trip_and_fhir(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let mut decisions = all_permit();
    decisions["secondary_use_industry"] = json!("deny");
    let mut body = grant_body("MRN-0001", &version, decisions);
    body["signer"] = json!({"kind": "proxy", "relationship": "parent"});
    let (s, event) = app
        .post("/v1/consents", &app.staff("hospital-a"), Some("k-1"), &body)
        .await;
    assert_eq!(s, 201, "{event}");
    let patient_ref = event["patient_ref"].as_str().unwrap().to_owned();
    assert_eq!(patient_ref.len(), 64);
    assert!(
        !event.to_string().contains("MRN-0001"),
        "the local ID never comes back"
    );
    assert_eq!(
        (&event["kind"], &event["document_version"]),
        (&json!("grant"), &json!("cancer-v1"))
    );

    let staff = app.staff("hospital-a");
    let (s, consent) = app
        .get(
            &format!("/v1/patients/{patient_ref}/consents/cancer"),
            Some(&staff),
        )
        .await;
    assert_eq!(s, 200, "{consent}");
    assert_eq!(consent["status"], "active");
    assert_eq!(consent["version_in_force"], "cancer-v1");
    let decision = |c: &Value, key: &str| {
        c["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .unwrap()["decision"]
            .clone()
    };
    assert_eq!(decision(&consent, "secondary_use_academic"), "permit");
    assert_eq!(decision(&consent, "secondary_use_industry"), "deny");

    let (s, lookup) = app
        .post(
            "/v1/patients/lookup",
            &staff,
            None,
            &json!({"local_patient_id": "MRN-0001"}),
        )
        .await;
    assert_eq!(
        (s, lookup["patient_ref"].as_str()),
        (200, Some(patient_ref.as_str()))
    );
    let (s, b) = app
        .post(
            "/v1/patients/lookup",
            &staff,
            None,
            &json!({"local_patient_id": "MRN-9999"}),
        )
        .await;
    assert_problem(s, &b, 404, "not_found");

    let (s, events) = app
        .get(
            &format!("/v1/patients/{patient_ref}/consents/cancer/events"),
            Some(&staff),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(events["events"][0]["proxy_relationship"], "parent");
    assert_eq!(events["events"][0]["form_hash"], FORM_HASH);

    let resp = app
        .client
        .get(app.url(&format!("/v1/patients/{patient_ref}/consents/cancer/fhir")))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/fhir+json");
    let (_, fhir) = read(resp).await;
    let errors = fhir::validate_r4_consent(&fhir);
    assert!(errors.is_empty(), "{errors:#?}\n{fhir:#}");
    assert_eq!(fhir["status"], "active");
    assert_eq!(
        fhir["policy"][0]["uri"],
        "https://localhost:8443/v1/documents/cancer/versions/1"
    );
    let provisions = fhir["provision"]["provision"].as_array().unwrap();
    assert_eq!(provisions.len(), 4, "one provision per item");
    let industry = provisions
        .iter()
        .find(|p| p["code"][0]["coding"][0]["code"] == "secondary_use_industry")
        .unwrap();
    assert_eq!(industry["type"], "deny");
    assert_eq!(industry["code"][0]["coding"][1]["code"], "DUO:0000046");
    assert_eq!(fhir["performer"][0]["type"], "RelatedPerson");

    // The validator itself rejects what R4 rejects.
    let mut broken = fhir.clone();
    broken["status"] = json!("withdrawn");
    broken.as_object_mut().unwrap().remove("policy");
    broken["provision"]["provision"][0]["type"] = json!("allow");
    assert_eq!(
        fhir::validate_r4_consent(&broken).len(),
        3,
        "{:?}",
        fhir::validate_r4_consent(&broken)
    );
}

async fn idempotency_replays_and_refuses_reuse(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let mut body = grant_body("MRN-1", &version, all_permit());
    // Nanosecond input: the answer must not depend on storage precision.
    body["signed_at"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    let staff = app.staff("hospital-a");
    let (s1, first) = app
        .post("/v1/consents", &staff, Some("same-key"), &body)
        .await;
    let resp = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&staff)
        .header("Idempotency-Key", "same-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    let (s2, second) = read(resp).await;
    assert_eq!((s1, s2), (201, 200));
    let mut original = first.clone();
    let code = original
        .as_object_mut()
        .unwrap()
        .remove("enrollment_code")
        .expect("a registration hands out an enrollment code");
    assert_eq!(code["code"].as_str().unwrap().len(), 24);
    assert_eq!(
        original, second,
        "a replay answers like the original, minus the one-time code"
    );

    let mut changed = body.clone();
    changed["decisions"]["recontact"] = json!("deny");
    let (s, b) = app
        .post("/v1/consents", &staff, Some("same-key"), &changed)
        .await;
    assert_problem(s, &b, 409, "idempotency_key_reused");
    // The same key from another hospital is another key.
    let (s, _) = app
        .post(
            "/v1/consents",
            &app.staff("hospital-b"),
            Some("same-key"),
            &body,
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(app.count("consent_events"), 2);
}

async fn concurrent_retries_write_one_event(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let body = grant_body("MRN-RACE", &version, all_permit());
    let staff = app.staff("hospital-a");
    let requests = (0..12).map(|_| app.post("/v1/consents", &staff, Some("race-key"), &body));
    let results = futures_util::future::join_all(requests).await;
    let ids: std::collections::BTreeSet<String> = results
        .iter()
        .map(|(s, b)| {
            assert!(*s == 201 || *s == 200, "{s} {b}");
            b["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every retry names the same event");
    assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 1);
    assert_eq!(app.count("consent_events"), 1);
    assert_eq!(
        app.texts("SELECT decisions AS t FROM consent_events"),
        [
            r#"{"ccat_registration":"permit","recontact":"permit","secondary_use_academic":"permit","secondary_use_industry":"permit"}"#
        ]
    );
}

async fn bad_input_is_refused_and_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let staff = app.staff("hospital-a");
    let good = grant_body("MRN-2", &version, all_permit());

    let (s, b) = app
        .post(
            "/v1/consents",
            &staff,
            Some("a"),
            &grant_body("MRN-2", "cancer-v9", all_permit()),
        )
        .await;
    assert_problem(s, &b, 422, "unknown_document_version");
    assert_eq!(b["errors"][0]["field"], "document_version");

    let mut missing = all_permit();
    missing.as_object_mut().unwrap().remove("recontact");
    missing["made_up"] = json!("permit");
    let (s, b) = app
        .post(
            "/v1/consents",
            &staff,
            Some("b"),
            &grant_body("MRN-2", &version, missing),
        )
        .await;
    assert_problem(s, &b, 422, "validation_failed");
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["decisions.made_up", "decisions.recontact"], "{b}");

    let mut bad = good.clone();
    bad["signed_at"] = json!("2999-01-01T00:00:00Z");
    bad["form_hash"] = json!("md5:abc");
    bad["signer"] = json!({"kind": "proxy"});
    bad["decisions"]["recontact"] = json!("maybe");
    let (s, b) = app.post("/v1/consents", &staff, Some("c"), &bad).await;
    assert_problem(s, &b, 422, "validation_failed");
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "signed_at",
        "form_hash",
        "signer.relationship",
        "decisions.recontact",
    ] {
        assert!(fields.contains(&f), "{f} missing in {b}");
    }

    let (s, b) = app.post("/v1/consents", &staff, None, &good).await;
    assert_problem(s, &b, 400, "idempotency_key_required");

    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/v1/consents"))
            .bearer_auth(&staff)
            .header("Idempotency-Key", "d")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (s, b) = read(
        raw("{\"local_patient_id\": ", "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_problem(s, &b, 400, "malformed_json");
    let (s, b) = read(
        raw("local_patient_id=1", "application/x-www-form-urlencoded")
            .await
            .unwrap(),
    )
    .await;
    assert_problem(s, &b, 415, "unsupported_media_type");
    let mut huge = good.clone();
    huge["explained_by"] = json!("x".repeat(70_000));
    let (s, b) = app.post("/v1/consents", &staff, Some("e"), &huge).await;
    assert_problem(s, &b, 413, "payload_too_large");
    let mut extra = good.clone();
    extra["patient_name"] = json!("山田太郎");
    let (s, b) = app.post("/v1/consents", &staff, Some("f"), &extra).await;
    assert_problem(s, &b, 400, "malformed_json");

    // A retired version is refused.
    let v2 = draft(vec![
        item("ccat_registration", "unchanged", "Register with C-CAT"),
        item("secondary_use_academic", "unchanged", "Academic use"),
        item("secondary_use_industry", "unchanged", "Industry use"),
        item("recontact", "unchanged", "Recontact"),
    ]);
    app.publish("cancer", &v2).await;
    let (s, b) = app.post("/v1/consents", &staff, Some("g"), &good).await;
    assert_problem(s, &b, 422, "document_version_not_active");

    assert_eq!(app.count("consent_events"), 0);
    assert_eq!(app.count("patients"), 0);
}

async fn other_hospitals_patients_are_invisible(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let (_, event) = app
        .grant("hospital-a", "MRN-7", &version, all_permit(), "k")
        .await;
    let real = event["patient_ref"].as_str().unwrap().to_owned();
    let made_up = "0".repeat(64);
    let other = app.staff("hospital-b");
    let mut answers = Vec::new();
    for patient in [&real, &made_up] {
        let (s, mut b) = app
            .get(
                &format!("/v1/patients/{patient}/consents/cancer"),
                Some(&other),
            )
            .await;
        // The problem names this occurrence, never the path with the
        // pseudonym in it: the bodies differ by the request ID alone.
        let request_id = b["request_id"].as_str().unwrap().to_owned();
        assert_eq!(b["instance"], format!("urn:uuid:{request_id}"), "{b}");
        assert!(!b.to_string().contains(patient.as_str()), "{b}");
        b.as_object_mut().unwrap().remove("request_id");
        b.as_object_mut().unwrap().remove("instance");
        answers.push((s, b));
        let body = json!({"signer": {"kind": "patient"}, "explained_by": "x", "signed_at": now_rfc3339(), "form_hash": FORM_HASH});
        let (s, b) = app
            .post(
                &format!("/v1/patients/{patient}/consents/cancer/withdrawals"),
                &other,
                Some("w"),
                &body,
            )
            .await;
        assert_problem(s, &b, 404, "not_found");
        let (s, b) = app
            .get(
                &format!("/v1/patients/{patient}/consents/cancer/fhir"),
                Some(&other),
            )
            .await;
        assert_problem(s, &b, 404, "not_found");
    }
    assert_eq!(
        answers[0], answers[1],
        "a real patient of another hospital looks exactly like no patient"
    );
    assert_eq!(answers[0].0, 404);
    // The same local ID at hospital B is a different person.
    let (s, _) = app
        .post(
            "/v1/patients/lookup",
            &other,
            None,
            &json!({"local_patient_id": "MRN-7"}),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        app.count("consent_events"),
        1,
        "nothing written by the refused calls"
    );
}

async fn material_changes_need_reconsent_editorial_ones_do_not(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let v1 = app.publish("cancer", &first_draft()).await;
    let (_, event) = app
        .grant("hospital-a", "MRN-3", &v1, all_permit(), "k1")
        .await;
    let patient = event["patient_ref"].as_str().unwrap().to_owned();
    let (_, untouched) = app.grant("hospital-a", "MRN-4", &v1, json!({"ccat_registration": "permit", "secondary_use_academic": "permit", "secondary_use_industry": "deny", "recontact": "deny"}), "k2").await;
    let before_v2 = now_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let v2 = app
        .publish(
            "cancer",
            &draft(vec![
                item("ccat_registration", "unchanged", "Register with C-CAT"),
                item(
                    "secondary_use_academic",
                    "editorial",
                    "Academic research use.",
                ),
                item(
                    "secondary_use_industry",
                    "material",
                    "Industry use, including overseas affiliates",
                ),
                item("recontact", "unchanged", "Recontact"),
                item("specimen_banking", "added", "Bank specimens"),
            ]),
        )
        .await;
    let staff = app.staff("hospital-a");
    let (_, now) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&staff),
        )
        .await;
    let item = |c: &Value, key: &str| {
        c["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .cloned()
            .unwrap()
    };
    assert_eq!(now["version_in_force"], "cancer-v2");
    assert_eq!(item(&now, "secondary_use_academic")["decision"], "permit");
    assert_eq!(
        item(&now, "secondary_use_academic")["basis"]["reason"],
        "carried_forward"
    );
    assert_eq!(item(&now, "secondary_use_industry")["decision"], "deny");
    assert_eq!(
        item(&now, "secondary_use_industry")["basis"]["reason"],
        "needs_reconsent"
    );
    assert_eq!(
        item(&now, "specimen_banking")["basis"]["reason"],
        "not_asked"
    );

    let (_, past) = app
        .get(
            &format!(
                "/v1/patients/{patient}/consents/cancer?as_of={}",
                before_v2.replace('+', "%2B")
            ),
            Some(&staff),
        )
        .await;
    assert_eq!(past["version_in_force"], "cancer-v1");
    assert_eq!(item(&past, "secondary_use_industry")["decision"], "permit");

    let (s, tasks) = app
        .get("/v1/reconsent-tasks?family=cancer", Some(&staff))
        .await;
    assert_eq!(s, 200, "{tasks}");
    let tasks = tasks["tasks"].as_array().unwrap();
    let mine = tasks.iter().find(|t| t["patient_ref"] == patient).unwrap();
    assert_eq!(
        item_keys(mine),
        ["secondary_use_industry", "specimen_banking"],
        "only material and added items"
    );
    // A patient who denied industry use is asked only about the new item.
    let theirs = tasks
        .iter()
        .find(|t| t["patient_ref"] == untouched["patient_ref"])
        .unwrap();
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1);
    // One patient per page gives the same list, in patient_ref order.
    let mut paged = Vec::new();
    let mut next = String::from("/v1/reconsent-tasks?family=cancer&limit=1");
    loop {
        let (s, page) = app.get(&next, Some(&staff)).await;
        assert_eq!(s, 200, "{page}");
        paged.extend(page["tasks"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_str() {
            Some(cursor) => {
                next = format!("/v1/reconsent-tasks?family=cancer&limit=1&after={cursor}")
            }
            None => break,
        }
    }
    let mut whole = tasks.clone();
    whole.sort_by_key(|t| t["patient_ref"].as_str().unwrap().to_owned());
    assert_eq!(paged, whole);
    let (s, b) = app
        .get("/v1/reconsent-tasks?family=cancer&limit=0", Some(&staff))
        .await;
    assert_problem(s, &b, 422, "validation_failed");
    let (_, other_hospital) = app
        .get(
            "/v1/reconsent-tasks?family=cancer",
            Some(&app.staff("hospital-b")),
        )
        .await;
    assert_eq!(other_hospital["tasks"], json!([]));

    // Re-consent: just the two items, on v2.
    let change = json!({"document_version": v2, "decisions": {"secondary_use_industry": "permit", "specimen_banking": "deny"},
        "signer": {"kind": "patient"}, "explained_by": "nurse-2", "signed_at": now_rfc3339(), "form_hash": FORM_HASH});
    let (s, b) = app
        .post(
            &format!("/v1/patients/{patient}/consents/cancer/changes"),
            &staff,
            Some("k3"),
            &change,
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (_, after) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&staff),
        )
        .await;
    assert_eq!(item(&after, "secondary_use_industry")["decision"], "permit");
    assert_eq!(
        item(&after, "secondary_use_industry")["basis"]["reason"],
        "consented"
    );
    let (_, tasks) = app
        .get("/v1/reconsent-tasks?family=cancer", Some(&staff))
        .await;
    assert!(tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["patient_ref"] != patient));

    // Changing an item the version does not have is refused.
    let mut bad = change.clone();
    bad["decisions"] = json!({"international_transfer": "permit"});
    let (s, b) = app
        .post(
            &format!("/v1/patients/{patient}/consents/cancer/changes"),
            &staff,
            Some("k4"),
            &bad,
        )
        .await;
    assert_problem(s, &b, 422, "validation_failed");
    assert_eq!(b["errors"][0]["field"], "decisions.international_transfer");
}

async fn withdrawal_and_as_of_queries(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let v1 = app.publish("cancer", &first_draft()).await;
    let (_, event) = app
        .grant("hospital-a", "MRN-5", &v1, all_permit(), "k1")
        .await;
    let patient = event["patient_ref"].as_str().unwrap().to_owned();
    let staff = app.staff("hospital-a");
    let signature = || json!({"signer": {"kind": "patient"}, "explained_by": "nurse-1", "signed_at": now_rfc3339(), "form_hash": FORM_HASH});

    let mut partial = signature();
    partial["items"] = json!(["secondary_use_industry"]);
    let (s, b) = app
        .post(
            &format!("/v1/patients/{patient}/consents/cancer/withdrawals"),
            &staff,
            Some("w1"),
            &partial,
        )
        .await;
    assert_eq!((s, &b["kind"]), (201, &json!("withdraw_items")), "{b}");
    let between = now_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (s, b) = app
        .post(
            &format!("/v1/patients/{patient}/consents/cancer/withdrawals"),
            &staff,
            Some("w2"),
            &signature(),
        )
        .await;
    assert_eq!((s, &b["kind"]), (201, &json!("withdraw_all")), "{b}");

    let (_, now) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&staff),
        )
        .await;
    assert_eq!(now["status"], "withdrawn");
    assert!(now["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["decision"] == "deny" && i["basis"]["reason"] == "withdrawn"));
    let (_, then) = app
        .get(
            &format!(
                "/v1/patients/{patient}/consents/cancer?as_of={}",
                between.replace('+', "%2B")
            ),
            Some(&staff),
        )
        .await;
    assert_eq!(then["status"], "active");
    let industry = then["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == "secondary_use_industry")
        .unwrap()
        .clone();
    assert_eq!(
        (&industry["decision"], &industry["basis"]["reason"]),
        (&json!("deny"), &json!("withdrawn"))
    );
    let (_, fhir) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer/fhir"),
            Some(&staff),
        )
        .await;
    assert_eq!(fhir["status"], "inactive");

    // Nothing left to change or withdraw.
    let (s, b) = app
        .post(
            &format!("/v1/patients/{patient}/consents/cancer/withdrawals"),
            &staff,
            Some("w3"),
            &signature(),
        )
        .await;
    assert_problem(s, &b, 409, "no_active_consent");
    let mut change = signature();
    change["document_version"] = json!(v1);
    change["decisions"] = json!({"recontact": "permit"});
    let (s, b) = app
        .post(
            &format!("/v1/patients/{patient}/consents/cancer/changes"),
            &staff,
            Some("w4"),
            &change,
        )
        .await;
    assert_problem(s, &b, 409, "no_active_consent");
    let (s, b) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer?as_of=yesterday"),
            Some(&staff),
        )
        .await;
    assert_problem(s, &b, 422, "validation_failed");
    assert_eq!(
        app.count("consent_events"),
        3,
        "the refused calls wrote nothing"
    );

    // A new grant starts over.
    let (s, _) = app
        .grant("hospital-a", "MRN-5", &v1, all_permit(), "k9")
        .await;
    assert_eq!(s, 201);
    let (_, again) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&staff),
        )
        .await;
    assert_eq!(again["status"], "active");
}

async fn minors_and_deceased_patients(backend: Backend) {
    let Some((app, clock)) = TestApp::spawn_with_shifted_clock(backend).await else {
        return;
    };
    // A parent signed for the child two years ago.
    let (v1, child) = app
        .parent_consented(
            &clock,
            "rare_disease",
            "CHILD-1",
            chrono::Duration::days(730),
        )
        .await;
    let staff = app.staff("hospital-a");
    // A guardian signs for an adult today: no minor's proxy, nothing lapses.
    let mut body = grant_body("WARD-1", &v1, all_permit());
    body["signer"] = json!({"kind": "proxy", "relationship": "legal_guardian"});
    let (s, ward) = app.post("/v1/consents", &staff, Some("c3"), &body).await;
    assert_eq!(s, 201, "{ward}");
    let (_, adult) = app
        .grant("hospital-a", "ADULT-1", &v1, all_permit(), "c2")
        .await;
    let yesterday =
        genomegate::calendar::day_of(chrono::Utc::now() - chrono::Duration::days(1)).to_string();
    async fn status(app: &TestApp, token: &str, p: &Value, b: Value) -> (u16, Value) {
        let path = format!("/v1/patients/{}/status", p["patient_ref"].as_str().unwrap());
        app.send_json(reqwest::Method::PUT, &path, Some(token), None, &b)
            .await
    }
    let logged_before = app.log_entries_with_action("patient_status_change");
    for patient in [&child, &ward] {
        let (s, b) = status(
            &app,
            &staff,
            patient,
            json!({"majority_on": yesterday, "deceased_on": null}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    let (_, tasks) = app
        .get("/v1/reconsent-tasks?family=rare_disease", Some(&staff))
        .await;
    let tasks = tasks["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(
        (&tasks[0]["patient_ref"], &tasks[0]["reason"]),
        (&child["patient_ref"], &json!("reached_majority"))
    );
    assert_eq!(
        item_keys(&tasks[0]),
        [
            "ccat_registration",
            "recontact",
            "secondary_use_academic",
            "secondary_use_industry"
        ],
        "every permit the parent gave"
    );

    let (s, b) = status(
        &app,
        &staff,
        &adult,
        json!({"majority_on": null, "deceased_on": "2999-01-01"}),
    )
    .await;
    assert_problem(s, &b, 422, "validation_failed");
    assert_eq!(
        app.log_entries_with_action("patient_status_change"),
        logged_before + 2,
        "each update is logged; the refused one writes nothing"
    );
    let (s, _) = status(
        &app,
        &staff,
        &child,
        json!({"majority_on": yesterday, "deceased_on": yesterday}),
    )
    .await;
    assert_eq!(s, 200);
    // The patient sees each change in their access log, and the entry names
    // what was touched, never the days themselves.
    app.wait_integrated().await;
    let child_ref = child["patient_ref"].as_str().unwrap();
    let (_, page) = app
        .get(
            "/v1/portal/access-log?lang=en",
            Some(&app.patient_token(child_ref)),
        )
        .await;
    let changes: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "patient_status_change")
        .collect();
    assert_eq!(changes.len(), 2, "{page}");
    assert_eq!(changes[0]["entry"]["actor"]["org"], "hospital-a");
    assert_eq!(
        changes[0]["entry"]["legal_basis"],
        json!({"treating_hospital": {"hospital": "hospital-a"}})
    );
    assert!(changes[0]["explanation"]["summary"]
        .as_str()
        .unwrap()
        .contains("updated the record of the day you come of age"));
    let mut entry = changes[0]["entry"].clone();
    entry.as_object_mut().unwrap().remove("at");
    assert!(!entry.to_string().contains(&yesterday), "{entry}");
    let (_, tasks) = app
        .get("/v1/reconsent-tasks?family=rare_disease", Some(&staff))
        .await;
    assert_eq!(
        tasks["tasks"],
        json!([]),
        "the deceased are never asked again"
    );
    let (_, consent) = app
        .get(
            &format!(
                "/v1/patients/{}/consents/rare_disease",
                child["patient_ref"].as_str().unwrap()
            ),
            Some(&staff),
        )
        .await;
    assert_eq!(consent["patient"]["deceased_on"], json!(yesterday));

    // Days are days in Japan: at 01:00 JST, while the UTC day has not yet
    // turned, a death that morning is not in the future; tomorrow's is.
    let one_am_jst = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(16, 0, 0)
        .unwrap()
        .and_utc();
    clock.shift(one_am_jst - chrono::Utc::now());
    let japan_today = one_am_jst.date_naive().succ_opt().unwrap();
    let (s, b) = status(
        &app,
        &staff,
        &adult,
        json!({"majority_on": null, "deceased_on": japan_today}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = status(
        &app,
        &staff,
        &adult,
        json!({"majority_on": null, "deceased_on": japan_today.succ_opt().unwrap()}),
    )
    .await;
    assert_problem(s, &b, 422, "validation_failed");
    clock.shift(chrono::Duration::zero());
}

async fn a_proxy_consent_recorded_after_majority_is_told_at_once(backend: Backend) {
    let Some((app, clock)) = TestApp::spawn_with_shifted_clock(backend).await else {
        return;
    };
    let two_years = chrono::Duration::days(730);
    // A parent signed for the child's cancer consent two years ago, when
    // the rare-disease document was in force too.
    let (cancer, child) = app
        .parent_consented(&clock, "cancer", "LATE-1", two_years)
        .await;
    clock.shift(-two_years);
    let rare = app.publish("rare_disease", &first_draft()).await;
    clock.shift(chrono::Duration::zero());
    let staff = app.staff("hospital-a");
    let child_ref = child["patient_ref"].as_str().unwrap().to_owned();
    let token = app.patient_token(&child_ref);
    let told = || async {
        let lapses = app.lapses_told(&token).await;
        lapses
            .into_iter()
            .map(|e| e["entry"].clone())
            .collect::<Vec<_>>()
    };
    let every_permit = json!([
        "ccat_registration",
        "recontact",
        "secondary_use_academic",
        "secondary_use_industry"
    ]);

    // The hospital records that the child came of age 100 days ago.
    let majority = genomegate::calendar::day_of(chrono::Utc::now() - chrono::Duration::days(100));
    let (s, b) = app
        .send_json(
            reqwest::Method::PUT,
            &format!("/v1/patients/{child_ref}/status"),
            Some(&staff),
            None,
            &json!({"majority_on": majority, "deceased_on": null}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let lapses = told().await;
    assert_eq!(lapses.len(), 1, "{lapses:?}");
    assert_eq!(
        lapses[0]["legal_basis"],
        json!({"consent": {"version": cancer, "items": every_permit}})
    );

    // A form the parent signed a year ago, while the child was a minor,
    // reaches the service only now: its permits have lapsed as they are
    // recorded, and the patient is told at once, in the same transaction,
    // though their birthday was told long ago.
    let mut body = grant_body("LATE-1", &rare, all_permit());
    body["signer"] = json!({"kind": "proxy", "relationship": "parent"});
    body["signed_at"] = json!((chrono::Utc::now() - chrono::Duration::days(365)).to_rfc3339());
    let (s, b) = app
        .post("/v1/consents", &staff, Some("late-rare"), &body)
        .await;
    assert_eq!(s, 201, "{b}");
    let lapses = told().await;
    assert_eq!(lapses.len(), 2, "{lapses:?}");
    let late = lapses
        .iter()
        .find(|e| e["scope"]["consent_record"]["family"] == "rare_disease")
        .unwrap_or_else(|| panic!("{lapses:?}"));
    assert_eq!(
        late["actor"],
        json!({"org": "genomegate", "role": "service", "user": "came-of-age"})
    );
    assert_eq!(
        late["legal_basis"],
        json!({"consent": {"version": rare, "items": every_permit}})
    );
    let (_, consent) = app
        .get(
            &format!("/v1/patients/{child_ref}/consents/rare_disease"),
            Some(&staff),
        )
        .await;
    assert!(
        consent["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["needs_own_consent"] == true),
        "{consent}"
    );

    // The patient's own change, and a guardian signing for the adult
    // today, lapse nothing: nobody is told anything more.
    let changes = format!("/v1/patients/{child_ref}/consents/rare_disease/changes");
    for (key, signer, decisions) in [
        (
            "own",
            json!({"kind": "patient"}),
            json!({"recontact": "deny"}),
        ),
        (
            "guardian",
            json!({"kind": "proxy", "relationship": "legal_guardian"}),
            json!({"secondary_use_academic": "permit"}),
        ),
    ] {
        let body = json!({
            "document_version": rare,
            "decisions": decisions,
            "signer": signer,
            "explained_by": "nurse-1",
            "signed_at": now_rfc3339(),
            "form_hash": FORM_HASH,
        });
        let (s, b) = app.post(&changes, &staff, Some(key), &body).await;
        assert_eq!(s, 201, "{b}");
    }
    assert_eq!(told().await.len(), 2);
    assert_eq!(app.log_entries_with_action("consent_lapse"), 2);
}

async fn auditors_are_read_only(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let v1 = app.publish("cancer", &first_draft()).await;
    let (_, event) = app
        .grant("hospital-a", "MRN-8", &v1, all_permit(), "k")
        .await;
    let patient = event["patient_ref"].as_str().unwrap();
    let auditor = app.token(&["auditor"], "audit-office");
    let (s, _) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&auditor),
        )
        .await;
    assert_eq!(s, 200);
    let body = json!({"signer": {"kind": "patient"}, "explained_by": "x", "signed_at": now_rfc3339(), "form_hash": FORM_HASH});
    let (s, b) = app
        .post(
            &format!("/v1/patients/{patient}/consents/cancer/withdrawals"),
            &auditor,
            Some("a"),
            &body,
        )
        .await;
    assert_problem(s, &b, 403, "forbidden");
    let (s, b) = app
        .post(
            "/v1/consents",
            &auditor,
            Some("b"),
            &grant_body("MRN-9", &v1, all_permit()),
        )
        .await;
    assert_problem(s, &b, 403, "forbidden");
    let (s, b) = app
        .post(
            "/v1/documents/cancer/versions",
            &auditor,
            None,
            &first_draft(),
        )
        .await;
    assert_problem(s, &b, 403, "forbidden");
    let (s, b) = app
        .get("/v1/reconsent-tasks?family=cancer", Some(&auditor))
        .await;
    assert_problem(s, &b, 403, "forbidden");
    // A token without any known role gets nothing.
    let nobody = app.token(&["researcher"], "hospital-a");
    let (s, _) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&nobody),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(app.count("consent_events"), 1);
}

async fn the_database_refuses_rewrites(backend: Backend) {
    use diesel::RunQueryDsl;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let v1 = app.publish("cancer", &first_draft()).await;
    app.grant("hospital-a", "MRN-10", &v1, all_permit(), "k")
        .await;
    let mut conn = app.raw_db();
    for sql in [
        "UPDATE consent_events SET explained_by = 'someone else'",
        "DELETE FROM consent_events",
        "UPDATE consent_events SET decisions = '{}'",
        "UPDATE document_versions SET body_en = 'rewritten' WHERE id = 'cancer-v1'",
        "DELETE FROM document_versions WHERE id = 'cancer-v1'",
        "UPDATE document_scope_items SET text_en = 'rewritten' WHERE version_id = 'cancer-v1'",
        "INSERT INTO document_scope_items VALUES ('cancer-v1', 'specimen_banking', 9, 'added', 'a', 'b', 'c', 'd')",
    ] {
        let err = diesel::sql_query(sql).execute(&mut conn).expect_err(sql);
        assert!(err.to_string().contains("genomegate"), "{sql}: {err}");
    }
    if backend == Backend::Postgres {
        let err = diesel::sql_query("TRUNCATE consent_events CASCADE")
            .execute(&mut conn)
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(app.count("consent_events"), 1);
}

/// The one-statement grant writes patient, sealed identity, event and items
/// together, or nothing at all. PostgreSQL only: SQLite never takes it.
#[actix_web::test]
async fn one_statement_grant_is_all_or_nothing() {
    use genomegate::consent::{Decision, ScopeItemKey};
    use genomegate::db::consents::{grant_in_one_statement, EventRow};
    use genomegate::pseudonym::vault::Sealed;
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let now = chrono::Utc::now().naive_utc();
    let row = |id: &str, version: &str, key: &str, signed_at: chrono::NaiveDateTime| EventRow {
        id: id.into(),
        patient_pseudonym: format!("{:064x}", id.len()),
        family: "cancer".into(),
        document_version_id: version.into(),
        kind: "grant".into(),
        signer_kind: "patient".into(),
        proxy_relationship: None,
        explained_by: "nurse".into(),
        signed_at,
        recorded_at: now,
        form_hash: FORM_HASH.into(),
        hospital_org: "hospital-a".into(),
        recorded_by: "nurse".into(),
        idempotency_key: key.into(),
        request_hash: "h".into(),
    };
    let decisions: Vec<(ScopeItemKey, Decision)> = [
        "ccat_registration",
        "secondary_use_academic",
        "secondary_use_industry",
        "recontact",
    ]
    .iter()
    .map(|k| (ScopeItemKey::parse(k).unwrap(), Decision::Permit))
    .collect();
    let sealed = Sealed {
        key_version: 1,
        nonce: vec![1; 12],
        ciphertext: vec![2; 20],
    };
    let mut conn = app.raw_db();
    let entry = genomegate::ledger::entry::LogEntry {
        format: 1,
        at: chrono::Utc::now(),
        actor: genomegate::ledger::entry::Actor {
            org: "hospital-a".into(),
            role: "hospital_staff".into(),
            user: "nurse".into(),
        },
        action: genomegate::ledger::entry::LogAction::ConsentRegister,
        purpose: genomegate::ledger::entry::Purpose::ConsentManagement,
        legal_basis: genomegate::ledger::entry::LegalBasis::Consent {
            version: version.clone(),
            items: vec![],
        },
        patient: format!("{:064x}", 2),
        scope: genomegate::ledger::entry::DataScope::ConsentRecord {
            family: "cancer".into(),
        },
    };
    let extras = |code: &'static str| genomegate::db::consents::GrantExtras {
        entry: &entry,
        code_hash: code,
        code_expires_at: now,
    };
    let counts = |app: &TestApp| {
        [
            "patients",
            "identity_vault",
            "consent_events",
            "access_log_entries",
            "enrollment_codes",
        ]
        .map(|t| app.count(t))
    };

    assert!(grant_in_one_statement(
        &mut conn,
        &row("e1", &version, "k1", now),
        &decisions,
        &sealed,
        &extras("c1")
    )
    .unwrap());
    assert_eq!(counts(&app), [1, 1, 1, 1, 1]);
    // Unknown version, and a signature before the version came into force: nothing written.
    assert!(!grant_in_one_statement(
        &mut conn,
        &row("e22", "cancer-v9", "k2", now),
        &decisions,
        &sealed,
        &extras("c2")
    )
    .unwrap());
    let long_ago = now - chrono::Duration::days(365);
    assert!(!grant_in_one_statement(
        &mut conn,
        &row("e333", &version, "k3", long_ago),
        &decisions,
        &sealed,
        &extras("c3")
    )
    .unwrap());
    // A known patient (the same pseudonym as e1's) takes the general path,
    // which checks their releases for recalls: nothing written here.
    assert!(!grant_in_one_statement(
        &mut conn,
        &row("e9", &version, "k9", now),
        &decisions,
        &sealed,
        &extras("c9")
    )
    .unwrap());
    assert_eq!(counts(&app), [1, 1, 1, 1, 1]);
    // A reused idempotency key fails the constraint: nothing written.
    assert!(grant_in_one_statement(
        &mut conn,
        &row("e4444", &version, "k1", now),
        &decisions,
        &sealed,
        &extras("c4")
    )
    .is_err());
    assert_eq!(counts(&app), [1, 1, 1, 1, 1]);
}

/// Migration 000008 moved each event's item decisions from rows of their own
/// onto the event row. Reverting it must give the rows back, and applying
/// it again must fold them into the same decisions, so the consent read
/// through the API does not change.
async fn decisions_survive_the_migration_that_inlined_them(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let v1 = app.publish("cancer", &first_draft()).await;
    let mixed = json!({"ccat_registration": "permit", "secondary_use_academic": "permit", "secondary_use_industry": "deny", "recontact": "deny"});
    let (s, event) = app.grant("hospital-a", "MRN-8", &v1, mixed, "k8").await;
    assert_eq!(s, 201, "{event}");
    let (_, withdrawn) = app
        .grant("hospital-a", "MRN-9", &v1, all_permit(), "k9")
        .await;
    let staff = app.staff("hospital-a");
    let withdraw = json!({"items": ["recontact"], "signer": {"kind": "patient"}, "explained_by": "nurse-1",
        "signed_at": now_rfc3339(), "form_hash": FORM_HASH});
    let path = format!(
        "/v1/patients/{}/consents/cancer/withdrawals",
        withdrawn["patient_ref"].as_str().unwrap()
    );
    let (s, b) = app.post(&path, &staff, Some("w9"), &withdraw).await;
    assert_eq!(s, 201, "{b}");
    let consent = |patient: Value| {
        let path = format!("/v1/patients/{}/consents/cancer", patient.as_str().unwrap());
        let staff = staff.clone();
        let app = &app;
        async move {
            let mut consent = app.get(&path, Some(&staff)).await.1;
            // The moment of reading; everything else must stay the same.
            consent.as_object_mut().unwrap().remove("as_of");
            consent
        }
    };
    let before = [
        consent(event["patient_ref"].clone()).await,
        consent(withdrawn["patient_ref"].clone()).await,
    ];

    let mut conn = app.raw_db();
    // Back to just before 000008, then forward again with the rest.
    revert_through(&mut conn, "000008");
    let items = app.texts(
        "SELECT e.kind || ' ' || i.item_key || ' ' || i.decision AS t FROM consent_event_items i \
         JOIN consent_events e ON e.id = i.event_id ORDER BY t",
    );
    assert_eq!(
        items,
        [
            "grant ccat_registration permit",
            "grant ccat_registration permit",
            "grant recontact deny",
            "grant recontact permit",
            "grant secondary_use_academic permit",
            "grant secondary_use_academic permit",
            "grant secondary_use_industry deny",
            "grant secondary_use_industry permit",
            "withdraw_items recontact deny",
        ]
    );
    genomegate::db::run_migrations(&mut conn).unwrap();
    assert_eq!(app.count("consent_events"), 3);
    let after = [
        consent(event["patient_ref"].clone()).await,
        consent(withdrawn["patient_ref"].clone()).await,
    ];
    assert_eq!(before, after);
    assert_eq!(
        before[0]["items"].as_array().unwrap().len(),
        4,
        "{}",
        before[0]
    );
}

/// Consent reads keep each family's version history in memory (decision
/// 0016). A version published through one instance must show at once in
/// reads through another that had already cached the old history; and each
/// read, through either path, logs exactly one entry, while a refused read
/// logs none.
async fn a_new_version_reaches_consent_reads_on_every_instance(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let v1 = app.publish("cancer", &first_draft()).await;
    let (_, event) = app
        .grant("hospital-a", "MRN-CACHE", &v1, all_permit(), "k1")
        .await;
    let patient = event["patient_ref"].as_str().unwrap().to_owned();
    let other = app.another_instance();
    let read_through = |base: String, org: &'static str| {
        let (client, token) = (app.client.clone(), app.staff(org));
        let url = format!("{base}/v1/patients/{patient}/consents/cancer");
        async move { read(client.get(url).bearer_auth(token).send().await.unwrap()).await }
    };
    let reads = || {
        app.texts("SELECT action AS t FROM access_log_entries WHERE action = 'consent_read'")
            .len()
    };

    let (s, before) = read_through(other.base.clone(), "hospital-a").await;
    assert_eq!(s, 200, "{before}");
    assert_eq!(before["version_in_force"], "cancer-v1");
    assert_eq!(reads(), 1);

    app.publish(
        "cancer",
        &draft(vec![
            item("ccat_registration", "unchanged", "Register with C-CAT"),
            item("secondary_use_academic", "unchanged", "Academic use"),
            item(
                "secondary_use_industry",
                "material",
                "Industry use, including overseas affiliates",
            ),
            item("recontact", "unchanged", "Recontact"),
        ]),
    )
    .await;
    for base in [other.base.clone(), app.base.clone()] {
        let (s, after) = read_through(base, "hospital-a").await;
        assert_eq!(s, 200, "{after}");
        assert_eq!(after["version_in_force"], "cancer-v2", "{after}");
        let industry = after["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == "secondary_use_industry")
            .cloned()
            .unwrap();
        assert_eq!(industry["basis"]["reason"], "needs_reconsent");
    }
    assert_eq!(reads(), 3, "one entry per read");

    // Another hospital's staff: the same 404 as for no patient, unlogged.
    let (s, b) = read_through(other.base.clone(), "hospital-b").await;
    assert_problem(s, &b, 404, "not_found");
    assert_eq!(reads(), 3, "the refused read wrote nothing");
}

/// The keys of a re-consent task's items.
fn item_keys(task: &Value) -> Vec<&str> {
    task["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect()
}
