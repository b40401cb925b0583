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
//!   is allocated by `UPDATE … SET next_nonce = GREATEST(next_nonce,
//!   $pending) + 1 … RETURNING`, in the same transaction that records the
//!   transaction signed with it on the claim; PostgreSQL's row lock orders
//!   concurrent allocations.
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
    SettlementState, SettlementStore, SettlementStoreError, SignWith, Signed,
};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::database::Database;
use crate::pg_pool::Migration;
use crate::rows::Cols;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "settlements",
    sql: include_str!("../../migrations/postgres/x402_facilitator/0001_settlements.sql"),
}];

const SQLITE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pay402_facilitator_settlements (
        auth_key TEXT PRIMARY KEY NOT NULL,
        chain_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        owner BLOB NOT NULL,
        lease_until INTEGER NOT NULL,
        request TEXT NOT NULL,
        signer TEXT,
        tx_nonce INTEGER,
        transaction_hash TEXT,
        raw_transaction TEXT,
        reason TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS pay402_facilitator_settlements_state
        ON pay402_facilitator_settlements (state, created_at)",
    "CREATE UNIQUE INDEX IF NOT EXISTS pay402_facilitator_settlements_tx_nonce
        ON pay402_facilitator_settlements (chain_id, signer, tx_nonce)
        WHERE tx_nonce IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS pay402_facilitator_nonces (
        chain_id INTEGER NOT NULL,
        address TEXT NOT NULL,
        next_nonce INTEGER NOT NULL,
        PRIMARY KEY (chain_id, address)
    )",
];

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

