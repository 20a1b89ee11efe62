//! Datasets: named cohorts of registered samples with their DUO data-use
//! terms, portfolio category and consent family.

use super::governance::{json, parse_json, registry, text_field};
use super::samples::parse_genome_id;
use super::state::AppState;
use crate::access::duo::{self, DataUseTerms};
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::db::access::{self as store, DatasetRow, DatasetSampleRow};
use crate::db::write_transaction;
use crate::error::{ApiError, Problem};
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Samples one call may add to a dataset.
const MAX_DATASET_SAMPLES_PER_CALL: usize = 10_000;

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

#[derive(Serialize, ToSchema)]
pub struct DatasetView {
    pub id: String,
    pub name: String,
    pub domain: String,
    #[schema(value_type = Object)]
    pub terms: serde_json::Value,
    pub portfolio: String,
    pub samples: i64,
}

#[derive(Serialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<DatasetView>,
}

fn parse_terms(
    raw: &serde_json::Value,
    diseases: &duo::DiseaseHierarchy,
) -> Result<DataUseTerms, ApiError> {
    let terms: DataUseTerms = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::field("terms", format!("not DUO data-use terms: {e}")))?;
    if terms.permission == duo::Permission::DiseaseSpecific && terms.diseases.is_empty() {
        return Err(ApiError::field(
            "terms.diseases",
            "DS names at least one disease",
        ));
    }
    if let Some(unknown) = terms.diseases.iter().find(|d| !diseases.knows(d)) {
        return Err(ApiError::field(
            "terms.diseases",
            format!("{unknown} is not in policies/diseases.toml"),
        ));
    }
    Ok(terms)
}

/// Defines a dataset: a named cohort with DUO limitations (governance).
#[utoipa::path(tag = "data-access", request_body = DatasetRequest,
    responses((status = 201, body = DatasetView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/datasets")]
pub async fn create_dataset(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<DatasetRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = registry(&state, &caller)?;
    let name = text_field(&body.name, "name", 200)?;
    let domain: crate::consent::DocumentFamily = body
        .domain
        .parse()
        .map_err(|e: crate::consent::ids::IdError| ApiError::field("domain", e.to_string()))?;
    let terms = parse_terms(&body.terms, &state.diseases)?;
    let row = DatasetRow {
        id: format!("ds-{}", uuid::Uuid::new_v4()),
        name,
        domain: domain.as_str().to_owned(),
        terms: json(&terms)?,
        portfolio: text_field(&body.portfolio, "portfolio", 100)?,
        created_by: p.subject,
        created_at: state.now().naive_utc(),
    };
    let stored = row.clone();
    state
        .db(move |conn| write_transaction(conn, |conn| Ok(store::insert_dataset(conn, &stored)?)))
        .await
        .map_err(|e| match e {
            ApiError::UniqueViolation(_) => {
                ApiError::field("name", "a dataset of this name exists")
            }
            other => other,
        })?;
    Ok(HttpResponse::Created().json(dataset_view(row, 0)?))
}

fn dataset_view(row: DatasetRow, samples: i64) -> Result<DatasetView, ApiError> {
    Ok(DatasetView {
        terms: parse_json(&row.terms)?,
        id: row.id,
        name: row.name,
        domain: row.domain,
        portfolio: row.portfolio,
        samples,
    })
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

#[derive(Serialize, ToSchema)]
pub struct DatasetSamplesAdded {
    pub added: usize,
}

#[derive(Deserialize, IntoParams)]
pub struct DatasetPath {
    pub id: String,
}

/// Adds registered samples to a dataset (governance). Samples already in
/// it are left as they are.
#[utoipa::path(tag = "data-access", params(DatasetPath), request_body = DatasetSamplesRequest,
    responses((status = 200, body = DatasetSamplesAdded), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/datasets/{id}/samples")]
pub async fn add_dataset_samples(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<DatasetPath>,
    body: web::Json<DatasetSamplesRequest>,
) -> Result<web::Json<DatasetSamplesAdded>, ApiError> {
    registry(&state, &caller)?;
    if body.samples.is_empty() || body.samples.len() > MAX_DATASET_SAMPLES_PER_CALL {
        return Err(ApiError::field("samples", "1-10000 samples per call"));
    }
    let now = state.now().naive_utc();
    let mut samples = Vec::with_capacity(body.samples.len());
    for (i, s) in body.samples.iter().enumerate() {
        let genome_id = parse_genome_id(&s.genome_id, &format!("samples[{i}].genome_id"))?;
        if let Some(d) = &s.diagnosis {
            if !state.diseases.knows(d) {
                return Err(ApiError::field(
                    format!("samples[{i}].diagnosis"),
                    "not a code of policies/diseases.toml",
                ));
            }
        }
        samples.push((genome_id.to_string(), s.diagnosis.clone()));
    }
    let dataset_id = path.id.clone();
    let added = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                if store::find_datasets(conn, std::slice::from_ref(&dataset_id))?.is_empty() {
                    return Err(ApiError::NotFound);
                }
                let mut ids: Vec<String> = samples.iter().map(|(g, _)| g.clone()).collect();
                ids.sort();
                ids.dedup();
                let owners = store::sample_owners(conn, &ids)?;
                let unknown =
                    || ApiError::field("samples", "every genome_id must be a registered sample");
                let rows = samples
                    .into_iter()
                    .map(|(genome_id, diagnosis)| {
                        Ok(DatasetSampleRow {
                            dataset_id: dataset_id.clone(),
                            patient_pseudonym: owners.get(&genome_id).ok_or_else(unknown)?.clone(),
                            genome_id,
                            diagnosis,
                            added_at: now,
                        })
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                Ok(store::add_dataset_samples(conn, &rows)?)
            })
        })
        .await?;
    Ok(web::Json(DatasetSamplesAdded { added }))
}

/// The dataset catalogue, open to every authenticated caller.
#[utoipa::path(tag = "data-access", responses((status = 200, body = DatasetList)))]
#[get("/v1/datasets")]
pub async fn list_datasets(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<DatasetList>, ApiError> {
    state.authorize(&caller, Action::DatasetRead, &Resource::Registry)?;
    let rows = state.db(|conn| Ok(store::list_datasets(conn)?)).await?;
    let datasets = rows
        .into_iter()
        .map(|(row, n)| dataset_view(row, n))
        .collect::<Result<_, _>>()?;
    Ok(web::Json(DatasetList { datasets }))
}
