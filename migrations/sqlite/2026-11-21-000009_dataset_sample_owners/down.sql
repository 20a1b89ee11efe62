ALTER TABLE dataset_samples DROP COLUMN patient_pseudonym;
