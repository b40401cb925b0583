//! What the SQLite and PostgreSQL journals share: the schema and every
//! statement, written once with `$n` parameters (both databases read them),
//! and the row decoding. [`sql_journal_store!`] implements
//! [`JournalStore`](super::JournalStore) for both from this one text.

use super::JournalError;

/// The schema: plain types (TEXT, BIGINT) that both databases read as
/// they are.
pub(super) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pay402_journal (
        id TEXT PRIMARY KEY,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        origin TEXT NOT NULL,
        method TEXT NOT NULL,
        target TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        scope TEXT NOT NULL,
        rail TEXT NOT NULL,
        offer TEXT NOT NULL,
        amount TEXT NOT NULL,
        cost TEXT,
        counted BIGINT NOT NULL,
        state TEXT NOT NULL,
        proof TEXT,
        proof_id TEXT,
        status BIGINT,
        detail TEXT
    )",
    "CREATE INDEX IF NOT EXISTS pay402_journal_request
        ON pay402_journal (origin, method, target, body_hash, state)",
    "CREATE INDEX IF NOT EXISTS pay402_journal_created ON pay402_journal (created_ms)",
    "CREATE TABLE IF NOT EXISTS pay402_journal_tokens (
        origin TEXT NOT NULL,
        scope TEXT NOT NULL,
        rail TEXT NOT NULL,
        credential TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        expires_ms BIGINT,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (origin, scope, rail)
    )",
];

pub(super) const INSERT_SQL: &str = "INSERT INTO pay402_journal (id, created_ms, updated_ms, \
     origin, method, target, body_hash, scope, rail, offer, amount, cost, counted, state, proof, \
     proof_id, status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
     $14, $15, $16, $17, $18)";

/// A step: `NULL` keeps the stored value.
pub(super) const UPDATE_SQL: &str = "UPDATE pay402_journal SET state = $1, updated_ms = $2, \
     proof = COALESCE($3, proof), proof_id = COALESCE($4, proof_id), \
     status = COALESCE($5, status), detail = COALESCE($6, detail), \
     counted = COALESCE($7, counted) WHERE id = $8";

pub(super) const OPEN_FOR_SQL: &str = "SELECT id, created_ms, updated_ms, origin, method, \
     target, body_hash, scope, rail, offer, amount, cost, counted, state, proof, proof_id, \
     status, detail FROM pay402_journal WHERE origin = $1 AND method = $2 AND target = $3 \
     AND body_hash = $4 AND state IN ('intent', 'paid', 'presented') \
     ORDER BY created_ms DESC, id DESC LIMIT 1";

pub(super) const GET_SQL: &str = "SELECT id, created_ms, updated_ms, origin, method, target, \
     body_hash, scope, rail, offer, amount, cost, counted, state, proof, proof_id, status, \
     detail FROM pay402_journal WHERE id = $1";

pub(super) const LIST_SQL: &str = "SELECT id, created_ms, updated_ms, origin, method, target, \
     body_hash, scope, rail, offer, amount, cost, counted, state, proof, proof_id, status, \
     detail FROM pay402_journal WHERE ($1 IS NULL OR origin = $1) \
     AND ($2 IS NULL OR created_ms >= $2) AND ($3 = 0 OR counted = 1) \
     AND ($4 = 0 OR state IN ('intent', 'paid', 'presented')) \
     ORDER BY created_ms DESC, id DESC LIMIT $5";

pub(super) const DELETE_TOKEN_SQL: &str =
    "DELETE FROM pay402_journal_tokens WHERE origin = $1 AND scope = $2 AND rail = $3";

pub(super) const INSERT_TOKEN_SQL: &str = "INSERT INTO pay402_journal_tokens (origin, scope, \
     rail, credential, entry_id, expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(super) const TOKENS_SQL: &str = "SELECT origin, scope, rail, credential, entry_id, \
     expires_ms, created_ms FROM pay402_journal_tokens WHERE origin = $1 AND scope = $2 \
     ORDER BY created_ms DESC";

pub(super) const REMOVE_TOKEN_SQL: &str = "DELETE FROM pay402_journal_tokens WHERE origin = $1 \
     AND scope = $2 AND rail = $3 AND credential = $4";

/// A database error, bounded (it never holds a proof: statements carry
/// their values as parameters).
pub(super) fn unavailable(e: impl std::fmt::Display) -> JournalError {
    JournalError::Unavailable(e.to_string().chars().take(256).collect())
}

pub(super) fn corrupt(what: &str) -> JournalError {
    JournalError::Corrupt(what.to_owned())
}

