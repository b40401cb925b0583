//! [`Paid`]: what paid for a request, whatever the rail.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::response::Response;
use http::request::Parts;
use pay402_core::l402::TokenId;
use pay402_core::offer::Rail;
use pay402_core::problem::Problem;
use pay402_core::rates::Amount;

use crate::respond;

/// The identifier of a payment, by rail.
///
/// ```
/// use pay402_server::paywall::Receipt;
/// let r = Receipt::BitreqTxid("ab".repeat(32));
/// assert_eq!(r.kind(), "bitreq_txid");
/// assert_eq!(r.to_string(), "ab".repeat(32));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Receipt {
    /// L402: the id of the token (macaroon) that paid; one token pays for
    /// many requests until it expires.
    L402Token(TokenId),
    /// x402 settled before the handler ran (`SettleTiming::BeforeHandler`):
    /// the settlement transaction hash.
    X402Transaction(String),
    /// x402 settled after the handler (the default): the handler runs before
    /// the settlement, so the receipt is the EIP-3009 authorization nonce
    /// (`0x…`, 32 bytes), which names the transfer on chain; the
    /// transaction follows in the response's `PAYMENT-RESPONSE`. Nothing is
    /// released unless that settlement succeeds.
    X402Nonce(String),
    /// BitRequests on-chain: the payment's txid.
    BitreqTxid(String),
    /// BitRequests bit-transfer: the transfer id (hex SHA-256).
    BitreqTransfer(String),
    /// BitRequests payment channel: the payment transaction's txid (the
    /// channel token).
    BitreqChannel(String),
    /// MPP `lightning`/`charge`: the paid invoice's payment hash (hex), the
    /// `reference` of the `Payment-Receipt`.
    MppLightning(String),
    /// MPP `evm`/`charge`: the settlement transaction hash, the
    /// `reference` of the `Payment-Receipt`.
    MppEvm(String),
}

impl Receipt {
    /// A stable name of the receipt's kind.
    ///
    /// ```
    /// use pay402_server::paywall::Receipt;
    /// assert_eq!(Receipt::X402Nonce("0x00".into()).kind(), "x402_nonce");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Receipt::L402Token(_) => "l402_token",
            Receipt::X402Transaction(_) => "x402_transaction",
            Receipt::X402Nonce(_) => "x402_nonce",
            Receipt::BitreqTxid(_) => "bitreq_txid",
            Receipt::BitreqTransfer(_) => "bitreq_transfer",
            Receipt::BitreqChannel(_) => "bitreq_channel",
            Receipt::MppLightning(_) => "mpp_lightning",
            Receipt::MppEvm(_) => "mpp_evm",
        }
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Receipt::L402Token(t) => write!(f, "{t}"),
            Receipt::X402Transaction(s)
            | Receipt::X402Nonce(s)
            | Receipt::BitreqTxid(s)
            | Receipt::BitreqTransfer(s)
            | Receipt::BitreqChannel(s)
            | Receipt::MppLightning(s)
            | Receipt::MppEvm(s) => f.write_str(s),
        }
    }
}

/// What paid for this request, whatever the rail: put in the request
/// extensions by [`PaywallLayer`](super::PaywallLayer) (beside the rail's
/// own record: `VerifiedToken`, `X402Payment`, `BitreqPayment`) and usable
/// as an axum extractor.
///
/// `amount` is in the rail's own unit: for L402 the route's price in msat
/// (what a token must have paid; one token is reused until it expires),
/// for x402 the authorized amount in base units of the asset, for
/// BitRequests what the transaction output, transfer or channel increment
/// paid in sat. `payer` is known for x402 (the signer's address) only.
///
/// ```
/// use pay402_server::paywall::Paid;
/// async fn handler(paid: Paid) -> String {
///     format!("paid {} with {} (receipt {})", paid.amount, paid.rail, paid.receipt)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paid {
    /// The rail that paid.
    pub rail: Rail,
    /// What was paid, with its unit.
    pub amount: Amount,
    /// Who paid, where the rail says it.
    pub payer: Option<String>,
    /// The payment's identifier.
    pub receipt: Receipt,
}

impl<S: Send + Sync> FromRequestParts<S> for Paid {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Paid>().cloned().ok_or_else(|| {
            respond::problem(&Problem::new(
                402,
                "payment_required",
                "This route is not behind a Paywall",
            ))
        })
    }
}
