//! [`AlloyPermitSettler`]: signs and sends `permit()` and `transferFrom()`
//! with the spender key.

use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{ReceiptResponse, TransactionBuilder, TxSignerSync};
use alloy::primitives::{Address, B256, Bytes, TxKind};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use async_trait::async_trait;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock::MockPermit;
use pay402_core::x402::mock_chain::{
    MockChainError, PermitReader, PermitSettler, PreparedCall, SignedTx, TxStatus,
};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use super::error::{BroadcastRefusal, broadcast_error, call_error};
use super::reader::{AlloyPermitReader, IPermitToken};

/// Default interval between two receipt polls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The spender's secp256k1 private key.
///
/// The bytes it is built from are wiped ([`Zeroizing`]); the key itself
/// lives in a k256 `SigningKey`, which zeroizes its scalar on drop. `Debug`
/// shows the address only.
///
/// ```
/// use pay402_backends::x402_mock::SpenderKey;
/// let key = SpenderKey::from_hex("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d").unwrap();
/// assert_eq!(key.address().to_string(), "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
/// assert!(!format!("{key:?}").contains("59c6995e"));
/// ```
pub struct SpenderKey(PrivateKeySigner);

impl std::fmt::Debug for SpenderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpenderKey")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

/// The key material is not a valid secp256k1 private key.
///
/// ```
/// use pay402_backends::x402_mock::{SpenderKey, InvalidKey};
/// assert_eq!(SpenderKey::from_hex("0x00").unwrap_err(), InvalidKey);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid secp256k1 private key")]
pub struct InvalidKey;

impl SpenderKey {
    /// From the 32 key bytes (wiped when dropped).
    ///
    /// ```
    /// use pay402_backends::x402_mock::SpenderKey;
    /// use zeroize::Zeroizing;
    /// assert!(SpenderKey::from_bytes(Zeroizing::new([0u8; 32])).is_err()); // zero is not a key
    /// assert!(SpenderKey::from_bytes(Zeroizing::new([1u8; 32])).is_ok());
    /// ```
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Result<SpenderKey, InvalidKey> {
        PrivateKeySigner::from_slice(&bytes[..])
            .map(SpenderKey)
            .map_err(|_| InvalidKey)
    }

    /// From 64 hex digits, with or without `0x` (the decoded bytes are wiped).
    ///
    /// ```
    /// use pay402_backends::x402_mock::SpenderKey;
    /// assert!(SpenderKey::from_hex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").is_ok());
    /// assert!(SpenderKey::from_hex("zz").is_err());
    /// ```
    pub fn from_hex(hex_key: &str) -> Result<SpenderKey, InvalidKey> {
        let h = hex_key.trim();
        let h = h.strip_prefix("0x").unwrap_or(h);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(h, &mut bytes[..]).map_err(|_| InvalidKey)?;
        SpenderKey::from_bytes(bytes)
    }

    /// The address of this key.
    ///
    /// ```
    /// use pay402_backends::x402_mock::SpenderKey;
    /// let key = SpenderKey::from_hex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap();
    /// assert_eq!(key.address().to_string(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    /// ```
    pub fn address(&self) -> EvmAddress {
        EvmAddress(self.0.address())
    }
}

/// Settles x402_mock permits with alloy: `permit()` then `transferFrom()`,
/// signed locally by the spender key and sent with `eth_sendRawTransaction`.
///
/// - **Nonces.** [`PermitSettler::sign_at`] signs with the nonce it is
///   given and counts nothing: the settlement worker allocates the nonce in
///   its queue's database, shared by every process settling with the key.
///   `sign_permit` / `sign_transfer_from` (and so `settle`) keep their own
///   count in process instead (read once from the node's `pending` count,
///   then incremented under a lock), so concurrent calls in one process
///   never share a nonce; after a refused broadcast it is re-read from the
///   node, so a gap left by a transaction that never made it does not block
///   later ones.
/// - **Simulation.** Every call is gas-estimated before it is signed: a call
///   that would revert is [`MockChainError::Reverted`] and costs no gas.
/// - **Receipts.** [`PermitSettler::wait_receipt`] polls with a bound and
///   answers `None` when the bound passes (the transaction may still be mined).
///
/// ```no_run
/// use std::time::Duration;
/// use pay402_backends::x402_mock::{AlloyPermitSettler, SpenderKey};
/// use pay402_core::x402::mock_chain::PermitSettler;
/// # async fn f(permit: pay402_core::x402::mock::MockPermit) -> Result<(), Box<dyn std::error::Error>> {
/// let key = SpenderKey::from_hex(&std::env::var("EVM_PRIVATE_KEY")?)?;
/// let settler = AlloyPermitSettler::connect("http://127.0.0.1:8545", key).await?;
/// let to = settler.spender();
/// let price = pay402_core::x402::TokenAmount::from_u64(10_000);
/// let settled = settler.settle(&permit, to, price, Duration::from_secs(30)).await?;
/// println!("transferFrom: {}", settled.transfer_tx);
/// # Ok(()) }
/// ```
pub struct AlloyPermitSettler {
    reader: AlloyPermitReader,
    signer: PrivateKeySigner,
    spender: Address,
    next_nonce: Mutex<Option<u64>>,
    poll_interval: Duration,
}

