//! Webhooks: where a patient, a hospital's patient app, or an approved
//! use's members hear of what concerns them at once. Every delivery is
//! signed (Standard Webhooks), retried with backoff and dead-lettered after
//! `notify.max_attempts`; the secret is shown once and kept sealed.

use super::gates::{membership, patient_self, principal};
use super::idempotency::{write_once, Answered, Replayable, Retry};
use super::{AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::db::notify::DeliveryState;
use crate::db::notify::{self as store, EndpointOwner, EndpointRow};
use crate::db::DbConnection;
use crate::notify::signing;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whose webhooks a caller manages.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscriber {
    /// The calling patient's own.
    ThePatient,
    /// The patient app of the caller's hospital: it hears about every
    /// patient of the hospital who has not turned it off.
    TheHospital,
    /// The recall notices of an application, for its members.
    Members { application: String },
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub created_at: DateTime<Utc>,
    /// Shown once, at registration: the HMAC-SHA256 key of the
    /// `webhook-signature` header (Standard Webhooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub index: i64,
    /// `pending`, `delivered` or `dead`.
    #[schema(value_type = String)]
    pub state: DeliveryState,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// The endpoint owner the caller acts for, once the caller may.
fn owner(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    subscriber: &Subscriber,
) -> Result<EndpointOwner, AppError> {
    match subscriber {
        Subscriber::ThePatient => {
            let (pseudonym, _) = patient_self(ctx, conn, caller)?;
            Ok(EndpointOwner::Patient(pseudonym))
        }
        Subscriber::TheHospital => {
            let p = principal(caller)?;
            ctx.authorize(
                caller,
                Action::WebhookManageHospital,
                &Resource::Hospital { org: &p.org },
            )?;
            Ok(EndpointOwner::Hospital(p.org.clone()))
        }
        Subscriber::Members { application } => {
            membership(ctx, conn, caller, Action::ApplicationRead, application)?;
            Ok(EndpointOwner::Application(application.clone()))
        }
    }
}

/// The longest webhook URL, in characters.
pub const MAX_URL: usize = 2048;

/// The URL a webhook may have: `https://` (or `http://` where allowed), a
/// public host unless private targets are allowed, an allowed port.
fn check_url(ctx: &Context, url: &str) -> Result<(), AppError> {
    let rules = &ctx.webhooks;
    let ok_scheme = url.starts_with("https://") || (rules.allow_http && url.starts_with("http://"));
    if !ok_scheme
        || url.chars().count() > MAX_URL
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AppError::field("url", "must be an https:// URL"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| AppError::field("url", "is not a URL"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| AppError::field("url", "names no host"))?;
    if !rules.allow_private_targets {
        crate::notify::targets::check_host(host).map_err(|why| AppError::field("url", why))?;
    }
    crate::notify::targets::check_port(parsed.port_or_known_default(), &rules.ports)
        .map_err(|why| AppError::field("url", why))
}

/// Registers a webhook; its secret is in the answer, once.
pub fn register(
    ctx: &Context,
    caller: &Caller,
    subscriber: &Subscriber,
    url: String,
    retry: Option<Retry>,
) -> Result<Answered<WebhookView>, AppError> {
    let replayable = Replayable::of(ctx, principal(caller)?, "webhook", retry)?;
    if let Some(earlier) = Replayable::replay(replayable.as_ref(), ctx)? {
        return Ok(earlier);
    }
    let owner = ctx.read(|conn| owner(ctx, conn, caller, subscriber))?;
    check_url(ctx, &url)?;
    let id = uuid::Uuid::new_v4().to_string();
    let (shown, secret) = signing::new_secret().map_err(AppError::internal)?;
    let sealed = ctx
        .keys
        .seal_bytes(&signing::secret_aad(&id), &secret)
        .map_err(AppError::internal)?;
    let now = ctx.now();
    let row = EndpointRow {
        id: id.clone(),
        kind: "webhook".into(),
        patient_pseudonym: match &owner {
            EndpointOwner::Patient(p) => Some(p.clone()),
            _ => None,
        },
        hospital_org: match &owner {
            EndpointOwner::Hospital(h) => Some(h.clone()),
            _ => None,
        },
        application_id: match owner {
            EndpointOwner::Application(a) => Some(a),
            _ => None,
        },
        target: url.clone(),
        key_version: i32::try_from(sealed.key_version).ok(),
        nonce: Some(sealed.nonce),
        ciphertext: Some(sealed.ciphertext),
        created_at: now.naive_utc(),
        disabled_at: None,
        email_kinds: None,
    };
    let view = WebhookView {
        id,
        url,
        created_at: now,
        secret: Some(shown),
    };
    write_once(ctx, replayable.as_ref(), |conn| {
        store::insert_endpoint(conn, &row)?;
        Ok(view)
    })
}

/// The subscriber's active webhooks.
pub fn list(
    ctx: &Context,
    caller: &Caller,
    subscriber: &Subscriber,
) -> Result<WebhookList, AppError> {
    let rows = ctx.read(|conn| {
        let owner = owner(ctx, conn, caller, subscriber)?;
        Ok(store::endpoints_owned_by(conn, &owner)?)
    })?;
    Ok(WebhookList {
        webhooks: rows
            .into_iter()
            .filter(|r| r.kind == "webhook")
            .map(|r| WebhookView {
                id: r.id,
                url: r.target,
                created_at: crate::db::documents::utc(r.created_at),
                secret: None,
            })
            .collect(),
    })
}

/// Stops one of the subscriber's webhooks; its undelivered notifications
/// are dead-lettered. Anyone else's is not found.
pub fn remove(
    ctx: &Context,
    caller: &Caller,
    subscriber: &Subscriber,
    id: &str,
) -> Result<(), AppError> {
    let now = ctx.now();
    ctx.write(|conn| {
        let owner = owner(ctx, conn, caller, subscriber)?;
        let owned = store::find_endpoint(conn, id)?.is_some_and(|e| owner.owns(&e));
        if !owned || !store::disable_endpoint(conn, id, now.naive_utc())? {
            return Err(AppError::NotFound);
        }
        Ok(())
    })
}

/// The deliveries of one of the subscriber's webhooks, newest first (in
/// `state` only, when given); anyone else's, and one removed, is not found.
pub fn deliveries(
    ctx: &Context,
    caller: &Caller,
    subscriber: &Subscriber,
    id: &str,
    state: Option<DeliveryState>,
) -> Result<DeliveryList, AppError> {
    let rows = ctx.read(|conn| {
        let owner = owner(ctx, conn, caller, subscriber)?;
        let owned = store::find_endpoint(conn, id)?
            .is_some_and(|e| owner.owns(&e) && e.disabled_at.is_none());
        if !owned {
            return Err(AppError::NotFound);
        }
        Ok(store::deliveries_of(
            conn,
            id,
            state.map(DeliveryState::as_str),
            500,
        )?)
    })?;
    let deliveries = rows
        .into_iter()
        .map(|d| {
            Ok(DeliveryView {
                index: d.idx,
                state: DeliveryState::parse(&d.state)
                    .ok_or_else(|| AppError::internal("stored delivery state"))?,
                attempts: d.attempts,
                last_error: d.last_error,
                delivered_at: d.delivered_at.map(crate::db::documents::utc),
            })
        })
        .collect::<Result<_, AppError>>()?;
    Ok(DeliveryList { deliveries })
}
