//! Test harness: starts the real service on port 0 over TLS against a fresh
//! database — a SQLite file in a temp dir, or a new PostgreSQL database on
//! the server named by `GENOMEGATE_TEST_PG_URL` — and drives it over HTTPS.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

pub mod access;
pub mod browser;
pub mod fhir;
pub mod receipts;
pub mod smtp;
pub mod webhooks;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::RunQueryDsl;
use genomegate::auth::dev::Ed25519Signer;
use genomegate::clock::{Clock, SharedClock, SystemClock};
use genomegate::config::{Config, IssuerConfig};
use genomegate::db::DbConnection;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub const PG_ENV: &str = "GENOMEGATE_TEST_PG_URL";
pub const ISSUER: &str = "https://idp.test.genomegate";
pub const AUDIENCE: &str = "genomegate";
pub const EDDSA_KID: &str = "test-eddsa";
pub const ES256_KID: &str = "test-es256";
pub const RS256_KID: &str = "test-rs256";
pub const FORM_HASH: &str =
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod name { sqlite, postgres }` tests that call `name(backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name(super::common::Backend::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name(super::common::Backend::Postgres).await
            }
        }
    )*};
}

/// Keys of the test issuer: one per accepted algorithm. RSA generation is
/// slow, so the set is made once per test binary.
pub struct IssuerKeys {
    pub eddsa: Ed25519Signer,
    /// The EdDSA private key, so attack tests can sign with the right key
    /// but the wrong claims.
    pub eddsa_pkcs8: Vec<u8>,
    pub es256_pem: Vec<u8>,
    pub rs256_pem: Vec<u8>,
    pub jwks: String,
}

pub fn issuer_keys() -> &'static IssuerKeys {
    static KEYS: OnceLock<IssuerKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        let eddsa_pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref().to_vec();
        let eddsa = Ed25519Signer::from_pkcs8(eddsa_pkcs8.clone(), EDDSA_KID.into(), ISSUER.into()).unwrap();
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let ec = openssl::ec::EcKey::generate(&group).unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let (mut x, mut y) = (openssl::bn::BigNum::new().unwrap(), openssl::bn::BigNum::new().unwrap());
        ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).unwrap();
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let b64 = |b: Vec<u8>| URL_SAFE_NO_PAD.encode(b);
        let eddsa_jwk: Value = serde_json::from_str::<Value>(&eddsa.jwks_json()).unwrap()["keys"][0].clone();
        let jwks = json!({"keys": [
            eddsa_jwk,
            {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": ES256_KID,
             "x": b64(x.to_vec_padded(32).unwrap()), "y": b64(y.to_vec_padded(32).unwrap())},
            {"kty": "RSA", "alg": "RS256", "kid": RS256_KID, "n": b64(rsa.n().to_vec()), "e": b64(rsa.e().to_vec())},
        ]})
        .to_string();
        IssuerKeys {
            eddsa,
            eddsa_pkcs8,
            es256_pem: openssl::pkey::PKey::from_ec_key(ec).unwrap().private_key_to_pem_pkcs8().unwrap(),
            rs256_pem: rsa.private_key_to_pem().unwrap(),
            jwks,
        }
    })
}

pub struct TestApp {
    pub backend: Backend,
    pub base: String,
    pub client: reqwest::Client,
    /// A client without a TLS client certificate (the governance body's).
    pub plain_client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub config: Config,
    db_url: String,
    /// Dropped after the server stops (field order matters: see `Drop`).
    pg_database: Option<FreshPgDatabase>,
    handle: actix_web::dev::ServerHandle,
    /// The settings this app was started with.
    env: Vec<(String, String)>,
    /// The service's clock, kept for restarts and other instances.
    clock: SharedClock,
}

/// A clock that runs at the wall clock's pace from an offset the test sets,
/// so a test can record a consent signed years ago and then come back to
/// the present.
#[derive(Debug, Default)]
pub struct ShiftedClock(std::sync::Mutex<chrono::Duration>);

impl ShiftedClock {
    pub fn shift(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() = by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + *self.0.lock().unwrap()
    }
}

