//! SQLite root-key store (sqlx), the embedded default.

use std::time::SystemTime;

use async_trait::async_trait;
use pay402_core::l402::{RootKey, TokenId};
use sqlx::sqlite::SqlitePool;

use super::{RootKeyStore, StoreError};

/// Root keys in a SQLite database; survives restarts.
///
/// The table `pay402_root_keys(token_id BLOB PRIMARY KEY, root_key BLOB, created_at INTEGER)`
/// is created on open. Revoking deletes the row.
///
/// ```
/// use pay402_server::store::{RootKeyStore, SqliteStore};
/// use pay402_core::l402::{RootKey, TokenId};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteStore::in_memory().await.unwrap();
/// store.insert(TokenId([1; 32]), &RootKey::from_bytes([2; 32])).await.unwrap();
/// let key = store.get(&TokenId([1; 32])).await.unwrap().unwrap();
/// assert_eq!(key.as_bytes(), &[2; 32]);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS pay402_root_keys (
    token_id BLOB PRIMARY KEY NOT NULL,
    root_key BLOB NOT NULL,
    created_at INTEGER NOT NULL
)"];

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
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

    /// Uses an existing pool, creating the table if needed.
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
        Ok(SqliteStore { pool })
    }
}

#[async_trait]
impl RootKeyStore for SqliteStore {
    async fn insert(&self, token_id: TokenId, key: &RootKey) -> Result<(), StoreError> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let res = sqlx::query(
            "INSERT INTO pay402_root_keys (token_id, root_key, created_at) VALUES (?, ?, ?)",
        )
        .bind(&token_id.0[..])
        .bind(&key.as_bytes()[..])
        .bind(now)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Duplicate),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(&self, token_id: &TokenId) -> Result<Option<RootKey>, StoreError> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT root_key FROM pay402_root_keys WHERE token_id = ?")
                .bind(&token_id.0[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        match row {
            None => Ok(None),
            Some((mut bytes,)) => {
                let key: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("root key is not 32 bytes".into()))?;
                zeroize::Zeroize::zeroize(&mut bytes);
                Ok(Some(RootKey::from_bytes(key)))
            }
        }
    }

    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM pay402_root_keys WHERE token_id = ?")
            .bind(&token_id.0[..])
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected() > 0)
    }
}
