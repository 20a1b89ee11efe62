-- An application submitted with an Idempotency-Key keeps its keyed hash and
-- the fingerprint of the request, so a retry returns the same application
-- instead of a second one, and a different request under the same key is
-- refused. The database enforces one application per organization and key.
ALTER TABLE applications ADD COLUMN idempotency_key TEXT;
ALTER TABLE applications ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX applications_idempotency ON applications (org, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
