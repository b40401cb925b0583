//! The BitRequests server: shared state, offers (402 headers and quotes),
//! and the constructor every entry point hangs off.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use http::{HeaderMap, Method, Uri};
use pay402_core::bitreq::PaymentInfo;
use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;

use super::config::{AddressSource, BitreqConfig, ConfigError, derive_address};
use super::error::BitreqServerError;
use super::store::{BitreqStore, Quote, StoreError};
use crate::Price;

pub(crate) struct Inner {
    pub(crate) config: BitreqConfig,
    pub(crate) chain: Arc<dyn BitcoinChain>,
    pub(crate) store: Arc<dyn BitreqStore>,
}

/// A 21 BitRequests merchant: one value shared by the paywall layers
/// ([`BitreqServer::layer`]), the channel endpoints
/// ([`BitreqServer::channel_router`]), the ledger operator API
/// ([`BitreqServer::ledger_router`]) and the background sync
/// ([`BitreqServer::spawn_sync`]). Cloning is cheap.
///
/// ```no_run
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use bitcoin::bip32::Xpub;
/// use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
/// use pay402_server::Price;
/// use pay402_server::bitreq::{BitreqConfig, BitreqServer, ChannelConfig, MerchantKey, OnChainConfig, TransferConfig};
/// use pay402_server::bitreq::store::SqliteBitreqStore;
///
/// # async fn run(xpub: Xpub, key: MerchantKey) -> Result<(), Box<dyn std::error::Error>> {
/// let chain = Arc::new(BitcoindRpc::new(BitcoindConfig::from_env()?)?);
/// let store = Arc::new(SqliteBitreqStore::open("bitreq.sqlite").await?);
/// let config = BitreqConfig::new(bitcoin::Network::Regtest)
///     .public_url("http://127.0.0.1:8402")
///     .onchain(OnChainConfig::derived(xpub))
///     .transfer(TransferConfig::new("shop"))
///     .channel(ChannelConfig::new(key));
/// let server = BitreqServer::new(config, chain, store)?;
/// let _sync = server.spawn_sync(std::time::Duration::from_secs(60));
/// let app = Router::new()
///     .route("/report", get(|| async { "paid report" }).route_layer(server.layer(Price::sats(5_000))))
///     .merge(server.channel_router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8402").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BitreqServer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for BitreqServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitreqServer")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The current time.
pub(crate) fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

/// `METHOD path`: what quotes, records and transfers are bound to.
pub(crate) fn resource_of(method: &Method, uri: &Uri) -> String {
    format!("{} {}", method, uri.path())
}

impl BitreqServer {
    /// A server with `config` (checked by [`BitreqConfig::validate`]), the
    /// chain backend that broadcasts and looks up transactions (e.g.
    /// `pay402_backends::bitcoind::BitcoindRpc`), and the store of quotes,
    /// redemptions, ledger and channels (e.g.
    /// [`super::store::SqliteBitreqStore`]).
    ///
    /// This constructor and the methods below are the stable API of the
    /// BitRequests server.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    /// use pay402_server::bitreq::{BitreqConfig, BitreqServer, TransferConfig};
    /// use pay402_server::bitreq::store::MemoryBitreqStore;
    /// let chain = BitcoindRpc::new(BitcoindConfig {
    ///     url: "http://127.0.0.1:18443".parse().unwrap(), user: "u".into(), password: "p".into(),
    ///     timeout: std::time::Duration::from_secs(5) }).unwrap();
    /// let server = BitreqServer::new(
    ///     BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop")),
    ///     Arc::new(chain),
    ///     Arc::new(MemoryBitreqStore::new()),
    /// ).unwrap();
    /// assert!(server.config().transfer.is_some());
    /// ```
    pub fn new(
        config: BitreqConfig,
        chain: Arc<dyn BitcoinChain>,
        store: Arc<dyn BitreqStore>,
    ) -> Result<BitreqServer, ConfigError> {
        config.validate()?;
        Ok(BitreqServer {
            inner: Arc::new(Inner {
                config,
                chain,
                store,
            }),
        })
    }

