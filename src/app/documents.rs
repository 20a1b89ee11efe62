//! Unified consent documents: drafting, publishing and reading versions.
//! Published versions are public; drafts belong to the governance body's
//! consent administrators (and auditors may read them).

use super::{AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::consent::document::{check_draft, DocumentContent};
use crate::consent::{
    ChangeKind, DocumentFamily, DocumentStatus, DocumentVersion, DocumentVersionId,
};
use crate::db::{documents as store, DbConnection};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct DuoMapping {
    pub when_permitted: Vec<String>,
    pub when_denied: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ItemView {
    pub key: String,
    #[schema(value_type = String)]
    pub change: ChangeKind,
    pub label_ja: String,
    pub label_en: String,
    pub text_ja: String,
    pub text_en: String,
    /// GA4GH DUO terms from `policies/scope-items.toml`.
    pub duo: Option<DuoMapping>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionView {
    /// e.g. `cancer-v2`; what consents name in `document_version`.
    pub id: String,
    #[schema(value_type = String)]
    pub family: DocumentFamily,
    pub number: u32,
    #[schema(value_type = String)]
    pub status: DocumentStatus,
    /// `sha256:<hex>` over the id and the full content.
    pub content_hash: String,
    /// Canonical URI, used as FHIR `Consent.policy.uri`.
    pub canonical_uri: String,
    pub effective_from: Option<DateTime<Utc>>,
    pub effective_to: Option<DateTime<Utc>>,
    pub title_ja: String,
    pub title_en: String,
    pub body_ja: String,
    pub body_en: String,
    pub items: Vec<ItemView>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionSummary {
    pub id: String,
    #[schema(value_type = String)]
    pub family: DocumentFamily,
    pub number: u32,
    #[schema(value_type = String)]
    pub status: DocumentStatus,
    pub content_hash: String,
    pub title_en: String,
    pub effective_from: Option<DateTime<Utc>>,
    pub effective_to: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionSummary>,
}

fn view(ctx: &Context, v: DocumentVersion) -> VersionView {
    let items = v
        .content
        .items
        .iter()
        .map(|i| ItemView {
            key: i.key.to_string(),
            change: i.change,
            label_ja: i.label_ja.clone(),
            label_en: i.label_en.clone(),
            text_ja: i.text_ja.clone(),
            text_en: i.text_en.clone(),
            duo: ctx.catalog.get(&i.key).map(|c| DuoMapping {
                when_permitted: c.when_permitted.clone(),
                when_denied: c.when_denied.clone(),
            }),
        })
        .collect();
    VersionView {
        id: v.id.to_string(),
        family: v.id.family,
        number: v.id.number,
        status: v.status,
        content_hash: v.content_hash,
        canonical_uri: ctx.policy_uri(v.id),
        effective_from: v.effective_from,
        effective_to: v.effective_to,
        title_ja: v.content.title_ja,
        title_en: v.content.title_en,
        body_ja: v.content.body_ja,
        body_en: v.content.body_en,
        items,
    }
}

/// The version a new draft is declared against: the one in force.
fn version_in_force(
    conn: &mut DbConnection,
    family: DocumentFamily,
) -> Result<Option<DocumentVersion>, AppError> {
    Ok(store::list_family(conn, family)?
        .into_iter()
        .find(|v| v.status == DocumentStatus::Active))
}

/// The version of `family` in force now, if one was published.
pub fn version_in_force_id(
    ctx: &Context,
    family: DocumentFamily,
) -> Result<Option<DocumentVersionId>, AppError> {
    ctx.read(|conn| Ok(version_in_force(conn, family)?.map(|v| v.id)))
}

/// Whether the caller may read `version`: published ones anyone, drafts
/// those policy lets read drafts.
fn may_read(ctx: &Context, caller: &Caller, version: &DocumentVersion) -> bool {
    let id = version.id.to_string();
    let action = if version.status == DocumentStatus::Draft {
        Action::DocumentReadDraft
    } else {
        Action::DocumentReadPublished
    };
    ctx.policy.is_allowed(
        caller,
        action,
        &Resource::Document {
            id: &id,
            status: version.status.as_str(),
        },
    )
}

fn authorize_draft(
    ctx: &Context,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<(), AppError> {
    ctx.authorize(
        caller,
        action,
        &Resource::Document {
            id,
            status: "draft",
        },
    )
}

/// Every version the caller may read, by family and number.
pub fn list(ctx: &Context, caller: &Caller) -> Result<VersionList, AppError> {
    let all = ctx.read(|conn| {
        let mut all = Vec::new();
        for family in DocumentFamily::ALL {
            all.extend(store::list_family(conn, family)?);
        }
        Ok(all)
    })?;
    let versions = all
        .into_iter()
        .filter(|v| may_read(ctx, caller, v))
        .map(|v| VersionSummary {
            id: v.id.to_string(),
            family: v.id.family,
            number: v.id.number,
            status: v.status,
            content_hash: v.content_hash,
            title_en: v.content.title_en,
            effective_from: v.effective_from,
            effective_to: v.effective_to,
        })
        .collect();
    Ok(VersionList { versions })
}

/// One version with its full texts and DUO mapping. A draft is invisible
/// (`NotFound`) to those who may not read drafts.
pub fn get(ctx: &Context, caller: &Caller, id: DocumentVersionId) -> Result<VersionView, AppError> {
    let version = ctx
        .read(|conn| Ok(store::find(conn, id)?))?
        .filter(|v| may_read(ctx, caller, v))
        .ok_or(AppError::NotFound)?;
    Ok(view(ctx, version))
}

/// Creates the next version of a family as a draft. Every item declares how
/// it differs from the version in force.
pub fn create_draft(
    ctx: &Context,
    caller: &Caller,
    family: DocumentFamily,
    content: DocumentContent,
) -> Result<VersionView, AppError> {
    authorize_draft(ctx, caller, Action::DocumentCreate, family.as_str())?;
    let created_by = super::gates::principal(caller)?.subject.clone();
    let now = ctx.now();
    let version = ctx.write(|conn| {
        let existing = store::list_family(conn, family)?;
        if let Some(draft) = existing.iter().find(|v| v.status == DocumentStatus::Draft) {
            return Err(AppError::VersionConflict(format!(
                "{} is still a draft; edit or publish it first",
                draft.id
            )));
        }
        let previous = existing.iter().find(|v| v.status == DocumentStatus::Active);
        check_draft(&content, previous.map(|p| &p.content), &ctx.catalog)
            .map_err(AppError::Validation)?;
        let number = existing.iter().map(|v| v.id.number).max().unwrap_or(0) + 1;
        let id = DocumentVersionId::new(family, number);
        store::insert_draft(conn, id, &content, &created_by, now).map_err(
            |e| match AppError::from(e) {
                AppError::UniqueViolation(_) => {
                    AppError::VersionConflict(format!("{id} was created concurrently"))
                }
                other => other,
            },
        )?;
        store::find(conn, id)?.ok_or_else(|| AppError::internal("draft vanished"))
    })?;
    tracing::info!(version = %version.id, "document draft created");
    Ok(view(ctx, version))
}

/// Replaces a draft's content. Published versions are immutable.
pub fn update_draft(
    ctx: &Context,
    caller: &Caller,
    id: DocumentVersionId,
    content: DocumentContent,
) -> Result<VersionView, AppError> {
    authorize_draft(ctx, caller, Action::DocumentUpdate, &id.to_string())?;
    let version = ctx.write(|conn| {
        let current = store::find(conn, id)?.ok_or(AppError::NotFound)?;
        if current.status != DocumentStatus::Draft {
            return Err(AppError::VersionImmutable);
        }
        let previous = version_in_force(conn, id.family)?;
        check_draft(
            &content,
            previous.as_ref().map(|p| &p.content),
            &ctx.catalog,
        )
        .map_err(AppError::Validation)?;
        store::replace_draft(conn, id, &content)?;
        store::find(conn, id)?.ok_or_else(|| AppError::internal("draft vanished"))
    })?;
    Ok(view(ctx, version))
}

/// Publishes a draft: it comes into force now and the previous version is
/// retired. From then on it never changes.
pub fn publish(
    ctx: &Context,
    caller: &Caller,
    id: DocumentVersionId,
) -> Result<VersionView, AppError> {
    authorize_draft(ctx, caller, Action::DocumentPublish, &id.to_string())?;
    let now = ctx.now();
    let version = ctx.write(|conn| {
        let draft = store::find(conn, id)?.ok_or(AppError::NotFound)?;
        if draft.status != DocumentStatus::Draft {
            return Err(AppError::VersionImmutable);
        }
        // The version in force may have changed since the draft was
        // written; the declarations must hold against it.
        let previous = version_in_force(conn, id.family)?;
        check_draft(
            &draft.content,
            previous.as_ref().map(|p| &p.content),
            &ctx.catalog,
        )
        .map_err(AppError::Validation)?;
        store::publish(conn, id, now)?;
        store::find(conn, id)?.ok_or_else(|| AppError::internal("version vanished"))
    })?;
    tracing::info!(version = %version.id, content_hash = %version.content_hash, "document version published");
    Ok(view(ctx, version))
}
