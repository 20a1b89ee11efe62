//! Storage of data access: organizations, attestations, datasets,
//! applications and votes, agreements, releases, recall notices and the
//! Passport visas issued.

use super::schema::{
    agreement_acceptances as acceptances, agreement_texts as texts,
    agreement_transitions as sanctions, agreements, application_partner_orgs as partner_orgs,
    application_transitions as transitions, applications, dataset_samples, datasets,
    genome_samples, organizations, recall_notices, release_samples, releases,
    researcher_attestations as attestations, review_votes as votes, visa_issuances,
};
use super::DbConnection;
use crate::access::manifest::{spacing, POSITION_SPAN};
use crate::consent::DocumentFamily;
use crate::db_run;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::{HashMap, HashSet};

#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone)]
#[diesel(table_name = organizations)]
pub struct OrganizationRow {
    pub org: String,
    pub kind: String,
    pub country: String,
    pub verified_by: String,
    pub verified_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone)]
#[diesel(table_name = attestations)]
pub struct AttestationRow {
    pub org: String,
    pub subject: String,
    pub training: String,
    pub completed_on: NaiveDate,
    pub expires_on: NaiveDate,
    pub recorded_by: String,
    pub recorded_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = datasets)]
pub struct DatasetRow {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub terms: String,
    pub portfolio: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = dataset_samples)]
pub struct DatasetSampleRow {
    pub dataset_id: String,
    pub genome_id: String,
    pub diagnosis: Option<String>,
    pub added_at: NaiveDateTime,
    /// Copied from the sample: a page of the cohort needs no second lookup.
    pub patient_pseudonym: String,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = applications)]
pub struct ApplicationRow {
    pub id: String,
    pub org: String,
    pub submitted_by: String,
    pub declaration: String,
    pub commercial: bool,
    pub matching: String,
    pub state: String,
    pub conditions: String,
    pub submitted_at: NaiveDateTime,
    pub decided_at: Option<NaiveDateTime>,
    pub access_started_at: Option<NaiveDateTime>,
    /// The keyed hash of the submission's `Idempotency-Key`, if it had one.
    pub idempotency_key: Option<String>,
    /// The fingerprint of that submission, to tell a retry from a reuse.
    pub request_hash: Option<String>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = transitions)]
pub struct TransitionRow {
    pub application_id: String,
    pub seq: i32,
    pub state: String,
    pub actor: String,
    pub at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = votes)]
pub struct VoteRow {
    pub application_id: String,
    pub voter: String,
    pub vote: String,
    pub voted_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = texts)]
pub struct AgreementTextRow {
    pub version: i32,
    pub body: String,
    pub sha256: String,
    pub published_by: String,
    pub published_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = agreements)]
pub struct AgreementRow {
    pub id: String,
    pub application_id: String,
    pub state: String,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub state_reason: Option<String>,
    pub state_changed_at: Option<NaiveDateTime>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = acceptances)]
pub struct AcceptanceRow {
    pub agreement_id: String,
    /// The member's organization and subject.
    pub member_org: String,
    pub member: String,
    pub text_version: i32,
    pub text_sha256: String,
    pub accepted_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = releases)]
pub struct ReleaseRow {
    pub id: String,
    pub application_id: String,
    pub agreement_id: String,
    pub released_by: String,
    pub audience: String,
    pub released_at: NaiveDateTime,
    pub handle_expires_at: NaiveDateTime,
    pub included: i64,
    pub excluded: i64,
    pub provenance: String,
    /// Excluded samples by reason, as a JSON object; NULL only inside the
    /// release's own transaction, until it is finished.
    pub excluded_by_reason: Option<String>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = release_samples)]
// Written by `COPY`, which needs every value bound (`None` is NULL).
#[diesel(treat_none_as_default_value = false)]
pub struct ReleaseSampleRow {
    pub release_id: String,
    pub position: i64,
    pub dataset_id: String,
    pub genome_id: String,
    pub patient_pseudonym: String,
    pub project_sample_id: String,
    pub included: bool,
    pub reason: String,
    pub consent_version: Option<i32>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = recall_notices)]
// Binary `COPY` needs every value spelled out (see `record_recalls`).
#[diesel(treat_none_as_default_value = false)]
pub struct RecallRow {
    pub id: String,
    pub application_id: String,
    pub release_id: String,
    pub project_sample_id: String,
    pub reason: String,
    pub created_at: NaiveDateTime,
}

