DROP INDEX applications_idempotency;
ALTER TABLE applications DROP COLUMN request_hash;
ALTER TABLE applications DROP COLUMN idempotency_key;
