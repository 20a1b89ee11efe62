//! Storage of the access log: entries (with their outbox rows), the tree's
//! leaves and nodes, signed checkpoints and notification deliveries.
//!
//! Two steps, as in Trillian and other transparency logs:
//! - [`append`] runs inside the transaction of the action being logged. It
//!   only inserts, so concurrent actions never wait on one another.
//! - [`integrate`] gives queued entries their tree indices, stores the
//!   nodes they complete (O(log n) reads per batch through
//!   [`Frontier`]), signs a checkpoint and queues webhook and NATS
//!   deliveries, all in one transaction that holds the log's lock.

use super::documents::utc;
use super::schema::{
    access_log_checkpoints as checkpoints, access_log_entries as entries,
    access_log_leaves as leaves, access_log_nodes as nodes, notification_deliveries as deliveries,
    notification_endpoints as endpoints, notification_outbox as outbox, patient_preferences,
    patients,
};
use super::{write_transaction, DbConnection};
use crate::db_run;
use crate::ledger::checkpoint::{Checkpoint, NoteSigner};
use crate::ledger::entry::{IndexedFields, LogAction, LogEntry};
use crate::ledger::merkle::{self, leaf_hash, Frontier, Hash};
use crate::ledger::verify::{InOrder, Leaf, LogChecker, NodePosition, StoredCheckpoint};
use chrono::Timelike;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::{BTreeSet, HashMap};

/// Rows per multi-row INSERT: below SQLite's bind-parameter limit for every
/// table here.
const CHUNK: usize = 4_000;
/// Entries per append statement when a large batch is appended in parts.
const APPEND_PART: usize = 10_000;

/// The advisory lock key that serializes integration on PostgreSQL
/// ("gglog" in ASCII).
const INTEGRATION_LOCK: i64 = 0x67_67_6c_6f_67;

/// The PostgreSQL channel an integration announces its new tree size on.
pub const LOG_CHANNEL: &str = "genomegate_log";

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = entries)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct EntryRow {
    pub seq: i64,
    pub entry: Vec<u8>,
    pub recorded_at: NaiveDateTime,
    pub patient_pseudonym: String,
    pub actor_org: String,
    pub actor_user: String,
    pub action: String,
}

impl EntryRow {
    /// Whether the indexed columns say what the entry bytes say.
    pub fn columns_match(&self, entry: &IndexedFields<'_>) -> bool {
        self.recorded_at == entry.at.naive_utc()
            && self.patient_pseudonym == entry.patient
            && self.actor_org == entry.actor.org
            && self.actor_user == entry.actor.user
            && self.action == entry.action.as_str()
    }
}

fn corrupt(what: &str) -> DieselError {
    DieselError::DeserializationError(format!("corrupt {what} in the access log").into())
}

fn to_hash(bytes: &[u8]) -> Result<Hash, DieselError> {
    bytes.try_into().map_err(|_| corrupt("node hash"))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

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

/// What one integration did.
#[derive(Debug, Clone)]
pub struct Integrated {
    /// The tree grew from `from` leaves to `to`.
    pub from: u64,
    pub to: u64,
    pub root: Hash,
    /// The signed checkpoint of size `to`.
    pub note: String,
}

/// The log's current size (the next index).
pub fn size(conn: &mut DbConnection) -> Result<u64, DieselError> {
    let max: Option<i64> =
        db_run!(conn, c => leaves::table.select(diesel::dsl::max(leaves::idx)).first(c))?;
    Ok(max.map_or(0, |m| m as u64 + 1))
}

/// Loads stored nodes by coordinate.
pub fn nodes_at(
    conn: &mut DbConnection,
    wanted: &[(u32, u64)],
) -> Result<HashMap<(u32, u64), Hash>, DieselError> {
    let mut found = HashMap::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(found);
    }
    let rows: Vec<(i16, i64, Vec<u8>)> = match conn {
        DbConnection::Postgresql(c) => {
            let levels: Vec<i16> = wanted.iter().map(|(level, _)| *level as i16).collect();
            let indices: Vec<i64> = wanted.iter().map(|(_, index)| to_i64(*index)).collect();
            NodesAtStatement {
                levels: &levels,
                indices: &indices,
            }
            .load(c)?
        }
        DbConnection::Sqlite(c) => {
            // Group by level: one `idx IN (…)` per level.
            let mut by_level: HashMap<u32, Vec<i64>> = HashMap::new();
            for (level, index) in wanted {
                by_level.entry(*level).or_default().push(to_i64(*index));
            }
            let mut query = nodes::table.into_boxed();
            for (level, indices) in &by_level {
                query = query.or_filter(
                    nodes::level
                        .eq(*level as i16)
                        .and(nodes::idx.eq_any(indices.clone())),
                );
            }
            query
                .select((nodes::level, nodes::idx, nodes::hash))
                .load(c)?
        }
    };
    for (level, index, hash) in rows {
        found.insert((level as u32, index as u64), to_hash(&hash)?);
    }
    Ok(found)
}

