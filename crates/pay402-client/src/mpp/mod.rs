//! MPP (the `Payment` HTTP authentication scheme) as a means of the
//! [`Payer`](crate::Payer): `lightning`/`charge` paid with a Lightning node,
//! `evm`/`charge` signed with an EVM signer (EIP-3009, nonce = the challenge
//! hash).
//!
//! An [`MppClient`] is configured with [`MppClient::builder`] and handed to
//! [`PayerBuilder::mpp`](crate::PayerBuilder::mpp). The payer then:
//!
//! - advertises `Accept-Payment` (the configured methods, with their
//!   weights) on every request, and never pays a challenge whose
//!   `method/intent` it weighs `q=0`; among equally cheap offers it prefers
//!   the higher weight;
//! - before paying a Lightning charge decodes the BOLT11 invoice (signature,
//!   network, payment hash) and budgets on **its** amount, refusing a
//!   declared `amount` that differs ([`lightning::OfferError::AmountMismatch`]:
//!   nothing is paid); refuses a challenge past `expires` or past the
//!   invoice's expiry, or for another network;
//! - before signing an EVM charge checks the chain, the token (one it was
//!   given, with its EIP-712 domain) and the amount against the token's cap;
//! - echoes every challenge parameter unchanged in the credential, sends it
//!   in the field the challenge names (`Authorization` by default), and never
//!   caches it (charge credentials are single use);
//! - treats a 5xx to the paid request as **outcome unknown**: the journal
//!   entry stays open with the status and `payment_outcome_unknown`, and the
//!   same request later presents the same credential again, never a second
//!   payment;
//! - parses the `Payment-Receipt` of the paid answer ([`MppReceipt`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use pay402_client::Payer;
//! use pay402_client::mpp::{MppClient, MppToken};
//! use pay402_client::x402::LocalSigner;
//! use pay402_core::lightning::{LightningPayer, Network};
//! use pay402_core::x402::TokenAmount;
//!
//! async fn demo(node: Arc<dyn LightningPayer>, key: &str) -> Result<(), pay402_client::PayerError> {
//!     let usdc = MppToken::new(8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap(), 6, "USD Coin", "2")
//!         .max(TokenAmount::from_u64(1_000_000));
//!     let mpp = MppClient::builder()
//!         .lightning(node, Network::Bitcoin)
//!         .evm(Arc::new(LocalSigner::from_hex(key).expect("key")), usdc);
//!     let payer = Payer::builder().mpp(mpp).build().await?;
//!     let paid = payer.get("https://api.example.com/report").await?;
//!     if let Some(pay402_client::RailReceipt::Mpp(r)) = paid.receipt.as_ref().and_then(|r| r.rail_receipt.as_ref()) {
//!         println!("paid {} ({:?})", r.challenge_id, r.receipt.as_ref().map(|x| &x.reference));
//!     }
//!     Ok(())
//! }
//! ```

pub(crate) mod client;
mod error;

#[cfg(feature = "x402")]
pub use client::MppToken;
pub use client::{MppClient, MppClientBuilder, MppReceipt};
pub use error::MppError;
pub use pay402_core::mpp::methods::{evm, lightning};
