//! Per-patient e-consent: registration, changes, withdrawals, reads and
//! FHIR export. Finding a patient and recording their status are in
//! `patients.rs`, the re-consent work list in `reconsent.rs`.
//!
//! Every write is one transaction that also settles idempotency: the
//! `(hospital, Idempotency-Key)` pair is unique in the database, a retry with
//! the same body gets the original answer back, and a retry with another body
//! gets 409.
//!
//! `record` writes events, `read` reads the record back (logged) and
//! exports it; this module holds the request and response types and what
//! both, and the portal and work list, share.

mod read;
mod record;
pub use read::*;
pub use record::*;

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
