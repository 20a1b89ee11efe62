//! The patient's settings: the language, and whether and about what they
//! are emailed when a new entry is added. Every entry is shown in the
//! portal whatever they choose.

use super::super::page::{self, visit, Visit};
use super::{refused_page, sign_in_first, signed_in};
use crate::api::state::AppState;
use crate::app::email::{self, EmailChoice};
use crate::app::portal;
use crate::app::AppError;
use crate::ledger::entry::Language;
use crate::notify::NoticeKind;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/preferences", web::get().to(show))
        .route("/preferences", web::post().to(save));
}

struct KindView {
    code: &'static str,
    label: &'static str,
    chosen: bool,
}

#[derive(Template)]
#[template(path = "portal/preferences.html")]
struct PreferencesPage {
    page: page::Page,
    language: &'static str,
    email_on: bool,
    email: String,
    email_invalid: bool,
    kinds: Vec<KindView>,
    saved: bool,
}

fn kind_label(visit: &Visit, kind: NoticeKind) -> &'static str {
    let w = visit.words();
    match kind {
        NoticeKind::Consent => w.kind_consent,
        NoticeKind::Read => w.kind_read,
        NoticeKind::Use => w.kind_use,
        NoticeKind::Recontact => w.kind_recontact,
        NoticeKind::Enquiry => w.kind_enquiry,
    }
}

fn render(
    visit: &Visit,
    status: StatusCode,
    choice: Option<EmailChoice>,
    (email_invalid, saved): (bool, bool),
) -> HttpResponse {
    let w = visit.words();
    // Offered ticked until the patient chooses otherwise.
    let chosen = choice
        .as_ref()
        .map_or(NoticeKind::ALL.to_vec(), |c| c.kinds.clone());
    let body = PreferencesPage {
        page: visit.page(w.prefs_title, "preferences", "/portal/preferences"),
        language: visit.lang.as_str(),
        email_on: choice.is_some(),
        email: choice.map(|c| c.address).unwrap_or_default(),
        email_invalid,
        kinds: NoticeKind::ALL
            .into_iter()
            .map(|k| KindView {
                code: k.as_str(),
                label: kind_label(visit, k),
                chosen: chosen.contains(&k),
            })
            .collect(),
        saved,
    }
    .render();
    visit.html(status, body)
}

#[derive(Deserialize)]
struct Saved {
    saved: Option<String>,
}

async fn show(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (visit, caller) = match signed_in(&req, &state).await {
        Ok(signed_in) => signed_in,
        Err(r) => return r,
    };
    let Ok(choice) = state.run(move |ctx| email::choice(ctx, &caller)).await else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let saved =
        web::Query::<Saved>::from_query(req.query_string()).is_ok_and(|q| q.saved.is_some());
    render(&visit, StatusCode::OK, choice, (false, saved))
}

#[derive(Deserialize)]
struct Form {
    csrf: String,
    language: Option<String>,
    email_on: Option<String>,
    #[serde(default)]
    email: String,
    kind_consent: Option<String>,
    kind_read: Option<String>,
    kind_use: Option<String>,
    kind_recontact: Option<String>,
    kind_enquiry: Option<String>,
}

async fn save(req: HttpRequest, state: web::Data<AppState>, form: web::Form<Form>) -> HttpResponse {
    let mut visit = match visit(&req, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !page::same_site_with_token(&req, &visit.session, &form.csrf) {
        return refused_page(&visit);
    }
    let Some(patient) = visit.patient() else {
        return sign_in_first(&visit);
    };
    let caller = patient.caller.clone();
    let form = form.into_inner();
    let lang = form
        .language
        .as_deref()
        .and_then(Language::parse)
        .unwrap_or(visit.lang);
    visit.lang = lang;
    let kinds: Vec<NoticeKind> = [
        (NoticeKind::Consent, &form.kind_consent),
        (NoticeKind::Read, &form.kind_read),
        (NoticeKind::Use, &form.kind_use),
        (NoticeKind::Recontact, &form.kind_recontact),
        (NoticeKind::Enquiry, &form.kind_enquiry),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.is_some().then_some(k))
    .collect();
    let choice = (form.email_on.is_some() && !kinds.is_empty()).then(|| EmailChoice {
        address: form.email.clone(),
        kinds,
    });
    let outcome = state
        .run(move |ctx| {
            let mut prefs = portal::preferences(ctx, &caller)?;
            prefs.language = lang;
            portal::set_preferences(ctx, &caller, prefs)?;
            email::choose(ctx, &caller, choice)
        })
        .await;
    match outcome {
        Ok(()) => {
            let mut response = visit.redirect("/portal/preferences?saved=1");
            if let Ok(value) = page::language_cookie(lang).parse() {
                response
                    .headers_mut()
                    .append(actix_web::http::header::SET_COOKIE, value);
            }
            response
        }
        Err(crate::api::problem::ApiError::App(AppError::Validation(_))) => {
            let kept = Some(EmailChoice {
                address: form.email,
                kinds: Vec::new(),
            });
            render(
                &visit,
                StatusCode::UNPROCESSABLE_ENTITY,
                kept,
                (true, false),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "portal preferences were not saved");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}
