-- Recall notices are pushed to an application's members: a webhook may
-- belong to an application, and each notice gets a number so that its
-- deliveries share notification_deliveries (keyed by endpoint and number)
-- with the patients' notifications.
ALTER TABLE notification_endpoints ADD COLUMN application_id TEXT REFERENCES applications (id);
CREATE INDEX notification_endpoints_by_application ON notification_endpoints (application_id)
    WHERE application_id IS NOT NULL;
ALTER TABLE recall_notices ADD COLUMN seq BIGSERIAL;
CREATE UNIQUE INDEX recall_notices_by_seq ON recall_notices (seq);
