//! The off-chain bit-transfer: `Bitcoin-Transfer` JSON + `Authorization` signature.
//!
//! two1 wrote the JSON with Python's `json.dumps` defaults (`", "` and `": "`
//! separators, ASCII-only escapes) in the key order `payer, payer_pubkey,
//! payee_address, payee_username, amount, timestamp, description`, with
//! `payer_pubkey` = base64 of the 33-byte key **plus a trailing newline**.
//! `Authorization` is base64 of the 64-byte compact ECDSA signature (r‖s,
//! RFC 6979, low-S) over the single SHA-256 of the exact header bytes.
//!
//! 21's ledger is gone, so [`verify`] does locally what it did: parse, check
//! the signature against `payer_pubkey`. Replay protection (by
//! [`VerifiedTransfer::id`]) and freshness (by [`VerifiedTransfer::timestamp`])
//! are the server's ledger's job.
//!
//! ```
//! use pay402_core::bitreq::{BitreqError, transfer::verify};
//! assert_eq!(verify("not json", "x").unwrap_err(), BitreqError::MalformedTransfer);
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bitcoin::secp256k1::{Message, PublicKey, SecretKey, ecdsa::Signature};
use sha2::{Digest, Sha256};

use crate::money::Sat;
use crate::time::UnixTime;

use super::error::BitreqError;
use super::headers::{MAX_AUTHORIZATION_LEN, MAX_TRANSFER_LEN};
use super::onchain::AmountRule;
use super::secp;

/// A bit-transfer to be signed (the client side).
///
/// ```
/// use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// use pay402_core::bitreq::BitTransfer;
/// use pay402_core::money::Sat;
/// let key = SecretKey::from_slice(&[7; 32]).unwrap();
/// let t = BitTransfer {
///     payer: "alice".into(),
///     payer_pubkey: key.public_key(&Secp256k1::new()),
///     payee_address: "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM".into(),
///     payee_username: "HelloNakaMoto".into(),
///     amount: Sat(1000),
///     timestamp: 1453338704.678601,
///     description: "https://example.com/r".into(),
/// };
/// let json = t.to_header().unwrap();
/// assert!(json.starts_with("{\"payer\": \"alice\", \"payer_pubkey\": \""));
/// assert!(json.contains("\\n\", \"payee_address\""));
/// assert!(json.ends_with("\"amount\": 1000, \"timestamp\": 1453338704.678601, \"description\": \"https://example.com/r\"}"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BitTransfer {
    /// The payer's username.
    pub payer: String,
    /// The payer's public key (the signing key's).
    pub payer_pubkey: PublicKey,
    /// The payee's address (from `Bitcoin-Address`).
    pub payee_address: String,
    /// The payee's username (from `Username`).
    pub payee_username: String,
    /// The amount (from `Price`).
    pub amount: Sat,
    /// UNIX time as Python's `time.time()` float; must be `0` or in `[1e-4, 1e16)`.
    pub timestamp: f64,
    /// The resource URL.
    pub description: String,
}

