//! Token cache keys ([`TokenScope`]), the in-memory token store and the
//! per-key single-flight locks.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use pay402_core::lightning::PaymentHash;
use reqwest::Url;
use reqwest::header::HeaderValue;
use tokio::sync::OwnedMutexGuard;

/// Which requests share a cached L402 token.
///
/// A token is cached under a key computed from the request URL, and sent with
/// every later request whose URL has the same key. The origin (scheme, host
/// and port, as in RFC 6454; default ports are normalised away, so
/// `https://a.example` and `https://a.example:443` are one origin) is always
/// part of the key, so a token is never sent to another origin.
///
/// | scope | key | `https://api.example/v1/a?x=1` and … share a token with |
/// |---|---|---|
/// | [`Origin`](TokenScope::Origin) | origin | every URL on `https://api.example` |
/// | [`PathPrefix`](TokenScope::PathPrefix) | origin + first path segment | `https://api.example/v1`, `/v1/`, `/v1/b/c`; not `/v2/a` nor `/v1x` |
/// | [`Path`](TokenScope::Path) | origin + full path (query ignored) | `https://api.example/v1/a?x=2`; not `/v1/a/` |
///
/// `Origin` matches lnget (one token per domain, which is also how Aperture
/// prices a whole service); `PathPrefix` fits servers that sell one token per
/// service mounted under its own first path segment; `Path` matches the
/// per-URL caches of Alby and Fewsats. Path segments are compared in their
/// percent-encoded form, exactly as [`Url::path`] returns them.
///
/// ```
/// use pay402_client::TokenScope;
/// assert_eq!(TokenScope::default(), TokenScope::Origin);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenScope {
    /// One token per origin (scheme, host, port).
    #[default]
    Origin,
    /// One token per origin and first path segment: `/api/v1/x` → `/api`.
    /// The root path `/` (and any path whose first segment is empty) is its
    /// own prefix `/`.
    PathPrefix,
    /// One token per origin and exact path (the query string is ignored).
    Path,
}

/// The key a token is cached under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    origin: String,
    path: Option<String>,
}

impl CacheKey {
    /// The origin part, e.g. `http://127.0.0.1:8402`.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The path part, for path scopes.
    pub(crate) fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

/// The RFC 6454 origin of a URL, serialised (`null` for opaque origins).
pub(crate) fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl TokenScope {
    pub(crate) fn key(self, url: &Url) -> CacheKey {
        let origin = origin_of(url);
        let path = match self {
            TokenScope::Origin => None,
            TokenScope::PathPrefix => {
                let first = url
                    .path_segments()
                    .and_then(|mut s| s.next())
                    .unwrap_or_default();
                Some(format!("/{first}"))
            }
            TokenScope::Path => Some(url.path().to_owned()),
        };
        CacheKey { origin, path }
    }
}

/// A paid token, ready to send.
pub(crate) struct Token {
    /// The full `Authorization` value (marked sensitive).
    pub(crate) header: HeaderValue,
    /// The payment hash it was bought with (public; for logs).
    pub(crate) payment_hash: PaymentHash,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("payment_hash", &self.payment_hash)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type KeyLock = Arc<tokio::sync::Mutex<()>>;

/// Tokens by key, plus one async lock per key for single-flight payment.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<CacheKey, Arc<Token>>>,
    locks: Mutex<HashMap<CacheKey, KeyLock>>,
}

impl TokenCache {
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Arc<Token>> {
        lock(&self.tokens).get(key).cloned()
    }

    pub(crate) fn insert(&self, key: CacheKey, token: Arc<Token>) {
        lock(&self.tokens).insert(key, token);
    }

