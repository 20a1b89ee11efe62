-- A patient's email notification is an endpoint of kind 'email', owned by
-- the patient: its deliveries, retries and dead letters are the webhooks'.
-- The address is sealed like a webhook's secret (key_version, nonce,
-- ciphertext); the target holds nothing. email_kinds: which kinds of access
-- the patient wants emailed, comma-separated (consent, read, use,
-- recontact).
--
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt as
-- its documentation describes, foreign keys off, in one transaction.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE notification_endpoints_next (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('webhook', 'nats', 'email')),
    patient_pseudonym TEXT,
    hospital_org      TEXT,
    target            TEXT NOT NULL,           -- URL or NATS subject; '' for email
    key_version       INTEGER,                 -- webhook secret or email address, sealed
    nonce             BLOB,
    ciphertext        BLOB,
    created_at        TIMESTAMP NOT NULL,
    disabled_at       TIMESTAMP,
    application_id    TEXT REFERENCES applications (id),
    email_kinds       TEXT
);
INSERT INTO notification_endpoints_next
    (id, kind, patient_pseudonym, hospital_org, target, key_version, nonce, ciphertext,
     created_at, disabled_at, application_id)
SELECT id, kind, patient_pseudonym, hospital_org, target, key_version, nonce, ciphertext,
       created_at, disabled_at, application_id
FROM notification_endpoints;
DROP TABLE notification_endpoints;
ALTER TABLE notification_endpoints_next RENAME TO notification_endpoints;
CREATE INDEX notification_endpoints_by_patient ON notification_endpoints (patient_pseudonym);
CREATE INDEX notification_endpoints_by_hospital ON notification_endpoints (hospital_org);
CREATE INDEX notification_endpoints_by_application ON notification_endpoints (application_id)
    WHERE application_id IS NOT NULL;
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
