//! The replay store of MPP: each payment is consumed once, atomically, in
//! the database.
//!
//! The key is the payment itself, `(method, reference)`: the Lightning
//! payment hash, or the EVM payer and authorization nonce (`from ‖ nonce`,
//! the pair the token contract makes single-use). The challenge id is
//! recorded beside it. Not the challenge id alone: an id is a deterministic
//! HMAC of the offer, and one `evm` challenge may be paid by two payers,
//! two distinct payments (mpp-rs #285); nor `(payment hash, challenge id)`,
//! which would let one Lightning payment redeem two challenges carrying the
//! same invoice. Consuming is one statement, `INSERT … ON CONFLICT DO
//! NOTHING`, never a read followed by a write, so any number of server
//! instances on one database serve a payment once.
//!
//! [`MemoryMppStore`] keeps the rows in this process;
//! [`SqliteMppStore`] in a SQLite file; [`PostgresMppStore`] in
//! PostgreSQL (migrations in `migrations/postgres/mpp/`). [`open`] picks
//! one for a [`Database`](crate::database::Database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pay402_core::time::UnixTime;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::pg_pool::Migration;
pub use crate::store::StoreError;

/// How long a consumed row is kept after its challenge expired (clock skew
/// between instances).
///
/// ```
/// assert_eq!(pay402_server::mpp::store::KEEP_AFTER_EXPIRY_SECS, 3600);
/// ```
pub const KEEP_AFTER_EXPIRY_SECS: u64 = 3600;

/// One payment to consume.
///
/// ```
/// use pay402_server::mpp::store::Consumption;
/// let c = Consumption { method: "lightning", reference: "ab", challenge_id: "id", expires_at: pay402_core::time::UnixTime(60) };
/// assert_eq!(c.method, "lightning");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consumption<'a> {
    /// `lightning` or `evm`.
    pub method: &'a str,
    /// The payment: payment hash (hex), or `from ‖ nonce` (hex).
    pub reference: &'a str,
    /// The challenge it paid.
    pub challenge_id: &'a str,
    /// When the challenge stops being accepted.
    pub expires_at: UnixTime,
}

