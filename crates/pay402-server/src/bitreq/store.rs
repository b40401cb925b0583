//! Persistence of the BitRequests server: quotes, on-chain redemptions, the
//! transfer ledger and payment channels.
//!
//! Every guarantee is enforced by the database, not by a process lock, so
//! several server processes can share one SQLite file or one PostgreSQL
//! database:
//!
//! - a transaction is redeemed once (`txid` primary key) and a quote is paid
//!   once (`quote_index` UNIQUE);
//! - a bit-transfer is applied once (its SHA-256 is the primary key), and the
//!   debit is a conditional `UPDATE … WHERE balance >= amount` in the same SQL
//!   transaction as the replay row and the merchant's credit;
//! - a channel payment is recorded with a compare-and-swap on the previous
//!   cumulative amount, and its token is redeemed by a conditional `UPDATE`
//!   that only matches an unredeemed token paying at least the price.
//!
//! [`SqliteBitreqStore`] is the embedded default; [`PostgresBitreqStore`]
//! is shared by several instances; [`MemoryBitreqStore`] keeps everything
//! in one process (tests, demos).

use async_trait::async_trait;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{OutPoint, Script, ScriptBuf, Transaction, Txid};
use pay402_core::bitreq::channel::ChannelPayment;
use pay402_core::bitreq::{BitreqError, ChannelParams, RedeemScript};
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;

pub use crate::store::StoreError;

mod db;
mod memory;
mod postgres;
mod sqlite;

pub use memory::MemoryBitreqStore;
pub use postgres::PostgresBitreqStore;
pub use sqlite::SqliteBitreqStore;

/// Opens the BitRequests store on `db` (see [`crate::database`]): a fresh
/// [`MemoryBitreqStore`], or a [`SqliteBitreqStore`] /
/// [`PostgresBitreqStore`] on the database's pool.
///
/// ```
/// use pay402_server::database::Database;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let db = Database::open("sqlite::memory:", &Default::default()).await.unwrap();
/// let store = pay402_server::bitreq::store::open(&db).await.unwrap();
/// assert_eq!(store.next_address_index().await.unwrap(), 0);
/// # });
/// ```
pub async fn open(
    db: &crate::database::Database,
) -> Result<std::sync::Arc<dyn BitreqStore>, StoreError> {
    use crate::database::Database;
    Ok(match db {
        Database::Memory => std::sync::Arc::new(MemoryBitreqStore::new()),
        Database::Sqlite(pool) => {
            std::sync::Arc::new(SqliteBitreqStore::from_pool(pool.clone()).await?)
        }
        Database::Postgres(pool) => {
            std::sync::Arc::new(PostgresBitreqStore::from_pool(pool.clone()).await?)
        }
    })
}

/// The largest balance the ledger holds (21 million bitcoin, in satoshis).
pub const MAX_BALANCE: Sat = Sat(2_100_000_000_000_000);

/// An on-chain quote: a derived address, its price and the resource it pays for.
///
/// ```
/// use pay402_server::bitreq::store::Quote;
/// use pay402_core::{money::Sat, time::UnixTime};
/// let q = Quote { index: 0, script_pubkey: bitcoin::ScriptBuf::new(), price: Sat(5_000),
///     resource: "GET /report".into(), created_at: UnixTime(0), expires_at: UnixTime(60) };
/// assert!(q.is_expired(UnixTime(61)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// The derivation index of the address.
    pub index: u32,
    /// The address's script.
    pub script_pubkey: ScriptBuf,
    /// The price quoted.
    pub price: Sat,
    /// `METHOD path` of the request it was quoted for.
    pub resource: String,
    /// When it was issued.
    pub created_at: UnixTime,
    /// Until when it can be paid.
    pub expires_at: UnixTime,
}

