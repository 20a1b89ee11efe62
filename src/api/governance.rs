//! What the governance handlers share: the register's authorization,
//! plain-text fields, and the JSON columns of applications and agreements.

use super::consents::principal;
use super::state::AppState;
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// A trimmed plain-text field of 1 to `max` bytes, or a field problem.
pub(crate) fn text_field(value: &str, field: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.len() > max || value.chars().any(|c| c.is_control()) {
        return Err(ApiError::field(
            field,
            format!("1-{max} characters of plain text"),
        ));
    }
    Ok(value.to_owned())
}

pub(crate) fn json<T: Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(ApiError::internal)
}

pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(raw: &str) -> Result<T, ApiError> {
    serde_json::from_str(raw).map_err(ApiError::internal)
}

/// The caller, if it may manage the governance register.
pub(crate) fn registry(state: &AppState, caller: &Caller) -> Result<Principal, ApiError> {
    state.authorize(caller, Action::RegistryManage, &Resource::Registry)?;
    Ok(principal(caller)?.clone())
}
