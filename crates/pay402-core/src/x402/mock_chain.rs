//! The chain port of the x402_mock flow: what a server (and a paying client)
//! needs from an EIP-2612 token contract.
//!
//! Two traits, declarations only (core performs no I/O):
//!
//! - [`PermitReader`]: the views `nonces(owner)`, `balanceOf(owner)` and
//!   `allowance(owner, spender)`. A client needs only this (to read the nonce
//!   it signs); the server uses it to validate a permit before issuing a token.
//! - [`PermitSettler`]: a reader that also holds the spender key and settles
//!   a permit on chain, `permit()` then `transferFrom()`.
//!
//! Settlement is split into steps — sign, broadcast, look the receipt up —
//! so that a caller can **journal** each signed transaction (its hash and raw
//! bytes) before broadcasting it. Signing itself can be split once more —
//! simulate and price ([`PreparedCall`]), then sign with a given account
//! nonce — so that the caller allocates the nonce where it journals. A journaled transaction is re-broadcast
//! as-is after a crash or a timeout, never re-signed while it can still be
//! mined: that is what makes a settlement queue idempotent (a `transferFrom`
//! is never sent twice). [`PermitSettler::settle`] chains the steps for
//! callers that do not journal.
//!
//! Errors say whether retrying can help ([`MockChainError::is_transient`]):
//! an unreachable node or a refused broadcast is transient; a call that
//! reverts against the current chain state (for example `transferFrom` after
//! the payer moved the funds away) is final.
//!
//! ```
//! use pay402_core::x402::mock_chain::{MockChainError, PermitReader};
//! use pay402_core::x402::evm::EvmAddress;
//!
//! /// The server's nonce check (step 5 of the seed's permit validation).
//! async fn nonce_is_current(
//!     chain: &dyn PermitReader,
//!     token: EvmAddress,
//!     owner: EvmAddress,
//!     signed_nonce: alloy_primitives::U256,
//! ) -> Result<bool, MockChainError> {
//!     Ok(chain.nonces(token, owner).await? == signed_nonce)
//! }
//! ```

use std::time::Duration;

/// The `uint256` type of nonces, re-exported for implementors of the port.
///
/// ```
/// assert_eq!(pay402_core::x402::mock_chain::U256::from(7u8).to_string(), "7");
/// ```
pub use alloy_primitives::U256;
use async_trait::async_trait;

use crate::problem::Reason;

use super::amount::TokenAmount;
use super::evm::{Bytes32, EvmAddress};
use super::mock::MockPermit;

/// A transaction signed by the settler's key, not necessarily broadcast yet.
///
/// Journal it (hash and raw bytes) before calling
/// [`PermitSettler::broadcast`]: re-broadcasting the same bytes is harmless,
/// re-signing is not (it could mine twice).
///
/// ```
/// use pay402_core::x402::mock_chain::SignedTx;
/// use pay402_core::x402::evm::{Bytes32, EvmAddress};
/// let tx = SignedTx { hash: Bytes32([1; 32]), raw: vec![0x02, 0xf8], sender: EvmAddress::default(), sender_nonce: 7 };
/// assert_eq!(tx.sender_nonce, 7);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    /// The transaction hash (`keccak256` of the EIP-2718 encoding).
    pub hash: Bytes32,
    /// The EIP-2718 encoded signed transaction, as sent to
    /// `eth_sendRawTransaction`.
    pub raw: Vec<u8>,
    /// The account that signed it (the spender).
    pub sender: EvmAddress,
    /// The sender's account nonce used by this transaction.
    pub sender_nonce: u64,
}

