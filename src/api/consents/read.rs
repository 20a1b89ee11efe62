//! Reading a patient's consent: the logged record read, its events and
//! its FHIR export.

use super::*;

/// A logged read of one patient's consent record in one family, on one
/// pooled connection: the patient with their events (and the family's
/// published version count, which keeps the cached version history
/// current), and the read's log entry. Staff of the patient's own hospital
/// on PostgreSQL get both in one statement (`own_record_logged`); everyone
/// else in two, authorized in between (decision 0016). A caller that may
/// not see the patient is refused before anything is shown or logged, with
/// the same 404 as for a patient that does not exist; `shape` sees only
/// what an authorized caller may.
async fn read_consent_record<T, F>(
    state: &web::Data<AppState>,
    caller: &Caller,
    patient_ref: &str,
    family: DocumentFamily,
    shape: F,
) -> Result<ConsentRecordRead<T>, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Vec<StoredEvent>, &VersionHistory, DateTime<Utc>) -> Result<T, ApiError>
        + Send
        + 'static,
{
    principal(caller)?;
    let pseudonym = PatientPseudonym::parse(patient_ref).ok_or(ApiError::NotFound)?;
    let now = state.now();
    let (state_in, caller) = (state.clone(), caller.clone());
    state
        .read_then_log(move |conn| {
            let (record, unwritten) =
                match own_record_logged(&state_in, conn, &caller, &pseudonym, family, now)? {
                    Some(record) => (record, Vec::new()),
                    None => {
                        let record = store::patient_record(conn, pseudonym.as_str(), family)?
                            .ok_or(ApiError::NotFound)?;
                        state_in.authorize_patient(
                            &caller,
                            Action::ConsentRead,
                            pseudonym.as_str(),
                            &record.patient.hospital_org,
                            &[],
                        )?;
                        let entry = read_entry(
                            &caller,
                            &record.patient.hospital_org,
                            &pseudonym,
                            family,
                            now,
                        )?;
                        (record, vec![entry])
                    }
                };
            let history = state_in
                .histories
                .current(conn, family, record.published_versions)?;
            let value = shape(record.events, &history, now)?;
            Ok((
                ConsentRecordRead {
                    pseudonym,
                    patient: record.patient,
                    now,
                    value,
                },
                unwritten,
            ))
        })
        .await
}

/// The common case of a consent read in one statement: staff reading a
/// patient of their own hospital. Policy is asked first, about a patient of
/// the caller's hospital; the statement then reads the patient, and writes
/// the read's entry, only if the patient is one. So what is read and logged
/// is exactly what the general path would read and log. `None`: nothing was
/// read or written, and the general path decides.
fn own_record_logged(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    pseudonym: &PatientPseudonym,
    family: DocumentFamily,
    now: DateTime<Utc>,
) -> Result<Option<store::PatientRecord>, ApiError> {
    let own_hospital = &principal(caller)?.org;
    let resource = Resource::Patient {
        pseudonym: pseudonym.as_str(),
        hospital: own_hospital,
        centers: &[],
    };
    if !state
        .policy
        .is_allowed(caller, Action::ConsentRead, &resource)
    {
        return Ok(None);
    }
    let entry = read_entry(caller, own_hospital, pseudonym, family, now)?;
    Ok(store::own_patient_record_logged(
        conn,
        pseudonym.as_str(),
        family,
        own_hospital,
        &entry,
    )?)
}

/// What [`read_consent_record`] read, and when.
struct ConsentRecordRead<T> {
    pseudonym: PatientPseudonym,
    patient: store::PatientRow,
    now: DateTime<Utc>,
    value: T,
}

/// The log entry of a read of one consent record.
fn read_entry(
    caller: &Caller,
    hospital: &str,
    pseudonym: &PatientPseudonym,
    family: DocumentFamily,
    now: DateTime<Utc>,
) -> Result<LogEntry, ApiError> {
    Ok(access::read(
        principal(caller)?,
        hospital,
        pseudonym.as_str(),
        LogAction::ConsentRead,
        DataScope::ConsentRecord {
            family: family.as_str().to_owned(),
        },
        now,
    ))
}

fn parse_as_of(raw: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    match raw {
        None => Ok(now),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::field("as_of", "must be an RFC 3339 timestamp")),
    }
}

