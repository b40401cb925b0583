//! Settings of an x402 paywall, shared by every route a layer protects.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pay402_core::time::UnixTime;

use crate::cache::PaidCaching;
use crate::limit::{ClientLimiter, RateLimit};

/// When the payment is settled relative to the handler.
///
/// ```
/// use pay402_server::x402::SettleTiming;
/// assert_eq!(SettleTiming::default(), SettleTiming::AfterHandler);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SettleTiming {
    /// Run the handler, buffer its response (bounded), settle, then serve.
    /// A handler answer >= 400 is passed on without settling (the payment
    /// stays usable); a failed settlement discards the body. The default, as
    /// in the reference servers.
    #[default]
    AfterHandler,
    /// Settle first, then run the handler and stream its response. The
    /// payer is charged even if the handler then fails; use it for streaming
    /// or large responses, or handlers with side effects that must only run
    /// once paid.
    BeforeHandler,
}

/// How the layer treats the `payment-identifier` extension.
///
/// ```
/// use pay402_server::x402::PaymentIdentifierMode;
/// assert_eq!(PaymentIdentifierMode::default(), PaymentIdentifierMode::Optional);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PaymentIdentifierMode {
    /// Not advertised; ids in payments are ignored.
    Off,
    /// Advertised as optional; an id in a payment makes the layer cache the
    /// response for that id (same id + same payment → the cached response;
    /// same id + another payment → 409).
    #[default]
    Optional,
    /// Advertised as required; a payment without an id gets 400.
    Required,
}

/// A source of the current time (injectable for tests).
///
/// ```
/// use pay402_server::x402::Clock;
/// use pay402_core::time::UnixTime;
/// let fixed = Clock::fixed(UnixTime(1_740_672_100));
/// assert_eq!(fixed.now(), UnixTime(1_740_672_100));
/// assert!(Clock::system().now().0 > 1_700_000_000);
/// ```
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> UnixTime + Send + Sync>);

impl Clock {
    /// The system clock.
    ///
    /// ```
    /// let _ = pay402_server::x402::Clock::system();
    /// ```
    pub fn system() -> Clock {
        Clock(Arc::new(|| UnixTime::from_system(SystemTime::now())))
    }

    /// A clock stuck at `t`.
    ///
    /// ```
    /// use pay402_core::time::UnixTime;
    /// assert_eq!(pay402_server::x402::Clock::fixed(UnixTime(5)).now(), UnixTime(5));
    /// ```
    pub fn fixed(t: UnixTime) -> Clock {
        Clock(Arc::new(move || t))
    }

    /// A clock reading `f`.
    ///
    /// ```
    /// use pay402_core::time::UnixTime;
    /// let c = pay402_server::x402::Clock::from_fn(|| UnixTime(7));
    /// assert_eq!(c.now(), UnixTime(7));
    /// ```
    pub fn from_fn(f: impl Fn() -> UnixTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// The current time.
    ///
    /// ```
    /// let _ = pay402_server::x402::Clock::system().now();
    /// ```
    pub fn now(&self) -> UnixTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock(..)")
    }
}

