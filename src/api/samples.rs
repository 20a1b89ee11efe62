//! Genome samples: registration by hospitals and authorised sequencing
//! centres, corrections as new object versions, reads and lookups.
//!
//! Registration is idempotent by the hospital's own sample reference, which
//! only ever enters the keyed genome-ID derivation: it is not stored.

use super::consents::principal;
use super::state::AppState;
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal};
use crate::consent::document::FieldProblem;
use crate::db::samples::{self as store, ObjectRow, SampleRow};
use crate::db::{consents as patients, write_transaction, DbConnection};
use crate::error::{ApiError, Problem};
use crate::genome::{self, Assay, DataFormat, LegalClass, PlainText, SampleKind, TumourCategory};
use crate::pseudonym::genome_id::{sample_id, IdKind, PrintedId};
use crate::pseudonym::keyring::KeyDomain;
use crate::pseudonym::{LocalPatientId, PatientPseudonym};
use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const MAX_OBJECTS: usize = 64;

#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ObjectInput {
    /// Stable name within the sample, e.g. `tumour.cram`.
    pub name: String,
    /// Where the genome store keeps it (`s3://`, `gs://`, `https://`, `drs://`).
    pub uri: String,
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
    pub size_bytes: i64,
    pub sha256: String,
    pub format: String,
    /// Why the earlier version was wrong.
    pub reason: String,
}

