//! The L402 tower layer: verify tokens, or answer 402 with a fresh challenge.

use std::borrow::Cow;
use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath};
use axum::response::Response;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{Either, Map};
use http::request::Parts;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Limited};
use pay402_core::l402::{
    CachedKey, Challenge, Credential, Grant, Identifier, L402Error, Macaroon, PresentedToken,
    RequestFacts, Satisfier, Scheme, TokenId, VerifiedToken, VerifyContext, caveat,
};
use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest};
use pay402_core::money::Msat;
use pay402_core::problem::{Problem, Reason};
use pay402_core::time::UnixTime;
use rand::RngCore;
use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::{Instrument, field};

use super::config::{L402Config, Price, PriceRequest, RejectMode, normalized_path};
use super::keycache::KeyCache;
use crate::respond;
use crate::store::{Revocation, RootKeyStore, StoreError};

struct Shared {
    config: L402Config,
    issuer: Arc<dyn InvoiceIssuer>,
    store: Arc<dyn RootKeyStore>,
    cache: KeyCache,
}

/// A tower [`Layer`] that puts an L402 paywall in front of a service.
///
/// Clone it with a different [`Price`] per route ([`L402Layer::with_price`]);
/// the clones share the store, key cache and node, but a token grants only
/// what it was bought for: its scope (by default the axum route pattern, see
/// [`L402Layer::with_scope`]) at a price up to what it paid, for
/// [`L402Config::token_lifetime`] (24 hours by default).
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use pay402_server::{L402Config, L402Layer, Price, store::MemoryStore};
/// use pay402_backends::simnet::SimNet;
/// use pay402_core::{lightning::Network, money::Msat};
///
/// let net = SimNet::new(Network::Regtest);
/// let node = net.add_node("merchant", Msat(0));
/// let paywall = L402Layer::new(L402Config::new("api"), Arc::new(node), Arc::new(MemoryStore::new()));
/// let app: Router = Router::new()
///     .route("/cheap", get(|| async { "cheap" }).route_layer(paywall.with_price(Price::sats(1))))
///     .route("/dear", get(|| async { "dear" }).route_layer(paywall.with_price(Price::sats(1_000))));
/// ```
#[derive(Clone)]
pub struct L402Layer {
    shared: Arc<Shared>,
    price: Price,
    capability: Option<Arc<str>>,
    scope: Option<Arc<str>>,
}

impl std::fmt::Debug for L402Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L402Layer")
            .field("config", &self.shared.config)
            .field("price", &self.price)
            .finish_non_exhaustive()
    }
}

impl L402Layer {
    /// A paywall minting tokens for `config.service`, with invoices from
    /// `issuer` and root keys in `store`. The price starts at zero (free):
    /// set it with [`L402Layer::with_price`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_server::{L402Config, L402Layer, store::MemoryStore};
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::{lightning::Network, money::Msat};
    /// let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    /// let paywall = L402Layer::new(L402Config::new("api"), Arc::new(node), Arc::new(MemoryStore::new()));
    /// assert_eq!(paywall.config().service, "api");
    /// ```
    pub fn new(
        config: L402Config,
        issuer: Arc<dyn InvoiceIssuer>,
        store: Arc<dyn RootKeyStore>,
    ) -> L402Layer {
        let cache = KeyCache::new(config.key_cache_capacity, config.key_cache_ttl);
        let feed = store.revocations();
        let shared = Arc::new(Shared {
            config,
            issuer,
            store,
            cache,
        });
        if let Some(feed) = feed {
            follow_revocations(feed, Arc::downgrade(&shared));
        }
        L402Layer {
            shared,
            price: Price::Fixed(Msat::ZERO),
            capability: None,
            scope: None,
        }
    }

