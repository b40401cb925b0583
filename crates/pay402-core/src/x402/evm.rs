//! EVM building blocks: addresses, signatures, EIP-712 typed data for
//! EIP-3009 `TransferWithAuthorization` and EIP-2612 `Permit`, and signer
//! recovery with libsecp256k1.
//!
//! ```
//! use pay402_core::x402::evm::{Eip712Domain, TransferAuthorization, EvmAddress, Bytes32};
//! use pay402_core::x402::{TokenAmount, EvmTimestamp};
//! let domain = Eip712Domain::new("USDC", "2", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap());
//! assert_eq!(
//!     domain.separator().to_string(),
//!     "0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818"
//! );
//! ```

use std::fmt;
use std::str::FromStr;

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::SolStruct;
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::amount::{EvmTimestamp, TokenAmount};

#[allow(missing_docs)]
mod sol_types {
    alloy_sol_types::sol! {
        struct TransferWithAuthorization {
            address from;
            address to;
            uint256 value;
            uint256 validAfter;
            uint256 validBefore;
            bytes32 nonce;
        }

        struct Permit {
            address owner;
            address spender;
            uint256 value;
            uint256 nonce;
            uint256 deadline;
        }
    }
}

/// `keccak256("TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)")`.
///
/// ```
/// use pay402_core::x402::evm::TRANSFER_WITH_AUTHORIZATION_TYPEHASH;
/// assert_eq!(
///     TRANSFER_WITH_AUTHORIZATION_TYPEHASH.to_string(),
///     "0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
/// );
/// ```
pub const TRANSFER_WITH_AUTHORIZATION_TYPEHASH: B256 =
    alloy_primitives::b256!("7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267");

/// `keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")`.
///
/// ```
/// use pay402_core::x402::evm::PERMIT_TYPEHASH;
/// assert_eq!(
///     PERMIT_TYPEHASH.to_string(),
///     "0x6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9"
/// );
/// ```
pub const PERMIT_TYPEHASH: B256 =
    alloy_primitives::b256!("6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9");

/// Why an EVM hex value was rejected.
///
/// ```
/// use pay402_core::x402::evm::{EvmAddress, HexError};
/// assert_eq!("0x12".parse::<EvmAddress>(), Err(HexError::Length));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The `0x` prefix is missing.
    #[error("missing 0x prefix")]
    Prefix,
    /// The value has the wrong length.
    #[error("wrong length")]
    Length,
    /// A character is not hexadecimal.
    #[error("invalid hex")]
    Invalid,
}

fn decode_0x_hex<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or(HexError::Prefix)?;
    if h.len() != N * 2 {
        return Err(HexError::Length);
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(h, &mut out).map_err(|_| HexError::Invalid)?;
    Ok(out)
}

macro_rules! str_visitor {
    ($ty:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

/// A 20-byte EVM address. Parsed from `0x` + 40 hex digits in any case (the
/// EIP-55 checksum is not enforced, as in the reference SDKs); written in
/// EIP-55 checksum case. Compared by bytes.
///
/// ```
/// use pay402_core::x402::evm::EvmAddress;
/// let a: EvmAddress = "0x857b06519e91e3a54538791bdbb0e22373e36b66".parse().unwrap();
/// assert_eq!(a.to_string(), "0x857b06519E91e3A54538791bDbb0E22373e36b66");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvmAddress(pub Address);

impl FromStr for EvmAddress {
    type Err = HexError;
    fn from_str(s: &str) -> Result<EvmAddress, HexError> {
        decode_0x_hex::<20>(s).map(|b| EvmAddress(Address::from(b)))
    }
}

impl fmt::Display for EvmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // alloy's Display is the EIP-55 checksummed form.
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for EvmAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
str_visitor!(EvmAddress, "a 0x-prefixed 20-byte hex address");

/// A 32-byte value written as `0x` + 64 lowercase hex digits (the EIP-3009 `nonce`).
///
/// ```
/// use pay402_core::x402::evm::Bytes32;
/// let n: Bytes32 = "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480".parse().unwrap();
/// assert_eq!(n.0[0], 0xf3);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes32(pub [u8; 32]);

impl FromStr for Bytes32 {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Bytes32, HexError> {
        decode_0x_hex::<32>(s).map(Bytes32)
    }
}

impl fmt::Display for Bytes32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_prefixed(self.0))
    }
}

impl Serialize for Bytes32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
str_visitor!(Bytes32, "a 0x-prefixed 32-byte hex value");

