DROP TRIGGER releases_no_truncate ON releases;
DROP TRIGGER releases_no_delete ON releases;
DROP TRIGGER release_samples_no_truncate ON release_samples;
DROP TRIGGER release_samples_append_only ON release_samples;
ALTER TABLE release_samples
    ADD CONSTRAINT release_samples_release_id_fkey FOREIGN KEY (release_id) REFERENCES releases (id);
