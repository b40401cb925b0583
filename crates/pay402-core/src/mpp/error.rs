//! Verification errors and the RFC 9457 problem types MPP peers understand.
//!
//! Every [`VerifyError`] has a stable pay402 reason ([`Reason::reason`]), an
//! HTTP status, an MPP problem type (`https://paymentauth.org/problems/…`)
//! and a policy bit: whether the server may answer with a fresh challenge.
//! It may not after a replay of a valid credential (403) or when the payment
//! may have landed (500): a new 402 there invites a second payment.

use serde::Serialize;

use super::credential::CredentialError;
use crate::problem::Reason;
use crate::x402::ExactEvmError;

/// Base URI of the MPP problem types.
pub const PROBLEM_BASE: &str = "https://paymentauth.org/problems/";

/// An MPP problem type (core draft §"Problem Details", plus the SDKs' ones).
///
/// ```
/// use pay402_core::mpp::ProblemType;
/// assert_eq!(ProblemType::InvalidChallenge.uri(), "https://paymentauth.org/problems/invalid-challenge");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemType {
    /// `payment-required` (402): no credential.
    PaymentRequired,
    /// `payment-insufficient` (402).
    PaymentInsufficient,
    /// `payment-expired` (402).
    PaymentExpired,
    /// `verification-failed` (402, 403 for a replay).
    VerificationFailed,
    /// `method-unsupported` (400).
    MethodUnsupported,
    /// `malformed-credential` (402).
    MalformedCredential,
    /// `invalid-challenge` (402): not issued here, altered, or for another route.
    InvalidChallenge,
    /// `invalid-payload` (402).
    InvalidPayload,
    /// `bad-request` (400).
    BadRequest,
    /// `internal-payment-error` (500).
    InternalPaymentError,
}

impl ProblemType {
    /// The type's slug.
    ///
    /// ```
    /// assert_eq!(pay402_core::mpp::ProblemType::PaymentExpired.slug(), "payment-expired");
    /// ```
    pub const fn slug(self) -> &'static str {
        match self {
            ProblemType::PaymentRequired => "payment-required",
            ProblemType::PaymentInsufficient => "payment-insufficient",
            ProblemType::PaymentExpired => "payment-expired",
            ProblemType::VerificationFailed => "verification-failed",
            ProblemType::MethodUnsupported => "method-unsupported",
            ProblemType::MalformedCredential => "malformed-credential",
            ProblemType::InvalidChallenge => "invalid-challenge",
            ProblemType::InvalidPayload => "invalid-payload",
            ProblemType::BadRequest => "bad-request",
            ProblemType::InternalPaymentError => "internal-payment-error",
        }
    }

    /// The full type URI.
    ///
    /// ```
    /// assert!(pay402_core::mpp::ProblemType::BadRequest.uri().ends_with("/bad-request"));
    /// ```
    pub fn uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }

    /// The problem's title.
    ///
    /// ```
    /// assert_eq!(pay402_core::mpp::ProblemType::PaymentRequired.title(), "Payment Required");
    /// ```
    pub const fn title(self) -> &'static str {
        match self {
            ProblemType::PaymentRequired => "Payment Required",
            ProblemType::PaymentInsufficient => "Payment Insufficient",
            ProblemType::PaymentExpired => "Payment Expired",
            ProblemType::VerificationFailed => "Verification Failed",
            ProblemType::MethodUnsupported => "Method Unsupported",
            ProblemType::MalformedCredential => "Malformed Credential",
            ProblemType::InvalidChallenge => "Invalid Challenge",
            ProblemType::InvalidPayload => "Invalid Payload",
            ProblemType::BadRequest => "Bad Request",
            ProblemType::InternalPaymentError => "Internal Payment Error",
        }
    }
}

