//! The access log as others read it: the latest signed checkpoint, the
//! verifier keys, inclusion and consistency proofs (anyone may check the
//! log; proofs are hashes and reveal no entry), and the auditors' queries
//! and screening.

use super::portal::{page_of, AccessPage};
use super::{AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::db::ledger::{self, AuditFilter, CheckpointRow};
use crate::db::DbConnection;
use crate::ledger::entry::Language;
use crate::ledger::screening::ScreeningReport;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct LogKeys {
    /// The checkpoint origin line.
    pub origin: String,
    /// C2SP note verifier keys, current first; older ones verify checkpoints
    /// signed before a key rotation.
    pub verifier_keys: Vec<String>,
}

/// A proof and the signed checkpoint of the tree size it leads to.
pub struct Proven {
    pub checkpoint: CheckpointRow,
    /// Hashes, leaf to root (inclusion) or per RFC 9162 §2.1.4
    /// (consistency).
    pub proof: Vec<[u8; 32]>,
}

#[derive(Serialize, ToSchema)]
pub struct StoredScreeningReport {
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
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

/// Longest period an on-demand screening may cover.
pub const MAX_SCREENING_DAYS: i64 = 31;

/// The latest signed checkpoint as a C2SP signed note; `NotFound` until
/// the first entry is integrated.
pub fn checkpoint(ctx: &Context) -> Result<String, AppError> {
    let cp = ctx
        .read(|conn| Ok(ledger::latest_checkpoint(conn)?))?
        .ok_or(AppError::NotFound)?;
    Ok(cp.note)
}

pub fn keys(ctx: &Context) -> LogKeys {
    LogKeys {
        origin: ctx.log.origin.clone(),
        verifier_keys: ctx.log.verifier_keys.clone(),
    }
}

/// The checkpoint of `size` (the latest when `None`) and `proof` of its
/// tree size, read on one connection.
fn with_checkpoint(
    ctx: &Context,
    size: Option<u64>,
    proof: impl FnOnce(&mut DbConnection, u64) -> Result<Vec<[u8; 32]>, AppError>,
) -> Result<Proven, AppError> {
    ctx.read(|conn| {
        let checkpoint = match size {
            Some(s) => ledger::checkpoint_at(conn, s)?,
            None => ledger::latest_checkpoint(conn)?,
        }
        .ok_or(AppError::ProofUnavailable)?;
        let proof = proof(conn, checkpoint.size as u64)?;
        Ok(Proven { checkpoint, proof })
    })
}

/// That entry `index` is in the tree of `size` (a signed size; the latest
/// when `None`).
pub fn inclusion(ctx: &Context, index: u64, size: Option<u64>) -> Result<Proven, AppError> {
    with_checkpoint(ctx, size, |conn, size| {
        if index >= size {
            return Err(AppError::ProofUnavailable);
        }
        Ok(ledger::inclusion_proof(conn, index, size)?)
    })
}

/// That the tree of `to` (the latest when `None`) extends the tree of
/// `from`.
pub fn consistency(ctx: &Context, from: u64, to: Option<u64>) -> Result<Proven, AppError> {
    with_checkpoint(ctx, to, |conn, to| {
        if from > to {
            return Err(AppError::ProofUnavailable);
        }
        Ok(ledger::consistency_proof(conn, from, to)?)
    })
}

fn authorize_audit(ctx: &Context, caller: &Caller) -> Result<(), AppError> {
    ctx.authorize(caller, Action::LogAudit, &Resource::AccessLog)
}

/// Log entries by organization, actor, action and time, newest first, before
/// arrival number `before` (auditors).
pub fn audit(
    ctx: &Context,
    caller: &Caller,
    filter: AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<AccessPage, AppError> {
    authorize_audit(ctx, caller)?;
    let rows = ctx.read(|conn| Ok(ledger::audit_entries(conn, &filter, before, limit + 1)?))?;
    page_of(rows, limit, Language::En)
}

/// Screens the entries recorded in `[from, to)` now (auditors): entries
/// without a valid legal basis, outside their agreement's purpose or
/// period, and actors with unusual volume. Findings name entries by arrival
/// number, never patients.
pub fn screen(
    ctx: &Context,
    caller: &Caller,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<ScreeningReport, AppError> {
    authorize_audit(ctx, caller)?;
    if to <= from || to - from > chrono::Duration::days(MAX_SCREENING_DAYS) {
        return Err(AppError::field(
            "to",
            "must be after `from` and at most 31 days later",
        ));
    }
    let rule = ctx.screening_volume;
    ctx.read(|conn| Ok(crate::db::screening::screen(conn, from, to, rule)?))
}

/// The periodic screening reports, newest period first (auditors).
pub fn screening_reports(
    ctx: &Context,
    caller: &Caller,
    before: Option<NaiveDateTime>,
    limit: i64,
) -> Result<ScreeningReports, AppError> {
    authorize_audit(ctx, caller)?;
    let rows = ctx.read(|conn| Ok(crate::db::screening::reports_before(conn, before, limit)?))?;
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
                report: serde_json::from_str(&r.report).map_err(AppError::internal)?,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    Ok(ScreeningReports { reports })
}
