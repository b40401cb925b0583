//! [`LdkConfig`] and its parts.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use pay402_core::lightning::Network;
use pay402_core::money::Sat;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The default bound on one blocking ldk-node call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// ldk-node's default on-chain reserve per anchor channel.
pub const DEFAULT_ANCHOR_RESERVE: Sat = Sat(25_000);

/// Where the node gets its chain data from.
///
/// `Debug` output redacts the RPC password.
///
/// ```
/// use pay402_backends::ldk::ChainSource;
/// let src = ChainSource::BitcoindRpc {
///     host: "127.0.0.1".into(), port: 18443, user: "u".into(), password: "hunter2".into(),
/// };
/// assert!(!format!("{src:?}").contains("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum ChainSource {
    /// A Bitcoin Core (compatible) JSON-RPC endpoint.
    BitcoindRpc {
        /// Host name or IP address.
        host: String,
        /// RPC port.
        port: u16,
        /// RPC user.
        user: String,
        /// RPC password.
        password: String,
    },
    /// An Esplora HTTP API, e.g. `https://blockstream.info/api`.
    Esplora {
        /// The base URL.
        url: String,
    },
    /// An Electrum server, e.g. `ssl://electrum.blockstream.info:50002`.
    Electrum {
        /// The server URL.
        url: String,
    },
}

impl fmt::Debug for ChainSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainSource::BitcoindRpc {
                host, port, user, ..
            } => f
                .debug_struct("BitcoindRpc")
                .field("host", host)
                .field("port", port)
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            ChainSource::Esplora { url } => f.debug_struct("Esplora").field("url", url).finish(),
            ChainSource::Electrum { url } => f.debug_struct("Electrum").field("url", url).finish(),
        }
    }
}

impl ChainSource {
    pub(super) fn describe(&self) -> String {
        match self {
            ChainSource::BitcoindRpc { host, port, .. } => format!("bitcoind RPC at {host}:{port}"),
            ChainSource::Esplora { url } => format!("Esplora at {url}"),
            ChainSource::Electrum { url } => format!("Electrum at {url}"),
        }
    }
}

/// A 64-byte wallet seed. `Debug` is redacted and the bytes are zeroized on
/// drop.
///
/// ```
/// use pay402_backends::ldk::Seed;
/// let seed = Seed::from_bytes([7; 64]);
/// assert_eq!(format!("{seed:?}"), "Seed(..)");
/// assert_eq!(seed.as_bytes()[0], 7);
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Seed([u8; 64]);

impl Seed {
    /// Wraps raw seed bytes.
    ///
    /// ```
    /// let _ = pay402_backends::ldk::Seed::from_bytes([0; 64]);
    /// ```
    pub const fn from_bytes(bytes: [u8; 64]) -> Seed {
        Seed(bytes)
    }

    /// The raw bytes.
    ///
    /// ```
    /// assert_eq!(pay402_backends::ldk::Seed::from_bytes([1; 64]).as_bytes().len(), 64);
    /// ```
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(..)")
    }
}

/// Where ldk-node's own log goes.
///
/// ```
/// use pay402_backends::ldk::LdkLog;
/// assert_eq!(LdkLog::default(), LdkLog::Tracing);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LdkLog {
    /// Forwarded to `tracing` with target `ldk_node` (LDK's `Gossip` and
    /// `Trace` become `trace`, the other levels map one to one).
    #[default]
    Tracing,
    /// ldk-node's file logger: `ldk_node.log` in the storage directory (or
    /// the given path), at ldk-node's default level (`Debug`).
    File(Option<PathBuf>),
}

/// How to build and run an [`LdkNode`](super::LdkNode).
///
/// `Debug` output redacts the seed and the RPC password.
///
/// ```
/// use std::time::Duration;
/// use pay402_backends::ldk::{ChainSource, LdkConfig, Seed};
/// use pay402_core::lightning::Network;
/// let cfg = LdkConfig::new(Network::Regtest, "/tmp/ldk-a", ChainSource::Esplora { url: "http://127.0.0.1:3002".into() })
///     .listen("127.0.0.1:0".parse().unwrap())
///     .alias("merchant")
///     .seed(Seed::from_bytes([42; 64]))
///     .call_timeout(Duration::from_secs(30));
/// assert_eq!(cfg.alias.as_deref(), Some("merchant"));
/// assert!(format!("{cfg:?}").contains("Seed(..)"));
/// ```
#[derive(Clone)]
pub struct LdkConfig {
    /// The Bitcoin network.
    pub network: Network,
    /// Where the node keeps its state (SQLite store, seed file, logs). Must be
    /// valid UTF-8. Keep it: it holds the channel state and, unless
    /// [`seed`](Self::seed) is set, the wallet seed (`keys_seed`).
    pub storage_dir: PathBuf,
    /// The address to accept Lightning peer connections on. Port 0 picks a
    /// free port when the node starts (see [`LdkNode::listening_addresses`](super::LdkNode::listening_addresses)).
    /// `None`: no inbound connections.
    pub listen: Option<SocketAddr>,
    /// Where chain data comes from.
    pub chain: ChainSource,
    /// The node alias (at most 32 bytes of UTF-8).
    pub alias: Option<String>,
    /// The wallet seed. `None` uses (and on first start creates) the seed
    /// file `keys_seed` in the storage directory.
    pub seed: Option<Seed>,
    /// The on-chain reserve the node keeps per anchor channel, to be able to
    /// get closing transactions confirmed. ldk-node refuses to open, or to
    /// accept, an anchor channel without it.
    pub anchor_reserve: Sat,
    /// Peers trusted to get closing transactions confirmed: no anchor
    /// reserve is kept for channels with them.
    pub anchor_reserve_trusted_peers: Vec<PublicKey>,
    /// The longest one blocking ldk-node call (start, stop, sync, connect,
    /// open channel) may take before it is reported as
    /// [`LightningError::Unreachable`](pay402_core::lightning::LightningError::Unreachable).
    pub call_timeout: Duration,
    /// Where ldk-node's log goes.
    pub log: LdkLog,
}

