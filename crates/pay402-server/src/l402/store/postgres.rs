//! PostgreSQL token store (sqlx): several server instances share one root
//! secret and one record of used and revoked tokens.

use async_trait::async_trait;
use pay402_core::l402::TokenId;
use pay402_core::lightning::PaymentHash;
use sqlx::postgres::PgPool;

use super::db::*;
use super::{RootKeyStore, RootSecret, StoreError, TokenRecord};
use crate::database::DatabaseOptions;
use crate::pg_pool::Migration;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "secret_and_tokens",
    sql: include_str!("../../../migrations/postgres/l402/0001_secret_and_tokens.sql"),
}];

/// The root secret and token records in PostgreSQL.
///
/// Opening it applies the migrations in `migrations/postgres/l402/`
/// (tables `pay402_l402_secret` and `pay402_l402_tokens`, the same shape as
/// [`SqliteStore`](super::SqliteStore)'s) and creates the root secret from
/// the OS RNG if the database has none, so every instance opening the same
/// database derives the same root keys. The statements are the SQLite
/// store's, word for word: a token's first paid use is one `INSERT … ON
/// CONFLICT DO NOTHING` (the first payment hash stays bound); a revocation
/// is a conditional `UPDATE` (exactly one concurrent revoker learns the
/// token was live) and an upsert.
///
/// Other instances see a revocation when their key cache entry for the
/// token expires ([`L402Config::key_cache_ttl`](crate::L402Config::key_cache_ttl),
/// 60 s by default): that TTL bounds how long a revoked token stays usable
/// on an instance that did not revoke it.
///
/// ```no_run
/// use pay402_server::store::{PostgresStore, RootKeyStore};
/// use pay402_server::database::DatabaseOptions;
/// # async fn f() -> Result<(), pay402_server::store::StoreError> {
/// let store = PostgresStore::connect("postgres://pay402@127.0.0.1/pay402", &DatabaseOptions::default()).await?;
/// let id = pay402_core::l402::TokenId([1; 32]);
/// assert!(store.get(&id).await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    secret: std::sync::Arc<RootSecret>,
}

impl PostgresStore {
    /// Connects to `url` (see [`crate::database`]) and opens the store.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::store::PostgresStore::connect(
    ///     "postgres://pay402@127.0.0.1/pay402", &Default::default()).await.unwrap();
    /// # }
    /// ```
    pub async fn connect(
        url: &str,
        options: &DatabaseOptions,
    ) -> Result<PostgresStore, StoreError> {
        PostgresStore::from_pool(crate::pg_pool::connect(url, options).await?).await
    }

    /// Uses an existing pool: applies the migrations and reads (or creates)
    /// the root secret.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) {
    /// let store = pay402_server::store::PostgresStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<PostgresStore, StoreError> {
        crate::pg_pool::migrate(&pool, "l402", MIGRATIONS).await?;
        let secret = load_secret(&pool).await?;
        Ok(PostgresStore { pool, secret })
    }
}

sql_root_key_store!(PostgresStore, PgPool);
