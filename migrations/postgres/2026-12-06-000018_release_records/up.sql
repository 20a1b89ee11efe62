-- A release is read back as a record (decision 0033): its exclusions by
-- reason are kept beside its counts, filled in for earlier releases from
-- their manifests.
ALTER TABLE releases ADD COLUMN excluded_by_reason TEXT; -- JSON object: reason -> samples
UPDATE releases r SET excluded_by_reason = COALESCE(
    (SELECT json_object_agg(t.reason, t.n ORDER BY t.reason)::text
       FROM (SELECT s.reason, count(*) AS n FROM release_samples s
              WHERE s.release_id = r.id AND NOT s.included
              GROUP BY s.reason) t),
    '{}');

-- A release row is written at the start of its transaction and finished
-- once at the end of it (counts, exclusions, provenance). After that it
-- never changes, so the provenance an auditor reads is the one the
-- release rested on. Deletion was already refused (000007).
CREATE FUNCTION genomegate_finish_release_once() RETURNS trigger AS $$
BEGIN
    IF OLD.provenance <> ''
       OR (NEW.id, NEW.application_id, NEW.agreement_id, NEW.released_by, NEW.audience,
           NEW.released_at, NEW.handle_expires_at)
          IS DISTINCT FROM
          (OLD.id, OLD.application_id, OLD.agreement_id, OLD.released_by, OLD.audience,
           OLD.released_at, OLD.handle_expires_at) THEN
        RAISE EXCEPTION 'genomegate: UPDATE on releases is not allowed (finished once, in the release''s own transaction)';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER releases_finished_once BEFORE UPDATE ON releases
    FOR EACH ROW EXECUTE FUNCTION genomegate_finish_release_once();
