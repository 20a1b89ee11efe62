//! What the OpenAPI description says beyond a handler's success: who may
//! call each operation, and every refusal it can answer, with its status
//! and codes.
//!
//! A handler's `#[utoipa::path]` describes what its operation takes and
//! returns when it succeeds. Its refusals are completed here, in one table,
//! from two sources: what every operation of a kind can be refused for (an
//! authenticated route and its token, a JSON body, an identifier in the
//! path, a query, an `Idempotency-Key`, the storage behind it), and each
//! operation's own codes in [`OPERATIONS`]. Every problem response names
//! its codes as an `enum` on `code`, so a client, or a fuzzer checking
//! answers against the description, knows every code it can meet.

mod fields;
mod shapes;

pub use shapes::Vocabulary;

use super::problem::{ApiError, PROBLEM_JSON};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone; a token is not read.
    Public,
    /// Anyone; a token, when sent, is verified and may show more (drafts
    /// to the governance body).
    TokenOptional,
    /// A bearer token is required.
    Token,
}

/// Whether an operation takes an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    None,
    /// A retry under the same key replays the first answer.
    Optional,
    /// Every request names one (consent recording: a hospital's system
    /// must be able to retry without recording twice).
    Required,
}

/// One operation, by its `operationId` (the handler's name).
#[derive(Debug)]
struct Operation {
    id: &'static str,
    access: Access,
    key: Key,
    /// Reads or writes the database, so it answers `503` while the
    /// database is away.
    storage: bool,
    /// The refusals this operation has of its own, beyond those of its
    /// kind.
    codes: &'static [&'static str],
}

const fn op(id: &'static str) -> Operation {
    Operation {
        id,
        access: Access::Token,
        key: Key::None,
        storage: true,
        codes: &[],
    }
}

impl Operation {
    const fn public(self) -> Self {
        Operation {
            access: Access::Public,
            ..self
        }
    }
    const fn token_optional(self) -> Self {
        Operation {
            access: Access::TokenOptional,
            ..self
        }
    }
    const fn key(self, key: Key) -> Self {
        Operation { key, ..self }
    }
    const fn without_storage(self) -> Self {
        Operation {
            storage: false,
            ..self
        }
    }
    const fn codes(self, codes: &'static [&'static str]) -> Self {
        Operation { codes, ..self }
    }
}

/// What a release or a visa is admitted under (`app::releases::admission`).
macro_rules! admission_codes {
    ($($more:literal),*) => {
        &[
            "not_a_member",
            "application_not_approved",
            "agreement_expired",
            "agreement_suspended",
            "agreement_revoked",
            "agreement_not_started",
            "attestation_missing",
            "attestation_expired",
            "agreement_text_missing",
            "agreement_not_accepted",
            "agreement_outdated",
            "rate_limited"
            $(, $more)*
        ]
    };
}

