//! Handle resolution: a genome store presents a handle, and gets the data
//! objects of the samples whose patients' consent still permits the use,
//! a page at a time. Each patient served is logged and notified.

use super::*;
use crate::access::handle::HandleError;
use crate::app::gates::principal;
use crate::app::{AccessRefusal as Refusal, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Role};
use crate::db::access::ReleaseSampleRow;
use crate::db::{documents, ledger, samples};
use crate::ledger::entry::LogEntry;
use std::collections::HashSet;

#[derive(Serialize, ToSchema)]
pub struct ResolvedObject {
    pub project_sample_id: String,
    pub name: String,
    pub version: i32,
    /// Where the genome store keeps the bytes.
    pub uri: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub format: String,
}

#[derive(Serialize, ToSchema)]
pub struct WithheldSample {
    pub project_sample_id: String,
    /// Why the patient's current consent no longer permits this use.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Resolution {
    pub release: String,
    pub agreement: String,
    pub conditions: Vec<String>,
    pub objects: Vec<ResolvedObject>,
    pub withheld: Vec<WithheldSample>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<i64>,
}

/// Resolves a dataset handle to data-object references (a genome store or
/// TRE whose organization is the handle's audience). The agreement and
/// every patient's current consent are checked again; samples whose patient
/// withdrew are withheld. Each patient served gets a log entry and a
/// notification. Pages follow the manifest's keyed order.
pub fn resolve(
    ctx: &Context,
    caller: &Caller,
    handle: &str,
    page: Page,
) -> Result<Resolution, AppError> {
    ctx.authorize(caller, Action::HandleResolve, &Resource::Registry)?;
    let p = principal(caller)?;
    let now = ctx.now();
    let claims = ctx
        .handles
        .verify(handle, &p.org, now)
        .map_err(|e| match e {
            HandleError::Invalid => AppError::Access(Refusal::HandleInvalid, None),
            HandleError::Expired => AppError::Access(Refusal::HandleExpired, None),
            HandleError::WrongAudience => AppError::Access(Refusal::HandleWrongAudience, None),
        })?;
    let Page { after, limit } = page;
    let resolution = ctx.read(|conn| {
        let release = store::find_release(conn, &claims.jti)?
            .ok_or(AppError::Access(Refusal::HandleInvalid, None))?;
        let agreement = store::find_agreement(conn, &release.agreement_id)?
            .ok_or_else(|| AppError::internal("release without agreement"))?;
        refuse_unless_usable(&agreement, now)
            .map_err(|e| AppError::Access(Refusal::HandleRevoked, e.detail()))?;
        let app = Application::from_row(
            store::find_application(conn, &release.application_id)?
                .ok_or_else(|| AppError::internal("release without application"))?,
        )?;
        let request = reuse_request(&ctx.data_use, conn, &app)?;
        let rows = store::release_page(conn, &release, after, limit, true)?;
        let next_after = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| r.position))
            .flatten();
        // The page's objects are read on a second connection while
        // consent is checked on this one; those of withheld samples
        // are dropped unseen.
        let (checked, objects) = crate::db::alongside(
            conn,
            ctx.pool.try_get(),
            |conn| recheck_consent(conn, ctx, &request, &rows, now),
            |conn| latest_objects(conn, &rows),
        );
        let (mut served, withheld) = checked?;
        // In manifest order, which is the project's own (decision 0030):
        // genome-ID order would be the same in every project.
        served.sort_unstable_by_key(|r| r.position);
        let latest = objects?;
        let mut objects = Vec::with_capacity(served.len());
        let mut listed: HashSet<&str> = HashSet::with_capacity(served.len());
        let mut objects_per: HashMap<(&str, &str), u32> = HashMap::new();
        for r in &served {
            let of_sample = latest.get(&r.genome_id);
            *objects_per
                .entry((r.patient_pseudonym.as_str(), r.dataset_id.as_str()))
                .or_default() += of_sample.map_or(0, BTreeMap::len) as u32;
            // A sample in two released datasets is listed once.
            if !listed.insert(r.genome_id.as_str()) {
                continue;
            }
            let named = of_sample.into_iter().flat_map(BTreeMap::values);
            objects.extend(named.map(|o| ResolvedObject {
                project_sample_id: r.project_sample_id.clone(),
                name: o.name.clone(),
                version: o.version,
                uri: o.uri.clone(),
                sha256: o.sha256.clone(),
                size_bytes: o.size_bytes,
                format: o.format.clone(),
            }));
        }
        let entries: Vec<LogEntry> = objects_per
            .iter()
            .map(|((patient, dataset), n)| {
                entries::entry(
                    p,
                    Role::DataStore,
                    patient,
                    research_access(&app, &agreement.id, LogAction::HandleResolve, dataset, *n),
                    now,
                )
            })
            .collect();
        ledger::append_atomically(conn, &entries)?;
        Ok(Resolution {
            release: release.id.clone(),
            agreement: agreement.id.clone(),
            conditions: claims.conditions.clone(),
            objects,
            withheld,
            next_after,
        })
    })?;
    ctx.log.entries_committed();
    Ok(resolution)
}

