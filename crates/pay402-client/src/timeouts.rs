//! The default timeouts of every paying client, and how they are applied.
//!
//! Every client builder ([`L402ClientBuilder`](crate::L402ClientBuilder),
//! `x402::X402ClientBuilder`, `x402_mock::MockClientBuilder`,
//! `bitreq::BitRequestsBuilder`) has two timeouts:
//!
//! - a **connect timeout** ([`DEFAULT_CONNECT_TIMEOUT`], 10 s), set on the
//!   reqwest client the builder builds when it is given none (reqwest can
//!   only set it per client: with your own client, set it on that client);
//! - a **total timeout per attempt** ([`DEFAULT_REQUEST_TIMEOUT`], 60 s; the
//!   BitRequests client keeps its own 30 s `bitreq::DEFAULT_TIMEOUT`), from
//!   connecting until the whole response body has been read. It is set on
//!   the reqwest client the builder builds. With your own reqwest client,
//!   that client's settings rule unless you call the builder's `timeout(d)`:
//!   then `d` is set on every request the client sends (the unpaid request,
//!   the paid one, each resend of the same payment, the x402_mock token
//!   exchange, the channel calls) and takes precedence over your client's
//!   own `timeout`. A timeout set on the request itself
//!   (`RequestBuilder::timeout`) always wins.
//!
//! `no_timeout()` on a builder turns the total timeout off (for large
//! downloads whose body may take longer to arrive); the connect timeout
//! stays. A timeout after a payment is the client's `retry_failed` error
//! carrying the receipt: you may have paid, do not pay again.
//!
//! ```
//! use std::time::Duration;
//! assert_eq!(pay402_client::DEFAULT_CONNECT_TIMEOUT, Duration::from_secs(10));
//! assert_eq!(pay402_client::DEFAULT_REQUEST_TIMEOUT, Duration::from_secs(60));
//! ```

use std::time::Duration;

use reqwest::Request;

/// Default connect timeout of the reqwest client a paying client builds
/// (10 s).
///
/// ```
/// assert_eq!(pay402_client::DEFAULT_CONNECT_TIMEOUT.as_secs(), 10);
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default total timeout of each HTTP attempt of the L402, x402 and
/// x402_mock clients (60 s), from connecting until the response body has
/// been read. Turn it off with the builders' `no_timeout()`.
///
/// ```
/// assert_eq!(pay402_client::DEFAULT_REQUEST_TIMEOUT.as_secs(), 60);
/// ```
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The total timeout a client applies to each request: the builder's,
/// except with the caller's own reqwest client and no `timeout()` or
/// `no_timeout()` call on the builder, where that client's own settings
/// rule (a timeout configured on it is not overridden by the default).
pub(crate) fn per_request(
    builder: Option<Duration>,
    explicit: bool,
    own_client: &Option<reqwest::Client>,
) -> Option<Duration> {
    if own_client.is_some() && !explicit {
        None
    } else {
        builder
    }
}

/// Gives `request` the total timeout `total` unless it carries its own.
pub(crate) fn apply(request: &mut Request, total: Option<Duration>) {
    if let (Some(t), None) = (total, request.timeout()) {
        *request.timeout_mut() = Some(t);
    }
}

/// The total-timeout setters every client builder has, so code configuring
/// several builders (the `Payer`) applies one setting the same way to each.
pub(crate) trait TotalTimeout: Sized {
    /// The builder's `timeout(d)`.
    fn set_timeout(self, d: Duration) -> Self;
    /// The builder's `no_timeout()`.
    fn clear_timeout(self) -> Self;

    /// `Some(Some(d))`: `timeout(d)`; `Some(None)`: `no_timeout()`;
    /// `None`: the builder's own default.
    fn total_timeout(self, setting: Option<Option<Duration>>) -> Self {
        match setting {
            Some(Some(d)) => self.set_timeout(d),
            Some(None) => self.clear_timeout(),
            None => self,
        }
    }
}

/// The `no_timeout()` and `connect_timeout(d)` setters every client builder
/// has (the builders' `timeout(d)` stays with each, its text names the
/// builder's own default and retry error). `$builder` is the builder's path
/// for the examples, `$http` the name of its setter taking your own reqwest
/// client. The builder has `timeout: Option<Duration>`, `timeout_set: bool`
/// and `connect_timeout: Duration` fields.
macro_rules! connect_and_no_timeout {
    ($builder:literal, $http:literal) => {
        /// No total timeout (for large downloads); the connect timeout stays.
        ///
        #[doc = concat!("```\n# fn f(b: ", $builder, ") -> ", $builder, " {\nb.no_timeout()\n# }\n```")]
        pub fn no_timeout(mut self) -> Self {
            self.timeout = None;
            self.timeout_set = true;
            self
        }

        /// How long connecting may take (default
        /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT), 10 s);
        /// reqwest sets it per client: it applies to the client this builder
        #[doc = concat!("builds, not to one given with [`", $http, "`](Self::", $http, ").")]
        ///
        #[doc = concat!("```\n# fn f(b: ", $builder, ") -> ", $builder, " {\nb.connect_timeout(std::time::Duration::from_secs(5))\n# }\n```")]
        pub fn connect_timeout(mut self, timeout: Duration) -> Self {
            self.connect_timeout = timeout;
            self
        }
    };
}
pub(crate) use connect_and_no_timeout;

macro_rules! total_timeout {
    ($builder:ty) => {
        impl TotalTimeout for $builder {
            fn set_timeout(self, d: Duration) -> Self {
                self.timeout(d)
            }
            fn clear_timeout(self) -> Self {
                self.no_timeout()
            }
        }
    };
}

total_timeout!(crate::L402ClientBuilder);
#[cfg(feature = "x402")]
total_timeout!(crate::x402::X402ClientBuilder);
#[cfg(feature = "x402-mock")]
total_timeout!(crate::x402_mock::MockClientBuilder);
#[cfg(feature = "bitreq")]
total_timeout!(crate::bitreq::BitRequestsBuilder);
