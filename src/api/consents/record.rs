//! Recording consent events: grants, changes and withdrawals, each one
//! transaction with its idempotency check and access-log entry.

use super::*;

/// The common, already-validated part of every consent event.
struct Signature {
    signer_kind: &'static str,
    relationship: Option<String>,
    explained_by: String,
    signed_at: DateTime<Utc>,
    form_hash: String,
}

fn parse_signature(
    signer: &SignerInput,
    explained_by: &str,
    signed_at: &str,
    form_hash: &str,
    now: DateTime<Utc>,
    problems: &mut Vec<FieldProblem>,
) -> Option<Signature> {
    let (signer_kind, relationship) = match (signer.kind.as_str(), signer.relationship.as_deref()) {
        ("patient", None) => ("patient", None),
        ("patient", Some(_)) => {
            problems.push(FieldProblem::new(
                "signer.relationship",
                "only a proxy has a relationship",
            ));
            ("patient", None)
        }
        ("proxy", Some(rel)) if RELATIONSHIPS.contains(&rel) => ("proxy", Some(rel.to_owned())),
        ("proxy", _) => {
            problems.push(FieldProblem::new(
                "signer.relationship",
                format!("a proxy needs one of: {}", RELATIONSHIPS.join(", ")),
            ));
            ("proxy", None)
        }
        _ => {
            problems.push(FieldProblem::new(
                "signer.kind",
                "must be `patient` or `proxy`",
            ));
            ("patient", None)
        }
    };
    let explained = explained_by.trim();
    if explained.is_empty() || explained.len() > 128 || explained.chars().any(char::is_control) {
        problems.push(FieldProblem::new(
            "explained_by",
            "must be 1-128 characters",
        ));
    }
    let signed = match DateTime::parse_from_rfc3339(signed_at) {
        Ok(t) if t.with_timezone(&Utc) > now + MAX_SIGNATURE_SKEW => {
            problems.push(FieldProblem::new("signed_at", "lies in the future"));
            None
        }
        // Stored at microsecond precision on both backends; truncate now so
        // the first answer and every replay agree.
        Ok(t) => Some(t.with_timezone(&Utc).trunc_subsecs(6)),
        Err(_) => {
            problems.push(FieldProblem::new(
                "signed_at",
                "must be an RFC 3339 timestamp",
            ));
            None
        }
    };
    let hash_ok = form_hash
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !hash_ok {
        problems.push(FieldProblem::new(
            "form_hash",
            "must be `sha256:` and 64 hex digits",
        ));
    }
    Some(Signature {
        signer_kind,
        relationship,
        explained_by: explained.to_owned(),
        signed_at: signed?,
        form_hash: form_hash.to_ascii_lowercase(),
    })
}

fn parse_version(raw: &str, problems: &mut Vec<FieldProblem>) -> Option<DocumentVersionId> {
    raw.parse::<DocumentVersionId>()
        .map_err(|e| problems.push(FieldProblem::new("document_version", e.to_string())))
        .ok()
}

fn parse_decisions(
    raw: &BTreeMap<String, String>,
    problems: &mut Vec<FieldProblem>,
) -> Vec<(ScopeItemKey, Decision)> {
    raw.iter()
        .filter_map(|(key, decision)| {
            let field = format!("decisions.{key}");
            let Ok(key) = ScopeItemKey::parse(key) else {
                problems.push(FieldProblem::new(field, "not a scope item key"));
                return None;
            };
            let Some(decision) = Decision::parse(decision) else {
                problems.push(FieldProblem::new(field, "must be `permit` or `deny`"));
                return None;
            };
            Some((key, decision))
        })
        .collect()
}

/// The version named by a request, which must be the one in force.
fn active_version(
    state: &AppState,
    conn: &mut DbConnection,
    id: DocumentVersionId,
) -> Result<DocumentVersion, ApiError> {
    let version = state
        .versions
        .load(conn, id)?
        .ok_or(ApiError::UnknownDocumentVersion)?;
    match version.status {
        DocumentStatus::Active => Ok(version),
        other => Err(ApiError::DocumentVersionNotActive {
            status: other.as_str(),
        }),
    }
}

