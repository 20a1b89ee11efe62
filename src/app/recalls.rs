//! Recall notices: when a patient's consent stops permitting what a live
//! release already handed out, the release's members are told to stop
//! using and delete that sample's data (decision 0027).
//!
//! A recall follows the same rule as the release and the resolution: each
//! sample is decided against the application's use as it is now, before
//! and after the change, and only a sample that goes from included to
//! excluded is recalled, with the exclusion's reason. So a withdrawal of an
//! item the use does not rely on recalls nothing, a change that takes back
//! industry use recalls the industrial releases only, and a sample already
//! excluded is never recalled twice.

use super::applications::Application;
use super::releases::reuse_request;
use super::AppError;
use crate::access::cohort::{Exclusion, UseRequest};
use crate::access::duo::DiseaseHierarchy;
use crate::access::DataUsePolicy;
use crate::consent::state::{derive_consent, ConsentSnapshot};
use crate::consent::{DocumentFamily, DocumentVersionId, Person};
use crate::db::access::{self as store, LiveInclusion, RecallRow};
use crate::db::{consents, documents, ledger, DbConnection};
use crate::ledger::entry::{
    Actor, DataScope, LegalBasis, LogAction, LogEntry, Purpose, ENTRY_FORMAT,
};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

/// What changed the patient's consent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cause<'a> {
    /// A consent event, just recorded in the caller's transaction.
    Event { id: &'a str },
    /// The patient came of age on `on`, so a proxy's permits lapsed
    /// (decision 0026). `was` is what was known of the patient before, when
    /// the hospital has just recorded (or corrected) the date; `None` when
    /// the day has merely come, and the same consent is judged as if a
    /// proxy's permit still counted.
    CameOfAge { on: NaiveDate, was: Option<Person> },
}

/// The cause in the IDs of notices for coming of age `on`: the same for the
/// hospital's update, the daily sweep and a release that saw the day pass,
/// so that none of them recalls one sample twice for one birthday.
fn came_of_age_cause(on: NaiveDate) -> String {
    format!("came-of-age-{on}")
}

impl Cause<'_> {
    /// Recall notice IDs are `<cause>:<release>:<position>`: unique per
    /// cause and sample, and free of the patient's pseudonym.
    fn notice_id(&self, inclusion: &LiveInclusion) -> String {
        let cause = match self {
            Cause::Event { id } => (*id).to_owned(),
            Cause::CameOfAge { on, .. } => came_of_age_cause(*on),
        };
        format!("{cause}:{}:{}", inclusion.release_id, inclusion.position)
    }
}

/// Records, in the caller's transaction, a recall notice for each sample of
/// `patient` in `family` that a live release included and that the
/// patient's consent, after `cause`, no longer lets its application use,
/// and queues each for the application's webhooks. Returns how many
/// notices were written.
pub(crate) fn recall_what_consent_no_longer_permits(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    patient: &str,
    family: DocumentFamily,
    cause: Cause<'_>,
    at: DateTime<Utc>,
) -> Result<usize, AppError> {
    // One indexed lookup on the common path: a patient in no release.
    let inclusions = store::live_inclusions(conn, patient, family)?;
    if inclusions.is_empty() {
        return Ok(0);
    }
    let history = documents::history(conn, family)?;
    let patients = [patient.to_owned()];
    let events = consents::events_for_patients(conn, &patients, family)?
        .remove(patient)
        .unwrap_or_default();
    let person = if events.iter().any(|e| e.by_proxy) {
        consents::minors_among(conn, &patients)?
            .remove(patient)
            .unwrap_or_default()
    } else {
        Person::default()
    };
    let after = derive_consent(&events, &history, at);
    let before = match cause {
        Cause::Event { id } => {
            let earlier: Vec<_> = events.iter().filter(|e| e.id != id).cloned().collect();
            derive_consent(&earlier, &history, at)
        }
        Cause::CameOfAge { .. } => after.clone(),
    };
    let consent = Change {
        before: &before,
        after: &after,
        person: &person,
        cause,
    };
    let mut by_application: BTreeMap<&str, Option<&'static str>> = BTreeMap::new();
    for inclusion in &inclusions {
        let id = inclusion.application_id.as_str();
        if by_application.contains_key(id) {
            continue;
        }
        let app = Application::from_row(
            store::find_application(conn, id)?
                .ok_or_else(|| AppError::internal("release without application"))?,
        )?;
        let request = reuse_request(policy, conn, &app)?;
        by_application.insert(id, consent.takes_back(&request));
    }
    let notices: Vec<RecallRow> = inclusions
        .iter()
        .filter_map(|inclusion| {
            let reason = by_application
                .get(inclusion.application_id.as_str())
                .copied()
                .flatten()?;
            Some(RecallRow {
                id: cause.notice_id(inclusion),
                application_id: inclusion.application_id.clone(),
                release_id: inclusion.release_id.clone(),
                project_sample_id: inclusion.project_sample_id.clone(),
                reason: reason.to_owned(),
                created_at: at.naive_utc(),
            })
        })
        .collect();
    Ok(store::record_recalls(conn, &notices, at)?)
}

