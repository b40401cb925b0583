//! LND REST JSON conventions, shared by the LND client and simnet's REST face.
//!
//! LND's REST API is grpc-gateway over protobuf: 64-bit integers are JSON
//! strings, `bytes` fields are standard base64, enums are their names, and
//! errors are `{"code": <grpc code>, "message": "...", "details": []}`
//! (wrapped in `{"error": ...}` on streaming calls).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::{Deserialize, Deserializer};

/// gRPC status codes used on the wire.
#[allow(dead_code)]
pub(crate) mod code {
    pub(crate) const UNKNOWN: i64 = 2;
    pub(crate) const INVALID_ARGUMENT: i64 = 3;
    pub(crate) const NOT_FOUND: i64 = 5;
    pub(crate) const ALREADY_EXISTS: i64 = 6;
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(u64),
    Str(String),
}

fn parse_u64_field<E: serde::de::Error>(v: IntOrString) -> Result<u64, E> {
    match v {
        IntOrString::Int(n) => Ok(n),
        IntOrString::Str(s) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!(
                    "expected an unsigned integer, got {s:?}"
                )));
            }
            s.parse::<u64>()
                .map_err(|_| E::custom(format!("integer out of range: {s:?}")))
        }
    }
}

/// An int64 sent as a JSON string (LND's convention) or as a plain number.
pub(crate) fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    parse_u64_field(IntOrString::deserialize(d)?)
}

/// Like [`de_u64`], with `null` as `None`.
#[allow(dead_code)]
pub(crate) fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(None),
        Some(v) => parse_u64_field(v).map(Some),
    }
}

/// An enum sent by name (grpc-gateway's default) or by number.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum EnumField {
    Name(String),
    Number(i64),
}

#[allow(dead_code)]
impl EnumField {
    /// The enum's name, using `names[n]` for numbers.
    pub(crate) fn name<'a>(&'a self, names: &[&'a str]) -> &'a str {
        match self {
            EnumField::Name(s) => s,
            EnumField::Number(n) => usize::try_from(*n)
                .ok()
                .and_then(|i| names.get(i).copied())
                .unwrap_or(""),
        }
    }
}

/// A gRPC status as grpc-gateway renders it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[allow(dead_code)]
pub(crate) struct GrpcStatus {
    #[serde(default)]
    pub(crate) code: i64,
    #[serde(default)]
    pub(crate) message: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum GrpcErrorBody {
    Wrapped { error: GrpcStatus },
    Bare(GrpcStatus),
}

/// Parses `{"code","message"}` or `{"error":{"code","message"}}`.
///
/// Returns `None` unless the body is JSON with at least a non-empty message
/// or a non-zero code.
#[allow(dead_code)]
pub(crate) fn parse_grpc_error(body: &[u8]) -> Option<GrpcStatus> {
    let status = match serde_json::from_slice::<GrpcErrorBody>(body).ok()? {
        GrpcErrorBody::Wrapped { error } => error,
        GrpcErrorBody::Bare(s) => s,
    };
    if status.code == 0 && status.message.is_empty() {
        None
    } else {
        Some(status)
    }
}

/// Standard base64 (what LND emits).
#[allow(dead_code)]
pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// URL-safe base64 with padding (what grpc-gateway accepts in URL paths).
#[allow(dead_code)]
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

/// Decodes a 32-byte value given as standard or URL-safe padded base64,
/// the two forms grpc-gateway accepts.
#[allow(dead_code)]
pub(crate) fn b64_32(s: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(s).or_else(|_| URL_SAFE.decode(s)).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Decodes a 32-byte value given as 64 hex digits or as base64 (either alphabet).
#[allow(dead_code)]
pub(crate) fn hex_or_b64_32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() == 64 && hex::decode_to_slice(s, &mut out).is_ok() {
        return Some(out);
    }
    b64_32(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "de_u64")]
        v: u64,
        #[serde(default, deserialize_with = "de_opt_u64")]
        o: Option<u64>,
    }

    #[test]
    fn int64_as_string_or_number() {
        let t: T = serde_json::from_str(r#"{"v":"18446744073709551615","o":7}"#).unwrap();
        assert_eq!((t.v, t.o), (u64::MAX, Some(7)));
        let t: T = serde_json::from_str(r#"{"v":12,"o":"3"}"#).unwrap();
        assert_eq!((t.v, t.o), (12, Some(3)));
        let t: T = serde_json::from_str(r#"{"o":null}"#).unwrap();
        assert_eq!((t.v, t.o), (0, None));
        for bad in [
            r#"{"v":""}"#,
            r#"{"v":"-1"}"#,
            r#"{"v":"+1"}"#,
            r#"{"v":" 1"}"#,
            r#"{"v":"1.5"}"#,
            r#"{"v":1.5}"#,
            r#"{"v":-1}"#,
            r#"{"v":"18446744073709551616"}"#,
            r#"{"v":true}"#,
        ] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn grpc_errors_bare_and_wrapped() {
        let bare =
            parse_grpc_error(br#"{"code":5,"message":"unable to locate invoice","details":[]}"#);
        assert_eq!(bare.map(|s| s.code), Some(5));
        let wrapped =
            parse_grpc_error(br#"{"error":{"code":6,"message":"invoice is already paid"}}"#)
                .unwrap();
        assert_eq!(wrapped.message, "invoice is already paid");
        assert!(parse_grpc_error(b"<html>bad gateway</html>").is_none());
        assert!(parse_grpc_error(b"{}").is_none());
    }

    #[test]
    fn base64_and_hex_32() {
        let bytes = [0xfbu8; 32];
        assert_eq!(b64_32(&b64(&bytes)), Some(bytes));
        assert_eq!(b64_32(&b64url(&bytes)), Some(bytes));
        assert_eq!(hex_or_b64_32(&hex::encode(bytes)), Some(bytes));
        assert_eq!(hex_or_b64_32(&b64url(&bytes)), Some(bytes));
        assert_eq!(b64_32(&b64(&[1u8; 31])), None);
        assert_eq!(hex_or_b64_32("zz"), None);
    }

    #[test]
    fn enum_by_name_or_number() {
        let names = ["OPEN", "SETTLED", "CANCELED", "ACCEPTED"];
        let f: EnumField = serde_json::from_str("1").unwrap();
        assert_eq!(f.name(&names), "SETTLED");
        let f: EnumField = serde_json::from_str(r#""CANCELED""#).unwrap();
        assert_eq!(f.name(&names), "CANCELED");
        let f: EnumField = serde_json::from_str("9").unwrap();
        assert_eq!(f.name(&names), "");
    }
}
