//! Storage of patients and their consent events. Events are only ever
//! inserted; the database refuses updates and deletes.

use super::documents::utc;
use super::schema::{consent_events as events, patients};
use super::DbConnection;
use crate::consent::{ConsentEvent, Decision, DocumentFamily, EventKind, Person, ScopeItemKey};
use crate::db_run;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::BTreeMap;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = patients)]
pub struct PatientRow {
    pub pseudonym: String,
    pub hospital_org: String,
    pub majority_on: Option<NaiveDate>,
    pub deceased_on: Option<NaiveDate>,
    pub created_at: NaiveDateTime,
}

impl PatientRow {
    pub fn person(&self) -> Person {
        Person {
            majority_on: self.majority_on,
            deceased_on: self.deceased_on,
        }
    }
}

/// The signer kind stored for a proxy's signature.
const PROXY: &str = "proxy";

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: String,
    pub patient_pseudonym: String,
    pub family: String,
    pub document_version_id: String,
    pub kind: String,
    pub signer_kind: String,
    pub proxy_relationship: Option<String>,
    pub explained_by: String,
    pub signed_at: NaiveDateTime,
    pub recorded_at: NaiveDateTime,
    pub form_hash: String,
    pub hospital_org: String,
    pub recorded_by: String,
    pub idempotency_key: String,
    pub request_hash: String,
}

/// An event as stored: the domain event plus who recorded it and how.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: ConsentEvent,
    pub row: EventRow,
}

fn corrupt(what: &str) -> DieselError {
    DieselError::DeserializationError(format!("corrupt {what} in consent storage").into())
}

pub fn find_patient(
    conn: &mut DbConnection,
    pseudonym: &str,
) -> Result<Option<PatientRow>, DieselError> {
    db_run!(conn, c => patients::table
        .find(pseudonym)
        .select(PatientRow::as_select())
        .first(c)
        .optional())
}

/// Creates the patient row on first consent; a no-op when it exists.
pub fn ensure_patient(
    conn: &mut DbConnection,
    pseudonym: &str,
    hospital_org: &str,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let row = PatientRow {
        pseudonym: pseudonym.to_owned(),
        hospital_org: hospital_org.to_owned(),
        majority_on: None,
        deceased_on: None,
        created_at: now.naive_utc(),
    };
    db_run!(conn, c => diesel::insert_into(patients::table)
        .values(&row)
        .on_conflict(patients::pseudonym)
        .do_nothing()
        .execute(c))?;
    Ok(())
}

pub fn set_patient_status(
    conn: &mut DbConnection,
    pseudonym: &str,
    majority_on: Option<NaiveDate>,
    deceased_on: Option<NaiveDate>,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(patients::table.find(pseudonym))
        .set((patients::majority_on.eq(majority_on), patients::deceased_on.eq(deceased_on)))
        .execute(c))?;
    Ok(())
}

/// The event an idempotency key already produced, if any.
/// `tags` are the keyed hashes of the client's key under every key
/// version (see `Keyring::idempotency_tags`).
pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    hospital_org: &str,
    tags: &[String],
) -> Result<Option<EventRow>, DieselError> {
    db_run!(conn, c => events::table
        .filter(events::hospital_org.eq(hospital_org))
        .filter(events::idempotency_key.eq_any(tags))
        .select(EventRow::as_select())
        .first(c)
        .optional())
}

pub fn insert_event(
    conn: &mut DbConnection,
    row: &EventRow,
    decisions: &[(ScopeItemKey, Decision)],
) -> Result<(), DieselError> {
    let decisions = encode_decisions(decisions);
    db_run!(conn, c => diesel::insert_into(events::table)
        .values((row, events::decisions.eq(&decisions)))
        .execute(c))?;
    Ok(())
}

type Decisions = Vec<(ScopeItemKey, Decision)>;

