//! # pay402-backends
//!
//! Backends for pay402: Lightning nodes, Bitcoin chain RPC and x402
//! facilitators. The Lightning backends Each backend implements the ports defined
//! in [`pay402_core::lightning`]: [`InvoiceIssuer`](pay402_core::lightning::InvoiceIssuer)
//! for servers that charge, and [`LightningPayer`](pay402_core::lightning::LightningPayer)
//! for clients that pay.
//!
//! | Module | Feature | What it is |
//! |---|---|---|
//! | `simnet` | `simnet` (default) | An in-process Lightning network simulator with real signed BOLT11 invoices. |
//! | `simnet::rest` | `simnet-rest` (default) | An LND-compatible REST face for one simnet node (axum). |
//! | `lnd` | `lnd` (default) | An LND REST client with certificate pinning. |
//! | `cln` | `cln` (default) | Core Lightning over its `lightning-rpc` unix socket or clnrest. |
//! | `lnbits` | `lnbits` (default) | An LNbits client (invoice and admin keys). |
//! | `ldk` | `ldk` (default) | An embedded Lightning node (ldk-node): no separate daemon. |
//! | `bitcoind` | `bitcoind` (default) | Bitcoin Core JSON-RPC chain backend ([`BitcoinChain`](pay402_core::chain::BitcoinChain)), also for bcoin. |
//! | `esplora` | `esplora` (default) | Esplora REST chain backend (Blockstream, mempool.space, electrs). |
//! | `x402` | `x402` (default) | x402 facilitators ([`Facilitator`](pay402_core::x402::Facilitator)): local on alloy, remote over HTTP, and an axum router serving `/verify`, `/settle`, `/supported`. |
//! | `x402_mock` | `x402-mock` (default) | The x402_mock dialect's chain side: permit reads and `permit()` + `transferFrom()` settlement on alloy. |
//!
//! ```
//! # #[cfg(feature = "simnet")]
//! # async fn demo() {
//! use pay402_backends::simnet::SimNet;
//! use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, LightningPayer, Network, PayRequest};
//! use pay402_core::money::Msat;
//!
//! let net = SimNet::new(Network::Regtest);
//! let merchant = net.add_node("merchant", Msat(0));
//! let payer = net.add_node("payer", Msat(1_000_000));
//! let inv = merchant.create_invoice(&InvoiceRequest::new(Msat(1_000), "coffee")).await.unwrap();
//! let paid = payer.pay_invoice(&PayRequest::new(inv.bolt11, Msat(0))).await.unwrap();
//! assert!(paid.preimage.matches(&inv.payment_hash));
//! assert_eq!(merchant.balance(), Msat(1_000));
//! # }
//! # #[cfg(feature = "simnet")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo());
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod util;

#[cfg(any(feature = "lnd", feature = "simnet-rest"))]
mod wire;

#[cfg(feature = "simnet")]
pub mod simnet;

#[cfg(any(feature = "lnd", feature = "cln"))]
mod tls;

#[cfg(feature = "lnd")]
pub mod lnd;

#[cfg(feature = "cln")]
pub mod cln;

#[cfg(feature = "lnbits")]
pub mod lnbits;

#[cfg(feature = "ldk")]
pub mod ldk;

#[cfg(feature = "bitcoind")]
pub mod bitcoind;

#[cfg(feature = "esplora")]
pub mod esplora;

#[cfg(any(feature = "x402", feature = "x402-mock"))]
pub mod evm_rpc;

#[cfg(feature = "x402")]
pub mod x402;

#[cfg(feature = "x402-mock")]
pub mod x402_mock;
