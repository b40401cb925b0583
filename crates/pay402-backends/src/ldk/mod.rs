//! An embedded Lightning node ([ldk-node] 0.7) implementing [`InvoiceIssuer`]
//! and [`LightningPayer`].
//!
//! [`LdkNode`] runs a complete Lightning node inside the pay402 process: its
//! own keys, on-chain wallet, channels, peer connections and payment store,
//! persisted in [`LdkConfig::storage_dir`]. Chain data comes from a bitcoind
//! RPC endpoint, an Esplora server or an Electrum server
//! ([`ChainSource`]). No external Lightning daemon is needed.
//!
//! | Port method | ldk-node call |
//! |---|---|
//! | [`InvoiceIssuer::create_invoice`] | `Bolt11Payment::receive` (auto-claimed when paid) |
//! | [`InvoiceIssuer::lookup_invoice`] | `Node::payment` (the payment store) |
//! | [`LightningPayer::pay_invoice`] | `Bolt11Payment::send`, then the payment store and event queue until it succeeds, fails or times out |
//!
//! Operator calls: [`LdkNode::new_onchain_address`] (funding),
//! [`LdkNode::sync_wallets`], [`LdkNode::balances`],
//! [`LdkNode::connect`], [`LdkNode::open_channel`], [`LdkNode::channels`],
//! [`LdkNode::payment`] (track a payment, e.g. after
//! [`LightningError::Unknown`]), [`LdkNode::subscribe`] (node events) and
//! [`LdkNode::stop`].
//!
//! ## Runtime and threads
//!
//! Every `LdkNode` owns a small multi-threaded tokio runtime on which
//! ldk-node's background tasks and an event loop run. ldk-node's blocking
//! calls (`start`, `stop`, `sync_wallets`, `connect`, `open_channel`,
//! `event_handled`) are executed on that runtime's blocking pool, so every
//! method here can be called from any thread, including from inside another
//! tokio runtime of any flavor. The synchronous methods block the calling
//! thread until ldk-node answers (bounded by [`LdkConfig::call_timeout`]);
//! in async code prefer calling them through `tokio::task::spawn_blocking`
//! if the call may take a while (`sync_wallets`, `open_channel`).
//!
//! The event loop consumes every ldk-node event (ldk-node stalls if events
//! are not marked handled), wakes payments waiting for their outcome and
//! republishes the events to subscribers ([`LdkNode::subscribe`]).
//!
//! ## Safety properties
//!
//! - Paying is idempotent on payment hash: ldk-node's payment id is the
//!   payment hash, and before sending, the payment store is consulted. A
//!   payment that already succeeded is returned as is; one that is in flight
//!   is waited for; a new attempt is made only if there is none or the last
//!   one definitely failed. Sends are serialised per node, so two concurrent
//!   calls for the same invoice never both send.
//! - A payment still in flight when [`PayRequest::timeout`] elapses is
//!   reported as [`LightningError::Unknown`]; it keeps being tracked by the
//!   node ([`LdkNode::payment`]) and is never retried blindly.
//! - Every preimage is checked: `sha256(preimage) == payment_hash` and not all
//!   zero, else [`LightningError::InvalidResponse`].
//! - [`PayRequest::max_fee`] becomes LDK's `max_total_routing_fee_msat`, the
//!   cap for all paths and retries of the payment.
//! - Invoices for another network than the node's are refused before
//!   anything is sent.
//! - With a bitcoind chain source, [`LdkNode::start`] first calls
//!   `getblockchaininfo` itself, so a wrong address, password or network
//!   fails at once with a clear message (ldk-node alone would start and
//!   retry its chain sync forever).
//!
//! ## Limits
//!
//! - Invoice expiry is not recorded by ldk-node: an unpaid invoice is
//!   reported [`InvoiceState::Canceled`] once expired only if it was created
//!   by this process; after a restart, older unpaid invoices stay `Open`
//!   (LDK refuses payments to them anyway).
//! - Channels are opened unannounced (private); invoices carry route hints
//!   for them. The node does not route payments for others.
//!
//! ## Errors
//!
//! Errors carry `backend: "ldk"` and name the ldk-node call that failed
//! (`call: "Node::start"`, `"Bolt11Payment::send"`, `"Node::open_channel"`,
//! …). A node that is not running, a chain source or peer that cannot be
//! reached, and timeouts are [`LightningError::Unreachable`]; refusals
//! (insufficient funds, invalid input, …) are [`LightningError::Rejected`].
//! For `pay_invoice`, [`LightningError::PaymentFailed`] means nothing was
//! spent (for example `no route`, or not enough outbound liquidity).
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use pay402_backends::ldk::{ChainSource, LdkConfig, LdkNode};
//! use pay402_core::lightning::Network;
//! use pay402_core::money::{Msat, Sat};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = LdkConfig::new(
//!     Network::Regtest,
//!     "/var/lib/pay402/ldk",
//!     ChainSource::BitcoindRpc {
//!         host: "127.0.0.1".into(),
//!         port: 18443,
//!         user: "user".into(),
//!         password: "pass".into(),
//!     },
//! )
//! .listen("0.0.0.0:9735".parse()?)
//! .alias("pay402-merchant");
//! let node = LdkNode::start(config)?;
//! println!("node {} listening on {:?}", node.node_id(), node.listening_addresses());
//! println!("fund me: {}", node.new_onchain_address()?);
//!
//! // Later, once funded: open a channel to a peer.
//! let peer = "02f6725f9c1c40333b67faea92fd211c183050f28df32cac3f9d69685fe9665432".parse()?;
//! node.open_channel(peer, "203.0.113.7:9735".parse()?, Sat(500_000), Msat(0))?;
//!
//! // Use it as the server's invoice issuer (and/or as a client's payer).
//! let issuer: Arc<dyn pay402_core::lightning::InvoiceIssuer> = Arc::new(node.clone());
//! # let _ = issuer;
//! node.stop()?;
//! # Ok(())
//! # }
//! ```
//!
//! [ldk-node]: https://docs.rs/ldk-node/0.7.1

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use ldk_node::config::{AnchorChannelsConfig, Config as NodeConfig};
use ldk_node::lightning::ln::channelmanager::PaymentId;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::lightning::routing::router::RouteParametersConfig;
use ldk_node::lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Description};
use ldk_node::logger::{LogLevel, LogRecord, LogWriter};
use ldk_node::payment::{PaymentDetails, PaymentDirection, PaymentStatus};
use ldk_node::{BuildError, Node, NodeError};
use pay402_core::lightning::{
    CreatedInvoice, InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer,
    Network, PayRequest, Payment, PaymentHash,
};
use pay402_core::money::{Msat, Sat};
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use crate::util::{currency_for, currency_name};

