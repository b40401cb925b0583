//! SQLite payment store (sqlx): replay protection that holds across
//! processes sharing one database file, and survives restarts.

use async_trait::async_trait;
use bytes::Bytes;
use pay402_core::time::UnixTime;
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use super::{
    Acquired, AttemptId, CachedResponse, Claim, NonceKey, PaymentRecord, PaymentState,
    PaymentStore, Reservation, Resumed, StoreError, can_take_over, explain,
};

/// Payment records in a SQLite database.
///
/// The table `pay402_x402_payments` (created on open) has the nonce key as
/// its `PRIMARY KEY` and the `payment-identifier` as a `UNIQUE` column:
/// a reservation is one `INSERT ... ON CONFLICT DO NOTHING`, a takeover one
/// conditional `UPDATE`, so two servers sharing the file can never both own
/// a payment.
///
/// ```
/// use pay402_server::x402::store::*;
/// use pay402_core::time::UnixTime;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqlitePaymentStore::in_memory().await.unwrap();
/// let key = NonceKey::new("eip155:31337", "0xa", "0xb", "0x01");
/// let claim = Claim::new(key.clone(), [1; 32], "{}", UnixTime(700));
/// assert!(matches!(store.reserve(&claim, UnixTime(100)).await.unwrap(), Reservation::Acquired(_)));
/// assert_eq!(store.reserve(&claim.retry(), UnixTime(100)).await.unwrap(), Reservation::InProgress);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqlitePaymentStore {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn time(v: i64) -> UnixTime {
    UnixTime(u64::try_from(v).unwrap_or(0))
}

const COLUMNS: &str = "nonce_key, state, fingerprint, payment_id, payer, network, amount, \
     transaction_hash, payment_response, response_status, response_content_type, response_body, \
     request, lease_until, created_at, updated_at";

/// How many times `reserve` re-reads when the record changed between its
/// statements (another server moved it on in between).
const RESERVE_ROUNDS: usize = 4;

impl SqlitePaymentStore {
    /// Opens (creating if needed) the database file at `path`, in WAL mode
    /// with a 10 s busy timeout so concurrent writers wait for each other.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::x402::store::SqlitePaymentStore::open("payments.sqlite").await.unwrap();
    /// # }
    /// ```
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<SqlitePaymentStore, StoreError> {
        let pool = crate::sqlite_pool::file(path).await.map_err(unavailable)?;
        SqlitePaymentStore::from_pool(pool).await
    }

    /// A private in-memory database (for tests and demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let _store = pay402_server::x402::store::SqlitePaymentStore::in_memory().await.unwrap();
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqlitePaymentStore, StoreError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqlitePaymentStore::from_pool(pool).await
    }

    /// Uses an existing pool (for example the one of the L402
    /// [`SqliteStore`](crate::store::SqliteStore)), creating the table if
    /// needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::x402::store::SqlitePaymentStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqlitePaymentStore, StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS pay402_x402_payments (
                nonce_key TEXT PRIMARY KEY NOT NULL,
                state TEXT NOT NULL,
                prev_state TEXT,
                attempt BLOB NOT NULL,
                fingerprint BLOB NOT NULL,
                payment_id TEXT UNIQUE,
                payer TEXT NOT NULL,
                network TEXT NOT NULL,
                amount TEXT NOT NULL,
                transaction_hash TEXT,
                payment_response TEXT,
                response_status INTEGER,
                response_content_type TEXT,
                response_body BLOB,
                request TEXT NOT NULL,
                lease_until INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )",
        )
        .execute(&pool)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS pay402_x402_payments_state
             ON pay402_x402_payments (state, created_at)",
        )
        .execute(&pool)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS pay402_x402_payments_state_updated
             ON pay402_x402_payments (state, updated_at)",
        )
        .execute(&pool)
        .await
        .map_err(unavailable)?;
        Ok(SqlitePaymentStore { pool })
    }

    /// The pool (to share it with other stores).
    ///
    /// ```no_run
    /// # async fn f(store: pay402_server::x402::store::SqlitePaymentStore) {
    /// let pool = store.pool().clone();
    /// # }
    /// ```
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn insert(&self, claim: &Claim, now: UnixTime) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT INTO pay402_x402_payments
                (nonce_key, state, attempt, fingerprint, payment_id, payer, network, amount,
                 request, lease_until, created_at, updated_at)
             VALUES (?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
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
        .bind(secs(now))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(res.rows_affected() == 1)
    }

    /// The conditional takeover; `Ok(None)` when the record may not be taken.
    async fn take_over(
        &self,
        claim: &Claim,
        now: UnixTime,
    ) -> Result<Option<Result<Resumed, Reservation>>, StoreError> {
        let row = sqlx::query(
            "UPDATE pay402_x402_payments
             SET prev_state = state, state = 'reserved', attempt = ?, lease_until = ?,
                 updated_at = ?, payment_id = COALESCE(payment_id, ?)
             WHERE nonce_key = ? AND fingerprint = ?
               AND (state IN ('released', 'pending') OR (state = 'reserved' AND lease_until < ?))
             RETURNING prev_state, transaction_hash, response_status, response_content_type,
                       response_body",
        )
        .bind(&claim.attempt.0[..])
        .bind(secs(claim.lease_until))
        .bind(secs(now))
        .bind(claim.payment_id.as_deref())
        .bind(claim.key.as_str())
        .bind(&claim.fingerprint[..])
        .bind(secs(now))
        .fetch_optional(&self.pool)
        .await;
        let row = match row {
            Ok(r) => r,
            Err(e) if is_unique_violation(&e) => {
                return Ok(Some(Err(Reservation::IdConflict)));
            }
            Err(e) => return Err(unavailable(e)),
        };
        let Some(row) = row else { return Ok(None) };
        let prev: String = row.try_get("prev_state").map_err(unavailable)?;
        let from = PaymentState::parse(&prev)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown payment state {prev:?}")))?;
        Ok(Some(Ok(Resumed {
            from,
            transaction: row.try_get("transaction_hash").map_err(unavailable)?,
            response: response_of(&row)?,
        })))
    }

    async fn by_payment_id(&self, id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM pay402_x402_payments WHERE payment_id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(record_of).transpose()
    }
}

