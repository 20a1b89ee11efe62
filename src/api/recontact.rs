//! Recontact (リコンタクト) under dual control.
//!
//! A review committee opens a request with a reason; two different
//! governance officers approve it; only then may the patient's own hospital
//! unseal the local patient ID. The patient's *current* consent must permit
//! recontact at every step, and every step is recorded.

use super::consents::{principal, snapshot};
use super::samples::parse_genome_id;
use super::state::AppState;
use crate::auth::policy::Action;
use crate::auth::{Caller, Role};
use crate::consent::{DocumentFamily, ScopeItemKey};
use crate::db::recontact::{self as store, RequestRow, StepRow};
use crate::db::{consents as patients, ledger, samples, write_transaction, DbConnection};
use crate::error::{ApiError, Problem};
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, Purpose};
use crate::pseudonym::PatientPseudonym;
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const REQUIRED_APPROVALS: usize = 2;
const RECONTACT_ITEM: &str = "recontact";

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The sample whose patient should be recontacted.
    pub genome_id: String,
    /// `cancer` or `rare_disease`: whose consent to recontact applies.
    pub family: String,
    /// Why, in words the patient's hospital can pass on.
    pub reason: String,
    /// The researcher or project the committee relays for, if any.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StepView {
    pub seq: i32,
    /// `opened`, `approved`, `rejected` or `unsealed`.
    pub step: String,
    pub actor: String,
    pub actor_org: String,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct RecontactView {
    pub id: String,
    pub genome_id: String,
    pub family: String,
    pub reason: String,
    pub on_behalf_of: Option<String>,
    /// `pending`, `approved`, `rejected` or `unsealed`.
    pub state: String,
    pub approvals: usize,
    pub steps: Vec<StepView>,
}

#[derive(Serialize, ToSchema)]
pub struct RecontactList {
    pub requests: Vec<RecontactView>,
}

