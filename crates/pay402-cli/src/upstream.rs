//! Forwarding one request to a service's upstream: streamed both ways,
//! pooled connections, hop-by-hop headers dropped, `Forwarded` and
//! `X-Forwarded-*` set, payment proofs stripped.
//!
//! HTTP/1.1 upstream connections are driven by the request's own task: a
//! request takes an idle connection from its service's pool (or opens one),
//! polls it itself while the request and the response body go through, and
//! puts it back once the response body has ended. No other task sits
//! between the client's connection and the upstream's, so a forwarded
//! request costs no task hand-off (the pool of `hyper-util`'s client runs
//! every connection on a task of its own, and each request crossed to it
//! and back). Upgrade requests (WebSocket) get a connection of their own;
//! HTTP/2 upstreams (`upstream_http2`, gRPC) share one multiplexed
//! connection per service, driven by its own task as HTTP/2 needs.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pay402_core::l402::VerifiedToken;
use pay402_server::x402::X402Payment;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::Service;

use crate::metrics::ServiceMetrics;
use crate::paywall::{is_l402_authorization, is_payment_authorization};

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The header of a BitRequests bit-transfer (its signature is in
/// `Authorization`).
static BITCOIN_TRANSFER: HeaderName = HeaderName::from_static("bitcoin-transfer");

/// Payment proof headers of the x402 rail (the L402 one is `Authorization`
/// with the `L402`/`LSAT` scheme), and the proxy's internal price headers.
const PROOF_HEADERS: [&str; 4] = [
    "payment-signature",
    "x-payment",
    crate::pricer::L402_PRICE_HEADER,
    crate::pricer::X402_PRICE_HEADER,
];

/// How long an idle upstream connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream (more are closed when they come back).
const MAX_IDLE: usize = 256;
/// The longest wait for a TCP connection (and TLS handshake) to an upstream.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the proxy reaches one service's upstream.
///
/// See [`Upstream`].
pub struct UpstreamConfig {
    /// The service name (logs, metrics).
    pub service: String,
    /// The upstream's base URL (`http` or `https`; its path prefixes every
    /// forwarded path).
    pub base: reqwest::Url,
    /// The longest wait: for the response head, and between two frames of
    /// the response body; connecting waits at most the smaller of this and
    /// 10 s.
    pub timeout: Duration,
    /// HTTP/2 with prior knowledge (h2c, or h2 by ALPN over TLS).
    pub http2: bool,
    /// TLS settings for an `https` upstream (see [`crate::tls::client_config`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Headers added to every forwarded request.
    pub add_headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed from every forwarded request.
    pub strip_headers: Vec<HeaderName>,
    /// The header carrying the payment's identity, if asked for.
    pub identity_header: Option<HeaderName>,
    /// The service's metric handles.
    pub metrics: Arc<ServiceMetrics>,
}

/// A service's upstream.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use pay402_cli::upstream::{Upstream, UpstreamConfig};
/// let u = Upstream::new(UpstreamConfig {
///     service: "api".into(),
///     base: "http://127.0.0.1:9000".parse().unwrap(),
///     timeout: std::time::Duration::from_secs(30),
///     http2: false,
///     tls: None,
///     add_headers: vec![],
///     strip_headers: vec![],
///     identity_header: None,
///     metrics: Arc::new(pay402_cli::metrics::ServiceMetrics::new("api")),
/// })
/// .unwrap();
/// assert_eq!(u.base().port(), Some(9000));
/// # }
/// ```
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    metrics: Arc<ServiceMetrics>,
    base: reqwest::Url,
    target: Target,
    timeout: Duration,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    http2: bool,
    /// Idle HTTP/1.1 connections, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The shared HTTP/2 connection.
    h2: tokio::sync::Mutex<Option<http2::SendRequest<Body>>>,
    add_headers: Vec<(HeaderName, HeaderValue)>,
    strip_headers: Vec<HeaderName>,
    identity_header: Option<HeaderName>,
}

