//! Per-patient e-consent: grants, changes and withdrawals (`record`), and
//! logged reads of the record and its FHIR export (`read`). This module
//! holds the commands and views both use, and the snapshots the portal,
//! lookups and the work list share.
//!
//! Every write is one transaction that also settles idempotency: the
//! `(hospital, Idempotency-Key)` pair is unique in the database, a retry with
//! the same request gets the original answer back, and a retry with another
//! request `idempotency_key_reused`.

mod read;
mod record;
pub use read::*;
pub use record::*;

use super::enrollment::IssuedCode;
pub use super::idempotency::Retry;
use super::AppError;
use crate::consent::{
    derive_consent, ConsentSnapshot, ConsentStatus, Decision, DocumentFamily, DocumentVersionId,
    EventKind, ItemBasis, Person, ScopeItemKey, VersionHistory,
};
use crate::db::consents::{self as store, StoredEvent};
use crate::db::{documents, DbConnection};
use crate::pseudonym::{LocalPatientId, PatientPseudonym};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Who signed a consent form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerKind {
    Patient,
    /// A parent, guardian or other legal proxy (代諾者).
    Proxy,
}

impl SignerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignerKind::Patient => "patient",
            SignerKind::Proxy => "proxy",
        }
    }
}

/// A proxy's relationship to the patient: coded, so no free text reaches
/// storage.
pub const RELATIONSHIPS: [&str; 7] = [
    "parent",
    "legal_guardian",
    "spouse",
    "child",
    "sibling",
    "other_relative",
    "other",
];

/// How far in the future a signature time may lie (clock skew between the
/// hospital and the service).
pub const MAX_SIGNATURE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Whether a form signed at `signed_at` was signed by `now`: a few minutes
/// ahead is clocks differing, more is a mistake.
pub fn signed_by(signed_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    signed_at <= now + MAX_SIGNATURE_SKEW
}

/// The signature on a consent form, as the hospital recorded it.
#[derive(Debug, Clone)]
pub struct Signature {
    pub signer: SignerKind,
    /// For a proxy: one of [`RELATIONSHIPS`].
    pub relationship: Option<String>,
    /// Staff identifier of the person who explained the document.
    pub explained_by: String,
    /// At microsecond precision, as both databases store it.
    pub signed_at: DateTime<Utc>,
    /// `sha256:<hex>` (lower case) of the signed form kept by the hospital.
    pub form_hash: String,
}

/// A patient's e-consent on the document version in force: a decision for
/// every scope item of that version.
#[derive(Debug)]
pub struct Grant {
    pub local_patient_id: LocalPatientId,
    pub version: DocumentVersionId,
    pub decisions: Vec<(ScopeItemKey, Decision)>,
    pub signature: Signature,
    pub retry: Retry,
}

/// A change of some items, signed on the version in force; also how
/// re-consent is recorded.
#[derive(Debug, Clone)]
pub struct Change {
    pub patient: PatientPseudonym,
    pub version: DocumentVersionId,
    pub decisions: Vec<(ScopeItemKey, Decision)>,
    pub signature: Signature,
    pub retry: Retry,
}

/// Withdrawal of the whole consent in a family (`items` is `None`) or of
/// some items.
#[derive(Debug, Clone)]
pub struct Withdrawal {
    pub patient: PatientPseudonym,
    pub family: DocumentFamily,
    pub items: Option<Vec<ScopeItemKey>>,
    pub signature: Signature,
    pub retry: Retry,
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
    pub enrollment_code: Option<IssuedCode>,
}

/// A recorded consent event, and whether it is the answer to an earlier
/// identical request.
pub struct Recorded {
    pub event: EventResponse,
    pub replayed: bool,
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

/// Events, history and the snapshot at `at`, read in one connection.
pub(crate) fn snapshot(
    conn: &mut DbConnection,
    pseudonym: &str,
    family: DocumentFamily,
    at: DateTime<Utc>,
) -> Result<(Vec<StoredEvent>, VersionHistory, ConsentSnapshot), AppError> {
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
) -> Result<Vec<ConsentSummary>, AppError> {
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
