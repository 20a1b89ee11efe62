//! Bearer-token verification.
//!
//! Keys come from one JWKS file per configured issuer. A token names its key
//! by `kid`; the key fixes both the algorithm and the issuer, so a token can
//! neither pick a weaker algorithm nor claim another issuer's name. Only
//! asymmetric algorithms are accepted (EdDSA, ES256, RS256): `alg=none` does
//! not parse and HS* keys are refused when the JWKS is loaded.

use super::{Principal, Role};
use crate::config::IssuerConfig;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed or badly signed token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token from an untrusted issuer or key")]
    UntrustedIssuer,
}

struct TrustedKey {
    issuer: String,
    algorithm: Algorithm,
    key: DecodingKey,
}

pub struct JwtVerifier {
    keys: HashMap<String, TrustedKey>,
    /// The only issuer whose tokens may carry the `patient` role: the
    /// service itself, after enrollment.
    patient_issuer: Option<String>,
    audience: String,
    leeway_seconds: u64,
    /// Tokens that passed every check, by SHA-256 of the token. A client
    /// sends the same bearer token with each request, and verifying its
    /// signature again proves nothing new; that verification was a tenth
    /// of a logged consent read's CPU. Only verified tokens enter, each
    /// still expires with its `exp`, and the trusted keys never change
    /// after start-up (loading one empties the cache).
    verified: Mutex<HashMap<[u8; 32], VerifiedToken>>,
}

#[derive(Clone)]
struct VerifiedToken {
    principal: Principal,
    expires_at: u64,
}

/// Verified tokens kept at most; the cache starts over beyond this.
const VERIFIED_CAPACITY: usize = 10_000;

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    exp: u64,
    sub: String,
    org: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    patient_ref: Option<String>,
}

