//! [`MockPaywall`]: the 402 answer, the token endpoint and the protected-route
//! layer of the x402_mock dialect.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode, header};
use pay402_core::problem::{Problem, Reason};
use pay402_core::time::UnixTime;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock::{
    AccessTokenClaims, AccessTokenError, EvmPaymentComponent, MIN_KEY_LEN, MOCK_PROTOCOL_VERSION,
    MockPaymentRequired, MockPaymentScheme, verify_access_token,
};
use pay402_core::x402::mock_chain::PermitSettler;
use tokio::sync::Notify;
use tower::{Layer, Service};
use tracing::{Instrument, field};

use super::config::{MockConfig, MockConfigError, MockPrice};
use super::error::MockServerError;
use super::queue::SettlementStore;
use super::token;
use super::worker::{SettlementWorker, WorkerHandle};
use crate::cache::{self, X402_MOCK_CREDENTIALS};
use crate::respond;

/// A resource for sale: its prices and its pre-built 402 body.
pub(crate) struct Route {
    pub(crate) resource: String,
    pub(crate) offers: Vec<(MockPrice, EvmPaymentComponent)>,
    body_402: Bytes,
}

pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    pub(crate) chain: Arc<dyn PermitSettler>,
    pub(crate) store: Arc<dyn SettlementStore>,
    pub(crate) pay_to: EvmAddress,
    routes: RwLock<HashMap<String, Arc<Route>>>,
    pub(crate) wake: Arc<Notify>,
}

impl Shared {
    pub(crate) fn route(&self, resource: &str) -> Option<Arc<Route>> {
        self.routes
            .read()
            .ok()
            .and_then(|r| r.get(resource).cloned())
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

/// The x402_mock paywall: sells resources for EIP-2612 permits, answers
/// unpaid requests with the seed's 402 body, issues bound access tokens at
/// its token endpoint, and queues each permit for settlement on chain.
///
/// Clone it freely; the clones share everything.
///
/// ```no_run
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use pay402_core::x402::TokenAmount;
/// use pay402_server::x402_mock::{AcceptedToken, MockConfig, MockPaywall, MockPrice, SqliteSettlementStore};
/// # async fn run(chain: Arc<dyn pay402_core::x402::mock_chain::PermitSettler>, key: zeroize::Zeroizing<Vec<u8>>) -> Result<(), Box<dyn std::error::Error>> {
/// let usdc = AcceptedToken::usdc("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse()?, 31337, "anvil");
/// let store = Arc::new(SqliteSettlementStore::open("settlements.sqlite").await?);
/// let paywall = MockPaywall::new(MockConfig::new(key).accept(usdc.clone()), chain, store)?;
/// let worker = paywall.spawn_worker();
/// let app = Router::new()
///     .route("/premium", get(|| async { "paid content" })
///         .route_layer(paywall.protect("/premium", [MockPrice::new(usdc.address, TokenAmount::from_u64(10_000))])?))
///     .merge(paywall.token_router());
/// axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8402").await?, app).await?;
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MockPaywall {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for MockPaywall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockPaywall")
            .field("config", &self.shared.config)
            .field("spender", &self.shared.chain.spender())
            .field("pay_to", &self.shared.pay_to)
            .finish_non_exhaustive()
    }
}

impl MockPaywall {
    /// A paywall settling with `chain` (whose spender is the permits'
    /// spender) and queueing in `store`. Checks the key length, the token
    /// endpoint path, and that every accepted token is on the settler's chain.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # fn f(chain: Arc<dyn pay402_core::x402::mock_chain::PermitSettler>) {
    /// use pay402_server::x402_mock::{MemorySettlementStore, MockConfig, MockConfigError, MockPaywall};
    /// let short = MockConfig::new(zeroize::Zeroizing::new(vec![0; 16]));
    /// let err = MockPaywall::new(short, chain, Arc::new(MemorySettlementStore::new())).unwrap_err();
    /// assert_eq!(err, MockConfigError::KeyTooShort);
    /// # }
    /// ```
    pub fn new(
        config: MockConfig,
        chain: Arc<dyn PermitSettler>,
        store: Arc<dyn SettlementStore>,
    ) -> Result<MockPaywall, MockConfigError> {
        if config.key.len() < MIN_KEY_LEN {
            return Err(MockConfigError::KeyTooShort);
        }
        if !config.token_endpoint.starts_with('/') {
            return Err(MockConfigError::BadEndpoint);
        }
        let chain_id = chain.chain_id();
        if let Some(t) = config.tokens.iter().find(|t| t.chain_id != chain_id) {
            return Err(MockConfigError::ChainMismatch {
                token: t.address,
                token_chain: t.chain_id,
                settler_chain: chain_id,
            });
        }
        let pay_to = config.pay_to.unwrap_or_else(|| chain.spender());
        Ok(MockPaywall {
            shared: Arc::new(Shared {
                config,
                chain,
                store,
                pay_to,
                routes: RwLock::new(HashMap::new()),
                wake: Arc::new(Notify::new()),
            }),
        })
    }

