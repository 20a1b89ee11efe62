-- Members from partner organizations (decision 0023).
-- An application names its partner organizations here as well as in its
-- declaration, so that a researcher of a partner organization finds it in
-- their list.
CREATE TABLE application_partner_orgs (
    application_id TEXT NOT NULL REFERENCES applications (id),
    org            TEXT NOT NULL,
    PRIMARY KEY (application_id, org)
);
CREATE INDEX application_partner_orgs_by_org ON application_partner_orgs (org);

-- An acceptance names the member's organization: two organizations may
-- give their researchers the same subject. Existing acceptances were all
-- by members of the applicant organization. SQLite cannot change a primary
-- key in place, so the table is rebuilt.
CREATE TABLE agreement_acceptances_by_org (
    agreement_id  TEXT NOT NULL REFERENCES agreements (id),
    member        TEXT NOT NULL,
    text_version  INTEGER NOT NULL REFERENCES agreement_texts (version),
    text_sha256   TEXT NOT NULL,
    accepted_at   TIMESTAMP NOT NULL,
    member_org    TEXT NOT NULL,
    PRIMARY KEY (agreement_id, member_org, member, text_version)
);
INSERT INTO agreement_acceptances_by_org
       (agreement_id, member, text_version, text_sha256, accepted_at, member_org)
SELECT a.agreement_id, a.member, a.text_version, a.text_sha256, a.accepted_at, applications.org
  FROM agreement_acceptances a
  JOIN agreements ON agreements.id = a.agreement_id
  JOIN applications ON applications.id = agreements.application_id;
DROP TABLE agreement_acceptances;
ALTER TABLE agreement_acceptances_by_org RENAME TO agreement_acceptances;
