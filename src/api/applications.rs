//! Data-use applications: submission with DUO matching, reads and lists,
//! and the committee's review. Requests are parsed here into the commands
//! of `app::applications`.

use super::extract::OptionalIdempotencyKey;
use super::problem::ApiError;
use super::state::AppState;
use crate::access::review::{ApplicationState, Condition, Vote};
use crate::api::extract::Json;
use crate::api::replay::answered;
use crate::app::applications::{
    self, ApplicationList, ApplicationPage, ApplicationView, ListPosition, Member, PurposeNamed,
    Submission,
};
use crate::app::gates::principal;
use crate::app::idempotency::Retry;
use crate::app::text::Text;
use crate::app::AppError;
use crate::auth::Caller;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(submit_application)
        .service(list_applications)
        .service(get_application)
        .service(vote);
}

/// An application's title.
pub const TITLE: Text = Text::line(500);
/// The research ethics committee's approval reference.
pub const ETHICS_REF: Text = Text::line(200);
/// A member's name, and a partner's organization.
pub const MEMBER: Text = Text::line(200);
/// Datasets one application names, at most.
pub const MAX_DATASETS: usize = 50;

#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct PurposeRequest {
    /// A GA4GH DUO purpose: `GRU`, `HMB`, `DS`, `POA` or `MDS` (methods
    /// development), in any case. A purpose policy forbids may be named
    /// too (`purposes.forbidden` in `policies/data-use.toml`:
    /// `insurance_underwriting`, `employment_decisions`,
    /// `reidentification`; any case, `-` or a space for `_`); it is refused
    /// with `purpose_forbidden`, whatever else the request says.
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

impl TryFrom<(ApplicationRequest, Option<String>)> for Submission {
    type Error = AppError;

    fn try_from((body, key): (ApplicationRequest, Option<String>)) -> Result<Self, AppError> {
        let retry = match key {
            Some(key) => Some(Retry {
                key,
                as_sent: serde_json::to_value(&body).map_err(AppError::internal)?,
            }),
            None => None,
        };
        if body.datasets.is_empty() || body.datasets.len() > MAX_DATASETS {
            return Err(AppError::field(
                "datasets",
                format!("1-{MAX_DATASETS} datasets"),
            ));
        }
        let mut datasets = body.datasets;
        datasets.sort();
        datasets.dedup();
        let members = body
            .members
            .iter()
            .map(|m| MEMBER.check(m, "members"))
            .collect::<Result<_, _>>()?;
        let partner_members = body
            .partner_members
            .iter()
            .map(|m| {
                Ok(Member {
                    org: MEMBER.check(&m.org, "partner_members")?,
                    researcher: MEMBER.check(&m.researcher, "partner_members")?,
                })
            })
            .collect::<Result<_, AppError>>()?;
        Ok(Submission {
            title: TITLE.check(&body.title, "title")?,
            purpose: PurposeNamed {
                code: body.purpose.code,
                diseases: body.purpose.diseases,
            },
            datasets,
            members,
            partner_members,
            ethics_ref: ETHICS_REF.check(&body.ethics_ref, "ethics_ref")?,
            starts_on: body.starts_on,
            ends_on: body.ends_on,
            recipients_abroad: body.recipients_abroad,
            retry,
        })
    }
}

/// Submits a data-use application (researcher). DUO matching runs at once:
/// a `deny` on any dataset rejects the application with its rationale;
/// otherwise it goes to the review committee, `abstain` results included.
#[utoipa::path(tag = "data-access", request_body = ApplicationRequest,
    responses((status = 201, body = ApplicationView), (status = 200, body = ApplicationView, description = "a retry under the same Idempotency-Key")))]
#[post("/v1/applications")]
pub async fn submit_application(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: Json<ApplicationRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let submission = Submission::try_from((body.into_inner(), idempotency.0))?;
    let submitted = state
        .run(move |ctx| applications::submit(ctx, &caller, submission))
        .await?;
    Ok(if submitted.replayed {
        HttpResponse::Ok().json(submitted.application)
    } else {
        HttpResponse::Created().json(submitted.application)
    })
}

