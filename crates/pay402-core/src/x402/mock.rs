//! The x402_mock dialect (the seed project's flow, protocol reference §12):
//! a JSON 402 body naming an `access_token_endpoint`, an EIP-2612 permit
//! POSTed there, and a Bearer access token. It is **not** wire-compatible
//! with x402 proper and is kept apart from it.
//!
//! Flaws of the seed fixed here (§12.4, §12.5, §13):
//! - **Unbound token.** The seed's token is `{iat, exp, nonce}` only, so one
//!   token opens every gated route. [`AccessTokenClaims`] binds the payer,
//!   the resource, the amount, the asset and chain, and the expiry, all under
//!   the HMAC; [`verify_access_token`] checks the resource.
//! - **Leeway on expiry.** The seed accepts tokens past `exp` by a leeway;
//!   here a token is valid only while `now < exp`.
//! - **No domain separation.** The MAC here covers a version prefix with the
//!   payload, so the format can change without old tokens verifying as new.
//! - **Weak keys.** Keys shorter than 32 bytes are refused.
//! - **Matching by token address only.** [`select_component`] and
//!   [`MockPermit::check`] also require the chain id to match.
//! - **Float amounts.** The wire `amount` is a float in human units; it is
//!   converted to base units exactly (shortest decimal form, no rounding)
//!   by [`EvmPaymentComponent::required_base_units`], never compared as a float.
//!
//! Not fixed by core, because they are about I/O: the seed's `settle()` only
//! sends `permit()` and never `transferFrom()`, and a failed settlement does
//! not revoke the token. A server built on this module must do both
//! transactions and revoke (deny-list) the token's [`AccessTokenClaims::jti`]
//! when settlement fails.
//!
//! ```
//! use pay402_core::x402::mock::*;
//! use pay402_core::x402::{TokenAmount, evm::Bytes32};
//! use pay402_core::time::UnixTime;
//! let key = [7u8; 32];
//! let claims = AccessTokenClaims {
//!     payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66".parse().unwrap(),
//!     resource: "GET /premium".into(),
//!     amount: TokenAmount::from_u64(10_000),
//!     asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap(),
//!     chain_id: 84532,
//!     iat: 1_000,
//!     exp: 4_600,
//!     jti: Bytes32([1; 32]),
//! };
//! let token = issue_access_token(&claims, &key).unwrap();
//! assert_eq!(verify_access_token(&token, &key, "GET /premium", UnixTime(2_000)).unwrap(), claims);
//! assert_eq!(verify_access_token(&token, &key, "GET /other", UnixTime(2_000)), Err(AccessTokenError::WrongResource));
//! assert_eq!(verify_access_token(&token, &key, "GET /premium", UnixTime(4_600)), Err(AccessTokenError::Expired));
//! ```

use alloy_primitives::U256;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::problem::Reason;
use crate::time::UnixTime;

use super::amount::{EvmTimestamp, TokenAmount};
use super::evm::{Bytes32, Eip712Domain, Eip2612Permit, EvmAddress};
use super::permit::{PermitError, check_permit};

/// The seed's `protocol_version` and permit-body `version`.
///
/// ```
/// assert_eq!(pay402_core::x402::mock::MOCK_PROTOCOL_VERSION, "Version 0.1");
/// ```
pub const MOCK_PROTOCOL_VERSION: &str = "Version 0.1";

/// The 402 body of the x402_mock flow.
///
/// ```
/// use pay402_core::x402::mock::MockPaymentRequired;
/// let json = r#"{"reason":"payment required","access_token_endpoint":"/token","payment_scheme":{"payment_components":[{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}}],"protocol_version":"Version 0.1"}}"#;
/// let body: MockPaymentRequired = serde_json::from_str(json).unwrap();
/// assert_eq!(body.access_token_endpoint, "/token");
/// assert_eq!(serde_json::to_string(&body).unwrap(), json);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MockPaymentRequired {
    /// Why payment is required.
    pub reason: String,
    /// Where to POST the permit (e.g. `/token`).
    pub access_token_endpoint: String,
    /// The ways to pay.
    pub payment_scheme: MockPaymentScheme,
    /// Free-form instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_instruction: Option<Value>,
}

