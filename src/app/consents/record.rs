//! Recording consent events: grants, changes and withdrawals, each one
//! transaction with its idempotency check, access-log entry, recall notices
//! and (for a grant) the patient's enrollment code.

use super::*;
use crate::app::entries;
use crate::app::gates::{principal, visible_patient};
use crate::app::idempotency::request_fingerprint;
use crate::app::recalls::{self, Cause};
use crate::app::{enrollment, patients, Context};
use crate::auth::policy::Action;
use crate::auth::Caller;
use crate::consent::document::FieldProblem;
use crate::consent::{DocumentStatus, DocumentVersion};
use crate::db::consents::EventRow;
use crate::db::ledger;
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, LogEntry, Purpose};
use crate::pseudonym::keyring::KeyDomain;

/// Registers a patient's e-consent on the unified consent document version
/// in force (hospital staff, for their own hospital's patient). A form a
/// proxy signed while the patient was a minor, recorded after the day the
/// hospital recorded them coming of age, has lapsed as it is recorded
/// (decision 0026): the patient is told at once, with a `consent_lapse`
/// entry.
pub fn grant(ctx: &Context, caller: &Caller, grant: Grant) -> Result<Recorded, AppError> {
    let p = principal(caller)?.clone();
    let local_id = &grant.local_patient_id;
    let pseudonym = if ctx.keys.newest_first(KeyDomain::Patient).count() > 1 {
        ctx.read(|conn| patients::known_pseudonym(ctx, conn, &p.org, local_id))?
            .map(|(pseudonym, _)| pseudonym)
            .unwrap_or_else(|| ctx.keys.patient(&p.org, local_id))
    } else {
        ctx.keys.patient(&p.org, local_id)
    };
    ctx.authorize_patient(
        caller,
        Action::ConsentRegister,
        pseudonym.as_str(),
        &p.org,
        &[],
    )?;
    let sealed = ctx
        .keys
        .seal(&p.org, &pseudonym, local_id)
        .map_err(AppError::internal)?;
    let pending = PendingEvent {
        kind: EventKind::Grant,
        sealed: Some(sealed),
        request_hash: request_fingerprint("grant", &pseudonym, &grant.retry.as_sent)?,
        pseudonym,
        hospital_org: p.org.clone(),
        recorded_by: p.subject.clone(),
        idempotency_tags: ctx.keys.idempotency_tags(&p.org, &grant.retry.key),
        signature: grant.signature,
        decisions: grant.decisions,
    };
    if let Some((row, code)) = grant_fast_path(ctx, &pending, grant.version)? {
        ctx.log.entries_committed();
        return created(&row, Some(code));
    }
    let version_id = grant.version;
    record(ctx, pending, move |conn, pending| {
        let version = active_version(ctx, conn, version_id)?;
        check_items(
            &version,
            pending.decisions.iter().map(|(k, _)| k),
            true,
            "decisions",
        )?;
        Ok(version)
    })
}

/// Changes some items of a patient's consent, signed on the version in
/// force. Re-consent for materially changed or added items is recorded
/// this way.
pub fn change(ctx: &Context, caller: &Caller, change: Change) -> Result<Recorded, AppError> {
    let family = change.version.family;
    let pending = PendingEvent::of_known_patient(
        ctx,
        caller,
        (Action::ConsentChange, "change", EventKind::Amend),
        (change.patient, &change.retry),
        (change.signature, change.decisions),
    )?;
    let version_id = change.version;
    record(ctx, pending, move |conn, pending| {
        let version = active_version(ctx, conn, version_id)?;
        check_items(
            &version,
            pending.decisions.iter().map(|(k, _)| k),
            false,
            "decisions",
        )?;
        require_active(conn, pending, family)?;
        Ok(version)
    })
}

/// Withdraws a patient's whole consent in a family, or some items of it.
pub fn withdraw(
    ctx: &Context,
    caller: &Caller,
    withdrawal: Withdrawal,
) -> Result<Recorded, AppError> {
    withdraw_under(ctx, caller, withdrawal, Action::ConsentWithdraw)
}

