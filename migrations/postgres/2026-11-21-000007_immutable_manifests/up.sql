-- A release's manifest is written once, in the release's own transaction,
-- and never changed (decision 0014). The per-row foreign-key check of
-- release_samples.release_id cost a 100,000-sample release about 0.45 s of
-- database time. Refusing every change to manifest rows and every deletion
-- of a release keeps the guarantee that check gave (no manifest row outlives
-- its release) without a lookup per inserted row.
ALTER TABLE release_samples DROP CONSTRAINT release_samples_release_id_fkey;

CREATE TRIGGER release_samples_append_only BEFORE UPDATE OR DELETE ON release_samples
    FOR EACH ROW EXECUTE FUNCTION genomegate_refuse_change();
CREATE TRIGGER release_samples_no_truncate BEFORE TRUNCATE ON release_samples
    FOR EACH STATEMENT EXECUTE FUNCTION genomegate_refuse_change();
CREATE TRIGGER releases_no_delete BEFORE DELETE ON releases
    FOR EACH ROW EXECUTE FUNCTION genomegate_refuse_change();
CREATE TRIGGER releases_no_truncate BEFORE TRUNCATE ON releases
    FOR EACH STATEMENT EXECUTE FUNCTION genomegate_refuse_change();
