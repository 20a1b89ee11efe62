//! The governance registers (organizations, ethics training, datasets,
//! agreement texts, sanctions), data-use applications with DUO matching,
//! committee review, agreement acceptance, and the public transparency
//! register. Releases and handles are in `releases.rs`.

use super::consents::principal;
use super::extract::OptionalIdempotencyKey;
use super::releases::recall;
use super::samples::parse_genome_id;
use super::state::AppState;
use crate::access::duo::{self, Applicant, DataUseTerms, MatchResult, Outcome, ResearchPurpose};
use crate::access::review::{self, ApplicationState, Condition, Vote};
use crate::access::{DataUsePolicy, UseKind, INDUSTRY};
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal};
use crate::db::access::{
    self as store, AcceptanceRow, AgreementRow, AgreementTextRow, ApplicationRow, AttestationRow,
    DatasetRow, DatasetSampleRow, OrganizationRow, VoteRow,
};
use crate::db::documents::utc;
use crate::db::{write_transaction, DbConnection};
use crate::error::{AccessRefusal as Refusal, ApiError, Problem};
use actix_web::{get, post, put, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

/// Who acts for the matcher in an application's transitions.
const MATCHER_ACTOR: &str = "genomegate-duo-matcher";
const MAX_DATASET_SAMPLES_PER_CALL: usize = 10_000;

fn text_field(value: &str, field: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.len() > max || value.chars().any(|c| c.is_control()) {
        return Err(ApiError::field(
            field,
            format!("1-{max} characters of plain text"),
        ));
    }
    Ok(value.to_owned())
}

fn json<T: Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(ApiError::internal)
}

fn parse_json<T: for<'de> Deserialize<'de>>(raw: &str) -> Result<T, ApiError> {
    serde_json::from_str(raw).map_err(ApiError::internal)
}

fn registry(state: &AppState, caller: &Caller) -> Result<Principal, ApiError> {
    state.authorize(caller, Action::RegistryManage, &Resource::Registry)?;
    Ok(principal(caller)?.clone())
}

// ---------------------------------------------------------------------------
// Governance registers

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationRequest {
    /// `academic`, `industry` or `public`, as verified by the governance body.
    pub kind: String,
    /// ISO 3166-1 alpha-2 country of the organization, e.g. `JP`.
    pub country: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationView {
    pub org: String,
    pub kind: String,
    pub country: String,
    pub verified_by: String,
    pub verified_at: DateTime<Utc>,
}

#[derive(Deserialize, IntoParams)]
pub struct OrgPath {
    pub org: String,
}

/// Records an organization's verified type (governance). Applicants never
/// declare whether they are commercial; this register decides. A change
/// that makes a use with live releases industrial or a transfer abroad
/// writes, in the same transaction, a recall notice for each released
/// sample whose patient did not consent to that (decision 0027).
#[utoipa::path(tag = "data-access", params(OrgPath), request_body = OrganizationRequest,
    responses((status = 200, body = OrganizationView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[put("/v1/organizations/{org}")]
pub async fn verify_organization(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<OrgPath>,
    body: web::Json<OrganizationRequest>,
) -> Result<web::Json<OrganizationView>, ApiError> {
    let p = registry(&state, &caller)?;
    let org = text_field(&path.org, "org", 200)?;
    if !["academic", INDUSTRY, "public"].contains(&body.kind.as_str()) {
        return Err(ApiError::field("kind", "academic, industry or public"));
    }
    let country = body.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(ApiError::field("country", "an ISO 3166-1 alpha-2 code"));
    }
    let row = OrganizationRow {
        org,
        kind: body.kind.clone(),
        country,
        verified_by: p.subject,
        verified_at: state.now().naive_utc(),
    };
    let stored = row.clone();
    let shared = state.clone();
    let recalled = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                // A use that the change makes industrial or a transfer
                // abroad loses, in this transaction, what its patients did
                // not consent to (decision 0027). A release being written
                // for a use of this organization finishes first (decision
                // 0029).
                crate::db::gate::take_register_entry(conn, &stored.org)?;
                let before = recall::uses_of_member(
                    conn,
                    &shared.data_use,
                    (&stored.org, &stored.kind, &stored.country),
                )?;
                store::upsert_organization(conn, &stored)?;
                let change = format!("register-{}", uuid::Uuid::new_v4());
                recall::recall_what_the_register_takes_back(
                    conn,
                    &shared.data_use,
                    &before,
                    &change,
                    shared.now(),
                )
            })
        })
        .await?;
    if recalled > 0 {
        state.log.deliveries_queued();
    }
    Ok(web::Json(OrganizationView {
        org: row.org,
        kind: row.kind,
        country: row.country,
        verified_by: row.verified_by,
        verified_at: utc(row.verified_at),
    }))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestationRequest {
    /// The training course or programme.
    pub training: String,
    /// Not after today. Dates are days in Japan (JST), like every date
    /// the service keeps.
    pub completed_on: NaiveDate,
    /// The attestation is valid through this day (JST).
    pub expires_on: NaiveDate,
}

#[derive(Serialize, ToSchema)]
pub struct AttestationView {
    pub org: String,
    pub subject: String,
    pub training: String,
    pub completed_on: NaiveDate,
    pub expires_on: NaiveDate,
}

#[derive(Deserialize, IntoParams)]
pub struct ResearcherPath {
    pub org: String,
    /// The researcher's token subject.
    pub subject: String,
}

