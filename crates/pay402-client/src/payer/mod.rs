//! [`Payer`]: one client that pays whatever a server offers, by policy,
//! within budgets that span rails, and never twice.
//!
//! A `Payer` holds any set of payment means: a Lightning node for L402
//! ([`PayerBuilder::lightning`]), an EVM signer for x402
//! ([`PayerBuilder::evm_signer`]), an x402_mock permit setup, BitRequests
//! wallets. Each is a per-rail client ([`L402Client`], [`X402Client`](crate::x402::X402Client),
//! [`MockClient`](crate::x402_mock::MockClient),
//! [`BitRequests`](crate::bitreq::BitRequests)) configured as usual, so
//! every per-rail guarantee holds: the L402 invoice is checked against the
//! macaroon before paying and the preimage against the invoice; an x402
//! payment is verified with core's reference rules before it leaves and is
//! resent byte for byte, never re-signed; credentials never leave their
//! origin; errors are typed with `may_have_paid`; default timeouts apply.
//!
//! On a 402 the payer:
//!
//! 1. reads **every** offer with [`read_offers`](pay402_core::offer::read_offers);
//! 2. keeps those it can pay: it holds means for the rail, the rail's
//!    client accepts the offer (network, asset, recipient, expiry, its own
//!    cap), its cost in the reference unit (converted through the
//!    [`Rates`] port, **rounded up**) is within the per-request maximum;
//! 3. picks one by [`Choice`]: the cheapest, an explicit rail order, or a
//!    closure;
//! 4. checks the per-origin and total budgets of the period and records
//!    the intent in the [journal](crate::journal), both under one lock;
//! 5. pays through the rail's client, records the proof, presents it
//!    (replaying the same request: same method, URL, headers and body) and
//!    records the outcome.
//!
//! When nothing can be paid, [`PayerError::NothingPayable`] lists every
//! offer with its [`Refusal`] reason.
//!
//! **Never sent unpaid twice.** A request is sent unpaid once: its 402 is
//! the quote. The paid request is the same request with the proof. A
//! request whose purchase is open in the journal (paid, or possibly paid,
//! and not served, in this process or one that crashed) is never sent
//! unpaid again: the stored proof is presented.
//!
//! **Single flight.** Requests of one origin (and [`TokenScope`]) pay one
//! at a time; a request that waited first retries with a credential paid
//! meanwhile (an L402 or x402_mock token) before paying.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use pay402_client::{Choice, Payer, PayerError};
//! use pay402_client::x402::LocalSigner;
//! use pay402_core::lightning::{LightningPayer, Network};
//! use pay402_core::rates::{Amount, FixedRates, TokenUnit, Unit};
//!
//! async fn demo(node: Arc<dyn LightningPayer>, key: &str) -> Result<(), PayerError> {
//!     let usdc = TokenUnit::new("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", 6);
//!     let payer = Payer::builder()
//!         .lightning(node, Network::Bitcoin)
//!         .evm_signer(Arc::new(LocalSigner::from_hex(key).expect("key")))
//!         .rates(FixedRates::new().usd_cents_per_btc(10_000_000).usd_stablecoin(usdc))
//!         .reference_unit(Unit::UsdCents)
//!         .choose(Choice::Cheapest)
//!         .max_price(Amount::UsdCents(5))                            // per request
//!         .total(Amount::UsdCents(500), Duration::from_secs(86_400)) // per day
//!         .build()
//!         .await?;
//!     let paid = payer.get("https://api.example.com/report").await?;
//!     if let Some(r) = &paid.receipt {
//!         println!("paid {} through {} ({:?})", r.amount, r.rail, r.cost);
//!     }
//!     println!("{}", paid.text().await?);
//!     Ok(())
//! }
//! ```

mod error;
mod policy;
mod rails;
mod receipt;
mod stored;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use alloy_primitives::U256;
use pay402_core::l402::Scheme;
use pay402_core::lightning::{LightningPayer, Network};
use pay402_core::offer::{MAX_BODY_BYTES, Offer, OfferSet, Rail, ReadOptions, read_offers_with};
use pay402_core::problem::Reason as _;
use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, TokenUnit, Unit};
use pay402_core::time::UnixTime;
use reqwest::header::AUTHORIZATION;
use reqwest::{IntoUrl, Method, Request, RequestBuilder, Response, Url};
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::body::read_bounded;
use crate::cache::{CacheKey, KeyGuard, TokenCache, TokenScope, origin_of};
use crate::client::{L402Client, L402ClientBuilder, Verdict, verdict};
use crate::journal::{
    EntryState, Journal, JournalError, JournalRecord, Query, RequestKey, Step, new_id, now_ms,
};
use crate::redirect::default_http;

pub use error::{PayerError, Refusal, RefusalReason};
pub use policy::{Candidate, Choice, ChooseFn};
pub use receipt::{PayerPaid, PayerReceipt, RailReceipt};

use policy::{Budgets, parse_cost};
use rails::{Means, MeansBuilders};
use stored::StoredOffer;

/// One step of a purchase, as reported to [`PayerBuilder::on_event`]
/// right after it is recorded in the journal.
///
/// ```
/// # fn f(e: &pay402_client::PayerEvent) {
/// println!("{} {} {} {:?}", e.entry, e.rail, e.state, e.proof_id);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PayerEvent {
    /// The journal entry.
    pub entry: String,
    /// The rail.
    pub rail: Rail,
    /// The state just recorded.
    pub state: EntryState,
    /// The payment's public reference, once paid.
    pub proof_id: Option<String>,
}