impl TestApp {
    /// A service on a clock the test moves. Periodic screening is off: it
    /// would catch up on every day the clock skips.
    pub async fn spawn_with_shifted_clock(
        backend: Backend,
    ) -> Option<(TestApp, Arc<ShiftedClock>)> {
        let clock = Arc::new(ShiftedClock::default());
        let options = Options {
            clock: Some(clock.clone()),
            env: vec![
                ("GENOMEGATE__SCREENING__ENABLED", "false".into()),
                // The coming-of-age sweep notices a new day at once.
                ("GENOMEGATE__RECALL__CAME_OF_AGE_CHECK_MS", "100".into()),
            ],
            ..Options::default()
        };
        let app = TestApp::spawn_with(backend, options).await?;
        Some((app, clock))
    }

    /// On a service from [`Self::spawn_with_shifted_clock`]: publishes the
    /// first version of `family` and registers, at hospital-a, a grant that
    /// permits everything, both `ago` before now, signed by a parent for the
    /// child `local_id`. Returns the version and the grant's answer; the
    /// clock is back at the present.
    pub async fn parent_consented(
        &self,
        clock: &ShiftedClock,
        family: &str,
        local_id: &str,
        ago: chrono::Duration,
    ) -> (String, Value) {
        clock.shift(-ago);
        let version = self.publish(family, &first_draft()).await;
        let mut body = grant_body(local_id, &version, all_permit());
        body["signer"] = json!({"kind": "proxy", "relationship": "parent"});
        body["signed_at"] = json!((chrono::Utc::now() - ago).to_rfc3339());
        let key = format!("k-{local_id}");
        let (s, grant) = self
            .post("/v1/consents", &self.staff("hospital-a"), Some(&key), &body)
            .await;
        clock.shift(chrono::Duration::zero());
        assert_eq!(s, 201, "{grant}");
        (version, grant)
    }
}

/// A fresh PostgreSQL database of its own, dropped with this value.
pub struct FreshPgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

/// A case that needs a service its variable does not name. Under CI
/// (`CI=true`, as `.ci/run` sets it) that fails: a PostgreSQL or NATS case
/// must never pass by not running. Elsewhere it is a note, and the case
/// passes without running.
pub fn not_configured(var: &str, what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{var} is not set under CI=true: the {what} case must run, not be skipped");
    }
    eprintln!("skipped: {var} is not set, {what} case not run");
}

/// The URL named by `var`, or `None` after [`not_configured`].
pub fn service_url(var: &str, what: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        not_configured(var, what);
    }
    url
}

