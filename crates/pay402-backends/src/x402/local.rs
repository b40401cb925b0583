//! [`LocalFacilitator`]: verifies `exact` EVM (EIP-3009) payments against a
//! chain and settles them with its own accounts, over alloy.
//!
//! **Verify** runs core's local checks in the reference order
//! ([`pay402_core::x402::exact`]), then asks the chain: for v1 the payer's
//! `balanceOf` (`insufficient_funds`), then for both versions an `eth_call`
//! simulation of `transferWithAuthorization(..., v, r, s)` from a facilitator
//! account. A reverted simulation is diagnosed like the reference
//! facilitator does (`authorizationState`, `name`, `version`, `balanceOf`)
//! and answered as a verdict:
//!
//! | condition | reason |
//! |---|---|
//! | the asset has no contract code (checked with the simulation) | `invalid_exact_evm_eip3009_not_supported` |
//! | `authorizationState` reverts | `invalid_exact_evm_eip3009_not_supported` |
//! | the nonce is used | `invalid_exact_evm_nonce_already_used` |
//! | `name()` ≠ `extra.name` | `invalid_exact_evm_token_name_mismatch` |
//! | `version()` ≠ `extra.version` | `invalid_exact_evm_token_version_mismatch` |
//! | balance < amount | `invalid_exact_evm_insufficient_balance` (v1: `insufficient_funds`) |
//! | otherwise | `invalid_exact_evm_transaction_simulation_failed` |
//!
//! **Policy** (checked before any RPC call): the asset must be on the
//! allowlist with the EIP-712 domain `extra` names
//! (`facilitator_asset_not_allowed`, or the name/version mismatch reasons),
//! and the payee on the payee allowlist when there is one
//! (`facilitator_payee_not_allowed`). Simulations run capped at the gas
//! ceiling (`facilitator_gas_limit_exceeded`).
//!
//! **Settle** re-verifies, then, before spending any gas: reserves the
//! payment's value against the payer's balance minus the payer's other
//! settlements in flight (`facilitator_in_flight_exceeds_balance`),
//! estimates gas capped at the ceiling, refuses a fee per gas above its
//! ceiling (`facilitator_fee_too_high`), simulates exactly the transaction
//! it will send (gas limit and fees, on the pending block) and charges the
//! gas budget (`facilitator_gas_budget_exhausted`). It then sends `transferWithAuthorization` from one
//! of its accounts (round robin) and waits for the receipt for at most
//! [`receipt_timeout`](LocalFacilitatorBuilder::receipt_timeout).
//!
//! **Shared state.** Before anything is sent, the settle claims the
//! authorization `(chain, token, from, nonce)` in the facilitator's
//! [`SettlementStore`] ([`LocalFacilitatorBuilder::settlement_store`]; in
//! memory by default). The transaction's nonce is allocated there too (at
//! least the node's pending nonce) in the one step that records the signed
//! transaction on the claim. So facilitator processes sharing one key and
//! one database never send one authorization twice nor reuse a nonce; a
//! claim held by a live settle is followed, an expired one is taken over
//! and its recorded transaction sent again verbatim, and
//! [`LocalFacilitator::reconcile`] finishes what a crash left.
//!
//! - Mined, successful, and the token emitted this payment's `Transfer`:
//!   `success: true` with the transaction hash.
//! - Mined and reverted: `success: false`, `invalid_exact_evm_transaction_failed`
//!   (unless another transaction settled this very payment first, see below).
//! - Not mined within the bound, or the node's answer to the send was lost:
//!   [`FacilitatorError::Pending`] with the hash. Never a false failure.
//!
//! **Idempotent settle.** Settling a payment that was already settled
//! answers `success: true` with the *original* transaction hash: while it is
//! in flight (its claim is held), the settle waits on that same transaction;
//! otherwise, when `authorizationState(from, nonce)` is already true, the
//! facilitator finds the token's `AuthorizationUsed(from, nonce)` event
//! (`eth_getLogs`, searched backwards over
//! [`log_lookback_blocks`](LocalFacilitatorBuilder::log_lookback_blocks)) and
//! checks that its transaction succeeded and emitted `Transfer(from, to,
//! value)` of exactly this payment. A used nonce that did not pay this
//! payment is `invalid_exact_evm_nonce_already_used`. This makes a server's
//! retry after `Pending` or after a crash safe; it also means a server must
//! keep its own replay record keyed on (payer, nonce) — `settle` succeeding
//! twice for one payment does not mean it was paid twice.
//! [`LocalFacilitator::transaction_status`] and
//! [`LocalFacilitator::find_settlement`] answer reconciliation questions
//! without sending anything. `verify` of an already settled payment is
//! always refused (`invalid_exact_evm_nonce_already_used`).
//!
//! Unsupported kinds (a scheme other than `exact`, another network) are
//! [`FacilitatorError::Refused`] (400); RPC failures are
//! [`FacilitatorError::Unavailable`].
//!
//! # On anvil
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use pay402_backends::x402::LocalFacilitator;
//! use pay402_core::x402::Facilitator;
//! use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION};
//!
//! let chain = Anvil::start()?;
//! let usdc = chain.deploy_usdc()?;
//! let facilitator = LocalFacilitator::builder(chain.rpc_url())
//!     .signer(DEV_ACCOUNTS[1].private_key) // any funded key
//!     .network("eip155:31337")
//!     .allow_asset(usdc.address, USDC_NAME, USDC_VERSION) // required
//!     .receipt_timeout(Duration::from_secs(20))
//!     .build()
//!     .await?;
//! let supported = facilitator.supported().await?;
//! assert!(supported.supports(2, "exact", "eip155:31337"));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;
use async_trait::async_trait;
use pay402_core::problem::Reason;
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::exact::{self, SCHEME_EXACT, VerifiedExact};
use pay402_core::x402::{
    Facilitator, FacilitatorError, PaymentRequest, SettleResponse, SupportedKind,
    SupportedResponse, VerifyResponse,
};
use tracing::Instrument;

use super::builder::{Clock, LocalFacilitatorBuilder, Source};
use pay402_core::fault::Step;
use pay402_core::x402::settlements::{
    AuthorizationKey, Claimed, Outcome, OwnerId, SettlementRecord, SettlementState,
    SettlementStore, SettlementStoreError, SignNext, Signed,
};

use super::chain::{CallError, Chain, Fees, SendError, SignerSlot, Waited, moved, with_headroom};
use super::contract::{IEip3009, Movement, transfer_call};
use super::policy::{InFlight, Policy};

/// The default bound on waiting for a settlement's receipt (45 s, the bound
/// suggested for Base-like chains).
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_RECEIPT_TIMEOUT.as_secs(), 45);
/// ```
pub const DEFAULT_RECEIPT_TIMEOUT: Duration = Duration::from_secs(45);

/// The default per-request RPC timeout.
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_RPC_TIMEOUT.as_secs(), 10);
/// ```
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// How many blocks back an earlier settlement is searched for by default
/// (about 2.3 days of 2-second blocks).
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_LOG_LOOKBACK_BLOCKS, 100_000);
/// ```
pub const DEFAULT_LOG_LOOKBACK_BLOCKS: u64 = 100_000;

