//! What actions and workers share about the access log: the checkpoint
//! signer and keys, the live-stream hub, and the wake-ups that tell the
//! workers there is new work, so none of them waits out its poll interval.

use crate::ledger::checkpoint::NoteSigner;
use crate::notify::hub::Hub;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

pub struct LogRuntime {
    pub origin: String,
    pub signer: NoteSigner,
    /// Verifier keys of every checkpoint key version, newest first.
    pub verifier_keys: Vec<String>,
    pub hub: Arc<Hub>,
    wake_integrator: SyncSender<()>,
    wake_dispatcher: SyncSender<()>,
}

impl LogRuntime {
    pub fn new(
        (origin, signer, verifier_keys): (String, NoteSigner, Vec<String>),
        hub: Arc<Hub>,
        wake_integrator: SyncSender<()>,
        wake_dispatcher: SyncSender<()>,
    ) -> Self {
        LogRuntime {
            origin,
            signer,
            verifier_keys,
            hub,
            wake_integrator,
            wake_dispatcher,
        }
    }

    /// Call after committing a transaction that appended entries.
    pub fn entries_committed(&self) {
        let _ = self.wake_integrator.try_send(());
    }

    /// Call after committing a transaction that queued deliveries which do
    /// not follow an entry (recall notices).
    pub fn deliveries_queued(&self) {
        let _ = self.wake_dispatcher.try_send(());
    }
}
