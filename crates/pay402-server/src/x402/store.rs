//! Payment records: replay protection, settlements in flight, and the
//! `payment-identifier` response cache.
//!
//! Every x402 payment the layer accepts is first **reserved** in a
//! [`PaymentStore`] under its [`NonceKey`] `(network, asset, from, nonce)`:
//! the key under which the token contract itself makes an EIP-3009
//! authorization single-use. The reservation is one atomic store operation
//! (a `PRIMARY KEY` insert or a conditional `UPDATE` in SQLite and PostgreSQL, one critical
//! section in [`MemoryPaymentStore`]), taken **before** the handler runs, so
//! when the same payload arrives twice at once exactly one request owns it.
//!
//! A record moves through these states:
//!
//! ```text
//!            reserve                settle ok
//!   (none) ──────────▶ reserved ─────────────────▶ settled   (final: the nonce is spent)
//!                        │  ▲ │
//!        handler >= 400, │  │ │ settle pending / outcome unknown
//!        verify refused, │  │ ▼
//!        settle failed   │  └── pending    (the same payload coming back takes it over
//!                        ▼                  and settles again)
//!                     released  (nothing moved; the same payload may reserve again)
//! ```
//!
//! A reservation whose lease ran out (the process died mid-request) is
//! treated like `pending`: nobody knows whether its settlement was sent, so
//! the same payload may take it over and settle again (settlement is
//! idempotent for the local facilitator).
//!
//! Only the owner of a reservation (its [`AttemptId`]) can move it on: every
//! transition is conditional on the attempt, so a request whose lease was
//! taken over cannot overwrite the newer owner's outcome.
//!
//! ```
//! use pay402_server::x402::store::*;
//! use pay402_core::time::UnixTime;
//! use pay402_core::x402::TokenAmount;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryPaymentStore::new();
//! let now = UnixTime(1_000);
//! let key = NonceKey::new("eip155:31337", "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x01");
//! let claim = Claim::new(key.clone(), [7; 32], "{}", now.saturating_add_secs(600));
//! let Reservation::Acquired(first) = store.reserve(&claim, now).await.unwrap() else { panic!() };
//! // The same payload again, while the first request holds it:
//! assert_eq!(store.reserve(&claim.retry(), now).await.unwrap(), Reservation::InProgress);
//! store.mark_settled(&key, &first.attempt, "0xabc", "eyJ9", None, now).await.unwrap();
//! // Once settled, the nonce is spent.
//! assert!(matches!(store.reserve(&claim.retry(), now).await.unwrap(), Reservation::Spent { .. }));
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use pay402_core::time::UnixTime;
use rand::RngCore;

pub use crate::store::StoreError;

mod db;
mod postgres;
mod sqlite;
pub use postgres::PostgresPaymentStore;
pub use sqlite::SqlitePaymentStore;

/// Opens the payment store on `db` (see [`crate::database`]): a fresh
/// [`MemoryPaymentStore`], or a [`SqlitePaymentStore`] /
/// [`PostgresPaymentStore`] on the database's pool.
///
/// ```
/// use pay402_server::database::Database;
/// use pay402_server::x402::store::NonceKey;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let db = Database::open("sqlite::memory:", &Default::default()).await.unwrap();
/// let store = pay402_server::x402::store::open(&db).await.unwrap();
/// assert!(store.get(&NonceKey::new("eip155:1", "0xa", "0xb", "0x1")).await.unwrap().is_none());
/// # });
/// ```
pub async fn open(
    db: &crate::database::Database,
) -> Result<std::sync::Arc<dyn PaymentStore>, StoreError> {
    use crate::database::Database;
    Ok(match db {
        Database::Memory => std::sync::Arc::new(MemoryPaymentStore::new()),
        Database::Sqlite(pool) => {
            std::sync::Arc::new(SqlitePaymentStore::from_pool(pool.clone()).await?)
        }
        Database::Postgres(pool) => {
            std::sync::Arc::new(PostgresPaymentStore::from_pool(pool.clone()).await?)
        }
    })
}