/// Where requests go, split once at startup.
struct Target {
    scheme: Scheme,
    authority: Authority,
    /// `Host` of HTTP/1.1 requests.
    host: HeaderValue,
    /// The base URL's path without its trailing `/` (empty for `/`).
    prefix: String,
    /// What to connect to.
    addr: Addr,
}

enum Addr {
    Ip(SocketAddr),
    Name(String, u16),
}

/// Why an upstream cannot be set up.
///
/// ```
/// let e = pay402_cli::upstream::UpstreamSetupError("no host".into());
/// assert_eq!(e.to_string(), "upstream: no host");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("upstream: {0}")]
pub struct UpstreamSetupError(pub String);

impl Upstream {
    /// An upstream reached as `config` says. Must be called within a tokio
    /// runtime (a task closes idle connections past their time).
    ///
    /// See [`Upstream`].
    pub fn new(config: UpstreamConfig) -> Result<Upstream, UpstreamSetupError> {
        let err = |m: &str| UpstreamSetupError(format!("{}: {m}", config.base));
        let base = &config.base;
        let scheme = match base.scheme() {
            "http" => Scheme::HTTP,
            "https" => Scheme::HTTPS,
            _ => return Err(err("the scheme must be http or https")),
        };
        let port = base.port_or_known_default().ok_or_else(|| err("no port"))?;
        let (addr, host_text) = match base.host() {
            Some(url::Host::Ipv4(ip)) => {
                (Addr::Ip(SocketAddr::new(ip.into(), port)), ip.to_string())
            }
            Some(url::Host::Ipv6(ip)) => (
                Addr::Ip(SocketAddr::new(ip.into(), port)),
                format!("[{ip}]"),
            ),
            Some(url::Host::Domain(d)) => (Addr::Name(d.to_owned(), port), d.to_owned()),
            None => return Err(err("no host")),
        };
        let authority_text = match base.port() {
            Some(p) => format!("{host_text}:{p}"),
            None => host_text.clone(),
        };
        let authority: Authority = authority_text.parse().map_err(|_| err("bad host"))?;
        let host = HeaderValue::from_str(&authority_text).map_err(|_| err("bad host"))?;
        let tls = match (&scheme, config.tls) {
            (s, Some(c)) if *s == Scheme::HTTPS => {
                let name = rustls::pki_types::ServerName::try_from(
                    host_text
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                )
                .map_err(|_| err("the host is not a valid TLS server name"))?;
                Some((tokio_rustls::TlsConnector::from(c), name))
            }
            (s, None) if *s == Scheme::HTTPS => return Err(err("https needs TLS settings")),
            _ => None,
        };
        let prefix = base.path().trim_end_matches('/').to_owned();
        let inner = Arc::new(Inner {
            service: config.service,
            metrics: config.metrics,
            base: config.base.clone(),
            target: Target {
                scheme,
                authority,
                host,
                prefix,
                addr,
            },
            timeout: config.timeout,
            tls,
            http2: config.http2,
            idle: Mutex::new(Vec::new()),
            h2: tokio::sync::Mutex::new(None),
            add_headers: config.add_headers,
            strip_headers: config.strip_headers,
            identity_header: config.identity_header,
        });
        if !inner.http2
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(reap_idle(Arc::downgrade(&inner)));
        }
        Ok(Upstream { inner })
    }

    /// The upstream's base URL.
    ///
    /// See [`Upstream`].
    pub fn base(&self) -> &reqwest::Url {
        &self.inner.base
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(forward(inner, req).await) })
    }
}

