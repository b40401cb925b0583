//! The facilitator port: who verifies a payment against the chain and settles
//! it.
//!
//! An x402 resource server never touches the chain itself: it hands the
//! client's payment and the requirement it answers to a [`Facilitator`]. The
//! trait is a declaration only; `pay402-backends` implements it twice (a
//! local facilitator on alloy that signs and sends `transferWithAuthorization`
//! itself, and an HTTP client for a remote facilitator's `/verify`, `/settle`
//! and `/supported`), and `pay402-server` calls it.
//!
//! Outcomes are split in two on purpose:
//!
//! - an **answer** from the facilitator ([`VerifyResponse`] with
//!   `isValid: false`, [`SettleResponse`] with `success: false`) is a verdict
//!   on the payment, carrying the reference reason (for example
//!   `invalid_exact_evm_signature`, `insufficient_funds`);
//! - a [`FacilitatorError`] means no verdict was reached (unreachable,
//!   timed out, malformed answer) or, for [`FacilitatorError::Pending`], that
//!   the settlement transaction was sent but not yet mined within the bound:
//!   the money may move, so a server must record it rather than treat it as a
//!   failure.
//!
//! ```
//! use pay402_core::x402::facilitator::{Facilitator, FacilitatorError, PaymentRequest};
//! use pay402_core::x402::{SettleResponse, SupportedResponse, VerifyResponse};
//!
//! /// A facilitator that refuses everything (for illustration).
//! struct Refuse;
//!
//! #[async_trait::async_trait]
//! impl Facilitator for Refuse {
//!     async fn verify(&self, request: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
//!         Ok(VerifyResponse { is_valid: false, invalid_reason: Some("unsupported_scheme".into()), ..Default::default() })
//!     }
//!     async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
//!         Ok(SettleResponse::failure("unsupported_scheme", request.network()))
//!     }
//!     async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
//!         Ok(SupportedResponse::default())
//!     }
//! }
//! ```

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::types::{
    ExactEvmPayload, FacilitatorRequest, FacilitatorRequestV1, FacilitatorRequestV2,
    PaymentPayloadV1, PaymentPayloadV2, PaymentRequirements, PaymentRequirementsV1, SettleResponse,
    SupportedResponse, VerifyResponse,
};
use crate::problem::Reason;

/// A payment and the requirement it answers, in either protocol version: the
/// body of `POST /verify` and `POST /settle`.
///
/// It (de)serialises as the facilitator wire body
/// `{"x402Version", "paymentPayload", "paymentRequirements"}`; the version
/// field picks the variant.
///
/// ```
/// use pay402_core::x402::facilitator::PaymentRequest;
/// let json = r#"{"x402Version":2,"paymentPayload":{"x402Version":2,"accepted":{"scheme":"exact","network":"eip155:31337","amount":"10000","asset":"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512","payTo":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","maxTimeoutSeconds":60},"payload":{"signature":"0x00","authorization":{"from":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","to":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","value":"10000","validAfter":"0","validBefore":"9999999999","nonce":"0x0000000000000000000000000000000000000000000000000000000000000001"}}},"paymentRequirements":{"scheme":"exact","network":"eip155:31337","amount":"10000","asset":"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512","payTo":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","maxTimeoutSeconds":60}}"#;
/// let request: PaymentRequest = serde_json::from_str(json).unwrap();
/// assert_eq!(request.x402_version(), 2);
/// assert_eq!(request.network(), "eip155:31337");
/// assert_eq!(serde_json::to_string(&request).unwrap(), json);
/// ```
// Built once per payment and passed by reference: boxing the larger v2
// variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum PaymentRequest {
    /// x402 v1 (`X-PAYMENT`, network slugs, `maxAmountRequired`).
    V1(FacilitatorRequestV1<ExactEvmPayload>),
    /// x402 v2 (`PAYMENT-SIGNATURE`, CAIP-2 networks, exact `amount`).
    V2(FacilitatorRequestV2<ExactEvmPayload>),
}

