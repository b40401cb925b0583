//! [`BitRequestsError`] and [`WalletError`]: everything that can go wrong
//! while paying a BitRequests server.

use bitcoin::Txid;
use pay402_core::bitreq::{BitreqError, ChannelError};
use pay402_core::chain::{ChainError, FeeRate};
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use reqwest::StatusCode;

use super::client::{PaymentMethod, Receipt};

/// Why the [`Wallet`](super::Wallet) could not derive a key, build or
/// broadcast a transaction.
///
/// ```
/// use pay402_client::bitreq::WalletError;
/// use pay402_core::money::Sat;
/// use pay402_core::problem::Reason;
/// let e = WalletError::InsufficientFunds { needed: Sat(5_000), available: Sat(1_000) };
/// assert_eq!(e.reason(), "insufficient_funds");
/// assert_eq!(e.to_string(), "insufficient funds: 5000 sat needed, 1000 sat available");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// The seed is not 16 to 64 bytes (BIP32), or not hex where hex was expected.
    #[error("invalid wallet seed: {0}")]
    InvalidSeed(&'static str),
    /// BIP32 derivation failed (an astronomically unlikely invalid child key).
    #[error("key derivation failed: {0}")]
    KeyDerivation(String),
    /// The spendable coins do not cover the amount plus the miner fee.
    #[error("insufficient funds: {needed} needed, {available} available")]
    InsufficientFunds {
        /// Amount plus estimated fee.
        needed: Sat,
        /// What the wallet can spend now (unlocked, mature coins).
        available: Sat,
    },
    /// The backend's fee estimate is above the configured ceiling.
    #[error("fee rate {estimate} is above the maximum {max}")]
    FeeRateTooHigh {
        /// The backend's estimate.
        estimate: FeeRate,
        /// [`WalletConfig::max_fee_rate`](super::WalletConfig::max_fee_rate).
        max: FeeRate,
    },
    /// The chain backend failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Building or signing a transaction failed.
    #[error("cannot build the transaction: {0}")]
    Build(#[from] BitreqError),
    /// The transaction is not one of the wallet's pending transactions.
    #[error("transaction {0} is not pending in this wallet")]
    UnknownTransaction(Txid),
}

/// Stable reasons: `invalid_seed`, `key_derivation`, `insufficient_funds`,
/// `fee_rate_too_high`, the [`ChainError`] / [`BitreqError`] reason for the
/// wrapping variants, `unknown_transaction`.
impl Reason for WalletError {
    fn reason(&self) -> &'static str {
        match self {
            WalletError::InvalidSeed(_) => "invalid_seed",
            WalletError::KeyDerivation(_) => "key_derivation",
            WalletError::InsufficientFunds { .. } => "insufficient_funds",
            WalletError::FeeRateTooHigh { .. } => "fee_rate_too_high",
            WalletError::Chain(e) => e.reason(),
            WalletError::Build(e) => e.reason(),
            WalletError::UnknownTransaction(_) => "unknown_transaction",
        }
    }

    fn status(&self) -> u16 {
        match self {
            WalletError::Chain(e) => e.status(),
            WalletError::InsufficientFunds { .. } => 402,
            _ => 500,
        }
    }
}