/// Checks decisions against a version's items: every key must be an item of
/// the version; with `complete`, every item needs a decision.
fn check_items<'a>(
    version: &DocumentVersion,
    keys: impl Iterator<Item = &'a ScopeItemKey> + Clone,
    complete: bool,
    field_prefix: &str,
) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for key in keys.clone() {
        if !version.active_items().any(|i| &i.key == key) {
            problems.push(FieldProblem::new(
                format!("{field_prefix}.{key}"),
                format!("not an item of {}", version.id),
            ));
        }
    }
    if complete {
        for item in version.active_items() {
            if !keys.clone().any(|k| k == &item.key) {
                problems.push(FieldProblem::new(
                    format!("{field_prefix}.{}", item.key),
                    "missing decision",
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(problems))
    }
}

fn fail_on(problems: Vec<FieldProblem>) -> Result<(), ApiError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(problems))
    }
}

fn event_response(row: &EventRow) -> Result<EventResponse, ApiError> {
    Ok(EventResponse {
        event_id: row.id.clone(),
        patient_ref: row.patient_pseudonym.clone(),
        family: row.family.parse().map_err(ApiError::internal)?,
        kind: EventKind::parse(&row.kind).ok_or_else(|| ApiError::internal("stored event kind"))?,
        document_version: row.document_version_id.clone(),
        signed_at: crate::db::documents::utc(row.signed_at),
        recorded_at: crate::db::documents::utc(row.recorded_at),
        enrollment_code: None,
    })
}

enum Recorded {
    /// The event, the enrollment code of a grant, and how many recall
    /// notices it queued.
    Created(EventRow, Option<crate::api::portal::IssuedCode>, usize),
    Replayed(EventRow),
}

/// The access-log entry of a consent event: the hospital recorded the
/// patient's own decision on `version`.
fn consent_entry(
    pending: &PendingEvent,
    version: DocumentVersionId,
    now: DateTime<Utc>,
) -> LogEntry {
    let action = match pending.kind {
        EventKind::Grant => LogAction::ConsentRegister,
        EventKind::Amend => LogAction::ConsentChange,
        EventKind::WithdrawAll | EventKind::WithdrawItems => LogAction::ConsentWithdraw,
    };
    access::entry_by(
        &pending.hospital_org,
        crate::auth::Role::HospitalStaff.as_str(),
        &pending.recorded_by,
        pending.pseudonym.as_str(),
        access::Access {
            action,
            purpose: Purpose::ConsentManagement,
            basis: LegalBasis::Consent {
                version: version.to_string(),
                items: pending
                    .decisions
                    .iter()
                    .map(|(k, _)| k.to_string())
                    .collect(),
            },
            scope: DataScope::ConsentRecord {
                family: version.family.as_str().to_owned(),
            },
        },
        now,
    )
}

/// An event ready to store, minus the checks that need the database.
struct PendingEvent {
    kind: EventKind,
    /// The local ID sealed for the identity vault (grants only).
    sealed: Option<crate::pseudonym::vault::Sealed>,
    pseudonym: PatientPseudonym,
    hospital_org: String,
    recorded_by: String,
    /// Keyed hashes of the `Idempotency-Key`; the first is stored.
    idempotency_tags: Vec<String>,
    request_hash: String,
    signature: Signature,
    decisions: Vec<(ScopeItemKey, Decision)>,
    /// Whether a grant's answer carries its enrollment code's QR code.
    enrollment_qr: QrWanted,
}

impl PendingEvent {
    /// A change or withdrawal of a registered patient's consent, recorded by
    /// `p` under `idempotency`: nothing to seal, no enrollment code.
    fn of_known_patient(
        state: &AppState,
        (p, idempotency): (Principal, &IdempotencyKey),
        (pseudonym, patient): (PatientPseudonym, store::PatientRow),
        (kind, request_hash): (EventKind, String),
        (signature, decisions): (Signature, Vec<(ScopeItemKey, Decision)>),
    ) -> Self {
        PendingEvent {
            kind,
            sealed: None,
            request_hash,
            pseudonym,
            hospital_org: patient.hospital_org,
            recorded_by: p.subject,
            idempotency_tags: state.keys.idempotency_tags(&p.org, &idempotency.0),
            signature,
            decisions,
            enrollment_qr: QrWanted::default(),
        }
    }
}

