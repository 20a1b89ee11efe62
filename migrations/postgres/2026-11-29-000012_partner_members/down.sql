-- Partner members' acceptances cannot be told apart without their
-- organization: they go with it.
DELETE FROM agreement_acceptances
 WHERE member_org <> (SELECT applications.org
                        FROM agreements JOIN applications ON applications.id = agreements.application_id
                       WHERE agreements.id = agreement_acceptances.agreement_id);
ALTER TABLE agreement_acceptances DROP CONSTRAINT agreement_acceptances_pkey;
ALTER TABLE agreement_acceptances DROP COLUMN member_org;
ALTER TABLE agreement_acceptances ADD PRIMARY KEY (agreement_id, member, text_version);
DROP TABLE application_partner_orgs;
