//! The patient portal's JSON API: enrollment with a one-time code, patient
//! tokens, and what a patient sees: who accessed their data and why, their
//! current consent, a live notification stream, preferences and webhooks.
//! Also the hospital's reissue of an enrollment code.

use super::consents::patient_ref;
use super::extract::{OptionalIdempotencyKey, PeerAddress};
use super::patients::PatientPath;
use super::problem::ApiError;
use super::state::AppState;
use super::webhooks::{self, DeliveryQuery, WebhookPath, WebhookRequest};
use crate::api::extract::Json;
use crate::app::enrollment::{self, IssuedCode, PatientSession, QrWanted};
use crate::app::gates::principal;
use crate::app::portal::{
    self, AccessPage, LogPage, MyConsents, Preferences, LOG_PAGE, MAX_LOG_PAGE,
};
use crate::app::webhooks::{DeliveryList, Subscriber, WebhookList, WebhookView};
use crate::app::AppError;
use crate::auth::Caller;
use crate::ledger::entry::Language;
use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(issue_enrollment_code)
        .service(enroll)
        .service(sign_in)
        .service(my_access_log)
        .service(my_consents)
        .service(my_notifications)
        .service(my_preferences)
        .service(set_my_preferences)
        .service(add_my_webhook)
        .service(my_webhooks)
        .service(remove_my_webhook)
        .service(my_webhook_deliveries);
}

/// Issues a new enrollment code for one of the caller's hospital's patients
/// (a lost printout, or a replayed registration). Earlier codes stay valid
/// until they expire or are used.
#[utoipa::path(tag = "patients", params(PatientPath, QrWanted),
    responses((status = 201, body = IssuedCode)))]
#[post("/v1/patients/{patient_ref}/enrollment-codes")]
pub async fn issue_enrollment_code(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<PatientPath>,
    qr: web::Query<QrWanted>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let patient = patient_ref(&path.patient_ref)?;
    let code = state
        .run(move |ctx| enrollment::reissue(ctx, &caller, &patient))
        .await?;
    Ok(HttpResponse::Created().json(code.with_qr(*qr)?))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub code: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    pub account_id: String,
    pub account_secret: String,
}

/// Binds a portal account with a one-time enrollment code. Anonymous and
/// rate-limited per client address; wrong, expired and used codes get the
/// same answer.
#[utoipa::path(tag = "portal", request_body = EnrollRequest,
    responses((status = 201, body = PatientSession)))]
#[post("/v1/portal/enroll")]
pub async fn enroll(
    state: web::Data<AppState>,
    peer: PeerAddress,
    body: Json<EnrollRequest>,
) -> Result<HttpResponse, ApiError> {
    let session = state
        .run(move |ctx| enrollment::enroll(ctx, &peer.0, &body.code))
        .await?;
    Ok(HttpResponse::Created().json(session))
}

/// Signs a patient in with their account ID and secret: a fresh short-lived
/// token. Rate-limited per client address.
#[utoipa::path(tag = "portal", request_body = SignInRequest,
    responses((status = 200, body = PatientSession)))]
#[post("/v1/portal/token")]
pub async fn sign_in(
    state: web::Data<AppState>,
    peer: PeerAddress,
    body: Json<SignInRequest>,
) -> Result<web::Json<PatientSession>, ApiError> {
    let session = state
        .run(move |ctx| enrollment::sign_in(ctx, &peer.0, &body.account_id, &body.account_secret))
        .await?;
    Ok(web::Json(session))
}

#[derive(Deserialize, IntoParams)]
pub struct LogQuery {
    /// Entries older than this cursor (from `next_before`).
    pub before: Option<i64>,
    /// 1–100, default 20.
    pub limit: Option<i64>,
    /// `ja` or `en`; defaults to the patient's preference.
    pub lang: Option<String>,
}

/// A page size of 1–100, 20 unless asked.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, AppError> {
    match limit.unwrap_or(LOG_PAGE) {
        n @ 1..=MAX_LOG_PAGE => Ok(n),
        _ => Err(AppError::field("limit", "must be 1-100")),
    }
}

fn language(raw: &str, field: &str) -> Result<Language, AppError> {
    Language::parse(raw).ok_or_else(|| AppError::field(field, "must be `ja` or `en`"))
}

/// Who accessed the calling patient's data, newest first: which
/// organization, which person in which role, for what purpose, under which
/// consent or agreement, and when, explained in Japanese or English.
#[utoipa::path(tag = "portal", params(LogQuery),
    responses((status = 200, body = AccessPage)))]
#[get("/v1/portal/access-log")]
pub async fn my_access_log(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<LogQuery>,
) -> Result<web::Json<AccessPage>, ApiError> {
    principal(&caller)?;
    let page = LogPage {
        before: query.before,
        limit: page_limit(query.limit)?,
        lang: query
            .lang
            .as_deref()
            .map(|l| language(l, "lang"))
            .transpose()?,
    };
    let page = state
        .run(move |ctx| portal::access_log(ctx, &caller, page))
        .await?;
    Ok(web::Json(page))
}

