//! Unified consent documents: drafting, publishing and reading versions.

use super::problem::ApiError;
use super::state::AppState;
use crate::api::extract::Json;
use crate::app::documents::{self, VersionList, VersionView};
use crate::app::AppError;
use crate::auth::Caller;
use crate::consent::document::{DocumentContent, FieldProblem};
use crate::consent::{ChangeKind, DocumentFamily, DocumentVersionId, ScopeItem, ScopeItemKey};
use actix_web::{get, post, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(list_versions)
        .service(get_version)
        .service(create_draft)
        .service(update_draft)
        .service(publish_version);
}

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

/// The wire draft as domain content, naming every bad field. The texts
/// themselves are checked against the version in force by the action.
impl TryFrom<DraftRequest> for DocumentContent {
    type Error = AppError;

    fn try_from(req: DraftRequest) -> Result<Self, AppError> {
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
        AppError::unless_problems(problems)?;
        Ok(DocumentContent {
            title_ja: req.title_ja,
            title_en: req.title_en,
            body_ja: req.body_ja,
            body_en: req.body_en,
            items,
        })
    }
}

#[derive(Deserialize, IntoParams)]
pub struct VersionPath {
    /// `cancer` or `rare_disease`.
    pub family: String,
    pub number: u32,
}

impl VersionPath {
    /// The version named; an unknown family is a version that does not exist.
    fn id(&self) -> Result<DocumentVersionId, AppError> {
        Ok(DocumentVersionId::new(family(&self.family)?, self.number))
    }
}

#[derive(Deserialize, IntoParams)]
pub struct FamilyPath {
    /// `cancer` or `rare_disease`.
    pub family: String,
}

fn family(raw: &str) -> Result<DocumentFamily, AppError> {
    raw.parse().map_err(|_| AppError::NotFound)
}

/// Lists document versions. Drafts appear only for callers allowed to read
/// them.
#[utoipa::path(tag = "documents", responses((status = 200, body = VersionList)))]
#[get("/v1/documents")]
pub async fn list_versions(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<VersionList>, ApiError> {
    let list = state.run(move |ctx| documents::list(ctx, &caller)).await?;
    Ok(web::Json(list))
}

/// Reads one version with its full texts and DUO mapping. Published versions
/// are public; drafts need `consent_admin` or `auditor`.
#[utoipa::path(tag = "documents", params(VersionPath), responses((status = 200, body = VersionView)))]
#[get("/v1/documents/{family}/versions/{number}")]
pub async fn get_version(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<VersionPath>,
) -> Result<web::Json<VersionView>, ApiError> {
    let id = path.id()?;
    let version = state
        .run(move |ctx| documents::get(ctx, &caller, id))
        .await?;
    Ok(web::Json(version))
}

/// Creates the next version of a family as a draft. Every item declares how
/// it differs from the version in force.
#[utoipa::path(tag = "documents", params(FamilyPath), request_body = DraftRequest,
    responses((status = 201, body = VersionView)))]
#[post("/v1/documents/{family}/versions")]
pub async fn create_draft(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<FamilyPath>,
    body: Json<DraftRequest>,
) -> Result<HttpResponse, ApiError> {
    let family = family(&path.family)?;
    let content = DocumentContent::try_from(body.into_inner())?;
    let version = state
        .run(move |ctx| documents::create_draft(ctx, &caller, family, content))
        .await?;
    Ok(HttpResponse::Created().json(version))
}

/// Replaces a draft's content. Published versions are immutable (409).
#[utoipa::path(tag = "documents", params(VersionPath), request_body = DraftRequest,
    responses((status = 200, body = VersionView)))]
#[put("/v1/documents/{family}/versions/{number}")]
pub async fn update_draft(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<VersionPath>,
    body: Json<DraftRequest>,
) -> Result<web::Json<VersionView>, ApiError> {
    let id = path.id()?;
    let content = DocumentContent::try_from(body.into_inner())?;
    let version = state
        .run(move |ctx| documents::update_draft(ctx, &caller, id, content))
        .await?;
    Ok(web::Json(version))
}

/// Publishes a draft: it comes into force now and the previous version is
/// retired. From then on it never changes.
#[utoipa::path(tag = "documents", params(VersionPath),
    responses((status = 200, body = VersionView)))]
#[post("/v1/documents/{family}/versions/{number}/publish")]
pub async fn publish_version(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<VersionPath>,
) -> Result<web::Json<VersionView>, ApiError> {
    let id = path.id()?;
    let version = state
        .run(move |ctx| documents::publish(ctx, &caller, id))
        .await?;
    Ok(web::Json(version))
}