/// A fresh PostgreSQL database, or `None` (with a note) when the variable is
/// unset.
pub fn fresh_pg_database() -> Option<FreshPgDatabase> {
    let admin_url = service_url(PG_ENV, "PostgreSQL")?;
    let name = format!("gg_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = genomegate::db::establish_pg(&admin_url)
        .unwrap_or_else(|e| panic!("{PG_ENV} unreachable: {e}"));
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    Some(FreshPgDatabase {
        url: format!("{base}/{name}"),
        admin_url,
        name,
    })
}

impl Drop for FreshPgDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = genomegate::db::establish_pg(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

#[derive(Default)]
pub struct Options {
    pub client_ca: bool,
    pub require_client_cert: bool,
    pub client_cert_org: Option<&'static str>,
    /// Further `GENOMEGATE__…` settings.
    pub env: Vec<(&'static str, String)>,
    /// The service's clock; the system clock when unset.
    pub clock: Option<SharedClock>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, Options::default()).await
    }

    pub async fn spawn_with(backend: Backend, options: Options) -> Option<TestApp> {
        let dir = tempfile::tempdir().unwrap();
        let (db_url, pg_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("genomegate.db").display()),
                None,
            ),
            Backend::Postgres => {
                let database = fresh_pg_database()?;
                (database.url.clone(), Some(database))
            }
        };
        let certs_dir = dir.path().join("certs");
        let client = genomegate::certs::generate_dev_set(
            &certs_dir,
            options.client_cert_org.unwrap_or("hospital-a"),
        )
        .unwrap();
        let jwks_path = dir.path().join("issuer-jwks.json");
        std::fs::write(&jwks_path, &issuer_keys().jwks).unwrap();
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let env: Vec<(String, String)> = [
            ("GENOMEGATE__DATABASE__URL", db_url.clone()),
            ("GENOMEGATE__DATABASE__POOL_SIZE", "8".into()),
            ("GENOMEGATE__SERVER__BIND", "\"127.0.0.1:0\"".into()),
            ("GENOMEGATE__SERVER__WORKERS", "2".into()),
            ("GENOMEGATE__SERVER__BODY_LIMIT_BYTES", "65536".into()),
            (
                "GENOMEGATE__TLS__CERT",
                certs_dir.join("server.pem").display().to_string(),
            ),
            (
                "GENOMEGATE__TLS__KEY",
                certs_dir.join("server.key").display().to_string(),
            ),
            (
                "GENOMEGATE__KEYS__FILE",
                dir.path()
                    .join("keys/genomegate-keys.toml")
                    .display()
                    .to_string(),
            ),
            ("GENOMEGATE__KEYS__DEV_DIR", certs_dir.display().to_string()),
            ("GENOMEGATE__POLICIES__DIR", policies.display().to_string()),
            // Local webhook receivers speak plain HTTP on 127.0.0.1;
            // retries are quick.
            ("GENOMEGATE__NOTIFY__ALLOW_HTTP", "true".into()),
            ("GENOMEGATE__NOTIFY__ALLOW_PRIVATE_TARGETS", "true".into()),
            ("GENOMEGATE__NOTIFY__WEBHOOK_PORTS", "[]".into()),
            ("GENOMEGATE__NOTIFY__BACKOFF_MS", "50".into()),
            ("GENOMEGATE__NOTIFY__MAX_ATTEMPTS", "3".into()),
            // Tests repeat releases and visa requests quickly; the limit has
            // a test of its own.
            (
                "GENOMEGATE__DATA_ACCESS__MEMBER_REQUESTS_PER_MINUTE",
                "1000".into(),
            ),
        ]
        .into_iter()
        .chain(options.env.iter().cloned())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut config = Config::load(None, env.clone()).unwrap();
        config.auth.issuers = vec![IssuerConfig {
            issuer: ISSUER.into(),
            jwks_file: jwks_path,
        }];
        if options.client_ca {
            config.tls.client_ca = Some(certs_dir.join("ca.pem"));
            config.tls.require_client_cert = options.require_client_cert;
        }
        let clock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let state = genomegate::server::build_state(&config, clock.clone()).unwrap();
        let bound = genomegate::server::bind(&config, state).unwrap();
        let handle = bound.server.handle();
        actix_web::rt::spawn(bound.server);
        let ca = reqwest::Certificate::from_pem(&std::fs::read(certs_dir.join("ca.pem")).unwrap())
            .unwrap();
        let builder = || {
            reqwest::Client::builder()
                .add_root_certificate(ca.clone())
                .tls_built_in_root_certs(false)
        };
        let plain_client = builder().build().unwrap();
        let mut builder = builder();
        if options.client_cert_org.is_some() {
            let identity = reqwest::Identity::from_pkcs8_pem(
                &std::fs::read(&client.cert).unwrap(),
                &std::fs::read(&client.key).unwrap(),
            )
            .unwrap();
            builder = builder.identity(identity);
        }
        Some(TestApp {
            backend,
            base: format!("https://localhost:{}", bound.addr.port()),
            client: builder.build().unwrap(),
            plain_client,
            dir,
            config,
            db_url,
            pg_database,
            handle,
            env,
            clock,
        })
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An EdDSA token from the trusted test issuer.
    pub fn token(&self, roles: &[&str], org: &str) -> String {
        token_for(roles, org, "user-1")
    }

    pub fn admin(&self) -> String {
        self.token(&["consent_admin"], "governance")
    }

    pub fn staff(&self, org: &str) -> String {
        self.token(&["hospital_staff"], org)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.unwrap()).await
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        read(req.send().await.unwrap()).await
    }

    /// A POST under an `Idempotency-Key`: (status, body, whether the
    /// answer says it is a replay).
    pub async fn post_keyed(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: &Value,
    ) -> (u16, Value, bool) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let (status, body) = read(response).await;
        (status, body, replayed)
    }

    pub async fn post(
        &self,
        path: &str,
        token: &str,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        self.send_json(
            reqwest::Method::POST,
            path,
            Some(token),
            idempotency_key,
            body,
        )
        .await
    }

    /// Drafts and publishes a version as the governance body, over a
    /// connection without a hospital client certificate; returns its id.
    pub async fn publish(&self, family: &str, draft: &Value) -> String {
        let admin = |path: String, body: Value| {
            let req = self
                .plain_client
                .post(self.url(&path))
                .bearer_auth(self.admin())
                .json(&body);
            async move { read(req.send().await.unwrap()).await }
        };
        let (status, body) = admin(format!("/v1/documents/{family}/versions"), draft.clone()).await;
        assert_eq!(status, 201, "draft: {body}");
        let number = body["number"].as_u64().unwrap();
        let (status, body) = admin(
            format!("/v1/documents/{family}/versions/{number}/publish"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "publish: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Registers a grant; returns (status, body).
    pub async fn grant(
        &self,
        org: &str,
        local_id: &str,
        version: &str,
        decisions: Value,
        key: &str,
    ) -> (u16, Value) {
        self.post(
            "/v1/consents",
            &self.staff(org),
            Some(key),
            &grant_body(local_id, version, decisions),
        )
        .await
    }

    /// Another service instance on the same database (its own workers,
    /// pool and port); stops when dropped.
    pub fn another_instance(&self) -> Instance {
        self.another_instance_with(&self.config)
    }

    /// A staff member of `org` reads the patient's cancer consent (one
    /// logged read); the response status.
    pub async fn staff_reads_consent(&self, org: &str, patient: &str) -> u16 {
        self.get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&self.staff(org)),
        )
        .await
        .0
    }

    /// Another service instance on the same database, configured otherwise.
    pub fn another_instance_with(&self, config: &Config) -> Instance {
        let state = genomegate::server::build_state(config, self.clock.clone()).unwrap();
        let bound = genomegate::server::bind(config, state).unwrap();
        let handle = bound.server.handle();
        actix_web::rt::spawn(bound.server);
        Instance {
            base: format!("https://localhost:{}", bound.addr.port()),
            handle,
        }
    }

    /// The real `genomegate serve` binary as a child process on this app's
    /// database, keys and certificates, with `overrides` on top.
    pub fn spawn_binary(&self, overrides: &[(&str, &str)]) -> std::process::Child {
        self.binary(overrides)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the genomegate binary starts")
    }

    /// As [`spawn_binary`](Self::spawn_binary), its JSON log lines (at
    /// `warn` and above) on the child's stdout.
    pub fn spawn_binary_logged(&self, overrides: &[(&str, &str)]) -> std::process::Child {
        self.binary(overrides)
            .env("GENOMEGATE__LOGGING__FORMAT", "json")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the genomegate binary starts")
    }

    pub fn binary(&self, overrides: &[(&str, &str)]) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_genomegate"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GENOMEGATE__LOGGING__LEVEL", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(overrides.iter().copied());
        command
    }

    /// Waits until every logged entry is in the tree; returns the size.
    pub async fn wait_integrated(&self) -> i64 {
        for _ in 0..500 {
            if self.count("notification_outbox") == 0 {
                return self.count("access_log_leaves");
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("entries were not integrated within 5 s");
    }

    /// A direct database connection, for asserting what was (not) written.
    pub fn raw_db(&self) -> DbConnection {
        genomegate::db::connect_one(&self.db_url).unwrap()
    }

    /// The text column `t` of every row `sql` returns.
    pub fn texts(&self, sql: &str) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let mut conn = self.raw_db();
        let rows: Vec<Text> = diesel::sql_query(sql).load(&mut conn).unwrap();
        rows.into_iter().map(|r| r.t).collect()
    }

    /// Rows of `table`, which may carry its own `WHERE`.
    pub fn count(&self, table: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.raw_db();
        let rows: Vec<Count> = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .load(&mut conn)
            .unwrap();
        rows[0].n
    }

    /// How many access-log entries record `action`.
    pub fn log_entries_with_action(&self, action: &str) -> i64 {
        self.count(&format!("access_log_entries WHERE action = '{action}'"))
    }

    /// The `consent_lapse` entries (each with its explanation) in the
    /// access log of the patient holding portal token `token`, once every
    /// entry is integrated.
    pub async fn lapses_told(&self, token: &str) -> Vec<Value> {
        self.wait_integrated().await;
        let (s, page) = self.get("/v1/portal/access-log?lang=en", Some(token)).await;
        assert_eq!(s, 200, "{page}");
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["entry"]["action"] == "consent_lapse")
            .cloned()
            .collect()
    }
}

