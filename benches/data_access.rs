//! Consent-checked releases and handle resolution (issue #5) on
//! PostgreSQL, each beside the raw database doing the same writes in the
//! same run:
//!
//! - `release`: one release over HTTPS of a cohort of `BENCH_COHORT`
//!   patients (default 100,000) with mixed consents (70% permit industry
//!   use, 20% academic only, 10% withdrawn), end to end: every consent
//!   checked, the manifest, one log entry and notification per included
//!   patient, provenance, the signed handle. Peak RSS is the process's
//!   high-water mark during the release (reset just before it). Raw: COPY of
//!   the same manifest rows, log entries and outbox rows into identical
//!   tables, in one transaction.
//! - `resolve`: a store resolving pages of 1,000 objects over HTTPS, one
//!   client, consent re-checked and 1,000 log entries written per page.
//!   Raw: the same page read and the same entries COPYed, in one
//!   transaction.
//! - `register recall`: last, the applicant is re-registered abroad, which
//!   recalls every included sample from the release in the governance
//!   request's transaction. Raw: COPY of the same recall notices into
//!   the same table under other IDs.
//!
//! ```sh
//! cargo bench --bench data_access
//! BENCH_COHORT=1000000 cargo bench --bench data_access
//! ```
//!
//! Environment: `GENOMEGATE_BENCH_PG_URL`, `BENCH_COHORT`,
//! `BENCH_RESOLVES` (default 200), `BENCH_PROXY_PERCENT` (default 0: the
//! share of patients a parent consented for, see `seed`), `BENCH_VACUUM` (default 1: the seed is
//! vacuumed, as autovacuum would have done in service; 0 measures a freshly
//! loaded database). A benchmark, not a test: it prints figures and never
//! fails on them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

use diesel::prelude::*;
use genomegate::access::manifest::POSITION_SPAN;
use genomegate::db::access::RecallRow;
use genomegate::db::{write_transaction, DbConnection};
use genomegate::pseudonym::genome_id::sample_id;
use genomegate::pseudonym::keyring::{KeyDomain, Keyring};
use serde_json::json;
use std::time::{Duration, Instant};
use support::raw::{raw_log_entries, raw_log_outbox, RawEntry, RawOutbox};
use support::{env_or, summarize, Bench};

const STORE: &str = "genome-store.example";
const ORG: &str = "pharma-co";

fn main() {
    let cohort: usize = env_or("BENCH_COHORT", 100_000);
    let bench = Bench::start();
    bench.publish_cancer(&[
        "ccat_registration",
        "secondary_use_academic",
        "secondary_use_industry",
        "recontact",
    ]);
    let t = Instant::now();
    let dataset = seed(&bench, cohort);
    println!(
        "seeded {cohort} patients with consents, samples, objects and a dataset in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let application = approved_application(&bench, &dataset);

    // The release, end to end over HTTPS.
    reset_peak_rss();
    let t = Instant::now();
    let released = bench.setup_post(
        &format!("/v1/applications/{application}/releases"),
        &bench.token_as(&["researcher"], ORG, "res-1"),
        &json!({ "audience": STORE }),
        201,
    );
    let service = t.elapsed();
    let peak_mb = peak_rss_mb();
    let included = released["included"].as_i64().unwrap();
    let excluded = released["excluded"].as_i64().unwrap();
    let release_id = released["id"].as_str().unwrap().to_owned();
    let raw = raw_release(&bench, &release_id);
    println!(
        "data_access release: PostgreSQL, cohort {cohort} ({included} included, {excluded} excluded: {})",
        released["excluded_by_reason"]
    );
    println!(
        "  service (HTTPS, consent checks, manifest, {included} log entries + outbox rows, provenance, handle; 1 tx): {:.0} ms, peak RSS {peak_mb:.0} MB",
        ms(service)
    );
    println!(
        "  raw (COPY of the same manifest rows, entries and outbox rows into identical tables, 1 tx): {:.0} ms",
        ms(raw)
    );
    println!("  targets: 100,000 <= 2000 ms; 1,000,000 <= 20000 ms with peak RSS <= 1024 MB");

    resolve(&bench, released["handle"].as_str().unwrap(), &release_id);
    // Last: it takes every included sample back from the release.
    register_recall(&bench, &release_id, included);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Resets the kernel's peak-RSS mark of this process (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Patient `i`'s pseudonym, as SQL over the series variable `i`: 64 hex
/// digits of a hash, like the service's keyed ones. So the indexes are as
/// wide as in production, and patients registered one after another are
/// scattered over the pseudonym order as they are there (a counter would
/// put a patient-ordered read on neighbouring heap pages).
const PSEUDONYM_SQL: &str = "encode(sha256(i::text::bytea), 'hex')";

/// [`PSEUDONYM_SQL`] for one patient.
fn pseudonym(i: usize) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, i.to_string().as_bytes());
    hex::encode(digest.as_ref())
}

