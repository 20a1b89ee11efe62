//! Registering a genome sample and its data objects (references only).

use super::*;
use crate::app::gates::principal;
use crate::auth::policy::Resource;
use crate::db::consents as patients;
use crate::genome::{self, Assay, SampleKind};
use crate::pseudonym::genome_id::sample_id;
use crate::pseudonym::keyring::KeyDomain;
use crate::pseudonym::{LocalPatientId, PatientPseudonym};

/// How a registration names its patient.
#[derive(Debug)]
pub enum PatientNamed {
    /// By the hospital's own ID, keyed at once and never stored.
    Local(LocalPatientId),
    /// By the patient's `patient_ref`.
    Ref(PatientPseudonym),
}

/// One data object of a new sample.
#[derive(Debug, Clone)]
pub struct NewObject {
    /// Stable name within the sample, e.g. `tumour.cram`.
    pub name: String,
    pub location: ObjectLocation,
}

/// A sample to register. Hospitals name their own patient; sequencing
/// centres also name the hospital that authorised them.
#[derive(Debug)]
pub struct NewSample {
    /// The patient's hospital; the caller's organization when absent.
    pub hospital: Option<String>,
    pub patient: PatientNamed,
    /// The hospital's own specimen reference; makes registration idempotent.
    pub sample_ref: String,
    pub kind: SampleKind,
    pub assay: Assay,
    pub test_order_ref: Option<String>,
    pub ccat_report_id: Option<String>,
    /// `solid` or `haematologic`; tumour samples only.
    pub tumour_category: Option<String>,
    pub objects: Vec<NewObject>,
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
    objects: Vec<(&'a str, &'a str, i64, &'a str, &'a str)>,
}

impl NewSample {
    /// `sha256` hex of the registration's canonical content.
    fn fingerprint(&self, hospital: &str, patient: &PatientPseudonym) -> Result<String, AppError> {
        let mut objects: Vec<_> = self
            .objects
            .iter()
            .map(|o| {
                (
                    o.name.as_str(),
                    o.location.uri.as_str(),
                    o.location.size_bytes,
                    o.location.sha256.as_str(),
                    o.location.format.as_str(),
                )
            })
            .collect();
        objects.sort();
        let fingerprint = SampleFingerprint {
            hospital,
            patient: patient.as_str(),
            kind: self.kind.as_str(),
            assay: self.assay.as_str(),
            test_order_ref: &self.test_order_ref,
            ccat_report_id: &self.ccat_report_id,
            tumour_category: &self.tumour_category,
            objects,
        };
        Ok(hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            &serde_json::to_vec(&fingerprint).map_err(AppError::internal)?,
        )))
    }
}

enum Outcome {
    Created(SampleRow, Vec<ObjectRow>),
    Replayed(SampleRow, Vec<ObjectRow>),
}