/// The PostgreSQL node lookup: the wanted coordinates as two arrays joined
/// to the table, so the SQL text is the same for every proof and the
/// statement is prepared once per connection. A proof at a million entries
/// reads about twenty nodes on as many levels; as a query with one `OR`
/// branch per level, every proof, receipt and integration was parsed and
/// planned anew.
struct NodesAtStatement<'a> {
    levels: &'a [i16],
    indices: &'a [i64],
}

impl diesel::query_builder::QueryId for NodesAtStatement<'_> {
    type QueryId = ();
    // Cached by its SQL text, which never changes.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for NodesAtStatement<'_> {
    type SqlType = (
        diesel::sql_types::SmallInt,
        diesel::sql_types::BigInt,
        diesel::sql_types::Binary,
    );
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for NodesAtStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, SmallInt};
        out.push_sql("SELECT n.level, n.idx, n.hash FROM access_log_nodes n JOIN unnest(");
        out.push_bind_param::<Array<SmallInt>, _>(self.levels)?;
        out.push_sql("::smallint[], ");
        out.push_bind_param::<Array<BigInt>, _>(self.indices)?;
        out.push_sql("::bigint[]) AS w (level, idx) ON n.level = w.level AND n.idx = w.idx");
        Ok(())
    }
}

impl RunQueryDsl<diesel::PgConnection> for NodesAtStatement<'_> {}

/// Runs a computation over stored nodes: finds which nodes it reads, loads
/// them in one query, then runs it for real.
fn with_stored_nodes<T>(
    conn: &mut DbConnection,
    run: impl Fn(&mut dyn FnMut(u32, u64) -> Hash) -> T,
) -> Result<T, DieselError> {
    let wanted = merkle::nodes_read_by(|node| {
        run(node);
    });
    let found = nodes_at(conn, &wanted)?;
    let mut missing = false;
    let value = run(&mut |level, index| match found.get(&(level, index)) {
        Some(hash) => *hash,
        None => {
            missing = true;
            [0; 32]
        }
    });
    if missing {
        return Err(corrupt("tree (a stored node is missing)"));
    }
    Ok(value)
}

