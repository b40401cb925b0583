//! The persisted settlement queue: one job per accepted permit, with the
//! journal of the transactions sent for it, and the revocation list of
//! access tokens whose settlement failed.
//!
//! [`SqliteSettlementStore`] is the default (survives restarts);
//! [`PostgresSettlementStore`] is shared by several instances;
//! [`MemorySettlementStore`] is for tests and single processes.
//!
//! Guarantees every store gives:
//!
//! - **one live job per permit nonce**: [`SettlementStore::enqueue`] refuses a
//!   second job for the same `(chain, token, owner, nonce)` while an earlier
//!   one is not [`Failed`](SettlementState::Failed) — atomically (a partial
//!   unique index in SQLite and PostgreSQL, a lock in memory), so two concurrent POSTs of
//!   the same permit cannot both be accepted;
//! - **one worker per job at a time**: [`SettlementStore::claim_due`] leases
//!   the jobs it returns until a given time, and [`SettlementStore::save`]
//!   writes only while the row still carries the lease the worker was given
//!   (one conditional `UPDATE`): a worker whose lease ran out and was taken
//!   over by another gets [`QueueError::LeaseLost`] and writes nothing;
//! - **journal before broadcast**: the worker saves every signed transaction
//!   before sending it;
//! - **one transaction per spender nonce**, across every process on the
//!   store: [`SettlementStore::sign_and_journal`] allocates the spender's
//!   next account nonce (at least the chain's pending nonce), has the
//!   transaction signed with it and journals it on the job, in one atomic
//!   step that also checks the worker's lease. The SQL stores allocate from
//!   the x402 facilitator's counter table (`pay402_facilitator_nonces`, one
//!   `UPDATE … RETURNING` on the `(chain, address)` row, the statement
//!   [`pay402_core::x402::settlements::SettlementStore::sign_next`] runs),
//!   in the database transaction that saves the job; a lost lease or a
//!   crash before commit allocates nothing, and a committed nonce is on a
//!   journaled transaction that the job re-sends until it is mined or
//!   provably replaced.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use pay402_core::problem::Reason;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock::MockPermit;
use pay402_core::x402::mock_chain::{MockChainError, SignedTx, U256};

mod db;
mod postgres;
mod sqlite;
pub use postgres::PostgresSettlementStore;
pub use sqlite::SqliteSettlementStore;

/// Opens the settlement store on `db` (see [`crate::database`]): a fresh
/// [`MemorySettlementStore`], or a [`SqliteSettlementStore`] /
/// [`PostgresSettlementStore`] on the database's pool.
///
/// ```
/// use pay402_server::database::Database;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let db = Database::open("sqlite::memory:", &Default::default()).await.unwrap();
/// let store = pay402_server::x402_mock::open_store(&db).await.unwrap();
/// assert!(store.get(1).await.unwrap().is_none());
/// # });
/// ```
pub async fn open_store(
    db: &crate::database::Database,
) -> Result<std::sync::Arc<dyn SettlementStore>, QueueError> {
    use crate::database::Database;
    Ok(match db {
        Database::Memory => std::sync::Arc::new(MemorySettlementStore::new()),
        Database::Sqlite(pool) => {
            std::sync::Arc::new(SqliteSettlementStore::from_pool(pool.clone()).await?)
        }
        Database::Postgres(pool) => {
            std::sync::Arc::new(PostgresSettlementStore::from_pool(pool.clone()).await?)
        }
    })
}

impl From<crate::store::StoreError> for QueueError {
    fn from(e: crate::store::StoreError) -> QueueError {
        match e {
            crate::store::StoreError::Corrupt(m) => QueueError::Corrupt(m),
            other => QueueError::Unavailable(other.to_string()),
        }
    }
}

