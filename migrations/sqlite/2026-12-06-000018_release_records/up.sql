-- A release is read back as a record (decision 0033): its exclusions by
-- reason are kept beside its counts, filled in for earlier releases from
-- their manifests.
ALTER TABLE releases ADD COLUMN excluded_by_reason TEXT; -- JSON object: reason -> samples
UPDATE releases SET excluded_by_reason = COALESCE(
    (SELECT json_group_object(t.reason, t.n)
       FROM (SELECT s.reason, count(*) AS n FROM release_samples s
              WHERE s.release_id = releases.id AND NOT s.included
              GROUP BY s.reason ORDER BY s.reason) t),
    '{}');

-- A release row is written at the start of its transaction and finished
-- once at the end of it (counts, exclusions, provenance). After that it
-- never changes, so the provenance an auditor reads is the one the
-- release rested on. Deletion was already refused (000007).
CREATE TRIGGER releases_finished_once BEFORE UPDATE ON releases
WHEN OLD.provenance <> ''
  OR NEW.id IS NOT OLD.id OR NEW.application_id IS NOT OLD.application_id
  OR NEW.agreement_id IS NOT OLD.agreement_id OR NEW.released_by IS NOT OLD.released_by
  OR NEW.audience IS NOT OLD.audience OR NEW.released_at IS NOT OLD.released_at
  OR NEW.handle_expires_at IS NOT OLD.handle_expires_at
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on releases is not allowed (finished once, in the release''s own transaction)'); END;
