//! Header codecs: every x402 header value is standard padded base64 of
//! compact JSON. Input length is capped before anything is decoded.
//!
//! ```
//! use pay402_core::x402::{HeaderValue, SettleResponse, header};
//! let s = SettleResponse::failure("insufficient_funds", "eip155:84532");
//! let v = s.encode_header();
//! assert_eq!(v, "eyJzdWNjZXNzIjpmYWxzZSwiZXJyb3JSZWFzb24iOiJpbnN1ZmZpY2llbnRfZnVuZHMiLCJuZXR3b3JrIjoiZWlwMTU1Ojg0NTMyIn0=");
//! assert_eq!(SettleResponse::decode_header(&v).unwrap(), s);
//! assert_eq!(header::PAYMENT_RESPONSE, "PAYMENT-RESPONSE");
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::problem::Reason;

/// v1: the client's payment (`PaymentPayloadV1`).
///
/// ```
/// assert_eq!(pay402_core::x402::header::X_PAYMENT, "X-PAYMENT");
/// ```
pub const X_PAYMENT: &str = "X-PAYMENT";
/// v1: the settlement receipt (`SettleResponse`).
///
/// ```
/// assert_eq!(pay402_core::x402::header::X_PAYMENT_RESPONSE, "X-PAYMENT-RESPONSE");
/// ```
pub const X_PAYMENT_RESPONSE: &str = "X-PAYMENT-RESPONSE";
/// v2: the 402 offer (`PaymentRequired`).
///
/// ```
/// assert_eq!(pay402_core::x402::header::PAYMENT_REQUIRED, "PAYMENT-REQUIRED");
/// ```
pub const PAYMENT_REQUIRED: &str = "PAYMENT-REQUIRED";
/// v2: the client's payment (`PaymentPayloadV2`).
///
/// ```
/// assert_eq!(pay402_core::x402::header::PAYMENT_SIGNATURE, "PAYMENT-SIGNATURE");
/// ```
pub const PAYMENT_SIGNATURE: &str = "PAYMENT-SIGNATURE";
/// v2: the settlement receipt (`SettleResponse`).
///
/// ```
/// assert_eq!(pay402_core::x402::header::PAYMENT_RESPONSE, "PAYMENT-RESPONSE");
/// ```
pub const PAYMENT_RESPONSE: &str = "PAYMENT-RESPONSE";

/// Longest header value decoded, in base64 characters (16 KiB).
///
/// ```
/// use pay402_core::x402::{header::MAX_HEADER_LEN, HeaderValue, HeaderError, SettleResponse};
/// let big = "A".repeat(MAX_HEADER_LEN + 1);
/// assert_eq!(SettleResponse::decode_header(&big), Err(HeaderError::TooLarge));
/// ```
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// Why a header value was rejected.
///
/// ```
/// use pay402_core::x402::{HeaderValue, HeaderError, SettleResponse};
/// use pay402_core::problem::Reason;
/// let e = SettleResponse::decode_header("!!!").unwrap_err();
/// assert_eq!(e, HeaderError::Base64);
/// assert_eq!(e.reason(), "invalid_payload");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The value is longer than the limit.
    #[error("payment header too large")]
    TooLarge,
    /// The value is empty.
    #[error("empty payment header")]
    Empty,
    /// The value is not base64.
    #[error("payment header is not valid base64")]
    Base64,
    /// The decoded bytes are not the expected JSON.
    #[error("payment header is not valid JSON: {0}")]
    Json(String),
}

impl Reason for HeaderError {
    fn reason(&self) -> &'static str {
        match self {
            HeaderError::TooLarge => "payment_header_too_large",
            HeaderError::Empty | HeaderError::Base64 | HeaderError::Json(_) => "invalid_payload",
        }
    }
    fn status(&self) -> u16 {
        match self {
            HeaderError::TooLarge => 431,
            _ => 400,
        }
    }
}

/// Decodes a header value (base64 of JSON) into `T`, reusing `buf` for the
/// decoded bytes. Accepts standard or URL-safe, padded or not; rejects values
/// over `max_len` characters before decoding.
///
/// ```
/// use pay402_core::x402::header::decode_with;
/// use pay402_core::x402::SettleResponse;
/// let mut buf = Vec::new();
/// let s: SettleResponse = decode_with("eyJzdWNjZXNzIjp0cnVlfQ==", 1024, &mut buf).unwrap();
/// assert!(s.success);
/// ```
pub fn decode_with<T: DeserializeOwned>(
    value: &str,
    max_len: usize,
    buf: &mut Vec<u8>,
) -> Result<T, HeaderError> {
    decode_base64(value, max_len, buf)?;
    serde_json::from_slice(buf).map_err(|e| HeaderError::Json(e.to_string()))
}

