//! The x402 facilitator's settlement state, shared by every facilitator
//! process settling from one key: which authorizations are being settled
//! (and with which transaction), and the settling accounts' transaction
//! nonces.
//!
//! A [`SettlementStore`] is the port; core holds the in-process
//! [`MemorySettlementStore`], pay402-server the SQLite and PostgreSQL ones
//! (`pay402_server::x402::settlements::open`). The rules every
//! implementation keeps, in one atomic step each:
//!
//! - **One settlement per authorization.** [`SettlementStore::claim`] is an
//!   insert under the [`AuthorizationKey`] `(chain, token, from, nonce)`
//!   that fails when the key exists (`INSERT … ON CONFLICT DO NOTHING`);
//!   a claim whose owner died (its lease ran out) or whose transaction
//!   reverted is taken over by one conditional update. Only the owner
//!   (its [`OwnerId`]) moves a claim on.
//! - **One transaction per nonce.** [`SettlementStore::sign_next`]
//!   allocates the settling account's next nonce (a row per `(chain,
//!   address)`, raised to at least the chain's pending nonce), has the
//!   transaction signed with it and records the signed transaction on the
//!   claim, all in one database transaction: a crash in between allocates
//!   nothing. A recorded transaction that was never broadcast is sent again
//!   verbatim by whoever takes the claim over (or by a reconcile), so no
//!   allocated nonce is left as a gap.
//!
//! ```text
//!   claim           sign_next                finish(succeeded)
//! (none) ──▶ claimed ─────────▶ sent ──────────────────────────▶ succeeded (final)
//!              │  ▲              │ │ finish(failed)
//!      release │  └── unsend ────┘ └───────────────▶ failed (may be claimed again)
//!              ▼   (rejected by the node / replaced)
//!           (none)
//! ```
//!
//! ```
//! use pay402_core::time::UnixTime;
//! use pay402_core::x402::settlements::*;
//! # futures_lite(async {
//! let store = MemorySettlementStore::new();
//! let key = AuthorizationKey::new(31337, &[1; 20], &[2; 20], &[3; 32]);
//! let me = OwnerId([7; 16]);
//! let now = UnixTime(1_000);
//! assert!(matches!(store.claim(&key, &me, "{}", UnixTime(1_060), now).await.unwrap(), Claimed::New));
//! // Another process, the same authorization: held.
//! assert!(matches!(store.claim(&key, &OwnerId([8; 16]), "{}", UnixTime(1_060), now).await.unwrap(), Claimed::Held(_)));
//! let sign = |nonce: u64| -> Result<Signed, String> { Ok(Signed { transaction: format!("0x{nonce:02x}"), raw: "0x00".into() }) };
//! let next = SignNext { key: &key, owner: &me, chain_id: 31337, signer: "0xabc", floor: 5, sign: &sign, now };
//! let signed = store.sign_next(next).await.unwrap().unwrap();
//! assert_eq!(signed.0, 5); // the chain's pending nonce was 5
//! assert!(store.finish(&key, &me, Outcome::Succeeded, Some("0x05"), None, now).await.unwrap());
//! # });
//! # fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
//! #     let mut f = std::pin::pin!(f);
//! #     let waker = std::task::Waker::noop();
//! #     match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) { std::task::Poll::Ready(v) => v, _ => unreachable!() }
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::problem::Reason;
use crate::time::UnixTime;

/// Why the settlement store could not answer.
///
/// ```
/// use pay402_core::problem::Reason;
/// use pay402_core::x402::settlements::SettlementStoreError;
/// assert_eq!(SettlementStoreError::Unavailable("down".into()).reason(), "facilitator_store_unavailable");
/// assert_eq!(SettlementStoreError::Unavailable("down".into()).status(), 503);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettlementStoreError {
    /// The database cannot be reached (retry later).
    #[error("facilitator store unavailable: {0}")]
    Unavailable(String),
    /// A stored value cannot be read back.
    #[error("facilitator store corrupt: {0}")]
    Corrupt(String),
}

impl Reason for SettlementStoreError {
    fn reason(&self) -> &'static str {
        match self {
            SettlementStoreError::Unavailable(_) => "facilitator_store_unavailable",
            SettlementStoreError::Corrupt(_) => "facilitator_store_corrupt",
        }
    }
    fn status(&self) -> u16 {
        match self {
            SettlementStoreError::Unavailable(_) => 503,
            SettlementStoreError::Corrupt(_) => 500,
        }
    }
}

