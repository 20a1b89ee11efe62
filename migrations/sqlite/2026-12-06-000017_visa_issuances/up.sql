-- Every GA4GH Passport visa the service signed (decision 0031), so that
-- governance and auditors can say who held one for which use, and until
-- when. Written in the same transaction that decides the visa may be
-- issued; never changed or deleted.
CREATE TABLE visa_issuances (
    jti            TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    visa_type      TEXT NOT NULL,
    member_org     TEXT NOT NULL,
    member         TEXT NOT NULL,
    issued_at      TIMESTAMP NOT NULL,
    expires_at     TIMESTAMP NOT NULL
);
CREATE INDEX visa_issuances_by_application ON visa_issuances (application_id, issued_at);

CREATE TRIGGER visa_issuances_no_update BEFORE UPDATE ON visa_issuances
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on visa_issuances is not allowed (append-only)'); END;
CREATE TRIGGER visa_issuances_no_delete BEFORE DELETE ON visa_issuances
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on visa_issuances is not allowed (append-only)'); END;
