//! What every page shares: the visitor's session and language, the
//! headers that keep a page from being framed or running injected script,
//! the CSRF checks, and rendering a template into a response.

use super::assets;
use super::words::{self, Words};
use crate::api::state::AppState;
use crate::app::portal_sessions::{self as sessions, Session, SignedIn};
use crate::ledger::entry::Language;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

/// The session cookie. `__Host-`: only ever set by this host over HTTPS,
/// for the whole site, so no subdomain or plain-HTTP page can plant one.
pub const SESSION_COOKIE: &str = "__Host-gg_session";
/// The language switch, remembered; not a secret.
pub const LANGUAGE_COOKIE: &str = "__Host-gg_lang";

/// No inline script or style, nothing from another host, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every page carries.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("content-security-policy", CONTENT_SECURITY_POLICY))
        .add(("x-frame-options", "DENY"))
        .add(("x-content-type-options", "nosniff"))
        // Not `no-referrer`: under it a browser sends `Origin: null` with
        // the pages' own forms, which the CSRF check refuses.
        .add(("referrer-policy", "same-origin"))
        .add(("cross-origin-opener-policy", "same-origin"))
        .add((
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), interest-cohort=()",
        ))
        .add(("cache-control", "no-store"))
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The language: the remembered switch, else Japanese.
pub fn language(req: &HttpRequest) -> Language {
    cookie(req, LANGUAGE_COOKIE)
        .and_then(|l| Language::parse(&l))
        .unwrap_or(Language::Ja)
}

fn set_cookie(name: &str, value: &str, max_age: Option<i64>) -> String {
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}")
}

/// A `Set-Cookie` for a session.
pub fn session_cookie(value: &str) -> String {
    set_cookie(SESSION_COOKIE, value, None)
}

/// A `Set-Cookie` that removes the session cookie.
pub fn cleared_session_cookie() -> String {
    set_cookie(SESSION_COOKIE, "", Some(0))
}

/// A `Set-Cookie` remembering the language for a year.
pub fn language_cookie(lang: Language) -> String {
    set_cookie(LANGUAGE_COOKIE, lang.as_str(), Some(365 * 24 * 3600))
}

/// One request's visitor: their session (started now if they had none),
/// and their language.
pub struct Visit {
    pub session: Session,
    /// Set when the session was started by this request: the response
    /// must carry its cookie.
    pub new_cookie: Option<String>,
    pub lang: Language,
}

impl Visit {
    pub fn words(&self) -> &'static Words {
        words::of(self.lang)
    }

    pub fn patient(&self) -> Option<&SignedIn> {
        self.session.patient.as_ref()
    }

    /// The frame of a page in this visit.
    pub fn page(&self, title: &str, section: &'static str, back: &str) -> Page {
        Page {
            w: self.words(),
            title: title.to_owned(),
            csrf: self.session.csrf_token.clone(),
            signed_in: self.patient().is_some(),
            section,
            back: back.to_owned(),
            css: assets::css(),
            js: assets::js(),
        }
    }

    /// A response with this visit's new session cookie, if any.
    pub fn respond(&self, status: StatusCode) -> actix_web::HttpResponseBuilder {
        let mut builder = HttpResponse::build(status);
        if let Some(value) = &self.new_cookie {
            builder.append_header((header::SET_COOKIE, session_cookie(value)));
        }
        builder
    }

    /// A rendered page.
    pub fn html(&self, status: StatusCode, body: Result<String, askama::Error>) -> HttpResponse {
        match body {
            Ok(html) => self
                .respond(status)
                .content_type("text/html; charset=utf-8")
                .body(html),
            Err(e) => {
                tracing::error!(error = %e, "a page could not be rendered");
                HttpResponse::InternalServerError().finish()
            }
        }
    }

    /// Where a page sends the browser next (`303 See Other`).
    pub fn redirect(&self, to: &str) -> HttpResponse {
        self.respond(StatusCode::SEE_OTHER)
            .insert_header((header::LOCATION, to))
            .finish()
    }
}

/// The visitor of `req`: their live session, or a new one.
/// A one-time key for a form that must take effect once however often it
/// is sent (a withdrawal, an enquiry): 128 random bits, hex.
pub fn new_form_key() -> Result<String, String> {
    crate::keyfile::random_bytes(16).map(hex::encode)
}

/// Whether a form sent back a key of the shape [`new_form_key`] makes.
pub fn is_form_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_alphanumeric())
}

pub async fn visit(req: &HttpRequest, state: &AppState) -> Result<Visit, HttpResponse> {
    let lang = language(req);
    let presented = cookie(req, SESSION_COOKIE).filter(|v| !v.is_empty() && v.len() <= 64);
    let found = match presented {
        Some(value) => state
            .run(move |ctx| sessions::load(ctx, &value))
            .await
            .map_err(|_| unavailable())?,
        None => None,
    };
    if let Some(session) = found {
        return Ok(Visit {
            session,
            new_cookie: None,
            lang,
        });
    }
    let new = state
        .run(sessions::start)
        .await
        .map_err(|_| unavailable())?;
    Ok(Visit {
        session: new.session,
        new_cookie: Some(new.cookie_value),
        lang,
    })
}

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header(("retry-after", "5"))
        .content_type("text/plain; charset=utf-8")
        .body("GenomeGate is unavailable for a moment. / 一時的に利用できません。")
}

/// Whether a state-changing request comes from this site's own pages: no
/// browser says it is cross-site, any `Origin` is this host, and the token
/// is the session's.
pub fn same_site_with_token(req: &HttpRequest, session: &Session, token: &str) -> bool {
    let headers = req.headers();
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let host = req.connection_info().host().to_owned();
    let foreign_origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or_default())
        .is_some_and(|origin| origin != format!("https://{host}"));
    !cross_site && !foreign_origin && sessions::csrf_matches(session, token)
}

/// The frame every template extends (`templates/portal/base.html`).
pub struct Page {
    pub w: &'static Words,
    pub title: String,
    pub csrf: String,
    pub signed_in: bool,
    /// Which menu entry is the current page.
    pub section: &'static str,
    /// Where the language switch comes back to.
    pub back: String,
    pub css: &'static str,
    pub js: &'static str,
}