#[derive(Deserialize, IntoParams)]
pub struct ApplicationPath {
    pub id: String,
}

/// One application with its matching, transitions, votes and agreement.
#[utoipa::path(tag = "data-access", params(ApplicationPath),
    responses((status = 200, body = ApplicationView)))]
#[get("/v1/applications/{id}")]
pub async fn get_application(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ApplicationPath>,
) -> Result<web::Json<ApplicationView>, ApiError> {
    let id = path.into_inner().id;
    let view = state
        .run(move |ctx| applications::get(ctx, &caller, &id))
        .await?;
    Ok(web::Json(view))
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
/// Applications per page, at most.
pub const MAX_APPLICATION_PAGE: i64 = 500;

impl TryFrom<ApplicationQuery> for ApplicationPage {
    type Error = AppError;

    fn try_from(query: ApplicationQuery) -> Result<Self, AppError> {
        let state = query
            .state
            .as_deref()
            .map(|s| {
                ApplicationState::parse(s).ok_or_else(|| {
                    AppError::field(
                        "state",
                        "under_review, approved, approved_with_conditions or rejected",
                    )
                })
            })
            .transpose()?;
        let limit = query.limit.unwrap_or(APPLICATION_PAGE);
        if !(1..=MAX_APPLICATION_PAGE).contains(&limit) {
            return Err(AppError::field("limit", "1-500"));
        }
        let after = query
            .after
            .as_deref()
            .map(|raw| {
                ListPosition::parse(raw)
                    .ok_or_else(|| AppError::field("after", "a next_after from a previous page"))
            })
            .transpose()?;
        Ok(ApplicationPage {
            state,
            after,
            limit,
        })
    }
}

/// Applications the caller may read, oldest first and paged: the
/// committee's work list, or a researcher's own organization's.
#[utoipa::path(tag = "data-access", params(ApplicationQuery),
    responses((status = 200, body = ApplicationList)))]
#[get("/v1/applications")]
pub async fn list_applications(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ApplicationQuery>,
) -> Result<web::Json<ApplicationList>, ApiError> {
    principal(&caller)?;
    let page = ApplicationPage::try_from(query.into_inner())?;
    let list = state
        .run(move |ctx| applications::list(ctx, &caller, page))
        .await?;
    Ok(web::Json(list))
}

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

impl TryFrom<VoteRequest> for Vote {
    type Error = AppError;

    fn try_from(body: VoteRequest) -> Result<Self, AppError> {
        let ballot = match (body.decision.as_str(), body.conditions.is_empty()) {
            ("approve", true) => Vote::Approve,
            ("reject", true) => Vote::Reject,
            ("approve_with_conditions", false) => Vote::ApproveWithConditions {
                conditions: body.conditions.clone(),
            },
            ("approve_with_conditions", true) => {
                return Err(AppError::field("conditions", "name at least one condition"))
            }
            ("approve" | "reject", false) => {
                return Err(AppError::field(
                    "conditions",
                    "only approve_with_conditions carries conditions",
                ))
            }
            _ => {
                return Err(AppError::field(
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
            return Err(AppError::field("conditions", "TS is 1-120 months"));
        }
        Ok(ballot)
    }
}

/// Casts a committee member's vote. Once the votes reach the quorum of
/// `policies/data-use.toml` the application is decided; an approval creates
/// its data-use agreement.
#[utoipa::path(tag = "data-access", params(ApplicationPath), request_body = VoteRequest,
    responses((status = 200, body = ApplicationView)))]
#[post("/v1/applications/{id}/votes")]
pub async fn vote(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<ApplicationPath>,
    body: Json<VoteRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let retry = idempotency.retry(&(&id, &*body))?;
    let ballot = Vote::try_from(body.into_inner())?;
    let view = state
        .run(move |ctx| applications::vote(ctx, &caller, &id, ballot, retry))
        .await?;
    Ok(answered(view, StatusCode::OK))
}
