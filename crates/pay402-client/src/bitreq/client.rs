//! [`BitRequests`]: the 402 client of the 21 BitRequests rail, with the
//! three payment methods behind one API.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::Txid;
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::{Hash, sha256};
use pay402_core::bitreq::{BitTransfer, PaymentInfo, Proof};
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{IntoUrl, Method, Request, RequestBuilder, Response, StatusCode, Url};
use tracing::{Instrument, debug, info, info_span, warn};

use super::channel::{ChannelClient, ChannelConfig};
use super::error::BitRequestsError;
use super::http::{MAX_BODY, origin_of, problem_of, read_bounded, transient};
use super::wallet::{PreparedTx, Wallet};
use crate::redirect::default_http;

/// Default per-request maximum price: 10 000 sat, two1's `two1 buy` default.
pub const DEFAULT_MAX_PRICE: Sat = Sat(10_000);
/// Default total timeout of each HTTP request of the BitRequests client
/// (30 s, from connecting until the body has been read; the connect timeout
/// is [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT)).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of resends after a transport failure (and, for the paid
/// request, after 502/503/504).
pub const DEFAULT_RETRIES: u32 = 2;
/// The first pause between attempts; doubled each time.
const BACKOFF: Duration = Duration::from_millis(250);

/// The three payment methods of 21 BitRequests.
///
/// ```
/// use pay402_client::bitreq::PaymentMethod;
/// assert_eq!(PaymentMethod::OnChain.as_str(), "onchain");
/// assert_eq!(PaymentMethod::Channel.to_string(), "channel");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentMethod {
    /// A signed transaction in `Bitcoin-Transaction` (two1's `OnChainRequests`).
    OnChain,
    /// A signed transfer on a ledger in `Bitcoin-Transfer` + `Authorization`
    /// (two1's `BitTransferRequests`).
    BitTransfer,
    /// A payment channel token in `Bitcoin-Payment-Channel-Token` (two1's
    /// `ChannelRequests`).
    Channel,
}

impl PaymentMethod {
    /// `onchain`, `transfer` or `channel` (the names of
    /// [`Proof::method`]).
    ///
    /// ```
    /// assert_eq!(pay402_client::bitreq::PaymentMethod::BitTransfer.as_str(), "transfer");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::OnChain => "onchain",
            PaymentMethod::BitTransfer => "transfer",
            PaymentMethod::Channel => "channel",
        }
    }

    /// The methods a 402 offers, in two1's server order (channel, on-chain,
    /// transfer).
    ///
    /// ```
    /// use pay402_client::bitreq::PaymentMethod;
    /// use pay402_core::bitreq::PaymentInfo;
    /// let info = PaymentInfo::new(pay402_core::money::Sat(5)).with_username("m");
    /// assert_eq!(PaymentMethod::offered(&info), vec![PaymentMethod::BitTransfer]);
    /// ```
    pub fn offered(info: &PaymentInfo) -> Vec<PaymentMethod> {
        let mut v = Vec::new();
        if info.supports_channel() {
            v.push(PaymentMethod::Channel);
        }
        if info.supports_onchain() {
            v.push(PaymentMethod::OnChain);
        }
        if info.supports_transfer() {
            v.push(PaymentMethod::BitTransfer);
        }
        v
    }

    fn supported_by(self, info: &PaymentInfo) -> bool {
        match self {
            PaymentMethod::OnChain => info.supports_onchain(),
            PaymentMethod::BitTransfer => info.supports_transfer(),
            PaymentMethod::Channel => info.supports_channel(),
        }
    }
}

impl fmt::Display for PaymentMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one paid request cost.
///
/// ```
/// # fn show(r: &pay402_client::bitreq::Receipt) {
/// println!("{} paid {} (+{} fee) for {} with proof {}", r.method, r.amount, r.fee, r.url, r.proof_id);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The method used.
    pub method: PaymentMethod,
    /// The price the server asked (or the quote).
    pub price: Sat,
    /// What moved to the merchant: the price, or for a channel the
    /// increment (the first payment of a channel is raised to the minimum
    /// output).
    pub amount: Sat,
    /// The miner fee (on-chain); 0 for the other methods.
    pub fee: Sat,
    /// The proof's identity: the txid (on-chain), the channel token, or the
    /// SHA-256 of the `Bitcoin-Transfer` text (the ledger's replay key).
    pub proof_id: String,
    /// The URL paid for.
    pub url: Url,
    /// When the payment was made.
    pub paid_at: SystemTime,
}

/// The response to a request made through [`BitRequests`].
///
/// ```no_run
/// # async fn demo(client: pay402_client::bitreq::BitRequests) -> Result<(), pay402_client::bitreq::BitRequestsError> {
/// let paid = client.get("http://127.0.0.1:8402/weather").await?;
/// if let Some(r) = &paid.receipt { println!("paid {}", r.amount); }
/// println!("{}", paid.response.text().await?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Paid {
    /// The server's final response.
    pub response: Response,
    /// What this call paid, if it paid. For an on-chain proof answered with
    /// a non-2xx status (e.g. a 405 before the paywall ran), the client asks
    /// the chain whether the server broadcast the transaction; if not, its
    /// coins are released and this is `None`.
    pub receipt: Option<Receipt>,
}

