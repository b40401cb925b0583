//! An in-process Lightning network simulator.
//!
//! A [`SimNet`] is a set of [`SimNode`]s that pay each other instantly (or
//! after a configured latency) by moving balances inside one mutex-protected
//! state. Nothing is mocked at the protocol level: every node has a real
//! secp256k1 key, invoices are real signed BOLT11 strings that
//! `lightning-invoice` parses and verifies, and a preimage is released only
//! when its invoice is paid. This makes simnet the default backend for
//! examples, tests and local development.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use pay402_backends::simnet::{FeePolicy, SimNet};
//! use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, InvoiceState, LightningPayer, Network, PayRequest};
//! use pay402_core::money::Msat;
//!
//! let net = SimNet::new(Network::Regtest);
//! net.set_fee(FeePolicy { base: Msat(1_000), ppm: 0 });
//! let merchant = net.add_node("merchant", Msat(0));
//! let payer = net.add_node("payer", Msat(10_000_000));
//!
//! let inv = merchant.create_invoice(&InvoiceRequest::new(Msat(100_000), "GET /hello")).await.unwrap();
//! assert!(inv.bolt11.starts_with("lnbcrt"));
//! let paid = payer.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(5_000))).await.unwrap();
//! assert_eq!(paid.fee, Msat(1_000));
//! assert_eq!(payer.balance(), Msat(10_000_000 - 100_000 - 1_000));
//! assert!(merchant.lookup_invoice(&inv.payment_hash).await.unwrap().is_settled());
//! # }
//! ```

#[cfg(feature = "simnet-rest")]
pub mod rest;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey, SignOnly};
use lightning_invoice::{Bolt11Invoice, InvoiceBuilder, PaymentSecret};
use pay402_core::lightning::{
    CreatedInvoice, InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer,
    Network, PayRequest, Payment, PaymentHash, Preimage,
};
use pay402_core::money::Msat;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tracing::Instrument;
use zeroize::Zeroize;

use crate::util::{currency_for, currency_name};

const BACKEND: &str = "simnet";

/// How long after its expiry an unpaid invoice is kept (and looked up as
/// canceled) before simnet forgets it (and looks it up as not found).
/// Settled invoices are kept.
///
/// ```
/// assert_eq!(pay402_backends::simnet::PRUNE_AFTER.as_secs(), 3_600);
/// ```
pub const PRUNE_AFTER: Duration = Duration::from_secs(3_600);

/// How often (in simnet time) invoice creation runs a pruning pass.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The `min_final_cltv_expiry_delta` simnet writes into its invoices.
const MIN_FINAL_CLTV_EXPIRY_DELTA: u64 = 144;

/// The routing fee simnet charges a payer on top of the invoice amount.
///
/// The fee is `base + amount * ppm / 1_000_000` (rounded down). It leaves the
/// payer's balance and goes to the (imaginary) routing nodes, so the payee
/// receives exactly the invoice amount. A payment fails if the fee is larger
/// than the payer's [`PayRequest::max_fee`].
///
/// ```
/// use pay402_backends::simnet::FeePolicy;
/// use pay402_core::money::Msat;
/// let policy = FeePolicy { base: Msat(1_000), ppm: 1_000 };
/// assert_eq!(policy.fee_for(Msat(2_000_000)), Some(Msat(3_000)));
/// assert_eq!(FeePolicy::default().fee_for(Msat(5)), Some(Msat(0)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FeePolicy {
    /// A flat fee per payment.
    pub base: Msat,
    /// A proportional fee in parts per million of the amount.
    pub ppm: u32,
}

impl FeePolicy {
    /// No fees at all (the default).
    ///
    /// ```
    /// use pay402_backends::simnet::FeePolicy;
    /// assert_eq!(FeePolicy::ZERO, FeePolicy::default());
    /// ```
    pub const ZERO: FeePolicy = FeePolicy {
        base: Msat(0),
        ppm: 0,
    };

    /// The fee for paying `amount`, or `None` on overflow.
    ///
    /// ```
    /// use pay402_backends::simnet::FeePolicy;
    /// use pay402_core::money::Msat;
    /// assert_eq!(FeePolicy { base: Msat(0), ppm: 10 }.fee_for(Msat(999_999)), Some(Msat(9)));
    /// assert_eq!(FeePolicy { base: Msat(u64::MAX), ppm: 1 }.fee_for(Msat(1_000_000)), None);
    /// ```
    pub fn fee_for(&self, amount: Msat) -> Option<Msat> {
        let proportional = u128::from(amount.0) * u128::from(self.ppm) / 1_000_000;
        let proportional = u64::try_from(proportional).ok()?;
        self.base.checked_add(Msat(proportional))
    }
}