/// Why a [`BitRequests`](super::BitRequests) call could not deliver a response.
///
/// [`BitRequestsError::may_have_paid`] tells whether money moved: `true` for
/// [`StillUnpaid`](Self::StillUnpaid) and [`RetryFailed`](Self::RetryFailed),
/// the `spent` flag of [`PaymentRefused`](Self::PaymentRefused) (for
/// on-chain payments the client asks the chain whether the server broadcast
/// the transaction; if not, its coins are released), `false` for every other
/// variant.
///
/// The seed API's errors are [`PriceExceedsMaximum`](Self::PriceExceedsMaximum)
/// (`ResourcePriceGreaterThanMaxPriceError`),
/// [`UnsupportedMethod`](Self::UnsupportedMethod)
/// (`UnsupportedPaymentMethodError`) and
/// [`InsufficientBalance`](Self::InsufficientBalance)
/// (`InsufficientBalanceError`).
///
/// ```
/// use pay402_client::bitreq::BitRequestsError;
/// use pay402_core::money::Sat;
/// use pay402_core::problem::Reason;
/// let e = BitRequestsError::PriceExceedsMaximum { price: Sat(12_000), max: Sat(10_000) };
/// assert_eq!(e.reason(), "price_exceeds_maximum");
/// assert!(!e.may_have_paid());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BitRequestsError {
    /// The price is above the maximum (with a maximum of 0, any price);
    /// nothing was paid.
    #[error("price {price} exceeds the maximum {max}; nothing was paid")]
    PriceExceedsMaximum {
        /// The asked price (for a channel, the increment actually moved).
        price: Sat,
        /// The maximum in force for the request.
        max: Sat,
    },
    /// The server does not offer the client's payment method; nothing was paid.
    #[error(
        "the server does not accept {method} payments (it offers: {offered:?}); nothing was paid"
    )]
    UnsupportedMethod {
        /// The client's method.
        method: PaymentMethod,
        /// The methods the 402 offered.
        offered: Vec<PaymentMethod>,
    },
    /// The wallet, the channel or the ledger account cannot pay the price;
    /// nothing was paid.
    #[error("insufficient balance: {needed} needed{}", available.map(|a| format!(", {a} available")).unwrap_or_default())]
    InsufficientBalance {
        /// What the payment needs (price, plus the miner fee on chain).
        needed: Sat,
        /// What is available, when known.
        available: Option<Sat>,
    },
    /// The 402's payment headers are missing, repeated, too long or
    /// malformed; nothing was paid.
    #[error("invalid 402 payment headers: {0}")]
    InvalidPaymentInfo(#[source] BitreqError),
    /// A state-changing request (POST, PUT, DELETE, …) needs a quote
    /// ([`RequestOptions::quote`](super::RequestOptions::quote)) unless its
    /// maximum price is 0: the client never sends it unpaid just to learn
    /// the price. Nothing was sent.
    #[error(
        "{method} needs a price quote (RequestOptions::quote); it is never sent unpaid to learn the price"
    )]
    QuoteRequired {
        /// The HTTP method.
        method: reqwest::Method,
    },
    /// The 402 came from another origin than the one requested (a redirect
    /// was followed); nothing was paid.
    #[error(
        "payment request came from {responded}, not the requested {requested}; nothing was paid"
    )]
    CrossOriginChallenge {
        /// The origin of the request.
        requested: String,
        /// The origin that answered 402.
        responded: String,
    },
    /// The channel server URL is not a valid URL, or is plain `http://` to a
    /// non-loopback host; nothing was paid.
    #[error("refusing channel server {0:?}: it must be an https URL (or http to loopback)")]
    InsecureChannelServer(String),
    /// The channel's deposit is not confirmed yet (and the server is not
    /// zeroconf); nothing was paid. Try again after the next block.
    #[error("payment channel {deposit_txid} is waiting for its deposit to confirm")]
    ChannelNotReady {
        /// The deposit transaction.
        deposit_txid: Txid,
    },
    /// The channel server answered an error.
    #[error("channel server answered {status}{}: {detail}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    ChannelServer {
        /// The HTTP status.
        status: StatusCode,
        /// The problem's `reason`, if the body was problem+json.
        reason: Option<String>,
        /// The problem's detail or a body excerpt.
        detail: String,
    },
    /// A channel rule refused the step (wrong state, token mismatch, …).
    #[error("payment channel: {0}")]
    Channel(#[source] ChannelError),
    /// The wallet failed.
    #[error("wallet: {0}")]
    Wallet(#[source] WalletError),
    /// The request body is a stream that cannot be replayed with the proof;
    /// nothing was paid.
    #[error("request body cannot be cloned for the paid request; nothing was paid")]
    BodyNotCloneable,
    /// The HTTP request failed before any payment.
    #[error("HTTP request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// A server answer could not be understood.
    #[error("invalid answer from {what}: {detail}")]
    InvalidResponse {
        /// Which call.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The server answered the paid request with a payment problem
    /// (problem+json `reason`, e.g. `incorrect_payment_amount`).
    #[error("server refused the payment with {status} ({reason}){}", if *spent { "; the payment was spent" } else { "; nothing was spent" })]
    PaymentRefused {
        /// The HTTP status.
        status: StatusCode,
        /// The problem's `reason`.
        reason: String,
        /// Whether money moved (see [`BitRequestsError::may_have_paid`]).
        spent: bool,
        /// What was paid.
        receipt: Box<Receipt>,
    },
    /// The proof was sent but the server answered 402 again. The client
    /// never pays twice in one call.
    #[error("paid {} for {}, but the server still answered {status}", receipt.amount, receipt.url)]
    StillUnpaid {
        /// The status of the paid request.
        status: StatusCode,
        /// What was paid.
        receipt: Box<Receipt>,
    },
    /// The proof was made but every attempt to send it failed at the HTTP
    /// level (bounded retries).
    #[error("paid {} for {}, but sending the proof failed: {source}", receipt.amount, receipt.url)]
    RetryFailed {
        /// The last transport error.
        #[source]
        source: reqwest::Error,
        /// What was paid.
        receipt: Box<Receipt>,
    },
}

impl BitRequestsError {
    /// Whether money was, or may have been, spent.
    ///
    /// ```
    /// use pay402_client::bitreq::BitRequestsError;
    /// assert!(!BitRequestsError::BodyNotCloneable.may_have_paid());
    /// ```
    pub fn may_have_paid(&self) -> bool {
        match self {
            BitRequestsError::StillUnpaid { .. } | BitRequestsError::RetryFailed { .. } => true,
            BitRequestsError::PaymentRefused { spent, .. } => *spent,
            _ => false,
        }
    }

    /// The receipt of the payment made before the error, if any.
    ///
    /// ```
    /// use pay402_client::bitreq::BitRequestsError;
    /// assert!(BitRequestsError::BodyNotCloneable.receipt().is_none());
    /// ```
    pub fn receipt(&self) -> Option<&Receipt> {
        match self {
            BitRequestsError::StillUnpaid { receipt, .. }
            | BitRequestsError::RetryFailed { receipt, .. }
            | BitRequestsError::PaymentRefused { receipt, .. } => Some(receipt),
            _ => None,
        }
    }
}

impl From<WalletError> for BitRequestsError {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::InsufficientFunds { needed, available } => {
                BitRequestsError::InsufficientBalance {
                    needed,
                    available: Some(available),
                }
            }
            e => BitRequestsError::Wallet(e),
        }
    }
}

