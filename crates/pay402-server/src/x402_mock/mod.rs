//! The x402_mock dialect (the seed project's flow; not wire-compatible with
//! x402 proper): an EIP-2612 permit buys a Bearer access token, and the
//! permit is settled on chain in the background.
//!
//! 1. An unpaid request to a protected route gets **402** with the seed's
//!    JSON body: `access_token_endpoint` and `payment_scheme.payment_components`
//!    (token, chain, amount, EIP-712 domain, `wallet_address` = the spender).
//! 2. The client signs a permit for the spender and `POST`s
//!    `{"version":"Version 0.1","permit":{...}}` to the token endpoint.
//! 3. The endpoint checks, in order: body and version; the component (token
//!    **and** chain); permit type, spender, deadline, signer, value (core);
//!    that the deadline leaves time to settle; `nonces(owner)` on chain
//!    (a used nonce is a replay); `balanceOf(owner)`. It then **queues the
//!    settlement** (atomically: one live job per permit nonce) and only then
//!    issues an HMAC access token bound to payer, resource, amount, token,
//!    chain and expiry, whose `jti` is the permit's EIP-712 digest.
//! 4. The client retries with `Authorization: Bearer <token>`; the layer
//!    checks it in constant time (core) and consults the revocation list.
//! 5. The [`SettlementWorker`] sends `permit()` then `transferFrom()`,
//!    journaling each signed transaction before broadcasting it (with a
//!    spender nonce the store allocates in that same step, so instances
//!    sharing the key and the database never sign one nonce twice), retries
//!    transient failures with backoff, and **revokes the token** when the
//!    settlement fails for good.
//!
//! Refusals are RFC 9457 problem+json with stable reasons
//! ([`MockServerError`], [`QueueError`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use pay402_core::x402::TokenAmount;
//! use pay402_server::x402_mock::*;
//! # async fn run(chain: Arc<dyn pay402_core::x402::mock_chain::PermitSettler>) -> Result<(), Box<dyn std::error::Error>> {
//! let usdc = AcceptedToken::usdc("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse()?, 31337, "anvil");
//! let config = MockConfig::new(zeroize::Zeroizing::new(vec![42; 32])).accept(usdc.clone());
//! let store = Arc::new(SqliteSettlementStore::open("settlements.sqlite").await?);
//! let paywall = MockPaywall::new(config, chain, store)?;
//! let _worker = paywall.spawn_worker();
//! let premium = paywall.protect("/premium", [MockPrice::new(usdc.address, TokenAmount::from_u64(10_000))])?;
//! let app: Router = Router::new()
//!     .route("/premium", get(|MockPaidToken(claims): MockPaidToken| async move {
//!         format!("hello {}", claims.payer)
//!     }).route_layer(premium))
//!     .merge(paywall.token_router());
//! # Ok(()) }
//! ```

mod config;
mod error;
mod paywall;
mod queue;
mod token;
mod worker;

pub use config::{AcceptedToken, MockConfig, MockConfigError, MockPrice, RetryPolicy};
pub use error::MockServerError;
pub use paywall::{MockLayer, MockPaidToken, MockPaywall, MockService};
pub use queue::{
    JournalNext, JournalSlot, MemorySettlementStore, NewSettlement, PostgresSettlementStore,
    QueueError, Settlement, SettlementState, SettlementStore, SignTxWith, SqliteSettlementStore,
    open_store,
};
pub use worker::{SettlementWorker, WorkerHandle};
