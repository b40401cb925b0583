//! An alloy JSON-RPC transport over the workspace's reqwest 0.12 client, for
//! every EVM backend (the x402 facilitator and the x402_mock reader and
//! settler).
//!
//! alloy's own HTTP transport would pull a second reqwest (0.13) and another
//! TLS stack into the build; this one is a small `tower::Service` on the
//! reqwest (rustls, webpki roots) client the rest of pay402 uses:
//!
//! - one POST per request packet (single or batch), with a **per-request
//!   timeout**;
//! - TLS verification always on; plain `http://` only for loopback hosts
//!   unless explicitly allowed; redirects are never followed;
//! - bounded response bodies;
//! - errors never carry the RPC URL (node URLs often embed an API key).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use alloy::providers::{Provider, ProviderBuilder};
//! use alloy::rpc::client::RpcClient;
//! use pay402_backends::evm_rpc::RpcTransport;
//!
//! let transport = RpcTransport::new("http://127.0.0.1:8545", Duration::from_secs(10))?;
//! let is_local = transport.is_local();
//! let provider = ProviderBuilder::new()
//!     .disable_recommended_fillers()
//!     .connect_client(RpcClient::new(transport, is_local));
//! println!("chain id {}", provider.get_chain_id().await?);
//! # Ok(()) }
//! ```

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::util::http::is_loopback;
use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use tracing::Instrument;

/// The largest JSON-RPC response body read (32 MiB: `eth_getLogs` answers
/// can be large).
///
/// ```
/// assert_eq!(pay402_backends::evm_rpc::MAX_RPC_RESPONSE_BYTES, 32 << 20);
/// ```
pub const MAX_RPC_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Why an RPC endpoint cannot be used.
///
/// ```
/// use pay402_backends::evm_rpc::{RpcTransport, TransportConfigError};
/// use std::time::Duration;
/// let err = RpcTransport::new("http://rpc.example.com", Duration::from_secs(5)).unwrap_err();
/// assert!(matches!(err, TransportConfigError::InsecureUrl));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportConfigError {
    /// The URL does not parse or is not `http(s)`.
    #[error("invalid RPC URL: {0}")]
    InvalidUrl(String),
    /// Plain `http://` to a host that is not loopback.
    #[error("plain http:// RPC URLs are only allowed for loopback hosts (use https://)")]
    InsecureUrl,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// An alloy transport (a `tower::Service<RequestPacket>`) over reqwest 0.12.
///
/// `Debug` shows only the scheme, host and port of the URL (its path or
/// query may hold an API key).
///
/// ```
/// use std::time::Duration;
/// use pay402_backends::evm_rpc::RpcTransport;
/// let t = RpcTransport::new("https://rpc.example.com/v3/SECRETKEY", Duration::from_secs(5)).unwrap();
/// assert!(!format!("{t:?}").contains("SECRETKEY"));
/// assert!(!t.is_local());
/// ```
#[derive(Clone)]
pub struct RpcTransport {
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
    max_body: usize,
}

