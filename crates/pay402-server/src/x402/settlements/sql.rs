//! What the SQLite and PostgreSQL settlement stores share: every statement,
//! written once with `$n` parameters (both databases read them), the row
//! decoding, and [`sql_settlement_store!`], which implements
//! [`SettlementStore`](pay402_core::x402::settlements::SettlementStore) for
//! both from this one text.
//!
//! Every statement that acts on one owner's claim binds the authorization
//! key as `$1` and the owner as `$2` ([`owned`](self) in the macro), so the
//! owner check is never forgotten. A counter never moves backwards: `CASE
//! WHEN v > $n THEN v ELSE $n END` is SQLite's `MAX(v, $n)` and
//! PostgreSQL's `GREATEST(v, $n)` on these `NOT NULL` columns, in one text.

use pay402_core::time::UnixTime;
use pay402_core::x402::settlements::{
    AuthorizationKey, OwnerId, SettlementRecord, SettlementState, SettlementStoreError,
};

use crate::rows::Cols;

/// The tables in SQLite, created on open (PostgreSQL's are the migration
/// in `migrations/postgres/x402_facilitator/`). The x402_mock queue creates
/// them too: its settlement worker allocates the spender's nonces from
/// `pay402_facilitator_nonces` with [`ENSURE_COUNTER_SQL`] and
/// [`ALLOCATE_NONCE_SQL`].
pub(crate) const SQLITE_SCHEMA: &[&str] = &[
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

/// The columns [`record_of`] reads, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "auth_key, state, owner, lease_until, request, signer, tx_nonce, \
         transaction_hash, raw_transaction, reason, created_at, updated_at"
    };
}

/// A new claim: `$1` key, `$2` chain, `$3` owner, `$4` lease end, `$5`
/// request, `$6` now.
pub(super) const INSERT_SQL: &str = "INSERT INTO pay402_facilitator_settlements
        (auth_key, chain_id, state, owner, lease_until, request, created_at, updated_at)
     VALUES ($1, $2, 'claimed', $3, $4, $5, $6, $6)
     ON CONFLICT DO NOTHING";

/// The takeover (`$1` key, `$2` new owner, `$3` lease end, `$4` now): a
/// failed claim starts again from `claimed`; an expired one keeps its
/// transaction (the new owner follows it).
pub(super) const TAKE_OVER_SQL: &str = concat!(
    "UPDATE pay402_facilitator_settlements
     SET owner = $2, lease_until = $3, updated_at = $4,
         state = CASE WHEN state = 'failed' THEN 'claimed' ELSE state END,
         signer = CASE WHEN state = 'failed' THEN NULL ELSE signer END,
         tx_nonce = CASE WHEN state = 'failed' THEN NULL ELSE tx_nonce END,
         transaction_hash = CASE WHEN state = 'failed' THEN NULL ELSE transaction_hash END,
         raw_transaction = CASE WHEN state = 'failed' THEN NULL ELSE raw_transaction END,
         reason = CASE WHEN state = 'failed' THEN NULL ELSE reason END
     WHERE auth_key = $1
       AND (state = 'failed' OR (state IN ('claimed', 'sent') AND lease_until < $4))
     RETURNING ",
    columns!()
);

/// Extends the lease, never shortening it: `$3` lease end, `$4` now.
pub(super) const RENEW_SQL: &str = "UPDATE pay402_facilitator_settlements
     SET lease_until = CASE WHEN lease_until > $3 THEN lease_until ELSE $3 END,
         updated_at = $4
     WHERE auth_key = $1 AND owner = $2 AND state IN ('claimed', 'sent')";

/// The first write of `sign_next` (`$3` now): it takes the claim's row lock
/// (PostgreSQL), the write lock (SQLite), and proves the claim is ours.
pub(super) const LOCK_CLAIMED_SQL: &str = "UPDATE pay402_facilitator_settlements
     SET updated_at = $3
     WHERE auth_key = $1 AND owner = $2 AND state = 'claimed'";

