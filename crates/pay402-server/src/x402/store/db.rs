//! What the SQLite and PostgreSQL payment stores share: every statement
//! (written once, with `$n` parameters, which both databases read), the
//! reservation rounds over them, row decoding and value conversions.
//! [`sql_payment_store!`] implements both stores from this one text; they
//! differ only in their pool type. A lease never moves backwards: `CASE
//! WHEN lease_until > $1 THEN lease_until ELSE $1 END` is SQLite's
//! `MAX(lease_until, $1)` and PostgreSQL's `GREATEST(lease_until, $1)` on
//! this `NOT NULL` column, in one text.

use async_trait::async_trait;
use bytes::Bytes;
use pay402_core::time::UnixTime;

use super::{
    Acquired, CachedResponse, Claim, NonceKey, PaymentRecord, PaymentState, Reservation, Resumed,
    StoreError, Transition, can_take_over, explain,
};
use crate::rows::Cols;

/// The columns [`record_of`] reads.
pub(super) const COLUMNS: &str = "nonce_key, state, fingerprint, payment_id, payer, network, \
     amount, transaction_hash, payment_response, response_status, response_content_type, \
     response_body, request, lease_until, created_at, updated_at";

/// How many times `reserve` re-reads when the record changed between its
/// statements (another server moved it on in between).
const RESERVE_ROUNDS: usize = 4;

pub(super) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(super) fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn time(v: i64) -> UnixTime {
    UnixTime(u64::try_from(v).unwrap_or(0))
}

pub(super) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The atomic statements a database store reserves with.
#[async_trait]
pub(super) trait ReserveSteps: Sync {
    /// `INSERT … ON CONFLICT DO NOTHING`: true when this claim created the
    /// record.
    async fn insert(&self, claim: &Claim, now: UnixTime) -> Result<bool, StoreError>;
    /// The conditional takeover `UPDATE … RETURNING`; `Ok(None)` when the
    /// record may not be taken, `Some(Err(IdConflict))` when the claim's
    /// `payment-identifier` belongs to another record.
    async fn take_over(
        &self,
        claim: &Claim,
        now: UnixTime,
    ) -> Result<Option<Result<Resumed, Reservation>>, StoreError>;
    /// The record under `key`.
    async fn record(&self, key: &NonceKey) -> Result<Option<PaymentRecord>, StoreError>;
    /// The record holding `payment_id`.
    async fn by_payment_id(&self, id: &str) -> Result<Option<PaymentRecord>, StoreError>;
}

/// Reserves with an insert, else a takeover; when neither applies, explains
/// the refusal from what is stored (a read that decides nothing: ownership
/// is only ever taken by the two atomic statements).
pub(super) async fn reserve_rounds(
    steps: &impl ReserveSteps,
    claim: &Claim,
    now: UnixTime,
) -> Result<Reservation, StoreError> {
    for _ in 0..RESERVE_ROUNDS {
        if steps.insert(claim, now).await? {
            return Ok(Reservation::Acquired(Acquired {
                attempt: claim.attempt,
                resumed: None,
            }));
        }
        match steps.take_over(claim, now).await? {
            Some(Ok(resumed)) => {
                return Ok(Reservation::Acquired(Acquired {
                    attempt: claim.attempt,
                    resumed: Some(resumed),
                }));
            }
            Some(Err(refused)) => return Ok(refused),
            None => {}
        }
        if let Some(record) = steps.record(&claim.key).await? {
            if record.fingerprint != claim.fingerprint
                || !can_take_over(record.state, record.lease_until, now)
            {
                return Ok(explain(&record, claim));
            }
            // It became takeable between the statements: go round again.
            continue;
        }
        if let Some(id) = &claim.payment_id
            && steps.by_payment_id(id).await?.is_some()
        {
            return Ok(Reservation::IdConflict);
        }
        // The conflicting row vanished in between: go round again.
    }
    Err(StoreError::Unavailable(
        "payment record kept changing while reserving".into(),
    ))
}

fn response_of(row: &impl Cols) -> Result<Option<CachedResponse>, StoreError> {
    let Some(status) = row.int_opt("response_status").map_err(unavailable)? else {
        return Ok(None);
    };
    let status = u16::try_from(status)
        .map_err(|_| StoreError::Corrupt(format!("response status {status}")))?;
    let body = row.bytes_opt("response_body").map_err(unavailable)?;
    Ok(Some(CachedResponse {
        status,
        content_type: row.text_opt("response_content_type").map_err(unavailable)?,
        body: Bytes::from(body.unwrap_or_default()),
    }))
}

fn state_of(s: &str) -> Result<PaymentState, StoreError> {
    PaymentState::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown payment state {s:?}")))
}

/// What a takeover's `RETURNING prev_state, transaction_hash, response_*`
/// tells.
pub(super) fn resumed_of(row: &impl Cols) -> Result<Resumed, StoreError> {
    Ok(Resumed {
        from: state_of(&row.text("prev_state").map_err(unavailable)?)?,
        transaction: row.text_opt("transaction_hash").map_err(unavailable)?,
        response: response_of(row)?,
    })
}

