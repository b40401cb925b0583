//! [`ClientError`]: everything that can go wrong while fetching a paid resource.

use pay402_core::l402::{ChallengeError, InvoiceError};
use pay402_core::lightning::{LightningError, PaymentHash};
use pay402_core::money::Msat;
use pay402_core::problem::Reason;
use reqwest::StatusCode;

use crate::client::Receipt;

/// Why [`L402Client`](crate::L402Client) could not deliver a response.
///
/// The variants fall in three groups, and what the caller should do
/// follows from the group:
///
/// - **nothing was paid** (retrying is safe):
///   [`PriceExceedsMaximum`](Self::PriceExceedsMaximum),
///   [`Invoice`](Self::Invoice), [`Challenge`](Self::Challenge),
///   [`NoChallenge`](Self::NoChallenge),
///   [`CrossOriginChallenge`](Self::CrossOriginChallenge),
///   [`BodyNotCloneable`](Self::BodyNotCloneable),
///   [`Payment`](Self::Payment) (the node says the payment definitely
///   failed) and [`Http`](Self::Http);
/// - **the payment may have happened**:
///   [`PaymentOutcomeUnknown`](Self::PaymentOutcomeUnknown); track the
///   payment hash with your node and never pay the invoice again blindly;
/// - **money was spent** (you have paid: do not pay again for the same
///   purchase): [`PreimageMismatch`](Self::PreimageMismatch),
///   [`StillUnpaid`](Self::StillUnpaid),
///   [`ServerErrorAfterPayment`](Self::ServerErrorAfterPayment),
///   [`RetryFailed`](Self::RetryFailed) (the last three carry the
///   [`Receipt`]), and [`BodyInterrupted`](Self::BodyInterrupted) when it
///   carries one. After the last three the token stays cached: calling
///   again sends the identical credential (same preimage) and pays nothing.
///
/// One call never pays more than one invoice: a server that answers the
/// paid credential with a new challenge, at the same or a higher price, gets
/// [`StillUnpaid`](Self::StillUnpaid), not a second payment.
///
/// [`ClientError::may_have_paid`] tells the groups apart, and every variant
/// has a stable machine-readable [`Reason::reason`].
///
/// ```
/// use pay402_client::ClientError;
/// use pay402_core::money::Msat;
/// use pay402_core::problem::Reason;
/// let e = ClientError::PriceExceedsMaximum { price: Msat(300_000), max: Msat(200_000) };
/// assert_eq!(e.reason(), "price_exceeds_maximum");
/// assert!(!e.may_have_paid());
/// assert_eq!(e.to_string(), "price 300000 msat exceeds the maximum 200000 msat; nothing was paid");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The invoice asks for more than the configured per-request maximum.
    #[error("price {price} exceeds the maximum {max}; nothing was paid")]
    PriceExceedsMaximum {
        /// The invoice amount.
        price: Msat,
        /// The configured maximum ([`L402ClientBuilder::max_price`](crate::L402ClientBuilder::max_price)).
        max: Msat,
    },
    /// The challenge's invoice or macaroon failed a check (wrong network,
    /// payment hash differs from the macaroon's, expired, no amount, bad
    /// signature, undecodable macaroon…); nothing was paid.
    #[error("refused to pay the challenge: {0}")]
    Invoice(InvoiceError),
    /// A `WWW-Authenticate` L402 challenge is malformed; nothing was paid.
    #[error("malformed L402 challenge: {0}")]
    Challenge(ChallengeError),
    /// The server answered 402 without any L402/LSAT challenge (perhaps it
    /// speaks another payment scheme); nothing was paid.
    #[error("server answered {status} without an L402 challenge")]
    NoChallenge {
        /// The response status (402).
        status: StatusCode,
    },
    /// The 402 came from another origin than the one requested (the HTTP
    /// client followed a cross-origin redirect). Paying it would buy a token
    /// for a different server than the one it would be cached for; nothing
    /// was paid. Request the other origin directly if you trust it.
    #[error(
        "payment challenge came from {responded}, not the requested {requested}; nothing was paid"
    )]
    CrossOriginChallenge {
        /// The origin of the request.
        requested: String,
        /// The origin that sent the 402.
        responded: String,
    },
    /// The Lightning node reports that the payment failed (nothing was spent).
    #[error("{0}")]
    Payment(LightningError),
    /// The payment's outcome is unknown (for example it timed out in flight).
    /// It may still complete: look the payment hash up with your node; it is
    /// never retried by this client.
    #[error("payment {payment_hash} outcome unknown; check it with your node before paying again")]
    PaymentOutcomeUnknown {
        /// The payment hash to track.
        payment_hash: PaymentHash,
    },
    /// The node reported success but returned a preimage that does not hash
    /// to the invoice's payment hash, or an all-zero preimage (a buggy
    /// wallet or custodian). The node probably spent the money.
    #[error("payment {payment_hash}: the node returned an invalid preimage")]
    PreimageMismatch {
        /// The payment hash that was paid.
        payment_hash: PaymentHash,
    },
    /// The server asked for payment but the request body is a stream that
    /// cannot be replayed; nothing was paid. Use a buffered body
    /// (`bytes`, `String`, `Vec<u8>`, JSON) for paid endpoints.
    #[error("request body cannot be cloned for the paid retry; nothing was paid")]
    BodyNotCloneable,
    /// The HTTP request failed before any payment.
    #[error("HTTP request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// The invoice was paid but the retry carrying the credential failed at
    /// the HTTP level (connection dropped, timeout). You have paid: the
    /// token stays cached, so calling again sends the identical credential
    /// and pays nothing.
    #[error("paid {} for {}, but the retry failed: {source}", receipt.amount, receipt.origin)]
    RetryFailed {
        /// The transport error.
        #[source]
        source: reqwest::Error,
        /// What was paid.
        receipt: Box<Receipt>,
    },
    /// The answer's body failed to arrive in full (the connection dropped
    /// mid-response, a timeout), read through
    /// [`Paid::bytes`](crate::Paid::bytes) or
    /// [`Paid::text`](crate::Paid::text). With a `receipt` this call paid:
    /// you have paid, do not pay again; the token stays cached, so calling
    /// again sends the identical credential and pays nothing.
    #[error("the response body was cut short{}: {source}", if receipt.is_some() { " after payment" } else { "" })]
    BodyInterrupted {
        /// The transport error.
        #[source]
        source: reqwest::Error,
        /// What this call paid, if it paid.
        receipt: Option<Box<Receipt>>,
    },
    /// The invoice was paid and the credential sent, but the server answered
    /// with a server error (5xx). You have paid: the token stays cached, so
    /// calling again sends the identical credential and pays nothing.
    #[error("paid {} for {}, but the server answered {status}", receipt.amount, receipt.origin)]
    ServerErrorAfterPayment {
        /// The status of the answer.
        status: StatusCode,
        /// What was paid.
        receipt: Box<Receipt>,
    },
    /// The invoice was paid and the credential sent, but the server still
    /// refused (402 or 401), perhaps with a new invoice, which is never
    /// paid. You have paid: do not pay again for this purchase; take it up
    /// with the server (the receipt's payment hash and your node's preimage
    /// prove the payment). The token is not kept.
    #[error("paid {} for {}, but the server still answered {status}", receipt.amount, receipt.origin)]
    StillUnpaid {
        /// The status of the retry.
        status: StatusCode,
        /// What was paid.
        receipt: Box<Receipt>,
    },
}