impl Quote {
    /// Whether the quote can no longer be paid at `now`.
    ///
    /// ```
    /// # use pay402_server::bitreq::store::Quote;
    /// # use pay402_core::{money::Sat, time::UnixTime};
    /// # let q = Quote { index: 0, script_pubkey: bitcoin::ScriptBuf::new(), price: Sat(5_000),
    /// #     resource: "GET /".into(), created_at: UnixTime(0), expires_at: UnixTime(60) };
    /// assert!(!q.is_expired(UnixTime(60)));
    /// ```
    pub fn is_expired(&self, now: UnixTime) -> bool {
        now > self.expires_at
    }
}

/// State of an on-chain redemption.
///
/// ```
/// assert_eq!(pay402_server::bitreq::store::OnChainState::Redeemed.as_str(), "redeemed");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnChainState {
    /// Broadcast, waiting for confirmations; not yet served.
    Pending,
    /// Served.
    Redeemed,
}

impl OnChainState {
    /// The stored name.
    ///
    /// ```
    /// assert_eq!(pay402_server::bitreq::store::OnChainState::Pending.as_str(), "pending");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            OnChainState::Pending => "pending",
            OnChainState::Redeemed => "redeemed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<OnChainState, StoreError> {
        match s {
            "pending" => Ok(OnChainState::Pending),
            "redeemed" => Ok(OnChainState::Redeemed),
            other => Err(StoreError::Corrupt(format!("on-chain state {other}"))),
        }
    }
}

/// An on-chain payment accepted by the server (kept for replay protection and
/// for refunds: it records the payer's return address).
///
/// ```
/// use bitcoin::hashes::Hash;
/// use pay402_server::bitreq::store::{OnChainRecord, OnChainState};
/// use pay402_core::{money::Sat, time::UnixTime};
/// let r = OnChainRecord { txid: bitcoin::Txid::all_zeros(), quote_index: Some(3), amount: Sat(5_000),
///     resource: "GET /report".into(), return_address: None, state: OnChainState::Redeemed, created_at: UnixTime(0) };
/// assert_eq!(r.quote_index, Some(3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnChainRecord {
    /// The transaction id (without witness).
    pub txid: Txid,
    /// The quote it paid, if addresses are derived.
    pub quote_index: Option<u32>,
    /// The amount paid to the merchant.
    pub amount: Sat,
    /// `METHOD path` it paid for.
    pub resource: String,
    /// The payer's `Return-Wallet-Address`, for refunds.
    pub return_address: Option<String>,
    /// Pending confirmations or redeemed.
    pub state: OnChainState,
    /// When it was first presented.
    pub created_at: UnixTime,
}

/// The outcome of [`BitreqStore::reserve_onchain`].
///
/// ```
/// let r = pay402_server::bitreq::store::Reservation::QuoteTaken;
/// assert!(!matches!(r, pay402_server::bitreq::store::Reservation::Reserved));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The record was inserted.
    Reserved,
    /// The txid is already recorded (the existing record).
    TxidUsed(OnChainRecord),
    /// Another transaction already paid this quote.
    QuoteTaken,
}

/// A ledger account.
///
/// ```
/// let a = pay402_server::bitreq::store::Account { username: "alice".into(), public_key: None,
///     balance: pay402_core::money::Sat(0) };
/// assert_eq!(a.balance.0, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The username (`payer` of transfers).
    pub username: String,
    /// The key transfers must be signed with (`None` for the merchant's own account).
    pub public_key: Option<PublicKey>,
    /// The balance.
    pub balance: Sat,
}

/// The outcome of [`BitreqStore::credit`].
///
/// ```
/// use pay402_server::bitreq::store::CreditOutcome;
/// assert_ne!(CreditOutcome::UnknownAccount, CreditOutcome::ReferenceConflict);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreditOutcome {
    /// Credited; the new balance.
    Credited {
        /// The balance after the credit.
        balance: Sat,
    },
    /// This reference was already applied with the same account and amount.
    AlreadyApplied {
        /// The current balance.
        balance: Sat,
    },
    /// No such account.
    UnknownAccount,
    /// The reference was used for another account or amount.
    ReferenceConflict,
    /// The balance would exceed [`MAX_BALANCE`].
    LimitExceeded,
}

