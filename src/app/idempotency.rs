//! Fingerprints of requests, for idempotency: a retry under the same key
//! with the same request gets the original answer, with another request
//! `idempotency_key_reused`.

use super::AppError;
use crate::pseudonym::PatientPseudonym;
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
