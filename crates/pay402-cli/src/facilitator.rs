//! `pay402 facilitator --config facilitator.toml`: pay402's local x402
//! facilitator (`POST /verify`, `POST /settle`, `GET /supported`) as a
//! service for other x402 servers, behind bearer API keys, with the
//! library's hardening (asset allowlist, gas and fee caps, a gas budget,
//! per-client and per-payer rate limits), `/healthz`, `/readyz` and
//! Prometheus `/metrics` (see [`crate::facilitator_metrics`]), on its
//! listener or on `ops_listen`.
//!
//! ```toml
//! listen = "127.0.0.1:8404"
//! network = "eip155:8453"
//! rpc_url = { env = "PAY402_X402_RPC_URL" }
//! key = { file = "/etc/pay402/facilitator.key" }
//! api_keys = [{ file = "/etc/pay402/facilitator-api-key" }]
//!
//! # several processes on one key: share their settlement state
//! store = { env = "PAY402_FACILITATOR_STORE" } # postgres://…
//!
//! [[assets]]
//! address = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
//! name = "USD Coin"
//! version = "2"
//! ```
//!
//! In-flight settlements and the key's transaction nonces live in `store`
//! (default: memory): facilitator processes sharing one key on one
//! PostgreSQL database never submit one authorization twice nor reuse a
//! nonce. What a crash leaves there is finished or reported by a reconcile
//! that runs at start, every `reconcile_every_secs`, and on demand with
//! `pay402 facilitator reconcile` (see docs/scaling.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use pay402_backends::x402::{LocalFacilitator, Reconciled, RouterAuth, RouterConfig};
use pay402_core::x402::settlements::SettlementStore;
use serde::Deserialize;

use crate::config::{ConfigError, SecretSource};
use crate::run::{StartError, read_secret};

/// `facilitator.toml`.
///
/// ```
/// let c = pay402_cli::facilitator::FacilitatorFile::parse("f.toml", "listen = \"127.0.0.1:0\"\nnetwork = \"eip155:31337\"\nrpc_url = { env = \"R\" }\nkey = { env = \"K\" }\napi_keys = [{ env = \"A\" }]\n[[assets]]\naddress = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\nname = \"USD Coin\"\n").unwrap();
/// assert_eq!(c.assets[0].version, "2");
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilitatorFile {
    /// Where the facilitator listens.
    pub listen: String,
    /// Address of `/healthz`, `/readyz` and `/metrics`; `None` serves them
    /// on `listen`.
    pub ops_listen: Option<String>,
    /// The CAIP-2 network served (checked against the node's chain).
    pub network: String,
    /// The chain's JSON-RPC URL (a secret: it often carries an API key).
    pub rpc_url: SecretSource,
    /// The settling account's private key (it pays the gas).
    pub key: SecretSource,
    /// Bearer API keys accepted (each at least 32 characters).
    pub api_keys: Vec<SecretSource>,
    /// The tokens settled (the allowlist; nothing else is).
    pub assets: Vec<AssetEntry>,
    /// Highest gas one settlement may use.
    pub max_gas_per_settlement: Option<u64>,
    /// Highest fee per gas, in wei.
    pub max_fee_per_gas_wei: Option<u128>,
    /// Gas budget: at most `gas` per `period_secs`.
    pub gas_budget: Option<GasBudget>,
    /// Requests per client IP address (default 20 per second, bursts of
    /// 40); over it, 429 `facilitator_rate_limited`.
    pub client_rate_limit: Option<RateLimitEntry>,
    /// `/verify` and `/settle` calls per payer (default 2 per second,
    /// bursts of 10).
    pub payer_rate_limit: Option<RateLimitEntry>,
    /// Where in-flight settlements and the key's transaction nonces are
    /// kept: a store URL (`memory:` by default, `sqlite://<path>`,
    /// `postgres://…`) read from a file or the environment (it may carry a
    /// password). Every facilitator process settling from one key must
    /// share one store (PostgreSQL for several machines).
    pub store: Option<SecretSource>,
    /// The store's pool size (default 10 for PostgreSQL).
    pub store_max_connections: Option<u32>,
    /// How long a settle waits for its receipt before answering pending
    /// (default 45).
    pub receipt_timeout_secs: Option<u64>,
    /// How long a settle's claim on an authorization is its own before a
    /// reconcile or another settle may take it over (default the receipt
    /// timeout + 15; at least the receipt timeout + 1).
    pub claim_lease_secs: Option<u64>,
    /// How often the reconcile runs in the background after the one at
    /// start (default: every claim lease; 0: only at start).
    pub reconcile_every_secs: Option<u64>,
}

/// One allowlisted token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEntry {
    /// The token contract.
    pub address: String,
    /// Its EIP-712 domain name.
    pub name: String,
    /// Its EIP-712 domain version.
    #[serde(default = "two")]
    pub version: String,
}

fn two() -> String {
    "2".into()
}

