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
}

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
        self.patient_issuer = Some(issuer.to_owned());
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
        Ok(Principal {
            subject: claims.sub,
            org: claims.org,
            patient_ref: claims
                .patient_ref
                .filter(|r| from_patient_issuer && sane(r)),
            roles,
        })
    }
}