#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct ObjectView {
    pub name: String,
    pub version: i32,
    pub uri: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub format: String,
    /// `identification_code` (sequence-level) or `sensitive_personal` (derived).
    pub legal_class: String,
    pub correction_reason: Option<String>,
    pub registered_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct SampleView {
    /// e.g. `GS1-8F3K-2M9Q-0P4R-7T2V-X`; the last character is a check character.
    pub genome_id: String,
    pub key_version: i32,
    pub hospital: String,
    pub registered_by_org: String,
    pub kind: String,
    pub assay: String,
    pub test_order_ref: Option<String>,
    pub ccat_report_id: Option<String>,
    pub tumour_category: Option<String>,
    pub registered_at: DateTime<Utc>,
    /// Every version of every object, oldest first.
    pub objects: Vec<ObjectView>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct Plain {
    pub ja: String,
    pub en: String,
}

impl From<PlainText> for Plain {
    fn from(p: PlainText) -> Self {
        Plain {
            ja: p.ja.to_owned(),
            en: p.en.to_owned(),
        }
    }
}

#[derive(Serialize, ToSchema, Debug)]
pub struct PatientDataView {
    pub name: String,
    pub format: String,
    pub legal_class: String,
    pub explanation: Plain,
}

/// A sample as a patient reads it: what was examined, in plain words, and
/// no storage locations.
#[derive(Serialize, ToSchema, Debug)]
pub struct PatientSampleView {
    pub genome_id: String,
    pub registered_at: DateTime<Utc>,
    pub what: Plain,
    pub test: Plain,
    pub data: Vec<PatientDataView>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct PatientSampleList {
    pub samples: Vec<PatientSampleView>,
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

#[derive(Serialize, ToSchema)]
pub struct AuthorizationList {
    pub hospital: String,
    pub centers: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct CenterPath {
    pub center_org: String,
}

fn check_ref(field: &str, value: &str, max: usize, problems: &mut Vec<FieldProblem>) {
    if value.trim().is_empty() || value.len() > max || value.chars().any(char::is_control) {
        problems.push(FieldProblem::new(
            field,
            format!("must be 1-{max} characters without control characters"),
        ));
    }
}

fn check_object(
    prefix: &str,
    uri: &str,
    size: i64,
    sha256: &str,
    format: &str,
    problems: &mut Vec<FieldProblem>,
) -> Option<DataFormat> {
    let scheme_ok = ["s3://", "gs://", "https://", "drs://"]
        .iter()
        .any(|s| uri.starts_with(s));
    if !scheme_ok || uri.len() > 2048 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
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
    parsed
}

/// Parses a genome ID from a path or body, naming the field when it fails.
pub(crate) fn parse_genome_id(raw: &str, field: &str) -> Result<PrintedId, ApiError> {
    PrintedId::parse(IdKind::Sample, raw).map_err(|_| ApiError::InvalidGenomeId {
        field: field.to_owned(),
    })
}

fn object_view(o: &ObjectRow) -> ObjectView {
    ObjectView {
        name: o.name.clone(),
        version: o.version,
        uri: o.uri.clone(),
        size_bytes: o.size_bytes,
        sha256: o.sha256.clone(),
        format: o.format.clone(),
        legal_class: o.legal_class.clone(),
        correction_reason: o.correction_reason.clone(),
        registered_at: crate::db::documents::utc(o.registered_at),
    }
}

fn sample_view(s: &SampleRow, objects: &[ObjectRow]) -> SampleView {
    SampleView {
        genome_id: s.genome_id.clone(),
        key_version: s.key_version,
        hospital: s.hospital_org.clone(),
        registered_by_org: s.registered_by_org.clone(),
        kind: s.kind.clone(),
        assay: s.assay.clone(),
        test_order_ref: s.test_order_ref.clone(),
        ccat_report_id: s.ccat_report_id.clone(),
        tumour_category: s.tumour_category.clone(),
        registered_at: store::registered_at(s),
        objects: objects
            .iter()
            .filter(|o| o.genome_id == s.genome_id)
            .map(object_view)
            .collect(),
    }
}

/// The canonical content of a registration, for idempotency: everything but
/// the hospital's own identifiers.
#[derive(Serialize)]
struct SampleFingerprint<'a> {
    hospital: &'a str,
    patient: &'a str,
    kind: &'a str,
    assay: &'a str,
    test_order_ref: &'a Option<String>,
    ccat_report_id: &'a Option<String>,
    tumour_category: &'a Option<String>,
    objects: Vec<(&'a str, &'a str, i64, String, &'a str)>,
}

/// Finds the patient a request names at `hospital`, trying every patient
/// key version for a local ID.
fn resolve_patient(
    state: &AppState,
    conn: &mut DbConnection,
    hospital: &str,
    local: &Option<LocalPatientId>,
    patient_ref: &Option<PatientPseudonym>,
) -> Result<PatientPseudonym, ApiError> {
    let (candidates, field) = match (local, patient_ref) {
        (Some(local), _) => (
            state.keys.patient_candidates(hospital, local),
            "local_patient_id",
        ),
        (None, Some(r)) => (vec![r.clone()], "patient_ref"),
        (None, None) => {
            return Err(ApiError::field(
                "local_patient_id",
                "name the patient by local_patient_id or patient_ref",
            ))
        }
    };
    for candidate in candidates {
        if let Some(row) = patients::find_patient(conn, candidate.as_str())? {
            if row.hospital_org == hospital {
                return Ok(candidate);
            }
        }
    }
    // Another hospital's patient is indistinguishable from no patient.
    Err(ApiError::UnknownPatient { field })
}

fn caller_org_default(p: &Principal, hospital: &Option<String>) -> String {
    hospital.clone().unwrap_or_else(|| p.org.clone())
}

enum Registered {
    Created(SampleRow, Vec<ObjectRow>),
    Replayed(SampleRow, Vec<ObjectRow>),
}

/// Registers a genome sample and its data objects (references only). Hospital
/// staff register for their own patients; a sequencing centre for the
/// hospitals that authorised it. Repeating the same registration returns the
/// same genome ID.
#[utoipa::path(tag = "samples", request_body = SampleRequest,
    responses(
        (status = 201, body = SampleView),
        (status = 200, body = SampleView, description = "The same sample was registered before; nothing changed"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/samples")]
pub async fn register_sample(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<SampleRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    let body = body.into_inner();
    let hospital = caller_org_default(&p, &body.hospital);
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
    check_ref("sample_ref", &body.sample_ref, 128, &mut problems);
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
            check_ref(field, v, 128, &mut problems);
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
    let mut formats = Vec::new();
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
        formats.push(check_object(
            &prefix,
            &o.uri,
            o.size_bytes,
            &o.sha256,
            &o.format,
            &mut problems,
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let (Some(kind), Some(assay)) = (kind, assay) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let now = state.now();
    let shared = state.clone();
    let body_objects = body.objects.clone();
    let outcome = state
        .db(move |conn| {
            let mut known: Option<(Vec<String>, String)> = None;
            let context = &mut known;
            let attempt = write_transaction(conn, |conn| {
                let centers = store::authorized_centers(conn, &hospital)?;
                // May this caller register for this hospital at all? Asked
                // before looking the patient up, so a refusal says nothing
                // about which patients exist.
                shared.authorize(
                    &caller,
                    Action::SampleRegister,
                    &Resource::Patient {
                        pseudonym: "-",
                        hospital: &hospital,
                        centers: &centers,
                    },
                )?;
                let pseudonym = resolve_patient(&shared, conn, &hospital, &local, &patient_ref)?;
                let fingerprint = SampleFingerprint {
                    hospital: &hospital,
                    patient: pseudonym.as_str(),
                    kind: kind.as_str(),
                    assay: assay.as_str(),
                    test_order_ref: &body.test_order_ref,
                    ccat_report_id: &body.ccat_report_id,
                    tumour_category: &body.tumour_category,
                    objects: {
                        let mut o: Vec<_> = body
                            .objects
                            .iter()
                            .map(|o| {
                                (
                                    o.name.as_str(),
                                    o.uri.as_str(),
                                    o.size_bytes,
                                    o.sha256.to_ascii_lowercase(),
                                    o.format.as_str(),
                                )
                            })
                            .collect();
                        o.sort();
                        o
                    },
                };
                let request_hash = hex::encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    &serde_json::to_vec(&fingerprint).map_err(ApiError::internal)?,
                ));
                let candidates: Vec<String> = shared
                    .keys
                    .newest_first(KeyDomain::Sample)
                    .map(|k| sample_id(k, &hospital, &body.sample_ref).to_string())
                    .collect();
                *context = Some((candidates.clone(), request_hash.clone()));
                // Under an older key the sample has another ID, which no
                // constraint would catch: look for it. A collision under the
                // current key is caught by the primary key below.
                if let Some(existing) = store::find_any(conn, &candidates[1..])? {
                    return settle_existing(conn, existing, &body.objects, &request_hash);
                }
                let key = shared.keys.current(KeyDomain::Sample);
                let genome_id = sample_id(key, &hospital, &body.sample_ref).to_string();
                let sample = SampleRow {
                    genome_id: genome_id.clone(),
                    key_version: i32::try_from(key.version).unwrap_or(i32::MAX),
                    patient_pseudonym: pseudonym.as_str().to_owned(),
                    hospital_org: hospital.clone(),
                    registered_by_org: p.org.clone(),
                    registered_by: p.subject.clone(),
                    kind: kind.as_str().to_owned(),
                    assay: assay.as_str().to_owned(),
                    test_order_ref: body.test_order_ref.clone(),
                    ccat_report_id: body.ccat_report_id.clone(),
                    tumour_category: body.tumour_category.clone(),
                    request_hash,
                    registered_at: now.naive_utc(),
                };
                let rows: Vec<ObjectRow> = body
                    .objects
                    .iter()
                    .zip(&formats)
                    .map(|(o, format)| {
                        let format = format.unwrap_or(DataFormat::Cram);
                        ObjectRow {
                            genome_id: genome_id.clone(),
                            name: o.name.clone(),
                            version: 1,
                            uri: o.uri.clone(),
                            size_bytes: o.size_bytes,
                            sha256: o.sha256.to_ascii_lowercase(),
                            format: format.as_str().to_owned(),
                            legal_class: genome::legal_class(format, assay).as_str().to_owned(),
                            correction_reason: None,
                            registered_by: p.subject.clone(),
                            registered_at: now.naive_utc(),
                        }
                    })
                    .collect();
                store::insert_sample(conn, &sample, &rows)?;
                Ok(Registered::Created(sample, rows))
            });
            match attempt {
                // The genome ID or an object URI exists already: a repeat, a
                // conflicting repeat, or a URI claimed by another sample.
                Err(ApiError::UniqueViolation(cause)) => {
                    let Some((candidates, request_hash)) = known else {
                        return Err(ApiError::Internal(cause));
                    };
                    if let Some(existing) = store::find_any(conn, &candidates)? {
                        return settle_existing(conn, existing, &body_objects, &request_hash);
                    }
                    Err(uri_conflict(conn, &body_objects)?.unwrap_or(ApiError::Internal(cause)))
                }
                other => other,
            }
        })
        .await?;
    match outcome {
        Registered::Created(sample, objects) => {
            // The genome ID and object locations are genome references: never logged.
            tracing::info!(objects = objects.len(), "genome sample registered");
            Ok(HttpResponse::Created().json(sample_view(&sample, &objects)))
        }
        Registered::Replayed(sample, objects) => Ok(HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(sample_view(&sample, &objects))),
    }
}

/// The answer to registering a sample that exists: the same registration
/// again is replayed; an object with another checksum, or other details,
/// is a conflict.
fn settle_existing(
    conn: &mut DbConnection,
    existing: SampleRow,
    requested: &[ObjectInput],
    request_hash: &str,
) -> Result<Registered, ApiError> {
    let objects = store::objects_of(conn, std::slice::from_ref(&existing.genome_id))?;
    if requested.iter().any(|o| {
        objects
            .iter()
            .any(|e| e.name == o.name && !e.sha256.eq_ignore_ascii_case(&o.sha256))
    }) {
        return Err(ApiError::ObjectChecksumConflict);
    }
    if existing.request_hash == request_hash {
        Ok(Registered::Replayed(existing, objects))
    } else {
        Err(ApiError::SampleConflict)
    }
}

/// Why a new sample's objects could not be stored, if a URI is taken.
fn uri_conflict(
    conn: &mut DbConnection,
    requested: &[ObjectInput],
) -> Result<Option<ApiError>, ApiError> {
    let uris: Vec<String> = requested.iter().map(|o| o.uri.clone()).collect();
    let taken = store::objects_by_uri(conn, &uris)?;
    Ok(taken.first().map(|t| {
        let same_bytes = requested
            .iter()
            .any(|o| o.uri == t.uri && o.sha256.eq_ignore_ascii_case(&t.sha256));
        if same_bytes {
            ApiError::ObjectUriInUse
        } else {
            ApiError::ObjectChecksumConflict
        }
    }))
}

/// Loads a sample and checks `action` on its patient; an invisible sample
/// is a 404 like a missing one.
fn sample_for(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    genome_id: &PrintedId,
) -> Result<SampleRow, ApiError> {
    let sample = store::find(conn, &genome_id.to_string())?.ok_or(ApiError::NotFound)?;
    let centers = store::authorized_centers(conn, &sample.hospital_org)?;
    state.authorize_patient(
        caller,
        action,
        &sample.patient_pseudonym,
        &sample.hospital_org,
        &centers,
    )?;
    Ok(sample)
}

/// One sample with every version of its data objects.
#[utoipa::path(tag = "samples", params(GenomeIdPath),
    responses((status = 200, body = SampleView), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/samples/{genome_id}")]
pub async fn get_sample(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<GenomeIdPath>,
) -> Result<web::Json<SampleView>, ApiError> {
    principal(&caller)?;
    let genome_id = parse_genome_id(&path.genome_id, "genome_id")?;
    let shared = state.clone();
    let (sample, objects) = state
        .db(move |conn| {
            let sample = sample_for(&shared, conn, &caller, Action::SampleRead, &genome_id)?;
            let objects = store::objects_of(conn, std::slice::from_ref(&sample.genome_id))?;
            Ok((sample, objects))
        })
        .await?;
    Ok(web::Json(sample_view(&sample, &objects)))
}

/// Registers a corrected version of a data object. Earlier versions stay:
/// objects are immutable once registered.
#[utoipa::path(tag = "samples", params(ObjectPath), request_body = CorrectionRequest,
    responses((status = 201, body = SampleView), (status = 200, body = SampleView, description = "This correction was registered before"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/samples/{genome_id}/objects/{name}/versions")]
pub async fn correct_object(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ObjectPath>,
    body: web::Json<CorrectionRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    let genome_id = parse_genome_id(&path.genome_id, "genome_id")?;
    let name = path.name.clone();
    let body = body.into_inner();
    let mut problems = Vec::new();
    let format = check_object(
        "",
        &body.uri,
        body.size_bytes,
        &body.sha256,
        &body.format,
        &mut problems,
    );
    check_ref("reason", &body.reason, 2000, &mut problems);
    for problem in &mut problems {
        problem.field = problem.field.trim_start_matches('.').to_owned();
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let format = format.ok_or_else(|| ApiError::internal("validated format missing"))?;
    let now = state.now();
    let shared = state.clone();
    let (created, sample, objects) = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let sample = sample_for(&shared, conn, &caller, Action::SampleCorrect, &genome_id)?;
                let objects = store::objects_of(conn, std::slice::from_ref(&sample.genome_id))?;
                let latest = objects
                    .iter()
                    .filter(|o| o.name == name)
                    .max_by_key(|o| o.version)
                    .ok_or(ApiError::NotFound)?;
                if latest.uri == body.uri && latest.sha256.eq_ignore_ascii_case(&body.sha256) {
                    return Ok((false, sample, objects));
                }
                if let Some(taken) =
                    store::objects_by_uri(conn, std::slice::from_ref(&body.uri))?.first()
                {
                    return Err(if taken.sha256.eq_ignore_ascii_case(&body.sha256) {
                        ApiError::ObjectUriInUse
                    } else {
                        ApiError::ObjectChecksumConflict
                    });
                }
                let assay = Assay::parse(&sample.assay)
                    .ok_or_else(|| ApiError::internal("stored assay"))?;
                let row = ObjectRow {
                    genome_id: sample.genome_id.clone(),
                    name: name.clone(),
                    version: latest.version + 1,
                    uri: body.uri.clone(),
                    size_bytes: body.size_bytes,
                    sha256: body.sha256.to_ascii_lowercase(),
                    format: format.as_str().to_owned(),
                    legal_class: genome::legal_class(format, assay).as_str().to_owned(),
                    correction_reason: Some(body.reason.clone()),
                    registered_by: p.subject.clone(),
                    registered_at: now.naive_utc(),
                };
                store::insert_object(conn, &row)?;
                let mut objects = objects;
                objects.push(row);
                Ok((true, sample, objects))
            })
        })
        .await?;
    let view = sample_view(&sample, &objects);
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(view)
    })
}

/// A patient's samples in plain Japanese and English: what was examined,
/// which test, and what the law says about the data. No storage locations.
/// Readable by the patient themself, their hospital, and auditors.
#[utoipa::path(tag = "samples", params(super::consents::PatientPath),
    responses((status = 200, body = PatientSampleList), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/patients/{patient_ref}/samples")]
pub async fn patient_samples(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<super::consents::PatientPath>,
) -> Result<web::Json<PatientSampleList>, ApiError> {
    principal(&caller)?;
    let pseudonym = PatientPseudonym::parse(&path.patient_ref).ok_or(ApiError::NotFound)?;
    let shared = state.clone();
    let (samples, objects) = state
        .db(move |conn| {
            let patient =
                patients::find_patient(conn, pseudonym.as_str())?.ok_or(ApiError::NotFound)?;
            let centers = store::authorized_centers(conn, &patient.hospital_org)?;
            shared.authorize_patient(
                &caller,
                Action::SampleRead,
                pseudonym.as_str(),
                &patient.hospital_org,
                &centers,
            )?;
            let samples = store::for_patient(conn, pseudonym.as_str())?;
            let ids: Vec<String> = samples.iter().map(|s| s.genome_id.clone()).collect();
            let objects = store::objects_of(conn, &ids)?;
            Ok((samples, objects))
        })
        .await?;
    let samples = samples
        .iter()
        .filter_map(|s| {
            let kind = SampleKind::parse(&s.kind)?;
            let assay = Assay::parse(&s.assay)?;
            // Only the current version of each object.
            let mut current: std::collections::BTreeMap<&str, &ObjectRow> = Default::default();
            for o in objects.iter().filter(|o| o.genome_id == s.genome_id) {
                current.insert(&o.name, o);
            }
            Some(PatientSampleView {
                genome_id: s.genome_id.clone(),
                registered_at: store::registered_at(s),
                what: genome::describe_kind(kind).into(),
                test: genome::describe_assay(assay).into(),
                data: current
                    .values()
                    .filter_map(|o| {
                        let class = LegalClass::parse(&o.legal_class)?;
                        Some(PatientDataView {
                            name: o.name.clone(),
                            format: o.format.clone(),
                            legal_class: o.legal_class.clone(),
                            explanation: genome::describe_legal_class(class).into(),
                        })
                    })
                    .collect(),
            })
        })
        .collect();
    Ok(web::Json(PatientSampleList { samples }))
}

fn check_org(field: &str, org: &str) -> Result<(), ApiError> {
    let ok = !org.is_empty()
        && org.len() <= 128
        && org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
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
    body: web::Json<AuthorizationRequest>,
) -> Result<web::Json<AuthorizationList>, ApiError> {
    let p = principal(&caller)?.clone();
    state.authorize(
        &caller,
        Action::SequencingAuthorize,
        &Resource::Hospital { org: &p.org },
    )?;
    check_org("center_org", &body.center_org)?;
    let now = state.now();
    let center = body.center_org.clone();
    let org = p.org.clone();
    let org_name = p.org.clone();
    let centers = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                store::authorize_center(conn, &org, &center, &p.subject, now)?;
                Ok(store::authorized_centers(conn, &org)?)
            })
        })
        .await?;
    Ok(web::Json(AuthorizationList {
        hospital: org_name,
        centers,
    }))
}

/// The sequencing centres this hospital has authorised.
#[utoipa::path(tag = "samples", responses((status = 200, body = AuthorizationList)))]
#[get("/v1/sequencing-authorizations")]
pub async fn list_centers(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<AuthorizationList>, ApiError> {
    let p = principal(&caller)?.clone();
    state.authorize(
        &caller,
        Action::SequencingAuthorize,
        &Resource::Hospital { org: &p.org },
    )?;
    let org = p.org.clone();
    let centers = state
        .db(move |conn| Ok(store::authorized_centers(conn, &org)?))
        .await?;
    Ok(web::Json(AuthorizationList {
        hospital: p.org,
        centers,
    }))
}

/// Revokes a sequencing centre's authorisation; it can no longer register
/// or read this hospital's samples.
#[utoipa::path(tag = "samples", params(CenterPath), responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[delete("/v1/sequencing-authorizations/{center_org}")]
pub async fn revoke_center(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<CenterPath>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    state.authorize(
        &caller,
        Action::SequencingAuthorize,
        &Resource::Hospital { org: &p.org },
    )?;
    let now = state.now();
    let center = path.center_org.clone();
    let revoked = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                Ok(store::revoke_center(conn, &p.org, &center, now)?)
            })
        })
        .await?;
    if revoked {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}
