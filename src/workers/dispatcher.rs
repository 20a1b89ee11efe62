//! Notification delivery: claims due deliveries with a lease, sends each
//! notification (a signed webhook POST, or a JetStream publication), and
//! records the outcome: delivered, retried with exponential backoff, or
//! dead-lettered after `notify.max_attempts`.
//!
//! Delivery is at least once; the idempotency key (the entry's notification
//! id, sent as `webhook-id` or `Nats-Msg-Id`) lets a receiver keep exactly
//! one copy, and JetStream drops the copy itself within its duplicate
//! window. A crash between sending and recording re-sends the same id after
//! the lease runs out.

use super::{nap, spawn_named, WorkerContext};
use crate::db::notify::{self as store, Claim, EndpointRow};
use crate::db::{ledger, DbConnection};
use crate::notify::{self, signing, Notification};
use crate::pseudonym::vault::Sealed;
use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::time::Duration;

const BATCH: i64 = 64;
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The associated data binding a webhook secret to its endpoint row.
pub fn secret_aad(endpoint_id: &str) -> Vec<u8> {
    format!("genomegate/webhook/v1\0{endpoint_id}").into_bytes()
}

pub(crate) fn spawn(
    ctx: WorkerContext,
    wake: Receiver<()>,
) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("notify-dispatcher", move || run(ctx, wake))
}

fn run(ctx: WorkerContext, wake: Receiver<()>) {
    // One worker thread keeps a NATS connection answering pings while this
    // thread sleeps between batches.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("notify-io")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "webhook dispatcher cannot start");
            return;
        }
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(ctx.config.notify.timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook dispatcher cannot build its HTTP client");
            return;
        }
    };
    let mut transports = Transports {
        http: client,
        nats: None,
    };
    while !ctx.stopped() {
        nap(&wake, IDLE_POLL);
        while !ctx.stopped() {
            match runtime.block_on(dispatch_batch(&ctx, &mut transports)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "webhook dispatch failed");
                    break;
                }
            }
        }
    }
}

/// The delay before retry number `attempts` (1-based), capped.
pub fn backoff(base_ms: u64, max_ms: u64, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    Duration::from_millis(base_ms.saturating_mul(1u64 << exp).min(max_ms))
}

enum Outcome {
    Delivered,
    Failed(String),
}

struct Prepared {
    claim: Claim,
    endpoint: Option<(EndpointRow, Vec<u8>)>,
    notification: Option<Notification>,
}

fn prepare(
    ctx: &WorkerContext,
    conn: &mut DbConnection,
    claims: Vec<Claim>,
) -> Result<Vec<Prepared>, String> {
    let err = |e: diesel::result::Error| e.to_string();
    let Some(latest) = ledger::latest_checkpoint(conn).map_err(err)? else {
        return Err("deliveries exist but no checkpoint does".into());
    };
    let size = latest.size as u64;
    let mut indices: Vec<u64> = claims.iter().map(|c| c.idx as u64).collect();
    indices.sort_unstable();
    indices.dedup();
    let entries = ledger::entries_at(conn, &indices).map_err(err)?;
    let built: HashMap<u64, Notification> = notify::build(conn, &entries, size, &latest.note)
        .map_err(err)?
        .into_iter()
        .map(|(_, n)| (n.index, n))
        .collect();
    let mut endpoints: HashMap<String, Option<(EndpointRow, Vec<u8>)>> = HashMap::new();
    let mut out = Vec::with_capacity(claims.len());
    for claim in claims {
        if !endpoints.contains_key(&claim.endpoint_id) {
            let row = store::find_endpoint(conn, &claim.endpoint_id).map_err(err)?;
            let usable = row.filter(|r| r.disabled_at.is_none()).and_then(|r| {
                if r.kind == "nats" {
                    // A NATS receipt needs no shared secret: the signed
                    // checkpoint and the inclusion proof authenticate it.
                    return Some((r, Vec::new()));
                }
                let sealed = Sealed {
                    key_version: u32::try_from(r.key_version?).ok()?,
                    nonce: r.nonce.clone()?,
                    ciphertext: r.ciphertext.clone()?,
                };
                let secret = ctx.keys.open_bytes(&secret_aad(&r.id), &sealed).ok()?;
                Some((r, secret))
            });
            endpoints.insert(claim.endpoint_id.clone(), usable);
        }
        out.push(Prepared {
            endpoint: endpoints.get(&claim.endpoint_id).cloned().flatten(),
            // Several endpoints may share an entry, so each takes a copy.
            notification: built.get(&(claim.idx as u64)).cloned(),
            claim,
        });
    }
    Ok(out)
}

/// How notifications leave: HTTP for webhooks, and a JetStream context
/// once a NATS delivery needs one.
struct Transports {
    http: reqwest::Client,
    nats: Option<async_nats::jetstream::Context>,
}

impl Transports {
    /// Connects to NATS (and makes sure the stream exists) if a claimed
    /// delivery needs it and no connection is up yet.
    async fn ensure_nats(&mut self, ctx: &WorkerContext, prepared: &[Prepared]) {
        let needed = prepared
            .iter()
            .any(|p| p.endpoint.as_ref().is_some_and(|(e, _)| e.kind == "nats"));
        if !needed || self.nats.is_some() {
            return;
        }
        let Some(url) = ctx.config.notify.nats_url.as_deref() else {
            return;
        };
        match connect_nats(url, &ctx.config.notify).await {
            Ok(js) => self.nats = Some(js),
            Err(e) => tracing::warn!(error = %e, "NATS is unavailable; deliveries will be retried"),
        }
    }
}

