//! Operations: health, readiness, metrics, the OpenAPI document, the command
//! line, production-mode refusals and what the logs may never contain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

on_both_backends!(
    health_readiness_and_metrics,
    openapi_matches_the_routes,
    a_database_that_refuses_writes_answers_503_and_plain_reads_go_on,
    every_refusal_at_the_edge_is_a_short_problem,
    refused_callers_leave_the_error_log_alone
);

/// Callers the service refuses are no fault of the service: no token, a
/// bad token, a query it would refuse, a header it cannot even parse. The
/// error log stays empty, so no one can flood it, on both backends.
async fn refused_callers_leave_the_error_log_alone(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = app.spawn_binary_logged(&[("GENOMEGATE__SERVER__BIND", bind.as_str())]);
    let base = format!("https://localhost:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = app.plain_client.get(format!("{base}/readyz")).send().await {
            ready = r.status() == 200;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the binary did not become ready");
    for path in [
        "/v1/datasets",
        "/v1/applications?state=nonsense",
        "/v1/audit/log?action=nonsense",
        "/v1/reconsent-tasks?family=nonsense",
        "/v1/portal/consents",
    ] {
        let (s, b) = read(
            app.plain_client
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_problem(s, &b, 401, "missing_token");
        let bad = app
            .plain_client
            .get(format!("{base}{path}"))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        let (s, b) = read(bad).await;
        assert_problem(s, &b, 401, "invalid_token");
    }
    // A header byte HTTP forbids: refused by the server's parser.
    let mut tls = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    tls.set_ca_file(app.certs_dir().join("ca.pem")).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut stream = tls.build().connect("localhost", tcp).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Bad: a\x01b\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    child.kill().unwrap();
    let mut logs = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child.wait().unwrap();
    assert!(
        !logs.contains("\"level\":\"ERROR\""),
        "refused callers reached the error log:\n{logs}"
    );
}

/// Edges of the contract a fuzzer found: a method a path does not take,
/// control characters in a path, a query or a body, and an overlong
/// request line. Each is a short problem document with a stable code,
/// alike on both backends, and nothing is written.
async fn every_refusal_at_the_edge_is_a_short_problem(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let governance = token_for(&["governance"], "governance", "officer-1");
    let auditor = token_for(&["auditor"], "oversight", "auditor-1");
    let send = |method: reqwest::Method, path: String, token: Option<&str>, body: Option<Value>| {
        let mut req = app.client.request(method, app.url(&path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            let allow = res
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned());
            let problem = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/problem+json");
            let status = res.status().as_u16();
            let body: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
            assert!(problem, "{status} {body}");
            (status, body, allow)
        }
    };
    use reqwest::Method;

    // A documented path under a method it does not take: 405, with Allow.
    let (s, b, allow) = send(Method::DELETE, "/v1/documents".into(), None, None).await;
    assert_problem(s, &b, 405, "method_not_allowed");
    assert_eq!(allow.as_deref(), Some("GET"));
    let (s, b, allow) = send(Method::PATCH, "/v1/applications/app-1".into(), None, None).await;
    assert_problem(s, &b, 405, "method_not_allowed");
    assert_eq!(allow.as_deref(), Some("GET"));
    let (s, b, _) = send(Method::GET, "/v1/nothing-here".into(), None, None).await;
    assert_problem(s, &b, 404, "route_not_found");

    // A NUL (or any control character) in an identifier names nothing.
    for path in [
        "/v1/applications/%00",
        "/v1/releases/%00/manifest",
        "/v1/recontact-requests/%1b",
    ] {
        let (s, b, _) = send(Method::GET, path.into(), Some(&governance), None).await;
        assert_problem(s, &b, 404, "not_found");
    }
    // In a query parameter it is named.
    for (path, field) in [
        ("/v1/audit/log?org=%00", "org"),
        ("/v1/audit/log?actor=a%00b", "actor"),
    ] {
        let (s, b, _) = send(Method::GET, path.into(), Some(&auditor), None).await;
        assert_problem(s, &b, 422, "validation_failed");
        assert_eq!(b["errors"][0]["field"], field, "{b}");
    }
    // In a body, on SQLite as on PostgreSQL, and nothing is stored.
    let (s, b, _) = send(
        Method::POST,
        "/v1/agreement-texts".into(),
        Some(&governance),
        Some(json!({"body": "Data-use agreement\u{0}v1"})),
    )
    .await;
    assert_problem(s, &b, 422, "validation_failed");
    assert_eq!(b["errors"][0]["field"], "body", "{b}");
    let (s, b, _) = send(
        Method::POST,
        "/v1/agreement-texts".into(),
        Some(&governance),
        Some(json!({"body": "Agreement \u{7} with a bell"})),
    )
    .await;
    assert_problem(s, &b, 422, "validation_failed");
    assert_eq!(app.count("agreement_texts"), 0);

    // An overlong request line: a short problem, its path not echoed.
    let long = format!("/v1/documents?pad={}", "x".repeat(20_000));
    let (s, b, _) = send(Method::GET, long, None, None).await;
    assert_problem(s, &b, 414, "uri_too_long");
    assert!(b.to_string().len() < 1_000, "{b}");
}

/// A database that answers but cannot write (a standby after failover, a
/// full disk, a read-only file) is a 503 with `Retry-After`, never a 500:
/// the caller should retry, and nothing was written. Plain reads go on, and
/// `/readyz` says writes are refused. On PostgreSQL the database is made
/// read-only for new sessions and the service's sessions are ended, so its
/// pool reconnects into it; SQLite's refusals are checked in `app::error`.
async fn a_database_that_refuses_writes_answers_503_and_plain_reads_go_on(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let (s, _) = app
        .grant("hospital-a", "MRN-1", &version, all_permit(), "k1")
        .await;
    assert_eq!(s, 201);
    if backend != Backend::Postgres {
        return;
    }
    let read_only = |on: bool| {
        let mut conn = app.raw_db();
        let name: Vec<String> = {
            #[derive(diesel::QueryableByName)]
            struct Name {
                #[diesel(sql_type = diesel::sql_types::Text)]
                t: String,
            }
            let rows: Vec<Name> = diesel::sql_query("SELECT current_database() AS t")
                .load(&mut conn)
                .unwrap();
            rows.into_iter().map(|r| r.t).collect()
        };
        use diesel::RunQueryDsl;
        // This session may itself have opened read-only.
        diesel::sql_query("SET default_transaction_read_only = off")
            .execute(&mut conn)
            .unwrap();
        diesel::sql_query(format!(
            "ALTER DATABASE {} SET default_transaction_read_only = {}",
            name[0],
            if on { "on" } else { "off" }
        ))
        .execute(&mut conn)
        .unwrap();
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut conn)
        .unwrap();
    };
    read_only(true);
    let events = app.count("consent_events");
    // The first request may meet a connection ended under it; either way
    // the answer is a 503 to retry.
    for n in 0..3 {
        let (s, b) = app
            .grant(
                "hospital-a",
                &format!("MRN-ro-{n}"),
                &version,
                all_permit(),
                &format!("ro-{n}"),
            )
            .await;
        assert_problem(s, &b, 503, "service_unavailable");
    }
    let refused = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let (s, _) = app.get("/v1/documents", None).await;
    assert_eq!(s, 200, "plain reads go on");
    assert_eq!(app.count("consent_events"), events, "nothing was written");

    read_only(false);
    // Each pooled session ended under the service is found gone and
    // replaced, each at the cost of one 503; then writes go on.
    let mut statuses = Vec::new();
    for n in 0..40 {
        let (s, _) = app
            .grant(
                "hospital-a",
                &format!("MRN-rw-{n}"),
                &version,
                all_permit(),
                &format!("rw-{n}"),
            )
            .await;
        statuses.push(s);
        if statuses.ends_with(&[201, 201, 201]) {
            break;
        }
    }
    assert!(
        statuses.ends_with(&[201, 201, 201]) && statuses.iter().all(|s| [201, 503].contains(s)),
        "writes go on once the database takes them: {statuses:?}"
    );
    let (s, b) = app.get("/readyz", None).await;
    assert_eq!(s, 200, "{b}");
}

async fn health_readiness_and_metrics(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (s, b) = app.get("/healthz", None).await;
    assert_eq!((s, b), (200, json!({"status": "ok"})));
    let (s, b) = app.get("/readyz", None).await;
    let expected = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(
        (s, b),
        (
            200,
            json!({"status": "ready", "database": expected, "writes": "accepted"})
        )
    );

    let version = app.publish("cancer", &first_draft()).await;
    let (_, event) = app
        .grant("hospital-a", "MRN-METRICS", &version, all_permit(), "m")
        .await;
    let patient = event["patient_ref"].as_str().unwrap();
    app.get(
        &format!("/v1/patients/{patient}/consents/cancer"),
        Some(&app.staff("hospital-a")),
    )
    .await;
    let resp = app
        .client
        .get(app.url("/nowhere"))
        .header("x-request-id", "hospital-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-request-id"],
        "hospital-trace-42",
        "a caller's request ID is kept"
    );
    let (s, b) = read(resp).await;
    assert_eq!(
        (s, b["code"].as_str(), b["request_id"].as_str()),
        (404, Some("route_not_found"), Some("hospital-trace-42"))
    );

    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(text.contains(r#"genomegate_http_requests_total{method="GET",route="/v1/patients/{patient_ref}/consents/{family}",status="200"} 1"#), "{text}");
    assert!(
        text.contains(r#"genomegate_consent_events_total{kind="grant"} 1"#),
        "{text}"
    );
    assert!(text.contains("genomegate_http_request_duration_seconds_bucket"));
    assert!(text.contains("genomegate_db_pool_connections"));
    assert!(
        !text.contains(patient),
        "identifiers never become metric labels"
    );
}

/// Every `#[get("…")]`-style route attribute in `src/api` and its
/// submodules, as (METHOD, path).
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for line in text.lines() {
                let line = line.trim();
                for method in ["get", "post", "put", "patch", "delete"] {
                    if let Some(rest) = line.strip_prefix(&format!("#[{method}(\"")) {
                        let path = rest.split('"').next().unwrap();
                        routes.insert((method.to_uppercase(), path.to_owned()));
                    }
                }
            }
        }
    }
    routes
}

