//! x402 client: pays HTTP 402 offers (v2 `PAYMENT-REQUIRED`, v1 JSON bodies)
//! with EIP-3009 `exact` payments signed by a local key or any
//! [`PaymentSigner`].
//!
//! - [`X402Client`] wraps reqwest: on a 402 it reads the offer, picks a
//!   requirement within the spending policy ([`Selection`], allowed assets
//!   with a cap per payment, allowed networks and recipients, budgets),
//!   signs one payment, and retries once with it. A retry of the same request
//!   (after a dropped connection or a `settlement_pending` answer) sends the
//!   **same** signed payment, never a fresh nonce.
//! - [`LocalSigner`] holds a private key in memory (alloy's
//!   `PrivateKeySigner`), zeroized on drop and never logged.
//! - Every failure is an [`X402Error`] with a stable reason; a successful
//!   payment yields an [`X402Receipt`] with the decoded `PAYMENT-RESPONSE`.
//!
//! Parsing, hashing and verification come from `pay402_core::x402`; this
//! module only binds them to HTTP and a signer.
//!
//! ```no_run
//! use std::sync::Arc;
//! use pay402_client::x402::{LocalSigner, Selection, X402Client, X402Error};
//! use pay402_core::x402::TokenAmount;
//!
//! async fn demo(key_hex: &str) -> Result<(), Box<dyn std::error::Error>> {
//!     let signer = Arc::new(LocalSigner::from_hex(key_hex)?);
//!     let usdc = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse()?;
//!     let client = X402Client::builder(signer)
//!         .allow_asset("eip155:31337", usdc, TokenAmount::from_u64(10_000))
//!         .selection(Selection::Cheapest)
//!         .build();
//!     match client.get("http://127.0.0.1:8402/paid").await {
//!         Ok(paid) => println!("{} {:?}", paid.status(), paid.receipt.as_ref().and_then(|r| r.transaction())),
//!         Err(e) if e.may_have_paid() => eprintln!("check nonce {:?} on chain: {e}", e.payment().map(|p| p.nonce)),
//!         Err(e) => eprintln!("nothing paid: {e}"),
//!     }
//!     Ok(())
//! }
//! ```

pub(crate) mod client;
mod error;
pub(crate) mod offer;
mod payment;
mod policy;
mod receipt;
mod signer;

pub use client::{
    DEFAULT_MAX_RESENDS, DEFAULT_MAX_RETRY_AFTER, DEFAULT_RESEND_DELAY, X402Client,
    X402ClientBuilder,
};
pub use error::X402Error;
pub use offer::{MAX_BODY_BYTES, MAX_OFFERS, Offer};
pub use payment::{PaymentDetails, SignedPayment, V1_VALID_AFTER_SKEW_SECS};
pub use policy::{AssetAllowance, DEFAULT_MAX_PER_PAYMENT, KNOWN_ASSETS, Selection};
pub use receipt::{X402Paid, X402Receipt};
pub use signer::{LocalSigner, PaymentSigner, SignerError};
