//! Keyed pseudonyms. A hospital-local patient ID enters, an HMAC-SHA256
//! leaves; the local ID is never stored. Without the key the pseudonym cannot
//! be recomputed from a guessed ID, which is what makes it a pseudonym rather
//! than a hash.

use ring::hmac;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;
use std::fmt;

/// Domain separation: a pseudonym for one purpose can never equal one for
/// another purpose even under the same key.
const PATIENT_DOMAIN: &[u8] = b"genomegate/patient-pseudonym/v1";

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PatientPseudonym(String);

impl PatientPseudonym {
    /// Parses a pseudonym presented by a client: 64 lowercase hex digits.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 64 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Pseudonyms are not secrets, but they are linkable identifiers: keep them
// out of casual debug output all the same.
impl fmt::Debug for PatientPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PatientPseudonym({}…)", &self.0[..8.min(self.0.len())])
    }
}

impl fmt::Display for PatientPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hospital-local patient ID, as it arrives. It is only ever fed to the
/// keyed hash; `Debug` hides it so it cannot reach a log by accident.
pub struct LocalPatientId(String);

impl LocalPatientId {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.len() > 128 {
            return Err("must be 1-128 characters");
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl fmt::Debug for LocalPatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalPatientId(<redacted>)")
    }
}

/// The secret key behind patient pseudonyms.
pub struct PseudonymKey {
    key: hmac::Key,
    material: SecretSlice<u8>,
}

impl PseudonymKey {
    pub const MIN_LEN: usize = 32;

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < Self::MIN_LEN {
            return Err(format!(
                "pseudonym key must be at least {} bytes",
                Self::MIN_LEN
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            material: SecretSlice::from(bytes),
        })
    }

    /// The pseudonym of a hospital's patient. The hospital is part of the
    /// input: local IDs are only unique within one hospital.
    pub fn patient(&self, hospital_org: &str, local_id: &LocalPatientId) -> PatientPseudonym {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [
            PATIENT_DOMAIN,
            hospital_org.as_bytes(),
            local_id.0.as_bytes(),
        ] {
            // Length-prefix every part so ("ab","c") and ("a","bc") differ.
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        PatientPseudonym(hex::encode(ctx.sign().as_ref()))
    }

    /// Key material, for equality checks against known development keys.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.material.expose_secret());
        hex::encode(&digest.as_ref()[..8])
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_hospital_scoped() {
        let k1 = PseudonymKey::from_bytes(vec![7; 32]).unwrap();
        let k2 = PseudonymKey::from_bytes(vec![8; 32]).unwrap();
        let id = LocalPatientId::parse("MRN-0001").unwrap();
        let a = k1.patient("hospital-a", &id);
        assert_eq!(
            a,
            k1.patient("hospital-a", &LocalPatientId::parse(" MRN-0001 ").unwrap())
        );
        assert_ne!(a, k1.patient("hospital-b", &id));
        assert_ne!(a, k2.patient("hospital-a", &id));
        assert!(PatientPseudonym::parse(a.as_str()).is_some());
        assert!(!format!("{id:?} {k1:?}").contains("MRN"));
    }

    #[test]
    fn short_keys_and_bad_ids_are_refused() {
        assert!(PseudonymKey::from_bytes(vec![1; 31]).is_err());
        assert!(LocalPatientId::parse("  ").is_err());
        assert!(LocalPatientId::parse("a\nb").is_err());
        assert!(PatientPseudonym::parse("ABC").is_none());
    }
}
