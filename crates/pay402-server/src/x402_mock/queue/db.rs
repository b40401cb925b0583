//! What the SQLite and PostgreSQL settlement queues share: every statement
//! (with `$n` parameters, which both databases read), row decoding and
//! value conversions. [`sql_settlement_store!`] implements both stores
//! from this one text; they differ in their pool type and in how
//! `claim_due` locks the rows it leases (`FOR UPDATE SKIP LOCKED` in
//! PostgreSQL; SQLite serialises writers anyway).

use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock::MockPermit;
use pay402_core::x402::mock_chain::SignedTx;

use super::{NewSettlement, QueueError, Settlement};
use crate::rows::Cols;

pub(super) fn unavailable(e: sqlx::Error) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> impl Fn(sqlx::Error) -> QueueError + '_ {
    move |e| QueueError::Corrupt(format!("{what}: {e}"))
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Adds a job unless a live one holds its nonce (the partial unique index
/// `pay402_x402_mock_live_nonce`): no row comes back then.
pub(super) const ENQUEUE_SQL: &str = "INSERT INTO pay402_x402_mock_settlements
        (chain_id, token, owner, nonce, digest, permit_json, resource, pay_to, amount,
         token_exp, created_at, state, next_attempt_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', $11, $11)
     ON CONFLICT DO NOTHING
     RETURNING id";

/// The digest of the live job holding a nonce (to explain a duplicate).
pub(super) const LIVE_DIGEST_SQL: &str = "SELECT digest FROM pay402_x402_mock_settlements
     WHERE chain_id = $1 AND token = $2 AND owner = $3 AND nonce = $4 AND state <> 'failed'";

/// The live job holding a nonce.
pub(super) const LIVE_SQL: &str = "SELECT * FROM pay402_x402_mock_settlements
     WHERE chain_id = $1 AND token = $2 AND owner = $3 AND nonce = $4 AND state <> 'failed'";

/// Leases due jobs until `$1` at `$2`, at most `$3`; `{lock}` is the
/// row-locking clause of the inner select. The outer `WHERE` repeats the
/// conditions, so a row another claimer leased in between (PostgreSQL
/// re-checks it under the row lock) is not leased twice.
pub(super) fn claim_sql(lock: &str) -> String {
    format!(
        "UPDATE pay402_x402_mock_settlements SET lease_until = $1
         WHERE id IN (
            SELECT id FROM pay402_x402_mock_settlements
            WHERE state NOT IN ('settled', 'failed') AND next_attempt_at <= $2
              AND lease_until <= $2
            ORDER BY next_attempt_at, id LIMIT $3 {lock})
           AND state NOT IN ('settled', 'failed') AND next_attempt_at <= $2
           AND lease_until <= $2
         RETURNING *"
    )
}

/// Saves a job while it still carries the lease `$17` its writer holds.
pub(super) const SAVE_SQL: &str = "UPDATE pay402_x402_mock_settlements SET
        state = $1, permit_tx_hash = $2, permit_tx_raw = $3, permit_tx_sender = $4,
        permit_tx_nonce = $5, transfer_tx_hash = $6, transfer_tx_raw = $7,
        transfer_tx_sender = $8, transfer_tx_nonce = $9, attempts = $10,
        next_attempt_at = $11, lease_until = $12, last_error = $13, failure = $14,
        updated_at = $15
     WHERE id = $16 AND lease_until = $17";

/// The first write of `sign_and_journal` (`$1` now): proves the writer
/// still holds lease `$3` on job `$2`, and takes the row's lock (PostgreSQL)
/// or the database's write lock (SQLite) until the transaction ends.
pub(super) const LOCK_LEASED_SQL: &str = "UPDATE pay402_x402_mock_settlements
     SET updated_at = $1 WHERE id = $2 AND lease_until = $3";

pub(super) const REVOKE_SQL: &str = "INSERT INTO pay402_x402_mock_revoked (jti, exp, reason)
     VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING";

/// A journaled transaction as `(hash, raw, sender, nonce)` columns.
pub(super) type TxCols = Option<(Vec<u8>, Vec<u8>, String, i64)>;

pub(super) fn tx_cols(tx: &Option<SignedTx>) -> TxCols {
    tx.as_ref().map(|t| {
        (
            t.hash.0.to_vec(),
            t.raw.clone(),
            t.sender.to_string(),
            to_i64(t.sender_nonce),
        )
    })
}

fn signed_tx(row: &impl Cols, prefix: &str) -> Result<Option<SignedTx>, QueueError> {
    let Some(hash) = row
        .bytes_opt(&format!("{prefix}_hash"))
        .map_err(corrupt("tx hash"))?
    else {
        return Ok(None);
    };
    let hash: [u8; 32] = hash
        .as_slice()
        .try_into()
        .map_err(|_| QueueError::Corrupt("tx hash is not 32 bytes".into()))?;
    let raw = row
        .bytes_opt(&format!("{prefix}_raw"))
        .map_err(corrupt("raw tx"))?;
    let sender = row
        .text_opt(&format!("{prefix}_sender"))
        .map_err(corrupt("tx sender"))?;
    let nonce = row
        .int_opt(&format!("{prefix}_nonce"))
        .map_err(corrupt("tx nonce"))?;
    match (raw, sender, nonce) {
        (Some(raw), Some(sender), Some(nonce)) => Ok(Some(SignedTx {
            hash: Bytes32(hash),
            raw,
            sender: sender
                .parse()
                .map_err(|_| QueueError::Corrupt("tx sender".into()))?,
            sender_nonce: to_u64(nonce),
        })),
        _ => Err(QueueError::Corrupt(format!("incomplete {prefix} journal"))),
    }
}

/// A whole settlement row (`SELECT *` / `RETURNING *`).
pub(super) fn from_row(row: &impl Cols) -> Result<Settlement, QueueError> {
    let int = |c: &str| -> Result<i64, QueueError> { row.int(c).map_err(corrupt(c)) };
    let text = |c: &str| -> Result<String, QueueError> { row.text(c).map_err(corrupt(c)) };
    let permit: MockPermit = serde_json::from_str(&text("permit_json")?)
        .map_err(|e| QueueError::Corrupt(format!("permit_json: {e}")))?;
    let digest = row.bytes("digest").map_err(corrupt("digest"))?;
    let digest: [u8; 32] = digest
        .as_slice()
        .try_into()
        .map_err(|_| QueueError::Corrupt("digest is not 32 bytes".into()))?;
    let pay_to: EvmAddress = text("pay_to")?
        .parse()
        .map_err(|_| QueueError::Corrupt("pay_to".into()))?;
    let amount =
        TokenAmount::parse(&text("amount")?).map_err(|_| QueueError::Corrupt("amount".into()))?;
    Ok(Settlement {
        id: int("id")?,
        job: NewSettlement {
            permit,
            digest: Bytes32(digest),
            resource: text("resource")?,
            pay_to,
            amount,
            token_exp: to_u64(int("token_exp")?),
            created_at: to_u64(int("created_at")?),
        },
        state: text("state")?.parse()?,
        permit_tx: signed_tx(row, "permit_tx")?,
        transfer_tx: signed_tx(row, "transfer_tx")?,
        attempts: u32::try_from(int("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: to_u64(int("next_attempt_at")?),
        lease_until: to_u64(int("lease_until")?),
        last_error: row.text_opt("last_error").map_err(corrupt("last_error"))?,
        failure: row.text_opt("failure").map_err(corrupt("failure"))?,
        updated_at: to_u64(int("updated_at")?),
    })
}

/// Implements [`SettlementStore`](super::SettlementStore) for a store type
/// with a `pool` field, from the statements above; `$lock` is the
/// row-locking clause of `claim_due`.
macro_rules! sql_settlement_store {
    ($store:ty, $db:ty, $lock:literal) => {
        impl $store {
            /// [`SAVE_SQL`] for `job`, while it carries `held_lease`.
            fn save_query(
                job: &Settlement,
                held_lease: u64,
            ) -> sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments<'static>> {
                let p = tx_cols(&job.permit_tx);
                let t = tx_cols(&job.transfer_tx);
                sqlx::query(SAVE_SQL)
                    .bind(job.state.as_str())
                    .bind(p.as_ref().map(|c| c.0.clone()))
                    .bind(p.as_ref().map(|c| c.1.clone()))
                    .bind(p.as_ref().map(|c| c.2.clone()))
                    .bind(p.as_ref().map(|c| c.3))
                    .bind(t.as_ref().map(|c| c.0.clone()))
                    .bind(t.as_ref().map(|c| c.1.clone()))
                    .bind(t.as_ref().map(|c| c.2.clone()))
                    .bind(t.as_ref().map(|c| c.3))
                    .bind(i64::from(job.attempts))
                    .bind(to_i64(job.next_attempt_at))
                    .bind(to_i64(job.lease_until))
                    .bind(job.last_error.clone())
                    .bind(job.failure.clone())
                    .bind(to_i64(job.updated_at))
                    .bind(job.id)
                    .bind(to_i64(held_lease))
            }

            /// What a conditional write of job `id` that changed nothing
            /// means: a lost lease, or no such job.
            async fn not_written(&self, id: i64) -> QueueError {
                match self.get(id).await {
                    Ok(Some(_)) => QueueError::LeaseLost { id },
                    Ok(None) => QueueError::Corrupt(format!("no settlement {id}")),
                    Err(e) => e,
                }
            }
        }

        #[async_trait]
        impl SettlementStore for $store {
            async fn enqueue(&self, job: NewSettlement) -> Result<i64, QueueError> {
                let p = &job.permit;
                let permit_json = serde_json::to_string(p)
                    .map_err(|e| QueueError::Corrupt(format!("permit does not serialize: {e}")))?;
                // All rows: SQLite commits an `INSERT … RETURNING` only once
                // the statement has run to its end.
                let id: Vec<i64> = sqlx::query_scalar(ENQUEUE_SQL)
                    .bind(to_i64(p.chain_id))
                    .bind(p.token.to_string())
                    .bind(p.owner.to_string())
                    .bind(p.nonce.to_string())
                    .bind(&job.digest.0[..])
                    .bind(permit_json)
                    .bind(&job.resource)
                    .bind(job.pay_to.to_string())
                    .bind(job.amount.to_string())
                    .bind(to_i64(job.token_exp))
                    .bind(to_i64(job.created_at))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                if let Some(&id) = id.first() {
                    return Ok(id);
                }
                let live: Option<Vec<u8>> = sqlx::query_scalar(LIVE_DIGEST_SQL)
                    .bind(to_i64(p.chain_id))
                    .bind(p.token.to_string())
                    .bind(p.owner.to_string())
                    .bind(p.nonce.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Err(QueueError::Duplicate {
                    same_permit: live.is_some_and(|d| d == job.digest.0),
                })
            }

            async fn claim_due(
                &self,
                now: u64,
                lease_until: u64,
                limit: u32,
            ) -> Result<Vec<Settlement>, QueueError> {
                let rows = sqlx::query(&claim_sql($lock))
                    .bind(to_i64(lease_until))
                    .bind(to_i64(now))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let mut jobs = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
                jobs.sort_by_key(|j| (j.next_attempt_at, j.id));
                Ok(jobs)
            }

            async fn save(&self, job: &Settlement, held_lease: u64) -> Result<(), QueueError> {
                let res = Self::save_query(job, held_lease)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                if res.rows_affected() == 0 {
                    return Err(self.not_written(job.id).await);
                }
                Ok(())
            }

            async fn sign_and_journal(
                &self,
                next: JournalNext<'_>,
            ) -> Result<SignedTx, QueueError> {
                use crate::x402::settlements::sql::{ALLOCATE_NONCE_SQL, ENSURE_COUNTER_SQL};
                let id = next.job.id;
                let held = next.job.lease_until;
                let chain_id = to_i64(next.job.job.permit.chain_id);
                let sender = next.sender.to_string().to_ascii_lowercase();
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                let ours = sqlx::query(LOCK_LEASED_SQL)
                    .bind(to_i64(next.now))
                    .bind(id)
                    .bind(to_i64(held))
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if ours.rows_affected() != 1 {
                    drop(tx);
                    return Err(self.not_written(id).await);
                }
                sqlx::query(ENSURE_COUNTER_SQL)
                    .bind(chain_id)
                    .bind(&sender)
                    .bind(to_i64(next.floor))
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let nonce: i64 = sqlx::query_scalar(ALLOCATE_NONCE_SQL)
                    .bind(to_i64(next.floor))
                    .bind(chain_id)
                    .bind(&sender)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let nonce = u64::try_from(nonce)
                    .map_err(|_| QueueError::Corrupt(format!("negative nonce {nonce}")))?;
                let signed = super::sign_with(&next, nonce)?;
                let saved = next.slot.journal(next.job, signed.clone(), next.now);
                let res = Self::save_query(&saved, held)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if res.rows_affected() != 1 {
                    return Err(QueueError::Corrupt(format!(
                        "settlement {id} changed under its row lock"
                    )));
                }
                tx.commit().await.map_err(unavailable)?;
                Ok(signed)
            }

            async fn next_sender_nonce(
                &self,
                chain_id: u64,
                sender: EvmAddress,
            ) -> Result<Option<u64>, QueueError> {
                let next: Option<i64> =
                    sqlx::query_scalar(crate::x402::settlements::sql::NEXT_NONCE_SQL)
                        .bind(to_i64(chain_id))
                        .bind(sender.to_string().to_ascii_lowercase())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(unavailable)?;
                next.map(|n| {
                    u64::try_from(n).map_err(|_| QueueError::Corrupt(format!("negative nonce {n}")))
                })
                .transpose()
            }

            async fn get(&self, id: i64) -> Result<Option<Settlement>, QueueError> {
                let row = sqlx::query("SELECT * FROM pay402_x402_mock_settlements WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(from_row).transpose()
            }

            async fn live(
                &self,
                chain_id: u64,
                token: EvmAddress,
                owner: EvmAddress,
                nonce: U256,
            ) -> Result<Option<Settlement>, QueueError> {
                let row = sqlx::query(LIVE_SQL)
                    .bind(to_i64(chain_id))
                    .bind(token.to_string())
                    .bind(owner.to_string())
                    .bind(nonce.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(from_row).transpose()
            }

            async fn revoke(
                &self,
                jti: &Bytes32,
                exp: u64,
                reason: &str,
            ) -> Result<(), QueueError> {
                sqlx::query(REVOKE_SQL)
                    .bind(&jti.0[..])
                    .bind(to_i64(exp))
                    .bind(reason)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn is_revoked(&self, jti: &Bytes32) -> Result<bool, QueueError> {
                let row: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT jti FROM pay402_x402_mock_revoked WHERE jti = $1")
                        .bind(&jti.0[..])
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(unavailable)?;
                Ok(row.is_some())
            }
        }
    };
}
pub(super) use sql_settlement_store;