impl BitTransfer {
    /// The `Bitcoin-Transfer` header value, byte-for-byte as two1 wrote it.
    ///
    /// Fails with `malformed_transfer` for a timestamp outside the supported range.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # let key = SecretKey::from_slice(&[7; 32]).unwrap();
    /// # let mut t = pay402_core::bitreq::BitTransfer { payer: "a".into(),
    /// #   payer_pubkey: key.public_key(&Secp256k1::new()), payee_address: "x".into(),
    /// #   payee_username: "y".into(), amount: pay402_core::money::Sat(1), timestamp: 5.0,
    /// #   description: "é".into() };
    /// let json = t.to_header().unwrap();
    /// assert!(json.contains("\"timestamp\": 5.0, \"description\": \"\\u00e9\"}"));
    /// t.timestamp = f64::NAN;
    /// assert!(t.to_header().is_err());
    /// ```
    pub fn to_header(&self) -> Result<String, BitreqError> {
        let ts = self.timestamp;
        if !(ts == 0.0 || (1e-4..1e16).contains(&ts)) {
            return Err(BitreqError::MalformedTransfer);
        }
        let mut pk = STANDARD.encode(self.payer_pubkey.serialize());
        pk.push('\n');
        let mut out = String::with_capacity(256);
        out.push_str("{\"payer\": ");
        py_str(&mut out, &self.payer);
        out.push_str(", \"payer_pubkey\": ");
        py_str(&mut out, &pk);
        out.push_str(", \"payee_address\": ");
        py_str(&mut out, &self.payee_address);
        out.push_str(", \"payee_username\": ");
        py_str(&mut out, &self.payee_username);
        out.push_str(", \"amount\": ");
        out.push_str(&self.amount.0.to_string());
        out.push_str(", \"timestamp\": ");
        // Rust's `Debug` for f64 is the shortest round-trip form with `.0` for
        // integers, as Python's `repr`, in the range accepted above.
        out.push_str(&format!("{ts:?}"));
        out.push_str(", \"description\": ");
        py_str(&mut out, &self.description);
        out.push('}');
        if out.len() > MAX_TRANSFER_LEN {
            return Err(BitreqError::MalformedTransfer);
        }
        Ok(out)
    }

    /// Builds the header and signs it with `key` (which should match `payer_pubkey`).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # let key = SecretKey::from_slice(&[7; 32]).unwrap();
    /// # let t = pay402_core::bitreq::BitTransfer { payer: "a".into(),
    /// #   payer_pubkey: key.public_key(&Secp256k1::new()), payee_address: "x".into(),
    /// #   payee_username: "y".into(), amount: pay402_core::money::Sat(1), timestamp: 5.0,
    /// #   description: "u".into() };
    /// let signed = t.sign(&key).unwrap();
    /// assert_eq!(signed.authorization.len(), 88);
    /// let ok = pay402_core::bitreq::transfer::verify(&signed.transfer, &signed.authorization).unwrap();
    /// assert_eq!(ok.payer, "a");
    /// ```
    pub fn sign(&self, key: &SecretKey) -> Result<SignedTransfer, BitreqError> {
        let transfer = self.to_header()?;
        let authorization = sign_header(&transfer, key);
        Ok(SignedTransfer {
            transfer,
            authorization,
        })
    }
}

/// The two proof headers of a bit-transfer.
///
/// ```
/// let s = pay402_core::bitreq::SignedTransfer { transfer: "{}".into(), authorization: "sig".into() };
/// assert_eq!(s.into_proof().method(), "transfer");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTransfer {
    /// `Bitcoin-Transfer`.
    pub transfer: String,
    /// `Authorization`.
    pub authorization: String,
}

impl SignedTransfer {
    /// As a [`super::Proof`].
    ///
    /// ```
    /// let s = pay402_core::bitreq::SignedTransfer { transfer: "{}".into(), authorization: "s".into() };
    /// assert!(matches!(s.into_proof(), pay402_core::bitreq::Proof::Transfer { .. }));
    /// ```
    pub fn into_proof(self) -> super::Proof {
        super::Proof::Transfer {
            transfer: self.transfer,
            authorization: self.authorization,
        }
    }
}

/// Signs arbitrary header text as two1's `Two1Wallet.sign_message` did:
/// base64(r‖s) of RFC 6979 low-S ECDSA over SHA-256(text).
///
/// ```
/// let key = bitcoin::secp256k1::SecretKey::from_slice(&[1; 32]).unwrap();
/// let a = pay402_core::bitreq::transfer::sign_header("{}", &key);
/// assert_eq!(a, pay402_core::bitreq::transfer::sign_header("{}", &key)); // deterministic
/// ```
pub fn sign_header(text: &str, key: &SecretKey) -> String {
    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    let sig = secp().sign_ecdsa(&Message::from_digest(digest), key);
    STANDARD.encode(sig.serialize_compact())
}

