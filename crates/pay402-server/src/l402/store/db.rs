//! What the SQLite and PostgreSQL token stores share: every statement (with
//! `$n` parameters and `TRUE`/`FALSE`, which both databases read), the
//! secret's first-open creation and row decoding. [`sql_root_key_store!`]
//! implements both stores from this one text.

use std::time::SystemTime;

use pay402_core::lightning::PaymentHash;

use super::{StoreError, TokenRecord};
use crate::rows::Cols;

pub(super) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Creates the secret unless one exists (the first opener's wins).
pub(super) const SECRET_INSERT_SQL: &str =
    "INSERT INTO pay402_l402_secret (id, secret) VALUES (0, $1) ON CONFLICT (id) DO NOTHING";

pub(super) const SECRET_SQL: &str = "SELECT secret FROM pay402_l402_secret WHERE id = 0";

pub(super) const GET_SQL: &str =
    "SELECT payment_hash, revoked FROM pay402_l402_tokens WHERE token_id = $1";

/// The first paid use: binds the hash unless a record exists.
pub(super) const USE_SQL: &str =
    "INSERT INTO pay402_l402_tokens (token_id, payment_hash, revoked, first_used)
     VALUES ($1, $2, FALSE, $3) ON CONFLICT (token_id) DO NOTHING";

/// Revokes a live token: of concurrent revokers exactly one changes it.
pub(super) const REVOKE_LIVE_SQL: &str = "UPDATE pay402_l402_tokens SET revoked = TRUE
     WHERE token_id = $1 AND revoked = FALSE AND payment_hash IS NOT NULL";

/// Revokes whatever is there, writing a record if there is none.
pub(super) const REVOKE_ANY_SQL: &str =
    "INSERT INTO pay402_l402_tokens (token_id, payment_hash, revoked, first_used)
     VALUES ($1, NULL, TRUE, $2)
     ON CONFLICT (token_id) DO UPDATE SET revoked = TRUE";

/// A row of [`GET_SQL`].
pub(super) fn record_of(row: &impl Cols) -> Result<TokenRecord, StoreError> {
    let payment_hash = match row.bytes_opt("payment_hash").map_err(unavailable)? {
        None => None,
        Some(h) => Some(PaymentHash(h.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt("payment hash is not 32 bytes".into())
        })?)),
    };
    Ok(TokenRecord {
        payment_hash,
        revoked: row.flag("revoked").map_err(unavailable)?,
    })
}

/// The 32-byte secret from its stored bytes (which are wiped).
pub(super) fn secret_of(mut bytes: Vec<u8>) -> Result<super::RootSecret, StoreError> {
    use zeroize::Zeroize;
    let secret: Result<[u8; 32], _> = bytes.as_slice().try_into();
    bytes.zeroize();
    secret
        .map(super::RootSecret::from_bytes)
        .map_err(|_| StoreError::Corrupt("root secret is not 32 bytes".into()))
}

/// Implements a `load_secret` constructor step and [`RootKeyStore`](super::RootKeyStore)
/// for a store type with `pool` and `secret` fields over pool type `$pool`.
/// `$notify` is a statement run in the revoking transaction with the token
/// id in hex as `$1` (PostgreSQL: `pg_notify`), or `""`; `$feed` is the
/// body of [`RootKeyStore::revocations`](super::RootKeyStore::revocations)
/// given `self`.
macro_rules! sql_root_key_store {
    ($store:ident, $pool:ty, $notify:expr, |$this:ident| $feed:expr) => {
        /// Reads the root secret, creating it on the database's first open.
        async fn load_secret(pool: &$pool) -> Result<std::sync::Arc<RootSecret>, StoreError> {
            let fresh = RootSecret::random();
            sqlx::query(SECRET_INSERT_SQL)
                .bind(&fresh.0[..])
                .execute(pool)
                .await
                .map_err(unavailable)?;
            let bytes: Vec<u8> = sqlx::query_scalar(SECRET_SQL)
                .fetch_one(pool)
                .await
                .map_err(unavailable)?;
            Ok(std::sync::Arc::new(secret_of(bytes)?))
        }

        #[async_trait]
        impl RootKeyStore for $store {
            fn secret(&self) -> &RootSecret {
                &self.secret
            }

            async fn get(&self, token_id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
                let row = sqlx::query(GET_SQL)
                    .bind(&token_id.0[..])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(record_of).transpose()
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
                sqlx::query(USE_SQL)
                    .bind(&token_id.0[..])
                    .bind(&payment_hash.0[..])
                    .bind(unix_now())
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                // Ours, or the one another request (or instance) wrote first.
                self.get(&token_id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("token record vanished".into()))
            }

            async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
                // One transaction: the record and its announcement commit
                // together (a notification is delivered at commit).
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                let was_live = sqlx::query(REVOKE_LIVE_SQL)
                    .bind(&token_id.0[..])
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected()
                    == 1;
                if !was_live {
                    sqlx::query(REVOKE_ANY_SQL)
                        .bind(&token_id.0[..])
                        .bind(unix_now())
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                let notify: &str = $notify;
                if !notify.is_empty() {
                    sqlx::query(notify)
                        .bind(token_id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                tx.commit().await.map_err(unavailable)?;
                Ok(was_live)
            }

            fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<super::Revocation>> {
                let $this = self;
                $feed
            }
        }
    };
}
pub(super) use sql_root_key_store;
