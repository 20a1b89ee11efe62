//! Per-patient e-consent: registration, changes, withdrawals, reads and
//! FHIR export. Finding a patient and recording their status are in
//! `patients.rs`, the re-consent work list in `reconsent.rs`.
//!
//! Every write is one transaction that also settles idempotency: the
//! `(hospital, Idempotency-Key)` pair is unique in the database, a retry with
//! the same body gets the original answer back, and a retry with another body
//! gets 409.

use super::access;
use super::extract::IdempotencyKey;
use super::patients::known_pseudonym;
use super::portal::QrWanted;
use super::state::AppState;
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal};
use crate::consent::document::FieldProblem;
use crate::consent::fhir::{export_consent, FhirConsentContext};
use crate::consent::{
    derive_consent, ConsentSnapshot, ConsentStatus, Decision, DocumentFamily, DocumentStatus,
    DocumentVersion, DocumentVersionId, EventKind, ItemBasis, Person, ScopeItemKey, VersionHistory,
};
use crate::db::consents::{self as store, EventRow, StoredEvent};
use crate::db::{documents, ledger, write_transaction, DbConnection};
use crate::error::{ApiError, Problem};
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, LogEntry, Purpose};
use crate::pseudonym::keyring::KeyDomain;
use crate::pseudonym::{LocalPatientId, PatientPseudonym};
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// How far in the future a signature time may lie (clock skew between the
/// hospital and the service).
const MAX_SIGNATURE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Who signed.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SignerInput {
    /// `patient` or `proxy` (代諾者: a parent, guardian or other legal proxy).
    pub kind: String,
    /// For proxies: `parent`, `legal_guardian`, `spouse`, `child`, `sibling`,
    /// `other_relative` or `other`. Coded, so no free text reaches storage.
    #[serde(default)]
    pub relationship: Option<String>,
}

const RELATIONSHIPS: [&str; 7] = [
    "parent",
    "legal_guardian",
    "spouse",
    "child",
    "sibling",
    "other_relative",
    "other",
];

/// A consent signed on a unified consent document version: one decision for
/// every scope item of that version.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The hospital's own patient ID. Turned into a keyed pseudonym at once;
    /// never stored, logged or returned.
    pub local_patient_id: String,
    /// e.g. `cancer-v2`; must be the version in force.
    pub document_version: String,
    /// `permit` or `deny` for every scope item of the version.
    pub decisions: BTreeMap<String, String>,
    pub signer: SignerInput,
    /// Staff identifier of the person who explained the document.
    pub explained_by: String,
    /// RFC 3339 time of signature.
    pub signed_at: String,
    /// `sha256:<hex>` of the signed form (PDF or image) kept by the hospital.
    pub form_hash: String,
}

/// A change of some items, signed on the version in force. Also how
/// re-consent for materially changed or added items is recorded.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub document_version: String,
    pub decisions: BTreeMap<String, String>,
    pub signer: SignerInput,
    pub explained_by: String,
    pub signed_at: String,
    pub form_hash: String,
}

/// Withdrawal of the whole consent (`items` absent) or of some items.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    #[serde(default)]
    pub items: Option<Vec<String>>,
    pub signer: SignerInput,
    pub explained_by: String,
    pub signed_at: String,
    pub form_hash: String,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct EventResponse {
    pub event_id: String,
    /// The patient's pseudonym: how the hospital addresses this patient in
    /// later calls.
    pub patient_ref: String,
    #[schema(value_type = String)]
    pub family: DocumentFamily,
    #[schema(value_type = String)]
    pub kind: EventKind,
    pub document_version: String,
    pub signed_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Registration only, first answer only: the one-time code the hospital
    /// hands to the patient (printed, or as the QR code `?qr=svg` adds) to
    /// open their portal account. Never stored in readable form; a replay does not repeat it
    /// (issue a new one with `POST /v1/patients/{patient_ref}/enrollment-codes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_code: Option<super::portal::IssuedCode>,
}

