//! Genome samples: registration by hospitals and authorised sequencing
//! centres, corrections as new object versions, reads and lookups. Requests
//! are parsed here into the commands of `app::samples`.

use super::consents::patient_ref;
use super::patients::PatientPath;
use super::problem::ApiError;
use super::state::AppState;
use crate::api::extract::Json;
use crate::app::gates::principal;
use crate::app::samples::{
    self, AuthorizationList, Correction, NewObject, NewSample, ObjectLocation, PatientNamed,
    PatientSampleList, Registered, SampleView,
};
use crate::app::text::Text;
use crate::app::AppError;
use crate::auth::Caller;
use crate::consent::document::FieldProblem;
use crate::genome::{Assay, DataFormat, SampleKind, TumourCategory};
use crate::pseudonym::genome_id::{IdKind, PrintedId};
use crate::pseudonym::{LocalPatientId, PatientPseudonym};
use actix_web::{delete, get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

/// Data objects per registered sample, at most.
pub const MAX_OBJECTS: usize = 64;
/// A hospital's or a centre's own reference: a specimen, an order, a
/// C-CAT report.
pub const REFERENCE: Text = Text::line(128);
/// Why an object's earlier version was wrong.
pub const CORRECTION_REASON: Text = Text::prose(2000);
/// Where a genome store may keep an object.
pub const URI_SCHEMES: [&str; 4] = ["s3://", "gs://", "https://", "drs://"];
/// The longest object URI, in characters.
pub const MAX_URI: usize = 2048;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(register_sample)
        .service(get_sample)
        .service(correct_object)
        .service(patient_samples)
        .service(authorize_center)
        .service(list_centers)
        .service(revoke_center);
}

#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ObjectInput {
    /// Stable name within the sample, e.g. `tumour.cram`.
    pub name: String,
    /// Where the genome store keeps it (`s3://`, `gs://`, `https://`, `drs://`).
    pub uri: String,
    #[serde(deserialize_with = "crate::integral::number")]
    pub size_bytes: i64,
    /// Hex SHA-256 of the object's bytes.
    pub sha256: String,
    /// `cram`, `bam`, `vcf` or `fastq`.
    pub format: String,
}

/// A sample to register. Hospitals name their own patient; sequencing
/// centres also name the hospital that authorised them.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    /// The patient's hospital. Defaults to the caller's organization.
    #[serde(default)]
    pub hospital: Option<String>,
    /// The hospital's patient ID (keyed at once, never stored) …
    #[serde(default)]
    pub local_patient_id: Option<String>,
    /// … or the patient's `patient_ref`.
    #[serde(default)]
    pub patient_ref: Option<String>,
    /// The hospital's own specimen reference; makes registration idempotent.
    pub sample_ref: String,
    /// `germline` or `tumour`.
    pub kind: String,
    /// `wgs`, `wes`, `cgp_panel` or `rna`.
    pub assay: String,
    #[serde(default)]
    pub test_order_ref: Option<String>,
    #[serde(default)]
    pub ccat_report_id: Option<String>,
    /// `solid` or `haematologic`; tumour samples only.
    #[serde(default)]
    pub tumour_category: Option<String>,
    pub objects: Vec<ObjectInput>,
}

/// A corrected object: a new version under the same name.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CorrectionRequest {
    pub uri: String,
    #[serde(deserialize_with = "crate::integral::number")]
    pub size_bytes: i64,
    pub sha256: String,
    pub format: String,
    /// Why the earlier version was wrong.
    pub reason: String,
}

#[derive(Deserialize, IntoParams)]
pub struct GenomeIdPath {
    pub genome_id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct ObjectPath {
    pub genome_id: String,
    pub name: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRequest {
    /// The sequencing centre's organization.
    pub center_org: String,
}

#[derive(Deserialize, IntoParams)]
pub struct CenterPath {
    pub center_org: String,
}

/// Checks a reference or a reason by its rule; the value is kept as sent.
fn check_ref(field: &str, value: &str, rule: Text, problems: &mut Vec<FieldProblem>) {
    if let Err(AppError::Validation(mut found)) = rule.check(value, field) {
        problems.append(&mut found);
    }
}

fn check_object(
    prefix: &str,
    uri: &str,
    size: i64,
    sha256: &str,
    format: &str,
    problems: &mut Vec<FieldProblem>,
) -> Option<ObjectLocation> {
    let scheme_ok = URI_SCHEMES.iter().any(|s| uri.starts_with(s));
    if !scheme_ok
        || uri.chars().count() > MAX_URI
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        problems.push(FieldProblem::new(
            format!("{prefix}.uri"),
            "must be an s3://, gs://, https:// or drs:// URI without spaces",
        ));
    }
    if size < 0 {
        problems.push(FieldProblem::new(
            format!("{prefix}.size_bytes"),
            "must not be negative",
        ));
    }
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        problems.push(FieldProblem::new(
            format!("{prefix}.sha256"),
            "must be 64 hex digits",
        ));
    }
    let parsed = DataFormat::parse(format);
    if parsed.is_none() {
        problems.push(FieldProblem::new(
            format!("{prefix}.format"),
            format!("must be one of {}", DataFormat::choices()),
        ));
    }
    Some(ObjectLocation {
        uri: uri.to_owned(),
        size_bytes: size,
        sha256: sha256.to_ascii_lowercase(),
        format: parsed?,
    })
}

