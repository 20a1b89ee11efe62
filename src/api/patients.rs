//! A hospital's own patients: finding one by its local ID, and recording
//! that a patient is a minor or has died.

use super::access;
use super::consents::{
    consent_summaries, patient_for, principal, ConsentSummary, PatientPath, PatientStatusView,
};
use super::releases::recall::CameOfAge;
use super::state::AppState;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::consent::Person;
use crate::db::consents as store;
use crate::db::{ledger, write_transaction};
use crate::error::{ApiError, Problem};
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, Purpose};
use crate::pseudonym::{LocalPatientId, PatientPseudonym};
use actix_web::{post, put, web};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    pub local_patient_id: String,
}

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

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientStatusRequest {
    /// For a minor: the day they come of age, a day in Japan (JST). From
    /// its midnight a proxy's permits no longer speak for them.
    pub majority_on: Option<NaiveDate>,
    /// Not after today (JST).
    pub deceased_on: Option<NaiveDate>,
}

/// Finds one of the caller's hospital's patients by the hospital-local ID
/// (sent in the body, never in a URL): its `patient_ref`, consents and samples.
#[utoipa::path(tag = "consents", request_body = LookupRequest,
    responses((status = 200, body = LookupResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/patients/lookup")]
pub async fn lookup_patient(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<LookupRequest>,
) -> Result<web::Json<LookupResponse>, ApiError> {
    let p = principal(&caller)?.clone();
    let local = LocalPatientId::parse(&body.local_patient_id)
        .map_err(|m| ApiError::field("local_patient_id", m))?;
    state.authorize(
        &caller,
        Action::PatientLookup,
        &Resource::Patient {
            pseudonym: "-",
            hospital: &p.org,
            centers: &[],
        },
    )?;
    let (pseudonym, person) = known_pseudonym(&state, &p.org, &local)
        .await?
        .ok_or(ApiError::NotFound)?;
    let key = pseudonym.as_str().to_owned();
    let now = state.now();
    let entry = access::read(
        &p,
        &p.org,
        pseudonym.as_str(),
        LogAction::PatientLookup,
        DataScope::PatientSummary,
        now,
    );
    let (consents, samples) = state
        .read_logged(vec![entry], move |conn| {
            let consents = consent_summaries(conn, &key, &person, now)?;
            let samples = crate::db::samples::for_patient(conn, &key)?
                .into_iter()
                .map(|s| SampleSummary {
                    registered_at: crate::db::samples::registered_at(&s),
                    genome_id: s.genome_id,
                    kind: s.kind,
                    assay: s.assay,
                })
                .collect();
            Ok((consents, samples))
        })
        .await?;
    Ok(web::Json(LookupResponse {
        patient_ref: pseudonym.to_string(),
        consents,
        samples,
    }))
}

/// The existing patient a local ID names at `org`, under whichever patient
/// key version it was first registered (keys rotate; patients keep theirs).
pub(crate) async fn known_pseudonym(
    state: &web::Data<AppState>,
    org: &str,
    local: &LocalPatientId,
) -> Result<Option<(PatientPseudonym, Person)>, ApiError> {
    let candidates = state.keys.patient_candidates(org, local);
    let org = org.to_owned();
    state
        .db(move |conn| {
            for candidate in candidates {
                if let Some(row) = store::find_patient(conn, candidate.as_str())?
                    .filter(|row| row.hospital_org == org)
                {
                    return Ok(Some((candidate, row.person())));
                }
            }
            Ok(None)
        })
        .await
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
#[utoipa::path(tag = "consents", params(PatientPath), request_body = PatientStatusRequest,
    responses((status = 200, body = PatientStatusView), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[put("/v1/patients/{patient_ref}/status")]
pub async fn update_patient_status(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<PatientPath>,
    body: web::Json<PatientStatusRequest>,
) -> Result<web::Json<PatientStatusView>, ApiError> {
    let (pseudonym, patient) = patient_for(
        &state,
        &caller,
        Action::PatientUpdateStatus,
        &path.patient_ref,
    )
    .await?;
    let now = state.now();
    let today = crate::calendar::day_of(now);
    if body.deceased_on.is_some_and(|d| d > today) {
        return Err(ApiError::field("deceased_on", "lies in the future"));
    }
    // The change is logged (and so notified) with the update; the entry
    // names what was touched, never the days.
    let entry = access::entry(
        principal(&caller)?,
        crate::auth::Role::HospitalStaff,
        pseudonym.as_str(),
        access::Access {
            action: LogAction::PatientStatusChange,
            purpose: Purpose::ConsentManagement,
            basis: LegalBasis::TreatingHospital {
                hospital: patient.hospital_org,
            },
            scope: DataScope::PatientStatus,
        },
        now,
    );
    let (majority_on, deceased_on) = (body.majority_on, body.deceased_on);
    let key = pseudonym.as_str().to_owned();
    let shared = state.clone();
    let came_of_age = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let patients = [key.clone()];
                let was = store::minors_among(conn, &patients)?
                    .remove(&key)
                    .unwrap_or_default();
                crate::db::gate::change_enters(conn)?;
                store::set_patient_status(conn, &key, majority_on, deceased_on)?;
                ledger::append(conn, &[entry])?;
                // A day of majority recorded as past (or corrected to the
                // past) lapses a proxy's permits now: what live releases
                // had of this patient on them is recalled here, not left to
                // the daily sweep, which has looked past that day already.
                let now_known = crate::consent::Person {
                    majority_on,
                    deceased_on,
                };
                let Some(on) = majority_on.filter(|_| now_known.of_age_on(today)) else {
                    return Ok(CameOfAge::default());
                };
                crate::api::releases::recall::recall_came_of_age(
                    conn,
                    &shared.data_use,
                    &key,
                    on,
                    Some(was),
                    now,
                )
            })
        })
        .await?;
    state.log.entries_committed();
    if came_of_age.recalled > 0 {
        state.log.deliveries_queued();
    }
    Ok(web::Json(PatientStatusView {
        majority_on,
        deceased_on,
    }))
}
