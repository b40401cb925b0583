//! A Bitcoin chain backend for BitRequests setups that never touch the
//! chain: the merchant's ledger (bit-transfer) needs none, yet the server
//! and the wallet are built over a chain. Every call answers
//! [`ChainError::Unreachable`], so a misrouted on-chain call fails loudly.

use async_trait::async_trait;
use pay402_core::chain::{BitcoinChain, ChainError, FeeRate, TxInfo, TxOutInfo};
use pay402_server::bitreq::bitcoin::{OutPoint, Transaction, Txid};

/// The chain of a ledger-only BitRequests setup (see the module docs).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use pay402_core::chain::BitcoinChain;
/// let e = pay402_cli::nochain::NoChain.block_height().await.unwrap_err();
/// assert!(e.to_string().contains("no chain"));
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChain;

fn none(call: &'static str) -> ChainError {
    ChainError::Unreachable {
        backend: "none",
        call,
        detail: "no chain configured: this BitRequests setup pays by bit-transfer only".into(),
    }
}

#[async_trait]
impl BitcoinChain for NoChain {
    async fn broadcast(&self, _tx: &Transaction) -> Result<Txid, ChainError> {
        Err(none("broadcast"))
    }
    async fn get_transaction(&self, _txid: &Txid) -> Result<Option<TxInfo>, ChainError> {
        Err(none("get_transaction"))
    }
    async fn get_tx_out(&self, _outpoint: &OutPoint) -> Result<Option<TxOutInfo>, ChainError> {
        Err(none("get_tx_out"))
    }
    async fn estimate_fee_rate(&self, _target: u16) -> Result<Option<FeeRate>, ChainError> {
        Err(none("estimate_fee_rate"))
    }
    async fn block_height(&self) -> Result<u64, ChainError> {
        Err(none("block_height"))
    }
}