    /// Puts `resource` up for sale at `prices` (one per accepted token, the
    /// client picks) and returns the layer to put in front of it.
    ///
    /// `resource` names what a token opens: tokens are bound to it, and the
    /// 402 body's `access_token_endpoint` carries it
    /// (`/x402-mock/token?resource=%2Fpremium`). Registering it again
    /// replaces its prices.
    ///
    /// ```no_run
    /// # fn f(paywall: pay402_server::x402_mock::MockPaywall, usdc: pay402_core::x402::evm::EvmAddress) -> Result<(), pay402_server::x402_mock::MockConfigError> {
    /// use pay402_server::x402_mock::MockPrice;
    /// use pay402_core::x402::TokenAmount;
    /// let layer = paywall.protect("/report", [MockPrice::new(usdc, TokenAmount::from_u64(250_000))])?; // 0.25 USDC
    /// # Ok(()) }
    /// ```
    pub fn protect(
        &self,
        resource: &str,
        prices: impl IntoIterator<Item = MockPrice>,
    ) -> Result<MockLayer, MockConfigError> {
        let shared = &self.shared;
        let wallet = shared.chain.spender();
        let mut offers = Vec::new();
        for price in prices {
            if price.amount.0.is_zero() {
                return Err(MockConfigError::NoPrice);
            }
            let token = shared
                .config
                .tokens
                .iter()
                .find(|t| t.address == price.token)
                .ok_or(MockConfigError::UnknownToken(price.token))?;
            offers.push((price, token.component(price.amount, wallet)?));
        }
        if offers.is_empty() {
            return Err(MockConfigError::NoPrice);
        }
        let body = MockPaymentRequired {
            reason: "payment_required".into(),
            access_token_endpoint: format!(
                "{}?resource={}",
                shared.config.token_endpoint,
                pct_encode(resource)
            ),
            payment_scheme: MockPaymentScheme {
                payment_components: offers.iter().map(|(_, c)| c.clone()).collect(),
                protocol_version: MOCK_PROTOCOL_VERSION.into(),
            },
            payment_instruction: Some(serde_json::json!({
                "sign": "an EIP-2612 permit of at least the component amount to metadata.wallet_address",
                "post": "{\"version\":\"Version 0.1\",\"permit\":{...}} to access_token_endpoint",
                "then": "retry with Authorization: Bearer <access_token>",
            })),
        };
        let body_402 = Bytes::from(
            serde_json::to_vec(&body)
                .map_err(|_| MockConfigError::InexactAmount(offers[0].0.amount))?,
        );
        let route = Arc::new(Route {
            resource: resource.to_owned(),
            offers,
            body_402,
        });
        if let Ok(mut routes) = shared.routes.write() {
            routes.insert(resource.to_owned(), route.clone());
        }
        Ok(MockLayer {
            shared: shared.clone(),
            route,
        })
    }

