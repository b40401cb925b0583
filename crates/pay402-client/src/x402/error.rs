//! [`X402Error`]: everything that can go wrong while paying an x402 offer.

use pay402_core::problem::Reason;
use pay402_core::x402::{SettleResponse, TokenAmount};
use reqwest::StatusCode;

use super::payment::{PaymentDetails, SignedPayment};
use super::receipt::X402Receipt;
use super::signer::SignerError;

/// Why [`X402Client`](super::X402Client) could not deliver a response.
///
/// The variants fall in two groups, and what the caller should do follows
/// from the group:
///
/// - **nothing was signed** (do whatever you like; no money can move): the
///   policy refusals ([`PriceAboveMax`](Self::PriceAboveMax),
///   [`AssetNotAllowed`](Self::AssetNotAllowed),
///   [`NetworkNotAllowed`](Self::NetworkNotAllowed),
///   [`PayToNotAllowed`](Self::PayToNotAllowed),
///   [`BudgetExhausted`](Self::BudgetExhausted),
///   [`NoAcceptableRequirement`](Self::NoAcceptableRequirement)), a bad 402
///   ([`InvalidPaymentRequired`](Self::InvalidPaymentRequired),
///   [`NoX402Offer`](Self::NoX402Offer),
///   [`CrossOriginChallenge`](Self::CrossOriginChallenge)),
///   [`BodyNotCloneable`](Self::BodyNotCloneable),
///   [`InvalidRequirement`](Self::InvalidRequirement),
///   [`Signer`](Self::Signer), [`Http`](Self::Http) and
///   [`Timeout`](Self::Timeout);
/// - **a signed authorization was handed to the server**:
///   [`PaymentRejected`](Self::PaymentRejected),
///   [`PaymentRequestedAgain`](Self::PaymentRequestedAgain),
///   [`SettlementFailed`](Self::SettlementFailed),
///   [`SettlementMismatch`](Self::SettlementMismatch),
///   [`SettlementPending`](Self::SettlementPending),
///   [`ServerErrorAfterPayment`](Self::ServerErrorAfterPayment),
///   [`RetryFailed`](Self::RetryFailed), and
///   [`BodyInterrupted`](Self::BodyInterrupted) when it has a receipt.
///   They carry the
///   [`SignedPayment`] (payer, nonce, amount, `validBefore` in its
///   [`PaymentDetails`]), so that the payment can be tracked on chain
///   (`authorizationState(payer, nonce)`) or sent again unchanged with
///   [`X402Client::resend`](super::X402Client::resend);
///   [`X402Error::may_have_paid`] tells whether money may have moved.
///   **When it says so, you may have paid: do not pay again.** Check the
///   nonce on chain, or resend the same payment (the chain settles one
///   authorization at most once, so a resend can never charge twice), and
///   never sign a new payment for the same purchase until the old
///   authorization is spent or its `validBefore` has passed.
///
/// The client itself never signs a second payment within one call, whatever
/// the server answers: a fresh 402 (at the same or a higher price) after a
/// payment is reported, never paid.
///
/// Every variant has a stable machine-readable [`Reason::reason`].
///
/// ```
/// use pay402_client::x402::X402Error;
/// use pay402_core::problem::Reason;
/// use pay402_core::x402::{SettleResponse, TokenAmount};
/// let e = X402Error::PriceAboveMax {
///     network: "eip155:8453".into(),
///     asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
///     amount: TokenAmount::from_u64(2_000_000),
///     max: TokenAmount::from_u64(1_000_000),
/// };
/// assert_eq!(e.reason(), "price_above_max");
/// assert!(!e.may_have_paid());
/// assert!(e.payment().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X402Error {
    /// The chosen requirement asks for more than the per-payment cap of its
    /// asset; nothing was signed.
    #[error(
        "price {amount} of {asset} on {network} is above the maximum {max}; nothing was signed"
    )]
    PriceAboveMax {
        /// The requirement's network.
        network: String,
        /// The requirement's asset.
        asset: String,
        /// The price, in the asset's base units.
        amount: TokenAmount,
        /// The configured cap for this asset.
        max: TokenAmount,
    },
    /// No requirement is in an allowed asset (unknown assets are refused by
    /// default); nothing was signed.
    #[error("asset {asset} on {network} is not allowed; nothing was signed")]
    AssetNotAllowed {
        /// The requirement's network.
        network: String,
        /// The requirement's asset.
        asset: String,
    },
    /// No requirement is on an allowed network; nothing was signed.
    #[error("network {network} is not allowed; nothing was signed")]
    NetworkNotAllowed {
        /// The requirement's network.
        network: String,
    },
    /// The requirement pays an address outside the `payTo` allow-list;
    /// nothing was signed.
    #[error("recipient {pay_to} is not allowed; nothing was signed")]
    PayToNotAllowed {
        /// The requirement's `payTo`.
        pay_to: String,
    },
    /// Paying would exceed the client's total budget for this asset;
    /// nothing was signed.
    #[error(
        "paying {amount} of {asset} on {network} would exceed the budget ({remaining} left); nothing was signed"
    )]
    BudgetExhausted {
        /// The requirement's network (CAIP-2).
        network: String,
        /// The requirement's asset.
        asset: String,
        /// The price.
        amount: TokenAmount,
        /// What is left of the budget.
        remaining: TokenAmount,
    },
    /// No offered requirement can be paid by this client (unsupported
    /// scheme or transfer method, non-EVM network, missing EIP-712 domain,
    /// no offers at all…); nothing was signed. `refused` says why each
    /// offer was refused, in the server's order.
    #[error("no acceptable payment requirement among {offered} offered ({}); nothing was signed", refused.join("; "))]
    NoAcceptableRequirement {
        /// How many requirements the server offered.
        offered: usize,
        /// One line per refused offer.
        refused: Vec<String>,
    },
    /// The 402 carries an x402 offer that cannot be decoded (bad base64 or
    /// JSON, missing fields, wrong version, too large); nothing was signed.
    #[error("malformed x402 payment requirements: {0}; nothing was signed")]
    InvalidPaymentRequired(String),
    /// The server answered 402 without any x402 offer (no
    /// `PAYMENT-REQUIRED` header, no v1 JSON body); nothing was signed.
    #[error("server answered {status} without an x402 offer")]
    NoX402Offer {
        /// The response status (402).
        status: StatusCode,
    },
    /// The 402 came from another origin than the one requested (a
    /// cross-origin redirect was followed); nothing was signed.
    #[error(
        "payment request came from {responded}, not the requested {requested}; nothing was signed"
    )]
    CrossOriginChallenge {
        /// The origin of the request.
        requested: String,
        /// The origin that sent the 402.
        responded: String,
    },
    /// The request body is a stream that cannot be replayed for the paid
    /// retry; nothing was signed. Use a buffered body.
    #[error("request body cannot be cloned for the paid retry; nothing was signed")]
    BodyNotCloneable,
    /// The chosen requirement cannot produce a payment that passes the
    /// reference verification (for example `maxTimeoutSeconds` below the
    /// verifier's 6-second margin, or an unparsable address); nothing was
    /// sent. Carries the reference reason.
    #[error("requirement cannot be paid: {reason}; nothing was sent")]
    InvalidRequirement {
        /// The reference verification reason, e.g.
        /// `invalid_exact_evm_payload_authorization_valid_before`.
        reason: &'static str,
    },
    /// The signer failed (or produced a signature that does not recover to
    /// its address); nothing was sent.
    #[error("{0}")]
    Signer(SignerError),
    /// The HTTP request failed before any payment was signed.
    #[error("HTTP request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// The request timed out before any payment was signed.
    #[error("HTTP request timed out: {0}")]
    Timeout(#[source] reqwest::Error),
    /// The server refused the payment: it answered the paid request with 402
    /// (or 400/409/412 with a reason) and no settlement. `reason` is the
    /// server's (for example `invalid_exact_evm_signature`,
    /// `invalid_exact_evm_nonce_already_used`). The client never signs a
    /// second payment for the same call. Unless `resent`, nothing moved
    /// as far as the server says; if `resent`, an earlier copy may have been
    /// settled (a "nonce already used" reason then means it was): you may
    /// have paid, do not pay again before checking the nonce.
    #[error("server rejected the payment ({status}): {reason}")]
    PaymentRejected {
        /// The status of the answer.
        status: StatusCode,
        /// The server's stable reason (`"unspecified"` when it gave none).
        reason: String,
        /// The server's human message, if any.
        message: Option<String>,
        /// Whether the same payment had been sent more than once (after a
        /// transport error or a pending answer): an earlier copy may have
        /// been settled.
        resent: bool,
        /// The payment that was sent.
        payment: Box<SignedPayment>,
    },
    /// The server tried to settle the payment and reports failure
    /// (`PAYMENT-RESPONSE` with `success: false`). The reference semantics
    /// are that nothing moved, but when the report names a `transaction`
    /// one was sent for this payment and it may have moved the money
    /// whatever the server says (a reverted transaction moves nothing):
    /// [`may_have_paid`](X402Error::may_have_paid) is then `true`; look the
    /// transaction or the nonce up before paying again.
    #[error("settlement failed: {reason}{}", transaction.as_deref().map(|t| format!(" (transaction {t})")).unwrap_or_default())]
    SettlementFailed {
        /// The settlement's `errorReason`.
        reason: String,
        /// The settlement's `errorMessage`, if any.
        message: Option<String>,
        /// The transaction the report names, if any (non-empty).
        transaction: Option<String>,
        /// Whether the same payment had been sent more than once.
        resent: bool,
        /// The payment that was sent.
        payment: Box<SignedPayment>,
    },
    /// The server answered the payment by asking for payment again: a 402
    /// carrying no reason, the same reason as its unpaid 402, or a
    /// successful `PAYMENT-RESPONSE` (at the same or another price). The
    /// client never pays such a 402. **You may have paid** (the server
    /// holds a valid authorization and may have settled it, or may settle
    /// it until its `validBefore`): do not pay again; check the nonce on
    /// chain.
    #[error("server asked for payment again ({status}) after receiving one; not paid again")]
    PaymentRequestedAgain {
        /// The status of the answer (402).
        status: StatusCode,
        /// The settlement report it carried, if any.
        settlement: Option<Box<SettleResponse>>,
        /// Whether the same payment had been sent more than once.
        resent: bool,
        /// The payment that was sent.
        payment: Box<SignedPayment>,
    },
    /// The server served the request but its settlement report does not
    /// describe the payment that was sent (another amount, payer or
    /// network). The chain can only have moved what was signed (the
    /// [`payment`](X402Error::payment)'s amount, once); the report is wrong
    /// or about another payment. **You may have paid**: do not pay again;
    /// check the nonce on chain.
    #[error(
        "settlement report does not match the payment: {field} is {reported}, the payment has {expected}"
    )]
    SettlementMismatch {
        /// Which field differs: `amount`, `payer` or `network`.
        field: &'static str,
        /// What the payment says.
        expected: String,
        /// What the report says.
        reported: String,
        /// The report.
        settlement: Box<SettleResponse>,
        /// The payment that was sent.
        payment: Box<SignedPayment>,
    },
    /// The server answered the paid request with a server error (5xx) that
    /// is not a pending settlement. Whether it settled the payment is
    /// unknown (a `settlement` report, if any, says what it claims). **You
    /// may have paid**: do not pay again; check the nonce on chain, or
    /// [`resend`](super::X402Client::resend) the same payment.
    #[error("server answered {status} after receiving the payment; outcome unknown")]
    ServerErrorAfterPayment {
        /// The status of the answer.
        status: StatusCode,
        /// The settlement report it carried, if any.
        settlement: Option<Box<SettleResponse>>,
        /// How many times the payment was sent.
        attempts: u32,
        /// The payment that was sent.
        payment: Box<SignedPayment>,
    },
    /// The server reports the settlement as still pending (reason
    /// `settlement_pending`, `settlement_unknown` or `payment_in_progress`,
    /// in a problem+json body or a `PAYMENT-RESPONSE`) after every resend of
    /// the same payment. The
    /// money may move: track `authorizationState(payer, nonce)` and call
    /// [`X402Client::resend`](super::X402Client::resend) with the same
    /// payment rather than paying again.
    #[error("settlement still pending after {attempts} attempts")]
    SettlementPending {
        /// How many times the payment was sent.
        attempts: u32,
        /// The settlement transaction, when the server named it.
        transaction: Option<String>,
        /// The payment that was sent.
        payment: Box<SignedPayment>,
    },
    /// The answer's body failed to arrive in full (the connection dropped
    /// mid-response, a timeout), read through
    /// [`X402Paid::bytes`](super::X402Paid::bytes) or
    /// [`X402Paid::text`](super::X402Paid::text). With a `receipt` the
    /// request was paid: **you have paid; do not pay again** (the receipt
    /// says what and, in its settlement, where; the server cannot serve the
    /// same payment twice, so the content is lost unless it offers a way
    /// to fetch it again).
    #[error("the response body was cut short{}: {source}", if receipt.is_some() { " after payment" } else { "" })]
    BodyInterrupted {
        /// The transport error.
        #[source]
        source: reqwest::Error,
        /// What the request paid, if it paid.
        receipt: Option<Box<X402Receipt>>,
    },
    /// The signed payment was sent but no answer arrived (connection
    /// dropped, timeout), even after resending the same payment. The server
    /// may have settled it: **you may have paid; do not pay again**. Check
    /// the nonce on chain, or [`resend`](super::X402Client::resend) the same
    /// payment later.
    #[error("payment sent {attempts} times but no answer arrived: {source}")]
    RetryFailed {
        /// The last transport error.
        #[source]
        source: reqwest::Error,
        /// How many times the payment was sent.
        attempts: u32,
        /// The payment that was sent.
        payment: Box<SignedPayment>,
    },
}

