//! The payer's durable journal: every payment, step by step, so that no
//! payment is ever made twice, even across a crash.
//!
//! Before any payment leaves the process, the [`Payer`](crate::Payer)
//! records an **intent**: the request (origin, method, path and query, a
//! SHA-256 of the body) and the chosen offer (the 402's offer headers and
//! body, so the same offer can be read again). Then each step:
//!
//! | state | written when | `proof` holds |
//! |---|---|---|
//! | `intent` | before paying | — |
//! | `paid` | the payment exists: the Lightning preimage, the signed x402 payload, the BitRequests proof (its txid in `proof_id`), the x402_mock access token | the proof (a secret: the journal file is created owner-only) |
//! | `presented` | right before the proof is sent; stays so when the server answers a BitRequests on-chain payment `202` (status 202, detail `awaiting_confirmations`: the transaction is broadcast but not confirmed enough to serve) | unchanged |
//! | `served` | the server served the paid request | unchanged |
//! | `failed` | the purchase ended without being served (nothing paid, or refused after paying: `detail` says which) | unchanged |
//!
//! An entry in `intent`, `paid` or `presented` is **open**: the same
//! request on a client started later (same origin, method, path, query and
//! body) resumes it instead of paying again: it presents the stored proof
//! (the identical signed x402 payload, the same preimage, the same
//! transaction, waiting again for its confirmations when the server still
//! answers `202`), or pays the very same invoice again, which a Lightning
//! node answers with the first payment's preimage (payments are idempotent
//! on the payment hash). L402 tokens and x402_mock access tokens are also
//! kept by origin and scope ([`StoredToken`]), and sent with later
//! requests of that scope.
//!
//! Stores implement [`JournalStore`]: [`MemoryJournal`] (in memory, for
//! tests and short-lived programs) and, with the default `sqlite` feature,
//! [`SqliteJournal`] (a file, the default). The SQL is plain and portable
//! (text, 64-bit integers, no upserts beyond `INSERT`/`UPDATE`/`DELETE`),
//! so a PostgreSQL store is the same statements with `$n` placeholders.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pay402_client::journal::JournalError> {
//! use pay402_client::journal::{Journal, Query};
//! let journal = Journal::memory();
//! for p in journal.payments(&Query::default()).await? {
//!     println!("{} {} {} {} {:?}", p.created_ms, p.key.origin, p.rail, p.amount, p.proof_id);
//! }
//! # Ok(()) }
//! ```

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
#[cfg(feature = "sqlite")]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pay402_core::offer::Rail;
use pay402_core::problem::Reason;

pub use memory::MemoryJournal;
#[cfg(feature = "postgres")]
pub use postgres::PostgresJournal;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteJournal;

/// Most records one [`Query`] returns.
///
/// ```
/// assert_eq!(pay402_client::journal::MAX_LIST, 10_000);
/// ```
pub const MAX_LIST: usize = 10_000;

/// Where a journal entry stands.
///
/// ```
/// use pay402_client::journal::EntryState;
/// assert_eq!(EntryState::from_name("paid"), Some(EntryState::Paid));
/// assert!(EntryState::Presented.is_open());
/// assert!(!EntryState::Served.is_open());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryState {
    /// Recorded before paying.
    Intent,
    /// The payment exists; its proof is stored.
    Paid,
    /// The proof is being (or was) sent.
    Presented,
    /// The paid request was served.
    Served,
    /// Ended without being served.
    Failed,
}

impl EntryState {
    /// `intent`, `paid`, `presented`, `served` or `failed`.
    ///
    /// ```
    /// assert_eq!(pay402_client::journal::EntryState::Served.as_str(), "served");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryState::Intent => "intent",
            EntryState::Paid => "paid",
            EntryState::Presented => "presented",
            EntryState::Served => "served",
            EntryState::Failed => "failed",
        }
    }

    /// The state named `name`.
    ///
    /// ```
    /// assert_eq!(pay402_client::journal::EntryState::from_name("x"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<EntryState> {
        [
            EntryState::Intent,
            EntryState::Paid,
            EntryState::Presented,
            EntryState::Served,
            EntryState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether the purchase is unfinished (`intent`, `paid`, `presented`).
    ///
    /// ```
    /// assert!(pay402_client::journal::EntryState::Intent.is_open());
    /// ```
    pub const fn is_open(self) -> bool {
        matches!(
            self,
            EntryState::Intent | EntryState::Paid | EntryState::Presented
        )
    }
}