impl ClientError {
    /// Whether money was, or may have been, spent: `true` for
    /// [`PaymentOutcomeUnknown`](Self::PaymentOutcomeUnknown),
    /// [`PreimageMismatch`](Self::PreimageMismatch),
    /// [`RetryFailed`](Self::RetryFailed),
    /// [`ServerErrorAfterPayment`](Self::ServerErrorAfterPayment) and
    /// [`StillUnpaid`](Self::StillUnpaid), and for
    /// [`BodyInterrupted`](Self::BodyInterrupted) when this call paid. When
    /// it is `true`, do not pay again for the same purchase.
    ///
    /// ```
    /// use pay402_client::ClientError;
    /// assert!(!ClientError::BodyNotCloneable.may_have_paid());
    /// ```
    pub fn may_have_paid(&self) -> bool {
        if let ClientError::BodyInterrupted { receipt, .. } = self {
            return receipt.is_some();
        }
        matches!(
            self,
            ClientError::PaymentOutcomeUnknown { .. }
                | ClientError::PreimageMismatch { .. }
                | ClientError::RetryFailed { .. }
                | ClientError::ServerErrorAfterPayment { .. }
                | ClientError::StillUnpaid { .. }
        )
    }

    /// The receipt of the payment made before the error, if any.
    ///
    /// ```
    /// use pay402_client::ClientError;
    /// assert!(ClientError::BodyNotCloneable.receipt().is_none());
    /// ```
    pub fn receipt(&self) -> Option<&Receipt> {
        match self {
            ClientError::RetryFailed { receipt, .. }
            | ClientError::ServerErrorAfterPayment { receipt, .. }
            | ClientError::StillUnpaid { receipt, .. } => Some(receipt),
            ClientError::BodyInterrupted {
                receipt: Some(receipt),
                ..
            } => Some(receipt),
            _ => None,
        }
    }