/// Where an EIP-3009 authorization is single-use on chain: `(chain id,
/// token, from, nonce)`, as `"<chain>/0x<token>/0x<from>/0x<nonce>"` in
/// lowercase hex.
///
/// ```
/// use pay402_core::x402::settlements::AuthorizationKey;
/// let k = AuthorizationKey::new(8453, &[0xab; 20], &[1; 20], &[0; 32]);
/// assert!(k.as_str().starts_with("8453/0xabab"));
/// assert_eq!(k.chain_id(), Some(8453));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthorizationKey(String);

impl AuthorizationKey {
    /// The key of an authorization.
    ///
    /// ```
    /// use pay402_core::x402::settlements::AuthorizationKey;
    /// let k = AuthorizationKey::new(1, &[0; 20], &[0; 20], &[0; 32]);
    /// assert_eq!(k.as_str().len(), 1 + 1 + 42 + 1 + 42 + 1 + 66);
    /// ```
    pub fn new(chain_id: u64, token: &[u8; 20], from: &[u8; 20], nonce: &[u8; 32]) -> Self {
        AuthorizationKey(format!(
            "{chain_id}/0x{}/0x{}/0x{}",
            hex::encode(token),
            hex::encode(from),
            hex::encode(nonce)
        ))
    }

    /// A key from its stored form.
    ///
    /// ```
    /// use pay402_core::x402::settlements::AuthorizationKey;
    /// let k = AuthorizationKey::new(1, &[0; 20], &[0; 20], &[0; 32]);
    /// assert_eq!(AuthorizationKey::from_stored(k.as_str().to_owned()), k);
    /// ```
    pub fn from_stored(s: String) -> Self {
        AuthorizationKey(s)
    }

    /// The stored form.
    ///
    /// ```
    /// # use pay402_core::x402::settlements::AuthorizationKey;
    /// assert!(AuthorizationKey::new(1, &[0; 20], &[0; 20], &[0; 32]).as_str().starts_with("1/0x"));
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The chain id part.
    ///
    /// ```
    /// # use pay402_core::x402::settlements::AuthorizationKey;
    /// assert_eq!(AuthorizationKey::from_stored("x".into()).chain_id(), None);
    /// ```
    pub fn chain_id(&self) -> Option<u64> {
        self.0.split('/').next()?.parse().ok()
    }
}

impl fmt::Display for AuthorizationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The random id of one settle call's claim.
///
/// ```
/// use pay402_core::x402::settlements::OwnerId;
/// assert_ne!(OwnerId([1; 16]), OwnerId([2; 16]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnerId(pub [u8; 16]);

/// Where a claimed settlement stands.
///
/// ```
/// use pay402_core::x402::settlements::SettlementState;
/// assert_eq!(SettlementState::parse("sent"), Some(SettlementState::Sent));
/// assert_eq!(SettlementState::Succeeded.as_str(), "succeeded");
/// assert!(SettlementState::Succeeded.is_final());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SettlementState {
    /// Claimed; no transaction signed yet.
    Claimed,
    /// A transaction is signed and recorded (broadcast, or about to be).
    Sent,
    /// Mined and the payment moved: final.
    Succeeded,
    /// Mined and reverted (nothing moved): the authorization may be claimed
    /// again.
    Failed,
}

impl SettlementState {
    /// The stored name.
    ///
    /// ```
    /// assert_eq!(pay402_core::x402::settlements::SettlementState::Claimed.as_str(), "claimed");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementState::Claimed => "claimed",
            SettlementState::Sent => "sent",
            SettlementState::Succeeded => "succeeded",
            SettlementState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    ///
    /// ```
    /// assert_eq!(pay402_core::x402::settlements::SettlementState::parse("x"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "claimed" => SettlementState::Claimed,
            "sent" => SettlementState::Sent,
            "succeeded" => SettlementState::Succeeded,
            "failed" => SettlementState::Failed,
            _ => return None,
        })
    }

    /// Whether nothing will change it any more (succeeded).
    ///
    /// ```
    /// assert!(!pay402_core::x402::settlements::SettlementState::Failed.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        self == SettlementState::Succeeded
    }
}

/// How a settlement ended ([`SettlementStore::finish`]).
///
/// ```
/// use pay402_core::x402::settlements::{Outcome, SettlementState};
/// assert_eq!(Outcome::Failed.state(), SettlementState::Failed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Mined, and the payment moved.
    Succeeded,
    /// Mined and reverted, or moved nothing.
    Failed,
}

