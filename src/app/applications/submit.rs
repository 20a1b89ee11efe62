//! Submitting a data-use application: DUO matching runs at once, and a
//! `deny` on any dataset rejects it with its rationale.

use super::*;
use crate::access::duo::{Applicant, DataUseTerms, MatchResult, Outcome};
use crate::app::gates::{application_for, principal};
use crate::app::idempotency::{fingerprint, Retry};
use crate::app::text::json;
use crate::app::Context;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;

/// Who acts for the matcher in an application's transitions.
const MATCHER_ACTOR: &str = "genomegate-duo-matcher";

/// A purpose as the applicant names it: a DUO code (`GRU`, `HMB`, `DS`,
/// `POA`, `MDS`) or the name of a purpose policy forbids, with diseases
/// for DS. Read by the action, because policy decides the forbidden names.
#[derive(Debug, Clone)]
pub struct PurposeNamed {
    pub code: String,
    pub diseases: Vec<String>,
}

/// A data-use application as submitted, its fields checked for shape.
#[derive(Debug, Clone)]
pub struct Submission {
    pub title: String,
    pub purpose: PurposeNamed,
    /// Dataset ids, each once.
    pub datasets: Vec<String>,
    /// Member researchers of the applicant organization; the submitter is
    /// always one.
    pub members: Vec<String>,
    /// Member researchers of other verified organizations.
    pub partner_members: Vec<Member>,
    pub ethics_ref: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub recipients_abroad: bool,
    /// Present when the applicant may retry (an `Idempotency-Key`).
    pub retry: Option<Retry>,
}

/// A submission's answer: the application, and whether it is an earlier
/// submission's under the same key.
pub struct Submitted {
    pub application: ApplicationView,
    pub replayed: bool,
}

/// The keyed hashes of a submission's `Idempotency-Key`, and the
/// fingerprint of the submission.
type SubmissionKey = (Vec<String>, String);

/// Reads a purpose. Forbidden purposes are refused by name before anything
/// else is read of it, with their own code; names match whatever their
/// case.
fn parse_purpose(ctx: &Context, named: &PurposeNamed) -> Result<ResearchPurpose, AppError> {
    if ctx.data_use.forbids(&named.code) {
        return Err(AppError::refused(
            Refusal::PurposeForbidden,
            format!("`{}` is forbidden by policy", named.code),
        ));
    }
    let purpose = match named.code.to_ascii_uppercase().as_str() {
        "GRU" => ResearchPurpose::General,
        "HMB" => ResearchPurpose::HealthMedicalBiomedical,
        "POA" => ResearchPurpose::PopulationAncestry,
        "MDS" => ResearchPurpose::MethodsDevelopment,
        "DS" => {
            if named.diseases.is_empty() {
                return Err(AppError::field(
                    "purpose.diseases",
                    "DS names at least one disease",
                ));
            }
            ResearchPurpose::DiseaseSpecific {
                diseases: named.diseases.clone(),
            }
        }
        _ => {
            return Err(AppError::field(
                "purpose.code",
                format!(
                    "GRU, HMB, DS, POA or MDS; forbidden purposes: {}",
                    ctx.data_use.purposes.forbidden.join(", ")
                ),
            ))
        }
    };
    if !matches!(purpose, ResearchPurpose::DiseaseSpecific { .. }) && !named.diseases.is_empty() {
        return Err(AppError::field(
            "purpose.diseases",
            "only DS names diseases",
        ));
    }
    Ok(purpose)
}

