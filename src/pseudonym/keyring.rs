//! The versioned key file: one secret per (domain, version).
//!
//! ```toml
//! [[key]]
//! domain = "sample"        # patient | sample | project | vault | checkpoint | token | handle | visa
//! version = 2
//! created_at = "2026-11-21T06:00:00Z"
//! secret = "base64…"        # 32 random bytes
//! ```
//!
//! The file is mode 0600 and rewritten atomically on rotation. Rotation adds
//! a version; old versions stay, so identifiers issued under them still
//! resolve. Development files carry the development marker and production
//! mode refuses them.

use crate::keyfile::{self, DEV_KEY_MARKER};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::{aead, hmac};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDomain {
    /// Patient pseudonyms from hospital-local IDs.
    Patient,
    /// Genome sample identifiers.
    Sample,
    /// Per-project identifiers of samples and patients.
    Project,
    /// AES-256-GCM sealing of hospital-local IDs (identity vault).
    Vault,
    /// Ed25519 seed signing access-log checkpoints.
    Checkpoint,
    /// Ed25519 seed signing the service's own tokens (patients).
    Token,
    /// Ed25519 seed signing dataset handles.
    Handle,
    /// P-256 private scalar signing GA4GH Passport visas (ES256: the
    /// Passport specification allows RS256 and ES256 only).
    Visa,
}

impl KeyDomain {
    pub const ALL: [KeyDomain; 8] = [
        KeyDomain::Patient,
        KeyDomain::Sample,
        KeyDomain::Project,
        KeyDomain::Vault,
        KeyDomain::Checkpoint,
        KeyDomain::Token,
        KeyDomain::Handle,
        KeyDomain::Visa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyDomain::Patient => "patient",
            KeyDomain::Sample => "sample",
            KeyDomain::Project => "project",
            KeyDomain::Vault => "vault",
            KeyDomain::Checkpoint => "checkpoint",
            KeyDomain::Token => "token",
            KeyDomain::Handle => "handle",
            KeyDomain::Visa => "visa",
        }
    }

    /// Domains whose secret is an Ed25519 seed rather than a MAC key.
    pub fn signs(self) -> bool {
        matches!(
            self,
            KeyDomain::Checkpoint | KeyDomain::Token | KeyDomain::Handle
        )
    }

    pub fn parse(raw: &str) -> Option<Self> {
        KeyDomain::ALL.into_iter().find(|d| d.as_str() == raw)
    }
}

const KEY_BYTES: usize = 32;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    domain: KeyDomain,
    version: u32,
    created_at: DateTime<Utc>,
    secret: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyFileDoc {
    #[serde(default)]
    key: Vec<KeyRecord>,
}

/// One usable key. The raw bytes are not kept: only ring's key schedules.
pub struct DomainKey {
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub(super) hmac: hmac::Key,
    pub(super) aead: aead::LessSafeKey,
    /// For signing domains: the seed as an Ed25519 PKCS#8 document, the form
    /// ring and jsonwebtoken load.
    ed25519_pkcs8: Option<Vec<u8>>,
    /// For the visa domain: the secret as a P-256 private key, PKCS#8.
    p256_pkcs8: Option<Vec<u8>>,
    fingerprint: String,
}

impl DomainKey {
    fn new(
        domain: KeyDomain,
        version: u32,
        created_at: DateTime<Utc>,
        secret: &[u8],
    ) -> Result<Self, String> {
        if secret.len() != KEY_BYTES {
            return Err(format!("keys are {KEY_BYTES} bytes"));
        }
        let aead_key = aead::UnboundKey::new(&aead::AES_256_GCM, secret)
            .map_err(|_| "invalid AES-256 key".to_owned())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        Ok(Self {
            version,
            created_at,
            hmac: hmac::Key::new(hmac::HMAC_SHA256, secret),
            aead: aead::LessSafeKey::new(aead_key),
            ed25519_pkcs8: domain.signs().then(|| ed25519_pkcs8_from_seed(secret)),
            p256_pkcs8: match domain {
                KeyDomain::Visa => Some(p256_pkcs8_from_secret(secret)?),
                _ => None,
            },
            fingerprint: hex::encode(&digest.as_ref()[..6]),
        })
    }

