//! [`RemoteFacilitator`]: an HTTP client for another facilitator's
//! `POST /verify`, `POST /settle` and `GET /supported`.
//!
//! Guarantees, with the failure each problem maps to:
//!
//! - **https only**: `http://` is accepted for loopback hosts, or anywhere
//!   with [`allow_insecure_http`](RemoteFacilitatorBuilder::allow_insecure_http);
//!   TLS verification is never off.
//! - **No redirects**: a 3xx answer is [`FacilitatorError::InvalidResponse`]
//!   (a redirect once sent the reference middleware into serving everything
//!   unpaid; it is never followed, so it can never downgrade to http).
//! - **Timeouts** on every request: [`FacilitatorError::Unavailable`].
//! - **Strict answers**, bounded in size: `/verify` must carry a boolean
//!   `isValid`, and an invalid verdict its `invalidReason`; `/settle` must
//!   carry `success` and `network` (the request's), a success a transaction
//!   hash, a failure its `errorReason`; `/supported` its `kinds`. Anything
//!   else is [`FacilitatorError::InvalidResponse`].
//! - **Statuses**: a verdict body is a verdict whatever the status (the
//!   reference client does the same); other 4xx are
//!   [`FacilitatorError::Refused`]; 429 and 5xx are
//!   [`FacilitatorError::Unavailable`]. A `202` settle answer with
//!   `errorReason: "settlement_pending"` (what [`super::router`] sends) is
//!   [`FacilitatorError::Pending`].
//! - **Auth headers** per endpoint through an [`AuthHeaders`] hook (the
//!   official SDK's `createAuthHeaders`); they are marked sensitive.
//! - `/supported` is **cached** for a TTL (default 5 minutes); failures are
//!   not cached.
//!
//! ```no_run
//! # async fn demo(request: pay402_core::x402::PaymentRequest) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use pay402_backends::x402::{Endpoint, RemoteFacilitator};
//! use pay402_core::x402::Facilitator;
//! use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
//!
//! let facilitator = RemoteFacilitator::builder("https://x402.org/facilitator")
//!     .timeout(Duration::from_secs(10))
//!     .auth(|endpoint: Endpoint| {
//!         let mut h = HeaderMap::new();
//!         if endpoint != Endpoint::Supported {
//!             h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer <token>"));
//!         }
//!         h
//!     })
//!     .build()?;
//! let verdict = facilitator.verify(&request).await?;
//! if verdict.is_valid {
//!     let receipt = facilitator.settle(&request).await?;
//!     println!("{:?}", receipt.transaction);
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use async_trait::async_trait;
use pay402_core::x402::{
    Facilitator, FacilitatorError, PaymentRequest, SettleResponse, SupportedResponse,
    VerifyResponse,
};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tracing::Instrument;

use super::server::SETTLEMENT_PENDING;
use crate::evm_rpc::redacted_origin;
use crate::util::http::{is_loopback, snippet};

/// The default request timeout.
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_REMOTE_TIMEOUT.as_secs(), 30);
/// ```
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default time a `/supported` answer is reused.
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_SUPPORTED_TTL.as_secs(), 300);
/// ```
pub const DEFAULT_SUPPORTED_TTL: Duration = Duration::from_secs(300);

/// The largest answer read (256 KiB).
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_MAX_RESPONSE_BYTES, 256 * 1024);
/// ```
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A facilitator endpoint, for [`AuthHeaders`].
///
/// ```
/// use pay402_backends::x402::Endpoint;
/// assert_eq!(Endpoint::Settle.path(), "settle");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /verify`.
    Verify,
    /// `POST /settle`.
    Settle,
    /// `GET /supported`.
    Supported,
}

impl Endpoint {
    /// The path segment (`verify`, `settle`, `supported`).
    ///
    /// ```
    /// use pay402_backends::x402::Endpoint;
    /// assert_eq!(Endpoint::Verify.path(), "verify");
    /// ```
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Verify => "verify",
            Endpoint::Settle => "settle",
            Endpoint::Supported => "supported",
        }
    }
}

