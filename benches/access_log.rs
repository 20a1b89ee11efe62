//! The access log (issue #4) on PostgreSQL, each figure beside the raw
//! database doing the same work in the same run:
//!
//! - `appends`: logged reads over HTTPS from 32 clients, until every entry
//!   is integrated (tree nodes, so proofs, and the outbox row), against
//!   raw one-entry transactions integrated the same way;
//! - `sse`: commit-to-receipt latency on 1,000 live patient streams,
//!   against raw PostgreSQL commit-to-LISTEN latency;
//! - `batch`: appending 100,000 entries in one transaction (a release),
//!   against COPY of the same rows into identical tables;
//! - `verify`: `verify-log` over 1,000,000 entries, against reading the
//!   same rows;
//! - `proof`: inclusion proofs at 1,000,000 entries, against fetching the
//!   same nodes.
//!
//!     cargo bench --bench access_log
//!
//! Environment: `GENOMEGATE_BENCH_PG_URL`, `BENCH_SECONDS` (default 15),
//! `BENCH_CLIENTS` (default 32), `BENCH_ONLY` (comma-separated parts),
//! `BENCH_STREAMS` (default 1,000), `BENCH_LOG_SIZE` (default 1,000,000).
//! A benchmark, not a test: it prints figures and never fails on them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

use diesel::prelude::*;
use genomegate::db::{ledger, write_transaction, DbConnection};
use genomegate::ledger::entry::LogEntry;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::raw::{raw_log_entries, raw_log_outbox, RawEntry, RawOutbox};
use support::{env_or, read_entry, summarize, Bench, Stats};

const ITEMS: [&str; 4] = [
    "ccat_registration",
    "secondary_use_academic",
    "secondary_use_industry",
    "recontact",
];
const BATCH: usize = 100_000;

struct Patient {
    patient_ref: String,
    enrollment_code: String,
}

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|o| o == part);
    let bench = Bench::start_with(&[
        // Every stream's enrollment comes from one loopback address.
        ("GENOMEGATE__PATIENTS__ATTEMPTS_PER_MINUTE", "100000000"),
    ]);
    bench.publish_cancer(&ITEMS);
    let staff = bench.token(&["hospital_staff"], "hospital-a");
    let patients = register_patients(&bench, &staff, env_or("BENCH_STREAMS", 1_000));
    if wanted("appends") {
        single_appends(&bench, &staff, &patients);
    }
    if wanted("sse") {
        live_stream_latency(&bench, &staff, &patients);
    }
    if wanted("batch") || wanted("verify") || wanted("proof") {
        large_log(&bench, &wanted);
    }
}

fn register_patients(bench: &Bench, staff: &str, count: usize) -> Vec<Patient> {
    let decisions: serde_json::Map<String, serde_json::Value> = ITEMS
        .iter()
        .map(|k| (k.to_string(), json!("permit")))
        .collect();
    bench.runtime.block_on(async {
        let mut patients = Vec::with_capacity(count);
        for chunk in (0..count).collect::<Vec<_>>().chunks(32) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|&n| {
                    let (client, base, staff) =
                        (bench.client.clone(), bench.base.clone(), staff.to_owned());
                    let body = json!({
                        "local_patient_id": format!("MRN-LOG-{n:06}"),
                        "document_version": "cancer-v1",
                        "decisions": decisions,
                        "signer": {"kind": "patient"},
                        "explained_by": "bench",
                        "signed_at": chrono::Utc::now().to_rfc3339(),
                        "form_hash": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    });
                    tokio::spawn(async move {
                        let r = client
                            .post(format!("{base}/v1/consents"))
                            .bearer_auth(staff)
                            .header("Idempotency-Key", format!("log-{n}"))
                            .json(&body)
                            .send()
                            .await
                            .unwrap();
                        let status = r.status();
                        let body: serde_json::Value = r.json().await.unwrap();
                        assert_eq!(status, 201, "{body}");
                        Patient {
                            patient_ref: body["patient_ref"].as_str().unwrap().to_owned(),
                            enrollment_code: body["enrollment_code"]["code"]
                                .as_str()
                                .unwrap()
                                .to_owned(),
                        }
                    })
                })
                .collect();
            for t in tasks {
                patients.push(t.await.unwrap());
            }
        }
        patients
    })
}