    /// The Ed25519 private key of a signing domain, as PKCS#8 v1.
    pub fn ed25519_pkcs8(&self) -> Option<&[u8]> {
        self.ed25519_pkcs8.as_deref()
    }

    /// The P-256 private key of the visa domain, as PKCS#8.
    pub fn p256_pkcs8(&self) -> Option<&[u8]> {
        self.p256_pkcs8.as_deref()
    }

    /// A non-secret name for the key, for listings.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for DomainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainKey(v{}, <redacted>)", self.version)
    }
}

/// Every key of every domain, newest version last within a domain.
pub struct Keyring {
    keys: BTreeMap<KeyDomain, Vec<DomainKey>>,
    pub is_development: bool,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<String> = self
            .keys
            .iter()
            .map(|(d, ks)| format!("{}:{}", d.as_str(), ks.len()))
            .collect();
        write!(f, "Keyring({}, <redacted>)", versions.join(","))
    }
}

impl Keyring {
    /// Builds a keyring from raw secrets; every domain needs at least one.
    pub fn from_secrets(
        secrets: Vec<(KeyDomain, u32, DateTime<Utc>, Vec<u8>)>,
        is_development: bool,
    ) -> Result<Self, String> {
        let mut keys: BTreeMap<KeyDomain, Vec<DomainKey>> = BTreeMap::new();
        for (domain, version, created_at, secret) in secrets {
            let entry = keys.entry(domain).or_default();
            if entry.iter().any(|k| k.version == version) {
                return Err(format!(
                    "{} key version {version} appears twice",
                    domain.as_str()
                ));
            }
            entry.push(
                DomainKey::new(domain, version, created_at, &secret)
                    .map_err(|e| format!("{} v{version}: {e}", domain.as_str()))?,
            );
        }
        for domain in KeyDomain::ALL {
            match keys.get_mut(&domain) {
                Some(list) => list.sort_by_key(|k| k.version),
                None => {
                    return Err(format!(
                        "the key file has no `{0}` key; add one with `genomegate keys rotate --domain {0}`",
                        domain.as_str()
                    ))
                }
            }
        }
        Ok(Self {
            keys,
            is_development,
        })
    }

