//! The tamper-evident access log and notification of the person (issue #4):
//! entries written with each action, receipts that verify, the patient
//! portal, live streams, webhooks, verify-log against tampering, and
//! concurrent appends from several instances.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::receipts::{assert_receipt, enroll, enrolled_patient, hashes};
use common::webhooks::webhook_receiver;
use common::*;
use diesel::RunQueryDsl;
use serde_json::{json, Value};
use std::time::Duration;

on_both_backends!(
    actions_are_logged_and_patients_see_only_their_own_entries,
    live_stream_delivers_a_verifiable_receipt,
    a_reconnecting_stream_replays_every_missed_receipt_in_pages,
    consistency_proofs_link_an_old_checkpoint_to_the_latest,
    webhooks_are_signed_retried_and_dead_lettered,
    webhooks_cannot_reach_internal_addresses,
    webhooks_use_allowed_ports_only,
    verify_log_finds_edits_deletions_reorders_and_forged_checkpoints,
    enrollment_codes_are_single_use_and_rate_limited,
    enrollment_codes_print_as_qr_codes,
    screening_flags_missing_bases_and_unusual_volume,
    a_large_batch_is_appended_in_parts_all_or_nothing,
    screening_catches_up_on_periods_missed_while_down,
);

async fn actions_are_logged_and_patients_see_only_their_own_entries(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (alice, alice_code) = enrolled_patient(&app, "MRN-ALICE").await;
    let (bob, _) = enrolled_patient(&app, "MRN-BOB").await;
    let staff = app.staff("hospital-a");
    let (s, _) = app
        .get(
            &format!("/v1/patients/{alice}/consents/cancer"),
            Some(&staff),
        )
        .await;
    assert_eq!(s, 200);
    // A refused request writes nothing, its log entry included.
    let before = app.count("access_log_entries");
    let (s, _) = app
        .get(
            &format!("/v1/patients/{alice}/consents/cancer"),
            Some(&app.staff("hospital-b")),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(app.count("access_log_entries"), before);
    assert_eq!(before, 3, "two registrations and one read");
    app.wait_integrated().await;

    let session = enroll(&app, &alice_code).await;
    let token = session["access_token"].as_str().unwrap();
    let (s, page) = app.get("/v1/portal/access-log?lang=en", Some(token)).await;
    assert_eq!(s, 200, "{page}");
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{page}");
    assert!(entries
        .iter()
        .all(|e| e["entry"]["patient"] == alice.as_str()));
    assert_eq!(
        entries[0]["entry"]["action"], "consent_read",
        "newest first"
    );
    assert_eq!(entries[1]["entry"]["action"], "consent_register");
    assert_eq!(entries[0]["entry"]["actor"]["org"], "hospital-a");
    assert!(entries[0]["explanation"]["summary"]
        .as_str()
        .unwrap()
        .contains("read your cancer consent record"));
    let (_, ja) = app
        .get("/v1/portal/access-log?lang=ja&limit=1", Some(token))
        .await;
    assert!(ja["entries"][0]["explanation"]["summary"]
        .as_str()
        .unwrap()
        .contains("閲覧"));
    let older = ja["next_before"].as_i64().expect("a second page");
    let (_, page2) = app
        .get(
            &format!("/v1/portal/access-log?limit=1&before={older}"),
            Some(token),
        )
        .await;
    assert_eq!(page2["entries"][0]["entry"]["action"], "consent_register");
    assert!(page2["next_before"].is_null());

    // Every entry has a receipt that verifies against a signed checkpoint.
    let index = entries[0]["index"].as_u64().unwrap();
    let (s, proof) = app
        .get(&format!("/v1/log/proofs/inclusion?index={index}"), None)
        .await;
    assert_eq!(s, 200, "{proof}");
    let receipt = json!({
        "index": index,
        "tree_size": proof["tree_size"],
        "checkpoint": proof["checkpoint"],
        "inclusion_proof": proof["proof"],
        "entry_bytes": entries[0]["entry_bytes"],
    });
    assert_receipt(&app, &receipt).await;

    let (s, consents) = app.get("/v1/portal/consents", Some(token)).await;
    assert_eq!(
        (s, consents["consents"][0]["status"].as_str()),
        (200, Some("active"))
    );

    // Bob's token sees Bob only; patient tokens from another issuer see nothing.
    let bob_token = app.patient_token(&bob);
    let (_, bob_page) = app.get("/v1/portal/access-log", Some(&bob_token)).await;
    let bob_entries = bob_page["entries"].as_array().unwrap();
    assert_eq!(bob_entries.len(), 1);
    assert!(bob_entries
        .iter()
        .all(|e| e["entry"]["patient"] == bob.as_str()));
    let (s, _) = app
        .get(
            "/v1/portal/access-log",
            Some(&app.foreign_patient_token(&alice)),
        )
        .await;
    assert_eq!(
        s, 403,
        "only the service's own issuer grants the patient role"
    );
    let (s, _) = app.get("/v1/portal/access-log", Some(&staff)).await;
    assert_eq!(s, 403);

    // Auditors query by organization and action; others may not.
    let auditor = app.token(&["auditor"], "oversight");
    let (s, audit) = app
        .get(
            "/v1/audit/log?org=hospital-a&action=consent_read",
            Some(&auditor),
        )
        .await;
    assert_eq!(s, 200, "{audit}");
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);
    let (s, _) = app.get("/v1/audit/log", Some(&staff)).await;
    assert_eq!(s, 403);
    let (s, body) = app
        .get("/v1/audit/log?action=teleport", Some(&auditor))
        .await;
    assert_eq!((s, body["code"].as_str()), (422, Some("validation_failed")));

    // Preferences round-trip and are validated.
    let (s, _) = app
        .send_json(
            reqwest::Method::PUT,
            "/v1/portal/preferences",
            Some(token),
            None,
            &json!({"language": "en", "hospital_app": false}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, prefs) = app.get("/v1/portal/preferences", Some(token)).await;
    assert_eq!(prefs, json!({"language": "en", "hospital_app": false}));
    let (s, _) = app
        .send_json(
            reqwest::Method::PUT,
            "/v1/portal/preferences",
            Some(token),
            None,
            &json!({"language": "fr", "hospital_app": true}),
        )
        .await;
    assert_eq!(s, 422);
}

async fn live_stream_delivers_a_verifiable_receipt(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (alice, _) = enrolled_patient(&app, "MRN-STREAM").await;
    app.wait_integrated().await;
    // On PostgreSQL the stream is opened on a second instance: the entry is
    // written through the first, and LISTEN/NOTIFY carries it across.
    let other = (backend == Backend::Postgres).then(|| app.another_instance());
    let base = other.as_ref().map_or(app.base.clone(), |i| i.base.clone());
    let mut stream = app
        .client
        .get(format!("{base}/v1/portal/notifications"))
        .bearer_auth(app.patient_token(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    while !seen.contains(": connected") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.chunk().await.unwrap().unwrap(),
        ));
    }
    let (s, _) = app
        .get(
            &format!("/v1/patients/{alice}/consents/cancer"),
            Some(&app.staff("hospital-a")),
        )
        .await;
    assert_eq!(s, 200);
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(start) = seen.find("event: access\ndata: ") {
                if let Some(end) = seen[start..].find("\n\n") {
                    return seen[start + 20..start + end].to_owned();
                }
            }
            let chunk = stream.chunk().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("a notification within 10 s");
    let n: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(n["entry"]["action"], "consent_read");
    assert_eq!(n["entry"]["patient"], alice.as_str());
    assert!(n["explanation"]["ja"]["summary"]
        .as_str()
        .unwrap()
        .contains("hospital-a"));
    assert_receipt(&app, &n).await;
}

