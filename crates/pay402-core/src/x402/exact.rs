//! Local verification of `exact` EVM (EIP-3009) payments, in the reference
//! order (`eip3009.ts`) with the reference error strings.
//!
//! | # | check | reason |
//! |---|---|---|
//! | 1 | both schemes are `exact` | `invalid_exact_evm_scheme` |
//! | 2 | `extra.name` and `extra.version` present | `invalid_exact_evm_missing_eip712_domain` |
//! | 3 | payment network == requirement network | `invalid_exact_evm_network_mismatch` |
//! | 4 | the EIP-712 signature recovers to `authorization.from` | `invalid_exact_evm_signature` |
//! | 5 | `authorization.to == payTo` | `invalid_exact_evm_recipient_mismatch` |
//! | 6 | `validBefore >= now + 6` | `invalid_exact_evm_payload_authorization_valid_before` |
//! | 7 | `validAfter <= now` | `invalid_exact_evm_payload_authorization_valid_after` |
//! | 8 | v2: `value == amount`; v1: `value >= maxAmountRequired` | `invalid_exact_evm_authorization_value` |
//!
//! Step 9 (the `eth_call` simulation, balance and `authorizationState`) needs
//! the chain: it is the facilitator's job, with the data in [`VerifiedExact`].
//! Smart-wallet signatures (longer than 65 bytes, ERC-1271/6492) also need the
//! chain; core fails them closed with `invalid_exact_evm_signature`.
//!
//! ```
//! use pay402_core::x402::{exact, HeaderValue, PaymentPayloadV2};
//! use pay402_core::time::UnixTime;
//! let header = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
//! let payment = PaymentPayloadV2::decode_header(header).unwrap();
//! let requirements = payment.accepted.clone(); // normally: the server's own offer
//! let ok = exact::verify_v2(&payment, &requirements, UnixTime(1_740_672_100)).unwrap();
//! assert_eq!(ok.payer.to_string(), "0x857b06519E91e3A54538791bDbb0E22373e36b66");
//! let late = exact::verify_v2(&payment, &requirements, UnixTime(1_740_672_149)).unwrap_err();
//! assert_eq!(late, exact::ExactEvmError::ValidBefore);
//! ```

use alloy_primitives::{B256, U256};

use crate::problem::Reason;
use crate::time::UnixTime;

use super::borrowed::PaymentPayloadV2Ref;
use super::evm::{Eip712Domain, EvmAddress, TransferAuthorization, recover_signer};
use super::network;
use super::types::{
    ExactEvmPayload, Extra, PaymentPayloadV1, PaymentPayloadV2, PaymentRequirements,
    PaymentRequirementsV1,
};
use super::{TokenAmount, X402_V1, X402_V2};

/// The scheme name.
///
/// ```
/// assert_eq!(pay402_core::x402::exact::SCHEME_EXACT, "exact");
/// ```
pub const SCHEME_EXACT: &str = "exact";

/// `validBefore` must be at least this many seconds after `now` (reference margin).
///
/// ```
/// assert_eq!(pay402_core::x402::exact::VALID_BEFORE_MARGIN_SECS, 6);
/// ```
pub const VALID_BEFORE_MARGIN_SECS: u64 = 6;

/// Why an `exact` EVM payment was rejected. [`Reason::reason`] returns the
/// reference error string.
///
/// ```
/// use pay402_core::x402::exact::ExactEvmError;
/// use pay402_core::problem::Reason;
/// assert_eq!(ExactEvmError::RecipientMismatch.reason(), "invalid_exact_evm_recipient_mismatch");
/// assert_eq!(ExactEvmError::RecipientMismatch.status(), 402);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExactEvmError {
    /// `x402Version` is not the one this verifier handles.
    #[error("unsupported x402Version")]
    Version,
    /// Step 1: a scheme is not `exact`.
    #[error("scheme is not exact")]
    Scheme,
    /// Step 2: `extra.name` or `extra.version` is missing.
    #[error("requirements lack the EIP-712 domain (extra.name, extra.version)")]
    MissingEip712Domain,
    /// Step 3: the payment is for another network.
    #[error("network mismatch")]
    NetworkMismatch,
    /// The requirement's network is not an EVM chain this verifier knows.
    #[error("network is not a known EVM chain")]
    UnsupportedNetwork,
    /// The requirement's `asset` or `payTo` is not an EVM address.
    #[error("requirements are not valid for exact EVM")]
    InvalidRequirements,
    /// Step 4: the signature does not recover to `authorization.from`
    /// (malformed, high-s, wrong domain, or a smart-wallet signature core cannot check).
    #[error("invalid signature")]
    Signature,
    /// Step 5: `authorization.to` is not `payTo`.
    #[error("recipient mismatch")]
    RecipientMismatch,
    /// Step 6: `validBefore < now + 6`.
    #[error("authorization expires too soon")]
    ValidBefore,
    /// Step 7: `validAfter > now`.
    #[error("authorization not yet valid")]
    ValidAfter,
    /// Step 8: v2 `value != amount`, v1 `value < maxAmountRequired`.
    #[error("authorization value does not match the price")]
    Value,
}

