//! # pay402-core
//!
//! The sans-IO heart of pay402: everything about HTTP 402 payments that can be
//! computed without I/O. It parses and builds every header, challenge and proof,
//! holds all verification rules, and defines the ports (traits) that nodes and
//! stores implement. Time, randomness and keys come in as parameters; nothing
//! here reads a clock, opens a socket or spawns a task.
//!
//! Rails:
//! - [`l402`]: L402 (and legacy LSAT): macaroons + Lightning invoices.
//! - [`x402`]: x402 v1 and v2: signed EIP-3009 token transfers (`exact` on EVM).
//! - [`bitreq`]: 21 BitRequests (two1): on-chain, bit-transfer and CLTV payment channels.
//! - [`mpp`]: MPP, the `Payment` HTTP authentication scheme (`lightning` and `evm` charges).
//!
//! Across rails: [`offer`] reads every offer of one 402 into rail-neutral
//! [`offer::Offer`]s ([`offer::read_offers`]); [`rates`] converts amounts
//! between units exactly.
//!
//! ```
//! use pay402_core::l402::{Credential, ChallengeSet};
//! let header = "L402 macaroon=\"AgJCAAA=\", invoice=\"lnbc1\"";
//! let set = ChallengeSet::parse([header.as_bytes()]).unwrap();
//! assert_eq!(set.l402().unwrap().invoice(), "lnbc1");
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth_header;
pub mod b64;
pub mod bitreq;
pub mod chain;
pub mod ct;
pub mod fault;
pub mod l402;
pub mod lightning;
pub mod money;
pub mod mpp;
pub mod offer;
pub mod problem;
pub mod rates;
pub mod time;
pub mod x402;
