-- A release, before it commits, asks which patients had a consent or
-- status change logged since it started reading (decision 0029): a change
-- that committed meanwhile could not see the release, so the release
-- recalls what the change took back. A partial index of those entries
-- alone answers that without reading the release's own entries; the
-- actions are `db::gate::CHANGES_THAT_RECALL`.
--
-- Built CONCURRENTLY, so the log goes on being written while a large table
-- is indexed; that needs a migration outside a transaction (metadata.toml)
-- holding this one statement only. If the build fails, it leaves an
-- invalid index behind; the next start drops it and builds it again
-- (`db::drop_failed_concurrent_builds`).
CREATE INDEX CONCURRENTLY access_log_consent_changes
    ON access_log_entries (seq) INCLUDE (patient_pseudonym)
    WHERE action IN ('consent_register', 'consent_change', 'consent_withdraw', 'patient_status_change');
