-- Cheaper writes for the two tables every release and resolution fills
-- (decision 0013).
--
-- Pseudonyms are 64 hex characters and are only ever looked up by
-- equality, so a hash index (a 4-byte code per row) replaces the btree,
-- whose random inserts of long keys cost more than the rows themselves.
-- The log is appended in time order, so a BRIN index serves time ranges
-- at almost no cost per append. Auditor queries by organization scan the
-- log newest first instead of keeping a third index on every append.
DROP INDEX access_log_by_patient;
CREATE INDEX access_log_by_patient ON access_log_entries USING hash (patient_pseudonym);
DROP INDEX access_log_by_time;
CREATE INDEX access_log_by_time ON access_log_entries USING brin (recorded_at);
DROP INDEX access_log_by_org;

DROP INDEX release_samples_by_patient;
CREATE INDEX release_samples_by_patient ON release_samples USING hash (patient_pseudonym);