/// A contract call from the spender, simulated and priced but not signed:
/// [`PermitSettler::sign_at`] signs it with whatever account nonce the
/// caller allocated, without I/O. A settlement queue shared by several
/// processes allocates that nonce in its database, in the transaction that
/// journals the signed bytes, so two processes never sign one nonce.
///
/// ```
/// use pay402_core::x402::mock_chain::PreparedCall;
/// use pay402_core::x402::evm::EvmAddress;
/// let call = PreparedCall {
///     call: "transferFrom",
///     to: EvmAddress::default(),
///     input: vec![0x23, 0xb8, 0x72, 0xdd],
///     gas_limit: 60_000,
///     max_fee_per_gas: 2_000_000_000,
///     max_priority_fee_per_gas: 1_000_000_000,
/// };
/// assert_eq!(call.call, "transferFrom");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedCall {
    /// The contract function, for errors and logs.
    pub call: &'static str,
    /// The contract.
    pub to: EvmAddress,
    /// The ABI-encoded call.
    pub input: Vec<u8>,
    /// The gas limit (the estimate plus a margin).
    pub gas_limit: u64,
    /// EIP-1559 `maxFeePerGas`, in wei.
    pub max_fee_per_gas: u128,
    /// EIP-1559 `maxPriorityFeePerGas`, in wei.
    pub max_priority_fee_per_gas: u128,
}

/// The outcome of a mined transaction.
///
/// ```
/// use pay402_core::x402::mock_chain::TxStatus;
/// assert!(TxStatus::Success { block: 3 }.is_success());
/// assert!(!TxStatus::Reverted { block: 3 }.is_success());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Mined and executed successfully.
    Success {
        /// The block that includes it.
        block: u64,
    },
    /// Mined but reverted (no state change except the gas paid).
    Reverted {
        /// The block that includes it.
        block: u64,
    },
}

impl TxStatus {
    /// Whether the transaction executed successfully.
    ///
    /// ```
    /// assert!(pay402_core::x402::mock_chain::TxStatus::Success { block: 1 }.is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        matches!(self, TxStatus::Success { .. })
    }
}

/// The result of a completed settlement: both transactions mined successfully.
///
/// ```
/// use pay402_core::x402::mock_chain::Settled;
/// use pay402_core::x402::evm::Bytes32;
/// let s = Settled { permit_tx: None, transfer_tx: Bytes32([2; 32]) };
/// assert!(s.permit_tx.is_none()); // the permit was already executed on chain
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The `permit()` transaction, or `None` when the permit had already been
    /// executed (by anyone) and the allowance was in place.
    pub permit_tx: Option<Bytes32>,
    /// The `transferFrom()` transaction.
    pub transfer_tx: Bytes32,
}

/// A chain call failed. [`MockChainError::is_transient`] tells whether
/// retrying later can help.
///
/// ```
/// use pay402_core::x402::mock_chain::MockChainError;
/// use pay402_core::problem::Reason;
/// let e = MockChainError::Reverted { call: "transferFrom", detail: "ERC20: transfer amount exceeds balance".into() };
/// assert!(!e.is_transient());
/// assert_eq!(e.reason(), "mock_chain_reverted");
/// let e = MockChainError::Unreachable { call: "eth_call", detail: "connection refused".into() };
/// assert!(e.is_transient());
/// assert_eq!(e.status(), 503);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MockChainError {
    /// The node could not be reached or did not answer in time (transient).
    #[error("{call}: node unreachable: {detail}")]
    Unreachable {
        /// The JSON-RPC method or contract call.
        call: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The node answered something that does not parse (transient: a
    /// proxy or a node in trouble).
    #[error("{call}: invalid response: {detail}")]
    InvalidResponse {
        /// The JSON-RPC method or contract call.
        call: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The node refused to accept a transaction for a reason that can pass
    /// (fee too low, nonce race, not enough ETH for gas): transient.
    #[error("{call}: transaction refused: {detail}")]
    TxRefused {
        /// The JSON-RPC method.
        call: &'static str,
        /// The node's message.
        detail: String,
    },
    /// The call reverts against the current chain state (seen while
    /// estimating gas or simulating): final for this chain state.
    #[error("{call}: reverts: {detail}")]
    Reverted {
        /// The contract call.
        call: &'static str,
        /// The revert reason, when the node gives one.
        detail: String,
    },
    /// The backend is misconfigured (wrong chain id, no contract at the
    /// token address, ...): final.
    #[error("chain backend misconfigured: {0}")]
    Config(String),
}

impl MockChainError {
    /// Whether retrying the same step later can succeed.
    ///
    /// ```
    /// use pay402_core::x402::mock_chain::MockChainError;
    /// assert!(MockChainError::TxRefused { call: "eth_sendRawTransaction", detail: "nonce too low".into() }.is_transient());
    /// assert!(!MockChainError::Config("chain id 1, expected 31337".into()).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MockChainError::Unreachable { .. }
                | MockChainError::InvalidResponse { .. }
                | MockChainError::TxRefused { .. }
        )
    }
}

