//! The coming-of-age sweep: once a day (in Japan), one instance recalls what live
//! releases had of patients who came of age that day on their proxy's
//! permits alone, and tells each such patient (decisions 0026 and 0027). A day of majority is a date
//! passing, not an event anyone records, so without this the members would
//! learn of it only when their next resolution withholds the sample.

use super::{spawn_named, WorkerContext};
use crate::access::DataUsePolicy;
use crate::app::recalls::CameOfAge;
use chrono::SubsecRound;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn spawn(
    ctx: WorkerContext,
    policy: Arc<DataUsePolicy>,
) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("came-of-age-sweep", ctx.stop.clone(), move || {
        run(&ctx, &policy)
    })
}

fn run(ctx: &WorkerContext, policy: &DataUsePolicy) {
    let tick = Duration::from_millis(ctx.config.recall.came_of_age_check_ms.max(100));
    while !ctx.stopped() {
        match sweep(ctx, policy) {
            Ok(done) => {
                if done.told > 0 {
                    tracing::info!(
                        told = done.told,
                        "patients told their proxy's permits lapsed"
                    );
                    ctx.log.entries_committed();
                }
                if done.recalled > 0 {
                    tracing::info!(
                        recalled = done.recalled,
                        "recall notices for patients who came of age"
                    );
                    ctx.log.deliveries_queued();
                }
            }
            Err(e) => tracing::error!(error = %e, "coming-of-age sweep failed; will try again"),
        }
        let mut slept = Duration::ZERO;
        while slept < tick && !ctx.stopped() {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}

fn sweep(ctx: &WorkerContext, policy: &DataUsePolicy) -> Result<CameOfAge, String> {
    let mut conn = ctx.pool.get().map_err(|e| e.to_string())?;
    // Log entries keep microseconds, as the database does.
    let now = ctx.clock.now().trunc_subsecs(6);
    crate::app::recalls::sweep_came_of_age(&mut conn, policy, now).map_err(|e| e.to_string())
}
