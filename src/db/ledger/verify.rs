//! `verify-log`: the tree rebuilt from every entry, checked against
//! every stored node and signed checkpoint.

use super::*;

/// Why `verify` could not finish. (A finished check reports what it found
/// wrong in its `Report`.)
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Connect(#[from] crate::db::DbSetupError),
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
    let mut conn = crate::db::connect_one(url)?;
    if let DbConnection::Sqlite(_) = conn {
        return verify_in_memory(&mut conn, origin, verifier_keys);
    }
    db_run!(&mut conn, c => diesel::sql_query(crate::db::PG_READ_SNAPSHOT).execute(c))?;
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
        let mut other = crate::db::connect_one(url)?;
        db_run!(&mut other, c => {
            diesel::sql_query(crate::db::PG_READ_SNAPSHOT).execute(c)?;
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
    let read = crate::db::read_snapshot(conn, |conn| {
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
