DROP INDEX release_samples_by_patient;
CREATE INDEX release_samples_by_patient ON release_samples (patient_pseudonym);

CREATE INDEX access_log_by_org ON access_log_entries (actor_org, recorded_at);
DROP INDEX access_log_by_time;
CREATE INDEX access_log_by_time ON access_log_entries (recorded_at);
DROP INDEX access_log_by_patient;
CREATE INDEX access_log_by_patient ON access_log_entries (patient_pseudonym, seq);