#[derive(Serialize, ToSchema)]
pub struct ItemStateView {
    pub key: String,
    #[schema(value_type = String)]
    pub decision: Decision,
    /// Why: `consented`, `carried_forward`, `withdrawn`, `needs_reconsent`
    /// or `not_asked`, with the events and versions involved.
    #[schema(value_type = Object)]
    pub basis: ItemBasis,
    /// Present (`true`) when a proxy permitted this item while the patient
    /// was a minor and the patient has since come of age: the patient must
    /// be asked themselves (the work list's `reached_majority`), and until
    /// then releases exclude it as `reached_majority` unless the data-use
    /// policy keeps a proxy's consent (decision 0026). The decision shown
    /// is the record's, unchanged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needs_own_consent: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PatientStatusView {
    /// Set for minors: the day they come of age and must consent themselves.
    pub majority_on: Option<NaiveDate>,
    pub deceased_on: Option<NaiveDate>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentView {
    pub patient_ref: String,
    #[schema(value_type = String)]
    pub family: DocumentFamily,
    pub as_of: DateTime<Utc>,
    /// `none`, `active` or `withdrawn`.
    #[schema(value_type = String)]
    pub status: ConsentStatus,
    pub version_in_force: Option<String>,
    /// One entry per item of the version in force. Anything not `permit` is a
    /// refusal.
    pub items: Vec<ItemStateView>,
    pub patient: PatientStatusView,
}

#[derive(Serialize, ToSchema)]
pub struct EventView {
    pub event_id: String,
    #[schema(value_type = String)]
    pub kind: EventKind,
    pub document_version: String,
    pub signed_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub signer_kind: String,
    pub proxy_relationship: Option<String>,
    pub explained_by: String,
    pub form_hash: String,
    #[schema(value_type = Object)]
    pub decisions: BTreeMap<String, Decision>,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
}

#[derive(Deserialize, IntoParams)]
pub struct ConsentPath {
    /// The patient's pseudonym (`patient_ref`).
    pub patient_ref: String,
    /// `cancer` or `rare_disease`.
    pub family: String,
}

#[derive(Deserialize, IntoParams)]
pub struct PatientPath {
    pub patient_ref: String,
}

#[derive(Deserialize, IntoParams)]
pub struct AsOfQuery {
    /// RFC 3339 instant; defaults to now.
    pub as_of: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentSummary {
    #[schema(value_type = String)]
    pub family: DocumentFamily,
    #[schema(value_type = String)]
    pub status: ConsentStatus,
    pub version_in_force: Option<String>,
    /// The items a proxy permitted while the patient was a minor, now that
    /// the patient has come of age: they need the patient's own answer, and
    /// research releases leave them out until then (decision 0026). Absent
    /// when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs_own_consent: Vec<String>,
}

/// The common, already-validated part of every consent event.
struct Signature {
    signer_kind: &'static str,
    relationship: Option<String>,
    explained_by: String,
    signed_at: DateTime<Utc>,
    form_hash: String,
}

fn parse_signature(
    signer: &SignerInput,
    explained_by: &str,
    signed_at: &str,
    form_hash: &str,
    now: DateTime<Utc>,
    problems: &mut Vec<FieldProblem>,
) -> Option<Signature> {
    let (signer_kind, relationship) = match (signer.kind.as_str(), signer.relationship.as_deref()) {
        ("patient", None) => ("patient", None),
        ("patient", Some(_)) => {
            problems.push(FieldProblem::new(
                "signer.relationship",
                "only a proxy has a relationship",
            ));
            ("patient", None)
        }
        ("proxy", Some(rel)) if RELATIONSHIPS.contains(&rel) => ("proxy", Some(rel.to_owned())),
        ("proxy", _) => {
            problems.push(FieldProblem::new(
                "signer.relationship",
                format!("a proxy needs one of: {}", RELATIONSHIPS.join(", ")),
            ));
            ("proxy", None)
        }
        _ => {
            problems.push(FieldProblem::new(
                "signer.kind",
                "must be `patient` or `proxy`",
            ));
            ("patient", None)
        }
    };
    let explained = explained_by.trim();
    if explained.is_empty() || explained.len() > 128 || explained.chars().any(char::is_control) {
        problems.push(FieldProblem::new(
            "explained_by",
            "must be 1-128 characters",
        ));
    }
    let signed = match DateTime::parse_from_rfc3339(signed_at) {
        Ok(t) if t.with_timezone(&Utc) > now + MAX_SIGNATURE_SKEW => {
            problems.push(FieldProblem::new("signed_at", "lies in the future"));
            None
        }
        // Stored at microsecond precision on both backends; truncate now so
        // the first answer and every replay agree.
        Ok(t) => Some(t.with_timezone(&Utc).trunc_subsecs(6)),
        Err(_) => {
            problems.push(FieldProblem::new(
                "signed_at",
                "must be an RFC 3339 timestamp",
            ));
            None
        }
    };
    let hash_ok = form_hash
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !hash_ok {
        problems.push(FieldProblem::new(
            "form_hash",
            "must be `sha256:` and 64 hex digits",
        ));
    }
    Some(Signature {
        signer_kind,
        relationship,
        explained_by: explained.to_owned(),
        signed_at: signed?,
        form_hash: form_hash.to_ascii_lowercase(),
    })
}

fn parse_version(raw: &str, problems: &mut Vec<FieldProblem>) -> Option<DocumentVersionId> {
    raw.parse::<DocumentVersionId>()
        .map_err(|e| problems.push(FieldProblem::new("document_version", e.to_string())))
        .ok()
}

fn parse_decisions(
    raw: &BTreeMap<String, String>,
    problems: &mut Vec<FieldProblem>,
) -> Vec<(ScopeItemKey, Decision)> {
    raw.iter()
        .filter_map(|(key, decision)| {
            let field = format!("decisions.{key}");
            let Ok(key) = ScopeItemKey::parse(key) else {
                problems.push(FieldProblem::new(field, "not a scope item key"));
                return None;
            };
            let Some(decision) = Decision::parse(decision) else {
                problems.push(FieldProblem::new(field, "must be `permit` or `deny`"));
                return None;
            };
            Some((key, decision))
        })
        .collect()
}

/// The version named by a request, which must be the one in force.
fn active_version(
    state: &AppState,
    conn: &mut DbConnection,
    id: DocumentVersionId,
) -> Result<DocumentVersion, ApiError> {
    let version = state
        .versions
        .load(conn, id)?
        .ok_or(ApiError::UnknownDocumentVersion)?;
    match version.status {
        DocumentStatus::Active => Ok(version),
        other => Err(ApiError::DocumentVersionNotActive {
            status: other.as_str(),
        }),
    }
}

/// Checks decisions against a version's items: every key must be an item of
/// the version; with `complete`, every item needs a decision.
fn check_items<'a>(
    version: &DocumentVersion,
    keys: impl Iterator<Item = &'a ScopeItemKey> + Clone,
    complete: bool,
    field_prefix: &str,
) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for key in keys.clone() {
        if !version.active_items().any(|i| &i.key == key) {
            problems.push(FieldProblem::new(
                format!("{field_prefix}.{key}"),
                format!("not an item of {}", version.id),
            ));
        }
    }
    if complete {
        for item in version.active_items() {
            if !keys.clone().any(|k| k == &item.key) {
                problems.push(FieldProblem::new(
                    format!("{field_prefix}.{}", item.key),
                    "missing decision",
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(problems))
    }
}

fn fail_on(problems: Vec<FieldProblem>) -> Result<(), ApiError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(problems))
    }
}

