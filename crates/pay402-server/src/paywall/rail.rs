//! The rail interface of a [`Paywall`](super::Paywall): what each rail
//! contributes to the one 402, how it recognises its own proof, and how it
//! verifies, consumes and serves a paid request.
//!
//! Each rail implements [`PaywallRail`] in its own folder
//! (`l402/paywall_rail.rs`, `x402/paywall_rail.rs`,
//! `bitreq/paywall_rail.rs`, `mpp/paywall_rail.rs`); the paywall holds them
//! as trait objects in offer order and knows nothing else of them:
//!
//! - the 402 asks every rail priced on the request for its
//!   [`ChallengePart`] (concurrently), and joins their headers and bodies;
//! - a request is dispatched to the one rail whose [`PaywallRail::has_proof`]
//!   sees its proof (two rails: 400 `multiple_payment_proofs`);
//! - that rail's [`PaywallRail::serve`] verifies, consumes, calls the
//!   handler and finishes the response (or refuses, with its own answer).
//!
//! Adding a rail is one more implementation and one builder method.
//! The L402 fast path (cached key, no allocation) stays in the layer: it
//! runs before any dispatch and only asks the other rails whether their
//! proof is present.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, Request};
use pay402_core::offer::Rail;
use pay402_core::problem::Problem;
use pay402_core::time::UnixTime;

use super::layer::PaywallLayer;
pub(crate) use super::layer::Pending;
use super::price::RailPrices;

/// A boxed, sendable future borrowing for `'a`.
pub(crate) type RailFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The handler behind the paywall, as a rail sees it.
pub(crate) type Next = tower::util::BoxService<Request<Body>, Response, Infallible>;

/// A rail's part of the 402, or why it has none.
pub(crate) enum Part {
    /// Offered, with the problem its own layer would answer.
    On(Rail, Problem),
    /// Could not be offered: the rail's own answer (its 429, its 503).
    Failed(Response),
}

/// Adds a rail's members to the 402's JSON body (the x402 v1 offer).
pub(crate) type BodyHook<'a> = Box<dyn FnOnce(&mut serde_json::Value) + Send + 'a>;

/// What one rail adds to the 402.
pub(crate) struct ChallengePart<'a> {
    /// Its challenge headers (appended in rail order, so several
    /// `WWW-Authenticate` lines keep the paywall's order).
    pub(crate) headers: HeaderMap,
    /// Offered, or failed.
    pub(crate) part: Part,
    /// Its members of the JSON body, if any.
    pub(crate) body: Option<BodyHook<'a>>,
}

impl ChallengePart<'_> {
    /// A part that could not be offered.
    pub(crate) fn failed(resp: Response) -> ChallengePart<'static> {
        ChallengePart {
            headers: HeaderMap::new(),
            part: Part::Failed(resp),
            body: None,
        }
    }
}

/// The request a 402 is made for.
pub(crate) struct Unpaid<'a> {
    /// The route.
    pub(crate) layer: &'a PaywallLayer,
    /// Its price on each rail.
    pub(crate) prices: &'a RailPrices,
    /// The request.
    pub(crate) parts: &'a Parts,
    /// Its body, when the L402 configuration binds tokens to requests.
    pub(crate) body: Option<&'a [u8]>,
    /// Now.
    pub(crate) now: UnixTime,
}

/// One rail of a paywall, server side.
pub(crate) trait PaywallRail: Send + Sync + 'static {
    /// Which rail.
    fn rail(&self) -> Rail;

    /// The request headers its proof arrives in (for `Vary`).
    fn credentials(&self) -> &'static [&'static str];

    /// The response headers a browser client must read (for
    /// `Access-Control-Expose-Headers`), comma-separated.
    fn expose(&self) -> &'static str;

    /// Whether `headers` carry this rail's proof (by the headers alone:
    /// nothing is decoded; the rail parses its proof in [`Self::serve`]).
    fn has_proof(&self, headers: &HeaderMap) -> bool;

    /// Whether the request is priced on this rail.
    fn is_priced(&self, prices: &RailPrices) -> bool;

    /// Its part of the 402 (`None`: not priced on this request).
    fn challenge<'a>(&'a self, cx: &'a Unpaid<'a>) -> RailFuture<'a, Option<ChallengePart<'a>>>;

    /// Verifies and consumes the proof, serves the request through `next`
    /// and finishes the response; or refuses with the rail's own answer.
    fn serve<'a>(&'a self, req: Pending<'a>, next: Next) -> RailFuture<'a, Response>;
}
