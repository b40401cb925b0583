//! Token stores: the server secret root keys are derived from, and one record
//! per token that was used paid.
//!
//! A token's root key is never stored: it is `HMAC-SHA256(secret,
//! "pay402/l402/root-key/v1" || token_id)`, with a 32-byte [`RootSecret`] the
//! store holds. Minting a token (answering an unpaid request) therefore writes
//! nothing. The first request that presents the token paid, with a valid
//! signature and caveats, writes its [`TokenRecord`] (token id and payment
//! hash); later uses read it. Revoking a token writes (or marks) its record
//! revoked, since a derived key cannot be deleted.
//!
//! [`MemoryStore`] is for tests and single processes (a fresh random secret
//! per store unless one is given); [`SqliteStore`] is the embedded default
//! that survives restarts (the secret is generated on first open and kept in
//! the database file, which is created owner-only); [`PostgresStore`] lets
//! several instances share the secret and the records. [`open`] picks one
//! from a [`Database`](crate::database::Database) opened by URL. Verification never costs
//! a store round trip for a warm token: the layer keeps derived keys in a
//! bounded in-process cache (see [`crate::KeyCache`]).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use pay402_core::l402::{RootKey, TokenId};
use pay402_core::lightning::PaymentHash;
use pay402_core::problem::Reason;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

mod db;
mod postgres;
mod sqlite;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the root-key store on `db` (see [`crate::database`]): a fresh
/// [`MemoryStore`], or a [`SqliteStore`] / [`PostgresStore`] on the
/// database's pool (creating its tables and secret if needed).
///
/// ```
/// use pay402_server::database::Database;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let db = Database::open("sqlite::memory:", &Default::default()).await.unwrap();
/// let store = pay402_server::store::open(&db).await.unwrap();
/// assert!(store.get(&pay402_core::l402::TokenId([0; 32])).await.unwrap().is_none());
/// # });
/// ```
pub async fn open(
    db: &crate::database::Database,
) -> Result<std::sync::Arc<dyn RootKeyStore>, StoreError> {
    use crate::database::Database;
    Ok(match db {
        Database::Memory => std::sync::Arc::new(MemoryStore::new()),
        Database::Sqlite(pool) => std::sync::Arc::new(SqliteStore::from_pool(pool.clone()).await?),
        Database::Postgres(pool) => {
            std::sync::Arc::new(PostgresStore::from_pool(pool.clone()).await?)
        }
    })
}

/// A store operation failed.
///
/// ```
/// use pay402_server::store::StoreError;
/// use pay402_core::problem::Reason;
/// assert_eq!(StoreError::Unavailable("db down".into()).reason(), "store_unavailable");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backing database could not be used.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A token id was inserted twice.
    #[error("token id already exists")]
    Duplicate,
    /// Stored data is corrupt.
    #[error("corrupt store entry: {0}")]
    Corrupt(String),
    /// The store cannot be opened as configured (an unsupported URL, a
    /// remote PostgreSQL without TLS, ...): fix the configuration.
    #[error("store configuration: {0}")]
    Config(String),
}

impl Reason for StoreError {
    fn reason(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "store_unavailable",
            StoreError::Duplicate => "store_duplicate",
            StoreError::Corrupt(_) => "store_corrupt",
            StoreError::Config(_) => "store_config",
        }
    }
    fn status(&self) -> u16 {
        match self {
            StoreError::Config(_) => 500,
            _ => 503,
        }
    }
}

/// Domain separation for root-key derivation.
const ROOT_KEY_LABEL: &[u8] = b"pay402/l402/root-key/v1";

/// The 32-byte server secret every token's root key is derived from.
///
/// Whoever holds it can mint tokens: keep it as secret as the root keys it
/// replaces. It is zeroized on drop and never printed.
///
/// ```
/// use pay402_server::store::RootSecret;
/// use pay402_core::l402::TokenId;
/// let secret = RootSecret::from_bytes([7; 32]);
/// let a = secret.root_key(&TokenId([1; 32]));
/// assert_eq!(a.as_bytes(), secret.root_key(&TokenId([1; 32])).as_bytes());
/// assert_ne!(a.as_bytes(), secret.root_key(&TokenId([2; 32])).as_bytes());
/// assert_eq!(format!("{secret:?}"), "RootSecret(..)");
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RootSecret([u8; 32]);

