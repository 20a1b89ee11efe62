-- The tamper-evident access log (RFC 6962/9162 Merkle tree), its
-- notification outbox and delivery state, and patient enrollment.
--
-- An entry is written in the transaction of the action it records, with an
-- outbox row. The integrator then gives it its tree index and stores the
-- nodes it completes; see docs/decisions/0008-log-integration.md.

CREATE TABLE access_log_entries (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order, not tree order
    entry             BLOB NOT NULL,          -- canonical JSON: the Merkle leaf input
    recorded_at       TIMESTAMP NOT NULL,
    patient_pseudonym TEXT NOT NULL,
    actor_org         TEXT NOT NULL,
    actor_user        TEXT NOT NULL,
    action            TEXT NOT NULL
);
CREATE INDEX access_log_by_patient ON access_log_entries (patient_pseudonym, seq);
CREATE INDEX access_log_by_time ON access_log_entries (recorded_at);
CREATE INDEX access_log_by_org ON access_log_entries (actor_org, recorded_at);

-- Tree position of each integrated entry. Dense: 0 .. size-1.
CREATE TABLE access_log_leaves (
    idx BIGINT PRIMARY KEY CHECK (idx >= 0),
    seq BIGINT NOT NULL UNIQUE
);

-- Every complete node: level 0 are leaf hashes; (level, idx) covers leaves
-- [idx * 2^level, (idx + 1) * 2^level).
CREATE TABLE access_log_nodes (
    level SMALLINT NOT NULL CHECK (level >= 0 AND level < 64),
    idx   BIGINT NOT NULL CHECK (idx >= 0),
    hash  BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed C2SP checkpoints, one per integration batch.
CREATE TABLE access_log_checkpoints (
    size      BIGINT PRIMARY KEY CHECK (size > 0),
    root      BLOB NOT NULL CHECK (length(root) = 32),
    note      TEXT NOT NULL,
    signed_at TIMESTAMP NOT NULL
);

CREATE TRIGGER access_log_entries_no_update BEFORE UPDATE ON access_log_entries
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on access_log_entries is not allowed (append-only)'); END;
CREATE TRIGGER access_log_entries_no_delete BEFORE DELETE ON access_log_entries
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on access_log_entries is not allowed (append-only)'); END;
CREATE TRIGGER access_log_leaves_no_update BEFORE UPDATE ON access_log_leaves
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on access_log_leaves is not allowed (append-only)'); END;
CREATE TRIGGER access_log_leaves_no_delete BEFORE DELETE ON access_log_leaves
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on access_log_leaves is not allowed (append-only)'); END;
CREATE TRIGGER access_log_nodes_no_update BEFORE UPDATE ON access_log_nodes
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on access_log_nodes is not allowed (append-only)'); END;
CREATE TRIGGER access_log_nodes_no_delete BEFORE DELETE ON access_log_nodes
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on access_log_nodes is not allowed (append-only)'); END;
CREATE TRIGGER access_log_checkpoints_no_update BEFORE UPDATE ON access_log_checkpoints
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on access_log_checkpoints is not allowed (append-only)'); END;
CREATE TRIGGER access_log_checkpoints_no_delete BEFORE DELETE ON access_log_checkpoints
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on access_log_checkpoints is not allowed (append-only)'); END;

-- Entries awaiting integration. The integrator deletes a row in the same
-- transaction that gives its entry a tree index and queues its deliveries.
CREATE TABLE notification_outbox (
    seq               BIGINT PRIMARY KEY,
    patient_pseudonym TEXT NOT NULL
);

-- Where notifications go besides live streams: webhooks registered by a
-- patient or by a hospital's patient app, and the NATS subject.
CREATE TABLE notification_endpoints (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('webhook', 'nats')),
    patient_pseudonym TEXT,
    hospital_org      TEXT,
    target            TEXT NOT NULL,           -- URL or NATS subject
    key_version       INTEGER,                 -- webhook secret, sealed with the vault key
    nonce             BLOB,
    ciphertext        BLOB,
    created_at        TIMESTAMP NOT NULL,
    disabled_at       TIMESTAMP
);
CREATE INDEX notification_endpoints_by_patient ON notification_endpoints (patient_pseudonym);
CREATE INDEX notification_endpoints_by_hospital ON notification_endpoints (hospital_org);

CREATE TABLE notification_deliveries (
    endpoint_id     TEXT NOT NULL REFERENCES notification_endpoints (id),
    idx             BIGINT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error      TEXT,
    delivered_at    TIMESTAMP,
    PRIMARY KEY (endpoint_id, idx)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE state = 'pending';

-- One-time codes a hospital hands to a patient; stored only as a keyed hash.
CREATE TABLE enrollment_codes (
    code_hash         TEXT PRIMARY KEY,
    patient_pseudonym TEXT NOT NULL REFERENCES patients (pseudonym),
    issued_by         TEXT NOT NULL,
    issued_at         TIMESTAMP NOT NULL,
    expires_at        TIMESTAMP NOT NULL,
    used_at           TIMESTAMP
);

CREATE TABLE patient_accounts (
    id                TEXT PRIMARY KEY,
    patient_pseudonym TEXT NOT NULL REFERENCES patients (pseudonym),
    secret_hash       TEXT NOT NULL,
    created_at        TIMESTAMP NOT NULL,
    revoked_at        TIMESTAMP
);

CREATE TABLE patient_preferences (
    patient_pseudonym TEXT PRIMARY KEY REFERENCES patients (pseudonym),
    language          TEXT NOT NULL CHECK (language IN ('ja', 'en')),
    hospital_app      BOOLEAN NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);
