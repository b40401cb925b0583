//! The x402 paywall: a tower layer that answers unpaid requests with `402`
//! and the route's payment requirements, and serves paid ones once their
//! EIP-3009 transfer has settled through a [`Facilitator`].
//!
//! # The request path
//!
//! ```text
//! request ─▶ offers (fixed, or computed from the request; none = free ─▶ handler)
//!   no PAYMENT-SIGNATURE / X-PAYMENT ─▶ 402: PAYMENT-REQUIRED header (v2) + problem+json
//!                                        body that is also the v1 offer (x402Version: 1)
//!   decode (borrowed fast path) ─▶ match the `accepted` echo to an offer ─▶ local
//!   `exact` checks (reference order and reasons) ── bad ─▶ 400 / 402 + offer again
//!   reserve the nonce key (atomic, in the store) ── held / spent / conflict ─▶ 409 / 402
//!   facilitator verify (optional) ── invalid ─▶ release, 402 with its reason
//!   settle-after (default): handler ─▶ >= 400 or gRPC status != 0 (headers): release, pass on, no charge
//!                           buffer body + trailers (bounded) ─▶ gRPC status != 0 (trailers): same
//!                                                          ─▶ settle ─▶ ok: serve + PAYMENT-RESPONSE
//!                                                          └▶ failed: release, 402 + PAYMENT-RESPONSE, body dropped
//!                                                          └▶ pending/unknown: record pending (with the
//!                                                             response), 202/503 + Retry-After, body withheld
//!   settle-before: settle ─▶ ok: handler ─▶ serve + PAYMENT-RESPONSE (streamed)
//! ```
//!
//! # Guarantees
//!
//! - **Never released unpaid.** A handler's body reaches the client only
//!   after the facilitator reported `success` with a transaction. A failed
//!   settlement answers 402 and drops the body; a pending or unknown one
//!   withholds it.
//! - **Served once per payment.** The payment's nonce key
//!   `(network, asset, from, nonce)` is reserved in the [`store`] before
//!   the handler runs, in one atomic store operation; the same payload sent
//!   many times at once runs the handler and settles once, the other copies
//!   get 409 `payment_in_progress`. Once settled, the nonce is refused with
//!   `invalid_exact_evm_nonce_already_used`.
//! - **Never lost.** When the facilitator reports the settlement pending
//!   ([`FacilitatorError::Pending`]), or cannot be reached or answers
//!   nonsense during settlement (it may have sent the transaction), the
//!   payment is recorded `pending` together with the handler's response, and
//!   the client gets 202 `settlement_pending` (or 503 `settlement_unknown`)
//!   with `Retry-After`. The same payload coming back settles again (the
//!   local facilitator's settle is idempotent: it answers with the original
//!   transaction once mined) and is served the recorded response, without
//!   running the handler a second time. Pending records (with the
//!   facilitator request) can be listed for reconciliation with
//!   [`store::PaymentStore::list`].
//! - **Not charged for errors.** With settle-after, a handler answer >= 400,
//!   or a gRPC answer (`application/grpc*`) whose `grpc-status` (in its
//!   headers or its trailers) is not 0, is passed on without settling and
//!   the payment stays usable. The buffered body keeps its trailers and
//!   sends them after the data once settled. With
//!   settle-before the payer is charged first (use it for streaming or
//!   large responses).
//! - **Fail closed.** An unreachable facilitator during verify answers 503
//!   and releases the payment; nothing is served.
//! - **Client faults are 4xx.** Malformed headers (400
//!   `invalid_payload`, 431 when oversize), unknown offers, bad signatures,
//!   wrong recipient, expired or not-yet-valid authorizations, wrong amounts
//!   (402 with the reference reason and the offer again); never a 5xx, never
//!   a panic.
//!
//! # payment-identifier
//!
//! With the extension on (the default: optional), the 402 declares it; a
//! payment carrying `extensions["payment-identifier"].info.id` (16-128
//! characters of `[A-Za-z0-9_-]`) has its response kept: the same id with
//! the same payment gets the kept response again (status, content type,
//! body, `PAYMENT-RESPONSE`), the same id with another payment gets 409
//! `payment_identifier_conflict`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use pay402_core::x402::TokenAmount;
//! use pay402_server::x402::{X402Config, X402Layer, X402Payment, X402Route, exact_offer};
//! use pay402_server::x402::store::SqlitePaymentStore;
//!
//! # async fn run(facilitator: Arc<dyn pay402_core::x402::facilitator::Facilitator>) -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqlitePaymentStore::open("payments.sqlite").await?;
//! let paywall = X402Layer::new(X402Config::new(), facilitator, Arc::new(store));
//! let offer = exact_offer("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
//!     "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", TokenAmount::from_u64(10_000), "USD Coin", "2");
//! let app = Router::new().route(
//!     "/report",
//!     get(|p: X402Payment| async move { format!("report for {}", p.payer) })
//!         .route_layer(paywall.with_route(X402Route::new([offer])?.mime_type("text/plain"))),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8402").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! [`Facilitator`]: pay402_core::x402::facilitator::Facilitator
//! [`FacilitatorError::Pending`]: pay402_core::x402::facilitator::FacilitatorError::Pending

mod body;
mod config;
mod error;
mod extract;
mod intake;
mod layer;
pub(crate) mod paywall_rail;
mod respond;
mod route;
pub mod settlements;
pub mod store;
mod unserved;

pub(crate) use intake::OfferSet;
pub(crate) use respond::{
    EXPOSE, PAYMENT_REQUIRED, add_v1_offer, payment_required_value, unpaid_problem,
};

pub use config::{Clock, PaymentIdentifierMode, SettleTiming, X402Config};
pub use error::{Mismatch, X402Error};
pub use extract::X402Payment;
pub use layer::{X402Layer, X402Service};
pub use route::{OfferError, Offers, OffersFuture, X402Route, check_offer, exact_offer};
