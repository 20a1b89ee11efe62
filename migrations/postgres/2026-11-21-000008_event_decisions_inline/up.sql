-- Each consent event carries its item decisions on its own row, as a JSON
-- object of item key -> 'permit' | 'deny' (decision 0015). Reading a
-- patient's consent is then one index lookup instead of two: a release or
-- a handle resolution checks a thousand patients per page.
ALTER TABLE consent_events ADD COLUMN decisions TEXT NOT NULL DEFAULT '{}';

-- The backfill is the one rewrite this append-only table ever allows.
ALTER TABLE consent_events DISABLE TRIGGER consent_events_append_only;
UPDATE consent_events e
   SET decisions = i.decisions
  FROM (SELECT event_id, jsonb_object_agg(item_key, decision)::text AS decisions
          FROM consent_event_items GROUP BY event_id) i
 WHERE i.event_id = e.id;
ALTER TABLE consent_events ENABLE TRIGGER consent_events_append_only;

DROP TABLE consent_event_items;
