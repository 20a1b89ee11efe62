//! Consent-checked releases (`create`, with the cohort `pass`), the
//! release records, manifests and recall notices members and overseers
//! read back (`read`), and handle resolution by genome stores (`resolve`).
//! What a release must be admitted under is in `admission`.
//!
//! A release checks every patient's consent *at that instant*, writes the
//! manifest, one access-log entry per included patient (each with its
//! notification) and the provenance record in one transaction, and signs a
//! handle. Resolution checks the agreement and each patient's consent again.

mod admission;
mod create;
mod pass;
mod read;
mod resolve;
pub use admission::*;
pub use create::*;
pub use read::*;
pub use resolve::*;

use super::applications::Application;
use super::{entries, AppError};
use crate::access::cohort::{SampleDecision, UseRequest};
use crate::access::DataUsePolicy;
use crate::consent::state::derive_consent;
use crate::consent::{DocumentFamily, Person};
use crate::db::access::{self as store, ReleaseRow};
use crate::db::documents::utc;
use crate::db::{consents, DbConnection};
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, Purpose};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use utoipa::ToSchema;

/// Most entries of a manifest page, and most samples of a resolved page.
pub const MAX_PAGE: i64 = 1_000;

/// Which page of a manifest or a resolution: after position `after` (a
/// `next_after`), `limit` entries.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub after: i64,
    pub limit: i64,
}

/// What a release rested on, kept with it for audit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Provenance {
    pub matcher_version: String,
    /// The matching outcome per dataset at submission.
    #[schema(value_type = Object)]
    pub matching: BTreeMap<String, String>,
    /// Consent document versions relied on, with how many included samples
    /// rested on each (`cancer-v2` → 1234).
    pub consent_versions: BTreeMap<String, u64>,
    pub agreement_id: String,
    pub agreement_text_version: i32,
    pub agreement_text_sha256: String,
    /// The latest signed log checkpoint when the release was made; the
    /// release's own entries follow it.
    pub log_checkpoint_size: i64,
    pub log_checkpoint_root: String,
    pub min_cohort: u32,
    pub conditions: Vec<String>,
}

/// A release as kept: who made it for which store, what it included and
/// excluded, and what it rested on. Never its handle, which only the
/// member who released receives.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseRecord {
    pub id: String,
    pub application_id: String,
    pub agreement_id: String,
    /// The member who released, by subject.
    pub released_by: String,
    pub released_at: DateTime<Utc>,
    /// The genome store or TRE the handle was for.
    pub audience: String,
    pub handle_expires_at: DateTime<Utc>,
    pub included: i64,
    pub excluded: i64,
    /// Excluded samples by machine-readable reason.
    pub excluded_by_reason: BTreeMap<String, u64>,
    pub provenance: Provenance,
    /// Where members page through every include and exclude decision.
    pub manifest: String,
}

impl ReleaseRecord {
    /// The record of a finished release; its stored JSON is the service's
    /// own, so a value that does not parse is an internal error.
    pub(crate) fn from_row(row: ReleaseRow, public_base_url: &str) -> Result<Self, AppError> {
        let excluded_by_reason = row
            .excluded_by_reason
            .as_deref()
            .ok_or_else(|| AppError::internal("an unfinished release was read"))?;
        Ok(ReleaseRecord {
            manifest: format!("{public_base_url}/v1/releases/{}/manifest", row.id),
            excluded_by_reason: serde_json::from_str(excluded_by_reason)
                .map_err(AppError::internal)?,
            provenance: serde_json::from_str(&row.provenance).map_err(AppError::internal)?,
            id: row.id,
            application_id: row.application_id,
            agreement_id: row.agreement_id,
            released_by: row.released_by,
            released_at: utc(row.released_at),
            audience: row.audience,
            handle_expires_at: utc(row.handle_expires_at),
            included: row.included,
            excluded: row.excluded,
        })
    }
}

/// A new release: its record, and the handle for its audience.
#[derive(Serialize, ToSchema)]
pub struct ReleaseView {
    /// The signed dataset handle (EdDSA JWT) for the audience.
    pub handle: String,
    #[serde(flatten)]
    pub release: ReleaseRecord,
}

