//! What an L402 paywall charges and mints.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pay402_core::l402::Satisfier;
use pay402_core::money::Msat;

/// How the server answers an invalid or malformed credential.
///
/// ```
/// assert_eq!(pay402_server::RejectMode::default(), pay402_server::RejectMode::Aperture);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RejectMode {
    /// 402 with a fresh challenge, as Aperture does (clients evict and pay again).
    #[default]
    Aperture,
    /// As the L402 text specifies: 400 for malformed credentials, 401 (with a
    /// fresh challenge) for invalid ones.
    Spec,
}

/// What a dynamic price function sees of the request.
///
/// ```
/// use pay402_server::PriceRequest;
/// let r = PriceRequest { method: http::Method::GET, uri: "/x".parse().unwrap(), headers: http::HeaderMap::new(), body: None };
/// assert_eq!(r.uri.path(), "/x");
/// ```
#[derive(Clone, Debug)]
pub struct PriceRequest {
    /// The method.
    pub method: http::Method,
    /// The URI.
    pub uri: http::Uri,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body, when the layer buffers bodies (request binding on).
    pub body: Option<Bytes>,
}

/// A boxed future returning a price (`None` or zero means free).
pub type PriceFuture = Pin<Box<dyn Future<Output = Option<Msat>> + Send + 'static>>;

/// A price: fixed, or computed per request.
///
/// ```
/// use pay402_server::Price;
/// use pay402_core::money::{Msat, Sat};
/// let fixed = Price::sats(100);
/// let dynamic = Price::dynamic(|req| async move {
///     // Longer prompts cost more.
///     let len = req.body.as_ref().map_or(0, |b| b.len() as u64);
///     Some(Msat(1_000 * (1 + len / 1_000)))
/// });
/// # let _ = (fixed, dynamic);
/// ```
#[derive(Clone)]
pub enum Price {
    /// The same price for every request.
    Fixed(Msat),
    /// A price computed from the request.
    Dynamic(Arc<dyn Fn(PriceRequest) -> PriceFuture + Send + Sync>),
}

impl Price {
    /// A fixed price in satoshis (saturating).
    ///
    /// ```
    /// assert!(matches!(pay402_server::Price::sats(1), pay402_server::Price::Fixed(pay402_core::money::Msat(1000))));
    /// ```
    pub fn sats(sats: u64) -> Price {
        Price::Fixed(Msat(sats.saturating_mul(1000)))
    }

    /// A price computed by an async function of the request.
    ///
    /// ```
    /// let p = pay402_server::Price::dynamic(|_req| async { None });
    /// # let _ = p;
    /// ```
    pub fn dynamic<F, Fut>(f: F) -> Price
    where
        F: Fn(PriceRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Msat>> + Send + 'static,
    {
        Price::Dynamic(Arc::new(move |r| Box::pin(f(r))))
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Price::Fixed(m) => write!(f, "Price::Fixed({m})"),
            Price::Dynamic(_) => f.write_str("Price::Dynamic(..)"),
        }
    }
}