impl Reason for ExactEvmError {
    fn reason(&self) -> &'static str {
        match self {
            ExactEvmError::Version => "invalid_x402_version",
            ExactEvmError::Scheme => "invalid_exact_evm_scheme",
            ExactEvmError::MissingEip712Domain => "invalid_exact_evm_missing_eip712_domain",
            ExactEvmError::NetworkMismatch => "invalid_exact_evm_network_mismatch",
            ExactEvmError::UnsupportedNetwork => "invalid_network",
            ExactEvmError::InvalidRequirements => "invalid_payment_requirements",
            ExactEvmError::Signature => "invalid_exact_evm_signature",
            ExactEvmError::RecipientMismatch => "invalid_exact_evm_recipient_mismatch",
            ExactEvmError::ValidBefore => "invalid_exact_evm_payload_authorization_valid_before",
            ExactEvmError::ValidAfter => "invalid_exact_evm_payload_authorization_valid_after",
            ExactEvmError::Value => "invalid_exact_evm_authorization_value",
        }
    }
    fn status(&self) -> u16 {
        match self {
            ExactEvmError::Version
            | ExactEvmError::UnsupportedNetwork
            | ExactEvmError::InvalidRequirements => 400,
            _ => 402,
        }
    }
}

/// A payment that passed every local check, with what the facilitator needs
/// for the on-chain ones (balance, `authorizationState(from, nonce)`,
/// simulation) and for settlement (`transferWithAuthorization`).
///
/// ```
/// use pay402_core::x402::exact::VerifiedExact;
/// fn settle(v: &VerifiedExact) -> u64 { v.chain_id }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedExact {
    /// The recovered signer, equal to `authorization.from`.
    pub payer: EvmAddress,
    /// The EVM chain id.
    pub chain_id: u64,
    /// The token contract.
    pub asset: EvmAddress,
    /// The signed authorization.
    pub authorization: TransferAuthorization,
    /// The EIP-712 digest that was signed.
    pub digest: B256,
}

struct Common<'a> {
    network: &'a str,
    asset: &'a str,
    pay_to: &'a str,
    extra: Option<&'a Extra>,
}

fn check_common(
    auth: &TransferAuthorization,
    signature: &[u8],
    req: &Common<'_>,
    now: UnixTime,
    value_ok: impl FnOnce(&TokenAmount) -> bool,
) -> Result<VerifiedExact, ExactEvmError> {
    // The EIP-712 domain (presence already checked as step 2 by the callers).
    let (name, version) = match req.extra {
        Some(e) => match (e.name(), e.version()) {
            (Some(n), Some(v)) => (n, v),
            _ => return Err(ExactEvmError::MissingEip712Domain),
        },
        None => return Err(ExactEvmError::MissingEip712Domain),
    };
    let chain_id = network::evm_chain_id(req.network).ok_or(ExactEvmError::UnsupportedNetwork)?;
    let asset: EvmAddress = req
        .asset
        .parse()
        .map_err(|_| ExactEvmError::InvalidRequirements)?;
    let pay_to: EvmAddress = req
        .pay_to
        .parse()
        .map_err(|_| ExactEvmError::InvalidRequirements)?;

    let domain = Eip712Domain::new(name, version, chain_id, asset);
    verify_authorization(auth, signature, &domain, pay_to, now, value_ok)
}