    /// The same paywall with another price.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_server::{L402Config, L402Layer, store::MemoryStore};
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    /// use pay402_server::Price;
    /// let paywall = L402Layer::new(L402Config::new("api"), Arc::new(node), Arc::new(MemoryStore::new()));
    /// let cheap = paywall.with_price(Price::sats(1));
    /// let dear = paywall.with_price(Price::sats(1_000));
    /// # let _ = (cheap, dear);
    /// ```
    pub fn with_price(&self, price: Price) -> L402Layer {
        L402Layer {
            shared: self.shared.clone(),
            price,
            capability: self.capability.clone(),
            scope: self.scope.clone(),
        }
    }

    /// The same paywall, with tokens minted for and accepted on the scope
    /// `name` instead of the route.
    ///
    /// A token is bound to the scope it was bought on: by default the axum
    /// route pattern the request matched ([`axum::extract::MatchedPath`], for
    /// example `/items/{id}`), or the normalised request path where there is
    /// none (a layer used outside an axum router). Layers sharing a scope
    /// name accept each other's tokens (still only up to the price paid).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_server::{L402Config, L402Layer, Price, store::MemoryStore};
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    /// let paywall = L402Layer::new(L402Config::new("api"), Arc::new(node), Arc::new(MemoryStore::new()));
    /// // One token opens both routes (they cost the same).
    /// let a = paywall.with_price(Price::sats(10)).with_scope("reports");
    /// let b = paywall.with_price(Price::sats(10)).with_scope("reports");
    /// # let _ = (a, b);
    /// ```
    pub fn with_scope(&self, name: impl Into<String>) -> L402Layer {
        L402Layer {
            shared: self.shared.clone(),
            price: self.price.clone(),
            capability: self.capability.clone(),
            scope: Some(Arc::from(name.into())),
        }
    }

    /// The scope a request falls under: the explicit scope, else the
    /// matched axum route, else the normalised path (the raw path if it
    /// does not normalise).
    pub(crate) fn scope_of<'a>(
        &'a self,
        extensions: &'a http::Extensions,
        uri: &'a http::Uri,
    ) -> Cow<'a, str> {
        if let Some(s) = &self.scope {
            return Cow::Borrowed(s);
        }
        if let Some(m) = extensions.get::<MatchedPath>() {
            return Cow::Borrowed(m.as_str());
        }
        normalized_path(uri.path()).unwrap_or(Cow::Borrowed(uri.path()))
    }

    /// The same paywall, but tokens must also grant `capability` through
    /// their `<service>_capabilities` caveat (a token without that caveat, or
    /// with an empty list, grants every capability, as Aperture mints them).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_server::{L402Config, L402Layer, Price, store::MemoryStore};
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    /// let paywall = L402Layer::new(
    ///     L402Config::new("api").capabilities(["read"]),
    ///     Arc::new(node),
    ///     Arc::new(MemoryStore::new()),
    /// );
    /// let reads = paywall.with_price(Price::sats(1)).with_capability("read");
    /// let writes = paywall.with_price(Price::sats(5)).with_capability("write");
    /// # let _ = (reads, writes);
    /// ```
    pub fn with_capability(&self, capability: impl Into<String>) -> L402Layer {
        L402Layer {
            shared: self.shared.clone(),
            price: self.price.clone(),
            capability: Some(Arc::from(capability.into())),
            scope: self.scope.clone(),
        }
    }

    /// Revokes a token: writes a revocation record (its root key is derived,
    /// so it cannot be deleted) and forgets the cached key. Returns whether
    /// the token had been used paid and was not yet revoked.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_server::{L402Config, L402Layer, store::MemoryStore};
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    /// let paywall = L402Layer::new(L402Config::new("api"), Arc::new(node), Arc::new(MemoryStore::new()));
    /// let existed = paywall.revoke(&pay402_core::l402::TokenId([0; 32])).await.unwrap();
    /// assert!(!existed);
    /// # });
    /// ```
    pub async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        self.shared.cache.remove(token_id);
        let existed = self.shared.store.revoke(token_id).await?;
        // Again, now that the revocation is committed: a request that read
        // the record before that does not keep the key.
        self.shared.cache.remove(token_id);
        tracing::info!(token_id = %token_id, existed, "l402.revoke");
        Ok(existed)
    }

    /// The configuration.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_server::{L402Config, L402Layer, store::MemoryStore};
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    /// let paywall = L402Layer::new(L402Config::new("api").free_path("/health"), Arc::new(node), Arc::new(MemoryStore::new()));
    /// assert!(paywall.config().is_free_path("/health"));
    /// ```
    pub fn config(&self) -> &L402Config {
        &self.shared.config
    }
}

