//! Idempotency: a retry under the same `Idempotency-Key` with the same
//! request gets the original answer and changes nothing; with another
//! request, `idempotency_key_reused`. Consents and applications keep their
//! fingerprints on their own rows; every other creating request keeps its
//! answer through [`Replayable`].

use super::{AppError, Context};
use crate::auth::Principal;
use crate::db::idempotency::{self as store, AnswerRow};
use crate::db::DbConnection;
use crate::pseudonym::vault::Sealed;
use crate::pseudonym::PatientPseudonym;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How a caller names a request's retries: its `Idempotency-Key`, and the
/// request as sent, whose fingerprint tells a retry from a different
/// request under the same key.
#[derive(Debug, Clone)]
pub struct Retry {
    pub key: String,
    pub as_sent: serde_json::Value,
}

/// A canonical fingerprint of a request about a patient. The hospital-local
/// ID is replaced by the keyed pseudonym first: an unkeyed hash of a
/// guessable medical record number would be reversible.
pub fn request_fingerprint(
    action: &str,
    pseudonym: &PatientPseudonym,
    body: &impl Serialize,
) -> Result<String, AppError> {
    let mut value = serde_json::to_value(body).map_err(AppError::internal)?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("local_patient_id");
        obj.insert("action".into(), action.into());
        obj.insert("patient".into(), pseudonym.as_str().into());
    }
    fingerprint(&value)
}

/// `sha256:<hex>` of a request as JSON. serde_json objects are sorted maps,
/// so the serialization, and with it the fingerprint, is canonical.
pub fn fingerprint(value: &serde_json::Value) -> Result<String, AppError> {
    let bytes = serde_json::to_vec(value).map_err(AppError::internal)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
    ))
}

/// An answer, and whether it is an earlier request's under the same key.
#[derive(Debug)]
pub struct Answered<T> {
    pub value: T,
    pub replayed: bool,
}

impl<T> Answered<T> {
    fn fresh(value: T) -> Self {
        Answered {
            value,
            replayed: false,
        }
    }

    fn replayed(value: T) -> Self {
        Answered {
            value,
            replayed: true,
        }
    }
}

/// A request its caller may send again under an `Idempotency-Key`: a retry
/// with the same request gets the first answer and changes nothing; the
/// same key with another request is `idempotency_key_reused`. Keys are
/// unique per organization; what a request asked for includes who asked,
/// so another member of the organization cannot replay it.
pub struct Replayable {
    org: String,
    /// Keyed hashes of the key, one per key version; the first is stored.
    tags: Vec<String>,
    operation: &'static str,
    fingerprint: String,
}

impl Replayable {
    /// `None` when the request carried no key.
    pub fn of(
        ctx: &Context,
        caller: &Principal,
        operation: &'static str,
        retry: Option<Retry>,
    ) -> Result<Option<Self>, AppError> {
        let Some(retry) = retry else {
            return Ok(None);
        };
        let asked = serde_json::json!({
            "operation": operation,
            "by": caller.subject,
            "request": retry.as_sent,
        });
        Ok(Some(Replayable {
            tags: ctx.keys.idempotency_tags(&caller.org, &retry.key),
            org: caller.org.clone(),
            operation,
            fingerprint: fingerprint(&asked)?,
        }))
    }

    /// What binds a sealed answer to its key.
    fn aad(&self, tag: &str) -> Vec<u8> {
        format!("genomegate/idempotent-answer/v1\0{}\0{tag}", self.org).into_bytes()
    }

    /// The answer kept for this key: `Some` for the same request,
    /// `idempotency_key_reused` for another, `None` for a first request.
    pub fn earlier<T: DeserializeOwned>(
        &self,
        ctx: &Context,
        conn: &mut DbConnection,
    ) -> Result<Option<T>, AppError> {
        let Some(row) = store::find(conn, &self.org, &self.tags)? else {
            return Ok(None);
        };
        if row.request_hash != self.fingerprint {
            return Err(AppError::IdempotencyKeyReused);
        }
        let sealed = Sealed {
            key_version: u32::try_from(row.key_version).map_err(AppError::internal)?,
            nonce: row.nonce,
            ciphertext: row.ciphertext,
        };
        let plain = ctx
            .keys
            .open_bytes(&self.aad(&row.key_tag), &sealed)
            .map_err(|_| AppError::VaultIntegrity)?;
        Ok(Some(
            serde_json::from_slice(&plain).map_err(AppError::internal)?,
        ))
    }

    /// Keeps `answer` in the caller's transaction, sealed: some answers hold
    /// a secret shown once (a webhook's key, a visa).
    pub fn remember<T: Serialize>(
        &self,
        ctx: &Context,
        conn: &mut DbConnection,
        answer: &T,
    ) -> Result<(), AppError> {
        let tag = self
            .tags
            .first()
            .ok_or_else(|| AppError::internal("no key to tag an idempotency key with"))?;
        let plain = serde_json::to_vec(answer).map_err(AppError::internal)?;
        let sealed = ctx
            .keys
            .seal_bytes(&self.aad(tag), &plain)
            .map_err(AppError::internal)?;
        store::insert(
            conn,
            &AnswerRow {
                org: self.org.clone(),
                key_tag: tag.clone(),
                operation: self.operation.to_owned(),
                request_hash: self.fingerprint.clone(),
                key_version: i32::try_from(sealed.key_version).map_err(AppError::internal)?,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                answered_at: ctx.now().naive_utc(),
            },
        )?;
        Ok(())
    }

    /// The earlier answer, read on its own connection (before a request's
    /// gates, so that a retry whose first answer was lost gets that answer
    /// even if the gates have closed since).
    pub fn replay<T: DeserializeOwned>(
        this: Option<&Self>,
        ctx: &Context,
    ) -> Result<Option<Answered<T>>, AppError> {
        let Some(replayable) = this else {
            return Ok(None);
        };
        Ok(ctx
            .read(|conn| replayable.earlier(ctx, conn))?
            .map(Answered::replayed))
    }
}

/// Runs `work` in one transaction, and with a key keeps its answer in that
/// same transaction: a retry after commit gets the kept answer; two
/// requests under one key racing each other give one answer, the loser's
/// transaction rolled back whole. Without a key, just the transaction.
pub fn write_once<T: Serialize + DeserializeOwned>(
    ctx: &Context,
    replayable: Option<&Replayable>,
    work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
) -> Result<Answered<T>, AppError> {
    if let Some(earlier) = Replayable::replay(replayable, ctx)? {
        return Ok(earlier);
    }
    let attempt = ctx.write(|conn| {
        let value = work(conn)?;
        if let Some(r) = replayable {
            r.remember(ctx, conn, &value)?;
        }
        Ok(value)
    });
    settle(ctx, replayable, attempt)
}

/// A request's outcome, or, if it lost a race under its key, the winner's
/// answer.
pub fn settle<T: DeserializeOwned>(
    ctx: &Context,
    replayable: Option<&Replayable>,
    attempt: Result<T, AppError>,
) -> Result<Answered<T>, AppError> {
    match attempt {
        Ok(value) => Ok(Answered::fresh(value)),
        Err(AppError::UniqueViolation(cause)) => match Replayable::replay(replayable, ctx)? {
            Some(earlier) => Ok(earlier),
            None => Err(AppError::UniqueViolation(cause)),
        },
        Err(other) => Err(other),
    }
}