/// The default block range of one `eth_getLogs` request (many public RPCs
/// refuse larger ranges).
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_LOG_CHUNK_BLOCKS, 10_000);
/// ```
pub const DEFAULT_LOG_CHUNK_BLOCKS: u64 = 10_000;

/// The reason of a settlement transaction that was mined but reverted.
/// ```
/// assert_eq!(pay402_backends::x402::TRANSACTION_FAILED, "invalid_exact_evm_transaction_failed");
/// ```
pub const TRANSACTION_FAILED: &str = "invalid_exact_evm_transaction_failed";

/// The reason of a v1 payment whose payer lacks the funds.
/// ```
/// assert_eq!(pay402_backends::x402::INSUFFICIENT_FUNDS, "insufficient_funds");
/// ```
pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";

/// The reasons of the chain checks (reference strings).
pub mod reasons {
    /// `authorizationState` reverted: the token has no EIP-3009.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::EIP3009_NOT_SUPPORTED, "invalid_exact_evm_eip3009_not_supported");
    /// ```
    pub const EIP3009_NOT_SUPPORTED: &str = "invalid_exact_evm_eip3009_not_supported";
    /// The authorization's nonce is already used (or cancelled).
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::NONCE_ALREADY_USED, "invalid_exact_evm_nonce_already_used");
    /// ```
    pub const NONCE_ALREADY_USED: &str = "invalid_exact_evm_nonce_already_used";
    /// The token's `name()` differs from `extra.name`.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::TOKEN_NAME_MISMATCH, "invalid_exact_evm_token_name_mismatch");
    /// ```
    pub const TOKEN_NAME_MISMATCH: &str = "invalid_exact_evm_token_name_mismatch";
    /// The token's `version()` differs from `extra.version`.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::TOKEN_VERSION_MISMATCH, "invalid_exact_evm_token_version_mismatch");
    /// ```
    pub const TOKEN_VERSION_MISMATCH: &str = "invalid_exact_evm_token_version_mismatch";
    /// v2: the payer's balance is below the amount.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::INSUFFICIENT_BALANCE, "invalid_exact_evm_insufficient_balance");
    /// ```
    pub const INSUFFICIENT_BALANCE: &str = "invalid_exact_evm_insufficient_balance";
    /// The simulation reverted for another reason.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::SIMULATION_FAILED, "invalid_exact_evm_transaction_simulation_failed");
    /// ```
    pub const SIMULATION_FAILED: &str = "invalid_exact_evm_transaction_simulation_failed";
    /// The requirement's asset is not on the facilitator's allowlist.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::ASSET_NOT_ALLOWED, "facilitator_asset_not_allowed");
    /// ```
    pub const ASSET_NOT_ALLOWED: &str = "facilitator_asset_not_allowed";
    /// The payee is not on the facilitator's payee allowlist.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::PAYEE_NOT_ALLOWED, "facilitator_payee_not_allowed");
    /// ```
    pub const PAYEE_NOT_ALLOWED: &str = "facilitator_payee_not_allowed";
    /// The settlement needs more gas than the facilitator's ceiling.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::GAS_LIMIT_EXCEEDED, "facilitator_gas_limit_exceeded");
    /// ```
    pub const GAS_LIMIT_EXCEEDED: &str = "facilitator_gas_limit_exceeded";
    /// The current fee per gas is above the facilitator's ceiling.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::FEE_TOO_HIGH, "facilitator_fee_too_high");
    /// ```
    pub const FEE_TOO_HIGH: &str = "facilitator_fee_too_high";
    /// The facilitator's gas budget for the period is spent.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::GAS_BUDGET_EXHAUSTED, "facilitator_gas_budget_exhausted");
    /// ```
    pub const GAS_BUDGET_EXHAUSTED: &str = "facilitator_gas_budget_exhausted";
    /// The payer's balance does not cover this payment on top of the
    /// payer's settlements already in flight.
    /// ```
    /// # use pay402_backends::x402::reasons;
    /// assert_eq!(reasons::IN_FLIGHT_EXCEEDS_BALANCE, "facilitator_in_flight_exceeds_balance");
    /// ```
    pub const IN_FLIGHT_EXCEEDS_BALANCE: &str = "facilitator_in_flight_exceeds_balance";
}

/// The identity of an authorization on chain: (token, authorizer, nonce).
pub(super) type FlightKey = (Address, Address, B256);
pub(super) type FlightSlot = Arc<tokio::sync::Mutex<Option<B256>>>;

/// A facilitator that verifies against a chain and settles with its own
/// accounts. Cheap to clone (shared state).
///
/// See the [module docs](self) for the rules and an anvil example.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use pay402_backends::x402::LocalFacilitator;
/// use pay402_core::x402::Facilitator;
/// let f = LocalFacilitator::builder("http://127.0.0.1:8545")
///     .signer([7u8; 32])
///     .allow_asset(alloy::primitives::Address::repeat_byte(1), "USD Coin", "2")
///     .build()
///     .await?;
/// let shared: Arc<dyn Facilitator> = Arc::new(f);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalFacilitator {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) chain: Chain,
    pub(super) network: String,
    pub(super) slug: Option<&'static str>,
    pub(super) signers: Vec<SignerSlot>,
    pub(super) next_signer: AtomicUsize,
    pub(super) receipt_timeout: Duration,
    pub(super) gas_headroom_percent: u64,
    pub(super) idempotent_settle: bool,
    pub(super) clock: Clock,
    /// Settlements sent by this process and not yet final, by authorization.
    pub(super) in_flight: Mutex<HashMap<FlightKey, FlightSlot>>,
    /// Allowlists, gas and fee caps, gas budget.
    pub(super) policy: Policy,
    /// The values in flight per (asset, payer), reserved against the balance.
    pub(super) reserved: InFlight,
    /// Claims per authorization and the signers' nonces (shared by every
    /// facilitator process on one key when it is a database).
    pub(super) settlements: Arc<dyn SettlementStore>,
    /// How long a claim is its settle's alone (longer than the receipt wait).
    pub(super) claim_lease: Duration,
}

impl fmt::Debug for LocalFacilitator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalFacilitator")
            .field("network", &self.inner.network)
            .field("signers", &self.signers())
            .finish_non_exhaustive()
    }
}

/// Where a settlement transaction stands on chain
/// ([`LocalFacilitator::transaction_status`]).
///
/// ```
/// use pay402_backends::x402::TransactionStatus;
/// let s = TransactionStatus::Succeeded { block_number: 7 };
/// assert!(s.is_final());
/// assert!(!TransactionStatus::Pending.is_final());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Mined and successful.
    Succeeded {
        /// The block it was mined in.
        block_number: u64,
    },
    /// Mined and reverted: nothing moved.
    Reverted {
        /// The block it was mined in.
        block_number: u64,
    },
    /// Known to the node (in its mempool), not mined yet.
    Pending,
    /// Unknown to the node: never received, or dropped from the mempool.
    Unknown,
}