/// Recalls, for every patient who came of age after the last sweep and by
/// `today`, what their proxy's lapsed permits had let live releases have,
/// and tells each patient whose permits lapsed, in one transaction.
/// Several instances may sweep: the first to move the mark does the day's
/// work, the others find nothing to do.
pub(crate) fn sweep_came_of_age(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    at: DateTime<Utc>,
) -> Result<CameOfAge, AppError> {
    if !policy.release.proxy_consent_lapses_at_majority {
        return Ok(CameOfAge::default());
    }
    let today = crate::calendar::day_of(at);
    if store::sweep_due(conn, CAME_OF_AGE_SWEEP, today)?.is_none() {
        return Ok(CameOfAge::default());
    }
    crate::db::write_transaction(conn, |conn| {
        // Claimed again inside: another instance may have swept meanwhile.
        let Some(after) = store::claim_sweep(conn, CAME_OF_AGE_SWEEP, today)? else {
            return Ok(CameOfAge::default());
        };
        let mut done = CameOfAge::default();
        for (patient, on) in consents::came_of_age_between(conn, after, today)? {
            done += recall_came_of_age(conn, policy, &patient, on, None, at)?;
        }
        Ok(done)
    })
}

/// What recording a day of majority wrote: recall notices for the
/// releases' members, and log entries telling the patient.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CameOfAge {
    pub recalled: usize,
    pub told: usize,
}

impl std::ops::AddAssign for CameOfAge {
    fn add_assign(&mut self, other: Self) {
        self.recalled += other.recalled;
        self.told += other.told;
    }
}

/// The actor task of the entries that tell a patient their proxy's
/// permits lapsed.
const CAME_OF_AGE_TASK: &str = "came-of-age";

/// Recalls, in every family, what a proxy's permits had let live releases
/// have of `patient`, who came of age `on` (see [`Cause::CameOfAge`] for
/// `was`), and tells the patient, in each family where such permits
/// lapsed, with a `consent_lapse` entry in the caller's transaction.
/// Nothing lapses when policy keeps a proxy's consent.
pub(crate) fn recall_came_of_age(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    patient: &str,
    on: NaiveDate,
    was: Option<Person>,
    at: DateTime<Utc>,
) -> Result<CameOfAge, AppError> {
    if !policy.release.proxy_consent_lapses_at_majority {
        return Ok(CameOfAge::default());
    }
    let mut done = CameOfAge::default();
    for family in DocumentFamily::ALL {
        done.recalled += recall_what_consent_no_longer_permits(
            conn,
            policy,
            patient,
            family,
            Cause::CameOfAge { on, was },
            at,
        )?;
    }
    let told = lapse_entries(conn, patient, on, at)?;
    ledger::append(conn, &told)?;
    done.told = told.len();
    Ok(done)
}

/// One entry per family in which permits a proxy gave for `patient` as a
/// minor have lapsed at `at`; none if the patient was already told since
/// the start of their day of majority (`on`): the hospital's update and the
/// daily sweep may both see the same birthday.
fn lapse_entries(
    conn: &mut DbConnection,
    patient: &str,
    on: NaiveDate,
    at: DateTime<Utc>,
) -> Result<Vec<LogEntry>, AppError> {
    let since = crate::calendar::start_of(on);
    if ledger::patient_logged_since(conn, patient, LogAction::ConsentLapse, since)? {
        return Ok(Vec::new());
    }
    let person = person_of(conn, patient)?;
    let mut told = Vec::new();
    for family in DocumentFamily::ALL {
        told.extend(lapse_entry(conn, patient, &person, family, at, None)?);
    }
    Ok(told)
}

