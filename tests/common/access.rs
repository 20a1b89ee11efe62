//! The data-use gate's setting up, shared by the tests that need an
//! approved use: organizations verified, researchers attested, datasets,
//! agreement texts, applications voted through and accepted, releases.

use super::*;
use serde_json::{json, Value};

pub const STORE: &str = "genome-store.example";
pub const PHARMA: &str = "pharma-co";
pub const UNIVERSITY: &str = "univ-a";
pub fn governance() -> String {
    token_for(&["governance"], "governance-body", "gov-officer")
}

pub fn researcher(org: &str, sub: &str) -> String {
    token_for(&["researcher"], org, sub)
}

pub fn committee(sub: &str) -> String {
    token_for(&["review_committee"], "review-committee", sub)
}

pub fn store_token(org: &str) -> String {
    token_for(&["data_store"], org, "store-system")
}

pub async fn put(app: &TestApp, path: &str, token: &str, body: &Value) -> (u16, Value) {
    app.send_json(reqwest::Method::PUT, path, Some(token), None, body)
        .await
}

/// Registers `n` patients at hospital-a with the given decisions and one
/// germline sample each; returns (patient_ref, genome_id, enrollment code).
pub async fn patients_with_samples(
    app: &TestApp,
    version: &str,
    prefix: &str,
    n: usize,
    decisions: Value,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let local = format!("MRN-{prefix}-{i}");
        let (s, b) = app
            .grant(
                "hospital-a",
                &local,
                version,
                decisions.clone(),
                &format!("k-{local}"),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let patient = b["patient_ref"].as_str().unwrap().to_owned();
        let code = b["enrollment_code"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (s, sample) = app
            .register_sample(
                &app.staff("hospital-a"),
                &sample_body(&local, &format!("S-{local}"), &local),
            )
            .await;
        assert_eq!(s, 201, "{sample}");
        out.push((
            patient,
            sample["genome_id"].as_str().unwrap().to_owned(),
            code,
        ));
    }
    out
}

pub async fn verify_org(app: &TestApp, org: &str, kind: &str) {
    verify_org_in(app, org, kind, "JP").await;
}

pub async fn verify_org_in(app: &TestApp, org: &str, kind: &str, country: &str) {
    let (s, b) = put(
        app,
        &format!("/v1/organizations/{org}"),
        &governance(),
        &json!({"kind": kind, "country": country}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

pub async fn attest(app: &TestApp, org: &str, sub: &str, expires_on: &str) {
    let (s, b) = put(
        app,
        &format!("/v1/organizations/{org}/researchers/{sub}/attestation"),
        &governance(),
        &json!({"training": "APRIN e-learning", "completed_on": "2026-01-10", "expires_on": expires_on}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

pub async fn dataset(app: &TestApp, name: &str, terms: Value, genome_ids: &[String]) -> String {
    let (s, b) = app
        .post(
            "/v1/datasets",
            &governance(),
            None,
            &json!({"name": name, "domain": "cancer", "terms": terms, "portfolio": "drug_discovery"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let samples: Vec<Value> = genome_ids
        .iter()
        .map(|g| json!({"genome_id": g, "diagnosis": "MONDO:0007254"}))
        .collect();
    let (s, b) = app
        .post(
            &format!("/v1/datasets/{id}/samples"),
            &governance(),
            None,
            &json!({ "samples": samples }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["added"], genome_ids.len());
    id
}

pub async fn publish_text(app: &TestApp, body: &str) -> String {
    let (s, b) = app
        .post(
            "/v1/agreement-texts",
            &governance(),
            None,
            &json!({ "body": body }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b["sha256"].as_str().unwrap().to_owned()
}

/// A day counted from today in the programme's calendar (JST).
pub fn days_from_today(days: i64) -> String {
    genomegate::calendar::day_of(chrono::Utc::now() + chrono::Duration::days(days)).to_string()
}

/// A grant that permits academic secondary use and refuses industry use.
pub fn academic_only() -> Value {
    json!({"ccat_registration": "permit", "secondary_use_academic": "permit", "secondary_use_industry": "deny", "recontact": "permit"})
}

pub fn application(datasets: &[&str], members: &[&str], code: &str) -> Value {
    json!({
        "title": "Germline variants and drug response",
        "purpose": {"code": code},
        "datasets": datasets,
        "members": members,
        "ethics_ref": "IRB-2026-041",
        // Under way already: nothing is released before the period starts.
        "starts_on": days_from_today(-30),
        "ends_on": "2028-11-30",
        "recipients_abroad": false,
    })
}

pub async fn submit(app: &TestApp, token: &str, body: &Value) -> Value {
    let (s, b) = app.post("/v1/applications", token, None, body).await;
    assert_eq!(s, 201, "{b}");
    b
}

/// Three committee votes to approve; returns the application view.
pub async fn approve(app: &TestApp, id: &str) -> Value {
    let mut last = Value::Null;
    for voter in ["c-1", "c-2", "c-3"] {
        let (s, b) = app
            .post(
                &format!("/v1/applications/{id}/votes"),
                &committee(voter),
                None,
                &json!({"decision": "approve"}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        last = b;
    }
    last
}

pub async fn accept(app: &TestApp, agreement: &str, token: &str, sha: &str) -> (u16, Value) {
    app.post(
        &format!("/v1/agreements/{agreement}/acceptances"),
        token,
        None,
        &json!({ "text_sha256": sha }),
    )
    .await
}

/// An application by `token` for `datasets` alone, approved by the
/// committee, its agreement's text `sha` accepted by the applicant: ready
/// to release. Returns its ID.
pub async fn ready_to_release(
    app: &TestApp,
    token: &str,
    datasets: &[&str],
    code: &str,
    sha: &str,
) -> String {
    let view = submit(app, token, &application(datasets, &[], code)).await;
    let id = view["id"].as_str().unwrap().to_owned();
    let decided = approve(app, &id).await;
    let agreement = decided["agreement"]["id"].as_str().unwrap();
    let (s, b) = accept(app, agreement, token, sha).await;
    assert_eq!(s, 200, "{b}");
    id
}

/// One dataset of `genome_ids` tagged `code`, and an application for it by
/// `sub` of `org` (verified as `kind`, attested) with purpose `code`, ready
/// to release. Returns the application's ID.
pub async fn one_use_of(
    app: &TestApp,
    (org, kind, sub): (&str, &str, &str),
    genome_ids: &[String],
    code: &str,
) -> String {
    verify_org(app, org, kind).await;
    attest(app, org, sub, "2029-01-10").await;
    let ds = dataset(
        app,
        "Cancer germline",
        json!({ "permission": code }),
        genome_ids,
    )
    .await;
    let sha = publish_text(app, "Data-use agreement v1.").await;
    ready_to_release(app, &researcher(org, sub), &[&ds], code, &sha).await
}

/// The recall notices of application `id`, as its member sees them.
pub async fn recall_notices(app: &TestApp, id: &str, token: &str) -> Vec<Value> {
    let (s, b) = app
        .get(&format!("/v1/applications/{id}/recalls"), Some(token))
        .await;
    assert_eq!(s, 200, "{b}");
    b["notices"].as_array().unwrap().clone()
}

pub async fn release(app: &TestApp, id: &str, token: &str) -> (u16, Value) {
    app.post(
        &format!("/v1/applications/{id}/releases"),
        token,
        None,
        &json!({ "audience": STORE }),
    )
    .await
}
