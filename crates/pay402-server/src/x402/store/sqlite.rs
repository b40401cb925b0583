//! SQLite payment store (sqlx): replay protection that holds across
//! processes sharing one database file, and survives restarts.

use async_trait::async_trait;
use pay402_core::time::UnixTime;
use sqlx::sqlite::SqlitePool;

use super::db::*;
use super::{
    AttemptId, Claim, NonceKey, PaymentRecord, PaymentState, PaymentStore, Reservation, Resumed,
    StoreError, Transition,
};

/// The table and its indexes, created on open (PostgreSQL's are the
/// migration in `migrations/postgres/x402/`).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pay402_x402_payments (
                nonce_key TEXT PRIMARY KEY NOT NULL,
                state TEXT NOT NULL,
                prev_state TEXT,
                attempt BLOB NOT NULL,
                fingerprint BLOB NOT NULL,
                payment_id TEXT UNIQUE,
                payer TEXT NOT NULL,
                network TEXT NOT NULL,
                amount TEXT NOT NULL,
                transaction_hash TEXT,
                payment_response TEXT,
                response_status INTEGER,
                response_content_type TEXT,
                response_body BLOB,
                request TEXT NOT NULL,
                lease_until INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )",
    "CREATE INDEX IF NOT EXISTS pay402_x402_payments_state
             ON pay402_x402_payments (state, created_at)",
    "CREATE INDEX IF NOT EXISTS pay402_x402_payments_state_updated
             ON pay402_x402_payments (state, updated_at)",
];

/// Payment records in a SQLite database.
///
/// The table `pay402_x402_payments` (created on open) has the nonce key as
/// its `PRIMARY KEY` and the `payment-identifier` as a `UNIQUE` column:
/// a reservation is one `INSERT ... ON CONFLICT DO NOTHING`, a takeover one
/// conditional `UPDATE`, so two servers sharing the file can never both own
/// a payment.
///
/// ```
/// use pay402_server::x402::store::*;
/// use pay402_core::time::UnixTime;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqlitePaymentStore::in_memory().await.unwrap();
/// let key = NonceKey::new("eip155:31337", "0xa", "0xb", "0x01");
/// let claim = Claim::new(key.clone(), [1; 32], "{}", UnixTime(700));
/// assert!(matches!(store.reserve(&claim, UnixTime(100)).await.unwrap(), Reservation::Acquired(_)));
/// assert_eq!(store.reserve(&claim.retry(), UnixTime(100)).await.unwrap(), Reservation::InProgress);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqlitePaymentStore {
    pool: SqlitePool,
}

impl SqlitePaymentStore {
    /// Opens (creating if needed) the database file at `path`, in WAL mode
    /// with a 10 s busy timeout so concurrent writers wait for each other.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::x402::store::SqlitePaymentStore::open("payments.sqlite").await.unwrap();
    /// # }
    /// ```
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<SqlitePaymentStore, StoreError> {
        let pool = crate::sqlite_pool::file(path).await.map_err(unavailable)?;
        SqlitePaymentStore::from_pool(pool).await
    }

    /// A private in-memory database (for tests and demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let _store = pay402_server::x402::store::SqlitePaymentStore::in_memory().await.unwrap();
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqlitePaymentStore, StoreError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqlitePaymentStore::from_pool(pool).await
    }

    /// Uses an existing pool (for example the one of the L402
    /// [`SqliteStore`](crate::store::SqliteStore)), creating the table if
    /// needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::x402::store::SqlitePaymentStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqlitePaymentStore, StoreError> {
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(unavailable)?;
        }
        Ok(SqlitePaymentStore { pool })
    }

    /// The pool (to share it with other stores).
    ///
    /// ```no_run
    /// # async fn f(store: pay402_server::x402::store::SqlitePaymentStore) {
    /// let pool = store.pool().clone();
    /// # }
    /// ```
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

sql_payment_store!(SqlitePaymentStore);