pub(crate) fn decode_base64(
    value: &str,
    max_len: usize,
    buf: &mut Vec<u8>,
) -> Result<(), HeaderError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if value.len() > max_len {
        return Err(HeaderError::TooLarge);
    }
    if value.is_empty() {
        return Err(HeaderError::Empty);
    }
    b64::decode_any_into(value, max_len, buf).map_err(|e| match e {
        b64::Base64Error::TooLong => HeaderError::TooLarge,
        b64::Base64Error::Empty => HeaderError::Empty,
        _ => HeaderError::Base64,
    })
}

/// Like [`decode_with`], but the result may borrow from `buf` (for types
/// such as [`PaymentPayloadV2Ref`](super::borrowed::PaymentPayloadV2Ref)
/// whose strings are `Cow`s into the decoded JSON).
///
/// ```
/// use pay402_core::x402::header::decode_borrowed;
/// let mut buf = Vec::new();
/// let s: &str = decode_borrowed("ImhpIg==", 1024, &mut buf).unwrap(); // "hi"
/// assert_eq!(s, "hi");
/// ```
pub fn decode_borrowed<'a, T: Deserialize<'a>>(
    value: &str,
    max_len: usize,
    buf: &'a mut Vec<u8>,
) -> Result<T, HeaderError> {
    decode_base64(value, max_len, buf)?;
    let buf: &'a Vec<u8> = buf;
    // When the whole buffer is UTF-8 (always, for honest clients), one check
    // of it replaces serde_json's per-string checks. Otherwise from_slice, as
    // the owned path, which tolerates bad UTF-8 inside ignored values: both
    // paths accept exactly the same input.
    match std::str::from_utf8(buf) {
        Ok(json) => serde_json::from_str(json),
        Err(_) => serde_json::from_slice(buf),
    }
    .map_err(|e| HeaderError::Json(e.to_string()))
}

/// Encodes `value` as standard padded base64 of compact JSON.
///
/// ```
/// assert_eq!(pay402_core::x402::header::encode(&serde_json::json!({"a":1})), "eyJhIjoxfQ==");
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing these types to a Vec cannot fail (string keys only).
    let json = serde_json::to_vec(value).unwrap_or_default();
    b64::encode_std(&json)
}

/// The types carried in x402 headers: `PaymentRequired`, `PaymentPayloadV1`,
/// `PaymentPayloadV2`, `SettleResponse`.
///
/// ```
/// use pay402_core::x402::{HeaderValue, PaymentPayloadV2};
/// let v = "eyJ4NDAyVmVyc2lvbiI6Mn0="; // {"x402Version":2}: no `accepted`
/// assert!(PaymentPayloadV2::<serde_json::Value>::decode_header(v).is_err());
/// ```
pub trait HeaderValue: Serialize + DeserializeOwned {
    /// Decodes a header value, at most [`MAX_HEADER_LEN`] characters.
    ///
    /// ```
    /// use pay402_core::x402::{HeaderValue, SettleResponse};
    /// assert!(SettleResponse::decode_header("eyJzdWNjZXNzIjp0cnVlfQ==").unwrap().success);
    /// ```
    fn decode_header(value: &str) -> Result<Self, HeaderError> {
        let mut buf = Vec::new();
        decode_with(value, MAX_HEADER_LEN, &mut buf)
    }

    /// Encodes as a header value.
    ///
    /// ```
    /// use pay402_core::x402::{HeaderValue, SettleResponse};
    /// let v = SettleResponse::failure("x", "base").encode_header();
    /// assert_eq!(SettleResponse::decode_header(&v).unwrap().error_reason.as_deref(), Some("x"));
    /// ```
    fn encode_header(&self) -> String {
        encode(self)
    }
}

impl HeaderValue for super::PaymentRequired {}
impl HeaderValue for super::SettleResponse {}
impl<P: Serialize + DeserializeOwned> HeaderValue for super::PaymentPayloadV2<P> {}
impl<P: Serialize + DeserializeOwned> HeaderValue for super::PaymentPayloadV1<P> {}