/// A callback told of every recorded step.
///
/// ```
/// let f: pay402_client::EventFn = std::sync::Arc::new(|e| eprintln!("{} {}", e.entry, e.state));
/// # let _ = f;
/// ```
pub type EventFn = Arc<dyn Fn(&PayerEvent) + Send + Sync>;

/// Configures a [`Payer`]; see [`Payer::builder`].
///
/// Defaults: no means of payment (add at least one); [`Choice::Cheapest`];
/// reference unit [`Unit::Sat`] with [`FixedRates::new`] (msat↔sat only:
/// give rates to compare or budget token offers); no budget beyond each
/// rail client's own cap; [`TokenScope::Origin`]; the journal from
/// [`Journal::open_default`](crate::journal::Journal::open_default) (a
/// SQLite file; `PAY402_JOURNAL=memory` for memory); a reqwest client that
/// follows redirects only within the request's origin, with the default
/// timeouts, shared by every rail.
#[must_use]
pub struct PayerBuilder {
    means: MeansBuilders,
    tokens: Vec<TokenUnit>,
    rates: Arc<dyn Rates>,
    unit: Unit,
    choice: Choice,
    max_price: Option<Amount>,
    per_origin: Option<(Amount, Duration)>,
    total: Option<(Amount, Duration)>,
    scope: TokenScope,
    journal: Option<Journal>,
    on_event: Option<EventFn>,
    http: Option<reqwest::Client>,
    timeout: Option<Duration>,
    timeout_set: bool,
    connect_timeout: Duration,
}

