//! GA4GH Passport visas for members of approved uses (decision 0031).
//!
//! A member asks for their own visa; the same gate a release passes decides
//! whether they get one, applied to them alone: the application approved,
//! its agreement active, unexpired and within its period, the member's
//! ethics training current and the current agreement text accepted.
//! Issuing a visa reads and writes nothing of any patient; the visa is
//! recorded, in the same transaction that decides it may be issued, so the
//! governance body and auditors can list who held one.

use super::gates::{membership, principal, read_followed};
use super::idempotency::{write_once, Answered, Replayable, Retry};
use super::releases::admit;
use super::{AppError, Context};
use crate::access::visa::{Assertion, Holder};
use crate::auth::policy::Action;
use crate::auth::Caller;
use crate::db::access::{self as store, VisaIssuanceRow};
use crate::db::documents::utc;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct IssuedVisas {
    /// The caller's visas, in the shape of the Passport claim (ES256 JWTs,
    /// Visa Document Tokens): `ControlledAccessGrants`, that the committee
    /// approved this use and the caller is its member, then
    /// `AcceptedTermsAndPolicies`, that the caller accepted the agreement
    /// text in force.
    pub ga4gh_passport_v1: Vec<String>,
    /// When the visa expires: a dataset handle's lifetime
    /// (`release.handle_ttl_seconds`), never past the agreement's expiry.
    pub expires_at: DateTime<Utc>,
    /// Where the visa's public key is published (its `jku`).
    pub jku: String,
}

/// A visa the service signed: to whom, and for how long.
#[derive(Serialize, ToSchema)]
pub struct IssuedVisa {
    /// The visa's `jti`.
    pub id: String,
    /// `ControlledAccessGrants` or `AcceptedTermsAndPolicies`.
    #[serde(rename = "type")]
    pub visa_type: String,
    pub member_org: String,
    pub member: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct VisaList {
    pub visas: Vec<IssuedVisa>,
}

/// Issues the caller GA4GH Passport visas for an approved use (members):
/// `ControlledAccessGrants` for the use and `AcceptedTermsAndPolicies` for
/// the agreement text in force. The first names the use, never a dataset:
/// which objects the project may read is the dataset handle's answer,
/// checked against every patient's consent. Refused, with the release's
/// codes, while the caller could not release under the use. Each visa is
/// recorded. Each member may ask `data_access.member_requests_per_minute`
/// times a minute.
pub fn issue(
    ctx: &Context,
    caller: &Caller,
    application: &str,
    retry: Option<Retry>,
) -> Result<Answered<IssuedVisas>, AppError> {
    let p = principal(caller)?;
    let replayable = Replayable::of(ctx, p, "visas", retry)?;
    let now = ctx.now();
    let answered = write_once(ctx, replayable.as_ref(), |conn| {
        ctx.limit_member("visas", p)?;
        let app = membership(ctx, conn, caller, Action::VisaIssue, application)?;
        let me = [(p.org.as_str(), p.subject.as_str())];
        let admitted = admit(conn, &app, &me, now)?;
        let text_version = admitted.text.version;
        let accepted_at = *admitted
            .accepted_at
            .first()
            .ok_or_else(|| AppError::internal("admitted without an acceptance"))?;
        let approved_at = app
            .row
            .decided_at
            .ok_or_else(|| AppError::internal("approved application without a decision"))?;
        let lifetime =
            chrono::Duration::seconds(i64::from(ctx.data_use.release.handle_ttl_seconds));
        let expires_at = (now + lifetime).min(utc(admitted.agreement.expires_at));
        let base = &ctx.public_base_url;
        let holder = Holder {
            org: &p.org,
            researcher: &p.subject,
            now: now.timestamp(),
            expires_at: expires_at.timestamp(),
        };
        let assertions = [
            Assertion::ControlledAccess {
                application_url: format!("{base}/v1/applications/{}", app.row.id),
                approved_at: utc(approved_at).timestamp(),
            },
            Assertion::AcceptedTerms {
                text_url: format!("{base}/v1/agreement-texts/{text_version}"),
                accepted_at: utc(accepted_at).timestamp(),
            },
        ];
        let mut visas = Vec::with_capacity(assertions.len());
        for assertion in assertions {
            let jti = format!("visa-{}", uuid::Uuid::new_v4());
            let claims = ctx.visas.claims(&holder, assertion, jti.clone());
            visas.push(ctx.visas.sign(&claims).map_err(AppError::internal)?);
            store::record_visa(
                conn,
                &VisaIssuanceRow {
                    jti,
                    application_id: app.row.id.clone(),
                    visa_type: claims.ga4gh_visa_v1.kind,
                    member_org: p.org.clone(),
                    member: p.subject.clone(),
                    issued_at: now.naive_utc(),
                    expires_at: expires_at.naive_utc(),
                },
            )?;
        }
        tracing::info!(application = %app.row.id, "passport visas issued");
        Ok(IssuedVisas {
            ga4gh_passport_v1: visas,
            expires_at,
            jku: ctx.visas.jku().to_owned(),
        })
    })?;
    Ok(answered)
}

/// Every visa issued for an application, oldest first (members, the
/// governance body, auditors).
pub fn issued(ctx: &Context, caller: &Caller, application: &str) -> Result<VisaList, AppError> {
    let rows = read_followed(ctx, caller, application, |conn, app| {
        Ok(store::visas_of(conn, &app.row.id)?)
    })?;
    Ok(VisaList {
        visas: rows
            .into_iter()
            .map(|r| IssuedVisa {
                id: r.jti,
                visa_type: r.visa_type,
                member_org: r.member_org,
                member: r.member,
                issued_at: utc(r.issued_at),
                expires_at: utc(r.expires_at),
            })
            .collect(),
    })
}
