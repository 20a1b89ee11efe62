//! One instance holding 5,000 open portal streams (issue #36): the service
//! runs as its own process; 5,000 patients each hold their live stream
//! open (`GET /v1/portal/notifications`, one HTTP/1.1 connection each, as
//! 5,000 browsers would); hospital staff then read patients' consents, and
//! each read's entry must reach that patient's open stream. Measured: from
//! the staff request's start, and from its answer (the commit is between
//! the two), to the event on the stream, and the service's resident
//! memory. The raw baseline, in the same run: the raw database committing
//! the same entry and outbox row and telling one waiting `LISTEN`
//! connection with `NOTIFY`, from the commit's start to the listener.
//!
//! ```sh
//! cargo bench --bench portal_streams    # BENCH_STREAMS, BENCH_SECONDS, BENCH_CLIENTS
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

use diesel::RunQueryDsl;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::raw::{raw_log_entries, raw_log_outbox, RawEntry, RawOutbox};
use support::{env_or, read_entry, summarize, Bench, Stats};

const ITEMS: [&str; 2] = ["ccat_registration", "secondary_use_academic"];

/// Resident and peak memory of a process, in MiB, from `/proc`.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A patient token as enrollment issues it, signed with the service's own
/// token key.
fn patient_token(signer: &genomegate::ed25519::Ed25519Signer, patient_ref: &str) -> String {
    let roles = vec!["patient".to_owned()];
    let now = chrono::Utc::now();
    let claims = genomegate::auth::dev::TokenClaims {
        iss: &signer.issuer,
        aud: "genomegate",
        sub: "patient-app-user",
        org: "patient-portal",
        roles: &roles,
        iat: now.timestamp(),
        exp: now.timestamp() + 4 * 3600,
        patient_ref: Some(patient_ref),
    };
    signer.sign_claims(&claims).unwrap()
}

/// One staff read: when it was sent, answered, and told on the stream.
struct Access {
    started: Instant,
    answered: Option<Instant>,
    arrived: Option<Instant>,
}

/// Every access, and each patient's accesses not yet told, oldest first.
/// An access is queued before its request is sent, since its event may
/// reach the stream before its answer reaches the staff.
#[derive(Default)]
struct Ledger {
    accesses: Vec<Access>,
    waiting: HashMap<usize, VecDeque<usize>>,
}

type Shared = Arc<Mutex<Ledger>>;