impl fmt::Debug for PayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayerBuilder")
            .field("l402", &self.means.l402.is_some())
            .field("mpp", &self.means.mpp.is_some())
            .field("unit", &self.unit)
            .field("choice", &self.choice)
            .field("max_price", &self.max_price)
            .field("per_origin", &self.per_origin)
            .field("total", &self.total)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl PayerBuilder {
    /// Pays L402 with `node` on `network` (an [`L402Client`] with its
    /// defaults: 1000 sat per request, 10 sat of fees).
    ///
    /// ```
    /// # fn f(node: std::sync::Arc<dyn pay402_core::lightning::LightningPayer>) {
    /// let b = pay402_client::Payer::builder().lightning(node, pay402_core::lightning::Network::Regtest);
    /// # let _ = b; }
    /// ```
    pub fn lightning(self, node: Arc<dyn LightningPayer>, network: Network) -> Self {
        self.l402(L402Client::builder(node).network(network))
    }

    /// Pays L402 with a configured [`L402Client`] builder (its network,
    /// caps, fee limit, payment timeout and scope; the payer's HTTP client
    /// and scope replace its own).
    ///
    /// ```
    /// # fn f(node: std::sync::Arc<dyn pay402_core::lightning::LightningPayer>) {
    /// use pay402_client::L402Client;
    /// use pay402_core::money::Msat;
    /// let b = pay402_client::Payer::builder()
    ///     .l402(L402Client::builder(node).network(pay402_core::lightning::Network::Regtest).max_fee(Msat(2_000)));
    /// # let _ = b; }
    /// ```
    pub fn l402(mut self, builder: L402ClientBuilder) -> Self {
        self.means.l402 = Some(builder);
        self
    }

    /// Pays x402 with `signer` (an [`X402Client`](crate::x402::X402Client) with its defaults: USDC
    /// on Base and Base Sepolia up to 1 USDC per payment).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_client::x402::LocalSigner;
    /// let b = pay402_client::Payer::builder().evm_signer(Arc::new(LocalSigner::random()));
    /// # let _ = b;
    /// ```
    #[cfg(feature = "x402")]
    pub fn evm_signer(self, signer: Arc<dyn crate::x402::PaymentSigner>) -> Self {
        self.x402(crate::x402::X402Client::builder(signer))
    }

    /// Pays x402 with a configured [`X402Client`](crate::x402::X402Client) builder (allowed assets
    /// and caps, networks, recipients, budgets per asset, resends).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_client::x402::{LocalSigner, X402Client};
    /// use pay402_core::x402::TokenAmount;
    /// let usdc = "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap();
    /// let b = pay402_client::Payer::builder().x402(
    ///     X402Client::builder(Arc::new(LocalSigner::random())).allow_asset("eip155:31337", usdc, TokenAmount::from_u64(50_000)),
    /// );
    /// # let _ = b;
    /// ```
    #[cfg(feature = "x402")]
    pub fn x402(mut self, builder: crate::x402::X402ClientBuilder) -> Self {
        self.means.x402 = Some(builder);
        self
    }

    /// Pays the x402_mock dialect with a configured
    /// [`MockClient`](crate::x402_mock::MockClient) builder.
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::x402_mock::MockClientBuilder) {
    /// let p = pay402_client::Payer::builder().x402_mock(b);
    /// # let _ = p; }
    /// ```
    #[cfg(feature = "x402-mock")]
    pub fn x402_mock(mut self, builder: crate::x402_mock::MockClientBuilder) -> Self {
        self.means.mock = Some(builder);
        self
    }

    /// Pays BitRequests with a configured
    /// [`BitRequests`](crate::bitreq::BitRequests) builder (one payment
    /// method each; call again for another method).
    ///
    /// ```no_run
    /// # fn f(wallet: std::sync::Arc<pay402_client::bitreq::Wallet>) {
    /// use pay402_client::bitreq::BitRequests;
    /// let p = pay402_client::Payer::builder()
    ///     .bitreq(BitRequests::on_chain(wallet.clone()))
    ///     .bitreq(BitRequests::bit_transfer(wallet, "alice"));
    /// # let _ = p; }
    /// ```
    #[cfg(feature = "bitreq")]
    pub fn bitreq(mut self, builder: crate::bitreq::BitRequestsBuilder) -> Self {
        self.means.bitreq.push(builder);
        self
    }

    /// Pays MPP `Payment` charges (`lightning`/`charge`, `evm`/`charge`)
    /// with a configured [`MppClient`](crate::mpp::MppClient) builder, and
    /// advertises its `Accept-Payment` on every request; see
    /// [`crate::mpp`].
    ///
    /// ```
    /// # fn f(node: std::sync::Arc<dyn pay402_core::lightning::LightningPayer>) {
    /// use pay402_client::mpp::MppClient;
    /// let p = pay402_client::Payer::builder()
    ///     .mpp(MppClient::builder().lightning(node, pay402_core::lightning::Network::Regtest));
    /// # let _ = p; }
    /// ```
    pub fn mpp(mut self, builder: crate::mpp::MppClientBuilder) -> Self {
        self.means.mpp = Some(builder);
        self
    }

    /// Makes a token's decimals known, so that x402 offers in it can be
    /// read and priced (USDC on Base and Base Sepolia is known).
    ///
    /// ```
    /// use pay402_core::rates::TokenUnit;
    /// let b = pay402_client::Payer::builder()
    ///     .token(TokenUnit::new("eip155:31337", "0x5FbDB2315678afecb367f032d93F642f64180aa3", 6));
    /// # let _ = b;
    /// ```
    pub fn token(mut self, token: TokenUnit) -> Self {
        self.tokens.push(token);
        self
    }

    /// The exchange rates offers are compared and budgeted with.
    ///
    /// ```
    /// use pay402_core::rates::FixedRates;
    /// let b = pay402_client::Payer::builder().rates(FixedRates::new().usd_cents_per_btc(10_000_000));
    /// # let _ = b;
    /// ```
    pub fn rates(mut self, rates: impl Rates + 'static) -> Self {
        self.rates = Arc::new(rates);
        self
    }

    /// The unit costs are compared and budgets counted in (default sat).
    ///
    /// ```
    /// let b = pay402_client::Payer::builder().reference_unit(pay402_core::rates::Unit::UsdCents);
    /// # let _ = b;
    /// ```
    pub fn reference_unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }

    /// How one offer is picked among those the payer can pay.
    ///
    /// ```
    /// use pay402_client::Choice;
    /// use pay402_core::offer::Rail;
    /// let b = pay402_client::Payer::builder().choose(Choice::RailOrder(vec![Rail::L402, Rail::X402]));
    /// # let _ = b;
    /// ```
    pub fn choose(mut self, choice: Choice) -> Self {
        self.choice = choice;
        self
    }

    /// The most one request may pay, in any unit (converted to the
    /// reference unit, rounded down). Zero pays nothing.
    ///
    /// ```
    /// use pay402_core::{money::Sat, rates::Amount};
    /// let b = pay402_client::Payer::builder().max_price(Amount::Sat(Sat(500)));
    /// # let _ = b;
    /// ```
    pub fn max_price(mut self, max: Amount) -> Self {
        self.max_price = Some(max);
        self
    }

    /// The most paid to one origin within any `period` (a sliding window).
    ///
    /// ```
    /// use pay402_core::{money::Sat, rates::Amount};
    /// let b = pay402_client::Payer::builder().per_origin(Amount::Sat(Sat(10_000)), std::time::Duration::from_secs(3_600));
    /// # let _ = b;
    /// ```
    pub fn per_origin(mut self, max: Amount, period: Duration) -> Self {
        self.per_origin = Some((max, period));
        self
    }

    /// The most paid in total within any `period` (a sliding window).
    ///
    /// ```
    /// use pay402_core::{money::Sat, rates::Amount};
    /// let b = pay402_client::Payer::builder().total(Amount::Sat(Sat(100_000)), std::time::Duration::from_secs(86_400));
    /// # let _ = b;
    /// ```
    pub fn total(mut self, max: Amount, period: Duration) -> Self {
        self.total = Some((max, period));
        self
    }

    /// Which requests share a credential (L402 token) and a single-flight
    /// lock; see [`TokenScope`].
    ///
    /// ```
    /// let b = pay402_client::Payer::builder().scope(pay402_client::TokenScope::PathPrefix);
    /// # let _ = b;
    /// ```
    pub fn scope(mut self, scope: TokenScope) -> Self {
        self.scope = scope;
        self
    }

    /// The journal to record payments in.
    ///
    /// ```
    /// let b = pay402_client::Payer::builder().journal(pay402_client::journal::Journal::memory());
    /// # let _ = b;
    /// ```
    pub fn journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Calls `f` after each step of a purchase is recorded (for progress,
    /// metrics or audits; keep it quick, it runs on the payment's task).
    ///
    /// ```
    /// let b = pay402_client::Payer::builder().on_event(|e| println!("{} {}", e.entry, e.state));
    /// # let _ = b;
    /// ```
    pub fn on_event<F>(mut self, f: F) -> Self
    where
        F: Fn(&PayerEvent) + Send + Sync + 'static,
    {
        self.on_event = Some(Arc::new(f));
        self
    }

    /// Uses this reqwest client for every rail. Build it with
    /// `.redirect(pay402_client::same_origin_redirects())`.
    ///
    /// ```
    /// let http = reqwest::Client::builder().redirect(pay402_client::same_origin_redirects()).build().unwrap();
    /// let b = pay402_client::Payer::builder().http(http);
    /// # let _ = b;
    /// ```
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The total timeout of each HTTP attempt (default 60 s; it overrides
    /// your own [`http`](Self::http) client's).
    ///
    /// ```
    /// let b = pay402_client::Payer::builder().timeout(std::time::Duration::from_secs(20));
    /// # let _ = b;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self.timeout_set = true;
        self
    }

    crate::timeouts::connect_and_no_timeout!("pay402_client::PayerBuilder", "http");

    /// Builds the payer: opens the journal (the default one unless
    /// given), converts the budgets to the reference unit.
    ///
    /// # Errors
    ///
    /// [`PayerError::Journal`] if the journal cannot be opened;
    /// [`PayerError::NothingPayable`] with a [`RefusalReason::NoRate`] if
    /// a budget cannot be converted to the reference unit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pay402_client::PayerError> {
    /// let payer = pay402_client::Payer::builder()
    ///     .journal(pay402_client::journal::Journal::memory())
    ///     .build()
    ///     .await?;
    /// assert!(payer.rails().is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<Payer, PayerError> {
        let journal_error = |source: JournalError| PayerError::Journal {
            source,
            entry: None,
            paid: false,
        };
        let journal = match self.journal {
            Some(j) => j,
            #[cfg(feature = "sqlite")]
            None => Journal::open_default().await.map_err(journal_error)?,
            #[cfg(not(feature = "sqlite"))]
            None => Journal::memory(),
        };
        let to_ref = |a: &Amount| -> Result<U256, PayerError> {
            self.rates
                .convert(a, &self.unit, Rounding::Down)
                .map(|v| v.value())
                .map_err(|e| PayerError::NothingPayable {
                    refused: vec![Refusal {
                        rail: None,
                        offer: "budget".into(),
                        amount: Some(a.clone()),
                        reason: RefusalReason::NoRate(e),
                    }],
                })
        };
        let budgets = Budgets {
            unit: self.unit.clone(),
            max_price: self.max_price.as_ref().map(to_ref).transpose()?,
            per_origin: match &self.per_origin {
                Some((a, p)) => Some((to_ref(a)?, *p)),
                None => None,
            },
            total: match &self.total {
                Some((a, p)) => Some((to_ref(a)?, *p)),
                None => None,
            },
        };
        let timeout = crate::timeouts::per_request(self.timeout, self.timeout_set, &self.http);
        let http = self
            .http
            .unwrap_or_else(|| default_http(self.connect_timeout, self.timeout));
        let means = Means::build(
            &http,
            self.timeout_set.then_some(self.timeout),
            self.scope,
            self.means,
        );
        let mut read_options = ReadOptions::default();
        for t in self.tokens {
            read_options = read_options.token(t);
        }
        let open = journal
            .store()
            .list(&Query::default().open_only())
            .await
            .map_err(journal_error)?;
        Ok(Payer {
            inner: Arc::new(Inner {
                http,
                timeout,
                means,
                rates: self.rates,
                read_options,
                choice: self.choice,
                budgets,
                scope: self.scope,
                journal,
                locks: Arc::new(TokenCache::default()),
                budget_lock: tokio::sync::Mutex::new(()),
                open: Mutex::new(open.into_iter().map(|r| r.key).collect()),
                tokens_loaded: Mutex::new(HashSet::new()),
                active: Arc::new(Mutex::new(HashSet::new())),
                on_event: self.on_event,
            }),
        })
    }
}

