//! Appending to the log, inside the transaction of the action being
//! logged: entries and their outbox rows, one statement per chunk.

use super::*;

/// Entries serialized and laid out as the append statement binds them:
/// the CPU half of an append, which a release prepares on another thread
/// while its transaction writes the previous batch.
#[derive(Debug, Default)]
pub struct PreparedEntries {
    bytes: Vec<Vec<u8>>,
    at: Vec<NaiveDateTime>,
    patient: Vec<String>,
    org: Vec<String>,
    user: Vec<String>,
    action: Vec<&'static str>,
}

impl PreparedEntries {
    /// Serializes `batch`. Refuses times finer than a microsecond: both
    /// databases keep microseconds, and a finer time would make the stored
    /// column disagree with the entry bytes, which verify-log reports.
    pub fn of(batch: &[LogEntry]) -> Result<Self, DieselError> {
        Self::check_precision(batch)?;
        let mut prepared = Self {
            bytes: Vec::with_capacity(batch.len()),
            at: Vec::with_capacity(batch.len()),
            patient: Vec::with_capacity(batch.len()),
            org: Vec::with_capacity(batch.len()),
            user: Vec::with_capacity(batch.len()),
            action: Vec::with_capacity(batch.len()),
        };
        for e in batch {
            prepared.bytes.push(e.to_bytes());
            prepared.at.push(e.at.naive_utc());
            prepared.patient.push(e.patient.clone());
            prepared.org.push(e.actor.org.clone());
            prepared.user.push(e.actor.user.clone());
            prepared.action.push(e.action.as_str());
        }
        Ok(prepared)
    }

    fn check_precision(batch: &[LogEntry]) -> Result<(), DieselError> {
        if batch.iter().any(|e| e.at.nanosecond() % 1000 != 0) {
            return Err(DieselError::QueryBuilderError(
                "a log entry's time must be at microsecond precision".into(),
            ));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Appends entries with their outbox rows, in the caller's transaction.
///
/// A batch larger than `APPEND_PART` goes in parts of that size: the next
/// part is serialized on a second thread while the database inserts the
/// current one. Every entry is checked before anything is written.
pub fn append(conn: &mut DbConnection, batch: &[LogEntry]) -> Result<(), DieselError> {
    if batch.len() <= APPEND_PART {
        return append_prepared(conn, &PreparedEntries::of(batch)?);
    }
    PreparedEntries::check_precision(batch)?;
    std::thread::scope(|scope| {
        // Inside the scope, so an early return drops the receiver and the
        // serializing thread stops instead of waiting to send.
        let (to_writer, parts) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for part in batch.chunks(APPEND_PART) {
                if to_writer.send(PreparedEntries::of(part)).is_err() {
                    break;
                }
            }
        });
        for part in parts.iter() {
            append_prepared(conn, &part?)?;
        }
        Ok(())
    })
}

/// Appends prepared entries with their outbox rows, in the caller's
/// transaction.
pub fn append_prepared(
    conn: &mut DbConnection,
    batch: &PreparedEntries,
) -> Result<(), DieselError> {
    if batch.is_empty() {
        return Ok(());
    }
    match conn {
        DbConnection::Postgresql(c) => {
            AppendStatement(batch).execute(c)?;
            Ok(())
        }
        DbConnection::Sqlite(c) => {
            for (i, bytes) in batch.bytes.iter().enumerate() {
                diesel::insert_into(entries::table)
                    .values((
                        entries::entry.eq(bytes),
                        entries::recorded_at.eq(batch.at[i]),
                        entries::patient_pseudonym.eq(&batch.patient[i]),
                        entries::actor_org.eq(&batch.org[i]),
                        entries::actor_user.eq(&batch.user[i]),
                        entries::action.eq(batch.action[i]),
                    ))
                    .execute(c)?;
                let seq: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "last_insert_rowid()",
                ))
                .get_result(c)?;
                diesel::insert_into(outbox::table)
                    .values((
                        outbox::seq.eq(seq),
                        outbox::patient_pseudonym.eq(&batch.patient[i]),
                    ))
                    .execute(c)?;
            }
            Ok(())
        }
    }
}

