-- Never holds a row for good: /readyz inserts one and rolls it back, so
-- readiness says whether the database takes writes (a full disk, a
-- read-only file or a standby answer reads but refuse writes).
CREATE TABLE readiness_probe (id INTEGER PRIMARY KEY);
