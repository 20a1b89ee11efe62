//! What members, the governance body and auditors read back of the
//! releases under an application: the records, each manifest, and the
//! recall notices.

use super::*;
use crate::app::gates::{followed_application, read_followed};
use crate::app::Context;
use crate::auth::Caller;
use crate::db::access::ReleaseSampleRow;
use crate::notify::{RecallInstruction, RecallNotice};
use crate::pseudonym::genome_id::{project_patient_id, IdKind, PrintedId};
use crate::pseudonym::keyring::KeyDomain;

#[derive(Serialize, ToSchema)]
pub struct ReleaseList {
    /// Oldest first.
    pub releases: Vec<ReleaseRecord>,
}

#[derive(Serialize, ToSchema)]
pub struct ManifestEntry {
    /// Where the sample stands in this project's own keyed order: not a
    /// count, and unrelated to its place in any other project's manifest.
    pub position: i64,
    pub dataset: String,
    /// The sample as this project sees it (unlinkable across projects).
    pub project_sample_id: String,
    /// The patient as this project sees it: a patient's samples share it,
    /// so a tumour can be paired with its germline sample; unlinkable
    /// across projects. Only on included samples: nothing more is said of
    /// patients whose consent excluded them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_patient_id: Option<String>,
    pub included: bool,
    /// `consented`, or why the sample was excluded.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ManifestPage {
    pub release: String,
    pub entries: Vec<ManifestEntry>,
    pub next_after: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct RecallList {
    pub notices: Vec<ListedRecall>,
}

/// A recall notice as listed: the notice, and what its webhook delivery
/// told the members to do, so a member who reads the list rather than the
/// webhook gets the same words.
#[derive(Serialize, ToSchema)]
pub struct ListedRecall {
    #[serde(flatten)]
    pub notice: RecallNotice,
    pub instruction: RecallInstruction,
}

impl From<crate::db::access::RecallRow> for ListedRecall {
    fn from(row: crate::db::access::RecallRow) -> Self {
        let instruction = RecallInstruction::for_reason(&row.reason);
        ListedRecall {
            notice: RecallNotice::from(row),
            instruction,
        }
    }
}

/// The release, if the caller follows its application: `NotFound` for a
/// release that does not exist and for one whose application the caller
/// may not read, so neither learns more than the other.
fn followed_release(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
) -> Result<ReleaseRow, AppError> {
    let release = store::find_release(conn, id)?.ok_or(AppError::NotFound)?;
    followed_application(ctx, conn, caller, &release.application_id)?;
    Ok(release)
}

/// Every release made under an application, oldest first, each with its
/// provenance (members, the governance body and auditors). Handles are
/// never kept, so none is listed.
pub fn releases_of(
    ctx: &Context,
    caller: &Caller,
    application: &str,
) -> Result<ReleaseList, AppError> {
    let rows = read_followed(ctx, caller, application, |conn, app| {
        Ok(store::releases_of(conn, &app.row.id)?)
    })?;
    let releases = rows
        .into_iter()
        .map(|row| ReleaseRecord::from_row(row, &ctx.public_base_url))
        .collect::<Result<_, _>>()?;
    Ok(ReleaseList { releases })
}

/// One release and what it rested on (members, the governance body and
/// auditors).
pub fn release(ctx: &Context, caller: &Caller, id: &str) -> Result<ReleaseRecord, AppError> {
    let row = ctx.read(|conn| followed_release(ctx, conn, caller, id))?;
    ReleaseRecord::from_row(row, &ctx.public_base_url)
}

/// Every include and exclude decision of a release, paged, in the
/// project's own keyed order (decision 0030).
pub fn manifest(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    page: Page,
) -> Result<ManifestPage, AppError> {
    let Page { after, limit } = page;
    ctx.read(|conn| {
        let release = followed_release(ctx, conn, caller, id)?;
        let rows = store::release_page(conn, &release, after, limit, false)?;
        let next_after = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| r.position))
            .flatten();
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let project_patient_id = if r.included {
                Some(project_patient_of(ctx, &release.application_id, &r)?)
            } else {
                None
            };
            entries.push(ManifestEntry {
                position: r.position,
                dataset: r.dataset_id,
                project_sample_id: r.project_sample_id,
                project_patient_id,
                included: r.included,
                reason: r.reason,
            });
        }
        Ok(ManifestPage {
            release: id.to_owned(),
            entries,
            next_after,
        })
    })
}

/// How the project sees the patient of a manifest row, under the same
/// project key version as the row's sample ID, so a release keeps one
/// patient ID per patient across a key rotation.
fn project_patient_of(
    ctx: &Context,
    project: &str,
    row: &ReleaseSampleRow,
) -> Result<String, AppError> {
    let sample = PrintedId::parse(IdKind::ProjectSample, &row.project_sample_id)
        .map_err(AppError::internal)?;
    let key = ctx
        .keys
        .version(KeyDomain::Project, sample.version())
        .ok_or_else(|| AppError::internal("a release's project key version is gone"))?;
    Ok(project_patient_id(key, project, &row.patient_pseudonym).to_string())
}

/// Recall notices for an application: each written in the same
/// transaction as the consent change (or coming of age) that took the
/// sample back from this use.
pub fn recalls(ctx: &Context, caller: &Caller, application: &str) -> Result<RecallList, AppError> {
    let notices = read_followed(ctx, caller, application, |conn, app| {
        Ok(store::recalls_of(conn, &app.row.id)?
            .into_iter()
            .map(ListedRecall::from)
            .collect())
    })?;
    Ok(RecallList { notices })
}