/// The upstream path and query for a request: the base path, then the
/// request's path and query.
///
/// ```
/// let uri: http::Uri = "/v1/x?a=1".parse().unwrap();
/// let pq = pay402_cli::upstream::target_path("/api", &uri).unwrap();
/// assert_eq!(pq.as_str(), "/api/v1/x?a=1");
/// assert_eq!(pay402_cli::upstream::target_path("", &uri).unwrap().as_str(), "/v1/x?a=1");
/// ```
pub fn target_path(prefix: &str, uri: &Uri) -> Option<PathAndQuery> {
    match (prefix.is_empty(), uri.path_and_query()) {
        // The common case: the request's own (shared, not copied).
        (true, Some(pq)) => Some(pq.clone()),
        (true, None) => Some(PathAndQuery::from_static("/")),
        (false, pq) => {
            let pq = pq.map_or("/", PathAndQuery::as_str);
            let mut s = String::with_capacity(prefix.len() + pq.len());
            s.push_str(prefix);
            s.push_str(pq);
            PathAndQuery::from_maybe_shared(Bytes::from(s)).ok()
        }
    }
}

/// A failed exchange with the upstream, before its response head.
enum Failure {
    Timeout,
    Connect(std::io::Error),
    Http(hyper::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Http(e) => write!(f, "{e}"),
        }
    }
}

async fn forward(inner: Arc<Inner>, req: Request<Body>) -> Response {
    let (mut parts, body) = req.into_parts();
    // An upgrade (WebSocket or any other protocol): forwarded with its
    // Connection/Upgrade headers; on 101 both connections are spliced.
    let upgrade = upgrade_protocol(&parts.headers);
    let client_upgrade = match upgrade {
        Some(_) => parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
        None => None,
    };
    let Some(pq) = target_path(&inner.target.prefix, &parts.uri) else {
        return ProxyError::InvalidPath.into_response();
    };
    let client_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });

    let mut headers = request_headers(&parts.headers, &inner);
    let proto = if parts.extensions.get::<crate::tls::Https>().is_some() {
        "https"
    } else {
        "http"
    };
    set_forwarded(&mut headers, client_ip, host.as_ref(), proto);
    if let Some(name) = &inner.identity_header
        && let Some(id) = payment_identity(&parts.extensions)
    {
        headers.insert(name.clone(), id);
    }
    let upgrading = matches!((&upgrade, &client_upgrade), (Some(_), Some(_)));
    if let (Some(protocol), true) = (&upgrade, upgrading) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }

    // HTTP/2 requests (gRPC) carry a body without Content-Length.
    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING)
        || !http_body::Body::is_end_stream(&body);
    let body = if has_body { body } else { Body::empty() };
    let uri = if inner.http2 {
        let mut u = http::uri::Parts::default();
        u.scheme = Some(inner.target.scheme.clone());
        u.authority = Some(inner.target.authority.clone());
        u.path_and_query = Some(pq);
        Uri::from_parts(u).unwrap_or_default()
    } else {
        headers.insert(header::HOST, inner.target.host.clone());
        Uri::from(pq)
    };
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;

    let started = Instant::now();
    let result = if inner.http2 {
        send_h2(&inner, out).await
    } else if upgrading {
        send_upgrade(&inner, out).await
    } else {
        send_h1(&inner, out).await
    };
    inner.metrics.upstream_latency(started.elapsed());
    match result {
        Ok(Sent::Upgrade(resp)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            match client_upgrade {
                Some(on_upgrade) => splice(&inner.service, resp, on_upgrade).await,
                None => ProxyError::UpstreamInvalidResponse.into_response(),
            }
        }
        Ok(sent) => {
            let (head, body) = match sent {
                Sent::Pooled(head, body) => (head, body),
                Sent::Upgrade(resp) | Sent::Shared(resp) => {
                    let (head, body) = resp.into_parts();
                    (head, Body::new(IdleTimeout::new(body, inner.timeout)))
                }
            };
            let mut resp = Response::new(body);
            *resp.status_mut() = head.status;
            copy_end_to_end(&head.headers, resp.headers_mut());
            resp
        }
        Err(e) => {
            let err = match e {
                Failure::Timeout => ProxyError::UpstreamTimeout,
                _ => ProxyError::UpstreamUnreachable,
            };
            tracing::warn!(service = %inner.service, reason = %err, error = %e, "upstream request failed");
            crate::metrics::upstream_error(
                &inner.service,
                pay402_core::problem::Reason::reason(&err),
            );
            err.into_response()
        }
    }
}

