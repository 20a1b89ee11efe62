//! The public transparency register of approved uses, and the published
//! processing-time statistics.

use super::problem::ApiError;
use super::state::AppState;
use crate::app::transparency::{self, ProcessingTimes, TransparencyRegister};
use actix_web::{get, web};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(approved_uses).service(processing_times);
}

/// The public register of approved uses: organization, purpose, datasets,
/// period, and whether the use is industrial or sends data abroad, as the
/// register says of its member organizations now. No personal data; no
/// token needed.
#[utoipa::path(tag = "data-access", security(()), responses((status = 200, body = TransparencyRegister)))]
#[get("/v1/transparency/approved-uses")]
pub async fn approved_uses(
    state: web::Data<AppState>,
) -> Result<web::Json<TransparencyRegister>, ApiError> {
    Ok(web::Json(state.run(transparency::approved_uses).await?))
}

/// Published processing times, submission to access start (median and
/// p90). No personal data; no token needed.
#[utoipa::path(tag = "data-access", security(()), responses((status = 200, body = ProcessingTimes)))]
#[get("/v1/transparency/processing-times")]
pub async fn processing_times(
    state: web::Data<AppState>,
) -> Result<web::Json<ProcessingTimes>, ApiError> {
    Ok(web::Json(state.run(transparency::processing_times).await?))
}