pub fn inclusion_proof(
    conn: &mut DbConnection,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, DieselError> {
    with_stored_nodes(conn, |node| merkle::inclusion_proof_from(index, size, node))
}

pub fn consistency_proof(
    conn: &mut DbConnection,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, DieselError> {
    with_stored_nodes(conn, |node| merkle::consistency_proof_from(old, new, node))
}

/// Inclusion proofs for many leaves at one tree size, from one node query.
pub fn inclusion_proofs(
    conn: &mut DbConnection,
    indices: &[u64],
    size: u64,
) -> Result<Vec<Vec<Hash>>, DieselError> {
    with_stored_nodes(conn, |node| {
        indices
            .iter()
            .map(|i| merkle::inclusion_proof_from(*i, size, node))
            .collect()
    })
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = checkpoints)]
pub struct CheckpointRow {
    pub size: i64,
    pub root: Vec<u8>,
    pub note: String,
    pub signed_at: NaiveDateTime,
}

pub fn latest_checkpoint(conn: &mut DbConnection) -> Result<Option<CheckpointRow>, DieselError> {
    db_run!(conn, c => checkpoints::table
        .order(checkpoints::size.desc())
        .select(CheckpointRow::as_select())
        .first(c)
        .optional())
}

pub fn checkpoint_at(
    conn: &mut DbConnection,
    size: u64,
) -> Result<Option<CheckpointRow>, DieselError> {
    db_run!(conn, c => checkpoints::table
        .find(to_i64(size))
        .select(CheckpointRow::as_select())
        .first(c)
        .optional())
}

/// Every stored checkpoint, smallest first (verification).
pub fn all_checkpoints(conn: &mut DbConnection) -> Result<Vec<CheckpointRow>, DieselError> {
    db_run!(conn, c => checkpoints::table
        .order(checkpoints::size)
        .select(CheckpointRow::as_select())
        .load(c))
}

/// An endpoint's id and owner: a patient, a hospital, or neither (NATS).
type EndpointTarget = (String, Option<String>, Option<String>);

/// Endpoints that may hear about the batch's entries: the patients' own
/// webhooks, and every active endpoint not owned by a patient (NATS
/// subjects and hospitals' patient-app webhooks). Those are few, so all are
/// read rather than looking up the hospital of every patient in the batch
/// (4–5 ms for 1,000 patients, on every integration); `queue_deliveries`
/// matches hospital apps to the patients.
fn endpoints_for(
    conn: &mut DbConnection,
    patients_in_batch: &BTreeSet<&str>,
) -> Result<Vec<EndpointTarget>, DieselError> {
    let list: Vec<&str> = patients_in_batch.iter().copied().collect();
    db_run!(conn, c => {
        let mut found: Vec<EndpointTarget> = endpoints::table
            .filter(endpoints::disabled_at.is_null())
            .filter(endpoints::patient_pseudonym.is_null())
            // An application's webhook hears only its recall notices.
            .filter(endpoints::application_id.is_null())
            .select((endpoints::id, endpoints::patient_pseudonym, endpoints::hospital_org))
            .load(c)?;
        for chunk in list.chunks(CHUNK) {
            found.extend(
                endpoints::table
                    .filter(endpoints::disabled_at.is_null())
                    .filter(endpoints::patient_pseudonym.eq_any(chunk))
                    .select((endpoints::id, endpoints::patient_pseudonym, endpoints::hospital_org))
                    .load::<EndpointTarget>(c)?,
            );
        }
        Ok::<_, DieselError>(found)
    })
}

/// For each patient in the batch: their hospital and whether they accept
/// notifications through the hospital's app (default yes).
fn hospital_app_routes(
    conn: &mut DbConnection,
    patients_in_batch: &BTreeSet<&str>,
) -> Result<HashMap<String, (String, bool)>, DieselError> {
    let list: Vec<&str> = patients_in_batch.iter().copied().collect();
    let mut routes = HashMap::new();
    for chunk in list.chunks(CHUNK) {
        let rows: Vec<(String, String, Option<bool>)> = db_run!(conn, c => patients::table
            .left_join(patient_preferences::table)
            .filter(patients::pseudonym.eq_any(chunk))
            .select((patients::pseudonym, patients::hospital_org, patient_preferences::hospital_app.nullable()))
            .load(c))?;
        for (pseudonym, hospital, app) in rows {
            routes.insert(pseudonym, (hospital, app.unwrap_or(true)));
        }
    }
    Ok(routes)
}

/// Integrates up to `max` queued entries. `None` when nothing was queued.
pub fn integrate(
    conn: &mut DbConnection,
    signer: &NoteSigner,
    origin: &str,
    now: DateTime<Utc>,
    max: usize,
) -> Result<Option<Integrated>, DieselError> {
    write_transaction(conn, |conn| {
        if let DbConnection::Postgresql(c) = conn {
            diesel::select(super::pg_advisory_xact_lock(INTEGRATION_LOCK)).execute(c)?;
        }
        // The queue first, then its entries by key. As one join, PostgreSQL
        // merge-joins the queue with the whole log in key order, reading
        // every entry ever appended before it reaches the queued ones.
        let waiting: Vec<(i64, String)> = db_run!(conn, c => outbox::table
            .order(outbox::seq)
            .limit(max as i64)
            .select((outbox::seq, outbox::patient_pseudonym))
            .load(c))?;
        if waiting.is_empty() {
            return Ok(None);
        }
        let seqs: Vec<i64> = waiting.iter().map(|(seq, _)| *seq).collect();
        let mut bytes: HashMap<i64, Vec<u8>> = HashMap::with_capacity(seqs.len());
        for chunk in seqs.chunks(CHUNK) {
            let rows: Vec<(i64, Vec<u8>)> = db_run!(conn, c => entries::table
                .filter(entries::seq.eq_any(chunk))
                .select((entries::seq, entries::entry))
                .load(c))?;
            bytes.extend(rows);
        }
        let queued = waiting
            .into_iter()
            .map(|(seq, patient)| {
                let entry = bytes
                    .remove(&seq)
                    .ok_or_else(|| corrupt("outbox (a queued entry is missing)"))?;
                Ok((seq, patient, entry))
            })
            .collect::<Result<Vec<(i64, String, Vec<u8>)>, DieselError>>()?;
        let from = size(conn)?;
        let needed = Frontier::needed(from);
        let stored = nodes_at(conn, &needed)?;
        let resume_nodes = needed
            .iter()
            .map(|k| stored.get(k).copied())
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| corrupt("tree (a frontier node is missing)"))?;
        let mut frontier =
            Frontier::resume(from, &resume_nodes).ok_or_else(|| corrupt("tree frontier"))?;
        let mut leaf_rows = Vec::with_capacity(queued.len());
        let mut node_rows = Vec::with_capacity(queued.len() * 2);
        for (seq, _, bytes) in &queued {
            leaf_rows.push((
                leaves::idx.eq(to_i64(frontier.size())),
                leaves::seq.eq(*seq),
            ));
            for made in frontier.push(leaf_hash(bytes)) {
                node_rows.push((
                    nodes::level.eq(made.level as i16),
                    nodes::idx.eq(to_i64(made.index)),
                    nodes::hash.eq(made.hash.to_vec()),
                ));
            }
        }
        let to = frontier.size();
        let root = frontier.root();
        match conn {
            // Binary COPY: multi-row VALUES made PostgreSQL parse and plan
            // a statement of thousands of parameters on every integration.
            DbConnection::Postgresql(c) => {
                diesel::copy_from(leaves::table)
                    .from_insertable(leaf_rows)
                    .execute(c)?;
                diesel::copy_from(nodes::table)
                    .from_insertable(node_rows)
                    .execute(c)?;
            }
            DbConnection::Sqlite(c) => {
                for chunk in leaf_rows.chunks(CHUNK) {
                    diesel::insert_into(leaves::table)
                        .values(chunk)
                        .execute(c)?;
                }
                for chunk in node_rows.chunks(CHUNK) {
                    diesel::insert_into(nodes::table).values(chunk).execute(c)?;
                }
            }
        }
        db_run!(conn, c => {
            for chunk in seqs.chunks(CHUNK) {
                diesel::delete(outbox::table.filter(outbox::seq.eq_any(chunk))).execute(c)?;
            }
            Ok::<_, DieselError>(())
        })?;
        let note = signer.sign(&Checkpoint {
            origin: origin.to_owned(),
            size: to,
            root,
        });
        db_run!(conn, c => diesel::insert_into(checkpoints::table)
            .values((
                checkpoints::size.eq(to_i64(to)),
                checkpoints::root.eq(root.to_vec()),
                checkpoints::note.eq(&note),
                checkpoints::signed_at.eq(now.naive_utc()),
            ))
            .execute(c))?;
        queue_deliveries(conn, &queued, from, now)?;
        if let DbConnection::Postgresql(c) = conn {
            super::prepared::PgStatement::new("SELECT pg_notify($1, $2)")
                .bind::<diesel::sql_types::Text, _>(LOG_CHANNEL)
                .bind::<diesel::sql_types::Text, _>(to.to_string())
                .execute(c)?;
        }
        Ok(Some(Integrated {
            from,
            to,
            root,
            note,
        }))
    })
}