/// Where a settlement stands.
///
/// ```
/// use pay402_server::x402_mock::SettlementState;
/// assert_eq!(SettlementState::TransferSent.as_str(), "transfer_sent");
/// assert_eq!("settled".parse::<SettlementState>(), Ok(SettlementState::Settled));
/// assert!(SettlementState::Failed.is_final());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SettlementState {
    /// Accepted; nothing sent yet.
    Queued,
    /// A `permit()` transaction is journaled (and maybe broadcast).
    PermitSent,
    /// The allowance is in place (our `permit()` mined, or the permit was
    /// executed by someone else).
    PermitDone,
    /// A `transferFrom()` transaction is journaled (and maybe broadcast).
    TransferSent,
    /// `transferFrom()` mined successfully: paid.
    Settled,
    /// Settlement failed for good; the access token is revoked.
    Failed,
}

impl SettlementState {
    /// The stored name.
    ///
    /// ```
    /// assert_eq!(pay402_server::x402_mock::SettlementState::Queued.as_str(), "queued");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementState::Queued => "queued",
            SettlementState::PermitSent => "permit_sent",
            SettlementState::PermitDone => "permit_done",
            SettlementState::TransferSent => "transfer_sent",
            SettlementState::Settled => "settled",
            SettlementState::Failed => "failed",
        }
    }

    /// Whether nothing more will happen to the job.
    ///
    /// ```
    /// assert!(!pay402_server::x402_mock::SettlementState::PermitDone.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        matches!(self, SettlementState::Settled | SettlementState::Failed)
    }
}

impl std::str::FromStr for SettlementState {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<SettlementState, QueueError> {
        Ok(match s {
            "queued" => SettlementState::Queued,
            "permit_sent" => SettlementState::PermitSent,
            "permit_done" => SettlementState::PermitDone,
            "transfer_sent" => SettlementState::TransferSent,
            "settled" => SettlementState::Settled,
            "failed" => SettlementState::Failed,
            other => return Err(QueueError::Corrupt(format!("unknown state {other:?}"))),
        })
    }
}

impl std::fmt::Display for SettlementState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to enqueue: an accepted permit and what it pays for.
///
/// ```
/// # use pay402_server::x402_mock::NewSettlement;
/// # fn f(job: NewSettlement) {
/// assert_eq!(job.digest, job.digest); // the permit's EIP-712 digest, also the token's jti
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSettlement {
    /// The permit as the payer signed it.
    pub permit: MockPermit,
    /// The permit's EIP-712 digest: the job's identity and the access
    /// token's `jti`.
    pub digest: Bytes32,
    /// The resource the token opens.
    pub resource: String,
    /// Who receives the funds (`transferFrom(owner, pay_to, amount)`).
    pub pay_to: EvmAddress,
    /// The price, in base units (at most the permit's value).
    pub amount: TokenAmount,
    /// The access token's expiry (unix seconds), kept with its revocation.
    pub token_exp: u64,
    /// When the job was accepted (unix seconds).
    pub created_at: u64,
}

/// A job in the queue.
///
/// ```
/// # use pay402_server::x402_mock::{Settlement, SettlementState};
/// # fn f(job: Settlement) {
/// if job.state == SettlementState::Failed {
///     println!("settlement {} failed: {:?}", job.id, job.failure);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The store's id.
    pub id: i64,
    /// What was enqueued.
    pub job: NewSettlement,
    /// Where it stands.
    pub state: SettlementState,
    /// The journaled `permit()` transaction.
    pub permit_tx: Option<SignedTx>,
    /// The journaled `transferFrom()` transaction.
    pub transfer_tx: Option<SignedTx>,
    /// Failed attempts so far (transient errors).
    pub attempts: u32,
    /// Not processed before this time (unix seconds).
    pub next_attempt_at: u64,
    /// Leased to a worker until this time (unix seconds); 0 when free.
    pub lease_until: u64,
    /// The last transient error, for operators.
    pub last_error: Option<String>,
    /// The stable reason of a final failure.
    pub failure: Option<String>,
    /// Last change (unix seconds).
    pub updated_at: u64,
}

