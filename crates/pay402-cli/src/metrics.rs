//! Prometheus metrics (the `metrics` facade, rendered by
//! `metrics-exporter-prometheus`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pay402_requests_total` | counter | `service`, `status` |
//! | `pay402_challenges_total` | counter | `service` (402 answers) |
//! | `pay402_payments_total` | counter | `service`, `rail`, `outcome` (`accepted`, `refused`, `error`) |
//! | `pay402_revenue_total` | counter | `service`, `rail`, `unit` (`msat`, `sat`, `token:<network>:<asset>`): what accepted payments paid, in the unit's integers (L402: a token's price once, on the first paid request of that token this process serves) |
//! | `pay402_verify_latency_seconds` | histogram | `service`, `rail` (from the request entering the paywall to the upstream being called: verification, and settlement when it comes first) |
//! | `pay402_upstream_latency_seconds` | histogram | `service` (time to the upstream's response head) |
//! | `pay402_upstream_errors_total` | counter | `service`, `reason` |
//! | `pay402_freebies_total` | counter | `service` (unpaid requests served as freebies) |

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use pay402_core::rates::{Amount, Unit};
use pay402_server::paywall::{Paid, Receipt};

/// Latency buckets (seconds) of both histograms.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide recorder; returns the handle that renders the
/// text exposition format.
///
/// ```
/// let handle = pay402_cli::metrics::install().unwrap();
/// pay402_cli::metrics::request("api", 402);
/// assert!(handle.render().contains("pay402_challenges_total{service=\"api\"} 1"));
/// ```
pub fn install() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("pay402_upstream_latency_seconds".into()),
            &BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(
            Matcher::Full("pay402_verify_latency_seconds".into()),
            &BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// Counts one answered request.
///
/// ```
/// pay402_cli::metrics::request("api", 200); // a no-op until a recorder is installed
/// ```
pub fn request(service: &str, status: u16) {
    metrics::counter!("pay402_requests_total", "service" => service.to_owned(), "status" => status.to_string())
        .increment(1);
    if status == 402 {
        metrics::counter!("pay402_challenges_total", "service" => service.to_owned()).increment(1);
    }
}

/// Counts one request that carried a payment proof, by what became of it.
///
/// ```
/// pay402_cli::metrics::payment("api", "l402", 200); // outcome "accepted"
/// ```
pub fn payment(service: &str, rail: &'static str, status: u16) {
    let outcome = outcome(status);
    metrics::counter!("pay402_payments_total", "service" => service.to_owned(), "rail" => rail, "outcome" => outcome)
        .increment(1);
}

/// Records the time to the upstream's response head.
///
/// ```
/// pay402_cli::metrics::upstream_latency("api", std::time::Duration::from_millis(3));
/// ```
pub fn upstream_latency(service: &str, elapsed: Duration) {
    metrics::histogram!("pay402_upstream_latency_seconds", "service" => service.to_owned())
        .record(elapsed.as_secs_f64());
}

/// Counts an upstream failure.
///
/// ```
/// pay402_cli::metrics::upstream_error("api", "upstream_timeout");
/// ```
pub fn upstream_error(service: &str, reason: &'static str) {
    metrics::counter!("pay402_upstream_errors_total", "service" => service.to_owned(), "reason" => reason)
        .increment(1);
}

/// Counts one request served as a freebie.
///
/// ```
/// pay402_cli::metrics::freebie("api");
/// ```
pub fn freebie(service: &str) {
    metrics::counter!("pay402_freebies_total", "service" => service.to_owned()).increment(1);
}

/// Records how long the paywall took before the upstream was called.
///
/// ```
/// pay402_cli::metrics::verify_latency("api", "l402", std::time::Duration::from_millis(2));
/// ```
pub fn verify_latency(service: &str, rail: &'static str, elapsed: Duration) {
    metrics::histogram!("pay402_verify_latency_seconds", "service" => service.to_owned(), "rail" => rail)
        .record(elapsed.as_secs_f64());
}

/// One service's metric handles, made on first use and kept: the request
/// path increments a kept handle instead of building the label set and
/// looking it up in the recorder's registry on every request. The series
/// are those of the free functions of this module ([`request`],
/// [`payment`], ...), which stay for callers without a service at hand.
///
/// A handle is made the first time it is needed, so build this before or
/// after installing the recorder, but serve requests only once it is
/// installed (a handle made before records nothing).
///
/// ```
/// let handle = pay402_cli::metrics::install().unwrap();
/// let m = pay402_cli::metrics::ServiceMetrics::new("svc-doc");
/// m.request(200);
/// m.request(402);
/// assert!(handle.render().contains("pay402_challenges_total{service=\"svc-doc\"} 1"));
/// ```
pub struct ServiceMetrics {
    service: String,
    requests: RwLock<HashMap<u16, Counter>>,
    challenges: OnceLock<Counter>,
    payments: RwLock<HashMap<(&'static str, &'static str), Counter>>,
    verify: RwLock<HashMap<&'static str, Histogram>>,
    upstream: OnceLock<Histogram>,
    freebies: OnceLock<Counter>,
    /// L402 tokens already counted as revenue (bounded: a token evicted and
    /// seen again is counted again).
    counted: quick_cache::sync::Cache<pay402_core::l402::TokenId, ()>,
}

/// Applies `f` to the handle under `key`, making it with `make` the first
/// time.
fn with_handle<K: Hash + Eq + Copy, V>(
    map: &RwLock<HashMap<K, V>>,
    key: K,
    make: impl FnOnce() -> V,
    f: impl FnOnce(&V),
) {
    if let Ok(m) = map.read()
        && let Some(v) = m.get(&key)
    {
        return f(v);
    }
    // A poisoned lock only means a panic elsewhere; the map is still whole.
    let mut m = map
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(m.entry(key).or_insert_with(make));
}

impl ServiceMetrics {
    /// The handles of `service`'s series.
    ///
    /// See [`ServiceMetrics`].
    pub fn new(service: &str) -> ServiceMetrics {
        ServiceMetrics {
            service: service.to_owned(),
            requests: RwLock::default(),
            challenges: OnceLock::new(),
            payments: RwLock::default(),
            verify: RwLock::default(),
            upstream: OnceLock::new(),
            freebies: OnceLock::new(),
            counted: quick_cache::sync::Cache::new(100_000),
        }
    }

    /// As [`request`].
    ///
    /// See [`ServiceMetrics`].
    pub fn request(&self, status: u16) {
        with_handle(
            &self.requests,
            status,
            || metrics::counter!("pay402_requests_total", "service" => self.service.clone(), "status" => status.to_string()),
            |c| c.increment(1),
        );
        if status == 402 {
            self.challenges
                .get_or_init(|| metrics::counter!("pay402_challenges_total", "service" => self.service.clone()))
                .increment(1);
        }
    }

    /// As [`payment`].
    ///
    /// See [`ServiceMetrics`].
    pub fn payment(&self, rail: &'static str, status: u16) {
        let outcome = outcome(status);
        with_handle(
            &self.payments,
            (rail, outcome),
            || metrics::counter!("pay402_payments_total", "service" => self.service.clone(), "rail" => rail, "outcome" => outcome),
            |c| c.increment(1),
        );
    }

    /// As [`verify_latency`].
    ///
    /// See [`ServiceMetrics`].
    pub fn verify_latency(&self, rail: &'static str, elapsed: Duration) {
        with_handle(
            &self.verify,
            rail,
            || metrics::histogram!("pay402_verify_latency_seconds", "service" => self.service.clone(), "rail" => rail),
            |h| h.record(elapsed.as_secs_f64()),
        );
    }

    /// As [`upstream_latency`].
    ///
    /// See [`ServiceMetrics`].
    pub fn upstream_latency(&self, elapsed: Duration) {
        self.upstream
            .get_or_init(|| metrics::histogram!("pay402_upstream_latency_seconds", "service" => self.service.clone()))
            .record(elapsed.as_secs_f64());
    }

    /// As [`freebie`].
    ///
    /// See [`ServiceMetrics`].
    pub fn freebie(&self) {
        self.freebies
            .get_or_init(
                || metrics::counter!("pay402_freebies_total", "service" => self.service.clone()),
            )
            .increment(1);
    }

    /// As [`revenue`]: an L402 token's price is counted on its first paid
    /// request this process serves (looked up without allocating).
    ///
    /// See [`ServiceMetrics`].
    pub fn revenue(&self, paid: &Paid) {
        if let Receipt::L402Token(token) = &paid.receipt {
            if self.counted.get(token).is_some() {
                return;
            }
            self.counted.insert(*token, ());
        }
        count_revenue(&self.service, paid);
    }
}

/// The `outcome` label of a paid request's answer.
fn outcome(status: u16) -> &'static str {
    match status {
        200..=399 => "accepted",
        400..=499 => "refused",
        _ => "error",
    }
}

