//! Reading samples, and correcting a data object with a new version.

use super::*;
use crate::app::gates::principal;
use crate::db::consents as patients;
use crate::genome::{self, Assay, LegalClass, SampleKind};
use crate::pseudonym::PatientPseudonym;

/// A corrected object: a new version under the same name.
#[derive(Debug, Clone)]
pub struct Correction {
    pub genome_id: PrintedId,
    pub name: String,
    pub location: ObjectLocation,
    /// Why the earlier version was wrong.
    pub reason: String,
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

/// One sample with every version of its data objects.
pub fn get(ctx: &Context, caller: &Caller, genome_id: &PrintedId) -> Result<SampleView, AppError> {
    let (sample, objects) = ctx.read(|conn| {
        let sample = sample_for(ctx, conn, caller, Action::SampleRead, genome_id)?;
        let objects = store::objects_of(conn, std::slice::from_ref(&sample.genome_id))?;
        Ok((sample, objects))
    })?;
    Ok(sample_view(&sample, &objects))
}

/// Registers a corrected version of a data object. Earlier versions stay:
/// objects are immutable once registered. The same correction again is
/// answered as a replay.
pub fn correct(ctx: &Context, caller: &Caller, fix: Correction) -> Result<Registered, AppError> {
    let p = principal(caller)?;
    let now = ctx.now();
    let (created, sample, objects) = ctx.write(|conn| {
        let sample = sample_for(ctx, conn, caller, Action::SampleCorrect, &fix.genome_id)?;
        let objects = store::objects_of(conn, std::slice::from_ref(&sample.genome_id))?;
        let latest = objects
            .iter()
            .filter(|o| o.name == fix.name)
            .max_by_key(|o| o.version)
            .ok_or(AppError::NotFound)?;
        let wanted = &fix.location;
        if latest.uri == wanted.uri && latest.sha256.eq_ignore_ascii_case(&wanted.sha256) {
            return Ok((false, sample, objects));
        }
        if let Some(taken) = store::objects_by_uri(conn, std::slice::from_ref(&wanted.uri))?.first()
        {
            return Err(if taken.sha256.eq_ignore_ascii_case(&wanted.sha256) {
                AppError::ObjectUriInUse
            } else {
                AppError::ObjectChecksumConflict
            });
        }
        let assay =
            Assay::parse(&sample.assay).ok_or_else(|| AppError::internal("stored assay"))?;
        let row = ObjectRow {
            genome_id: sample.genome_id.clone(),
            name: fix.name.clone(),
            version: latest.version + 1,
            uri: wanted.uri.clone(),
            size_bytes: wanted.size_bytes,
            sha256: wanted.sha256.clone(),
            format: wanted.format.as_str().to_owned(),
            legal_class: genome::legal_class(wanted.format, assay)
                .as_str()
                .to_owned(),
            correction_reason: Some(fix.reason.clone()),
            registered_by: p.subject.clone(),
            registered_at: now.naive_utc(),
        };
        store::insert_object(conn, &row)?;
        let mut objects = objects;
        objects.push(row);
        Ok((true, sample, objects))
    })?;
    Ok(Registered {
        sample: sample_view(&sample, &objects),
        replayed: !created,
    })
}

/// A patient's samples in plain Japanese and English: what was examined,
/// which test, and what the law says about the data. No storage locations.
/// Readable by the patient themself, their hospital, and auditors.
pub fn of_patient(
    ctx: &Context,
    caller: &Caller,
    pseudonym: &PatientPseudonym,
) -> Result<PatientSampleList, AppError> {
    let (samples, objects) = ctx.read(|conn| {
        let patient =
            patients::find_patient(conn, pseudonym.as_str())?.ok_or(AppError::NotFound)?;
        let centers = store::authorized_centers(conn, &patient.hospital_org)?;
        ctx.authorize_patient(
            caller,
            Action::SampleRead,
            pseudonym.as_str(),
            &patient.hospital_org,
            &centers,
        )?;
        let samples = store::for_patient(conn, pseudonym.as_str())?;
        let ids: Vec<String> = samples.iter().map(|s| s.genome_id.clone()).collect();
        let objects = store::objects_of(conn, &ids)?;
        Ok((samples, objects))
    })?;
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
    Ok(PatientSampleList { samples })
}
