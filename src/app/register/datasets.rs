//! Datasets: named cohorts of registered samples with their DUO data-use
//! terms, portfolio category and consent family.

use crate::access::duo::{self, DataUseTerms};
use crate::app::gates::governance;
use crate::app::idempotency::{write_once, Answered, Replayable, Retry};
use crate::app::text::Text;
use crate::app::text::{json, parse_json};
use crate::app::{AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::consent::DocumentFamily;
use crate::db::access::{self as store, DatasetRow, DatasetSampleRow};
use crate::pseudonym::genome_id::PrintedId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A dataset to define.
pub struct NewDataset {
    pub name: String,
    /// Whose consent family governs it.
    pub domain: DocumentFamily,
    /// DUO data-use limitations, as sent (checked against the disease
    /// hierarchy by the action).
    pub terms: serde_json::Value,
    /// Data-portfolio category, e.g. `drug_discovery`.
    pub portfolio: String,
}

/// A sample to add to a dataset, with the diagnosis it contributes.
pub struct DatasetMember {
    pub genome_id: PrintedId,
    /// A code of `policies/diseases.toml`.
    pub diagnosis: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
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

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DatasetSamplesAdded {
    pub added: usize,
}

/// A dataset's name.
pub const DATASET_NAME: Text = Text::line(200);
/// A dataset's data-portfolio category.
pub const DATASET_PORTFOLIO: Text = Text::line(100);

fn parse_terms(
    raw: &serde_json::Value,
    diseases: &duo::DiseaseHierarchy,
) -> Result<DataUseTerms, AppError> {
    let terms: DataUseTerms = serde_json::from_value(raw.clone())
        .map_err(|e| AppError::field("terms", format!("not DUO data-use terms: {e}")))?;
    if terms.permission == duo::Permission::DiseaseSpecific && terms.diseases.is_empty() {
        return Err(AppError::field(
            "terms.diseases",
            "DS names at least one disease",
        ));
    }
    if let Some(unknown) = terms.diseases.iter().find(|d| !diseases.knows(d)) {
        return Err(AppError::field(
            "terms.diseases",
            format!("{unknown} is not in policies/diseases.toml"),
        ));
    }
    Ok(terms)
}

fn dataset_view(row: DatasetRow, samples: i64) -> Result<DatasetView, AppError> {
    Ok(DatasetView {
        terms: parse_json(&row.terms)?,
        id: row.id,
        name: row.name,
        domain: row.domain,
        portfolio: row.portfolio,
        samples,
    })
}

/// Defines a dataset: a named cohort with DUO limitations (governance).
pub fn create(
    ctx: &Context,
    caller: &Caller,
    new: NewDataset,
    retry: Option<Retry>,
) -> Result<Answered<DatasetView>, AppError> {
    let p = governance(ctx, caller)?;
    let replayable = Replayable::of(ctx, p, "dataset", retry)?;
    let terms = parse_terms(&new.terms, &ctx.diseases)?;
    let row = DatasetRow {
        id: format!("ds-{}", uuid::Uuid::new_v4()),
        name: new.name,
        domain: new.domain.as_str().to_owned(),
        terms: json(&terms)?,
        portfolio: new.portfolio,
        created_by: p.subject.clone(),
        created_at: ctx.now().naive_utc(),
    };
    write_once(ctx, replayable.as_ref(), |conn| {
        store::insert_dataset(conn, &row)?;
        dataset_view(row, 0)
    })
    .map_err(|e| match e {
        AppError::UniqueViolation(_) => AppError::field("name", "a dataset of this name exists"),
        other => other,
    })
}

/// Adds registered samples to a dataset (governance). Samples already in
/// it are left as they are.
pub fn add_samples(
    ctx: &Context,
    caller: &Caller,
    dataset_id: &str,
    samples: Vec<DatasetMember>,
) -> Result<DatasetSamplesAdded, AppError> {
    governance(ctx, caller)?;
    for (i, s) in samples.iter().enumerate() {
        if s.diagnosis.as_ref().is_some_and(|d| !ctx.diseases.knows(d)) {
            return Err(AppError::field(
                format!("samples[{i}].diagnosis"),
                "not a code of policies/diseases.toml",
            ));
        }
    }
    let now = ctx.now().naive_utc();
    let added = ctx.write(|conn| {
        if store::find_datasets(conn, &[dataset_id.to_owned()])?.is_empty() {
            return Err(AppError::NotFound);
        }
        let mut ids: Vec<String> = samples.iter().map(|s| s.genome_id.to_string()).collect();
        ids.sort();
        ids.dedup();
        let owners = store::sample_owners(conn, &ids)?;
        let unknown = || AppError::field("samples", "every genome_id must be a registered sample");
        let rows = samples
            .into_iter()
            .map(|s| {
                let genome_id = s.genome_id.to_string();
                Ok(DatasetSampleRow {
                    dataset_id: dataset_id.to_owned(),
                    patient_pseudonym: owners.get(&genome_id).ok_or_else(unknown)?.clone(),
                    genome_id,
                    diagnosis: s.diagnosis,
                    added_at: now,
                })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        Ok(store::add_dataset_samples(conn, &rows)?)
    })?;
    Ok(DatasetSamplesAdded { added })
}

/// The dataset catalogue, open to every authenticated caller.
pub fn list(ctx: &Context, caller: &Caller) -> Result<DatasetList, AppError> {
    ctx.authorize(caller, Action::DatasetRead, &Resource::Registry)?;
    let rows = ctx.read(|conn| Ok(store::list_datasets(conn)?))?;
    let datasets = rows
        .into_iter()
        .map(|(row, n)| dataset_view(row, n))
        .collect::<Result<_, _>>()?;
    Ok(DatasetList { datasets })
}
