//! Versioned unified consent documents.
//!
//! A version is drafted, published (active) and finally retired. Once
//! published it is immutable. Every version declares, per scope item, how it
//! differs from its predecessor; that declaration is what decides whether an
//! existing consent carries forward or the patient must be asked again.

use super::ids::{DocumentVersionId, ScopeItemKey};
use super::item_catalog::ItemCatalog;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    Draft,
    Active,
    Retired,
}

impl DocumentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Draft => "draft",
            DocumentStatus::Active => "active",
            DocumentStatus::Retired => "retired",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "draft" => Some(Self::Draft),
            "active" => Some(Self::Active),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// How a scope item in this version differs from the previous version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Identical wording: consent carries forward.
    Unchanged,
    /// Wording changed without changing what the patient agrees to (typos,
    /// clarified phrasing): consent carries forward, no re-consent.
    Editorial,
    /// What the patient agrees to changed: re-consent is required.
    Material,
    /// New item: nobody has been asked yet.
    Added,
    /// The item no longer exists in this version.
    Removed,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 5] = [
        ChangeKind::Unchanged,
        ChangeKind::Editorial,
        ChangeKind::Material,
        ChangeKind::Added,
        ChangeKind::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Unchanged => "unchanged",
            ChangeKind::Editorial => "editorial",
            ChangeKind::Material => "material",
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }
    /// Whether a consent given before this change still holds after it.
    pub fn requires_reconsent(self) -> bool {
        matches!(self, ChangeKind::Material | ChangeKind::Added)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeItem {
    pub key: ScopeItemKey,
    pub change: ChangeKind,
    pub label_ja: String,
    pub label_en: String,
    pub text_ja: String,
    pub text_en: String,
}

impl ScopeItem {
    fn same_wording(&self, other: &ScopeItem) -> bool {
        self.label_ja == other.label_ja
            && self.label_en == other.label_en
            && self.text_ja == other.text_ja
            && self.text_en == other.text_en
    }
}

/// The content of a version: everything its hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentContent {
    pub title_ja: String,
    pub title_en: String,
    pub body_ja: String,
    pub body_en: String,
    /// Items in display order, including `removed` declarations.
    pub items: Vec<ScopeItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentVersion {
    pub id: DocumentVersionId,
    pub status: DocumentStatus,
    pub content: DocumentContent,
    pub content_hash: String,
    pub effective_from: Option<DateTime<Utc>>,
    pub effective_to: Option<DateTime<Utc>>,
}

impl DocumentVersion {
    /// Items a patient decides on in this version (everything not removed).
    pub fn active_items(&self) -> impl Iterator<Item = &ScopeItem> {
        self.content.active_items()
    }
}

impl DocumentContent {
    pub fn active_items(&self) -> impl Iterator<Item = &ScopeItem> {
        self.items
            .iter()
            .filter(|i| i.change != ChangeKind::Removed)
    }

    /// `sha256:<hex>` over a canonical serialization of id and content. The
    /// id is included so two families can never share a hash.
    pub fn content_hash(&self, id: DocumentVersionId) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            id: String,
            content: &'a DocumentContent,
        }
        // Serializing a struct of strings and enums cannot fail; fall back to
        // hashing the debug form rather than panicking if it ever did.
        let bytes = serde_json::to_vec(&Canonical {
            id: id.to_string(),
            content: self,
        })
        .unwrap_or_else(|_| format!("{id}{self:?}").into_bytes());
        format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
        )
    }
}

/// One problem with submitted content, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The longest consent text, in characters.
pub const MAX_TEXT: usize = 100_000;

/// Consent texts are plain text, never markup. Control characters other
/// than newline and tab are refused so nothing can smuggle terminal or
/// rendering tricks into a patient-facing screen (gICS stored XSS in consent
/// text; we store no markup to begin with).
fn check_text(field: String, value: &str, required: bool, out: &mut Vec<FieldProblem>) {
    if required && value.trim().is_empty() {
        out.push(FieldProblem::new(field, "must not be empty"));
    } else if value.chars().count() > MAX_TEXT {
        out.push(FieldProblem::new(field, "is longer than 100000 characters"));
    } else if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        out.push(FieldProblem::new(
            field,
            "contains control characters; consent texts are plain text",
        ));
    }
}

