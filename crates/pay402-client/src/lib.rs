//! # pay402-client
//!
//! **One client for every rail:** the [`Payer`] reads every offer of a 402
//! (L402, x402, BitRequests, x402_mock), keeps those it can pay, picks one
//! by [`Choice`] within budgets that span rails, and records every step in
//! a durable [`journal`] so that no purchase is ever paid twice, even across
//! a crash. It is built from the per-rail clients below, which stay
//! available on their own.
//!
//! ```no_run
//! use std::sync::Arc;
//! use pay402_client::{Payer, PayerError};
//! use pay402_core::lightning::{LightningPayer, Network};
//! use pay402_core::{money::Sat, rates::Amount};
//!
//! async fn agent(node: Arc<dyn LightningPayer>) -> Result<(), PayerError> {
//!     let payer = Payer::builder()
//!         .lightning(node, Network::Regtest)
//!         .max_price(Amount::Sat(Sat(500)))
//!         .build()
//!         .await?;
//!     let paid = payer.get("http://127.0.0.1:8402/hello").await?;
//!     println!("{:?}", paid.receipt.as_ref().map(|r| (r.rail, r.amount.to_string())));
//!     Ok(())
//! }
//! ```
//!
//! A [reqwest] client that pays HTTP 402 L402 challenges (and legacy LSAT)
//! with a Lightning node, then retries with the credential
//! `Authorization: L402 <macaroon>:<preimage>`.
//!
//! - Every invoice is checked before paying: signature, network, expiry,
//!   amount present and within a per-request maximum, and its payment hash
//!   equal to the one the macaroon commits to.
//! - Tokens are cached per origin (or per path prefix / path, see
//!   [`TokenScope`]), evicted when the server refuses them, and never sent to
//!   another origin.
//! - Concurrent requests to the same key pay once (single-flight).
//! - Every failure is a typed [`ClientError`] with a stable reason, and every
//!   payment produces a [`Receipt`].
//!
//! The other rails, each behind a default cargo feature: [`x402`] (EIP-3009
//! payments signed locally, with requirement selection, caps and one paid
//! retry that reuses the same signed payload), [`x402_mock`] (EIP-2612 permit
//! → access token) and [`bitreq`] (21 BitRequests: on-chain, bit-transfer and
//! payment channels, with a seed wallet).
//!
//! ```no_run
//! use std::sync::Arc;
//! use pay402_client::{L402Client, ClientError, Paid, TokenScope};
//! use pay402_core::lightning::{LightningPayer, Network};
//! use pay402_core::money::Msat;
//!
//! async fn demo(payer: Arc<dyn LightningPayer>) -> Result<(), ClientError> {
//!     let client = L402Client::builder(payer)
//!         .network(Network::Regtest)
//!         .max_price(Msat(200_000))
//!         .max_fee(Msat(10_000))
//!         .scope(TokenScope::Origin)
//!         .build();
//!     let first: Paid = client.get("http://127.0.0.1:8402/hello").await?;
//!     assert!(first.receipt.is_some());
//!     let second = client.get("http://127.0.0.1:8402/hello").await?;
//!     assert!(second.reused_token && second.receipt.is_none());
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod body;
mod cache;
mod client;
mod error;
pub mod journal;
pub mod mpp;
pub mod payer;
mod redirect;
mod timeouts;

#[cfg(feature = "x402")]
pub mod x402;

#[cfg(feature = "x402-mock")]
pub mod x402_mock;

#[cfg(feature = "bitreq")]
pub mod bitreq;

pub use cache::TokenScope;
pub use client::{
    DEFAULT_MAX_FEE, DEFAULT_MAX_PRICE, DEFAULT_PAYMENT_TIMEOUT, L402Client, L402ClientBuilder,
    Paid, Receipt,
};
pub use error::ClientError;
pub use payer::{
    Candidate, Choice, ChooseFn, EventFn, Payer, PayerBuilder, PayerError, PayerEvent, PayerPaid,
    PayerReceipt, RailReceipt, Refusal, RefusalReason,
};
pub use redirect::{MAX_REDIRECTS, same_origin_redirects};
pub use timeouts::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
