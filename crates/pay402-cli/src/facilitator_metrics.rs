//! Prometheus metrics of `pay402 facilitator` (the `metrics` facade,
//! rendered by `metrics-exporter-prometheus`, as the proxy's), and its
//! readiness check.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pay402_facilitator_http_requests_total` | counter | `endpoint` (`verify`, `settle`, `supported`, `other`), `status` |
//! | `pay402_facilitator_rate_limited_total` | counter | `endpoint` — 429 answers (per-client or per-payer limit) |
//! | `pay402_facilitator_unauthorized_total` | counter | `endpoint` — 401 answers (no valid API key) |
//! | `pay402_facilitator_verify_total` | counter | `outcome` (`valid`, `invalid`, `error`), `reason` (the verdict's `invalidReason`, or the error's reason; `none` when valid) |
//! | `pay402_facilitator_verify_latency_seconds` | histogram | `outcome` |
//! | `pay402_facilitator_settle_total` | counter | `outcome` (`settled`, `failed`, `pending`, `error`), `reason` (`errorReason`, the error's reason, `none` when settled) |
//! | `pay402_facilitator_settle_latency_seconds` | histogram | `outcome` — the whole settle: checks, simulation, sending, waiting for the receipt |
//! | `pay402_facilitator_settlements_in_flight` | gauge | — settles this process is running now |
//! | `pay402_facilitator_gas_spent_total` | counter | `unit` (`gas`, `wei`): gas used by settled transactions and what it cost (`gasUsed × effectiveGasPrice`), read from each receipt after the answer; a `wei` total past 2^64 (18.4 ETH) in one process's life wraps, which Prometheus reads as a counter reset |
//! | `pay402_facilitator_reconciled_total` | counter | `outcome` (`settled`, `failed`, `pending`, `released`, `in_progress`, `unresolved`) — what the reconcile passes found |
//! | `pay402_facilitator_unfinished_settlements` | gauge | — settlements the last reconcile pass left `pending` or `unresolved` |
//!
//! Reasons are the facilitator's stable snake_case codes; anything else is
//! counted as `other`, so no label takes arbitrary text.

use std::time::{Duration, Instant};

use alloy::providers::Provider;
use async_trait::async_trait;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use pay402_backends::x402::{LocalFacilitator, ReconcileReport, Reconciled};
use pay402_core::problem::Reason;
use pay402_core::x402::{
    Facilitator, FacilitatorError, PaymentRequest, SettleResponse, SupportedResponse,
    VerifyResponse,
};

/// Latency buckets (seconds): a settle waits for a block.
const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0,
];

/// Installs the process-wide recorder; returns the handle rendering the
/// text exposition format.
///
/// ```
/// let handle = pay402_cli::facilitator_metrics::install().unwrap();
/// pay402_cli::facilitator_metrics::http("/settle", 429);
/// assert!(handle.render().contains("pay402_facilitator_rate_limited_total{endpoint=\"settle\"} 1"));
/// ```
pub fn install() -> Result<PrometheusHandle, String> {
    let mut builder = PrometheusBuilder::new();
    for name in [
        "pay402_facilitator_verify_latency_seconds",
        "pay402_facilitator_settle_latency_seconds",
    ] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), &BUCKETS)
            .map_err(|e| e.to_string())?;
    }
    builder.install_recorder().map_err(|e| e.to_string())
}

/// A reason as a label: a snake_case code of at most 64 characters, else
/// `other`.
///
/// ```
/// use pay402_cli::facilitator_metrics::reason_label;
/// assert_eq!(reason_label(Some("invalid_exact_evm_payload_signature")), "invalid_exact_evm_payload_signature");
/// assert_eq!(reason_label(Some("Not A Code!")), "other");
/// assert_eq!(reason_label(None), "none");
/// ```
pub fn reason_label(reason: Option<&str>) -> String {
    match reason {
        None => "none".into(),
        Some(r)
            if !r.is_empty()
                && r.len() <= 64
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
        {
            r.to_owned()
        }
        Some(_) => "other".into(),
    }
}

