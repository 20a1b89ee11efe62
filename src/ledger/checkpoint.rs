//! Signed checkpoints in the C2SP formats (`tlog-checkpoint` inside a
//! `signed-note`), signed with Ed25519 (ring).
//!
//! ```text
//! genomegate.example/access-log      ← origin
//! 8                                  ← tree size
//! XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=   ← root, base64
//!
//! — genomegate.example/access-log q5+l9b4W…      ← key ID (4 bytes) ‖ signature, base64
//! ```
//!
//! The key ID is the first four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public
//! key), 0x01 naming Ed25519; verifiers hold `name+hex(key ID)+base64(0x01 ‖
//! public key)`.

use super::merkle::Hash;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

const ED25519_ALGORITHM: u8 = 0x01;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("not a checkpoint note")]
    Malformed,
    #[error("no valid signature by the expected key")]
    BadSignature,
    #[error("the verifier key is malformed")]
    BadKey,
}

impl Checkpoint {
    /// The checkpoint body: origin, size and base64 root, each on its line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::Malformed)?;
        let size_text = lines.next().ok_or(NoteError::Malformed)?;
        if size_text.is_empty() || (size_text.len() > 1 && size_text.starts_with('0')) {
            return Err(NoteError::Malformed);
        }
        let size = size_text.parse().map_err(|_| NoteError::Malformed)?;
        let root_bytes = STANDARD
            .decode(lines.next().ok_or(NoteError::Malformed)?)
            .map_err(|_| NoteError::Malformed)?;
        let root: Hash = root_bytes.try_into().map_err(|_| NoteError::Malformed)?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ED25519_ALGORITHM]);
    ctx.update(public_key);
    let digest = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest.as_ref()[..4]);
    id
}

/// Signs checkpoints as `name` (conventionally the log's origin).
pub struct NoteSigner {
    name: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}, <redacted>)", self.name)
    }
}

impl NoteSigner {
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        if name.is_empty() || name.contains(['+', ' ', '\n']) {
            return Err(NoteError::BadKey);
        }
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| NoteError::BadKey)?;
        Ok(Self {
            name: name.to_owned(),
            pair,
        })
    }

    /// `name+hex(key ID)+base64(0x01 ‖ public key)`, what verifiers configure.
    pub fn verifier_key(&self) -> String {
        let public = self.pair.public_key().as_ref();
        let mut encoded = vec![ED25519_ALGORITHM];
        encoded.extend_from_slice(public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, public)),
            STANDARD.encode(encoded)
        )
    }

    /// The checkpoint as a signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.pair.sign(body.as_bytes());
        let mut blob = key_id(&self.name, self.pair.public_key().as_ref()).to_vec();
        blob.extend_from_slice(signature.as_ref());
        format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        )
    }
}

/// Verifies a signed checkpoint against a verifier key and returns it.
/// Signature lines by other keys are ignored (a note may be cosigned); at
/// least one must be by `verifier_key` and valid.
pub fn open(note: &str, verifier_key: &str) -> Result<Checkpoint, NoteError> {
    let mut parts = verifier_key.splitn(3, '+');
    let (name, id_hex, key_b64) = (parts.next(), parts.next(), parts.next());
    let (Some(name), Some(id_hex), Some(key_b64)) = (name, id_hex, key_b64) else {
        return Err(NoteError::BadKey);
    };
    let encoded = STANDARD.decode(key_b64).map_err(|_| NoteError::BadKey)?;
    let (Some(&ED25519_ALGORITHM), public) =
        (encoded.first(), encoded.get(1..).unwrap_or_default())
    else {
        return Err(NoteError::BadKey);
    };
    let expected_id = key_id(name, public);
    if public.len() != 32 || hex::encode(expected_id) != id_hex {
        return Err(NoteError::BadKey);
    }
    let (body, signatures) = note.split_once("\n\n").ok_or(NoteError::Malformed)?;
    let body = format!("{body}\n");
    let verifier = UnparsedPublicKey::new(&ED25519, public);
    let mut verified = false;
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
            return Err(NoteError::Malformed);
        };
        let Some((signer, blob_b64)) = rest.split_once(' ') else {
            return Err(NoteError::Malformed);
        };
        let blob = STANDARD
            .decode(blob_b64)
            .map_err(|_| NoteError::Malformed)?;
        if signer != name || blob.len() != 4 + 64 || blob[..4] != expected_id {
            continue;
        }
        if verifier.verify(body.as_bytes(), &blob[4..]).is_ok() {
            verified = true;
        }
    }
    if !verified {
        return Err(NoteError::BadSignature);
    }
    Checkpoint::parse_body(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str) -> NoteSigner {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        NoteSigner::from_pkcs8(name, pkcs8.as_ref()).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "genomegate.example/access-log".into(),
            size: 8,
            root: [0x5d; 32],
        }
    }

    #[test]
    fn signs_and_opens_in_c2sp_form() {
        let s = signer("genomegate.example/access-log");
        let note = s.sign(&checkpoint());
        assert!(note.starts_with("genomegate.example/access-log\n8\nXV1dXV1d"));
        assert!(note.contains("\n\n\u{2014} genomegate.example/access-log "));
        assert_eq!(open(&note, &s.verifier_key()).unwrap(), checkpoint());
        assert!(s
            .verifier_key()
            .starts_with("genomegate.example/access-log+"));
    }

    #[test]
    fn forged_or_altered_checkpoints_are_refused() {
        let s = signer("log");
        let note = s.sign(&checkpoint());
        let key = s.verifier_key();
        let larger = note.replacen("\n8\n", "\n9\n", 1);
        assert_eq!(
            open(&larger, &key),
            Err(NoteError::BadSignature),
            "altered size"
        );
        let other_origin = note.replacen("genomegate.example", "evil.example", 1);
        assert_eq!(
            open(&other_origin, &key),
            Err(NoteError::BadSignature),
            "altered origin"
        );
        let forger = signer("log");
        assert_eq!(
            open(&forger.sign(&checkpoint()), &key),
            Err(NoteError::BadSignature),
            "another key with the same name"
        );
        assert_eq!(
            open(&note, &forger.verifier_key()),
            Err(NoteError::BadSignature)
        );
        assert_eq!(open("no blank line", &key), Err(NoteError::Malformed));
        assert_eq!(open(&note, "log+00000000+AQ=="), Err(NoteError::BadKey));
    }

    #[test]
    fn cosignatures_by_other_keys_are_ignored() {
        let (log, witness) = (signer("log"), signer("witness"));
        let note = log.sign(&checkpoint());
        let cosigned_line = witness
            .sign(&checkpoint())
            .lines()
            .last()
            .unwrap()
            .to_owned();
        let cosigned = format!("{note}{cosigned_line}\n");
        assert_eq!(open(&cosigned, &log.verifier_key()).unwrap(), checkpoint());
        assert_eq!(
            open(&cosigned, &witness.verifier_key()).unwrap(),
            checkpoint()
        );
    }
}
