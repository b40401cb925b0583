//! 21 BitRequests as a rail of a [`Paywall`](crate::paywall::Paywall): its
//! challenge (the two1 headers) and its proofs (`Bitcoin-Transaction`,
//! `Bitcoin-Transfer`, `Bitcoin-Payment-Channel-Token`), redeemed by the
//! [`BitreqServer`] as `BitreqLayer` redeems them.

use axum::response::Response;
use http::{HeaderMap, HeaderName, Request};
use pay402_core::bitreq::Proof;
use pay402_core::offer::Rail;
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use tower::Service;

use super::{BitreqServer, BitreqServerError, PaymentMethod};
use crate::paywall::rail::{ChallengePart, Next, Part, PaywallRail, Pending, RailFuture, Unpaid};
use crate::paywall::{Paid, RailPrices, Receipt};

/// The BitRequests proof headers.
const BITREQ_PROOFS: [HeaderName; 3] = [
    HeaderName::from_static("bitcoin-transaction"),
    HeaderName::from_static("bitcoin-transfer"),
    HeaderName::from_static("bitcoin-payment-channel-token"),
];

impl PaywallRail for BitreqServer {
    fn rail(&self) -> Rail {
        Rail::BitRequests
    }

    fn credentials(&self) -> &'static [&'static str] {
        crate::cache::BITREQ_CREDENTIALS
    }

    fn expose(&self) -> &'static str {
        super::EXPOSE
    }

    fn has_proof(&self, headers: &HeaderMap) -> bool {
        crate::paywall::proof::any_of(headers, &BITREQ_PROOFS)
    }

    fn is_priced(&self, prices: &RailPrices) -> bool {
        prices.bitreq.is_some()
    }

    fn challenge<'a>(&'a self, cx: &'a Unpaid<'a>) -> RailFuture<'a, Option<ChallengePart<'a>>> {
        Box::pin(async move {
            let price = cx.prices.bitreq?;
            let mut headers = HeaderMap::new();
            Some(match self.challenge_info(price, cx.parts).await {
                Err(resp) => ChallengePart::failed(resp),
                Ok(info) => match info.insert_into(&mut headers) {
                    Ok(()) => ChallengePart {
                        headers,
                        part: Part::On(
                            Rail::BitRequests,
                            BitreqServer::payment_required_problem(price),
                        ),
                        body: None,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "bitreq.offer_header_invalid");
                        ChallengePart::failed(super::offer_unusable())
                    }
                },
            })
        })
    }

    /// A BitRequests proof: checked by its method as `BitreqLayer` does;
    /// refused as it refuses (402 with a fresh BitRequests offer, 202 while
    /// confirming, ...).
    fn serve<'a>(&'a self, req: Pending<'a>, mut next: Next) -> RailFuture<'a, Response> {
        Box::pin(async move {
            let Some(price) = req.prices.bitreq else {
                return req.payment_required().await;
            };
            let result = match Proof::from_header_map(&req.parts.headers) {
                Ok(proof) => self.redeem(&req.parts, proof, price).await,
                Err(e) => Err(BitreqServerError::Proof(e)),
            };
            let payment = match result {
                Ok(p) => p,
                Err(e) => {
                    tracing::Span::current().record("outcome", e.reason());
                    return self.reject(&e, price, &req.parts).await;
                }
            };
            tracing::Span::current().record("outcome", "paid");
            tracing::info!(
                method = payment.method.as_str(),
                amount = payment.amount.0,
                reference = %payment.reference,
                "bitreq.paid"
            );
            let receipt = match payment.method {
                PaymentMethod::OnChain => Receipt::BitreqTxid(payment.reference.clone()),
                PaymentMethod::Transfer => Receipt::BitreqTransfer(payment.reference.clone()),
                PaymentMethod::Channel => Receipt::BitreqChannel(payment.reference.clone()),
            };
            let mut parts = req.parts;
            parts.extensions.insert(Paid {
                rail: Rail::BitRequests,
                amount: Amount::Sat(payment.amount),
                payer: None,
                receipt,
            });
            parts.extensions.insert(payment);
            let Ok(mut resp) = next.call(Request::from_parts(parts, req.body)).await;
            self.config()
                .paid_caching
                .apply_paid(resp.headers_mut(), &req.layer.paywall.shared.credentials);
            resp
        })
    }
}
