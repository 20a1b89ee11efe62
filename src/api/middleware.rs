//! Per-request context: a request ID, a tracing span, metrics, and RFC 9457
//! bodies that carry the request ID.

use super::problem::ApiError;
use super::routes::Routes;
use super::state::AppState;
use crate::app::AppError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Accepts a caller's request ID when it is short and plain, so a hospital
/// can correlate its own logs; otherwise makes a fresh one.
fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let request_id = request_id_of(&req);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().to_string();
    // The matched pattern, never the raw path: paths carry pseudonyms.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);

    let refusal = refuse_request_target(&req).or_else(|| refuse_anonymous(&req));
    let mut response = match refusal {
        Some(refusal) => enrich_problem(req.error_response(refusal), &request_id),
        None => match next.call(req).instrument(span.clone()).await {
            Ok(res) => enrich_problem(res, &request_id),
            Err(e) => return Err(e),
        },
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(state) = state {
        state.metrics.observe(&method, &route, status, seconds);
    }
    span.in_scope(|| tracing::info!(status, latency_ms = seconds * 1000.0, "request completed"));
    Ok(response)
}

/// The longest request target (path and query) the service reads.
const MAX_TARGET: usize = 8_192;

/// A request whose target the service refuses before routing: too long, a
/// control character in the path (no identifier has one: not found), or
/// in a query parameter (named). A NUL would otherwise reach the database,
/// which refuses it as an encoding error.
fn refuse_request_target(req: &ServiceRequest) -> Option<ApiError> {
    let uri = req.uri();
    let target_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if target_len > MAX_TARGET {
        return Some(ApiError::UriTooLong { limit: MAX_TARGET });
    }
    if has_control(&percent_decode(uri.path().as_bytes(), false)) {
        return Some(AppError::NotFound.into());
    }
    for pair in uri.query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key.as_bytes(), true);
        if has_control(&key) || has_control(&percent_decode(value.as_bytes(), true)) {
            let field = if has_control(&key) {
                "query".to_owned()
            } else {
                String::from_utf8_lossy(&key).into_owned()
            };
            return Some(AppError::field(field, "must not contain control characters").into());
        }
    }
    None
}

/// A caller without a token, on an operation that needs one, is refused
/// before its request is read any further: deny by default, and nothing
/// about its path, query or body is answered to someone who has not said
/// who they are.
fn refuse_anonymous(req: &ServiceRequest) -> Option<ApiError> {
    let routes = req.app_data::<web::Data<Routes>>()?;
    let anonymous = !req
        .headers()
        .contains_key(actix_web::http::header::AUTHORIZATION);
    (anonymous && routes.needs_token(req.method().as_str(), req.path()))
        .then(|| AppError::MissingToken.into())
}

fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| *b < 0x20 || *b == 0x7f)
}

/// `%XX` decoded (and `+` as a space in a query); malformed escapes are
/// kept as they are, for the router to refuse.
fn percent_decode(raw: &[u8], plus_is_space: bool) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16)).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            if let (Some(high), Some(low)) = (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                out.push(high * 16 + low);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    out
}

/// The problem's `instance`: this occurrence, by its request ID. Never the
/// path, which carries pseudonyms: another hospital's patient and one that
/// does not exist must get the same body, but for the request ID.
fn occurrence(request_id: &str) -> String {
    match uuid::Uuid::try_parse(request_id) {
        Ok(id) => format!("urn:uuid:{id}"),
        // A request ID the caller chose (plain, at most 64 characters).
        Err(_) => format!("urn:genomegate:request:{request_id}"),
    }
}

/// Rewrites error responses into problem documents that name the request.
fn enrich_problem<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
    request_id: &str,
) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let replacement = match res.response().error() {
        Some(err) => match err.as_error::<ApiError>() {
            Some(api) => {
                Some(api.to_response(Some(occurrence(request_id)), Some(request_id.to_owned())))
            }
            None => {
                // actix's own errors (unknown route, wrong method, …).
                let mapped = match status.as_u16() {
                    404 => ApiError::RouteNotFound,
                    405 => ApiError::MethodNotAllowed {
                        allow: String::new(),
                    },
                    413 => ApiError::PayloadTooLarge { limit: 0 },
                    415 => ApiError::UnsupportedMediaType,
                    400 => ApiError::MalformedJson(err.to_string()),
                    _ => ApiError::App(AppError::Internal(err.to_string())),
                };
                Some(mapped.to_response(
                    Some(res.request().path().to_owned()),
                    Some(request_id.to_owned()),
                ))
            }
        },
        None => None,
    };
    match replacement {
        Some(new) => res.into_response(new).map_into_boxed_body(),
        None => res.map_into_boxed_body(),
    }
}