impl Outcome {
    /// The state it leaves.
    ///
    /// ```
    /// use pay402_core::x402::settlements::{Outcome, SettlementState};
    /// assert_eq!(Outcome::Succeeded.state(), SettlementState::Succeeded);
    /// ```
    pub fn state(self) -> SettlementState {
        match self {
            Outcome::Succeeded => SettlementState::Succeeded,
            Outcome::Failed => SettlementState::Failed,
        }
    }
}

/// One stored settlement.
///
/// ```
/// use pay402_core::x402::settlements::{SettlementRecord, SettlementState};
/// fn unfinished(r: &SettlementRecord) -> bool { !r.state.is_final() }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementRecord {
    /// The authorization.
    pub key: AuthorizationKey,
    /// Where it stands.
    pub state: SettlementState,
    /// Who holds the claim.
    pub owner: OwnerId,
    /// Until when the claim is its owner's alone.
    pub lease_until: UnixTime,
    /// The facilitator request (`{x402Version, paymentPayload,
    /// paymentRequirements}` JSON), for a reconcile without the caller.
    pub request: String,
    /// The account that signed the transaction (`0x…`), once signed.
    pub signer: Option<String>,
    /// The transaction's nonce, once signed.
    pub tx_nonce: Option<u64>,
    /// The transaction hash, once signed.
    pub transaction: Option<String>,
    /// The signed transaction (EIP-2718, `0x…`), to broadcast again.
    pub raw_transaction: Option<String>,
    /// Why it failed (a reference reason).
    pub reason: Option<String>,
    /// When it was first claimed.
    pub created_at: UnixTime,
    /// When it last changed.
    pub updated_at: UnixTime,
}

impl SettlementRecord {
    /// Whether its owner may still be working on it at `now`.
    ///
    /// ```
    /// # use pay402_core::x402::settlements::*;
    /// # use pay402_core::time::UnixTime;
    /// # let r = SettlementRecord { key: AuthorizationKey::from_stored("k".into()), state: SettlementState::Sent, owner: OwnerId([0; 16]), lease_until: UnixTime(10), request: String::new(), signer: None, tx_nonce: None, transaction: None, raw_transaction: None, reason: None, created_at: UnixTime(0), updated_at: UnixTime(0) };
    /// assert!(r.is_live(UnixTime(10)));
    /// assert!(!r.is_live(UnixTime(11)));
    /// ```
    pub fn is_live(&self, now: UnixTime) -> bool {
        matches!(self.state, SettlementState::Claimed | SettlementState::Sent)
            && self.lease_until >= now
    }
}

/// What [`SettlementStore::claim`] found.
///
/// ```
/// use pay402_core::x402::settlements::Claimed;
/// assert!(matches!(Claimed::New, Claimed::New));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// A new claim: this caller settles.
    New,
    /// This caller took over a claim whose owner's lease ran out (the
    /// record as it now stands: follow its transaction, if it has one,
    /// before sending anything), or whose transaction failed (back to
    /// `claimed`, without a transaction).
    TakenOver(SettlementRecord),
    /// Someone else holds it (live), or it succeeded: the record.
    Held(SettlementRecord),
}

/// A transaction signed by [`SettlementStore::sign_next`]'s signer.
///
/// ```
/// use pay402_core::x402::settlements::Signed;
/// let s = Signed { transaction: "0x01".into(), raw: "0x02".into() };
/// assert_eq!(s.raw, "0x02");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// Its hash (`0x…`).
    pub transaction: String,
    /// Its EIP-2718 encoding (`0x…`).
    pub raw: String,
}

/// Signs the settlement transaction with the nonce it is given.
///
/// ```
/// use pay402_core::x402::settlements::{SignWith, Signed};
/// let sign: SignWith<'_> = &|nonce| Ok(Signed { transaction: format!("0x{nonce:x}"), raw: "0x".into() });
/// assert_eq!(sign(10).unwrap().transaction, "0xa");
/// ```
pub type SignWith<'a> = &'a (dyn Fn(u64) -> Result<Signed, String> + Send + Sync);

