//! The portal pages' storage: browser sessions (keyed by the SHA-256 of the
//! cookie's value), patients' passkeys, and the one-time recovery code kept
//! on the patient's account.

use super::schema::{patient_accounts as accounts, portal_passkeys as passkeys, portal_sessions};
use super::DbConnection;
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

/// A stored session, as the pages need it.
#[derive(Debug, Clone, Queryable)]
pub struct SessionRow {
    pub id_hash: String,
    pub account_id: Option<String>,
    pub csrf_token: String,
    pub ceremony: Option<String>,
    pub ceremony_kind: Option<String>,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
}

pub fn insert_session(
    conn: &mut DbConnection,
    id_hash: &str,
    account_id: Option<&str>,
    csrf_token: &str,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(portal_sessions::table)
        .values((
            portal_sessions::id_hash.eq(id_hash),
            portal_sessions::account_id.eq(account_id),
            portal_sessions::csrf_token.eq(csrf_token),
            portal_sessions::created_at.eq(now),
            portal_sessions::last_seen_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

/// A session not revoked, whatever its age (the caller applies timeouts).
pub fn session(conn: &mut DbConnection, id_hash: &str) -> Result<Option<SessionRow>, DieselError> {
    db_run!(conn, c => portal_sessions::table
        .find(id_hash)
        .filter(portal_sessions::revoked_at.is_null())
        .select((
            portal_sessions::id_hash,
            portal_sessions::account_id,
            portal_sessions::csrf_token,
            portal_sessions::ceremony,
            portal_sessions::ceremony_kind,
            portal_sessions::created_at,
            portal_sessions::last_seen_at,
        ))
        .first(c)
        .optional())
}

/// Records activity, so the idle timeout runs from now.
pub fn touch_session(
    conn: &mut DbConnection,
    id_hash: &str,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(portal_sessions::table.find(id_hash))
        .set(portal_sessions::last_seen_at.eq(now))
        .execute(c))?;
    Ok(())
}

/// Keeps a ceremony's state (`kind`, JSON) until its second half.
pub fn set_ceremony(
    conn: &mut DbConnection,
    id_hash: &str,
    kind: &str,
    state: &str,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(portal_sessions::table.find(id_hash))
        .filter(portal_sessions::revoked_at.is_null())
        .set((
            portal_sessions::ceremony.eq(state),
            portal_sessions::ceremony_kind.eq(kind),
        ))
        .execute(c))?;
    Ok(())
}

/// Takes a ceremony's state out of the session: one conditional UPDATE, so
/// a ceremony is finished at most once even if two requests race.
pub fn take_ceremony(
    conn: &mut DbConnection,
    id_hash: &str,
    kind: &str,
) -> Result<Option<String>, DieselError> {
    db_run!(conn, c => {
        let found: Option<Option<String>> = portal_sessions::table
            .find(id_hash)
            .filter(portal_sessions::revoked_at.is_null())
            .filter(portal_sessions::ceremony_kind.eq(kind))
            .select(portal_sessions::ceremony)
            .first(c)
            .optional()?;
        let Some(Some(state)) = found else {
            return Ok(None);
        };
        let cleared = diesel::update(portal_sessions::table.find(id_hash))
            .filter(portal_sessions::ceremony_kind.eq(kind))
            .set((
                portal_sessions::ceremony.eq(None::<String>),
                portal_sessions::ceremony_kind.eq(None::<String>),
            ))
            .execute(c)?;
        Ok((cleared == 1).then_some(state))
    })
}

pub fn revoke_session(
    conn: &mut DbConnection,
    id_hash: &str,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(portal_sessions::table.find(id_hash))
        .filter(portal_sessions::revoked_at.is_null())
        .set(portal_sessions::revoked_at.eq(now))
        .execute(c))?;
    Ok(())
}

/// Signs an account out everywhere (a recovery: whoever held the lost
/// passkey's sessions loses them).
pub fn revoke_account_sessions(
    conn: &mut DbConnection,
    account_id: &str,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(portal_sessions::table)
        .filter(portal_sessions::account_id.eq(account_id))
        .filter(portal_sessions::revoked_at.is_null())
        .set(portal_sessions::revoked_at.eq(now))
        .execute(c))?;
    Ok(())
}

/// An active account's patient pseudonym.
pub fn account_patient(
    conn: &mut DbConnection,
    account_id: &str,
) -> Result<Option<String>, DieselError> {
    db_run!(conn, c => accounts::table
        .find(account_id)
        .filter(accounts::revoked_at.is_null())
        .select(accounts::patient_pseudonym)
        .first(c)
        .optional())
}

pub fn set_recovery_hash(
    conn: &mut DbConnection,
    account_id: &str,
    hash: Option<&str>,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(accounts::table.find(account_id))
        .set(accounts::recovery_hash.eq(hash))
        .execute(c))?;
    Ok(())
}

/// The active account a recovery code belongs to, without using it.
pub fn account_with_recovery(
    conn: &mut DbConnection,
    hash: &str,
) -> Result<Option<String>, DieselError> {
    db_run!(conn, c => accounts::table
        .filter(accounts::recovery_hash.eq(hash))
        .filter(accounts::revoked_at.is_null())
        .select(accounts::id)
        .first(c)
        .optional())
}

/// Uses a recovery code: the active account holding it, whose code is
/// cleared in the same UPDATE, so a code works once.
pub fn redeem_recovery(conn: &mut DbConnection, hash: &str) -> Result<Option<String>, DieselError> {
    db_run!(conn, c => {
        let found: Option<String> = accounts::table
            .filter(accounts::recovery_hash.eq(hash))
            .filter(accounts::revoked_at.is_null())
            .select(accounts::id)
            .first(c)
            .optional()?;
        let Some(account) = found else {
            return Ok(None);
        };
        let cleared = diesel::update(accounts::table.find(&account))
            .filter(accounts::recovery_hash.eq(hash))
            .set(accounts::recovery_hash.eq(None::<String>))
            .execute(c)?;
        Ok((cleared == 1).then_some(account))
    })
}

pub fn insert_passkey(
    conn: &mut DbConnection,
    credential_id: &str,
    account_id: &str,
    passkey: &str,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(passkeys::table)
        .values((
            passkeys::credential_id.eq(credential_id),
            passkeys::account_id.eq(account_id),
            passkeys::passkey.eq(passkey),
            passkeys::created_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

/// An account's passkeys, `(credential ID, credential JSON)`.
pub fn passkeys_of(
    conn: &mut DbConnection,
    account_id: &str,
) -> Result<Vec<(String, String)>, DieselError> {
    db_run!(conn, c => passkeys::table
        .filter(passkeys::account_id.eq(account_id))
        .select((passkeys::credential_id, passkeys::passkey))
        .load(c))
}

/// Stores a passkey's updated counter after a sign-in.
pub fn update_passkey(
    conn: &mut DbConnection,
    credential_id: &str,
    passkey: &str,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(passkeys::table.find(credential_id))
        .set((passkeys::passkey.eq(passkey), passkeys::last_used_at.eq(now)))
        .execute(c))?;
    Ok(())
}

/// Removes every passkey of an account (a recovery replaces them).
pub fn remove_passkeys(conn: &mut DbConnection, account_id: &str) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::delete(passkeys::table.filter(passkeys::account_id.eq(account_id)))
        .execute(c))?;
    Ok(())
}