/// Stores a consent event in one transaction: the idempotency check, the
/// caller-specific checks in `prepare`, the patient row and the event.
/// `prepare` returns the document version the event is recorded against and
/// may rewrite the decisions (a whole withdrawal lists no items).
async fn record(
    state: &web::Data<AppState>,
    pending: PendingEvent,
    prepare: impl FnOnce(&mut DbConnection, &PendingEvent, DateTime<Utc>) -> Result<DocumentVersion, ApiError>
        + Send
        + 'static,
) -> Result<HttpResponse, ApiError> {
    let now = state.now();
    let (org, key, hash) = (
        pending.hospital_org.clone(),
        pending.idempotency_tags.clone(),
        pending.request_hash.clone(),
    );
    let shared = state.clone();
    let enrollment_qr = pending.enrollment_qr;
    let outcome = state
        .db(move |conn| {
            let attempt = write_transaction(conn, |conn| {
                // Checks first. A request refused here may still be a retry
                // of one that succeeded (its version since retired, its
                // consent since withdrawn): then the original answer wins.
                let checked =
                    prepare(conn, &pending, now).and_then(|version| match version.effective_from {
                        Some(from) if pending.signature.signed_at < from => Err(ApiError::field(
                            "signed_at",
                            format!("{} was not yet in force at this time", version.id),
                        )),
                        _ => Ok(version),
                    });
                let version = match checked {
                    Ok(version) => version,
                    Err(refusal) => {
                        return match store::find_by_idempotency_key(
                            conn,
                            &pending.hospital_org,
                            &pending.idempotency_tags,
                        )? {
                            Some(existing) => replay(existing, &pending.request_hash),
                            None => Err(refusal),
                        }
                    }
                };
                let row = event_row(&pending, version.id, now);
                // A release being written meets this change at the gate
                // (decision 0029).
                crate::db::gate::change_enters(conn)?;
                // A retry is caught by the unique (hospital, key) constraint
                // below and answered from the stored event; no pre-check
                // round trip on the common path.
                store::record_event(conn, &row, &pending.decisions, pending.sealed.as_ref(), now)?;
                ledger::append(conn, &[consent_entry(&pending, version.id, now)])?;
                // Whatever the event, a live release whose use the patient's
                // consent no longer permits gets a recall notice, in this
                // same transaction (decision 0027).
                let recalled = crate::api::releases::recall::recall_what_consent_no_longer_permits(
                    conn,
                    &shared.data_use,
                    pending.pseudonym.as_str(),
                    version.id.family,
                    crate::api::releases::recall::Cause::Event { id: &row.id },
                    now,
                )?;
                // A proxy's consent for a minor recorded only after they
                // came of age has lapsed already; the patient hears it now.
                if pending.signature.signer_kind == "proxy" {
                    crate::api::releases::recall::tell_of_a_proxy_consent_recorded_late(
                        conn,
                        &shared.data_use,
                        pending.pseudonym.as_str(),
                        version.id.family,
                        &row.id,
                        now,
                    )?;
                }
                let code = match pending.kind {
                    EventKind::Grant => Some(crate::api::portal::issue_code(
                        &shared.keys,
                        &shared.patients,
                        conn,
                        pending.pseudonym.as_str(),
                        &pending.recorded_by,
                        now,
                    )?),
                    _ => None,
                };
                Ok(Recorded::Created(row, code, recalled))
            });
            match attempt {
                // The key was used before (or two retries raced): answer
                // from the stored event.
                Err(ApiError::UniqueViolation(cause)) => {
                    let existing = store::find_by_idempotency_key(conn, &org, &key)?
                        .ok_or(ApiError::Internal(cause))?;
                    replay(existing, &hash)
                }
                other => other,
            }
        })
        .await?;
    match outcome {
        Recorded::Created(row, code, recalled) => {
            state.log.entries_committed();
            if recalled > 0 {
                state.log.deliveries_queued();
            }
            created(state, &row, code, enrollment_qr)
        }
        Recorded::Replayed(row) => Ok(HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(event_response(&row)?)),
    }
}

