//! An axum router serving the facilitator HTTP API over any
//! [`Facilitator`]: `POST /verify`, `POST /settle`, `GET /supported`.
//!
//! It answers what the official SDKs' `HTTPFacilitatorClient` expects:
//!
//! | outcome | status | body |
//! |---|---|---|
//! | a verify verdict (valid or not) | 200 | `VerifyResponse` |
//! | a settle verdict (success or not) | 200 | `SettleResponse`, `transaction` always present (`""` when nothing was sent) |
//! | settlement sent, not mined within the bound | 202 | `SettleResponse` with `success: false`, `errorReason: "settlement_pending"` and the transaction hash |
//! | `/supported` | 200 | `SupportedResponse` |
//! | `/verify` or `/settle` without a valid key ([`RouterAuth`]) | 401 | problem+json, reason `facilitator_unauthorized` |
//! | over a rate limit ([`RateLimit`]: per client address, then per payer) | 429 | problem+json, reason `facilitator_rate_limited`, `Retry-After` |
//! | malformed body | 400 | problem+json, reason `invalid_facilitator_request` |
//! | body too large | 413 | problem+json, reason `facilitator_request_too_large` |
//! | kind not served ([`FacilitatorError::Refused`]) | its 4xx | problem+json, reason `facilitator_refused` |
//! | chain or upstream unavailable | 503 (502 for a malformed upstream answer) | problem+json |
//!
//! A client fault is never a 5xx. Each request runs in a tracing span.
//!
//! **Never expose the router without authentication.** `/verify` and
//! `/settle` make the facilitator spend RPC work and gas; they require a key
//! ([`RouterAuth::bearer`] or [`RouterAuth::api_key`], compared in constant
//! time), matching what [`RemoteFacilitator`](super::RemoteFacilitator)'s
//! [`auth`](super::RemoteFacilitatorBuilder::auth) hook sends. `/supported`
//! (no RPC work) stays open, as the SDKs fetch it first.
//!
//! **Rate limits** ([`RateLimit`], GCRA from the `governor` crate): per
//! client IP address (checked first, before authentication and before the
//! body is read) and per payer (`authorization.from`, once the body is
//! parsed); `/supported` counts against the client's limit too. The client
//! address comes from axum's
//! [`ConnectInfo`](axum::extract::ConnectInfo): serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`, otherwise every
//! client shares one bucket. Behind a proxy, all clients share the proxy's
//! address.
//!
//! ```no_run
//! # async fn demo(facilitator: std::sync::Arc<dyn pay402_core::x402::Facilitator>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::SocketAddr;
//! use pay402_backends::x402::{router_with, RouterAuth, RouterConfig};
//! let auth = RouterAuth::bearer([std::env::var("FACILITATOR_TOKEN")?])?;
//! let app = router_with(facilitator, RouterConfig { max_body_bytes: 32 * 1024, ..RouterConfig::new(auth) });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4021").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use alloy::primitives::Address;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pay402_core::problem::{PROBLEM_JSON, Problem, Reason};
use pay402_core::x402::{Facilitator, FacilitatorError, PaymentRequest, SettleResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::Instrument;

/// The `errorReason` of a settlement that was sent but not yet mined (HTTP
/// 202 from [`router`]).
///
/// ```
/// assert_eq!(pay402_backends::x402::SETTLEMENT_PENDING, "settlement_pending");
/// ```
pub const SETTLEMENT_PENDING: &str = "settlement_pending";

/// The default request body limit (64 KiB: a payment is about 1 KiB).
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_MAX_BODY_BYTES, 64 * 1024);
/// ```
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// The shortest key [`RouterAuth`] accepts (16 bytes).
///
/// ```
/// assert_eq!(pay402_backends::x402::MIN_ROUTER_KEY_LEN, 16);
/// ```
pub const MIN_ROUTER_KEY_LEN: usize = 16;

/// The default rate limit per client IP address: 20 requests per second,
/// bursts of 40.
///
/// ```
/// let l = pay402_backends::x402::DEFAULT_CLIENT_RATE_LIMIT;
/// assert_eq!((l.per_second, l.burst), (20, 40));
/// ```
pub const DEFAULT_CLIENT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 20,
    burst: 40,
};

/// The default rate limit per payer (`authorization.from`): 2 requests
/// per second, bursts of 10.
///
/// ```
/// let l = pay402_backends::x402::DEFAULT_PAYER_RATE_LIMIT;
/// assert_eq!((l.per_second, l.burst), (2, 10));
/// ```
pub const DEFAULT_PAYER_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 2,
    burst: 10,
};

