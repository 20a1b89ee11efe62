//! E-consent registrations over loopback HTTPS against the real service on
//! PostgreSQL from 32 concurrent clients, beside the raw database doing the
//! same writes in the same run.
//!
//!     cargo bench --bench consent_registration
//!
//! Environment: `GENOMEGATE_BENCH_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, where a fresh database is
//! created and dropped), `BENCH_SECONDS` (default 15), `BENCH_CLIENTS`
//! (default 32). A benchmark, not a test: it prints figures and never fails
//! on them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

use genomegate::consent::{Decision, ScopeItemKey};
use genomegate::db::consents::{record_event, EventRow};
use genomegate::pseudonym::vault::Sealed;
use serde_json::json;
use std::time::Duration;

const ITEMS: [&str; 8] = [
    "ccat_registration",
    "secondary_use_academic",
    "secondary_use_industry",
    "international_transfer",
    "public_database_linkage",
    "recontact",
    "secondary_findings_disclosure",
    "specimen_banking",
];
const FORM_HASH: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn main() {
    let bench = support::Bench::start();
    let staff = bench.token(&["hospital_staff"], "hospital-a");
    bench.publish_cancer(&ITEMS);
    let decisions: serde_json::Map<String, serde_json::Value> = ITEMS
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k.to_string(),
                json!(if i % 3 == 0 { "deny" } else { "permit" }),
            )
        })
        .collect();

    let register = {
        let (client, base) = (bench.client.clone(), bench.base.clone());
        move |n: u64| {
            let (client, base, staff, decisions) = (
                client.clone(),
                base.clone(),
                staff.clone(),
                decisions.clone(),
            );
            async move {
                let body = json!({
                    "local_patient_id": format!("MRN-{n:09}"),
                    "document_version": "cancer-v1",
                    "decisions": decisions,
                    "signer": {"kind": "patient"},
                    "explained_by": "bench-nurse",
                    "signed_at": chrono::Utc::now().to_rfc3339(),
                    "form_hash": FORM_HASH,
                });
                let r = client
                    .post(format!("{base}/v1/consents"))
                    .bearer_auth(&staff)
                    .header("Idempotency-Key", format!("bench-{n}"))
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => r.bytes().await.is_ok(),
                    Ok(r) => {
                        if std::env::var("BENCH_DEBUG").is_ok() {
                            eprintln!(
                                "failure {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                        }
                        false
                    }
                    Err(e) => {
                        if std::env::var("BENCH_DEBUG").is_ok() {
                            eprintln!("transport failure: {e}");
                        }
                        false
                    }
                }
            }
        }
    };
    bench.http_phase(Duration::from_secs(2), register.clone());
    let (service, errors) = bench.http_phase(Duration::from_secs(bench.seconds), register);

    let decisions: Vec<(ScopeItemKey, Decision)> = ITEMS
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                ScopeItemKey::parse(k).unwrap(),
                if i % 3 == 0 {
                    Decision::Deny
                } else {
                    Decision::Permit
                },
            )
        })
        .collect();
    // The same sealed-identity row size as the service writes.
    let sealed = Sealed {
        key_version: 1,
        nonce: vec![7; 12],
        ciphertext: vec![7; 26],
    };
    let raw = bench.raw_phase(move |conn, n| {
        let now = chrono::Utc::now();
        let pseudonym = format!("{:064x}", u128::MAX - u128::from(n));
        let row = EventRow {
            id: uuid::Uuid::new_v4().to_string(),
            patient_pseudonym: pseudonym.clone(),
            family: "cancer".into(),
            document_version_id: "cancer-v1".into(),
            kind: "grant".into(),
            signer_kind: "patient".into(),
            proxy_relationship: None,
            explained_by: "bench-nurse".into(),
            signed_at: now.naive_utc(),
            recorded_at: now.naive_utc(),
            form_hash: FORM_HASH.into(),
            hospital_org: "hospital-raw".into(),
            recorded_by: "bench".into(),
            idempotency_key: format!("raw-{n}"),
            request_hash: "sha256:raw".into(),
        };
        // The same statements the service issues, minus everything else.
        record_event(conn, &row, &decisions, Some(&sealed), now)
    });
    bench.report(
        "consent_registration (8 scope items per consent)",
        "HTTPS, auth, policy, validation, idempotency, vault seal, 1 tx",
        &service,
        errors,
        &raw,
        ">= 1500/s, p99 <= 50 ms, ratio >= 0.5",
    );
}