/// `payment_scheme`: the components and the protocol version.
///
/// ```
/// use pay402_core::x402::mock::MockPaymentScheme;
/// let s: MockPaymentScheme = serde_json::from_str(r#"{"payment_components":[],"protocol_version":"Version 0.1"}"#).unwrap();
/// assert!(s.payment_components.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MockPaymentScheme {
    /// The ways to pay (there is no `payment_methods` field).
    pub payment_components: Vec<EvmPaymentComponent>,
    /// `"Version 0.1"`.
    pub protocol_version: String,
}

/// `metadata` of an EVM payment component.
///
/// ```
/// use pay402_core::x402::mock::EvmComponentMetadata;
/// let m: EvmComponentMetadata = serde_json::from_str(r#"{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}"#).unwrap();
/// assert_eq!(m.decimals, 6);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvmComponentMetadata {
    /// Token symbol.
    pub symbol: String,
    /// The token's EIP-712 domain `name`.
    pub name: String,
    /// Token decimals.
    pub decimals: u8,
    /// A network label.
    pub network: String,
    /// The token's EIP-712 domain `version`.
    pub version: String,
    /// The server wallet: permit spender and recipient.
    pub wallet_address: EvmAddress,
}

/// One EVM way to pay in `payment_components`.
///
/// ```
/// use pay402_core::x402::mock::EvmPaymentComponent;
/// let c: EvmPaymentComponent = serde_json::from_str(r#"{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}}"#).unwrap();
/// assert_eq!(c.required_base_units().unwrap().to_string(), "10000");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvmPaymentComponent {
    /// `"evm"`.
    pub payment_type: String,
    /// The price in human units, a JSON float on the wire.
    pub amount: f64,
    /// Currency label.
    pub currency: String,
    /// The token contract.
    pub token: EvmAddress,
    /// The EVM chain id.
    pub chain_id: u64,
    /// Token and wallet details.
    pub metadata: EvmComponentMetadata,
    /// Creation time, as the seed writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Value>,
}

impl EvmPaymentComponent {
    /// The price in base units: the float's shortest decimal form scaled by
    /// `10^decimals`, exactly. More fractional digits than `decimals`, a
    /// negative or non-finite amount is [`MockError::InvalidAmount`].
    ///
    /// ```
    /// # use pay402_core::x402::mock::*;
    /// # let mut c: EvmPaymentComponent = serde_json::from_str(r#"{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}}"#).unwrap();
    /// c.amount = 0.1 + 0.2; // 0.30000000000000004: not representable in 6 decimals
    /// assert_eq!(c.required_base_units(), Err(MockError::InvalidAmount));
    /// ```
    pub fn required_base_units(&self) -> Result<TokenAmount, MockError> {
        if !self.amount.is_finite() || self.amount < 0.0 {
            return Err(MockError::InvalidAmount);
        }
        TokenAmount::from_human(&self.amount.to_string(), self.metadata.decimals)
            .map_err(|_| MockError::InvalidAmount)
    }

    /// The permit's EIP-712 domain `{metadata.name, metadata.version, chain_id, token}`.
    ///
    /// ```
    /// # use pay402_core::x402::mock::*;
    /// # let c: EvmPaymentComponent = serde_json::from_str(r#"{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}}"#).unwrap();
    /// assert_eq!(c.domain().chain_id, 84532);
    /// ```
    pub fn domain(&self) -> Eip712Domain {
        Eip712Domain::new(
            self.metadata.name.as_str(),
            self.metadata.version.as_str(),
            self.chain_id,
            self.token,
        )
    }
}

/// The client's matching rule (§12.7), with the chain added: the first
/// `evm` component on `chain_id` for `token` whose price is at most
/// `max_base_units` (the client's per-payment cap). Components whose amount
/// cannot be converted exactly are skipped.
///
/// ```
/// # use pay402_core::x402::mock::*;
/// # use pay402_core::x402::TokenAmount;
/// # let c: EvmPaymentComponent = serde_json::from_str(r#"{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}}"#).unwrap();
/// let comps = [c.clone()];
/// assert!(select_component(&comps, 84532, &c.token, TokenAmount::from_u64(10_000)).is_some());
/// assert!(select_component(&comps, 8453, &c.token, TokenAmount::from_u64(10_000)).is_none());
/// assert!(select_component(&comps, 84532, &c.token, TokenAmount::from_u64(9_999)).is_none());
/// ```
pub fn select_component<'c>(
    components: &'c [EvmPaymentComponent],
    chain_id: u64,
    token: &EvmAddress,
    max_base_units: TokenAmount,
) -> Option<&'c EvmPaymentComponent> {
    components.iter().find(|c| {
        c.payment_type == "evm"
            && c.chain_id == chain_id
            && c.token == *token
            && c.required_base_units().is_ok_and(|p| p <= max_base_units)
    })
}