/// One pending delivery per (endpoint, entry) for the entries just
/// integrated at indices `from..`.
fn queue_deliveries(
    conn: &mut DbConnection,
    queued: &[(i64, String, Vec<u8>)],
    from: u64,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let in_batch: BTreeSet<&str> = queued.iter().map(|(_, p, _)| p.as_str()).collect();
    let targets = endpoints_for(conn, &in_batch)?;
    if targets.is_empty() {
        return Ok(());
    }
    let routes = hospital_app_routes(conn, &in_batch)?;
    let mut rows = Vec::new();
    for (offset, (_, patient, _)) in queued.iter().enumerate() {
        let idx = to_i64(from + offset as u64);
        for (id, endpoint_patient, endpoint_hospital) in &targets {
            let wanted = match (endpoint_patient, endpoint_hospital) {
                (Some(p), _) => p == patient,
                (None, Some(h)) => routes
                    .get(patient)
                    .is_some_and(|(hospital, app)| hospital == h && *app),
                (None, None) => true,
            };
            if wanted {
                rows.push((
                    deliveries::endpoint_id.eq(id.clone()),
                    deliveries::idx.eq(idx),
                    deliveries::state.eq("pending"),
                    deliveries::attempts.eq(0),
                    deliveries::next_attempt_at.eq(now.naive_utc()),
                ));
            }
        }
    }
    db_run!(conn, c => {
        for chunk in rows.chunks(CHUNK) {
            diesel::insert_into(deliveries::table).values(chunk).execute(c)?;
        }
        Ok::<_, DieselError>(())
    })
}

