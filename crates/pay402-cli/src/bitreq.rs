//! The proxy's 21 BitRequests rail from `[bitrequests]`: the server with
//! its methods (ledger bit-transfers, on-chain transactions, payment
//! channels), its chain backend, its store in the instance's database, the
//! background sync, and the route serving the channel endpoints.

use std::sync::Arc;
use std::time::Duration;

use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_server::bitreq::{
    BitreqConfig, BitreqServer, ChannelConfig, MerchantKey, OnChainConfig, TransferConfig,
};
use pay402_server::database::Database;
use tower::util::BoxCloneSyncService;

use crate::config::{BitreqChain, BitreqChainKind, BitreqSettings, parse_btc_network};
use crate::proxy::Route;
use crate::run::{StartError, read_secret};

/// The sync period when `sync_secs` is not set.
const DEFAULT_SYNC: Duration = Duration::from_secs(60);

/// The chain backend `[bitrequests.chain]` names (the bitcoind password is
/// read here and never logged).
///
/// ```
/// let c: pay402_cli::config::BitreqChain =
///     toml::from_str("kind = \"esplora\"\nurl = \"http://127.0.0.1:3002\"").unwrap();
/// let chain = pay402_cli::bitreq::chain(&c).unwrap();
/// # let _ = chain;
/// ```
pub fn chain(c: &BitreqChain) -> Result<Arc<dyn BitcoinChain>, StartError> {
    let url: reqwest::Url = c
        .url
        .parse()
        .map_err(|e| format!("bitrequests.chain.url: {e}"))?;
    let timeout = Duration::from_secs(c.timeout_secs.unwrap_or(30));
    Ok(match c.kind {
        BitreqChainKind::Bitcoind => {
            let password = match &c.password {
                Some(p) => read_secret(p)?,
                None => return Err("bitrequests.chain.password is required for bitcoind".into()),
            };
            let config = pay402_backends::bitcoind::BitcoindConfig {
                url,
                user: c.user.clone().unwrap_or_default(),
                password: password.as_str().to_owned(),
                timeout,
            };
            Arc::new(pay402_backends::bitcoind::BitcoindRpc::new(config)?)
        }
        BitreqChainKind::Esplora => Arc::new(pay402_backends::esplora::Esplora::new(
            pay402_backends::esplora::EsploraConfig { url, timeout },
        )?),
    })
}

/// The BitRequests configuration of `b` (the channel key read from its
/// secret source).
///
/// ```
/// let b: pay402_cli::config::BitreqSettings =
///     toml::from_str("network = \"regtest\"\ntransfer_username = \"shop\"").unwrap();
/// let c = pay402_cli::bitreq::config(&b).unwrap();
/// assert!(c.transfer.is_some() && c.onchain.is_none());
/// ```
pub fn config(b: &BitreqSettings) -> Result<BitreqConfig, StartError> {
    use pay402_server::bitreq::bitcoin::address::NetworkUnchecked;
    use pay402_server::bitreq::bitcoin::{Address, bip32::Xpub};
    let network = parse_btc_network(&b.network).ok_or("bitrequests.network is invalid")?;
    let mut config = BitreqConfig::new(network);
    if let Some(url) = &b.public_url {
        config = config.public_url(url.as_str());
    }
    if let Some(u) = &b.transfer_username {
        config = config.transfer(TransferConfig::new(u));
    }
    if let Some(o) = &b.onchain {
        let o = o.get_ref();
        let mut oc = match (&o.xpub, &o.address) {
            (Some(x), _) => OnChainConfig::derived(
                x.parse::<Xpub>()
                    .map_err(|e| format!("bitrequests.onchain.xpub: {e}"))?,
            ),
            (None, Some(a)) => OnChainConfig::fixed(
                a.parse::<Address<NetworkUnchecked>>()
                    .map_err(|e| format!("bitrequests.onchain.address: {e}"))?
                    .require_network(network)
                    .map_err(|e| format!("bitrequests.onchain.address: {e}"))?,
            ),
            (None, None) => return Err("bitrequests.onchain needs xpub or address".into()),
        };
        if let Some(n) = o.confirmations {
            oc = oc.confirmations(n);
        }
        if let Some(cap) = o.accept_unconfirmed_up_to_sats {
            oc = oc.accept_unconfirmed_up_to(Sat(cap));
        }
        if let Some(t) = o.quote_ttl_secs {
            oc = oc.quote_ttl(Duration::from_secs(t));
        }
        if let Some(n) = o.max_open_quotes {
            oc = oc.max_open_quotes(n);
        }
        config = config.onchain(oc);
    }
    if let Some(c) = &b.channel {
        let c = c.get_ref();
        let key = read_secret(&c.key)?;
        let key = MerchantKey::from_hex(key.trim())
            .map_err(|e| format!("bitrequests.channel.key: {e}"))?;
        let mut cc = ChannelConfig::new(key);
        if let Some(p) = &c.path {
            cc = cc.path(p.as_str());
        }
        if let Some(z) = c.zeroconf {
            cc = cc.zeroconf(z);
        }
        if let Some(f) = c.fee_sats {
            cc = cc.fee(Sat(f));
        }
        if let Some(d) = c.min_duration_secs {
            cc = cc.min_duration(Duration::from_secs(d));
        }
        config = config.channel(cc);
    }
    Ok(config)
}

