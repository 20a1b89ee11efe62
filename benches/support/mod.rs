//! Shared machinery for the load benchmarks: a fresh PostgreSQL database,
//! the real service in-process over loopback HTTPS, a timed phase of
//! concurrent HTTPS clients, a timed phase of raw diesel writers, and the
//! figures both print.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use diesel::RunQueryDsl;
use genomegate::clock::SystemClock;
use genomegate::config::Config;
use genomegate::db::DbPool;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub struct Stats {
    pub count: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub fn summarize(mut latencies: Vec<Duration>, elapsed: Duration) -> Stats {
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

/// A running service on a fresh PostgreSQL database, dropped at the end.
pub struct Bench {
    pub base: String,
    pub db_url: String,
    pub client: reqwest::Client,
    pub runtime: tokio::runtime::Runtime,
    pub seconds: u64,
    pub clients: usize,
    signer: genomegate::auth::dev::Ed25519Signer,
    /// One sequence across all phases, so no request ever repeats another's
    /// idempotency key or sample reference.
    sequence: Arc<AtomicU64>,
    admin_url: String,
    db_name: String,
    pub keys_file: std::path::PathBuf,
    pub log_origin: String,
    /// The service, when it runs as its own process.
    server: Option<std::process::Child>,
    _dir: tempfile::TempDir,
}

/// A fresh database, certificates and the service's settings, before the
/// service starts.
struct Prepared {
    admin_url: String,
    db_name: String,
    db_url: String,
    dir: tempfile::TempDir,
    certs: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl Prepared {
    fn new(settings: &[(&str, &str)], bind: String) -> Self {
        let admin_url = std::env::var("GENOMEGATE_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let db_name = format!("gg_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = genomegate::db::establish_pg(&admin_url).expect("PostgreSQL reachable");
        diesel::sql_query(format!("CREATE DATABASE {db_name}"))
            .execute(&mut admin)
            .unwrap();
        let db_url = format!("{}/{db_name}", admin_url.rsplit_once('/').unwrap().0);
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        genomegate::certs::generate_dev_set(&certs, "hospital-a").unwrap();
        let env: Vec<(String, String)> = [
            ("GENOMEGATE__DATABASE__URL", db_url.clone()),
            ("GENOMEGATE__DATABASE__POOL_SIZE", "32".into()),
            ("GENOMEGATE__SERVER__BIND", bind),
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
                dir.path().join("keys.toml").display().to_string(),
            ),
            ("GENOMEGATE__KEYS__DEV_DIR", certs.display().to_string()),
            (
                "GENOMEGATE__POLICIES__DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/policies").into(),
            ),
        ]
        .into_iter()
        .chain(settings.iter().map(|(k, v)| (*k, v.to_string())))
        .map(|(k, v)| (k.to_owned(), v))
        // Settings from the environment win, for experiments.
        .chain(std::env::vars().filter(|(k, _)| k.starts_with("GENOMEGATE__")))
        .collect();
        Prepared {
            admin_url,
            db_name,
            db_url,
            dir,
            certs,
            env,
        }
    }

    fn into_bench(self, port: u16, server: Option<std::process::Child>) -> Bench {
        let log_origin = Config::load(None, self.env.clone())
            .unwrap()
            .log
            .origin
            .clone();
        let clients: usize = env_or("BENCH_CLIENTS", 32);
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.certs.join("ca.pem")).unwrap())
            .unwrap();
        Bench {
            base: format!("https://localhost:{port}"),
            db_url: self.db_url,
            client: reqwest::Client::builder()
                .add_root_certificate(ca)
                .pool_max_idle_per_host(clients)
                .build()
                .unwrap(),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            seconds: env_or("BENCH_SECONDS", 15),
            clients,
            signer: genomegate::auth::dev::load_or_create(&self.certs).unwrap(),
            sequence: Arc::new(AtomicU64::new(0)),
            admin_url: self.admin_url,
            db_name: self.db_name,
            keys_file: self.dir.path().join("keys.toml"),
            log_origin,
            server,
            _dir: self.dir,
        }
    }
}