/// `UPDATE ... SET <set>, updated_at = ? WHERE nonce_key = ? AND attempt = ?
/// AND state = ?`: the `set` bindings come first, then these four.
fn transition_sql(set: &str) -> String {
    format!(
        "UPDATE pay402_x402_payments SET {set}, updated_at = ?
         WHERE nonce_key = ? AND attempt = ? AND state = ?"
    )
}

/// Binds the four trailing parameters of [`transition_sql`] and runs it;
/// true when this attempt owned the record in `from` state.
async fn run_transition<'q>(
    pool: &SqlitePool,
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    key: &'q NonceKey,
    attempt: &'q AttemptId,
    from: PaymentState,
    now: UnixTime,
) -> Result<bool, StoreError> {
    let res = q
        .bind(secs(now))
        .bind(key.as_str())
        .bind(&attempt.0[..])
        .bind(from.as_str())
        .execute(pool)
        .await
        .map_err(unavailable)?;
    Ok(res.rows_affected() == 1)
}

fn response_of(row: &SqliteRow) -> Result<Option<CachedResponse>, StoreError> {
    let status: Option<i64> = row.try_get("response_status").map_err(unavailable)?;
    let Some(status) = status else {
        return Ok(None);
    };
    let status = u16::try_from(status)
        .map_err(|_| StoreError::Corrupt(format!("response status {status}")))?;
    let body: Option<Vec<u8>> = row.try_get("response_body").map_err(unavailable)?;
    Ok(Some(CachedResponse {
        status,
        content_type: row.try_get("response_content_type").map_err(unavailable)?,
        body: Bytes::from(body.unwrap_or_default()),
    }))
}

fn record_of(row: &SqliteRow) -> Result<PaymentRecord, StoreError> {
    let state: String = row.try_get("state").map_err(unavailable)?;
    let fingerprint: Vec<u8> = row.try_get("fingerprint").map_err(unavailable)?;
    Ok(PaymentRecord {
        key: NonceKey::from_stored(row.try_get("nonce_key").map_err(unavailable)?),
        state: PaymentState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown payment state {state:?}")))?,
        fingerprint: fingerprint
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("fingerprint is not 32 bytes".into()))?,
        payment_id: row.try_get("payment_id").map_err(unavailable)?,
        payer: row.try_get("payer").map_err(unavailable)?,
        network: row.try_get("network").map_err(unavailable)?,
        amount: row.try_get("amount").map_err(unavailable)?,
        transaction: row.try_get("transaction_hash").map_err(unavailable)?,
        payment_response: row.try_get("payment_response").map_err(unavailable)?,
        response: response_of(row)?,
        request: row.try_get("request").map_err(unavailable)?,
        lease_until: time(row.try_get("lease_until").map_err(unavailable)?),
        created_at: time(row.try_get("created_at").map_err(unavailable)?),
        updated_at: time(row.try_get("updated_at").map_err(unavailable)?),
    })
}

