CREATE INDEX access_log_by_org ON access_log_entries (actor_org, recorded_at);
