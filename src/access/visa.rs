//! GA4GH Passport visas, signed by this service as the data access
//! committee's visa issuer: `ControlledAccessGrants`, that a person is a
//! member of an approved use, and `AcceptedTermsAndPolicies`, that they
//! accepted the agreement text in force.
//!
//! A visa admits a *person* to a project, for a trusted research
//! environment that keeps its users in Passport terms; it never names data.
//! Its `value` is the application, not a dataset, so no environment can
//! read it as a grant of a whole dataset: which objects the project may
//! read is the dataset handle's answer, given page by page against every
//! patient's current consent (decision 0031).
//!
//! Visas are Visa Document Tokens (GA4GH AAI 1.2): ES256, with `kid` and a
//! `jku` naming `/.well-known/jwks.json`, and no revocation process, so
//! they live no longer than a dataset handle.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};

/// The Passport visa type for a data access committee's approval.
pub const CONTROLLED_ACCESS_GRANTS: &str = "ControlledAccessGrants";

/// The Passport visa type for terms a person accepted.
pub const ACCEPTED_TERMS_AND_POLICIES: &str = "AcceptedTermsAndPolicies";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisaClaims {
    pub iss: String,
    /// The researcher as this issuer names them: `{subject}@{organization}`,
    /// since a researcher is known here by both.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub ga4gh_visa_v1: VisaAssertion,
}

/// The `ga4gh_visa_v1` object (GA4GH Passport 1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisaAssertion {
    #[serde(rename = "type")]
    pub kind: String,
    /// When what it asserts happened (seconds since the epoch).
    pub asserted: i64,
    /// What it is about: the approved use, or the accepted text, by URL.
    pub value: String,
    /// Who stands behind it: this service's base URL.
    pub source: String,
    /// `dac` for the committee's approval, `self` for the person's own
    /// acceptance.
    pub by: String,
}

/// What one visa asserts, before the issuer signs it.
pub enum Assertion {
    /// The committee approved the use at `approved_at`, and the holder is
    /// its member. The value is the application's URL, never a dataset's.
    ControlledAccess {
        application_url: String,
        approved_at: i64,
    },
    /// The holder accepted the agreement text at `text_url` (one version)
    /// at `accepted_at`.
    AcceptedTerms { text_url: String, accepted_at: i64 },
}

/// Whom a visa is for, and for how long.
pub struct Holder<'a> {
    pub org: &'a str,
    pub researcher: &'a str,
    pub now: i64,
    /// The end of the visa's life: the sooner of the policy's lifetime and
    /// the agreement's expiry.
    pub expires_at: i64,
}

/// One signing key: a P-256 private key (PKCS#8) and its public point.
struct Signer {
    pkcs8: SecretSlice<u8>,
    /// Uncompressed: 0x04, then x and y, 32 bytes each.
    public_point: Vec<u8>,
    kid: String,
}

/// Every visa key, newest last; new visas use the newest.
pub struct VisaKeys {
    signers: Vec<Signer>,
    issuer: String,
    jku: String,
}

