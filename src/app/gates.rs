//! Who may act, in one place: the Cedar enforcement point, and the gates
//! policy does not decide because they need what storage says (membership
//! of an application, a patient's hospital, a member's request budget).
//!
//! The rule throughout: a caller that may not even see a resource gets the
//! same `NotFound` as for one that does not exist, so nothing can be probed.

use super::applications::Application;
use super::{AccessRefusal, AppError, Context};
use crate::auth::policy::{Action, Resource};
use crate::auth::{Caller, Principal, Role};
use crate::consent::Person;
use crate::db::access as store;
use crate::db::consents::{self as patients, PatientRow};
use crate::db::DbConnection;
use crate::pseudonym::PatientPseudonym;

/// The authenticated caller, or `MissingToken`.
pub fn principal(caller: &Caller) -> Result<&Principal, AppError> {
    match caller {
        Caller::User(p) => Ok(p),
        Caller::Anonymous => Err(AppError::MissingToken),
    }
}

impl Context {
    /// The enforcement point for everything that is not a patient.
    /// Anonymous callers learn they must authenticate; authenticated ones
    /// that policy denies are refused.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource<'_>,
    ) -> Result<(), AppError> {
        if self.policy.is_allowed(caller, action, resource) {
            Ok(())
        } else if matches!(caller, Caller::Anonymous) {
            Err(AppError::MissingToken)
        } else {
            Err(AppError::Forbidden)
        }
    }

    /// The enforcement point for a patient. A caller that may not even see
    /// the patient gets the same `NotFound` as for a patient that does not
    /// exist, so it cannot probe which pseudonyms are registered. `centers`
    /// are the sequencing centres the patient's hospital has authorised.
    pub fn authorize_patient(
        &self,
        caller: &Caller,
        action: Action,
        pseudonym: &str,
        hospital: &str,
        centers: &[String],
    ) -> Result<(), AppError> {
        let resource = Resource::Patient {
            pseudonym,
            hospital,
            centers,
        };
        if matches!(caller, Caller::Anonymous) {
            return Err(AppError::MissingToken);
        }
        if self.policy.is_allowed(caller, action, &resource) {
            return Ok(());
        }
        let visible = [
            Action::ConsentRead,
            Action::SampleRead,
            Action::RecontactRead,
        ]
        .into_iter()
        .any(|read| self.policy.is_allowed(caller, read, &resource));
        if visible {
            Err(AppError::Forbidden)
        } else {
            Err(AppError::NotFound)
        }
    }

    /// Counts a member's request of `kind` (`release`, `visas`): refused
    /// past `data_access.member_requests_per_minute`, with the seconds
    /// until the member may ask again (decision 0032).
    pub fn limit_member(&self, kind: &str, member: &Principal) -> Result<(), AppError> {
        self.member_requests
            .allow(&format!("{kind}:{}:{}", member.org, member.subject))
            .map_err(|retry_after_seconds| AppError::RateLimited {
                retry_after_seconds,
            })
    }

    /// Counts an anonymous attempt of `what` (`enroll`, `sign-in`) from
    /// `client` (its network address): refused past
    /// `patients.attempts_per_minute`.
    pub fn limit_attempts(&self, what: &str, client: &str) -> Result<(), AppError> {
        self.attempts
            .allow(&format!("{what}:{client}"))
            .map_err(|retry_after_seconds| AppError::RateLimited {
                retry_after_seconds,
            })
    }
}

/// The patient named by `pseudonym`, if the caller may `action` them;
/// missing and forbidden look the same.
pub fn visible_patient(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    pseudonym: &PatientPseudonym,
) -> Result<PatientRow, AppError> {
    principal(caller)?;
    let row = patients::find_patient(conn, pseudonym.as_str())?.ok_or(AppError::NotFound)?;
    ctx.authorize_patient(caller, action, pseudonym.as_str(), &row.hospital_org, &[])?;
    Ok(row)
}