mod config;
mod probe;
mod types;

pub use config::{
    ChainSource, DEFAULT_ANCHOR_RESERVE, DEFAULT_CALL_TIMEOUT, LdkConfig, LdkLog, Seed,
};
use probe::probe_bitcoind;
pub use types::{
    Balances, ChannelId, ChannelInfo, Direction, LdkEvent, PaymentInfo, Status, UserChannelId,
};
use types::{hash_and_preimage, map_event, payment_info};

const BACKEND: &str = "ldk";

const CONFIGURE: &str = "configure";
const BUILD: &str = "Builder::build";
const START: &str = "Node::start";
const STOP: &str = "Node::stop";
const RECEIVE: &str = "Bolt11Payment::receive";
const SEND: &str = "Bolt11Payment::send";
const PAYMENT: &str = "Node::payment";
const SYNC: &str = "Node::sync_wallets";
const NEW_ADDRESS: &str = "OnchainPayment::new_address";
const CONNECT: &str = "Node::connect";
const OPEN_CHANNEL: &str = "Node::open_channel";

/// How many events a slow [`LdkNode::subscribe`]r may fall behind before it
/// misses some.
const EVENT_BUFFER: usize = 256;

/// How often a waiting payment re-reads the payment store even without an
/// event (a safety net; events normally wake it at once).
const PAYMENT_POLL: Duration = Duration::from_millis(250);

/// Failure reasons kept for payments nobody waits for, at most.
const MAX_FAILURE_REASONS: usize = 1024;

/// An embedded Lightning node (ldk-node). Cheap to clone: clones share the
/// node.
///
/// The node runs until [`stop`](Self::stop) is called or the last clone is
/// dropped (which stops it, blocking for up to
/// [`LdkConfig::call_timeout`]). See the [module docs](self) for an example.
#[derive(Clone)]
pub struct LdkNode {
    inner: Arc<Inner>,
}

/// What the user-facing handles share. Dropping it stops the node.
struct Inner {
    shared: Arc<Shared>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    stop_tx: watch::Sender<bool>,
    stopped: AtomicBool,
    call_timeout: Duration,
    chain: String,
}

/// What the node's own tasks share (never the runtime, so a task can never
/// end up dropping the runtime it runs on).
struct Shared {
    node: Arc<Node>,
    network: Network,
    /// Bumped after every event; payments waiting for an outcome watch it.
    generation: watch::Sender<u64>,
    events: broadcast::Sender<LdkEvent>,
    /// LDK's failure reason per failed outbound payment.
    failures: Mutex<HashMap<PaymentHash, String>>,
    /// When each invoice created by this process expires.
    expiries: Mutex<HashMap<PaymentHash, SystemTime>>,
    /// Serialises "look the payment up, then send" so one hash is never sent twice.
    send_lock: Mutex<()>,
}

impl fmt::Debug for LdkNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdkNode")
            .field("node_id", &self.node_id())
            .field("network", &self.inner.shared.network)
            .field("chain", &self.inner.chain)
            .field("stopped", &self.inner.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

crate::util::backend_errors!(BACKEND);

/// Maps an ldk-node error: "cannot reach / not running / timed out" is
/// `Unreachable`, everything else `Rejected`.
fn node_error(call: &'static str, e: &NodeError, context: &str) -> LightningError {
    let detail = if context.is_empty() {
        format!("{e} ({e:?})")
    } else {
        format!("{e} ({e:?}); {context}")
    };
    match e {
        NodeError::NotRunning
        | NodeError::ConnectionFailed
        | NodeError::TxSyncFailed
        | NodeError::TxSyncTimeout
        | NodeError::WalletOperationTimeout
        | NodeError::FeerateEstimationUpdateFailed
        | NodeError::FeerateEstimationUpdateTimeout
        | NodeError::GossipUpdateFailed
        | NodeError::GossipUpdateTimeout => unreachable(call, detail),
        _ => rejected(call, detail),
    }
}

fn build_error(e: &BuildError, storage: &Path, chain: &str) -> LightningError {
    let hint = match e {
        BuildError::StoragePathAccessFailed | BuildError::KVStoreSetupFailed => {
            format!("check that {} is writable", storage.display())
        }
        BuildError::InvalidSeedFile => format!(
            "the seed file in {} is not a 64-byte seed",
            storage.display()
        ),
        BuildError::NetworkMismatch => format!(
            "{} holds a node for another network; use another storage directory",
            storage.display()
        ),
        BuildError::WalletSetupFailed | BuildError::ReadFailed | BuildError::WriteFailed => {
            format!("is the chain source ({chain}) reachable?")
        }
        _ => String::new(),
    };
    let detail = if hint.is_empty() {
        format!("{e} ({e:?})")
    } else {
        format!("{e} ({e:?}); {hint}")
    };
    unreachable(BUILD, detail)
}

/// Runs `f` on the node's blocking pool and waits (blocking this thread) at
/// most `timeout` for it. Works from any thread, inside or outside a tokio
/// runtime: ldk-node's own `block_on` then runs on a thread that may block.
fn run_blocking<R, F>(
    handle: &tokio::runtime::Handle,
    call: &'static str,
    timeout: Duration,
    f: F,
) -> Result<R, LightningError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = sync_channel(1);
    handle.spawn_blocking(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => Ok(r),
        Err(RecvTimeoutError::Timeout) => Err(unreachable(
            call,
            format!("no answer within {} ms", timeout.as_millis()),
        )),
        Err(RecvTimeoutError::Disconnected) => Err(unreachable(
            call,
            "the call panicked or the node's runtime is shut down",
        )),
    }
}

