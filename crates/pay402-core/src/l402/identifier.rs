//! The Aperture macaroon identifier, version 0.
//!
//! `uint16 BE version (0) ‖ payment_hash[32] ‖ token_id[32]`, 66 bytes. lsat-js
//! writes the same bytes as a 132-character ASCII hex string; both are read.

use std::fmt;

use crate::lightning::PaymentHash;

/// Length of an encoded version-0 identifier.
pub const IDENTIFIER_LEN: usize = 66;

/// A random 32-byte token id, unique per minted token.
///
/// ```
/// use pay402_core::l402::TokenId;
/// let id = TokenId([0xab; 32]);
/// assert!(id.to_string().starts_with("abab"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub [u8; 32]);

impl TokenId {
    /// Lowercase hex.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::TokenId([0; 32]).to_hex().len(), 64);
    /// ```
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    ///
    /// ```
    /// use pay402_core::l402::TokenId;
    /// assert_eq!(TokenId::from_hex(&"01".repeat(32)), Some(TokenId([1; 32])));
    /// assert_eq!(TokenId::from_hex("zz"), None);
    /// ```
    pub fn from_hex(s: &str) -> Option<TokenId> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return None;
        }
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(TokenId(out))
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.to_hex())
    }
}

/// Why an identifier could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// Neither 66 raw bytes nor 132 hex characters.
    #[error("identifier has length {0}, expected 66 bytes")]
    BadLength(usize),
    /// A version other than 0.
    #[error("unknown identifier version {0}")]
    UnknownVersion(u16),
    /// 132 bytes that are not hex.
    #[error("identifier is not valid hex")]
    BadHex,
}

/// A decoded version-0 identifier.
///
/// ```
/// use pay402_core::l402::{Identifier, TokenId};
/// use pay402_core::lightning::PaymentHash;
/// let id = Identifier::new(PaymentHash([1; 32]), TokenId([2; 32]));
/// let bytes = id.encode();
/// assert_eq!(bytes.len(), 66);
/// assert_eq!(Identifier::decode(&bytes).unwrap(), id);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// The invoice's payment hash.
    pub payment_hash: PaymentHash,
    /// The token id (also the key of the token's root key).
    pub token_id: TokenId,
}

impl Identifier {
    /// A version-0 identifier.
    ///
    /// ```
    /// let id = pay402_core::l402::Identifier::new(pay402_core::lightning::PaymentHash([0; 32]), pay402_core::l402::TokenId([0; 32]));
    /// assert_eq!(id.encode()[..2], [0, 0]);
    /// ```
    pub const fn new(payment_hash: PaymentHash, token_id: TokenId) -> Identifier {
        Identifier {
            payment_hash,
            token_id,
        }
    }

    /// Encodes to the 66-byte form.
    ///
    /// ```
    /// let id = pay402_core::l402::Identifier::new(pay402_core::lightning::PaymentHash([9; 32]), pay402_core::l402::TokenId([8; 32]));
    /// assert_eq!(id.encode()[2], 9);
    /// ```
    pub fn encode(&self) -> [u8; IDENTIFIER_LEN] {
        let mut out = [0u8; IDENTIFIER_LEN];
        out[2..34].copy_from_slice(&self.payment_hash.0);
        out[34..66].copy_from_slice(&self.token_id.0);
        out
    }

    /// Decodes 66 raw bytes, or lsat-js's 132 ASCII hex characters.
    ///
    /// ```
    /// use pay402_core::l402::{Identifier, identifier::IdentifierError};
    /// assert_eq!(Identifier::decode(&[0; 10]), Err(IdentifierError::BadLength(10)));
    /// let mut raw = [0u8; 66];
    /// raw[1] = 1;
    /// assert_eq!(Identifier::decode(&raw), Err(IdentifierError::UnknownVersion(1)));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Identifier, IdentifierError> {
        let mut hexbuf = [0u8; IDENTIFIER_LEN];
        let raw: &[u8] = match bytes.len() {
            IDENTIFIER_LEN => bytes,
            132 => {
                hex::decode_to_slice(bytes, &mut hexbuf).map_err(|_| IdentifierError::BadHex)?;
                &hexbuf
            }
            n => return Err(IdentifierError::BadLength(n)),
        };
        let version = u16::from_be_bytes([raw[0], raw[1]]);
        if version != 0 {
            return Err(IdentifierError::UnknownVersion(version));
        }
        let mut ph = [0u8; 32];
        ph.copy_from_slice(&raw[2..34]);
        let mut tid = [0u8; 32];
        tid.copy_from_slice(&raw[34..66]);
        Ok(Identifier {
            payment_hash: PaymentHash(ph),
            token_id: TokenId(tid),
        })
    }
}