/// Steps 4 to 8 on their own: an EIP-3009 `TransferWithAuthorization`
/// checked against an EIP-712 domain (token name, version, chain, contract)
/// and a recipient, at `now`. x402's `exact` scheme and MPP's `evm`/`charge`
/// `authorization` credential share this code.
///
/// ```
/// use pay402_core::x402::exact::{verify_authorization, ExactEvmError};
/// use pay402_core::x402::evm::{Eip712Domain, TransferAuthorization};
/// use pay402_core::time::UnixTime;
/// let auth: TransferAuthorization = serde_json::from_str(r#"{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}"#).unwrap();
/// let sig = hex::decode("2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c").unwrap();
/// let domain = Eip712Domain::new("USDC", "2", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap());
/// let ok = verify_authorization(&auth, &sig, &domain, auth.to, UnixTime(1_740_672_100), |v| v.0 == alloy_primitives::U256::from(10_000u64));
/// assert_eq!(ok.unwrap().payer, auth.from);
/// let wrong_chain = Eip712Domain::new("USDC", "2", 8453, domain.verifying_contract);
/// let e = verify_authorization(&auth, &sig, &wrong_chain, auth.to, UnixTime(1_740_672_100), |_| true);
/// assert_eq!(e.unwrap_err(), ExactEvmError::Signature);
/// ```
pub fn verify_authorization(
    auth: &TransferAuthorization,
    signature: &[u8],
    domain: &Eip712Domain,
    pay_to: EvmAddress,
    now: UnixTime,
    value_ok: impl FnOnce(&TokenAmount) -> bool,
) -> Result<VerifiedExact, ExactEvmError> {
    // Step 4: the signature (EOA only; see the module docs).
    let digest = auth.signing_hash(domain);
    let signer = recover_signer(&digest, signature).map_err(|_| ExactEvmError::Signature)?;
    if signer != auth.from {
        return Err(ExactEvmError::Signature);
    }
    // Step 5: recipient.
    if auth.to != pay_to {
        return Err(ExactEvmError::RecipientMismatch);
    }
    // Step 6: validBefore >= now + 6.
    let earliest_expiry = U256::from(now.0).saturating_add(U256::from(VALID_BEFORE_MARGIN_SECS));
    if auth.valid_before.0 < earliest_expiry {
        return Err(ExactEvmError::ValidBefore);
    }
    // Step 7: validAfter <= now.
    if auth.valid_after.0 > U256::from(now.0) {
        return Err(ExactEvmError::ValidAfter);
    }
    // Step 8: value.
    if !value_ok(&auth.value) {
        return Err(ExactEvmError::Value);
    }
    Ok(VerifiedExact {
        payer: signer,
        chain_id: domain.chain_id,
        asset: domain.verifying_contract,
        authorization: auth.clone(),
        digest,
    })
}

/// Verifies a v2 `exact` EVM payment against the server's requirement
/// (the one chosen with [`super::select_requirement_v2`]), at time `now`.
///
/// See the module example.
///
/// ```
/// use pay402_core::x402::{exact, PaymentPayloadV2, HeaderValue};
/// # let header = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
/// let payment = PaymentPayloadV2::decode_header(header).unwrap();
/// let mut req = payment.accepted.clone();
/// req.pay_to = "0x0000000000000000000000000000000000000001".into();
/// let err = exact::verify_v2(&payment, &req, pay402_core::time::UnixTime(1_740_672_100)).unwrap_err();
/// assert_eq!(err, exact::ExactEvmError::RecipientMismatch);
/// ```
pub fn verify_v2(
    payment: &PaymentPayloadV2<ExactEvmPayload>,
    requirements: &PaymentRequirements,
    now: UnixTime,
) -> Result<VerifiedExact, ExactEvmError> {
    verify_v2_parts(
        payment.x402_version,
        &payment.accepted.scheme,
        &payment.accepted.network,
        &payment.payload.authorization,
        payment.payload.signature.as_bytes(),
        requirements,
        now,
    )
}

/// [`verify_v2`] for a payment decoded with the borrowed path
/// ([`PaymentPayloadV2Ref`]): the same checks, order and errors, no
/// conversion to the owned type.
///
/// ```
/// use pay402_core::x402::{exact, borrowed::PaymentPayloadV2Ref};
/// # let header = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
/// let mut buf = Vec::new();
/// let payment = PaymentPayloadV2Ref::decode_header(header, &mut buf).unwrap();
/// let req = payment.accepted.to_owned_requirements();
/// let err = exact::verify_v2_ref(&payment, &req, pay402_core::time::UnixTime(1_740_672_149)).unwrap_err();
/// assert_eq!(err, exact::ExactEvmError::ValidBefore);
/// ```
pub fn verify_v2_ref(
    payment: &PaymentPayloadV2Ref<'_>,
    requirements: &PaymentRequirements,
    now: UnixTime,
) -> Result<VerifiedExact, ExactEvmError> {
    verify_v2_parts(
        payment.x402_version,
        &payment.accepted.scheme,
        &payment.accepted.network,
        &payment.payload.authorization,
        payment.payload.signature.as_bytes(),
        requirements,
        now,
    )
}