impl TransactionStatus {
    /// Whether the status can no longer change (mined, either way).
    ///
    /// ```
    /// use pay402_backends::x402::TransactionStatus;
    /// assert!(TransactionStatus::Reverted { block_number: 1 }.is_final());
    /// ```
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TransactionStatus::Succeeded { .. } | TransactionStatus::Reverted { .. }
        )
    }
}

/// A verdict: the payment is refused, with a reference reason.
struct Verdict {
    reason: &'static str,
    message: String,
}

/// A payment that passed the local checks.
struct Prepared {
    version: u32,
    network: String,
    payer: String,
    required: U256,
    extra_name: String,
    extra_version: String,
    call: IEip3009::transferWithAuthorizationCall,
    movement: Movement,
    /// The authorization's `validBefore` (unix seconds, saturated).
    valid_before: u64,
}

fn refused(message: String) -> FacilitatorError {
    FacilitatorError::Refused {
        status: 400,
        message,
    }
}

pub(super) fn store_unavailable(e: SettlementStoreError) -> FacilitatorError {
    FacilitatorError::Unavailable(e.to_string())
}

/// A `0x` hex signed transaction.
pub(super) fn decode_raw(raw: &str) -> Option<Vec<u8>> {
    hex::decode(raw.strip_prefix("0x").unwrap_or(raw)).ok()
}

/// The hash and signed bytes recorded on a `sent` claim.
pub(super) fn recorded_transaction(r: &SettlementRecord) -> Option<(B256, Vec<u8>)> {
    let hash = r.transaction.as_deref()?.parse::<B256>().ok()?;
    Some((hash, decode_raw(r.raw_transaction.as_deref()?)?))
}

/// The verdict on an authorization whose nonce is used (by this payment's
/// transaction or another).
fn nonce_used() -> Verdict {
    Verdict {
        reason: reasons::NONCE_ALREADY_USED,
        message: "the authorization's nonce is already used".into(),
    }
}

/// A fresh claim owner: unique across processes (pid) and within one
/// (a counter), unpredictable enough not to matter (it is no secret).
pub(super) fn new_owner() -> OwnerId {
    use sha2::{Digest, Sha256};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest = Sha256::new()
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(nanos.to_le_bytes())
        .chain_update(NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes())
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    OwnerId(id)
}

pub(super) fn unavailable(e: CallError) -> FacilitatorError {
    FacilitatorError::Unavailable(format!("chain RPC: {}", e.message()))
}

