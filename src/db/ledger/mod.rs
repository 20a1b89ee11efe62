//! Storage of the access log: entries (with their outbox rows), the tree's
//! leaves and nodes, signed checkpoints and notification deliveries.
//!
//! Two steps, as in Trillian and other transparency logs:
//! - [`append`] runs inside the transaction of the action being logged. It
//!   only inserts, so concurrent actions never wait on one another.
//! - [`integrate`] gives queued entries their tree indices, stores the
//!   nodes they complete (O(log n) reads per batch through
//!   [`Frontier`]), signs a checkpoint and queues webhook and NATS
//!   deliveries, all in one transaction that holds the log's lock.

use super::documents::utc;
use super::schema::{
    access_log_checkpoints as checkpoints, access_log_entries as entries,
    access_log_leaves as leaves, access_log_nodes as nodes, notification_deliveries as deliveries,
    notification_endpoints as endpoints, notification_outbox as outbox, patient_preferences,
    patients,
};
use super::{write_transaction, DbConnection};
use crate::db_run;
use crate::ledger::checkpoint::{Checkpoint, NoteSigner};
use crate::ledger::entry::{IndexedFields, LogAction, LogEntry};
use crate::ledger::merkle::{self, leaf_hash, Frontier, Hash};
use crate::ledger::verify::{InOrder, Leaf, LogChecker, NodePosition, StoredCheckpoint};
use chrono::Timelike;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::{BTreeSet, HashMap};

mod append;
pub use append::*;
mod integrate;
pub use integrate::*;
mod proofs;
pub use proofs::*;
mod read;
pub use read::*;
mod verify;
pub use verify::*;

/// Rows per multi-row INSERT: below SQLite's bind-parameter limit for every
/// table here.
const CHUNK: usize = 4_000;
/// Entries per append statement when a large batch is appended in parts.
const APPEND_PART: usize = 10_000;

/// The advisory lock key that serializes integration on PostgreSQL
/// ("gglog" in ASCII).
const INTEGRATION_LOCK: i64 = 0x67_67_6c_6f_67;

/// The PostgreSQL channel an integration announces its new tree size on.
pub const LOG_CHANNEL: &str = "genomegate_log";

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = entries)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct EntryRow {
    pub seq: i64,
    pub entry: Vec<u8>,
    pub recorded_at: NaiveDateTime,
    pub patient_pseudonym: String,
    pub actor_org: String,
    pub actor_user: String,
    pub action: String,
}

impl EntryRow {
    /// Whether the indexed columns say what the entry bytes say.
    pub fn columns_match(&self, entry: &IndexedFields<'_>) -> bool {
        self.recorded_at == entry.at.naive_utc()
            && self.patient_pseudonym == entry.patient
            && self.actor_org == entry.actor.org
            && self.actor_user == entry.actor.user
            && self.action == entry.action.as_str()
    }
}

fn corrupt(what: &str) -> DieselError {
    DieselError::DeserializationError(format!("corrupt {what} in the access log").into())
}

fn to_hash(bytes: &[u8]) -> Result<Hash, DieselError> {
    bytes.try_into().map_err(|_| corrupt("node hash"))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