/// A `uint256` written by the seed as a JSON integer; also accepted as a
/// decimal string. Written as an integer when it fits in `u64`.
mod uint_lenient {
    use alloy_primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::x402::amount::parse_u256_decimal;

    pub fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(*v) {
            Ok(n) => s.serialize_u64(n),
            Err(_) => s.collect_str(v),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            N(u64),
            S(&'a str),
            O(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(U256::from(n)),
            Raw::S(s) => parse_u256_decimal(s).map_err(serde::de::Error::custom),
            Raw::O(s) => parse_u256_decimal(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// The permit signature as the seed sends it: `v` (27 or 28), `r`, `s`.
///
/// ```
/// use pay402_core::x402::mock::MockPermitSignature;
/// let s: MockPermitSignature = serde_json::from_str(&format!(r#"{{"signature_type":"EIP2612","v":27,"r":"0x{0}","s":"0x{0}"}}"#, "11".repeat(32))).unwrap();
/// assert_eq!(s.to_bytes()[64], 27);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockPermitSignature {
    /// `"EIP2612"`.
    pub signature_type: String,
    /// Recovery id, 27 or 28.
    pub v: u8,
    /// `r`.
    pub r: Bytes32,
    /// `s`.
    pub s: Bytes32,
}

impl MockPermitSignature {
    /// `r ‖ s ‖ v`, 65 bytes.
    ///
    /// ```
    /// use pay402_core::x402::{mock::MockPermitSignature, evm::Bytes32};
    /// let s = MockPermitSignature { signature_type: "EIP2612".into(), v: 28, r: Bytes32([1; 32]), s: Bytes32([2; 32]) };
    /// assert_eq!(&s.to_bytes()[..33], &[[1u8; 32].as_slice(), &[2]].concat()[..]);
    /// ```
    pub fn to_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[..32].copy_from_slice(&self.r.0);
        out[32..64].copy_from_slice(&self.s.0);
        out[64] = self.v;
        out
    }
}

/// The signed EIP-2612 permit inside the POST body.
///
/// ```
/// # use pay402_core::x402::mock::*;
/// let json = format!(r#"{{"permit_type":"EIP2612","owner":"0x857b06519E91e3A54538791bDbb0E22373e36b66","spender":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","value":10000,"nonce":0,"deadline":1800000600,"chain_id":84532,"signature":{{"signature_type":"EIP2612","v":27,"r":"0x{0}","s":"0x{0}"}}}}"#, "11".repeat(32));
/// let p: MockPermit = serde_json::from_str(&json).unwrap();
/// assert_eq!(p.to_eip2612().value.to_string(), "10000");
/// assert_eq!(serde_json::to_string(&p).unwrap(), json);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockPermit {
    /// `"EIP2612"`.
    pub permit_type: String,
    /// The payer.
    pub owner: EvmAddress,
    /// Must be the server wallet.
    pub spender: EvmAddress,
    /// The token contract.
    pub token: EvmAddress,
    /// Allowance in base units.
    #[serde(with = "uint_lenient")]
    pub value: U256,
    /// `nonces(owner)` at signing time.
    #[serde(with = "uint_lenient")]
    pub nonce: U256,
    /// Last valid second.
    #[serde(with = "uint_lenient")]
    pub deadline: U256,
    /// The EVM chain id.
    pub chain_id: u64,
    /// `v`, `r`, `s`.
    pub signature: MockPermitSignature,
    /// Creation time, as the seed writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Value>,
}

impl MockPermit {
    /// The EIP-2612 message.
    ///
    /// See the example on [`MockPermit`].
    ///
    /// ```
    /// # use pay402_core::x402::{mock::*, evm::*};
    /// # let p = MockPermit { permit_type: "EIP2612".into(), owner: EvmAddress::default(), spender: EvmAddress::default(),
    /// #     token: EvmAddress::default(), value: 5u64.try_into().unwrap(), nonce: Default::default(), deadline: Default::default(), chain_id: 1,
    /// #     signature: MockPermitSignature { signature_type: "EIP2612".into(), v: 27, r: Bytes32::default(), s: Bytes32::default() }, created_at: None };
    /// assert_eq!(p.to_eip2612().value.to_string(), "5");
    /// ```
    pub fn to_eip2612(&self) -> Eip2612Permit {
        Eip2612Permit {
            owner: self.owner,
            spender: self.spender,
            value: TokenAmount(self.value),
            nonce: self.nonce,
            deadline: EvmTimestamp(self.deadline),
        }
    }

    /// The local checks of §12.5 against the component the server offered,
    /// in the seed's order, plus the checks the seed lacks (permit type,
    /// token **and chain**): type → token/chain → spender → deadline →
    /// signer → value. The on-chain steps (`nonces(owner)`, `balanceOf`) are
    /// the caller's.
    ///
    /// ```
    /// # use pay402_core::x402::{mock::*, evm::*};
    /// # use pay402_core::time::UnixTime;
    /// # let c: EvmPaymentComponent = serde_json::from_str(r#"{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}}"#).unwrap();
    /// let p = MockPermit { permit_type: "EIP2612".into(), owner: EvmAddress::default(), spender: c.metadata.wallet_address,
    ///     token: c.token, value: 10_000u64.try_into().unwrap(), nonce: Default::default(), deadline: 2_000u64.try_into().unwrap(), chain_id: 8453,
    ///     signature: MockPermitSignature { signature_type: "EIP2612".into(), v: 27, r: Bytes32::default(), s: Bytes32::default() }, created_at: None };
    /// assert_eq!(p.check(&c, UnixTime(1_000)), Err(MockError::ComponentMismatch));
    /// ```
    pub fn check(&self, component: &EvmPaymentComponent, now: UnixTime) -> Result<(), MockError> {
        if self.permit_type != "EIP2612" || self.signature.signature_type != "EIP2612" {
            return Err(MockError::UnsupportedPermitType);
        }
        if self.token != component.token || self.chain_id != component.chain_id {
            return Err(MockError::ComponentMismatch);
        }
        let required = component.required_base_units()?;
        check_permit(
            &self.to_eip2612(),
            &self.signature.to_bytes(),
            &component.domain(),
            &component.metadata.wallet_address,
            required,
            now,
        )
        .map_err(MockError::Permit)
    }
}

/// The permit POST body `{version, permit}`.
///
/// ```
/// use pay402_core::x402::mock::MockPermitRequest;
/// let r: Result<MockPermitRequest, _> = serde_json::from_str(r#"{"version":"Version 0.1"}"#);
/// assert!(r.is_err()); // no permit
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockPermitRequest {
    /// `"Version 0.1"`.
    pub version: String,
    /// The signed permit.
    pub permit: MockPermit,
}

/// The token endpoint's answer `{access_token, token_type, expires_in, metadata}`.
///
/// ```
/// use pay402_core::x402::mock::AccessTokenResponse;
/// let r = AccessTokenResponse::bearer("t".into(), 3600);
/// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"access_token":"t","token_type":"Bearer","expires_in":3600}"#);
/// // The token is a bearer credential: `Debug` never shows it.
/// assert!(!format!("{r:?}").contains("\"t\""));
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenResponse {
    /// The token.
    pub access_token: String,
    /// `"Bearer"`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl std::fmt::Debug for AccessTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenResponse")
            .field("access_token", &"..")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl AccessTokenResponse {
    /// A Bearer response without metadata.
    ///
    /// ```
    /// assert_eq!(pay402_core::x402::mock::AccessTokenResponse::bearer("t".into(), 1).token_type, "Bearer");
    /// ```
    pub fn bearer(access_token: String, expires_in: u64) -> AccessTokenResponse {
        AccessTokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in,
            metadata: None,
        }
    }
}

/// Why an x402_mock permit or component was rejected.
///
/// ```
/// use pay402_core::x402::mock::MockError;
/// use pay402_core::problem::Reason;
/// assert_eq!(MockError::ComponentMismatch.reason(), "mock_component_mismatch");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MockError {
    /// `permit_type`/`signature_type` is not `EIP2612`.
    #[error("unsupported permit type")]
    UnsupportedPermitType,
    /// The permit's token or chain is not the component's.
    #[error("permit token or chain does not match the payment component")]
    ComponentMismatch,
    /// The component's amount cannot be converted to base units exactly.
    #[error("invalid component amount")]
    InvalidAmount,
    /// A permit check failed.
    #[error(transparent)]
    Permit(PermitError),
}

impl Reason for MockError {
    fn reason(&self) -> &'static str {
        match self {
            MockError::UnsupportedPermitType => "mock_unsupported_permit_type",
            MockError::ComponentMismatch => "mock_component_mismatch",
            MockError::InvalidAmount => "mock_invalid_amount",
            MockError::Permit(e) => e.reason(),
        }
    }
    fn status(&self) -> u16 {
        match self {
            MockError::InvalidAmount => 500,
            MockError::Permit(e) => e.status(),
            _ => 400,
        }
    }
}

