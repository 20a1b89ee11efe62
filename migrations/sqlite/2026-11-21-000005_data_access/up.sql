-- Data access: verified organizations, researchers' ethics training,
-- datasets, applications and their committee review, data-use agreements,
-- releases and recall notices. Lists and structured values are JSON text.

-- The governance body verifies each organization's type; applicants never
-- declare it.
CREATE TABLE organizations (
    org          TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('academic', 'industry', 'public')),
    country      TEXT NOT NULL,
    verified_by  TEXT NOT NULL,
    verified_at  TIMESTAMP NOT NULL
);

-- Ethics-training attestations; the latest per researcher counts.
CREATE TABLE researcher_attestations (
    org          TEXT NOT NULL,
    subject      TEXT NOT NULL,
    training     TEXT NOT NULL,
    completed_on DATE NOT NULL,
    expires_on   DATE NOT NULL,
    recorded_by  TEXT NOT NULL,
    recorded_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (org, subject)
);

CREATE TABLE datasets (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    domain      TEXT NOT NULL CHECK (domain IN ('cancer', 'rare_disease')),
    terms       TEXT NOT NULL,            -- DataUseTerms as JSON
    portfolio   TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

-- A dataset's samples, with the diagnosis each contributes (a code of
-- policies/diseases.toml), for disease-scoped research.
CREATE TABLE dataset_samples (
    dataset_id  TEXT NOT NULL REFERENCES datasets (id),
    genome_id   TEXT NOT NULL REFERENCES genome_samples (genome_id),
    diagnosis   TEXT,
    added_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (dataset_id, genome_id)
);

CREATE TABLE applications (
    id              TEXT PRIMARY KEY,
    org             TEXT NOT NULL,
    submitted_by    TEXT NOT NULL,
    -- The applicant's declaration as submitted, never changed: title,
    -- purpose, datasets, members, ethics approval, period, recipients abroad.
    declaration     TEXT NOT NULL,
    commercial      BOOLEAN NOT NULL,     -- from the verified organization type
    matching        TEXT NOT NULL,        -- per-dataset MatchResult as JSON
    state           TEXT NOT NULL,
    conditions      TEXT NOT NULL,        -- JSON array of Condition
    submitted_at    TIMESTAMP NOT NULL,
    decided_at      TIMESTAMP,
    access_started_at TIMESTAMP
);
CREATE INDEX applications_by_org ON applications (org, submitted_at);

-- Every state change, timestamped.
CREATE TABLE application_transitions (
    application_id TEXT NOT NULL REFERENCES applications (id),
    seq            INTEGER NOT NULL,
    state          TEXT NOT NULL,
    actor          TEXT NOT NULL,
    at             TIMESTAMP NOT NULL,
    PRIMARY KEY (application_id, seq)
);

CREATE TABLE review_votes (
    application_id TEXT NOT NULL REFERENCES applications (id),
    voter          TEXT NOT NULL,
    vote           TEXT NOT NULL,         -- Vote as JSON
    voted_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (application_id, voter)
);

-- Versioned agreement texts; the newest is the one members must accept.
CREATE TABLE agreement_texts (
    version       INTEGER PRIMARY KEY,
    body          TEXT NOT NULL,
    sha256        TEXT NOT NULL UNIQUE,
    published_by  TEXT NOT NULL,
    published_at  TIMESTAMP NOT NULL
);

CREATE TABLE agreements (
    id               TEXT PRIMARY KEY,
    application_id   TEXT NOT NULL UNIQUE REFERENCES applications (id),
    state            TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'revoked')),
    expires_at       TIMESTAMP NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    state_reason     TEXT,
    state_changed_at TIMESTAMP
);

-- Every state an agreement entered (created active, suspended, reinstated,
-- revoked), with who decided and why: the sanction history.
CREATE TABLE agreement_transitions (
    agreement_id  TEXT NOT NULL REFERENCES agreements (id),
    seq           INTEGER NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    at            TIMESTAMP NOT NULL,
    PRIMARY KEY (agreement_id, seq)
);

CREATE TABLE agreement_acceptances (
    agreement_id  TEXT NOT NULL REFERENCES agreements (id),
    member        TEXT NOT NULL,
    text_version  INTEGER NOT NULL REFERENCES agreement_texts (version),
    text_sha256   TEXT NOT NULL,
    accepted_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (agreement_id, member, text_version)
);

CREATE TABLE releases (
    id                 TEXT PRIMARY KEY,
    application_id     TEXT NOT NULL REFERENCES applications (id),
    agreement_id       TEXT NOT NULL REFERENCES agreements (id),
    released_by        TEXT NOT NULL,
    audience           TEXT NOT NULL,
    released_at        TIMESTAMP NOT NULL,
    handle_expires_at  TIMESTAMP NOT NULL,
    included           BIGINT NOT NULL,
    excluded           BIGINT NOT NULL,
    provenance         TEXT NOT NULL      -- Provenance as JSON
);

-- The manifest: every sample considered, included or excluded with the
-- reason. `position` orders pages of handle resolution.
CREATE TABLE release_samples (
    release_id        TEXT NOT NULL REFERENCES releases (id),
    position          BIGINT NOT NULL,
    dataset_id        TEXT NOT NULL,
    genome_id         TEXT NOT NULL,
    patient_pseudonym TEXT NOT NULL,
    project_sample_id TEXT NOT NULL,
    included          BOOLEAN NOT NULL,
    reason            TEXT NOT NULL,
    consent_version   INTEGER,
    PRIMARY KEY (release_id, position)
);
CREATE INDEX release_samples_by_patient ON release_samples (patient_pseudonym);

-- Sent to an application's members when an included patient withdraws.
CREATE TABLE recall_notices (
    id                TEXT PRIMARY KEY,
    application_id    TEXT NOT NULL REFERENCES applications (id),
    release_id        TEXT NOT NULL REFERENCES releases (id),
    project_sample_id TEXT NOT NULL,
    reason            TEXT NOT NULL,
    created_at        TIMESTAMP NOT NULL
);
CREATE INDEX recall_notices_by_application ON recall_notices (application_id, created_at);