pub(crate) fn principal(caller: &Caller) -> Result<&Principal, ApiError> {
    match caller {
        Caller::User(p) => Ok(p),
        Caller::Anonymous => Err(ApiError::MissingToken),
    }
}

/// A canonical fingerprint of a request for idempotency. The hospital-local
/// ID is replaced by the keyed pseudonym first: an unkeyed hash of a
/// guessable medical record number would be reversible.
pub(crate) fn request_fingerprint(
    action: &str,
    pseudonym: &PatientPseudonym,
    body: &impl Serialize,
) -> Result<String, ApiError> {
    let mut value = serde_json::to_value(body).map_err(ApiError::internal)?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("local_patient_id");
        obj.insert("action".into(), action.into());
        obj.insert("patient".into(), pseudonym.as_str().into());
    }
    fingerprint(&value)
}

/// `sha256:<hex>` of a request as JSON. serde_json objects are sorted maps,
/// so the serialization, and with it the fingerprint, is canonical.
pub(crate) fn fingerprint(value: &serde_json::Value) -> Result<String, ApiError> {
    let bytes = serde_json::to_vec(value).map_err(ApiError::internal)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
    ))
}

fn event_response(row: &EventRow) -> Result<EventResponse, ApiError> {
    Ok(EventResponse {
        event_id: row.id.clone(),
        patient_ref: row.patient_pseudonym.clone(),
        family: row.family.parse().map_err(ApiError::internal)?,
        kind: EventKind::parse(&row.kind).ok_or_else(|| ApiError::internal("stored event kind"))?,
        document_version: row.document_version_id.clone(),
        signed_at: crate::db::documents::utc(row.signed_at),
        recorded_at: crate::db::documents::utc(row.recorded_at),
        enrollment_code: None,
    })
}

enum Recorded {
    /// The event, the enrollment code of a grant, and how many recall
    /// notices it queued.
    Created(EventRow, Option<super::portal::IssuedCode>, usize),
    Replayed(EventRow),
}

/// The access-log entry of a consent event: the hospital recorded the
/// patient's own decision on `version`.
fn consent_entry(
    pending: &PendingEvent,
    version: DocumentVersionId,
    now: DateTime<Utc>,
) -> LogEntry {
    let action = match pending.kind {
        EventKind::Grant => LogAction::ConsentRegister,
        EventKind::Amend => LogAction::ConsentChange,
        EventKind::WithdrawAll | EventKind::WithdrawItems => LogAction::ConsentWithdraw,
    };
    access::entry_by(
        &pending.hospital_org,
        crate::auth::Role::HospitalStaff.as_str(),
        &pending.recorded_by,
        pending.pseudonym.as_str(),
        access::Access {
            action,
            purpose: Purpose::ConsentManagement,
            basis: LegalBasis::Consent {
                version: version.to_string(),
                items: pending
                    .decisions
                    .iter()
                    .map(|(k, _)| k.to_string())
                    .collect(),
            },
            scope: DataScope::ConsentRecord {
                family: version.family.as_str().to_owned(),
            },
        },
        now,
    )
}

/// An event ready to store, minus the checks that need the database.
struct PendingEvent {
    kind: EventKind,
    /// The local ID sealed for the identity vault (grants only).
    sealed: Option<crate::pseudonym::vault::Sealed>,
    pseudonym: PatientPseudonym,
    hospital_org: String,
    recorded_by: String,
    /// Keyed hashes of the `Idempotency-Key`; the first is stored.
    idempotency_tags: Vec<String>,
    request_hash: String,
    signature: Signature,
    decisions: Vec<(ScopeItemKey, Decision)>,
    /// Whether a grant's answer carries its enrollment code's QR code.
    enrollment_qr: QrWanted,
}

