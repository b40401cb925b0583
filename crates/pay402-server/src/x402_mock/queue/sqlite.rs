//! SQLite settlement queue (sqlx): survives restarts.

use async_trait::async_trait;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock_chain::{SignedTx, U256};
use sqlx::sqlite::SqlitePool;

use super::db::*;
use super::{JournalNext, NewSettlement, QueueError, Settlement, SettlementStore};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pay402_x402_mock_settlements (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chain_id INTEGER NOT NULL,
        token TEXT NOT NULL,
        owner TEXT NOT NULL,
        nonce TEXT NOT NULL,
        digest BLOB NOT NULL,
        permit_json TEXT NOT NULL,
        resource TEXT NOT NULL,
        pay_to TEXT NOT NULL,
        amount TEXT NOT NULL,
        token_exp INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        permit_tx_hash BLOB,
        permit_tx_raw BLOB,
        permit_tx_sender TEXT,
        permit_tx_nonce INTEGER,
        transfer_tx_hash BLOB,
        transfer_tx_raw BLOB,
        transfer_tx_sender TEXT,
        transfer_tx_nonce INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_until INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        failure TEXT,
        updated_at INTEGER NOT NULL
    )",
    // At most one live (not failed) job per permit nonce: the replay guard.
    "CREATE UNIQUE INDEX IF NOT EXISTS pay402_x402_mock_live_nonce
        ON pay402_x402_mock_settlements (chain_id, token, owner, nonce)
        WHERE state <> 'failed'",
    "CREATE INDEX IF NOT EXISTS pay402_x402_mock_due
        ON pay402_x402_mock_settlements (state, next_attempt_at)",
    "CREATE TABLE IF NOT EXISTS pay402_x402_mock_revoked (
        jti BLOB PRIMARY KEY NOT NULL,
        exp INTEGER NOT NULL,
        reason TEXT NOT NULL
    )",
];

/// The settlement queue and revocation list in a SQLite database.
///
/// Tables `pay402_x402_mock_settlements` (one row per job, with the journal
/// of signed transactions) and `pay402_x402_mock_revoked` are created on
/// open, and the x402 facilitator's tables, whose
/// `pay402_facilitator_nonces` counts the spender's transaction nonces
/// ([`SettlementStore::sign_and_journal`]).
///
/// ```
/// use pay402_server::x402_mock::{SqliteSettlementStore, SettlementStore};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteSettlementStore::in_memory().await.unwrap();
/// let jti = pay402_core::x402::evm::Bytes32([3; 32]);
/// assert!(!store.is_revoked(&jti).await.unwrap());
/// store.revoke(&jti, 2_000_000_000, "transfer_reverted").await.unwrap();
/// assert!(store.is_revoked(&jti).await.unwrap());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteSettlementStore {
    pool: SqlitePool,
}

impl SqliteSettlementStore {
    /// Opens (creating if needed) the database file at `path`.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::x402_mock::SqliteSettlementStore::open("settlements.sqlite").await.unwrap();
    /// # }
    /// ```
    pub async fn open(
        path: impl AsRef<std::path::Path>,
    ) -> Result<SqliteSettlementStore, QueueError> {
        let pool = crate::sqlite_pool::file(path).await.map_err(unavailable)?;
        SqliteSettlementStore::from_pool(pool).await
    }

    /// A private in-memory database (tests and demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let _ = pay402_server::x402_mock::SqliteSettlementStore::in_memory().await.unwrap();
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqliteSettlementStore, QueueError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqliteSettlementStore::from_pool(pool).await
    }

    /// Uses an existing pool (e.g. shared with the L402 root-key store),
    /// creating the tables if needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::x402_mock::SqliteSettlementStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteSettlementStore, QueueError> {
        crate::sqlite_pool::create(&pool, SCHEMA)
            .await
            .map_err(unavailable)?;
        // The spender's nonce counters: the x402 facilitator's table.
        crate::sqlite_pool::create(&pool, crate::x402::settlements::sql::SQLITE_SCHEMA)
            .await
            .map_err(unavailable)?;
        Ok(SqliteSettlementStore { pool })
    }

    /// Closes the pool (waits for connections to be returned).
    ///
    /// ```no_run
    /// # async fn f(store: pay402_server::x402_mock::SqliteSettlementStore) {
    /// store.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

sql_settlement_store!(SqliteSettlementStore, sqlx::Sqlite, "");
