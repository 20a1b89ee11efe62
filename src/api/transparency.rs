//! The public transparency register of approved uses, and the published
//! processing-time statistics. Neither holds personal data.

use super::applications::{purpose_view, registered_members, Application, PurposeRequest};
use super::state::AppState;
use crate::access::review;
use crate::db::access as store;
use crate::db::documents::utc;
use crate::error::ApiError;
use actix_web::{get, web};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ApprovedUse {
    pub organization: String,
    /// Partner organizations whose researchers are members.
    pub partner_organizations: Vec<String>,
    pub purpose: PurposeRequest,
    /// Dataset names.
    pub datasets: Vec<String>,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub approved_at: Option<DateTime<Utc>>,
    /// Industry use: a member organization is registered as industry (now
    /// or at submission). Patients consent to industry use separately.
    pub commercial: bool,
    /// Data goes abroad: declared, or a member organization is registered
    /// outside the programme's home country (now or at submission).
    pub recipients_abroad: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TransparencyRegister {
    pub approved_uses: Vec<ApprovedUse>,
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
    let state_in = state.clone();
    let uses = state
        .db(move |conn| {
            let rows =
                store::applications_in_state(conn, &["approved", "approved_with_conditions"])?;
            let names: std::collections::BTreeMap<String, String> = store::list_datasets(conn)?
                .into_iter()
                .map(|(d, _)| (d.id, d.name))
                .collect();
            let apps = rows
                .into_iter()
                .map(Application::from_row)
                .collect::<Result<Vec<_>, ApiError>>()?;
            let registered = registered_members(conn, &apps)?;
            apps.iter()
                .map(|app| {
                    let now = app.use_now(&state_in.data_use, &registered);
                    let (row, d) = (&app.row, &app.declaration);
                    Ok(ApprovedUse {
                        organization: row.org.clone(),
                        partner_organizations: d.partner_orgs(),
                        purpose: purpose_view(&d.purpose),
                        datasets: d
                            .datasets
                            .iter()
                            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
                            .collect(),
                        starts_on: d.starts_on,
                        ends_on: d.ends_on,
                        approved_at: row.decided_at.map(utc),
                        commercial: now.commercial,
                        recipients_abroad: now.abroad,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .await?;
    Ok(web::Json(TransparencyRegister {
        approved_uses: uses,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ProcessingTimes {
    /// Applications that reached access start (their first release).
    pub completed: usize,
    pub median_days: Option<f64>,
    pub p90_days: Option<f64>,
    /// The published standard processing time.
    pub standard_days: u32,
    /// Share of completed applications within the standard time.
    pub within_standard: Option<f64>,
}

/// Published processing times, submission to access start (median and
/// p90). No personal data; no token needed.
#[utoipa::path(tag = "data-access", security(()), responses((status = 200, body = ProcessingTimes)))]
#[get("/v1/transparency/processing-times")]
pub async fn processing_times(
    state: web::Data<AppState>,
) -> Result<web::Json<ProcessingTimes>, ApiError> {
    let standard = state.data_use.review.standard_days;
    let days: Vec<f64> = state
        .db(|conn| {
            Ok(
                store::applications_in_state(conn, &["approved", "approved_with_conditions"])?
                    .into_iter()
                    .filter_map(|row| {
                        row.access_started_at
                            .map(|start| (start - row.submitted_at).num_seconds() as f64 / 86_400.0)
                    })
                    .collect(),
            )
        })
        .await?;
    let within = (!days.is_empty()).then(|| {
        days.iter().filter(|d| **d <= f64::from(standard)).count() as f64 / days.len() as f64
    });
    let completed = days.len();
    let percentiles = review::processing_percentiles(days);
    Ok(web::Json(ProcessingTimes {
        completed,
        median_days: percentiles.map(|p| p.0),
        p90_days: percentiles.map(|p| p.1),
        standard_days: standard,
        within_standard: within,
    }))
}
