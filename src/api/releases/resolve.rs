//! Handle resolution by genome stores, and the handles' public keys.

use super::page;
use crate::api::extract::Json;
use crate::api::problem::ApiError;
use crate::api::state::AppState;
use crate::app::releases::{self, Resolution};
use crate::auth::Caller;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The dataset handle.
    pub handle: String,
    /// The `next_after` of the previous page.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    pub after: Option<i64>,
    /// Included samples per page, 1-1000; default 1000.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    pub limit: Option<i64>,
}

/// Resolves a dataset handle to data-object references (a genome store or
/// TRE whose organization is the handle's audience). The agreement and
/// every patient's current consent are checked again; samples whose patient
/// withdrew are withheld. Each patient served gets a log entry and a
/// notification. Pages follow the manifest's keyed order.
#[utoipa::path(tag = "data-access", request_body = ResolveRequest,
    responses((status = 200, body = Resolution)))]
#[post("/v1/handles/resolve")]
pub async fn resolve_handle(
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<ResolveRequest>,
) -> Result<web::Json<Resolution>, ApiError> {
    let ResolveRequest {
        handle,
        after,
        limit,
    } = body.into_inner();
    let page = page(after, limit)?;
    let resolution = state
        .run(move |ctx| releases::resolve(ctx, &caller, &handle, page))
        .await?;
    Ok(web::Json(resolution))
}

/// The public keys of dataset handles (EdDSA), for stores that check a
/// handle before presenting it, and of GA4GH Passport visas (ES256), which
/// each visa's `jku` names (JWKS; `kid` tells them apart).
#[utoipa::path(tag = "data-access", security(()), responses((status = 200, description = "JWKS")))]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let mut keys = state.ctx.handles.public_jwks();
    keys.extend(state.ctx.visas.public_jwks());
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .body(serde_json::json!({ "keys": keys }).to_string())
}
