-- Genome samples and their data objects (references only, never bytes),
-- sequencing-centre authorisations, the identity vault and recontact.

CREATE TABLE sequencing_authorizations (
    hospital_org TEXT NOT NULL,
    center_org   TEXT NOT NULL,
    granted_by   TEXT NOT NULL,
    granted_at   TIMESTAMP NOT NULL,
    revoked_at   TIMESTAMP,
    PRIMARY KEY (hospital_org, center_org)
);

CREATE TABLE genome_samples (
    genome_id         TEXT PRIMARY KEY,        -- printed form, e.g. GS1-8F3K-2M9Q-0P4R-7T2V-X
    key_version       INTEGER NOT NULL,
    patient_pseudonym TEXT NOT NULL REFERENCES patients (pseudonym),
    hospital_org      TEXT NOT NULL,
    registered_by_org TEXT NOT NULL,
    registered_by     TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('germline', 'tumour')),
    assay             TEXT NOT NULL CHECK (assay IN ('wgs', 'wes', 'cgp_panel', 'rna')),
    test_order_ref    TEXT,
    ccat_report_id    TEXT,
    tumour_category   TEXT CHECK (tumour_category IN ('solid', 'haematologic')),
    request_hash      TEXT NOT NULL,
    registered_at     TIMESTAMP NOT NULL
);
CREATE INDEX genome_samples_by_patient ON genome_samples (patient_pseudonym);

CREATE TABLE genome_data_objects (
    genome_id         TEXT NOT NULL REFERENCES genome_samples (genome_id),
    name              TEXT NOT NULL,
    version           INTEGER NOT NULL CHECK (version > 0),
    uri               TEXT NOT NULL UNIQUE,   -- one URI names one immutable object
    size_bytes        BIGINT NOT NULL CHECK (size_bytes >= 0),
    sha256            TEXT NOT NULL,
    format            TEXT NOT NULL CHECK (format IN ('cram', 'bam', 'vcf', 'fastq')),
    legal_class       TEXT NOT NULL CHECK (legal_class IN ('identification_code', 'sensitive_personal')),
    correction_reason TEXT,
    registered_by     TEXT NOT NULL,
    registered_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (genome_id, name, version)
);

-- Hospital-local patient IDs, sealed with AES-256-GCM (bound to hospital and pseudonym).
CREATE TABLE identity_vault (
    patient_pseudonym TEXT PRIMARY KEY REFERENCES patients (pseudonym),
    hospital_org      TEXT NOT NULL,
    key_version       INTEGER NOT NULL,
    nonce             BLOB NOT NULL,
    ciphertext        BLOB NOT NULL,
    sealed_at         TIMESTAMP NOT NULL
);

CREATE TABLE recontact_requests (
    id                TEXT PRIMARY KEY,
    patient_pseudonym TEXT NOT NULL REFERENCES patients (pseudonym),
    hospital_org      TEXT NOT NULL,
    family            TEXT NOT NULL,
    genome_id         TEXT NOT NULL REFERENCES genome_samples (genome_id),
    reason            TEXT NOT NULL,
    on_behalf_of      TEXT,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'unsealed')),
    opened_at         TIMESTAMP NOT NULL
);

CREATE TABLE recontact_steps (
    request_id TEXT NOT NULL REFERENCES recontact_requests (id),
    seq        INTEGER NOT NULL,
    step       TEXT NOT NULL CHECK (step IN ('opened', 'approved', 'rejected', 'unsealed')),
    actor      TEXT NOT NULL,
    actor_org  TEXT NOT NULL,
    note       TEXT,
    at         TIMESTAMP NOT NULL,
    PRIMARY KEY (request_id, seq)
);
-- Dual control in the database: one person approves a request at most once.
CREATE UNIQUE INDEX recontact_one_approval_per_person ON recontact_steps (request_id, actor) WHERE step = 'approved';

-- Samples, objects and recontact steps are append-only.
CREATE TRIGGER genome_samples_no_update BEFORE UPDATE ON genome_samples
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on genome_samples is not allowed (append-only)'); END;
CREATE TRIGGER genome_samples_no_delete BEFORE DELETE ON genome_samples
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on genome_samples is not allowed (append-only)'); END;
CREATE TRIGGER genome_data_objects_no_update BEFORE UPDATE ON genome_data_objects
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on genome_data_objects is not allowed (append-only)'); END;
CREATE TRIGGER genome_data_objects_no_delete BEFORE DELETE ON genome_data_objects
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on genome_data_objects is not allowed (append-only)'); END;
CREATE TRIGGER recontact_steps_no_update BEFORE UPDATE ON recontact_steps
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on recontact_steps is not allowed (append-only)'); END;
CREATE TRIGGER recontact_steps_no_delete BEFORE DELETE ON recontact_steps
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on recontact_steps is not allowed (append-only)'); END;
