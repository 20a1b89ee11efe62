//! The governance body's register of organizations (academic, industry or
//! public, never self-declared) and of researchers' ethics-training
//! attestations.

use super::governance::{registry, text_field};
use super::releases::recall;
use super::state::AppState;
use crate::access::INDUSTRY;
use crate::auth::Caller;
use crate::db::access::{self as store, AttestationRow, OrganizationRow};
use crate::db::documents::utc;
use crate::db::write_transaction;
use crate::error::{ApiError, Problem};
use actix_web::{put, web};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationRequest {
    /// `academic`, `industry` or `public`, as verified by the governance body.
    pub kind: String,
    /// ISO 3166-1 alpha-2 country of the organization, e.g. `JP`.
    pub country: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationView {
    pub org: String,
    pub kind: String,
    pub country: String,
    pub verified_by: String,
    pub verified_at: DateTime<Utc>,
}

#[derive(Deserialize, IntoParams)]
pub struct OrgPath {
    pub org: String,
}

/// Records an organization's verified type (governance). Applicants never
/// declare whether they are commercial; this register decides. A change
/// that makes a use with live releases industrial or a transfer abroad
/// writes, in the same transaction, a recall notice for each released
/// sample whose patient did not consent to that (decision 0027).
#[utoipa::path(tag = "data-access", params(OrgPath), request_body = OrganizationRequest,
    responses((status = 200, body = OrganizationView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[put("/v1/organizations/{org}")]
pub async fn verify_organization(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<OrgPath>,
    body: web::Json<OrganizationRequest>,
) -> Result<web::Json<OrganizationView>, ApiError> {
    let p = registry(&state, &caller)?;
    let org = text_field(&path.org, "org", 200)?;
    if !["academic", INDUSTRY, "public"].contains(&body.kind.as_str()) {
        return Err(ApiError::field("kind", "academic, industry or public"));
    }
    let country = body.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(ApiError::field("country", "an ISO 3166-1 alpha-2 code"));
    }
    let row = OrganizationRow {
        org,
        kind: body.kind.clone(),
        country,
        verified_by: p.subject,
        verified_at: state.now().naive_utc(),
    };
    let stored = row.clone();
    let shared = state.clone();
    let recalled = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                // A use that the change makes industrial or a transfer
                // abroad loses, in this transaction, what its patients did
                // not consent to (decision 0027). A release being written
                // for a use of this organization finishes first (decision
                // 0029).
                crate::db::gate::take_register_entry(conn, &stored.org)?;
                let before = recall::uses_of_member(
                    conn,
                    &shared.data_use,
                    (&stored.org, &stored.kind, &stored.country),
                )?;
                store::upsert_organization(conn, &stored)?;
                let change = format!("register-{}", uuid::Uuid::new_v4());
                recall::recall_what_the_register_takes_back(
                    conn,
                    &shared.data_use,
                    &before,
                    &change,
                    shared.now(),
                )
            })
        })
        .await?;
    if recalled > 0 {
        state.log.deliveries_queued();
    }
    Ok(web::Json(OrganizationView {
        org: row.org,
        kind: row.kind,
        country: row.country,
        verified_by: row.verified_by,
        verified_at: utc(row.verified_at),
    }))
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

#[derive(Serialize, ToSchema)]
pub struct AttestationView {
    pub org: String,
    pub subject: String,
    pub training: String,
    pub completed_on: NaiveDate,
    pub expires_on: NaiveDate,
}

#[derive(Deserialize, IntoParams)]
pub struct ResearcherPath {
    pub org: String,
    /// The researcher's token subject.
    pub subject: String,
}

/// Records a researcher's ethics-training attestation (governance).
/// Without a current one a researcher can neither apply nor be a member.
#[utoipa::path(tag = "data-access", params(ResearcherPath), request_body = AttestationRequest,
    responses((status = 200, body = AttestationView), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[put("/v1/organizations/{org}/researchers/{subject}/attestation")]
pub async fn record_attestation(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ResearcherPath>,
    body: web::Json<AttestationRequest>,
) -> Result<web::Json<AttestationView>, ApiError> {
    let p = registry(&state, &caller)?;
    let training = text_field(&body.training, "training", 500)?;
    if body.expires_on <= body.completed_on {
        return Err(ApiError::field("expires_on", "must be after completed_on"));
    }
    if body.completed_on > crate::calendar::day_of(state.now()) {
        return Err(ApiError::field("completed_on", "lies in the future"));
    }
    let row = AttestationRow {
        org: text_field(&path.org, "org", 200)?,
        subject: text_field(&path.subject, "subject", 200)?,
        training,
        completed_on: body.completed_on,
        expires_on: body.expires_on,
        recorded_by: p.subject,
        recorded_at: state.now().naive_utc(),
    };
    let stored = row.clone();
    state
        .db(move |conn| {
            write_transaction(conn, |conn| Ok(store::upsert_attestation(conn, &stored)?))
        })
        .await?;
    Ok(web::Json(AttestationView {
        org: row.org,
        subject: row.subject,
        training: row.training,
        completed_on: row.completed_on,
        expires_on: row.expires_on,
    }))
}