/// Registers a genome sample and its data objects. Hospital staff register
/// for their own patients; a sequencing centre for the hospitals that
/// authorised it. Repeating the same registration returns the same genome
/// ID.
pub fn register(ctx: &Context, caller: &Caller, new: NewSample) -> Result<Registered, AppError> {
    let p = principal(caller)?;
    let hospital = new.hospital.clone().unwrap_or_else(|| p.org.clone());
    let now = ctx.now();
    let mut conn = ctx.connection()?;
    // The candidate IDs and fingerprint, once known, for a retry that
    // collides with its own first attempt.
    let mut known: Option<(Vec<String>, String)> = None;
    let attempt = crate::db::write_transaction(&mut conn, |conn| {
        let centers = store::authorized_centers(conn, &hospital)?;
        // May this caller register for this hospital at all? Asked before
        // looking the patient up, so a refusal says nothing about which
        // patients exist.
        ctx.authorize(
            caller,
            Action::SampleRegister,
            &Resource::Patient {
                pseudonym: "-",
                hospital: &hospital,
                centers: &centers,
            },
        )?;
        let pseudonym = resolve_patient(ctx, conn, &hospital, &new.patient)?;
        let request_hash = new.fingerprint(&hospital, &pseudonym)?;
        let candidates: Vec<String> = ctx
            .keys
            .newest_first(KeyDomain::Sample)
            .map(|k| sample_id(k, &hospital, &new.sample_ref).to_string())
            .collect();
        known = Some((candidates.clone(), request_hash.clone()));
        // Under an older key the sample has another ID, which no constraint
        // would catch: look for it. A collision under the current key is
        // caught by the primary key below.
        if let Some(existing) = store::find_any(conn, &candidates[1..])? {
            return settle_existing(conn, existing, &new.objects, &request_hash);
        }
        let key = ctx.keys.current(KeyDomain::Sample);
        let genome_id = sample_id(key, &hospital, &new.sample_ref).to_string();
        let sample = SampleRow {
            genome_id: genome_id.clone(),
            key_version: i32::try_from(key.version).unwrap_or(i32::MAX),
            patient_pseudonym: pseudonym.as_str().to_owned(),
            hospital_org: hospital.clone(),
            registered_by_org: p.org.clone(),
            registered_by: p.subject.clone(),
            kind: new.kind.as_str().to_owned(),
            assay: new.assay.as_str().to_owned(),
            test_order_ref: new.test_order_ref.clone(),
            ccat_report_id: new.ccat_report_id.clone(),
            tumour_category: new.tumour_category.clone(),
            request_hash,
            registered_at: now.naive_utc(),
        };
        let rows: Vec<ObjectRow> = new
            .objects
            .iter()
            .map(|o| ObjectRow {
                genome_id: genome_id.clone(),
                name: o.name.clone(),
                version: 1,
                uri: o.location.uri.clone(),
                size_bytes: o.location.size_bytes,
                sha256: o.location.sha256.clone(),
                format: o.location.format.as_str().to_owned(),
                legal_class: genome::legal_class(o.location.format, new.assay)
                    .as_str()
                    .to_owned(),
                correction_reason: None,
                registered_by: p.subject.clone(),
                registered_at: now.naive_utc(),
            })
            .collect();
        store::insert_sample(conn, &sample, &rows)?;
        Ok(Outcome::Created(sample, rows))
    });
    let outcome = match attempt {
        // The genome ID or an object URI exists already: a repeat, a
        // conflicting repeat, or a URI claimed by another sample.
        Err(AppError::UniqueViolation(cause)) => {
            let Some((candidates, request_hash)) = known else {
                return Err(AppError::Internal(cause));
            };
            match store::find_any(&mut conn, &candidates)? {
                Some(existing) => {
                    settle_existing(&mut conn, existing, &new.objects, &request_hash)?
                }
                None => {
                    return Err(
                        uri_conflict(&mut conn, &new.objects)?.unwrap_or(AppError::Internal(cause))
                    )
                }
            }
        }
        other => other?,
    };
    Ok(match outcome {
        Outcome::Created(sample, objects) => {
            // The genome ID and object locations are genome references:
            // never logged.
            tracing::info!(objects = objects.len(), "genome sample registered");
            Registered {
                sample: sample_view(&sample, &objects),
                replayed: false,
            }
        }
        Outcome::Replayed(sample, objects) => Registered {
            sample: sample_view(&sample, &objects),
            replayed: true,
        },
    })
}

/// Finds the patient a registration names at `hospital`, trying every
/// patient key version for a local ID.
fn resolve_patient(
    ctx: &Context,
    conn: &mut DbConnection,
    hospital: &str,
    named: &PatientNamed,
) -> Result<PatientPseudonym, AppError> {
    let (candidates, field) = match named {
        PatientNamed::Local(local) => (
            ctx.keys.patient_candidates(hospital, local),
            "local_patient_id",
        ),
        PatientNamed::Ref(r) => (vec![r.clone()], "patient_ref"),
    };
    for candidate in candidates {
        if let Some(row) = patients::find_patient(conn, candidate.as_str())? {
            if row.hospital_org == hospital {
                return Ok(candidate);
            }
        }
    }
    // Another hospital's patient is indistinguishable from no patient.
    Err(AppError::UnknownPatient { field })
}

/// The answer to registering a sample that exists: the same registration
/// again is replayed; an object with another checksum, or other details,
/// is a conflict.
fn settle_existing(
    conn: &mut DbConnection,
    existing: SampleRow,
    requested: &[NewObject],
    request_hash: &str,
) -> Result<Outcome, AppError> {
    let objects = store::objects_of(conn, std::slice::from_ref(&existing.genome_id))?;
    if requested.iter().any(|o| {
        objects
            .iter()
            .any(|e| e.name == o.name && !e.sha256.eq_ignore_ascii_case(&o.location.sha256))
    }) {
        return Err(AppError::ObjectChecksumConflict);
    }
    if existing.request_hash == request_hash {
        Ok(Outcome::Replayed(existing, objects))
    } else {
        Err(AppError::SampleConflict)
    }
}

/// Why a new sample's objects could not be stored, if a URI is taken.
fn uri_conflict(
    conn: &mut DbConnection,
    requested: &[NewObject],
) -> Result<Option<AppError>, AppError> {
    let uris: Vec<String> = requested.iter().map(|o| o.location.uri.clone()).collect();
    let taken = store::objects_by_uri(conn, &uris)?;
    Ok(taken.first().map(|t| {
        let same_bytes = requested
            .iter()
            .any(|o| o.location.uri == t.uri && o.location.sha256.eq_ignore_ascii_case(&t.sha256));
        if same_bytes {
            AppError::ObjectUriInUse
        } else {
            AppError::ObjectChecksumConflict
        }
    }))
}
