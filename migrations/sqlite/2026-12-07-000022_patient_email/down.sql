-- Email endpoints go (with their deliveries), and the CHECK is the old one.
PRAGMA foreign_keys = OFF;
BEGIN;
DELETE FROM notification_deliveries
    WHERE endpoint_id IN (SELECT id FROM notification_endpoints WHERE kind = 'email');
CREATE TABLE notification_endpoints_next (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('webhook', 'nats')),
    patient_pseudonym TEXT,
    hospital_org      TEXT,
    target            TEXT NOT NULL,
    key_version       INTEGER,
    nonce             BLOB,
    ciphertext        BLOB,
    created_at        TIMESTAMP NOT NULL,
    disabled_at       TIMESTAMP,
    application_id    TEXT REFERENCES applications (id)
);
INSERT INTO notification_endpoints_next
SELECT id, kind, patient_pseudonym, hospital_org, target, key_version, nonce, ciphertext,
       created_at, disabled_at, application_id
FROM notification_endpoints WHERE kind <> 'email';
DROP TABLE notification_endpoints;
ALTER TABLE notification_endpoints_next RENAME TO notification_endpoints;
CREATE INDEX notification_endpoints_by_patient ON notification_endpoints (patient_pseudonym);
CREATE INDEX notification_endpoints_by_hospital ON notification_endpoints (hospital_org);
CREATE INDEX notification_endpoints_by_application ON notification_endpoints (application_id)
    WHERE application_id IS NOT NULL;
COMMIT;
PRAGMA foreign_keys = ON;
