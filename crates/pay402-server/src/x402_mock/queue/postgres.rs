//! PostgreSQL settlement queue (sqlx): one queue for every server instance
//! and worker sharing the database.

use async_trait::async_trait;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock_chain::{SignedTx, U256};
use sqlx::postgres::PgPool;

use super::db::*;
use super::{JournalNext, NewSettlement, QueueError, Settlement, SettlementStore};
use crate::database::DatabaseOptions;
use crate::pg_pool::Migration;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "settlements",
    sql: include_str!("../../../migrations/postgres/x402_mock/0001_settlements.sql"),
}];

/// The settlement queue and revocation list in PostgreSQL.
///
/// Opening it applies the migrations in `migrations/postgres/x402_mock/`
/// (tables `pay402_x402_mock_settlements` and `pay402_x402_mock_revoked`,
/// the shape of [`SqliteSettlementStore`](super::SqliteSettlementStore)'s)
/// and those of the x402 facilitator (`migrations/postgres/x402_facilitator/`),
/// whose `pay402_facilitator_nonces` counts the spender's transaction
/// nonces for every worker on the database
/// ([`SettlementStore::sign_and_journal`]).
/// The statements are the SQLite store's, word for word, except that
/// [`claim_due`](SettlementStore::claim_due) locks the rows it leases with
/// `FOR UPDATE SKIP LOCKED` and re-checks the lease under the lock: workers
/// of several instances never lease one job at the same time. One live job
/// per permit nonce is the partial unique index `pay402_x402_mock_live_nonce`.
///
/// ```no_run
/// use pay402_server::x402_mock::{PostgresSettlementStore, SettlementStore};
/// # async fn f() -> Result<(), pay402_server::x402_mock::QueueError> {
/// let store = PostgresSettlementStore::connect("postgres://pay402@127.0.0.1/pay402", &Default::default()).await?;
/// let jti = pay402_core::x402::evm::Bytes32([3; 32]);
/// store.revoke(&jti, 2_000_000_000, "transfer_reverted").await?;
/// assert!(store.is_revoked(&jti).await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresSettlementStore {
    pool: PgPool,
}

impl PostgresSettlementStore {
    /// Connects to `url` (see [`crate::database`]) and opens the store.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::x402_mock::PostgresSettlementStore::connect(
    ///     "postgres://pay402@127.0.0.1/pay402", &Default::default()).await.unwrap();
    /// # }
    /// ```
    pub async fn connect(
        url: &str,
        options: &DatabaseOptions,
    ) -> Result<PostgresSettlementStore, QueueError> {
        let pool = crate::pg_pool::connect(url, options).await?;
        PostgresSettlementStore::from_pool(pool).await
    }

    /// Uses an existing pool (e.g. shared with the other stores), applying
    /// the migrations.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) {
    /// let store = pay402_server::x402_mock::PostgresSettlementStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<PostgresSettlementStore, QueueError> {
        // The spender's nonce counters are the x402 facilitator's
        // (`pay402_facilitator_nonces`): one counter per key on the
        // database, whichever component signs with it.
        crate::pg_pool::migrate(
            &pool,
            "x402_facilitator",
            crate::x402::settlements::MIGRATIONS,
        )
        .await?;
        crate::pg_pool::migrate(&pool, "x402_mock", MIGRATIONS).await?;
        Ok(PostgresSettlementStore { pool })
    }

    /// Closes the pool (waits for connections to be returned).
    ///
    /// ```no_run
    /// # async fn f(store: pay402_server::x402_mock::PostgresSettlementStore) {
    /// store.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

sql_settlement_store!(
    PostgresSettlementStore,
    sqlx::Postgres,
    "FOR UPDATE SKIP LOCKED"
);
