//! `pay402 proxy`: build the backends, the paywalls and the routes from a
//! resolved [`Config`], serve, and drain on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;
use pay402_backends::simnet::SimNet;
use pay402_core::lightning::{InvoiceIssuer, Network};
use pay402_core::money::Sat;
use pay402_core::x402::facilitator::Facilitator;
use pay402_server::L402Config;
use pay402_server::database::Database;
use pay402_server::x402::store::PaymentStore;
use tower::util::BoxCloneSyncService;
use zeroize::Zeroizing;

use crate::config::{
    Config, FacilitatorConfig, HeaderValueSource, LightningConfig, SecretSource, Service, StoreUrl,
    parse_ln_network,
};
use crate::paywall::{PaywallBackends, ServicePaywall};
use crate::proxy::{Proxy, Route};
use crate::upstream::{Upstream, UpstreamConfig};

/// A startup failure, with what it was about.
///
/// ```
/// let e: pay402_cli::run::StartError = "server.listen: in use".into();
/// assert_eq!(e.to_string(), "server.listen: in use");
/// ```
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Reads a secret from its file or environment variable (trailing
/// whitespace trimmed). The value is never logged.
///
/// ```
/// use pay402_cli::config::SecretSource;
/// let path = std::env::temp_dir().join("pay402-doc-secret");
/// std::fs::write(&path, "s3cret\n").unwrap();
/// let s = pay402_cli::run::read_secret(&SecretSource { file: Some(path), env: None }).unwrap();
/// assert_eq!(s.as_str(), "s3cret");
/// ```
pub fn read_secret(s: &SecretSource) -> Result<Zeroizing<String>, StartError> {
    let value = match (&s.file, &s.env) {
        (Some(path), _) => Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?,
        ),
        (None, Some(var)) => Zeroizing::new(
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
        ),
        (None, None) => return Err("a secret needs file or env".into()),
    };
    Ok(Zeroizing::new(value.trim_end().to_owned()))
}

/// What runs in the background for the proxy's lifetime.
///
/// ```no_run
/// # async fn f(c: pay402_cli::config::Config) -> Result<(), pay402_cli::run::StartError> {
/// let running = pay402_cli::run::build(&c).await?;
/// assert_eq!(running.upstreams.len(), c.services.len());
/// # Ok(()) }
/// ```
pub struct Running {
    /// The routed services.
    pub proxy: Proxy,
    /// The upstreams, for `/readyz`.
    pub upstreams: Vec<(String, reqwest::Url)>,
    /// Background tasks (the simnet REST face).
    pub tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Every service's paywall, for the admin API.
    pub paywalls: Vec<(String, Option<ServicePaywall>)>,
    /// The x402 payment records, if any service takes x402.
    pub x402_store: Option<Arc<dyn PaymentStore>>,
    /// The Lightning node, for `/readyz`.
    pub issuer: Option<Arc<dyn InvoiceIssuer>>,
    /// The x402 facilitator, for `/readyz`.
    pub facilitator: Option<Arc<dyn Facilitator>>,
    /// The BitRequests server (its ledger), if any service takes it.
    pub bitreq: Option<pay402_server::bitreq::BitreqServer>,
    /// Where the embedded simnet wallet's LND REST API listens
    /// (`kind = "simnet-rest"`).
    pub lightning_rest: Option<SocketAddr>,
}

