//! What an L402 paywall charges and mints.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pay402_core::l402::Satisfier;
use pay402_core::money::Msat;

use crate::limit::{ClientLimiter, RateLimit};

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

/// How long a token is valid unless configured otherwise: 24 hours.
///
/// ```
/// assert_eq!(pay402_server::DEFAULT_TOKEN_LIFETIME.as_secs(), 86_400);
/// ```
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

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
    /// Default: [`DEFAULT_TOKEN_LIFETIME`] (24 hours).
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
    /// Paths served without payment (see [`L402Config::free_path`] for the
    /// pattern semantics).
    pub free_paths: Vec<String>,
    /// Invoice memo; `{method}` and `{path}` are replaced.
    pub memo: String,
    /// How many derived keys to cache.
    pub key_cache_capacity: usize,
    /// How long a cached key is trusted before re-reading the store.
    pub key_cache_ttl: Duration,
    /// Rate limit on issuing challenges (402s, which each create an invoice
    /// at the node), per client address (see [`crate::limit::client_ip`]);
    /// `None` (the default) = no limit. Paid requests are never limited.
    pub challenge_limit: Option<Arc<ClientLimiter>>,
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
            .field("challenge_limit", &self.challenge_limit)
            .finish_non_exhaustive()
    }
}

impl L402Config {
    /// Defaults for `service`: tier 0, location `lsat`, tokens valid for 24
    /// hours, one-hour invoices, Aperture reject mode, no binding, 1 MiB body
    /// limit.
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
            token_lifetime: Some(DEFAULT_TOKEN_LIFETIME),
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
            challenge_limit: None,
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

