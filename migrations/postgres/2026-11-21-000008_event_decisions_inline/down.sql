CREATE TABLE consent_event_items (
    event_id TEXT NOT NULL REFERENCES consent_events (id),
    item_key TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('permit', 'deny')),
    PRIMARY KEY (event_id, item_key)
);
INSERT INTO consent_event_items (event_id, item_key, decision)
SELECT e.id, d.key, d.value FROM consent_events e, jsonb_each_text(e.decisions::jsonb) d;
CREATE TRIGGER consent_event_items_append_only BEFORE UPDATE OR DELETE ON consent_event_items
    FOR EACH ROW EXECUTE FUNCTION genomegate_refuse_change();
CREATE TRIGGER consent_event_items_no_truncate BEFORE TRUNCATE ON consent_event_items
    FOR EACH STATEMENT EXECUTE FUNCTION genomegate_refuse_change();

ALTER TABLE consent_events DISABLE TRIGGER consent_events_append_only;
ALTER TABLE consent_events DROP COLUMN decisions;
ALTER TABLE consent_events ENABLE TRIGGER consent_events_append_only;