/// Longest signature accepted in a payload (smart-wallet signatures can be long).
///
/// ```
/// use pay402_core::x402::evm::{EvmSignature, MAX_SIGNATURE_BYTES};
/// let too_long = format!("0x{}", "00".repeat(MAX_SIGNATURE_BYTES + 1));
/// assert!(too_long.parse::<EvmSignature>().is_err());
/// ```
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// A signature as hex bytes: 65 bytes `r ‖ s ‖ v` for an EOA; longer ones are
/// ERC-1271 / ERC-6492 smart-wallet signatures.
///
/// ```
/// use pay402_core::x402::evm::EvmSignature;
/// let s: EvmSignature = "0x00ff".parse().unwrap();
/// assert_eq!(s.as_bytes(), &[0, 255]);
/// assert_eq!(s.to_string(), "0x00ff");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EvmSignature(Vec<u8>);

impl EvmSignature {
    /// Wraps raw bytes.
    ///
    /// ```
    /// let s = pay402_core::x402::evm::EvmSignature::from_bytes(vec![1; 65]);
    /// assert!(s.is_eoa());
    /// ```
    pub fn from_bytes(bytes: Vec<u8>) -> EvmSignature {
        EvmSignature(bytes)
    }

    /// The raw bytes.
    ///
    /// ```
    /// let s = pay402_core::x402::evm::EvmSignature::from_bytes(vec![7]);
    /// assert_eq!(s.as_bytes(), &[7]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for a 65-byte `r ‖ s ‖ v` signature (an externally owned account).
    ///
    /// ```
    /// let s = pay402_core::x402::evm::EvmSignature::from_bytes(vec![1; 66]);
    /// assert!(!s.is_eoa());
    /// ```
    pub fn is_eoa(&self) -> bool {
        self.0.len() == 65
    }
}

impl FromStr for EvmSignature {
    type Err = HexError;
    fn from_str(s: &str) -> Result<EvmSignature, HexError> {
        let h = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or(HexError::Prefix)?;
        if h.len() % 2 != 0 || h.len() > MAX_SIGNATURE_BYTES * 2 {
            return Err(HexError::Length);
        }
        hex::decode(h)
            .map(EvmSignature)
            .map_err(|_| HexError::Invalid)
    }
}

impl fmt::Display for EvmSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_prefixed(&self.0))
    }
}

impl Serialize for EvmSignature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
str_visitor!(EvmSignature, "a 0x-prefixed hex signature");

/// An EIP-712 domain `{name, version, chainId, verifyingContract}`, the shape
/// ERC-20 tokens (USDC's EIP-3009, EIP-2612) use.
///
/// ```
/// use pay402_core::x402::evm::Eip712Domain;
/// let d = Eip712Domain::new("USD Coin", "2", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
/// assert_eq!(d.chain_id, 8453);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eip712Domain {
    /// The token's EIP-712 `name` (x402: `extra.name`).
    pub name: String,
    /// The token's EIP-712 `version` (x402: `extra.version`).
    pub version: String,
    /// The chain id (x402: from the CAIP-2 network).
    pub chain_id: u64,
    /// The token contract (x402: `asset`).
    pub verifying_contract: EvmAddress,
}

impl Eip712Domain {
    /// A domain.
    ///
    /// ```
    /// use pay402_core::x402::evm::{Eip712Domain, EvmAddress};
    /// let d = Eip712Domain::new("USDC", "2", 84532, EvmAddress::default());
    /// assert_eq!(d.name, "USDC");
    /// ```
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        chain_id: u64,
        verifying_contract: EvmAddress,
    ) -> Eip712Domain {
        Eip712Domain {
            name: name.into(),
            version: version.into(),
            chain_id,
            verifying_contract,
        }
    }

    fn to_alloy(&self) -> alloy_sol_types::Eip712Domain {
        alloy_sol_types::Eip712Domain::new(
            Some(self.name.clone().into()),
            Some(self.version.clone().into()),
            Some(U256::from(self.chain_id)),
            Some(self.verifying_contract.0),
            None,
        )
    }

    /// The domain separator, `hashStruct(EIP712Domain)`.
    ///
    /// ```
    /// use pay402_core::x402::evm::Eip712Domain;
    /// let d = Eip712Domain::new("USDC", "2", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap());
    /// assert!(d.separator().to_string().starts_with("0x71f17a3b"));
    /// ```
    pub fn separator(&self) -> B256 {
        self.to_alloy().separator()
    }
}

/// The EIP-712 digest `keccak256(0x19 0x01 ‖ domainSeparator ‖ structHash)`.
///
/// ```
/// use pay402_core::x402::evm::eip712_digest;
/// use alloy_primitives::B256;
/// let d = eip712_digest(B256::ZERO, B256::ZERO);
/// assert_eq!(d.len(), 32);
/// ```
pub fn eip712_digest(domain_separator: B256, struct_hash: B256) -> B256 {
    let mut buf = [0u8; 66];
    buf[0] = 0x19;
    buf[1] = 0x01;
    buf[2..34].copy_from_slice(domain_separator.as_slice());
    buf[34..].copy_from_slice(struct_hash.as_slice());
    keccak256(buf)
}