/// The endpoint label of a request path.
fn endpoint(path: &str) -> &'static str {
    match path {
        "/verify" => "verify",
        "/settle" => "settle",
        "/supported" => "supported",
        _ => "other",
    }
}

/// Counts one answered HTTP request (and its refusal, for 401 and 429).
///
/// ```
/// pay402_cli::facilitator_metrics::http("/verify", 401); // a no-op until a recorder is installed
/// ```
pub fn http(path: &str, status: u16) {
    let endpoint = endpoint(path);
    metrics::counter!("pay402_facilitator_http_requests_total", "endpoint" => endpoint, "status" => status.to_string())
        .increment(1);
    match status {
        429 => metrics::counter!("pay402_facilitator_rate_limited_total", "endpoint" => endpoint)
            .increment(1),
        401 => metrics::counter!("pay402_facilitator_unauthorized_total", "endpoint" => endpoint)
            .increment(1),
        _ => {}
    }
}

/// axum middleware counting every request by endpoint and status.
///
/// ```
/// let app: axum::Router = axum::Router::new()
///     .route("/supported", axum::routing::get(|| async { "{}" }))
///     .layer(axum::middleware::from_fn(pay402_cli::facilitator_metrics::count_http));
/// # let _ = app;
/// ```
pub async fn count_http(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    http(&path, resp.status().as_u16());
    resp
}

/// Records a reconcile pass.
///
/// ```
/// let report = pay402_backends::x402::ReconcileReport::default();
/// pay402_cli::facilitator_metrics::reconciled(&report);
/// ```
pub fn reconciled(report: &ReconcileReport) {
    let mut unfinished = 0u32;
    for s in &report.settlements {
        let outcome = match s.outcome {
            Reconciled::Settled { .. } => "settled",
            Reconciled::Failed { .. } => "failed",
            Reconciled::Pending { .. } => {
                unfinished += 1;
                "pending"
            }
            Reconciled::Released => "released",
            Reconciled::InProgress => "in_progress",
            Reconciled::Unresolved { .. } => {
                unfinished += 1;
                "unresolved"
            }
        };
        metrics::counter!("pay402_facilitator_reconciled_total", "outcome" => outcome).increment(1);
    }
    metrics::gauge!("pay402_facilitator_unfinished_settlements").set(f64::from(unfinished));
}

/// Lowers the in-flight gauge when a settle ends, however it ends.
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        metrics::gauge!("pay402_facilitator_settlements_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("pay402_facilitator_settlements_in_flight").decrement(1.0);
    }
}

/// The local facilitator, its verify and settle outcomes counted and
/// timed, and the gas of each settlement read from its receipt.
///
/// ```no_run
/// # async fn f(fac: pay402_backends::x402::LocalFacilitator) {
/// let metered = std::sync::Arc::new(pay402_cli::facilitator_metrics::Metered::new(fac));
/// # let _ = metered; }
/// ```
#[derive(Clone)]
pub struct Metered {
    inner: LocalFacilitator,
}

impl Metered {
    /// Wraps `inner`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let file = pay402_cli::facilitator::FacilitatorFile::load("facilitator.toml".as_ref())?;
    /// let local = pay402_cli::facilitator::build(&file).await?;
    /// let metered = pay402_cli::facilitator_metrics::Metered::new(local);
    /// # let _ = metered; Ok(()) }
    /// ```
    pub fn new(inner: LocalFacilitator) -> Metered {
        Metered { inner }
    }

