//! The patient's enquiries: a question to their hospital, a report of an
//! access that looks wrong or of genetic discrimination to the governance
//! body, and where each stands. The consent page's "ask my hospital" and
//! each history entry's "report this entry" open the form pre-filled.

use super::super::page::{self, visit, Visit};
use super::history::in_japan;
use super::{not_found_page, refused_page, sign_in_first, signed_in};
use crate::api::enquiries::EnquiryRequest;
use crate::api::problem::ApiError;
use crate::api::state::AppState;
use crate::app::enquiries::{self, EnquiryView, NewEnquiry};
use crate::app::idempotency::Retry;
use crate::app::AppError;
use crate::consent::enquiry::{Author, EnquiryKind, EnquiryState, Handler};
use crate::consent::DocumentFamily;
use crate::web::words::Words;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/enquiries", web::get().to(list))
        .route("/enquiries", web::post().to(send))
        .route("/enquiries/new", web::get().to(form))
        .route("/enquiries/{id}", web::get().to(show));
}

fn kind_label(w: &Words, kind: EnquiryKind) -> &'static str {
    match kind {
        EnquiryKind::Question => w.enquiry_kind_question,
        EnquiryKind::WrongAccess => w.enquiry_kind_wrong_access,
        EnquiryKind::Discrimination => w.enquiry_kind_discrimination,
    }
}

fn state_label(w: &Words, state: EnquiryState) -> &'static str {
    match state {
        EnquiryState::Sent => w.enquiry_state_sent,
        EnquiryState::Read => w.enquiry_state_read,
        EnquiryState::Answered => w.enquiry_state_answered,
    }
}

struct MessageLine {
    by: String,
    from_patient: bool,
    when: String,
    when_iso: String,
    text: String,
}

struct EnquiryLine {
    id: String,
    kind: &'static str,
    state: &'static str,
    state_code: &'static str,
    sent: String,
    sent_iso: String,
    about_entry: Option<u64>,
    about_family: Option<String>,
    messages: Vec<MessageLine>,
}

fn line(w: &Words, e: EnquiryView) -> EnquiryLine {
    let s = e.summary;
    let sent_iso = s.sent_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    EnquiryLine {
        kind: kind_label(w, s.kind),
        state: state_label(w, s.state),
        state_code: s.state.as_str(),
        sent: in_japan(&sent_iso),
        sent_iso,
        about_entry: s.about_entry,
        about_family: s.about_family,
        messages: e
            .messages
            .into_iter()
            .map(|m| {
                let when_iso = m.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let from_patient = Author::parse(&m.author) == Some(Author::Patient);
                MessageLine {
                    by: if from_patient {
                        w.enquiry_you.to_owned()
                    } else {
                        format!("{} ({})", w.enquiry_staff, m.author_org)
                    },
                    from_patient,
                    when: in_japan(&when_iso),
                    when_iso,
                    text: m.text,
                }
            })
            .collect(),
        id: s.id,
    }
}

#[derive(Template)]
#[template(path = "portal/enquiries.html")]
struct ListPage {
    page: page::Page,
    enquiries: Vec<EnquiryLine>,
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (visit, caller) = match signed_in(&req, &state).await {
        Ok(signed_in) => signed_in,
        Err(r) => return r,
    };
    let Ok(found) = state.run(move |ctx| enquiries::mine(ctx, &caller)).await else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let w = visit.words();
    let body = ListPage {
        page: visit.page(w.enquiries_title, "enquiries", "/portal/enquiries"),
        enquiries: found.into_iter().map(|e| line(w, e)).collect(),
    }
    .render();
    visit.html(StatusCode::OK, body)
}

#[derive(Template)]
#[template(path = "portal/enquiry.html")]
struct ShowPage {
    page: page::Page,
    e: EnquiryLine,
    just_sent: bool,
}

#[derive(Deserialize)]
struct Sent {
    sent: Option<String>,
}

