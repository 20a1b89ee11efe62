//! Passkeys for the portal's pages: enrollment with the one-time code from
//! the hospital's letter, sign-in, and recovery with the one-time recovery
//! code shown at enrollment (decision 0036).
//!
//! Each ceremony has two halves. The first stores webauthn-rs's state in
//! the browser's session and hands the browser its challenge; the second
//! takes that state out (once) and finishes. Codes are checked in the
//! first half and spent in the second, in the transaction that creates the
//! passkey, so a cancelled ceremony spends nothing.

use super::enrollment::{normalize_code as normalize, random_code, sha256_hex};
use super::portal_sessions::{self as sessions, NewSession, Session};
use super::{AppError, Context};
use crate::db::{consents as patients, portal as accounts, portal_sessions as store};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Uuid,
};

/// What a finished enrollment or recovery shows the patient once.
pub struct Enrolled {
    pub session: NewSession,
    /// Twenty characters in five groups; only its hash is kept.
    pub recovery_code: String,
}

/// What a registration ceremony keeps between its halves.
#[derive(Serialize, Deserialize)]
struct Registering {
    state: PasskeyRegistration,
    account_id: String,
    /// The keyed hashes of the enrollment code (enrollment) or the hash of
    /// the recovery code (recovery): never the code itself.
    code_tags: Vec<String>,
}

const ENROLL: &str = "enroll";
const SIGN_IN: &str = "sign_in";
const RECOVER: &str = "recover";

fn webauthn(ctx: &Context) -> Result<&webauthn_rs::Webauthn, AppError> {
    // Without an origin to bind passkeys to, there are no portal pages.
    ctx.passkeys.as_deref().ok_or(AppError::NotFound)
}

fn refused(error: impl std::fmt::Display) -> AppError {
    tracing::info!(error = %error, "a passkey ceremony was refused");
    AppError::InvalidCredentials
}

fn to_json<T: Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(AppError::internal)
}

fn new_recovery_code() -> Result<(String, String), AppError> {
    let code = random_code()?;
    let hash = sha256_hex(&normalize(&code));
    Ok((code, hash))
}

/// The name a passkey manager lists the credential under: the service and
/// a fragment of the account ID, nothing about the patient.
fn passkey_name(account_id: &str) -> String {
    format!("GenomeGate {}", &account_id[..8.min(account_id.len())])
}

fn start_registration(
    ctx: &Context,
    session: &Session,
    kind: &str,
    account_id: String,
    code_tags: Vec<String>,
) -> Result<CreationChallengeResponse, AppError> {
    let user = Uuid::parse_str(&account_id).map_err(AppError::internal)?;
    let name = passkey_name(&account_id);
    let (challenge, state) = webauthn(ctx)?
        .start_passkey_registration(user, &name, &name, None)
        .map_err(AppError::internal)?;
    let keep = to_json(&Registering {
        state,
        account_id,
        code_tags,
    })?;
    ctx.write(|conn| Ok(store::set_ceremony(conn, &session.id_hash, kind, &keep)?))?;
    Ok(challenge)
}

fn take_registration(
    ctx: &Context,
    session: &Session,
    kind: &str,
    credential: &RegisterPublicKeyCredential,
) -> Result<(Registering, Passkey), AppError> {
    let kept = ctx
        .write(|conn| Ok(store::take_ceremony(conn, &session.id_hash, kind)?))?
        .ok_or_else(|| refused("no ceremony under way"))?;
    let registering: Registering = serde_json::from_str(&kept).map_err(AppError::internal)?;
    let passkey = webauthn(ctx)?
        .finish_passkey_registration(credential, &registering.state)
        .map_err(refused)?;
    Ok((registering, passkey))
}

/// The end of a registration, in its transaction: the account's new
/// passkey and recovery code, and the browser signed in to it.
fn bind(
    conn: &mut crate::db::DbConnection,
    (session, account): (&Session, &str),
    (passkey, recovery_hash): (&Passkey, &str),
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NewSession, AppError> {
    let key = credential_key(passkey);
    store::insert_passkey(conn, &key, account, &to_json(passkey)?, now.naive_utc())?;
    store::set_recovery_hash(conn, account, Some(recovery_hash))?;
    sessions::replace(conn, session, account, now)
}

fn credential_key(passkey: &Passkey) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        passkey.cred_id(),
    )
}

/// First half of an enrollment: checks the code from the letter (without
/// spending it) and asks the browser for a new passkey. Attempts are
/// counted per `client`; wrong, expired and used codes get one answer.
pub fn begin_enrollment(
    ctx: &Context,
    session: &Session,
    client: &str,
    code: &str,
) -> Result<CreationChallengeResponse, AppError> {
    ctx.limit_attempts("enroll", client)?;
    let tags = ctx.keys.enrollment_code_tags(&normalize(code));
    let now = ctx.now().naive_utc();
    let usable = ctx.read(|conn| Ok(accounts::code_usable(conn, &tags, now)?))?;
    if !usable {
        return Err(AppError::EnrollmentCodeInvalid);
    }
    let account_id = Uuid::new_v4().to_string();
    start_registration(ctx, session, ENROLL, account_id, tags)
}

