//! The 21 BitRequests server: one paid route offers on-chain payment,
//! bit-transfers on a ledger the merchant keeps, and payment channels
//! (protocol v2), and the method is picked by which proof header arrives.
//!
//! - [`BitreqServer`]: the merchant (configuration, chain backend, store);
//! - [`BitreqLayer`] ([`BitreqServer::layer`]): the paywall on routes;
//! - [`BitreqServer::channel_router`]: `GET/POST <path>`, `GET/PUT/DELETE <path>/<deposit_txid>`;
//! - [`BitreqServer::ledger_router`]: the operator API of the transfer ledger;
//! - [`BitreqServer::spawn_sync`]: closes channels before their expiry;
//! - [`store`]: SQLite (default) and memory stores, atomic by SQL constraints.
//!
//! What pay402 does better than two1 (see docs/bitrequests.md): a fresh
//! address per 402 bound to the price and resource, replay protection and
//! credit updates in the database (not a process lock), fee-rate and RBF
//! checks with segwit parsing, tokens burned only when they pay enough,
//! structured errors with distinct statuses.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
//! use pay402_server::Price;
//! use pay402_server::bitreq::store::SqliteBitreqStore;
//! use pay402_server::bitreq::{BitreqConfig, BitreqPayment, BitreqServer, TransferConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = BitreqServer::new(
//!     BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop")),
//!     Arc::new(BitcoindRpc::new(BitcoindConfig::from_env()?)?),
//!     Arc::new(SqliteBitreqStore::open("bitreq.sqlite").await?),
//! )?;
//! let app: Router = Router::new().route(
//!     "/hello",
//!     get(|paid: BitreqPayment| async move { format!("paid {} sat", paid.amount.0) })
//!         .route_layer(server.layer(Price::sats(3_000))),
//! );
//! # let _ = app;
//! # Ok(()) }
//! ```

mod channel;
mod config;
mod error;
mod layer;
pub mod ledger;
mod onchain;
mod paywall_rail;
mod server;
pub mod store;
mod sync;
mod transfer;

/// The `bitcoin` crate this module's types come from.
pub use bitcoin;

pub use config::{
    AddressKind, AddressSource, BitreqConfig, ChannelConfig, ConfigError, MerchantKey,
    OnChainConfig, TransferConfig, derived_script,
};
pub use error::BitreqServerError;
pub use layer::{BitreqLayer, BitreqPayment, BitreqService, PaymentMethod};
pub(crate) use layer::{EXPOSE, offer_unusable};
pub use server::BitreqServer;
pub use sync::SyncReport;