/// An event's item decisions as its row stores them: a JSON object of item
/// key to `permit` or `deny`, keys in order (decision 0015). Item keys are
/// lowercase ASCII, letters, digits and `_` (`ScopeItemKey::parse`), so
/// nothing needs escaping.
pub fn encode_decisions(decisions: &[(ScopeItemKey, Decision)]) -> String {
    let mut sorted: Vec<_> = decisions.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let members: Vec<String> = sorted
        .iter()
        .map(|(key, decision)| format!("\"{}\":\"{}\"", key.as_str(), decision.as_str()))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// The decisions of an event row; the database may have written the
/// object with other spacing (the migration that introduced the column).
/// Borrowed strings: nothing stored needs unescaping, and a release decodes
/// a million of these.
fn decode_decisions(stored: &str) -> Result<Decisions, DieselError> {
    let map: BTreeMap<&str, &str> =
        serde_json::from_str(stored).map_err(|_| corrupt("event decisions"))?;
    map.into_iter()
        .map(|(key, decision)| {
            Ok((
                ScopeItemKey::parse(key).map_err(|_| corrupt("item key"))?,
                Decision::parse(decision).ok_or_else(|| corrupt("decision"))?,
            ))
        })
        .collect()
}

fn assemble(rows: Vec<(EventRow, String)>) -> Result<Vec<StoredEvent>, DieselError> {
    rows.into_iter()
        .map(|(row, decisions)| {
            let version = row
                .document_version_id
                .parse::<crate::consent::DocumentVersionId>()
                .map_err(|_| corrupt("document version"))?
                .number;
            Ok(StoredEvent {
                event: ConsentEvent {
                    id: row.id.clone(),
                    kind: EventKind::parse(&row.kind).ok_or_else(|| corrupt("event kind"))?,
                    version,
                    signed_at: utc(row.signed_at),
                    recorded_at: utc(row.recorded_at),
                    decisions: decode_decisions(&decisions)?,
                    by_proxy: row.signer_kind == PROXY,
                },
                row,
            })
        })
        .collect()
}

/// All events of one patient in one family, in the order they took effect.
pub fn events_for_patient(
    conn: &mut DbConnection,
    pseudonym: &str,
    family: DocumentFamily,
) -> Result<Vec<StoredEvent>, DieselError> {
    let rows = db_run!(conn, c => events::table
        .filter(events::patient_pseudonym.eq(pseudonym))
        .filter(events::family.eq(family.as_str()))
        .order((events::signed_at, events::recorded_at, events::id))
        .select((EventRow::as_select(), events::decisions))
        .load(c))?;
    assemble(rows)
}

/// A patient with their events in one family, as a logged consent read
/// needs them.
pub struct PatientRecord {
    pub patient: PatientRow,
    /// In the order they took effect.
    pub events: Vec<StoredEvent>,
    /// How many versions of the family have been published, which tells a
    /// cached version history whether it is current (decision 0016).
    pub published_versions: i64,
}

/// `EventRow`'s columns in field order, for left joins: diesel cannot make
/// a `Selectable` nullable. The type gives [`OwnRecordLogged`] its row type.
type EventRowColumns = (
    events::id,
    events::patient_pseudonym,
    events::family,
    events::document_version_id,
    events::kind,
    events::signer_kind,
    events::proxy_relationship,
    events::explained_by,
    events::signed_at,
    events::recorded_at,
    events::form_hash,
    events::hospital_org,
    events::recorded_by,
    events::idempotency_key,
    events::request_hash,
);
const EVENT_ROW_COLUMNS: EventRowColumns = (
    events::id,
    events::patient_pseudonym,
    events::family,
    events::document_version_id,
    events::kind,
    events::signer_kind,
    events::proxy_relationship,
    events::explained_by,
    events::signed_at,
    events::recorded_at,
    events::form_hash,
    events::hospital_org,
    events::recorded_by,
    events::idempotency_key,
    events::request_hash,
);

/// The patient, their events in `family` and the family's published
/// version count, in one statement; `None` if there is no such patient.
pub fn patient_record(
    conn: &mut DbConnection,
    pseudonym: &str,
    family: DocumentFamily,
) -> Result<Option<PatientRecord>, DieselError> {
    use super::schema::document_versions as versions;
    type Counted = (PatientRow, Option<EventRow>, Option<String>, Option<i64>);
    let rows: Vec<Counted> = db_run!(conn, c => patients::table
        .left_join(
            events::table.on(events::patient_pseudonym
                .eq(patients::pseudonym)
                .and(events::family.eq(family.as_str()))),
        )
        .filter(patients::pseudonym.eq(pseudonym))
        .order((events::signed_at, events::recorded_at, events::id))
        .select((
            PatientRow::as_select(),
            EVENT_ROW_COLUMNS.nullable(),
            events::decisions.nullable(),
            // A scalar subquery in the query language, so the statement is
            // prepared once per connection like the others.
            versions::table
                .filter(versions::family.eq(family.as_str()))
                .filter(versions::status.ne(crate::consent::DocumentStatus::Draft.as_str()))
                .count()
                .single_value(),
        ))
        .load(c))?;
    record_of(
        rows.into_iter()
            .map(|(patient, event, decisions, published)| {
                (patient, event, decisions, published.unwrap_or(0))
            })
            .collect(),
    )
}

/// A row of a patient record read: the patient, one event (none if the
/// patient has no event in the family) and the published version count.
type RecordRow = (PatientRow, Option<EventRow>, Option<String>, i64);

fn record_of(rows: Vec<RecordRow>) -> Result<Option<PatientRecord>, DieselError> {
    let Some((patient, _, _, published_versions)) = rows.first() else {
        return Ok(None);
    };
    let (patient, published_versions) = (patient.clone(), *published_versions);
    let events = assemble(
        rows.into_iter()
            .filter_map(|(_, event, decisions, _)| event.zip(decisions))
            .collect(),
    )?;
    Ok(Some(PatientRecord {
        patient,
        events,
        published_versions,
    }))
}

/// [`patient_record`] and the read's log entry (with its outbox row) in one
/// PostgreSQL statement, for a caller reading a patient of its own
/// hospital: the entry is written only if the patient exists and belongs
/// to `hospital`. `None` means nothing was read or written (no such
/// patient, another hospital's patient, or SQLite), and the caller takes
/// the general path, which tells those apart (decision 0016).
pub fn own_patient_record_logged(
    conn: &mut DbConnection,
    pseudonym: &str,
    family: DocumentFamily,
    hospital: &str,
    entry: &crate::ledger::entry::LogEntry,
) -> Result<Option<PatientRecord>, DieselError> {
    let DbConnection::Postgresql(c) = conn else {
        return Ok(None);
    };
    let statement = OwnRecordLogged {
        pseudonym,
        hospital,
        family: family.as_str(),
        entry: super::ledger::PreparedEntries::of(std::slice::from_ref(entry))?,
    };
    record_of(statement.load(c)?)
}

/// The statement of [`own_patient_record_logged`]. A query type of its own
/// so that diesel prepares it once per connection (see the ledger's
/// `AppendStatement`).
struct OwnRecordLogged<'a> {
    pseudonym: &'a str,
    hospital: &'a str,
    family: &'a str,
    entry: super::ledger::PreparedEntries,
}

