//! The governance body's register of organizations and of researchers'
//! ethics-training attestations.

use super::problem::ApiError;
use super::state::AppState;
use crate::api::extract::Json;
use crate::app::gates::principal;
use crate::app::register::{
    self, Attestation, AttestationView, OrganizationView, Verification, ORGANIZATION_KINDS,
};
use crate::app::text::Text;
use crate::app::AppError;
use crate::auth::Caller;
use actix_web::{put, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(verify_organization).service(record_attestation);
}

/// An organization's or a researcher's name as a path names it.
pub const NAME: Text = Text::line(200);
/// The ethics-training course or programme.
pub const TRAINING: Text = Text::line(500);
/// The kinds the governance body verifies.
pub const KINDS: [&str; 3] = ORGANIZATION_KINDS;

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationRequest {
    /// `academic`, `industry` or `public`, as verified by the governance body.
    pub kind: String,
    /// ISO 3166-1 alpha-2 country of the organization, e.g. `JP`.
    pub country: String,
}

#[derive(Deserialize, IntoParams)]
pub struct OrgPath {
    pub org: String,
}

impl TryFrom<(OrgPath, OrganizationRequest)> for Verification {
    type Error = AppError;

    fn try_from((path, body): (OrgPath, OrganizationRequest)) -> Result<Self, AppError> {
        let org = NAME.check(&path.org, "org")?;
        if !ORGANIZATION_KINDS.contains(&body.kind.as_str()) {
            return Err(AppError::field("kind", "academic, industry or public"));
        }
        let country = body.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(AppError::field("country", "an ISO 3166-1 alpha-2 code"));
        }
        Ok(Verification {
            org,
            kind: body.kind,
            country,
        })
    }
}

/// Records an organization's verified type (governance). Applicants never
/// declare whether they are commercial; this register decides. A change
/// that makes a use with live releases industrial or a transfer abroad
/// writes, in the same transaction, a recall notice for each released
/// sample whose patient did not consent to that (decision 0027).
#[utoipa::path(tag = "data-access", params(OrgPath), request_body = OrganizationRequest,
    responses((status = 200, body = OrganizationView)))]
#[put("/v1/organizations/{org}")]
pub async fn verify_organization(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<OrgPath>,
    body: Json<OrganizationRequest>,
) -> Result<web::Json<OrganizationView>, ApiError> {
    principal(&caller)?;
    let verification = Verification::try_from((path.into_inner(), body.into_inner()))?;
    let view = state
        .run(move |ctx| register::verify(ctx, &caller, verification))
        .await?;
    Ok(web::Json(view))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestationRequest {
    /// The training course or programme.
    pub training: String,
    /// Not after today. Dates are days in Japan (JST), like every date
    /// the service keeps.
    pub completed_on: NaiveDate,
    /// The attestation is valid through this day (JST).
    pub expires_on: NaiveDate,
}

#[derive(Deserialize, IntoParams)]
pub struct ResearcherPath {
    pub org: String,
    /// The researcher's token subject.
    pub subject: String,
}

impl TryFrom<(ResearcherPath, AttestationRequest)> for Attestation {
    type Error = AppError;

    fn try_from((path, body): (ResearcherPath, AttestationRequest)) -> Result<Self, AppError> {
        let training = TRAINING.check(&body.training, "training")?;
        if body.expires_on <= body.completed_on {
            return Err(AppError::field("expires_on", "must be after completed_on"));
        }
        Ok(Attestation {
            org: NAME.check(&path.org, "org")?,
            subject: NAME.check(&path.subject, "subject")?,
            training,
            completed_on: body.completed_on,
            expires_on: body.expires_on,
        })
    }
}

/// Records a researcher's ethics-training attestation (governance).
/// Without a current one a researcher can neither apply nor be a member.
#[utoipa::path(tag = "data-access", params(ResearcherPath), request_body = AttestationRequest,
    responses((status = 200, body = AttestationView)))]
#[put("/v1/organizations/{org}/researchers/{subject}/attestation")]
pub async fn record_attestation(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ResearcherPath>,
    body: Json<AttestationRequest>,
) -> Result<web::Json<AttestationView>, ApiError> {
    principal(&caller)?;
    let attestation = Attestation::try_from((path.into_inner(), body.into_inner()))?;
    let view = state
        .run(move |ctx| register::attest(ctx, &caller, attestation))
        .await?;
    Ok(web::Json(view))
}