/// The calling patient's current consent in each family.
#[utoipa::path(tag = "portal", responses((status = 200, body = MyConsents)))]
#[get("/v1/portal/consents")]
pub async fn my_consents(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<MyConsents>, ApiError> {
    principal(&caller)?;
    let consents = state.run(move |ctx| portal::consents(ctx, &caller)).await?;
    Ok(web::Json(consents))
}

#[derive(Deserialize, IntoParams)]
pub struct StreamStart {
    /// Replay the caller's receipts from this log index on (inclusive) before
    /// going live; `0` replays them all. A `Last-Event-ID` header, which an
    /// SSE client sends when it reconnects, takes precedence.
    pub from: Option<u64>,
}

/// The calling patient's live notification stream (Server-Sent Events).
/// Each `access` event is a receipt: the entry, its inclusion proof and the
/// signed checkpoint. Reconnect with `Last-Event-ID` (the last index seen)
/// to receive what was missed, oldest first; open with `?from=0` to receive
/// every receipt from the start. A stream that has more than
/// `notify.stream_replay_page` receipts to replay gets that many and is
/// closed, so the client's next reconnection continues from the last one:
/// nothing is skipped.
#[utoipa::path(tag = "portal", params(StreamStart),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
#[get("/v1/portal/notifications")]
pub async fn my_notifications(
    state: web::Data<AppState>,
    caller: Caller,
    start: web::Query<StreamStart>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let after_last_seen = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|last| last.saturating_add(1));
    let first = after_last_seen.or(start.from);
    let stream = state
        .run(move |ctx| portal::open_stream(ctx, &caller, first))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(sse_body(stream)))
}

/// The SSE body: an opening comment, the backlog, then live frames with a
/// keep-alive comment every 15 s of silence. Ends when the hub drops the
/// stream (too slow) or the client goes away; without a live part, right
/// after the backlog, with a comment saying more remains.
pub(crate) fn sse_body(
    stream: portal::Stream,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>> {
    use futures_util::StreamExt;
    let portal::Stream { backlog, live } = stream;
    let closing = live
        .is_none()
        .then(|| ": more missed receipts; reconnect with the last id\n\n".to_owned());
    let opening = futures_util::stream::iter(
        std::iter::once(": connected\n\n".to_owned())
            .chain(backlog)
            .chain(closing)
            .map(|f| Ok(web::Bytes::from(f))),
    );
    let live = futures_util::stream::unfold(live, |state| async move {
        let (sub, mut rx): (_, tokio::sync::mpsc::Receiver<Arc<str>>) = state?;
        let frame = match tokio::time::timeout(std::time::Duration::from_secs(15), rx.recv()).await
        {
            Ok(Some(frame)) => web::Bytes::from(frame.as_bytes().to_vec()),
            Ok(None) => return None,
            Err(_) => web::Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(frame), Some((sub, rx))))
    });
    opening.chain(live)
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    /// `ja` or `en`: the language of explanations.
    pub language: String,
    /// Whether the hospital's patient app may also notify you.
    pub hospital_app: bool,
}

impl From<Preferences> for PreferencesBody {
    fn from(p: Preferences) -> Self {
        PreferencesBody {
            language: p.language.as_str().to_owned(),
            hospital_app: p.hospital_app,
        }
    }
}

#[utoipa::path(tag = "portal", responses((status = 200, body = PreferencesBody)))]
#[get("/v1/portal/preferences")]
pub async fn my_preferences(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<PreferencesBody>, ApiError> {
    principal(&caller)?;
    let prefs = state
        .run(move |ctx| portal::preferences(ctx, &caller))
        .await?;
    Ok(web::Json(prefs.into()))
}

#[utoipa::path(tag = "portal", request_body = PreferencesBody,
    responses((status = 200, body = PreferencesBody)))]
#[put("/v1/portal/preferences")]
pub async fn set_my_preferences(
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<PreferencesBody>,
) -> Result<web::Json<PreferencesBody>, ApiError> {
    principal(&caller)?;
    let prefs = Preferences {
        language: language(&body.language, "lang")?,
        hospital_app: body.hospital_app,
    };
    let prefs = state
        .run(move |ctx| portal::set_preferences(ctx, &caller, prefs))
        .await?;
    Ok(web::Json(prefs.into()))
}

#[utoipa::path(tag = "portal", request_body = WebhookRequest,
    responses((status = 201, body = WebhookView)))]
#[post("/v1/portal/webhooks")]
pub async fn add_my_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: Json<WebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let sent = (body.into_inner(), idempotency);
    webhooks::register(&state, caller, Subscriber::ThePatient, sent).await
}

#[utoipa::path(tag = "portal", responses((status = 200, body = WebhookList)))]
#[get("/v1/portal/webhooks")]
pub async fn my_webhooks(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<WebhookList>, ApiError> {
    webhooks::list(&state, caller, Subscriber::ThePatient).await
}

/// Stops a webhook. Its undelivered notifications are dead-lettered.
#[utoipa::path(tag = "portal", params(WebhookPath),
    responses((status = 204)))]
#[delete("/v1/portal/webhooks/{id}")]
pub async fn remove_my_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    webhooks::remove(&state, caller, Subscriber::ThePatient, path.into_inner().id).await
}

/// Delivery state of one of the caller's webhooks, newest first.
#[utoipa::path(tag = "portal", params(WebhookPath, DeliveryQuery),
    responses((status = 200, body = DeliveryList)))]
#[get("/v1/portal/webhooks/{id}/deliveries")]
pub async fn my_webhook_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<WebhookPath>,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    webhooks::deliveries(
        &state,
        caller,
        Subscriber::ThePatient,
        path.into_inner().id,
        &query,
    )
    .await
}
