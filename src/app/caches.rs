//! What the service keeps in memory between requests about consent
//! documents: content that never changes once published, read once per
//! process.

use super::AppError;
use crate::db::DbConnection;

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
    ) -> Result<Option<std::sync::Arc<crate::consent::DocumentVersion>>, AppError> {
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
    ) -> Result<Option<crate::consent::DocumentVersion>, AppError> {
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
    ) -> Result<std::sync::Arc<crate::consent::VersionHistory>, AppError> {
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