/// Where an EIP-3009 authorization is single-use: `(network, asset, from,
/// nonce)`, normalised (CAIP-2 network, lowercase hex).
///
/// ```
/// use pay402_server::x402::store::NonceKey;
/// let k = NonceKey::new("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "0xAB5801a7D398351b8bE11C439e05C5B3259aeC9B", "0x00FF");
/// assert_eq!(k.as_str(), "eip155:8453/0x833589fcd6edb6e08f4c7c32d4f71b54bda02913/0xab5801a7d398351b8be11c439e05c5b3259aec9b/0x00ff");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NonceKey(String);

impl NonceKey {
    /// A key from its parts; hex parts are lowercased.
    ///
    /// ```
    /// use pay402_server::x402::store::NonceKey;
    /// assert_eq!(NonceKey::new("eip155:1", "0xA", "0xB", "0xC").as_str(), "eip155:1/0xa/0xb/0xc");
    /// ```
    pub fn new(network: &str, asset: &str, from: &str, nonce: &str) -> NonceKey {
        NonceKey(format!(
            "{network}/{}/{}/{}",
            asset.to_ascii_lowercase(),
            from.to_ascii_lowercase(),
            nonce.to_ascii_lowercase()
        ))
    }

    /// A key from its stored form (as [`NonceKey::as_str`] wrote it).
    ///
    /// ```
    /// use pay402_server::x402::store::NonceKey;
    /// let k = NonceKey::new("eip155:1", "0xa", "0xb", "0xc");
    /// assert_eq!(NonceKey::from_stored(k.as_str().to_owned()), k);
    /// ```
    pub fn from_stored(s: String) -> NonceKey {
        NonceKey(s)
    }

    /// The normalised key.
    ///
    /// ```
    /// use pay402_server::x402::store::NonceKey;
    /// assert!(NonceKey::new("eip155:1", "0xa", "0xb", "0xc").as_str().starts_with("eip155:1/"));
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The random id of one request's reservation: only its owner may move the
/// record on.
///
/// ```
/// use pay402_server::x402::store::AttemptId;
/// assert_ne!(AttemptId::random(), AttemptId::random());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttemptId(pub [u8; 16]);

impl AttemptId {
    /// A fresh random attempt id.
    ///
    /// ```
    /// let _ = pay402_server::x402::store::AttemptId::random();
    /// ```
    pub fn random() -> AttemptId {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        AttemptId(b)
    }
}

/// Where a payment record stands. See the module docs for the transitions.
///
/// ```
/// use pay402_server::x402::store::PaymentState;
/// assert_eq!(PaymentState::parse("pending"), Some(PaymentState::Pending));
/// assert_eq!(PaymentState::Settled.as_str(), "settled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentState {
    /// A request owns the payment (verifying, running the handler, settling).
    Reserved,
    /// Settlement was sent (or its outcome is unknown); the money may move.
    /// The same payload coming back settles again and is served.
    Pending,
    /// Settled on chain: the nonce is spent.
    Settled,
    /// Nothing moved (handler failed, payment refused, settlement refused):
    /// the same payload may be presented again.
    Released,
}

