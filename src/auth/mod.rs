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
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "consent_admin" => Some(Role::ConsentAdmin),
            "hospital_staff" => Some(Role::HospitalStaff),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ConsentAdmin => "consent_admin",
            Role::HospitalStaff => "hospital_staff",
            Role::Auditor => "auditor",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub org: String,
    pub roles: Vec<Role>,
}

/// Who is calling: a verified token holder, or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(Principal),
}
