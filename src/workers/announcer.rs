//! Live streams: turns each new tree size into notification frames for the
//! patients with an open stream in this process.
//!
//! On SQLite the integrator reports new sizes directly. On PostgreSQL every
//! instance LISTENs on the log channel, so a patient connected to instance
//! A hears about an entry instance B wrote and instance C integrated.

use super::{spawn_named, WorkerContext};
use crate::db::{connect_one, ledger, DbConnection};
use crate::notify;
use diesel::RunQueryDsl;
use secrecy::ExposeSecret;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

/// How often the listener polls its socket for notifications. libpq's
/// notification read is non-blocking; this bounds the added latency.
const LISTEN_POLL: Duration = Duration::from_millis(2);

pub(crate) fn spawn(
    ctx: WorkerContext,
    sizes: Receiver<u64>,
) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("log-announcer", ctx.stop.clone(), move || run(&ctx, &sizes))
}

fn run(ctx: &WorkerContext, sizes: &Receiver<u64>) {
    // Streams opened later replay what they missed from the log; live
    // frames start from the size at start-up.
    let mut seen = ctx
        .pool
        .get()
        .ok()
        .and_then(|mut conn| ledger::size(&mut conn).ok());
    while !ctx.stopped() {
        let mut to = match sizes.recv_timeout(Duration::from_millis(200)) {
            Ok(size) => size,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while let Ok(more) = sizes.try_recv() {
            to = to.max(more);
        }
        match announce(ctx, seen, to) {
            // A catch-up may report a size already announced.
            Ok(()) => seen = Some(seen.map_or(to, |s| s.max(to))),
            Err(e) => tracing::error!(error = %e, "live notification failed"),
        }
    }
}

/// Sends frames for entries `[seen, to)` to their patients' streams.
fn announce(ctx: &WorkerContext, seen: Option<u64>, to: u64) -> Result<(), String> {
    let hub = &ctx.log.hub;
    let from = match seen {
        Some(s) if s >= to => return Ok(()),
        Some(s) => s,
        None => return Ok(()),
    };
    if hub.is_empty() {
        return Ok(());
    }
    let mut conn = ctx.pool.get().map_err(|e| e.to_string())?;
    let mut wanted = ledger::entries_between(&mut conn, from, to).map_err(|e| e.to_string())?;
    wanted.retain(|e| hub.wants(&e.row.patient_pseudonym));
    if wanted.is_empty() {
        return Ok(());
    }
    let note = ledger::checkpoint_at(&mut conn, to)
        .map_err(|e| e.to_string())?
        .ok_or("no checkpoint for the announced size")?
        .note;
    for (pseudonym, n) in notify::build(&mut conn, &wanted, to, &note).map_err(|e| e.to_string())? {
        hub.publish(&pseudonym, Arc::from(notify::sse_frame(&n)));
    }
    Ok(())
}

/// PostgreSQL: a dedicated connection LISTENing on the log channel feeds
/// new sizes to the announcer. Reconnects after errors; nothing integrated
/// while it was away is missed, since each (re)connection first tells the
/// announcer the size it finds once listening.
pub(crate) fn spawn_listener(
    ctx: WorkerContext,
    sizes: Sender<u64>,
) -> Result<std::thread::JoinHandle<()>, String> {
    spawn_named("log-listener", ctx.stop.clone(), move || {
        let url = ctx.config.database.url.expose_secret().to_owned();
        while !ctx.stopped() {
            if let Err(e) = listen(&ctx, &url, &sizes) {
                tracing::warn!(error = %e, "log channel listener reconnecting");
                std::thread::sleep(RECONNECT_PAUSE);
            }
        }
    })
}

/// The pause before the listener connects again: short, since the
/// catch-up on reconnection bounds what a stream waits by it.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// How the listener's connection names itself to PostgreSQL
/// (`pg_stat_activity.application_name`), for operators and tests.
pub const LISTENER_APPLICATION_NAME: &str = "genomegate-log-listener";

fn listen(ctx: &WorkerContext, url: &str, sizes: &Sender<u64>) -> Result<(), String> {
    let mut conn = connect_one(url).map_err(|e| e.to_string())?;
    {
        let DbConnection::Postgresql(pg) = &mut conn else {
            return Err("LISTEN needs PostgreSQL".into());
        };
        diesel::sql_query(format!(
            "SET application_name = '{LISTENER_APPLICATION_NAME}'"
        ))
        .execute(pg)
        .map_err(|e| e.to_string())?;
        diesel::sql_query(format!("LISTEN {}", ledger::LOG_CHANNEL))
            .execute(pg)
            .map_err(|e| e.to_string())?;
    }
    // A size notified before this LISTEN (while a previous connection was
    // being replaced) was heard by nobody: catch up from the size now.
    let caught_up = ledger::size(&mut conn).map_err(|e| e.to_string())?;
    if sizes.send(caught_up).is_err() {
        return Ok(());
    }
    let DbConnection::Postgresql(pg) = &mut conn else {
        return Err("LISTEN needs PostgreSQL".into());
    };
    let mut idle = Duration::ZERO;
    while !ctx.stopped() {
        let mut heard = false;
        for note in pg.notifications_iter() {
            let note = note.map_err(|e| e.to_string())?;
            if let Ok(size) = note.payload.parse::<u64>() {
                heard = true;
                if sizes.send(size).is_err() {
                    return Ok(());
                }
            }
        }
        if heard {
            idle = Duration::ZERO;
        } else {
            std::thread::sleep(LISTEN_POLL);
            idle += LISTEN_POLL;
            // A dead socket yields no notifications and no error: probe it
            // now and then.
            if idle >= Duration::from_secs(5) {
                diesel::sql_query("SELECT 1")
                    .execute(pg)
                    .map_err(|e| e.to_string())?;
                idle = Duration::ZERO;
            }
        }
    }
    Ok(())
}