    /// Fresh random keys, version 1 of every domain (tests, benchmarks).
    pub fn generate(now: DateTime<Utc>) -> Result<Self, String> {
        let secrets = KeyDomain::ALL
            .into_iter()
            .map(|d| Ok((d, 1, now, keyfile::random_bytes(KEY_BYTES)?)))
            .collect::<Result<Vec<_>, String>>()?;
        Self::from_secrets(secrets, true)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o077)
                .unwrap_or(0);
            if mode != 0 {
                return Err(format!(
                    "key file {} is readable by others; chmod 600 it",
                    path.display()
                ));
            }
        }
        let doc: KeyFileDoc =
            toml::from_str(&text).map_err(|e| format!("key file {}: {e}", path.display()))?;
        let secrets = doc
            .key
            .into_iter()
            .map(|r| {
                let bytes = STANDARD
                    .decode(r.secret.trim())
                    .map_err(|_| format!("key file {}: a secret is not base64", path.display()))?;
                Ok((r.domain, r.version, r.created_at, bytes))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Self::from_secrets(secrets, text.contains(DEV_KEY_MARKER))
    }

    /// Creates a key file with version 1 of every domain. Never overwrites.
    pub fn create_file(path: &Path, development: bool, now: DateTime<Utc>) -> Result<(), String> {
        let mut doc = KeyFileDoc::default();
        for domain in KeyDomain::ALL {
            doc.key.push(KeyRecord {
                domain,
                version: 1,
                created_at: now,
                secret: STANDARD.encode(keyfile::random_bytes(KEY_BYTES)?),
            });
        }
        keyfile::write_private(path, render(&doc, development)?.as_bytes())
    }

    /// Adds the next version of `domain` and returns it. The file is
    /// replaced atomically (write, then rename), keeping mode 0600.
    pub fn rotate_file(path: &Path, domain: KeyDomain, now: DateTime<Utc>) -> Result<u32, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        let development = text.contains(DEV_KEY_MARKER);
        let mut doc: KeyFileDoc =
            toml::from_str(&text).map_err(|e| format!("key file {}: {e}", path.display()))?;
        let next = doc
            .key
            .iter()
            .filter(|k| k.domain == domain)
            .map(|k| k.version)
            .max()
            .unwrap_or(0)
            + 1;
        doc.key.push(KeyRecord {
            domain,
            version: next,
            created_at: now,
            secret: STANDARD.encode(keyfile::random_bytes(KEY_BYTES)?),
        });
        let staging = path.with_extension("rotating");
        let _ = std::fs::remove_file(&staging);
        keyfile::write_private(&staging, render(&doc, development)?.as_bytes())?;
        std::fs::rename(&staging, path)
            .map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
        Ok(next)
    }

    /// Adds version 1 of every domain a development key file lacks: a newer
    /// service may use a domain the file's writer did not know (`visa`).
    /// A production file is left alone; its operator adds the key with
    /// `genomegate keys rotate --domain <domain>`. Returns what was added.
    pub fn complete_development_file(
        path: &Path,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyDomain>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        if !text.contains(DEV_KEY_MARKER) {
            return Ok(Vec::new());
        }
        let doc: KeyFileDoc =
            toml::from_str(&text).map_err(|e| format!("key file {}: {e}", path.display()))?;
        let missing: Vec<KeyDomain> = KeyDomain::ALL
            .into_iter()
            .filter(|d| !doc.key.iter().any(|k| k.domain == *d))
            .collect();
        for domain in &missing {
            Self::rotate_file(path, *domain, now)?;
        }
        Ok(missing)
    }

    /// The key new identifiers are issued under.
    pub fn current(&self, domain: KeyDomain) -> &DomainKey {
        // `from_secrets` guarantees every domain has a key.
        &self.keys[&domain][self.keys[&domain].len() - 1]
    }

    pub fn version(&self, domain: KeyDomain, version: u32) -> Option<&DomainKey> {
        self.keys
            .get(&domain)?
            .iter()
            .find(|k| k.version == version)
    }

    /// Every key of a domain, newest first: the order in which to try them
    /// when resolving an identifier that may predate a rotation.
    pub fn newest_first(&self, domain: KeyDomain) -> impl Iterator<Item = &DomainKey> {
        self.keys
            .get(&domain)
            .into_iter()
            .flat_map(|k| k.iter().rev())
    }
}

/// RFC 8410 PKCS#8 v1 wrapping of a 32-byte Ed25519 seed.
fn ed25519_pkcs8_from_seed(seed: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

/// A P-256 private key from 32 secret bytes, as PKCS#8. The scalar is the
/// bytes reduced into [1, n-1], so every secret gives a valid key (the
/// reduction moves at most a 2^-32 share of secrets).
fn p256_pkcs8_from_secret(secret: &[u8]) -> Result<Vec<u8>, String> {
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcKey, EcPoint};
    use openssl::nid::Nid;
    let ssl = |e: openssl::error::ErrorStack| format!("P-256 key: {e}");
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ssl)?;
    let mut ctx = BigNumContext::new().map_err(ssl)?;
    let mut order_less_one = BigNum::new().map_err(ssl)?;
    group.order(&mut order_less_one, &mut ctx).map_err(ssl)?;
    order_less_one.sub_word(1).map_err(ssl)?;
    let raw = BigNum::from_slice(secret).map_err(ssl)?;
    let mut scalar = BigNum::new().map_err(ssl)?;
    scalar.nnmod(&raw, &order_less_one, &mut ctx).map_err(ssl)?;
    scalar.add_word(1).map_err(ssl)?;
    let mut public = EcPoint::new(&group).map_err(ssl)?;
    public
        .mul_generator2(&group, &scalar, &mut ctx)
        .map_err(ssl)?;
    let key = EcKey::from_private_components(&group, &scalar, &public).map_err(ssl)?;
    key.check_key().map_err(ssl)?;
    openssl::pkey::PKey::from_ec_key(key)
        .and_then(|k| k.private_key_to_pkcs8())
        .map_err(ssl)
}

