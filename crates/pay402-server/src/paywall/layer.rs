//! [`PaywallLayer`]: one route's price in front of its handler; dispatch by
//! the proof that arrives.

use std::convert::Infallible;
use std::future::Future;
#[cfg(feature = "x402")]
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use futures_util::FutureExt;
use futures_util::future::{Either, Map};
use http::request::Parts;
use http::{HeaderValue, Request, header};
use pay402_core::money::Msat;
use pay402_core::offer::Rail;
use pay402_core::problem::{Problem, Reason};
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::{Instrument, field};

use super::builder::{Paywall, credentials_of};
use super::challenge;
use super::error::PaywallError;
use super::paid::{Paid, Receipt};
use super::price::{Charge, PaywallPrice, RailPrices};
use super::proof;
use super::rail::Next;
use crate::cache::{FinishResponse, PaidCaching};
use crate::l402::L402Layer;
use crate::{BoxedResponse, PriceRequest, respond};

/// A tower [`Layer`] charging one route's price on every enabled rail of a
/// [`Paywall`]; made by [`Paywall::price`]. Clone it freely.
///
/// ```
/// # use std::sync::Arc;
/// # use pay402_backends::simnet::SimNet;
/// # use pay402_core::{lightning::Network, money::Msat};
/// use axum::{Router, routing::get};
/// use pay402_server::paywall::{Paywall, PaywallPrice};
/// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
/// let paywall = Paywall::builder().l402(node, Arc::new(pay402_server::store::MemoryStore::new())).build().unwrap();
/// let app: Router = Router::new()
///     .route("/cheap", get(|| async { "cheap" }).route_layer(paywall.price(PaywallPrice::sats(1))))
///     .route("/dear", get(|| async { "dear" }).route_layer(paywall.price(PaywallPrice::sats(1_000)).scope("dear")));
/// ```
#[derive(Clone)]
pub struct PaywallLayer {
    pub(crate) paywall: Paywall,
    price: PaywallPrice,
    /// The L402 rail with this route's scope and capability.
    pub(crate) l402: Option<L402Layer>,
    /// What the x402 offer says of the resource.
    #[cfg(feature = "x402")]
    x402_route: Arc<crate::x402::X402Route>,
    /// Finishes a paid response on the L402 fast path.
    finish: FinishResponse,
    /// The L402 price of the fast path.
    fast: FastPrice,
}

/// The L402 price on the fast path.
#[derive(Clone, Copy, Debug)]
enum FastPrice {
    /// Fixed, in a unit that needs no rate: known once.
    Known(Msat),
    /// Fixed, converted through the rates per request.
    Convert,
    /// Dynamic, or not offered on L402: no fast path.
    Off,
}

impl std::fmt::Debug for PaywallLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaywallLayer")
            .field("paywall", &self.paywall)
            .field("price", &self.price)
            .finish_non_exhaustive()
    }
}

/// `Vary` on the credentials of L402 and, per the flags, x402 and
/// BitRequests: [`credentials_of`] joined.
const fn vary_of(x402: bool, bitreq: bool) -> &'static str {
    match (x402, bitreq) {
        (false, false) => "Authorization",
        (true, false) => "Authorization, PAYMENT-SIGNATURE, X-PAYMENT",
        (false, true) => {
            "Authorization, Bitcoin-Transaction, Bitcoin-Transfer, Bitcoin-Payment-Channel-Token"
        }
        (true, true) => {
            "Authorization, PAYMENT-SIGNATURE, X-PAYMENT, Bitcoin-Transaction, Bitcoin-Transfer, Bitcoin-Payment-Channel-Token"
        }
    }
}

/// Applies the L402 caching policy and `Vary` on the credentials of the
/// enabled rails (L402 and, per the flags, x402 and BitRequests).
fn finish_l402<const PRIVATE: bool, const X402: bool, const BITREQ: bool>(
    r: Result<Response, Infallible>,
) -> Result<Response, Infallible> {
    r.map(|mut resp| {
        let policy = if PRIVATE {
            PaidCaching::PrivateNoStore
        } else {
            PaidCaching::HandlerDecides
        };
        let h = resp.headers_mut();
        if h.contains_key(header::VARY) {
            policy.apply_paid(h, credentials_of(true, X402, BITREQ));
        } else {
            // The common case, without building the list.
            if PRIVATE {
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-store"),
                );
            }
            h.insert(
                header::VARY,
                HeaderValue::from_static(vary_of(X402, BITREQ)),
            );
        }
        resp
    })
}

