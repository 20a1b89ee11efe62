//! Data-use applications: submission with DUO matching (`submit`), reads
//! and lists (`read`), the committee's review (`review`), and the views
//! every reader gets (`view`). The register they draw on is in `register`,
//! the agreements they lead to in `agreements`, releases in `releases`.

mod read;
mod review;
mod submit;
mod view;
pub use read::*;
pub use review::*;
pub use submit::*;
pub use view::*;

use super::text::parse_json;
use super::{AccessRefusal as Refusal, AppError};
use crate::access::duo::{self, ResearchPurpose};
use crate::access::review::{AgreementState, ApplicationState, Condition};
use crate::access::{DataUsePolicy, UseKind};
use crate::auth::Principal;
use crate::db::access::{self as store, ApplicationRow, OrganizationRow};
use crate::db::DbConnection;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A purpose as shown: its DUO code and, for DS, its diseases.
#[derive(Serialize, Deserialize, ToSchema, Clone)]
pub struct PurposeView {
    /// `GRU`, `HMB`, `DS`, `POA` or `MDS` (methods development).
    pub code: String,
    /// For DS: disease codes of `policies/diseases.toml`.
    pub diseases: Vec<String>,
}

/// A member researcher and the organization whose token names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub org: String,
    pub researcher: String,
}

