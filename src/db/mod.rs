//! Storage on two backends: SQLite (embedded default) and PostgreSQL.
//!
//! One `#[derive(MultiConnection)]` enum, the backend chosen from the URL
//! scheme, per-backend connection setup and one embedded migrations folder per
//! backend. Queries are written once and compiled for each concrete backend
//! through [`db_run!`], so backend-specific SQL (upserts, `RETURNING`) is
//! available where it matters without a second copy of the code.

pub mod access;
pub mod consents;
pub mod documents;
pub mod enquiries;
pub mod gate;
pub mod idempotency;
pub mod ledger;
pub mod notify;
pub mod portal;
pub mod portal_sessions;
pub mod prepared;
pub mod recontact;
pub mod samples;
pub mod schema;
pub mod screening;

use diesel::connection::{
    AnsiTransactionManager, Instrumentation, InstrumentationEvent, SimpleConnection,
    TransactionManager,
};
use diesel::r2d2::{ManageConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite://") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Runs `$body` with `$c` bound to the concrete connection of either
/// backend. The body is compiled twice, once per backend.
#[macro_export]
macro_rules! db_run {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgresql($c) => $body,
            $crate::db::DbConnection::Sqlite($c) => $body,
        }
    };
}

pub type DbPool = Pool<Manager>;
pub type PooledDb = PooledConnection<Manager>;

/// A connection returned to the pool less than this long ago is handed out
/// again without a test query (the window HikariCP calls
/// `aliveBypassWindowMs`, same default). Under load every connection is
/// that fresh, and the test query was one round trip in five of a logged
/// read. A connection found lost while in use never goes back into the pool
/// (decision 0015).
const RECENTLY_USED: Duration = Duration::from_millis(500);

/// A pooled connection and what the pool knows of its health. It derefs to
/// the connection, so pooled connections are used like plain ones.
pub struct PoolConnection {
    conn: DbConnection,
    /// Set when a statement failed because the connection itself is gone.
    lost: Arc<AtomicBool>,
    /// When the connection last went back to the pool.
    returned_at: Instant,
}

impl std::ops::Deref for PoolConnection {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for PoolConnection {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.conn
    }
}

/// Watches a connection's statements for the errors that mean the
/// connection is gone: the server closed it, or a command could not be
/// sent. Any other error (a constraint, a serialization failure) leaves the
/// connection usable.
struct LossDetector(Arc<AtomicBool>);

impl Instrumentation for LossDetector {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery {
            error: Some(error), ..
        } = event
        {
            if connection_lost(error) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Whether `error` means the connection it came from is gone.
pub fn connection_lost(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        ) | DieselError::BrokenTransactionManager
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("unsupported database URL scheme; use sqlite:// or postgres://")]
    UnsupportedUrl,
    #[error("cannot create the SQLite directory {0}: {1}")]
    Directory(String, std::io::Error),
    #[error("cannot open a database connection pool: {0}")]
    Pool(String),
    #[error("migrations failed: {0}")]
    Migrations(String),
}

/// Opens connections of one backend, chosen from the URL scheme. (The
/// derived `MultiConnection::establish` tries every backend in turn, so a
/// PostgreSQL URL whose server is down could fall through to SQLite.)
#[derive(Debug, Clone)]
pub struct Manager {
    backend: Backend,
    target: String,
}

/// Opens a PostgreSQL connection. OpenSSL is set up first, without its exit
/// handler: otherwise libpq is first to set it up, with a handler that frees
/// OpenSSL's locks when the process exits while server and worker threads
/// may still be using TLS (a SIGSEGV in `pthread_rwlock_unlock` at the exit
/// of test and benchmark processes). Every PostgreSQL connection, the
/// tests' and benchmarks' included, is opened here.
///
/// GSSAPI encryption is also off unless the URL asks for it
/// ([`without_gss_encryption`]).
pub fn establish_pg(url: &str) -> diesel::ConnectionResult<PgConnection> {
    openssl::init();
    PgConnection::establish(&without_gss_encryption(url))
}

/// `url` with `gssencmode=disable` unless it sets `gssencmode` itself.
/// libpq's default (`prefer`) sets up Kerberos on every connect, even with
/// no credentials to use; a process exiting while a pool thread is inside
/// it aborts in `k5_mutex_lock` (diesel-rs/diesel#3226, seen here at the
/// exit of a benchmark). A deployment that does encrypt with GSSAPI says
/// so in its URL; TLS is unaffected (`sslmode`).
pub fn without_gss_encryption(url: &str) -> std::borrow::Cow<'_, str> {
    let query = url.split_once('?').map(|(_, q)| q);
    let asked = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("gssencmode"))
    });
    if asked {
        return url.into();
    }
    let joiner = if query.is_some() { '&' } else { '?' };
    format!("{url}{joiner}gssencmode=disable").into()
}