/// The finisher of a paid L402 response of a paywall with x402 and / or
/// BitRequests beside it.
fn l402_finisher(policy: PaidCaching, x402: bool, bitreq: bool) -> FinishResponse {
    match (policy == PaidCaching::PrivateNoStore, x402, bitreq) {
        (true, false, false) => finish_l402::<true, false, false>,
        (true, true, false) => finish_l402::<true, true, false>,
        (true, false, true) => finish_l402::<true, false, true>,
        (true, true, true) => finish_l402::<true, true, true>,
        (false, false, false) => finish_l402::<false, false, false>,
        (false, true, false) => finish_l402::<false, true, false>,
        (false, false, true) => finish_l402::<false, false, true>,
        (false, true, true) => finish_l402::<false, true, true>,
    }
}

impl PaywallLayer {
    pub(crate) fn new(paywall: Paywall, price: PaywallPrice) -> PaywallLayer {
        let shared = &paywall.shared;
        let l402 = shared.l402.clone();
        let policy = l402
            .as_ref()
            .map_or(PaidCaching::PrivateNoStore, |l| l.config().paid_caching);
        let finish = l402_finisher(policy, shared.has_x402(), shared.has_bitreq());
        let fast = match &price {
            PaywallPrice::Fixed(
                c @ (Charge::PerRail(_) | Charge::Amount(Amount::Msat(_) | Amount::Sat(_))),
            ) => match c.l402(shared.rates.as_ref()) {
                Ok(Some(m)) => FastPrice::Known(m),
                _ => FastPrice::Off,
            },
            PaywallPrice::Fixed(_) => FastPrice::Convert,
            PaywallPrice::Dynamic(_) => FastPrice::Off,
        };
        PaywallLayer {
            fast,
            l402,
            #[cfg(feature = "x402")]
            x402_route: Arc::new(crate::x402::X402Route {
                offers: crate::x402::Offers::Fixed(Arc::from(Vec::new())),
                description: None,
                mime_type: None,
                resource_url: None,
                output_schema: None,
            }),
            finish,
            price,
            paywall,
        }
    }

    /// The same layer, with L402 tokens minted for and accepted on the
    /// scope `name` instead of the route (see [`L402Layer::with_scope`]).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # use pay402_server::paywall::{Paywall, PaywallPrice};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// # let paywall = Paywall::builder().l402(node, Arc::new(pay402_server::store::MemoryStore::new())).build().unwrap();
    /// // One token opens both routes.
    /// let a = paywall.price(PaywallPrice::sats(10)).scope("reports");
    /// let b = paywall.price(PaywallPrice::sats(10)).scope("reports");
    /// # let _ = (a, b);
    /// ```
    pub fn scope(mut self, name: impl Into<String>) -> PaywallLayer {
        self.l402 = self.l402.map(|l| l.with_scope(name));
        self
    }

    /// The same layer, with L402 tokens required to grant `capability`
    /// (see [`L402Layer::with_capability`]).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # use pay402_server::paywall::{Paywall, PaywallPrice};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// # let paywall = Paywall::builder().l402(node, Arc::new(pay402_server::store::MemoryStore::new())).build().unwrap();
    /// let writes = paywall.price(PaywallPrice::sats(5)).capability("write");
    /// # let _ = writes;
    /// ```
    pub fn capability(mut self, capability: impl Into<String>) -> PaywallLayer {
        self.l402 = self.l402.map(|l| l.with_capability(capability));
        self
    }

    /// The same layer, with a description of the resource in the x402
    /// offer.
    ///
    /// ```no_run
    /// # fn f(paywall: pay402_server::paywall::Paywall) {
    /// let l = paywall.price(pay402_server::paywall::PaywallPrice::usd_cents(5)).description("Weather report");
    /// # }
    /// ```
    #[cfg(feature = "x402")]
    pub fn description(mut self, description: impl Into<String>) -> PaywallLayer {
        Arc::make_mut(&mut self.x402_route).description = Some(description.into());
        self
    }

    /// The same layer, with the resource's media type in the x402 offer.
    ///
    /// ```no_run
    /// # fn f(paywall: pay402_server::paywall::Paywall) {
    /// let l = paywall.price(pay402_server::paywall::PaywallPrice::usd_cents(5)).mime_type("application/json");
    /// # }
    /// ```
    #[cfg(feature = "x402")]
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> PaywallLayer {
        Arc::make_mut(&mut self.x402_route).mime_type = Some(mime_type.into());
        self
    }

