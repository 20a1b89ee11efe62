//! A hospital's own patients: finding one by its local ID, and recording
//! that a patient is a minor or has died.

use super::consents::patient_ref;
use super::problem::ApiError;
use super::state::AppState;
use crate::api::extract::Json;
use crate::app::consents::PatientStatusView;
use crate::app::gates::principal;
use crate::app::patients::{self, LookupResponse, PatientStatus};
use crate::app::text::Text;
use crate::app::AppError;
use crate::auth::Caller;
use crate::pseudonym::LocalPatientId;
use actix_web::{post, put, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(lookup_patient).service(update_patient_status);
}

/// A hospital's own patient ID, as `LocalPatientId::parse` reads it.
pub const LOCAL_PATIENT_ID: Text = Text::line(128);

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    pub local_patient_id: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientStatusRequest {
    /// For a minor: the day they come of age, a day in Japan (JST). From
    /// its midnight a proxy's permits no longer speak for them.
    pub majority_on: Option<NaiveDate>,
    /// Not after today (JST).
    pub deceased_on: Option<NaiveDate>,
}

/// A patient named in a path by `patient_ref`.
#[derive(Deserialize, IntoParams)]
pub struct PatientPath {
    pub patient_ref: String,
}

/// Finds one of the caller's hospital's patients by the hospital-local ID
/// (sent in the body, never in a URL): its `patient_ref`, consents and samples.
#[utoipa::path(tag = "consents", request_body = LookupRequest,
    responses((status = 200, body = LookupResponse)))]
#[post("/v1/patients/lookup")]
pub async fn lookup_patient(
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<LookupRequest>,
) -> Result<web::Json<LookupResponse>, ApiError> {
    principal(&caller)?;
    let local = LocalPatientId::parse(&body.local_patient_id)
        .map_err(|m| AppError::field("local_patient_id", m))?;
    let found = state
        .run(move |ctx| patients::lookup(ctx, &caller, &local))
        .await?;
    Ok(web::Json(found))
}

/// Records that a patient is a minor (the day they come of age) or deceased.
/// Minors whose consent a proxy signed appear on the re-consent list once
/// they come of age; deceased patients never do. A day of majority that has
/// already come recalls, in the same transaction, what live releases had of
/// the patient on the proxy's consent alone (`reached_majority`); a future
/// one is recalled by the daily sweep when it comes; either way the patient
/// is told, once, with a `consent_lapse` entry per family whose proxy
/// permits lapsed. Each update is logged as `patient_status_change` (naming
/// neither day), and so notified to the patient, in the same transaction.
#[utoipa::path(tag = "consents", params(PatientPath), request_body = PatientStatusRequest,
    responses((status = 200, body = PatientStatusView)))]
#[put("/v1/patients/{patient_ref}/status")]
pub async fn update_patient_status(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<PatientPath>,
    body: Json<PatientStatusRequest>,
) -> Result<web::Json<PatientStatusView>, ApiError> {
    principal(&caller)?;
    let patient = patient_ref(&path.patient_ref)?;
    let status = PatientStatus {
        majority_on: body.majority_on,
        deceased_on: body.deceased_on,
    };
    let view = state
        .run(move |ctx| patients::update_status(ctx, &caller, &patient, status))
        .await?;
    Ok(web::Json(view))
}
