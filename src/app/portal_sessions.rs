//! Browser sessions of the patient portal's pages (decision 0036).
//!
//! A browser holds a random session ID; the database holds its SHA-256, the
//! CSRF token forms must echo, the passkey ceremony under way and, once
//! signed in, the patient's account. Any instance serves any session.
//! Signing in never upgrades a session: it revokes the one that asked and
//! starts another, so an ID planted before sign-in (fixation) is worth
//! nothing after it.

use super::{AppError, Context};
use crate::auth::{Caller, Principal, Role};
use crate::db::{consents as patients, portal_sessions as store, DbConnection};
use chrono::{DateTime, Duration, Utc};

/// A session as a page sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    /// What every form and every script request must send back.
    pub csrf_token: String,
    /// The signed-in patient, if any.
    pub patient: Option<SignedIn>,
}

/// A signed-in patient: their account, and the caller the actions see,
/// the same as a patient token would make.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account_id: String,
    pub caller: Caller,
}

/// A session just made: the cookie's value (shown once, never stored) and
/// the session.
pub struct NewSession {
    pub cookie_value: String,
    pub session: Session,
}

fn random_token(bytes: usize) -> Result<String, AppError> {
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        crate::keyfile::random_bytes(bytes).map_err(AppError::internal)?,
    ))
}

/// The hash a cookie value is stored under.
pub fn id_hash(cookie_value: &str) -> String {
    super::enrollment::sha256_hex(cookie_value)
}

/// A new session, signed in to `account_id` or not, in the caller's
/// transaction.
pub(crate) fn insert(
    conn: &mut DbConnection,
    account_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<NewSession, AppError> {
    let cookie_value = random_token(32)?;
    let csrf_token = random_token(32)?;
    let hash = id_hash(&cookie_value);
    store::insert_session(conn, &hash, account_id, &csrf_token, now.naive_utc())?;
    let patient = match account_id {
        Some(account) => Some(signed_in(conn, account)?.ok_or(AppError::NotFound)?),
        None => None,
    };
    Ok(NewSession {
        cookie_value,
        session: Session {
            id_hash: hash,
            csrf_token,
            patient,
        },
    })
}

/// A session for a browser that has none yet.
pub fn start(ctx: &Context) -> Result<NewSession, AppError> {
    let now = ctx.now();
    ctx.write(|conn| insert(conn, None, now))
}

/// The caller an account signs in as: the patient role, bound to the
/// account's pseudonym, in the patient's hospital.
fn signed_in(conn: &mut DbConnection, account_id: &str) -> Result<Option<SignedIn>, AppError> {
    let Some(pseudonym) = store::account_patient(conn, account_id)? else {
        return Ok(None);
    };
    let Some(patient) = patients::find_patient(conn, &pseudonym)? else {
        return Ok(None);
    };
    Ok(Some(SignedIn {
        account_id: account_id.to_owned(),
        caller: Caller::User(Principal {
            subject: account_id.to_owned(),
            org: patient.hospital_org,
            roles: vec![Role::Patient],
            patient_ref: Some(pseudonym),
        }),
    }))
}

/// How often a session's last activity is written: not on every request,
/// which would make every page view a write.
const TOUCH_EVERY: Duration = Duration::seconds(60);

/// The live session a cookie names: `None` when unknown, revoked, idle for
/// longer than `patients.session_idle_minutes`, or older than
/// `patients.session_hours` (each of which the browser sees as signed out).
pub fn load(ctx: &Context, cookie_value: &str) -> Result<Option<Session>, AppError> {
    let hash = id_hash(cookie_value);
    let now = ctx.now();
    let idle = Duration::minutes(ctx.patients.session_idle_minutes);
    let absolute = Duration::hours(ctx.patients.session_hours);
    ctx.read(|conn| {
        let Some(row) = store::session(conn, &hash)? else {
            return Ok(None);
        };
        let naive = now.naive_utc();
        if naive - row.last_seen_at > idle || naive - row.created_at > absolute {
            store::revoke_session(conn, &hash, naive)?;
            return Ok(None);
        }
        if naive - row.last_seen_at > TOUCH_EVERY {
            store::touch_session(conn, &hash, naive)?;
        }
        let patient = match &row.account_id {
            Some(account) => match signed_in(conn, account)? {
                Some(patient) => Some(patient),
                // The account was revoked: the session goes with it.
                None => {
                    store::revoke_session(conn, &hash, naive)?;
                    return Ok(None);
                }
            },
            None => None,
        };
        Ok(Some(Session {
            id_hash: row.id_hash,
            csrf_token: row.csrf_token,
            patient,
        }))
    })
}

/// Ends a session; its cookie is worthless from now on.
pub fn sign_out(ctx: &Context, session: &Session) -> Result<(), AppError> {
    let now = ctx.now();
    ctx.write(|conn| {
        Ok(store::revoke_session(
            conn,
            &session.id_hash,
            now.naive_utc(),
        )?)
    })
}

/// Replaces the session that finished a sign-in with a signed-in one, in
/// the caller's transaction.
pub(crate) fn replace(
    conn: &mut DbConnection,
    old: &Session,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<NewSession, AppError> {
    store::revoke_session(conn, &old.id_hash, now.naive_utc())?;
    insert(conn, Some(account_id), now)
}

/// Whether a form's or a script's token is the session's, compared in
/// constant time.
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    let expected = session.csrf_token.as_bytes();
    expected.len() == presented.len() && openssl::memcmp::eq(expected, presented.as_bytes())
}