/// Creates `($1 chain, $2 signer)`'s counter at `$3` unless it exists.
pub(crate) const ENSURE_COUNTER_SQL: &str =
    "INSERT INTO pay402_facilitator_nonces (chain_id, address, next_nonce)
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// Takes the next nonce, at least `$1`, of `($2 chain, $3 signer)`.
pub(crate) const ALLOCATE_NONCE_SQL: &str = "UPDATE pay402_facilitator_nonces
     SET next_nonce = CASE WHEN next_nonce > $1 THEN next_nonce ELSE $1 END + 1
     WHERE chain_id = $2 AND address = $3
     RETURNING next_nonce - 1 AS nonce";

/// Records the signed transaction: `$3` signer, `$4` nonce, `$5` hash, `$6`
/// raw, `$7` now.
pub(super) const RECORD_SENT_SQL: &str = "UPDATE pay402_facilitator_settlements
     SET state = 'sent', signer = $3, tx_nonce = $4, transaction_hash = $5,
         raw_transaction = $6, updated_at = $7
     WHERE auth_key = $1 AND owner = $2";

/// The first write of `unsend` (`$3` now), returning the nonce to give back.
pub(super) const LOCK_SENT_SQL: &str = "UPDATE pay402_facilitator_settlements
     SET updated_at = $3
     WHERE auth_key = $1 AND owner = $2 AND state = 'sent'
     RETURNING chain_id, signer, tx_nonce";

/// Gives nonce `$1` of `($2 chain, $3 signer)` back only when nobody took
/// one after it (`$4` is `$1 + 1`).
pub(super) const GIVE_BACK_NONCE_SQL: &str = "UPDATE pay402_facilitator_nonces
     SET next_nonce = $1
     WHERE chain_id = $2 AND address = $3 AND next_nonce = $4";

/// `sent → claimed`, clearing the transaction.
pub(super) const CLEAR_SENT_SQL: &str = "UPDATE pay402_facilitator_settlements
     SET state = 'claimed', signer = NULL, tx_nonce = NULL,
         transaction_hash = NULL, raw_transaction = NULL
     WHERE auth_key = $1 AND owner = $2";

/// Raises `($2 chain, $3 signer)`'s counter to at least `$1`.
pub(super) const RESYNC_SQL: &str = "UPDATE pay402_facilitator_nonces
     SET next_nonce = CASE WHEN next_nonce > $1 THEN next_nonce ELSE $1 END
     WHERE chain_id = $2 AND address = $3
     RETURNING next_nonce";

/// The next nonce of `($1 chain, $2 signer)`.
pub(crate) const NEXT_NONCE_SQL: &str = "SELECT next_nonce FROM pay402_facilitator_nonces
     WHERE chain_id = $1 AND address = $2";

/// The outcome: `$3` state, `$4` transaction (`NULL` keeps the stored one),
/// `$5` reason, `$6` now.
pub(super) const FINISH_SQL: &str = "UPDATE pay402_facilitator_settlements
     SET state = $3, transaction_hash = COALESCE($4, transaction_hash),
         reason = $5, updated_at = $6
     WHERE auth_key = $1 AND owner = $2 AND state IN ('claimed', 'sent')";

pub(super) const RELEASE_SQL: &str = "DELETE FROM pay402_facilitator_settlements
     WHERE auth_key = $1 AND owner = $2 AND state = 'claimed'";

pub(super) const GET_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM pay402_facilitator_settlements WHERE auth_key = $1"
);

pub(super) const UNFINISHED_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM pay402_facilitator_settlements
     WHERE state IN ('claimed', 'sent')
     ORDER BY created_at, auth_key LIMIT $1"
);

pub(super) fn unavailable(e: sqlx::Error) -> SettlementStoreError {
    SettlementStoreError::Unavailable(e.to_string())
}

pub(super) fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn time(v: i64) -> UnixTime {
    UnixTime(u64::try_from(v).unwrap_or(0))
}

pub(super) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn uint(v: i64) -> Result<u64, SettlementStoreError> {
    u64::try_from(v).map_err(|_| SettlementStoreError::Corrupt(format!("negative nonce {v}")))
}

