//! The cohort half of a release: every sample of the released datasets is
//! read, decided against its patient's consent as of the release, and turned
//! into manifest rows and, per included patient, one log entry.
//!
//! The release writes in one transaction on one connection, so reading and
//! writing would otherwise take turns. When the pool has a connection to
//! spare, the pass runs on it in a thread of its own, inside one read-only
//! snapshot, and hands each batch to the transaction through a short
//! channel: the next page is read and decided while the current one is
//! written (decision 0014). Without a spare connection the same pass runs in
//! turn on the transaction's connection.
//!
//! Pages follow patients (decision 0024): a patient's samples are adjacent,
//! so their log entry goes with the page that decides their last sample and
//! the log is written while the pages are, not after them; and a page's
//! consent lookups fall in one range of the events index.

use super::{decide_page, research_access};
use crate::access::cohort::{SampleDecision, UseRequest};
use crate::access::manifest::ManifestPositions;
use crate::app::applications::Application;
use crate::app::{entries, AppError, Context};
use crate::auth::{Principal, Role};
use crate::consent::document::VersionHistory;
use crate::consent::{DocumentFamily, DocumentVersionId};
use crate::db::access::{self as store, CohortSample, DatasetRow, ReleaseSampleRow};
use crate::db::ledger::{self, PreparedEntries};
use crate::db::{documents, read_snapshot, DbConnection, PooledDb};
use crate::ledger::entry::LogAction;
use crate::pseudonym::genome_id::{project_sample, IdKind, PrintedId};
use crate::pseudonym::keyring::KeyDomain;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
/// Batches the reader may run ahead of the writer: enough to keep both
/// busy, few enough that memory stays bounded by pages, not by the cohort.
const READ_AHEAD: usize = 2;

/// What a release's cohort pass needs to know.
pub(super) struct Cohort<'a> {
    pub ctx: &'a Context,
    pub app: &'a Application,
    pub agreement_id: &'a str,
    pub releaser: &'a Principal,
    pub request: UseRequest,
    pub release_id: &'a str,
    pub datasets: &'a [DatasetRow],
    pub now: DateTime<Utc>,
}

/// The decisions of a whole pass, for the release row and its provenance.
#[derive(Default)]
pub(super) struct Tally {
    pub included: i64,
    pub excluded: i64,
    pub excluded_by_reason: BTreeMap<String, u64>,
    /// Included samples per consent document version (`cancer-v2` → n).
    pub consent_versions: BTreeMap<String, u64>,
}

/// One write of the release transaction.
enum Batch<'a> {
    /// A page of decided samples. The writer places them in the manifest:
    /// deriving project IDs and positions there spreads the CPU work over
    /// both threads.
    Manifest {
        dataset: &'a DatasetRow,
        decided: Vec<(CohortSample, Decided)>,
        /// The entries of the patients whose last sample is on this page.
        entries: PreparedEntries,
    },
    /// The entry of a dataset's last patient, when their last sample ended
    /// a full page.
    Log(PreparedEntries),
}

/// A sample's line in the manifest.
struct Decided {
    included: bool,
    reason: &'static str,
    consent_version: Option<i32>,
}

/// Decides the cohort and writes it in `conn`'s transaction, reading on
/// `spare` meanwhile when there is one.
pub(super) fn write_cohort(
    conn: &mut DbConnection,
    spare: Option<PooledDb>,
    cohort: &Cohort<'_>,
) -> Result<Tally, AppError> {
    let mut pass = Pass::new(cohort);
    let mut manifest = Manifest::default();
    let Some(mut reader) = spare else {
        while let Some(batch) = pass.next(conn)? {
            write(conn, cohort, &mut manifest, batch)?;
        }
        manifest.write(conn, cohort)?;
        return Ok(pass.tally);
    };
    let (to_writer, batches) = std::sync::mpsc::sync_channel::<Batch<'_>>(READ_AHEAD);
    std::thread::scope(|scope| {
        let reading = scope.spawn(move || {
            read_snapshot(&mut reader, |c| {
                while let Some(batch) = pass.next(c)? {
                    if to_writer.send(batch).is_err() {
                        // The writer has failed; its error is the one reported.
                        break;
                    }
                }
                Ok::<_, AppError>(pass.tally)
            })
        });
        let written = batches
            .iter()
            .try_for_each(|batch| write(conn, cohort, &mut manifest, batch));
        // Unblocks a reader still sending after a failed write.
        drop(batches);
        let read = reading
            .join()
            .map_err(|_| AppError::internal("the release's cohort reader panicked"))?;
        written?;
        let tally = read?;
        manifest.write(conn, cohort)?;
        Ok(tally)
    })
}

