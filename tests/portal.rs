//! The patient portal's pages (issue #36), on both backends: a patient's
//! whole path in a real headless Chromium (passkey enrollment, consent, a
//! live access checked in the browser, withdrawal, sign-out and sign-in),
//! axe-core on every page in both languages, and the refusals a security
//! reviewer would try.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::access::*;
use common::browser::{self, Browser};
use common::smtp::{self, SmtpServer};
use common::webhooks::webhook_receiver;
use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

on_both_backends!(
    a_patient_enrolls_sees_checks_and_acts_in_a_browser,
    portal_pages_refuse_what_a_reviewer_would_try,
    serve_demo_seeds_a_patient_and_prints_an_enrollment_link,
);

/// Markup and script a hospital or the governance body could type into a
/// document: the pages must show it as text.
const PAYLOAD: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=1\">";

fn hostile_draft() -> Value {
    let mut d = first_draft();
    d["title_ja"] = json!(format!("統一同意説明文書 {PAYLOAD}"));
    d["title_en"] = json!(format!("Unified consent {PAYLOAD}"));
    d["items"][1]["label_ja"] = json!(format!("学術研究への利用 {PAYLOAD}"));
    d["items"][1]["label_en"] = json!(format!("Academic research {PAYLOAD}"));
    d["items"][1]["text_ja"] = json!(format!("大学などの研究機関が利用します。{PAYLOAD}"));
    d["items"][1]["text_en"] = json!(format!("Universities and institutes use it. {PAYLOAD}"));
    d
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/portal")
}

async fn assert_accessible(b: &Browser, page: &str) {
    let violations = b.axe_violations().await;
    assert!(violations.is_empty(), "axe on {page}: {violations:#?}");
}

/// The page is the one wanted, and nothing a user typed ran or became markup.
async fn assert_inert(b: &Browser) {
    let injected = b
        .run(
            "return [window.__pwned === undefined, document.querySelectorAll('main script, main img').length]",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!([true, 0]), "stored markup ran or rendered");
}