/// Everything simnet knows about one invoice, as seen by its payee.
///
/// Returned by [`SimNode::invoice`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pay402_backends::simnet::SimNet;
/// use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, InvoiceState, Network};
/// use pay402_core::money::Msat;
/// let net = SimNet::new(Network::Regtest);
/// let merchant = net.add_node("merchant", Msat(0));
/// let inv = merchant.create_invoice(&InvoiceRequest::new(Msat(2_000), "tea")).await.unwrap();
/// let info = merchant.invoice(&inv.payment_hash).unwrap();
/// assert_eq!(info.memo, "tea");
/// assert_eq!(info.amount, Msat(2_000));
/// assert_eq!(info.state, InvoiceState::Open);
/// assert_eq!(info.add_index, 1);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimInvoice {
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// The signed BOLT11 string.
    pub bolt11: String,
    /// The description.
    pub memo: String,
    /// The invoice amount.
    pub amount: Msat,
    /// The payment secret (BOLT11 `s` field, LND's `payment_addr`).
    pub payment_secret: [u8; 32],
    /// Creation time as seconds since the Unix epoch (simnet clock).
    pub created_at: Duration,
    /// How long the invoice is payable after `created_at`.
    pub expiry: Duration,
    /// Settlement time as seconds since the Unix epoch (simnet clock), if settled.
    pub settled_at: Option<Duration>,
    /// The node that paid the invoice, if settled.
    pub paid_by: Option<PublicKey>,
    /// A per-network counter starting at 1, like LND's `add_index`.
    pub add_index: u64,
    /// The current state (expired invoices are `Canceled`).
    pub state: InvoiceState,
}

enum RecordState {
    Open,
    Settled { payer: usize, settled_at: Duration },
    Canceled,
}

struct InvoiceRecord {
    payee: usize,
    preimage: Preimage,
    payment_secret: [u8; 32],
    amount: Msat,
    memo: String,
    bolt11: String,
    created_at: Duration,
    expiry: Duration,
    add_index: u64,
    state: RecordState,
}

impl InvoiceRecord {
    fn is_expired(&self, now: Duration) -> bool {
        self.created_at.saturating_add(self.expiry) < now
    }

    fn public_state(&self, now: Duration) -> InvoiceState {
        match self.state {
            RecordState::Settled { .. } => InvoiceState::Settled {
                preimage: self.preimage.clone(),
                amount_paid: self.amount,
            },
            RecordState::Canceled => InvoiceState::Canceled,
            RecordState::Open if self.is_expired(now) => InvoiceState::Canceled,
            RecordState::Open => InvoiceState::Open,
        }
    }
}

struct NodeState {
    node_id: PublicKey,
    secret_key: SecretKey,
    balance: Msat,
    fail_next: usize,
    latency: Duration,
    sent: HashMap<PaymentHash, Payment>,
    invoices_created: u64,
    payments_received: u64,
    payments_sent: u64,
}

struct State {
    rng: StdRng,
    nodes: Vec<NodeState>,
    by_key: HashMap<PublicKey, usize>,
    invoices: HashMap<PaymentHash, InvoiceRecord>,
    fee: FeePolicy,
    clock_offset: Duration,
    next_add_index: u64,
    fees_collected: Msat,
    /// Simnet time of the last pruning pass.
    last_prune: Duration,
}

impl State {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.clock_offset)
    }

    /// Drops unpaid invoices (open or canceled) that expired more than
    /// [`PRUNE_AFTER`] ago; at most one pass per [`PRUNE_EVERY`] of simnet
    /// time, so the cost stays proportional to the invoices created.
    fn prune(&mut self, now: Duration) {
        if now < self.last_prune.saturating_add(PRUNE_EVERY) {
            return;
        }
        self.last_prune = now;
        self.invoices.retain(|_, rec| {
            matches!(rec.state, RecordState::Settled { .. })
                || rec
                    .created_at
                    .saturating_add(rec.expiry)
                    .saturating_add(PRUNE_AFTER)
                    >= now
        });
    }

    fn random32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.rng.fill_bytes(&mut out);
        out
    }
}

struct Shared {
    network: Network,
    secp: Secp256k1<SignOnly>,
    state: Mutex<State>,
}

