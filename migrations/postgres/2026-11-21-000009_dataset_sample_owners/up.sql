-- A dataset's sample rows name the sample's patient, so a release reads a
-- page of its cohort in one index scan instead of a scan and a lookup of
-- every sample (decision 0015). A sample's patient never changes, and the
-- one write path copies it from genome_samples.
ALTER TABLE dataset_samples ADD COLUMN patient_pseudonym TEXT;
UPDATE dataset_samples d
   SET patient_pseudonym = g.patient_pseudonym
  FROM genome_samples g
 WHERE g.genome_id = d.genome_id;
ALTER TABLE dataset_samples ALTER COLUMN patient_pseudonym SET NOT NULL;