/// What the applicant declared, stored as submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Declaration {
    pub title: String,
    pub purpose: ResearchPurpose,
    pub datasets: Vec<String>,
    pub members: Vec<String>,
    /// Absent in applications stored before partner members existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partner_members: Vec<Member>,
    pub ethics_ref: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub recipients_abroad: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetMatch {
    pub dataset: String,
    /// `approve`, `abstain` (the committee decides) or `deny`.
    pub outcome: String,
    /// Every rule that fired, with a machine-readable `code`.
    #[schema(value_type = Vec<Object>)]
    pub rationale: Vec<duo::Reason>,
    pub required_conditions: Vec<String>,
    pub matcher: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    pub state: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AgreementView {
    pub id: String,
    /// `active`, `suspended` or `revoked`.
    #[schema(value_type = String)]
    pub state: AgreementState,
    pub expires_at: DateTime<Utc>,
    pub state_reason: Option<String>,
    /// Members who accepted the current text version.
    pub accepted_current_text: Vec<Member>,
    /// Every state it entered, oldest first: creation, suspensions,
    /// reinstatements, revocation.
    pub history: Vec<AgreementStateView>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AgreementStateView {
    /// `active`, `suspended` or `revoked`.
    #[schema(value_type = String)]
    pub state: AgreementState,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApplicationView {
    pub id: String,
    pub org: String,
    pub submitted_by: String,
    pub title: String,
    pub purpose: PurposeView,
    pub datasets: Vec<String>,
    pub members: Vec<String>,
    pub partner_members: Vec<Member>,
    pub ethics_ref: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    /// As declared at submission.
    pub recipients_abroad: bool,
    /// The use is industrial: a member organization is registered as
    /// industry, now or at submission. Releases and resolutions check each
    /// patient's consent to industry use against this.
    pub commercial: bool,
    /// The data goes abroad: declared, or a member organization is
    /// registered outside the programme's home country, now or at
    /// submission. Releases and resolutions check each patient's consent to
    /// international transfer against this.
    pub transfers_abroad: bool,
    /// `under_review`, `approved`, `approved_with_conditions` or `rejected`.
    #[schema(value_type = String)]
    pub state: ApplicationState,
    pub matching: Vec<DatasetMatch>,
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
    pub votes: usize,
    pub transitions: Vec<TransitionView>,
    pub agreement: Option<AgreementView>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub access_started_at: Option<DateTime<Utc>>,
}

pub fn purpose_view(purpose: &ResearchPurpose) -> PurposeView {
    PurposeView {
        code: purpose.code().to_owned(),
        diseases: purpose.diseases().to_vec(),
    }
}

/// An application with its declaration parsed.
pub struct Application {
    pub row: ApplicationRow,
    pub declaration: Declaration,
}

impl Application {
    /// Parses the stored declaration; no authorization.
    pub fn from_row(row: ApplicationRow) -> Result<Self, AppError> {
        let declaration = parse_json(&row.declaration)?;
        Ok(Application { row, declaration })
    }

    pub fn state(&self) -> Result<ApplicationState, AppError> {
        ApplicationState::parse(&self.row.state).ok_or_else(|| AppError::internal("stored state"))
    }
    pub fn conditions(&self) -> Result<Vec<Condition>, AppError> {
        parse_json(&self.row.conditions)
    }
    pub fn matching(&self) -> Result<Vec<DatasetMatch>, AppError> {
        parse_json(&self.row.matching)
    }
    /// Every member as (organization, researcher): the applicant
    /// organization's first, then the partners'.
    pub fn members(&self) -> Vec<(&str, &str)> {
        self.declaration.members_of(&self.row.org)
    }

    /// The partner organizations, each once.
    pub fn partner_orgs(&self) -> Vec<String> {
        self.declaration.partner_orgs()
    }

    /// The applicant organization and the partner organizations, each once.
    pub fn member_orgs(&self) -> Vec<&str> {
        let mut orgs: Vec<&str> = self.members().into_iter().map(|(org, _)| org).collect();
        orgs.sort_unstable();
        orgs.dedup();
        orgs
    }

    /// The use now: as declared and decided at submission, or as
    /// `registered` (entries of the register, any others ignored) says of
    /// the member organizations today, whichever is stricter.
    pub fn use_now(&self, policy: &DataUsePolicy, registered: &[OrganizationRow]) -> UseKind {
        let members = self.member_orgs();
        policy.use_now(
            UseKind {
                commercial: self.row.commercial,
                abroad: self.declaration.recipients_abroad,
            },
            registered
                .iter()
                .filter(|o| members.contains(&o.org.as_str()))
                .map(|o| (o.kind.as_str(), o.country.as_str())),
        )
    }

    pub fn is_member(&self, p: &Principal) -> bool {
        self.members()
            .iter()
            .any(|(org, researcher)| *org == p.org && *researcher == p.subject)
    }

    /// Whether `org` is the applicant or a partner organization.
    pub fn has_member_org(&self, org: &str) -> bool {
        self.row.org == org
            || self
                .declaration
                .partner_members
                .iter()
                .any(|m| m.org == org)
    }
}

impl Declaration {
    /// Every member as (organization, researcher), given the applicant
    /// organization.
    pub fn members_of<'a>(&'a self, applicant: &'a str) -> Vec<(&'a str, &'a str)> {
        self.members
            .iter()
            .map(|m| (applicant, m.as_str()))
            .chain(
                self.partner_members
                    .iter()
                    .map(|m| (m.org.as_str(), m.researcher.as_str())),
            )
            .collect()
    }

    pub fn partner_orgs(&self) -> Vec<String> {
        let mut orgs: Vec<String> = self.partner_members.iter().map(|m| m.org.clone()).collect();
        orgs.sort();
        orgs.dedup();
        orgs
    }
}

/// Refuses unless every member, (organization, researcher), has a current
/// ethics-training attestation recorded for that organization.
pub fn check_attestations(
    conn: &mut DbConnection,
    members: &[(&str, &str)],
    today: NaiveDate,
) -> Result<(), AppError> {
    let mut orgs: Vec<&str> = members.iter().map(|(org, _)| *org).collect();
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        let researchers: Vec<String> = members
            .iter()
            .filter(|(o, _)| *o == org)
            .map(|(_, r)| (*r).to_owned())
            .collect();
        let attested = store::attestations_of(conn, org, &researchers)?;
        for member in &researchers {
            match attested.iter().find(|a| &a.subject == member) {
                None => {
                    return Err(AppError::refused(
                        Refusal::AttestationMissing,
                        format!("{member} of {org} has no ethics-training attestation"),
                    ))
                }
                Some(a) if a.expires_on < today => {
                    return Err(AppError::refused(
                        Refusal::AttestationExpired,
                        format!(
                            "{member} of {org}: the attestation expired on {}",
                            a.expires_on
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
