-- Recall notices are pushed to an application's members: a webhook may
-- belong to an application, and each notice gets a number so that its
-- deliveries share notification_deliveries (keyed by endpoint and number)
-- with the patients' notifications.
ALTER TABLE notification_endpoints ADD COLUMN application_id TEXT REFERENCES applications (id);
CREATE INDEX notification_endpoints_by_application ON notification_endpoints (application_id)
    WHERE application_id IS NOT NULL;
-- SQLite has no sequences: a notice's number is its rowid, which only
-- grows here because notices are never deleted.
ALTER TABLE recall_notices ADD COLUMN seq INTEGER;
UPDATE recall_notices SET seq = rowid;
CREATE UNIQUE INDEX recall_notices_by_seq ON recall_notices (seq);
CREATE TRIGGER recall_notices_number AFTER INSERT ON recall_notices
    WHEN NEW.seq IS NULL
BEGIN
    UPDATE recall_notices SET seq = NEW.rowid WHERE rowid = NEW.rowid;
END;