impl Shared {
    /// Locks the state. The state is only mutated in short sections that do
    /// not panic, so a poisoned lock still holds consistent data.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A simulated Lightning network: a set of nodes that can pay each other.
///
/// Cloning a `SimNet` gives another handle to the same network.
///
/// ```
/// use pay402_backends::simnet::SimNet;
/// use pay402_core::lightning::Network;
/// use pay402_core::money::Msat;
/// let net = SimNet::new(Network::Regtest);
/// let alice = net.add_node("alice", Msat(5_000));
/// assert_eq!(alice.balance(), Msat(5_000));
/// assert_eq!(net.network(), Network::Regtest);
/// ```
#[derive(Clone)]
pub struct SimNet {
    shared: Arc<Shared>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("SimNet")
            .field("network", &self.shared.network)
            .field("nodes", &st.nodes.len())
            .field("invoices", &st.invoices.len())
            .field("fee", &st.fee)
            .finish()
    }
}

impl SimNet {
    /// A new, empty network whose keys, preimages and payment secrets come
    /// from the operating system's random source.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// let net = SimNet::new(Network::Signet);
    /// assert_eq!(net.network(), Network::Signet);
    /// ```
    pub fn new(network: Network) -> SimNet {
        SimNet::with_rng(network, StdRng::from_entropy())
    }

    /// A new regtest network whose randomness is derived from `seed`, so node
    /// keys, preimages and payment secrets are the same on every run.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::money::Msat;
    /// let a = SimNet::with_seed([7; 32]).add_node("n", Msat(0));
    /// let b = SimNet::with_seed([7; 32]).add_node("n", Msat(0));
    /// assert_eq!(a.node_id(), b.node_id());
    /// ```
    pub fn with_seed(seed: [u8; 32]) -> SimNet {
        SimNet::with_network_and_seed(Network::Regtest, seed)
    }

    /// Like [`SimNet::with_seed`], for any network.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// let net = SimNet::with_network_and_seed(Network::Testnet, [1; 32]);
    /// assert_eq!(net.network(), Network::Testnet);
    /// ```
    pub fn with_network_and_seed(network: Network, seed: [u8; 32]) -> SimNet {
        SimNet::with_rng(network, StdRng::from_seed(seed))
    }

    fn with_rng(network: Network, rng: StdRng) -> SimNet {
        SimNet {
            shared: Arc::new(Shared {
                network,
                secp: Secp256k1::signing_only(),
                state: Mutex::new(State {
                    rng,
                    nodes: Vec::new(),
                    by_key: HashMap::new(),
                    invoices: HashMap::new(),
                    fee: FeePolicy::ZERO,
                    clock_offset: Duration::ZERO,
                    next_add_index: 1,
                    fees_collected: Msat::ZERO,
                    last_prune: Duration::ZERO,
                }),
            }),
        }
    }

    /// The network this simnet's invoices are for.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// assert_eq!(SimNet::new(Network::Bitcoin).network(), Network::Bitcoin);
    /// ```
    pub fn network(&self) -> Network {
        self.shared.network
    }

    /// Adds a node with a fresh key and a starting balance.
    ///
    /// Names are labels for logs and need not be unique.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// let net = SimNet::new(Network::Regtest);
    /// let a = net.add_node("a", Msat(1));
    /// let b = net.add_node("b", Msat(2));
    /// assert_ne!(a.node_id(), b.node_id());
    /// assert_eq!(b.name(), "b");
    /// ```
    pub fn add_node(&self, name: impl Into<String>, balance: Msat) -> SimNode {
        let name: Arc<str> = Arc::from(name.into());
        let mut st = self.shared.lock();
        let secret_key = loop {
            let mut bytes = st.random32();
            let key = SecretKey::from_slice(&bytes);
            bytes.zeroize();
            if let Ok(key) = key {
                break key;
            }
        };
        let node_id = PublicKey::from_secret_key(&self.shared.secp, &secret_key);
        let idx = st.nodes.len();
        st.nodes.push(NodeState {
            node_id,
            secret_key,
            balance,
            fail_next: 0,
            latency: Duration::ZERO,
            sent: HashMap::new(),
            invoices_created: 0,
            payments_received: 0,
            payments_sent: 0,
        });
        st.by_key.insert(node_id, idx);
        drop(st);
        tracing::debug!(node = %name, %node_id, balance_msat = balance.0, "simnet node added");
        SimNode {
            shared: Arc::clone(&self.shared),
            idx,
            name,
            node_id,
        }
    }

    /// Sets the routing fee charged to payers from now on.
    ///
    /// ```
    /// use pay402_backends::simnet::{FeePolicy, SimNet};
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// let net = SimNet::new(Network::Regtest);
    /// net.set_fee(FeePolicy { base: Msat(1_000), ppm: 100 });
    /// assert_eq!(net.fee().base, Msat(1_000));
    /// ```
    pub fn set_fee(&self, policy: FeePolicy) {
        self.shared.lock().fee = policy;
    }