/// The v2 checks in the reference order, shared by [`verify_v2`] and
/// [`verify_v2_ref`] so the owned and borrowed paths cannot drift apart.
fn verify_v2_parts(
    version: u32,
    accepted_scheme: &str,
    accepted_network: &str,
    authorization: &TransferAuthorization,
    signature: &[u8],
    requirements: &PaymentRequirements,
    now: UnixTime,
) -> Result<VerifiedExact, ExactEvmError> {
    if version != X402_V2 {
        return Err(ExactEvmError::Version);
    }
    // Step 1.
    if accepted_scheme != SCHEME_EXACT || requirements.scheme != SCHEME_EXACT {
        return Err(ExactEvmError::Scheme);
    }
    // Step 2.
    if requirements
        .extra
        .as_ref()
        .is_none_or(|e| e.name().is_none() || e.version().is_none())
    {
        return Err(ExactEvmError::MissingEip712Domain);
    }
    // Step 3.
    if accepted_network != requirements.network.as_str() {
        return Err(ExactEvmError::NetworkMismatch);
    }
    let amount = requirements.amount;
    check_common(
        authorization,
        signature,
        &Common {
            network: &requirements.network,
            asset: &requirements.asset,
            pay_to: &requirements.pay_to,
            extra: requirements.extra.as_ref(),
        },
        now,
        |v| *v == amount,
    )
}

/// Verifies a legacy v1 `exact` EVM payment (`X-PAYMENT`) against a v1
/// requirement, at time `now`. The value must be at least `maxAmountRequired`.
///
/// ```
/// use pay402_core::x402::{exact, PaymentPayloadV1, PaymentRequirementsV1, Extra, TokenAmount, HeaderValue};
/// use pay402_core::time::UnixTime;
/// let header = "eyJ4NDAyVmVyc2lvbiI6MSwic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiYmFzZS1zZXBvbGlhIiwicGF5bG9hZCI6eyJzaWduYXR1cmUiOiIweDJkNmE3NTg4ZDZhY2NhNTA1Y2JmMGQ5YTRhMjI3ZTBjNTJjNmMzNDAwOGM4ZTg5ODZhMTI4MzI1OTc2NDE3MzYwOGEyY2U2NDk2NjQyZTM3N2Q2ZGE4ZGJiZjU4MzZlOWJkMTUwOTJmOWVjYWIwNWRlZDNkNjI5M2FmMTQ4YjU3MWMiLCJhdXRob3JpemF0aW9uIjp7ImZyb20iOiIweDg1N2IwNjUxOUU5MWUzQTU0NTM4NzkxYkRiYjBFMjIzNzNlMzZiNjYiLCJ0byI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsInZhbHVlIjoiMTAwMDAiLCJ2YWxpZEFmdGVyIjoiMTc0MDY3MjA4OSIsInZhbGlkQmVmb3JlIjoiMTc0MDY3MjE1NCIsIm5vbmNlIjoiMHhmMzc0NjYxM2MyZDkyMGI1ZmRhYmMwODU2ZjJhZWIyZDRmODhlZTYwMzdiOGNjNWQwNGE3MWE0NDYyZjEzNDgwIn19fQ==";
/// let payment = PaymentPayloadV1::decode_header(header).unwrap();
/// let req = PaymentRequirementsV1 {
///     scheme: "exact".into(), network: "base-sepolia".into(),
///     max_amount_required: TokenAmount::from_u64(9_000),
///     asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
///     pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
///     resource: "https://api.example.com/premium-data".into(), description: String::new(),
///     mime_type: String::new(), output_schema: None, max_timeout_seconds: 60,
///     extra: Some(Extra::eip712("USDC", "2")),
/// };
/// assert!(exact::verify_v1(&payment, &req, UnixTime(1_740_672_100)).is_ok());
/// ```
pub fn verify_v1(
    payment: &PaymentPayloadV1<ExactEvmPayload>,
    requirements: &PaymentRequirementsV1,
    now: UnixTime,
) -> Result<VerifiedExact, ExactEvmError> {
    if payment.x402_version != X402_V1 {
        return Err(ExactEvmError::Version);
    }
    // Step 1.
    if payment.scheme != SCHEME_EXACT || requirements.scheme != SCHEME_EXACT {
        return Err(ExactEvmError::Scheme);
    }
    // Step 2.
    if requirements
        .extra
        .as_ref()
        .is_none_or(|e| e.name().is_none() || e.version().is_none())
    {
        return Err(ExactEvmError::MissingEip712Domain);
    }
    // Step 3.
    if payment.network != requirements.network {
        return Err(ExactEvmError::NetworkMismatch);
    }
    let min = requirements.max_amount_required;
    check_common(
        &payment.payload.authorization,
        payment.payload.signature.as_bytes(),
        &Common {
            network: &requirements.network,
            asset: &requirements.asset,
            pay_to: &requirements.pay_to,
            extra: requirements.extra.as_ref(),
        },
        now,
        |v| *v >= min,
    )
}