/// Submits a data-use application (researcher). DUO matching runs at once:
/// a `deny` on any dataset rejects the application with its rationale;
/// otherwise it goes to the review committee, `abstain` results included.
/// A retry under the same key returns the original application; another
/// submission under it is `idempotency_key_reused`.
pub fn submit(
    ctx: &Context,
    caller: &Caller,
    submission: Submission,
) -> Result<Submitted, AppError> {
    let p = principal(caller)?;
    let id = format!("app-{}", uuid::Uuid::new_v4());
    ctx.authorize(
        caller,
        Action::ApplicationSubmit,
        &Resource::Application {
            id: &id,
            org: &p.org,
            partner_orgs: &[],
        },
    )?;
    // The key's keyed hashes (one per key version; the first is stored) and
    // what the request asked for, so a retry is told from a reuse.
    let idempotency = match &submission.retry {
        Some(retry) => Some((
            ctx.keys.idempotency_tags(&p.org, &retry.key),
            submission_fingerprint(p, &retry.as_sent)?,
        )),
        None => None,
    };
    if let Some(earlier) = replay(ctx, caller, idempotency.as_ref())? {
        return Ok(earlier);
    }
    let declaration = declaration(ctx, p, submission)?;
    let today = crate::calendar::day_of(ctx.now());
    let now = ctx.now();
    let submitted = ctx.write(|conn| {
        let partner_orgs = declaration.partner_orgs();
        let member_orgs: Vec<&str> = std::iter::once(p.org.as_str())
            .chain(partner_orgs.iter().map(String::as_str))
            .collect();
        let registered = store::find_organizations(conn, &member_orgs)?;
        if let Some(unknown) = member_orgs
            .iter()
            .find(|org| !registered.iter().any(|r| r.org == **org))
        {
            return Err(AppError::refused(
                Refusal::OrganizationNotVerified,
                format!("{unknown} is not in the register of verified organizations"),
            ));
        }
        check_attestations(conn, &declaration.members_of(&p.org), today)?;
        // The register, not the applicant, says where the data goes.
        let abroad: Vec<&str> = registered
            .iter()
            .filter(|o| ctx.data_use.is_abroad(&o.country))
            .map(|o| o.org.as_str())
            .collect();
        if !abroad.is_empty() && !declaration.recipients_abroad {
            return Err(AppError::field(
                "recipients_abroad",
                format!(
                    "{} is registered outside {}: its members receive data abroad",
                    abroad.join(", "),
                    ctx.data_use.transfer.home_country
                ),
            ));
        }
        let rows = store::find_datasets(conn, &declaration.datasets)?;
        if rows.len() != declaration.datasets.len() {
            return Err(AppError::field(
                "datasets",
                "names a dataset that does not exist",
            ));
        }
        let applicant = Applicant {
            // Any industry member organization makes the use commercial.
            commercial: ctx
                .data_use
                .use_now(
                    UseKind::default(),
                    registered
                        .iter()
                        .map(|o| (o.kind.as_str(), o.country.as_str())),
                )
                .commercial,
            abroad: declaration.recipients_abroad,
        };
        let mut matching = Vec::with_capacity(rows.len());
        for row in &rows {
            let terms: DataUseTerms = parse_json(&row.terms)?;
            let result: MatchResult =
                duo::match_purpose(&declaration.purpose, applicant, &terms, &ctx.diseases);
            matching.push(DatasetMatch {
                dataset: row.id.clone(),
                outcome: match result.outcome {
                    Outcome::Approve => "approve",
                    Outcome::Abstain => "abstain",
                    Outcome::Deny => "deny",
                }
                .into(),
                rationale: result.rationale,
                required_conditions: result.required_conditions,
                matcher: result.matcher,
            });
        }
        let denied = matching.iter().any(|m| m.outcome == "deny");
        let row = ApplicationRow {
            id: id.clone(),
            org: p.org.clone(),
            submitted_by: p.subject.clone(),
            declaration: json(&declaration)?,
            commercial: applicant.commercial,
            matching: json(&matching)?,
            state: ApplicationState::UnderReview.as_str().into(),
            conditions: "[]".into(),
            submitted_at: now.naive_utc(),
            decided_at: None,
            access_started_at: None,
            idempotency_key: idempotency
                .as_ref()
                .and_then(|(tags, _)| tags.first().cloned()),
            request_hash: idempotency.as_ref().map(|(_, hash)| hash.clone()),
        };
        store::insert_application(conn, &row)?;
        if !partner_orgs.is_empty() {
            let orgs: Vec<&str> = partner_orgs.iter().map(String::as_str).collect();
            store::insert_partner_orgs(conn, &id, &orgs)?;
        }
        store::record_transition(conn, &id, "submitted", &p.subject, now.naive_utc())?;
        store::record_transition(
            conn,
            &id,
            ApplicationState::UnderReview.as_str(),
            &p.subject,
            now.naive_utc(),
        )?;
        if denied {
            store::transition(
                conn,
                &id,
                ApplicationState::UnderReview.as_str(),
                ApplicationState::Rejected.as_str(),
                None,
                MATCHER_ACTOR,
                now,
            )?;
        }

        let app = application_for(ctx, conn, caller, Action::ApplicationRead, &id)?;
        view(conn, &ctx.data_use, &app)
    });
    let application = match submitted {
        // A concurrent retry under the same key committed first.
        Err(AppError::UniqueViolation(_)) if idempotency.is_some() => {
            return replay(ctx, caller, idempotency.as_ref())?
                .ok_or_else(|| AppError::internal("idempotency key conflict without a row"));
        }
        other => other?,
    };
    tracing::info!(application = %application.id, state = application.state.as_str(), "data-use application submitted");
    Ok(Submitted {
        application,
        replayed: false,
    })
}