#[async_trait]
impl PaymentStore for SqlitePaymentStore {
    async fn reserve(&self, claim: &Claim, now: UnixTime) -> Result<Reservation, StoreError> {
        for _ in 0..RESERVE_ROUNDS {
            if self.insert(claim, now).await? {
                return Ok(Reservation::Acquired(Acquired {
                    attempt: claim.attempt,
                    resumed: None,
                }));
            }
            match self.take_over(claim, now).await? {
                Some(Ok(resumed)) => {
                    return Ok(Reservation::Acquired(Acquired {
                        attempt: claim.attempt,
                        resumed: Some(resumed),
                    }));
                }
                Some(Err(refused)) => return Ok(refused),
                None => {}
            }
            // Neither inserted nor taken over: explain from what is there now.
            if let Some(record) = self.get(&claim.key).await? {
                if record.fingerprint != claim.fingerprint
                    || !can_take_over(record.state, record.lease_until, now)
                {
                    return Ok(explain(&record, claim));
                }
                // It became takeable between the statements: go round again.
                continue;
            }
            if let Some(id) = &claim.payment_id
                && self.by_payment_id(id).await?.is_some()
            {
                return Ok(Reservation::IdConflict);
            }
            // The conflicting row vanished in between: go round again.
        }
        Err(StoreError::Unavailable(
            "payment record kept changing while reserving".into(),
        ))
    }

    async fn release(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let sql = transition_sql(
            "state = 'released', response_status = NULL, response_content_type = NULL, \
             response_body = NULL",
        );
        run_transition(
            &self.pool,
            sqlx::query(&sql),
            key,
            attempt,
            PaymentState::Reserved,
            now,
        )
        .await
    }

    async fn mark_pending(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        transaction: Option<&str>,
        response: Option<&CachedResponse>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (status, content_type, body) = response_parts(response);
        let sql = transition_sql(
            "state = 'pending', transaction_hash = COALESCE(?, transaction_hash), \
             response_status = COALESCE(?, response_status), \
             response_content_type = CASE WHEN ? IS NULL THEN response_content_type ELSE ? END, \
             response_body = COALESCE(?, response_body)",
        );
        let q = sqlx::query(&sql)
            .bind(transaction)
            .bind(status)
            .bind(status)
            .bind(content_type)
            .bind(body);
        run_transition(&self.pool, q, key, attempt, PaymentState::Reserved, now).await
    }

    async fn mark_settled(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        transaction: &str,
        payment_response: &str,
        response: Option<&CachedResponse>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (status, content_type, body) = response_parts(response);
        let sql = transition_sql(
            "state = 'settled', transaction_hash = ?, payment_response = ?, \
             response_status = ?, response_content_type = ?, response_body = ?",
        );
        let q = sqlx::query(&sql)
            .bind(transaction)
            .bind(payment_response)
            .bind(status)
            .bind(content_type)
            .bind(body);
        run_transition(&self.pool, q, key, attempt, PaymentState::Reserved, now).await
    }

    async fn attach_response(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        response: &CachedResponse,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (status, content_type, body) = response_parts(Some(response));
        let sql =
            transition_sql("response_status = ?, response_content_type = ?, response_body = ?");
        let q = sqlx::query(&sql).bind(status).bind(content_type).bind(body);
        run_transition(&self.pool, q, key, attempt, PaymentState::Settled, now).await
    }

    async fn renew(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        lease_until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let sql = transition_sql("lease_until = MAX(lease_until, ?)");
        let q = sqlx::query(&sql).bind(secs(lease_until));
        run_transition(&self.pool, q, key, attempt, PaymentState::Reserved, now).await
    }

    async fn prune_released(
        &self,
        older_than: UnixTime,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let res = sqlx::query(
            "DELETE FROM pay402_x402_payments WHERE nonce_key IN (
                SELECT nonce_key FROM pay402_x402_payments
                WHERE state = 'released' AND updated_at < ?
                ORDER BY updated_at LIMIT ?)",
        )
        .bind(secs(older_than))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(usize::try_from(res.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn get(&self, key: &NonceKey) -> Result<Option<PaymentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM pay402_x402_payments WHERE nonce_key = ?"
        ))
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(record_of).transpose()
    }

    async fn list(
        &self,
        state: PaymentState,
        limit: usize,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM pay402_x402_payments WHERE state = ?
             ORDER BY created_at, nonce_key LIMIT ?"
        ))
        .bind(state.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(record_of).collect()
    }
}

fn response_parts(r: Option<&CachedResponse>) -> (Option<i64>, Option<&str>, Option<&[u8]>) {
    match r {
        Some(r) => (
            Some(i64::from(r.status)),
            r.content_type.as_deref(),
            Some(&r.body[..]),
        ),
        None => (None, None, None),
    }
}