    /// The payment hash of the payment involved, if one was attempted.
    ///
    /// ```
    /// use pay402_client::ClientError;
    /// use pay402_core::lightning::PaymentHash;
    /// let e = ClientError::PaymentOutcomeUnknown { payment_hash: PaymentHash([1; 32]) };
    /// assert_eq!(e.payment_hash(), Some(PaymentHash([1; 32])));
    /// ```
    pub fn payment_hash(&self) -> Option<PaymentHash> {
        match self {
            ClientError::PaymentOutcomeUnknown { payment_hash }
            | ClientError::PreimageMismatch { payment_hash } => Some(*payment_hash),
            ClientError::RetryFailed { receipt, .. }
            | ClientError::ServerErrorAfterPayment { receipt, .. }
            | ClientError::StillUnpaid { receipt, .. } => Some(receipt.payment_hash),
            ClientError::BodyInterrupted {
                receipt: Some(receipt),
                ..
            } => Some(receipt.payment_hash),
            _ => None,
        }
    }
}

impl From<InvoiceError> for ClientError {
    fn from(e: InvoiceError) -> Self {
        match e {
            InvoiceError::TooExpensive { price, max } => {
                ClientError::PriceExceedsMaximum { price, max }
            }
            e => ClientError::Invoice(e),
        }
    }
}

impl From<ChallengeError> for ClientError {
    fn from(e: ChallengeError) -> Self {
        ClientError::Challenge(e)
    }
}

impl From<LightningError> for ClientError {
    fn from(e: LightningError) -> Self {
        match e {
            LightningError::Unknown { payment_hash } => {
                ClientError::PaymentOutcomeUnknown { payment_hash }
            }
            e => ClientError::Payment(e),
        }
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Http(e)
    }
}

/// Stable reasons: `price_exceeds_maximum`, the [`InvoiceError`],
/// [`ChallengeError`] or [`LightningError`] reason for the wrapping
/// variants, `no_l402_challenge`, `cross_origin_challenge`,
/// `payment_unknown`, `preimage_mismatch`, `body_not_cloneable`,
/// `http_error`, `retry_failed`, `server_error_after_payment`,
/// `body_interrupted`, `still_unpaid`.
///
/// `status()` is what a gateway built on this client would answer: 402 for
/// a price above the maximum, 503 for node failures, 502 otherwise.
impl Reason for ClientError {
    fn reason(&self) -> &'static str {
        match self {
            ClientError::PriceExceedsMaximum { .. } => "price_exceeds_maximum",
            ClientError::Invoice(e) => e.reason(),
            ClientError::Challenge(e) => e.reason(),
            ClientError::NoChallenge { .. } => "no_l402_challenge",
            ClientError::CrossOriginChallenge { .. } => "cross_origin_challenge",
            ClientError::Payment(e) => e.reason(),
            ClientError::PaymentOutcomeUnknown { .. } => "payment_unknown",
            ClientError::PreimageMismatch { .. } => "preimage_mismatch",
            ClientError::BodyNotCloneable => "body_not_cloneable",
            ClientError::Http(_) => "http_error",
            ClientError::RetryFailed { .. } => "retry_failed",
            ClientError::ServerErrorAfterPayment { .. } => "server_error_after_payment",
            ClientError::BodyInterrupted { .. } => "body_interrupted",
            ClientError::StillUnpaid { .. } => "still_unpaid",
        }
    }

    fn status(&self) -> u16 {
        match self {
            ClientError::PriceExceedsMaximum { .. } => 402,
            ClientError::Payment(_) | ClientError::PaymentOutcomeUnknown { .. } => 503,
            _ => 502,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_pick_the_dedicated_variants() {
        let e: ClientError = InvoiceError::TooExpensive {
            price: Msat(2),
            max: Msat(1),
        }
        .into();
        assert!(matches!(e, ClientError::PriceExceedsMaximum { .. }));
        let e: ClientError = InvoiceError::HashMismatch.into();
        assert_eq!(e.reason(), "invoice_hash_mismatch");
        let e: ClientError = LightningError::Unknown {
            payment_hash: PaymentHash([2; 32]),
        }
        .into();
        assert_eq!(e.reason(), "payment_unknown");
        assert!(e.may_have_paid());
        assert_eq!(e.status(), 503);
        let e: ClientError = LightningError::PaymentFailed {
            reason: "no route".into(),
        }
        .into();
        assert_eq!(e.reason(), "payment_failed");
        assert!(!e.may_have_paid());
        let e: ClientError = ChallengeError::MissingInvoice.into();
        assert_eq!(e.reason(), "challenge_missing_invoice");
    }
}
