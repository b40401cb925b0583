//! The local part of x402_mock's EIP-2612 permit validation (§12.5), kept
//! apart from x402 proper: x402_mock is a different, non-wire-compatible dialect.
//!
//! Steps, in the seed project's order: (1) structure — done by the caller's
//! parser; (2) `spender` is the server wallet; (3) `deadline` has not passed;
//! (4) the EIP-712 signer is `owner`; (5) on-chain `nonces(owner)` equals the
//! permit nonce — the caller's job, with [`Eip2612Permit::nonce`]; (6) `value`
//! covers the price; (7) `balanceOf(owner)` — the caller's job.
//!
//! ```
//! use pay402_core::x402::permit::{check_permit, PermitError};
//! use pay402_core::x402::evm::{Eip2612Permit, Eip712Domain, EvmAddress};
//! use pay402_core::x402::{TokenAmount, EvmTimestamp};
//! use pay402_core::time::UnixTime;
//! let wallet: EvmAddress = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap();
//! let permit = Eip2612Permit {
//!     owner: EvmAddress::default(), spender: wallet, value: TokenAmount::from_u64(10_000),
//!     nonce: Default::default(), deadline: EvmTimestamp::from_u64(1_000),
//! };
//! let domain = Eip712Domain::new("USDC", "2", 84532, EvmAddress::default());
//! let err = check_permit(&permit, &[0; 65], &domain, &wallet, TokenAmount::from_u64(10_000), UnixTime(2_000));
//! assert_eq!(err.unwrap_err(), PermitError::Expired);
//! ```

use alloy_primitives::U256;

use crate::problem::Reason;
use crate::time::UnixTime;

use super::amount::TokenAmount;
use super::evm::{Eip712Domain, Eip2612Permit, EvmAddress};

/// Why a permit was rejected (pay402's stable reasons; x402_mock has no error strings).
///
/// ```
/// use pay402_core::x402::permit::PermitError;
/// use pay402_core::problem::Reason;
/// assert_eq!(PermitError::SpenderMismatch.reason(), "permit_spender_mismatch");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PermitError {
    /// Step 2: the spender is not the server wallet.
    #[error("permit spender is not the server wallet")]
    SpenderMismatch,
    /// Step 3: the deadline has passed.
    #[error("permit deadline has passed")]
    Expired,
    /// Step 4: the signature does not recover to `owner`.
    #[error("permit signature does not recover to the owner")]
    InvalidSignature,
    /// Step 6: the value is below the price.
    #[error("permit value is below the price")]
    InsufficientValue,
}

impl Reason for PermitError {
    fn reason(&self) -> &'static str {
        match self {
            PermitError::SpenderMismatch => "permit_spender_mismatch",
            PermitError::Expired => "permit_expired",
            PermitError::InvalidSignature => "invalid_permit_signature",
            PermitError::InsufficientValue => "permit_insufficient_value",
        }
    }
    fn status(&self) -> u16 {
        402
    }
}

/// Runs steps 2, 3, 4 and 6 of the x402_mock permit validation.
///
/// `signature` is the 65-byte `r ‖ s ‖ v` (x402_mock sends `v`, `r`, `s`
/// separately: concatenate them). `required` is the price in base units.
///
/// ```
/// use pay402_core::x402::permit::{check_permit, PermitError};
/// use pay402_core::x402::evm::{Eip2612Permit, Eip712Domain, EvmAddress};
/// use pay402_core::x402::{TokenAmount, EvmTimestamp};
/// use pay402_core::time::UnixTime;
/// let wallet = EvmAddress::default();
/// let permit = Eip2612Permit {
///     owner: EvmAddress::default(), spender: wallet, value: TokenAmount::from_u64(1),
///     nonce: Default::default(), deadline: EvmTimestamp::from_u64(1_000),
/// };
/// let domain = Eip712Domain::new("USDC", "2", 84532, EvmAddress::default());
/// let err = check_permit(&permit, &[0; 65], &domain, &wallet, TokenAmount::from_u64(1), UnixTime(0));
/// assert_eq!(err.unwrap_err(), PermitError::InvalidSignature);
/// ```
pub fn check_permit(
    permit: &Eip2612Permit,
    signature: &[u8],
    domain: &Eip712Domain,
    server_wallet: &EvmAddress,
    required: TokenAmount,
    now: UnixTime,
) -> Result<(), PermitError> {
    if permit.spender != *server_wallet {
        return Err(PermitError::SpenderMismatch);
    }
    if permit.deadline.0 < U256::from(now.0) {
        return Err(PermitError::Expired);
    }
    match permit.recover_signer(domain, signature) {
        Ok(who) if who == permit.owner => {}
        _ => return Err(PermitError::InvalidSignature),
    }
    if permit.value < required {
        return Err(PermitError::InsufficientValue);
    }
    Ok(())
}
