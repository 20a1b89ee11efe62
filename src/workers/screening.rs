//! The periodic screening report: once a period (a UTC day by default) has
//! ended, one instance screens its entries and stores the report for the
//! auditors (`GET /v1/audit/screening-reports`). Periods missed while no
//! instance ran are screened when one comes back, oldest first.

use super::{spawn_named, WorkerContext};
use crate::config::ScreeningConfig;
use crate::db::screening::{self as store, ReportRow};
use crate::db::DbConnection;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Missed periods screened per tick at most, so an instance back from a
/// long outage catches up in steps instead of one long pause.
const CATCH_UP_PER_TICK: usize = 24;

pub(crate) fn spawn(ctx: WorkerContext) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("log-screening", ctx.stop.clone(), move || run(&ctx))
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

/// The complete periods not yet screened, oldest first and at most `max`:
/// from the end of the newest stored report (`screened_until`) up to the end
/// of the last complete period. Without any report, from the period of the
/// log's first entry, or just the last complete period of an empty log.
///
/// Periods end on multiples of `period_seconds` since the epoch. After the
/// period length changes, the first period runs only to the next such
/// multiple, so no time is left unscreened or screened twice.
pub fn periods_to_screen(
    last_complete: (DateTime<Utc>, DateTime<Utc>),
    screened_until: Option<DateTime<Utc>>,
    first_entry: Option<DateTime<Utc>>,
    period_seconds: u64,
    max: usize,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let period = i64::try_from(period_seconds).unwrap_or(i64::MAX).max(1);
    let mut start = match (screened_until, first_entry) {
        (Some(until), _) => until.timestamp(),
        (None, Some(entry)) => entry.timestamp().div_euclid(period) * period,
        (None, None) => last_complete.0.timestamp(),
    };
    let last_end = last_complete.1.timestamp();
    let mut periods = Vec::new();
    while periods.len() < max {
        // The first multiple of the period after `start`.
        let end = start
            .div_euclid(period)
            .saturating_add(1)
            .saturating_mul(period);
        if end > last_end {
            break;
        }
        let (Some(from), Some(to)) = (
            DateTime::from_timestamp(start, 0),
            DateTime::from_timestamp(end, 0),
        ) else {
            break;
        };
        periods.push((from, to));
        start = end;
    }
    periods
}

fn grace(period_seconds: u64) -> Duration {
    Duration::from_secs(period_seconds.min(60))
}

fn run(ctx: &WorkerContext) {
    let config = &ctx.config.screening;
    let tick = Duration::from_millis((config.period_seconds * 1000 / 4).clamp(200, 30_000));
    while !ctx.stopped() {
        if let Err(e) = screen_pending(ctx) {
            tracing::error!(error = %e, "screening failed; will try again");
        }
        let mut slept = Duration::ZERO;
        while slept < tick && !ctx.stopped() {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}

fn screen_pending(ctx: &WorkerContext) -> Result<(), String> {
    let mut conn = ctx.pool.get().map_err(|e| e.to_string())?;
    screen_missed_periods(&mut conn, ctx.clock.now(), &ctx.config.screening)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Screens and stores every complete period not yet reported as of `now`
/// (up to [`CATCH_UP_PER_TICK`] of them), oldest first. Returns how many
/// reports it stored. Another instance may store a period first; its report
/// stands.
pub fn screen_missed_periods(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    config: &ScreeningConfig,
) -> Result<usize, diesel::result::Error> {
    let Some(last) = last_complete_period(now, config.period_seconds, grace(config.period_seconds))
    else {
        return Ok(0);
    };
    let newest = store::screened_until(conn)?;
    let first_entry = match newest {
        Some(_) => None,
        None => store::first_entry_at(conn)?,
    };
    let mut stored = 0;
    for (from, to) in periods_to_screen(
        last,
        newest,
        first_entry,
        config.period_seconds,
        CATCH_UP_PER_TICK,
    ) {
        if store::report_exists(conn, from.naive_utc())? {
            continue;
        }
        let report = store::screen(conn, from, to, config.volume_rule())?;
        store::store_report(conn, &ReportRow::of(&report, now))?;
        stored += 1;
        tracing::info!(
            period_start = %from,
            entries = report.entries_screened,
            flagged = report.counts.values().sum::<u64>(),
            unusual_actors = report.unusual_volume.len(),
            "access log screened"
        );
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::{last_complete_period, periods_to_screen};
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

    #[test]
    fn missed_periods_are_screened_oldest_first_and_in_steps() {
        let hour = 3_600;
        let last = (t(9, 0, 0), t(10, 0, 0));
        let starts = |periods: Vec<(DateTime<Utc>, DateTime<Utc>)>| {
            periods
                .iter()
                .map(|(from, to)| {
                    assert_eq!(*to - *from, chrono::Duration::hours(1));
                    from.format("%H").to_string()
                })
                .collect::<Vec<_>>()
        };
        // Up to date: only the last complete period, once.
        assert_eq!(
            starts(periods_to_screen(last, Some(t(9, 0, 0)), None, hour, 24)),
            ["09"]
        );
        assert!(periods_to_screen(last, Some(t(10, 0, 0)), None, hour, 24).is_empty());
        // Back from an outage: every missed period, oldest first, in steps.
        assert_eq!(
            starts(periods_to_screen(last, Some(t(5, 0, 0)), None, hour, 24)),
            ["05", "06", "07", "08", "09"]
        );
        assert_eq!(
            starts(periods_to_screen(last, Some(t(5, 0, 0)), None, hour, 2)),
            ["05", "06"]
        );
        // No report yet: from the period of the first entry.
        assert_eq!(
            starts(periods_to_screen(last, None, Some(t(7, 42, 5)), hour, 24)),
            ["07", "08", "09"]
        );
        // An empty log: just the last complete period.
        assert_eq!(
            starts(periods_to_screen(last, None, None, hour, 24)),
            ["09"]
        );
    }

    #[test]
    fn a_change_of_period_length_leaves_no_gap_and_no_overlap() {
        let span = |periods: Vec<(DateTime<Utc>, DateTime<Utc>)>| {
            periods
                .iter()
                .map(|(from, to)| format!("{}-{}", from.format("%H"), to.format("%H")))
                .collect::<Vec<_>>()
        };
        // Hourly reports up to 05:00, then four-hour periods: at 10:00 the
        // last complete one is 04:00-08:00, so 05:00-08:00 bridges to it.
        let four_hours = 4 * 3_600;
        let last = (t(4, 0, 0), t(8, 0, 0));
        assert_eq!(
            span(periods_to_screen(
                last,
                Some(t(5, 0, 0)),
                None,
                four_hours,
                24
            )),
            ["05-08"]
        );
        // The next tick after 12:00 goes on from 08:00.
        let last = (t(8, 0, 0), t(12, 0, 0));
        assert_eq!(
            span(periods_to_screen(
                last,
                Some(t(8, 0, 0)),
                None,
                four_hours,
                24
            )),
            ["08-12"]
        );
        // Back to hourly periods after a four-hour report that ended at 08:00.
        let last = (t(9, 0, 0), t(10, 0, 0));
        assert_eq!(
            span(periods_to_screen(last, Some(t(8, 0, 0)), None, 3_600, 24)),
            ["08-09", "09-10"]
        );
    }
}
