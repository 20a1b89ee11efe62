-- A release, before it commits, asks which patients had a consent or
-- status change logged since it started reading (decision 0029). On SQLite
-- nothing commits while a release writes, so the answer is always "none
-- that matter"; the index keeps the question as cheap as on PostgreSQL.
-- The actions are `db::gate::CHANGES_THAT_RECALL`.
CREATE INDEX access_log_consent_changes
    ON access_log_entries (seq, patient_pseudonym)
    WHERE action IN ('consent_register', 'consent_change', 'consent_withdraw', 'patient_status_change');
