//! The integrator: assigns tree indices to queued entries and signs a
//! checkpoint per batch (see `db::ledger::integrate`).

use super::{nap, spawn_named, WorkerContext};
use crate::db::ledger;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

/// An integration of at least this many entries means the log is busy:
/// the next one waits `log.integrate_busy_interval_ms` instead of
/// `log.integrate_interval_ms`. Below a few hundred entries a second the
/// quiet interval holds and a receipt leaves within milliseconds; above
/// that, each integration's fixed cost (a dozen statements, a commit, a
/// signature, the announcer's and dispatcher's queries) is shared by more
/// entries instead of taking a growing share of the database (decision
/// 0020).
pub const BUSY_BATCH: u64 = 8;

/// How long to let entries gather after integrating `batch` of them.
pub fn pause_after(batch: u64, quiet: Duration, busy: Duration) -> Duration {
    if batch >= BUSY_BATCH {
        busy
    } else {
        quiet
    }
}

/// How often an idle integrator looks for entries other instances queued.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// The longest an idle integrator waits between looks. Each instance's own
/// commits wake it at once; polling only finds entries that no running
/// instance announced (appended by tools, or by an instance that stopped).
const SLOWEST_IDLE_POLL: Duration = Duration::from_secs(5);

pub(crate) fn spawn(
    ctx: WorkerContext,
    wake: Receiver<()>,
    announce: Option<Sender<u64>>,
) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("log-integrator", ctx.stop.clone(), move || {
        run(&ctx, &wake, announce.as_ref())
    })
}

fn run(ctx: &WorkerContext, wake: &Receiver<()>, announce: Option<&Sender<u64>>) {
    let quiet = Duration::from_millis(ctx.config.log.integrate_interval_ms);
    let busy = Duration::from_millis(ctx.config.log.integrate_busy_interval_ms);
    let mut idle_poll = IDLE_POLL;
    while !ctx.stopped() {
        nap(wake, idle_poll);
        loop {
            if ctx.stopped() {
                return;
            }
            let started = std::time::Instant::now();
            let outcome = integrate_once(ctx);
            idle_poll = IDLE_POLL;
            match outcome {
                Ok(Some((to, batch, full))) => {
                    if let Some(tx) = announce {
                        let _ = tx.send(to);
                    }
                    ctx.log.deliveries_queued();
                    if !full {
                        // Let more entries gather: one checkpoint per
                        // interval, not per entry.
                        std::thread::sleep(pause_after(batch, quiet, busy));
                    }
                }
                Ok(None) => {
                    // Finding the queue empty is slow while a large
                    // transaction has appended but not committed (a release
                    // of a million patients): PostgreSQL steps over every
                    // row it cannot see yet. The next look for other
                    // instances' entries waits ten times as long, so looking
                    // never takes more than a tenth of a backend. This
                    // instance's own commits still wake it at once.
                    idle_poll = (started.elapsed() * 10).clamp(IDLE_POLL, SLOWEST_IDLE_POLL);
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "log integration failed; retrying");
                    std::thread::sleep(IDLE_POLL);
                    break;
                }
            }
        }
    }
}

/// One integration; returns the new size, how many entries it took and
/// whether the batch was full.
fn integrate_once(ctx: &WorkerContext) -> Result<Option<(u64, u64, bool)>, String> {
    let mut conn = ctx.pool.get().map_err(|e| e.to_string())?;
    let batch = ctx.config.log.integrate_batch;
    let done = ledger::integrate(
        &mut conn,
        &ctx.log.signer,
        &ctx.log.origin,
        ctx.clock.now(),
        batch,
    )
    .map_err(|e| e.to_string())?;
    Ok(done.map(|d| {
        tracing::debug!(from = d.from, to = d.to, "log entries integrated");
        let taken = d.to - d.from;
        (d.to, taken, taken as usize >= batch)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_log_waits_longer_between_integrations() {
        let (quiet, busy) = (Duration::from_millis(5), Duration::from_millis(25));
        assert_eq!(pause_after(1, quiet, busy), quiet);
        assert_eq!(pause_after(BUSY_BATCH - 1, quiet, busy), quiet);
        assert_eq!(pause_after(BUSY_BATCH, quiet, busy), busy);
        assert_eq!(pause_after(50_000, quiet, busy), busy);
    }
}
