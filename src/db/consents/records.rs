//! A patient with their events in one family, as a logged consent read
//! needs them; on PostgreSQL for the patient's own hospital in one
//! statement with the read's log entry.

use super::*;

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
    use crate::db::schema::document_versions as versions;
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
        entry: crate::db::ledger::PreparedEntries::of(std::slice::from_ref(entry))?,
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
    entry: crate::db::ledger::PreparedEntries,
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
        crate::db::ledger::walk_entry_insert(out.reborrow(), &self.entry, Some("p"))?;
        out.push_sql("), lo AS (");
        out.push_sql(crate::db::ledger::OUTBOX_INSERT_FROM);
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
