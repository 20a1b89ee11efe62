//! Data-use applications, committee review, agreements and consent-checked
//! releases (issue #5): the whole journey on both backends, and every named
//! refusal with proof that nothing was written.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::access::*;
use common::receipts::enroll;
use common::webhooks::webhook_receiver;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

on_both_backends!(
    the_full_journey_releases_consenting_patients_and_resolution_rechecks_consent,
    refusals_are_named_and_write_nothing,
    a_release_pages_its_cohort_alike_on_one_connection_or_two,
    migration_000009_names_the_patient_of_existing_dataset_samples,
    partner_members_from_other_organizations_share_an_application,
    migration_000012_names_the_organization_of_existing_acceptances,
    a_minor_who_came_of_age_is_released_only_on_their_own_consent,
    recalls_follow_what_each_use_relies_on,
    the_day_a_minor_comes_of_age_recalls_what_their_parent_permitted,
    two_projects_manifests_cannot_be_lined_up_by_position,
    members_get_passport_visas_only_while_they_could_release,
    each_member_is_held_to_a_few_releases_and_visa_requests_a_minute,
    releases_are_kept_as_records_that_members_and_overseers_read_back,
    a_retry_under_the_same_key_is_the_first_answer_and_changes_nothing,
);

// Only PostgreSQL lets a change commit while a release is being written;
// SQLite runs one writer at a time.
#[actix_web::test]
async fn changes_that_commit_while_a_release_reads_are_recalled_from_it() {
    a_change_committed_while_a_release_reads_is_recalled_from_it(Backend::Postgres).await;
}

#[actix_web::test]
async fn coming_of_age_while_a_release_reads_is_recalled_from_it() {
    a_minor_who_comes_of_age_while_a_release_reads_is_recalled_from_it(Backend::Postgres).await;
}

/// A child of hospital-a, consented for by a parent `ago`, with one
/// germline sample. Returns the version, the child's patient ref and the
/// sample's genome ID.
async fn child_with_sample(
    app: &TestApp,
    clock: &ShiftedClock,
    local_id: &str,
    ago: chrono::Duration,
) -> (String, String, String) {
    let (version, child) = app.parent_consented(clock, "cancer", local_id, ago).await;
    let (s, sample) = app
        .register_sample(
            &app.staff("hospital-a"),
            &sample_body(local_id, &format!("S-{local_id}"), local_id),
        )
        .await;
    assert_eq!(s, 201, "{sample}");
    (
        version,
        child["patient_ref"].as_str().unwrap().to_owned(),
        sample["genome_id"].as_str().unwrap().to_owned(),
    )
}

/// Hospital-a records `patient`'s signed change or withdrawal (`what`) of
/// their cancer consent, under `Idempotency-Key` `key`.
async fn signed_change(app: &TestApp, patient: &str, what: &str, key: &str, mut body: Value) {
    let path = format!("/v1/patients/{patient}/consents/cancer/{what}");
    body["signer"] = json!({"kind": "patient"});
    body["explained_by"] = json!("nurse-1");
    body["signed_at"] = json!(now_rfc3339());
    body["form_hash"] = json!(FORM_HASH);
    let (s, b) = app
        .post(&path, &app.staff("hospital-a"), Some(key), &body)
        .await;
    assert_eq!(s, 201, "{b}");
}

