-- A dataset's sample rows name the sample's patient, so a release reads a
-- page of its cohort in one index scan (decision 0015). A sample's patient
-- never changes, and the one write path copies it from genome_samples.
ALTER TABLE dataset_samples ADD COLUMN patient_pseudonym TEXT NOT NULL DEFAULT '';
UPDATE dataset_samples
   SET patient_pseudonym = (SELECT g.patient_pseudonym FROM genome_samples g
                             WHERE g.genome_id = dataset_samples.genome_id);
