//! Printed pseudonymous identifiers with a check character.
//!
//! `GS1-8F3K-2M9Q-0P4R-7T2V-X`:
//! - `GS` is the kind: a genome sample; `PS` a sample as one project sees it,
//!   `PP` a patient as one project sees it;
//! - `1` is the key version it was derived under;
//! - 16 Crockford base32 characters carry 80 bits of a keyed HMAC;
//! - the last character is an ISO/IEC 7064 MOD 37-2 check character over
//!   everything before it. It catches every single wrong character and
//!   every swap of two neighbouring characters.
//!
//! Nothing maps these back to people: an identifier can only be recomputed
//! from its inputs with the key.

use super::keyed_digest;
use super::keyring::DomainKey;
use std::fmt;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CHECK_ALPHABET: &[u8; 37] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*";
const BODY_CHARS: usize = 16;

const SAMPLE_DOMAIN: &[u8] = b"genomegate/genome-sample/v1";
const PROJECT_SAMPLE_DOMAIN: &[u8] = b"genomegate/project-sample/v1";
const PROJECT_PATIENT_DOMAIN: &[u8] = b"genomegate/project-patient/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    Sample,
    ProjectSample,
    ProjectPatient,
}

impl IdKind {
    fn prefix(self) -> &'static str {
        match self {
            IdKind::Sample => "GS",
            IdKind::ProjectSample => "PS",
            IdKind::ProjectPatient => "PP",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    #[error("not an identifier of the expected form, e.g. GS1-8F3K-2M9Q-0P4R-7T2V-X")]
    Malformed,
    #[error("the check character does not match: a character is wrong or two are swapped")]
    CheckFailed,
}

/// The printed form [`PrintedId::parse`] reads, as a regular expression
/// (white space around it aside): the head, then the body and its check
/// character in either case, with hyphens anywhere after the head. A match
/// may still fail its check character.
pub fn printed_pattern(kind: IdKind) -> String {
    let either_case = |alphabet: &[u8]| -> String {
        let mut class: Vec<char> = Vec::new();
        for c in alphabet.iter().map(|b| *b as char) {
            class.push(c);
            if c.is_ascii_uppercase() {
                class.push(c.to_ascii_lowercase());
            }
        }
        class
            .into_iter()
            .map(|c| {
                if c == '*' {
                    "\\*".to_owned()
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let head: String = kind
        .prefix()
        .chars()
        .map(|c| format!("[{c}{}]", c.to_ascii_lowercase()))
        .collect();
    format!(
        "{head}[1-9][0-9]{{0,5}}-(?:-*[{}]){{{BODY_CHARS}}}-*[{}]-*",
        either_case(CROCKFORD),
        either_case(CHECK_ALPHABET)
    )
}

/// A parsed, check-verified identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrintedId {
    kind: IdKind,
    version: u32,
    body: [u8; BODY_CHARS],
}

/// ISO/IEC 7064 value of an upper-case alphanumeric character.
fn iso_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        _ => None,
    }
}

/// MOD 37-2: the character that makes the weighted sum ≡ 1 (mod 37).
fn check_char(chars: impl Iterator<Item = u8>) -> u8 {
    let mut p: u32 = 0;
    for c in chars {
        p = ((p + iso_value(c).unwrap_or(0)) * 2) % 37;
    }
    CHECK_ALPHABET[((38 - p) % 37) as usize]
}

impl PrintedId {
    fn from_digest(kind: IdKind, version: u32, digest: &[u8]) -> Self {
        // 80 bits → 16 base32 characters, five bits at a time.
        let mut bits: u128 = 0;
        for byte in digest.iter().take(10) {
            bits = (bits << 8) | u128::from(*byte);
        }
        let mut body = [0u8; BODY_CHARS];
        for (i, slot) in body.iter_mut().enumerate() {
            let shift = 5 * (BODY_CHARS - 1 - i);
            *slot = CROCKFORD[((bits >> shift) & 0x1f) as usize];
        }
        Self {
            kind,
            version,
            body,
        }
    }

    pub fn kind(&self) -> IdKind {
        self.kind
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    fn head(&self) -> String {
        format!("{}{}", self.kind.prefix(), self.version)
    }

    fn check(&self) -> u8 {
        check_char(self.head().bytes().chain(self.body.iter().copied()))
    }

    /// Parses and verifies an identifier of `kind`. Case and hyphens after
    /// the head are forgiven; a wrong check character is not.
    pub fn parse(kind: IdKind, raw: &str) -> Result<Self, IdParseError> {
        let upper = raw.trim().to_ascii_uppercase();
        let (head, tail) = upper.split_once('-').ok_or(IdParseError::Malformed)?;
        let version_text = head
            .strip_prefix(kind.prefix())
            .ok_or(IdParseError::Malformed)?;
        if version_text.is_empty()
            || version_text.len() > 6
            || version_text.starts_with('0')
            || !version_text.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(IdParseError::Malformed);
        }
        let version: u32 = version_text.parse().map_err(|_| IdParseError::Malformed)?;
        let compact: Vec<u8> = tail.bytes().filter(|b| *b != b'-').collect();
        if compact.len() != BODY_CHARS + 1 {
            return Err(IdParseError::Malformed);
        }
        let mut body = [0u8; BODY_CHARS];
        for (slot, c) in body.iter_mut().zip(&compact) {
            if !CROCKFORD.contains(c) {
                return Err(IdParseError::Malformed);
            }
            *slot = *c;
        }
        let given = compact[BODY_CHARS];
        if !CHECK_ALPHABET.contains(&given) {
            return Err(IdParseError::Malformed);
        }
        let id = Self {
            kind,
            version,
            body,
        };
        if id.check() != given {
            return Err(IdParseError::CheckFailed);
        }
        Ok(id)
    }

    /// The 80 bits as a number, for collision tests.
    pub fn bits(&self) -> u128 {
        self.body.iter().fold(0u128, |acc, c| {
            (acc << 5) | CROCKFORD.iter().position(|x| x == c).unwrap_or(0) as u128
        })
    }
}

impl fmt::Display for PrintedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = |r: std::ops::Range<usize>| {
            std::str::from_utf8(&self.body[r])
                .unwrap_or("????")
                .to_owned()
        };
        write!(
            f,
            "{}-{}-{}-{}-{}-{}",
            self.head(),
            b(0..4),
            b(4..8),
            b(8..12),
            b(12..16),
            self.check() as char
        )
    }
}

