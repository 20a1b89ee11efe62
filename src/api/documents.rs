//! Unified consent documents: drafting, publishing and reading versions.

use super::state::AppState;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::consent::document::{check_draft, DocumentContent, FieldProblem};
use crate::consent::{
    ChangeKind, DocumentFamily, DocumentStatus, DocumentVersion, DocumentVersionId, ScopeItem,
    ScopeItemKey,
};
use crate::db::{documents as store, write_transaction};
use crate::error::{ApiError, Problem};
use actix_web::{get, post, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DraftItem {
    /// Stable key, e.g. `secondary_use_industry`. Must be listed in
    /// `policies/scope-items.toml`.
    pub key: String,
    /// `unchanged`, `editorial`, `material`, `added` or `removed`, relative
    /// to the version in force.
    pub change: String,
    #[serde(default)]
    pub label_ja: String,
    #[serde(default)]
    pub label_en: String,
    #[serde(default)]
    pub text_ja: String,
    #[serde(default)]
    pub text_en: String,
}

/// A draft version. Texts are plain text (no markup).
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DraftRequest {
    pub title_ja: String,
    pub title_en: String,
    pub body_ja: String,
    pub body_en: String,
    pub items: Vec<DraftItem>,
}

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

#[derive(Deserialize, IntoParams)]
pub struct VersionPath {
    /// `cancer` or `rare_disease`.
    pub family: String,
    pub number: u32,
}

#[derive(Deserialize, IntoParams)]
pub struct FamilyPath {
    /// `cancer` or `rare_disease`.
    pub family: String,
}

fn view(state: &AppState, v: DocumentVersion) -> VersionView {
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
            duo: state.catalog.get(&i.key).map(|c| DuoMapping {
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
        canonical_uri: state.policy_uri(v.id),
        effective_from: v.effective_from,
        effective_to: v.effective_to,
        title_ja: v.content.title_ja,
        title_en: v.content.title_en,
        body_ja: v.content.body_ja,
        body_en: v.content.body_en,
        items,
    }
}

fn parse_family(raw: &str) -> Result<DocumentFamily, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// Turns the wire draft into domain content, naming every bad field.
fn parse_draft(req: DraftRequest) -> Result<DocumentContent, ApiError> {
    let mut problems = Vec::new();
    let mut items = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.into_iter().enumerate() {
        let key = ScopeItemKey::parse(&item.key).map_err(|e| {
            problems.push(FieldProblem::new(format!("items[{i}].key"), e.to_string()))
        });
        let change = ChangeKind::parse(&item.change).ok_or_else(|| {
            problems.push(FieldProblem::new(
                format!("items[{i}].change"),
                "must be unchanged, editorial, material, added or removed",
            ))
        });
        if let (Ok(key), Ok(change)) = (key, change) {
            items.push(ScopeItem {
                key,
                change,
                label_ja: item.label_ja,
                label_en: item.label_en,
                text_ja: item.text_ja,
                text_en: item.text_en,
            });
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    Ok(DocumentContent {
        title_ja: req.title_ja,
        title_en: req.title_en,
        body_ja: req.body_ja,
        body_en: req.body_en,
        items,
    })
}

/// The version a new draft is declared against: the one in force.
fn version_in_force(
    conn: &mut crate::db::DbConnection,
    family: DocumentFamily,
) -> Result<Option<DocumentVersion>, ApiError> {
    Ok(store::list_family(conn, family)?
        .into_iter()
        .find(|v| v.status == DocumentStatus::Active))
}

/// Lists document versions. Drafts appear only for callers allowed to read
/// them.
#[utoipa::path(tag = "documents", responses((status = 200, body = VersionList)))]
#[get("/v1/documents")]
pub async fn list_versions(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<VersionList>, ApiError> {
    let all = state
        .db(|conn| {
            let mut all = Vec::new();
            for family in DocumentFamily::ALL {
                all.extend(store::list_family(conn, family)?);
            }
            Ok(all)
        })
        .await?;
    let versions = all
        .into_iter()
        .filter(|v| {
            let id = v.id.to_string();
            let resource = Resource::Document {
                id: &id,
                status: v.status.as_str(),
            };
            let action = if v.status == DocumentStatus::Draft {
                Action::DocumentReadDraft
            } else {
                Action::DocumentReadPublished
            };
            state.policy.is_allowed(&caller, action, &resource)
        })
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
    Ok(web::Json(VersionList { versions }))
}

/// Reads one version with its full texts and DUO mapping. Published versions
/// are public; drafts need `consent_admin` or `auditor`.
#[utoipa::path(tag = "documents", params(VersionPath), responses((status = 200, body = VersionView), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/documents/{family}/versions/{number}")]
pub async fn get_version(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<VersionPath>,
) -> Result<web::Json<VersionView>, ApiError> {
    let id = DocumentVersionId::new(parse_family(&path.family)?, path.number);
    let version = state
        .db(move |conn| Ok(store::find(conn, id)?))
        .await?
        .ok_or(ApiError::NotFound)?;
    let action = if version.status == DocumentStatus::Draft {
        Action::DocumentReadDraft
    } else {
        Action::DocumentReadPublished
    };
    let id_text = id.to_string();
    if !state.policy.is_allowed(
        &caller,
        action,
        &Resource::Document {
            id: &id_text,
            status: version.status.as_str(),
        },
    ) {
        // A draft is invisible to those who may not read drafts.
        return Err(ApiError::NotFound);
    }
    Ok(web::Json(view(&state, version)))
}

/// Creates the next version of a family as a draft. Every item declares how
/// it differs from the version in force.
#[utoipa::path(tag = "documents", params(FamilyPath), request_body = DraftRequest,
    responses((status = 201, body = VersionView), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/documents/{family}/versions")]
pub async fn create_draft(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<FamilyPath>,
    body: web::Json<DraftRequest>,
) -> Result<HttpResponse, ApiError> {
    let family = parse_family(&path.family)?;
    state.authorize(
        &caller,
        Action::DocumentCreate,
        &Resource::Document {
            id: family.as_str(),
            status: "draft",
        },
    )?;
    let content = parse_draft(body.into_inner())?;
    let created_by = match &caller {
        Caller::User(p) => p.subject.clone(),
        Caller::Anonymous => return Err(ApiError::MissingToken),
    };
    let now = state.now();
    let state2 = state.clone();
    let version = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let existing = store::list_family(conn, family)?;
                if let Some(draft) = existing.iter().find(|v| v.status == DocumentStatus::Draft) {
                    return Err(ApiError::VersionConflict(format!(
                        "{} is still a draft; edit or publish it first",
                        draft.id
                    )));
                }
                let previous = existing.iter().find(|v| v.status == DocumentStatus::Active);
                check_draft(&content, previous.map(|p| &p.content), &state2.catalog)
                    .map_err(ApiError::Validation)?;
                let number = existing.iter().map(|v| v.id.number).max().unwrap_or(0) + 1;
                let id = DocumentVersionId::new(family, number);
                store::insert_draft(conn, id, &content, &created_by, now).map_err(|e| match e {
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    ) => ApiError::VersionConflict(format!("{id} was created concurrently")),
                    other => other.into(),
                })?;
                store::find(conn, id)?.ok_or_else(|| ApiError::internal("draft vanished"))
            })
        })
        .await?;
    tracing::info!(version = %version.id, "document draft created");
    Ok(HttpResponse::Created().json(view(&state, version)))
}

/// Replaces a draft's content. Published versions are immutable (409).
#[utoipa::path(tag = "documents", params(VersionPath), request_body = DraftRequest,
    responses((status = 200, body = VersionView), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[put("/v1/documents/{family}/versions/{number}")]
pub async fn update_draft(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<VersionPath>,
    body: web::Json<DraftRequest>,
) -> Result<web::Json<VersionView>, ApiError> {
    let id = DocumentVersionId::new(parse_family(&path.family)?, path.number);
    let id_text = id.to_string();
    state.authorize(
        &caller,
        Action::DocumentUpdate,
        &Resource::Document {
            id: &id_text,
            status: "draft",
        },
    )?;
    let content = parse_draft(body.into_inner())?;
    let state2 = state.clone();
    let version = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let current = store::find(conn, id)?.ok_or(ApiError::NotFound)?;
                if current.status != DocumentStatus::Draft {
                    return Err(ApiError::VersionImmutable);
                }
                let previous = version_in_force(conn, id.family)?;
                check_draft(
                    &content,
                    previous.as_ref().map(|p| &p.content),
                    &state2.catalog,
                )
                .map_err(ApiError::Validation)?;
                store::replace_draft(conn, id, &content)?;
                store::find(conn, id)?.ok_or_else(|| ApiError::internal("draft vanished"))
            })
        })
        .await?;
    Ok(web::Json(view(&state, version)))
}