/// Stores a consent event in one transaction: the idempotency check, the
/// caller-specific checks in `prepare`, the patient row and the event.
/// `prepare` returns the document version the event is recorded against and
/// may rewrite the decisions (a whole withdrawal lists no items).
async fn record(
    state: &web::Data<AppState>,
    pending: PendingEvent,
    prepare: impl FnOnce(&mut DbConnection, &PendingEvent, DateTime<Utc>) -> Result<DocumentVersion, ApiError>
        + Send
        + 'static,
) -> Result<HttpResponse, ApiError> {
    let now = state.now();
    let (org, key, hash) = (
        pending.hospital_org.clone(),
        pending.idempotency_tags.clone(),
        pending.request_hash.clone(),
    );
    let shared = state.clone();
    let enrollment_qr = pending.enrollment_qr;
    let outcome = state
        .db(move |conn| {
            let attempt = write_transaction(conn, |conn| {
                // Checks first. A request refused here may still be a retry
                // of one that succeeded (its version since retired, its
                // consent since withdrawn): then the original answer wins.
                let checked =
                    prepare(conn, &pending, now).and_then(|version| match version.effective_from {
                        Some(from) if pending.signature.signed_at < from => Err(ApiError::field(
                            "signed_at",
                            format!("{} was not yet in force at this time", version.id),
                        )),
                        _ => Ok(version),
                    });
                let version = match checked {
                    Ok(version) => version,
                    Err(refusal) => {
                        return match store::find_by_idempotency_key(
                            conn,
                            &pending.hospital_org,
                            &pending.idempotency_tags,
                        )? {
                            Some(existing) => replay(existing, &pending.request_hash),
                            None => Err(refusal),
                        }
                    }
                };
                let row = event_row(&pending, version.id, now);
                // A release being written meets this change at the gate
                // (decision 0029).
                crate::db::gate::change_enters(conn)?;
                // A retry is caught by the unique (hospital, key) constraint
                // below and answered from the stored event; no pre-check
                // round trip on the common path.
                store::record_event(conn, &row, &pending.decisions, pending.sealed.as_ref(), now)?;
                ledger::append(conn, &[consent_entry(&pending, version.id, now)])?;
                // Whatever the event, a live release whose use the patient's
                // consent no longer permits gets a recall notice, in this
                // same transaction (decision 0027).
                let recalled = crate::api::releases::recall::recall_what_consent_no_longer_permits(
                    conn,
                    &shared.data_use,
                    pending.pseudonym.as_str(),
                    version.id.family,
                    crate::api::releases::recall::Cause::Event { id: &row.id },
                    now,
                )?;
                let code = match pending.kind {
                    EventKind::Grant => Some(super::portal::issue_code(
                        &shared.keys,
                        &shared.patients,
                        conn,
                        pending.pseudonym.as_str(),
                        &pending.recorded_by,
                        now,
                    )?),
                    _ => None,
                };
                Ok(Recorded::Created(row, code, recalled))
            });
            match attempt {
                // The key was used before (or two retries raced): answer
                // from the stored event.
                Err(ApiError::UniqueViolation(cause)) => {
                    let existing = store::find_by_idempotency_key(conn, &org, &key)?
                        .ok_or(ApiError::Internal(cause))?;
                    replay(existing, &hash)
                }
                other => other,
            }
        })
        .await?;
    match outcome {
        Recorded::Created(row, code, recalled) => {
            state.log.entries_committed();
            if recalled > 0 {
                state.log.deliveries_queued();
            }
            created(state, &row, code, enrollment_qr)
        }
        Recorded::Replayed(row) => Ok(HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(event_response(&row)?)),
    }
}

/// The stored form of a pending event on `version`.
fn event_row(pending: &PendingEvent, version: DocumentVersionId, now: DateTime<Utc>) -> EventRow {
    EventRow {
        id: uuid::Uuid::new_v4().to_string(),
        patient_pseudonym: pending.pseudonym.as_str().to_owned(),
        family: version.family.as_str().to_owned(),
        document_version_id: version.to_string(),
        kind: pending.kind.as_str().to_owned(),
        signer_kind: pending.signature.signer_kind.to_owned(),
        proxy_relationship: pending.signature.relationship.clone(),
        explained_by: pending.signature.explained_by.clone(),
        signed_at: pending.signature.signed_at.naive_utc(),
        recorded_at: now.naive_utc(),
        form_hash: pending.signature.form_hash.clone(),
        hospital_org: pending.hospital_org.clone(),
        recorded_by: pending.recorded_by.clone(),
        idempotency_key: pending
            .idempotency_tags
            .first()
            .cloned()
            .unwrap_or_default(),
        request_hash: pending.request_hash.clone(),
    }
}

fn created(
    state: &AppState,
    row: &EventRow,
    code: Option<super::portal::IssuedCode>,
    enrollment_qr: QrWanted,
) -> Result<HttpResponse, ApiError> {
    state.metrics.consent_event_recorded(
        EventKind::parse(&row.kind)
            .map(EventKind::as_str)
            .unwrap_or("unknown"),
    );
    tracing::info!(event_id = %row.id, kind = %row.kind, version = %row.document_version_id, "consent event recorded");
    let mut response = event_response(row)?;
    response.enrollment_code = code.map(|c| c.with_qr(enrollment_qr)).transpose()?;
    Ok(HttpResponse::Created().json(response))
}

