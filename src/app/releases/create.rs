//! Making a release: the gate, the cohort pass, the provenance record and
//! the handle, in one transaction.

use super::*;
use crate::access::duo::MATCHER_VERSION;
use crate::access::handle::{HandleClaims, HANDLE_TYPE};
use crate::app::gates::{membership, principal};
use crate::app::idempotency::{Answered, Replayable, Retry};
use crate::app::recalls;
use crate::app::{AccessRefusal as Refusal, Context};
use crate::auth::policy::Action;
use crate::auth::Caller;
use crate::db::{ledger, write_transaction, PooledDb};

/// A member's release of an approved application's datasets to a genome
/// store or research environment.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub application: String,
    /// One of `release.audiences` in `policies/data-use.toml`.
    pub audience: String,
    /// Present when the member may retry (an `Idempotency-Key`).
    pub retry: Option<Retry>,
}

/// The whole release, computed and written inside one transaction.
struct Outcome {
    /// Finished: counts, exclusions and provenance filled in.
    row: ReleaseRow,
    /// Recall notices for changes that committed while the release read.
    recalled: usize,
}

/// Releases the datasets of an approved application (a member). Every
/// sample's patient consent is checked now; a cohort smaller than the
/// policy's `min_cohort` is refused and nothing is written. Each member may
/// release `data_access.member_requests_per_minute` times a minute: every
/// release notifies its cohort (decision 0032). The answer is the record
/// as stored, as a later read returns it, with the handle.
pub fn create(
    ctx: &Context,
    caller: &Caller,
    asked: NewRelease,
) -> Result<Answered<ReleaseView>, AppError> {
    let p = principal(caller)?;
    // A retry whose first answer was lost is that answer (its handle
    // signed again: the same bytes), before any gate or limit.
    let replayable = Replayable::of(ctx, p, "release", asked.retry.clone())?;
    if let Some(earlier) = Replayable::replay(replayable.as_ref(), ctx)? {
        return with_handle(ctx, earlier);
    }
    ctx.limit_member("release", p)?;
    if !ctx.data_use.release.audiences.contains(&asked.audience) {
        return Err(AppError::refused(
            Refusal::UnknownAudience,
            format!("`{}` is not a configured genome store", asked.audience),
        ));
    }
    let now = ctx.now();
    let mut conn = ctx.connection()?;
    // A second connection lets the cohort be read while it is written
    // (pass.rs); without one it is read in turn.
    let spare = ctx.pool.try_get();
    let watermark = crate::db::gate::watermark(&mut conn)?;
    let attempt = write_transaction(&mut conn, |conn| {
        let outcome = release(ctx, (conn, spare), caller, &asked, (now, watermark))?;
        let record = ReleaseRecord::from_row(outcome.row, &ctx.public_base_url)?;
        if let Some(r) = &replayable {
            r.remember(ctx, conn, &record)?;
        }
        Ok((record, outcome.recalled))
    });
    drop(conn);
    let answered = match attempt {
        Ok((record, recalled)) => {
            ctx.log.entries_committed();
            if recalled > 0 {
                ctx.log.deliveries_queued();
            }
            tracing::info!(release = %record.id, included = record.included, excluded = record.excluded, "dataset released");
            Answered {
                value: record,
                replayed: false,
            }
        }
        // The same request under the same key, committed first: its answer.
        Err(AppError::UniqueViolation(cause)) => {
            Replayable::replay(replayable.as_ref(), ctx)?.ok_or(AppError::UniqueViolation(cause))?
        }
        Err(refused) => return Err(refused),
    };
    with_handle(ctx, answered)
}

/// The release record with its handle for the audience. Ed25519 signatures
/// are deterministic, so a replay's handle is the first answer's, byte for
/// byte, while the key version is the same; the handle itself is never
/// stored (decision 0033).
fn with_handle(
    ctx: &Context,
    answered: Answered<ReleaseRecord>,
) -> Result<Answered<ReleaseView>, AppError> {
    let release = answered.value;
    let claims = HandleClaims {
        iss: ctx.handles.issuer().to_owned(),
        aud: release.audience.clone(),
        sub: release.application_id.clone(),
        jti: release.id.clone(),
        typ: HANDLE_TYPE.to_owned(),
        agreement: release.agreement_id.clone(),
        datasets: release.provenance.matching.keys().cloned().collect(),
        conditions: release.provenance.conditions.clone(),
        iat: release.released_at.timestamp(),
        exp: release.handle_expires_at.timestamp(),
    };
    // Signing cannot fail for a loaded key; if it did, the release stands
    // and a member can ask for a fresh handle by releasing again.
    let handle = ctx.handles.issue(&claims).map_err(AppError::internal)?;
    Ok(Answered {
        value: ReleaseView { handle, release },
        replayed: answered.replayed,
    })
}

