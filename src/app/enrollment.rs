//! How a patient reaches their own record: the hospital issues a one-time
//! enrollment code (with every registration, and on request), the patient
//! redeems it for a portal account, and signs in with the account's secret
//! for short-lived tokens from the service's own issuer.

use super::gates::principal;
use super::{enrollment_qr, AppError, Context};
use crate::auth::policy::Action;
use crate::auth::Caller;
use crate::db::{consents as patients, portal as store, DbConnection};
use crate::ed25519::TokenClaims;
use crate::pseudonym::PatientPseudonym;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Crockford base32: no I, L, O or U, so a printed code reads back
/// unambiguously.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A one-time enrollment code, shown once.
#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct IssuedCode {
    /// 20 characters in 5 groups (100 random bits), e.g. `7KQ2-…`.
    pub code: String,
    pub expires_at: DateTime<Utc>,
    /// What the code's QR code carries: the portal's enrollment link with
    /// the code in its fragment (`patients.enrollment_link`), or the bare
    /// code when no link is configured. For a hospital that draws its own
    /// QR codes.
    pub qr_payload: String,
    /// With `?qr=svg`: the QR code of `qr_payload` as an SVG document, to
    /// print on the patient's letter (error correction M, quiet zone
    /// included, one unit per module).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<String>,
}

impl IssuedCode {
    /// Adds the printable QR code when the caller asked for it.
    pub fn with_qr(mut self, wanted: QrWanted) -> Result<Self, AppError> {
        if wanted.qr == Some(QrFormat::Svg) {
            self.qr_svg = Some(
                enrollment_qr::svg(&self.qr_payload)
                    .map_err(|e| AppError::internal(format!("QR code: {e}")))?,
            );
        }
        Ok(self)
    }
}

#[derive(Deserialize, Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QrFormat {
    Svg,
}

/// `?qr=svg` asks for the enrollment code's QR code as well.
#[derive(Deserialize, IntoParams, Debug, Clone, Copy, Default)]
#[into_params(parameter_in = Query)]
pub struct QrWanted {
    #[param(inline)]
    pub qr: Option<QrFormat>,
}

pub struct NewCode {
    pub issued: IssuedCode,
    /// What is stored: a keyed hash.
    pub hash: String,
}