fn pg(conn: &mut DbConnection) -> &mut diesel::PgConnection {
    match conn {
        DbConnection::Postgresql(c) => c,
        DbConnection::Sqlite(_) => panic!("PostgreSQL only"),
    }
}

/// `n` patients of hospital-a with one grant each (every tenth withdrawn
/// afterwards; two in ten refuse industry use), one germline sample with
/// one object each, all in one HMB dataset. Written straight into the
/// tables: setup, not measured.
///
/// `BENCH_PROXY_PERCENT` (default 0) of the patients were minors whose
/// parent signed the grant, as in a paediatric or rare-disease cohort: half
/// of them are minors still, half came of age today, so their permits lapse
/// (decision 0026) and they are excluded as `reached_majority`.
fn seed(bench: &Bench, n: usize) -> String {
    let keys = Keyring::load(&bench.keys_file).unwrap();
    let key = keys.current(KeyDomain::Sample);
    let mut conn = bench.raw_connection();
    let c = pg(&mut conn);
    let proxy_percent: usize = env_or("BENCH_PROXY_PERCENT", 0);
    let by_proxy = format!("i % 100 < {proxy_percent}");
    diesel::sql_query(format!(
        "INSERT INTO patients (pseudonym, hospital_org, created_at, majority_on) \
         SELECT {PSEUDONYM_SQL}, 'hospital-a', now(), \
           CASE WHEN {by_proxy} THEN current_date + CASE WHEN i % 2 = 0 THEN 365 ELSE 0 END END \
         FROM generate_series(1, {n}) i"
    ))
    .execute(c)
    .unwrap();
    // Every grant permits all four items, except industry use for one
    // patient in five (i % 10 in 7, 8).
    diesel::sql_query(format!(
        "INSERT INTO consent_events (id, patient_pseudonym, family, document_version_id, kind, signer_kind, \
           explained_by, signed_at, recorded_at, form_hash, hospital_org, recorded_by, idempotency_key, request_hash, decisions) \
         SELECT 'g-' || i, {PSEUDONYM_SQL}, 'cancer', 'cancer-v1', 'grant', \
           CASE WHEN {by_proxy} THEN 'proxy' ELSE 'patient' END, 'nurse', \
           now() - interval '1 day', now() - interval '1 day', repeat('a', 64), 'hospital-a', 'staff', 'g-' || i, 'h', \
           '{{\"ccat_registration\":\"permit\",\"recontact\":\"permit\",\"secondary_use_academic\":\"permit\",\"secondary_use_industry\":\"' \
             || CASE WHEN i % 10 IN (7, 8) THEN 'deny' ELSE 'permit' END || '\"}}' \
         FROM generate_series(1, {n}) i"
    ))
    .execute(c)
    .unwrap();
    diesel::sql_query(format!(
        "INSERT INTO consent_events (id, patient_pseudonym, family, document_version_id, kind, signer_kind, \
           explained_by, signed_at, recorded_at, form_hash, hospital_org, recorded_by, idempotency_key, request_hash) \
         SELECT 'w-' || i, {PSEUDONYM_SQL}, 'cancer', 'cancer-v1', 'withdraw_all', 'patient', 'nurse', \
           now() - interval '1 hour', now() - interval '1 hour', repeat('a', 64), 'hospital-a', 'staff', 'w-' || i, 'h' \
         FROM generate_series(1, {n}) i WHERE i % 10 = 9"
    ))
    .execute(c)
    .unwrap();
    let now = chrono::Utc::now().naive_utc();
    for chunk in (1..=n).collect::<Vec<_>>().chunks(100_000) {
        let rows: Vec<SampleRow> = chunk
            .iter()
            .map(|i| SampleRow {
                genome_id: sample_id(key, "hospital-a", &format!("S{i}")).to_string(),
                key_version: key.version as i32,
                patient_pseudonym: pseudonym(*i),
                hospital_org: "hospital-a".into(),
                registered_by_org: "hospital-a".into(),
                registered_by: "staff".into(),
                kind: "germline".into(),
                assay: "wgs".into(),
                test_order_ref: None,
                ccat_report_id: None,
                tumour_category: None,
                request_hash: "h".into(),
                registered_at: now,
            })
            .collect();
        diesel::copy_from(genomegate::db::schema::genome_samples::table)
            .from_insertable(&rows)
            .execute(c)
            .unwrap();
    }
    diesel::sql_query(
        "INSERT INTO genome_data_objects (genome_id, name, version, uri, size_bytes, sha256, format, legal_class, registered_by, registered_at) \
         SELECT genome_id, 'germline.cram', 1, 's3://genome-store/' || genome_id || '/germline.cram', 35000000000, repeat('c', 64), 'cram', 'identification_code', 'staff', now() \
         FROM genome_samples",
    )
    .execute(c)
    .unwrap();
    let governance = bench.token_as(&["governance"], "governance-body", "gov");
    let created = bench.setup_post(
        "/v1/datasets",
        &governance,
        &json!({"name": "Cancer germline WGS", "domain": "cancer", "terms": {"permission": "HMB"}, "portfolio": "drug_discovery"}),
        201,
    );
    let dataset = created["id"].as_str().unwrap().to_owned();
    diesel::sql_query(format!(
        "INSERT INTO dataset_samples (dataset_id, genome_id, diagnosis, added_at, patient_pseudonym) \
         SELECT '{dataset}', genome_id, 'MONDO:0007254', now(), patient_pseudonym FROM genome_samples"
    ))
    .execute(c)
    .unwrap();
    // A database in service has been vacuumed since its rows were written
    // (autovacuum runs after inserts too). A freshly loaded one has not: its
    // first reader sets the hint bits of every page it touches, writing
    // them, and cannot read an index alone. Without this the release would
    // pay for the seed's bulk load. `BENCH_VACUUM=0` measures that case;
    // BENCHMARKS.md gives figures both ways.
    let settle = if env_or("BENCH_VACUUM", 1) == 0 {
        "ANALYZE"
    } else {
        "VACUUM ANALYZE"
    };
    diesel::sql_query(settle).execute(c).unwrap();
    dataset
}