/// L402 tokens already counted as revenue (bounded: a token evicted and
/// seen again is counted again).
static COUNTED_TOKENS: std::sync::OnceLock<quick_cache::sync::Cache<String, ()>> =
    std::sync::OnceLock::new();

/// Counts what an accepted payment paid, in its unit. An L402 token pays
/// once and is then reused: its price is counted on the first paid request
/// of that token this process serves.
///
/// ```
/// use pay402_core::money::Sat;
/// use pay402_core::offer::Rail;
/// use pay402_core::rates::Amount;
/// use pay402_server::paywall::{Paid, Receipt};
/// let paid = Paid {
///     rail: Rail::BitRequests,
///     amount: Amount::Sat(Sat(25)),
///     payer: None,
///     receipt: Receipt::BitreqTransfer("ab".into()),
/// };
/// pay402_cli::metrics::revenue("api", &paid);
/// ```
pub fn revenue(service: &str, paid: &Paid) {
    if let Receipt::L402Token(token) = &paid.receipt {
        let seen = COUNTED_TOKENS.get_or_init(|| quick_cache::sync::Cache::new(100_000));
        let key = format!("{service}/{token}");
        if seen.get(&key).is_some() {
            return;
        }
        seen.insert(key, ());
    }
    count_revenue(service, paid);
}

/// Adds an accepted payment's amount to its revenue series.
fn count_revenue(service: &str, paid: &Paid) {
    let value = u64::try_from(paid.amount.value()).unwrap_or(u64::MAX);
    metrics::counter!(
        "pay402_revenue_total",
        "service" => service.to_owned(),
        "rail" => paid.rail.as_str(),
        "unit" => unit_label(&paid.amount),
    )
    .increment(value);
}

/// The `unit` label of an amount.
fn unit_label(amount: &Amount) -> String {
    match amount.unit() {
        Unit::Msat => "msat".into(),
        Unit::Sat => "sat".into(),
        Unit::UsdCents => "usd_cents".into(),
        Unit::Token(t) => format!("token:{}:{}", t.network(), t.asset()),
        other => other.to_string(),
    }
}
