//! The committee's review: votes, and the decision once they reach the
//! quorum. An approval creates the data-use agreement.

use super::*;
use crate::access::review::{self, AgreementState, Vote};
use crate::app::gates::{application_for, principal};
use crate::app::idempotency::{write_once, Answered, Replayable, Retry};
use crate::app::text::json;
use crate::app::Context;
use crate::auth::policy::Action;
use crate::auth::Caller;
use crate::db::access::{AgreementRow, VoteRow};

/// Casts a committee member's vote. Once the votes reach the quorum of
/// `policies/data-use.toml` the application is decided; an approval creates
/// its data-use agreement. A reviewer from any member organization has a
/// conflict of interest; a second vote by the same member is refused.
pub fn vote(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    ballot: Vote,
    retry: Option<Retry>,
) -> Result<Answered<ApplicationView>, AppError> {
    let p = principal(caller)?;
    let replayable = Replayable::of(ctx, p, "vote", retry)?;
    let now = ctx.now();
    write_once(ctx, replayable.as_ref(), |conn| {
        let app = application_for(ctx, conn, caller, Action::ApplicationVote, id)?;
        if app.state()? != ApplicationState::UnderReview {
            return Err(AppError::refused(
                Refusal::ApplicationDecided,
                format!("the application is {}", app.row.state),
            ));
        }
        // A reviewer from any member organization, partners included,
        // reviews their own organization's use.
        if app.has_member_org(&p.org) {
            return Err(AppError::Access(Refusal::ConflictOfInterest, None));
        }
        if ballot.approves() {
            let required: Vec<String> = app
                .matching()?
                .into_iter()
                .flat_map(|m| m.required_conditions)
                .collect();
            if let Some(missing) = required
                .iter()
                .find(|r| !ballot.conditions().iter().any(|c| c.code() == r.as_str()))
            {
                return Err(AppError::refused(
                    Refusal::ConditionsRequired,
                    format!("the datasets require the {missing} condition"),
                ));
            }
        }
        store::insert_vote(
            conn,
            &VoteRow {
                application_id: id.to_owned(),
                voter: p.subject.clone(),
                vote: json(&ballot)?,
                voted_at: now.naive_utc(),
            },
        )?;
        let votes: Vec<Vote> = store::votes_of(conn, &[id.to_owned()])?
            .iter()
            .map(|v| parse_json(&v.vote))
            .collect::<Result<_, _>>()?;
        if let Some(decision) = review::tally(&ctx.data_use.review, &votes) {
            let to = decision.state();
            store::transition(
                conn,
                id,
                ApplicationState::UnderReview.as_str(),
                to.as_str(),
                Some(&json(&decision.conditions())?),
                &p.subject,
                now,
            )?;
            if to.is_approved() {
                let expires_at = agreement_expiry(&app.declaration, decision.conditions(), now);
                let agreement_id = format!("dua-{}", uuid::Uuid::new_v4());
                let active = AgreementState::Active.as_str();
                store::insert_agreement(
                    conn,
                    &AgreementRow {
                        id: agreement_id.clone(),
                        application_id: id.to_owned(),
                        state: active.into(),
                        expires_at: expires_at.naive_utc(),
                        created_at: now.naive_utc(),
                        state_reason: None,
                        state_changed_at: None,
                    },
                )?;
                store::record_agreement_transition(
                    conn,
                    &agreement_id,
                    active,
                    "approved by the data-use review committee",
                    &p.subject,
                    now,
                )?;
            }
        }
        let app = application_for(ctx, conn, caller, Action::ApplicationRead, id)?;
        view(conn, &ctx.data_use, &app)
    })
    .map_err(|e| match e {
        AppError::UniqueViolation(_) => AppError::refused(
            Refusal::ApplicationDecided,
            "you have already voted on this application",
        ),
        other => other,
    })
}

/// The end of the intended period, or earlier under a TS condition.
fn agreement_expiry(
    d: &Declaration,
    conditions: &[Condition],
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let period_end = crate::access::period_end(d.ends_on);
    conditions
        .iter()
        .filter_map(|c| match c {
            Condition::TimeLimit { months } => now.checked_add_months(chrono::Months::new(*months)),
            _ => None,
        })
        .fold(period_end, DateTime::min)
}
