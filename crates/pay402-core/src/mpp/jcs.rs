//! JSON Canonicalization Scheme (RFC 8785) for `request` and `opaque`.
//!
//! The canonical form is produced by the `serde_jcs` crate: members sorted by
//! their UTF-16 code units, strings escaped as ECMAScript's `JSON.stringify`
//! does (no escaping of `<>&`, U+2028/2029 or DEL; lowercase `\u00XX` for
//! controls), numbers rendered as ECMAScript renders an IEEE double (so
//! integers above 2^53 lose precision and `1e21` becomes `1e+21`). MPP keeps
//! every amount a decimal string, so only `chainId`-like small integers ever
//! reach the number path. The gate is Aperture's `canonicalization` vectors
//! (`tests/mpp_vectors.rs`).

use serde::Serialize;

use super::b64url;
use crate::problem::Reason;

/// Why a value could not be canonicalized.
///
/// ```
/// use pay402_core::mpp::jcs::{canonicalize_text, JcsError};
/// assert_eq!(canonicalize_text("{\"a\":"), Err(JcsError::InvalidJson));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// The input text is not JSON.
    #[error("not valid JSON")]
    InvalidJson,
    /// The value cannot be represented (a non-finite number, a non-string key).
    #[error("value cannot be canonicalized")]
    Unrepresentable,
}

impl Reason for JcsError {
    fn reason(&self) -> &'static str {
        match self {
            JcsError::InvalidJson => "invalid_json",
            JcsError::Unrepresentable => "json_not_canonicalizable",
        }
    }
}

/// The canonical JSON text of a serializable value.
///
/// ```
/// use pay402_core::mpp::jcs::canonicalize;
/// let v = serde_json::json!({"b": 1, "a": "x<y"});
/// assert_eq!(canonicalize(&v).unwrap(), r#"{"a":"x<y","b":1}"#);
/// ```
pub fn canonicalize<T: Serialize + ?Sized>(value: &T) -> Result<String, JcsError> {
    serde_jcs::to_string(value).map_err(|_| JcsError::Unrepresentable)
}

/// Parses JSON text and returns its canonical form.
///
/// ```
/// use pay402_core::mpp::jcs::canonicalize_text;
/// assert_eq!(canonicalize_text(r#"{"z":1.0,"a":[1e21]}"#).unwrap(), r#"{"a":[1e+21],"z":1}"#);
/// ```
pub fn canonicalize_text(text: &str) -> Result<String, JcsError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| JcsError::InvalidJson)?;
    canonicalize(&v)
}

/// `base64url_nopad(JCS(value))`: the encoding of `request` and `opaque`.
///
/// ```
/// use pay402_core::mpp::jcs::encode_param;
/// let v = serde_json::json!({"amount": "1000000"});
/// assert_eq!(encode_param(&v).unwrap(), "eyJhbW91bnQiOiIxMDAwMDAwIn0");
/// ```
pub fn encode_param<T: Serialize + ?Sized>(value: &T) -> Result<String, JcsError> {
    let text = canonicalize(value)?;
    Ok(b64url::encode(text.as_bytes()))
}