/// Tells `patient`, in the caller's transaction, when consent event
/// `event_id` in `family`, signed by a proxy while they were a minor, is
/// recorded only after they came of age: its permits lapse as they are
/// recorded (decision 0026), and no birthday still to come would tell
/// them. Returns how many entries were written (none or one).
pub(crate) fn tell_of_a_proxy_consent_recorded_late(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    patient: &str,
    family: DocumentFamily,
    event_id: &str,
    at: DateTime<Utc>,
) -> Result<usize, AppError> {
    if !policy.release.proxy_consent_lapses_at_majority {
        return Ok(0);
    }
    let person = person_of(conn, patient)?;
    if !person.of_age_on(crate::calendar::day_of(at)) {
        return Ok(0);
    }
    let Some(told) = lapse_entry(conn, patient, &person, family, at, Some(event_id))? else {
        return Ok(0);
    };
    ledger::append(conn, &[told])?;
    Ok(1)
}

/// The patient's majority and death dates, as recorded (adults without
/// either are [`Person::default`]).
fn person_of(conn: &mut DbConnection, patient: &str) -> Result<Person, AppError> {
    let patients = [patient.to_owned()];
    Ok(consents::minors_among(conn, &patients)?
        .remove(patient)
        .unwrap_or_default())
}

/// The `consent_lapse` entry of `patient`'s consent in `family` at `at`:
/// the permits a proxy gave while `person` was a minor that no longer
/// speak for them (only those resting on event `resting_on`, when given),
/// and the version they were signed on. `None` when none lapsed.
fn lapse_entry(
    conn: &mut DbConnection,
    patient: &str,
    person: &Person,
    family: DocumentFamily,
    at: DateTime<Utc>,
    resting_on: Option<&str>,
) -> Result<Option<LogEntry>, AppError> {
    let (_, _, snap) = super::consents::snapshot(conn, patient, family, at)?;
    let lapsed: Vec<_> = snap
        .lapsed_at_majority(person)
        .filter(|i| resting_on.is_none_or(|id| i.basis.event_id() == Some(id)))
        .collect();
    let Some(signed_on) = lapsed
        .iter()
        .filter_map(|i| i.basis.signed_on_version())
        .max()
    else {
        return Ok(None);
    };
    Ok(Some(LogEntry {
        format: ENTRY_FORMAT,
        at,
        actor: Actor::service(CAME_OF_AGE_TASK),
        action: LogAction::ConsentLapse,
        purpose: Purpose::ConsentManagement,
        legal_basis: LegalBasis::Consent {
            version: DocumentVersionId::new(family, signed_on).to_string(),
            items: lapsed.iter().map(|i| i.key.to_string()).collect(),
        },
        patient: patient.to_owned(),
        scope: DataScope::ConsentRecord {
            family: family.as_str().to_owned(),
        },
    }))
}

/// An application with a live release, and the use its releases were
/// checked against before a change to the register.
pub(crate) struct UseBefore {
    app: Application,
    request: UseRequest,
}

/// The uses of the live releases that `org` is a member organization of,
/// as the register says now, if registering `org` as `kind` in `country`
/// could make any of them ask more: none when the organization stays as
/// industrial and as far abroad as it was (one query, no more). Read
/// before the register's entry changes, for
/// [`recall_what_the_register_takes_back`].
pub(crate) fn uses_of_member(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    (org, kind, country): (&str, &str, &str),
) -> Result<Vec<UseBefore>, AppError> {
    let registered = store::find_organizations(conn, &[org])?;
    let was = registered
        .iter()
        .map(|o| (o.kind.as_str(), o.country.as_str()));
    let was = policy.use_now(crate::access::UseKind::default(), was);
    let will_be = policy.use_now(crate::access::UseKind::default(), [(kind, country)]);
    if !will_be.asks_more_than(was) {
        return Ok(Vec::new());
    }
    store::applications_with_live_releases_of(conn, org)?
        .into_iter()
        .map(|row| {
            let app = Application::from_row(row)?;
            let request = reuse_request(policy, conn, &app)?;
            Ok(UseBefore { app, request })
        })
        .collect()
}

