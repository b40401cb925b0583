//! Why the x402 layer refused a request: typed, with stable reasons.

use std::borrow::Cow;

use pay402_core::problem::Reason;
use pay402_core::x402::exact::ExactEvmError;
use pay402_core::x402::facilitator::FacilitatorError;
use pay402_core::x402::header::HeaderError;

use crate::store::StoreError;

/// Which field of a payment's `accepted` echo matched none of the offers
/// (reported with the reference reason of the check that field feeds).
///
/// ```
/// use pay402_server::x402::Mismatch;
/// assert_eq!(Mismatch::PayTo.reason(), "invalid_exact_evm_recipient_mismatch");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// No offer has this scheme.
    Scheme,
    /// No offer on this network.
    Network,
    /// The recipient differs.
    PayTo,
    /// The amount differs.
    Amount,
    /// The EIP-712 domain `name` differs.
    TokenName,
    /// The EIP-712 domain `version` differs.
    TokenVersion,
    /// Anything else (asset, timeout, other `extra` members).
    Other,
}

impl Mismatch {
    /// The reference reason string.
    ///
    /// ```
    /// use pay402_server::x402::Mismatch;
    /// assert_eq!(Mismatch::Network.reason(), "invalid_exact_evm_network_mismatch");
    /// assert_eq!(Mismatch::Other.reason(), "no_matching_payment_requirements");
    /// ```
    pub fn reason(self) -> &'static str {
        match self {
            Mismatch::Scheme => "invalid_exact_evm_scheme",
            Mismatch::Network => "invalid_exact_evm_network_mismatch",
            Mismatch::PayTo => "invalid_exact_evm_recipient_mismatch",
            Mismatch::Amount => "invalid_exact_evm_authorization_value",
            Mismatch::TokenName => "invalid_exact_evm_token_name_mismatch",
            Mismatch::TokenVersion => "invalid_exact_evm_token_version_mismatch",
            Mismatch::Other => "no_matching_payment_requirements",
        }
    }
}

/// A refused payment (or a server-side failure while handling one).
///
/// [`Reason::reason`] is the stable string put in the problem+json `reason`
/// member and in the `error` of the re-offered `PAYMENT-REQUIRED`; for a
/// facilitator's verdict that is the facilitator's own reason (see
/// [`X402Error::reason_str`]).
///
/// ```
/// use pay402_server::x402::X402Error;
/// use pay402_core::problem::Reason;
/// assert_eq!(X402Error::NonceAlreadyUsed.reason(), "invalid_exact_evm_nonce_already_used");
/// assert_eq!(X402Error::NonceAlreadyUsed.status(), 402);
/// assert_eq!(X402Error::PaymentIdConflict.status(), 409);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum X402Error {
    /// The payment header is not base64 of the expected JSON, or too large.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// More than one payment header (or both `PAYMENT-SIGNATURE` and `X-PAYMENT`).
    #[error("more than one payment header")]
    MultipleHeaders,
    /// An `X-PAYMENT` (v1) payment while v1 is turned off, or a payload of
    /// the wrong `x402Version` for its header.
    #[error("unsupported x402Version for this header")]
    Version,
    /// The payment's `accepted` echo matches none of the offers.
    #[error("the payment matches none of the offered requirements")]
    NoMatchingOffer(Mismatch),
    /// Local `exact` verification failed (reference order and reasons).
    #[error(transparent)]
    Exact(#[from] ExactEvmError),
    /// The `payment-identifier` id is not 16-128 characters of `[A-Za-z0-9_-]`.
    #[error("invalid payment-identifier id (16-128 characters of A-Z a-z 0-9 _ -)")]
    InvalidPaymentId,
    /// The route requires a `payment-identifier` and the payment has none.
    #[error("this resource requires the payment-identifier extension")]
    PaymentIdRequired,
    /// The nonce is spent (settled through this server), or bound to another
    /// authorization.
    #[error("the authorization nonce was already used")]
    NonceAlreadyUsed,
    /// Another request is handling the same payment right now.
    #[error("this payment is being processed by another request")]
    InProgress,
    /// This request's reservation of the payment was taken over by another
    /// request carrying the same payment (its lease ran out): that request
    /// serves the payer, this one is not served.
    #[error("this request lost its reservation of the payment to another request")]
    ReservationLost,
    /// The authorization's `validBefore` lies further ahead than the offer's
    /// `maxTimeoutSeconds` (plus the configured clock skew) allows.
    #[error("the authorization stays valid longer than the offer allows (maxTimeoutSeconds)")]
    ValidBeforeTooFar,
    /// The `payment-identifier` was already used with a different payload.
    #[error("payment-identifier already used with a different payment")]
    PaymentIdConflict,
    /// The facilitator found the payment invalid.
    #[error("the facilitator rejected the payment: {reason}")]
    FacilitatorRejected {
        /// The facilitator's reason (sanitised to `[A-Za-z0-9_]`).
        reason: String,
        /// The facilitator's message, if any.
        message: Option<String>,
    },
    /// Settlement failed: nothing moved.
    #[error("settlement failed: {reason}")]
    SettlementFailed {
        /// The facilitator's reason (sanitised).
        reason: String,
    },
    /// Settlement was sent and is not confirmed yet: retry with the same
    /// payment.
    #[error("settlement pending (transaction {transaction:?}); retry with the same payment")]
    SettlementPending {
        /// The transaction hash, when known.
        transaction: Option<String>,
    },
    /// The settlement's outcome is unknown (facilitator unreachable or its
    /// answer unusable): recorded as pending; retry with the same payment.
    #[error("settlement outcome unknown ({0}); retry with the same payment")]
    SettlementUnknown(String),
    /// The facilitator could not be used (verify): nothing moved.
    #[error(transparent)]
    Facilitator(FacilitatorError),
    /// The payment store could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The handler's response is larger than the settle-after buffer.
    #[error("the response is larger than the settlement buffer")]
    ResponseTooLarge,
    /// The handler's response body could not be read (or the handler panicked).
    #[error("the handler failed: {0}")]
    Handler(String),
    /// The route's offers are not valid `exact` EVM requirements.
    #[error("invalid route configuration: {0}")]
    Config(String),
}

