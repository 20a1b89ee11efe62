DELETE FROM notification_deliveries
    WHERE endpoint_id IN (SELECT id FROM notification_endpoints WHERE kind = 'email');
DELETE FROM notification_endpoints WHERE kind = 'email';
ALTER TABLE notification_endpoints DROP COLUMN email_kinds;
ALTER TABLE notification_endpoints DROP CONSTRAINT notification_endpoints_kind_check;
ALTER TABLE notification_endpoints ADD CONSTRAINT notification_endpoints_kind_check
    CHECK (kind IN ('webhook', 'nats'));