    /// The configuration.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    /// # use pay402_server::bitreq::{BitreqConfig, BitreqServer, TransferConfig};
    /// # use pay402_server::bitreq::store::MemoryBitreqStore;
    /// # let chain = BitcoindRpc::new(BitcoindConfig { url: "http://127.0.0.1:18443".parse().unwrap(),
    /// #     user: "u".into(), password: "p".into(), timeout: std::time::Duration::from_secs(5) }).unwrap();
    /// # let server = BitreqServer::new(BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop")),
    /// #     Arc::new(chain), Arc::new(MemoryBitreqStore::new())).unwrap();
    /// assert_eq!(server.config().network, bitcoin::Network::Regtest);
    /// ```
    pub fn config(&self) -> &BitreqConfig {
        &self.inner.config
    }

    /// The store.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    /// # use pay402_server::bitreq::{BitreqConfig, BitreqServer, TransferConfig};
    /// # use pay402_server::bitreq::store::MemoryBitreqStore;
    /// # let chain = BitcoindRpc::new(BitcoindConfig { url: "http://127.0.0.1:18443".parse().unwrap(),
    /// #     user: "u".into(), password: "p".into(), timeout: std::time::Duration::from_secs(5) }).unwrap();
    /// # let server = BitreqServer::new(BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop")),
    /// #     Arc::new(chain), Arc::new(MemoryBitreqStore::new())).unwrap();
    /// let store = server.store().clone();
    /// # let _ = store;
    /// ```
    pub fn store(&self) -> &Arc<dyn BitreqStore> {
        &self.inner.store
    }

    /// The chain backend.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    /// # use pay402_server::bitreq::{BitreqConfig, BitreqServer, TransferConfig};
    /// # use pay402_server::bitreq::store::MemoryBitreqStore;
    /// # let chain = BitcoindRpc::new(BitcoindConfig { url: "http://127.0.0.1:18443".parse().unwrap(),
    /// #     user: "u".into(), password: "p".into(), timeout: std::time::Duration::from_secs(5) }).unwrap();
    /// # let server = BitreqServer::new(BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop")),
    /// #     Arc::new(chain), Arc::new(MemoryBitreqStore::new())).unwrap();
    /// let chain = server.chain().clone();
    /// # let _ = chain;
    /// ```
    pub fn chain(&self) -> &Arc<dyn BitcoinChain> {
        &self.inner.chain
    }

    /// A tower layer charging `price` (in satoshis; a millisatoshi price is
    /// rounded up) for the routes it wraps, with every enabled method.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    /// # use pay402_server::bitreq::{BitreqConfig, BitreqServer, TransferConfig};
    /// # use pay402_server::bitreq::store::MemoryBitreqStore;
    /// # let chain = BitcoindRpc::new(BitcoindConfig { url: "http://127.0.0.1:18443".parse().unwrap(),
    /// #     user: "u".into(), password: "p".into(), timeout: std::time::Duration::from_secs(5) }).unwrap();
    /// # let server = BitreqServer::new(BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop")),
    /// #     Arc::new(chain), Arc::new(MemoryBitreqStore::new())).unwrap();
    /// use axum::{Router, routing::get};
    /// let app: Router = Router::new()
    ///     .route("/r", get(|| async { "paid" }).route_layer(server.layer(pay402_server::Price::sats(5_000))));
    /// ```
    pub fn layer(&self, price: Price) -> super::layer::BitreqLayer {
        super::layer::BitreqLayer::new(self.clone(), price)
    }

    /// The five channel endpoints at the configured path (an empty router if
    /// channels are disabled). Merge it into the application's router.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    /// # use pay402_server::bitreq::{BitreqConfig, BitreqServer, ChannelConfig, MerchantKey};
    /// # use pay402_server::bitreq::store::MemoryBitreqStore;
    /// # let chain = BitcoindRpc::new(BitcoindConfig { url: "http://127.0.0.1:18443".parse().unwrap(),
    /// #     user: "u".into(), password: "p".into(), timeout: std::time::Duration::from_secs(5) }).unwrap();
    /// # let server = BitreqServer::new(BitreqConfig::new(bitcoin::Network::Regtest)
    /// #     .channel(ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap())),
    /// #     Arc::new(chain), Arc::new(MemoryBitreqStore::new())).unwrap();
    /// let app: axum::Router = axum::Router::new().merge(server.channel_router());
    /// ```
    pub fn channel_router(&self) -> Router {
        super::channel::router(self.clone())
    }