/// A withdrawal authorized as `action`: a hospital's, or the patient's
/// own in the portal (`ConsentWithdrawOwn`).
pub fn withdraw_under(
    ctx: &Context,
    caller: &Caller,
    withdrawal: Withdrawal,
    action: Action,
) -> Result<Recorded, AppError> {
    let family = withdrawal.family;
    let (kind, decisions) = match &withdrawal.items {
        None => (EventKind::WithdrawAll, Vec::new()),
        Some(keys) => (
            EventKind::WithdrawItems,
            keys.iter().map(|k| (k.clone(), Decision::Deny)).collect(),
        ),
    };
    let pending = PendingEvent::of_known_patient(
        ctx,
        caller,
        (action, "withdraw", kind),
        (withdrawal.patient, &withdrawal.retry),
        (withdrawal.signature, decisions),
    )?;
    record(ctx, pending, move |conn, pending| {
        // A withdrawal is recorded against the version in force; without one
        // there can be no consent to withdraw.
        let in_force = documents::list_family(conn, family)?
            .into_iter()
            .find(|v| v.status == DocumentStatus::Active)
            .ok_or(AppError::NoActiveConsent)?;
        check_items(
            &in_force,
            pending.decisions.iter().map(|(k, _)| k),
            false,
            "items",
        )?;
        require_active(conn, pending, family)?;
        Ok(in_force)
    })
}

