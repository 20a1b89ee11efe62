DROP TRIGGER releases_finished_once;
ALTER TABLE releases DROP COLUMN excluded_by_reason;
