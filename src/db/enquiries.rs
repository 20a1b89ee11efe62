//! Storage of patients' enquiries and their sealed messages.

use super::schema::{enquiry_messages as messages, patient_enquiries as enquiries};
use super::DbConnection;
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = enquiries)]
pub struct EnquiryRow {
    pub id: String,
    pub patient_pseudonym: String,
    pub hospital_org: String,
    pub kind: String,
    pub state: String,
    pub about_entry: Option<i64>,
    pub about_family: Option<String>,
    pub sent_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub enquiry_id: String,
    pub seq: i32,
    pub author: String,
    pub author_org: String,
    pub author_user: String,
    pub key_version: i32,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub at: NaiveDateTime,
}

pub fn insert(conn: &mut DbConnection, row: &EnquiryRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(enquiries::table).values(row).execute(c))?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<EnquiryRow>, DieselError> {
    db_run!(conn, c => enquiries::table.find(id).select(EnquiryRow::as_select()).first(c).optional())
}

/// One patient's enquiries, newest first.
pub fn of_patient(
    conn: &mut DbConnection,
    pseudonym: &str,
) -> Result<Vec<EnquiryRow>, DieselError> {
    db_run!(conn, c => enquiries::table
        .filter(enquiries::patient_pseudonym.eq(pseudonym))
        .order((enquiries::sent_at.desc(), enquiries::id))
        .select(EnquiryRow::as_select())
        .load(c))
}

/// Enquiries of some kinds in one state, oldest first (a work list).
pub fn in_state(
    conn: &mut DbConnection,
    kinds: &[&str],
    state: &str,
) -> Result<Vec<EnquiryRow>, DieselError> {
    db_run!(conn, c => enquiries::table
        .filter(enquiries::state.eq(state))
        .filter(enquiries::kind.eq_any(kinds))
        .order((enquiries::sent_at, enquiries::id))
        .select(EnquiryRow::as_select())
        .load(c))
}

pub fn set_state(
    conn: &mut DbConnection,
    id: &str,
    state: &str,
    at: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(enquiries::table.find(id))
        .set((enquiries::state.eq(state), enquiries::updated_at.eq(at)))
        .execute(c))?;
    Ok(())
}

pub fn messages_of(conn: &mut DbConnection, id: &str) -> Result<Vec<MessageRow>, DieselError> {
    db_run!(conn, c => messages::table
        .filter(messages::enquiry_id.eq(id))
        .order(messages::seq)
        .select(MessageRow::as_select())
        .load(c))
}

/// The next message's place: one more than the last.
pub fn next_seq(conn: &mut DbConnection, id: &str) -> Result<i32, DieselError> {
    let last: Option<i32> = db_run!(conn, c => messages::table
        .filter(messages::enquiry_id.eq(id))
        .select(diesel::dsl::max(messages::seq))
        .first(c)?);
    Ok(last.unwrap_or(0) + 1)
}

pub fn insert_message(conn: &mut DbConnection, row: &MessageRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(messages::table).values(row).execute(c))?;
    Ok(())
}