/// Settings of an x402 paywall.
///
/// ```
/// use std::time::Duration;
/// use pay402_server::x402::{X402Config, SettleTiming, PaymentIdentifierMode};
/// let cfg = X402Config::new()
///     .settle(SettleTiming::BeforeHandler)
///     .accept_v1(false)
///     .payment_identifier(PaymentIdentifierMode::Required)
///     .base_url("https://api.example.com")
///     .max_response_body(1 << 20);
/// assert!(!cfg.accept_v1);
/// ```
#[derive(Clone, Debug)]
pub struct X402Config {
    /// When to settle (default: after the handler).
    pub settle: SettleTiming,
    /// Also offer x402 v1 (the JSON 402 body with `x402Version: 1`) and
    /// accept `X-PAYMENT` (default: on).
    pub accept_v1: bool,
    /// Ask the facilitator to verify (balance, nonce state, simulation)
    /// before running the handler (default: on). Local verification always
    /// runs first.
    pub facilitator_verify: bool,
    /// The `payment-identifier` extension (default: optional).
    pub payment_identifier: PaymentIdentifierMode,
    /// Largest handler response buffered for settle-after (default 8 MiB).
    /// A larger response is not served (and not charged): 500
    /// `response_too_large`; use settle-before for such routes.
    pub max_response_body: usize,
    /// How long a reservation belongs to the request that took it without
    /// being renewed (default 60 s). While the request works (body upload,
    /// handler, settlement) the layer renews the lease every third of it, so
    /// a slow request keeps its payment; the lease only runs out when its
    /// process died or lost the store, and then the same payment may take it
    /// over as if pending. A request whose reservation was taken over is
    /// never served (409 `reservation_lost`).
    pub reservation_lease: Duration,
    /// How far past `maxTimeoutSeconds` from now an authorization's
    /// `validBefore` may lie, for the payer's clock running ahead (default
    /// 30 s). A later `validBefore` (an authorization that stays spendable
    /// longer than the offer allows) is refused with 402
    /// `invalid_exact_evm_payload_authorization_valid_before_too_far`.
    pub clock_skew: Duration,
    /// How long a `released` record (a payment refused, or whose handler
    /// failed: nothing moved) is kept before the layer prunes it (default
    /// 1 h). Pruning runs at most once a minute, from the request path.
    pub released_retention: Duration,
    /// Whether paid responses may be cached (default: `Cache-Control:
    /// private, no-store`). See [`PaidCaching`].
    pub paid_caching: PaidCaching,
    /// Rate limit on payments checked, per client address (see
    /// [`crate::limit::client_ip`]): each new payment costs a durable
    /// reservation and facilitator calls before it is known to be good, so
    /// a client sending signed but unfunded payments is answered 429
    /// (`rate_limited`) past this limit, before any of that work. `None`
    /// (the default) = no limit; 402s cost no write and are not limited.
    pub payment_limit: Option<Arc<ClientLimiter>>,
    /// Bound on the facilitator's `verify` (default 30 s; past it: 503, nothing moved).
    pub verify_timeout: Duration,
    /// Bound on the facilitator's `settle` (default 120 s; past it the
    /// outcome is unknown: recorded as pending, 503).
    pub settle_timeout: Duration,
    /// `Retry-After` sent with pending answers (default 2 s).
    pub retry_after: Duration,
    /// Prefix of the resource URLs in the offers (`https://api.example.com`);
    /// without it the URL is built from the request's `Host`.
    pub base_url: Option<String>,
    /// The clock (default: the system clock).
    pub clock: Clock,
}

impl Default for X402Config {
    fn default() -> X402Config {
        X402Config {
            settle: SettleTiming::AfterHandler,
            accept_v1: true,
            facilitator_verify: true,
            payment_identifier: PaymentIdentifierMode::Optional,
            max_response_body: 8 * 1024 * 1024,
            reservation_lease: Duration::from_secs(60),
            clock_skew: Duration::from_secs(30),
            released_retention: Duration::from_secs(3600),
            paid_caching: PaidCaching::PrivateNoStore,
            payment_limit: None,
            verify_timeout: Duration::from_secs(30),
            settle_timeout: Duration::from_secs(120),
            retry_after: Duration::from_secs(2),
            base_url: None,
            clock: Clock::system(),
        }
    }
}

impl X402Config {
    /// The defaults (see the fields).
    ///
    /// ```
    /// let c = pay402_server::x402::X402Config::new();
    /// assert!(c.facilitator_verify && c.accept_v1);
    /// ```
    pub fn new() -> X402Config {
        X402Config::default()
    }

    /// Sets when to settle.
    ///
    /// ```
    /// use pay402_server::x402::{X402Config, SettleTiming};
    /// assert_eq!(X402Config::new().settle(SettleTiming::BeforeHandler).settle, SettleTiming::BeforeHandler);
    /// ```
    pub fn settle(mut self, timing: SettleTiming) -> Self {
        self.settle = timing;
        self
    }

    /// Turns v1 (`X-PAYMENT`, JSON 402 body) on or off.
    ///
    /// ```
    /// assert!(!pay402_server::x402::X402Config::new().accept_v1(false).accept_v1);
    /// ```
    pub fn accept_v1(mut self, on: bool) -> Self {
        self.accept_v1 = on;
        self
    }

    /// Turns the facilitator's verify step on or off.
    ///
    /// ```
    /// assert!(!pay402_server::x402::X402Config::new().facilitator_verify(false).facilitator_verify);
    /// ```
    pub fn facilitator_verify(mut self, on: bool) -> Self {
        self.facilitator_verify = on;
        self
    }

    /// Sets the `payment-identifier` mode.
    ///
    /// ```
    /// use pay402_server::x402::{X402Config, PaymentIdentifierMode};
    /// let c = X402Config::new().payment_identifier(PaymentIdentifierMode::Off);
    /// assert_eq!(c.payment_identifier, PaymentIdentifierMode::Off);
    /// ```
    pub fn payment_identifier(mut self, mode: PaymentIdentifierMode) -> Self {
        self.payment_identifier = mode;
        self
    }

