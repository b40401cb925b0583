//! PostgreSQL payment store (sqlx): replay protection that holds across
//! every server instance sharing one database.

use async_trait::async_trait;
use pay402_core::time::UnixTime;
use sqlx::postgres::PgPool;

use super::db::*;
use super::{
    AttemptId, Claim, NonceKey, PaymentRecord, PaymentState, PaymentStore, Reservation, Resumed,
    StoreError, Transition,
};
use crate::database::DatabaseOptions;
use crate::pg_pool::Migration;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "payments",
    sql: include_str!("../../../migrations/postgres/x402/0001_payments.sql"),
}];

/// Payment records in PostgreSQL.
///
/// Opening it applies the migrations in `migrations/postgres/x402/`: the
/// table `pay402_x402_payments`, with the nonce key as its `PRIMARY KEY`
/// and the `payment-identifier` `UNIQUE`. The statements are the ones of
/// [`SqlitePaymentStore`](super::SqlitePaymentStore), word for word: a
/// reservation is one `INSERT … ON CONFLICT DO NOTHING`, a takeover one
/// conditional `UPDATE … RETURNING` (under PostgreSQL's row lock, a second
/// concurrent takeover re-checks its `WHERE` against the first one's result
/// and matches nothing), and every later transition an `UPDATE` conditional
/// on the attempt id and the state. So any number of instances on one
/// database serve and settle a payment once.
///
/// ```no_run
/// use pay402_server::x402::store::*;
/// use pay402_core::time::UnixTime;
/// # async fn f() -> Result<(), StoreError> {
/// let store = PostgresPaymentStore::connect("postgres://pay402@127.0.0.1/pay402", &Default::default()).await?;
/// let key = NonceKey::new("eip155:31337", "0xa", "0xb", "0x01");
/// let claim = Claim::new(key.clone(), [1; 32], "{}", UnixTime(700));
/// assert!(matches!(store.reserve(&claim, UnixTime(100)).await?, Reservation::Acquired(_)));
/// assert_eq!(store.reserve(&claim.retry(), UnixTime(100)).await?, Reservation::InProgress);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresPaymentStore {
    pool: PgPool,
}

impl PostgresPaymentStore {
    /// Connects to `url` (see [`crate::database`]) and opens the store.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::x402::store::PostgresPaymentStore::connect(
    ///     "postgres://pay402@127.0.0.1/pay402", &Default::default()).await.unwrap();
    /// # }
    /// ```
    pub async fn connect(
        url: &str,
        options: &DatabaseOptions,
    ) -> Result<PostgresPaymentStore, StoreError> {
        PostgresPaymentStore::from_pool(crate::pg_pool::connect(url, options).await?).await
    }

    /// Uses an existing pool, applying the migrations.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) {
    /// let store = pay402_server::x402::store::PostgresPaymentStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<PostgresPaymentStore, StoreError> {
        crate::pg_pool::migrate(&pool, "x402", MIGRATIONS).await?;
        Ok(PostgresPaymentStore { pool })
    }

    /// The pool (to share it with other stores).
    ///
    /// ```no_run
    /// # async fn f(store: pay402_server::x402::store::PostgresPaymentStore) {
    /// let pool = store.pool().clone();
    /// # }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

sql_payment_store!(PostgresPaymentStore);
