-- Each consent event carries its item decisions on its own row, as a JSON
-- object of item key -> 'permit' | 'deny' (decision 0015). Reading a
-- patient's consent is then one index lookup instead of two.
ALTER TABLE consent_events ADD COLUMN decisions TEXT NOT NULL DEFAULT '{}';

-- The backfill is the one rewrite this append-only table ever allows.
DROP TRIGGER consent_events_no_update;
UPDATE consent_events
   SET decisions = (SELECT json_group_object(item_key, decision)
                      FROM consent_event_items WHERE event_id = consent_events.id)
 WHERE EXISTS (SELECT 1 FROM consent_event_items WHERE event_id = consent_events.id);
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
BEGIN SELECT RAISE(ABORT, 'genomegate: UPDATE on consent_events is not allowed (append-only)'); END;

DROP TABLE consent_event_items;