/// An industry application through the API: verified organization,
/// attested researcher, three committee votes, accepted agreement.
fn approved_application(bench: &Bench, dataset: &str) -> String {
    let governance = governance_token(bench);
    let put = |path: &str, body: serde_json::Value| governance_put(bench, path, body);
    put(
        &format!("/v1/organizations/{ORG}"),
        json!({"kind": "industry", "country": "JP"}),
    );
    put(
        &format!("/v1/organizations/{ORG}/researchers/res-1/attestation"),
        json!({"training": "APRIN", "completed_on": "2026-01-10", "expires_on": "2029-01-10"}),
    );
    let text = bench.setup_post(
        "/v1/agreement-texts",
        &governance,
        &json!({"body": "Data-use agreement v1"}),
        201,
    );
    let researcher = bench.token_as(&["researcher"], ORG, "res-1");
    let submitted = bench.setup_post(
        "/v1/applications",
        &researcher,
        &json!({"title": "Benchmark", "purpose": {"code": "HMB"}, "datasets": [dataset], "members": [],
                "ethics_ref": "IRB-1", "starts_on": "2026-11-01", "ends_on": "2028-11-30", "recipients_abroad": false}),
        201,
    );
    let id = submitted["id"].as_str().unwrap().to_owned();
    let mut view = serde_json::Value::Null;
    for voter in ["c-1", "c-2", "c-3"] {
        view = bench.setup_post(
            &format!("/v1/applications/{id}/votes"),
            &bench.token_as(&["review_committee"], "committee", voter),
            &json!({"decision": "approve"}),
            200,
        );
    }
    let agreement = view["agreement"]["id"].as_str().unwrap();
    bench.setup_post(
        &format!("/v1/agreements/{agreement}/acceptances"),
        &researcher,
        &json!({"text_sha256": text["sha256"]}),
        200,
    );
    id
}

