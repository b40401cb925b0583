//! [`PostgresJournal`]: the journal in PostgreSQL (sqlx), for payers that
//! run as several processes (agents, workers) and must share one record of
//! what they paid.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use pay402_core::offer::Rail;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgSslMode};

use super::sql::unavailable;
use super::{
    EntryState, JournalError, JournalRecord, JournalStore, Query, RequestKey, Step, StoredToken,
};

/// How long one statement may run, and how long an operation waits for a
/// connection.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The journal in a PostgreSQL database: the same tables and statements as
/// [`SqliteJournal`](super::SqliteJournal) (created on open), every step
/// committed before the call returns (so before the payment that follows
/// it leaves the process). Several payer processes may share it: entries
/// are keyed by random ids, tokens by origin, scope and rail.
///
/// The database holds preimages, signed payloads and tokens: to a host
/// other than loopback (or a Unix socket) it is reached with
/// `sslmode=verify-full` unless the URL names `require` or `verify-ca`, and
/// a URL asking for `disable`, `allow` or `prefer` there is refused.
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_client::journal::JournalError> {
/// use pay402_client::journal::{Journal, PostgresJournal};
/// let store = PostgresJournal::connect("postgres://payer@db.internal/pay402").await?;
/// let journal = Journal::from_store(std::sync::Arc::new(store), "postgres");
/// # let _ = journal; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresJournal {
    pool: PgPool,
}

/// Whether `host` is this machine.
fn is_local(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || std::net::IpAddr::from_str(bare).is_ok_and(|ip| ip.is_loopback())
}

impl PostgresJournal {
    /// Connects to `url` (`postgres://…`) and creates the tables if needed.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pay402_client::journal::JournalError> {
    /// let store = pay402_client::journal::PostgresJournal::connect("postgres://payer@127.0.0.1/pay402").await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<PostgresJournal, JournalError> {
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(|e| JournalError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        let local = opts.get_socket().is_some() || is_local(opts.get_host());
        if !local
            && matches!(
                opts.get_ssl_mode(),
                PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer
            )
        {
            if url.contains("sslmode=") || std::env::var_os("PGSSLMODE").is_some() {
                return Err(JournalError::Unavailable(
                    "a remote journal database needs TLS: sslmode=verify-full, verify-ca or require"
                        .into(),
                ));
            }
            opts = opts.ssl_mode(PgSslMode::VerifyFull);
        }
        let timeout_ms = TIMEOUT.as_millis().to_string();
        opts = opts.options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(TIMEOUT)
            .test_before_acquire(true)
            .connect_with(opts)
            .await
            .map_err(unavailable)?;
        PostgresJournal::from_pool(pool).await
    }

    /// A journal on an open pool (the tables are created if missing).
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) -> Result<(), pay402_client::journal::JournalError> {
    /// let store = pay402_client::journal::PostgresJournal::from_pool(pool).await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<PostgresJournal, JournalError> {
        // Serialised: concurrent `CREATE … IF NOT EXISTS` may collide in
        // PostgreSQL's catalog.
        let mut tx = pool.begin().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock(7023402)")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        for stmt in super::sql::SCHEMA {
            sqlx::query(stmt)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(PostgresJournal { pool })
    }
}

super::sql::sql_journal_store!(PostgresJournal, PgRow);
