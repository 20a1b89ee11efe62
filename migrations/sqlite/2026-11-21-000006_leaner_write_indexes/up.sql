-- As on PostgreSQL (decision 0013), auditor queries by organization scan
-- the log newest first instead of keeping an index on every append.
-- SQLite has no hash or BRIN indexes, so the patient and time btrees stay.
DROP INDEX access_log_by_org;