async fn connect_nats(
    url: &str,
    config: &crate::config::NotifyConfig,
) -> Result<async_nats::jetstream::Context, String> {
    let timeout = Duration::from_millis(config.timeout_ms);
    let client = async_nats::ConnectOptions::new()
        .name("genomegate-notify")
        .connection_timeout(timeout)
        .connect(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(timeout);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: config.nats_stream.clone(),
        subjects: vec![format!("{}.>", config.nats_subject)],
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {}: {e}", config.nats_stream))?;
    Ok(js)
}

async fn dispatch_batch(ctx: &WorkerContext, transports: &mut Transports) -> Result<usize, String> {
    let now = ctx.clock.now();
    let lease = chrono::Duration::milliseconds(ctx.config.notify.lease_ms as i64);
    let mut conn = ctx.pool.get().map_err(|e| e.to_string())?;
    let claims = store::claim_due(
        &mut conn,
        now.naive_utc(),
        (now + lease).naive_utc(),
        BATCH,
        ctx.config.notify.nats_url.is_some(),
    )
    .map_err(|e| e.to_string())?;
    if claims.is_empty() {
        return Ok(0);
    }
    let prepared = prepare(ctx, &mut conn, claims)?;
    drop(conn);
    transports.ensure_nats(ctx, &prepared).await;
    let sends = prepared
        .iter()
        .map(|p| send(transports, p, ctx.clock.now().timestamp()));
    let outcomes = futures_util::future::join_all(sends).await;
    let mut conn = ctx.pool.get().map_err(|e| e.to_string())?;
    let notify_cfg = &ctx.config.notify;
    let count = prepared.len();
    for (p, outcome) in prepared.iter().zip(outcomes) {
        let recorded = match outcome {
            Outcome::Delivered => {
                store::mark_delivered(&mut conn, &p.claim, ctx.clock.now().naive_utc())
            }
            Outcome::Failed(error) => {
                let attempts = p.claim.attempts + 1;
                let retry_at =
                    (attempts < notify_cfg.max_attempts && p.endpoint.is_some()).then(|| {
                        let delay =
                            backoff(notify_cfg.backoff_ms, notify_cfg.backoff_max_ms, attempts);
                        (ctx.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default())
                            .naive_utc()
                    });
                if retry_at.is_none() {
                    tracing::warn!(endpoint = %p.claim.endpoint_id, index = p.claim.idx, attempts, "notification dead-lettered");
                }
                store::mark_failed(&mut conn, &p.claim, &error, retry_at)
            }
        };
        recorded.map_err(|e| e.to_string())?;
    }
    Ok(count)
}

async fn send(transports: &Transports, p: &Prepared, timestamp: i64) -> Outcome {
    let Some((endpoint, secret)) = &p.endpoint else {
        return Outcome::Failed("endpoint disabled, removed or its secret does not open".into());
    };
    let Some(notification) = &p.notification else {
        return Outcome::Failed("the logged entry is unreadable".into());
    };
    let body = match serde_json::to_vec(notification) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    match endpoint.kind.as_str() {
        "webhook" => {
            post_webhook(
                &transports.http,
                endpoint,
                secret,
                notification,
                timestamp,
                body,
            )
            .await
        }
        "nats" => match &transports.nats {
            Some(js) => publish_nats(js, endpoint, notification, body).await,
            None => Outcome::Failed("NATS unavailable".into()),
        },
        other => Outcome::Failed(format!("no transport for endpoint kind {other}")),
    }
}

/// Publishes to `<subject>.<patient pseudonym>` and waits for JetStream's
/// acknowledgement; a duplicate acknowledgement also counts as delivered.
async fn publish_nats(
    js: &async_nats::jetstream::Context,
    endpoint: &EndpointRow,
    notification: &Notification,
    body: Vec<u8>,
) -> Outcome {
    let subject = format!("{}.{}", endpoint.target, notification.entry.patient);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", notification.id.as_str());
    let ack = match js.publish_with_headers(subject, headers, body.into()).await {
        Ok(pending) => pending.await,
        Err(e) => return Outcome::Failed(format!("publish: {}", e.kind())),
    };
    match ack {
        Ok(_) => Outcome::Delivered,
        Err(e) => Outcome::Failed(format!("acknowledgement: {}", e.kind())),
    }
}

async fn post_webhook(
    client: &reqwest::Client,
    endpoint: &EndpointRow,
    secret: &[u8],
    notification: &Notification,
    timestamp: i64,
    body: Vec<u8>,
) -> Outcome {
    let signature = signing::sign(secret, &notification.id, timestamp, &body);
    let response = client
        .post(&endpoint.target)
        .header("content-type", "application/json")
        .header("webhook-id", &notification.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) => Outcome::Failed(format!("HTTP {}", r.status().as_u16())),
        // The error text can carry the URL; keep only its kind.
        Err(e) if e.is_timeout() => Outcome::Failed("timeout".into()),
        Err(e) if e.is_connect() => Outcome::Failed("connection failed".into()),
        Err(_) => Outcome::Failed("request failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1000, 60_000, 1), Duration::from_millis(1000));
        assert_eq!(backoff(1000, 60_000, 2), Duration::from_millis(2000));
        assert_eq!(backoff(1000, 60_000, 4), Duration::from_millis(8000));
        assert_eq!(backoff(1000, 60_000, 10), Duration::from_millis(60_000));
        assert_eq!(backoff(1000, 60_000, 99), Duration::from_millis(60_000));
    }
}
