//! Reading a patient's consent: the logged record read, its events and
//! its FHIR export.

use super::*;
use crate::app::entries;
use crate::app::gates::principal;
use crate::app::Context;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::consent::fhir::{export_consent, FhirConsentContext};
use crate::ledger::entry::{DataScope, LogAction, LogEntry};

/// A patient's consent in one family as in force now, or at `as_of`.
/// Every item carries the reason for its decision.
pub fn read(
    ctx: &Context,
    caller: &Caller,
    patient: &PatientPseudonym,
    family: DocumentFamily,
    as_of: Option<DateTime<Utc>>,
) -> Result<ConsentView, AppError> {
    let ConsentRecordRead {
        pseudonym,
        patient,
        now: _,
        value: (as_of, snap),
    } = read_consent_record(ctx, caller, patient, family, move |events, history, now| {
        let as_of = as_of.unwrap_or(now);
        Ok((as_of, snapshot_of(&events, history, as_of)))
    })?;
    Ok(ConsentView {
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
    })
}

/// Every consent event of a patient in one family, oldest first. Nothing is
/// ever overwritten, so this is the full history.
pub fn events(
    ctx: &Context,
    caller: &Caller,
    patient: &PatientPseudonym,
    family: DocumentFamily,
) -> Result<EventList, AppError> {
    let events =
        read_consent_record(ctx, caller, patient, family, |events, _, _| Ok(events))?.value;
    Ok(EventList {
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
    })
}

/// The patient's current consent as an HL7 FHIR R4 `Consent` resource: one
/// provision per scope item, coded with the item key and GA4GH DUO terms;
/// `policy.uri` is the canonical URI of the document version.
pub fn fhir(
    ctx: &Context,
    caller: &Caller,
    patient: &PatientPseudonym,
    family: DocumentFamily,
) -> Result<serde_json::Value, AppError> {
    let ConsentRecordRead {
        pseudonym,
        patient,
        now,
        value: (events, snap),
    } = read_consent_record(ctx, caller, patient, family, |events, history, now| {
        let snap = snapshot_of(&events, history, now);
        Ok((events, snap))
    })?;
    // The latest event in force says who signed and when.
    let latest = events
        .iter()
        .rev()
        .find(|e| e.event.signed_at <= now)
        .ok_or(AppError::NotFound)?;
    let version = snap.version_in_force.ok_or(AppError::NotFound)?;
    let fhir = FhirConsentContext {
        patient_pseudonym: pseudonym.as_str(),
        family,
        hospital_org: &patient.hospital_org,
        policy_uri: ctx.policy_uri(DocumentVersionId::new(family, version)),
        signed_at: latest.event.signed_at,
        proxy_relationship: latest.row.proxy_relationship.as_deref(),
    };
    serde_json::to_value(export_consent(&fhir, &snap, &ctx.catalog)).map_err(AppError::internal)
}

/// A logged read of one patient's consent record in one family, on one
/// pooled connection: the patient with their events (and the family's
/// published version count, which keeps the cached version history
/// current), and the read's log entry. Staff of the patient's own hospital
/// on PostgreSQL get both in one statement (`own_record_logged`); everyone
/// else in two, authorized in between (decision 0016). A caller that may
/// not see the patient is refused before anything is shown or logged, with
/// the same `NotFound` as for a patient that does not exist; `shape` sees
/// only what an authorized caller may.
fn read_consent_record<T>(
    ctx: &Context,
    caller: &Caller,
    pseudonym: &PatientPseudonym,
    family: DocumentFamily,
    shape: impl FnOnce(Vec<StoredEvent>, &VersionHistory, DateTime<Utc>) -> Result<T, AppError>,
) -> Result<ConsentRecordRead<T>, AppError> {
    principal(caller)?;
    let now = ctx.now();
    ctx.read_then_log(|conn| {
        let (record, unwritten) =
            match own_record_logged(ctx, conn, caller, pseudonym, family, now)? {
                Some(record) => (record, Vec::new()),
                None => {
                    let record = store::patient_record(conn, pseudonym.as_str(), family)?
                        .ok_or(AppError::NotFound)?;
                    ctx.authorize_patient(
                        caller,
                        Action::ConsentRead,
                        pseudonym.as_str(),
                        &record.patient.hospital_org,
                        &[],
                    )?;
                    let entry =
                        read_entry(caller, &record.patient.hospital_org, pseudonym, family, now)?;
                    (record, vec![entry])
                }
            };
        let history = ctx
            .histories
            .current(conn, family, record.published_versions)?;
        let value = shape(record.events, &history, now)?;
        Ok((
            ConsentRecordRead {
                pseudonym: pseudonym.clone(),
                patient: record.patient,
                now,
                value,
            },
            unwritten,
        ))
    })
}

/// The common case of a consent read in one statement: staff reading a
/// patient of their own hospital. Policy is asked first, about a patient of
/// the caller's hospital; the statement then reads the patient, and writes
/// the read's entry, only if the patient is one. So what is read and logged
/// is exactly what the general path would read and log. `None`: nothing was
/// read or written, and the general path decides.
fn own_record_logged(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    pseudonym: &PatientPseudonym,
    family: DocumentFamily,
    now: DateTime<Utc>,
) -> Result<Option<store::PatientRecord>, AppError> {
    let own_hospital = &principal(caller)?.org;
    let resource = Resource::Patient {
        pseudonym: pseudonym.as_str(),
        hospital: own_hospital,
        centers: &[],
    };
    if !ctx
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
) -> Result<LogEntry, AppError> {
    Ok(entries::read(
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