fn render(doc: &KeyFileDoc, development: bool) -> Result<String, String> {
    let body = toml::to_string(doc).map_err(|e| e.to_string())?;
    let header = if development {
        format!(
            "# {DEV_KEY_MARKER}: GenomeGate keys for local development. Never use in production.\n"
        )
    } else {
        "# GenomeGate keys. Keep mode 0600; back up before rotating.\n".to_owned()
    };
    Ok(format!("{header}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_rotate_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        Keyring::create_file(&path, true, now).unwrap();
        assert!(
            Keyring::create_file(&path, true, now).is_err(),
            "never overwrites"
        );
        let before = Keyring::load(&path).unwrap();
        assert!(before.is_development);
        assert_eq!(
            Keyring::rotate_file(&path, KeyDomain::Sample, now).unwrap(),
            2
        );
        let after = Keyring::load(&path).unwrap();
        assert_eq!(after.current(KeyDomain::Sample).version, 2);
        assert_eq!(after.current(KeyDomain::Patient).version, 1);
        assert_eq!(
            after.version(KeyDomain::Sample, 1).unwrap().fingerprint(),
            before.current(KeyDomain::Sample).fingerprint(),
            "old versions survive rotation"
        );
        assert_eq!(
            after
                .newest_first(KeyDomain::Sample)
                .map(|k| k.version)
                .collect::<Vec<_>>(),
            [2, 1]
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!format!("{after:?}").contains(&text[text.find("secret").unwrap() + 10..][..20]));
    }

    #[test]
    fn signing_domains_yield_ed25519_keys_ring_accepts() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let ring = Keyring::generate(now).unwrap();
        for domain in [KeyDomain::Checkpoint, KeyDomain::Token] {
            let pkcs8 = ring.current(domain).ed25519_pkcs8().unwrap();
            ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).unwrap();
        }
        assert!(ring.current(KeyDomain::Patient).ed25519_pkcs8().is_none());
        let visa = ring.current(KeyDomain::Visa).p256_pkcs8().unwrap();
        let rng = ring::rand::SystemRandom::new();
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            visa,
            &rng,
        )
        .unwrap();
        assert!(ring.current(KeyDomain::Handle).p256_pkcs8().is_none());
    }

    #[test]
    fn a_development_file_without_a_newer_domain_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        Keyring::create_file(&path, true, now).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // The file an older service wrote: no `visa` key.
        let older: String = text
            .split("[[key]]")
            .filter(|block| !block.contains("domain = \"visa\""))
            .collect::<Vec<_>>()
            .join("[[key]]");
        std::fs::remove_file(&path).unwrap();
        keyfile::write_private(&path, older.as_bytes()).unwrap();
        assert!(Keyring::load(&path).unwrap_err().contains("visa"));
        assert_eq!(
            Keyring::complete_development_file(&path, now).unwrap(),
            [KeyDomain::Visa]
        );
        let completed = Keyring::load(&path).unwrap();
        assert_eq!(completed.current(KeyDomain::Visa).version, 1);
        assert!(Keyring::complete_development_file(&path, now)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_visa_key_is_the_same_p256_key_for_the_same_secret() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let key = |secret: Vec<u8>| {
            DomainKey::new(KeyDomain::Visa, 1, now, &secret)
                .unwrap()
                .p256_pkcs8
                .unwrap()
        };
        assert_eq!(key(vec![7; 32]), key(vec![7; 32]));
        assert_ne!(key(vec![7; 32]), key(vec![8; 32]));
        // Secrets at or above the group order still give a valid key.
        let rng = ring::rand::SystemRandom::new();
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key(vec![0xff; 32]),
            &rng,
        )
        .unwrap();
    }

    #[test]
    fn readable_key_files_and_missing_domains_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        Keyring::create_file(&path, false, now).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(Keyring::load(&path).unwrap_err().contains("chmod 600"));
        }
        assert!(
            Keyring::complete_development_file(&path, now)
                .unwrap()
                .is_empty(),
            "a production file is never completed"
        );
        let partial = vec![(KeyDomain::Patient, 1, now, vec![1; 32])];
        assert!(Keyring::from_secrets(partial, false)
            .unwrap_err()
            .contains("sample"));
    }
}
