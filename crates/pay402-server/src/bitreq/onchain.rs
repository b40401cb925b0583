//! The on-chain method: find the quote a presented transaction pays, verify
//! it with core, reserve its txid, broadcast, and serve (or wait for
//! confirmations).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bitcoin::{Transaction, Txid};
use http::request::Parts;
use pay402_core::bitreq::BitreqError;
use pay402_core::bitreq::onchain::{decode_tx_hex, verify_payment_tx};
use pay402_core::chain::ChainError;
use pay402_core::money::Sat;
use tracing::Instrument;

use super::config::{AddressSource, OnChainConfig};
use super::error::BitreqServerError;
use super::layer::{BitreqPayment, PaymentMethod};
use super::server::{BitreqServer, now, resource_of};
use super::store::{OnChainRecord, OnChainState, Reservation};

impl BitreqServer {
    /// Verifies, records and broadcasts an on-chain payment for a request
    /// whose route costs `route_price`: a derived address's quote must be
    /// for this `METHOD path`, unexpired, and priced at least
    /// `route_price`; the transaction pays the quote's price. A recorded
    /// (pending) transaction is served on confirmation at what it paid.
    pub(crate) async fn pay_onchain(
        &self,
        parts: &Parts,
        tx_hex: &str,
        return_address: Option<String>,
        route_price: Sat,
    ) -> Result<BitreqPayment, BitreqServerError> {
        let oc = self
            .inner
            .config
            .onchain
            .as_ref()
            .ok_or(BitreqServerError::MethodNotOffered("onchain"))?;
        let tx = decode_tx_hex(tx_hex)?;
        let txid = tx.compute_txid();
        let span = tracing::info_span!("bitreq.onchain", %txid);
        async {
            let resource = resource_of(&parts.method, &parts.uri);
            let store = &self.inner.store;
            if let Some(rec) = store.onchain(&txid).await? {
                return self.resume(oc, rec, &tx, &resource).await;
            }
            if tx.input.len() > oc.max_inputs {
                return Err(BitreqServerError::TooComplex("inputs"));
            }
            if tx.output.len() > oc.max_outputs {
                return Err(BitreqServerError::TooComplex("outputs"));
            }
            // A new transaction, locally sound so far: count it against its
            // client before the quote and chain lookups (a known one, whose
            // payer polls for confirmations, is not counted).
            crate::limit::admit(
                self.inner.config.challenge_limit.as_deref(),
                &parts.extensions,
            )
            .map_err(|l| BitreqServerError::RateLimited {
                retry_after_secs: l.retry_after_secs(),
            })?;
            let (merchant, price, quote_index) = match &oc.addresses {
                AddressSource::Fixed(a) => (a.script_pubkey(), route_price, None),
                AddressSource::Derived { .. } => {
                    let mut found = None;
                    for out in &tx.output {
                        if let Some(q) = store.quote_by_script(&out.script_pubkey).await? {
                            found = Some(q);
                            break;
                        }
                    }
                    let q = found.ok_or(BitreqError::NotPaidToMerchant)?;
                    if q.resource != resource {
                        return Err(BitreqServerError::QuoteMismatch);
                    }
                    if q.is_expired(now()) {
                        return Err(BitreqServerError::QuoteExpired);
                    }
                    // The quote's price is what the transaction must pay;
                    // with a dynamic price it must still cover what this
                    // request costs now (refused before anything is
                    // recorded or broadcast: nothing is taken).
                    if q.price < route_price {
                        return Err(BitreqServerError::QuoteBelowPrice {
                            quoted: q.price,
                            price: route_price,
                        });
                    }
                    (q.script_pubkey, q.price, Some(q.index))
                }
            };
            let amounts = if oc.policy.min_fee_rate_sat_vb > 0 {
                Some(self.input_amounts(&tx).await?)
            } else {
                None
            };
            let verified = verify_payment_tx(tx, &merchant, price, amounts.as_deref(), &oc.policy)?;
            // Zero-conf only where the operator opted in, up to its cap.
            let required = oc.required_confirmations(price);
            let record = OnChainRecord {
                txid,
                quote_index,
                amount: verified.amount,
                resource: resource.clone(),
                return_address,
                state: if required == 0 {
                    OnChainState::Redeemed
                } else {
                    OnChainState::Pending
                },
                created_at: now(),
            };
            match store.reserve_onchain(&record).await? {
                Reservation::Reserved => {}
                Reservation::TxidUsed(_) | Reservation::QuoteTaken => {
                    return Err(BitreqServerError::AlreadyUsed);
                }
            }
            match self.inner.chain.broadcast(&verified.tx).await {
                Ok(_) | Err(ChainError::AlreadyKnown { .. }) => {}
                Err(e) => {
                    tracing::info!(error = %e, "bitreq.onchain.broadcast_failed");
                    if let Err(se) = store.release_onchain(&txid).await {
                        tracing::error!(error = %se, %txid, "bitreq.onchain.release_failed");
                    }
                    return Err(e.into());
                }
            }
            tracing::info!(amount = verified.amount.0, fee = ?verified.fee, "bitreq.onchain.broadcast");
            if required > 0 {
                return Err(BitreqServerError::AwaitingConfirmations {
                    confirmations: 0,
                    required,
                });
            }
            Ok(paid(txid, verified.amount))
        }
        .instrument(span)
        .await
    }