/// How many keys a rate limiter tracks before forgetting idle ones.
const MAX_TRACKED_KEYS: usize = 100_000;

/// Why a [`RouterAuth`] cannot be built.
///
/// ```
/// use pay402_backends::x402::{RouterAuth, RouterAuthError};
/// use pay402_core::problem::Reason;
/// let e = RouterAuth::bearer([""]).unwrap_err();
/// assert_eq!(e, RouterAuthError::KeyTooShort);
/// assert_eq!(e.reason(), "facilitator_router_key_too_short");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouterAuthError {
    /// No key was given.
    #[error("router authentication needs at least one key")]
    NoKeys,
    /// A key is shorter than [`MIN_ROUTER_KEY_LEN`] bytes.
    #[error("a router key must be at least {MIN_ROUTER_KEY_LEN} bytes")]
    KeyTooShort,
    /// A key cannot be sent in an HTTP header (control characters, spaces
    /// at its ends).
    #[error("a router key must be visible ASCII")]
    KeyNotHeaderSafe,
    /// The API-key header name is not a valid header name.
    #[error("{0:?} is not a valid header name")]
    InvalidHeaderName(String),
}

impl Reason for RouterAuthError {
    fn reason(&self) -> &'static str {
        match self {
            RouterAuthError::NoKeys => "facilitator_router_no_keys",
            RouterAuthError::KeyTooShort => "facilitator_router_key_too_short",
            RouterAuthError::KeyNotHeaderSafe => "facilitator_router_key_not_header_safe",
            RouterAuthError::InvalidHeaderName(_) => "facilitator_router_invalid_header_name",
        }
    }
    fn status(&self) -> u16 {
        500
    }
}

#[derive(Clone)]
enum AuthKind {
    /// `Authorization: Bearer <key>` (`bearer: true`) or `<header>: <key>`.
    Keys {
        header: HeaderName,
        bearer: bool,
        /// SHA-256 of each accepted key (compared in constant time).
        digests: Arc<[[u8; 32]]>,
    },
    Open,
}

/// Who may call `/verify` and `/settle`.
///
/// Keys are kept as SHA-256 digests and compared in constant time; a key
/// never appears in logs or in `Debug`.
///
/// ```
/// use pay402_backends::x402::RouterAuth;
/// let bearer = RouterAuth::bearer(["a-long-random-token-0123456789"])?;
/// let api_key = RouterAuth::api_key("x-api-key", ["another-long-random-key-98765"])?;
/// assert!(format!("{bearer:?}").contains("bearer"));
/// # Ok::<(), pay402_backends::x402::RouterAuthError>(())
/// ```
#[derive(Clone)]
pub struct RouterAuth {
    kind: AuthKind,
}

impl fmt::Debug for RouterAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            AuthKind::Keys {
                header,
                bearer,
                digests,
            } => f
                .debug_struct("RouterAuth")
                .field("scheme", &if *bearer { "bearer" } else { "api key" })
                .field("header", header)
                .field("keys", &digests.len())
                .finish(),
            AuthKind::Open => f.write_str("RouterAuth(unauthenticated)"),
        }
    }
}