impl PaymentState {
    /// The stored name.
    ///
    /// ```
    /// assert_eq!(pay402_server::x402::store::PaymentState::Released.as_str(), "released");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Reserved => "reserved",
            PaymentState::Pending => "pending",
            PaymentState::Settled => "settled",
            PaymentState::Released => "released",
        }
    }

    /// Parses a stored name.
    ///
    /// ```
    /// assert_eq!(pay402_server::x402::store::PaymentState::parse("nope"), None);
    /// ```
    pub fn parse(s: &str) -> Option<PaymentState> {
        Some(match s {
            "reserved" => PaymentState::Reserved,
            "pending" => PaymentState::Pending,
            "settled" => PaymentState::Settled,
            "released" => PaymentState::Released,
            _ => return None,
        })
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A handler response kept for a payment: served again for the same
/// `payment-identifier`, or served once a pending settlement completes
/// (so the handler never runs twice for one payment).
///
/// ```
/// use pay402_server::x402::store::CachedResponse;
/// let r = CachedResponse { status: 200, content_type: Some("text/plain".into()), body: "hi".into() };
/// assert_eq!(r.body.len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// What a request asks the store to reserve.
///
/// ```
/// use pay402_server::x402::store::{Claim, NonceKey};
/// use pay402_core::time::UnixTime;
/// let c = Claim::new(NonceKey::new("eip155:1", "0xa", "0xb", "0xc"), [0; 32], "{}", UnixTime(60))
///     .with_payment_id(Some("pay_0123456789abcdef".into()));
/// assert_eq!(c.payment_id.as_deref(), Some("pay_0123456789abcdef"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The nonce key.
    pub key: NonceKey,
    /// SHA-256 of the requirement and the signed authorization: two claims
    /// with the same fingerprint are the same payment.
    pub fingerprint: [u8; 32],
    /// The client's `payment-identifier`, if any (unique across records).
    pub payment_id: Option<String>,
    /// This request's attempt id.
    pub attempt: AttemptId,
    /// Until when the reservation is this request's alone.
    pub lease_until: UnixTime,
    /// The payer address.
    pub payer: String,
    /// The network (CAIP-2).
    pub network: String,
    /// The amount, in the asset's base units (decimal).
    pub amount: String,
    /// The facilitator request (`{x402Version, paymentPayload,
    /// paymentRequirements}` JSON), kept so a pending settlement can be
    /// reconciled without the client.
    pub request: String,
}

impl Claim {
    /// A claim with a fresh attempt id and empty payer/network/amount.
    ///
    /// ```
    /// use pay402_server::x402::store::{Claim, NonceKey};
    /// let c = Claim::new(NonceKey::new("eip155:1", "0xa", "0xb", "0xc"), [1; 32], "{}", pay402_core::time::UnixTime(9));
    /// assert!(c.payment_id.is_none());
    /// ```
    pub fn new(
        key: NonceKey,
        fingerprint: [u8; 32],
        request: impl Into<String>,
        lease_until: UnixTime,
    ) -> Claim {
        Claim {
            key,
            fingerprint,
            payment_id: None,
            attempt: AttemptId::random(),
            lease_until,
            payer: String::new(),
            network: String::new(),
            amount: String::new(),
            request: request.into(),
        }
    }

    /// The same claim with a `payment-identifier`.
    ///
    /// ```
    /// # use pay402_server::x402::store::{Claim, NonceKey};
    /// let c = Claim::new(NonceKey::new("eip155:1", "0xa", "0xb", "0xc"), [1; 32], "{}", pay402_core::time::UnixTime(9))
    ///     .with_payment_id(None);
    /// assert!(c.payment_id.is_none());
    /// ```
    pub fn with_payment_id(mut self, id: Option<String>) -> Claim {
        self.payment_id = id;
        self
    }

    /// The same claim under a fresh attempt id (another request carrying the
    /// same payment).
    ///
    /// ```
    /// # use pay402_server::x402::store::{Claim, NonceKey};
    /// let c = Claim::new(NonceKey::new("eip155:1", "0xa", "0xb", "0xc"), [1; 32], "{}", pay402_core::time::UnixTime(9));
    /// assert_ne!(c.retry().attempt, c.attempt);
    /// ```
    pub fn retry(&self) -> Claim {
        Claim {
            attempt: AttemptId::random(),
            ..self.clone()
        }
    }
}

/// What the store found when a request tried to reserve a payment.
///
/// ```
/// use pay402_server::x402::store::Reservation;
/// assert_ne!(Reservation::InProgress, Reservation::IdConflict);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// This request owns the payment now.
    Acquired(Acquired),
    /// Another request owns the same payment right now.
    InProgress,
    /// The nonce is spent (settled). `cached` is the response kept for the
    /// same `payment-identifier` and payload, when there is one.
    Spent {
        /// The response to serve again (same id, same payload).
        cached: Option<CachedResponse>,
        /// The `PAYMENT-RESPONSE` header value of the settlement.
        payment_response: Option<String>,
    },
    /// The nonce key is already bound to another authorization.
    NonceConflict,
    /// The `payment-identifier` is already bound to another payload.
    IdConflict,
}