/// A row of [`COLUMNS`].
pub(super) fn record_of(row: &impl Cols) -> Result<PaymentRecord, StoreError> {
    let fingerprint = row.bytes("fingerprint").map_err(unavailable)?;
    Ok(PaymentRecord {
        key: NonceKey::from_stored(row.text("nonce_key").map_err(unavailable)?),
        state: state_of(&row.text("state").map_err(unavailable)?)?,
        fingerprint: fingerprint
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("fingerprint is not 32 bytes".into()))?,
        payment_id: row.text_opt("payment_id").map_err(unavailable)?,
        payer: row.text("payer").map_err(unavailable)?,
        network: row.text("network").map_err(unavailable)?,
        amount: row.text("amount").map_err(unavailable)?,
        transaction: row.text_opt("transaction_hash").map_err(unavailable)?,
        payment_response: row.text_opt("payment_response").map_err(unavailable)?,
        response: response_of(row)?,
        request: row.text("request").map_err(unavailable)?,
        lease_until: time(row.int("lease_until").map_err(unavailable)?),
        created_at: time(row.int("created_at").map_err(unavailable)?),
        updated_at: time(row.int("updated_at").map_err(unavailable)?),
    })
}

/// A kept response as `(status, content type, body)` columns.
pub(super) fn response_parts(
    r: Option<&CachedResponse>,
) -> (Option<i64>, Option<&str>, Option<&[u8]>) {
    match r {
        Some(r) => (
            Some(i64::from(r.status)),
            r.content_type.as_deref(),
            Some(&r.body[..]),
        ),
        None => (None, None, None),
    }
}

/// The `SET` clause of `change` over `$1..$k`, and `k`: the values
/// [`sql_payment_store!`] binds first, in this order.
fn set_of(change: &Transition<'_>) -> (&'static str, usize) {
    match change {
        // Nothing moved: the kept response goes.
        Transition::Release => (
            "state = 'released', response_status = NULL, response_content_type = NULL, \
             response_body = NULL",
            0,
        ),
        // `$1` transaction, `$2` status, `$3` content type, `$4` body (each
        // kept when NULL).
        Transition::Pending { .. } => (
            "state = 'pending', transaction_hash = COALESCE($1, transaction_hash), \
             response_status = COALESCE($2, response_status), \
             response_content_type = CASE WHEN $2 IS NULL THEN response_content_type ELSE $3 END, \
             response_body = COALESCE($4, response_body)",
            4,
        ),
        // `$1` transaction, `$2` payment response, `$3..$5` the kept response.
        Transition::Settled { .. } => (
            "state = 'settled', transaction_hash = $1, payment_response = $2, \
             response_status = $3, response_content_type = $4, response_body = $5",
            5,
        ),
        // `$1..$3` the kept response.
        Transition::AttachResponse(_) => (
            "response_status = $1, response_content_type = $2, response_body = $3",
            3,
        ),
        // `$1` the new lease end, never shortening the lease.
        Transition::Renew { .. } => (
            "lease_until = CASE WHEN lease_until > $1 THEN lease_until ELSE $1 END",
            1,
        ),
    }
}

/// `UPDATE … SET <set>, updated_at = $k+1 WHERE nonce_key = $k+2 AND
/// attempt = $k+3 AND state = $k+4`, where `set` (see [`set_of`]) uses
/// `$1..$k`: every transition is conditional on the attempt owning the
/// record in [`Transition::from_state`].
pub(super) fn transition_sql(change: &Transition<'_>) -> String {
    let (set, k) = set_of(change);
    format!(
        "UPDATE pay402_x402_payments SET {set}, updated_at = ${}
         WHERE nonce_key = ${} AND attempt = ${} AND state = ${}",
        k + 1,
        k + 2,
        k + 3,
        k + 4
    )
}

pub(super) const INSERT_SQL: &str = "INSERT INTO pay402_x402_payments
        (nonce_key, state, attempt, fingerprint, payment_id, payer, network, amount,
         request, lease_until, created_at, updated_at)
     VALUES ($1, 'reserved', $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
     ON CONFLICT DO NOTHING";

/// The takeover: only a record of the same payment that is released,
/// pending, or reserved with an expired lease.
pub(super) const TAKE_OVER_SQL: &str = "UPDATE pay402_x402_payments
     SET prev_state = state, state = 'reserved', attempt = $1, lease_until = $2,
         updated_at = $3, payment_id = COALESCE(payment_id, $4)
     WHERE nonce_key = $5 AND fingerprint = $6
       AND (state IN ('released', 'pending') OR (state = 'reserved' AND lease_until < $3))
     RETURNING prev_state, transaction_hash, response_status, response_content_type,
               response_body";

pub(super) const PRUNE_SQL: &str = "DELETE FROM pay402_x402_payments WHERE nonce_key IN (
        SELECT nonce_key FROM pay402_x402_payments
        WHERE state = 'released' AND updated_at < $1
        ORDER BY updated_at LIMIT $2)";