impl RouterAuth {
    /// Accepts `Authorization: Bearer <key>` for any of `keys` (each at
    /// least [`MIN_ROUTER_KEY_LEN`] bytes of visible ASCII).
    ///
    /// # Errors
    ///
    /// [`RouterAuthError`] for no key or a short or unsendable one.
    ///
    /// ```
    /// use pay402_backends::x402::RouterAuth;
    /// assert!(RouterAuth::bearer(["short"]).is_err());
    /// assert!(RouterAuth::bearer(Vec::<String>::new()).is_err());
    /// assert!(RouterAuth::bearer(["0123456789abcdef"]).is_ok());
    /// ```
    pub fn bearer<I, S>(keys: I) -> Result<RouterAuth, RouterAuthError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(RouterAuth {
            kind: AuthKind::Keys {
                header: header::AUTHORIZATION,
                bearer: true,
                digests: digests(keys)?,
            },
        })
    }

    /// Accepts `<header>: <key>` (for example `x-api-key`) for any of
    /// `keys` (each at least [`MIN_ROUTER_KEY_LEN`] bytes of visible ASCII).
    ///
    /// # Errors
    ///
    /// [`RouterAuthError`] for an invalid header name, no key, or a short
    /// or unsendable key.
    ///
    /// ```
    /// use pay402_backends::x402::RouterAuth;
    /// assert!(RouterAuth::api_key("x-api-key", ["0123456789abcdef"]).is_ok());
    /// assert!(RouterAuth::api_key("bad header", ["0123456789abcdef"]).is_err());
    /// ```
    pub fn api_key<I, S>(header_name: &str, keys: I) -> Result<RouterAuth, RouterAuthError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let header = HeaderName::from_bytes(header_name.as_bytes())
            .map_err(|_| RouterAuthError::InvalidHeaderName(header_name.to_owned()))?;
        Ok(RouterAuth {
            kind: AuthKind::Keys {
                header,
                bearer: false,
                digests: digests(keys)?,
            },
        })
    }

    /// **No authentication**: anyone who reaches the router can make the
    /// facilitator spend RPC work and gas. Only for a router bound to
    /// loopback in tests, or behind a gateway that authenticates. Never
    /// expose it.
    ///
    /// ```
    /// use pay402_backends::x402::RouterAuth;
    /// let open = RouterAuth::unauthenticated_do_not_expose();
    /// assert_eq!(format!("{open:?}"), "RouterAuth(unauthenticated)");
    /// ```
    pub fn unauthenticated_do_not_expose() -> RouterAuth {
        RouterAuth {
            kind: AuthKind::Open,
        }
    }

    /// Whether `headers` carry an accepted key. Every stored digest is
    /// compared (constant time, no early exit).
    fn admits(&self, headers: &HeaderMap) -> bool {
        let AuthKind::Keys {
            header,
            bearer,
            digests,
        } = &self.kind
        else {
            return true;
        };
        let mut values = headers.get_all(header).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let presented = value.as_bytes();
        let key = if *bearer {
            match presented.split_first_chunk::<7>() {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest,
                _ => return false,
            }
        } else {
            presented
        };
        let digest: [u8; 32] = Sha256::digest(key).into();
        digests
            .iter()
            .fold(false, |found, d| found | pay402_core::ct::eq32(d, &digest))
    }

    fn challenge(&self) -> Option<HeaderValue> {
        match &self.kind {
            AuthKind::Keys { bearer: true, .. } => Some(HeaderValue::from_static(
                "Bearer realm=\"x402-facilitator\"",
            )),
            _ => None,
        }
    }
}

fn digests<I, S>(keys: I) -> Result<Arc<[[u8; 32]]>, RouterAuthError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for k in keys {
        let k = k.as_ref();
        if k.len() < MIN_ROUTER_KEY_LEN {
            return Err(RouterAuthError::KeyTooShort);
        }
        if !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RouterAuthError::KeyNotHeaderSafe);
        }
        out.push(Sha256::digest(k.as_bytes()).into());
    }
    if out.is_empty() {
        return Err(RouterAuthError::NoKeys);
    }
    Ok(out.into())
}

/// A rate limit: `per_second` requests replenished per second, bursts of
/// up to `burst` (GCRA). A zero is treated as 1.
///
/// ```
/// use pay402_backends::x402::RateLimit;
/// let l = RateLimit { per_second: 5, burst: 20 };
/// assert_eq!(l.burst, 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests replenished per second.
    pub per_second: u32,
    /// The most requests accepted at once.
    pub burst: u32,
}

impl RateLimit {
    fn quota(self) -> Quota {
        let one = NonZeroU32::MIN;
        Quota::per_second(NonZeroU32::new(self.per_second).unwrap_or(one))
            .allow_burst(NonZeroU32::new(self.burst).unwrap_or(one))
    }
}

/// Settings of [`router_with`]. There is no `Default`: authentication
/// must be chosen ([`RouterConfig::new`]).
///
/// ```
/// use pay402_backends::x402::{RouterAuth, RouterConfig};
/// let config = RouterConfig::new(RouterAuth::bearer(["0123456789abcdef"])?);
/// assert_eq!(config.max_body_bytes, 64 * 1024);
/// assert!(config.per_payer.is_some());
/// # Ok::<(), pay402_backends::x402::RouterAuthError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// The largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Who may call `/verify` and `/settle`.
    pub auth: RouterAuth,
    /// The rate limit per client IP address (`None`: unlimited; default
    /// [`DEFAULT_CLIENT_RATE_LIMIT`]).
    pub per_client: Option<RateLimit>,
    /// The rate limit per payer (`None`: unlimited; default
    /// [`DEFAULT_PAYER_RATE_LIMIT`]).
    pub per_payer: Option<RateLimit>,
}