/// A reservation this request owns.
///
/// ```
/// use pay402_server::x402::store::{Acquired, AttemptId};
/// let a = Acquired { attempt: AttemptId::random(), resumed: None };
/// assert!(a.resumed.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// The attempt id the claim was made with.
    pub attempt: AttemptId,
    /// Set when an earlier attempt of the same payment left it pending (or
    /// died holding it): settle again before anything else.
    pub resumed: Option<Resumed>,
}

/// What an earlier attempt of the same payment left behind.
///
/// ```
/// use pay402_server::x402::store::{Resumed, PaymentState};
/// let r = Resumed { from: PaymentState::Pending, transaction: Some("0xabc".into()), response: None };
/// assert_eq!(r.from, PaymentState::Pending);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// The state taken over: `pending`, `released`, or `reserved` (an
    /// expired lease).
    pub from: PaymentState,
    /// The settlement transaction, when one was reported.
    pub transaction: Option<String>,
    /// The handler's response, kept when the settlement went pending after
    /// the handler ran: serve it once settled instead of running the
    /// handler again.
    pub response: Option<CachedResponse>,
}

impl Resumed {
    /// True when the earlier attempt may have sent a settlement (pending, or
    /// an expired reservation).
    ///
    /// ```
    /// use pay402_server::x402::store::{Resumed, PaymentState};
    /// assert!(!Resumed { from: PaymentState::Released, transaction: None, response: None }.may_have_settled());
    /// ```
    pub fn may_have_settled(&self) -> bool {
        self.from != PaymentState::Released
    }
}

/// One stored payment.
///
/// ```
/// use pay402_server::x402::store::{PaymentRecord, PaymentState};
/// fn is_done(r: &PaymentRecord) -> bool { r.state == PaymentState::Settled }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    /// The nonce key.
    pub key: NonceKey,
    /// The state.
    pub state: PaymentState,
    /// The payment fingerprint.
    pub fingerprint: [u8; 32],
    /// The `payment-identifier`, if the client sent one.
    pub payment_id: Option<String>,
    /// The payer.
    pub payer: String,
    /// The network (CAIP-2).
    pub network: String,
    /// The amount in base units.
    pub amount: String,
    /// The settlement transaction, once known.
    pub transaction: Option<String>,
    /// The `PAYMENT-RESPONSE` header value, once settled.
    pub payment_response: Option<String>,
    /// The kept handler response, if any.
    pub response: Option<CachedResponse>,
    /// The facilitator request JSON (for reconciliation).
    pub request: String,
    /// The reservation lease.
    pub lease_until: UnixTime,
    /// When the record was created.
    pub created_at: UnixTime,
    /// When the record last changed.
    pub updated_at: UnixTime,
}

/// A move of a payment record by the attempt that owns it: what
/// [`PaymentStore::transition`] applies (the provided methods
/// [`release`](PaymentStore::release),
/// [`mark_pending`](PaymentStore::mark_pending),
/// [`mark_settled`](PaymentStore::mark_settled),
/// [`attach_response`](PaymentStore::attach_response) and
/// [`renew`](PaymentStore::renew) build one each).
///
/// ```
/// use pay402_server::x402::store::{PaymentState, Transition};
/// let settled = Transition::Settled { transaction: "0xabc", payment_response: "eyJ9", response: None };
/// assert_eq!(settled.from_state(), PaymentState::Reserved);
/// assert_eq!(settled.to_state(), PaymentState::Settled);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition<'a> {
    /// `reserved → released`: nothing moved; the kept response is dropped.
    Release,
    /// `reserved → pending`: the settlement may still move the money.
    Pending {
        /// The settlement transaction, when known (else the stored one stays).
        transaction: Option<&'a str>,
        /// The handler's response, when it ran (else the stored one stays).
        response: Option<&'a CachedResponse>,
    },
    /// `reserved → settled`.
    Settled {
        /// The settlement transaction.
        transaction: &'a str,
        /// The `PAYMENT-RESPONSE` header value.
        payment_response: &'a str,
        /// The response to serve again for the same `payment-identifier`
        /// (replaces any kept one).
        response: Option<&'a CachedResponse>,
    },
    /// `settled → settled`, keeping the handler's response (settle-before:
    /// the handler runs after the settlement).
    AttachResponse(&'a CachedResponse),
    /// `reserved → reserved`, the lease extended to at least `lease_until`
    /// (never shortened).
    Renew {
        /// The new end of the lease.
        lease_until: UnixTime,
    },
}