impl Settlement {
    /// A fresh job as [`SettlementStore::enqueue`] stores it.
    ///
    /// ```
    /// # use pay402_server::x402_mock::{NewSettlement, Settlement, SettlementState};
    /// # fn f(new: NewSettlement) {
    /// let s = Settlement::new(7, new);
    /// assert_eq!(s.state, SettlementState::Queued);
    /// # }
    /// ```
    pub fn new(id: i64, job: NewSettlement) -> Settlement {
        let now = job.created_at;
        Settlement {
            id,
            job,
            state: SettlementState::Queued,
            permit_tx: None,
            transfer_tx: None,
            attempts: 0,
            next_attempt_at: now,
            lease_until: 0,
            last_error: None,
            failure: None,
            updated_at: now,
        }
    }
}

/// A queue operation failed.
///
/// ```
/// use pay402_server::x402_mock::QueueError;
/// use pay402_core::problem::Reason;
/// assert_eq!(QueueError::Duplicate { same_permit: true }.reason(), "permit_replayed");
/// assert_eq!(QueueError::Duplicate { same_permit: false }.reason(), "permit_nonce_pending");
/// assert_eq!(QueueError::Unavailable("disk".into()).status(), 503);
/// assert_eq!(QueueError::LeaseLost { id: 7 }.reason(), "settlement_lease_lost");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// A live job already holds this permit nonce: the same permit
    /// (`same_permit`), or another permit with the same nonce.
    #[error("a settlement for this permit nonce is already queued")]
    Duplicate {
        /// Whether the queued job is for the very same permit.
        same_permit: bool,
    },
    /// The backing database could not be used.
    #[error("settlement store unavailable: {0}")]
    Unavailable(String),
    /// Stored data is corrupt.
    #[error("corrupt settlement record: {0}")]
    Corrupt(String),
    /// The job's lease is no longer the one this worker holds: another
    /// worker took the job over after the lease ran out. Nothing was
    /// written; the worker must drop the job (and anything it signed).
    #[error("settlement {id} is leased to another worker now")]
    LeaseLost {
        /// The job.
        id: i64,
    },
}

impl Reason for QueueError {
    fn reason(&self) -> &'static str {
        match self {
            QueueError::Duplicate { same_permit: true } => "permit_replayed",
            QueueError::Duplicate { same_permit: false } => "permit_nonce_pending",
            QueueError::Unavailable(_) => "settlement_store_unavailable",
            QueueError::Corrupt(_) => "settlement_store_corrupt",
            QueueError::LeaseLost { .. } => "settlement_lease_lost",
        }
    }
    fn status(&self) -> u16 {
        match self {
            QueueError::Duplicate { .. } | QueueError::LeaseLost { .. } => 409,
            _ => 503,
        }
    }
}

/// Which journal slot of a job a newly signed transaction fills, and the
/// state the job moves into with it.
///
/// ```
/// use pay402_server::x402_mock::{JournalSlot, SettlementState};
/// assert_eq!(JournalSlot::Permit.state(), SettlementState::PermitSent);
/// assert_eq!(JournalSlot::Transfer.state(), SettlementState::TransferSent);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalSlot {
    /// The `permit()` transaction ([`Settlement::permit_tx`]).
    Permit,
    /// The `transferFrom()` transaction ([`Settlement::transfer_tx`]).
    Transfer,
}

impl JournalSlot {
    /// The state a job is saved in once the slot holds its transaction.
    ///
    /// ```
    /// # use pay402_server::x402_mock::{JournalSlot, SettlementState};
    /// assert!(!JournalSlot::Permit.state().is_final());
    /// ```
    pub fn state(self) -> SettlementState {
        match self {
            JournalSlot::Permit => SettlementState::PermitSent,
            JournalSlot::Transfer => SettlementState::TransferSent,
        }
    }

