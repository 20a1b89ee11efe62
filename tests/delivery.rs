//! Delivery of notifications beyond the live stream (issue #4): NATS
//! publication through JetStream, and exactly-once arrival per endpoint
//! when the real dispatcher process is killed mid-batch and restarted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::receipts::{assert_receipt, enrolled_patient};
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_both_backends!(
    notifications_are_published_to_nats,
    a_killed_dispatcher_neither_loses_nor_duplicates,
    claims_given_back_fall_due_before_their_lease_ends,
    metrics_show_what_waits_for_delivery,
    migration_000022_keeps_endpoints_and_their_deliveries,
);

const NATS_ENV: &str = "GENOMEGATE_TEST_NATS_URL";

async fn sleep_ms(ms: u64) {
    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
}

async fn notifications_are_published_to_nats(backend: Backend) {
    let Some(nats_url) = common::service_url(NATS_ENV, "NATS") else {
        return;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let subject = format!("gg-test.{tag}");
    let stream_name = format!("GG_TEST_{tag}");
    let options = Options {
        env: vec![
            ("GENOMEGATE__NOTIFY__NATS_URL", nats_url.clone()),
            ("GENOMEGATE__NOTIFY__NATS_SUBJECT", subject.clone()),
            ("GENOMEGATE__NOTIFY__NATS_STREAM", stream_name.clone()),
        ],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let (alice, _) = enrolled_patient(&app, "MRN-NATS").await;
    assert_eq!(app.staff_reads_consent("hospital-a", &alice).await, 200);
    let logged = app.wait_integrated().await as u64;

    // The stream (created by the service) holds one message per entry.
    let client = async_nats::connect(&nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = None;
    for _ in 0..500 {
        if let Ok(mut s) = js.get_stream(&stream_name).await {
            if s.info().await.unwrap().state.messages >= logged {
                stream = Some(s);
                break;
            }
        }
        sleep_ms(20).await;
    }
    let stream = stream.expect("every entry published within 10 s");
    assert_eq!(stream.cached_info().state.messages, logged);
    let mut seen = BTreeSet::new();
    for seq in 1..=logged {
        let message = stream.get_raw_message(seq).await.unwrap();
        let n: Value = serde_json::from_slice(&message.payload).unwrap();
        let patient = n["entry"]["patient"].as_str().unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("{subject}.{patient}"),
            "one subject per patient pseudonym"
        );
        let msg_id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned());
        assert_eq!(msg_id.as_deref(), n["id"].as_str(), "idempotency key");
        assert_receipt(&app, &n).await;
        seen.insert(n["index"].as_u64().unwrap());
    }
    assert_eq!(seen, (0..logged).collect(), "every entry, once");

    // Re-sending an id inside the duplicate window stores nothing new.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "log-0");
    let ack = js
        .publish_with_headers(format!("{subject}.x"), headers, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate);
    let nats_delivered = || {
        app.count(
            "notification_deliveries d JOIN notification_endpoints e ON e.id = d.endpoint_id \
             WHERE e.kind = 'nats' AND d.state = 'delivered' AND d.attempts = 1",
        ) as u64
    };
    assert_eq!(nats_delivered(), logged);

    // An instance without NATS joins: it neither turns publication off for
    // the others nor takes (and fails) their NATS deliveries.
    let mut without_nats = app.config.clone();
    without_nats.notify.nats_url = None;
    let _other = app.another_instance_with(&without_nats);
    for _ in 0..5 {
        assert_eq!(app.staff_reads_consent("hospital-a", &alice).await, 200);
    }
    let logged = app.wait_integrated().await as u64;
    for _ in 0..500 {
        if nats_delivered() == logged {
            break;
        }
        sleep_ms(20).await;
    }
    assert_eq!(
        nats_delivered(),
        logged,
        "every entry published once, at the first attempt"
    );
    assert_eq!(
        app.count("notification_endpoints WHERE kind = 'nats' AND disabled_at IS NULL"),
        1
    );
    js.delete_stream(&stream_name).await.unwrap();
}

/// A real local receiver that keeps the first copy of each `webhook-id`
/// per path. It answers the first `answered` requests, then holds every
/// later one without answering until released.
#[derive(Clone)]
struct Receiver {
    /// Every request in arrival order: (path, webhook-id).
    arrivals: Arc<Mutex<Vec<(String, String)>>>,
    /// The kept notification per (path, webhook-id).
    kept: Arc<Mutex<BTreeMap<(String, String), Value>>>,
    hold: tokio::sync::watch::Sender<bool>,
}

impl Receiver {
    async fn start(answered: usize) -> (String, Receiver, actix_web::dev::ServerHandle) {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        let (hold, _) = tokio::sync::watch::channel(false);
        let receiver = Receiver {
            arrivals: Arc::default(),
            kept: Arc::default(),
            hold,
        };
        let r = receiver.clone();
        let server = HttpServer::new(move || {
            let r = r.clone();
            App::new().route(
                "/{path}",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let r = r.clone();
                    async move {
                        let path = req.match_info()["path"].to_owned();
                        let id = req
                            .headers()
                            .get("webhook-id")
                            .unwrap()
                            .to_str()
                            .unwrap()
                            .to_owned();
                        let arrived = {
                            let mut arrivals = r.arrivals.lock().unwrap();
                            arrivals.push((path.clone(), id.clone()));
                            arrivals.len()
                        };
                        let n: Value = serde_json::from_slice(&body).unwrap();
                        // Kept on arrival, as a receiver that processes
                        // before answering would.
                        r.kept.lock().unwrap().entry((path, id)).or_insert(n);
                        if arrived > answered {
                            let mut released = r.hold.subscribe();
                            let _ = released.wait_for(|hold| !*hold).await;
                        }
                        HttpResponse::Ok().finish()
                    }
                }),
            )
        })
        .workers(2)
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        receiver.hold.send_replace(true);
        (format!("http://{addr}"), receiver, handle)
    }

    fn arrivals(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

/// Kills the real dispatcher process mid-batch, starts it again, and shows
/// that every notification reached each endpoint, none was lost, and the
/// re-sent copies carry the same idempotency key.
async fn a_killed_dispatcher_neither_loses_nor_duplicates(backend: Backend) {
    const READS: usize = 100;
    // The in-process app serves requests only; the child process delivers.
    let options = Options {
        env: vec![("GENOMEGATE__NOTIFY__DISPATCH", "false".into())],
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    // Answers the first batch (64), holds the second one open.
    let (url, receiver, _server) = Receiver::start(64).await;
    let (alice, _) = enrolled_patient(&app, "MRN-CRASH").await;
    app.wait_integrated().await;
    app.patient_webhook(&alice, &format!("{url}/patient")).await;
    let (s, _) = app
        .post(
            "/v1/hospital-webhooks",
            &app.staff("hospital-a"),
            None,
            &json!({ "url": format!("{url}/hospital") }),
        )
        .await;
    assert_eq!(s, 201);
    let before = app.wait_integrated().await as u64;
    let staff = app.staff("hospital-a");
    for _ in 0..READS {
        let (s, _) = app
            .get(
                &format!("/v1/patients/{alice}/consents/cancer"),
                Some(&staff),
            )
            .await;
        assert_eq!(s, 200);
    }
    let after = app.wait_integrated().await as u64;
    assert_eq!(after - before, READS as u64);
    assert_eq!(app.count("notification_deliveries"), 2 * READS as i64);

    let dispatcher = [
        ("GENOMEGATE__NOTIFY__DISPATCH", "true"),
        ("GENOMEGATE__NOTIFY__LEASE_MS", "1500"),
    ];
    let mut child = app.spawn_binary(&dispatcher);
    for _ in 0..1500 {
        if receiver.arrivals() >= 2 * 64 {
            break;
        }
        sleep_ms(20).await;
    }
    assert!(
        receiver.arrivals() >= 2 * 64,
        "the second batch reached the receiver"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let delivered_at_kill = app.count("notification_deliveries WHERE state = 'delivered'");
    assert!(
        (64..2 * READS as i64).contains(&delivered_at_kill),
        "killed mid-way: {delivered_at_kill} recorded as delivered"
    );

    receiver.hold.send_replace(false);
    let mut child = app.spawn_binary(&dispatcher);
    let mut settled = false;
    for _ in 0..1500 {
        if app.count("notification_deliveries WHERE state = 'delivered'") == 2 * READS as i64 {
            settled = true;
            break;
        }
        sleep_ms(20).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(settled, "every delivery recorded after the restart");

    let kept = receiver.kept.lock().unwrap().clone();
    let arrivals = receiver.arrivals.lock().unwrap().clone();
    let expected: BTreeSet<String> = (before..after).map(|i| format!("log-{i}")).collect();
    for path in ["patient", "hospital"] {
        let ids: BTreeSet<String> = kept
            .keys()
            .filter(|(p, _)| p == path)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(ids, expected, "{path}: every notification arrived");
    }
    for ((_, id), n) in &kept {
        assert_eq!(n["id"].as_str(), Some(id.as_str()));
    }
    assert!(
        arrivals.len() > kept.len(),
        "the held batch was sent again after the restart ({} arrivals, {} kept)",
        arrivals.len(),
        kept.len()
    );
    // A kept copy is still a receipt that verifies (re-sent copies may
    // carry a newer checkpoint, never another key).
    let first = kept.values().next().unwrap();
    assert_receipt(&app, first).await;
}

/// An app without a dispatcher, a patient with one webhook (kept alive by
/// the returned handle), and two staff reads of that patient integrated:
/// two deliveries waiting.
async fn two_reads_awaiting_delivery(
    backend: Backend,
) -> Option<(TestApp, actix_web::dev::ServerHandle)> {
    let options = Options {
        env: vec![("GENOMEGATE__NOTIFY__DISPATCH", "false".into())],
        ..Options::default()
    };
    let app = TestApp::spawn_with(backend, options).await?;
    let (receiver, _received, server) = common::webhooks::webhook_receiver().await;
    let (alice, _) = enrolled_patient(&app, "MRN-WAITING").await;
    app.wait_integrated().await;
    app.patient_webhook(&alice, &format!("{receiver}/ok")).await;
    for _ in 0..2 {
        assert_eq!(app.staff_reads_consent("hospital-a", &alice).await, 200);
    }
    app.wait_integrated().await;
    Some((app, server))
}

/// A dispatcher batch that fails before sending gives its claims back
/// (`release_claims`), so they do not wait out the lease; deliveries
/// already recorded are never re-opened.
async fn claims_given_back_fall_due_before_their_lease_ends(backend: Backend) {
    use genomegate::db::notify::{claim_due, mark_delivered, release_claims};
    let Some((app, _receiver)) = two_reads_awaiting_delivery(backend).await else {
        return;
    };

    let mut conn = app.raw_db();
    let now = chrono::Utc::now().naive_utc();
    let lease_until = now + chrono::Duration::seconds(30);
    let claims = claim_due(&mut conn, now, lease_until, 64, (false, false)).unwrap();
    assert_eq!(claims.len(), 2, "both entries' deliveries are due");
    assert!(
        claim_due(&mut conn, now, lease_until, 64, (false, false))
            .unwrap()
            .is_empty(),
        "claimed deliveries are leased"
    );
    mark_delivered(&mut conn, &claims[0], now).unwrap();
    release_claims(&mut conn, &claims, now).unwrap();
    let again = claim_due(&mut conn, now, lease_until, 64, (false, false)).unwrap();
    assert_eq!(
        again,
        vec![claims[1].clone()],
        "the unsent claim is due at once, unattempted; the delivered one stays delivered"
    );
    assert_eq!(
        app.count("notification_deliveries WHERE state = 'delivered'"),
        1
    );
}

/// The value of an unlabelled metric in a Prometheus text page.
fn metric(page: &str, name: &str) -> i64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{page}"))
}

/// Operators see the notification backlog: entries without a receipt yet,
/// deliveries waiting, and how overdue the oldest is when no dispatcher runs.
async fn metrics_show_what_waits_for_delivery(backend: Backend) {
    use diesel::{ExpressionMethods, RunQueryDsl};
    let Some((app, _receiver)) = two_reads_awaiting_delivery(backend).await else {
        return;
    };
    let scrape = || async {
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let page = scrape().await;
    assert_eq!(
        metric(&page, "genomegate_log_entries_awaiting_integration"),
        0
    );
    assert_eq!(
        metric(&page, "genomegate_notification_deliveries_pending"),
        2
    );
    assert!(
        metric(&page, "genomegate_notification_overdue_seconds") < 60,
        "{page}"
    );
    assert!(metric(&page, "genomegate_notification_dead_lettered_total") >= 0);
    assert!(page.contains("# TYPE genomegate_worker_panics_total counter"));

    // An hour without a dispatcher shows as an hour overdue.
    let mut conn = app.raw_db();
    let backdated = chrono::Utc::now().naive_utc() - chrono::Duration::hours(1);
    diesel::update(genomegate::db::schema::notification_deliveries::table)
        .set(genomegate::db::schema::notification_deliveries::next_attempt_at.eq(backdated))
        .execute(&mut conn)
        .unwrap();
    let overdue = metric(&scrape().await, "genomegate_notification_overdue_seconds");
    assert!((3600..3700).contains(&overdue), "{overdue}");
}

/// Migration 000022 rebuilds the endpoints table on SQLite (a CHECK cannot
/// change in place) and alters it on PostgreSQL: endpoints and their
/// deliveries survive the way down and back up, and email endpoints can be
/// stored afterwards.
async fn migration_000022_keeps_endpoints_and_their_deliveries(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (patient, _) = enrolled_patient(&app, "MRN-M22").await;
    app.patient_webhook(&patient, "http://127.0.0.1:9/hook")
        .await;
    assert_eq!(app.staff_reads_consent("hospital-a", &patient).await, 200);
    app.wait_integrated().await;
    let (endpoints, deliveries) = (
        app.count("notification_endpoints"),
        app.count("notification_deliveries"),
    );
    assert!(endpoints >= 1 && deliveries >= 1);
    let mut conn = app.raw_db();
    revert_through(&mut conn, "000022");
    genomegate::db::run_migrations(&mut conn).unwrap();
    assert_eq!(app.count("notification_endpoints"), endpoints);
    assert_eq!(app.count("notification_deliveries"), deliveries);
    let email =
        "notification_endpoints (id, kind, patient_pseudonym, target, created_at, email_kinds) \
                 VALUES ('email:m22', 'email', NULL, '', CURRENT_TIMESTAMP, 'read')";
    use diesel::RunQueryDsl;
    let insert = diesel::sql_query(format!("INSERT INTO {email}"));
    match &mut conn {
        genomegate::db::DbConnection::Postgresql(c) => insert.execute(c),
        genomegate::db::DbConnection::Sqlite(c) => insert.execute(c),
    }
    .unwrap();
    assert_eq!(app.count("notification_endpoints WHERE kind = 'email'"), 1);
}