/// One client that pays whatever a server offers: see the [module
/// documentation](self).
///
/// The payer is cheap to clone; clones share credentials, locks, budgets
/// and the journal.
///
/// ```no_run
/// use std::sync::Arc;
/// use pay402_client::{Payer, PayerError};
/// use pay402_core::lightning::{LightningPayer, Network};
///
/// async fn fetch(node: Arc<dyn LightningPayer>) -> Result<String, PayerError> {
///     let payer = Payer::builder().lightning(node, Network::Regtest).build().await?;
///     payer.get("http://127.0.0.1:8402/hello").await?.text().await
/// }
/// ```
#[derive(Clone)]
pub struct Payer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Payer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payer")
            .field("rails", &self.rails())
            .field("choice", &self.inner.choice)
            .field("budgets", &self.inner.budgets)
            .field("journal", &self.inner.journal)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    http: reqwest::Client,
    timeout: Option<Duration>,
    means: Means,
    rates: Arc<dyn Rates>,
    read_options: ReadOptions,
    choice: Choice,
    budgets: Budgets,
    scope: TokenScope,
    journal: Journal,
    /// Single-flight locks per scope key.
    locks: Arc<TokenCache>,
    /// Budget checks and intents are one critical section.
    budget_lock: tokio::sync::Mutex<()>,
    /// The requests with an open journal entry.
    open: Mutex<HashSet<RequestKey>>,
    /// The scopes whose journal tokens were loaded.
    tokens_loaded: Mutex<HashSet<String>>,
    /// The entries a call of this process is working on (never resumed by
    /// another call).
    active: Arc<Mutex<HashSet<String>>>,
    on_event: Option<EventFn>,
}

