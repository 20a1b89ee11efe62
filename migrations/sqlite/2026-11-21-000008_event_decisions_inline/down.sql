CREATE TABLE consent_event_items (
    event_id TEXT NOT NULL REFERENCES consent_events (id),
    item_key TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('permit', 'deny')),
    PRIMARY KEY (event_id, item_key)
);
INSERT INTO consent_event_items (event_id, item_key, decision)
SELECT e.id, d.key, d.value FROM consent_events e, json_each(e.decisions) d;
CREATE TRIGGER consent_event_items_no_update BEFORE UPDATE ON consent_event_items
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on consent_event_items is not allowed (append-only)'); END;
CREATE TRIGGER consent_event_items_no_delete BEFORE DELETE ON consent_event_items
BEGIN SELECT RAISE(ABORT, 'genomegate: DELETE on consent_event_items is not allowed (append-only)'); END;

ALTER TABLE consent_events DROP COLUMN decisions;