impl<S> Layer<S> for L402Layer {
    type Service = L402Service<S>;
    fn layer(&self, inner: S) -> L402Service<S> {
        L402Service {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`L402Layer`].
///
/// ```
/// # use std::sync::Arc;
/// # use pay402_server::{L402Config, L402Layer, store::MemoryStore};
/// # use pay402_backends::simnet::SimNet;
/// # use pay402_core::{lightning::Network, money::Msat};
/// # let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
/// use tower::Layer;
/// let paywall = L402Layer::new(L402Config::new("api"), Arc::new(node), Arc::new(MemoryStore::new()));
/// let handler = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::from("hi")))
/// });
/// let service = paywall.layer(handler); // an L402Service
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct L402Service<S> {
    inner: S,
    layer: L402Layer,
}

impl<S> Service<Request<Body>> for L402Service<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = L402Future<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let shared = &self.layer.shared;
        // Fast path, no allocation of a request future: free paths, and a
        // valid token whose key is cached. Everything else (no or invalid
        // credential, cache miss, request binding) takes the full path below,
        // which redoes the checks and answers with the right reason. The fast
        // path's span is at DEBUG (nothing is logged on it at INFO; as
        // tower-http's request spans) and made with every field set, since
        // an INFO span costs a formatting of its fields on every request.
        if shared.config.is_free_path(req.uri().path()) {
            let span = tracing::debug_span!(
                "l402.request",
                method = %req.method(),
                path = %req.uri().path(),
                outcome = "free_path",
            );
            let finish: crate::cache::FinishResponse = crate::cache::unchanged;
            return Either::Left(self.inner.call(req).instrument(span).map(finish));
        }
        if !shared.config.bind_request
            && let Price::Fixed(price) = self.layer.price
        {
            let now = UnixTime::from_system(SystemTime::now());
            if let Some(token) = self.layer.fast_check(&req, price, now) {
                let span = tracing::debug_span!(
                    "l402.request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    outcome = "paid",
                );
                req.extensions_mut().insert(token);
                let finish = crate::cache::l402_paid(shared.config.paid_caching);
                return Either::Left(self.inner.call(req).instrument(span).map(finish));
            }
        }
        let span = tracing::info_span!(
            "l402.request",
            method = %req.method(),
            path = %req.uri().path(),
            outcome = field::Empty,
        );
        // Take the service that was driven to readiness; leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Either::Right(Box::pin(handle(layer, inner, req).instrument(span)))
    }
}

/// The future of an [`L402Service`]: the inner service's own future on the
/// fast path (free path, or valid token with a cached key), a boxed future
/// otherwise.
///
/// ```
/// fn is_future<F: std::future::Future>() {}
/// is_future::<pay402_server::L402Future<std::future::Ready<Result<axum::response::Response, std::convert::Infallible>>>>();
/// ```
pub type L402Future<F> = Either<Map<Instrumented<F>, crate::cache::FinishResponse>, BoxedResponse>;

/// A boxed response future.
///
/// ```
/// use pay402_server::BoxedResponse;
/// let f: BoxedResponse = Box::pin(async { Ok(axum::response::Response::new(axum::body::Body::empty())) });
/// # let _ = f;
/// ```
pub type BoxedResponse =
    Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send + 'static>>;

