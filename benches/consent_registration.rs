//! Load generator: e-consent registrations over loopback HTTPS against the
//! real service on PostgreSQL, from 32 concurrent clients, beside the raw
//! database doing the same writes in the same run.
//!
//!     cargo bench --bench consent_registration
//!
//! Environment:
//! - `GENOMEGATE_BENCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`):
//!   server on which a fresh database is created and dropped;
//! - `BENCH_SECONDS` (default 15): measured duration of each phase;
//! - `BENCH_CLIENTS` (default 32): concurrent clients / raw writer threads.
//!
//! This is a benchmark, not a test: it prints figures and never fails on them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use diesel::{Connection, PgConnection, RunQueryDsl};
use genomegate::clock::SystemClock;
use genomegate::config::Config;
use genomegate::consent::{Decision, ScopeItemKey};
use genomegate::db::consents::{ensure_patient, insert_event, EventRow};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    count: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn summarize(mut latencies: Vec<Duration>, elapsed: Duration) -> Stats {
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Stats {
        count: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

fn main() {
    let admin_url = std::env::var("GENOMEGATE_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let seconds: u64 = env_or("BENCH_SECONDS", 15);
    let clients: usize = env_or("BENCH_CLIENTS", 32);
    let db_name = format!("gg_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(&admin_url).expect("PostgreSQL reachable");
    diesel::sql_query(format!("CREATE DATABASE {db_name}"))
        .execute(&mut admin)
        .unwrap();
    let db_url = format!("{}/{db_name}", admin_url.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();

    let result = std::panic::catch_unwind(|| run(&db_url, dir.path(), seconds, clients));
    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .execute(&mut admin);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn run(db_url: &str, dir: &std::path::Path, seconds: u64, clients: usize) {
    let certs = dir.join("certs");
    genomegate::certs::generate_dev_set(&certs, "hospital-a").unwrap();
    let env: Vec<(String, String)> = [
        ("GENOMEGATE__DATABASE__URL", db_url.to_owned()),
        ("GENOMEGATE__DATABASE__POOL_SIZE", "32".into()),
        ("GENOMEGATE__SERVER__BIND", "\"127.0.0.1:0\"".into()),
        (
            "GENOMEGATE__TLS__CERT",
            certs.join("server.pem").display().to_string(),
        ),
        (
            "GENOMEGATE__TLS__KEY",
            certs.join("server.key").display().to_string(),
        ),
        (
            "GENOMEGATE__KEYS__FILE",
            dir.join("keys.toml").display().to_string(),
        ),
        ("GENOMEGATE__KEYS__DEV_DIR", certs.display().to_string()),
        (
            "GENOMEGATE__POLICIES__DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/policies").into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::load(None, env).unwrap();

    // The service, on its own actix system and worker threads.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server_config = config.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let state =
                genomegate::server::build_state(&server_config, Arc::new(SystemClock)).unwrap();
            let bound = genomegate::server::bind(&server_config, state).unwrap();
            addr_tx.send(bound.addr).unwrap();
            bound.server.await.unwrap();
        })
    });
    let addr = addr_rx.recv().unwrap();
    let base = format!("https://localhost:{}", addr.port());
    let signer = genomegate::auth::dev::load_or_create(&certs).unwrap();
    let token = |roles: &[&str], org: &str| {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        signer
            .sign(
                "genomegate",
                "bench",
                org,
                &roles,
                chrono::Utc::now(),
                chrono::Duration::hours(2),
            )
            .unwrap()
    };
    let admin = token(&["consent_admin"], "governance");
    let staff = token(&["hospital_staff"], "hospital-a");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The eight-item cancer document.
    let items: Vec<_> = ITEMS
        .iter()
        .map(|k| json!({"key": k, "change": "added", "label_ja": k, "label_en": k, "text_ja": "説明", "text_en": "Explanation"}))
        .collect();
    let draft = json!({"title_ja": "がん", "title_en": "Cancer", "body_ja": "本文", "body_en": "Body", "items": items});
    let client = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    runtime.block_on(async {
        let r = client
            .post(format!("{base}/v1/documents/cancer/versions"))
            .bearer_auth(&admin)
            .json(&draft)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = client
            .post(format!("{base}/v1/documents/cancer/versions/1/publish"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
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

    // ---- Service: HTTPS registrations from `clients` concurrent clients.
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let phase = |measure: Duration, record: bool| {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let latencies = runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (client, base, staff, decisions) = (
                    client.clone(),
                    base.clone(),
                    staff.clone(),
                    decisions.clone(),
                );
                let (counter, errors, stop) = (counter.clone(), errors.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let body = json!({
                            "local_patient_id": format!("MRN-{n:09}"),
                            "document_version": "cancer-v1",
                            "decisions": decisions,
                            "signer": {"kind": "patient"},
                            "explained_by": "bench-nurse",
                            "signed_at": chrono::Utc::now().to_rfc3339(),
                            "form_hash": FORM_HASH,
                        });
                        let t = Instant::now();
                        let r = client
                            .post(format!("{base}/v1/consents"))
                            .bearer_auth(&staff)
                            .header("Idempotency-Key", format!("bench-{n}"))
                            .json(&body)
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == 201 => {
                                let _ = r.bytes().await;
                                latencies.push(t.elapsed());
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    latencies
                }));
            }
            tokio::time::sleep(measure).await;
            stop.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        });
        record.then(|| summarize(latencies, started.elapsed()))
    };
    phase(Duration::from_secs(2), false);
    let service = phase(Duration::from_secs(seconds), true).unwrap();

    // ---- Raw: the same rows, one transaction per consent, straight through
    // diesel from `clients` threads.
    let pool = genomegate::db::connect(db_url, clients as u32).unwrap();
    let key_for: Vec<(ScopeItemKey, Decision)> = ITEMS
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
    let raw_counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (pool, key_for, raw_counter, stop) = (
                pool.clone(),
                key_for.clone(),
                raw_counter.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = raw_counter.fetch_add(1, Ordering::Relaxed);
                    let now = chrono::Utc::now();
                    let pseudonym = format!("{:064x}", u128::MAX - n as u128);
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
                    let t = Instant::now();
                    genomegate::db::write_transaction(&mut conn, |c| {
                        ensure_patient(c, &pseudonym, "hospital-raw", now)?;
                        insert_event(c, &row, &key_for)
                    })
                    .unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let raw_latencies: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let raw = summarize(raw_latencies, started.elapsed());

    println!("consent_registration: PostgreSQL, {clients} clients, {seconds} s per phase, 8 scope items per consent");
    println!("  service (HTTPS, auth, policy, validation, idempotency, 1 tx): {:>8.0} registrations/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} ok, {} errors)", service.per_second, service.p50_ms, service.p99_ms, service.count, errors.load(Ordering::Relaxed));
    println!("  raw diesel (same rows, 1 tx per consent):                     {:>8.0} registrations/s  p50 {:>6.2} ms  p99 {:>6.2} ms", raw.per_second, raw.p50_ms, raw.p99_ms);
    println!(
        "  ratio service/raw: {:.2}",
        service.per_second / raw.per_second
    );
    println!("  targets: >= 1500/s, p99 <= 50 ms, ratio >= 0.5");
}
