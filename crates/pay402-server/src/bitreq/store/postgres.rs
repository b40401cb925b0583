//! PostgreSQL BitRequests store (sqlx): one ledger, one set of redeemed
//! transactions and channels for every server instance on the database.

use async_trait::async_trait;
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Script, Transaction, Txid};
use pay402_core::bitreq::channel::ChannelPayment;
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;
use sqlx::postgres::PgPool;

use super::db::*;
use super::{
    Account, BitreqStore, ChannelRecord, ChannelState, CreditOutcome, OnChainRecord,
    PaymentOutcome, Quote, RedeemOutcome, Reservation, StoreError, TransferOutcome, TransferRecord,
};
use crate::database::DatabaseOptions;
use crate::pg_pool::Migration;
use crate::rows::Cols;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "bitreq",
    sql: include_str!("../../../migrations/postgres/bitreq/0001_bitreq.sql"),
}];

/// A [`BitreqStore`] in PostgreSQL.
///
/// Opening it applies the migrations in `migrations/postgres/bitreq/` (the
/// tables of [`SqliteBitreqStore`](super::SqliteBitreqStore), with `BIGINT`
/// amounts and `BYTEA` ids). The statements are the SQLite store's, word
/// for word: a txid is redeemed once (primary key), a quote paid once
/// (`UNIQUE`), a transfer applied once (its id is the key, inserted in the
/// same transaction as the conditional debit, under PostgreSQL's row lock
/// on the payer), a channel payment recorded with a compare-and-swap on the
/// previous amount and its token redeemed by a conditional `UPDATE`.
///
/// ```no_run
/// use pay402_server::bitreq::store::{BitreqStore, PostgresBitreqStore};
/// # async fn f() -> Result<(), pay402_server::store::StoreError> {
/// let store = PostgresBitreqStore::connect("postgres://pay402@127.0.0.1/pay402", &Default::default()).await?;
/// let first = store.next_address_index().await?;
/// assert_eq!(store.next_address_index().await?, first + 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresBitreqStore {
    pool: PgPool,
}

impl PostgresBitreqStore {
    /// Connects to `url` (see [`crate::database`]) and opens the store.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::bitreq::store::PostgresBitreqStore::connect(
    ///     "postgres://pay402@127.0.0.1/pay402", &Default::default()).await.unwrap();
    /// # }
    /// ```
    pub async fn connect(
        url: &str,
        options: &DatabaseOptions,
    ) -> Result<PostgresBitreqStore, StoreError> {
        PostgresBitreqStore::from_pool(crate::pg_pool::connect(url, options).await?).await
    }

    /// Uses an existing pool, applying the migrations.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) {
    /// let store = pay402_server::bitreq::store::PostgresBitreqStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<PostgresBitreqStore, StoreError> {
        crate::pg_pool::migrate(&pool, "bitreq", MIGRATIONS).await?;
        Ok(PostgresBitreqStore { pool })
    }
}

sql_bitreq_store!(PostgresBitreqStore, sqlx::Postgres);
