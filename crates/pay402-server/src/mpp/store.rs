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
///
/// It prunes itself: when the map has doubled since the last sweep (and
/// holds at least [`MEMORY_SWEEP_MIN`] rows), a consume first drops the rows
/// [`MppStore::prune`] would drop (challenge expired more than
/// [`KEEP_AFTER_EXPIRY_SECS`] ago; such a credential is refused as expired
/// before it reaches the store), so a long-running server's map stays
/// about the size of the payments of the last TTL and hour.
#[derive(Debug, Default)]
pub struct MemoryMppStore {
    rows: Mutex<MemoryRows>,
}

/// The rows, and when to sweep next.
#[derive(Debug, Default)]
struct MemoryRows {
    /// (`method`, `reference`, challenge id) → expires at.
    map: HashMap<MemoryKey, UnixTime, PassHash>,
    /// Sweep when the map reaches this many rows.
    sweep_at: usize,
    /// The key of the row hash (SipHash, random per store: references can
    /// be chosen by payers, so the table's hash stays keyed).
    state: std::collections::hash_map::RandomState,
}

/// A row's key: `method:reference` followed by the challenge id, in one
/// allocation, and the keyed hash of `(method, reference)`, computed once
/// (growing the table rehashes from it instead of hashing every key
/// again). Equality is on `method:reference` only.
#[derive(Debug)]
struct MemoryKey {
    hash: u64,
    /// Where `method:reference` ends in `text`.
    key_len: usize,
    text: Box<str>,
}

impl MemoryKey {
    fn new(
        state: &std::collections::hash_map::RandomState,
        method: &str,
        reference: &str,
        challenge_id: &str,
    ) -> MemoryKey {
        use std::hash::BuildHasher;
        let mut text =
            String::with_capacity(method.len() + 1 + reference.len() + challenge_id.len());
        text.push_str(method);
        text.push(':');
        text.push_str(reference);
        let key_len = text.len();
        text.push_str(challenge_id);
        MemoryKey {
            hash: state.hash_one((method, reference)),
            key_len,
            text: text.into_boxed_str(),
        }
    }

    fn key(&self) -> &str {
        self.text.get(..self.key_len).unwrap_or_default()
    }

    fn challenge_id(&self) -> &str {
        self.text.get(self.key_len..).unwrap_or_default()
    }
}

impl PartialEq for MemoryKey {
    fn eq(&self, other: &MemoryKey) -> bool {
        self.hash == other.hash && self.key() == other.key()
    }
}

impl Eq for MemoryKey {}

impl std::hash::Hash for MemoryKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes [`MemoryKey`]'s precomputed hash through.
#[derive(Clone, Copy, Debug, Default)]
struct PassHash;

impl std::hash::BuildHasher for PassHash {
    type Hasher = PassHasher;
    fn build_hasher(&self) -> PassHasher {
        PassHasher(0)
    }
}

#[derive(Clone, Copy, Debug)]
struct PassHasher(u64);

impl std::hash::Hasher for PassHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `MemoryKey`; a plain fold keeps the hasher total.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The smallest map [`MemoryMppStore`] sweeps on its own.
///
/// ```
/// assert_eq!(pay402_server::mpp::store::MEMORY_SWEEP_MIN, 4096);
/// ```
pub const MEMORY_SWEEP_MIN: usize = 4096;

impl MemoryRows {
    /// Drops the rows expired past the grace; how many.
    fn prune(&mut self, now: UnixTime) -> usize {
        let before = UnixTime(now.0.saturating_sub(KEEP_AFTER_EXPIRY_SECS));
        let n = self.map.len();
        self.map.retain(|_, expires| *expires >= before);
        n - self.map.len()
    }
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

    fn rows(&self) -> std::sync::MutexGuard<'_, MemoryRows> {
        // A panic while holding the lock leaves the map consistent (every
        // operation is one insert or one retain).
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl MppStore for MemoryMppStore {
    async fn consume(&self, c: &Consumption<'_>, now: UnixTime) -> Result<bool, StoreError> {
        let mut rows = self.rows();
        if rows.map.len() >= rows.sweep_at.max(MEMORY_SWEEP_MIN) {
            rows.prune(now);
            rows.sweep_at = rows.map.len().saturating_mul(2);
        }
        let key = MemoryKey::new(&rows.state, c.method, c.reference, c.challenge_id);
        match rows.map.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => Ok(false),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(c.expires_at);
                Ok(true)
            }
        }
    }

    async fn consumed_by(
        &self,
        method: &str,
        reference: &str,
    ) -> Result<Option<String>, StoreError> {
        let rows = self.rows();
        let key = MemoryKey::new(&rows.state, method, reference, "");
        Ok(rows
            .map
            .get_key_value(&key)
            .map(|(k, _)| k.challenge_id().to_owned()))
    }

    async fn prune(&self, now: UnixTime) -> Result<u64, StoreError> {
        let n = self.rows().prune(now);
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_sweeps_rows_expired_past_the_grace() {
        let store = MemoryMppStore::new();
        let refs: Vec<String> = (0..MEMORY_SWEEP_MIN).map(|i| format!("{i:064x}")).collect();
        for r in &refs {
            let c = Consumption {
                method: "lightning",
                reference: r,
                challenge_id: "old",
                expires_at: UnixTime(100),
            };
            assert!(store.consume(&c, UnixTime(0)).await.unwrap());
        }
        // Before the grace has passed, the sweep keeps every row: replays
        // are still refused.
        let first = Consumption {
            method: "lightning",
            reference: &refs[0],
            challenge_id: "old",
            expires_at: UnixTime(100),
        };
        assert!(!store.consume(&first, UnixTime(200)).await.unwrap());
        assert_eq!(store.rows().map.len(), MEMORY_SWEEP_MIN);
        // Past it, the next consume that reaches the threshold sweeps them.
        store.rows().sweep_at = 0;
        let late = UnixTime(100 + KEEP_AFTER_EXPIRY_SECS + 1);
        let fresh = Consumption {
            method: "lightning",
            reference: "fresh",
            challenge_id: "new",
            expires_at: UnixTime(late.0 + 300),
        };
        assert!(store.consume(&fresh, late).await.unwrap());
        assert_eq!(store.rows().map.len(), 1);
        assert!(!store.consume(&fresh, late).await.unwrap());
    }
}