impl RootSecret {
    /// A secret from bytes (for example from a secrets manager).
    ///
    /// ```
    /// let _ = pay402_server::store::RootSecret::from_bytes([1; 32]);
    /// ```
    pub fn from_bytes(bytes: [u8; 32]) -> RootSecret {
        RootSecret(bytes)
    }

    /// A fresh secret from the operating system's RNG.
    ///
    /// ```
    /// let _ = pay402_server::store::RootSecret::random();
    /// ```
    pub fn random() -> RootSecret {
        let mut b = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        RootSecret(b)
    }

    /// The root key of `token_id`:
    /// `HMAC-SHA256(secret, "pay402/l402/root-key/v1" || token_id)`.
    ///
    /// ```
    /// use pay402_server::store::RootSecret;
    /// let k = RootSecret::from_bytes([0; 32]).root_key(&pay402_core::l402::TokenId([0; 32]));
    /// assert_eq!(k.as_bytes().len(), 32);
    /// ```
    pub fn root_key(&self, token_id: &TokenId) -> RootKey {
        // HMAC pads a key shorter than the block with zeros, so the padded
        // block is the same key, and this constructor cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        block.zeroize();
        mac.update(ROOT_KEY_LABEL);
        mac.update(&token_id.0);
        let mut out: [u8; 32] = mac.finalize().into_bytes().into();
        let key = RootKey::from_bytes(out);
        out.zeroize();
        key
    }
}

impl std::fmt::Debug for RootSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootSecret(..)")
    }
}

/// What the store knows of a token that was used paid, or revoked.
///
/// ```
/// use pay402_server::store::TokenRecord;
/// use pay402_core::lightning::PaymentHash;
/// let r = TokenRecord { payment_hash: Some(PaymentHash([1; 32])), revoked: false };
/// assert!(!r.revoked);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// The payment hash of the token's identifier, bound at first paid use
    /// (`None` for a token revoked before it was ever used).
    pub payment_hash: Option<PaymentHash>,
    /// Whether the token is revoked.
    pub revoked: bool,
}

/// Where the root secret and the records of used tokens live.
///
/// ```
/// use pay402_server::store::{MemoryStore, RootKeyStore};
/// use pay402_core::l402::TokenId;
/// use pay402_core::lightning::PaymentHash;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let id = TokenId([1; 32]);
/// assert!(store.get(&id).await.unwrap().is_none(), "minting writes nothing");
/// let rec = store.record_use(id, &PaymentHash([2; 32])).await.unwrap();
/// assert_eq!(rec.payment_hash, Some(PaymentHash([2; 32])));
/// // The first record wins: the hash stays bound.
/// let again = store.record_use(id, &PaymentHash([3; 32])).await.unwrap();
/// assert_eq!(again.payment_hash, Some(PaymentHash([2; 32])));
/// assert!(store.revoke(&id).await.unwrap());
/// assert!(store.get(&id).await.unwrap().unwrap().revoked);
/// # })
/// ```
#[async_trait]
pub trait RootKeyStore: Send + Sync + 'static {
    /// The secret root keys are derived from.
    fn secret(&self) -> &RootSecret;
    /// The record of a token; `None` if it was never used paid nor revoked.
    async fn get(&self, token_id: &TokenId) -> Result<Option<TokenRecord>, StoreError>;
    /// Records a token's first paid use, binding `payment_hash`, unless a
    /// record exists; returns the stored record (the existing one if any, so
    /// the caller compares its hash and revocation).
    async fn record_use(
        &self,
        token_id: TokenId,
        payment_hash: &PaymentHash,
    ) -> Result<TokenRecord, StoreError>;
    /// Revokes a token (writing a revocation record if it has none); `true`
    /// if it had been used paid and was not yet revoked.
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError>;
    /// Announcements of revocations committed by any process sharing this
    /// store, for the layers' key caches; `None` (the default) when the
    /// store has none, and the caches rely on their TTL.
    ///
    /// [`PostgresStore`] announces each revocation with `NOTIFY` in the
    /// revoking transaction and listens on a connection of its own (inside
    /// a Tokio runtime; outside one it returns `None`). When that
    /// connection is (re)established, notifications may have been missed,
    /// and it sends [`Revocation::Resync`].
    fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<Revocation>> {
        None
    }
}