/// Records a researcher's ethics-training attestation (governance).
/// Without a current one a researcher can neither apply nor be a member.
#[utoipa::path(tag = "data-access", params(ResearcherPath), request_body = AttestationRequest,
    responses((status = 200, body = AttestationView), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[put("/v1/organizations/{org}/researchers/{subject}/attestation")]
pub async fn record_attestation(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ResearcherPath>,
    body: web::Json<AttestationRequest>,
) -> Result<web::Json<AttestationView>, ApiError> {
    let p = registry(&state, &caller)?;
    let training = text_field(&body.training, "training", 500)?;
    if body.expires_on <= body.completed_on {
        return Err(ApiError::field("expires_on", "must be after completed_on"));
    }
    if body.completed_on > crate::calendar::day_of(state.now()) {
        return Err(ApiError::field("completed_on", "lies in the future"));
    }
    let row = AttestationRow {
        org: text_field(&path.org, "org", 200)?,
        subject: text_field(&path.subject, "subject", 200)?,
        training,
        completed_on: body.completed_on,
        expires_on: body.expires_on,
        recorded_by: p.subject,
        recorded_at: state.now().naive_utc(),
    };
    let stored = row.clone();
    state
        .db(move |conn| {
            write_transaction(conn, |conn| Ok(store::upsert_attestation(conn, &stored)?))
        })
        .await?;
    Ok(web::Json(AttestationView {
        org: row.org,
        subject: row.subject,
        training: row.training,
        completed_on: row.completed_on,
        expires_on: row.expires_on,
    }))
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

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementTextRequest {
    /// The full text members accept.
    pub body: String,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementTextView {
    pub version: i32,
    /// Hex SHA-256 of the body's UTF-8 bytes: what a member's acceptance names.
    pub sha256: String,
    pub body: String,
    pub published_at: DateTime<Utc>,
}

fn text_view(row: AgreementTextRow) -> AgreementTextView {
    AgreementTextView {
        version: row.version,
        sha256: row.sha256,
        body: row.body,
        published_at: utc(row.published_at),
    }
}

/// Publishes the next version of the data-use agreement text (governance).
/// Members of every agreement must accept the new version before their next
/// release.
#[utoipa::path(tag = "data-access", request_body = AgreementTextRequest,
    responses((status = 201, body = AgreementTextView), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/agreement-texts")]
pub async fn publish_agreement_text(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<AgreementTextRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = registry(&state, &caller)?;
    let text = body.body.clone();
    if text.trim().is_empty() || text.len() > 200_000 {
        return Err(ApiError::field("body", "1-200000 bytes"));
    }
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
    let now = state.now().naive_utc();
    let row = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let version = store::current_text(conn)?.map_or(1, |t| t.version + 1);
                let row = AgreementTextRow {
                    version,
                    body: text,
                    sha256,
                    published_by: p.subject,
                    published_at: now,
                };
                store::insert_text(conn, &row)?;
                Ok(row)
            })
        })
        .await
        .map_err(|e| match e {
            ApiError::UniqueViolation(_) => {
                ApiError::field("body", "this exact text was published before")
            }
            other => other,
        })?;
    Ok(HttpResponse::Created().json(text_view(row)))
}

/// The agreement text members must accept now.
#[utoipa::path(tag = "data-access", responses((status = 200, body = AgreementTextView), (status = 409, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/agreement-texts/current")]
pub async fn current_agreement_text(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<AgreementTextView>, ApiError> {
    state.authorize(&caller, Action::DatasetRead, &Resource::Registry)?;
    let row = state
        .db(|conn| {
            store::current_text(conn)?.ok_or(ApiError::Access(Refusal::AgreementTextMissing, None))
        })
        .await?;
    Ok(web::Json(text_view(row)))
}

// ---------------------------------------------------------------------------
// Applications

#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct PurposeRequest {
    /// `GRU`, `HMB`, `DS`, `POA` or `MDS` (methods development).
    pub code: String,
    /// For DS: disease codes of `policies/diseases.toml`.
    #[serde(default)]
    pub diseases: Vec<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    pub title: String,
    pub purpose: PurposeRequest,
    /// Dataset ids.
    pub datasets: Vec<String>,
    /// Member researchers (token subjects at the applicant organization).
    /// The submitter is always a member.
    pub members: Vec<String>,
    /// Member researchers of other verified organizations (a consortium's
    /// partners). Each needs a current ethics-training attestation at their
    /// own organization. Any industry organization among them makes the use
    /// commercial; any organization registered abroad makes it a transfer
    /// abroad.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partner_members: Vec<Member>,
    /// The research ethics committee's approval reference.
    pub ethics_ref: String,
    /// The first day of use: releases may start at its midnight in Japan
    /// (JST).
    pub starts_on: NaiveDate,
    /// The last day of use (JST), not before `starts_on` or today; the
    /// agreement expires at the midnight after it.
    pub ends_on: NaiveDate,
    /// Whether any recipient is outside the programme's home country
    /// (`transfer.home_country` in `policies/data-use.toml`). Must be true
    /// when any member organization is registered elsewhere.
    pub recipients_abroad: bool,
}

/// A member researcher and the organization whose token names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub org: String,
    pub researcher: String,
}

/// What the applicant declared, stored as submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Declaration {
    pub title: String,
    pub purpose: ResearchPurpose,
    pub datasets: Vec<String>,
    pub members: Vec<String>,
    /// Absent in applications stored before partner members existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partner_members: Vec<Member>,
    pub ethics_ref: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub recipients_abroad: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetMatch {
    pub dataset: String,
    /// `approve`, `abstain` (the committee decides) or `deny`.
    pub outcome: String,
    /// Every rule that fired, with a machine-readable `code`.
    #[schema(value_type = Vec<Object>)]
    pub rationale: Vec<duo::Reason>,
    pub required_conditions: Vec<String>,
    pub matcher: String,
}

