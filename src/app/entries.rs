//! Access-log entries of actions. Every action that touches a patient's
//! data appends its entry in the same transaction as the action (reads:
//! `Context::read_logged`).

use crate::auth::{Principal, Role};
use crate::ledger::entry::{
    Actor, DataScope, LegalBasis, LogAction, LogEntry, Purpose, ENTRY_FORMAT,
};
use chrono::{DateTime, Utc};

/// The role a caller acted in on a patient of `hospital`: the patient's own
/// hospital staff first, then oversight, then whatever else authorised it.
pub fn acting_role(p: &Principal, hospital: &str) -> Role {
    if p.has(Role::HospitalStaff) && p.org == hospital {
        Role::HospitalStaff
    } else if p.has(Role::Auditor) {
        Role::Auditor
    } else {
        p.roles.first().copied().unwrap_or(Role::HospitalStaff)
    }
}

pub struct Access {
    pub action: LogAction,
    pub purpose: Purpose,
    pub basis: LegalBasis,
    pub scope: DataScope,
}

pub fn entry(
    p: &Principal,
    role: Role,
    patient: &str,
    access: Access,
    at: DateTime<Utc>,
) -> LogEntry {
    entry_by(&p.org, role.as_str(), &p.subject, patient, access, at)
}

pub fn entry_by(
    org: &str,
    role: &str,
    user: &str,
    patient: &str,
    access: Access,
    at: DateTime<Utc>,
) -> LogEntry {
    LogEntry {
        format: ENTRY_FORMAT,
        at,
        actor: Actor {
            org: org.to_owned(),
            role: role.to_owned(),
            user: user.to_owned(),
        },
        action: access.action,
        purpose: access.purpose,
        legal_basis: access.basis,
        patient: patient.to_owned(),
        scope: access.scope,
    }
}

/// A read of a patient's records by their hospital (or an auditor).
pub fn read(
    p: &Principal,
    hospital: &str,
    patient: &str,
    action: LogAction,
    scope: DataScope,
    at: DateTime<Utc>,
) -> LogEntry {
    let role = acting_role(p, hospital);
    let basis = if role == Role::Auditor {
        LegalBasis::Oversight
    } else {
        LegalBasis::TreatingHospital {
            hospital: hospital.to_owned(),
        }
    };
    entry(
        p,
        role,
        patient,
        Access {
            action,
            purpose: Purpose::ConsentManagement,
            basis,
            scope,
        },
        at,
    )
}
