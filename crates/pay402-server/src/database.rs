//! Choosing where the stores keep their state, by URL.
//!
//! | URL | store | shared by |
//! |---|---|---|
//! | `memory:` | in-process maps | this process only; lost on restart |
//! | `sqlite::memory:` | a private in-memory SQLite database | the stores opened on this [`Database`] |
//! | `sqlite://path/to/file.sqlite` (or `sqlite:path`, `sqlite:///abs/path`) | a SQLite file (WAL, created owner-only) | processes on this machine |
//! | `postgres://user@host:port/db` (or `postgresql://`) | PostgreSQL | every instance reaching that database |
//!
//! [`Database::open`] opens the pool once; each store module then opens its
//! store on it (`l402::store::open`, `x402::store::open`,
//! `x402_mock::open_store`, `bitreq::store::open`), so the stores of one
//! server share one pool and each creates (migrates) its own tables.
//!
//! [`DatabaseOptions`] sets the pool size, the statement timeout
//! (PostgreSQL's `statement_timeout`; SQLite's busy timeout) and how long a
//! request waits for a connection. While the database is unreachable every
//! store operation fails with [`StoreError::Unavailable`] within that wait,
//! which the layers answer with 503 problem+json; the pool reconnects by
//! itself once the database is back.
//!
//! ```
//! use pay402_server::database::{Database, DatabaseOptions};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let db = Database::open("sqlite::memory:", &DatabaseOptions::default()).await.unwrap();
//! let keys = pay402_server::store::open(&db).await.unwrap();
//! # let _ = keys;
//! # });
//! ```

use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::store::StoreError;

/// Pool settings of a [`Database`].
///
/// ```
/// use std::time::Duration;
/// use pay402_server::database::DatabaseOptions;
/// let o = DatabaseOptions::default()
///     .max_connections(20)
///     .statement_timeout(Duration::from_secs(5))
///     .acquire_timeout(Duration::from_secs(2));
/// assert_eq!(o.max_connections, Some(20));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatabaseOptions {
    /// The most connections the pool opens (`None`: 10 for PostgreSQL, 4
    /// for a SQLite file; a SQLite in-memory database always has one).
    pub max_connections: Option<u32>,
    /// The longest one statement may run (PostgreSQL `statement_timeout`,
    /// set on every connection) or wait for a write lock (SQLite busy
    /// timeout). Default 10 s.
    pub statement_timeout: Duration,
    /// How long an operation waits for a pooled connection (including
    /// connecting) before it fails as unavailable. Default 5 s.
    pub acquire_timeout: Duration,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            max_connections: None,
            statement_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl DatabaseOptions {
    /// Sets the pool size.
    ///
    /// ```
    /// let o = pay402_server::database::DatabaseOptions::default().max_connections(4);
    /// assert_eq!(o.max_connections, Some(4));
    /// ```
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Sets the statement timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// let o = pay402_server::database::DatabaseOptions::default().statement_timeout(Duration::from_secs(2));
    /// assert_eq!(o.statement_timeout, Duration::from_secs(2));
    /// ```
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets how long an operation waits for a connection.
    ///
    /// ```
    /// use std::time::Duration;
    /// let o = pay402_server::database::DatabaseOptions::default().acquire_timeout(Duration::from_millis(500));
    /// assert_eq!(o.acquire_timeout, Duration::from_millis(500));
    /// ```
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }
}

