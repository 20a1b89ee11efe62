-- A release reads its cohort in patient order (decision 0024): a
-- patient's samples are adjacent, so their log entry goes with the page
-- that holds them, and a page's consent lookups fall in one range of the
-- events index instead of all over it.
CREATE INDEX dataset_samples_by_patient
    ON dataset_samples (dataset_id, patient_pseudonym, genome_id);
