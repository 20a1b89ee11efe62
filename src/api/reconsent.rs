//! The hospital's re-consent work list.

use super::problem::ApiError;
use super::state::AppState;
use crate::app::gates::principal;
use crate::app::reconsent::{
    self, ReconsentList, WorkListPage, MAX_RECONSENT_PAGE, RECONSENT_PAGE,
};
use crate::app::AppError;
use crate::auth::Caller;
use crate::consent::DocumentFamily;
use actix_web::{get, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(reconsent_tasks);
}

#[derive(Deserialize, IntoParams)]
pub struct ReconsentQuery {
    /// `cancer` or `rare_disease`.
    pub family: String,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
    /// Patients examined per page, 1–5000 (default 1000).
    pub limit: Option<i64>,
}

/// The caller's hospital's re-consent work list: patients with an active
/// consent who must be asked again, and about which items only. Editorial
/// changes never appear here. Paged over the hospital's patients in
/// `patient_ref` order.
#[utoipa::path(tag = "consents", params(ReconsentQuery),
    responses((status = 200, body = ReconsentList)))]
#[get("/v1/reconsent-tasks")]
pub async fn reconsent_tasks(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ReconsentQuery>,
) -> Result<web::Json<ReconsentList>, ApiError> {
    let family: DocumentFamily = query
        .family
        .parse()
        .map_err(|e: crate::consent::ids::IdError| AppError::field("family", e.to_string()))?;
    principal(&caller)?;
    let limit = query.limit.unwrap_or(RECONSENT_PAGE);
    if !(1..=MAX_RECONSENT_PAGE).contains(&limit) {
        return Err(AppError::field("limit", "1-5000").into());
    }
    let page = WorkListPage {
        family,
        after: query.after.clone(),
        limit,
    };
    let list = state
        .run(move |ctx| reconsent::work_list(ctx, &caller, page))
        .await?;
    Ok(web::Json(list))
}