    /// Removes `token` if it is still the one cached under `key` (a newer
    /// token that another request paid for is kept).
    pub(crate) fn evict_if_current(&self, key: &CacheKey, token: &Arc<Token>) -> bool {
        let mut tokens = lock(&self.tokens);
        match tokens.get(key) {
            Some(current) if Arc::ptr_eq(current, token) => {
                tokens.remove(key);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn clear(&self) {
        lock(&self.tokens).clear();
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.tokens).len()
    }

    /// Waits for the single-flight lock of `key`.
    pub(crate) async fn lock_key(self: &Arc<Self>, key: &CacheKey) -> KeyGuard {
        let m = lock(&self.locks).entry(key.clone()).or_default().clone();
        let guard = m.lock_owned().await;
        KeyGuard {
            cache: Arc::clone(self),
            key: key.clone(),
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn lock_entries(&self) -> usize {
        lock(&self.locks).len()
    }
}

/// Holds a key's single-flight lock; removes the lock from the map on drop
/// when nobody else holds or waits for it, so the map does not grow.
pub(crate) struct KeyGuard {
    cache: Arc<TokenCache>,
    key: CacheKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.cache.locks);
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scope: TokenScope, url: &str) -> CacheKey {
        scope.key(&Url::parse(url).unwrap())
    }

    #[test]
    fn origin_scope_ignores_path_and_default_port() {
        assert_eq!(
            key(TokenScope::Origin, "https://a.example/x?y"),
            key(TokenScope::Origin, "https://a.example:443/z")
        );
        assert_ne!(
            key(TokenScope::Origin, "https://a.example/"),
            key(TokenScope::Origin, "http://a.example/")
        );
        assert_ne!(
            key(TokenScope::Origin, "http://a.example:8080/"),
            key(TokenScope::Origin, "http://a.example:8081/")
        );
        assert_eq!(
            key(TokenScope::Origin, "http://a.example:8080/").origin(),
            "http://a.example:8080"
        );
    }

    #[test]
    fn path_prefix_scope_uses_first_segment() {
        let k = |u| key(TokenScope::PathPrefix, u);
        assert_eq!(k("http://h/api"), k("http://h/api/v1/x?q=1"));
        assert_eq!(k("http://h/api/"), k("http://h/api"));
        assert_ne!(k("http://h/api"), k("http://h/apix"));
        assert_ne!(k("http://h/api"), k("http://h/v2/api"));
        assert_eq!(k("http://h/"), k("http://h"));
        assert_eq!(k("http://h/").path.as_deref(), Some("/"));
        assert_ne!(k("http://h/api"), k("http://other/api"));
    }

    #[test]
    fn path_scope_uses_full_path_without_query() {
        let k = |u| key(TokenScope::Path, u);
        assert_eq!(k("http://h/a/b?x=1"), k("http://h/a/b?x=2"));
        assert_ne!(k("http://h/a/b"), k("http://h/a/b/"));
    }

    fn token() -> Arc<Token> {
        Arc::new(Token {
            header: HeaderValue::from_static("L402 x:00"),
            payment_hash: PaymentHash([0; 32]),
        })
    }

    #[test]
    fn evict_only_the_current_token() {
        let cache = TokenCache::default();
        let k = key(TokenScope::Origin, "http://h/");
        let (old, new) = (token(), token());
        cache.insert(k.clone(), new.clone());
        assert!(!cache.evict_if_current(&k, &old));
        assert_eq!(cache.len(), 1);
        assert!(cache.evict_if_current(&k, &new));
        assert_eq!(cache.len(), 0);
        assert!(format!("{new:?}").contains("payment_hash"));
    }

    #[tokio::test]
    async fn key_locks_are_removed_when_unused() {
        let cache = Arc::new(TokenCache::default());
        let k = key(TokenScope::Origin, "http://h/");
        let g = cache.lock_key(&k).await;
        assert_eq!(cache.lock_entries(), 1);
        let c2 = cache.clone();
        let k2 = k.clone();
        let waiter = tokio::spawn(async move {
            let _g = c2.lock_key(&k2).await;
        });
        tokio::task::yield_now().await;
        drop(g);
        waiter.await.unwrap();
        assert_eq!(cache.lock_entries(), 0);
    }
}
