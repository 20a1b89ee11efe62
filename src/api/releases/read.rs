//! What members, the governance body and auditors read back of releases.

use super::{ApplicationPath, PageQuery, ReleasePath};
use crate::api::problem::ApiError;
use crate::api::state::AppState;
use crate::app::gates::principal;
use crate::app::releases::{self, ManifestPage, RecallList, ReleaseList, ReleaseRecord};
use crate::auth::Caller;
use actix_web::{get, web};

/// Every release made under an application, oldest first, each with its
/// provenance (members, the governance body and auditors). Handles are
/// never kept, so none is listed.
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = ReleaseList)))]
#[get("/v1/applications/{id}/releases")]
pub async fn releases_of_application(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<ReleaseList>, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let list = state
        .run(move |ctx| releases::releases_of(ctx, &caller, &id))
        .await?;
    Ok(web::Json(list))
}

/// One release and what it rested on (members, the governance body and
/// auditors). Anyone who may not read its application gets 404, as for a
/// release that does not exist.
#[utoipa::path(tag = "data-access", params(ReleasePath),
    responses((status = 200, body = ReleaseRecord)))]
#[get("/v1/releases/{id}")]
pub async fn get_release(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ReleasePath>,
) -> Result<web::Json<ReleaseRecord>, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let record = state
        .run(move |ctx| releases::release(ctx, &caller, &id))
        .await?;
    Ok(web::Json(record))
}

/// Every include and exclude decision of a release, paged (members), in
/// the project's own keyed order (decision 0030).
#[utoipa::path(tag = "data-access", params(ReleasePath, PageQuery),
    responses((status = 200, body = ManifestPage)))]
#[get("/v1/releases/{id}/manifest")]
pub async fn manifest(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ReleasePath>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<ManifestPage>, ApiError> {
    principal(&caller)?;
    let page = query.page()?;
    let id = path.into_inner().id;
    let manifest = state
        .run(move |ctx| releases::manifest(ctx, &caller, &id, page))
        .await?;
    Ok(web::Json(manifest))
}

/// Recall notices for an application (members): each written in the same
/// transaction as the consent change (or coming of age) that took the
/// sample back from this use.
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = RecallList)))]
#[get("/v1/applications/{id}/recalls")]
pub async fn recalls(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<RecallList>, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let list = state
        .run(move |ctx| releases::recalls(ctx, &caller, &id))
        .await?;
    Ok(web::Json(list))
}
