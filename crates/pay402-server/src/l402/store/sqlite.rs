//! SQLite token store (sqlx), the embedded default.

use async_trait::async_trait;
use pay402_core::l402::TokenId;
use pay402_core::lightning::PaymentHash;
use sqlx::sqlite::SqlitePool;

use super::db::*;
use super::{RootKeyStore, RootSecret, StoreError, TokenRecord};

/// The root secret and token records in a SQLite database; survives restarts.
///
/// Two tables are created on open:
/// `pay402_l402_secret (id INTEGER PRIMARY KEY CHECK (id = 0), secret BLOB)`
/// holds the root secret, generated from the OS RNG the first time the
/// database is opened; `pay402_l402_tokens (token_id BLOB PRIMARY KEY,
/// payment_hash BLOB, revoked INTEGER, first_used INTEGER)` holds one row per
/// token used paid or revoked. Answering an unpaid request writes nothing.
/// Database files are created readable and writable by their owner only.
///
/// ```
/// use pay402_server::store::{RootKeyStore, SqliteStore};
/// use pay402_core::l402::TokenId;
/// use pay402_core::lightning::PaymentHash;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteStore::in_memory().await.unwrap();
/// let id = TokenId([1; 32]);
/// store.record_use(id, &PaymentHash([2; 32])).await.unwrap();
/// let rec = store.get(&id).await.unwrap().unwrap();
/// assert_eq!(rec.payment_hash, Some(PaymentHash([2; 32])));
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    secret: std::sync::Arc<RootSecret>,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pay402_l402_secret (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    secret BLOB NOT NULL
)",
    "CREATE TABLE IF NOT EXISTS pay402_l402_tokens (
    token_id BLOB PRIMARY KEY NOT NULL,
    payment_hash BLOB,
    revoked INTEGER NOT NULL DEFAULT 0,
    first_used INTEGER NOT NULL
)",
];

impl SqliteStore {
    /// Opens (creating if needed, owner-only) the database file at `path`.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::store::SqliteStore::open("pay402.sqlite").await.unwrap();
    /// # }
    /// ```
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<SqliteStore, StoreError> {
        let pool = crate::sqlite_pool::file(path).await.map_err(unavailable)?;
        SqliteStore::from_pool(pool).await
    }

    /// A private in-memory database (for tests and demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let _store = pay402_server::store::SqliteStore::in_memory().await.unwrap();
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqliteStore::from_pool(pool).await
    }

    /// Uses an existing pool, creating the tables and the root secret if needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::store::SqliteStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteStore, StoreError> {
        crate::sqlite_pool::create(&pool, SCHEMA)
            .await
            .map_err(unavailable)?;
        let secret = load_secret(&pool).await?;
        Ok(SqliteStore { pool, secret })
    }
}

sql_root_key_store!(SqliteStore, SqlitePool, "", |_store| None);