impl X402Error {
    /// Whether money may have moved: `true` for
    /// [`SettlementPending`](Self::SettlementPending),
    /// [`RetryFailed`](Self::RetryFailed),
    /// [`PaymentRequestedAgain`](Self::PaymentRequestedAgain),
    /// [`SettlementMismatch`](Self::SettlementMismatch) and
    /// [`ServerErrorAfterPayment`](Self::ServerErrorAfterPayment), for an
    /// interrupted body of a paid answer, for a failed settlement that
    /// names a transaction, and for a rejection or
    /// failed settlement of a payment that had been sent more than once.
    /// When it is `true`, do not pay again for the same purchase.
    ///
    /// A signed authorization stays valid until its `validBefore`; a server
    /// that rejected it could still submit it. [`payment`](Self::payment)
    /// gives what is needed to check it on chain.
    ///
    /// ```
    /// use pay402_client::x402::X402Error;
    /// assert!(!X402Error::BodyNotCloneable.may_have_paid());
    /// ```
    pub fn may_have_paid(&self) -> bool {
        match self {
            X402Error::SettlementPending { .. }
            | X402Error::RetryFailed { .. }
            | X402Error::PaymentRequestedAgain { .. }
            | X402Error::SettlementMismatch { .. }
            | X402Error::ServerErrorAfterPayment { .. } => true,
            X402Error::BodyInterrupted { receipt, .. } => receipt.is_some(),
            X402Error::SettlementFailed {
                resent,
                transaction,
                ..
            } => *resent || transaction.is_some(),
            X402Error::PaymentRejected { resent, .. } => *resent,
            _ => false,
        }
    }