/// Samples of a release decided per page when the register changes.
const REGISTER_RECALL_PAGE: i64 = 5_000;

/// After the register's entry for an organization changed in the caller's
/// transaction: for each use in `before` that became industrial or a
/// transfer abroad, recalls every sample its live releases included whose
/// patient's consent does not permit that (`industry_use_not_consented`,
/// `international_transfer_not_consented`). A use that stayed the same or
/// became less demanding recalls nothing. `change` names the change in the
/// notices' IDs. Returns how many notices were written.
pub(crate) fn recall_what_the_register_takes_back(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    before: &[UseBefore],
    change: &str,
    at: DateTime<Utc>,
) -> Result<usize, AppError> {
    let mut histories = BTreeMap::new();
    let mut written = 0;
    for UseBefore { app, request } in before {
        let after = reuse_request(policy, conn, app)?;
        if !after.kind().asks_more_than(request.kind()) {
            continue;
        }
        let uses = (request, &after);
        for release in store::releases_of(conn, &app.row.id)? {
            let mut after_position = -1;
            loop {
                let page = store::included_samples_page(
                    conn,
                    &release,
                    after_position,
                    REGISTER_RECALL_PAGE,
                )?;
                let Some(last) = page.last() else {
                    break;
                };
                after_position = last.position;
                let mut notices = Vec::new();
                for (sample, why) in taken_back_on_page(conn, &mut histories, uses, &page, at)? {
                    notices.push(RecallRow {
                        id: format!("{change}:{}:{}", release.id, sample.position),
                        application_id: app.row.id.clone(),
                        release_id: release.id.clone(),
                        project_sample_id: sample.project_sample_id.clone(),
                        reason: why.as_str().to_owned(),
                        created_at: at.naive_utc(),
                    });
                }
                written += store::record_recalls(conn, &notices, at)?;
            }
        }
    }
    Ok(written)
}

/// The samples of a page that the use `before` may have and `after` may
/// not, on each patient's consent as of `at`, with why. `histories` keeps
/// each family's version history across pages.
fn taken_back_on_page<'a>(
    conn: &mut DbConnection,
    histories: &mut Histories,
    (before, after): (&UseRequest, &UseRequest),
    page: &'a [store::IncludedSample],
    at: DateTime<Utc>,
) -> Result<Vec<(&'a store::IncludedSample, Exclusion)>, AppError> {
    // The disease scope is empty on a re-check, so no hierarchy is read.
    let diseases = DiseaseHierarchy::default();
    excluded_on_page(
        conn,
        histories,
        after.proxy_consent_lapses_at_majority,
        page,
        at,
        |consent, patient| {
            let was = consent.decide(before, patient, None, &diseases);
            let now = consent.decide(after, patient, None, &diseases);
            was.taken_back_by(&now)
        },
    )
}

/// Each family's version history, read once for several pages.
type Histories = BTreeMap<DocumentFamily, crate::consent::document::VersionHistory>;

/// The samples of a page that `judge` excludes, with why, given the
/// consent of their patients in their family as of `at`.
fn excluded_on_page<'a>(
    conn: &mut DbConnection,
    histories: &mut Histories,
    proxy_consent_lapses_at_majority: bool,
    page: &'a [store::IncludedSample],
    at: DateTime<Utc>,
    judge: impl Fn(&super::releases::PageConsent, &str) -> Option<Exclusion>,
) -> Result<Vec<(&'a store::IncludedSample, Exclusion)>, AppError> {
    let mut excluded = Vec::new();
    for family in DocumentFamily::ALL {
        let of_family = || page.iter().filter(|s| s.family == family.as_str());
        if of_family().next().is_none() {
            continue;
        }
        let history = match histories.entry(family) {
            std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(documents::history(conn, family)?)
            }
        };
        let consent = super::releases::PageConsent::load(
            conn,
            proxy_consent_lapses_at_majority,
            (family, &*history),
            of_family().map(|s| s.patient_pseudonym.as_str()),
            at,
        )?;
        for sample in of_family() {
            if let Some(why) = judge(&consent, sample.patient_pseudonym.as_str()) {
                excluded.push((sample, why));
            }
        }
    }
    Ok(excluded)
}

