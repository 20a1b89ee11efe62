//! A patient's choice to be emailed about new entries: the address, kept
//! sealed like a webhook's secret, and which kinds of access. It is an
//! endpoint of kind `email` owned by the patient, so its deliveries follow
//! the log with the webhooks' retries and dead letters (decision 0036).

use super::gates::patient_self;
use super::{AppError, Context};
use crate::auth::Caller;
use crate::db::notify::{self as store, EndpointRow};
use crate::notify::{signing, NoticeKind};
use crate::pseudonym::vault::Sealed;

/// The longest address accepted (RFC 5321's path limit).
pub const MAX_ADDRESS: usize = 254;

/// What the patient chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChoice {
    pub address: String,
    pub kinds: Vec<NoticeKind>,
}

/// An address as a person types it: one `@` with something either side,
/// no spaces, control characters or angle brackets, within the limit.
pub fn check_address(raw: &str) -> Result<String, AppError> {
    let address = raw.trim();
    let ok = address.chars().count() <= MAX_ADDRESS
        && address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        })
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'));
    if ok {
        Ok(address.to_owned())
    } else {
        Err(AppError::field("email", "must be an email address"))
    }
}

/// The calling patient's email choice, if they made one.
pub fn choice(ctx: &Context, caller: &Caller) -> Result<Option<EmailChoice>, AppError> {
    let row = ctx.read(|conn| {
        let (pseudonym, _) = patient_self(ctx, conn, caller)?;
        Ok(store::email_endpoint(conn, &pseudonym)?)
    })?;
    let Some(row) = row else {
        return Ok(None);
    };
    let sealed = Sealed {
        key_version: row
            .key_version
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| AppError::internal("email endpoint without a key"))?,
        nonce: row.nonce.clone().unwrap_or_default(),
        ciphertext: row.ciphertext.clone().unwrap_or_default(),
    };
    let address = ctx
        .keys
        .open_bytes(&signing::secret_aad(&row.id), &sealed)
        .map_err(AppError::internal)?;
    Ok(Some(EmailChoice {
        address: String::from_utf8(address).map_err(AppError::internal)?,
        kinds: NoticeKind::parse_list(row.email_kinds.as_deref().unwrap_or_default()),
    }))
}

/// Replaces the calling patient's choice (`None`: no email), in one
/// transaction. The old endpoint is disabled; the dispatcher dead-letters
/// what it had pending, as a removed webhook's.
pub fn choose(ctx: &Context, caller: &Caller, choice: Option<EmailChoice>) -> Result<(), AppError> {
    let now = ctx.now();
    let (pseudonym, _) = ctx.read(|conn| patient_self(ctx, conn, caller))?;
    let row = match choice {
        None => None,
        Some(choice) => {
            let id = store::email_endpoint_id();
            let address = check_address(&choice.address)?;
            let sealed = ctx
                .keys
                .seal_bytes(&signing::secret_aad(&id), address.as_bytes())
                .map_err(AppError::internal)?;
            Some(EndpointRow {
                id,
                kind: "email".into(),
                patient_pseudonym: Some(pseudonym.clone()),
                hospital_org: None,
                target: String::new(),
                key_version: i32::try_from(sealed.key_version).ok(),
                nonce: Some(sealed.nonce),
                ciphertext: Some(sealed.ciphertext),
                created_at: now.naive_utc(),
                disabled_at: None,
                application_id: None,
                email_kinds: Some(NoticeKind::list(&choice.kinds)),
            })
        }
    };
    ctx.write(|conn| {
        if let Some(old) = store::email_endpoint(conn, &pseudonym)? {
            store::disable_endpoint(conn, &old.id, now.naive_utc())?;
        }
        if let Some(row) = &row {
            store::insert_endpoint(conn, row)?;
        }
        Ok(())
    })
}
