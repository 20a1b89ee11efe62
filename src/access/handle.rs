//! Dataset handles: short-lived EdDSA JWTs naming one release, for one
//! genome store or trusted research environment (the audience).
//!
//! A handle is a capability, never data: the store presents it back to
//! GenomeGate, which checks the agreement and every patient's consent again
//! before naming a single object. Its keys are published at
//! `/.well-known/jwks.json`, so a store can check a handle offline first.

use crate::ed25519::Ed25519Signer;
use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// Marks a JWT as a dataset handle, so no other token of the same issuer
/// can be taken for one.
pub const HANDLE_TYPE: &str = "genomegate-dataset-handle";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleClaims {
    pub iss: String,
    /// The genome store or TRE that may resolve it.
    pub aud: String,
    /// The application.
    pub sub: String,
    /// The release.
    pub jti: String,
    pub typ: String,
    pub agreement: String,
    pub datasets: Vec<String>,
    /// Condition codes the store must honour (TS, MOR, PUB, RTN).
    pub conditions: Vec<String>,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("not a handle this service signed")]
    Invalid,
    #[error("the handle has expired")]
    Expired,
    #[error("the handle was issued to another audience")]
    WrongAudience,
}

/// Every handle key, newest last; new handles use the newest.
pub struct HandleKeys {
    signers: Vec<Ed25519Signer>,
}

impl HandleKeys {
    pub fn new(signers: Vec<Ed25519Signer>) -> Result<Self, String> {
        if signers.is_empty() {
            return Err("the key file has no handle key".into());
        }
        Ok(Self { signers })
    }

    pub fn issuer(&self) -> &str {
        self.signers
            .last()
            .map(|s| s.issuer.as_str())
            .unwrap_or_default()
    }

    pub fn issue(&self, claims: &HandleClaims) -> Result<String, String> {
        let signer = self.signers.last().ok_or("no handle key")?;
        signer.sign_claims(claims)
    }

    /// The claims of a genuine, unexpired handle for `audience`.
    pub fn verify(
        &self,
        token: &str,
        audience: &str,
        now: DateTime<Utc>,
    ) -> Result<HandleClaims, HandleError> {
        let header = decode_header(token).map_err(|_| HandleError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(HandleError::Invalid);
        }
        let signer = self
            .signers
            .iter()
            .find(|s| Some(&s.kid) == header.kid.as_ref())
            .ok_or(HandleError::Invalid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Time and audience are checked below, against the injected clock
        // and with their own error codes.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_issuer(&[&signer.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let key = DecodingKey::from_ed_der(signer.public_key());
        let claims = decode::<HandleClaims>(token, &key, &validation)
            .map_err(|_| HandleError::Invalid)?
            .claims;
        if claims.typ != HANDLE_TYPE {
            return Err(HandleError::Invalid);
        }
        if claims.exp <= now.timestamp() {
            return Err(HandleError::Expired);
        }
        if claims.aud != audience {
            return Err(HandleError::WrongAudience);
        }
        Ok(claims)
    }

    /// The public keys as JWKs (RFC 8037 OKP).
    pub fn public_jwks(&self) -> Vec<serde_json::Value> {
        self.signers.iter().map(Ed25519Signer::public_jwk).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keys() -> HandleKeys {
        HandleKeys::new(vec![Ed25519Signer::generate(
            "handle-v1".into(),
            "https://gate.example".into(),
        )
        .unwrap()])
        .unwrap()
    }

    fn claims(now: DateTime<Utc>) -> HandleClaims {
        HandleClaims {
            iss: "https://gate.example".into(),
            aud: "store-a".into(),
            sub: "app-1".into(),
            jti: "rel-1".into(),
            typ: HANDLE_TYPE.into(),
            agreement: "dua-1".into(),
            datasets: vec!["ds-1".into()],
            conditions: vec![],
            iat: now.timestamp(),
            exp: now.timestamp() + 60,
        }
    }

    #[test]
    fn a_handle_verifies_only_for_its_audience_until_it_expires() {
        let keys = keys();
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let token = keys.issue(&claims(now)).unwrap();
        assert_eq!(keys.verify(&token, "store-a", now).unwrap().jti, "rel-1");
        assert_eq!(
            keys.verify(&token, "store-b", now),
            Err(HandleError::WrongAudience)
        );
        assert_eq!(
            keys.verify(&token, "store-a", now + chrono::Duration::seconds(61)),
            Err(HandleError::Expired)
        );
    }

    #[test]
    fn forged_and_foreign_handles_are_invalid() {
        let keys = keys();
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let other = HandleKeys::new(vec![Ed25519Signer::generate(
            "handle-v1".into(),
            "https://gate.example".into(),
        )
        .unwrap()])
        .unwrap();
        let forged = other.issue(&claims(now)).unwrap();
        assert_eq!(
            keys.verify(&forged, "store-a", now),
            Err(HandleError::Invalid)
        );
        let mut tampered = keys.issue(&claims(now)).unwrap();
        tampered.insert(tampered.len() / 2, 'A');
        assert_eq!(
            keys.verify(&tampered, "store-a", now),
            Err(HandleError::Invalid)
        );
        let mut not_a_handle = claims(now);
        not_a_handle.typ = "something-else".into();
        let token = keys.issue(&not_a_handle).unwrap();
        assert_eq!(
            keys.verify(&token, "store-a", now),
            Err(HandleError::Invalid)
        );
        assert_eq!(
            keys.verify("a.b.c", "store-a", now),
            Err(HandleError::Invalid)
        );
    }
}
