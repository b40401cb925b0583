//! Payment methods: each defines its `request`, its `payload`, how a server
//! issues and verifies it, and what a client checks before paying.
//!
//! - [`lightning`]: `lightning`/`charge` (a BOLT11 invoice, paid by preimage),
//!   with [`bolt11`], the fast partial invoice reader of its verify path, and
//!   [`issued`], the issuing instance's memory of its challenges;
//! - [`evm`]: `evm`/`charge` with the EIP-3009 `authorization` credential,
//!   verified by the x402 EVM code ([`crate::x402::exact`]).

pub mod bolt11;
pub mod evm;
pub mod issued;
pub mod lightning;