impl Transition<'_> {
    /// The state the record must be in for the move to apply.
    ///
    /// ```
    /// use pay402_server::x402::store::{PaymentState, Transition};
    /// assert_eq!(Transition::Release.from_state(), PaymentState::Reserved);
    /// ```
    pub fn from_state(&self) -> PaymentState {
        match self {
            Transition::AttachResponse(_) => PaymentState::Settled,
            _ => PaymentState::Reserved,
        }
    }

    /// The state the record is in after the move.
    ///
    /// ```
    /// use pay402_server::x402::store::{PaymentState, Transition};
    /// assert_eq!(Transition::Release.to_state(), PaymentState::Released);
    /// ```
    pub fn to_state(&self) -> PaymentState {
        match self {
            Transition::Release => PaymentState::Released,
            Transition::Pending { .. } => PaymentState::Pending,
            Transition::Settled { .. } | Transition::AttachResponse(_) => PaymentState::Settled,
            Transition::Renew { .. } => PaymentState::Reserved,
        }
    }

    /// Applies the move to `record` (the owner and state already checked).
    fn apply(self, record: &mut PaymentRecord, now: UnixTime) {
        record.state = self.to_state();
        match self {
            Transition::Release => record.response = None,
            Transition::Pending {
                transaction,
                response,
            } => {
                if let Some(tx) = transaction {
                    record.transaction = Some(tx.to_owned());
                }
                if let Some(resp) = response {
                    record.response = Some(resp.clone());
                }
            }
            Transition::Settled {
                transaction,
                payment_response,
                response,
            } => {
                record.transaction = Some(transaction.to_owned());
                record.payment_response = Some(payment_response.to_owned());
                record.response = response.cloned();
            }
            Transition::AttachResponse(response) => record.response = Some(response.clone()),
            Transition::Renew { lease_until } => {
                record.lease_until = record.lease_until.max(lease_until);
            }
        }
        record.updated_at = now;
    }
}