/// Decodes a row of [`columns!`].
pub(super) fn record_of(row: &impl Cols) -> Result<SettlementRecord, SettlementStoreError> {
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

/// Implements [`SettlementStore`](pay402_core::x402::settlements::SettlementStore)
/// for `$store` (a type with a `pool` field) on database `$db`, from the
/// statements above.
macro_rules! sql_settlement_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// `sql` with `$1` the authorization key and `$2` the owner.
            fn owned<'q>(
                sql: &'q str,
                key: &'q AuthorizationKey,
                owner: &'q OwnerId,
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
                sqlx::query(sql).bind(key.as_str()).bind(&owner.0[..])
            }

            /// Runs `q` on the pool: true when it changed exactly one row.
            async fn changed_one<'q>(
                &self,
                q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            ) -> Result<bool, SettlementStoreError> {
                let res = q.execute(&self.pool).await.map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            /// Creates `(chain_id, signer)`'s counter at `floor` unless it
            /// exists.
            async fn ensure_counter(
                tx: &mut sqlx::Transaction<'_, $db>,
                chain_id: u64,
                signer: &str,
                floor: u64,
            ) -> Result<(), SettlementStoreError> {
                sqlx::query(sql::ENSURE_COUNTER_SQL)
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
                    let inserted = sqlx::query(sql::INSERT_SQL)
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
                    let rows = Self::owned(sql::TAKE_OVER_SQL, key, owner)
                        .bind(secs(lease_until))
                        .bind(secs(now))
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
                self.changed_one(
                    Self::owned(sql::RENEW_SQL, key, owner)
                        .bind(secs(lease_until))
                        .bind(secs(now)),
                )
                .await
            }

            async fn sign_next(
                &self,
                next: SignNext<'_>,
            ) -> Result<Option<(u64, Signed)>, SettlementStoreError> {
                let signer = next.signer.to_ascii_lowercase();
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                let ours = Self::owned(sql::LOCK_CLAIMED_SQL, next.key, next.owner)
                    .bind(secs(next.now))
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if ours.rows_affected() != 1 {
                    return Ok(None);
                }
                Self::ensure_counter(&mut tx, next.chain_id, &signer, next.floor).await?;
                let row = sqlx::query(sql::ALLOCATE_NONCE_SQL)
                    .bind(int(next.floor))
                    .bind(int(next.chain_id))
                    .bind(&signer)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let nonce = uint(row.int("nonce").map_err(unavailable)?)?;
                let signed = (next.sign)(nonce).map_err(SettlementStoreError::Unavailable)?;
                Self::owned(sql::RECORD_SENT_SQL, next.key, next.owner)
                    .bind(&signer)
                    .bind(int(nonce))
                    .bind(&signed.transaction)
                    .bind(&signed.raw)
                    .bind(secs(next.now))
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
                let rows = Self::owned(sql::LOCK_SENT_SQL, key, owner)
                    .bind(secs(now))
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
                    sqlx::query(sql::GIVE_BACK_NONCE_SQL)
                        .bind(nonce)
                        .bind(chain_id)
                        .bind(&signer)
                        .bind(nonce.saturating_add(1))
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                Self::owned(sql::CLEAR_SENT_SQL, key, owner)
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
                let row = sqlx::query(sql::RESYNC_SQL)
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
                let row = sqlx::query(sql::NEXT_NONCE_SQL)
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
                self.changed_one(
                    Self::owned(sql::FINISH_SQL, key, owner)
                        .bind(outcome.state().as_str())
                        .bind(transaction)
                        .bind(reason)
                        .bind(secs(now)),
                )
                .await
            }

            async fn release(
                &self,
                key: &AuthorizationKey,
                owner: &OwnerId,
            ) -> Result<bool, SettlementStoreError> {
                self.changed_one(Self::owned(sql::RELEASE_SQL, key, owner))
                    .await
            }

            async fn get(
                &self,
                key: &AuthorizationKey,
            ) -> Result<Option<SettlementRecord>, SettlementStoreError> {
                let row = sqlx::query(sql::GET_SQL)
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
                let rows = sqlx::query(sql::UNFINISHED_SQL)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(record_of).collect()
            }
        }
    };
}
pub(super) use sql_settlement_store;
