//! The hospital's re-consent work list: who must be asked again after a
//! document changed materially or a minor came of age, and about which items.

use super::gates::principal;
use super::{AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::consent::{derive_consent, ConsentStatus, DocumentFamily, DocumentVersionId, ItemBasis};
use crate::db::consents as store;
use crate::db::documents;
use serde::Serialize;
use utoipa::ToSchema;

pub const RECONSENT_PAGE: i64 = 1_000;
pub const MAX_RECONSENT_PAGE: i64 = 5_000;

/// Which page of the work list: patients after `after` (a `patient_ref`,
/// from `next_after`), `limit` of them examined.
pub struct WorkListPage {
    pub family: DocumentFamily,
    pub after: Option<String>,
    pub limit: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ReconsentItem {
    pub key: String,
    /// `material` or `added` (the document changed), or `signed_by_proxy`
    /// (a proxy permitted it while the patient was a minor).
    pub change: String,
    pub changed_in_version: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReconsentTask {
    pub patient_ref: String,
    /// `document_changed` (material or added items) or `reached_majority`
    /// (a proxy permitted these items for a minor who has now come of age;
    /// until the patient answers themselves, releases exclude them).
    pub reason: String,
    pub items: Vec<ReconsentItem>,
}

#[derive(Serialize, ToSchema)]
pub struct ReconsentList {
    pub hospital: String,
    #[schema(value_type = String)]
    pub family: DocumentFamily,
    pub version_in_force: Option<String>,
    pub tasks: Vec<ReconsentTask>,
    /// Pass as `after` for the next page; absent on the last. A page
    /// examines `limit` patients, so it may hold few tasks, or none, and
    /// still have a next page.
    pub next_after: Option<String>,
}

/// The caller's hospital's re-consent work list: patients with an active
/// consent who must be asked again, and about which items only. Editorial
/// changes never appear here. Paged over the hospital's patients in
/// `patient_ref` order.
pub fn work_list(
    ctx: &Context,
    caller: &Caller,
    page: WorkListPage,
) -> Result<ReconsentList, AppError> {
    let p = principal(caller)?;
    ctx.authorize(
        caller,
        Action::ReconsentList,
        &Resource::Hospital { org: &p.org },
    )?;
    let WorkListPage {
        family,
        after,
        limit,
    } = page;
    let now = ctx.now();
    let org = p.org.clone();
    let (patients, mut events, history) = ctx.read(|conn| {
        let patients = store::patients_of_hospital(conn, &org, after.as_deref(), limit)?;
        let events = match (patients.first(), patients.last()) {
            (Some(first), Some(last)) => {
                store::events_for_hospital(conn, &org, family, (&first.pseudonym, &last.pseudonym))?
            }
            _ => Default::default(),
        };
        let history = documents::history(conn, family)?;
        Ok((patients, events, history))
    })?;
    let next_after = (patients.len() as i64 == limit)
        .then(|| patients.last().map(|p| p.pseudonym.clone()))
        .flatten();
    let version_in_force = history
        .in_force_at(now)
        .map(|v| DocumentVersionId::new(family, v.number).to_string());
    let mut tasks = Vec::new();
    for patient in patients {
        if patient.deceased_on.is_some() {
            continue;
        }
        let Some(stored) = events.remove(&patient.pseudonym) else {
            continue;
        };
        let domain: Vec<_> = stored.iter().map(|e| e.event.clone()).collect();
        let snap = derive_consent(&domain, &history, now);
        if snap.status != ConsentStatus::Active {
            continue;
        }
        let items: Vec<ReconsentItem> = snap
            .items
            .iter()
            .filter_map(|i| match &i.basis {
                ItemBasis::NeedsReconsent {
                    changed_in_version,
                    change,
                    ..
                } => Some(ReconsentItem {
                    key: i.key.to_string(),
                    change: change.as_str().to_owned(),
                    changed_in_version: Some(
                        DocumentVersionId::new(family, *changed_in_version).to_string(),
                    ),
                }),
                ItemBasis::NotAsked => Some(ReconsentItem {
                    key: i.key.to_string(),
                    change: "added".into(),
                    changed_in_version: version_in_force.clone(),
                }),
                _ => None,
            })
            .collect();
        if !items.is_empty() {
            tasks.push(ReconsentTask {
                patient_ref: patient.pseudonym.clone(),
                reason: "document_changed".into(),
                items,
            });
        }
        // Permits a proxy gave for the minor, who has come of age: only
        // their own answer counts now (decision 0026).
        let person = patient.person();
        let lapsed: Vec<ReconsentItem> = snap
            .lapsed_at_majority(&person)
            .map(|i| ReconsentItem {
                key: i.key.to_string(),
                change: "signed_by_proxy".into(),
                changed_in_version: None,
            })
            .collect();
        if !lapsed.is_empty() {
            tasks.push(ReconsentTask {
                patient_ref: patient.pseudonym,
                reason: "reached_majority".into(),
                items: lapsed,
            });
        }
    }
    Ok(ReconsentList {
        hospital: p.org.clone(),
        family,
        version_in_force,
        tasks,
        next_after,
    })
}
