//! [`X402Error`]: everything that can go wrong while paying an x402 offer.

use pay402_core::problem::Reason;
use pay402_core::x402::TokenAmount;
use reqwest::StatusCode;

use super::payment::{PaymentDetails, SignedPayment};
use super::signer::SignerError;

/// Why [`X402Client`](super::X402Client) could not deliver a response.
///
/// The variants fall in two groups:
///
/// - **nothing was signed**: the policy refusals
///   ([`PriceAboveMax`](Self::PriceAboveMax),
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
///   [`SettlementFailed`](Self::SettlementFailed),
///   [`SettlementPending`](Self::SettlementPending) and
///   [`RetryFailed`](Self::RetryFailed). They carry the
///   [`SignedPayment`] (payer, nonce, amount, `validBefore` in its
///   [`PaymentDetails`]), so that the payment can be tracked on chain
///   (`authorizationState(payer, nonce)`) or sent again unchanged;
///   [`X402Error::may_have_paid`] tells whether money may have moved.
///
/// Every variant has a stable machine-readable [`Reason::reason`].
///
/// ```
/// use pay402_client::x402::X402Error;
/// use pay402_core::problem::Reason;
/// use pay402_core::x402::TokenAmount;
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
    /// second payment for the same call.
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
    /// (`PAYMENT-RESPONSE` with `success: false`); the reference semantics
    /// are that nothing moved.
    #[error("settlement failed: {reason}")]
    SettlementFailed {
        /// The settlement's `errorReason`.
        reason: String,
        /// The settlement's `errorMessage`, if any.
        message: Option<String>,
        /// Whether the same payment had been sent more than once.
        resent: bool,
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
    /// The signed payment was sent but no answer arrived (connection
    /// dropped, timeout), even after resending the same payment. The server
    /// may have settled it.
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
    /// [`SettlementPending`](Self::SettlementPending) and
    /// [`RetryFailed`](Self::RetryFailed), and for a rejection or failed
    /// settlement of a payment that had been sent more than once.
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
            X402Error::SettlementPending { .. } | X402Error::RetryFailed { .. } => true,
            X402Error::PaymentRejected { resent, .. }
            | X402Error::SettlementFailed { resent, .. } => *resent,
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
            | X402Error::SettlementFailed { payment, .. }
            | X402Error::SettlementPending { payment, .. }
            | X402Error::RetryFailed { payment, .. } => Some(payment),
            _ => None,
        }
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
/// `settlement_failed`, `settlement_pending`, `retry_failed`.
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
            X402Error::SettlementFailed { .. } => "settlement_failed",
            X402Error::SettlementPending { .. } => "settlement_pending",
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