impl RouterConfig {
    /// The defaults ([`DEFAULT_MAX_BODY_BYTES`], [`DEFAULT_CLIENT_RATE_LIMIT`],
    /// [`DEFAULT_PAYER_RATE_LIMIT`]) with `auth`.
    ///
    /// ```
    /// use pay402_backends::x402::{RouterAuth, RouterConfig, DEFAULT_CLIENT_RATE_LIMIT};
    /// let c = RouterConfig::new(RouterAuth::api_key("x-api-key", ["0123456789abcdef"])?);
    /// assert_eq!(c.per_client, Some(DEFAULT_CLIENT_RATE_LIMIT));
    /// # Ok::<(), pay402_backends::x402::RouterAuthError>(())
    /// ```
    pub fn new(auth: RouterAuth) -> RouterConfig {
        RouterConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            auth,
            per_client: Some(DEFAULT_CLIENT_RATE_LIMIT),
            per_payer: Some(DEFAULT_PAYER_RATE_LIMIT),
        }
    }
}

struct Limiter<K: Clone + std::hash::Hash + Eq> {
    inner: DefaultKeyedRateLimiter<K>,
}

impl<K: Clone + std::hash::Hash + Eq> Limiter<K> {
    fn new(limit: RateLimit) -> Self {
        Limiter {
            inner: DefaultKeyedRateLimiter::keyed(limit.quota()),
        }
    }

    /// `Ok` or the time to wait.
    fn check(&self, key: &K) -> Result<(), std::time::Duration> {
        if self.inner.len() > MAX_TRACKED_KEYS {
            self.inner.retain_recent();
            self.inner.shrink_to_fit();
        }
        self.inner
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[derive(Clone)]
struct Shared {
    facilitator: Arc<dyn Facilitator>,
    max_body_bytes: usize,
    auth: RouterAuth,
    per_client: Option<Arc<Limiter<IpAddr>>>,
    per_payer: Option<Arc<Limiter<Address>>>,
}

/// The facilitator API over `facilitator`, with [`RouterConfig::new`]`(auth)`.
///
/// ```no_run
/// # async fn demo(f: pay402_backends::x402::LocalFacilitator) -> Result<(), pay402_backends::x402::RouterAuthError> {
/// use std::sync::Arc;
/// use pay402_backends::x402::RouterAuth;
/// let app: axum::Router = pay402_backends::x402::router(Arc::new(f), RouterAuth::bearer(["0123456789abcdef"])?);
/// # Ok(()) }
/// ```
pub fn router(facilitator: Arc<dyn Facilitator>, auth: RouterAuth) -> Router {
    router_with(facilitator, RouterConfig::new(auth))
}

/// The facilitator API over `facilitator`, with `config`.
///
/// ```no_run
/// # async fn demo(f: pay402_backends::x402::LocalFacilitator) -> Result<(), pay402_backends::x402::RouterAuthError> {
/// use std::sync::Arc;
/// use pay402_backends::x402::{router_with, RouterAuth, RouterConfig};
/// let config = RouterConfig { max_body_bytes: 16 * 1024, ..RouterConfig::new(RouterAuth::bearer(["0123456789abcdef"])?) };
/// let app = router_with(Arc::new(f), config);
/// # Ok(()) }
/// ```
pub fn router_with(facilitator: Arc<dyn Facilitator>, config: RouterConfig) -> Router {
    Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .fallback(not_found)
        .with_state(Shared {
            facilitator,
            max_body_bytes: config.max_body_bytes,
            auth: config.auth,
            per_client: config.per_client.map(|l| Arc::new(Limiter::new(l))),
            per_payer: config.per_payer.map(|l| Arc::new(Limiter::new(l))),
        })
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "facilitator_internal_error",
            &format!("cannot encode the answer: {e}"),
        ),
    }
}

