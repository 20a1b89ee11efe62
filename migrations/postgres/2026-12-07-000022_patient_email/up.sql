-- A patient's email notification is an endpoint of kind 'email', owned by
-- the patient: its deliveries, retries and dead letters are the webhooks'.
-- The address is sealed like a webhook's secret (key_version, nonce,
-- ciphertext); the target holds nothing. email_kinds: which kinds of access
-- the patient wants emailed, comma-separated (consent, read, use,
-- recontact).
ALTER TABLE notification_endpoints DROP CONSTRAINT notification_endpoints_kind_check;
ALTER TABLE notification_endpoints ADD CONSTRAINT notification_endpoints_kind_check
    CHECK (kind IN ('webhook', 'nats', 'email'));
ALTER TABLE notification_endpoints ADD COLUMN email_kinds TEXT;
