//! The five REST bodies of payment channel protocol v2 (§4.1), as two1 sends
//! and expects them, plus pay402's structured error body.
//!
//! | Call | Request | Response (200) |
//! |---|---|---|
//! | `GET /payment` | — | [`ChannelInfo`] |
//! | `POST /payment` | [`OpenRequest`] | [`OpenResponse`] |
//! | `GET /payment/<deposit_txid>` | — | [`ChannelStatus`] |
//! | `PUT /payment/<deposit_txid>` | [`PaymentRequest`] | [`PaymentResponse`] |
//! | `DELETE /payment/<deposit_txid>` | [`CloseRequest`] | [`CloseResponse`] |
//!
//! two1's client sends request bodies form-encoded; its server tries JSON
//! first, then form. [`decode_request`] does the same, bounded by
//! [`MAX_BODY_BYTES`]. Responses are JSON. Errors are [`Problem`] bodies
//! (see [`error_body`]) instead of two1's plain-text 400s.
//!
//! ```
//! use pay402_core::bitreq::rest::{OpenRequest, decode_request};
//! let r: OpenRequest = decode_request(b"deposit_tx=0100&redeem_script=63").unwrap();
//! assert_eq!(r.redeem_script, "63");
//! ```

use bitcoin::consensus::encode::deserialize;
use bitcoin::{ScriptBuf, Transaction, Txid};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::problem::{Problem, Reason};

use super::state::ChannelError;

/// The largest request or response body parsed, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The largest hex transaction accepted in a body (100 000 bytes of transaction).
pub const MAX_TX_HEX: usize = 200_000;
/// The only channel protocol version two1's client accepts.
pub const PROTOCOL_VERSION: u32 = 2;

/// `GET /payment` response: the merchant key, protocol version and zeroconf flag.
///
/// ```
/// use pay402_core::bitreq::rest::ChannelInfo;
/// let info: ChannelInfo = serde_json::from_str(
///     r#"{"public_key": "0316f5d704b828c3252432886a843649730e08ae01bbbd5c6bde63756d7f54f961", "version": 2, "zeroconf": false}"#).unwrap();
/// assert!(info.merchant_key().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The merchant's compressed public key, 66 hex digits.
    pub public_key: String,
    /// The protocol version; must be 2.
    pub version: u32,
    /// Whether the server treats an unconfirmed deposit as ready.
    pub zeroconf: bool,
}

impl ChannelInfo {
    /// The info for a merchant key (version 2).
    ///
    /// ```
    /// use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// let pk = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// let info = pay402_core::bitreq::rest::ChannelInfo::new(&pk, false);
    /// assert_eq!(info.version, 2);
    /// ```
    pub fn new(merchant: &bitcoin::secp256k1::PublicKey, zeroconf: bool) -> ChannelInfo {
        ChannelInfo {
            public_key: hex::encode(merchant.serialize()),
            version: PROTOCOL_VERSION,
            zeroconf,
        }
    }

    /// The merchant key, checking the version is 2 (as two1's client does).
    ///
    /// ```
    /// use pay402_core::bitreq::rest::ChannelInfo;
    /// use pay402_core::bitreq::state::ChannelError;
    /// let info = ChannelInfo { public_key: "00".into(), version: 1, zeroconf: false };
    /// assert_eq!(info.merchant_key(), Err(ChannelError::UnsupportedVersion));
    /// ```
    pub fn merchant_key(&self) -> Result<bitcoin::secp256k1::PublicKey, ChannelError> {
        if self.version != PROTOCOL_VERSION {
            return Err(ChannelError::UnsupportedVersion);
        }
        let b = bounded_hex(&self.public_key, 66, "public_key")?;
        bitcoin::secp256k1::PublicKey::from_slice(&b)
            .map_err(|_| ChannelError::MalformedBody("public_key"))
    }
}

/// `POST /payment` request: the deposit and redeem script, hex.
///
/// ```
/// use pay402_core::bitreq::rest::OpenRequest;
/// let r = OpenRequest { deposit_tx: "zz".into(), redeem_script: "63".into() };
/// assert!(r.decode().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// The signed deposit transaction, hex.
    pub deposit_tx: String,
    /// The redeem script, hex.
    pub redeem_script: String,
}

