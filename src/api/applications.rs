//! Data-use applications: submission with DUO matching, reads and lists,
//! and the committee's review. The register they draw on is in
//! `organizations.rs` and `datasets.rs`, the agreements they lead to in
//! `agreements.rs`, releases and handles in `releases.rs`.

use super::consents::principal;
use super::extract::OptionalIdempotencyKey;
use super::governance::{json, parse_json, text_field};
use super::state::AppState;
use crate::access::duo::{self, Applicant, DataUseTerms, MatchResult, Outcome, ResearchPurpose};
use crate::access::review::{self, ApplicationState, Condition, Vote};
use crate::access::{DataUsePolicy, UseKind};
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal};
use crate::db::access::{self as store, AgreementRow, ApplicationRow, OrganizationRow, VoteRow};
use crate::db::documents::utc;
use crate::db::{write_transaction, DbConnection};
use crate::error::{AccessRefusal as Refusal, ApiError, Problem};
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

/// Who acts for the matcher in an application's transitions.
const MATCHER_ACTOR: &str = "genomegate-duo-matcher";

// ---------------------------------------------------------------------------
// Applications

#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct PurposeRequest {
    /// `GRU`, `HMB`, `DS`, `POA` or `MDS` (methods development).
    pub code: String,
    /// For DS: disease codes of `policies/diseases.toml`.
    #[serde(default)]
    pub diseases: Vec<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    pub title: String,
    pub purpose: PurposeRequest,
    /// Dataset ids.
    pub datasets: Vec<String>,
    /// Member researchers (token subjects at the applicant organization).
    /// The submitter is always a member.
    pub members: Vec<String>,
    /// Member researchers of other verified organizations (a consortium's
    /// partners). Each needs a current ethics-training attestation at their
    /// own organization. Any industry organization among them makes the use
    /// commercial; any organization registered abroad makes it a transfer
    /// abroad.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partner_members: Vec<Member>,
    /// The research ethics committee's approval reference.
    pub ethics_ref: String,
    /// The first day of use: releases may start at its midnight in Japan
    /// (JST).
    pub starts_on: NaiveDate,
    /// The last day of use (JST), not before `starts_on` or today; the
    /// agreement expires at the midnight after it.
    pub ends_on: NaiveDate,
    /// Whether any recipient is outside the programme's home country
    /// (`transfer.home_country` in `policies/data-use.toml`). Must be true
    /// when any member organization is registered elsewhere.
    pub recipients_abroad: bool,
}

/// A member researcher and the organization whose token names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub org: String,
    pub researcher: String,
}

/// What the applicant declared, stored as submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Declaration {
    pub title: String,
    pub purpose: ResearchPurpose,
    pub datasets: Vec<String>,
    pub members: Vec<String>,
    /// Absent in applications stored before partner members existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partner_members: Vec<Member>,
    pub ethics_ref: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub recipients_abroad: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetMatch {
    pub dataset: String,
    /// `approve`, `abstain` (the committee decides) or `deny`.
    pub outcome: String,
    /// Every rule that fired, with a machine-readable `code`.
    #[schema(value_type = Vec<Object>)]
    pub rationale: Vec<duo::Reason>,
    pub required_conditions: Vec<String>,
    pub matcher: String,
}