/// Parses a genome ID from a path or body, naming the field when it fails.
pub(crate) fn parse_genome_id(raw: &str, field: &str) -> Result<PrintedId, AppError> {
    PrintedId::parse(IdKind::Sample, raw).map_err(|_| AppError::InvalidGenomeId {
        field: field.to_owned(),
    })
}

impl TryFrom<SampleRequest> for NewSample {
    type Error = AppError;

    fn try_from(body: SampleRequest) -> Result<Self, AppError> {
        let mut problems = Vec::new();
        let local = body
            .local_patient_id
            .as_deref()
            .map(|raw| {
                LocalPatientId::parse(raw)
                    .map_err(|m| problems.push(FieldProblem::new("local_patient_id", m)))
                    .ok()
            })
            .unwrap_or(None);
        let patient_ref = match (&body.local_patient_id, &body.patient_ref) {
            (Some(_), Some(_)) => {
                problems.push(FieldProblem::new(
                    "patient_ref",
                    "give local_patient_id or patient_ref, not both",
                ));
                None
            }
            (None, None) => {
                problems.push(FieldProblem::new(
                    "local_patient_id",
                    "name the patient by local_patient_id or patient_ref",
                ));
                None
            }
            (None, Some(r)) => {
                let parsed = PatientPseudonym::parse(r);
                if parsed.is_none() {
                    problems.push(FieldProblem::new(
                        "patient_ref",
                        "must be 64 lowercase hex digits",
                    ));
                }
                parsed
            }
            (Some(_), None) => None,
        };
        check_ref("sample_ref", &body.sample_ref, REFERENCE, &mut problems);
        let kind = SampleKind::parse(&body.kind);
        if kind.is_none() {
            problems.push(FieldProblem::new(
                "kind",
                format!("must be one of {}", SampleKind::choices()),
            ));
        }
        let assay = Assay::parse(&body.assay);
        if assay.is_none() {
            problems.push(FieldProblem::new(
                "assay",
                format!("must be one of {}", Assay::choices()),
            ));
        }
        for (field, value) in [
            ("test_order_ref", &body.test_order_ref),
            ("ccat_report_id", &body.ccat_report_id),
        ] {
            if let Some(v) = value {
                check_ref(field, v, REFERENCE, &mut problems);
            }
        }
        match (&body.tumour_category, kind) {
            (Some(c), _) if TumourCategory::parse(c).is_none() => problems.push(FieldProblem::new(
                "tumour_category",
                format!("must be one of {}", TumourCategory::choices()),
            )),
            (Some(_), Some(SampleKind::Germline)) => problems.push(FieldProblem::new(
                "tumour_category",
                "only tumour samples have a tumour category",
            )),
            _ => {}
        }
        if body.objects.is_empty() || body.objects.len() > MAX_OBJECTS {
            problems.push(FieldProblem::new(
                "objects",
                format!("register 1-{MAX_OBJECTS} data objects"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut objects = Vec::with_capacity(body.objects.len());
        for (i, o) in body.objects.iter().enumerate() {
            let prefix = format!("objects[{i}]");
            if o.name.is_empty()
                || o.name.len() > 128
                || !o
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                problems.push(FieldProblem::new(
                    format!("{prefix}.name"),
                    "1-128 characters of A-Z, a-z, 0-9, `.`, `_`, `-`",
                ));
            } else if !names.insert(o.name.as_str()) {
                problems.push(FieldProblem::new(
                    format!("{prefix}.name"),
                    "duplicate object name",
                ));
            }
            let location = check_object(
                &prefix,
                &o.uri,
                o.size_bytes,
                &o.sha256,
                &o.format,
                &mut problems,
            );
            objects.extend(location.map(|location| NewObject {
                name: o.name.clone(),
                location,
            }));
        }
        let patient = match (local, patient_ref) {
            (Some(local), _) => Some(PatientNamed::Local(local)),
            (None, Some(r)) => Some(PatientNamed::Ref(r)),
            (None, None) => None,
        };
        AppError::unless_problems(problems)?;
        let (Some(patient), Some(kind), Some(assay)) = (patient, kind, assay) else {
            return Err(AppError::internal(
                "a parse failed without naming its field",
            ));
        };
        Ok(NewSample {
            hospital: body.hospital,
            patient,
            sample_ref: body.sample_ref,
            kind,
            assay,
            test_order_ref: body.test_order_ref,
            ccat_report_id: body.ccat_report_id,
            tumour_category: body.tumour_category,
            objects,
        })
    }
}

/// The answer to a registration: 201 for a new sample or version, 200
/// with `Idempotent-Replayed: true` for the same one again.
fn registered(registered: Registered) -> HttpResponse {
    if registered.replayed {
        HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(registered.sample)
    } else {
        HttpResponse::Created().json(registered.sample)
    }
}

/// Registers a genome sample and its data objects (references only). Hospital
/// staff register for their own patients; a sequencing centre for the
/// hospitals that authorised it. Repeating the same registration returns the
/// same genome ID.
#[utoipa::path(tag = "samples", request_body = SampleRequest,
    responses(
        (status = 201, body = SampleView),
        (status = 200, body = SampleView, description = "The same sample was registered before; nothing changed")))]
#[post("/v1/samples")]
pub async fn register_sample(
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<SampleRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let new = NewSample::try_from(body.into_inner())?;
    let outcome = state
        .run(move |ctx| samples::register(ctx, &caller, new))
        .await?;
    Ok(registered(outcome))
}

/// One sample with every version of its data objects.
#[utoipa::path(tag = "samples", params(GenomeIdPath),
    responses((status = 200, body = SampleView)))]
