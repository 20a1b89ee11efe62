//! What live releases included of a patient, and the recall notices
//! written when consent, age or the register takes it back.

use super::*;
use crate::access::review::AgreementState;

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
        .filter(agreements::state.ne(AgreementState::Revoked.as_str()))
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
                .filter(agreements::state.ne(AgreementState::Revoked.as_str()))
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
    use crate::db::schema::sweep_marks;
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
    use crate::db::schema::sweep_marks;
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
    use crate::db::schema::{
        notification_deliveries as deliveries, notification_endpoints as endpoints,
    };
    use diesel::dsl::AsExprOf;
    use diesel::sql_types::{Integer, Text, Timestamp};
    let ids: Vec<&str> = notices.iter().map(|n| n.id.as_str()).collect();
    let pending: AsExprOf<&str, Text> = crate::db::notify::DeliveryState::Pending
        .as_str()
        .into_sql::<Text>();
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
