//! The facilitator's conversations with the chain: read-only calls and
//! simulations, signing and broadcasting, bounded receipt
//! waits, and finding an earlier settlement of a payment from its
//! `AuthorizationUsed` event.

use std::time::Duration;

use alloy::eips::eip2718::Encodable2718;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use alloy::transports::{RpcError, TransportErrorKind};

use super::contract::{IEip3009, Movement};

/// Why a chain call did not return a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The node executed the call and it reverted (a verdict on the call's
    /// arguments).
    Revert(String),
    /// The node could not be asked or its answer is unusable (no verdict).
    Unavailable(String),
    /// The call needs more gas than it was allowed (a verdict: the
    /// facilitator's gas ceiling).
    GasExceeded(String),
}

impl CallError {
    pub(crate) fn message(&self) -> &str {
        match self {
            CallError::Revert(m) | CallError::Unavailable(m) | CallError::GasExceeded(m) => m,
        }
    }
}

/// Sorts an alloy RPC error into a revert (the node answered that execution
/// reverted) or an unavailability (transport, timeout, malformed answer,
/// any other node error).
pub(crate) fn classify(err: RpcError<TransportErrorKind>) -> CallError {
    match &err {
        RpcError::ErrorResp(payload) => {
            let msg = payload.message.to_string();
            if payload.code == 3 || msg.to_ascii_lowercase().contains("revert") {
                CallError::Revert(msg)
            } else {
                CallError::Unavailable(format!("node error {}: {msg}", payload.code))
            }
        }
        _ => CallError::Unavailable(err.to_string()),
    }
}

/// As [`classify`], for a call or estimation made with a gas cap: the
/// node's "out of gas" / "gas required exceeds allowance" answers are
/// [`CallError::GasExceeded`].
pub(crate) fn classify_capped(err: RpcError<TransportErrorKind>) -> CallError {
    if let RpcError::ErrorResp(payload) = &err {
        let msg = payload.message.to_ascii_lowercase();
        if msg.contains("out of gas")
            || msg.contains("outofgas")
            || msg.contains("gas required exceeds")
            || msg.contains("intrinsic gas too low")
        {
            return CallError::GasExceeded(payload.message.to_string());
        }
    }
    classify(err)
}

/// One facilitator account: its key. Its transaction nonces are allocated
/// by the facilitator's [`SettlementStore`](pay402_core::x402::settlements::SettlementStore).
pub(crate) struct SignerSlot {
    pub address: Address,
    signer: PrivateKeySigner,
}

impl SignerSlot {
    pub(crate) fn new(signer: PrivateKeySigner) -> SignerSlot {
        SignerSlot {
            address: signer.address(),
            signer,
        }
    }

    /// Signs `call` to `to` with `nonce`: the transaction hash and its
    /// EIP-2718 encoding, both `0x` hex. No I/O.
    pub(crate) fn sign<C: SolCall>(
        &self,
        chain_id: u64,
        nonce: u64,
        to: Address,
        call: &C,
        gas_limit: u64,
        fees: Fees,
    ) -> Result<(B256, Vec<u8>), String> {
        self.sign_input(
            chain_id,
            nonce,
            to,
            Bytes::from(call.abi_encode()),
            gas_limit,
            fees,
        )
    }

    fn sign_input(
        &self,
        chain_id: u64,
        nonce: u64,
        to: Address,
        input: Bytes,
        gas_limit: u64,
        fees: Fees,
    ) -> Result<(B256, Vec<u8>), String> {
        use alloy::consensus::{TxEip1559, TxEnvelope, TxLegacy};
        use alloy::primitives::TxKind;
        let envelope: TxEnvelope = match fees {
            Fees::Eip1559 { max_fee, priority } => self
                .sign_typed(TxEip1559 {
                    chain_id,
                    nonce,
                    gas_limit,
                    max_fee_per_gas: max_fee,
                    max_priority_fee_per_gas: priority,
                    to: TxKind::Call(to),
                    value: U256::ZERO,
                    access_list: Default::default(),
                    input,
                })?
                .into(),
            Fees::Legacy { gas_price } => self
                .sign_typed(TxLegacy {
                    chain_id: Some(chain_id),
                    nonce,
                    gas_price,
                    gas_limit,
                    to: TxKind::Call(to),
                    value: U256::ZERO,
                    input,
                })?
                .into(),
        };
        Ok((*envelope.tx_hash(), envelope.encoded_2718()))
    }
}

