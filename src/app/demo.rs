//! `genomegate serve --demo` (development only): a consent document, a
//! patient of a demo hospital who consented, a few accesses to their data,
//! and a fresh enrollment link, so a newcomer sees a populated patient
//! portal within a minute. Every step is an ordinary action of this room,
//! signed by development tokens' roles; running it again reuses what is
//! there and prints a new link.

use super::consents::{self, Grant, Retry, Signature, SignerKind};
use super::{documents, enrollment, AppError, Context};
use crate::auth::{Caller, Principal, Role};
use crate::consent::document::DocumentContent;
use crate::consent::{Decision, DocumentFamily, DocumentVersionId};
use crate::pseudonym::{LocalPatientId, PatientPseudonym};

/// The demo's consent document: the example the README's tour uses.
const DOCUMENT: &str = include_str!("../../docs/examples/cancer-v1.json");
pub const HOSPITAL: &str = "demo-hospital";
const LOCAL_PATIENT: &str = "DEMO-0001";

fn caller(org: &str, subject: &str, role: Role) -> Caller {
    Caller::User(Principal {
        subject: subject.to_owned(),
        org: org.to_owned(),
        roles: vec![role],
        patient_ref: None,
    })
}

/// Seeds the demo and returns the enrollment link to open.
pub fn seed(ctx: &Context) -> Result<String, AppError> {
    let family = DocumentFamily::Cancer;
    let content: DocumentContent = serde_json::from_str(DOCUMENT).map_err(AppError::internal)?;
    // Everything agreed but use by companies, so the page shows both.
    let decisions = content
        .items
        .iter()
        .map(|item| {
            let decision = if item.key.as_str() == "secondary_use_industry" {
                Decision::Deny
            } else {
                Decision::Permit
            };
            (item.key.clone(), decision)
        })
        .collect();
    let version = match documents::version_in_force_id(ctx, family)? {
        Some(id) => id,
        None => {
            let officer = caller("governance", "demo-officer", Role::ConsentAdmin);
            let draft = documents::create_draft(ctx, &officer, family, content)?;
            let id = DocumentVersionId::new(family, draft.number);
            documents::publish(ctx, &officer, id)?;
            id
        }
    };
    let staff = caller(HOSPITAL, "demo-nurse", Role::HospitalStaff);
    let recorded = consents::grant(
        ctx,
        &staff,
        Grant {
            local_patient_id: LocalPatientId::parse(LOCAL_PATIENT).map_err(AppError::internal)?,
            version,
            decisions,
            signature: Signature {
                signer: SignerKind::Patient,
                relationship: None,
                explained_by: "demo-nurse".into(),
                signed_at: ctx.now(),
                form_hash: format!("sha256:{}", "0".repeat(64)),
            },
            retry: Retry {
                key: "demo-seed".into(),
                as_sent: serde_json::json!({ "demo": LOCAL_PATIENT }),
            },
        },
    )?;
    let patient = PatientPseudonym::parse(&recorded.event.patient_ref)
        .ok_or_else(|| AppError::internal("pseudonym"))?;
    // A first grant carries a code; a second run issues another.
    let code = match recorded.event.enrollment_code {
        Some(code) => code,
        None => enrollment::reissue(ctx, &staff, &patient)?,
    };
    // An access for the history to show.
    consents::read(ctx, &staff, &patient, family, None)?;
    Ok(match &ctx.patients.enrollment_link {
        Some(_) => code.qr_payload,
        None => format!("{}/portal/enroll#code={}", ctx.public_base_url, code.code),
    })
}