impl Reason for MockChainError {
    fn reason(&self) -> &'static str {
        match self {
            MockChainError::Unreachable { .. } => "mock_chain_unreachable",
            MockChainError::InvalidResponse { .. } => "mock_chain_invalid_response",
            MockChainError::TxRefused { .. } => "mock_chain_tx_refused",
            MockChainError::Reverted { .. } => "mock_chain_reverted",
            MockChainError::Config(_) => "mock_chain_misconfigured",
        }
    }
    fn status(&self) -> u16 {
        match self {
            MockChainError::Unreachable { .. } | MockChainError::TxRefused { .. } => 503,
            MockChainError::InvalidResponse { .. } => 502,
            MockChainError::Reverted { .. } => 402,
            MockChainError::Config(_) => 500,
        }
    }
}

/// The views of an EIP-2612 token the x402_mock flow reads.
///
/// ```
/// use pay402_core::x402::mock_chain::{MockChainError, PermitReader};
/// use pay402_core::x402::evm::EvmAddress;
/// use pay402_core::x402::TokenAmount;
///
/// /// Step 7 of the seed's permit validation.
/// async fn can_pay(chain: &dyn PermitReader, token: EvmAddress, owner: EvmAddress, price: TokenAmount)
///     -> Result<bool, MockChainError> {
///     Ok(chain.balance_of(token, owner).await? >= price)
/// }
/// ```
#[async_trait]
pub trait PermitReader: Send + Sync {
    /// The chain id of the node this reader talks to.
    fn chain_id(&self) -> u64;
    /// `token.nonces(owner)`: the nonce the owner's next permit must carry.
    async fn nonces(&self, token: EvmAddress, owner: EvmAddress) -> Result<U256, MockChainError>;
    /// `token.balanceOf(owner)` in base units.
    async fn balance_of(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
    ) -> Result<TokenAmount, MockChainError>;
    /// `token.allowance(owner, spender)` in base units.
    async fn allowance(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
        spender: EvmAddress,
    ) -> Result<TokenAmount, MockChainError>;
}

/// A [`PermitReader`] holding the spender key: it settles permits with
/// `permit()` then `transferFrom()`.
///
/// The step methods never wait for mining except [`wait_receipt`]
/// (bounded). Every call is checked by simulation (gas estimation) before
/// it is signed. Two ways to sign:
///
/// - [`sign_permit`] / [`sign_transfer_from`]: the implementation picks the
///   account nonce itself (distinct for concurrent calls in one process);
///   what [`settle`] uses.
/// - [`prepare_permit`] / [`prepare_transfer_from`], then [`sign_at`] with a
///   nonce the caller allocated: what a settlement queue shared by several
///   processes uses, allocating the nonce in its database (at least
///   [`pending_sender_nonce`]) in the transaction that journals the signed
///   bytes.
///
/// [`sign_permit`]: PermitSettler::sign_permit
/// [`sign_transfer_from`]: PermitSettler::sign_transfer_from
/// [`settle`]: PermitSettler::settle
/// [`prepare_permit`]: PermitSettler::prepare_permit
/// [`prepare_transfer_from`]: PermitSettler::prepare_transfer_from
/// [`sign_at`]: PermitSettler::sign_at
/// [`pending_sender_nonce`]: PermitSettler::pending_sender_nonce
///
/// [`wait_receipt`]: PermitSettler::wait_receipt
///
/// ```
/// use std::time::Duration;
/// use pay402_core::x402::mock::MockPermit;
/// use pay402_core::x402::mock_chain::{MockChainError, PermitSettler, Settled};
///
/// async fn collect(chain: &dyn PermitSettler, permit: &MockPermit) -> Result<Settled, MockChainError> {
///     let price = pay402_core::x402::TokenAmount(permit.value);
///     chain.settle(permit, chain.spender(), price, Duration::from_secs(30)).await
/// }
/// ```
#[async_trait]
pub trait PermitSettler: PermitReader {
    /// The spender (the server wallet) whose key signs the transactions.
    fn spender(&self) -> EvmAddress;