impl SignerSlot {
    /// Signs one typed transaction with the slot's key.
    fn sign_typed<T>(&self, mut tx: T) -> Result<alloy::consensus::Signed<T>, String>
    where
        T: alloy::consensus::SignableTransaction<alloy::primitives::Signature>,
    {
        use alloy::network::TxSignerSync;
        let sig = self
            .signer
            .sign_transaction_sync(&mut tx)
            .map_err(|e| format!("cannot sign the transaction: {e}"))?;
        Ok(tx.into_signed(sig))
    }

    /// Signs a zero-value transfer to itself with `nonce` (21 000 gas): it
    /// fills a nonce no settlement will use. No I/O.
    pub(crate) fn sign_filler(
        &self,
        chain_id: u64,
        nonce: u64,
        fees: Fees,
    ) -> Result<Vec<u8>, String> {
        self.sign_input(chain_id, nonce, self.address, Bytes::new(), 21_000, fees)
            .map(|(_, raw)| raw)
    }
}

/// How broadcasting a signed transaction ended without the node taking it.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The node refused it: nothing was broadcast.
    Rejected(String),
    /// The node refused it because its nonce is used ("nonce too low",
    /// "replacement underpriced"): another transaction took the nonce.
    NonceUsed(String),
    /// The answer was lost (timeout, connection): it may be in the mempool.
    Ambiguous(String),
}

/// Gas price fields for a transaction.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fees {
    Eip1559 { max_fee: u128, priority: u128 },
    Legacy { gas_price: u128 },
}

impl Fees {
    /// The most the transaction may pay per gas, in wei.
    pub(crate) fn max_per_gas(&self) -> u128 {
        match self {
            Fees::Eip1559 { max_fee, .. } => *max_fee,
            Fees::Legacy { gas_price } => *gas_price,
        }
    }

    fn apply(&self, tx: &mut TransactionRequest) {
        match *self {
            Fees::Eip1559 { max_fee, priority } => {
                tx.set_max_fee_per_gas(max_fee);
                tx.set_max_priority_fee_per_gas(priority);
            }
            Fees::Legacy { gas_price } => tx.set_gas_price(gas_price),
        }
    }
}

/// How a bounded receipt wait ended.
pub(crate) enum Waited {
    Mined(Box<TransactionReceipt>),
    NotYet,
}

/// A view of one chain plus the sending machinery.
pub(crate) struct Chain {
    pub provider: DynProvider,
    pub chain_id: u64,
    pub poll_interval: Duration,
    pub log_lookback_blocks: u64,
    pub log_chunk_blocks: u64,
}

