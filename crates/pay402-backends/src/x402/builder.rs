//! [`LocalFacilitatorBuilder`]: the settings of a [`LocalFacilitator`] and
//! its start-up checks (RPC reachable, `eth_chainId` matches the network).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::network::{caip2_to_slug, evm_chain_id};
use pay402_core::x402::settlements::{MemorySettlementStore, SettlementStore};

use super::chain::{Chain, SignerSlot};
use super::key::FacilitatorKey;
use super::local::{
    DEFAULT_LOG_CHUNK_BLOCKS, DEFAULT_LOG_LOOKBACK_BLOCKS, DEFAULT_RECEIPT_TIMEOUT,
    DEFAULT_RPC_TIMEOUT, Inner, LocalFacilitator,
};
use super::policy::{
    AllowedAsset, DEFAULT_GAS_BUDGET, DEFAULT_GAS_BUDGET_PERIOD, DEFAULT_MAX_FEE_PER_GAS_WEI,
    DEFAULT_MAX_GAS_PER_SETTLEMENT, GasBudget, InFlight, MAX_LOG_QUERIES_PER_LOOKUP, Policy,
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
    /// No asset was allowlisted: a facilitator must know which token
    /// contracts it settles (see [`LocalFacilitatorBuilder::allow_asset`]).
    #[error("a local facilitator needs an asset allowlist (allow_asset)")]
    NoAssetAllowlist,
    /// An allowlisted asset has an empty EIP-712 name or version.
    #[error("allowlisted asset {0} has an empty EIP-712 name or version")]
    InvalidAllowedAsset(Address),
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
            LocalFacilitatorError::NoAssetAllowlist => "facilitator_no_asset_allowlist",
            LocalFacilitatorError::InvalidAllowedAsset(_) => "facilitator_invalid_allowed_asset",
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
/// use alloy::primitives::address;
/// use pay402_backends::x402::LocalFacilitator;
/// let facilitator = LocalFacilitator::builder("https://sepolia.base.org")
///     .signer("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
///     .network("eip155:84532")
///     .allow_asset(address!("036CbD53842c5426634e7929541eC2318f3dCF7e"), "USDC", "2")
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
    settlements: Option<Arc<dyn SettlementStore>>,
    claim_lease: Option<Duration>,
    clock: Clock,
    assets: Vec<AllowedAsset>,
    payees: Option<HashSet<Address>>,
    max_gas: u64,
    max_fee_per_gas: u128,
    gas_budget: (u64, Duration),
}