/// The token format's prefix (format version 1); also under the MAC.
///
/// ```
/// assert_eq!(pay402_core::x402::mock::ACCESS_TOKEN_PREFIX, "x4m1.");
/// ```
pub const ACCESS_TOKEN_PREFIX: &str = "x4m1.";

/// Shortest HMAC key accepted, in bytes.
///
/// ```
/// assert_eq!(pay402_core::x402::mock::MIN_KEY_LEN, 32);
/// ```
pub const MIN_KEY_LEN: usize = 32;

/// Longest token accepted, in characters (checked before any decoding).
///
/// ```
/// use pay402_core::x402::mock::{verify_access_token, AccessTokenError, MAX_TOKEN_LEN};
/// let t = "x".repeat(MAX_TOKEN_LEN + 1);
/// assert_eq!(verify_access_token(&t, &[0; 32], "r", pay402_core::time::UnixTime(0)), Err(AccessTokenError::Malformed));
/// ```
pub const MAX_TOKEN_LEN: usize = 4096;

/// What an access token grants, all of it under the HMAC.
///
/// Wire form: `x4m1.` ‖ b64url(JSON claims) ‖ `.` ‖ b64url(HMAC-SHA256(key,
/// `x4m1.` ‖ b64url(JSON claims))), base64url without padding.
///
/// ```
/// use pay402_core::x402::mock::AccessTokenClaims;
/// let c: AccessTokenClaims = serde_json::from_str(r#"{"sub":"0x857b06519E91e3A54538791bDbb0E22373e36b66","res":"GET /a","amt":"1","ast":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","cid":84532,"iat":1,"exp":2,"jti":"0x0000000000000000000000000000000000000000000000000000000000000000"}"#).unwrap();
/// assert_eq!(c.resource, "GET /a");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessTokenClaims {
    /// The payer (the permit's `owner`).
    #[serde(rename = "sub")]
    pub payer: EvmAddress,
    /// The resource the token opens, compared exactly (e.g. `GET /premium`
    /// or a URL: the server's choice, used the same way at issue and check).
    #[serde(rename = "res")]
    pub resource: String,
    /// The amount paid, in base units.
    #[serde(rename = "amt")]
    pub amount: TokenAmount,
    /// The token contract paid in.
    #[serde(rename = "ast")]
    pub asset: EvmAddress,
    /// The EVM chain id.
    #[serde(rename = "cid")]
    pub chain_id: u64,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Expires at (unix seconds); valid while `now < exp`.
    pub exp: u64,
    /// A unique id for revocation, e.g. the permit's EIP-712 digest.
    pub jti: Bytes32,
}