/// Paywall settings shared by every route a layer protects.
///
/// ```
/// use pay402_server::L402Config;
/// use std::time::Duration;
/// let cfg = L402Config::new("weather")
///     .capabilities(["forecast"])
///     .token_lifetime(Duration::from_secs(3600))
///     .free_path("/health")
///     .emit_lsat(true);
/// assert_eq!(cfg.service, "weather");
/// ```
#[derive(Clone)]
pub struct L402Config {
    /// The service name minted into `services=<name>:<tier>`.
    pub service: String,
    /// The service tier.
    pub tier: u8,
    /// The macaroon location hint (Aperture uses `lsat`).
    pub location: String,
    /// Capabilities minted into `<service>_capabilities=`.
    pub capabilities: Vec<String>,
    /// Lifetime of a token (`<service>_valid_until=`); `None` = no expiry.
    pub token_lifetime: Option<Duration>,
    /// Expiry of the invoices the layer requests.
    pub invoice_expiry: Duration,
    /// Extra first-party caveats added to every token.
    pub extra_caveats: Vec<String>,
    /// User-defined satisfiers (they see the request).
    pub satisfiers: Vec<Arc<dyn Satisfier>>,
    /// Reject caveats no satisfier knows (Aperture skips them).
    pub strict_caveats: bool,
    /// How to answer invalid credentials.
    pub reject_mode: RejectMode,
    /// Also send an `LSAT` challenge (first, as Aperture does) for old clients.
    pub emit_lsat: bool,
    /// Bind each token to the exact request it was quoted for (method, path
    /// and query, SHA-256 of the body). Requires buffering request bodies.
    pub bind_request: bool,
    /// Largest request body buffered when binding (413 above it).
    pub max_body: usize,
    /// Paths served without payment: exact, or a prefix when ending in `*`.
    pub free_paths: Vec<String>,
    /// Invoice memo; `{method}` and `{path}` are replaced.
    pub memo: String,
    /// How many derived keys to cache.
    pub key_cache_capacity: usize,
    /// How long a cached key is trusted before re-reading the store.
    pub key_cache_ttl: Duration,
    /// Whether paid responses may be cached (default: `Cache-Control:
    /// private, no-store`; see [`crate::cache`]).
    pub paid_caching: crate::cache::PaidCaching,
}

impl fmt::Debug for L402Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("L402Config")
            .field("service", &self.service)
            .field("tier", &self.tier)
            .field("capabilities", &self.capabilities)
            .field("token_lifetime", &self.token_lifetime)
            .field("reject_mode", &self.reject_mode)
            .field("bind_request", &self.bind_request)
            .field("free_paths", &self.free_paths)
            .field("satisfiers", &self.satisfiers.len())
            .finish_non_exhaustive()
    }
}

impl L402Config {
    /// Defaults for `service`: tier 0, location `lsat`, no expiry, one-hour
    /// invoices, Aperture reject mode, no binding, 1 MiB body limit.
    ///
    /// ```
    /// let c = pay402_server::L402Config::new("api");
    /// assert_eq!(c.location, "lsat");
    /// ```
    pub fn new(service: impl Into<String>) -> L402Config {
        L402Config {
            service: service.into(),
            tier: 0,
            location: "lsat".into(),
            capabilities: Vec::new(),
            token_lifetime: None,
            invoice_expiry: Duration::from_secs(3600),
            extra_caveats: Vec::new(),
            satisfiers: Vec::new(),
            strict_caveats: false,
            reject_mode: RejectMode::Aperture,
            emit_lsat: false,
            bind_request: false,
            max_body: 1024 * 1024,
            free_paths: Vec::new(),
            memo: "{method} {path}".into(),
            key_cache_capacity: 100_000,
            key_cache_ttl: Duration::from_secs(60),
            paid_caching: crate::cache::PaidCaching::PrivateNoStore,
        }
    }

    /// Sets the tier.
    ///
    /// ```
    /// assert_eq!(pay402_server::L402Config::new("a").tier(2).tier, 2);
    /// ```
    pub fn tier(mut self, tier: u8) -> Self {
        self.tier = tier;
        self
    }

