//! [`LocalFacilitatorBuilder`]: the settings of a [`LocalFacilitator`] and
//! its start-up checks (RPC reachable, `eth_chainId` matches the network).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::network::{caip2_to_slug, evm_chain_id};

use super::chain::{Chain, SignerSlot};
use super::key::FacilitatorKey;
use super::local::{
    DEFAULT_LOG_CHUNK_BLOCKS, DEFAULT_LOG_LOOKBACK_BLOCKS, DEFAULT_RECEIPT_TIMEOUT,
    DEFAULT_RPC_TIMEOUT, Inner, LocalFacilitator,
};
use crate::evm_rpc::{RpcTransport, TransportConfigError};

pub(super) type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// Why a [`LocalFacilitator`] could not be built.
///
/// ```
/// use pay402_backends::x402::LocalFacilitatorError;
/// use pay402_core::problem::Reason;
/// let e = LocalFacilitatorError::ChainMismatch { network: "eip155:8453".into(), actual: 31337 };
/// assert_eq!(e.reason(), "facilitator_chain_mismatch");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocalFacilitatorError {
    /// No facilitator key was given.
    #[error("a local facilitator needs at least one signer key")]
    NoSigner,
    /// A key was not a valid secp256k1 private key.
    #[error("invalid facilitator key: {0}")]
    InvalidKey(#[from] super::key::InvalidKey),
    /// The RPC URL cannot be used.
    #[error(transparent)]
    Transport(#[from] TransportConfigError),
    /// The configured network is not an EVM network id.
    #[error("{0:?} is not an EVM network (expected eip155:<chain id> or a known v1 name)")]
    InvalidNetwork(String),
    /// The node's `eth_chainId` is not the configured network's.
    #[error("the RPC node is on chain {actual}, not {network}")]
    ChainMismatch {
        /// The configured network.
        network: String,
        /// What `eth_chainId` answered.
        actual: u64,
    },
    /// The node did not answer `eth_chainId`.
    #[error("cannot reach the RPC node: {0}")]
    Rpc(String),
}

impl Reason for LocalFacilitatorError {
    fn reason(&self) -> &'static str {
        match self {
            LocalFacilitatorError::NoSigner => "facilitator_no_signer",
            LocalFacilitatorError::InvalidKey(_) => "facilitator_invalid_key",
            LocalFacilitatorError::Transport(_) => "facilitator_invalid_rpc_url",
            LocalFacilitatorError::InvalidNetwork(_) => "facilitator_invalid_network",
            LocalFacilitatorError::ChainMismatch { .. } => "facilitator_chain_mismatch",
            LocalFacilitatorError::Rpc(_) => "facilitator_rpc_unreachable",
        }
    }
    fn status(&self) -> u16 {
        503
    }
}

pub(super) enum Source {
    Url(String),
    Provider(DynProvider),
}

/// Builds a [`LocalFacilitator`]; see [`LocalFacilitator::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), pay402_backends::x402::LocalFacilitatorError> {
/// use std::time::Duration;
/// use pay402_backends::x402::LocalFacilitator;
/// let facilitator = LocalFacilitator::builder("https://sepolia.base.org")
///     .signer("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
///     .network("eip155:84532")
///     .rpc_timeout(Duration::from_secs(5))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct LocalFacilitatorBuilder {
    source: Source,
    keys: Vec<FacilitatorKey>,
    key_error: Option<super::key::InvalidKey>,
    network: Option<String>,
    receipt_timeout: Duration,
    rpc_timeout: Duration,
    poll_interval: Option<Duration>,
    allow_insecure_http: bool,
    log_lookback_blocks: u64,
    log_chunk_blocks: u64,
    gas_headroom_percent: u64,
    idempotent_settle: bool,
    clock: Clock,
}

impl fmt::Debug for LocalFacilitatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalFacilitatorBuilder")
            .field("signers", &self.keys)
            .field("network", &self.network)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("rpc_timeout", &self.rpc_timeout)
            .finish_non_exhaustive()
    }
}

impl LocalFacilitatorBuilder {
    pub(super) fn new(source: Source) -> LocalFacilitatorBuilder {
        LocalFacilitatorBuilder {
            source,
            keys: Vec::new(),
            key_error: None,
            network: None,
            receipt_timeout: DEFAULT_RECEIPT_TIMEOUT,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
            poll_interval: None,
            allow_insecure_http: false,
            log_lookback_blocks: DEFAULT_LOG_LOOKBACK_BLOCKS,
            log_chunk_blocks: DEFAULT_LOG_CHUNK_BLOCKS,
            gas_headroom_percent: 120,
            idempotent_settle: true,
            clock: Arc::new(|| UnixTime::from_system(SystemTime::now())),
        }
    }

    /// Adds a facilitator account: a [`FacilitatorKey`], a `B256` (such as
    /// `pay402_testkit::anvil::DEV_ACCOUNTS[1].private_key`), 32 bytes, or
    /// 64 hex digits. The account pays the gas of settlements. Several
    /// accounts are used in turn. An invalid key fails [`build`](Self::build).
    ///
    /// ```
    /// use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545")
    ///     .signer("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
    ///     .signer([7u8; 32]);
    /// # let _ = b;
    /// ```
    pub fn signer<K>(mut self, key: K) -> Self
    where
        K: TryInto<FacilitatorKey>,
    {
        match key.try_into() {
            Ok(k) => {
                if !self.keys.iter().any(|x| x.address() == k.address()) {
                    self.keys.push(k);
                }
            }
            Err(_) => self.key_error = Some(super::key::InvalidKey),
        }
        self
    }