impl X402Error {
    /// The reason to put on the wire: [`Reason::reason`], except for
    /// facilitator verdicts, whose own (sanitised) reason is passed on.
    ///
    /// ```
    /// use pay402_server::x402::X402Error;
    /// let e = X402Error::FacilitatorRejected { reason: "invalid_exact_evm_insufficient_balance".into(), message: None };
    /// assert_eq!(e.reason_str(), "invalid_exact_evm_insufficient_balance");
    /// ```
    pub fn reason_str(&self) -> &str {
        match self {
            X402Error::FacilitatorRejected { reason, .. }
            | X402Error::SettlementFailed { reason } => reason,
            other => other.reason(),
        }
    }

    /// True when the answer should re-offer the payment requirements
    /// (`PAYMENT-REQUIRED`, and the v1 body): every refusal of the payment
    /// itself, not conflicts, pending settlements or server failures.
    ///
    /// ```
    /// use pay402_server::x402::X402Error;
    /// assert!(X402Error::NonceAlreadyUsed.reoffer());
    /// assert!(!X402Error::InProgress.reoffer());
    /// ```
    pub fn reoffer(&self) -> bool {
        !matches!(
            self,
            X402Error::InProgress
                | X402Error::ReservationLost
                | X402Error::PaymentIdConflict
                | X402Error::SettlementPending { .. }
                | X402Error::SettlementUnknown(_)
                | X402Error::Facilitator(_)
                | X402Error::Store(_)
                | X402Error::ResponseTooLarge
                | X402Error::Handler(_)
                | X402Error::Config(_)
        )
    }
}

impl Reason for X402Error {
    fn reason(&self) -> &'static str {
        match self {
            X402Error::Header(e) => e.reason(),
            X402Error::MultipleHeaders => "multiple_payment_headers",
            X402Error::Version => "invalid_x402_version",
            X402Error::NoMatchingOffer(m) => m.reason(),
            X402Error::Exact(e) => e.reason(),
            X402Error::InvalidPaymentId => "invalid_payment_identifier",
            X402Error::PaymentIdRequired => "payment_identifier_required",
            X402Error::NonceAlreadyUsed => "invalid_exact_evm_nonce_already_used",
            X402Error::InProgress => "payment_in_progress",
            X402Error::ReservationLost => "reservation_lost",
            X402Error::ValidBeforeTooFar => {
                "invalid_exact_evm_payload_authorization_valid_before_too_far"
            }
            X402Error::PaymentIdConflict => "payment_identifier_conflict",
            X402Error::FacilitatorRejected { .. } => "facilitator_rejected",
            X402Error::SettlementFailed { .. } => "settlement_failed",
            X402Error::SettlementPending { .. } => "settlement_pending",
            X402Error::SettlementUnknown(_) => "settlement_unknown",
            X402Error::Facilitator(e) => e.reason(),
            X402Error::Store(e) => e.reason(),
            X402Error::ResponseTooLarge => "response_too_large",
            X402Error::Handler(_) => "handler_failed",
            X402Error::Config(_) => "invalid_route_configuration",
        }
    }

    fn status(&self) -> u16 {
        match self {
            X402Error::Header(e) => e.status(),
            X402Error::MultipleHeaders
            | X402Error::Version
            | X402Error::InvalidPaymentId
            | X402Error::PaymentIdRequired => 400,
            X402Error::Exact(e) => e.status(),
            X402Error::NoMatchingOffer(_)
            | X402Error::NonceAlreadyUsed
            | X402Error::ValidBeforeTooFar
            | X402Error::FacilitatorRejected { .. }
            | X402Error::SettlementFailed { .. } => 402,
            X402Error::InProgress | X402Error::ReservationLost | X402Error::PaymentIdConflict => {
                409
            }
            X402Error::SettlementPending { .. } => 202,
            X402Error::SettlementUnknown(_) => 503,
            X402Error::Facilitator(e) => e.status(),
            X402Error::Store(_) => 503,
            X402Error::ResponseTooLarge | X402Error::Handler(_) | X402Error::Config(_) => 500,
        }
    }
}

/// A facilitator-supplied reason made safe to echo: `[A-Za-z0-9_]`, 1-96
/// characters, else `fallback`.
pub(crate) fn sanitize_reason(reason: Option<&str>, fallback: &'static str) -> Cow<'static, str> {
    match reason {
        Some(r)
            if !r.is_empty()
                && r.len() <= 96
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Cow::Owned(r.to_owned())
        }
        _ => Cow::Borrowed(fallback),
    }
}