    /// The payment that was signed and sent before the error, if any.
    ///
    /// ```
    /// use pay402_client::x402::X402Error;
    /// assert!(X402Error::BodyNotCloneable.payment().is_none());
    /// ```
    pub fn payment(&self) -> Option<&PaymentDetails> {
        self.signed_payment().map(SignedPayment::details)
    }

    /// The signed payment itself, to send again unchanged with
    /// [`X402Client::resend`](super::X402Client::resend).
    ///
    /// ```
    /// use pay402_client::x402::X402Error;
    /// assert!(X402Error::BodyNotCloneable.signed_payment().is_none());
    /// ```
    pub fn signed_payment(&self) -> Option<&SignedPayment> {
        match self {
            X402Error::PaymentRejected { payment, .. }
            | X402Error::PaymentRequestedAgain { payment, .. }
            | X402Error::SettlementFailed { payment, .. }
            | X402Error::SettlementMismatch { payment, .. }
            | X402Error::SettlementPending { payment, .. }
            | X402Error::ServerErrorAfterPayment { payment, .. }
            | X402Error::RetryFailed { payment, .. } => Some(payment),
            X402Error::BodyInterrupted {
                receipt: Some(receipt),
                ..
            } => Some(&receipt.signed),
            _ => None,
        }
    }

