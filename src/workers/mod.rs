//! Background work behind the access log, one thread each:
//! - the integrator gives queued entries their tree index and signs a
//!   checkpoint;
//! - the announcer turns new tree sizes into live-stream frames (fed by the
//!   integrator on SQLite, by PostgreSQL LISTEN/NOTIFY across instances);
//! - the dispatcher delivers webhooks and NATS publications with retries
//!   and dead-lettering;
//! - screening stores a report of each completed period for the auditors;
//! - the coming-of-age sweep recalls, once a day, what releases had of
//!   patients whose proxy's permits lapsed that day.
//!
//! Every instance runs all of them. Integration is serialized by a
//! database lock and deliveries are claimed with leases, so any number of
//! instances share the work.

pub mod announcer;
pub mod came_of_age;
pub mod dispatcher;
mod email;
pub mod integrator;
pub mod screening;

use crate::app::LogRuntime;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::db::{Backend, DbPool};
use crate::ledger::checkpoint::NoteSigner;
use crate::notify::hub::Hub;
use crate::pseudonym::keyring::{KeyDomain, Keyring};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The checkpoint signer and verifier keys of every version.
pub fn checkpoint_keys(keys: &Keyring, origin: &str) -> Result<(NoteSigner, Vec<String>), String> {
    let signer_of = |k: &crate::pseudonym::keyring::DomainKey| {
        let pkcs8 = k
            .ed25519_pkcs8()
            .ok_or("the checkpoint key is not an Ed25519 seed")?;
        NoteSigner::from_pkcs8(origin, pkcs8).map_err(|e| format!("checkpoint key: {e}"))
    };
    let signer = signer_of(keys.current(KeyDomain::Checkpoint))?;
    let verifier_keys = keys
        .newest_first(KeyDomain::Checkpoint)
        .map(|k| signer_of(k).map(|s| s.verifier_key()))
        .collect::<Result<Vec<_>, String>>()?;
    Ok((signer, verifier_keys))
}