    /// The x402 offers of one request costing `amount`.
    #[cfg(feature = "x402")]
    pub(crate) fn x402_offer_set(
        &self,
        rail: &super::builder::X402Rail,
        amount: pay402_core::x402::TokenAmount,
        parts: &Parts,
    ) -> crate::x402::OfferSet {
        rail.layer
            .offer_set(Arc::from([rail.offer(amount)]), &self.x402_route, parts)
    }
}

impl<S> Layer<S> for PaywallLayer {
    type Service = PaywallService<S>;
    fn layer(&self, inner: S) -> PaywallService<S> {
        PaywallService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`PaywallLayer`].
///
/// ```
/// # use std::sync::Arc;
/// # use pay402_backends::simnet::SimNet;
/// # use pay402_core::{lightning::Network, money::Msat};
/// use tower::Layer;
/// use pay402_server::paywall::{Paywall, PaywallPrice};
/// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
/// let paywall = Paywall::builder().l402(node, Arc::new(pay402_server::store::MemoryStore::new())).build().unwrap();
/// let handler = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::from("hi")))
/// });
/// let service = paywall.price(PaywallPrice::sats(1)).layer(handler); // a PaywallService
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct PaywallService<S> {
    inner: S,
    layer: PaywallLayer,
}

/// The future of a [`PaywallService`]: the inner service's own future on
/// the L402 fast path (a free path, or a valid token whose key is cached), a
/// boxed future otherwise.
///
/// ```
/// fn is_future<F: std::future::Future>() {}
/// is_future::<pay402_server::paywall::PaywallFuture<std::future::Ready<Result<axum::response::Response, std::convert::Infallible>>>>();
/// ```
pub type PaywallFuture<F> = Either<Map<Instrumented<F>, FinishResponse>, BoxedResponse>;

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

impl<S> Service<Request<Body>> for PaywallService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = PaywallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // The L402 fast path, as in `L402Layer`: a free path, or a fixed
        // price and a valid token whose key is cached (and no other rail's
        // proof beside it), with no request future allocated. Its span is
        // at DEBUG (nothing is logged on it at INFO; as tower-http's request
        // spans) and made once the outcome is known with every field set: an
        // INFO span costs a formatting of its fields on every request, and
        // recording fields later formats them again.
        if let Some(l402) = &self.layer.l402 {
            let cfg = l402.config();
            if cfg.is_free_path(req.uri().path()) {
                let span = tracing::debug_span!(
                    "paywall.request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    outcome = "free_path",
                );
                let finish: FinishResponse = crate::cache::unchanged;
                return Either::Left(self.inner.call(req).instrument(span).map(finish));
            }
            let shared = &self.layer.paywall.shared;
            let price = match (self.layer.fast, &self.layer.price) {
                (FastPrice::Known(m), _) => Some(m),
                (FastPrice::Convert, PaywallPrice::Fixed(charge)) => {
                    charge.l402(shared.rates.as_ref()).ok().flatten()
                }
                _ => None,
            };
            if !cfg.bind_request
                && let Some(price) = price
                && !proof::other_than_l402(req.headers(), shared)
                && let Some(token) = l402.fast_check(&req, price, now())
            {
                let span = tracing::debug_span!(
                    "paywall.request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    rail = Rail::L402.as_str(),
                    outcome = "paid",
                );
                req.extensions_mut().insert(Paid {
                    rail: Rail::L402,
                    amount: Amount::Msat(price),
                    payer: None,
                    receipt: Receipt::L402Token(token.token_id),
                });
                req.extensions_mut().insert(token);
                let finish = self.layer.finish;
                return Either::Left(self.inner.call(req).instrument(span).map(finish));
            }
        }
        let span = tracing::info_span!(
            "paywall.request",
            method = %req.method(),
            path = %req.uri().path(),
            rail = field::Empty,
            outcome = field::Empty,
            version = field::Empty,
            payer = field::Empty,
            payment = field::Empty,
        );
        // Take the service that was driven to readiness; leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Either::Right(Box::pin(
            async move {
                let shared = layer.paywall.shared.clone();
                let mut resp = handle(layer, inner, req).await?;
                // Whatever answered, caches key on every enabled rail's proof.
                crate::cache::vary(resp.headers_mut(), &shared.credentials);
                Ok(resp)
            }
            .instrument(span),
        ))
    }
}