/// Storage for x402 payment records. Implementations must make
/// [`PaymentStore::reserve`] atomic across every process sharing the store,
/// and every transition conditional on the attempt id.
///
/// ```
/// use std::sync::Arc;
/// use pay402_server::x402::store::{MemoryPaymentStore, PaymentStore};
/// let store: Arc<dyn PaymentStore> = Arc::new(MemoryPaymentStore::new());
/// # let _ = store;
/// ```
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// Reserves `claim.key` for `claim.attempt`: a new record, or a takeover
    /// of a released/pending/expired record with the same fingerprint.
    /// Otherwise explains why not.
    async fn reserve(&self, claim: &Claim, now: UnixTime) -> Result<Reservation, StoreError>;

    /// Applies `change` to the record under `key` if `attempt` still owns it
    /// in [`Transition::from_state`], as one conditional step (a check-and-set
    /// on the attempt id and the state). Returns whether it did: `false`
    /// tells a request whose reservation was taken over, or a record not in
    /// that state. Every method below is this one step; an implementation
    /// writes only this.
    async fn transition(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        change: Transition<'_>,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// `reserved → released` (nothing moved). Drops any kept response.
    /// Returns whether this attempt still owned the record.
    async fn release(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.transition(key, attempt, Transition::Release, now)
            .await
    }

    /// `reserved → pending`: the settlement may still move the money. Keeps
    /// the transaction (when known) and the handler's response (when it ran).
    async fn mark_pending(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        transaction: Option<&str>,
        response: Option<&CachedResponse>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let change = Transition::Pending {
            transaction,
            response,
        };
        self.transition(key, attempt, change, now).await
    }

    /// `reserved → settled`, with the receipt and (for a `payment-identifier`)
    /// the response to serve again.
    async fn mark_settled(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        transaction: &str,
        payment_response: &str,
        response: Option<&CachedResponse>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let change = Transition::Settled {
            transaction,
            payment_response,
            response,
        };
        self.transition(key, attempt, change, now).await
    }

    /// Keeps `response` on a record this attempt settled (settle-before: the
    /// handler runs after the settlement).
    async fn attach_response(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        response: &CachedResponse,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let change = Transition::AttachResponse(response);
        self.transition(key, attempt, change, now).await
    }

    /// Extends the lease of a reservation this attempt still owns to
    /// `lease_until` (never shortens it): a check-and-set on the attempt id,
    /// so a request whose reservation was taken over learns it here (`false`)
    /// and must not serve or settle. The layer calls it on a timer while the
    /// owner works, so a slow upload or handler keeps its reservation.
    async fn renew(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        lease_until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let change = Transition::Renew { lease_until };
        self.transition(key, attempt, change, now).await
    }

    /// Deletes up to `limit` `released` records last changed before
    /// `older_than` (free or failed requests leave them; nothing moved, so
    /// forgetting them loses nothing: the signed authorization itself still
    /// expires at its `validBefore`). Returns how many were deleted.
    async fn prune_released(&self, older_than: UnixTime, limit: usize)
    -> Result<usize, StoreError>;

    /// The record under `key`.
    async fn get(&self, key: &NonceKey) -> Result<Option<PaymentRecord>, StoreError>;

    /// Up to `limit` records in `state`, oldest first (for example the
    /// pending settlements to reconcile).
    async fn list(
        &self,
        state: PaymentState,
        limit: usize,
    ) -> Result<Vec<PaymentRecord>, StoreError>;
}

/// Whether a record in `state` with `lease_until` may be taken over at `now`
/// by a claim with the same fingerprint.
fn can_take_over(state: PaymentState, lease_until: UnixTime, now: UnixTime) -> bool {
    match state {
        PaymentState::Released | PaymentState::Pending => true,
        PaymentState::Reserved => lease_until < now,
        PaymentState::Settled => false,
    }
}

/// Why a claim that could not take a record over was refused.
fn explain(record: &PaymentRecord, claim: &Claim) -> Reservation {
    let same_id = claim.payment_id.is_some() && record.payment_id == claim.payment_id;
    if record.fingerprint != claim.fingerprint {
        return if same_id {
            Reservation::IdConflict
        } else {
            Reservation::NonceConflict
        };
    }
    match record.state {
        PaymentState::Settled => Reservation::Spent {
            cached: if same_id {
                record.response.clone()
            } else {
                None
            },
            payment_response: record.payment_response.clone(),
        },
        _ => Reservation::InProgress,
    }
}

#[derive(Default)]
struct Records {
    by_key: HashMap<NonceKey, PaymentRecord>,
    attempts: HashMap<NonceKey, AttemptId>,
    by_id: HashMap<String, NonceKey>,
}

/// An in-process store: one mutex around the records (lost on restart, not
/// shared between processes). For tests and single-process servers; use
/// [`SqlitePaymentStore`] to survive restarts.
///
/// ```
/// let store = pay402_server::x402::store::MemoryPaymentStore::new();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Default)]
pub struct MemoryPaymentStore {
    records: Mutex<Records>,
}

impl fmt::Debug for MemoryPaymentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPaymentStore")
            .field("records", &self.len())
            .finish()
    }
}

impl MemoryPaymentStore {
    /// An empty store.
    ///
    /// ```
    /// let _ = pay402_server::x402::store::MemoryPaymentStore::new();
    /// ```
    pub fn new() -> MemoryPaymentStore {
        MemoryPaymentStore::default()
    }