impl diesel::query_builder::QueryId for OwnRecordLogged<'_> {
    type QueryId = ();
    // Cached by its SQL text, which never changes.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for OwnRecordLogged<'_> {
    type SqlType = (
        diesel::dsl::SqlTypeOf<diesel::dsl::AsSelect<PatientRow, diesel::pg::Pg>>,
        diesel::sql_types::Nullable<diesel::dsl::SqlTypeOf<EventRowColumns>>,
        diesel::sql_types::Nullable<diesel::sql_types::Text>,
        diesel::sql_types::BigInt,
    );
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for OwnRecordLogged<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::Text;
        out.push_sql(
            "WITH p AS (SELECT pseudonym, hospital_org, majority_on, deceased_on, created_at \
               FROM patients WHERE pseudonym = ",
        );
        out.push_bind_param::<Text, _>(self.pseudonym)?;
        out.push_sql(" AND hospital_org = ");
        out.push_bind_param::<Text, _>(self.hospital)?;
        out.push_sql("), l AS (");
        super::ledger::walk_entry_insert(out.reborrow(), &self.entry, Some("p"))?;
        out.push_sql("), lo AS (");
        out.push_sql(super::ledger::OUTBOX_INSERT_FROM);
        out.push_sql(
            "l) SELECT p.pseudonym, p.hospital_org, p.majority_on, p.deceased_on, p.created_at, ",
        );
        out.push_sql(&JOINED_EVENT_COLUMNS);
        out.push_sql(
            ", (SELECT COUNT(*) FROM document_versions WHERE status <> 'draft' AND family = ",
        );
        out.push_bind_param::<Text, _>(self.family)?;
        out.push_sql(
            ") FROM p LEFT JOIN consent_events e ON e.patient_pseudonym = p.pseudonym AND e.family = ",
        );
        out.push_bind_param::<Text, _>(self.family)?;
        out.push_sql(" ORDER BY e.signed_at, e.recorded_at, e.id");
        Ok(())
    }
}