/// Takes one batch: its log entries are written at once; its samples are
/// placed in the manifest, which is written after the pass.
fn write<'a>(
    conn: &mut DbConnection,
    cohort: &Cohort<'_>,
    manifest: &mut Manifest<'a>,
    batch: Batch<'a>,
) -> Result<(), AppError> {
    match batch {
        Batch::Manifest {
            dataset,
            decided,
            entries,
        } => {
            manifest.place(cohort, dataset, decided)?;
            ledger::append_prepared(conn, &entries)?;
        }
        Batch::Log(entries) => ledger::append_prepared(conn, &entries)?,
    }
    Ok(())
}

/// Manifest rows written per statement.
const MANIFEST_CHUNK: usize = 5_000;

/// The manifest of a release while its cohort is read.
///
/// The cohort is read in patient order, but a sample's position is its
/// project's keyed order (decision 0030). Written as they were read, rows
/// would land all over the manifest's primary key, and a handle's pages on
/// rows all over its table. So rows are placed as they come and written
/// once the pass is over, in position order: the key grows at its end, and
/// a resolved page's rows lie together. What is kept per sample is a few
/// short strings; the decision records what this costs the release.
#[derive(Default)]
struct Manifest<'a> {
    positions: ManifestPositions,
    rows: Vec<Placed<'a>>,
}

/// A decided sample, placed in the manifest.
struct Placed<'a> {
    position: i64,
    dataset: &'a str,
    project_sample: PrintedId,
    genome_id: String,
    patient_pseudonym: String,
    decided: Decided,
}

impl<'a> Manifest<'a> {
    fn place(
        &mut self,
        cohort: &Cohort<'_>,
        dataset: &'a DatasetRow,
        decided: Vec<(CohortSample, Decided)>,
    ) -> Result<(), AppError> {
        let project_key = cohort.ctx.keys.current(KeyDomain::Project);
        self.rows.reserve(decided.len());
        for (sample, decision) in decided {
            let printed =
                PrintedId::parse(IdKind::Sample, &sample.genome_id).map_err(AppError::internal)?;
            let seen = project_sample(project_key, &cohort.app.row.id, &printed);
            self.rows.push(Placed {
                position: self.positions.place(seen.order),
                dataset: &dataset.id,
                project_sample: seen.id,
                genome_id: sample.genome_id,
                patient_pseudonym: sample.patient_pseudonym,
                decided: decision,
            });
        }
        Ok(())
    }

    /// Writes every placed row, in position order. The rows of the next
    /// statement are built on a second thread while the database takes the
    /// current one.
    fn write(mut self, conn: &mut DbConnection, cohort: &Cohort<'_>) -> Result<(), AppError> {
        self.rows.sort_unstable_by_key(|r| r.position);
        std::thread::scope(|scope| {
            // Inside the scope, so an early return drops the receiver and
            // the building thread stops instead of waiting to send.
            let (to_writer, chunks) = std::sync::mpsc::sync_channel(1);
            let rows = self.rows;
            scope.spawn(move || {
                let mut rows = rows.into_iter().peekable();
                while rows.peek().is_some() {
                    let chunk: Vec<ReleaseSampleRow> = rows
                        .by_ref()
                        .take(MANIFEST_CHUNK)
                        .map(|r| r.into_row(cohort.release_id))
                        .collect();
                    if to_writer.send(chunk).is_err() {
                        break;
                    }
                }
            });
            for chunk in chunks.iter() {
                store::insert_release_samples(conn, &chunk)?;
            }
            Ok(())
        })
    }
}

