//! The seam: "the paywall layer for a service".
//!
//! [`ServicePaywall`] is the only place the proxy knows how payments are
//! taken. Today it wraps the per-rail layers of `pay402-server`
//! ([`L402Layer`], [`X402Layer`]) and, when a service offers several rails,
//! dispatches on the proof a request carries and merges the rails' 402
//! challenges into one answer. When `pay402_server::Paywall` (one layer
//! offering every rail) lands, [`ServicePaywall::build`] constructs it
//! instead and [`ServicePaywall::wrap`] becomes `paywall.layer(inner)`;
//! nothing else in the proxy changes.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, StatusCode, header};
use pay402_core::lightning::InvoiceIssuer;
use pay402_core::x402::facilitator::Facilitator;
use pay402_server::store::RootKeyStore;
use pay402_server::x402::store::PaymentStore;
use pay402_server::x402::{
    SettleTiming, X402Config, X402Layer, X402Route, check_offer, exact_offer,
};
use pay402_server::{L402Config, L402Layer, Price};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::config::{RailName, Service as ServiceConfig, Settle, X402Settings};
use crate::pricer::{L402_PRICE_HEADER, X402_PRICE_HEADER};
use pay402_core::money::Msat;
use pay402_core::x402::TokenAmount;
use pay402_server::PriceRequest;

/// A boxed request handler: the upstream, or the upstream behind a paywall.
///
/// ```
/// use tower::util::BoxCloneSyncService;
/// let h: pay402_cli::paywall::Handler = BoxCloneSyncService::new(tower::service_fn(|_req| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::from("hi")))
/// }));
/// # let _ = h;
/// ```
pub type Handler = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// What the paywalls of every service share: the node, the facilitator and
/// the stores.
///
/// ```
/// let none = pay402_cli::paywall::PaywallBackends {
///     issuer: None, l402_store: None, facilitator: None, x402_store: None, max_settle_body: 1 << 20,
/// };
/// # let _ = none;
/// ```
#[derive(Clone)]
pub struct PaywallBackends {
    /// The node issuing L402 invoices.
    pub issuer: Option<Arc<dyn InvoiceIssuer>>,
    /// L402 root keys and revocations.
    pub l402_store: Option<Arc<dyn RootKeyStore>>,
    /// The x402 facilitator.
    pub facilitator: Option<Arc<dyn Facilitator>>,
    /// x402 payment records.
    pub x402_store: Option<Arc<dyn PaymentStore>>,
    /// Largest response buffered for x402 settle-after.
    pub max_settle_body: usize,
}

/// The paywall of one service (see the module docs for the seam).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use pay402_cli::paywall::{PaywallBackends, ServicePaywall};
/// let toml = "[lightning]\nkind = \"simnet\"\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"l402\"]\nprice = { sats = 5 }\n";
/// let c = pay402_cli::config::Config::parse("p.toml", toml).unwrap();
/// let net = pay402_backends::simnet::SimNet::new(pay402_core::lightning::Network::Regtest);
/// let backends = PaywallBackends {
///     issuer: Some(Arc::new(net.add_node("merchant", pay402_core::money::Msat(0)))),
///     l402_store: Some(Arc::new(pay402_server::store::MemoryStore::new())),
///     facilitator: None, x402_store: None, max_settle_body: 1 << 20,
/// };
/// let paywall = ServicePaywall::build(&c.services[0], None, &backends).unwrap().unwrap();
/// assert_eq!(paywall.rails(), ["l402"]);
/// # }
/// ```
#[derive(Clone)]
pub struct ServicePaywall {
    l402: Option<L402Layer>,
    x402: Option<X402Layer>,
}

/// Why a service's paywall cannot be built.
///
/// ```
/// let e = pay402_cli::paywall::PaywallError::Missing { service: "a".into(), rail: "x402", what: "[x402]" };
/// assert_eq!(e.to_string(), "service a: x402 is on but [x402] is not configured");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum PaywallError {
    /// A rail is on but its backend is missing.
    #[error("service {service}: {rail} is on but {what} is not configured")]
    Missing {
        /// The service.
        service: String,
        /// The rail.
        rail: &'static str,
        /// The missing piece.
        what: &'static str,
    },
    /// The x402 offer is not valid.
    #[error("service {service}: x402 offer: {message}")]
    Offer {
        /// The service.
        service: String,
        /// The reason.
        message: String,
    },
}

