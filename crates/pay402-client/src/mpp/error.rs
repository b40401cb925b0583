//! [`MppError`]: why an MPP purchase failed.

use pay402_core::problem::Reason;

/// Why an MPP payment or its paid request failed.
///
/// [`may_have_paid`](Self::may_have_paid) says whether money may have
/// moved.
///
/// ```
/// use pay402_client::mpp::MppError;
/// use pay402_core::problem::Reason;
/// let e = MppError::OutcomeUnknown { status: 500 };
/// assert_eq!(e.reason(), "payment_outcome_unknown");
/// assert!(e.may_have_paid());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MppError {
    /// No Lightning node to pay a `lightning`/`charge`.
    #[error("no Lightning payer for a lightning charge")]
    NoLightning,
    /// No EVM signer (or no configured token) for an `evm`/`charge`.
    #[error("no EVM signer or token for this evm charge")]
    NoEvm,
    /// The Lightning payment failed (its typed error).
    #[error("Lightning payment: {0}")]
    Lightning(#[source] Box<crate::error::ClientError>),
    /// The node returned a preimage that does not hash to the charge's
    /// payment hash; it is never sent.
    #[error("the preimage does not match the payment hash")]
    PreimageMismatch,
    /// Signing the EIP-3009 authorization failed (nothing left the process).
    #[cfg(feature = "x402")]
    #[error("signing: {0}")]
    Signer(#[source] crate::x402::SignerError),
    /// The credential could not be encoded or put in a header (nothing left
    /// the process).
    #[error("the credential cannot be sent: {0}")]
    Credential(&'static str),
    /// The paid request failed in transit: the payment was made.
    #[error("the paid request failed: {0}")]
    RetryFailed(#[source] reqwest::Error),
    /// The server answered the credential with another 402: it refused the
    /// payment (or already consumed the challenge). Not paid again.
    #[error("the server refused the credential ({status}{})", problem.as_deref().map(|p| format!(", {p}")).unwrap_or_default())]
    StillUnpaid {
        /// The status.
        status: u16,
        /// The problem `type` the server gave, if any.
        problem: Option<String>,
    },
    /// The server answered the paid request with a 5xx: the payment may
    /// have been consumed. The journal entry stays open; the same request
    /// presents the same credential again, never a second payment.
    #[error("server error {status} after payment; outcome unknown, not paying again")]
    OutcomeUnknown {
        /// The status.
        status: u16,
    },
}

impl MppError {
    /// Whether money was, or may have been, spent.
    ///
    /// ```
    /// assert!(!pay402_client::mpp::MppError::NoLightning.may_have_paid());
    /// ```
    pub fn may_have_paid(&self) -> bool {
        match self {
            MppError::Lightning(e) => e.may_have_paid(),
            MppError::PreimageMismatch
            | MppError::RetryFailed(_)
            | MppError::StillUnpaid { .. }
            | MppError::OutcomeUnknown { .. } => true,
            _ => false,
        }
    }
}

impl Reason for MppError {
    fn reason(&self) -> &'static str {
        match self {
            MppError::NoLightning => "no_lightning_payer",
            MppError::NoEvm => "no_evm_signer",
            MppError::Lightning(e) => e.reason(),
            MppError::PreimageMismatch => "preimage_mismatch",
            #[cfg(feature = "x402")]
            MppError::Signer(e) => e.reason(),
            MppError::Credential(_) => "credential_unsendable",
            MppError::RetryFailed(_) => "retry_failed",
            MppError::StillUnpaid { .. } => "payment_refused",
            MppError::OutcomeUnknown { .. } => "payment_outcome_unknown",
        }
    }

    fn status(&self) -> u16 {
        502
    }
}