    /// The router serving the token endpoint (`POST`
    /// [`MockConfig::token_endpoint`]); merge it into your app.
    ///
    /// ```no_run
    /// # fn f(paywall: pay402_server::x402_mock::MockPaywall) {
    /// let app: axum::Router = axum::Router::new().merge(paywall.token_router());
    /// # }
    /// ```
    pub fn token_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let shared = self.shared.clone();
        Router::new().route(
            &self.shared.config.token_endpoint,
            axum::routing::post(move |req: Request<Body>| {
                let shared = shared.clone();
                async move { token::handle(shared, req).await }
            }),
        )
    }

    /// A settlement worker on this paywall's store and chain; it is woken
    /// whenever the token endpoint queues a permit.
    ///
    /// ```no_run
    /// # async fn f(paywall: pay402_server::x402_mock::MockPaywall) {
    /// let processed = paywall.worker().run_once().await.unwrap();
    /// # }
    /// ```
    pub fn worker(&self) -> SettlementWorker {
        let worker = SettlementWorker::with_wake(
            self.shared.store.clone(),
            self.shared.chain.clone(),
            self.shared.config.retry,
            self.shared.wake.clone(),
        );
        match self.shared.config.settlement_lease {
            Some(lease) => worker.with_lease(lease),
            None => worker,
        }
    }

    /// Starts [`MockPaywall::worker`] in the background.
    ///
    /// ```no_run
    /// # async fn f(paywall: pay402_server::x402_mock::MockPaywall) {
    /// let handle = paywall.spawn_worker();
    /// handle.shutdown().await;
    /// # }
    /// ```
    pub fn spawn_worker(&self) -> WorkerHandle {
        self.worker().spawn()
    }

    /// The 402 body for `resource`, as the layer sends it (`None` if the
    /// resource is not for sale).
    ///
    /// ```no_run
    /// # fn f(paywall: pay402_server::x402_mock::MockPaywall) {
    /// let offer = paywall.payment_required("/premium").unwrap();
    /// assert_eq!(offer.payment_scheme.protocol_version, "Version 0.1");
    /// # }
    /// ```
    pub fn payment_required(&self, resource: &str) -> Option<MockPaymentRequired> {
        let route = self.shared.route(resource)?;
        serde_json::from_slice(&route.body_402).ok()
    }

    /// Revokes an access token by its `jti` (the permit's EIP-712 digest)
    /// until `exp`.
    ///
    /// ```no_run
    /// # async fn f(paywall: pay402_server::x402_mock::MockPaywall, claims: pay402_core::x402::mock::AccessTokenClaims) {
    /// paywall.revoke(&claims.jti, claims.exp, "operator").await.unwrap();
    /// # }
    /// ```
    pub async fn revoke(
        &self,
        jti: &Bytes32,
        exp: u64,
        reason: &str,
    ) -> Result<(), super::queue::QueueError> {
        self.shared.store.revoke(jti, exp, reason).await
    }

    /// The settlement store.
    ///
    /// ```no_run
    /// # async fn f(paywall: pay402_server::x402_mock::MockPaywall) {
    /// let job = paywall.store().get(1).await.unwrap();
    /// # }
    /// ```
    pub fn store(&self) -> &Arc<dyn SettlementStore> {
        &self.shared.store
    }
}

/// The layer protecting one resource; made by [`MockPaywall::protect`].
///
/// ```no_run
/// # fn f(layer: pay402_server::x402_mock::MockLayer) {
/// use axum::routing::get;
/// let app: axum::Router = axum::Router::new().route("/premium", get(|| async { "paid" }).route_layer(layer));
/// # }
/// ```
#[derive(Clone)]
pub struct MockLayer {
    shared: Arc<Shared>,
    route: Arc<Route>,
}

impl std::fmt::Debug for MockLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockLayer")
            .field("resource", &self.route.resource)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for MockLayer {
    type Service = MockService<S>;
    fn layer(&self, inner: S) -> MockService<S> {
        MockService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`MockLayer`]: lets requests with a valid, unrevoked
/// Bearer token for its resource through; answers others with 402 (no
/// token: the offer) or 401 problem+json (a bad token).
///
/// ```no_run
/// # fn f(layer: pay402_server::x402_mock::MockLayer) {
/// use tower::Layer;
/// let handler = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::from("hi")))
/// });
/// let service = layer.layer(handler);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MockService<S> {
    inner: S,
    layer: MockLayer,
}

