//! JSON Schema for request fields: each the rule its validator applies,
//! stated so that a request the description calls valid is never refused
//! for its shape, and one it calls invalid is. The patterns are read by
//! clients in any regular-expression dialect (ECMA-262, Python, Rust), so
//! they avoid look-around and shorthand classes, whose meaning differs.

use crate::app::text::Text;
use serde_json::{json, Value};

/// White space `str::trim` removes (Unicode `White_Space`).
const WHITE_SPACE: &str =
    r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// A character that is neither white space nor a control character.
const VISIBLE: &str =
    r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
/// Any character but a control character (`char::is_control`).
const NOT_CONTROL: &str = r"[^\u0000-\u001f\u007f-\u009f]";
/// Any character but a control character other than a newline, a return
/// or a tab.
const NOT_CONTROL_BUT_LINES: &str = r"[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]";

/// The pattern of [`Text`]: white space around, then something visible,
/// with no control character within (but newlines and tabs, for prose).
pub fn text_pattern(rule: Text) -> String {
    let within = if rule.lines {
        NOT_CONTROL_BUT_LINES
    } else {
        NOT_CONTROL
    };
    format!("^[{WHITE_SPACE}]*{VISIBLE}(?:{within}*{VISIBLE})?[{WHITE_SPACE}]*$")
}

/// [`Text`], at most `max` characters.
pub fn text(rule: Text) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": rule.max, "pattern": text_pattern(rule)})
}

/// [`Text`], or blank (white space only, or nothing): no value.
pub fn text_or_blank(rule: Text) -> Value {
    let within = if rule.lines {
        NOT_CONTROL_BUT_LINES
    } else {
        NOT_CONTROL
    };
    json!({
        "type": "string",
        "maxLength": rule.max,
        "pattern": format!("^[{WHITE_SPACE}]*(?:{VISIBLE}(?:{within}*{VISIBLE})?[{WHITE_SPACE}]*)?$")
    })
}

/// A string matching `core`, with white space around it (the value is
/// trimmed).
pub fn trimmed(core: &str) -> Value {
    matching(&format!("^[{WHITE_SPACE}]*(?:{core})[{WHITE_SPACE}]*$"))
}

/// A string matching `pattern` (anchored by the caller).
pub fn matching(pattern: &str) -> Value {
    json!({"type": "string", "pattern": pattern})
}

/// A string of any characters but a NUL (which no field may hold).
pub fn any_string() -> Value {
    matching(r"^[^\u0000]*$")
}

/// One of `values`, exactly.
pub fn one_of<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Value {
    let values: Vec<String> = values.into_iter().map(|v| v.as_ref().to_owned()).collect();
    json!({"type": "string", "enum": values})
}

/// One of `values` exactly, with white space around it.
pub fn one_of_trimmed<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Value {
    let alternatives: Vec<String> = values.into_iter().map(|v| literal(v.as_ref())).collect();
    trimmed(&alternatives.join("|"))
}

/// `text` with every regular-expression metacharacter escaped.
pub fn literal(text: &str) -> String {
    text.chars()
        .map(|c| {
            if "\\^$.|?*+()[]{}-/".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One of `words` in any ASCII letter case.
pub fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            } else {
                literal(&c.to_string())
            }
        })
        .collect()
}

/// An integer from `min` to `max`.
pub fn integer(min: i64, max: i64) -> Value {
    json!({"type": "integer", "format": "int64", "minimum": min, "maximum": max})
}

/// An RFC 3339 date (`2026-12-07`).
pub fn date() -> Value {
    json!({"type": "string", "format": "date"})
}

/// An RFC 3339 instant (`2026-12-07T09:00:00Z`).
pub fn date_time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

/// `item`s, `min` to `max` of them.
pub fn array(item: Value, min: usize, max: usize) -> Value {
    json!({"type": "array", "items": item, "minItems": min, "maxItems": max})
}

/// The same schema, or `null`.
pub fn or_null(schema: Value) -> Value {
    json!({"oneOf": [schema, {"type": "null"}]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matches(schema: &Value, value: &str) -> bool {
        let pattern = schema["pattern"].as_str().unwrap();
        let re = regex::Regex::new(pattern).unwrap();
        let max = schema["maxLength"]
            .as_u64()
            .map_or(usize::MAX, |m| m as usize);
        let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
        let len = value.chars().count();
        re.is_match(value) && len <= max && len >= min
    }

    /// Strings of the characters the rules tell apart: letters, white
    /// space of every kind, control characters, newlines.
    fn tricky() -> impl Strategy<Value = String> {
        let chars = prop::sample::select(vec![
            'a', '漢', ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{a0}', '\u{3000}',
            '\u{2028}', '\u{0}', '\u{1}', '\u{1b}', '\u{7f}', '\u{9f}', '\u{1c}', '\u{feff}',
        ]);
        prop::collection::vec(chars, 0..12).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn the_text_schema_accepts_exactly_what_the_text_rule_accepts(value in tricky(), lines: bool) {
            let rule = Text { max: 8, lines };
            prop_assert_eq!(matches(&text(rule), &value), rule.check(&value, "f").is_ok(), "{:?}", value);
            let blank_ok = value.trim().is_empty() && value.chars().count() <= 8;
            prop_assert_eq!(
                matches(&text_or_blank(rule), &value),
                blank_ok || rule.check(&value, "f").is_ok(),
                "{:?}", value
            );
        }
    }

    #[test]
    fn words_and_literals_are_escaped() {
        let schema = one_of_trimmed(["genome-store.example"]);
        let re = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        assert!(re.is_match(" genome-store.example\t"));
        assert!(!re.is_match("genome-storeXexample"));
        let re = regex::Regex::new(&format!("^{}$", any_case("HMB"))).unwrap();
        assert!(re.is_match("hMb") && !re.is_match("HMBX"));
    }
}
