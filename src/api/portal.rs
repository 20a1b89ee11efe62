//! The patient portal: enrollment with a one-time code, patient tokens,
//! and what a patient sees: who accessed their data and why, their current
//! consent, a live notification stream, preferences and webhooks.
//!
//! A patient token is bound to one pseudonym, and every query here is keyed
//! by the token's pseudonym only: there is no path parameter through which a
//! patient could name someone else.

use super::consents::{consent_summaries, principal, ConsentSummary};
use super::extract::PeerAddress;
use super::state::AppState;
use crate::auth::dev::TokenClaims;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::config::PatientsConfig;
use crate::consent::Person;
use crate::db::{
    consents as patients, ledger,
    notify::{self as endpoints_store, EndpointOwner},
    portal as store, DbConnection,
};
use crate::error::{ApiError, Problem};
use crate::ledger::entry::{explain, Explanation, Language, LogEntry};
use crate::notify::{self, signing};
use crate::pseudonym::keyring::Keyring;
use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Crockford base32: no I, L, O or U, so a printed code reads back
/// unambiguously.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A one-time enrollment code, shown once.
#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct IssuedCode {
    /// 20 characters in 5 groups (100 random bits), e.g. `7KQ2-…`.
    pub code: String,
    pub expires_at: DateTime<Utc>,
    /// What the code's QR code carries: the portal's enrollment link with
    /// the code in its fragment (`patients.enrollment_link`), or the bare
    /// code when no link is configured. For a hospital that draws its own
    /// QR codes.
    pub qr_payload: String,
    /// With `?qr=svg`: the QR code of `qr_payload` as an SVG document, to
    /// print on the patient's letter (error correction M, quiet zone
    /// included, one unit per module).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<String>,
}

impl IssuedCode {
    /// Adds the printable QR code when the caller asked for it.
    pub fn with_qr(mut self, wanted: QrWanted) -> Result<Self, ApiError> {
        if wanted.qr == Some(QrFormat::Svg) {
            self.qr_svg = Some(
                super::enrollment_qr::svg(&self.qr_payload)
                    .map_err(|e| ApiError::internal(format!("QR code: {e}")))?,
            );
        }
        Ok(self)
    }
}

#[derive(Deserialize, Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QrFormat {
    Svg,
}

/// `?qr=svg` asks for the enrollment code's QR code as well.
#[derive(Deserialize, IntoParams, Debug, Clone, Copy, Default)]
#[into_params(parameter_in = Query)]
pub struct QrWanted {
    pub qr: Option<QrFormat>,
}

pub struct NewCode {
    pub issued: IssuedCode,
    /// What is stored: a keyed hash.
    pub hash: String,
}

/// Upper-cases and drops separators, so `7kq2 m9…` and `7KQ2-M9…` match.
fn normalize_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub fn new_code(
    keys: &Keyring,
    cfg: &PatientsConfig,
    now: DateTime<Utc>,
) -> Result<NewCode, ApiError> {
    let random = crate::keyfile::random_bytes(20).map_err(ApiError::internal)?;
    let chars: String = random
        .iter()
        .map(|b| CODE_ALPHABET[usize::from(b & 31)] as char)
        .collect();
    let code = chars
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-");
    let hash = keys
        .enrollment_code_tags(&normalize_code(&code))
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("no patient key"))?;
    Ok(NewCode {
        issued: IssuedCode {
            qr_payload: super::enrollment_qr::payload(cfg.enrollment_link.as_deref(), &code),
            code,
            expires_at: now + chrono::Duration::hours(cfg.enrollment_ttl_hours),
            qr_svg: None,
        },
        hash,
    })
}

/// Issues and stores a code in the caller's transaction.
pub fn issue_code(
    keys: &Keyring,
    cfg: &PatientsConfig,
    conn: &mut DbConnection,
    pseudonym: &str,
    issued_by: &str,
    now: DateTime<Utc>,
) -> Result<IssuedCode, ApiError> {
    let code = new_code(keys, cfg, now)?;
    store::insert_code(
        conn,
        &code.hash,
        pseudonym,
        issued_by,
        now.naive_utc(),
        code.issued.expires_at.naive_utc(),
    )?;
    Ok(code.issued)
}