    /// Signs `token.permit(owner, spender, value, deadline, v, r, s)` with
    /// the permit's fields. Fails with [`MockChainError::Reverted`] when the
    /// call would revert now (bad signature, nonce already used, deadline
    /// passed).
    async fn sign_permit(&self, permit: &MockPermit) -> Result<SignedTx, MockChainError>;

    /// Signs `token.transferFrom(from, to, amount)` from the spender. Fails
    /// with [`MockChainError::Reverted`] when the call would revert now
    /// (allowance or balance too low).
    async fn sign_transfer_from(
        &self,
        token: EvmAddress,
        from: EvmAddress,
        to: EvmAddress,
        amount: TokenAmount,
    ) -> Result<SignedTx, MockChainError>;

    /// Simulates and prices `token.permit(…)` with the permit's fields,
    /// for [`PermitSettler::sign_at`]. Fails with
    /// [`MockChainError::Reverted`] when the call would revert now.
    async fn prepare_permit(&self, permit: &MockPermit) -> Result<PreparedCall, MockChainError>;

    /// Simulates and prices `token.transferFrom(from, to, amount)` from the
    /// spender, for [`PermitSettler::sign_at`]. Fails with
    /// [`MockChainError::Reverted`] when the call would revert now.
    async fn prepare_transfer_from(
        &self,
        token: EvmAddress,
        from: EvmAddress,
        to: EvmAddress,
        amount: TokenAmount,
    ) -> Result<PreparedCall, MockChainError>;

    /// A zero-value transfer from the spender to itself (21 000 gas) at
    /// the current fees, for [`PermitSettler::sign_at`]: what takes a nonce
    /// that its journaled transaction will never use (its job failed while
    /// no node accepted it), so that later transactions are not stuck
    /// behind the gap.
    async fn prepare_nonce_fill(&self) -> Result<PreparedCall, MockChainError>;

    /// Signs a prepared call with the spender key and account nonce
    /// `nonce`, which the caller allocated (no I/O, and nothing counted
    /// here: the implementation's own nonce is neither read nor moved).
    fn sign_at(&self, call: &PreparedCall, nonce: u64) -> Result<SignedTx, MockChainError>;

    /// The spender's account nonce counting pending transactions too
    /// (`eth_getTransactionCount(spender, "pending")`): the least nonce a
    /// new transaction may take.
    async fn pending_sender_nonce(&self) -> Result<u64, MockChainError>;

    /// Sends a signed transaction. A transaction the node already has, or
    /// that is already mined, is not an error.
    async fn broadcast(&self, tx: &SignedTx) -> Result<(), MockChainError>;

    /// Tells the implementation that `tx` will never be broadcast (the
    /// caller could not journal it), so its account nonce may be reused.
    /// The default does nothing.
    async fn discard(&self, tx: &SignedTx) {
        let _ = tx;
    }

    /// The receipt of a transaction, `None` while it is not mined (or unknown).
    async fn receipt(&self, hash: &Bytes32) -> Result<Option<TxStatus>, MockChainError>;

    /// Polls [`PermitSettler::receipt`] for at most `timeout`; `None` when no
    /// receipt appeared in time (the transaction may still be mined later).
    async fn wait_receipt(
        &self,
        hash: &Bytes32,
        timeout: Duration,
    ) -> Result<Option<TxStatus>, MockChainError>;

    /// The spender's account nonce counting **mined** transactions only
    /// (`eth_getTransactionCount(spender, "latest")`). A journaled
    /// transaction whose `sender_nonce` is below this and that has no
    /// receipt was replaced and can never be mined.
    async fn mined_sender_nonce(&self) -> Result<u64, MockChainError>;