/// The PostgreSQL append: one statement per batch, whatever its size, as
/// arrays that unnest into rows. (Appending by COPY was tried and measured
/// no faster; decision 0013.) A query type of its own rather than
/// `sql_query`, which diesel never prepares: planning this statement for
/// every logged read cost PostgreSQL more than running it.
struct AppendStatement<'a>(&'a PreparedEntries);

impl diesel::query_builder::QueryId for AppendStatement<'_> {
    type QueryId = ();
    // Cached by its SQL text, which never changes.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for AppendStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("WITH e AS (");
        walk_entry_insert(out.reborrow(), self.0, None)?;
        out.push_sql(") ");
        out.push_sql(OUTBOX_INSERT_FROM);
        out.push_sql("e");
        Ok(())
    }
}

/// The start of the statement that gives every entry returned by a CTE
/// (as `seq, patient_pseudonym`) its outbox row; the CTE's name follows.
pub const OUTBOX_INSERT_FROM: &str =
    "INSERT INTO notification_outbox (seq, patient_pseudonym) SELECT seq, patient_pseudonym FROM ";

/// The insert of `batch` into the log, as the body of a CTE returning
/// `seq, patient_pseudonym` for [`OUTBOX_INSERT_FROM`]. With a `guard`,
/// nothing is written unless the CTE of that name produced a row.
pub fn walk_entry_insert<'b>(
    mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    batch: &'b PreparedEntries,
    guard: Option<&'static str>,
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Binary, Text, Timestamp};
    out.push_sql(ENTRY_INSERT);
    out.push_sql(" SELECT * FROM unnest(");
    out.push_bind_param::<Array<Binary>, _>(&batch.bytes)?;
    out.push_sql("::bytea[], ");
    out.push_bind_param::<Array<Timestamp>, _>(&batch.at)?;
    out.push_sql("::timestamp[], ");
    out.push_bind_param::<Array<Text>, _>(&batch.patient)?;
    out.push_sql("::text[], ");
    out.push_bind_param::<Array<Text>, _>(&batch.org)?;
    out.push_sql("::text[], ");
    out.push_bind_param::<Array<Text>, _>(&batch.user)?;
    out.push_sql("::text[], ");
    out.push_bind_param::<Array<Text>, _>(&batch.action)?;
    out.push_sql("::text[])");
    if let Some(guard) = guard {
        out.push_sql(" WHERE EXISTS (SELECT 1 FROM ");
        out.push_sql(guard);
        out.push_sql(")");
    }
    out.push_sql(" RETURNING seq, patient_pseudonym");
    Ok(())
}

impl RunQueryDsl<diesel::PgConnection> for AppendStatement<'_> {}

/// Appends entries as one atomic unit outside any caller transaction: on
/// PostgreSQL a batch of up to `APPEND_PART` entries is a single statement
/// already; larger batches, and SQLite's per-entry inserts, need a
/// transaction around them.
pub fn append_atomically(conn: &mut DbConnection, batch: &[LogEntry]) -> Result<(), DieselError> {
    match conn {
        // One statement is atomic by itself.
        DbConnection::Postgresql(_) if batch.len() <= APPEND_PART => append(conn, batch),
        _ => write_transaction(conn, |conn| append(conn, batch)),
    }
}

/// The SQL that appends one entry inside a larger PostgreSQL statement, as
/// two CTEs named `{name}` (the entry) and `{name}_o` (its outbox row).
/// Parameters `$first` … `$first+5` are the entry's bytes, time, patient,
/// org, user and action; `guard` is a CTE that must have produced a row
/// (the action itself) for the entry to be written.
pub fn append_cte(name: &str, first: usize, guard: &str) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "{name} AS ({ENTRY_INSERT} SELECT {}, {}, {}, {}, {}, {} WHERE EXISTS (SELECT 1 FROM {guard}) \
           RETURNING seq, patient_pseudonym), \
         {name}_o AS ({OUTBOX_INSERT_FROM}{name})",
        p(0), p(1), p(2), p(3), p(4), p(5)
    )
}

/// The head of every insert into the log: the entry and its indexed
/// columns.
const ENTRY_INSERT: &str = "INSERT INTO access_log_entries \
    (entry, recorded_at, patient_pseudonym, actor_org, actor_user, action)";