impl OpenRequest {
    /// Decodes the deposit and the script (bounded; the script is not yet checked
    /// against the v2 template: [`super::channel::verify_deposit`] does that).
    ///
    /// ```
    /// use pay402_core::bitreq::rest::OpenRequest;
    /// let r = OpenRequest { deposit_tx: "00".into(), redeem_script: "63".into() };
    /// assert_eq!(r.decode().unwrap_err().to_string(), "malformed body field deposit_tx");
    /// ```
    pub fn decode(&self) -> Result<(Transaction, ScriptBuf), ChannelError> {
        let tx = decode_tx(&self.deposit_tx, "deposit_tx")?;
        let script = bounded_hex(&self.redeem_script, 2 * 81, "redeem_script")?;
        Ok((tx, ScriptBuf::from_bytes(script)))
    }
}

/// `POST /payment` response (status **200**, not the 201 two1's doc claims).
///
/// ```
/// let r = pay402_core::bitreq::rest::OpenResponse { deposit_txid: "ab".into() };
/// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"deposit_txid":"ab"}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenResponse {
    /// The deposit txid, hex in RPC byte order.
    pub deposit_txid: String,
}

/// `GET /payment/<deposit_txid>` response.
///
/// `time_left` is, despite its name, the absolute expiry (UNIX time).
///
/// ```
/// use pay402_core::bitreq::rest::ChannelStatus;
/// let s: ChannelStatus = serde_json::from_str(r#"{"status":"ready","balance":1000,"time_left":1450223410}"#).unwrap();
/// assert_eq!(s.balance, 1000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// `confirming`, `ready` or `closed` (two1's server states).
    pub status: String,
    /// The last cumulative payment amount, satoshi.
    pub balance: u64,
    /// The absolute expiry, UNIX time.
    pub time_left: u64,
}

/// `PUT /payment/<deposit_txid>` request: the half-signed payment, hex.
///
/// ```
/// use pay402_core::bitreq::rest::PaymentRequest;
/// let r = PaymentRequest { payment_tx: "".into() };
/// assert!(r.decode().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequest {
    /// The half-signed payment transaction, hex.
    pub payment_tx: String,
}

impl PaymentRequest {
    /// Decodes the transaction (bounded).
    ///
    /// ```
    /// use pay402_core::bitreq::rest::PaymentRequest;
    /// assert!(PaymentRequest { payment_tx: "0".repeat(200_002) }.decode().is_err());
    /// ```
    pub fn decode(&self) -> Result<Transaction, ChannelError> {
        decode_tx(&self.payment_tx, "payment_tx")
    }
}

/// `PUT /payment/<deposit_txid>` response: the token (half-signed txid).
///
/// ```
/// let r = pay402_core::bitreq::rest::PaymentResponse { payment_txid: "ab".into() };
/// assert!(serde_json::to_string(&r).unwrap().contains("payment_txid"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentResponse {
    /// The txid of the half-signed payment: the token.
    pub payment_txid: String,
}

/// `DELETE /payment/<deposit_txid>` request: the hex DER close signature.
///
/// ```
/// use pay402_core::bitreq::rest::{CloseRequest, decode_request};
/// let r: CloseRequest = decode_request(br#"{"signature": "3045"}"#).unwrap();
/// assert_eq!(r.signature, "3045");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRequest {
    /// DER ECDSA by the customer over SHA-256 of the ASCII deposit txid, hex.
    pub signature: String,
}

/// `DELETE /payment/<deposit_txid>` response: the txid of the fully signed,
/// broadcast payment.
///
/// ```
/// let r = pay402_core::bitreq::rest::CloseResponse { payment_txid: "ab".into() };
/// assert!(serde_json::to_string(&r).unwrap().contains("ab"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseResponse {
    /// The txid of the broadcast spend.
    pub payment_txid: String,
}