    /// The network this facilitator serves: `eip155:<chain id>` (or a v1
    /// name such as `base-sepolia`). [`build`](Self::build) checks it against
    /// the node's `eth_chainId`. Without it, the node's chain is served.
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").network("eip155:31337");
    /// # let _ = b;
    /// ```
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.network = Some(network.into());
        self
    }

    /// How long `settle` waits for the receipt before answering
    /// [`FacilitatorError::Pending`](pay402_core::x402::FacilitatorError::Pending) (default 45 s).
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").receipt_timeout(std::time::Duration::from_secs(20));
    /// # let _ = b;
    /// ```
    pub fn receipt_timeout(mut self, bound: Duration) -> Self {
        self.receipt_timeout = bound;
        self
    }

    /// The timeout of each RPC request (default 10 s). Ignored for
    /// [`LocalFacilitator::builder_with_provider`], except for the start-up
    /// `eth_chainId`.
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").rpc_timeout(std::time::Duration::from_secs(3));
    /// # let _ = b;
    /// ```
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// How often a receipt is polled (default 50 ms for a loopback node,
    /// 1 s otherwise).
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").poll_interval(std::time::Duration::from_millis(200));
    /// # let _ = b;
    /// ```
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = Some(every.max(Duration::from_millis(1)));
        self
    }

    /// Accepts a plain `http://` RPC URL to a non-loopback host (a node on a
    /// private network). Off by default.
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://10.0.0.5:8545").allow_insecure_http(true);
    /// # let _ = b;
    /// ```
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// How many blocks back an earlier settlement of a payment is searched
    /// for (default [`DEFAULT_LOG_LOOKBACK_BLOCKS`]), and the block range of
    /// each `eth_getLogs` (default [`DEFAULT_LOG_CHUNK_BLOCKS`]).
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").log_lookback_blocks(50_000, 2_000);
    /// # let _ = b;
    /// ```
    pub fn log_lookback_blocks(mut self, lookback: u64, chunk: u64) -> Self {
        self.log_lookback_blocks = lookback;
        self.log_chunk_blocks = chunk.max(1);
        self
    }

    /// The gas limit sent, as a percentage of `eth_estimateGas` (default 120).
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").gas_headroom_percent(150);
    /// # let _ = b;
    /// ```
    pub fn gas_headroom_percent(mut self, percent: u64) -> Self {
        self.gas_headroom_percent = percent.max(100);
        self
    }

    /// Whether settling an already settled payment answers success with the
    /// original transaction (default `true`; see the module docs). When
    /// off, it answers `invalid_exact_evm_nonce_already_used`.
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").idempotent_settle(false);
    /// # let _ = b;
    /// ```
    pub fn idempotent_settle(mut self, on: bool) -> Self {
        self.idempotent_settle = on;
        self
    }

    /// The clock the time checks use (default: the system clock).
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// use pay402_core::time::UnixTime;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").clock(|| UnixTime(1_740_672_100));
    /// # let _ = b;
    /// ```
    pub fn clock(mut self, clock: impl Fn() -> UnixTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Connects, checks `eth_chainId` against the network, and returns the
    /// facilitator.
    ///
    /// # Errors
    ///
    /// See [`LocalFacilitatorError`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pay402_backends::x402::LocalFacilitatorError> {
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let f = LocalFacilitator::builder("http://127.0.0.1:8545").signer([7u8; 32]).build().await?;
    /// assert_eq!(f.network(), "eip155:31337");
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<LocalFacilitator, LocalFacilitatorError> {
        if let Some(e) = self.key_error {
            return Err(e.into());
        }
        if self.keys.is_empty() {
            return Err(LocalFacilitatorError::NoSigner);
        }
        let provider = match self.source {
            Source::Url(url) => {
                let transport =
                    RpcTransport::with_options(&url, self.rpc_timeout, self.allow_insecure_http)?;
                let local = transport.is_local();
                ProviderBuilder::new()
                    .disable_recommended_fillers()
                    .connect_client(RpcClient::new(transport, local))
                    .erased()
            }
            Source::Provider(p) => p,
        };
        let local = provider.client().is_local();
        let chain_id = match tokio::time::timeout(self.rpc_timeout, provider.get_chain_id()).await {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => {
                return Err(LocalFacilitatorError::Rpc(format!(
                    "eth_chainId: {}",
                    super::chain::classify(e).message()
                )));
            }
            Err(_) => {
                return Err(LocalFacilitatorError::Rpc(format!(
                    "eth_chainId: no answer within {:?}",
                    self.rpc_timeout
                )));
            }
        };
        if let Some(n) = &self.network {
            let wanted =
                evm_chain_id(n).ok_or_else(|| LocalFacilitatorError::InvalidNetwork(n.clone()))?;
            if wanted != chain_id {
                return Err(LocalFacilitatorError::ChainMismatch {
                    network: n.clone(),
                    actual: chain_id,
                });
            }
        }
        let network = format!("eip155:{chain_id}");
        let slug = caip2_to_slug(&network);
        let poll_interval = self.poll_interval.unwrap_or(if local {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(1)
        });
        let signers = self
            .keys
            .iter()
            .map(|k| SignerSlot::new(k.signer()))
            .collect();
        tracing::info!(%network, signers = self.keys.len(), "local x402 facilitator ready");
        Ok(LocalFacilitator {
            inner: Arc::new(Inner {
                chain: Chain {
                    provider,
                    chain_id,
                    poll_interval,
                    log_lookback_blocks: self.log_lookback_blocks,
                    log_chunk_blocks: self.log_chunk_blocks,
                },
                network,
                slug,
                signers,
                next_signer: AtomicUsize::new(0),
                receipt_timeout: self.receipt_timeout,
                gas_headroom_percent: self.gas_headroom_percent,
                idempotent_settle: self.idempotent_settle,
                clock: self.clock,
                in_flight: Mutex::new(HashMap::new()),
            }),
        })
    }
}