/// Every operation the API documents. A test checks that this table and
/// the routes name the same operations.
const OPERATIONS: &[Operation] = &[
    // operations
    op("healthz").public().without_storage(),
    op("readyz").public().without_storage(),
    op("metrics").public(),
    op("openapi_json").public().without_storage(),
    op("jwks").public().without_storage(),
    // documents
    op("list_versions").token_optional(),
    op("get_version").token_optional(),
    op("create_draft").codes(&["version_conflict"]),
    op("update_draft").codes(&["version_immutable"]),
    op("publish_version").codes(&["version_immutable", "validation_failed"]),
    // consents
    op("register_consent")
        .key(Key::Required)
        .codes(&["unknown_document_version", "document_version_not_active"]),
    op("change_consent").key(Key::Required).codes(&[
        "unknown_document_version",
        "document_version_not_active",
        "no_active_consent",
    ]),
    op("withdraw_consent")
        .key(Key::Required)
        .codes(&["no_active_consent"]),
    op("read_consent"),
    op("list_events"),
    op("export_fhir"),
    op("lookup_patient").codes(&["not_found"]),
    op("update_patient_status"),
    op("issue_enrollment_code"),
    op("reconsent_tasks"),
    // samples
    op("register_sample").codes(&[
        "unknown_patient",
        "sample_conflict",
        "object_checksum_conflict",
        "object_uri_in_use",
    ]),
    op("get_sample").codes(&["invalid_genome_id"]),
    op("correct_object").codes(&[
        "invalid_genome_id",
        "object_checksum_conflict",
        "object_uri_in_use",
    ]),
    op("patient_samples"),
    op("list_centers"),
    op("authorize_center"),
    op("revoke_center"),
    // recontact
    op("list_requests"),
    op("open_request").key(Key::Optional).codes(&[
        "invalid_genome_id",
        "not_found",
        "recontact_requires_committee",
        "recontact_not_permitted",
    ]),
    op("get_request"),
    op("approve").key(Key::Optional).codes(&[
        "duplicate_approver",
        "recontact_closed",
        "recontact_not_permitted",
    ]),
    op("reject")
        .key(Key::Optional)
        .codes(&["duplicate_approver", "recontact_closed"]),
    op("unseal").key(Key::Optional).codes(&[
        "insufficient_approvals",
        "recontact_closed",
        "recontact_not_permitted",
        "vault_integrity_failure",
    ]),
    // enquiries
    op("list_enquiries"),
    op("open_enquiry").codes(&["vault_integrity_failure"]),
    op("answer_enquiry")
        .key(Key::Optional)
        .codes(&["vault_integrity_failure"]),
    // log
    op("checkpoint").public().codes(&["not_found"]),
    op("keys").public().without_storage(),
    op("inclusion").public().codes(&["proof_unavailable"]),
    op("consistency").public().codes(&["proof_unavailable"]),
    op("audit_log"),
    op("screening"),
    op("screening_reports"),
    // portal
    op("enroll")
        .public()
        .codes(&["enrollment_code_invalid", "rate_limited"]),
    op("sign_in")
        .public()
        .codes(&["invalid_credentials", "rate_limited"]),
    op("my_access_log"),
    op("my_consents"),
    op("my_enquiries").codes(&["vault_integrity_failure"]),
    op("send_enquiry").key(Key::Optional),
    op("my_notifications"),
    op("my_preferences"),
    op("set_my_preferences"),
    op("my_webhooks"),
    op("add_my_webhook").key(Key::Optional),
    op("remove_my_webhook"),
    op("my_webhook_deliveries"),
    op("add_hospital_webhook").key(Key::Optional),
    op("hospital_webhook_deliveries"),
    // data access
    op("verify_organization"),
    op("record_attestation"),
    op("list_datasets"),
    op("create_dataset").key(Key::Optional),
    op("add_dataset_samples").codes(&["invalid_genome_id"]),
    op("publish_agreement_text").key(Key::Optional),
    op("current_agreement_text").codes(&["agreement_text_missing"]),
    op("agreement_text"),
    op("accept_agreement").key(Key::Optional).codes(&[
        "not_a_member",
        "attestation_missing",
        "attestation_expired",
        "agreement_text_missing",
        "agreement_text_mismatch",
    ]),
    op("sanction_agreement").codes(&["agreement_revoked"]),
    op("list_applications"),
    op("submit_application").key(Key::Optional).codes(&[
        "purpose_forbidden",
        "organization_not_verified",
        "attestation_missing",
        "attestation_expired",
    ]),
    op("get_application"),
    op("vote").key(Key::Optional).codes(&[
        "application_decided",
        "conflict_of_interest",
        "conditions_required",
    ]),
    op("create_release")
        .key(Key::Optional)
        .codes(admission_codes!["unknown_audience", "cohort_below_minimum"]),
    op("releases_of_application").codes(&["not_a_member"]),
    op("get_release").codes(&["not_a_member"]),
    op("manifest").codes(&["not_a_member"]),
    op("recalls").codes(&["not_a_member"]),
    op("resolve_handle").codes(&[
        "handle_invalid",
        "handle_expired",
        "handle_wrong_audience",
        "handle_revoked",
    ]),
    op("issue_visas")
        .key(Key::Optional)
        .codes(admission_codes![]),
    op("visas_issued").codes(&["not_a_member"]),
    op("recall_webhooks").codes(&["not_a_member"]),
    op("add_recall_webhook")
        .key(Key::Optional)
        .codes(&["not_a_member"]),
    op("remove_recall_webhook").codes(&["not_a_member"]),
    op("recall_webhook_deliveries").codes(&["not_a_member"]),
    op("approved_uses").public(),
    op("processing_times").public(),
];

