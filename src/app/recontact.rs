//! Recontact (リコンタクト) under dual control.
//!
//! A review committee opens a request with a reason; two different
//! governance officers approve it; only then may the patient's own hospital
//! unseal the local patient ID. The patient's *current* consent must permit
//! recontact at every step, and every step is recorded and logged.

use super::consents::snapshot;
use super::gates::{principal, recontact_through_a_committee};
use super::idempotency::{write_once, Answered, Replayable, Retry};
use super::{entries, AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal, Role};
use crate::consent::recontact::{RecontactState, RecontactStep, REQUIRED_APPROVALS};
use crate::consent::{DocumentFamily, ScopeItemKey};
use crate::db::recontact::{self as store, RequestRow, StepRow};
use crate::db::{consents as patients, ledger, samples, DbConnection};
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, LogEntry, Purpose};
use crate::pseudonym::genome_id::PrintedId;
use crate::pseudonym::PatientPseudonym;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const RECONTACT_ITEM: &str = "recontact";

/// A committee's request to recontact the patient of a sample.
pub struct Opening {
    pub genome_id: PrintedId,
    /// Whose consent to recontact applies.
    pub family: DocumentFamily,
    /// Why, in words the patient's hospital can pass on.
    pub reason: String,
    /// The researcher or project the committee relays for, if any.
    pub on_behalf_of: Option<String>,
}

/// A governance officer's decision on a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct StepView {
    pub seq: i32,
    /// `opened`, `approved`, `rejected` or `unsealed`.
    pub step: String,
    pub actor: String,
    pub actor_org: String,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RecontactView {
    pub id: String,
    pub genome_id: String,
    pub family: String,
    pub reason: String,
    pub on_behalf_of: Option<String>,
    /// `pending`, `approved`, `rejected` or `unsealed`.
    #[schema(value_type = String)]
    pub state: RecontactState,
    pub approvals: usize,
    pub steps: Vec<StepView>,
}

#[derive(Serialize, ToSchema)]
pub struct RecontactList {
    pub requests: Vec<RecontactView>,
}

/// What the patient's hospital receives when it unseals.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct UnsealedIdentity {
    pub request_id: String,
    pub family: String,
    pub reason: String,
    /// The hospital's own patient ID, opened from the vault.
    pub local_patient_id: String,
}

/// The log entry of a recontact step. Unsealing touches the sealed
/// identity; every other step the sample it concerns.
fn step_entry(
    p: &Principal,
    request: &RequestRow,
    action: LogAction,
    now: DateTime<Utc>,
) -> LogEntry {
    let role = if p.has(Role::HospitalStaff) && p.org == request.hospital_org {
        Role::HospitalStaff
    } else if p.has(Role::Governance) {
        Role::Governance
    } else {
        Role::ReviewCommittee
    };
    let scope = match action {
        LogAction::RecontactUnseal => DataScope::Identity,
        _ => DataScope::Sample {
            genome_id: request.genome_id.clone(),
        },
    };
    entries::entry(
        p,
        role,
        &request.patient_pseudonym,
        entries::Access {
            action,
            purpose: Purpose::Recontact,
            basis: LegalBasis::RecontactApproval {
                request: request.id.clone(),
            },
            scope,
        },
        now,
    )
}

fn is_step(step: &StepRow, kind: RecontactStep) -> bool {
    RecontactStep::parse(&step.step) == Some(kind)
}

fn view(request: RequestRow, steps: Vec<StepRow>) -> Result<RecontactView, AppError> {
    let state = state_of(&request)?;
    Ok(RecontactView {
        approvals: steps
            .iter()
            .filter(|s| is_step(s, RecontactStep::Approved))
            .count(),
        id: request.id,
        genome_id: request.genome_id,
        family: request.family,
        reason: request.reason,
        on_behalf_of: request.on_behalf_of,
        state,
        steps: steps
            .into_iter()
            .map(|s| StepView {
                seq: s.seq,
                step: s.step,
                actor: s.actor,
                actor_org: s.actor_org,
                note: s.note,
                at: crate::db::documents::utc(s.at),
            })
            .collect(),
    })
}

fn state_of(request: &RequestRow) -> Result<RecontactState, AppError> {
    RecontactState::parse(&request.state)
        .ok_or_else(|| AppError::internal("stored recontact state"))
}

/// Deny by default: true only if the patient is alive and their consent in
/// force now permits recontact.
fn recontact_permitted(
    conn: &mut DbConnection,
    pseudonym: &str,
    family: DocumentFamily,
    now: DateTime<Utc>,
) -> Result<bool, AppError> {
    let Some(patient) = patients::find_patient(conn, pseudonym)? else {
        return Ok(false);
    };
    if patient.deceased_on.is_some() {
        return Ok(false);
    }
    let (_, _, snap) = snapshot(conn, pseudonym, family, now)?;
    let item = ScopeItemKey::parse(RECONTACT_ITEM).map_err(AppError::internal)?;
    Ok(snap.permits(&item))
}

