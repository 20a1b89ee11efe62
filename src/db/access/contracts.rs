//! Agreement texts, agreements, their sanctions and members' acceptances.

use super::*;
use crate::access::review::AgreementState;

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
            .filter(agreements::state.ne(AgreementState::Revoked.as_str())))
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
