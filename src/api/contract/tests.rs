use super::*;
use actix_web::App;
use utoipa_actix_web::AppExt;

fn vocabulary() -> Vocabulary {
    Vocabulary {
        forbidden_purposes: vec!["insurance_underwriting".into()],
        diseases: vec!["C50".into(), "C34".into()],
        scope_items: vec!["recontact".into()],
        audiences: vec!["genome-store.example".into()],
    }
}

/// The description as served, with `vocabulary()`.
fn served() -> (Value, Vec<String>) {
    let (_, spec) = crate::api::with_routes(App::new().into_utoipa_app()).split_for_parts();
    let mut doc = serde_json::to_value(&spec).unwrap();
    let unknown = complete(&mut doc, &vocabulary());
    (doc, unknown)
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .iter()
                .map(move |(method, op)| (method.to_uppercase(), path.clone(), op))
        })
        .collect()
}

#[test]
fn the_table_and_the_routes_name_the_same_operations_and_fields() {
    let (doc, unknown) = served();
    assert!(unknown.is_empty(), "not in the routes: {unknown:?}");
    let mut routed: Vec<String> = operations(&doc)
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    routed.sort();
    let mut table: Vec<String> = operation_ids().iter().map(|s| s.to_string()).collect();
    table.sort();
    assert_eq!(routed, table);
}

#[test]
fn every_code_of_the_table_is_one_the_service_sends() {
    let catalogue = Catalogue::new();
    for op in OPERATIONS {
        for code in op.codes {
            assert!(
                catalogue.0.contains_key(code),
                "{}: `{code}` is no problem code",
                op.id
            );
        }
    }
}

/// Every code the problem table maps is in the catalogue the description
/// is written from (a code added to the table, and not there, would be
/// sent undocumented).
#[test]
fn the_catalogue_holds_every_code_of_the_problem_table() {
    let source = include_str!("../problem.rs");
    let catalogue = Catalogue::new();
    // The tables: `parts` (to `detail`), and `app_parts` and
    // `refusal_parts` (to the end).
    let table = format!(
        "{}{}",
        &source[source.find("pub fn parts(").unwrap()..source.find("fn detail(").unwrap()],
        &source[source.find("fn app_parts(").unwrap()..]
    );
    let codes: Vec<&str> = table
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(codes.len() > 50, "{codes:?}");
    for code in codes {
        assert!(catalogue.0.contains_key(code), "`{code}` is not catalogued");
    }
}

#[test]
fn authenticated_operations_document_401_and_public_ones_require_nothing() {
    let (doc, _) = served();
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap();
        let codes = |status: &str| -> Vec<String> {
            responses
                .get(status)
                .and_then(|r| {
                    r.pointer(
                        "/content/application~1problem+json/schema/allOf/1/properties/code/enum",
                    )
                })
                .map(|e| {
                    e.as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        match op.get("security") {
            Some(Value::Array(alternatives)) if alternatives.is_empty() => {
                assert!(
                    codes("401")
                        .iter()
                        .all(|c| !TOKEN_REFUSALS.contains(&c.as_str())),
                    "{method} {path}"
                );
            }
            _ => assert!(
                codes("401").contains(&"invalid_token".to_owned()),
                "{method} {path}"
            ),
        }
        assert!(
            codes("414").contains(&"uri_too_long".to_owned()),
            "{method} {path}"
        );
        if op.get("requestBody").is_some() {
            for (status, code) in [
                ("400", "malformed_json"),
                ("413", "payload_too_large"),
                ("415", "unsupported_media_type"),
                ("422", "validation_failed"),
            ] {
                assert!(
                    codes(status).contains(&code.to_owned()),
                    "{method} {path}: {status} {code}"
                );
            }
        }
    }
    let public: Vec<String> = operations(&doc)
        .into_iter()
        .filter(|(_, _, op)| op["security"] == json!([]))
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect();
    for expected in [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /v1/log/checkpoint",
        "POST /v1/portal/enroll",
        "POST /v1/portal/token",
        "GET /v1/transparency/approved-uses",
    ] {
        assert!(
            public.contains(&expected.to_owned()),
            "{expected} is not public: {public:?}"
        );
    }
}

/// Every `$ref` names a schema the document has.
#[test]
fn no_reference_dangles() {
    let (doc, _) = served();
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = &reference[..reference.find('"').unwrap()];
        let pointer = target.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "{target} dangles");
    }
}

/// A string a client sends is never just "a string": each states its rule
/// (a pattern, the values it takes, or a format).
#[test]
fn every_string_a_client_sends_states_its_rule() {
    let (doc, _) = served();
    let mut loose = Vec::new();
    for (method, path, op) in operations(&doc) {
        for parameter in op["parameters"].as_array().into_iter().flatten() {
            check(
                &doc,
                &parameter["schema"],
                &format!("{method} {path} {}", parameter["name"]),
                &mut loose,
                0,
            );
        }
        if let Some(body) = op.pointer("/requestBody/content/application~1json/schema") {
            check(&doc, body, &format!("{method} {path} body"), &mut loose, 0);
        }
    }
    assert!(
        loose.is_empty(),
        "strings without a rule:\n{}",
        loose.join("\n")
    );
}

fn check(doc: &Value, schema: &Value, at: &str, loose: &mut Vec<String>, depth: usize) {
    if depth > 12 {
        return;
    }
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let resolved = doc.pointer(target.trim_start_matches('#')).unwrap();
        return check(doc, resolved, &format!("{at} → {target}"), loose, depth + 1);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for (i, alternative) in schema[key].as_array().into_iter().flatten().enumerate() {
            check(
                doc,
                alternative,
                &format!("{at} {key}[{i}]"),
                loose,
                depth + 1,
            );
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            check(doc, property, &format!("{at}.{name}"), loose, depth + 1);
        }
    }
    for key in ["items", "additionalProperties", "propertyNames"] {
        if let Some(inner) = schema.get(key).filter(|v| v.is_object()) {
            check(doc, inner, &format!("{at} {key}"), loose, depth + 1);
        }
    }
    let is_string = match &schema["type"] {
        Value::String(t) => t == "string",
        Value::Array(ts) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    let stated = ["pattern", "enum", "format"]
        .iter()
        .any(|k| schema.get(*k).is_some());
    if is_string && !stated {
        loose.push(at.to_owned());
    }
}