impl Placed<'_> {
    fn into_row(self, release_id: &str) -> ReleaseSampleRow {
        ReleaseSampleRow {
            release_id: release_id.to_owned(),
            position: self.position,
            dataset_id: self.dataset.to_owned(),
            project_sample_id: self.project_sample.to_string(),
            genome_id: self.genome_id,
            patient_pseudonym: self.patient_pseudonym,
            included: self.decided.included,
            reason: self.decided.reason.to_owned(),
            consent_version: self.decided.consent_version,
        }
    }
}

/// A pass over the cohort, one batch at a time: a dataset's pages of
/// decided samples, each with the log entries of the patients it completed.
struct Pass<'a> {
    cohort: &'a Cohort<'a>,
    next_dataset: usize,
    current: Option<DatasetPass<'a>>,
    tally: Tally,
}

struct DatasetPass<'a> {
    dataset: &'a DatasetRow,
    family: DocumentFamily,
    history: VersionHistory,
    /// The last sample paged: (patient pseudonym, genome ID).
    after: (String, String),
    /// The patient whose samples are being decided.
    patients: PatientRun,
    /// A page came back short: no sample is left to read.
    exhausted: bool,
}

/// Included samples per patient over samples that arrive grouped by
/// patient: one log entry per included patient and dataset, however many
/// of their samples it holds, once their last sample is decided.
#[derive(Default)]
struct PatientRun {
    /// The patient of the last sample counted, with their included samples
    /// so far.
    open: Option<(String, u32)>,
}

impl PatientRun {
    /// Counts one sample of `patient`, and hands back the patient it
    /// completes (the previous one, when this is the first sample of
    /// another) if any of their samples was included.
    fn count(&mut self, patient: &str, included: bool) -> Option<(String, u32)> {
        let completed = match &self.open {
            Some((open, _)) if open == patient => None,
            _ => self.open.replace((patient.to_owned(), 0)),
        };
        if let Some((_, objects)) = self.open.as_mut() {
            *objects += u32::from(included);
        }
        completed.filter(|(_, objects)| *objects > 0)
    }

    /// The last patient, now complete, if any of their samples was included.
    fn close(&mut self) -> Option<(String, u32)> {
        self.open.take().filter(|(_, objects)| *objects > 0)
    }
}

impl<'a> Pass<'a> {
    fn new(cohort: &'a Cohort<'a>) -> Self {
        Self {
            cohort,
            next_dataset: 0,
            current: None,
            tally: Tally::default(),
        }
    }