/// The full path: free path, proofs, body, price, then the rail of the
/// proof, or the 402 of every rail.
async fn handle<S>(
    layer: PaywallLayer,
    mut inner: S,
    req: Request<Body>,
) -> Result<Response, Infallible>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let shared = layer.paywall.shared.clone();
    if let Some(l402) = &layer.l402
        && l402.config().is_free_path(req.uri().path())
    {
        tracing::Span::current().record("outcome", "free_path");
        return inner.call(req).await;
    }
    let rail = match proof::presented(req.headers(), &shared) {
        Ok(rail) => rail,
        Err(rails) => {
            let e = PaywallError::MultipleProofs(rails);
            tracing::Span::current().record("outcome", "multiple_payment_proofs");
            tracing::info!(reason = e.reason(), error = %e, "paywall.reject");
            return Ok(respond::problem(&Problem::from_reason(&e, e.status())));
        }
    };
    let (parts, body) = req.into_parts();
    // Tokens bound to requests need the body (bounded) to verify and mint.
    let (body_bytes, body) = match &layer.l402 {
        Some(l402) => match l402.read_body(body).await {
            Ok(b) => b,
            Err(resp) => return Ok(resp),
        },
        None => (None, body),
    };
    let charge = match &layer.price {
        PaywallPrice::Fixed(c) => Some(c.clone()),
        PaywallPrice::Dynamic(f) => {
            f(PriceRequest {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                body: body_bytes.clone(),
            })
            .await
        }
    };
    let Some(charge) = charge.filter(|c| !c.is_free()) else {
        tracing::Span::current().record("outcome", "free_price");
        return inner.call(Request::from_parts(parts, body)).await;
    };
    let (prices, failed) = shared.convert(&charge);
    if prices.is_empty() {
        // A priced request no rail can take: refused, never served free.
        let e = failed.map_or(PaywallError::NoRailPriced, |(_, e)| {
            PaywallError::Unconvertible(e)
        });
        tracing::Span::current().record("outcome", "failed");
        tracing::error!(reason = e.reason(), error = %e, "paywall.unpriced");
        return Ok(respond::problem(&Problem::from_reason(&e, e.status())));
    }
    let now = now();
    if let Some(rail) = rail {
        tracing::Span::current().record("rail", rail.rail().as_str());
    }
    let request = Pending {
        layer: &layer,
        parts,
        body,
        body_bytes,
        prices,
        now,
    };
    Ok(match rail {
        Some(rail) if rail.is_priced(&request.prices) => {
            rail.serve(request, Next::new(inner)).await
        }
        // No proof, or a proof for a rail this request is not priced on.
        _ => request.payment_required().await,
    })
}

/// A priced request on its way to a rail.
pub(crate) struct Pending<'a> {
    /// The route.
    pub(crate) layer: &'a PaywallLayer,
    /// The request.
    pub(crate) parts: Parts,
    /// Its body (read already when `body_bytes` is set).
    pub(crate) body: Body,
    /// The body, when the L402 configuration binds tokens to requests.
    pub(crate) body_bytes: Option<bytes::Bytes>,
    /// The price on each rail.
    pub(crate) prices: RailPrices,
    /// Now.
    pub(crate) now: UnixTime,
}

impl Pending<'_> {
    /// The 402 of every priced rail. (Not an `async fn`: the future borrows
    /// the fields it needs, not the whole request, whose body is not `Sync`.)
    pub(crate) fn payment_required(&self) -> impl Future<Output = Response> + Send + '_ {
        self.payment_required_with(None)
    }

    /// The 402 of every priced rail, with `problem` (a rail's refusal, as
    /// JSON) as the body instead of the paywall's own.
    pub(crate) fn payment_required_with(
        &self,
        problem: Option<serde_json::Value>,
    ) -> impl Future<Output = Response> + Send + '_ {
        challenge::payment_required(
            self.layer,
            &self.prices,
            &self.parts,
            self.body_bytes.as_deref(),
            self.now,
            problem,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_vary_is_the_credentials_list() {
        for x in [false, true] {
            for b in [false, true] {
                assert_eq!(vary_of(x, b), credentials_of(true, x, b).join(", "));
            }
        }
    }
}