impl Manager {
    /// Opens one connection with the per-backend set-up applied. SQLite: WAL
    /// so readers never block the writer, a busy timeout so writers queue
    /// instead of failing, and foreign keys on.
    pub fn open(&self) -> Result<DbConnection, diesel::r2d2::Error> {
        match self.backend {
            Backend::Postgres => establish_pg(&self.target)
                .map(DbConnection::Postgresql)
                .map_err(diesel::r2d2::Error::ConnectionError),
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.target)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                conn.batch_execute(
                    // busy_timeout first: switching to WAL takes a lock, and
                    // the pool opens several connections at once.
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

impl ManageConnection for Manager {
    type Connection = PoolConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PoolConnection, Self::Error> {
        let mut conn = self.open()?;
        let lost = Arc::new(AtomicBool::new(false));
        conn.set_instrumentation(LossDetector(lost.clone()));
        Ok(PoolConnection {
            conn,
            lost,
            // A new connection has just proved itself.
            returned_at: Instant::now(),
        })
    }

    /// Tested on checkout unless it went back to the pool very recently.
    fn is_valid(&self, conn: &mut PoolConnection) -> Result<(), Self::Error> {
        if conn.returned_at.elapsed() < RECENTLY_USED {
            return Ok(());
        }
        ping(conn).map_err(diesel::r2d2::Error::QueryError)
    }

    /// Asked as a connection goes back to the pool: a lost connection, or
    /// one left inside a transaction it can no longer end, is dropped.
    fn has_broken(&self, conn: &mut PoolConnection) -> bool {
        conn.returned_at = Instant::now();
        conn.lost.load(Ordering::Relaxed)
            || <DbConnection as Connection>::TransactionManager::is_broken_transaction_manager(
                &mut conn.conn,
            )
    }
}

/// Opens a single connection for `url` (tools and tests).
pub fn connect_one(url: &str) -> Result<DbConnection, DbSetupError> {
    let backend = Backend::from_url(url).ok_or(DbSetupError::UnsupportedUrl)?;
    let target = match backend {
        Backend::Sqlite => url.trim_start_matches("sqlite://").to_owned(),
        Backend::Postgres => url.to_owned(),
    };
    Manager { backend, target }
        .open()
        .map_err(|e| DbSetupError::Pool(e.to_string()))
}

/// Opens a pool for `url`. A `sqlite://` URL names a file path; its parent
/// directory is created if missing.
pub fn connect(url: &str, pool_size: u32) -> Result<DbPool, DbSetupError> {
    let backend = Backend::from_url(url).ok_or(DbSetupError::UnsupportedUrl)?;
    let target = match backend {
        Backend::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| DbSetupError::Directory(parent.display().to_string(), e))?;
                }
            }
            path.to_owned()
        }
        Backend::Postgres => url.to_owned(),
    };
    let manager = Manager { backend, target };
    if backend == Backend::Sqlite {
        // WAL is a property of the file. Switching a new file to it needs
        // the file to itself, which the pool's connections, opened at once
        // while the first one migrates, do not give it ("database is
        // locked", whatever the busy timeout). Switched here, alone, every
        // later switch finds WAL already on and takes no lock.
        manager
            .open()
            .map_err(|e| DbSetupError::Pool(e.to_string()))?;
    }
    Pool::builder()
        .max_size(pool_size)
        .connection_timeout(Duration::from_secs(10))
        .build(manager)
        .map_err(|e| DbSetupError::Pool(e.to_string()))
}

/// The session advisory lock that lets one instance at a time migrate a
/// PostgreSQL database ("ggmig" in ASCII).
const MIGRATION_LOCK: i64 = 0x67_67_6d_69_67;

/// How long an instance waits between attempts at the migration lock.
const MIGRATION_LOCK_RETRY: Duration = Duration::from_millis(100);