    /// Reads the receipt of `transaction` off the request path and counts
    /// its gas and cost.
    fn count_gas(&self, transaction: &str) {
        let Ok(hash) = transaction.trim().parse::<alloy::primitives::B256>() else {
            return;
        };
        let provider = self.inner.provider().clone();
        tokio::spawn(async move {
            match tokio::time::timeout(
                Duration::from_secs(10),
                provider.get_transaction_receipt(hash),
            )
            .await
            {
                Ok(Ok(Some(r))) => {
                    metrics::counter!("pay402_facilitator_gas_spent_total", "unit" => "gas")
                        .increment(r.gas_used);
                    let wei = u128::from(r.gas_used).saturating_mul(r.effective_gas_price);
                    metrics::counter!("pay402_facilitator_gas_spent_total", "unit" => "wei")
                        .increment(u64::try_from(wei).unwrap_or(u64::MAX));
                }
                Ok(Ok(None)) => tracing::warn!(%hash, "no receipt for a settled transaction"),
                Ok(Err(e)) => tracing::warn!(%hash, error = %e, "receipt for gas metrics"),
                Err(_) => tracing::warn!(%hash, "receipt for gas metrics: timed out"),
            }
        });
    }
}

#[async_trait]
impl Facilitator for Metered {
    async fn verify(&self, request: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        let start = Instant::now();
        let result = self.inner.verify(request).await;
        let (outcome, reason) = match &result {
            Ok(v) if v.is_valid => ("valid", reason_label(None)),
            Ok(v) => (
                "invalid",
                reason_label(Some(v.invalid_reason.as_deref().unwrap_or("unknown"))),
            ),
            Err(e) => ("error", reason_label(Some(e.reason()))),
        };
        metrics::counter!("pay402_facilitator_verify_total", "outcome" => outcome, "reason" => reason)
            .increment(1);
        metrics::histogram!("pay402_facilitator_verify_latency_seconds", "outcome" => outcome)
            .record(start.elapsed().as_secs_f64());
        result
    }

    async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        let start = Instant::now();
        let in_flight = InFlight::start();
        let result = self.inner.settle(request).await;
        drop(in_flight);
        let (outcome, reason) = match &result {
            Ok(s) if s.success => {
                if let Some(tx) = &s.transaction {
                    self.count_gas(tx);
                }
                ("settled", reason_label(None))
            }
            Ok(s) => (
                "failed",
                reason_label(Some(s.error_reason.as_deref().unwrap_or("unknown"))),
            ),
            Err(e @ FacilitatorError::Pending { .. }) => {
                ("pending", reason_label(Some(e.reason())))
            }
            Err(e) => ("error", reason_label(Some(e.reason()))),
        };
        metrics::counter!("pay402_facilitator_settle_total", "outcome" => outcome, "reason" => reason)
            .increment(1);
        metrics::histogram!("pay402_facilitator_settle_latency_seconds", "outcome" => outcome)
            .record(start.elapsed().as_secs_f64());
        result
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.inner.supported().await
    }
}

/// `/readyz`: the chain node answers with the configured chain and the
/// settlement store answers, each within 2 s.
///
/// ```no_run
/// # async fn f(fac: pay402_backends::x402::LocalFacilitator) {
/// let (ready, body) = pay402_cli::facilitator_metrics::readiness(&fac).await;
/// println!("{ready} {body}");
/// # }
/// ```
pub async fn readiness(f: &LocalFacilitator) -> (bool, serde_json::Value) {
    let bound = Duration::from_secs(2);
    let chain = match tokio::time::timeout(bound, f.provider().get_chain_id()).await {
        Ok(Ok(id)) if id == f.chain_id() => "ok".to_owned(),
        Ok(Ok(id)) => format!("wrong chain {id}"),
        Ok(Err(_)) => "unreachable".into(),
        Err(_) => "timed out".into(),
    };
    let store = match tokio::time::timeout(bound, f.settlement_store().unfinished(1)).await {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "unavailable",
        Err(_) => "timed out",
    };
    let ready = chain == "ok" && store == "ok";
    (
        ready,
        serde_json::json!({ "ready": ready, "chain": chain, "store": store }),
    )
}