/// Extra headers per endpoint (for example an API key or a freshly signed
/// JWT), like the official SDK's `createAuthHeaders`. A plain
/// `Fn(Endpoint) -> HeaderMap` closure implements it.
///
/// ```
/// use pay402_backends::x402::{AuthHeaders, Endpoint};
/// use pay402_core::x402::FacilitatorError;
/// use reqwest::header::{HeaderMap, HeaderValue};
///
/// struct ApiKey(String);
///
/// #[async_trait::async_trait]
/// impl AuthHeaders for ApiKey {
///     async fn headers(&self, _endpoint: Endpoint) -> Result<HeaderMap, FacilitatorError> {
///         let mut h = HeaderMap::new();
///         let value = HeaderValue::from_str(&self.0)
///             .map_err(|_| FacilitatorError::Unavailable("bad API key".into()))?;
///         h.insert("x-api-key", value);
///         Ok(h)
///     }
/// }
/// ```
#[async_trait]
pub trait AuthHeaders: Send + Sync + 'static {
    /// The headers to add to a request to `endpoint`. An error stops the
    /// request (no verdict).
    async fn headers(&self, endpoint: Endpoint) -> Result<HeaderMap, FacilitatorError>;
}

#[async_trait]
impl<F> AuthHeaders for F
where
    F: Fn(Endpoint) -> HeaderMap + Send + Sync + 'static,
{
    async fn headers(&self, endpoint: Endpoint) -> Result<HeaderMap, FacilitatorError> {
        Ok(self(endpoint))
    }
}

/// Why a [`RemoteFacilitator`] could not be built.
///
/// ```
/// use pay402_backends::x402::{RemoteFacilitator, RemoteConfigError};
/// let err = RemoteFacilitator::builder("http://facilitator.example.com").build().unwrap_err();
/// assert_eq!(err, RemoteConfigError::InsecureUrl);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoteConfigError {
    /// The URL does not parse, is not http(s), or carries credentials, a
    /// query or a fragment.
    #[error("invalid facilitator URL: {0}")]
    InvalidUrl(String),
    /// Plain `http://` to a host that is not loopback.
    #[error("plain http:// facilitator URLs are only allowed for loopback hosts (use https://)")]
    InsecureUrl,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Builds a [`RemoteFacilitator`]; see [`RemoteFacilitator::builder`].
///
/// ```
/// use std::time::Duration;
/// use pay402_backends::x402::RemoteFacilitator;
/// let f = RemoteFacilitator::builder("https://facilitator.example.com/")
///     .timeout(Duration::from_secs(5))
///     .supported_ttl(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// assert_eq!(f.url(), "https://facilitator.example.com");
/// ```
#[must_use]
pub struct RemoteFacilitatorBuilder {
    url: String,
    timeout: Duration,
    supported_ttl: Duration,
    allow_insecure_http: bool,
    max_response_bytes: usize,
    auth: Option<Arc<dyn AuthHeaders>>,
}