fn unavailable(e: sqlx::Error) -> SettlementStoreError {
    SettlementStoreError::Unavailable(e.to_string())
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn time(v: i64) -> UnixTime {
    UnixTime(u64::try_from(v).unwrap_or(0))
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> Result<u64, SettlementStoreError> {
    u64::try_from(v).map_err(|_| SettlementStoreError::Corrupt(format!("negative nonce {v}")))
}

const COLUMNS: &str = "auth_key, state, owner, lease_until, request, signer, tx_nonce, \
     transaction_hash, raw_transaction, reason, created_at, updated_at";

fn record_of(row: &impl Cols) -> Result<SettlementRecord, SettlementStoreError> {
    let state = row.text("state").map_err(unavailable)?;
    let owner = row.bytes("owner").map_err(unavailable)?;
    Ok(SettlementRecord {
        key: AuthorizationKey::from_stored(row.text("auth_key").map_err(unavailable)?),
        state: SettlementState::parse(&state).ok_or_else(|| {
            SettlementStoreError::Corrupt(format!("unknown settlement state {state:?}"))
        })?,
        owner: OwnerId(
            owner
                .as_slice()
                .try_into()
                .map_err(|_| SettlementStoreError::Corrupt("owner is not 16 bytes".into()))?,
        ),
        lease_until: time(row.int("lease_until").map_err(unavailable)?),
        request: row.text("request").map_err(unavailable)?,
        signer: row.text_opt("signer").map_err(unavailable)?,
        tx_nonce: row
            .int_opt("tx_nonce")
            .map_err(unavailable)?
            .map(uint)
            .transpose()?,
        transaction: row.text_opt("transaction_hash").map_err(unavailable)?,
        raw_transaction: row.text_opt("raw_transaction").map_err(unavailable)?,
        reason: row.text_opt("reason").map_err(unavailable)?,
        created_at: time(row.int("created_at").map_err(unavailable)?),
        updated_at: time(row.int("updated_at").map_err(unavailable)?),
    })
}

const INSERT_SQL: &str = "INSERT INTO pay402_facilitator_settlements
        (auth_key, chain_id, state, owner, lease_until, request, created_at, updated_at)
     VALUES ($1, $2, 'claimed', $3, $4, $5, $6, $6)
     ON CONFLICT DO NOTHING";

/// The takeover: a failed claim starts again from `claimed`; an expired
/// one keeps its transaction (the new owner follows it).
const TAKE_OVER_SQL: &str = "UPDATE pay402_facilitator_settlements
     SET owner = $1, lease_until = $2, updated_at = $3,
         state = CASE WHEN state = 'failed' THEN 'claimed' ELSE state END,
         signer = CASE WHEN state = 'failed' THEN NULL ELSE signer END,
         tx_nonce = CASE WHEN state = 'failed' THEN NULL ELSE tx_nonce END,
         transaction_hash = CASE WHEN state = 'failed' THEN NULL ELSE transaction_hash END,
         raw_transaction = CASE WHEN state = 'failed' THEN NULL ELSE raw_transaction END,
         reason = CASE WHEN state = 'failed' THEN NULL ELSE reason END
     WHERE auth_key = $4
       AND (state = 'failed' OR (state IN ('claimed', 'sent') AND lease_until < $3))";

/// Implements [`SettlementStore`] for a store type with a `pool` field.
macro_rules! sql_settlement_store {
    ($store:ty, $db:ty, $greatest:literal) => {
        impl $store {
            /// Creates `(chain_id, signer)`'s counter at `floor` unless it
            /// exists.
            async fn ensure_counter(
                tx: &mut sqlx::Transaction<'_, $db>,
                chain_id: u64,
                signer: &str,
                floor: u64,
            ) -> Result<(), SettlementStoreError> {
                sqlx::query(
                    "INSERT INTO pay402_facilitator_nonces (chain_id, address, next_nonce)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(int(chain_id))
                .bind(signer)
                .bind(int(floor))
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
                Ok(())
            }
        }

        #[async_trait]
        impl SettlementStore for $store {
            async fn claim(
                &self,
                key: &AuthorizationKey,
                owner: &OwnerId,
                request: &str,
                lease_until: UnixTime,
                now: UnixTime,
            ) -> Result<Claimed, SettlementStoreError> {
                for _ in 0..4 {
                    let inserted = sqlx::query(INSERT_SQL)
                        .bind(key.as_str())
                        .bind(int(key.chain_id().unwrap_or(0)))
                        .bind(&owner.0[..])
                        .bind(secs(lease_until))
                        .bind(request)
                        .bind(secs(now))
                        .execute(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    if inserted.rows_affected() == 1 {
                        return Ok(Claimed::New);
                    }
                    let rows = sqlx::query(&format!("{TAKE_OVER_SQL} RETURNING {COLUMNS}"))
                        .bind(&owner.0[..])
                        .bind(secs(lease_until))
                        .bind(secs(now))
                        .bind(key.as_str())
                        // All rows: SQLite commits an `UPDATE … RETURNING`
                        // once the statement has run to its end.
                        .fetch_all(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    if let Some(row) = rows.first() {
                        return Ok(Claimed::TakenOver(record_of(row)?));
                    }
                    if let Some(held) = self.get(key).await? {
                        if !pay402_core::x402::settlements::can_take_over(
                            held.state,
                            held.lease_until,
                            now,
                        ) {
                            return Ok(Claimed::Held(held));
                        }
                    }
                    // Released or expired in between: go round again.
                }
                Err(SettlementStoreError::Unavailable(
                    "settlement claim kept changing while claiming".into(),
                ))
            }

            async fn renew(
                &self,
                key: &AuthorizationKey,
                owner: &OwnerId,
                lease_until: UnixTime,
                now: UnixTime,
            ) -> Result<bool, SettlementStoreError> {
                let res = sqlx::query(concat!(
                    "UPDATE pay402_facilitator_settlements
                     SET lease_until = ",
                    $greatest,
                    "(lease_until, $1), updated_at = $2
                     WHERE auth_key = $3 AND owner = $4 AND state IN ('claimed', 'sent')"
                ))
                .bind(secs(lease_until))
                .bind(secs(now))
                .bind(key.as_str())
                .bind(&owner.0[..])
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn sign_next(
                &self,
                key: &AuthorizationKey,
                owner: &OwnerId,
                chain_id: u64,
                signer: &str,
                floor: u64,
                sign: SignWith<'_>,
                now: UnixTime,
            ) -> Result<Option<(u64, Signed)>, SettlementStoreError> {
                let signer = signer.to_ascii_lowercase();
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                // A write first: the claim's row lock (PostgreSQL), the
                // write lock (SQLite).
                let ours = sqlx::query(
                    "UPDATE pay402_facilitator_settlements SET updated_at = $1
                     WHERE auth_key = $2 AND owner = $3 AND state = 'claimed'",
                )
                .bind(secs(now))
                .bind(key.as_str())
                .bind(&owner.0[..])
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                if ours.rows_affected() != 1 {
                    return Ok(None);
                }
                Self::ensure_counter(&mut tx, chain_id, &signer, floor).await?;
                let row = sqlx::query(concat!(
                    "UPDATE pay402_facilitator_nonces SET next_nonce = ",
                    $greatest,
                    "(next_nonce, $1) + 1
                     WHERE chain_id = $2 AND address = $3
                     RETURNING next_nonce - 1 AS nonce"
                ))
                .bind(int(floor))
                .bind(int(chain_id))
                .bind(&signer)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
                let nonce = uint(row.int("nonce").map_err(unavailable)?)?;
                let signed = sign(nonce).map_err(SettlementStoreError::Unavailable)?;
                sqlx::query(
                    "UPDATE pay402_facilitator_settlements
                     SET state = 'sent', signer = $1, tx_nonce = $2, transaction_hash = $3,
                         raw_transaction = $4, updated_at = $5
                     WHERE auth_key = $6 AND owner = $7",
                )
                .bind(&signer)
                .bind(int(nonce))
                .bind(&signed.transaction)
                .bind(&signed.raw)
                .bind(secs(now))
                .bind(key.as_str())
                .bind(&owner.0[..])
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(Some((nonce, signed)))
            }

            async fn unsend(
                &self,
                key: &AuthorizationKey,
                owner: &OwnerId,
                now: UnixTime,
            ) -> Result<bool, SettlementStoreError> {
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                let rows = sqlx::query(
                    "UPDATE pay402_facilitator_settlements SET updated_at = $1
                     WHERE auth_key = $2 AND owner = $3 AND state = 'sent'
                     RETURNING chain_id, signer, tx_nonce",
                )
                .bind(secs(now))
                .bind(key.as_str())
                .bind(&owner.0[..])
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
                let Some(row) = rows.first() else {
                    return Ok(false);
                };
                let chain_id = row.int("chain_id").map_err(unavailable)?;
                let signer = row.text_opt("signer").map_err(unavailable)?;
                let nonce = row.int_opt("tx_nonce").map_err(unavailable)?;
                if let (Some(signer), Some(nonce)) = (signer, nonce) {
                    // Give the nonce back only when nobody took one after it.
                    sqlx::query(
                        "UPDATE pay402_facilitator_nonces SET next_nonce = $1
                         WHERE chain_id = $2 AND address = $3 AND next_nonce = $4",
                    )
                    .bind(nonce)
                    .bind(chain_id)
                    .bind(&signer)
                    .bind(nonce.saturating_add(1))
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                }
                sqlx::query(
                    "UPDATE pay402_facilitator_settlements
                     SET state = 'claimed', signer = NULL, tx_nonce = NULL,
                         transaction_hash = NULL, raw_transaction = NULL
                     WHERE auth_key = $1 AND owner = $2",
                )
                .bind(key.as_str())
                .bind(&owner.0[..])
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(true)
            }

            async fn resync_nonce(
                &self,
                chain_id: u64,
                signer: &str,
                floor: u64,
            ) -> Result<u64, SettlementStoreError> {
                let signer = signer.to_ascii_lowercase();
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                Self::ensure_counter(&mut tx, chain_id, &signer, floor).await?;
                let row = sqlx::query(concat!(
                    "UPDATE pay402_facilitator_nonces SET next_nonce = ",
                    $greatest,
                    "(next_nonce, $1)
                     WHERE chain_id = $2 AND address = $3 RETURNING next_nonce"
                ))
                .bind(int(floor))
                .bind(int(chain_id))
                .bind(&signer)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
                let next = uint(row.int("next_nonce").map_err(unavailable)?)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(next)
            }

            async fn next_nonce(
                &self,
                chain_id: u64,
                signer: &str,
            ) -> Result<Option<u64>, SettlementStoreError> {
                let row = sqlx::query(
                    "SELECT next_nonce FROM pay402_facilitator_nonces
                     WHERE chain_id = $1 AND address = $2",
                )
                .bind(int(chain_id))
                .bind(signer.to_ascii_lowercase())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.map(|r| uint(r.int("next_nonce").map_err(unavailable)?))
                    .transpose()
            }

            async fn finish(
                &self,
                key: &AuthorizationKey,
                owner: &OwnerId,
                outcome: Outcome,
                transaction: Option<&str>,
                reason: Option<&str>,
                now: UnixTime,
            ) -> Result<bool, SettlementStoreError> {
                let res = sqlx::query(
                    "UPDATE pay402_facilitator_settlements
                     SET state = $1, transaction_hash = COALESCE($2, transaction_hash),
                         reason = $3, updated_at = $4
                     WHERE auth_key = $5 AND owner = $6 AND state IN ('claimed', 'sent')",
                )
                .bind(outcome.state().as_str())
                .bind(transaction)
                .bind(reason)
                .bind(secs(now))
                .bind(key.as_str())
                .bind(&owner.0[..])
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn release(
                &self,
                key: &AuthorizationKey,
                owner: &OwnerId,
            ) -> Result<bool, SettlementStoreError> {
                let res = sqlx::query(
                    "DELETE FROM pay402_facilitator_settlements
                     WHERE auth_key = $1 AND owner = $2 AND state = 'claimed'",
                )
                .bind(key.as_str())
                .bind(&owner.0[..])
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn get(
                &self,
                key: &AuthorizationKey,
            ) -> Result<Option<SettlementRecord>, SettlementStoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM pay402_facilitator_settlements WHERE auth_key = $1"
                ))
                .bind(key.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(record_of).transpose()
            }

            async fn unfinished(
                &self,
                limit: usize,
            ) -> Result<Vec<SettlementRecord>, SettlementStoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM pay402_facilitator_settlements
                     WHERE state IN ('claimed', 'sent')
                     ORDER BY created_at, auth_key LIMIT $1"
                ))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                rows.iter().map(record_of).collect()
            }
        }
    };
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

sql_settlement_store!(SqliteSettlementStore, sqlx::Sqlite, "MAX");
sql_settlement_store!(PostgresSettlementStore, sqlx::Postgres, "GREATEST");