/// A child of hospital-a, consented for by a parent, who comes of age in
/// `majority_in_days`, and five adults, each with one germline sample, in
/// one dataset; and an academic application for it, ready to release.
/// Returns the application's ID, its researcher's token and the child's
/// patient ref.
async fn a_minor_among_adults(
    app: &TestApp,
    clock: &ShiftedClock,
    majority_in_days: i64,
) -> (String, String, String) {
    let (version, child, child_genome_id) =
        child_with_sample(app, clock, "MRN-TEEN", chrono::Duration::days(30)).await;
    let (s, b) = put(
        app,
        &format!("/v1/patients/{child}/status"),
        &app.staff("hospital-a"),
        &json!({"majority_on": days_from_today(majority_in_days), "deceased_on": null}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let adults = patients_with_samples(app, &version, "GROWN", 5, all_permit()).await;
    let mut genome_ids: Vec<String> = adults.iter().map(|p| p.1.clone()).collect();
    genome_ids.push(child_genome_id);
    let id = one_use_of(app, (UNIVERSITY, "academic", "prof-1"), &genome_ids, "GRU").await;
    (id, researcher(UNIVERSITY, "prof-1"), child)
}

/// Resolves `handle` as the store, `limit` samples a page, following
/// `next_after`; returns each served object's project sample ID in the
/// order served, and how many pages it took.
async fn resolve_in_pages(app: &TestApp, handle: &str, limit: i64) -> (Vec<String>, usize) {
    let (mut after, mut served, mut pages) = (None::<i64>, Vec::new(), 0);
    loop {
        let (s, page) = app
            .post(
                "/v1/handles/resolve",
                &store_token(STORE),
                None,
                &json!({ "handle": handle, "after": after, "limit": limit }),
            )
            .await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        for object in page["objects"].as_array().unwrap() {
            served.push(object["project_sample_id"].as_str().unwrap().to_owned());
        }
        after = page["next_after"].as_i64();
        if after.is_none() {
            return (served, pages);
        }
    }
}

async fn resolve(app: &TestApp, org: &str, handle: &str) -> (u16, Value) {
    app.post(
        "/v1/handles/resolve",
        &store_token(org),
        None,
        &json!({ "handle": handle }),
    )
    .await
}

async fn the_full_journey_releases_consenting_patients_and_resolution_rechecks_consent(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let started = chrono::Utc::now() - chrono::Duration::minutes(1);
    let version = app.publish("cancer", &first_draft()).await;
    let both = patients_with_samples(&app, &version, "BOTH", 6, all_permit()).await;
    let academic = patients_with_samples(&app, &version, "ACAD", 2, academic_only()).await;
    let genome_ids: Vec<String> = both
        .iter()
        .chain(&academic)
        .map(|(_, g, _)| g.clone())
        .collect();

    verify_org(&app, PHARMA, "industry").await;
    for sub in ["res-1", "res-2", "res-3"] {
        attest(&app, PHARMA, sub, "2029-01-10").await;
    }
    let ds = dataset(
        &app,
        "Cancer germline WGS",
        json!({"permission": "HMB"}),
        &genome_ids,
    )
    .await;
    let (s, catalogue) = app
        .get("/v1/datasets", Some(&researcher(PHARMA, "res-1")))
        .await;
    assert_eq!(s, 200);
    assert_eq!(catalogue["datasets"][0]["samples"], 8, "{catalogue}");
    let sha_v1 = publish_text(&app, "Data-use agreement v1: no re-identification.").await;

    // The industry applicant; commercial status comes from the register.
    let app_view = submit(
        &app,
        &researcher(PHARMA, "res-1"),
        &application(&[&ds], &["res-2"], "HMB"),
    )
    .await;
    assert_eq!(app_view["state"], "under_review", "{app_view}");
    assert_eq!(app_view["commercial"], true);
    assert_eq!(app_view["matching"][0]["outcome"], "approve");
    assert_eq!(app_view["matching"][0]["matcher"], "duo-match/v1");
    assert_eq!(
        app_view["matching"][0]["rationale"][0]["code"],
        "purpose_within_permission"
    );
    let id = app_view["id"].as_str().unwrap().to_owned();

    // A second vote from the same member is refused.
    let (s, _) = app
        .post(
            &format!("/v1/applications/{id}/votes"),
            &committee("c-1"),
            None,
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = app
        .post(
            &format!("/v1/applications/{id}/votes"),
            &committee("c-1"),
            None,
            &json!({"decision": "approve"}),
        )
        .await;
    assert_problem(s, &b, 409, "application_decided");
    for voter in ["c-2", "c-3"] {
        app.post(
            &format!("/v1/applications/{id}/votes"),
            &committee(voter),
            None,
            &json!({"decision": "approve"}),
        )
        .await;
    }
    let (_, decided) = app
        .get(&format!("/v1/applications/{id}"), Some(&committee("c-1")))
        .await;
    assert_eq!(decided["state"], "approved", "{decided}");
    let states: Vec<&str> = decided["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["submitted", "under_review", "approved"]);
    let agreement = decided["agreement"]["id"].as_str().unwrap().to_owned();

    // Release needs every member's acceptance of the current text.
    let log_before = app.count("access_log_entries");
    let (s, b) = release(&app, &id, &researcher(PHARMA, "res-1")).await;
    assert_problem(s, &b, 409, "agreement_not_accepted");
    let (s, b) = accept(&app, &agreement, &researcher(PHARMA, "res-3"), &sha_v1).await;
    assert_problem(s, &b, 403, "not_a_member");
    let (s, b) = accept(
        &app,
        &agreement,
        &researcher(PHARMA, "res-1"),
        &"0".repeat(64),
    )
    .await;
    assert_problem(s, &b, 409, "agreement_text_mismatch");
    for sub in ["res-1", "res-2"] {
        let (s, b) = accept(&app, &agreement, &researcher(PHARMA, sub), &sha_v1).await;
        assert_eq!(s, 200, "{b}");
    }
    let sha_v2 = publish_text(
        &app,
        "Data-use agreement v2: no re-identification, no linkage.",
    )
    .await;
    let (s, b) = release(&app, &id, &researcher(PHARMA, "res-1")).await;
    assert_problem(s, &b, 409, "agreement_outdated");
    for sub in ["res-1", "res-2"] {
        accept(&app, &agreement, &researcher(PHARMA, sub), &sha_v2).await;
    }
    // A non-member colleague, and another organization's researcher.
    let (s, b) = release(&app, &id, &researcher(PHARMA, "res-3")).await;
    assert_problem(s, &b, 403, "not_a_member");
    let (s, b) = release(&app, &id, &researcher(UNIVERSITY, "prof-1")).await;
    assert_problem(s, &b, 404, "not_found");
    assert_eq!(app.count("releases"), 0);
    assert_eq!(app.count("access_log_entries"), log_before);

    // The release: industry use excludes the academic-only patients.
    let (s, rel) = release(&app, &id, &researcher(PHARMA, "res-2")).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 6, "{rel}");
    assert_eq!(rel["excluded"], 2);
    assert_eq!(rel["excluded_by_reason"]["industry_use_not_consented"], 2);
    assert_eq!(rel["provenance"]["matcher_version"], "duo-match/v1");
    assert_eq!(rel["provenance"]["agreement_text_sha256"], sha_v2);
    assert_eq!(rel["provenance"]["consent_versions"][&version], 6);
    assert_eq!(app.log_entries_with_action("dataset_release"), 6);
    let release_id = rel["id"].as_str().unwrap().to_owned();
    let (s, manifest) = app
        .get(
            &format!("/v1/releases/{release_id}/manifest"),
            Some(&researcher(PHARMA, "res-1")),
        )
        .await;
    assert_eq!(s, 200, "{manifest}");
    let entries = manifest["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 8);
    let excluded: Vec<&Value> = entries.iter().filter(|e| e["included"] == false).collect();
    assert_eq!(excluded.len(), 2);
    assert!(excluded
        .iter()
        .all(|e| e["reason"] == "industry_use_not_consented"));
    assert!(entries
        .iter()
        .all(|e| e["project_sample_id"].as_str().unwrap().starts_with("PS")));
    assert!(
        !manifest.to_string().contains(&genome_ids[0]),
        "the manifest names project IDs only"
    );

    // The patient sees the release in their log, under the agreement.
    app.wait_integrated().await;
    let session = enroll(&app, &both[0].2).await;
    let (s, log) = app
        .get(
            "/v1/portal/access-log?lang=en",
            Some(session["access_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(s, 200);
    let newest = &log["entries"][0]["entry"];
    assert_eq!(newest["action"], "dataset_release", "{log}");
    assert_eq!(newest["legal_basis"]["agreement"]["id"], agreement.as_str());
    assert_eq!(newest["actor"]["org"], PHARMA);

    // Resolution by the audience; the handle's keys are public.
    let handle = rel["handle"].as_str().unwrap().to_owned();
    let (s, jwks) = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(s, 200);
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    let (s, resolved) = resolve(&app, STORE, &handle).await;
    assert_eq!(s, 200, "{resolved}");
    assert_eq!(resolved["objects"].as_array().unwrap().len(), 12);
    assert_eq!(resolved["withheld"].as_array().unwrap().len(), 0);
    assert_eq!(app.log_entries_with_action("handle_resolve"), 6);
    let (_, log) = app
        .get(
            "/v1/portal/access-log?lang=en&limit=1",
            Some(session["access_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        log["entries"][0]["entry"]["action"], "handle_resolve",
        "{log}"
    );
    assert!(log["entries"][0]["explanation"]["who"]
        .as_str()
        .unwrap()
        .contains("genome data store"));
    let (s, b) = resolve(&app, "another-store", &handle).await;
    assert_problem(s, &b, 403, "handle_wrong_audience");
    let mut forged = handle.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (s, b) = resolve(&app, STORE, &forged).await;
    assert_problem(s, &b, 401, "handle_invalid");
    let (s, b) = app
        .post(
            "/v1/handles/resolve",
            &researcher(PHARMA, "res-1"),
            None,
            &json!({ "handle": handle }),
        )
        .await;
    assert_problem(s, &b, 403, "forbidden");
    assert_eq!(app.log_entries_with_action("handle_resolve"), 6);

    // Members register a webhook for recall notices; nobody else may.
    let (receiver, received, _server) = webhook_receiver().await;
    let hooks = format!("/v1/applications/{id}/webhooks");
    let hook_url = json!({ "url": format!("{receiver}/ok") });
    let (s, b) = app
        .post(&hooks, &researcher(PHARMA, "not-a-member"), None, &hook_url)
        .await;
    assert_problem(s, &b, 403, "not_a_member");
    let (s, b) = app
        .post(&hooks, &researcher("another-org", "res-1"), None, &hook_url)
        .await;
    assert_problem(s, &b, 404, "not_found");
    let (s, hook) = app
        .post(&hooks, &researcher(PHARMA, "res-2"), None, &hook_url)
        .await;
    assert_eq!(s, 201, "{hook}");
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let secret = STANDARD
        .decode(
            hook["secret"]
                .as_str()
                .unwrap()
                .strip_prefix("whsec_")
                .unwrap(),
        )
        .unwrap();
    let (_, listed) = app.get(&hooks, Some(&researcher(PHARMA, "res-1"))).await;
    assert_eq!(listed["webhooks"][0]["id"], hook_id.as_str(), "{listed}");
    assert!(listed["webhooks"][0].get("secret").is_none());

    // A withdrawal after the release: recall notice, and the object is withheld.
    let withdrawn = &both[1].0;
    let (s, b) = app
        .post(
            &format!("/v1/patients/{withdrawn}/consents/cancer/withdrawals"),
            &app.staff("hospital-a"),
            Some("withdraw-1"),
            &json!({"signer": {"kind": "patient"}, "explained_by": "nurse-1", "signed_at": now_rfc3339(), "form_hash": FORM_HASH}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, recalls) = app
        .get(
            &format!("/v1/applications/{id}/recalls"),
            Some(&researcher(PHARMA, "res-2")),
        )
        .await;
    assert_eq!(s, 200, "{recalls}");
    assert_eq!(recalls["notices"].as_array().unwrap().len(), 1);
    assert_eq!(recalls["notices"][0]["reason"], "consent_withdrawn");
    // The notice is pushed to the members' webhook, signed, exactly once.
    let mut pushed = Vec::new();
    for _ in 0..500 {
        pushed = received.0.lock().unwrap().clone();
        if !pushed.is_empty() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(pushed.len(), 1, "one recall, one request");
    let (_, webhook_id, stamp, body) = &pushed[0];
    let (ts, signature) = stamp.split_once(' ').unwrap();
    assert!(genomegate::notify::signing::verify(
        &secret,
        webhook_id,
        ts.parse().unwrap(),
        body,
        signature,
        chrono::Utc::now().timestamp(),
        300,
    ));
    let recall: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(recall["id"], webhook_id.as_str());
    assert!(webhook_id.starts_with("recall-"), "{webhook_id}");
    assert_eq!(recall["application"], id.as_str());
    // The list says what the webhook said: the notice, and the same
    // instruction beside it.
    let mut listed = recalls["notices"][0].clone();
    let listed_instruction = listed.as_object_mut().unwrap().remove("instruction");
    assert_eq!(recall["notice"], listed, "{recall}");
    assert_eq!(Some(&recall["instruction"]), listed_instruction.as_ref());
    let instruction = recall["instruction"]["en"].as_str().unwrap();
    assert!(instruction.contains("withdrew"), "{instruction}");
    assert!(instruction.contains("delete"), "{instruction}");
    assert!(recall["instruction"]["ja"]
        .as_str()
        .unwrap()
        .contains("撤回"));
    // The dispatcher records the outcome after the receiver answered.
    let mut deliveries = Value::Null;
    for _ in 0..500 {
        deliveries = app
            .get(
                &format!("{hooks}/{hook_id}/deliveries"),
                Some(&researcher(PHARMA, "res-2")),
            )
            .await
            .1;
        if deliveries["deliveries"][0]["state"] != "pending" {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        deliveries["deliveries"][0]["state"], "delivered",
        "{deliveries}"
    );
    assert_eq!(
        format!("recall-{}", deliveries["deliveries"][0]["index"]),
        *webhook_id
    );
    // The application's webhook hears recalls only, never log receipts.
    app.wait_integrated().await;
    let queued = app.texts(&format!(
        "SELECT CAST(idx AS TEXT) AS t FROM notification_deliveries WHERE endpoint_id = '{hook_id}'"
    ));
    assert_eq!(queued.len(), 1, "{queued:?}");
    let remove = |token: String| {
        let path = format!("{hooks}/{hook_id}");
        let app = &app;
        async move {
            app.send_json(
                reqwest::Method::DELETE,
                &path,
                Some(&token),
                None,
                &Value::Null,
            )
            .await
        }
    };
    let (s, b) = remove(researcher(PHARMA, "not-a-member")).await;
    assert_problem(s, &b, 403, "not_a_member");
    assert_eq!(remove(researcher(PHARMA, "res-1")).await.0, 204);
    let (s, b) = remove(researcher(PHARMA, "res-1")).await;
    assert_problem(s, &b, 404, "not_found");
    let (_, resolved) = resolve(&app, STORE, &handle).await;
    assert_eq!(resolved["objects"].as_array().unwrap().len(), 10);
    assert_eq!(resolved["withheld"][0]["reason"], "consent_withdrawn");

    // Sanctions stop the handle at once; revocation is final.
    let sanction = |state: &str| json!({"state": state, "reason": "breach of the agreement's publication terms"});
    let state_path = format!("/v1/agreements/{agreement}/state");
    let (s, b) = app
        .post(&state_path, &governance(), None, &sanction("suspended"))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = resolve(&app, STORE, &handle).await;
    assert_problem(s, &b, 403, "handle_revoked");
    let (s, b) = release(&app, &id, &researcher(PHARMA, "res-1")).await;
    assert_problem(s, &b, 409, "agreement_suspended");
    app.post(&state_path, &governance(), None, &sanction("active"))
        .await;
    let (s, _) = resolve(&app, STORE, &handle).await;
    assert_eq!(s, 200);
    app.post(&state_path, &governance(), None, &sanction("revoked"))
        .await;
    let (s, b) = resolve(&app, STORE, &handle).await;
    assert_problem(s, &b, 403, "handle_revoked");
    let (s, b) = app
        .post(&state_path, &governance(), None, &sanction("active"))
        .await;
    assert_problem(s, &b, 409, "agreement_revoked");
    let (_, sanctioned) = app
        .get(&format!("/v1/applications/{id}"), Some(&governance()))
        .await;
    let history: Vec<&str> = sanctioned["agreement"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["active", "suspended", "active", "revoked"],
        "{sanctioned}"
    );
    assert_eq!(
        sanctioned["agreement"]["history"][1]["actor"],
        "gov-officer"
    );

    // The list shows each application exactly as its own view does, the
    // decided one beside one still under review.
    let pending = submit(
        &app,
        &researcher(PHARMA, "res-1"),
        &application(&[&ds], &["res-3"], "HMB"),
    )
    .await;
    let (s, list) = app.get("/v1/applications", Some(&governance())).await;
    assert_eq!(s, 200, "{list}");
    let listed = list["applications"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list}");
    for item in listed {
        let (_, own) = app
            .get(
                &format!("/v1/applications/{}", item["id"].as_str().unwrap()),
                Some(&governance()),
            )
            .await;
        assert_eq!(*item, own);
    }
    let decided_item = listed.iter().find(|a| a["id"] == id.as_str()).unwrap();
    assert_eq!(
        decided_item["agreement"]["history"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let pending_item = listed.iter().find(|a| a["id"] == pending["id"]).unwrap();
    assert!(pending_item["agreement"].is_null(), "{pending_item}");
    assert_eq!(pending_item["votes"], 0);
    // Paged, oldest first: the same two, one at a time.
    let mut paged = Vec::new();
    let mut next = String::from("/v1/applications?limit=1");
    loop {
        let (s, page) = app.get(&next, Some(&governance())).await;
        assert_eq!(s, 200, "{page}");
        paged.extend(
            page["applications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].clone()),
        );
        match page["next_after"].as_str() {
            Some(cursor) => next = format!("/v1/applications?limit=1&after={cursor}"),
            None => break,
        }
    }
    let ids: Vec<Value> = listed.iter().map(|a| a["id"].clone()).collect();
    assert_eq!(paged, ids);
    assert_eq!(paged[0], id.as_str(), "oldest first");
    for bad in ["?limit=0", "?limit=501", "?after=nonsense", "?after=12_"] {
        let (s, b) = app
            .get(&format!("/v1/applications{bad}"), Some(&governance()))
            .await;
        assert_problem(s, &b, 422, "validation_failed");
    }
    // A position before or after every instant either database keeps reads
    // as its edge: everything, or nothing (PostgreSQL once refused it as
    // out of range).
    for (edge, listed_after) in [("-533007637401738019_a", 2), ("999999999999999999_a", 0)] {
        let (s, page) = app
            .get(
                &format!("/v1/applications?after={edge}"),
                Some(&governance()),
            )
            .await;
        assert_eq!(s, 200, "{edge}: {page}");
        assert_eq!(
            page["applications"].as_array().unwrap().len(),
            listed_after,
            "{edge}"
        );
    }
    let (_, theirs) = app
        .get("/v1/applications", Some(&researcher(UNIVERSITY, "prof-1")))
        .await;
    assert_eq!(
        theirs["applications"].as_array().unwrap().len(),
        0,
        "{theirs}"
    );

    // Screening finds a valid basis for every release and resolution: the
    // agreement's applicant released, its audience resolved, within its
    // purpose and period.
    let window = format!(
        "/v1/audit/screening?from={}&to={}",
        started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (chrono::Utc::now() + chrono::Duration::minutes(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let (s, report) = app
        .get(
            &window,
            Some(&token_for(&["auditor"], "audit-office", "auditor-1")),
        )
        .await;
    assert_eq!(s, 200, "{report}");
    assert!(report["entries_screened"].as_i64().unwrap() >= 18);
    assert_eq!(report["findings"], json!([]), "{report}");

    // The public register and processing times, without a token.
    let (s, register) = app.get("/v1/transparency/approved-uses", None).await;
    assert_eq!(s, 200);
    assert_eq!(register["approved_uses"][0]["organization"], PHARMA);
    assert_eq!(register["approved_uses"][0]["purpose"]["code"], "HMB");
    assert_eq!(
        register["approved_uses"][0]["datasets"][0],
        "Cancer germline WGS"
    );
    assert_eq!(register["approved_uses"][0]["commercial"], true);
    assert_eq!(register["approved_uses"][0]["recipients_abroad"], false);
    let (s, times) = app.get("/v1/transparency/processing-times", None).await;
    assert_eq!(s, 200);
    assert_eq!(times["completed"], 1, "{times}");
    assert!(times["median_days"].as_f64().unwrap() < 1.0);
    assert_eq!(times["within_standard"], 1.0);
}

async fn refusals_are_named_and_write_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let patients = patients_with_samples(&app, &version, "P", 3, all_permit()).await;
    let ids: Vec<String> = patients.iter().map(|(_, g, _)| g.clone()).collect();
    let hmb = dataset(&app, "Small cohort", json!({"permission": "HMB"}), &ids).await;
    let ncu = dataset(
        &app,
        "Academic only",
        json!({"permission": "HMB", "modifiers": ["NCU"]}),
        &ids,
    )
    .await;
    publish_text(&app, "Data-use agreement v1.").await;
    let prof = researcher(UNIVERSITY, "prof-1");

    // An organization nobody verified.
    let (s, b) = app
        .post(
            "/v1/applications",
            &prof,
            None,
            &application(&[&hmb], &[], "HMB"),
        )
        .await;
    assert_problem(s, &b, 403, "organization_not_verified");
    verify_org(&app, UNIVERSITY, "academic").await;
    verify_org(&app, PHARMA, "industry").await;

    // Forbidden purposes, whatever the datasets allow.
    for forbidden in [
        "insurance_underwriting",
        "employment_decisions",
        "reidentification",
        // Whatever the case or separator, a forbidden name is forbidden.
        "INSURANCE_UNDERWRITING",
        "Employment-Decisions",
    ] {
        let (s, b) = app
            .post(
                "/v1/applications",
                &prof,
                None,
                &application(&[&hmb], &[], forbidden),
            )
            .await;
        assert_problem(s, &b, 422, "purpose_forbidden");
    }
    // Attestations: missing, then expired.
    let (s, b) = app
        .post(
            "/v1/applications",
            &prof,
            None,
            &application(&[&hmb], &[], "HMB"),
        )
        .await;
    assert_problem(s, &b, 403, "attestation_missing");
    attest(&app, UNIVERSITY, "prof-1", "2026-06-30").await;
    let (s, b) = app
        .post(
            "/v1/applications",
            &prof,
            None,
            &application(&[&hmb], &[], "HMB"),
        )
        .await;
    assert_problem(s, &b, 403, "attestation_expired");
    assert_eq!(app.count("applications"), 0);
    attest(&app, UNIVERSITY, "prof-1", "2029-06-30").await;

    // Retries under one Idempotency-Key make one application.
    let body = application(&[&hmb], &[], "HMB");
    let (s, first) = app
        .post("/v1/applications", &prof, Some("apply-1"), &body)
        .await;
    assert_eq!(s, 201, "{first}");
    let (s, again) = app
        .post("/v1/applications", &prof, Some("apply-1"), &body)
        .await;
    assert_eq!((s, &again["id"]), (200, &first["id"]), "{again}");
    let mut other = body.clone();
    other["title"] = json!("Another study");
    let (s, b) = app
        .post("/v1/applications", &prof, Some("apply-1"), &other)
        .await;
    assert_problem(s, &b, 409, "idempotency_key_reused");
    let (s, b) = app
        .post("/v1/applications", &prof, Some("not a key"), &body)
        .await;
    assert_problem(s, &b, 422, "validation_failed");
    let racing = (0..4).map(|_| app.post("/v1/applications", &prof, Some("apply-2"), &other));
    let ids: std::collections::BTreeSet<String> = futures_util::future::join_all(racing)
        .await
        .into_iter()
        .map(|(s, b)| {
            assert!(s == 201 || s == 200, "{s} {b}");
            b["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "concurrent retries name one application");
    assert_eq!(app.count("applications"), 2);

    // DUO deny: an industry applicant on a non-commercial dataset is
    // rejected at once, with the rule that fired.
    attest(&app, PHARMA, "res-1", "2029-06-30").await;
    let denied = submit(
        &app,
        &researcher(PHARMA, "res-1"),
        &application(&[&ncu], &[], "HMB"),
    )
    .await;
    assert_eq!(denied["state"], "rejected", "{denied}");
    assert_eq!(denied["matching"][0]["outcome"], "deny");
    assert!(denied["matching"][0]["rationale"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "commercial_use_excluded"));
    let (s, b) = app
        .post(
            &format!("/v1/applications/{}/votes", denied["id"].as_str().unwrap()),
            &committee("c-1"),
            None,
            &json!({"decision": "approve"}),
        )
        .await;
    assert_problem(s, &b, 409, "application_decided");

    // A cohort below k (3 < 5) is refused and nothing is written.
    let small = submit(&app, &prof, &application(&[&hmb], &[], "HMB")).await;
    let id = small["id"].as_str().unwrap();
    // Conflict of interest: a reviewer from the applicant's organization.
    let (s, b) = app
        .post(
            &format!("/v1/applications/{id}/votes"),
            &token_for(&["review_committee"], UNIVERSITY, "insider"),
            None,
            &json!({"decision": "approve"}),
        )
        .await;
    assert_problem(s, &b, 409, "conflict_of_interest");
    let approved = approve(&app, id).await;
    let agreement = approved["agreement"]["id"].as_str().unwrap();
    let (_, text) = app.get("/v1/agreement-texts/current", Some(&prof)).await;
    let (s, _) = accept(&app, agreement, &prof, text["sha256"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    let log_before = app.count("access_log_entries");
    let (s, b) = release(&app, id, &prof).await;
    assert_problem(s, &b, 409, "cohort_below_minimum");
    assert_eq!(app.count("releases"), 0);
    assert_eq!(app.count("release_samples"), 0);
    assert_eq!(app.count("access_log_entries"), log_before);
    assert_eq!(app.log_entries_with_action("dataset_release"), 0);

    // A period that has not begun: no release yet, whatever else holds.
    let mut later = application(&[&hmb], &[], "HMB");
    later["starts_on"] = json!(days_from_today(60));
    let early = submit(&app, &prof, &later).await;
    let early_id = early["id"].as_str().unwrap();
    let early_agreement = approve(&app, early_id).await["agreement"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = accept(
        &app,
        &early_agreement,
        &prof,
        text["sha256"].as_str().unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = release(&app, early_id, &prof).await;
    assert_problem(s, &b, 409, "agreement_not_started");
    assert_eq!(app.count("releases"), 0);
    assert_eq!(app.count("release_samples"), 0);
    assert_eq!(app.count("access_log_entries"), log_before);

    // An unknown genome store.
    let (s, b) = app
        .post(
            &format!("/v1/applications/{id}/releases"),
            &prof,
            None,
            &json!({"audience": "somewhere-else"}),
        )
        .await;
    assert_problem(s, &b, 422, "unknown_audience");

    // Other callers cannot see the application exists.
    let (s, b) = app
        .get(
            &format!("/v1/applications/{id}"),
            Some(&researcher(PHARMA, "res-1")),
        )
        .await;
    assert_problem(s, &b, 404, "not_found");
    let (s, b) = app
        .post("/v1/datasets", &prof, None, &json!({"name": "x", "domain": "cancer", "terms": {"permission": "GRU"}, "portfolio": "basic_research"}))
        .await;
    assert_problem(s, &b, 403, "forbidden");
}

/// A release in pages of two samples over two datasets, once with a spare
/// connection (the cohort is read on it while the transaction writes) and
/// once with a pool of one (read in turn on the transaction's connection).
/// Both give the same manifest, tallies and log entries: one entry per
/// included patient and dataset, counting samples that span pages.
async fn a_release_pages_its_cohort_alike_on_one_connection_or_two(backend: Backend) {
    let mut outcomes = Vec::new();
    for pool_size in ["8", "1"] {
        let options = Options {
            env: vec![
                ("GENOMEGATE__DATABASE__RELEASE_PAGE", "2".into()),
                ("GENOMEGATE__DATABASE__POOL_SIZE", pool_size.into()),
            ],
            ..Options::default()
        };
        let Some(app) = TestApp::spawn_with(backend, options).await else {
            return;
        };
        outcomes.push(release_in_pages(&app).await);
    }
    assert_eq!(
        outcomes[0], outcomes[1],
        "one connection or two, one outcome"
    );
}

#[derive(Debug, PartialEq)]
struct PagedRelease {
    included: Value,
    excluded: Value,
    excluded_by_reason: Value,
    /// (dataset name, included, reason), sorted: the order follows the
    /// patients' pseudonyms, which differ between the two services' keys.
    manifest: Vec<(String, bool, String)>,
    /// (patient's local ID, dataset name, objects) of every release entry.
    entries: Vec<(String, String, u64)>,
}

async fn release_in_pages(app: &TestApp) -> PagedRelease {
    let version = app.publish("cancer", &first_draft()).await;
    let both = patients_with_samples(app, &version, "BOTH", 4, all_permit()).await;
    let academic = patients_with_samples(app, &version, "ACAD", 2, academic_only()).await;
    // BOTH-0 gives a second sample, so their samples can fall on two pages.
    let (s, second) = app
        .register_sample(
            &app.staff("hospital-a"),
            &sample_body("MRN-BOTH-0", "S2-MRN-BOTH-0", "MRN-BOTH-0-b"),
        )
        .await;
    assert_eq!(s, 201, "{second}");
    let mut all: Vec<String> = both.iter().chain(&academic).map(|p| p.1.clone()).collect();
    all.push(second["genome_id"].as_str().unwrap().to_owned());
    // Four samples in pages of two: the last patient's sample ends a full
    // page, so their entry is written after it, on its own.
    let some: Vec<String> = both.iter().map(|p| p.1.clone()).collect();
    let hmb = json!({"permission": "HMB"});
    let first = dataset(app, "All seven", hmb.clone(), &all).await;
    let other = dataset(app, "Four of them", hmb, &some).await;
    verify_org(app, PHARMA, "industry").await;
    attest(app, PHARMA, "res-1", "2029-01-10").await;
    let sha = publish_text(app, "Data-use agreement v1.").await;
    let view = submit(
        app,
        &researcher(PHARMA, "res-1"),
        &application(&[&first, &other], &[], "HMB"),
    )
    .await;
    let id = view["id"].as_str().unwrap().to_owned();
    let decided = approve(app, &id).await;
    let agreement = decided["agreement"]["id"].as_str().unwrap().to_owned();
    let (s, b) = accept(app, &agreement, &researcher(PHARMA, "res-1"), &sha).await;
    assert_eq!(s, 200, "{b}");

    let (s, rel) = release(app, &id, &researcher(PHARMA, "res-1")).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 9, "{rel}");
    assert_eq!(rel["excluded"], 2, "{rel}");
    assert_eq!(rel["provenance"]["consent_versions"][&version], 9);
    let release_id = rel["id"].as_str().unwrap();
    let (s, page) = app
        .get(
            &format!("/v1/releases/{release_id}/manifest"),
            Some(&researcher(PHARMA, "res-1")),
        )
        .await;
    assert_eq!(s, 200, "{page}");
    let name = |dataset: &str| {
        if dataset == first {
            "All seven".to_owned()
        } else {
            assert_eq!(dataset, other);
            "Four of them".to_owned()
        }
    };
    let rows = page["entries"].as_array().unwrap();
    let positions: Vec<i64> = rows
        .iter()
        .map(|r| r["position"].as_i64().unwrap())
        .collect();
    // Eleven distinct positions in the project's keyed order (decision
    // 0030), listed in that order; BOTH-0's sample in both datasets meets
    // itself and takes the next free position.
    assert_eq!(positions.len(), 11, "{page}");
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{page}");
    assert!(positions[0] >= 1, "{page}");
    assert!(
        positions[10] > 1 << 40,
        "spread over the span, not counted: {positions:?}"
    );
    // Each included sample names its patient as this project sees them:
    // BOTH-0's two samples in "All seven" and one in "Four of them" share
    // an ID; the other three patients have one sample in each dataset.
    // Excluded samples say nothing of their patient.
    let mut samples_per_patient: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        match r["project_patient_id"].as_str() {
            Some(id) => {
                assert!(r["included"].as_bool().unwrap(), "{r}");
                *samples_per_patient.entry(id).or_default() += 1;
            }
            None => assert!(!r["included"].as_bool().unwrap(), "{r}"),
        }
    }
    let mut counts: Vec<usize> = samples_per_patient.values().copied().collect();
    counts.sort();
    assert_eq!(counts, [2, 2, 2, 3], "{page}");
    assert!(
        samples_per_patient.keys().all(|id| id.starts_with("PP")),
        "{samples_per_patient:?}"
    );
    let mut manifest: Vec<(String, bool, String)> = rows
        .iter()
        .map(|r| {
            (
                name(r["dataset"].as_str().unwrap()),
                r["included"].as_bool().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    manifest.sort();

    // One entry per included patient and dataset.
    let local_of = |patient: &str| {
        both.iter()
            .chain(&academic)
            .position(|p| p.0 == patient)
            .map(|i| {
                if i < 4 {
                    format!("BOTH-{i}")
                } else {
                    format!("ACAD-{}", i - 4)
                }
            })
            .unwrap()
    };
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Binary)]
        entry: Vec<u8>,
    }
    use diesel::RunQueryDsl;
    let mut conn = app.raw_db();
    let stored: Vec<Row> = genomegate::db_run!(&mut conn, c => diesel::sql_query(
        "SELECT entry FROM access_log_entries WHERE action = 'dataset_release'"
    )
    .load(c)
    .unwrap());
    let mut entries: Vec<(String, String, u64)> = stored
        .iter()
        .map(|r| {
            let e: Value = serde_json::from_slice(&r.entry).unwrap();
            let scope = &e["scope"]["dataset"];
            (
                local_of(e["patient"].as_str().unwrap()),
                name(scope["dataset"].as_str().unwrap()),
                scope["objects"].as_u64().unwrap(),
            )
        })
        .collect();
    entries.sort();
    let mut expected = vec![
        ("BOTH-0".to_owned(), "All seven".to_owned(), 2),
        ("BOTH-0".to_owned(), "Four of them".to_owned(), 1),
    ];
    for i in 1..4 {
        for dataset in ["All seven", "Four of them"] {
            expected.push((format!("BOTH-{i}"), dataset.to_owned(), 1));
        }
    }
    expected.sort();
    assert_eq!(entries, expected);

    // Small pages, followed by `next_after`: the manifest five decisions
    // at a time, resolution two included samples at a time.
    let mut after: Option<i64> = None;
    let mut sizes = Vec::new();
    loop {
        let query = after.map_or(String::new(), |a| format!("&after={a}"));
        let (s, page) = app
            .get(
                &format!("/v1/releases/{release_id}/manifest?limit=5{query}"),
                Some(&researcher(PHARMA, "res-1")),
            )
            .await;
        assert_eq!(s, 200, "{page}");
        sizes.push(page["entries"].as_array().unwrap().len());
        after = page["next_after"].as_i64();
        if after.is_none() {
            break;
        }
    }
    assert_eq!(sizes, [5, 5, 1]);
    let handle = rel["handle"].as_str().unwrap();
    let (mut served, pages) = resolve_in_pages(app, handle, 2).await;
    served.sort();
    served.dedup();
    let mut included: Vec<String> = rows
        .iter()
        .filter(|r| r["included"] == true)
        .map(|r| r["project_sample_id"].as_str().unwrap().to_owned())
        .collect();
    included.sort();
    included.dedup();
    // Nine inclusions of five distinct samples (four are in both datasets).
    assert_eq!(served, included, "every included sample is served");
    assert_eq!(included.len(), 5);
    assert_eq!(pages, 5, "nine inclusions in pages of two");

    // Manifests and releases are never changed or removed, even by a
    // direct database connection.
    for statement in [
        "UPDATE release_samples SET included = NOT included",
        "DELETE FROM release_samples",
        "DELETE FROM releases",
    ] {
        let refused = genomegate::db_run!(&mut conn, c => diesel::sql_query(statement).execute(c));
        assert!(refused.is_err(), "{statement} was allowed");
    }
    assert_eq!(app.count("release_samples"), 11);
    PagedRelease {
        included: rel["included"].clone(),
        excluded: rel["excluded"].clone(),
        excluded_by_reason: rel["excluded_by_reason"].clone(),
        manifest,
        entries,
    }
}

/// Migration 000009 copied each dataset sample's patient onto its row.
/// Applied to a database that already holds datasets, every row must name
/// its sample's patient, and releases must work on them.
async fn migration_000009_names_the_patient_of_existing_dataset_samples(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let patients = patients_with_samples(&app, &version, "MIG", 5, all_permit()).await;
    let genome_ids: Vec<String> = patients.iter().map(|(_, g, _)| g.clone()).collect();
    let first = dataset(
        &app,
        "Before 000009",
        json!({"permission": "GRU"}),
        &genome_ids,
    )
    .await;
    dataset(
        &app,
        "Also before",
        json!({"permission": "HMB"}),
        &genome_ids[..2],
    )
    .await;

    let mut conn = app.raw_db();
    revert_through(&mut conn, "000009");
    let rows = app.texts("SELECT 'rows ' || CAST(COUNT(*) AS TEXT) AS t FROM dataset_samples");
    assert_eq!(rows, ["rows 7"]);
    genomegate::db::run_migrations(&mut conn).unwrap();
    let owners = app.texts(
        "SELECT d.dataset_id || ' ' || d.genome_id || ' ' || \
                CASE WHEN d.patient_pseudonym = g.patient_pseudonym THEN 'owner' ELSE 'wrong' END AS t \
           FROM dataset_samples d JOIN genome_samples g ON g.genome_id = d.genome_id ORDER BY t",
    );
    assert_eq!(owners.len(), 7, "{owners:?}");
    assert!(owners.iter().all(|o| o.ends_with(" owner")), "{owners:?}");

    // A release over the migrated rows includes every consenting patient.
    verify_org(&app, UNIVERSITY, "academic").await;
    attest(&app, UNIVERSITY, "res-1", "2029-01-10").await;
    let sha = publish_text(&app, "Data-use agreement v1.").await;
    let view = submit(
        &app,
        &researcher(UNIVERSITY, "res-1"),
        &application(&[&first], &[], "GRU"),
    )
    .await;
    let id = view["id"].as_str().unwrap().to_owned();
    let approved = approve(&app, &id).await;
    let agreement = approved["agreement"]["id"].as_str().unwrap().to_owned();
    let (s, b) = accept(&app, &agreement, &researcher(UNIVERSITY, "res-1"), &sha).await;
    assert_eq!(s, 200, "{b}");
    let (s, rel) = release(&app, &id, &researcher(UNIVERSITY, "res-1")).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 5, "{rel}");
}

/// What a refused submission must leave unwritten.
fn application_tables(app: &TestApp) -> [i64; 3] {
    [
        app.count("applications"),
        app.count("application_partner_orgs"),
        app.count("application_transitions"),
    ]
}

/// A consortium: an academic applicant and a partner researcher from an
/// industry organization who has the same subject as an applicant member.
/// Members are told apart by organization; the partner's organization makes
/// the use commercial, finds the application in its list, must accept the
/// agreement, may release, and is screened as acting under the agreement.
/// The register, not the applicant, says whether data goes abroad.
async fn partner_members_from_other_organizations_share_an_application(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let started = chrono::Utc::now() - chrono::Duration::minutes(1);
    let version = app.publish("cancer", &first_draft()).await;
    let both = patients_with_samples(&app, &version, "BOTH", 5, all_permit()).await;
    let academic = patients_with_samples(&app, &version, "ACAD", 3, academic_only()).await;
    let genome_ids: Vec<String> = both
        .iter()
        .chain(&academic)
        .map(|(_, g, _)| g.clone())
        .collect();
    let ds = dataset(
        &app,
        "Consortium WGS",
        json!({"permission": "HMB"}),
        &genome_ids,
    )
    .await;
    let sha = publish_text(&app, "Data-use agreement v1: no re-identification.").await;
    verify_org(&app, UNIVERSITY, "academic").await;
    attest(&app, UNIVERSITY, "res-1", "2029-01-10").await;
    let lead = researcher(UNIVERSITY, "res-1");
    let with_partners = |partners: Value, abroad: bool| {
        let mut body = application(&[&ds], &[], "HMB");
        body["partner_members"] = partners;
        body["recipients_abroad"] = json!(abroad);
        body
    };
    let pharma_partner = json!([{"org": PHARMA, "researcher": "res-1"}]);

    // Refusals, each writing nothing: an unregistered partner organization,
    // a partner without ethics training, an own researcher listed as a
    // partner, and a partner registered abroad without a declared transfer.
    let before = application_tables(&app);
    let (s, b) = app
        .post(
            "/v1/applications",
            &lead,
            None,
            &with_partners(pharma_partner.clone(), false),
        )
        .await;
    assert_problem(s, &b, 403, "organization_not_verified");
    assert!(b["detail"].as_str().unwrap().contains(PHARMA), "{b}");
    verify_org(&app, PHARMA, "industry").await;
    let (s, b) = app
        .post(
            "/v1/applications",
            &lead,
            None,
            &with_partners(pharma_partner.clone(), false),
        )
        .await;
    assert_problem(s, &b, 403, "attestation_missing");
    assert!(
        b["detail"].as_str().unwrap().contains("res-1 of pharma-co"),
        "{b}"
    );
    attest(&app, PHARMA, "res-1", "2029-01-10").await;
    let (s, b) = app
        .post(
            "/v1/applications",
            &lead,
            None,
            &with_partners(json!([{"org": UNIVERSITY, "researcher": "res-9"}]), false),
        )
        .await;
    assert_problem(s, &b, 422, "validation_failed");
    verify_org_in(&app, "univ-us", "academic", "US").await;
    attest(&app, "univ-us", "res-7", "2029-01-10").await;
    let (s, b) = app
        .post(
            "/v1/applications",
            &lead,
            None,
            &with_partners(json!([{"org": "univ-us", "researcher": "res-7"}]), false),
        )
        .await;
    assert_problem(s, &b, 422, "validation_failed");
    assert!(
        b.to_string().contains("univ-us is registered outside JP"),
        "{b}"
    );
    assert_eq!(application_tables(&app), before);

    // Accepted: the industry partner makes the use commercial.
    let view = submit(&app, &lead, &with_partners(pharma_partner.clone(), false)).await;
    let id = view["id"].as_str().unwrap().to_owned();
    assert_eq!(view["commercial"], true, "{view}");
    assert_eq!(
        (&view["recipients_abroad"], &view["transfers_abroad"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(view["members"], json!(["res-1"]));
    assert_eq!(view["partner_members"], pharma_partner);

    // The partner's researchers find it; only the member may act on it.
    let partner = researcher(PHARMA, "res-1");
    let (s, listed) = app.get("/v1/applications", Some(&partner)).await;
    assert_eq!(s, 200, "{listed}");
    assert_eq!(listed["applications"][0]["id"], id.as_str(), "{listed}");
    let (s, _) = app
        .get(
            &format!("/v1/applications/{id}"),
            Some(&researcher(PHARMA, "res-2")),
        )
        .await;
    assert_eq!(s, 200, "a partner organization reads its applications");
    let (s, listed) = app
        .get("/v1/applications", Some(&researcher("other-org", "res-1")))
        .await;
    assert_eq!(listed["applications"], json!([]), "{s} {listed}");

    // A reviewer from the partner organization has a conflict of interest.
    let (s, b) = app
        .post(
            &format!("/v1/applications/{id}/votes"),
            &token_for(&["review_committee"], PHARMA, "c-9"),
            None,
            &json!({"decision": "approve"}),
        )
        .await;
    assert_problem(s, &b, 409, "conflict_of_interest");
    let decided = approve(&app, &id).await;
    let agreement = decided["agreement"]["id"].as_str().unwrap().to_owned();

    // Every member accepts, each under their own organization: the lead's
    // acceptance does not stand in for the partner with the same subject.
    let (s, b) = accept(&app, &agreement, &lead, &sha).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = release(&app, &id, &lead).await;
    assert_problem(s, &b, 409, "agreement_not_accepted");
    assert!(
        b["detail"].as_str().unwrap().contains("res-1 of pharma-co"),
        "{b}"
    );
    let (s, b) = accept(&app, &agreement, &researcher(PHARMA, "res-2"), &sha).await;
    assert_problem(s, &b, 403, "not_a_member");
    let (s, b) = accept(&app, &agreement, &partner, &sha).await;
    assert_eq!(s, 200, "{b}");
    let mut accepted: Vec<Value> = b["agreement"]["accepted_current_text"]
        .as_array()
        .unwrap()
        .clone();
    accepted.sort_by_key(|m| m["org"].as_str().unwrap().to_owned());
    assert_eq!(
        accepted,
        [
            json!({"org": PHARMA, "researcher": "res-1"}),
            json!({"org": UNIVERSITY, "researcher": "res-1"})
        ]
    );

    // The register is read again at release: re-registered abroad after
    // approval, the partner's organization reaches only patients who
    // consented to international transfer (none here), so the cohort falls
    // below k and nothing is released.
    verify_org_in(&app, PHARMA, "industry", "US").await;
    let (s, b) = release(&app, &id, &partner).await;
    assert_problem(s, &b, 409, "cohort_below_minimum");
    assert!(
        b["detail"].as_str().unwrap().starts_with("0 samples"),
        "{b}"
    );
    assert_eq!(app.count("releases"), 0);
    // The public register says so too: an academic applicant's use is
    // industrial through its partner, and now sends data abroad.
    let (_, register) = app.get("/v1/transparency/approved-uses", None).await;
    assert_eq!(register["approved_uses"][0]["commercial"], true);
    assert_eq!(register["approved_uses"][0]["recipients_abroad"], true);
    // So does the application: declared with no recipient abroad, it is a
    // transfer abroad now.
    let (_, view) = app
        .get(&format!("/v1/applications/{id}"), Some(&partner))
        .await;
    assert_eq!(
        (&view["recipients_abroad"], &view["transfers_abroad"]),
        (&json!(false), &json!(true)),
        "{view}"
    );
    verify_org(&app, PHARMA, "industry").await;

    // The partner releases; industry use excludes the academic-only patients.
    let (s, rel) = release(&app, &id, &partner).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 5, "{rel}");
    assert_eq!(rel["excluded_by_reason"]["industry_use_not_consented"], 3);

    // Screening sees the partner acting under the agreement.
    let window = format!(
        "/v1/audit/screening?from={}&to={}",
        started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (chrono::Utc::now() + chrono::Duration::minutes(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    app.wait_integrated().await;
    let (s, report) = app
        .get(
            &window,
            Some(&token_for(&["auditor"], "audit-office", "auditor-1")),
        )
        .await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["findings"], json!([]), "{report}");

    // The public register names the partner organization.
    let (_, register) = app.get("/v1/transparency/approved-uses", None).await;
    assert_eq!(register["approved_uses"][0]["organization"], UNIVERSITY);
    assert_eq!(
        register["approved_uses"][0]["partner_organizations"],
        json!([PHARMA])
    );
    assert_eq!(register["approved_uses"][0]["recipients_abroad"], false);
}

/// Acceptances recorded before migration 000012 name no organization; the
/// migration gives each the applicant's, so a release still finds them.
async fn migration_000012_names_the_organization_of_existing_acceptances(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let patients = patients_with_samples(&app, &version, "M12", 5, all_permit()).await;
    let ids: Vec<String> = patients.iter().map(|(_, g, _)| g.clone()).collect();
    let ds = dataset(&app, "Before 000012", json!({"permission": "HMB"}), &ids).await;
    let sha = publish_text(&app, "Data-use agreement v1.").await;
    verify_org(&app, PHARMA, "industry").await;
    attest(&app, PHARMA, "res-1", "2029-01-10").await;
    let lead = researcher(PHARMA, "res-1");
    let id = submit(&app, &lead, &application(&[&ds], &[], "HMB")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agreement = approve(&app, &id).await["agreement"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = accept(&app, &agreement, &lead, &sha).await;
    assert_eq!(s, 200, "{b}");

    let mut conn = app.raw_db();
    revert_through(&mut conn, "000012");
    assert_eq!(app.count("agreement_acceptances"), 1);
    genomegate::db::run_migrations(&mut conn).unwrap();
    assert_eq!(
        app.texts("SELECT member_org AS t FROM agreement_acceptances"),
        [PHARMA]
    );
    let (s, rel) = release(&app, &id, &lead).await;
    assert_eq!(s, 201, "{rel}");
}

/// A parent consented for a child more than a year ago. While the child is a
/// minor, the parent's consent releases their sample; once the child has
/// come of age, it no longer does (decision 0026): resolution withholds
/// the sample, a new release excludes it (`reached_majority`), the consent
/// read and the hospital's work list say which items need the patient's
/// own answer, and the patient's own change on the industry item lets it
/// out again.
async fn a_minor_who_came_of_age_is_released_only_on_their_own_consent(backend: Backend) {
    let Some((app, clock)) = TestApp::spawn_with_shifted_clock(backend).await else {
        return;
    };
    let (version, child, child_genome_id) =
        child_with_sample(&app, &clock, "MRN-CHILD", chrono::Duration::days(400)).await;
    let staff = app.staff("hospital-a");
    // The code printed back then has expired; the hospital issues another.
    let (s, code) = app
        .post(
            &format!("/v1/patients/{child}/enrollment-codes"),
            &staff,
            None,
            &json!({}),
        )
        .await;
    assert_eq!(s, 201, "{code}");
    let session = enroll(&app, code["code"].as_str().unwrap()).await;

    let adults = patients_with_samples(&app, &version, "ADULT", 5, all_permit()).await;
    let mut genome_ids: Vec<String> = adults.iter().map(|p| p.1.clone()).collect();
    genome_ids.push(child_genome_id);
    let majority_on = |day: String| {
        let path = format!("/v1/patients/{child}/status");
        let body = json!({"majority_on": day, "deceased_on": null});
        let (app, staff) = (&app, &staff);
        async move {
            let (s, b) = put(app, &path, staff, &body).await;
            assert_eq!(s, 200, "{b}");
        }
    };
    majority_on(days_from_today(365)).await;

    let id = one_use_of(&app, (PHARMA, "industry", "res-1"), &genome_ids, "HMB").await;

    // A minor: the parent speaks for them.
    let (s, rel) = release(&app, &id, &researcher(PHARMA, "res-1")).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 6, "{rel}");
    let handle = rel["handle"].as_str().unwrap().to_owned();
    let samples_served = |page: &Value| {
        let ids: std::collections::BTreeSet<&str> = page["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["project_sample_id"].as_str().unwrap())
            .collect();
        ids.len()
    };
    let (s, page) = resolve(&app, STORE, &handle).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(samples_served(&page), 6, "{page}");
    assert_eq!(page["withheld"], json!([]));
    let (_, mine) = app
        .get(
            "/v1/portal/consents",
            Some(session["access_token"].as_str().unwrap()),
        )
        .await;
    assert!(
        mine["consents"][0].get("needs_own_consent").is_none(),
        "a minor: nothing to answer yet {mine}"
    );

    // Of age since a month ago, never asked themselves. Recording that
    // recalls the sample from the release at once, in the same transaction.
    let recalls = || async {
        let (s, b) = app
            .get(
                &format!("/v1/applications/{id}/recalls"),
                Some(&researcher(PHARMA, "res-1")),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b["notices"].as_array().unwrap().clone()
    };
    assert_eq!(recalls().await, Vec::<Value>::new());
    majority_on(days_from_today(-30)).await;
    let notices = recalls().await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["reason"], "reached_majority");
    assert_eq!(notices[0]["release"], rel["id"]);
    // Recorded again (or corrected by a day): nothing more to recall.
    majority_on(days_from_today(-30)).await;
    majority_on(days_from_today(-31)).await;
    assert_eq!(recalls().await.len(), 1);
    let resolved_before = app.log_entries_with_action("handle_resolve");
    let (s, page) = resolve(&app, STORE, &handle).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(samples_served(&page), 5, "{page}");
    let withheld = page["withheld"].as_array().unwrap();
    assert_eq!(withheld.len(), 1, "{page}");
    assert_eq!(withheld[0]["reason"], "reached_majority");
    assert_eq!(
        app.log_entries_with_action("handle_resolve"),
        resolved_before + 5,
        "the withheld patient is not logged as read"
    );

    let (s, consent) = app
        .get(
            &format!("/v1/patients/{child}/consents/cancer"),
            Some(&staff),
        )
        .await;
    assert_eq!(s, 200, "{consent}");
    let industry = consent["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == "secondary_use_industry")
        .unwrap();
    assert_eq!(industry["decision"], "permit", "the record is unchanged");
    assert_eq!(industry["needs_own_consent"], true, "{consent}");
    let lapsed_items = || async {
        let (s, tasks) = app
            .get("/v1/reconsent-tasks?family=cancer", Some(&staff))
            .await;
        assert_eq!(s, 200, "{tasks}");
        let tasks = tasks["tasks"].as_array().unwrap().clone();
        assert!(
            tasks.iter().all(|t| t["patient_ref"] == child.as_str()),
            "{tasks:?}"
        );
        tasks
            .iter()
            .filter(|t| t["reason"] == "reached_majority")
            .flat_map(|t| t["items"].as_array().unwrap().clone())
            .map(|i| {
                assert_eq!(i["change"], "signed_by_proxy", "{i}");
                i["key"].as_str().unwrap().to_owned()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lapsed_items().await,
        [
            "ccat_registration",
            "recontact",
            "secondary_use_academic",
            "secondary_use_industry"
        ]
    );

    // The patient sees it too.
    let (s, mine) = app
        .get(
            "/v1/portal/consents",
            Some(session["access_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(s, 200, "{mine}");
    assert_eq!(
        mine["consents"][0]["needs_own_consent"],
        json!([
            "ccat_registration",
            "recontact",
            "secondary_use_academic",
            "secondary_use_industry"
        ])
    );
    // ...and was told, once, in their access log: the service recorded
    // which of the parent's permits lapsed. Recording the day again, and
    // the daily sweep (every 100 ms in tests), told nothing more.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let told = app
        .lapses_told(session["access_token"].as_str().unwrap())
        .await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["entry"]["actor"]["role"], "service");
    assert_eq!(
        told[0]["entry"]["legal_basis"],
        json!({"consent": {"version": version, "items": mine["consents"][0]["needs_own_consent"]}})
    );
    assert!(
        told[0]["explanation"]["summary"]
            .as_str()
            .unwrap()
            .contains("what your proxy permitted in your cancer consent record"),
        "{told:?}"
    );

    let (s, rel) = release(&app, &id, &researcher(PHARMA, "res-1")).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 5, "{rel}");
    assert_eq!(rel["excluded_by_reason"], json!({"reached_majority": 1}));
    let (_, manifest) = app
        .get(
            &format!("/v1/releases/{}/manifest", rel["id"].as_str().unwrap()),
            Some(&researcher(PHARMA, "res-1")),
        )
        .await;
    let excluded: Vec<&Value> = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["included"] == false)
        .collect();
    assert_eq!(excluded.len(), 1, "{manifest}");
    assert_eq!(excluded[0]["reason"], "reached_majority");

    // The patient's own answer on industry use.
    let own = json!({"document_version": version, "decisions": {"secondary_use_industry": "permit"},
        "signer": {"kind": "patient"}, "explained_by": "nurse-2", "signed_at": now_rfc3339(), "form_hash": FORM_HASH});
    let (s, b) = app
        .post(
            &format!("/v1/patients/{child}/consents/cancer/changes"),
            &staff,
            Some("k-own"),
            &own,
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        lapsed_items().await,
        ["ccat_registration", "recontact", "secondary_use_academic"]
    );
    let (s, rel) = release(&app, &id, &researcher(PHARMA, "res-1")).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 6, "{rel}");
}

/// One dataset released to an industrial and an academic application. A
/// consent change recalls a sample only from the releases whose use it
/// takes back, with that use's reason: an item neither use relies on
/// recalls nothing, and a sample is never recalled twice for one loss.
async fn recalls_follow_what_each_use_relies_on(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    // Six patients: the minimum cohort is five.
    let patients = patients_with_samples(&app, &version, "R", 6, all_permit()).await;
    let genome_ids: Vec<String> = patients.iter().map(|p| p.1.clone()).collect();
    verify_org(&app, PHARMA, "industry").await;
    verify_org(&app, UNIVERSITY, "academic").await;
    attest(&app, PHARMA, "res-1", "2029-01-10").await;
    attest(&app, UNIVERSITY, "prof-1", "2029-01-10").await;
    let ds = dataset(
        &app,
        "Cancer germline",
        json!({"permission": "HMB"}),
        &genome_ids,
    )
    .await;
    let sha = publish_text(&app, "Data-use agreement v1.").await;
    let mut released = Vec::new();
    for (org, sub) in [(PHARMA, "res-1"), (UNIVERSITY, "prof-1")] {
        let token = researcher(org, sub);
        let id = ready_to_release(&app, &token, &[&ds], "HMB", &sha).await;
        let (s, rel) = release(&app, &id, &token).await;
        assert_eq!(s, 201, "{rel}");
        assert_eq!(rel["included"], 6, "{rel}");
        released.push((id, token));
    }
    let reasons = |n: usize| {
        let (id, token) = released[n].clone();
        let app = &app;
        async move {
            let (s, b) = app
                .get(&format!("/v1/applications/{id}/recalls"), Some(&token))
                .await;
            assert_eq!(s, 200, "{b}");
            b["notices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["reason"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let record = |n: usize, what: &'static str, key: &'static str, body: Value| {
        signed_change(&app, &patients[n].0, what, key, body)
    };
    let recall_rows = || app.count("recall_notices");

    // Patient 0 takes back industry use: the industrial release is recalled.
    record(
        0,
        "changes",
        "r-0",
        json!({"document_version": version, "decisions": {"secondary_use_industry": "deny"}}),
    )
    .await;
    assert_eq!(reasons(0).await, ["industry_use_not_consented"]);
    assert_eq!(reasons(1).await, Vec::<String>::new());
    // Then changes an item neither use relies on: no second recall.
    record(
        0,
        "changes",
        "r-1",
        json!({"document_version": version, "decisions": {"recontact": "deny"}}),
    )
    .await;
    assert_eq!(recall_rows(), 1);

    // Patient 1 withdraws recontact only: both releases keep the sample.
    record(1, "withdrawals", "r-2", json!({"items": ["recontact"]})).await;
    assert_eq!(recall_rows(), 1);

    // Patient 2 signs the form again, academic use only: a known patient's
    // grant is checked like any change (on PostgreSQL it leaves the
    // one-statement path for the general one).
    let (s, b) = app
        .grant("hospital-a", "MRN-R-2", &version, academic_only(), "r-3")
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        reasons(0).await,
        ["industry_use_not_consented", "industry_use_not_consented"]
    );
    assert_eq!(reasons(1).await, Vec::<String>::new());

    // Patient 3 withdraws everything: both releases are recalled.
    record(3, "withdrawals", "r-4", json!({})).await;
    assert_eq!(
        reasons(0).await,
        [
            "industry_use_not_consented",
            "industry_use_not_consented",
            "consent_withdrawn"
        ]
    );
    assert_eq!(reasons(1).await, ["consent_withdrawn"]);
    // Patient 0 then withdraws everything too: the academic release loses
    // them now; the industrial one was told already.
    record(0, "withdrawals", "r-5", json!({})).await;
    assert_eq!(reasons(0).await.len(), 3);
    assert_eq!(reasons(1).await, ["consent_withdrawn", "consent_withdrawn"]);

    // The university is re-registered as industry: its application shows
    // the use as the gate now applies it, industrial, though it was
    // submitted as academic, and its release loses, in the same request,
    // patient 2, who refused industry use (the withdrawn were told
    // already). Verified again unchanged, or academic again, nothing is
    // recalled; the pharma release is untouched throughout.
    let (id, token) = released[1].clone();
    let path = format!("/v1/applications/{id}");
    let commercial = || async { app.get(&path, Some(&token)).await.1["commercial"].clone() };
    let industrial_release = reasons(0).await;
    assert_eq!(commercial().await, false);
    verify_org(&app, UNIVERSITY, "industry").await;
    assert_eq!(commercial().await, true);
    let told = [
        "consent_withdrawn",
        "consent_withdrawn",
        "industry_use_not_consented",
    ];
    assert_eq!(reasons(1).await, told);
    verify_org(&app, UNIVERSITY, "industry").await;
    assert_eq!(reasons(1).await, told);
    verify_org(&app, UNIVERSITY, "academic").await;
    assert_eq!(commercial().await, false);
    assert_eq!(reasons(1).await, told);
    // Re-registered abroad, the university's use is a transfer abroad: no
    // patient here consented to one, so every sample still served (patient
    // 2's again, since the use is academic once more) is recalled.
    verify_org_in(&app, UNIVERSITY, "academic", "US").await;
    let abroad = reasons(1).await;
    assert_eq!(abroad.len(), told.len() + 4, "{abroad:?}");
    assert!(abroad[told.len()..]
        .iter()
        .all(|r| r == "international_transfer_not_consented"));
    assert_eq!(reasons(0).await, industrial_release);
    let notices = app.count("recall_notices");
    verify_org(&app, UNIVERSITY, "academic").await;
    assert_eq!(app.count("recall_notices"), notices);
}

/// Nobody records the day a minor comes of age; the daily sweep notices it.
/// A parent's consent released the child's sample; on the day after their
/// majority the release's members get a recall notice (`reached_majority`),
/// once, however often the sweep runs.
async fn the_day_a_minor_comes_of_age_recalls_what_their_parent_permitted(backend: Backend) {
    let Some((app, clock)) = TestApp::spawn_with_shifted_clock(backend).await else {
        return;
    };
    let (id, token, child) = a_minor_among_adults(&app, &clock, 2).await;
    let (s, rel) = release(&app, &id, &token).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 6, "the parent speaks for the minor {rel}");
    let notices = || recall_notices(&app, &id, &token);
    let child_token = app.patient_token(&child);
    let told = || app.lapses_told(&child_token);
    // The sweep runs every 100 ms in tests; the child is still a minor.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(notices().await, Vec::<Value>::new());
    assert_eq!(told().await, Vec::<Value>::new());

    // Three days on: the child came of age yesterday.
    clock.shift(chrono::Duration::days(3));
    let mut found = Vec::new();
    for _ in 0..200 {
        found = notices().await;
        if !found.is_empty() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["reason"], "reached_majority");
    assert_eq!(found[0]["release"], rel["id"]);
    // The child is told in the same transaction, by the service, and no
    // adult is.
    let lapses = told().await;
    assert_eq!(lapses.len(), 1, "{lapses:?}");
    assert_eq!(
        lapses[0]["entry"]["actor"],
        json!({"org": "genomegate", "role": "service", "user": "came-of-age"})
    );
    assert_eq!(app.log_entries_with_action("consent_lapse"), 1);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(400)).await;
    clock.shift(chrono::Duration::days(4));
    actix_web::rt::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(notices().await.len(), 1, "once per sample and birthday");
    assert_eq!(told().await.len(), 1, "told once per birthday");
    let (s, rel) = release(&app, &id, &token).await;
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["excluded_by_reason"], json!({"reached_majority": 1}));
}

/// A transaction on its own connection holding the row of application
/// `id`, which a release updates last: a release of it waits just before
/// it commits, its cohort read and written, until this commits.
fn hold_before_commit(app: &TestApp, id: &str) -> genomegate::db::DbConnection {
    use diesel::RunQueryDsl;
    let mut holder = app.raw_db();
    diesel::sql_query("BEGIN").execute(&mut holder).unwrap();
    diesel::sql_query("SELECT id FROM applications WHERE id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Text, _>(id)
        .execute(&mut holder)
        .unwrap();
    holder
}

/// Returns once `n` sessions of the test's database wait on a lock.
async fn waiting_on_locks(app: &TestApp, n: i64) {
    for _ in 0..500 {
        let waiting = app.count(
            "pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        );
        if waiting >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} sessions came to wait on a lock");
}

/// Decision 0029. A release is held, its cohort read and written, before
/// it commits (a test transaction holds the application's row, which the
/// release updates last). Meanwhile one patient withdraws, another
/// withdraws an item the use does not rely on, and the university is
/// re-registered as industry. The withdrawal cannot see the uncommitted
/// release, so it recalls nothing itself; the release, before it commits,
/// recalls that sample. The register change waits for the release and
/// then recalls the sample of the patient who refused industry use. The
/// unrelated withdrawal recalls nothing.
async fn a_change_committed_while_a_release_reads_is_recalled_from_it(backend: Backend) {
    use diesel::RunQueryDsl;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let mut patients = patients_with_samples(&app, &version, "G", 6, all_permit()).await;
    patients.extend(patients_with_samples(&app, &version, "A", 1, academic_only()).await);
    let genome_ids: Vec<String> = patients.iter().map(|p| p.1.clone()).collect();
    let id = one_use_of(&app, (UNIVERSITY, "academic", "prof-1"), &genome_ids, "HMB").await;
    let token = researcher(UNIVERSITY, "prof-1");

    let mut holder = hold_before_commit(&app, &id);
    let withdraw = |n: usize, key: &'static str, body: Value| {
        signed_change(&app, &patients[n].0, "withdrawals", key, body)
    };
    let meanwhile = async {
        waiting_on_locks(&app, 1).await;
        withdraw(0, "w-0", json!({})).await;
        withdraw(1, "w-1", json!({"items": ["recontact"]})).await;
        assert_eq!(
            app.count("recall_notices"),
            0,
            "the release is not yet visible"
        );
        tokio::join!(verify_org(&app, UNIVERSITY, "industry"), async {
            // The register change waits for the release as well.
            waiting_on_locks(&app, 2).await;
            diesel::sql_query("COMMIT").execute(&mut holder).unwrap();
        });
    };
    let ((s, rel), ()) = tokio::join!(release(&app, &id, &token), meanwhile);
    assert_eq!(s, 201, "{rel}");
    // Read before either change: every patient was included.
    assert_eq!(rel["included"], 7, "{rel}");

    let (s, recalls) = app
        .get(&format!("/v1/applications/{id}/recalls"), Some(&token))
        .await;
    assert_eq!(s, 200, "{recalls}");
    let mut told: Vec<(String, String)> = recalls["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let sample = n["project_sample_id"].as_str().unwrap().to_owned();
            (n["reason"].as_str().unwrap().to_owned(), sample)
        })
        .collect();
    told.sort();
    let reasons: Vec<&str> = told.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        reasons,
        ["consent_withdrawn", "industry_use_not_consented"],
        "{recalls}"
    );

    // Resolution withholds exactly the recalled samples, and serves the
    // other five patients' objects: so the notices name patients G-0 and
    // A-0.
    let (s, resolved) = resolve(&app, STORE, rel["handle"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{resolved}");
    let mut withheld: Vec<String> = resolved["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["project_sample_id"].as_str().unwrap().to_owned())
        .collect();
    withheld.sort();
    let mut recalled: Vec<String> = told.into_iter().map(|t| t.1).collect();
    recalled.sort();
    assert_eq!(withheld, recalled, "{resolved}");
    let served: Vec<&str> = resolved["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["uri"].as_str().unwrap())
        .collect();
    assert_eq!(served.len(), 10, "{resolved}");
    assert!(
        served
            .iter()
            .all(|uri| !uri.contains("/MRN-G-0/") && !uri.contains("/MRN-A-0/")),
        "{resolved}"
    );
}

/// Decision 0029. A release of a minor's sample on a parent's consent is
/// held before it commits while the minor's day of majority passes and the
/// daily sweep (every 100 ms in tests) looks, finding nothing it can see.
/// The release, seeing that a day passed since it began, recalls the
/// sample itself, once: the sweep never recalls it again.
async fn a_minor_who_comes_of_age_while_a_release_reads_is_recalled_from_it(backend: Backend) {
    use diesel::RunQueryDsl;
    let Some((app, clock)) = TestApp::spawn_with_shifted_clock(backend).await else {
        return;
    };
    let (id, token, _) = a_minor_among_adults(&app, &clock, 1).await;
    let notices = || recall_notices(&app, &id, &token);

    let mut holder = hold_before_commit(&app, &id);
    let meanwhile = async {
        waiting_on_locks(&app, 1).await;
        clock.shift(chrono::Duration::days(2));
        // The sweep has looked past the birthday and found no release.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(notices().await, Vec::<Value>::new());
        diesel::sql_query("COMMIT").execute(&mut holder).unwrap();
    };
    let ((s, rel), ()) = tokio::join!(release(&app, &id, &token), meanwhile);
    assert_eq!(s, 201, "{rel}");
    assert_eq!(rel["included"], 6, "the parent spoke for the minor {rel}");
    let found = notices().await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["reason"], "reached_majority");
    assert_eq!(found[0]["release"], rel["id"]);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(notices().await.len(), 1, "once per sample and birthday");
}

/// The attack decision 0030 closes: two projects release the same dataset
/// and compare their manifests (or the order their handles resolve in)
/// position by position. Positions were counted in pseudonym order, the
/// same for every project, so position `n` was the same sample in both and
/// the unlinkable project IDs were joined by it. Now each project's order
/// is keyed like its IDs: no position is shared, the orders are unrelated
/// to each other and to genome-ID or pseudonym order, and resolution pages
/// follow the project's own order.
async fn two_projects_manifests_cannot_be_lined_up_by_position(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let patients = patients_with_samples(&app, &version, "P", 12, all_permit()).await;
    let genome_ids: Vec<String> = patients.iter().map(|p| p.1.clone()).collect();
    let ds = dataset(
        &app,
        "Shared cohort",
        json!({"permission": "HMB"}),
        &genome_ids,
    )
    .await;
    let sha = publish_text(&app, "Data-use agreement v1.").await;
    let mut views = Vec::new();
    for org in [UNIVERSITY, "univ-b"] {
        verify_org(&app, org, "academic").await;
        attest(&app, org, "res-1", "2029-01-10").await;
        let member = researcher(org, "res-1");
        let id = ready_to_release(&app, &member, &[&ds], "HMB", &sha).await;
        let (s, rel) = release(&app, &id, &member).await;
        assert_eq!(s, 201, "{rel}");
        assert_eq!(rel["included"], 12, "{rel}");
        let (s, page) = app
            .get(
                &format!("/v1/releases/{}/manifest", rel["id"].as_str().unwrap()),
                Some(&member),
            )
            .await;
        assert_eq!(s, 200, "{page}");
        let listed: Vec<(i64, String)> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["position"].as_i64().unwrap(),
                    e["project_sample_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        // Resolution, two samples a page, serves them in the same order.
        let (mut served, _) = resolve_in_pages(&app, rel["handle"].as_str().unwrap(), 2).await;
        // A sample's objects come together.
        served.dedup();
        let in_order: Vec<String> = listed.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(served, in_order, "resolution follows the manifest");
        views.push((rel["id"].as_str().unwrap().to_owned(), listed));
    }

    // What only the service can see: which sample each row is.
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        genome_id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        patient_pseudonym: String,
    }
    use diesel::RunQueryDsl;
    let mut conn = app.raw_db();
    let mut orders = Vec::new();
    for (release_id, _) in &views {
        let rows: Vec<Row> = genomegate::db_run!(&mut conn, c => diesel::sql_query(format!(
            "SELECT genome_id, patient_pseudonym FROM release_samples \
             WHERE release_id = '{release_id}' ORDER BY position"
        ))
        .load(c)
        .unwrap());
        let genomes: Vec<String> = rows.iter().map(|r| r.genome_id.clone()).collect();
        let mut by_genome = genomes.clone();
        by_genome.sort();
        assert_ne!(genomes, by_genome, "not genome-ID order");
        let patients: Vec<String> = rows.iter().map(|r| r.patient_pseudonym.clone()).collect();
        let mut by_patient = patients.clone();
        by_patient.sort();
        assert_ne!(patients, by_patient, "not pseudonym order");
        orders.push(genomes);
    }
    assert_ne!(orders[0], orders[1], "each project has its own order");
    let same_place = orders[0]
        .iter()
        .zip(&orders[1])
        .filter(|(a, b)| a == b)
        .count();
    // Two unrelated orders put about one sample at the same rank (more than
    // eight: about one chance in a million); a shared order put all twelve.
    assert!(
        same_place <= 8,
        "{same_place} of 12 samples at the same rank"
    );
    let positions = |i: usize| -> std::collections::BTreeSet<i64> {
        views[i].1.iter().map(|(p, _)| *p).collect()
    };
    assert!(
        positions(0).is_disjoint(&positions(1)),
        "no position is shared"
    );
}

async fn ask_for_visas(app: &TestApp, id: &str, token: &str) -> (u16, Value) {
    app.post(
        &format!("/v1/applications/{id}/visas"),
        token,
        None,
        &Value::Null,
    )
    .await
}

/// A visa's claims, verified as a Passport clearinghouse would: the key
/// found by `kid` in the JWKS its `jku` names, ES256, the issuer checked.
async fn verified_visa(app: &TestApp, visa: &str) -> Value {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
    let header = decode_header(visa).unwrap();
    assert_eq!(
        header.alg,
        Algorithm::ES256,
        "the Passport allows RS256 and ES256 only"
    );
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let jku = header.jku.expect("a Visa Document Token names its jku");
    let base = app.config.public_base_url.trim_end_matches('/');
    assert_eq!(jku, format!("{base}/.well-known/jwks.json"));
    let (s, jwks) = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(s, 200);
    let jwks: JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("its kid is published");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[base]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    decode::<Value>(visa, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

async fn members_get_passport_visas_only_while_they_could_release(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let patients = patients_with_samples(&app, &version, "V", 3, all_permit()).await;
    let ids: Vec<String> = patients.iter().map(|(_, g, _)| g.clone()).collect();
    verify_org(&app, PHARMA, "industry").await;
    attest(&app, PHARMA, "res-1", "2029-01-10").await;
    let hmb = dataset(&app, "Cancer germline", json!({"permission": "HMB"}), &ids).await;
    let sha = publish_text(&app, "Data-use agreement v1.").await;
    let member = researcher(PHARMA, "res-1");

    // Before the committee decides, there is nothing to assert.
    let view = submit(&app, &member, &application(&[&hmb], &[], "HMB")).await;
    let id = view["id"].as_str().unwrap().to_owned();
    let (s, b) = ask_for_visas(&app, &id, &member).await;
    assert_problem(s, &b, 409, "application_not_approved");
    let decided = approve(&app, &id).await;
    let agreement = decided["agreement"]["id"].as_str().unwrap().to_owned();
    // Approved, but the member has not accepted the agreement.
    let (s, b) = ask_for_visas(&app, &id, &member).await;
    assert_problem(s, &b, 409, "agreement_not_accepted");
    assert_eq!(
        app.count("visa_issuances"),
        0,
        "a refused visa is not recorded"
    );
    assert_eq!(accept(&app, &agreement, &member, &sha).await.0, 200);

    let entries_before = app.count("access_log_entries");
    let (s, issued) = ask_for_visas(&app, &id, &member).await;
    assert_eq!(s, 200, "{issued}");
    let visas = issued["ga4gh_passport_v1"].as_array().unwrap();
    assert_eq!(visas.len(), 2);
    let claims = verified_visa(&app, visas[0].as_str().unwrap()).await;
    let terms = verified_visa(&app, visas[1].as_str().unwrap()).await;
    let base = app.config.public_base_url.trim_end_matches('/');
    assert_eq!(claims["sub"], "res-1@pharma-co");
    assert_eq!(
        claims["ga4gh_visa_v1"],
        json!({
            "type": "ControlledAccessGrants",
            "asserted": chrono::DateTime::parse_from_rfc3339(decided["decided_at"].as_str().unwrap()).unwrap().timestamp(),
            "value": format!("{base}/v1/applications/{id}"),
            "source": base,
            "by": "dac",
        }),
        "the visa names the approved use, never a dataset"
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 900, "a visa lives as long as a dataset handle");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(issued["expires_at"].as_str().unwrap())
            .unwrap()
            .timestamp(),
        claims["exp"].as_i64().unwrap()
    );
    assert!(claims["jti"].as_str().unwrap().starts_with("visa-"));
    // The second: the member accepted the text in force, which is theirs
    // to read by its version.
    assert_eq!(terms["sub"], "res-1@pharma-co");
    assert_eq!(terms["exp"], claims["exp"]);
    assert_ne!(terms["jti"], claims["jti"]);
    assert_eq!(terms["ga4gh_visa_v1"]["type"], "AcceptedTermsAndPolicies");
    assert_eq!(terms["ga4gh_visa_v1"]["by"], "self");
    assert_eq!(terms["ga4gh_visa_v1"]["source"], base);
    let asserted = terms["ga4gh_visa_v1"]["asserted"].as_i64().unwrap();
    assert!(
        (claims["ga4gh_visa_v1"]["asserted"].as_i64().unwrap()..=claims["iat"].as_i64().unwrap())
            .contains(&asserted),
        "accepted after the approval, before the visa"
    );
    let text_url = terms["ga4gh_visa_v1"]["value"].as_str().unwrap();
    assert_eq!(text_url, format!("{base}/v1/agreement-texts/1"));
    let (s, text) = app
        .get(text_url.strip_prefix(base).unwrap(), Some(&member))
        .await;
    assert_eq!((s, &text["sha256"]), (200, &json!(sha)), "{text}");
    let (s, _) = app.get("/v1/agreement-texts/9", Some(&member)).await;
    assert_eq!(s, 404);
    assert_eq!(
        app.count("access_log_entries"),
        entries_before,
        "a visa touches no patient's data, so it logs no patient access"
    );

    // Who is not a member: another researcher of the organization is told
    // so; a researcher of another organization cannot see the application.
    let (s, b) = ask_for_visas(&app, &id, &researcher(PHARMA, "res-2")).await;
    assert_problem(s, &b, 403, "not_a_member");
    verify_org(&app, UNIVERSITY, "academic").await;
    let (s, outsider) = ask_for_visas(&app, &id, &researcher(UNIVERSITY, "prof-1")).await;
    let (_, unknown) = ask_for_visas(
        &app,
        "app-does-not-exist",
        &researcher(UNIVERSITY, "prof-1"),
    )
    .await;
    assert_eq!(s, 404, "{outsider}");
    assert_eq!(
        outsider["code"], unknown["code"],
        "an outsider learns nothing"
    );
    // Reviewers may read the application, but a visa is for its members.
    let (s, b) = ask_for_visas(&app, &id, &committee("c-1")).await;
    assert_eq!(s, 403, "{b}");

    // A new agreement text must be accepted again.
    let newer = publish_text(&app, "Data-use agreement v2.").await;
    let (s, b) = ask_for_visas(&app, &id, &member).await;
    assert_problem(s, &b, 409, "agreement_outdated");
    assert_eq!(accept(&app, &agreement, &member, &newer).await.0, 200);
    let (s, issued) = ask_for_visas(&app, &id, &member).await;
    assert_eq!(s, 200, "{issued}");
    let terms = verified_visa(&app, issued["ga4gh_passport_v1"][1].as_str().unwrap()).await;
    assert_eq!(
        terms["ga4gh_visa_v1"]["value"],
        format!("{base}/v1/agreement-texts/2"),
        "the text in force now"
    );

    // Training lapses: no visa until it is renewed.
    attest(&app, PHARMA, "res-1", "2026-06-30").await;
    let (s, b) = ask_for_visas(&app, &id, &member).await;
    assert_problem(s, &b, 403, "attestation_expired");
    attest(&app, PHARMA, "res-1", "2029-01-10").await;

    // A sanction stops visas as it stops handles; revocation is final.
    let state_path = format!("/v1/agreements/{agreement}/state");
    let sanction =
        |state: &str| json!({"state": state, "reason": "breach of the publication terms"});
    let (s, b) = app
        .post(&state_path, &governance(), None, &sanction("suspended"))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = ask_for_visas(&app, &id, &member).await;
    assert_problem(s, &b, 409, "agreement_suspended");
    app.post(&state_path, &governance(), None, &sanction("active"))
        .await;
    assert_eq!(ask_for_visas(&app, &id, &member).await.0, 200);
    app.post(&state_path, &governance(), None, &sanction("revoked"))
        .await;
    let (s, b) = ask_for_visas(&app, &id, &member).await;
    assert_problem(s, &b, 409, "agreement_revoked");

    // Every visa signed is on record, for the members, the governance body
    // and auditors; refusals left nothing.
    let visas_path = format!("/v1/applications/{id}/visas");
    let (s, listed) = app.get(&visas_path, Some(&governance())).await;
    assert_eq!(s, 200, "{listed}");
    let listed = listed["visas"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 6, "two visas each time: {listed:?}");
    assert_eq!(
        listed
            .iter()
            .filter(|v| v["type"] == "ControlledAccessGrants")
            .count(),
        3
    );
    assert!(listed
        .iter()
        .any(|v| v["id"] == claims["jti"] && v["type"] == "ControlledAccessGrants"));
    assert!(listed
        .iter()
        .all(|v| v["member"] == "res-1" && v["member_org"] == PHARMA));
    let auditor = token_for(&["auditor"], "oversight", "auditor-1");
    for reader in [&member, &auditor] {
        let (s, b) = app.get(&visas_path, Some(reader)).await;
        assert_eq!((s, b["visas"].as_array().unwrap().len()), (200, 6), "{b}");
    }
    let (s, b) = app
        .get(&visas_path, Some(&researcher(PHARMA, "res-2")))
        .await;
    assert_problem(s, &b, 403, "not_a_member");
    let (s, _) = app
        .get(&visas_path, Some(&researcher(UNIVERSITY, "prof-1")))
        .await;
    assert_eq!(s, 404);
    use diesel::RunQueryDsl;
    let mut conn = app.raw_db();
    for statement in [
        "UPDATE visa_issuances SET member = 'someone-else'",
        "DELETE FROM visa_issuances",
    ] {
        let refused = genomegate::db_run!(&mut conn, c => diesel::sql_query(statement).execute(c));
        assert!(refused.is_err(), "{statement} was allowed");
    }
    assert_eq!(app.count("visa_issuances"), 6);
}

/// A release notifies every included patient and a visa request writes two
/// rows, so each member gets `data_access.member_requests_per_minute` of
/// each (2 here); past it the answer is 429 with `Retry-After`, and nothing
/// is written. Another member of the same use keeps their own count.
async fn each_member_is_held_to_a_few_releases_and_visa_requests_a_minute(backend: Backend) {
    let options = Options {
        env: vec![(
            "GENOMEGATE__DATA_ACCESS__MEMBER_REQUESTS_PER_MINUTE",
            "2".into(),
        )],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let patients = patients_with_samples(&app, &version, "L", 5, all_permit()).await;
    let ids: Vec<String> = patients.iter().map(|(_, g, _)| g.clone()).collect();
    verify_org(&app, PHARMA, "industry").await;
    let hmb = dataset(&app, "Cancer germline", json!({"permission": "HMB"}), &ids).await;
    let sha = publish_text(&app, "Data-use agreement v1.").await;
    let (first, second) = (researcher(PHARMA, "res-1"), researcher(PHARMA, "res-2"));
    for sub in ["res-1", "res-2"] {
        attest(&app, PHARMA, sub, "2029-01-10").await;
    }
    let view = submit(&app, &first, &application(&[&hmb], &["res-2"], "HMB")).await;
    let id = view["id"].as_str().unwrap().to_owned();
    let decided = approve(&app, &id).await;
    let agreement = decided["agreement"]["id"].as_str().unwrap().to_owned();
    for member in [&first, &second] {
        assert_eq!(accept(&app, &agreement, member, &sha).await.0, 200);
    }

    for _ in 0..2 {
        let (s, b) = release(&app, &id, &first).await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = ask_for_visas(&app, &id, &first).await;
        assert_eq!(s, 200, "{b}");
    }
    let rows_written = || {
        [
            "releases",
            "release_samples",
            "access_log_entries",
            "notification_outbox",
            "visa_issuances",
        ]
        .map(|table| app.count(table))
    };
    // The integrator takes outbox rows away as it adds entries to the tree;
    // once it is done, the counts move only if something is written.
    app.wait_integrated().await;
    let written = rows_written();
    assert_eq!(written[0], 2);
    assert_eq!(written[4], 4);
    for (path, body) in [
        (
            format!("/v1/applications/{id}/releases"),
            json!({ "audience": STORE }),
        ),
        (format!("/v1/applications/{id}/visas"), Value::Null),
    ] {
        let response = app
            .client
            .post(app.url(&path))
            .bearer_auth(&first)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429, "{path}");
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After: {wait}");
        let problem: Value = response.json().await.unwrap();
        assert_problem(429, &problem, 429, "rate_limited");
        assert_eq!(problem["detail"], format!("try again in {wait} s"));
    }
    assert_eq!(rows_written(), written, "a refused request writes nothing");
    // The other member's count is their own.
    let (s, b) = release(&app, &id, &second).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = ask_for_visas(&app, &id, &second).await;
    assert_eq!(s, 200, "{b}");
}

/// A release is read back later, as its creation returned it less the
/// handle, by members, the governance body and auditors: one by ID, or all
/// of an application's. Outsiders cannot tell a release they may not see
/// from one that does not exist. Once finished, a release row never
/// changes, and migration 000018 fills in the exclusions of earlier
/// releases from their manifests.
async fn releases_are_kept_as_records_that_members_and_overseers_read_back(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let mut patients = patients_with_samples(&app, &version, "REC", 5, all_permit()).await;
    patients.extend(patients_with_samples(&app, &version, "ACA", 2, academic_only()).await);
    let ids: Vec<String> = patients.iter().map(|(_, g, _)| g.clone()).collect();
    let member = researcher(PHARMA, "res-1");
    let id = one_use_of(&app, (PHARMA, "industry", "res-1"), &ids, "HMB").await;
    let mut created = Vec::new();
    for _ in 0..2 {
        let (s, b) = release(&app, &id, &member).await;
        assert_eq!(s, 201, "{b}");
        created.push(b);
    }
    let as_kept = |view: &Value| {
        let mut record = view.clone();
        assert!(record.as_object_mut().unwrap().remove("handle").is_some());
        record
    };
    let first = as_kept(&created[0]);
    assert_eq!(first["included"], 5, "{first}");
    assert_eq!(first["released_by"], "res-1", "{first}");
    assert_eq!(
        first["excluded_by_reason"],
        json!({ "industry_use_not_consented": 2 }),
        "{first}"
    );
    let release_id = first["id"].as_str().unwrap().to_owned();
    let one = format!("/v1/releases/{release_id}");
    let all = format!("/v1/applications/{id}/releases");

    let auditor = token_for(&["auditor"], "oversight", "auditor-1");
    for reader in [&member, &governance(), &auditor] {
        let (s, b) = app.get(&one, Some(reader)).await;
        assert_eq!((s, &b), (200, &first));
        let (s, b) = app.get(&all, Some(reader)).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["releases"], json!([first, as_kept(&created[1])]));
    }
    // Someone of the applicant's organization outside the use, and a
    // reviewer, may read the application but not follow its releases.
    for reader in [researcher(PHARMA, "res-2"), committee("c-1")] {
        for path in [&one, &all] {
            let (s, b) = app.get(path, Some(&reader)).await;
            assert_problem(s, &b, 403, "not_a_member");
        }
    }
    // Anyone else gets the answer a release that does not exist gets.
    let (_, missing) = app
        .get("/v1/releases/rel-does-not-exist", Some(&auditor))
        .await;
    assert_problem(404, &missing, 404, "not_found");
    for outsider in [researcher(UNIVERSITY, "prof-1"), store_token(STORE)] {
        let (s, b) = app.get(&one, Some(&outsider)).await;
        assert_problem(s, &b, 404, "not_found");
        assert_eq!(b["detail"], missing["detail"]);
        let (s, b) = app.get(&all, Some(&outsider)).await;
        assert_problem(s, &b, 404, "not_found");
    }

    use diesel::RunQueryDsl;
    let mut conn = app.raw_db();
    for statement in [
        format!("UPDATE releases SET provenance = '{{}}' WHERE id = '{release_id}'"),
        format!("UPDATE releases SET included = 7 WHERE id = '{release_id}'"),
        format!("UPDATE releases SET excluded_by_reason = '{{}}' WHERE id = '{release_id}'"),
        format!("DELETE FROM releases WHERE id = '{release_id}'"),
    ] {
        let refused = genomegate::db_run!(&mut conn, c => diesel::sql_query(&statement).execute(c));
        assert!(refused.is_err(), "{statement} was allowed");
    }
    let (_, b) = app.get(&one, Some(&member)).await;
    assert_eq!(b, first, "a finished release is as it was");

    // Releases from before 000018 get their exclusions from their manifests.
    revert_through(&mut conn, "000018");
    genomegate::db::run_migrations(&mut conn).unwrap();
    let (s, b) = app.get(&all, Some(&member)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["releases"], json!([first, as_kept(&created[1])]));
}

/// The counts a replay must leave as they are: the rows each creating
/// request writes, and the log entries and notifications a release makes.
fn written(app: &TestApp) -> Vec<i64> {
    [
        "datasets",
        "agreement_texts",
        "review_votes",
        "agreement_acceptances",
        "visa_issuances",
        "notification_endpoints",
        "releases",
        "release_samples",
        "access_log_entries",
        "notification_deliveries",
        "recontact_requests",
        "recontact_steps",
    ]
    .iter()
    .map(|t| app.count(t))
    .collect()
}

/// Sends `body` under `key` twice, then another request under the same
/// key (`other`: another body, or another path and body): the first answer
/// with `fresh`, the same answer again as a replay that writes nothing,
/// and `idempotency_key_reused`. Returns the answer.
async fn once_under(
    app: &TestApp,
    (path, token, key): (&str, &str, &str),
    body: &Value,
    other: impl Into<Other>,
    fresh: u16,
) -> Value {
    let (s, first, replayed) = app.post_keyed(path, token, key, body).await;
    assert_eq!((s, replayed), (fresh, false), "{path}: {first}");
    app.wait_integrated().await;
    let before = written(app);
    let (s, again, replayed) = app.post_keyed(path, token, key, body).await;
    assert_eq!((s, replayed), (200, true), "{path}: {again}");
    assert_eq!(again, first, "{path}: the first answer, as it was");
    let (other_path, other_body) = match other.into() {
        Other::Body(body) => (path.to_owned(), body),
        Other::Request(path, body) => (path, body),
    };
    let (s, b, _) = app.post_keyed(&other_path, token, key, &other_body).await;
    assert_problem(s, &b, 409, "idempotency_key_reused");
    app.wait_integrated().await;
    assert_eq!(
        written(app),
        before,
        "{path}: a replay writes and notifies nothing"
    );
    first
}

/// What else is sent under a key already used.
enum Other {
    Body(Value),
    Request(String, Value),
}

impl From<&Value> for Other {
    fn from(body: &Value) -> Self {
        Other::Body(body.clone())
    }
}

/// Every POST that creates something takes an `Idempotency-Key`: a retry
/// whose first answer was lost (a proxy timing out on a long release) gets
/// that answer, and nothing is written or notified twice.
async fn a_retry_under_the_same_key_is_the_first_answer_and_changes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let patients = patients_with_samples(&app, &version, "K", 5, all_permit()).await;
    let ids: Vec<String> = patients.iter().map(|(_, g, _)| g.clone()).collect();
    verify_org(&app, PHARMA, "industry").await;
    attest(&app, PHARMA, "res-1", "2029-01-10").await;
    let gov = governance();

    let ds = once_under(
        &app,
        ("/v1/datasets", &gov, "dataset-1"),
        &json!({"name": "Cancer germline", "domain": "cancer", "terms": {"permission": "HMB"}, "portfolio": "drug_discovery"}),
        &json!({"name": "Another", "domain": "cancer", "terms": {"permission": "HMB"}, "portfolio": "drug_discovery"}),
        201,
    )
    .await;
    let ds = ds["id"].as_str().unwrap().to_owned();
    let samples: Vec<Value> = ids.iter().map(|g| json!({"genome_id": g})).collect();
    let (s, b) = app
        .post(
            &format!("/v1/datasets/{ds}/samples"),
            &gov,
            None,
            &json!({"samples": samples}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let text = once_under(
        &app,
        ("/v1/agreement-texts", &gov, "text-1"),
        &json!({"body": "Data-use agreement v1."}),
        &json!({"body": "Data-use agreement v1, other words."}),
        201,
    )
    .await;
    let sha = text["sha256"].as_str().unwrap().to_owned();

    let member = researcher(PHARMA, "res-1");
    let view = submit(&app, &member, &application(&[&ds], &[], "HMB")).await;
    let id = view["id"].as_str().unwrap().to_owned();
    let votes = format!("/v1/applications/{id}/votes");
    once_under(
        &app,
        (&votes, &committee("c-1"), "vote-1"),
        &json!({"decision": "approve"}),
        &json!({"decision": "reject"}),
        200,
    )
    .await;
    let mut decided = Value::Null;
    for voter in ["c-2", "c-3"] {
        let (s, b) = app
            .post(
                &votes,
                &committee(voter),
                None,
                &json!({"decision": "approve"}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        decided = b;
    }
    let agreement = decided["agreement"]["id"].as_str().unwrap().to_owned();
    once_under(
        &app,
        (
            &format!("/v1/agreements/{agreement}/acceptances"),
            &member,
            "accept-1",
        ),
        &json!({ "text_sha256": sha }),
        &json!({ "text_sha256": "0".repeat(64) }),
        200,
    )
    .await;
    let visas = once_under(
        &app,
        (&format!("/v1/applications/{id}/visas"), &member, "visas-1"),
        &json!({}),
        Other::Request(
            format!("/v1/applications/{id}/releases"),
            json!({"audience": "genome-store.example"}),
        ),
        200,
    )
    .await;
    assert_eq!(visas["ga4gh_passport_v1"].as_array().unwrap().len(), 2);
    // The webhook's secret is shown again to the retry that lost it.
    let hook = once_under(
        &app,
        (
            &format!("/v1/applications/{id}/webhooks"),
            &member,
            "hook-1",
        ),
        &json!({"url": "https://lab.pharma-co.example/recalls"}),
        &json!({"url": "https://lab.pharma-co.example/other"}),
        201,
    )
    .await;
    assert!(hook["secret"].is_string(), "{hook}");
    // The release: five patients told once, however often it is retried;
    // the retry's handle is the first one, byte for byte.
    let releases = format!("/v1/applications/{id}/releases");
    let released = once_under(
        &app,
        (&releases, &member, "release-1"),
        &json!({"audience": "genome-store.example"}),
        &json!({"audience": "another-store.example"}),
        201,
    )
    .await;
    assert_eq!(released["included"], 5, "{released}");
    assert!(released["handle"].is_string());
    assert_eq!(app.log_entries_with_action("dataset_release"), 5);

    // Recontact: opened once, approved once per officer, unsealed once.
    let committee_token = committee("chair-1");
    let opened = once_under(
        &app,
        ("/v1/recontact-requests", &committee_token, "recontact-1"),
        &json!({"genome_id": ids[0], "family": "cancer", "reason": "A variant was reclassified."}),
        &json!({"genome_id": ids[1], "family": "cancer", "reason": "A variant was reclassified."}),
        201,
    )
    .await;
    let request = opened["id"].as_str().unwrap().to_owned();
    for (officer, key) in [("officer-a", "approve-a"), ("officer-b", "approve-b")] {
        once_under(
            &app,
            (
                &format!("/v1/recontact-requests/{request}/approvals"),
                &common::token_for(&["governance"], "governance", officer),
                key,
            ),
            &json!({}),
            &json!({"note": "another note"}),
            200,
        )
        .await;
    }
    let unsealed = once_under(
        &app,
        (
            &format!("/v1/recontact-requests/{request}/unseal"),
            &app.staff("hospital-a"),
            "unseal-1",
        ),
        &json!({}),
        Other::Request(
            "/v1/hospital-webhooks".into(),
            json!({"url": "https://app.hospital-a.example/hook"}),
        ),
        200,
    )
    .await;
    assert_eq!(unsealed["local_patient_id"], "MRN-K-0", "{unsealed}");
}
