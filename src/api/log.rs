//! The access log's public face: the latest signed checkpoint, the log's
//! verifier key, inclusion and consistency proofs (anyone may check the
//! log; proofs are hashes and reveal no entry), and the auditors' query.

use super::state::AppState;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::db::ledger::{self, AuditFilter};
use crate::db::DbConnection;
use crate::error::{ApiError, Problem};
use crate::ledger::entry::{Language, LogAction};
use actix_web::{get, web, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn b64(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

/// The latest signed checkpoint as a C2SP signed note (`text/plain`).
/// 404 until the first entry is integrated.
#[utoipa::path(tag = "log", responses((status = 200, content_type = "text/plain", body = String),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/log/checkpoint")]
pub async fn checkpoint(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cp = state
        .db(|conn| Ok(ledger::latest_checkpoint(conn)?))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        .body(cp.note))
}

#[derive(Serialize, ToSchema)]
pub struct LogKeys {
    /// The checkpoint origin line.
    pub origin: String,
    /// C2SP note verifier keys, current first; older ones verify checkpoints
    /// signed before a key rotation.
    pub verifier_keys: Vec<String>,
}

#[utoipa::path(tag = "log", responses((status = 200, body = LogKeys)))]
#[get("/v1/log/keys")]
pub async fn keys(state: web::Data<AppState>) -> web::Json<LogKeys> {
    web::Json(LogKeys {
        origin: state.log.origin.clone(),
        verifier_keys: state.log.verifier_keys.clone(),
    })
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

/// The checkpoint of `size` (the latest when `None`) and `proof` of its
/// tree size, read on one connection in one trip to the blocking pool.
async fn with_checkpoint<T, F>(
    state: &web::Data<AppState>,
    size: Option<u64>,
    proof: F,
) -> Result<(ledger::CheckpointRow, T), ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection, u64) -> Result<T, ApiError> + Send + 'static,
{
    state
        .db(move |conn| {
            let cp = match size {
                Some(s) => ledger::checkpoint_at(conn, s)?,
                None => ledger::latest_checkpoint(conn)?,
            }
            .ok_or(ApiError::ProofUnavailable)?;
            let made = proof(conn, cp.size as u64)?;
            Ok((cp, made))
        })
        .await
}

#[utoipa::path(tag = "log", params(InclusionQuery), responses((status = 200, body = InclusionProof),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/log/proofs/inclusion")]
pub async fn inclusion(
    state: web::Data<AppState>,
    query: web::Query<InclusionQuery>,
) -> Result<web::Json<InclusionProof>, ApiError> {
    let index = query.index;
    let (cp, proof) = with_checkpoint(&state, query.size, move |conn, size| {
        if index >= size {
            return Err(ApiError::ProofUnavailable);
        }
        Ok(ledger::inclusion_proof(conn, index, size)?)
    })
    .await?;
    Ok(web::Json(InclusionProof {
        index,
        tree_size: cp.size as u64,
        proof: b64(&proof),
        checkpoint: cp.note,
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

#[utoipa::path(tag = "log", params(ConsistencyQuery), responses((status = 200, body = ConsistencyProof),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/log/proofs/consistency")]
pub async fn consistency(
    state: web::Data<AppState>,
    query: web::Query<ConsistencyQuery>,
) -> Result<web::Json<ConsistencyProof>, ApiError> {
    let from = query.from;
    let (cp, proof) = with_checkpoint(&state, query.to, move |conn, to| {
        if from > to {
            return Err(ApiError::ProofUnavailable);
        }
        Ok(ledger::consistency_proof(conn, from, to)?)
    })
    .await?;
    Ok(web::Json(ConsistencyProof {
        from,
        to: cp.size as u64,
        proof: b64(&proof),
        checkpoint: cp.note,
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

fn parse_instant(raw: &str, field: &str) -> Result<DateTime<chrono::Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.to_utc())
        .map_err(|_| ApiError::field(field, "must be an RFC 3339 timestamp"))
}

fn instant(raw: Option<&str>, field: &str) -> Result<Option<chrono::NaiveDateTime>, ApiError> {
    raw.map(|t| parse_instant(t, field).map(|t| t.naive_utc()))
        .transpose()
}

/// Log entries by organization, actor, action and time, newest first
/// (auditors).
#[utoipa::path(tag = "log", params(AuditQuery), responses((status = 200, body = super::portal::AccessPage),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/audit/log")]
pub async fn audit_log(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<super::portal::AccessPage>, ApiError> {
    state.authorize(&caller, Action::LogAudit, &Resource::AccessLog)?;
    let q = query.into_inner();
    if q.action
        .as_deref()
        .is_some_and(|a| LogAction::parse(a).is_none())
    {
        return Err(ApiError::field("action", "not a logged action"));
    }
    let limit = super::portal::page_limit(q.limit)?;
    let filter = AuditFilter {
        org: q.org,
        user: q.actor,
        action: q.action,
        from: instant(q.from.as_deref(), "from")?,
        to: instant(q.to.as_deref(), "to")?,
    };
    let before = q.before;
    let rows = state
        .db(move |conn| Ok(ledger::audit_entries(conn, &filter, before, limit + 1)?))
        .await?;
    Ok(web::Json(super::portal::page_of(
        rows,
        limit,
        Language::En,
    )?))
}

#[derive(Deserialize, IntoParams)]
pub struct ScreeningQuery {
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, exclusive; at most 31 days after `from`.
    pub to: String,
}

/// Longest period an on-demand screening may cover.
const MAX_SCREENING_DAYS: i64 = 31;

/// Screens the entries recorded in `[from, to)` now (auditors): entries
/// without a valid legal basis, outside their agreement's purpose or
/// period, and actors with unusual volume. Findings name entries by arrival
/// number, never patients.
#[utoipa::path(tag = "log", params(ScreeningQuery),
    responses((status = 200, body = Object, description = "A screening report"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/audit/screening")]
pub async fn screening(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ScreeningQuery>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&caller, Action::LogAudit, &Resource::AccessLog)?;
    let q = query.into_inner();
    let from = parse_instant(&q.from, "from")?;
    let to = parse_instant(&q.to, "to")?;
    if to <= from || to - from > chrono::Duration::days(MAX_SCREENING_DAYS) {
        return Err(ApiError::field(
            "to",
            "must be after `from` and at most 31 days later",
        ));
    }
    let rule = state.screening_volume;
    let report = state
        .db(move |conn| Ok(crate::db::screening::screen(conn, from, to, rule)?))
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

#[derive(Serialize, ToSchema)]
pub struct StoredScreeningReport {
    pub period_start: DateTime<chrono::Utc>,
    pub period_end: DateTime<chrono::Utc>,
    pub generated_at: DateTime<chrono::Utc>,
    pub rules_version: String,
    pub entries_screened: i64,
    pub flagged: i64,
    pub unusual_actors: i64,
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct ScreeningReports {
    pub reports: Vec<StoredScreeningReport>,
}

/// The periodic screening reports, newest period first (auditors).
#[utoipa::path(tag = "log", params(ScreeningReportsQuery),
    responses((status = 200, body = ScreeningReports),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/audit/screening-reports")]
pub async fn screening_reports(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ScreeningReportsQuery>,
) -> Result<web::Json<ScreeningReports>, ApiError> {
    state.authorize(&caller, Action::LogAudit, &Resource::AccessLog)?;
    let q = query.into_inner();
    let limit = super::portal::page_limit(q.limit)?;
    let before = instant(q.before.as_deref(), "before")?;
    let rows = state
        .db(move |conn| Ok(crate::db::screening::reports_before(conn, before, limit)?))
        .await?;
    let utc = crate::db::documents::utc;
    let reports = rows
        .into_iter()
        .map(|r| {
            Ok(StoredScreeningReport {
                period_start: utc(r.period_start),
                period_end: utc(r.period_end),
                generated_at: utc(r.generated_at),
                rules_version: r.rules_version,
                entries_screened: r.entries_screened,
                flagged: r.flagged,
                unusual_actors: r.unusual_actors,
                report: serde_json::from_str(&r.report).map_err(ApiError::internal)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(web::Json(ScreeningReports { reports }))
}
