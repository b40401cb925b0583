//! A bounded in-process cache of derived macaroon keys.
//!
//! Verification of a warm token costs no store round trip and not even the
//! key-derivation HMAC: the cache holds the derived [`MacaroonKey`], as a
//! [`CachedKey`] that also remembers the macaroon it verified, so the same
//! token presented again skips the signature's HMAC chain too. Entries
//! expire after a TTL so that a revocation made by another server instance
//! sharing the store takes effect within that time at the latest; stores
//! that announce revocations (PostgreSQL: LISTEN/NOTIFY, see
//! [`RootKeyStore::revocations`](crate::store::RootKeyStore::revocations))
//! make the layer drop the key as soon as the announcement arrives, and
//! revocations made through this process's layer take effect at once.
//!
//! A key loaded from a store read that raced with a revocation is never
//! kept: every [`KeyCache::remove`] and [`KeyCache::clear`] advances an
//! epoch, and [`KeyCache::insert_unless_changed`] drops its entry again
//! when the epoch moved since the caller's store read began.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pay402_core::time::UnixTime;

use pay402_core::l402::{CachedKey, MacaroonKey, TokenId};
use quick_cache::sync::Cache;

/// Cache of derived keys by token id.
///
/// ```
/// use pay402_server::KeyCache;
/// use pay402_core::l402::{RootKey, TokenId};
/// use pay402_core::time::UnixTime;
/// use std::time::Duration;
/// let cache = KeyCache::new(1000, Duration::from_secs(60));
/// let now = UnixTime(1_000);
/// cache.insert(TokenId([1; 32]), RootKey::from_bytes([2; 32]).derive(), now);
/// assert!(cache.get(&TokenId([1; 32]), now).is_some());
/// assert!(cache.get(&TokenId([1; 32]), UnixTime(1_060)).is_none(), "past the TTL");
/// cache.insert(TokenId([1; 32]), RootKey::from_bytes([2; 32]).derive(), now);
/// cache.remove(&TokenId([1; 32]));
/// assert!(cache.get(&TokenId([1; 32]), now).is_none());
/// ```
pub struct KeyCache {
    cache: Cache<TokenId, (Arc<CachedKey>, UnixTime)>,
    ttl: Duration,
    epoch: AtomicU64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("len", &self.cache.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl KeyCache {
    /// A cache holding at most `capacity` keys for at most `ttl` each.
    ///
    /// ```
    /// let c = pay402_server::KeyCache::new(10, std::time::Duration::from_secs(1));
    /// assert_eq!(c.len(), 0);
    /// ```
    pub fn new(capacity: usize, ttl: Duration) -> KeyCache {
        KeyCache {
            cache: Cache::new(capacity.max(1)),
            ttl,
            epoch: AtomicU64::new(0),
        }
    }

    /// The cached key (with its memo of the macaroon it verified), if
    /// present and cached less than the TTL before `now`.
    ///
    /// Time is the caller's (the layer reads the clock once per request).
    ///
    /// ```
    /// use pay402_core::time::UnixTime;
    /// let c = pay402_server::KeyCache::new(10, std::time::Duration::from_secs(1));
    /// assert!(c.get(&pay402_core::l402::TokenId([0; 32]), UnixTime(0)).is_none());
    /// ```
    pub fn get(&self, id: &TokenId, now: UnixTime) -> Option<Arc<CachedKey>> {
        let (key, at) = self.cache.get(id)?;
        if now.0 < at.0.saturating_add(self.ttl.as_secs()) {
            Some(key)
        } else {
            self.cache.remove(id);
            None
        }
    }

    /// Caches a derived key, as of `now`, remembering no macaroon yet.
    ///
    /// ```
    /// use pay402_core::l402::{RootKey, TokenId};
    /// use pay402_core::time::UnixTime;
    /// let c = pay402_server::KeyCache::new(10, std::time::Duration::from_secs(1));
    /// let k = c.insert(TokenId([0; 32]), RootKey::from_bytes([0; 32]).derive(), UnixTime(0));
    /// assert_eq!(c.len(), 1);
    /// # let _ = k;
    /// ```
    pub fn insert(&self, id: TokenId, key: MacaroonKey, now: UnixTime) -> Arc<CachedKey> {
        let key = Arc::new(CachedKey::new(key));
        self.cache.insert(id, (Arc::clone(&key), now));
        key
    }

    /// Forgets a key (on revocation), and advances the epoch.
    ///
    /// ```
    /// let c = pay402_server::KeyCache::new(10, std::time::Duration::from_secs(1));
    /// let before = c.epoch();
    /// c.remove(&pay402_core::l402::TokenId([0; 32]));
    /// assert_ne!(c.epoch(), before);
    /// ```
    pub fn remove(&self, id: &TokenId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.cache.remove(id);
    }

    /// Forgets every key (revocations may have been missed), and advances
    /// the epoch.
    ///
    /// ```
    /// use pay402_core::l402::{RootKey, TokenId};
    /// use pay402_core::time::UnixTime;
    /// let c = pay402_server::KeyCache::new(10, std::time::Duration::from_secs(60));
    /// c.insert(TokenId([1; 32]), RootKey::from_bytes([2; 32]).derive(), UnixTime(0));
    /// c.clear();
    /// assert!(c.is_empty());
    /// ```
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
    }

    /// A counter advanced by every removal: read it before a store read,
    /// and hand it to [`KeyCache::insert_unless_changed`].
    ///
    /// ```
    /// let c = pay402_server::KeyCache::new(10, std::time::Duration::from_secs(1));
    /// assert_eq!(c.epoch(), 0);
    /// ```
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a key read from the store when the read began at `epoch`,
    /// unless a key was removed since (the read may predate a revocation):
    /// then nothing stays cached and the next request reads the store
    /// again. Returns whether the key stays cached.
    ///
    /// ```
    /// use pay402_core::l402::{CachedKey, RootKey, TokenId};
    /// use pay402_core::time::UnixTime;
    /// let c = pay402_server::KeyCache::new(10, std::time::Duration::from_secs(60));
    /// let key = || std::sync::Arc::new(CachedKey::new(RootKey::from_bytes([2; 32]).derive()));
    /// let epoch = c.epoch();
    /// c.remove(&TokenId([9; 32])); // a revocation arrives meanwhile
    /// assert!(!c.insert_unless_changed(TokenId([1; 32]), key(), UnixTime(0), epoch));
    /// assert!(c.get(&TokenId([1; 32]), UnixTime(0)).is_none());
    /// assert!(c.insert_unless_changed(TokenId([1; 32]), key(), UnixTime(0), c.epoch()));
    /// ```
    pub fn insert_unless_changed(
        &self,
        id: TokenId,
        key: Arc<CachedKey>,
        now: UnixTime,
        epoch: u64,
    ) -> bool {
        if self.epoch() != epoch {
            return false;
        }
        self.cache.insert(id, (key, now));
        // A removal between the check and the insert: undo ours.
        if self.epoch() != epoch {
            self.cache.remove(&id);
            return false;
        }
        true
    }

    /// Number of cached keys.
    ///
    /// ```
    /// assert_eq!(pay402_server::KeyCache::new(10, std::time::Duration::from_secs(1)).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the cache is empty.
    ///
    /// ```
    /// assert!(pay402_server::KeyCache::new(10, std::time::Duration::from_secs(1)).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}