    /// The current fee policy.
    ///
    /// ```
    /// use pay402_backends::simnet::{FeePolicy, SimNet};
    /// use pay402_core::lightning::Network;
    /// assert_eq!(SimNet::new(Network::Regtest).fee(), FeePolicy::ZERO);
    /// ```
    pub fn fee(&self) -> FeePolicy {
        self.shared.lock().fee
    }

    /// The total routing fees paid so far by all nodes.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// assert_eq!(SimNet::new(Network::Regtest).fees_collected(), Msat(0));
    /// ```
    pub fn fees_collected(&self) -> Msat {
        self.shared.lock().fees_collected
    }

    /// The simnet clock: the system time plus every [`SimNet::advance_clock`]
    /// so far, as a duration since the Unix epoch.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// assert!(SimNet::new(Network::Regtest).now().as_secs() > 1_600_000_000);
    /// ```
    pub fn now(&self) -> Duration {
        self.shared.lock().now()
    }

    /// How many invoices the network holds (every node's; unpaid ones are
    /// dropped [`PRUNE_AFTER`] their expiry).
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// assert_eq!(SimNet::new(Network::Regtest).invoice_count(), 0);
    /// ```
    pub fn invoice_count(&self) -> usize {
        self.shared.lock().invoices.len()
    }

    /// Moves the simnet clock forward, e.g. to expire invoices in tests.
    ///
    /// Only simnet's own view of time changes: invoices created afterwards are
    /// stamped with the shifted time, and expiry checks use it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// let net = SimNet::new(Network::Regtest);
    /// let before = net.now();
    /// net.advance_clock(Duration::from_secs(3_600));
    /// assert!(net.now() >= before + Duration::from_secs(3_600));
    /// ```
    pub fn advance_clock(&self, by: Duration) {
        let mut st = self.shared.lock();
        st.clock_offset = st.clock_offset.saturating_add(by);
    }
}

/// One node of a [`SimNet`]: it issues invoices
/// ([`InvoiceIssuer`]) and pays them ([`LightningPayer`]).
///
/// Cloning a `SimNode` gives another handle to the same node.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pay402_backends::simnet::SimNet;
/// use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, LightningPayer, Network, PayRequest};
/// use pay402_core::money::Msat;
/// let net = SimNet::new(Network::Regtest);
/// let shop = net.add_node("shop", Msat(0));
/// let wallet = net.add_node("wallet", Msat(50_000));
/// let inv = shop.create_invoice(&InvoiceRequest::new(Msat(20_000), "book")).await.unwrap();
/// let payment = wallet.pay_invoice(&PayRequest::new(inv.bolt11, Msat(0))).await.unwrap();
/// assert_eq!(payment.amount, Msat(20_000));
/// assert_eq!((shop.balance(), wallet.balance()), (Msat(20_000), Msat(30_000)));
/// # }
/// ```
#[derive(Clone)]
pub struct SimNode {
    shared: Arc<Shared>,
    idx: usize,
    name: Arc<str>,
    node_id: PublicKey,
}

impl fmt::Debug for SimNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNode")
            .field("name", &self.name)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn failed(reason: impl Into<String>) -> LightningError {
    LightningError::PaymentFailed {
        reason: reason.into(),
    }
}

fn rejected(call: &'static str, detail: impl Into<String>) -> LightningError {
    LightningError::Rejected {
        backend: BACKEND,
        call,
        detail: detail.into(),
    }
}

impl SimNode {
    /// The node's name.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// assert_eq!(SimNet::new(Network::Regtest).add_node("carol", Msat(0)).name(), "carol");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's public key (the payee key recovered from its invoices).
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// let id = SimNet::new(Network::Regtest).add_node("n", Msat(0)).node_id();
    /// assert_eq!(id.serialize().len(), 33);
    /// ```
    pub fn node_id(&self) -> PublicKey {
        self.node_id
    }

    /// The node's current balance.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// assert_eq!(SimNet::new(Network::Regtest).add_node("n", Msat(42)).balance(), Msat(42));
    /// ```
    pub fn balance(&self) -> Msat {
        self.with_node(|n| n.balance)
    }

    /// Adds funds to the node's balance (saturating), e.g. to top up a test wallet.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// let n = SimNet::new(Network::Regtest).add_node("n", Msat(1));
    /// n.deposit(Msat(2));
    /// assert_eq!(n.balance(), Msat(3));
    /// ```
    pub fn deposit(&self, amount: Msat) {
        self.with_node(|n| n.balance = Msat(n.balance.0.saturating_add(amount.0)));
    }

