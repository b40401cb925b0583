//! Per-client rate limits, for any rail: a keyed GCRA limiter (the
//! [`governor`] crate) with a bounded key table, the client key every rail can
//! use (the peer IP address, IPv6 grouped by /64), and the 429 answer.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use pay402_server::limit::{KeyedLimiter, RateLimit};
//! let limiter = KeyedLimiter::new(RateLimit::per_minute(2));
//! let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
//! assert!(limiter.check(ip).is_ok());
//! assert!(limiter.check(ip).is_ok());
//! let refused = limiter.check(ip).unwrap_err();
//! assert_eq!(pay402_core::problem::Reason::reason(&refused), "rate_limited");
//! // Another client has its own allowance.
//! assert!(limiter.check(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))).is_ok());
//! ```

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderValue, header};
use pay402_core::problem::{Problem, Reason};

/// How many requests a client may make: up to `burst` at once, replenished
/// at an even rate over the period.
///
/// ```
/// use pay402_server::limit::RateLimit;
/// let r = RateLimit::per_minute(60);
/// assert_eq!(r.burst(), 60);
/// assert_eq!(RateLimit::per_second(0).burst(), 1, "at least one");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    quota: Quota,
}

impl RateLimit {
    /// Up to `max` requests per `period` (a burst of `max`, one replenished
    /// every `period / max`). `max` is at least 1; a zero `period` is taken
    /// as one nanosecond.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = pay402_server::limit::RateLimit::per_period(10, Duration::from_secs(3600));
    /// assert_eq!(r.burst(), 10);
    /// ```
    pub fn per_period(max: u32, period: Duration) -> RateLimit {
        let max = NonZeroU32::new(max).unwrap_or(NonZeroU32::MIN);
        let interval = (period / max.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(max);
        RateLimit { quota }
    }

    /// Up to `n` requests per second.
    ///
    /// ```
    /// assert_eq!(pay402_server::limit::RateLimit::per_second(5).burst(), 5);
    /// ```
    pub fn per_second(n: u32) -> RateLimit {
        RateLimit::per_period(n, Duration::from_secs(1))
    }

    /// Up to `n` requests per minute.
    ///
    /// ```
    /// assert_eq!(pay402_server::limit::RateLimit::per_minute(30).burst(), 30);
    /// ```
    pub fn per_minute(n: u32) -> RateLimit {
        RateLimit::per_period(n, Duration::from_secs(60))
    }

    /// The largest burst allowed.
    ///
    /// ```
    /// assert_eq!(pay402_server::limit::RateLimit::per_minute(7).burst(), 7);
    /// ```
    pub fn burst(&self) -> u32 {
        self.quota.burst_size().get()
    }
}

/// A request refused by a rate limit: 429 with reason `rate_limited`.
///
/// ```
/// use pay402_core::problem::Reason;
/// let e = pay402_server::limit::RateLimited { retry_after: std::time::Duration::from_secs(3) };
/// assert_eq!((e.reason(), e.status()), ("rate_limited", 429));
/// let resp = e.response();
/// assert_eq!(resp.status(), 429);
/// assert_eq!(resp.headers()["retry-after"], "3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many requests; retry after {retry_after:?}")]
pub struct RateLimited {
    /// When the client may try again.
    pub retry_after: Duration,
}

impl Reason for RateLimited {
    fn reason(&self) -> &'static str {
        "rate_limited"
    }
    fn status(&self) -> u16 {
        429
    }
}

impl RateLimited {
    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up (the
    /// `Retry-After` value).
    ///
    /// ```
    /// let e = pay402_server::limit::RateLimited { retry_after: std::time::Duration::from_millis(1_200) };
    /// assert_eq!(e.retry_after_secs(), 2);
    /// ```
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after
            .as_secs()
            .saturating_add(u64::from(self.retry_after.subsec_nanos() > 0))
    }

    /// The problem+json 429 response, with `Retry-After` in whole seconds
    /// (rounded up).
    ///
    /// ```
    /// let e = pay402_server::limit::RateLimited { retry_after: std::time::Duration::from_millis(1) };
    /// assert_eq!(e.response().headers()["retry-after"], "1");
    /// ```
    pub fn response(&self) -> Response {
        let secs = self.retry_after_secs();
        let problem = Problem::from_reason(self, 429).with_detail(format!(
            "too many requests from this client; retry after {secs} s"
        ));
        let mut resp = crate::respond::problem(&problem);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        resp
    }
}