/// The version named by a request, which must be the one in force.
fn active_version(
    ctx: &Context,
    conn: &mut DbConnection,
    id: DocumentVersionId,
) -> Result<DocumentVersion, AppError> {
    let version = ctx
        .versions
        .load(conn, id)?
        .ok_or(AppError::UnknownDocumentVersion)?;
    match version.status {
        DocumentStatus::Active => Ok(version),
        other => Err(AppError::DocumentVersionNotActive {
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
) -> Result<(), AppError> {
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
    AppError::unless_problems(problems)
}

fn event_response(row: &EventRow) -> Result<EventResponse, AppError> {
    Ok(EventResponse {
        event_id: row.id.clone(),
        patient_ref: row.patient_pseudonym.clone(),
        family: row.family.parse().map_err(AppError::internal)?,
        kind: EventKind::parse(&row.kind).ok_or_else(|| AppError::internal("stored event kind"))?,
        document_version: row.document_version_id.clone(),
        signed_at: crate::db::documents::utc(row.signed_at),
        recorded_at: crate::db::documents::utc(row.recorded_at),
        enrollment_code: None,
    })
}

enum Outcome {
    /// The event, the enrollment code of a grant, and how many recall
    /// notices it queued.
    Created(EventRow, Option<IssuedCode>, usize),
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
    entries::entry_by(
        &pending.hospital_org,
        crate::auth::Role::HospitalStaff.as_str(),
        &pending.recorded_by,
        pending.pseudonym.as_str(),
        entries::Access {
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
}

impl PendingEvent {
    /// A change or withdrawal of a registered patient's consent, recorded
    /// by the caller: nothing to seal, no enrollment code. A patient the
    /// caller may not `action` is not found.
    fn of_known_patient(
        ctx: &Context,
        caller: &Caller,
        (action, fingerprinted_as, kind): (Action, &str, EventKind),
        (pseudonym, retry): (PatientPseudonym, &Retry),
        (signature, decisions): (Signature, Vec<(ScopeItemKey, Decision)>),
    ) -> Result<Self, AppError> {
        let p = principal(caller)?;
        let patient = ctx.read(|conn| visible_patient(ctx, conn, caller, action, &pseudonym))?;
        Ok(PendingEvent {
            kind,
            sealed: None,
            request_hash: request_fingerprint(fingerprinted_as, &pseudonym, &retry.as_sent)?,
            pseudonym,
            hospital_org: patient.hospital_org,
            recorded_by: p.subject.clone(),
            idempotency_tags: ctx.keys.idempotency_tags(&p.org, &retry.key),
            signature,
            decisions,
        })
    }
}

/// Stores a consent event in one transaction: the idempotency check, the
/// caller-specific checks in `prepare`, the patient row and the event.
/// `prepare` returns the document version the event is recorded against.
fn record(
    ctx: &Context,
    pending: PendingEvent,
    prepare: impl FnOnce(&mut DbConnection, &PendingEvent) -> Result<DocumentVersion, AppError>,
) -> Result<Recorded, AppError> {
    let now = ctx.now();
    let mut conn = ctx.connection()?;
    let attempt = crate::db::write_transaction(&mut conn, |conn| {
        // Checks first. A request refused here may still be a retry of one
        // that succeeded (its version since retired, its consent since
        // withdrawn): then the original answer wins.
        let checked = prepare(conn, &pending).and_then(|version| match version.effective_from {
            Some(from) if pending.signature.signed_at < from => Err(AppError::field(
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
        // A retry is caught by the unique (hospital, key) constraint below
        // and answered from the stored event; no pre-check round trip on the
        // common path.
        store::record_event(conn, &row, &pending.decisions, pending.sealed.as_ref(), now)?;
        ledger::append(conn, &[consent_entry(&pending, version.id, now)])?;
        // Whatever the event, a live release whose use the patient's
        // consent no longer permits gets a recall notice, in this same
        // transaction (decision 0027).
        let recalled = recalls::recall_what_consent_no_longer_permits(
            conn,
            &ctx.data_use,
            pending.pseudonym.as_str(),
            version.id.family,
            Cause::Event { id: &row.id },
            now,
        )?;
        // A proxy's consent for a minor recorded only after they came of
        // age has lapsed already; the patient hears it now.
        if pending.signature.signer == SignerKind::Proxy {
            recalls::tell_of_a_proxy_consent_recorded_late(
                conn,
                &ctx.data_use,
                pending.pseudonym.as_str(),
                version.id.family,
                &row.id,
                now,
            )?;
        }
        let code = match pending.kind {
            EventKind::Grant => Some(enrollment::issue_code(
                ctx,
                conn,
                pending.pseudonym.as_str(),
                &pending.recorded_by,
                now,
            )?),
            _ => None,
        };
        Ok(Outcome::Created(row, code, recalled))
    });
    let outcome = match attempt {
        // The key was used before (or two retries raced): answer from the
        // stored event.
        Err(AppError::UniqueViolation(cause)) => {
            let existing = store::find_by_idempotency_key(
                &mut conn,
                &pending.hospital_org,
                &pending.idempotency_tags,
            )?
            .ok_or(AppError::Internal(cause))?;
            replay(existing, &pending.request_hash)?
        }
        other => other?,
    };
    match outcome {
        Outcome::Created(row, code, recalled) => {
            ctx.log.entries_committed();
            if recalled > 0 {
                ctx.log.deliveries_queued();
            }
            created(&row, code)
        }
        Outcome::Replayed(row) => Ok(Recorded {
            event: event_response(&row)?,
            replayed: true,
        }),
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
        signer_kind: pending.signature.signer.as_str().to_owned(),
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

fn created(row: &EventRow, code: Option<IssuedCode>) -> Result<Recorded, AppError> {
    tracing::info!(event_id = %row.id, kind = %row.kind, version = %row.document_version_id, "consent event recorded");
    let mut event = event_response(row)?;
    event.enrollment_code = code;
    Ok(Recorded {
        event,
        replayed: false,
    })
}

/// A grant on PostgreSQL in one statement (see
/// `db::consents::grant_in_one_statement`). `None` means: take the general
/// path, which also explains every refusal and replays retries.
fn grant_fast_path(
    ctx: &Context,
    pending: &PendingEvent,
    version: DocumentVersionId,
) -> Result<Option<(EventRow, IssuedCode)>, AppError> {
    let Some(sealed) = pending.sealed.as_ref() else {
        return Ok(None);
    };
    if ctx.backend != crate::db::Backend::Postgres {
        return Ok(None);
    }
    let now = ctx.now();
    let row = event_row(pending, version, now);
    let entry = consent_entry(pending, version, now);
    let code = enrollment::new_code(ctx, now)?;
    ctx.read(|conn| {
        let Some(content) = ctx.versions.content(conn, version)? else {
            return Ok(None);
        };
        if check_items(
            &content,
            pending.decisions.iter().map(|(k, _)| k),
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
            match store::grant_in_one_statement(conn, &row, &pending.decisions, sealed, &extras) {
                Ok(true) => Some((row, code.issued)),
                Ok(false) | Err(_) => None,
            },
        )
    })
}

fn replay(existing: EventRow, request_hash: &str) -> Result<Outcome, AppError> {
    if existing.request_hash == request_hash {
        Ok(Outcome::Replayed(existing))
    } else {
        Err(AppError::IdempotencyKeyReused)
    }
}

fn require_active(
    conn: &mut DbConnection,
    pending: &PendingEvent,
    family: DocumentFamily,
) -> Result<(), AppError> {
    let (_, _, snap) = snapshot(
        conn,
        pending.pseudonym.as_str(),
        family,
        pending.signature.signed_at,
    )?;
    if snap.status == ConsentStatus::Active {
        Ok(())
    } else {
        Err(AppError::NoActiveConsent)
    }
}