/// Second half of an enrollment: one transaction spends the code, creates
/// the account with its passkey and recovery code, and signs the browser
/// in with a new session.
pub fn finish_enrollment(
    ctx: &Context,
    session: &Session,
    credential: &RegisterPublicKeyCredential,
) -> Result<Enrolled, AppError> {
    let (registering, passkey) = take_registration(ctx, session, ENROLL, credential)?;
    let (recovery_code, recovery_hash) = new_recovery_code()?;
    // The account's secret sign-in belongs to hospital apps; a portal
    // account gets a random secret nobody is shown.
    let unused_secret = sha256_hex(&random_code()?);
    let now = ctx.now();
    let account = registering.account_id.as_str();
    let session = ctx.write(|conn| {
        let pseudonym = accounts::redeem_code(conn, &registering.code_tags, now.naive_utc())?
            .ok_or(AppError::EnrollmentCodeInvalid)?;
        patients::find_patient(conn, &pseudonym)?.ok_or(AppError::EnrollmentCodeInvalid)?;
        accounts::insert_account(conn, account, &pseudonym, &unused_secret, now.naive_utc())?;
        bind(conn, (session, account), (&passkey, &recovery_hash), now)
    })?;
    tracing::info!("patient portal account enrolled with a passkey");
    Ok(Enrolled {
        session,
        recovery_code,
    })
}

/// First half of a sign-in: a challenge any of the patient's passkeys can
/// answer; the browser offers the patient their passkeys for this site.
pub fn begin_sign_in(
    ctx: &Context,
    session: &Session,
) -> Result<RequestChallengeResponse, AppError> {
    let (challenge, state) = webauthn(ctx)?
        .start_discoverable_authentication()
        .map_err(AppError::internal)?;
    let keep = to_json(&state)?;
    ctx.write(|conn| Ok(store::set_ceremony(conn, &session.id_hash, SIGN_IN, &keep)?))?;
    Ok(challenge)
}

/// Second half of a sign-in. Attempts are counted per `client`; an
/// unknown passkey and a wrong signature get one answer.
pub fn finish_sign_in(
    ctx: &Context,
    session: &Session,
    client: &str,
    credential: &PublicKeyCredential,
) -> Result<NewSession, AppError> {
    ctx.limit_attempts("sign-in", client)?;
    let webauthn = webauthn(ctx)?;
    let kept = ctx
        .write(|conn| Ok(store::take_ceremony(conn, &session.id_hash, SIGN_IN)?))?
        .ok_or_else(|| refused("no ceremony under way"))?;
    let state: DiscoverableAuthentication =
        serde_json::from_str(&kept).map_err(AppError::internal)?;
    let (user, _) = webauthn
        .identify_discoverable_authentication(credential)
        .map_err(refused)?;
    let account_id = user.to_string();
    let stored = ctx.read(|conn| Ok(store::passkeys_of(conn, &account_id)?))?;
    let mut passkeys = stored
        .iter()
        .map(|(_, json)| serde_json::from_str::<Passkey>(json).map_err(AppError::internal))
        .collect::<Result<Vec<_>, _>>()?;
    if passkeys.is_empty() {
        return Err(refused("unknown account"));
    }
    let keys: Vec<DiscoverableKey> = passkeys.iter().map(DiscoverableKey::from).collect();
    let result = webauthn
        .finish_discoverable_authentication(credential, state, &keys)
        .map_err(refused)?;
    let now = ctx.now();
    ctx.write(|conn| {
        for passkey in &mut passkeys {
            if passkey.update_credential(&result).is_some() {
                store::update_passkey(
                    conn,
                    &credential_key(passkey),
                    &to_json(passkey)?,
                    now.naive_utc(),
                )?;
            }
        }
        if store::account_patient(conn, &account_id)?.is_none() {
            return Err(refused("account revoked"));
        }
        sessions::replace(conn, session, &account_id, now)
    })
}

/// First half of a recovery: checks the recovery code (without spending
/// it) and asks the browser for a new passkey. Attempts are counted per
/// `client`, with enrollments'.
pub fn begin_recovery(
    ctx: &Context,
    session: &Session,
    client: &str,
    recovery_code: &str,
) -> Result<CreationChallengeResponse, AppError> {
    ctx.limit_attempts("enroll", client)?;
    let hash = sha256_hex(&normalize(recovery_code));
    let account = ctx
        .read(|conn| Ok(store::account_with_recovery(conn, &hash)?))?
        .ok_or(AppError::InvalidCredentials)?;
    start_registration(ctx, session, RECOVER, account, vec![hash])
}

/// Second half of a recovery: one transaction spends the recovery code,
/// replaces every passkey of the account with the new one, signs every
/// other session out, issues a new recovery code and signs this browser in.
pub fn finish_recovery(
    ctx: &Context,
    session: &Session,
    credential: &RegisterPublicKeyCredential,
) -> Result<Enrolled, AppError> {
    let (registering, passkey) = take_registration(ctx, session, RECOVER, credential)?;
    let (recovery_code, recovery_hash) = new_recovery_code()?;
    let now = ctx.now();
    let account = registering.account_id.as_str();
    let spent = registering.code_tags.first().map(String::as_str);
    let session = ctx.write(|conn| {
        let redeemed = store::redeem_recovery(conn, spent.unwrap_or_default())?;
        if redeemed.as_deref() != Some(account) {
            return Err(AppError::InvalidCredentials);
        }
        store::remove_passkeys(conn, account)?;
        // Every other session goes before this browser's new one starts.
        store::revoke_account_sessions(conn, account, now.naive_utc())?;
        bind(conn, (session, account), (&passkey, &recovery_hash), now)
    })?;
    tracing::info!("patient portal account recovered with a new passkey");
    Ok(Enrolled {
        session,
        recovery_code,
    })
}