/// Implements [`JournalStore`](super::JournalStore) for `$store` (a type
/// with a `pool` field) whose rows are `$row`.
macro_rules! sql_journal_store {
    ($store:ty, $row:ty) => {
        fn record_of(row: &$row) -> Result<JournalRecord, JournalError> {
            use super::sql::corrupt;
            use sqlx::Row as _;
            let get_s = |c: &str| row.try_get::<String, _>(c).map_err(|_| corrupt(c));
            let get_os = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|_| corrupt(c));
            let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(|_| corrupt(c));
            let rail = get_s("rail")?;
            let state = get_s("state")?;
            let status: Option<i64> = row.try_get("status").map_err(|_| corrupt("status"))?;
            Ok(JournalRecord {
                id: get_s("id")?,
                created_ms: get_i("created_ms")?,
                updated_ms: get_i("updated_ms")?,
                key: RequestKey {
                    origin: get_s("origin")?,
                    method: get_s("method")?,
                    target: get_s("target")?,
                    body_hash: get_s("body_hash")?,
                },
                scope: get_s("scope")?,
                rail: Rail::from_name(&rail).ok_or_else(|| corrupt("rail"))?,
                offer: get_s("offer")?,
                amount: get_s("amount")?,
                cost: get_os("cost")?,
                counted: get_i("counted")? != 0,
                state: EntryState::from_name(&state).ok_or_else(|| corrupt("state"))?,
                proof: get_os("proof")?,
                proof_id: get_os("proof_id")?,
                status: status.and_then(|s| u16::try_from(s).ok()),
                detail: get_os("detail")?,
            })
        }

        fn token_of(row: &$row) -> Result<StoredToken, JournalError> {
            use super::sql::corrupt;
            use sqlx::Row as _;
            let get_s = |c: &str| row.try_get::<String, _>(c).map_err(|_| corrupt(c));
            let rail = get_s("rail")?;
            Ok(StoredToken {
                origin: get_s("origin")?,
                scope: get_s("scope")?,
                rail: Rail::from_name(&rail).ok_or_else(|| corrupt("rail"))?,
                credential: get_s("credential")?,
                entry_id: get_s("entry_id")?,
                expires_ms: row
                    .try_get("expires_ms")
                    .map_err(|_| corrupt("expires_ms"))?,
                created_ms: row
                    .try_get("created_ms")
                    .map_err(|_| corrupt("created_ms"))?,
            })
        }

        #[async_trait]
        impl JournalStore for $store {
            async fn insert(&self, r: &JournalRecord) -> Result<(), JournalError> {
                sqlx::query(super::sql::INSERT_SQL)
                    .bind(&r.id)
                    .bind(r.created_ms)
                    .bind(r.updated_ms)
                    .bind(&r.key.origin)
                    .bind(&r.key.method)
                    .bind(&r.key.target)
                    .bind(&r.key.body_hash)
                    .bind(&r.scope)
                    .bind(r.rail.as_str())
                    .bind(&r.offer)
                    .bind(&r.amount)
                    .bind(&r.cost)
                    .bind(i64::from(r.counted))
                    .bind(r.state.as_str())
                    .bind(&r.proof)
                    .bind(&r.proof_id)
                    .bind(r.status.map(i64::from))
                    .bind(&r.detail)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn update(&self, id: &str, s: &Step) -> Result<(), JournalError> {
                let done = sqlx::query(super::sql::UPDATE_SQL)
                    .bind(s.state.as_str())
                    .bind(s.at_ms)
                    .bind(&s.proof)
                    .bind(&s.proof_id)
                    .bind(s.status.map(i64::from))
                    .bind(&s.detail)
                    .bind(s.counted.map(i64::from))
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                if done.rows_affected() == 0 {
                    return Err(JournalError::NotFound(id.chars().take(64).collect()));
                }
                Ok(())
            }

            async fn open_for(
                &self,
                key: &RequestKey,
            ) -> Result<Option<JournalRecord>, JournalError> {
                let row = sqlx::query(super::sql::OPEN_FOR_SQL)
                    .bind(&key.origin)
                    .bind(&key.method)
                    .bind(&key.target)
                    .bind(&key.body_hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(record_of).transpose()
            }

            async fn get(&self, id: &str) -> Result<Option<JournalRecord>, JournalError> {
                let row = sqlx::query(super::sql::GET_SQL)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(record_of).transpose()
            }

            async fn list(&self, q: &Query) -> Result<Vec<JournalRecord>, JournalError> {
                let limit = i64::try_from(q.limit.min(super::MAX_LIST)).unwrap_or(0);
                let rows = sqlx::query(super::sql::LIST_SQL)
                    .bind(&q.origin)
                    .bind(q.since_ms)
                    .bind(i64::from(q.counted_only))
                    .bind(i64::from(q.open_only))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(record_of).collect()
            }

            async fn put_token(&self, t: &StoredToken) -> Result<(), JournalError> {
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                sqlx::query(super::sql::DELETE_TOKEN_SQL)
                    .bind(&t.origin)
                    .bind(&t.scope)
                    .bind(t.rail.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                sqlx::query(super::sql::INSERT_TOKEN_SQL)
                    .bind(&t.origin)
                    .bind(&t.scope)
                    .bind(t.rail.as_str())
                    .bind(&t.credential)
                    .bind(&t.entry_id)
                    .bind(t.expires_ms)
                    .bind(t.created_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)
            }

            async fn tokens(
                &self,
                origin: &str,
                scope: &str,
            ) -> Result<Vec<StoredToken>, JournalError> {
                let rows = sqlx::query(super::sql::TOKENS_SQL)
                    .bind(origin)
                    .bind(scope)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(token_of).collect()
            }

            async fn remove_token(
                &self,
                origin: &str,
                scope: &str,
                rail: Rail,
                credential: &str,
            ) -> Result<(), JournalError> {
                sqlx::query(super::sql::REMOVE_TOKEN_SQL)
                    .bind(origin)
                    .bind(scope)
                    .bind(rail.as_str())
                    .bind(credential)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }
        }
    };
}
pub(super) use sql_journal_store;
