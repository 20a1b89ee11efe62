-- What a request sent with an Idempotency-Key was answered, so that a retry
-- (its answer lost to a timeout) gets the same answer and changes nothing
-- (releases, visas, votes, acceptances, webhooks, recontact steps,
-- agreement texts, datasets). Keyed by the caller's organization and a
-- keyed hash of the key, never the key; the answer is sealed, since some
-- hold a secret shown once.
CREATE TABLE idempotent_answers (
    org          TEXT NOT NULL,
    key_tag      TEXT NOT NULL,
    operation    TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    key_version  INTEGER NOT NULL,
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    answered_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (org, key_tag)
);