/// A GA4GH Passport visa the service signed, by its `jti`.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = visa_issuances)]
pub struct VisaIssuanceRow {
    pub jti: String,
    pub application_id: String,
    /// The Passport visa type.
    pub visa_type: String,
    pub member_org: String,
    pub member: String,
    pub issued_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Rows per multi-row INSERT on PostgreSQL: under its 65,535 bind
/// parameters for the widest row here (9 columns).
const INSERT_CHUNK: usize = 2_000;

/// Inserts many rows: multi-row statements on PostgreSQL; on SQLite one
/// cached prepared statement per row, which inside a transaction costs
/// microseconds (diesel's SQLite batch insert cannot bind NULLs).
macro_rules! insert_many {
    ($conn:expr, $table:expr, $rows:expr $(, $conflict:ident)?) => {{
        let mut written = 0usize;
        match $conn {
            DbConnection::Postgresql(c) => {
                for chunk in $rows.chunks(INSERT_CHUNK) {
                    written += diesel::insert_into($table).values(chunk)$(.$conflict())?.execute(c)?;
                }
            }
            DbConnection::Sqlite(c) => {
                for row in $rows {
                    written += diesel::insert_into($table).values(row)$(.$conflict())?.execute(c)?;
                }
            }
        }
        written
    }};
}

pub fn upsert_organization(
    conn: &mut DbConnection,
    row: &OrganizationRow,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(organizations::table)
        .values(row)
        .on_conflict(organizations::org)
        .do_update()
        .set(row)
        .execute(c))?;
    Ok(())
}

/// The registered organizations among `orgs`.
pub fn find_organizations(
    conn: &mut DbConnection,
    orgs: &[&str],
) -> Result<Vec<OrganizationRow>, DieselError> {
    db_run!(conn, c => organizations::table
        .filter(organizations::org.eq_any(orgs))
        .select(OrganizationRow::as_select())
        .load(c))
}

pub fn find_organization(
    conn: &mut DbConnection,
    org: &str,
) -> Result<Option<OrganizationRow>, DieselError> {
    db_run!(conn, c => organizations::table
        .find(org)
        .select(OrganizationRow::as_select())
        .first(c)
        .optional())
}

pub fn upsert_attestation(
    conn: &mut DbConnection,
    row: &AttestationRow,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(attestations::table)
        .values(row)
        .on_conflict((attestations::org, attestations::subject))
        .do_update()
        .set(row)
        .execute(c))?;
    Ok(())
}

pub fn attestations_of(
    conn: &mut DbConnection,
    org: &str,
    subjects: &[String],
) -> Result<Vec<AttestationRow>, DieselError> {
    db_run!(conn, c => attestations::table
        .filter(attestations::org.eq(org))
        .filter(attestations::subject.eq_any(subjects))
        .select(AttestationRow::as_select())
        .load(c))
}

pub fn insert_dataset(conn: &mut DbConnection, row: &DatasetRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(datasets::table).values(row).execute(c))?;
    Ok(())
}

pub fn find_datasets(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<Vec<DatasetRow>, DieselError> {
    db_run!(conn, c => datasets::table
        .filter(datasets::id.eq_any(ids))
        .select(DatasetRow::as_select())
        .load(c))
}

pub fn list_datasets(conn: &mut DbConnection) -> Result<Vec<(DatasetRow, i64)>, DieselError> {
    let rows: Vec<DatasetRow> = db_run!(conn, c => datasets::table
        .order(datasets::name)
        .select(DatasetRow::as_select())
        .load(c))?;
    let counts: Vec<(String, i64)> = db_run!(conn, c => dataset_samples::table
        .group_by(dataset_samples::dataset_id)
        .select((dataset_samples::dataset_id, diesel::dsl::count_star()))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let n = counts
                .iter()
                .find(|(id, _)| id == &r.id)
                .map_or(0, |(_, n)| *n);
            (r, n)
        })
        .collect())
}

/// The patient of each of `genome_ids` that is a registered sample.
pub fn sample_owners(
    conn: &mut DbConnection,
    genome_ids: &[String],
) -> Result<std::collections::HashMap<String, String>, DieselError> {
    Ok(db_run!(conn, c => genome_samples::table
        .filter(genome_samples::genome_id.eq_any(genome_ids))
        .select((genome_samples::genome_id, genome_samples::patient_pseudonym))
        .load::<(String, String)>(c))?
    .into_iter()
    .collect())
}

/// Adds samples to a dataset; samples already in it keep their diagnosis.
pub fn add_dataset_samples(
    conn: &mut DbConnection,
    rows: &[DatasetSampleRow],
) -> Result<usize, DieselError> {
    Ok(insert_many!(
        conn,
        dataset_samples::table,
        rows,
        on_conflict_do_nothing
    ))
}

