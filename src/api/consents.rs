//! Per-patient e-consent: registration, changes, withdrawals, reads and
//! FHIR export. Requests are parsed here into the commands of
//! `app::consents`, which records and reads.

use super::extract::IdempotencyKey;
use super::problem::ApiError;
use super::state::AppState;
use crate::api::extract::Json;
use crate::app::consents::{
    self, ConsentView, EventList, EventResponse, Grant, Recorded, Retry, Signature, SignerKind,
    Withdrawal, RELATIONSHIPS,
};
use crate::app::enrollment::QrWanted;
use crate::app::gates::principal;
use crate::app::text::Text;
use crate::app::{AppError, Context};
use crate::auth::Caller;
use crate::consent::document::FieldProblem;
use crate::consent::{Decision, DocumentFamily, DocumentVersionId, ScopeItemKey};
use crate::pseudonym::{LocalPatientId, PatientPseudonym};
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(register_consent)
        .service(read_consent)
        .service(list_events)
        .service(export_fhir)
        .service(change_consent)
        .service(withdraw_consent);
}

/// Who explained the document: a staff identifier.
pub const EXPLAINED_BY: Text = Text::line(128);

/// Who signed.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SignerInput {
    /// `patient` or `proxy` (代諾者: a parent, guardian or other legal proxy).
    pub kind: String,
    /// For proxies: `parent`, `legal_guardian`, `spouse`, `child`, `sibling`,
    /// `other_relative` or `other`. Coded, so no free text reaches storage.
    #[serde(default)]
    pub relationship: Option<String>,
}

/// A consent signed on a unified consent document version: one decision for
/// every scope item of that version.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The hospital's own patient ID. Turned into a keyed pseudonym at once;
    /// never stored, logged or returned.
    pub local_patient_id: String,
    /// e.g. `cancer-v2`; must be the version in force.
    pub document_version: String,
    /// `permit` or `deny` for every scope item of the version.
    pub decisions: BTreeMap<String, String>,
    pub signer: SignerInput,
    /// Staff identifier of the person who explained the document.
    pub explained_by: String,
    /// RFC 3339 time of signature.
    pub signed_at: String,
    /// `sha256:<hex>` of the signed form (PDF or image) kept by the hospital.
    pub form_hash: String,
}

/// A change of some items, signed on the version in force. Also how
/// re-consent for materially changed or added items is recorded.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub document_version: String,
    pub decisions: BTreeMap<String, String>,
    pub signer: SignerInput,
    pub explained_by: String,
    pub signed_at: String,
    pub form_hash: String,
}

/// Withdrawal of the whole consent (`items` absent) or of some items.
#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    #[serde(default)]
    pub items: Option<Vec<String>>,
    pub signer: SignerInput,
    pub explained_by: String,
    pub signed_at: String,
    pub form_hash: String,
}

