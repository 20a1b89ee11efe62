-- Partner members' acceptances cannot be told apart without their
-- organization: they go with it.
CREATE TABLE agreement_acceptances_by_member (
    agreement_id  TEXT NOT NULL REFERENCES agreements (id),
    member        TEXT NOT NULL,
    text_version  INTEGER NOT NULL REFERENCES agreement_texts (version),
    text_sha256   TEXT NOT NULL,
    accepted_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (agreement_id, member, text_version)
);
INSERT INTO agreement_acceptances_by_member
       (agreement_id, member, text_version, text_sha256, accepted_at)
SELECT a.agreement_id, a.member, a.text_version, a.text_sha256, a.accepted_at
  FROM agreement_acceptances a
  JOIN agreements ON agreements.id = a.agreement_id
  JOIN applications ON applications.id = agreements.application_id
 WHERE a.member_org = applications.org;
DROP TABLE agreement_acceptances;
ALTER TABLE agreement_acceptances_by_member RENAME TO agreement_acceptances;
DROP TABLE application_partner_orgs;
