//! clnrest: `POST <base>/v1/<method>` with a `Rune` header and the JSON-RPC
//! parameters as the JSON body.
//!
//! Success is HTTP 201 with the method's result as the body. A failed rune
//! check is HTTP 401 (403 on some versions) and an RPC error is HTTP 500,
//! both with CLN's error object `{"code", "message", "data"}` as the body.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::model::parse_error_body;
use super::{CallError, ClnRestConfig, config_error, tls};
use crate::util::client::{ReadError, error_chain, read_limited, snippet};
use crate::util::http::api_base;
use pay402_core::lightning::LightningError;

/// The largest response body read (8 MiB).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct RestTransport {
    http: reqwest::Client,
    base: Url,
}

impl RestTransport {
    pub(crate) fn new(config: &ClnRestConfig) -> Result<RestTransport, LightningError> {
        let rune = config.rune.trim();
        if rune.is_empty() {
            return Err(config_error("a rune is required (CLN_RUNE)"));
        }
        let mut value = HeaderValue::from_str(rune)
            .map_err(|_| config_error("the rune is not a valid header value"))?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("rune"), value);

        let http = tls::node_client(
            &config.url,
            config.timeout,
            config.tls_cert_pem.as_deref(),
            "https:// with the node's certificate",
            headers,
        )
        .map_err(config_error)?;
        Ok(RestTransport {
            http,
            base: api_base(config.url.clone()),
        })
    }

    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    pub(crate) async fn call(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let url = self
            .base
            .join(&format!("v1/{method}"))
            .map_err(|e| CallError::NotSent(format!("cannot build the URL: {e}")))?;
        let resp = match self
            .http
            .post(url)
            .timeout(timeout)
            .json(&params)
            .send()
            .await
        {
            Ok(r) => r,
            // Nothing reached the node.
            Err(e) if e.is_connect() || e.is_builder() => {
                return Err(CallError::NotSent(error_chain(&e)));
            }
            Err(e) if e.is_timeout() => {
                return Err(CallError::NoAnswer(format!(
                    "timed out: {}",
                    error_chain(&e)
                )));
            }
            Err(e) => return Err(CallError::NoAnswer(error_chain(&e))),
        };
        let status = resp.status();
        let body = match read_limited(resp, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(ReadError::TooLarge(max)) => {
                return Err(CallError::Invalid(format!(
                    "response body larger than {max} bytes"
                )));
            }
            Err(ReadError::Transport(e)) => {
                return Err(CallError::NoAnswer(format!("reading the response: {e}")));
            }
        };
        if status.is_success() {
            return serde_json::from_slice::<Value>(&body)
                .map_err(|e| CallError::Invalid(format!("malformed JSON: {e}")));
        }
        if let Some(err) = parse_error_body(&body) {
            return Err(CallError::Rpc(err));
        }
        let detail = format!("HTTP {}: {}", status.as_u16(), snippet(&body));
        if status.is_server_error() {
            // A proxy, or clnrest failing around the call: the node may
            // have acted on it.
            Err(CallError::NoAnswer(detail))
        } else {
            Err(CallError::Refused(detail))
        }
    }
}