    fn next(&mut self, conn: &mut DbConnection) -> Result<Option<Batch<'a>>, AppError> {
        let cohort = self.cohort;
        loop {
            let Some(current) = self.current.as_mut() else {
                let Some(dataset) = cohort.datasets.get(self.next_dataset) else {
                    return Ok(None);
                };
                self.next_dataset += 1;
                let family: DocumentFamily = dataset.domain.parse().map_err(AppError::internal)?;
                self.current = Some(DatasetPass {
                    dataset,
                    family,
                    history: documents::history(conn, family)?,
                    after: (String::new(), String::new()),
                    patients: PatientRun::default(),
                    exhausted: false,
                });
                continue;
            };
            let page = if current.exhausted {
                Vec::new()
            } else {
                store::dataset_page(
                    conn,
                    &current.dataset.id,
                    (&current.after.0, &current.after.1),
                    cohort.ctx.release_page,
                )?
            };
            let Some(last) = page.last() else {
                let owed = current.patients.close();
                let dataset = current.dataset;
                self.current = None;
                match owed {
                    Some(patient) => {
                        let entries = cohort.release_entries(dataset, vec![patient])?;
                        return Ok(Some(Batch::Log(entries)));
                    }
                    None => continue,
                }
            };
            current.after = (last.patient_pseudonym.clone(), last.genome_id.clone());
            current.exhausted = page.len() < usize::try_from(cohort.ctx.release_page).unwrap_or(0);
            let decisions = decide_page(
                conn,
                &cohort.ctx.diseases,
                &cohort.request,
                (current.family, &current.history),
                &page,
                cohort.now,
            )?;
            let mut decided = Vec::with_capacity(page.len());
            let mut completed = Vec::new();
            for (sample, decision) in page.into_iter().zip(decisions) {
                let line = match decision {
                    SampleDecision::Included { version, .. } => {
                        *self
                            .tally
                            .consent_versions
                            .entry(DocumentVersionId::new(current.family, version).to_string())
                            .or_default() += 1;
                        Decided {
                            included: true,
                            reason: "consented",
                            consent_version: Some(version as i32),
                        }
                    }
                    SampleDecision::Excluded(why) => {
                        *self
                            .tally
                            .excluded_by_reason
                            .entry(why.as_str().to_owned())
                            .or_default() += 1;
                        Decided {
                            included: false,
                            reason: why.as_str(),
                            consent_version: None,
                        }
                    }
                };
                self.tally.included += i64::from(line.included);
                self.tally.excluded += i64::from(!line.included);
                completed.extend(
                    current
                        .patients
                        .count(&sample.patient_pseudonym, line.included),
                );
                decided.push((sample, line));
            }
            if current.exhausted {
                // The last page: its last patient is complete too.
                completed.extend(current.patients.close());
            }
            return Ok(Some(Batch::Manifest {
                dataset: current.dataset,
                decided,
                entries: cohort.release_entries(current.dataset, completed)?,
            }));
        }
    }
}

impl Cohort<'_> {
    /// The log entries of patients released from `dataset`, with how many
    /// of their samples were included.
    fn release_entries(
        &self,
        dataset: &DatasetRow,
        patients: Vec<(String, u32)>,
    ) -> Result<PreparedEntries, AppError> {
        let entries: Vec<_> = patients
            .into_iter()
            .map(|(patient, objects)| {
                entries::entry(
                    self.releaser,
                    Role::Researcher,
                    &patient,
                    research_access(
                        self.app,
                        self.agreement_id,
                        LogAction::DatasetRelease,
                        &dataset.id,
                        objects,
                    ),
                    self.now,
                )
            })
            .collect();
        Ok(PreparedEntries::of(&entries)?)
    }
}

#[cfg(test)]
mod tests {
    use super::PatientRun;

    fn run(samples: &[(&str, bool)]) -> Vec<(String, u32)> {
        let mut patients = PatientRun::default();
        let mut completed: Vec<_> = samples
            .iter()
            .filter_map(|(patient, included)| patients.count(patient, *included))
            .collect();
        completed.extend(patients.close());
        completed
    }

    #[test]
    fn each_included_patient_is_counted_once_when_their_samples_end() {
        let completed = run(&[
            ("a", true),
            ("a", false),
            ("a", true),
            ("b", false),
            ("c", true),
        ]);
        assert_eq!(completed, vec![("a".to_owned(), 2), ("c".to_owned(), 1)]);
    }

    #[test]
    fn a_patient_without_included_samples_gets_no_entry() {
        assert!(run(&[("a", false), ("a", false)]).is_empty());
        assert!(run(&[]).is_empty());
    }

    #[test]
    fn a_patient_is_complete_only_when_the_next_one_begins() {
        let mut patients = PatientRun::default();
        assert_eq!(patients.count("a", true), None);
        // Across a page boundary: still the same patient.
        assert_eq!(patients.count("a", true), None);
        assert_eq!(patients.count("b", true), Some(("a".to_owned(), 2)));
        assert_eq!(patients.close(), Some(("b".to_owned(), 1)));
        assert_eq!(patients.close(), None);
    }
}
