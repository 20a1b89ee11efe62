//! Which sequencing centres a hospital authorises to register (and read)
//! its patients' samples.

use super::*;
use crate::app::gates::principal;
use crate::auth::policy::Resource;
use crate::auth::Principal;

#[derive(Serialize, ToSchema)]
pub struct AuthorizationList {
    pub hospital: String,
    pub centers: Vec<String>,
}

/// The caller's hospital, if it may manage its sequencing authorisations.
fn hospital_of<'a>(ctx: &Context, caller: &'a Caller) -> Result<&'a Principal, AppError> {
    let p = principal(caller)?;
    ctx.authorize(
        caller,
        Action::SequencingAuthorize,
        &Resource::Hospital { org: &p.org },
    )?;
    Ok(p)
}

/// Authorises a sequencing centre to register this hospital's samples.
pub fn authorize_center(
    ctx: &Context,
    caller: &Caller,
    center: &str,
) -> Result<AuthorizationList, AppError> {
    let p = hospital_of(ctx, caller)?;
    let now = ctx.now();
    let centers = ctx.write(|conn| {
        store::authorize_center(conn, &p.org, center, &p.subject, now)?;
        Ok(store::authorized_centers(conn, &p.org)?)
    })?;
    Ok(AuthorizationList {
        hospital: p.org.clone(),
        centers,
    })
}

/// The sequencing centres this hospital has authorised.
pub fn centers(ctx: &Context, caller: &Caller) -> Result<AuthorizationList, AppError> {
    let p = hospital_of(ctx, caller)?;
    let centers = ctx.read(|conn| Ok(store::authorized_centers(conn, &p.org)?))?;
    Ok(AuthorizationList {
        hospital: p.org.clone(),
        centers,
    })
}

/// Revokes a sequencing centre's authorisation; it can no longer register
/// or read this hospital's samples. One never authorised is not found.
pub fn revoke_center(ctx: &Context, caller: &Caller, center: &str) -> Result<(), AppError> {
    let p = hospital_of(ctx, caller)?;
    let now = ctx.now();
    let revoked = ctx.write(|conn| Ok(store::revoke_center(conn, &p.org, center, now)?))?;
    if revoked {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}