async fn a_patient_enrolls_sees_checks_and_acts_in_a_browser(backend: Backend) {
    if !browser::available() || !smtp::available() {
        return;
    }
    let mail = SmtpServer::start();
    let options = Options {
        env: vec![("GENOMEGATE__NOTIFY__SMTP_URL", mail.url())],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let version = app.publish("cancer", &hostile_draft()).await;
    // Five patients: the smallest cohort a release may have.
    let cohort = patients_with_samples(&app, &version, "PORTAL", 5, all_permit()).await;
    let (patient, _, code) = cohort[0].clone();
    let genome_ids: Vec<String> = cohort.iter().map(|(_, g, _)| g.clone()).collect();
    // A use that relies on academic consent, released before the patient
    // withdraws it: the withdrawal must recall it.
    let use_id = one_use_of(&app, (UNIVERSITY, "academic", "r-1"), &genome_ids, "GRU").await;
    let member = researcher(UNIVERSITY, "r-1");
    let (s, released) = release(&app, &use_id, &member).await;
    assert_eq!(s, 201, "{released}");
    // The hospital's patient app hears of everything about its patients.
    let (hook_url, hooked, _hook_server) = webhook_receiver().await;
    let (s, hook) = app
        .post(
            "/v1/hospital-webhooks",
            &app.staff("hospital-a"),
            None,
            &json!({ "url": format!("{hook_url}/ok") }),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    app.wait_integrated().await;

    let b = Browser::start(&app.certs_dir().join("ca.pem")).await;
    b.add_authenticator().await;

    // 1. The letter's QR link: the code arrives in the fragment.
    b.goto(&app.url(&format!("/portal/enroll#code={code}")))
        .await;
    b.wait_for(
        "return document.getElementById('code').value",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        b.run("return location.hash", json!([])).await,
        json!(""),
        "the code leaves the address bar"
    );
    assert_accessible(&b, "enroll (ja)").await;
    let before: Vec<String> = b
        .cookies()
        .await
        .iter()
        .filter(|c| c["name"] == "__Host-gg_session")
        .map(|c| c["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(before.len(), 1, "a session exists before sign-in");
    // By keyboard alone: focus the code field, then Enter submits.
    b.run("document.getElementById('code').focus()", json!([]))
        .await;
    b.keys("\u{E007}").await;
    let recovery = b
        .wait_for(
            "const s = document.getElementById('enrolled'); return !s.hidden && document.getElementById('recovery-code').textContent",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(recovery.as_str().unwrap().len(), 24, "{recovery}");
    let session = b
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "__Host-gg_session")
        .unwrap();
    assert_ne!(
        session["value"].as_str().unwrap(),
        before[0],
        "signing in starts a new session"
    );
    assert_eq!(session["httpOnly"], json!(true));
    assert_eq!(session["secure"], json!(true));
    assert_eq!(session["sameSite"], json!("Lax"));
    assert_eq!(app.count("portal_passkeys"), 1);

    // 2. The consent, in plain words, with the payloads as text.
    b.goto(&app.url("/portal/")).await;
    b.wait_for(
        "return document.querySelector('h1').textContent === 'わたしの同意'",
        Duration::from_secs(5),
    )
    .await;
    let text = b
        .run("return document.querySelector('main').innerText", json!([]))
        .await;
    let text = text.as_str().unwrap();
    assert!(text.contains("学術研究への利用 <script>"), "{text}");
    assert!(text.contains("同意しています"), "{text}");
    assert_inert(&b).await;
    assert_accessible(&b, "consent (ja)").await;
    b.screenshot(&screenshots().join("consent-ja-1280.png"))
        .await;
    b.set_width(360).await;
    let overflow = b
        .run(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    assert_eq!(overflow, json!(0), "no sideways scrolling at 360 px");
    b.screenshot(&screenshots().join("consent-ja-360.png"))
        .await;
    b.set_width(1280).await;

    // Email about new entries, every kind (the boxes start ticked).
    b.goto(&app.url("/portal/preferences")).await;
    b.wait_for(
        "return document.getElementById('email')",
        Duration::from_secs(5),
    )
    .await;
    b.click("#email-on").await;
    b.type_into("#email", "patient@example.org").await;
    b.click("form.card button.primary").await;
    b.wait_for(
        "return location.search === '?saved=1' && document.querySelector('.notice')",
        Duration::from_secs(5),
    )
    .await;
    assert_accessible(&b, "preferences (ja)").await;
    b.screenshot(&screenshots().join("preferences-ja-1280.png"))
        .await;
    assert_eq!(app.count("notification_endpoints WHERE kind = 'email'"), 1);

    // 3. An access made through the API appears on the open page, checked.
    b.goto(&app.url("/portal/history")).await;
    b.wait_for(
        "return document.getElementById('log-check').dataset.state === 'verified'",
        Duration::from_secs(10),
    )
    .await;
    let shown = b
        .run(
            "return document.querySelectorAll('#entries li.entry').length",
            json!([]),
        )
        .await
        .as_u64()
        .unwrap();
    assert!(shown >= 2, "the grant and the release are listed: {shown}");
    assert_accessible(&b, "history (ja)").await;
    // Let the page's live stream connect before the access is made.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    assert_eq!(app.staff_reads_consent("hospital-a", &patient).await, 200);
    b.wait_for(
        &format!(
            "const list = document.querySelectorAll('#entries li.entry');
             return list.length > {shown} && list[0].querySelector('.mark').dataset.state === 'verified'
                 && document.getElementById('live-status').textContent !== ''"
        ),
        Duration::from_secs(5),
    )
    .await;
    let shown_after = started.elapsed();
    eprintln!("an access reached the open portal page, verified, in {shown_after:?}");
    assert!(
        shown_after < Duration::from_secs(2),
        "a new access appears at once: {shown_after:?}"
    );
    b.screenshot(&screenshots().join("history-ja-1280.png"))
        .await;
    // ...and an email says so, and nothing more.
    let mails = mail.wait_for(1, Duration::from_secs(10)).await;
    let email = format!("{}\n{}", mails[0], smtp::body(&mails[0]));
    assert!(email.contains("To: patient@example.org"), "{email}");
    assert!(email.contains("/portal/history"), "{email}");
    for secret in [
        patient.as_str(),
        "hospital-a",
        "user-1",
        "cancer",
        "MRN-PORTAL",
    ] {
        assert!(!email.contains(secret), "{secret} in {email}");
    }
    // Reads are no longer emailed: the next one is shown, not sent.
    b.goto(&app.url("/portal/preferences")).await;
    b.wait_for(
        "return document.getElementById('kind-read')",
        Duration::from_secs(5),
    )
    .await;
    b.click("#kind-read").await;
    b.click("form.card button.primary").await;
    b.wait_for(
        "return location.search === '?saved=1'",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(app.staff_reads_consent("hospital-a", &patient).await, 200);
    app.wait_integrated().await;
    let pending = "notification_deliveries WHERE endpoint_id LIKE 'email:%' AND state = 'pending'";
    let waited = Instant::now();
    while app.count(pending) > 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "email deliveries stuck"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mail.messages().len(), 1, "a read is not emailed any more");

    // The same pages in English, remembered.
    b.goto(&app.url("/portal/language/en?back=/portal/history"))
        .await;
    b.wait_for(
        "return document.documentElement.lang === 'en' && document.getElementById('log-check').dataset.state === 'verified'",
        Duration::from_secs(10),
    )
    .await;
    assert_accessible(&b, "history (en)").await;
    b.screenshot(&screenshots().join("history-en-1280.png"))
        .await;
    b.set_width(360).await;
    b.screenshot(&screenshots().join("history-en-360.png"))
        .await;
    b.set_width(1280).await;
    b.goto(&app.url("/portal/")).await;
    b.wait_for(
        "return document.querySelector('h1').textContent === 'My consent'",
        Duration::from_secs(5),
    )
    .await;
    assert_inert(&b).await;
    assert_accessible(&b, "consent (en)").await;
    b.screenshot(&screenshots().join("consent-en-1280.png"))
        .await;

    // 4. Withdraw one item, by keyboard, after reading the consequences.
    let hooks_before = hooked.0.lock().unwrap().len();
    b.goto(&app.url("/portal/withdraw/cancer?item=secondary_use_academic"))
        .await;
    b.wait_for(
        "return document.querySelector('form button.danger')",
        Duration::from_secs(5),
    )
    .await;
    assert_accessible(&b, "withdraw (en)").await;
    b.screenshot(&screenshots().join("withdraw-en-1280.png"))
        .await;
    b.run(
        "document.querySelector('form button.danger').focus()",
        json!([]),
    )
    .await;
    b.keys("\u{E007}").await;
    b.wait_for(
        "return location.search === '?done=withdrawn' && document.querySelector('.notice')",
        Duration::from_secs(10),
    )
    .await;
    let text = b
        .run("return document.querySelector('main').innerText", json!([]))
        .await;
    assert!(
        text.as_str().unwrap().contains("You withdrew this."),
        "{text}"
    );
    let (s, consent) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&app.staff("hospital-a")),
        )
        .await;
    assert_eq!(s, 200);
    let academic = consent["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == "secondary_use_academic")
        .unwrap();
    assert_eq!(academic["decision"], "deny", "{consent}");
    assert_eq!(academic["basis"]["reason"], "withdrawn", "{consent}");
    // The use that relied on it is recalled; the hospital's app is told.
    let notices = recall_notices(&app, &use_id, &member).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    // The withdrawal is emailed (a consent kind).
    mail.wait_for(2, Duration::from_secs(10)).await;
    let started = Instant::now();
    while hooked.0.lock().unwrap().len() <= hooks_before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the hospital webhook heard nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 4b. Report an entry that looks wrong, from the entry itself; the
    // governance body answers through the API; the patient follows it.
    b.goto(&app.url("/portal/history")).await;
    b.wait_for(
        "return document.querySelector('#entries .entry-actions a')",
        Duration::from_secs(5),
    )
    .await;
    b.click("#entries .entry-actions a").await;
    b.wait_for(
        "return document.querySelector('form textarea#text')",
        Duration::from_secs(5),
    )
    .await;
    assert_accessible(&b, "enquiry form (en)").await;
    b.type_into("#text", &format!("I do not know this reader. {PAYLOAD}"))
        .await;
    b.screenshot(&screenshots().join("enquiry-form-en-1280.png"))
        .await;
    b.click("form.card button[type=submit]").await;
    b.wait_for(
        "return location.search === '?sent=1' && document.querySelector('.enquiry-state.state-sent')",
        Duration::from_secs(10),
    )
    .await;
    assert_inert(&b).await;
    assert_accessible(&b, "enquiry (en)").await;
    let governance = token_for(&["governance"], "governance", "officer-1");
    let (s, list) = app.get("/v1/enquiries", Some(&governance)).await;
    assert_eq!(s, 200, "{list}");
    let report = list["enquiries"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["enquiries"][0]["kind"], "wrong_access");
    assert!(list["enquiries"][0]["about_entry"].is_u64(), "{list}");
    let (s, answered) = app
        .post(
            &format!("/v1/enquiries/{report}/answers"),
            &governance,
            None,
            &json!({ "text": format!("We are looking into it. {PAYLOAD}") }),
        )
        .await;
    assert_eq!(s, 201, "{answered}");
    b.goto(&app.url(&format!("/portal/enquiries/{report}")))
        .await;
    b.wait_for(
        "return document.querySelector('.enquiry-state.state-answered')",
        Duration::from_secs(5),
    )
    .await;
    assert_inert(&b).await;
    let text = b
        .run("return document.querySelector('main').innerText", json!([]))
        .await;
    assert!(
        text.as_str()
            .unwrap()
            .contains("We are looking into it. <script>"),
        "the answer is shown as the text it is: {text}"
    );
    assert_accessible(&b, "answered enquiry (en)").await;
    b.screenshot(&screenshots().join("enquiry-en-1280.png"))
        .await;
    b.set_width(360).await;
    b.screenshot(&screenshots().join("enquiry-en-360.png"))
        .await;
    b.set_width(1280).await;
    b.goto(&app.url("/portal/enquiries")).await;
    b.wait_for(
        "return document.querySelector('ol.enquiries li')",
        Duration::from_secs(5),
    )
    .await;
    assert_inert(&b).await;
    assert_accessible(&b, "enquiries (en)").await;
    // Another patient's enquiry looks like none at all.
    b.goto(&app.url("/portal/enquiries/no-such-enquiry")).await;
    b.wait_for(
        "return document.querySelector('h1').textContent === 'Not found'",
        Duration::from_secs(5),
    )
    .await;
    b.goto(&app.url("/portal/language/ja?back=/portal/enquiries"))
        .await;
    b.wait_for(
        "return document.documentElement.lang === 'ja' && document.querySelector('ol.enquiries li')",
        Duration::from_secs(5),
    )
    .await;
    assert_inert(&b).await;
    assert_accessible(&b, "enquiries (ja)").await;
    b.screenshot(&screenshots().join("enquiries-ja-1280.png"))
        .await;
    b.set_width(360).await;
    b.screenshot(&screenshots().join("enquiries-ja-360.png"))
        .await;
    b.set_width(1280).await;
    b.goto(&app.url(&format!("/portal/enquiries/{report}")))
        .await;
    b.wait_for(
        "return document.documentElement.lang === 'ja' && document.querySelector('.enquiry-state.state-answered')",
        Duration::from_secs(5),
    )
    .await;
    assert_inert(&b).await;
    assert_accessible(&b, "answered enquiry (ja)").await;
    b.goto(&app.url("/portal/enquiries/new?kind=discrimination"))
        .await;
    b.wait_for(
        "return document.querySelector('form textarea#text')",
        Duration::from_secs(5),
    )
    .await;
    assert_accessible(&b, "discrimination form (ja)").await;
    b.goto(&app.url("/portal/language/en?back=/portal/")).await;

    // 5. Sign out; the old cookie is worthless; sign in again.
    let old = b
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "__Host-gg_session")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    b.click("nav form button").await;
    b.wait_for(
        "return document.getElementById('sign-in')",
        Duration::from_secs(5),
    )
    .await;
    assert_accessible(&b, "welcome (en)").await;
    let replayed = unredirected(&app)
        .get(app.url("/portal/history"))
        .header("cookie", format!("__Host-gg_session={old}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 303, "a signed-out session shows nothing");
    b.goto(&app.url("/portal/language/ja?back=/portal/")).await;
    b.screenshot(&screenshots().join("welcome-ja-360.png"))
        .await;
    b.click("#sign-in").await;
    b.wait_for(
        "return document.querySelector('h1').textContent === 'わたしの同意'",
        Duration::from_secs(10),
    )
    .await;

    // 6. A log entry altered in the database turns the mark into a warning.
    // What the patient may not see looks like what does not exist.
    for path in [
        "/portal/withdraw/rare_disease",
        "/portal/withdraw/cancer?item=no_such_item",
        "/portal/withdraw/no_such_family",
    ] {
        b.goto(&app.url(path)).await;
        b.wait_for(
            "return document.querySelector('h1').textContent === '見つかりません'",
            Duration::from_secs(5),
        )
        .await;
    }
    // The grant's entry now names another hospital: still an entry, but
    // not the one the log's tree holds.
    let forged = match backend {
        Backend::Sqlite => "CAST(REPLACE(CAST(entry AS TEXT), 'hospital-a', 'hospital-z') AS BLOB)",
        Backend::Postgres => {
            "convert_to(replace(convert_from(entry, 'UTF8'), 'hospital-a', 'hospital-z'), 'UTF8')"
        }
    };
    let forge = format!(
        "UPDATE access_log_entries SET entry = {forged} WHERE seq = (SELECT MIN(seq) FROM access_log_entries WHERE patient_pseudonym = '{patient}')"
    );
    tamper(&app, &[&forge]);
    b.goto(&app.url("/portal/history")).await;
    b.wait_for(
        "return document.getElementById('log-check').dataset.state === 'failed' && document.querySelector('.mark[data-state=failed]')",
        Duration::from_secs(10),
    )
    .await;
    b.screenshot(&screenshots().join("history-tampered-ja-1280.png"))
        .await;
}

async fn get_page(app: &TestApp, path: &str) -> reqwest::Response {
    app.plain_client.get(app.url(path)).send().await.unwrap()
}

/// A page session: its cookie and the CSRF token its page carries.
async fn page_session(app: &TestApp) -> (String, String) {
    let response = get_page(app, "/portal/").await;
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-gg_session="))
        .unwrap();
    let html = response.text().await.unwrap();
    let token = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let value = cookie.split(';').next().unwrap().to_owned();
    (value, token)
}

/// A client that shows redirects instead of following them.
fn unredirected(app: &TestApp) -> reqwest::Client {
    let ca = std::fs::read(app.certs_dir().join("ca.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn portal_pages_refuse_what_a_reviewer_would_try(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    app.plain_client = unredirected(&app);
    // Headers every page carries.
    let response = get_page(&app, "/portal/").await;
    assert_eq!(response.status(), 200);
    let h = |n: &str| {
        response
            .headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let csp = h("content-security-policy");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("x-content-type-options"), "nosniff");
    let cookie = h("set-cookie");
    for flag in [
        "__Host-gg_session=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let html = response.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style"
    );
    // Assets carry their hash, and are cached for good.
    let css = html
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let asset = get_page(&app, css).await;
    assert_eq!(asset.status(), 200);
    assert!(asset.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let missing = get_page(&app, "/portal/assets/portal.0000.css").await;
    assert_eq!(missing.status(), 404);

    // Session fixation: a planted session ID is ignored, and a new one set.
    let planted = app
        .plain_client
        .get(app.url("/portal/"))
        .header("cookie", "__Host-gg_session=planted-by-an-attacker")
        .send()
        .await
        .unwrap();
    let set = planted.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        !set.contains("planted-by-an-attacker") && set.starts_with("__Host-gg_session="),
        "{set}"
    );

    // CSRF: a form without the page's token, or from another origin, is refused.
    let (session, token) = page_session(&app).await;
    let post = |body: String, origin: Option<&str>, site: Option<&str>| {
        let mut req = app
            .plain_client
            .post(app.url("/portal/sign-out"))
            .header("cookie", session.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        if let Some(site) = site {
            req = req.header("sec-fetch-site", site);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("csrf=wrong".into(), None, None).await, 403);
    assert_eq!(
        post(format!("csrf={token}"), Some("https://evil.example"), None).await,
        403
    );
    assert_eq!(
        post(format!("csrf={token}"), None, Some("cross-site")).await,
        403
    );
    assert_eq!(
        post(
            format!("csrf={token}"),
            Some(&app.base),
            Some("same-origin")
        )
        .await,
        303
    );
    // The ceremonies' endpoints want the token in a header.
    // (The sign-out above revoked that session: start another.)
    let (session, token) = page_session(&app).await;
    let begin = |t: Option<String>, code: &'static str| {
        let session = session.clone();
        let mut req = app
            .plain_client
            .post(app.url("/portal/passkeys/enroll/begin"))
            .header("cookie", session)
            .json(&json!({ "code": code }));
        if let Some(t) = t {
            req = req.header("x-csrf-token", t);
        }
        async move { read(req.send().await.unwrap()).await }
    };
    let (s, b) = begin(None, "AAAA-BBBB").await;
    assert_problem(s, &b, 403, "forbidden");
    // Enrollment attempts are limited per client, like the JSON API's.
    let limit = app.config.patients.attempts_per_minute;
    for _ in 0..limit {
        let (s, b) = begin(Some(token.clone()), "AAAA-BBBB-CCCC-DDDD-EEEE").await;
        assert_problem(s, &b, 400, "enrollment_code_invalid");
    }
    let (s, b) = begin(Some(token.clone()), "AAAA-BBBB-CCCC-DDDD-EEEE").await;
    assert_problem(s, &b, 429, "rate_limited");

    // Sign-in attempts are limited per client too, before any check.
    let forged = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": "AAAA"},
    });
    let finish = || {
        let req = app
            .plain_client
            .post(app.url("/portal/passkeys/sign-in/finish"))
            .header("cookie", session.clone())
            .header("x-csrf-token", token.clone())
            .json(&forged);
        async move { read(req.send().await.unwrap()).await }
    };
    for _ in 0..limit {
        let (s, b) = finish().await;
        assert_problem(s, &b, 401, "invalid_credentials");
    }
    let (s, b) = finish().await;
    assert_problem(s, &b, 429, "rate_limited");

    // Pages for signed-in patients send anyone else to the way in, and what
    // a patient may not see is the same 404 as what does not exist.
    let r = get_page(&app, "/portal/history").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/portal/");
    let r = get_page(&app, "/portal/no-such-page").await;
    assert_eq!(r.status(), 404);
    // The language switch returns only to the portal's own pages.
    let r = get_page(&app, "/portal/language/en?back=https://evil.example/").await;
    assert_eq!(r.headers()["location"], "/portal/");
    let r = get_page(&app, "/portal/language/en?back=//evil.example/portal/").await;
    assert_eq!(r.headers()["location"], "/portal/");
    // Nothing of this was logged as an access to anyone's data.
    assert_eq!(app.count("access_log_entries"), 0);
}

/// The enrollment link `genomegate serve --demo` prints, read from the
/// binary's standard output; the binary keeps serving until killed.
fn demo_link(app: &TestApp) -> String {
    use std::io::BufRead;
    let mut child = app
        .binary(&[])
        .arg("--demo")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let link = lines.map_while(Result::ok).find_map(|line| {
        line.trim()
            .strip_prefix("https://")
            .map(|l| format!("https://{l}"))
    });
    let _ = child.kill();
    let _ = child.wait();
    link.expect("the demo prints a link")
}

async fn serve_demo_seeds_a_patient_and_prints_an_enrollment_link(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let first = demo_link(&app);
    let code = first
        .split("/portal/enroll#code=")
        .nth(1)
        .unwrap()
        .to_owned();
    // A second run reuses the document and the patient, with a new code.
    let second = demo_link(&app);
    assert_ne!(first, second);
    assert_eq!(app.count("document_versions"), 1);
    assert_eq!(app.count("patients"), 1);
    // The patient has an access to look at, and the printed code enrolls.
    assert!(app.log_entries_with_action("consent_read") >= 1);
    let (s, b) = app
        .send_json(
            reqwest::Method::POST,
            "/v1/portal/enroll",
            None,
            None,
            &json!({ "code": code }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let token = b["access_token"].as_str().unwrap();
    let (s, consents) = app.get("/v1/portal/consents", Some(token)).await;
    assert_eq!(s, 200);
    assert_eq!(consents["consents"][0]["status"], "active", "{consents}");
}
