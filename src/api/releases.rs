//! Consent-checked releases, their manifests, dataset handles and handle
//! resolution by genome stores, and recall notices.
//!
//! A release checks every patient's consent *at that instant*, writes the
//! manifest, one access-log entry per included patient (each with its
//! notification) and the provenance record in one transaction, and signs a
//! handle. Resolution checks the agreement and each patient's consent again.

use super::applications::{application_for, check_attestations, Application};
use super::consents::principal;
use super::portal::{
    deliveries, register_webhook, remove_webhook, webhook_views, DeliveryList, DeliveryQuery,
    WebhookList, WebhookRequest, WebhookView,
};
use super::state::AppState;
use crate::access::cohort::{SampleDecision, UseRequest};
use crate::access::duo::MATCHER_VERSION;
use crate::access::handle::{HandleClaims, HandleError, HANDLE_TYPE};
use crate::access::DataUsePolicy;
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal, Role};
use crate::consent::state::derive_consent;
use crate::consent::{DocumentFamily, Person};
use crate::db::access::{
    self as store, AgreementRow, AgreementTextRow, ReleaseRow, ReleaseSampleRow,
};
use crate::db::documents::utc;
use crate::db::notify::EndpointOwner;
use crate::db::{consents, documents, ledger, samples, write_transaction, DbConnection, PooledDb};
use crate::error::{AccessRefusal as Refusal, ApiError, Problem};
use crate::ledger::entry::{DataScope, LegalBasis, LogAction, LogEntry, Purpose};
use crate::notify::{RecallInstruction, RecallNotice};
use crate::pseudonym::genome_id::{project_patient_id, IdKind, PrintedId};
use crate::pseudonym::keyring::KeyDomain;
use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use utoipa::{IntoParams, ToSchema};

mod pass;
pub(crate) mod recall;

const MAX_RESOLVE_PAGE: i64 = 1_000;

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The genome store or TRE that will resolve the handle (one of
    /// `release.audiences` in `policies/data-use.toml`).
    pub audience: String,
}

/// What a release rested on, kept with it for audit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Provenance {
    pub matcher_version: String,
    /// The matching outcome per dataset at submission.
    #[schema(value_type = Object)]
    pub matching: BTreeMap<String, String>,
    /// Consent document versions relied on, with how many included samples
    /// rested on each (`cancer-v2` → 1234).
    pub consent_versions: BTreeMap<String, u64>,
    pub agreement_id: String,
    pub agreement_text_version: i32,
    pub agreement_text_sha256: String,
    /// The latest signed log checkpoint when the release was made; the
    /// release's own entries follow it.
    pub log_checkpoint_size: i64,
    pub log_checkpoint_root: String,
    pub min_cohort: u32,
    pub conditions: Vec<String>,
}

/// A release as kept: who made it for which store, what it included and
/// excluded, and what it rested on. Never its handle, which only the
/// member who released receives.
#[derive(Serialize, ToSchema)]
pub struct ReleaseRecord {
    pub id: String,
    pub application_id: String,
    pub agreement_id: String,
    /// The member who released, by subject.
    pub released_by: String,
    pub released_at: DateTime<Utc>,
    /// The genome store or TRE the handle was for.
    pub audience: String,
    pub handle_expires_at: DateTime<Utc>,
    pub included: i64,
    pub excluded: i64,
    /// Excluded samples by machine-readable reason.
    pub excluded_by_reason: BTreeMap<String, u64>,
    pub provenance: Provenance,
    /// Where members page through every include and exclude decision.
    pub manifest: String,
}

impl ReleaseRecord {
    /// The record of a finished release; its stored JSON is the service's
    /// own, so a value that does not parse is an internal error.
    fn from_row(row: ReleaseRow, public_base_url: &str) -> Result<Self, ApiError> {
        let excluded_by_reason = row
            .excluded_by_reason
            .as_deref()
            .ok_or_else(|| ApiError::internal("an unfinished release was read"))?;
        Ok(ReleaseRecord {
            manifest: format!("{public_base_url}/v1/releases/{}/manifest", row.id),
            excluded_by_reason: serde_json::from_str(excluded_by_reason)
                .map_err(ApiError::internal)?,
            provenance: serde_json::from_str(&row.provenance).map_err(ApiError::internal)?,
            id: row.id,
            application_id: row.application_id,
            agreement_id: row.agreement_id,
            released_by: row.released_by,
            released_at: utc(row.released_at),
            audience: row.audience,
            handle_expires_at: utc(row.handle_expires_at),
            included: row.included,
            excluded: row.excluded,
        })
    }
}

/// A new release: its record, and the handle for its audience.
#[derive(Serialize, ToSchema)]
pub struct ReleaseView {
    /// The signed dataset handle (EdDSA JWT) for the audience.
    pub handle: String,
    #[serde(flatten)]
    pub release: ReleaseRecord,
}

