//! x402 through an [`X402Client`](crate::x402::X402Client): signs the
//! EIP-3009 authorization, keeps it, and resends it byte for byte.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use pay402_core::offer::{Offer, Rail, X402Challenge};
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use reqwest::Request;
use tracing::Instrument as _;

use super::{RailMeans, rail_refusal, unresumable};
use crate::cache::KeyGuard;
use crate::payer::error::{PayerError, RefusalReason};
use crate::payer::receipt::{PayerPaid, RailReceipt};
use crate::payer::stored::StoredProof;
use crate::payer::{Inner, Purchase};
use crate::x402::X402Client;

pub(crate) struct X402Means {
    client: X402Client,
}

impl X402Means {
    pub(crate) fn new(client: X402Client) -> X402Means {
        X402Means { client }
    }
}

challenge_of_rail!(X402, X402Challenge);

#[async_trait]
impl RailMeans for X402Means {
    means_of_rail!(X402);

    fn check(&self, offer: &Offer, _now: UnixTime) -> Result<Amount, RefusalReason> {
        let c = challenge(offer).ok_or(RefusalReason::RailNotEnabled)?;
        let offers = crate::x402::offer::offers_of(&c.required);
        let o = offers.get(c.index).ok_or(RefusalReason::RailNotEnabled)?;
        self.client.rail().accepts(o).map_err(rail_refusal)?;
        Ok(offer.amount.clone())
    }

    async fn pay(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let x = &self.client;
        let c = challenge(&p.offer)
            .cloned()
            .ok_or_else(|| unresumable(&p, "not an x402 offer"))?;
        let offers = crate::x402::offer::offers_of(&c.required);
        let o = offers
            .get(c.index)
            .ok_or_else(|| unresumable(&p, "x402 requirement index"))?;
        let now = SystemTime::now();
        let span = crate::x402::client::pay_span(o, x.address());
        let signed = match x
            .rail()
            .sign_offer(&c.required, o, now)
            .instrument(span.clone())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                // Signing is local: nothing left the process.
                inner.fail(&p, e.reason(), false).await;
                return Err(PayerError::X402 {
                    source: Box::new(e),
                    entry: p.id.clone(),
                    resumed: p.resumed,
                });
            }
        };
        let proof = StoredProof::X402 {
            header: signed.header_name().as_str().to_owned(),
            value: signed
                .header_value()
                .to_str()
                .unwrap_or_default()
                .to_owned(),
            details: signed.details().clone(),
        };
        inner
            .paid(&p, &proof, signed.details().nonce.to_string())
            .await?;
        drop(guard);
        let asked = c.required.error().map(str::to_owned);
        present(&inner, x, p, template, signed, now, asked)
            .instrument(span)
            .await
    }

    async fn present_stored(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        proof: StoredProof,
    ) -> Result<PayerPaid, PayerError> {
        let (
            StoredProof::X402 {
                header,
                value,
                details,
            },
            Some(c),
        ) = (proof, challenge(&p.offer).cloned())
        else {
            return Err(unresumable(&p, "stored proof is of another rail"));
        };
        let signed = crate::x402::SignedPayment::from_parts(details, &header, &value)
            .ok_or_else(|| unresumable(&p, "stored x402 payment does not read back"))?;
        let asked = c.required.error().map(str::to_owned);
        let paid_at = p.created;
        present(&inner, &self.client, p, template, signed, paid_at, asked).await
    }
}

async fn present(
    inner: &Inner,
    x: &X402Client,
    p: Purchase,
    template: Request,
    signed: crate::x402::SignedPayment,
    paid_at: SystemTime,
    asked: Option<String>,
) -> Result<PayerPaid, PayerError> {
    use crate::x402::X402Error;
    inner.presenting(&p).await?;
    let nonce = signed.details().nonce.to_string();
    match x
        .rail()
        .deliver(template, &signed, p.url.clone(), paid_at, asked.as_deref())
        .await
    {
        Ok(paid) => {
            let tx = paid
                .receipt
                .as_ref()
                .and_then(|r| r.transaction())
                .map(str::to_owned);
            inner
                .served(&p, paid.response.status().as_u16(), tx.clone())
                .await;
            let rail_receipt = paid.receipt.map(|r| RailReceipt::X402(Box::new(r)));
            Ok(PayerPaid {
                response: paid.response,
                receipt: Some(p.receipt(nonce, tx, rail_receipt)),
                reused_credential: false,
            })
        }
        Err(e) => {
            match &e {
                // The same payment is sent again by the same request.
                X402Error::RetryFailed { .. }
                | X402Error::SettlementPending { .. }
                | X402Error::ServerErrorAfterPayment { .. } => {}
                _ => {
                    inner
                        .fail(&p, e.reason(), e.may_have_paid() || p.resumed)
                        .await
                }
            }
            Err(PayerError::X402 {
                source: Box::new(e),
                entry: p.id.clone(),
                resumed: p.resumed,
            })
        }
    }
}
