//! Plain-text fields and the service's own JSON columns.

use super::AppError;
use serde::{Deserialize, Serialize};

/// The rule for a text field people write: at most `max` characters as
/// sent, something other than white space, no control character, and
/// (`lines`) newlines and tabs within or not. The value is kept trimmed.
/// The API description states the same rule (`api::schema::text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    pub max: usize,
    pub lines: bool,
}

impl Text {
    /// One line: a name, a title, a reference.
    pub const fn line(max: usize) -> Self {
        Text { max, lines: false }
    }

    /// Lines of prose: a reason, a note, an agreement.
    pub const fn prose(max: usize) -> Self {
        Text { max, lines: true }
    }

    /// The value, trimmed, or a field problem.
    pub fn check(self, value: &str, field: &str) -> Result<String, AppError> {
        let trimmed = value.trim();
        let allowed = |c: char| !c.is_control() || (self.lines && matches!(c, '\n' | '\r' | '\t'));
        if trimmed.is_empty() || value.chars().count() > self.max || !trimmed.chars().all(allowed) {
            return Err(AppError::field(
                field,
                format!("1-{} characters of plain text", self.max),
            ));
        }
        Ok(trimmed.to_owned())
    }
}

/// A trimmed plain-text line of 1 to `max` characters, or a field problem.
pub fn text_field(value: &str, field: &str, max: usize) -> Result<String, AppError> {
    Text::line(max).check(value, field)
}

/// Prose of 1 to `max` characters, trimmed: lines of plain text (newlines
/// and tabs allowed, no other control character), or a field problem.
/// Every free-text field people write and read (a reason, a note, an
/// agreement) takes this one rule.
pub fn prose(value: &str, field: &str, max: usize) -> Result<String, AppError> {
    Text::prose(max).check(value, field)
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
        // The limit counts characters as sent, not bytes.
        assert!(text_field(&"漢".repeat(100), "title", 100).is_ok());
        assert!(text_field(&format!(" {}", "x".repeat(100)), "title", 100).is_err());
    }
}
