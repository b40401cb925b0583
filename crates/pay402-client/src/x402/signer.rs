//! Who signs x402 payments: the [`PaymentSigner`] port and [`LocalSigner`],
//! a secp256k1 private key held in memory (alloy's `PrivateKeySigner`).

use std::fmt;

use alloy::primitives::B256;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use pay402_core::problem::Reason;
use pay402_core::x402::evm::{EvmAddress, EvmSignature};
use zeroize::Zeroizing;

/// Why a signer could not be built or could not sign.
///
/// Messages never contain key material.
///
/// ```
/// use pay402_client::x402::{LocalSigner, SignerError};
/// use pay402_core::problem::Reason;
/// let e = LocalSigner::from_hex("0x1234").unwrap_err();
/// assert_eq!(e, SignerError::InvalidKey("a private key is 32 bytes (64 hex digits)"));
/// assert_eq!(e.reason(), "invalid_private_key");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The private key is malformed or out of range.
    #[error("invalid private key: {0}")]
    InvalidKey(&'static str),
    /// Signing failed, or produced a signature that does not recover to
    /// the signer's address.
    #[error("signing failed: {0}")]
    Signing(String),
}

impl Reason for SignerError {
    fn reason(&self) -> &'static str {
        match self {
            SignerError::InvalidKey(_) => "invalid_private_key",
            SignerError::Signing(_) => "signing_failed",
        }
    }
    fn status(&self) -> u16 {
        500
    }
}

/// Signs the EIP-712 digests of x402 payments (EIP-3009
/// `TransferWithAuthorization`) for one EVM account.
///
/// Implement it to keep the key elsewhere (a hardware wallet, a KMS, a
/// remote signer); [`LocalSigner`] holds it in memory. The client checks
/// every signature it gets back with the reference verification before
/// sending it, so a signer that signs for another address or another digest
/// is caught before anything leaves the process.
///
/// ```
/// use pay402_client::x402::{PaymentSigner, SignerError};
/// use pay402_core::x402::evm::{EvmAddress, EvmSignature};
/// use alloy::primitives::B256;
///
/// /// A signer that always refuses (for illustration).
/// struct Refuse(EvmAddress);
///
/// #[async_trait::async_trait]
/// impl PaymentSigner for Refuse {
///     fn address(&self) -> EvmAddress { self.0 }
///     async fn sign_digest(&self, _digest: &B256) -> Result<EvmSignature, SignerError> {
///         Err(SignerError::Signing("refused by policy".into()))
///     }
/// }
/// ```
#[async_trait]
pub trait PaymentSigner: Send + Sync + 'static {
    /// The account that pays (`authorization.from`).
    fn address(&self) -> EvmAddress;

    /// Signs a 32-byte EIP-712 digest, returning the 65-byte `r ‖ s ‖ v`
    /// signature (`v` = 27 or 28, low `s`).
    async fn sign_digest(&self, digest: &B256) -> Result<EvmSignature, SignerError>;
}

/// A private key held in memory, signing with alloy's `PrivateKeySigner`
/// (k256, RFC 6979 deterministic nonces, low-`s` signatures).
///
/// The key is zeroized when the signer is dropped (k256's `SigningKey`
/// zeroizes on drop, and the intermediate buffers used while parsing are
/// zeroized too); `Debug` shows only the address; the key is never logged.
///
/// ```
/// use pay402_client::x402::{LocalSigner, PaymentSigner};
/// // anvil's first dev account (a well-known test key; never use it for real money)
/// let signer = LocalSigner::from_hex("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap();
/// assert_eq!(signer.address().to_string(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
/// assert!(!format!("{signer:?}").contains("ac0974"));
/// ```
pub struct LocalSigner {
    inner: PrivateKeySigner,
    address: EvmAddress,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// A signer from a hex private key (64 hex digits, with or without
    /// `0x`, surrounding whitespace ignored).
    ///
    /// ```
    /// use pay402_client::x402::LocalSigner;
    /// assert!(LocalSigner::from_hex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d\n").is_ok());
    /// assert!(LocalSigner::from_hex("0x00").is_err());
    /// assert!(LocalSigner::from_hex(&"0".repeat(64)).is_err()); // zero is not a key
    /// ```
    pub fn from_hex(key: &str) -> Result<LocalSigner, SignerError> {
        let key = key.trim();
        let hex_digits = key
            .strip_prefix("0x")
            .or_else(|| key.strip_prefix("0X"))
            .unwrap_or(key);
        if hex_digits.len() != 64 {
            return Err(SignerError::InvalidKey(
                "a private key is 32 bytes (64 hex digits)",
            ));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        alloy::hex::decode_to_slice(hex_digits, bytes.as_mut_slice())
            .map_err(|_| SignerError::InvalidKey("not hexadecimal"))?;
        LocalSigner::from_bytes(&bytes)
    }

    /// A signer from the 32 raw bytes of a private key.
    ///
    /// ```
    /// use pay402_client::x402::LocalSigner;
    /// let mut key = [0u8; 32];
    /// key[31] = 1;
    /// let signer = LocalSigner::from_bytes(&key).unwrap();
    /// assert_eq!(signer.address().to_string(), "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
    /// ```
    pub fn from_bytes(key: &[u8; 32]) -> Result<LocalSigner, SignerError> {
        let inner = PrivateKeySigner::from_slice(key)
            .map_err(|_| SignerError::InvalidKey("not a valid secp256k1 secret key"))?;
        let address = EvmAddress(inner.address());
        Ok(LocalSigner { inner, address })
    }

    /// A signer with a fresh random key (for tests and demos).
    ///
    /// ```
    /// use pay402_client::x402::LocalSigner;
    /// assert_ne!(LocalSigner::random().address(), LocalSigner::random().address());
    /// ```
    pub fn random() -> LocalSigner {
        let inner = PrivateKeySigner::random();
        let address = EvmAddress(inner.address());
        LocalSigner { inner, address }
    }

    /// The account's address.
    ///
    /// ```
    /// use pay402_client::x402::LocalSigner;
    /// let s = LocalSigner::random();
    /// assert_eq!(s.address().to_string().len(), 42);
    /// ```
    pub fn address(&self) -> EvmAddress {
        self.address
    }

    /// Signs `digest` synchronously; see [`PaymentSigner::sign_digest`].
    ///
    /// ```
    /// use pay402_client::x402::LocalSigner;
    /// use pay402_core::x402::evm::recover_signer;
    /// let s = LocalSigner::random();
    /// let digest = alloy::primitives::B256::repeat_byte(7);
    /// let sig = s.sign_digest_sync(&digest).unwrap();
    /// assert_eq!(recover_signer(&digest, sig.as_bytes()).unwrap(), s.address());
    /// ```
    pub fn sign_digest_sync(&self, digest: &B256) -> Result<EvmSignature, SignerError> {
        let signature = self
            .inner
            .sign_hash_sync(digest)
            .map_err(|e| SignerError::Signing(e.to_string()))?;
        Ok(EvmSignature::from_bytes(signature.as_bytes().to_vec()))
    }
}

#[async_trait]
impl PaymentSigner for LocalSigner {
    fn address(&self) -> EvmAddress {
        self.address
    }

    async fn sign_digest(&self, digest: &B256) -> Result<EvmSignature, SignerError> {
        self.sign_digest_sync(digest)
    }
}