    /// A transaction already recorded: refuse a replay, or serve a pending
    /// payment once it has its confirmations.
    async fn resume(
        &self,
        oc: &OnChainConfig,
        rec: OnChainRecord,
        tx: &Transaction,
        resource: &str,
    ) -> Result<BitreqPayment, BitreqServerError> {
        if rec.state == OnChainState::Redeemed {
            return Err(BitreqServerError::AlreadyUsed);
        }
        if rec.resource != resource {
            return Err(BitreqServerError::QuoteMismatch);
        }
        let store = &self.inner.store;
        let chain = &self.inner.chain;
        let confirmations = match chain.get_transaction(&rec.txid).await? {
            Some(info) => info.confirmations,
            None => match chain.broadcast(tx).await {
                Ok(_) | Err(ChainError::AlreadyKnown { .. }) => 0,
                Err(e @ ChainError::Conflict { .. }) => {
                    // Double spent before it confirmed: nothing was paid.
                    store.release_onchain(&rec.txid).await?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            },
        };
        // A pending record was not served unconfirmed: it waits for the
        // full count (never fewer than 1).
        let required = oc.confirmations.max(1);
        if confirmations < u64::from(required) {
            return Err(BitreqServerError::AwaitingConfirmations {
                confirmations,
                required,
            });
        }
        if !store.confirm_onchain(&rec.txid).await? {
            return Err(BitreqServerError::AlreadyUsed);
        }
        tracing::info!(confirmations, "bitreq.onchain.confirmed");
        Ok(paid(rec.txid, rec.amount))
    }

    /// The values of the outputs `tx` spends, looked up on the chain.
    async fn input_amounts(&self, tx: &Transaction) -> Result<Vec<Sat>, BitreqServerError> {
        let mut parents: HashMap<Txid, Vec<u64>> = HashMap::new();
        let mut out = Vec::with_capacity(tx.input.len());
        for input in &tx.input {
            let prev = input.previous_output;
            let values = match parents.entry(prev.txid) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => {
                    let info = self
                        .inner
                        .chain
                        .get_transaction(&prev.txid)
                        .await?
                        .ok_or(BitreqServerError::InputNotFound)?;
                    v.insert(info.tx.output.iter().map(|o| o.value.to_sat()).collect())
                }
            };
            let value = values
                .get(prev.vout as usize)
                .copied()
                .ok_or(BitreqServerError::InputNotFound)?;
            out.push(Sat(value));
        }
        Ok(out)
    }
}

fn paid(txid: Txid, amount: Sat) -> BitreqPayment {
    BitreqPayment {
        method: PaymentMethod::OnChain,
        amount,
        reference: txid.to_string(),
    }
}