/// A grant on PostgreSQL in one statement (see
/// `db::consents::grant_in_one_statement`). `None` means: take the general
/// path, which also explains every refusal and replays retries.
async fn grant_fast_path(
    state: &web::Data<AppState>,
    pending: &PendingEvent,
    version: DocumentVersionId,
) -> Result<Option<(EventRow, super::portal::IssuedCode)>, ApiError> {
    let Some(sealed) = pending.sealed.clone() else {
        return Ok(None);
    };
    if state.backend != crate::db::Backend::Postgres {
        return Ok(None);
    }
    let now = state.now();
    let row = event_row(pending, version, now);
    let entry = consent_entry(pending, version, now);
    let code = super::portal::new_code(&state.keys, &state.patients, now)?;
    let decisions = pending.decisions.clone();
    let shared = state.clone();
    state
        .db(move |conn| {
            let Some(content) = shared.versions.content(conn, version)? else {
                return Ok(None);
            };
            if check_items(
                &content,
                decisions.iter().map(|(k, _)| k),
                true,
                "decisions",
            )
            .is_err()
            {
                return Ok(None);
            }
            let extras = store::GrantExtras {
                entry: &entry,
                code_hash: &code.hash,
                code_expires_at: code.issued.expires_at.naive_utc(),
            };
            Ok(
                match store::grant_in_one_statement(conn, &row, &decisions, &sealed, &extras) {
                    Ok(true) => Some((row, code.issued)),
                    Ok(false) | Err(_) => None,
                },
            )
        })
        .await
}

fn replay(existing: EventRow, request_hash: &str) -> Result<Recorded, ApiError> {
    if existing.request_hash == request_hash {
        Ok(Recorded::Replayed(existing))
    } else {
        Err(ApiError::IdempotencyKeyReused)
    }
}

/// Loads an existing patient and checks the caller may act on them. Missing
/// and forbidden look the same.
pub(crate) async fn patient_for(
    state: &web::Data<AppState>,
    caller: &Caller,
    action: Action,
    patient_ref: &str,
) -> Result<(PatientPseudonym, store::PatientRow), ApiError> {
    principal(caller)?;
    let pseudonym = PatientPseudonym::parse(patient_ref).ok_or(ApiError::NotFound)?;
    let (state_in, caller, key) = (state.clone(), caller.clone(), pseudonym.clone());
    let row = state
        .db(move |conn| visible_patient(&state_in, conn, &caller, action, &key))
        .await?;
    Ok((pseudonym, row))
}

/// The patient row, if the caller may act on it; missing and forbidden look
/// the same.
fn visible_patient(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    pseudonym: &PatientPseudonym,
) -> Result<store::PatientRow, ApiError> {
    let row = store::find_patient(conn, pseudonym.as_str())?.ok_or(ApiError::NotFound)?;
    state.authorize_patient(caller, action, pseudonym.as_str(), &row.hospital_org, &[])?;
    Ok(row)
}

/// A logged read of one patient's consent record in one family, on one
/// pooled connection: the patient with their events (and the family's
/// published version count, which keeps the cached version history
/// current), and the read's log entry. Staff of the patient's own hospital
/// on PostgreSQL get both in one statement (`own_record_logged`); everyone
/// else in two, authorized in between (decision 0016). A caller that may
/// not see the patient is refused before anything is shown or logged, with
/// the same 404 as for a patient that does not exist; `shape` sees only
/// what an authorized caller may.
async fn read_consent_record<T, F>(
    state: &web::Data<AppState>,
    caller: &Caller,
    patient_ref: &str,
    family: DocumentFamily,
    shape: F,
) -> Result<ConsentRecordRead<T>, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Vec<StoredEvent>, &VersionHistory, DateTime<Utc>) -> Result<T, ApiError>
        + Send
        + 'static,
{
    principal(caller)?;
    let pseudonym = PatientPseudonym::parse(patient_ref).ok_or(ApiError::NotFound)?;
    let now = state.now();
    let (state_in, caller) = (state.clone(), caller.clone());
    state
        .read_then_log(move |conn| {
            let (record, unwritten) =
                match own_record_logged(&state_in, conn, &caller, &pseudonym, family, now)? {
                    Some(record) => (record, Vec::new()),
                    None => {
                        let record = store::patient_record(conn, pseudonym.as_str(), family)?
                            .ok_or(ApiError::NotFound)?;
                        state_in.authorize_patient(
                            &caller,
                            Action::ConsentRead,
                            pseudonym.as_str(),
                            &record.patient.hospital_org,
                            &[],
                        )?;
                        let entry = read_entry(
                            &caller,
                            &record.patient.hospital_org,
                            &pseudonym,
                            family,
                            now,
                        )?;
                        (record, vec![entry])
                    }
                };
            let history = state_in
                .histories
                .current(conn, family, record.published_versions)?;
            let value = shape(record.events, &history, now)?;
            Ok((
                ConsentRecordRead {
                    pseudonym,
                    patient: record.patient,
                    now,
                    value,
                },
                unwritten,
            ))
        })
        .await
}

/// The common case of a consent read in one statement: staff reading a
/// patient of their own hospital. Policy is asked first, about a patient of
/// the caller's hospital; the statement then reads the patient, and writes
/// the read's entry, only if the patient is one. So what is read and logged
/// is exactly what the general path would read and log. `None`: nothing was
/// read or written, and the general path decides.
fn own_record_logged(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    pseudonym: &PatientPseudonym,
    family: DocumentFamily,
    now: DateTime<Utc>,
) -> Result<Option<store::PatientRecord>, ApiError> {
    let own_hospital = &principal(caller)?.org;
    let resource = Resource::Patient {
        pseudonym: pseudonym.as_str(),
        hospital: own_hospital,
        centers: &[],
    };
    if !state
        .policy
        .is_allowed(caller, Action::ConsentRead, &resource)
    {
        return Ok(None);
    }
    let entry = read_entry(caller, own_hospital, pseudonym, family, now)?;
    Ok(store::own_patient_record_logged(
        conn,
        pseudonym.as_str(),
        family,
        own_hospital,
        &entry,
    )?)
}