fn governance_token(bench: &Bench) -> String {
    bench.token_as(&["governance"], "governance-body", "gov")
}

/// A governance `PUT` to the register, which must answer 200.
fn governance_put(bench: &Bench, path: &str, body: serde_json::Value) {
    let governance = governance_token(bench);
    bench.runtime.block_on(async {
        let r = bench
            .client
            .put(format!("{}{path}", bench.base))
            .bearer_auth(&governance)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    })
}

/// The applicant re-registered abroad: no patient of the seed consented to
/// international transfer, so the register's change recalls every included
/// sample in its own request and transaction (decision 0027), against the
/// same recall notices COPYed raw. No webhook is registered, so no
/// deliveries are queued on either side.
fn register_recall(bench: &Bench, release_id: &str, included: i64) {
    let t = Instant::now();
    governance_put(
        bench,
        &format!("/v1/organizations/{ORG}"),
        json!({"kind": "industry", "country": "US"}),
    );
    let service = t.elapsed();
    let mut conn = bench.raw_connection();
    use genomegate::db::schema::recall_notices as r;
    // Written again into the same table under other IDs, so the raw side
    // pays for the same indexes and takes `seq` from the same sequence.
    let notices: Vec<RecallRow> = r::table
        .filter(r::release_id.eq(release_id))
        .select(RecallRow::as_select())
        .load(pg(&mut conn))
        .unwrap()
        .into_iter()
        .map(|n| RecallRow {
            id: format!("raw:{}", n.id),
            ..n
        })
        .collect();
    let t = Instant::now();
    write_transaction(&mut conn, |conn| {
        diesel::copy_from(r::table)
            .from_insertable(&notices)
            .execute(pg(conn))
    })
    .unwrap();
    let raw = t.elapsed();
    println!(
        "data_access register recall: PostgreSQL, the applicant re-registered abroad, {} of {included} included samples recalled",
        notices.len()
    );
    println!(
        "  service (HTTPS, every released sample's consent re-decided, one recall notice each; 1 tx): {:.0} ms",
        ms(service)
    );
    println!(
        "  raw (COPY of the same recall notices into the same table under other IDs, 1 tx): {:.0} ms",
        ms(raw)
    );
    println!("  target: none set (measured because the governance request grows with the release)");
}

/// A registered sample, as the seed writes it.
#[derive(Insertable)]
#[diesel(table_name = genomegate::db::schema::genome_samples)]
#[diesel(treat_none_as_default_value = false)]
struct SampleRow {
    genome_id: String,
    key_version: i32,
    patient_pseudonym: String,
    hospital_org: String,
    registered_by_org: String,
    registered_by: String,
    kind: String,
    assay: String,
    test_order_ref: Option<String>,
    ccat_report_id: Option<String>,
    tumour_category: Option<String>,
    request_hash: String,
    registered_at: chrono::NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = raw_release_samples)]