/// Refuses unless the request's patient may still be recontacted now.
fn require_permitted(
    conn: &mut DbConnection,
    request: &RequestRow,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let family = request.family.parse().map_err(AppError::internal)?;
    if recontact_permitted(conn, &request.patient_pseudonym, family, now)? {
        Ok(())
    } else {
        Err(AppError::RecontactNotPermitted)
    }
}

/// Loads a request and checks `action` on its patient.
fn request_for(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<RequestRow, AppError> {
    let request = store::find(conn, id)?.ok_or(AppError::NotFound)?;
    ctx.authorize_patient(
        caller,
        action,
        &request.patient_pseudonym,
        &request.hospital_org,
        &[],
    )?;
    Ok(request)
}

/// Opens a recontact request (review committee). Refused unless the
/// patient's current consent permits recontact.
pub fn open(
    ctx: &Context,
    caller: &Caller,
    opening: Opening,
    retry: Option<Retry>,
) -> Result<Answered<RecontactView>, AppError> {
    let p = principal(caller)?;
    recontact_through_a_committee(p)?;
    let replayable = Replayable::of(ctx, p, "recontact_open", retry)?;
    let now = ctx.now();
    let opened = write_once(ctx, replayable.as_ref(), |conn| {
        let sample =
            samples::find(conn, &opening.genome_id.to_string())?.ok_or(AppError::NotFound)?;
        ctx.authorize_patient(
            caller,
            Action::RecontactOpen,
            &sample.patient_pseudonym,
            &sample.hospital_org,
            &[],
        )?;
        if !recontact_permitted(conn, &sample.patient_pseudonym, opening.family, now)? {
            return Err(AppError::RecontactNotPermitted);
        }
        let request = RequestRow {
            id: uuid::Uuid::new_v4().to_string(),
            patient_pseudonym: sample.patient_pseudonym,
            hospital_org: sample.hospital_org,
            family: opening.family.as_str().to_owned(),
            genome_id: sample.genome_id,
            reason: opening.reason.clone(),
            on_behalf_of: opening.on_behalf_of.clone(),
            state: RecontactState::Pending.as_str().into(),
            opened_at: now.naive_utc(),
        };
        store::insert_request(conn, &request)?;
        let opened = RecontactStep::Opened.as_str();
        store::append_step(conn, &request.id, opened, &p.subject, &p.org, None, now)?;
        ledger::append(
            conn,
            &[step_entry(p, &request, LogAction::RecontactOpen, now)],
        )?;
        let steps = store::steps_of(conn, &request.id)?;
        tracing::info!(request_id = %request.id, "recontact request opened");
        view(request, steps)
    })?;
    ctx.log.entries_committed();
    Ok(opened)
}

/// Approves or rejects a pending request (governance). The second approval
/// by a different person makes it approved; the opener cannot approve. A
/// rejection closes it for good.
pub fn decide(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    decision: Decision,
    note: Option<String>,
    retry: Option<Retry>,
) -> Result<Answered<RecontactView>, AppError> {
    let p = principal(caller)?;
    let approving = decision == Decision::Approve;
    let operation = match decision {
        Decision::Approve => "recontact_approval",
        Decision::Reject => "recontact_rejection",
    };
    let replayable = Replayable::of(ctx, p, operation, retry)?;
    let now = ctx.now();
    let decided = write_once(ctx, replayable.as_ref(), |conn| {
            let request = request_for(ctx, conn, caller, Action::RecontactApprove, id)?;
            if state_of(&request)? != RecontactState::Pending {
                return Err(AppError::RecontactClosed {
                    state: request.state,
                });
            }
            let steps = store::steps_of(conn, id)?;
            let by_me = |kind| {
                steps
                    .iter()
                    .any(|s| is_step(s, kind) && s.actor == p.subject)
            };
            if approving {
                if by_me(RecontactStep::Opened) {
                    return Err(AppError::DuplicateApprover(
                        "the person who opened the request cannot approve it",
                    ));
                }
                if by_me(RecontactStep::Approved) {
                    return Err(AppError::DuplicateApprover(
                        "you already approved this request; a second person must",
                    ));
                }
                require_permitted(conn, &request, now)?;
            }
            let (step, action) = match decision {
                Decision::Approve => (RecontactStep::Approved, LogAction::RecontactApprove),
                Decision::Reject => (RecontactStep::Rejected, LogAction::RecontactReject),
            };
            store::append_step(
                conn,
                id,
                step.as_str(),
                &p.subject,
                &p.org,
                note.as_deref(),
                now,
            )?;
            ledger::append(conn, &[step_entry(p, &request, action, now)])?;
            let approvals = steps
                .iter()
                .filter(|s| is_step(s, RecontactStep::Approved))
                .count()
                + usize::from(approving);
            let pending = RecontactState::Pending.as_str();
            if !approving {
                store::transition(conn, id, pending, RecontactState::Rejected.as_str())?;
            } else if approvals >= REQUIRED_APPROVALS {
                store::transition(conn, id, pending, RecontactState::Approved.as_str())?;
            }
            let request = store::find(conn, id)?.ok_or(AppError::NotFound)?;
            tracing::info!(request_id = %request.id, state = %request.state, "recontact decision recorded");
            view(request, store::steps_of(conn, id)?)
        })
        .map_err(|e| match e {
            // Two approvals by one person racing each other: the database's
            // unique index decides.
            AppError::UniqueViolation(_) => AppError::DuplicateApprover(
                "you already approved this request; a second person must",
            ),
            other => other,
        })?;
    ctx.log.entries_committed();
    Ok(decided)
}

/// Releases the local patient ID to the patient's own hospital, once two
/// approvals are in and the consent still permits recontact.
pub fn unseal(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    retry: Option<Retry>,
) -> Result<Answered<UnsealedIdentity>, AppError> {
    let p = principal(caller)?;
    let replayable = Replayable::of(ctx, p, "recontact_unseal", retry)?;
    let now = ctx.now();
    let released = write_once(ctx, replayable.as_ref(), |conn| {
        let request = request_for(ctx, conn, caller, Action::RecontactUnseal, id)?;
        match state_of(&request)? {
            RecontactState::Approved => {}
            RecontactState::Pending => return Err(AppError::InsufficientApprovals),
            closed => {
                return Err(AppError::RecontactClosed {
                    state: closed.as_str().to_owned(),
                })
            }
        }
        require_permitted(conn, &request, now)?;
        let pseudonym = PatientPseudonym::parse(&request.patient_pseudonym)
            .ok_or_else(|| AppError::internal("stored pseudonym"))?;
        let (sealed_for, sealed) =
            samples::sealed_identity(conn, pseudonym.as_str())?.ok_or(AppError::VaultIntegrity)?;
        // Opened before anything is written: a tampered record leaves the
        // request exactly as it was.
        let local = ctx
            .keys
            .open(&sealed_for, &pseudonym, &sealed)
            .map_err(|_| AppError::VaultIntegrity)?;
        let unsealed = RecontactStep::Unsealed.as_str();
        store::append_step(conn, id, unsealed, &p.subject, &p.org, None, now)?;
        ledger::append(
            conn,
            &[step_entry(p, &request, LogAction::RecontactUnseal, now)],
        )?;
        let approved = RecontactState::Approved.as_str();
        if !store::transition(conn, id, approved, RecontactState::Unsealed.as_str())? {
            return Err(AppError::RecontactClosed {
                state: RecontactState::Unsealed.as_str().into(),
            });
        }
        Ok(UnsealedIdentity {
            request_id: request.id,
            family: request.family,
            reason: request.reason,
            local_patient_id: local.expose().to_owned(),
        })
    })?;
    ctx.log.entries_committed();
    tracing::info!(request_id = %released.value.request_id, "recontact identity released to the patient's hospital");
    Ok(released)
}

/// One request with every step.
pub fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<RecontactView, AppError> {
    principal(caller)?;
    let (request, steps) = ctx.read(|conn| {
        let request = request_for(ctx, conn, caller, Action::RecontactRead, id)?;
        let steps = store::steps_of(conn, id)?;
        Ok((request, steps))
    })?;
    view(request, steps)
}

/// Requests in one state that the caller may read (the governance work list).
pub fn list(
    ctx: &Context,
    caller: &Caller,
    state: RecontactState,
) -> Result<RecontactList, AppError> {
    principal(caller)?;
    let requests = ctx.read(|conn| {
        let mut out = Vec::new();
        for request in store::list_by_state(conn, state.as_str())? {
            let readable = ctx.policy.is_allowed(
                caller,
                Action::RecontactRead,
                &Resource::Patient {
                    pseudonym: &request.patient_pseudonym,
                    hospital: &request.hospital_org,
                    centers: &[],
                },
            );
            if readable {
                let steps = store::steps_of(conn, &request.id)?;
                out.push(view(request, steps)?);
            }
        }
        Ok(out)
    })?;
    Ok(RecontactList { requests })
}