/// Publishes a draft: it comes into force now and the previous version is
/// retired. From then on it never changes.
#[utoipa::path(tag = "documents", params(VersionPath),
    responses((status = 200, body = VersionView), (status = 409, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/documents/{family}/versions/{number}/publish")]
pub async fn publish_version(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<VersionPath>,
) -> Result<web::Json<VersionView>, ApiError> {
    let id = DocumentVersionId::new(parse_family(&path.family)?, path.number);
    let id_text = id.to_string();
    state.authorize(
        &caller,
        Action::DocumentPublish,
        &Resource::Document {
            id: &id_text,
            status: "draft",
        },
    )?;
    let now = state.now();
    let state2 = state.clone();
    let version = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let draft = store::find(conn, id)?.ok_or(ApiError::NotFound)?;
                if draft.status != DocumentStatus::Draft {
                    return Err(ApiError::VersionImmutable);
                }
                // The version in force may have changed since the draft was
                // written; the declarations must hold against it.
                let previous = version_in_force(conn, id.family)?;
                check_draft(
                    &draft.content,
                    previous.as_ref().map(|p| &p.content),
                    &state2.catalog,
                )
                .map_err(ApiError::Validation)?;
                store::publish(conn, id, now)?;
                store::find(conn, id)?.ok_or_else(|| ApiError::internal("version vanished"))
            })
        })
        .await?;
    tracing::info!(version = %version.id, content_hash = %version.content_hash, "document version published");
    Ok(web::Json(view(&state, version)))
}