impl RunQueryDsl<diesel::PgConnection> for OwnRecordLogged<'_> {}

/// Every event of the named patients in one family, grouped by patient in
/// the order they took effect. Used to check a whole page of a cohort at
/// once: one index lookup per patient, and only the columns derivation
/// needs.
pub fn events_for_patients(
    conn: &mut DbConnection,
    pseudonyms: &[String],
    family: DocumentFamily,
) -> Result<BTreeMap<String, Vec<ConsentEvent>>, DieselError> {
    type Lean = (
        String,
        String,
        String,
        String,
        NaiveDateTime,
        NaiveDateTime,
        String,
        String,
    );
    let mut grouped: BTreeMap<String, Vec<ConsentEvent>> = BTreeMap::new();
    if pseudonyms.is_empty() {
        return Ok(grouped);
    }
    let rows: Vec<Lean> = db_run!(conn, c => events::table
        .filter(events::patient_pseudonym.eq_any(pseudonyms))
        .filter(events::family.eq(family.as_str()))
        .order((events::patient_pseudonym, events::signed_at, events::recorded_at, events::id))
        .select((events::patient_pseudonym, events::id, events::kind, events::document_version_id, events::signed_at, events::recorded_at, events::decisions, events::signer_kind))
        .load(c))?;
    for (patient, id, kind, version, signed_at, recorded_at, decisions, signer) in rows {
        let event = ConsentEvent {
            kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind"))?,
            version: version
                .parse::<crate::consent::DocumentVersionId>()
                .map_err(|_| corrupt("document version"))?
                .number,
            signed_at: utc(signed_at),
            recorded_at: utc(recorded_at),
            decisions: decode_decisions(&decisions)?,
            id,
            by_proxy: signer == PROXY,
        };
        grouped.entry(patient).or_default().push(event);
    }
    Ok(grouped)
}

/// Patients whose majority day is after `after` and by `through`, with it.
/// Read from the partial index of minors (migration 000014).
pub fn came_of_age_between(
    conn: &mut DbConnection,
    after: NaiveDate,
    through: NaiveDate,
) -> Result<Vec<(String, NaiveDate)>, DieselError> {
    let rows: Vec<(String, Option<NaiveDate>)> = db_run!(conn, c => patients::table
        .filter(patients::majority_on.is_not_null())
        .filter(patients::majority_on.gt(after))
        .filter(patients::majority_on.le(through))
        .order(patients::pseudonym)
        .select((patients::pseudonym, patients::majority_on))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(patient, on)| Some((patient, on?)))
        .collect())
}

/// Of `pseudonyms`, those recorded as minors (with the day they come of
/// age), as the consent checks of a release need them: everyone else is
/// [`Person::default`]. Read from the partial index of migration 000014,
/// which holds the minors only, without touching the table.
pub fn minors_among(
    conn: &mut DbConnection,
    pseudonyms: &[String],
) -> Result<BTreeMap<String, Person>, DieselError> {
    if pseudonyms.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<(String, Option<NaiveDate>, Option<NaiveDate>)> = db_run!(conn, c => patients::table
        .filter(patients::majority_on.is_not_null())
        .filter(patients::pseudonym.eq_any(pseudonyms))
        .select((patients::pseudonym, patients::majority_on, patients::deceased_on))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(pseudonym, majority_on, deceased_on)| {
            (
                pseudonym,
                Person {
                    majority_on,
                    deceased_on,
                },
            )
        })
        .collect())
}

/// Every event of every patient of one hospital in one family, grouped by
/// patient. Used for the re-consent work list.
/// The events in `family` of a hospital's patients whose pseudonyms lie in
/// `first..=last`, grouped by patient.
pub fn events_for_hospital(
    conn: &mut DbConnection,
    hospital_org: &str,
    family: DocumentFamily,
    (first, last): (&str, &str),
) -> Result<BTreeMap<String, Vec<StoredEvent>>, DieselError> {
    let rows = db_run!(conn, c => events::table
        .inner_join(patients::table)
        .filter(patients::hospital_org.eq(hospital_org))
        .filter(events::family.eq(family.as_str()))
        .filter(events::patient_pseudonym.between(first, last))
        .order((events::patient_pseudonym, events::signed_at, events::recorded_at, events::id))
        .select((EventRow::as_select(), events::decisions))
        .load(c))?;
    let mut grouped: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
    for stored in assemble(rows)? {
        grouped
            .entry(stored.row.patient_pseudonym.clone())
            .or_default()
            .push(stored);
    }
    Ok(grouped)
}

