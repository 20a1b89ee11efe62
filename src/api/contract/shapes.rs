//! The shapes request fields share: identifiers, codes, and the
//! composite bodies whose fields depend on each other (who signed, a
//! purpose, data-use terms, a vote). Each from its validator's constants.

use crate::api::schema::{
    any_case, any_string, array, date, integer, matching, one_of, text, trimmed,
};
use serde_json::{json, Value};

/// What this deployment's policies name: the words some fields take.
pub struct Vocabulary {
    /// Purposes policy forbids (`purposes.forbidden`).
    pub forbidden_purposes: Vec<String>,
    /// Disease codes (`policies/diseases.toml`).
    pub diseases: Vec<String>,
    /// Scope item keys (`policies/scope-items.toml`).
    pub scope_items: Vec<String>,
    /// Genome stores and research environments releases go to.
    pub audiences: Vec<String>,
}

pub(super) fn hex(digits: usize) -> String {
    format!("[0-9a-fA-F]{{{digits}}}")
}

/// A query parameter of free text: no control character reaches a handler.
pub(super) fn query_text() -> Value {
    matching(r"^[^\u0000-\u001f\u007f]*$")
}

pub(super) fn family() -> Value {
    one_of(crate::consent::ids::DocumentFamily::ALL.map(|f| f.as_str()))
}

pub(super) fn document_version() -> Value {
    matching("^(?:cancer|rare_disease)-v[1-9][0-9]{0,8}$")
}

pub(super) fn genome_id() -> Value {
    trimmed(&crate::pseudonym::genome_id::printed_pattern(
        crate::pseudonym::genome_id::IdKind::Sample,
    ))
}

pub(super) fn scope_item_key() -> Value {
    matching("^[a-z][a-z0-9_]{1,63}$")
}

pub(super) fn patient_ref() -> Value {
    matching("^[0-9a-f]{64}$")
}

pub(super) fn organization_name() -> Value {
    matching("^[A-Za-z0-9._-]{1,128}$")
}

pub(super) fn local_patient_id() -> Value {
    text(crate::api::patients::LOCAL_PATIENT_ID)
}

pub(super) fn decisions() -> Value {
    json!({
        "type": "object",
        "propertyNames": scope_item_key(),
        "additionalProperties": one_of(["permit", "deny"]),
    })
}

/// Who signed: a patient, or a proxy with a coded relationship.
pub(super) fn signer() -> Value {
    json!({"oneOf": [
        {
            "type": "object",
            "properties": {"kind": one_of(["patient"]), "relationship": {"type": "null"}},
            "required": ["kind"],
            "additionalProperties": false
        },
        {
            "type": "object",
            "properties": {
                "kind": one_of(["proxy"]),
                "relationship": one_of(crate::app::consents::RELATIONSHIPS)
            },
            "required": ["kind", "relationship"],
            "additionalProperties": false
        }
    ]})
}

pub(super) fn purpose(v: &Vocabulary) -> Value {
    let forbidden: Vec<String> = v
        .forbidden_purposes
        .iter()
        .map(|f| {
            f.chars()
                .map(|c| match c {
                    '_' | '-' | ' ' => "[-_ ]".to_owned(),
                    c => any_case(&c.to_string()),
                })
                .collect()
        })
        .collect();
    let codes = |list: &[&str]| -> String {
        list.iter()
            .map(|c| any_case(c))
            .collect::<Vec<_>>()
            .join("|")
    };
    let mut first = vec![
        json!({
            "type": "object",
            "properties": {
                "code": matching(&format!("^(?:{})$", codes(&["GRU", "HMB", "POA", "MDS"]))),
                "diseases": array(any_string(), 0, 0)
            },
            "required": ["code"],
            "additionalProperties": false
        }),
        json!({
            "type": "object",
            "properties": {
                "code": matching(&format!("^(?:{})$", codes(&["DS"]))),
                "diseases": {"type": "array", "items": any_string(), "minItems": 1}
            },
            "required": ["code", "diseases"],
            "additionalProperties": false
        }),
    ];
    if !forbidden.is_empty() {
        // Refused as `purpose_forbidden`, whatever else the purpose says.
        first.push(json!({
            "type": "object",
            "properties": {
                "code": trimmed(&forbidden.join("|")),
                "diseases": {"type": "array", "items": any_string()}
            },
            "required": ["code"],
            "additionalProperties": false
        }));
    }
    json!({
        "description": "A GA4GH DUO purpose (`GRU`, `HMB`, `DS` with diseases, `POA`, `MDS`; any case), or a purpose policy forbids, which is refused with `purpose_forbidden`.",
        "oneOf": first
    })
}

