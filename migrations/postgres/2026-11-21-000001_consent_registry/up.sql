-- Versioned unified consent documents and per-patient consent events.
-- Statuses and kinds are text codes, never ordinals.

CREATE TABLE document_versions (
    id             TEXT PRIMARY KEY,                 -- e.g. cancer-v3
    family         TEXT NOT NULL CHECK (family IN ('cancer', 'rare_disease')),
    version_number INTEGER NOT NULL CHECK (version_number > 0),
    status         TEXT NOT NULL CHECK (status IN ('draft', 'active', 'retired')),
    title_ja       TEXT NOT NULL,
    title_en       TEXT NOT NULL,
    body_ja        TEXT NOT NULL,
    body_en        TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    effective_from TIMESTAMP,
    effective_to   TIMESTAMP,
    UNIQUE (family, version_number)
);
-- At most one version of a family is in force.
CREATE UNIQUE INDEX document_versions_one_active ON document_versions (family) WHERE status = 'active';

CREATE TABLE document_scope_items (
    version_id  TEXT NOT NULL REFERENCES document_versions (id),
    item_key    TEXT NOT NULL,
    position    INTEGER NOT NULL,
    change_kind TEXT NOT NULL CHECK (change_kind IN ('unchanged', 'editorial', 'material', 'added', 'removed')),
    label_ja    TEXT NOT NULL,
    label_en    TEXT NOT NULL,
    text_ja     TEXT NOT NULL,
    text_en     TEXT NOT NULL,
    PRIMARY KEY (version_id, item_key)
);

CREATE TABLE patients (
    pseudonym    TEXT PRIMARY KEY,
    hospital_org TEXT NOT NULL,
    -- Minors: the day they come of age and must be asked themselves.
    majority_on  DATE,
    deceased_on  DATE,
    created_at   TIMESTAMP NOT NULL
);
CREATE INDEX patients_by_hospital ON patients (hospital_org);

CREATE TABLE consent_events (
    id                  TEXT PRIMARY KEY,
    patient_pseudonym   TEXT NOT NULL REFERENCES patients (pseudonym),
    family              TEXT NOT NULL,
    document_version_id TEXT NOT NULL REFERENCES document_versions (id),
    kind                TEXT NOT NULL CHECK (kind IN ('grant', 'amend', 'withdraw_all', 'withdraw_items')),
    signer_kind         TEXT NOT NULL CHECK (signer_kind IN ('patient', 'proxy')),
    proxy_relationship  TEXT,
    explained_by        TEXT NOT NULL,
    signed_at           TIMESTAMP NOT NULL,
    recorded_at         TIMESTAMP NOT NULL,
    form_hash           TEXT NOT NULL,
    hospital_org        TEXT NOT NULL,
    recorded_by         TEXT NOT NULL,
    idempotency_key     TEXT NOT NULL,
    request_hash        TEXT NOT NULL,
    -- The idempotency guarantee lives in the database, so two racing retries
    -- cannot both insert (gICS had exactly this duplicate-key race).
    UNIQUE (hospital_org, idempotency_key)
);
CREATE INDEX consent_events_by_patient ON consent_events (patient_pseudonym, family, signed_at);

CREATE TABLE consent_event_items (
    event_id TEXT NOT NULL REFERENCES consent_events (id),
    item_key TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('permit', 'deny')),
    PRIMARY KEY (event_id, item_key)
);

-- Consent history is append-only: the database itself refuses rewrites.
CREATE FUNCTION genomegate_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'genomegate: % on % is not allowed (append-only)', TG_OP, TG_TABLE_NAME;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION genomegate_refuse_change();
CREATE TRIGGER consent_event_items_append_only BEFORE UPDATE OR DELETE ON consent_event_items
    FOR EACH ROW EXECUTE FUNCTION genomegate_refuse_change();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION genomegate_refuse_change();
CREATE TRIGGER consent_event_items_no_truncate BEFORE TRUNCATE ON consent_event_items
    FOR EACH STATEMENT EXECUTE FUNCTION genomegate_refuse_change();

-- A published version is immutable: its content may not change, and its
-- scope items may not be added, edited or removed. Only the status moves on
-- (active -> retired) together with its effective period.
CREATE FUNCTION genomegate_protect_published_version() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'genomegate: published document version % is immutable', OLD.id;
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' AND (
        NEW.title_ja IS DISTINCT FROM OLD.title_ja OR NEW.title_en IS DISTINCT FROM OLD.title_en OR
        NEW.body_ja IS DISTINCT FROM OLD.body_ja OR NEW.body_en IS DISTINCT FROM OLD.body_en OR
        NEW.content_hash IS DISTINCT FROM OLD.content_hash OR NEW.id IS DISTINCT FROM OLD.id OR
        NEW.family IS DISTINCT FROM OLD.family OR NEW.version_number IS DISTINCT FROM OLD.version_number OR
        NEW.status = 'draft' OR NEW.effective_from IS DISTINCT FROM OLD.effective_from) THEN
        RAISE EXCEPTION 'genomegate: published document version % is immutable', OLD.id;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER document_versions_immutable BEFORE UPDATE OR DELETE ON document_versions
    FOR EACH ROW EXECUTE FUNCTION genomegate_protect_published_version();

CREATE FUNCTION genomegate_protect_published_items() RETURNS trigger AS $$
DECLARE
    target TEXT;
BEGIN
    target := CASE WHEN TG_OP = 'INSERT' THEN NEW.version_id ELSE OLD.version_id END;
    IF EXISTS (SELECT 1 FROM document_versions WHERE id = target AND status <> 'draft') THEN
        RAISE EXCEPTION 'genomegate: scope items of published version % are immutable', target;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER document_scope_items_immutable BEFORE INSERT OR UPDATE OR DELETE ON document_scope_items
    FOR EACH ROW EXECUTE FUNCTION genomegate_protect_published_items();
