//! The x402_mock dialect client (the seed project's flow, not wire-compatible
//! with x402 proper): an EIP-2612 permit buys a Bearer access token.
//!
//! On a 402 whose JSON body is an x402_mock offer, [`MockClient`]:
//!
//! 1. picks the first component that matches an accepted token **and
//!    chain** within its per-payment cap ([`MockAccept`]; the seed matched by
//!    token address only);
//! 2. reads `nonces(owner)` through a [`PermitReader`] and signs a permit
//!    for exactly the price (not more), valid [`DEFAULT_PERMIT_VALIDITY`],
//!    with any [`PaymentSigner`](crate::x402::PaymentSigner) (e.g.
//!    [`LocalSigner`](crate::x402::LocalSigner)); the signature is checked to
//!    recover to the signer before it is sent;
//! 3. POSTs it to `access_token_endpoint`, only if that is on the
//!    resource's origin; on `permit_nonce_pending` (an earlier permit of the
//!    same payer is still settling) it waits for the on-chain nonce to move
//!    and signs again;
//! 4. caches the token per origin and path until it expires, and retries
//!    the request once with `Authorization: Bearer <token>` (marked
//!    sensitive).
//!
//! [`PermitReader`]: pay402_core::x402::mock_chain::PermitReader
//!
//! ```no_run
//! use std::sync::Arc;
//! use pay402_client::x402::LocalSigner;
//! use pay402_client::x402_mock::{MockClient, MockClientError};
//! use pay402_core::x402::TokenAmount;
//! # async fn f(chain: Arc<dyn pay402_core::x402::mock_chain::PermitReader>) -> Result<(), Box<dyn std::error::Error>> {
//! let signer = Arc::new(LocalSigner::from_hex(&std::env::var("EVM_PRIVATE_KEY")?)?);
//! let client = MockClient::builder(signer, chain)
//!     .accept(31337, "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse()?, TokenAmount::from_u64(10_000))
//!     .build();
//! match client.get("http://127.0.0.1:8402/premium").await {
//!     Ok(paid) => println!("{}", paid.response.text().await?),
//!     Err(e) if e.may_have_paid() => eprintln!("permit may settle: {:?}", e.receipt()),
//!     Err(e) => eprintln!("nothing paid: {e}"),
//! }
//! # Ok(()) }
//! ```

pub(crate) mod client;
mod error;

pub use client::{
    DEFAULT_NONCE_WAIT, DEFAULT_PERMIT_VALIDITY, MAX_MOCK_BODY_BYTES, MockAccept, MockClient,
    MockClientBuilder, MockPaid, MockReceipt,
};
pub use error::MockClientError;