/// What [`read_consent_record`] read, and when.
struct ConsentRecordRead<T> {
    pseudonym: PatientPseudonym,
    patient: store::PatientRow,
    now: DateTime<Utc>,
    value: T,
}

/// The log entry of a read of one consent record.
fn read_entry(
    caller: &Caller,
    hospital: &str,
    pseudonym: &PatientPseudonym,
    family: DocumentFamily,
    now: DateTime<Utc>,
) -> Result<LogEntry, ApiError> {
    Ok(access::read(
        principal(caller)?,
        hospital,
        pseudonym.as_str(),
        LogAction::ConsentRead,
        DataScope::ConsentRecord {
            family: family.as_str().to_owned(),
        },
        now,
    ))
}

fn family_of(raw: &str) -> Result<DocumentFamily, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// Events, history and the snapshot at `at`, read in one connection.
pub(crate) fn snapshot(
    conn: &mut DbConnection,
    pseudonym: &str,
    family: DocumentFamily,
    at: DateTime<Utc>,
) -> Result<(Vec<StoredEvent>, VersionHistory, ConsentSnapshot), ApiError> {
    // Storage returns events in the order they took effect.
    let events = store::events_for_patient(conn, pseudonym, family)?;
    let history = documents::history(conn, family)?;
    let snap = snapshot_of(&events, &history, at);
    Ok((events, history, snap))
}

/// The consent at `at` of stored events, in the order they took effect.
fn snapshot_of(
    events: &[StoredEvent],
    history: &VersionHistory,
    at: DateTime<Utc>,
) -> ConsentSnapshot {
    let domain: Vec<_> = events.iter().map(|e| e.event.clone()).collect();
    derive_consent(&domain, history, at)
}

/// A patient's consent status in each family with any event, at `at`.
pub(crate) fn consent_summaries(
    conn: &mut DbConnection,
    pseudonym: &str,
    person: &Person,
    at: DateTime<Utc>,
) -> Result<Vec<ConsentSummary>, ApiError> {
    let mut out = Vec::new();
    for family in DocumentFamily::ALL {
        let (events, _, snap) = snapshot(conn, pseudonym, family, at)?;
        if !events.is_empty() {
            out.push(ConsentSummary {
                family,
                status: snap.status,
                version_in_force: snap
                    .version_in_force
                    .map(|n| DocumentVersionId::new(family, n).to_string()),
                needs_own_consent: snap
                    .lapsed_at_majority(person)
                    .map(|i| i.key.to_string())
                    .collect(),
            });
        }
    }
    Ok(out)
}

fn require_active(
    conn: &mut DbConnection,
    pending: &PendingEvent,
    family: DocumentFamily,
) -> Result<(), ApiError> {
    let (_, _, snap) = snapshot(
        conn,
        pending.pseudonym.as_str(),
        family,
        pending.signature.signed_at,
    )?;
    if snap.status == ConsentStatus::Active {
        Ok(())
    } else {
        Err(ApiError::NoActiveConsent)
    }
}

