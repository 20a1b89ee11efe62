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

/// Prose of 1 to `max` bytes, trimmed: lines of plain text (newlines and
/// tabs allowed, no other control character), or a field problem. Every
/// free-text field people write and read (a reason, a note, an agreement)
/// takes this one rule.
pub fn prose(value: &str, field: &str, max: usize) -> Result<String, AppError> {
    let value = value.trim();
    let plain = value
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    if value.is_empty() || value.len() > max || !plain {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_keeps_lines_and_refuses_other_control_characters() {
        assert_eq!(prose(" two\nlines\t ", "note", 100).unwrap(), "two\nlines");
        for bad in ["", "  ", "bell\u{7}", "escape\u{1b}[31m", "nul\0"] {
            assert!(prose(bad, "note", 100).is_err(), "{bad:?}");
        }
        assert!(prose(&"x".repeat(101), "note", 100).is_err());
        assert!(text_field("one\nline", "title", 100).is_err());
    }
}