/// A bit-transfer whose signature verified; fields for the server's ledger.
///
/// ```
/// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// # let key = SecretKey::from_slice(&[7; 32]).unwrap();
/// # let t = pay402_core::bitreq::BitTransfer { payer: "a".into(),
/// #   payer_pubkey: key.public_key(&Secp256k1::new()), payee_address: "x".into(),
/// #   payee_username: "y".into(), amount: pay402_core::money::Sat(9), timestamp: 5.5,
/// #   description: "u".into() };
/// let s = t.sign(&key).unwrap();
/// let v = pay402_core::bitreq::transfer::verify(&s.transfer, &s.authorization).unwrap();
/// assert_eq!(v.amount.0, 9);
/// assert_eq!(v.timestamp_secs().0, 5);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedTransfer {
    /// SHA-256 of the header bytes: the signed digest, usable as the replay key.
    pub id: [u8; 32],
    /// `payer`.
    pub payer: String,
    /// `payer_pubkey`, the key the signature verified against.
    pub payer_pubkey: PublicKey,
    /// `payee_address`, if present.
    pub payee_address: Option<String>,
    /// `payee_username`, if present.
    pub payee_username: Option<String>,
    /// `amount`.
    pub amount: Sat,
    /// `timestamp` (float seconds).
    pub timestamp: f64,
    /// `description` (the resource URL).
    pub description: String,
}

impl VerifiedTransfer {
    /// The replay key as lowercase hex.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # let key = SecretKey::from_slice(&[7; 32]).unwrap();
    /// # let t = pay402_core::bitreq::BitTransfer { payer: "a".into(),
    /// #   payer_pubkey: key.public_key(&Secp256k1::new()), payee_address: "x".into(),
    /// #   payee_username: "y".into(), amount: pay402_core::money::Sat(9), timestamp: 5.5,
    /// #   description: "u".into() };
    /// # let s = t.sign(&key).unwrap();
    /// let v = pay402_core::bitreq::transfer::verify(&s.transfer, &s.authorization).unwrap();
    /// assert_eq!(v.id_hex().len(), 64);
    /// ```
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// The timestamp in whole seconds (negative or non-finite become 0).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # let key = SecretKey::from_slice(&[7; 32]).unwrap();
    /// # let t = pay402_core::bitreq::BitTransfer { payer: "a".into(),
    /// #   payer_pubkey: key.public_key(&Secp256k1::new()), payee_address: "x".into(),
    /// #   payee_username: "y".into(), amount: pay402_core::money::Sat(9), timestamp: 7.9,
    /// #   description: "u".into() };
    /// # let s = t.sign(&key).unwrap();
    /// let v = pay402_core::bitreq::transfer::verify(&s.transfer, &s.authorization).unwrap();
    /// assert_eq!(v.timestamp_secs().0, 7);
    /// ```
    pub fn timestamp_secs(&self) -> UnixTime {
        // `as` saturates and maps NaN to 0.
        UnixTime(self.timestamp as u64)
    }