    /// Settles without a journal: `permit()` (skipped when the permit's
    /// nonce is already used and the allowance covers `amount`), then
    /// `transferFrom(owner, to, amount)`, waiting up to `timeout` for each
    /// receipt. A receipt that does not appear in time is
    /// [`MockChainError::Unreachable`] (the transaction may still be mined:
    /// do not call this again blindly — use the step methods and a journal
    /// for that).
    async fn settle(
        &self,
        permit: &MockPermit,
        to: EvmAddress,
        amount: TokenAmount,
        timeout: Duration,
    ) -> Result<Settled, MockChainError> {
        let spender = self.spender();
        let on_chain = self.nonces(permit.token, permit.owner).await?;
        let permit_tx = if on_chain == permit.nonce {
            let tx = self.sign_permit(permit).await?;
            self.broadcast(&tx).await?;
            mined(self.wait_receipt(&tx.hash, timeout).await?, "permit")?;
            Some(tx.hash)
        } else if self.allowance(permit.token, permit.owner, spender).await? >= amount {
            None
        } else {
            return Err(MockChainError::Reverted {
                call: "permit",
                detail: format!(
                    "nonce {} is not the owner's current nonce {on_chain} and the allowance is too low",
                    permit.nonce
                ),
            });
        };
        let tx = self
            .sign_transfer_from(permit.token, permit.owner, to, amount)
            .await?;
        self.broadcast(&tx).await?;
        mined(self.wait_receipt(&tx.hash, timeout).await?, "transferFrom")?;
        Ok(Settled {
            permit_tx,
            transfer_tx: tx.hash,
        })
    }
}

fn mined(status: Option<TxStatus>, call: &'static str) -> Result<(), MockChainError> {
    match status {
        Some(TxStatus::Success { .. }) => Ok(()),
        Some(TxStatus::Reverted { block }) => Err(MockChainError::Reverted {
            call,
            detail: format!("mined in block {block} but reverted"),
        }),
        None => Err(MockChainError::Unreachable {
            call,
            detail: "no receipt within the wait bound; the transaction may still be mined".into(),
        }),
    }
}

#[async_trait]
impl<T: PermitReader + ?Sized> PermitReader for std::sync::Arc<T> {
    fn chain_id(&self) -> u64 {
        (**self).chain_id()
    }
    async fn nonces(&self, token: EvmAddress, owner: EvmAddress) -> Result<U256, MockChainError> {
        (**self).nonces(token, owner).await
    }
    async fn balance_of(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        (**self).balance_of(token, owner).await
    }
    async fn allowance(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
        spender: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        (**self).allowance(token, owner, spender).await
    }
}

#[async_trait]
impl<T: PermitSettler + ?Sized> PermitSettler for std::sync::Arc<T> {
    fn spender(&self) -> EvmAddress {
        (**self).spender()
    }
    async fn sign_permit(&self, permit: &MockPermit) -> Result<SignedTx, MockChainError> {
        (**self).sign_permit(permit).await
    }
    async fn sign_transfer_from(
        &self,
        token: EvmAddress,
        from: EvmAddress,
        to: EvmAddress,
        amount: TokenAmount,
    ) -> Result<SignedTx, MockChainError> {
        (**self).sign_transfer_from(token, from, to, amount).await
    }
    async fn prepare_permit(&self, permit: &MockPermit) -> Result<PreparedCall, MockChainError> {
        (**self).prepare_permit(permit).await
    }
    async fn prepare_transfer_from(
        &self,
        token: EvmAddress,
        from: EvmAddress,
        to: EvmAddress,
        amount: TokenAmount,
    ) -> Result<PreparedCall, MockChainError> {
        (**self)
            .prepare_transfer_from(token, from, to, amount)
            .await
    }
    async fn prepare_nonce_fill(&self) -> Result<PreparedCall, MockChainError> {
        (**self).prepare_nonce_fill().await
    }
    fn sign_at(&self, call: &PreparedCall, nonce: u64) -> Result<SignedTx, MockChainError> {
        (**self).sign_at(call, nonce)
    }
    async fn pending_sender_nonce(&self) -> Result<u64, MockChainError> {
        (**self).pending_sender_nonce().await
    }
    async fn broadcast(&self, tx: &SignedTx) -> Result<(), MockChainError> {
        (**self).broadcast(tx).await
    }
    async fn discard(&self, tx: &SignedTx) {
        (**self).discard(tx).await
    }
    async fn receipt(&self, hash: &Bytes32) -> Result<Option<TxStatus>, MockChainError> {
        (**self).receipt(hash).await
    }
    async fn wait_receipt(
        &self,
        hash: &Bytes32,
        timeout: Duration,
    ) -> Result<Option<TxStatus>, MockChainError> {
        (**self).wait_receipt(hash, timeout).await
    }
    async fn mined_sender_nonce(&self) -> Result<u64, MockChainError> {
        (**self).mined_sender_nonce().await
    }
}
