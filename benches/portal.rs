//! The patient portal's history page (issue #36): the first page of a
//! patient with 10,000 entries, rendered for 50 concurrent signed-in
//! sessions over HTTPS, against the raw database doing the same page's
//! reads (the session, the account's patient, the patient, the first 21
//! entries and the preferences) on as many connections, in the same run.
//!
//! ```sh
//! cargo bench --bench portal            # BENCH_SECONDS, BENCH_CLIENTS, BENCH_ENTRIES
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

use genomegate::db::{consents, ledger, portal, portal_sessions};
use genomegate::ledger::entry::LogEntry;
use serde_json::json;
use std::time::Duration;
use support::{env_or, read_entry, Bench};

const ITEMS: [&str; 4] = [
    "ccat_registration",
    "secondary_use_academic",
    "secondary_use_industry",
    "recontact",
];

fn main() {
    let mut bench =
        Bench::start_with(&[("GENOMEGATE__PATIENTS__ATTEMPTS_PER_MINUTE", "100000000")]);
    bench.clients = env_or("BENCH_CLIENTS", 50);
    let clients = bench.clients;
    let entries: usize = env_or("BENCH_ENTRIES", 10_000);
    bench.publish_cancer(&ITEMS);
    let staff = bench.token(&["hospital_staff"], "hospital-a");
    let decisions: serde_json::Map<String, serde_json::Value> = ITEMS
        .iter()
        .map(|k| (k.to_string(), json!("permit")))
        .collect();
    let (client, base) = (bench.client.clone(), bench.base.clone());
    let (granted, enrolled) = bench.runtime.block_on(async {
        let granted: serde_json::Value = client
            .post(format!("{base}/v1/consents"))
            .bearer_auth(&staff)
            .header("Idempotency-Key", "portal-bench")
            .json(&json!({
                "local_patient_id": "MRN-PORTAL-BENCH",
                "document_version": "cancer-v1",
                "decisions": decisions,
                "signer": {"kind": "patient"},
                "explained_by": "bench",
                "signed_at": chrono::Utc::now().to_rfc3339(),
                "form_hash": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let enrolled: serde_json::Value = client
            .post(format!("{base}/v1/portal/enroll"))
            .json(&json!({ "code": granted["enrollment_code"]["code"] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (granted, enrolled)
    });
    let patient = granted["patient_ref"]
        .as_str()
        .expect("registered")
        .to_owned();
    let account = enrolled["account_id"]
        .as_str()
        .expect("enrolled")
        .to_owned();

    // The patient's history, integrated, and one signed-in session per client.
    let mut conn = bench.raw_connection();
    for chunk in (0..entries).collect::<Vec<_>>().chunks(1_000) {
        let batch: Vec<LogEntry> = chunk
            .iter()
            .map(|&n| read_entry(&patient, n as u64))
            .collect();
        ledger::append_atomically(&mut conn, &batch).unwrap();
    }
    support::drain_outbox(&mut conn);
    let now = chrono::Utc::now().naive_utc();
    let cookies: Vec<(String, String)> = (0..clients)
        .map(|n| {
            let value = format!("bench-session-{n}-{}", uuid::Uuid::new_v4().simple());
            let hash = genomegate::app::portal_sessions::id_hash(&value);
            portal_sessions::insert_session(&mut conn, &hash, Some(&account), "csrf", now).unwrap();
            (value, hash)
        })
        .collect();
    drop(conn);

    let measure = Duration::from_secs(bench.seconds);
    let values: Vec<String> = cookies.iter().map(|(v, _)| v.clone()).collect();
    let (service, errors) = bench.http_phase(measure, move |n| {
        let (client, base) = (client.clone(), base.clone());
        let cookie = format!("__Host-gg_session={}", values[n as usize % values.len()]);
        async move {
            let Ok(r) = client
                .get(format!("{base}/portal/history"))
                .header("cookie", cookie)
                .send()
                .await
            else {
                return false;
            };
            r.status() == 200
                && r.text()
                    .await
                    .is_ok_and(|page| page.matches("class=\"entry\"").count() == 20)
        }
    });
    let hashes: Vec<String> = cookies.into_iter().map(|(_, h)| h).collect();
    let raw = bench.raw_read_phase(move |conn, n| {
        let session = portal_sessions::session(conn, &hashes[n as usize % hashes.len()])?
            .expect("the session");
        let pseudonym = portal_sessions::account_patient(conn, &session.account_id.unwrap())?
            .expect("the account");
        consents::find_patient(conn, &pseudonym)?.expect("the patient");
        let rows = ledger::patient_entries(conn, &pseudonym, None, 21)?;
        assert_eq!(rows.len(), 21);
        portal::preferences(conn, &pseudonym)?;
        Ok(())
    });
    bench.report(
        "portal history, first page of 10,000 entries",
        &format!("GET /portal/history, {clients} sessions"),
        &service,
        errors,
        &raw,
        "first page p99 <= 30 ms at 50 concurrent sessions",
    );
}