impl From<ChannelError> for BitRequestsError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::InsufficientBalance => BitRequestsError::InsufficientBalance {
                needed: Sat(0),
                available: None,
            },
            e => BitRequestsError::Channel(e),
        }
    }
}

impl From<ChainError> for BitRequestsError {
    fn from(e: ChainError) -> Self {
        BitRequestsError::Wallet(WalletError::Chain(e))
    }
}

impl From<reqwest::Error> for BitRequestsError {
    fn from(e: reqwest::Error) -> Self {
        BitRequestsError::Http(e)
    }
}

/// Stable reasons: `price_exceeds_maximum`, `unsupported_payment_method`,
/// `insufficient_balance`, the [`BitreqError`] reason for
/// `InvalidPaymentInfo` (e.g. `invalid_price`, `duplicate_header`),
/// `quote_required`, `cross_origin_challenge`, `insecure_channel_server`,
/// `channel_not_ready`, `channel_server_error`, the [`ChannelError`] /
/// [`WalletError`] reason for the wrapping variants, `body_not_cloneable`,
/// `http_error`, `invalid_response`, `payment_refused`, `still_unpaid`,
/// `retry_failed`.
///
/// `status()` is what a gateway built on this client would answer: 402 for
/// price and balance problems, 503 for chain failures, 502 otherwise.
impl Reason for BitRequestsError {
    fn reason(&self) -> &'static str {
        match self {
            BitRequestsError::PriceExceedsMaximum { .. } => "price_exceeds_maximum",
            BitRequestsError::UnsupportedMethod { .. } => "unsupported_payment_method",
            BitRequestsError::InsufficientBalance { .. } => "insufficient_balance",
            BitRequestsError::InvalidPaymentInfo(e) => e.reason(),
            BitRequestsError::QuoteRequired { .. } => "quote_required",
            BitRequestsError::CrossOriginChallenge { .. } => "cross_origin_challenge",
            BitRequestsError::InsecureChannelServer(_) => "insecure_channel_server",
            BitRequestsError::ChannelNotReady { .. } => "channel_not_ready",
            BitRequestsError::ChannelServer { .. } => "channel_server_error",
            BitRequestsError::Channel(e) => e.reason(),
            BitRequestsError::Wallet(e) => e.reason(),
            BitRequestsError::BodyNotCloneable => "body_not_cloneable",
            BitRequestsError::Http(_) => "http_error",
            BitRequestsError::InvalidResponse { .. } => "invalid_response",
            BitRequestsError::PaymentRefused { .. } => "payment_refused",
            BitRequestsError::StillUnpaid { .. } => "still_unpaid",
            BitRequestsError::RetryFailed { .. } => "retry_failed",
        }
    }

    fn status(&self) -> u16 {
        match self {
            BitRequestsError::PriceExceedsMaximum { .. }
            | BitRequestsError::InsufficientBalance { .. } => 402,
            BitRequestsError::Wallet(e) if e.status() == 503 => 503,
            _ => 502,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wallet_errors_map_to_the_seed_errors() {
        let e: BitRequestsError = WalletError::InsufficientFunds {
            needed: Sat(10),
            available: Sat(3),
        }
        .into();
        assert_eq!(e.reason(), "insufficient_balance");
        assert_eq!(e.status(), 402);
        assert_eq!(
            e.to_string(),
            "insufficient balance: 10 sat needed, 3 sat available"
        );
        let e: BitRequestsError = ChainError::Unreachable {
            backend: "bitcoind",
            call: "getblockcount",
            detail: "refused".into(),
        }
        .into();
        assert_eq!((e.reason(), e.status()), ("chain_unreachable", 503));
        let e = BitRequestsError::InvalidPaymentInfo(BitreqError::InvalidPrice);
        assert_eq!(e.reason(), "invalid_price");
        let e: BitRequestsError = ChannelError::NotReady.into();
        assert_eq!(e.reason(), "channel_not_ready");
    }
}
