//! The integrator: assigns tree indices to queued entries and signs a
//! checkpoint per batch (see `db::ledger::integrate`).

use super::{nap, spawn_named, WorkerContext};
use crate::db::ledger;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

/// How often an idle integrator looks for entries other instances queued.
const IDLE_POLL: Duration = Duration::from_millis(200);

pub(crate) fn spawn(
    ctx: WorkerContext,
    wake: Receiver<()>,
    announce: Option<Sender<u64>>,
) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("log-integrator", move || run(ctx, wake, announce))
}

fn run(ctx: WorkerContext, wake: Receiver<()>, announce: Option<Sender<u64>>) {
    let interval = Duration::from_millis(ctx.config.log.integrate_interval_ms);
    while !ctx.stopped() {
        nap(&wake, IDLE_POLL);
        loop {
            if ctx.stopped() {
                return;
            }
            match integrate_once(&ctx) {
                Ok(Some((to, full))) => {
                    if let Some(tx) = &announce {
                        let _ = tx.send(to);
                    }
                    ctx.log.deliveries_queued();
                    if !full {
                        // Let a few more entries gather: one checkpoint per
                        // interval, not per entry.
                        std::thread::sleep(interval);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "log integration failed; retrying");
                    std::thread::sleep(IDLE_POLL);
                    break;
                }
            }
        }
    }
}

/// One integration; returns the new size and whether the batch was full.
fn integrate_once(ctx: &WorkerContext) -> Result<Option<(u64, bool)>, String> {
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
        (d.to, (d.to - d.from) as usize >= batch)
    }))
}