/// One sample of a dataset with what a release needs of it.
#[derive(Debug, Clone)]
pub struct CohortSample {
    pub genome_id: String,
    pub patient_pseudonym: String,
    pub diagnosis: Option<String>,
}

/// A page of a dataset's samples in patient order, after the sample
/// `after` (patient pseudonym, genome ID): one range of
/// `dataset_samples_by_patient` (decision 0024). `("", "")` starts at the
/// first sample.
pub fn dataset_page(
    conn: &mut DbConnection,
    dataset_id: &str,
    (after_patient, after_genome_id): (&str, &str),
    limit: i64,
) -> Result<Vec<CohortSample>, DieselError> {
    // The row comparison (patient, genome ID) > (after) spelled so both
    // backends start the index scan at `after_patient`: the first filter is
    // the range, the second drops the few samples of that patient already
    // paged.
    let members: Vec<(String, String, Option<String>)> = db_run!(conn, c => dataset_samples::table
        .filter(dataset_samples::dataset_id.eq(dataset_id))
        .filter(dataset_samples::patient_pseudonym.ge(after_patient))
        .filter(dataset_samples::patient_pseudonym.gt(after_patient).or(dataset_samples::genome_id.gt(after_genome_id)))
        .order((dataset_samples::patient_pseudonym, dataset_samples::genome_id))
        .limit(limit)
        .select((dataset_samples::genome_id, dataset_samples::patient_pseudonym, dataset_samples::diagnosis))
        .load(c))?;
    Ok(members
        .into_iter()
        .map(|(genome_id, patient_pseudonym, diagnosis)| CohortSample {
            genome_id,
            patient_pseudonym,
            diagnosis,
        })
        .collect())
}

pub fn insert_application(
    conn: &mut DbConnection,
    row: &ApplicationRow,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(applications::table).values(row).execute(c))?;
    Ok(())
}

/// The application `org` submitted under one of `tags` (the keyed hashes
/// of an `Idempotency-Key` under every key version).
pub fn find_application_by_idempotency_key(
    conn: &mut DbConnection,
    org: &str,
    tags: &[String],
) -> Result<Option<ApplicationRow>, DieselError> {
    db_run!(conn, c => applications::table
        .filter(applications::org.eq(org))
        .filter(applications::idempotency_key.eq_any(tags))
        .select(ApplicationRow::as_select())
        .first(c)
        .optional())
}

pub fn find_application(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<ApplicationRow>, DieselError> {
    db_run!(conn, c => applications::table
        .find(id)
        .select(ApplicationRow::as_select())
        .first(c)
        .optional())
}

pub fn applications_in_state(
    conn: &mut DbConnection,
    states: &[&str],
) -> Result<Vec<ApplicationRow>, DieselError> {
    db_run!(conn, c => applications::table
        .filter(applications::state.eq_any(states))
        .order(applications::submitted_at)
        .select(ApplicationRow::as_select())
        .load(c))
}

/// Which applications a list reads.
pub struct ApplicationFilter<'a> {
    pub states: &'a [&'a str],
    /// Only those of one organization: as the applicant, or as a partner.
    pub org: Option<&'a str>,
}

/// A page of applications in submission order (then by id), after the
/// position `after` (submitted at, id).
pub fn applications_page(
    conn: &mut DbConnection,
    filter: &ApplicationFilter<'_>,
    after: Option<(NaiveDateTime, &str)>,
    limit: i64,
) -> Result<Vec<ApplicationRow>, DieselError> {
    db_run!(conn, c => {
        let mut query = applications::table
            .filter(applications::state.eq_any(filter.states))
            .into_boxed();
        if let Some(org) = filter.org {
            query = query.filter(
                applications::org.eq(org).or(applications::id.eq_any(
                    partner_orgs::table
                        .filter(partner_orgs::org.eq(org))
                        .select(partner_orgs::application_id),
                )),
            );
        }
        if let Some((at, id)) = after {
            query = query.filter(
                applications::submitted_at
                    .gt(at)
                    .or(applications::submitted_at.eq(at).and(applications::id.gt(id))),
            );
        }
        query
            .order((applications::submitted_at, applications::id))
            .limit(limit)
            .select(ApplicationRow::as_select())
            .load(c)
    })
}