async fn openapi_matches_the_routes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (s, spec) = app.get("/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1: {}",
        spec["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    // Direction 1: every route handler is documented.
    assert_eq!(
        documented,
        routes_in_source(),
        "the spec and the route attributes differ"
    );
    // Direction 2: every documented operation is really served.
    for (method, path) in &documented {
        let concrete = path
            .replace("{family}", "cancer")
            .replace("{number}", "1")
            .replace("{patient_ref}", &"0".repeat(64));
        let req = app
            .client
            .request(method.parse().unwrap(), app.url(&concrete))
            .header("content-type", "application/json")
            .body("{}");
        let (s, b) = read(req.send().await.unwrap()).await;
        assert!(
            s != 405 && b["code"] != "route_not_found",
            "{method} {path} is documented but not served: {s} {b}"
        );
    }
    // Newer request fields and parameters are described, not only served.
    let schemas = &spec["components"]["schemas"];
    assert!(
        schemas["ApplicationRequest"]["properties"]["partner_members"].is_object(),
        "{}",
        schemas["ApplicationRequest"]
    );
    assert!(schemas["Member"]["properties"]["org"].is_object());
    assert!(schemas["IssuedCode"]["properties"]["qr_payload"].is_object());
    assert!(schemas["ReleaseRecord"]["properties"]["excluded_by_reason"].is_object());
    assert!(
        schemas["ReleaseView"].to_string().contains("ReleaseRecord"),
        "a new release is its record and the handle: {}",
        schemas["ReleaseView"]
    );
    for path in [
        "/v1/consents",
        "/v1/patients/{patient_ref}/enrollment-codes",
    ] {
        let params = spec["paths"][path]["post"]["parameters"].to_string();
        assert!(params.contains("\"qr\""), "{path}: {params}");
    }
    // Every error response is documented as a problem document.
    let problem = &spec["components"]["schemas"]["Problem"];
    assert!(problem["properties"]["code"].is_object(), "{problem}");
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

// ---- The real binary -------------------------------------------------------

fn binary() -> Command {
    with_path_only(env!("CARGO_BIN_EXE_genomegate"))
}

/// `program` with an empty environment but for `PATH`.
fn with_path_only(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// A config file in `dir` for the binary; `extra` is appended verbatim.
fn write_config(dir: &Path, mode: &str, extra: &str) -> std::path::PathBuf {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let text = format!(
        r#"mode = "{mode}"
[server]
bind = "127.0.0.1:0"
workers = 1
[database]
url = "sqlite://{db}"
[tls]
cert = "{certs}/server.pem"
key = "{certs}/server.key"
[keys]
file = "{dir}/keys/genomegate-keys.toml"
dev_dir = "{certs}"
[policies]
dir = "{policies}"
{extra}
"#,
        db = dir.join("gg.db").display(),
        certs = dir.join("certs").display(),
        dir = dir.display(),
        policies = policies.display(),
    );
    let path = dir.join(format!("{mode}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn command_line_certs_migrate_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "development", "");
    let out = binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "certs",
            "--hospital",
            "hospital-x",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "client-hospital-x.pem",
        "client-hospital-x.key",
    ] {
        assert!(dir.path().join("certs").join(file).exists(), "{file}");
    }
    let again = binary()
        .args(["--config", config.to_str().unwrap(), "certs"])
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "certs never overwrites an existing CA"
    );

    let out = binary()
        .args(["--config", config.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    let shipped =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"))
            .unwrap()
            .count();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("applied {shipped} migration")),
        "{out:?}"
    );
    let out = binary()
        .args(["--config", config.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("applied 0 migration"),
        "{out:?}"
    );

    let out = binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "token",
            "--role",
            "hospital_staff",
            "--org",
            "hospital-x",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    let header = jsonwebtoken::decode_header(token.trim()).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert!(header.kid.unwrap().starts_with("dev-"));
    let jwks = std::fs::read_to_string(dir.path().join("certs/dev-jwks.json")).unwrap();
    let mut verifier = genomegate::auth::jwt::JwtVerifier::new("genomegate".into(), 0);
    verifier
        .trust_jwks(genomegate::config::DEV_ISSUER, &jwks)
        .unwrap();
    let principal = verifier.verify(token.trim()).unwrap();
    assert_eq!(principal.org, "hospital-x");
}

#[test]
fn production_mode_refuses_unsafe_setups() {
    let dir = tempfile::tempdir().unwrap();
    genomegate::certs::generate_dev_set(&dir.path().join("certs"), "hospital-a").unwrap();
    let real_jwks = dir.path().join("issuer.json");
    std::fs::write(&real_jwks, &issuer_keys().jwks).unwrap();
    let dev_signer = genomegate::auth::dev::load_or_create(&dir.path().join("certs")).unwrap();
    let dev_jwks = dir.path().join("dev.json");
    std::fs::write(&dev_jwks, dev_signer.jwks_json()).unwrap();
    let issuer = |name: &str, file: &Path| {
        format!(
            "[[auth.issuers]]\nissuer = \"{name}\"\njwks_file = \"{}\"\n",
            file.display()
        )
    };
    let now = chrono::Utc::now();
    let real_key = dir.path().join("real-keys.toml");
    genomegate::pseudonym::keyring::Keyring::create_file(&real_key, false, now).unwrap();
    let dev_key = dir.path().join("dev-keys.toml");
    genomegate::pseudonym::keyring::Keyring::create_file(&dev_key, true, now).unwrap();
    let key_override = |path: &Path| ("GENOMEGATE__KEYS__FILE", path.display().to_string());

    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no TLS",
            issuer(ISSUER, &real_jwks),
            vec![("GENOMEGATE__TLS__ENABLED", "false".into())],
            "without TLS",
        ),
        ("no issuer", String::new(), vec![], "auth.issuers"),
        (
            "development issuer",
            issuer("genomegate-dev", &real_jwks),
            vec![],
            "development token issuer",
        ),
        (
            "development signing key",
            issuer(ISSUER, &dev_jwks),
            vec![key_override(&real_key)],
            "development signing keys",
        ),
        (
            "development key file",
            issuer(ISSUER, &real_jwks),
            vec![key_override(&dev_key)],
            "development key file",
        ),
        (
            "missing key file",
            issuer(ISSUER, &real_jwks),
            vec![],
            "does not exist",
        ),
    ];
    for (name, extra, env, message) in cases {
        let config = write_config(dir.path(), "production", &extra);
        let out = binary()
            .args(["--config", config.to_str().unwrap(), "serve"])
            .envs(env)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: production must refuse to start"
        );
        assert!(
            stderr.contains(message),
            "{name}: expected `{message}` in {stderr}"
        );
    }
    let config = write_config(dir.path(), "production", &issuer(ISSUER, &real_jwks));
    let out = binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "token",
            "--role",
            "auditor",
            "--org",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused in production"));
}

/// Runs the real service, sends it identifying data, and reads every log
/// line it wrote: no local patient ID, pseudonym or consent text may appear.
/// The real `serve` binary as a child process, its log lines collected.
struct Served {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    /// The address it listens on, from its `genomegate listening` line.
    addr: String,
}

impl Served {
    /// Starts `serve` (configured for JSON logs) and waits until it listens.
    fn start(mut serve: Command) -> Self {
        let mut child = serve
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = lines
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("the service logs its address");
            seen.push(line.clone());
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "genomegate listening" {
                break v["addr"].as_str().unwrap().to_owned();
            }
        };
        Self {
            child,
            lines,
            seen,
            addr,
        }
    }

    fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap()
    }

    /// Stops the service; returns everything it logged, stdout and stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.lines.try_iter());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        format!("{}\n{stderr}", self.seen.join("\n"))
    }
}