/// Why a server refused a Payment credential. The order of the variants is
/// the order of the checks (see [`super::verify`]).
///
/// ```
/// use pay402_core::mpp::{VerifyError, ProblemType};
/// use pay402_core::problem::Reason;
/// let e = VerifyError::Replayed;
/// assert_eq!((e.reason(), e.status(), e.problem_type()), ("credential_replayed", 403, ProblemType::VerificationFailed));
/// assert!(!e.fresh_challenge());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The credential does not decode.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The echoed id is not this server's HMAC of the echoed parameters.
    #[error("challenge was not issued by this server")]
    ChallengeNotIssued,
    /// The challenge is for another route (realm, method, intent, price, …).
    #[error("challenge does not match this route: {0}")]
    RouteMismatch(&'static str),
    /// The echoed `request` does not decode as this method's request.
    #[error("challenge request is invalid: {0}")]
    InvalidRequest(&'static str),
    /// The challenge has no `expires` (pay402 issues none without one).
    #[error("challenge has no expires")]
    MissingExpires,
    /// `expires` is not RFC 3339.
    #[error("challenge expires is not RFC 3339")]
    InvalidExpires,
    /// The challenge has expired.
    #[error("challenge has expired")]
    Expired,
    /// The payload does not fit the method's schema.
    #[error("invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// The request contradicts its own invoice (hash, network or amount).
    #[error("request does not match its invoice: {0}")]
    InvoiceMismatch(&'static str),
    /// The invoice has expired.
    #[error("invoice has expired")]
    InvoiceExpired,
    /// `sha256(preimage) != paymentHash`.
    #[error("preimage does not match the payment hash")]
    PreimageMismatch,
    /// The credential type was not offered by the challenge.
    #[error("credential type not offered")]
    CredentialTypeNotOffered,
    /// The challenge has splits, which this credential type cannot pay.
    #[error("splits need a permit2 credential")]
    SplitsUnsupported,
    /// The EIP-3009 nonce is not the challenge hash.
    #[error("authorization nonce is not bound to the challenge")]
    NonceNotBound,
    /// An EIP-3009 check of the shared x402 verifier failed.
    #[error("authorization rejected: {0}")]
    Authorization(ExactEvmError),
    /// The server does not serve this method/intent here.
    #[error("payment method not supported here")]
    MethodUnsupported,
    /// The credential was already used (answered 403, no new challenge).
    #[error("credential already used")]
    Replayed,
    /// The payment may have landed but the outcome is unknown (500, no new challenge).
    #[error("payment outcome unknown")]
    OutcomeUnknown,
}

impl VerifyError {
    /// The MPP problem type.
    ///
    /// ```
    /// use pay402_core::mpp::{VerifyError, ProblemType};
    /// assert_eq!(VerifyError::Expired.problem_type(), ProblemType::PaymentExpired);
    /// ```
    pub fn problem_type(&self) -> ProblemType {
        match self {
            VerifyError::Credential(CredentialError::Multiple) => ProblemType::BadRequest,
            VerifyError::Credential(_) => ProblemType::MalformedCredential,
            VerifyError::ChallengeNotIssued
            | VerifyError::RouteMismatch(_)
            | VerifyError::InvalidRequest(_)
            | VerifyError::MissingExpires
            | VerifyError::InvalidExpires
            | VerifyError::InvoiceMismatch(_) => ProblemType::InvalidChallenge,
            VerifyError::Expired | VerifyError::InvoiceExpired => ProblemType::PaymentExpired,
            VerifyError::InvalidPayload(_)
            | VerifyError::CredentialTypeNotOffered
            | VerifyError::SplitsUnsupported => ProblemType::InvalidPayload,
            VerifyError::PreimageMismatch
            | VerifyError::NonceNotBound
            | VerifyError::Authorization(_)
            | VerifyError::Replayed => ProblemType::VerificationFailed,
            VerifyError::MethodUnsupported => ProblemType::MethodUnsupported,
            VerifyError::OutcomeUnknown => ProblemType::InternalPaymentError,
        }
    }

    /// Whether the answer may carry a fresh challenge: false for a replay and
    /// for an unknown outcome, where a new 402 would invite paying twice.
    ///
    /// ```
    /// assert!(pay402_core::mpp::VerifyError::PreimageMismatch.fresh_challenge());
    /// assert!(!pay402_core::mpp::VerifyError::OutcomeUnknown.fresh_challenge());
    /// ```
    pub fn fresh_challenge(&self) -> bool {
        !matches!(self, VerifyError::Replayed | VerifyError::OutcomeUnknown)
    }
}

impl Reason for VerifyError {
    fn reason(&self) -> &'static str {
        match self {
            VerifyError::Credential(e) => e.reason(),
            VerifyError::ChallengeNotIssued => "challenge_not_issued",
            VerifyError::RouteMismatch(_) => "challenge_route_mismatch",
            VerifyError::InvalidRequest(_) => "challenge_invalid_request",
            VerifyError::MissingExpires => "challenge_missing_expires",
            VerifyError::InvalidExpires => "challenge_invalid_expires",
            VerifyError::Expired => "challenge_expired",
            VerifyError::InvalidPayload(_) => "invalid_payload",
            VerifyError::InvoiceMismatch(_) => "invoice_mismatch",
            VerifyError::InvoiceExpired => "invoice_expired",
            VerifyError::PreimageMismatch => "preimage_mismatch",
            VerifyError::CredentialTypeNotOffered => "credential_type_not_offered",
            VerifyError::SplitsUnsupported => "splits_unsupported",
            VerifyError::NonceNotBound => "authorization_nonce_not_bound",
            VerifyError::Authorization(e) => e.reason(),
            VerifyError::MethodUnsupported => "method_unsupported",
            VerifyError::Replayed => "credential_replayed",
            VerifyError::OutcomeUnknown => "payment_outcome_unknown",
        }
    }
    fn status(&self) -> u16 {
        match self {
            VerifyError::Credential(CredentialError::Multiple) | VerifyError::MethodUnsupported => {
                400
            }
            VerifyError::Replayed => 403,
            VerifyError::OutcomeUnknown => 500,
            _ => 402,
        }
    }
}

/// An RFC 9457 body in MPP's dialect: an MPP `type`, plus pay402's stable
/// `reason` and the `challengeId` the SDKs add.
///
/// ```
/// use pay402_core::mpp::{MppProblem, VerifyError};
/// let p = MppProblem::from_error(&VerifyError::PreimageMismatch, Some("cid"));
/// let json = p.to_json();
/// assert!(json.contains(r#""type":"https://paymentauth.org/problems/verification-failed""#));
/// assert!(json.contains(r#""reason":"preimage_mismatch""#));
/// assert!(json.contains(r#""challengeId":"cid""#));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MppProblem {
    /// The problem type URI.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The type's title.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong (never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// pay402's stable reason.
    pub reason: String,
    /// The id of the challenge concerned.
    #[serde(rename = "challengeId", skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
}

