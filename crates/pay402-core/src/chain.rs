//! The Bitcoin chain port: broadcast transactions and look up transactions,
//! unspent outputs, fee estimates and the chain height.
//!
//! The trait is a declaration only: `pay402-backends` implements it (e.g.
//! `pay402_backends::bitcoind::BitcoindRpc` over Bitcoin Core JSON-RPC) and
//! the 21 BitRequests on-chain rail calls it. Nothing here performs I/O.
//!
//! Broadcast failures that a server must react to have their own variants:
//! [`ChainError::AlreadyKnown`] (the transaction is already in the mempool or
//! the chain, so broadcasting it again is harmless) and
//! [`ChainError::Conflict`] (an input is missing or already spent: a double
//! spend, or a parent the node has not seen).
//!
//! ```
//! use pay402_core::chain::{BitcoinChain, ChainError};
//! use bitcoin::Transaction;
//!
//! async fn accept(chain: &dyn BitcoinChain, tx: &Transaction) -> Result<bool, ChainError> {
//!     match chain.broadcast(tx).await {
//!         Ok(_) | Err(ChainError::AlreadyKnown { .. }) => Ok(true),
//!         Err(ChainError::Conflict { .. }) => Ok(false),
//!         Err(e) => Err(e),
//!     }
//! }
//! ```

use std::fmt;

use async_trait::async_trait;
use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};

use crate::money::Sat;
use crate::problem::Reason;

/// A fee rate in whole satoshis per virtual byte.
///
/// ```
/// use pay402_core::chain::FeeRate;
/// let r = FeeRate::from_sat_per_kvb(2_500);
/// assert_eq!(r.sat_per_vb(), 3); // rounded up
/// assert_eq!(r.to_string(), "3 sat/vB");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeeRate(pub u64);

impl FeeRate {
    /// The rate in sat/vB.
    ///
    /// ```
    /// assert_eq!(pay402_core::chain::FeeRate(7).sat_per_vb(), 7);
    /// ```
    pub const fn sat_per_vb(self) -> u64 {
        self.0
    }

    /// Converts a rate in sat/kvB (sat per 1000 virtual bytes), rounding up
    /// so that a fee computed from it never falls below the node's estimate.
    ///
    /// ```
    /// use pay402_core::chain::FeeRate;
    /// assert_eq!(FeeRate::from_sat_per_kvb(1_000), FeeRate(1));
    /// assert_eq!(FeeRate::from_sat_per_kvb(1), FeeRate(1));
    /// assert_eq!(FeeRate::from_sat_per_kvb(0), FeeRate(0));
    /// ```
    pub const fn from_sat_per_kvb(sat_per_kvb: u64) -> FeeRate {
        FeeRate(sat_per_kvb.div_ceil(1000))
    }

    /// The fee for a transaction of `vsize` virtual bytes (saturating).
    ///
    /// ```
    /// use pay402_core::chain::FeeRate;
    /// use pay402_core::money::Sat;
    /// assert_eq!(FeeRate(2).fee_for_vsize(141), Sat(282));
    /// ```
    pub const fn fee_for_vsize(self, vsize: u64) -> Sat {
        Sat(self.0.saturating_mul(vsize))
    }
}

impl fmt::Display for FeeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat/vB", self.0)
    }
}

/// A transaction as the node knows it.
///
/// ```
/// use pay402_core::chain::TxInfo;
/// use bitcoin::{absolute::LockTime, transaction::Version, Transaction};
/// let tx = Transaction { version: Version::TWO, lock_time: LockTime::ZERO, input: vec![], output: vec![] };
/// let info = TxInfo { tx, confirmations: 0, block_height: None };
/// assert!(!info.is_confirmed());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxInfo {
    /// The transaction itself.
    pub tx: Transaction,
    /// How many blocks confirm it: 0 while it is in the mempool.
    pub confirmations: u64,
    /// The height of the block that contains it, when confirmed and known.
    pub block_height: Option<u64>,
}

