//! A hospital's own patients: finding one by its local ID, and recording
//! that a patient is a minor or has died.

use super::consents::{consent_summaries, ConsentSummary, PatientStatusView};
use super::gates::{principal, visible_patient};
use super::recalls::{self, CameOfAge};
use super::{entries, AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::consent::Person;
use crate::db::consents as store;
use crate::db::{ledger, DbConnection};
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, Purpose};
use crate::pseudonym::{LocalPatientId, PatientPseudonym};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct SampleSummary {
    pub genome_id: String,
    pub kind: String,
    pub assay: String,
    pub registered_at: DateTime<Utc>,
}

/// A hospital's view of one of its patients, found by local ID.
#[derive(Serialize, ToSchema)]
pub struct LookupResponse {
    pub patient_ref: String,
    /// One entry per family with any consent event.
    pub consents: Vec<ConsentSummary>,
    pub samples: Vec<SampleSummary>,
}

/// What the hospital knows of a patient's age and life.
#[derive(Debug, Clone, Copy)]
pub struct PatientStatus {
    /// For a minor: the day they come of age (JST).
    pub majority_on: Option<NaiveDate>,
    /// Not after today (JST).
    pub deceased_on: Option<NaiveDate>,
}

/// Finds one of the caller's hospital's patients by the hospital-local ID:
/// its `patient_ref`, consents and samples. The read is logged.
pub fn lookup(
    ctx: &Context,
    caller: &Caller,
    local: &LocalPatientId,
) -> Result<LookupResponse, AppError> {
    let p = principal(caller)?;
    ctx.authorize(
        caller,
        Action::PatientLookup,
        &Resource::Patient {
            pseudonym: "-",
            hospital: &p.org,
            centers: &[],
        },
    )?;
    let (pseudonym, person) = ctx
        .read(|conn| known_pseudonym(ctx, conn, &p.org, local))?
        .ok_or(AppError::NotFound)?;
    let key = pseudonym.as_str();
    let now = ctx.now();
    let entry = entries::read(
        p,
        &p.org,
        key,
        LogAction::PatientLookup,
        DataScope::PatientSummary,
        now,
    );
    let (consents, samples) = ctx.read_logged(vec![entry], |conn| {
        let consents = consent_summaries(conn, key, &person, now)?;
        let samples = crate::db::samples::for_patient(conn, key)?
            .into_iter()
            .map(|s| SampleSummary {
                registered_at: crate::db::samples::registered_at(&s),
                genome_id: s.genome_id,
                kind: s.kind,
                assay: s.assay,
            })
            .collect();
        Ok((consents, samples))
    })?;
    Ok(LookupResponse {
        patient_ref: pseudonym.to_string(),
        consents,
        samples,
    })
}

/// The existing patient a local ID names at `org`, under whichever patient
/// key version it was first registered (keys rotate; patients keep theirs).
pub fn known_pseudonym(
    ctx: &Context,
    conn: &mut DbConnection,
    org: &str,
    local: &LocalPatientId,
) -> Result<Option<(PatientPseudonym, Person)>, AppError> {
    for candidate in ctx.keys.patient_candidates(org, local) {
        if let Some(row) =
            store::find_patient(conn, candidate.as_str())?.filter(|row| row.hospital_org == org)
        {
            return Ok(Some((candidate, row.person())));
        }
    }
    Ok(None)
}

/// Records that a patient is a minor (the day they come of age) or deceased.
/// Minors whose consent a proxy signed appear on the re-consent list once
/// they come of age; deceased patients never do. A day of majority that has
/// already come recalls, in the same transaction, what live releases had of
/// the patient on the proxy's consent alone (`reached_majority`); a future
/// one is recalled by the daily sweep when it comes; either way the patient
/// is told, once, with a `consent_lapse` entry per family whose proxy
/// permits lapsed. Each update is logged as `patient_status_change` (naming
/// neither day), and so notified to the patient, in the same transaction.
pub fn update_status(
    ctx: &Context,
    caller: &Caller,
    pseudonym: &PatientPseudonym,
    status: PatientStatus,
) -> Result<PatientStatusView, AppError> {
    let patient = ctx
        .read(|conn| visible_patient(ctx, conn, caller, Action::PatientUpdateStatus, pseudonym))?;
    let now = ctx.now();
    let today = crate::calendar::day_of(now);
    if status.deceased_on.is_some_and(|d| d > today) {
        return Err(AppError::field("deceased_on", "lies in the future"));
    }
    // The change is logged (and so notified) with the update; the entry
    // names what was touched, never the days.
    let entry = entries::entry(
        principal(caller)?,
        crate::auth::Role::HospitalStaff,
        pseudonym.as_str(),
        entries::Access {
            action: LogAction::PatientStatusChange,
            purpose: Purpose::ConsentManagement,
            basis: LegalBasis::TreatingHospital {
                hospital: patient.hospital_org,
            },
            scope: DataScope::PatientStatus,
        },
        now,
    );
    let PatientStatus {
        majority_on,
        deceased_on,
    } = status;
    let key = pseudonym.as_str().to_owned();
    let came_of_age = ctx.write(|conn| {
        let patients = [key.clone()];
        let was = store::minors_among(conn, &patients)?
            .remove(&key)
            .unwrap_or_default();
        crate::db::gate::change_enters(conn)?;
        store::set_patient_status(conn, &key, majority_on, deceased_on)?;
        ledger::append(conn, &[entry])?;
        // A day of majority recorded as past (or corrected to the past)
        // lapses a proxy's permits now: what live releases had of this
        // patient on them is recalled here, not left to the daily sweep,
        // which has looked past that day already.
        let now_known = Person {
            majority_on,
            deceased_on,
        };
        let Some(on) = majority_on.filter(|_| now_known.of_age_on(today)) else {
            return Ok(CameOfAge::default());
        };
        recalls::recall_came_of_age(conn, &ctx.data_use, &key, on, Some(was), now)
    })?;
    ctx.log.entries_committed();
    if came_of_age.recalled > 0 {
        ctx.log.deliveries_queued();
    }
    Ok(PatientStatusView {
        majority_on,
        deceased_on,
    })
}