/// The codes every authenticated operation can answer with `401`.
const TOKEN_REFUSALS: &[&str] = &[
    "missing_token",
    "invalid_token",
    "token_expired",
    "untrusted_issuer",
    "client_certificate_mismatch",
];

/// The response header a retried request's replayed answer carries.
const REPLAYED: &str = "Idempotent-Replayed";

/// Completes `doc` (the generated description, as JSON) with every
/// operation's security requirement, `Idempotency-Key` and refusals. Returns
/// the operations the table does not know (none, or a test fails).
pub fn complete(doc: &mut Value, vocabulary: &Vocabulary) -> Vec<String> {
    let catalogue = Catalogue::new();
    let mut unknown = refine(doc, vocabulary);
    identify_path_parameters(doc);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return unknown;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let id = operation
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            match OPERATIONS.iter().find(|o| o.id == id) {
                Some(known) => describe(operation, known, &catalogue),
                None => unknown.push(id),
            }
        }
    }
    unknown
}

/// Applies [`fields::refinements`]; returns those whose target is missing.
fn refine(doc: &mut Value, vocabulary: &Vocabulary) -> Vec<String> {
    let mut missing = Vec::new();
    for (target, schema) in fields::refinements(vocabulary) {
        let slot = match target {
            fields::Target::Component(name) => {
                doc.pointer_mut(&format!("/components/schemas/{name}"))
            }
            fields::Target::Property(name, property) => {
                doc.pointer_mut(&format!("/components/schemas/{name}/properties/{property}"))
            }
            fields::Target::Parameter(operation, name) => parameter(doc, operation, name),
        };
        match slot {
            Some(slot) => {
                // Keep what the generated schema says of the field in words.
                let description = slot.get("description").cloned();
                *slot = schema;
                if let (Some(d), Some(o)) = (description, slot.as_object_mut()) {
                    o.entry("description").or_insert(d);
                }
            }
            None => missing.push(format!("{target}")),
        }
    }
    missing
}

/// Path parameters no refinement names are identifiers: any characters
/// but control characters.
fn identify_path_parameters(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for parameter in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("parameters").and_then(Value::as_array_mut))
        .flatten()
        .filter(|p| p["in"] == "path")
    {
        let schema = &mut parameter["schema"];
        if schema.get("type") == Some(&json!("string"))
            && !["pattern", "enum", "format"]
                .iter()
                .any(|k| schema.get(*k).is_some())
        {
            schema["pattern"] = fields::path_identifier()["pattern"].clone();
        }
    }
}

/// The schema of parameter `name` of operation `operation`.
fn parameter<'a>(doc: &'a mut Value, operation: &str, name: &str) -> Option<&'a mut Value> {
    doc.get_mut("paths")?
        .as_object_mut()?
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .find(|op| op["operationId"] == operation)?
        .get_mut("parameters")?
        .as_array_mut()?
        .iter_mut()
        .find(|p| p["name"] == name)?
        .get_mut("schema")
}

/// The operation IDs of the table, for the test that it and the routes
/// agree.
pub fn operation_ids() -> Vec<&'static str> {
    OPERATIONS.iter().map(|o| o.id).collect()
}

/// Every problem code with its status and title.
struct Catalogue(BTreeMap<&'static str, (u16, &'static str)>);

impl Catalogue {
    fn new() -> Self {
        Catalogue(
            ApiError::catalogue()
                .iter()
                .map(|e| {
                    let (status, code, title) = e.parts();
                    (code, (status.as_u16(), title))
                })
                .collect(),
        )
    }

    fn status(&self, code: &str) -> u16 {
        self.0.get(code).map_or(500, |(status, _)| *status)
    }

    fn title(&self, code: &str) -> &'static str {
        self.0.get(code).map_or("", |(_, title)| title)
    }
}