impl Chain {
    /// `eth_call` of `call` on `to`, from `from`, at the latest block.
    pub(crate) async fn call<C: SolCall>(
        &self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<C::Return, CallError> {
        let tx = TransactionRequest::default()
            .with_from(from)
            .with_to(to)
            .with_input(Bytes::from(call.abi_encode()));
        let out = self.provider.call(tx).await.map_err(classify)?;
        C::abi_decode_returns(&out).map_err(|e| {
            CallError::Revert(format!("`{}` returned undecodable data: {e}", C::SIGNATURE))
        })
    }

    /// `eth_call` of `call` on `to` from `from` with at most `gas_cap` gas:
    /// a simulation whose node-side work is bounded. Needing more gas is
    /// [`CallError::GasExceeded`].
    pub(crate) async fn call_capped<C: SolCall>(
        &self,
        from: Address,
        to: Address,
        call: &C,
        gas_cap: u64,
    ) -> Result<(), CallError> {
        let tx = TransactionRequest::default()
            .with_from(from)
            .with_to(to)
            .with_input(Bytes::from(call.abi_encode()))
            .with_gas_limit(gas_cap);
        self.provider
            .call(tx)
            .await
            .map(|_| ())
            .map_err(classify_capped)
    }

    /// `eth_estimateGas` of `call` on `to` from `from`, searched up to
    /// `gas_cap` only: a simulation that also prices the transaction.
    /// Needing more than `gas_cap` is [`CallError::GasExceeded`].
    pub(crate) async fn estimate<C: SolCall>(
        &self,
        from: Address,
        to: Address,
        call: &C,
        gas_cap: u64,
    ) -> Result<u64, CallError> {
        let tx = TransactionRequest::default()
            .with_from(from)
            .with_to(to)
            .with_input(Bytes::from(call.abi_encode()))
            .with_gas_limit(gas_cap);
        self.provider
            .estimate_gas(tx)
            .await
            .map_err(classify_capped)
    }

    /// `eth_call` of exactly the transaction that would be sent (sender,
    /// gas limit, fee fields) on the pending block: a contract that behaves
    /// differently when it is paid for (`GASPRICE`, fee-dependent paths) or
    /// when given less gas than estimated reverts here, not on chain.
    pub(crate) async fn simulate_exact<C: SolCall>(
        &self,
        from: Address,
        to: Address,
        call: &C,
        gas_limit: u64,
        fees: Fees,
    ) -> Result<(), CallError> {
        let mut tx = TransactionRequest::default()
            .with_from(from)
            .with_to(to)
            .with_input(Bytes::from(call.abi_encode()))
            .with_gas_limit(gas_limit);
        fees.apply(&mut tx);
        self.provider
            .call(tx)
            .block(alloy::eips::BlockId::pending())
            .await
            .map(|_| ())
            .map_err(classify_capped)
    }

    /// Current fees: EIP-1559 when the node supports `eth_feeHistory`, the
    /// legacy gas price otherwise.
    pub(crate) async fn fees(&self) -> Result<Fees, CallError> {
        match self.provider.estimate_eip1559_fees().await {
            Ok(e) => Ok(Fees::Eip1559 {
                max_fee: e.max_fee_per_gas,
                priority: e.max_priority_fee_per_gas,
            }),
            Err(first) => match self.provider.get_gas_price().await {
                Ok(gas_price) => Ok(Fees::Legacy { gas_price }),
                Err(_) => Err(CallError::Unavailable(format!(
                    "cannot price gas: {}",
                    classify(first).message()
                ))),
            },
        }
    }

    /// The account's next nonce as the node sees it, counting its
    /// mempool (`eth_getTransactionCount(address, "pending")`).
    pub(crate) async fn pending_nonce(&self, address: Address) -> Result<u64, CallError> {
        self.provider
            .get_transaction_count(address)
            .pending()
            .await
            .map_err(classify)
    }

    /// Broadcasts a signed transaction (`eth_sendRawTransaction`). "Already
    /// known" counts as sent.
    pub(crate) async fn broadcast(&self, raw: &[u8]) -> Result<(), SendError> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => Ok(()),
            Err(RpcError::ErrorResp(payload)) => {
                let msg = payload.message.to_ascii_lowercase();
                if msg.contains("already known") || msg.contains("known transaction") {
                    return Ok(());
                }
                let detail = format!("node error {}: {}", payload.code, payload.message);
                if msg.contains("nonce too low")
                    || msg.contains("replacement transaction underpriced")
                    || msg.contains("nonce has already been used")
                {
                    Err(SendError::NonceUsed(detail))
                } else {
                    Err(SendError::Rejected(detail))
                }
            }
            Err(other) => Err(SendError::Ambiguous(classify(other).message().to_owned())),
        }
    }

    /// Polls for `hash`'s receipt until `bound` has passed.
    pub(crate) async fn wait_receipt(&self, hash: B256, bound: Duration) -> Waited {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            match self.provider.get_transaction_receipt(hash).await {
                Ok(Some(r)) => return Waited::Mined(Box::new(r)),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(%hash, error = %classify(e).message(), "receipt poll failed")
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Waited::NotYet;
            }
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
    }

    /// The receipt of `hash`, if it was mined.
    pub(crate) async fn receipt(
        &self,
        hash: B256,
    ) -> Result<Option<TransactionReceipt>, CallError> {
        self.provider
            .get_transaction_receipt(hash)
            .await
            .map_err(classify)
    }

    /// Whether `address` holds contract code (a token without code would
    /// "succeed" every call and move nothing).
    pub(crate) async fn has_code(&self, address: Address) -> Result<bool, CallError> {
        self.provider
            .get_code_at(address)
            .await
            .map(|code| !code.is_empty())
            .map_err(classify)
    }

    /// Whether the node knows `hash` (mined or in its mempool).
    pub(crate) async fn is_known(&self, hash: B256) -> Result<bool, CallError> {
        self.provider
            .get_transaction_by_hash(hash)
            .await
            .map(|t| t.is_some())
            .map_err(classify)
    }

    /// The transaction that settled `movement`, if one did: the
    /// `AuthorizationUsed(from, nonce)` event of the token, searched
    /// backwards from the head in chunks over at most `log_lookback_blocks`
    /// blocks, whose transaction succeeded and emitted
    /// `Transfer(from, to, value)` from the same token.
    ///
    /// `Ok(None)` means no such settlement was found (the nonce may have
    /// been used by a different authorization, or cancelled).
    pub(crate) async fn find_settlement(
        &self,
        movement: &Movement,
    ) -> Result<Option<B256>, CallError> {
        let head = self.provider.get_block_number().await.map_err(classify)?;
        let base = Filter::new()
            .address(movement.asset)
            .event_signature(IEip3009::AuthorizationUsed::SIGNATURE_HASH)
            .topic1(movement.from.into_word())
            .topic2(movement.nonce);
        let chunk = self.log_chunk_blocks.max(1);
        // The `lookback` blocks ending at `head` (inclusive), so a lookup
        // makes at most ceil(lookback / chunk) requests.
        let oldest = head.saturating_sub(self.log_lookback_blocks.saturating_sub(1));
        let mut to = head;
        loop {
            let from = to.saturating_sub(chunk - 1).max(oldest);
            let logs = self
                .provider
                .get_logs(&base.clone().from_block(from).to_block(to))
                .await
                .map_err(classify)?;
            if let Some(log) = logs.iter().find(|l| !l.removed) {
                let Some(tx) = log.transaction_hash else {
                    return Err(CallError::Unavailable(
                        "AuthorizationUsed log without a transaction hash".into(),
                    ));
                };
                let receipt = self.receipt(tx).await?.ok_or_else(|| {
                    CallError::Unavailable(format!("no receipt for logged transaction {tx}"))
                })?;
                // The nonce is used once per authorizer: if this transaction
                // did not move exactly this payment, none did.
                return Ok((receipt.status() && moved(&receipt, movement)).then_some(tx));
            }
            if from <= oldest {
                return Ok(None);
            }
            to = from - 1;
        }
    }
}

/// Whether `receipt` carries the token's `Transfer(from, to, value)` of
/// `movement`.
pub(crate) fn moved(receipt: &TransactionReceipt, movement: &Movement) -> bool {
    receipt.logs().iter().any(|log| {
        log.address() == movement.asset
            && IEip3009::Transfer::decode_log(&log.inner).is_ok_and(|t| {
                t.from == movement.from && t.to == movement.to && t.value == movement.value
            })
    })
}

/// `gas * percent / 100`, saturating.
pub(crate) fn with_headroom(gas: u64, percent: u64) -> u64 {
    let scaled = U256::from(gas) * U256::from(percent) / U256::from(100u64);
    u64::try_from(scaled).unwrap_or(u64::MAX)
}