/// The claims of the access token a request was let through with; in the
/// request extensions, and an axum extractor.
///
/// ```no_run
/// use pay402_server::x402_mock::MockPaidToken;
/// async fn handler(MockPaidToken(claims): MockPaidToken) -> String {
///     format!("paid by {}", claims.payer)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockPaidToken(pub AccessTokenClaims);

impl<S: Send + Sync> FromRequestParts<S> for MockPaidToken {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<MockPaidToken>()
            .cloned()
            .ok_or_else(|| {
                respond::problem(&Problem::new(
                    402,
                    "payment_required",
                    "This route is not behind an x402_mock layer",
                ))
            })
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send + 'static>>;

impl<S> Service<Request<Body>> for MockService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> BoxFuture {
        let span = tracing::info_span!(
            "x402_mock.request",
            method = %req.method(),
            resource = %self.layer.route.resource,
            outcome = field::Empty,
        );
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(guard(layer, inner, req).instrument(span))
    }
}

/// What the `Authorization` headers hold.
enum Bearer<'a> {
    None,
    One(&'a str),
    Malformed,
}

fn bearer(req: &Request<Body>) -> Bearer<'_> {
    let mut found = Bearer::None;
    for value in req.headers().get_all(header::AUTHORIZATION) {
        let Ok(v) = value.to_str() else {
            return Bearer::Malformed;
        };
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            continue; // another scheme's credential: not ours
        }
        let token = rest.trim();
        if token.is_empty() || matches!(found, Bearer::One(_)) {
            return Bearer::Malformed;
        }
        found = Bearer::One(token);
    }
    found
}

fn unauthorized(e: &MockServerError) -> Response {
    let mut resp = respond::problem(&e.problem());
    cache::challenge(resp.headers_mut(), X402_MOCK_CREDENTIALS);
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    resp
}

fn payment_required(route: &Route) -> Response {
    let mut resp = Response::new(Body::from(route.body_402.clone()));
    *resp.status_mut() = StatusCode::PAYMENT_REQUIRED;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    cache::challenge(h, X402_MOCK_CREDENTIALS);
    resp
}

async fn guard<S>(
    layer: MockLayer,
    mut inner: S,
    mut req: Request<Body>,
) -> Result<Response, Infallible>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let shared = &layer.shared;
    let route = &layer.route;
    let span = tracing::Span::current();
    let token = match bearer(&req) {
        Bearer::None => {
            span.record("outcome", "payment_required");
            return Ok(payment_required(route));
        }
        Bearer::Malformed => {
            let e = MockServerError::Token(AccessTokenError::Malformed);
            span.record("outcome", e.reason());
            return Ok(unauthorized(&e));
        }
        Bearer::One(t) => t,
    };
    let claims = match verify_access_token(token, &shared.config.key, &route.resource, now()) {
        Ok(c) => c,
        Err(e) => {
            let e = MockServerError::Token(e);
            span.record("outcome", e.reason());
            tracing::info!(reason = e.reason(), "x402_mock.reject");
            return Ok(unauthorized(&e));
        }
    };
    match shared.store.is_revoked(&claims.jti).await {
        Ok(false) => {}
        Ok(true) => {
            let e = MockServerError::Revoked;
            span.record("outcome", e.reason());
            tracing::info!(reason = e.reason(), payer = %claims.payer, "x402_mock.reject");
            return Ok(unauthorized(&e));
        }
        Err(e) => {
            // Fail closed: a token is not honoured while revocations cannot be read.
            tracing::warn!(reason = e.reason(), error = %e, "x402_mock.store_error");
            span.record("outcome", e.reason());
            return Ok(respond::problem(&MockServerError::Queue(e).problem()));
        }
    }
    span.record("outcome", "paid");
    req.extensions_mut().insert(MockPaidToken(claims));
    let mut resp = inner.call(req).await?;
    shared
        .config
        .paid_caching
        .apply_paid(resp.headers_mut(), X402_MOCK_CREDENTIALS);
    Ok(resp)
}
