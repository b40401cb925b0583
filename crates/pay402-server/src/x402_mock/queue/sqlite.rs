//! SQLite settlement queue (sqlx): survives restarts.

use async_trait::async_trait;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock::MockPermit;
use pay402_core::x402::mock_chain::SignedTx;
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use super::{NewSettlement, QueueError, Settlement, SettlementStore};

const TABLE: &str = "pay402_x402_mock_settlements";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS pay402_x402_mock_settlements (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chain_id INTEGER NOT NULL,
        token TEXT NOT NULL,
        owner TEXT NOT NULL,
        nonce TEXT NOT NULL,
        digest BLOB NOT NULL,
        permit_json TEXT NOT NULL,
        resource TEXT NOT NULL,
        pay_to TEXT NOT NULL,
        amount TEXT NOT NULL,
        token_exp INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        permit_tx_hash BLOB,
        permit_tx_raw BLOB,
        permit_tx_sender TEXT,
        permit_tx_nonce INTEGER,
        transfer_tx_hash BLOB,
        transfer_tx_raw BLOB,
        transfer_tx_sender TEXT,
        transfer_tx_nonce INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_until INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        failure TEXT,
        updated_at INTEGER NOT NULL
    )",
    // At most one live (not failed) job per permit nonce: the replay guard.
    "CREATE UNIQUE INDEX IF NOT EXISTS pay402_x402_mock_live_nonce
        ON pay402_x402_mock_settlements (chain_id, token, owner, nonce)
        WHERE state <> 'failed'",
    "CREATE INDEX IF NOT EXISTS pay402_x402_mock_due
        ON pay402_x402_mock_settlements (state, next_attempt_at)",
    "CREATE TABLE IF NOT EXISTS pay402_x402_mock_revoked (
        jti BLOB PRIMARY KEY NOT NULL,
        exp INTEGER NOT NULL,
        reason TEXT NOT NULL
    )",
];

/// The settlement queue and revocation list in a SQLite database.
///
/// Tables `pay402_x402_mock_settlements` (one row per job, with the journal
/// of signed transactions) and `pay402_x402_mock_revoked` are created on open.
///
/// ```
/// use pay402_server::x402_mock::{SqliteSettlementStore, SettlementStore};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteSettlementStore::in_memory().await.unwrap();
/// let jti = pay402_core::x402::evm::Bytes32([3; 32]);
/// assert!(!store.is_revoked(&jti).await.unwrap());
/// store.revoke(&jti, 2_000_000_000, "transfer_reverted").await.unwrap();
/// assert!(store.is_revoked(&jti).await.unwrap());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteSettlementStore {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> impl Fn(sqlx::Error) -> QueueError + '_ {
    move |e| QueueError::Corrupt(format!("{what}: {e}"))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteSettlementStore {
    /// Opens (creating if needed) the database file at `path`.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::x402_mock::SqliteSettlementStore::open("settlements.sqlite").await.unwrap();
    /// # }
    /// ```
    pub async fn open(
        path: impl AsRef<std::path::Path>,
    ) -> Result<SqliteSettlementStore, QueueError> {
        let pool = crate::sqlite_pool::file(path).await.map_err(unavailable)?;
        SqliteSettlementStore::from_pool(pool).await
    }

    /// A private in-memory database (tests and demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let _ = pay402_server::x402_mock::SqliteSettlementStore::in_memory().await.unwrap();
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqliteSettlementStore, QueueError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqliteSettlementStore::from_pool(pool).await
    }

    /// Uses an existing pool (e.g. shared with the L402 root-key store),
    /// creating the tables if needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::x402_mock::SqliteSettlementStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteSettlementStore, QueueError> {
        crate::sqlite_pool::create(&pool, SCHEMA)
            .await
            .map_err(unavailable)?;
        Ok(SqliteSettlementStore { pool })
    }

    /// Closes the pool (waits for connections to be returned).
    ///
    /// ```no_run
    /// # async fn f(store: pay402_server::x402_mock::SqliteSettlementStore) {
    /// store.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn signed_tx(row: &SqliteRow, prefix: &str) -> Result<Option<SignedTx>, QueueError> {
    let hash: Option<Vec<u8>> = row
        .try_get(format!("{prefix}_hash").as_str())
        .map_err(corrupt("tx hash"))?;
    let Some(hash) = hash else {
        return Ok(None);
    };
    let hash: [u8; 32] = hash
        .as_slice()
        .try_into()
        .map_err(|_| QueueError::Corrupt("tx hash is not 32 bytes".into()))?;
    let raw: Option<Vec<u8>> = row
        .try_get(format!("{prefix}_raw").as_str())
        .map_err(corrupt("raw tx"))?;
    let sender: Option<String> = row
        .try_get(format!("{prefix}_sender").as_str())
        .map_err(corrupt("tx sender"))?;
    let nonce: Option<i64> = row
        .try_get(format!("{prefix}_nonce").as_str())
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