/// The signature fields of every consent request, parsed; each problem is
/// added to `problems`.
fn parse_signature(
    signer: &SignerInput,
    explained_by: &str,
    signed_at: &str,
    form_hash: &str,
    now: DateTime<Utc>,
    problems: &mut Vec<FieldProblem>,
) -> Option<Signature> {
    let (kind, relationship) = match (signer.kind.as_str(), signer.relationship.as_deref()) {
        ("patient", None) => (SignerKind::Patient, None),
        ("patient", Some(_)) => {
            problems.push(FieldProblem::new(
                "signer.relationship",
                "only a proxy has a relationship",
            ));
            (SignerKind::Patient, None)
        }
        ("proxy", Some(rel)) if RELATIONSHIPS.contains(&rel) => {
            (SignerKind::Proxy, Some(rel.to_owned()))
        }
        ("proxy", _) => {
            problems.push(FieldProblem::new(
                "signer.relationship",
                format!("a proxy needs one of: {}", RELATIONSHIPS.join(", ")),
            ));
            (SignerKind::Proxy, None)
        }
        _ => {
            problems.push(FieldProblem::new(
                "signer.kind",
                "must be `patient` or `proxy`",
            ));
            (SignerKind::Patient, None)
        }
    };
    let explained = EXPLAINED_BY
        .check(explained_by, "explained_by")
        .map_err(|e| {
            if let AppError::Validation(mut found) = e {
                problems.append(&mut found);
            }
        })
        .unwrap_or_default();
    let signed = match DateTime::parse_from_rfc3339(signed_at) {
        Ok(t) if !consents::signed_by(t.with_timezone(&Utc), now) => {
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
        signer: kind,
        relationship,
        explained_by: explained,
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

/// Every field problem at once, or the parsed command.
fn command<T>(problems: Vec<FieldProblem>, parsed: Option<T>) -> Result<T, AppError> {
    AppError::unless_problems(problems)?;
    // Every field that failed to parse left a problem above.
    parsed.ok_or_else(|| AppError::internal("a parse failed without naming its field"))
}

fn retry(key: IdempotencyKey, as_sent: &impl Serialize) -> Result<Retry, AppError> {
    Ok(Retry {
        key: key.0,
        as_sent: serde_json::to_value(as_sent).map_err(AppError::internal)?,
    })
}

/// A consent request as it arrived: its body, its `Idempotency-Key`, and
/// when (a signature may not lie later than a few minutes after).
pub struct Received<B> {
    pub body: B,
    pub key: IdempotencyKey,
    pub now: DateTime<Utc>,
}

impl TryFrom<Received<GrantRequest>> for Grant {
    type Error = AppError;

    fn try_from(received: Received<GrantRequest>) -> Result<Self, AppError> {
        let Received { body, key, now } = received;
        let mut problems = Vec::new();
        let local_id = LocalPatientId::parse(&body.local_patient_id)
            .map_err(|m| problems.push(FieldProblem::new("local_patient_id", m)))
            .ok();
        let version = parse_version(&body.document_version, &mut problems);
        let decisions = parse_decisions(&body.decisions, &mut problems);
        let signature = parse_signature(
            &body.signer,
            &body.explained_by,
            &body.signed_at,
            &body.form_hash,
            now,
            &mut problems,
        );
        let (local_patient_id, version, signature) = command(
            problems,
            local_id
                .zip(version)
                .zip(signature)
                .map(|((l, v), s)| (l, v, s)),
        )?;
        Ok(Grant {
            local_patient_id,
            version,
            decisions,
            signature,
            retry: retry(key, &body)?,
        })
    }
}

impl TryFrom<(PatientPseudonym, DocumentFamily, Received<ChangeRequest>)> for consents::Change {
    type Error = AppError;

    fn try_from(
        (patient, family, received): (PatientPseudonym, DocumentFamily, Received<ChangeRequest>),
    ) -> Result<Self, AppError> {
        let Received { body, key, now } = received;
        let mut problems = Vec::new();
        let version = parse_version(&body.document_version, &mut problems);
        let decisions = parse_decisions(&body.decisions, &mut problems);
        if body.decisions.is_empty() {
            problems.push(FieldProblem::new("decisions", "name at least one item"));
        }
        if version.is_some_and(|v| v.family != family) {
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
            now,
            &mut problems,
        );
        let (version, signature) = command(problems, version.zip(signature))?;
        Ok(consents::Change {
            patient,
            version,
            decisions,
            signature,
            retry: retry(key, &(&family, &body))?,
        })
    }
}

impl
    TryFrom<(
        PatientPseudonym,
        DocumentFamily,
        Received<WithdrawalRequest>,
    )> for Withdrawal
{
    type Error = AppError;

    fn try_from(
        (patient, family, received): (
            PatientPseudonym,
            DocumentFamily,
            Received<WithdrawalRequest>,
        ),
    ) -> Result<Self, AppError> {
        let Received { body, key, now } = received;
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
            now,
            &mut problems,
        );
        let signature = command(problems, signature)?;
        Ok(Withdrawal {
            patient,
            family,
            items,
            signature,
            retry: retry(key, &(&family, &body))?,
        })
    }
}

#[derive(Deserialize, IntoParams)]
pub struct ConsentPath {
    /// The patient's pseudonym (`patient_ref`).
    pub patient_ref: String,
    /// `cancer` or `rare_disease`.
    pub family: String,
}

/// A `patient_ref` from a path: a malformed one names nobody.
pub(crate) fn patient_ref(raw: &str) -> Result<PatientPseudonym, AppError> {
    PatientPseudonym::parse(raw).ok_or(AppError::NotFound)
}

fn family(raw: &str) -> Result<DocumentFamily, AppError> {
    raw.parse().map_err(|_| AppError::NotFound)
}

#[derive(Deserialize, IntoParams)]
pub struct AsOfQuery {
    /// RFC 3339 instant; defaults to now.
    pub as_of: Option<String>,
}

/// The answer to a recorded event: 201 with the new event, or 200 with
/// `Idempotent-Replayed: true` for a retry of an earlier identical request.
fn recorded(state: &AppState, recorded: Recorded, qr: QrWanted) -> Result<HttpResponse, ApiError> {
    let Recorded {
        mut event,
        replayed,
    } = recorded;
    if replayed {
        return Ok(HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(event));
    }
    state.metrics.consent_event_recorded(event.kind.as_str());
    event.enrollment_code = event.enrollment_code.map(|c| c.with_qr(qr)).transpose()?;
    Ok(HttpResponse::Created().json(event))
}

/// Records an event on a registered patient's consent: the path read (an
/// unknown family or a malformed patient names no record), the request
/// parsed into its command, `action` run.
async fn record_on<B, C>(
    state: &AppState,
    caller: Caller,
    path: &ConsentPath,
    (body, key): (B, IdempotencyKey),
    action: fn(&Context, &Caller, C) -> Result<Recorded, AppError>,
) -> Result<HttpResponse, ApiError>
where
    C: TryFrom<(PatientPseudonym, DocumentFamily, Received<B>), Error = AppError> + Send + 'static,
{
    let family = family(&path.family)?;
    principal(&caller)?;
    let patient = patient_ref(&path.patient_ref)?;
    let received = Received {
        body,
        key,
        now: state.ctx.now(),
    };
    let command = C::try_from((patient, family, received))?;
    let outcome = state.run(move |ctx| action(ctx, &caller, command)).await?;
    recorded(state, outcome, QrWanted::default())
}

/// Registers a patient's e-consent on the unified consent document version in
/// force. Requires `hospital_staff`; the patient belongs to the caller's
/// hospital. A form a proxy signed while the patient was a minor, recorded
/// after the day the hospital recorded them coming of age, has lapsed as
/// it is recorded (decision 0026): the patient is told at once, with a
/// `consent_lapse` entry. So is a change a minor's proxy signed.
#[utoipa::path(tag = "consents", request_body = GrantRequest,
    params(QrWanted),
    responses(
        (status = 201, body = EventResponse),
        (status = 200, body = EventResponse, description = "Idempotent replay of an earlier identical request")))]