/// The use each patient's consent is checked against, now: commercial
/// and abroad as declared and decided at submission, or as the register
/// says of the member organizations today, whichever is stricter. An
/// organization re-registered as industry, or abroad, after approval
/// reaches only the patients who consented to that (decision 0023).
fn use_request(
    policy: &DataUsePolicy,
    conn: &mut DbConnection,
    app: &Application,
) -> Result<UseRequest, AppError> {
    let registered = store::find_organizations(conn, &app.member_orgs())?;
    let now = app.use_now(policy, &registered);
    Ok(UseRequest {
        commercial: now.commercial,
        abroad: now.abroad,
        diseases: app.declaration.purpose.diseases().to_vec(),
        proxy_consent_lapses_at_majority: policy.release.proxy_consent_lapses_at_majority,
    })
}

/// The use a handed-out sample is checked against again, as the register
/// says now ([`UseRequest::rechecked`]).
pub(crate) fn reuse_request(
    policy: &DataUsePolicy,
    conn: &mut DbConnection,
    app: &Application,
) -> Result<UseRequest, AppError> {
    Ok(use_request(policy, conn, app)?.rechecked())
}

fn research_access(
    app: &Application,
    agreement: &str,
    action: LogAction,
    dataset: &str,
    objects: u32,
) -> entries::Access {
    entries::Access {
        action,
        purpose: Purpose::Research {
            duo: app.declaration.purpose.duo_id().to_owned(),
        },
        basis: LegalBasis::Agreement {
            id: agreement.to_owned(),
        },
        scope: DataScope::Dataset {
            dataset: dataset.to_owned(),
            objects,
        },
    }
}

/// Checks consent for a page of samples of one dataset, as of `now`.
fn decide_page(
    conn: &mut DbConnection,
    diseases: &crate::access::duo::DiseaseHierarchy,
    request: &UseRequest,
    (family, history): (DocumentFamily, &crate::consent::document::VersionHistory),
    page: &[store::CohortSample],
    now: DateTime<Utc>,
) -> Result<Vec<SampleDecision>, AppError> {
    let patients = page.iter().map(|s| s.patient_pseudonym.as_str());
    let consent = PageConsent::load(
        conn,
        request.proxy_consent_lapses_at_majority,
        (family, history),
        patients,
        now,
    )?;
    Ok(page
        .iter()
        .map(|s| {
            consent.decide(
                request,
                &s.patient_pseudonym,
                s.diagnosis.as_deref(),
                diseases,
            )
        })
        .collect())
}

/// The consent of a page's patients in one family as of an instant, read
/// once, so that their samples can be decided for one use or several.
pub(crate) struct PageConsent {
    snapshots: HashMap<String, crate::consent::state::ConsentSnapshot>,
    /// A patient with no events: unknown consent, so nothing is permitted.
    none: crate::consent::state::ConsentSnapshot,
    minors: HashMap<String, Person>,
}

impl PageConsent {
    pub(crate) fn load<'a>(
        conn: &mut DbConnection,
        proxy_consent_lapses_at_majority: bool,
        (family, history): (DocumentFamily, &crate::consent::document::VersionHistory),
        patients: impl Iterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> Result<Self, AppError> {
        let mut patients: Vec<String> = patients.map(str::to_owned).collect();
        patients.sort();
        patients.dedup();
        let events = consents::events_for_patients(conn, &patients, family)?;
        // Only a proxy's signature can lapse at majority, so only patients
        // with one are looked up: none in a cohort of adults, or when policy
        // keeps a proxy's consent.
        let signed_by_proxy: Vec<String> = if proxy_consent_lapses_at_majority {
            events
                .iter()
                .filter(|(_, list)| list.iter().any(|e| e.by_proxy))
                .map(|(patient, _)| patient.clone())
                .collect()
        } else {
            Vec::new()
        };
        let minors = consents::minors_among(conn, &signed_by_proxy)?
            .into_iter()
            .collect();
        let mut snapshots = HashMap::with_capacity(patients.len());
        for (patient, list) in events {
            let snapshot = derive_consent(&list, history, now);
            snapshots.insert(patient, snapshot);
        }
        Ok(Self {
            snapshots,
            none: derive_consent(&[], history, now),
            minors,
        })
    }

    pub(crate) fn decide(
        &self,
        request: &UseRequest,
        patient: &str,
        diagnosis: Option<&str>,
        diseases: &crate::access::duo::DiseaseHierarchy,
    ) -> SampleDecision {
        let snapshot = self.snapshots.get(patient).unwrap_or(&self.none);
        let adult = Person::default();
        let person = self.minors.get(patient).unwrap_or(&adult);
        request.decide(snapshot, person, diagnosis, diseases)
    }
}