/// A page of a hospital's patients in pseudonym order, after `after`.
pub fn patients_of_hospital(
    conn: &mut DbConnection,
    hospital_org: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<PatientRow>, DieselError> {
    db_run!(conn, c => {
        let mut query = patients::table
            .filter(patients::hospital_org.eq(hospital_org))
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(patients::pseudonym.gt(after));
        }
        query
            .order(patients::pseudonym)
            .limit(limit)
            .select(PatientRow::as_select())
            .load(c)
    })
}

/// The event columns in the order [`with_event_binds`] binds them.
const EVENT_COLUMNS: &str = "id, patient_pseudonym, family, document_version_id, kind, signer_kind, proxy_relationship, \
     explained_by, signed_at, recorded_at, form_hash, hospital_org, recorded_by, idempotency_key, request_hash, decisions";

/// [`EVENT_COLUMNS`] as the `e` side of a join.
static JOINED_EVENT_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    EVENT_COLUMNS
        .split(", ")
        .map(|column| format!("e.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
});

type PgQuery<'a> = super::prepared::PgStatement<'a>;

/// `sql` with the event's sixteen columns bound as `$1` … `$16`, the last
/// being its encoded decisions.
fn with_event_binds<'a>(sql: String, row: &'a EventRow, decisions: &'a str) -> PgQuery<'a> {
    use diesel::sql_types::{Nullable, Text, Timestamp};
    super::prepared::PgStatement::new(sql)
        .bind::<Text, _>(&row.id)
        .bind::<Text, _>(&row.patient_pseudonym)
        .bind::<Text, _>(&row.family)
        .bind::<Text, _>(&row.document_version_id)
        .bind::<Text, _>(&row.kind)
        .bind::<Text, _>(&row.signer_kind)
        .bind::<Nullable<Text>, _>(&row.proxy_relationship)
        .bind::<Text, _>(&row.explained_by)
        .bind::<Timestamp, _>(row.signed_at)
        .bind::<Timestamp, _>(row.recorded_at)
        .bind::<Text, _>(&row.form_hash)
        .bind::<Text, _>(&row.hospital_org)
        .bind::<Text, _>(&row.recorded_by)
        .bind::<Text, _>(&row.idempotency_key)
        .bind::<Text, _>(&row.request_hash)
        .bind::<Text, _>(decisions)
}

/// Stores a consent event with its item decisions, registering the patient
/// (and sealing its identity into the vault) on first sight.
///
/// PostgreSQL does it in two statements, the first a data-modifying CTE: on
/// a busy two-core host every round trip saved is throughput. SQLite is
/// in-process and takes the plain statements.
pub fn record_event(
    conn: &mut DbConnection,
    row: &EventRow,
    decisions: &[(ScopeItemKey, Decision)],
    sealed: Option<&crate::pseudonym::vault::Sealed>,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    use diesel::sql_types::{Binary, Integer, Text, Timestamp};
    let DbConnection::Postgresql(c) = conn else {
        ensure_patient(conn, &row.patient_pseudonym, &row.hospital_org, now)?;
        if let Some(sealed) = sealed {
            super::samples::seal_identity(
                conn,
                &row.patient_pseudonym,
                &row.hospital_org,
                sealed,
                now,
            )?;
        }
        return insert_event(conn, row, decisions);
    };
    let now = now.naive_utc();
    match sealed {
        Some(sealed) => {
            super::prepared::PgStatement::new(
                "WITH p AS (INSERT INTO patients (pseudonym, hospital_org, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (pseudonym) DO NOTHING RETURNING pseudonym) \
                 INSERT INTO identity_vault (patient_pseudonym, hospital_org, key_version, nonce, ciphertext, sealed_at) \
                 SELECT pseudonym, $2, $4, $5, $6, $3 FROM p",
            )
            .bind::<Text, _>(&row.patient_pseudonym)
            .bind::<Text, _>(&row.hospital_org)
            .bind::<Timestamp, _>(now)
            .bind::<Integer, _>(i32::try_from(sealed.key_version).unwrap_or(i32::MAX))
            .bind::<Binary, _>(&sealed.nonce)
            .bind::<Binary, _>(&sealed.ciphertext)
            .execute(c)?;
        }
        None => {
            diesel::insert_into(patients::table)
                .values((
                    patients::pseudonym.eq(&row.patient_pseudonym),
                    patients::hospital_org.eq(&row.hospital_org),
                    patients::created_at.eq(now),
                ))
                .on_conflict(patients::pseudonym)
                .do_nothing()
                .execute(c)?;
        }
    }
    let decisions = encode_decisions(decisions);
    with_event_binds(
        format!("INSERT INTO consent_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"),
        row,
        &decisions,
    )
    .execute(c)?;
    Ok(())
}

