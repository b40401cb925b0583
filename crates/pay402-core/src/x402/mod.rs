//! x402: HTTP 402 with machine-readable requirements, paid with signed token
//! transfer authorizations (EIP-3009 on EVM chains).
//!
//! - [`types`]: the v1 and v2 wire types (requirements, 402 offers, payments,
//!   receipts, facilitator bodies);
//! - [`header`]: the base64-of-JSON header codecs (`X-PAYMENT`,
//!   `X-PAYMENT-RESPONSE`, `PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE`,
//!   `PAYMENT-RESPONSE`);
//! - [`amount`]: `uint256` decimal strings ([`TokenAmount`], [`EvmTimestamp`]);
//! - [`network`]: CAIP-2 ids and the v1 slugs;
//! - [`evm`]: addresses, EIP-712 hashing (`TransferWithAuthorization`,
//!   EIP-2612 `Permit`), signer recovery with libsecp256k1;
//! - [`permit`]: the local EIP-2612 permit checks of the x402_mock dialect;
//! - [`borrowed`]: a zero-copy decode path for `PAYMENT-SIGNATURE`
//!   ([`borrowed::PaymentPayloadV2Ref`]), verified by [`exact::verify_v2_ref`];
//! - [`mock`]: the x402_mock dialect's wire types and a bound, HMAC-signed
//!   access token;
//! - [`facilitator`]: the [`Facilitator`] port (verify, settle, supported)
//!   that backends implement and servers call;
//! - [`settlements`]: the facilitator's settlement claims and transaction
//!   nonces, shared by every facilitator process on one key;
//! - [`exact`]: local verification of `exact` EVM payments, in the reference
//!   order with the reference error strings.
//!
//! Core never reads a clock or touches the chain: time comes in as
//! [`UnixTime`](crate::time::UnixTime), and the on-chain checks (balance,
//! nonce state, simulation) are left to the facilitator.
//!
//! ```
//! use pay402_core::x402::*;
//! use pay402_core::time::UnixTime;
//!
//! // Server: offer.
//! let offer = PaymentRequirements {
//!     scheme: "exact".into(),
//!     network: "eip155:84532".into(),
//!     amount: TokenAmount::from_u64(10_000),
//!     asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
//!     pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
//!     max_timeout_seconds: 60,
//!     extra: Some(Extra::eip712("USDC", "2")),
//! };
//! let required = PaymentRequired::new(ResourceInfo::new("https://api.example.com/premium-data"), vec![offer.clone()]);
//! let header_value = required.encode_header(); // PAYMENT-REQUIRED
//! assert_eq!(PaymentRequired::decode_header(&header_value).unwrap(), required);
//!
//! // Server: a payment arrives in PAYMENT-SIGNATURE (here: one built from the spec vector).
//! let auth: evm::TransferAuthorization = serde_json::from_str(r#"{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}"#).unwrap();
//! let payment = PaymentPayloadV2 {
//!     x402_version: 2,
//!     resource: None,
//!     accepted: offer.clone(),
//!     payload: ExactEvmPayload {
//!         signature: "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c".parse().unwrap(),
//!         authorization: auth,
//!     },
//!     extensions: None,
//! };
//! let decoded = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&payment.encode_header()).unwrap();
//! let offers = [offer];
//! let chosen = select_requirement_v2(&offers, &decoded.accepted).unwrap();
//! let verified = exact::verify_v2(&decoded, chosen, UnixTime(1_740_672_100)).unwrap();
//! assert_eq!(verified.chain_id, 84532);
//! ```

pub mod amount;
pub mod borrowed;
pub mod evm;
pub mod exact;
pub mod facilitator;
pub mod header;
pub mod mock;
pub mod mock_chain;
pub mod network;
pub mod permit;
pub mod settlements;
pub mod types;

pub use amount::{EvmTimestamp, TokenAmount};
pub use exact::{ExactEvmError, VerifiedExact};
pub use facilitator::{Facilitator, FacilitatorError, PaymentRequest};
pub use header::{HeaderError, HeaderValue};
pub use types::{
    ExactEvmPayload, Extra, FacilitatorRequest, FacilitatorRequestV1, FacilitatorRequestV2,
    PaymentPayloadV1, PaymentPayloadV2, PaymentRequired, PaymentRequiredV1, PaymentRequirements,
    PaymentRequirementsV1, ResourceInfo, SettleResponse, SupportedKind, SupportedResponse,
    VerifyResponse, select_requirement_v1, select_requirement_v2,
};

/// The `x402Version` of the legacy protocol.
///
/// ```
/// assert_eq!(pay402_core::x402::X402_V1, 1);
/// ```
pub const X402_V1: u32 = 1;

/// The `x402Version` of the current protocol.
///
/// ```
/// assert_eq!(pay402_core::x402::X402_V2, 2);
/// ```
pub const X402_V2: u32 = 2;