/// A parsed store URL (see the module docs); [`Database::open`] connects it.
///
/// ```
/// use pay402_server::database::StoreUrl;
/// assert_eq!("memory:".parse::<StoreUrl>().unwrap(), StoreUrl::Memory);
/// assert_eq!("sqlite::memory:".parse::<StoreUrl>().unwrap(), StoreUrl::SqliteMemory);
/// assert_eq!("sqlite:///var/lib/pay402/db.sqlite".parse::<StoreUrl>().unwrap(),
///     StoreUrl::SqliteFile("/var/lib/pay402/db.sqlite".into()));
/// assert!(matches!("postgres://pay402@db/pay402".parse::<StoreUrl>().unwrap(), StoreUrl::Postgres(_)));
/// assert!("mysql://x".parse::<StoreUrl>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory:`
    Memory,
    /// `sqlite::memory:`
    SqliteMemory,
    /// `sqlite://<path>`, `sqlite:<path>`
    SqliteFile(PathBuf),
    /// `postgres://…`, `postgresql://…` (the whole URL, which may hold a
    /// password: never printed).
    Postgres(String),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("Memory"),
            StoreUrl::SqliteMemory => f.write_str("SqliteMemory"),
            StoreUrl::SqliteFile(p) => f.debug_tuple("SqliteFile").field(p).finish(),
            StoreUrl::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<StoreUrl, StoreError> {
        let url = url.trim();
        if url == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(StoreUrl::SqliteMemory);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() || path.contains('?') {
                return Err(StoreError::Config(
                    "a SQLite store URL is sqlite://<path> (no query parameters)".into(),
                ));
            }
            return Ok(StoreUrl::SqliteFile(PathBuf::from(path)));
        }
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        Err(StoreError::Config(format!(
            "unsupported store URL scheme {scheme:?}: use memory:, sqlite::memory:, \
             sqlite://<path> or postgres://…"
        )))
    }
}

/// An opened store database: the pool the stores of one server share.
///
/// ```
/// use pay402_server::database::{Database, DatabaseOptions};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let db = Database::open("memory:", &DatabaseOptions::default()).await.unwrap();
/// assert_eq!(db.kind(), "memory");
/// # });
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Database {
    /// In-process memory stores (every store opened on it is a fresh one).
    Memory,
    /// A SQLite pool (a file, or one private in-memory database).
    Sqlite(SqlitePool),
    /// A PostgreSQL pool.
    Postgres(PgPool),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Database").field(&self.kind()).finish()
    }
}

impl Database {
    /// Parses `url` and opens its pool (creating a SQLite file owner-only;
    /// connecting once to PostgreSQL).
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a URL it cannot use (unknown scheme,
    /// plaintext to a remote PostgreSQL); [`StoreError::Unavailable`] when
    /// the database cannot be opened or reached.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pay402_server::store::StoreError> {
    /// use pay402_server::database::{Database, DatabaseOptions};
    /// let db = Database::open("postgres://pay402@db.internal/pay402?sslmode=verify-full",
    ///     &DatabaseOptions::default().max_connections(20)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str, options: &DatabaseOptions) -> Result<Database, StoreError> {
        Database::open_url(&url.parse()?, options).await
    }

    /// Opens an already parsed URL.
    ///
    /// # Errors
    ///
    /// As [`Database::open`].
    ///
    /// ```
    /// use pay402_server::database::{Database, DatabaseOptions, StoreUrl};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let db = Database::open_url(&StoreUrl::SqliteMemory, &DatabaseOptions::default()).await.unwrap();
    /// assert_eq!(db.kind(), "sqlite");
    /// # });
    /// ```
    pub async fn open_url(
        url: &StoreUrl,
        options: &DatabaseOptions,
    ) -> Result<Database, StoreError> {
        let unavailable = |e: sqlx::Error| StoreError::Unavailable(e.to_string());
        Ok(match url {
            StoreUrl::Memory => Database::Memory,
            StoreUrl::SqliteMemory => {
                Database::Sqlite(crate::sqlite_pool::memory().await.map_err(unavailable)?)
            }
            StoreUrl::SqliteFile(path) => Database::Sqlite(
                crate::sqlite_pool::file_with(path, options)
                    .await
                    .map_err(unavailable)?,
            ),
            StoreUrl::Postgres(url) => {
                Database::Postgres(crate::pg_pool::connect(url, options).await?)
            }
        })
    }

    /// `"memory"`, `"sqlite"` or `"postgres"`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let db = pay402_server::database::Database::open("sqlite::memory:", &Default::default()).await.unwrap();
    /// assert_eq!(db.kind(), "sqlite");
    /// # });
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Database::Memory => "memory",
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool (waits for connections in use to be returned).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let db = pay402_server::database::Database::open("sqlite::memory:", &Default::default()).await.unwrap();
    /// db.close().await;
    /// # });
    /// ```
    pub async fn close(&self) {
        match self {
            Database::Memory => {}
            Database::Sqlite(pool) => pool.close().await,
            Database::Postgres(pool) => pool.close().await,
        }
    }
}
