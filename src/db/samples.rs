//! Storage of genome samples, their data objects, sequencing-centre
//! authorisations and the identity vault.

use super::documents::utc;
use super::schema::{
    genome_data_objects as objects, genome_samples as samples, identity_vault as vault,
    sequencing_authorizations as authz,
};
use super::DbConnection;
use crate::db_run;
use crate::pseudonym::vault::Sealed;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;

#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = samples)]
pub struct SampleRow {
    pub genome_id: String,
    pub key_version: i32,
    pub patient_pseudonym: String,
    pub hospital_org: String,
    pub registered_by_org: String,
    pub registered_by: String,
    pub kind: String,
    pub assay: String,
    pub test_order_ref: Option<String>,
    pub ccat_report_id: Option<String>,
    pub tumour_category: Option<String>,
    pub request_hash: String,
    pub registered_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = objects)]
pub struct ObjectRow {
    pub genome_id: String,
    pub name: String,
    pub version: i32,
    pub uri: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub format: String,
    pub legal_class: String,
    pub correction_reason: Option<String>,
    pub registered_by: String,
    pub registered_at: NaiveDateTime,
}

/// Organizations a hospital has authorised to register its samples.
pub fn authorized_centers(
    conn: &mut DbConnection,
    hospital_org: &str,
) -> Result<Vec<String>, DieselError> {
    db_run!(conn, c => authz::table
        .filter(authz::hospital_org.eq(hospital_org))
        .filter(authz::revoked_at.is_null())
        .order(authz::center_org)
        .select(authz::center_org)
        .load(c))
}

/// Grants (or re-grants) `center_org`. Returns whether anything changed.
pub fn authorize_center(
    conn: &mut DbConnection,
    hospital_org: &str,
    center_org: &str,
    granted_by: &str,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let now = now.naive_utc();
    db_run!(conn, c => {
        diesel::insert_into(authz::table)
            .values((
                authz::hospital_org.eq(hospital_org),
                authz::center_org.eq(center_org),
                authz::granted_by.eq(granted_by),
                authz::granted_at.eq(now),
            ))
            .on_conflict((authz::hospital_org, authz::center_org))
            .do_update()
            .set((authz::granted_by.eq(granted_by), authz::granted_at.eq(now), authz::revoked_at.eq(None::<NaiveDateTime>)))
            .execute(c)?;
        Ok(())
    })
}

/// Revokes `center_org`; returns false if it held no active authorisation.
pub fn revoke_center(
    conn: &mut DbConnection,
    hospital_org: &str,
    center_org: &str,
    now: DateTime<Utc>,
) -> Result<bool, DieselError> {
    let changed = db_run!(conn, c => diesel::update(
        authz::table
            .filter(authz::hospital_org.eq(hospital_org))
            .filter(authz::center_org.eq(center_org))
            .filter(authz::revoked_at.is_null()),
    )
    .set(authz::revoked_at.eq(now.naive_utc()))
    .execute(c))?;
    Ok(changed > 0)
}

/// The first sample found among `ids` (an identifier under each key version).
pub fn find_any(conn: &mut DbConnection, ids: &[String]) -> Result<Option<SampleRow>, DieselError> {
    let rows: Vec<SampleRow> = db_run!(conn, c => samples::table
        .filter(samples::genome_id.eq_any(ids))
        .select(SampleRow::as_select())
        .load(c)?);
    Ok(ids
        .iter()
        .find_map(|id| rows.iter().find(|r| &r.genome_id == id).cloned()))
}

pub fn find(conn: &mut DbConnection, genome_id: &str) -> Result<Option<SampleRow>, DieselError> {
    db_run!(conn, c => samples::table.find(genome_id).select(SampleRow::as_select()).first(c).optional())
}

pub fn for_patient(
    conn: &mut DbConnection,
    pseudonym: &str,
) -> Result<Vec<SampleRow>, DieselError> {
    db_run!(conn, c => samples::table
        .filter(samples::patient_pseudonym.eq(pseudonym))
        .order((samples::registered_at, samples::genome_id))
        .select(SampleRow::as_select())
        .load(c))
}

/// Every version of every object of the given samples.
pub fn objects_of(
    conn: &mut DbConnection,
    genome_ids: &[String],
) -> Result<Vec<ObjectRow>, DieselError> {
    db_run!(conn, c => objects::table
        .filter(objects::genome_id.eq_any(genome_ids))
        .order((objects::genome_id, objects::name, objects::version))
        .select(ObjectRow::as_select())
        .load(c))
}

/// Objects already registered under any of `uris`.
pub fn objects_by_uri(
    conn: &mut DbConnection,
    uris: &[String],
) -> Result<Vec<ObjectRow>, DieselError> {
    db_run!(conn, c => objects::table
        .filter(objects::uri.eq_any(uris))
        .select(ObjectRow::as_select())
        .load(c))
}