impl Paid {
    /// The status of the final response.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::bitreq::BitRequests) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// assert!(client.get("http://127.0.0.1:8402/weather").await?.status().is_success());
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }
}

/// Per-request options of [`BitRequests::send`].
///
/// ```
/// use pay402_client::bitreq::RequestOptions;
/// use pay402_core::bitreq::PaymentInfo;
/// use pay402_core::money::Sat;
/// let quote = PaymentInfo::new(Sat(3_000)).with_bitcoin_address("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080");
/// let opts = RequestOptions::default().max_price(Sat(5_000)).quote(quote);
/// assert_eq!(opts.max_price, Some(Sat(5_000)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// Overrides the client's maximum price for this request; `Sat(0)`
    /// means free only.
    pub max_price: Option<Sat>,
    /// The payment information to pay up front, without an unpaid first
    /// request (from [`BitRequests::get_402_info`] or the server's
    /// documentation). Required for state-changing methods.
    pub quote: Option<PaymentInfo>,
}

impl RequestOptions {
    /// Sets [`RequestOptions::max_price`].
    ///
    /// ```
    /// let o = pay402_client::bitreq::RequestOptions::default().max_price(pay402_core::money::Sat(0));
    /// assert_eq!(o.max_price.unwrap().0, 0);
    /// ```
    pub fn max_price(mut self, max: Sat) -> Self {
        self.max_price = Some(max);
        self
    }

    /// Sets [`RequestOptions::quote`].
    ///
    /// ```
    /// let q = pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(3_000)).with_username("m");
    /// let o = pay402_client::bitreq::RequestOptions::default().quote(q);
    /// assert!(o.quote.is_some());
    /// ```
    pub fn quote(mut self, info: PaymentInfo) -> Self {
        self.quote = Some(info);
        self
    }
}

/// Configures a [`BitRequests`]; see [`BitRequests::on_chain`],
/// [`BitRequests::bit_transfer`] and [`BitRequests::channel`].
///
/// Defaults: [`DEFAULT_MAX_PRICE`] (10 000 sat), [`DEFAULT_TIMEOUT`] (30 s)
/// per HTTP request, [`DEFAULT_RETRIES`] (2) resends, [`ChannelConfig::default`],
/// and a reqwest client that follows redirects only within the request's
/// origin.
///
/// ```no_run
/// # fn f(wallet: std::sync::Arc<pay402_client::bitreq::Wallet>) {
/// use pay402_client::bitreq::BitRequests;
/// let client = BitRequests::on_chain(wallet)
///     .max_price(pay402_core::money::Sat(5_000))
///     .timeout(std::time::Duration::from_secs(10))
///     .retries(1)
///     .build();
/// # let _ = client; }
/// ```
#[must_use]
pub struct BitRequestsBuilder {
    wallet: Arc<Wallet>,
    method: PaymentMethod,
    username: Option<String>,
    max_price: Sat,
    timeout: Option<Duration>,
    timeout_set: bool,
    connect_timeout: Duration,
    retries: u32,
    http: Option<reqwest::Client>,
    channel: ChannelConfig,
    channel_slot: Option<ChannelSlot>,
    confirmations: ConfirmationWait,
}

/// How long an on-chain payment answered `202 awaiting_confirmations` is
/// presented again, and the longest pause between presentations (see
/// [`BitRequestsBuilder::await_confirmations`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ConfirmationWait {
    wait: Duration,
    poll: Duration,
}

/// The longest `Retry-After` honoured between two presentations.
const MAX_CONFIRMATION_POLL: Duration = Duration::from_secs(600);

/// Where a [`BitRequestsBuilder`] puts the [`ChannelClient`] it builds (see
/// [`BitRequestsBuilder::share_channels`]), so that a caller that hands the
/// builder to a [`Payer`](crate::Payer) can still close or sync its
/// channels.
///
/// ```
/// let slot = pay402_client::bitreq::ChannelSlot::default();
/// assert!(slot.get().is_none());
/// ```
pub type ChannelSlot = Arc<std::sync::OnceLock<Arc<ChannelClient>>>;