impl PaymentRequest {
    /// A v2 request.
    ///
    /// ```
    /// # use pay402_core::x402::facilitator::PaymentRequest;
    /// # fn f(p: pay402_core::x402::PaymentPayloadV2, r: pay402_core::x402::PaymentRequirements) {
    /// let request = PaymentRequest::v2(p, r);
    /// assert_eq!(request.x402_version(), 2);
    /// # }
    /// ```
    pub fn v2(payload: PaymentPayloadV2, requirements: PaymentRequirements) -> PaymentRequest {
        PaymentRequest::V2(FacilitatorRequest {
            x402_version: 2,
            payment_payload: payload,
            payment_requirements: requirements,
        })
    }

    /// A v1 request.
    ///
    /// ```
    /// # use pay402_core::x402::facilitator::PaymentRequest;
    /// # fn f(p: pay402_core::x402::PaymentPayloadV1, r: pay402_core::x402::PaymentRequirementsV1) {
    /// let request = PaymentRequest::v1(p, r);
    /// assert_eq!(request.x402_version(), 1);
    /// # }
    /// ```
    pub fn v1(payload: PaymentPayloadV1, requirements: PaymentRequirementsV1) -> PaymentRequest {
        PaymentRequest::V1(FacilitatorRequest {
            x402_version: 1,
            payment_payload: payload,
            payment_requirements: requirements,
        })
    }

    /// Parses a `/verify` or `/settle` body: reads `x402Version` with a
    /// scan that builds nothing, then the typed request of that version
    /// straight from `json` (the [`Deserialize`] impl, which must work for
    /// any format, goes through a `serde_json::Value` and takes about twice
    /// as long). The body must be UTF-8; duplicate fields are refused, as by
    /// the typed structs (the `Value` path keeps the last). Inside members
    /// it ignores it is laxer than the `Value` path (lone surrogates, deep
    /// nesting), which changes nothing in the request it returns.
    ///
    /// ```
    /// use pay402_core::x402::facilitator::PaymentRequest;
    /// let err = PaymentRequest::from_json_slice(br#"{"x402Version":3}"#).unwrap_err();
    /// assert!(err.to_string().contains("unsupported x402Version 3"));
    /// assert!(PaymentRequest::from_json_slice(b"{}").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// A [`serde_json::Error`] for malformed JSON, a missing or unsupported
    /// `x402Version`, or a request that does not fit that version's types.
    pub fn from_json_slice(json: &[u8]) -> Result<PaymentRequest, serde_json::Error> {
        use serde::de::Error;
        /// Only `x402Version`; a derive skips every other member unparsed.
        #[derive(Deserialize)]
        struct Version {
            #[serde(rename = "x402Version")]
            x402_version: Option<u64>,
        }
        let json = std::str::from_utf8(json)
            .map_err(|e| serde_json::Error::custom(format!("the body is not UTF-8: {e}")))?;
        let version: Version = serde_json::from_str(json)?;
        match version.x402_version {
            Some(1) => serde_json::from_str(json).map(PaymentRequest::V1),
            Some(2) => serde_json::from_str(json).map(PaymentRequest::V2),
            Some(other) => Err(serde_json::Error::custom(format!(
                "unsupported x402Version {other}"
            ))),
            None => Err(serde_json::Error::missing_field("x402Version")),
        }
    }

    /// The protocol version (1 or 2).
    ///
    /// ```
    /// # use pay402_core::x402::facilitator::PaymentRequest;
    /// # fn f(r: &PaymentRequest) { assert!(matches!(r.x402_version(), 1 | 2)); }
    /// ```
    pub fn x402_version(&self) -> u32 {
        match self {
            PaymentRequest::V1(_) => 1,
            PaymentRequest::V2(_) => 2,
        }
    }

    /// The network of the requirement (CAIP-2 in v2, the slug in v1).
    ///
    /// ```
    /// # use pay402_core::x402::facilitator::PaymentRequest;
    /// # fn f(r: &PaymentRequest) { let _ = r.network(); }
    /// ```
    pub fn network(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_requirements.network,
            PaymentRequest::V2(r) => &r.payment_requirements.network,
        }
    }

    /// The scheme of the requirement.
    ///
    /// ```
    /// # use pay402_core::x402::facilitator::PaymentRequest;
    /// # fn f(r: &PaymentRequest) { assert_eq!(r.scheme(), "exact"); }
    /// ```
    pub fn scheme(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_requirements.scheme,
            PaymentRequest::V2(r) => &r.payment_requirements.scheme,
        }
    }

    /// The EIP-3009 payload (signature and authorization).
    ///
    /// ```
    /// # use pay402_core::x402::facilitator::PaymentRequest;
    /// # fn f(r: &PaymentRequest) { let _nonce = &r.exact_payload().authorization.nonce; }
    /// ```
    pub fn exact_payload(&self) -> &ExactEvmPayload {
        match self {
            PaymentRequest::V1(r) => &r.payment_payload.payload,
            PaymentRequest::V2(r) => &r.payment_payload.payload,
        }
    }
}

