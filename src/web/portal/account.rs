//! Enrollment, sign-in and recovery with passkeys. The pages are plain
//! forms; the script (`assets/portal/portal.js`) runs each ceremony
//! against the JSON endpoints here, which answer RFC 9457 problems like
//! the rest of the API. Each endpoint needs the page's session and its CSRF
//! token in `X-CSRF-Token`.

use super::super::page::{self, visit, Visit};
use crate::api::extract::{Json, PeerAddress};
use crate::api::problem::ApiError;
use crate::api::state::AppState;
use crate::app::passkeys::{self, Enrolled};
use crate::app::portal_sessions::NewSession;
use crate::app::AppError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/enroll", web::get().to(enroll_page))
        .route("/recover", web::get().to(recover_page))
        .route("/passkeys/sign-in/begin", web::post().to(begin_sign_in))
        .route("/passkeys/sign-in/finish", web::post().to(finish_sign_in))
        .route("/passkeys/{kind}/begin", web::post().to(begin_registration))
        .route(
            "/passkeys/{kind}/finish",
            web::post().to(finish_registration),
        );
}

#[derive(Template)]
#[template(path = "portal/register.html")]
struct Register {
    page: page::Page,
    heading: &'static str,
    intro: &'static str,
    code_label: &'static str,
    code_hint: &'static str,
    /// Which ceremony the form starts: `enroll` or `recover`.
    ceremony: &'static str,
}

async fn register_page(req: HttpRequest, state: web::Data<AppState>, enroll: bool) -> HttpResponse {
    let visit = match visit(&req, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let w = visit.words();
    let (heading, intro, code_label, code_hint, ceremony, back) = if enroll {
        (
            w.enroll_title,
            w.enroll_intro,
            w.enroll_code,
            w.enroll_code_hint,
            "enroll",
            "/portal/enroll",
        )
    } else {
        (
            w.recover_title,
            w.recover_intro,
            w.recovery_code,
            w.recover_intro,
            "recover",
            "/portal/recover",
        )
    };
    let body = Register {
        page: visit.page(heading, "", back),
        heading,
        intro,
        code_label,
        code_hint,
        ceremony,
    }
    .render();
    visit.html(StatusCode::OK, body)
}

/// `/portal/enroll#code=…`: the enrollment letter's QR code opens this
/// page; the code stays in the fragment, which no server or log sees, and
/// the script fills it in.
async fn enroll_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    register_page(req, state, true).await
}

async fn recover_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    register_page(req, state, false).await
}

/// The visit of a ceremony request: a live session whose CSRF token the
/// script sent back, from this site.
async fn ceremony_visit(req: &HttpRequest, state: &AppState) -> Result<Visit, ApiError> {
    let has_session = page::cookie(req, page::SESSION_COOKIE).is_some();
    let visit = visit(req, state)
        .await
        .map_err(|_| ApiError::from(AppError::Unavailable))?;
    let token = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !has_session
        || visit.new_cookie.is_some()
        || !page::same_site_with_token(req, &visit.session, token)
    {
        return Err(AppError::Forbidden.into());
    }
    Ok(visit)
}

/// A signed-in answer: the new session's cookie replaces the old one.
fn signed_in(new: &NewSession, body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("set-cookie", page::session_cookie(&new.cookie_value)))
        .json(body)
}

fn enrolled(done: Enrolled) -> HttpResponse {
    signed_in(
        &done.session,
        serde_json::json!({ "recovery_code": done.recovery_code, "next": "/portal/" }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

/// Which registration ceremony a request is part of.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Registration {
    /// A new account, with the code from the hospital's letter.
    Enroll,
    /// A new passkey for an account, with its recovery code.
    Recover,
}

/// `POST /portal/passkeys/{enroll|recover}/begin`: checks the code, and
/// answers the options for `navigator.credentials.create`.
async fn begin_registration(
    req: HttpRequest,
    state: web::Data<AppState>,
    kind: web::Path<Registration>,
    peer: PeerAddress,
    body: Json<CodeBody>,
) -> Result<HttpResponse, ApiError> {
    let visit = ceremony_visit(&req, &state).await?;
    let (kind, code) = (kind.into_inner(), body.into_inner().code);
    let options = state
        .run(move |ctx| match kind {
            Registration::Enroll => passkeys::begin_enrollment(ctx, &visit.session, &peer.0, &code),
            Registration::Recover => passkeys::begin_recovery(ctx, &visit.session, &peer.0, &code),
        })
        .await?;
    Ok(HttpResponse::Ok().json(options))
}

/// `POST /portal/passkeys/{enroll|recover}/finish`: stores the new passkey,
/// signs the browser in, and answers the recovery code, shown once.
async fn finish_registration(
    req: HttpRequest,
    state: web::Data<AppState>,
    kind: web::Path<Registration>,
    body: Json<RegisterPublicKeyCredential>,
) -> Result<HttpResponse, ApiError> {
    let visit = ceremony_visit(&req, &state).await?;
    let (kind, credential) = (kind.into_inner(), body.into_inner());
    let done = state
        .run(move |ctx| match kind {
            Registration::Enroll => passkeys::finish_enrollment(ctx, &visit.session, &credential),
            Registration::Recover => passkeys::finish_recovery(ctx, &visit.session, &credential),
        })
        .await?;
    Ok(enrolled(done))
}

async fn begin_sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let visit = ceremony_visit(&req, &state).await?;
    let options = state
        .run(move |ctx| passkeys::begin_sign_in(ctx, &visit.session))
        .await?;
    Ok(HttpResponse::Ok().json(options))
}

async fn finish_sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    peer: PeerAddress,
    body: Json<PublicKeyCredential>,
) -> Result<HttpResponse, ApiError> {
    let visit = ceremony_visit(&req, &state).await?;
    let credential = body.into_inner();
    let new = state
        .run(move |ctx| passkeys::finish_sign_in(ctx, &visit.session, &peer.0, &credential))
        .await?;
    Ok(signed_in(&new, serde_json::json!({ "next": "/portal/" })))
}
