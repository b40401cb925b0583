//! [`Paywall`]: one paywall for every rail.
//!
//! Enable any set of rails — L402, MPP (the `Payment` scheme), x402, 21
//! BitRequests — on one
//! [`Paywall`], price each route once, and put the [`PaywallLayer`] it
//! yields in front of the route:
//!
//! - **One 402.** An unpaid request gets one `402 Payment Required`
//!   carrying the challenge of every rail the route is priced on, each made
//!   by its rail's own code, so each rail's client sees exactly what it
//!   sees from that rail's layer: `WWW-Authenticate: L402 …` (and `LSAT`
//!   when the L402 configuration emits it), then `WWW-Authenticate:
//!   Payment …` (MPP, one per method), `PAYMENT-REQUIRED` (x402 v2),
//!   the two1 headers (`Price`, `Bitcoin-Address`, `Username`,
//!   `Bitcoin-Payment-Channel-Server`), and a problem+json body that is also
//!   the x402 v1 offer (`x402Version`, `accepts`). It has
//!   `Cache-Control: no-store`, `Vary` on every enabled rail's credential
//!   headers and `Access-Control-Expose-Headers` naming every challenge
//!   header. A rail that cannot make its challenge (its challenge rate limit
//!   refuses the client, its node is down) is left out, and the others are
//!   still offered.
//! - **Dispatch by proof.** A request carrying a proof is served by the
//!   proof's rail, with everything that rail's layer guarantees (it is the
//!   same code): L402's cached-key fast path, x402's reservation in the
//!   store and settle-after that never releases an unpaid body, BitRequests'
//!   replay rows and ledger updates in the database, each rail's rate
//!   limits and paid-response caching. A refused proof gets its rail's own
//!   refusal. Proofs of two rails in one request are refused with 400
//!   `multiple_payment_proofs` before anything is verified or paid.
//! - **One price.** A route's price is one [`Amount`](pay402_core::rates::Amount)
//!   in the unit the operator picks (sats, US cents, token base units),
//!   converted to each rail's unit through the paywall's
//!   [`Rates`](pay402_core::rates::Rates), rounded up (see [`price`] for the
//!   exact rules); or prices given per rail ([`RailPrices`]); or a charge
//!   computed per request by an async function ([`PaywallPrice::dynamic`]).
//! - **One extractor.** [`Paid`] tells the handler which rail paid, how
//!   much, who (where known) and the receipt id; the rail's own extractor
//!   (`PaidToken`, `X402Payment`, `BitreqPayment`) works too.
//!
//! ```text
//! request ─▶ free path (L402 config)? ─▶ handler
//!         ─▶ L402 fast path: fixed price, cached key, no other proof ─▶ handler (no allocation)
//!         ─▶ proofs of 2+ rails ─▶ 400 multiple_payment_proofs
//!         ─▶ (L402 binding: buffer body) ─▶ price (fixed or computed) ── free ─▶ handler
//!         ─▶ convert per rail (Rates, rounded up) ── no rail ─▶ 500, never free
//!         ─▶ L402 proof ─▶ L402 verify ─▶ handler │ refused ─▶ L402's answer
//!         ─▶ x402 proof ─▶ x402 intake, reserve, verify, handler, settle │ refused ─▶ x402's answer
//!         ─▶ BitRequests proof ─▶ redeem by method ─▶ handler │ refused ─▶ BitRequests' answer
//!         ─▶ MPP credential ─▶ verify, consume (store) ─▶ handler + Payment-Receipt │ refused ─▶ see crate::mpp
//!         ─▶ none ─▶ 402: every priced rail's challenge (made concurrently)
//! ```
//!
//! Two rails on one route (L402 and x402, priced in US cents):
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use pay402_core::lightning::InvoiceIssuer;
//! use pay402_core::rates::FixedRates;
//! use pay402_core::x402::facilitator::Facilitator;
//! use pay402_server::paywall::{Paid, Paywall, PaywallPrice, X402Asset};
//! use pay402_server::store::MemoryStore;
//!
//! fn app(node: Arc<dyn InvoiceIssuer>, facilitator: Arc<dyn Facilitator>) -> Router {
//!     let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
//!     let paywall = Paywall::builder()
//!         .l402(node, Arc::new(MemoryStore::new()))
//!         .x402(facilitator, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(), usdc)
//!         .rates(Arc::new(FixedRates::new().usd_cents_per_btc(10_000_000))) // 100 000 USD/BTC
//!         .build()
//!         .unwrap();
//!     let report = get(|paid: Paid| async move { format!("paid {} by {}", paid.amount, paid.rail) });
//!     Router::new().route("/report", report.route_layer(paywall.price(PaywallPrice::usd_cents(5))))
//! }
//! ```
//!
//! (msat ↔ sat is fixed and USDC, declared a USD stablecoin by
//! [`X402Asset::usdc`], is worth one dollar per token: the rates only need
//! the bitcoin price.)
//!
//! Each rail is one implementation of the crate-internal rail interface
//! (`paywall/rail.rs`), in the rail's own folder; see docs/ARCHITECTURE.md.
//!
//! Not included: the x402_mock dialect. Its challenge is a JSON body of
//! its own and its proof an access token bought at a separate endpoint for
//! a resource registered with fixed prices; it keeps its own
//! [`MockPaywall`](crate::x402_mock::MockPaywall).

mod builder;
mod challenge;
mod error;
mod layer;
mod paid;
pub mod price;
pub(crate) mod proof;
pub(crate) mod rail;

#[cfg(feature = "x402")]
pub use builder::X402Asset;
pub use builder::{DEFAULT_L402_SERVICE, Paywall, PaywallBuilder};
pub use error::{BuildError, PaywallError};
pub use layer::{PaywallFuture, PaywallLayer, PaywallService};
pub use paid::{Paid, Receipt};
pub use price::{Charge, ChargeFuture, PaywallPrice, RailPrices};