/// Builds the backends, stores, paywalls and upstream clients.
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_cli::run::StartError> {
/// let c = pay402_cli::config::Config::load("pay402.toml".as_ref())?;
/// let running = pay402_cli::run::build(&c).await?;
/// # let _ = running; Ok(()) }
/// ```
pub async fn build(config: &Config) -> Result<Running, StartError> {
    let mut tasks = Vec::new();
    let needs = |rail| config.services.iter().any(|s| s.rails.contains(&rail));
    let needs_l402 = needs(crate::config::RailName::L402);
    let needs_x402 = needs(crate::config::RailName::X402);
    let needs_bitreq = needs(crate::config::RailName::Bitreq);
    let needs_mpp = needs(crate::config::RailName::Mpp);
    let mpp_method = |m| needs_mpp && config.mpp.as_ref().is_some_and(|c| c.methods.contains(&m));
    // The node and the facilitator serve MPP's methods too.
    let needs_node = needs_l402 || mpp_method(crate::config::MppMethod::Lightning);
    let needs_facilitator = needs_x402 || mpp_method(crate::config::MppMethod::Evm);

    let mut lightning_rest = None;
    let issuer: Option<Arc<dyn InvoiceIssuer>> = match (&config.lightning, needs_node) {
        (Some(l), true) => Some(lightning(l, &mut tasks, &mut lightning_rest).await?),
        _ => None,
    };
    // One pool for every store of this instance.
    let database = open_database(&config.store).await?;
    let l402_store = if needs_l402 {
        Some(pay402_server::store::open(&database).await?)
    } else {
        None
    };
    let x402_store = if needs_x402 {
        Some(pay402_server::x402::store::open(&database).await?)
    } else {
        None
    };
    let facilitator: Option<Arc<dyn Facilitator>> = match (&config.x402, needs_facilitator) {
        (Some(x), true) => Some(facilitator(x, &database).await?),
        _ => None,
    };
    let bitreq = match (&config.bitrequests, needs_bitreq) {
        (Some(b), true) => Some(bitreq_server(b, &database).await?),
        _ => None,
    };
    let mpp = match (&config.mpp, needs_mpp) {
        (Some(m), true) => {
            Some(mpp(m, &database, issuer.as_ref(), facilitator.as_ref(), config).await?)
        }
        _ => None,
    };
    let backends = PaywallBackends {
        issuer: issuer.clone(),
        l402_store,
        facilitator: facilitator.clone(),
        x402_store: x402_store.clone(),
        max_settle_body: config.server.max_settle_body,
        bitreq: bitreq.clone(),
        mpp,
    };

    let mut routes = Vec::with_capacity(config.services.len());
    let mut upstreams = Vec::new();
    let mut paywalls = Vec::new();
    for service in &config.services {
        let metrics = Arc::new(crate::metrics::ServiceMetrics::new(&service.name));
        let upstream = upstream(service, metrics.clone())?;
        upstreams.push((service.name.clone(), upstream.base().clone()));
        let free_handler = BoxCloneSyncService::new(upstream);
        let paywall = ServicePaywall::build(service, config.x402.as_ref(), &backends)?;
        let paid_handler = paywall.as_ref().map(|p| p.wrap(free_handler.clone()));
        paywalls.push((service.name.clone(), paywall));
        let mut free = L402Config::new(service.name.clone());
        for p in &service.free_paths {
            free = free.free_path(p.clone());
        }
        routes.push(Route {
            name: service.name.clone(),
            host: service.host.clone(),
            path: service.path.clone(),
            free,
            free_handler,
            paid_handler,
            pricer: match &service.pricer {
                Some(p) => Some(crate::pricer::Pricer::new(
                    &service.name,
                    p,
                    &service.rails,
                    &service.mpp_methods,
                )?),
                None => None,
            },
            metrics,
            freebies: service.freebies.map(|f| {
                Arc::new(pay402_server::limit::KeyedLimiter::new(
                    pay402_server::limit::RateLimit::per_period(
                        f.requests,
                        Duration::from_secs(f.period_secs),
                    ),
                ))
            }),
        });
    }
    // BitRequests payment channel endpoints come before every service.
    routes.splice(0..0, bitreq.as_ref().and_then(crate::bitreq::channel_route));
    Ok(Running {
        proxy: Proxy::new(routes),
        upstreams,
        tasks,
        paywalls,
        x402_store,
        issuer,
        facilitator,
        bitreq,
        lightning_rest,
    })
}

/// The BitRequests server of `[bitrequests]` (see [`crate::bitreq::server`]).
async fn bitreq_server(
    b: &crate::config::BitreqSettings,
    database: &Database,
) -> Result<pay402_server::bitreq::BitreqServer, StartError> {
    crate::bitreq::server(b, database).await
}

/// The MPP rail: realm, secrets (read here, never logged), the methods on
/// the configured node and facilitator, and the replay store in the
/// instance's database.
async fn mpp(
    m: &crate::config::MppSettings,
    database: &Database,
    issuer: Option<&Arc<dyn InvoiceIssuer>>,
    facilitator: Option<&Arc<dyn Facilitator>>,
    config: &Config,
) -> Result<pay402_server::mpp::MppConfig, StartError> {
    use crate::config::MppMethod;
    use pay402_server::mpp::MppConfig;
    let secret = read_secret(&m.secret)?;
    let mut c = MppConfig::new(m.realm.as_str(), secret.as_bytes())
        .map_err(|e| format!("mpp.secret: {e}"))?;
    if let Some(p) = &m.previous_secret {
        let previous = read_secret(p)?;
        c = c
            .previous_secret(previous.as_bytes())
            .map_err(|e| format!("mpp.previous_secret: {e}"))?;
    }
    c = c
        .ttl(Duration::from_secs(m.challenge_ttl_secs))
        .store(pay402_server::mpp::store::open(database).await?);
    if m.methods.contains(&MppMethod::Lightning) {
        let node = issuer.ok_or("mpp.methods: lightning needs [lightning]")?;
        c = c.lightning(node.clone());
    }
    if m.methods.contains(&MppMethod::Evm) {
        let x = config
            .x402
            .as_ref()
            .ok_or("mpp.methods: evm needs [x402]")?;
        let facilitator = facilitator.ok_or("mpp.methods: evm needs [x402].facilitator")?;
        let pay_to = x
            .pay_to
            .parse()
            .map_err(|_| "x402.pay_to is not an address")?;
        let address = x
            .asset
            .parse()
            .map_err(|_| "x402.asset is not an address")?;
        let asset = pay402_server::paywall::X402Asset::new(
            x.network.clone(),
            address,
            x.asset_decimals,
            x.asset_name.clone(),
            x.asset_version.clone(),
        );
        c = c.evm(facilitator.clone(), pay_to, asset);
    }
    tracing::info!(realm = %m.realm, methods = ?m.methods, "mpp rail ready");
    Ok(c)
}

/// Opens the store database `[store]` names (reading the PostgreSQL
/// password from its file or environment variable; it is never logged).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let c = pay402_cli::config::Config::parse("p.toml",
///     "[store]\nurl = \"sqlite::memory:\"\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n").unwrap();
/// let db = pay402_cli::run::open_database(&c.store).await.unwrap();
/// assert_eq!(db.kind(), "sqlite");
/// # }
/// ```
pub async fn open_database(store: &StoreUrl) -> Result<Database, StartError> {
    use pay402_server::database::StoreUrl as U;
    use zeroize::Zeroize as _;
    let mut url = store.url.clone();
    if let (U::Postgres(text), Some(source)) = (&mut url, &store.password) {
        let password = read_secret(source)?;
        let mut parsed = reqwest::Url::parse(text).map_err(|e| format!("store.url: {e}"))?;
        parsed
            .set_password(Some(&password))
            .map_err(|()| "store.url: this URL cannot carry a password")?;
        text.zeroize();
        *text = parsed.into();
    }
    let opened = Database::open_url(&url, &store.options).await;
    if let U::Postgres(text) = &mut url {
        text.zeroize();
    }
    let db = opened.map_err(|e| format!("store {store}: {e}"))?;
    tracing::info!(store = %store, kind = db.kind(), "store opened");
    Ok(db)
}

async fn lightning(
    l: &LightningConfig,
    tasks: &mut Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    rest: &mut Option<SocketAddr>,
) -> Result<Arc<dyn InvoiceIssuer>, StartError> {
    Ok(match l {
        LightningConfig::Simnet {} => {
            let net = SimNet::new(Network::Regtest);
            Arc::new(net.add_node("merchant", pay402_core::money::Msat(0)))
        }
        LightningConfig::SimnetRest {
            listen,
            wallet_sats,
        } => {
            let net = SimNet::new(Network::Regtest);
            let merchant = net.add_node("merchant", pay402_core::money::Msat(0));
            let balance = Sat(*wallet_sats)
                .to_msat()
                .ok_or("lightning.wallet_sats too large")?;
            let wallet = net.add_node("wallet", balance);
            let listener = tokio::net::TcpListener::bind(listen.as_str())
                .await
                .map_err(|e| format!("lightning.listen {listen}: {e}"))?;
            let address = listener.local_addr()?;
            *rest = Some(address);
            tracing::info!(%address, "simnet wallet LND REST API listening");
            tasks.push(tokio::spawn(pay402_backends::simnet::rest::serve(
                wallet, listener,
            )));
            Arc::new(merchant)
        }
        LightningConfig::Lnd {
            url,
            network,
            macaroon,
            tls_cert_file,
            timeout_secs,
        } => {
            let network = parse_ln_network(network).ok_or("lightning.network")?;
            let mut cfg = pay402_backends::lnd::LndConfig::new(url.parse()?, network);
            if let Some(m) = macaroon {
                cfg.macaroon_hex = Some(match &m.file {
                    // The macaroon file is binary (admin.macaroon / invoice.macaroon).
                    Some(path) => hex::encode(
                        std::fs::read(path)
                            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                    ),
                    None => read_secret(m)?.trim().to_owned(),
                });
            }
            if let Some(path) = tls_cert_file {
                cfg.tls_cert_pem = Some(
                    std::fs::read(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                );
            }
            cfg.timeout = Duration::from_secs(*timeout_secs);
            Arc::new(pay402_backends::lnd::LndRest::new(cfg)?)
        }
    })
}

async fn facilitator(
    x: &crate::config::X402Settings,
    database: &Database,
) -> Result<Arc<dyn Facilitator>, StartError> {
    Ok(match &x.facilitator {
        FacilitatorConfig::Local {
            rpc_url,
            key,
            receipt_timeout_secs,
            claim_lease_secs,
        } => {
            let rpc = read_secret(rpc_url)?;
            let key = read_secret(key)?;
            let asset: pay402_core::x402::evm::EvmAddress = x
                .asset
                .parse()
                .map_err(|_| "x402.asset is not an address")?;
            // In-flight settlements and the key's nonces live beside the
            // payment records, so a restart finds (and reconciles) them.
            let settlements = pay402_server::x402::settlements::open(database)
                .await
                .map_err(|e| format!("store: {e}"))?;
            let mut b = pay402_backends::x402::LocalFacilitator::builder(rpc.as_str())
                .signer(key.as_str())
                .allow_asset(asset.0, x.asset_name.clone(), x.asset_version.clone())
                .network(x.network.clone())
                .settlement_store(settlements);
            if let Some(t) = receipt_timeout_secs {
                b = b.receipt_timeout(Duration::from_secs(*t));
            }
            if let Some(l) = claim_lease_secs {
                b = b.claim_lease(Duration::from_secs(*l));
            }
            let f = b.build().await?;
            crate::facilitator::spawn_reconcile(f.clone(), f.claim_lease());
            Arc::new(f)
        }
        FacilitatorConfig::Remote {
            url,
            timeout_secs,
            api_key,
        } => {
            let mut b = pay402_backends::x402::RemoteFacilitator::builder(url.clone())
                .timeout(Duration::from_secs(*timeout_secs));
            if let Some(k) = api_key {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {}", read_secret(k)?.as_str()))?;
                value.set_sensitive(true);
                b = b.auth(move |_endpoint: pay402_backends::x402::Endpoint| {
                    let mut h = http::HeaderMap::new();
                    h.insert(http::header::AUTHORIZATION, value.clone());
                    h
                });
            }
            Arc::new(b.build()?)
        }
    })
}

/// The upstream connection settings (TLS with the service's CA and client
/// certificate) and forwarding settings of one service.
fn upstream(
    service: &Service,
    metrics: Arc<crate::metrics::ServiceMetrics>,
) -> Result<Upstream, StartError> {
    let tls = if service.upstream.scheme() == "https" {
        Some(crate::tls::client_config(
            service.upstream_ca_file.as_deref(),
            service
                .upstream_client_identity
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path())),
            service.upstream_http2,
        )?)
    } else {
        None
    };
    let mut add = Vec::with_capacity(service.add_headers.len());
    for (name, value) in &service.add_headers {
        let v = match value {
            HeaderValueSource::Literal(s) => HeaderValue::from_str(s)?,
            HeaderValueSource::Secret(s) => {
                let mut v = HeaderValue::from_str(&read_secret(s)?)?;
                v.set_sensitive(true);
                v
            }
        };
        add.push((name.clone(), v));
    }
    Ok(Upstream::new(UpstreamConfig {
        service: service.name.clone(),
        base: service.upstream.clone(),
        // A bound on each wait, not on the whole exchange: long downloads
        // and streams run as long as bytes keep coming.
        timeout: service.timeout,
        http2: service.upstream_http2,
        tls,
        add_headers: add,
        strip_headers: service.strip_headers.clone(),
        identity_header: service.identity_header.clone(),
        metrics,
    })?)
}