#[actix_web::test]
async fn logs_never_contain_identifiers_or_consent_contents() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "development",
        "[logging]\nlevel = \"debug\"\nformat = \"json\"",
    );
    let mut serve = binary();
    serve.args(["--config", config.to_str().unwrap(), "serve"]);
    let served = Served::start(serve);
    let token = |role: &str, org: &str| {
        let out = binary()
            .args([
                "--config",
                config.to_str().unwrap(),
                "token",
                "--role",
                role,
                "--org",
                org,
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("certs/ca.pem")).unwrap())
            .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", served.port());
    let secret_text = "SECRET-CONSENT-WORDING-7731";
    let admin = token("consent_admin", "governance");
    let mut doc = first_draft();
    doc["items"][0]["text_en"] = json!(secret_text);
    let r = client
        .post(format!("{base}/v1/documents/cancer/versions"))
        .bearer_auth(&admin)
        .json(&doc)
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
    let staff = token("hospital_staff", "hospital-a");
    let local_id = "MRN-LEAK-CHECK-4242";
    let r = client
        .post(format!("{base}/v1/consents"))
        .bearer_auth(&staff)
        .header("Idempotency-Key", "leak-1")
        .json(&grant_body(local_id, "cancer-v1", all_permit()))
        .send()
        .await
        .unwrap();
    let (s, event) = read(r).await;
    assert_eq!(s, 201, "{event}");
    let patient = event["patient_ref"].as_str().unwrap().to_owned();
    for path in ["", "/fhir", "/events"] {
        let r = client
            .get(format!(
                "{base}/v1/patients/{patient}/consents/cancer{path}"
            ))
            .bearer_auth(&staff)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // A sample's genome ID and object locations are genome references.
    let r = client
        .post(format!("{base}/v1/samples"))
        .bearer_auth(&staff)
        .json(&sample_body(local_id, "SPEC-LEAK-5150", "leak-check"))
        .send()
        .await
        .unwrap();
    let (s, sample) = read(r).await;
    assert_eq!(s, 201, "{sample}");
    let genome_id = sample["genome_id"].as_str().unwrap().to_owned();
    // Errors, too, must not echo what they were sent.
    let mut bad = grant_body(local_id, "cancer-v1", all_permit());
    bad["signed_at"] = json!("not a time");
    client
        .post(format!("{base}/v1/consents"))
        .bearer_auth(&staff)
        .header("Idempotency-Key", "leak-2")
        .json(&bad)
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/v1/consents"))
        .bearer_auth(&staff)
        .header("Idempotency-Key", "leak-3")
        .header("content-type", "application/json")
        .body(format!("{{\"local_patient_id\": \"{local_id}\""))
        .send()
        .await
        .unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let all = served.stop();
    assert!(
        all.contains("consent event recorded"),
        "the logs were captured: {all}"
    );
    assert!(
        all.contains("genome sample registered"),
        "the sample's log line was captured: {all}"
    );
    let forbidden = [
        local_id,
        patient.as_str(),
        secret_text,
        "nurse-1",
        genome_id.as_str(),
        "SPEC-LEAK-5150",
        "leak-check",
    ];
    for forbidden in forbidden {
        assert!(
            !all.contains(forbidden),
            "`{forbidden}` leaked into the logs:\n{all}"
        );
    }
}

// ---- The walk-through -------------------------------------------------------

/// The first `sh` block of `docs/WALKTHROUGH.md`.
fn walkthrough() -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/WALKTHROUGH.md"))
            .unwrap();
    let block = text
        .split_once("```sh\n")
        .expect("the walk-through is a sh block")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

/// `cargo run -q -- <args>` in the walk-through runs the binary under test:
/// the documented commands, not a rebuild.
const CARGO_RUN_SHIM: &str = r#"cargo() {
  [ "$1" = run ] || { echo "the walk-through may only 'cargo run'" >&2; return 1; }
  shift; [ "$1" = -q ] && shift; [ "$1" = -- ] && shift
  "$GENOMEGATE_BIN" "$@"
}
"#;

