//! [`SqliteJournal`]: the journal in a SQLite file (sqlx).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use pay402_core::offer::Rail;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::sql::unavailable;
use super::{
    EntryState, JournalError, JournalRecord, JournalStore, Query, RequestKey, Step, StoredToken,
};

/// How long a writer waits for another one's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The journal in a SQLite file: WAL mode, `synchronous = FULL` (a step is
/// on disk before the payment that follows it leaves the process), created
/// owner-only (mode 0600): it holds preimages, signed payloads and tokens.
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_client::journal::JournalError> {
/// use pay402_client::journal::{Journal, SqliteJournal};
/// let store = SqliteJournal::open("journal.sqlite").await?;
/// let journal = Journal::from_store(std::sync::Arc::new(store), "journal.sqlite");
/// # let _ = journal; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteJournal {
    pool: SqlitePool,
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pay402_client::journal::JournalError> {
    /// let store = pay402_client::journal::SqliteJournal::open("/tmp/j.sqlite").await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteJournal, JournalError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        create_owner_only(path).map_err(unavailable)?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(unavailable)?;
        SqliteJournal::from_pool(pool).await
    }

    /// A journal on an open pool (the schema is created if missing).
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) -> Result<(), pay402_client::journal::JournalError> {
    /// let store = pay402_client::journal::SqliteJournal::from_pool(pool).await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteJournal, JournalError> {
        for stmt in super::sql::SCHEMA {
            sqlx::query(stmt)
                .execute(&pool)
                .await
                .map_err(unavailable)?;
        }
        Ok(SqliteJournal { pool })
    }
}

/// Creates `path` empty with mode 0600 if it does not exist.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

super::sql::sql_journal_store!(SqliteJournal, SqliteRow);