    /// `job` with `tx` journaled in this slot, in [`JournalSlot::state`],
    /// changed at `now`.
    ///
    /// ```
    /// # use pay402_server::x402_mock::{JournalSlot, Settlement, SettlementState};
    /// # fn f(job: &Settlement, tx: pay402_core::x402::mock_chain::SignedTx) {
    /// let saved = JournalSlot::Transfer.journal(job, tx.clone(), 1_700_000_000);
    /// assert_eq!(saved.transfer_tx, Some(tx));
    /// assert_eq!(saved.state, SettlementState::TransferSent);
    /// # }
    /// ```
    pub fn journal(self, job: &Settlement, tx: SignedTx, now: u64) -> Settlement {
        let mut saved = job.clone();
        match self {
            JournalSlot::Permit => saved.permit_tx = Some(tx),
            JournalSlot::Transfer => saved.transfer_tx = Some(tx),
        }
        saved.state = self.state();
        saved.updated_at = now;
        saved
    }
}

/// Signs the job's next transaction with the spender nonce it is given (no
/// I/O: see `PermitSettler::sign_at`).
///
/// ```
/// use pay402_core::x402::mock_chain::SignedTx;
/// use pay402_core::x402::evm::{Bytes32, EvmAddress};
/// use pay402_server::x402_mock::SignTxWith;
/// let sign: SignTxWith<'_> = &|nonce| Ok(SignedTx { hash: Bytes32([1; 32]), raw: vec![2], sender: EvmAddress::default(), sender_nonce: nonce });
/// assert_eq!(sign(9).unwrap().sender_nonce, 9);
/// ```
pub type SignTxWith<'a> = &'a (dyn Fn(u64) -> Result<SignedTx, MockChainError> + Send + Sync);

/// What [`SettlementStore::sign_and_journal`] is asked to do: allocate
/// `sender`'s next nonce on the job's chain (at least `floor`), sign with
/// `sign`, and save `job` with the transaction in `slot`, while the job
/// still carries the lease `job.lease_until`.
///
/// ```
/// use pay402_core::x402::mock_chain::SignedTx;
/// use pay402_server::x402_mock::{JournalNext, JournalSlot, Settlement};
/// # fn f(job: &Settlement, sign: &(dyn Fn(u64) -> Result<SignedTx, pay402_core::x402::mock_chain::MockChainError> + Send + Sync)) {
/// let next = JournalNext { job, slot: JournalSlot::Permit, sender: job.job.permit.spender, floor: 4, sign, now: 1_700_000_000 };
/// assert!(format!("{next:?}").contains("floor: 4"));
/// # }
/// ```
#[derive(Clone, Copy)]
pub struct JournalNext<'a> {
    /// The job as the worker holds it; its `lease_until` is the lease the
    /// worker was given, which the stored job must still carry.
    pub job: &'a Settlement,
    /// Where the signed transaction goes.
    pub slot: JournalSlot,
    /// The account that signs (the spender).
    pub sender: EvmAddress,
    /// The least nonce to allocate: the chain's pending nonce.
    pub floor: u64,
    /// Signs with the allocated nonce.
    pub sign: SignTxWith<'a>,
    /// The time of the change (unix seconds).
    pub now: u64,
}

impl std::fmt::Debug for JournalNext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalNext")
            .field("job", &self.job.id)
            .field("slot", &self.slot)
            .field("sender", &self.sender)
            .field("floor", &self.floor)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Where settlement jobs and token revocations live.