/// Where MPP records the payments it has served.
///
/// ```
/// use pay402_server::mpp::store::{Consumption, MemoryMppStore, MppStore};
/// use pay402_core::time::UnixTime;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryMppStore::new();
/// let c = Consumption { method: "lightning", reference: "ab", challenge_id: "id", expires_at: UnixTime(60) };
/// assert!(store.consume(&c, UnixTime(0)).await.unwrap(), "first use");
/// assert!(!store.consume(&c, UnixTime(1)).await.unwrap(), "replay");
/// # });
/// ```
#[async_trait]
pub trait MppStore: Send + Sync {
    /// Consumes the payment: `true` when this call consumed it, `false`
    /// when it was consumed before (under any challenge). Atomic.
    async fn consume(&self, c: &Consumption<'_>, now: UnixTime) -> Result<bool, StoreError>;

    /// The challenge id a payment was consumed under, if it was.
    async fn consumed_by(
        &self,
        method: &str,
        reference: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Deletes rows whose challenge expired more than
    /// [`KEEP_AFTER_EXPIRY_SECS`] before `now`; returns how many.
    async fn prune(&self, now: UnixTime) -> Result<u64, StoreError>;
}

/// Opens the MPP store on `db` (see [`crate::database`]).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let db = pay402_server::database::Database::open("sqlite::memory:", &Default::default()).await.unwrap();
/// let store = pay402_server::mpp::store::open(&db).await.unwrap();
/// assert_eq!(store.prune(pay402_core::time::UnixTime(0)).await.unwrap(), 0);
/// # });
/// ```
pub async fn open(db: &crate::database::Database) -> Result<Arc<dyn MppStore>, StoreError> {
    use crate::database::Database;
    Ok(match db {
        Database::Memory => Arc::new(MemoryMppStore::new()),
        Database::Sqlite(pool) => Arc::new(SqliteMppStore::from_pool(pool.clone()).await?),
        Database::Postgres(pool) => Arc::new(PostgresMppStore::from_pool(pool.clone()).await?),
    })
}

fn prune_before(now: UnixTime) -> i64 {
    secs(UnixTime(now.0.saturating_sub(KEEP_AFTER_EXPIRY_SECS)))
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// The consumed payments of this process (tests, demos, one instance).
///
/// ```
/// let store = pay402_server::mpp::store::MemoryMppStore::new();
/// # let _ = store;
/// ```
#[derive(Debug, Default)]
pub struct MemoryMppStore {
    /// `method:reference` → (challenge id, expires at).
    rows: Mutex<HashMap<String, (String, UnixTime)>>,
}

impl MemoryMppStore {
    /// An empty store.
    ///
    /// ```
    /// let store = pay402_server::mpp::store::MemoryMppStore::new();
    /// # let _ = store;
    /// ```
    pub fn new() -> MemoryMppStore {
        MemoryMppStore::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, UnixTime)>> {
        // A panic while holding the lock leaves the map consistent (every
        // operation is one insert or one retain).
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn memory_key(method: &str, reference: &str) -> String {
    let mut k = String::with_capacity(method.len() + 1 + reference.len());
    k.push_str(method);
    k.push(':');
    k.push_str(reference);
    k
}

#[async_trait]
impl MppStore for MemoryMppStore {
    async fn consume(&self, c: &Consumption<'_>, _now: UnixTime) -> Result<bool, StoreError> {
        let mut rows = self.rows();
        match rows.entry(memory_key(c.method, c.reference)) {
            std::collections::hash_map::Entry::Occupied(_) => Ok(false),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((c.challenge_id.to_owned(), c.expires_at));
                Ok(true)
            }
        }
    }

    async fn consumed_by(
        &self,
        method: &str,
        reference: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .rows()
            .get(&memory_key(method, reference))
            .map(|(id, _)| id.clone()))
    }

    async fn prune(&self, now: UnixTime) -> Result<u64, StoreError> {
        let before = UnixTime(now.0.saturating_sub(KEEP_AFTER_EXPIRY_SECS));
        let mut rows = self.rows();
        let n = rows.len();
        rows.retain(|_, (_, expires)| *expires >= before);
        Ok(u64::try_from(n - rows.len()).unwrap_or(u64::MAX))
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

const CONSUME: &str = "INSERT INTO pay402_mpp_consumed \
     (method, reference, challenge_id, expires_at, consumed_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
const CONSUMED_BY: &str =
    "SELECT challenge_id FROM pay402_mpp_consumed WHERE method = $1 AND reference = $2";
const PRUNE: &str = "DELETE FROM pay402_mpp_consumed WHERE expires_at < $1";

/// Implements [`MppStore`] for a SQL store from the one set of statements
/// both databases read.
macro_rules! sql_mpp_store {
    ($store:ty) => {
        #[async_trait]
        impl MppStore for $store {
            async fn consume(
                &self,
                c: &Consumption<'_>,
                now: UnixTime,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(CONSUME)
                    .bind(c.method)
                    .bind(c.reference)
                    .bind(c.challenge_id)
                    .bind(secs(c.expires_at))
                    .bind(secs(now))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(done.rows_affected() == 1)
            }

            async fn consumed_by(
                &self,
                method: &str,
                reference: &str,
            ) -> Result<Option<String>, StoreError> {
                sqlx::query_scalar(CONSUMED_BY)
                    .bind(method)
                    .bind(reference)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)
            }

            async fn prune(&self, now: UnixTime) -> Result<u64, StoreError> {
                let done = sqlx::query(PRUNE)
                    .bind(prune_before(now))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(done.rows_affected())
            }
        }
    };
}

/// Consumed payments in a SQLite database (processes sharing the file
/// serve a payment once).
///
/// ```
/// use pay402_server::mpp::store::{Consumption, MppStore, SqliteMppStore};
/// use pay402_core::time::UnixTime;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteMppStore::in_memory().await.unwrap();
/// let c = Consumption { method: "lightning", reference: "ab", challenge_id: "id", expires_at: UnixTime(60) };
/// assert!(store.consume(&c, UnixTime(0)).await.unwrap());
/// assert!(!store.consume(&c, UnixTime(0)).await.unwrap());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteMppStore {
    pool: SqlitePool,
}

impl SqliteMppStore {
    /// A private in-memory database (tests, demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = pay402_server::mpp::store::SqliteMppStore::in_memory().await.unwrap();
    /// # let _ = store;
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqliteMppStore, StoreError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqliteMppStore::from_pool(pool).await
    }

    /// Uses an existing pool, creating the table if needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::mpp::store::SqliteMppStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteMppStore, StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS pay402_mpp_consumed (
                method TEXT NOT NULL,
                reference TEXT NOT NULL,
                challenge_id TEXT NOT NULL,
                expires_at INTEGER NOT NULL,
                consumed_at INTEGER NOT NULL,
                PRIMARY KEY (method, reference)
            )",
        )
        .execute(&pool)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS pay402_mpp_consumed_expires
             ON pay402_mpp_consumed (expires_at)",
        )
        .execute(&pool)
        .await
        .map_err(unavailable)?;
        Ok(SqliteMppStore { pool })
    }
}

sql_mpp_store!(SqliteMppStore);

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "consumed",
    sql: include_str!("../../migrations/postgres/mpp/0001_consumed.sql"),
}];

/// Consumed payments in PostgreSQL: every instance on the database serves
/// a payment once. Opening applies `migrations/postgres/mpp/`.
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) {
/// let store = pay402_server::mpp::store::PostgresMppStore::from_pool(pool).await.unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresMppStore {
    pool: PgPool,
}

impl PostgresMppStore {
    /// Uses an existing pool, applying the migrations.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) {
    /// let store = pay402_server::mpp::store::PostgresMppStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<PostgresMppStore, StoreError> {
        crate::pg_pool::migrate(&pool, "mpp", MIGRATIONS).await?;
        Ok(PostgresMppStore { pool })
    }
}

sql_mpp_store!(PostgresMppStore);
