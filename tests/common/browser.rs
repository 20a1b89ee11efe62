//! A real headless Chromium, driven through ChromeDriver's W3C WebDriver
//! protocol, with Chromium's virtual authenticator for passkeys and
//! axe-core for accessibility.
//!
//! Chromium refuses WebAuthn on a page whose certificate it does not trust,
//! so the test's CA goes into an NSS database under a private `HOME` (what
//! Chromium reads on Linux): real TLS, trusted as a hospital's device would
//! trust the portal's certificate.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether Chromium, ChromeDriver, certutil and axe-core are here. Under CI
/// (`CI=true`) their absence fails the test instead of skipping it.
pub fn available() -> bool {
    let axe = axe_path();
    let present = Path::new(CHROMIUM).exists()
        && Path::new(CHROMEDRIVER).exists()
        && Command::new("certutil")
            .arg("-H")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
        && axe.exists();
    if !present {
        super::not_configured(
            "chromium",
            "the browser tests (apt install chromium chromium-driver libnss3-tools; npm ci --prefix tests/browser)",
        );
    }
    present
}

fn axe_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/axe-core/axe.min.js")
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _home: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium that trusts `ca_pem`.
    pub async fn start(ca_pem: &Path) -> Browser {
        let home = tempfile::tempdir().unwrap();
        let nssdb = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).unwrap();
        let db = format!("sql:{}", nssdb.display());
        let ok = Command::new("certutil")
            .args(["-d", &db, "-N", "--empty-password"])
            .status()
            .unwrap();
        assert!(ok.success(), "certutil -N");
        let ok = Command::new("certutil")
            .args([
                "-d",
                &db,
                "-A",
                "-t",
                "C,,",
                "-n",
                "genomegate-test-ca",
                "-i",
            ])
            .arg(ca_pem)
            .status()
            .unwrap();
        assert!(ok.success(), "certutil -A");
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = home.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=ja", format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            http,
            _home: home,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let answer: Value = req.send().await.unwrap().json().await.unwrap();
        if answer["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` in the page and returns its value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs an async `script` whose last argument is the callback.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    pub async fn element(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    /// Presses keys as a person at a keyboard would (`\u{E004}` is Tab,
    /// `\u{E007}` Enter).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                let c = c.to_string();
                [
                    json!({"type": "keyDown", "value": c}),
                    json!({"type": "keyUp", "value": c}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
        self.command(reqwest::Method::DELETE, "/actions", None)
            .await;
    }

    /// Waits until `script` returns something truthy, and returns it; a
    /// script that throws (the page is still loading) is waited on too.
    pub async fn wait_for(&self, script: &str, within: Duration) -> Value {
        let started = Instant::now();
        let guarded = format!("try {{ {script} }} catch (e) {{ return null; }}");
        loop {
            let value = self.run(&guarded, json!([])).await;
            let truthy = !(value.is_null()
                || value == json!(false)
                || value == json!("")
                || value == json!(0));
            if truthy {
                return value;
            }
            if started.elapsed() > within {
                let text = self.run("return document.body.innerText", json!([])).await;
                panic!(
                    "waited {within:?} for `{script}` on {}: {text}",
                    self.url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Chromium's virtual authenticator: a platform passkey store that
    /// verifies the user at once.
    pub async fn add_authenticator(&self) -> String {
        let added = self
            .post(
                "/webauthn/authenticator",
                json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserConsenting": true,
                    "isUserVerified": true,
                }),
            )
            .await;
        added.as_str().unwrap().to_owned()
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn set_width(&self, width: u32) {
        self.post("/window/rect", json!({"width": width, "height": 900}))
            .await;
    }

    /// A PNG of the viewport's page, saved to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// axe-core's WCAG 2.2 A and AA rules on the current page: the
    /// violations, empty when there are none.
    pub async fn axe_violations(&self) -> Vec<Value> {
        let axe = std::fs::read_to_string(axe_path()).unwrap();
        self.run(&axe, json!([])).await;
        let result = self
            .run_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})
                    .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.html)}))))
                    .catch(e => done([{id: 'axe-error', nodes: [String(e)]}]));",
                json!([]),
            )
            .await;
        result.as_array().cloned().unwrap_or_default()
    }
}