/// Implements [`ReserveSteps`] and [`PaymentStore`](super::PaymentStore)
/// for a store type with a `pool` field, from the statements above.
macro_rules! sql_payment_store {
    ($store:ty) => {
        #[async_trait]
        impl ReserveSteps for $store {
            async fn insert(&self, claim: &Claim, now: UnixTime) -> Result<bool, StoreError> {
                let res = sqlx::query(INSERT_SQL)
                    .bind(claim.key.as_str())
                    .bind(&claim.attempt.0[..])
                    .bind(&claim.fingerprint[..])
                    .bind(claim.payment_id.as_deref())
                    .bind(&claim.payer)
                    .bind(&claim.network)
                    .bind(&claim.amount)
                    .bind(&claim.request)
                    .bind(secs(claim.lease_until))
                    .bind(secs(now))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn take_over(
                &self,
                claim: &Claim,
                now: UnixTime,
            ) -> Result<Option<Result<Resumed, Reservation>>, StoreError> {
                let row = sqlx::query(TAKE_OVER_SQL)
                    .bind(&claim.attempt.0[..])
                    .bind(secs(claim.lease_until))
                    .bind(secs(now))
                    .bind(claim.payment_id.as_deref())
                    .bind(claim.key.as_str())
                    .bind(&claim.fingerprint[..])
                    // All rows: SQLite commits an `UPDATE … RETURNING` only
                    // once the statement has run to its end.
                    .fetch_all(&self.pool)
                    .await;
                match row.map(|rows| rows.into_iter().next()) {
                    Ok(None) => Ok(None),
                    Ok(Some(row)) => Ok(Some(Ok(resumed_of(&row)?))),
                    Err(e) if is_unique_violation(&e) => Ok(Some(Err(Reservation::IdConflict))),
                    Err(e) => Err(unavailable(e)),
                }
            }

            async fn record(&self, key: &NonceKey) -> Result<Option<PaymentRecord>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM pay402_x402_payments WHERE nonce_key = $1"
                ))
                .bind(key.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(record_of).transpose()
            }

            async fn by_payment_id(&self, id: &str) -> Result<Option<PaymentRecord>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM pay402_x402_payments WHERE payment_id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(record_of).transpose()
            }
        }

        #[async_trait]
        impl PaymentStore for $store {
            async fn reserve(
                &self,
                claim: &Claim,
                now: UnixTime,
            ) -> Result<Reservation, StoreError> {
                reserve_rounds(self, claim, now).await
            }

            async fn transition(
                &self,
                key: &NonceKey,
                attempt: &AttemptId,
                change: Transition<'_>,
                now: UnixTime,
            ) -> Result<bool, StoreError> {
                let sql = transition_sql(&change);
                let q = sqlx::query(&sql);
                // The `SET` values, in the order of `set_of`.
                let q = match change {
                    Transition::Release => q,
                    Transition::Pending {
                        transaction,
                        response,
                    } => {
                        let (status, content_type, body) = response_parts(response);
                        q.bind(transaction)
                            .bind(status)
                            .bind(content_type)
                            .bind(body)
                    }
                    Transition::Settled {
                        transaction,
                        payment_response,
                        response,
                    } => {
                        let (status, content_type, body) = response_parts(response);
                        q.bind(transaction)
                            .bind(payment_response)
                            .bind(status)
                            .bind(content_type)
                            .bind(body)
                    }
                    Transition::AttachResponse(response) => {
                        let (status, content_type, body) = response_parts(Some(response));
                        q.bind(status).bind(content_type).bind(body)
                    }
                    Transition::Renew { lease_until } => q.bind(secs(lease_until)),
                };
                let res = q
                    .bind(secs(now))
                    .bind(key.as_str())
                    .bind(&attempt.0[..])
                    .bind(change.from_state().as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn prune_released(
                &self,
                older_than: UnixTime,
                max: usize,
            ) -> Result<usize, StoreError> {
                let res = sqlx::query(PRUNE_SQL)
                    .bind(secs(older_than))
                    .bind(limit(max))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(usize::try_from(res.rows_affected()).unwrap_or(usize::MAX))
            }

            async fn get(&self, key: &NonceKey) -> Result<Option<PaymentRecord>, StoreError> {
                self.record(key).await
            }

            async fn list(
                &self,
                state: PaymentState,
                max: usize,
            ) -> Result<Vec<PaymentRecord>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM pay402_x402_payments WHERE state = $1
                     ORDER BY created_at, nonce_key LIMIT $2"
                ))
                .bind(state.as_str())
                .bind(limit(max))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                rows.iter().map(record_of).collect()
            }
        }
    };
}
pub(super) use sql_payment_store;
