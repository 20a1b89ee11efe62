-- The patient portal's pages (decision 0036). A browser holds a random
-- session ID in a __Host- cookie; only its SHA-256 is stored, so a copy of
-- the database signs nobody in. A session exists before sign-in too: it
-- carries the CSRF token and the half-finished passkey ceremony, and
-- signing in replaces it with a new one (no fixation).
CREATE TABLE portal_sessions (
    id_hash        TEXT PRIMARY KEY,
    account_id     TEXT REFERENCES patient_accounts (id),
    csrf_token     TEXT NOT NULL,
    -- The passkey ceremony under way (JSON: the webauthn-rs state, the
    -- account it is for, the keyed hashes of the code that opened it).
    ceremony       TEXT,
    ceremony_kind  TEXT CHECK (ceremony_kind IN ('enroll', 'sign_in', 'recover')),
    created_at     TIMESTAMP NOT NULL,
    last_seen_at   TIMESTAMP NOT NULL,
    revoked_at     TIMESTAMP
);
CREATE INDEX portal_sessions_account ON portal_sessions (account_id);

-- A patient's passkeys: the webauthn-rs credential (public key, counter),
-- JSON. The credential ID is the key a sign-in finds it by.
CREATE TABLE portal_passkeys (
    credential_id  TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES patient_accounts (id),
    passkey        TEXT NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    last_used_at   TIMESTAMP
);
CREATE INDEX portal_passkeys_account ON portal_passkeys (account_id);

-- The one-time recovery code shown at enrollment (SHA-256 of a 160-bit
-- random code); NULL once used, until a new one is issued.
ALTER TABLE patient_accounts ADD COLUMN recovery_hash TEXT;