/// An integrated entry with its tree index.
#[derive(Debug, Clone)]
pub struct IndexedEntry {
    pub idx: u64,
    pub row: EntryRow,
}

/// Integrated entries with indices in `[from, to)`, in tree order.
pub fn entries_between(
    conn: &mut DbConnection,
    from: u64,
    to: u64,
) -> Result<Vec<IndexedEntry>, DieselError> {
    let rows: Vec<(i64, EntryRow)> = db_run!(conn, c => leaves::table
        .inner_join(entries::table)
        .filter(leaves::idx.ge(to_i64(from)))
        .filter(leaves::idx.lt(to_i64(to)))
        .order(leaves::idx)
        .select((leaves::idx, EntryRow::as_select()))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(idx, row)| IndexedEntry {
            idx: idx as u64,
            row,
        })
        .collect())
}

/// Integrated entries at the given indices.
pub fn entries_at(
    conn: &mut DbConnection,
    indices: &[u64],
) -> Result<Vec<IndexedEntry>, DieselError> {
    let wanted: Vec<i64> = indices.iter().map(|i| to_i64(*i)).collect();
    let mut out = Vec::new();
    for chunk in wanted.chunks(CHUNK) {
        let rows: Vec<(i64, EntryRow)> = db_run!(conn, c => leaves::table
            .inner_join(entries::table)
            .filter(leaves::idx.eq_any(chunk))
            .order(leaves::idx)
            .select((leaves::idx, EntryRow::as_select()))
            .load(c))?;
        out.extend(rows.into_iter().map(|(idx, row)| IndexedEntry {
            idx: idx as u64,
            row,
        }));
    }
    Ok(out)
}

/// The tree indices of a patient's entries from index `first` on and below
/// tree size `size`, oldest first, at most `limit` of them.
pub fn patient_indices_from(
    conn: &mut DbConnection,
    pseudonym: &str,
    first: u64,
    size: u64,
    limit: i64,
) -> Result<Vec<u64>, DieselError> {
    let indices: Vec<i64> = db_run!(conn, c => leaves::table
        .inner_join(entries::table)
        .filter(entries::patient_pseudonym.eq(pseudonym))
        .filter(leaves::idx.ge(to_i64(first)))
        .filter(leaves::idx.lt(to_i64(size)))
        .order(leaves::idx)
        .limit(limit)
        .select(leaves::idx)
        .load(c))?;
    Ok(indices.into_iter().map(|i| i as u64).collect())
}

/// A patient's entries, newest first, before arrival number `before`.
/// Entries still waiting for integration have no index yet.
pub fn patient_entries(
    conn: &mut DbConnection,
    pseudonym: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(EntryRow, Option<u64>)>, DieselError> {
    let rows: Vec<(EntryRow, Option<i64>)> = db_run!(conn, c => entries::table
        .left_join(leaves::table)
        .filter(entries::patient_pseudonym.eq(pseudonym))
        .filter(entries::seq.lt(before.unwrap_or(i64::MAX)))
        .order(entries::seq.desc())
        .limit(limit)
        .select((EntryRow::as_select(), leaves::idx.nullable()))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(row, idx)| (row, idx.map(|i| i as u64)))
        .collect())
}

/// Whether `pseudonym` has an entry of `action` recorded at or after
/// `since`: so that what the service tells a patient of its own accord is
/// told once, whichever path noticed it first.
pub fn patient_logged_since(
    conn: &mut DbConnection,
    pseudonym: &str,
    action: LogAction,
    since: DateTime<Utc>,
) -> Result<bool, DieselError> {
    let found: Option<i64> = db_run!(conn, c => entries::table
        .filter(entries::patient_pseudonym.eq(pseudonym))
        .filter(entries::action.eq(action.as_str()))
        .filter(entries::recorded_at.ge(since.naive_utc()))
        .select(entries::seq)
        .first(c)
        .optional())?;
    Ok(found.is_some())
}

/// The auditor's filters; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub org: Option<String>,
    pub user: Option<String>,
    pub action: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

