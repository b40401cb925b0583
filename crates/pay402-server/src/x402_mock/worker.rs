//! The settlement worker: drives each queued permit to `permit()` +
//! `transferFrom()` on chain, journaling every signed transaction first.
//!
//! Per job, a small state machine ([`SettlementState`]):
//!
//! ```text
//! queued ──nonce == permit.nonce──▶ sign permit() ─journal─▶ permit_sent ──mined ok──▶ permit_done
//!   │  │                └─ the payer's job for nonce - 1 not final yet: wait (no attempt counted)
//!   │  └─nonce consumed: allowance ≥ amount ─────────────────────────────────────────────▲
//!   │                     allowance too low ─▶ failed (permit_nonce_consumed)
//! permit_done ──sign transferFrom() (reverts? ─▶ failed: transfer_reverted) ─journal─▶ transfer_sent
//! transfer_sent ──mined ok──▶ settled      mined reverted ──▶ failed (transfer_reverted)
//! *_sent, no receipt: re-broadcast the journaled bytes and wait (bounded); if the spender's
//!        mined nonce passed the transaction's nonce without it, it was replaced: step back.
//! ```
//!
//! Every transaction is signed with a spender nonce the store allocates in
//! the step that journals it ([`SettlementStore::sign_and_journal`]): the
//! workers of every process on one database share one counter per spender
//! key, so they never sign two transactions with one nonce. When a job
//! fails for good while its journaled transaction is unmined and its nonce
//! unused, the worker fills that nonce with a zero-value transfer to the
//! spender itself, so the key's later transactions are not stuck behind it.
//!
//! A `transferFrom()` is signed again only when the journaled one provably
//! can never be mined (its sender nonce is used by another mined
//! transaction), so a job never pays twice. Transient errors are retried
//! with exponential backoff up to [`RetryPolicy::max_attempts`]; a final
//! failure revokes the job's access token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pay402_core::problem::Reason;
use pay402_core::x402::EvmTimestamp;
use pay402_core::x402::mock_chain::{
    MockChainError, PermitSettler, PreparedCall, SignedTx, TxStatus, U256,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::config::RetryPolicy;
use super::queue::{
    JournalNext, JournalSlot, QueueError, Settlement, SettlementState, SettlementStore,
};

/// Most state transitions tried for one job in one attempt.
const MAX_STEPS: usize = 12;
/// Jobs leased per query.
const BATCH: u32 = 16;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

enum Next {
    /// Take the next transition now.
    Continue,
    /// Try again later (transient), with this note.
    Later(String),
    /// Not yet: try again after the base delay, without counting an
    /// attempt (another job must finish first), with this note.
    Wait(String),
    /// Settled or failed for good.
    Finished,
}

enum StepError {
    Chain(MockChainError),
    Store(QueueError),
}

impl From<MockChainError> for StepError {
    fn from(e: MockChainError) -> StepError {
        StepError::Chain(e)
    }
}

impl From<QueueError> for StepError {
    fn from(e: QueueError) -> StepError {
        StepError::Store(e)
    }
}

/// Settles queued permits. Usually started with
/// [`MockPaywall::spawn_worker`](super::MockPaywall::spawn_worker).
///
/// ```no_run
/// use std::sync::Arc;
/// use pay402_server::x402_mock::{SettlementWorker, SqliteSettlementStore, RetryPolicy};
/// # async fn f(chain: Arc<dyn pay402_core::x402::mock_chain::PermitSettler>) {
/// let store = Arc::new(SqliteSettlementStore::open("settlements.sqlite").await.unwrap());
/// let worker = SettlementWorker::new(store, chain, RetryPolicy::default());
/// let processed = worker.run_once().await.unwrap(); // or worker.spawn()
/// # }
/// ```
#[derive(Clone)]
pub struct SettlementWorker {
    store: Arc<dyn SettlementStore>,
    chain: Arc<dyn PermitSettler>,
    policy: RetryPolicy,
    lease: Duration,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for SettlementWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettlementWorker")
            .field("spender", &self.chain.spender())
            .field("policy", &self.policy)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl SettlementWorker {
    /// A worker over `store`, settling with `chain`.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # fn f(chain: Arc<dyn pay402_core::x402::mock_chain::PermitSettler>) {
    /// use pay402_server::x402_mock::{MemorySettlementStore, RetryPolicy, SettlementWorker};
    /// let w = SettlementWorker::new(Arc::new(MemorySettlementStore::new()), chain, RetryPolicy::default());
    /// # }
    /// ```
    pub fn new(
        store: Arc<dyn SettlementStore>,
        chain: Arc<dyn PermitSettler>,
        policy: RetryPolicy,
    ) -> SettlementWorker {
        SettlementWorker::with_wake(store, chain, policy, Arc::new(Notify::new()))
    }

    pub(crate) fn with_wake(
        store: Arc<dyn SettlementStore>,
        chain: Arc<dyn PermitSettler>,
        policy: RetryPolicy,
        wake: Arc<Notify>,
    ) -> SettlementWorker {
        SettlementWorker {
            store,
            chain,
            lease: policy.lease(),
            policy,
            wake,
        }
    }

    /// Sets how long the worker leases each job it takes (whole seconds, at
    /// least one; default four receipt timeouts plus 60 s, see
    /// [`MockConfig::settlement_lease`](super::MockConfig::settlement_lease)).
    ///
    /// ```no_run
    /// # fn f(w: pay402_server::x402_mock::SettlementWorker) {
    /// let w = w.with_lease(std::time::Duration::from_secs(30));
    /// # }
    /// ```
    pub fn with_lease(mut self, lease: Duration) -> SettlementWorker {
        self.lease = lease;
        self
    }

    /// Processes the jobs due now (each until it settles, fails, or has to
    /// wait); returns how many it took.
    ///
    /// ```no_run
    /// # async fn f(w: pay402_server::x402_mock::SettlementWorker) {
    /// while w.run_once().await.unwrap() > 0 {}
    /// # }
    /// ```
    pub async fn run_once(&self) -> Result<usize, QueueError> {
        let now = unix_now();
        let lease = now.saturating_add(secs(self.lease));
        let jobs = self.store.claim_due(now, lease, BATCH).await?;
        let n = jobs.len();
        for job in jobs {
            self.process(job).await;
        }
        Ok(n)
    }

    /// Runs the worker in a background task until
    /// [`WorkerHandle::shutdown`]. It wakes when a job is enqueued through
    /// the paywall, and otherwise every [`RetryPolicy::idle_poll`].
    ///
    /// ```no_run
    /// # async fn f(w: pay402_server::x402_mock::SettlementWorker) {
    /// let handle = w.spawn();
    /// // ... serve ...
    /// handle.shutdown().await;
    /// # }
    /// ```
    pub fn spawn(self) -> WorkerHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let wake = self.wake.clone();
        let task = tokio::spawn(
            self.run(stop_rx)
                .instrument(tracing::info_span!("x402_mock.worker")),
        );
        WorkerHandle {
            stop: stop_tx,
            wake,
            task: Some(task),
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let processed = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(reason = e.reason(), error = %e, "x402_mock.queue_error");
                    0
                }
            };
            if processed > 0 {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.policy.idle_poll) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn process(&self, mut job: Settlement) {
        let span = tracing::info_span!(
            "x402_mock.settle",
            id = job.id,
            payer = %job.job.permit.owner,
            nonce = %job.job.permit.nonce,
            state = %job.state,
        );
        async {
            for _ in 0..MAX_STEPS {
                let result = self.step(&mut job).await;
                let outcome = match result {
                    Ok(Next::Continue) => continue,
                    Ok(Next::Finished) => Ok(()),
                    Ok(Next::Later(note)) => self.later(&mut job, note).await,
                    Ok(Next::Wait(note)) => self.postpone(&mut job, note).await,
                    Err(StepError::Chain(e)) => {
                        tracing::info!(reason = e.reason(), error = %e, "x402_mock.chain_error");
                        self.later(&mut job, e.to_string()).await
                    }
                    Err(StepError::Store(e)) => Err(e),
                };
                if let Err(e) = outcome {
                    // The lease runs out and the job is taken again.
                    tracing::warn!(reason = e.reason(), error = %e, "x402_mock.queue_error");
                }
                return;
            }
            if let Err(e) = self.later(&mut job, "too many steps".into()).await {
                tracing::warn!(reason = e.reason(), error = %e, "x402_mock.queue_error");
            }
        }
        .instrument(span)
        .await
    }

    /// Saves `job` in `state`, keeping its lease (the one `claim_due`
    /// gave): fails with [`QueueError::LeaseLost`], writing nothing, when
    /// another worker took the job over.
    async fn save(&self, job: &mut Settlement, state: SettlementState) -> Result<(), QueueError> {
        let held = job.lease_until;
        self.save_with(job, state, held).await
    }

    /// Saves `job` in `state` and gives its lease up (the last save of an
    /// attempt).
    async fn release(
        &self,
        job: &mut Settlement,
        state: SettlementState,
    ) -> Result<(), QueueError> {
        let held = job.lease_until;
        job.lease_until = 0;
        self.save_with(job, state, held).await
    }

    async fn save_with(
        &self,
        job: &mut Settlement,
        state: SettlementState,
        held: u64,
    ) -> Result<(), QueueError> {
        job.state = state;
        job.updated_at = unix_now();
        self.store.save(job, held).await?;
        tracing::debug!(state = %state, "x402_mock.state");
        Ok(())
    }

    /// Schedules another attempt, or fails the job when attempts run out.
    async fn later(&self, job: &mut Settlement, note: String) -> Result<(), QueueError> {
        job.attempts = job.attempts.saturating_add(1);
        if job.attempts >= self.policy.max_attempts {
            tracing::error!(
                attempts = job.attempts,
                last_error = %note,
                permit_tx = ?job.permit_tx.as_ref().map(|t| t.hash),
                transfer_tx = ?job.transfer_tx.as_ref().map(|t| t.hash),
                "x402_mock.retries_exhausted"
            );
            job.last_error = Some(note);
            let in_flight = match job.state {
                SettlementState::PermitSent => job.permit_tx.clone(),
                SettlementState::TransferSent => job.transfer_tx.clone(),
                _ => None,
            };
            self.fail(job, "settlement_retries_exhausted").await?;
            if let Some(tx) = in_flight {
                self.fill_abandoned_nonce(&tx).await;
            }
            return Ok(());
        }
        let now = unix_now();
        job.next_attempt_at = now.saturating_add(secs(self.policy.delay(job.attempts)));
        tracing::info!(attempts = job.attempts, retry_at = job.next_attempt_at, note = %note, "x402_mock.retry_later");
        job.last_error = Some(note);
        let state = job.state;
        self.release(job, state).await
    }

    /// After a job failed for good with `tx` journaled and in flight: if
    /// it is not mined and the chain has not used its nonce, nothing
    /// resends it now, so its nonce would be a gap that every later transaction of
    /// the key waits behind. Sends a zero-value transfer to the spender
    /// itself with that nonce (best effort, logged). Safe: at most one of
    /// the two is mined, and the job is failed and its token revoked
    /// either way; if the journaled one is still in a pool, the node
    /// refuses the filler as an underpriced replacement and the journaled
    /// one takes the nonce.
    async fn fill_abandoned_nonce(&self, tx: &SignedTx) {
        let filled = async {
            if self.chain.mined_sender_nonce().await? > tx.sender_nonce
                || self.chain.receipt(&tx.hash).await?.is_some()
            {
                return Ok(None);
            }
            let call = self.chain.prepare_nonce_fill().await?;
            let fill = self.chain.sign_at(&call, tx.sender_nonce)?;
            self.chain.broadcast(&fill).await?;
            Ok::<_, MockChainError>(Some(fill.hash))
        }
        .await;
        match filled {
            Ok(Some(fill)) => {
                tracing::warn!(tx = %tx.hash, nonce = tx.sender_nonce, fill = %fill, "x402_mock.nonce_filled");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(tx = %tx.hash, nonce = tx.sender_nonce, reason = e.reason(), error = %e, "x402_mock.nonce_fill_failed");
            }
        }
    }

    /// Tries `job` again after the base delay, its attempts unchanged.
    async fn postpone(&self, job: &mut Settlement, note: String) -> Result<(), QueueError> {
        job.next_attempt_at = unix_now().saturating_add(secs(self.policy.base_delay));
        tracing::info!(retry_at = job.next_attempt_at, note = %note, "x402_mock.waiting");
        job.last_error = Some(note);
        let state = job.state;
        self.release(job, state).await
    }

    /// Why the permit of `job` must not be executed yet: the payer's
    /// previous permit nonce has a job that is neither settled nor failed,
    /// whose `transferFrom()` still needs the allowance this permit would
    /// overwrite (a permit sets the allowance, it does not add to it).
    async fn previous_job_unfinished(
        &self,
        job: &Settlement,
    ) -> Result<Option<String>, QueueError> {
        let p = &job.job.permit;
        if p.nonce.is_zero() {
            return Ok(None);
        }
        let previous = p.nonce - U256::from(1u8);
        let live = self
            .store
            .live(p.chain_id, p.token, p.owner, previous)
            .await?;
        Ok(live.filter(|j| !j.state.is_final()).map(|j| {
            format!(
                "waiting for settlement {} of the payer's permit nonce {previous} ({})",
                j.id, j.state
            )
        }))
    }

    /// Renews the lease on `job` (one conditional save): proves that this
    /// worker still holds it, and keeps it for another lease from now.
    async fn renew(&self, job: &mut Settlement) -> Result<(), QueueError> {
        let held = job.lease_until;
        job.lease_until = unix_now().saturating_add(secs(self.lease)).max(held);
        let state = job.state;
        let renewed = self.save_with(job, state, held).await;
        if renewed.is_err() {
            job.lease_until = held;
        }
        renewed
    }

    /// Revokes the token first, then records the failure (a crash in
    /// between leaves a revoked token and a job that fails again).
    ///
    /// The lease is renewed before anything is revoked: a worker that lost
    /// the job decided on a copy that may be stale (the worker that took it
    /// over may have settled it since, using up the allowance this one now
    /// finds missing), and must not revoke the payer's token.
    async fn fail(&self, job: &mut Settlement, reason: &'static str) -> Result<(), QueueError> {
        self.renew(job).await?;
        self.store
            .revoke(&job.job.digest, job.job.token_exp, reason)
            .await?;
        job.failure = Some(reason.to_owned());
        tracing::warn!(reason, resource = %job.job.resource, "x402_mock.settlement_failed");
        self.release(job, SettlementState::Failed).await
    }

    async fn step(&self, job: &mut Settlement) -> Result<Next, StepError> {
        let permit = job.job.permit.clone();
        let spender = self.chain.spender();
        match job.state {
            SettlementState::Settled | SettlementState::Failed => Ok(Next::Finished),
            SettlementState::Queued => {
                let on_chain = self.chain.nonces(permit.token, permit.owner).await?;
                if on_chain > permit.nonce {
                    // Used already: by our permit (anyone may submit it) or another one.
                    let allowance = self
                        .chain
                        .allowance(permit.token, permit.owner, spender)
                        .await?;
                    if allowance >= job.job.amount {
                        self.save(job, SettlementState::PermitDone).await?;
                        return Ok(Next::Continue);
                    }
                    self.fail(job, "permit_nonce_consumed").await?;
                    return Ok(Next::Finished);
                }
                if on_chain < permit.nonce {
                    return Ok(Next::Later(format!(
                        "on-chain nonce {on_chain} is behind the permit nonce {}",
                        permit.nonce
                    )));
                }
                if permit.deadline < EvmTimestamp::from_u64(unix_now()).0 {
                    self.fail(job, "permit_expired_before_settlement").await?;
                    return Ok(Next::Finished);
                }
                if let Some(note) = self.previous_job_unfinished(job).await? {
                    return Ok(Next::Wait(note));
                }
                let call = match self.chain.prepare_permit(&permit).await {
                    Ok(call) => call,
                    Err(MockChainError::Reverted { detail, .. }) => {
                        // Did the nonce get used meanwhile? Then the branch above decides.
                        if self.chain.nonces(permit.token, permit.owner).await? > permit.nonce {
                            return Ok(Next::Continue);
                        }
                        tracing::warn!(detail = %detail, "x402_mock.permit_reverts");
                        self.fail(job, "permit_reverted").await?;
                        return Ok(Next::Finished);
                    }
                    Err(e) => return Err(e.into()),
                };
                let tx = self
                    .sign_and_journal(job, JournalSlot::Permit, &call)
                    .await?;
                self.chain.broadcast(&tx).await?;
                Ok(Next::Continue)
            }
            SettlementState::PermitSent => {
                let Some(tx) = job.permit_tx.clone() else {
                    self.save(job, SettlementState::Queued).await?;
                    return Ok(Next::Continue);
                };
                // Mined nonce first, then the receipt: a transaction mined in
                // between shows up in the receipt.
                let mined = self.chain.mined_sender_nonce().await?;
                match self.chain.receipt(&tx.hash).await? {
                    Some(TxStatus::Success { block }) => {
                        tracing::info!(tx = %tx.hash, block, "x402_mock.permit_mined");
                        self.save(job, SettlementState::PermitDone).await?;
                        Ok(Next::Continue)
                    }
                    Some(TxStatus::Reverted { block }) => {
                        // No allowance from this transaction; look at the nonce again.
                        tracing::info!(tx = %tx.hash, block, "x402_mock.permit_reverted");
                        job.permit_tx = None;
                        self.save(job, SettlementState::Queued).await?;
                        Ok(Next::Continue)
                    }
                    None if mined > tx.sender_nonce => {
                        tracing::info!(tx = %tx.hash, "x402_mock.permit_replaced");
                        job.permit_tx = None;
                        self.save(job, SettlementState::Queued).await?;
                        Ok(Next::Continue)
                    }
                    None => self.rebroadcast_and_wait(&tx, "permit").await,
                }
            }
            SettlementState::PermitDone => {
                let call = match self
                    .chain
                    .prepare_transfer_from(
                        permit.token,
                        permit.owner,
                        job.job.pay_to,
                        job.job.amount,
                    )
                    .await
                {
                    Ok(call) => call,
                    Err(MockChainError::Reverted { detail, .. }) => {
                        tracing::warn!(detail = %detail, "x402_mock.transfer_reverts");
                        self.fail(job, "transfer_reverted").await?;
                        return Ok(Next::Finished);
                    }
                    Err(e) => return Err(e.into()),
                };
                let tx = self
                    .sign_and_journal(job, JournalSlot::Transfer, &call)
                    .await?;
                self.chain.broadcast(&tx).await?;
                Ok(Next::Continue)
            }
            SettlementState::TransferSent => {
                let Some(tx) = job.transfer_tx.clone() else {
                    self.save(job, SettlementState::PermitDone).await?;
                    return Ok(Next::Continue);
                };
                let mined = self.chain.mined_sender_nonce().await?;
                match self.chain.receipt(&tx.hash).await? {
                    Some(TxStatus::Success { block }) => {
                        job.last_error = None;
                        self.release(job, SettlementState::Settled).await?;
                        tracing::info!(
                            tx = %tx.hash,
                            block,
                            amount = %job.job.amount,
                            pay_to = %job.job.pay_to,
                            "x402_mock.settled"
                        );
                        Ok(Next::Finished)
                    }
                    Some(TxStatus::Reverted { block }) => {
                        tracing::warn!(tx = %tx.hash, block, "x402_mock.transfer_mined_reverted");
                        self.fail(job, "transfer_reverted").await?;
                        Ok(Next::Finished)
                    }
                    None if mined > tx.sender_nonce => {
                        // Never minable any more: a new transferFrom is safe.
                        tracing::info!(tx = %tx.hash, "x402_mock.transfer_replaced");
                        job.transfer_tx = None;
                        self.save(job, SettlementState::PermitDone).await?;
                        Ok(Next::Continue)
                    }
                    None => self.rebroadcast_and_wait(&tx, "transferFrom").await,
                }
            }
        }
    }

    /// Signs `call` with the spender's next nonce, allocated by the store
    /// (shared by every worker on it) in the step that journals the
    /// transaction in `slot` under this worker's lease: a worker that lost
    /// the job signs nothing, and no two workers sign one nonce.
    async fn sign_and_journal(
        &self,
        job: &mut Settlement,
        slot: JournalSlot,
        call: &PreparedCall,
    ) -> Result<SignedTx, StepError> {
        // At least the chain's pending nonce: a key also used elsewhere
        // moves the shared counter up by itself.
        let floor = self.chain.pending_sender_nonce().await?;
        let chain = &self.chain;
        let sign = |nonce: u64| chain.sign_at(call, nonce);
        let now = unix_now();
        let tx = self
            .store
            .sign_and_journal(JournalNext {
                job,
                slot,
                sender: chain.spender(),
                floor,
                sign: &sign,
                now,
            })
            .await?;
        *job = slot.journal(job, tx.clone(), now);
        tracing::debug!(state = %job.state, tx = %tx.hash, nonce = tx.sender_nonce, "x402_mock.state");
        Ok(tx)
    }

    async fn rebroadcast_and_wait(&self, tx: &SignedTx, what: &str) -> Result<Next, StepError> {
        self.chain.broadcast(tx).await?;
        match self
            .chain
            .wait_receipt(&tx.hash, self.policy.receipt_timeout)
            .await?
        {
            Some(_) => Ok(Next::Continue),
            None => Ok(Next::Later(format!(
                "{what} transaction {} not mined yet",
                tx.hash
            ))),
        }
    }
}

/// A running [`SettlementWorker`]. Dropping it without
/// [`WorkerHandle::shutdown`] aborts the task (safe: every signed
/// transaction is journaled before it is sent, so the next worker resumes).
///
/// ```no_run
/// # async fn f(paywall: pay402_server::x402_mock::MockPaywall) {
/// let worker = paywall.spawn_worker();
/// worker.wake();
/// worker.shutdown().await;
/// # }
/// ```
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    wake: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Makes the worker look for due jobs now.
    ///
    /// ```no_run
    /// # fn f(h: &pay402_server::x402_mock::WorkerHandle) {
    /// h.wake();
    /// # }
    /// ```
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the worker after the job it is on, and waits for it.
    ///
    /// ```no_run
    /// # async fn f(h: pay402_server::x402_mock::WorkerHandle) {
    /// h.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