impl TestApp {
    /// Stops the server and starts a new one on the same database, keys and
    /// certificates (after a key rotation, say).
    pub async fn restart(&mut self) {
        self.handle.stop(true).await;
        let state = genomegate::server::build_state(&self.config, self.clock.clone()).unwrap();
        let bound = genomegate::server::bind(&self.config, state).unwrap();
        self.handle = bound.server.handle();
        actix_web::rt::spawn(bound.server);
        self.base = format!("https://localhost:{}", bound.addr.port());
    }

    /// A patient token bound to `patient_ref`.
    /// A patient token as enrollment issues it: signed with the service's
    /// own token key, the only issuer trusted for the patient role.
    pub fn patient_token(&self, patient_ref: &str) -> String {
        let keys = genomegate::pseudonym::keyring::Keyring::load(&self.config.keys.file).unwrap();
        let signer = genomegate::server::patient_token_signer(
            keys.current(genomegate::pseudonym::keyring::KeyDomain::Token),
            self.config.public_base_url.trim_end_matches('/'),
        )
        .unwrap();
        sign_patient(&signer, &signer.issuer.clone(), patient_ref)
    }

    /// Registers a webhook for `patient_ref` as that patient; returns the
    /// new webhook (with its secret, shown this once).
    pub async fn patient_webhook(&self, patient_ref: &str, url: &str) -> Value {
        let token = self.patient_token(patient_ref);
        let (s, hook) = self
            .post("/v1/portal/webhooks", &token, None, &json!({ "url": url }))
            .await;
        assert_eq!(s, 201, "{hook}");
        hook
    }