/// The whole release, computed and written inside one transaction.
struct Outcome {
    /// Finished: counts, exclusions and provenance filled in.
    row: ReleaseRow,
    /// Recall notices for changes that committed while the release read.
    recalled: usize,
}

fn refuse_unless_usable(agreement: &AgreementRow, now: DateTime<Utc>) -> Result<(), ApiError> {
    match agreement.state.as_str() {
        "active" if utc(agreement.expires_at) > now => Ok(()),
        "active" => Err(ApiError::refused(
            Refusal::AgreementExpired,
            format!("it expired at {}", utc(agreement.expires_at)),
        )),
        "suspended" => Err(ApiError::Access(
            Refusal::AgreementSuspended,
            agreement.state_reason.clone(),
        )),
        _ => Err(ApiError::Access(
            Refusal::AgreementRevoked,
            agreement.state_reason.clone(),
        )),
    }
}

/// The agreement covers the declared period only: its end is the
/// agreement's expiry, and before its first day (from midnight UTC, as the
/// expiry is) nothing is released.
fn refuse_before_period(app: &Application, now: DateTime<Utc>) -> Result<(), ApiError> {
    if now < crate::access::period_start(app.declaration.starts_on) {
        return Err(ApiError::refused(
            Refusal::AgreementNotStarted,
            format!("the agreed period starts on {}", app.declaration.starts_on),
        ));
    }
    Ok(())
}

/// The current agreement text, with when each of `members` accepted it
/// (in their order), or the refusal of the first who has not.
fn check_acceptances(
    conn: &mut DbConnection,
    agreement: &AgreementRow,
    members: &[(&str, &str)],
) -> Result<(AgreementTextRow, Vec<NaiveDateTime>), ApiError> {
    let text =
        store::current_text(conn)?.ok_or(ApiError::Access(Refusal::AgreementTextMissing, None))?;
    let accepted = store::acceptances_of(conn, std::slice::from_ref(&agreement.id))?;
    let mut accepted_at = Vec::with_capacity(members.len());
    for (org, researcher) in members {
        let member = format!("{researcher} of {org}");
        let mine: Vec<_> = accepted
            .iter()
            .filter(|a| a.member_org == *org && a.member == *researcher)
            .collect();
        if let Some(at) = mine
            .iter()
            .filter(|a| a.text_version == text.version && a.text_sha256 == text.sha256)
            .map(|a| a.accepted_at)
            .min()
        {
            accepted_at.push(at);
            continue;
        }
        return Err(if mine.is_empty() {
            ApiError::refused(
                Refusal::AgreementNotAccepted,
                format!("{member} has not accepted the agreement"),
            )
        } else {
            ApiError::refused(
                Refusal::AgreementOutdated,
                format!(
                    "{member} accepted an older text; version {} is current",
                    text.version
                ),
            )
        });
    }
    Ok((text, accepted_at))
}

/// What [`admit`] found: the usable agreement, the text in force, and when
/// each member admitted accepted it (in the order they were given).
pub(crate) struct Admission {
    pub agreement: AgreementRow,
    pub text: AgreementTextRow,
    pub accepted_at: Vec<NaiveDateTime>,
}

/// The agreement of an approved application, usable now, under which every
/// one of `members` (all of them for a release, the caller for a visa) may
/// act: attested today and bound by the current text.
pub(crate) fn admit(
    conn: &mut DbConnection,
    app: &Application,
    members: &[(&str, &str)],
    now: DateTime<Utc>,
) -> Result<Admission, ApiError> {
    if !app.state()?.is_approved() {
        return Err(ApiError::refused(
            Refusal::ApplicationNotApproved,
            format!("the application is {}", app.row.state),
        ));
    }
    let agreement = store::agreement_of_application(conn, &app.row.id)?
        .ok_or_else(|| ApiError::internal("approved application without agreement"))?;
    refuse_unless_usable(&agreement, now)?;
    refuse_before_period(app, now)?;
    check_attestations(conn, members, crate::calendar::day_of(now))?;
    let (text, accepted_at) = check_acceptances(conn, &agreement, members)?;
    Ok(Admission {
        agreement,
        text,
        accepted_at,
    })
}

/// The use each patient's consent is checked against, now: commercial
/// and abroad as declared and decided at submission, or as the register
/// says of the member organizations today, whichever is stricter. An
/// organization re-registered as industry, or abroad, after approval
/// reaches only the patients who consented to that (decision 0023).
fn use_request(
    policy: &DataUsePolicy,
    conn: &mut DbConnection,
    app: &Application,
) -> Result<UseRequest, ApiError> {
    let registered = store::find_organizations(conn, &app.member_orgs())?;
    let now = app.use_now(policy, &registered);
    Ok(UseRequest {
        commercial: now.commercial,
        abroad: now.abroad,
        diseases: app.declaration.purpose.diseases().to_vec(),
        proxy_consent_lapses_at_majority: policy.release.proxy_consent_lapses_at_majority,
    })
}

