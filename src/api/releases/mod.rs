//! Consent-checked releases and what follows them: the records, manifests
//! and recall notices members and overseers read back (`read`), handle
//! resolution by genome stores (`resolve`), and the members' recall
//! webhooks (`webhooks`).

mod read;
mod resolve;
mod webhooks;

use super::extract::OptionalIdempotencyKey;
use super::problem::ApiError;
use super::replay::answered;
use super::state::AppState;
use crate::api::extract::Json;
use crate::app::gates::principal;
use crate::app::releases::{self, NewRelease, Page, ReleaseView, MAX_PAGE};
use crate::app::AppError;
use crate::auth::Caller;
use actix_web::http::StatusCode;
use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(create_release)
        .service(read::releases_of_application)
        .service(read::get_release)
        .service(read::manifest)
        .service(resolve::resolve_handle)
        .service(resolve::jwks)
        .service(read::recalls)
        .service(webhooks::add_recall_webhook)
        .service(webhooks::recall_webhooks)
        .service(webhooks::remove_recall_webhook)
        .service(webhooks::recall_webhook_deliveries);
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The genome store or TRE that will resolve the handle (one of
    /// `release.audiences` in `policies/data-use.toml`).
    pub audience: String,
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationPath {
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct ReleasePath {
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// The `next_after` of the previous page.
    pub after: Option<i64>,
    /// 1-1000; default 1000.
    pub limit: Option<i64>,
}

impl PageQuery {
    fn page(&self) -> Result<Page, AppError> {
        page(self.after, self.limit)
    }
}

/// A page of at most 1,000, after a position (`next_after`).
fn page(after: Option<i64>, limit: Option<i64>) -> Result<Page, AppError> {
    let limit = limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::field("limit", "1-1000"));
    }
    Ok(Page {
        after: after.unwrap_or(0).max(0),
        limit,
    })
}

/// Releases the datasets of an approved application (a member). Every
/// sample's patient consent is checked now; a cohort smaller than the
/// policy's `min_cohort` is refused and nothing is written. Each member may
/// release `data_access.member_requests_per_minute` times a minute (429
/// with `Retry-After` past it): every release notifies its cohort.
#[utoipa::path(tag = "data-access", params(ApplicationPath), request_body = ReleaseRequest,
    responses((status = 201, body = ReleaseView)))]
#[post("/v1/applications/{id}/releases")]
pub async fn create_release(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<ApplicationPath>,
    body: Json<ReleaseRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let application = path.into_inner().id;
    let body = body.into_inner();
    let asked = NewRelease {
        retry: idempotency.retry(&(&application, &body))?,
        application,
        audience: body.audience.trim().to_owned(),
    };
    let released = state
        .run(move |ctx| releases::create(ctx, &caller, asked))
        .await?;
    Ok(answered(released, StatusCode::CREATED))
}