/// The release itself, in the caller's transaction on `conn`.
fn release(
    ctx: &Context,
    (conn, spare): (&mut DbConnection, Option<PooledDb>),
    caller: &Caller,
    asked: &NewRelease,
    (now, watermark): (DateTime<Utc>, i64),
) -> Result<Outcome, AppError> {
    let p = principal(caller)?;
    let app = membership(ctx, conn, caller, Action::ReleaseCreate, &asked.application)?;
    // The register says what the use is until this commits (decision 0029).
    crate::db::gate::hold_register_entries(conn, &app.member_orgs())?;
    let Admission {
        agreement, text, ..
    } = admit(conn, &app, &app.members(), now)?;
    let checkpoint = ledger::latest_checkpoint(conn)?;
    let conditions: Vec<String> = app
        .conditions()?
        .iter()
        .map(|c| c.code().to_owned())
        .collect();
    let release_id = format!("rel-{}", uuid::Uuid::new_v4());
    let handle_expires_at =
        now + chrono::Duration::seconds(i64::from(ctx.data_use.release.handle_ttl_seconds));
    let mut row = ReleaseRow {
        id: release_id.clone(),
        application_id: app.row.id.clone(),
        agreement_id: agreement.id.clone(),
        released_by: p.subject.clone(),
        audience: asked.audience.clone(),
        released_at: now.naive_utc(),
        handle_expires_at: handle_expires_at.naive_utc(),
        included: 0,
        excluded: 0,
        provenance: String::new(),
        excluded_by_reason: None,
    };
    // The row goes first so the manifest can reference it; its counts and
    // provenance are filled in below, in the same transaction.
    store::insert_release(conn, &row)?;

    let datasets = store::find_datasets(conn, &app.declaration.datasets)?;
    let request = use_request(&ctx.data_use, conn, &app)?;
    let rechecked_as = request.clone().rechecked();
    let tally = pass::write_cohort(
        conn,
        spare,
        &pass::Cohort {
            ctx,
            app: &app,
            agreement_id: &agreement.id,
            releaser: p,
            request,
            release_id: &release_id,
            datasets: &datasets,
            now,
        },
    )?;
    row.included = tally.included;
    row.excluded = tally.excluded;
    let min_cohort = ctx.data_use.release.min_cohort;
    if row.included < i64::from(min_cohort) {
        return Err(AppError::refused(
            Refusal::CohortBelowMinimum,
            format!(
                "{} samples qualify; the minimum is {min_cohort}",
                row.included
            ),
        ));
    }
    let provenance = Provenance {
        matcher_version: MATCHER_VERSION.to_owned(),
        matching: app
            .matching()?
            .into_iter()
            .map(|m| (m.dataset, m.outcome))
            .collect(),
        consent_versions: tally.consent_versions,
        agreement_id: agreement.id.clone(),
        agreement_text_version: text.version,
        agreement_text_sha256: text.sha256,
        log_checkpoint_size: checkpoint.as_ref().map_or(0, |c| c.size),
        log_checkpoint_root: checkpoint.map_or_else(String::new, |c| hex::encode(c.root)),
        min_cohort,
        conditions,
    };
    row.provenance = serde_json::to_string(&provenance).map_err(AppError::internal)?;
    row.excluded_by_reason =
        Some(serde_json::to_string(&tally.excluded_by_reason).map_err(AppError::internal)?);
    store::finish_release(conn, &row)?;
    store::mark_access_started(conn, &app.row.id, now)?;
    // Last: changes that committed while the cohort was read could not see
    // this release; with the gate closed until commit, what they took back
    // is recalled here (decision 0029).
    crate::db::gate::close_until_commit(conn)?;
    let recalled = recalls::recall_what_changed_during_release(
        conn,
        (&app.row.id, &release_id),
        &rechecked_as,
        (watermark, now),
        ctx.now(),
    )?;
    Ok(Outcome { row, recalled })
}