    /// The checks two1 left to 21's ledger: the amount against the price and
    /// the payee against this server (each payee check only if `Some`).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # let key = SecretKey::from_slice(&[7; 32]).unwrap();
    /// # let t = pay402_core::bitreq::BitTransfer { payer: "a".into(),
    /// #   payer_pubkey: key.public_key(&Secp256k1::new()), payee_address: "x".into(),
    /// #   payee_username: "y".into(), amount: pay402_core::money::Sat(9), timestamp: 7.9,
    /// #   description: "u".into() };
    /// # let s = t.sign(&key).unwrap();
    /// use pay402_core::bitreq::{AmountRule, BitreqError};
    /// use pay402_core::money::Sat;
    /// let v = pay402_core::bitreq::transfer::verify(&s.transfer, &s.authorization).unwrap();
    /// assert!(v.check_payment(Sat(9), AmountRule::Exact, Some("y"), None).is_ok());
    /// assert_eq!(v.check_payment(Sat(10), AmountRule::AtLeast, None, None), Err(BitreqError::IncorrectAmount));
    /// assert_eq!(v.check_payment(Sat(9), AmountRule::Exact, Some("z"), None), Err(BitreqError::PayeeMismatch));
    /// ```
    pub fn check_payment(
        &self,
        price: Sat,
        rule: AmountRule,
        payee_username: Option<&str>,
        payee_address: Option<&str>,
    ) -> Result<(), BitreqError> {
        if !rule.accepts(self.amount, price) {
            return Err(BitreqError::IncorrectAmount);
        }
        if let Some(u) = payee_username
            && self.payee_username.as_deref() != Some(u)
        {
            return Err(BitreqError::PayeeMismatch);
        }
        if let Some(a) = payee_address
            && self.payee_address.as_deref() != Some(a)
        {
            return Err(BitreqError::PayeeMismatch);
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct Wire {
    payer: String,
    payer_pubkey: String,
    #[serde(default)]
    payee_address: Option<String>,
    #[serde(default)]
    payee_username: Option<String>,
    amount: u64,
    timestamp: f64,
    #[serde(default)]
    description: String,
}

/// Verifies a bit-transfer: bounded parse, JSON, `payer_pubkey`, and the
/// signature over SHA-256 of the exact header bytes (high-S rejected).
///
/// ```
/// use pay402_core::bitreq::{BitreqError, transfer::verify};
/// assert_eq!(verify("{", "AAAA").unwrap_err(), BitreqError::MalformedTransfer);
/// ```
pub fn verify(transfer: &str, authorization: &str) -> Result<VerifiedTransfer, BitreqError> {
    if transfer.len() > MAX_TRANSFER_LEN {
        return Err(BitreqError::HeaderTooLong(super::headers::BITCOIN_TRANSFER));
    }
    if authorization.len() > MAX_AUTHORIZATION_LEN {
        return Err(BitreqError::HeaderTooLong(super::headers::AUTHORIZATION));
    }
    let wire: Wire = serde_json::from_str(transfer).map_err(|_| BitreqError::MalformedTransfer)?;
    let pk_text = wire.payer_pubkey.trim_end_matches('\n');
    if pk_text.len() > 132 {
        return Err(BitreqError::InvalidPublicKey);
    }
    let mut pk_bytes = [0u8; 99];
    let n = STANDARD
        .decode_slice(pk_text, &mut pk_bytes)
        .map_err(|_| BitreqError::InvalidPublicKey)?;
    let payer_pubkey = PublicKey::from_slice(pk_bytes.get(..n).unwrap_or_default())
        .map_err(|_| BitreqError::InvalidPublicKey)?;
    let sig = parse_compact(authorization)?;
    let id: [u8; 32] = Sha256::digest(transfer.as_bytes()).into();
    secp()
        .verify_ecdsa(&Message::from_digest(id), &sig, &payer_pubkey)
        .map_err(|_| BitreqError::InvalidSignature)?;
    Ok(VerifiedTransfer {
        id,
        payer: wire.payer,
        payer_pubkey,
        payee_address: wire.payee_address,
        payee_username: wire.payee_username,
        amount: Sat(wire.amount),
        timestamp: wire.timestamp,
        description: wire.description,
    })
}

/// Parses `Authorization`: base64 of exactly 64 bytes r‖s, low-S.
///
/// ```
/// use pay402_core::bitreq::{BitreqError, transfer::parse_compact};
/// assert_eq!(parse_compact("not base64!").unwrap_err(), BitreqError::MalformedSignature);
/// ```
pub fn parse_compact(authorization: &str) -> Result<Signature, BitreqError> {
    let a = authorization.trim_ascii();
    if a.len() != 88 {
        return Err(BitreqError::MalformedSignature);
    }
    let mut raw = [0u8; 66];
    let n = STANDARD
        .decode_slice(a, &mut raw)
        .map_err(|_| BitreqError::MalformedSignature)?;
    let raw = raw
        .get(..n)
        .filter(|r| r.len() == 64)
        .ok_or(BitreqError::MalformedSignature)?;
    let sig = Signature::from_compact(raw).map_err(|_| BitreqError::MalformedSignature)?;
    let mut low = sig;
    low.normalize_s();
    if low != sig {
        return Err(BitreqError::HighSSignature);
    }
    Ok(sig)
}

/// Appends `s` as a JSON string the way Python's `json.dumps` (ensure_ascii) does.
fn py_str(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}
