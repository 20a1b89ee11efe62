DROP TRIGGER releases_finished_once ON releases;
DROP FUNCTION genomegate_finish_release_once();
ALTER TABLE releases DROP COLUMN excluded_by_reason;
