//! Request extractors: the caller, the idempotency key, and JSON/path/query
//! configuration that turns every malformed input into a problem response.

use super::problem::ApiError;
use super::state::AppState;
use crate::app::AppError;
use crate::auth::jwt::TokenError;
use crate::auth::{Caller, Principal};
use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, FromRequest, HttpRequest};
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

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty());
    match key {
        None => Ok(None),
        Some(k) if k.len() > 128 || !k.chars().all(|c| c.is_ascii_graphic()) => {
            Err(AppError::field("Idempotency-Key", "must be 1-128 visible ASCII characters").into())
        }
        Some(k) => Ok(Some(k.to_owned())),
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