///
/// ```
/// use pay402_server::x402_mock::{MemorySettlementStore, SettlementStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemorySettlementStore::new();
/// let jti = pay402_core::x402::evm::Bytes32([9; 32]);
/// store.revoke(&jti, 4_000_000_000, "transfer_reverted").await.unwrap();
/// assert!(store.is_revoked(&jti).await.unwrap());
/// # });
/// ```
#[async_trait]
pub trait SettlementStore: Send + Sync + 'static {
    /// Adds a job; [`QueueError::Duplicate`] when a job that is not
    /// [`Failed`](SettlementState::Failed) holds the same
    /// `(chain, token, owner, nonce)`. Atomic.
    async fn enqueue(&self, job: NewSettlement) -> Result<i64, QueueError>;
    /// Leases up to `limit` jobs that are not final, due (`next_attempt_at
    /// <= now`) and not leased (`lease_until <= now`), until `lease_until`
    /// (which must be later than `now`: each claim then writes a lease
    /// value no earlier claim of the job wrote, and that value is what
    /// [`SettlementStore::save`] checks).
    async fn claim_due(
        &self,
        now: u64,
        lease_until: u64,
        limit: u32,
    ) -> Result<Vec<Settlement>, QueueError>;
    /// Saves a job's mutable fields (state, journal, attempts, times,
    /// errors, and `lease_until`, 0 to release it) if the stored job still
    /// carries `held_lease`, the lease the caller was given (by
    /// [`claim_due`](SettlementStore::claim_due), or by its own last save);
    /// atomic (one conditional `UPDATE`). [`QueueError::LeaseLost`] when
    /// the lease changed (another worker claimed the job), and nothing is
    /// written; [`QueueError::Corrupt`] when there is no such job.
    async fn save(&self, job: &Settlement, held_lease: u64) -> Result<(), QueueError>;
    /// In one atomic step: checks that the stored job still carries
    /// `next.job.lease_until`, allocates the next account nonce of
    /// `(next.job`'s chain, `next.sender)` — at least `next.floor` and
    /// never one allocated before, by any process on the store — calls
    /// `next.sign` with it, and saves the job with the signed transaction
    /// in `next.slot` ([`JournalSlot::journal`]). Returns the signed
    /// transaction. [`QueueError::LeaseLost`] (nothing allocated, nothing
    /// signed) when another worker took the job over;
    /// [`QueueError::Corrupt`] when there is no such job or the signature
    /// does not carry the allocated nonce; a `sign` error allocates nothing
    /// and is [`QueueError::Unavailable`].
    async fn sign_and_journal(&self, next: JournalNext<'_>) -> Result<SignedTx, QueueError>;
    /// The next spender nonce `(chain_id, sender)` would get, if one was
    /// allocated.
    async fn next_sender_nonce(
        &self,
        chain_id: u64,
        sender: EvmAddress,
    ) -> Result<Option<u64>, QueueError>;
    /// A job by id.
    async fn get(&self, id: i64) -> Result<Option<Settlement>, QueueError>;
    /// The live (not [`Failed`](SettlementState::Failed)) job holding the
    /// permit nonce `(chain_id, token, owner, nonce)`, if any (at most one:
    /// see [`SettlementStore::enqueue`]). The worker asks it for the
    /// payer's previous nonce before executing a permit, which would
    /// otherwise overwrite an allowance that job still needs.
    async fn live(
        &self,
        chain_id: u64,
        token: EvmAddress,
        owner: EvmAddress,
        nonce: U256,
    ) -> Result<Option<Settlement>, QueueError>;
    /// Revokes the access token `jti` (idempotent).
    async fn revoke(&self, jti: &Bytes32, exp: u64, reason: &str) -> Result<(), QueueError>;
    /// Whether the access token `jti` is revoked.
    async fn is_revoked(&self, jti: &Bytes32) -> Result<bool, QueueError>;
}

