//! Patients' enquiries (decision 0037): the staff they go to list, open and
//! answer them; a patient's app sends and follows them as the portal's
//! pages do.

use super::problem::ApiError;
use super::state::AppState;
use crate::api::extract::{Json, OptionalIdempotencyKey};
use crate::api::replay::answered;
use crate::app::enquiries::{self, EnquiryList, EnquiryView, NewEnquiry, OpenedEnquiry};
use crate::app::gates::principal;
use crate::app::text::Text;
use crate::app::AppError;
use crate::auth::Caller;
use crate::consent::enquiry::{EnquiryKind, EnquiryState, MESSAGE_MAX_CHARS};
use crate::consent::DocumentFamily;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(list_enquiries)
        .service(open_enquiry)
        .service(answer_enquiry)
        .service(my_enquiries)
        .service(send_enquiry);
}

/// What either side writes: prose, as every free-text field.
pub const MESSAGE: Text = Text::prose(MESSAGE_MAX_CHARS);

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnquiryRequest {
    /// `question` (to the patient's hospital), `wrong_access` or
    /// `discrimination` (reports, to the governance body).
    pub kind: String,
    pub text: String,
    /// The log index of the entry a report is about: one of the patient's
    /// own entries.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    pub about_entry: Option<u64>,
    /// `cancer` or `rare_disease`: the consent a question is about.
    #[serde(default)]
    pub about_family: Option<String>,
}

impl TryFrom<EnquiryRequest> for NewEnquiry {
    type Error = AppError;

    fn try_from(body: EnquiryRequest) -> Result<Self, AppError> {
        let kind = EnquiryKind::parse(&body.kind)
            .ok_or_else(|| AppError::field("kind", "question, wrong_access or discrimination"))?;
        let text = MESSAGE.check(&body.text, "text")?;
        let about_family = body
            .about_family
            .map(|f| {
                f.parse::<DocumentFamily>()
                    .map_err(|e| AppError::field("about_family", e.to_string()))
            })
            .transpose()?;
        Ok(NewEnquiry {
            kind,
            text,
            about_entry: body.about_entry,
            about_family,
        })
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    pub text: String,
}

#[derive(Deserialize, IntoParams)]
pub struct EnquiryPath {
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
pub struct EnquiryStateQuery {
    /// `sent` (default), `read` or `answered`.
    pub state: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MyEnquiries {
    pub enquiries: Vec<EnquiryView>,
}

/// Enquiries in one state that the caller answers: hospital staff see
/// their patients' questions, the governance body the reports. What the
/// patient wrote is not listed; opening an enquiry shows it, and is
/// logged.
#[utoipa::path(tag = "enquiries", params(EnquiryStateQuery),
    responses((status = 200, body = EnquiryList)))]
#[get("/v1/enquiries")]
pub async fn list_enquiries(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<EnquiryStateQuery>,
) -> Result<web::Json<EnquiryList>, ApiError> {
    principal(&caller)?;
    let wanted = match query.state.as_deref() {
        None => EnquiryState::Sent,
        Some(raw) => EnquiryState::parse(raw)
            .ok_or_else(|| AppError::field("state", "sent, read or answered"))?,
    };
    let list = state
        .run(move |ctx| enquiries::work_list(ctx, &caller, wanted))
        .await?;
    Ok(web::Json(list))
}

/// Opens an enquiry: what the patient wrote and every answer. The opening
/// is an entry in the patient's log, told to them, and a sent enquiry
/// reads `read` from then on. An enquiry the caller does not answer is
/// `404`, as one that does not exist.
#[utoipa::path(tag = "enquiries", params(EnquiryPath),
    responses((status = 200, body = OpenedEnquiry)))]
#[get("/v1/enquiries/{id}")]
pub async fn open_enquiry(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<EnquiryPath>,
) -> Result<web::Json<OpenedEnquiry>, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let opened = state
        .run(move |ctx| enquiries::open(ctx, &caller, &id))
        .await?;
    Ok(web::Json(opened))
}

/// Answers an enquiry. The answer is sealed, logged and told to the
/// patient, who reads it in the portal; the enquiry reads `answered`.
#[utoipa::path(tag = "enquiries", params(EnquiryPath), request_body = AnswerRequest,
    responses((status = 201, body = OpenedEnquiry)))]
#[post("/v1/enquiries/{id}/answers")]
pub async fn answer_enquiry(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    path: web::Path<EnquiryPath>,
    body: Json<AnswerRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let id = path.into_inner().id;
    let retry = idempotency.retry(&(&id, &*body))?;
    let text = MESSAGE.check(&body.text, "text")?;
    let answered_view = state
        .run(move |ctx| enquiries::answer(ctx, &caller, &id, text, retry))
        .await?;
    Ok(answered(answered_view, StatusCode::CREATED))
}

/// The calling patient's enquiries, newest first, with every message.
#[utoipa::path(tag = "portal", responses((status = 200, body = MyEnquiries)))]
#[get("/v1/portal/enquiries")]
pub async fn my_enquiries(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<MyEnquiries>, ApiError> {
    principal(&caller)?;
    let enquiries = state.run(move |ctx| enquiries::mine(ctx, &caller)).await?;
    Ok(web::Json(MyEnquiries { enquiries }))
}

/// The calling patient sends an enquiry: a question goes to their
/// hospital, a report to the governance body. A retry under the same
/// `Idempotency-Key` answers the first enquiry again.
#[utoipa::path(tag = "portal", request_body = EnquiryRequest,
    responses((status = 201, body = EnquiryView)))]
#[post("/v1/portal/enquiries")]
pub async fn send_enquiry(
    state: web::Data<AppState>,
    caller: Caller,
    idempotency: OptionalIdempotencyKey,
    body: Json<EnquiryRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&caller)?;
    let retry = idempotency.retry(&*body)?;
    let new = NewEnquiry::try_from(body.into_inner())?;
    let sent = state
        .run(move |ctx| enquiries::send(ctx, &caller, new, retry))
        .await?;
    Ok(answered(sent, StatusCode::CREATED))
}
