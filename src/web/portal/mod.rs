//! The patient portal: sign-in with a passkey (`account`), the patient's
//! consent and its withdrawal (`consent`), and who used their data, checked
//! in the browser and updated live (`history`), and the patient's
//! questions and reports (`enquiries`).

mod account;
mod consent;
mod enquiries;
mod history;
mod preferences;

use super::page::{self, visit, Visit};
use crate::api::state::AppState;
use crate::ledger::entry::Language;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/assets/{name}", web::get().to(super::assets::serve))
        .route("/language/{lang}", web::get().to(switch_language))
        .route("/sign-out", web::post().to(sign_out))
        .configure(account::routes)
        .configure(consent::routes)
        .configure(enquiries::routes)
        .configure(history::routes)
        .configure(preferences::routes)
        .default_service(web::to(not_found));
}

#[derive(Template)]
#[template(path = "portal/welcome.html")]
struct Welcome {
    page: page::Page,
}

#[derive(Template)]
#[template(path = "portal/message.html")]
struct Message {
    page: page::Page,
    message: &'static str,
}

/// `/portal/`: the patient's consent once signed in, else the way in.
async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visit = match visit(&req, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if visit.patient().is_some() {
        return consent::page(&req, &state, visit).await;
    }
    let w = visit.words();
    let body = Welcome {
        page: visit.page(w.portal_name, "", "/portal/"),
    }
    .render();
    visit.html(StatusCode::OK, body)
}

/// A page that is not there, for a path nobody routes or for something the
/// patient may not see: the two look the same.
pub(crate) fn not_found_page(visit: &Visit) -> HttpResponse {
    let w = visit.words();
    let body = Message {
        page: visit.page(w.not_found_title, "", "/portal/"),
        message: w.not_found,
    }
    .render();
    visit.html(StatusCode::NOT_FOUND, body)
}

/// A form that failed its CSRF check.
pub(crate) fn refused_page(visit: &Visit) -> HttpResponse {
    let w = visit.words();
    let body = Message {
        page: visit.page(w.refused_title, "", "/portal/"),
        message: w.refused,
    }
    .render();
    visit.html(StatusCode::FORBIDDEN, body)
}

async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match visit(&req, &state).await {
        Ok(v) => not_found_page(&v),
        Err(r) => r,
    }
}

/// Signed-in pages send anyone else to the way in.
pub(crate) fn sign_in_first(visit: &Visit) -> HttpResponse {
    visit.redirect("/portal/")
}

/// The visit of a signed-in patient, and the caller they act as; anyone
/// else is answered with the way in.
pub(crate) async fn signed_in(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(Visit, crate::auth::Caller), HttpResponse> {
    let visit = visit(req, state).await?;
    let Some(patient) = visit.patient() else {
        return Err(sign_in_first(&visit));
    };
    let caller = patient.caller.clone();
    Ok((visit, caller))
}

#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

/// `/portal/language/{ja|en}?back=…`: remembers the language and returns
/// to the page, which must be one of the portal's own.
async fn switch_language(lang: web::Path<String>, query: web::Query<Back>) -> HttpResponse {
    let back = query
        .back
        .as_deref()
        .filter(|b| b.starts_with("/portal/") && !b.contains("//") && !b.contains('\\'))
        .unwrap_or("/portal/")
        .to_owned();
    let mut response = HttpResponse::SeeOther();
    response.insert_header(("location", back));
    if let Some(lang) = Language::parse(&lang) {
        response.insert_header(("set-cookie", page::language_cookie(lang)));
    }
    response.finish()
}

#[derive(Deserialize)]
pub(crate) struct TokenOnly {
    pub csrf: String,
}

/// `POST /portal/sign-out`: revokes the session and clears its cookie.
async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<TokenOnly>,
) -> HttpResponse {
    let visit = match visit(&req, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !page::same_site_with_token(&req, &visit.session, &form.csrf) {
        return refused_page(&visit);
    }
    let session = visit.session.clone();
    if state
        .run(move |ctx| crate::app::portal_sessions::sign_out(ctx, &session))
        .await
        .is_err()
    {
        return HttpResponse::ServiceUnavailable().finish();
    }
    HttpResponse::SeeOther()
        .insert_header(("location", "/portal/"))
        .insert_header(("set-cookie", page::cleared_session_cookie()))
        .finish()
}