#[async_trait]
impl<T: SettlementStore + ?Sized> SettlementStore for std::sync::Arc<T> {
    async fn enqueue(&self, job: NewSettlement) -> Result<i64, QueueError> {
        (**self).enqueue(job).await
    }
    async fn claim_due(
        &self,
        now: u64,
        lease_until: u64,
        limit: u32,
    ) -> Result<Vec<Settlement>, QueueError> {
        (**self).claim_due(now, lease_until, limit).await
    }
    async fn save(&self, job: &Settlement, held_lease: u64) -> Result<(), QueueError> {
        (**self).save(job, held_lease).await
    }
    async fn sign_and_journal(&self, next: JournalNext<'_>) -> Result<SignedTx, QueueError> {
        (**self).sign_and_journal(next).await
    }
    async fn next_sender_nonce(
        &self,
        chain_id: u64,
        sender: EvmAddress,
    ) -> Result<Option<u64>, QueueError> {
        (**self).next_sender_nonce(chain_id, sender).await
    }
    async fn get(&self, id: i64) -> Result<Option<Settlement>, QueueError> {
        (**self).get(id).await
    }
    async fn live(
        &self,
        chain_id: u64,
        token: EvmAddress,
        owner: EvmAddress,
        nonce: U256,
    ) -> Result<Option<Settlement>, QueueError> {
        (**self).live(chain_id, token, owner, nonce).await
    }
    async fn revoke(&self, jti: &Bytes32, exp: u64, reason: &str) -> Result<(), QueueError> {
        (**self).revoke(jti, exp, reason).await
    }
    async fn is_revoked(&self, jti: &Bytes32) -> Result<bool, QueueError> {
        (**self).is_revoked(jti).await
    }
}

/// The key that at most one live job may hold.
fn nonce_key(p: &MockPermit) -> (u64, EvmAddress, EvmAddress, String) {
    (p.chain_id, p.token, p.owner, p.nonce.to_string())
}

#[derive(Debug, Default)]
struct Memory {
    jobs: Vec<Settlement>,
    revoked: HashSet<Bytes32>,
    /// The next spender nonce per `(chain, lowercase address)`.
    nonces: HashMap<(u64, String), u64>,
}

/// The nonce counter key of a sender (the facilitator's, so both count
/// one address alike).
fn sender_key(chain_id: u64, sender: EvmAddress) -> (u64, String) {
    pay402_core::x402::settlements::signer_key(chain_id, &sender.to_string())
}

/// Refuses a signature that does not carry the nonce it was given.
fn check_signed(tx: SignedTx, nonce: u64) -> Result<SignedTx, QueueError> {
    if tx.sender_nonce == nonce {
        Ok(tx)
    } else {
        Err(QueueError::Corrupt(format!(
            "asked to sign with nonce {nonce}, signed with {}",
            tx.sender_nonce
        )))
    }
}

/// Calls the signer, mapping its error (nothing allocated).
fn sign_with(next: &JournalNext<'_>, nonce: u64) -> Result<SignedTx, QueueError> {
    let tx =
        (next.sign)(nonce).map_err(|e| QueueError::Unavailable(format!("cannot sign: {e}")))?;
    check_signed(tx, nonce)
}

/// An in-memory queue (lost on restart; for tests and demos).
///
/// ```
/// let store = pay402_server::x402_mock::MemorySettlementStore::new();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug, Default)]
pub struct MemorySettlementStore {
    inner: Mutex<Memory>,
}

impl MemorySettlementStore {
    /// An empty queue.
    ///
    /// ```
    /// let _ = pay402_server::x402_mock::MemorySettlementStore::new();
    /// ```
    pub fn new() -> MemorySettlementStore {
        MemorySettlementStore::default()
    }

    /// How many jobs it holds (all states).
    ///
    /// ```
    /// assert!(pay402_server::x402_mock::MemorySettlementStore::new().is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.jobs.len()).unwrap_or(0)
    }

    /// Whether it holds no job.
    ///
    /// ```
    /// assert!(pay402_server::x402_mock::MemorySettlementStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Memory>, QueueError> {
        self.inner
            .lock()
            .map_err(|_| QueueError::Unavailable("memory queue lock poisoned".into()))
    }
}