fn describe(operation: &mut Value, known: &Operation, catalogue: &Catalogue) {
    let has = |place: &str, op: &Value| {
        op.get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == place))
    };
    let in_path = has("path", operation);
    let in_query = has("query", operation);
    let body = operation.get("requestBody").cloned();

    let mut codes: BTreeSet<&str> = known.codes.iter().copied().collect();
    match known.access {
        Access::Public => {
            operation["security"] = json!([]);
        }
        Access::TokenOptional => {
            operation["security"] = json!([{}, {"bearer": []}]);
            codes.extend(TOKEN_REFUSALS.iter().filter(|c| **c != "missing_token"));
        }
        Access::Token => {
            codes.extend(TOKEN_REFUSALS);
            codes.insert("forbidden");
        }
    }
    if body.is_some() {
        codes.extend([
            "malformed_json",
            "payload_too_large",
            "unsupported_media_type",
        ]);
        codes.insert("validation_failed");
    }
    if in_path {
        codes.insert("not_found");
    }
    if in_query {
        codes.insert("validation_failed");
    }
    if known.storage {
        codes.insert("service_unavailable");
    }
    codes.insert("uri_too_long");
    if known.key != Key::None {
        codes.extend(["idempotency_key_reused", "validation_failed"]);
        add_key_parameter(operation, known.key);
        declare_replay(operation);
    }
    if known.key == Key::Required {
        codes.insert("idempotency_key_required");
    }

    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for code in codes {
        by_status
            .entry(catalogue.status(code))
            .or_default()
            .push(code);
    }
    let Some(responses) = operation["responses"].as_object_mut() else {
        return;
    };
    for (status, codes) in by_status {
        let key = status.to_string();
        if responses
            .get(&key)
            .is_some_and(|r| r.pointer("/content/application~1problem+json").is_none())
        {
            // The operation answers this status with a body of its own
            // (`/readyz` says why it is not ready).
            continue;
        }
        responses.insert(key, problem_response(status, &codes, catalogue));
    }
}

/// A problem response naming its codes.
fn problem_response(status: u16, codes: &[&str], catalogue: &Catalogue) -> Value {
    let listed: Vec<String> = codes
        .iter()
        .map(|c| format!("`{c}`: {}", catalogue.title(c)))
        .collect();
    let mut response = json!({
        "description": listed.join("; "),
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Problem"},
                        {"type": "object", "properties": {"code": {"type": "string", "enum": codes}}}
                    ]
                }
            }
        }
    });
    let header = |description: &str, required: bool, schema: Value| json!({"description": description, "required": required, "schema": schema});
    let mut headers = Map::new();
    if status == 401 && codes.iter().any(|c| TOKEN_REFUSALS.contains(c)) {
        headers.insert(
            "WWW-Authenticate".into(),
            header(
                "`Bearer`, when the token is missing or not accepted",
                false,
                json!({"type": "string"}),
            ),
        );
    }
    if status == 429 || status == 503 {
        headers.insert(
            "Retry-After".into(),
            header(
                "Seconds to wait before trying again",
                true,
                json!({"type": "integer", "minimum": 0}),
            ),
        );
    }
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    response
}

fn add_key_parameter(operation: &mut Value, key: Key) {
    let Some(operation) = operation.as_object_mut() else {
        return;
    };
    let parameters = operation.entry("parameters").or_insert_with(|| json!([]));
    let Some(parameters) = parameters.as_array_mut() else {
        return;
    };
    parameters.retain(|p| p["name"] != "Idempotency-Key");
    let description = match key {
        Key::Required => "Required, unique per organization: a retry with the same request returns the first answer (`200`, `Idempotent-Replayed: true`) and writes nothing; another request under the same key is refused (`409 idempotency_key_reused`).",
        _ => "Optional, unique per organization: a retry with the same request returns the first answer (`200`, `Idempotent-Replayed: true`) and writes nothing, notifies no one; another request under the same key is refused (`409 idempotency_key_reused`).",
    };
    parameters.push(json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": key == Key::Required,
        "description": description,
        "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"}
    }));
}

/// A retried request's answer: the first one, replayed with `200` and
/// `Idempotent-Replayed: true` (a creating operation's first answer is
/// `201`).
fn declare_replay(operation: &mut Value) {
    let responses = &mut operation["responses"];
    if responses.get("200").is_none() {
        let Some(mut created) = responses.get("201").cloned() else {
            return;
        };
        created["description"] =
            json!("The first answer, replayed to a retry under the same Idempotency-Key");
        responses["200"] = created;
    }
    responses["200"]["headers"] = json!({
        REPLAYED: {
            "description": "`true` when this is a replayed first answer",
            "required": false,
            "schema": {"type": "string", "enum": ["true"]}
        }
    });
}

#[cfg(test)]
mod tests;