    /// Sets the settle-after buffer limit.
    ///
    /// ```
    /// assert_eq!(pay402_server::x402::X402Config::new().max_response_body(10).max_response_body, 10);
    /// ```
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = bytes;
        self
    }

    /// Sets the reservation lease.
    ///
    /// ```
    /// let c = pay402_server::x402::X402Config::new().reservation_lease(std::time::Duration::from_secs(60));
    /// assert_eq!(c.reservation_lease.as_secs(), 60);
    /// ```
    pub fn reservation_lease(mut self, lease: Duration) -> Self {
        self.reservation_lease = lease;
        self
    }

    /// Sets the allowance for the payer's clock (see [`X402Config::clock_skew`]).
    ///
    /// ```
    /// let c = pay402_server::x402::X402Config::new().clock_skew(std::time::Duration::from_secs(5));
    /// assert_eq!(c.clock_skew.as_secs(), 5);
    /// ```
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Sets how long released records are kept (see
    /// [`X402Config::released_retention`]).
    ///
    /// ```
    /// let c = pay402_server::x402::X402Config::new().released_retention(std::time::Duration::from_secs(600));
    /// assert_eq!(c.released_retention.as_secs(), 600);
    /// ```
    pub fn released_retention(mut self, keep: Duration) -> Self {
        self.released_retention = keep;
        self
    }

    /// Sets the caching policy of paid responses.
    ///
    /// ```
    /// use pay402_server::cache::PaidCaching;
    /// let c = pay402_server::x402::X402Config::new().paid_caching(PaidCaching::HandlerDecides);
    /// assert_eq!(c.paid_caching, PaidCaching::HandlerDecides);
    /// ```
    pub fn paid_caching(mut self, policy: PaidCaching) -> Self {
        self.paid_caching = policy;
        self
    }

    /// Limits the payments checked per client address (see
    /// [`X402Config::payment_limit`]). Serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`; behind a
    /// reverse proxy every client shares the proxy's address, so set the
    /// limit there instead.
    ///
    /// ```
    /// use pay402_server::limit::RateLimit;
    /// let c = pay402_server::x402::X402Config::new().payment_rate_limit(RateLimit::per_minute(600));
    /// assert_eq!(c.payment_limit.unwrap().limit().burst(), 600);
    /// ```
    pub fn payment_rate_limit(mut self, limit: RateLimit) -> Self {
        self.payment_limit = Some(Arc::new(ClientLimiter::new(limit)));
        self
    }

    /// Sets the facilitator verify bound.
    ///
    /// ```
    /// let c = pay402_server::x402::X402Config::new().verify_timeout(std::time::Duration::from_secs(5));
    /// assert_eq!(c.verify_timeout.as_secs(), 5);
    /// ```
    pub fn verify_timeout(mut self, t: Duration) -> Self {
        self.verify_timeout = t;
        self
    }

    /// Sets the facilitator settle bound.
    ///
    /// ```
    /// let c = pay402_server::x402::X402Config::new().settle_timeout(std::time::Duration::from_secs(45));
    /// assert_eq!(c.settle_timeout.as_secs(), 45);
    /// ```
    pub fn settle_timeout(mut self, t: Duration) -> Self {
        self.settle_timeout = t;
        self
    }

    /// Sets the `Retry-After` of pending answers.
    ///
    /// ```
    /// let c = pay402_server::x402::X402Config::new().retry_after(std::time::Duration::from_secs(1));
    /// assert_eq!(c.retry_after.as_secs(), 1);
    /// ```
    pub fn retry_after(mut self, t: Duration) -> Self {
        self.retry_after = t;
        self
    }

    /// Sets the resource URL prefix (no trailing slash needed).
    ///
    /// ```
    /// let c = pay402_server::x402::X402Config::new().base_url("https://api.example.com/");
    /// assert_eq!(c.base_url.as_deref(), Some("https://api.example.com"));
    /// ```
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        let url: String = url.into();
        self.base_url = Some(url.trim_end_matches('/').to_owned());
        self
    }

    /// Sets the clock.
    ///
    /// ```
    /// use pay402_server::x402::{X402Config, Clock};
    /// let c = X402Config::new().clock(Clock::fixed(pay402_core::time::UnixTime(1)));
    /// assert_eq!(c.clock.now().0, 1);
    /// ```
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}