impl Payer {
    /// Starts configuring a payer.
    ///
    /// ```
    /// let b = pay402_client::Payer::builder();
    /// # let _ = b;
    /// ```
    pub fn builder() -> PayerBuilder {
        PayerBuilder {
            means: MeansBuilders::default(),
            tokens: Vec::new(),
            rates: Arc::new(FixedRates::new()),
            unit: Unit::Sat,
            choice: Choice::default(),
            max_price: None,
            per_origin: None,
            total: None,
            scope: TokenScope::Origin,
            journal: None,
            on_event: None,
            http: None,
            timeout: Some(crate::DEFAULT_REQUEST_TIMEOUT),
            timeout_set: false,
            connect_timeout: crate::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// `GET url`, paying if asked.
    ///
    /// ```no_run
    /// # async fn f(p: pay402_client::Payer) -> Result<(), pay402_client::PayerError> {
    /// let paid = p.get("http://127.0.0.1:8402/hello").await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub async fn get<U: IntoUrl>(&self, url: U) -> Result<PayerPaid, PayerError> {
        let request = self.inner.http.get(url).build().map_err(PayerError::Http)?;
        self.execute(request).await
    }

    /// A request builder on the payer's HTTP client, for
    /// [`send`](Self::send).
    ///
    /// ```no_run
    /// # async fn f(p: pay402_client::Payer) -> Result<(), pay402_client::PayerError> {
    /// let rb = p.request(reqwest::Method::POST, "http://127.0.0.1:8402/translate").body("hello");
    /// let paid = p.send(rb).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub fn request<U: IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        self.inner.http.request(method, url)
    }

    /// Builds `builder` and executes it.
    ///
    /// ```no_run
    /// # async fn f(p: pay402_client::Payer) -> Result<(), pay402_client::PayerError> {
    /// let paid = p.send(p.request(reqwest::Method::GET, "http://127.0.0.1:8402/hello")).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub async fn send(&self, builder: RequestBuilder) -> Result<PayerPaid, PayerError> {
        self.execute(builder.build().map_err(PayerError::Http)?)
            .await
    }

    /// Executes `request`, paying one offer of a 402 if needed (see the
    /// [module documentation](self)). The body must be buffered
    /// (cloneable) to be paid for.
    ///
    /// ```no_run
    /// # async fn f(p: pay402_client::Payer) -> Result<(), Box<dyn std::error::Error>> {
    /// let req = reqwest::Request::new(reqwest::Method::GET, "http://127.0.0.1:8402/hello".parse()?);
    /// let paid = p.execute(req).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub async fn execute(&self, request: Request) -> Result<PayerPaid, PayerError> {
        let span = info_span!(
            "payer.request",
            origin = %origin_of(request.url()),
            method = %request.method(),
        );
        Arc::clone(&self.inner).run(request).instrument(span).await
    }

    /// The journal.
    ///
    /// ```
    /// # async fn f(p: pay402_client::Payer) -> Result<(), pay402_client::journal::JournalError> {
    /// for r in p.journal().payments(&Default::default()).await? { println!("{r:?}"); }
    /// # Ok(()) }
    /// ```
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// The rails the payer holds means for.
    ///
    /// ```
    /// # fn f(p: pay402_client::Payer) {
    /// println!("{:?}", p.rails());
    /// # }
    /// ```
    pub fn rails(&self) -> Vec<Rail> {
        self.inner.means.rails()
    }

    /// The underlying reqwest client.
    ///
    /// ```
    /// # fn f(p: pay402_client::Payer) {
    /// let _rb = p.http().get("http://127.0.0.1:8402/");
    /// # }
    /// ```
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
}

/// A purchase under way: the journal entry and what it is for.
#[derive(Clone)]
pub(crate) struct Purchase {
    pub(crate) id: String,
    pub(crate) key: RequestKey,
    pub(crate) offer: Offer,
    pub(crate) cost: Option<Amount>,
    /// The request's URL.
    pub(crate) url: Url,
    /// The URL of the 402 the offer came from (x402_mock token endpoints
    /// are relative to it).
    #[cfg_attr(not(feature = "x402-mock"), allow(dead_code))]
    pub(crate) offer_url: Url,
    pub(crate) scope: CacheKey,
    pub(crate) created: SystemTime,
    /// Resumed from the journal.
    pub(crate) resumed: bool,
}

impl Purchase {
    pub(crate) fn receipt(
        &self,
        proof_id: String,
        settlement: Option<String>,
        rail_receipt: Option<RailReceipt>,
    ) -> PayerReceipt {
        PayerReceipt {
            entry: self.id.clone(),
            rail: self.offer.rail,
            offer: self.offer.label(),
            amount: self.offer.amount.clone(),
            cost: self.cost.clone(),
            origin: self.key.origin.clone(),
            url: self.url.clone(),
            proof_id,
            settlement,
            paid_at: self.created,
            resumed: self.resumed,
            pending: false,
            rail_receipt,
        }
    }
}