/// Registers a patient's e-consent on the unified consent document version in
/// force. Requires `hospital_staff`; the patient belongs to the caller's
/// hospital.
#[utoipa::path(tag = "consents", request_body = GrantRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per hospital; a retry with the same body returns the original event"), QrWanted),
    responses(
        (status = 201, body = EventResponse),
        (status = 200, body = EventResponse, description = "Idempotent replay of an earlier identical request"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/consents")]
pub async fn register_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    enrollment_qr: web::Query<QrWanted>,
    body: web::Json<GrantRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    let body = body.into_inner();
    let now = state.now();
    let mut problems = Vec::new();
    let local_id = LocalPatientId::parse(&body.local_patient_id)
        .map_err(|m| problems.push(FieldProblem::new("local_patient_id", m)))
        .ok();
    let version_id = parse_version(&body.document_version, &mut problems);
    let decisions = parse_decisions(&body.decisions, &mut problems);
    let signature = parse_signature(
        &body.signer,
        &body.explained_by,
        &body.signed_at,
        &body.form_hash,
        now,
        &mut problems,
    );
    fail_on(problems)?;
    let (Some(local_id), Some(version_id), Some(signature)) = (local_id, version_id, signature)
    else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let pseudonym = if state.keys.newest_first(KeyDomain::Patient).count() > 1 {
        known_pseudonym(&state, &p.org, &local_id)
            .await?
            .map(|(pseudonym, _)| pseudonym)
            .unwrap_or_else(|| state.keys.patient(&p.org, &local_id))
    } else {
        state.keys.patient(&p.org, &local_id)
    };
    state.authorize_patient(
        &caller,
        Action::ConsentRegister,
        pseudonym.as_str(),
        &p.org,
        &[],
    )?;
    let sealed = state
        .keys
        .seal(&p.org, &pseudonym, &local_id)
        .map_err(ApiError::internal)?;
    let pending = PendingEvent {
        kind: EventKind::Grant,
        sealed: Some(sealed),
        request_hash: request_fingerprint("grant", &pseudonym, &body)?,
        pseudonym,
        hospital_org: p.org.clone(),
        recorded_by: p.subject.clone(),
        idempotency_tags: state.keys.idempotency_tags(&p.org, &idempotency.0),
        signature,
        decisions,
        enrollment_qr: enrollment_qr.into_inner(),
    };
    if let Some((row, code)) = grant_fast_path(&state, &pending, version_id).await? {
        state.log.entries_committed();
        return created(&state, &row, Some(code), pending.enrollment_qr);
    }
    let shared = state.clone();
    record(&state, pending, move |conn, pending, _| {
        let version = active_version(&shared, conn, version_id)?;
        check_items(
            &version,
            pending.decisions.iter().map(|(k, _)| k),
            true,
            "decisions",
        )?;
        Ok(version)
    })
    .await
}

/// Changes some items of a patient's consent, signed on the version in force.
/// Re-consent for materially changed or added items is recorded this way.
#[utoipa::path(tag = "consents", params(ConsentPath, ("Idempotency-Key" = String, Header, description = "Unique per hospital")),
    request_body = ChangeRequest,
    responses((status = 201, body = EventResponse), (status = 200, body = EventResponse), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/patients/{patient_ref}/consents/{family}/changes")]
pub async fn change_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    path: web::Path<ConsentPath>,
    body: web::Json<ChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let family = family_of(&path.family)?;
    let (pseudonym, patient) =
        patient_for(&state, &caller, Action::ConsentChange, &path.patient_ref).await?;
    let p = principal(&caller)?.clone();
    let body = body.into_inner();
    let mut problems = Vec::new();
    let version_id = parse_version(&body.document_version, &mut problems);
    let decisions = parse_decisions(&body.decisions, &mut problems);
    if body.decisions.is_empty() {
        problems.push(FieldProblem::new("decisions", "name at least one item"));
    }
    if version_id.is_some_and(|v| v.family != family) {
        problems.push(FieldProblem::new(
            "document_version",
            format!("must be a {family} version"),
        ));
    }
    let signature = parse_signature(
        &body.signer,
        &body.explained_by,
        &body.signed_at,
        &body.form_hash,
        state.now(),
        &mut problems,
    );
    fail_on(problems)?;
    let (Some(version_id), Some(signature)) = (version_id, signature) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let pending = PendingEvent {
        kind: EventKind::Amend,
        sealed: None,
        request_hash: request_fingerprint("change", &pseudonym, &(&family, &body))?,
        pseudonym,
        hospital_org: patient.hospital_org,
        recorded_by: p.subject,
        idempotency_tags: state.keys.idempotency_tags(&p.org, &idempotency.0),
        signature,
        decisions,
        enrollment_qr: QrWanted::default(),
    };
    let shared = state.clone();
    record(&state, pending, move |conn, pending, _| {
        let version = active_version(&shared, conn, version_id)?;
        check_items(
            &version,
            pending.decisions.iter().map(|(k, _)| k),
            false,
            "decisions",
        )?;
        require_active(conn, pending, family)?;
        Ok(version)
    })
    .await
}

/// Withdraws a patient's whole consent in a family, or some items of it.
#[utoipa::path(tag = "consents", params(ConsentPath, ("Idempotency-Key" = String, Header, description = "Unique per hospital")),
    request_body = WithdrawalRequest,
    responses((status = 201, body = EventResponse), (status = 200, body = EventResponse), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/patients/{patient_ref}/consents/{family}/withdrawals")]
pub async fn withdraw_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    path: web::Path<ConsentPath>,
    body: web::Json<WithdrawalRequest>,
) -> Result<HttpResponse, ApiError> {
    let family = family_of(&path.family)?;
    let (pseudonym, patient) =
        patient_for(&state, &caller, Action::ConsentWithdraw, &path.patient_ref).await?;
    let p = principal(&caller)?.clone();
    let body = body.into_inner();
    let mut problems = Vec::new();
    let items: Option<Vec<ScopeItemKey>> = body.items.as_ref().map(|keys| {
        if keys.is_empty() {
            problems.push(FieldProblem::new(
                "items",
                "omit `items` to withdraw everything, or name at least one",
            ));
        }
        keys.iter()
            .enumerate()
            .filter_map(|(i, k)| {
                ScopeItemKey::parse(k)
                    .map_err(|e| {
                        problems.push(FieldProblem::new(format!("items[{i}]"), e.to_string()))
                    })
                    .ok()
            })
            .collect()
    });
    let signature = parse_signature(
        &body.signer,
        &body.explained_by,
        &body.signed_at,
        &body.form_hash,
        state.now(),
        &mut problems,
    );
    fail_on(problems)?;
    let Some(signature) = signature else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let (kind, decisions) = match &items {
        None => (EventKind::WithdrawAll, Vec::new()),
        Some(keys) => (
            EventKind::WithdrawItems,
            keys.iter().map(|k| (k.clone(), Decision::Deny)).collect(),
        ),
    };
    let pending = PendingEvent {
        kind,
        sealed: None,
        request_hash: request_fingerprint("withdraw", &pseudonym, &(&family, &body))?,
        pseudonym,
        hospital_org: patient.hospital_org,
        recorded_by: p.subject,
        idempotency_tags: state.keys.idempotency_tags(&p.org, &idempotency.0),
        signature,
        decisions,
        enrollment_qr: QrWanted::default(),
    };
    record(&state, pending, move |conn, pending, _| {
        // A withdrawal is recorded against the version in force; without one
        // there can be no consent to withdraw.
        let in_force = documents::list_family(conn, family)?
            .into_iter()
            .find(|v| v.status == DocumentStatus::Active)
            .ok_or(ApiError::NoActiveConsent)?;
        check_items(
            &in_force,
            pending.decisions.iter().map(|(k, _)| k),
            false,
            "items",
        )?;
        require_active(conn, pending, family)?;
        Ok(in_force)
    })
    .await
}

fn parse_as_of(raw: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    match raw {
        None => Ok(now),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::field("as_of", "must be an RFC 3339 timestamp")),
    }
}

