//! [`LocalFacilitator::reconcile`]: finishes, or reports, the settlements a
//! crashed (or stopped) facilitator left in its settlement store, from what
//! the chain says.
//!
//! For every `claimed` or `sent` claim whose lease ran out (a live settle
//! is left alone), the reconcile takes the claim over and:
//!
//! | the claim | the chain | then |
//! |---|---|---|
//! | `sent` (a transaction recorded) | its receipt: mined, moved the payment | recorded `succeeded`: [`Reconciled::Settled`] |
//! | | mined, reverted (and no other transaction settled it) | recorded `failed`: [`Reconciled::Failed`] (the authorization may be presented again) |
//! | | in the mempool, or unknown to the node and sent again verbatim (same nonce) | waits up to the receipt timeout, then [`Reconciled::Pending`] |
//! | | its nonce taken by another transaction | handled as never signed (below) |
//! | `claimed` (never signed) | `authorizationState(from, nonce)` used, and the payment's transfer found | recorded `succeeded`: [`Reconciled::Settled`] |
//! | | unused | the claim is dropped: [`Reconciled::Released`] (nothing moved; the payer's retry settles it) |
//!
//! Anything it cannot decide (the node unreachable, an unreadable record)
//! is [`Reconciled::Unresolved`] and stays for the next run. Then, for each
//! settling account, a store nonce counter ahead of the chain's pending
//! nonce with no live claim left is a **nonce gap** (an allocated nonce
//! whose transaction never reached the node): each missing nonce gets a
//! zero-value transfer to the account itself, so later transactions are
//! not stuck ([`NonceGap`]).
//!
//! `pay402 facilitator` runs it at start and then every claim lease;
//! `pay402 facilitator reconcile` runs it once and prints the report.

use alloy::primitives::B256;
use pay402_core::x402::PaymentRequest;
use pay402_core::x402::settlements::{
    AuthorizationKey, Claimed, Outcome, OwnerId, SettlementRecord, SettlementState,
};

use super::chain::{SendError, Waited, moved};
use super::contract::{IEip3009, Movement};
use super::local::{
    LocalFacilitator, new_owner, recorded_transaction, store_unavailable, unavailable,
};
use pay402_core::x402::FacilitatorError;

/// The most nonce fillers one reconcile sends per account.
const MAX_FILLERS: u64 = 64;

/// What a reconcile did with one unfinished settlement.
///
/// ```
/// use pay402_backends::x402::Reconciled;
/// let r = Reconciled::Settled { transaction: "0xabc".into() };
/// assert_eq!(r.as_str(), "settled");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reconciled {
    /// Mined and the payment moved (by this transaction).
    Settled {
        /// The settling transaction.
        transaction: String,
    },
    /// Mined and reverted; nothing moved.
    Failed {
        /// The reverted transaction.
        transaction: String,
    },
    /// Sent (or sent again), not mined within the receipt timeout.
    Pending {
        /// The transaction.
        transaction: String,
    },
    /// Never signed and the authorization is unused: the claim is dropped.
    Released,
    /// A live settle holds it: left alone.
    InProgress,
    /// Could not be decided now.
    Unresolved {
        /// Why.
        message: String,
    },
}

impl Reconciled {
    /// A short name (`settled`, `failed`, `pending`, `released`,
    /// `in_progress`, `unresolved`).
    ///
    /// ```
    /// assert_eq!(pay402_backends::x402::Reconciled::Released.as_str(), "released");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Reconciled::Settled { .. } => "settled",
            Reconciled::Failed { .. } => "failed",
            Reconciled::Pending { .. } => "pending",
            Reconciled::Released => "released",
            Reconciled::InProgress => "in_progress",
            Reconciled::Unresolved { .. } => "unresolved",
        }
    }
}

/// One settlement a reconcile looked at.
///
/// ```
/// use pay402_backends::x402::{ReconciledSettlement, Reconciled};
/// let r = ReconciledSettlement { authorization: "31337/0xa/0xb/0xc".into(), outcome: Reconciled::Released };
/// assert_eq!(r.outcome, Reconciled::Released);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReconciledSettlement {
    /// The authorization key (`chain/token/from/nonce`).
    pub authorization: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Reconciled,
}

/// A settling account whose allocated nonces ran ahead of the chain.
///
/// ```
/// use pay402_backends::x402::NonceGap;
/// let g = NonceGap { signer: "0xabc".into(), chain_pending: 4, store_next: 6, filled: 2 };
/// assert_eq!(g.store_next - g.chain_pending, g.filled);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NonceGap {
    /// The account.
    pub signer: String,
    /// The chain's pending nonce.
    pub chain_pending: u64,
    /// The store's next nonce.
    pub store_next: u64,
    /// How many zero-value fillers were sent.
    pub filled: u64,
}