#[get("/v1/samples/{genome_id}")]
pub async fn get_sample(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<GenomeIdPath>,
) -> Result<web::Json<SampleView>, ApiError> {
    principal(&caller)?;
    let genome_id = parse_genome_id(&path.genome_id, "genome_id")?;
    let sample = state
        .run(move |ctx| samples::get(ctx, &caller, &genome_id))
        .await?;
    Ok(web::Json(sample))
}

/// Registers a corrected version of a data object. Earlier versions stay:
/// objects are immutable once registered.
#[utoipa::path(tag = "samples", params(ObjectPath), request_body = CorrectionRequest,
    responses((status = 201, body = SampleView), (status = 200, body = SampleView, description = "This correction was registered before")))]
#[post("/v1/samples/{genome_id}/objects/{name}/versions")]
pub async fn correct_object(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ObjectPath>,
    body: Json<CorrectionRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let genome_id = parse_genome_id(&path.genome_id, "genome_id")?;
    let body = body.into_inner();
    let mut problems = Vec::new();
    let location = check_object(
        "",
        &body.uri,
        body.size_bytes,
        &body.sha256,
        &body.format,
        &mut problems,
    );
    check_ref("reason", &body.reason, CORRECTION_REASON, &mut problems);
    for problem in &mut problems {
        problem.field = problem.field.trim_start_matches('.').to_owned();
    }
    AppError::unless_problems(problems)?;
    let location =
        location.ok_or_else(|| AppError::internal("a parse failed without naming its field"))?;
    let fix = Correction {
        genome_id,
        name: path.name.clone(),
        location,
        reason: body.reason,
    };
    let outcome = state
        .run(move |ctx| samples::correct(ctx, &caller, fix))
        .await?;
    Ok(registered(outcome))
}

/// A patient's samples in plain Japanese and English: what was examined,
/// which test, and what the law says about the data. No storage locations.
/// Readable by the patient themself, their hospital, and auditors.
#[utoipa::path(tag = "samples", params(PatientPath),
    responses((status = 200, body = PatientSampleList)))]
#[get("/v1/patients/{patient_ref}/samples")]
pub async fn patient_samples(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<PatientPath>,
) -> Result<web::Json<PatientSampleList>, ApiError> {
    principal(&caller)?;
    let patient = patient_ref(&path.patient_ref)?;
    let list = state
        .run(move |ctx| samples::of_patient(ctx, &caller, &patient))
        .await?;
    Ok(web::Json(list))
}

fn check_org(field: &str, org: &str) -> Result<(), AppError> {
    let ok = !org.is_empty()
        && org.len() <= 128
        && org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AppError::field(
            field,
            "an organization name: 1-128 of a-z, 0-9, `-`, `_`, `.`",
        ))
    }
}

/// Authorises a sequencing centre to register this hospital's samples.
#[utoipa::path(tag = "samples", request_body = AuthorizationRequest, responses((status = 200, body = AuthorizationList)))]
#[post("/v1/sequencing-authorizations")]
pub async fn authorize_center(
    state: web::Data<AppState>,
    caller: Caller,
    body: Json<AuthorizationRequest>,
) -> Result<web::Json<AuthorizationList>, ApiError> {
    principal(&caller)?;
    check_org("center_org", &body.center_org)?;
    let center = body.into_inner().center_org;
    let list = state
        .run(move |ctx| samples::authorize_center(ctx, &caller, &center))
        .await?;
    Ok(web::Json(list))
}

/// The sequencing centres this hospital has authorised.
#[utoipa::path(tag = "samples", responses((status = 200, body = AuthorizationList)))]
#[get("/v1/sequencing-authorizations")]
pub async fn list_centers(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<AuthorizationList>, ApiError> {
    principal(&caller)?;
    let list = state.run(move |ctx| samples::centers(ctx, &caller)).await?;
    Ok(web::Json(list))
}

/// Revokes a sequencing centre's authorisation; it can no longer register
/// or read this hospital's samples.
#[utoipa::path(tag = "samples", params(CenterPath), responses((status = 204)))]
#[delete("/v1/sequencing-authorizations/{center_org}")]
pub async fn revoke_center(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<CenterPath>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let center = path.into_inner().center_org;
    state
        .run(move |ctx| samples::revoke_center(ctx, &caller, &center))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
