//! [`SqliteJournal`]: the journal in a SQLite file (sqlx).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use pay402_core::offer::Rail;
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::{
    EntryState, JournalError, JournalRecord, JournalStore, Query, RequestKey, Step, StoredToken,
};

/// The schema: plain types (TEXT, BIGINT) that PostgreSQL reads as they are.
const SCHEMA: &[&str] = &[
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

const COLUMNS: &str = "id, created_ms, updated_ms, origin, method, target, body_hash, scope, rail, \
     offer, amount, cost, counted, state, proof, proof_id, status, detail";

/// How long a writer waits for another one's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The journal in a SQLite file: WAL mode, `synchronous = FULL` (a step is
/// on disk before the payment that follows it leaves the process), created
/// owner-only (mode 0600): it holds preimages, signed payloads and tokens.
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_client::journal::JournalError> {
/// use pay402_client::journal::{Journal, SqliteJournal};
/// let store = SqliteJournal::open("journal.sqlite").await?;
/// let journal = Journal::from_store(std::sync::Arc::new(store), "journal.sqlite");
/// # let _ = journal; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteJournal {
    pool: SqlitePool,
}

fn unavailable(e: impl std::fmt::Display) -> JournalError {
    JournalError::Unavailable(e.to_string().chars().take(256).collect())
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pay402_client::journal::JournalError> {
    /// let store = pay402_client::journal::SqliteJournal::open("/tmp/j.sqlite").await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteJournal, JournalError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        create_owner_only(path).map_err(unavailable)?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(unavailable)?;
        SqliteJournal::from_pool(pool).await
    }

    /// A journal on an open pool (the schema is created if missing).
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) -> Result<(), pay402_client::journal::JournalError> {
    /// let store = pay402_client::journal::SqliteJournal::from_pool(pool).await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteJournal, JournalError> {
        for stmt in SCHEMA {
            sqlx::query(stmt)
                .execute(&pool)
                .await
                .map_err(unavailable)?;
        }
        Ok(SqliteJournal { pool })
    }
}

/// Creates `path` empty with mode 0600 if it does not exist.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn corrupt(what: &str) -> JournalError {
    JournalError::Corrupt(what.to_owned())
}

fn record_of(row: &SqliteRow) -> Result<JournalRecord, JournalError> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(|_| corrupt(c));
    let get_os = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|_| corrupt(c));
    let rail = get_s("rail")?;
    let state = get_s("state")?;
    let status: Option<i64> = row.try_get("status").map_err(|_| corrupt("status"))?;
    Ok(JournalRecord {
        id: get_s("id")?,
        created_ms: row
            .try_get("created_ms")
            .map_err(|_| corrupt("created_ms"))?,
        updated_ms: row
            .try_get("updated_ms")
            .map_err(|_| corrupt("updated_ms"))?,
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
        counted: row
            .try_get::<i64, _>("counted")
            .map_err(|_| corrupt("counted"))?
            != 0,
        state: EntryState::from_name(&state).ok_or_else(|| corrupt("state"))?,
        proof: get_os("proof")?,
        proof_id: get_os("proof_id")?,
        status: status.and_then(|s| u16::try_from(s).ok()),
        detail: get_os("detail")?,
    })
}

fn token_of(row: &SqliteRow) -> Result<StoredToken, JournalError> {
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
impl JournalStore for SqliteJournal {
    async fn insert(&self, r: &JournalRecord) -> Result<(), JournalError> {
        sqlx::query(
            "INSERT INTO pay402_journal (id, created_ms, updated_ms, origin, method, target, \
             body_hash, scope, rail, offer, amount, cost, counted, state, proof, proof_id, \
             status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
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
        let done = sqlx::query(
            "UPDATE pay402_journal SET state = ?, updated_ms = ?, \
             proof = COALESCE(?, proof), proof_id = COALESCE(?, proof_id), \
             status = COALESCE(?, status), detail = COALESCE(?, detail), \
             counted = COALESCE(?, counted) WHERE id = ?",
        )
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

    async fn open_for(&self, key: &RequestKey) -> Result<Option<JournalRecord>, JournalError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pay402_journal WHERE origin = ? AND method = ? AND target = ? \
             AND body_hash = ? AND state IN ('intent', 'paid', 'presented') \
             ORDER BY created_ms DESC, id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
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
        let sql = format!("SELECT {COLUMNS} FROM pay402_journal WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(record_of).transpose()
    }

    async fn list(&self, q: &Query) -> Result<Vec<JournalRecord>, JournalError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pay402_journal WHERE (? IS NULL OR origin = ?) \
             AND (? IS NULL OR created_ms >= ?) AND (? = 0 OR counted = 1) \
             AND (? = 0 OR state IN ('intent', 'paid', 'presented')) \
             ORDER BY created_ms DESC, id DESC LIMIT ?"
        );
        let limit = i64::try_from(q.limit.min(super::MAX_LIST)).unwrap_or(0);
        let rows = sqlx::query(&sql)
            .bind(&q.origin)
            .bind(&q.origin)
            .bind(q.since_ms)
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
        sqlx::query(
            "DELETE FROM pay402_journal_tokens WHERE origin = ? AND scope = ? AND rail = ?",
        )
        .bind(&t.origin)
        .bind(&t.scope)
        .bind(t.rail.as_str())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO pay402_journal_tokens (origin, scope, rail, credential, entry_id, \
             expires_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
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

    async fn tokens(&self, origin: &str, scope: &str) -> Result<Vec<StoredToken>, JournalError> {
        let rows = sqlx::query(
            "SELECT origin, scope, rail, credential, entry_id, expires_ms, created_ms \
             FROM pay402_journal_tokens WHERE origin = ? AND scope = ? ORDER BY created_ms DESC",
        )
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
        sqlx::query(
            "DELETE FROM pay402_journal_tokens WHERE origin = ? AND scope = ? AND rail = ? \
             AND credential = ?",
        )
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