/// An EIP-3009 `TransferWithAuthorization` message: the `authorization`
/// object of an x402 `exact` EVM payload.
///
/// ```
/// use pay402_core::x402::evm::TransferAuthorization;
/// let json = r#"{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}"#;
/// let auth: TransferAuthorization = serde_json::from_str(json).unwrap();
/// assert_eq!(
///     auth.struct_hash().to_string(),
///     "0x49ad644555c7bdf3ea4fc022a4940ae5589b230b1dde0065c5504fa19bbe39a4"
/// );
/// assert_eq!(serde_json::to_string(&auth).unwrap(), json);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferAuthorization {
    /// The payer.
    pub from: EvmAddress,
    /// The recipient (must equal `payTo`).
    pub to: EvmAddress,
    /// The amount in token base units.
    pub value: TokenAmount,
    /// Valid strictly after this time.
    pub valid_after: EvmTimestamp,
    /// Valid strictly before this time.
    pub valid_before: EvmTimestamp,
    /// A random 32-byte nonce (single use per `from`).
    pub nonce: Bytes32,
}

impl TransferAuthorization {
    fn to_sol(&self) -> sol_types::TransferWithAuthorization {
        sol_types::TransferWithAuthorization {
            from: self.from.0,
            to: self.to.0,
            value: self.value.0,
            validAfter: self.valid_after.0,
            validBefore: self.valid_before.0,
            nonce: B256::from(self.nonce.0),
        }
    }

    /// `hashStruct(message)` of the `TransferWithAuthorization`.
    ///
    /// See the example on [`TransferAuthorization`].
    ///
    /// ```
    /// # use pay402_core::x402::evm::*;
    /// # use pay402_core::x402::{TokenAmount, EvmTimestamp};
    /// let a = TransferAuthorization {
    ///     from: EvmAddress::default(), to: EvmAddress::default(), value: TokenAmount::from_u64(1),
    ///     valid_after: EvmTimestamp::from_u64(0), valid_before: EvmTimestamp::from_u64(1), nonce: Bytes32::default(),
    /// };
    /// assert_ne!(a.struct_hash(), alloy_primitives::B256::ZERO);
    /// ```
    pub fn struct_hash(&self) -> B256 {
        self.to_sol().eip712_hash_struct()
    }

    /// The EIP-712 digest a wallet signs for this message under `domain`.
    ///
    /// ```
    /// # use pay402_core::x402::evm::*;
    /// # use pay402_core::x402::{TokenAmount, EvmTimestamp};
    /// let a = TransferAuthorization {
    ///     from: EvmAddress::default(), to: EvmAddress::default(), value: TokenAmount::from_u64(1),
    ///     valid_after: EvmTimestamp::from_u64(0), valid_before: EvmTimestamp::from_u64(1), nonce: Bytes32::default(),
    /// };
    /// let d = Eip712Domain::new("USDC", "2", 84532, EvmAddress::default());
    /// assert_eq!(a.signing_hash(&d), eip712_digest(d.separator(), a.struct_hash()));
    /// ```
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        self.to_sol().eip712_signing_hash(&domain.to_alloy())
    }
}

/// An EIP-2612 `Permit(owner, spender, value, nonce, deadline)` message, as
/// signed in the x402_mock flow (and the `eip2612GasSponsoring` extension).
///
/// ```
/// use pay402_core::x402::evm::{Eip2612Permit, EvmAddress};
/// use pay402_core::x402::{TokenAmount, EvmTimestamp};
/// use alloy_primitives::U256;
/// let p = Eip2612Permit {
///     owner: EvmAddress::default(),
///     spender: EvmAddress::default(),
///     value: TokenAmount::from_u64(1_000_000),
///     nonce: U256::ZERO,
///     deadline: EvmTimestamp::from_u64(1_800_000_600),
/// };
/// assert_ne!(p.struct_hash(), alloy_primitives::B256::ZERO);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eip2612Permit {
    /// The token holder who signs.
    pub owner: EvmAddress,
    /// Who may spend (x402_mock: the server wallet).
    pub spender: EvmAddress,
    /// The allowance in token base units.
    pub value: TokenAmount,
    /// The token's `nonces(owner)` at signing time.
    pub nonce: U256,
    /// Last valid second.
    pub deadline: EvmTimestamp,
}

impl Eip2612Permit {
    fn to_sol(&self) -> sol_types::Permit {
        sol_types::Permit {
            owner: self.owner.0,
            spender: self.spender.0,
            value: self.value.0,
            nonce: self.nonce,
            deadline: self.deadline.0,
        }
    }