/// The walk-through as a newcomer runs it: `serve` with no configuration in
/// a fresh directory (embedded SQLite, development material created on first
/// start), the documented commands pasted into a shell. Only the port
/// differs. Every step must answer without a problem document, and the
/// journey must end where the walk-through says: six of seven patients
/// released, resolved,
/// the patient shown both accesses, the withdrawal's recall delivered.
#[test]
fn the_walkthrough_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for shared in ["docs", "policies"] {
        std::os::unix::fs::symlink(root.join(shared), dir.path().join(shared)).unwrap();
    }
    let mut serve = binary();
    serve
        .current_dir(dir.path())
        .arg("serve")
        .env("GENOMEGATE__SERVER__BIND", "127.0.0.1:0")
        .env("GENOMEGATE__LOGGING__FORMAT", "json");
    let served = Served::start(serve);
    let walkthrough = walkthrough();
    let default_base = "GG=https://localhost:8443\n";
    assert!(
        walkthrough.starts_with(default_base),
        "the walk-through starts by naming the service's address: {walkthrough}"
    );
    let script = format!(
        "{CARGO_RUN_SHIM}GG=https://localhost:{}\n{}",
        served.port(),
        &walkthrough[default_base.len()..]
    );
    let out = with_path_only("bash")
        .current_dir(dir.path())
        .env("GENOMEGATE_BIN", env!("CARGO_BIN_EXE_genomegate"))
        .args(["-c", &script])
        .output()
        .unwrap();
    // Callers without a token, refused as they should be: a refusal is not
    // a fault of the service, and must not flood its error log.
    let anonymous = format!(
        "for path in /v1/datasets /v1/applications /v1/audit/log /v1/portal/consents; do \
           curl -sS --cacert certs/ca.pem https://localhost:{}$path; echo; done",
        served.port()
    );
    let refused = with_path_only("bash")
        .current_dir(dir.path())
        .args(["-c", &anonymous])
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert_eq!(
        refused.matches("\"code\":\"missing_token\"").count(),
        4,
        "{refused}"
    );
    let logs = served.stop();
    assert!(
        !logs.lines().any(|l| l.contains("\"level\":\"ERROR\"")),
        "the walk-through and refused callers logged an error:\n{logs}"
    );
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(
        !said.contains("urn:genomegate:problem:"),
        "a step was refused:\n{said}"
    );
    assert!(!said.contains("curl: ("), "a request failed:\n{said}");
    for expected in [
        // Step 7: only hospital A gets its own local ID back.
        "\"local_patient_id\":\"MRN-000123\"",
        // Step 13: six included, the patient awaiting re-consent excluded.
        "\"included\":6",
        "\"excluded\":1",
        "needs_reconsent",
        // Step 14: the store reads the objects, the patient sees both accesses.
        "s3://genome-store/c1/germline.cram",
        "handle_resolve",
        "dataset_release",
        // Step 12: the member's Passport visa.
        "\"ga4gh_passport_v1\":[\"ey",
        // Step 15: the withdrawal recalls the released sample.
        "\"reason\":\"consent_withdrawn\"",
    ] {
        assert!(said.contains(expected), "`{expected}` missing:\n{said}");
    }
    assert!(
        !logs.contains("MRN-"),
        "a hospital patient ID reached the logs:\n{logs}"
    );
    // What an action logs carries the request it served.
    for said_by_an_action in ["consent event recorded", "dataset released"] {
        let line = logs
            .lines()
            .find(|l| l.contains(said_by_an_action))
            .unwrap_or_else(|| panic!("`{said_by_an_action}` not logged:\n{logs}"));
        assert!(line.contains("\"request_id\""), "{line}");
    }
}