/// A verified bit-transfer to apply.
///
/// ```
/// use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// use pay402_server::bitreq::store::TransferRecord;
/// use pay402_core::{money::Sat, time::UnixTime};
/// let pk = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
/// let t = TransferRecord { id: [0; 32], payer: "alice".into(), payer_key: pk, payee: "shop".into(),
///     amount: Sat(1_000), resource: "GET /r".into(), created_at: UnixTime(0) };
/// assert_eq!(t.amount.0, 1_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    /// SHA-256 of the exact `Bitcoin-Transfer` header: the replay key.
    pub id: [u8; 32],
    /// The paying account.
    pub payer: String,
    /// The key the signature verified against.
    pub payer_key: PublicKey,
    /// The credited account (the merchant).
    pub payee: String,
    /// The amount moved.
    pub amount: Sat,
    /// `METHOD path` it paid for.
    pub resource: String,
    /// When it was applied.
    pub created_at: UnixTime,
}

/// The outcome of [`BitreqStore::apply_transfer`].
///
/// ```
/// use pay402_server::bitreq::store::TransferOutcome;
/// assert_ne!(TransferOutcome::Replayed, TransferOutcome::UnknownPayer);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Debited and credited; the payer's new balance.
    Applied {
        /// The payer's balance after the debit.
        payer_balance: Sat,
    },
    /// This transfer was already applied.
    Replayed,
    /// The payer has no account.
    UnknownPayer,
    /// The payer's account has another key.
    KeyMismatch,
    /// The payer's balance is too low (nothing changed).
    InsufficientBalance {
        /// The payer's balance.
        balance: Sat,
    },
    /// The merchant's balance would exceed [`MAX_BALANCE`].
    LimitExceeded,
}

/// The server's state of a payment channel (two1's `confirming`, `ready`,
/// `closed`, plus `closing`: the final payment was broadcast, the deposit is
/// not yet spent in a block).
///
/// ```
/// use pay402_server::bitreq::store::ChannelState;
/// assert_eq!(ChannelState::Closing.status(), "closed");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Waiting for the deposit.
    Confirming,
    /// Accepting payments.
    Ready,
    /// Final payment broadcast.
    Closing,
    /// The deposit is spent.
    Closed,
}

impl ChannelState {
    /// The stored name.
    ///
    /// ```
    /// assert_eq!(pay402_server::bitreq::store::ChannelState::Ready.as_str(), "ready");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Confirming => "confirming",
            ChannelState::Ready => "ready",
            ChannelState::Closing => "closing",
            ChannelState::Closed => "closed",
        }
    }

    /// The `status` of `GET /payment/<id>` (two1's three names).
    ///
    /// ```
    /// assert_eq!(pay402_server::bitreq::store::ChannelState::Confirming.status(), "confirming");
    /// ```
    pub fn status(self) -> &'static str {
        match self {
            ChannelState::Confirming => "confirming",
            ChannelState::Ready => "ready",
            ChannelState::Closing | ChannelState::Closed => "closed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<ChannelState, StoreError> {
        match s {
            "confirming" => Ok(ChannelState::Confirming),
            "ready" => Ok(ChannelState::Ready),
            "closing" => Ok(ChannelState::Closing),
            "closed" => Ok(ChannelState::Closed),
            other => Err(StoreError::Corrupt(format!("channel state {other}"))),
        }
    }
}

