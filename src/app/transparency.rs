//! The public transparency register of approved uses, and the published
//! processing-time statistics. Neither holds personal data; anyone may
//! read them.

use super::applications::{purpose_view, registered_members, Application, PurposeView};
use super::{AppError, Context};
use crate::access::review::{self, ApplicationState};
use crate::db::access::{self as store, ApplicationRow};
use crate::db::documents::utc;
use crate::db::DbConnection;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ApprovedUse {
    pub organization: String,
    /// Partner organizations whose researchers are members.
    pub partner_organizations: Vec<String>,
    pub purpose: PurposeView,
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

/// Applications approved, with or without conditions.
fn approved(conn: &mut DbConnection) -> Result<Vec<ApplicationRow>, AppError> {
    Ok(store::applications_in_state(
        conn,
        &[
            ApplicationState::Approved.as_str(),
            ApplicationState::ApprovedWithConditions.as_str(),
        ],
    )?)
}

/// The public register of approved uses: organization, purpose, datasets,
/// period, and whether the use is industrial or sends data abroad, as the
/// register says of its member organizations now.
pub fn approved_uses(ctx: &Context) -> Result<TransparencyRegister, AppError> {
    let approved_uses = ctx.read(|conn| {
        let rows = approved(conn)?;
        let names: std::collections::BTreeMap<String, String> = store::list_datasets(conn)?
            .into_iter()
            .map(|(d, _)| (d.id, d.name))
            .collect();
        let apps = rows
            .into_iter()
            .map(Application::from_row)
            .collect::<Result<Vec<_>, AppError>>()?;
        let registered = registered_members(conn, &apps)?;
        Ok(apps
            .iter()
            .map(|app| {
                let now = app.use_now(&ctx.data_use, &registered);
                let (row, d) = (&app.row, &app.declaration);
                ApprovedUse {
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
                }
            })
            .collect())
    })?;
    Ok(TransparencyRegister { approved_uses })
}

/// Published processing times, submission to access start (median and
/// p90), and how often the standard time is met.
pub fn processing_times(ctx: &Context) -> Result<ProcessingTimes, AppError> {
    let standard = ctx.data_use.review.standard_days;
    let days: Vec<f64> = ctx.read(|conn| {
        Ok(approved(conn)?
            .into_iter()
            .filter_map(|row| {
                row.access_started_at
                    .map(|start| (start - row.submitted_at).num_seconds() as f64 / 86_400.0)
            })
            .collect())
    })?;
    let within = (!days.is_empty()).then(|| {
        days.iter().filter(|d| **d <= f64::from(standard)).count() as f64 / days.len() as f64
    });
    let completed = days.len();
    let percentiles = review::processing_percentiles(days);
    Ok(ProcessingTimes {
        completed,
        median_days: percentiles.map(|p| p.0),
        p90_days: percentiles.map(|p| p.1),
        standard_days: standard,
        within_standard: within,
    })
}
