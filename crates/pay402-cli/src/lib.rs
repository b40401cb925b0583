//! # pay402-cli
//!
//! The `pay402` binary: `pay402 proxy` puts a paywall (L402, x402, 21
//! BitRequests) in front of any HTTP or gRPC service, configured in TOML or
//! read from Aperture's YAML (see docs/cli.md); `pay402 init` writes a
//! commented example configuration; `pay402 fetch URL` is curl that pays
//! (L402, x402, BitRequests) through `pay402_client::Payer`; `pay402 dev`
//! runs an example of both on embedded peers.
//!
//! This library holds the binary's parts so that they can be tested and
//! documented; nothing else should depend on it.
//!
//! # The paywall seam
//!
//! The proxy reaches payments through one type only:
//! [`paywall::ServicePaywall`], "the paywall layer for a service": one
//! `pay402_server::Paywall` per service, offering the service's rails in one
//! 402 and dispatching a paid request by its proof. Adding a rail to the
//! proxy is a change in that module only; the router, the upstream
//! forwarding and the operations endpoints do not know the rails.
//!
//! ```
//! let text = pay402_cli::init::EXAMPLE;
//! let config = pay402_cli::config::Config::parse("pay402.toml", text).unwrap();
//! assert!(!config.services.is_empty());
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod aperture;
pub mod bitreq;
pub mod check;
pub mod config;
pub mod dev;
pub mod facilitator;
pub mod facilitator_metrics;
pub mod fetch;
pub mod init;
pub mod metrics;
pub mod nochain;
mod ops;
pub mod paywall;
pub mod pricer;
pub mod proxy;
pub mod run;
pub mod tls;
pub mod upstream;
