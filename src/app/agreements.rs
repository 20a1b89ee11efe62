//! Data-use agreements: the versioned texts members accept, acceptances
//! of the current text, and the governance body's sanctions.

use super::applications::{check_attestations, view, Application, ApplicationView};
use super::gates::{application_for, governance, membership};
use super::idempotency::{write_once, Answered, Replayable, Retry};
use super::{AccessRefusal as Refusal, AppError, Context};
use crate::access::review::AgreementState;
use crate::auth::policy::{Action, Resource};
use crate::auth::Caller;
use crate::db::access::{self as store, AcceptanceRow, AgreementRow, AgreementTextRow};
use crate::db::documents::utc;
use crate::db::DbConnection;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AgreementTextView {
    pub version: i32,
    /// Hex SHA-256 of the body's UTF-8 bytes: what a member's acceptance names.
    pub sha256: String,
    pub body: String,
    pub published_at: DateTime<Utc>,
}

fn text_view(row: AgreementTextRow) -> AgreementTextView {
    AgreementTextView {
        version: row.version,
        sha256: row.sha256,
        body: row.body,
        published_at: utc(row.published_at),
    }
}

/// A sanction: the state the governance body puts an agreement in, and why.
pub struct Sanction {
    pub state: AgreementState,
    pub reason: String,
}

/// Publishes the next version of the data-use agreement text (governance).
/// Members of every agreement must accept the new version before their next
/// release.
pub fn publish_text(
    ctx: &Context,
    caller: &Caller,
    body: String,
    retry: Option<Retry>,
) -> Result<Answered<AgreementTextView>, AppError> {
    let p = governance(ctx, caller)?;
    let replayable = Replayable::of(ctx, p, "agreement_text", retry)?;
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, body.as_bytes()));
    let now = ctx.now().naive_utc();
    write_once(ctx, replayable.as_ref(), |conn| {
        let version = store::current_text(conn)?.map_or(1, |t| t.version + 1);
        let row = AgreementTextRow {
            version,
            body,
            sha256,
            published_by: p.subject.clone(),
            published_at: now,
        };
        store::insert_text(conn, &row)?;
        Ok(text_view(row))
    })
    .map_err(|e| match e {
        AppError::UniqueViolation(_) => {
            AppError::field("body", "this exact text was published before")
        }
        other => other,
    })
}

fn authorize_reading(ctx: &Context, caller: &Caller) -> Result<(), AppError> {
    ctx.authorize(caller, Action::DatasetRead, &Resource::Registry)
}

/// The agreement text members must accept now (any authenticated caller).
pub fn current_text(ctx: &Context, caller: &Caller) -> Result<AgreementTextView, AppError> {
    authorize_reading(ctx, caller)?;
    let row = ctx.read(|conn| {
        store::current_text(conn)?.ok_or(AppError::Access(Refusal::AgreementTextMissing, None))
    })?;
    Ok(text_view(row))
}

/// One version of the agreement text, current or not: what a member
/// accepted, and what an `AcceptedTermsAndPolicies` visa names.
pub fn text(ctx: &Context, caller: &Caller, version: i32) -> Result<AgreementTextView, AppError> {
    authorize_reading(ctx, caller)?;
    let row = ctx.read(|conn| store::text_version(conn, version)?.ok_or(AppError::NotFound))?;
    Ok(text_view(row))
}

/// The agreement and its application, if the caller may `action` it.
fn agreement_and_application(
    ctx: &Context,
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<(AgreementRow, Application), AppError> {
    let agreement = store::find_agreement(conn, id)?.ok_or(AppError::NotFound)?;
    let app = application_for(ctx, conn, caller, action, &agreement.application_id)?;
    Ok((agreement, app))
}

/// A member accepts the current agreement text, naming it by its SHA-256
/// (`text_sha256`); the text's version and hash are recorded.
pub fn accept(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    text_sha256: &str,
    retry: Option<Retry>,
) -> Result<Answered<ApplicationView>, AppError> {
    let replayable = Replayable::of(ctx, super::gates::principal(caller)?, "acceptance", retry)?;
    let now = ctx.now();
    write_once(ctx, replayable.as_ref(), |conn| {
        let agreement = store::find_agreement(conn, id)?.ok_or(AppError::NotFound)?;
        let app = membership(
            ctx,
            conn,
            caller,
            Action::AgreementAccept,
            &agreement.application_id,
        )?;
        let p = super::gates::principal(caller)?;
        check_attestations(conn, &[(&p.org, &p.subject)], crate::calendar::day_of(now))?;
        let text = store::current_text(conn)?
            .ok_or(AppError::Access(Refusal::AgreementTextMissing, None))?;
        if text.sha256 != text_sha256 {
            return Err(AppError::refused(
                Refusal::AgreementTextMismatch,
                format!("the current text is version {}", text.version),
            ));
        }
        store::insert_acceptance(
            conn,
            &AcceptanceRow {
                agreement_id: agreement.id,
                member_org: p.org.clone(),
                member: p.subject.clone(),
                text_version: text.version,
                text_sha256: text.sha256,
                accepted_at: now.naive_utc(),
            },
        )?;
        view(conn, &ctx.data_use, &app)
    })
}

/// Suspends, revokes or reinstates an agreement (governance). Every handle
/// issued under it stops resolving at once; revocation is final.
pub fn sanction(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    sanction: Sanction,
) -> Result<ApplicationView, AppError> {
    let p = governance(ctx, caller)?;
    let now = ctx.now();
    let to = sanction.state.as_str();
    let view = ctx.write(|conn| {
        let (_, app) = agreement_and_application(ctx, conn, caller, Action::ApplicationRead, id)?;
        if !store::set_agreement_state(conn, id, to, &sanction.reason, now)? {
            return Err(AppError::Access(Refusal::AgreementRevoked, None));
        }
        store::record_agreement_transition(conn, id, to, &sanction.reason, &p.subject, now)?;
        view(conn, &ctx.data_use, &app)
    })?;
    tracing::info!(agreement = %id, "agreement state changed by governance");
    Ok(view)
}
