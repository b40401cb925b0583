//! The receipt: `Payment-Receipt: <base64url(JSON)>` on a paid 2xx.
//!
//! `{"method", "reference", "status": "success", "timestamp", "challengeId"?,
//! "externalId"?, …}`. Members are emitted in mppx's order; unknown members
//! survive a decode/encode round trip (in [`Receipt::extra`]); integers keep
//! their exact value. A receipt never carries a preimage: the Lightning
//! constructor takes the payment hash.

use serde::{Deserialize, Serialize};

use super::b64url;
use super::rfc3339;
use crate::lightning::PaymentHash;
use crate::problem::Reason;
use crate::time::UnixTime;

/// Longest receipt accepted (decoded JSON bytes).
pub const MAX_RECEIPT_LEN: usize = 16 * 1024;

/// Why a `Payment-Receipt` value was refused.
///
/// ```
/// use pay402_core::mpp::{Receipt, ReceiptError};
/// assert_eq!(Receipt::decode("e30").unwrap_err().to_string(), "receipt is not valid JSON: missing field `method` at line 1 column 2");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not base64url.
    #[error("receipt is not base64url")]
    NotBase64,
    /// Longer than [`MAX_RECEIPT_LEN`].
    #[error("receipt too large")]
    TooLong,
    /// Not the receipt JSON object.
    #[error("receipt is not valid JSON: {0}")]
    InvalidJson(String),
    /// `status` is not `success`.
    #[error("receipt status is not success")]
    NotSuccess,
    /// `method` or `reference` is empty.
    #[error("receipt has an empty {0}")]
    Empty(&'static str),
    /// `timestamp` is not RFC 3339.
    #[error("receipt timestamp is not RFC 3339")]
    BadTimestamp,
}

impl Reason for ReceiptError {
    fn reason(&self) -> &'static str {
        match self {
            ReceiptError::NotBase64 | ReceiptError::InvalidJson(_) | ReceiptError::TooLong => {
                "malformed_receipt"
            }
            ReceiptError::NotSuccess => "receipt_not_success",
            ReceiptError::Empty(_) => "receipt_missing_field",
            ReceiptError::BadTimestamp => "receipt_bad_timestamp",
        }
    }
}

/// A payment receipt.
///
/// ```
/// use pay402_core::mpp::Receipt;
/// use pay402_core::lightning::PaymentHash;
/// use pay402_core::time::UnixTime;
/// let r = Receipt::lightning(&PaymentHash([2; 32]), "cid", UnixTime(1_767_225_660));
/// let back = Receipt::decode(&r.encode()).unwrap();
/// assert_eq!(back, r);
/// assert_eq!(back.timestamp, "2026-01-01T00:01:00Z");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The method id.
    pub method: String,
    /// Method-specific: Lightning payment hash, EVM transaction hash, …
    pub reference: String,
    /// Always `success`.
    pub status: String,
    /// RFC 3339 settlement time.
    pub timestamp: String,
    /// The challenge id (required by the Lightning method).
    #[serde(
        rename = "challengeId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub challenge_id: Option<String>,
    /// Echoed merchant reference.
    #[serde(
        rename = "externalId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    /// Every other member (method extras such as `chainId`, `refundSats`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Receipt {
    /// A receipt with the four required members.
    ///
    /// ```
    /// let r = pay402_core::mpp::Receipt::new("evm", "0xabc", pay402_core::time::UnixTime(0));
    /// assert_eq!(r.status, "success");
    /// ```
    pub fn new(method: &str, reference: &str, at: UnixTime) -> Receipt {
        Receipt {
            method: method.to_owned(),
            reference: reference.to_owned(),
            status: "success".to_owned(),
            timestamp: rfc3339::format(at),
            challenge_id: None,
            external_id: None,
            extra: serde_json::Map::new(),
        }
    }

    /// The Lightning charge receipt: `reference` is the payment hash (never
    /// the preimage), `challengeId` the challenge's id.
    ///
    /// ```
    /// use pay402_core::mpp::Receipt;
    /// let r = Receipt::lightning(&pay402_core::lightning::PaymentHash([0xab; 32]), "c", pay402_core::time::UnixTime(0));
    /// assert_eq!(r.reference, "ab".repeat(32));
    /// ```
    pub fn lightning(payment_hash: &PaymentHash, challenge_id: &str, at: UnixTime) -> Receipt {
        let mut r = Receipt::new("lightning", &payment_hash.to_hex(), at);
        r.challenge_id = Some(challenge_id.to_owned());
        r
    }

    /// The EVM charge receipt: `reference` is the transaction hash, with `chainId`.
    ///
    /// ```
    /// use pay402_core::mpp::Receipt;
    /// let r = Receipt::evm("0x01", 84532, "c", pay402_core::time::UnixTime(0));
    /// assert_eq!(r.extra["chainId"], 84532);
    /// ```
    pub fn evm(tx_hash: &str, chain_id: u64, challenge_id: &str, at: UnixTime) -> Receipt {
        let mut r = Receipt::new("evm", tx_hash, at);
        r.challenge_id = Some(challenge_id.to_owned());
        r.extra.insert("chainId".to_owned(), chain_id.into());
        r
    }

    /// The `Payment-Receipt` value.
    ///
    /// ```
    /// let r = pay402_core::mpp::Receipt::new("tempo", "0x1234", pay402_core::time::UnixTime(0));
    /// assert!(r.encode().starts_with("eyJtZXRob2QiOiJ0ZW1wbyI"));
    /// ```
    pub fn encode(&self) -> String {
        // A struct of strings and JSON values always serializes.
        let json = serde_json::to_vec(self).unwrap_or_default();
        b64url::encode(&json)
    }

    /// Reads a `Payment-Receipt` value (padding and either alphabet tolerated).
    ///
    /// See [`Receipt`].
    ///
    /// ```
    /// use pay402_core::mpp::{Receipt, ReceiptError};
    /// assert_eq!(Receipt::decode("!!").unwrap_err(), ReceiptError::NotBase64);
    /// ```
    pub fn decode(value: &str) -> Result<Receipt, ReceiptError> {
        let value = value.trim_matches([' ', '\t']);
        if value.len() > MAX_RECEIPT_LEN / 3 * 4 + 4 {
            return Err(ReceiptError::TooLong);
        }
        let json = b64url::decode_tolerant(value, MAX_RECEIPT_LEN).map_err(|e| match e {
            crate::b64::Base64Error::TooLong => ReceiptError::TooLong,
            _ => ReceiptError::NotBase64,
        })?;
        let r: Receipt =
            serde_json::from_slice(&json).map_err(|e| ReceiptError::InvalidJson(e.to_string()))?;
        if r.status != "success" {
            return Err(ReceiptError::NotSuccess);
        }
        if r.method.is_empty() {
            return Err(ReceiptError::Empty("method"));
        }
        if r.reference.is_empty() {
            return Err(ReceiptError::Empty("reference"));
        }
        rfc3339::parse(&r.timestamp).map_err(|_| ReceiptError::BadTimestamp)?;
        Ok(r)
    }
}
