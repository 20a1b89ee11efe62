//! GA4GH Passport visas for members of approved uses (decision 0031).

use super::problem::ApiError;
use super::releases::ApplicationPath;
use super::state::AppState;
use crate::api::extract::OptionalIdempotencyKey;
use crate::api::replay::answered;
use crate::app::gates::principal;
use crate::app::visas::{self, IssuedVisas, VisaList};
use crate::auth::Caller;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use actix_web::{get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(issue_visas).service(visas_issued);
}

/// Issues the caller GA4GH Passport visas for an approved use (members):
/// `ControlledAccessGrants` for the use and `AcceptedTermsAndPolicies` for
/// the agreement text in force. The first names the use, never a dataset:
/// which objects the project may read is the dataset handle's answer,
/// checked against every patient's consent. Refused, with the release's
/// codes, while the caller could not release under the use; an outsider
/// who may not read the application gets 404. Each visa is recorded (`GET`
/// lists them). Each member may ask `data_access.member_requests_per_minute`
/// times a minute (429 with `Retry-After` past it).
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = IssuedVisas)))]
#[post("/v1/applications/{id}/visas")]
pub async fn issue_visas(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<ApplicationPath>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let retry = idempotency.retry(&id)?;
    let issued = state
        .run(move |ctx| visas::issue(ctx, &caller, &id, retry))
        .await?;
    Ok(answered(issued, StatusCode::OK))
}

/// Every visa issued for an application, oldest first (members, the
/// governance body, auditors).
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = VisaList)))]
#[get("/v1/applications/{id}/visas")]
pub async fn visas_issued(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<VisaList>, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let list = state
        .run(move |ctx| visas::issued(ctx, &caller, &id))
        .await?;
    Ok(web::Json(list))
}