/// The calling patient, as their token names them: their pseudonym and
/// what is known of their age, checked by policy. A patient token names
/// one pseudonym, and nothing a patient does names anyone else.
pub fn patient_self(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
) -> Result<(String, Person), AppError> {
    let p = principal(caller)?;
    let pseudonym = p.patient_ref.clone().ok_or(AppError::Forbidden)?;
    let row = patients::find_patient(conn, &pseudonym)?.ok_or(AppError::Forbidden)?;
    ctx.authorize(
        caller,
        Action::PortalUse,
        &Resource::Patient {
            pseudonym: &pseudonym,
            hospital: &row.hospital_org,
            centers: &[],
        },
    )?;
    Ok((pseudonym, row.person()))
}

/// Loads an application and checks `action` on it. A caller that may not
/// even read it gets the same `NotFound` as for one that does not exist.
pub fn application_for(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<Application, AppError> {
    let app = Application::from_row(store::find_application(conn, id)?.ok_or(AppError::NotFound)?)?;
    if !may(ctx, caller, action, &app) {
        return Err(if may(ctx, caller, Action::ApplicationRead, &app) {
            AppError::Forbidden
        } else {
            AppError::NotFound
        });
    }
    Ok(app)
}

/// Whether policy lets the caller `action` the application.
pub fn may(ctx: &Context, caller: &Caller, action: Action, app: &Application) -> bool {
    let partner_orgs = app.partner_orgs();
    let resource = Resource::Application {
        id: &app.row.id,
        org: &app.row.org,
        partner_orgs: &partner_orgs,
    };
    ctx.policy.is_allowed(caller, action, &resource)
}

/// The application, if the caller is one of its members (an outsider who
/// may not read it gets `NotFound`, a reader who is no member
/// `not_a_member`).
pub fn membership(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<Application, AppError> {
    let p = principal(caller)?;
    let app = application_for(ctx, conn, caller, action, id)?;
    if !app.is_member(p) {
        return Err(AppError::Access(AccessRefusal::NotAMember, None));
    }
    Ok(app)
}

/// The application, if the caller follows it. Members follow what happens
/// under their application (releases, manifests, recall notices, visas); so
/// do the governance body and auditors, who oversee every use. Anyone else
/// who may read the application is refused `not_a_member`; anyone who may
/// not gets `NotFound`.
pub fn followed_application(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
) -> Result<Application, AppError> {
    let p = principal(caller)?;
    let app = application_for(ctx, conn, caller, Action::ApplicationRead, id)?;
    if app.is_member(p) || p.has(Role::Auditor) || p.has(Role::Governance) {
        return Ok(app);
    }
    Err(AppError::Access(AccessRefusal::NotAMember, None))
}

/// The caller, if it may manage the governance register (organizations,
/// attestations, datasets, agreement texts, sanctions).
pub fn governance<'a>(ctx: &Context, caller: &'a Caller) -> Result<&'a Principal, AppError> {
    ctx.authorize(caller, Action::RegistryManage, &Resource::Registry)?;
    principal(caller)
}

/// Reads `what` of an application the caller follows (see
/// `followed_application`); an outsider who may not read the application
/// gets `NotFound`, as for one that does not exist.
pub fn read_followed<T>(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    what: impl FnOnce(&mut DbConnection, &Application) -> Result<T, AppError>,
) -> Result<T, AppError> {
    ctx.read(|conn| {
        let app = followed_application(ctx, conn, caller, id)?;
        what(conn, &app)
    })
}

/// Researchers ask for recontact through a review committee, never
/// themselves: a refusal with its own code, so a researcher learns where to
/// go instead of a bare `forbidden`.
pub fn recontact_through_a_committee(p: &Principal) -> Result<(), AppError> {
    if p.has(Role::Researcher) && !p.has(Role::ReviewCommittee) {
        return Err(AppError::RecontactRequiresCommittee);
    }
    Ok(())
}