/// The upstream's answer.
enum Sent {
    /// From a pooled HTTP/1.1 connection, which rides along in the body.
    Pooled(http::response::Parts, Body),
    /// To an upgrade request, on its own connection.
    Upgrade(Response<Incoming>),
    /// From the shared HTTP/2 connection.
    Shared(Response<Incoming>),
}

// ---------------------------------------------------------------- connect

/// A TCP connection to the upstream, with TLS for `https`.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Io = TokioIo<Stream>;

impl Inner {
    /// A new connection: TCP (no Nagle delay), then TLS when `https`, all
    /// within the connect timeout.
    async fn connect(&self) -> Result<Io, Failure> {
        let limit = self.timeout.min(MAX_CONNECT_TIMEOUT);
        let connect = async {
            let tcp = match &self.target.addr {
                Addr::Ip(a) => TcpStream::connect(a).await,
                Addr::Name(host, port) => TcpStream::connect((host.as_str(), *port)).await,
            }
            .map_err(Failure::Connect)?;
            tcp.set_nodelay(true).map_err(Failure::Connect)?;
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|s| Stream::Tls(Box::new(s)))
                    .map_err(Failure::Connect),
            }
        };
        match tokio::time::timeout(limit, connect).await {
            Ok(s) => Ok(TokioIo::new(s?)),
            Err(_) => Err(Failure::Timeout),
        }
    }
}

// ---------------------------------------------------------------- HTTP/1.1 pool

type H1Conn = http1::Connection<Io, Body>;

/// An idle HTTP/1.1 connection: the sender and the connection itself,
/// which whoever uses it polls.
struct Idle {
    send: http1::SendRequest<Body>,
    conn: H1Conn,
    since: Instant,
}

impl Inner {
    /// The most recently used idle connection still open, if any.
    fn take_idle(&self, cx: &mut Context<'_>) -> Option<(http1::SendRequest<Body>, H1Conn)> {
        loop {
            let mut idle = {
                let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                pool.pop()?
            };
            if idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // Polling notices a connection the upstream closed meanwhile.
            if Pin::new(&mut idle.conn).poll(cx).is_ready() {
                continue;
            }
            match idle.send.poll_ready(cx) {
                Poll::Ready(Ok(())) => return Some((idle.send, idle.conn)),
                _ => continue,
            }
        }
    }