pub(super) fn data_use_terms(v: &Vocabulary) -> Value {
    let modifiers = json!({"type": "array", "items": one_of(crate::access::duo::KNOWN_MODIFIERS)});
    let diseases =
        |min: usize| json!({"type": "array", "items": one_of(&v.diseases), "minItems": min});
    json!({"oneOf": [
        {
            "type": "object",
            "properties": {"permission": one_of(["GRU", "HMB"]), "modifiers": modifiers, "diseases": diseases(0)},
            "required": ["permission"],
            "additionalProperties": false
        },
        {
            "type": "object",
            "properties": {"permission": one_of(["DS"]), "modifiers": modifiers, "diseases": diseases(1)},
            "required": ["permission", "diseases"],
            "additionalProperties": false
        }
    ]})
}

/// A committee member's vote: conditions come with
/// `approve_with_conditions` only, and then at least one.
pub(super) fn vote() -> Value {
    let condition = json!({"oneOf": [
        {"type": "object", "properties": {"code": one_of(["TS"]), "months": integer(1, 120)}, "required": ["code", "months"], "additionalProperties": false},
        {"type": "object", "properties": {"code": one_of(["MOR"]), "until": date()}, "required": ["code", "until"], "additionalProperties": false},
        {"type": "object", "properties": {"code": one_of(["PUB", "RTN"])}, "required": ["code"], "additionalProperties": false}
    ]});
    json!({"oneOf": [
        {
            "type": "object",
            "properties": {"decision": one_of(["approve", "reject"]), "conditions": array(condition.clone(), 0, 0)},
            "required": ["decision"],
            "additionalProperties": false
        },
        {
            "type": "object",
            "properties": {"decision": one_of(["approve_with_conditions"]), "conditions": array(condition, 1, 64)},
            "required": ["decision", "conditions"],
            "additionalProperties": false
        }
    ]})
}

pub(super) fn object_location() -> [(&'static str, Value); 4] {
    use crate::api::samples::{MAX_URI, URI_SCHEMES};
    let schemes: Vec<String> = URI_SCHEMES
        .iter()
        .map(|s| crate::api::schema::literal(s))
        .collect();
    [
        (
            "uri",
            json!({
                "type": "string",
                "maxLength": MAX_URI,
                "pattern": format!(
                    r"^(?:{})[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
                    schemes.join("|")
                )
            }),
        ),
        ("size_bytes", integer(0, i64::MAX)),
        ("sha256", matching(&format!("^{}$", hex(64)))),
        (
            "format",
            one_of(crate::genome::DataFormat::ALL.iter().map(|f| f.as_str())),
        ),
    ]
}

pub(super) fn language() -> Value {
    one_of(crate::ledger::entry::Language::ALL.map(|l| l.as_str()))
}

/// A webhook receives notifications over TLS only.
pub(super) fn webhook_url() -> Value {
    json!({"type": "string", "pattern": "^https://", "maxLength": crate::app::webhooks::MAX_URL})
}

/// A consent document's text: plain, with lines and tabs, at most
/// [`MAX_TEXT`](crate::consent::document::MAX_TEXT) characters;
/// `required` texts have something besides white space.
pub(super) fn consent_text(required: bool) -> Value {
    let allowed = r"[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]";
    let visible = r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
    let pattern = if required {
        format!("^{allowed}*{visible}{allowed}*$")
    } else {
        format!("^{allowed}*$")
    };
    json!({"type": "string", "maxLength": crate::consent::document::MAX_TEXT, "pattern": pattern})
}