impl fmt::Display for EntryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies "the same request": origin, method, path with query,
/// and the SHA-256 of the body (hex; empty body: the hash of nothing).
///
/// ```
/// use pay402_client::journal::RequestKey;
/// let k = RequestKey::new("http://127.0.0.1:8402", "POST", "/translate?to=fr", b"hello");
/// assert_eq!(k.body_hash.len(), 64);
/// assert_eq!(k, RequestKey::new("http://127.0.0.1:8402", "POST", "/translate?to=fr", b"hello"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RequestKey {
    /// `scheme://host[:port]`.
    pub origin: String,
    /// The HTTP method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// SHA-256 of the body, lowercase hex.
    pub body_hash: String,
}

impl RequestKey {
    /// The key of a request.
    ///
    /// ```
    /// let k = pay402_client::journal::RequestKey::new("http://h", "GET", "/", b"");
    /// assert_eq!(k.body_hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /// ```
    pub fn new(origin: &str, method: &str, target: &str, body: &[u8]) -> RequestKey {
        use sha2::Digest as _;
        RequestKey {
            origin: origin.to_owned(),
            method: method.to_owned(),
            target: target.to_owned(),
            body_hash: hex_lower(&sha2::Sha256::digest(body)),
        }
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// One journal entry: a purchase and how far it went.
///
/// `Debug` leaves out [`proof`](Self::proof), a secret.
///
/// ```
/// # fn f(r: &pay402_client::journal::JournalRecord) {
/// println!("{} {} paid {} ({:?}) for {} {}{}: {}",
///     r.created_ms, r.rail, r.amount, r.cost, r.key.method, r.key.origin, r.key.target, r.state);
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalRecord {
    /// A random id (32 hex digits).
    pub id: String,
    /// When the intent was recorded (unix milliseconds).
    pub created_ms: i64,
    /// When the last step was recorded (unix milliseconds).
    pub updated_ms: i64,
    /// The request.
    pub key: RequestKey,
    /// The credential scope of the request (origin plus, per the payer's
    /// `TokenScope`, a path).
    pub scope: String,
    /// The rail paid.
    pub rail: Rail,
    /// The chosen offer as stored (JSON: the 402's offer headers and body,
    /// and the offer's index among those read from them).
    pub offer: String,
    /// The offer's price with its unit, e.g. `21000 msat`.
    pub amount: String,
    /// What it cost in the payer's reference unit, when known, e.g.
    /// `21 sat`.
    pub cost: Option<String>,
    /// Whether the cost counts against the budgets (not when nothing was
    /// paid).
    pub counted: bool,
    /// The state.
    pub state: EntryState,
    /// The proof (secret): see the [module documentation](self).
    pub proof: Option<String>,
    /// A public reference to the payment: the payment hash (L402), the
    /// EIP-3009 nonce (x402), the txid or transfer hash (BitRequests), the
    /// permit digest (x402_mock).
    pub proof_id: Option<String>,
    /// The status of the last answer to the paid request.
    pub status: Option<u16>,
    /// A receipt or an error: the settlement transaction, the refusal
    /// reason.
    pub detail: Option<String>,
}

impl fmt::Debug for JournalRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalRecord")
            .field("id", &self.id)
            .field("created_ms", &self.created_ms)
            .field("key", &self.key)
            .field("rail", &self.rail)
            .field("amount", &self.amount)
            .field("cost", &self.cost)
            .field("state", &self.state)
            .field("proof_id", &self.proof_id)
            .field("status", &self.status)
            .field("detail", &self.detail)
            .finish_non_exhaustive()
    }
}

