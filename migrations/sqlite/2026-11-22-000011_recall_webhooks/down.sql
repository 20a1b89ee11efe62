DROP TRIGGER recall_notices_number;
DROP INDEX recall_notices_by_seq;
ALTER TABLE recall_notices DROP COLUMN seq;
DROP INDEX notification_endpoints_by_application;
ALTER TABLE notification_endpoints DROP COLUMN application_id;
