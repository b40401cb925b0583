//! A `SettlementStore` that passes every call to a real x402_mock queue and
//! lets a test watch, or hold back, what the worker gets from it: tallies
//! of claims and saves, and stall injection between a claim and the work.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock_chain::{SignedTx, U256};
use pay402_server::x402_mock::{
    JournalNext, NewSettlement, QueueError, Settlement, SettlementStore,
};

/// What a test does around the real store's calls.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// After a claim leased `jobs` in the real store, before the worker
    /// gets them (awaiting here stalls the worker, its leases running).
    async fn claimed(&self, _jobs: &[Settlement]) {}
    /// After a save of `job`, with what the real store answered.
    fn saved(&self, _job: &Settlement, _outcome: &Result<(), QueueError>) {}
    /// After the store allocated a nonce, signed and journaled a
    /// transaction for `job` (or refused to), with what it answered.
    fn signed(&self, _job: &Settlement, _outcome: &Result<SignedTx, QueueError>) {}
}

/// The real store `inner`, with `hooks` around its claims and saves.
pub struct Hooked<H> {
    pub inner: Arc<dyn SettlementStore>,
    pub hooks: H,
}

#[async_trait]
impl<H: Hooks> SettlementStore for Hooked<H> {
    async fn enqueue(&self, job: NewSettlement) -> Result<i64, QueueError> {
        self.inner.enqueue(job).await
    }
    async fn claim_due(
        &self,
        now: u64,
        lease_until: u64,
        limit: u32,
    ) -> Result<Vec<Settlement>, QueueError> {
        let jobs = self.inner.claim_due(now, lease_until, limit).await?;
        self.hooks.claimed(&jobs).await;
        Ok(jobs)
    }
    async fn save(&self, job: &Settlement, held_lease: u64) -> Result<(), QueueError> {
        let outcome = self.inner.save(job, held_lease).await;
        self.hooks.saved(job, &outcome);
        outcome
    }
    async fn sign_and_journal(&self, next: JournalNext<'_>) -> Result<SignedTx, QueueError> {
        let outcome = self.inner.sign_and_journal(next).await;
        self.hooks.signed(next.job, &outcome);
        outcome
    }
    async fn next_sender_nonce(
        &self,
        chain_id: u64,
        sender: EvmAddress,
    ) -> Result<Option<u64>, QueueError> {
        self.inner.next_sender_nonce(chain_id, sender).await
    }
    async fn get(&self, id: i64) -> Result<Option<Settlement>, QueueError> {
        self.inner.get(id).await
    }
    async fn live(
        &self,
        chain_id: u64,
        token: EvmAddress,
        owner: EvmAddress,
        nonce: U256,
    ) -> Result<Option<Settlement>, QueueError> {
        self.inner.live(chain_id, token, owner, nonce).await
    }
    async fn revoke(&self, jti: &Bytes32, exp: u64, reason: &str) -> Result<(), QueueError> {
        self.inner.revoke(jti, exp, reason).await
    }
    async fn is_revoked(&self, jti: &Bytes32) -> Result<bool, QueueError> {
        self.inner.is_revoked(jti).await
    }
}