#[test]
fn keys_command_creates_rotates_and_lists_without_revealing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "development", "");
    let run = |args: &[&str]| {
        let out = binary()
            .args(["--config", config.to_str().unwrap(), "keys"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["init"]);
    let again = binary()
        .args(["--config", config.to_str().unwrap(), "keys", "init"])
        .output()
        .unwrap();
    assert!(!again.status.success(), "init never overwrites");
    assert!(run(&["rotate", "--domain", "vault"]).contains("vault key is now version 2"));
    let listing = run(&["list"]);
    assert_eq!(
        listing.lines().filter(|l| l.starts_with("vault")).count(),
        2,
        "{listing}"
    );
    let file = std::fs::read_to_string(dir.path().join("keys/genomegate-keys.toml")).unwrap();
    let secret_line = file.lines().find(|l| l.starts_with("secret")).unwrap();
    let secret = secret_line.split('"').nth(1).unwrap();
    assert!(!listing.contains(secret), "secrets never printed");
    let bad = binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "keys",
            "rotate",
            "--domain",
            "everything",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// The pool hands a recently returned connection out again without a test
/// query, so it must never return a connection it saw die: a connection
/// whose server process is gone fails the one use it is in, is dropped on
/// its way back, and the next checkout gets a working one. A connection
/// that died while idle for longer is tested and replaced before use.
#[test]
fn the_pool_drops_a_connection_it_saw_die() {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let Some(url) = common::service_url(PG_ENV, "PostgreSQL") else {
        return;
    };
    let pool = genomegate::db::connect(&url, 1).unwrap();
    let mut admin = genomegate::db::connect_one(&url).unwrap();
    let pid = |conn: &mut genomegate::db::DbConnection| {
        diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(conn)
            .map(|p| p.pid)
    };
    let terminate = |admin: &mut genomegate::db::DbConnection, pid: i32| {
        diesel::sql_query(format!("SELECT pg_terminate_backend({pid})"))
            .execute(admin)
            .unwrap();
        // Termination is asynchronous; give the backend time to exit.
        std::thread::sleep(std::time::Duration::from_millis(100));
    };

    let first = pid(&mut pool.get().unwrap()).unwrap();
    terminate(&mut admin, first);
    // Returned moments ago, so not tested on checkout: this use fails...
    let failed = pid(&mut pool.get().unwrap());
    assert!(
        failed.is_err(),
        "the terminated connection was reused untested"
    );
    // ...and the pool (of one) dropped it instead of taking it back.
    let second = pid(&mut pool.get().unwrap()).unwrap();
    assert_ne!(first, second);

    terminate(&mut admin, second);
    std::thread::sleep(std::time::Duration::from_millis(600));
    // Idle for longer than the window: tested, found dead, replaced.
    let third = pid(&mut pool.get().unwrap()).unwrap();
    assert_ne!(second, third);
}

/// Instances started together (a rolling deploy) migrate one database: one
/// applies every migration, the others wait for it and find nothing
/// pending, and none fails to start. The index built `CONCURRENTLY`
/// (outside a transaction) ends up valid.
#[test]
fn instances_starting_together_migrate_once() {
    let Some(database) = fresh_pg_database() else {
        return;
    };
    let url = database.url.as_str();

    const INSTANCES: usize = 4;
    let start = std::sync::Barrier::new(INSTANCES);
    let applied: Vec<Vec<String>> = std::thread::scope(|scope| {
        let instances: Vec<_> = (0..INSTANCES)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = genomegate::db::connect_one(url).unwrap();
                    start.wait();
                    genomegate::db::run_migrations(&mut conn)
                })
            })
            .collect();
        instances
            .into_iter()
            .map(|i| i.join().unwrap().expect("every instance starts"))
            .collect()
    });
    let mut all: Vec<String> = applied.concat();
    let applied_once = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        applied_once,
        all.len(),
        "a migration ran twice: {applied:?}"
    );
    assert!(
        applied.iter().filter(|a| !a.is_empty()).count() == 1,
        "one instance migrates: {applied:?}"
    );
    assert!(all.iter().any(|v| v.ends_with("000013")), "{all:?}");

    let mut conn = genomegate::db::connect_one(url).unwrap();
    assert_eq!(
        index_validity(&mut conn, "dataset_samples_by_patient"),
        [true]
    );
}

