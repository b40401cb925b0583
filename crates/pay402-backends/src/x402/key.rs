//! Facilitator signing keys: zeroized on drop, never printed.

use std::fmt;
use std::str::FromStr;

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use zeroize::{Zeroize, Zeroizing};

/// A secp256k1 private key of a facilitator account (the account that sends
/// `transferWithAuthorization` and pays its gas).
///
/// The bytes are wiped when the value is dropped; `Debug` prints only the
/// account address.
///
/// ```
/// use pay402_backends::x402::FacilitatorKey;
/// let key: FacilitatorKey = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d".parse().unwrap();
/// assert_eq!(key.address().to_string(), "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
/// let shown = format!("{key:?}");
/// assert!(!shown.contains("59c6995e"), "{shown}");
/// assert!("0x00".parse::<FacilitatorKey>().is_err());
/// ```
#[derive(Clone)]
pub struct FacilitatorKey {
    // k256's signing key inside wipes itself on drop.
    signer: PrivateKeySigner,
}

/// Why a private key was refused.
///
/// ```
/// use pay402_backends::x402::{FacilitatorKey, InvalidKey};
/// assert_eq!(FacilitatorKey::from_bytes([0u8; 32]).unwrap_err(), InvalidKey);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a valid secp256k1 private key (expected 32 bytes of hex, non-zero and below the curve order)"
)]
pub struct InvalidKey;

impl FacilitatorKey {
    /// A key from its 32 bytes.
    ///
    /// ```
    /// use pay402_backends::x402::FacilitatorKey;
    /// let key = FacilitatorKey::from_bytes([7u8; 32]).unwrap();
    /// assert_ne!(key.address(), alloy::primitives::Address::ZERO);
    /// ```
    pub fn from_bytes(bytes: [u8; 32]) -> Result<FacilitatorKey, InvalidKey> {
        let mut b = B256::from(bytes);
        let signer = PrivateKeySigner::from_bytes(&b).map_err(|_| InvalidKey);
        b.0.zeroize();
        let mut bytes = bytes;
        bytes.zeroize();
        Ok(FacilitatorKey { signer: signer? })
    }

    /// The account address of this key.
    ///
    /// ```
    /// use pay402_backends::x402::FacilitatorKey;
    /// let key = FacilitatorKey::from_bytes([7u8; 32]).unwrap();
    /// assert_eq!(key.address(), key.signer().address());
    /// ```
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// An alloy signer for this key (the signing key inside it is zeroized
    /// on drop by `k256`).
    ///
    /// ```
    /// use pay402_backends::x402::FacilitatorKey;
    /// let key = FacilitatorKey::from_bytes([7u8; 32]).unwrap();
    /// let _signer = key.signer();
    /// ```
    pub fn signer(&self) -> PrivateKeySigner {
        self.signer.clone()
    }
}

impl FromStr for FacilitatorKey {
    type Err = InvalidKey;
    /// Parses 64 hex digits, with or without `0x`.
    fn from_str(s: &str) -> Result<FacilitatorKey, InvalidKey> {
        let s = s.trim();
        let h = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let mut bytes = Zeroizing::new([0u8; 32]);
        if h.len() != 64 {
            return Err(InvalidKey);
        }
        hex::decode_to_slice(h, bytes.as_mut()).map_err(|_| InvalidKey)?;
        let out = FacilitatorKey::from_bytes(*bytes);
        bytes.zeroize();
        out
    }
}

impl TryFrom<B256> for FacilitatorKey {
    type Error = InvalidKey;
    /// A key from a `B256` (the type of `pay402_testkit::anvil::DevAccount::private_key`).
    fn try_from(b: B256) -> Result<FacilitatorKey, InvalidKey> {
        FacilitatorKey::from_bytes(b.0)
    }
}

impl TryFrom<[u8; 32]> for FacilitatorKey {
    type Error = InvalidKey;
    fn try_from(b: [u8; 32]) -> Result<FacilitatorKey, InvalidKey> {
        FacilitatorKey::from_bytes(b)
    }
}

impl TryFrom<&str> for FacilitatorKey {
    type Error = InvalidKey;
    fn try_from(s: &str) -> Result<FacilitatorKey, InvalidKey> {
        s.parse()
    }
}

impl TryFrom<String> for FacilitatorKey {
    type Error = InvalidKey;
    fn try_from(s: String) -> Result<FacilitatorKey, InvalidKey> {
        let s = Zeroizing::new(s);
        s.parse()
    }
}

impl fmt::Debug for FacilitatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FacilitatorKey")
            .field("address", &self.address())
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let k: FacilitatorKey = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
            .parse()
            .unwrap();
        assert_eq!(
            k.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        assert!(!format!("{k:?}").contains("ac0974"));
        assert!("0xzz".parse::<FacilitatorKey>().is_err());
        assert!(
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
                .parse::<FacilitatorKey>()
                .is_err()
        );
        let from_string = FacilitatorKey::try_from(
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80".to_owned(),
        )
        .unwrap();
        assert_eq!(from_string.address(), k.address());
    }
}
