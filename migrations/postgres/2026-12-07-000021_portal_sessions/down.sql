ALTER TABLE patient_accounts DROP COLUMN recovery_hash;
DROP TABLE portal_passkeys;
DROP TABLE portal_sessions;