/// Stops the workers when dropped (with the last handle on the state) and
/// waits for them, so that none is still using a connection or TLS while
/// the process exits: each notices the stop within its poll interval
/// (at most half a second), or when its current webhook request ends.
pub struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let me = std::thread::current().id();
        for thread in self.threads.drain(..) {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

/// Everything a worker thread needs.
#[derive(Clone)]
pub(crate) struct WorkerContext {
    pub pool: DbPool,
    pub clock: SharedClock,
    pub log: Arc<LogRuntime>,
    pub keys: Arc<Keyring>,
    pub config: Arc<Config>,
    pub stop: Arc<AtomicBool>,
}

impl WorkerContext {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Waits for a wake-up or the timeout; folds queued wake-ups into one.
pub(crate) fn nap(wake: &Receiver<()>, timeout: Duration) {
    let _ = wake.recv_timeout(timeout);
    while wake.try_recv().is_ok() {}
}

/// Builds the log runtime and starts the workers.
pub fn start(
    config: &Config,
    pool: DbPool,
    backend: Backend,
    clock: SharedClock,
    keys: Arc<Keyring>,
    data_use: &crate::access::DataUsePolicy,
) -> Result<(Arc<LogRuntime>, Workers), String> {
    let (signer, verifier_keys) = checkpoint_keys(&keys, &config.log.origin)?;
    {
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        let nats_subject = config
            .notify
            .nats_url
            .as_ref()
            .map(|_| config.notify.nats_subject.as_str());
        crate::db::notify::sync_nats_endpoint(&mut conn, nats_subject, clock.now().naive_utc())
            .map_err(|e| format!("cannot record the NATS endpoint: {e}"))?;
    }
    let (wake_integrator, integrator_rx) = sync_channel(1);
    let (wake_dispatcher, dispatcher_rx) = sync_channel(1);
    let log = Arc::new(LogRuntime::new(
        (config.log.origin.clone(), signer, verifier_keys),
        Arc::new(Hub::default()),
        wake_integrator,
        wake_dispatcher,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = WorkerContext {
        pool,
        clock,
        log: log.clone(),
        keys,
        config: Arc::new(config.clone()),
        stop: stop.clone(),
    };
    let (sizes_tx, sizes_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    let announce_locally = match backend {
        Backend::Sqlite => Some(sizes_tx),
        Backend::Postgres => {
            threads.push(announcer::spawn_listener(ctx.clone(), sizes_tx)?);
            None
        }
    };
    threads.push(integrator::spawn(
        ctx.clone(),
        integrator_rx,
        announce_locally,
    )?);
    threads.push(announcer::spawn(ctx.clone(), sizes_rx)?);
    if config.screening.enabled {
        threads.push(screening::spawn(ctx.clone())?);
    }
    if data_use.release.proxy_consent_lapses_at_majority {
        threads.push(came_of_age::spawn(ctx.clone(), Arc::new(data_use.clone()))?);
    }
    if config.notify.dispatch {
        threads.push(dispatcher::spawn(ctx, dispatcher_rx)?);
    }
    Ok((log, Workers { stop, threads }))
}

/// Worker panics by worker name, since the process started.
static PANICS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
/// Deliveries this process dead-lettered, since it started.
static DEAD_LETTERED: AtomicU64 = AtomicU64::new(0);

/// How often each worker panicked (and was restarted) in this process.
pub fn panics_by_worker() -> Vec<(String, u64)> {
    PANICS
        .lock()
        .map(|p| p.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default()
}

/// How many deliveries this process dead-lettered.
pub fn dead_lettered() -> u64 {
    DEAD_LETTERED.load(Ordering::Relaxed)
}

pub(crate) fn count_dead_letter() {
    DEAD_LETTERED.fetch_add(1, Ordering::Relaxed);
}

fn count_panic(worker: &str) {
    if let Ok(mut panics) = PANICS.lock() {
        *panics.entry(worker.to_owned()).or_default() += 1;
    }
}

/// How long a worker that panicked waits before it runs again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Starts a worker thread that is restarted if it panics. A worker that
/// died silently would leave entries unintegrated or notifications unsent
/// while the service kept answering, so a panic is logged and the worker
/// runs again after [`RESTART_DELAY`]. `body` returns when `stop` is set.
pub(crate) fn spawn_named(
    name: &str,
    stop: Arc<AtomicBool>,
    body: impl FnMut() + Send + 'static,
) -> Result<JoinHandle<()>, String> {
    let worker = name.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            supervise(&worker, &stop, body, RESTART_DELAY);
        })
        .map_err(|e| format!("cannot start the {name} thread: {e}"))
}

/// Runs `body` until it returns normally or `stop` is set, running it again
/// `delay` after each panic. Returns how many times it panicked.
fn supervise(worker: &str, stop: &AtomicBool, mut body: impl FnMut(), delay: Duration) -> usize {
    let mut panics = 0;
    loop {
        // The worker's state lives in the database and in channels, which
        // stay consistent across an unwind; nothing half-updated is kept.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut body)) {
            Ok(()) => return panics,
            Err(_) => {
                panics += 1;
                count_panic(worker);
                tracing::error!(worker, panics, "worker panicked; restarting");
                if stop.load(Ordering::Relaxed) {
                    return panics;
                }
                std::thread::sleep(delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::supervise;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// Supervises a body that panics on its first `failing` runs; returns
    /// (panics reported, runs made).
    fn supervised(stopped: bool, failing: usize) -> (usize, usize) {
        let stop = AtomicBool::new(stopped);
        let mut runs = 0;
        let body = || {
            runs += 1;
            if runs <= failing {
                panic!("failure {runs}");
            }
        };
        let panics = supervise("test", &stop, body, Duration::from_millis(1));
        (panics, runs)
    }

    #[test]
    fn a_worker_that_panics_runs_again() {
        assert_eq!(supervised(false, 2), (2, 3));
        let counted = super::panics_by_worker();
        assert!(
            counted
                .iter()
                .any(|(worker, n)| worker == "test" && *n >= 2),
            "panics are counted for the metrics: {counted:?}"
        );
    }

    #[test]
    fn a_stopped_worker_is_not_restarted() {
        assert_eq!(supervised(true, usize::MAX), (1, 1));
    }
}