/// The async twin of [`run_blocking`]: awaitable from any runtime (the
/// timer runs on the node's runtime).
async fn run_blocking_async<R, F>(
    handle: &tokio::runtime::Handle,
    call: &'static str,
    timeout: Duration,
    f: F,
) -> Result<R, LightningError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let task = handle
        .spawn(async move { tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await });
    match task.await {
        Ok(Ok(Ok(r))) => Ok(r),
        Ok(Err(_elapsed)) => Err(unreachable(
            call,
            format!("no answer within {} ms", timeout.as_millis()),
        )),
        Ok(Ok(Err(_))) | Err(_) => Err(unreachable(
            call,
            "the call panicked or the node's runtime is shut down",
        )),
    }
}

/// Forwards ldk-node's log records to `tracing`.
struct TracingLog;

impl LogWriter for TracingLog {
    fn log<'a>(&self, record: LogRecord<'a>) {
        let module = record.module_path;
        let line = record.line;
        match record.level {
            LogLevel::Gossip | LogLevel::Trace => {
                tracing::trace!(target: "ldk_node", module, line, "{}", record.args)
            }
            LogLevel::Debug => tracing::debug!(target: "ldk_node", module, line, "{}", record.args),
            LogLevel::Info => tracing::info!(target: "ldk_node", module, line, "{}", record.args),
            LogLevel::Warn => tracing::warn!(target: "ldk_node", module, line, "{}", record.args),
            LogLevel::Error => tracing::error!(target: "ldk_node", module, line, "{}", record.args),
        }
    }
}

fn to_ldk_addr(addr: SocketAddr) -> SocketAddress {
    SocketAddress::from(addr)
}

fn from_ldk_addr(addr: &SocketAddress) -> Option<SocketAddr> {
    match addr {
        SocketAddress::TcpIpV4 { addr, port } => Some(SocketAddr::from((*addr, *port))),
        SocketAddress::TcpIpV6 { addr, port } => Some(SocketAddr::from((*addr, *port))),
        _ => None,
    }
}

/// Resolves port 0 to a free port (bind, read, release; ldk-node binds it
/// again right after).
fn resolve_listen(addr: SocketAddr) -> Result<SocketAddr, LightningError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let listener = TcpListener::bind(addr)
        .map_err(|e| unreachable(CONFIGURE, format!("cannot bind {addr}: {e}")))?;
    listener
        .local_addr()
        .map_err(|e| unreachable(CONFIGURE, format!("cannot read the bound address: {e}")))
}

impl Shared {
    fn record(&self, hash: &PaymentHash) -> Option<PaymentDetails> {
        self.node.payment(&PaymentId(hash.0))
    }