impl fmt::Debug for PrintedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrintedId({self})")
    }
}

/// The genome ID of a hospital's sample, derived from the hospital and its
/// own sample reference under the sample key `key`.
pub fn sample_id(key: &DomainKey, hospital_org: &str, sample_ref: &str) -> PrintedId {
    let tag = keyed_digest(
        &key.hmac,
        &[
            SAMPLE_DOMAIN,
            hospital_org.as_bytes(),
            sample_ref.as_bytes(),
        ],
    );
    PrintedId::from_digest(IdKind::Sample, key.version, tag.as_ref())
}

/// How `project` sees a sample. Two projects see the same sample under
/// unrelated identifiers, so their recipients cannot join datasets.
pub fn project_sample_id(key: &DomainKey, project: &str, sample: &PrintedId) -> PrintedId {
    project_sample(key, project, sample).id
}

/// A sample as one project sees it: its identifier, and where it stands in
/// the order of the project's manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectSample {
    pub id: PrintedId,
    /// 62 bits of the same keyed digest, bits the identifier does not
    /// print. Two projects list the same samples in unrelated orders, so
    /// manifests cannot be lined up by position (decision 0030).
    pub order: u64,
}

/// [`project_sample_id`] with the sample's manifest order, from one digest.
pub fn project_sample(key: &DomainKey, project: &str, sample: &PrintedId) -> ProjectSample {
    let canonical = sample.to_string();
    let tag = keyed_digest(
        &key.hmac,
        &[
            PROJECT_SAMPLE_DOMAIN,
            project.as_bytes(),
            canonical.as_bytes(),
        ],
    );
    let digest = tag.as_ref();
    // The identifier prints the first 10 bytes; the order takes the next 8.
    let order = digest
        .iter()
        .skip(10)
        .take(8)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    ProjectSample {
        id: PrintedId::from_digest(IdKind::ProjectSample, key.version, digest),
        order: order >> 2,
    }
}

/// How `project` sees a patient.
pub fn project_patient_id(key: &DomainKey, project: &str, patient_pseudonym: &str) -> PrintedId {
    let tag = keyed_digest(
        &key.hmac,
        &[
            PROJECT_PATIENT_DOMAIN,
            project.as_bytes(),
            patient_pseudonym.as_bytes(),
        ],
    );
    PrintedId::from_digest(IdKind::ProjectPatient, key.version, tag.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_id() -> PrintedId {
        PrintedId::from_digest(IdKind::Sample, 1, &[0xA5; 32])
    }

    #[test]
    fn round_trips_with_forgiving_case_and_hyphens() {
        let id = any_id();
        let printed = id.to_string();
        assert_eq!(printed.len(), "GS1-XXXX-XXXX-XXXX-XXXX-C".len());
        assert_eq!(PrintedId::parse(IdKind::Sample, &printed).unwrap(), id);
        assert_eq!(
            PrintedId::parse(IdKind::Sample, &printed.to_lowercase()).unwrap(),
            id
        );
        let compact: String = printed
            .splitn(2, '-')
            .collect::<Vec<_>>()
            .join("-")
            .replacen('-', "#", 1)
            .replace('-', "")
            .replace('#', "-");
        assert_eq!(PrintedId::parse(IdKind::Sample, &compact).unwrap(), id);
        assert_eq!(
            PrintedId::parse(IdKind::ProjectSample, &printed),
            Err(IdParseError::Malformed),
            "kinds do not mix"
        );
    }

    #[test]
    fn known_check_characters() {
        // ISO/IEC 7064 MOD 37-2 worked example: "G123489654321" has check "Y".
        assert_eq!(check_char("G123489654321".bytes()), b'Y');
    }
}