impl fmt::Debug for BitRequestsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitRequestsBuilder")
            .field("method", &self.method)
            .field("max_price", &self.max_price)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl BitRequestsBuilder {
    /// The most one request may pay; `Sat(0)` means free resources only.
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::bitreq::BitRequestsBuilder) -> pay402_client::bitreq::BitRequestsBuilder {
    /// b.max_price(pay402_core::money::Sat(0)) // free only
    /// # }
    /// ```
    pub fn max_price(mut self, max: Sat) -> Self {
        self.max_price = max;
        self
    }

    /// The total timeout of each HTTP request, from connecting until the
    /// body has been read (default [`DEFAULT_TIMEOUT`], 30 s); it overrides
    /// the timeout of your own [`http`](Self::http) client (without this
    /// call, that client's settings rule). A timeout after paying is
    /// [`BitRequestsError::RetryFailed`](super::BitRequestsError::RetryFailed):
    /// you may have paid.
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::bitreq::BitRequestsBuilder) -> pay402_client::bitreq::BitRequestsBuilder {
    /// b.timeout(std::time::Duration::from_secs(10))
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self.timeout_set = true;
        self
    }

    crate::timeouts::connect_and_no_timeout!("pay402_client::bitreq::BitRequestsBuilder", "http");

    /// How many times a request is resent after a transport failure (the
    /// unpaid request of GET/HEAD/OPTIONS, and the paid request, which
    /// carries the same proof and is also resent after 502/503/504).
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::bitreq::BitRequestsBuilder) -> pay402_client::bitreq::BitRequestsBuilder {
    /// b.retries(0)
    /// # }
    /// ```
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Uses this reqwest client (its redirect policy and connect timeout
    /// stay in force; the builder's total timeout applies to each request;
    /// see [`same_origin_redirects`](crate::same_origin_redirects)).
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::bitreq::BitRequestsBuilder) -> pay402_client::bitreq::BitRequestsBuilder {
    /// b.http(reqwest::Client::new())
    /// # }
    /// ```
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Channel settings (deposit, duration, fee, …); used by the channel method.
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::bitreq::BitRequestsBuilder) -> pay402_client::bitreq::BitRequestsBuilder {
    /// let mut c = pay402_client::bitreq::ChannelConfig::default();
    /// c.deposit = pay402_core::money::Sat(50_000);
    /// b.channel_config(c)
    /// # }
    /// ```
    pub fn channel_config(mut self, config: ChannelConfig) -> Self {
        self.channel = config;
        self
    }

    /// Puts the channel client built by [`build`](Self::build) (channel
    /// method only) into `slot`, for a caller that no longer holds the
    /// built client — a [`Payer`](crate::Payer) builds it — to close or sync
    /// its channels (they live in memory).
    ///
    /// ```no_run
    /// # async fn f(wallet: std::sync::Arc<pay402_client::bitreq::Wallet>) {
    /// use pay402_client::bitreq::{BitRequests, ChannelSlot};
    /// let slot = ChannelSlot::default();
    /// let payer = pay402_client::Payer::builder()
    ///     .bitreq(BitRequests::channel(wallet).share_channels(slot.clone()))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// // … pay with `payer`, then:
    /// if let Some(channels) = slot.get() {
    ///     for ch in channels.channels().await {
    ///         let _ = channels.close(ch.server.as_str()).await;
    ///     }
    /// }
    /// # }
    /// ```
    pub fn share_channels(mut self, slot: ChannelSlot) -> Self {
        self.channel_slot = Some(slot);
        self
    }

    /// On-chain: when the server answers the paid request `202` (it
    /// broadcast the transaction and waits for confirmations), present the
    /// **same** transaction again after its `Retry-After` (at most `poll`,
    /// at least 1 s) until another answer comes or `wait` has passed; the
    /// last answer is returned. Nothing is paid again. Default: no wait
    /// (the 202 is returned, as two1 did). Requests whose body cannot be
    /// cloned are not presented again. Through a [`Payer`](crate::Payer),
    /// a 202 still standing when the wait ends leaves the journal entry
    /// open ([`PayerReceipt::pending`](crate::PayerReceipt::pending)): the
    /// same request, even from another process, presents the same
    /// transaction (and waits again) instead of paying again.
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::bitreq::BitRequestsBuilder) -> pay402_client::bitreq::BitRequestsBuilder {
    /// use std::time::Duration;
    /// b.await_confirmations(Duration::from_secs(3600), Duration::from_secs(30))
    /// # }
    /// ```
    pub fn await_confirmations(mut self, wait: Duration, poll: Duration) -> Self {
        self.confirmations = ConfirmationWait {
            wait,
            poll: poll.clamp(Duration::from_secs(1), MAX_CONFIRMATION_POLL),
        };
        self
    }

    /// Builds the client.
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::bitreq::BitRequestsBuilder) {
    /// let client = b.build();
    /// # let _ = client; }
    /// ```
    pub fn build(self) -> BitRequests {
        let timeout = crate::timeouts::per_request(self.timeout, self.timeout_set, &self.http);
        let http = match self.http {
            Some(h) => h,
            None => default_http(self.connect_timeout, self.timeout),
        };
        let channels = (self.method == PaymentMethod::Channel).then(|| {
            Arc::new(
                ChannelClient::new(Arc::clone(&self.wallet), http.clone(), self.channel.clone())
                    .with_timeout(timeout),
            )
        });
        if let (Some(slot), Some(c)) = (&self.channel_slot, &channels) {
            // A slot filled by an earlier build keeps that client.
            let _ = slot.set(Arc::clone(c));
        }
        BitRequests {
            inner: Arc::new(Inner {
                http,
                timeout,
                connect_timeout: self.connect_timeout,
                wallet: self.wallet,
                method: self.method,
                username: self.username,
                max_price: self.max_price,
                retries: self.retries,
                channels,
                confirmations: self.confirmations,
            }),
        }
    }
}

/// An HTTP client that pays 21 BitRequests 402 responses, with one payment
/// method chosen at construction (two1's `OnChainRequests`,
/// `BitTransferRequests`, `ChannelRequests`), all behind the same API.
///
/// For each request:
///
/// 1. **GET, HEAD, OPTIONS, TRACE** are sent unpaid (resent up to
///    `retries` times after a transport failure). A response other than 402
///    is returned as is.
///    **Other methods** (POST, PUT, DELETE, PATCH, …) are never sent unpaid
///    to learn the price (the endpoint might be free and act on it): they
///    need [`RequestOptions::quote`] and are sent paid at once. Without a
///    quote they fail with [`BitRequestsError::QuoteRequired`], unless the
///    maximum price is 0 (free only), where they are sent as is and a 402
///    is [`BitRequestsError::PriceExceedsMaximum`].
/// 2. The 402 must come from the requested origin; its headers are parsed
///    with [`PaymentInfo::from_header_map`] (bounded, no duplicates, integer
///    price) — malformed headers are [`BitRequestsError::InvalidPaymentInfo`].
/// 3. The price must be positive and at most the maximum (0 = free only),
///    and the server must offer the client's method, else
///    [`BitRequestsError::PriceExceedsMaximum`] /
///    [`BitRequestsError::UnsupportedMethod`]; nothing is paid.
/// 4. The proof is made (in a spawned task, so a dropped call never leaves a
///    half-made payment): on-chain, a signed transaction from the wallet
///    (not broadcast: the server broadcasts it); bit-transfer, the transfer
///    JSON signed with the wallet's transfer key; channel, a channel payment
///    through [`ChannelClient::pay`].
/// 5. The request is sent again with the proof headers, resent with the
///    same proof after transport failures or 502/503/504, at most `retries`
///    times. It is never paid a second time: a refusal (a 402, or a 4xx
///    with a problem+json body) carrying a problem `reason` is
///    [`BitRequestsError::PaymentRefused`] (or
///    [`BitRequestsError::InsufficientBalance`] when a transfer ledger
///    answers `insufficient_balance`), a 402 without one is
///    [`BitRequestsError::StillUnpaid`]; any other response is returned with
///    the [`Receipt`].
///
/// On-chain bookkeeping: when the server accepts, the wallet counts the
/// transaction as sent (its change becomes spendable); when it refuses, the
/// client asks the chain whether the transaction was broadcast anyway, and
/// releases its coins if not.
///
/// Tracing: each call runs in a `bitreq.request` span (`origin`, `method`,
/// `payment_method`), each payment in `bitreq.pay` (`price`). Proofs and keys
/// are never logged; the `Authorization` header is marked sensitive.
///
/// ```no_run
/// use std::sync::Arc;
/// use pay402_client::bitreq::{BitRequests, RequestOptions, Wallet};
/// use pay402_core::money::Sat;
///
/// async fn demo(wallet: Arc<Wallet>) -> Result<(), pay402_client::bitreq::BitRequestsError> {
///     let client = BitRequests::on_chain(wallet).max_price(Sat(5_000)).build();
///     let paid = client.get("http://127.0.0.1:8402/weather").await?;
///     println!("{}", paid.response.text().await?);
///
///     // A POST: learn the price with a GET first, then pay up front.
///     let url = "http://127.0.0.1:8402/translate";
///     let quote = client.get_402_info(url).await?.expect("a paid endpoint");
///     let rb = client.http().post(url).body("hello");
///     let paid = client.send(rb, RequestOptions::default().quote(quote)).await?;
///     # let _ = paid;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct BitRequests {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    wallet: Arc<Wallet>,
    method: PaymentMethod,
    username: Option<String>,
    max_price: Sat,
    retries: u32,
    channels: Option<Arc<ChannelClient>>,
    confirmations: ConfirmationWait,
}

