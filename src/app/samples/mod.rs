//! Genome samples: registration by hospitals and authorised sequencing
//! centres (`register`), corrections as new object versions and reads
//! (`objects`), and which centres a hospital authorises (`centers`).
//!
//! Registration is idempotent by the hospital's own sample reference, which
//! only ever enters the keyed genome-ID derivation: it is not stored. The
//! service keeps references to sequence data, never the bytes.

mod centers;
mod objects;
mod register;
pub use centers::*;
pub use objects::*;
pub use register::*;

use super::{AppError, Context};
use crate::auth::policy::Action;
use crate::auth::Caller;
use crate::db::samples::{self as store, ObjectRow, SampleRow};
use crate::db::DbConnection;
use crate::genome::{DataFormat, PlainText};
use crate::pseudonym::genome_id::PrintedId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// A data object as the genome store keeps it: where, how large, its
/// checksum and format.
#[derive(Debug, Clone)]
pub struct ObjectLocation {
    pub uri: String,
    pub size_bytes: i64,
    /// Lower-case hex SHA-256 of the object's bytes.
    pub sha256: String,
    pub format: DataFormat,
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

/// A sample, and whether it is the answer to an earlier identical request.
pub struct Registered {
    pub sample: SampleView,
    pub replayed: bool,
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

/// Loads a sample and checks `action` on its patient; an invisible sample
/// is `NotFound` like a missing one.
fn sample_for(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    genome_id: &PrintedId,
) -> Result<SampleRow, AppError> {
    let sample = store::find(conn, &genome_id.to_string())?.ok_or(AppError::NotFound)?;
    let centers = store::authorized_centers(conn, &sample.hospital_org)?;
    ctx.authorize_patient(
        caller,
        action,
        &sample.patient_pseudonym,
        &sample.hospital_org,
        &centers,
    )?;
    Ok(sample)
}