/// Why an access token was rejected. Stable reasons via [`Reason`].
///
/// ```
/// use pay402_core::x402::mock::AccessTokenError;
/// use pay402_core::problem::Reason;
/// assert_eq!(AccessTokenError::Expired.reason(), "access_token_expired");
/// assert_eq!(AccessTokenError::Expired.status(), 401);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    /// Not a well-formed token (shape, base64, length, claims JSON).
    #[error("malformed access token")]
    Malformed,
    /// The MAC does not verify under the key.
    #[error("access token signature is invalid")]
    BadSignature,
    /// `now >= exp`.
    #[error("access token has expired")]
    Expired,
    /// The token was issued for another resource.
    #[error("access token is for another resource")]
    WrongResource,
    /// The key is shorter than [`MIN_KEY_LEN`] (a server configuration error).
    #[error("access token key is too short")]
    KeyTooShort,
}

impl Reason for AccessTokenError {
    fn reason(&self) -> &'static str {
        match self {
            AccessTokenError::Malformed => "access_token_malformed",
            AccessTokenError::BadSignature => "access_token_bad_signature",
            AccessTokenError::Expired => "access_token_expired",
            AccessTokenError::WrongResource => "access_token_wrong_resource",
            AccessTokenError::KeyTooShort => "access_token_key_too_short",
        }
    }
    fn status(&self) -> u16 {
        match self {
            AccessTokenError::KeyTooShort => 500,
            _ => 401,
        }
    }
}