/// The BitRequests server of `[bitrequests]`: its store in the instance's
/// database (SQLite or PostgreSQL: replay keys, quotes, ledger, channels),
/// its chain (none for a ledger-only setup), and, with a chain, the sync
/// task following it every `sync_secs`.
///
/// ```no_run
/// # async fn f(b: pay402_cli::config::BitreqSettings, db: pay402_server::database::Database)
/// # -> Result<(), pay402_cli::run::StartError> {
/// let server = pay402_cli::bitreq::server(&b, &db).await?;
/// # let _ = server; Ok(()) }
/// ```
pub async fn server(b: &BitreqSettings, database: &Database) -> Result<BitreqServer, StartError> {
    let config = config(b)?;
    let chain: Arc<dyn BitcoinChain> = match &b.chain {
        Some(c) => chain(c.get_ref())?,
        None => Arc::new(crate::nochain::NoChain),
    };
    let store = pay402_server::bitreq::store::open(database).await?;
    let methods: Vec<&str> = [
        config.transfer.as_ref().map(|_| "transfer"),
        config.onchain.as_ref().map(|_| "onchain"),
        config.channel.as_ref().map(|_| "channel"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let server = BitreqServer::new(config, chain, store)?;
    if b.chain.is_some() {
        // Detached: it runs for the process's lifetime.
        drop(server.spawn_sync(b.sync_secs.map_or(DEFAULT_SYNC, Duration::from_secs)));
    }
    tracing::info!(network = %b.network, ?methods, "bitrequests rail ready");
    Ok(server)
}

/// The route answering the payment channel endpoints (`<path>` and
/// `<path>/<deposit txid>` on any host), to be tried before every service;
/// `None` without channels.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b: pay402_cli::config::BitreqSettings =
///     toml::from_str("network = \"regtest\"\ntransfer_username = \"shop\"").unwrap();
/// let db = pay402_server::database::Database::Memory;
/// let server = pay402_cli::bitreq::server(&b, &db).await.unwrap();
/// assert!(pay402_cli::bitreq::channel_route(&server).is_none());
/// # }
/// ```
pub fn channel_route(server: &BitreqServer) -> Option<Route> {
    let path = &server.config().channel.as_ref()?.path;
    let pattern = format!("^{}(/[^/]*)?$", regex::escape(path));
    Some(Route {
        name: "bitreq-channels".into(),
        host: regex::Regex::new("").ok()?,
        path: regex::Regex::new(&pattern).ok()?,
        free: pay402_server::L402Config::new("bitreq-channels"),
        free_handler: BoxCloneSyncService::new(server.channel_router()),
        paid_handler: None,
        freebies: None,
        pricer: None,
        metrics: std::sync::Arc::new(crate::metrics::ServiceMetrics::new("bitreq-channels")),
    })
}
