//! What an action may reach: storage, keys, policies and the clock. Nothing
//! of HTTP: the JSON API, the pages and the background workers hand actions
//! the same context.

use super::caches::{PublishedVersions, VersionHistories};
use super::log_runtime::LogRuntime;
use super::ratelimit::RateLimiter;
use super::AppError;
use crate::access::duo::DiseaseHierarchy;
use crate::access::handle::HandleKeys;
use crate::access::visa::VisaKeys;
use crate::access::DataUsePolicy;
use crate::auth::policy::PolicyEngine;
use crate::clock::SharedClock;
use crate::config::PatientsConfig;
use crate::consent::item_catalog::ItemCatalog;
use crate::consent::DocumentVersionId;
use crate::db::{write_transaction, Backend, DbConnection, DbPool, PooledDb};
use crate::ed25519::Ed25519Signer;
use crate::ledger::entry::LogEntry;
use crate::ledger::screening::VolumeRule;
use crate::pseudonym::keyring::Keyring;
use chrono::{DateTime, SubsecRound, Utc};
use std::sync::Arc;

/// Where webhooks may point (`notify.*`), checked when one is registered.
#[derive(Debug, Clone, Default)]
pub struct WebhookRules {
    /// `http://` URLs are accepted (tests only; production refuses it).
    pub allow_http: bool,
    /// URLs may name or resolve to private or local addresses.
    pub allow_private_targets: bool,
    /// Ports a URL may use; empty: any.
    pub ports: Vec<u16>,
}

pub struct Context {
    pub pool: DbPool,
    pub backend: Backend,
    pub clock: SharedClock,
    /// Pseudonym, sample, project, vault, token, handle and visa keys.
    pub keys: Arc<Keyring>,
    /// The Cedar policies: who may do what to which resource.
    pub policy: PolicyEngine,
    /// Scope items and their DUO terms (`policies/scope-items.toml`).
    pub catalog: ItemCatalog,
    /// Review, release and purpose rules (`policies/data-use.toml`).
    pub data_use: DataUsePolicy,
    pub diseases: DiseaseHierarchy,
    /// Signs and checks dataset handles.
    pub handles: HandleKeys,
    /// Signs GA4GH Passport visas for members of approved uses.
    pub visas: VisaKeys,
    pub versions: PublishedVersions,
    pub histories: VersionHistories,
    /// Base of canonical URIs, without a trailing slash.
    pub public_base_url: String,
    /// Samples per round trip during a release (`database.release_page`).
    pub release_page: i64,
    /// Receipts a reconnecting live stream replays at most
    /// (`notify.stream_replay_page`).
    pub stream_replay_page: i64,
    /// The access log's signer and keys, the live-stream hub, and the
    /// wake-ups of the workers that integrate and deliver.
    pub log: Arc<LogRuntime>,
    /// Signs patient tokens; the only issuer trusted for the `patient` role.
    pub patient_tokens: Ed25519Signer,
    /// The `aud` every bearer token carries (`auth.audience`).
    pub token_audience: String,
    pub patients: PatientsConfig,
    pub webhooks: WebhookRules,
    /// Thresholds of on-demand screening (the periodic one reads config).
    pub screening_volume: VolumeRule,
    /// Enrollment and sign-in attempts per client address.
    pub attempts: RateLimiter,
    /// Binds the portal's passkeys to its origin; `None`: no portal pages.
    pub passkeys: Option<Arc<webauthn_rs::Webauthn>>,
    /// Releases and visa requests per member
    /// (`data_access.member_requests_per_minute`).
    pub member_requests: RateLimiter,
}

impl Context {
    /// Now, at the precision both databases store (microseconds), so a value
    /// returned before and after a round trip through storage is identical.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(6)
    }

    /// The canonical URI of a document version (FHIR `policy.uri`).
    pub fn policy_uri(&self, version: DocumentVersionId) -> String {
        format!(
            "{}/v1/documents/{}/versions/{}",
            self.public_base_url, version.family, version.number
        )
    }

    /// A pooled connection.
    pub fn connection(&self) -> Result<PooledDb, AppError> {
        Ok(self.pool.get()?)
    }

    /// Work outside a transaction on one pooled connection: reads that log
    /// nothing, or work that runs its own transactions.
    pub fn read<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        work(&mut *self.connection()?)
    }

    /// One transaction on a pooled connection: everything `work` writes
    /// commits together, or nothing does.
    pub fn write<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        write_transaction(&mut *self.connection()?, work)
    }

    /// A logged read: runs `read` on one connection, then appends the
    /// read's access-log entries (with their notifications) atomically. If
    /// the append fails the read fails, so nothing is shown unlogged. A
    /// read writes nothing else, so it needs no transaction of its own; on
    /// PostgreSQL this saves two round trips per read (decision 0009).
    pub fn read_logged<T>(
        &self,
        entries: Vec<LogEntry>,
        read: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        self.read_then_log(move |conn| Ok((read(conn)?, entries)))
    }

    /// A logged read whose entries depend on what it read (the patient's
    /// hospital, say): `read` returns the value and its entries, which are
    /// appended atomically on the same connection before anything is shown.
    pub fn read_then_log<T>(
        &self,
        read: impl FnOnce(&mut DbConnection) -> Result<(T, Vec<LogEntry>), AppError>,
    ) -> Result<T, AppError> {
        let mut conn = self.connection()?;
        let (value, entries) = read(&mut conn)?;
        crate::db::ledger::append_atomically(&mut conn, &entries)?;
        self.log.entries_committed();
        Ok(value)
    }
}