impl JwtVerifier {
    pub fn new(audience: String, leeway_seconds: u64) -> Self {
        Self {
            keys: HashMap::new(),
            patient_issuer: None,
            audience,
            leeway_seconds,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Loads every issuer's JWKS file.
    pub fn from_issuers(
        issuers: &[IssuerConfig],
        audience: String,
        leeway_seconds: u64,
    ) -> Result<Self, String> {
        let mut verifier = Self::new(audience, leeway_seconds);
        for issuer in issuers {
            let text = std::fs::read_to_string(&issuer.jwks_file)
                .map_err(|e| format!("cannot read JWKS {}: {e}", issuer.jwks_file.display()))?;
            verifier.trust_jwks(&issuer.issuer, &text)?;
        }
        Ok(verifier)
    }

    /// Trusts every key of a JWKS document for `issuer`.
    pub fn trust_jwks(&mut self, issuer: &str, jwks_json: &str) -> Result<(), String> {
        self.forget_verified();
        let set: JwkSet = serde_json::from_str(jwks_json)
            .map_err(|e| format!("issuer {issuer}: invalid JWKS: {e}"))?;
        if set.keys.is_empty() {
            return Err(format!("issuer {issuer}: JWKS has no keys"));
        }
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| format!("issuer {issuer}: every key needs a `kid`"))?;
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    Algorithm::EdDSA
                }
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::OctetKey(_) => {
                    return Err(format!(
                        "issuer {issuer}, key {kid}: symmetric (HS*) keys are not accepted"
                    ))
                }
                _ => {
                    return Err(format!(
                        "issuer {issuer}, key {kid}: only Ed25519, P-256 and RSA keys are accepted"
                    ))
                }
            };
            if let Some(declared) = jwk.common.key_algorithm {
                let matches = matches!(
                    (declared, algorithm),
                    (jsonwebtoken::jwk::KeyAlgorithm::EdDSA, Algorithm::EdDSA)
                        | (jsonwebtoken::jwk::KeyAlgorithm::ES256, Algorithm::ES256)
                        | (jsonwebtoken::jwk::KeyAlgorithm::RS256, Algorithm::RS256)
                );
                if !matches {
                    return Err(format!(
                        "issuer {issuer}, key {kid}: only EdDSA, ES256 and RS256 are accepted"
                    ));
                }
            }
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("issuer {issuer}, key {kid}: {e}"))?;
            if self.keys.contains_key(&kid) {
                return Err(format!(
                    "key id {kid} is configured twice; kids must be unique across issuers"
                ));
            }
            self.keys.insert(
                kid,
                TrustedKey {
                    issuer: issuer.to_owned(),
                    algorithm,
                    key,
                },
            );
        }
        Ok(())
    }

    /// Names the service's own issuer: the only source of patient tokens,
    /// and a source of nothing else.
    pub fn set_patient_issuer(&mut self, issuer: &str) {
        self.forget_verified();
        self.patient_issuer = Some(issuer.to_owned());
    }

    /// Trust changed: every token is checked afresh.
    fn forget_verified(&mut self) {
        if let Ok(verified) = self.verified.get_mut() {
            verified.clear();
        }
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.keys.values().map(|k| k.issuer.as_str())
    }

    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// [`Self::verify`] as of `now` (seconds since the epoch) for a token
    /// verified before; a new token's expiry is checked against the clock.
    fn verify_at(&self, token: &str, now: u64) -> Result<Principal, TokenError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        if let Some(hit) = self.cached(&key) {
            if now > hit.expires_at.saturating_add(self.leeway_seconds) {
                self.forget(&key);
                return Err(TokenError::Expired);
            }
            return Ok(hit.principal);
        }
        let (principal, expires_at) = self.verify_uncached(token)?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(
                key,
                VerifiedToken {
                    principal: principal.clone(),
                    expires_at,
                },
            );
        }
        Ok(principal)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<VerifiedToken> {
        self.verified.lock().ok()?.get(key).cloned()
    }

    fn forget(&self, key: &[u8; 32]) {
        if let Ok(mut verified) = self.verified.lock() {
            verified.remove(key);
        }
    }

    /// Every check of a token, with its `exp`.
    fn verify_uncached(&self, token: &str) -> Result<(Principal, u64), TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let trusted = self.keys.get(&kid).ok_or(TokenError::UntrustedIssuer)?;
        if header.alg != trusted.algorithm {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(trusted.algorithm);
        validation.set_issuer(&[&trusted.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.leeway_seconds;
        let data = decode::<Claims>(token, &trusted.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidIssuer => TokenError::UntrustedIssuer,
                _ => TokenError::Invalid,
            }
        })?;
        let claims = data.claims;
        let sane = |s: &str| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control);
        if !sane(&claims.sub) || !sane(&claims.org) {
            return Err(TokenError::Invalid);
        }
        let from_patient_issuer = self.patient_issuer.as_deref() == Some(trusted.issuer.as_str());
        // Patient tokens come from the service's own issuer only, and that
        // issuer grants nothing but the patient role.
        let roles: Vec<Role> = claims
            .roles
            .iter()
            .filter_map(|r| Role::parse(r))
            .filter(|r| (*r == Role::Patient) == from_patient_issuer)
            .collect();
        let principal = Principal {
            subject: claims.sub,
            org: claims.org,
            patient_ref: claims
                .patient_ref
                .filter(|r| from_patient_issuer && sane(r)),
            roles,
        };
        Ok((principal, claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::{JwtVerifier, TokenError};
    use crate::auth::dev::Ed25519Signer;
    use crate::auth::Role;
    use crate::clock::{Clock, SystemClock};

    const ISSUER: &str = "https://idp.example";

    /// A staff token from `signer`, valid for a minute from `now`.
    fn staff_token(signer: &Ed25519Signer, now: chrono::DateTime<chrono::Utc>) -> String {
        signer
            .sign(
                "genomegate",
                "nurse-1",
                "hospital-a",
                &["hospital_staff".into()],
                now,
                chrono::Duration::seconds(60),
            )
            .unwrap()
    }

    fn verifier_and_signer() -> (JwtVerifier, Ed25519Signer) {
        let signer = Ed25519Signer::generate("k1".into(), ISSUER.into()).unwrap();
        let mut verifier = JwtVerifier::new("genomegate".into(), 5);
        verifier.trust_jwks(ISSUER, &signer.jwks_json()).unwrap();
        (verifier, signer)
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires() {
        let (verifier, signer) = verifier_and_signer();
        let now = SystemClock.now();
        let token = staff_token(&signer, now);
        let first = verifier.verify(&token).unwrap();
        assert_eq!(first.roles, [Role::HospitalStaff]);
        assert_eq!(verifier.verify(&token).unwrap(), first);
        assert_eq!(verifier.verified.lock().unwrap().len(), 1);

        // A changed signature is a different token: checked in full.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(verifier.verify(&forged), Err(TokenError::Invalid));
        assert_eq!(verifier.verified.lock().unwrap().len(), 1);

        // Past exp and the leeway, the remembered token is expired too.
        let later = u64::try_from(now.timestamp()).unwrap() + 60 + 5 + 1;
        assert_eq!(verifier.verify_at(&token, later), Err(TokenError::Expired));
        assert!(verifier.verified.lock().unwrap().is_empty());
    }

    #[test]
    fn trusting_new_keys_forgets_what_was_verified() {
        let (mut verifier, signer) = verifier_and_signer();
        let token = staff_token(&signer, SystemClock.now());
        verifier.verify(&token).unwrap();
        let other = Ed25519Signer::generate("k2".into(), "https://other.example".into()).unwrap();
        verifier
            .trust_jwks("https://other.example", &other.jwks_json())
            .unwrap();
        assert!(verifier.verified.lock().unwrap().is_empty());
    }
}
