//! What every handler can reach.

use super::metrics::Metrics;
use crate::auth::jwt::JwtVerifier;
use crate::auth::policy::{Action, PolicyEngine, Resource};
use crate::auth::Caller;
use crate::clock::SharedClock;
use crate::consent::item_catalog::ItemCatalog;
use crate::db::{Backend, DbConnection, DbPool};
use crate::error::ApiError;
use crate::pseudonym::keyring::Keyring;
use actix_web::web;

/// Published versions never change their content, so it is read once per
/// process; only status and period are read each time (another instance
/// may have retired the version).
#[derive(Default)]
pub struct PublishedVersions(
    std::sync::RwLock<
        std::collections::HashMap<
            crate::consent::DocumentVersionId,
            std::sync::Arc<crate::consent::DocumentVersion>,
        >,
    >,
);

impl PublishedVersions {
    /// The content of version `id` as last seen, without reading its
    /// current status: for callers whose own SQL checks the status. Reads
    /// (and caches) it on first use.
    pub fn content(
        &self,
        conn: &mut DbConnection,
        id: crate::consent::DocumentVersionId,
    ) -> Result<Option<std::sync::Arc<crate::consent::DocumentVersion>>, ApiError> {
        if let Some(v) = self.0.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(Some(v));
        }
        Ok(self.load(conn, id)?.map(std::sync::Arc::new))
    }

    /// The version named `id` with its current status, or `None`.
    pub fn load(
        &self,
        conn: &mut DbConnection,
        id: crate::consent::DocumentVersionId,
    ) -> Result<Option<crate::consent::DocumentVersion>, ApiError> {
        use crate::consent::DocumentStatus;
        use crate::db::documents;
        let Some(lifecycle) = documents::lifecycle(conn, id)? else {
            return Ok(None);
        };
        if lifecycle.status == DocumentStatus::Draft {
            return Ok(documents::find(conn, id)?);
        }
        let cached = self.0.read().ok().and_then(|m| m.get(&id).cloned());
        let content = match cached {
            Some(v) => v,
            None => {
                let Some(v) = documents::find(conn, id)? else {
                    return Ok(None);
                };
                let v = std::sync::Arc::new(v);
                if let Ok(mut m) = self.0.write() {
                    m.insert(id, v.clone());
                }
                v
            }
        };
        let mut version = (*content).clone();
        version.status = lifecycle.status;
        version.effective_from = lifecycle.effective_from;
        version.effective_to = lifecycle.effective_to;
        Ok(Some(version))
    }
}

/// Each family's published version history, as last read. A version's
/// place in the history (number, effective date, item changes) is fixed
/// when it is published, and no version is ever unpublished, so a cached
/// history is current exactly when it holds as many versions as the
/// database says are published. Consent reads learn that count in the
/// statement that reads the events, so every instance sees a new version
/// at once, without any invalidation message (decision 0016).
#[derive(Default)]
pub struct VersionHistories(
    std::sync::RwLock<
        std::collections::HashMap<
            crate::consent::DocumentFamily,
            std::sync::Arc<crate::consent::VersionHistory>,
        >,
    >,
);

impl VersionHistories {
    /// The history of `family` when `published` versions are published:
    /// the cached one if it holds that many, otherwise read (and cached).
    pub fn current(
        &self,
        conn: &mut DbConnection,
        family: crate::consent::DocumentFamily,
        published: i64,
    ) -> Result<std::sync::Arc<crate::consent::VersionHistory>, ApiError> {
        let cached = self.0.read().ok().and_then(|m| m.get(&family).cloned());
        if let Some(history) = cached.filter(|h| h.len() as i64 == published) {
            return Ok(history);
        }
        let history = std::sync::Arc::new(crate::db::documents::history(conn, family)?);
        if let Ok(mut m) = self.0.write() {
            m.insert(family, history.clone());
        }
        Ok(history)
    }
}

