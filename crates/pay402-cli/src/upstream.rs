//! Forwarding one request to a service's upstream: streamed both ways,
//! pooled connections, hop-by-hop headers dropped, `Forwarded` and
//! `X-Forwarded-*` set, payment proofs stripped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use pay402_core::l402::VerifiedToken;
use pay402_server::x402::X402Payment;
use tower::Service;

use crate::metrics as m;
use crate::paywall::is_l402_authorization;

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

/// Payment proof headers of the x402 rail (the L402 one is `Authorization`
/// with the `L402`/`LSAT` scheme), and the proxy's internal price headers.
const PROOF_HEADERS: [&str; 4] = [
    "payment-signature",
    "x-payment",
    crate::pricer::L402_PRICE_HEADER,
    crate::pricer::X402_PRICE_HEADER,
];

/// A service's upstream.
///
/// ```
/// let client = reqwest::Client::new();
/// let u = pay402_cli::upstream::Upstream::new(
///     "api".into(), client, "http://127.0.0.1:9000".parse().unwrap(), vec![], vec![], None,
/// );
/// assert_eq!(u.base().port(), Some(9000));
/// ```
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    client: reqwest::Client,
    base: reqwest::Url,
    add_headers: Vec<(HeaderName, HeaderValue)>,
    strip_headers: Vec<HeaderName>,
    identity_header: Option<HeaderName>,
}

impl Upstream {
    /// An upstream at `base` reached through `client` (which carries the
    /// timeout, CA and client certificate).
    ///
    /// See [`Upstream`].
    pub fn new(
        service: String,
        client: reqwest::Client,
        base: reqwest::Url,
        add_headers: Vec<(HeaderName, HeaderValue)>,
        strip_headers: Vec<HeaderName>,
        identity_header: Option<HeaderName>,
    ) -> Upstream {
        Upstream {
            inner: Arc::new(Inner {
                service,
                client,
                base,
                add_headers,
                strip_headers,
                identity_header,
            }),
        }
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
        Box::pin(async move { Ok(forward(&inner, req).await) })
    }
}

/// The upstream URL for a request: the base path, then the request's path
/// and query.
///
/// ```
/// let base: reqwest::Url = "http://127.0.0.1:9000/api/".parse().unwrap();
/// let uri: http::Uri = "/v1/x?a=1".parse().unwrap();
/// assert_eq!(pay402_cli::upstream::target_url(&base, &uri).as_str(), "http://127.0.0.1:9000/api/v1/x?a=1");
/// ```
pub fn target_url(base: &reqwest::Url, uri: &http::Uri) -> reqwest::Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let path = uri.path();
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(uri.query());
    url
}

async fn forward(inner: &Inner, req: Request<Body>) -> Response {
    let (mut parts, body) = req.into_parts();
    // An upgrade (WebSocket or any other protocol): forwarded with its
    // Connection/Upgrade headers; on 101 both connections are spliced.
    let upgrade = upgrade_protocol(&parts.headers);
    let client_upgrade = match upgrade {
        Some(_) => parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
        None => None,
    };
    let url = target_url(&inner.base, &parts.uri);
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

    let mut headers = request_headers(&parts.headers, inner);
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

    if let (Some(protocol), Some(_)) = (&upgrade, &client_upgrade) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }

    // HTTP/2 requests (gRPC) carry a body without Content-Length.
    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING)
        || !axum::body::HttpBody::is_end_stream(&body);
    let mut builder = inner
        .client
        .request(parts.method.clone(), url)
        .headers(headers);
    if has_body {
        builder = builder.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let started = Instant::now();
    let result = builder.send().await;
    m::upstream_latency(&inner.service, started.elapsed());
    match result {
        Ok(resp)
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_some() =>
        {
            match client_upgrade {
                Some(on_upgrade) => splice(&inner.service, resp, on_upgrade).await,
                None => ProxyError::UpstreamInvalidResponse.into_response(),
            }
        }
        Ok(resp) => {
            let status = resp.status();
            let mut out = Response::builder().status(status);
            if let Some(h) = out.headers_mut() {
                copy_end_to_end(resp.headers(), h);
            }
            // Frames pass as they come: data, and trailers (gRPC's
            // grpc-status) when the upstream sends them.
            out.body(Body::new(reqwest::Body::from(resp)))
                .unwrap_or_else(|_| ProxyError::UpstreamInvalidResponse.into_response())
        }
        Err(e) => {
            let err = if e.is_timeout() {
                ProxyError::UpstreamTimeout
            } else {
                ProxyError::UpstreamUnreachable
            };
            tracing::warn!(service = %inner.service, reason = %err, error = %e.without_url(), "upstream request failed");
            m::upstream_error(&inner.service, pay402_core::problem::Reason::reason(&err));
            err.into_response()
        }
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
    resp: reqwest::Response,
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
    let upstream = match resp.upgrade().await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(service, error = %e.without_url(), "upstream upgrade failed");
            return ProxyError::UpstreamInvalidResponse.into_response();
        }
    };
    let service = service.to_owned();
    tokio::spawn(async move {
        let mut upstream = upstream;
        match on_upgrade.await {
            Ok(client) => {
                let mut client = hyper_util::rt::TokioIo::new(client);
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
    copy_end_to_end(incoming, &mut headers);
    headers.remove(header::HOST);
    // `TE: trailers` is the one TE an HTTP/2 request may carry, and gRPC
    // servers want it.
    if incoming
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    for name in PROOF_HEADERS {
        headers.remove(name);
    }
    // A bit-transfer's signature travels in `Authorization`: it goes with
    // the transfer.
    if headers.contains_key("bitcoin-transfer") {
        headers.remove(header::AUTHORIZATION);
    }
    for name in crate::paywall::BITREQ_PROOF_HEADERS {
        headers.remove(name);
    }
    strip_l402_authorization(&mut headers);
    for name in &inner.strip_headers {
        headers.remove(name);
    }
    if let Some(name) = &inner.identity_header {
        headers.remove(name);
    }
    for (name, value) in &inner.add_headers {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// Removes `Authorization` values carrying an L402/LSAT credential (other
/// schemes are the upstream's business and pass).
fn strip_l402_authorization(headers: &mut HeaderMap) {
    if !headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .any(|v| is_l402_authorization(v.as_bytes()))
    {
        return;
    }
    let keep: Vec<HeaderValue> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter(|v| !is_l402_authorization(v.as_bytes()))
        .cloned()
        .collect();
    headers.remove(header::AUTHORIZATION);
    for v in keep {
        headers.append(header::AUTHORIZATION, v);
    }
}

/// Copies every header except the hop-by-hop ones and those the
/// `Connection` header names.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
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
        if HOP_BY_HOP.contains(&n) || named.iter().any(|t| t == n) {
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

/// What identifies the payment of a paid request: `l402:<token id>` or
/// `x402:<payer>:<nonce>` or `bitreq:<method>:<reference>`.
fn payment_identity(ext: &http::Extensions) -> Option<HeaderValue> {
    let id = if let Some(t) = ext.get::<VerifiedToken>() {
        format!("l402:{}", t.token_id)
    } else if let Some(p) = ext.get::<X402Payment>() {
        format!("x402:{}:{}", p.payer, p.nonce)
    } else if let Some(p) = ext.get::<pay402_server::bitreq::BitreqPayment>() {
        format!("bitreq:{}:{}", p.method.as_str(), p.reference)
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