/// The stored form of a pending event on `version`.
fn event_row(pending: &PendingEvent, version: DocumentVersionId, now: DateTime<Utc>) -> EventRow {
    EventRow {
        id: uuid::Uuid::new_v4().to_string(),
        patient_pseudonym: pending.pseudonym.as_str().to_owned(),
        family: version.family.as_str().to_owned(),
        document_version_id: version.to_string(),
        kind: pending.kind.as_str().to_owned(),
        signer_kind: pending.signature.signer_kind.to_owned(),
        proxy_relationship: pending.signature.relationship.clone(),
        explained_by: pending.signature.explained_by.clone(),
        signed_at: pending.signature.signed_at.naive_utc(),
        recorded_at: now.naive_utc(),
        form_hash: pending.signature.form_hash.clone(),
        hospital_org: pending.hospital_org.clone(),
        recorded_by: pending.recorded_by.clone(),
        idempotency_key: pending
            .idempotency_tags
            .first()
            .cloned()
            .unwrap_or_default(),
        request_hash: pending.request_hash.clone(),
    }
}

fn created(
    state: &AppState,
    row: &EventRow,
    code: Option<crate::api::portal::IssuedCode>,
    enrollment_qr: QrWanted,
) -> Result<HttpResponse, ApiError> {
    state.metrics.consent_event_recorded(
        EventKind::parse(&row.kind)
            .map(EventKind::as_str)
            .unwrap_or("unknown"),
    );
    tracing::info!(event_id = %row.id, kind = %row.kind, version = %row.document_version_id, "consent event recorded");
    let mut response = event_response(row)?;
    response.enrollment_code = code.map(|c| c.with_qr(enrollment_qr)).transpose()?;
    Ok(HttpResponse::Created().json(response))
}

/// A grant on PostgreSQL in one statement (see
/// `db::consents::grant_in_one_statement`). `None` means: take the general
/// path, which also explains every refusal and replays retries.
async fn grant_fast_path(
    state: &web::Data<AppState>,
    pending: &PendingEvent,
    version: DocumentVersionId,
) -> Result<Option<(EventRow, crate::api::portal::IssuedCode)>, ApiError> {
    let Some(sealed) = pending.sealed.clone() else {
        return Ok(None);
    };
    if state.backend != crate::db::Backend::Postgres {
        return Ok(None);
    }
    let now = state.now();
    let row = event_row(pending, version, now);
    let entry = consent_entry(pending, version, now);
    let code = crate::api::portal::new_code(&state.keys, &state.patients, now)?;
    let decisions = pending.decisions.clone();
    let shared = state.clone();
    state
        .db(move |conn| {
            let Some(content) = shared.versions.content(conn, version)? else {
                return Ok(None);
            };
            if check_items(
                &content,
                decisions.iter().map(|(k, _)| k),
                true,
                "decisions",
            )
            .is_err()
            {
                return Ok(None);
            }
            let extras = store::GrantExtras {
                entry: &entry,
                code_hash: &code.hash,
                code_expires_at: code.issued.expires_at.naive_utc(),
            };
            Ok(
                match store::grant_in_one_statement(conn, &row, &decisions, &sealed, &extras) {
                    Ok(true) => Some((row, code.issued)),
                    Ok(false) | Err(_) => None,
                },
            )
        })
        .await
}

fn replay(existing: EventRow, request_hash: &str) -> Result<Recorded, ApiError> {
    if existing.request_hash == request_hash {
        Ok(Recorded::Replayed(existing))
    } else {
        Err(ApiError::IdempotencyKeyReused)
    }
}

