//! Applications, their partner organizations, transitions and votes.

use super::*;

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