/// Stores a sample with its objects: one data-modifying CTE on PostgreSQL,
/// plain statements on SQLite. A duplicate genome ID or object URI fails
/// the unique constraints and nothing is written.
pub fn insert_sample(
    conn: &mut DbConnection,
    sample: &SampleRow,
    objects_rows: &[ObjectRow],
) -> Result<(), DieselError> {
    use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
    let DbConnection::Postgresql(c) = conn else {
        return db_run!(conn, c => {
            diesel::insert_into(samples::table).values(sample).execute(c)?;
            diesel::insert_into(objects::table).values(objects_rows).execute(c)?;
            Ok(())
        });
    };
    let values: Vec<String> = (0..objects_rows.len())
        .map(|i| {
            let p = 14 + 10 * i;
            format!(
                "($1, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8,
                p + 9
            )
        })
        .collect();
    let sql = format!(
        "WITH s AS (INSERT INTO genome_samples (genome_id, key_version, patient_pseudonym, hospital_org, registered_by_org, \
         registered_by, kind, assay, test_order_ref, ccat_report_id, tumour_category, request_hash, registered_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)) \
         INSERT INTO genome_data_objects (genome_id, name, version, uri, size_bytes, sha256, format, legal_class, \
         correction_reason, registered_by, registered_at) VALUES {}",
        values.join(", ")
    );
    let mut query = super::prepared::PgStatement::new(sql)
        .bind::<Text, _>(&sample.genome_id)
        .bind::<Integer, _>(sample.key_version)
        .bind::<Text, _>(&sample.patient_pseudonym)
        .bind::<Text, _>(&sample.hospital_org)
        .bind::<Text, _>(&sample.registered_by_org)
        .bind::<Text, _>(&sample.registered_by)
        .bind::<Text, _>(&sample.kind)
        .bind::<Text, _>(&sample.assay)
        .bind::<Nullable<Text>, _>(&sample.test_order_ref)
        .bind::<Nullable<Text>, _>(&sample.ccat_report_id)
        .bind::<Nullable<Text>, _>(&sample.tumour_category)
        .bind::<Text, _>(&sample.request_hash)
        .bind::<Timestamp, _>(sample.registered_at);
    for o in objects_rows {
        query = query
            .bind::<Text, _>(&o.name)
            .bind::<Integer, _>(o.version)
            .bind::<Text, _>(&o.uri)
            .bind::<BigInt, _>(o.size_bytes)
            .bind::<Text, _>(&o.sha256)
            .bind::<Text, _>(&o.format)
            .bind::<Text, _>(&o.legal_class)
            .bind::<Nullable<Text>, _>(&o.correction_reason)
            .bind::<Text, _>(&o.registered_by)
            .bind::<Timestamp, _>(o.registered_at);
    }
    // One text per number of objects (at most `MAX_OBJECTS`).
    query.execute(c)?;
    Ok(())
}

pub fn insert_object(conn: &mut DbConnection, object: &ObjectRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(objects::table).values(object).execute(c))?;
    Ok(())
}

/// Seals a patient's local ID into the vault unless it is already there.
pub fn seal_identity(
    conn: &mut DbConnection,
    pseudonym: &str,
    hospital_org: &str,
    sealed: &Sealed,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let version = i32::try_from(sealed.key_version).unwrap_or(i32::MAX);
    db_run!(conn, c => diesel::insert_into(vault::table)
        .values((
            vault::patient_pseudonym.eq(pseudonym),
            vault::hospital_org.eq(hospital_org),
            vault::key_version.eq(version),
            vault::nonce.eq(&sealed.nonce),
            vault::ciphertext.eq(&sealed.ciphertext),
            vault::sealed_at.eq(now.naive_utc()),
        ))
        .on_conflict(vault::patient_pseudonym)
        .do_nothing()
        .execute(c))?;
    Ok(())
}

/// The sealed local ID of a patient, with the hospital it is bound to.
pub fn sealed_identity(
    conn: &mut DbConnection,
    pseudonym: &str,
) -> Result<Option<(String, Sealed)>, DieselError> {
    let row: Option<(String, i32, Vec<u8>, Vec<u8>)> = db_run!(conn, c => vault::table
        .find(pseudonym)
        .select((vault::hospital_org, vault::key_version, vault::nonce, vault::ciphertext))
        .first(c)
        .optional()?);
    Ok(row.map(|(org, version, nonce, ciphertext)| {
        (
            org,
            Sealed {
                key_version: u32::try_from(version).unwrap_or(0),
                nonce,
                ciphertext,
            },
        )
    }))
}

pub fn registered_at(row: &SampleRow) -> DateTime<Utc> {
    utc(row.registered_at)
}
