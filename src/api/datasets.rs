//! Datasets: named cohorts of registered samples with their DUO data-use
//! terms, portfolio category and consent family.

use super::problem::ApiError;
use super::samples::parse_genome_id;
use super::state::AppState;
use crate::api::extract::Json;
use crate::api::extract::OptionalIdempotencyKey;
use crate::api::replay::answered;
use crate::app::gates::principal;
use crate::app::register::{
    self, DatasetList, DatasetMember, DatasetSamplesAdded, DatasetView, NewDataset,
};
use crate::app::AppError;
use crate::auth::Caller;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

/// Samples one call may add to a dataset.
/// Samples one call adds to a dataset, at most.
pub const MAX_SAMPLES_PER_CALL: usize = 10_000;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(create_dataset)
        .service(add_dataset_samples)
        .service(list_datasets);
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetRequest {
    pub name: String,
    /// `cancer` or `rare_disease`: whose consent family governs it.
    pub domain: String,
    /// DUO data-use limitations, e.g. `{"permission": "HMB", "modifiers": ["NCU"]}`;
    /// DS takes `diseases` (codes of `policies/diseases.toml`).
    #[schema(value_type = Object)]
    pub terms: serde_json::Value,
    /// Data-portfolio category, e.g. `drug_discovery`, `safety_evaluation`, `basic_research`.
    pub portfolio: String,
}

impl TryFrom<DatasetRequest> for NewDataset {
    type Error = AppError;

    fn try_from(body: DatasetRequest) -> Result<Self, AppError> {
        let name = register::DATASET_NAME.check(&body.name, "name")?;
        let domain = body
            .domain
            .parse()
            .map_err(|e: crate::consent::ids::IdError| AppError::field("domain", e.to_string()))?;
        Ok(NewDataset {
            name,
            domain,
            terms: body.terms,
            portfolio: register::DATASET_PORTFOLIO.check(&body.portfolio, "portfolio")?,
        })
    }
}

/// Defines a dataset: a named cohort with DUO limitations (governance).
#[utoipa::path(tag = "data-access", request_body = DatasetRequest,
    responses((status = 201, body = DatasetView)))]
#[post("/v1/datasets")]
pub async fn create_dataset(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: Json<DatasetRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let retry = idempotency.retry(&*body)?;
    let new = NewDataset::try_from(body.into_inner())?;
    let view = state
        .run(move |ctx| register::create(ctx, &caller, new, retry))
        .await?;
    Ok(answered(view, StatusCode::CREATED))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSample {
    pub genome_id: String,
    /// The diagnosis this sample contributes, a code of `policies/diseases.toml`.
    #[serde(default)]
    pub diagnosis: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSamplesRequest {
    /// At most 10,000 per call.
    pub samples: Vec<DatasetSample>,
}

#[derive(Deserialize, IntoParams)]
pub struct DatasetPath {
    pub id: String,
}

/// Adds registered samples to a dataset (governance). Samples already in
/// it are left as they are.
#[utoipa::path(tag = "data-access", params(DatasetPath), request_body = DatasetSamplesRequest,
    responses((status = 200, body = DatasetSamplesAdded)))]
#[post("/v1/datasets/{id}/samples")]
pub async fn add_dataset_samples(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<DatasetPath>,
    body: Json<DatasetSamplesRequest>,
) -> Result<web::Json<DatasetSamplesAdded>, ApiError> {
    principal(&caller)?;
    let body = body.into_inner();
    if body.samples.is_empty() || body.samples.len() > MAX_SAMPLES_PER_CALL {
        return Err(AppError::field("samples", "1-10000 samples per call").into());
    }
    let samples = body
        .samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(DatasetMember {
                genome_id: parse_genome_id(&s.genome_id, &format!("samples[{i}].genome_id"))?,
                diagnosis: s.diagnosis,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    let id = path.into_inner().id;
    let added = state
        .run(move |ctx| register::add_samples(ctx, &caller, &id, samples))
        .await?;
    Ok(web::Json(added))
}

/// The dataset catalogue, open to every authenticated caller.
#[utoipa::path(tag = "data-access", responses((status = 200, body = DatasetList)))]
#[get("/v1/datasets")]
pub async fn list_datasets(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<DatasetList>, ApiError> {
    let list = state.run(move |ctx| register::list(ctx, &caller)).await?;
    Ok(web::Json(list))
}
