//! Export of a patient's consent as an HL7 FHIR R4 `Consent` resource.
//!
//! The base provision denies; one nested provision per scope item of the
//! version in force permits or denies it, coded with the item key and its
//! GA4GH DUO terms. `policy.uri` is the canonical URI of the document version.

use super::ids::DocumentFamily;
use super::item_catalog::{ItemCatalog, DUO_SYSTEM};
use super::state::{ConsentSnapshot, ConsentStatus, Decision};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

pub const SCOPE_ITEM_SYSTEM: &str = "urn:genomegate:scope-item";
pub const PSEUDONYM_SYSTEM: &str = "urn:genomegate:patient-pseudonym";
pub const ORGANIZATION_SYSTEM: &str = "urn:genomegate:organization";

/// Everything the export needs besides the derived state.
#[derive(Debug, Clone)]
pub struct FhirConsentContext<'a> {
    pub patient_pseudonym: &'a str,
    pub family: DocumentFamily,
    pub hospital_org: &'a str,
    /// Canonical URI of the version in force.
    pub policy_uri: String,
    /// When the latest event in force was signed.
    pub signed_at: DateTime<Utc>,
    /// `Some(relationship)` when a proxy or guardian signed the latest event.
    pub proxy_relationship: Option<&'a str>,
}

pub fn export_consent(
    ctx: &FhirConsentContext<'_>,
    snapshot: &ConsentSnapshot,
    catalog: &ItemCatalog,
) -> Value {
    let status = match snapshot.status {
        ConsentStatus::Active => "active",
        ConsentStatus::Withdrawn => "inactive",
        ConsentStatus::None => "proposed",
    };
    let provisions: Vec<Value> = snapshot
        .items
        .iter()
        .map(|item| {
            let mut codings = vec![json!({
                "system": SCOPE_ITEM_SYSTEM,
                "code": item.key.as_str(),
                "display": catalog.get(&item.key).map(|c| c.label_en.as_str()).unwrap_or(item.key.as_str()),
            })];
            if let Some(entry) = catalog.get(&item.key) {
                let duo = match item.decision {
                    Decision::Permit => &entry.when_permitted,
                    Decision::Deny => &entry.when_denied,
                };
                codings.extend(duo.iter().map(|code| json!({"system": DUO_SYSTEM, "code": code})));
            }
            json!({
                "type": item.decision.as_str(),
                "code": [{"coding": codings}],
            })
        })
        .collect();

    let family_code = match ctx.family {
        DocumentFamily::Cancer => "cancer",
        DocumentFamily::RareDisease => "rare",
    };
    // FHIR ids are at most 64 of [A-Za-z0-9-.].
    let id_stem: String = ctx
        .patient_pseudonym
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(48)
        .collect();
    let performer = match ctx.proxy_relationship {
        None => {
            json!({"type": "Patient", "identifier": {"system": PSEUDONYM_SYSTEM, "value": ctx.patient_pseudonym}})
        }
        Some(rel) => {
            json!({"type": "RelatedPerson", "display": format!("proxy or guardian ({rel})")})
        }
    };
    json!({
        "resourceType": "Consent",
        "id": format!("{id_stem}.{family_code}"),
        "status": status,
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "research",
            "display": "Research",
        }]},
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "RESEARCH",
            "display": "research information use",
        }]}],
        "patient": {"identifier": {"system": PSEUDONYM_SYSTEM, "value": ctx.patient_pseudonym}},
        "dateTime": ctx.signed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "performer": [performer],
        "organization": [{"identifier": {"system": ORGANIZATION_SYSTEM, "value": ctx.hospital_org}}],
        "policy": [{"uri": ctx.policy_uri}],
        "provision": {
            "type": "deny",
            "provision": provisions,
        },
    })
}
