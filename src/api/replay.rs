//! Requests a caller may send again under an `Idempotency-Key`: what the
//! request asked for, and its answer, first or replayed.

use super::extract::OptionalIdempotencyKey;
use crate::app::idempotency::{Answered, Retry};
use crate::app::AppError;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

impl OptionalIdempotencyKey {
    /// The retry a key makes of a request that asked for `as_sent` (its
    /// path's identifiers and its body): `None` without a key.
    pub fn retry(self, as_sent: &impl Serialize) -> Result<Option<Retry>, AppError> {
        self.0
            .map(|key| {
                Ok(Retry {
                    key,
                    as_sent: serde_json::to_value(as_sent).map_err(AppError::internal)?,
                })
            })
            .transpose()
    }
}

/// The first answer with `fresh` (`201` for what a request creates), or a
/// replay with `200` and `Idempotent-Replayed: true`.
pub fn answered<T: Serialize>(answer: Answered<T>, fresh: StatusCode) -> HttpResponse {
    if answer.replayed {
        HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(answer.value)
    } else {
        HttpResponse::build(fresh).json(answer.value)
    }
}
