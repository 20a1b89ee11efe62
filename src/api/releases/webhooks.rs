//! The members' webhooks for an application's recall notices.

use super::ApplicationPath;
use crate::api::extract::Json;
use crate::api::extract::OptionalIdempotencyKey;
use crate::api::problem::ApiError;
use crate::api::state::AppState;
use crate::api::webhooks::{self, DeliveryQuery, WebhookRequest};
use crate::app::webhooks::{DeliveryList, Subscriber, WebhookList, WebhookView};
use crate::auth::Caller;
use actix_web::{delete, get, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

fn members(application: String) -> Subscriber {
    Subscriber::Members { application }
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationWebhookPath {
    /// The application.
    pub id: String,
    /// The webhook.
    pub webhook: String,
}

/// Registers a webhook for the application's recall notices (members).
/// Each notice written from now on is POSTed to it at once, signed like
/// every GenomeGate webhook (HMAC-SHA256 over id, timestamp and body),
/// retried with backoff and dead-lettered after `notify.max_attempts`.
#[utoipa::path(tag = "data-access", params(ApplicationPath), request_body = WebhookRequest,
    responses((status = 201, body = WebhookView)))]
#[post("/v1/applications/{id}/webhooks")]
pub async fn add_recall_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<ApplicationPath>,
    body: Json<WebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let subscriber = members(path.into_inner().id);
    webhooks::register(&state, caller, subscriber, (body.into_inner(), idempotency)).await
}

/// The application's active recall webhooks (members).
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = WebhookList)))]
#[get("/v1/applications/{id}/webhooks")]
pub async fn recall_webhooks(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<WebhookList>, ApiError> {
    webhooks::list(&state, caller, members(path.into_inner().id)).await
}

/// Stops one of the application's recall webhooks (members). Its
/// undelivered notices are dead-lettered; `GET /recalls` still lists them.
#[utoipa::path(tag = "data-access", params(ApplicationWebhookPath),
    responses((status = 204)))]
#[delete("/v1/applications/{id}/webhooks/{webhook}")]
pub async fn remove_recall_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationWebhookPath>,
) -> Result<HttpResponse, ApiError> {
    let ApplicationWebhookPath { id, webhook } = path.into_inner();
    webhooks::remove(&state, caller, members(id), webhook).await
}

/// Delivery state of one of the application's recall webhooks (members),
/// newest first. `index` is the notice's number, as in its `recall-<number>`
/// idempotency key.
#[utoipa::path(tag = "data-access", params(ApplicationWebhookPath, DeliveryQuery),
    responses((status = 200, body = DeliveryList)))]
#[get("/v1/applications/{id}/webhooks/{webhook}/deliveries")]
pub async fn recall_webhook_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationWebhookPath>,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    let ApplicationWebhookPath { id, webhook } = path.into_inner();
    webhooks::deliveries(&state, caller, members(id), webhook, &query).await
}