/// Marks an entry as worked on by this process until dropped.
struct Active {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Active {
    /// `None` when another call already works on `id`.
    fn claim(set: &Arc<Mutex<HashSet<String>>>, id: &str) -> Option<Active> {
        set.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned())
            .then(|| Active {
                set: Arc::clone(set),
                id: id.to_owned(),
            })
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// A credential sent with a request.
pub(crate) enum Sent {
    L402(Arc<crate::cache::Token>, CacheKey),
    #[cfg(feature = "x402-mock")]
    Mock(String),
}

/// The scope string a credential is kept under in the journal.
pub(crate) fn scope_string(key: &CacheKey) -> String {
    format!("{}{}", key.origin(), key.path().unwrap_or_default())
}

/// Path and query of `url`.
fn target_of(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

impl Inner {
    /// Sends `request` with the payer's total timeout unless it has its own.
    pub(crate) async fn send(&self, mut request: Request) -> reqwest::Result<Response> {
        crate::timeouts::apply(&mut request, self.timeout);
        self.http.execute(request).await
    }

    /// Records `step` on the purchase and reports it.
    pub(crate) async fn step(&self, p: &Purchase, step: Step) -> Result<(), JournalError> {
        let state = step.state;
        let proof_id = step.proof_id.clone();
        self.journal.store().update(&p.id, &step).await?;
        if !state.is_open() {
            self.open_set().remove(&p.key);
        }
        debug!(entry = %p.id, state = %state, "journal step");
        if let Some(f) = &self.on_event {
            f(&PayerEvent {
                entry: p.id.clone(),
                rail: p.offer.rail,
                state,
                proof_id,
            });
        }
        Ok(())
    }

    /// Records the end of a purchase that was not served; a journal failure
    /// here is logged (the rail's error is what the caller needs).
    pub(crate) async fn fail(&self, p: &Purchase, reason: &str, counted: bool) {
        let step = Step::to(EntryState::Failed).detail(reason).counted(counted);
        if let Err(e) = self.step(p, step).await {
            warn!(entry = %p.id, error = %e, "cannot record the failed purchase");
        }
    }

    fn open_set(&self) -> std::sync::MutexGuard<'_, HashSet<RequestKey>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(self: Arc<Self>, mut request: Request) -> Result<PayerPaid, PayerError> {
        self.means.advertise(request.headers_mut());
        let url = request.url().clone();
        let origin = origin_of(&url);
        let template = request.try_clone();
        let body = template
            .as_ref()
            .and_then(|t| t.body())
            .and_then(|b| b.as_bytes())
            .unwrap_or_default();
        let key = RequestKey::new(&origin, request.method().as_str(), &target_of(&url), body);
        let scope = self.scope.key(&url);

        // An open purchase of this very request: finish it, never pay again.
        if self.open_set().contains(&key) {
            let record = self
                .journal
                .store()
                .open_for(&key)
                .await
                .map_err(|source| PayerError::Journal {
                    source,
                    entry: None,
                    paid: false,
                })?;
            // An entry another call of this process is paying is no crashed
            // purchase: this request is a purchase of its own.
            if let Some(record) = record
                && let Some(active) = Active::claim(&self.active, &record.id)
            {
                let template = template.ok_or(PayerError::BodyNotCloneable)?;
                let guard = self.locks.lock_key(&scope).await;
                // Re-read under the lock: a step may have been recorded since.
                let record = match self.journal.store().get(&record.id).await {
                    Ok(Some(r)) if r.state.is_open() => r,
                    Ok(_) => record,
                    Err(source) => {
                        return Err(PayerError::Journal {
                            source,
                            entry: Some(record.id),
                            paid: true,
                        });
                    }
                };
                let result = Arc::clone(&self)
                    .resume(record, template, url, scope, guard)
                    .await;
                drop(active);
                return result;
            }
        }

        let mut sent = self.credential(&url, &scope).await;
        if let Some(s) = &sent {
            self.attach(&mut request, s);
        }
        let mut response = self.send(request).await.map_err(PayerError::Http)?;
        let mut tried_peer = false;
        loop {
            match verdict(&response) {
                Verdict::Accepted => {
                    return Ok(PayerPaid {
                        response,
                        receipt: None,
                        reused_credential: sent.is_some(),
                    });
                }
                Verdict::Rejected => {
                    if let Some(s) = sent.take() {
                        self.evict(&url, &s).await;
                    }
                    return Ok(PayerPaid {
                        response,
                        receipt: None,
                        reused_credential: false,
                    });
                }
                Verdict::Challenge => {}
            }
            if let Some(s) = sent.take() {
                info!(status = %response.status(), "credential refused; evicted");
                self.evict(&url, &s).await;
            }
            let responded = origin_of(response.url());
            if responded != origin {
                return Err(PayerError::CrossOriginChallenge {
                    requested: origin,
                    responded,
                });
            }
            let Some(template) = template.as_ref() else {
                return Err(PayerError::BodyNotCloneable);
            };
            let guard = self.locks.lock_key(&scope).await;
            if !tried_peer && let Some(peer) = self.credential(&url, &scope).await {
                // Paid by a concurrent request while we waited: try it once.
                drop(guard);
                tried_peer = true;
                let mut retry = template.try_clone().ok_or(PayerError::BodyNotCloneable)?;
                self.attach(&mut retry, &peer);
                sent = Some(peer);
                debug!("retrying with a credential paid by a concurrent request");
                response = self.send(retry).await.map_err(PayerError::Http)?;
                continue;
            }
            let status = response.status();
            let offer_url = response.url().clone();
            let headers = response.headers().clone();
            // One byte over the reader's bound lets it say "too large".
            let (body, _) = read_bounded(response, MAX_BODY_BYTES + 1)
                .await
                .map_err(PayerError::Http)?;
            let set = read_offers_with(&headers, &body, &self.read_options);
            if set.offers.is_empty() && set.skipped.is_empty() {
                return Err(PayerError::NoOffer { status });
            }
            let stored = |index: usize, offer: &Offer| {
                StoredOffer::new(index, offer, &offer_url, &headers, &body).to_json()
            };
            let template = template.try_clone().ok_or(PayerError::BodyNotCloneable)?;
            let (purchase, active) = self
                .decide(&set, &key, &scope, &url, &offer_url, stored)
                .await?;
            let result = Arc::clone(&self).pay(purchase, template, guard).await;
            drop(active);
            return result;
        }
    }

    /// Judges every offer, picks one, checks the period budgets and
    /// records the intent (one critical section).
    async fn decide(
        &self,
        set: &OfferSet,
        key: &RequestKey,
        scope: &CacheKey,
        url: &Url,
        offer_url: &Url,
        stored: impl Fn(usize, &Offer) -> String,
    ) -> Result<(Purchase, Option<Active>), PayerError> {
        let now = UnixTime::from_system(SystemTime::now());
        let mut refused: Vec<Refusal> = set
            .skipped
            .iter()
            .map(|s| Refusal {
                rail: s.rail,
                offer: s.name.clone(),
                amount: None,
                reason: RefusalReason::Unreadable(s.error.clone()),
            })
            .collect();
        let has_v2 = set.offers.iter().any(|o| {
            matches!(&o.challenge, pay402_core::offer::RailChallenge::X402(c) if c.version() == 2)
        });
        let has_l402 = set.offers.iter().any(|o| {
            matches!(&o.challenge, pay402_core::offer::RailChallenge::L402(c) if c.scheme == Scheme::L402)
        });
        let mut candidates: Vec<(usize, Option<Amount>)> = Vec::new();
        for (i, offer) in set.offers.iter().enumerate() {
            let refuse = |reason| Refusal {
                rail: Some(offer.rail),
                offer: offer.label(),
                amount: Some(offer.amount.clone()),
                reason,
            };
            let judged = self.judge(offer, has_v2, has_l402, now);
            match judged {
                Ok(cost) => candidates.push((i, cost)),
                Err(reason) => refused.push(refuse(reason)),
            }
        }

        let _budget = self.budget_lock.lock().await;
        let (spent_origin, spent_total) = self.spent(&key.origin).await?;
        loop {
            let cands: Vec<Candidate<'_>> = candidates
                .iter()
                .filter_map(|(i, cost)| {
                    let offer = set.offers.get(*i)?;
                    Some(Candidate {
                        offer,
                        cost: cost.as_ref(),
                        weight: self.means.weight(offer),
                    })
                })
                .collect();
            let Some(pick) = self.choice.pick(&cands) else {
                for (i, _) in &candidates {
                    if let Some(o) = set.offers.get(*i) {
                        refused.push(Refusal {
                            rail: Some(o.rail),
                            offer: o.label(),
                            amount: Some(o.amount.clone()),
                            reason: RefusalReason::Declined,
                        });
                    }
                }
                warn!(refused = refused.len(), "no offer can be paid");
                return Err(PayerError::NothingPayable { refused });
            };
            let (index, cost) = candidates.remove(pick);
            let Some(offer) = set.offers.get(index) else {
                continue;
            };
            if let Some(c) = &cost
                && let Err(reason) = self.budgets.check_spent(c, spent_origin, spent_total)
            {
                refused.push(Refusal {
                    rail: Some(offer.rail),
                    offer: offer.label(),
                    amount: Some(offer.amount.clone()),
                    reason,
                });
                continue;
            }
            let purchase = Purchase {
                id: new_id(),
                key: key.clone(),
                offer: offer.clone(),
                cost,
                url: url.clone(),
                offer_url: offer_url.clone(),
                scope: scope.clone(),
                created: SystemTime::now(),
                resumed: false,
            };
            // Claimed before the intent is visible to other calls.
            let active = Active::claim(&self.active, &purchase.id);
            self.record_intent(&purchase, stored(index, offer)).await?;
            info!(entry = %purchase.id, rail = %offer.rail, offer = %offer.label(), amount = %offer.amount, "paying");
            return Ok((purchase, active));
        }
    }

    /// Whether `offer` can be paid, and its cost in the reference unit.
    fn judge(
        &self,
        offer: &Offer,
        has_v2: bool,
        has_l402: bool,
        now: UnixTime,
    ) -> Result<Option<Amount>, RefusalReason> {
        let superseded = match &offer.challenge {
            pay402_core::offer::RailChallenge::X402(c) => c.version() == 1 && has_v2,
            pay402_core::offer::RailChallenge::L402(c) => c.scheme == Scheme::Lsat && has_l402,
            _ => false,
        };
        if superseded {
            return Err(RefusalReason::Superseded);
        }
        if !self.choice.allows(offer.rail) {
            return Err(RefusalReason::NotInRailOrder);
        }
        let price = self.means.check(offer, now)?;
        let cost = match self.rates.convert(&price, &self.budgets.unit, Rounding::Up) {
            Ok(c) => Some(c),
            Err(e) if self.budgets.need_cost() => return Err(RefusalReason::NoRate(e)),
            Err(_) => None,
        };
        if let Some(c) = &cost {
            self.budgets.check_price(c)?;
        }
        Ok(cost)
    }

    /// What was spent in the budgets' windows: for `origin`, and in total.
    async fn spent(&self, origin: &str) -> Result<(U256, U256), PayerError> {
        let sum = |records: Vec<JournalRecord>| {
            records
                .iter()
                .filter_map(|r| parse_cost(r.cost.as_deref()?, &self.budgets.unit))
                .fold(U256::ZERO, |a, b| a.saturating_add(b))
        };
        let journal_error = |source| PayerError::Journal {
            source,
            entry: None,
            paid: false,
        };
        let since = |period: Duration| {
            now_ms().saturating_sub(i64::try_from(period.as_millis()).unwrap_or(i64::MAX))
        };
        let mut out = (U256::ZERO, U256::ZERO);
        if let Some((_, period)) = self.budgets.per_origin {
            let q = Query::default()
                .origin(origin)
                .since_ms(since(period))
                .counted_only();
            out.0 = sum(self.journal.store().list(&q).await.map_err(journal_error)?);
        }
        if let Some((_, period)) = self.budgets.total {
            let q = Query::default().since_ms(since(period)).counted_only();
            out.1 = sum(self.journal.store().list(&q).await.map_err(journal_error)?);
        }
        Ok(out)
    }

    async fn record_intent(&self, p: &Purchase, offer: String) -> Result<(), PayerError> {
        let created_ms = now_ms();
        let record = JournalRecord {
            id: p.id.clone(),
            created_ms,
            updated_ms: created_ms,
            key: p.key.clone(),
            scope: scope_string(&p.scope),
            rail: p.offer.rail,
            offer,
            amount: p.offer.amount.to_string(),
            cost: p.cost.as_ref().map(Amount::to_string),
            counted: true,
            state: EntryState::Intent,
            proof: None,
            proof_id: None,
            status: None,
            detail: None,
        };
        self.journal
            .store()
            .insert(&record)
            .await
            .map_err(|source| PayerError::Journal {
                source,
                entry: None,
                paid: false,
            })?;
        self.open_set().insert(p.key.clone());
        if let Some(f) = &self.on_event {
            f(&PayerEvent {
                entry: p.id.clone(),
                rail: p.offer.rail,
                state: EntryState::Intent,
                proof_id: None,
            });
        }
        Ok(())
    }

    /// Finishes an open purchase of the same request: presents its stored
    /// proof, or pays it where that provably cannot pay twice.
    async fn resume(
        self: Arc<Self>,
        record: JournalRecord,
        template: Request,
        url: Url,
        scope: CacheKey,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let (offer, offer_url) =
            StoredOffer::read(&record.offer, &self.read_options).map_err(|detail| {
                PayerError::Unresumable {
                    entry: record.id.clone(),
                    detail,
                }
            })?;
        let cost = record.cost.as_deref().and_then(|c| {
            parse_cost(c, &self.budgets.unit)
                .and_then(|v| Amount::from_value(v, &self.budgets.unit))
        });
        let purchase = Purchase {
            id: record.id.clone(),
            key: record.key.clone(),
            offer,
            cost,
            url,
            offer_url,
            scope,
            created: SystemTime::UNIX_EPOCH
                + Duration::from_millis(u64::try_from(record.created_ms).unwrap_or(0)),
            resumed: true,
        };
        info!(entry = %record.id, state = %record.state, rail = %record.rail, "resuming an open purchase");
        match (&record.state, &record.proof) {
            (EntryState::Paid | EntryState::Presented, Some(proof)) => {
                drop(guard);
                self.present_stored(purchase, template, proof).await
            }
            _ => self.pay(purchase, template, guard).await,
        }
    }

    /// The credential to send for `url`: in memory, else kept in the
    /// journal (loaded once per scope).
    async fn credential(&self, url: &Url, scope: &CacheKey) -> Option<Sent> {
        if let Some(s) = self.means.cached_credential(url) {
            return Some(s);
        }
        // L402 tokens are kept under the payer's scope, x402_mock tokens
        // under their origin and path.
        let mut scopes = vec![scope_string(scope)];
        scopes.extend(self.means.token_scopes(url));
        let mut found = None;
        for scope_str in scopes {
            let first = self
                .tokens_loaded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(scope_str.clone());
            if !first {
                continue;
            }
            match self
                .journal
                .store()
                .tokens(scope.origin(), &scope_str)
                .await
            {
                Ok(tokens) => found = self.means.load_tokens(url, &tokens).or(found),
                Err(e) => warn!(error = %e, "cannot read kept tokens"),
            }
        }
        found
    }

    fn attach(&self, request: &mut Request, sent: &Sent) {
        let value = match sent {
            Sent::L402(token, _) => token.header.clone(),
            #[cfg(feature = "x402-mock")]
            Sent::Mock(bearer) => {
                match reqwest::header::HeaderValue::from_str(&format!("Bearer {bearer}")) {
                    Ok(mut v) => {
                        v.set_sensitive(true);
                        v
                    }
                    Err(_) => return,
                }
            }
        };
        request.headers_mut().insert(AUTHORIZATION, value);
    }

    /// Forgets a refused credential (memory and journal).
    async fn evict(&self, url: &Url, sent: &Sent) {
        if let Some((origin, scope, rail, credential)) = self.means.evict(url, sent)
            && let Err(e) = self
                .journal
                .store()
                .remove_token(&origin, &scope, rail, &credential)
                .await
        {
            warn!(error = %e, "cannot forget a refused token");
        }
    }

    /// The error for a purchase that failed before paying.
    pub(crate) fn journal_after(&self, p: &Purchase, source: JournalError) -> PayerError {
        warn!(entry = %p.id, error = %source, reason = source.reason(), "paid, but the journal failed; the proof is not sent");
        PayerError::Journal {
            source,
            entry: Some(p.id.clone()),
            paid: true,
        }
    }
}
