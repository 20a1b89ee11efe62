//! Where changes that can take a sample back meet a release being written
//! (decision 0029).
//!
//! A change to a patient's consent or status, or to the register, looks
//! for live releases to recall from; a release still being written is not
//! yet visible to it, and the release may have read the patient's consent
//! (or the register) before the change committed. Without a meeting point
//! the sample would be handed out with no recall notice.
//!
//! - **Consent and status changes** hold the release gate shared from
//!   before their log entry is appended. A release closes the gate briefly
//!   before it reads anything and notes the log's size (its watermark):
//!   every change logged below it has committed, so the release sees it.
//!   At its end the release closes the gate again, until it commits, and
//!   re-decides the patients whose changes were logged above the
//!   watermark. A change that comes later waits for the commit, and then
//!   finds the release like any other.
//! - **The register** is row-locked: a release holds its member
//!   organizations' entries shared; a change to an entry takes it for
//!   update before it reads anything.
//!
//! Consent and status changes never wait for one another, and wait for a
//! release only while it decides its last few patients and commits. A
//! change to the register, a rare governance act, waits for every release
//! of its organization's uses in progress. SQLite runs one writer at a
//! time, so there every lock here is a no-op.

use super::schema::{access_log_entries, organizations};
use super::DbConnection;
use crate::ledger::entry::LogAction;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

/// The transaction advisory lock consent changes hold shared and releases
/// take exclusively ("gggat" in ASCII).
const RELEASE_GATE: i64 = 0x67_67_67_61_74;

/// The log actions of changes that can take a released sample back. The
/// partial index `access_log_consent_changes` (migration 000016) holds
/// these entries alone; keep the two alike.
pub const CHANGES_THAT_RECALL: [LogAction; 4] = [
    LogAction::ConsentRegister,
    LogAction::ConsentChange,
    LogAction::ConsentWithdraw,
    LogAction::PatientStatusChange,
];

diesel::define_sql_function! {
    fn pg_advisory_xact_lock_shared(key: diesel::sql_types::BigInt);
}

/// Holds the gate shared for the rest of the caller's transaction. A
/// consent or status change calls this before it appends its log entry.
pub fn change_enters(conn: &mut DbConnection) -> Result<(), DieselError> {
    if let DbConnection::Postgresql(c) = conn {
        diesel::select(pg_advisory_xact_lock_shared(RELEASE_GATE)).execute(c)?;
    }
    Ok(())
}

/// The log size below which every change has committed: the gate is
/// closed (waiting for the changes inside) in a transaction of its own, so
/// this must be called outside one.
pub fn watermark(conn: &mut DbConnection) -> Result<i64, DieselError> {
    super::write_transaction(conn, |conn| {
        close_until_commit(conn)?;
        let max: Option<i64> = crate::db_run!(conn, c => access_log_entries::table
            .select(diesel::dsl::max(access_log_entries::seq))
            .first(c))?;
        Ok(max.unwrap_or(0))
    })
}

/// Closes the gate until the caller's transaction ends: changes inside
/// finish first, and new ones wait.
pub fn close_until_commit(conn: &mut DbConnection) -> Result<(), DieselError> {
    if let DbConnection::Postgresql(c) = conn {
        diesel::select(super::pg_advisory_xact_lock(RELEASE_GATE)).execute(c)?;
    }
    Ok(())
}

/// The patients with a change logged above `watermark`, once each.
pub fn patients_changed_since(
    conn: &mut DbConnection,
    watermark: i64,
) -> Result<Vec<String>, DieselError> {
    // The actions are literals in the SQL, not a bound array: only then
    // can PostgreSQL's generic plan of the cached statement prove that the
    // partial index holds every row asked for. Bound, it walks every entry
    // above the watermark, the release's own included.
    let actions: Vec<String> = CHANGES_THAT_RECALL
        .iter()
        .map(|a| format!("'{}'", a.as_str()))
        .collect();
    let changes =
        diesel::dsl::sql::<diesel::sql_types::Bool>(&format!("action IN ({})", actions.join(", ")));
    crate::db_run!(conn, c => access_log_entries::table
        .filter(access_log_entries::seq.gt(watermark))
        .filter(changes)
        .select(access_log_entries::patient_pseudonym)
        .distinct()
        .load(c))
}

/// Holds the register entries of `orgs` shared until the caller's
/// transaction ends: a change to any of them waits for it.
pub fn hold_register_entries(conn: &mut DbConnection, orgs: &[&str]) -> Result<(), DieselError> {
    if let DbConnection::Postgresql(c) = conn {
        organizations::table
            .filter(organizations::org.eq_any(orgs))
            .select(organizations::org)
            .for_share()
            .load::<String>(c)?;
    }
    Ok(())
}

/// Takes the register entry of `org` for update until the caller's
/// transaction ends, waiting for releases that hold it.
pub fn take_register_entry(conn: &mut DbConnection, org: &str) -> Result<(), DieselError> {
    if let DbConnection::Postgresql(c) = conn {
        organizations::table
            .find(org)
            .select(organizations::org)
            .for_update()
            .load::<String>(c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CHANGES_THAT_RECALL;

    /// The partial index holds exactly the entries the end check asks for,
    /// on either backend.
    #[test]
    fn the_index_holds_the_changes_that_recall() {
        let wanted: Vec<String> = CHANGES_THAT_RECALL
            .iter()
            .map(|a| format!("'{}'", a.as_str()))
            .collect();
        for up in [
            include_str!(
                "../../migrations/postgres/2026-12-04-000016_consent_changes_index/up.sql"
            ),
            include_str!("../../migrations/sqlite/2026-12-04-000016_consent_changes_index/up.sql"),
        ] {
            let predicate = up.split("WHERE action IN (").nth(1).unwrap_or_default();
            let listed: Vec<String> = predicate
                .split(')')
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|a| a.trim().to_owned())
                .collect();
            assert_eq!(listed, wanted);
        }
    }
}
