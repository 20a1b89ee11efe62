//! The patient portal's storage: one-time enrollment codes, patient
//! accounts and notification preferences.

use super::schema::{
    enrollment_codes as codes, patient_accounts as accounts, patient_preferences as prefs,
};
use super::DbConnection;
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

pub fn insert_code(
    conn: &mut DbConnection,
    code_hash: &str,
    pseudonym: &str,
    issued_by: &str,
    issued_at: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(codes::table)
        .values((
            codes::code_hash.eq(code_hash),
            codes::patient_pseudonym.eq(pseudonym),
            codes::issued_by.eq(issued_by),
            codes::issued_at.eq(issued_at),
            codes::expires_at.eq(expires_at),
        ))
        .execute(c))?;
    Ok(())
}

/// Marks an unexpired, unused code (under any of its tags) used and returns
/// its patient. One conditional UPDATE: two redemptions racing cannot both
/// win.
pub fn redeem_code(
    conn: &mut DbConnection,
    tags: &[String],
    now: NaiveDateTime,
) -> Result<Option<String>, DieselError> {
    db_run!(conn, c => {
        let found: Option<(String, String)> = codes::table
            .filter(codes::code_hash.eq_any(tags))
            .filter(codes::used_at.is_null())
            .filter(codes::expires_at.gt(now))
            .select((codes::code_hash, codes::patient_pseudonym))
            .first(c)
            .optional()?;
        let Some((hash, patient)) = found else {
            return Ok(None);
        };
        let claimed = diesel::update(codes::table.find(&hash))
            .filter(codes::used_at.is_null())
            .set(codes::used_at.eq(now))
            .execute(c)?;
        Ok(if claimed == 1 { Some(patient) } else { None })
    })
}

/// Whether a code (under any of its tags) is unexpired and unused.
pub fn code_usable(
    conn: &mut DbConnection,
    tags: &[String],
    now: NaiveDateTime,
) -> Result<bool, DieselError> {
    let found: i64 = db_run!(conn, c => codes::table
        .filter(codes::code_hash.eq_any(tags))
        .filter(codes::used_at.is_null())
        .filter(codes::expires_at.gt(now))
        .count()
        .get_result(c))?;
    Ok(found > 0)
}

pub fn insert_account(
    conn: &mut DbConnection,
    id: &str,
    pseudonym: &str,
    secret_hash: &str,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(accounts::table)
        .values((
            accounts::id.eq(id),
            accounts::patient_pseudonym.eq(pseudonym),
            accounts::secret_hash.eq(secret_hash),
            accounts::created_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

/// The patient of an active account and its stored secret hash.
pub fn account(conn: &mut DbConnection, id: &str) -> Result<Option<(String, String)>, DieselError> {
    db_run!(conn, c => accounts::table
        .find(id)
        .filter(accounts::revoked_at.is_null())
        .select((accounts::patient_pseudonym, accounts::secret_hash))
        .first(c)
        .optional())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub language: String,
    pub hospital_app: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            language: "ja".into(),
            hospital_app: true,
        }
    }
}

pub fn preferences(conn: &mut DbConnection, pseudonym: &str) -> Result<Preferences, DieselError> {
    let row: Option<(String, bool)> = db_run!(conn, c => prefs::table
        .find(pseudonym)
        .select((prefs::language, prefs::hospital_app))
        .first(c)
        .optional())?;
    Ok(row
        .map(|(language, hospital_app)| Preferences {
            language,
            hospital_app,
        })
        .unwrap_or_default())
}

pub fn set_preferences(
    conn: &mut DbConnection,
    pseudonym: &str,
    p: &Preferences,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    let row = (
        prefs::patient_pseudonym.eq(pseudonym),
        prefs::language.eq(&p.language),
        prefs::hospital_app.eq(p.hospital_app),
        prefs::updated_at.eq(now),
    );
    db_run!(conn, c => diesel::insert_into(prefs::table)
        .values(row)
        .on_conflict(prefs::patient_pseudonym)
        .do_update()
        .set((
            prefs::language.eq(&p.language),
            prefs::hospital_app.eq(p.hospital_app),
            prefs::updated_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}
