//! The catalog of scope items and their GA4GH DUO mapping, read from
//! `policies/scope-items.toml` so the governance body can review it without
//! reading Rust.

use super::ids::ScopeItemKey;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The catalog shipped in the repository, compiled in so tests and the
/// `certs`/`token` commands never depend on the working directory.
pub const BUNDLED: &str = include_str!("../../policies/scope-items.toml");

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    pub label_en: String,
    pub label_ja: String,
    #[serde(default)]
    pub when_permitted: Vec<String>,
    #[serde(default)]
    pub when_denied: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    items: BTreeMap<String, CatalogItem>,
}

#[derive(Debug, Clone, Default)]
pub struct ItemCatalog {
    items: BTreeMap<ScopeItemKey, CatalogItem>,
}

impl ItemCatalog {
    pub fn from_toml(source: &str) -> Result<Self, String> {
        let file: CatalogFile = toml::from_str(source).map_err(|e| e.to_string())?;
        let mut items = BTreeMap::new();
        for (key, item) in file.items {
            let parsed = ScopeItemKey::parse(&key).map_err(|e| format!("item `{key}`: {e}"))?;
            for code in item.when_permitted.iter().chain(&item.when_denied) {
                if !is_duo_curie(code) {
                    return Err(format!(
                        "item `{key}`: `{code}` is not a DUO CURIE like DUO:0000042"
                    ));
                }
            }
            items.insert(parsed, item);
        }
        if items.is_empty() {
            return Err("the catalog lists no items".into());
        }
        Ok(Self { items })
    }

    pub fn bundled() -> Result<Self, String> {
        Self::from_toml(BUNDLED)
    }

    #[cfg(test)]
    pub fn builtin_for_tests() -> Self {
        Self::bundled().unwrap_or_default()
    }

    pub fn contains(&self, key: &ScopeItemKey) -> bool {
        self.items.contains_key(key)
    }

    pub fn get(&self, key: &ScopeItemKey) -> Option<&CatalogItem> {
        self.items.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &ScopeItemKey> {
        self.items.keys()
    }
}

fn is_duo_curie(code: &str) -> bool {
    code.strip_prefix("DUO:")
        .is_some_and(|n| n.len() == 7 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The IRI form of a DUO CURIE, as FHIR codings want a system URI.
pub const DUO_SYSTEM: &str = "http://purl.obolibrary.org/obo/duo.owl";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_catalog_maps_every_required_item() {
        let catalog = ItemCatalog::bundled().unwrap();
        for key in [
            "ccat_registration",
            "secondary_use_academic",
            "secondary_use_industry",
            "international_transfer",
            "public_database_linkage",
            "recontact",
            "secondary_findings_disclosure",
            "secondary_findings_relatives",
            "specimen_banking",
        ] {
            assert!(
                catalog.contains(&ScopeItemKey::parse(key).unwrap()),
                "{key}"
            );
        }
    }

    #[test]
    fn malformed_duo_codes_are_refused() {
        let err = ItemCatalog::from_toml(
            "[items.recontact]\nlabel_en='a'\nlabel_ja='b'\nwhen_permitted=['GRU']\n",
        )
        .unwrap_err();
        assert!(err.contains("DUO CURIE"));
    }
}
