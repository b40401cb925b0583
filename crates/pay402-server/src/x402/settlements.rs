//! The x402 facilitator's settlement state in SQLite or PostgreSQL: the
//! [`SettlementStore`] of `pay402_core::x402::settlements`, so several
//! facilitator processes settling from one key on one database never
//! submit one authorization twice and never reuse a transaction nonce.
//!
//! Two tables (PostgreSQL: `migrations/postgres/x402_facilitator/`; SQLite:
//! created on open):
//!
//! - `pay402_facilitator_settlements`: one row per authorization, keyed by
//!   `(chain, token, from, nonce)`. A claim is `INSERT … ON CONFLICT DO
//!   NOTHING`; a takeover (the owner's lease ran out, or its transaction
//!   reverted) one conditional `UPDATE … RETURNING`; every later step an
//!   `UPDATE … WHERE owner = $me AND state = …`.
//! - `pay402_facilitator_nonces`: one row per `(chain, address)`. A nonce
//!   is allocated by `UPDATE … SET next_nonce = max(next_nonce,
//!   $pending) + 1 … RETURNING`, in the same transaction that records the
//!   transaction signed with it on the claim; PostgreSQL's row lock orders
//!   concurrent allocations.
//!
//! Both databases run the same statements (in `settlements/sql.rs`, the way
//! the client journal shares its own).
//!
//! ```
//! use pay402_core::time::UnixTime;
//! use pay402_core::x402::settlements::*;
//! use pay402_server::database::Database;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let db = Database::open("sqlite::memory:", &Default::default()).await.unwrap();
//! let store = pay402_server::x402::settlements::open(&db).await.unwrap();
//! let key = AuthorizationKey::new(31337, &[1; 20], &[2; 20], &[3; 32]);
//! let now = UnixTime(1_000);
//! assert_eq!(store.claim(&key, &OwnerId([1; 16]), "{}", UnixTime(1_060), now).await.unwrap(), Claimed::New);
//! assert!(matches!(store.claim(&key, &OwnerId([2; 16]), "{}", UnixTime(1_060), now).await.unwrap(), Claimed::Held(_)));
//! # });
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use pay402_core::time::UnixTime;
use pay402_core::x402::settlements::{
    AuthorizationKey, Claimed, MemorySettlementStore, Outcome, OwnerId, SettlementRecord,
    SettlementStore, SettlementStoreError, SignNext, Signed,
};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::database::Database;
use crate::pg_pool::Migration;
use crate::rows::Cols;

pub(crate) mod sql;

use sql::{SQLITE_SCHEMA, int, record_of, secs, sql_settlement_store, uint, unavailable};

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "settlements",
    sql: include_str!("../../migrations/postgres/x402_facilitator/0001_settlements.sql"),
}];

/// Opens the facilitator's settlement store on `db`: a fresh
/// [`MemorySettlementStore`], or a [`SqliteSettlementStore`] /
/// [`PostgresSettlementStore`] on the database's pool.
///
/// # Errors
///
/// [`SettlementStoreError::Unavailable`] when the tables cannot be created
/// (or a migration differs from the one recorded).
///
/// ```
/// use pay402_server::database::Database;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let db = Database::open("memory:", &Default::default()).await.unwrap();
/// let store = pay402_server::x402::settlements::open(&db).await.unwrap();
/// assert!(store.unfinished(10).await.unwrap().is_empty());
/// # });
/// ```
pub async fn open(db: &Database) -> Result<Arc<dyn SettlementStore>, SettlementStoreError> {
    Ok(match db {
        Database::Memory => Arc::new(MemorySettlementStore::new()),
        Database::Sqlite(pool) => Arc::new(SqliteSettlementStore::from_pool(pool.clone()).await?),
        Database::Postgres(pool) => {
            Arc::new(PostgresSettlementStore::from_pool(pool.clone()).await?)
        }
    })
}

/// The facilitator's settlement state in SQLite (processes on one machine
/// sharing the file; the file's write lock orders them).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
/// let store = pay402_server::x402::settlements::SqliteSettlementStore::from_pool(pool).await.unwrap();
/// # let _ = store;
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteSettlementStore {
    pool: SqlitePool,
}

impl SqliteSettlementStore {
    /// Uses `pool`, creating the tables if needed.
    ///
    /// # Errors
    ///
    /// [`SettlementStoreError::Unavailable`] when they cannot be created.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::x402::settlements::SqliteSettlementStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, SettlementStoreError> {
        for sql in SQLITE_SCHEMA {
            sqlx::query(sql).execute(&pool).await.map_err(unavailable)?;
        }
        Ok(SqliteSettlementStore { pool })
    }
}

/// The facilitator's settlement state in PostgreSQL (every facilitator
/// instance on the database).
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) {
/// let store = pay402_server::x402::settlements::PostgresSettlementStore::from_pool(pool).await.unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresSettlementStore {
    pool: PgPool,
}

impl PostgresSettlementStore {
    /// Uses `pool`, applying the migrations in
    /// `migrations/postgres/x402_facilitator/`.
    ///
    /// # Errors
    ///
    /// [`SettlementStoreError::Unavailable`] when they cannot be applied.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) {
    /// let store = pay402_server::x402::settlements::PostgresSettlementStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<Self, SettlementStoreError> {
        crate::pg_pool::migrate(&pool, "x402_facilitator", MIGRATIONS)
            .await
            .map_err(|e| SettlementStoreError::Unavailable(e.to_string()))?;
        Ok(PostgresSettlementStore { pool })
    }
}

sql_settlement_store!(SqliteSettlementStore, sqlx::Sqlite);
sql_settlement_store!(PostgresSettlementStore, sqlx::Postgres);