fn main() {
    let streams: usize = env_or("BENCH_STREAMS", 5_000);
    let mut bench = Bench::start_process(&[]);
    bench.clients = env_or("BENCH_CLIENTS", 8);
    let clients = bench.clients;
    bench.publish_cancer(&ITEMS);
    let pid = bench.server_pid().unwrap();
    let staff = bench.token(&["hospital_staff"], "hospital-a");

    // The patients, registered through the API.
    let decisions: serde_json::Map<String, serde_json::Value> = ITEMS
        .iter()
        .map(|k| (k.to_string(), json!("permit")))
        .collect();
    let (client, base) = (bench.client.clone(), bench.base.clone());
    let registering = Instant::now();
    let patients: Vec<String> = bench.runtime.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let found = Arc::new(Mutex::new(vec![String::new(); streams]));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (client, base, staff, decisions, next, found) = (
                client.clone(),
                base.clone(),
                staff.clone(),
                decisions.clone(),
                next.clone(),
                found.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= streams {
                        return;
                    }
                    let granted: serde_json::Value = client
                        .post(format!("{base}/v1/consents"))
                        .bearer_auth(&staff)
                        .header("Idempotency-Key", format!("stream-bench-{i}"))
                        .json(&json!({
                            "local_patient_id": format!("MRN-STREAM-{i}"),
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
                    let patient = granted["patient_ref"].as_str().unwrap().to_owned();
                    found.lock().unwrap()[i] = patient;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let found = found.lock().unwrap().clone();
        found
    });
    eprintln!(
        "registered {streams} patients in {:.1} s",
        registering.elapsed().as_secs_f64()
    );
    let mut conn = bench.raw_connection();
    support::drain_outbox(&mut conn);
    let (idle_rss, _) = memory_mib(pid);

    // Every patient's stream, open; an event settles that patient's oldest
    // pending access.
    let keys = genomegate::pseudonym::keyring::Keyring::load(&bench.keys_file).unwrap();
    let signer = genomegate::server::patient_token_signer(
        keys.current(genomegate::pseudonym::keyring::KeyDomain::Token),
        &bench.base,
    )
    .unwrap();
    let tokens: Vec<String> = patients.iter().map(|p| patient_token(&signer, p)).collect();
    let ca = reqwest::Certificate::from_pem(
        &std::fs::read(bench.keys_file.parent().unwrap().join("certs/ca.pem")).unwrap(),
    )
    .unwrap();
    let browsers = reqwest::Client::builder()
        .add_root_certificate(ca)
        .http1_only()
        .build()
        .unwrap();
    let ledger: Shared = Arc::default();
    let open = Arc::new(AtomicUsize::new(0));
    let opening = Instant::now();
    bench.runtime.block_on(async {
        let handshakes = Arc::new(tokio::sync::Semaphore::new(64));
        for (i, token) in tokens.into_iter().enumerate() {
            let (browsers, base, ledger, open, handshakes) = (
                browsers.clone(),
                base.clone(),
                ledger.clone(),
                open.clone(),
                handshakes.clone(),
            );
            tokio::spawn(async move {
                let permit = handshakes.acquire_owned().await.unwrap();
                let mut response = browsers
                    .get(format!("{base}/v1/portal/notifications"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                drop(permit);
                open.fetch_add(1, Ordering::Relaxed);
                let mut buffer = String::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    let arrived = Instant::now();
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let frame: String = buffer.drain(..end + 2).collect();
                        if !frame.contains("event: access") {
                            continue;
                        }
                        let mut ledger = ledger.lock().unwrap();
                        let told = ledger.waiting.get_mut(&i).and_then(|q| q.pop_front());
                        if let Some(k) = told {
                            ledger.accesses[k].arrived = Some(arrived);
                        }
                    }
                }
            });
        }
        while open.load(Ordering::Relaxed) < streams {
            assert!(
                opening.elapsed() < Duration::from_secs(300),
                "only {} of {streams} streams opened",
                open.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    eprintln!(
        "opened {streams} streams in {:.1} s",
        opening.elapsed().as_secs_f64()
    );
    let (open_rss, _) = memory_mib(pid);

    // Staff read consents, each of a patient with an open stream.
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let measured = Instant::now();
    bench.runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, base, staff, patients, ledger, counter, stop, sent) = (
                client.clone(),
                base.clone(),
                staff.clone(),
                patients.clone(),
                ledger.clone(),
                counter.clone(),
                stop.clone(),
                sent.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed) as usize;
                    // Spread over the patients, a different one each time.
                    let i = (n * 7919) % patients.len();
                    let k = {
                        let mut ledger = ledger.lock().unwrap();
                        let k = ledger.accesses.len();
                        ledger.accesses.push(Access {
                            started: Instant::now(),
                            answered: None,
                            arrived: None,
                        });
                        ledger.waiting.entry(i).or_default().push_back(k);
                        k
                    };
                    let status = client
                        .get(format!(
                            "{base}/v1/patients/{}/consents/cancer",
                            patients[i]
                        ))
                        .bearer_auth(&staff)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    assert_eq!(status, 200);
                    ledger.lock().unwrap().accesses[k].answered = Some(Instant::now());
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(bench.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        // Let the last events arrive.
        let told = |ledger: &Shared| {
            ledger
                .lock()
                .unwrap()
                .accesses
                .iter()
                .filter(|a| a.arrived.is_some())
                .count() as u64
        };
        let waited = Instant::now();
        while told(&ledger) < sent.load(Ordering::Relaxed)
            && waited.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let elapsed = measured.elapsed();
    let (rss, peak) = memory_mib(pid);
    let sent = sent.load(Ordering::Relaxed);
    let (from_start, from_answer): (Vec<Duration>, Vec<Duration>) = ledger
        .lock()
        .unwrap()
        .accesses
        .iter()
        .filter_map(|a| {
            let arrived = a.arrived?;
            let answered = a.answered?;
            Some((
                arrived - a.started,
                arrived.saturating_duration_since(answered),
            ))
        })
        .unzip();
    let delivered = from_start.len() as u64;
    let start_stats = summarize(from_start, elapsed);
    let answer_stats = summarize(from_answer, elapsed);

    let raw = raw_notify_phase(&bench);

    println!(
        "Portal streams: PostgreSQL, {streams} open streams (HTTP/1.1, one connection each), {clients} staff readers, {} s",
        bench.seconds
    );
    println!(
        "  service, request start to event on the stream: {:>6.0} accesses/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({delivered} of {sent} delivered)",
        start_stats.per_second, start_stats.p50_ms, start_stats.p99_ms
    );
    println!(
        "  service, answer (after the commit) to event:            p50 {:>6.2} ms  p99 {:>6.2} ms",
        answer_stats.p50_ms, answer_stats.p99_ms
    );
    println!(
        "  raw PostgreSQL, commit start to NOTIFY at a LISTEN connection: {:>6.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        raw.per_second, raw.p50_ms, raw.p99_ms
    );
    println!(
        "  ratio raw/service p99 (request start): {:.3}",
        raw.p99_ms / start_stats.p99_ms
    );
    println!(
        "  service memory: {idle_rss:.0} MiB idle, {open_rss:.0} MiB with every stream open, {rss:.0} MiB after the run (peak {peak:.0} MiB)"
    );
    println!("  targets: commit-to-page p99 <= 250 ms, RSS <= 400 MB with 5,000 open streams");
}

/// The raw database doing the notifying part of the same work: `clients`
/// writers each commit an entry and its outbox row with a `NOTIFY` in one
/// transaction; one `LISTEN` connection, polling, hears them.
fn raw_notify_phase(bench: &Bench) -> Stats {
    let mut setup = bench.raw_connection();
    for sql in [
        "CREATE TABLE raw_log_entries (LIKE access_log_entries INCLUDING DEFAULTS INCLUDING INDEXES)",
        "CREATE TABLE raw_log_outbox (LIKE notification_outbox INCLUDING DEFAULTS INCLUDING INDEXES)",
    ] {
        genomegate::db_run!(&mut setup, c => diesel::sql_query(sql).execute(c)).unwrap();
    }
    let started_at: Arc<Mutex<HashMap<i64, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let listening = Arc::new(AtomicBool::new(false));
    let listener = {
        let (url, started_at, latencies, stop, listening) = (
            bench.db_url.clone(),
            started_at.clone(),
            latencies.clone(),
            stop.clone(),
            listening.clone(),
        );
        std::thread::spawn(move || {
            let mut conn = genomegate::db::establish_pg(&url).unwrap();
            diesel::sql_query("LISTEN raw_stream_bench")
                .execute(&mut conn)
                .unwrap();
            listening.store(true, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                // A round trip brings in what has been notified.
                diesel::sql_query("SELECT 1").execute(&mut conn).unwrap();
                let heard: Vec<_> = conn.notifications_iter().collect();
                let arrived = Instant::now();
                for n in heard {
                    let seq: i64 = n.unwrap().payload.parse().unwrap();
                    if let Some(t) = started_at.lock().unwrap().remove(&seq) {
                        latencies.lock().unwrap().push(arrived - t);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    while !listening.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let stop_writers = Arc::new(AtomicBool::new(false));
    let sequence = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..bench.clients)
        .map(|_| {
            let (url, started_at, stop_writers, sequence) = (
                bench.db_url.clone(),
                started_at.clone(),
                stop_writers.clone(),
                sequence.clone(),
            );
            std::thread::spawn(move || {
                let mut conn = genomegate::db::connect_one(&url).unwrap();
                while !stop_writers.load(Ordering::Relaxed) {
                    let n = sequence.fetch_add(1, Ordering::Relaxed) as i64 + 1;
                    let patient = format!("{:064x}", n);
                    let entry = read_entry(&patient, n as u64);
                    started_at.lock().unwrap().insert(n, Instant::now());
                    genomegate::db::write_transaction(&mut conn, |c| {
                        genomegate::db_run!(c, c => {
                            diesel::insert_into(raw_log_entries::table)
                                .values(&RawEntry {
                                    seq: n,
                                    entry: entry.to_bytes(),
                                    recorded_at: entry.at.naive_utc(),
                                    patient_pseudonym: patient.clone(),
                                    actor_org: entry.actor.org.clone(),
                                    actor_user: entry.actor.user.clone(),
                                    action: "consent_read".into(),
                                })
                                .execute(c)?;
                            diesel::insert_into(raw_log_outbox::table)
                                .values(&RawOutbox {
                                    seq: n,
                                    patient_pseudonym: patient.clone(),
                                })
                                .execute(c)?;
                            diesel::sql_query(format!("NOTIFY raw_stream_bench, '{n}'")).execute(c)
                        })?;
                        Ok::<_, diesel::result::Error>(())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(bench.seconds));
    stop_writers.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    listener.join().unwrap();
    let latencies = latencies.lock().unwrap().clone();
    summarize(latencies, started.elapsed())
}