fn mac(key: &[u8], signed: &[u8]) -> Result<Hmac<Sha256>, AccessTokenError> {
    if key.len() < MIN_KEY_LEN {
        return Err(AccessTokenError::KeyTooShort);
    }
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| AccessTokenError::KeyTooShort)?;
    m.update(signed);
    Ok(m)
}

/// Issues a token for `claims` under `key` (at least [`MIN_KEY_LEN`] bytes).
///
/// See the module example.
///
/// ```
/// use pay402_core::x402::mock::*;
/// # let claims: AccessTokenClaims = serde_json::from_str(r#"{"sub":"0x857b06519E91e3A54538791bDbb0E22373e36b66","res":"GET /a","amt":"1","ast":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","cid":84532,"iat":1,"exp":2,"jti":"0x0000000000000000000000000000000000000000000000000000000000000000"}"#).unwrap();
/// assert_eq!(issue_access_token(&claims, &[0; 16]), Err(AccessTokenError::KeyTooShort));
/// assert!(issue_access_token(&claims, &[0; 32]).unwrap().starts_with(ACCESS_TOKEN_PREFIX));
/// ```
pub fn issue_access_token(
    claims: &AccessTokenClaims,
    key: &[u8],
) -> Result<String, AccessTokenError> {
    // Serializing these claims cannot fail (string keys, no maps).
    let json = serde_json::to_vec(claims).map_err(|_| AccessTokenError::Malformed)?;
    let mut token = String::with_capacity(ACCESS_TOKEN_PREFIX.len() + json.len() * 4 / 3 + 48);
    token.push_str(ACCESS_TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&json, &mut token);
    let tag = mac(key, token.as_bytes())?.finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    Ok(token)
}

/// Verifies a token: shape and size → MAC (constant-time) → claims →
/// expiry (`now < exp`, no leeway) → resource. The claims are parsed only
/// after the MAC has verified.
///
/// ```
/// use pay402_core::x402::mock::*;
/// use pay402_core::time::UnixTime;
/// # let claims: AccessTokenClaims = serde_json::from_str(r#"{"sub":"0x857b06519E91e3A54538791bDbb0E22373e36b66","res":"GET /a","amt":"1","ast":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","cid":84532,"iat":1,"exp":2,"jti":"0x0000000000000000000000000000000000000000000000000000000000000000"}"#).unwrap();
/// let token = issue_access_token(&claims, &[1; 32]).unwrap();
/// assert_eq!(verify_access_token(&token, &[2; 32], "GET /a", UnixTime(1)), Err(AccessTokenError::BadSignature));
/// assert_eq!(verify_access_token("x4m1.e30", &[1; 32], "GET /a", UnixTime(1)), Err(AccessTokenError::Malformed));
/// ```
pub fn verify_access_token(
    token: &str,
    key: &[u8],
    resource: &str,
    now: UnixTime,
) -> Result<AccessTokenClaims, AccessTokenError> {
    if key.len() < MIN_KEY_LEN {
        return Err(AccessTokenError::KeyTooShort);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AccessTokenError::Malformed);
    }
    let rest = token
        .strip_prefix(ACCESS_TOKEN_PREFIX)
        .ok_or(AccessTokenError::Malformed)?;
    let (payload_b64, tag_b64) = rest.split_once('.').ok_or(AccessTokenError::Malformed)?;
    if payload_b64.is_empty() || tag_b64.contains('.') {
        return Err(AccessTokenError::Malformed);
    }
    let mut tag = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(tag_b64, &mut tag) {
        Ok(32) => {}
        _ => return Err(AccessTokenError::Malformed),
    }
    let signed = &token[..ACCESS_TOKEN_PREFIX.len() + payload_b64.len()];
    mac(key, signed.as_bytes())?
        .verify_slice(&tag)
        .map_err(|_| AccessTokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| AccessTokenError::Malformed)?;
    let claims: AccessTokenClaims =
        serde_json::from_slice(&json).map_err(|_| AccessTokenError::Malformed)?;
    if now.0 >= claims.exp {
        return Err(AccessTokenError::Expired);
    }
    if claims.resource != resource {
        return Err(AccessTokenError::WrongResource);
    }
    Ok(claims)
}