impl TxInfo {
    /// Whether at least one block confirms the transaction.
    ///
    /// ```
    /// use pay402_core::chain::TxInfo;
    /// use bitcoin::{absolute::LockTime, transaction::Version, Transaction};
    /// let tx = Transaction { version: Version::ONE, lock_time: LockTime::ZERO, input: vec![], output: vec![] };
    /// assert!(TxInfo { tx, confirmations: 2, block_height: Some(101) }.is_confirmed());
    /// ```
    pub fn is_confirmed(&self) -> bool {
        self.confirmations > 0
    }
}

/// An unspent transaction output.
///
/// ```
/// use pay402_core::chain::TxOutInfo;
/// use pay402_core::money::Sat;
/// let out = TxOutInfo { value: Sat(5_000), script_pubkey: bitcoin::ScriptBuf::new(), confirmations: 0, coinbase: false };
/// assert_eq!(out.value, Sat(5_000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxOutInfo {
    /// The output's value.
    pub value: Sat,
    /// The output's locking script.
    pub script_pubkey: ScriptBuf,
    /// Confirmations of the transaction that created it (0: mempool).
    pub confirmations: u64,
    /// Whether it is a coinbase output (spendable only after maturity).
    pub coinbase: bool,
}

/// A chain backend call failed.
///
/// ```
/// use pay402_core::chain::ChainError;
/// use pay402_core::problem::Reason;
/// let e = ChainError::Conflict { backend: "bitcoind", code: -25, message: "bad-txns-inputs-missingorspent".into() };
/// assert_eq!(e.reason(), "chain_conflict");
/// assert_eq!(e.status(), 409);
/// let e = ChainError::Unreachable { backend: "bitcoind", call: "getblockcount", detail: "refused".into() };
/// assert_eq!(e.status(), 503);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached (or is misconfigured).
    #[error("{backend} {call}: node unreachable: {detail}")]
    Unreachable {
        /// Which backend (e.g. `bitcoind`).
        backend: &'static str,
        /// Which node call (e.g. `sendrawtransaction`).
        call: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The transaction is already in the mempool or the chain. Broadcasting
    /// it again changed nothing; the earlier broadcast stands.
    #[error("{backend}: transaction already known ({code}): {message}")]
    AlreadyKnown {
        /// Which backend.
        backend: &'static str,
        /// The node's error code (Core: -27, or -26 `txn-already-known`).
        code: i64,
        /// The node's message.
        message: String,
    },
    /// An input is missing or already spent (a double spend, or a parent
    /// the node does not know), or the transaction conflicts with one in
    /// the mempool.
    #[error("{backend}: inputs missing or spent ({code}): {message}")]
    Conflict {
        /// Which backend.
        backend: &'static str,
        /// The node's error code (Core: -25, or -26 `txn-mempool-conflict`).
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The node refused the call for another reason (invalid transaction,
    /// fee too low, non-standard, ...).
    #[error("{backend} {call}: rejected ({code}): {message}")]
    Rejected {
        /// Which backend.
        backend: &'static str,
        /// Which node call.
        call: &'static str,
        /// The node's error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The node answered something that does not parse or is inconsistent.
    #[error("{backend} {call}: invalid response: {detail}")]
    InvalidResponse {
        /// Which backend.
        backend: &'static str,
        /// Which node call.
        call: &'static str,
        /// What was wrong with it.
        detail: String,
    },
}

impl Reason for ChainError {
    fn reason(&self) -> &'static str {
        match self {
            ChainError::Unreachable { .. } => "chain_unreachable",
            ChainError::AlreadyKnown { .. } => "chain_tx_already_known",
            ChainError::Conflict { .. } => "chain_conflict",
            ChainError::Rejected { .. } => "chain_rejected",
            ChainError::InvalidResponse { .. } => "chain_invalid_response",
        }
    }
    fn status(&self) -> u16 {
        match self {
            ChainError::Unreachable { .. } => 503,
            ChainError::AlreadyKnown { .. } | ChainError::Conflict { .. } => 409,
            ChainError::Rejected { .. } => 400,
            ChainError::InvalidResponse { .. } => 502,
        }
    }
}

/// A Bitcoin node (or indexer) as the on-chain rails need it.
///
/// Lookups answer `Ok(None)` when the node does not know the transaction or
/// the output (or the output is spent); errors are reserved for failures.
///
/// ```
/// use pay402_core::chain::{BitcoinChain, ChainError};
/// async fn confirmed(chain: &dyn BitcoinChain, txid: bitcoin::Txid) -> Result<bool, ChainError> {
///     Ok(chain.get_transaction(&txid).await?.is_some_and(|t| t.is_confirmed()))
/// }
/// ```
#[async_trait]
pub trait BitcoinChain: Send + Sync {
    /// Broadcasts a signed transaction; returns its txid.
    ///
    /// A transaction the node already has is [`ChainError::AlreadyKnown`];
    /// one whose inputs are missing or spent is [`ChainError::Conflict`].
    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError>;
    /// Looks a transaction up in the mempool and the chain.
    async fn get_transaction(&self, txid: &Txid) -> Result<Option<TxInfo>, ChainError>;
    /// Looks an unspent output up (mempool included); `None` when it is
    /// spent or does not exist.
    async fn get_tx_out(&self, outpoint: &OutPoint) -> Result<Option<TxOutInfo>, ChainError>;
    /// The node's fee-rate estimate for confirmation within `target_blocks`;
    /// `None` when it has no estimate (e.g. too little history).
    async fn estimate_fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError>;
    /// The height of the node's best block.
    async fn block_height(&self) -> Result<u64, ChainError>;
    /// The unspent outputs paying `address`, for a wallet that has no node
    /// wallet of its own.
    ///
    /// What a backend sees differs: outputs created in the mempool may be
    /// missing, and outputs spent in the mempool may still be listed (Bitcoin
    /// Core's `scantxoutset` looks at the confirmed UTXO set only). Callers
    /// must check each output with [`BitcoinChain::get_tx_out`] before
    /// spending it. The default body answers [`ChainError::Rejected`] (call
    /// `list_unspent`): the backend cannot list outputs by address.
    ///
    /// ```
    /// use pay402_core::chain::{BitcoinChain, ChainError};
    /// use pay402_core::money::Sat;
    /// async fn balance(chain: &dyn BitcoinChain, address: &bitcoin::Address) -> Result<Sat, ChainError> {
    ///     let utxos = chain.list_unspent(address).await?;
    ///     Ok(Sat(utxos.iter().map(|(_, out)| out.value.0).sum()))
    /// }
    /// ```
    async fn list_unspent(
        &self,
        address: &bitcoin::Address,
    ) -> Result<Vec<(OutPoint, TxOutInfo)>, ChainError> {
        Err(ChainError::Rejected {
            backend: "chain",
            call: "list_unspent",
            code: 0,
            message: format!("this chain backend cannot list the unspent outputs of {address}"),
        })
    }
}

#[async_trait]
impl<T: BitcoinChain + ?Sized> BitcoinChain for std::sync::Arc<T> {
    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        (**self).broadcast(tx).await
    }
    async fn get_transaction(&self, txid: &Txid) -> Result<Option<TxInfo>, ChainError> {
        (**self).get_transaction(txid).await
    }
    async fn get_tx_out(&self, outpoint: &OutPoint) -> Result<Option<TxOutInfo>, ChainError> {
        (**self).get_tx_out(outpoint).await
    }
    async fn estimate_fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError> {
        (**self).estimate_fee_rate(target_blocks).await
    }
    async fn block_height(&self) -> Result<u64, ChainError> {
        (**self).block_height().await
    }
    async fn list_unspent(
        &self,
        address: &bitcoin::Address,
    ) -> Result<Vec<(OutPoint, TxOutInfo)>, ChainError> {
        (**self).list_unspent(address).await
    }
}