impl ServicePaywall {
    /// The paywall `service` asks for (no rail on: `None`, the service is free).
    ///
    /// See [`ServicePaywall`] for a runnable example.
    pub fn build(
        service: &ServiceConfig,
        x402: Option<&X402Settings>,
        backends: &PaywallBackends,
    ) -> Result<Option<ServicePaywall>, PaywallError> {
        let missing = |rail, what| PaywallError::Missing {
            service: service.name.clone(),
            rail,
            what,
        };
        let l402_on = service.rails.contains(&RailName::L402);
        let x402_on = service.rails.contains(&RailName::X402);
        let l402 = match l402_on {
            false => None,
            true => {
                let issuer = backends
                    .issuer
                    .clone()
                    .ok_or_else(|| missing("l402", "[lightning]"))?;
                let store = backends
                    .l402_store
                    .clone()
                    .ok_or_else(|| missing("l402", "the store"))?;
                let mut config = L402Config::new(service.name.clone())
                    .token_lifetime(service.token_lifetime)
                    .capabilities(service.l402_capabilities.iter().cloned());
                for caveat in &service.l402_caveats {
                    config = config.caveat(caveat.clone());
                }
                // A static price, or the pricer's, which the proxy put in a
                // header (a missing one prices the request out of reach:
                // never free).
                let price = match service.l402_price {
                    Some(p) => Price::Fixed(p),
                    None => Price::dynamic(|req: PriceRequest| async move {
                        let msat = req
                            .headers
                            .get(L402_PRICE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(u64::MAX);
                        Some(Msat(msat))
                    }),
                };
                Some(
                    L402Layer::new(config, issuer, store)
                        .with_price(price)
                        .with_scope(service.name.clone()),
                )
            }
        };
        let x402 = match (x402_on, x402) {
            (false, _) => None,
            (true, None) => return Err(missing("x402", "[x402]")),
            (true, Some(x)) => {
                let facilitator = backends
                    .facilitator
                    .clone()
                    .ok_or_else(|| missing("x402", "the facilitator"))?;
                let store = backends
                    .x402_store
                    .clone()
                    .ok_or_else(|| missing("x402", "the store"))?;
                let offer_for = {
                    let (network, asset, pay_to) =
                        (x.network.clone(), x.asset.clone(), x.pay_to.clone());
                    let (name, version) = (x.asset_name.clone(), x.asset_version.clone());
                    move |amount: TokenAmount| {
                        exact_offer(&network, &asset, &pay_to, amount, &name, &version)
                    }
                };
                let offer_err = |message: String| PaywallError::Offer {
                    service: service.name.clone(),
                    message,
                };
                let route = match service.x402_price {
                    Some(amount) => {
                        let offer = offer_for(amount);
                        check_offer(&offer).map_err(|e| offer_err(e.to_string()))?;
                        X402Route::new([offer]).map_err(|e| offer_err(e.to_string()))?
                    }
                    // The pricer's price, from the header the proxy set; a
                    // missing one is an amount nobody pays (never free).
                    None => X402Route::dynamic(move |req: PriceRequest| {
                        let amount = req
                            .headers
                            .get(X402_PRICE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| TokenAmount::parse(v).ok())
                            .unwrap_or(TokenAmount(alloy_primitives::U256::MAX));
                        let offer = offer_for(amount);
                        async move { vec![offer] }
                    }),
                };
                let settle = match x.settle {
                    Settle::After => SettleTiming::AfterHandler,
                    Settle::Before => SettleTiming::BeforeHandler,
                };
                let config = X402Config::new()
                    .settle(settle)
                    .max_response_body(backends.max_settle_body);
                Some(X402Layer::new(config, facilitator, store).with_route(route))
            }
        };
        if l402.is_none() && x402.is_none() {
            return Ok(None);
        }
        Ok(Some(ServicePaywall { l402, x402 }))
    }

    /// `inner` behind this paywall.
    ///
    /// ```no_run
    /// # fn f(p: pay402_cli::paywall::ServicePaywall, upstream: pay402_cli::paywall::Handler) {
    /// let paid = p.wrap(upstream);
    /// # let _ = paid; }
    /// ```
    pub fn wrap(&self, inner: Handler) -> Handler {
        match (&self.l402, &self.x402) {
            (Some(l), None) => BoxCloneSyncService::new(l.layer(inner)),
            (None, Some(x)) => BoxCloneSyncService::new(x.layer(inner)),
            (Some(l), Some(x)) => BoxCloneSyncService::new(Dispatch {
                l402: BoxCloneSyncService::new(l.layer(inner.clone())),
                x402: BoxCloneSyncService::new(x.layer(inner)),
            }),
            (None, None) => inner,
        }
    }

    /// Revokes an L402 token on this service (a revocation record in the
    /// shared store, and this service's cached key dropped). Returns whether
    /// the token had been used paid and was not yet revoked; `Ok(false)`
    /// for a service without L402.
    ///
    /// ```no_run
    /// # async fn f(p: pay402_cli::paywall::ServicePaywall) {
    /// let existed = p.revoke(&pay402_core::l402::TokenId([7; 32])).await.unwrap();
    /// # let _ = existed; }
    /// ```
    pub async fn revoke(
        &self,
        token: &pay402_core::l402::TokenId,
    ) -> Result<bool, pay402_server::store::StoreError> {
        match &self.l402 {
            Some(l) => l.revoke(token).await,
            None => Ok(false),
        }
    }

    /// The rails this paywall offers.
    ///
    /// See [`ServicePaywall`] for a runnable example.
    pub fn rails(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.l402.is_some() {
            v.push("l402");
        }
        if self.x402.is_some() {
            v.push("x402");
        }
        v
    }
}

/// The rail whose proof a request carries, if any.
///
/// ```
/// use pay402_cli::paywall::proof_rail;
/// let mut h = http::HeaderMap::new();
/// assert_eq!(proof_rail(&h), None);
/// h.insert("authorization", "L402 abc:def".parse().unwrap());
/// assert_eq!(proof_rail(&h), Some("l402"));
/// h.insert("payment-signature", "e30=".parse().unwrap());
/// assert_eq!(proof_rail(&h), Some("x402"));
/// ```
pub fn proof_rail(headers: &HeaderMap) -> Option<&'static str> {
    if headers.contains_key("payment-signature") || headers.contains_key("x-payment") {
        return Some("x402");
    }
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .any(|v| is_l402_authorization(v.as_bytes()))
    {
        return Some("l402");
    }
    None
}

