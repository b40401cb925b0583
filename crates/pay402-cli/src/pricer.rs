//! Dynamic prices from an HTTP pricer: bounded in time and size, cached per
//! method and path, and failing closed (the request gets 503, never free).
//!
//! The proxy sends `POST <url>` with `{"service", "method", "path"}` and
//! expects `{"sats": N}` for L402, BitRequests and MPP `lightning`/`charge`,
//! and `{"x402_units": "N"}` for x402 and MPP `evm`/`charge` (each rail the
//! service offers needs its price, above zero). The `sats` answer travels
//! as millisatoshis; the rails priced in whole satoshis (BitRequests, MPP
//! `lightning`) round it up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use pay402_core::money::{Msat, Sat};
use pay402_core::x402::TokenAmount;
use serde::Deserialize;

use crate::config::{MppMethod, PricerConfig, RailName};

/// The internal header carrying the pricer's `sats` price (in msat) to the
/// paywall, for L402, BitRequests and MPP `lightning`; any value a client
/// sends is removed first, and it never reaches the upstream.
pub const L402_PRICE_HEADER: &str = "x-pay402-internal-price-msat";
/// The internal header carrying an x402 price (token base units).
pub const X402_PRICE_HEADER: &str = "x-pay402-internal-price-x402";

/// One request's prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    /// The `sats` price in msat, if L402, BitRequests or MPP `lightning`
    /// is on.
    pub msat: Option<Msat>,
    /// The x402 price, if x402 is on.
    pub x402: Option<TokenAmount>,
}

/// Why no price could be had.
///
/// ```
/// assert!(pay402_cli::pricer::PricerError::Timeout.to_string().contains("time"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricerError {
    /// No answer in time.
    #[error("the pricer did not answer in time")]
    Timeout,
    /// Unreachable or not 200.
    #[error("the pricer failed: {0}")]
    Failed(String),
    /// An answer without a valid price for every rail.
    #[error("the pricer's answer is not a valid price: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Answer {
    sats: Option<u64>,
    x402_units: Option<String>,
}

/// Largest pricer answer read.
const MAX_ANSWER: usize = 4096;

/// A service's pricer.
///
/// ```
/// use pay402_cli::config::{PricerConfig, RailName};
/// let p = pay402_cli::pricer::Pricer::new(
///     "api",
///     &PricerConfig { url: "http://127.0.0.1:9/price".into(), timeout_ms: 500, cache_secs: 30 },
///     &[RailName::L402],
///     &[],
/// ).unwrap();
/// # let _ = p;
/// ```
pub struct Pricer {
    service: String,
    url: reqwest::Url,
    http: reqwest::Client,
    timeout: Duration,
    ttl: Duration,
    sats: bool,
    x402: bool,
    cache: quick_cache::sync::Cache<(Method, String), (Quote, Instant)>,
}

impl Pricer {
    /// A pricer for `service` offering `rails`.
    pub fn new(
        service: &str,
        config: &PricerConfig,
        rails: &[RailName],
        mpp_methods: &[MppMethod],
    ) -> Result<Arc<Pricer>, String> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("pricer client: {e}"))?;
        let url = reqwest::Url::parse(&config.url).map_err(|e| format!("pricer url: {e}"))?;
        Ok(Arc::new(Pricer {
            service: service.to_owned(),
            url,
            http,
            timeout,
            ttl: Duration::from_secs(config.cache_secs),
            // BitRequests and MPP's lightning method are priced in sat, its
            // evm method in the x402 asset's units: the same answers.
            sats: rails.contains(&RailName::L402)
                || rails.contains(&RailName::Bitreq)
                || mpp_methods.contains(&MppMethod::Lightning),
            x402: rails.contains(&RailName::X402) || mpp_methods.contains(&MppMethod::Evm),
            cache: quick_cache::sync::Cache::new(10_000),
        }))
    }

    /// The price of `method` `path` (cached for `cache_secs`).
    ///
    /// ```no_run
    /// # async fn f(p: &pay402_cli::pricer::Pricer) {
    /// let quote = p.quote(&http::Method::GET, "/v1/x").await;
    /// # let _ = quote; }
    /// ```
    pub async fn quote(&self, method: &Method, path: &str) -> Result<Quote, PricerError> {
        let key = (method.clone(), path.to_owned());
        if let Some((q, at)) = self.cache.get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(q);
        }
        let q = tokio::time::timeout(self.timeout, self.ask(method, path))
            .await
            .map_err(|_| PricerError::Timeout)??;
        if !self.ttl.is_zero() {
            self.cache.insert(key, (q, Instant::now()));
        }
        Ok(q)
    }

    async fn ask(&self, method: &Method, path: &str) -> Result<Quote, PricerError> {
        let body =
            serde_json::json!({ "service": self.service, "method": method.as_str(), "path": path });
        let mut resp = self
            .http
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    PricerError::Timeout
                } else {
                    PricerError::Failed(e.without_url().to_string())
                }
            })?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(PricerError::Failed(format!("status {}", resp.status())));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| PricerError::Failed(e.without_url().to_string()))?
        {
            if buf.len() + chunk.len() > MAX_ANSWER {
                return Err(PricerError::Invalid("answer over 4 KiB".into()));
            }
            buf.extend_from_slice(&chunk);
        }
        let a: Answer =
            serde_json::from_slice(&buf).map_err(|e| PricerError::Invalid(e.to_string()))?;
        let msat = if self.sats {
            match a.sats.and_then(|s| Sat(s).to_msat()) {
                Some(m) if m > Msat::ZERO => Some(m),
                _ => return Err(PricerError::Invalid("no sats above zero".into())),
            }
        } else {
            None
        };
        let x402 = if self.x402 {
            match a.x402_units.as_deref().map(TokenAmount::parse) {
                Some(Ok(t)) if !t.0.is_zero() => Some(t),
                _ => return Err(PricerError::Invalid("no x402_units above zero".into())),
            }
        } else {
            None
        };
        Ok(Quote { msat, x402 })
    }
}