/// What [`SettlementStore::sign_next`] is asked to do: sign the next
/// transaction of account `(chain_id, signer)` for `owner`'s claim on `key`,
/// with a nonce of at least `floor`, at `now`.
///
/// Everything is borrowed, so it is `Copy` and costs nothing to build per
/// attempt.
///
/// ```
/// use pay402_core::time::UnixTime;
/// use pay402_core::x402::settlements::{AuthorizationKey, OwnerId, SignNext, Signed};
/// let key = AuthorizationKey::new(31337, &[1; 20], &[2; 20], &[3; 32]);
/// let sign = |nonce: u64| -> Result<Signed, String> { Ok(Signed { transaction: format!("0x{nonce:02x}"), raw: "0x00".into() }) };
/// let next = SignNext {
///     key: &key,
///     owner: &OwnerId([7; 16]),
///     chain_id: 31337,
///     signer: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
///     floor: 5,
///     sign: &sign,
///     now: UnixTime(1_000),
/// };
/// assert_eq!((next.sign)(next.floor).unwrap().transaction, "0x05");
/// // `Debug` leaves the signer function out.
/// assert!(format!("{next:?}").contains("floor: 5"));
/// ```
#[derive(Clone, Copy)]
pub struct SignNext<'a> {
    /// The authorization whose claim records the transaction.
    pub key: &'a AuthorizationKey,
    /// Who must hold that claim (in `claimed`).
    pub owner: &'a OwnerId,
    /// The chain the settling account's nonce counts on.
    pub chain_id: u64,
    /// The settling account (`0x…`, any case: stored lowercase).
    pub signer: &'a str,
    /// The least nonce to allocate: the chain's pending nonce.
    pub floor: u64,
    /// Signs the transaction with the allocated nonce.
    pub sign: SignWith<'a>,
    /// The time of the change.
    pub now: UnixTime,
}

impl fmt::Debug for SignNext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignNext")
            .field("key", self.key)
            .field("owner", self.owner)
            .field("chain_id", &self.chain_id)
            .field("signer", &self.signer)
            .field("floor", &self.floor)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// The facilitator's shared settlement state. Implementations make each
/// method one atomic step for every process sharing the store.
///
/// ```
/// use std::sync::Arc;
/// use pay402_core::x402::settlements::{MemorySettlementStore, SettlementStore};
/// let store: Arc<dyn SettlementStore> = Arc::new(MemorySettlementStore::new());
/// # let _ = store;
/// ```
#[async_trait]
pub trait SettlementStore: Send + Sync + 'static {
    /// Claims `key` for `owner` until `lease_until`: new, taken over (a
    /// `claimed`/`sent` record whose lease ran out, or a `failed` one), or
    /// held by someone else / succeeded.
    async fn claim(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        request: &str,
        lease_until: UnixTime,
        now: UnixTime,
    ) -> Result<Claimed, SettlementStoreError>;

    /// Extends `owner`'s lease (never shortens it); false when `owner` no
    /// longer holds the claim.
    async fn renew(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        lease_until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, SettlementStoreError>;

    /// In one atomic step: allocates `(next.chain_id, next.signer)`'s next
    /// nonce (at least `next.floor`, the chain's pending nonce), calls
    /// `next.sign` with it and records the signed transaction on
    /// `next.owner`'s `claimed` claim (which becomes `sent`). Returns the
    /// nonce and the signed transaction; `Ok(None)` when `next.owner` does
    /// not hold a `claimed` claim on `next.key` (nothing allocated). A
    /// `sign` error allocates nothing and is returned as
    /// [`SettlementStoreError::Unavailable`].
    async fn sign_next(
        &self,
        next: SignNext<'_>,
    ) -> Result<Option<(u64, Signed)>, SettlementStoreError>;

    /// `sent → claimed`, clearing the transaction: it was never accepted
    /// (the node refused it) or another transaction took its nonce. Gives
    /// the nonce back when it is still the last one allocated. False when
    /// `owner` does not hold a `sent` claim on `key`.
    async fn unsend(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        now: UnixTime,
    ) -> Result<bool, SettlementStoreError>;

    /// Raises `(chain_id, signer)`'s next nonce to at least `floor` (the
    /// chain's pending nonce, after another sender used the key). Returns
    /// the next nonce.
    async fn resync_nonce(
        &self,
        chain_id: u64,
        signer: &str,
        floor: u64,
    ) -> Result<u64, SettlementStoreError>;

    /// The next nonce `(chain_id, signer)` would get, if any was allocated.
    async fn next_nonce(
        &self,
        chain_id: u64,
        signer: &str,
    ) -> Result<Option<u64>, SettlementStoreError>;

    /// `claimed`/`sent → succeeded/failed` (a mined transaction), keeping
    /// `transaction` (when given) and `reason`. False when `owner` no
    /// longer holds the claim.
    async fn finish(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        outcome: Outcome,
        transaction: Option<&str>,
        reason: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, SettlementStoreError>;

    /// Drops `owner`'s `claimed` claim (nothing was signed: refused before
    /// sending). False when `owner` does not hold a `claimed` claim.
    async fn release(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
    ) -> Result<bool, SettlementStoreError>;

    /// The record of `key`.
    async fn get(
        &self,
        key: &AuthorizationKey,
    ) -> Result<Option<SettlementRecord>, SettlementStoreError>;

    /// Up to `limit` `claimed` and `sent` records, oldest first (what a
    /// reconcile looks at).
    async fn unfinished(&self, limit: usize)
    -> Result<Vec<SettlementRecord>, SettlementStoreError>;
}

#[derive(Default)]
struct State {
    records: HashMap<AuthorizationKey, SettlementRecord>,
    nonces: HashMap<(u64, String), u64>,
}

/// The settlement store of one process (a mutex around two maps): what a
/// facilitator uses without a database. Lost on restart; not shared.
///
/// ```
/// let store = pay402_core::x402::settlements::MemorySettlementStore::new();
/// # let _ = store;
/// ```
#[derive(Default)]
pub struct MemorySettlementStore {
    state: Mutex<State>,
}

impl fmt::Debug for MemorySettlementStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySettlementStore")
            .finish_non_exhaustive()
    }
}