impl Bench {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with further `GENOMEGATE__…` settings, the service in a
    /// thread of this process.
    pub fn start_with(settings: &[(&str, &str)]) -> Self {
        let prepared = Prepared::new(settings, "\"127.0.0.1:0\"".into());
        let config = Config::load(None, prepared.env.clone()).unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let state =
                    genomegate::server::build_state(&config, Arc::new(SystemClock)).unwrap();
                let bound = genomegate::server::bind(&config, state).unwrap();
                addr_tx.send(bound.addr).unwrap();
                bound.server.await.unwrap();
            })
        });
        let addr = addr_rx.recv().unwrap();
        prepared.into_bench(addr.port(), None)
    }

    /// Starts with further settings, the service as its own process (the
    /// `genomegate serve` binary), so its memory can be read apart from
    /// the clients'.
    pub fn start_process(settings: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let prepared = Prepared::new(settings, format!("127.0.0.1:{port}"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_genomegate"))
            .arg("serve")
            .envs(prepared.env.iter().cloned())
            .env(
                "GENOMEGATE__PUBLIC_BASE_URL",
                format!("https://localhost:{port}"),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let bench = prepared.into_bench(port, Some(child));
        let ready = format!("{}/readyz", bench.base);
        bench.runtime.block_on(async {
            for _ in 0..300 {
                if bench
                    .client
                    .get(&ready)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the service did not start");
        });
        bench
    }

    /// The service's process ID, when it runs as its own process.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(|c| c.id())
    }

    /// Publishes version 1 of the `cancer` document with these scope items.
    pub fn publish_cancer(&self, items: &[&str]) {
        let admin = self.token(&["consent_admin"], "governance");
        let items: Vec<_> = items
            .iter()
            .map(|k| serde_json::json!({"key": k, "change": "added", "label_ja": k, "label_en": k, "text_ja": "説明", "text_en": "Explanation"}))
            .collect();
        let draft = serde_json::json!({"title_ja": "がん", "title_en": "Cancer", "body_ja": "本文", "body_en": "Body", "items": items});
        self.setup_post("/v1/documents/cancer/versions", &admin, &draft, 201);
        self.setup_post(
            "/v1/documents/cancer/versions/1/publish",
            &admin,
            &serde_json::json!({}),
            200,
        );
    }

    /// A direct connection to the benchmark database.
    pub fn raw_connection(&self) -> genomegate::db::DbConnection {
        genomegate::db::connect_one(&self.db_url).unwrap()
    }

    pub fn token(&self, roles: &[&str], org: &str) -> String {
        self.token_as(roles, org, "bench")
    }

    /// A token for the subject `sub` (committee members must differ).
    pub fn token_as(&self, roles: &[&str], org: &str, sub: &str) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.signer
            .sign(
                "genomegate",
                sub,
                org,
                &roles,
                chrono::Utc::now(),
                chrono::Duration::hours(2),
            )
            .unwrap()
    }

    /// POSTs `body` to `path` and asserts `expected`.
    pub fn setup_post(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
        expected: u16,
    ) -> serde_json::Value {
        self.runtime.block_on(async {
            let r = self
                .client
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            assert_eq!(status, expected, "{path}: {body}");
            body
        })
    }

    /// Runs `clients` concurrent clients for `measure`, each calling
    /// `request(n)` with a global sequence number; a request counts when it
    /// returns true. Returns the figures and the number of failures.
    pub fn http_phase<F, Fut>(&self, measure: Duration, request: F) -> (Stats, u64)
    where
        F: Fn(u64) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let counter = self.sequence.clone();
        let errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let latencies = self.runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..self.clients {
                let (request, counter, errors, stop) = (
                    request.clone(),
                    counter.clone(),
                    errors.clone(),
                    stop.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let t = Instant::now();
                        if request(n).await {
                            latencies.push(t.elapsed());
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
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
        (
            summarize(latencies, started.elapsed()),
            errors.load(Ordering::Relaxed),
        )
    }

    /// Runs `clients` threads for the configured duration, each calling
    /// `write(conn, n)` in one transaction per call, straight through diesel.
    pub fn raw_phase<F>(&self, write: F) -> Stats
    where
        F: Fn(&mut genomegate::db::DbConnection, u64) -> Result<(), diesel::result::Error>
            + Clone
            + Send
            + 'static,
    {
        self.raw_loop(move |conn, n| {
            genomegate::db::write_transaction(conn, |c| write(c, n)).unwrap()
        })
    }

    /// As [`raw_phase`](Self::raw_phase) for reads: each call on its own,
    /// outside a transaction, as the service reads.
    pub fn raw_read_phase<F>(&self, read: F) -> Stats
    where
        F: Fn(&mut genomegate::db::DbConnection, u64) -> Result<(), diesel::result::Error>
            + Clone
            + Send
            + 'static,
    {
        self.raw_loop(move |conn, n| read(conn, n).unwrap())
    }

    /// `clients` threads, each with a pooled connection, calling `call`
    /// until the configured duration is up; their latencies.
    fn raw_loop<F>(&self, call: F) -> Stats
    where
        F: Fn(&mut genomegate::db::DbConnection, u64) + Clone + Send + 'static,
    {
        let pool: DbPool = genomegate::db::connect(&self.db_url, self.clients as u32).unwrap();
        let counter = self.sequence.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers: Vec<_> = (0..self.clients)
            .map(|_| {
                let (pool, call, counter, stop) =
                    (pool.clone(), call.clone(), counter.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut conn = pool.get().unwrap();
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let t = Instant::now();
                        call(&mut conn, n);
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(self.seconds));
        stop.store(true, Ordering::Relaxed);
        let latencies: Vec<Duration> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        summarize(latencies, started.elapsed())
    }

    pub fn report(
        &self,
        title: &str,
        what: &str,
        service: &Stats,
        errors: u64,
        raw: &Stats,
        targets: &str,
    ) {
        println!(
            "{title}: PostgreSQL, {} clients, {} s per phase",
            self.clients, self.seconds
        );
        println!("  service ({what}): {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} ok, {errors} errors)", service.per_second, service.p50_ms, service.p99_ms, service.count);
        println!(
            "  raw diesel (same rows, 1 tx each): {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
            raw.per_second, raw.p50_ms, raw.p99_ms
        );
        println!(
            "  ratio service/raw: {:.2}",
            service.per_second / raw.per_second
        );
        println!("  targets: {targets}");
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        // `BENCH_KEEP=1` keeps the database and the key file for a second
        // look (for example `genomegate verify-log` against a grown log).
        if std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1") {
            let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap()).keep();
            eprintln!(
                "kept database {} and keys in {}",
                self.db_url,
                dir.display()
            );
            return;
        }
        if let Ok(mut admin) = genomegate::db::establish_pg(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .execute(&mut admin);
        }
    }
}

/// Copies of the access-log tables for raw baselines (created `LIKE` the
/// real ones by each benchmark), and their rows.
pub mod raw {
    use diesel::prelude::*;

    diesel::table! {
        raw_log_entries (seq) {
            seq -> BigInt,
            entry -> Binary,
            recorded_at -> Timestamp,
            patient_pseudonym -> Text,
            actor_org -> Text,
            actor_user -> Text,
            action -> Text,
        }
    }

    diesel::table! {
        raw_log_outbox (seq) {
            seq -> BigInt,
            patient_pseudonym -> Text,
        }
    }

    #[derive(Insertable)]
    #[diesel(table_name = raw_log_entries)]
    #[diesel(treat_none_as_default_value = false)]
    pub struct RawEntry {
        pub seq: i64,
        pub entry: Vec<u8>,
        pub recorded_at: chrono::NaiveDateTime,
        pub patient_pseudonym: String,
        pub actor_org: String,
        pub actor_user: String,
        pub action: String,
    }

    #[derive(Insertable)]
    #[diesel(table_name = raw_log_outbox)]
    #[diesel(treat_none_as_default_value = false)]
    pub struct RawOutbox {
        pub seq: i64,
        pub patient_pseudonym: String,
    }
}

/// Waits until the integrator has emptied the outbox; returns how long.
pub fn drain_outbox(conn: &mut genomegate::db::DbConnection) -> Duration {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let started = Instant::now();
    loop {
        let left: Vec<Count> = genomegate::db_run!(conn, c => diesel::sql_query(
            "SELECT COUNT(*) AS n FROM notification_outbox"
        )
        .load(c)
        .unwrap());
        if left[0].n == 0 {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A log entry as a staff read of `patient`'s consent writes it, the
/// `n`th of a run (50 staff members take turns).
pub fn read_entry(patient: &str, n: u64) -> genomegate::ledger::entry::LogEntry {
    use genomegate::ledger::entry::{DataScope, LegalBasis, LogAction, Purpose};
    genomegate::app::entries::entry_by(
        "hospital-a",
        "hospital_staff",
        &format!("bench-{}", n % 50),
        patient,
        genomegate::app::entries::Access {
            action: LogAction::ConsentRead,
            purpose: Purpose::ConsentManagement,
            basis: LegalBasis::TreatingHospital {
                hospital: "hospital-a".into(),
            },
            scope: DataScope::ConsentRecord {
                family: "cancer".into(),
            },
        },
        // The service's clock precision (both databases keep microseconds).
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
    )
}
