//! SQLite token store (sqlx), the embedded default.

use std::time::SystemTime;

use async_trait::async_trait;
use pay402_core::l402::TokenId;
use pay402_core::lightning::PaymentHash;
use sqlx::sqlite::SqlitePool;
use zeroize::Zeroize;

use super::{RootKeyStore, RootSecret, StoreError, TokenRecord};

/// The root secret and token records in a SQLite database; survives restarts.
///
/// Two tables are created on open:
/// `pay402_l402_secret (id INTEGER PRIMARY KEY CHECK (id = 0), secret BLOB)`
/// holds the root secret, generated from the OS RNG the first time the
/// database is opened; `pay402_l402_tokens (token_id BLOB PRIMARY KEY,
/// payment_hash BLOB, revoked INTEGER, first_used INTEGER)` holds one row per
/// token used paid or revoked. Answering an unpaid request writes nothing.
/// Database files are created readable and writable by their owner only.
///
/// ```
/// use pay402_server::store::{RootKeyStore, SqliteStore};
/// use pay402_core::l402::TokenId;
/// use pay402_core::lightning::PaymentHash;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteStore::in_memory().await.unwrap();
/// let id = TokenId([1; 32]);
/// store.record_use(id, &PaymentHash([2; 32])).await.unwrap();
/// let rec = store.get(&id).await.unwrap().unwrap();
/// assert_eq!(rec.payment_hash, Some(PaymentHash([2; 32])));
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    secret: std::sync::Arc<RootSecret>,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pay402_l402_secret (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    secret BLOB NOT NULL
)",
    "CREATE TABLE IF NOT EXISTS pay402_l402_tokens (
    token_id BLOB PRIMARY KEY NOT NULL,
    payment_hash BLOB,
    revoked INTEGER NOT NULL DEFAULT 0,
    first_used INTEGER NOT NULL
)",
];

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed, owner-only) the database file at `path`.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::store::SqliteStore::open("pay402.sqlite").await.unwrap();
    /// # }
    /// ```
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<SqliteStore, StoreError> {
        let pool = crate::sqlite_pool::file(path).await.map_err(unavailable)?;
        SqliteStore::from_pool(pool).await
    }

    /// A private in-memory database (for tests and demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let _store = pay402_server::store::SqliteStore::in_memory().await.unwrap();
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqliteStore::from_pool(pool).await
    }

    /// Uses an existing pool, creating the tables and the root secret if needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::store::SqliteStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteStore, StoreError> {
        crate::sqlite_pool::create(&pool, SCHEMA)
            .await
            .map_err(unavailable)?;
        let fresh = RootSecret::random();
        sqlx::query("INSERT OR IGNORE INTO pay402_l402_secret (id, secret) VALUES (0, ?)")
            .bind(&fresh.0[..])
            .execute(&pool)
            .await
            .map_err(unavailable)?;
        let (mut bytes,): (Vec<u8>,) =
            sqlx::query_as("SELECT secret FROM pay402_l402_secret WHERE id = 0")
                .fetch_one(&pool)
                .await
                .map_err(unavailable)?;
        let secret: Result<[u8; 32], _> = bytes.as_slice().try_into();
        bytes.zeroize();
        let secret =
            secret.map_err(|_| StoreError::Corrupt("root secret is not 32 bytes".into()))?;
        Ok(SqliteStore {
            pool,
            secret: std::sync::Arc::new(RootSecret::from_bytes(secret)),
        })
    }
}

fn record(hash: Option<Vec<u8>>, revoked: i64) -> Result<TokenRecord, StoreError> {
    let payment_hash = match hash {
        None => None,
        Some(h) => Some(PaymentHash(h.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt("payment hash is not 32 bytes".into())
        })?)),
    };
    Ok(TokenRecord {
        payment_hash,
        revoked: revoked != 0,
    })
}

#[async_trait]
impl RootKeyStore for SqliteStore {
    fn secret(&self) -> &RootSecret {
        &self.secret
    }

    async fn get(&self, token_id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<(Option<Vec<u8>>, i64)> = sqlx::query_as(
            "SELECT payment_hash, revoked FROM pay402_l402_tokens WHERE token_id = ?",
        )
        .bind(&token_id.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.map(|(h, r)| record(h, r)).transpose()
    }

    async fn record_use(
        &self,
        token_id: TokenId,
        payment_hash: &PaymentHash,
    ) -> Result<TokenRecord, StoreError> {
        // A read first: only a token's first paid use writes.
        if let Some(rec) = self.get(&token_id).await? {
            return Ok(rec);
        }
        sqlx::query(
            "INSERT OR IGNORE INTO pay402_l402_tokens (token_id, payment_hash, revoked, first_used) VALUES (?, ?, 0, ?)",
        )
        .bind(&token_id.0[..])
        .bind(&payment_hash.0[..])
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        self.get(&token_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("token record vanished".into()))
    }

    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let was_live = matches!(
            self.get(token_id).await?,
            Some(TokenRecord {
                payment_hash: Some(_),
                revoked: false
            })
        );
        sqlx::query(
            "INSERT INTO pay402_l402_tokens (token_id, payment_hash, revoked, first_used) VALUES (?, NULL, 1, ?)
             ON CONFLICT (token_id) DO UPDATE SET revoked = 1",
        )
        .bind(&token_id.0[..])
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(was_live)
    }
}