#[derive(Serialize, ToSchema)]
pub struct TransitionView {
    pub state: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementView {
    pub id: String,
    /// `active`, `suspended` or `revoked`.
    pub state: String,
    pub expires_at: DateTime<Utc>,
    pub state_reason: Option<String>,
    /// Members who accepted the current text version.
    pub accepted_current_text: Vec<Member>,
    /// Every state it entered, oldest first: creation, suspensions,
    /// reinstatements, revocation.
    pub history: Vec<AgreementStateView>,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementStateView {
    pub state: String,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ApplicationView {
    pub id: String,
    pub org: String,
    pub submitted_by: String,
    pub title: String,
    pub purpose: PurposeRequest,
    pub datasets: Vec<String>,
    pub members: Vec<String>,
    pub partner_members: Vec<Member>,
    pub ethics_ref: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    /// As declared at submission.
    pub recipients_abroad: bool,
    /// The use is industrial: a member organization is registered as
    /// industry, now or at submission. Releases and resolutions check each
    /// patient's consent to industry use against this.
    pub commercial: bool,
    /// The data goes abroad: declared, or a member organization is
    /// registered outside the programme's home country, now or at
    /// submission. Releases and resolutions check each patient's consent to
    /// international transfer against this.
    pub transfers_abroad: bool,
    /// `under_review`, `approved`, `approved_with_conditions` or `rejected`.
    pub state: String,
    pub matching: Vec<DatasetMatch>,
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
    pub votes: usize,
    pub transitions: Vec<TransitionView>,
    pub agreement: Option<AgreementView>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub access_started_at: Option<DateTime<Utc>>,
}

pub(crate) fn purpose_view(purpose: &ResearchPurpose) -> PurposeRequest {
    PurposeRequest {
        code: purpose.code().to_owned(),
        diseases: purpose.diseases().to_vec(),
    }
}

/// An application with its declaration parsed.
pub(crate) struct Application {
    pub row: ApplicationRow,
    pub declaration: Declaration,
}

impl Application {
    /// Parses the stored declaration; no authorization.
    pub fn from_row(row: ApplicationRow) -> Result<Self, ApiError> {
        let declaration = parse_json(&row.declaration)?;
        Ok(Application { row, declaration })
    }

    pub fn state(&self) -> Result<ApplicationState, ApiError> {
        ApplicationState::parse(&self.row.state).ok_or_else(|| ApiError::internal("stored state"))
    }
    pub fn conditions(&self) -> Result<Vec<Condition>, ApiError> {
        parse_json(&self.row.conditions)
    }
    pub fn matching(&self) -> Result<Vec<DatasetMatch>, ApiError> {
        parse_json(&self.row.matching)
    }
    /// Every member as (organization, researcher): the applicant
    /// organization's first, then the partners'.
    pub fn members(&self) -> Vec<(&str, &str)> {
        self.declaration.members_of(&self.row.org)
    }

    /// The partner organizations, each once.
    pub fn partner_orgs(&self) -> Vec<String> {
        self.declaration.partner_orgs()
    }

    /// The applicant organization and the partner organizations, each once.
    pub fn member_orgs(&self) -> Vec<&str> {
        let mut orgs: Vec<&str> = self.members().into_iter().map(|(org, _)| org).collect();
        orgs.sort_unstable();
        orgs.dedup();
        orgs
    }

    /// The use now: as declared and decided at submission, or as
    /// `registered` (entries of the register, any others ignored) says of
    /// the member organizations today, whichever is stricter.
    pub fn use_now(&self, policy: &DataUsePolicy, registered: &[OrganizationRow]) -> UseKind {
        let members = self.member_orgs();
        policy.use_now(
            UseKind {
                commercial: self.row.commercial,
                abroad: self.declaration.recipients_abroad,
            },
            registered
                .iter()
                .filter(|o| members.contains(&o.org.as_str()))
                .map(|o| (o.kind.as_str(), o.country.as_str())),
        )
    }

    pub fn is_member(&self, p: &Principal) -> bool {
        self.members()
            .iter()
            .any(|(org, researcher)| *org == p.org && *researcher == p.subject)
    }

    /// Whether `org` is the applicant or a partner organization.
    pub fn has_member_org(&self, org: &str) -> bool {
        self.row.org == org
            || self
                .declaration
                .partner_members
                .iter()
                .any(|m| m.org == org)
    }
}

impl Declaration {
    /// Every member as (organization, researcher), given the applicant
    /// organization.
    pub fn members_of<'a>(&'a self, applicant: &'a str) -> Vec<(&'a str, &'a str)> {
        self.members
            .iter()
            .map(|m| (applicant, m.as_str()))
            .chain(
                self.partner_members
                    .iter()
                    .map(|m| (m.org.as_str(), m.researcher.as_str())),
            )
            .collect()
    }

    pub fn partner_orgs(&self) -> Vec<String> {
        let mut orgs: Vec<String> = self.partner_members.iter().map(|m| m.org.clone()).collect();
        orgs.sort();
        orgs.dedup();
        orgs
    }
}

/// Loads an application and checks `action` on it. A caller that may not
/// even read it gets the same 404 as for one that does not exist.
pub(crate) fn application_for(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<Application, ApiError> {
    let app = Application::from_row(store::find_application(conn, id)?.ok_or(ApiError::NotFound)?)?;
    let partner_orgs = app.partner_orgs();
    let resource = Resource::Application {
        id,
        org: &app.row.org,
        partner_orgs: &partner_orgs,
    };
    if !state.policy.is_allowed(caller, action, &resource) {
        return Err(
            if state
                .policy
                .is_allowed(caller, Action::ApplicationRead, &resource)
            {
                ApiError::Forbidden
            } else {
                ApiError::NotFound
            },
        );
    }
    Ok(app)
}

/// Refuses unless every member, (organization, researcher), has a current
/// ethics-training attestation recorded for that organization.
pub(crate) fn check_attestations(
    conn: &mut DbConnection,
    members: &[(&str, &str)],
    today: NaiveDate,
) -> Result<(), ApiError> {
    let mut orgs: Vec<&str> = members.iter().map(|(org, _)| *org).collect();
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        let researchers: Vec<String> = members
            .iter()
            .filter(|(o, _)| *o == org)
            .map(|(_, r)| (*r).to_owned())
            .collect();
        let attested = store::attestations_of(conn, org, &researchers)?;
        for member in &researchers {
            match attested.iter().find(|a| &a.subject == member) {
                None => {
                    return Err(ApiError::refused(
                        Refusal::AttestationMissing,
                        format!("{member} of {org} has no ethics-training attestation"),
                    ))
                }
                Some(a) if a.expires_on < today => {
                    return Err(ApiError::refused(
                        Refusal::AttestationExpired,
                        format!(
                            "{member} of {org}: the attestation expired on {}",
                            a.expires_on
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn parse_purpose(body: &PurposeRequest, state: &AppState) -> Result<ResearchPurpose, ApiError> {
    // Forbidden purposes are refused by name before anything else, with
    // their own code, whatever else the request says.
    if state.data_use.forbids(&body.code) {
        return Err(ApiError::refused(
            Refusal::PurposeForbidden,
            format!("`{}` is forbidden by policy", body.code),
        ));
    }
    let purpose = match body.code.as_str() {
        "GRU" => ResearchPurpose::General,
        "HMB" => ResearchPurpose::HealthMedicalBiomedical,
        "POA" => ResearchPurpose::PopulationAncestry,
        "MDS" => ResearchPurpose::MethodsDevelopment,
        "DS" => {
            if body.diseases.is_empty() {
                return Err(ApiError::field(
                    "purpose.diseases",
                    "DS names at least one disease",
                ));
            }
            ResearchPurpose::DiseaseSpecific {
                diseases: body.diseases.clone(),
            }
        }
        _ => return Err(ApiError::field("purpose.code", "GRU, HMB, DS, POA or MDS")),
    };
    if !matches!(purpose, ResearchPurpose::DiseaseSpecific { .. }) && !body.diseases.is_empty() {
        return Err(ApiError::field(
            "purpose.diseases",
            "only DS names diseases",
        ));
    }
    Ok(purpose)
}

fn view(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    app: &Application,
) -> Result<ApplicationView, ApiError> {
    views(conn, policy, std::slice::from_ref(app))?
        .pop()
        .ok_or_else(|| ApiError::internal("an application without its view"))
}

/// The register's entries for every member organization of `apps`, read
/// once: what makes each use industrial or a transfer abroad today.
fn registered_members(
    conn: &mut DbConnection,
    apps: &[Application],
) -> Result<Vec<OrganizationRow>, ApiError> {
    let mut member_orgs: Vec<&str> = apps.iter().flat_map(Application::member_orgs).collect();
    member_orgs.sort_unstable();
    member_orgs.dedup();
    Ok(store::find_organizations(conn, &member_orgs)?)
}

/// The views of applications, in order, from one query per related table
/// however many applications there are.
fn views(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    apps: &[Application],
) -> Result<Vec<ApplicationView>, ApiError> {
    if apps.is_empty() {
        return Ok(Vec::new());
    }
    let registered = registered_members(conn, apps)?;
    let ids: Vec<String> = apps.iter().map(|a| a.row.id.clone()).collect();
    let mut transitions: HashMap<String, Vec<TransitionView>> = HashMap::new();
    for t in store::transitions_of(conn, &ids)? {
        transitions
            .entry(t.application_id)
            .or_default()
            .push(TransitionView {
                state: t.state,
                actor: t.actor,
                at: utc(t.at),
            });
    }
    let mut votes: HashMap<String, usize> = HashMap::new();
    for v in store::votes_of(conn, &ids)? {
        *votes.entry(v.application_id).or_default() += 1;
    }
    let agreements = store::agreements_of_applications(conn, &ids)?;
    let mut agreement_views: HashMap<String, AgreementView> = HashMap::new();
    if !agreements.is_empty() {
        let agreement_ids: Vec<String> = agreements.iter().map(|a| a.id.clone()).collect();
        let current = store::current_text(conn)?.map(|t| t.version);
        let mut accepted: HashMap<String, Vec<Member>> = HashMap::new();
        for x in store::acceptances_of(conn, &agreement_ids)? {
            if Some(x.text_version) == current {
                accepted.entry(x.agreement_id).or_default().push(Member {
                    org: x.member_org,
                    researcher: x.member,
                });
            }
        }
        let mut history: HashMap<String, Vec<AgreementStateView>> = HashMap::new();
        for t in store::agreement_transitions_of(conn, &agreement_ids)? {
            history
                .entry(t.agreement_id)
                .or_default()
                .push(AgreementStateView {
                    state: t.state,
                    reason: t.reason,
                    actor: t.actor,
                    at: utc(t.at),
                });
        }
        for a in agreements {
            agreement_views.insert(
                a.application_id.clone(),
                AgreementView {
                    history: history.remove(&a.id).unwrap_or_default(),
                    accepted_current_text: accepted.remove(&a.id).unwrap_or_default(),
                    id: a.id,
                    state: a.state,
                    expires_at: utc(a.expires_at),
                    state_reason: a.state_reason,
                },
            );
        }
    }
    apps.iter()
        .map(|app| {
            let id = &app.row.id;
            view_with(
                app,
                app.use_now(policy, &registered),
                transitions.remove(id).unwrap_or_default(),
                votes.get(id).copied().unwrap_or(0),
                agreement_views.remove(id),
            )
        })
        .collect()
}

fn view_with(
    app: &Application,
    use_now: UseKind,
    transitions: Vec<TransitionView>,
    votes: usize,
    agreement: Option<AgreementView>,
) -> Result<ApplicationView, ApiError> {
    let d = &app.declaration;
    Ok(ApplicationView {
        id: app.row.id.clone(),
        org: app.row.org.clone(),
        submitted_by: app.row.submitted_by.clone(),
        title: d.title.clone(),
        purpose: purpose_view(&d.purpose),
        datasets: d.datasets.clone(),
        members: d.members.clone(),
        partner_members: d.partner_members.clone(),
        ethics_ref: d.ethics_ref.clone(),
        starts_on: d.starts_on,
        ends_on: d.ends_on,
        recipients_abroad: d.recipients_abroad,
        commercial: use_now.commercial,
        transfers_abroad: use_now.abroad,
        state: app.row.state.clone(),
        matching: app.matching()?,
        conditions: app.conditions()?,
        votes,
        transitions,
        agreement,
        submitted_at: utc(app.row.submitted_at),
        decided_at: app.row.decided_at.map(utc),
        access_started_at: app.row.access_started_at.map(utc),
    })
}

/// Submits a data-use application (researcher). DUO matching runs at once:
/// a `deny` on any dataset rejects the application with its rationale;
/// otherwise it goes to the review committee, `abstain` results included.
#[utoipa::path(tag = "data-access", request_body = ApplicationRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional, unique per organization: a retry with the same body returns the original application (200); another body under the same key is refused (409 idempotency_key_reused)")),
    responses((status = 201, body = ApplicationView), (status = 200, body = ApplicationView, description = "a retry under the same Idempotency-Key"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/applications")]
pub async fn submit_application(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: web::Json<ApplicationRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    let id = format!("app-{}", uuid::Uuid::new_v4());
    state.authorize(
        &caller,
        Action::ApplicationSubmit,
        &Resource::Application {
            id: &id,
            org: &p.org,
            partner_orgs: &[],
        },
    )?;
    let body = body.into_inner();
    // The key's keyed hashes (one per key version; the first is stored) and
    // what the request asked for, so a retry is told from a reuse.
    let idempotency = match idempotency.0 {
        Some(key) => Some((
            state.keys.idempotency_tags(&p.org, &key),
            submission_fingerprint(&p, &body)?,
        )),
        None => None,
    };
    if let Some(replayed) = replay(&state, &caller, &p, idempotency.as_ref()).await? {
        return Ok(replayed);
    }
    let purpose = parse_purpose(&body.purpose, &state)?;
    let today = crate::calendar::day_of(state.now());
    if body.ends_on < body.starts_on || body.ends_on < today {
        return Err(ApiError::field(
            "ends_on",
            "must not precede starts_on or today",
        ));
    }
    let mut datasets = body.datasets.clone();
    datasets.sort();
    datasets.dedup();
    if datasets.is_empty() || datasets.len() > 50 {
        return Err(ApiError::field("datasets", "1-50 datasets"));
    }
    let mut members: Vec<String> = body
        .members
        .iter()
        .map(|m| text_field(m, "members", 200))
        .collect::<Result<_, _>>()?;
    members.push(p.subject.clone());
    members.sort();
    members.dedup();
    let mut partner_members: Vec<Member> = body
        .partner_members
        .iter()
        .map(|m| {
            Ok(Member {
                org: text_field(&m.org, "partner_members", 200)?,
                researcher: text_field(&m.researcher, "partner_members", 200)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    if partner_members.iter().any(|m| m.org == p.org) {
        return Err(ApiError::field(
            "partner_members",
            "researchers of the applicant organization go in members",
        ));
    }
    partner_members.sort();
    partner_members.dedup();
    if members.len() + partner_members.len() > 100 {
        return Err(ApiError::field("members", "at most 100 members"));
    }
    let declaration = Declaration {
        title: text_field(&body.title, "title", 500)?,
        purpose,
        datasets,
        members,
        partner_members,
        ethics_ref: text_field(&body.ethics_ref, "ethics_ref", 200)?,
        starts_on: body.starts_on,
        ends_on: body.ends_on,
        recipients_abroad: body.recipients_abroad,
    };
    let now = state.now();
    let shared = state.clone();
    let (caller_in, p_in, idempotency_in) = (caller.clone(), p.clone(), idempotency.clone());
    let submitted = state
        .db(move |conn| {
            let (caller, p, idempotency) = (caller_in, p_in, idempotency_in);
            write_transaction(conn, |conn| {
                let partner_orgs = declaration.partner_orgs();
                let member_orgs: Vec<&str> = std::iter::once(p.org.as_str())
                    .chain(partner_orgs.iter().map(String::as_str))
                    .collect();
                let registered = store::find_organizations(conn, &member_orgs)?;
                if let Some(unknown) = member_orgs
                    .iter()
                    .find(|org| !registered.iter().any(|r| r.org == **org))
                {
                    return Err(ApiError::refused(
                        Refusal::OrganizationNotVerified,
                        format!("{unknown} is not in the register of verified organizations"),
                    ));
                }
                check_attestations(conn, &declaration.members_of(&p.org), today)?;
                // The register, not the applicant, says where the data goes.
                let abroad: Vec<&str> = registered
                    .iter()
                    .filter(|o| shared.data_use.is_abroad(&o.country))
                    .map(|o| o.org.as_str())
                    .collect();
                if !abroad.is_empty() && !declaration.recipients_abroad {
                    return Err(ApiError::field(
                        "recipients_abroad",
                        format!(
                            "{} is registered outside {}: its members receive data abroad",
                            abroad.join(", "),
                            shared.data_use.transfer.home_country
                        ),
                    ));
                }
                let rows = store::find_datasets(conn, &declaration.datasets)?;
                if rows.len() != declaration.datasets.len() {
                    return Err(ApiError::field(
                        "datasets",
                        "names a dataset that does not exist",
                    ));
                }
                let applicant = Applicant {
                    // Any industry member organization makes the use commercial.
                    commercial: shared
                        .data_use
                        .use_now(
                            UseKind::default(),
                            registered
                                .iter()
                                .map(|o| (o.kind.as_str(), o.country.as_str())),
                        )
                        .commercial,
                    abroad: declaration.recipients_abroad,
                };
                let mut matching = Vec::with_capacity(rows.len());
                for row in &rows {
                    let terms: DataUseTerms = parse_json(&row.terms)?;
                    let result: MatchResult = duo::match_purpose(
                        &declaration.purpose,
                        applicant,
                        &terms,
                        &shared.diseases,
                    );
                    matching.push(DatasetMatch {
                        dataset: row.id.clone(),
                        outcome: match result.outcome {
                            Outcome::Approve => "approve",
                            Outcome::Abstain => "abstain",
                            Outcome::Deny => "deny",
                        }
                        .into(),
                        rationale: result.rationale,
                        required_conditions: result.required_conditions,
                        matcher: result.matcher,
                    });
                }
                let denied = matching.iter().any(|m| m.outcome == "deny");
                let row = ApplicationRow {
                    id: id.clone(),
                    org: p.org.clone(),
                    submitted_by: p.subject.clone(),
                    declaration: json(&declaration)?,
                    commercial: applicant.commercial,
                    matching: json(&matching)?,
                    state: ApplicationState::UnderReview.as_str().into(),
                    conditions: "[]".into(),
                    submitted_at: now.naive_utc(),
                    decided_at: None,
                    access_started_at: None,
                    idempotency_key: idempotency
                        .as_ref()
                        .and_then(|(tags, _)| tags.first().cloned()),
                    request_hash: idempotency.as_ref().map(|(_, hash)| hash.clone()),
                };
                store::insert_application(conn, &row)?;
                if !partner_orgs.is_empty() {
                    let orgs: Vec<&str> = partner_orgs.iter().map(String::as_str).collect();
                    store::insert_partner_orgs(conn, &id, &orgs)?;
                }
                store::record_transition(conn, &id, "submitted", &p.subject, now.naive_utc())?;
                store::record_transition(
                    conn,
                    &id,
                    ApplicationState::UnderReview.as_str(),
                    &p.subject,
                    now.naive_utc(),
                )?;
                if denied {
                    store::transition(
                        conn,
                        &id,
                        ApplicationState::UnderReview.as_str(),
                        ApplicationState::Rejected.as_str(),
                        None,
                        MATCHER_ACTOR,
                        now,
                    )?;
                }
                let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &id)?;
                view(conn, &shared.data_use, &app)
            })
        })
        .await;
    let app = match submitted {
        // A concurrent retry under the same key committed first.
        Err(ApiError::UniqueViolation(_)) if idempotency.is_some() => {
            return replay(&state, &caller, &p, idempotency.as_ref())
                .await?
                .ok_or_else(|| ApiError::internal("idempotency key conflict without a row"));
        }
        other => other?,
    };
    tracing::info!(application = %app.id, state = %app.state, "data-use application submitted");
    Ok(HttpResponse::Created().json(app))
}

/// The keyed hashes of a submission's `Idempotency-Key`, and the
/// fingerprint of the submission.
type SubmissionKey = (Vec<String>, String);

/// What a submission asked for, whoever sends it again: the submitter and
/// the request as sent.
fn submission_fingerprint(p: &Principal, body: &ApplicationRequest) -> Result<String, ApiError> {
    let mut value = serde_json::to_value(body).map_err(ApiError::internal)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("submitted_by".into(), p.subject.clone().into());
    }
    super::consents::fingerprint(&value)
}

/// The application an earlier submission under the same key created (200),
/// or `idempotency_key_reused` if that submission asked for something else.
async fn replay(
    state: &web::Data<AppState>,
    caller: &Caller,
    p: &Principal,
    idempotency: Option<&SubmissionKey>,
) -> Result<Option<HttpResponse>, ApiError> {
    let Some((tags, fingerprint)) = idempotency.cloned() else {
        return Ok(None);
    };
    let (shared, caller, org) = (state.clone(), caller.clone(), p.org.clone());
    let earlier = state
        .db(move |conn| {
            let Some(row) = store::find_application_by_idempotency_key(conn, &org, &tags)? else {
                return Ok(None);
            };
            if row.request_hash.as_deref() != Some(fingerprint.as_str()) {
                return Err(ApiError::IdempotencyKeyReused);
            }
            let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &row.id)?;
            Ok(Some(view(conn, &shared.data_use, &app)?))
        })
        .await?;
    Ok(earlier.map(|app| HttpResponse::Ok().json(app)))
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationPath {
    pub id: String,
}

/// One application with its matching, transitions, votes and agreement.
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = ApplicationView), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/applications/{id}")]
pub async fn get_application(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let shared = state.clone();
    let view = state
        .db(move |conn| {
            let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &id)?;
            view(conn, &shared.data_use, &app)
        })
        .await?;
    Ok(web::Json(view))
}

#[derive(Serialize, ToSchema)]
pub struct ApplicationList {
    pub applications: Vec<ApplicationView>,
    /// Pass as `after` for the next page; absent on the last. A page
    /// leaves out what the caller may not read, so it may hold fewer than
    /// `limit` and still have a next page.
    pub next_after: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationQuery {
    /// Only applications in this state.
    pub state: Option<String>,
    /// The `next_after` of the previous page (opaque).
    pub after: Option<String>,
    /// Applications per page, 1–500 (default 100).
    pub limit: Option<i64>,
}

const APPLICATION_PAGE: i64 = 100;
const MAX_APPLICATION_PAGE: i64 = 500;

/// A list position: the last application's submission time (microseconds
/// since the epoch) and id. Opaque to callers; it names nothing they could
/// not read.
fn list_cursor(row: &ApplicationRow) -> String {
    format!(
        "{}_{}",
        row.submitted_at.and_utc().timestamp_micros(),
        row.id
    )
}

fn parse_list_cursor(raw: &str) -> Option<(chrono::NaiveDateTime, String)> {
    let (micros, id) = raw.split_once('_')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?.naive_utc();
    (!id.is_empty()).then(|| (at, id.to_owned()))
}

/// Applications the caller may read, oldest first and paged: the
/// committee's work list, or a researcher's own organization's.
#[utoipa::path(tag = "data-access", params(ApplicationQuery),
    responses((status = 200, body = ApplicationList), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/applications")]
pub async fn list_applications(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ApplicationQuery>,
) -> Result<web::Json<ApplicationList>, ApiError> {
    let p = principal(&caller)?.clone();
    let wanted = query.state.clone();
    if let Some(s) = &wanted {
        if ApplicationState::parse(s).is_none() {
            return Err(ApiError::field(
                "state",
                "under_review, approved, approved_with_conditions or rejected",
            ));
        }
    }
    let limit = query.limit.unwrap_or(APPLICATION_PAGE);
    if !(1..=MAX_APPLICATION_PAGE).contains(&limit) {
        return Err(ApiError::field("limit", "1-500"));
    }
    let after = match query.after.as_deref() {
        Some(raw) => Some(
            parse_list_cursor(raw)
                .ok_or_else(|| ApiError::field("after", "a next_after from a previous page"))?,
        ),
        None => None,
    };
    let shared = state.clone();
    let (applications, next_after) = state
        .db(move |conn| {
            const EVERY_STATE: [&str; 4] = [
                "under_review",
                "approved",
                "approved_with_conditions",
                "rejected",
            ];
            let one = wanted.as_deref().map(|s| [s]);
            let filter = store::ApplicationFilter {
                states: match &one {
                    Some(one) => one,
                    None => &EVERY_STATE,
                },
                // Without a state, a researcher lists their organization's:
                // as applicant or as a partner.
                org: (wanted.is_none() && p.has(crate::auth::Role::Researcher))
                    .then_some(p.org.as_str()),
            };
            let after = after.as_ref().map(|(at, id)| (*at, id.as_str()));
            let rows = store::applications_page(conn, &filter, after, limit)?;
            let next_after = (rows.len() as i64 == limit)
                .then(|| rows.last().map(list_cursor))
                .flatten();
            let mut readable = Vec::new();
            for row in rows {
                let app = Application::from_row(row)?;
                let partner_orgs = app.partner_orgs();
                let resource = Resource::Application {
                    id: &app.row.id,
                    org: &app.row.org,
                    partner_orgs: &partner_orgs,
                };
                if shared
                    .policy
                    .is_allowed(&caller, Action::ApplicationRead, &resource)
                {
                    readable.push(app);
                }
            }
            Ok((views(conn, &shared.data_use, &readable)?, next_after))
        })
        .await?;
    Ok(web::Json(ApplicationList {
        applications,
        next_after,
    }))
}

// ---------------------------------------------------------------------------
// Review

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// `approve`, `approve_with_conditions` or `reject`.
    pub decision: String,
    /// With `approve_with_conditions`: `{"code": "TS", "months": 12}`,
    /// `{"code": "MOR", "until": "2027-06-30"}`, `{"code": "PUB"}`, `{"code": "RTN"}`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
}

/// Casts a committee member's vote. Once the votes reach the quorum of
/// `policies/data-use.toml` the application is decided; an approval creates
/// its data-use agreement.
#[utoipa::path(tag = "data-access", params(ApplicationPath), request_body = VoteRequest,
    responses((status = 200, body = ApplicationView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/applications/{id}/votes")]
pub async fn vote(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
    body: web::Json<VoteRequest>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    let p = principal(&caller)?.clone();
    let ballot = match (body.decision.as_str(), body.conditions.is_empty()) {
        ("approve", true) => Vote::Approve,
        ("reject", true) => Vote::Reject,
        ("approve_with_conditions", false) => Vote::ApproveWithConditions {
            conditions: body.conditions.clone(),
        },
        ("approve_with_conditions", true) => {
            return Err(ApiError::field("conditions", "name at least one condition"))
        }
        ("approve" | "reject", false) => {
            return Err(ApiError::field(
                "conditions",
                "only approve_with_conditions carries conditions",
            ))
        }
        _ => {
            return Err(ApiError::field(
                "decision",
                "approve, approve_with_conditions or reject",
            ))
        }
    };
    if ballot
        .conditions()
        .iter()
        .any(|c| matches!(c, Condition::TimeLimit { months } if *months == 0 || *months > 120))
    {
        return Err(ApiError::field("conditions", "TS is 1-120 months"));
    }
    let id = path.into_inner().id;
    let now = state.now();
    let shared = state.clone();
    let view = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let app = application_for(&shared, conn, &caller, Action::ApplicationVote, &id)?;
                if app.state()? != ApplicationState::UnderReview {
                    return Err(ApiError::refused(
                        Refusal::ApplicationDecided,
                        format!("the application is {}", app.row.state),
                    ));
                }
                // A reviewer from any member organization, partners
                // included, reviews their own organization's use.
                if app.has_member_org(&p.org) {
                    return Err(ApiError::Access(Refusal::ConflictOfInterest, None));
                }
                if ballot.approves() {
                    let required: Vec<String> = app
                        .matching()?
                        .into_iter()
                        .flat_map(|m| m.required_conditions)
                        .collect();
                    if let Some(missing) = required
                        .iter()
                        .find(|r| !ballot.conditions().iter().any(|c| c.code() == r.as_str()))
                    {
                        return Err(ApiError::refused(
                            Refusal::ConditionsRequired,
                            format!("the datasets require the {missing} condition"),
                        ));
                    }
                }
                store::insert_vote(
                    conn,
                    &VoteRow {
                        application_id: id.clone(),
                        voter: p.subject.clone(),
                        vote: json(&ballot)?,
                        voted_at: now.naive_utc(),
                    },
                )?;
                let votes: Vec<Vote> = store::votes_of(conn, std::slice::from_ref(&id))?
                    .iter()
                    .map(|v| parse_json(&v.vote))
                    .collect::<Result<_, _>>()?;
                if let Some(decision) = review::tally(&shared.data_use.review, &votes) {
                    let to = decision.state();
                    store::transition(
                        conn,
                        &id,
                        ApplicationState::UnderReview.as_str(),
                        to.as_str(),
                        Some(&json(&decision.conditions())?),
                        &p.subject,
                        now,
                    )?;
                    if to.is_approved() {
                        let expires_at =
                            agreement_expiry(&app.declaration, decision.conditions(), now);
                        let agreement_id = format!("dua-{}", uuid::Uuid::new_v4());
                        store::insert_agreement(
                            conn,
                            &AgreementRow {
                                id: agreement_id.clone(),
                                application_id: id.clone(),
                                state: "active".into(),
                                expires_at: expires_at.naive_utc(),
                                created_at: now.naive_utc(),
                                state_reason: None,
                                state_changed_at: None,
                            },
                        )?;
                        store::record_agreement_transition(
                            conn,
                            &agreement_id,
                            "active",
                            "approved by the data-use review committee",
                            &p.subject,
                            now,
                        )?;
                    }
                }
                let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &id)?;
                view(conn, &shared.data_use, &app)
            })
        })
        .await
        .map_err(|e| match e {
            ApiError::UniqueViolation(_) => ApiError::refused(
                Refusal::ApplicationDecided,
                "you have already voted on this application",
            ),
            other => other,
        })?;
    Ok(web::Json(view))
}

/// The end of the intended period, or earlier under a TS condition.
fn agreement_expiry(
    d: &Declaration,
    conditions: &[Condition],
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let period_end = crate::access::period_end(d.ends_on);
    conditions
        .iter()
        .filter_map(|c| match c {
            Condition::TimeLimit { months } => now.checked_add_months(chrono::Months::new(*months)),
            _ => None,
        })
        .fold(period_end, DateTime::min)
}

// ---------------------------------------------------------------------------
// Agreements

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceRequest {
    /// The SHA-256 of the current agreement text, as shown at
    /// `/v1/agreement-texts/current`.
    pub text_sha256: String,
}

#[derive(Deserialize, IntoParams)]
pub struct AgreementPath {
    pub id: String,
}

fn agreement_and_application(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<(AgreementRow, Application), ApiError> {
    let agreement = store::find_agreement(conn, id)?.ok_or(ApiError::NotFound)?;
    let app = application_for(state, conn, caller, action, &agreement.application_id)?;
    Ok((agreement, app))
}

/// A member accepts the current agreement text; the hash is recorded.
#[utoipa::path(tag = "data-access", params(AgreementPath), request_body = AcceptanceRequest,
    responses((status = 200, body = ApplicationView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/agreements/{id}/acceptances")]
pub async fn accept_agreement(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<AgreementPath>,
    body: web::Json<AcceptanceRequest>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    let p = principal(&caller)?.clone();
    let id = path.into_inner().id;
    let hash = body.text_sha256.trim().to_ascii_lowercase();
    let now = state.now();
    let shared = state.clone();
    let view = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let (agreement, app) = agreement_and_application(
                    &shared,
                    conn,
                    &caller,
                    Action::AgreementAccept,
                    &id,
                )?;
                if !app.is_member(&p) {
                    return Err(ApiError::Access(Refusal::NotAMember, None));
                }
                check_attestations(conn, &[(&p.org, &p.subject)], crate::calendar::day_of(now))?;
                let text = store::current_text(conn)?
                    .ok_or(ApiError::Access(Refusal::AgreementTextMissing, None))?;
                if text.sha256 != hash {
                    return Err(ApiError::refused(
                        Refusal::AgreementTextMismatch,
                        format!("the current text is version {}", text.version),
                    ));
                }
                store::insert_acceptance(
                    conn,
                    &AcceptanceRow {
                        agreement_id: agreement.id,
                        member_org: p.org.clone(),
                        member: p.subject.clone(),
                        text_version: text.version,
                        text_sha256: text.sha256,
                        accepted_at: now.naive_utc(),
                    },
                )?;
                view(conn, &shared.data_use, &app)
            })
        })
        .await?;
    Ok(web::Json(view))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SanctionRequest {
    /// `suspended`, `revoked` (final) or `active` (lifts a suspension).
    pub state: String,
    pub reason: String,
}

/// Suspends, revokes or reinstates an agreement (governance). Every handle
/// issued under it stops resolving at once; revocation is final.
#[utoipa::path(tag = "data-access", params(AgreementPath), request_body = SanctionRequest,
    responses((status = 200, body = ApplicationView), (status = 409, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/agreements/{id}/state")]
pub async fn sanction_agreement(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<AgreementPath>,
    body: web::Json<SanctionRequest>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    let p = registry(&state, &caller)?;
    if !["suspended", "revoked", "active"].contains(&body.state.as_str()) {
        return Err(ApiError::field("state", "suspended, revoked or active"));
    }
    let reason = text_field(&body.reason, "reason", 2000)?;
    let to = body.state.clone();
    let id = path.into_inner().id;
    let logged_id = id.clone();
    let now = state.now();
    let shared = state.clone();
    let view = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let (_, app) = agreement_and_application(
                    &shared,
                    conn,
                    &caller,
                    Action::ApplicationRead,
                    &id,
                )?;
                if !store::set_agreement_state(conn, &id, &to, &reason, now)? {
                    return Err(ApiError::Access(Refusal::AgreementRevoked, None));
                }
                store::record_agreement_transition(conn, &id, &to, &reason, &p.subject, now)?;
                view(conn, &shared.data_use, &app)
            })
        })
        .await?;
    tracing::info!(agreement = %logged_id, "agreement state changed by governance");
    Ok(web::Json(view))
}

// ---------------------------------------------------------------------------
// Public transparency register

#[derive(Serialize, ToSchema)]
pub struct ApprovedUse {
    pub organization: String,
    /// Partner organizations whose researchers are members.
    pub partner_organizations: Vec<String>,
    pub purpose: PurposeRequest,
    /// Dataset names.
    pub datasets: Vec<String>,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub approved_at: Option<DateTime<Utc>>,
    /// Industry use: a member organization is registered as industry (now
    /// or at submission). Patients consent to industry use separately.
    pub commercial: bool,
    /// Data goes abroad: declared, or a member organization is registered
    /// outside the programme's home country (now or at submission).
    pub recipients_abroad: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TransparencyRegister {
    pub approved_uses: Vec<ApprovedUse>,
}

/// The public register of approved uses: organization, purpose, datasets,
/// period, and whether the use is industrial or sends data abroad, as the
/// register says of its member organizations now. No personal data; no
/// token needed.
#[utoipa::path(tag = "data-access", security(()), responses((status = 200, body = TransparencyRegister)))]
#[get("/v1/transparency/approved-uses")]
pub async fn approved_uses(
    state: web::Data<AppState>,
) -> Result<web::Json<TransparencyRegister>, ApiError> {
    let state_in = state.clone();
    let uses = state
        .db(move |conn| {
            let rows =
                store::applications_in_state(conn, &["approved", "approved_with_conditions"])?;
            let names: std::collections::BTreeMap<String, String> = store::list_datasets(conn)?
                .into_iter()
                .map(|(d, _)| (d.id, d.name))
                .collect();
            let apps = rows
                .into_iter()
                .map(Application::from_row)
                .collect::<Result<Vec<_>, ApiError>>()?;
            let registered = registered_members(conn, &apps)?;
            apps.iter()
                .map(|app| {
                    let now = app.use_now(&state_in.data_use, &registered);
                    let (row, d) = (&app.row, &app.declaration);
                    Ok(ApprovedUse {
                        organization: row.org.clone(),
                        partner_organizations: d.partner_orgs(),
                        purpose: purpose_view(&d.purpose),
                        datasets: d
                            .datasets
                            .iter()
                            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
                            .collect(),
                        starts_on: d.starts_on,
                        ends_on: d.ends_on,
                        approved_at: row.decided_at.map(utc),
                        commercial: now.commercial,
                        recipients_abroad: now.abroad,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .await?;
    Ok(web::Json(TransparencyRegister {
        approved_uses: uses,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ProcessingTimes {
    /// Applications that reached access start (their first release).
    pub completed: usize,
    pub median_days: Option<f64>,
    pub p90_days: Option<f64>,
    /// The published standard processing time.
    pub standard_days: u32,
    /// Share of completed applications within the standard time.
    pub within_standard: Option<f64>,
}

/// Published processing times, submission to access start (median and
/// p90). No personal data; no token needed.
#[utoipa::path(tag = "data-access", security(()), responses((status = 200, body = ProcessingTimes)))]
#[get("/v1/transparency/processing-times")]
pub async fn processing_times(
    state: web::Data<AppState>,
) -> Result<web::Json<ProcessingTimes>, ApiError> {
    let standard = state.data_use.review.standard_days;
    let days: Vec<f64> = state
        .db(|conn| {
            Ok(
                store::applications_in_state(conn, &["approved", "approved_with_conditions"])?
                    .into_iter()
                    .filter_map(|row| {
                        row.access_started_at
                            .map(|start| (start - row.submitted_at).num_seconds() as f64 / 86_400.0)
                    })
                    .collect(),
            )
        })
        .await?;
    let within = (!days.is_empty()).then(|| {
        days.iter().filter(|d| **d <= f64::from(standard)).count() as f64 / days.len() as f64
    });
    let completed = days.len();
    let percentiles = review::processing_percentiles(days);
    Ok(web::Json(ProcessingTimes {
        completed,
        median_days: percentiles.map(|p| p.0),
        p90_days: percentiles.map(|p| p.1),
        standard_days: standard,
        within_standard: within,
    }))
}
