//! A minimal alloy JSON-RPC transport over the workspace's reqwest 0.12.
//!
//! alloy's own HTTP transport is compiled out (it would pull a second
//! reqwest); this is the `tower::Service<RequestPacket>` alloy needs:
//! one `POST` per packet, a bounded response body, TLS verification on
//! (reqwest with rustls, never disabled).

use std::task::{Context, Poll};

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use reqwest::Url;
use tracing::Instrument;

/// Largest JSON-RPC response accepted, in bytes.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A JSON-RPC over HTTP(S) transport for alloy built on reqwest 0.12.
///
/// ```
/// use pay402_backends::x402_mock::HttpTransport;
/// let t = HttpTransport::new(reqwest::Client::new(), "http://127.0.0.1:8545".parse().unwrap());
/// assert_eq!(t.url().as_str(), "http://127.0.0.1:8545/");
/// ```
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    url: Url,
}

impl HttpTransport {
    /// A transport posting to `url` with `client` (configure timeouts on the client).
    ///
    /// ```
    /// use pay402_backends::x402_mock::HttpTransport;
    /// let _t = HttpTransport::new(reqwest::Client::new(), "https://rpc.example".parse().unwrap());
    /// ```
    pub fn new(client: reqwest::Client, url: Url) -> HttpTransport {
        HttpTransport { client, url }
    }

    /// The endpoint.
    ///
    /// ```
    /// use pay402_backends::x402_mock::HttpTransport;
    /// let t = HttpTransport::new(reqwest::Client::new(), "http://127.0.0.1:1".parse().unwrap());
    /// assert_eq!(t.url().port(), Some(1));
    /// ```
    pub fn url(&self) -> &Url {
        &self.url
    }

    async fn send(self, packet: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let mut resp = self
            .client
            .post(self.url)
            .headers(packet.headers())
            .json(&packet)
            .send()
            .await
            // The URL may carry an API key: keep it out of errors and logs.
            .map_err(|e| TransportErrorKind::custom(e.without_url()))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TransportErrorKind::custom(e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TransportErrorKind::custom_str(
                    "JSON-RPC response larger than 16 MiB",
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(TransportErrorKind::http_error(
                status.as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| TransportError::deser_err(e, String::from_utf8_lossy(&body)))
    }
}

impl tower::Service<RequestPacket> for HttpTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, packet: RequestPacket) -> TransportFut<'static> {
        let span = tracing::debug_span!("x402_mock.rpc", host = self.url.host_str().unwrap_or(""));
        Box::pin(self.clone().send(packet).instrument(span))
    }
}
