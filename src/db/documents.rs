//! Storage of consent document versions.

use super::schema::{document_scope_items as items, document_versions as versions};
use super::DbConnection;
use crate::consent::document::{DocumentContent, PublishedVersion};
use crate::consent::{
    ChangeKind, DocumentFamily, DocumentStatus, DocumentVersion, DocumentVersionId, ScopeItem,
    ScopeItemKey, VersionHistory,
};
use crate::db_run;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;

#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone)]
#[diesel(table_name = versions)]
struct VersionRow {
    id: String,
    family: String,
    version_number: i32,
    status: String,
    title_ja: String,
    title_en: String,
    body_ja: String,
    body_en: String,
    content_hash: String,
    created_by: String,
    created_at: NaiveDateTime,
    effective_from: Option<NaiveDateTime>,
    effective_to: Option<NaiveDateTime>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = items)]
struct ItemRow {
    version_id: String,
    item_key: String,
    position: i32,
    change_kind: String,
    label_ja: String,
    label_en: String,
    text_ja: String,
    text_en: String,
}

/// A stored row that no longer parses into the domain. Only reachable by
/// editing the database by hand; surfaced as an internal error.
fn corrupt(what: &str) -> DieselError {
    DieselError::DeserializationError(format!("corrupt {what} in document storage").into())
}

pub(crate) fn utc(naive: NaiveDateTime) -> DateTime<Utc> {
    DateTime::from_naive_utc_and_offset(naive, Utc)
}

fn item_rows(id: DocumentVersionId, content: &DocumentContent) -> Vec<ItemRow> {
    content
        .items
        .iter()
        .enumerate()
        .map(|(position, i)| ItemRow {
            version_id: id.to_string(),
            item_key: i.key.to_string(),
            position: i32::try_from(position).unwrap_or(i32::MAX),
            change_kind: i.change.as_str().to_owned(),
            label_ja: i.label_ja.clone(),
            label_en: i.label_en.clone(),
            text_ja: i.text_ja.clone(),
            text_en: i.text_en.clone(),
        })
        .collect()
}

fn to_domain(row: VersionRow, item_rows: Vec<ItemRow>) -> Result<DocumentVersion, DieselError> {
    let family: DocumentFamily = row.family.parse().map_err(|_| corrupt("family"))?;
    let number = u32::try_from(row.version_number).map_err(|_| corrupt("version number"))?;
    let items = item_rows
        .into_iter()
        .map(|r| {
            Ok(ScopeItem {
                key: ScopeItemKey::parse(&r.item_key).map_err(|_| corrupt("item key"))?,
                change: ChangeKind::parse(&r.change_kind).ok_or_else(|| corrupt("change kind"))?,
                label_ja: r.label_ja,
                label_en: r.label_en,
                text_ja: r.text_ja,
                text_en: r.text_en,
            })
        })
        .collect::<Result<Vec<_>, DieselError>>()?;
    Ok(DocumentVersion {
        id: DocumentVersionId::new(family, number),
        status: DocumentStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?,
        content: DocumentContent {
            title_ja: row.title_ja,
            title_en: row.title_en,
            body_ja: row.body_ja,
            body_en: row.body_en,
            items,
        },
        content_hash: row.content_hash,
        effective_from: row.effective_from.map(utc),
        effective_to: row.effective_to.map(utc),
    })
}

pub fn insert_draft(
    conn: &mut DbConnection,
    id: DocumentVersionId,
    content: &DocumentContent,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let row = VersionRow {
        id: id.to_string(),
        family: id.family.as_str().to_owned(),
        version_number: i32::try_from(id.number).map_err(|_| corrupt("version number"))?,
        status: DocumentStatus::Draft.as_str().to_owned(),
        title_ja: content.title_ja.clone(),
        title_en: content.title_en.clone(),
        body_ja: content.body_ja.clone(),
        body_en: content.body_en.clone(),
        content_hash: content.content_hash(id),
        created_by: created_by.to_owned(),
        created_at: now.naive_utc(),
        effective_from: None,
        effective_to: None,
    };
    let item_rows = item_rows(id, content);
    db_run!(conn, c => {
        diesel::insert_into(versions::table).values(&row).execute(c)?;
        diesel::insert_into(items::table).values(&item_rows).execute(c)?;
        Ok(())
    })
}

/// Replaces a draft's content. The caller has checked it is still a draft;
/// the database triggers refuse it otherwise.
pub fn replace_draft(
    conn: &mut DbConnection,
    id: DocumentVersionId,
    content: &DocumentContent,
) -> Result<(), DieselError> {
    let key = id.to_string();
    let item_rows = item_rows(id, content);
    db_run!(conn, c => {
        diesel::update(versions::table.find(&key))
            .set((
                versions::title_ja.eq(&content.title_ja),
                versions::title_en.eq(&content.title_en),
                versions::body_ja.eq(&content.body_ja),
                versions::body_en.eq(&content.body_en),
                versions::content_hash.eq(content.content_hash(id)),
            ))
            .execute(c)?;
        diesel::delete(items::table.filter(items::version_id.eq(&key))).execute(c)?;
        diesel::insert_into(items::table).values(&item_rows).execute(c)?;
        Ok(())
    })
}

