//! What a release, or a visa, is admitted under: an approved application,
//! its agreement usable now and within its period, every member attested
//! today and bound by the agreement text in force.

use super::*;
use crate::access::review::AgreementState;
use crate::app::applications::check_attestations;
use crate::app::AccessRefusal as Refusal;
use crate::db::access::{AgreementRow, AgreementTextRow};
use chrono::NaiveDateTime;

pub fn refuse_unless_usable(agreement: &AgreementRow, now: DateTime<Utc>) -> Result<(), AppError> {
    match AgreementState::parse(&agreement.state) {
        Some(AgreementState::Active) if utc(agreement.expires_at) > now => Ok(()),
        Some(AgreementState::Active) => Err(AppError::refused(
            Refusal::AgreementExpired,
            format!("it expired at {}", utc(agreement.expires_at)),
        )),
        Some(AgreementState::Suspended) => Err(AppError::Access(
            Refusal::AgreementSuspended,
            agreement.state_reason.clone(),
        )),
        _ => Err(AppError::Access(
            Refusal::AgreementRevoked,
            agreement.state_reason.clone(),
        )),
    }
}

/// The agreement covers the declared period only: its end is the
/// agreement's expiry, and before its first day (from midnight UTC, as the
/// expiry is) nothing is released.
fn refuse_before_period(app: &Application, now: DateTime<Utc>) -> Result<(), AppError> {
    if now < crate::access::period_start(app.declaration.starts_on) {
        return Err(AppError::refused(
            Refusal::AgreementNotStarted,
            format!("the agreed period starts on {}", app.declaration.starts_on),
        ));
    }
    Ok(())
}

/// The current agreement text, with when each of `members` accepted it
/// (in their order), or the refusal of the first who has not.
fn check_acceptances(
    conn: &mut DbConnection,
    agreement: &AgreementRow,
    members: &[(&str, &str)],
) -> Result<(AgreementTextRow, Vec<NaiveDateTime>), AppError> {
    let text =
        store::current_text(conn)?.ok_or(AppError::Access(Refusal::AgreementTextMissing, None))?;
    let accepted = store::acceptances_of(conn, std::slice::from_ref(&agreement.id))?;
    let mut accepted_at = Vec::with_capacity(members.len());
    for (org, researcher) in members {
        let member = format!("{researcher} of {org}");
        let mine: Vec<_> = accepted
            .iter()
            .filter(|a| a.member_org == *org && a.member == *researcher)
            .collect();
        if let Some(at) = mine
            .iter()
            .filter(|a| a.text_version == text.version && a.text_sha256 == text.sha256)
            .map(|a| a.accepted_at)
            .min()
        {
            accepted_at.push(at);
            continue;
        }
        return Err(if mine.is_empty() {
            AppError::refused(
                Refusal::AgreementNotAccepted,
                format!("{member} has not accepted the agreement"),
            )
        } else {
            AppError::refused(
                Refusal::AgreementOutdated,
                format!(
                    "{member} accepted an older text; version {} is current",
                    text.version
                ),
            )
        });
    }
    Ok((text, accepted_at))
}

/// What [`admit`] found: the usable agreement, the text in force, and when
/// each member admitted accepted it (in the order they were given).
pub struct Admission {
    pub agreement: AgreementRow,
    pub text: AgreementTextRow,
    pub accepted_at: Vec<NaiveDateTime>,
}

/// The agreement of an approved application, usable now, under which every
/// one of `members` (all of them for a release, the caller for a visa) may
/// act: attested today and bound by the current text.
pub fn admit(
    conn: &mut DbConnection,
    app: &Application,
    members: &[(&str, &str)],
    now: DateTime<Utc>,
) -> Result<Admission, AppError> {
    if !app.state()?.is_approved() {
        return Err(AppError::refused(
            Refusal::ApplicationNotApproved,
            format!("the application is {}", app.row.state),
        ));
    }
    let agreement = store::agreement_of_application(conn, &app.row.id)?
        .ok_or_else(|| AppError::internal("approved application without agreement"))?;
    refuse_unless_usable(&agreement, now)?;
    refuse_before_period(app, now)?;
    check_attestations(conn, members, crate::calendar::day_of(now))?;
    let (text, accepted_at) = check_acceptances(conn, &agreement, members)?;
    Ok(Admission {
        agreement,
        text,
        accepted_at,
    })
}