fn problem(status: StatusCode, reason: &str, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = Problem::new(status.as_u16(), reason, title)
        .with_detail(detail)
        .to_json();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

fn error_response(e: &FacilitatorError) -> Response {
    let status = match e {
        FacilitatorError::Refused { status, .. } => StatusCode::from_u16(*status)
            .ok()
            .filter(StatusCode::is_client_error)
            .unwrap_or(StatusCode::BAD_REQUEST),
        FacilitatorError::InvalidResponse(_) => StatusCode::BAD_GATEWAY,
        FacilitatorError::Unavailable(_) | FacilitatorError::Pending { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "facilitator could not answer");
    } else {
        tracing::info!(error = %e, "request refused");
    }
    problem(status, e.reason(), &e.to_string())
}

fn rate_limited(wait: std::time::Duration, what: &str) -> Response {
    let mut resp = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "facilitator_rate_limited",
        &format!("too many requests from this {what}; retry later"),
    );
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The client's address. Without `ConnectInfo`, every client shares the
/// unspecified address.
fn client_addr(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The 429 answer when `client` is over the per-client rate limit.
fn over_client_limit(shared: &Shared, client: IpAddr) -> Option<Response> {
    let wait = shared.per_client.as_ref()?.check(&client).err()?;
    tracing::info!(%client, "client rate limited");
    Some(rate_limited(wait, "client address"))
}

/// The cheap refusals first (client rate limit, authentication), then the
/// body (400/413), then the payer's rate limit: the parsed request, or the
/// answer refusing it.
async fn admit(shared: &Shared, request: Request) -> Result<PaymentRequest, Response> {
    let client = client_addr(&request);
    if let Some(resp) = over_client_limit(shared, client) {
        return Err(resp);
    }
    if !shared.auth.admits(request.headers()) {
        tracing::info!(%client, "unauthenticated request refused");
        let mut resp = problem(
            StatusCode::UNAUTHORIZED,
            "facilitator_unauthorized",
            "this facilitator requires an API key",
        );
        if let Some(challenge) = shared.auth.challenge() {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        return Err(resp);
    }
    let parsed = read_request(shared, request.into_body()).await?;
    if let Some(limiter) = &shared.per_payer {
        let payer = parsed.exact_payload().authorization.from.0;
        if let Err(wait) = limiter.check(&payer) {
            tracing::info!(%payer, "payer rate limited");
            return Err(rate_limited(wait, "payer"));
        }
    }
    Ok(parsed)
}

/// Reads and parses the body, or the 400/413 answer.
async fn read_request(shared: &Shared, body: Body) -> Result<PaymentRequest, Response> {
    let max = shared.max_body_bytes;
    let bytes = match Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let mut resp = problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "facilitator_request_too_large",
                &format!("the body exceeds {max} bytes"),
            );
            // The rest of the body is unread: the connection cannot carry
            // another request, and a client reusing it would fail writing.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(resp);
        }
        Err(e) => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "invalid_facilitator_request",
                &format!("cannot read the body: {e}"),
            ));
        }
    };
    PaymentRequest::from_json_slice(&bytes).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            "invalid_facilitator_request",
            &format!("expected {{x402Version, paymentPayload, paymentRequirements}}: {e}"),
        )
    })
}

async fn verify(State(shared): State<Shared>, req: Request) -> Response {
    let span = tracing::info_span!("x402_facilitator_http", endpoint = "verify");
    async move {
        let request = match admit(&shared, req).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        match shared.facilitator.verify(&request).await {
            Ok(v) => {
                tracing::info!(valid = v.is_valid, reason = ?v.invalid_reason, "verified");
                json(StatusCode::OK, &v)
            }
            Err(e) => error_response(&e),
        }
    }
    .instrument(span)
    .await
}

async fn settle(State(shared): State<Shared>, req: Request) -> Response {
    let span = tracing::info_span!("x402_facilitator_http", endpoint = "settle");
    async move {
        let request = match admit(&shared, req).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        match shared.facilitator.settle(&request).await {
            Ok(mut s) => {
                // The reference client requires `transaction` (a string).
                if s.transaction.is_none() {
                    s.transaction = Some(String::new());
                }
                if s.network.is_empty() {
                    s.network = request.network().to_owned();
                }
                tracing::info!(success = s.success, reason = ?s.error_reason, tx = ?s.transaction, "settled");
                pay402_core::fault::point(pay402_core::fault::Step::BeforeResponse);
                json(StatusCode::OK, &s)
            }
            Err(FacilitatorError::Pending {
                transaction,
                network,
            }) => {
                tracing::warn!(%transaction, "settlement pending");
                let body = SettleResponse {
                    success: false,
                    error_reason: Some(SETTLEMENT_PENDING.to_owned()),
                    error_message: Some(
                        "the settlement transaction was sent but is not mined yet; settle again or reconcile later"
                            .to_owned(),
                    ),
                    transaction: Some(transaction),
                    network,
                    payer: Some(request.exact_payload().authorization.from.to_string()),
                    ..SettleResponse::default()
                };
                json(StatusCode::ACCEPTED, &body)
            }
            Err(e) => error_response(&e),
        }
    }
    .instrument(span)
    .await
}

async fn supported(State(shared): State<Shared>, req: Request) -> Response {
    let span = tracing::info_span!("x402_facilitator_http", endpoint = "supported");
    async move {
        if let Some(resp) = over_client_limit(&shared, client_addr(&req)) {
            return resp;
        }
        match shared.facilitator.supported().await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(e) => error_response(&e),
        }
    }
    .instrument(span)
    .await
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "this facilitator serves POST /verify, POST /settle and GET /supported",
    )
}