/// At the end of a release, in its transaction, with the gate closed
/// behind it (decision 0029): recalls each sample it included that its
/// patient's consent no longer lets `request` (the release's use,
/// [`UseRequest::rechecked`]) have as of `at`, for the
/// patients whose consent or status changed in a transaction that
/// committed while the release read (logged above `watermark`), and those
/// who came of age on a day that began after the release did (`began`).
/// Such a change, or the day's sweep, looked for live releases before this
/// one could be seen, so it recalled nothing from it. A change the release
/// read already is decided again to the same answer and recalls nothing.
/// Returns how many notices were written.
pub(crate) fn recall_what_changed_during_release(
    conn: &mut DbConnection,
    (application_id, release_id): (&str, &str),
    request: &UseRequest,
    (watermark, began): (i64, DateTime<Utc>),
    at: DateTime<Utc>,
) -> Result<usize, AppError> {
    let mut patients = crate::db::gate::patients_changed_since(conn, watermark)?;
    let (first_day, last_day) = (crate::calendar::day_of(began), crate::calendar::day_of(at));
    // Keyed as the sweep keys its notices, so the sweep, finding this
    // release once it has committed, never recalls one sample twice.
    let came_of_age: BTreeMap<String, NaiveDate> =
        if request.proxy_consent_lapses_at_majority && first_day < last_day {
            consents::came_of_age_between(conn, first_day, last_day)?
                .into_iter()
                .collect()
        } else {
            BTreeMap::new()
        };
    patients.extend(came_of_age.keys().cloned());
    patients.sort_unstable();
    patients.dedup();
    let changed = store::included_samples_of(conn, release_id, &patients)?;
    if changed.is_empty() {
        return Ok(0);
    }
    // The disease scope is empty on a re-check, so no hierarchy is read.
    let diseases = DiseaseHierarchy::default();
    let excluded = excluded_on_page(
        conn,
        &mut Histories::new(),
        request.proxy_consent_lapses_at_majority,
        &changed,
        at,
        |consent, patient| match consent.decide(request, patient, None, &diseases) {
            crate::access::cohort::SampleDecision::Excluded(why) => Some(why),
            crate::access::cohort::SampleDecision::Included { .. } => None,
        },
    )?;
    let notices: Vec<RecallRow> = excluded
        .into_iter()
        .map(|(sample, why)| {
            let cause = match came_of_age.get(&sample.patient_pseudonym) {
                Some(on) => came_of_age_cause(*on),
                None => "during-release".to_owned(),
            };
            RecallRow {
                id: format!("{cause}:{release_id}:{}", sample.position),
                application_id: application_id.to_owned(),
                release_id: release_id.to_owned(),
                project_sample_id: sample.project_sample_id.clone(),
                reason: why.as_str().to_owned(),
                created_at: at.naive_utc(),
            }
        })
        .collect();
    Ok(store::record_recalls(conn, &notices, at)?)
}

/// The sweep mark's name in `sweep_marks`.
const CAME_OF_AGE_SWEEP: &str = "came_of_age";

/// One patient's consent around a change.
struct Change<'a> {
    before: &'a ConsentSnapshot,
    after: &'a ConsentSnapshot,
    person: &'a Person,
    cause: Cause<'a>,
}

impl Change<'_> {
    /// The reason a use loses this patient's samples with the change, if it
    /// does.
    fn takes_back(&self, request: &UseRequest) -> Option<&'static str> {
        // The disease scope is empty on a re-check, so no hierarchy is read.
        let diseases = DiseaseHierarchy::default();
        let (before_request, before_person) = match &self.cause {
            Cause::Event { .. } => (request.clone(), self.person),
            Cause::CameOfAge { was: Some(was), .. } => (request.clone(), was),
            Cause::CameOfAge { was: None, .. } => (
                UseRequest {
                    proxy_consent_lapses_at_majority: false,
                    ..request.clone()
                },
                self.person,
            ),
        };
        let before = before_request.decide(self.before, before_person, None, &diseases);
        let after = request.decide(self.after, self.person, None, &diseases);
        before.taken_back_by(&after).map(|why| why.as_str())
    }
}