impl fmt::Debug for BitRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitRequests")
            .field("method", &self.inner.method)
            .field("max_price", &self.inner.max_price)
            .field("retries", &self.inner.retries)
            .finish_non_exhaustive()
    }
}

/// A proof made for one request, and what to do with the wallet after.
pub(crate) struct Made {
    pub(crate) proof: Proof,
    pub(crate) receipt: Receipt,
    pub(crate) onchain: Option<PreparedTx>,
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl BitRequests {
    fn builder(
        wallet: Arc<Wallet>,
        method: PaymentMethod,
        username: Option<String>,
    ) -> BitRequestsBuilder {
        BitRequestsBuilder {
            wallet,
            method,
            username,
            max_price: DEFAULT_MAX_PRICE,
            timeout: Some(DEFAULT_TIMEOUT),
            timeout_set: false,
            connect_timeout: crate::DEFAULT_CONNECT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            http: None,
            channel: ChannelConfig::default(),
            channel_slot: None,
            confirmations: ConfirmationWait::default(),
        }
    }

    /// A client that pays with on-chain transactions (two1's
    /// `OnChainRequests(wallet)`).
    ///
    /// ```no_run
    /// # fn f(wallet: std::sync::Arc<pay402_client::bitreq::Wallet>) {
    /// let client = pay402_client::bitreq::BitRequests::on_chain(wallet).build();
    /// # let _ = client; }
    /// ```
    pub fn on_chain(wallet: Arc<Wallet>) -> BitRequestsBuilder {
        BitRequests::builder(wallet, PaymentMethod::OnChain, None)
    }

    /// A client that pays with bit-transfers signed by the wallet's transfer
    /// key for the ledger account `username` (two1's
    /// `BitTransferRequests(wallet, username)`).
    ///
    /// ```no_run
    /// # fn f(wallet: std::sync::Arc<pay402_client::bitreq::Wallet>) {
    /// let client = pay402_client::bitreq::BitRequests::bit_transfer(wallet, "alice").build();
    /// # let _ = client; }
    /// ```
    pub fn bit_transfer(wallet: Arc<Wallet>, username: impl Into<String>) -> BitRequestsBuilder {
        BitRequests::builder(wallet, PaymentMethod::BitTransfer, Some(username.into()))
    }

    /// A client that pays through payment channels (two1's
    /// `ChannelRequests(wallet, deposit_amount, duration)`; see
    /// [`BitRequestsBuilder::channel_config`]).
    ///
    /// ```no_run
    /// # fn f(wallet: std::sync::Arc<pay402_client::bitreq::Wallet>) {
    /// let client = pay402_client::bitreq::BitRequests::channel(wallet).build();
    /// # let _ = client; }
    /// ```
    pub fn channel(wallet: Arc<Wallet>) -> BitRequestsBuilder {
        BitRequests::builder(wallet, PaymentMethod::Channel, None)
    }

    /// The payment method.
    ///
    /// ```no_run
    /// # fn f(c: &pay402_client::bitreq::BitRequests) {
    /// println!("{}", c.method());
    /// # }
    /// ```
    pub fn method(&self) -> PaymentMethod {
        self.inner.method
    }

    /// The default maximum price.
    ///
    /// ```no_run
    /// # fn f(c: &pay402_client::bitreq::BitRequests) {
    /// println!("{}", c.max_price());
    /// # }
    /// ```
    pub fn max_price(&self) -> Sat {
        self.inner.max_price
    }

    /// The wallet.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::BitRequests) {
    /// println!("{:?}", c.wallet().balance().await);
    /// # }
    /// ```
    pub fn wallet(&self) -> &Arc<Wallet> {
        &self.inner.wallet
    }

    /// The rail logic the [`Payer`](crate::Payer) calls into.
    pub(crate) fn rail(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The channel client (for the channel method): open, close, sync and
    /// refund channels explicitly.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::BitRequests) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// if let Some(ch) = c.channels() { ch.sync().await?; }
    /// # Ok(()) }
    /// ```
    pub fn channels(&self) -> Option<&ChannelClient> {
        self.inner.channels.as_deref()
    }

    /// The underlying reqwest client, to build requests for [`send`](Self::send).
    ///
    /// ```no_run
    /// # fn f(c: &pay402_client::bitreq::BitRequests) {
    /// let rb = c.http().post("http://127.0.0.1:8402/x").body("hi");
    /// # let _ = rb; }
    /// ```
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The total timeout the client sets on each HTTP request (`None`:
    /// turned off with [`BitRequestsBuilder::no_timeout`], or left to your
    /// own reqwest client).
    ///
    /// ```no_run
    /// # fn f(c: pay402_client::bitreq::BitRequests) {
    /// assert_eq!(c.timeout(), Some(pay402_client::bitreq::DEFAULT_TIMEOUT));
    /// # }
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// The connect timeout of the client the builder built.
    ///
    /// ```no_run
    /// # fn f(c: pay402_client::bitreq::BitRequests) {
    /// assert_eq!(c.connect_timeout(), pay402_client::DEFAULT_CONNECT_TIMEOUT);
    /// # }
    /// ```
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// `GET url`, paying if asked to.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::BitRequests) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// let paid = c.get("http://127.0.0.1:8402/weather").await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// See [`BitRequestsError`].
    pub async fn get<U: IntoUrl>(&self, url: U) -> Result<Paid, BitRequestsError> {
        self.send(self.inner.http.get(url), RequestOptions::default())
            .await
    }

    /// `HEAD url`, paying if asked to.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::BitRequests) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// let paid = c.head("http://127.0.0.1:8402/weather").await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// See [`BitRequestsError`].
    pub async fn head<U: IntoUrl>(&self, url: U) -> Result<Paid, BitRequestsError> {
        self.send(self.inner.http.head(url), RequestOptions::default())
            .await
    }

    /// The payment information of a resource (two1's `get_402_info`): an
    /// unpaid `GET`; `None` when it does not answer 402.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::BitRequests) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// if let Some(info) = c.get_402_info("http://127.0.0.1:8402/weather").await? {
    ///     println!("price {}", info.price);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BitRequestsError::Http`], [`BitRequestsError::InvalidPaymentInfo`].
    pub async fn get_402_info<U: IntoUrl>(
        &self,
        url: U,
    ) -> Result<Option<PaymentInfo>, BitRequestsError> {
        let request = self.inner.http.get(url).build()?;
        let response = self.inner.send_with_retries(request, false).await?;
        if response.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(None);
        }
        PaymentInfo::from_header_map(response.headers())
            .map(Some)
            .map_err(BitRequestsError::InvalidPaymentInfo)
    }

    /// Builds `builder` and runs it with `options` (see the type documentation).
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::BitRequests, quote: pay402_core::bitreq::PaymentInfo) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// use pay402_client::bitreq::RequestOptions;
    /// let rb = c.http().put("http://127.0.0.1:8402/doc/1").body("text");
    /// let paid = c.send(rb, RequestOptions::default().quote(quote)).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// See [`BitRequestsError`].
    pub async fn send(
        &self,
        builder: RequestBuilder,
        options: RequestOptions,
    ) -> Result<Paid, BitRequestsError> {
        self.execute(builder.build()?, options).await
    }

    /// Runs `request` with `options` (see the type documentation).
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::BitRequests) -> Result<(), Box<dyn std::error::Error>> {
    /// let req = reqwest::Request::new(reqwest::Method::GET, "http://127.0.0.1:8402/weather".parse()?);
    /// let paid = c.execute(req, Default::default()).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// See [`BitRequestsError`].
    pub async fn execute(
        &self,
        request: Request,
        options: RequestOptions,
    ) -> Result<Paid, BitRequestsError> {
        let span = info_span!(
            "bitreq.request",
            origin = %origin_of(request.url()),
            method = %request.method(),
            payment_method = self.inner.method.as_str(),
        );
        Arc::clone(&self.inner)
            .run(request, options)
            .instrument(span)
            .await
    }
}

impl Inner {
    /// Sends `request`, resending up to `retries` times: after any transport
    /// failure when `paid` or the method is safe (GET, HEAD, …), after a
    /// connection failure otherwise, and when `paid` after 502/503/504.
    async fn send_with_retries(
        &self,
        request: Request,
        paid: bool,
    ) -> Result<Response, BitRequestsError> {
        let resend_any = paid || is_safe(request.method());
        let mut attempt = 0u32;
        loop {
            let next = if attempt < self.retries {
                request.try_clone()
            } else {
                None
            };
            let Some(mut next) = next else {
                let mut last = request;
                crate::timeouts::apply(&mut last, self.timeout);
                return Ok(self.http.execute(last).await?);
            };
            crate::timeouts::apply(&mut next, self.timeout);
            match self.http.execute(next).await {
                Ok(r) if paid && transient(r.status()) => {
                    debug!(status = %r.status(), attempt, "transient answer; resending the proof");
                }
                Ok(r) => return Ok(r),
                Err(e) if resend_any || e.is_connect() => {
                    debug!(error = %e, attempt, "transport failure; resending");
                }
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(BACKOFF.saturating_mul(1u32 << attempt.min(6))).await;
            attempt += 1;
        }
    }

    async fn run(
        self: Arc<Self>,
        request: Request,
        options: RequestOptions,
    ) -> Result<Paid, BitRequestsError> {
        let max = options.max_price.unwrap_or(self.max_price);
        let url = request.url().clone();
        let template = request.try_clone();
        let info = match options.quote {
            Some(quote) => quote,
            None => {
                if !is_safe(request.method()) && max.0 > 0 {
                    return Err(BitRequestsError::QuoteRequired {
                        method: request.method().clone(),
                    });
                }
                let response = self.send_with_retries(request, false).await?;
                if response.status() != StatusCode::PAYMENT_REQUIRED {
                    return Ok(Paid {
                        response,
                        receipt: None,
                    });
                }
                let responded = origin_of(response.url());
                if responded != origin_of(&url) {
                    return Err(BitRequestsError::CrossOriginChallenge {
                        requested: origin_of(&url),
                        responded,
                    });
                }
                PaymentInfo::from_header_map(response.headers())
                    .map_err(BitRequestsError::InvalidPaymentInfo)?
            }
        };
        self.check(&info, max)?;
        let Some(template) = template else {
            return Err(BitRequestsError::BodyNotCloneable);
        };
        let made = Arc::clone(&self).make(info, url, max).await?;
        self.present(template, made).await
    }

    /// The checks made before paying `info`: a price above zero and at
    /// most `max`, and the client's method offered.
    pub(crate) fn check(&self, info: &PaymentInfo, max: Sat) -> Result<(), BitRequestsError> {
        if info.price.0 == 0 {
            return Err(BitRequestsError::InvalidPaymentInfo(
                pay402_core::bitreq::BitreqError::InvalidPrice,
            ));
        }
        if info.price > max {
            return Err(BitRequestsError::PriceExceedsMaximum {
                price: info.price,
                max,
            });
        }
        if !self.method.supported_by(info) {
            return Err(BitRequestsError::UnsupportedMethod {
                method: self.method,
                offered: PaymentMethod::offered(info),
            });
        }
        Ok(())
    }

    /// Makes the proof for `info` in a task of its own (a dropped caller
    /// does not lose a payment in flight).
    pub(crate) async fn make(
        self: Arc<Self>,
        info: PaymentInfo,
        url: Url,
        max: Sat,
    ) -> Result<Made, BitRequestsError> {
        let span = info_span!("bitreq.pay", price = info.price.0);
        let task = self.pay(info, url, max).instrument(span);
        match tokio::spawn(task).await {
            Ok(r) => r,
            Err(e) => Err(BitRequestsError::InvalidResponse {
                what: "payment task",
                detail: e.to_string(),
            }),
        }
    }

    /// Sends `template` with the proof of `made` (resending on transport
    /// failures) and interprets the answer.
    pub(crate) async fn present(
        &self,
        template: Request,
        made: Made,
    ) -> Result<Paid, BitRequestsError> {
        let mut paid_request = template;
        made.proof
            .insert_into(paid_request.headers_mut())
            .map_err(BitRequestsError::InvalidPaymentInfo)?;
        if let Some(v) = paid_request.headers_mut().get_mut(AUTHORIZATION) {
            v.set_sensitive(true);
        }
        // On-chain, a transaction signed now or one kept from an earlier run
        // (resumed from the journal): a 202 is presented again.
        let again = match (made.receipt.method, self.confirmations.wait.is_zero()) {
            (PaymentMethod::OnChain, false) => paid_request.try_clone(),
            _ => None,
        };
        let response = match self.send_with_retries(paid_request, true).await {
            Ok(r) => match again {
                Some(again) => self.await_confirmations(r, again).await,
                None => r,
            },
            Err(BitRequestsError::Http(source)) => {
                warn!(error = %source, "paid, but sending the proof failed");
                if let Some(p) = &made.onchain {
                    // The server may have broadcast it before the connection broke.
                    self.settle_onchain(p).await;
                }
                return Err(BitRequestsError::RetryFailed {
                    source,
                    receipt: Box::new(made.receipt),
                });
            }
            Err(e) => return Err(e),
        };
        self.outcome(response, made).await
    }

    /// While the answer is `202` (the server waits for confirmations of the
    /// transaction), presents `again` (the same proof) after `Retry-After`,
    /// bounded by the configured wait; returns the last answer. A transport
    /// failure while waiting returns the last 202: the payment stands.
    async fn await_confirmations(&self, first: Response, again: Request) -> Response {
        let deadline = tokio::time::Instant::now() + self.confirmations.wait;
        let mut last = first;
        while last.status() == StatusCode::ACCEPTED {
            let retry_after = last
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(self.confirmations.poll, Duration::from_secs);
            let pause = retry_after.clamp(Duration::from_secs(1), self.confirmations.poll);
            let now = tokio::time::Instant::now();
            if now + pause > deadline {
                break;
            }
            info!(
                pause_secs = pause.as_secs(),
                "awaiting confirmations; presenting the same transaction again"
            );
            tokio::time::sleep(pause).await;
            let Some(next) = again.try_clone() else { break };
            match self.send_with_retries(next, true).await {
                Ok(r) => last = r,
                Err(e) => {
                    warn!(error = %e, "presenting the transaction again failed");
                    break;
                }
            }
        }
        last
    }

    /// Interprets the answer to the paid request.
    async fn outcome(&self, response: Response, made: Made) -> Result<Paid, BitRequestsError> {
        let status = response.status();
        let is_problem = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/problem+json"));
        let refused =
            status == StatusCode::PAYMENT_REQUIRED || (status.is_client_error() && is_problem);
        if !refused {
            let spent = match &made.onchain {
                Some(p) if status.is_success() => {
                    self.wallet.mark_sent(&p.txid()).await;
                    true
                }
                // e.g. 405 or 500 before the paywall ran: did the server broadcast it?
                Some(p) => self.settle_onchain(p).await,
                None => true,
            };
            info!(status = %status, amount = made.receipt.amount.0, proof = %made.receipt.proof_id, spent, "answered");
            return Ok(Paid {
                response,
                receipt: spent.then_some(made.receipt),
            });
        }
        let body = read_bounded(response, MAX_BODY, "paid request")
            .await
            .unwrap_or_default();
        let (reason, detail) = problem_of(&body);
        let spent = match (self.method, &made.onchain, &reason) {
            // Did the server broadcast it anyway? The chain knows.
            (_, Some(p), _) => self.settle_onchain(p).await,
            // The merchant's ledger refused the transfer: not applied.
            (PaymentMethod::BitTransfer, None, Some(_)) => false,
            // A channel payment moved within the channel whatever the answer.
            _ => true,
        };
        warn!(%status, reason = reason.as_deref().unwrap_or(""), detail, spent, "the server refused the paid request");
        match reason {
            Some(r) if r == "insufficient_balance" && !spent => {
                Err(BitRequestsError::InsufficientBalance {
                    needed: made.receipt.price,
                    available: None,
                })
            }
            Some(reason) => Err(BitRequestsError::PaymentRefused {
                status,
                reason,
                spent,
                receipt: Box::new(made.receipt),
            }),
            None if spent => Err(BitRequestsError::StillUnpaid {
                status,
                receipt: Box::new(made.receipt),
            }),
            None => Err(BitRequestsError::PaymentRefused {
                status,
                reason: "payment_required".to_owned(),
                spent,
                receipt: Box::new(made.receipt),
            }),
        }
    }

    /// After a refusal or a lost answer: did the server broadcast the
    /// transaction? If the chain has it, it counts as sent; if not, its coins
    /// are released (spending them later also voids the given-up transaction).
    async fn settle_onchain(&self, p: &PreparedTx) -> bool {
        let txid = p.txid();
        match self.wallet.chain().get_transaction(&txid).await {
            Ok(Some(_)) => {
                self.wallet.mark_sent(&txid).await;
                true
            }
            Ok(None) => {
                let _ = self.wallet.cancel(&txid).await;
                false
            }
            Err(e) => {
                warn!(%txid, error = %e, reason = e.reason(), "cannot tell whether the payment was broadcast; coins stay locked");
                true
            }
        }
    }

    /// Makes the proof for `info` (two1's `make_402_payment`).
    async fn pay(
        self: Arc<Self>,
        info: PaymentInfo,
        url: Url,
        max: Sat,
    ) -> Result<Made, BitRequestsError> {
        let paid_at = SystemTime::now();
        match self.method {
            PaymentMethod::OnChain => {
                let address = info
                    .address(self.wallet.network())
                    .map_err(BitRequestsError::InvalidPaymentInfo)?
                    .ok_or(BitRequestsError::UnsupportedMethod {
                        method: PaymentMethod::OnChain,
                        offered: PaymentMethod::offered(&info),
                    })?;
                let prepared = self
                    .wallet
                    .prepare_payment(&address.script_pubkey(), info.price)
                    .await?;
                let return_address = self.wallet.return_address()?.to_string();
                let txid: Txid = prepared.txid();
                debug!(%txid, fee = prepared.fee.0, "on-chain payment signed");
                Ok(Made {
                    proof: Proof::OnChain {
                        tx_hex: serialize_hex(&prepared.tx),
                        return_address: Some(return_address),
                    },
                    receipt: Receipt {
                        method: PaymentMethod::OnChain,
                        price: info.price,
                        amount: info.price,
                        fee: prepared.fee,
                        proof_id: txid.to_string(),
                        url,
                        paid_at,
                    },
                    onchain: Some(prepared),
                })
            }
            PaymentMethod::BitTransfer => {
                let payee_username =
                    info.username
                        .clone()
                        .ok_or(BitRequestsError::UnsupportedMethod {
                            method: PaymentMethod::BitTransfer,
                            offered: PaymentMethod::offered(&info),
                        })?;
                let key = self.wallet.transfer_key()?;
                let timestamp = paid_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                let transfer = BitTransfer {
                    payer: self.username.clone().unwrap_or_default(),
                    payer_pubkey: self.wallet.transfer_public_key()?,
                    payee_address: info.bitcoin_address.clone().unwrap_or_default(),
                    payee_username,
                    amount: info.price,
                    timestamp,
                    description: url.to_string(),
                };
                let signed = transfer
                    .sign(key.secret())
                    .map_err(BitRequestsError::InvalidPaymentInfo)?;
                drop(key);
                let id = sha256::Hash::hash(signed.transfer.as_bytes()).to_string();
                Ok(Made {
                    proof: signed.into_proof(),
                    receipt: Receipt {
                        method: PaymentMethod::BitTransfer,
                        price: info.price,
                        amount: info.price,
                        fee: Sat(0),
                        proof_id: id,
                        url,
                        paid_at,
                    },
                    onchain: None,
                })
            }
            PaymentMethod::Channel => {
                let (Some(channels), Some(server)) = (&self.channels, &info.channel_server) else {
                    return Err(BitRequestsError::UnsupportedMethod {
                        method: PaymentMethod::Channel,
                        offered: PaymentMethod::offered(&info),
                    });
                };
                let payment = channels.pay(server, info.price, max).await?;
                Ok(Made {
                    proof: Proof::Channel {
                        token: payment.token,
                    },
                    receipt: Receipt {
                        method: PaymentMethod::Channel,
                        price: info.price,
                        amount: payment.increment,
                        fee: Sat(0),
                        proof_id: payment.token.to_string(),
                        url,
                        paid_at,
                    },
                    onchain: None,
                })
            }
        }
    }
}