/// `{ per_second = N, burst = M }`: a rate limit (GCRA).
///
/// ```
/// let r: pay402_cli::facilitator::RateLimitEntry = toml::from_str("per_second = 2\nburst = 10").unwrap();
/// assert_eq!((r.per_second, r.burst), (2, 10));
/// ```
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RateLimitEntry {
    /// Requests replenished per second (at least 1).
    pub per_second: u32,
    /// The most requests accepted at once (at least 1).
    pub burst: u32,
}

impl From<RateLimitEntry> for pay402_backends::x402::RateLimit {
    fn from(r: RateLimitEntry) -> Self {
        pay402_backends::x402::RateLimit {
            per_second: r.per_second.max(1),
            burst: r.burst.max(1),
        }
    }
}

/// A gas budget per period.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct GasBudget {
    /// Gas.
    pub gas: u64,
    /// Period in seconds.
    pub period_secs: u64,
}

impl FacilitatorFile {
    /// Reads `path`.
    ///
    /// ```no_run
    /// let f = pay402_cli::facilitator::FacilitatorFile::load("facilitator.toml".as_ref())?;
    /// # Ok::<(), pay402_cli::config::ConfigError>(())
    /// ```
    pub fn load(path: &Path) -> Result<FacilitatorFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", None, "", format!("cannot read: {e}")))?;
        FacilitatorFile::parse(path, &text)
    }

    /// Parses `text` (from `file`); errors name line, column and key.
    pub fn parse(file: impl Into<PathBuf>, text: &str) -> Result<FacilitatorFile, ConfigError> {
        let file = file.into();
        let f: FacilitatorFile = toml::from_str(text)
            .map_err(|e| ConfigError::new(&file, text, e.span(), "", e.message().to_owned()))?;
        if f.assets.is_empty() {
            return Err(ConfigError::new(
                &file,
                text,
                None,
                "assets",
                "at least one [[assets]] is needed",
            ));
        }
        if f.api_keys.is_empty() {
            return Err(ConfigError::new(
                &file,
                text,
                None,
                "api_keys",
                "at least one API key is needed",
            ));
        }
        for a in &f.assets {
            a.address
                .parse::<pay402_core::x402::evm::EvmAddress>()
                .map_err(|_| {
                    ConfigError::new(
                        &file,
                        text,
                        None,
                        "assets.address",
                        format!("{:?} is not a 0x address", a.address),
                    )
                })?;
        }
        Ok(f)
    }
}

/// Opens the settlement store `url` names (see `pay402_server::database`).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = pay402_cli::facilitator::open_settlements("sqlite::memory:", None).await.unwrap();
/// assert!(store.unfinished(1).await.unwrap().is_empty());
/// # });
/// ```
pub async fn open_settlements(
    url: &str,
    max_connections: Option<u32>,
) -> Result<Arc<dyn SettlementStore>, StartError> {
    let mut options = pay402_server::database::DatabaseOptions::default();
    if let Some(n) = max_connections {
        options = options.max_connections(n);
    }
    let db = pay402_server::database::Database::open(url.trim(), &options)
        .await
        .map_err(|e| format!("store: {e}"))?;
    Ok(pay402_server::x402::settlements::open(&db)
        .await
        .map_err(|e| format!("store: {e}"))?)
}