fn from_row(row: &SqliteRow) -> Result<Settlement, QueueError> {
    let get_i64 = |c: &str| -> Result<i64, QueueError> { row.try_get(c).map_err(corrupt(c)) };
    let get_str = |c: &str| -> Result<String, QueueError> { row.try_get(c).map_err(corrupt(c)) };
    let permit: MockPermit = serde_json::from_str(&get_str("permit_json")?)
        .map_err(|e| QueueError::Corrupt(format!("permit_json: {e}")))?;
    let digest: Vec<u8> = row.try_get("digest").map_err(corrupt("digest"))?;
    let digest: [u8; 32] = digest
        .as_slice()
        .try_into()
        .map_err(|_| QueueError::Corrupt("digest is not 32 bytes".into()))?;
    let pay_to: EvmAddress = get_str("pay_to")?
        .parse()
        .map_err(|_| QueueError::Corrupt("pay_to".into()))?;
    let amount = TokenAmount::parse(&get_str("amount")?)
        .map_err(|_| QueueError::Corrupt("amount".into()))?;
    Ok(Settlement {
        id: get_i64("id")?,
        job: NewSettlement {
            permit,
            digest: Bytes32(digest),
            resource: get_str("resource")?,
            pay_to,
            amount,
            token_exp: to_u64(get_i64("token_exp")?),
            created_at: to_u64(get_i64("created_at")?),
        },
        state: get_str("state")?.parse()?,
        permit_tx: signed_tx(row, "permit_tx")?,
        transfer_tx: signed_tx(row, "transfer_tx")?,
        attempts: u32::try_from(get_i64("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: to_u64(get_i64("next_attempt_at")?),
        lease_until: to_u64(get_i64("lease_until")?),
        last_error: row.try_get("last_error").map_err(corrupt("last_error"))?,
        failure: row.try_get("failure").map_err(corrupt("failure"))?,
        updated_at: to_u64(get_i64("updated_at")?),
    })
}

#[async_trait]
impl SettlementStore for SqliteSettlementStore {
    async fn enqueue(&self, job: NewSettlement) -> Result<i64, QueueError> {
        let p = &job.permit;
        let permit_json = serde_json::to_string(p)
            .map_err(|e| QueueError::Corrupt(format!("permit does not serialize: {e}")))?;
        let res = sqlx::query(
            "INSERT INTO pay402_x402_mock_settlements
                (chain_id, token, owner, nonce, digest, permit_json, resource, pay_to, amount,
                 token_exp, created_at, state, next_attempt_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
        )
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
        .bind(to_i64(job.created_at))
        .bind(to_i64(job.created_at))
        .execute(&self.pool)
        .await;
        match res {
            Ok(done) => Ok(done.last_insert_rowid()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let live: Option<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT digest FROM pay402_x402_mock_settlements
                     WHERE chain_id = ? AND token = ? AND owner = ? AND nonce = ? AND state <> 'failed'",
                )
                .bind(to_i64(p.chain_id))
                .bind(p.token.to_string())
                .bind(p.owner.to_string())
                .bind(p.nonce.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                Err(QueueError::Duplicate {
                    same_permit: live.is_some_and(|(d,)| d == job.digest.0),
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn claim_due(
        &self,
        now: u64,
        lease_until: u64,
        limit: u32,
    ) -> Result<Vec<Settlement>, QueueError> {
        let rows = sqlx::query(&format!(
            "UPDATE {TABLE} SET lease_until = ?1
             WHERE id IN (
                SELECT id FROM {TABLE}
                WHERE state NOT IN ('settled', 'failed') AND next_attempt_at <= ?2 AND lease_until <= ?2
                ORDER BY next_attempt_at, id LIMIT ?3)
             RETURNING *"
        ))
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

    async fn save(&self, job: &Settlement) -> Result<(), QueueError> {
        let tx_cols = |tx: &Option<SignedTx>| {
            tx.as_ref().map(|t| {
                (
                    t.hash.0.to_vec(),
                    t.raw.clone(),
                    t.sender.to_string(),
                    to_i64(t.sender_nonce),
                )
            })
        };
        let p = tx_cols(&job.permit_tx);
        let t = tx_cols(&job.transfer_tx);
        let res = sqlx::query(
            "UPDATE pay402_x402_mock_settlements SET
                state = ?, permit_tx_hash = ?, permit_tx_raw = ?, permit_tx_sender = ?, permit_tx_nonce = ?,
                transfer_tx_hash = ?, transfer_tx_raw = ?, transfer_tx_sender = ?, transfer_tx_nonce = ?,
                attempts = ?, next_attempt_at = ?, lease_until = ?, last_error = ?, failure = ?, updated_at = ?
             WHERE id = ?",
        )
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
        .bind(job.last_error.as_deref())
        .bind(job.failure.as_deref())
        .bind(to_i64(job.updated_at))
        .bind(job.id)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if res.rows_affected() == 0 {
            return Err(QueueError::Corrupt(format!("no settlement {}", job.id)));
        }
        Ok(())
    }

    async fn get(&self, id: i64) -> Result<Option<Settlement>, QueueError> {
        let row = sqlx::query(&format!("SELECT * FROM {TABLE} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn revoke(&self, jti: &Bytes32, exp: u64, reason: &str) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO pay402_x402_mock_revoked (jti, exp, reason) VALUES (?, ?, ?)
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(&jti.0[..])
        .bind(to_i64(exp))
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn is_revoked(&self, jti: &Bytes32) -> Result<bool, QueueError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM pay402_x402_mock_revoked WHERE jti = ?")
                .bind(&jti.0[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::super::SettlementState;
    use super::*;
    use pay402_core::x402::mock::MockPermitSignature;

    fn permit(nonce: u64) -> MockPermit {
        MockPermit {
            permit_type: "EIP2612".into(),
            owner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                .parse()
                .unwrap(),
            spender: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                .parse()
                .unwrap(),
            token: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
                .parse()
                .unwrap(),
            value: 10_000u64.try_into().unwrap(),
            nonce: nonce.try_into().unwrap(),
            deadline: 2_000_000_000u64.try_into().unwrap(),
            chain_id: 31337,
            signature: MockPermitSignature {
                signature_type: "EIP2612".into(),
                v: 27,
                r: Bytes32([1; 32]),
                s: Bytes32([2; 32]),
            },
            created_at: None,
        }
    }

    fn job(nonce: u64, digest: u8) -> NewSettlement {
        NewSettlement {
            permit: permit(nonce),
            digest: Bytes32([digest; 32]),
            resource: "/premium".into(),
            pay_to: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                .parse()
                .unwrap(),
            amount: TokenAmount::from_u64(10_000),
            token_exp: 1_000_003_600,
            created_at: 1_000_000_000,
        }
    }

    struct TempDb(std::path::PathBuf);
    impl TempDb {
        fn new(name: &str) -> TempDb {
            let dir = std::env::temp_dir().join(format!(
                "pay402-x402-mock-{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDb(dir)
        }
        fn file(&self) -> std::path::PathBuf {
            self.0.join("queue.sqlite")
        }
    }
    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn queued_job_and_journal_survive_reopening_the_file() {
        let db = TempDb::new("restart");
        let id = {
            let store = SqliteSettlementStore::open(db.file()).await.unwrap();
            let id = store.enqueue(job(0, 7)).await.unwrap();
            // A worker journals a signed permit() transaction, then "crashes".
            let mut s = store
                .claim_due(1_000_000_000, 1_000_000_100, 10)
                .await
                .unwrap()
                .remove(0);
            s.state = SettlementState::PermitSent;
            s.permit_tx = Some(SignedTx {
                hash: Bytes32([5; 32]),
                raw: vec![2, 0xf8, 0x71],
                sender: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                    .parse()
                    .unwrap(),
                sender_nonce: 12,
            });
            store.save(&s).await.unwrap();
            let jti = Bytes32([9; 32]);
            store.revoke(&jti, 5, "x").await.unwrap();
            store.close().await;
            id
        };
        let store = SqliteSettlementStore::open(db.file()).await.unwrap();
        // Still leased by the crashed worker until 1_000_000_100.
        assert!(
            store
                .claim_due(1_000_000_050, 1_000_000_200, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let jobs = store
            .claim_due(1_000_000_100, 1_000_000_200, 10)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        let s = &jobs[0];
        assert_eq!(s.id, id);
        assert_eq!(s.job, job(0, 7));
        assert_eq!(s.state, SettlementState::PermitSent);
        let tx = s.permit_tx.as_ref().unwrap();
        assert_eq!(tx.raw, vec![2, 0xf8, 0x71]);
        assert_eq!(tx.sender_nonce, 12);
        assert!(s.transfer_tx.is_none());
        assert!(store.is_revoked(&Bytes32([9; 32])).await.unwrap());
        assert_eq!(store.get(id).await.unwrap().as_ref(), Some(s));
    }

    #[tokio::test]
    async fn one_live_job_per_nonce_and_failed_jobs_free_it() {
        let store = SqliteSettlementStore::in_memory().await.unwrap();
        let id = store.enqueue(job(3, 1)).await.unwrap();
        assert_eq!(
            store.enqueue(job(3, 1)).await,
            Err(QueueError::Duplicate { same_permit: true })
        );
        assert_eq!(
            store.enqueue(job(3, 2)).await,
            Err(QueueError::Duplicate { same_permit: false })
        );
        store.enqueue(job(4, 3)).await.unwrap();
        let mut s = store.get(id).await.unwrap().unwrap();
        s.state = SettlementState::Failed;
        store.save(&s).await.unwrap();
        // A failed job no longer holds the nonce: a new permit may use it.
        store.enqueue(job(3, 4)).await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_enqueues_of_one_permit_accept_exactly_one() {
        let db = TempDb::new("race");
        let store = SqliteSettlementStore::open(db.file()).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move { s.enqueue(job(0, 1)).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e, QueueError::Duplicate { same_permit: true }),
            }
        }
        assert_eq!(ok, 1);
    }

    #[tokio::test]
    async fn claims_respect_due_time_and_leases_and_skip_final_jobs() {
        let store = SqliteSettlementStore::in_memory().await.unwrap();
        let a = store.enqueue(job(0, 1)).await.unwrap();
        let b = store.enqueue(job(1, 2)).await.unwrap();
        let mut sb = store.get(b).await.unwrap().unwrap();
        sb.next_attempt_at = 1_000_000_500;
        store.save(&sb).await.unwrap();
        let got = store
            .claim_due(1_000_000_000, 1_000_000_060, 10)
            .await
            .unwrap();
        assert_eq!(got.iter().map(|s| s.id).collect::<Vec<_>>(), vec![a]);
        // Leased: not handed out again before the lease ends.
        assert!(
            store
                .claim_due(1_000_000_010, 1_000_000_070, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let mut sa = got[0].clone();
        sa.state = SettlementState::Settled;
        sa.lease_until = 0;
        store.save(&sa).await.unwrap();
        let got = store
            .claim_due(1_000_000_600, 1_000_000_660, 10)
            .await
            .unwrap();
        assert_eq!(got.iter().map(|s| s.id).collect::<Vec<_>>(), vec![b]);
    }
}