/// Moves an application from `from` to `to` and records the transition.
/// False if it was no longer in `from` (a racing decision).
pub fn transition(
    conn: &mut DbConnection,
    id: &str,
    from: &str,
    to: &str,
    conditions: Option<&str>,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<bool, DieselError> {
    let at = at.naive_utc();
    let changed = db_run!(conn, c => {
        let target = applications::table
            .filter(applications::id.eq(id))
            .filter(applications::state.eq(from));
        match conditions {
            Some(conditions) => diesel::update(target)
                .set((applications::state.eq(to), applications::decided_at.eq(at), applications::conditions.eq(conditions)))
                .execute(c)?,
            None => diesel::update(target)
                .set((applications::state.eq(to), applications::decided_at.eq(at)))
                .execute(c)?,
        }
    });
    if changed == 0 {
        return Ok(false);
    }
    record_transition(conn, id, to, actor, at)?;
    Ok(true)
}

pub fn record_transition(
    conn: &mut DbConnection,
    id: &str,
    state: &str,
    actor: &str,
    at: NaiveDateTime,
) -> Result<(), DieselError> {
    let seq: Option<i32> = db_run!(conn, c => transitions::table
        .filter(transitions::application_id.eq(id))
        .select(diesel::dsl::max(transitions::seq))
        .first(c))?;
    let row = TransitionRow {
        application_id: id.to_owned(),
        seq: seq.unwrap_or(0) + 1,
        state: state.to_owned(),
        actor: actor.to_owned(),
        at,
    };
    db_run!(conn, c => diesel::insert_into(transitions::table).values(&row).execute(c))?;
    Ok(())
}

/// The transitions of applications, oldest first within each.
pub fn transitions_of(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<Vec<TransitionRow>, DieselError> {
    db_run!(conn, c => transitions::table
        .filter(transitions::application_id.eq_any(ids))
        .order((transitions::application_id, transitions::seq))
        .select(TransitionRow::as_select())
        .load(c))
}

/// Marks the start of access (the first release); later releases keep it.
pub fn mark_access_started(
    conn: &mut DbConnection,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(applications::table
            .filter(applications::id.eq(id))
            .filter(applications::access_started_at.is_null()))
        .set(applications::access_started_at.eq(at.naive_utc()))
        .execute(c))?;
    Ok(())
}

pub fn insert_vote(conn: &mut DbConnection, row: &VoteRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(votes::table).values(row).execute(c))?;
    Ok(())
}

/// The votes on applications, oldest first within each.
pub fn votes_of(conn: &mut DbConnection, ids: &[String]) -> Result<Vec<VoteRow>, DieselError> {
    db_run!(conn, c => votes::table
        .filter(votes::application_id.eq_any(ids))
        .order((votes::application_id, votes::voted_at))
        .select(VoteRow::as_select())
        .load(c))
}

pub fn insert_text(conn: &mut DbConnection, row: &AgreementTextRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(texts::table).values(row).execute(c))?;
    Ok(())
}

pub fn current_text(conn: &mut DbConnection) -> Result<Option<AgreementTextRow>, DieselError> {
    db_run!(conn, c => texts::table
        .order(texts::version.desc())
        .select(AgreementTextRow::as_select())
        .first(c)
        .optional())
}

pub fn text_version(
    conn: &mut DbConnection,
    version: i32,
) -> Result<Option<AgreementTextRow>, DieselError> {
    db_run!(conn, c => texts::table
        .find(version)
        .select(AgreementTextRow::as_select())
        .first(c)
        .optional())
}

pub fn insert_agreement(conn: &mut DbConnection, row: &AgreementRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(agreements::table).values(row).execute(c))?;
    Ok(())
}

