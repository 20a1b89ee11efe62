DROP TABLE consent_event_items;
DROP TABLE consent_events;
DROP TABLE patients;
DROP TABLE document_scope_items;
DROP TABLE document_versions;
DROP FUNCTION genomegate_refuse_change();
DROP FUNCTION genomegate_protect_published_version();
DROP FUNCTION genomegate_protect_published_items();
