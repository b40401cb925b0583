//! Core Lightning's JSON shapes: method results, JSON-RPC errors and `msat`
//! values (integers on current versions, `"1000msat"` strings on old ones).

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::util::SecretText;

/// CLN JSON-RPC error codes the client acts on (`common/jsonrpc_errors.h`).
pub(crate) mod code {
    /// `pay`: a payment for this hash is already in flight.
    pub(crate) const PAY_IN_PROGRESS: i64 = 200;
    /// `pay`: the hash was already paid (with another amount or destination).
    pub(crate) const PAY_RHASH_ALREADY_USED: i64 = 201;
    /// `pay`: the payment status is unexpected (outcome unclear).
    pub(crate) const PAY_STATUS_UNEXPECTED: i64 = 211;
    /// `injectpaymentonion` (used by xpay): the invoice is already paid.
    pub(crate) const PAY_INJECTPAYMENTONION_ALREADY_PAID: i64 = 219;
    /// `invoice`: the label is already used.
    pub(crate) const INVOICE_LABEL_ALREADY_EXISTS: i64 = 900;
}

/// A JSON-RPC error object `{"code", "message", "data"}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) data: Option<Value>,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (cln error {})", self.message.trim(), self.code)
    }
}

impl RpcError {
    /// `data.status`, which `pay` errors carry (`failed`, `pending`).
    pub(crate) fn data_status(&self) -> Option<&str> {
        self.data.as_ref()?.get("status")?.as_str()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    Wrapped { error: RpcError },
    Bare(RpcError),
}

/// Parses an error body: `{"code","message"}` (clnrest) or
/// `{"error":{"code","message"}}` (JSON-RPC).
pub(crate) fn parse_error_body(body: &[u8]) -> Option<RpcError> {
    match serde_json::from_slice::<ErrorBody>(body).ok()? {
        ErrorBody::Wrapped { error } | ErrorBody::Bare(error) => Some(error),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MsatRepr {
    Int(u64),
    Str(String),
}

/// Parses `"1000msat"`, `"1000"`; rejects everything else.
fn parse_msat_str(s: &str) -> Option<u64> {
    let digits = s.strip_suffix("msat").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An `msat` value as an integer or a `"<n>msat"` string; `null` or absent is `None`.
pub(crate) fn de_opt_msat<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<MsatRepr>::deserialize(d)? {
        None => Ok(None),
        Some(MsatRepr::Int(n)) => Ok(Some(n)),
        Some(MsatRepr::Str(s)) => parse_msat_str(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an msat amount, got {s:?}"))),
    }
}

/// The result of `invoice`.
#[derive(Debug, Deserialize)]
pub(crate) struct InvoiceResult {
    pub(crate) payment_hash: String,
    pub(crate) bolt11: String,
}

/// The result of `listinvoices`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListInvoices {
    pub(crate) invoices: Vec<ListedInvoice>,
}

/// One invoice in `listinvoices`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListedInvoice {
    #[serde(default)]
    pub(crate) payment_hash: Option<String>,
    pub(crate) status: String,
    #[serde(default, deserialize_with = "de_opt_msat")]
    pub(crate) amount_msat: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_msat")]
    pub(crate) amount_received_msat: Option<u64>,
    #[serde(default)]
    pub(crate) payment_preimage: Option<SecretText>,
}

/// The result of `pay`.
#[derive(Debug, Deserialize)]
pub(crate) struct PayResult {
    #[serde(default)]
    pub(crate) payment_preimage: Option<SecretText>,
    #[serde(default)]
    pub(crate) payment_hash: Option<String>,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default, deserialize_with = "de_opt_msat")]
    pub(crate) amount_msat: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_msat")]
    pub(crate) amount_sent_msat: Option<u64>,
}

/// The result of `listpays`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListPays {
    pub(crate) pays: Vec<ListedPay>,
}

/// One payment in `listpays` (note: `preimage`, not `payment_preimage`).
#[derive(Debug, Deserialize)]
pub(crate) struct ListedPay {
    #[serde(default)]
    pub(crate) payment_hash: Option<String>,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) preimage: Option<SecretText>,
    #[serde(default, deserialize_with = "de_opt_msat")]
    pub(crate) amount_msat: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_msat")]
    pub(crate) amount_sent_msat: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preimages_never_in_debug() {
        let pre = "11".repeat(32);
        let pay: PayResult = serde_json::from_str(&format!(
            r#"{{"payment_preimage":"{pre}","status":"complete"}}"#
        ))
        .unwrap();
        assert_eq!(pay.payment_preimage.as_deref(), Some(pre.as_str()));
        let listed: ListInvoices = serde_json::from_str(&format!(
            r#"{{"invoices":[{{"status":"paid","payment_preimage":"{pre}"}}]}}"#
        ))
        .unwrap();
        let pays: ListPays = serde_json::from_str(&format!(
            r#"{{"pays":[{{"status":"complete","preimage":"{pre}"}}]}}"#
        ))
        .unwrap();
        for shown in [
            format!("{pay:?}"),
            format!("{listed:?}"),
            format!("{pays:?}"),
        ] {
            assert!(!shown.contains(&pre), "{shown}");
            assert!(shown.contains("Some(..)"), "{shown}");
        }
    }

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "de_opt_msat")]
        m: Option<u64>,
    }

    #[test]
    fn msat_as_integer_or_string() {
        let parse = |s: &str| serde_json::from_str::<T>(s).map(|t| t.m);
        assert_eq!(parse(r#"{"m":1000}"#).unwrap(), Some(1000));
        assert_eq!(parse(r#"{"m":"1000msat"}"#).unwrap(), Some(1000));
        assert_eq!(parse(r#"{"m":"42"}"#).unwrap(), Some(42));
        assert_eq!(parse(r#"{"m":null}"#).unwrap(), None);
        assert_eq!(parse(r#"{}"#).unwrap(), None);
        for bad in [
            r#"{"m":"msat"}"#,
            r#"{"m":"1sat"}"#,
            r#"{"m":"-1msat"}"#,
            r#"{"m":-1}"#,
            r#"{"m":1.5}"#,
            r#"{"m":"1 msat"}"#,
            r#"{"m":"99999999999999999999msat"}"#,
            r#"{"m":true}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn error_bodies_bare_and_wrapped() {
        let bare = parse_error_body(
            br#"{"code":1501,"message":"Not authorized: Not derived from master"}"#,
        )
        .unwrap();
        assert_eq!(bare.code, 1501);
        let wrapped = parse_error_body(
            br#"{"error":{"code":205,"message":"Ran out of routes","data":{"status":"failed"}}}"#,
        )
        .unwrap();
        assert_eq!(wrapped.code, 205);
        assert_eq!(wrapped.data_status(), Some("failed"));
        assert_eq!(wrapped.to_string(), "Ran out of routes (cln error 205)");
        assert!(parse_error_body(b"Unable to parse request").is_none());
        assert!(parse_error_body(br#"{"message":"no code"}"#).is_none());
    }
}