    /// Makes the next `n` calls to [`LightningPayer::pay_invoice`] on this node
    /// fail with [`LightningError::PaymentFailed`] without moving money.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, LightningError, LightningPayer, Network, PayRequest};
    /// use pay402_core::money::Msat;
    /// let net = SimNet::new(Network::Regtest);
    /// let (shop, wallet) = (net.add_node("shop", Msat(0)), net.add_node("wallet", Msat(5_000)));
    /// let inv = shop.create_invoice(&InvoiceRequest::new(Msat(1_000), "x")).await.unwrap();
    /// wallet.fail_next_payments(1);
    /// let req = PayRequest::new(inv.bolt11, Msat(0));
    /// assert!(matches!(wallet.pay_invoice(&req).await, Err(LightningError::PaymentFailed { .. })));
    /// assert!(wallet.pay_invoice(&req).await.is_ok());
    /// # }
    /// ```
    pub fn fail_next_payments(&self, n: usize) {
        self.with_node(|node| node.fail_next = n);
    }

    /// Makes every [`LightningPayer::pay_invoice`] on this node take `latency`
    /// (simulated with `tokio::time::sleep`).
    ///
    /// If the latency exceeds the request's [`PayRequest::timeout`], the call
    /// gives up after the timeout and returns [`LightningError::Unknown`],
    /// while the payment itself still completes, as a stuck payment would on a
    /// real network. Paying the same invoice again then returns the completed
    /// payment.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// let node = SimNet::new(Network::Regtest).add_node("slow", Msat(0));
    /// node.set_latency(Duration::from_millis(50));
    /// assert_eq!(node.latency(), Duration::from_millis(50));
    /// ```
    pub fn set_latency(&self, latency: Duration) {
        self.with_node(|node| node.latency = latency);
    }

    /// The latency set with [`SimNode::set_latency`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// assert_eq!(SimNet::new(Network::Regtest).add_node("n", Msat(0)).latency(), Duration::ZERO);
    /// ```
    pub fn latency(&self) -> Duration {
        self.with_node(|node| node.latency)
    }

    /// How many of this node's invoices have been paid.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// assert_eq!(SimNet::new(Network::Regtest).add_node("n", Msat(0)).payments_received(), 0);
    /// ```
    pub fn payments_received(&self) -> u64 {
        self.with_node(|node| node.payments_received)
    }

    /// How many distinct invoices this node has paid (idempotent repeats do
    /// not count).
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// assert_eq!(SimNet::new(Network::Regtest).add_node("n", Msat(0)).payments_sent(), 0);
    /// ```
    pub fn payments_sent(&self) -> u64 {
        self.with_node(|node| node.payments_sent)
    }

    /// How many invoices this node has created.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::Network;
    /// use pay402_core::money::Msat;
    /// assert_eq!(SimNet::new(Network::Regtest).add_node("n", Msat(0)).invoices_created(), 0);
    /// ```
    pub fn invoices_created(&self) -> u64 {
        self.with_node(|node| node.invoices_created)
    }

    /// Details of one of this node's invoices, or `None` if this node did not
    /// issue it.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::{Network, PaymentHash};
    /// use pay402_core::money::Msat;
    /// let node = SimNet::new(Network::Regtest).add_node("n", Msat(0));
    /// assert!(node.invoice(&PaymentHash([0; 32])).is_none());
    /// ```
    pub fn invoice(&self, hash: &PaymentHash) -> Option<SimInvoice> {
        let st = self.shared.lock();
        let now = st.now();
        let rec = st.invoices.get(hash).filter(|r| r.payee == self.idx)?;
        Some(SimInvoice {
            payment_hash: *hash,
            bolt11: rec.bolt11.clone(),
            memo: rec.memo.clone(),
            amount: rec.amount,
            payment_secret: rec.payment_secret,
            created_at: rec.created_at,
            expiry: rec.expiry,
            settled_at: match rec.state {
                RecordState::Settled { settled_at, .. } => Some(settled_at),
                _ => None,
            },
            paid_by: match rec.state {
                RecordState::Settled { payer, .. } => st.nodes.get(payer).map(|n| n.node_id),
                _ => None,
            },
            add_index: rec.add_index,
            state: rec.public_state(now),
        })
    }

    /// The outgoing payment this node made for `hash`, if it made one.
    ///
    /// ```
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::{Network, PaymentHash};
    /// use pay402_core::money::Msat;
    /// let node = SimNet::new(Network::Regtest).add_node("n", Msat(0));
    /// assert!(node.payment(&PaymentHash([0; 32])).is_none());
    /// ```
    pub fn payment(&self, hash: &PaymentHash) -> Option<Payment> {
        self.with_node(|node| node.sent.get(hash).cloned())
    }