impl MemorySettlementStore {
    /// An empty store.
    ///
    /// ```
    /// let _ = pay402_core::x402::settlements::MemorySettlementStore::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, SettlementStoreError> {
        self.state
            .lock()
            .map_err(|_| SettlementStoreError::Unavailable("settlement store lock poisoned".into()))
    }
}

/// Whether a record may be taken over at `now`: a failed one, or a
/// `claimed`/`sent` one whose lease ran out.
///
/// ```
/// use pay402_core::time::UnixTime;
/// use pay402_core::x402::settlements::{can_take_over, SettlementState};
/// assert!(can_take_over(SettlementState::Sent, UnixTime(5), UnixTime(6)));
/// assert!(!can_take_over(SettlementState::Sent, UnixTime(6), UnixTime(6)));
/// assert!(!can_take_over(SettlementState::Succeeded, UnixTime(0), UnixTime(9)));
/// ```
pub fn can_take_over(state: SettlementState, lease_until: UnixTime, now: UnixTime) -> bool {
    match state {
        SettlementState::Failed => true,
        SettlementState::Claimed | SettlementState::Sent => lease_until < now,
        SettlementState::Succeeded => false,
    }
}

/// The nonce counter key of a signer: `(chain, lowercase address)`.
///
/// ```
/// assert_eq!(pay402_core::x402::settlements::signer_key(1, "0xAB"), (1, "0xab".to_owned()));
/// ```
pub fn signer_key(chain_id: u64, signer: &str) -> (u64, String) {
    (chain_id, signer.to_ascii_lowercase())
}

#[async_trait]
impl SettlementStore for MemorySettlementStore {
    async fn claim(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        request: &str,
        lease_until: UnixTime,
        now: UnixTime,
    ) -> Result<Claimed, SettlementStoreError> {
        let mut s = self.lock()?;
        if let Some(r) = s.records.get_mut(key) {
            if !can_take_over(r.state, r.lease_until, now) {
                return Ok(Claimed::Held(r.clone()));
            }
            if r.state == SettlementState::Failed {
                r.state = SettlementState::Claimed;
                r.transaction = None;
                r.raw_transaction = None;
                r.signer = None;
                r.tx_nonce = None;
                r.reason = None;
            }
            r.owner = *owner;
            r.lease_until = lease_until;
            r.updated_at = now;
            return Ok(Claimed::TakenOver(r.clone()));
        }
        s.records.insert(
            key.clone(),
            SettlementRecord {
                key: key.clone(),
                state: SettlementState::Claimed,
                owner: *owner,
                lease_until,
                request: request.to_owned(),
                signer: None,
                tx_nonce: None,
                transaction: None,
                raw_transaction: None,
                reason: None,
                created_at: now,
                updated_at: now,
            },
        );
        Ok(Claimed::New)
    }