/// What [`LocalFacilitator::reconcile`] found and did.
///
/// ```
/// let r = pay402_backends::x402::ReconcileReport::default();
/// assert!(r.settlements.is_empty() && r.nonce_gaps.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// The unfinished settlements, oldest first.
    pub settlements: Vec<ReconciledSettlement>,
    /// The nonce gaps found (and filled).
    pub nonce_gaps: Vec<NonceGap>,
}

impl LocalFacilitator {
    /// Finishes or reports up to `limit` unfinished settlements of the
    /// settlement store, then fills nonce gaps (see the [module
    /// docs](crate::x402::reconcile)). Sends only what was already signed, and nonce fillers.
    ///
    /// # Errors
    ///
    /// [`FacilitatorError::Unavailable`] when the store cannot be listed;
    /// per-settlement problems are [`Reconciled::Unresolved`] entries.
    ///
    /// ```no_run
    /// # async fn f(fac: &pay402_backends::x402::LocalFacilitator) -> Result<(), pay402_core::x402::FacilitatorError> {
    /// let report = fac.reconcile(100).await?;
    /// for s in &report.settlements {
    ///     println!("{} {}", s.authorization, s.outcome.as_str());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn reconcile(&self, limit: usize) -> Result<ReconcileReport, FacilitatorError> {
        let store = &self.inner.settlements;
        let records = store.unfinished(limit).await.map_err(store_unavailable)?;
        let mut report = ReconcileReport::default();
        for record in &records {
            let outcome = self.reconcile_one(record).await;
            tracing::info!(
                authorization = %record.key,
                outcome = outcome.as_str(),
                "reconciled settlement"
            );
            report.settlements.push(ReconciledSettlement {
                authorization: record.key.to_string(),
                outcome,
            });
        }
        let busy = report.settlements.iter().any(|s| {
            matches!(
                s.outcome,
                Reconciled::InProgress | Reconciled::Pending { .. }
            )
        });
        if !busy {
            report.nonce_gaps = self.fill_gaps().await?;
        }
        Ok(report)
    }

    async fn reconcile_one(&self, record: &SettlementRecord) -> Reconciled {
        let now = (self.inner.clock)();
        if record.is_live(now) {
            return Reconciled::InProgress;
        }
        let owner = new_owner();
        let lease = now.saturating_add_secs(self.inner.claim_lease.as_secs());
        let store = &self.inner.settlements;
        let taken = match store
            .claim(&record.key, &owner, &record.request, lease, now)
            .await
        {
            Ok(Claimed::TakenOver(r)) => r,
            Ok(Claimed::Held(r)) if r.state.is_final() => {
                return match r.transaction {
                    Some(transaction) => Reconciled::Settled { transaction },
                    None => Reconciled::InProgress,
                };
            }
            Ok(Claimed::Held(_)) => return Reconciled::InProgress,
            Ok(Claimed::New) => {
                // Gone in between (finished and pruned): nothing to do.
                let _ = store.release(&record.key, &owner).await;
                return Reconciled::Released;
            }
            Err(e) => return unresolved(e),
        };
        let movement = match PaymentRequest::from_json_slice(taken.request.as_bytes())
            .map_err(|e| FacilitatorError::Unavailable(format!("unreadable request: {e}")))
            .and_then(|request| self.movement_of(&request))
        {
            Ok(Some(m)) => m,
            Ok(None) => {
                return self
                    .give_up(&taken.key, &owner, "not a payment to payTo")
                    .await;
            }
            Err(e) => return unresolved(e),
        };
        let out = match taken.state {
            SettlementState::Sent => self.reconcile_sent(&taken, &owner, &movement).await,
            _ => self.reconcile_unsigned(&taken.key, &owner, &movement).await,
        };
        out.unwrap_or_else(unresolved)
    }

    /// A claim with a recorded transaction.
    async fn reconcile_sent(
        &self,
        r: &SettlementRecord,
        owner: &OwnerId,
        movement: &Movement,
    ) -> Result<Reconciled, FacilitatorError> {
        let chain = &self.inner.chain;
        let Some((hash, raw)) = recorded_transaction(r) else {
            return Ok(Reconciled::Unresolved {
                message: "a sent settlement without its transaction".into(),
            });
        };
        if chain.receipt(hash).await.map_err(unavailable)?.is_none()
            && !chain.is_known(hash).await.map_err(unavailable)?
        {
            match chain.broadcast(&raw).await {
                Ok(()) => tracing::warn!(%hash, "sent a recorded settlement transaction again"),
                Err(SendError::NonceUsed(_)) => {
                    if chain.receipt(hash).await.map_err(unavailable)?.is_none() {
                        // Replaced: this transaction can never be mined.
                        self.inner
                            .settlements
                            .unsend(&r.key, owner, (self.inner.clock)())
                            .await
                            .map_err(store_unavailable)?;
                        return self.reconcile_unsigned(&r.key, owner, movement).await;
                    }
                }
                Err(SendError::Rejected(m)) => {
                    return Ok(Reconciled::Unresolved {
                        message: format!("the node refuses the recorded transaction {hash}: {m}"),
                    });
                }
                Err(SendError::Ambiguous(_)) => {
                    return Ok(Reconciled::Pending {
                        transaction: hash.to_string(),
                    });
                }
            }
        }
        let receipt = match chain.wait_receipt(hash, self.inner.receipt_timeout).await {
            Waited::Mined(receipt) => receipt,
            Waited::NotYet => {
                return Ok(Reconciled::Pending {
                    transaction: hash.to_string(),
                });
            }
        };
        if receipt.status() && moved(&receipt, movement) {
            return self.record(&r.key, owner, Outcome::Succeeded, hash).await;
        }
        // Reverted: did another transaction settle it first?
        if let Some(tx) = chain.find_settlement(movement).await.map_err(unavailable)? {
            return self.record(&r.key, owner, Outcome::Succeeded, tx).await;
        }
        self.record(&r.key, owner, Outcome::Failed, hash).await
    }

    /// A claim that never got a transaction (or lost its nonce).
    async fn reconcile_unsigned(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        movement: &Movement,
    ) -> Result<Reconciled, FacilitatorError> {
        let chain = &self.inner.chain;
        let state = IEip3009::authorizationStateCall {
            authorizer: movement.from,
            nonce: movement.nonce,
        };
        let used = chain
            .call(self.simulator_address(), movement.asset, &state)
            .await
            .map_err(unavailable)?;
        if used {
            if let Some(tx) = chain.find_settlement(movement).await.map_err(unavailable)? {
                return self.record(key, owner, Outcome::Succeeded, tx).await;
            }
            return Ok(self
                .give_up(key, owner, "the nonce was used by another authorization")
                .await);
        }
        self.inner
            .settlements
            .release(key, owner)
            .await
            .map_err(store_unavailable)?;
        Ok(Reconciled::Released)
    }

    async fn record(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        outcome: Outcome,
        tx: B256,
    ) -> Result<Reconciled, FacilitatorError> {
        let transaction = tx.to_string();
        let reason = (outcome == Outcome::Failed).then_some(super::TRANSACTION_FAILED);
        self.inner
            .settlements
            .finish(
                key,
                owner,
                outcome,
                Some(&transaction),
                reason,
                (self.inner.clock)(),
            )
            .await
            .map_err(store_unavailable)?;
        Ok(match outcome {
            Outcome::Succeeded => Reconciled::Settled { transaction },
            Outcome::Failed => Reconciled::Failed { transaction },
        })
    }

    /// Records a claim that can never settle as failed.
    async fn give_up(&self, key: &AuthorizationKey, owner: &OwnerId, why: &str) -> Reconciled {
        let now = (self.inner.clock)();
        let reason = Some(super::reasons::NONCE_ALREADY_USED);
        match self
            .inner
            .settlements
            .finish(key, owner, Outcome::Failed, None, reason, now)
            .await
        {
            Ok(_) => Reconciled::Unresolved {
                message: format!("recorded failed: {why}"),
            },
            Err(e) => unresolved(e),
        }
    }

    /// Fills the nonces allocated in the store that never reached the node.
    async fn fill_gaps(&self) -> Result<Vec<NonceGap>, FacilitatorError> {
        let chain = &self.inner.chain;
        let mut gaps = Vec::new();
        for signer in &self.inner.signers {
            let address = signer.address.to_string();
            let Some(next) = self
                .inner
                .settlements
                .next_nonce(chain.chain_id, &address)
                .await
                .map_err(store_unavailable)?
            else {
                continue;
            };
            let pending = chain
                .pending_nonce(signer.address)
                .await
                .map_err(unavailable)?;
            if pending >= next {
                continue;
            }
            let fees = chain.fees().await.map_err(unavailable)?;
            let mut filled = 0;
            for nonce in pending..next.min(pending.saturating_add(MAX_FILLERS)) {
                let sent = match signer.sign_filler(chain.chain_id, nonce, fees) {
                    Ok(raw) => chain.broadcast(&raw).await.is_ok(),
                    Err(_) => false,
                };
                if sent {
                    filled += 1;
                }
            }
            tracing::warn!(signer = %address, pending, next, filled, "nonce gap");
            gaps.push(NonceGap {
                signer: address,
                chain_pending: pending,
                store_next: next,
                filled,
            });
        }
        Ok(gaps)
    }

    fn simulator_address(&self) -> alloy::primitives::Address {
        self.inner
            .signers
            .first()
            .map(|s| s.address)
            .unwrap_or_default()
    }
}

fn unresolved(e: impl std::fmt::Display) -> Reconciled {
    Reconciled::Unresolved {
        message: e.to_string(),
    }
}