/// A payment channel as the server stores it.
///
/// ```
/// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// use pay402_core::bitreq::{ExpiryEncoding, RedeemScript};
/// use pay402_core::{money::Sat, time::UnixTime};
/// use pay402_server::bitreq::store::{ChannelRecord, ChannelState};
/// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
/// let redeem = RedeemScript::new(k, k, 1_900_000_000, ExpiryEncoding::Two1Raw).unwrap();
/// let ch = ChannelRecord { deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
///     redeem_script: redeem.to_script(), expiry: 1_900_000_000, fee: Sat(10_000), min_output: Sat(1_000),
///     state: ChannelState::Ready, last_amount: Sat(0), latest_payment: None, close_txid: None,
///     created_at: UnixTime(0) };
/// assert_eq!(ch.params().unwrap().redeem, redeem);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The deposit's P2SH output (its txid is the channel id).
    pub deposit: OutPoint,
    /// The deposit output's value.
    pub deposit_value: Sat,
    /// The redeem script.
    pub redeem_script: ScriptBuf,
    /// The CLTV expiry (UNIX time).
    pub expiry: u32,
    /// The payment transaction fee agreed at open.
    pub fee: Sat,
    /// The minimum payment output agreed at open.
    pub min_output: Sat,
    /// The state.
    pub state: ChannelState,
    /// The last cumulative amount paid to the merchant.
    pub last_amount: Sat,
    /// The latest half-signed payment.
    pub latest_payment: Option<Transaction>,
    /// The txid of the fully signed payment broadcast at close.
    pub close_txid: Option<Txid>,
    /// When it was opened.
    pub created_at: UnixTime,
}

impl ChannelRecord {
    /// The core channel parameters (parses the redeem script).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ExpiryEncoding, RedeemScript};
    /// # use pay402_core::{money::Sat, time::UnixTime};
    /// # use pay402_server::bitreq::store::{ChannelRecord, ChannelState};
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_900_000_000, ExpiryEncoding::Two1Raw).unwrap();
    /// # let ch = ChannelRecord { deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     redeem_script: redeem.to_script(), expiry: 1_900_000_000, fee: Sat(10_000), min_output: Sat(1_000),
    /// #     state: ChannelState::Ready, last_amount: Sat(0), latest_payment: None, close_txid: None,
    /// #     created_at: UnixTime(0) };
    /// assert_eq!(ch.params().unwrap().fee, Sat(10_000));
    /// ```
    pub fn params(&self) -> Result<ChannelParams, BitreqError> {
        Ok(ChannelParams {
            redeem: RedeemScript::parse(&self.redeem_script)?,
            deposit: self.deposit,
            deposit_value: self.deposit_value,
            fee: self.fee,
            min_output: self.min_output,
        })
    }
}

/// The outcome of [`BitreqStore::record_payment`].
///
/// ```
/// assert_ne!(pay402_server::bitreq::store::PaymentOutcome::Stale, pay402_server::bitreq::store::PaymentOutcome::Recorded);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Recorded; the channel's amount moved forward.
    Recorded,
    /// The channel changed since it was read (another payment, or a state
    /// change): re-read and re-verify.
    Stale,
    /// A payment with this token is already recorded.
    TokenExists,
}

/// The outcome of [`BitreqStore::redeem_token`].
///
/// ```
/// use pay402_server::bitreq::store::RedeemOutcome;
/// assert_ne!(RedeemOutcome::Unknown, RedeemOutcome::AlreadyRedeemed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// Redeemed: what the token credited.
    Redeemed {
        /// The token's increment.
        increment: Sat,
        /// Its channel.
        deposit_txid: Txid,
    },
    /// No such token.
    Unknown,
    /// Already redeemed.
    AlreadyRedeemed,
    /// The increment is below the price; the token stays unredeemed.
    Underpaid {
        /// The token's increment.
        increment: Sat,
    },
    /// The channel is not in a state that allows redemption.
    NotUsable(ChannelState),
}

