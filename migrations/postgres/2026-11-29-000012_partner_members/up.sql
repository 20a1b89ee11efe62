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
-- by members of the applicant organization.
ALTER TABLE agreement_acceptances ADD COLUMN member_org TEXT;
UPDATE agreement_acceptances
   SET member_org = applications.org
  FROM agreements JOIN applications ON applications.id = agreements.application_id
 WHERE agreements.id = agreement_acceptances.agreement_id;
ALTER TABLE agreement_acceptances ALTER COLUMN member_org SET NOT NULL;
ALTER TABLE agreement_acceptances DROP CONSTRAINT agreement_acceptances_pkey;
ALTER TABLE agreement_acceptances
    ADD PRIMARY KEY (agreement_id, member_org, member, text_version);