/// A step recorded on an entry: its new state, and what becomes known.
/// `None` fields keep their stored value.
///
/// ```
/// use pay402_client::journal::{EntryState, Step};
/// let s = Step::to(EntryState::Served).status(200);
/// assert_eq!(s.state, EntryState::Served);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// The new state.
    pub state: EntryState,
    /// When (unix milliseconds).
    pub at_ms: i64,
    /// The proof, once paid.
    pub proof: Option<String>,
    /// The proof's public reference.
    pub proof_id: Option<String>,
    /// The answer's status.
    pub status: Option<u16>,
    /// A receipt or an error.
    pub detail: Option<String>,
    /// Whether the cost counts against the budgets.
    pub counted: Option<bool>,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("state", &self.state)
            .field("proof_id", &self.proof_id)
            .field("status", &self.status)
            .field("detail", &self.detail)
            .finish_non_exhaustive()
    }
}

impl Step {
    /// A step to `state`, now.
    ///
    /// ```
    /// let s = pay402_client::journal::Step::to(pay402_client::journal::EntryState::Paid);
    /// assert!(s.at_ms > 0);
    /// ```
    pub fn to(state: EntryState) -> Step {
        Step {
            state,
            at_ms: now_ms(),
            proof: None,
            proof_id: None,
            status: None,
            detail: None,
            counted: None,
        }
    }

    /// With the proof and its public reference.
    ///
    /// ```
    /// use pay402_client::journal::{EntryState, Step};
    /// let s = Step::to(EntryState::Paid).proof("secret".into(), "id".into());
    /// assert_eq!(s.proof_id.as_deref(), Some("id"));
    /// ```
    pub fn proof(mut self, proof: String, proof_id: String) -> Step {
        self.proof = Some(proof);
        self.proof_id = Some(proof_id);
        self
    }

    /// With the answer's status.
    ///
    /// ```
    /// use pay402_client::journal::{EntryState, Step};
    /// assert_eq!(Step::to(EntryState::Served).status(200).status, Some(200));
    /// ```
    pub fn status(mut self, status: u16) -> Step {
        self.status = Some(status);
        self
    }

    /// With a receipt or error detail (at most 1024 characters kept).
    ///
    /// ```
    /// use pay402_client::journal::{EntryState, Step};
    /// assert!(Step::to(EntryState::Failed).detail("x").detail.is_some());
    /// ```
    pub fn detail(mut self, detail: impl fmt::Display) -> Step {
        self.detail = Some(detail.to_string().chars().take(1024).collect());
        self
    }

    /// Whether the cost counts against the budgets.
    ///
    /// ```
    /// use pay402_client::journal::{EntryState, Step};
    /// assert_eq!(Step::to(EntryState::Failed).counted(false).counted, Some(false));
    /// ```
    pub fn counted(mut self, counted: bool) -> Step {
        self.counted = Some(counted);
        self
    }
}

/// A reusable credential kept by origin and scope: an L402 token (the
/// `Authorization` value) or an x402_mock access token.
///
/// `Debug` leaves out the credential.
///
/// ```
/// # fn f(t: &pay402_client::journal::StoredToken) {
/// println!("{} token for {} (entry {})", t.rail, t.scope, t.entry_id);
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredToken {
    /// The origin.
    pub origin: String,
    /// The scope (see [`JournalRecord::scope`]).
    pub scope: String,
    /// The rail that issued it.
    pub rail: Rail,
    /// The full `Authorization` value (secret).
    pub credential: String,
    /// The journal entry that paid for it.
    pub entry_id: String,
    /// When it expires (unix milliseconds), if it says.
    pub expires_ms: Option<i64>,
    /// When it was stored (unix milliseconds).
    pub created_ms: i64,
}

impl StoredToken {
    /// A token paid by entry `entry_id`.
    ///
    /// ```
    /// use pay402_client::journal::StoredToken;
    /// use pay402_core::offer::Rail;
    /// let t = StoredToken::new("http://h", "http://h", Rail::L402, "L402 m:p".into(), "e1", None);
    /// assert!(!format!("{t:?}").contains("m:p"));
    /// ```
    pub fn new(
        origin: &str,
        scope: &str,
        rail: Rail,
        credential: String,
        entry_id: &str,
        expires_ms: Option<i64>,
    ) -> StoredToken {
        StoredToken {
            origin: origin.to_owned(),
            scope: scope.to_owned(),
            rail,
            credential,
            entry_id: entry_id.to_owned(),
            expires_ms,
            created_ms: now_ms(),
        }
    }
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("origin", &self.origin)
            .field("scope", &self.scope)
            .field("rail", &self.rail)
            .field("entry_id", &self.entry_id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// Which records [`JournalStore::list`] returns, newest first.
///
/// ```
/// use pay402_client::journal::Query;
/// let q = Query::default().origin("http://127.0.0.1:8402").since_ms(0).limit(10);
/// assert_eq!(q.limit, 10);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// Only this origin.
    pub origin: Option<String>,
    /// Only entries created at or after this time (unix milliseconds).
    pub since_ms: Option<i64>,
    /// Only entries whose cost counts against the budgets.
    pub counted_only: bool,
    /// Only open entries (`intent`, `paid`, `presented`).
    pub open_only: bool,
    /// At most this many (capped at [`MAX_LIST`]).
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            origin: None,
            since_ms: None,
            counted_only: false,
            open_only: false,
            limit: MAX_LIST,
        }
    }
}