/// Entries matching `filter`, newest first, before arrival number `before`.
pub fn audit_entries(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(EntryRow, Option<u64>)>, DieselError> {
    let rows: Vec<(EntryRow, Option<i64>)> = db_run!(conn, c => {
        let mut query = entries::table
            .left_join(leaves::table)
            .filter(entries::seq.lt(before.unwrap_or(i64::MAX)))
            .into_boxed();
        if let Some(org) = &filter.org {
            query = query.filter(entries::actor_org.eq(org.clone()));
        }
        if let Some(user) = &filter.user {
            query = query.filter(entries::actor_user.eq(user.clone()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(entries::action.eq(action.clone()));
        }
        if let Some(from) = filter.from {
            query = query.filter(entries::recorded_at.ge(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(entries::recorded_at.lt(to));
        }
        query
            .order(entries::seq.desc())
            .limit(limit)
            .select((EntryRow::as_select(), leaves::idx.nullable()))
            .load(c)
    })?;
    Ok(rows
        .into_iter()
        .map(|(row, idx)| (row, idx.map(|i| i as u64)))
        .collect())
}

/// Up to `limit` entries recorded in `[from, to)` after arrival number
/// `after_seq`, in arrival order (screening pages through a period).
pub fn entries_recorded_between(
    conn: &mut DbConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<EntryRow>, DieselError> {
    db_run!(conn, c => entries::table
        .filter(entries::recorded_at.ge(from))
        .filter(entries::recorded_at.lt(to))
        .filter(entries::seq.gt(after_seq))
        .order(entries::seq)
        .limit(limit)
        .select(EntryRow::as_select())
        .load(c))
}

pub fn signed_at(row: &CheckpointRow) -> DateTime<Utc> {
    utc(row.signed_at)
}

/// Why `verify` could not finish. (A finished check reports what it found
/// wrong in its `Report`.)
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Connect(#[from] super::DbSetupError),
    #[error("cannot read the log: {0}")]
    Read(#[from] DieselError),
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = nodes)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct NodeRow {
    level: i16,
    idx: i64,
    hash: Vec<u8>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = leaves)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct LeafRow {
    idx: i64,
    seq: i64,
}

/// No honest log gets near this many leaves; a stored index beyond it is
/// corruption, and believing it would mean allocating for it.
const MAX_INDEX: i64 = 1 << 40;

/// Rows a reader hands to the check at a time, and batches in flight per
/// table: enough to keep the check busy, little enough to bound memory.
const VERIFY_BATCH: usize = 8_192;
const VERIFY_BATCHES_IN_FLIGHT: usize = 4;

/// One stored node as the check takes it.
fn node_of(n: NodeRow) -> Result<(NodePosition, Hash), DieselError> {
    if !(0..MAX_INDEX).contains(&n.idx) || !(0..64).contains(&n.level) {
        return Err(corrupt("node position"));
    }
    // A malformed hash is as good as a wrong one.
    let hash = n.hash.as_slice().try_into().unwrap_or([0xff; 32]);
    Ok(((n.level as u32, n.idx as u64), hash))
}

/// One leaf row: its tree index and the entry's arrival number.
fn leaf_of(l: LeafRow) -> Result<(u64, i64), DieselError> {
    if !(0..MAX_INDEX).contains(&l.idx) {
        return Err(corrupt("leaf index"));
    }
    Ok((l.idx as u64, l.seq))
}

/// One entry: its leaf hash and whether its indexed columns agree with its
/// bytes. The entry bytes themselves are not kept.
fn entry_of(row: EntryRow) -> Result<(i64, Leaf), DieselError> {
    let columns_match =
        IndexedFields::read(&row.entry).is_some_and(|fields| row.columns_match(&fields));
    Ok((
        row.seq,
        Leaf::Present {
            hash: leaf_hash(&row.entry),
            columns_match,
        },
    ))
}

/// One checkpoint, its note opened with the log's verifier keys.
fn checkpoint_of(
    c: CheckpointRow,
    verifier_keys: &[String],
) -> Result<StoredCheckpoint, DieselError> {
    let size = u64::try_from(c.size).map_err(|_| corrupt("checkpoint size"))?;
    Ok(StoredCheckpoint::open(size, c.root, &c.note, verifier_keys))
}

/// The rows a reader thread sends, in batches; the first error ends the
/// stream and is kept for the end of the check.
struct Received<T> {
    batches: std::sync::mpsc::Receiver<Result<Vec<T>, DieselError>>,
    current: std::vec::IntoIter<T>,
    failed: std::rc::Rc<std::cell::RefCell<Option<DieselError>>>,
}

impl<T> Iterator for Received<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(row) = self.current.next() {
                return Some(row);
            }
            match self.batches.recv().ok()? {
                Ok(batch) => self.current = batch.into_iter(),
                Err(e) => {
                    *self.failed.borrow_mut() = Some(e);
                    return None;
                }
            }
        }
    }
}

/// Streams `rows` from a reader thread: `read` sends batches through
/// `send`, which reports whether the check still wants more.
fn spawn_reader<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    failed: &std::rc::Rc<std::cell::RefCell<Option<DieselError>>>,
    read: impl FnOnce(&mut dyn FnMut(T) -> bool) -> Result<(), DieselError> + Send + 'scope,
) -> Received<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(VERIFY_BATCHES_IN_FLIGHT);
    scope.spawn(move || {
        let mut batch = Vec::with_capacity(VERIFY_BATCH);
        let mut wanted = true;
        let mut push = |row: T| {
            batch.push(row);
            if batch.len() == VERIFY_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(VERIFY_BATCH));
                // The check hung up: it has what it needs.
                wanted = tx.send(Ok(full)).is_ok();
            }
            wanted
        };
        let outcome = read(&mut push);
        let _ = match outcome {
            Ok(()) => tx.send(Ok(batch)),
            Err(e) => tx.send(Err(e)),
        };
    });
    Received {
        batches: rx,
        current: Vec::new().into_iter(),
        failed: failed.clone(),
    }
}