/// PostgreSQL: when the connection that LISTENs for new log sizes is cut,
/// an entry written before it listens again still reaches an open stream
/// at once, not with the next entry (which on a quiet log may never come).
#[actix_web::test]
async fn a_cut_log_listener_misses_no_entry() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let (alice, _) = enrolled_patient(&app, "MRN-CUT").await;
    app.wait_integrated().await;
    let mut stream = app
        .client
        .get(app.url("/v1/portal/notifications"))
        .bearer_auth(app.patient_token(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    while !seen.contains(": connected") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.chunk().await.unwrap().unwrap(),
        ));
    }
    #[derive(diesel::QueryableByName)]
    struct Cut {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        cut: bool,
    }
    let mut conn = app.raw_db();
    let cut: Vec<Cut> = genomegate::db_run!(&mut conn, c => diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity \
         WHERE application_name = '{}' AND datname = current_database()",
        genomegate::workers::announcer::LISTENER_APPLICATION_NAME
    ))
    .load(c)
    .unwrap());
    assert_eq!(cut.len(), 1, "one listener per instance");
    assert!(cut[0].cut);
    // Written while the listener is away.
    let started = std::time::Instant::now();
    let (s, _) = app
        .get(
            &format!("/v1/patients/{alice}/consents/cancer"),
            Some(&app.staff("hospital-a")),
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::timeout(Duration::from_secs(1), async {
        while !seen.contains("event: access") {
            let chunk = stream.chunk().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the receipt reaches the open stream within 1 s of the read");
    eprintln!("receipt after a cut listener: {:?}", started.elapsed());
}

/// Where a test opens a live stream: after the `Last-Event-ID` a
/// reconnecting client sends, or `?from=` an index.
enum Opening<'a> {
    LastEventId(&'a str),
    From(u64),
}

/// The `id`s of the receipts a live stream opened at `opening` sends,
/// until it ends or `wanted` have arrived (`None`: until it ends); and
/// whether it ended.
async fn stream_ids(
    app: &TestApp,
    token: &str,
    opening: Opening<'_>,
    wanted: Option<usize>,
) -> (Vec<u64>, bool) {
    let url = format!("{}/v1/portal/notifications", app.base);
    let request = match opening {
        Opening::LastEventId(last) => app.client.get(url).header("Last-Event-ID", last),
        Opening::From(first) => app.client.get(format!("{url}?from={first}")),
    };
    let mut stream = request.bearer_auth(token).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let ids = |seen: &str| -> Vec<u64> {
        seen.split("\n\n")
            .filter(|frame| frame.contains("event: access"))
            .filter_map(|frame| frame.strip_prefix("id: ")?.split('\n').next()?.parse().ok())
            .collect()
    };
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if wanted.is_some_and(|w| ids(&seen).len() >= w) && seen.ends_with("\n\n") {
                return false;
            }
            match stream.chunk().await.unwrap() {
                Some(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                None => return true,
            }
        }
    })
    .await
    .expect("the stream answers within 10 s");
    (ids(&seen), ended)
}

async fn a_reconnecting_stream_replays_every_missed_receipt_in_pages(backend: Backend) {
    let options = Options {
        env: vec![("GENOMEGATE__NOTIFY__STREAM_REPLAY_PAGE", "2".into())],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let (alice, _) = enrolled_patient(&app, "MRN-REPLAY").await;
    let (bob, _) = enrolled_patient(&app, "MRN-REPLAY-B").await;
    for patient in [&alice, &bob, &alice, &alice, &bob, &alice] {
        assert_eq!(app.staff_reads_consent("hospital-a", patient).await, 200);
    }
    app.wait_integrated().await;
    let indices: Vec<u64> = app
        .texts(&format!(
            "SELECT CAST(l.idx AS TEXT) AS t FROM access_log_leaves l \
             JOIN access_log_entries e ON e.seq = l.seq \
             WHERE e.patient_pseudonym = '{alice}' ORDER BY l.idx"
        ))
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(indices.len(), 5, "registration and four reads: {indices:?}");
    let token = app.patient_token(&alice);

    // Seen the first: four missed, replayed two at a time, oldest first;
    // a stream that replayed a full page of two closes so the client
    // reconnects from its last id.
    let seen_first = indices[0].to_string();
    let (first, ended) = stream_ids(&app, &token, Opening::LastEventId(&seen_first), None).await;
    assert_eq!((first.as_slice(), ended), (&indices[1..3], true));
    let seen = first[1].to_string();
    let (second, ended) = stream_ids(&app, &token, Opening::LastEventId(&seen), Some(2)).await;
    assert_eq!(second.as_slice(), &indices[3..5]);
    // Nothing more was missed: this stream stays open for live receipts.
    assert!(!ended, "the stream that caught up stays open");
    // Only the caller's own receipts are replayed.
    let (all, _) = stream_ids(&app, &token, Opening::LastEventId("0"), Some(2)).await;
    assert!(all.iter().all(|i| indices.contains(i)), "{all:?}");

    // A new client asks for everything from the start: its first receipt
    // too, which no Last-Event-ID can name (index 0 is the log's first).
    let (from_start, ended) = stream_ids(&app, &token, Opening::From(0), None).await;
    assert_eq!((from_start.as_slice(), ended), (&indices[0..2], true));
    let (from_third, _) = stream_ids(&app, &token, Opening::From(indices[2]), Some(2)).await;
    assert_eq!(from_third.as_slice(), &indices[2..4]);
    // A reconnection's Last-Event-ID wins over the URL it reopens.
    let url = format!("{}/v1/portal/notifications?from=0", app.base);
    let reopened = app
        .client
        .get(url)
        .bearer_auth(&token)
        .header("Last-Event-ID", indices[3].to_string())
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = reopened;
        let mut seen = String::new();
        while !seen.contains("event: access") || !seen.ends_with("\n\n") {
            let chunk = stream
                .chunk()
                .await
                .unwrap()
                .expect("a receipt before the end");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen
    })
    .await
    .expect("the stream answers within 10 s");
    assert!(body.contains(&format!("id: {}\n", indices[4])), "{body}");
    assert!(!body.contains(&format!("id: {}\n", indices[0])), "{body}");
    // An index that is not a log index is refused, with a problem.
    let refused = app
        .client
        .get(format!("{}/v1/portal/notifications?from=-1", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "validation_failed");
}

/// A patient who kept a receipt under an old checkpoint asks whether the
/// latest checkpoint extends it: the served consistency proof verifies
/// between the two signed roots, and impossible sizes are refused.
async fn consistency_proofs_link_an_old_checkpoint_to_the_latest(backend: Backend) {
    use genomegate::ledger::{checkpoint, merkle::verify_consistency};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (alice, _) = enrolled_patient(&app, "MRN-CONSISTENT").await;
    app.wait_integrated().await;
    let key = app.get("/v1/log/keys", None).await.1["verifier_keys"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, held) = app.get("/v1/log/proofs/inclusion?index=0", None).await;
    assert_eq!(s, 200, "{held}");
    let old = checkpoint::open(held["checkpoint"].as_str().unwrap(), &key).unwrap();
    for _ in 0..3 {
        assert_eq!(app.staff_reads_consent("hospital-a", &alice).await, 200);
    }
    app.wait_integrated().await;

    let (s, body) = app
        .get(
            &format!("/v1/log/proofs/consistency?from={}", old.size),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let new = checkpoint::open(body["checkpoint"].as_str().unwrap(), &key).unwrap();
    assert_eq!(
        (body["from"].as_u64(), body["to"].as_u64()),
        (Some(old.size), Some(new.size))
    );
    assert!(new.size >= old.size + 3, "{} then {}", old.size, new.size);
    let proof = hashes(&body["proof"]);
    verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        .expect("the latest checkpoint extends the one the patient held");
    let mut forged = proof.clone();
    forged[0][0] ^= 1;
    assert!(verify_consistency(old.size, new.size, &old.root, &new.root, &forged).is_err());

    // To an older checkpoint of its own choosing, too.
    let (s, pinned) = app
        .get(
            &format!(
                "/v1/log/proofs/consistency?from={}&to={}",
                old.size, old.size
            ),
            None,
        )
        .await;
    assert_eq!(s, 200, "{pinned}");
    assert!(
        hashes(&pinned["proof"]).is_empty(),
        "a tree is consistent with itself"
    );

    for refused in [
        format!(
            "/v1/log/proofs/consistency?from={}&to={}",
            new.size, old.size
        ),
        format!("/v1/log/proofs/consistency?from=0&to={}", new.size + 1000),
        format!("/v1/log/proofs/inclusion?index={}", new.size + 1000),
    ] {
        let (s, b) = app.get(&refused, None).await;
        assert_problem(s, &b, 422, "proof_unavailable");
    }
}

/// The deliveries of a patient's webhook, as the patient sees them.
async fn portal_deliveries(app: &TestApp, token: &str, id: String) -> Vec<Value> {
    app.get(&format!("/v1/portal/webhooks/{id}/deliveries"), Some(token))
        .await
        .1["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

async fn webhooks_are_signed_retried_and_dead_lettered(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (receiver, received, _server) = webhook_receiver().await;
    let (alice, _) = enrolled_patient(&app, "MRN-HOOK").await;
    // Deliveries go to the endpoints that exist when an entry is integrated.
    app.wait_integrated().await;
    let token = app.patient_token(&alice);
    let mut secrets = std::collections::HashMap::new();
    let mut ids = std::collections::HashMap::new();
    for kind in ["ok", "flaky", "down"] {
        let hook = app
            .patient_webhook(&alice, &format!("{receiver}/{kind}"))
            .await;
        let secret = hook["secret"]
            .as_str()
            .unwrap()
            .strip_prefix("whsec_")
            .unwrap();
        secrets.insert(kind, STANDARD.decode(secret).unwrap());
        ids.insert(kind, hook["id"].as_str().unwrap().to_owned());
    }
    let (s, body) = app
        .post(
            "/v1/portal/webhooks",
            &token,
            None,
            &json!({ "url": "ftp://x" }),
        )
        .await;
    assert_eq!((s, body["code"].as_str()), (422, Some("validation_failed")));
    let (_, list) = app.get("/v1/portal/webhooks", Some(&token)).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 3);
    assert!(
        list["webhooks"][0].get("secret").is_none(),
        "secrets are shown once"
    );

    let (s, _) = app
        .get(
            &format!("/v1/patients/{alice}/consents/cancer"),
            Some(&app.staff("hospital-a")),
        )
        .await;
    assert_eq!(s, 200);
    let deliveries = |kind: &'static str| portal_deliveries(&app, &token, ids[kind].clone());
    // Settled only when every list is non-empty and final, judged on one
    // reading of each. (Judging empty lists as settled, then checking
    // non-emptiness in a later request, once let the entry be integrated
    // in between, and the assertions below ran before anything was sent.)
    let is =
        |list: &[Value], state: &str| !list.is_empty() && list.iter().all(|d| d["state"] == state);
    for _ in 0..1000 {
        let (ok, flaky, down) = (
            deliveries("ok").await,
            deliveries("flaky").await,
            deliveries("down").await,
        );
        if is(&ok, "delivered") && is(&flaky, "delivered") && is(&down, "dead") {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let ok = deliveries("ok").await;
    let received_count = received.0.lock().unwrap().len();
    assert_eq!(
        ok.len(),
        1,
        "one delivery per entry after the webhook was added: {ok:?}"
    );
    assert_eq!(
        ok[0]["state"],
        "delivered",
        "ok {ok:?}, flaky {:?}, down {:?}, received {}",
        deliveries("flaky").await,
        deliveries("down").await,
        received_count
    );
    let flaky = deliveries("flaky").await;
    assert_eq!(
        (flaky[0]["state"].as_str(), flaky[0]["attempts"].as_i64()),
        (Some("delivered"), Some(2))
    );
    let down = deliveries("down").await;
    assert_eq!(
        (down[0]["state"].as_str(), down[0]["attempts"].as_i64()),
        (Some("dead"), Some(3))
    );
    assert_eq!(down[0]["last_error"], "HTTP 503");
    let (_, dead) = app
        .get(
            &format!("/v1/portal/webhooks/{}/deliveries?state=dead", ids["down"]),
            Some(&token),
        )
        .await;
    assert_eq!(dead["deliveries"].as_array().unwrap().len(), 1);

    // Every request is signed over id, timestamp and body, and carries the receipt.
    let all = received.0.lock().unwrap().clone();
    assert_eq!(all.iter().filter(|r| r.0 == "down").count(), 3);
    let now = chrono::Utc::now().timestamp();
    for (kind, id, stamp, body) in &all {
        let (ts, sig) = stamp.split_once(' ').unwrap();
        assert!(genomegate::notify::signing::verify(
            &secrets[kind.as_str()],
            id,
            ts.parse().unwrap(),
            body,
            sig,
            now,
            300
        ));
        assert!(!genomegate::notify::signing::verify(
            &secrets["ok"],
            id,
            ts.parse().unwrap(),
            b"{}",
            sig,
            now,
            300
        ));
    }
    let n: Value = serde_json::from_slice(&all[0].3).unwrap();
    assert_eq!(
        all[0].1,
        n["id"].as_str().unwrap(),
        "webhook-id is the idempotency key"
    );
    assert_receipt(&app, &n).await;

    // Another patient's token cannot see these deliveries.
    let (bob, _) = enrolled_patient(&app, "MRN-HOOK-2").await;
    let (s, _) = app
        .get(
            &format!("/v1/portal/webhooks/{}/deliveries", ids["ok"]),
            Some(&app.patient_token(&bob)),
        )
        .await;
    assert_eq!(s, 404);
}

fn verify(app: &TestApp) -> genomegate::ledger::verify::Report {
    let keys = genomegate::pseudonym::keyring::Keyring::load(&app.config.keys.file).unwrap();
    let (_, verifier_keys) =
        genomegate::workers::checkpoint_keys(&keys, &app.config.log.origin).unwrap();
    use secrecy::ExposeSecret;
    genomegate::db::ledger::verify(
        app.config.database.url.expose_secret(),
        &app.config.log.origin,
        &verifier_keys,
    )
    .unwrap()
}

async fn verify_log_finds_edits_deletions_reorders_and_forged_checkpoints(backend: Backend) {
    let cases: [(&str, Vec<String>, u64); 6] = [
        ("edited entry", vec!["UPDATE access_log_entries SET entry = CAST('{\"forged\":1}' AS BLOB) WHERE seq = (SELECT seq FROM access_log_leaves WHERE idx = 5)".into()], 5),
        ("edited column", vec!["UPDATE access_log_entries SET actor_org = 'hospital-z' WHERE seq = (SELECT seq FROM access_log_leaves WHERE idx = 3)".into()], 3),
        ("deleted entry", vec!["DELETE FROM access_log_leaves WHERE idx = 4".into()], 4),
        ("reordered entries", vec![
            "UPDATE access_log_leaves SET idx = 1000000 WHERE idx = 2".into(),
            "UPDATE access_log_leaves SET idx = 2 WHERE idx = 6".into(),
            "UPDATE access_log_leaves SET idx = 6 WHERE idx = 1000000".into(),
        ], 2),
        // A leaf moved far out: the check stops at the gap instead of
        // walking a billion empty positions.
        ("leaf moved far out", vec!["UPDATE access_log_leaves SET idx = 1000000000 WHERE idx = 7".into()], 7),
        ("forged checkpoint", vec!["UPDATE access_log_checkpoints SET note = REPLACE(note, '— ', '— x') WHERE size = (SELECT MIN(size) FROM access_log_checkpoints)".into()], 0),
    ];
    for (name, sql, expected) in cases {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let (alice, _) = enrolled_patient(&app, "MRN-TAMPER").await;
        let staff = app.staff("hospital-a");
        for _ in 0..8 {
            app.get(
                &format!("/v1/patients/{alice}/consents/cancer"),
                Some(&staff),
            )
            .await;
            // Several integrations, so several checkpoints.
            app.wait_integrated().await;
        }
        let intact = verify(&app);
        assert_eq!(
            intact.first_bad_index, None,
            "{name}: {:?}",
            intact.findings
        );
        assert_eq!(intact.size, 9);
        assert!(intact.checkpoints_checked >= 2);
        // The database itself refuses changes to the log.
        let mut conn = app.raw_db();
        genomegate::db_run!(&mut conn, c => {
            assert!(diesel::sql_query("UPDATE access_log_entries SET actor_org = 'x'").execute(c).is_err());
            assert!(diesel::sql_query("DELETE FROM access_log_nodes").execute(c).is_err());
        });
        let statements: Vec<String> = sql
            .iter()
            .map(|s| match backend {
                Backend::Postgres => s.replace("AS BLOB", "AS BYTEA"),
                Backend::Sqlite => s.clone(),
            })
            .collect();
        tamper(
            &app,
            &statements.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let report = verify(&app);
        if name == "forged checkpoint" {
            assert!(
                report.findings[0].problem.contains("not signed"),
                "{name}: {:?}",
                report.findings
            );
            assert!(report.first_bad_index.is_some_and(|i| i < 9), "{name}");
        } else {
            assert_eq!(
                report.first_bad_index,
                Some(expected),
                "{name}: {:?}",
                report.findings
            );
        }
    }
}

/// A hospital prints the code as a QR code: the answer carries the SVG
/// only when asked, it draws exactly the payload (decoded back by an
/// independent reader in `enrollment_qr`'s unit tests), the payload opens
/// the configured portal link with the code in its fragment, and the code
/// read from it enrolls the patient. A malformed request writes nothing.
async fn enrollment_codes_print_as_qr_codes(backend: Backend) {
    const LINK: &str = "https://portal.example.jp/enroll";
    let options = Options {
        env: vec![("GENOMEGATE__PATIENTS__ENROLLMENT_LINK", LINK.into())],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let staff = app.staff("hospital-a");
    let register = |local: &'static str, query: &'static str| {
        let body = grant_body(local, &version, all_permit());
        let staff = staff.clone();
        let app = &app;
        async move {
            app.post(
                &format!("/v1/consents{query}"),
                &staff,
                Some(&format!("qr-{local}")),
                &body,
            )
            .await
        }
    };
    let drawn_for = |issued: &Value| {
        let code = issued["code"].as_str().unwrap();
        let payload = issued["qr_payload"].as_str().unwrap();
        assert_eq!(payload, format!("{LINK}#code={code}"));
        payload.to_owned()
    };

    // Without `?qr=svg` the payload is there for hospitals that draw their
    // own, but no SVG.
    let (s, plain) = register("MRN-QR-1", "").await;
    assert_eq!(s, 201, "{plain}");
    drawn_for(&plain["enrollment_code"]);
    assert!(plain["enrollment_code"].get("qr_svg").is_none(), "{plain}");

    // With it, the SVG is the QR code of exactly that payload.
    let (s, printed) = register("MRN-QR-2", "?qr=svg").await;
    assert_eq!(s, 201, "{printed}");
    let issued = &printed["enrollment_code"];
    let payload = drawn_for(issued);
    assert_eq!(
        issued["qr_svg"].as_str().unwrap(),
        genomegate::app::enrollment_qr::svg(&payload).unwrap()
    );

    // A new code for a lost letter, printed too.
    let patient = printed["patient_ref"].as_str().unwrap();
    let (s, reissued) = app
        .post(
            &format!("/v1/patients/{patient}/enrollment-codes?qr=svg"),
            &staff,
            None,
            &json!({}),
        )
        .await;
    assert_eq!(s, 201, "{reissued}");
    let payload = drawn_for(&reissued);
    assert_eq!(
        reissued["qr_svg"].as_str().unwrap(),
        genomegate::app::enrollment_qr::svg(&payload).unwrap()
    );

    // An unknown format is refused, and nothing is written.
    let codes = app.count("enrollment_codes");
    let events = app.count("consent_events");
    let entries = app.count("access_log_entries");
    let (s, refused) = register("MRN-QR-3", "?qr=png").await;
    assert_problem(s, &refused, 422, "validation_failed");
    let (s, refused) = app
        .post(
            &format!("/v1/patients/{patient}/enrollment-codes?qr=png"),
            &staff,
            None,
            &json!({}),
        )
        .await;
    assert_problem(s, &refused, 422, "validation_failed");
    assert_eq!(
        (
            app.count("enrollment_codes"),
            app.count("consent_events"),
            app.count("access_log_entries")
        ),
        (codes, events, entries)
    );

    // The patient's phone reads the code out of the link's fragment.
    let scanned = payload.split_once("#code=").unwrap().1;
    let session = enroll(&app, scanned).await;
    assert!(session["access_token"].as_str().is_some());
}

async fn enrollment_codes_are_single_use_and_rate_limited(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (alice, code) = enrolled_patient(&app, "MRN-CODE").await;
    // Codes are stored only as keyed hashes.
    assert_eq!(app.count("enrollment_codes"), 1);
    let mut conn = app.raw_db();
    #[derive(diesel::QueryableByName)]
    struct Hash {
        #[diesel(sql_type = diesel::sql_types::Text)]
        code_hash: String,
    }
    let stored: Vec<Hash> = genomegate::db_run!(&mut conn, c => diesel::sql_query("SELECT code_hash FROM enrollment_codes").load(c).unwrap());
    assert!(!stored[0].code_hash.contains(&code.replace('-', "")));

    // Lower case and spaces are accepted; the code then works once only.
    let session = enroll(&app, &code.to_lowercase().replace('-', " ")).await;
    let (s, again) = read(
        app.plain_client
            .post(app.url("/v1/portal/enroll"))
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, again["code"].as_str()),
        (400, Some("enrollment_code_invalid"))
    );
    // Sign in again with the account secret; a wrong secret is refused.
    let sign_in = |secret: String| {
        let body = json!({ "account_id": session["account_id"], "account_secret": secret });
        let req = app
            .plain_client
            .post(app.url("/v1/portal/token"))
            .json(&body);
        async move { read(req.send().await.unwrap()).await }
    };
    let (s, fresh) = sign_in(session["account_secret"].as_str().unwrap().to_owned()).await;
    assert_eq!(s, 200, "{fresh}");
    let (s, consents) = app
        .get(
            "/v1/portal/consents",
            Some(fresh["access_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(s, 200, "{consents}");
    let (s, wrong) = sign_in("gps_wrong".into()).await;
    assert_eq!(
        (s, wrong["code"].as_str()),
        (401, Some("invalid_credentials"))
    );

    // A new code for a lost printout; an expired one does not work.
    let staff = app.staff("hospital-a");
    let (s, issued) = app
        .post(
            &format!("/v1/patients/{alice}/enrollment-codes"),
            &staff,
            None,
            &json!({}),
        )
        .await;
    assert_eq!(s, 201, "{issued}");
    let (s, _) = app
        .post(
            &format!("/v1/patients/{alice}/enrollment-codes"),
            &app.staff("hospital-b"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(s, 404, "another hospital cannot tell the patient exists");
    tamper(
        &app,
        &["UPDATE enrollment_codes SET expires_at = '2000-01-01 00:00:00'"],
    );
    let (s, _) = read(
        app.plain_client
            .post(app.url("/v1/portal/enroll"))
            .json(&json!({ "code": issued["code"] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "expired");

    // Guessing is rate-limited per client address.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let (s, _) = read(
            app.plain_client
                .post(app.url("/v1/portal/enroll"))
                .json(&json!({ "code": format!("AAAA-AAAA-AAAA-AAAA-{i:04}") }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        statuses.push(s);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

/// Several instances on one PostgreSQL database append and integrate
/// concurrently, while a release-sized batch goes in: one tree, dense
/// indices, no duplicates, and it verifies.
#[actix_web::test]
async fn concurrent_appends_from_several_instances_form_one_tree() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let (alice, _) = enrolled_patient(&app, "MRN-CONCURRENT").await;
    let others = [app.another_instance(), app.another_instance()];
    let bases: Vec<String> = std::iter::once(app.base.clone())
        .chain(others.iter().map(|i| i.base.clone()))
        .collect();
    let staff = app.staff("hospital-a");
    let path = format!("/v1/patients/{alice}/consents/cancer");
    let requests = (0..150).map(|i| {
        let url = format!("{}{path}", bases[i % bases.len()]);
        let req = app.client.get(url).bearer_auth(&staff);
        async move { req.send().await.unwrap().status().as_u16() }
    });
    // A batch of 300, as a release appends, racing the single appends.
    let bulk: Vec<_> = (0..300)
        .map(|i| {
            staff_read(
                &alice,
                i,
                chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
            )
        })
        .collect();
    let mut bulk_conn = app.raw_db();
    let bulk_append = std::thread::spawn(move || {
        genomegate::db::ledger::append_atomically(&mut bulk_conn, &bulk).unwrap();
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    bulk_append.join().unwrap();
    let size = app.wait_integrated().await;
    assert_eq!(size, 451);
    assert_eq!(app.count("access_log_entries"), 451);
    assert_eq!(app.count("notification_outbox"), 0);
    #[derive(diesel::QueryableByName)]
    struct Shape {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        min: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        max: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seqs: i64,
    }
    let mut conn = app.raw_db();
    let shape: Vec<Shape> = genomegate::db_run!(&mut conn, c => diesel::sql_query(
        "SELECT MIN(idx) AS min, MAX(idx) AS max, COUNT(DISTINCT seq) AS seqs FROM access_log_leaves"
    ).load(c).unwrap());
    assert_eq!((shape[0].min, shape[0].max, shape[0].seqs), (0, 450, 451));
    let report = verify(&app);
    assert_eq!(report.first_bad_index, None, "{:?}", report.findings);
}

/// Appends an entry the way a faulty or bypassing component would: straight
/// into the log, with no policy check in front.
fn append_directly(app: &TestApp, entry: genomegate::ledger::entry::LogEntry) {
    let mut conn = app.raw_db();
    genomegate::db::ledger::append(&mut conn, &[entry]).unwrap();
}

async fn screening_flags_missing_bases_and_unusual_volume(backend: Backend) {
    use genomegate::ledger::entry::{DataScope, LegalBasis, LogAction, Purpose};
    let options = Options {
        env: vec![
            ("GENOMEGATE__SCREENING__PERIOD_SECONDS", "2".into()),
            ("GENOMEGATE__SCREENING__VOLUME_FACTOR", "3".into()),
            ("GENOMEGATE__SCREENING__VOLUME_FLOOR", "5".into()),
        ],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (alice, _) = enrolled_patient(&app, "MRN-SCREEN").await;
    let read_as = |user: &'static str| {
        let app = &app;
        let alice = alice.clone();
        async move {
            let token = token_for(&["hospital_staff"], "hospital-a", user);
            let (s, _) = app
                .get(
                    &format!("/v1/patients/{alice}/consents/cancer"),
                    Some(&token),
                )
                .await;
            assert_eq!(s, 200);
        }
    };
    for user in ["nurse-1", "nurse-2", "nurse-3"] {
        read_as(user).await;
        read_as(user).await;
    }
    for _ in 0..20 {
        read_as("bulk-reader").await;
    }
    let forged = |org: &str, basis: LegalBasis, action: LogAction, purpose: Purpose| {
        genomegate::app::entries::entry_by(
            org,
            "hospital_staff",
            "intruder",
            &alice,
            genomegate::app::entries::Access {
                action,
                purpose,
                basis,
                scope: DataScope::PatientSummary,
            },
            chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
        )
    };
    // A time finer than the databases keep would not survive storage.
    let mut too_fine = forged(
        "hospital-a",
        LegalBasis::Oversight,
        LogAction::ConsentRead,
        Purpose::ConsentManagement,
    );
    too_fine.at += chrono::Duration::nanoseconds(1);
    assert!(genomegate::db::ledger::append(&mut app.raw_db(), &[too_fine]).is_err());
    // Another hospital reading Alice's record as if it treated her.
    append_directly(
        &app,
        forged(
            "hospital-b",
            LegalBasis::TreatingHospital {
                hospital: "hospital-b".into(),
            },
            LogAction::ConsentRead,
            Purpose::ConsentManagement,
        ),
    );
    // A release citing an agreement nobody granted.
    append_directly(
        &app,
        forged(
            "pharma-x",
            LegalBasis::Agreement {
                id: "dua-never-granted".into(),
            },
            LogAction::DatasetRelease,
            Purpose::Research { duo: "HMB".into() },
        ),
    );
    let total = app.count("access_log_entries");
    let until = chrono::Utc::now() + chrono::Duration::seconds(1);

    let auditor = app.token(&["auditor"], "oversight");
    let window = format!(
        "/v1/audit/screening?from={}&to={}",
        started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
    .replace('+', "%2B");
    let (s, report) = app.get(&window, Some(&auditor)).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["entries_screened"].as_i64(), Some(total));
    assert_eq!(report["counts"]["no_valid_legal_basis"], 2, "{report}");
    let reasons: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["not_the_patients_hospital", "unknown_agreement"]);
    assert!(
        !report.to_string().contains(&alice),
        "findings name entries, not patients"
    );
    let unusual: Vec<&str> = report["unusual_volume"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap())
        .collect();
    assert_eq!(unusual, ["bulk-reader"], "{report}");

    // Only auditors screen; bad windows are refused.
    let (s, _) = app.get(&window, Some(&app.staff("hospital-a"))).await;
    assert_eq!(s, 403);
    let (s, body) = app
        .get(
            "/v1/audit/screening?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
            Some(&auditor),
        )
        .await;
    assert_problem(s, &body, 422, "validation_failed");

    // The periodic reports cover every entry once their periods end.
    let mut stored = Value::Null;
    for _ in 0..400 {
        let (s, body) = app
            .get("/v1/audit/screening-reports?limit=100", Some(&auditor))
            .await;
        assert_eq!(s, 200);
        let screened: i64 = body["reports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["entries_screened"].as_i64().unwrap())
            .sum();
        if screened == total {
            stored = body;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let reports = stored["reports"]
        .as_array()
        .expect("periodic reports cover every entry");
    let flagged: i64 = reports.iter().map(|r| r["flagged"].as_i64().unwrap()).sum();
    assert_eq!(flagged, 2);
    assert!(reports
        .windows(2)
        .all(|w| w[0]["period_start"].as_str() > w[1]["period_start"].as_str()));
}

/// A batch larger than one append statement (10,000 entries) goes in
/// parts, serialized on a second thread while the database inserts. It is
/// still all or nothing: a bad entry at the very end writes none of it. A
/// good batch integrates into a tree that verify-log accepts.
async fn a_large_batch_is_appended_in_parts_all_or_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (alice, _) = enrolled_patient(&app, "MRN-BULK").await;
    let before = app.wait_integrated().await;
    let at = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    let entry = |i: usize, at| staff_read(&alice, i, at);
    let mut batch: Vec<_> = (0..25_000).map(|i| entry(i, at)).collect();
    let mut conn = app.raw_db();

    // The last entry's time is finer than the database keeps: refused.
    batch.push(entry(25_000, at + chrono::Duration::nanoseconds(1)));
    assert!(genomegate::db::ledger::append_atomically(&mut conn, &batch).is_err());
    assert_eq!(app.count("access_log_entries"), before);
    assert_eq!(app.count("notification_outbox"), 0);

    batch.pop();
    genomegate::db::ledger::append_atomically(&mut conn, &batch).unwrap();
    let size = app.wait_integrated().await;
    assert_eq!(size, before + 25_000);
    assert_eq!(app.count("access_log_entries"), size);
    let report = verify(&app);
    assert_eq!(report.first_bad_index, None, "{:?}", report.findings);
    assert_eq!(report.size, size as u64);
    // Storage order follows the tree, so the check streams the log rather
    // than holding it (decision 0022).
    assert!(
        report.peak_rows_held < 100,
        "{} rows held back",
        report.peak_rows_held
    );
}

/// A hospital-a staff member's read of `patient`'s consent, as user `bulk-{i}`,
/// appended straight into the log by the tests that write in bulk.
fn staff_read(
    patient: &str,
    i: usize,
    at: chrono::DateTime<chrono::Utc>,
) -> genomegate::ledger::entry::LogEntry {
    genomegate::app::entries::entry_by(
        "hospital-a",
        "hospital_staff",
        &format!("bulk-{i}"),
        patient,
        genomegate::app::entries::Access {
            action: genomegate::ledger::entry::LogAction::ConsentRead,
            purpose: genomegate::ledger::entry::Purpose::ConsentManagement,
            basis: genomegate::ledger::entry::LegalBasis::TreatingHospital {
                hospital: "hospital-a".into(),
            },
            scope: genomegate::ledger::entry::DataScope::PatientSummary,
        },
        at,
    )
}

/// Periods that ended while no instance ran are screened when one runs
/// again: every one of them, oldest first, each exactly once.
async fn screening_catches_up_on_periods_missed_while_down(backend: Backend) {
    use genomegate::ledger::entry::{DataScope, LegalBasis, LogAction, Purpose};
    use genomegate::workers::screening::screen_missed_periods;
    let options = Options {
        // No worker of its own: this test plays the instance coming back.
        env: vec![("GENOMEGATE__SCREENING__ENABLED", "false".into())],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    let minute = 60;
    let entry_at = |seconds_ago: i64| {
        genomegate::app::entries::entry_by(
            "hospital-a",
            "hospital_staff",
            "nurse-1",
            &format!("{:064x}", 7),
            genomegate::app::entries::Access {
                action: LogAction::ConsentRead,
                purpose: Purpose::ConsentManagement,
                basis: LegalBasis::Oversight,
                scope: DataScope::PatientSummary,
            },
            now - chrono::Duration::seconds(seconds_ago),
        )
    };
    // Old enough to lie in complete periods whatever the second now is
    // (the last complete period ends at least a minute of grace ago).
    append_directly(&app, entry_at(4 * minute + 10));
    append_directly(&app, entry_at(3 * minute + 10));
    let mut config = app.config.screening.clone();
    config.period_seconds = minute as u64;
    let mut conn = app.raw_db();

    let stored = screen_missed_periods(&mut conn, now, &config).unwrap();
    let auditor = app.token(&["auditor"], "oversight");
    let (s, body) = app
        .get("/v1/audit/screening-reports?limit=100", Some(&auditor))
        .await;
    assert_eq!(s, 200, "{body}");
    let reports = body["reports"].as_array().unwrap();
    assert_eq!(reports.len(), stored);
    assert!((3..=4).contains(&stored), "{body}");
    let starts: Vec<chrono::DateTime<chrono::Utc>> = reports
        .iter()
        .map(|r| r["period_start"].as_str().unwrap().parse().unwrap())
        .collect();
    // Newest first, one period apart: nothing skipped.
    assert!(starts
        .windows(2)
        .all(|w| w[0] - w[1] == chrono::Duration::seconds(minute)));
    let screened: i64 = reports
        .iter()
        .map(|r| r["entries_screened"].as_i64().unwrap())
        .sum();
    assert_eq!(screened, 2, "{body}");
    // Caught up: a second pass finds nothing left to screen.
    assert_eq!(screen_missed_periods(&mut conn, now, &config).unwrap(), 0);
}

/// With private targets off (the default), a webhook may not point into
/// the deployment's network: refused at registration, and refused again at
/// delivery for an endpoint that got past it (written here straight into
/// the table). Names that resolve to internal addresses are filtered by the
/// dispatcher's resolver (its unit test).
async fn webhooks_cannot_reach_internal_addresses(backend: Backend) {
    let options = Options {
        env: vec![("GENOMEGATE__NOTIFY__ALLOW_PRIVATE_TARGETS", "false".into())],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let (receiver, received, _server) = webhook_receiver().await;
    let port = receiver.rsplit(':').next().unwrap().to_owned();
    let (alice, _) = enrolled_patient(&app, "MRN-SSRF").await;
    app.wait_integrated().await;
    let token = app.patient_token(&alice);
    refused_at_registration(
        &app,
        &token,
        [
            format!("{receiver}/ok"),
            format!("http://localhost:{port}/ok"),
            "https://169.254.169.254/latest/meta-data".to_owned(),
            "https://[::1]/hook".to_owned(),
            "https://10.0.0.7/hook".to_owned(),
            "https://[::ffff:192.168.0.1]/hook".to_owned(),
        ],
    )
    .await;
    let (_, list) = app.get("/v1/portal/webhooks", Some(&token)).await;
    assert_eq!(list["webhooks"], json!([]));

    let ids = [
        ("hook-address", format!("{receiver}/ok")),
        ("hook-name", format!("http://localhost:{port}/ok")),
    ];
    let last_errors = deliveries_past_the_registration_check(&app, &alice, &ids).await;
    assert_eq!(last_errors, ["the target is not a public address"; 2]);
    assert!(
        received.0.lock().unwrap().is_empty(),
        "nothing reached the internal receiver"
    );
}

/// With `notify.webhook_ports` set (its default is 443 alone), a webhook
/// URL naming or implying another port is refused at registration, and an
/// endpoint that got past it is refused again at delivery. Private targets
/// stay allowed here, so the port is the only thing that stops them.
async fn webhooks_use_allowed_ports_only(backend: Backend) {
    let options = Options {
        env: vec![("GENOMEGATE__NOTIFY__WEBHOOK_PORTS", "[443]".into())],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let (receiver, received, _server) = webhook_receiver().await;
    let (alice, _) = enrolled_patient(&app, "MRN-PORTS").await;
    app.wait_integrated().await;
    let token = app.patient_token(&alice);
    refused_at_registration(
        &app,
        &token,
        [
            format!("{receiver}/ok"),
            "https://hooks.example.org:22/hook".to_owned(),
            "http://hooks.example.org/hook".to_owned(),
        ],
    )
    .await;
    for url in [
        "https://hooks.example.org/hook",
        "https://hooks.example.org:443/hook",
    ] {
        let (s, b) = app
            .post("/v1/portal/webhooks", &token, None, &json!({ "url": url }))
            .await;
        assert_eq!(s, 201, "{url}: {b}");
    }
    let ids = [("hook-port", format!("{receiver}/ok"))];
    let last_errors = deliveries_past_the_registration_check(&app, &alice, &ids).await;
    assert_eq!(last_errors, ["the target's port is not allowed"]);
    assert!(received.0.lock().unwrap().is_empty());
}

/// Each URL is refused as a patient's webhook, on its `url`.
async fn refused_at_registration(
    app: &TestApp,
    token: &str,
    urls: impl IntoIterator<Item = String>,
) {
    for url in urls {
        let (s, b) = app
            .post("/v1/portal/webhooks", token, None, &json!({ "url": url }))
            .await;
        assert_problem(s, &b, 422, "validation_failed");
        assert_eq!(b["errors"][0]["field"], "url", "{b}");
    }
}

/// Writes webhook endpoints straight into the table, past registration's
/// checks, touches the patient's record so each gets a delivery, and
/// returns each delivery's last error once all are dead.
async fn deliveries_past_the_registration_check(
    app: &TestApp,
    patient: &str,
    endpoints: &[(&'static str, String)],
) -> Vec<String> {
    let keys = genomegate::pseudonym::keyring::Keyring::load(&app.config.keys.file).unwrap();
    let mut conn = app.raw_db();
    for (id, target) in endpoints {
        let sealed = keys
            .seal_bytes(&genomegate::notify::signing::secret_aad(id), b"secret")
            .unwrap();
        genomegate::db::notify::insert_endpoint(
            &mut conn,
            &genomegate::db::notify::EndpointRow {
                id: (*id).into(),
                kind: "webhook".into(),
                patient_pseudonym: Some(patient.to_owned()),
                hospital_org: None,
                target: target.clone(),
                key_version: i32::try_from(sealed.key_version).ok(),
                nonce: Some(sealed.nonce),
                ciphertext: Some(sealed.ciphertext),
                created_at: chrono::Utc::now().naive_utc(),
                disabled_at: None,
                application_id: None,
                email_kinds: None,
            },
        )
        .unwrap();
    }
    let (s, _) = app
        .get(
            &format!("/v1/patients/{patient}/consents/cancer"),
            Some(&app.staff("hospital-a")),
        )
        .await;
    assert_eq!(s, 200);
    let token = app.patient_token(patient);
    let deliveries = |id: &'static str| portal_deliveries(app, &token, id.to_owned());
    for _ in 0..500 {
        let mut dead = 0;
        for (id, _) in endpoints {
            let d = deliveries(id).await;
            dead += usize::from(d.len() == 1 && d[0]["state"] == "dead");
        }
        if dead == endpoints.len() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let mut last_errors = Vec::new();
    for (id, _) in endpoints {
        let d = deliveries(id).await;
        assert_eq!(d.len(), 1, "{id}: {d:?}");
        assert_eq!(d[0]["state"], "dead", "{id}: {d:?}");
        last_errors.push(d[0]["last_error"].as_str().unwrap().to_owned());
    }
    last_errors
}
