//! Parsed identifiers. Their constructors are the only way in, so code that
//! holds one never has to re-check it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A family of unified consent documents (統一同意説明文書).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentFamily {
    Cancer,
    RareDisease,
}

impl DocumentFamily {
    pub const ALL: [DocumentFamily; 2] = [DocumentFamily::Cancer, DocumentFamily::RareDisease];

    pub fn as_str(self) -> &'static str {
        match self {
            DocumentFamily::Cancer => "cancer",
            DocumentFamily::RareDisease => "rare_disease",
        }
    }
}

impl fmt::Display for DocumentFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("unknown document family `{0}`; expected `cancer` or `rare_disease`")]
    UnknownFamily(String),
    #[error("document version must look like `cancer-v3` or `rare_disease-v1`")]
    MalformedVersionId,
    #[error("scope item keys are 2-64 characters of a-z, 0-9 and `_`, starting with a letter")]
    MalformedItemKey,
}

impl FromStr for DocumentFamily {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cancer" => Ok(DocumentFamily::Cancer),
            "rare_disease" => Ok(DocumentFamily::RareDisease),
            other => Err(IdError::UnknownFamily(other.chars().take(40).collect())),
        }
    }
}

/// `cancer-v3`: a family and a version number, the stable public name of one
/// published text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentVersionId {
    pub family: DocumentFamily,
    pub number: u32,
}

impl DocumentVersionId {
    pub fn new(family: DocumentFamily, number: u32) -> Self {
        Self { family, number }
    }
}

impl fmt::Display for DocumentVersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-v{}", self.family, self.number)
    }
}

impl FromStr for DocumentVersionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (family, number) = s.rsplit_once("-v").ok_or(IdError::MalformedVersionId)?;
        let family = family.parse()?;
        // Canonical decimal only: `cancer-v01` and `cancer-v+1` would otherwise
        // alias `cancer-v1`.
        if number.is_empty()
            || number.starts_with('0')
            || !number.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(IdError::MalformedVersionId);
        }
        let number: u32 = number.parse().map_err(|_| IdError::MalformedVersionId)?;
        Ok(Self { family, number })
    }
}

impl Serialize for DocumentVersionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DocumentVersionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// The stable key of one scope item (同意の範囲の項目), e.g.
/// `secondary_use_industry`. Keys survive across document versions; that is
/// what lets a consent carry forward.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ScopeItemKey(String);

impl ScopeItemKey {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let ok = (2..=64).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::MalformedItemKey)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScopeItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ScopeItemKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ScopeItemKey::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_round_trip_and_reject_lookalikes() {
        let id: DocumentVersionId = "rare_disease-v12".parse().unwrap();
        assert_eq!(id, DocumentVersionId::new(DocumentFamily::RareDisease, 12));
        assert_eq!(id.to_string(), "rare_disease-v12");
        for bad in [
            "cancer-v0",
            "cancer-v01",
            "cancer-v",
            "cancer",
            "lung-v1",
            "cancer-v+1",
            "cancer-v1x",
        ] {
            assert!(
                bad.parse::<DocumentVersionId>().is_err(),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn item_keys_are_strict() {
        assert!(ScopeItemKey::parse("secondary_use_industry").is_ok());
        for bad in [
            "",
            "a",
            "Secondary",
            "1abc",
            "with-dash",
            "sp ace",
            &"x".repeat(65),
        ] {
            assert!(ScopeItemKey::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
