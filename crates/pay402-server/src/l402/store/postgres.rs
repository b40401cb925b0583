//! PostgreSQL token store (sqlx): several server instances share one root
//! secret and one record of used and revoked tokens.

use async_trait::async_trait;
use pay402_core::l402::TokenId;
use pay402_core::lightning::PaymentHash;
use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast::{Receiver, Sender};
use tracing::Instrument;

use super::db::*;
use super::{Revocation, RootKeyStore, RootSecret, StoreError, TokenRecord};
use crate::database::DatabaseOptions;
use crate::pg_pool::Migration;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "secret_and_tokens",
    sql: include_str!("../../../migrations/postgres/l402/0001_secret_and_tokens.sql"),
}];

/// The root secret and token records in PostgreSQL.
///
/// Opening it applies the migrations in `migrations/postgres/l402/`
/// (tables `pay402_l402_secret` and `pay402_l402_tokens`, the same shape as
/// [`SqliteStore`](super::SqliteStore)'s) and creates the root secret from
/// the OS RNG if the database has none, so every instance opening the same
/// database derives the same root keys. The statements are the SQLite
/// store's, word for word: a token's first paid use is one `INSERT … ON
/// CONFLICT DO NOTHING` (the first payment hash stays bound); a revocation
/// is a conditional `UPDATE` (exactly one concurrent revoker learns the
/// token was live) and an upsert.
///
/// A revocation is announced with `NOTIFY pay402_l402_revoked, '<token
/// id hex>'` in the revoking transaction. Each store listens on one
/// connection of its own, outside its pool (opened by the first
/// [`revocations`](RootKeyStore::revocations) call, that is by the first
/// [`L402Layer`](crate::L402Layer) built on it) and forwards what arrives to
/// the layers, which drop the token's cached key: other instances refuse a
/// revoked token as soon as the notification arrives (milliseconds). While
/// that connection is down nothing is announced (it reconnects every
/// second); when it listens again the caches are cleared
/// ([`Revocation::Resync`](super::Revocation::Resync)), and in any case a
/// cached key is trusted at most
/// [`L402Config::key_cache_ttl`](crate::L402Config::key_cache_ttl) (60 s by
/// default), which bounds the delay when notifications fail.
///
/// ```no_run
/// use pay402_server::store::{PostgresStore, RootKeyStore};
/// use pay402_server::database::DatabaseOptions;
/// # async fn f() -> Result<(), pay402_server::store::StoreError> {
/// let store = PostgresStore::connect("postgres://pay402@127.0.0.1/pay402", &DatabaseOptions::default()).await?;
/// let id = pay402_core::l402::TokenId([1; 32]);
/// assert!(store.get(&id).await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    secret: std::sync::Arc<RootSecret>,
    feed: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<Feed>>>,
}

/// The announcements of one store, and what tells its listener the store
/// is gone (the listener ends when `_alive` is dropped).
#[derive(Debug)]
struct Feed {
    sender: Sender<Revocation>,
    _alive: tokio::sync::watch::Sender<()>,
}

/// The notification channel of revocations.
pub(crate) const REVOKED_CHANNEL: &str = "pay402_l402_revoked";

/// Announces a revocation (delivered when the transaction commits).
const NOTIFY_SQL: &str = "SELECT pg_notify('pay402_l402_revoked', $1)";

/// Announcements buffered per layer before it counts as lagging (and
/// clears its cache).
const FEED_CAPACITY: usize = 1024;

/// How long the listener waits before connecting again.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Connects to `url` (see [`crate::database`]) and opens the store.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::store::PostgresStore::connect(
    ///     "postgres://pay402@127.0.0.1/pay402", &Default::default()).await.unwrap();
    /// # }
    /// ```
    pub async fn connect(
        url: &str,
        options: &DatabaseOptions,
    ) -> Result<PostgresStore, StoreError> {
        PostgresStore::from_pool(crate::pg_pool::connect(url, options).await?).await
    }

    /// Uses an existing pool: applies the migrations and reads (or creates)
    /// the root secret.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) {
    /// let store = pay402_server::store::PostgresStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<PostgresStore, StoreError> {
        crate::pg_pool::migrate(&pool, "l402", MIGRATIONS).await?;
        let secret = load_secret(&pool).await?;
        Ok(PostgresStore {
            pool,
            secret,
            feed: Default::default(),
        })
    }

    /// The feed of [`RootKeyStore::revocations`]: starts the listener on
    /// first use (inside a Tokio runtime).
    fn subscribe(&self) -> Option<Receiver<Revocation>> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let feed = self.feed.get_or_init(|| {
            let (sender, _) = tokio::sync::broadcast::channel(FEED_CAPACITY);
            let (alive, gone) = tokio::sync::watch::channel(());
            let feed = std::sync::Arc::new(Feed {
                sender,
                _alive: alive,
            });
            rt.spawn(
                listen(self.pool.clone(), std::sync::Arc::downgrade(&feed), gone)
                    .instrument(tracing::info_span!("l402.revocation_listener")),
            );
            feed
        });
        Some(feed.sender.subscribe())
    }
}

/// Listens for revocation notifications and forwards them until the store
/// (its feed) is gone, reconnecting after a lost connection. A wait for a
/// notification is never cut short (that could split a message on the
/// wire) except when the store is gone and the listener ends.
async fn listen(pool: PgPool, feed: Weak<Feed>, mut gone: tokio::sync::watch::Receiver<()>) {
    // A connection of its own, outside the request pool (whose size stays
    // what the operator set), with the same settings.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with((*pool.connect_options()).clone());
    loop {
        if feed.strong_count() == 0 {
            return;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "l402.revocation_listener_down");
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(REVOKED_CHANNEL).await {
            tracing::warn!(error = %e, "l402.revocation_listener_down");
            tokio::time::sleep(RECONNECT_DELAY).await;
            continue;
        }
        // Listening from now on; anything revoked before may be cached.
        match feed.upgrade() {
            Some(f) => {
                let _ = f.sender.send(Revocation::Resync);
            }
            None => return,
        }
        tracing::info!("l402.revocation_listener_up");
        loop {
            let next = tokio::select! {
                next = listener.try_recv() => next,
                // Only ever an error: the store dropped its feed.
                _ = gone.changed() => return,
            };
            let Some(f) = feed.upgrade() else { return };
            match next {
                Ok(Some(n)) => match TokenId::from_hex(n.payload()) {
                    Some(id) => {
                        let _ = f.sender.send(Revocation::Revoked(id));
                    }
                    // Not ours to read: forget everything to be safe.
                    None => {
                        let _ = f.sender.send(Revocation::Resync);
                    }
                },
                // The connection was lost: announcements may be missed
                // until we listen again, and the caches are cleared then.
                // Not now: while the whole database is down nobody can
                // revoke, and cached keys keep serving paid tokens.
                Ok(None) | Err(_) => {
                    tracing::warn!("l402.revocation_listener_lost");
                    break;
                }
            }
        }
    }
}

sql_root_key_store!(PostgresStore, PgPool, NOTIFY_SQL, |store| store.subscribe());