/// The use a handed-out sample is checked against again, as the register
/// says now ([`UseRequest::rechecked`]).
fn reuse_request(
    policy: &DataUsePolicy,
    conn: &mut DbConnection,
    app: &Application,
) -> Result<UseRequest, ApiError> {
    Ok(use_request(policy, conn, app)?.rechecked())
}

fn research_access(
    app: &Application,
    agreement: &str,
    action: LogAction,
    dataset: &str,
    objects: u32,
) -> super::access::Access {
    super::access::Access {
        action,
        purpose: Purpose::Research {
            duo: app.declaration.purpose.duo_id().to_owned(),
        },
        basis: LegalBasis::Agreement {
            id: agreement.to_owned(),
        },
        scope: DataScope::Dataset {
            dataset: dataset.to_owned(),
            objects,
        },
    }
}

/// Checks consent for a page of samples of one dataset, as of `now`.
fn decide_page(
    conn: &mut DbConnection,
    diseases: &crate::access::duo::DiseaseHierarchy,
    request: &UseRequest,
    (family, history): (DocumentFamily, &crate::consent::document::VersionHistory),
    page: &[store::CohortSample],
    now: DateTime<Utc>,
) -> Result<Vec<SampleDecision>, ApiError> {
    let patients = page.iter().map(|s| s.patient_pseudonym.as_str());
    let consent = PageConsent::load(
        conn,
        request.proxy_consent_lapses_at_majority,
        (family, history),
        patients,
        now,
    )?;
    Ok(page
        .iter()
        .map(|s| {
            consent.decide(
                request,
                &s.patient_pseudonym,
                s.diagnosis.as_deref(),
                diseases,
            )
        })
        .collect())
}

/// The consent of a page's patients in one family as of an instant, read
/// once, so that their samples can be decided for one use or several.
struct PageConsent {
    snapshots: HashMap<String, crate::consent::state::ConsentSnapshot>,
    /// A patient with no events: unknown consent, so nothing is permitted.
    none: crate::consent::state::ConsentSnapshot,
    minors: HashMap<String, Person>,
}

impl PageConsent {
    fn load<'a>(
        conn: &mut DbConnection,
        proxy_consent_lapses_at_majority: bool,
        (family, history): (DocumentFamily, &crate::consent::document::VersionHistory),
        patients: impl Iterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let mut patients: Vec<String> = patients.map(str::to_owned).collect();
        patients.sort();
        patients.dedup();
        let events = consents::events_for_patients(conn, &patients, family)?;
        // Only a proxy's signature can lapse at majority, so only patients
        // with one are looked up: none in a cohort of adults, or when policy
        // keeps a proxy's consent.
        let signed_by_proxy: Vec<String> = if proxy_consent_lapses_at_majority {
            events
                .iter()
                .filter(|(_, list)| list.iter().any(|e| e.by_proxy))
                .map(|(patient, _)| patient.clone())
                .collect()
        } else {
            Vec::new()
        };
        let minors = consents::minors_among(conn, &signed_by_proxy)?
            .into_iter()
            .collect();
        let mut snapshots = HashMap::with_capacity(patients.len());
        for (patient, list) in events {
            let snapshot = derive_consent(&list, history, now);
            snapshots.insert(patient, snapshot);
        }
        Ok(Self {
            snapshots,
            none: derive_consent(&[], history, now),
            minors,
        })
    }

    fn decide(
        &self,
        request: &UseRequest,
        patient: &str,
        diagnosis: Option<&str>,
        diseases: &crate::access::duo::DiseaseHierarchy,
    ) -> SampleDecision {
        let snapshot = self.snapshots.get(patient).unwrap_or(&self.none);
        let adult = Person::default();
        let person = self.minors.get(patient).unwrap_or(&adult);
        request.decide(snapshot, person, diagnosis, diseases)
    }
}

