//! The identity vault: hospital-local patient IDs sealed with AES-256-GCM.
//!
//! The associated data binds each sealed ID to its hospital and pseudonym,
//! so a ciphertext moved to another row or another hospital no longer
//! opens, and any bit flipped in nonce, ciphertext or tag is detected.

use super::keyring::{KeyDomain, Keyring};
use super::{LocalPatientId, PatientPseudonym};
use ring::aead::{Aad, Nonce, NONCE_LEN};

/// A sealed local ID as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_version: u32,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("the sealed identity failed authentication: it was altered or moved")]
    Tampered,
    #[error("the vault key version of this record is not in the key file")]
    UnknownKey,
    #[error("the random source failed")]
    Random,
}

fn associated_data(hospital_org: &str, pseudonym: &PatientPseudonym) -> Vec<u8> {
    format!("genomegate/vault/v1\0{hospital_org}\0{pseudonym}").into_bytes()
}

impl Keyring {
    pub fn seal(
        &self,
        hospital_org: &str,
        pseudonym: &PatientPseudonym,
        local_id: &LocalPatientId,
    ) -> Result<Sealed, VaultError> {
        self.seal_bytes(
            &associated_data(hospital_org, pseudonym),
            local_id.0.as_bytes(),
        )
    }

    /// Opens a sealed ID; only the hospital and pseudonym it was sealed for
    /// will do.
    pub fn open(
        &self,
        hospital_org: &str,
        pseudonym: &PatientPseudonym,
        sealed: &Sealed,
    ) -> Result<LocalPatientId, VaultError> {
        let plain = self.open_bytes(&associated_data(hospital_org, pseudonym), sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Tampered)?;
        LocalPatientId::parse(text).map_err(|_| VaultError::Tampered)
    }

    /// Seals any secret under the current vault key, bound to `aad` (say,
    /// the row it belongs to).
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Result<Sealed, VaultError> {
        let key = self.current(KeyDomain::Vault);
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| VaultError::Random)?;
        let mut buffer = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| VaultError::Random)?;
        Ok(Sealed {
            key_version: key.version,
            nonce: nonce.to_vec(),
            ciphertext: buffer,
        })
    }

    pub fn open_bytes(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, VaultError> {
        let key = self
            .version(KeyDomain::Vault, sealed.key_version)
            .ok_or(VaultError::UnknownKey)?;
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Tampered)?;
        let mut buffer = sealed.ciphertext.clone();
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| VaultError::Tampered)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_detect_tampering() {
        let keys =
            Keyring::generate(chrono::DateTime::<chrono::Utc>::from_timestamp(0, 0).unwrap())
                .unwrap();
        let local = LocalPatientId::parse("MRN-77").unwrap();
        let pseudonym = keys.patient("hospital-a", &local);
        let sealed = keys.seal("hospital-a", &pseudonym, &local).unwrap();
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"MRN-77"));
        assert_eq!(
            keys.open("hospital-a", &pseudonym, &sealed)
                .unwrap()
                .expose(),
            "MRN-77"
        );
        assert!(
            matches!(
                keys.open("hospital-b", &pseudonym, &sealed),
                Err(VaultError::Tampered)
            ),
            "bound to the hospital"
        );
        for i in 0..sealed.ciphertext.len() {
            let mut flipped = sealed.clone();
            flipped.ciphertext[i] ^= 0x01;
            assert!(
                keys.open("hospital-a", &pseudonym, &flipped).is_err(),
                "bit flip at {i} undetected"
            );
        }
        let mut nonce = sealed.clone();
        nonce.nonce[0] ^= 0x80;
        assert!(keys.open("hospital-a", &pseudonym, &nonce).is_err());
        let other = keys.patient("hospital-a", &LocalPatientId::parse("MRN-78").unwrap());
        assert!(
            keys.open("hospital-a", &other, &sealed).is_err(),
            "bound to the pseudonym"
        );
    }
}
