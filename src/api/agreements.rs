//! Data-use agreements: the versioned texts members accept, acceptances
//! of the current text, and the governance body's sanctions.

use super::applications::{
    application_for, check_attestations, view, Application, ApplicationView,
};
use super::consents::principal;
use super::governance::{registry, text_field};
use super::state::AppState;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::db::access::{self as store, AcceptanceRow, AgreementRow, AgreementTextRow};
use crate::db::documents::utc;
use crate::db::{write_transaction, DbConnection};
use crate::error::{AccessRefusal as Refusal, ApiError, Problem};
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementTextRequest {
    /// The full text members accept.
    pub body: String,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementTextView {
    pub version: i32,
    /// Hex SHA-256 of the body's UTF-8 bytes: what a member's acceptance names.
    pub sha256: String,
    pub body: String,
    pub published_at: DateTime<Utc>,
}

fn text_view(row: AgreementTextRow) -> AgreementTextView {
    AgreementTextView {
        version: row.version,
        sha256: row.sha256,
        body: row.body,
        published_at: utc(row.published_at),
    }
}

/// Publishes the next version of the data-use agreement text (governance).
/// Members of every agreement must accept the new version before their next
/// release.
#[utoipa::path(tag = "data-access", request_body = AgreementTextRequest,
    responses((status = 201, body = AgreementTextView), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/agreement-texts")]
pub async fn publish_agreement_text(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<AgreementTextRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = registry(&state, &caller)?;
    let text = body.body.clone();
    if text.trim().is_empty() || text.len() > 200_000 {
        return Err(ApiError::field("body", "1-200000 bytes"));
    }
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
    let now = state.now().naive_utc();
    let row = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let version = store::current_text(conn)?.map_or(1, |t| t.version + 1);
                let row = AgreementTextRow {
                    version,
                    body: text,
                    sha256,
                    published_by: p.subject,
                    published_at: now,
                };
                store::insert_text(conn, &row)?;
                Ok(row)
            })
        })
        .await
        .map_err(|e| match e {
            ApiError::UniqueViolation(_) => {
                ApiError::field("body", "this exact text was published before")
            }
            other => other,
        })?;
    Ok(HttpResponse::Created().json(text_view(row)))
}

/// The agreement text members must accept now.
#[utoipa::path(tag = "data-access", responses((status = 200, body = AgreementTextView), (status = 409, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/agreement-texts/current")]
pub async fn current_agreement_text(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<AgreementTextView>, ApiError> {
    state.authorize(&caller, Action::DatasetRead, &Resource::Registry)?;
    let row = state
        .db(|conn| {
            store::current_text(conn)?.ok_or(ApiError::Access(Refusal::AgreementTextMissing, None))
        })
        .await?;
    Ok(web::Json(text_view(row)))
}

#[derive(Deserialize, IntoParams)]
pub struct TextVersionPath {
    /// The text's version, 1, 2, …
    pub version: i32,
}

/// One version of the agreement text, current or not: what a member
/// accepted, and what an `AcceptedTermsAndPolicies` visa names.
#[utoipa::path(tag = "data-access", params(TextVersionPath), responses((status = 200, body = AgreementTextView), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/agreement-texts/{version}")]
pub async fn agreement_text(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<TextVersionPath>,
) -> Result<web::Json<AgreementTextView>, ApiError> {
    state.authorize(&caller, Action::DatasetRead, &Resource::Registry)?;
    let version = path.into_inner().version;
    let row = state
        .db(move |conn| store::text_version(conn, version)?.ok_or(ApiError::NotFound))
        .await?;
    Ok(web::Json(text_view(row)))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceRequest {
    /// The SHA-256 of the current agreement text, as shown at
    /// `/v1/agreement-texts/current`.
    pub text_sha256: String,
}

#[derive(Deserialize, IntoParams)]
pub struct AgreementPath {
    pub id: String,
}

fn agreement_and_application(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<(AgreementRow, Application), ApiError> {
    let agreement = store::find_agreement(conn, id)?.ok_or(ApiError::NotFound)?;
    let app = application_for(state, conn, caller, action, &agreement.application_id)?;
    Ok((agreement, app))
}

/// A member accepts the current agreement text; the hash is recorded.
#[utoipa::path(tag = "data-access", params(AgreementPath), request_body = AcceptanceRequest,
    responses((status = 200, body = ApplicationView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/agreements/{id}/acceptances")]
pub async fn accept_agreement(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<AgreementPath>,
    body: web::Json<AcceptanceRequest>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    let p = principal(&caller)?.clone();
    let id = path.into_inner().id;
    let hash = body.text_sha256.trim().to_ascii_lowercase();
    let now = state.now();
    let shared = state.clone();
    let view = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let (agreement, app) = agreement_and_application(
                    &shared,
                    conn,
                    &caller,
                    Action::AgreementAccept,
                    &id,
                )?;
                if !app.is_member(&p) {
                    return Err(ApiError::Access(Refusal::NotAMember, None));
                }
                check_attestations(conn, &[(&p.org, &p.subject)], crate::calendar::day_of(now))?;
                let text = store::current_text(conn)?
                    .ok_or(ApiError::Access(Refusal::AgreementTextMissing, None))?;
                if text.sha256 != hash {
                    return Err(ApiError::refused(
                        Refusal::AgreementTextMismatch,
                        format!("the current text is version {}", text.version),
                    ));
                }
                store::insert_acceptance(
                    conn,
                    &AcceptanceRow {
                        agreement_id: agreement.id,
                        member_org: p.org.clone(),
                        member: p.subject.clone(),
                        text_version: text.version,
                        text_sha256: text.sha256,
                        accepted_at: now.naive_utc(),
                    },
                )?;
                view(conn, &shared.data_use, &app)
            })
        })
        .await?;
    Ok(web::Json(view))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SanctionRequest {
    /// `suspended`, `revoked` (final) or `active` (lifts a suspension).
    pub state: String,
    pub reason: String,
}

/// Suspends, revokes or reinstates an agreement (governance). Every handle
/// issued under it stops resolving at once; revocation is final.
#[utoipa::path(tag = "data-access", params(AgreementPath), request_body = SanctionRequest,
    responses((status = 200, body = ApplicationView), (status = 409, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/agreements/{id}/state")]
pub async fn sanction_agreement(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<AgreementPath>,
    body: web::Json<SanctionRequest>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    let p = registry(&state, &caller)?;
    if !["suspended", "revoked", "active"].contains(&body.state.as_str()) {
        return Err(ApiError::field("state", "suspended, revoked or active"));
    }
    let reason = text_field(&body.reason, "reason", 2000)?;
    let to = body.state.clone();
    let id = path.into_inner().id;
    let logged_id = id.clone();
    let now = state.now();
    let shared = state.clone();
    let view = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let (_, app) = agreement_and_application(
                    &shared,
                    conn,
                    &caller,
                    Action::ApplicationRead,
                    &id,
                )?;
                if !store::set_agreement_state(conn, &id, &to, &reason, now)? {
                    return Err(ApiError::Access(Refusal::AgreementRevoked, None));
                }
                store::record_agreement_transition(conn, &id, &to, &reason, &p.subject, now)?;
                view(conn, &shared.data_use, &app)
            })
        })
        .await?;
    tracing::info!(agreement = %logged_id, "agreement state changed by governance");
    Ok(web::Json(view))
}
