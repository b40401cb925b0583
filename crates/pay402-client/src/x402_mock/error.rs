//! [`MockClientError`]: everything that can go wrong paying an x402_mock 402.

use pay402_core::problem::Reason;
use pay402_core::x402::mock_chain::MockChainError;

use super::client::MockReceipt;
use crate::x402::SignerError;

/// Why [`MockClient`](super::MockClient) could not deliver a response.
///
/// [`MockClientError::may_have_paid`] separates the errors raised before any
/// permit left the process (nothing can be charged) from those after the
/// token endpoint may have accepted one (the server may settle it: keep the
/// [`MockReceipt`]).
///
/// ```
/// use pay402_client::x402_mock::MockClientError;
/// use pay402_core::problem::Reason;
/// let e = MockClientError::NoAcceptableComponent { offered: 2 };
/// assert_eq!(e.reason(), "mock_no_acceptable_component");
/// assert!(!e.may_have_paid());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockClientError {
    /// The request failed before any payment.
    #[error("HTTP request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// The server answered 402 with a body that is not an x402_mock offer.
    #[error("402 body is not an x402_mock offer: {detail}")]
    NotMockChallenge {
        /// What was wrong with it.
        detail: String,
    },
    /// No component matches an accepted token and chain within its cap.
    #[error("none of the {offered} offered payment components is acceptable; nothing was paid")]
    NoAcceptableComponent {
        /// How many components the server offered.
        offered: usize,
    },
    /// The chain reader is on another chain than the chosen component.
    #[error("chain reader is on chain {reader}, the component on chain {component}")]
    ChainMismatch {
        /// The reader's chain id.
        reader: u64,
        /// The component's chain id.
        component: u64,
    },
    /// The token endpoint is on another origin than the resource; a permit
    /// is never sent there.
    #[error("token endpoint {endpoint} is not on the resource's origin; nothing was paid")]
    CrossOriginTokenEndpoint {
        /// The endpoint as resolved.
        endpoint: String,
    },
    /// The request body is a stream and cannot be sent again after paying.
    #[error("request body cannot be cloned for the paid retry; nothing was paid")]
    BodyNotCloneable,
    /// Reading the permit nonce from the chain failed.
    #[error("reading the permit nonce: {0}")]
    Chain(MockChainError),
    /// The signer failed, or its signature does not recover to its address.
    #[error("signing the permit: {0}")]
    Signer(SignerError),
    /// The token endpoint refused the permit (problem+json reason); nothing
    /// will be charged for it.
    #[error("token endpoint refused the permit ({status}): {reason}")]
    PermitRefused {
        /// HTTP status.
        status: u16,
        /// The server's stable reason (`unknown` when it gave none).
        reason: String,
        /// The server's detail text.
        detail: Option<String>,
    },
    /// The permit was sent but no valid answer came back (transport error,
    /// unreadable answer): the server may have queued it.
    #[error("permit sent, but the token answer was lost: {detail}")]
    TokenAnswerLost {
        /// What went wrong.
        detail: String,
        /// The permit sent.
        receipt: Box<MockReceipt>,
    },
    /// The token was obtained but the paid retry failed at the HTTP level;
    /// the token stays cached.
    #[error("paid {} for {}, but the retry failed: {source}", receipt.amount, receipt.url)]
    RetryFailed {
        /// The transport error.
        #[source]
        source: reqwest::Error,
        /// What was paid.
        receipt: Box<MockReceipt>,
    },
    /// The token was obtained and sent, but the server still refused it.
    #[error("paid {} for {}, but the server still answered {status}", receipt.amount, receipt.url)]
    StillUnpaid {
        /// The status of the retry.
        status: u16,
        /// What was paid.
        receipt: Box<MockReceipt>,
    },
}

impl MockClientError {
    /// Whether a permit may be settled (money may move): `true` for
    /// [`TokenAnswerLost`](Self::TokenAnswerLost),
    /// [`RetryFailed`](Self::RetryFailed) and
    /// [`StillUnpaid`](Self::StillUnpaid).
    ///
    /// ```
    /// use pay402_client::x402_mock::MockClientError;
    /// assert!(!MockClientError::BodyNotCloneable.may_have_paid());
    /// ```
    pub fn may_have_paid(&self) -> bool {
        matches!(
            self,
            MockClientError::TokenAnswerLost { .. }
                | MockClientError::RetryFailed { .. }
                | MockClientError::StillUnpaid { .. }
        )
    }

    /// The permit sent, when one was.
    ///
    /// ```
    /// use pay402_client::x402_mock::MockClientError;
    /// assert!(MockClientError::BodyNotCloneable.receipt().is_none());
    /// ```
    pub fn receipt(&self) -> Option<&MockReceipt> {
        match self {
            MockClientError::TokenAnswerLost { receipt, .. }
            | MockClientError::RetryFailed { receipt, .. }
            | MockClientError::StillUnpaid { receipt, .. } => Some(receipt),
            _ => None,
        }
    }
}

impl Reason for MockClientError {
    fn reason(&self) -> &'static str {
        match self {
            MockClientError::Http(_) => "http_error",
            MockClientError::NotMockChallenge { .. } => "mock_not_a_challenge",
            MockClientError::NoAcceptableComponent { .. } => "mock_no_acceptable_component",
            MockClientError::ChainMismatch { .. } => "mock_chain_mismatch",
            MockClientError::CrossOriginTokenEndpoint { .. } => "mock_cross_origin_token_endpoint",
            MockClientError::BodyNotCloneable => "body_not_cloneable",
            MockClientError::Chain(e) => e.reason(),
            MockClientError::Signer(e) => e.reason(),
            MockClientError::PermitRefused { .. } => "mock_permit_refused",
            MockClientError::TokenAnswerLost { .. } => "mock_token_answer_lost",
            MockClientError::RetryFailed { .. } => "retry_failed",
            MockClientError::StillUnpaid { .. } => "still_unpaid",
        }
    }
    fn status(&self) -> u16 {
        match self {
            MockClientError::NoAcceptableComponent { .. }
            | MockClientError::PermitRefused { .. }
            | MockClientError::StillUnpaid { .. } => 402,
            _ => 502,
        }
    }
}