/// Builds the local facilitator `f` describes (its settlement store
/// opened).
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_cli::run::StartError> {
/// let file = pay402_cli::facilitator::FacilitatorFile::load("facilitator.toml".as_ref())?;
/// let facilitator = pay402_cli::facilitator::build(&file).await?;
/// # let _ = facilitator; Ok(()) }
/// ```
pub async fn build(f: &FacilitatorFile) -> Result<LocalFacilitator, StartError> {
    let rpc = read_secret(&f.rpc_url)?;
    let key = read_secret(&f.key)?;
    let mut builder = LocalFacilitator::builder(rpc.as_str())
        .signer(key.as_str())
        .network(f.network.clone());
    for a in &f.assets {
        let address: pay402_core::x402::evm::EvmAddress =
            a.address.parse().map_err(|_| "assets.address")?;
        builder = builder.allow_asset(address.0, a.name.clone(), a.version.clone());
    }
    if let Some(g) = f.max_gas_per_settlement {
        builder = builder.max_gas_per_settlement(g);
    }
    if let Some(w) = f.max_fee_per_gas_wei {
        builder = builder.max_fee_per_gas_wei(w);
    }
    if let Some(b) = f.gas_budget {
        builder = builder.gas_budget(b.gas, Duration::from_secs(b.period_secs));
    }
    if let Some(t) = f.receipt_timeout_secs {
        builder = builder.receipt_timeout(Duration::from_secs(t));
    }
    if let Some(l) = f.claim_lease_secs {
        builder = builder.claim_lease(Duration::from_secs(l));
    }
    if let Some(store) = &f.store {
        let url = read_secret(store)?;
        builder = builder.settlement_store(open_settlements(&url, f.store_max_connections).await?);
    }
    Ok(builder.build().await?)
}

/// How many unfinished settlements one reconcile pass looks at.
///
/// ```
/// assert_eq!(pay402_cli::facilitator::RECONCILE_BATCH, 100);
/// ```
pub const RECONCILE_BATCH: usize = 100;

/// Runs [`LocalFacilitator::reconcile`] now and then every `every` (never
/// again when `every` is zero), logging each report; for a server's
/// in-process facilitator and `pay402 facilitator`.
///
/// ```no_run
/// # fn f(fac: pay402_backends::x402::LocalFacilitator) {
/// let task = pay402_cli::facilitator::spawn_reconcile(fac, std::time::Duration::from_secs(60));
/// # let _ = task; }
/// ```
pub fn spawn_reconcile(
    facilitator: LocalFacilitator,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match facilitator.reconcile(RECONCILE_BATCH).await {
                Ok(report) => {
                    crate::facilitator_metrics::reconciled(&report);
                    if !report.settlements.is_empty() || !report.nonce_gaps.is_empty() {
                        tracing::info!(
                            settlements = report.settlements.len(),
                            nonce_gaps = report.nonce_gaps.len(),
                            "facilitator reconcile"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "facilitator reconcile failed"),
            }
            if every.is_zero() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// `pay402 facilitator reconcile`: one reconcile pass over the store of
/// `f`, its report printed as JSON on standard output. True when nothing
/// was left unresolved.
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_cli::run::StartError> {
/// let file = pay402_cli::facilitator::FacilitatorFile::load("facilitator.toml".as_ref())?;
/// let clean = pay402_cli::facilitator::reconcile(&file).await?;
/// # let _ = clean; Ok(()) }
/// ```
pub async fn reconcile(f: &FacilitatorFile) -> Result<bool, StartError> {
    let facilitator = build(f).await?;
    let report = facilitator
        .reconcile(RECONCILE_BATCH)
        .await
        .map_err(|e| format!("reconcile: {e}"))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| format!("report: {e}"))?
    );
    Ok(!report.settlements.iter().any(|s| {
        matches!(
            s.outcome,
            Reconciled::Unresolved { .. } | Reconciled::Pending { .. }
        )
    }))
}

/// Builds the facilitator and serves it until SIGTERM or Ctrl-C, its
/// metrics rendered by `metrics` (the handle of the process's recorder,
/// [`crate::facilitator_metrics::install`]).
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_cli::run::StartError> {
/// let file = pay402_cli::facilitator::FacilitatorFile::load("facilitator.toml".as_ref())?;
/// let metrics = pay402_cli::facilitator_metrics::install()?;
/// pay402_cli::facilitator::serve(file, metrics).await?;
/// # Ok(()) }
/// ```
pub async fn serve(
    f: FacilitatorFile,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<(), StartError> {
    let facilitator = build(&f).await?;
    for signer in facilitator.signers() {
        tracing::info!(network = %facilitator.network(), %signer, "settling from");
    }
    let every = match f.reconcile_every_secs {
        Some(s) => Duration::from_secs(s),
        None => facilitator.claim_lease(),
    };
    let _reconcile = spawn_reconcile(facilitator.clone(), every);
    let mut keys = Vec::with_capacity(f.api_keys.len());
    for k in &f.api_keys {
        keys.push(read_secret(k)?);
    }
    let auth = RouterAuth::bearer(keys.iter().map(|k| k.as_str()))?;
    let metered = Arc::new(crate::facilitator_metrics::Metered::new(
        facilitator.clone(),
    ));
    let mut config = RouterConfig::new(auth);
    if let Some(l) = f.client_rate_limit {
        config.per_client = Some(l.into());
    }
    if let Some(l) = f.payer_rate_limit {
        config.per_payer = Some(l.into());
    }
    let api: Router = pay402_backends::x402::router_with(metered, config).layer(
        axum::middleware::from_fn(crate::facilitator_metrics::count_http),
    );
    let ops = ops_router(facilitator, metrics);
    let listener = tokio::net::TcpListener::bind(f.listen.as_str())
        .await
        .map_err(|e| format!("listen {}: {e}", f.listen))?;
    let (app, ops_task) = match &f.ops_listen {
        None => (api.merge(ops), None),
        Some(addr) => {
            let ops_listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| format!("ops_listen {addr}: {e}"))?;
            tracing::info!(address = %ops_listener.local_addr()?, "facilitator operations listening");
            let task = tokio::spawn(async move {
                axum::serve(ops_listener, ops)
                    .with_graceful_shutdown(crate::run::shutdown_signal())
                    .await
            });
            (api, Some(task))
        }
    };
    tracing::info!(address = %listener.local_addr()?, "pay402 facilitator listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(crate::run::shutdown_signal())
    .await?;
    if let Some(task) = ops_task {
        task.abort();
    }
    Ok(())
}

/// `/healthz`, `/readyz` and `/metrics`.
fn ops_router(
    facilitator: LocalFacilitator,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let facilitator = facilitator.clone();
                async move {
                    let (ready, body) = crate::facilitator_metrics::readiness(&facilitator).await;
                    let status = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, axum::Json(body)).into_response()
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        handle.render(),
                    )
                }
            }),
        )
}