/// Applies pending embedded migrations for the connection's backend and
/// returns the versions applied.
///
/// Instances started together (a rolling deploy) would otherwise apply the
/// same migration at once, and all but one would fail to start. On
/// PostgreSQL each takes a session advisory lock first; the others wait,
/// then find nothing pending. They poll with `pg_try_advisory_lock` rather
/// than block in `pg_advisory_lock`: a blocked statement holds a snapshot,
/// and a migration building an index `CONCURRENTLY` waits for every older
/// snapshot in the database, so the two would wait for each other.
/// SQLite's migrations run in transactions that take its write lock.
pub fn run_migrations(conn: &mut DbConnection) -> Result<Vec<String>, DbSetupError> {
    use diesel::RunQueryDsl;
    let failed = |e: &dyn std::fmt::Display| DbSetupError::Migrations(e.to_string());
    let applied = match conn {
        DbConnection::Postgresql(c) => {
            let mut waited = false;
            while !diesel::select(pg_try_advisory_lock(MIGRATION_LOCK))
                .get_result::<bool>(c)
                .map_err(|e| failed(&e))?
            {
                if !waited {
                    tracing::info!("another instance is migrating the database; waiting for it");
                    waited = true;
                }
                std::thread::sleep(MIGRATION_LOCK_RETRY);
            }
            let applied = drop_failed_concurrent_builds(c)
                .and_then(|()| versions(c.run_pending_migrations(POSTGRES_MIGRATIONS)));
            let unlocked = diesel::select(pg_advisory_unlock(MIGRATION_LOCK)).get_result::<bool>(c);
            let applied = applied.map_err(|e| failed(&e))?;
            unlocked.map_err(|e| failed(&e))?;
            applied
        }
        DbConnection::Sqlite(c) => {
            versions(c.run_pending_migrations(SQLITE_MIGRATIONS)).map_err(|e| failed(&e))?
        }
    };
    Ok(applied)
}

/// The indexes that migrations build `CONCURRENTLY` (decision 0025), by
/// migration name. Such a build runs outside a transaction: if it fails
/// (or the process dies), PostgreSQL keeps the half-built index, marked
/// invalid, and the migration is not recorded. Its next attempt would then
/// fail on the existing name, forever.
const CONCURRENT_INDEXES: &[(&str, &str)] = &[
    (
        "2026-11-29-000013_cohort_pages_by_patient",
        "dataset_samples_by_patient",
    ),
    ("2026-12-03-000014_minors_index", "patients_with_majority"),
    (
        "2026-12-04-000016_consent_changes_index",
        "access_log_consent_changes",
    ),
];

/// Drops what a failed concurrent build left behind, so that its migration
/// can run again: only an index that PostgreSQL marks invalid, and only
/// while the migration that builds it is pending. Runs under the migration
/// lock.
fn drop_failed_concurrent_builds(c: &mut PgConnection) -> Result<(), String> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Invalid {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let pending: Vec<String> = c
        .pending_migrations(POSTGRES_MIGRATIONS)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let candidates: Vec<&str> = CONCURRENT_INDEXES
        .iter()
        .filter(|(migration, _)| pending.iter().any(|p| p == migration))
        .map(|(_, index)| *index)
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let invalid: Vec<Invalid> = diesel::sql_query(
        "SELECT CAST(c.relname AS TEXT) AS name FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND n.nspname = current_schema() AND c.relname = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&candidates)
    .load(c)
    .map_err(|e| e.to_string())?;
    for Invalid { name } in invalid {
        // `name` is one of the constants above, never input.
        tracing::warn!(index = %name, "dropping an index a failed concurrent build left invalid; its migration builds it again");
        diesel::sql_query(format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
            .execute(c)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn versions(
    applied: diesel::migration::Result<Vec<diesel::migration::MigrationVersion<'_>>>,
) -> Result<Vec<String>, String> {
    applied
        .map(|list| list.into_iter().map(|v| v.to_string()).collect())
        .map_err(|e| e.to_string())
}

diesel::define_sql_function! {
    /// Takes a session advisory lock if it is free; never waits.
    fn pg_try_advisory_lock(key: diesel::sql_types::BigInt) -> diesel::sql_types::Bool;
}

diesel::define_sql_function! {
    fn pg_advisory_unlock(key: diesel::sql_types::BigInt) -> diesel::sql_types::Bool;
}

diesel::define_sql_function! {
    /// Takes a transaction advisory lock, waiting for it.
    fn pg_advisory_xact_lock(key: diesel::sql_types::BigInt);
}

pub fn backend_of(conn: &DbConnection) -> Backend {
    match conn {
        DbConnection::Postgresql(_) => Backend::Postgres,
        DbConnection::Sqlite(_) => Backend::Sqlite,
    }
}

/// Runs `f` in one write transaction and commits only if it returns `Ok`.
///
/// SQLite starts with `BEGIN IMMEDIATE`: a deferred transaction that reads
/// first and writes later can fail with SQLITE_BUSY when another writer got
/// there in between, and the busy timeout cannot help it. Taking the write
/// lock up front makes writers queue on the busy timeout instead.
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        DbConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    let outcome = f(conn);
    let finish = match (&outcome, &mut *conn) {
        (Ok(_), DbConnection::Sqlite(c)) => AnsiTransactionManager::commit_transaction(c),
        (Ok(_), DbConnection::Postgresql(c)) => AnsiTransactionManager::commit_transaction(c),
        (Err(_), DbConnection::Sqlite(c)) => AnsiTransactionManager::rollback_transaction(c),
        (Err(_), DbConnection::Postgresql(c)) => AnsiTransactionManager::rollback_transaction(c),
    };
    match (outcome, finish) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(commit_error)) => {
            // A failed COMMIT leaves the transaction open on some backends.
            let _ = db_run!(conn, c => AnsiTransactionManager::rollback_transaction(c));
            Err(commit_error.into())
        }
        (Err(e), _) => Err(e),
    }
}

/// Begins a PostgreSQL transaction that reads one snapshot and writes nothing.
pub(crate) const PG_READ_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Runs `f` in a read-only transaction that sees one snapshot throughout,
/// then ends it. On SQLite the snapshot is taken at the first read.
pub fn read_snapshot<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN")?,
        DbConnection::Postgresql(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, PG_READ_SNAPSHOT)?
        }
    }
    let outcome = f(conn);
    // Nothing was written, so ending it by rollback loses nothing.
    let ended = db_run!(conn, c => AnsiTransactionManager::rollback_transaction(c));
    let value = outcome?;
    ended?;
    Ok(value)
}

