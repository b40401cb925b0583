//! Root-key stores: one random 32-byte root key per minted token.
//!
//! A token is valid only while its root key is in the store; revoking a token
//! deletes its key (as Aperture does). [`MemoryStore`] is for tests and single
//! processes; [`SqliteStore`] is the embedded default that survives restarts.
//! Verification never costs a store round trip for a warm token: the layer
//! keeps derived keys in a bounded in-process cache (see [`crate::KeyCache`]).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use pay402_core::l402::{RootKey, TokenId};
use pay402_core::problem::Reason;

mod sqlite;
pub use sqlite::SqliteStore;

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
}

impl Reason for StoreError {
    fn reason(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "store_unavailable",
            StoreError::Duplicate => "store_duplicate",
            StoreError::Corrupt(_) => "store_corrupt",
        }
    }
    fn status(&self) -> u16 {
        503
    }
}

/// Where root keys live, keyed by token id.
///
/// ```
/// use pay402_server::store::{MemoryStore, RootKeyStore};
/// use pay402_core::l402::{RootKey, TokenId};
/// # tokio_test();
/// # fn tokio_test() { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// store.insert(TokenId([1; 32]), &RootKey::from_bytes([2; 32])).await.unwrap();
/// assert!(store.get(&TokenId([1; 32])).await.unwrap().is_some());
/// assert!(store.revoke(&TokenId([1; 32])).await.unwrap());
/// assert!(store.get(&TokenId([1; 32])).await.unwrap().is_none());
/// # }) }
/// ```
#[async_trait]
pub trait RootKeyStore: Send + Sync + 'static {
    /// Stores the root key of a newly minted token.
    async fn insert(&self, token_id: TokenId, key: &RootKey) -> Result<(), StoreError>;
    /// Fetches a token's root key; `None` if unknown or revoked.
    async fn get(&self, token_id: &TokenId) -> Result<Option<RootKey>, StoreError>;
    /// Revokes a token; `true` if it existed.
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError>;
}

/// An in-memory store (lost on restart).
///
/// ```
/// let store = pay402_server::store::MemoryStore::new();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    keys: Mutex<HashMap<TokenId, RootKey>>,
}

impl MemoryStore {
    /// An empty store.
    ///
    /// ```
    /// let _ = pay402_server::store::MemoryStore::new();
    /// ```
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// How many tokens are stored.
    ///
    /// ```
    /// assert!(pay402_server::store::MemoryStore::new().is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.keys.lock().map(|k| k.len()).unwrap_or(0)
    }

    /// Whether the store is empty.
    ///
    /// ```
    /// assert!(pay402_server::store::MemoryStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<TokenId, RootKey>>, StoreError> {
        self.keys
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl RootKeyStore for MemoryStore {
    async fn insert(&self, token_id: TokenId, key: &RootKey) -> Result<(), StoreError> {
        let mut keys = self.lock()?;
        if keys.contains_key(&token_id) {
            return Err(StoreError::Duplicate);
        }
        keys.insert(token_id, key.clone());
        Ok(())
    }
    async fn get(&self, token_id: &TokenId) -> Result<Option<RootKey>, StoreError> {
        Ok(self.lock()?.get(token_id).cloned())
    }
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        Ok(self.lock()?.remove(token_id).is_some())
    }
}

#[async_trait]
impl<T: RootKeyStore + ?Sized> RootKeyStore for std::sync::Arc<T> {
    async fn insert(&self, token_id: TokenId, key: &RootKey) -> Result<(), StoreError> {
        (**self).insert(token_id, key).await
    }
    async fn get(&self, token_id: &TokenId) -> Result<Option<RootKey>, StoreError> {
        (**self).get(token_id).await
    }
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        (**self).revoke(token_id).await
    }
}