#[allow(clippy::too_many_arguments)]
fn release(
    state: &AppState,
    conn: &mut DbConnection,
    spare: Option<PooledDb>,
    caller: &Caller,
    p: &Principal,
    application_id: &str,
    audience: &str,
    (now, watermark): (DateTime<Utc>, i64),
) -> Result<Outcome, ApiError> {
    let app = application_for(state, conn, caller, Action::ReleaseCreate, application_id)?;
    if !app.is_member(p) {
        return Err(ApiError::Access(Refusal::NotAMember, None));
    }
    // The register says what the use is until this commits (decision 0029).
    crate::db::gate::hold_register_entries(conn, &app.member_orgs())?;
    let Admission {
        agreement, text, ..
    } = admit(conn, &app, &app.members(), now)?;
    let checkpoint = ledger::latest_checkpoint(conn)?;
    let conditions: Vec<String> = app
        .conditions()?
        .iter()
        .map(|c| c.code().to_owned())
        .collect();
    let release_id = format!("rel-{}", uuid::Uuid::new_v4());
    let handle_expires_at =
        now + chrono::Duration::seconds(i64::from(state.data_use.release.handle_ttl_seconds));
    let mut row = ReleaseRow {
        id: release_id.clone(),
        application_id: app.row.id.clone(),
        agreement_id: agreement.id.clone(),
        released_by: p.subject.clone(),
        audience: audience.to_owned(),
        released_at: now.naive_utc(),
        handle_expires_at: handle_expires_at.naive_utc(),
        included: 0,
        excluded: 0,
        provenance: String::new(),
        excluded_by_reason: None,
    };
    // The row goes first so the manifest can reference it; its counts and
    // provenance are filled in below, in the same transaction.
    store::insert_release(conn, &row)?;

    let datasets = store::find_datasets(conn, &app.declaration.datasets)?;
    let request = use_request(&state.data_use, conn, &app)?;
    let rechecked_as = request.clone().rechecked();
    let tally = pass::write_cohort(
        conn,
        spare,
        &pass::Cohort {
            state,
            app: &app,
            agreement_id: &agreement.id,
            releaser: p,
            request,
            release_id: &release_id,
            datasets: &datasets,
            now,
        },
    )?;
    row.included = tally.included;
    row.excluded = tally.excluded;
    let min_cohort = state.data_use.release.min_cohort;
    if row.included < i64::from(min_cohort) {
        return Err(ApiError::refused(
            Refusal::CohortBelowMinimum,
            format!(
                "{} samples qualify; the minimum is {min_cohort}",
                row.included
            ),
        ));
    }
    let provenance = Provenance {
        matcher_version: MATCHER_VERSION.to_owned(),
        matching: app
            .matching()?
            .into_iter()
            .map(|m| (m.dataset, m.outcome))
            .collect(),
        consent_versions: tally.consent_versions,
        agreement_id: agreement.id.clone(),
        agreement_text_version: text.version,
        agreement_text_sha256: text.sha256,
        log_checkpoint_size: checkpoint.as_ref().map_or(0, |c| c.size),
        log_checkpoint_root: checkpoint.map_or_else(String::new, |c| hex::encode(c.root)),
        min_cohort,
        conditions,
    };
    row.provenance = serde_json::to_string(&provenance).map_err(ApiError::internal)?;
    row.excluded_by_reason =
        Some(serde_json::to_string(&tally.excluded_by_reason).map_err(ApiError::internal)?);
    store::finish_release(conn, &row)?;
    store::mark_access_started(conn, &app.row.id, now)?;
    // Last: changes that committed while the cohort was read could not see
    // this release; with the gate closed until commit, what they took back
    // is recalled here (decision 0029).
    crate::db::gate::close_until_commit(conn)?;
    let recalled = recall::recall_what_changed_during_release(
        conn,
        (&app.row.id, &release_id),
        &rechecked_as,
        (watermark, now),
        state.now(),
    )?;
    Ok(Outcome { row, recalled })
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationPath {
    pub id: String,
}

/// Releases the datasets of an approved application (a member). Every
/// sample's patient consent is checked now; a cohort smaller than the
/// policy's `min_cohort` is refused and nothing is written. Each member may
/// release `data_access.member_requests_per_minute` times a minute (429
/// with `Retry-After` past it): every release notifies its cohort.
#[utoipa::path(tag = "data-access", params(ApplicationPath), request_body = ReleaseRequest,
    responses((status = 201, body = ReleaseView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/applications/{id}/releases")]
pub async fn create_release(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
    body: web::Json<ReleaseRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    state.limit_member("release", &p)?;
    let audience = body.audience.trim().to_owned();
    if !state.data_use.release.audiences.contains(&audience) {
        return Err(ApiError::refused(
            Refusal::UnknownAudience,
            format!("`{audience}` is not a configured genome store"),
        ));
    }
    let id = path.into_inner().id;
    let now = state.now();
    let shared = state.clone();
    let outcome = state
        .db(move |conn| {
            // A second connection lets the cohort be read while it is
            // written (releases/pass.rs); without one it is read in turn.
            let spare = shared.pool.try_get();
            let watermark = crate::db::gate::watermark(conn)?;
            write_transaction(conn, |conn| {
                release(
                    &shared,
                    conn,
                    spare,
                    &caller,
                    &p,
                    &id,
                    &audience,
                    (now, watermark),
                )
            })
        })
        .await?;
    state.log.entries_committed();
    if outcome.recalled > 0 {
        state.log.deliveries_queued();
    }
    // The response carries the record as stored, as a later read returns it.
    let release = ReleaseRecord::from_row(outcome.row, &state.public_base_url)?;
    let claims = HandleClaims {
        iss: state.handles.issuer().to_owned(),
        aud: release.audience.clone(),
        sub: release.application_id.clone(),
        jti: release.id.clone(),
        typ: HANDLE_TYPE.to_owned(),
        agreement: release.agreement_id.clone(),
        datasets: release.provenance.matching.keys().cloned().collect(),
        conditions: release.provenance.conditions.clone(),
        iat: now.timestamp(),
        exp: release.handle_expires_at.timestamp(),
    };
    // Signing cannot fail for a loaded key; if it did, the release stands
    // and a member can ask for a fresh handle by releasing again.
    let handle = state.handles.issue(&claims).map_err(ApiError::internal)?;
    tracing::info!(release = %release.id, included = release.included, excluded = release.excluded, "dataset released");
    Ok(HttpResponse::Created().json(ReleaseView { handle, release }))
}

#[derive(Serialize, ToSchema)]
pub struct ReleaseList {
    /// Oldest first.
    pub releases: Vec<ReleaseRecord>,
}

/// Every release made under an application, oldest first, each with its
/// provenance (members, the governance body and auditors). Handles are
/// never kept, so none is listed.
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = ReleaseList), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/applications/{id}/releases")]
pub async fn releases_of_application(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<ReleaseList>, ApiError> {
    let rows = read_followed(&state, caller, path.into_inner().id, |conn, app| {
        Ok(store::releases_of(conn, &app.row.id)?)
    })
    .await?;
    let releases = rows
        .into_iter()
        .map(|row| ReleaseRecord::from_row(row, &state.public_base_url))
        .collect::<Result<_, _>>()?;
    Ok(web::Json(ReleaseList { releases }))
}

/// One release and what it rested on (members, the governance body and
/// auditors). Anyone who may not read its application gets 404, as for a
/// release that does not exist.
#[utoipa::path(tag = "data-access", params(ReleasePath),
    responses((status = 200, body = ReleaseRecord), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/releases/{id}")]
pub async fn get_release(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ReleasePath>,
) -> Result<web::Json<ReleaseRecord>, ApiError> {
    let p = principal(&caller)?.clone();
    let id = path.into_inner().id;
    let shared = state.clone();
    let row = state
        .db(move |conn| followed_release(&shared, conn, &caller, &p, &id))
        .await?;
    Ok(web::Json(ReleaseRecord::from_row(
        row,
        &state.public_base_url,
    )?))
}

/// The release, if the caller follows its application: 404 for a release
/// that does not exist and for one whose application the caller may not
/// read, so neither learns more than the other.
fn followed_release(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    p: &Principal,
    id: &str,
) -> Result<ReleaseRow, ApiError> {
    let release = store::find_release(conn, id)?.ok_or(ApiError::NotFound)?;
    followed_application(state, conn, caller, p, &release.application_id)?;
    Ok(release)
}

#[derive(Deserialize, IntoParams)]
pub struct ReleasePath {
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// The `next_after` of the previous page.
    pub after: Option<i64>,
    /// 1-1000; default 1000.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ManifestEntry {
    /// Where the sample stands in this project's own keyed order: not a
    /// count, and unrelated to its place in any other project's manifest.
    pub position: i64,
    pub dataset: String,
    /// The sample as this project sees it (unlinkable across projects).
    pub project_sample_id: String,
    /// The patient as this project sees it: a patient's samples share it,
    /// so a tumour can be paired with its germline sample; unlinkable
    /// across projects. Only on included samples: nothing more is said of
    /// patients whose consent excluded them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_patient_id: Option<String>,
    pub included: bool,
    /// `consented`, or why the sample was excluded.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ManifestPage {
    pub release: String,
    pub entries: Vec<ManifestEntry>,
    pub next_after: Option<i64>,
}

fn page_bounds(query: &PageQuery) -> Result<(i64, i64), ApiError> {
    let limit = query.limit.unwrap_or(MAX_RESOLVE_PAGE);
    if !(1..=MAX_RESOLVE_PAGE).contains(&limit) {
        return Err(ApiError::field("limit", "1-1000"));
    }
    Ok((query.after.unwrap_or(0).max(0), limit))
}

/// Every include and exclude decision of a release, paged (members), in
/// the project's own keyed order (decision 0030).
#[utoipa::path(tag = "data-access", params(ReleasePath, PageQuery),
    responses((status = 200, body = ManifestPage), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/releases/{id}/manifest")]
pub async fn manifest(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ReleasePath>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<ManifestPage>, ApiError> {
    let p = principal(&caller)?.clone();
    let (after, limit) = page_bounds(&query)?;
    let id = path.into_inner().id;
    let shared = state.clone();
    let page = state
        .db(move |conn| {
            let release = followed_release(&shared, conn, &caller, &p, &id)?;
            let rows = store::release_page(conn, &release, after, limit, false)?;
            let next_after = (rows.len() as i64 == limit)
                .then(|| rows.last().map(|r| r.position))
                .flatten();
            let mut entries = Vec::with_capacity(rows.len());
            for r in rows {
                let project_patient_id = if r.included {
                    Some(project_patient_of(&shared, &release.application_id, &r)?)
                } else {
                    None
                };
                entries.push(ManifestEntry {
                    position: r.position,
                    dataset: r.dataset_id,
                    project_sample_id: r.project_sample_id,
                    project_patient_id,
                    included: r.included,
                    reason: r.reason,
                });
            }
            Ok(ManifestPage {
                release: id,
                entries,
                next_after,
            })
        })
        .await?;
    Ok(web::Json(page))
}

/// How the project sees the patient of a manifest row, under the same
/// project key version as the row's sample ID, so a release keeps one
/// patient ID per patient across a key rotation.
fn project_patient_of(
    state: &AppState,
    project: &str,
    row: &ReleaseSampleRow,
) -> Result<String, ApiError> {
    let sample = PrintedId::parse(IdKind::ProjectSample, &row.project_sample_id)
        .map_err(ApiError::internal)?;
    let key = state
        .keys
        .version(KeyDomain::Project, sample.version())
        .ok_or_else(|| ApiError::internal("a release's project key version is gone"))?;
    Ok(project_patient_id(key, project, &row.patient_pseudonym).to_string())
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The dataset handle.
    pub handle: String,
    /// The `next_after` of the previous page.
    #[serde(default)]
    pub after: Option<i64>,
    /// Included samples per page, 1-1000; default 1000.
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ResolvedObject {
    pub project_sample_id: String,
    pub name: String,
    pub version: i32,
    /// Where the genome store keeps the bytes.
    pub uri: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub format: String,
}

#[derive(Serialize, ToSchema)]
pub struct WithheldSample {
    pub project_sample_id: String,
    /// Why the patient's current consent no longer permits this use.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Resolution {
    pub release: String,
    pub agreement: String,
    pub conditions: Vec<String>,
    pub objects: Vec<ResolvedObject>,
    pub withheld: Vec<WithheldSample>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<i64>,
}

/// Resolves a dataset handle to data-object references (a genome store or
/// TRE whose organization is the handle's audience). The agreement and
/// every patient's current consent are checked again; samples whose patient
/// withdrew are withheld. Each patient served gets a log entry and a
/// notification. Pages follow the manifest's keyed order.
#[utoipa::path(tag = "data-access", request_body = ResolveRequest,
    responses((status = 200, body = Resolution), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/handles/resolve")]
pub async fn resolve_handle(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ResolveRequest>,
) -> Result<web::Json<Resolution>, ApiError> {
    state.authorize(&caller, Action::HandleResolve, &Resource::Registry)?;
    let p = principal(&caller)?.clone();
    let now = state.now();
    let claims = state
        .handles
        .verify(&body.handle, &p.org, now)
        .map_err(|e| match e {
            HandleError::Invalid => ApiError::Access(Refusal::HandleInvalid, None),
            HandleError::Expired => ApiError::Access(Refusal::HandleExpired, None),
            HandleError::WrongAudience => ApiError::Access(Refusal::HandleWrongAudience, None),
        })?;
    let (after, limit) = page_bounds(&PageQuery {
        after: body.after,
        limit: body.limit,
    })?;
    let shared = state.clone();
    let resolution = state
        .db(move |conn| {
            let release = store::find_release(conn, &claims.jti)?
                .ok_or(ApiError::Access(Refusal::HandleInvalid, None))?;
            let agreement = store::find_agreement(conn, &release.agreement_id)?
                .ok_or_else(|| ApiError::internal("release without agreement"))?;
            refuse_unless_usable(&agreement, now).map_err(|e| {
                ApiError::Access(Refusal::HandleRevoked, e.problem(None, None).detail)
            })?;
            let app = Application::from_row(
                store::find_application(conn, &release.application_id)?
                    .ok_or_else(|| ApiError::internal("release without application"))?,
            )?;
            let request = reuse_request(&shared.data_use, conn, &app)?;
            let rows = store::release_page(conn, &release, after, limit, true)?;
            let next_after = (rows.len() as i64 == limit)
                .then(|| rows.last().map(|r| r.position))
                .flatten();
            // The page's objects are read on a second connection while
            // consent is checked on this one; those of withheld samples
            // are dropped unseen.
            let (checked, objects) = crate::db::alongside(
                conn,
                shared.pool.try_get(),
                |conn| recheck_consent(conn, &shared, &request, &rows, now),
                |conn| latest_objects(conn, &rows),
            );
            let (mut served, withheld) = checked?;
            // In manifest order, which is the project's own (decision 0030):
            // genome-ID order would be the same in every project.
            served.sort_unstable_by_key(|r| r.position);
            let latest = objects?;
            let mut objects = Vec::with_capacity(served.len());
            let mut listed: HashSet<&str> = HashSet::with_capacity(served.len());
            let mut objects_per: HashMap<(&str, &str), u32> = HashMap::new();
            for r in &served {
                let of_sample = latest.get(&r.genome_id);
                *objects_per
                    .entry((r.patient_pseudonym.as_str(), r.dataset_id.as_str()))
                    .or_default() += of_sample.map_or(0, BTreeMap::len) as u32;
                // A sample in two released datasets is listed once.
                if !listed.insert(r.genome_id.as_str()) {
                    continue;
                }
                let named = of_sample.into_iter().flat_map(BTreeMap::values);
                objects.extend(named.map(|o| ResolvedObject {
                    project_sample_id: r.project_sample_id.clone(),
                    name: o.name.clone(),
                    version: o.version,
                    uri: o.uri.clone(),
                    sha256: o.sha256.clone(),
                    size_bytes: o.size_bytes,
                    format: o.format.clone(),
                }));
            }
            let entries: Vec<LogEntry> = objects_per
                .iter()
                .map(|((patient, dataset), n)| {
                    super::access::entry(
                        &p,
                        Role::DataStore,
                        patient,
                        research_access(&app, &agreement.id, LogAction::HandleResolve, dataset, *n),
                        now,
                    )
                })
                .collect();
            ledger::append_atomically(conn, &entries)?;
            Ok(Resolution {
                release: release.id.clone(),
                agreement: agreement.id.clone(),
                conditions: claims.conditions.clone(),
                objects,
                withheld,
                next_after,
            })
        })
        .await?;
    state.log.entries_committed();
    Ok(web::Json(resolution))
}

/// Checks again, as of `now`, the consent of each patient of a resolved
/// page, per dataset family. Returns the rows served and the samples
/// withheld, with why.
fn recheck_consent<'a>(
    conn: &mut DbConnection,
    state: &AppState,
    request: &UseRequest,
    rows: &'a [ReleaseSampleRow],
    now: DateTime<Utc>,
) -> Result<(Vec<&'a ReleaseSampleRow>, Vec<WithheldSample>), ApiError> {
    let mut by_dataset: BTreeMap<&str, Vec<&ReleaseSampleRow>> = BTreeMap::new();
    for r in rows {
        by_dataset.entry(r.dataset_id.as_str()).or_default().push(r);
    }
    let mut served = Vec::with_capacity(rows.len());
    let mut withheld = Vec::new();
    for (dataset_id, members) in by_dataset {
        let dataset = store::find_datasets(conn, &[dataset_id.to_owned()])?
            .pop()
            .ok_or_else(|| ApiError::internal("release of unknown dataset"))?;
        let family: DocumentFamily = dataset.domain.parse().map_err(ApiError::internal)?;
        let history = documents::history(conn, family)?;
        let page: Vec<store::CohortSample> = members
            .iter()
            .map(|r| store::CohortSample {
                genome_id: r.genome_id.clone(),
                patient_pseudonym: r.patient_pseudonym.clone(),
                diagnosis: None,
            })
            .collect();
        let decisions = decide_page(
            conn,
            &state.diseases,
            request,
            (family, &history),
            &page,
            now,
        )?;
        for (r, decision) in members.into_iter().zip(decisions) {
            match decision {
                SampleDecision::Included { .. } => served.push(r),
                SampleDecision::Excluded(why) => withheld.push(WithheldSample {
                    project_sample_id: r.project_sample_id.clone(),
                    reason: why.as_str().to_owned(),
                }),
            }
        }
    }
    Ok((served, withheld))
}

/// The newest version of each named object of the page's samples, by
/// genome ID, in name order.
fn latest_objects(
    conn: &mut DbConnection,
    rows: &[ReleaseSampleRow],
) -> Result<HashMap<String, BTreeMap<String, samples::ObjectRow>>, ApiError> {
    let genome_ids: Vec<String> = rows.iter().map(|r| r.genome_id.clone()).collect();
    let mut by_sample: HashMap<String, BTreeMap<String, samples::ObjectRow>> = HashMap::new();
    for o in samples::objects_of(conn, &genome_ids)? {
        let named = by_sample.entry(o.genome_id.clone()).or_default();
        if named
            .get(&o.name)
            .is_none_or(|existing| existing.version < o.version)
        {
            named.insert(o.name.clone(), o);
        }
    }
    Ok(by_sample)
}

/// The public keys of dataset handles (EdDSA), for stores that check a
/// handle before presenting it, and of GA4GH Passport visas (ES256), which
/// each visa's `jku` names (JWKS; `kid` tells them apart).
#[utoipa::path(tag = "data-access", security(()), responses((status = 200, description = "JWKS")))]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let mut keys = state.handles.public_jwks();
    keys.extend(state.visas.public_jwks());
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .body(serde_json::json!({ "keys": keys }).to_string())
}

#[derive(Serialize, ToSchema)]
pub struct RecallList {
    pub notices: Vec<ListedRecall>,
}

/// A recall notice as listed: the notice, and what its webhook delivery
/// told the members to do, so a member who reads the list rather than the
/// webhook gets the same words.
#[derive(Serialize, ToSchema)]
pub struct ListedRecall {
    #[serde(flatten)]
    pub notice: RecallNotice,
    pub instruction: RecallInstruction,
}

impl From<crate::db::access::RecallRow> for ListedRecall {
    fn from(row: crate::db::access::RecallRow) -> Self {
        let instruction = RecallInstruction::for_reason(&row.reason);
        ListedRecall {
            notice: RecallNotice::from(row),
            instruction,
        }
    }
}

/// Recall notices for an application (members): each written in the same
/// transaction as the consent change (or coming of age) that took the
/// sample back from this use.
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = RecallList), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/applications/{id}/recalls")]
pub async fn recalls(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<RecallList>, ApiError> {
    let notices = read_followed(&state, caller, path.into_inner().id, |conn, app| {
        Ok(store::recalls_of(conn, &app.row.id)?
            .into_iter()
            .map(ListedRecall::from)
            .collect())
    })
    .await?;
    Ok(web::Json(RecallList { notices }))
}

/// The application, if the caller follows it. Members follow what happens
/// under their application (releases, manifests, recall notices, visas); so
/// do the governance body and auditors, who oversee every use. Anyone else
/// who may read the application is refused `not_a_member`; anyone who may
/// not gets 404.
fn followed_application(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    p: &Principal,
    id: &str,
) -> Result<Application, ApiError> {
    let app = application_for(state, conn, caller, Action::ApplicationRead, id)?;
    if app.is_member(p) || p.has(Role::Auditor) || p.has(Role::Governance) {
        return Ok(app);
    }
    Err(ApiError::Access(Refusal::NotAMember, None))
}

/// Reads `what` of an application the caller follows (see
/// `followed_application`); an outsider who may not read the
/// application gets 404, as for one that does not exist.
pub(crate) async fn read_followed<T, F>(
    state: &web::Data<AppState>,
    caller: Caller,
    id: String,
    what: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection, &Application) -> Result<T, ApiError> + Send + 'static,
{
    let p = principal(&caller)?.clone();
    let shared = state.clone();
    state
        .db(move |conn| {
            let app = followed_application(&shared, conn, &caller, &p, &id)?;
            what(conn, &app)
        })
        .await
}

/// Refuses unless the caller is a member of the application (an outsider
/// who may not read it gets 404).
async fn require_member(
    state: &web::Data<AppState>,
    caller: Caller,
    id: String,
) -> Result<(), ApiError> {
    let p = principal(&caller)?.clone();
    let shared = state.clone();
    state
        .db(move |conn| {
            let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &id)?;
            if !app.is_member(&p) {
                return Err(ApiError::Access(Refusal::NotAMember, None));
            }
            Ok(())
        })
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationWebhookPath {
    /// The application.
    pub id: String,
    /// The webhook.
    pub webhook: String,
}

/// Registers a webhook for the application's recall notices (members).
/// Each notice written from now on is POSTed to it at once, signed like
/// every GenomeGate webhook (HMAC-SHA256 over id, timestamp and body),
/// retried with backoff and dead-lettered after `notify.max_attempts`.
#[utoipa::path(tag = "data-access", params(ApplicationPath), request_body = WebhookRequest,
    responses((status = 201, body = WebhookView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/applications/{id}/webhooks")]
pub async fn add_recall_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
    body: web::Json<WebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner().id;
    require_member(&state, caller, id.clone()).await?;
    register_webhook(
        &state,
        body.into_inner().url,
        EndpointOwner::Application(id),
    )
    .await
}

/// The application's active recall webhooks (members).
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = WebhookList), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/applications/{id}/webhooks")]
pub async fn recall_webhooks(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<WebhookList>, ApiError> {
    let id = path.into_inner().id;
    require_member(&state, caller, id.clone()).await?;
    let rows = state
        .db(move |conn| {
            Ok(crate::db::notify::endpoints_owned_by(
                conn,
                &EndpointOwner::Application(id),
            )?)
        })
        .await?;
    Ok(web::Json(webhook_views(rows)))
}

/// Stops one of the application's recall webhooks (members). Its
/// undelivered notices are dead-lettered; `GET /recalls` still lists them.
#[utoipa::path(tag = "data-access", params(ApplicationWebhookPath),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[delete("/v1/applications/{id}/webhooks/{webhook}")]
pub async fn remove_recall_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationWebhookPath>,
) -> Result<HttpResponse, ApiError> {
    let ApplicationWebhookPath { id, webhook } = path.into_inner();
    require_member(&state, caller, id.clone()).await?;
    remove_webhook(&state, webhook, EndpointOwner::Application(id)).await
}

/// Delivery state of one of the application's recall webhooks (members),
/// newest first. `index` is the notice's number, as in its `recall-<number>`
/// idempotency key.
#[utoipa::path(tag = "data-access", params(ApplicationWebhookPath, DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/applications/{id}/webhooks/{webhook}/deliveries")]
pub async fn recall_webhook_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationWebhookPath>,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    let ApplicationWebhookPath { id, webhook } = path.into_inner();
    require_member(&state, caller, id.clone()).await?;
    deliveries(
        &state,
        webhook,
        query.into_inner().state,
        EndpointOwner::Application(id),
    )
    .await
}
