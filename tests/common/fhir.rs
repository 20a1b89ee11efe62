//! A structural validator for HL7 FHIR R4 `Consent`, written from the R4
//! resource definition (hl7.org/fhir/R4/consent.html): allowed elements,
//! cardinalities, data types, required value sets, the rule that no element
//! may be empty, and the invariants ppc-1 (policy or policyRule) and ppc-3
//! (research consent names the patient).

use serde_json::{Map, Value};

type Errors = Vec<String>;

#[derive(Clone, Copy)]
enum Card {
    /// 0..1
    Opt,
    /// 1..1
    One,
    /// 0..*
    Many,
    /// 1..*
    OneOrMore,
}

#[derive(Clone, Copy)]
enum Kind {
    Id,
    Code(&'static [&'static str]),
    AnyCode,
    Str,
    Uri,
    DateTime,
    Bool,
    CodeableConcept,
    Coding,
    Reference,
    Identifier,
    Period,
    Attachment,
    Meta,
    Narrative,
    Extension,
    Policy,
    Verification,
    Provision,
    ProvisionActor,
    ProvisionData,
    Resource,
}

const CONSENT: &[(&str, Card, Kind)] = &[
    ("resourceType", Card::One, Kind::Str),
    ("id", Card::Opt, Kind::Id),
    ("meta", Card::Opt, Kind::Meta),
    ("implicitRules", Card::Opt, Kind::Uri),
    ("language", Card::Opt, Kind::AnyCode),
    ("text", Card::Opt, Kind::Narrative),
    ("contained", Card::Many, Kind::Resource),
    ("extension", Card::Many, Kind::Extension),
    ("modifierExtension", Card::Many, Kind::Extension),
    ("identifier", Card::Many, Kind::Identifier),
    (
        "status",
        Card::One,
        Kind::Code(&[
            "draft",
            "proposed",
            "active",
            "rejected",
            "inactive",
            "entered-in-error",
        ]),
    ),
    ("scope", Card::One, Kind::CodeableConcept),
    ("category", Card::OneOrMore, Kind::CodeableConcept),
    ("patient", Card::Opt, Kind::Reference),
    ("dateTime", Card::Opt, Kind::DateTime),
    ("performer", Card::Many, Kind::Reference),
    ("organization", Card::Many, Kind::Reference),
    ("sourceAttachment", Card::Opt, Kind::Attachment),
    ("sourceReference", Card::Opt, Kind::Reference),
    ("policy", Card::Many, Kind::Policy),
    ("policyRule", Card::Opt, Kind::CodeableConcept),
    ("verification", Card::Many, Kind::Verification),
    ("provision", Card::Opt, Kind::Provision),
];

const PROVISION: &[(&str, Card, Kind)] = &[
    ("id", Card::Opt, Kind::Str),
    ("extension", Card::Many, Kind::Extension),
    ("modifierExtension", Card::Many, Kind::Extension),
    ("type", Card::Opt, Kind::Code(&["deny", "permit"])),
    ("period", Card::Opt, Kind::Period),
    ("actor", Card::Many, Kind::ProvisionActor),
    ("action", Card::Many, Kind::CodeableConcept),
    ("securityLabel", Card::Many, Kind::Coding),
    ("purpose", Card::Many, Kind::Coding),
    ("class", Card::Many, Kind::Coding),
    ("code", Card::Many, Kind::CodeableConcept),
    ("dataPeriod", Card::Opt, Kind::Period),
    ("data", Card::Many, Kind::ProvisionData),
    ("provision", Card::Many, Kind::Provision),
];

fn fields(kind: Kind) -> Option<&'static [(&'static str, Card, Kind)]> {
    const CODEABLE: &[(&str, Card, Kind)] = &[
        ("coding", Card::Many, Kind::Coding),
        ("text", Card::Opt, Kind::Str),
    ];
    const CODING: &[(&str, Card, Kind)] = &[
        ("system", Card::Opt, Kind::Uri),
        ("version", Card::Opt, Kind::Str),
        ("code", Card::Opt, Kind::AnyCode),
        ("display", Card::Opt, Kind::Str),
        ("userSelected", Card::Opt, Kind::Bool),
    ];
    const REFERENCE: &[(&str, Card, Kind)] = &[
        ("reference", Card::Opt, Kind::Str),
        ("type", Card::Opt, Kind::Uri),
        ("identifier", Card::Opt, Kind::Identifier),
        ("display", Card::Opt, Kind::Str),
    ];
    const IDENTIFIER: &[(&str, Card, Kind)] = &[
        (
            "use",
            Card::Opt,
            Kind::Code(&["usual", "official", "temp", "secondary", "old"]),
        ),
        ("type", Card::Opt, Kind::CodeableConcept),
        ("system", Card::Opt, Kind::Uri),
        ("value", Card::Opt, Kind::Str),
        ("period", Card::Opt, Kind::Period),
        ("assigner", Card::Opt, Kind::Reference),
    ];
    const PERIOD: &[(&str, Card, Kind)] = &[
        ("start", Card::Opt, Kind::DateTime),
        ("end", Card::Opt, Kind::DateTime),
    ];
    const POLICY: &[(&str, Card, Kind)] = &[
        ("id", Card::Opt, Kind::Str),
        ("authority", Card::Opt, Kind::Uri),
        ("uri", Card::Opt, Kind::Uri),
    ];
    const ACTOR: &[(&str, Card, Kind)] = &[
        ("role", Card::One, Kind::CodeableConcept),
        ("reference", Card::One, Kind::Reference),
    ];
    const DATA: &[(&str, Card, Kind)] = &[
        (
            "meaning",
            Card::One,
            Kind::Code(&["instance", "related", "dependents", "authoredby"]),
        ),
        ("reference", Card::One, Kind::Reference),
    ];
    const VERIFICATION: &[(&str, Card, Kind)] = &[
        ("verified", Card::One, Kind::Bool),
        ("verifiedWith", Card::Opt, Kind::Reference),
        ("verificationDate", Card::Opt, Kind::DateTime),
    ];
    match kind {
        Kind::CodeableConcept => Some(CODEABLE),
        Kind::Coding => Some(CODING),
        Kind::Reference => Some(REFERENCE),
        Kind::Identifier => Some(IDENTIFIER),
        Kind::Period => Some(PERIOD),
        Kind::Policy => Some(POLICY),
        Kind::ProvisionActor => Some(ACTOR),
        Kind::ProvisionData => Some(DATA),
        Kind::Verification => Some(VERIFICATION),
        Kind::Provision => Some(PROVISION),
        _ => None,
    }
}