#[diesel(treat_none_as_default_value = false)]
struct RawSample {
    release_id: String,
    position: i64,
    dataset_id: String,
    genome_id: String,
    patient_pseudonym: String,
    project_sample_id: String,
    included: bool,
    reason: String,
    consent_version: Option<i32>,
}

diesel::table! {
    raw_release_samples (release_id, position) {
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

/// The rows a release wrote, read back, then COPYed into identical tables
/// in one transaction: what the database alone needs for the same writes.
fn raw_release(bench: &Bench, release_id: &str) -> Duration {
    let mut conn = bench.raw_connection();
    let c = pg(&mut conn);
    for (copy, of) in [
        ("raw_release_samples", "release_samples"),
        ("raw_log_entries", "access_log_entries"),
        ("raw_log_outbox", "notification_outbox"),
    ] {
        diesel::sql_query(format!(
            "CREATE TABLE {copy} (LIKE {of} INCLUDING DEFAULTS INCLUDING INDEXES)"
        ))
        .execute(c)
        .unwrap();
    }
    use genomegate::db::schema::{access_log_entries as e, release_samples as s};
    // In position order, as the service writes them (decision 0030).
    let samples: Vec<RawSample> = s::table
        .filter(s::release_id.eq(release_id))
        .order(s::position)
        .select((
            s::release_id,
            s::position,
            s::dataset_id,
            s::genome_id,
            s::patient_pseudonym,
            s::project_sample_id,
            s::included,
            s::reason,
            s::consent_version,
        ))
        .load::<(
            String,
            i64,
            String,
            String,
            String,
            String,
            bool,
            String,
            Option<i32>,
        )>(c)
        .unwrap()
        .into_iter()
        .map(|r| RawSample {
            release_id: r.0,
            position: r.1,
            dataset_id: r.2,
            genome_id: r.3,
            patient_pseudonym: r.4,
            project_sample_id: r.5,
            included: r.6,
            reason: r.7,
            consent_version: r.8,
        })
        .collect();
    let entries: Vec<RawEntry> = e::table
        .filter(e::action.eq("dataset_release"))
        .select((
            e::seq,
            e::entry,
            e::recorded_at,
            e::patient_pseudonym,
            e::actor_org,
            e::actor_user,
            e::action,
        ))
        .load::<(
            i64,
            Vec<u8>,
            chrono::NaiveDateTime,
            String,
            String,
            String,
            String,
        )>(c)
        .unwrap()
        .into_iter()
        .map(|r| RawEntry {
            seq: r.0,
            entry: r.1,
            recorded_at: r.2,
            patient_pseudonym: r.3,
            actor_org: r.4,
            actor_user: r.5,
            action: r.6,
        })
        .collect();
    let outbox: Vec<RawOutbox> = entries
        .iter()
        .map(|e| RawOutbox {
            seq: e.seq,
            patient_pseudonym: e.patient_pseudonym.clone(),
        })
        .collect();
    let t = Instant::now();
    write_transaction(&mut conn, |conn| {
        let c = pg(conn);
        diesel::copy_from(raw_release_samples::table)
            .from_insertable(&samples)
            .execute(c)?;
        diesel::copy_from(raw_log_entries::table)
            .from_insertable(&entries)
            .execute(c)?;
        diesel::copy_from(raw_log_outbox::table)
            .from_insertable(&outbox)
            .execute(c)
    })
    .unwrap();
    t.elapsed()
}

/// Pages of 1,000 objects resolved over HTTPS by the store, against the
/// same page read and the same 1,000 entries COPYed raw.
fn resolve(bench: &Bench, handle: &str, release_id: &str) {
    let requests: usize = env_or("BENCH_RESOLVES", 200);
    let store = bench.token_as(&["data_store"], STORE, "store");
    let mut latencies = Vec::new();
    // Each page's bounds, (after, next_after), for the raw side to read the
    // same rows.
    let mut windows: Vec<(i64, i64)> = Vec::with_capacity(requests);
    let started = Instant::now();
    bench.runtime.block_on(async {
        // The store follows `next_after` through the release, and starts
        // again from the first page after the last.
        let mut after = 0i64;
        for _ in 0..requests {
            let t = Instant::now();
            let r = bench
                .client
                .post(format!("{}/v1/handles/resolve", bench.base))
                .bearer_auth(&store)
                .json(&json!({"handle": handle, "after": after, "limit": 1000}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let page: serde_json::Value = r.json().await.unwrap();
            latencies.push(t.elapsed());
            let next = page["next_after"].as_i64();
            windows.push((after, next.unwrap_or(POSITION_SPAN)));
            after = next.unwrap_or(0);
        }
    });
    let service = summarize(latencies, started.elapsed());

    let mut conn = bench.raw_connection();
    let template: Vec<(Vec<u8>, String)> = {
        use genomegate::db::schema::access_log_entries as e;
        e::table
            .filter(e::action.eq("handle_resolve"))
            .limit(1000)
            .select((e::entry, e::patient_pseudonym))
            .load(pg(&mut conn))
            .unwrap()
    };
    let mut seq = 10_000_000_000i64;
    let mut raw = Vec::new();
    let started = Instant::now();
    for (after, through) in windows {
        let t = Instant::now();
        write_transaction(&mut conn, |conn| {
            let c = pg(conn);
            use genomegate::db::schema::{genome_data_objects as o, release_samples as s};
            let page: Vec<String> = s::table
                .filter(s::release_id.eq(release_id))
                .filter(s::position.gt(after))
                // The bounded range the service's page covered.
                .filter(s::position.le(through))
                .filter(s::included.eq(true))
                .order(s::position)
                .limit(1000)
                .select(s::genome_id)
                .load(c)?;
            let _objects: Vec<(String, String, String)> = o::table
                .filter(o::genome_id.eq_any(&page))
                .select((o::genome_id, o::name, o::uri))
                .load(c)?;
            let rows: Vec<RawEntry> = template
                .iter()
                .map(|(entry, patient)| {
                    seq += 1;
                    RawEntry {
                        seq,
                        entry: entry.clone(),
                        recorded_at: chrono::Utc::now().naive_utc(),
                        patient_pseudonym: patient.clone(),
                        actor_org: STORE.into(),
                        actor_user: "store".into(),
                        action: "handle_resolve".into(),
                    }
                })
                .collect();
            let outbox: Vec<RawOutbox> = rows
                .iter()
                .map(|r| RawOutbox {
                    seq: r.seq,
                    patient_pseudonym: r.patient_pseudonym.clone(),
                })
                .collect();
            diesel::copy_from(raw_log_entries::table)
                .from_insertable(&rows)
                .execute(c)?;
            diesel::copy_from(raw_log_outbox::table)
                .from_insertable(&outbox)
                .execute(c)
        })
        .unwrap();
        raw.push(t.elapsed());
    }
    let raw = summarize(raw, started.elapsed());
    println!(
        "data_access resolve: PostgreSQL, {requests} pages of up to 1,000 objects, one client"
    );
    println!(
        "  service (HTTPS, agreement + consent re-check, objects, 1,000 log entries + outbox rows): p50 {:.1} ms  p99 {:.1} ms",
        service.p50_ms, service.p99_ms
    );
    println!(
        "  raw (same page read + same entries COPYed, 1 tx): p50 {:.1} ms  p99 {:.1} ms",
        raw.p50_ms, raw.p99_ms
    );
    println!("  target: p99 <= 20 ms");
}