impl VisaKeys {
    /// `keys` are (kid, PKCS#8) pairs, oldest first. `issuer` is this
    /// service's base URL, `jku` where its public keys are published.
    pub fn new(keys: Vec<(String, Vec<u8>)>, issuer: String, jku: String) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("the key file has no visa key".into());
        }
        let rng = ring::rand::SystemRandom::new();
        let signers = keys
            .into_iter()
            .map(|(kid, pkcs8)| {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                    .map_err(|_| format!("visa key {kid} is not a P-256 PKCS#8 key"))?;
                Ok(Signer {
                    public_point: pair.public_key().as_ref().to_vec(),
                    pkcs8: SecretSlice::from(pkcs8),
                    kid,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            signers,
            issuer,
            jku,
        })
    }

    pub fn jku(&self) -> &str {
        &self.jku
    }

    /// The claims of a visa for `holder` asserting `assertion`.
    pub fn claims(&self, holder: &Holder<'_>, assertion: Assertion, jti: String) -> VisaClaims {
        let (kind, value, asserted, by) = match assertion {
            Assertion::ControlledAccess {
                application_url,
                approved_at,
            } => (
                CONTROLLED_ACCESS_GRANTS,
                application_url,
                approved_at,
                "dac",
            ),
            Assertion::AcceptedTerms {
                text_url,
                accepted_at,
            } => (ACCEPTED_TERMS_AND_POLICIES, text_url, accepted_at, "self"),
        };
        VisaClaims {
            iss: self.issuer.clone(),
            sub: format!("{}@{}", holder.researcher, holder.org),
            iat: holder.now,
            exp: holder.expires_at,
            jti,
            ga4gh_visa_v1: VisaAssertion {
                kind: kind.to_owned(),
                asserted,
                value,
                source: self.issuer.clone(),
                by: by.to_owned(),
            },
        }
    }

    /// Signs `claims` as a Visa Document Token with the newest key.
    pub fn sign(&self, claims: &VisaClaims) -> Result<String, String> {
        let signer = self.signers.last().ok_or("no visa key")?;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(signer.kid.clone());
        header.jku = Some(self.jku.clone());
        let key = EncodingKey::from_ec_der(signer.pkcs8.expose_secret());
        encode(&header, claims, &key).map_err(|e| format!("signing failed: {e}"))
    }

    /// The public keys as JWKs (RFC 7518 EC, P-256).
    pub fn public_jwks(&self) -> Vec<serde_json::Value> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        self.signers
            .iter()
            .map(|s| {
                let (x, y) = s.public_point[1..].split_at(32);
                serde_json::json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "use": "sig",
                    "kid": s.kid,
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    fn keys(n: usize) -> VisaKeys {
        let rng = ring::rand::SystemRandom::new();
        let keys = (1..=n)
            .map(|v| {
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                (format!("visa-v{v}"), pkcs8.as_ref().to_vec())
            })
            .collect();
        VisaKeys::new(
            keys,
            "https://gate.example".into(),
            "https://gate.example/.well-known/jwks.json".into(),
        )
        .unwrap()
    }

    fn holder() -> Holder<'static> {
        Holder {
            org: "pharma-co",
            researcher: "res-1",
            now: 1_700_000_100,
            expires_at: 1_700_001_000,
        }
    }

    fn approval() -> Assertion {
        Assertion::ControlledAccess {
            application_url: "https://gate.example/v1/applications/app-1".into(),
            approved_at: 1_700_000_000,
        }
    }

    #[test]
    fn a_visa_is_a_document_token_its_published_key_verifies() {
        let keys = keys(2);
        let claims = keys.claims(&holder(), approval(), "visa-1".into());
        let token = keys.sign(&claims).unwrap();

        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some("visa-v2"), "the newest key");
        assert_eq!(
            header.jku.as_deref(),
            Some("https://gate.example/.well-known/jwks.json")
        );
        let jwk: Jwk = serde_json::from_value(
            keys.public_jwks()
                .into_iter()
                .find(|k| k["kid"] == "visa-v2")
                .unwrap(),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_issuer(&["https://gate.example"]);
        let read = decode::<VisaClaims>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .unwrap()
            .claims;
        assert_eq!(read, claims);
        assert_eq!(read.sub, "res-1@pharma-co");
        assert_eq!(read.ga4gh_visa_v1.kind, "ControlledAccessGrants");
        assert_eq!(read.ga4gh_visa_v1.by, "dac");
        assert_eq!(read.ga4gh_visa_v1.source, "https://gate.example");

        // The older key does not verify it: each key is its own.
        let older: Jwk = serde_json::from_value(keys.public_jwks()[0].clone()).unwrap();
        assert!(
            decode::<VisaClaims>(&token, &DecodingKey::from_jwk(&older).unwrap(), &validation)
                .is_err()
        );
    }

    #[test]
    fn the_visa_names_the_use_and_no_data() {
        let text =
            serde_json::to_string(&keys(1).claims(&holder(), approval(), "visa-1".into())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut fields: Vec<&String> = v["ga4gh_visa_v1"].as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["asserted", "by", "source", "type", "value"]);
        assert_eq!(
            v["ga4gh_visa_v1"]["value"],
            "https://gate.example/v1/applications/app-1"
        );
    }

    #[test]
    fn an_accepted_text_is_asserted_by_the_person() {
        let terms = Assertion::AcceptedTerms {
            text_url: "https://gate.example/v1/agreement-texts/2".into(),
            accepted_at: 1_700_000_050,
        };
        let visa = keys(1)
            .claims(&holder(), terms, "visa-2".into())
            .ga4gh_visa_v1;
        assert_eq!(visa.kind, "AcceptedTermsAndPolicies");
        assert_eq!(visa.by, "self");
        assert_eq!(visa.asserted, 1_700_000_050);
        assert_eq!(visa.value, "https://gate.example/v1/agreement-texts/2");
        assert_eq!(visa.source, "https://gate.example");
    }

    #[test]
    fn a_key_that_is_not_p256_is_refused() {
        let err = VisaKeys::new(vec![("x".into(), vec![1, 2, 3])], "i".into(), "j".into());
        assert!(err.is_err());
        assert!(VisaKeys::new(vec![], "i".into(), "j".into()).is_err());
    }
}