    /// Handles events until told to stop.
    async fn event_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let event = tokio::select! {
                biased;
                _ = stop.changed() => break,
                ev = self.node.next_event_async() => ev,
            };
            let mapped = map_event(&event);
            tracing::debug!(event = ?mapped, "ldk-node event");
            if let LdkEvent::PaymentFailed {
                payment_hash: Some(hash),
                reason,
            } = &mapped
            {
                let mut failures = lock(&self.failures);
                if failures.len() >= MAX_FAILURE_REASONS {
                    failures.clear();
                }
                failures.insert(*hash, reason.clone());
            }
            // `event_handled` blocks in place (allowed on this multi-thread runtime).
            if let Err(e) = self.node.event_handled() {
                tracing::warn!(error = %e, "ldk-node could not mark an event handled; it will be delivered again");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
            let _ = self.events.send(mapped);
        }
        tracing::debug!("ldk-node event loop stopped");
    }

    fn outcome(&self, hash: &PaymentHash, amount: Msat) -> Outcome {
        let Some(d) = self.record(hash) else {
            return Outcome::Pending;
        };
        if d.direction != PaymentDirection::Outbound {
            return Outcome::Failed("the invoice was issued by this node".into());
        }
        match d.status {
            PaymentStatus::Pending => Outcome::Pending,
            PaymentStatus::Failed => {
                let reason = lock(&self.failures)
                    .remove(hash)
                    .unwrap_or_else(|| "failed".into());
                Outcome::Failed(reason)
            }
            PaymentStatus::Succeeded => {
                let preimage = match hash_and_preimage(&d.kind) {
                    Some((_, Some(p))) => p,
                    _ => {
                        return Outcome::Invalid(
                            "payment succeeded but the store has no preimage".into(),
                        );
                    }
                };
                if preimage.is_all_zero() {
                    return Outcome::Invalid("payment succeeded with an all-zero preimage".into());
                }
                if !preimage.matches(hash) {
                    return Outcome::Invalid(
                        "the preimage does not hash to the payment hash".into(),
                    );
                }
                Outcome::Succeeded(Payment {
                    payment_hash: *hash,
                    preimage,
                    amount: d.amount_msat.map_or(amount, Msat),
                    fee: Msat(d.fee_paid_msat.unwrap_or(0)),
                })
            }
        }
    }

    /// Waits until the payment resolves or `deadline` passes.
    async fn wait_outcome(
        &self,
        hash: PaymentHash,
        amount: Msat,
        deadline: Instant,
    ) -> Result<Payment, LightningError> {
        let mut generation = self.generation.subscribe();
        loop {
            generation.borrow_and_update();
            match self.outcome(&hash, amount) {
                Outcome::Succeeded(p) => return Ok(p),
                Outcome::Failed(reason) => return Err(LightningError::PaymentFailed { reason }),
                Outcome::Invalid(why) => return Err(invalid(PAYMENT, why)),
                Outcome::Pending => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LightningError::Unknown { payment_hash: hash });
            }
            let wait = (deadline - now).min(PAYMENT_POLL);
            if let Ok(Err(_)) = tokio::time::timeout(wait, generation.changed()).await {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Looks the payment up and sends it if there is no live attempt. Runs on
    /// a blocking thread.
    fn send_once(
        &self,
        invoice: &Bolt11Invoice,
        hash: PaymentHash,
        max_fee: Msat,
    ) -> Result<(), LightningError> {
        let _guard = lock(&self.send_lock);
        if let Some(d) = self.record(&hash) {
            if d.direction != PaymentDirection::Outbound {
                return Err(LightningError::PaymentFailed {
                    reason: "the invoice was issued by this node".into(),
                });
            }
            match d.status {
                PaymentStatus::Succeeded | PaymentStatus::Pending => {
                    tracing::info!(status = ?d.status, "ldk already has a payment for this hash; not sending again");
                    return Ok(());
                }
                PaymentStatus::Failed => {
                    tracing::info!("the last attempt for this hash failed; sending again");
                    lock(&self.failures).remove(&hash);
                }
            }
        }
        let params = RouteParametersConfig {
            max_total_routing_fee_msat: Some(max_fee.0),
            ..RouteParametersConfig::default()
        };
        match self.node.bolt11_payment().send(invoice, Some(params)) {
            Ok(_) => Ok(()),
            Err(NodeError::DuplicatePayment) => {
                // LDK still tracks an attempt for this payment id: wait for it.
                tracing::info!("ldk reports a duplicate payment; waiting for the earlier attempt");
                Ok(())
            }
            Err(NodeError::PaymentSendingFailed) => Err(LightningError::PaymentFailed {
                reason: self.explain_send_failure(invoice),
            }),
            Err(NodeError::InvalidInvoice | NodeError::InvalidAmount) => {
                Err(LightningError::PaymentFailed {
                    reason: "invalid invoice".into(),
                })
            }
            Err(e) => Err(node_error(SEND, &e, "")),
        }
    }

    /// ldk-node reports every synchronous failure as `PaymentSendingFailed`;
    /// say what most likely happened.
    fn explain_send_failure(&self, invoice: &Bolt11Invoice) -> String {
        let amount = invoice.amount_milli_satoshis().unwrap_or(0);
        let channels = self.node.list_channels();
        let usable: Vec<_> = channels.iter().filter(|c| c.is_usable).collect();
        if usable.is_empty() {
            return "no route: no usable channel".into();
        }
        let sendable: u64 = usable.iter().map(|c| c.outbound_capacity_msat).sum();
        if amount > sendable {
            return format!(
                "insufficient outbound liquidity: {amount} msat requested, {sendable} msat sendable"
            );
        }
        if invoice.is_expired() {
            return "invoice expired".into();
        }
        "no route".into()
    }
}

enum Outcome {
    Pending,
    Succeeded(Payment),
    Failed(String),
    Invalid(String),
}

impl LdkNode {
    /// Builds and starts a node: opens (or creates) the state in
    /// [`LdkConfig::storage_dir`], connects to the chain source, starts
    /// listening, and starts the event loop.
    ///
    /// With a bitcoind chain source, the endpoint is checked first
    /// (`getblockchaininfo`: reachable, credentials accepted, same network).
    /// Blocks the calling thread for the duration (about 0.1-0.5 s on
    /// regtest), at most [`LdkConfig::call_timeout`] per step; callable from
    /// any thread, also inside an async runtime.
    ///
    /// Errors: [`LightningError::Unreachable`] with `call: "configure"`
    /// (invalid configuration), `"Builder::build"` (storage, seed or wallet
    /// setup) or `"Node::start"` (chain source unusable, cannot listen).
    ///
    /// ```no_run
    /// use pay402_backends::ldk::{ChainSource, LdkConfig, LdkNode};
    /// use pay402_core::lightning::Network;
    /// let node = LdkNode::start(LdkConfig::new(
    ///     Network::Signet,
    ///     "/var/lib/pay402/ldk",
    ///     ChainSource::Esplora { url: "https://mutinynet.com/api".into() },
    /// ))?;
    /// # Ok::<(), pay402_core::lightning::LightningError>(())
    /// ```
    pub fn start(config: LdkConfig) -> Result<LdkNode, LightningError> {
        let storage = config
            .storage_dir
            .to_str()
            .ok_or_else(|| {
                unreachable(
                    CONFIGURE,
                    format!(
                        "storage directory {} is not valid UTF-8",
                        config.storage_dir.display()
                    ),
                )
            })?
            .to_owned();
        if config.call_timeout.is_zero() {
            return Err(unreachable(CONFIGURE, "call_timeout must be positive"));
        }
        if let Some(alias) = &config.alias
            && alias.len() > 32
        {
            return Err(unreachable(
                CONFIGURE,
                format!("alias {alias:?} is longer than 32 bytes"),
            ));
        }
        let listen = config.listen.map(resolve_listen).transpose()?;
        let chain = config.chain.describe();
        if let ChainSource::BitcoindRpc {
            host,
            port,
            user,
            password,
        } = &config.chain
        {
            let timeout = config.call_timeout.min(Duration::from_secs(10));
            probe_bitcoind(host, *port, user, password, config.network, timeout)
                .map_err(|why| unreachable(START, format!("chain source unusable: {why}")))?;
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(64)
            .thread_name("ldk-node")
            .enable_all()
            .build()
            .map_err(|e| unreachable(CONFIGURE, format!("cannot start a tokio runtime: {e}")))?;
        let handle = runtime.handle().clone();
        // From here on, the runtime must be shut down without blocking if we
        // return early (dropping it inside an async context would panic).
        let runtime = RuntimeGuard(Some(runtime));

        let build_handle = handle.clone();
        let cfg = config.clone();
        let storage_path = config.storage_dir.clone();
        let chain_for_err = chain.clone();
        let node = run_blocking(&handle, BUILD, config.call_timeout, move || {
            let mut node_config = NodeConfig {
                storage_dir_path: storage.clone(),
                network: cfg.network,
                ..NodeConfig::default()
            };
            node_config.anchor_channels_config = Some(AnchorChannelsConfig {
                trusted_peers_no_reserve: cfg.anchor_reserve_trusted_peers.clone(),
                per_channel_reserve_sats: cfg.anchor_reserve.0,
            });
            let mut builder = ldk_node::Builder::from_config(node_config);
            builder.set_runtime(build_handle);
            builder.set_storage_dir_path(storage);
            builder.set_network(cfg.network);
            match &cfg.chain {
                ChainSource::BitcoindRpc {
                    host,
                    port,
                    user,
                    password,
                } => {
                    builder.set_chain_source_bitcoind_rpc(
                        host.clone(),
                        *port,
                        user.clone(),
                        password.clone(),
                    );
                }
                ChainSource::Esplora { url } => {
                    builder.set_chain_source_esplora(url.clone(), None);
                }
                ChainSource::Electrum { url } => {
                    builder.set_chain_source_electrum(url.clone(), None);
                }
            }
            if let Some(addr) = listen {
                builder
                    .set_listening_addresses(vec![to_ldk_addr(addr)])
                    .map_err(|e| build_error(&e, &storage_path, &chain_for_err))?;
            }
            if let Some(alias) = &cfg.alias {
                builder
                    .set_node_alias(alias.clone())
                    .map_err(|e| build_error(&e, &storage_path, &chain_for_err))?;
            }
            if let Some(seed) = &cfg.seed {
                builder.set_entropy_seed_bytes(*seed.as_bytes());
            }
            match &cfg.log {
                LdkLog::Tracing => {
                    builder.set_custom_logger(Arc::new(TracingLog));
                }
                LdkLog::File(path) => {
                    builder.set_filesystem_logger(
                        path.as_ref().map(|p| p.to_string_lossy().into_owned()),
                        None,
                    );
                }
            }
            builder
                .build()
                .map_err(|e| build_error(&e, &storage_path, &chain_for_err))
        })??;
        let node = Arc::new(node);

        let starting = Arc::clone(&node);
        let chain_hint =
            format!("is the chain source ({chain}) reachable and on the right network?");
        run_blocking(&handle, START, config.call_timeout, move || {
            starting.start()
        })?
        .map_err(|e| {
            let context = match e {
                NodeError::InvalidSocketAddress | NodeError::ConnectionFailed => {
                    format!("cannot listen on {listen:?}")
                }
                _ => chain_hint,
            };
            node_error(START, &e, &context)
        })?;

        let (generation, _) = watch::channel(0u64);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            node,
            network: config.network,
            generation,
            events,
            failures: Mutex::new(HashMap::new()),
            expiries: Mutex::new(HashMap::new()),
            send_lock: Mutex::new(()),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        handle.spawn(Arc::clone(&shared).event_loop(stop_rx));

        let node = LdkNode {
            inner: Arc::new(Inner {
                shared,
                runtime: Mutex::new(runtime.take()),
                handle,
                stop_tx,
                stopped: AtomicBool::new(false),
                call_timeout: config.call_timeout,
                chain,
            }),
        };
        tracing::info!(node_id = %node.node_id(), network = %config.network, chain = %node.inner.chain, listen = ?node.listening_addresses(), "ldk node started");
        Ok(node)
    }

    fn node(&self) -> &Node {
        &self.inner.shared.node
    }

    fn blocking<R, F>(&self, call: &'static str, f: F) -> Result<R, LightningError>
    where
        F: FnOnce(&Node) -> R + Send + 'static,
        R: Send + 'static,
    {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(unreachable(call, "the node is stopped"));
        }
        let shared = Arc::clone(&self.inner.shared);
        run_blocking(
            &self.inner.handle,
            call,
            self.inner.call_timeout,
            move || f(&shared.node),
        )
    }

    /// The node's public key.
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode) {
    /// println!("{}", node.node_id());
    /// # }
    /// ```
    pub fn node_id(&self) -> PublicKey {
        self.node().node_id()
    }

    /// The addresses the node accepts peer connections on (empty if it does
    /// not listen).
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode) {
    /// let addr = node.listening_addresses()[0];
    /// println!("{}@{addr}", node.node_id());
    /// # }
    /// ```
    pub fn listening_addresses(&self) -> Vec<SocketAddr> {
        self.node()
            .listening_addresses()
            .unwrap_or_default()
            .iter()
            .filter_map(from_ldk_addr)
            .collect()
    }

    /// The network the node runs on.
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode) {
    /// assert_eq!(node.network(), pay402_core::lightning::Network::Regtest);
    /// # }
    /// ```
    pub fn network(&self) -> Network {
        self.inner.shared.network
    }

    /// A fresh address of the on-chain wallet, to fund the node (channel
    /// funding and the anchor reserve come from this wallet).
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode) -> Result<(), pay402_core::lightning::LightningError> {
    /// println!("send coins to {}", node.new_onchain_address()?);
    /// # Ok(()) }
    /// ```
    pub fn new_onchain_address(&self) -> Result<String, LightningError> {
        self.node()
            .onchain_payment()
            .new_address()
            .map(|a| a.to_string())
            .map_err(|e| node_error(NEW_ADDRESS, &e, ""))
    }

    /// Syncs the on-chain wallet and the Lightning state with the chain source
    /// now (the node also does so in the background, every few seconds with
    /// bitcoind). Blocks until done, at most [`LdkConfig::call_timeout`].
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode) -> Result<(), pay402_core::lightning::LightningError> {
    /// node.sync_wallets()?;
    /// println!("{:?}", node.balances());
    /// # Ok(()) }
    /// ```
    pub fn sync_wallets(&self) -> Result<(), LightningError> {
        let chain = self.inner.chain.clone();
        self.blocking(SYNC, |n| n.sync_wallets())?
            .map_err(|e| node_error(SYNC, &e, &format!("chain source: {chain}")))
    }

    /// The node's balances.
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode) {
    /// let b = node.balances();
    /// assert!(b.onchain_spendable <= b.onchain_total);
    /// # }
    /// ```
    pub fn balances(&self) -> Balances {
        let b = self.node().list_balances();
        let channels = self.node().list_channels();
        Balances {
            onchain_total: Sat(b.total_onchain_balance_sats),
            onchain_spendable: Sat(b.spendable_onchain_balance_sats),
            anchor_reserve: Sat(b.total_anchor_channels_reserve_sats),
            lightning_claimable: Sat(b.total_lightning_balance_sats),
            lightning_outbound: Msat(channels.iter().map(|c| c.outbound_capacity_msat).sum()),
            lightning_inbound: Msat(channels.iter().map(|c| c.inbound_capacity_msat).sum()),
        }
    }

    /// Connects to a peer (and keeps reconnecting to it after restarts).
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode, peer: bitcoin::secp256k1::PublicKey) -> Result<(), pay402_core::lightning::LightningError> {
    /// node.connect(peer, "127.0.0.1:9735".parse().unwrap())?;
    /// # Ok(()) }
    /// ```
    pub fn connect(&self, peer: PublicKey, addr: SocketAddr) -> Result<(), LightningError> {
        self.blocking(CONNECT, move |n| n.connect(peer, to_ldk_addr(addr), true))?
            .map_err(|e| node_error(CONNECT, &e, &format!("peer {peer}@{addr}")))
    }

    /// Opens an unannounced channel of `amount` to `peer` (connecting to it
    /// first), pushing `push` to the peer's side. Returns as soon as the
    /// peer accepted to negotiate; the channel is usable once its funding
    /// transaction has enough confirmations (watch [`channels`](Self::channels)
    /// or [`LdkEvent::ChannelReady`]).
    ///
    /// The on-chain wallet must hold `amount` plus the anchor reserve
    /// ([`LdkConfig::anchor_reserve`]) plus fees.
    ///
    /// ```no_run
    /// # use pay402_core::money::{Msat, Sat};
    /// # fn f(node: pay402_backends::ldk::LdkNode, peer: bitcoin::secp256k1::PublicKey) -> Result<(), pay402_core::lightning::LightningError> {
    /// let id = node.open_channel(peer, "127.0.0.1:9735".parse().unwrap(), Sat(500_000), Msat(0))?;
    /// println!("opening channel {id}");
    /// # Ok(()) }
    /// ```
    pub fn open_channel(
        &self,
        peer: PublicKey,
        addr: SocketAddr,
        amount: Sat,
        push: Msat,
    ) -> Result<UserChannelId, LightningError> {
        let push_msat = (push.0 > 0).then_some(push.0);
        self.blocking(OPEN_CHANNEL, move |n| {
            n.open_channel(peer, to_ldk_addr(addr), amount.0, push_msat, None)
        })?
        .map(|id| UserChannelId(id.0))
        .map_err(|e| {
            let context = match e {
                NodeError::InsufficientFunds => format!(
                    "the on-chain wallet needs {amount} plus the anchor reserve plus fees, spendable (confirmed)"
                ),
                _ => format!("peer {peer}@{addr}"),
            };
            node_error(OPEN_CHANNEL, &e, &context)
        })
    }

    /// The node's channels.
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode) {
    /// let ready = node.channels().iter().any(|c| c.is_usable);
    /// # }
    /// ```
    pub fn channels(&self) -> Vec<ChannelInfo> {
        self.node()
            .list_channels()
            .into_iter()
            .map(|c| ChannelInfo {
                channel_id: ChannelId(c.channel_id.0),
                user_channel_id: UserChannelId(c.user_channel_id.0),
                counterparty: c.counterparty_node_id,
                capacity: Sat(c.channel_value_sats),
                outbound: Msat(c.outbound_capacity_msat),
                inbound: Msat(c.inbound_capacity_msat),
                next_outbound_htlc_limit: Msat(c.next_outbound_htlc_limit_msat),
                is_outbound: c.is_outbound,
                is_ready: c.is_channel_ready,
                is_usable: c.is_usable,
                confirmations: c.confirmations,
                confirmations_required: c.confirmations_required,
                funding_txid: c.funding_txo.map(|o| o.txid),
            })
            .collect()
    }

    /// What the payment store knows about a payment (inbound or outbound),
    /// for example to track a payment reported as [`LightningError::Unknown`].
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode, hash: pay402_core::lightning::PaymentHash) {
    /// use pay402_backends::ldk::Status;
    /// match node.payment(&hash).map(|p| p.status) {
    ///     Some(Status::Succeeded) => println!("paid"),
    ///     Some(Status::Pending) => println!("in flight"),
    ///     Some(Status::Failed) | None => println!("not paid"),
    /// }
    /// # }
    /// ```
    pub fn payment(&self, hash: &PaymentHash) -> Option<PaymentInfo> {
        self.inner
            .shared
            .record(hash)
            .as_ref()
            .and_then(payment_info)
    }

    /// Subscribes to the node's events (payments, channels). Events that
    /// happen before the call are not delivered; a subscriber that falls
    /// more than 256 events behind misses the oldest ones
    /// (`RecvError::Lagged`).
    ///
    /// ```no_run
    /// # async fn f(node: pay402_backends::ldk::LdkNode) {
    /// use pay402_backends::ldk::LdkEvent;
    /// let mut events = node.subscribe();
    /// while let Ok(ev) = events.recv().await {
    ///     if let LdkEvent::ChannelReady { channel_id, .. } = ev {
    ///         println!("channel {channel_id} is ready");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<LdkEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Stops the node: disconnects peers, stops the background tasks, the
    /// event loop and the node's runtime. The state is persisted as it
    /// changes, so the node can be started again from the same storage
    /// directory. Later calls that need the running node fail with
    /// [`LightningError::Unreachable`] (read-only ones such as
    /// [`balances`](Self::balances) still answer from memory); a payment
    /// still waiting for its outcome ends as [`LightningError::Unknown`].
    /// Stopping twice is a no-op.
    ///
    /// ```no_run
    /// # fn f(node: pay402_backends::ldk::LdkNode) -> Result<(), pay402_core::lightning::LightningError> {
    /// node.stop()?;
    /// # Ok(()) }
    /// ```
    pub fn stop(&self) -> Result<(), LightningError> {
        self.inner.stop()
    }

    async fn create(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(unreachable(RECEIVE, "the node is stopped"));
        }
        if req.amount.0 == 0 {
            return Err(rejected(RECEIVE, "the amount must be positive"));
        }
        let description = Description::new(req.memo.clone())
            .map_err(|e| rejected(RECEIVE, format!("invalid memo: {e}")))?;
        let description = Bolt11InvoiceDescription::Direct(description);
        let mut expiry_secs = req.expiry.as_secs();
        if req.expiry.subsec_nanos() > 0 || expiry_secs == 0 {
            expiry_secs = expiry_secs.saturating_add(1);
        }
        let expiry_secs = u32::try_from(expiry_secs).unwrap_or(u32::MAX);
        let amount = req.amount.0;
        let shared = Arc::clone(&self.inner.shared);
        let invoice = run_blocking_async(
            &self.inner.handle,
            RECEIVE,
            self.inner.call_timeout,
            move || {
                shared
                    .node
                    .bolt11_payment()
                    .receive(amount, &description, expiry_secs)
            },
        )
        .await?
        .map_err(|e| node_error(RECEIVE, &e, ""))?;
        let hash = PaymentHash(invoice.payment_hash().to_byte_array());
        tracing::Span::current().record("payment_hash", tracing::field::display(hash));
        if invoice.amount_milli_satoshis() != Some(amount) {
            return Err(invalid(
                RECEIVE,
                "the invoice amount differs from the request",
            ));
        }
        let expires_at = SystemTime::now() + Duration::from_secs(u64::from(expiry_secs));
        {
            let mut expiries = lock(&self.inner.shared.expiries);
            let now = SystemTime::now();
            if expiries.len() >= 4096 {
                expiries.retain(|_, at| *at > now);
            }
            expiries.insert(hash, expires_at);
        }
        tracing::debug!("ldk invoice created");
        Ok(CreatedInvoice {
            bolt11: invoice.to_string(),
            payment_hash: hash,
        })
    }

    fn lookup(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(unreachable(PAYMENT, "the node is stopped"));
        }
        let Some(d) = self.inner.shared.record(hash) else {
            return Err(LightningError::NotFound);
        };
        if d.direction != PaymentDirection::Inbound {
            return Err(LightningError::NotFound);
        }
        let Some((_, preimage)) = hash_and_preimage(&d.kind) else {
            return Err(LightningError::NotFound);
        };
        Ok(match d.status {
            PaymentStatus::Succeeded => {
                let preimage = preimage
                    .ok_or_else(|| invalid(PAYMENT, "settled invoice without a preimage"))?;
                if preimage.is_all_zero() || !preimage.matches(hash) {
                    return Err(invalid(
                        PAYMENT,
                        "the preimage does not hash to the payment hash",
                    ));
                }
                InvoiceState::Settled {
                    preimage,
                    amount_paid: Msat(d.amount_msat.unwrap_or(0)),
                }
            }
            PaymentStatus::Failed => InvoiceState::Canceled,
            PaymentStatus::Pending => {
                let expired = lock(&self.inner.shared.expiries)
                    .get(hash)
                    .is_some_and(|at| *at <= SystemTime::now());
                if expired {
                    InvoiceState::Canceled
                } else {
                    InvoiceState::Open
                }
            }
        })
    }

    async fn pay(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let started = Instant::now();
        let invoice = Bolt11Invoice::from_str(req.bolt11.trim()).map_err(|e| {
            LightningError::PaymentFailed {
                reason: format!("invalid invoice: {e}"),
            }
        })?;
        let hash = PaymentHash(invoice.payment_hash().to_byte_array());
        tracing::Span::current().record("payment_hash", tracing::field::display(hash));
        let expected = currency_for(self.network());
        if invoice.currency() != expected {
            return Err(LightningError::PaymentFailed {
                reason: format!(
                    "invoice is for {} but the node is on {}",
                    currency_name(invoice.currency()),
                    currency_name(expected)
                ),
            });
        }
        let Some(amount) = invoice.amount_milli_satoshis().map(Msat) else {
            return Err(LightningError::PaymentFailed {
                reason: "amountless invoices are not supported".into(),
            });
        };
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(unreachable(SEND, "the node is stopped"));
        }
        let deadline = started + req.timeout;
        let shared = Arc::clone(&self.inner.shared);
        let max_fee = req.max_fee;
        let send_timeout = self
            .inner
            .call_timeout
            .min(req.timeout.max(Duration::from_secs(1)));
        let sent = run_blocking_async(&self.inner.handle, SEND, send_timeout, move || {
            shared.send_once(&invoice, hash, max_fee)
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(error = %e, "ldk payment not sent");
                return Err(e);
            }
            Err(e) => {
                // The send call itself did not answer: it may have sent.
                tracing::warn!(error = %e, "ldk send did not answer; outcome unknown");
                return Err(LightningError::Unknown { payment_hash: hash });
            }
        }
        let shared = Arc::clone(&self.inner.shared);
        // Wait on the node's runtime (its timer), awaitable from any runtime.
        let waited = self
            .inner
            .handle
            .spawn(async move { shared.wait_outcome(hash, amount, deadline).await })
            .await;
        match waited {
            Ok(Ok(p)) => {
                tracing::info!(
                    amount_msat = p.amount.0,
                    fee_msat = p.fee.0,
                    "ldk payment succeeded"
                );
                Ok(p)
            }
            Ok(Err(e)) => {
                match &e {
                    LightningError::Unknown { .. } => {
                        tracing::warn!(
                            "ldk payment still in flight at the timeout; outcome unknown"
                        )
                    }
                    e => tracing::info!(error = %e, "ldk payment failed"),
                }
                Err(e)
            }
            Err(_) => Err(LightningError::Unknown { payment_hash: hash }),
        }
    }
}