pub fn find(
    conn: &mut DbConnection,
    id: DocumentVersionId,
) -> Result<Option<DocumentVersion>, DieselError> {
    let key = id.to_string();
    let found: Option<(VersionRow, Vec<ItemRow>)> = db_run!(conn, c => {
        match versions::table.find(&key).select(VersionRow::as_select()).first(c).optional()? {
            None => None,
            Some(row) => {
                let rows = items::table
                    .filter(items::version_id.eq(&key))
                    .order(items::position)
                    .select(ItemRow::as_select())
                    .load(c)?;
                Some((row, rows))
            }
        }
    });
    found.map(|(row, rows)| to_domain(row, rows)).transpose()
}

/// Every version of a family, oldest first (drafts included).
pub fn list_family(
    conn: &mut DbConnection,
    family: DocumentFamily,
) -> Result<Vec<DocumentVersion>, DieselError> {
    let (rows, all_items): (Vec<VersionRow>, Vec<ItemRow>) = db_run!(conn, c => {
        let rows = versions::table
            .filter(versions::family.eq(family.as_str()))
            .order(versions::version_number)
            .select(VersionRow::as_select())
            .load(c)?;
        let all_items = items::table
            .inner_join(versions::table)
            .filter(versions::family.eq(family.as_str()))
            .order((items::version_id, items::position))
            .select(ItemRow::as_select())
            .load(c)?;
        (rows, all_items)
    });
    rows.into_iter()
        .map(|row| {
            let mine = all_items
                .iter()
                .filter(|i| i.version_id == row.id)
                .cloned()
                .collect();
            to_domain(row, mine)
        })
        .collect()
}

pub fn latest_number(
    conn: &mut DbConnection,
    family: DocumentFamily,
) -> Result<Option<u32>, DieselError> {
    let max: Option<i32> = db_run!(conn, c => versions::table
        .filter(versions::family.eq(family.as_str()))
        .select(diesel::dsl::max(versions::version_number))
        .first(c)?);
    Ok(max.and_then(|n| u32::try_from(n).ok()))
}

/// Makes `id` the version in force and retires its predecessor, in the
/// caller's transaction.
pub fn publish(
    conn: &mut DbConnection,
    id: DocumentVersionId,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let key = id.to_string();
    let now = now.naive_utc();
    db_run!(conn, c => {
        diesel::update(
            versions::table
                .filter(versions::family.eq(id.family.as_str()))
                .filter(versions::status.eq(DocumentStatus::Active.as_str())),
        )
        .set((versions::status.eq(DocumentStatus::Retired.as_str()), versions::effective_to.eq(now)))
        .execute(c)?;
        diesel::update(versions::table.find(&key))
            .set((versions::status.eq(DocumentStatus::Active.as_str()), versions::effective_from.eq(now)))
            .execute(c)?;
        Ok(())
    })
}

/// The published history of a family, for consent derivation.
pub fn history(
    conn: &mut DbConnection,
    family: DocumentFamily,
) -> Result<VersionHistory, DieselError> {
    let rows: Vec<(i32, Option<NaiveDateTime>, String, String)> = db_run!(conn, c => items::table
        .inner_join(versions::table)
        .filter(versions::family.eq(family.as_str()))
        .filter(versions::status.ne(DocumentStatus::Draft.as_str()))
        .select((versions::version_number, versions::effective_from, items::item_key, items::change_kind))
        .load(c)?);
    let mut by_number: std::collections::BTreeMap<i32, PublishedVersion> = Default::default();
    for (number, from, key, change) in rows {
        let from = from.ok_or_else(|| corrupt("effective_from"))?;
        let entry = by_number.entry(number).or_insert_with(|| PublishedVersion {
            number: u32::try_from(number).unwrap_or(0),
            effective_from: utc(from),
            changes: Default::default(),
        });
        entry.changes.insert(
            ScopeItemKey::parse(&key).map_err(|_| corrupt("item key"))?,
            ChangeKind::parse(&change).ok_or_else(|| corrupt("change kind"))?,
        );
    }
    Ok(VersionHistory::new(by_number.into_values().collect()))
}

/// The part of a published version that can still change.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    pub status: DocumentStatus,
    pub effective_from: Option<DateTime<Utc>>,
    pub effective_to: Option<DateTime<Utc>>,
}

/// Status and effective period of one version.
pub fn lifecycle(
    conn: &mut DbConnection,
    id: DocumentVersionId,
) -> Result<Option<Lifecycle>, DieselError> {
    let key = id.to_string();
    let row: Option<(String, Option<NaiveDateTime>, Option<NaiveDateTime>)> = db_run!(conn, c => versions::table
        .find(&key)
        .select((versions::status, versions::effective_from, versions::effective_to))
        .first(c)
        .optional()?);
    row.map(|(status, from, to)| {
        Ok(Lifecycle {
            status: DocumentStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            effective_from: from.map(utc),
            effective_to: to.map(utc),
        })
    })
    .transpose()
}
