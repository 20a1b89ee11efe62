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
use crate::db::{access, ledger, DbConnection};
use crate::notify::{self, signing, targets};
use crate::pseudonym::vault::Sealed;
use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

const BATCH: i64 = 64;
const IDLE_POLL: Duration = Duration::from_millis(500);

pub(crate) fn spawn(
    ctx: WorkerContext,
    wake: Receiver<()>,
) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("notify-dispatcher", ctx.stop.clone(), move || {
        run(&ctx, &wake)
    })
}

fn run(ctx: &WorkerContext, wake: &Receiver<()>) {
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
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_millis(ctx.config.notify.timeout_ms))
        .redirect(reqwest::redirect::Policy::none());
    if !ctx.config.notify.allow_private_targets {
        builder = builder.dns_resolver(Arc::new(PublicAddressesOnly));
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook dispatcher cannot build its HTTP client");
            return;
        }
    };
    let mailer = match super::email::Mailer::from_config(&ctx.config) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "email cannot be sent; email deliveries wait");
            None
        }
    };
    let mut transports = Transports {
        http: client,
        mailer,
        nats: None,
        allow_private: ctx.config.notify.allow_private_targets,
        ports: ctx.config.notify.webhook_ports.clone(),
    };
    while !ctx.stopped() {
        nap(wake, IDLE_POLL);
        while !ctx.stopped() {
            match runtime.block_on(dispatch_batch(ctx, &mut transports)) {
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
    message: Option<Message>,
}

/// What one delivery sends.
#[derive(Clone)]
struct Message {
    /// The idempotency key (`webhook-id`, `Nats-Msg-Id`).
    id: String,
    body: Vec<u8>,
    /// The patient a receipt is about: the last token of its NATS subject.
    patient: Option<String>,
}

impl Message {
    fn of<T: serde::Serialize>(id: String, value: &T, patient: Option<String>) -> Option<Self> {
        let body = serde_json::to_vec(value).ok()?;
        Some(Message { id, body, patient })
    }
}

fn prepare(
    ctx: &WorkerContext,
    conn: &mut DbConnection,
    claims: Vec<Claim>,
) -> Result<Vec<Prepared>, String> {
    let err = |e: diesel::result::Error| e.to_string();
    let mut ids: Vec<String> = claims.iter().map(|c| c.endpoint_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    // One query for every endpoint of the batch; a removed one stays None.
    let found = store::find_endpoints(conn, &ids).map_err(err)?;
    let mut rows: HashMap<String, Option<EndpointRow>> =
        ids.into_iter().map(|id| (id, None)).collect();
    for row in found {
        rows.insert(row.id.clone(), Some(row));
    }
    // An application's webhook is keyed by recall notice number; every
    // other endpoint by log index.
    let is_recall = |claim: &Claim| {
        rows.get(&claim.endpoint_id)
            .and_then(Option::as_ref)
            .is_some_and(|r| r.application_id.is_some())
    };
    let (recall_claims, log_claims): (Vec<&Claim>, Vec<&Claim>) =
        claims.iter().partition(|c| is_recall(c));
    let receipts = receipts_for(conn, &log_claims)?;
    let recalls = recalls_for(conn, &recall_claims)?;
    let endpoints: HashMap<String, Option<(EndpointRow, Vec<u8>)>> = rows
        .into_iter()
        .map(|(id, row)| {
            let usable = row.and_then(|r| usable_endpoint(ctx, r));
            (id, usable)
        })
        .collect();
    Ok(claims
        .into_iter()
        .map(|claim| {
            let endpoint = endpoints.get(&claim.endpoint_id).cloned().flatten();
            let message = match &endpoint {
                Some((row, _)) if row.application_id.is_some() => recalls.get(&claim.idx),
                _ => receipts.get(&claim.idx),
            };
            Prepared {
                endpoint,
                // Several endpoints may share a message, so each takes a copy.
                message: message.cloned(),
                claim,
            }
        })
        .collect())
}

/// An endpoint with its opened secret, unless it is disabled or its secret
/// does not open.
fn usable_endpoint(ctx: &WorkerContext, r: EndpointRow) -> Option<(EndpointRow, Vec<u8>)> {
    if r.disabled_at.is_some() {
        return None;
    }
    if r.kind == "nats" {
        // A NATS receipt needs no shared secret: the signed checkpoint and
        // the inclusion proof authenticate it.
        return Some((r, Vec::new()));
    }
    let sealed = Sealed {
        key_version: u32::try_from(r.key_version?).ok()?,
        nonce: r.nonce.clone()?,
        ciphertext: r.ciphertext.clone()?,
    };
    let secret = ctx
        .keys
        .open_bytes(&signing::secret_aad(&r.id), &sealed)
        .ok()?;
    Some((r, secret))
}

/// The receipts (entry, inclusion proof, checkpoint) of claimed log
/// indices, by index.
fn receipts_for(
    conn: &mut DbConnection,
    claims: &[&Claim],
) -> Result<HashMap<i64, Message>, String> {
    if claims.is_empty() {
        return Ok(HashMap::new());
    }
    let err = |e: diesel::result::Error| e.to_string();
    let Some(latest) = ledger::latest_checkpoint(conn).map_err(err)? else {
        return Err("deliveries exist but no checkpoint does".into());
    };
    let size = latest.size as u64;
    let mut indices: Vec<u64> = claims.iter().map(|c| c.idx as u64).collect();
    indices.sort_unstable();
    indices.dedup();
    let entries = ledger::entries_at(conn, &indices).map_err(err)?;
    Ok(notify::build(conn, &entries, size, &latest.note)
        .map_err(err)?
        .into_iter()
        .filter_map(|(patient, n)| {
            let message = Message::of(n.id.clone(), &n, Some(patient))?;
            Some((n.index as i64, message))
        })
        .collect())
}

/// The recall notices of claimed application deliveries, by number.
fn recalls_for(
    conn: &mut DbConnection,
    claims: &[&Claim],
) -> Result<HashMap<i64, Message>, String> {
    if claims.is_empty() {
        return Ok(HashMap::new());
    }
    let mut numbers: Vec<i64> = claims.iter().map(|c| c.idx).collect();
    numbers.sort_unstable();
    numbers.dedup();
    Ok(access::recalls_numbered(conn, &numbers)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|(number, row)| {
            let delivery = notify::RecallDelivery::new(number, row);
            Some((number, Message::of(delivery.id.clone(), &delivery, None)?))
        })
        .collect())
}

/// Resolves webhook hosts to their public addresses only. Checking at
/// connection time, not only at registration, also stops a name that is
/// later pointed at an internal address (DNS rebinding).
struct PublicAddressesOnly;

impl reqwest::dns::Resolve for PublicAddressesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| targets::is_public(addr.ip()))
                .collect();
            if public.is_empty() {
                return Err("the host has no public address".into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// How notifications leave: HTTP for webhooks, and a JetStream context
/// once a NATS delivery needs one.
struct Transports {
    http: reqwest::Client,
    /// `notify.smtp_url`; without it email deliveries are left unclaimed.
    mailer: Option<super::email::Mailer>,
    nats: Option<async_nats::jetstream::Context>,
    /// `notify.allow_private_targets`.
    allow_private: bool,
    /// `notify.webhook_ports`.
    ports: Vec<u16>,
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
        (
            ctx.config.notify.nats_url.is_some(),
            transports.mailer.is_some(),
        ),
    )
    .map_err(|e| e.to_string())?;
    if claims.is_empty() {
        return Ok(0);
    }
    let prepared = match prepare(ctx, &mut conn, claims.clone()) {
        Ok(prepared) => prepared,
        Err(error) => {
            // Nothing was sent: give the claims back after a short pause
            // instead of leaving them leased. If even that fails, the lease
            // ends as usual.
            let pause = chrono::Duration::milliseconds(ctx.config.notify.backoff_ms as i64);
            let due_at = (ctx.clock.now() + pause).naive_utc();
            if let Err(e) = store::release_claims(&mut conn, &claims, due_at) {
                tracing::warn!(error = %e, "claims could not be given back; they wait for their lease");
            }
            return Err(error);
        }
    };
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
                    super::count_dead_letter();
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
    let Some(message) = &p.message else {
        return Outcome::Failed("the logged entry or recall notice is unreadable".into());
    };
    match endpoint.kind.as_str() {
        "webhook" => post_webhook(transports, endpoint, secret, message, timestamp).await,
        "nats" => match &transports.nats {
            Some(js) => publish_nats(js, endpoint, message).await,
            None => Outcome::Failed("NATS unavailable".into()),
        },
        "email" => match &transports.mailer {
            Some(mailer) => {
                let kinds = endpoint.email_kinds.as_deref().unwrap_or_default();
                match mailer.send(secret, kinds, &message.id, &message.body).await {
                    Ok(()) => Outcome::Delivered,
                    Err(e) => Outcome::Failed(e),
                }
            }
            None => Outcome::Failed("no SMTP server configured".into()),
        },
        other => Outcome::Failed(format!("no transport for endpoint kind {other}")),
    }
}

/// Publishes to `<subject>.<patient pseudonym>` and waits for JetStream's
/// acknowledgement; a duplicate acknowledgement also counts as delivered.
async fn publish_nats(
    js: &async_nats::jetstream::Context,
    endpoint: &EndpointRow,
    message: &Message,
) -> Outcome {
    let Some(patient) = &message.patient else {
        return Outcome::Failed("only receipts are published to NATS".into());
    };
    let subject = format!("{}.{}", endpoint.target, patient);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", message.id.as_str());
    let ack = match js
        .publish_with_headers(subject, headers, message.body.clone().into())
        .await
    {
        Ok(pending) => pending.await,
        Err(e) => return Outcome::Failed(format!("publish: {}", e.kind())),
    };
    match ack {
        Ok(_) => Outcome::Delivered,
        Err(e) => Outcome::Failed(format!("acknowledgement: {}", e.kind())),
    }
}

async fn post_webhook(
    transports: &Transports,
    endpoint: &EndpointRow,
    secret: &[u8],
    message: &Message,
    timestamp: i64,
) -> Outcome {
    // Checked again here: the endpoint may predate a narrower configuration.
    let Ok(url) = reqwest::Url::parse(&endpoint.target) else {
        return Outcome::Failed("the target is not a URL".into());
    };
    // A host written as an address never reaches the resolver.
    if !transports.allow_private
        && url
            .host_str()
            .is_none_or(|h| targets::check_host(h).is_err())
    {
        return Outcome::Failed("the target is not a public address".into());
    }
    if targets::check_port(url.port_or_known_default(), &transports.ports).is_err() {
        return Outcome::Failed("the target's port is not allowed".into());
    }
    let signature = signing::sign(secret, &message.id, timestamp, &message.body);
    let response = transports
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &message.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(message.body.clone())
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
    use super::{backoff, PublicAddressesOnly};
    use reqwest::dns::Resolve;
    use std::str::FromStr;
    use std::time::Duration;

    #[test]
    fn names_that_resolve_only_inside_are_not_connected_to() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let resolved = runtime.block_on(PublicAddressesOnly.resolve(name));
        let Err(error) = resolved else {
            panic!("localhost resolved to a public address");
        };
        assert_eq!(error.to_string(), "the host has no public address");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1000, 60_000, 1), Duration::from_millis(1000));
        assert_eq!(backoff(1000, 60_000, 2), Duration::from_millis(2000));
        assert_eq!(backoff(1000, 60_000, 4), Duration::from_millis(8000));
        assert_eq!(backoff(1000, 60_000, 10), Duration::from_millis(60_000));
        assert_eq!(backoff(1000, 60_000, 99), Duration::from_millis(60_000));
    }
}
