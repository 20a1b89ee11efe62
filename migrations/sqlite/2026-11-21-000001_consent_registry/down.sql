DROP TABLE consent_event_items;
DROP TABLE consent_events;
DROP TABLE patients;
DROP TABLE document_scope_items;
DROP TABLE document_versions;