impl fmt::Debug for LocalFacilitatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalFacilitatorBuilder")
            .field("signers", &self.keys)
            .field("network", &self.network)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("rpc_timeout", &self.rpc_timeout)
            .field("assets", &self.assets)
            .field("payees", &self.payees)
            .field("max_gas", &self.max_gas)
            .field("max_fee_per_gas", &self.max_fee_per_gas)
            .field("gas_budget", &self.gas_budget)
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
            settlements: None,
            claim_lease: None,
            allow_insecure_http: false,
            log_lookback_blocks: DEFAULT_LOG_LOOKBACK_BLOCKS,
            log_chunk_blocks: DEFAULT_LOG_CHUNK_BLOCKS,
            gas_headroom_percent: 120,
            idempotent_settle: true,
            clock: Arc::new(|| UnixTime::from_system(SystemTime::now())),
            assets: Vec::new(),
            payees: None,
            max_gas: DEFAULT_MAX_GAS_PER_SETTLEMENT,
            max_fee_per_gas: DEFAULT_MAX_FEE_PER_GAS_WEI,
            gas_budget: (DEFAULT_GAS_BUDGET, DEFAULT_GAS_BUDGET_PERIOD),
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
    /// each `eth_getLogs` (default [`DEFAULT_LOG_CHUNK_BLOCKS`]). The
    /// lookback is clamped to
    /// [`MAX_LOG_QUERIES_PER_LOOKUP`](super::MAX_LOG_QUERIES_PER_LOOKUP)
    /// chunks, so one lookup makes at most that many `eth_getLogs` requests.
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").log_lookback_blocks(50_000, 2_000);
    /// # let _ = b;
    /// ```
    pub fn log_lookback_blocks(mut self, lookback: u64, chunk: u64) -> Self {
        self.log_chunk_blocks = chunk.max(1);
        self.log_lookback_blocks = lookback.min(
            self.log_chunk_blocks
                .saturating_mul(MAX_LOG_QUERIES_PER_LOOKUP),
        );
        self
    }

    /// The gas limit sent, as a percentage of `eth_estimateGas` (default
    /// 120), never above [`max_gas_per_settlement`](Self::max_gas_per_settlement).
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

    /// Allowlists a token: settlements and verifications of any other
    /// asset are refused (`facilitator_asset_not_allowed`) before any RPC
    /// call, and a payment whose `extra.name`/`extra.version` differ from
    /// this EIP-712 domain is refused too
    /// (`invalid_exact_evm_token_name_mismatch`/`..._version_mismatch`).
    /// **Required**: [`build`](Self::build) fails with
    /// [`LocalFacilitatorError::NoAssetAllowlist`] without at least one.
    ///
    /// ```
    /// use alloy::primitives::address;
    /// use pay402_backends::x402::LocalFacilitator;
    /// // USDC on Base Sepolia.
    /// let b = LocalFacilitator::builder("https://sepolia.base.org")
    ///     .allow_asset(address!("036CbD53842c5426634e7929541eC2318f3dCF7e"), "USDC", "2");
    /// # let _ = b;
    /// ```
    pub fn allow_asset(
        mut self,
        address: Address,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        self.assets.push(AllowedAsset::new(address, name, version));
        self
    }

    /// Allowlists a payee (`payTo`): once one is given, payments to any
    /// other address are refused (`facilitator_payee_not_allowed`) before
    /// any RPC call. Without any, every payee is accepted.
    ///
    /// ```
    /// use alloy::primitives::Address;
    /// use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").allow_payee(Address::repeat_byte(7));
    /// # let _ = b;
    /// ```
    pub fn allow_payee(mut self, payee: Address) -> Self {
        self.payees.get_or_insert_with(HashSet::new).insert(payee);
        self
    }

    /// The gas-limit ceiling of one settlement (default
    /// [`DEFAULT_MAX_GAS_PER_SETTLEMENT`](super::DEFAULT_MAX_GAS_PER_SETTLEMENT)).
    /// Estimation runs capped at it; a settlement that needs more is refused
    /// (`facilitator_gas_limit_exceeded`), never sent.
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").max_gas_per_settlement(150_000);
    /// # let _ = b;
    /// ```
    pub fn max_gas_per_settlement(mut self, gas: u64) -> Self {
        self.max_gas = gas.max(21_000);
        self
    }

    /// The highest fee per gas paid, in wei (default
    /// [`DEFAULT_MAX_FEE_PER_GAS_WEI`](super::DEFAULT_MAX_FEE_PER_GAS_WEI)).
    /// When the node's suggested `maxFeePerGas` (or legacy gas price) is
    /// above it, the settlement is refused (`facilitator_fee_too_high`)
    /// rather than overpaid or held: the payer's authorization is unused, so
    /// the server can retry later.
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").max_fee_per_gas_wei(5_000_000_000);
    /// # let _ = b;
    /// ```
    pub fn max_fee_per_gas_wei(mut self, wei: u128) -> Self {
        self.max_fee_per_gas = wei;
        self
    }

    /// The total gas the facilitator's settlements may use per `period`
    /// (default [`DEFAULT_GAS_BUDGET`](super::DEFAULT_GAS_BUDGET) per
    /// [`DEFAULT_GAS_BUDGET_PERIOD`](super::DEFAULT_GAS_BUDGET_PERIOD)).
    /// Each sent settlement is charged its full gas limit (fixed windows
    /// starting at build time); once spent, settlements are refused
    /// (`facilitator_gas_budget_exhausted`) until the next window.
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// use std::time::Duration;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").gas_budget(5_000_000, Duration::from_secs(600));
    /// # let _ = b;
    /// ```
    pub fn gas_budget(mut self, gas: u64, period: Duration) -> Self {
        self.gas_budget = (gas, period);
        self
    }

    /// Where in-flight settlements and the signers' transaction nonces are
    /// kept (default: this process's memory). Give every facilitator
    /// process settling from the same key one shared store (PostgreSQL:
    /// `pay402_server::x402::settlements::open`), and they never submit one
    /// authorization twice nor reuse a nonce; a restarted process finds
    /// what it left unfinished there ([`LocalFacilitator::reconcile`]).
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// use std::sync::Arc;
    /// use pay402_core::x402::settlements::MemorySettlementStore;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545")
    ///     .settlement_store(Arc::new(MemorySettlementStore::new()));
    /// # let _ = b;
    /// ```
    pub fn settlement_store(mut self, store: Arc<dyn SettlementStore>) -> Self {
        self.settlements = Some(store);
        self
    }

    /// How long a settle's claim on an authorization is its own before
    /// another settle (or a reconcile) may take it over: default the
    /// receipt timeout plus 15 s, and never less than the receipt timeout
    /// plus one second (a live settle is never taken over while it waits
    /// for its receipt).
    ///
    /// ```
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let b = LocalFacilitator::builder("http://127.0.0.1:8545").claim_lease(std::time::Duration::from_secs(90));
    /// # let _ = b;
    /// ```
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.claim_lease = Some(lease);
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

    /// Checks the settings (a signer and an asset allowlist are required),
    /// connects, checks `eth_chainId` against the network, and returns the
    /// facilitator.
    ///
    /// # Errors
    ///
    /// See [`LocalFacilitatorError`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pay402_backends::x402::LocalFacilitatorError> {
    /// # use pay402_backends::x402::LocalFacilitator;
    /// let f = LocalFacilitator::builder("http://127.0.0.1:8545")
    ///     .signer([7u8; 32])
    ///     .allow_asset(alloy::primitives::Address::repeat_byte(1), "USD Coin", "2")
    ///     .build()
    ///     .await?;
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
        if self.assets.is_empty() {
            return Err(LocalFacilitatorError::NoAssetAllowlist);
        }
        if let Some(bad) = self
            .assets
            .iter()
            .find(|a| a.name.is_empty() || a.version.is_empty())
        {
            return Err(LocalFacilitatorError::InvalidAllowedAsset(bad.address));
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
                settlements: self
                    .settlements
                    .unwrap_or_else(|| Arc::new(MemorySettlementStore::new())),
                claim_lease: {
                    let floor = self.receipt_timeout + Duration::from_secs(1);
                    self.claim_lease
                        .unwrap_or(self.receipt_timeout + Duration::from_secs(15))
                        .max(floor)
                },
                policy: Policy {
                    assets: self.assets.into_iter().map(|a| (a.address, a)).collect(),
                    payees: self.payees,
                    max_gas: self.max_gas,
                    max_fee_per_gas: self.max_fee_per_gas,
                    budget: GasBudget::new(self.gas_budget.0, self.gas_budget.1),
                },
                reserved: InFlight::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_lookback_is_clamped_to_a_bounded_number_of_queries() {
        let b = super::super::LocalFacilitator::builder("http://127.0.0.1:1")
            .log_lookback_blocks(1_000_000, 10);
        assert_eq!(b.log_lookback_blocks, 10 * MAX_LOG_QUERIES_PER_LOOKUP);
        let b = super::super::LocalFacilitator::builder("http://127.0.0.1:1")
            .log_lookback_blocks(50, 10);
        assert_eq!((b.log_lookback_blocks, b.log_chunk_blocks), (50, 10));
        let b = super::super::LocalFacilitator::builder("http://127.0.0.1:1");
        assert!(b.log_lookback_blocks <= b.log_chunk_blocks * MAX_LOG_QUERIES_PER_LOOKUP);
    }
}
