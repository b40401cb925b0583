//! Why the BitRequests server refused a proof or a channel request.

use pay402_core::bitreq::BitreqError;
use pay402_core::bitreq::state::ChannelError;
use pay402_core::chain::ChainError;
use pay402_core::money::Sat;
use pay402_core::problem::Reason;

use crate::store::StoreError;

/// A refusal of the BitRequests server, with a stable [`Reason`] and status:
/// 400 malformed, 401 bad signature, 402 unpaid or underpaid (the answer
/// carries a fresh offer), 409 already used or wrong state, 202 accepted but
/// waiting for confirmations, 503 chain or store unavailable.
///
/// ```
/// use pay402_core::problem::Reason;
/// use pay402_server::bitreq::BitreqServerError;
/// assert_eq!(BitreqServerError::AlreadyUsed.reason(), "payment_already_used");
/// assert_eq!(BitreqServerError::AlreadyUsed.status(), 409);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BitreqServerError {
    /// A proof header or transaction failed a core check.
    #[error(transparent)]
    Proof(#[from] BitreqError),
    /// A channel request failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The chain backend failed or refused a broadcast.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The proof is for a method this server does not offer.
    #[error("payment method {0} is not offered")]
    MethodNotOffered(&'static str),
    /// The quote (derived address) this transaction pays has expired.
    #[error("the quote for this address has expired; request a new one")]
    QuoteExpired,
    /// The quote this transaction pays was issued for another resource.
    #[error("the address was quoted for another resource")]
    QuoteMismatch,
    /// The quote this transaction pays was made at a lower price than the
    /// request now costs (a dynamic price rose since the 402, or the quote
    /// was made for a cheaper request on the same `METHOD path`). Nothing
    /// was recorded or broadcast: the answer carries a fresh offer.
    #[error("the address was quoted {quoted} but the request costs {price}")]
    QuoteBelowPrice {
        /// The quote's price.
        quoted: Sat,
        /// What the request costs now.
        price: Sat,
    },
    /// The transaction, transfer or token was already used.
    #[error("payment already used")]
    AlreadyUsed,
    /// The transaction was broadcast but has fewer confirmations than required.
    #[error("transaction has {confirmations} of {required} required confirmations")]
    AwaitingConfirmations {
        /// Confirmations so far.
        confirmations: u64,
        /// Confirmations required.
        required: u32,
    },
    /// An input of the transaction spends an output the node does not know.
    #[error("an input spends an unknown transaction")]
    InputNotFound,
    /// The transaction has more inputs or outputs than the server examines.
    #[error("transaction has too many {0}")]
    TooComplex(&'static str),
    /// The transfer's payer has no ledger account.
    #[error("unknown payer account")]
    UnknownPayer,
    /// The transfer's key is not the payer account's key.
    #[error("the transfer key is not the payer account's key")]
    PayerKeyMismatch,
    /// The payer's ledger balance is below the amount.
    #[error("ledger balance of {balance} is below {amount}")]
    InsufficientBalance {
        /// The payer's balance.
        balance: Sat,
        /// The transfer amount.
        amount: Sat,
    },
    /// The transfer is too old or dated in the future.
    #[error("transfer timestamp outside the accepted window")]
    TransferExpired,
    /// The transfer's description does not name the requested resource.
    #[error("transfer is for another resource")]
    TransferWrongResource,
    /// A concurrent update won; retry.
    #[error("concurrent update, retry")]
    Concurrent,
    /// The client is over the
    /// [`challenge_limit`](crate::bitreq::BitreqConfig::challenge_limit);
    /// it may try again after this many seconds (`Retry-After`).
    #[error("too many requests from this client; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the client may try again.
        retry_after_secs: u64,
    },
}

impl Reason for BitreqServerError {
    fn reason(&self) -> &'static str {
        match self {
            BitreqServerError::Proof(e) => e.reason(),
            BitreqServerError::Channel(e) => e.reason(),
            BitreqServerError::Chain(e) => e.reason(),
            BitreqServerError::Store(e) => e.reason(),
            BitreqServerError::MethodNotOffered(_) => "method_not_offered",
            BitreqServerError::QuoteExpired => "quote_expired",
            BitreqServerError::QuoteMismatch => "quote_other_resource",
            BitreqServerError::QuoteBelowPrice { .. } => "quote_below_price",
            BitreqServerError::AlreadyUsed => "payment_already_used",
            BitreqServerError::AwaitingConfirmations { .. } => "awaiting_confirmations",
            BitreqServerError::InputNotFound => "input_not_found",
            BitreqServerError::TooComplex(_) => "transaction_too_complex",
            BitreqServerError::UnknownPayer => "unknown_payer",
            BitreqServerError::PayerKeyMismatch => "payer_key_mismatch",
            BitreqServerError::InsufficientBalance { .. } => "insufficient_balance",
            BitreqServerError::TransferExpired => "transfer_expired",
            BitreqServerError::TransferWrongResource => "transfer_wrong_resource",
            BitreqServerError::Concurrent => "concurrent_update",
            BitreqServerError::RateLimited { .. } => "rate_limited",
        }
    }

    fn status(&self) -> u16 {
        match self {
            BitreqServerError::Proof(e) => match e {
                // Unpaid or underpaid: answer with a fresh offer.
                BitreqError::NotPaidToMerchant
                | BitreqError::IncorrectAmount
                | BitreqError::BelowDust
                | BitreqError::NoPaymentProof => 402,
                other => other.status(),
            },
            BitreqServerError::Channel(e) => e.status(),
            BitreqServerError::Chain(e) => match e {
                ChainError::Unreachable { .. } | ChainError::InvalidResponse { .. } => 503,
                ChainError::AlreadyKnown { .. } | ChainError::Conflict { .. } => 409,
                ChainError::Rejected { .. } => 400,
            },
            BitreqServerError::Store(_) => 503,
            BitreqServerError::MethodNotOffered(_)
            | BitreqServerError::QuoteExpired
            | BitreqServerError::QuoteMismatch
            | BitreqServerError::QuoteBelowPrice { .. }
            | BitreqServerError::UnknownPayer
            | BitreqServerError::InsufficientBalance { .. }
            | BitreqServerError::TransferExpired => 402,
            BitreqServerError::AlreadyUsed | BitreqServerError::Concurrent => 409,
            BitreqServerError::AwaitingConfirmations { .. } => 202,
            BitreqServerError::RateLimited { .. } => 429,
            BitreqServerError::PayerKeyMismatch => 401,
            BitreqServerError::InputNotFound
            | BitreqServerError::TooComplex(_)
            | BitreqServerError::TransferWrongResource => 400,
        }
    }
}
