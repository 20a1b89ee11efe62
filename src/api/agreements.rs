//! Data-use agreements: the versioned texts members accept, acceptances
//! of the current text, and the governance body's sanctions.

use super::problem::ApiError;
use super::state::AppState;
use crate::access::review::AgreementState;
use crate::api::extract::Json;
use crate::api::extract::OptionalIdempotencyKey;
use crate::api::replay::answered;
use crate::app::agreements::{self, AgreementTextView, Sanction};
use crate::app::applications::ApplicationView;
use crate::app::gates::principal;
use crate::app::text::Text;
use crate::app::AppError;
use crate::auth::Caller;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    // `current` before `{version}`: the first registered pattern matches.
    cfg.service(publish_agreement_text)
        .service(current_agreement_text)
        .service(agreement_text)
        .service(accept_agreement)
        .service(sanction_agreement);
}

/// The data-use agreement's text.
pub const AGREEMENT_TEXT: Text = Text::prose(200_000);
/// Why the governance body suspends, revokes or reinstates an agreement.
pub const SANCTION_REASON: Text = Text::line(2000);

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementTextRequest {
    /// The full text members accept.
    pub body: String,
}

/// Publishes the next version of the data-use agreement text (governance).
/// Members of every agreement must accept the new version before their next
/// release.
#[utoipa::path(tag = "data-access", request_body = AgreementTextRequest,
    responses((status = 201, body = AgreementTextView)))]
#[post("/v1/agreement-texts")]
pub async fn publish_agreement_text(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: Json<AgreementTextRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let retry = idempotency.retry(&*body)?;
    let text = body.into_inner().body;
    // The text as published, whitespace and all: members accept its hash.
    AGREEMENT_TEXT.check(&text, "body")?;
    let view = state
        .run(move |ctx| agreements::publish_text(ctx, &caller, text, retry))
        .await?;
    Ok(answered(view, StatusCode::CREATED))
}

/// The agreement text members must accept now.
#[utoipa::path(tag = "data-access", responses((status = 200, body = AgreementTextView)))]
#[get("/v1/agreement-texts/current")]
pub async fn current_agreement_text(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<AgreementTextView>, ApiError> {
    let view = state
        .run(move |ctx| agreements::current_text(ctx, &caller))
        .await?;
    Ok(web::Json(view))
}

#[derive(Deserialize, IntoParams)]
pub struct TextVersionPath {
    /// The text's version, 1, 2, …
    pub version: i32,
}

/// One version of the agreement text, current or not: what a member
/// accepted, and what an `AcceptedTermsAndPolicies` visa names.
#[utoipa::path(tag = "data-access", params(TextVersionPath), responses((status = 200, body = AgreementTextView)))]
#[get("/v1/agreement-texts/{version}")]
pub async fn agreement_text(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<TextVersionPath>,
) -> Result<web::Json<AgreementTextView>, ApiError> {
    let version = path.into_inner().version;
    let view = state
        .run(move |ctx| agreements::text(ctx, &caller, version))
        .await?;
    Ok(web::Json(view))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceRequest {
    /// The SHA-256 of the current agreement text, as shown at
    /// `/v1/agreement-texts/current`.
    pub text_sha256: String,
}

#[derive(Deserialize, IntoParams)]
pub struct AgreementPath {
    pub id: String,
}

/// A member accepts the current agreement text; the hash is recorded.
#[utoipa::path(tag = "data-access", params(AgreementPath), request_body = AcceptanceRequest,
    responses((status = 200, body = ApplicationView)))]
#[post("/v1/agreements/{id}/acceptances")]
pub async fn accept_agreement(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<AgreementPath>,
    body: Json<AcceptanceRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let retry = idempotency.retry(&(&id, &*body))?;
    let hash = body.text_sha256.trim().to_ascii_lowercase();
    let view = state
        .run(move |ctx| agreements::accept(ctx, &caller, &id, &hash, retry))
        .await?;
    Ok(answered(view, StatusCode::OK))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SanctionRequest {
    /// `suspended`, `revoked` (final) or `active` (lifts a suspension).
    pub state: String,
    pub reason: String,
}

impl TryFrom<SanctionRequest> for Sanction {
    type Error = AppError;

    fn try_from(body: SanctionRequest) -> Result<Self, AppError> {
        let state = AgreementState::parse(&body.state)
            .ok_or_else(|| AppError::field("state", "suspended, revoked or active"))?;
        Ok(Sanction {
            state,
            reason: SANCTION_REASON.check(&body.reason, "reason")?,
        })
    }
}

/// Suspends, revokes or reinstates an agreement (governance). Every handle
/// issued under it stops resolving at once; revocation is final.
#[utoipa::path(tag = "data-access", params(AgreementPath), request_body = SanctionRequest,
    responses((status = 200, body = ApplicationView)))]
#[post("/v1/agreements/{id}/state")]
pub async fn sanction_agreement(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<AgreementPath>,
    body: Json<SanctionRequest>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    principal(&caller)?;
    let sanction = Sanction::try_from(body.into_inner())?;
    let id = path.into_inner().id;
    let view = state
        .run(move |ctx| agreements::sanction(ctx, &caller, &id, sanction))
        .await?;
    Ok(web::Json(view))
}