impl Serialize for PaymentRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PaymentRequest::V1(r) => r.serialize(s),
            PaymentRequest::V2(r) => r.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for PaymentRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PaymentRequest, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        let version = value
            .get("x402Version")
            .and_then(Value::as_u64)
            .ok_or_else(|| D::Error::missing_field("x402Version"))?;
        match version {
            1 => serde_json::from_value(value)
                .map(PaymentRequest::V1)
                .map_err(D::Error::custom),
            2 => serde_json::from_value(value)
                .map(PaymentRequest::V2)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("unsupported x402Version {other}"))),
        }
    }
}

/// No verdict was reached, or a settlement is still in flight.
///
/// ```
/// use pay402_core::x402::facilitator::FacilitatorError;
/// use pay402_core::problem::Reason;
/// let e = FacilitatorError::Pending { transaction: "0xabc".into(), network: "eip155:31337".into() };
/// assert_eq!(e.reason(), "settlement_pending");
/// assert_eq!(FacilitatorError::Unavailable("connection refused".into()).status(), 503);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FacilitatorError {
    /// The facilitator (or its chain RPC) could not be reached, or timed out.
    #[error("facilitator unavailable: {0}")]
    Unavailable(String),
    /// The facilitator answered something that is not a valid response.
    #[error("invalid facilitator response: {0}")]
    InvalidResponse(String),
    /// The facilitator refused the request itself (HTTP 4xx other than a
    /// verdict, authentication failure, unsupported kind).
    #[error("facilitator refused the request ({status}): {message}")]
    Refused {
        /// The HTTP status (or 400 for a local refusal).
        status: u16,
        /// What the facilitator said.
        message: String,
    },
    /// The settlement transaction was sent but its receipt did not arrive
    /// within the bound. The money may still move: record the transaction
    /// and reconcile, never report the payment as failed.
    #[error("settlement pending: transaction {transaction} on {network}")]
    Pending {
        /// The transaction hash.
        transaction: String,
        /// The network it was sent on.
        network: String,
    },
}

impl Reason for FacilitatorError {
    fn reason(&self) -> &'static str {
        match self {
            FacilitatorError::Unavailable(_) => "facilitator_unavailable",
            FacilitatorError::InvalidResponse(_) => "facilitator_invalid_response",
            FacilitatorError::Refused { .. } => "facilitator_refused",
            FacilitatorError::Pending { .. } => "settlement_pending",
        }
    }
    fn status(&self) -> u16 {
        match self {
            FacilitatorError::Pending { .. } => 202,
            FacilitatorError::Refused { .. } => 502,
            _ => 503,
        }
    }
}

/// Verifies and settles x402 payments (`/verify`, `/settle`, `/supported`).
///
/// Implementations must be safe to call concurrently: a server calls `settle`
/// from many requests at once, and a local facilitator must not let two
/// settlements collide on its own account nonce.
///
/// ```
/// use std::sync::Arc;
/// use pay402_core::x402::facilitator::Facilitator;
/// fn share(f: Arc<dyn Facilitator>) -> Arc<dyn Facilitator> { f }
/// ```
#[async_trait]
pub trait Facilitator: Send + Sync + 'static {
    /// Checks a payment without moving money: signature, amounts, times,
    /// balance, nonce state and (for a local facilitator) a simulation of the
    /// transfer. `Ok` with `is_valid: false` is a verdict with a reason.
    async fn verify(&self, request: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError>;

    /// Moves the money. `Ok` with `success: false` is a verdict with a
    /// reason (nothing moved); [`FacilitatorError::Pending`] means the
    /// transaction was sent and may still be mined.
    async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError>;

    /// The kinds (version, scheme, network) this facilitator can settle.
    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError>;
}