    /// The ledger operator API (see [`super::ledger`]), guarded by
    /// `Authorization: Bearer <admin_token>`. Serve it on a private listener.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    /// # use pay402_server::bitreq::{BitreqConfig, BitreqServer, TransferConfig};
    /// # use pay402_server::bitreq::store::MemoryBitreqStore;
    /// # let chain = BitcoindRpc::new(BitcoindConfig { url: "http://127.0.0.1:18443".parse().unwrap(),
    /// #     user: "u".into(), password: "p".into(), timeout: std::time::Duration::from_secs(5) }).unwrap();
    /// # let server = BitreqServer::new(BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop")),
    /// #     Arc::new(chain), Arc::new(MemoryBitreqStore::new())).unwrap();
    /// let admin: axum::Router = server.ledger_router("a long random operator token").unwrap();
    /// // An empty (or blank) token would let anyone in: refused.
    /// assert!(server.ledger_router("").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyAdminToken`] when the token is empty or only
    /// whitespace.
    pub fn ledger_router(&self, admin_token: impl Into<String>) -> Result<Router, ConfigError> {
        let token = zeroize::Zeroizing::new(admin_token.into());
        if token.trim().is_empty() {
            return Err(ConfigError::EmptyAdminToken);
        }
        Ok(super::ledger::router(self.clone(), token.to_string()))
    }

    /// The 402 offer for a request costing `price`: `Price`, and for each
    /// enabled method its header. With derived addresses this allocates a
    /// fresh address and stores its quote (bound to `METHOD path`).
    ///
    /// On-chain is left out when `price` is below the dust floor.
    ///
    /// ```no_run
    /// # async fn f(server: pay402_server::bitreq::BitreqServer) {
    /// let info = server
    ///     .offer(pay402_core::money::Sat(5_000), &http::Method::GET, &"/r".parse().unwrap(), &http::HeaderMap::new())
    ///     .await
    ///     .unwrap();
    /// assert_eq!(info.price.0, 5_000);
    /// # }
    /// ```
    pub async fn offer(
        &self,
        price: Sat,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<PaymentInfo, BitreqServerError> {
        let cfg = &self.inner.config;
        let mut info = PaymentInfo::new(price);
        if let Some(oc) = &cfg.onchain
            && price >= oc.policy.dust_limit
        {
            let address = match &oc.addresses {
                AddressSource::Fixed(a) => Some(a.to_string()),
                AddressSource::Derived { xpub, kind } => 'derived: {
                    if !self.quote_room(oc.max_open_quotes).await? {
                        tracing::warn!(max = oc.max_open_quotes, "bitreq.quotes_full");
                        break 'derived None;
                    }
                    let index = self.inner.store.next_address_index().await?;
                    let address =
                        derive_address(xpub, *kind, cfg.network, index).ok_or_else(|| {
                            StoreError::Unavailable("address derivation failed".into())
                        })?;
                    let created_at = now();
                    let quote = Quote {
                        index,
                        script_pubkey: address.script_pubkey(),
                        price,
                        resource: resource_of(method, uri),
                        created_at,
                        expires_at: created_at.saturating_add_secs(oc.quote_ttl.as_secs()),
                    };
                    self.inner.store.insert_quote(&quote).await?;
                    tracing::debug!(index, %address, "bitreq.quote");
                    Some(address.to_string())
                }
            };
            if let Some(address) = address {
                info = info.with_bitcoin_address(address);
            }
        }
        if let Some(t) = &cfg.transfer {
            info = info.with_username(t.username.clone());
        }
        if let Some(c) = &cfg.channel {
            info = info.with_channel_server(self.channel_url(&c.path, headers));
        }
        Ok(info)
    }

    /// Whether another quote may be stored: below `max` quotes, after
    /// purging the expired ones when the store is full.
    async fn quote_room(&self, max: u64) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        if store.count_quotes().await? < max {
            return Ok(true);
        }
        let purged = store.purge_quotes(now()).await?;
        if purged > 0 {
            tracing::debug!(purged, "bitreq.quotes_purged");
        }
        Ok(store.count_quotes().await? < max)
    }

    fn channel_url(&self, path: &str, headers: &HeaderMap) -> String {
        if let Some(base) = &self.inner.config.public_url {
            return format!("{}{}", base.trim_end_matches('/'), path);
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() < 256
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
            })
            .unwrap_or("localhost");
        let scheme = match headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
        {
            Some("https") => "https",
            _ => "http",
        };
        format!("{scheme}://{host}{path}")
    }
}