/// Checks again, as of `now`, the consent of each patient of a resolved
/// page, per dataset family. Returns the rows served and the samples
/// withheld, with why.
fn recheck_consent<'a>(
    conn: &mut DbConnection,
    ctx: &Context,
    request: &UseRequest,
    rows: &'a [ReleaseSampleRow],
    now: DateTime<Utc>,
) -> Result<(Vec<&'a ReleaseSampleRow>, Vec<WithheldSample>), AppError> {
    let mut by_dataset: BTreeMap<&str, Vec<&ReleaseSampleRow>> = BTreeMap::new();
    for r in rows {
        by_dataset.entry(r.dataset_id.as_str()).or_default().push(r);
    }
    let mut served = Vec::with_capacity(rows.len());
    let mut withheld = Vec::new();
    for (dataset_id, members) in by_dataset {
        let dataset = store::find_datasets(conn, &[dataset_id.to_owned()])?
            .pop()
            .ok_or_else(|| AppError::internal("release of unknown dataset"))?;
        let family: DocumentFamily = dataset.domain.parse().map_err(AppError::internal)?;
        let history = documents::history(conn, family)?;
        let page: Vec<store::CohortSample> = members
            .iter()
            .map(|r| store::CohortSample {
                genome_id: r.genome_id.clone(),
                patient_pseudonym: r.patient_pseudonym.clone(),
                diagnosis: None,
            })
            .collect();
        let decisions = decide_page(conn, &ctx.diseases, request, (family, &history), &page, now)?;
        for (r, decision) in members.into_iter().zip(decisions) {
            match decision {
                SampleDecision::Included { .. } => served.push(r),
                SampleDecision::Excluded(why) => withheld.push(WithheldSample {
                    project_sample_id: r.project_sample_id.clone(),
                    reason: why.as_str().to_owned(),
                }),
            }
        }
    }
    Ok((served, withheld))
}

/// The newest version of each named object of the page's samples, by
/// genome ID, in name order.
fn latest_objects(
    conn: &mut DbConnection,
    rows: &[ReleaseSampleRow],
) -> Result<HashMap<String, BTreeMap<String, samples::ObjectRow>>, AppError> {
    let genome_ids: Vec<String> = rows.iter().map(|r| r.genome_id.clone()).collect();
    let mut by_sample: HashMap<String, BTreeMap<String, samples::ObjectRow>> = HashMap::new();
    for o in samples::objects_of(conn, &genome_ids)? {
        let named = by_sample.entry(o.genome_id.clone()).or_default();
        if named
            .get(&o.name)
            .is_none_or(|existing| existing.version < o.version)
        {
            named.insert(o.name.clone(), o);
        }
    }
    Ok(by_sample)
}