/// Storage of the BitRequests server. Implementations must make each method
/// atomic (see the module docs): they are called concurrently, possibly from
/// several processes sharing one database.
///
/// ```
/// use pay402_server::bitreq::store::{BitreqStore, MemoryBitreqStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryBitreqStore::new();
/// assert_eq!(store.next_address_index().await.unwrap(), 0);
/// assert_eq!(store.next_address_index().await.unwrap(), 1);
/// # });
/// ```
#[async_trait]
pub trait BitreqStore: Send + Sync + 'static {
    /// Allocates the next address derivation index (never handed out twice).
    async fn next_address_index(&self) -> Result<u32, StoreError>;
    /// Stores a quote ([`StoreError::Duplicate`] if its index or script exists).
    async fn insert_quote(&self, quote: &Quote) -> Result<(), StoreError>;
    /// The quote whose address has this script.
    async fn quote_by_script(&self, script: &Script) -> Result<Option<Quote>, StoreError>;
    /// Deletes quotes expired before `now`; returns how many.
    async fn purge_quotes(&self, now: UnixTime) -> Result<u64, StoreError>;
    /// How many quotes are stored (expired or not): the layer stops handing
    /// out derived addresses past [`OnChainConfig::max_open_quotes`](crate::bitreq::OnChainConfig::max_open_quotes).
    async fn count_quotes(&self) -> Result<u64, StoreError>;

    /// Records an on-chain payment unless its txid or quote is already used.
    async fn reserve_onchain(&self, record: &OnChainRecord) -> Result<Reservation, StoreError>;
    /// Deletes a reservation (its broadcast failed); `true` if it existed.
    async fn release_onchain(&self, txid: &Txid) -> Result<bool, StoreError>;
    /// `pending` → `redeemed`; `true` only for the caller that made the change.
    async fn confirm_onchain(&self, txid: &Txid) -> Result<bool, StoreError>;
    /// The record of a txid.
    async fn onchain(&self, txid: &Txid) -> Result<Option<OnChainRecord>, StoreError>;

    /// Opens a ledger account with a zero balance; `false` if it exists.
    async fn open_account(&self, username: &str, key: &PublicKey) -> Result<bool, StoreError>;
    /// An account.
    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError>;
    /// Credits an account, once per `reference` (idempotent).
    async fn credit(
        &self,
        username: &str,
        amount: Sat,
        reference: &str,
    ) -> Result<CreditOutcome, StoreError>;
    /// Applies a transfer in one SQL transaction: replay row, conditional
    /// debit of the payer (key and balance checked), credit of the payee
    /// (created if missing). Nothing changes unless it returns `Applied`.
    async fn apply_transfer(&self, t: &TransferRecord) -> Result<TransferOutcome, StoreError>;

    /// Stores a new channel; `false` if its deposit txid is already used.
    async fn insert_channel(&self, channel: &ChannelRecord) -> Result<bool, StoreError>;
    /// A channel by deposit txid.
    async fn channel(&self, deposit_txid: &Txid) -> Result<Option<ChannelRecord>, StoreError>;
    /// Channels in any of `states` (for the sync task).
    async fn channels_in(&self, states: &[ChannelState]) -> Result<Vec<ChannelRecord>, StoreError>;
    /// Compare-and-swap of the state; `true` if it was `from` and is now `to`.
    async fn set_channel_state(
        &self,
        deposit_txid: &Txid,
        from: ChannelState,
        to: ChannelState,
    ) -> Result<bool, StoreError>;
    /// Records a verified payment: the spend row (UNIQUE token) and the new
    /// amount and latest transaction, only if the channel is `ready` and its
    /// amount is still `expected_last`.
    async fn record_payment(
        &self,
        deposit_txid: &Txid,
        expected_last: Sat,
        payment: &ChannelPayment,
        tx: &Transaction,
    ) -> Result<PaymentOutcome, StoreError>;
    /// Redeems a token for `price`: only an unredeemed token with
    /// `increment >= price` of a `ready` or `closing` channel.
    async fn redeem_token(&self, token: &Txid, price: Sat) -> Result<RedeemOutcome, StoreError>;
    /// `from` → `closing` with the close txid, only if the amount is still
    /// `expected_last` (so the close carries the latest payment).
    async fn begin_close(
        &self,
        deposit_txid: &Txid,
        from: ChannelState,
        expected_last: Sat,
        close_txid: &Txid,
    ) -> Result<bool, StoreError>;
    /// `closing` → `ready` after a failed broadcast of `close_txid`.
    async fn abort_close(&self, deposit_txid: &Txid, close_txid: &Txid)
    -> Result<bool, StoreError>;
}