    /// Puts a connection whose exchange is complete back in the pool.
    fn put_idle(&self, send: http1::SendRequest<Body>, conn: H1Conn) {
        if send.is_closed() {
            return;
        }
        let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < MAX_IDLE {
            pool.push(Idle {
                send,
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn new_h1(&self) -> Result<(http1::SendRequest<Body>, H1Conn), Failure> {
        let io = self.connect().await?;
        http1::Builder::new()
            .handshake(io)
            .await
            .map_err(Failure::Http)
    }
}

/// Closes idle connections past their time, or closed by the upstream,
/// every few seconds, until the upstream is dropped.
async fn reap_idle(inner: Weak<Inner>) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut pool = inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        pool.retain_mut(|i| {
            i.since.elapsed() <= IDLE_TIMEOUT && Pin::new(&mut i.conn).poll(&mut cx).is_pending()
        });
    }
}

/// Sends `req` on an idle connection, or a new one, polling the connection
/// from this task until the response head arrives.
async fn send_h1(inner: &Arc<Inner>, mut req: Request<Body>) -> Result<Sent, Failure> {
    let mut retried = false;
    loop {
        let taken = std::future::poll_fn(|cx| Poll::Ready(inner.take_idle(cx))).await;
        let (mut send, mut conn) = match taken {
            Some(c) => c,
            None => {
                retried = true;
                inner.new_h1().await?
            }
        };
        let mut response = std::pin::pin!(send.try_send_request(req));
        let mut conn_done = false;
        let exchange = std::future::poll_fn(|cx| {
            if !conn_done && let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
                conn_done = true;
                if let Err(e) = r {
                    // The response future gives the same error, and the
                    // request back if it was never written.
                    tracing::trace!(error = %e, "upstream connection ended");
                }
            }
            response.as_mut().poll(cx)
        });
        let outcome = tokio::time::timeout(inner.timeout, exchange).await;
        match outcome {
            Err(_) => return Err(Failure::Timeout),
            Ok(Ok(resp)) => {
                let (head, body) = resp.into_parts();
                let conn = (!conn_done).then_some(conn);
                let body = PooledBody {
                    body,
                    conn: conn.map(|c| (send, c)),
                    inner: inner.clone(),
                    ended: false,
                    timeout: inner.timeout,
                    idle: None,
                };
                return Ok(Sent::Pooled(head, Body::new(body)));
            }
            Ok(Err(mut e)) => match e.take_message() {
                // Never written (the pooled connection was closing): once
                // more, on a fresh connection.
                Some(r) if !retried => {
                    req = r;
                    retried = true;
                    let (send, conn) = inner.new_h1().await?;
                    inner.put_idle(send, conn);
                }
                _ => return Err(Failure::Http(e.into_error())),
            },
        }
    }
}

/// The response body of a pooled connection: polls the connection along
/// with the body, so the bytes flow without another task, bounds each wait
/// for a frame by the timeout, and puts the connection back in the pool
/// once the body has ended.
struct PooledBody {
    body: Incoming,
    /// `None` once the connection ended (it then goes nowhere).
    conn: Option<(http1::SendRequest<Body>, H1Conn)>,
    inner: Arc<Inner>,
    ended: bool,
    timeout: Duration,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some((_, conn)) = &mut this.conn
            && Pin::new(conn).poll(cx).is_ready()
        {
            // Closed (after delivering what it read, or on an error the
            // body reports): never reused.
            this.conn = None;
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                this.idle = None;
                if frame.is_err() {
                    this.conn = None;
                }
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending => poll_idle(&mut this.idle, this.timeout, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Back to the pool only after a complete exchange; a body dropped
        // early leaves the response unread, and the connection closes.
        if (self.ended || http_body::Body::is_end_stream(&self.body))
            && let Some((send, conn)) = self.conn.take()
        {
            self.inner.put_idle(send, conn);
        }
    }
}

/// Arms the wait for the next frame on the first `Pending`, and fails the
/// body once it has waited the whole timeout.
fn poll_idle<T>(
    idle: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<T, BodyError>>> {
    let sleep = idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    ready!(sleep.as_mut().poll(cx));
    // hyper's own error for a body that stopped coming.
    Poll::Ready(Some(Err(Box::new(BodyTimeout))))
}

/// A response body error: the upstream's, or its silence.
type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream sent no frame of its body for the whole timeout.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's body stalled longer than the timeout")]
struct BodyTimeout;

// ---------------------------------------------------------------- upgrades, HTTP/2

/// An upgrade request on a connection of its own (driven by a task, which
/// hands the connection over on 101).
async fn send_upgrade(inner: &Inner, req: Request<Body>) -> Result<Sent, Failure> {
    let (mut send, conn) = inner.new_h1().await?;
    let service = inner.service.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(service, error = %e, "upstream connection ended");
        }
    });
    match tokio::time::timeout(inner.timeout, send.send_request(req)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(r) => r.map(Sent::Upgrade).map_err(Failure::Http),
    }
}

/// A request on the service's HTTP/2 connection (opened on first use and
/// again once closed).
async fn send_h2(inner: &Inner, req: Request<Body>) -> Result<Sent, Failure> {
    let mut send = {
        let mut shared = inner.h2.lock().await;
        match shared.as_ref() {
            Some(s) if !s.is_closed() => s.clone(),
            _ => {
                let io = inner.connect().await?;
                let (send, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(hyper_util::rt::TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(Failure::Http)?;
                let service = inner.service.clone();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(service, error = %e, "upstream HTTP/2 connection ended");
                    }
                });
                *shared = Some(send.clone());
                send
            }
        }
    };
    let exchange = async {
        send.ready().await?;
        send.send_request(req).await
    };
    match tokio::time::timeout(inner.timeout, exchange).await {
        Err(_) => Err(Failure::Timeout),
        Ok(r) => r.map(Sent::Shared).map_err(Failure::Http),
    }
}

