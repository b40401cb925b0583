//! The proxy's front service: pick the service by host and path, skip the
//! paywall on free paths, count and log every request.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{Request, header};
use std::net::IpAddr;

use pay402_server::L402Config;
use pay402_server::limit::KeyedLimiter;
use regex::Regex;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::metrics as m;
use crate::paywall::{Handler, PaidSlot, proof_rail};
use crate::pricer::{L402_PRICE_HEADER, Pricer, X402_PRICE_HEADER};
use crate::upstream::ProxyError;

/// One service as the proxy routes it.
///
/// See [`Proxy`].
pub struct Route {
    /// The service name.
    pub name: String,
    /// Host regex.
    pub host: Regex,
    /// Path regex.
    pub path: Regex,
    /// Free path patterns (held in an [`L402Config`] for its matcher).
    pub free: L402Config,
    /// The upstream, unpaid.
    pub free_handler: Handler,
    /// The upstream behind the paywall (`None`: the service is free).
    pub paid_handler: Option<Handler>,
    /// Unpaid requests per client address, if any.
    pub freebies: Option<Arc<KeyedLimiter<IpAddr>>>,
    /// The dynamic pricer, if prices come from one.
    pub pricer: Option<Arc<Pricer>>,
    /// The service's metric handles (shared with its upstream).
    pub metrics: Arc<m::ServiceMetrics>,
}

impl Route {
    /// Whether a request to `host` and `path` is this service's (Aperture's
    /// `hostregexp` / `pathregexp`: unanchored searches, anchors in the
    /// pattern when wanted).
    ///
    /// See [`Proxy`].
    pub fn matches(&self, host: &str, path: &str) -> bool {
        self.host.is_match(host) && self.path.is_match(path)
    }
}

/// The front service.
///
/// ```
/// use pay402_cli::proxy::{Proxy, Route};
/// let upstream = tower::util::BoxCloneSyncService::new(tower::service_fn(|_req| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::empty()))
/// }));
/// let route = Route {
///     name: "api".into(),
///     host: regex::Regex::new(r"^api\.example$").unwrap(),
///     path: regex::Regex::new("^/v1/").unwrap(),
///     free: pay402_server::L402Config::new("api"),
///     free_handler: upstream,
///     paid_handler: None,
///     freebies: None,
///     pricer: None,
///     metrics: std::sync::Arc::new(pay402_cli::metrics::ServiceMetrics::new("api")),
/// };
/// assert!(route.matches("api.example", "/v1/x") && !route.matches("api.example", "/v2"));
/// let proxy = Proxy::new(vec![route]);
/// # let _ = proxy;
/// ```
#[derive(Clone)]
pub struct Proxy {
    routes: Arc<Vec<Route>>,
}

impl Proxy {
    /// A proxy over `routes`, tried in order.
    ///
    /// See [`Proxy`].
    pub fn new(routes: Vec<Route>) -> Proxy {
        Proxy {
            routes: Arc::new(routes),
        }
    }
}

impl Service<Request<Body>> for Proxy {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let routes = self.routes.clone();
        Box::pin(async move { Ok(route(&routes, req).await) })
    }
}

async fn route(routes: &[Route], mut req: Request<Body>) -> Response {
    // Prices travel to the paywall in internal headers: never a client's.
    // (One pass over the names; a lookup by name costs more than the scan.)
    if req
        .headers()
        .keys()
        .any(|n| n == L402_PRICE_HEADER || n == X402_PRICE_HEADER)
    {
        req.headers_mut().remove(L402_PRICE_HEADER);
        req.headers_mut().remove(X402_PRICE_HEADER);
    }
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if pay402_server::normalize_path(&path).is_none() {
        let resp = ProxyError::InvalidPath.into_response();
        return log_done(None, &method, &path, resp, started);
    }
    let found = {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or_default();
        routes.iter().find(|r| r.matches(host, &path))
    };
    let Some(route) = found else {
        let resp = ProxyError::NoService.into_response();
        return log_done(None, &method, &path, resp, started);
    };
    let metrics = &*route.metrics;
    // DEBUG, as tower-http's request spans: at INFO nothing is logged
    // inside it that does not name its service (the request line comes
    // after it with method, path and status), and an INFO span costs a
    // formatting of its fields on every request.
    let span = tracing::debug_span!(
        "proxy.request",
        service = route.name.as_str(),
        method = method.as_str(),
        path = path.as_str()
    );
    let (handler, rail) = match &route.paid_handler {
        Some(paid) if !route.free.is_free_path(&path) => {
            let rail = proof_rail(req.headers());
            if rail.is_none() && freebie(route, req.extensions()) {
                metrics.freebie();
                (route.free_handler.clone(), None)
            } else {
                if let Some(pricer) = &route.pricer
                    && let Err(e) = set_price(pricer, &mut req).await
                {
                    tracing::warn!(service = %route.name, error = %e, "no price: 503");
                    let resp = ProxyError::PricerUnavailable.into_response();
                    return log_done(Some(route), &method, &path, resp, started);
                }
                (paid.clone(), rail)
            }
        }
        _ => (route.free_handler.clone(), None),
    };
    let slot = rail.map(|_| {
        let slot = PaidSlot::new();
        req.extensions_mut().insert(slot.clone());
        slot
    });
    let Ok(resp) = handler.oneshot(req).instrument(span).await;
    if let Some(rail) = rail {
        let status = resp.status();
        metrics.payment(rail, status.as_u16());
        if let Some((paid, verify)) = slot.as_ref().and_then(PaidSlot::get) {
            metrics.verify_latency(paid.rail.as_str(), *verify);
            if status.is_success() || status.is_redirection() {
                metrics.revenue(paid);
            }
        }
    }
    log_done(Some(route), &method, &path, resp, started)
}

/// Asks the pricer and puts its prices in the internal headers.
async fn set_price(
    pricer: &Pricer,
    req: &mut Request<Body>,
) -> Result<(), crate::pricer::PricerError> {
    let quote = pricer.quote(req.method(), req.uri().path()).await?;
    if let Some(m) = quote.msat {
        req.headers_mut()
            .insert(L402_PRICE_HEADER, http::HeaderValue::from(m.0));
    }
    if let Some(t) = quote.x402
        && let Ok(v) = http::HeaderValue::from_str(&t.to_string())
    {
        req.headers_mut().insert(X402_PRICE_HEADER, v);
    }
    Ok(())
}

/// Whether this unpaid request is one of the client's free ones (a request
/// without a known peer address never is).
fn freebie(route: &Route, ext: &http::Extensions) -> bool {
    match (&route.freebies, pay402_server::limit::client_ip(ext)) {
        (Some(limiter), Some(ip)) => limiter.check(ip).is_ok(),
        _ => false,
    }
}

fn log_done(
    route: Option<&Route>,
    method: &http::Method,
    path: &str,
    resp: Response,
    started: Instant,
) -> Response {
    let status = resp.status().as_u16();
    let service = match route {
        Some(r) => {
            r.metrics.request(status);
            r.name.as_str()
        }
        None => {
            m::request("-", status);
            "-"
        }
    };
    tracing::info!(
        service,
        method = method.as_str(),
        path,
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}