thread_local! {
    /// Scratch space for decoding macaroons on the synchronous fast path.
    static MACAROON_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl L402Layer {
    /// Verifies the request's credential synchronously when its key is
    /// cached, for a request costing `price`; `None` means "take the full
    /// path" (which also explains any rejection). The fast path of this
    /// layer and of [`Paywall`](crate::paywall::Paywall).
    pub(crate) fn fast_check(
        &self,
        req: &Request<Body>,
        price: Msat,
        now: UnixTime,
    ) -> Option<VerifiedToken> {
        let cred = Credential::from_headers(
            req.headers()
                .get_all(header::AUTHORIZATION)
                .iter()
                .map(HeaderValue::as_bytes),
        )
        .ok()??;
        MACAROON_BUF.with(|cell| {
            let mut buf = cell.try_borrow_mut().ok()?;
            let token = PresentedToken::decode(&cred, &mut buf).ok()?;
            let _verify =
                tracing::debug_span!("l402.verify", token_id = %token.token_id()).entered();
            let key = self.shared.cache.get(&token.token_id(), now)?;
            let scope = self.scope_of(req.extensions(), req.uri());
            let grant = Grant {
                scope: &scope,
                price,
            };
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let facts = RequestFacts::new(req.method(), path, req.headers());
            let verified = check(self, &token, &key, &facts, grant, now).ok()?;
            tracing::debug!("l402.verified");
            Some(verified)
        })
    }
}

/// Steps 4-5 of verification (signature, caveats) with this layer's service,
/// capability, strictness and user satisfiers, and the scope and price the
/// request requires the token to have paid for.
fn check(
    layer: &L402Layer,
    token: &PresentedToken<'_>,
    key: &CachedKey,
    facts: &RequestFacts<'_>,
    grant: Grant<'_>,
    now: UnixTime,
) -> Result<VerifiedToken, L402Error> {
    let cfg = &layer.shared.config;
    let mut ctx = VerifyContext::new(&cfg.service, now)
        .with_request(facts)
        .with_grant(grant)
        .strict(cfg.strict_caveats);
    ctx.capability = layer.capability.as_deref();
    if cfg.satisfiers.is_empty() {
        token.verify_cached(key, &[], &ctx)
    } else {
        let extra: Vec<&dyn Satisfier> = cfg.satisfiers.iter().map(|s| s.as_ref()).collect();
        token.verify_cached(key, &extra, &ctx)
    }
}

/// Why a presented token was not accepted.
enum Failure {
    Token(L402Error),
    Store(StoreError),
}

/// What the L402 credential of a request came to.
pub(crate) enum Verdict {
    /// No L402 credential.
    Absent,
    /// A valid token for the grant.
    Paid(VerifiedToken),
    /// A malformed or invalid credential.
    Rejected(L402Error),
    /// The store could not be read: 503.
    Unavailable(Response),
}

impl L402Layer {
    /// The request body: buffered (bounded by `max_body`) when tokens are
    /// bound to requests, the bytes beside a body made of them; otherwise
    /// `None` and the body untouched. `Err` is the 413 / 400 answer.
    pub(crate) async fn read_body(&self, body: Body) -> Result<(Option<Bytes>, Body), Response> {
        let cfg = &self.shared.config;
        if !cfg.bind_request {
            return Ok((None, body));
        }
        match Limited::new(body, cfg.max_body).collect().await {
            Ok(c) => {
                let bytes = c.to_bytes();
                Ok((Some(bytes.clone()), Body::from(bytes)))
            }
            Err(e) => {
                let (status, reason) = if e.is::<http_body_util::LengthLimitError>() {
                    (413, "body_too_large")
                } else {
                    (400, "body_unreadable")
                };
                tracing::info!(reason, "l402.reject");
                Err(respond::problem(&Problem::new(
                    status,
                    reason,
                    "Request body rejected",
                )))
            }
        }
    }

    /// Verifies the request's L402 credential (if any) for `grant`.
    pub(crate) async fn verify_credential(
        &self,
        parts: &Parts,
        body: Option<&[u8]>,
        grant: Grant<'_>,
        now: UnixTime,
    ) -> Verdict {
        let creds = Credential::from_headers(
            parts
                .headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .map(HeaderValue::as_bytes),
        );
        match creds {
            Ok(None) => Verdict::Absent,
            Err(e) => Verdict::Rejected(L402Error::Credential(e)),
            Ok(Some(cred)) => match verify(self, &cred, parts, body, grant, now).await {
                Ok(token) => Verdict::Paid(token),
                Err(Failure::Token(e)) => Verdict::Rejected(e),
                Err(Failure::Store(e)) => {
                    tracing::warn!(reason = e.reason(), error = %e, "l402.store_error");
                    Verdict::Unavailable(respond::problem(&Problem::from_reason(&e, 503)))
                }
            },
        }
    }

    /// The problem of an L402 402: what to pay and how to retry.
    pub(crate) fn payment_required_problem(amount: Msat) -> Problem {
        Problem::new(402, "payment_required", "Payment required").with_detail(format!(
            "pay the Lightning invoice of {} msat in the WWW-Authenticate challenge and retry with Authorization: L402 <macaroon>:<preimage>",
            amount.0
        ))
    }

    /// `None` if this layer's challenge limit admits one more challenge for
    /// the client of `parts`; otherwise the 429.
    pub(crate) fn over_challenge_limit(&self, parts: &Parts) -> Option<Response> {
        let limited = crate::limit::admit(
            self.shared.config.challenge_limit.as_deref(),
            &parts.extensions,
        )
        .err()?;
        tracing::info!(reason = "rate_limited", "l402.reject");
        Some(limited.response())
    }

    /// The answer to a request costing `amount` without a valid token: 400
    /// for a malformed credential in spec mode, the 429 of the challenge
    /// limit, or a fresh challenge (402, or 401 for a rejected credential in
    /// spec mode) with `WWW-Authenticate` and problem+json.
    pub(crate) async fn challenge(
        &self,
        amount: Msat,
        scope: &str,
        parts: &Parts,
        body: Option<&[u8]>,
        now: UnixTime,
        rejection: Option<&L402Error>,
    ) -> Response {
        let cfg = &self.shared.config;
        if let Some(e) = rejection {
            tracing::info!(reason = e.reason(), "l402.reject");
            if cfg.reject_mode == RejectMode::Spec && e.status() == 400 {
                tracing::Span::current().record("outcome", "malformed");
                return respond::problem(&Problem::from_reason(e, 400));
            }
        }
        if let Some(limited) = self.over_challenge_limit(parts) {
            tracing::Span::current().record("outcome", "rate_limited");
            return limited;
        }
        let challenge = match self.mint_challenge(amount, scope, parts, body, now).await {
            Ok(c) => c,
            Err(problem) => return respond::problem(&problem),
        };
        let status = match (rejection, cfg.reject_mode) {
            (Some(_), RejectMode::Spec) => 401,
            _ => 402,
        };
        let problem = match rejection {
            Some(e) => Problem::from_reason(e, status),
            None => Self::payment_required_problem(amount),
        };
        tracing::Span::current().record(
            "outcome",
            if status == 402 {
                "challenged"
            } else {
                "rejected"
            },
        );
        let mut resp = respond::problem(&problem);
        let h = resp.headers_mut();
        crate::cache::challenge(h, crate::cache::L402_CREDENTIALS);
        for value in challenge {
            h.append(header::WWW_AUTHENTICATE, value);
        }
        resp
    }
}

async fn handle<S>(
    layer: L402Layer,
    mut inner: S,
    req: Request<Body>,
) -> Result<Response, Infallible>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let cfg = &layer.shared.config;
    if cfg.is_free_path(req.uri().path()) {
        tracing::Span::current().record("outcome", "free_path");
        return inner.call(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let (body_bytes, body) = match layer.read_body(body).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let now = UnixTime::from_system(SystemTime::now());

    // The price of this request: a token must have paid at least this much.
    let amount = match &layer.price {
        Price::Fixed(m) => Some(*m),
        Price::Dynamic(f) => {
            f(PriceRequest {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                body: body_bytes.clone(),
            })
            .await
        }
    }
    .filter(|a| *a > Msat::ZERO);
    let scope = layer.scope_of(&parts.extensions, &parts.uri).into_owned();
    let grant = Grant {
        scope: &scope,
        price: amount.unwrap_or(Msat::ZERO),
    };

    let rejection = match layer
        .verify_credential(&parts, body_bytes.as_deref(), grant, now)
        .await
    {
        Verdict::Absent => None,
        Verdict::Rejected(e) => Some(e),
        Verdict::Unavailable(resp) => return Ok(resp),
        Verdict::Paid(token) => {
            tracing::Span::current().record("outcome", "paid");
            parts.extensions.insert(token);
            let mut resp = inner.call(Request::from_parts(parts, body)).await?;
            cfg.paid_caching
                .apply_paid(resp.headers_mut(), crate::cache::L402_CREDENTIALS);
            return Ok(resp);
        }
    };

    // No valid token: quote the price.
    let Some(amount) = amount else {
        if let Some(e) = &rejection {
            tracing::info!(reason = e.reason(), "l402.reject");
        }
        // A price of zero means free access, as in Aperture.
        tracing::Span::current().record("outcome", "free_price");
        return inner.call(Request::from_parts(parts, body)).await;
    };
    Ok(layer
        .challenge(
            amount,
            &scope,
            &parts,
            body_bytes.as_deref(),
            now,
            rejection.as_ref(),
        )
        .await)
}

async fn verify(
    layer: &L402Layer,
    cred: &Credential<'_>,
    parts: &Parts,
    body: Option<&[u8]>,
    grant: Grant<'_>,
    now: UnixTime,
) -> Result<VerifiedToken, Failure> {
    let shared = &layer.shared;
    let mut buf = Vec::new();
    let token = PresentedToken::decode(cred, &mut buf).map_err(Failure::Token)?;
    let id = token.token_id();
    let span = tracing::debug_span!("l402.verify", token_id = %id);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut facts = RequestFacts::new(&parts.method, path, &parts.headers);
    if let Some(b) = body {
        facts = facts.with_body(b);
    }
    if let Some(key) = span.in_scope(|| shared.cache.get(&id, now)) {
        let verified = span
            .in_scope(|| check(layer, &token, &key, &facts, grant, now))
            .map_err(Failure::Token)?;
        tracing::debug!(parent: &span, token_id = %id, "l402.verified");
        return Ok(verified);
    }
    // Cache miss: derive the key and check signature and caveats before any
    // store call, so an invalid token costs no I/O. The key remembers the
    // macaroon it verified, and is cached with that memo.
    let key = Arc::new(CachedKey::new(shared.store.secret().root_key(&id).derive()));
    let verified = span
        .in_scope(|| check(layer, &token, &key, &facts, grant, now))
        .map_err(Failure::Token)?;
    // First paid use records the token (binding its payment hash); later
    // uses read the record, which also carries revocation. A revocation
    // announced while the read runs keeps the key out of the cache.
    let epoch = shared.cache.epoch();
    let record = shared
        .store
        .record_use(id, &verified.payment_hash)
        .instrument(span.clone())
        .await
        .map_err(Failure::Store)?;
    if record.revoked {
        return Err(Failure::Token(L402Error::UnknownToken));
    }
    if record.payment_hash != Some(verified.payment_hash) {
        return Err(Failure::Token(L402Error::PaymentHashMismatch));
    }
    shared.cache.insert_unless_changed(id, key, now, epoch);
    tracing::debug!(parent: &span, token_id = %id, "l402.verified");
    Ok(verified)
}

/// Drops cached keys as the store announces revocations made by other
/// processes, until the layer or the store is gone. The store hands out a
/// feed only inside a Tokio runtime (it runs its listener there too).
fn follow_revocations(
    mut feed: tokio::sync::broadcast::Receiver<Revocation>,
    shared: std::sync::Weak<Shared>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let task = async move {
        loop {
            let event = feed.recv().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match event {
                Ok(Revocation::Revoked(id)) => {
                    shared.cache.remove(&id);
                    tracing::info!(token_id = %id, "l402.revoked_elsewhere");
                }
                Ok(Revocation::Resync) | Err(RecvError::Lagged(_)) => {
                    shared.cache.clear();
                    tracing::info!("l402.key_cache_cleared");
                }
                Err(RecvError::Closed) => return,
            }
        }
    };
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(task.instrument(tracing::info_span!("l402.revocation_feed")));
    }
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// Axum extractor for the token that paid for this request.
///
/// ```
/// use pay402_server::PaidToken;
/// async fn handler(PaidToken(token): PaidToken) -> String {
///     format!("paid with token {}", token.token_id)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct PaidToken(pub VerifiedToken);

impl<S: Send + Sync> FromRequestParts<S> for PaidToken {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedToken>()
            .cloned()
            .map(PaidToken)
            .ok_or_else(|| {
                respond::problem(&Problem::new(
                    402,
                    "payment_required",
                    "This route is not behind an L402 layer",
                ))
            })
    }
}

impl L402Layer {
    /// Mints a token for `amount` on `scope` and returns the `WWW-Authenticate`
    /// values (`LSAT` first when enabled). Writes nothing: the root key is derived from the store's secret.
    pub(crate) async fn mint_challenge(
        &self,
        amount: Msat,
        scope: &str,
        parts: &Parts,
        body: Option<&[u8]>,
        now: UnixTime,
    ) -> Result<Vec<HeaderValue>, Problem> {
        let shared = &self.shared;
        let cfg = &shared.config;
        let span =
            tracing::info_span!("l402.mint", amount_msat = amount.0, token_id = field::Empty);
        async {
            let memo = cfg
                .memo
                .replace("{method}", parts.method.as_str())
                .replace("{path}", parts.uri.path());
            let mut req = InvoiceRequest::new(amount, memo);
            req.expiry = cfg.invoice_expiry;
            let invoice = shared.issuer.create_invoice(&req).await.map_err(|e| {
                tracing::warn!(reason = e.reason(), error = %e, "l402.invoice_failed");
                Problem::from_reason(&e, 503)
            })?;
            let token_id = TokenId(random32());
            tracing::Span::current().record("token_id", field::display(&token_id));
            let root = shared.store.secret().root_key(&token_id);
            let id = Identifier::new(invoice.payment_hash, token_id);
            let mut mac = Macaroon::new(&root, Some(&cfg.location), &id.encode());
            drop(root);
            mac.add_first_party_caveat(caveat::build::services(&cfg.service, cfg.tier));
            mac.add_first_party_caveat(caveat::build::scope(&cfg.service, scope));
            mac.add_first_party_caveat(caveat::build::paid(&cfg.service, amount));
            if !cfg.capabilities.is_empty() {
                let caps: Vec<&str> = cfg.capabilities.iter().map(String::as_str).collect();
                mac.add_first_party_caveat(caveat::build::capabilities(&cfg.service, &caps));
            }
            if let Some(lifetime) = cfg.token_lifetime {
                let until = now.saturating_add_secs(lifetime.as_secs());
                mac.add_first_party_caveat(caveat::build::valid_until(&cfg.service, until));
            }
            if cfg.bind_request {
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let facts = RequestFacts::new(&parts.method, path, &parts.headers)
                    .with_body(body.unwrap_or_default());
                mac.add_first_party_caveat(caveat::build::request_binding(&facts));
            }
            for c in &cfg.extra_caveats {
                mac.add_first_party_caveat(c);
            }
            let challenge = Challenge::new(mac.to_base64(), invoice.bolt11);
            let mut values = Vec::with_capacity(2);
            let schemes: &[Scheme] = if cfg.emit_lsat {
                &[Scheme::Lsat, Scheme::L402]
            } else {
                &[Scheme::L402]
            };
            for s in schemes {
                let v = HeaderValue::from_str(&challenge.to_header_value(*s)).map_err(|_| {
                    Problem::new(
                        503,
                        "node_invalid_response",
                        "Invoice not usable in a header",
                    )
                })?;
                values.push(v);
            }
            tracing::info!("l402.minted");
            Ok(values)
        }
        .instrument(span)
        .await
    }
}