/// A patient's session with the portal's JSON API.
#[derive(Serialize, ToSchema)]
pub struct PatientSession {
    /// Keep with the secret: together they sign the patient in again.
    pub account_id: String,
    /// Shown once; only its hash is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_secret: Option<String>,
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

/// Upper-cases and drops separators, so `7kq2 m9…` and `7KQ2-M9…` match:
/// enrollment codes and the portal's recovery codes.
pub(crate) fn normalize_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// 20 random Crockford base32 characters (100 bits) in five groups of
/// four: enrollment codes and the portal's recovery codes.
pub(crate) fn random_code() -> Result<String, AppError> {
    let random = crate::keyfile::random_bytes(20).map_err(AppError::internal)?;
    let chars: String = random
        .iter()
        .map(|b| CODE_ALPHABET[usize::from(b & 31)] as char)
        .collect();
    Ok(chars
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-"))
}

/// A fresh code and its keyed hash; nothing stored yet.
pub fn new_code(ctx: &Context, now: DateTime<Utc>) -> Result<NewCode, AppError> {
    let code = random_code()?;
    let hash = ctx
        .keys
        .enrollment_code_tags(&normalize_code(&code))
        .into_iter()
        .next()
        .ok_or_else(|| AppError::internal("no patient key"))?;
    let cfg = &ctx.patients;
    Ok(NewCode {
        issued: IssuedCode {
            qr_payload: enrollment_qr::payload(cfg.enrollment_link.as_deref(), &code),
            code,
            expires_at: now + chrono::Duration::hours(cfg.enrollment_ttl_hours),
            qr_svg: None,
        },
        hash,
    })
}

/// Issues and stores a code in the caller's transaction.
pub fn issue_code(
    ctx: &Context,
    conn: &mut DbConnection,
    pseudonym: &str,
    issued_by: &str,
    now: DateTime<Utc>,
) -> Result<IssuedCode, AppError> {
    let code = new_code(ctx, now)?;
    store::insert_code(
        conn,
        &code.hash,
        pseudonym,
        issued_by,
        now.naive_utc(),
        code.issued.expires_at.naive_utc(),
    )?;
    Ok(code.issued)
}

/// A new enrollment code for one of the caller's hospital's patients (a
/// lost printout, or a replayed registration). Earlier codes stay valid
/// until they expire or are used.
pub fn reissue(
    ctx: &Context,
    caller: &Caller,
    pseudonym: &PatientPseudonym,
) -> Result<IssuedCode, AppError> {
    let p = principal(caller)?;
    let row = ctx
        .read(|conn| Ok(patients::find_patient(conn, pseudonym.as_str())?))?
        .ok_or(AppError::NotFound)?;
    ctx.authorize_patient(
        caller,
        Action::EnrollmentIssue,
        pseudonym.as_str(),
        &row.hospital_org,
        &[],
    )?;
    let now = ctx.now();
    ctx.write(|conn| issue_code(ctx, conn, pseudonym.as_str(), &p.subject, now))
}

/// SHA-256, hex: how secrets of 100 or more random bits are stored.
pub(crate) fn sha256_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// A patient token for `account_id`, bound to the patient's pseudonym.
fn patient_token(
    ctx: &Context,
    account_id: &str,
    pseudonym: &str,
    hospital: &str,
) -> Result<(String, i64), AppError> {
    let now = ctx.now().timestamp();
    let ttl = ctx.patients.token_ttl_seconds;
    let roles = vec!["patient".to_owned()];
    let token = ctx
        .patient_tokens
        .sign_claims(&TokenClaims {
            iss: &ctx.patient_tokens.issuer,
            aud: &ctx.token_audience,
            sub: account_id,
            org: hospital,
            roles: &roles,
            iat: now,
            exp: now + ttl,
            patient_ref: Some(pseudonym),
        })
        .map_err(AppError::internal)?;
    Ok((token, ttl))
}

/// Binds a portal account with a one-time enrollment code, for anyone who
/// holds one. Attempts are counted per `client` address; wrong, expired
/// and used codes get the same answer.
pub fn enroll(ctx: &Context, client: &str, code: &str) -> Result<PatientSession, AppError> {
    ctx.limit_attempts("enroll", client)?;
    let tags = ctx.keys.enrollment_code_tags(&normalize_code(code));
    let now = ctx.now();
    let account_id = uuid::Uuid::new_v4().to_string();
    let secret = format!(
        "gps_{}",
        hex::encode(crate::keyfile::random_bytes(32).map_err(AppError::internal)?)
    );
    let secret_hash = sha256_hex(&secret);
    let (pseudonym, hospital) = ctx.write(|conn| {
        let pseudonym = store::redeem_code(conn, &tags, now.naive_utc())?
            .ok_or(AppError::EnrollmentCodeInvalid)?;
        let patient =
            patients::find_patient(conn, &pseudonym)?.ok_or(AppError::EnrollmentCodeInvalid)?;
        store::insert_account(conn, &account_id, &pseudonym, &secret_hash, now.naive_utc())?;
        Ok((pseudonym, patient.hospital_org))
    })?;
    let (access_token, expires_in) = patient_token(ctx, &account_id, &pseudonym, &hospital)?;
    tracing::info!("patient portal account enrolled");
    Ok(PatientSession {
        account_id,
        account_secret: Some(secret),
        access_token,
        token_type: "Bearer",
        expires_in,
    })
}

/// Signs a patient in with their account ID and secret: a fresh
/// short-lived token. Attempts are counted per `client` address.
pub fn sign_in(
    ctx: &Context,
    client: &str,
    account_id: &str,
    account_secret: &str,
) -> Result<PatientSession, AppError> {
    ctx.limit_attempts("sign-in", client)?;
    let found = ctx.read(|conn| {
        let Some((pseudonym, hash)) = store::account(conn, account_id)? else {
            return Ok(None);
        };
        let hospital = patients::find_patient(conn, &pseudonym)?.map(|p| p.hospital_org);
        Ok(hospital.map(|h| (pseudonym, hash, h)))
    })?;
    let presented = sha256_hex(account_secret);
    let Some((pseudonym, hash, hospital)) = found else {
        return Err(AppError::InvalidCredentials);
    };
    // Both sides are SHA-256 of a 256-bit random secret: comparing digests
    // leaks nothing an attacker can steer.
    if hash != presented {
        return Err(AppError::InvalidCredentials);
    }
    let (access_token, expires_in) = patient_token(ctx, account_id, &pseudonym, &hospital)?;
    Ok(PatientSession {
        account_id: account_id.to_owned(),
        account_secret: None,
        access_token,
        token_type: "Bearer",
        expires_in,
    })
}
