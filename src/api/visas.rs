//! GA4GH Passport visas for members of approved uses (decision 0031).
//!
//! A member asks for their own visa; the same gate a release passes decides
//! whether they get one, applied to them alone: the application approved,
//! its agreement active, unexpired and within its period, the member's
//! ethics training current and the current agreement text accepted.
//! Issuing a visa reads and writes nothing of any patient.

use super::applications::application_for;
use super::consents::principal;
use super::releases::{admit, ApplicationPath};
use super::state::AppState;
use crate::access::visa::Grant;
use crate::auth::policy::Action;
use crate::auth::Caller;
use crate::db::documents::utc;
use crate::error::{AccessRefusal as Refusal, ApiError, Problem};
use actix_web::{post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct IssuedVisas {
    /// The caller's visas, in the shape of the Passport claim: one
    /// `ControlledAccessGrants` Visa Document Token (ES256 JWT) asserting
    /// that the committee approved this use and the caller is its member.
    pub ga4gh_passport_v1: Vec<String>,
    /// When the visa expires: a dataset handle's lifetime
    /// (`release.handle_ttl_seconds`), never past the agreement's expiry.
    pub expires_at: DateTime<Utc>,
    /// Where the visa's public key is published (its `jku`).
    pub jku: String,
}

/// Issues the caller a GA4GH Passport visa for an approved use (members).
/// The visa names the use, never a dataset: which objects the project may
/// read is the dataset handle's answer, checked against every patient's
/// consent. Refused, with the release's codes, while the caller could not
/// release under the use; an outsider who may not read the application
/// gets 404.
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = IssuedVisas), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/applications/{id}/visas")]
pub async fn issue_visas(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<IssuedVisas>, ApiError> {
    let p = principal(&caller)?.clone();
    let id = path.into_inner().id;
    let now = state.now();
    let shared = state.clone();
    let member = p.clone();
    let (application_id, approved_at, agreement_expires_at) = state
        .db(move |conn| {
            let app = application_for(&shared, conn, &caller, Action::VisaIssue, &id)?;
            if !app.is_member(&member) {
                return Err(ApiError::Access(Refusal::NotAMember, None));
            }
            let (agreement, _) = admit(
                conn,
                &app,
                &[(member.org.as_str(), member.subject.as_str())],
                now,
            )?;
            let approved_at = app
                .row
                .decided_at
                .ok_or_else(|| ApiError::internal("approved application without a decision"))?;
            Ok((app.row.id, utc(approved_at), utc(agreement.expires_at)))
        })
        .await?;
    let lifetime = chrono::Duration::seconds(i64::from(state.data_use.release.handle_ttl_seconds));
    let expires_at = (now + lifetime).min(agreement_expires_at);
    let grant = Grant {
        researcher_org: &p.org,
        researcher: &p.subject,
        application_url: format!("{}/v1/applications/{application_id}", state.public_base_url),
        approved_at: approved_at.timestamp(),
        now: now.timestamp(),
        expires_at: expires_at.timestamp(),
    };
    let claims = state
        .visas
        .claims(&grant, format!("visa-{}", uuid::Uuid::new_v4()));
    let visa = state.visas.sign(&claims).map_err(ApiError::internal)?;
    tracing::info!(application = %application_id, "passport visa issued");
    Ok(web::Json(IssuedVisas {
        ga4gh_passport_v1: vec![visa],
        expires_at,
        jku: state.visas.jku().to_owned(),
    }))
}
