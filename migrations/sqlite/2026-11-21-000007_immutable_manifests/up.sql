-- Manifests are written once and never changed, and releases are never
-- deleted (decision 0014). PostgreSQL drops the per-row foreign-key check
-- for these triggers; SQLite keeps its foreign key, since dropping one
-- means rebuilding the table, and adds the same refusals.
CREATE TRIGGER release_samples_no_update BEFORE UPDATE ON release_samples
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on release_samples is not allowed (append-only)'); END;
CREATE TRIGGER release_samples_no_delete BEFORE DELETE ON release_samples
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on release_samples is not allowed (append-only)'); END;
CREATE TRIGGER releases_no_delete BEFORE DELETE ON releases
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on releases is not allowed (append-only)'); END;