/// A response body driven elsewhere (an upgrade's or HTTP/2 connection
/// task), each wait for a frame bounded by the timeout.
struct IdleTimeout {
    body: Incoming,
    timeout: Duration,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleTimeout {
    fn new(body: Incoming, timeout: Duration) -> IdleTimeout {
        IdleTimeout {
            body,
            timeout,
            idle: None,
        }
    }
}

impl http_body::Body for IdleTimeout {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => poll_idle(&mut this.idle, this.timeout, cx),
            Poll::Ready(frame) => {
                this.idle = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The protocol a request asks to upgrade to (`Connection: upgrade` and an
/// `Upgrade` header), if any.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Answers 101 to the client and, once both sides switched, copies bytes
/// both ways until either closes.
async fn splice(
    service: &str,
    resp: Response<Incoming>,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Response {
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    if let Some(h) = out.headers_mut() {
        copy_end_to_end(resp.headers(), h);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(p) = resp.headers().get(header::UPGRADE) {
            h.insert(header::UPGRADE, p.clone());
        }
    }
    let upstream = match hyper::upgrade::on(resp).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(service, error = %e, "upstream upgrade failed");
            return ProxyError::UpstreamInvalidResponse.into_response();
        }
    };
    let service = service.to_owned();
    tokio::spawn(async move {
        let mut upstream = TokioIo::new(upstream);
        match on_upgrade.await {
            Ok(client) => {
                let mut client = TokioIo::new(client);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(service, error = %e, "upgraded connection ended");
                }
            }
            Err(e) => tracing::debug!(service, error = %e, "client upgrade failed"),
        }
    });
    out.body(Body::empty())
        .unwrap_or_else(|_| ProxyError::UpstreamInvalidResponse.into_response())
}

/// The headers sent upstream: end-to-end only, without proofs, the
/// configured strips and any client-sent identity header; plus the
/// configured additions.
fn request_headers(incoming: &HeaderMap, inner: &Inner) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(incoming.len() + inner.add_headers.len() + 4);
    // A bit-transfer's signature travels in `Authorization`: it goes with
    // the transfer.
    let transfer = incoming.contains_key(&BITCOIN_TRANSFER);
    // One pass: what the upstream must not see is never copied (cheaper
    // than copying everything and removing by name afterwards).
    copy_end_to_end_except(incoming, &mut headers, |name, value| {
        let n = name.as_str();
        name == header::HOST
            || PROOF_HEADERS.contains(&n)
            || crate::paywall::BITREQ_PROOF_HEADERS.contains(&n)
            || (name == header::AUTHORIZATION && (transfer || is_payment_proof(value)))
            || inner.strip_headers.contains(name)
            || inner.identity_header.as_ref() == Some(name)
    });
    // `TE: trailers` is the one TE an HTTP/2 request may carry, and gRPC
    // servers want it.
    if incoming
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    for (name, value) in &inner.add_headers {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// Whether an `Authorization` value carries a payment credential: L402/LSAT,
/// or MPP's `Payment` (a value listing one among others goes whole).
fn is_payment_proof(v: &HeaderValue) -> bool {
    is_l402_authorization(v.as_bytes()) || is_payment_authorization(v.as_bytes())
}

/// Copies every header except the hop-by-hop ones and those the
/// `Connection` header names.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    copy_end_to_end_except(from, to, |_, _| false);
}

/// As [`copy_end_to_end`], also leaving out the headers `skip` names.
fn copy_end_to_end_except(
    from: &HeaderMap,
    to: &mut HeaderMap,
    skip: impl Fn(&HeaderName, &HeaderValue) -> bool,
) {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for (name, value) in from {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || named.iter().any(|t| t == n) || skip(name, value) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// Appends to `Forwarded` (RFC 7239) and `X-Forwarded-For`, sets
/// `X-Forwarded-Proto` (`proto`) and `X-Forwarded-Host`.
fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: Option<std::net::IpAddr>,
    host: Option<&HeaderValue>,
    proto: &'static str,
) {
    let mut element = String::new();
    if let Some(ip) = client_ip {
        match ip {
            std::net::IpAddr::V4(v4) => element.push_str(&format!("for={v4}")),
            std::net::IpAddr::V6(v6) => element.push_str(&format!("for=\"[{v6}]\"")),
        }
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
    }
    if let Some(h) = host.and_then(|h| h.to_str().ok()) {
        if !element.is_empty() {
            element.push(';');
        }
        element.push_str(&format!("host=\"{}\"", h.replace(['"', '\\'], "")));
        if let Ok(v) = HeaderValue::from_str(h) {
            headers.insert("x-forwarded-host", v);
        }
    }
    if !element.is_empty() {
        element.push(';');
    }
    element.push_str("proto=");
    element.push_str(proto);
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    let forwarded = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {element}"),
        None => element,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert(header::FORWARDED, v);
    }
}

/// What identifies the payment of a paid request: `l402:<token id>`,
/// `x402:<payer>:<nonce>`, `bitreq:<method>:<reference>` or
/// `mpp:<method>:<reference>` (the Lightning payment hash, or the EVM
/// settlement transaction).
fn payment_identity(ext: &http::Extensions) -> Option<HeaderValue> {
    let id = if let Some(t) = ext.get::<VerifiedToken>() {
        format!("l402:{}", t.token_id)
    } else if let Some(p) = ext.get::<X402Payment>() {
        format!("x402:{}:{}", p.payer, p.nonce)
    } else if let Some(p) = ext.get::<pay402_server::bitreq::BitreqPayment>() {
        format!("bitreq:{}:{}", p.method.as_str(), p.reference)
    } else if let Some(p) = ext.get::<pay402_server::paywall::Paid>()
        && p.rail == pay402_core::offer::Rail::Mpp
    {
        let method = match &p.receipt {
            pay402_server::paywall::Receipt::MppEvm(_) => "evm",
            _ => "lightning",
        };
        format!("mpp:{method}:{}", p.receipt)
    } else {
        return None;
    };
    HeaderValue::from_str(&id).ok()
}

/// Why the proxy answers instead of the upstream.
///
/// ```
/// use pay402_core::problem::Reason;
/// assert_eq!(pay402_cli::upstream::ProxyError::UpstreamTimeout.reason(), "upstream_timeout");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The upstream could not be reached or failed mid-request.
    #[error("the upstream could not be reached")]
    UpstreamUnreachable,
    /// The upstream did not answer in time.
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    /// The upstream's answer could not be relayed.
    #[error("the upstream's answer could not be relayed")]
    UpstreamInvalidResponse,
    /// No service matches the host and path.
    #[error("no service matches this host and path")]
    NoService,
    /// The path has dot segments or encoded separators.
    #[error("the path has dot segments or encoded separators")]
    InvalidPath,
    /// The service's pricer gave no price (never served free).
    #[error("no price could be had for this request")]
    PricerUnavailable,
}

impl pay402_core::problem::Reason for ProxyError {
    fn reason(&self) -> &'static str {
        match self {
            ProxyError::UpstreamUnreachable => "upstream_unreachable",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamInvalidResponse => "upstream_invalid_response",
            ProxyError::NoService => "no_service",
            ProxyError::InvalidPath => "invalid_path",
            ProxyError::PricerUnavailable => "pricer_unavailable",
        }
    }
    fn status(&self) -> u16 {
        match self {
            ProxyError::UpstreamUnreachable | ProxyError::UpstreamInvalidResponse => 502,
            ProxyError::UpstreamTimeout => 504,
            ProxyError::NoService => 404,
            ProxyError::InvalidPath => 400,
            ProxyError::PricerUnavailable => 503,
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        use pay402_core::problem::{Problem, Reason};
        pay402_server::respond::problem(&Problem::from_reason(&self, self.status()))
    }
}