impl Inner {
    fn stop(&self) -> Result<(), LightningError> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _ = self.stop_tx.send(true);
        let node = Arc::clone(&self.shared.node);
        let result = run_blocking(&self.handle, STOP, self.call_timeout, move || node.stop());
        let out = match result {
            Ok(Ok(())) | Ok(Err(NodeError::NotRunning)) => Ok(()),
            Ok(Err(e)) => Err(node_error(STOP, &e, "")),
            Err(e) => Err(e),
        };
        // Payments still waiting on the runtime end as `Unknown`.
        if let Some(rt) = lock(&self.runtime).take() {
            rt.shutdown_background();
        }
        tracing::info!(ok = out.is_ok(), "ldk node stopped");
        out
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping the ldk node on drop failed");
        }
        if let Some(rt) = lock(&self.runtime).take() {
            rt.shutdown_background();
        }
    }
}

/// Shuts a runtime down without blocking when dropped (dropping a runtime
/// normally blocks, which panics inside an async context).
struct RuntimeGuard(Option<tokio::runtime::Runtime>);

impl RuntimeGuard {
    fn take(mut self) -> Option<tokio::runtime::Runtime> {
        self.0.take()
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[async_trait]
impl InvoiceIssuer for LdkNode {
    async fn create_invoice(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        let span = tracing::info_span!(
            "ldk.create_invoice",
            amount_msat = req.amount.0,
            payment_hash = tracing::field::Empty,
        );
        self.create(req).instrument(span).await
    }

    async fn lookup_invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let _span = tracing::debug_span!("ldk.lookup_invoice", payment_hash = %hash).entered();
        self.lookup(hash)
    }

    fn network(&self) -> Network {
        self.inner.shared.network
    }
}

#[async_trait]
impl LightningPayer for LdkNode {
    async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let span = tracing::info_span!(
            "ldk.pay_invoice",
            max_fee_msat = req.max_fee.0,
            payment_hash = tracing::field::Empty,
        );
        self.pay(req).instrument(span).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pay402-ldk-unit-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn node_is_send_and_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<LdkNode>();
    }