/// Whether each index called `name` is valid (PostgreSQL marks a failed
/// concurrent build invalid and leaves it in place).
fn index_validity(conn: &mut genomegate::db::DbConnection, name: &str) -> Vec<bool> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Valid {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        valid: bool,
    }
    diesel::sql_query(
        "SELECT i.indisvalid AS valid FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .load::<Valid>(conn)
    .unwrap()
    .into_iter()
    .map(|v| v.valid)
    .collect()
}

/// A concurrent index build that fails leaves an invalid index and an
/// unrecorded migration. The next start drops what it left and builds it
/// again, instead of failing on the name forever.
#[test]
fn a_failed_concurrent_index_build_is_retried_at_the_next_start() {
    use diesel::RunQueryDsl;
    let Some(database) = fresh_pg_database() else {
        return;
    };
    let mut conn = genomegate::db::connect_one(&database.url).unwrap();
    genomegate::db::run_migrations(&mut conn).unwrap();
    revert_through(&mut conn, "000014");
    let genomegate::db::DbConnection::Postgresql(c) = &mut conn else {
        unreachable!("a PostgreSQL URL");
    };
    diesel::sql_query(
        "INSERT INTO patients (pseudonym, hospital_org, created_at) \
         VALUES ('p1', 'hospital-a', now()), ('p2', 'hospital-a', now())",
    )
    .execute(c)
    .unwrap();
    // A build that fails halfway, under the migration's index name.
    let failed = diesel::sql_query(
        "CREATE UNIQUE INDEX CONCURRENTLY patients_with_majority ON patients (hospital_org)",
    )
    .execute(c);
    assert!(failed.is_err());
    assert_eq!(
        index_validity(&mut conn, "patients_with_majority"),
        [false],
        "the failed build left an invalid index"
    );

    let applied = genomegate::db::run_migrations(&mut conn).unwrap();
    let from_000014 =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"))
            .unwrap()
            .filter(|m| {
                m.as_ref().unwrap().file_name().to_string_lossy().as_ref() >= "2026-12-03-000014"
            })
            .count();
    assert_eq!(
        applied.len(),
        from_000014,
        "000014 and every later one again: {applied:?}"
    );
    assert_eq!(index_validity(&mut conn, "patients_with_majority"), [true]);
}