/// Serves until SIGTERM or Ctrl-C, then stops accepting and gives
/// in-flight requests `shutdown_grace_secs` to finish.
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_cli::run::StartError> {
/// let c = pay402_cli::config::Config::load("pay402.toml".as_ref())?;
/// pay402_cli::run::serve(c, pay402_cli::metrics::install()?).await?;
/// # Ok(()) }
/// ```
pub async fn serve(config: Config, metrics: PrometheusHandle) -> Result<(), StartError> {
    let running = build(&config).await?;
    serve_built(config, running, metrics, shutdown_signal(), |_| {}).await
}

/// [`serve`] with the backends already built, stopping when `stop`
/// completes; `ready` is told the address the proxy listens on once it
/// accepts connections (`pay402 dev` prints it).
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_cli::run::StartError> {
/// let c = pay402_cli::config::Config::load("pay402.toml".as_ref())?;
/// let running = pay402_cli::run::build(&c).await?;
/// let stop = tokio::time::sleep(std::time::Duration::from_secs(60));
/// pay402_cli::run::serve_built(c, running, pay402_cli::metrics::install()?, stop, |addr| {
///     println!("listening on {addr}");
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn serve_built(
    config: Config,
    running: Running,
    metrics: PrometheusHandle,
    stop: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), StartError> {
    let tls = match &config.server.tls {
        Some(t) => Some(crate::tls::acceptor(&t.cert_file, &t.key_file)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen.as_str())
        .await
        .map_err(|e| format!("server.listen {}: {e}", config.server.listen))?;
    let ops = crate::ops::router(metrics.clone(), &running);
    let (app, ops_listener) = match &config.server.ops_listen {
        None => (ops.fallback_service(running.proxy.clone()), None),
        Some(addr) => (
            Router::new().fallback_service(running.proxy.clone()),
            Some((
                tokio::net::TcpListener::bind(addr.as_str())
                    .await
                    .map_err(|e| format!("server.ops_listen {addr}: {e}"))?,
                ops,
            )),
        ),
    };
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        tls = tls.is_some(),
        services = config.services.len(),
        "pay402 proxy listening"
    );
    // Scrapes see fresh histograms; upkeep also bounds the recorder's memory.
    let upkeep = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics.run_upkeep();
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let mut rx = stop_rx.clone();
    match tls {
        Some(acceptor) => servers.push(tokio::spawn(crate::tls::serve(
            listener,
            acceptor,
            app,
            stop_rx.clone(),
        ))),
        None => servers.push(tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        })),
    }
    if let Some((l, ops)) = ops_listener {
        tracing::info!(address = %l.local_addr()?, "operations listening");
        servers.push(spawn_private(l, ops, stop_rx.clone()));
    }

    if let Some(admin) = &config.admin {
        let token = read_secret(&admin.token)?;
        if token.len() < 32 {
            return Err("admin.token must be at least 32 characters".into());
        }
        let state = crate::admin::AdminState {
            token_digest: crate::admin::token_digest(&token),
            services: Arc::new(running.paywalls.clone()),
            x402_store: running.x402_store.clone(),
        };
        let l = tokio::net::TcpListener::bind(admin.listen.as_str())
            .await
            .map_err(|e| format!("admin.listen {}: {e}", admin.listen))?;
        tracing::info!(address = %l.local_addr()?, "admin API listening");
        let mut router = crate::admin::router(state);
        if let Some(b) = &running.bitreq {
            // The ledger's operator API checks the same bearer token.
            router = router.nest("/v1/bitreq", b.ledger_router(token.as_str())?);
        }
        servers.push(spawn_private(l, router, stop_rx.clone()));
    }

    ready(address);
    stop.await;
    tracing::info!(
        grace_secs = config.server.shutdown_grace_secs,
        "shutting down: draining in-flight requests"
    );
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let drained = tokio::time::timeout(grace, futures_util::future::join_all(servers)).await;
    upkeep.abort();
    for t in running.tasks {
        t.abort();
    }
    match drained {
        Ok(_) => {
            tracing::info!("drained; bye");
            Ok(())
        }
        Err(_) => Err("requests still in flight after shutdown_grace_secs".into()),
    }
}

/// Serves an operations or admin router until `stop` turns true.
fn spawn_private(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    })
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