/// A patient's consent in one family as in force now, or at `as_of`.
/// Every item carries the reason for its decision.
#[utoipa::path(tag = "consents", params(ConsentPath, AsOfQuery),
    responses((status = 200, body = ConsentView), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/patients/{patient_ref}/consents/{family}")]
pub async fn read_consent(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
    query: web::Query<AsOfQuery>,
) -> Result<web::Json<ConsentView>, ApiError> {
    let family = family_of(&path.family)?;
    // Checked before anything is read; the moment of reading is the default.
    let as_of = match query.as_of.as_deref() {
        Some(raw) => Some(parse_as_of(Some(raw), state.now())?),
        None => None,
    };
    let ConsentRecordRead {
        pseudonym,
        patient,
        now: _,
        value: (as_of, snap),
    } = read_consent_record(
        &state,
        &caller,
        &path.patient_ref,
        family,
        move |events, history, now| {
            let as_of = as_of.unwrap_or(now);
            Ok((as_of, snapshot_of(&events, history, as_of)))
        },
    )
    .await?;
    Ok(web::Json(ConsentView {
        patient_ref: pseudonym.to_string(),
        family,
        as_of,
        status: snap.status,
        version_in_force: snap
            .version_in_force
            .map(|n| DocumentVersionId::new(family, n).to_string()),
        items: snap
            .items
            .into_iter()
            .map(|i| ItemStateView {
                key: i.key.to_string(),
                decision: i.decision,
                needs_own_consent: i.lapsed_at_majority(&patient.person(), as_of),
                basis: i.basis,
            })
            .collect(),
        patient: PatientStatusView {
            majority_on: patient.majority_on,
            deceased_on: patient.deceased_on,
        },
    }))
}

/// Every consent event of a patient in one family, oldest first. Nothing is
/// ever overwritten, so this is the full history.
#[utoipa::path(tag = "consents", params(ConsentPath),
    responses((status = 200, body = EventList), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/patients/{patient_ref}/consents/{family}/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
) -> Result<web::Json<EventList>, ApiError> {
    let family = family_of(&path.family)?;
    let events = read_consent_record(
        &state,
        &caller,
        &path.patient_ref,
        family,
        |events, _, _| Ok(events),
    )
    .await?
    .value;
    Ok(web::Json(EventList {
        events: events
            .into_iter()
            .map(|e| EventView {
                event_id: e.row.id,
                kind: e.event.kind,
                document_version: e.row.document_version_id,
                signed_at: e.event.signed_at,
                recorded_at: e.event.recorded_at,
                signer_kind: e.row.signer_kind,
                proxy_relationship: e.row.proxy_relationship,
                explained_by: e.row.explained_by,
                form_hash: e.row.form_hash,
                decisions: e
                    .event
                    .decisions
                    .into_iter()
                    .map(|(k, d)| (k.to_string(), d))
                    .collect(),
            })
            .collect(),
    }))
}

/// The patient's current consent as an HL7 FHIR R4 `Consent` resource: one
/// provision per scope item, coded with the item key and GA4GH DUO terms;
/// `policy.uri` is the canonical URI of the document version.
#[utoipa::path(tag = "consents", params(ConsentPath),
    responses((status = 200, content_type = "application/fhir+json", body = Object), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/patients/{patient_ref}/consents/{family}/fhir")]
pub async fn export_fhir(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
) -> Result<HttpResponse, ApiError> {
    let family = family_of(&path.family)?;
    let ConsentRecordRead {
        pseudonym,
        patient,
        now,
        value: (events, snap),
    } = read_consent_record(
        &state,
        &caller,
        &path.patient_ref,
        family,
        |events, history, now| {
            let snap = snapshot_of(&events, history, now);
            Ok((events, snap))
        },
    )
    .await?;
    // The latest event in force says who signed and when.
    let latest = events
        .iter()
        .rev()
        .find(|e| e.event.signed_at <= now)
        .ok_or(ApiError::NotFound)?;
    let version = snap.version_in_force.ok_or(ApiError::NotFound)?;
    let ctx = FhirConsentContext {
        patient_pseudonym: pseudonym.as_str(),
        family,
        hospital_org: &patient.hospital_org,
        policy_uri: state.policy_uri(DocumentVersionId::new(family, version)),
        signed_at: latest.event.signed_at,
        proxy_relationship: latest.row.proxy_relationship.as_deref(),
    };
    let resource = export_consent(&ctx, &snap, &state.catalog);
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(resource))
}