    /// A patient token from the ordinary trusted issuer: must not work.
    pub fn foreign_patient_token(&self, patient_ref: &str) -> String {
        sign_patient(&issuer_keys().eddsa, ISSUER, patient_ref)
    }

    /// Registers a consent (all permit) for `local_id` at `org`; returns the patient_ref.
    pub async fn consented_patient(&self, org: &str, local_id: &str, version: &str) -> String {
        let (s, b) = self
            .grant(
                org,
                local_id,
                version,
                all_permit(),
                &format!("grant-{org}-{local_id}"),
            )
            .await;
        assert!(s == 201 || s == 200, "{b}");
        b["patient_ref"].as_str().unwrap().to_owned()
    }

    /// Registers a sample as hospital staff of `org`; returns (status, body).
    pub async fn register_sample(&self, token: &str, body: &Value) -> (u16, Value) {
        self.send_json(
            reqwest::Method::POST,
            "/v1/samples",
            Some(token),
            None,
            body,
        )
        .await
    }
}

/// A WGS germline sample with a CRAM and a VCF, objects named after `tag`.
pub fn sample_body(local_id: &str, sample_ref: &str, tag: &str) -> Value {
    json!({
        "local_patient_id": local_id,
        "sample_ref": sample_ref,
        "kind": "germline",
        "assay": "wgs",
        "test_order_ref": "ORDER-1",
        "objects": [
            {"name": "germline.cram", "uri": format!("s3://genome-store/{tag}/germline.cram"), "size_bytes": 35_000_000_000i64,
             "sha256": "a".repeat(64), "format": "cram"},
            {"name": "germline.vcf", "uri": format!("s3://genome-store/{tag}/germline.vcf.gz"), "size_bytes": 120_000_000,
             "sha256": "b".repeat(64), "format": "vcf"},
        ],
    })
}