#[async_trait]
impl<T: BitreqStore + ?Sized> BitreqStore for std::sync::Arc<T> {
    async fn next_address_index(&self) -> Result<u32, StoreError> {
        (**self).next_address_index().await
    }
    async fn insert_quote(&self, quote: &Quote) -> Result<(), StoreError> {
        (**self).insert_quote(quote).await
    }
    async fn quote_by_script(&self, script: &Script) -> Result<Option<Quote>, StoreError> {
        (**self).quote_by_script(script).await
    }
    async fn purge_quotes(&self, now: UnixTime) -> Result<u64, StoreError> {
        (**self).purge_quotes(now).await
    }
    async fn count_quotes(&self) -> Result<u64, StoreError> {
        (**self).count_quotes().await
    }
    async fn reserve_onchain(&self, record: &OnChainRecord) -> Result<Reservation, StoreError> {
        (**self).reserve_onchain(record).await
    }
    async fn release_onchain(&self, txid: &Txid) -> Result<bool, StoreError> {
        (**self).release_onchain(txid).await
    }
    async fn confirm_onchain(&self, txid: &Txid) -> Result<bool, StoreError> {
        (**self).confirm_onchain(txid).await
    }
    async fn onchain(&self, txid: &Txid) -> Result<Option<OnChainRecord>, StoreError> {
        (**self).onchain(txid).await
    }
    async fn open_account(&self, username: &str, key: &PublicKey) -> Result<bool, StoreError> {
        (**self).open_account(username, key).await
    }
    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        (**self).account(username).await
    }
    async fn credit(
        &self,
        username: &str,
        amount: Sat,
        reference: &str,
    ) -> Result<CreditOutcome, StoreError> {
        (**self).credit(username, amount, reference).await
    }
    async fn apply_transfer(&self, t: &TransferRecord) -> Result<TransferOutcome, StoreError> {
        (**self).apply_transfer(t).await
    }
    async fn insert_channel(&self, channel: &ChannelRecord) -> Result<bool, StoreError> {
        (**self).insert_channel(channel).await
    }
    async fn channel(&self, deposit_txid: &Txid) -> Result<Option<ChannelRecord>, StoreError> {
        (**self).channel(deposit_txid).await
    }
    async fn channels_in(&self, states: &[ChannelState]) -> Result<Vec<ChannelRecord>, StoreError> {
        (**self).channels_in(states).await
    }
    async fn set_channel_state(
        &self,
        deposit_txid: &Txid,
        from: ChannelState,
        to: ChannelState,
    ) -> Result<bool, StoreError> {
        (**self).set_channel_state(deposit_txid, from, to).await
    }
    async fn record_payment(
        &self,
        deposit_txid: &Txid,
        expected_last: Sat,
        payment: &ChannelPayment,
        tx: &Transaction,
    ) -> Result<PaymentOutcome, StoreError> {
        (**self)
            .record_payment(deposit_txid, expected_last, payment, tx)
            .await
    }
    async fn redeem_token(&self, token: &Txid, price: Sat) -> Result<RedeemOutcome, StoreError> {
        (**self).redeem_token(token, price).await
    }
    async fn begin_close(
        &self,
        deposit_txid: &Txid,
        from: ChannelState,
        expected_last: Sat,
        close_txid: &Txid,
    ) -> Result<bool, StoreError> {
        (**self)
            .begin_close(deposit_txid, from, expected_last, close_txid)
            .await
    }
    async fn abort_close(
        &self,
        deposit_txid: &Txid,
        close_txid: &Txid,
    ) -> Result<bool, StoreError> {
        (**self).abort_close(deposit_txid, close_txid).await
    }
}