    /// Cancels one of this node's open invoices so it can no longer be paid.
    ///
    /// Canceling a canceled (or expired) invoice succeeds; canceling a settled
    /// one is [`LightningError::Rejected`]; an unknown hash is
    /// [`LightningError::NotFound`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pay402_backends::simnet::SimNet;
    /// use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, InvoiceState, Network};
    /// use pay402_core::money::Msat;
    /// let node = SimNet::new(Network::Regtest).add_node("shop", Msat(0));
    /// let inv = node.create_invoice(&InvoiceRequest::new(Msat(1_000), "x")).await.unwrap();
    /// node.cancel_invoice(&inv.payment_hash).unwrap();
    /// assert_eq!(node.lookup_invoice(&inv.payment_hash).await.unwrap(), InvoiceState::Canceled);
    /// # }
    /// ```
    pub fn cancel_invoice(&self, hash: &PaymentHash) -> Result<(), LightningError> {
        let mut st = self.shared.lock();
        let rec = st
            .invoices
            .get_mut(hash)
            .filter(|r| r.payee == self.idx)
            .ok_or(LightningError::NotFound)?;
        match rec.state {
            RecordState::Settled { .. } => {
                Err(rejected("cancel_invoice", "invoice is already settled"))
            }
            RecordState::Open | RecordState::Canceled => {
                rec.state = RecordState::Canceled;
                tracing::debug!(node = %self.name, payment_hash = %hash, "simnet invoice canceled");
                Ok(())
            }
        }
    }

    fn with_node<R>(&self, f: impl FnOnce(&mut NodeState) -> R) -> R {
        let mut st = self.shared.lock();
        // `idx` always indexes an existing node: nodes are never removed.
        match st.nodes.get_mut(self.idx) {
            Some(node) => f(node),
            None => unreachable_node(self.idx),
        }
    }

    fn create_invoice_now(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        const CALL: &str = "create_invoice";
        if req.amount == Msat::ZERO {
            return Err(rejected(
                CALL,
                "amount must be positive (simnet does not issue amountless invoices)",
            ));
        }
        if req.expiry < Duration::from_secs(1) {
            return Err(rejected(CALL, "expiry must be at least one second"));
        }
        let (secret_key, preimage, payment_secret, now) = {
            let mut st = self.shared.lock();
            let secret_key = match st.nodes.get(self.idx) {
                Some(node) => node.secret_key,
                None => unreachable_node(self.idx),
            };
            let mut bytes = st.random32();
            let preimage = Preimage::from_bytes(bytes);
            bytes.zeroize();
            let payment_secret = st.random32();
            (secret_key, preimage, payment_secret, st.now())
        };
        let payment_hash = preimage.payment_hash();
        let created_at = Duration::from_secs(now.as_secs());
        let expiry = Duration::from_secs(req.expiry.as_secs());
        let invoice = InvoiceBuilder::new(currency_for(self.shared.network))
            .description(req.memo.clone())
            .payment_hash(sha256::Hash::from_byte_array(payment_hash.0))
            .payment_secret(PaymentSecret(payment_secret))
            .duration_since_epoch(created_at)
            .min_final_cltv_expiry_delta(MIN_FINAL_CLTV_EXPIRY_DELTA)
            .amount_milli_satoshis(req.amount.0)
            .expiry_time(expiry)
            .build_signed(|msg| self.shared.secp.sign_ecdsa_recoverable(msg, &secret_key))
            .map_err(|e| rejected(CALL, format!("cannot build invoice: {e}")))?;
        let bolt11 = invoice.to_string();

        let mut st = self.shared.lock();
        st.prune(now);
        let add_index = st.next_add_index;
        st.next_add_index = add_index.saturating_add(1);
        st.invoices.insert(
            payment_hash,
            InvoiceRecord {
                payee: self.idx,
                preimage,
                payment_secret,
                amount: req.amount,
                memo: req.memo.clone(),
                bolt11: bolt11.clone(),
                created_at,
                expiry,
                add_index,
                state: RecordState::Open,
            },
        );
        if let Some(node) = st.nodes.get_mut(self.idx) {
            node.invoices_created = node.invoices_created.saturating_add(1);
        }
        drop(st);
        tracing::Span::current().record("payment_hash", tracing::field::display(payment_hash));
        tracing::info!(add_index, "simnet invoice created");
        Ok(CreatedInvoice {
            bolt11,
            payment_hash,
        })
    }

