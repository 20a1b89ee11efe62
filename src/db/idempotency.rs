//! Answers kept for requests sent with an `Idempotency-Key`, sealed.

use super::schema::idempotent_answers as answers;
use super::DbConnection;
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = answers)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AnswerRow {
    pub org: String,
    /// A keyed hash of the key, as `Keyring::idempotency_tags` gives it.
    pub key_tag: String,
    pub operation: String,
    pub request_hash: String,
    pub key_version: i32,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub answered_at: NaiveDateTime,
}

/// The answer kept under any of `tags` (one per key version) at `org`.
pub fn find(
    conn: &mut DbConnection,
    org: &str,
    tags: &[String],
) -> Result<Option<AnswerRow>, DieselError> {
    db_run!(conn, c => answers::table
        .filter(answers::org.eq(org))
        .filter(answers::key_tag.eq_any(tags))
        .select(AnswerRow::as_select())
        .first(c)
        .optional())
}

/// Keeps an answer; a second under the same key is a unique violation.
pub fn insert(conn: &mut DbConnection, row: &AnswerRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(answers::table).values(row).execute(c))?;
    Ok(())
}