impl fmt::Debug for LdkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdkConfig")
            .field("network", &self.network)
            .field("storage_dir", &self.storage_dir)
            .field("listen", &self.listen)
            .field("chain", &self.chain)
            .field("alias", &self.alias)
            .field("seed", &self.seed)
            .field("anchor_reserve", &self.anchor_reserve)
            .field(
                "anchor_reserve_trusted_peers",
                &self.anchor_reserve_trusted_peers,
            )
            .field("call_timeout", &self.call_timeout)
            .field("log", &self.log)
            .finish()
    }
}

impl LdkConfig {
    /// A configuration with no listening address, no alias, the seed file in
    /// the storage directory, ldk-node's default anchor reserve, a 60 s call
    /// timeout and logs to `tracing`.
    ///
    /// ```
    /// use pay402_backends::ldk::{ChainSource, LdkConfig};
    /// use pay402_core::lightning::Network;
    /// let cfg = LdkConfig::new(Network::Signet, "/tmp/x", ChainSource::Esplora { url: "https://mutinynet.com/api".into() });
    /// assert!(cfg.listen.is_none() && cfg.seed.is_none());
    /// assert_eq!(cfg.call_timeout.as_secs(), 60);
    /// ```
    pub fn new(network: Network, storage_dir: impl Into<PathBuf>, chain: ChainSource) -> LdkConfig {
        LdkConfig {
            network,
            storage_dir: storage_dir.into(),
            listen: None,
            chain,
            alias: None,
            seed: None,
            anchor_reserve: DEFAULT_ANCHOR_RESERVE,
            anchor_reserve_trusted_peers: Vec::new(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            log: LdkLog::Tracing,
        }
    }

    /// Sets [`listen`](Self::listen).
    ///
    /// ```
    /// # use pay402_backends::ldk::{ChainSource, LdkConfig};
    /// # let cfg = LdkConfig::new(pay402_core::lightning::Network::Regtest, "/tmp/x", ChainSource::Esplora { url: "x".into() });
    /// let cfg = cfg.listen("127.0.0.1:9735".parse().unwrap());
    /// assert_eq!(cfg.listen.unwrap().port(), 9735);
    /// ```
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Sets [`alias`](Self::alias).
    ///
    /// ```
    /// # use pay402_backends::ldk::{ChainSource, LdkConfig};
    /// # let cfg = LdkConfig::new(pay402_core::lightning::Network::Regtest, "/tmp/x", ChainSource::Esplora { url: "x".into() });
    /// assert_eq!(cfg.alias("shop").alias.as_deref(), Some("shop"));
    /// ```
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }

    /// Sets [`seed`](Self::seed).
    ///
    /// ```
    /// # use pay402_backends::ldk::{ChainSource, LdkConfig, Seed};
    /// # let cfg = LdkConfig::new(pay402_core::lightning::Network::Regtest, "/tmp/x", ChainSource::Esplora { url: "x".into() });
    /// assert!(cfg.seed(Seed::from_bytes([1; 64])).seed.is_some());
    /// ```
    pub fn seed(mut self, seed: Seed) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets [`call_timeout`](Self::call_timeout).
    ///
    /// ```
    /// # use pay402_backends::ldk::{ChainSource, LdkConfig};
    /// # let cfg = LdkConfig::new(pay402_core::lightning::Network::Regtest, "/tmp/x", ChainSource::Esplora { url: "x".into() });
    /// assert_eq!(cfg.call_timeout(std::time::Duration::from_secs(5)).call_timeout.as_secs(), 5);
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets [`log`](Self::log).
    ///
    /// ```
    /// # use pay402_backends::ldk::{ChainSource, LdkConfig, LdkLog};
    /// # let cfg = LdkConfig::new(pay402_core::lightning::Network::Regtest, "/tmp/x", ChainSource::Esplora { url: "x".into() });
    /// assert_eq!(cfg.log(LdkLog::File(None)).log, LdkLog::File(None));
    /// ```
    pub fn log(mut self, log: LdkLog) -> Self {
        self.log = log;
        self
    }
}