    async fn pay(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let (simulate_failure, latency) = self.with_node(|node| {
            let fail = node.fail_next > 0;
            if fail {
                node.fail_next -= 1;
            }
            (fail, node.latency)
        });
        if simulate_failure {
            tracing::info!("simnet payment failed (simulated by fail_next_payments)");
            return Err(failed("simulated failure (fail_next_payments)"));
        }

        let invoice = Bolt11Invoice::from_str(req.bolt11.trim())
            .map_err(|e| failed(format!("invalid invoice: {e}")))?;
        let payment_hash = PaymentHash(invoice.payment_hash().to_byte_array());
        tracing::Span::current().record("payment_hash", tracing::field::display(payment_hash));
        let expected = currency_for(self.shared.network);
        if invoice.currency() != expected {
            return Err(failed(format!(
                "invoice is for {}, but this simnet is {}",
                currency_name(invoice.currency()),
                currency_name(expected)
            )));
        }
        if invoice.amount_milli_satoshis().is_none() {
            return Err(failed("amountless invoices are not supported"));
        }

        let timed_out = latency > req.timeout;
        let wait = latency.min(req.timeout);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let result = self.settle(&invoice, payment_hash, req.max_fee);
        if timed_out {
            tracing::warn!("simnet payment attempt timed out; outcome unknown to the caller");
            return Err(LightningError::Unknown { payment_hash });
        }
        match &result {
            Ok(p) => tracing::info!(
                amount_msat = p.amount.0,
                fee_msat = p.fee.0,
                "simnet payment succeeded"
            ),
            Err(e) => tracing::info!(error = %e, "simnet payment failed"),
        }
        result
    }

    /// The atomic part of a payment: every check and the balance transfer
    /// happen under one lock, with no await in between.
    fn settle(
        &self,
        invoice: &Bolt11Invoice,
        payment_hash: PaymentHash,
        max_fee: Msat,
    ) -> Result<Payment, LightningError> {
        let payee_key = invoice.get_payee_pub_key();
        let mut guard = self.shared.lock();
        let now = guard.now();
        let st = &mut *guard;

        let Some(me) = st.nodes.get(self.idx) else {
            unreachable_node(self.idx)
        };
        // Idempotent on payment hash: a repeat returns the earlier result.
        if let Some(earlier) = me.sent.get(&payment_hash) {
            tracing::debug!("invoice already paid by this node; returning the earlier payment");
            return Ok(earlier.clone());
        }
        let payer_balance = me.balance;

        let Some(&payee) = st.by_key.get(&payee_key) else {
            return Err(failed(format!("no route to payee {payee_key}")));
        };
        if payee == self.idx {
            return Err(failed(
                "cannot pay own invoice (self-payments are not allowed)",
            ));
        }
        let Some(rec) = st.invoices.get_mut(&payment_hash) else {
            return Err(failed(
                "incorrect payment details: payee does not know this invoice",
            ));
        };
        if rec.payee != payee {
            return Err(failed(
                "incorrect payment details: payee does not know this invoice",
            ));
        }
        match rec.state {
            RecordState::Settled { .. } => return Err(failed("invoice already paid")),
            RecordState::Canceled => return Err(failed("invoice canceled")),
            RecordState::Open => {}
        }
        if rec.is_expired(now) || invoice.would_expire(now) {
            return Err(failed("invoice expired"));
        }
        let amount = Msat(invoice.amount_milli_satoshis().unwrap_or_default());
        if amount != rec.amount || invoice.payment_secret().0 != rec.payment_secret {
            return Err(failed(
                "incorrect payment details: amount or payment secret does not match",
            ));
        }
        let fee = st
            .fee
            .fee_for(amount)
            .ok_or_else(|| failed("no route: routing fee overflows"))?;
        if fee > max_fee {
            return Err(failed(format!(
                "no route: routing fee {fee} exceeds max_fee {max_fee}"
            )));
        }
        let total = amount
            .checked_add(fee)
            .ok_or_else(|| failed("insufficient balance: amount plus fee overflows"))?;
        let Some(payer_after) = payer_balance.checked_sub(total) else {
            return Err(failed(format!(
                "insufficient balance: need {total}, have {payer_balance}"
            )));
        };
        let Some(payee_after) = st
            .nodes
            .get(payee)
            .and_then(|n| n.balance.checked_add(amount))
        else {
            return Err(failed("payee balance would overflow"));
        };
        let fees_after = st.fees_collected.checked_add(fee).unwrap_or(Msat(u64::MAX));

        // Every check passed: commit.
        rec.state = RecordState::Settled {
            payer: self.idx,
            settled_at: now,
        };
        let payment = Payment {
            payment_hash,
            preimage: rec.preimage.clone(),
            amount,
            fee,
        };
        st.fees_collected = fees_after;
        if let Some(p) = st.nodes.get_mut(payee) {
            p.balance = payee_after;
            p.payments_received = p.payments_received.saturating_add(1);
        }
        if let Some(me) = st.nodes.get_mut(self.idx) {
            me.balance = payer_after;
            me.payments_sent = me.payments_sent.saturating_add(1);
            me.sent.insert(payment_hash, payment.clone());
        }
        Ok(payment)
    }
}