    #[test]
    fn config_debug_redacts_secrets() {
        let cfg = LdkConfig::new(
            Network::Regtest,
            "/tmp/x",
            ChainSource::BitcoindRpc {
                host: "127.0.0.1".into(),
                port: 1,
                user: "alice".into(),
                password: "s3cret-pw".into(),
            },
        )
        .seed(Seed::from_bytes([0x5a; 64]));
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cret-pw"), "{dbg}");
        assert!(!dbg.contains("90, 90"), "{dbg}");
        assert!(dbg.contains("alice"));
    }

    #[test]
    fn error_mapping_names_the_call() {
        let e = node_error(SYNC, &NodeError::TxSyncFailed, "chain source: x");
        assert!(matches!(
            e,
            LightningError::Unreachable { backend: "ldk", call: "Node::sync_wallets", ref detail } if detail.contains("chain source: x")
        ));
        let e = node_error(OPEN_CHANNEL, &NodeError::InsufficientFunds, "");
        assert!(matches!(
            e,
            LightningError::Rejected {
                call: "Node::open_channel",
                ..
            }
        ));
    }

    #[test]
    fn address_conversion_round_trips() {
        let a: SocketAddr = "127.0.0.1:9735".parse().unwrap();
        assert_eq!(from_ldk_addr(&to_ldk_addr(a)), Some(a));
        let b: SocketAddr = "[::1]:9735".parse().unwrap();
        assert_eq!(from_ldk_addr(&to_ldk_addr(b)), Some(b));
        let picked = resolve_listen("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(picked.port(), 0);
    }

    #[test]
    fn bad_config_is_refused_before_building() {
        let chain = ChainSource::Esplora {
            url: "http://127.0.0.1:1".into(),
        };
        let dir = tmp_dir("badcfg");
        let long = LdkConfig::new(Network::Regtest, &dir, chain.clone()).alias("x".repeat(33));
        assert!(matches!(
            LdkNode::start(long),
            Err(LightningError::Unreachable {
                call: "configure",
                ..
            })
        ));
        let zero = LdkConfig::new(Network::Regtest, &dir, chain).call_timeout(Duration::ZERO);
        assert!(LdkNode::start(zero).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Starting against a bitcoind that is not there fails at once with a
    /// typed error naming the call and the endpoint (ldk-node alone would
    /// start and retry its chain sync forever), also from inside a
    /// current-thread runtime.
    #[tokio::test(flavor = "current_thread")]
    async fn unreachable_chain_source_fails_start_cleanly() {
        let dir = tmp_dir("nochain");
        let cfg = LdkConfig::new(
            Network::Regtest,
            &dir,
            ChainSource::BitcoindRpc {
                host: "127.0.0.1".into(),
                port: 1,
                user: "u".into(),
                password: "p".into(),
            },
        )
        .call_timeout(Duration::from_secs(30));
        let err = LdkNode::start(cfg).unwrap_err();
        assert!(
            matches!(
                err,
                LightningError::Unreachable {
                    backend: "ldk",
                    call: "Node::start",
                    ref detail,
                } if detail.contains("127.0.0.1:1")
            ),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