/// Streams a whole log table in storage order by binary `COPY`, each row
/// turned by `each` into what the check takes. Stops early when the check
/// no longer wants rows.
fn copy_rows<Row, T>(
    conn: &mut DbConnection,
    each: fn(Row) -> Result<T, DieselError>,
    send: &mut dyn FnMut(T) -> bool,
) -> Result<(), DieselError>
where
    Row: CopiedRow,
{
    let DbConnection::Postgresql(c) = conn else {
        return Err(DieselError::QueryBuilderError(
            "streamed reads are for PostgreSQL".into(),
        ));
    };
    for row in Row::copy(c)? {
        if !send(each(row?)?) {
            break;
        }
    }
    Ok(())
}

/// A log table row that PostgreSQL streams by binary `COPY`.
trait CopiedRow: Sized {
    fn copy(
        c: &mut diesel::PgConnection,
    ) -> Result<Box<dyn Iterator<Item = Result<Self, DieselError>> + '_>, DieselError>;
}

macro_rules! copied_row {
    ($row:ty, $table:path) => {
        impl CopiedRow for $row {
            fn copy(
                c: &mut diesel::PgConnection,
            ) -> Result<Box<dyn Iterator<Item = Result<Self, DieselError>> + '_>, DieselError> {
                Ok(Box::new(diesel::copy_to($table).load::<$row, _>(c)?))
            }
        }
    };
}
copied_row!(NodeRow, nodes::table);
copied_row!(LeafRow, leaves::table);
copied_row!(EntryRow, entries::table);

/// Feeds the leaves to the checker in tree order: each leaf row's entry,
/// looked up by arrival number in the entries' stream. Returns the most
/// rows either stream held back at once.
fn check_leaves<N, C, L, E>(checker: &mut LogChecker<N, C>, leaves: L, entries: E) -> usize
where
    N: Iterator<Item = (NodePosition, Hash)>,
    C: Iterator<Item = StoredCheckpoint>,
    L: Iterator<Item = (u64, i64)>,
    E: Iterator<Item = (i64, Leaf)>,
{
    let mut leaves = InOrder::new(leaves);
    let mut entries = InOrder::new(entries);
    loop {
        let index = checker.size();
        let leaf = match leaves.take(index) {
            Some(seq) => entries.take(seq).unwrap_or(Leaf::Missing),
            // No row at this index: the end of the tree, or a gap before
            // rows further on. A gap longer than what lies beyond it is
            // not a tree to rebuild through (a forged index far out).
            None => match leaves.lowest_held() {
                None => break,
                Some((next, beyond)) if next - index > beyond as u64 => {
                    checker.leaves_beyond_gap(next, beyond);
                    break;
                }
                Some(_) => Leaf::Missing,
            },
        };
        checker.leaf(leaf);
    }
    leaves.peak_held().max(entries.peak_held())
}

