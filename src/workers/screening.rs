//! The periodic screening report: once a period (a UTC day by default) has
//! ended, one instance screens its entries and stores the report for the
//! auditors (`GET /v1/audit/screening-reports`).

use super::{spawn_named, WorkerContext};
use crate::db::screening::{self as store, ReportRow};
use chrono::{DateTime, Utc};
use std::time::Duration;

pub(crate) fn spawn(ctx: WorkerContext) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("log-screening", move || run(ctx))
}

/// The latest period that ended at least `grace` ago: `[start, end)`,
/// aligned to the Unix epoch. The grace lets transactions that began
/// inside the period commit their entries first.
pub fn last_complete_period(
    now: DateTime<Utc>,
    period_seconds: u64,
    grace: Duration,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let period = i64::try_from(period_seconds).ok()?.max(1);
    let settled = now.timestamp() - i64::try_from(grace.as_secs()).ok()?;
    let end = settled.div_euclid(period) * period;
    Some((
        DateTime::from_timestamp(end - period, 0)?,
        DateTime::from_timestamp(end, 0)?,
    ))
}

fn grace(period_seconds: u64) -> Duration {
    Duration::from_secs(period_seconds.min(60))
}

fn run(ctx: WorkerContext) {
    let config = &ctx.config.screening;
    let tick = Duration::from_millis((config.period_seconds * 1000 / 4).clamp(200, 30_000));
    while !ctx.stopped() {
        if let Err(e) = screen_last_period(&ctx) {
            tracing::error!(error = %e, "screening failed; will try again");
        }
        let mut slept = Duration::ZERO;
        while slept < tick && !ctx.stopped() {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}

fn screen_last_period(ctx: &WorkerContext) -> Result<(), String> {
    let config = &ctx.config.screening;
    let now = ctx.clock.now();
    let Some((from, to)) =
        last_complete_period(now, config.period_seconds, grace(config.period_seconds))
    else {
        return Ok(());
    };
    let mut conn = ctx.pool.get().map_err(|e| e.to_string())?;
    let err = |e: diesel::result::Error| e.to_string();
    if store::report_exists(&mut conn, from.naive_utc()).map_err(err)? {
        return Ok(());
    }
    let report = store::screen(&mut conn, from, to, config.volume_rule()).map_err(err)?;
    store::store_report(&mut conn, &ReportRow::of(&report, ctx.clock.now())).map_err(err)?;
    tracing::info!(
        period_start = %from,
        entries = report.entries_screened,
        flagged = report.counts.values().sum::<u64>(),
        unusual_actors = report.unusual_volume.len(),
        "access log screened"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::last_complete_period;
    use chrono::{DateTime, TimeZone, Utc};
    use std::time::Duration;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, s)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn periods_are_whole_and_wait_for_the_grace() {
        let day = 86_400;
        let grace = Duration::from_secs(60);
        let (from, to) = last_complete_period(t(10, 0, 0), day, grace).unwrap_or_default();
        assert_eq!(
            (from, to),
            (t(0, 0, 0) - chrono::Duration::days(1), t(0, 0, 0))
        );
        // One second after midnight the day just ended is not yet settled.
        let (_, to) = last_complete_period(t(0, 0, 30), day, grace).unwrap_or_default();
        assert_eq!(to, t(0, 0, 0) - chrono::Duration::days(1));
        let (_, to) = last_complete_period(t(0, 1, 0), day, grace).unwrap_or_default();
        assert_eq!(to, t(0, 0, 0));
        let (from, to) =
            last_complete_period(t(9, 0, 7), 5, Duration::from_secs(5)).unwrap_or_default();
        assert_eq!(
            (from, to),
            (t(9, 0, 0) - chrono::Duration::seconds(5), t(9, 0, 0))
        );
    }
}