pub fn find_agreement(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<AgreementRow>, DieselError> {
    db_run!(conn, c => agreements::table
        .find(id)
        .select(AgreementRow::as_select())
        .first(c)
        .optional())
}

pub fn agreement_of_application(
    conn: &mut DbConnection,
    application_id: &str,
) -> Result<Option<AgreementRow>, DieselError> {
    Ok(agreements_of_applications(conn, &[application_id.to_owned()])?.pop())
}

/// The agreements of applications (at most one each).
pub fn agreements_of_applications(
    conn: &mut DbConnection,
    application_ids: &[String],
) -> Result<Vec<AgreementRow>, DieselError> {
    db_run!(conn, c => agreements::table
        .filter(agreements::application_id.eq_any(application_ids))
        .select(AgreementRow::as_select())
        .load(c))
}

/// Sets an agreement's state unless it is revoked (revocation is final).
pub fn set_agreement_state(
    conn: &mut DbConnection,
    id: &str,
    state: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<bool, DieselError> {
    let changed = db_run!(conn, c => diesel::update(agreements::table
            .filter(agreements::id.eq(id))
            .filter(agreements::state.ne("revoked")))
        .set((
            agreements::state.eq(state),
            agreements::state_reason.eq(reason),
            agreements::state_changed_at.eq(at.naive_utc()),
        ))
        .execute(c))?;
    Ok(changed == 1)
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = sanctions)]
pub struct AgreementTransitionRow {
    pub agreement_id: String,
    pub seq: i32,
    pub state: String,
    pub reason: String,
    pub actor: String,
    pub at: NaiveDateTime,
}

/// Records the state an agreement entered.
pub fn record_agreement_transition(
    conn: &mut DbConnection,
    id: &str,
    state: &str,
    reason: &str,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), DieselError> {
    let seq: Option<i32> = db_run!(conn, c => sanctions::table
        .filter(sanctions::agreement_id.eq(id))
        .select(diesel::dsl::max(sanctions::seq))
        .first(c))?;
    let row = AgreementTransitionRow {
        agreement_id: id.to_owned(),
        seq: seq.unwrap_or(0) + 1,
        state: state.to_owned(),
        reason: reason.to_owned(),
        actor: actor.to_owned(),
        at: at.naive_utc(),
    };
    db_run!(conn, c => diesel::insert_into(sanctions::table).values(&row).execute(c))?;
    Ok(())
}

/// The state histories of `ids`, oldest first per agreement.
pub fn agreement_transitions_of(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<Vec<AgreementTransitionRow>, DieselError> {
    db_run!(conn, c => sanctions::table
        .filter(sanctions::agreement_id.eq_any(ids))
        .order((sanctions::agreement_id, sanctions::seq))
        .select(AgreementTransitionRow::as_select())
        .load(c))
}

/// Records the partner organizations of a new application, so that their
/// researchers find it in their lists.
pub fn insert_partner_orgs(
    conn: &mut DbConnection,
    application_id: &str,
    orgs: &[&str],
) -> Result<(), DieselError> {
    let rows: Vec<_> = orgs
        .iter()
        .map(|org| {
            (
                partner_orgs::application_id.eq(application_id),
                partner_orgs::org.eq(*org),
            )
        })
        .collect();
    db_run!(conn, c => diesel::insert_into(partner_orgs::table).values(&rows).execute(c))?;
    Ok(())
}

pub fn insert_acceptance(conn: &mut DbConnection, row: &AcceptanceRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(acceptances::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// The acceptances of agreements.
pub fn acceptances_of(
    conn: &mut DbConnection,
    agreement_ids: &[String],
) -> Result<Vec<AcceptanceRow>, DieselError> {
    db_run!(conn, c => acceptances::table
        .filter(acceptances::agreement_id.eq_any(agreement_ids))
        .select(AcceptanceRow::as_select())
        .load(c))
}

pub fn insert_release(conn: &mut DbConnection, row: &ReleaseRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(releases::table).values(row).execute(c))?;
    Ok(())
}

/// Fills in a release's counts and provenance once its manifest is written.
pub fn finish_release(conn: &mut DbConnection, row: &ReleaseRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(releases::table.find(&row.id))
        .set((
            releases::included.eq(row.included),
            releases::excluded.eq(row.excluded),
            releases::provenance.eq(&row.provenance),
            releases::excluded_by_reason.eq(&row.excluded_by_reason),
        ))
        .execute(c))?;
    Ok(())
}

/// Writes a page of a release's manifest. On PostgreSQL the page goes in
/// by binary `COPY` (a release writes up to millions of rows).
pub fn insert_release_samples(
    conn: &mut DbConnection,
    rows: &[ReleaseSampleRow],
) -> Result<(), DieselError> {
    match conn {
        DbConnection::Postgresql(c) => {
            diesel::copy_from(release_samples::table)
                .from_insertable(rows)
                .execute(c)?;
        }
        DbConnection::Sqlite(_) => {
            insert_many!(conn, release_samples::table, rows);
        }
    }
    Ok(())
}

pub fn find_release(conn: &mut DbConnection, id: &str) -> Result<Option<ReleaseRow>, DieselError> {
    db_run!(conn, c => releases::table
        .find(id)
        .select(ReleaseRow::as_select())
        .first(c)
        .optional())
}

pub fn releases_of(
    conn: &mut DbConnection,
    application_id: &str,
) -> Result<Vec<ReleaseRow>, DieselError> {
    db_run!(conn, c => releases::table
        .filter(releases::application_id.eq(application_id))
        .order((releases::released_at, releases::id))
        .select(ReleaseRow::as_select())
        .load(c))
}

/// The most manifest rows one window of a page read is sized to cover.
const MAX_WINDOW_ROWS: i64 = 100_000;

/// The first `limit` manifest rows of `release` after position `after`;
/// with `included_only`, the first `limit` included ones.
///
/// Every read is a bounded range of positions, with a limit. A fresh release
/// is never in the planner's statistics, and for an open range (`position >
/// after … LIMIT n`) PostgreSQL read every later row of the release and
/// sorted them: 15 ms a page at 100,000 rows instead of 0.4 ms. Positions
/// are spread evenly over their span (decision 0030), so a window's width
/// follows from how many rows it should hold: the rows still missing,
/// scaled by the share of included rows seen so far.
pub fn release_page(
    conn: &mut DbConnection,
    release: &ReleaseRow,
    after: i64,
    limit: i64,
    included_only: bool,
) -> Result<Vec<ReleaseSampleRow>, DieselError> {
    let spacing = spacing(release.included + release.excluded);
    let mut rows: Vec<ReleaseSampleRow> = Vec::new();
    let mut from = after;
    while (rows.len() as i64) < limit && from < POSITION_SPAN {
        let missing = limit - rows.len() as i64;
        // How many manifest rows the positions read so far held, about.
        let looked_at = (from - after) / spacing;
        let window_rows = if !included_only {
            // A quarter to spare: positions are spread evenly, not exactly.
            missing + missing / 4 + 1
        } else if rows.is_empty() {
            // Nothing included yet: twice what was looked at, at least
            // twice what is missing.
            (2 * looked_at).max(2 * missing)
        } else {
            // The density seen so far, with a quarter to spare.
            let per_row = looked_at.max(1) as f64 / rows.len() as f64;
            (missing as f64 * per_row * 1.25).ceil() as i64
        };
        let window = window_rows
            .clamp(missing, MAX_WINDOW_ROWS)
            .saturating_mul(spacing);
        let through = from.saturating_add(window).min(POSITION_SPAN);
        // Two fixed queries rather than one boxed one: diesel prepares only
        // queries whose shape is known at compile time.
        let found: Vec<ReleaseSampleRow> = db_run!(conn, c => {
            let window = release_samples::table
                .filter(release_samples::release_id.eq(&release.id))
                .filter(release_samples::position.gt(from))
                .filter(release_samples::position.le(through))
                .order(release_samples::position)
                .limit(missing)
                .select(ReleaseSampleRow::as_select());
            if included_only {
                window.filter(release_samples::included.eq(true)).load(c)
            } else {
                window.load(c)
            }
        })?;
        from = match found.last() {
            // The window held more than was missing: go on after the last
            // row taken, not past rows left unread.
            Some(last) if found.len() as i64 == missing => last.position,
            _ => through,
        };
        rows.extend(found);
    }
    Ok(rows)
}

/// A sample of a patient that a live release (its agreement not revoked)
/// included from a dataset of one family: what a recall would name.
#[derive(Debug, Clone)]
pub struct LiveInclusion {
    pub application_id: String,
    pub release_id: String,
    pub position: i64,
    pub project_sample_id: String,
}

/// Every sample of `patient` that a live release included from a dataset
/// of `family`, oldest release first.
pub fn live_inclusions(
    conn: &mut DbConnection,
    patient: &str,
    family: DocumentFamily,
) -> Result<Vec<LiveInclusion>, DieselError> {
    let hits: Vec<(String, String, i64, String)> = db_run!(conn, c => release_samples::table
        .inner_join(releases::table.on(releases::id.eq(release_samples::release_id)))
        .inner_join(agreements::table.on(agreements::id.eq(releases::agreement_id)))
        .inner_join(datasets::table.on(datasets::id.eq(release_samples::dataset_id)))
        .filter(release_samples::patient_pseudonym.eq(patient))
        .filter(release_samples::included.eq(true))
        .filter(agreements::state.ne("revoked"))
        .filter(datasets::domain.eq(family.as_str()))
        .order((releases::released_at, releases::id, release_samples::position))
        .select((releases::application_id, releases::id, release_samples::position, release_samples::project_sample_id))
        .load(c))?;
    Ok(hits
        .into_iter()
        .map(
            |(application_id, release_id, position, project_sample_id)| LiveInclusion {
                application_id,
                release_id,
                position,
                project_sample_id,
            },
        )
        .collect())
}

/// The applications with a live release (agreement not revoked) that
/// `org` is a member organization of, as the applicant or a partner.
pub fn applications_with_live_releases_of(
    conn: &mut DbConnection,
    org: &str,
) -> Result<Vec<ApplicationRow>, DieselError> {
    db_run!(conn, c => applications::table
        .filter(
            applications::org.eq(org).or(applications::id.eq_any(
                partner_orgs::table
                    .filter(partner_orgs::org.eq(org))
                    .select(partner_orgs::application_id),
            )),
        )
        .filter(applications::id.eq_any(
            releases::table
                .inner_join(agreements::table.on(agreements::id.eq(releases::agreement_id)))
                .filter(agreements::state.ne("revoked"))
                .select(releases::application_id),
        ))
        .order((applications::submitted_at, applications::id))
        .select(ApplicationRow::as_select())
        .load(c))
}

/// One sample a release included, with its dataset's family.
pub struct IncludedSample {
    pub position: i64,
    pub family: String,
    pub patient_pseudonym: String,
    pub project_sample_id: String,
}

/// An included manifest row as read, before its dataset is named by family.
type IncludedRow = (i64, String, String, String);

/// A page of the samples `release` included, in manifest order, after
/// `after_position` (`-1` starts at the first), read in the bounded
/// windows of [`release_page`].
pub fn included_samples_page(
    conn: &mut DbConnection,
    release: &ReleaseRow,
    after_position: i64,
    limit: i64,
) -> Result<Vec<IncludedSample>, DieselError> {
    let rows = release_page(conn, release, after_position, limit, true)?
        .into_iter()
        .map(|r| {
            (
                r.position,
                r.dataset_id,
                r.patient_pseudonym,
                r.project_sample_id,
            )
        })
        .collect();
    with_families(conn, rows)
}

/// The samples `release_id` included of `patients`, in manifest order.
pub fn included_samples_of(
    conn: &mut DbConnection,
    release_id: &str,
    patients: &[String],
) -> Result<Vec<IncludedSample>, DieselError> {
    if patients.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<IncludedRow> = db_run!(conn, c => release_samples::table
        .filter(release_samples::release_id.eq(release_id))
        .filter(release_samples::patient_pseudonym.eq_any(patients))
        .filter(release_samples::included.eq(true))
        .order(release_samples::position)
        .select((release_samples::position, release_samples::dataset_id, release_samples::patient_pseudonym, release_samples::project_sample_id))
        .load(c))?;
    with_families(conn, rows)
}

/// Names each row's dataset by its consent family, from one read of the
/// few datasets the rows belong to.
fn with_families(
    conn: &mut DbConnection,
    rows: Vec<IncludedRow>,
) -> Result<Vec<IncludedSample>, DieselError> {
    let mut ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let families: HashMap<String, String> = db_run!(conn, c => datasets::table
        .filter(datasets::id.eq_any(&ids))
        .select((datasets::id, datasets::domain))
        .load::<(String, String)>(c))?
    .into_iter()
    .collect();
    rows.into_iter()
        .map(
            |(position, dataset, patient_pseudonym, project_sample_id)| {
                let family = families
                    .get(&dataset)
                    .cloned()
                    .ok_or(DieselError::NotFound)?;
                Ok(IncludedSample {
                    position,
                    family,
                    patient_pseudonym,
                    project_sample_id,
                })
            },
        )
        .collect()
}

/// Writes recall notices and queues each for delivery to every active
/// webhook of its application, in the caller's transaction. Returns how
/// many notices were written.
pub fn record_recalls(
    conn: &mut DbConnection,
    notices: &[RecallRow],
    at: DateTime<Utc>,
) -> Result<usize, DieselError> {
    if notices.is_empty() {
        return Ok(0);
    }
    // A notice already written stands, and its deliveries are queued.
    let ids: Vec<&str> = notices.iter().map(|n| n.id.as_str()).collect();
    let existing: HashSet<String> = db_run!(conn, c => recall_notices::table
        .filter(recall_notices::id.eq_any(&ids))
        .select(recall_notices::id)
        .load::<String>(c))?
    .into_iter()
    .collect();
    let new: Vec<RecallRow> = notices
        .iter()
        .filter(|n| !existing.contains(&n.id))
        .cloned()
        .collect();
    if new.is_empty() {
        return Ok(0);
    }
    // A change to the register recalls up to a whole release at once, so
    // on PostgreSQL the notices go in by binary `COPY`, as manifests do;
    // `seq` takes its default from the sequence either way.
    let written = match conn {
        DbConnection::Postgresql(c) => diesel::copy_from(recall_notices::table)
            .from_insertable(&new)
            .execute(c)?,
        DbConnection::Sqlite(_) => insert_many!(conn, recall_notices::table, &new),
    };
    queue_recall_deliveries(conn, &new, at)?;
    Ok(written)
}

/// Where the sweep mark `name` stands, if it is behind `today`: a read
/// only, so a caller can skip opening a write transaction on the ticks
/// (nearly all) that find the day swept already.
pub fn sweep_due(
    conn: &mut DbConnection,
    name: &str,
    today: NaiveDate,
) -> Result<Option<NaiveDate>, DieselError> {
    use super::schema::sweep_marks;
    let through: Option<NaiveDate> = db_run!(conn, c => sweep_marks::table
        .find(name)
        .select(sweep_marks::through)
        .first(c)
        .optional())?;
    Ok(through.filter(|through| *through < today))
}

/// Moves the sweep mark `name` to `today` and returns where it was, or
/// `None` when it is at `today` already, or another instance moved it
/// first (the update's condition then matches no row).
pub fn claim_sweep(
    conn: &mut DbConnection,
    name: &str,
    today: NaiveDate,
) -> Result<Option<NaiveDate>, DieselError> {
    use super::schema::sweep_marks;
    let Some(through) = sweep_due(conn, name, today)? else {
        return Ok(None);
    };
    let moved = db_run!(conn, c => diesel::update(sweep_marks::table.find(name))
        .filter(sweep_marks::through.eq(through))
        .set(sweep_marks::through.eq(today))
        .execute(c))?;
    Ok((moved == 1).then_some(through))
}

/// One pending delivery per (notice, active webhook of its application),
/// keyed by the notice's number: the database assigns it, so it is read
/// back here in the same statement that queues.
fn queue_recall_deliveries(
    conn: &mut DbConnection,
    notices: &[RecallRow],
    at: DateTime<Utc>,
) -> Result<(), DieselError> {
    use super::schema::{
        notification_deliveries as deliveries, notification_endpoints as endpoints,
    };
    use diesel::dsl::AsExprOf;
    use diesel::sql_types::{Integer, Text, Timestamp};
    let ids: Vec<&str> = notices.iter().map(|n| n.id.as_str()).collect();
    let pending: AsExprOf<&str, Text> = "pending".into_sql::<Text>();
    let first_attempt: AsExprOf<i32, Integer> = 0.into_sql::<Integer>();
    let due: AsExprOf<NaiveDateTime, Timestamp> = at.naive_utc().into_sql::<Timestamp>();
    db_run!(conn, c => diesel::insert_into(deliveries::table)
        .values(
            recall_notices::table
                .inner_join(endpoints::table.on(endpoints::application_id.eq(recall_notices::application_id.nullable())))
                .filter(recall_notices::id.eq_any(&ids))
                .filter(endpoints::disabled_at.is_null())
                .select((endpoints::id, recall_notices::seq.assume_not_null(), pending, first_attempt, due)),
        )
        .into_columns((deliveries::endpoint_id, deliveries::idx, deliveries::state, deliveries::attempts, deliveries::next_attempt_at))
        .execute(c))?;
    Ok(())
}

/// Recall notices by number (`seq`), for delivery.
pub fn recalls_numbered(
    conn: &mut DbConnection,
    numbers: &[i64],
) -> Result<Vec<(i64, RecallRow)>, DieselError> {
    let rows: Vec<(Option<i64>, RecallRow)> = db_run!(conn, c => recall_notices::table
        .filter(recall_notices::seq.eq_any(numbers))
        .select((recall_notices::seq, RecallRow::as_select()))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(seq, row)| Some((seq?, row)))
        .collect())
}

pub fn recalls_of(
    conn: &mut DbConnection,
    application_id: &str,
) -> Result<Vec<RecallRow>, DieselError> {
    db_run!(conn, c => recall_notices::table
        .filter(recall_notices::application_id.eq(application_id))
        .order((recall_notices::created_at, recall_notices::id))
        .select(RecallRow::as_select())
        .load(c))
}

pub fn record_visa(conn: &mut DbConnection, row: &VisaIssuanceRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(visa_issuances::table).values(row).execute(c))?;
    Ok(())
}

/// The visas issued for an application, oldest first.
pub fn visas_of(
    conn: &mut DbConnection,
    application_id: &str,
) -> Result<Vec<VisaIssuanceRow>, DieselError> {
    db_run!(conn, c => visa_issuances::table
        .filter(visa_issuances::application_id.eq(application_id))
        .order((visa_issuances::issued_at, visa_issuances::jti))
        .select(VisaIssuanceRow::as_select())
        .load(c))
}
