-- A release reads its cohort in patient order (decision 0024): a
-- patient's samples are adjacent, so their log entry goes with the page
-- that holds them, and a page's consent lookups fall in one range of the
-- events index instead of all over it. `diagnosis` rides along so the page
-- is read from the index alone once the table is vacuumed.
--
-- Built CONCURRENTLY, so registering samples into datasets goes on while
-- a large table is indexed; that needs a migration outside a transaction
-- (metadata.toml) holding this one statement only. If the build fails, it
-- leaves an invalid index behind; the next start drops it and builds it
-- again (`db::drop_failed_concurrent_builds`).
CREATE INDEX CONCURRENTLY dataset_samples_by_patient
    ON dataset_samples (dataset_id, patient_pseudonym, genome_id) INCLUDE (diagnosis);