/// A revocation announced by a store ([`RootKeyStore::revocations`]).
///
/// ```
/// use pay402_server::store::Revocation;
/// let r = Revocation::Revoked(pay402_core::l402::TokenId([1; 32]));
/// assert_ne!(r, Revocation::Resync);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// This token was revoked.
    Revoked(TokenId),
    /// Announcements may have been missed: forget every cached key.
    Resync,
}

/// An in-memory store (lost on restart, and so is its secret: every token
/// it backed becomes invalid).
///
/// ```
/// let store = pay402_server::store::MemoryStore::new();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    secret: RootSecret,
    records: Mutex<HashMap<TokenId, TokenRecord>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_secret(RootSecret::random())
    }
}

impl MemoryStore {
    /// An empty store with a fresh random secret.
    ///
    /// ```
    /// let _ = pay402_server::store::MemoryStore::new();
    /// ```
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// An empty store deriving root keys from `secret` (several processes
    /// given the same secret accept each other's tokens).
    ///
    /// ```
    /// use pay402_server::store::{MemoryStore, RootSecret};
    /// let _ = MemoryStore::with_secret(RootSecret::from_bytes([9; 32]));
    /// ```
    pub fn with_secret(secret: RootSecret) -> MemoryStore {
        MemoryStore {
            secret,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// How many token records are stored.
    ///
    /// ```
    /// assert_eq!(pay402_server::store::MemoryStore::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.records.lock().map(|k| k.len()).unwrap_or(0)
    }

    /// Whether the store holds no record.
    ///
    /// ```
    /// assert!(pay402_server::store::MemoryStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<TokenId, TokenRecord>>, StoreError> {
        self.records
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl RootKeyStore for MemoryStore {
    fn secret(&self) -> &RootSecret {
        &self.secret
    }
    async fn get(&self, token_id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.lock()?.get(token_id).cloned())
    }
    async fn record_use(
        &self,
        token_id: TokenId,
        payment_hash: &PaymentHash,
    ) -> Result<TokenRecord, StoreError> {
        Ok(self
            .lock()?
            .entry(token_id)
            .or_insert_with(|| TokenRecord {
                payment_hash: Some(*payment_hash),
                revoked: false,
            })
            .clone())
    }
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let mut records = self.lock()?;
        let rec = records.entry(*token_id).or_insert(TokenRecord {
            payment_hash: None,
            revoked: false,
        });
        let was_live = rec.payment_hash.is_some() && !rec.revoked;
        rec.revoked = true;
        Ok(was_live)
    }
}

#[async_trait]
impl<T: RootKeyStore + ?Sized> RootKeyStore for std::sync::Arc<T> {
    fn secret(&self) -> &RootSecret {
        (**self).secret()
    }
    async fn get(&self, token_id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        (**self).get(token_id).await
    }
    async fn record_use(
        &self,
        token_id: TokenId,
        payment_hash: &PaymentHash,
    ) -> Result<TokenRecord, StoreError> {
        (**self).record_use(token_id, payment_hash).await
    }
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        (**self).revoke(token_id).await
    }
    fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<Revocation>> {
        (**self).revocations()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_key_is_hmac_sha256_of_label_and_token_id_under_the_secret() {
        let secret = [0x5a; 32];
        let id = TokenId([0xa5; 32]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).unwrap();
        mac.update(b"pay402/l402/root-key/v1");
        mac.update(&id.0);
        let want: [u8; 32] = mac.finalize().into_bytes().into();
        let got = RootSecret::from_bytes(secret).root_key(&id);
        assert_eq!(got.as_bytes(), &want);
    }
}