    /// The settlement transaction the server named, if any: for
    /// [`SettlementFailed`](Self::SettlementFailed),
    /// [`SettlementPending`](Self::SettlementPending), and the reports
    /// carried by [`PaymentRequestedAgain`](Self::PaymentRequestedAgain),
    /// [`SettlementMismatch`](Self::SettlementMismatch) and
    /// [`ServerErrorAfterPayment`](Self::ServerErrorAfterPayment).
    ///
    /// ```
    /// use pay402_client::x402::X402Error;
    /// assert_eq!(X402Error::BodyNotCloneable.transaction(), None);
    /// ```
    pub fn transaction(&self) -> Option<&str> {
        let named = match self {
            X402Error::SettlementFailed { transaction, .. }
            | X402Error::SettlementPending { transaction, .. } => transaction.as_deref(),
            X402Error::PaymentRequestedAgain { settlement, .. }
            | X402Error::ServerErrorAfterPayment { settlement, .. } => {
                settlement.as_ref().and_then(|s| s.transaction.as_deref())
            }
            X402Error::SettlementMismatch { settlement, .. } => settlement.transaction.as_deref(),
            X402Error::BodyInterrupted {
                receipt: Some(receipt),
                ..
            } => receipt.transaction(),
            _ => None,
        };
        named.filter(|t| !t.is_empty())
    }