#[async_trait]
impl SettlementStore for MemorySettlementStore {
    async fn enqueue(&self, job: NewSettlement) -> Result<i64, QueueError> {
        let mut m = self.lock()?;
        let key = nonce_key(&job.permit);
        if let Some(live) = m
            .jobs
            .iter()
            .find(|s| s.state != SettlementState::Failed && nonce_key(&s.job.permit) == key)
        {
            return Err(QueueError::Duplicate {
                same_permit: live.job.digest == job.digest,
            });
        }
        let id = i64::try_from(m.jobs.len())
            .map_err(|_| QueueError::Unavailable("queue full".into()))?
            + 1;
        m.jobs.push(Settlement::new(id, job));
        Ok(id)
    }

    async fn claim_due(
        &self,
        now: u64,
        lease_until: u64,
        limit: u32,
    ) -> Result<Vec<Settlement>, QueueError> {
        let mut m = self.lock()?;
        // Earliest due first, like the database stores.
        let mut due: Vec<&mut Settlement> = m
            .jobs
            .iter_mut()
            .filter(|s| !s.state.is_final() && s.next_attempt_at <= now && s.lease_until <= now)
            .collect();
        due.sort_by_key(|s| (s.next_attempt_at, s.id));
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|s| {
                s.lease_until = lease_until;
                s.clone()
            })
            .collect())
    }

    async fn save(&self, job: &Settlement, held_lease: u64) -> Result<(), QueueError> {
        let mut m = self.lock()?;
        let slot = m
            .jobs
            .iter_mut()
            .find(|s| s.id == job.id)
            .ok_or_else(|| QueueError::Corrupt(format!("no settlement {}", job.id)))?;
        if slot.lease_until != held_lease {
            return Err(QueueError::LeaseLost { id: job.id });
        }
        *slot = job.clone();
        Ok(())
    }

    async fn sign_and_journal(&self, next: JournalNext<'_>) -> Result<SignedTx, QueueError> {
        let mut guard = self.lock()?;
        let m = &mut *guard;
        let id = next.job.id;
        let slot = m
            .jobs
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| QueueError::Corrupt(format!("no settlement {id}")))?;
        if slot.lease_until != next.job.lease_until {
            return Err(QueueError::LeaseLost { id });
        }
        let counter = m
            .nonces
            .entry(sender_key(next.job.job.permit.chain_id, next.sender))
            .or_insert(0);
        let nonce = (*counter).max(next.floor);
        let tx = sign_with(&next, nonce)?;
        *counter = nonce.saturating_add(1);
        *slot = next.slot.journal(next.job, tx.clone(), next.now);
        Ok(tx)
    }

    async fn next_sender_nonce(
        &self,
        chain_id: u64,
        sender: EvmAddress,
    ) -> Result<Option<u64>, QueueError> {
        Ok(self
            .lock()?
            .nonces
            .get(&sender_key(chain_id, sender))
            .copied())
    }

    async fn get(&self, id: i64) -> Result<Option<Settlement>, QueueError> {
        Ok(self.lock()?.jobs.iter().find(|s| s.id == id).cloned())
    }

    async fn live(
        &self,
        chain_id: u64,
        token: EvmAddress,
        owner: EvmAddress,
        nonce: U256,
    ) -> Result<Option<Settlement>, QueueError> {
        let key = (chain_id, token, owner, nonce.to_string());
        Ok(self
            .lock()?
            .jobs
            .iter()
            .find(|s| s.state != SettlementState::Failed && nonce_key(&s.job.permit) == key)
            .cloned())
    }

    async fn revoke(&self, jti: &Bytes32, _exp: u64, _reason: &str) -> Result<(), QueueError> {
        self.lock()?.revoked.insert(*jti);
        Ok(())
    }

    async fn is_revoked(&self, jti: &Bytes32) -> Result<bool, QueueError> {
        Ok(self.lock()?.revoked.contains(jti))
    }
}
