//! Organizations (academic, industry or public, never self-declared) and
//! researchers' ethics-training attestations.

use crate::app::gates::governance;
use crate::app::recalls;
use crate::app::{AppError, Context};
use crate::auth::Caller;
use crate::db::access::{self as store, AttestationRow, OrganizationRow};
use crate::db::documents::utc;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// The kinds of organization the register knows.
pub const ORGANIZATION_KINDS: [&str; 3] = ["academic", crate::access::INDUSTRY, "public"];

/// An organization as the governance body verified it.
pub struct Verification {
    pub org: String,
    /// One of [`ORGANIZATION_KINDS`].
    pub kind: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationView {
    pub org: String,
    pub kind: String,
    pub country: String,
    pub verified_by: String,
    pub verified_at: DateTime<Utc>,
}

/// A researcher's ethics training as attested.
pub struct Attestation {
    pub org: String,
    pub subject: String,
    pub training: String,
    pub completed_on: NaiveDate,
    pub expires_on: NaiveDate,
}

#[derive(Serialize, ToSchema)]
pub struct AttestationView {
    pub org: String,
    pub subject: String,
    pub training: String,
    pub completed_on: NaiveDate,
    pub expires_on: NaiveDate,
}

/// Records an organization's verified type (governance). Applicants never
/// declare whether they are commercial; this register decides. A change
/// that makes a use with live releases industrial or a transfer abroad
/// writes, in the same transaction, a recall notice for each released
/// sample whose patient did not consent to that (decision 0027).
pub fn verify(
    ctx: &Context,
    caller: &Caller,
    v: Verification,
) -> Result<OrganizationView, AppError> {
    let p = governance(ctx, caller)?;
    let row = OrganizationRow {
        org: v.org,
        kind: v.kind,
        country: v.country,
        verified_by: p.subject.clone(),
        verified_at: ctx.now().naive_utc(),
    };
    let recalled = ctx.write(|conn| {
        // A use that the change makes industrial or a transfer abroad
        // loses, in this transaction, what its patients did not consent to
        // (decision 0027). A release being written for a use of this
        // organization finishes first (decision 0029).
        crate::db::gate::take_register_entry(conn, &row.org)?;
        let before =
            recalls::uses_of_member(conn, &ctx.data_use, (&row.org, &row.kind, &row.country))?;
        store::upsert_organization(conn, &row)?;
        let change = format!("register-{}", uuid::Uuid::new_v4());
        recalls::recall_what_the_register_takes_back(
            conn,
            &ctx.data_use,
            &before,
            &change,
            ctx.now(),
        )
    })?;
    if recalled > 0 {
        ctx.log.deliveries_queued();
    }
    Ok(OrganizationView {
        org: row.org,
        kind: row.kind,
        country: row.country,
        verified_by: row.verified_by,
        verified_at: utc(row.verified_at),
    })
}

/// Records a researcher's ethics-training attestation (governance).
/// Without a current one a researcher can neither apply nor be a member.
pub fn attest(ctx: &Context, caller: &Caller, a: Attestation) -> Result<AttestationView, AppError> {
    let p = governance(ctx, caller)?;
    if a.completed_on > crate::calendar::day_of(ctx.now()) {
        return Err(AppError::field("completed_on", "lies in the future"));
    }
    let row = AttestationRow {
        org: a.org,
        subject: a.subject,
        training: a.training,
        completed_on: a.completed_on,
        expires_on: a.expires_on,
        recorded_by: p.subject.clone(),
        recorded_at: ctx.now().naive_utc(),
    };
    ctx.write(|conn| Ok(store::upsert_attestation(conn, &row)?))?;
    Ok(AttestationView {
        org: row.org,
        subject: row.subject,
        training: row.training,
        completed_on: row.completed_on,
        expires_on: row.expires_on,
    })
}