    /// The server's reason for a [`PaymentRejected`](Self::PaymentRejected)
    /// or [`SettlementFailed`](Self::SettlementFailed).
    ///
    /// ```
    /// use pay402_client::x402::X402Error;
    /// assert_eq!(X402Error::BodyNotCloneable.server_reason(), None);
    /// ```
    pub fn server_reason(&self) -> Option<&str> {
        match self {
            X402Error::PaymentRejected { reason, .. }
            | X402Error::SettlementFailed { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl From<SignerError> for X402Error {
    fn from(e: SignerError) -> Self {
        X402Error::Signer(e)
    }
}

/// Stable reasons: `price_above_max`, `asset_not_allowed`,
/// `network_not_allowed`, `pay_to_not_allowed`, `budget_exhausted`,
/// `no_acceptable_requirement`, `invalid_payment_required`, `no_x402_offer`,
/// `cross_origin_challenge`, `body_not_cloneable`, `invalid_requirement`,
/// the [`SignerError`] reason, `http_error`, `timeout`, `payment_rejected`,
/// `payment_requested_again`, `settlement_failed`, `settlement_mismatch`,
/// `settlement_pending`, `server_error_after_payment`, `body_interrupted`,
/// `retry_failed`.
///
/// `status()` is what a gateway built on this client would answer: 402 for
/// policy refusals and rejected payments, 202 for a pending settlement, 504
/// for timeouts, 500 for signer failures, 502 otherwise.
///
/// ```
/// use pay402_client::x402::X402Error;
/// use pay402_core::problem::Reason;
/// assert_eq!(X402Error::BodyNotCloneable.reason(), "body_not_cloneable");
/// assert_eq!(X402Error::BodyNotCloneable.status(), 502);
/// ```
impl Reason for X402Error {
    fn reason(&self) -> &'static str {
        match self {
            X402Error::PriceAboveMax { .. } => "price_above_max",
            X402Error::AssetNotAllowed { .. } => "asset_not_allowed",
            X402Error::NetworkNotAllowed { .. } => "network_not_allowed",
            X402Error::PayToNotAllowed { .. } => "pay_to_not_allowed",
            X402Error::BudgetExhausted { .. } => "budget_exhausted",
            X402Error::NoAcceptableRequirement { .. } => "no_acceptable_requirement",
            X402Error::InvalidPaymentRequired(_) => "invalid_payment_required",
            X402Error::NoX402Offer { .. } => "no_x402_offer",
            X402Error::CrossOriginChallenge { .. } => "cross_origin_challenge",
            X402Error::BodyNotCloneable => "body_not_cloneable",
            X402Error::InvalidRequirement { .. } => "invalid_requirement",
            X402Error::Signer(e) => e.reason(),
            X402Error::Http(_) => "http_error",
            X402Error::Timeout(_) => "timeout",
            X402Error::PaymentRejected { .. } => "payment_rejected",
            X402Error::PaymentRequestedAgain { .. } => "payment_requested_again",
            X402Error::SettlementFailed { .. } => "settlement_failed",
            X402Error::SettlementMismatch { .. } => "settlement_mismatch",
            X402Error::ServerErrorAfterPayment { .. } => "server_error_after_payment",
            X402Error::SettlementPending { .. } => "settlement_pending",
            X402Error::BodyInterrupted { .. } => "body_interrupted",
            X402Error::RetryFailed { .. } => "retry_failed",
        }
    }

    fn status(&self) -> u16 {
        match self {
            X402Error::PriceAboveMax { .. }
            | X402Error::AssetNotAllowed { .. }
            | X402Error::NetworkNotAllowed { .. }
            | X402Error::PayToNotAllowed { .. }
            | X402Error::BudgetExhausted { .. }
            | X402Error::NoAcceptableRequirement { .. }
            | X402Error::PaymentRejected { .. }
            | X402Error::SettlementFailed { .. } => 402,
            X402Error::SettlementPending { .. } => 202,
            X402Error::Timeout(_) => 504,
            X402Error::Signer(_) => 500,
            _ => 502,
        }
    }
}