    /// Sets the location hint.
    ///
    /// ```
    /// assert_eq!(pay402_server::L402Config::new("a").location("x").location, "x");
    /// ```
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.location = location.into();
        self
    }

    /// Sets the capabilities granted.
    ///
    /// ```
    /// assert_eq!(pay402_server::L402Config::new("a").capabilities(["r"]).capabilities, ["r"]);
    /// ```
    pub fn capabilities<I, S>(mut self, caps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the token lifetime.
    ///
    /// ```
    /// let c = pay402_server::L402Config::new("a").token_lifetime(std::time::Duration::from_secs(5));
    /// assert_eq!(c.token_lifetime.unwrap().as_secs(), 5);
    /// ```
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = Some(lifetime);
        self
    }

    /// Sets the invoice expiry.
    ///
    /// ```
    /// let c = pay402_server::L402Config::new("a").invoice_expiry(std::time::Duration::from_secs(600));
    /// assert_eq!(c.invoice_expiry.as_secs(), 600);
    /// ```
    pub fn invoice_expiry(mut self, expiry: Duration) -> Self {
        self.invoice_expiry = expiry;
        self
    }

    /// Adds a caveat to every token.
    ///
    /// ```
    /// assert_eq!(pay402_server::L402Config::new("a").caveat("tenant=7").extra_caveats, ["tenant=7"]);
    /// ```
    pub fn caveat(mut self, caveat: impl Into<String>) -> Self {
        self.extra_caveats.push(caveat.into());
        self
    }

    /// Adds a user-defined satisfier.
    ///
    /// ```
    /// use pay402_core::l402::caveat::ServicesSatisfier;
    /// let c = pay402_server::L402Config::new("a").satisfier(ServicesSatisfier);
    /// assert_eq!(c.satisfiers.len(), 1);
    /// ```
    pub fn satisfier(mut self, s: impl Satisfier + 'static) -> Self {
        self.satisfiers.push(Arc::new(s));
        self
    }

    /// Turns strict caveat checking on or off.
    ///
    /// ```
    /// assert!(pay402_server::L402Config::new("a").strict_caveats(true).strict_caveats);
    /// ```
    pub fn strict_caveats(mut self, strict: bool) -> Self {
        self.strict_caveats = strict;
        self
    }

    /// Sets the reject mode.
    ///
    /// ```
    /// use pay402_server::{L402Config, RejectMode};
    /// assert_eq!(L402Config::new("a").reject_mode(RejectMode::Spec).reject_mode, RejectMode::Spec);
    /// ```
    pub fn reject_mode(mut self, mode: RejectMode) -> Self {
        self.reject_mode = mode;
        self
    }

    /// Also emit an `LSAT` challenge.
    ///
    /// ```
    /// assert!(pay402_server::L402Config::new("a").emit_lsat(true).emit_lsat);
    /// ```
    pub fn emit_lsat(mut self, on: bool) -> Self {
        self.emit_lsat = on;
        self
    }

    /// Binds tokens to the exact quoted request.
    ///
    /// ```
    /// assert!(pay402_server::L402Config::new("a").bind_request(true).bind_request);
    /// ```
    pub fn bind_request(mut self, on: bool) -> Self {
        self.bind_request = on;
        self
    }

    /// Sets the body limit used when binding.
    ///
    /// ```
    /// assert_eq!(pay402_server::L402Config::new("a").max_body(10).max_body, 10);
    /// ```
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Adds a free path (`/health`, or a prefix like `/public/*`).
    ///
    /// ```
    /// assert_eq!(pay402_server::L402Config::new("a").free_path("/health").free_paths, ["/health"]);
    /// ```
    pub fn free_path(mut self, path: impl Into<String>) -> Self {
        self.free_paths.push(path.into());
        self
    }

    /// Sets the invoice memo template.
    ///
    /// ```
    /// assert_eq!(pay402_server::L402Config::new("a").memo("pay me").memo, "pay me");
    /// ```
    pub fn memo(mut self, memo: impl Into<String>) -> Self {
        self.memo = memo.into();
        self
    }

    /// Whether `path` is free.
    ///
    /// ```
    /// let c = pay402_server::L402Config::new("a").free_path("/public/*").free_path("/health");
    /// assert!(c.is_free_path("/public/x") && c.is_free_path("/health"));
    /// assert!(!c.is_free_path("/healthz"));
    /// ```
    pub fn is_free_path(&self, path: &str) -> bool {
        self.free_paths.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => p == path,
        })
    }
}