impl MppProblem {
    /// The `payment-required` problem of an unpaid request.
    ///
    /// ```
    /// let p = pay402_core::mpp::MppProblem::payment_required();
    /// assert_eq!(p.status, 402);
    /// ```
    pub fn payment_required() -> MppProblem {
        let t = ProblemType::PaymentRequired;
        MppProblem {
            type_uri: t.uri(),
            title: t.title().to_owned(),
            status: 402,
            detail: Some("Payment is required.".to_owned()),
            reason: "payment_required".to_owned(),
            challenge_id: None,
        }
    }

    /// The problem for a refused credential. The detail is the error's text,
    /// which never contains the preimage or a signature.
    ///
    /// See [`MppProblem`].
    ///
    /// ```
    /// let p = pay402_core::mpp::MppProblem::from_error(&pay402_core::mpp::VerifyError::Expired, None);
    /// assert_eq!(p.reason, "challenge_expired");
    /// ```
    pub fn from_error(err: &VerifyError, challenge_id: Option<&str>) -> MppProblem {
        let t = err.problem_type();
        MppProblem {
            type_uri: t.uri(),
            title: t.title().to_owned(),
            status: err.status(),
            detail: Some(err.to_string()),
            reason: err.reason().to_owned(),
            challenge_id: challenge_id.map(str::to_owned),
        }
    }

    /// Compact JSON.
    ///
    /// ```
    /// assert!(pay402_core::mpp::MppProblem::payment_required().to_json().starts_with('{'));
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}