    /// How many records are stored.
    ///
    /// ```
    /// assert!(pay402_server::x402::store::MemoryPaymentStore::new().is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.records.lock().map(|r| r.by_key.len()).unwrap_or(0)
    }

    /// Whether the store is empty.
    ///
    /// ```
    /// assert!(pay402_server::x402::store::MemoryPaymentStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Records>, StoreError> {
        self.records
            .lock()
            .map_err(|_| StoreError::Unavailable("memory payment store lock poisoned".into()))
    }
}

#[async_trait]
impl PaymentStore for MemoryPaymentStore {
    async fn reserve(&self, claim: &Claim, now: UnixTime) -> Result<Reservation, StoreError> {
        let mut guard = self.lock()?;
        let records = &mut *guard;
        if let Some(record) = records.by_key.get_mut(&claim.key) {
            if record.fingerprint != claim.fingerprint
                || !can_take_over(record.state, record.lease_until, now)
            {
                return Ok(explain(record, claim));
            }
            if record.payment_id.is_none()
                && let Some(id) = &claim.payment_id
            {
                if records.by_id.contains_key(id) {
                    return Ok(Reservation::IdConflict);
                }
                records.by_id.insert(id.clone(), claim.key.clone());
                record.payment_id = Some(id.clone());
            }
            let resumed = Resumed {
                from: record.state,
                transaction: record.transaction.clone(),
                response: record.response.clone(),
            };
            record.state = PaymentState::Reserved;
            record.lease_until = claim.lease_until;
            record.updated_at = now;
            records.attempts.insert(claim.key.clone(), claim.attempt);
            return Ok(Reservation::Acquired(Acquired {
                attempt: claim.attempt,
                resumed: Some(resumed),
            }));
        }
        if let Some(id) = &claim.payment_id {
            if records.by_id.contains_key(id) {
                return Ok(Reservation::IdConflict);
            }
            records.by_id.insert(id.clone(), claim.key.clone());
        }
        records.by_key.insert(
            claim.key.clone(),
            PaymentRecord {
                key: claim.key.clone(),
                state: PaymentState::Reserved,
                fingerprint: claim.fingerprint,
                payment_id: claim.payment_id.clone(),
                payer: claim.payer.clone(),
                network: claim.network.clone(),
                amount: claim.amount.clone(),
                transaction: None,
                payment_response: None,
                response: None,
                request: claim.request.clone(),
                lease_until: claim.lease_until,
                created_at: now,
                updated_at: now,
            },
        );
        records.attempts.insert(claim.key.clone(), claim.attempt);
        Ok(Reservation::Acquired(Acquired {
            attempt: claim.attempt,
            resumed: None,
        }))
    }

    async fn transition(
        &self,
        key: &NonceKey,
        attempt: &AttemptId,
        change: Transition<'_>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut records = self.lock()?;
        if records.attempts.get(key) != Some(attempt) {
            return Ok(false);
        }
        match records.by_key.get_mut(key) {
            Some(r) if r.state == change.from_state() => {
                change.apply(r, now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn prune_released(
        &self,
        older_than: UnixTime,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut guard = self.lock()?;
        let records = &mut *guard;
        let mut doomed: Vec<(UnixTime, NonceKey)> = records
            .by_key
            .values()
            .filter(|r| r.state == PaymentState::Released && r.updated_at < older_than)
            .map(|r| (r.updated_at, r.key.clone()))
            .collect();
        doomed.sort();
        doomed.truncate(limit);
        for (_, key) in &doomed {
            if let Some(r) = records.by_key.remove(key)
                && let Some(id) = r.payment_id
            {
                records.by_id.remove(&id);
            }
            records.attempts.remove(key);
        }
        Ok(doomed.len())
    }

    async fn get(&self, key: &NonceKey) -> Result<Option<PaymentRecord>, StoreError> {
        Ok(self.lock()?.by_key.get(key).cloned())
    }

    async fn list(
        &self,
        state: PaymentState,
        limit: usize,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let records = self.lock()?;
        let mut out: Vec<PaymentRecord> = records
            .by_key
            .values()
            .filter(|r| r.state == state)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
        out.truncate(limit);
        Ok(out)
    }
}