async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<Sent>,
) -> HttpResponse {
    let (visit, caller) = match signed_in(&req, &state).await {
        Ok(signed_in) => signed_in,
        Err(r) => return r,
    };
    let id = id.into_inner();
    match state
        .run(move |ctx| enquiries::my_enquiry(ctx, &caller, &id))
        .await
    {
        Ok(found) => {
            let w = visit.words();
            let e = line(w, found);
            let back = format!("/portal/enquiries/{}", e.id);
            let body = ShowPage {
                page: visit.page(e.kind, "enquiries", &back),
                e,
                just_sent: query.sent.is_some(),
            }
            .render();
            visit.html(StatusCode::OK, body)
        }
        Err(ApiError::App(AppError::NotFound)) => not_found_page(&visit),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

#[derive(Template)]
#[template(path = "portal/enquiry_form.html")]
struct FormPage {
    page: page::Page,
    kind: &'static str,
    kind_label: &'static str,
    to_governance: bool,
    discrimination: bool,
    about_entry: Option<u64>,
    about_family: Option<&'static str>,
    text: String,
    error: Option<&'static str>,
    /// A one-time key: the form sent twice sends one enquiry.
    key: String,
}

/// What the form is about: its kind, and the entry or family it was
/// opened from (each only where it makes sense for the kind).
struct Subject {
    kind: EnquiryKind,
    about_entry: Option<u64>,
    about_family: Option<DocumentFamily>,
}

impl Subject {
    fn from(kind: Option<&str>, entry: Option<&str>, family: Option<&str>) -> Self {
        let kind = kind
            .and_then(EnquiryKind::parse)
            .unwrap_or(EnquiryKind::Question);
        Subject {
            kind,
            about_entry: entry
                .filter(|_| kind == EnquiryKind::WrongAccess)
                .and_then(|e| e.parse().ok()),
            about_family: family
                .filter(|_| kind == EnquiryKind::Question)
                .and_then(|f| f.parse().ok()),
        }
    }
}

fn form_page(
    visit: &Visit,
    subject: &Subject,
    text: String,
    error: Option<&'static str>,
) -> Result<String, askama::Error> {
    let key = page::new_form_key().map_err(|e| askama::Error::Custom(e.into()))?;
    let w = visit.words();
    let kind_label = kind_label(w, subject.kind);
    FormPage {
        page: visit.page(kind_label, "enquiries", "/portal/enquiries/new"),
        kind: subject.kind.as_str(),
        kind_label,
        to_governance: subject.kind.handler() == Handler::Governance,
        discrimination: subject.kind == EnquiryKind::Discrimination,
        about_entry: subject.about_entry,
        about_family: subject.about_family.map(|f| f.as_str()),
        text,
        error,
        key,
    }
    .render()
}

#[derive(Deserialize)]
struct FormQuery {
    kind: Option<String>,
    entry: Option<String>,
    family: Option<String>,
}

async fn form(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<FormQuery>,
) -> HttpResponse {
    let (visit, _) = match signed_in(&req, &state).await {
        Ok(signed_in) => signed_in,
        Err(r) => return r,
    };
    let subject = Subject::from(
        query.kind.as_deref(),
        query.entry.as_deref(),
        query.family.as_deref(),
    );
    visit.html(
        StatusCode::OK,
        form_page(&visit, &subject, String::new(), None),
    )
}

#[derive(Deserialize)]
struct SendForm {
    csrf: String,
    key: String,
    kind: String,
    text: String,
    about_entry: Option<String>,
    about_family: Option<String>,
}

async fn send(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SendForm>,
) -> HttpResponse {
    let visit = match visit(&req, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !page::same_site_with_token(&req, &visit.session, &form.csrf) {
        return refused_page(&visit);
    }
    let Some(patient) = visit.patient() else {
        return sign_in_first(&visit);
    };
    let form = form.into_inner();
    let subject = Subject::from(
        Some(&form.kind),
        form.about_entry.as_deref(),
        form.about_family.as_deref(),
    );
    // The same checks as the JSON API's, on the same request shape.
    let request = EnquiryRequest {
        kind: subject.kind.as_str().to_owned(),
        text: form.text.clone(),
        about_entry: subject.about_entry,
        about_family: subject.about_family.map(|f| f.as_str().to_owned()),
    };
    let invalid = |visit: &Visit, subject: &Subject, text: String| {
        let body = form_page(
            visit,
            subject,
            text,
            Some(visit.words().enquiry_text_invalid),
        );
        visit.html(StatusCode::UNPROCESSABLE_ENTITY, body)
    };
    let retry = page::is_form_key(&form.key).then(|| Retry {
        key: form.key.clone(),
        as_sent: serde_json::json!(request),
    });
    let Ok(new) = NewEnquiry::try_from(request) else {
        return invalid(&visit, &subject, form.text);
    };
    let caller = patient.caller.clone();
    match state
        .run(move |ctx| enquiries::send(ctx, &caller, new, retry))
        .await
    {
        Ok(sent) => visit.redirect(&format!(
            "/portal/enquiries/{}?sent=1",
            sent.value.summary.id
        )),
        Err(ApiError::App(AppError::Validation(_))) => invalid(&visit, &subject, form.text),
        Err(e) => {
            tracing::warn!(error = %e, "a portal enquiry failed");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}