/// What the patient's hospital receives when it unseals.
#[derive(Serialize, ToSchema)]
pub struct UnsealedIdentity {
    pub request_id: String,
    pub family: String,
    pub reason: String,
    /// The hospital's own patient ID, opened from the vault.
    pub local_patient_id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct RequestPath {
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct StateQuery {
    /// `pending` (default), `approved`, `rejected` or `unsealed`.
    pub state: Option<String>,
}

/// The log entry of a recontact step. Unsealing touches the sealed
/// identity; every other step the sample it concerns.
fn step_entry(
    p: &crate::auth::Principal,
    request: &RequestRow,
    action: LogAction,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::ledger::entry::LogEntry {
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
    super::access::entry(
        p,
        role,
        &request.patient_pseudonym,
        super::access::Access {
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

fn view(request: RequestRow, steps: Vec<StepRow>) -> RecontactView {
    RecontactView {
        approvals: steps.iter().filter(|s| s.step == "approved").count(),
        id: request.id,
        genome_id: request.genome_id,
        family: request.family,
        reason: request.reason,
        on_behalf_of: request.on_behalf_of,
        state: request.state,
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
    }
}

/// Deny by default: true only if the patient is alive and their consent in
/// force now permits recontact.
fn recontact_permitted(
    conn: &mut DbConnection,
    pseudonym: &str,
    family: DocumentFamily,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let Some(patient) = patients::find_patient(conn, pseudonym)? else {
        return Ok(false);
    };
    if patient.deceased_on.is_some() {
        return Ok(false);
    }
    let (_, _, snap) = snapshot(conn, pseudonym, family, now)?;
    let item = ScopeItemKey::parse(RECONTACT_ITEM).map_err(ApiError::internal)?;
    Ok(snap.permits(&item))
}

/// Loads a request and checks `action` on its patient.
fn request_for(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<RequestRow, ApiError> {
    let request = store::find(conn, id)?.ok_or(ApiError::NotFound)?;
    state.authorize_patient(
        caller,
        action,
        &request.patient_pseudonym,
        &request.hospital_org,
        &[],
    )?;
    Ok(request)
}

fn family_of(request: &RequestRow) -> Result<DocumentFamily, ApiError> {
    request.family.parse().map_err(ApiError::internal)
}

fn note_of(body: &Option<web::Json<StepRequest>>) -> Result<Option<String>, ApiError> {
    let note = body.as_ref().and_then(|b| b.note.clone());
    if note
        .as_ref()
        .is_some_and(|n| n.len() > 2000 || n.chars().any(|c| c.is_control() && c != '\n'))
    {
        return Err(ApiError::field(
            "note",
            "at most 2000 characters of plain text",
        ));
    }
    Ok(note)
}

/// Opens a recontact request (review committee). Refused unless the
/// patient's current consent permits recontact.
#[utoipa::path(tag = "recontact", request_body = OpenRequest,
    responses((status = 201, body = RecontactView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/recontact-requests")]
pub async fn open_request(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<OpenRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    if p.has(Role::Researcher) && !p.has(Role::ReviewCommittee) {
        return Err(ApiError::RecontactRequiresCommittee);
    }
    let genome_id = parse_genome_id(&body.genome_id, "genome_id")?;
    let family: DocumentFamily = body
        .family
        .parse()
        .map_err(|e: crate::consent::ids::IdError| ApiError::field("family", e.to_string()))?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.len() > 2000 {
        return Err(ApiError::field("reason", "1-2000 characters"));
    }
    let on_behalf_of = body.on_behalf_of.clone();
    let now = state.now();
    let shared = state.clone();
    let (request, steps) = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let sample =
                    samples::find(conn, &genome_id.to_string())?.ok_or(ApiError::NotFound)?;
                shared.authorize_patient(
                    &caller,
                    Action::RecontactOpen,
                    &sample.patient_pseudonym,
                    &sample.hospital_org,
                    &[],
                )?;
                if !recontact_permitted(conn, &sample.patient_pseudonym, family, now)? {
                    return Err(ApiError::RecontactNotPermitted);
                }
                let request = RequestRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    patient_pseudonym: sample.patient_pseudonym,
                    hospital_org: sample.hospital_org,
                    family: family.as_str().to_owned(),
                    genome_id: sample.genome_id,
                    reason,
                    on_behalf_of,
                    state: "pending".into(),
                    opened_at: now.naive_utc(),
                };
                store::insert_request(conn, &request)?;
                store::append_step(conn, &request.id, "opened", &p.subject, &p.org, None, now)?;
                ledger::append(
                    conn,
                    &[step_entry(&p, &request, LogAction::RecontactOpen, now)],
                )?;
                let steps = store::steps_of(conn, &request.id)?;
                Ok((request, steps))
            })
        })
        .await?;
    state.log.entries_committed();
    tracing::info!(request_id = %request.id, "recontact request opened");
    Ok(HttpResponse::Created().json(view(request, steps)))
}

/// Approves a pending request (governance). The second approval by a
/// different person makes it approved; the opener cannot approve.
#[utoipa::path(tag = "recontact", params(RequestPath), request_body(content = StepRequest, description = "Optional note"),
    responses((status = 200, body = RecontactView), (status = 409, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/recontact-requests/{id}/approvals")]
pub async fn approve(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<RequestPath>,
    body: Option<web::Json<StepRequest>>,
) -> Result<web::Json<RecontactView>, ApiError> {
    decide(state, caller, path.into_inner().id, note_of(&body)?, true).await
}

/// Rejects a pending request (governance). Closed for good.
#[utoipa::path(tag = "recontact", params(RequestPath), request_body(content = StepRequest, description = "Optional note"),
    responses((status = 200, body = RecontactView), (status = 409, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/recontact-requests/{id}/rejections")]
pub async fn reject(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<RequestPath>,
    body: Option<web::Json<StepRequest>>,
) -> Result<web::Json<RecontactView>, ApiError> {
    decide(state, caller, path.into_inner().id, note_of(&body)?, false).await
}

async fn decide(
    state: web::Data<AppState>,
    caller: Caller,
    id: String,
    note: Option<String>,
    approving: bool,
) -> Result<web::Json<RecontactView>, ApiError> {
    let p = principal(&caller)?.clone();
    let now = state.now();
    let shared = state.clone();
    let (request, steps) = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let request = request_for(&shared, conn, &caller, Action::RecontactApprove, &id)?;
                if request.state != "pending" {
                    return Err(ApiError::RecontactClosed {
                        state: request.state,
                    });
                }
                let steps = store::steps_of(conn, &id)?;
                if approving {
                    if steps
                        .iter()
                        .any(|s| s.step == "opened" && s.actor == p.subject)
                    {
                        return Err(ApiError::DuplicateApprover(
                            "the person who opened the request cannot approve it",
                        ));
                    }
                    if steps
                        .iter()
                        .any(|s| s.step == "approved" && s.actor == p.subject)
                    {
                        return Err(ApiError::DuplicateApprover(
                            "you already approved this request; a second person must",
                        ));
                    }
                    if !recontact_permitted(
                        conn,
                        &request.patient_pseudonym,
                        family_of(&request)?,
                        now,
                    )? {
                        return Err(ApiError::RecontactNotPermitted);
                    }
                }
                store::append_step(
                    conn,
                    &id,
                    if approving { "approved" } else { "rejected" },
                    &p.subject,
                    &p.org,
                    note.as_deref(),
                    now,
                )?;
                let action = if approving {
                    LogAction::RecontactApprove
                } else {
                    LogAction::RecontactReject
                };
                ledger::append(conn, &[step_entry(&p, &request, action, now)])?;
                let approvals =
                    steps.iter().filter(|s| s.step == "approved").count() + usize::from(approving);
                if !approving {
                    store::transition(conn, &id, "pending", "rejected")?;
                } else if approvals >= REQUIRED_APPROVALS {
                    store::transition(conn, &id, "pending", "approved")?;
                }
                let request = store::find(conn, &id)?.ok_or(ApiError::NotFound)?;
                Ok((request, store::steps_of(conn, &id)?))
            })
        })
        .await
        .map_err(|e| match e {
            // Two approvals by one person racing each other: the database's
            // unique index decides.
            ApiError::UniqueViolation(_) => ApiError::DuplicateApprover(
                "you already approved this request; a second person must",
            ),
            other => other,
        })?;
    state.log.entries_committed();
    tracing::info!(request_id = %request.id, state = %request.state, "recontact decision recorded");
    Ok(web::Json(view(request, steps)))
}

/// Releases the local patient ID to the patient's own hospital, once two
/// approvals are in and the consent still permits recontact.
#[utoipa::path(tag = "recontact", params(RequestPath),
    responses((status = 200, body = UnsealedIdentity), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 500, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/recontact-requests/{id}/unseal")]
pub async fn unseal(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<RequestPath>,
) -> Result<web::Json<UnsealedIdentity>, ApiError> {
    let p = principal(&caller)?.clone();
    let id = path.into_inner().id;
    let now = state.now();
    let shared = state.clone();
    let released = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let request = request_for(&shared, conn, &caller, Action::RecontactUnseal, &id)?;
                match request.state.as_str() {
                    "approved" => {}
                    "pending" => return Err(ApiError::InsufficientApprovals),
                    other => {
                        return Err(ApiError::RecontactClosed {
                            state: other.to_owned(),
                        })
                    }
                }
                if !recontact_permitted(
                    conn,
                    &request.patient_pseudonym,
                    family_of(&request)?,
                    now,
                )? {
                    return Err(ApiError::RecontactNotPermitted);
                }
                let pseudonym = PatientPseudonym::parse(&request.patient_pseudonym)
                    .ok_or_else(|| ApiError::internal("stored pseudonym"))?;
                let (sealed_for, sealed) = samples::sealed_identity(conn, pseudonym.as_str())?
                    .ok_or(ApiError::VaultIntegrity)?;
                // Opened before anything is written: a tampered record
                // leaves the request exactly as it was.
                let local = shared
                    .keys
                    .open(&sealed_for, &pseudonym, &sealed)
                    .map_err(|_| ApiError::VaultIntegrity)?;
                store::append_step(conn, &id, "unsealed", &p.subject, &p.org, None, now)?;
                ledger::append(
                    conn,
                    &[step_entry(&p, &request, LogAction::RecontactUnseal, now)],
                )?;
                if !store::transition(conn, &id, "approved", "unsealed")? {
                    return Err(ApiError::RecontactClosed {
                        state: "unsealed".into(),
                    });
                }
                Ok(UnsealedIdentity {
                    request_id: request.id,
                    family: request.family,
                    reason: request.reason,
                    local_patient_id: local.expose().to_owned(),
                })
            })
        })
        .await?;
    state.log.entries_committed();
    tracing::info!(request_id = %released.request_id, "recontact identity released to the patient's hospital");
    Ok(web::Json(released))
}

/// One request with every step.
#[utoipa::path(tag = "recontact", params(RequestPath), responses((status = 200, body = RecontactView), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/recontact-requests/{id}")]
pub async fn get_request(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<RequestPath>,
) -> Result<web::Json<RecontactView>, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let shared = state.clone();
    let (request, steps) = state
        .db(move |conn| {
            let request = request_for(&shared, conn, &caller, Action::RecontactRead, &id)?;
            let steps = store::steps_of(conn, &id)?;
            Ok((request, steps))
        })
        .await?;
    Ok(web::Json(view(request, steps)))
}

/// Requests in one state that the caller may read (the governance work list).
#[utoipa::path(tag = "recontact", params(StateQuery), responses((status = 200, body = RecontactList)))]
#[get("/v1/recontact-requests")]
pub async fn list_requests(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<StateQuery>,
) -> Result<web::Json<RecontactList>, ApiError> {
    principal(&caller)?;
    let wanted = query.state.clone().unwrap_or_else(|| "pending".into());
    if !["pending", "approved", "rejected", "unsealed"].contains(&wanted.as_str()) {
        return Err(ApiError::field(
            "state",
            "pending, approved, rejected or unsealed",
        ));
    }
    let shared = state.clone();
    let requests = state
        .db(move |conn| {
            let mut out = Vec::new();
            for request in store::list_by_state(conn, &wanted)? {
                if shared.policy.is_allowed(
                    &caller,
                    Action::RecontactRead,
                    &crate::auth::policy::Resource::Patient {
                        pseudonym: &request.patient_pseudonym,
                        hospital: &request.hospital_org,
                        centers: &[],
                    },
                ) {
                    let steps = store::steps_of(conn, &request.id)?;
                    out.push(view(request, steps));
                }
            }
            Ok(out)
        })
        .await?;
    Ok(web::Json(RecontactList { requests }))
}