/// Node indices are handed out by `add_node` and nodes are never removed, so
/// an out-of-range index is a bug in this module.
#[cold]
fn unreachable_node(idx: usize) -> ! {
    unreachable!("simnet node index {idx} out of range")
}

#[async_trait]
impl InvoiceIssuer for SimNode {
    async fn create_invoice(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        let span = tracing::info_span!(
            "simnet.create_invoice",
            node = %self.name,
            amount_msat = req.amount.0,
            payment_hash = tracing::field::Empty,
        );
        span.in_scope(|| self.create_invoice_now(req))
    }

    async fn lookup_invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let st = self.shared.lock();
        let now = st.now();
        let state = st
            .invoices
            .get(hash)
            .filter(|r| r.payee == self.idx)
            .map(|r| r.public_state(now))
            .ok_or(LightningError::NotFound);
        drop(st);
        tracing::debug!(node = %self.name, payment_hash = %hash, found = state.is_ok(), "simnet invoice lookup");
        state
    }

    fn network(&self) -> Network {
        self.shared.network
    }
}

#[async_trait]
impl LightningPayer for SimNode {
    async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let span = tracing::info_span!(
            "simnet.pay_invoice",
            node = %self.name,
            max_fee_msat = req.max_fee.0,
            payment_hash = tracing::field::Empty,
        );
        self.pay(req).instrument(span).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Clone + Send + Sync + 'static>() {}

    #[test]
    fn handles_are_send_sync() {
        assert_send_sync::<SimNode>();
        assert_send_sync::<SimNet>();
    }

    #[tokio::test]
    async fn unpaid_invoices_are_pruned_an_hour_after_expiry_and_paid_ones_kept() {
        let net = SimNet::with_seed([4; 32]);
        let shop = net.add_node("shop", Msat(0));
        let wallet = net.add_node("wallet", Msat(1_000_000));
        let mut req = InvoiceRequest::new(Msat(1_000), "x");
        req.expiry = Duration::from_secs(600);
        let paid = shop.create_invoice(&req).await.unwrap();
        wallet
            .pay_invoice(&PayRequest::new(paid.bolt11, Msat(0)))
            .await
            .unwrap();
        let mut unpaid = Vec::new();
        for _ in 0..50 {
            unpaid.push(shop.create_invoice(&req).await.unwrap().payment_hash);
        }
        assert_eq!(net.invoice_count(), 51);
        // Expired, but within the grace period: still known, as canceled.
        net.advance_clock(Duration::from_secs(600 + 120));
        let _ = shop.create_invoice(&req).await.unwrap();
        assert_eq!(net.invoice_count(), 52);
        assert_eq!(
            shop.lookup_invoice(&unpaid[0]).await.unwrap(),
            InvoiceState::Canceled
        );
        // Past the grace period: forgotten on the next creation.
        net.advance_clock(PRUNE_AFTER);
        let fresh = shop.create_invoice(&req).await.unwrap();
        assert_eq!(
            net.invoice_count(),
            3,
            "the paid one, and the two recent ones"
        );
        assert!(shop.invoice(&unpaid[0]).is_none());
        assert!(shop.invoice(&paid.payment_hash).is_some());
        assert!(shop.invoice(&fresh.payment_hash).is_some());
    }

    #[tokio::test]
    async fn paid_by_tracks_the_payer() {
        let net = SimNet::with_seed([3; 32]);
        let shop = net.add_node("shop", Msat(0));
        let wallet = net.add_node("wallet", Msat(10_000));
        let inv = shop
            .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await
            .unwrap();
        assert_eq!(shop.invoice(&inv.payment_hash).unwrap().paid_by, None);
        wallet
            .pay_invoice(&PayRequest::new(inv.bolt11, Msat(0)))
            .await
            .unwrap();
        let info = shop.invoice(&inv.payment_hash).unwrap();
        assert_eq!(info.paid_by, Some(wallet.node_id()));
        assert!(info.settled_at.is_some());
    }
}
