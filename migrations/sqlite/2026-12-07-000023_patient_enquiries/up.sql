-- A patient's enquiries (decision 0037): a question to their hospital, or a
-- report to the governance body. The patient follows its state; the staff
-- who answer open it through the API, and every opening and answer is an
-- entry in the patient's access log.
CREATE TABLE patient_enquiries (
    id                 TEXT PRIMARY KEY,
    patient_pseudonym  TEXT NOT NULL REFERENCES patients (pseudonym),
    -- The patient's hospital when sent: whose staff answer a question.
    hospital_org       TEXT NOT NULL,
    kind               TEXT NOT NULL
        CHECK (kind IN ('question', 'wrong_access', 'discrimination')),
    state              TEXT NOT NULL CHECK (state IN ('sent', 'read', 'answered')),
    -- What it is about, when the patient sent it from a page that says:
    -- an entry of their access history, or one consent family.
    about_entry        BIGINT,
    about_family       TEXT,
    sent_at            TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL
);
CREATE INDEX patient_enquiries_patient ON patient_enquiries (patient_pseudonym, sent_at);
CREATE INDEX patient_enquiries_state ON patient_enquiries (state, sent_at);

-- The messages of an enquiry, the patient's first. A message may hold
-- anything a person writes (a name, a diagnosis), so it is sealed with the
-- vault key, bound to its enquiry and place, as identities are.
CREATE TABLE enquiry_messages (
    enquiry_id   TEXT NOT NULL REFERENCES patient_enquiries (id),
    seq          INTEGER NOT NULL,
    author       TEXT NOT NULL CHECK (author IN ('patient', 'staff')),
    author_org   TEXT NOT NULL,
    author_user  TEXT NOT NULL,
    key_version  INTEGER NOT NULL,
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    at           TIMESTAMP NOT NULL,
    PRIMARY KEY (enquiry_id, seq)
);
