//! Patients: found by pseudonym, created on their first consent, their
//! age and life recorded, and listed per hospital.

use super::*;

pub fn find_patient(
    conn: &mut DbConnection,
    pseudonym: &str,
) -> Result<Option<PatientRow>, DieselError> {
    db_run!(conn, c => patients::table
        .find(pseudonym)
        .select(PatientRow::as_select())
        .first(c)
        .optional())
}

/// Creates the patient row on first consent; a no-op when it exists.
pub fn ensure_patient(
    conn: &mut DbConnection,
    pseudonym: &str,
    hospital_org: &str,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let row = PatientRow {
        pseudonym: pseudonym.to_owned(),
        hospital_org: hospital_org.to_owned(),
        majority_on: None,
        deceased_on: None,
        created_at: now.naive_utc(),
    };
    db_run!(conn, c => diesel::insert_into(patients::table)
        .values(&row)
        .on_conflict(patients::pseudonym)
        .do_nothing()
        .execute(c))?;
    Ok(())
}

pub fn set_patient_status(
    conn: &mut DbConnection,
    pseudonym: &str,
    majority_on: Option<NaiveDate>,
    deceased_on: Option<NaiveDate>,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(patients::table.find(pseudonym))
        .set((patients::majority_on.eq(majority_on), patients::deceased_on.eq(deceased_on)))
        .execute(c))?;
    Ok(())
}

/// The event an idempotency key already produced, if any.
/// `tags` are the keyed hashes of the client's key under every key
/// version (see `Keyring::idempotency_tags`).
pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    hospital_org: &str,
    tags: &[String],
) -> Result<Option<EventRow>, DieselError> {
    db_run!(conn, c => events::table
        .filter(events::hospital_org.eq(hospital_org))
        .filter(events::idempotency_key.eq_any(tags))
        .select(EventRow::as_select())
        .first(c)
        .optional())
}

/// Patients whose majority day is after `after` and by `through`, with it.
/// Read from the partial index of minors (migration 000014).
pub fn came_of_age_between(
    conn: &mut DbConnection,
    after: NaiveDate,
    through: NaiveDate,
) -> Result<Vec<(String, NaiveDate)>, DieselError> {
    let rows: Vec<(String, Option<NaiveDate>)> = db_run!(conn, c => patients::table
        .filter(patients::majority_on.is_not_null())
        .filter(patients::majority_on.gt(after))
        .filter(patients::majority_on.le(through))
        .order(patients::pseudonym)
        .select((patients::pseudonym, patients::majority_on))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(patient, on)| Some((patient, on?)))
        .collect())
}

/// Of `pseudonyms`, those recorded as minors (with the day they come of
/// age), as the consent checks of a release need them: everyone else is
/// [`Person::default`]. Read from the partial index of migration 000014,
/// which holds the minors only, without touching the table.
pub fn minors_among(
    conn: &mut DbConnection,
    pseudonyms: &[String],
) -> Result<BTreeMap<String, Person>, DieselError> {
    if pseudonyms.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<(String, Option<NaiveDate>, Option<NaiveDate>)> = db_run!(conn, c => patients::table
        .filter(patients::majority_on.is_not_null())
        .filter(patients::pseudonym.eq_any(pseudonyms))
        .select((patients::pseudonym, patients::majority_on, patients::deceased_on))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(pseudonym, majority_on, deceased_on)| {
            (
                pseudonym,
                Person {
                    majority_on,
                    deceased_on,
                },
            )
        })
        .collect())
}

/// Every event of every patient of one hospital in one family, grouped by
/// patient. Used for the re-consent work list.
/// The events in `family` of a hospital's patients whose pseudonyms lie in
/// `first..=last`, grouped by patient.
pub fn events_for_hospital(
    conn: &mut DbConnection,
    hospital_org: &str,
    family: DocumentFamily,
    (first, last): (&str, &str),
) -> Result<BTreeMap<String, Vec<StoredEvent>>, DieselError> {
    let rows = db_run!(conn, c => events::table
        .inner_join(patients::table)
        .filter(patients::hospital_org.eq(hospital_org))
        .filter(events::family.eq(family.as_str()))
        .filter(events::patient_pseudonym.between(first, last))
        .order((events::patient_pseudonym, events::signed_at, events::recorded_at, events::id))
        .select((EventRow::as_select(), events::decisions))
        .load(c))?;
    let mut grouped: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
    for stored in assemble(rows)? {
        grouped
            .entry(stored.row.patient_pseudonym.clone())
            .or_default()
            .push(stored);
    }
    Ok(grouped)
}

/// A page of a hospital's patients in pseudonym order, after `after`.
pub fn patients_of_hospital(
    conn: &mut DbConnection,
    hospital_org: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<PatientRow>, DieselError> {
    db_run!(conn, c => {
        let mut query = patients::table
            .filter(patients::hospital_org.eq(hospital_org))
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(patients::pseudonym.gt(after));
        }
        query
            .order(patients::pseudonym)
            .limit(limit)
            .select(PatientRow::as_select())
            .load(c)
    })
}
