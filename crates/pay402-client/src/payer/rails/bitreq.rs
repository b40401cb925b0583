//! 21 BitRequests through a [`BitRequests`](crate::bitreq::BitRequests)
//! client: one means per payment method.

use std::sync::Arc;

use async_trait::async_trait;
use pay402_core::offer::{BitreqChallenge, BitreqMethod, Offer, Rail, RailChallenge};
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use reqwest::Request;
use tracing::{info, warn};

use super::{RailMeans, rail_refusal, unresumable};
use crate::bitreq::BitRequests;
use crate::cache::KeyGuard;
use crate::journal::{EntryState, Step};
use crate::payer::error::{PayerError, RefusalReason};
use crate::payer::receipt::{PayerPaid, RailReceipt};
use crate::payer::stored::StoredProof;
use crate::payer::{Inner, Purchase};

/// The journal detail of an on-chain payment the server answered `202`.
const AWAITING_CONFIRMATIONS: &str = "awaiting_confirmations";

pub(crate) struct BitreqMeans {
    client: BitRequests,
}

impl BitreqMeans {
    pub(crate) fn new(client: BitRequests) -> BitreqMeans {
        BitreqMeans { client }
    }

    fn challenge<'o>(&self, offer: &'o Offer) -> Option<&'o BitreqChallenge> {
        match &offer.challenge {
            RailChallenge::BitRequests(c) if bitreq_method(c.method) == self.client.method() => {
                Some(c)
            }
            _ => None,
        }
    }
}

/// The client's payment method of an offer's method.
pub(crate) fn bitreq_method(m: BitreqMethod) -> crate::bitreq::PaymentMethod {
    use crate::bitreq::PaymentMethod;
    match m {
        BitreqMethod::OnChain => PaymentMethod::OnChain,
        BitreqMethod::Transfer => PaymentMethod::BitTransfer,
        BitreqMethod::Channel => PaymentMethod::Channel,
    }
}

#[async_trait]
impl RailMeans for BitreqMeans {
    fn rail(&self) -> Rail {
        Rail::BitRequests
    }

    fn handles(&self, offer: &Offer) -> bool {
        self.challenge(offer).is_some()
    }

    fn check(&self, offer: &Offer, _now: UnixTime) -> Result<Amount, RefusalReason> {
        let c = self.challenge(offer).ok_or(RefusalReason::RailNotEnabled)?;
        let b = &self.client;
        b.rail()
            .check(&c.info, b.max_price())
            .map_err(rail_refusal)?;
        Ok(offer.amount.clone())
    }

    fn may_repay(&self, p: &Purchase) -> Result<(), PayerError> {
        if self.client.method() == crate::bitreq::PaymentMethod::Channel {
            // A channel payment is sent to the channel server as it is made.
            return Err(PayerError::OutcomeUnknown {
                entry: p.id.clone(),
                rail: Rail::BitRequests,
            });
        }
        Ok(())
    }

    async fn pay(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let b = &self.client;
        let c = self
            .challenge(&p.offer)
            .cloned()
            .ok_or_else(|| unresumable(&p, "no BitRequests client for this method"))?;
        let made = match Arc::clone(b.rail())
            .make(c.info.clone(), p.url.clone(), b.max_price())
            .await
        {
            Ok(m) => m,
            Err(e) => {
                inner.fail(&p, e.reason(), e.may_have_paid()).await;
                return Err(PayerError::BitRequests {
                    source: Box::new(e),
                    entry: p.id.clone(),
                    resumed: p.resumed,
                });
            }
        };
        let stored = StoredProof::bitreq(&made);
        inner
            .paid(&p, &stored, made.receipt.proof_id.clone())
            .await?;
        drop(guard);
        present(&inner, b, p, template, made).await
    }

    async fn present_stored(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        proof: StoredProof,
    ) -> Result<PayerPaid, PayerError> {
        let (
            StoredProof::BitRequests {
                headers, proof_id, ..
            },
            Some(c),
        ) = (proof, self.challenge(&p.offer).cloned())
        else {
            return Err(unresumable(&p, "stored proof is of another rail"));
        };
        let stored_proof = pay402_core::bitreq::Proof::from_pairs(
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
        .map_err(|e| unresumable(&p, &e.to_string()))?;
        let made = crate::bitreq::client::Made {
            proof: stored_proof,
            receipt: crate::payer::stored::bitreq_receipt(&c, &p, proof_id),
            onchain: None,
        };
        present(&inner, &self.client, p, template, made).await
    }
}

async fn present(
    inner: &Inner,
    b: &BitRequests,
    p: Purchase,
    template: Request,
    made: crate::bitreq::client::Made,
) -> Result<PayerPaid, PayerError> {
    use crate::bitreq::BitRequestsError;
    inner.presenting(&p).await?;
    let proof_id = made.receipt.proof_id.clone();
    match b.rail().present(template, made).await {
        Ok(paid) => {
            let status = paid.response.status().as_u16();
            let Some(receipt) = paid.receipt else {
                // Not spent (the chain never saw the transaction).
                inner.fail(&p, "not_spent", false).await;
                return Ok(PayerPaid {
                    response: paid.response,
                    receipt: None,
                    reused_credential: false,
                });
            };
            // On-chain, a 202 is the server holding the broadcast
            // transaction until it confirms: not served yet. The entry stays
            // open with its transaction, so the same request presents it
            // again instead of paying again.
            let pending = status == reqwest::StatusCode::ACCEPTED.as_u16()
                && receipt.method == crate::bitreq::PaymentMethod::OnChain;
            if pending {
                let step = Step::to(EntryState::Presented)
                    .status(status)
                    .detail(AWAITING_CONFIRMATIONS);
                if let Err(e) = inner.step(&p, step).await {
                    warn!(entry = %p.id, error = %e, "awaiting confirmations, but the journal failed");
                }
                info!(entry = %p.id, txid = %proof_id, "awaiting confirmations; the journal entry stays open");
            } else {
                inner.served(&p, status, Some(proof_id.clone())).await;
            }
            let mut receipt = p.receipt(
                proof_id,
                None,
                Some(RailReceipt::BitRequests(Box::new(receipt))),
            );
            receipt.pending = pending;
            Ok(PayerPaid {
                response: paid.response,
                receipt: Some(receipt),
                reused_credential: false,
            })
        }
        Err(e) => {
            let counted = e.may_have_paid() || p.resumed;
            // A refusal keeps the server's status and reason, e.g. 409 and
            // `payment_refused: payment_already_used` (not the 202 of before).
            let refused = match &e {
                BitRequestsError::RetryFailed { .. } => None,
                BitRequestsError::PaymentRefused { status, reason, .. } => {
                    Some((format!("{}: {reason}", e.reason()), Some(*status)))
                }
                BitRequestsError::StillUnpaid { status, .. } => {
                    Some((e.reason().to_owned(), Some(*status)))
                }
                _ => Some((e.reason().to_owned(), None)),
            };
            if let Some((detail, status)) = refused {
                let mut step = Step::to(EntryState::Failed).detail(detail).counted(counted);
                if let Some(s) = status {
                    step = step.status(s.as_u16());
                }
                if let Err(je) = inner.step(&p, step).await {
                    warn!(entry = %p.id, error = %je, "cannot record the failed purchase");
                }
            }
            Err(PayerError::BitRequests {
                source: Box::new(e),
                entry: p.id.clone(),
                resumed: p.resumed,
            })
        }
    }
}