impl LocalFacilitator {
    /// Starts building a facilitator that talks to the node at `rpc_url`
    /// (`https://`, or `http://` on loopback) through pay402's own reqwest
    /// transport. Add at least one [`signer`](LocalFacilitatorBuilder::signer).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pay402_backends::x402::LocalFacilitatorError> {
    /// use pay402_backends::x402::LocalFacilitator;
    /// use pay402_testkit::anvil::{DEV_ACCOUNTS, FRESH_CHAIN_USDC, USDC_NAME, USDC_VERSION};
    /// let f = LocalFacilitator::builder("http://127.0.0.1:8545")
    ///     .signer(DEV_ACCOUNTS[1].private_key)
    ///     .network("eip155:31337")
    ///     .allow_asset(FRESH_CHAIN_USDC, USDC_NAME, USDC_VERSION)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(rpc_url: impl Into<String>) -> LocalFacilitatorBuilder {
        LocalFacilitatorBuilder::new(Source::Url(rpc_url.into()))
    }

    /// Starts building a facilitator over an existing alloy provider (for
    /// example one with your own transport or layers).
    ///
    /// ```no_run
    /// # async fn demo(provider: alloy::providers::DynProvider) -> Result<(), pay402_backends::x402::LocalFacilitatorError> {
    /// use pay402_backends::x402::LocalFacilitator;
    /// let f = LocalFacilitator::builder_with_provider(provider)
    ///     .signer([7u8; 32])
    ///     .allow_asset(alloy::primitives::Address::repeat_byte(1), "USD Coin", "2")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder_with_provider(provider: DynProvider) -> LocalFacilitatorBuilder {
        LocalFacilitatorBuilder::new(Source::Provider(provider))
    }

    /// The CAIP-2 network served (`eip155:<chain id>`).
    ///
    /// ```no_run
    /// # fn f(fac: &pay402_backends::x402::LocalFacilitator) { assert!(fac.network().starts_with("eip155:")); }
    /// ```
    pub fn network(&self) -> &str {
        &self.inner.network
    }

    /// The chain id served.
    ///
    /// ```no_run
    /// # fn f(fac: &pay402_backends::x402::LocalFacilitator) { let _id: u64 = fac.chain_id(); }
    /// ```
    pub fn chain_id(&self) -> u64 {
        self.inner.chain.chain_id
    }

    /// The facilitator accounts (they send settlements and pay gas).
    ///
    /// ```no_run
    /// # fn f(fac: &pay402_backends::x402::LocalFacilitator) { assert!(!fac.signers().is_empty()); }
    /// ```
    pub fn signers(&self) -> Vec<Address> {
        self.inner.signers.iter().map(|s| s.address).collect()
    }

    /// How long a settle's claim is its own (see
    /// [`LocalFacilitatorBuilder::claim_lease`]).
    ///
    /// ```no_run
    /// # fn f(fac: &pay402_backends::x402::LocalFacilitator) { assert!(fac.claim_lease().as_secs() > 0); }
    /// ```
    pub fn claim_lease(&self) -> Duration {
        self.inner.claim_lease
    }

    /// The settlement store (claims and nonces) it uses.
    ///
    /// ```no_run
    /// # async fn f(fac: &pay402_backends::x402::LocalFacilitator) {
    /// let open = fac.settlement_store().unfinished(10).await;
    /// # let _ = open; }
    /// ```
    pub fn settlement_store(&self) -> &Arc<dyn SettlementStore> {
        &self.inner.settlements
    }

    /// The provider it uses (for reads of your own).
    ///
    /// ```no_run
    /// # async fn f(fac: &pay402_backends::x402::LocalFacilitator) {
    /// use alloy::providers::Provider;
    /// let _block = fac.provider().get_block_number().await;
    /// # }
    /// ```
    pub fn provider(&self) -> &DynProvider {
        &self.inner.chain.provider
    }

    /// Where the transaction `transaction` (a `0x` hash, as returned in
    /// [`FacilitatorError::Pending`]) stands: for reconciling a pending
    /// settlement. Sends nothing.
    ///
    /// # Errors
    ///
    /// [`FacilitatorError::Refused`] for a malformed hash,
    /// [`FacilitatorError::Unavailable`] when the node cannot be asked.
    ///
    /// ```no_run
    /// # async fn f(fac: &pay402_backends::x402::LocalFacilitator) -> Result<(), pay402_core::x402::FacilitatorError> {
    /// use pay402_backends::x402::TransactionStatus;
    /// let status = fac.transaction_status("0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060").await?;
    /// if let TransactionStatus::Succeeded { block_number } = status { println!("paid in block {block_number}"); }
    /// # Ok(()) }
    /// ```
    pub async fn transaction_status(
        &self,
        transaction: &str,
    ) -> Result<TransactionStatus, FacilitatorError> {
        let hash: B256 = transaction
            .trim()
            .parse()
            .map_err(|_| refused(format!("{transaction:?} is not a transaction hash")))?;
        let chain = &self.inner.chain;
        if let Some(r) = chain.receipt(hash).await.map_err(unavailable)? {
            let block_number = r.block_number.unwrap_or_default();
            return Ok(if r.status() {
                TransactionStatus::Succeeded { block_number }
            } else {
                TransactionStatus::Reverted { block_number }
            });
        }
        Ok(if chain.is_known(hash).await.map_err(unavailable)? {
            TransactionStatus::Pending
        } else {
            TransactionStatus::Unknown
        })
    }

    /// The settlement of this payment on chain, if there is one: a
    /// successful transaction that used the authorization's nonce and moved
    /// exactly its `from`, `to` (which must be the requirement's `payTo`)
    /// and `value` on the requirement's asset. Sends nothing, and ignores
    /// the authorization's validity window (an old payment can be looked up).
    ///
    /// # Errors
    ///
    /// [`FacilitatorError::Refused`] for a kind this facilitator does not
    /// serve or a malformed requirement, [`FacilitatorError::Unavailable`]
    /// when the node cannot be asked.
    ///
    /// ```no_run
    /// # async fn f(fac: &pay402_backends::x402::LocalFacilitator, request: &pay402_core::x402::PaymentRequest) -> Result<(), pay402_core::x402::FacilitatorError> {
    /// match fac.find_settlement(request).await? {
    ///     Some(receipt) => println!("settled in {:?}", receipt.transaction),
    ///     None => println!("not settled (yet)"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn find_settlement(
        &self,
        request: &PaymentRequest,
    ) -> Result<Option<SettleResponse>, FacilitatorError> {
        let Some(movement) = self.movement_of(request)? else {
            return Ok(None);
        };
        let found = self
            .inner
            .chain
            .find_settlement(&movement)
            .await
            .map_err(unavailable)?;
        let from = &request.exact_payload().authorization.from;
        Ok(found.map(|tx| {
            SettleResponse::success(&tx.to_string(), request.network(), &from.to_string())
        }))
    }

    /// The transfer `request` authorizes, ignoring its validity window;
    /// `None` when it does not pay the requirement's `payTo`.
    pub(super) fn movement_of(
        &self,
        request: &PaymentRequest,
    ) -> Result<Option<Movement>, FacilitatorError> {
        self.check_kind(request)?;
        let (asset, pay_to) = match request {
            PaymentRequest::V1(r) => (
                &r.payment_requirements.asset,
                &r.payment_requirements.pay_to,
            ),
            PaymentRequest::V2(r) => (
                &r.payment_requirements.asset,
                &r.payment_requirements.pay_to,
            ),
        };
        let asset: EvmAddress = asset
            .parse()
            .map_err(|_| refused("requirement asset is not an address".into()))?;
        let pay_to: EvmAddress = pay_to
            .parse()
            .map_err(|_| refused("requirement payTo is not an address".into()))?;
        let a = &request.exact_payload().authorization;
        if a.to != pay_to {
            return Ok(None);
        }
        Ok(Some(Movement {
            asset: asset.0,
            from: a.from.0,
            to: a.to.0,
            value: a.value.0,
            nonce: B256::from(a.nonce.0),
        }))
    }

    fn check_kind(&self, request: &PaymentRequest) -> Result<(), FacilitatorError> {
        let scheme = request.scheme();
        if scheme != SCHEME_EXACT {
            return Err(refused(format!(
                "scheme {scheme:?} is not supported (only \"exact\")"
            )));
        }
        let network = request.network();
        let served = network == self.inner.network
            || (request.x402_version() == 1 && self.inner.slug == Some(network));
        if !served {
            return Err(refused(format!(
                "network {network:?} is not served by this facilitator (it serves {})",
                self.inner.network
            )));
        }
        Ok(())
    }

    /// Kind check, then core's local verification.
    fn prepare(
        &self,
        request: &PaymentRequest,
    ) -> Result<Result<Prepared, Verdict>, FacilitatorError> {
        self.check_kind(request)?;
        let now = (self.inner.clock)();
        let (checked, extra, required) = match request {
            PaymentRequest::V2(r) => (
                exact::verify_v2(&r.payment_payload, &r.payment_requirements, now),
                r.payment_requirements.extra.as_ref(),
                r.payment_requirements.amount.0,
            ),
            PaymentRequest::V1(r) => (
                exact::verify_v1(&r.payment_payload, &r.payment_requirements, now),
                r.payment_requirements.extra.as_ref(),
                r.payment_requirements.max_amount_required.0,
            ),
        };
        let verified: VerifiedExact = match checked {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(Verdict {
                    reason: e.reason(),
                    message: e.to_string(),
                }));
            }
        };
        let text = |f: fn(&pay402_core::x402::Extra) -> Option<&str>| {
            extra.and_then(f).unwrap_or_default().to_owned()
        };
        let (extra_name, extra_version) = (text(|e| e.name()), text(|e| e.version()));
        if let Some(v) = self.policy_verdict(&verified, &extra_name, &extra_version) {
            return Ok(Err(v));
        }
        let signature = request.exact_payload().signature.as_bytes();
        let Some(call) = transfer_call(&verified, signature) else {
            return Ok(Err(Verdict {
                reason: exact::ExactEvmError::Signature.reason(),
                message: "only 65-byte EOA signatures are settled".into(),
            }));
        };
        Ok(Ok(Prepared {
            version: request.x402_version(),
            network: request.network().to_owned(),
            payer: verified.payer.to_string(),
            required,
            extra_name,
            extra_version,
            movement: Movement::of(&verified),
            valid_before: u64::try_from(verified.authorization.valid_before.0).unwrap_or(u64::MAX),
            call,
        }))
    }

    /// The allowlists, checked before any RPC call: the asset and its
    /// EIP-712 domain, then the payee.
    fn policy_verdict(
        &self,
        verified: &VerifiedExact,
        extra_name: &str,
        extra_version: &str,
    ) -> Option<Verdict> {
        let policy = &self.inner.policy;
        let asset = verified.asset.0;
        let Some(allowed) = policy.assets.get(&asset) else {
            return Some(Verdict {
                reason: reasons::ASSET_NOT_ALLOWED,
                message: format!("the asset {asset} is not on this facilitator's allowlist"),
            });
        };
        if extra_name != allowed.name {
            return Some(Verdict {
                reason: reasons::TOKEN_NAME_MISMATCH,
                message: format!(
                    "the asset's EIP-712 name is {:?}, the requirement says {extra_name:?}",
                    allowed.name
                ),
            });
        }
        if extra_version != allowed.version {
            return Some(Verdict {
                reason: reasons::TOKEN_VERSION_MISMATCH,
                message: format!(
                    "the asset's EIP-712 version is {:?}, the requirement says {extra_version:?}",
                    allowed.version
                ),
            });
        }
        let payee = verified.authorization.to.0;
        if let Some(payees) = &policy.payees
            && !payees.contains(&payee)
        {
            return Some(Verdict {
                reason: reasons::PAYEE_NOT_ALLOWED,
                message: format!("the payee {payee} is not on this facilitator's allowlist"),
            });
        }
        None
    }

    /// The account simulations are made from.
    fn simulator(&self) -> Address {
        self.inner
            .signers
            .first()
            .map(|s| s.address)
            .unwrap_or_default()
    }

    fn pick_signer(&self) -> Option<&SignerSlot> {
        let signers = &self.inner.signers;
        if signers.is_empty() {
            return None;
        }
        let i = self.inner.next_signer.fetch_add(1, Ordering::Relaxed) % signers.len();
        signers.get(i)
    }

    /// v1 only: the reference checks the balance before anything else.
    async fn v1_balance(&self, p: &Prepared) -> Result<Option<Verdict>, FacilitatorError> {
        if p.version != 1 {
            return Ok(None);
        }
        let call = IEip3009::balanceOfCall {
            account: p.movement.from,
        };
        match self
            .inner
            .chain
            .call(self.simulator(), p.movement.asset, &call)
            .await
        {
            Ok(balance) if balance < p.required => Ok(Some(Verdict {
                reason: INSUFFICIENT_FUNDS,
                message: format!("balance {balance} is below the required {}", p.required),
            })),
            Ok(_) | Err(CallError::Revert(_)) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The on-chain checks of `verify`: v1 balance, then the simulation.
    async fn chain_checks(&self, p: &Prepared) -> Result<Option<Verdict>, FacilitatorError> {
        if let Some(v) = self.v1_balance(p).await? {
            return Ok(Some(v));
        }
        let chain = &self.inner.chain;
        let (code, simulated) = tokio::join!(
            chain.has_code(p.movement.asset),
            chain.call_capped(
                self.simulator(),
                p.movement.asset,
                &p.call,
                self.inner.policy.max_gas
            ),
        );
        if let Some(v) = Self::no_code(p, code.map_err(unavailable)?) {
            return Ok(Some(v));
        }
        match simulated {
            Ok(()) => Ok(None),
            Err(CallError::Revert(msg)) => Ok(Some(self.diagnose(p, msg).await)),
            Err(CallError::GasExceeded(msg)) => Ok(Some(self.gas_exceeded(msg))),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn gas_exceeded(&self, detail: String) -> Verdict {
        Verdict {
            reason: reasons::GAS_LIMIT_EXCEEDED,
            message: format!(
                "the settlement needs more than the {} gas ceiling ({detail})",
                self.inner.policy.max_gas
            ),
        }
    }

    /// The verdict for an asset without contract code.
    fn no_code(p: &Prepared, has_code: bool) -> Option<Verdict> {
        (!has_code).then(|| Verdict {
            reason: reasons::EIP3009_NOT_SUPPORTED,
            message: format!("the asset {} has no contract code", p.movement.asset),
        })
    }

    /// Explains a reverted simulation, like the reference facilitator.
    async fn diagnose(&self, p: &Prepared, revert: String) -> Verdict {
        let chain = &self.inner.chain;
        let (from, asset, sim) = (p.movement.from, p.movement.asset, self.simulator());
        let state_call = IEip3009::authorizationStateCall {
            authorizer: from,
            nonce: p.movement.nonce,
        };
        let balance_call = IEip3009::balanceOfCall { account: from };
        let (state, name, version, balance) = tokio::join!(
            chain.call(sim, asset, &state_call),
            chain.call(sim, asset, &IEip3009::nameCall {}),
            chain.call(sim, asset, &IEip3009::versionCall {}),
            chain.call(sim, asset, &balance_call),
        );
        let verdict = |reason, message| Verdict { reason, message };
        match state {
            Err(CallError::Revert(m)) => {
                return verdict(
                    reasons::EIP3009_NOT_SUPPORTED,
                    format!("authorizationState reverted: {m}"),
                );
            }
            Ok(true) => {
                return verdict(
                    reasons::NONCE_ALREADY_USED,
                    "the authorization's nonce is already used".into(),
                );
            }
            _ => {}
        }
        if let Ok(name) = name
            && name != p.extra_name
        {
            return verdict(
                reasons::TOKEN_NAME_MISMATCH,
                format!(
                    "the token's name() is {name:?}, the requirement says {:?}",
                    p.extra_name
                ),
            );
        }
        if let Ok(version) = version
            && version != p.extra_version
        {
            return verdict(
                reasons::TOKEN_VERSION_MISMATCH,
                format!(
                    "the token's version() is {version:?}, the requirement says {:?}",
                    p.extra_version
                ),
            );
        }
        if let Ok(balance) = balance
            && balance < p.required
        {
            let reason = if p.version == 1 {
                INSUFFICIENT_FUNDS
            } else {
                reasons::INSUFFICIENT_BALANCE
            };
            return verdict(
                reason,
                format!("balance {balance} is below the required {}", p.required),
            );
        }
        verdict(reasons::SIMULATION_FAILED, revert)
    }

    fn verify_failure(payer: String, v: Verdict) -> VerifyResponse {
        VerifyResponse {
            is_valid: false,
            invalid_reason: Some(v.reason.to_owned()),
            invalid_message: Some(v.message),
            payer: Some(payer),
        }
    }

    fn settle_failure(
        network: &str,
        payer: String,
        v: Verdict,
        transaction: Option<B256>,
    ) -> SettleResponse {
        SettleResponse {
            success: false,
            error_reason: Some(v.reason.to_owned()),
            error_message: Some(v.message),
            transaction: Some(transaction.map(|t| t.to_string()).unwrap_or_default()),
            network: network.to_owned(),
            payer: Some(payer),
            ..SettleResponse::default()
        }
    }

    async fn verify_inner(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let payer = request.exact_payload().authorization.from.to_string();
        let p = match self.prepare(request)? {
            Ok(p) => p,
            Err(v) => return Ok(Self::verify_failure(payer, v)),
        };
        if let Some(v) = self.chain_checks(&p).await? {
            tracing::info!(reason = v.reason, "payment refused");
            return Ok(Self::verify_failure(payer, v));
        }
        Ok(VerifyResponse {
            is_valid: true,
            payer: Some(p.payer),
            ..VerifyResponse::default()
        })
    }

    async fn settle_inner(
        &self,
        request: &PaymentRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        let payer = request.exact_payload().authorization.from.to_string();
        let p = match self.prepare(request)? {
            Ok(p) => p,
            Err(v) => return Ok(Self::settle_failure(request.network(), payer, v, None)),
        };
        let key = (p.movement.asset, p.movement.from, p.movement.nonce);
        let slot = self.flight_slot(key);
        let mut sent = slot.lock().await;
        let out = self.settle_locked(request, &p, &mut sent).await;
        let keep = matches!(out, Err(FacilitatorError::Pending { .. }));
        drop(sent);
        if !keep {
            self.land(key, &slot);
            // Mined, refused or never sent: no longer in flight (a pending
            // one keeps its reservation until it lands or expires).
            self.inner
                .reserved
                .release((p.movement.asset, p.movement.from), p.movement.nonce)
                .await;
        }
        out
    }

    fn flight_slot(&self, key: FlightKey) -> FlightSlot {
        let mut map = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(key).or_default().clone()
    }

    fn land(&self, key: FlightKey, slot: &FlightSlot) {
        let mut map = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(&key);
        }
    }

    fn pending(&self, p: &Prepared, hash: B256) -> FacilitatorError {
        FacilitatorError::Pending {
            transaction: hash.to_string(),
            network: p.network.clone(),
        }
    }

    fn success(p: &Prepared, hash: B256) -> SettleResponse {
        SettleResponse::success(&hash.to_string(), &p.network, &p.payer)
    }

    /// The store key of a payment's authorization.
    pub(super) fn authorization_key(&self, movement: &Movement) -> AuthorizationKey {
        AuthorizationKey::new(
            self.inner.chain.chain_id,
            &movement.asset.0.0,
            &movement.from.0.0,
            &movement.nonce.0,
        )
    }

    /// Claims the authorization in the settlement store, then settles: a
    /// claim held by another live settle is followed (its transaction, once
    /// it has one); a claim taken over from a dead one resumes its
    /// transaction; a new claim sends.
    async fn settle_locked(
        &self,
        request: &PaymentRequest,
        p: &Prepared,
        sent: &mut Option<B256>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let chain = &self.inner.chain;
        // Sent earlier by this process and not final yet: follow that one.
        if let Some(hash) = *sent {
            match chain.wait_receipt(hash, self.inner.receipt_timeout).await {
                Waited::Mined(r) => return self.outcome(p, hash, &r).await,
                Waited::NotYet => match chain.is_known(hash).await {
                    Ok(false) => {
                        tracing::warn!(%hash, "earlier settlement transaction was dropped");
                        *sent = None;
                    }
                    _ => return Err(self.pending(p, hash)),
                },
            }
        }
        let key = self.authorization_key(&p.movement);
        let owner = new_owner();
        let json = serde_json::to_string(request).map_err(|e| {
            FacilitatorError::Unavailable(format!("cannot record the request: {e}"))
        })?;
        let store = &self.inner.settlements;
        let deadline = tokio::time::Instant::now() + self.inner.receipt_timeout;
        let claimed = loop {
            let now = (self.inner.clock)();
            let lease = now.saturating_add_secs(self.inner.claim_lease.as_secs());
            match store
                .claim(&key, &owner, &json, lease, now)
                .await
                .map_err(store_unavailable)?
            {
                Claimed::Held(r) => {
                    if let Some(out) = self.follow_held(p, &r, deadline).await? {
                        return out;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(FacilitatorError::Unavailable(
                            "another facilitator process is settling this authorization".into(),
                        ));
                    }
                    tokio::time::sleep(chain.poll_interval).await;
                }
                other => break other,
            }
        };
        let out = match claimed {
            Claimed::TakenOver(r) if r.state == SettlementState::Sent => {
                self.resume(p, &key, &owner, &r, sent).await
            }
            _ => self.send_fresh(p, &key, &owner, sent).await,
        };
        if !matches!(out, Err(FacilitatorError::Pending { .. }))
            && let Err(e) = store.release(&key, &owner).await
        {
            // The lease runs out by itself.
            tracing::warn!(error = %e, "cannot release the settlement claim");
        }
        out
    }

    /// What to answer for a claim someone else holds: `Some` with the
    /// answer when there is one to give, `None` to look again.
    async fn follow_held(
        &self,
        p: &Prepared,
        r: &SettlementRecord,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Result<SettleResponse, FacilitatorError>>, FacilitatorError> {
        let Some(tx) = r
            .transaction
            .as_deref()
            .and_then(|t| t.parse::<B256>().ok())
        else {
            return Ok(None);
        };
        let left = if r.state == SettlementState::Succeeded {
            std::time::Duration::ZERO
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        Ok(Some(match self.inner.chain.wait_receipt(tx, left).await {
            // The claim is per (token, from, nonce): the transaction must
            // have moved exactly this payment.
            Waited::Mined(receipt) if receipt.status() && moved(&receipt, &p.movement) => {
                tracing::info!(%tx, "payment was already settled; answering its transaction");
                Ok(Self::success(p, tx))
            }
            Waited::Mined(receipt) if receipt.status() => Ok(Self::settle_failure(
                &p.network,
                p.payer.clone(),
                nonce_used(),
                None,
            )),
            Waited::Mined(receipt) => self.outcome(p, tx, &receipt).await,
            Waited::NotYet if r.state == SettlementState::Succeeded => {
                return Err(FacilitatorError::Unavailable(format!(
                    "the recorded settlement {tx} has no receipt on this node"
                )));
            }
            Waited::NotYet => Err(self.pending(p, tx)),
        }))
    }

    /// Resumes a `sent` claim taken over from a settle that died: its
    /// transaction mined, or still in the mempool, or sent again verbatim
    /// (same nonce: no gap); replaced by another transaction on its nonce,
    /// it is sent afresh.
    async fn resume(
        &self,
        p: &Prepared,
        key: &AuthorizationKey,
        owner: &OwnerId,
        r: &SettlementRecord,
        sent: &mut Option<B256>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let chain = &self.inner.chain;
        let Some((hash, raw)) = recorded_transaction(r) else {
            return Err(store_unavailable(SettlementStoreError::Corrupt(
                "a sent settlement without its transaction".into(),
            )));
        };
        *sent = Some(hash);
        tracing::info!(%hash, "resuming a settlement left unfinished");
        if let Some(receipt) = chain.receipt(hash).await.map_err(unavailable)? {
            return self.mined(p, key, owner, hash, &receipt).await;
        }
        if !chain.is_known(hash).await.map_err(unavailable)? {
            match chain.broadcast(&raw).await {
                Ok(()) => {}
                Err(SendError::NonceUsed(m)) => {
                    if let Some(receipt) = chain.receipt(hash).await.map_err(unavailable)? {
                        return self.mined(p, key, owner, hash, &receipt).await;
                    }
                    tracing::warn!(%hash, detail = %m, "settlement transaction was replaced; sending afresh");
                    *sent = None;
                    self.inner
                        .settlements
                        .unsend(key, owner, (self.inner.clock)())
                        .await
                        .map_err(store_unavailable)?;
                    return self.send_fresh(p, key, owner, sent).await;
                }
                Err(SendError::Rejected(m)) => {
                    return Err(FacilitatorError::Unavailable(format!(
                        "the node refused the recorded settlement transaction: {m}"
                    )));
                }
                Err(SendError::Ambiguous(_)) => return Err(self.pending(p, hash)),
            }
        }
        self.await_mined(p, key, owner, hash).await
    }

    /// The checks before sending, then sign (the nonce allocated in the
    /// store), record, broadcast and wait.
    async fn send_fresh(
        &self,
        p: &Prepared,
        key: &AuthorizationKey,
        owner: &OwnerId,
        sent: &mut Option<B256>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let chain = &self.inner.chain;
        let has_code = chain
            .has_code(p.movement.asset)
            .await
            .map_err(unavailable)?;
        if let Some(v) = Self::no_code(p, has_code) {
            return Ok(Self::settle_failure(&p.network, p.payer.clone(), v, None));
        }
        // Already used on chain?
        let state_call = IEip3009::authorizationStateCall {
            authorizer: p.movement.from,
            nonce: p.movement.nonce,
        };
        match chain
            .call(self.simulator(), p.movement.asset, &state_call)
            .await
        {
            Ok(false) => {}
            Ok(true) => {
                if self.inner.idempotent_settle
                    && let Some(tx) = chain
                        .find_settlement(&p.movement)
                        .await
                        .map_err(unavailable)?
                {
                    tracing::info!(%tx, "payment was already settled; answering its transaction");
                    return Ok(Self::success(p, tx));
                }
                return Ok(Self::settle_failure(
                    &p.network,
                    p.payer.clone(),
                    nonce_used(),
                    None,
                ));
            }
            Err(CallError::Revert(m)) => {
                return Ok(Self::settle_failure(
                    &p.network,
                    p.payer.clone(),
                    Verdict {
                        reason: reasons::EIP3009_NOT_SUPPORTED,
                        message: format!("authorizationState reverted: {m}"),
                    },
                    None,
                ));
            }
            Err(e) => return Err(unavailable(e)),
        }
        if let Some(v) = self.v1_balance(p).await? {
            return Ok(Self::settle_failure(&p.network, p.payer.clone(), v, None));
        }
        if let Some(v) = self.reserve(p).await? {
            tracing::info!(reason = v.reason, "settlement refused");
            return Ok(Self::settle_failure(&p.network, p.payer.clone(), v, None));
        }
        let Some(signer) = self.pick_signer() else {
            return Err(FacilitatorError::Unavailable(
                "no facilitator signer".into(),
            ));
        };
        let (gas_limit, fees) = match self.price(p, signer).await? {
            Ok(priced) => priced,
            Err(v) => {
                tracing::info!(reason = v.reason, "settlement refused");
                return Ok(Self::settle_failure(&p.network, p.payer.clone(), v, None));
            }
        };
        pay402_core::fault::point(Step::AfterVerify);
        let chain_id = chain.chain_id;
        let address = signer.address.to_string();
        let sign = |nonce: u64| -> Result<Signed, String> {
            let (hash, raw) =
                signer.sign(chain_id, nonce, p.movement.asset, &p.call, gas_limit, fees)?;
            Ok(Signed {
                transaction: hash.to_string(),
                raw: format!("0x{}", hex::encode(raw)),
            })
        };
        let store = &self.inner.settlements;
        let mut last = String::new();
        for _ in 0..3 {
            let floor = chain
                .pending_nonce(signer.address)
                .await
                .map_err(unavailable)?;
            let next = SignNext {
                key,
                owner,
                chain_id,
                signer: &address,
                floor,
                sign: &sign,
                now: (self.inner.clock)(),
            };
            let Some((nonce, signed)) = store.sign_next(next).await.map_err(store_unavailable)?
            else {
                return Err(FacilitatorError::Unavailable(
                    "the settlement claim was taken over by another facilitator".into(),
                ));
            };
            let hash: B256 = signed
                .transaction
                .parse()
                .map_err(|_| FacilitatorError::Unavailable("unreadable signed hash".into()))?;
            let raw = decode_raw(&signed.raw)
                .ok_or_else(|| FacilitatorError::Unavailable("unreadable signed bytes".into()))?;
            *sent = Some(hash);
            match chain.broadcast(&raw).await {
                Ok(()) => {
                    tracing::info!(%hash, signer = %signer.address, nonce, "settlement sent");
                    pay402_core::fault::point(Step::AfterSend);
                    return self.await_mined(p, key, owner, hash).await;
                }
                Err(SendError::NonceUsed(m)) => {
                    // Another sender used the nonce: take a fresh one.
                    tracing::warn!(signer = %signer.address, nonce, detail = %m, "nonce clash, resynchronising");
                    *sent = None;
                    store
                        .unsend(key, owner, (self.inner.clock)())
                        .await
                        .map_err(store_unavailable)?;
                    last = m;
                }
                Err(SendError::Rejected(m)) => {
                    *sent = None;
                    store
                        .unsend(key, owner, (self.inner.clock)())
                        .await
                        .map_err(store_unavailable)?;
                    self.fill_if_gap(signer, nonce, fees).await;
                    return Err(FacilitatorError::Unavailable(format!(
                        "the node refused the settlement transaction: {m}"
                    )));
                }
                Err(SendError::Ambiguous(detail)) => {
                    tracing::warn!(%hash, %detail, "settlement send outcome unknown; reporting pending");
                    return Err(self.pending(p, hash));
                }
            }
        }
        Err(FacilitatorError::Unavailable(format!(
            "the settlement transaction kept clashing on its nonce: {last}"
        )))
    }

    /// After a refused broadcast whose nonce could not be given back
    /// (another settlement took the next one), sends a zero-value transfer
    /// to itself on that nonce so the later transactions are not stuck.
    pub(super) async fn fill_if_gap(&self, signer: &SignerSlot, nonce: u64, fees: Fees) {
        let chain = &self.inner.chain;
        let next = self
            .inner
            .settlements
            .next_nonce(chain.chain_id, &signer.address.to_string())
            .await;
        if matches!(next, Ok(Some(n)) if n == nonce) {
            return; // given back
        }
        match signer.sign_filler(chain.chain_id, nonce, fees) {
            Ok(raw) => match chain.broadcast(&raw).await {
                Ok(()) => tracing::warn!(signer = %signer.address, nonce, "filled a nonce gap"),
                Err(e) => {
                    tracing::error!(signer = %signer.address, nonce, error = ?e, "nonce gap left: reconcile reports it")
                }
            },
            Err(e) => {
                tracing::error!(signer = %signer.address, nonce, error = %e, "cannot sign a nonce filler")
            }
        }
    }

    /// Waits for a broadcast transaction's receipt (bounded).
    async fn await_mined(
        &self,
        p: &Prepared,
        key: &AuthorizationKey,
        owner: &OwnerId,
        hash: B256,
    ) -> Result<SettleResponse, FacilitatorError> {
        match self
            .inner
            .chain
            .wait_receipt(hash, self.inner.receipt_timeout)
            .await
        {
            Waited::Mined(r) => self.mined(p, key, owner, hash, &r).await,
            Waited::NotYet => {
                tracing::warn!(%hash, "no receipt within the bound; reporting pending");
                Err(self.pending(p, hash))
            }
        }
    }

    /// The answer for a mined transaction, recorded in the store.
    async fn mined(
        &self,
        p: &Prepared,
        key: &AuthorizationKey,
        owner: &OwnerId,
        hash: B256,
        receipt: &TransactionReceipt,
    ) -> Result<SettleResponse, FacilitatorError> {
        pay402_core::fault::point(Step::AfterMined);
        let out = self.outcome(p, hash, receipt).await;
        if let Ok(answer) = &out {
            pay402_core::fault::point(Step::BeforeRecord);
            let (outcome, reason) = if answer.success {
                (Outcome::Succeeded, None)
            } else {
                (Outcome::Failed, answer.error_reason.as_deref())
            };
            let tx = answer.transaction.as_deref().filter(|t| !t.is_empty());
            if let Err(e) = self
                .inner
                .settlements
                .finish(key, owner, outcome, tx, reason, (self.inner.clock)())
                .await
            {
                // The chain holds the outcome; a reconcile records it.
                tracing::warn!(error = %e, "cannot record the settlement outcome");
            }
        }
        out
    }

    /// Reserves this payment's value against the payer's balance minus the
    /// payer's other settlements in flight (per asset), or the verdict when
    /// the balance cannot cover it. The ledger's lock is held across the
    /// balance read, so concurrent settlements of one payer are counted
    /// one after the other.
    async fn reserve(&self, p: &Prepared) -> Result<Option<Verdict>, FacilitatorError> {
        let ledger = self
            .inner
            .reserved
            .ledger((p.movement.asset, p.movement.from));
        let mut ledger = ledger.lock().await;
        ledger.prune((self.inner.clock)().0);
        let call = IEip3009::balanceOfCall {
            account: p.movement.from,
        };
        let balance = match self
            .inner
            .chain
            .call(self.simulator(), p.movement.asset, &call)
            .await
        {
            Ok(b) => b,
            Err(CallError::Revert(m)) => {
                return Ok(Some(Verdict {
                    reason: reasons::SIMULATION_FAILED,
                    message: format!("balanceOf reverted: {m}"),
                }));
            }
            Err(e) => return Err(unavailable(e)),
        };
        let others = ledger.others(&p.movement.nonce);
        if balance < p.movement.value {
            let reason = if p.version == 1 {
                INSUFFICIENT_FUNDS
            } else {
                reasons::INSUFFICIENT_BALANCE
            };
            return Ok(Some(Verdict {
                reason,
                message: format!("balance {balance} is below the required {}", p.required),
            }));
        }
        if balance < others.saturating_add(p.movement.value) {
            return Ok(Some(Verdict {
                reason: reasons::IN_FLIGHT_EXCEEDS_BALANCE,
                message: format!(
                    "balance {balance} does not cover {} on top of {others} in flight",
                    p.movement.value
                ),
            }));
        }
        ledger.insert(p.movement.nonce, p.movement.value, p.valid_before);
        Ok(None)
    }

    /// Estimates (capped at the gas ceiling), prices (capped at the fee
    /// ceiling), simulates the exact transaction and charges the gas budget:
    /// the gas limit and fees to send with, or the verdict refusing it.
    async fn price(
        &self,
        p: &Prepared,
        signer: &SignerSlot,
    ) -> Result<Result<(u64, super::chain::Fees), Verdict>, FacilitatorError> {
        let chain = &self.inner.chain;
        let policy = &self.inner.policy;
        let (asset, from) = (p.movement.asset, signer.address);
        // Simulate (and price) from the account that will send it.
        let gas = match chain.estimate(from, asset, &p.call, policy.max_gas).await {
            Ok(g) if g > policy.max_gas => {
                return Ok(Err(self.gas_exceeded(format!("estimated {g}"))));
            }
            Ok(g) => g,
            Err(CallError::Revert(m)) => return Ok(Err(self.diagnose(p, m).await)),
            Err(CallError::GasExceeded(m)) => return Ok(Err(self.gas_exceeded(m))),
            Err(e) => return Err(unavailable(e)),
        };
        let gas_limit = with_headroom(gas, self.inner.gas_headroom_percent).min(policy.max_gas);
        let fees = chain.fees().await.map_err(unavailable)?;
        if fees.max_per_gas() > policy.max_fee_per_gas {
            return Ok(Err(Verdict {
                reason: reasons::FEE_TOO_HIGH,
                message: format!(
                    "the fee per gas is {} wei, above the {} wei ceiling",
                    fees.max_per_gas(),
                    policy.max_fee_per_gas
                ),
            }));
        }
        match chain
            .simulate_exact(from, asset, &p.call, gas_limit, fees)
            .await
        {
            Ok(()) => {}
            Err(CallError::Revert(m)) => return Ok(Err(self.diagnose(p, m).await)),
            Err(CallError::GasExceeded(m)) => return Ok(Err(self.gas_exceeded(m))),
            Err(e) => return Err(unavailable(e)),
        }
        if !policy.budget.try_spend(gas_limit) {
            return Ok(Err(Verdict {
                reason: reasons::GAS_BUDGET_EXHAUSTED,
                message: "the facilitator's gas budget for this period is spent".into(),
            }));
        }
        Ok(Ok((gas_limit, fees)))
    }

    /// The answer for a mined settlement transaction.
    async fn outcome(
        &self,
        p: &Prepared,
        hash: B256,
        receipt: &TransactionReceipt,
    ) -> Result<SettleResponse, FacilitatorError> {
        // Success means the token emitted this very transfer, not only status 1.
        if receipt.status() && moved(receipt, &p.movement) {
            tracing::info!(%hash, "settled");
            return Ok(Self::success(p, hash));
        }
        // Reverted: another transaction may have settled this very payment first.
        if self.inner.idempotent_settle {
            // Unknown (lookup failed) is no verdict: never a false failure.
            if let Some(tx) = self
                .inner
                .chain
                .find_settlement(&p.movement)
                .await
                .map_err(unavailable)?
            {
                return Ok(Self::success(p, tx));
            }
        }
        tracing::warn!(%hash, "settlement transaction reverted");
        Ok(Self::settle_failure(
            &p.network,
            p.payer.clone(),
            Verdict {
                reason: TRANSACTION_FAILED,
                message: if receipt.status() {
                    "the settlement transaction moved no matching transfer".into()
                } else {
                    "the settlement transaction reverted".into()
                },
            },
            Some(hash),
        ))
    }
}

#[async_trait]
impl Facilitator for LocalFacilitator {
    async fn verify(&self, request: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        let span = tracing::info_span!(
            "x402_facilitator_verify",
            network = %request.network(),
            version = request.x402_version(),
            payer = %request.exact_payload().authorization.from,
        );
        self.verify_inner(request).instrument(span).await
    }

    async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        let span = tracing::info_span!(
            "x402_facilitator_settle",
            network = %request.network(),
            version = request.x402_version(),
            payer = %request.exact_payload().authorization.from,
        );
        self.settle_inner(request).instrument(span).await
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let kind = |version: u32, network: &str| SupportedKind {
            x402_version: version,
            scheme: SCHEME_EXACT.to_owned(),
            network: network.to_owned(),
            extra: None,
        };
        let network = &self.inner.network;
        let mut signers = BTreeMap::new();
        signers.insert(
            "eip155:*".to_owned(),
            self.signers().iter().map(|a| a.to_string()).collect(),
        );
        Ok(SupportedResponse {
            kinds: vec![
                kind(2, network),
                kind(1, self.inner.slug.unwrap_or(network)),
            ],
            extensions: Vec::new(),
            signers,
        })
    }
}
