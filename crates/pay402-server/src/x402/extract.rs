//! The axum extractor for the payment that paid for a request.

use axum::extract::FromRequestParts;
use axum::response::Response;
use http::request::Parts;
use pay402_core::problem::Problem;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::{Bytes32, EvmAddress};

use crate::respond;

/// The payment behind this request, put in the request extensions by the
/// x402 layer before the handler runs; extract it in a handler.
///
/// `transaction` is only known to the handler with
/// [`SettleTiming::BeforeHandler`](super::SettleTiming::BeforeHandler); with
/// the default settle-after, the settlement happens once the handler has
/// answered (and the client gets the transaction in `PAYMENT-RESPONSE`).
///
/// ```
/// use pay402_server::x402::X402Payment;
/// async fn handler(payment: X402Payment) -> String {
///     format!("{} paid {} on {}", payment.payer, payment.amount, payment.network)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X402Payment {
    /// 1 (`X-PAYMENT`) or 2 (`PAYMENT-SIGNATURE`).
    pub x402_version: u32,
    /// The offer's network (CAIP-2; the v1 slug for v1 payments).
    pub network: String,
    /// The token contract.
    pub asset: String,
    /// The recipient.
    pub pay_to: String,
    /// Who paid (the recovered signer).
    pub payer: EvmAddress,
    /// The authorized amount in base units.
    pub amount: TokenAmount,
    /// The EIP-3009 nonce.
    pub nonce: Bytes32,
    /// The client's `payment-identifier`, if any.
    pub payment_id: Option<String>,
    /// The settlement transaction (settle-before only).
    pub transaction: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for X402Payment {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<X402Payment>()
            .cloned()
            .ok_or_else(|| {
                respond::problem(&Problem::new(
                    402,
                    "payment_required",
                    "This route is not behind an x402 layer",
                ))
            })
    }
}