impl fmt::Debug for RpcTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcTransport")
            .field("endpoint", &redacted_origin(&self.url))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RpcTransport {
    /// A transport to `url` with a per-request `timeout`. `http://` is
    /// accepted only for loopback hosts (see [`RpcTransport::with_options`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::evm_rpc::RpcTransport;
    /// assert!(RpcTransport::new("http://127.0.0.1:8545", Duration::from_secs(5)).unwrap().is_local());
    /// ```
    pub fn new(url: &str, timeout: Duration) -> Result<RpcTransport, TransportConfigError> {
        RpcTransport::with_options(url, timeout, false)
    }

    /// Like [`RpcTransport::new`]; `allow_insecure_http` also accepts plain
    /// `http://` to non-loopback hosts (a node on a private network). TLS
    /// verification of `https://` URLs stays on regardless.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::evm_rpc::RpcTransport;
    /// assert!(RpcTransport::with_options("http://10.0.0.5:8545", Duration::from_secs(5), true).is_ok());
    /// ```
    pub fn with_options(
        url: &str,
        timeout: Duration,
        allow_insecure_http: bool,
    ) -> Result<RpcTransport, TransportConfigError> {
        let url =
            Url::parse(url.trim()).map_err(|e| TransportConfigError::InvalidUrl(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_insecure_http || is_loopback(&url) => {}
            "http" => return Err(TransportConfigError::InsecureUrl),
            other => {
                return Err(TransportConfigError::InvalidUrl(format!(
                    "unsupported scheme {other:?} (expected http or https)"
                )));
            }
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| TransportConfigError::Client(e.without_url().to_string()))?;
        Ok(RpcTransport {
            client,
            url,
            timeout,
            max_body: MAX_RPC_RESPONSE_BYTES,
        })
    }

    /// Whether the endpoint is on this machine (loopback): alloy polls such
    /// nodes more often.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::evm_rpc::RpcTransport;
    /// assert!(RpcTransport::new("http://localhost:8545", Duration::from_secs(1)).unwrap().is_local());
    /// ```
    pub fn is_local(&self) -> bool {
        is_loopback(&self.url)
    }

    /// The per-request timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::evm_rpc::RpcTransport;
    /// let t = RpcTransport::new("http://127.0.0.1:8545", Duration::from_secs(3)).unwrap();
    /// assert_eq!(t.timeout(), Duration::from_secs(3));
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn send(self, packet: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let body = serde_json::to_vec(&packet).map_err(TransportError::ser_err)?;
        let mut resp = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| TransportErrorKind::custom(e.without_url()))?;
        let status = resp.status();
        if let Some(len) = resp.content_length()
            && len > self.max_body as u64
        {
            return Err(TransportErrorKind::custom_str(&format!(
                "RPC response of {len} bytes exceeds the {} byte limit",
                self.max_body
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TransportErrorKind::custom(e.without_url()))?
        {
            if bytes.len() + chunk.len() > self.max_body {
                return Err(TransportErrorKind::custom_str(&format!(
                    "RPC response exceeds the {} byte limit",
                    self.max_body
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        tracing::debug!(%status, bytes = bytes.len(), "RPC response");
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(TransportErrorKind::http_error(status.as_u16(), text));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            TransportError::deser_err(e, String::from_utf8_lossy(&bytes[..bytes.len().min(512)]))
        })
    }
}

impl tower::Service<RequestPacket> for RpcTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, packet: RequestPacket) -> TransportFut<'static> {
        let this = self.clone();
        let span = tracing::debug_span!(
            "eth_rpc",
            method = %first_method(&packet),
        );
        Box::pin(this.send(packet).instrument(span))
    }
}

fn first_method(packet: &RequestPacket) -> String {
    let mut names = packet.method_names();
    let first = names.next().unwrap_or_default().to_owned();
    match names.count() {
        0 => first,
        more => format!("{first} (+{more})"),
    }
}

/// `scheme://host[:port]`, without path, query or credentials.
pub(crate) fn redacted_origin(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => format!("{}://?", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let d = Duration::from_secs(1);
        assert!(RpcTransport::new("http://[::1]:8545", d).is_ok());
        assert_eq!(
            RpcTransport::new("http://example.com", d).unwrap_err(),
            TransportConfigError::InsecureUrl
        );
        assert!(matches!(
            RpcTransport::new("ftp://example.com", d).unwrap_err(),
            TransportConfigError::InvalidUrl(_)
        ));
        assert!(matches!(
            RpcTransport::new("not a url", d).unwrap_err(),
            TransportConfigError::InvalidUrl(_)
        ));
        let t = RpcTransport::new("https://user:pw@rpc.example.com:8443/key?x=1", d).unwrap();
        let dbg = format!("{t:?}");
        assert!(dbg.contains("https://rpc.example.com:8443"), "{dbg}");
        assert!(!dbg.contains("pw") && !dbg.contains("key"), "{dbg}");
    }
}
