//! Authentication (bearer JWTs) and authorization (Cedar policies).

pub mod dev;
pub mod jwt;
pub mod policy;

use serde::Serialize;

/// Roles GenomeGate knows. Unknown role strings in a token are ignored, not
/// errors, so an issuer can serve several applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The governance body: manages unified consent documents.
    ConsentAdmin,
    /// Hospital staff: registers and reads its own hospital's consents.
    HospitalStaff,
    /// Read-only oversight.
    Auditor,
    /// A sequencing centre, registering samples for hospitals that
    /// authorised it.
    SequencingCenter,
    /// A member of a data-use review committee (利活用審査委員会).
    ReviewCommittee,
    /// A governance officer: one of the two approvers of a recontact.
    Governance,
    /// A researcher. Acts only through committees and agreements.
    Researcher,
    /// A patient, bound to their own pseudonym.
    Patient,
    /// A genome store or trusted research environment: resolves dataset
    /// handles issued to its organization.
    DataStore,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::ConsentAdmin,
        Role::HospitalStaff,
        Role::Auditor,
        Role::SequencingCenter,
        Role::ReviewCommittee,
        Role::Governance,
        Role::Researcher,
        Role::Patient,
        Role::DataStore,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "consent_admin" => Some(Role::ConsentAdmin),
            "hospital_staff" => Some(Role::HospitalStaff),
            "auditor" => Some(Role::Auditor),
            "sequencing_center" => Some(Role::SequencingCenter),
            "review_committee" => Some(Role::ReviewCommittee),
            "governance" => Some(Role::Governance),
            "researcher" => Some(Role::Researcher),
            "patient" => Some(Role::Patient),
            "data_store" => Some(Role::DataStore),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ConsentAdmin => "consent_admin",
            Role::HospitalStaff => "hospital_staff",
            Role::Auditor => "auditor",
            Role::SequencingCenter => "sequencing_center",
            Role::ReviewCommittee => "review_committee",
            Role::Governance => "governance",
            Role::Researcher => "researcher",
            Role::Patient => "patient",
            Role::DataStore => "data_store",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub org: String,
    pub roles: Vec<Role>,
    /// For patient tokens: the pseudonym the token is bound to.
    pub patient_ref: Option<String>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Who is calling: a verified token holder, or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(Principal),
}

#[cfg(test)]
mod tests {
    /// The service's own log entries carry a role no token can: screening
    /// tells them from those of anyone holding a token.
    #[test]
    fn the_service_role_is_no_callers() {
        assert!(super::Role::parse(crate::ledger::entry::SERVICE_ROLE).is_none());
    }
}