/// Whether an `Authorization` value uses the `L402` or `LSAT` scheme.
///
/// ```
/// assert!(pay402_cli::paywall::is_l402_authorization(b"lsat x:y"));
/// assert!(!pay402_cli::paywall::is_l402_authorization(b"Bearer x"));
/// ```
pub fn is_l402_authorization(v: &[u8]) -> bool {
    let scheme = v.split(|b| *b == b' ').next().unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"L402") || scheme.eq_ignore_ascii_case(b"LSAT")
}

/// Several rails behind one service: a request with a proof goes to its
/// rail; one without gets every rail's challenge in one 402.
#[derive(Clone)]
struct Dispatch {
    l402: Handler,
    x402: Handler,
}

impl Service<Request<Body>> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let l402 = self.l402.clone();
        let x402 = self.x402.clone();
        Box::pin(async move {
            match proof_rail(req.headers()) {
                Some("x402") => return x402.oneshot(req).await,
                Some(_) => return l402.oneshot(req).await,
                None => {}
            }
            // No proof: ask each rail for its challenge (the body is not
            // needed: prices are static) and answer with both.
            let probe = bodyless_copy(&req);
            let (x, l) = tokio::join!(x402.oneshot(req), l402.oneshot(probe));
            let (Ok(mut x), Ok(l)) = (x, l);
            if x.status() != StatusCode::PAYMENT_REQUIRED {
                return Ok(x);
            }
            if l.status() != StatusCode::PAYMENT_REQUIRED {
                return Ok(l);
            }
            for v in l.headers().get_all(header::WWW_AUTHENTICATE) {
                x.headers_mut().append(header::WWW_AUTHENTICATE, v.clone());
            }
            Ok(x)
        })
    }
}

/// The same request line and headers, without a body.
fn bodyless_copy(req: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy.headers_mut().remove(header::CONTENT_LENGTH);
    copy.headers_mut().remove(header::TRANSFER_ENCODING);
    if let Some(ci) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        copy.extensions_mut().insert(*ci);
    }
    copy
}
