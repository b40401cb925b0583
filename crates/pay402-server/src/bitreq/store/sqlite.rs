//! SQLite BitRequests store (sqlx), the embedded default.

use async_trait::async_trait;
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Script, Transaction, Txid};
use pay402_core::bitreq::channel::ChannelPayment;
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;
use sqlx::sqlite::SqlitePool;

use super::db::*;
use super::{
    Account, BitreqStore, ChannelRecord, ChannelState, CreditOutcome, OnChainRecord,
    PaymentOutcome, Quote, RedeemOutcome, Reservation, StoreError, TransferOutcome, TransferRecord,
};
use crate::rows::Cols;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS bitreq_counters (
        name TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_quotes (
        address_index INTEGER PRIMARY KEY NOT NULL,
        script_pubkey BLOB NOT NULL UNIQUE,
        price INTEGER NOT NULL CHECK (price >= 0),
        resource TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS bitreq_quotes_expiry ON bitreq_quotes (expires_at)",
    "CREATE TABLE IF NOT EXISTS bitreq_onchain (
        txid BLOB PRIMARY KEY NOT NULL,
        quote_index INTEGER UNIQUE,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        resource TEXT NOT NULL,
        return_address TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'redeemed')),
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_accounts (
        username TEXT PRIMARY KEY NOT NULL,
        public_key BLOB,
        balance INTEGER NOT NULL DEFAULT 0
            CHECK (balance >= 0 AND balance <= 2100000000000000),
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_credits (
        reference TEXT PRIMARY KEY NOT NULL,
        username TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_transfers (
        id BLOB PRIMARY KEY NOT NULL,
        payer TEXT NOT NULL,
        payee TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        resource TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_channels (
        deposit_txid BLOB PRIMARY KEY NOT NULL,
        deposit_vout INTEGER NOT NULL,
        deposit_value INTEGER NOT NULL CHECK (deposit_value >= 0),
        redeem_script BLOB NOT NULL,
        expiry INTEGER NOT NULL,
        fee INTEGER NOT NULL,
        min_output INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('confirming', 'ready', 'closing', 'closed')),
        last_amount INTEGER NOT NULL DEFAULT 0 CHECK (last_amount >= 0),
        latest_payment BLOB,
        close_txid BLOB,
        created_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS bitreq_channels_state ON bitreq_channels (state)",
    "CREATE TABLE IF NOT EXISTS bitreq_channel_spends (
        token BLOB PRIMARY KEY NOT NULL,
        deposit_txid BLOB NOT NULL,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        increment INTEGER NOT NULL CHECK (increment >= 0),
        redeemed INTEGER NOT NULL DEFAULT 0 CHECK (redeemed IN (0, 1)),
        created_at INTEGER NOT NULL
    )",
];

/// A [`BitreqStore`] in SQLite. Safe to share between processes: replay
/// protection, debits and channel updates are SQL constraints and
/// conditional updates (see [`super`]).
///
/// Tables (created on open): `bitreq_counters`, `bitreq_quotes`,
/// `bitreq_onchain`, `bitreq_accounts`, `bitreq_credits`, `bitreq_transfers`,
/// `bitreq_channels`, `bitreq_channel_spends`.
///
/// ```
/// use pay402_server::bitreq::store::{BitreqStore, SqliteBitreqStore};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteBitreqStore::in_memory().await.unwrap();
/// assert_eq!(store.next_address_index().await.unwrap(), 0);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteBitreqStore {
    pool: SqlitePool,
}

impl SqliteBitreqStore {
    /// Opens (creating if needed) the database file at `path` (WAL mode).
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::bitreq::store::SqliteBitreqStore::open("bitreq.sqlite").await.unwrap();
    /// # }
    /// ```
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<SqliteBitreqStore, StoreError> {
        let pool = crate::sqlite_pool::file(path).await.map_err(unavailable)?;
        SqliteBitreqStore::from_pool(pool).await
    }

    /// A private in-memory database (tests, demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let _store = pay402_server::bitreq::store::SqliteBitreqStore::in_memory().await.unwrap();
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqliteBitreqStore, StoreError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqliteBitreqStore::from_pool(pool).await
    }

    /// Uses an existing pool, creating the tables if needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::bitreq::store::SqliteBitreqStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteBitreqStore, StoreError> {
        crate::sqlite_pool::create(&pool, SCHEMA)
            .await
            .map_err(unavailable)?;
        Ok(SqliteBitreqStore { pool })
    }
}

sql_bitreq_store!(SqliteBitreqStore, sqlx::Sqlite);
