//! Recontact (リコンタクト) under dual control: open, approve or reject,
//! unseal, read.

use super::problem::ApiError;
use super::samples::parse_genome_id;
use super::state::AppState;
use crate::api::extract::Json;
use crate::api::extract::{OptionalIdempotencyKey, OptionalJson};
use crate::api::replay::answered;
use crate::app::gates::principal;
use crate::app::recontact::{
    self, Decision, Opening, RecontactList, RecontactView, UnsealedIdentity,
};
use crate::app::text::Text;
use crate::app::AppError;
use crate::auth::Caller;
use crate::consent::recontact::RecontactState;
use crate::consent::DocumentFamily;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(open_request)
        .service(list_requests)
        .service(get_request)
        .service(approve)
        .service(reject)
        .service(unseal);
}

/// Why a recontact is asked for, and a step's note.
pub const REASON: Text = Text::prose(2000);
/// Whom the committee relays for.
pub const ON_BEHALF_OF: Text = Text::line(200);

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The sample whose patient should be recontacted.
    pub genome_id: String,
    /// `cancer` or `rare_disease`: whose consent to recontact applies.
    pub family: String,
    /// Why, in words the patient's hospital can pass on.
    pub reason: String,
    /// The researcher or project the committee relays for, if any.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
}

impl TryFrom<OpenRequest> for Opening {
    type Error = AppError;

    fn try_from(body: OpenRequest) -> Result<Self, AppError> {
        let genome_id = parse_genome_id(&body.genome_id, "genome_id")?;
        let family: DocumentFamily = body
            .family
            .parse()
            .map_err(|e: crate::consent::ids::IdError| AppError::field("family", e.to_string()))?;
        let reason = REASON.check(&body.reason, "reason")?;
        let on_behalf_of = body
            .on_behalf_of
            .map(|o| ON_BEHALF_OF.check(&o, "on_behalf_of"))
            .transpose()?;
        Ok(Opening {
            genome_id,
            family,
            reason,
            on_behalf_of,
        })
    }
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    #[serde(default)]
    pub note: Option<String>,
}

fn note_of(body: OptionalJson<StepRequest>) -> Result<Option<String>, AppError> {
    // An empty note is no note.
    body.into_inner()
        .and_then(|b| b.note)
        .filter(|note| !note.trim().is_empty())
        .map(|note| REASON.check(&note, "note"))
        .transpose()
}

#[derive(Deserialize, IntoParams)]
pub struct RequestPath {
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct StateQuery {
    /// `pending` (default), `approved`, `rejected` or `unsealed`.
    pub state: Option<String>,
}

/// Opens a recontact request (review committee). Refused unless the
/// patient's current consent permits recontact.
#[utoipa::path(tag = "recontact", request_body = OpenRequest,
    responses((status = 201, body = RecontactView)))]
#[post("/v1/recontact-requests")]
pub async fn open_request(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: Json<OpenRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let retry = idempotency.retry(&*body)?;
    let opening = Opening::try_from(body.into_inner())?;
    let view = state
        .run(move |ctx| recontact::open(ctx, &caller, opening, retry))
        .await?;
    Ok(answered(view, StatusCode::CREATED))
}

/// Approves a pending request (governance). The second approval by a
/// different person makes it approved; the opener cannot approve.
#[utoipa::path(tag = "recontact", params(RequestPath), request_body(content = Option<StepRequest>, description = "An optional note"),
    responses((status = 200, body = RecontactView)))]
#[post("/v1/recontact-requests/{id}/approvals")]
pub async fn approve(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<RequestPath>,
    body: OptionalJson<StepRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner().id;
    decide(state, caller, (id, idempotency), body, Decision::Approve).await
}

/// Rejects a pending request (governance). Closed for good.
#[utoipa::path(tag = "recontact", params(RequestPath), request_body(content = Option<StepRequest>, description = "An optional note"),
    responses((status = 200, body = RecontactView)))]
#[post("/v1/recontact-requests/{id}/rejections")]
pub async fn reject(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<RequestPath>,
    body: OptionalJson<StepRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner().id;
    decide(state, caller, (id, idempotency), body, Decision::Reject).await
}

async fn decide(
    state: web::Data<AppState>,
    caller: Caller,
    (id, idempotency): (String, OptionalIdempotencyKey),
    body: OptionalJson<StepRequest>,
    decision: Decision,
) -> Result<HttpResponse, ApiError> {
    let note = note_of(body)?;
    principal(&caller)?;
    let retry = idempotency.retry(&(&id, &note))?;
    let view = state
        .run(move |ctx| recontact::decide(ctx, &caller, &id, decision, note, retry))
        .await?;
    Ok(answered(view, StatusCode::OK))
}

/// Releases the local patient ID to the patient's own hospital, once two
/// approvals are in and the consent still permits recontact.
#[utoipa::path(tag = "recontact", params(RequestPath),
    responses((status = 200, body = UnsealedIdentity)))]
#[post("/v1/recontact-requests/{id}/unseal")]
pub async fn unseal(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<RequestPath>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let retry = idempotency.retry(&id)?;
    let released = state
        .run(move |ctx| recontact::unseal(ctx, &caller, &id, retry))
        .await?;
    Ok(answered(released, StatusCode::OK))
}

/// One request with every step.
#[utoipa::path(tag = "recontact", params(RequestPath), responses((status = 200, body = RecontactView)))]
#[get("/v1/recontact-requests/{id}")]
pub async fn get_request(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<RequestPath>,
) -> Result<web::Json<RecontactView>, ApiError> {
    let id = path.into_inner().id;
    let view = state
        .run(move |ctx| recontact::get(ctx, &caller, &id))
        .await?;
    Ok(web::Json(view))
}

/// Requests in one state that the caller may read (the governance work list).
#[utoipa::path(tag = "recontact", params(StateQuery), responses((status = 200, body = RecontactList)))]
#[get("/v1/recontact-requests")]
pub async fn list_requests(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<StateQuery>,
) -> Result<web::Json<RecontactList>, ApiError> {
    principal(&caller)?;
    let wanted = match query.state.as_deref() {
        None => RecontactState::Pending,
        Some(raw) => RecontactState::parse(raw)
            .ok_or_else(|| AppError::field("state", "pending, approved, rejected or unsealed"))?,
    };
    let list = state
        .run(move |ctx| recontact::list(ctx, &caller, wanted))
        .await?;
    Ok(web::Json(list))
}