#[derive(Deserialize, IntoParams)]
pub struct PatientPath {
    pub patient_ref: String,
}

/// Issues a new enrollment code for one of the caller's hospital's patients
/// (a lost printout, or a replayed registration). Earlier codes stay valid
/// until they expire or are used.
#[utoipa::path(tag = "patients", params(PatientPath, QrWanted),
    responses((status = 201, body = IssuedCode), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/patients/{patient_ref}/enrollment-codes")]
pub async fn issue_enrollment_code(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<PatientPath>,
    qr: web::Query<QrWanted>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    let pseudonym =
        crate::pseudonym::PatientPseudonym::parse(&path.patient_ref).ok_or(ApiError::NotFound)?;
    let key = pseudonym.as_str().to_owned();
    let row = state
        .db(move |conn| Ok(patients::find_patient(conn, &key)?))
        .await?
        .ok_or(ApiError::NotFound)?;
    state.authorize_patient(
        &caller,
        Action::EnrollmentIssue,
        pseudonym.as_str(),
        &row.hospital_org,
        &[],
    )?;
    let now = state.now();
    let shared = state.clone();
    let code = state
        .db(move |conn| {
            crate::db::write_transaction(conn, |conn| {
                issue_code(
                    &shared.keys,
                    &shared.patients,
                    conn,
                    pseudonym.as_str(),
                    &p.subject,
                    now,
                )
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(code.with_qr(*qr)?))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct PatientSession {
    /// Keep with the secret: together they sign the patient in again.
    pub account_id: String,
    /// Shown once; only its hash is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_secret: Option<String>,
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    pub account_id: String,
    pub account_secret: String,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

fn rate_limit(state: &AppState, peer: &PeerAddress, what: &str) -> Result<(), ApiError> {
    state
        .limiter
        .allow(&format!("{what}:{}", peer.0))
        .map_err(|retry_after_seconds| ApiError::RateLimited {
            retry_after_seconds,
        })
}

fn patient_token(
    state: &AppState,
    account_id: &str,
    pseudonym: &str,
    hospital: &str,
) -> Result<(String, i64), ApiError> {
    let now = state.now().timestamp();
    let ttl = state.patients.token_ttl_seconds;
    let roles = vec!["patient".to_owned()];
    let token = state
        .patient_tokens
        .sign_claims(&TokenClaims {
            iss: &state.patient_tokens.issuer,
            aud: state.verifier.audience(),
            sub: account_id,
            org: hospital,
            roles: &roles,
            iat: now,
            exp: now + ttl,
            patient_ref: Some(pseudonym),
        })
        .map_err(ApiError::internal)?;
    Ok((token, ttl))
}

/// Binds a portal account with a one-time enrollment code. Anonymous and
/// rate-limited per client address; wrong, expired and used codes get the
/// same answer.
#[utoipa::path(tag = "portal", request_body = EnrollRequest,
    responses((status = 201, body = PatientSession), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/portal/enroll")]
pub async fn enroll(
    state: web::Data<AppState>,
    peer: PeerAddress,
    body: web::Json<EnrollRequest>,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &peer, "enroll")?;
    let tags = state.keys.enrollment_code_tags(&normalize_code(&body.code));
    let now = state.now();
    let account_id = uuid::Uuid::new_v4().to_string();
    let secret = format!(
        "gps_{}",
        hex::encode(crate::keyfile::random_bytes(32).map_err(ApiError::internal)?)
    );
    let (id, secret_hash) = (account_id.clone(), sha256_hex(&secret));
    let (pseudonym, hospital) = state
        .db(move |conn| {
            crate::db::write_transaction(conn, |conn| {
                let pseudonym = store::redeem_code(conn, &tags, now.naive_utc())?
                    .ok_or(ApiError::EnrollmentCodeInvalid)?;
                let patient = patients::find_patient(conn, &pseudonym)?
                    .ok_or(ApiError::EnrollmentCodeInvalid)?;
                store::insert_account(conn, &id, &pseudonym, &secret_hash, now.naive_utc())?;
                Ok((pseudonym, patient.hospital_org))
            })
        })
        .await?;
    let (access_token, expires_in) = patient_token(&state, &account_id, &pseudonym, &hospital)?;
    tracing::info!("patient portal account enrolled");
    Ok(HttpResponse::Created().json(PatientSession {
        account_id,
        account_secret: Some(secret),
        access_token,
        token_type: "Bearer",
        expires_in,
    }))
}

/// Signs a patient in with their account ID and secret: a fresh short-lived
/// token. Rate-limited per client address.
#[utoipa::path(tag = "portal", request_body = SignInRequest,
    responses((status = 200, body = PatientSession), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/portal/token")]
pub async fn sign_in(
    state: web::Data<AppState>,
    peer: PeerAddress,
    body: web::Json<SignInRequest>,
) -> Result<web::Json<PatientSession>, ApiError> {
    rate_limit(&state, &peer, "sign-in")?;
    let id = body.account_id.clone();
    let found = state
        .db(move |conn| {
            let Some((pseudonym, hash)) = store::account(conn, &id)? else {
                return Ok(None);
            };
            let hospital = patients::find_patient(conn, &pseudonym)?.map(|p| p.hospital_org);
            Ok(hospital.map(|h| (pseudonym, hash, h)))
        })
        .await?;
    let presented = sha256_hex(&body.account_secret);
    let Some((pseudonym, hash, hospital)) = found else {
        return Err(ApiError::InvalidCredentials);
    };
    // Both sides are SHA-256 of a 256-bit random secret: comparing digests
    // leaks nothing an attacker can steer.
    if hash != presented {
        return Err(ApiError::InvalidCredentials);
    }
    let (access_token, expires_in) =
        patient_token(&state, &body.account_id, &pseudonym, &hospital)?;
    Ok(web::Json(PatientSession {
        account_id: body.account_id.clone(),
        account_secret: None,
        access_token,
        token_type: "Bearer",
        expires_in,
    }))
}

/// The calling patient: their pseudonym and hospital, checked by policy.
async fn me(state: &web::Data<AppState>, caller: &Caller) -> Result<(String, Person), ApiError> {
    let p = principal(caller)?;
    let pseudonym = p.patient_ref.clone().ok_or(ApiError::Forbidden)?;
    let key = pseudonym.clone();
    let row = state
        .db(move |conn| Ok(patients::find_patient(conn, &key)?))
        .await?
        .ok_or(ApiError::Forbidden)?;
    state.authorize(
        caller,
        Action::PortalUse,
        &Resource::Patient {
            pseudonym: &pseudonym,
            hospital: &row.hospital_org,
            centers: &[],
        },
    )?;
    Ok((pseudonym, row.person()))
}

#[derive(Deserialize, IntoParams)]
pub struct LogPage {
    /// Entries older than this cursor (from `next_before`).
    pub before: Option<i64>,
    /// 1–100, default 20.
    pub limit: Option<i64>,
    /// `ja` or `en`; defaults to the patient's preference.
    pub lang: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AccessView {
    /// Position in the log; absent for the few milliseconds before the entry
    /// is integrated.
    pub index: Option<u64>,
    #[schema(value_type = Object)]
    pub entry: LogEntry,
    /// The exact logged bytes, base64: with an inclusion proof from
    /// `/v1/log/proofs/inclusion`, a receipt anyone can check.
    pub entry_bytes: String,
    #[schema(value_type = Object)]
    pub explanation: Explanation,
}

#[derive(Serialize, ToSchema)]
pub struct AccessPage {
    pub entries: Vec<AccessView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(20) {
        n @ 1..=100 => Ok(n),
        _ => Err(ApiError::field("limit", "must be 1-100")),
    }
}

fn language(raw: Option<&str>, default: &str) -> Result<Language, ApiError> {
    let raw = raw.unwrap_or(default);
    Language::parse(raw).ok_or_else(|| ApiError::field("lang", "must be `ja` or `en`"))
}

/// Rows to a page of entries, `limit` asked for plus one to know if more.
pub(crate) fn page_of(
    rows: Vec<(ledger::EntryRow, Option<u64>)>,
    limit: i64,
    lang: Language,
) -> Result<AccessPage, ApiError> {
    let more = rows.len() as i64 > limit;
    let mut entries = Vec::new();
    let mut last_seq = None;
    for (row, index) in rows.into_iter().take(limit as usize) {
        let entry = LogEntry::from_bytes(&row.entry).map_err(ApiError::internal)?;
        last_seq = Some(row.seq);
        entries.push(AccessView {
            index,
            entry_bytes: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &row.entry,
            ),
            explanation: explain(&entry, lang),
            entry,
        });
    }
    Ok(AccessPage {
        entries,
        next_before: if more { last_seq } else { None },
    })
}

/// Who accessed the calling patient's data, newest first: which
/// organization, which person in which role, for what purpose, under which
/// consent or agreement, and when, explained in Japanese or English.
#[utoipa::path(tag = "portal", params(LogPage),
    responses((status = 200, body = AccessPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/portal/access-log")]
pub async fn my_access_log(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<LogPage>,
) -> Result<web::Json<AccessPage>, ApiError> {
    let (pseudonym, _) = me(&state, &caller).await?;
    let limit = page_limit(query.limit)?;
    let before = query.before;
    let lang_param = query.lang.clone();
    let (rows, prefs) = state
        .db(move |conn| {
            let rows = ledger::patient_entries(conn, &pseudonym, before, limit + 1)?;
            Ok((rows, store::preferences(conn, &pseudonym)?))
        })
        .await?;
    let lang = language(lang_param.as_deref(), &prefs.language)?;
    Ok(web::Json(page_of(rows, limit, lang)?))
}

#[derive(Serialize, ToSchema)]
pub struct MyConsents {
    /// One entry per family with any consent event.
    pub consents: Vec<ConsentSummary>,
}

/// The calling patient's current consent in each family.
#[utoipa::path(tag = "portal", responses((status = 200, body = MyConsents)))]
#[get("/v1/portal/consents")]
pub async fn my_consents(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<MyConsents>, ApiError> {
    let (pseudonym, person) = me(&state, &caller).await?;
    let now = state.now();
    let consents = state
        .db(move |conn| consent_summaries(conn, &pseudonym, &person, now))
        .await?;
    Ok(web::Json(MyConsents { consents }))
}

#[derive(Deserialize, IntoParams)]
pub struct StreamStart {
    /// Replay the caller's receipts from this log index on (inclusive) before
    /// going live; `0` replays them all. A `Last-Event-ID` header, which an
    /// SSE client sends when it reconnects, takes precedence.
    pub from: Option<u64>,
}

/// The calling patient's live notification stream (Server-Sent Events).
/// Each `access` event is a receipt: the entry, its inclusion proof and the
/// signed checkpoint. Reconnect with `Last-Event-ID` (the last index seen)
/// to receive what was missed, oldest first; open with `?from=0` to receive
/// every receipt from the start. A stream that has more than
/// `notify.stream_replay_page` receipts to replay gets that many and is
/// closed, so the client's next reconnection continues from the last one:
/// nothing is skipped.
#[utoipa::path(tag = "portal", params(StreamStart),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
#[get("/v1/portal/notifications")]
pub async fn my_notifications(
    state: web::Data<AppState>,
    caller: Caller,
    start: web::Query<StreamStart>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (pseudonym, _) = me(&state, &caller).await?;
    // Subscribe before replaying, so nothing falls between the two; a frame
    // may then arrive twice, and its `id` tells the client.
    let (subscription, live) = state.log.hub.subscribe(&pseudonym);
    let after_last_seen = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|last| last.saturating_add(1));
    let page = state.stream_replay_page;
    let mut replay = Replay::default();
    if let Some(first) = after_last_seen.or(start.from) {
        let key = pseudonym.clone();
        replay = state
            .db(move |conn| {
                let Some(cp) = ledger::latest_checkpoint(conn)? else {
                    return Ok(Replay::default());
                };
                let size = cp.size as u64;
                let mut missed = ledger::patient_indices_from(conn, &key, first, size, page + 1)?;
                let more = missed.len() as i64 > page;
                missed.truncate(page as usize);
                let entries = ledger::entries_at(conn, &missed)?;
                let frames = notify::build(conn, &entries, size, &cp.note)?
                    .into_iter()
                    .map(|(_, n)| notify::sse_frame(&n))
                    .collect();
                Ok(Replay { frames, more })
            })
            .await?;
    }
    // A stream with more to replay ends after its page, so the client's
    // reconnection continues from the last id; otherwise it goes live.
    let live = (!replay.more).then_some((subscription, live));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(sse_body(replay.frames, live)))
}

/// Receipts a reconnecting stream missed, and whether more remain.
#[derive(Default)]
struct Replay {
    frames: Vec<String>,
    more: bool,
}

/// The SSE body: an opening comment, the backlog, then live frames with a
/// keep-alive comment every 15 s of silence. Ends when the hub drops the
/// stream (too slow) or the client goes away; without `live`, right after
/// the backlog, with a comment saying more remains.
fn sse_body(
    backlog: Vec<String>,
    live: Option<(
        crate::notify::hub::Subscription,
        tokio::sync::mpsc::Receiver<Arc<str>>,
    )>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>> {
    use futures_util::StreamExt;
    let closing = live
        .is_none()
        .then(|| ": more missed receipts; reconnect with the last id\n\n".to_owned());
    let opening = futures_util::stream::iter(
        std::iter::once(": connected\n\n".to_owned())
            .chain(backlog)
            .chain(closing)
            .map(|f| Ok(web::Bytes::from(f))),
    );
    let live = futures_util::stream::unfold(live, |state| async move {
        let (sub, mut rx) = state?;
        let frame = match tokio::time::timeout(std::time::Duration::from_secs(15), rx.recv()).await
        {
            Ok(Some(frame)) => web::Bytes::from(frame.as_bytes().to_vec()),
            Ok(None) => return None,
            Err(_) => web::Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(frame), Some((sub, rx))))
    });
    opening.chain(live)
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    /// `ja` or `en`: the language of explanations.
    pub language: String,
    /// Whether the hospital's patient app may also notify you.
    pub hospital_app: bool,
}

#[utoipa::path(tag = "portal", responses((status = 200, body = PreferencesBody)))]
#[get("/v1/portal/preferences")]
pub async fn my_preferences(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<PreferencesBody>, ApiError> {
    let (pseudonym, _) = me(&state, &caller).await?;
    let prefs = state
        .db(move |conn| Ok(store::preferences(conn, &pseudonym)?))
        .await?;
    Ok(web::Json(PreferencesBody {
        language: prefs.language,
        hospital_app: prefs.hospital_app,
    }))
}

#[utoipa::path(tag = "portal", request_body = PreferencesBody,
    responses((status = 200, body = PreferencesBody), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[put("/v1/portal/preferences")]
pub async fn set_my_preferences(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<PreferencesBody>,
) -> Result<web::Json<PreferencesBody>, ApiError> {
    let (pseudonym, _) = me(&state, &caller).await?;
    let body = body.into_inner();
    language(Some(&body.language), "ja")?;
    let prefs = store::Preferences {
        language: body.language.clone(),
        hospital_app: body.hospital_app,
    };
    let now = state.now();
    state
        .db(move |conn| {
            crate::db::write_transaction(conn, |conn| {
                Ok(store::set_preferences(
                    conn,
                    &pseudonym,
                    &prefs,
                    now.naive_utc(),
                )?)
            })
        })
        .await?;
    Ok(web::Json(body))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `https://` URL that receives signed notifications: a public host,
    /// on a port the deployment allows (`notify.webhook_ports`, by default
    /// 443 only).
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub created_at: DateTime<Utc>,
    /// Shown once, at registration: the HMAC-SHA256 key of the
    /// `webhook-signature` header (Standard Webhooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

fn check_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    let ok_scheme =
        url.starts_with("https://") || (state.allow_http_webhooks && url.starts_with("http://"));
    if !ok_scheme || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::field("url", "must be an https:// URL"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| ApiError::field("url", "is not a URL"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| ApiError::field("url", "names no host"))?;
    if !state.allow_private_webhook_targets {
        crate::notify::targets::check_host(host).map_err(|why| ApiError::field("url", why))?;
    }
    crate::notify::targets::check_port(parsed.port_or_known_default(), &state.webhook_ports)
        .map_err(|why| ApiError::field("url", why))
}

/// Registers a webhook for its owner: a patient, a hospital's patient app,
/// or an application's members (recall notices).
pub(crate) async fn register_webhook(
    state: &web::Data<AppState>,
    url: String,
    owner: EndpointOwner,
) -> Result<HttpResponse, ApiError> {
    check_url(state, &url)?;
    let id = uuid::Uuid::new_v4().to_string();
    let (shown, secret) = signing::new_secret().map_err(ApiError::internal)?;
    let sealed = state
        .keys
        .seal_bytes(&crate::workers::dispatcher::secret_aad(&id), &secret)
        .map_err(ApiError::internal)?;
    let now = state.now();
    let row = endpoints_store::EndpointRow {
        id: id.clone(),
        kind: "webhook".into(),
        patient_pseudonym: match &owner {
            EndpointOwner::Patient(p) => Some(p.clone()),
            _ => None,
        },
        hospital_org: match &owner {
            EndpointOwner::Hospital(h) => Some(h.clone()),
            _ => None,
        },
        application_id: match owner {
            EndpointOwner::Application(a) => Some(a),
            _ => None,
        },
        target: url.clone(),
        key_version: i32::try_from(sealed.key_version).ok(),
        nonce: Some(sealed.nonce),
        ciphertext: Some(sealed.ciphertext),
        created_at: now.naive_utc(),
        disabled_at: None,
    };
    state
        .db(move |conn| {
            crate::db::write_transaction(conn, |conn| {
                Ok(endpoints_store::insert_endpoint(conn, &row)?)
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(WebhookView {
        id,
        url,
        created_at: now,
        secret: Some(shown),
    }))
}

pub(crate) fn webhook_views(rows: Vec<endpoints_store::EndpointRow>) -> WebhookList {
    WebhookList {
        webhooks: rows
            .into_iter()
            .filter(|r| r.kind == "webhook")
            .map(|r| WebhookView {
                id: r.id,
                url: r.target,
                created_at: crate::db::documents::utc(r.created_at),
                secret: None,
            })
            .collect(),
    }
}

#[utoipa::path(tag = "portal", request_body = WebhookRequest,
    responses((status = 201, body = WebhookView), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/portal/webhooks")]
pub async fn add_my_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<WebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let (pseudonym, _) = me(&state, &caller).await?;
    register_webhook(
        &state,
        body.into_inner().url,
        EndpointOwner::Patient(pseudonym),
    )
    .await
}

#[utoipa::path(tag = "portal", responses((status = 200, body = WebhookList)))]
#[get("/v1/portal/webhooks")]
pub async fn my_webhooks(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<WebhookList>, ApiError> {
    let (pseudonym, _) = me(&state, &caller).await?;
    let rows = state
        .db(move |conn| {
            Ok(endpoints_store::endpoints_owned_by(
                conn,
                &EndpointOwner::Patient(pseudonym),
            )?)
        })
        .await?;
    Ok(web::Json(webhook_views(rows)))
}

#[derive(Deserialize, IntoParams)]
pub struct WebhookPath {
    pub id: String,
}

/// Stops a webhook. Its undelivered notifications are dead-lettered.
#[utoipa::path(tag = "portal", params(WebhookPath),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[delete("/v1/portal/webhooks/{id}")]
pub async fn remove_my_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    let (pseudonym, _) = me(&state, &caller).await?;
    remove_webhook(
        &state,
        path.into_inner().id,
        EndpointOwner::Patient(pseudonym),
    )
    .await
}

/// Disables one of `owner`'s webhooks; anyone else's is not found.
pub(crate) async fn remove_webhook(
    state: &web::Data<AppState>,
    id: String,
    owner: EndpointOwner,
) -> Result<HttpResponse, ApiError> {
    let now = state.now();
    state
        .db(move |conn| {
            crate::db::write_transaction(conn, |conn| {
                let owned =
                    endpoints_store::find_endpoint(conn, &id)?.is_some_and(|e| owner.owns(&e));
                if !owned || !endpoints_store::disable_endpoint(conn, &id, now.naive_utc())? {
                    return Err(ApiError::NotFound);
                }
                Ok(())
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub index: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Deserialize, IntoParams)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead` (the dead-letter queue).
    pub state: Option<String>,
}

/// Delivery state of one of the caller's webhooks, newest first.
#[utoipa::path(tag = "portal", params(WebhookPath, DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/portal/webhooks/{id}/deliveries")]
pub async fn my_webhook_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<WebhookPath>,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    let (pseudonym, _) = me(&state, &caller).await?;
    deliveries(
        &state,
        path.into_inner().id,
        query.into_inner().state,
        EndpointOwner::Patient(pseudonym),
    )
    .await
}

/// The deliveries of one of `owner`'s webhooks; anyone else's is not found.
pub(crate) async fn deliveries(
    state: &web::Data<AppState>,
    id: String,
    wanted_state: Option<String>,
    owner: EndpointOwner,
) -> Result<web::Json<DeliveryList>, ApiError> {
    if wanted_state
        .as_deref()
        .is_some_and(|s| !matches!(s, "pending" | "delivered" | "dead"))
    {
        return Err(ApiError::field(
            "state",
            "must be pending, delivered or dead",
        ));
    }
    let rows = state
        .db(move |conn| {
            let owned = endpoints_store::find_endpoint(conn, &id)?.is_some_and(|e| owner.owns(&e));
            if !owned {
                return Err(ApiError::NotFound);
            }
            Ok(endpoints_store::deliveries_of(
                conn,
                &id,
                wanted_state.as_deref(),
                500,
            )?)
        })
        .await?;
    Ok(web::Json(DeliveryList {
        deliveries: rows
            .into_iter()
            .map(|d| DeliveryView {
                index: d.idx,
                state: d.state,
                attempts: d.attempts,
                last_error: d.last_error,
                delivered_at: d.delivered_at.map(crate::db::documents::utc),
            })
            .collect(),
    }))
}

/// Registers a webhook of the caller's hospital's patient app: it hears
/// about every patient of the hospital who has not turned it off.
#[utoipa::path(tag = "patients", request_body = WebhookRequest,
    responses((status = 201, body = WebhookView), (status = 403, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/hospital-webhooks")]
pub async fn add_hospital_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<WebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    state.authorize(
        &caller,
        Action::WebhookManageHospital,
        &Resource::Hospital { org: &p.org },
    )?;
    register_webhook(
        &state,
        body.into_inner().url,
        EndpointOwner::Hospital(p.org),
    )
    .await
}

/// Delivery state of one of the caller's hospital's webhooks.
#[utoipa::path(tag = "patients", params(WebhookPath, DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/hospital-webhooks/{id}/deliveries")]
pub async fn hospital_webhook_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<WebhookPath>,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    let p = principal(&caller)?.clone();
    state.authorize(
        &caller,
        Action::WebhookManageHospital,
        &Resource::Hospital { org: &p.org },
    )?;
    deliveries(
        &state,
        path.into_inner().id,
        query.into_inner().state,
        EndpointOwner::Hospital(p.org),
    )
    .await
}
