//! Plain-text fields and the service's own JSON columns.

use super::AppError;
use serde::{Deserialize, Serialize};

/// A trimmed plain-text field of 1 to `max` bytes, or a field problem.
pub fn text_field(value: &str, field: &str, max: usize) -> Result<String, AppError> {
    let value = value.trim();
    if value.is_empty() || value.len() > max || value.chars().any(|c| c.is_control()) {
        return Err(AppError::field(
            field,
            format!("1-{max} characters of plain text"),
        ));
    }
    Ok(value.to_owned())
}

/// A value for one of the service's JSON columns.
pub fn json<T: Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(AppError::internal)
}

/// One of the service's JSON columns: written by the service, so a value
/// that does not parse is an internal error.
pub fn parse_json<T: for<'de> Deserialize<'de>>(raw: &str) -> Result<T, AppError> {
    serde_json::from_str(raw).map_err(AppError::internal)
}
