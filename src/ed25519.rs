//! EdDSA JSON Web Tokens: the service signs patient tokens, dataset
//! handles and, in development, staff tokens with Ed25519 keys (ring holds
//! the key, jsonwebtoken writes the token).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;

/// An Ed25519 signer for tokens: the development issuer, and tests that play
/// a real external issuer.
pub struct Ed25519Signer {
    pkcs8: SecretSlice<u8>,
    public_key: Vec<u8>,
    pub kid: String,
    pub issuer: String,
}

#[derive(Debug, Serialize)]
pub struct TokenClaims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    pub org: &'a str,
    pub roles: &'a [String],
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_ref: Option<&'a str>,
}

/// A fresh Ed25519 private key as PKCS#8 v1 (RFC 8410): the form OpenSSL
/// and JWT libraries read, which ring's own (v2, with the public key) is
/// not to all of them.
pub fn generate_pkcs8_v1() -> Result<Vec<u8>, String> {
    /// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING {
    /// OCTET STRING (32) } }`, before the 32-byte seed.
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let seed = crate::keyfile::random_bytes(32)?;
    Ok([PREFIX.as_slice(), &seed].concat())
}

impl Ed25519Signer {
    pub fn from_pkcs8(pkcs8: Vec<u8>, kid: String, issuer: String) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| "not an Ed25519 PKCS#8 key".to_owned())?;
        Ok(Self {
            public_key: pair.public_key().as_ref().to_vec(),
            pkcs8: SecretSlice::from(pkcs8),
            kid,
            issuer,
        })
    }

    pub fn generate(kid: String, issuer: String) -> Result<Self, String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "key generation failed".to_owned())?;
        Self::from_pkcs8(pkcs8.as_ref().to_vec(), kid, issuer)
    }

    pub fn jwks_json(&self) -> String {
        serde_json::json!({ "keys": [self.public_jwk()] }).to_string()
    }

    /// The public key as one JWK (RFC 8037 OKP).
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&self.public_key),
        })
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Signs a token for `sub` at `org` with `roles`, valid for `ttl`.
    pub fn sign(
        &self,
        audience: &str,
        sub: &str,
        org: &str,
        roles: &[String],
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String, String> {
        let claims = TokenClaims {
            iss: &self.issuer,
            aud: audience,
            sub,
            org,
            roles,
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
            patient_ref: None,
        };
        self.sign_claims(&claims)
    }

    /// Signs explicit claims (patient tokens carry `patient_ref`).
    pub fn sign_claims<T: Serialize>(&self, claims: &T) -> Result<String, String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ed_der(self.pkcs8.expose_secret());
        encode(&header, claims, &key).map_err(|e| format!("signing failed: {e}"))
    }
}