impl Query {
    /// Only `origin`.
    ///
    /// ```
    /// assert!(pay402_client::journal::Query::default().origin("http://h").origin.is_some());
    /// ```
    pub fn origin(mut self, origin: &str) -> Query {
        self.origin = Some(origin.to_owned());
        self
    }

    /// Only entries created at or after `ms`.
    ///
    /// ```
    /// assert_eq!(pay402_client::journal::Query::default().since_ms(5).since_ms, Some(5));
    /// ```
    pub fn since_ms(mut self, ms: i64) -> Query {
        self.since_ms = Some(ms);
        self
    }

    /// Only entries that count against the budgets.
    ///
    /// ```
    /// assert!(pay402_client::journal::Query::default().counted_only().counted_only);
    /// ```
    pub fn counted_only(mut self) -> Query {
        self.counted_only = true;
        self
    }

    /// Only open entries.
    ///
    /// ```
    /// assert!(pay402_client::journal::Query::default().open_only().open_only);
    /// ```
    pub fn open_only(mut self) -> Query {
        self.open_only = true;
        self
    }

    /// At most `n` records.
    ///
    /// ```
    /// assert_eq!(pay402_client::journal::Query::default().limit(1_000_000).limit, 10_000);
    /// ```
    pub fn limit(mut self, n: usize) -> Query {
        self.limit = n.min(MAX_LIST);
        self
    }
}

/// Why the journal could not be read or written.
///
/// ```
/// use pay402_client::journal::JournalError;
/// use pay402_core::problem::Reason;
/// assert_eq!(JournalError::Unavailable("disk full".into()).reason(), "journal_unavailable");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The store failed (I/O, locked, full).
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    /// A stored record does not read back.
    #[error("journal record unreadable: {0}")]
    Corrupt(String),
    /// No entry with this id.
    #[error("no journal entry {0}")]
    NotFound(String),
    /// No journal location could be chosen (see [`Journal::open_default`]).
    #[error("no journal location: {0}")]
    NoLocation(&'static str),
}

impl Reason for JournalError {
    fn reason(&self) -> &'static str {
        match self {
            JournalError::Unavailable(_) => "journal_unavailable",
            JournalError::Corrupt(_) => "journal_corrupt",
            JournalError::NotFound(_) => "journal_entry_not_found",
            JournalError::NoLocation(_) => "journal_no_location",
        }
    }
    fn status(&self) -> u16 {
        500
    }
}

/// A journal store. Every method is one atomic statement (or one
/// transaction) in the store.
///
/// ```
/// use pay402_client::journal::{JournalStore, MemoryJournal};
/// let store: std::sync::Arc<dyn JournalStore> = std::sync::Arc::new(MemoryJournal::new());
/// # let _ = store;
/// ```
#[async_trait]
pub trait JournalStore: Send + Sync + 'static {
    /// Records a new entry (its intent).
    async fn insert(&self, record: &JournalRecord) -> Result<(), JournalError>;

    /// Records `step` on entry `id`.
    async fn update(&self, id: &str, step: &Step) -> Result<(), JournalError>;

    /// The newest open entry (`intent`, `paid`, `presented`) of `key`.
    async fn open_for(&self, key: &RequestKey) -> Result<Option<JournalRecord>, JournalError>;

    /// The entry `id`.
    async fn get(&self, id: &str) -> Result<Option<JournalRecord>, JournalError>;

    /// Entries matching `query`, newest first.
    async fn list(&self, query: &Query) -> Result<Vec<JournalRecord>, JournalError>;

    /// Keeps `token` (replacing the token of the same origin, scope and
    /// rail).
    async fn put_token(&self, token: &StoredToken) -> Result<(), JournalError>;

    /// The tokens kept for `origin` and `scope`, newest first.
    async fn tokens(&self, origin: &str, scope: &str) -> Result<Vec<StoredToken>, JournalError>;

    /// Forgets the token of `origin`, `scope` and `rail` if it is
    /// `credential`.
    async fn remove_token(
        &self,
        origin: &str,
        scope: &str,
        rail: Rail,
        credential: &str,
    ) -> Result<(), JournalError>;
}

