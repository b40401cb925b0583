//! # pay402-server
//!
//! axum/tower layers that charge for HTTP requests with `402 Payment
//! Required`, over L402, x402 and 21 BitRequests.
//!
//! ## One paywall for every rail
//!
//! [`paywall::Paywall`] enables any set of rails and yields one tower layer
//! per route: an unpaid request gets one 402 carrying every enabled rail's
//! challenge, a paid request is served by the rail whose proof it carries,
//! and the price is set once, in the unit you pick, converted per rail
//! (exact integers, rounded up). Two rails on one route:
//!
//! ```
//! # use std::sync::Arc;
//! # use axum::{Router, routing::get};
//! # use pay402_core::{lightning::InvoiceIssuer, rates::FixedRates, x402::facilitator::Facilitator};
//! use pay402_server::paywall::{Paid, Paywall, PaywallPrice, X402Asset};
//! # fn app(node: Arc<dyn InvoiceIssuer>, facilitator: Arc<dyn Facilitator>) -> Router {
//! let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
//! let paywall = Paywall::builder()
//!     .l402(node, Arc::new(pay402_server::store::MemoryStore::new()))
//!     .x402(facilitator, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(), usdc)
//!     .rates(Arc::new(FixedRates::new().usd_cents_per_btc(10_000_000)))
//!     .build().unwrap();
//! let report = get(|paid: Paid| async move { format!("paid with {}", paid.rail) });
//! Router::new().route("/report", report.route_layer(paywall.price(PaywallPrice::usd_cents(5))))
//! # }
//! ```
//!
//! See the [`paywall`] module for the 402, the dispatch and the price
//! conversion rules.
//!
//! ## The rails, one layer each
//!
//! The per-rail layers stay available as building blocks (the paywall runs
//! their code). [`L402Layer`]: requests without a valid token get `402
//! Payment Required` with a fresh macaroon and Lightning invoice; requests
//! with a valid `Authorization: L402 <macaroon>:<preimage>` reach your
//! handler.
//!
//! The other rails have their own layers, each behind a default cargo feature:
//! [`x402`] (payment requirements settled through a facilitator, with atomic
//! replay reservation and the payment-identifier extension), [`x402_mock`]
//! (EIP-2612 permit → access token, with a persisted settlement queue) and
//! [`bitreq`] (21 BitRequests: on-chain, a bit-transfer ledger and payment
//! channels). See docs/x402.md and docs/bitrequests.md.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use pay402_server::{L402Config, L402Layer, Price, store::SqliteStore};
//! use pay402_backends::simnet::SimNet;
//! use pay402_core::{lightning::Network, money::Msat};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
//! let store = SqliteStore::open("pay402.sqlite").await?;
//! let paywall = L402Layer::new(L402Config::new("hello-api"), Arc::new(node), Arc::new(store));
//! let app = Router::new().route(
//!     "/hello",
//!     get(|| async { "hello, paid world" }).route_layer(paywall.with_price(Price::sats(100))),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8402").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cache;
pub mod database;
pub mod l402;
pub mod limit;
pub mod mpp;
pub mod paywall;
mod pg_pool;
pub mod respond;
mod rows;
mod sqlite_pool;

/// The L402 root-key store (also at [`l402::store`]); its
/// [`StoreError`](store::StoreError) is shared by every rail's store.
pub use l402::store;

#[cfg(feature = "x402")]
pub mod x402;

#[cfg(feature = "x402-mock")]
pub mod x402_mock;

#[cfg(feature = "bitreq")]
pub mod bitreq;

pub use l402::{
    BoxedResponse, DEFAULT_TOKEN_LIFETIME, KeyCache, L402Config, L402Future, L402Layer,
    L402Service, PaidToken, Price, PriceFuture, PriceRequest, RejectMode, normalize_path,
};
