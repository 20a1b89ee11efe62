//! Keyed pseudonyms. A hospital-local patient ID enters, an HMAC-SHA256
//! leaves; the local ID is never stored. Without the key the pseudonym cannot
//! be recomputed from a guessed ID, which is what makes it a pseudonym rather
//! than a hash.

pub mod genome_id;
pub mod keyring;
pub mod vault;

use keyring::{DomainKey, KeyDomain, Keyring};
use ring::hmac;
use serde::Serialize;
use std::fmt;

/// HMAC-SHA256 over length-prefixed parts, so ("ab","c") and ("a","bc")
/// never collide. Every keyed identifier in GenomeGate is derived here.
pub(crate) fn keyed_digest(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.sign()
}

/// Domain separation: a pseudonym for one purpose can never equal one for
/// another purpose even under the same key.
const PATIENT_DOMAIN: &[u8] = b"genomegate/patient-pseudonym/v1";
const IDEMPOTENCY_DOMAIN: &[u8] = b"genomegate/idempotency-key/v1";

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
        // The rule of a 128-character text line (`api::patients::LOCAL_PATIENT_ID`):
        // its length as sent, its content trimmed.
        let trimmed = raw.trim();
        if trimmed.is_empty() || raw.chars().count() > 128 {
            return Err("must be 1-128 characters");
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl LocalPatientId {
    /// The plain local ID. Only for handing it back to the patient's own
    /// hospital after an approved recontact; never log or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LocalPatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalPatientId(<redacted>)")
    }
}

/// The pseudonym of a hospital's patient under one patient key. The
/// hospital is part of the input: local IDs are only unique within one
/// hospital.
pub fn patient_pseudonym(
    key: &DomainKey,
    hospital_org: &str,
    local_id: &LocalPatientId,
) -> PatientPseudonym {
    let tag = keyed_digest(
        &key.hmac,
        &[
            PATIENT_DOMAIN,
            hospital_org.as_bytes(),
            local_id.0.as_bytes(),
        ],
    );
    PatientPseudonym(hex::encode(tag.as_ref()))
}

impl Keyring {
    /// The pseudonym a new patient gets: under the current patient key.
    pub fn patient(&self, hospital_org: &str, local_id: &LocalPatientId) -> PatientPseudonym {
        patient_pseudonym(self.current(KeyDomain::Patient), hospital_org, local_id)
    }

    /// What is stored of a client's `Idempotency-Key`: a keyed hash, newest
    /// key first. Integrators build keys from record numbers; the plain key
    /// must never reach storage.
    pub fn idempotency_tags(&self, hospital_org: &str, key: &str) -> Vec<String> {
        self.secret_tags(IDEMPOTENCY_DOMAIN, hospital_org, key)
    }

    /// Keyed hashes of a one-time secret (enrollment code) under every
    /// patient-key version, newest first: what is stored instead of it.
    pub fn enrollment_code_tags(&self, code: &str) -> Vec<String> {
        self.secret_tags(b"genomegate/enrollment-code/v1", "", code)
    }

    fn secret_tags(&self, domain: &[u8], scope: &str, secret: &str) -> Vec<String> {
        self.newest_first(KeyDomain::Patient)
            .map(|k| {
                hex::encode(
                    keyed_digest(&k.hmac, &[domain, scope.as_bytes(), secret.as_bytes()]).as_ref(),
                )
            })
            .collect()
    }

    /// Every pseudonym the patient may already have, newest key first; an
    /// existing patient keeps the pseudonym it was first given.
    pub fn patient_candidates(
        &self,
        hospital_org: &str,
        local_id: &LocalPatientId,
    ) -> Vec<PatientPseudonym> {
        self.newest_first(KeyDomain::Patient)
            .map(|k| patient_pseudonym(k, hospital_org, local_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(seed: u8) -> Keyring {
        let now = chrono::DateTime::<chrono::Utc>::from_timestamp(0, 0).unwrap();
        Keyring::from_secrets(
            KeyDomain::ALL
                .iter()
                .map(|d| (*d, 1, now, vec![seed; 32]))
                .collect(),
            true,
        )
        .unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_hospital_scoped() {
        let (k1, k2) = (keyring(7), keyring(8));
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
        assert_eq!(k1.patient_candidates("hospital-a", &id), vec![a]);
    }

    #[test]
    fn bad_ids_are_refused() {
        assert!(LocalPatientId::parse("  ").is_err());
        assert!(LocalPatientId::parse("a\nb").is_err());
        assert!(PatientPseudonym::parse("ABC").is_none());
    }
}