    /// `hashStruct(Permit)`.
    ///
    /// See the example on [`Eip2612Permit`].
    ///
    /// ```
    /// # use pay402_core::x402::evm::*;
    /// # use pay402_core::x402::{TokenAmount, EvmTimestamp};
    /// let p = Eip2612Permit { owner: EvmAddress::default(), spender: EvmAddress::default(),
    ///     value: TokenAmount::from_u64(1), nonce: Default::default(), deadline: EvmTimestamp::from_u64(1) };
    /// assert_eq!(p.struct_hash(), p.struct_hash());
    /// ```
    pub fn struct_hash(&self) -> B256 {
        self.to_sol().eip712_hash_struct()
    }

    /// The EIP-712 digest the owner signs under `domain` (`{name, version, chainId, token}`).
    ///
    /// ```
    /// # use pay402_core::x402::evm::*;
    /// # use pay402_core::x402::{TokenAmount, EvmTimestamp};
    /// let p = Eip2612Permit { owner: EvmAddress::default(), spender: EvmAddress::default(),
    ///     value: TokenAmount::from_u64(1), nonce: Default::default(), deadline: EvmTimestamp::from_u64(1) };
    /// let d = Eip712Domain::new("USDC", "2", 84532, EvmAddress::default());
    /// assert_eq!(p.signing_hash(&d), eip712_digest(d.separator(), p.struct_hash()));
    /// ```
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        self.to_sol().eip712_signing_hash(&domain.to_alloy())
    }

    /// Recovers the signer of this permit under `domain` from a 65-byte signature.
    ///
    /// The caller compares it with [`Eip2612Permit::owner`] (x402_mock step 4).
    ///
    /// ```
    /// # use pay402_core::x402::evm::*;
    /// # use pay402_core::x402::{TokenAmount, EvmTimestamp};
    /// let p = Eip2612Permit { owner: EvmAddress::default(), spender: EvmAddress::default(),
    ///     value: TokenAmount::from_u64(1), nonce: Default::default(), deadline: EvmTimestamp::from_u64(1) };
    /// let d = Eip712Domain::new("USDC", "2", 84532, EvmAddress::default());
    /// assert_eq!(p.recover_signer(&d, &[0; 65]), Err(SignatureError::Malformed));
    /// ```
    pub fn recover_signer(
        &self,
        domain: &Eip712Domain,
        signature: &[u8],
    ) -> Result<EvmAddress, SignatureError> {
        recover_signer(&self.signing_hash(domain), signature)
    }
}

/// Why signer recovery failed.
///
/// ```
/// use pay402_core::x402::evm::{recover_signer, SignatureError};
/// assert_eq!(recover_signer(&Default::default(), &[0; 64]), Err(SignatureError::Length));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 65 bytes.
    #[error("signature is not 65 bytes")]
    Length,
    /// `v` is not 0, 1, 27 or 28.
    #[error("invalid recovery id")]
    RecoveryId,
    /// `s` is in the upper half of the curve order (malleable).
    #[error("high-s signature")]
    HighS,
    /// `r` or `s` is zero or out of range, or no key recovers.
    #[error("malformed signature")]
    Malformed,
}

/// `secp256k1n / 2`, the largest `s` accepted (EIP-2).
const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

/// Recovers the address that signed `digest` with a 65-byte `r ‖ s ‖ v`
/// signature (libsecp256k1). `v` may be 27/28 or 0/1; high `s` is rejected.
///
/// ```
/// use pay402_core::x402::evm::recover_signer;
/// let digest = alloy_primitives::b256!("f256992871671abcb27ff92885a7afa46218724e5fc0bac35d050115aa1d22e6");
/// let sig = hex::decode("2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c").unwrap();
/// let who = recover_signer(&digest, &sig).unwrap();
/// assert_eq!(who.to_string(), "0x857b06519E91e3A54538791bDbb0E22373e36b66");
/// ```
pub fn recover_signer(digest: &B256, signature: &[u8]) -> Result<EvmAddress, SignatureError> {
    let sig: &[u8; 65] = signature.try_into().map_err(|_| SignatureError::Length)?;
    let v = match sig[64] {
        0 | 27 => 0,
        1 | 28 => 1,
        _ => return Err(SignatureError::RecoveryId),
    };
    if sig[32..64] > HALF_ORDER[..] {
        return Err(SignatureError::HighS);
    }
    let id = RecoveryId::from_i32(v).map_err(|_| SignatureError::RecoveryId)?;
    let rsig = RecoverableSignature::from_compact(&sig[..64], id)
        .map_err(|_| SignatureError::Malformed)?;
    let msg = secp256k1::Message::from_digest(digest.0);
    let pk = secp256k1::SECP256K1
        .recover_ecdsa(&msg, &rsig)
        .map_err(|_| SignatureError::Malformed)?;
    let uncompressed = pk.serialize_uncompressed();
    let hash = keccak256(&uncompressed[1..]);
    Ok(EvmAddress(Address::from_slice(&hash[12..])))
}
