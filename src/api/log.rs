//! The access log's public face: the latest signed checkpoint, the log's
//! verifier key, inclusion and consistency proofs (anyone may check the
//! log; proofs are hashes and reveal no entry), and the auditors' query.

use super::state::AppState;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::db::ledger::{self, AuditFilter};
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

async fn checkpoint_for(
    state: &web::Data<AppState>,
    size: Option<u64>,
) -> Result<ledger::CheckpointRow, ApiError> {
    state
        .db(move |conn| {
            Ok(match size {
                Some(s) => ledger::checkpoint_at(conn, s)?,
                None => ledger::latest_checkpoint(conn)?,
            })
        })
        .await?
        .ok_or(ApiError::ProofUnavailable)
}

#[utoipa::path(tag = "log", params(InclusionQuery), responses((status = 200, body = InclusionProof),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/log/proofs/inclusion")]
pub async fn inclusion(
    state: web::Data<AppState>,
    query: web::Query<InclusionQuery>,
) -> Result<web::Json<InclusionProof>, ApiError> {
    let cp = checkpoint_for(&state, query.size).await?;
    let (index, size) = (query.index, cp.size as u64);
    if index >= size {
        return Err(ApiError::ProofUnavailable);
    }
    let proof = state
        .db(move |conn| Ok(ledger::inclusion_proof(conn, index, size)?))
        .await?;
    Ok(web::Json(InclusionProof {
        index,
        tree_size: size,
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
    let cp = checkpoint_for(&state, query.to).await?;
    let (from, to) = (query.from, cp.size as u64);
    if from > to {
        return Err(ApiError::ProofUnavailable);
    }
    let proof = state
        .db(move |conn| Ok(ledger::consistency_proof(conn, from, to)?))
        .await?;
    Ok(web::Json(ConsistencyProof {
        from,
        to,
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

fn instant(raw: Option<&str>, field: &str) -> Result<Option<chrono::NaiveDateTime>, ApiError> {
    raw.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.naive_utc())
            .map_err(|_| ApiError::field(field, "must be an RFC 3339 timestamp"))
    })
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