#[derive(Serialize, ToSchema)]
pub struct TransitionView {
    pub state: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementView {
    pub id: String,
    /// `active`, `suspended` or `revoked`.
    pub state: String,
    pub expires_at: DateTime<Utc>,
    pub state_reason: Option<String>,
    /// Members who accepted the current text version.
    pub accepted_current_text: Vec<Member>,
    /// Every state it entered, oldest first: creation, suspensions,
    /// reinstatements, revocation.
    pub history: Vec<AgreementStateView>,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementStateView {
    pub state: String,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ApplicationView {
    pub id: String,
    pub org: String,
    pub submitted_by: String,
    pub title: String,
    pub purpose: PurposeRequest,
    pub datasets: Vec<String>,
    pub members: Vec<String>,
    pub partner_members: Vec<Member>,
    pub ethics_ref: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    /// As declared at submission.
    pub recipients_abroad: bool,
    /// The use is industrial: a member organization is registered as
    /// industry, now or at submission. Releases and resolutions check each
    /// patient's consent to industry use against this.
    pub commercial: bool,
    /// The data goes abroad: declared, or a member organization is
    /// registered outside the programme's home country, now or at
    /// submission. Releases and resolutions check each patient's consent to
    /// international transfer against this.
    pub transfers_abroad: bool,
    /// `under_review`, `approved`, `approved_with_conditions` or `rejected`.
    pub state: String,
    pub matching: Vec<DatasetMatch>,
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
    pub votes: usize,
    pub transitions: Vec<TransitionView>,
    pub agreement: Option<AgreementView>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub access_started_at: Option<DateTime<Utc>>,
}

pub(crate) fn purpose_view(purpose: &ResearchPurpose) -> PurposeRequest {
    PurposeRequest {
        code: purpose.code().to_owned(),
        diseases: purpose.diseases().to_vec(),
    }
}

/// An application with its declaration parsed.
pub(crate) struct Application {
    pub row: ApplicationRow,
    pub declaration: Declaration,
}

impl Application {
    /// Parses the stored declaration; no authorization.
    pub fn from_row(row: ApplicationRow) -> Result<Self, ApiError> {
        let declaration = parse_json(&row.declaration)?;
        Ok(Application { row, declaration })
    }

    pub fn state(&self) -> Result<ApplicationState, ApiError> {
        ApplicationState::parse(&self.row.state).ok_or_else(|| ApiError::internal("stored state"))
    }
    pub fn conditions(&self) -> Result<Vec<Condition>, ApiError> {
        parse_json(&self.row.conditions)
    }
    pub fn matching(&self) -> Result<Vec<DatasetMatch>, ApiError> {
        parse_json(&self.row.matching)
    }
    /// Every member as (organization, researcher): the applicant
    /// organization's first, then the partners'.
    pub fn members(&self) -> Vec<(&str, &str)> {
        self.declaration.members_of(&self.row.org)
    }

    /// The partner organizations, each once.
    pub fn partner_orgs(&self) -> Vec<String> {
        self.declaration.partner_orgs()
    }

    /// The applicant organization and the partner organizations, each once.
    pub fn member_orgs(&self) -> Vec<&str> {
        let mut orgs: Vec<&str> = self.members().into_iter().map(|(org, _)| org).collect();
        orgs.sort_unstable();
        orgs.dedup();
        orgs
    }

    /// The use now: as declared and decided at submission, or as
    /// `registered` (entries of the register, any others ignored) says of
    /// the member organizations today, whichever is stricter.
    pub fn use_now(&self, policy: &DataUsePolicy, registered: &[OrganizationRow]) -> UseKind {
        let members = self.member_orgs();
        policy.use_now(
            UseKind {
                commercial: self.row.commercial,
                abroad: self.declaration.recipients_abroad,
            },
            registered
                .iter()
                .filter(|o| members.contains(&o.org.as_str()))
                .map(|o| (o.kind.as_str(), o.country.as_str())),
        )
    }

    pub fn is_member(&self, p: &Principal) -> bool {
        self.members()
            .iter()
            .any(|(org, researcher)| *org == p.org && *researcher == p.subject)
    }

    /// Whether `org` is the applicant or a partner organization.
    pub fn has_member_org(&self, org: &str) -> bool {
        self.row.org == org
            || self
                .declaration
                .partner_members
                .iter()
                .any(|m| m.org == org)
    }
}

impl Declaration {
    /// Every member as (organization, researcher), given the applicant
    /// organization.
    pub fn members_of<'a>(&'a self, applicant: &'a str) -> Vec<(&'a str, &'a str)> {
        self.members
            .iter()
            .map(|m| (applicant, m.as_str()))
            .chain(
                self.partner_members
                    .iter()
                    .map(|m| (m.org.as_str(), m.researcher.as_str())),
            )
            .collect()
    }

    pub fn partner_orgs(&self) -> Vec<String> {
        let mut orgs: Vec<String> = self.partner_members.iter().map(|m| m.org.clone()).collect();
        orgs.sort();
        orgs.dedup();
        orgs
    }
}

/// Loads an application and checks `action` on it. A caller that may not
/// even read it gets the same 404 as for one that does not exist.
pub(crate) fn application_for(
    state: &AppState,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<Application, ApiError> {
    let app = Application::from_row(store::find_application(conn, id)?.ok_or(ApiError::NotFound)?)?;
    let partner_orgs = app.partner_orgs();
    let resource = Resource::Application {
        id,
        org: &app.row.org,
        partner_orgs: &partner_orgs,
    };
    if !state.policy.is_allowed(caller, action, &resource) {
        return Err(
            if state
                .policy
                .is_allowed(caller, Action::ApplicationRead, &resource)
            {
                ApiError::Forbidden
            } else {
                ApiError::NotFound
            },
        );
    }
    Ok(app)
}

/// Refuses unless every member, (organization, researcher), has a current
/// ethics-training attestation recorded for that organization.
pub(crate) fn check_attestations(
    conn: &mut DbConnection,
    members: &[(&str, &str)],
    today: NaiveDate,
) -> Result<(), ApiError> {
    let mut orgs: Vec<&str> = members.iter().map(|(org, _)| *org).collect();
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        let researchers: Vec<String> = members
            .iter()
            .filter(|(o, _)| *o == org)
            .map(|(_, r)| (*r).to_owned())
            .collect();
        let attested = store::attestations_of(conn, org, &researchers)?;
        for member in &researchers {
            match attested.iter().find(|a| &a.subject == member) {
                None => {
                    return Err(ApiError::refused(
                        Refusal::AttestationMissing,
                        format!("{member} of {org} has no ethics-training attestation"),
                    ))
                }
                Some(a) if a.expires_on < today => {
                    return Err(ApiError::refused(
                        Refusal::AttestationExpired,
                        format!(
                            "{member} of {org}: the attestation expired on {}",
                            a.expires_on
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn parse_purpose(body: &PurposeRequest, state: &AppState) -> Result<ResearchPurpose, ApiError> {
    // Forbidden purposes are refused by name before anything else, with
    // their own code, whatever else the request says.
    if state.data_use.forbids(&body.code) {
        return Err(ApiError::refused(
            Refusal::PurposeForbidden,
            format!("`{}` is forbidden by policy", body.code),
        ));
    }
    let purpose = match body.code.as_str() {
        "GRU" => ResearchPurpose::General,
        "HMB" => ResearchPurpose::HealthMedicalBiomedical,
        "POA" => ResearchPurpose::PopulationAncestry,
        "MDS" => ResearchPurpose::MethodsDevelopment,
        "DS" => {
            if body.diseases.is_empty() {
                return Err(ApiError::field(
                    "purpose.diseases",
                    "DS names at least one disease",
                ));
            }
            ResearchPurpose::DiseaseSpecific {
                diseases: body.diseases.clone(),
            }
        }
        _ => return Err(ApiError::field("purpose.code", "GRU, HMB, DS, POA or MDS")),
    };
    if !matches!(purpose, ResearchPurpose::DiseaseSpecific { .. }) && !body.diseases.is_empty() {
        return Err(ApiError::field(
            "purpose.diseases",
            "only DS names diseases",
        ));
    }
    Ok(purpose)
}

pub(crate) fn view(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    app: &Application,
) -> Result<ApplicationView, ApiError> {
    views(conn, policy, std::slice::from_ref(app))?
        .pop()
        .ok_or_else(|| ApiError::internal("an application without its view"))
}

/// The register's entries for every member organization of `apps`, read
/// once: what makes each use industrial or a transfer abroad today.
pub(crate) fn registered_members(
    conn: &mut DbConnection,
    apps: &[Application],
) -> Result<Vec<OrganizationRow>, ApiError> {
    let mut member_orgs: Vec<&str> = apps.iter().flat_map(Application::member_orgs).collect();
    member_orgs.sort_unstable();
    member_orgs.dedup();
    Ok(store::find_organizations(conn, &member_orgs)?)
}

/// The views of applications, in order, from one query per related table
/// however many applications there are.
fn views(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    apps: &[Application],
) -> Result<Vec<ApplicationView>, ApiError> {
    if apps.is_empty() {
        return Ok(Vec::new());
    }
    let registered = registered_members(conn, apps)?;
    let ids: Vec<String> = apps.iter().map(|a| a.row.id.clone()).collect();
    let mut transitions: HashMap<String, Vec<TransitionView>> = HashMap::new();
    for t in store::transitions_of(conn, &ids)? {
        transitions
            .entry(t.application_id)
            .or_default()
            .push(TransitionView {
                state: t.state,
                actor: t.actor,
                at: utc(t.at),
            });
    }
    let mut votes: HashMap<String, usize> = HashMap::new();
    for v in store::votes_of(conn, &ids)? {
        *votes.entry(v.application_id).or_default() += 1;
    }
    let agreements = store::agreements_of_applications(conn, &ids)?;
    let mut agreement_views: HashMap<String, AgreementView> = HashMap::new();
    if !agreements.is_empty() {
        let agreement_ids: Vec<String> = agreements.iter().map(|a| a.id.clone()).collect();
        let current = store::current_text(conn)?.map(|t| t.version);
        let mut accepted: HashMap<String, Vec<Member>> = HashMap::new();
        for x in store::acceptances_of(conn, &agreement_ids)? {
            if Some(x.text_version) == current {
                accepted.entry(x.agreement_id).or_default().push(Member {
                    org: x.member_org,
                    researcher: x.member,
                });
            }
        }
        let mut history: HashMap<String, Vec<AgreementStateView>> = HashMap::new();
        for t in store::agreement_transitions_of(conn, &agreement_ids)? {
            history
                .entry(t.agreement_id)
                .or_default()
                .push(AgreementStateView {
                    state: t.state,
                    reason: t.reason,
                    actor: t.actor,
                    at: utc(t.at),
                });
        }
        for a in agreements {
            agreement_views.insert(
                a.application_id.clone(),
                AgreementView {
                    history: history.remove(&a.id).unwrap_or_default(),
                    accepted_current_text: accepted.remove(&a.id).unwrap_or_default(),
                    id: a.id,
                    state: a.state,
                    expires_at: utc(a.expires_at),
                    state_reason: a.state_reason,
                },
            );
        }
    }
    apps.iter()
        .map(|app| {
            let id = &app.row.id;
            view_with(
                app,
                app.use_now(policy, &registered),
                transitions.remove(id).unwrap_or_default(),
                votes.get(id).copied().unwrap_or(0),
                agreement_views.remove(id),
            )
        })
        .collect()
}

fn view_with(
    app: &Application,
    use_now: UseKind,
    transitions: Vec<TransitionView>,
    votes: usize,
    agreement: Option<AgreementView>,
) -> Result<ApplicationView, ApiError> {
    let d = &app.declaration;
    Ok(ApplicationView {
        id: app.row.id.clone(),
        org: app.row.org.clone(),
        submitted_by: app.row.submitted_by.clone(),
        title: d.title.clone(),
        purpose: purpose_view(&d.purpose),
        datasets: d.datasets.clone(),
        members: d.members.clone(),
        partner_members: d.partner_members.clone(),
        ethics_ref: d.ethics_ref.clone(),
        starts_on: d.starts_on,
        ends_on: d.ends_on,
        recipients_abroad: d.recipients_abroad,
        commercial: use_now.commercial,
        transfers_abroad: use_now.abroad,
        state: app.row.state.clone(),
        matching: app.matching()?,
        conditions: app.conditions()?,
        votes,
        transitions,
        agreement,
        submitted_at: utc(app.row.submitted_at),
        decided_at: app.row.decided_at.map(utc),
        access_started_at: app.row.access_started_at.map(utc),
    })
}

/// Submits a data-use application (researcher). DUO matching runs at once:
/// a `deny` on any dataset rejects the application with its rationale;
/// otherwise it goes to the review committee, `abstain` results included.
#[utoipa::path(tag = "data-access", request_body = ApplicationRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional, unique per organization: a retry with the same body returns the original application (200); another body under the same key is refused (409 idempotency_key_reused)")),
    responses((status = 201, body = ApplicationView), (status = 200, body = ApplicationView, description = "a retry under the same Idempotency-Key"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/applications")]
pub async fn submit_application(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: web::Json<ApplicationRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&caller)?.clone();
    let id = format!("app-{}", uuid::Uuid::new_v4());
    state.authorize(
        &caller,
        Action::ApplicationSubmit,
        &Resource::Application {
            id: &id,
            org: &p.org,
            partner_orgs: &[],
        },
    )?;
    let body = body.into_inner();
    // The key's keyed hashes (one per key version; the first is stored) and
    // what the request asked for, so a retry is told from a reuse.
    let idempotency = match idempotency.0 {
        Some(key) => Some((
            state.keys.idempotency_tags(&p.org, &key),
            submission_fingerprint(&p, &body)?,
        )),
        None => None,
    };
    if let Some(replayed) = replay(&state, &caller, &p, idempotency.as_ref()).await? {
        return Ok(replayed);
    }
    let purpose = parse_purpose(&body.purpose, &state)?;
    let today = crate::calendar::day_of(state.now());
    if body.ends_on < body.starts_on || body.ends_on < today {
        return Err(ApiError::field(
            "ends_on",
            "must not precede starts_on or today",
        ));
    }
    let mut datasets = body.datasets.clone();
    datasets.sort();
    datasets.dedup();
    if datasets.is_empty() || datasets.len() > 50 {
        return Err(ApiError::field("datasets", "1-50 datasets"));
    }
    let mut members: Vec<String> = body
        .members
        .iter()
        .map(|m| text_field(m, "members", 200))
        .collect::<Result<_, _>>()?;
    members.push(p.subject.clone());
    members.sort();
    members.dedup();
    let mut partner_members: Vec<Member> = body
        .partner_members
        .iter()
        .map(|m| {
            Ok(Member {
                org: text_field(&m.org, "partner_members", 200)?,
                researcher: text_field(&m.researcher, "partner_members", 200)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    if partner_members.iter().any(|m| m.org == p.org) {
        return Err(ApiError::field(
            "partner_members",
            "researchers of the applicant organization go in members",
        ));
    }
    partner_members.sort();
    partner_members.dedup();
    if members.len() + partner_members.len() > 100 {
        return Err(ApiError::field("members", "at most 100 members"));
    }
    let declaration = Declaration {
        title: text_field(&body.title, "title", 500)?,
        purpose,
        datasets,
        members,
        partner_members,
        ethics_ref: text_field(&body.ethics_ref, "ethics_ref", 200)?,
        starts_on: body.starts_on,
        ends_on: body.ends_on,
        recipients_abroad: body.recipients_abroad,
    };
    let now = state.now();
    let shared = state.clone();
    let (caller_in, p_in, idempotency_in) = (caller.clone(), p.clone(), idempotency.clone());
    let submitted = state
        .db(move |conn| {
            let (caller, p, idempotency) = (caller_in, p_in, idempotency_in);
            write_transaction(conn, |conn| {
                let partner_orgs = declaration.partner_orgs();
                let member_orgs: Vec<&str> = std::iter::once(p.org.as_str())
                    .chain(partner_orgs.iter().map(String::as_str))
                    .collect();
                let registered = store::find_organizations(conn, &member_orgs)?;
                if let Some(unknown) = member_orgs
                    .iter()
                    .find(|org| !registered.iter().any(|r| r.org == **org))
                {
                    return Err(ApiError::refused(
                        Refusal::OrganizationNotVerified,
                        format!("{unknown} is not in the register of verified organizations"),
                    ));
                }
                check_attestations(conn, &declaration.members_of(&p.org), today)?;
                // The register, not the applicant, says where the data goes.
                let abroad: Vec<&str> = registered
                    .iter()
                    .filter(|o| shared.data_use.is_abroad(&o.country))
                    .map(|o| o.org.as_str())
                    .collect();
                if !abroad.is_empty() && !declaration.recipients_abroad {
                    return Err(ApiError::field(
                        "recipients_abroad",
                        format!(
                            "{} is registered outside {}: its members receive data abroad",
                            abroad.join(", "),
                            shared.data_use.transfer.home_country
                        ),
                    ));
                }
                let rows = store::find_datasets(conn, &declaration.datasets)?;
                if rows.len() != declaration.datasets.len() {
                    return Err(ApiError::field(
                        "datasets",
                        "names a dataset that does not exist",
                    ));
                }
                let applicant = Applicant {
                    // Any industry member organization makes the use commercial.
                    commercial: shared
                        .data_use
                        .use_now(
                            UseKind::default(),
                            registered
                                .iter()
                                .map(|o| (o.kind.as_str(), o.country.as_str())),
                        )
                        .commercial,
                    abroad: declaration.recipients_abroad,
                };
                let mut matching = Vec::with_capacity(rows.len());
                for row in &rows {
                    let terms: DataUseTerms = parse_json(&row.terms)?;
                    let result: MatchResult = duo::match_purpose(
                        &declaration.purpose,
                        applicant,
                        &terms,
                        &shared.diseases,
                    );
                    matching.push(DatasetMatch {
                        dataset: row.id.clone(),
                        outcome: match result.outcome {
                            Outcome::Approve => "approve",
                            Outcome::Abstain => "abstain",
                            Outcome::Deny => "deny",
                        }
                        .into(),
                        rationale: result.rationale,
                        required_conditions: result.required_conditions,
                        matcher: result.matcher,
                    });
                }
                let denied = matching.iter().any(|m| m.outcome == "deny");
                let row = ApplicationRow {
                    id: id.clone(),
                    org: p.org.clone(),
                    submitted_by: p.subject.clone(),
                    declaration: json(&declaration)?,
                    commercial: applicant.commercial,
                    matching: json(&matching)?,
                    state: ApplicationState::UnderReview.as_str().into(),
                    conditions: "[]".into(),
                    submitted_at: now.naive_utc(),
                    decided_at: None,
                    access_started_at: None,
                    idempotency_key: idempotency
                        .as_ref()
                        .and_then(|(tags, _)| tags.first().cloned()),
                    request_hash: idempotency.as_ref().map(|(_, hash)| hash.clone()),
                };
                store::insert_application(conn, &row)?;
                if !partner_orgs.is_empty() {
                    let orgs: Vec<&str> = partner_orgs.iter().map(String::as_str).collect();
                    store::insert_partner_orgs(conn, &id, &orgs)?;
                }
                store::record_transition(conn, &id, "submitted", &p.subject, now.naive_utc())?;
                store::record_transition(
                    conn,
                    &id,
                    ApplicationState::UnderReview.as_str(),
                    &p.subject,
                    now.naive_utc(),
                )?;
                if denied {
                    store::transition(
                        conn,
                        &id,
                        ApplicationState::UnderReview.as_str(),
                        ApplicationState::Rejected.as_str(),
                        None,
                        MATCHER_ACTOR,
                        now,
                    )?;
                }
                let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &id)?;
                view(conn, &shared.data_use, &app)
            })
        })
        .await;
    let app = match submitted {
        // A concurrent retry under the same key committed first.
        Err(ApiError::UniqueViolation(_)) if idempotency.is_some() => {
            return replay(&state, &caller, &p, idempotency.as_ref())
                .await?
                .ok_or_else(|| ApiError::internal("idempotency key conflict without a row"));
        }
        other => other?,
    };
    tracing::info!(application = %app.id, state = %app.state, "data-use application submitted");
    Ok(HttpResponse::Created().json(app))
}

/// The keyed hashes of a submission's `Idempotency-Key`, and the
/// fingerprint of the submission.
type SubmissionKey = (Vec<String>, String);

/// What a submission asked for, whoever sends it again: the submitter and
/// the request as sent.
fn submission_fingerprint(p: &Principal, body: &ApplicationRequest) -> Result<String, ApiError> {
    let mut value = serde_json::to_value(body).map_err(ApiError::internal)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("submitted_by".into(), p.subject.clone().into());
    }
    super::consents::fingerprint(&value)
}

/// The application an earlier submission under the same key created (200),
/// or `idempotency_key_reused` if that submission asked for something else.
async fn replay(
    state: &web::Data<AppState>,
    caller: &Caller,
    p: &Principal,
    idempotency: Option<&SubmissionKey>,
) -> Result<Option<HttpResponse>, ApiError> {
    let Some((tags, fingerprint)) = idempotency.cloned() else {
        return Ok(None);
    };
    let (shared, caller, org) = (state.clone(), caller.clone(), p.org.clone());
    let earlier = state
        .db(move |conn| {
            let Some(row) = store::find_application_by_idempotency_key(conn, &org, &tags)? else {
                return Ok(None);
            };
            if row.request_hash.as_deref() != Some(fingerprint.as_str()) {
                return Err(ApiError::IdempotencyKeyReused);
            }
            let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &row.id)?;
            Ok(Some(view(conn, &shared.data_use, &app)?))
        })
        .await?;
    Ok(earlier.map(|app| HttpResponse::Ok().json(app)))
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationPath {
    pub id: String,
}

/// One application with its matching, transitions, votes and agreement.
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = ApplicationView), (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/applications/{id}")]
pub async fn get_application(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let shared = state.clone();
    let view = state
        .db(move |conn| {
            let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &id)?;
            view(conn, &shared.data_use, &app)
        })
        .await?;
    Ok(web::Json(view))
}

#[derive(Serialize, ToSchema)]
pub struct ApplicationList {
    pub applications: Vec<ApplicationView>,
    /// Pass as `after` for the next page; absent on the last. A page
    /// leaves out what the caller may not read, so it may hold fewer than
    /// `limit` and still have a next page.
    pub next_after: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationQuery {
    /// Only applications in this state.
    pub state: Option<String>,
    /// The `next_after` of the previous page (opaque).
    pub after: Option<String>,
    /// Applications per page, 1–500 (default 100).
    pub limit: Option<i64>,
}

const APPLICATION_PAGE: i64 = 100;
const MAX_APPLICATION_PAGE: i64 = 500;

/// A list position: the last application's submission time (microseconds
/// since the epoch) and id. Opaque to callers; it names nothing they could
/// not read.
fn list_cursor(row: &ApplicationRow) -> String {
    format!(
        "{}_{}",
        row.submitted_at.and_utc().timestamp_micros(),
        row.id
    )
}

fn parse_list_cursor(raw: &str) -> Option<(chrono::NaiveDateTime, String)> {
    let (micros, id) = raw.split_once('_')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?.naive_utc();
    (!id.is_empty()).then(|| (at, id.to_owned()))
}

/// Applications the caller may read, oldest first and paged: the
/// committee's work list, or a researcher's own organization's.
#[utoipa::path(tag = "data-access", params(ApplicationQuery),
    responses((status = 200, body = ApplicationList), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/applications")]
pub async fn list_applications(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ApplicationQuery>,
) -> Result<web::Json<ApplicationList>, ApiError> {
    let p = principal(&caller)?.clone();
    let wanted = query.state.clone();
    if let Some(s) = &wanted {
        if ApplicationState::parse(s).is_none() {
            return Err(ApiError::field(
                "state",
                "under_review, approved, approved_with_conditions or rejected",
            ));
        }
    }
    let limit = query.limit.unwrap_or(APPLICATION_PAGE);
    if !(1..=MAX_APPLICATION_PAGE).contains(&limit) {
        return Err(ApiError::field("limit", "1-500"));
    }
    let after = match query.after.as_deref() {
        Some(raw) => Some(
            parse_list_cursor(raw)
                .ok_or_else(|| ApiError::field("after", "a next_after from a previous page"))?,
        ),
        None => None,
    };
    let shared = state.clone();
    let (applications, next_after) = state
        .db(move |conn| {
            const EVERY_STATE: [&str; 4] = [
                "under_review",
                "approved",
                "approved_with_conditions",
                "rejected",
            ];
            let one = wanted.as_deref().map(|s| [s]);
            let filter = store::ApplicationFilter {
                states: match &one {
                    Some(one) => one,
                    None => &EVERY_STATE,
                },
                // Without a state, a researcher lists their organization's:
                // as applicant or as a partner.
                org: (wanted.is_none() && p.has(crate::auth::Role::Researcher))
                    .then_some(p.org.as_str()),
            };
            let after = after.as_ref().map(|(at, id)| (*at, id.as_str()));
            let rows = store::applications_page(conn, &filter, after, limit)?;
            let next_after = (rows.len() as i64 == limit)
                .then(|| rows.last().map(list_cursor))
                .flatten();
            let mut readable = Vec::new();
            for row in rows {
                let app = Application::from_row(row)?;
                let partner_orgs = app.partner_orgs();
                let resource = Resource::Application {
                    id: &app.row.id,
                    org: &app.row.org,
                    partner_orgs: &partner_orgs,
                };
                if shared
                    .policy
                    .is_allowed(&caller, Action::ApplicationRead, &resource)
                {
                    readable.push(app);
                }
            }
            Ok((views(conn, &shared.data_use, &readable)?, next_after))
        })
        .await?;
    Ok(web::Json(ApplicationList {
        applications,
        next_after,
    }))
}

// ---------------------------------------------------------------------------
// Review

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// `approve`, `approve_with_conditions` or `reject`.
    pub decision: String,
    /// With `approve_with_conditions`: `{"code": "TS", "months": 12}`,
    /// `{"code": "MOR", "until": "2027-06-30"}`, `{"code": "PUB"}`, `{"code": "RTN"}`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
}

/// Casts a committee member's vote. Once the votes reach the quorum of
/// `policies/data-use.toml` the application is decided; an approval creates
/// its data-use agreement.
#[utoipa::path(tag = "data-access", params(ApplicationPath), request_body = VoteRequest,
    responses((status = 200, body = ApplicationView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/applications/{id}/votes")]
pub async fn vote(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
    body: web::Json<VoteRequest>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    let p = principal(&caller)?.clone();
    let ballot = match (body.decision.as_str(), body.conditions.is_empty()) {
        ("approve", true) => Vote::Approve,
        ("reject", true) => Vote::Reject,
        ("approve_with_conditions", false) => Vote::ApproveWithConditions {
            conditions: body.conditions.clone(),
        },
        ("approve_with_conditions", true) => {
            return Err(ApiError::field("conditions", "name at least one condition"))
        }
        ("approve" | "reject", false) => {
            return Err(ApiError::field(
                "conditions",
                "only approve_with_conditions carries conditions",
            ))
        }
        _ => {
            return Err(ApiError::field(
                "decision",
                "approve, approve_with_conditions or reject",
            ))
        }
    };
    if ballot
        .conditions()
        .iter()
        .any(|c| matches!(c, Condition::TimeLimit { months } if *months == 0 || *months > 120))
    {
        return Err(ApiError::field("conditions", "TS is 1-120 months"));
    }
    let id = path.into_inner().id;
    let now = state.now();
    let shared = state.clone();
    let view = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let app = application_for(&shared, conn, &caller, Action::ApplicationVote, &id)?;
                if app.state()? != ApplicationState::UnderReview {
                    return Err(ApiError::refused(
                        Refusal::ApplicationDecided,
                        format!("the application is {}", app.row.state),
                    ));
                }
                // A reviewer from any member organization, partners
                // included, reviews their own organization's use.
                if app.has_member_org(&p.org) {
                    return Err(ApiError::Access(Refusal::ConflictOfInterest, None));
                }
                if ballot.approves() {
                    let required: Vec<String> = app
                        .matching()?
                        .into_iter()
                        .flat_map(|m| m.required_conditions)
                        .collect();
                    if let Some(missing) = required
                        .iter()
                        .find(|r| !ballot.conditions().iter().any(|c| c.code() == r.as_str()))
                    {
                        return Err(ApiError::refused(
                            Refusal::ConditionsRequired,
                            format!("the datasets require the {missing} condition"),
                        ));
                    }
                }
                store::insert_vote(
                    conn,
                    &VoteRow {
                        application_id: id.clone(),
                        voter: p.subject.clone(),
                        vote: json(&ballot)?,
                        voted_at: now.naive_utc(),
                    },
                )?;
                let votes: Vec<Vote> = store::votes_of(conn, std::slice::from_ref(&id))?
                    .iter()
                    .map(|v| parse_json(&v.vote))
                    .collect::<Result<_, _>>()?;
                if let Some(decision) = review::tally(&shared.data_use.review, &votes) {
                    let to = decision.state();
                    store::transition(
                        conn,
                        &id,
                        ApplicationState::UnderReview.as_str(),
                        to.as_str(),
                        Some(&json(&decision.conditions())?),
                        &p.subject,
                        now,
                    )?;
                    if to.is_approved() {
                        let expires_at =
                            agreement_expiry(&app.declaration, decision.conditions(), now);
                        let agreement_id = format!("dua-{}", uuid::Uuid::new_v4());
                        store::insert_agreement(
                            conn,
                            &AgreementRow {
                                id: agreement_id.clone(),
                                application_id: id.clone(),
                                state: "active".into(),
                                expires_at: expires_at.naive_utc(),
                                created_at: now.naive_utc(),
                                state_reason: None,
                                state_changed_at: None,
                            },
                        )?;
                        store::record_agreement_transition(
                            conn,
                            &agreement_id,
                            "active",
                            "approved by the data-use review committee",
                            &p.subject,
                            now,
                        )?;
                    }
                }
                let app = application_for(&shared, conn, &caller, Action::ApplicationRead, &id)?;
                view(conn, &shared.data_use, &app)
            })
        })
        .await
        .map_err(|e| match e {
            ApiError::UniqueViolation(_) => ApiError::refused(
                Refusal::ApplicationDecided,
                "you have already voted on this application",
            ),
            other => other,
        })?;
    Ok(web::Json(view))
}

/// The end of the intended period, or earlier under a TS condition.
fn agreement_expiry(
    d: &Declaration,
    conditions: &[Condition],
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let period_end = crate::access::period_end(d.ends_on);
    conditions
        .iter()
        .filter_map(|c| match c {
            Condition::TimeLimit { months } => now.checked_add_months(chrono::Months::new(*months)),
            _ => None,
        })
        .fold(period_end, DateTime::min)
}