/// A rate limiter keyed by client (any hashable key), holding at most about
/// `max_keys` keys: past that, keys whose allowance is full again are
/// dropped (they would start afresh anyway).
///
/// ```
/// use pay402_server::limit::{KeyedLimiter, RateLimit};
/// let limiter = KeyedLimiter::new(RateLimit::per_second(1)).max_keys(1_000);
/// assert!(limiter.check("alice").is_ok());
/// assert!(limiter.check("alice").is_err());
/// assert!(limiter.check("bob").is_ok());
/// ```
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: RateLimiter<K, DashMapStateStore<K>, DefaultClock>,
    clock: DefaultClock,
    limit: RateLimit,
    max_keys: usize,
    prune_at: AtomicUsize,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("limit", &self.limit)
            .field("keys", &self.limiter.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

/// Keys held before pruning, unless set with [`KeyedLimiter::max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter allowing `limit` per key.
    ///
    /// ```
    /// let l = pay402_server::limit::KeyedLimiter::<u32>::new(pay402_server::limit::RateLimit::per_second(10));
    /// assert_eq!(l.len(), 0);
    /// ```
    pub fn new(limit: RateLimit) -> KeyedLimiter<K> {
        let clock = DefaultClock::default();
        KeyedLimiter {
            limiter: RateLimiter::new(limit.quota, DashMapStateStore::default(), clock.clone()),
            clock,
            limit,
            max_keys: DEFAULT_MAX_KEYS,
            prune_at: AtomicUsize::new(DEFAULT_MAX_KEYS),
        }
    }

    /// Sets the number of keys held before pruning.
    ///
    /// ```
    /// use pay402_server::limit::{KeyedLimiter, RateLimit};
    /// let l = KeyedLimiter::<u32>::new(RateLimit::per_second(1)).max_keys(10);
    /// for k in 0..100 { let _ = l.check(k); }
    /// assert!(l.len() <= 100);
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> KeyedLimiter<K> {
        self.max_keys = max_keys.max(1);
        self.prune_at = AtomicUsize::new(self.max_keys);
        self
    }

    /// The limit per key.
    ///
    /// ```
    /// use pay402_server::limit::{KeyedLimiter, RateLimit};
    /// assert_eq!(KeyedLimiter::<u8>::new(RateLimit::per_second(3)).limit().burst(), 3);
    /// ```
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Counts one request for `key`; `Err` if it is over its limit.
    ///
    /// ```
    /// use pay402_server::limit::{KeyedLimiter, RateLimit};
    /// let l = KeyedLimiter::new(RateLimit::per_minute(1));
    /// assert!(l.check(1u8).is_ok());
    /// assert!(l.check(1u8).unwrap_err().retry_after.as_secs() <= 60);
    /// ```
    pub fn check(&self, key: K) -> Result<(), RateLimited> {
        self.prune();
        self.limiter
            .check_key(&key)
            .map_err(|not_until| RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Number of keys held.
    ///
    /// ```
    /// let l = pay402_server::limit::KeyedLimiter::<u8>::new(pay402_server::limit::RateLimit::per_second(1));
    /// let _ = l.check(0);
    /// assert_eq!(l.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is held.
    ///
    /// ```
    /// assert!(pay402_server::limit::KeyedLimiter::<u8>::new(pay402_server::limit::RateLimit::per_second(1)).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// Past the threshold, drops keys whose allowance is full; the next
    /// threshold doubles what is left, so pruning stays amortised O(1).
    fn prune(&self) {
        let len = self.limiter.len();
        if len <= self.prune_at.load(Ordering::Relaxed) {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let left = self.limiter.len();
        self.prune_at
            .store(self.max_keys.max(left.saturating_mul(2)), Ordering::Relaxed);
    }
}

/// The client key of a request: the peer IP address from axum's
/// [`ConnectInfo`] (serve with `into_make_service_with_connect_info::<SocketAddr>()`),
/// IPv6 addresses grouped by their /64 prefix (one subscriber usually holds
/// a whole /64); `None` without `ConnectInfo`.
///
/// ```
/// use std::net::SocketAddr;
/// use axum::extract::ConnectInfo;
/// let mut ext = http::Extensions::new();
/// assert_eq!(pay402_server::limit::client_ip(&ext), None);
/// ext.insert(ConnectInfo("[2001:db8::1:2]:443".parse::<SocketAddr>().unwrap()));
/// assert_eq!(pay402_server::limit::client_ip(&ext).unwrap().to_string(), "2001:db8::");
/// ```
pub fn client_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    let ConnectInfo(addr) = extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(match addr.ip() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    })
}

/// A per-client-address limiter, as the rails' configurations hold it.
///
/// ```
/// use pay402_server::limit::{ClientLimiter, RateLimit};
/// let l = ClientLimiter::new(RateLimit::per_minute(10));
/// assert_eq!(l.limit().burst(), 10);
/// ```
pub type ClientLimiter = KeyedLimiter<IpAddr>;

/// Counts one request of the client of `extensions` against `limiter`, if
/// both are known: `Err` (the 429) when it is over its limit. A request
/// without [`ConnectInfo`] is not limited.
pub(crate) fn admit(
    limiter: Option<&ClientLimiter>,
    extensions: &http::Extensions,
) -> Result<(), RateLimited> {
    match (limiter, client_ip(extensions)) {
        (Some(l), Some(ip)) => l.check(ip),
        _ => Ok(()),
    }
}
