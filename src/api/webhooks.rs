//! Webhooks of every subscriber (a patient, a hospital's patient app, an
//! approved use's members): the request types they share, what each of
//! their handlers does, and the hospital's own routes. The patient's are in
//! `portal.rs`, the members' in `releases/webhooks.rs`.

use super::problem::ApiError;
use super::state::AppState;
use crate::api::extract::Json;
use crate::api::extract::OptionalIdempotencyKey;
use crate::api::replay::answered;
use crate::app::gates::principal;
use crate::app::webhooks::{self, DeliveryList, Subscriber, WebhookList, WebhookView};
use crate::app::AppError;
use crate::auth::Caller;
use crate::db::notify::DeliveryState;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(add_hospital_webhook)
        .service(hospital_webhook_deliveries);
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `https://` URL that receives signed notifications: a public host,
    /// on a port the deployment allows (`notify.webhook_ports`, by default
    /// 443 only).
    pub url: String,
}

#[derive(Deserialize, IntoParams)]
pub struct WebhookPath {
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead` (the dead-letter queue).
    pub state: Option<String>,
}

impl DeliveryQuery {
    fn state(&self) -> Result<Option<DeliveryState>, AppError> {
        self.state
            .as_deref()
            .map(|s| {
                DeliveryState::parse(s)
                    .ok_or_else(|| AppError::field("state", "must be pending, delivered or dead"))
            })
            .transpose()
    }
}

/// Registers a webhook for `subscriber` (201, with its secret, once).
pub(crate) async fn register(
    state: &AppState,
    caller: Caller,
    subscriber: Subscriber,
    (body, idempotency): (WebhookRequest, OptionalIdempotencyKey),
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let retry = idempotency.retry(&(&subscriber, &body))?;
    let view = state
        .run(move |ctx| webhooks::register(ctx, &caller, &subscriber, body.url, retry))
        .await?;
    Ok(answered(view, StatusCode::CREATED))
}

/// The subscriber's active webhooks.
pub(crate) async fn list(
    state: &AppState,
    caller: Caller,
    subscriber: Subscriber,
) -> Result<web::Json<WebhookList>, ApiError> {
    principal(&caller)?;
    let list = state
        .run(move |ctx| webhooks::list(ctx, &caller, &subscriber))
        .await?;
    Ok(web::Json(list))
}

/// Stops one of the subscriber's webhooks (204).
pub(crate) async fn remove(
    state: &AppState,
    caller: Caller,
    subscriber: Subscriber,
    id: String,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    state
        .run(move |ctx| webhooks::remove(ctx, &caller, &subscriber, &id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The deliveries of one of the subscriber's webhooks, newest first.
pub(crate) async fn deliveries(
    state: &AppState,
    caller: Caller,
    subscriber: Subscriber,
    id: String,
    query: &DeliveryQuery,
) -> Result<web::Json<DeliveryList>, ApiError> {
    principal(&caller)?;
    let wanted = query.state()?;
    let list = state
        .run(move |ctx| webhooks::deliveries(ctx, &caller, &subscriber, &id, wanted))
        .await?;
    Ok(web::Json(list))
}

/// Registers a webhook of the caller's hospital's patient app: it hears
/// about every patient of the hospital who has not turned it off.
#[utoipa::path(tag = "patients", request_body = WebhookRequest,
    responses((status = 201, body = WebhookView)))]
#[post("/v1/hospital-webhooks")]
pub async fn add_hospital_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: Json<WebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let sent = (body.into_inner(), idempotency);
    register(&state, caller, Subscriber::TheHospital, sent).await
}

/// Delivery state of one of the caller's hospital's webhooks.
#[utoipa::path(tag = "patients", params(WebhookPath, DeliveryQuery),
    responses((status = 200, body = DeliveryList)))]
#[get("/v1/hospital-webhooks/{id}/deliveries")]
pub async fn hospital_webhook_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<WebhookPath>,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    deliveries(
        &state,
        caller,
        Subscriber::TheHospital,
        path.into_inner().id,
        &query,
    )
    .await
}