impl std::fmt::Debug for AlloyPermitSettler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlloyPermitSettler")
            .field("spender", &self.spender)
            .field("chain_id", &self.reader.chain_id())
            .finish_non_exhaustive()
    }
}

impl AlloyPermitSettler {
    /// Connects to `rpc_url` (see [`AlloyPermitReader::connect`]) with the spender key.
    ///
    /// ```no_run
    /// # async fn f(key: pay402_backends::x402_mock::SpenderKey) {
    /// let settler = pay402_backends::x402_mock::AlloyPermitSettler::connect("http://127.0.0.1:8545", key).await.unwrap();
    /// # }
    /// ```
    pub async fn connect(
        rpc_url: &str,
        key: SpenderKey,
    ) -> Result<AlloyPermitSettler, MockChainError> {
        Ok(AlloyPermitSettler::new(
            AlloyPermitReader::connect(rpc_url).await?,
            key,
        ))
    }

    /// A settler on an existing reader.
    ///
    /// ```no_run
    /// # async fn f(key: pay402_backends::x402_mock::SpenderKey) {
    /// use pay402_backends::x402_mock::{AlloyPermitReader, AlloyPermitSettler};
    /// let reader = AlloyPermitReader::connect("http://127.0.0.1:8545").await.unwrap();
    /// let settler = AlloyPermitSettler::new(reader, key);
    /// # }
    /// ```
    pub fn new(reader: AlloyPermitReader, key: SpenderKey) -> AlloyPermitSettler {
        let spender = key.0.address();
        AlloyPermitSettler {
            reader,
            signer: key.0,
            spender,
            next_nonce: Mutex::new(None),
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// Sets the interval between receipt polls (default [`DEFAULT_POLL_INTERVAL`]).
    ///
    /// ```no_run
    /// # fn f(s: pay402_backends::x402_mock::AlloyPermitSettler) {
    /// let s = s.with_poll_interval(std::time::Duration::from_secs(2));
    /// # }
    /// ```
    pub fn with_poll_interval(mut self, interval: Duration) -> AlloyPermitSettler {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The reader this settler reads through.
    ///
    /// ```no_run
    /// # fn f(s: pay402_backends::x402_mock::AlloyPermitSettler) {
    /// let reader = s.reader().clone(); // share the connection with a paying client, say
    /// # }
    /// ```
    pub fn reader(&self) -> &AlloyPermitReader {
        &self.reader
    }

    /// Simulates (gas estimate) and prices `data` sent to `to`.
    async fn prepare_call(
        &self,
        call: &'static str,
        to: EvmAddress,
        data: Vec<u8>,
    ) -> Result<PreparedCall, MockChainError> {
        let provider = self.reader.provider();
        let request = TransactionRequest::default()
            .with_from(self.spender)
            .with_to(to.0)
            .with_input(data.clone());
        let gas = provider
            .estimate_gas(request)
            .await
            .map_err(|e| call_error(call, e))?;
        let fees = provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| call_error("eth_feeHistory", e))?;
        Ok(PreparedCall {
            call,
            to,
            input: data,
            gas_limit: gas.saturating_add(gas / 5),
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        })
    }

    /// Prepares the call and signs it with this process's own count of the
    /// spender's nonces.
    async fn sign_call(
        &self,
        call: &'static str,
        to: EvmAddress,
        data: Vec<u8>,
    ) -> Result<SignedTx, MockChainError> {
        let prepared = self.prepare_call(call, to, data).await?;
        let mut next = self.next_nonce.lock().await;
        let nonce = match *next {
            Some(n) => n,
            None => self.pending_sender_nonce().await?,
        };
        let tx = self.sign_at(&prepared, nonce)?;
        *next = Some(nonce.saturating_add(1));
        Ok(tx)
    }

    async fn forget_nonce(&self) {
        *self.next_nonce.lock().await = None;
    }
}

fn permit_call(permit: &MockPermit) -> IPermitToken::permitCall {
    IPermitToken::permitCall {
        owner: permit.owner.0,
        spender: permit.spender.0,
        value: permit.value,
        deadline: permit.deadline,
        v: permit.signature.v,
        r: B256::from(permit.signature.r.0),
        s: B256::from(permit.signature.s.0),
    }
}

fn transfer_call(
    from: EvmAddress,
    to: EvmAddress,
    amount: TokenAmount,
) -> IPermitToken::transferFromCall {
    IPermitToken::transferFromCall {
        from: from.0,
        to: to.0,
        value: amount.0,
    }
}

#[async_trait]
impl PermitReader for AlloyPermitSettler {
    fn chain_id(&self) -> u64 {
        self.reader.chain_id()
    }
    async fn nonces(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
    ) -> Result<alloy::primitives::U256, MockChainError> {
        self.reader.nonces(token, owner).await
    }
    async fn balance_of(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        self.reader.balance_of(token, owner).await
    }
    async fn allowance(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
        spender: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        self.reader.allowance(token, owner, spender).await
    }
}

#[async_trait]
impl PermitSettler for AlloyPermitSettler {
    fn spender(&self) -> EvmAddress {
        EvmAddress(self.spender)
    }

    async fn sign_permit(&self, permit: &MockPermit) -> Result<SignedTx, MockChainError> {
        self.sign_call("permit", permit.token, permit_call(permit).abi_encode())
            .await
    }

    async fn sign_transfer_from(
        &self,
        token: EvmAddress,
        from: EvmAddress,
        to: EvmAddress,
        amount: TokenAmount,
    ) -> Result<SignedTx, MockChainError> {
        self.sign_call(
            "transferFrom",
            token,
            transfer_call(from, to, amount).abi_encode(),
        )
        .await
    }

    async fn prepare_permit(&self, permit: &MockPermit) -> Result<PreparedCall, MockChainError> {
        self.prepare_call("permit", permit.token, permit_call(permit).abi_encode())
            .await
    }

    async fn prepare_transfer_from(
        &self,
        token: EvmAddress,
        from: EvmAddress,
        to: EvmAddress,
        amount: TokenAmount,
    ) -> Result<PreparedCall, MockChainError> {
        self.prepare_call(
            "transferFrom",
            token,
            transfer_call(from, to, amount).abi_encode(),
        )
        .await
    }

    async fn prepare_nonce_fill(&self) -> Result<PreparedCall, MockChainError> {
        let fees = self
            .reader
            .provider()
            .estimate_eip1559_fees()
            .await
            .map_err(|e| call_error("eth_feeHistory", e))?;
        Ok(PreparedCall {
            call: "nonce_fill",
            to: EvmAddress(self.spender),
            input: Vec::new(),
            gas_limit: 21_000,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        })
    }

    fn sign_at(&self, call: &PreparedCall, nonce: u64) -> Result<SignedTx, MockChainError> {
        let mut tx = TxEip1559 {
            chain_id: self.reader.chain_id(),
            nonce,
            gas_limit: call.gas_limit,
            max_fee_per_gas: call.max_fee_per_gas,
            max_priority_fee_per_gas: call.max_priority_fee_per_gas,
            to: TxKind::Call(call.to.0),
            value: alloy::primitives::U256::ZERO,
            access_list: Default::default(),
            input: Bytes::copy_from_slice(&call.input),
        };
        let signature = self.signer.sign_transaction_sync(&mut tx).map_err(|e| {
            MockChainError::Config(format!("cannot sign the {} transaction: {e}", call.call))
        })?;
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        let hash: B256 = *envelope.tx_hash();
        tracing::debug!(call = call.call, tx = %hash, nonce, "x402_mock.signed");
        Ok(SignedTx {
            hash: Bytes32(hash.0),
            raw: envelope.encoded_2718(),
            sender: EvmAddress(self.spender),
            sender_nonce: nonce,
        })
    }

    async fn pending_sender_nonce(&self) -> Result<u64, MockChainError> {
        self.reader
            .provider()
            .get_transaction_count(self.spender)
            .pending()
            .await
            .map_err(|e| call_error("eth_getTransactionCount", e))
    }

    async fn broadcast(&self, tx: &SignedTx) -> Result<(), MockChainError> {
        match self.reader.provider().send_raw_transaction(&tx.raw).await {
            Ok(_) => {
                tracing::debug!(tx = %tx.hash, "x402_mock.broadcast");
                Ok(())
            }
            Err(e) => match broadcast_error(e) {
                BroadcastRefusal::AlreadyDone => {
                    tracing::debug!(tx = %tx.hash, "x402_mock.broadcast_already_done");
                    Ok(())
                }
                BroadcastRefusal::Failed(err) => {
                    // The nonce this transaction holds may never be used:
                    // re-read it from the node before signing again.
                    self.forget_nonce().await;
                    tracing::warn!(tx = %tx.hash, error = %err, "x402_mock.broadcast_failed");
                    Err(err)
                }
            },
        }
    }

    async fn discard(&self, tx: &SignedTx) {
        tracing::debug!(tx = %tx.hash, nonce = tx.sender_nonce, "x402_mock.discarded");
        self.forget_nonce().await;
    }

    async fn receipt(&self, hash: &Bytes32) -> Result<Option<TxStatus>, MockChainError> {
        let receipt = self
            .reader
            .provider()
            .get_transaction_receipt(B256::from(hash.0))
            .await
            .map_err(|e| call_error("eth_getTransactionReceipt", e))?;
        Ok(receipt.and_then(|r| {
            let block = r.block_number()?;
            Some(if r.status() {
                TxStatus::Success { block }
            } else {
                TxStatus::Reverted { block }
            })
        }))
    }

    async fn wait_receipt(
        &self,
        hash: &Bytes32,
        timeout: Duration,
    ) -> Result<Option<TxStatus>, MockChainError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.receipt(hash).await? {
                return Ok(Some(status));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
    }

    async fn mined_sender_nonce(&self) -> Result<u64, MockChainError> {
        self.reader
            .provider()
            .get_transaction_count(self.spender)
            .latest()
            .await
            .map_err(|e| call_error("eth_getTransactionCount", e))
    }
}