/// What the applicant declares, as stored: the purpose read, the submitter
/// among the members, each member once.
fn declaration(ctx: &Context, p: &Principal, s: Submission) -> Result<Declaration, AppError> {
    let purpose = parse_purpose(ctx, &s.purpose)?;
    let today = crate::calendar::day_of(ctx.now());
    if s.ends_on < s.starts_on || s.ends_on < today {
        return Err(AppError::field(
            "ends_on",
            "must not precede starts_on or today",
        ));
    }
    let mut members = s.members;
    members.push(p.subject.clone());
    members.sort();
    members.dedup();
    let mut partner_members = s.partner_members;
    if partner_members.iter().any(|m| m.org == p.org) {
        return Err(AppError::field(
            "partner_members",
            "researchers of the applicant organization go in members",
        ));
    }
    partner_members.sort();
    partner_members.dedup();
    if members.len() + partner_members.len() > 100 {
        return Err(AppError::field("members", "at most 100 members"));
    }
    Ok(Declaration {
        title: s.title,
        purpose,
        datasets: s.datasets,
        members,
        partner_members,
        ethics_ref: s.ethics_ref,
        starts_on: s.starts_on,
        ends_on: s.ends_on,
        recipients_abroad: s.recipients_abroad,
    })
}

/// What a submission asked for, whoever sends it again: the submitter and
/// the request as sent.
fn submission_fingerprint(p: &Principal, as_sent: &serde_json::Value) -> Result<String, AppError> {
    let mut value = as_sent.clone();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("submitted_by".into(), p.subject.clone().into());
    }
    fingerprint(&value)
}

/// The application an earlier submission under the same key created, or
/// `idempotency_key_reused` if that submission asked for something else.
fn replay(
    ctx: &Context,
    caller: &Caller,
    idempotency: Option<&SubmissionKey>,
) -> Result<Option<Submitted>, AppError> {
    let Some((tags, fingerprint)) = idempotency else {
        return Ok(None);
    };
    let org = &principal(caller)?.org;
    ctx.read(|conn| {
        let Some(row) = store::find_application_by_idempotency_key(conn, org, tags)? else {
            return Ok(None);
        };
        if row.request_hash.as_deref() != Some(fingerprint.as_str()) {
            return Err(AppError::IdempotencyKeyReused);
        }
        let app = application_for(ctx, conn, caller, Action::ApplicationRead, &row.id)?;
        Ok(Some(Submitted {
            application: view(conn, &ctx.data_use, &app)?,
            replayed: true,
        }))
    })
}