/// A patient's consent in one family as in force now, or at `as_of`.
/// Every item carries the reason for its decision.
#[utoipa::path(tag = "consents", params(ConsentPath, AsOfQuery),
    responses((status = 200, body = ConsentView), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/patients/{patient_ref}/consents/{family}")]
pub async fn read_consent(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
    query: web::Query<AsOfQuery>,
) -> Result<web::Json<ConsentView>, ApiError> {
    let family = family_of(&path.family)?;
    // Checked before anything is read; the moment of reading is the default.
    let as_of = match query.as_of.as_deref() {
        Some(raw) => Some(parse_as_of(Some(raw), state.now())?),
        None => None,
    };
    let ConsentRecordRead {
        pseudonym,
        patient,
        now: _,
        value: (as_of, snap),
    } = read_consent_record(
        &state,
        &caller,
        &path.patient_ref,
        family,
        move |events, history, now| {
            let as_of = as_of.unwrap_or(now);
            Ok((as_of, snapshot_of(&events, history, as_of)))
        },
    )
    .await?;
    Ok(web::Json(ConsentView {
        patient_ref: pseudonym.to_string(),
        family,
        as_of,
        status: snap.status,
        version_in_force: snap
            .version_in_force
            .map(|n| DocumentVersionId::new(family, n).to_string()),
        items: snap
            .items
            .into_iter()
            .map(|i| ItemStateView {
                key: i.key.to_string(),
                decision: i.decision,
                needs_own_consent: i.lapsed_at_majority(&patient.person(), as_of),
                basis: i.basis,
            })
            .collect(),
        patient: PatientStatusView {
            majority_on: patient.majority_on,
            deceased_on: patient.deceased_on,
        },
    }))
}

/// Every consent event of a patient in one family, oldest first. Nothing is
/// ever overwritten, so this is the full history.
#[utoipa::path(tag = "consents", params(ConsentPath),
    responses((status = 200, body = EventList), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/patients/{patient_ref}/consents/{family}/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
) -> Result<web::Json<EventList>, ApiError> {
    let family = family_of(&path.family)?;
    let events = read_consent_record(
        &state,
        &caller,
        &path.patient_ref,
        family,
        |events, _, _| Ok(events),
    )
    .await?
    .value;
    Ok(web::Json(EventList {
        events: events
            .into_iter()
            .map(|e| EventView {
                event_id: e.row.id,
                kind: e.event.kind,
                document_version: e.row.document_version_id,
                signed_at: e.event.signed_at,
                recorded_at: e.event.recorded_at,
                signer_kind: e.row.signer_kind,
                proxy_relationship: e.row.proxy_relationship,
                explained_by: e.row.explained_by,
                form_hash: e.row.form_hash,
                decisions: e
                    .event
                    .decisions
                    .into_iter()
                    .map(|(k, d)| (k.to_string(), d))
                    .collect(),
            })
            .collect(),
    }))
}

/// The patient's current consent as an HL7 FHIR R4 `Consent` resource: one
/// provision per scope item, coded with the item key and GA4GH DUO terms;
/// `policy.uri` is the canonical URI of the document version.
#[utoipa::path(tag = "consents", params(ConsentPath),
    responses((status = 200, content_type = "application/fhir+json", body = Object), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/patients/{patient_ref}/consents/{family}/fhir")]
pub async fn export_fhir(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
) -> Result<HttpResponse, ApiError> {
    let family = family_of(&path.family)?;
    let ConsentRecordRead {
        pseudonym,
        patient,
        now,
        value: (events, snap),
    } = read_consent_record(
        &state,
        &caller,
        &path.patient_ref,
        family,
        |events, history, now| {
            let snap = snapshot_of(&events, history, now);
            Ok((events, snap))
        },
    )
    .await?;
    // The latest event in force says who signed and when.
    let latest = events
        .iter()
        .rev()
        .find(|e| e.event.signed_at <= now)
        .ok_or(ApiError::NotFound)?;
    let version = snap.version_in_force.ok_or(ApiError::NotFound)?;
    let ctx = FhirConsentContext {
        patient_pseudonym: pseudonym.as_str(),
        family,
        hospital_org: &patient.hospital_org,
        policy_uri: state.policy_uri(DocumentVersionId::new(family, version)),
        signed_at: latest.event.signed_at,
        proxy_relationship: latest.row.proxy_relationship.as_deref(),
    };
    let resource = export_consent(&ctx, &snap, &state.catalog);
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(resource))
}