/// The journal a [`Payer`](crate::Payer) writes: a handle on any
/// [`JournalStore`]. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pay402_client::journal::JournalError> {
/// use pay402_client::journal::{Journal, Query};
/// let journal = Journal::memory();
/// assert!(journal.payments(&Query::default()).await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Journal {
    store: Arc<dyn JournalStore>,
    location: String,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The environment variable naming the default journal: a file path, or
/// `memory`.
///
/// ```
/// assert_eq!(pay402_client::journal::JOURNAL_ENV, "PAY402_JOURNAL");
/// ```
pub const JOURNAL_ENV: &str = "PAY402_JOURNAL";

impl Journal {
    /// A journal in memory: lost when the process ends.
    ///
    /// ```
    /// let j = pay402_client::journal::Journal::memory();
    /// assert_eq!(j.location(), "memory");
    /// ```
    pub fn memory() -> Journal {
        Journal::from_store(Arc::new(MemoryJournal::new()), "memory")
    }

    /// A journal on any store; `location` names it in logs.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_client::journal::{Journal, MemoryJournal};
    /// let j = Journal::from_store(Arc::new(MemoryJournal::new()), "mine");
    /// assert_eq!(j.location(), "mine");
    /// ```
    pub fn from_store(store: Arc<dyn JournalStore>, location: &str) -> Journal {
        Journal {
            store,
            location: location.to_owned(),
        }
    }

    /// A journal in the SQLite file at `path` (created owner-only if
    /// missing, with its parent directories).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pay402_client::journal::JournalError> {
    /// let j = pay402_client::journal::Journal::sqlite("/var/lib/agent/pay402-journal.sqlite").await?;
    /// # let _ = j; Ok(()) }
    /// ```
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(path: impl AsRef<Path>) -> Result<Journal, JournalError> {
        let path = path.as_ref();
        let store = SqliteJournal::open(path).await?;
        Ok(Journal::from_store(
            Arc::new(store),
            &path.display().to_string(),
        ))
    }