/// Parses a request body as two1's server does: JSON first, then
/// `application/x-www-form-urlencoded`. Bounded by [`MAX_BODY_BYTES`].
///
/// ```
/// use pay402_core::bitreq::rest::{PaymentRequest, decode_request};
/// use pay402_core::bitreq::state::ChannelError;
/// let a: PaymentRequest = decode_request(br#"{"payment_tx":"01"}"#).unwrap();
/// let b: PaymentRequest = decode_request(b"payment_tx=01").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(decode_request::<PaymentRequest>(b"x=1").unwrap_err(), ChannelError::MalformedBody("body"));
/// ```
pub fn decode_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, ChannelError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ChannelError::BodyTooLarge);
    }
    if let Ok(v) = serde_json::from_slice::<T>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body).map_err(|_| ChannelError::MalformedBody("body"))?;
    let mut map = serde_json::Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = form_unescape(k).ok_or(ChannelError::MalformedBody("body"))?;
        let v = form_unescape(v).ok_or(ChannelError::MalformedBody("body"))?;
        if map.insert(k, serde_json::Value::String(v)).is_some() {
            return Err(ChannelError::MalformedBody("body"));
        }
    }
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|_| ChannelError::MalformedBody("body"))
}

/// Encodes a request body form-encoded, as two1's client sends it.
///
/// ```
/// use pay402_core::bitreq::rest::{CloseRequest, encode_form};
/// assert_eq!(encode_form(&CloseRequest { signature: "30".into() }), "signature=30");
/// ```
pub fn encode_form<T: Serialize>(body: &T) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(body) else {
        return String::new();
    };
    let mut out = String::new();
    for (k, v) in map {
        if !out.is_empty() {
            out.push('&');
        }
        let v = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        form_escape(&mut out, &k);
        out.push('=');
        form_escape(&mut out, &v);
    }
    out
}

fn form_escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn form_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let h = b.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
                i += 2;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The deposit txid of a channel path `<endpoint>/<deposit_txid>` (e.g.
/// `/payment/7e1a…51ef`); a trailing slash is tolerated.
///
/// ```
/// use pay402_core::bitreq::rest::channel_path_txid;
/// let p = "/payment/7e1a558c84abd5aaf57999557f4a7205d4b69241b7c9cab6c0795fdd663a51ef";
/// assert!(channel_path_txid(p, "/payment").is_ok());
/// assert!(channel_path_txid("/payment/xyz", "/payment").is_err());
/// ```
pub fn channel_path_txid(path: &str, endpoint: &str) -> Result<Txid, ChannelError> {
    let rest = path
        .strip_prefix(endpoint.trim_end_matches('/'))
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(ChannelError::ChannelNotFound)?;
    let id = rest.strip_suffix('/').unwrap_or(rest);
    if id.len() != 64 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(ChannelError::MalformedBody("deposit_txid"));
    }
    id.parse()
        .map_err(|_| ChannelError::MalformedBody("deposit_txid"))
}

/// pay402's error answer: the HTTP status and an RFC 9457 [`Problem`] with a
/// stable `reason` (400 malformed, 402 unpaid / underpaid, 404 unknown channel,
/// 409 already used or wrong state, 413 too large, 503 chain unavailable).
///
/// ```
/// use pay402_core::bitreq::rest::error_body;
/// use pay402_core::bitreq::state::ChannelError;
/// let (status, p) = error_body(&ChannelError::AlreadyRedeemed);
/// assert_eq!((status, p.reason.as_str()), (409, "payment_already_used"));
/// ```
pub fn error_body<E: Reason + std::fmt::Display + ?Sized>(err: &E) -> (u16, Problem) {
    let status = err.status();
    (status, Problem::from_reason(err, status))
}

fn bounded_hex(s: &str, max: usize, field: &'static str) -> Result<Vec<u8>, ChannelError> {
    if s.len() > max {
        return Err(ChannelError::MalformedBody(field));
    }
    hex::decode(s.trim_ascii()).map_err(|_| ChannelError::MalformedBody(field))
}

fn decode_tx(s: &str, field: &'static str) -> Result<Transaction, ChannelError> {
    let b = bounded_hex(s, MAX_TX_HEX, field)?;
    deserialize(&b).map_err(|_| ChannelError::MalformedBody(field))
}
