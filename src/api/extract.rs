//! Request extractors: the caller, the idempotency key, and JSON/path/query
//! configuration that turns every malformed input into a problem response.

use super::problem::ApiError;
use super::state::AppState;
use crate::app::AppError;
use crate::auth::jwt::TokenError;
use crate::auth::{Caller, Principal};
use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};

/// The organization named by a verified TLS client certificate, stored per
/// connection by the server's `on_connect` hook.
#[derive(Debug, Clone)]
pub struct ClientCertOrg(pub Option<String>);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller_of(req))
    }
}

fn caller_of(req: &HttpRequest) -> Result<Caller, ApiError> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Err(AppError::internal("application state missing").into());
    };
    let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::InvalidToken)?;
    let principal: Principal = state.verifier.verify(token).map_err(|e| match e {
        TokenError::Invalid => ApiError::InvalidToken,
        TokenError::Expired => ApiError::TokenExpired,
        TokenError::UntrustedIssuer => ApiError::UntrustedIssuer,
    })?;
    // With mutual TLS, the certificate and the token must agree on who the
    // organization is: a stolen token is useless from another hospital's
    // system.
    if let Some(ClientCertOrg(Some(cert_org))) = req.conn_data::<ClientCertOrg>() {
        if cert_org != &principal.org {
            return Err(ApiError::ClientCertificateMismatch);
        }
    }
    Ok(Caller::User(principal))
}

/// The `Idempotency-Key` header of a state-changing request.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match idempotency_key(req) {
            Ok(None) => Err(ApiError::IdempotencyKeyRequired),
            Ok(Some(k)) => Ok(IdempotencyKey(k)),
            Err(e) => Err(e),
        })
    }
}

/// An `Idempotency-Key` where the header is optional. A malformed key is
/// still refused, never silently ignored.
#[derive(Debug, Clone)]
pub struct OptionalIdempotencyKey(pub Option<String>);

impl FromRequest for OptionalIdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(idempotency_key(req).map(OptionalIdempotencyKey))
    }
}

/// The key, if the header is sent: 1-128 visible ASCII characters. A
/// header that is sent blank is malformed, not absent.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str().map(str::trim) {
        Ok(k) if !k.is_empty() && k.len() <= 128 && k.chars().all(|c| c.is_ascii_graphic()) => {
            Ok(Some(k.to_owned()))
        }
        _ => {
            Err(AppError::field("Idempotency-Key", "must be 1-128 visible ASCII characters").into())
        }
    }
}

/// The client's network address (the TCP peer; a proxy in front must be
/// trusted to be the only client, or rate limits apply to it as a whole).
#[derive(Debug, Clone)]
pub struct PeerAddress(pub String);

impl FromRequest for PeerAddress {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        ready(Ok(PeerAddress(ip)))
    }
}

/// A JSON request body: `application/json` (or `+json`), at most
/// `server.body_limit_bytes`, deserialized into `T`. A string holding a NUL
/// anywhere in the body is refused as `validation_failed` naming its field,
/// on both backends alike (PostgreSQL cannot store one; SQLite would).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !is_json(req) {
            return Box::pin(async { Err(ApiError::UnsupportedMediaType.into()) });
        }
        let body = json_body::<T>(req, payload);
        Box::pin(async move {
            match body.await? {
                Some(value) => Ok(Json(value)),
                None => Err(ApiError::MalformedJson("the body is empty".into()).into()),
            }
        })
    }
}

/// A JSON body the endpoint can do without: no body at all is `None`; a
/// body that is sent is held to every rule of [`Json`] (a malformed one is
/// refused, never taken for none).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T> OptionalJson<T> {
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = json_body::<T>(req, payload);
        Box::pin(async move { Ok(OptionalJson(body.await?)) })
    }
}

/// `application/json`, or a `+json` type.
fn is_json(req: &HttpRequest) -> bool {
    matches!(req.mime_type(), Ok(Some(mime))
        if mime.subtype() == actix_web::mime::JSON || mime.suffix() == Some(actix_web::mime::JSON))
}

/// Reads and parses a JSON body: `None` when nothing was sent.
fn json_body<T: serde::de::DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
) -> futures_util::future::LocalBoxFuture<'static, Result<Option<T>, actix_web::Error>> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map_or(DEFAULT_BODY_LIMIT, |s| s.body_limit);
    let is_json = is_json(req);
    let body = web::Bytes::from_request(req, payload);
    Box::pin(async move {
        let bytes = body.await.map_err(|e| {
            if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::MalformedJson(e.to_string())
            }
        })?;
        if bytes.is_empty() {
            return Ok(None);
        }
        if !is_json {
            return Err(ApiError::UnsupportedMediaType.into());
        }
        refuse_nul(&bytes)?;
        // `null` is no body, as nothing is.
        serde_json::from_slice::<Option<T>>(&bytes)
            .map_err(|e| ApiError::MalformedJson(e.to_string()).into())
    })
}

/// The limit when the application state is missing (it never is).
const DEFAULT_BODY_LIMIT: usize = 262_144;

/// Refuses a body with a NUL in any string. JSON can only carry one
/// escaped (`\u0000`), so the bytes are scanned for that first; only then
/// is the body parsed, to name the field (an escaped backslash before
/// `u0000` is no NUL, and passes).
fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    match nul_at(&value, String::new()) {
        Some(field) => Err(AppError::field(field, "must not contain a NUL character").into()),
        None => Ok(()),
    }
}

/// The JSON path of the first string (or key) holding a NUL.
fn nul_at(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let named = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(named(&path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            let field = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(named(&path))
            } else {
                nul_at(v, field)
            }
        }),
        _ => None,
    }
}

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .error_handler(move |err, _req| {
            match err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => ApiError::PayloadTooLarge { limit },
                JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
                JsonPayloadError::Deserialize(e) => ApiError::MalformedJson(e.to_string()),
                other => ApiError::MalformedJson(other.to_string()),
            }
            .into()
        })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_: PathError, _| ApiError::from(AppError::NotFound).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e: QueryPayloadError, _| {
        ApiError::from(AppError::field("query", e.to_string())).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_anywhere_is_named_and_an_escaped_backslash_is_not_one() {
        let named = |body: &str| match refuse_nul(body.as_bytes()) {
            Err(ApiError::App(AppError::Validation(problems))) => Some(problems[0].field.clone()),
            _ => None,
        };
        assert_eq!(named(r#"{"body": "a\u0000b"}"#), Some("body".into()));
        assert_eq!(
            named(r#"{"objects": [{"name": "x"}, {"name": "\u0000"}]}"#),
            Some("objects[1].name".into())
        );
        assert_eq!(
            named(r#"{"decisions": {"a\u0000": "permit"}}"#),
            Some("decisions".into())
        );
        assert_eq!(
            named(r#"{"body": "a\\u0000b"}"#),
            None,
            "a backslash, then text"
        );
        assert_eq!(named(r#"{"body": "plain"}"#), None);
    }
}