    /// Opens the journal `location` names, like the server's store URLs:
    /// `memory` (or `memory:`, `sqlite::memory:`), `sqlite://PATH` (or `sqlite:PATH`, or a bare
    /// file path), or `postgres://USER@HOST/DB` (feature `postgres`; a
    /// password in the URL is never shown in [`Journal::location`]).
    ///
    /// # Errors
    ///
    /// [`JournalError::Unavailable`] when the store cannot be opened, or
    /// its kind is not compiled in.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pay402_client::journal::JournalError> {
    /// let j = pay402_client::journal::Journal::open("memory:").await?;
    /// assert_eq!(j.location(), "memory");
    /// # Ok(()) }
    /// ```
    pub async fn open(location: &str) -> Result<Journal, JournalError> {
        let location = location.trim();
        if matches!(location, "memory" | "memory:" | "sqlite::memory:") {
            return Ok(Journal::memory());
        }
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let store = PostgresJournal::connect(location).await?;
                // scheme://[user[:password]@]rest, shown without the user part.
                let shown = match (location.split_once("://"), location.rsplit_once('@')) {
                    (Some((scheme, _)), Some((_, rest))) => format!("{scheme}://{rest}"),
                    _ => location.to_owned(),
                };
                return Ok(Journal::from_store(Arc::new(store), &shown));
            }
            #[cfg(not(feature = "postgres"))]
            return Err(JournalError::Unavailable(
                "a PostgreSQL journal needs the `postgres` feature".into(),
            ));
        }
        #[cfg(feature = "sqlite")]
        {
            let path = location
                .strip_prefix("sqlite://")
                .or_else(|| location.strip_prefix("sqlite:"))
                .unwrap_or(location);
            Journal::sqlite(path).await
        }
        #[cfg(not(feature = "sqlite"))]
        Err(JournalError::Unavailable(
            "a SQLite journal needs the `sqlite` feature".into(),
        ))
    }

    /// The default journal: the path in `PAY402_JOURNAL` (`memory` for a
    /// journal in memory, a `postgres://` URL for PostgreSQL), else `$XDG_DATA_HOME/pay402/journal.sqlite`,
    /// else `$HOME/.local/share/pay402/journal.sqlite`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pay402_client::journal::JournalError> {
    /// let j = pay402_client::journal::Journal::open_default().await?;
    /// println!("journal at {}", j.location());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sqlite")]
    pub async fn open_default() -> Result<Journal, JournalError> {
        if let Some(url) = std::env::var(JOURNAL_ENV)
            .ok()
            .filter(|v| v.starts_with("postgres://") || v.starts_with("postgresql://"))
        {
            return Journal::open(&url).await;
        }
        match default_location(|k| std::env::var_os(k))? {
            None => Ok(Journal::memory()),
            Some(path) => Journal::sqlite(path).await,
        }
    }

    /// Where the journal is: a file path, or `memory`.
    ///
    /// ```
    /// assert_eq!(pay402_client::journal::Journal::memory().location(), "memory");
    /// ```
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The store.
    ///
    /// ```
    /// let j = pay402_client::journal::Journal::memory();
    /// let _store = j.store();
    /// ```
    pub fn store(&self) -> &Arc<dyn JournalStore> {
        &self.store
    }

    /// Past payments and their receipts, newest first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pay402_client::journal::JournalError> {
    /// use pay402_client::journal::{Journal, Query};
    /// let j = Journal::memory();
    /// let today = j.payments(&Query::default().since_ms(0).limit(100)).await?;
    /// assert!(today.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn payments(&self, query: &Query) -> Result<Vec<JournalRecord>, JournalError> {
        self.store.list(query).await
    }

    /// One entry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pay402_client::journal::JournalError> {
    /// let j = pay402_client::journal::Journal::memory();
    /// assert!(j.entry("nope").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn entry(&self, id: &str) -> Result<Option<JournalRecord>, JournalError> {
        self.store.get(id).await
    }

    /// Closes an open entry without paying again (state `failed`, detail
    /// `abandoned`): after checking with the node, the chain or the server
    /// that a payment whose outcome was unknown did not go through, or to
    /// give up on it. The next identical request starts a new purchase.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let j = pay402_client::journal::Journal::memory();
    /// assert!(j.abandon("nope").await.is_err());
    /// # }
    /// ```
    pub async fn abandon(&self, id: &str) -> Result<(), JournalError> {
        let Some(record) = self.store.get(id).await? else {
            return Err(JournalError::NotFound(id.chars().take(64).collect()));
        };
        if !record.state.is_open() {
            return Ok(());
        }
        self.store
            .update(id, &Step::to(EntryState::Failed).detail("abandoned"))
            .await
    }
}

/// The default journal location: `None` for memory.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn default_location(
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<PathBuf>, JournalError> {
    if let Some(v) = var(JOURNAL_ENV).filter(|v| !v.is_empty()) {
        if v == "memory" {
            return Ok(None);
        }
        return Ok(Some(PathBuf::from(v)));
    }
    if let Some(d) = var("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(Some(PathBuf::from(d).join("pay402").join("journal.sqlite")));
    }
    if let Some(h) = var("HOME").filter(|v| !v.is_empty()) {
        return Ok(Some(
            PathBuf::from(h)
                .join(".local")
                .join("share")
                .join("pay402")
                .join("journal.sqlite"),
        ));
    }
    Err(JournalError::NoLocation(
        "set PAY402_JOURNAL (a file path, or `memory`), XDG_DATA_HOME or HOME",
    ))
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    ms_of(SystemTime::now())
}

/// `t` in unix milliseconds (0 before the epoch).
pub(crate) fn ms_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh random entry id (16 bytes, hex).
pub(crate) fn new_id() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex_lower(&b)
}

#[cfg(test)]
mod tests;
