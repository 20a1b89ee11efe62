//! The register: organizations, ethics-training attestations, datasets
//! and the samples in them.

use super::*;

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