/// Checks the whole stored log at `url` (see `ledger::verify`): every
/// entry's leaf hash in tree order, every stored node and every
/// checkpoint. Safe to run beside a live service: it reads one snapshot.
///
/// On PostgreSQL, four connections share one exported snapshot (as
/// `pg_dump` does) and stream the nodes, leaves, entries and checkpoints
/// while this thread checks them, so memory stays bounded however long the
/// log (decision 0022). SQLite, the embedded single-site store, reads the
/// tables in turn in one read transaction and checks them from memory.
pub fn verify(
    url: &str,
    origin: &str,
    verifier_keys: &[String],
) -> Result<crate::ledger::verify::Report, VerifyError> {
    let mut conn = super::connect_one(url)?;
    if let DbConnection::Sqlite(_) = conn {
        return verify_in_memory(&mut conn, origin, verifier_keys);
    }
    db_run!(&mut conn, c => diesel::sql_query(super::PG_READ_SNAPSHOT).execute(c))?;
    let snapshot: String = db_run!(&mut conn, c => diesel::select(
        diesel::dsl::sql::<diesel::sql_types::Text>("pg_export_snapshot()"),
    )
    .get_result(c))?;
    if !snapshot
        .chars()
        .all(|ch| ch.is_ascii_hexdigit() || ch == '-')
    {
        return Err(DieselError::DeserializationError("unexpected snapshot name".into()).into());
    }
    let joined = || -> Result<DbConnection, VerifyError> {
        let mut other = super::connect_one(url)?;
        db_run!(&mut other, c => {
            diesel::sql_query(super::PG_READ_SNAPSHOT).execute(c)?;
            diesel::sql_query(format!("SET TRANSACTION SNAPSHOT '{snapshot}'")).execute(c)
        })?;
        Ok(other)
    };
    let (mut for_nodes, mut for_leaves, mut for_checkpoints) = (joined()?, joined()?, joined()?);
    let failed = std::rc::Rc::new(std::cell::RefCell::new(None));
    let report = std::thread::scope(|scope| {
        let nodes = spawn_reader(scope, &failed, |send| {
            copy_rows(&mut for_nodes, node_of, send)
        });
        let leaves = spawn_reader(scope, &failed, |send| {
            copy_rows(&mut for_leaves, leaf_of, send)
        });
        let entries = spawn_reader(scope, &failed, |send| copy_rows(&mut conn, entry_of, send));
        let checkpoints = spawn_reader(scope, &failed, |send| {
            let DbConnection::Postgresql(c) = &mut for_checkpoints else {
                return Ok(());
            };
            let rows = checkpoints::table
                .order(checkpoints::size)
                .select(CheckpointRow::as_select())
                .load_iter::<CheckpointRow, diesel::pg::PgRowByRowLoadingMode>(c)?;
            // The signatures are checked here, beside the check.
            for row in rows {
                if !send(checkpoint_of(row?, verifier_keys)?) {
                    break;
                }
            }
            Ok(())
        });
        let mut checker = LogChecker::new(origin, nodes, checkpoints);
        let held = check_leaves(&mut checker, leaves, entries);
        checker.finish(held)
        // The streams are dropped here, before the scope joins the
        // readers: a reader the check no longer listens to stops sending.
    });
    let failure = failed.borrow_mut().take();
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(report),
    }
}

/// SQLite: every table read in turn in one read transaction, then checked.
fn verify_in_memory(
    conn: &mut DbConnection,
    origin: &str,
    verifier_keys: &[String],
) -> Result<crate::ledger::verify::Report, VerifyError> {
    fn all<Row, T>(
        c: &mut diesel::SqliteConnection,
        query: impl diesel::query_dsl::LoadQuery<'static, diesel::SqliteConnection, Row>,
        each: impl Fn(Row) -> Result<T, DieselError>,
    ) -> Result<Vec<T>, DieselError> {
        query.load::<Row>(c)?.into_iter().map(each).collect()
    }
    let read = super::read_snapshot(conn, |conn| {
        let DbConnection::Sqlite(c) = conn else {
            return Err(DieselError::QueryBuilderError("SQLite expected".into()));
        };
        Ok((
            all(c, nodes::table.select(NodeRow::as_select()), node_of)?,
            all(
                c,
                checkpoints::table
                    .order(checkpoints::size)
                    .select(CheckpointRow::as_select()),
                |row| checkpoint_of(row, verifier_keys),
            )?,
            all(c, leaves::table.select(LeafRow::as_select()), leaf_of)?,
            all(c, entries::table.select(EntryRow::as_select()), entry_of)?,
        ))
    });
    let (nodes, checkpoints, leaves, entries) = read?;
    let mut checker = LogChecker::new(origin, nodes.into_iter(), checkpoints.into_iter());
    let held = check_leaves(&mut checker, leaves.into_iter(), entries.into_iter());
    Ok(checker.finish(held))
}
