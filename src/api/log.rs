//! The access log's public face: the latest signed checkpoint, the log's
//! verifier key, inclusion and consistency proofs (anyone may check the
//! log; proofs are hashes and reveal no entry), and the auditors' queries.

use super::portal::page_limit;
use super::problem::ApiError;
use super::state::AppState;
use crate::app::gates::principal;
use crate::app::log::{self, LogKeys, Proven, ScreeningReports};
use crate::app::portal::AccessPage;
use crate::app::AppError;
use crate::auth::Caller;
use crate::db::ledger::AuditFilter;
use crate::ledger::entry::LogAction;
use actix_web::{get, web, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(checkpoint)
        .service(keys)
        .service(inclusion)
        .service(consistency)
        .service(audit_log)
        .service(screening)
        .service(screening_reports);
}

fn b64(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

/// The latest signed checkpoint as a C2SP signed note (`text/plain`).
/// 404 until the first entry is integrated.
#[utoipa::path(tag = "log", responses((status = 200, content_type = "text/plain", body = String)))]
#[get("/v1/log/checkpoint")]
pub async fn checkpoint(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let note = state.run(log::checkpoint).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        .body(note))
}

#[utoipa::path(tag = "log", responses((status = 200, body = LogKeys)))]
#[get("/v1/log/keys")]
pub async fn keys(state: web::Data<AppState>) -> web::Json<LogKeys> {
    web::Json(log::keys(&state.ctx))
}

#[derive(Deserialize, IntoParams)]
pub struct InclusionQuery {
    pub index: u64,
    /// A tree size with a stored checkpoint; defaults to the latest.
    pub size: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    /// Base64 hashes, leaf to root (RFC 9162 §2.1.3).
    pub proof: Vec<String>,
    /// The signed checkpoint of `tree_size`.
    pub checkpoint: String,
}

#[utoipa::path(tag = "log", params(InclusionQuery), responses((status = 200, body = InclusionProof)))]
#[get("/v1/log/proofs/inclusion")]
pub async fn inclusion(
    state: web::Data<AppState>,
    query: web::Query<InclusionQuery>,
) -> Result<web::Json<InclusionProof>, ApiError> {
    let (index, size) = (query.index, query.size);
    let Proven {
        checkpoint: signed,
        proof,
    } = state
        .run(move |ctx| log::inclusion(ctx, index, size))
        .await?;
    Ok(web::Json(InclusionProof {
        index,
        tree_size: signed.size as u64,
        proof: b64(&proof),
        checkpoint: signed.note,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    /// The older size (a checkpoint the client holds).
    pub from: u64,
    /// The newer size; defaults to the latest checkpoint.
    pub to: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Base64 hashes (RFC 9162 §2.1.4).
    pub proof: Vec<String>,
    /// The signed checkpoint of `to`.
    pub checkpoint: String,
}

#[utoipa::path(tag = "log", params(ConsistencyQuery), responses((status = 200, body = ConsistencyProof)))]
#[get("/v1/log/proofs/consistency")]
pub async fn consistency(
    state: web::Data<AppState>,
    query: web::Query<ConsistencyQuery>,
) -> Result<web::Json<ConsistencyProof>, ApiError> {
    let (from, to) = (query.from, query.to);
    let Proven {
        checkpoint: signed,
        proof,
    } = state
        .run(move |ctx| log::consistency(ctx, from, to))
        .await?;
    Ok(web::Json(ConsistencyProof {
        from,
        to: signed.size as u64,
        proof: b64(&proof),
        checkpoint: signed.note,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Acting organization.
    pub org: Option<String>,
    /// Acting person or system (token `sub`).
    pub actor: Option<String>,
    /// e.g. `consent_read`, `dataset_release`.
    pub action: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    pub before: Option<i64>,
    /// 1–100, default 20.
    pub limit: Option<i64>,
}

fn parse_instant(raw: &str, field: &str) -> Result<DateTime<chrono::Utc>, AppError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.to_utc())
        .map_err(|_| AppError::field(field, "must be an RFC 3339 timestamp"))
}

fn instant(raw: Option<&str>, field: &str) -> Result<Option<chrono::NaiveDateTime>, AppError> {
    raw.map(|t| parse_instant(t, field).map(|t| t.naive_utc()))
        .transpose()
}

/// Log entries by organization, actor, action and time, newest first
/// (auditors).
#[utoipa::path(tag = "log", params(AuditQuery), responses((status = 200, body = AccessPage)))]
#[get("/v1/audit/log")]
pub async fn audit_log(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<AccessPage>, ApiError> {
    principal(&caller)?;
    let q = query.into_inner();
    if q.action
        .as_deref()
        .is_some_and(|a| LogAction::parse(a).is_none())
    {
        return Err(AppError::field("action", "not a logged action").into());
    }
    let limit = page_limit(q.limit)?;
    let filter = AuditFilter {
        org: q.org,
        user: q.actor,
        action: q.action,
        from: instant(q.from.as_deref(), "from")?,
        to: instant(q.to.as_deref(), "to")?,
    };
    let before = q.before;
    let page = state
        .run(move |ctx| log::audit(ctx, &caller, filter, before, limit))
        .await?;
    Ok(web::Json(page))
}

#[derive(Deserialize, IntoParams)]
pub struct ScreeningQuery {
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, exclusive; at most 31 days after `from`.
    pub to: String,
}

/// Screens the entries recorded in `[from, to)` now (auditors): entries
/// without a valid legal basis, outside their agreement's purpose or
/// period, and actors with unusual volume. Findings name entries by arrival
/// number, never patients.
#[utoipa::path(tag = "log", params(ScreeningQuery),
    responses((status = 200, body = Object, description = "A screening report")))]
#[get("/v1/audit/screening")]
pub async fn screening(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ScreeningQuery>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let from = parse_instant(&query.from, "from")?;
    let to = parse_instant(&query.to, "to")?;
    let report = state
        .run(move |ctx| log::screen(ctx, &caller, from, to))
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Deserialize, IntoParams)]
pub struct ScreeningReportsQuery {
    /// Only reports of periods starting before this instant (RFC 3339).
    pub before: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<i64>,
}

/// The periodic screening reports, newest period first (auditors).
#[utoipa::path(tag = "log", params(ScreeningReportsQuery),
    responses((status = 200, body = ScreeningReports)))]
#[get("/v1/audit/screening-reports")]
pub async fn screening_reports(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ScreeningReportsQuery>,
) -> Result<web::Json<ScreeningReports>, ApiError> {
    principal(&caller)?;
    let limit = page_limit(query.limit)?;
    let before = instant(query.before.as_deref(), "before")?;
    let reports = state
        .run(move |ctx| log::screening_reports(ctx, &caller, before, limit))
        .await?;
    Ok(web::Json(reports))
}
