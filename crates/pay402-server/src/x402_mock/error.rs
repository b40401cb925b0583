//! Why the token endpoint or the protected route refused a request.

use pay402_core::problem::{Problem, Reason};
use pay402_core::x402::mock::{AccessTokenError, MockError};
use pay402_core::x402::mock_chain::MockChainError;

use super::queue::QueueError;

/// A refusal of the x402_mock server, with a stable reason and a status.
///
/// Client faults are 4xx; only an unavailable chain node or store is 5xx
/// (503), and then nothing was accepted.
///
/// ```
/// use pay402_server::x402_mock::MockServerError;
/// use pay402_core::problem::Reason;
/// assert_eq!(MockServerError::NonceUsed.reason(), "permit_replayed");
/// assert_eq!(MockServerError::NonceUsed.status(), 409);
/// assert_eq!(MockServerError::InsufficientBalance.reason(), "permit_insufficient_balance");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MockServerError {
    /// The request body is larger than the limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// The body is not a permit request (`{version, permit}`).
    #[error("malformed permit request: {0}")]
    MalformedRequest(String),
    /// The body's `version` is not `"Version 0.1"`.
    #[error("unsupported protocol version")]
    UnsupportedVersion,
    /// The token endpoint was called without a `resource` query parameter,
    /// or for a resource this server does not sell.
    #[error("unknown resource")]
    UnknownResource,
    /// A local permit check failed (type, token/chain, spender, deadline,
    /// signature, value): the core reasons.
    #[error(transparent)]
    Permit(MockError),
    /// The permit expires too soon to be settled.
    #[error("permit deadline is too close to settle it")]
    DeadlineTooSoon,
    /// The permit's nonce is already used on chain: a replay.
    #[error("permit nonce already used on chain")]
    NonceUsed,
    /// The permit's nonce is ahead of the owner's on-chain nonce.
    #[error("permit nonce is not the owner's current nonce")]
    NonceMismatch,
    /// The owner's balance does not cover the price.
    #[error("payer balance is below the price")]
    InsufficientBalance,
    /// The settlement queue refused the job (a replay, or a pending permit
    /// with the same nonce), or is unavailable.
    #[error(transparent)]
    Queue(QueueError),
    /// The chain node could not answer.
    #[error("chain unavailable: {0}")]
    Chain(MockChainError),
    /// The presented access token is invalid.
    #[error(transparent)]
    Token(AccessTokenError),
    /// The access token was revoked (its settlement failed).
    #[error("access token revoked")]
    Revoked,
    /// The client sent more permits than
    /// [`MockConfig::token_limit`](super::MockConfig::token_limit) allows;
    /// it may try again after this many seconds.
    #[error("too many permits from this client; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the client may try again (`Retry-After`).
        retry_after_secs: u64,
    },
}

impl Reason for MockServerError {
    fn reason(&self) -> &'static str {
        match self {
            MockServerError::BodyTooLarge => "body_too_large",
            MockServerError::MalformedRequest(_) => "malformed_permit_request",
            MockServerError::UnsupportedVersion => "unsupported_protocol_version",
            MockServerError::UnknownResource => "unknown_resource",
            MockServerError::Permit(e) => e.reason(),
            MockServerError::DeadlineTooSoon => "permit_deadline_too_soon",
            MockServerError::NonceUsed => "permit_replayed",
            MockServerError::NonceMismatch => "permit_nonce_mismatch",
            MockServerError::InsufficientBalance => "permit_insufficient_balance",
            MockServerError::Queue(e) => e.reason(),
            MockServerError::Chain(_) => "chain_unavailable",
            MockServerError::Token(e) => e.reason(),
            MockServerError::Revoked => "access_token_revoked",
            MockServerError::RateLimited { .. } => "rate_limited",
        }
    }

    fn status(&self) -> u16 {
        match self {
            MockServerError::BodyTooLarge => 413,
            MockServerError::MalformedRequest(_) | MockServerError::UnsupportedVersion => 400,
            MockServerError::UnknownResource => 404,
            // Component amounts are validated when a route is registered, so
            // `InvalidAmount` cannot come from a client; keep it 4xx anyway.
            MockServerError::Permit(MockError::InvalidAmount) => 400,
            MockServerError::Permit(e) => e.status(),
            MockServerError::DeadlineTooSoon
            | MockServerError::NonceMismatch
            | MockServerError::InsufficientBalance => 402,
            MockServerError::NonceUsed => 409,
            MockServerError::Queue(e) => e.status(),
            MockServerError::Chain(_) => 503,
            MockServerError::Token(AccessTokenError::KeyTooShort) => 500,
            MockServerError::Token(_) | MockServerError::Revoked => 401,
            MockServerError::RateLimited { .. } => 429,
        }
    }
}

impl MockServerError {
    /// The RFC 9457 problem for this refusal.
    ///
    /// ```
    /// use pay402_server::x402_mock::MockServerError;
    /// let p = MockServerError::Revoked.problem();
    /// assert_eq!((p.status, p.reason.as_str()), (401, "access_token_revoked"));
    /// ```
    pub fn problem(&self) -> Problem {
        Problem::from_reason(self, self.status())
    }
}