impl fmt::Debug for RemoteFacilitatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFacilitatorBuilder")
            .field("timeout", &self.timeout)
            .field("auth", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

impl RemoteFacilitatorBuilder {
    /// The timeout of each request, connection included (default 30 s).
    ///
    /// ```
    /// # use pay402_backends::x402::RemoteFacilitator;
    /// let b = RemoteFacilitator::builder("https://f.example").timeout(std::time::Duration::from_secs(3));
    /// # let _ = b;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a `/supported` answer is reused (default 5 minutes; zero
    /// disables the cache).
    ///
    /// ```
    /// # use pay402_backends::x402::RemoteFacilitator;
    /// let b = RemoteFacilitator::builder("https://f.example").supported_ttl(std::time::Duration::ZERO);
    /// # let _ = b;
    /// ```
    pub fn supported_ttl(mut self, ttl: Duration) -> Self {
        self.supported_ttl = ttl;
        self
    }

    /// Accepts plain `http://` to a non-loopback host. Off by default.
    ///
    /// ```
    /// # use pay402_backends::x402::RemoteFacilitator;
    /// assert!(RemoteFacilitator::builder("http://10.1.2.3:4021").allow_insecure_http(true).build().is_ok());
    /// ```
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The largest answer read (default 256 KiB).
    ///
    /// ```
    /// # use pay402_backends::x402::RemoteFacilitator;
    /// let b = RemoteFacilitator::builder("https://f.example").max_response_bytes(64 * 1024);
    /// # let _ = b;
    /// ```
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// Adds headers per endpoint (see [`AuthHeaders`]).
    ///
    /// ```
    /// # use pay402_backends::x402::{RemoteFacilitator, Endpoint};
    /// use reqwest::header::HeaderMap;
    /// let b = RemoteFacilitator::builder("https://f.example").auth(|_: Endpoint| HeaderMap::new());
    /// # let _ = b;
    /// ```
    pub fn auth(mut self, hook: impl AuthHeaders) -> Self {
        self.auth = Some(Arc::new(hook));
        self
    }

    /// Checks the URL and builds the client.
    ///
    /// # Errors
    ///
    /// See [`RemoteConfigError`].
    ///
    /// ```
    /// # use pay402_backends::x402::RemoteFacilitator;
    /// assert!(RemoteFacilitator::builder("http://127.0.0.1:4021").build().is_ok());
    /// assert!(RemoteFacilitator::builder("https://f.example?x=1").build().is_err());
    /// ```
    pub fn build(self) -> Result<RemoteFacilitator, RemoteConfigError> {
        let mut url = Url::parse(self.url.trim())
            .map_err(|e| RemoteConfigError::InvalidUrl(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure_http || is_loopback(&url) => {}
            "http" => return Err(RemoteConfigError::InsecureUrl),
            other => {
                return Err(RemoteConfigError::InvalidUrl(format!(
                    "unsupported scheme {other:?}"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RemoteConfigError::InvalidUrl(
                "credentials in the URL are not accepted; use an auth hook".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(RemoteConfigError::InvalidUrl(
                "the URL must not have a query or fragment".into(),
            ));
        }
        // Trailing slashes would make `<url>//verify` (and, in the reference
        // client, 308 redirect loops).
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .https_only(url.scheme() == "https")
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .build()
            .map_err(|e| RemoteConfigError::Client(e.without_url().to_string()))?;
        Ok(RemoteFacilitator {
            inner: Arc::new(Remote {
                client,
                base: url.as_str().trim_end_matches('/').to_owned(),
                origin: redacted_origin(&url),
                supported_ttl: self.supported_ttl,
                max_response_bytes: self.max_response_bytes,
                auth: self.auth,
                supported: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

/// An HTTP client for a remote facilitator. Cheap to clone.
///
/// See the [module docs](self) for its guarantees.
///
/// ```
/// use std::sync::Arc;
/// use pay402_backends::x402::RemoteFacilitator;
/// use pay402_core::x402::Facilitator;
/// let f: Arc<dyn Facilitator> = Arc::new(RemoteFacilitator::builder("https://x402.org/facilitator").build().unwrap());
/// ```
#[derive(Clone)]
pub struct RemoteFacilitator {
    inner: Arc<Remote>,
}

struct Remote {
    client: reqwest::Client,
    base: String,
    origin: String,
    supported_ttl: Duration,
    max_response_bytes: usize,
    auth: Option<Arc<dyn AuthHeaders>>,
    supported: tokio::sync::Mutex<Option<(Instant, SupportedResponse)>>,
}

impl fmt::Debug for RemoteFacilitator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFacilitator")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

/// A response: status and (bounded) body.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

fn invalid(endpoint: Endpoint, detail: impl fmt::Display) -> FacilitatorError {
    FacilitatorError::InvalidResponse(format!("/{}: {detail}", endpoint.path()))
}

fn non_empty(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

impl RemoteFacilitator {
    /// Starts building a client for the facilitator at `url` (its base:
    /// `<url>/verify`, `<url>/settle`, `<url>/supported`).
    ///
    /// ```
    /// use pay402_backends::x402::RemoteFacilitator;
    /// let f = RemoteFacilitator::builder("https://x402.org/facilitator").build().unwrap();
    /// assert_eq!(f.url(), "https://x402.org/facilitator");
    /// ```
    pub fn builder(url: impl Into<String>) -> RemoteFacilitatorBuilder {
        RemoteFacilitatorBuilder {
            url: url.into(),
            timeout: DEFAULT_TIMEOUT,
            supported_ttl: DEFAULT_SUPPORTED_TTL,
            allow_insecure_http: false,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            auth: None,
        }
    }

    /// The base URL, without a trailing slash.
    ///
    /// ```
    /// use pay402_backends::x402::RemoteFacilitator;
    /// let f = RemoteFacilitator::builder("http://127.0.0.1:4021/x402///").build().unwrap();
    /// assert_eq!(f.url(), "http://127.0.0.1:4021/x402");
    /// ```
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// Forgets the cached `/supported` answer.
    ///
    /// ```
    /// # async fn f(fac: &pay402_backends::x402::RemoteFacilitator) { fac.clear_supported_cache().await; }
    /// ```
    pub async fn clear_supported_cache(&self) {
        *self.inner.supported.lock().await = None;
    }

    async fn exchange(
        &self,
        endpoint: Endpoint,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, FacilitatorError> {
        let r = &self.inner;
        let url = format!("{}/{}", r.base, endpoint.path());
        let mut req = match &body {
            Some(_) => r.client.post(&url),
            None => r.client.get(&url),
        };
        req = req.header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(auth) = &r.auth {
            let mut headers = auth.headers(endpoint).await?;
            for value in headers.values_mut() {
                value.set_sensitive(true);
            }
            req = req.headers(headers);
        }
        if let Some(body) = body {
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body);
        }
        let mut resp = req.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "unreachable"
            };
            FacilitatorError::Unavailable(format!(
                "facilitator {} /{} {what}: {}",
                r.origin,
                endpoint.path(),
                e.without_url()
            ))
        })?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .chars()
                .take(200)
                .collect::<String>();
            return Err(invalid(
                endpoint,
                format!("answered a redirect (HTTP {status}) to {to}; redirects are not followed"),
            ));
        }
        let max = r.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(invalid(endpoint, format!("answer larger than {max} bytes")));
        }
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > max {
                        return Err(invalid(endpoint, format!("answer larger than {max} bytes")));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(FacilitatorError::Unavailable(format!(
                        "facilitator {} /{}: reading the answer failed: {}",
                        r.origin,
                        endpoint.path(),
                        e.without_url()
                    )));
                }
            }
        }
        tracing::debug!(%status, bytes = bytes.len(), endpoint = endpoint.path(), "facilitator answered");
        Ok(Answer {
            status,
            body: bytes,
        })
    }

    /// Maps a status with no usable verdict in its body.
    fn status_error(endpoint: Endpoint, a: &Answer) -> FacilitatorError {
        let message = format!(
            "/{}: HTTP {}: {}",
            endpoint.path(),
            a.status,
            snippet(&a.body)
        );
        if a.status == StatusCode::TOO_MANY_REQUESTS || a.status.is_server_error() {
            FacilitatorError::Unavailable(message)
        } else if a.status.is_client_error() {
            FacilitatorError::Refused {
                status: a.status.as_u16(),
                message,
            }
        } else {
            FacilitatorError::InvalidResponse(message)
        }
    }

    /// The JSON of a `/verify` or `/settle` answer carrying its boolean
    /// verdict field `flag`; an answer without one is the HTTP status's
    /// error when the status is not a success.
    fn verdict(e: Endpoint, a: &Answer, flag: &str) -> Result<Value, FacilitatorError> {
        let value: Value = match serde_json::from_slice(&a.body) {
            Ok(v) => v,
            Err(_) if !a.status.is_success() => return Err(Self::status_error(e, a)),
            Err(err) => {
                return Err(invalid(
                    e,
                    format!("not JSON ({err}): {}", snippet(&a.body)),
                ));
            }
        };
        match value.get(flag) {
            Some(v) if v.is_boolean() => Ok(value),
            Some(_) => Err(invalid(e, format!("`{flag}` is not a boolean"))),
            None if a.status.is_success() => Err(invalid(e, format!("no `{flag}` in the answer"))),
            None => Err(Self::status_error(e, a)),
        }
    }

    fn parse_verify(a: &Answer) -> Result<VerifyResponse, FacilitatorError> {
        let e = Endpoint::Verify;
        let value = Self::verdict(e, a, "isValid")?;
        let verdict: VerifyResponse = serde_json::from_value(value.clone())
            .map_err(|err| invalid(e, format!("malformed answer: {err}")))?;
        if verdict.is_valid {
            if !a.status.is_success() {
                return Err(invalid(
                    e,
                    format!("`isValid: true` with HTTP {}", a.status),
                ));
            }
        } else if non_empty(&value, "invalidReason").is_none() {
            return Err(invalid(e, "an invalid verdict without `invalidReason`"));
        }
        Ok(verdict)
    }

    fn parse_settle(
        a: &Answer,
        request: &PaymentRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        let e = Endpoint::Settle;
        let value = Self::verdict(e, a, "success")?;
        let Some(network) = non_empty(&value, "network") else {
            return Err(invalid(e, "no `network` in the answer"));
        };
        let settled: SettleResponse = serde_json::from_value(value.clone())
            .map_err(|err| invalid(e, format!("malformed answer: {err}")))?;
        let transaction = non_empty(&value, "transaction");
        if network != request.network() {
            return Err(invalid(
                e,
                format!(
                    "answer is for network {network:?}, the payment for {:?}",
                    request.network()
                ),
            ));
        }
        if settled.success {
            if !a.status.is_success() {
                return Err(invalid(
                    e,
                    format!("`success: true` with HTTP {}", a.status),
                ));
            }
            let Some(tx) = transaction else {
                return Err(invalid(e, "a successful settlement without `transaction`"));
            };
            if tx.parse::<B256>().is_err() {
                return Err(invalid(
                    e,
                    format!("`transaction` {tx:?} is not a transaction hash"),
                ));
            }
            return Ok(settled);
        }
        let Some(reason) = non_empty(&value, "errorReason") else {
            return Err(invalid(e, "a failed settlement without `errorReason`"));
        };
        if reason == SETTLEMENT_PENDING {
            let Some(tx) = transaction.filter(|t| t.parse::<B256>().is_ok()) else {
                return Err(invalid(
                    e,
                    "a pending settlement without a transaction hash",
                ));
            };
            return Err(FacilitatorError::Pending {
                transaction: tx,
                network,
            });
        }
        Ok(settled)
    }

    fn parse_supported(a: &Answer) -> Result<SupportedResponse, FacilitatorError> {
        let e = Endpoint::Supported;
        if !a.status.is_success() {
            return Err(Self::status_error(e, a));
        }
        let value: Value = serde_json::from_slice(&a.body)
            .map_err(|err| invalid(e, format!("not JSON ({err}): {}", snippet(&a.body))))?;
        if !value.get("kinds").is_some_and(Value::is_array) {
            return Err(invalid(e, "no `kinds` array in the answer"));
        }
        serde_json::from_value(value).map_err(|err| invalid(e, format!("malformed answer: {err}")))
    }

    fn body(request: &PaymentRequest) -> Result<Vec<u8>, FacilitatorError> {
        serde_json::to_vec(request).map_err(|e| FacilitatorError::Refused {
            status: 400,
            message: format!("cannot encode the request: {e}"),
        })
    }
}

#[async_trait]
impl Facilitator for RemoteFacilitator {
    async fn verify(&self, request: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        let span = tracing::info_span!("x402_remote_verify", origin = %self.inner.origin, network = %request.network());
        async {
            let answer = self
                .exchange(Endpoint::Verify, Some(Self::body(request)?))
                .await?;
            Self::parse_verify(&answer)
        }
        .instrument(span)
        .await
    }

    async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        let span = tracing::info_span!("x402_remote_settle", origin = %self.inner.origin, network = %request.network());
        async {
            let answer = self
                .exchange(Endpoint::Settle, Some(Self::body(request)?))
                .await?;
            Self::parse_settle(&answer, request)
        }
        .instrument(span)
        .await
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let span = tracing::info_span!("x402_remote_supported", origin = %self.inner.origin);
        async {
            let mut cached = self.inner.supported.lock().await;
            if let Some((at, s)) = cached.as_ref()
                && at.elapsed() < self.inner.supported_ttl
            {
                return Ok(s.clone());
            }
            let answer = self.exchange(Endpoint::Supported, None).await?;
            let supported = Self::parse_supported(&answer)?;
            if !self.inner.supported_ttl.is_zero() {
                *cached = Some((Instant::now(), supported.clone()));
            }
            Ok(supported)
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            RemoteFacilitator::builder("http://example.com")
                .build()
                .unwrap_err(),
            RemoteConfigError::InsecureUrl
        );
        assert!(
            RemoteFacilitator::builder("https://u:p@example.com")
                .build()
                .is_err()
        );
        assert!(
            RemoteFacilitator::builder("ftp://example.com")
                .build()
                .is_err()
        );
        let f = RemoteFacilitator::builder("https://example.com/")
            .build()
            .unwrap();
        assert_eq!(f.url(), "https://example.com");
    }

    #[test]
    fn verify_answers() {
        let ok = RemoteFacilitator::parse_verify(&answer(200, r#"{"isValid":true,"payer":"0x1"}"#))
            .unwrap();
        assert!(ok.is_valid);
        let no = RemoteFacilitator::parse_verify(&answer(
            400,
            r#"{"isValid":false,"invalidReason":"invalid_exact_evm_signature"}"#,
        ))
        .unwrap();
        assert_eq!(
            no.invalid_reason.as_deref(),
            Some("invalid_exact_evm_signature")
        );
        for (status, body) in [
            (200, r#"{"isValid":false}"#),
            (200, r#"{"valid":true}"#),
            (200, r#"{"isValid":"yes"}"#),
            (200, "<html>"),
            (500, r#"{"isValid":true}"#),
        ] {
            assert!(
                matches!(
                    RemoteFacilitator::parse_verify(&answer(status, body)),
                    Err(FacilitatorError::InvalidResponse(_))
                ),
                "{status} {body}"
            );
        }
        assert!(matches!(
            RemoteFacilitator::parse_verify(&answer(401, "nope")),
            Err(FacilitatorError::Refused { status: 401, .. })
        ));
        assert!(matches!(
            RemoteFacilitator::parse_verify(&answer(503, r#"{"error":"down"}"#)),
            Err(FacilitatorError::Unavailable(_))
        ));
        assert!(matches!(
            RemoteFacilitator::parse_verify(&answer(429, "slow down")),
            Err(FacilitatorError::Unavailable(_))
        ));
    }

    #[test]
    fn supported_answers() {
        let s = RemoteFacilitator::parse_supported(&answer(
            200,
            r#"{"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:1"}]}"#,
        ))
        .unwrap();
        assert!(s.supports(2, "exact", "eip155:1"));
        assert!(RemoteFacilitator::parse_supported(&answer(200, r#"{"signers":{}}"#)).is_err());
        assert!(RemoteFacilitator::parse_supported(&answer(404, "")).is_err());
    }
}
