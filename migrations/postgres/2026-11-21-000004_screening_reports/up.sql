-- The periodic screening reports of the access log (auditors). One row per
-- screened period; instances that screen the same period keep the first.
-- The report names log entries by arrival number and actors by
-- organization and user, never patients.
CREATE TABLE screening_reports (
    period_start     TIMESTAMP PRIMARY KEY,
    period_end       TIMESTAMP NOT NULL,
    generated_at     TIMESTAMP NOT NULL,
    rules_version    TEXT NOT NULL,
    entries_screened BIGINT NOT NULL,
    flagged          BIGINT NOT NULL,
    unusual_actors   BIGINT NOT NULL,
    report           TEXT NOT NULL             -- the ScreeningReport as JSON
);