fn check_primitive(path: &str, kind: Kind, v: &Value, errors: &mut Errors) {
    let s = match v {
        Value::String(s) => s,
        Value::Bool(_) if matches!(kind, Kind::Bool) => return,
        _ if matches!(
            kind,
            Kind::Meta | Kind::Narrative | Kind::Extension | Kind::Attachment | Kind::Resource
        ) =>
        {
            if !v.is_object() {
                errors.push(format!("{path}: must be an object"));
            }
            return;
        }
        _ => {
            errors.push(format!("{path}: must be a string"));
            return;
        }
    };
    if s.is_empty() || s.trim() != s {
        errors.push(format!("{path}: FHIR strings may not be empty or padded"));
    }
    match kind {
        Kind::Id
            if !(1..=64).contains(&s.len())
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') =>
        {
            errors.push(format!("{path}: `{s}` is not a FHIR id"))
        }
        Kind::Code(allowed) if !allowed.contains(&s.as_str()) => {
            errors.push(format!("{path}: `{s}` not in {allowed:?}"))
        }
        Kind::AnyCode if s.chars().any(char::is_whitespace) && s.contains("  ") => {
            errors.push(format!("{path}: bad code"))
        }
        // URIs may be relative (Reference.type `Patient` is relative to the FHIR base).
        Kind::Uri if s.chars().any(char::is_whitespace) => {
            errors.push(format!("{path}: `{s}` is not a URI"))
        }
        Kind::DateTime
            if chrono::DateTime::parse_from_rfc3339(s).is_err()
                && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err() =>
        {
            errors.push(format!("{path}: `{s}` is not a dateTime"))
        }
        _ => {}
    }
}

fn check_object(
    path: &str,
    obj: &Map<String, Value>,
    spec: &[(&str, Card, Kind)],
    errors: &mut Errors,
) {
    if obj.is_empty() {
        errors.push(format!("{path}: FHIR elements may not be empty"));
    }
    for key in obj.keys() {
        if !spec.iter().any(|(name, _, _)| name == key) {
            errors.push(format!("{path}.{key}: not an element of this type"));
        }
    }
    for (name, card, kind) in spec {
        let child = format!("{path}.{name}");
        match (obj.get(*name), card) {
            (None, Card::One | Card::OneOrMore) => errors.push(format!("{child}: required")),
            (None, _) => {}
            (Some(Value::Array(items)), Card::Many | Card::OneOrMore) => {
                if items.is_empty() {
                    errors.push(format!("{child}: arrays may not be empty"));
                }
                for (i, item) in items.iter().enumerate() {
                    check_value(&format!("{child}[{i}]"), *kind, item, errors);
                }
            }
            (Some(_), Card::Many | Card::OneOrMore) => {
                errors.push(format!("{child}: must be an array"))
            }
            (Some(Value::Array(_)), _) => errors.push(format!("{child}: must not be an array")),
            (Some(v), _) => check_value(&child, *kind, v, errors),
        }
    }
}

fn check_value(path: &str, kind: Kind, v: &Value, errors: &mut Errors) {
    match fields(kind) {
        Some(spec) => match v.as_object() {
            Some(obj) => check_object(path, obj, spec, errors),
            None => errors.push(format!("{path}: must be an object")),
        },
        None => check_primitive(path, kind, v, errors),
    }
}

/// Every structural problem of `resource` as an R4 Consent.
pub fn validate_r4_consent(resource: &Value) -> Errors {
    let mut errors = Vec::new();
    let Some(obj) = resource.as_object() else {
        return vec!["not a JSON object".into()];
    };
    if obj.get("resourceType") != Some(&Value::String("Consent".into())) {
        errors.push("resourceType must be Consent".into());
    }
    check_object("Consent", obj, CONSENT, &mut errors);
    if obj.get("sourceAttachment").is_some() && obj.get("sourceReference").is_some() {
        errors.push("Consent.source[x]: only one choice allowed".into());
    }
    if obj.get("policy").is_none() && obj.get("policyRule").is_none() {
        errors.push("ppc-1: Either a Policy or PolicyRule".into());
    }
    let research = obj["scope"]["coding"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["code"] == "research"));
    if research && obj.get("patient").is_none() {
        errors.push("ppc-3: IF Scope=research, there must be a patient".into());
    }
    errors
}
