//! Storage of recontact requests and their steps.

use super::schema::{recontact_requests as requests, recontact_steps as steps};
use super::DbConnection;
use crate::db_run;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = requests)]
pub struct RequestRow {
    pub id: String,
    pub patient_pseudonym: String,
    pub hospital_org: String,
    pub family: String,
    pub genome_id: String,
    pub reason: String,
    pub on_behalf_of: Option<String>,
    pub state: String,
    pub opened_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = steps)]
pub struct StepRow {
    pub request_id: String,
    pub seq: i32,
    pub step: String,
    pub actor: String,
    pub actor_org: String,
    pub note: Option<String>,
    pub at: NaiveDateTime,
}

pub fn insert_request(conn: &mut DbConnection, row: &RequestRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(requests::table).values(row).execute(c))?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<RequestRow>, DieselError> {
    db_run!(conn, c => requests::table.find(id).select(RequestRow::as_select()).first(c).optional())
}

/// Moves a request from `from` to `to`; false if it was no longer in `from`
/// (a concurrent step won).
pub fn transition(
    conn: &mut DbConnection,
    id: &str,
    from: &str,
    to: &str,
) -> Result<bool, DieselError> {
    let changed = db_run!(conn, c => diesel::update(requests::table.filter(requests::id.eq(id)).filter(requests::state.eq(from)))
        .set(requests::state.eq(to))
        .execute(c))?;
    Ok(changed == 1)
}

pub fn steps_of(conn: &mut DbConnection, id: &str) -> Result<Vec<StepRow>, DieselError> {
    db_run!(conn, c => steps::table.filter(steps::request_id.eq(id)).order(steps::seq).select(StepRow::as_select()).load(c))
}

/// Appends a step with the next sequence number.
pub fn append_step(
    conn: &mut DbConnection,
    id: &str,
    step: &str,
    actor: &str,
    actor_org: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let next: Option<i32> = db_run!(conn, c => steps::table.filter(steps::request_id.eq(id)).select(diesel::dsl::max(steps::seq)).first(c)?);
    let row = StepRow {
        request_id: id.to_owned(),
        seq: next.unwrap_or(0) + 1,
        step: step.to_owned(),
        actor: actor.to_owned(),
        actor_org: actor_org.to_owned(),
        note: note.map(str::to_owned),
        at: now.naive_utc(),
    };
    db_run!(conn, c => diesel::insert_into(steps::table).values(&row).execute(c))?;
    Ok(())
}

pub fn list_by_state(conn: &mut DbConnection, state: &str) -> Result<Vec<RequestRow>, DieselError> {
    db_run!(conn, c => requests::table.filter(requests::state.eq(state)).order(requests::opened_at).select(RequestRow::as_select()).load(c))
}