    /// Mints tokens without an expiry (they stay valid until revoked).
    ///
    /// ```
    /// assert!(pay402_server::L402Config::new("a").no_token_expiry().token_lifetime.is_none());
    /// ```
    pub fn no_token_expiry(mut self) -> Self {
        self.token_lifetime = None;
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

    /// Adds a free path: served without payment.
    ///
    /// A pattern is an exact path (`/health`) or a segment prefix ending in
    /// `*` (`/public/*`, or `/public*`, which means the same): the path
    /// `/public` and every path below it, but not `/publicity`. Both the
    /// pattern and the request path are compared as normalised segments:
    /// percent-encoding decoded, empty segments (`//`, a trailing `/`)
    /// dropped. A request path with a `.` or `..` segment (literal or
    /// percent-encoded), a decoded segment holding `/`, `\` or NUL, or an
    /// encoding that is not valid UTF-8 is never free: a router or handler
    /// could resolve it to a priced resource.
    ///
    /// ```
    /// let c = pay402_server::L402Config::new("a").free_path("/public/*");
    /// assert_eq!(c.free_paths, ["/public/*"]);
    /// assert!(c.is_free_path("/public/a.css") && !c.is_free_path("/publicity"));
    /// ```
    pub fn free_path(mut self, path: impl Into<String>) -> Self {
        self.free_paths.push(path.into());
        self
    }

    /// Limits how many challenges (402 answers, each creating an invoice) a
    /// client address may obtain. Requests over the limit get 429
    /// problem+json with reason `rate_limited` and `Retry-After`. Needs the
    /// peer address: serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`; requests
    /// without it are not limited.
    ///
    /// ```
    /// use pay402_server::{L402Config, limit::RateLimit};
    /// let c = L402Config::new("a").challenge_rate_limit(RateLimit::per_minute(60));
    /// assert_eq!(c.challenge_limit.unwrap().limit().burst(), 60);
    /// ```
    pub fn challenge_rate_limit(mut self, limit: RateLimit) -> Self {
        self.challenge_limit = Some(Arc::new(ClientLimiter::new(limit)));
        self
    }

    /// Sets the caching policy of paid responses (default
    /// [`PaidCaching::PrivateNoStore`](crate::cache::PaidCaching::PrivateNoStore)).
    ///
    /// ```
    /// use pay402_server::cache::PaidCaching;
    /// let c = pay402_server::L402Config::new("a").paid_caching(PaidCaching::HandlerDecides);
    /// assert_eq!(c.paid_caching, PaidCaching::HandlerDecides);
    /// ```
    pub fn paid_caching(mut self, policy: crate::cache::PaidCaching) -> Self {
        self.paid_caching = policy;
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

    /// Whether `path` (a request path, without query) is free.
    ///
    /// ```
    /// let c = pay402_server::L402Config::new("a").free_path("/public/*").free_path("/health");
    /// assert!(c.is_free_path("/public/x") && c.is_free_path("/health"));
    /// assert!(c.is_free_path("//health/") && c.is_free_path("/%68ealth"));
    /// assert!(!c.is_free_path("/healthz") && !c.is_free_path("/publicity"));
    /// assert!(!c.is_free_path("/public/../paid") && !c.is_free_path("/paid/../public/x"));
    /// ```
    pub fn is_free_path(&self, path: &str) -> bool {
        if self.free_paths.is_empty() {
            return false;
        }
        let Some(segments) = normalize_path(path) else {
            return false;
        };
        self.free_paths.iter().any(|p| {
            let (pattern, prefix) = match p.strip_suffix('*') {
                Some(stem) => (stem, true),
                None => (p.as_str(), false),
            };
            let Some(want) = normalize_path(pattern) else {
                return false;
            };
            if prefix {
                segments.len() >= want.len() && segments[..want.len()] == want[..]
            } else {
                segments == want
            }
        })
    }
}

/// The segments of a path, normalised: percent-decoded, empty segments
/// dropped. `None` when a segment is `.` or `..` (literal or encoded), or a
/// decoded segment is not valid UTF-8 or holds `/`, `\` or NUL: such a path
/// may mean another resource to a router, a handler or a file server than it
/// seems to, so it never matches a free-path pattern.
///
/// ```
/// use pay402_server::normalize_path;
/// assert_eq!(normalize_path("/a//b/%63/").unwrap(), ["a", "b", "c"]);
/// assert_eq!(normalize_path("/").unwrap(), Vec::<String>::new());
/// assert_eq!(normalize_path("/a/../b"), None);
/// assert_eq!(normalize_path("/a/%2e%2E/b"), None);
/// assert_eq!(normalize_path("/a/./b"), None);
/// assert_eq!(normalize_path("/a%2Fb"), None);
/// assert_eq!(normalize_path("/a%ZZ"), None);
/// ```
pub fn normalize_path(path: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let seg = percent_decode(raw)?;
        if seg.contains(['/', '\\', '\0']) {
            return None;
        }
        match seg.as_str() {
            "" => {}
            "." | ".." => return None,
            _ => out.push(seg),
        }
    }
    Some(out)
}

/// `/`-joined normalised segments (`/` for the root); `None` as for
/// [`normalize_path`].
pub(crate) fn normalized_path(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    if is_normalized(path) {
        return Some(std::borrow::Cow::Borrowed(path));
    }
    normalized_path_string(path).map(std::borrow::Cow::Owned)
}

/// Whether `path` is already in the form [`normalized_path_string`] gives.
fn is_normalized(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !path.contains(['%', '\\', '\0'])
        && rest
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn normalized_path_string(path: &str) -> Option<String> {
    let segs = normalize_path(path)?;
    let mut s = String::with_capacity(path.len());
    for seg in &segs {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    Some(s)
}

/// Decodes `%XX` escapes; `None` on a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = (*b.get(i + 1)? as char).to_digit(16)?;
            let lo = (*b.get(i + 2)? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowing_shortcut_agrees_with_the_full_normalisation() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a/",
            "//a",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/.",
            "/..",
            "/%61",
            "/a%2Fb",
            "a",
            "",
            "/a/.hidden",
            "/a/..b",
            "/a\\b",
        ] {
            assert_eq!(
                normalized_path(p).map(|c| c.into_owned()),
                normalized_path_string(p),
                "{p:?}"
            );
        }
    }
}