/// Checks a draft against its predecessor and the item catalog.
///
/// The declaration rules:
/// - the first version of a family declares every item `added`;
/// - later versions declare every item of the predecessor (`unchanged`,
///   `editorial`, `material` or `removed`) and mark new keys `added`;
/// - `unchanged` must really be byte-identical wording, so a material change
///   cannot slip through disguised as "unchanged". (Editorial versus material
///   is a human judgement; the committee owns it.)
pub fn check_draft(
    content: &DocumentContent,
    previous: Option<&DocumentContent>,
    catalog: &ItemCatalog,
) -> Result<(), Vec<FieldProblem>> {
    let mut problems = Vec::new();
    check_text("title_ja".into(), &content.title_ja, true, &mut problems);
    check_text("title_en".into(), &content.title_en, true, &mut problems);
    check_text("body_ja".into(), &content.body_ja, true, &mut problems);
    check_text("body_en".into(), &content.body_en, true, &mut problems);

    if content.active_items().next().is_none() {
        problems.push(FieldProblem::new(
            "items",
            "a version needs at least one scope item",
        ));
    }

    let previous_items: BTreeMap<&ScopeItemKey, &ScopeItem> = previous
        .map(|p| p.active_items().map(|i| (&i.key, i)).collect())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    for (index, item) in content.items.iter().enumerate() {
        let field = |name: &str| format!("items[{index}].{name}");
        if !seen.insert(&item.key) {
            problems.push(FieldProblem::new(field("key"), "duplicate scope item key"));
            continue;
        }
        if !catalog.contains(&item.key) {
            problems.push(FieldProblem::new(
                field("key"),
                format!(
                    "`{}` has no DUO mapping in policies/scope-items.toml",
                    item.key
                ),
            ));
        }
        let removed = item.change == ChangeKind::Removed;
        for (name, value) in [
            ("label_ja", &item.label_ja),
            ("label_en", &item.label_en),
            ("text_ja", &item.text_ja),
            ("text_en", &item.text_en),
        ] {
            check_text(field(name), value, !removed, &mut problems);
        }
        match (previous_items.get(&item.key), item.change) {
            (None, ChangeKind::Added) => {}
            (None, _) => problems.push(FieldProblem::new(
                field("change"),
                "an item that the previous version does not have must be declared `added`",
            )),
            (Some(_), ChangeKind::Added) => problems.push(FieldProblem::new(
                field("change"),
                "the previous version already has this item; declare unchanged, editorial, material or removed",
            )),
            (Some(before), ChangeKind::Unchanged) if !before.same_wording(item) => {
                problems.push(FieldProblem::new(
                    field("change"),
                    "declared `unchanged` but the wording differs from the previous version",
                ))
            }
            (Some(_), _) => {}
        }
    }
    for key in previous_items.keys() {
        if !seen.contains(key) {
            problems.push(FieldProblem::new(
                "items",
                format!("item `{key}` of the previous version is not declared; declare it unchanged, editorial, material or removed"),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// What derivation needs to know about one published version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedVersion {
    pub number: u32,
    pub effective_from: DateTime<Utc>,
    /// Change declared for each key mentioned by this version.
    pub changes: BTreeMap<ScopeItemKey, ChangeKind>,
}

/// The published versions of one family, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionHistory {
    versions: Vec<PublishedVersion>,
}

impl VersionHistory {
    pub fn new(mut versions: Vec<PublishedVersion>) -> Self {
        versions.sort_by_key(|v| v.number);
        Self { versions }
    }

    /// The version in force at `at`: the newest one published by then.
    pub fn in_force_at(&self, at: DateTime<Utc>) -> Option<&PublishedVersion> {
        self.versions
            .iter()
            .filter(|v| v.effective_from <= at)
            .max_by_key(|v| v.number)
    }

    /// How many published versions the history holds.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    pub fn get(&self, number: u32) -> Option<&PublishedVersion> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// The first version after `signed_on`, up to and including `current`,
    /// whose change to `key` means a consent given on `signed_on` no longer
    /// holds. `None` means the consent carries forward.
    pub fn reconsent_trigger(
        &self,
        key: &ScopeItemKey,
        signed_on: u32,
        current: u32,
    ) -> Option<(u32, ChangeKind)> {
        self.versions
            .iter()
            .filter(|v| v.number > signed_on && v.number <= current)
            .find_map(|v| {
                // An item a version does not mention was dropped by it.
                let change = v.changes.get(key).copied().unwrap_or(ChangeKind::Removed);
                match change {
                    ChangeKind::Unchanged | ChangeKind::Editorial => None,
                    other => Some((v.number, other)),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ids::DocumentFamily;

    fn item(key: &str, change: ChangeKind, text: &str) -> ScopeItem {
        ScopeItem {
            key: ScopeItemKey::parse(key).unwrap(),
            change,
            label_ja: format!("{key} ja"),
            label_en: format!("{key} en"),
            text_ja: text.into(),
            text_en: text.into(),
        }
    }

    fn content(items: Vec<ScopeItem>) -> DocumentContent {
        DocumentContent {
            title_ja: "がん".into(),
            title_en: "Cancer".into(),
            body_ja: "本文".into(),
            body_en: "Body".into(),
            items,
        }
    }

    #[test]
    fn first_version_must_declare_everything_added() {
        let catalog = ItemCatalog::builtin_for_tests();
        let ok = content(vec![item("recontact", ChangeKind::Added, "t")]);
        assert!(check_draft(&ok, None, &catalog).is_ok());
        let bad = content(vec![item("recontact", ChangeKind::Unchanged, "t")]);
        let problems = check_draft(&bad, None, &catalog).unwrap_err();
        assert_eq!(problems[0].field, "items[0].change");
    }

    #[test]
    fn unchanged_must_be_identical_and_every_old_item_declared() {
        let catalog = ItemCatalog::builtin_for_tests();
        let v1 = content(vec![
            item("recontact", ChangeKind::Added, "a"),
            item("specimen_banking", ChangeKind::Added, "b"),
        ]);
        let disguised = content(vec![
            item("recontact", ChangeKind::Unchanged, "a changed"),
            item("specimen_banking", ChangeKind::Unchanged, "b"),
        ]);
        let problems = check_draft(&disguised, Some(&v1), &catalog).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "items[0].change");

        let forgotten = content(vec![item("recontact", ChangeKind::Editorial, "a.")]);
        let problems = check_draft(&forgotten, Some(&v1), &catalog).unwrap_err();
        assert!(problems[0].message.contains("specimen_banking"));
    }

    #[test]
    fn unmapped_keys_and_markup_tricks_are_refused() {
        let catalog = ItemCatalog::builtin_for_tests();
        let bad = content(vec![item("made_up_item", ChangeKind::Added, "x\u{1b}[2J")]);
        let problems = check_draft(&bad, None, &catalog).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"items[0].key"));
        assert!(fields.contains(&"items[0].text_ja"));
    }

    #[test]
    fn hash_covers_the_id_and_every_word() {
        let c = content(vec![item("recontact", ChangeKind::Added, "a")]);
        let v1 = DocumentVersionId::new(DocumentFamily::Cancer, 1);
        let rd1 = DocumentVersionId::new(DocumentFamily::RareDisease, 1);
        assert_ne!(c.content_hash(v1), c.content_hash(rd1));
        let mut edited = c.clone();
        edited.items[0].text_en.push('.');
        assert_ne!(c.content_hash(v1), edited.content_hash(v1));
        assert_eq!(c.content_hash(v1), c.clone().content_hash(v1));
        assert!(c.content_hash(v1).starts_with("sha256:"));
    }

    #[test]
    fn reconsent_trigger_looks_at_every_version_in_between() {
        let key = ScopeItemKey::parse("recontact").unwrap();
        let at = |h: i64| DateTime::<Utc>::from_timestamp(h * 3600, 0).unwrap();
        let version = |number, from, change| PublishedVersion {
            number,
            effective_from: at(from),
            changes: [(key.clone(), change)].into_iter().collect(),
        };
        let history = VersionHistory::new(vec![
            version(3, 30, ChangeKind::Editorial),
            version(1, 10, ChangeKind::Added),
            version(2, 20, ChangeKind::Material),
        ]);
        assert_eq!(history.in_force_at(at(25)).unwrap().number, 2);
        assert!(history.in_force_at(at(5)).is_none());
        assert_eq!(
            history.reconsent_trigger(&key, 1, 3),
            Some((2, ChangeKind::Material))
        );
        assert_eq!(history.reconsent_trigger(&key, 2, 3), None);
        assert_eq!(history.reconsent_trigger(&key, 1, 1), None);
    }
}