fn require_active(
    conn: &mut DbConnection,
    pending: &PendingEvent,
    family: DocumentFamily,
) -> Result<(), ApiError> {
    let (_, _, snap) = snapshot(
        conn,
        pending.pseudonym.as_str(),
        family,
        pending.signature.signed_at,
    )?;
    if snap.status == ConsentStatus::Active {
        Ok(())
    } else {
        Err(ApiError::NoActiveConsent)
    }
}

/// Registers a patient's e-consent on the unified consent document version in
/// force. Requires `hospital_staff`; the patient belongs to the caller's
/// hospital. A form a proxy signed while the patient was a minor, recorded
/// after the day the hospital recorded them coming of age, has lapsed as
/// it is recorded (decision 0026): the patient is told at once, with a
/// `consent_lapse` entry. So is a change a minor's proxy signed.
#[utoipa::path(tag = "consents", request_body = GrantRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per hospital; a retry with the same body returns the original event"), QrWanted),
    responses(
        (status = 201, body = EventResponse),
        (status = 200, body = EventResponse, description = "Idempotent replay of an earlier identical request"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/consents")]
pub async fn register_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    enrollment_qr: web::Query<QrWanted>,
    body: web::Json<GrantRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    let body = body.into_inner();
    let now = state.now();
    let mut problems = Vec::new();
    let local_id = LocalPatientId::parse(&body.local_patient_id)
        .map_err(|m| problems.push(FieldProblem::new("local_patient_id", m)))
        .ok();
    let version_id = parse_version(&body.document_version, &mut problems);
    let decisions = parse_decisions(&body.decisions, &mut problems);
    let signature = parse_signature(
        &body.signer,
        &body.explained_by,
        &body.signed_at,
        &body.form_hash,
        now,
        &mut problems,
    );
    fail_on(problems)?;
    let (Some(local_id), Some(version_id), Some(signature)) = (local_id, version_id, signature)
    else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let pseudonym = if state.keys.newest_first(KeyDomain::Patient).count() > 1 {
        known_pseudonym(&state, &p.org, &local_id)
            .await?
            .map(|(pseudonym, _)| pseudonym)
            .unwrap_or_else(|| state.keys.patient(&p.org, &local_id))
    } else {
        state.keys.patient(&p.org, &local_id)
    };
    state.authorize_patient(
        &caller,
        Action::ConsentRegister,
        pseudonym.as_str(),
        &p.org,
        &[],
    )?;
    let sealed = state
        .keys
        .seal(&p.org, &pseudonym, &local_id)
        .map_err(ApiError::internal)?;
    let pending = PendingEvent {
        kind: EventKind::Grant,
        sealed: Some(sealed),
        request_hash: request_fingerprint("grant", &pseudonym, &body)?,
        pseudonym,
        hospital_org: p.org.clone(),
        recorded_by: p.subject.clone(),
        idempotency_tags: state.keys.idempotency_tags(&p.org, &idempotency.0),
        signature,
        decisions,
        enrollment_qr: enrollment_qr.into_inner(),
    };
    if let Some((row, code)) = grant_fast_path(&state, &pending, version_id).await? {
        state.log.entries_committed();
        return created(&state, &row, Some(code), pending.enrollment_qr);
    }
    let shared = state.clone();
    record(&state, pending, move |conn, pending, _| {
        let version = active_version(&shared, conn, version_id)?;
        check_items(
            &version,
            pending.decisions.iter().map(|(k, _)| k),
            true,
            "decisions",
        )?;
        Ok(version)
    })
    .await
}

/// Changes some items of a patient's consent, signed on the version in force.
/// Re-consent for materially changed or added items is recorded this way.
#[utoipa::path(tag = "consents", params(ConsentPath, ("Idempotency-Key" = String, Header, description = "Unique per hospital")),
    request_body = ChangeRequest,
    responses((status = 201, body = EventResponse), (status = 200, body = EventResponse), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/patients/{patient_ref}/consents/{family}/changes")]
pub async fn change_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    path: web::Path<ConsentPath>,
    body: web::Json<ChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let family = family_of(&path.family)?;
    let (pseudonym, patient) =
        patient_for(&state, &caller, Action::ConsentChange, &path.patient_ref).await?;
    let p = principal(&caller)?.clone();
    let body = body.into_inner();
    let mut problems = Vec::new();
    let version_id = parse_version(&body.document_version, &mut problems);
    let decisions = parse_decisions(&body.decisions, &mut problems);
    if body.decisions.is_empty() {
        problems.push(FieldProblem::new("decisions", "name at least one item"));
    }
    if version_id.is_some_and(|v| v.family != family) {
        problems.push(FieldProblem::new(
            "document_version",
            format!("must be a {family} version"),
        ));
    }
    let signature = parse_signature(
        &body.signer,
        &body.explained_by,
        &body.signed_at,
        &body.form_hash,
        state.now(),
        &mut problems,
    );
    fail_on(problems)?;
    let (Some(version_id), Some(signature)) = (version_id, signature) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let request_hash = request_fingerprint("change", &pseudonym, &(&family, &body))?;
    let pending = PendingEvent::of_known_patient(
        &state,
        (p, &idempotency),
        (pseudonym, patient),
        (EventKind::Amend, request_hash),
        (signature, decisions),
    );
    let shared = state.clone();
    record(&state, pending, move |conn, pending, _| {
        let version = active_version(&shared, conn, version_id)?;
        check_items(
            &version,
            pending.decisions.iter().map(|(k, _)| k),
            false,
            "decisions",
        )?;
        require_active(conn, pending, family)?;
        Ok(version)
    })
    .await
}

/// Withdraws a patient's whole consent in a family, or some items of it.
#[utoipa::path(tag = "consents", params(ConsentPath, ("Idempotency-Key" = String, Header, description = "Unique per hospital")),
    request_body = WithdrawalRequest,
    responses((status = 201, body = EventResponse), (status = 200, body = EventResponse), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/patients/{patient_ref}/consents/{family}/withdrawals")]
pub async fn withdraw_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    path: web::Path<ConsentPath>,
    body: web::Json<WithdrawalRequest>,
) -> Result<HttpResponse, ApiError> {
    let family = family_of(&path.family)?;
    let (pseudonym, patient) =
        patient_for(&state, &caller, Action::ConsentWithdraw, &path.patient_ref).await?;
    let p = principal(&caller)?.clone();
    let body = body.into_inner();
    let mut problems = Vec::new();
    let items: Option<Vec<ScopeItemKey>> = body.items.as_ref().map(|keys| {
        if keys.is_empty() {
            problems.push(FieldProblem::new(
                "items",
                "omit `items` to withdraw everything, or name at least one",
            ));
        }
        keys.iter()
            .enumerate()
            .filter_map(|(i, k)| {
                ScopeItemKey::parse(k)
                    .map_err(|e| {
                        problems.push(FieldProblem::new(format!("items[{i}]"), e.to_string()))
                    })
                    .ok()
            })
            .collect()
    });
    let signature = parse_signature(
        &body.signer,
        &body.explained_by,
        &body.signed_at,
        &body.form_hash,
        state.now(),
        &mut problems,
    );
    fail_on(problems)?;
    let Some(signature) = signature else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let (kind, decisions) = match &items {
        None => (EventKind::WithdrawAll, Vec::new()),
        Some(keys) => (
            EventKind::WithdrawItems,
            keys.iter().map(|k| (k.clone(), Decision::Deny)).collect(),
        ),
    };
    let request_hash = request_fingerprint("withdraw", &pseudonym, &(&family, &body))?;
    let pending = PendingEvent::of_known_patient(
        &state,
        (p, &idempotency),
        (pseudonym, patient),
        (kind, request_hash),
        (signature, decisions),
    );
    record(&state, pending, move |conn, pending, _| {
        // A withdrawal is recorded against the version in force; without one
        // there can be no consent to withdraw.
        let in_force = documents::list_family(conn, family)?
            .into_iter()
            .find(|v| v.status == DocumentStatus::Active)
            .ok_or(ApiError::NoActiveConsent)?;
        check_items(
            &in_force,
            pending.decisions.iter().map(|(k, _)| k),
            false,
            "items",
        )?;
        require_active(conn, pending, family)?;
        Ok(in_force)
    })
    .await
}