fn drain(conn: &mut DbConnection) -> Duration {
    support::drain_outbox(conn)
}

/// Pseudonyms of the registered patients (entries name patients that exist).
fn pseudonyms(conn: &mut DbConnection) -> Vec<String> {
    use genomegate::db::schema::patients;
    genomegate::db_run!(conn, c => patients::table.select(patients::pseudonym).load(c).unwrap())
}

fn with_drain(stats: &Stats, drained: Duration) -> f64 {
    stats.count as f64 / (stats.count as f64 / stats.per_second + drained.as_secs_f64())
}

fn single_appends(bench: &Bench, staff: &str, patients: &[Patient]) {
    let refs: Arc<Vec<String>> = Arc::new(patients.iter().map(|p| p.patient_ref.clone()).collect());
    let read = {
        let (client, base, staff, refs) = (
            bench.client.clone(),
            bench.base.clone(),
            staff.to_owned(),
            refs.clone(),
        );
        move |n: u64| {
            let (client, base, staff, refs) =
                (client.clone(), base.clone(), staff.clone(), refs.clone());
            async move {
                let patient = &refs[n as usize % refs.len()];
                match client
                    .get(format!("{base}/v1/patients/{patient}/consents/cancer"))
                    .bearer_auth(&staff)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        }
    };
    let mut conn = bench.raw_connection();
    bench.http_phase(Duration::from_secs(2), read.clone());
    drain(&mut conn);
    let (service, errors) = bench.http_phase(Duration::from_secs(bench.seconds), read);
    let service_drain = drain(&mut conn);

    let pseudonyms = Arc::new(pseudonyms(&mut conn));
    let raw = bench.raw_phase(move |c, n| {
        ledger::append(
            c,
            &[read_entry(&pseudonyms[n as usize % pseudonyms.len()], n)],
        )
    });
    let raw_drain = drain(&mut conn);
    bench.report(
        "access_log single appends (a logged consent read per request)",
        "HTTPS, auth, policy, read, entry + outbox row in the read's tx",
        &service,
        errors,
        &raw,
        ">= 3000/s including integration (proof material) of every entry",
    );
    println!(
        "  until integrated: service {:.0}/s (drain {:.0} ms), raw {:.0}/s (drain {:.0} ms)",
        with_drain(&service, service_drain),
        service_drain.as_secs_f64() * 1000.0,
        with_drain(&raw, raw_drain),
        raw_drain.as_secs_f64() * 1000.0
    );
}

/// Splits complete SSE frames off `buffer`; returns how many `access`
/// frames arrived.
fn take_access_frames(buffer: &mut String) -> usize {
    let mut frames = 0;
    while let Some(end) = buffer.find("\n\n") {
        if buffer[..end].contains("event: access") {
            frames += 1;
        }
        buffer.drain(..end + 2);
    }
    frames
}

fn live_stream_latency(bench: &Bench, staff: &str, patients: &[Patient]) {
    let streams = patients.len();
    let triggers = streams * 2;
    let rate_per_s = 200.0;
    // The moment each patient's read was sent (None once answered by a frame).
    let sent: Arc<Vec<Mutex<Option<Instant>>>> =
        Arc::new((0..streams).map(|_| Mutex::new(None)).collect());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(triggers)));
    let service = bench.runtime.block_on(async {
        let mut tokens = Vec::with_capacity(streams);
        for p in patients {
            let r = bench
                .client
                .post(format!("{}/v1/portal/enroll", bench.base))
                .json(&json!({ "code": p.enrollment_code }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let body: serde_json::Value = r.json().await.unwrap();
            tokens.push(body["access_token"].as_str().unwrap().to_owned());
        }
        let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut readers = Vec::with_capacity(streams);
        for (i, token) in tokens.into_iter().enumerate() {
            let (client, base, sent, latencies, connected) = (
                bench.client.clone(),
                bench.base.clone(),
                sent.clone(),
                latencies.clone(),
                connected.clone(),
            );
            readers.push(tokio::spawn(async move {
                let mut r = client
                    .get(format!("{base}/v1/portal/notifications"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut buffer = String::new();
                while let Ok(Some(chunk)) = r.chunk().await {
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    for _ in 0..take_access_frames(&mut buffer) {
                        if let Some(at) = sent[i].lock().unwrap().take() {
                            latencies.lock().unwrap().push(at.elapsed());
                        }
                    }
                }
            }));
        }
        while connected.load(std::sync::atomic::Ordering::Relaxed) < streams {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate_per_s));
        for k in 0..triggers {
            tick.tick().await;
            let i = k % streams;
            *sent[i].lock().unwrap() = Some(Instant::now());
            let (client, url, staff) = (
                bench.client.clone(),
                format!(
                    "{}/v1/patients/{}/consents/cancer",
                    bench.base, patients[i].patient_ref
                ),
                staff.to_owned(),
            );
            tokio::spawn(async move {
                let r = client.get(url).bearer_auth(staff).send().await.unwrap();
                assert_eq!(r.status(), 200);
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for r in readers {
            r.abort();
        }
        summarize(latencies.lock().unwrap().clone(), started.elapsed())
    });

    // Raw: commit an entry with NOTIFY; a LISTENing connection hears it.
    let raw = raw_notify_latency(bench, triggers, rate_per_s);
    println!(
        "access_log live streams: PostgreSQL, {streams} connected streams, {triggers} logged reads at {rate_per_s:.0}/s"
    );
    println!(
        "  service (read sent -> frame on the patient's stream): p50 {:.2} ms  p99 {:.2} ms  ({} of {triggers} received)",
        service.p50_ms, service.p99_ms, service.count
    );
    println!(
        "  raw (entry + NOTIFY committed -> heard by LISTEN): p50 {:.2} ms  p99 {:.2} ms  ({} of {triggers} heard)",
        raw.p50_ms, raw.p99_ms, raw.count
    );
    println!("  target: p99 <= 100 ms");
}

fn raw_notify_latency(bench: &Bench, count: usize, rate_per_s: f64) -> Stats {
    let sent: Arc<Vec<Mutex<Option<Instant>>>> =
        Arc::new((0..count).map(|_| Mutex::new(None)).collect());
    let mut listener = bench.raw_connection();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let heard = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let DbConnection::Postgresql(pg) = &mut listener else {
                panic!("PostgreSQL only");
            };
            diesel::sql_query("LISTEN gg_bench_raw")
                .execute(pg)
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut latencies = Vec::with_capacity(count);
            let deadline = Instant::now()
                + Duration::from_secs_f64(count as f64 / rate_per_s)
                + Duration::from_secs(3);
            while latencies.len() < count && Instant::now() < deadline {
                let mut any = false;
                for note in pg.notifications_iter() {
                    any = true;
                    let k: usize = note.unwrap().payload.parse().unwrap();
                    if let Some(at) = sent[k].lock().unwrap().take() {
                        latencies.push(at.elapsed());
                    }
                }
                if !any {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            latencies
        })
    };
    ready.recv().unwrap();
    let mut conn = bench.raw_connection();
    let pseudonyms = pseudonyms(&mut conn);
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate_per_s);
    for k in 0..count {
        let due = started + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        *sent[k].lock().unwrap() = Some(Instant::now());
        write_transaction(&mut conn, |c| {
            ledger::append(c, &[read_entry(&pseudonyms[k % pseudonyms.len()], k as u64)])?;
            genomegate::db_run!(c, c => diesel::sql_query(format!("NOTIFY gg_bench_raw, '{k}'")).execute(c))
        })
        .unwrap();
    }
    let latencies = heard.join().unwrap();
    summarize(latencies, started.elapsed())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Grows the log to `BENCH_LOG_SIZE` entries in release-sized batches,
/// then verifies it and serves inclusion proofs from it.
fn large_log(bench: &Bench, wanted: &dyn Fn(&str) -> bool) {
    let target: u64 = env_or("BENCH_LOG_SIZE", 1_000_000);
    let mut conn = bench.raw_connection();
    drain(&mut conn);
    let DbConnection::Postgresql(pg) = &mut conn else {
        panic!("PostgreSQL only");
    };
    diesel::sql_query(
        "CREATE TABLE raw_log_entries (LIKE access_log_entries INCLUDING DEFAULTS INCLUDING INDEXES)",
    )
    .execute(pg)
    .unwrap();
    diesel::sql_query(
        "CREATE TABLE raw_log_outbox (LIKE notification_outbox INCLUDING DEFAULTS INCLUDING INDEXES)",
    )
    .execute(pg)
    .unwrap();
    let pseudonyms = pseudonyms(&mut conn);
    let (mut appends, mut copies, mut integrations) = (Vec::new(), Vec::new(), Vec::new());
    let mut raw_seq = 0i64;
    // A first, smaller batch tops the log up so that full batches end
    // exactly at the target; only full batches are reported.
    loop {
        let size = ledger::size(&mut conn).unwrap();
        if size >= target {
            break;
        }
        let len = match (target - size) as usize % BATCH {
            0 => BATCH,
            partial => partial,
        };
        let batch: Vec<LogEntry> = (0..len)
            .map(|i| read_entry(&pseudonyms[i % pseudonyms.len()], i as u64))
            .collect();
        let t = Instant::now();
        write_transaction(&mut conn, |c| ledger::append(c, &batch)).unwrap();
        let appended = t.elapsed();
        let integrated = drain(&mut conn);
        if len < BATCH {
            continue;
        }
        appends.push(ms(appended));
        integrations.push(ms(integrated));

        let rows: Vec<RawEntry> = batch
            .iter()
            .map(|e| {
                raw_seq += 1;
                RawEntry {
                    seq: raw_seq,
                    entry: e.to_bytes(),
                    recorded_at: e.at.naive_utc(),
                    patient_pseudonym: e.patient.clone(),
                    actor_org: e.actor.org.clone(),
                    actor_user: e.actor.user.clone(),
                    action: e.action.as_str().into(),
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
        let t = Instant::now();
        write_transaction(&mut conn, |c| {
            let DbConnection::Postgresql(pg) = c else {
                panic!("PostgreSQL only");
            };
            diesel::copy_from(raw_log_entries::table)
                .from_insertable(&rows)
                .execute(pg)?;
            diesel::copy_from(raw_log_outbox::table)
                .from_insertable(&outbox)
                .execute(pg)
        })
        .unwrap();
        copies.push(ms(t.elapsed()));
    }
    let size = ledger::size(&mut conn).unwrap();
    if wanted("batch") {
        let sorted = |v: &Vec<f64>| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            v
        };
        let (a, c, i) = (sorted(&appends), sorted(&copies), sorted(&integrations));
        println!(
            "access_log batch append: PostgreSQL, {} batches of {BATCH} entries, log grown to {size}",
            a.len()
        );
        println!(
            "  service (ledger::append, entries + outbox, 1 tx): median {:.0} ms  max {:.0} ms",
            percentile(&a, 0.5),
            a[a.len() - 1]
        );
        println!(
            "  raw (COPY of the same rows into identical tables, 1 tx): median {:.0} ms  max {:.0} ms",
            percentile(&c, 0.5),
            c[c.len() - 1]
        );
        println!(
            "  afterwards, integration (tree nodes, leaves, signed checkpoint): median {:.0} ms  max {:.0} ms",
            percentile(&i, 0.5),
            i[i.len() - 1]
        );
        println!("  target: append <= 1000 ms");
    }
    if wanted("verify") {
        verify_log(bench, &mut conn, size);
    }
    if wanted("proof") {
        inclusion_proofs(bench, &mut conn, size);
    }
}

fn verify_log(bench: &Bench, conn: &mut DbConnection, size: u64) {
    let keys = genomegate::pseudonym::keyring::Keyring::load(&bench.keys_file).unwrap();
    let (_, verifier_keys) =
        genomegate::workers::checkpoint_keys(&keys, &bench.log_origin).unwrap();
    let t = Instant::now();
    let report = ledger::verify(&bench.db_url, &bench.log_origin, &verifier_keys).unwrap();
    let service = t.elapsed();
    assert!(report.first_bad_index.is_none(), "the log verifies");

    // Raw: read the same rows the same way (a binary COPY of every entry,
    // node and leaf, one after another on one connection, and every
    // checkpoint), without decoding or hashing anything.
    let t = Instant::now();
    let mut bytes = 0usize;
    {
        use genomegate::db::schema::{access_log_entries, access_log_leaves, access_log_nodes};
        bytes += copy_out(&bench.db_url, access_log_entries::table);
        bytes += copy_out(&bench.db_url, access_log_nodes::table);
        bytes += copy_out(&bench.db_url, access_log_leaves::table);
    }
    let checkpoints = ledger::all_checkpoints(conn).unwrap();
    let raw = t.elapsed();
    println!(
        "access_log verify-log: PostgreSQL, {size} entries, {} checkpoints",
        checkpoints.len()
    );
    println!(
        "  service (recompute every leaf and node, check every checkpoint): {:.0} ms, at most {} rows read ahead",
        ms(service),
        report.peak_rows_held
    );
    println!(
        "  raw (read the same entries, nodes and checkpoints; {} MB): {:.0} ms",
        bytes / 1_000_000,
        ms(raw)
    );
    println!("  target: <= 3000 ms");
}

/// Bytes of a binary `COPY` of a whole table, read and dropped. Each copy
/// gets its own connection: diesel's raw COPY stream leaves the connection
/// unusable for a next command.
fn copy_out<T: diesel::pg::CopyTarget>(url: &str, table: T) -> usize {
    let mut pg = genomegate::db::establish_pg(url).unwrap();
    let mut stream = diesel::copy_to(table).load_raw(&mut pg).unwrap();
    std::io::copy(&mut stream, &mut std::io::sink()).unwrap() as usize
}

fn inclusion_proofs(bench: &Bench, conn: &mut DbConnection, size: u64) {
    const SAMPLES: usize = 1_000;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next_index = || {
        // xorshift64: a fixed, repeatable spread of indices.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % size
    };
    let indices: Vec<u64> = (0..SAMPLES).map(|_| next_index()).collect();
    let size = ledger::latest_checkpoint(conn).unwrap().unwrap().size as u64;
    let time = |f: &mut dyn FnMut(u64)| {
        let mut v: Vec<Duration> = Vec::with_capacity(SAMPLES);
        for &i in &indices {
            let t = Instant::now();
            f(i);
            v.push(t.elapsed());
        }
        summarize(v, Duration::from_secs(1))
    };
    let direct = time(&mut |i| {
        ledger::inclusion_proof(conn, i, size).unwrap();
    });
    let raw = time(&mut |i| {
        let wanted = genomegate::ledger::merkle::nodes_read_by(|node| {
            let _ = genomegate::ledger::merkle::inclusion_proof_from(i, size, node);
        });
        ledger::nodes_at(conn, &wanted).unwrap();
    });
    let https = bench.runtime.block_on(async {
        let mut v = Vec::with_capacity(SAMPLES);
        for &i in &indices {
            let t = Instant::now();
            let r = bench
                .client
                .get(format!(
                    "{}/v1/log/proofs/inclusion?index={i}&size={size}",
                    bench.base
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            v.push(t.elapsed());
        }
        summarize(v, Duration::from_secs(1))
    });
    println!("access_log inclusion proofs: PostgreSQL, tree size {size}, {SAMPLES} random indices, one at a time");
    println!(
        "  service over HTTPS (GET /v1/log/proofs/inclusion): p50 {:.3} ms  p99 {:.3} ms",
        https.p50_ms, https.p99_ms
    );
    println!(
        "  service in-process (ledger::inclusion_proof): p50 {:.3} ms  p99 {:.3} ms",
        direct.p50_ms, direct.p99_ms
    );
    println!(
        "  raw (one query for the same nodes): p50 {:.3} ms  p99 {:.3} ms",
        raw.p50_ms, raw.p99_ms
    );
    println!("  target: <= 2 ms");
}