#[post("/v1/consents")]
pub async fn register_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    enrollment_qr: web::Query<QrWanted>,
    body: Json<GrantRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let grant = Grant::try_from(Received {
        body: body.into_inner(),
        key: idempotency,
        now: state.ctx.now(),
    })?;
    let outcome = state
        .run(move |ctx| consents::grant(ctx, &caller, grant))
        .await?;
    recorded(&state, outcome, enrollment_qr.into_inner())
}

/// Changes some items of a patient's consent, signed on the version in force.
/// Re-consent for materially changed or added items is recorded this way.
#[utoipa::path(tag = "consents", params(ConsentPath),
    request_body = ChangeRequest,
    responses((status = 201, body = EventResponse), (status = 200, body = EventResponse)))]
#[post("/v1/patients/{patient_ref}/consents/{family}/changes")]
pub async fn change_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    path: web::Path<ConsentPath>,
    body: Json<ChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    record_on(
        &state,
        caller,
        &path,
        (body.into_inner(), idempotency),
        consents::change,
    )
    .await
}

/// Withdraws a patient's whole consent in a family, or some items of it.
#[utoipa::path(tag = "consents", params(ConsentPath),
    request_body = WithdrawalRequest,
    responses((status = 201, body = EventResponse), (status = 200, body = EventResponse)))]
#[post("/v1/patients/{patient_ref}/consents/{family}/withdrawals")]
pub async fn withdraw_consent(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    path: web::Path<ConsentPath>,
    body: Json<WithdrawalRequest>,
) -> Result<HttpResponse, ApiError> {
    record_on(
        &state,
        caller,
        &path,
        (body.into_inner(), idempotency),
        consents::withdraw,
    )
    .await
}

/// A patient's consent in one family as in force now, or at `as_of`.
/// Every item carries the reason for its decision.
#[utoipa::path(tag = "consents", params(ConsentPath, AsOfQuery),
    responses((status = 200, body = ConsentView)))]
#[get("/v1/patients/{patient_ref}/consents/{family}")]
pub async fn read_consent(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
    query: web::Query<AsOfQuery>,
) -> Result<web::Json<ConsentView>, ApiError> {
    let family = family(&path.family)?;
    // Checked before anything is read; the moment of reading is the default.
    let as_of = match query.as_of.as_deref() {
        Some(raw) => Some(
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| AppError::field("as_of", "must be an RFC 3339 timestamp"))?,
        ),
        None => None,
    };
    principal(&caller)?;
    let patient = patient_ref(&path.patient_ref)?;
    let view = state
        .run(move |ctx| consents::read(ctx, &caller, &patient, family, as_of))
        .await?;
    Ok(web::Json(view))
}

/// Every consent event of a patient in one family, oldest first. Nothing is
/// ever overwritten, so this is the full history.
#[utoipa::path(tag = "consents", params(ConsentPath),
    responses((status = 200, body = EventList)))]
#[get("/v1/patients/{patient_ref}/consents/{family}/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
) -> Result<web::Json<EventList>, ApiError> {
    let family = family(&path.family)?;
    principal(&caller)?;
    let patient = patient_ref(&path.patient_ref)?;
    let events = state
        .run(move |ctx| consents::events(ctx, &caller, &patient, family))
        .await?;
    Ok(web::Json(events))
}

/// The patient's current consent as an HL7 FHIR R4 `Consent` resource: one
/// provision per scope item, coded with the item key and GA4GH DUO terms;
/// `policy.uri` is the canonical URI of the document version.
#[utoipa::path(tag = "consents", params(ConsentPath),
    responses((status = 200, content_type = "application/fhir+json", body = Object)))]
#[get("/v1/patients/{patient_ref}/consents/{family}/fhir")]
pub async fn export_fhir(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConsentPath>,
) -> Result<HttpResponse, ApiError> {
    let family = family(&path.family)?;
    principal(&caller)?;
    let patient = patient_ref(&path.patient_ref)?;
    let resource = state
        .run(move |ctx| consents::fhir(ctx, &caller, &patient, family))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(resource))
}
