DROP TRIGGER releases_no_delete;
DROP TRIGGER release_samples_no_delete;
DROP TRIGGER release_samples_no_update;