pub struct AppState {
    /// Review, release and purpose rules from `policies/data-use.toml`.
    pub data_use: crate::access::DataUsePolicy,
    pub diseases: crate::access::duo::DiseaseHierarchy,
    /// Signs and checks dataset handles.
    pub handles: crate::access::handle::HandleKeys,
    /// Signs GA4GH Passport visas for members of approved uses.
    pub visas: crate::access::visa::VisaKeys,
    pub versions: PublishedVersions,
    pub histories: VersionHistories,
    pub pool: DbPool,
    pub backend: Backend,
    pub verifier: JwtVerifier,
    pub policy: PolicyEngine,
    pub keys: std::sync::Arc<Keyring>,
    pub catalog: ItemCatalog,
    pub clock: SharedClock,
    /// Base of canonical URIs, without a trailing slash.
    pub public_base_url: String,
    pub metrics: Metrics,
    pub body_limit: usize,
    /// Samples per round trip during a release (`database.release_page`).
    pub release_page: i64,
    /// Receipts a reconnecting live stream replays at most
    /// (`notify.stream_replay_page`).
    pub stream_replay_page: i64,
    /// The access log's signer, keys and live-stream hub.
    pub log: std::sync::Arc<crate::workers::LogRuntime>,
    /// Signs patient tokens; the only issuer trusted for the `patient` role.
    pub patient_tokens: crate::auth::dev::Ed25519Signer,
    pub patients: crate::config::PatientsConfig,
    pub allow_http_webhooks: bool,
    /// Webhook URLs may name private or local addresses (`notify.allow_private_targets`).
    pub allow_private_webhook_targets: bool,
    /// Ports webhook URLs may use; empty: any (`notify.webhook_ports`).
    pub webhook_ports: Vec<u16>,
    /// Thresholds of on-demand screening (the periodic one reads config).
    pub screening_volume: crate::ledger::screening::VolumeRule,
    pub limiter: super::ratelimit::RateLimiter,
    /// Releases and visa requests per member (`data_access.member_requests_per_minute`).
    pub member_limiter: super::ratelimit::RateLimiter,
    /// Stops the background workers when the state goes away.
    pub workers: crate::workers::Workers,
}

impl AppState {
    /// Counts a member's request of `kind` (`release`, `visas`): refused
    /// with `Retry-After` past `data_access.member_requests_per_minute`.
    pub fn limit_member(
        &self,
        kind: &str,
        member: &crate::auth::Principal,
    ) -> Result<(), ApiError> {
        self.member_limiter
            .allow(&format!("{kind}:{}:{}", member.org, member.subject))
            .map_err(|retry_after_seconds| ApiError::RateLimited {
                retry_after_seconds,
            })
    }

    /// Runs blocking database work on the blocking pool with a pooled
    /// connection.
    pub async fn db<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await?
    }

    /// A logged read: runs `read` on one connection, then appends the
    /// read's access-log entries (with their outbox rows) atomically. If
    /// the append fails the request fails, so nothing is shown unlogged.
    /// A read writes nothing else, so it needs no transaction of its own;
    /// on PostgreSQL this saves two round trips per read.
    pub async fn read_logged<T, F>(
        &self,
        entries: Vec<crate::ledger::entry::LogEntry>,
        read: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    {
        self.read_then_log(move |conn| Ok((read(conn)?, entries)))
            .await
    }

    /// A logged read whose entries depend on what it read (the patient's
    /// hospital, say): `read` returns the value and its entries, which are
    /// appended atomically on the same connection before anything is shown.
    /// One round of database work, so one pooled connection per request.
    pub async fn read_then_log<T, F>(&self, read: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<(T, Vec<crate::ledger::entry::LogEntry>), ApiError>
            + Send
            + 'static,
    {
        let value = self
            .db(move |conn| {
                let (value, entries) = read(conn)?;
                crate::db::ledger::append_atomically(conn, &entries)?;
                Ok(value)
            })
            .await?;
        self.log.entries_committed();
        Ok(value)
    }

    /// The enforcement point for everything that is not a patient.
    /// Anonymous callers learn they must authenticate; authenticated ones
    /// that policy denies get 403.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource<'_>,
    ) -> Result<(), ApiError> {
        if self.policy.is_allowed(caller, action, resource) {
            Ok(())
        } else if matches!(caller, Caller::Anonymous) {
            Err(ApiError::MissingToken)
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// The enforcement point for a patient. A caller that may not even see
    /// the patient gets the same 404 as for a patient that does not exist,
    /// so it cannot probe which pseudonyms are registered. `centers` are the
    /// sequencing centres the patient's hospital has authorised.
    pub fn authorize_patient(
        &self,
        caller: &Caller,
        action: Action,
        pseudonym: &str,
        hospital: &str,
        centers: &[String],
    ) -> Result<(), ApiError> {
        let resource = Resource::Patient {
            pseudonym,
            hospital,
            centers,
        };
        if matches!(caller, Caller::Anonymous) {
            return Err(ApiError::MissingToken);
        }
        if self.policy.is_allowed(caller, action, &resource) {
            return Ok(());
        }
        let visible = [
            Action::ConsentRead,
            Action::SampleRead,
            Action::RecontactRead,
        ]
        .into_iter()
        .any(|read| self.policy.is_allowed(caller, read, &resource));
        if visible {
            Err(ApiError::Forbidden)
        } else {
            Err(ApiError::NotFound)
        }
    }

    /// Now, at the precision both databases store (microseconds), so a value
    /// returned before and after a round trip through storage is identical.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        use chrono::SubsecRound;
        self.clock.now().trunc_subsecs(6)
    }

    pub fn policy_uri(&self, version: crate::consent::DocumentVersionId) -> String {
        format!(
            "{}/v1/documents/{}/versions/{}",
            self.public_base_url, version.family, version.number
        )
    }
}
