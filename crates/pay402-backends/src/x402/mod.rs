//! x402 facilitators (feature `x402`): who verifies `exact` EVM payments
//! against the chain and settles them.
//!
//! - [`LocalFacilitator`]: this process is the facilitator. It checks
//!   payments with pay402-core's verification plus on-chain checks and a
//!   simulation, and settles EIP-3009 `transferWithAuthorization` with its
//!   own accounts over alloy (nonce manager, bounded receipt waits that
//!   report `Pending` instead of failing, idempotent settle, reconciliation).
//!   Its in-flight settlements and transaction nonces live in a
//!   [`SettlementStore`](pay402_core::x402::settlements::SettlementStore)
//!   ([`LocalFacilitatorBuilder::settlement_store`]): with one database,
//!   several facilitator processes share one key safely, and
//!   [`LocalFacilitator::reconcile`] finishes what a crash left.
//! - [`RemoteFacilitator`]: an HTTP client for another facilitator's
//!   `/verify`, `/settle` and `/supported` (timeouts, auth headers, a cached
//!   `/supported`, no redirects, https only, strict answers).
//! - [`router`]: an axum router serving `POST /verify`, `POST /settle` and
//!   `GET /supported` over any [`Facilitator`](pay402_core::x402::Facilitator),
//!   usable by the official SDKs' `HTTPFacilitatorClient`, authenticated
//!   ([`RouterAuth`]) and rate limited ([`RateLimit`]).
//!
//! The local facilitator settles only allowlisted assets
//! ([`LocalFacilitatorBuilder::allow_asset`], required), optionally only to
//! allowlisted payees, within a gas ceiling, a fee ceiling and a gas budget
//! per period, and never more settlements of one payer than the payer's
//! balance covers.
//! - [`crate::evm_rpc`]: the alloy JSON-RPC transport over reqwest 0.12 they use.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use alloy::primitives::address;
//! use pay402_backends::x402::{LocalFacilitator, RouterAuth, router};
//!
//! let facilitator = LocalFacilitator::builder("http://127.0.0.1:8545")
//!     .signer("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
//!     .allow_asset(address!("e7f1725E7734CE288F8367e1Bb143E90bb3F0512"), "USD Coin", "2")
//!     .build()
//!     .await?;
//! // Never serve the router without authentication.
//! let app = router(Arc::new(facilitator), RouterAuth::bearer([std::env::var("FACILITATOR_TOKEN")?])?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4021").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```

mod builder;
mod chain;
mod contract;
mod key;
pub mod local;
mod policy;
pub mod reconcile;
pub mod remote;
pub mod server;

pub use builder::{LocalFacilitatorBuilder, LocalFacilitatorError};
pub use key::{FacilitatorKey, InvalidKey};
pub use local::{
    DEFAULT_LOG_CHUNK_BLOCKS, DEFAULT_LOG_LOOKBACK_BLOCKS, DEFAULT_RECEIPT_TIMEOUT,
    DEFAULT_RPC_TIMEOUT, INSUFFICIENT_FUNDS, LocalFacilitator, TRANSACTION_FAILED,
    TransactionStatus, reasons,
};
pub use policy::{
    AllowedAsset, DEFAULT_GAS_BUDGET, DEFAULT_GAS_BUDGET_PERIOD, DEFAULT_MAX_FEE_PER_GAS_WEI,
    DEFAULT_MAX_GAS_PER_SETTLEMENT, MAX_LOG_QUERIES_PER_LOOKUP,
};
pub use reconcile::{NonceGap, ReconcileReport, Reconciled, ReconciledSettlement};
pub use remote::{
    AuthHeaders, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_SUPPORTED_TTL,
    DEFAULT_TIMEOUT as DEFAULT_REMOTE_TIMEOUT, Endpoint, RemoteConfigError, RemoteFacilitator,
    RemoteFacilitatorBuilder,
};
pub use server::{
    DEFAULT_CLIENT_RATE_LIMIT, DEFAULT_MAX_BODY_BYTES, DEFAULT_PAYER_RATE_LIMIT,
    MIN_ROUTER_KEY_LEN, RateLimit, RouterAuth, RouterAuthError, RouterConfig, SETTLEMENT_PENDING,
    router, router_with,
};