    async fn renew(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        lease_until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, SettlementStoreError> {
        let mut s = self.lock()?;
        match s.records.get_mut(key) {
            Some(r)
                if r.owner == *owner
                    && matches!(r.state, SettlementState::Claimed | SettlementState::Sent) =>
            {
                r.lease_until = r.lease_until.max(lease_until);
                r.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn sign_next(
        &self,
        next: SignNext<'_>,
    ) -> Result<Option<(u64, Signed)>, SettlementStoreError> {
        let mut guard = self.lock()?;
        let s = &mut *guard;
        let Some(r) = s.records.get_mut(next.key) else {
            return Ok(None);
        };
        if r.owner != *next.owner || r.state != SettlementState::Claimed {
            return Ok(None);
        }
        let counter = s
            .nonces
            .entry(signer_key(next.chain_id, next.signer))
            .or_insert(0);
        let nonce = (*counter).max(next.floor);
        let signed = (next.sign)(nonce).map_err(SettlementStoreError::Unavailable)?;
        *counter = nonce.saturating_add(1);
        r.state = SettlementState::Sent;
        r.signer = Some(next.signer.to_ascii_lowercase());
        r.tx_nonce = Some(nonce);
        r.transaction = Some(signed.transaction.clone());
        r.raw_transaction = Some(signed.raw.clone());
        r.updated_at = next.now;
        Ok(Some((nonce, signed)))
    }

    async fn unsend(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        now: UnixTime,
    ) -> Result<bool, SettlementStoreError> {
        let mut guard = self.lock()?;
        let s = &mut *guard;
        let Some(r) = s.records.get_mut(key) else {
            return Ok(false);
        };
        if r.owner != *owner || r.state != SettlementState::Sent {
            return Ok(false);
        }
        if let (Some(signer), Some(n)) = (&r.signer, r.tx_nonce)
            && let Some(next) = s
                .nonces
                .get_mut(&signer_key(key.chain_id().unwrap_or(0), signer))
            && *next == n.saturating_add(1)
        {
            *next = n;
        }
        r.state = SettlementState::Claimed;
        r.signer = None;
        r.tx_nonce = None;
        r.transaction = None;
        r.raw_transaction = None;
        r.updated_at = now;
        Ok(true)
    }

    async fn resync_nonce(
        &self,
        chain_id: u64,
        signer: &str,
        floor: u64,
    ) -> Result<u64, SettlementStoreError> {
        let mut s = self.lock()?;
        let next = s.nonces.entry(signer_key(chain_id, signer)).or_insert(0);
        *next = (*next).max(floor);
        Ok(*next)
    }

    async fn next_nonce(
        &self,
        chain_id: u64,
        signer: &str,
    ) -> Result<Option<u64>, SettlementStoreError> {
        Ok(self
            .lock()?
            .nonces
            .get(&signer_key(chain_id, signer))
            .copied())
    }

    async fn finish(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
        outcome: Outcome,
        transaction: Option<&str>,
        reason: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, SettlementStoreError> {
        let mut s = self.lock()?;
        match s.records.get_mut(key) {
            Some(r)
                if r.owner == *owner
                    && matches!(r.state, SettlementState::Claimed | SettlementState::Sent) =>
            {
                r.state = outcome.state();
                if let Some(tx) = transaction {
                    r.transaction = Some(tx.to_owned());
                }
                r.reason = reason.map(str::to_owned);
                r.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(
        &self,
        key: &AuthorizationKey,
        owner: &OwnerId,
    ) -> Result<bool, SettlementStoreError> {
        let mut s = self.lock()?;
        let ours = s
            .records
            .get(key)
            .is_some_and(|r| r.owner == *owner && r.state == SettlementState::Claimed);
        if ours {
            s.records.remove(key);
        }
        Ok(ours)
    }

    async fn get(
        &self,
        key: &AuthorizationKey,
    ) -> Result<Option<SettlementRecord>, SettlementStoreError> {
        Ok(self.lock()?.records.get(key).cloned())
    }

    async fn unfinished(
        &self,
        limit: usize,
    ) -> Result<Vec<SettlementRecord>, SettlementStoreError> {
        let s = self.lock()?;
        let mut out: Vec<SettlementRecord> = s
            .records
            .values()
            .filter(|r| matches!(r.state, SettlementState::Claimed | SettlementState::Sent))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
        out.truncate(limit);
        Ok(out)
    }
}