pub struct Instance {
    pub base: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn sign_patient(
    signer: &genomegate::auth::dev::Ed25519Signer,
    issuer: &str,
    patient_ref: &str,
) -> String {
    let roles = vec!["patient".to_owned()];
    let now = chrono::Utc::now();
    let claims = genomegate::auth::dev::TokenClaims {
        iss: issuer,
        aud: AUDIENCE,
        sub: "patient-app-user",
        org: "patient-portal",
        roles: &roles,
        iat: now.timestamp(),
        exp: now.timestamp() + 600,
        patient_ref: Some(patient_ref),
    };
    signer.sign_claims(&claims).unwrap()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        // The server has been told to stop; its database goes after it.
        drop(self.pg_database.take());
    }
}

pub async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub fn token_for(roles: &[&str], org: &str, sub: &str) -> String {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    issuer_keys()
        .eddsa
        .sign(
            AUDIENCE,
            sub,
            org,
            &roles,
            chrono::Utc::now(),
            chrono::Duration::minutes(10),
        )
        .unwrap()
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn grant_body(local_id: &str, version: &str, decisions: Value) -> Value {
    json!({
        "local_patient_id": local_id,
        "document_version": version,
        "decisions": decisions,
        "signer": {"kind": "patient"},
        "explained_by": "nurse-1",
        "signed_at": now_rfc3339(),
        "form_hash": FORM_HASH,
    })
}

pub fn item(key: &str, change: &str, text: &str) -> Value {
    json!({"key": key, "change": change, "label_ja": format!("{key}（日本語）"), "label_en": key, "text_ja": format!("{text}（日本語）"), "text_en": text})
}

pub fn draft(items: Vec<Value>) -> Value {
    json!({"title_ja": "統一同意説明文書", "title_en": "Unified consent document", "body_ja": "本文", "body_en": "Body", "items": items})
}

/// The four-item first version most tests start from.
pub fn first_draft() -> Value {
    draft(vec![
        item("ccat_registration", "added", "Register with C-CAT"),
        item("secondary_use_academic", "added", "Academic use"),
        item("secondary_use_industry", "added", "Industry use"),
        item("recontact", "added", "Recontact"),
    ])
}

pub fn all_permit() -> Value {
    json!({"ccat_registration": "permit", "secondary_use_academic": "permit", "secondary_use_industry": "permit", "recontact": "permit"})
}

/// Asserts an RFC 9457 problem with `code`.
#[track_caller]
pub fn assert_problem(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], expected_status, "{body}");
    assert_eq!(
        body["type"],
        format!("urn:genomegate:problem:{code}"),
        "{body}"
    );
    assert!(
        body["request_id"].is_string(),
        "problem names the request: {body}"
    );
}

/// Reverts migrations, newest first, down to and including the one whose
/// name ends with `suffix`, so a test can check what a later migration does
/// to existing rows.
pub fn revert_through(conn: &mut DbConnection, suffix: &str) {
    use diesel_migrations::MigrationHarness;
    use genomegate::db::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
    loop {
        let reverted = match conn {
            DbConnection::Postgresql(c) => c.revert_last_migration(POSTGRES_MIGRATIONS),
            DbConnection::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS),
        }
        .unwrap()
        .to_string();
        if reverted.ends_with(suffix) {
            break;
        }
    }
}

/// Runs SQL as the database owner with the append-only triggers out of the
/// way: `session_replication_role = replica` on PostgreSQL (superuser),
/// dropping the triggers on SQLite.
pub fn tamper(app: &TestApp, statements: &[&str]) {
    let mut conn = app.raw_db();
    match &mut conn {
        genomegate::db::DbConnection::Postgresql(c) => {
            diesel::sql_query("SET session_replication_role = replica")
                .execute(c)
                .unwrap();
            for s in statements {
                diesel::sql_query(*s).execute(c).unwrap();
            }
        }
        genomegate::db::DbConnection::Sqlite(c) => {
            for t in [
                "access_log_entries",
                "access_log_leaves",
                "access_log_nodes",
                "access_log_checkpoints",
            ] {
                for op in ["update", "delete"] {
                    diesel::sql_query(format!("DROP TRIGGER IF EXISTS {t}_no_{op}"))
                        .execute(c)
                        .unwrap();
                }
            }
            for s in statements {
                diesel::sql_query(*s).execute(c).unwrap();
            }
        }
    }
}