/// The common case of a grant on PostgreSQL as one self-committing
/// statement: only if the version is active and was in force when signed,
/// and the patient is new, the patient (with its sealed identity), the
/// event with its decisions, its log entry and the enrollment code are
/// written together; otherwise nothing is. Returns whether it wrote.
///
/// A new patient is in no release, so nothing can need recalling; a known
/// patient's grant takes the general path, which checks (decision 0027).
///
/// A `false` or an error is not an answer: the caller falls back to the
/// general path, which says precisely why (and replays retries).
pub fn grant_in_one_statement(
    conn: &mut DbConnection,
    row: &EventRow,
    decisions: &[(ScopeItemKey, Decision)],
    sealed: &crate::pseudonym::vault::Sealed,
    extras: &GrantExtras<'_>,
) -> Result<bool, DieselError> {
    use diesel::sql_types::{Binary, Integer, Text, Timestamp};
    let DbConnection::Postgresql(c) = conn else {
        return Ok(false);
    };
    let entry_at = 20;
    let (code_at, expires_at) = (entry_at + 6, entry_at + 7);
    let sql = format!(
        "WITH ok AS (SELECT 1 FROM document_versions WHERE id = $4 AND status = 'active' AND effective_from <= $9), \
         p AS (INSERT INTO patients (pseudonym, hospital_org, created_at) SELECT $2, $12, $10 WHERE EXISTS (SELECT 1 FROM ok) \
               ON CONFLICT (pseudonym) DO NOTHING RETURNING pseudonym), \
         v AS (INSERT INTO identity_vault (patient_pseudonym, hospital_org, key_version, nonce, ciphertext, sealed_at) \
               SELECT pseudonym, $12, $17, $18, $19, $10 FROM p), \
         e AS (INSERT INTO consent_events ({EVENT_COLUMNS}) \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 WHERE EXISTS (SELECT 1 FROM p) \
               RETURNING id), \
         {} \
         INSERT INTO enrollment_codes (code_hash, patient_pseudonym, issued_by, issued_at, expires_at) \
         SELECT ${code_at}, $2, $13, $10, ${expires_at} FROM e",
        super::ledger::append_cte("l", entry_at, "e"),
    );
    let decisions = encode_decisions(decisions);
    let entry = extras.entry;
    let query = with_event_binds(sql, row, &decisions)
        .bind::<Integer, _>(i32::try_from(sealed.key_version).unwrap_or(i32::MAX))
        .bind::<Binary, _>(&sealed.nonce)
        .bind::<Binary, _>(&sealed.ciphertext)
        .bind::<Binary, _>(entry.to_bytes())
        .bind::<Timestamp, _>(entry.at.naive_utc())
        .bind::<Text, _>(&entry.patient)
        .bind::<Text, _>(&entry.actor.org)
        .bind::<Text, _>(&entry.actor.user)
        .bind::<Text, _>(entry.action.as_str())
        .bind::<Text, _>(extras.code_hash)
        .bind::<Timestamp, _>(extras.code_expires_at);
    Ok(query.execute(c)? == 1)
}

/// What a fast-path grant writes besides the consent: its access-log entry
/// (with outbox row) and the patient's enrollment code.
pub struct GrantExtras<'a> {
    pub entry: &'a crate::ledger::entry::LogEntry,
    pub code_hash: &'a str,
    pub code_expires_at: NaiveDateTime,
}