/// Runs `main` on `conn` while `side` runs on `spare` in a thread of its
/// own, when there is a spare connection; without one, runs `main` and
/// then `side` on `conn`. For two independent reads whose round trips are
/// worth overlapping (neither sees the other's transaction).
pub fn alongside<A, B>(
    conn: &mut DbConnection,
    spare: Option<PooledDb>,
    main: impl FnOnce(&mut DbConnection) -> A,
    side: impl FnOnce(&mut DbConnection) -> B + Send,
) -> (A, B)
where
    B: Send,
{
    let Some(mut other) = spare else {
        let a = main(conn);
        return (a, side(conn));
    };
    std::thread::scope(|scope| {
        let beside = scope.spawn(move || side(&mut other));
        let a = main(conn);
        let b = match beside.join() {
            Ok(b) => b,
            // A panic in `side` is a bug; surface it where it happened.
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (a, b)
    })
}

/// Readiness probe: one round trip.
pub fn ping(conn: &mut DbConnection) -> Result<(), diesel::result::Error> {
    db_run!(conn, c => c.batch_execute("SELECT 1"))
}

/// Whether the database takes a write now: one row into `readiness_probe`,
/// rolled back. A full disk, a read-only file or a standby answers the
/// read of [`ping`] and refuses this.
pub fn probe_write(conn: &mut DbConnection) -> Result<(), diesel::result::Error> {
    use diesel::result::Error;
    use diesel::{ExpressionMethods, RunQueryDsl};
    use schema::readiness_probe as probe;
    let attempt = write_transaction(conn, |conn| {
        db_run!(conn, c => diesel::insert_into(probe::table).values(probe::id.eq(1)).execute(c))?;
        Err::<(), Error>(Error::RollbackTransaction)
    });
    match attempt {
        Ok(()) | Err(Error::RollbackTransaction) => Ok(()),
        Err(refused) => Err(refused),
    }
}

#[cfg(test)]
mod tests {
    use super::without_gss_encryption;

    #[test]
    fn gss_encryption_is_off_unless_the_url_asks_for_it() {
        assert_eq!(
            without_gss_encryption("postgres://u@h:5432/db"),
            "postgres://u@h:5432/db?gssencmode=disable"
        );
        assert_eq!(
            without_gss_encryption("postgres://u@h/db?sslmode=require"),
            "postgres://u@h/db?sslmode=require&gssencmode=disable"
        );
        assert_eq!(
            without_gss_encryption("postgresql://u@h/db?sslmode=verify-full&gssencmode=require"),
            "postgresql://u@h/db?sslmode=verify-full&gssencmode=require"
        );
    }
}
