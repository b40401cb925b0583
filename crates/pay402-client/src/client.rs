//! [`L402Client`], its builder, and what it returns ([`Paid`], [`Receipt`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pay402_core::l402::{
    Challenge, ChallengeError, ChallengeSet, Credential, InvoiceError, Scheme, check_challenge,
};
use pay402_core::lightning::{LightningPayer, Network, PayRequest, PaymentHash, Preimage};
use pay402_core::money::Msat;
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{IntoUrl, Method, Request, RequestBuilder, Response, StatusCode, Url};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cache::{CacheKey, KeyGuard, Token, TokenCache, TokenScope, origin_of};
use crate::error::ClientError;
use crate::redirect::default_http;

/// Default per-request maximum price: 1000 sat, lnget's `--max-cost` default.
pub const DEFAULT_MAX_PRICE: Msat = Msat(1_000_000);
/// Default routing-fee cap: 10 sat, lnget's `--max-fee` default.
pub const DEFAULT_MAX_FEE: Msat = Msat(10_000);
/// Default time the payer may spend on one payment (60 s, as lnd and L402sdk).
pub const DEFAULT_PAYMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Extra time granted to the payer beyond its own timeout before the client
/// gives up and reports the outcome as unknown.
const PAYER_GRACE: Duration = Duration::from_secs(10);

/// What one paid (or free) request cost.
///
/// ```
/// # fn show(paid: &pay402_client::Paid) {
/// if let Some(r) = &paid.receipt {
///     println!("paid {} + {} fee to {} in {:?}", r.amount, r.fee, r.origin, r.paid_in);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The amount delivered to the payee, as the node reports it.
    pub amount: Msat,
    /// The routing fee, as the node reports it.
    pub fee: Msat,
    /// The invoice's payment hash.
    pub payment_hash: PaymentHash,
    /// How long the Lightning payment took.
    pub paid_in: Duration,
    /// When the payment started.
    pub paid_at: SystemTime,
    /// The origin the token was bought for, e.g. `http://127.0.0.1:8402`.
    pub origin: String,
    /// The URL whose request triggered the payment.
    pub url: Url,
}

impl Receipt {
    /// Amount plus fee (saturating).
    ///
    /// ```
    /// # fn total(r: &pay402_client::Receipt) {
    /// let spent = r.total();
    /// assert!(spent >= r.amount);
    /// # }
    /// ```
    pub fn total(&self) -> Msat {
        Msat(self.amount.0.saturating_add(self.fee.0))
    }
}

/// The response to a request made through [`L402Client`].
///
/// `receipt` is `Some` when this very call paid an invoice; `reused_token`
/// is `true` when the response was obtained with a token that this call did
/// not pay for (cached earlier, or paid by a concurrent request). Both are
/// unset for endpoints that did not ask for payment.
///
/// ```no_run
/// # async fn demo(client: pay402_client::L402Client) -> Result<(), pay402_client::ClientError> {
/// let paid = client.get("http://127.0.0.1:8402/hello").await?;
/// assert!(paid.receipt.is_none() || !paid.reused_token);
/// let body = paid.response.text().await?;
/// # let _ = body; Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Paid {
    /// The server's final response.
    pub response: Response,
    /// What this call paid, if it paid.
    pub receipt: Option<Receipt>,
    /// Whether a previously obtained token was accepted.
    pub reused_token: bool,
}

impl Paid {
    /// The final response.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::L402Client) -> Result<(), pay402_client::ClientError> {
    /// let resp = client.get("http://127.0.0.1:8402/hello").await?.into_response();
    /// # let _ = resp; Ok(()) }
    /// ```
    pub fn into_response(self) -> Response {
        self.response
    }

    /// The status of the final response.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::L402Client) -> Result<(), pay402_client::ClientError> {
    /// assert!(client.get("http://127.0.0.1:8402/hello").await?.status().is_success());
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// Reads the whole body. A body cut short (the connection dropped
    /// mid-response) is [`ClientError::BodyInterrupted`] carrying the
    /// receipt when this call paid, so the caller learns that it paid
    /// rather than a bare transport error; the token stays cached, so
    /// calling again fetches the resource without paying. Clone
    /// [`receipt`](Self::receipt) first to keep it on success.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::L402Client) -> Result<(), pay402_client::ClientError> {
    /// let paid = client.get("http://127.0.0.1:8402/hello").await?;
    /// let body = match paid.bytes().await {
    ///     Ok(body) => body,
    ///     // Paid, but the body was lost: the cached token fetches it again for free.
    ///     Err(e) if e.may_have_paid() => client.get("http://127.0.0.1:8402/hello").await?.bytes().await?,
    ///     Err(e) => return Err(e),
    /// };
    /// # let _ = body; Ok(()) }
    /// ```
    pub async fn bytes(self) -> Result<Vec<u8>, ClientError> {
        let Paid {
            response, receipt, ..
        } = self;
        match response.bytes().await {
            Ok(body) => Ok(Vec::from(body)),
            Err(source) => Err(ClientError::BodyInterrupted {
                source,
                receipt: receipt.map(Box::new),
            }),
        }
    }

    /// Reads the whole body as text (decoded as reqwest's
    /// [`Response::text`] does); a body cut short is
    /// [`ClientError::BodyInterrupted`] as in [`bytes`](Self::bytes).
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::L402Client) -> Result<(), pay402_client::ClientError> {
    /// let text = client.get("http://127.0.0.1:8402/hello").await?.text().await?;
    /// # let _ = text; Ok(()) }
    /// ```
    pub async fn text(self) -> Result<String, ClientError> {
        let Paid {
            response, receipt, ..
        } = self;
        response
            .text()
            .await
            .map_err(|source| ClientError::BodyInterrupted {
                source,
                receipt: receipt.map(Box::new),
            })
    }
}

/// Configures an [`L402Client`]; see [`L402Client::builder`].
///
/// Defaults: [`Network::Bitcoin`], [`DEFAULT_MAX_PRICE`] (1000 sat),
/// [`DEFAULT_MAX_FEE`] (10 sat), [`DEFAULT_PAYMENT_TIMEOUT`] (60 s),
/// [`TokenScope::Origin`], and a reqwest client that follows redirects only
/// within the request's origin ([`same_origin_redirects`](crate::same_origin_redirects)).
///
/// ```
/// use std::sync::Arc;
/// use pay402_client::{L402Client, TokenScope};
/// use pay402_core::lightning::{LightningPayer, Network};
/// use pay402_core::money::Msat;
/// fn make(payer: Arc<dyn LightningPayer>) -> L402Client {
///     L402Client::builder(payer)
///         .network(Network::Regtest)
///         .max_price(Msat(200_000))
///         .max_fee(Msat(10_000))
///         .scope(TokenScope::Origin)
///         .build()
/// }
/// ```
#[must_use]
pub struct L402ClientBuilder {
    payer: Arc<dyn LightningPayer>,
    network: Network,
    max_price: Msat,
    max_fee: Msat,
    payment_timeout: Duration,
    scope: TokenScope,
    http: Option<reqwest::Client>,
    timeout: Option<Duration>,
    timeout_set: bool,
    connect_timeout: Duration,
}

impl fmt::Debug for L402ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("L402ClientBuilder")
            .field("network", &self.network)
            .field("max_price", &self.max_price)
            .field("max_fee", &self.max_fee)
            .field("payment_timeout", &self.payment_timeout)
            .field("scope", &self.scope)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl L402ClientBuilder {
    /// The total time each HTTP attempt may take, from connecting until the
    /// response body has been read (default
    /// [`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT), 60 s). It
    /// applies to every request the client sends; set with your own
    /// [`http`](Self::http) client, it overrides that client's timeout
    /// (without this call, your client's settings rule). A timeout after paying is
    /// [`ClientError::RetryFailed`] with the receipt: you may have paid.
    ///
    /// ```
    /// # fn f(b: pay402_client::L402ClientBuilder) -> pay402_client::L402ClientBuilder {
    /// b.timeout(std::time::Duration::from_secs(20))
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self.timeout_set = true;
        self
    }

    crate::timeouts::connect_and_no_timeout!("pay402_client::L402ClientBuilder", "http");

    /// The network invoices must be for; invoices for any other network are
    /// refused with [`ClientError::Invoice`] before paying.
    ///
    /// ```
    /// # fn f(b: pay402_client::L402ClientBuilder) -> pay402_client::L402ClientBuilder {
    /// b.network(pay402_core::lightning::Network::Regtest)
    /// # }
    /// ```
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// The most one request may pay (invoice amount, fees excluded). A
    /// dearer invoice fails with [`ClientError::PriceExceedsMaximum`] and
    /// nothing is paid.
    ///
    /// ```
    /// # fn f(b: pay402_client::L402ClientBuilder) -> pay402_client::L402ClientBuilder {
    /// b.max_price(pay402_core::money::Msat(200_000))
    /// # }
    /// ```
    pub fn max_price(mut self, max: Msat) -> Self {
        self.max_price = max;
        self
    }

    /// The most the node may spend on routing fees per payment (passed to
    /// the payer in [`PayRequest::max_fee`]).
    ///
    /// ```
    /// # fn f(b: pay402_client::L402ClientBuilder) -> pay402_client::L402ClientBuilder {
    /// b.max_fee(pay402_core::money::Msat(10_000))
    /// # }
    /// ```
    pub fn max_fee(mut self, max: Msat) -> Self {
        self.max_fee = max;
        self
    }

    /// How long the node may try one payment (passed to the payer in
    /// [`PayRequest::timeout`]). If the payer does not answer within this
    /// time plus a 10-second grace, the client reports
    /// [`ClientError::PaymentOutcomeUnknown`].
    ///
    /// ```
    /// # fn f(b: pay402_client::L402ClientBuilder) -> pay402_client::L402ClientBuilder {
    /// b.payment_timeout(std::time::Duration::from_secs(30))
    /// # }
    /// ```
    pub fn payment_timeout(mut self, timeout: Duration) -> Self {
        self.payment_timeout = timeout;
        self
    }

    /// Which requests share a token; see [`TokenScope`].
    ///
    /// ```
    /// # fn f(b: pay402_client::L402ClientBuilder) -> pay402_client::L402ClientBuilder {
    /// b.scope(pay402_client::TokenScope::PathPrefix)
    /// # }
    /// ```
    pub fn scope(mut self, scope: TokenScope) -> Self {
        self.scope = scope;
        self
    }

    /// Uses this reqwest client for HTTP.
    ///
    /// Its redirect policy stays in force. reqwest's default policy removes
    /// `Authorization` when a redirect changes host or port, but not when it
    /// only changes the scheme; build the client with
    /// `.redirect(pay402_client::same_origin_redirects())` to keep every
    /// redirect inside the request's origin. Either way, a 402 that arrives
    /// from another origin than the requested one is never paid
    /// ([`ClientError::CrossOriginChallenge`]).
    ///
    /// ```
    /// # fn f(b: pay402_client::L402ClientBuilder) -> pay402_client::L402ClientBuilder {
    /// let http = reqwest::Client::builder()
    ///     .redirect(pay402_client::same_origin_redirects())
    ///     .timeout(std::time::Duration::from_secs(30))
    ///     .build()
    ///     .unwrap();
    /// b.http(http)
    /// # }
    /// ```
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Builds the client.
    ///
    /// Without [`http`](Self::http), a reqwest client with
    /// [`same_origin_redirects`](crate::same_origin_redirects) is built; should that fail (the TLS backend
    /// cannot initialise), a client that follows no redirects is used.
    ///
    /// ```
    /// # fn f(b: pay402_client::L402ClientBuilder) {
    /// let client = b.build();
    /// assert_eq!(client.cached_tokens(), 0);
    /// # }
    /// ```
    pub fn build(self) -> L402Client {
        let timeout = crate::timeouts::per_request(self.timeout, self.timeout_set, &self.http);
        let http = match self.http {
            Some(http) => http,
            None => default_http(self.connect_timeout, self.timeout),
        };
        L402Client {
            inner: Arc::new(Inner {
                http,
                timeout,
                connect_timeout: self.connect_timeout,
                payer: self.payer,
                network: self.network,
                max_price: self.max_price,
                max_fee: self.max_fee,
                payment_timeout: self.payment_timeout,
                scope: self.scope,
                cache: Arc::new(TokenCache::default()),
            }),
        }
    }
}

/// An HTTP client that pays L402 (and legacy LSAT) challenges with a
/// Lightning node and caches the tokens it buys.
///
/// For each request:
///
/// 1. If a token is cached for the request's key (origin + [`TokenScope`]),
///    it is sent as `Authorization: L402 <macaroon>:<preimage hex>`
///    (replacing any `Authorization` the request already had).
/// 2. A response other than 402 (or 401 carrying an L402 challenge) is
///    returned as is. A 401 without a challenge evicts the token that was
///    sent and is returned as is.
/// 3. On 402 (or 401 with a challenge), the token that was sent, if any, is
///    evicted (Aperture answers a rejected token with a fresh 402). The
///    request then takes the key's single-flight lock. If, meanwhile,
///    another request cached a token for the key, the request is retried
///    with it once, without paying; should that be refused too, its fresh
///    challenge is paid.
/// 4. Before paying, the preferred challenge (`L402` over `LSAT`) is checked
///    with [`check_challenge`]: the macaroon and identifier decode, the
///    invoice's signature is valid, it is for the configured network, it
///    pays the payment hash the macaroon commits to, it has not expired, it
///    has an amount, and the amount is at most the maximum price. Any
///    failure is a typed error and nothing is paid.
/// 5. The payer pays with the configured fee cap and timeout. The preimage
///    must hash to the invoice's payment hash and must not be all zeros.
/// 6. **Caching policy**: the token is cached as soon as the payment is
///    verified, and the single-flight lock is released, so that waiting
///    requests can use it at once; the request is then retried exactly once
///    with the credential. If the server refuses the retry (402/401, with a
///    new invoice at any price) the token is evicted and
///    [`ClientError::StillUnpaid`] is returned with the receipt. If it
///    answers a server error (5xx), or no answer arrives, the token is kept
///    and [`ClientError::ServerErrorAfterPayment`] or
///    [`ClientError::RetryFailed`] is returned with the receipt: calling
///    again sends the same credential and pays nothing. One call never pays
///    more than once; an error carrying a receipt means you have paid, so
///    do not pay again for the same purchase.
///
/// The payment runs in a spawned task, so dropping the returned future
/// while a payment is in flight does not lose the token: it is still cached
/// when the payment completes.
///
/// Credentials never leave their origin: tokens are keyed by origin, the
/// default HTTP client follows redirects only within the origin of the
/// request (see [`same_origin_redirects`](crate::same_origin_redirects)), and a 402 that arrives from
/// another origin is refused.
///
/// Tracing: each call runs in an `l402.request` span (fields `origin`,
/// `method`), each payment in an `l402.pay` span (fields `amount_msat`,
/// `payment_hash`). Macaroons and preimages are never logged, and the
/// `Authorization` header value is marked sensitive.
///
/// The client is cheap to clone; clones share the token cache.
///
/// ```no_run
/// use std::sync::Arc;
/// use pay402_client::{L402Client, ClientError, TokenScope};
/// use pay402_core::lightning::{LightningPayer, Network};
/// use pay402_core::money::Msat;
///
/// async fn fetch(payer: Arc<dyn LightningPayer>) -> Result<String, ClientError> {
///     let client = L402Client::builder(payer)
///         .network(Network::Regtest)
///         .max_price(Msat(200_000))
///         .scope(TokenScope::Origin)
///         .build();
///     let paid = client.get("http://127.0.0.1:8402/hello").await?;
///     if let Some(r) = &paid.receipt {
///         println!("paid {} (fee {})", r.amount, r.fee);
///     }
///     Ok(paid.response.text().await?)
/// }
/// ```
#[derive(Clone)]
pub struct L402Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    payer: Arc<dyn LightningPayer>,
    network: Network,
    max_price: Msat,
    max_fee: Msat,
    payment_timeout: Duration,
    pub(crate) scope: TokenScope,
    pub(crate) cache: Arc<TokenCache>,
}

impl fmt::Debug for L402Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("L402Client")
            .field("network", &self.inner.network)
            .field("max_price", &self.inner.max_price)
            .field("max_fee", &self.inner.max_fee)
            .field("scope", &self.inner.scope)
            .field("cached_tokens", &self.inner.cache.len())
            .finish_non_exhaustive()
    }
}

impl L402Client {
    /// Starts configuring a client that pays with `payer`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_core::lightning::LightningPayer;
    /// fn make(payer: Arc<dyn LightningPayer>) -> pay402_client::L402Client {
    ///     pay402_client::L402Client::builder(payer).build()
    /// }
    /// ```
    pub fn builder(payer: Arc<dyn LightningPayer>) -> L402ClientBuilder {
        L402ClientBuilder {
            payer,
            network: Network::Bitcoin,
            max_price: DEFAULT_MAX_PRICE,
            max_fee: DEFAULT_MAX_FEE,
            payment_timeout: DEFAULT_PAYMENT_TIMEOUT,
            scope: TokenScope::Origin,
            http: None,
            timeout: Some(crate::DEFAULT_REQUEST_TIMEOUT),
            timeout_set: false,
            connect_timeout: crate::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// `GET url`, paying if asked to.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::L402Client) -> Result<(), pay402_client::ClientError> {
    /// let paid = client.get("http://127.0.0.1:8402/hello").await?;
    /// println!("{}", paid.response.text().await?);
    /// # Ok(()) }
    /// ```
    pub async fn get<U: IntoUrl>(&self, url: U) -> Result<Paid, ClientError> {
        let request = self.inner.http.get(url).build()?;
        self.execute(request).await
    }

    /// A request builder on the underlying HTTP client, to be sent with
    /// [`send`](Self::send).
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::L402Client) -> Result<(), pay402_client::ClientError> {
    /// let rb = client.request(reqwest::Method::POST, "http://127.0.0.1:8402/echo").body("hi");
    /// let paid = client.send(rb).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub fn request<U: IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        self.inner.http.request(method, url)
    }

    /// Builds `builder` and executes it like [`execute`](Self::execute).
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::L402Client) -> Result<(), pay402_client::ClientError> {
    /// let rb = client.http().post("http://127.0.0.1:8402/echo").json(&[1, 2, 3]);
    /// let paid = client.send(rb).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub async fn send(&self, builder: RequestBuilder) -> Result<Paid, ClientError> {
        self.execute(builder.build()?).await
    }

    /// Executes `request`, paying an L402 challenge once if needed.
    ///
    /// The request body must be cloneable ([`Request::try_clone`]; any
    /// buffered body is) to be retried after paying; a streaming body to a
    /// paid endpoint fails with [`ClientError::BodyNotCloneable`] before
    /// anything is paid. The retry carries the same method, URL, headers and
    /// body.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::L402Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let req = reqwest::Request::new(reqwest::Method::GET, "http://127.0.0.1:8402/hello".parse()?);
    /// let paid = client.execute(req).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub async fn execute(&self, request: Request) -> Result<Paid, ClientError> {
        let span = info_span!(
            "l402.request",
            origin = %origin_of(request.url()),
            method = %request.method(),
        );
        Arc::clone(&self.inner).run(request).instrument(span).await
    }

    /// The rail logic the [`Payer`](crate::Payer) calls into.
    pub(crate) fn rail(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Forgets every cached token.
    ///
    /// ```
    /// # fn f(client: pay402_client::L402Client) {
    /// client.clear_cache();
    /// assert_eq!(client.cached_tokens(), 0);
    /// # }
    /// ```
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// How many tokens are cached.
    ///
    /// ```
    /// # fn f(client: pay402_client::L402Client) {
    /// println!("{} tokens", client.cached_tokens());
    /// # }
    /// ```
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    /// The underlying reqwest client.
    ///
    /// ```
    /// # fn f(client: pay402_client::L402Client) {
    /// let _rb = client.http().get("http://127.0.0.1:8402/");
    /// # }
    /// ```
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The total timeout the client sets on each HTTP attempt (`None`:
    /// turned off with [`L402ClientBuilder::no_timeout`], or left to your
    /// own reqwest client).
    ///
    /// ```
    /// # fn f(client: pay402_client::L402Client) {
    /// assert_eq!(client.timeout(), Some(pay402_client::DEFAULT_REQUEST_TIMEOUT));
    /// # }
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// The connect timeout of the client the builder built.
    ///
    /// ```
    /// # fn f(client: pay402_client::L402Client) {
    /// assert_eq!(client.connect_timeout(), pay402_client::DEFAULT_CONNECT_TIMEOUT);
    /// # }
    /// ```
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// The network invoices must be for.
    ///
    /// ```
    /// # fn f(client: pay402_client::L402Client) {
    /// println!("{}", client.network());
    /// # }
    /// ```
    pub fn network(&self) -> Network {
        self.inner.network
    }

    /// The per-request maximum price.
    ///
    /// ```
    /// # fn f(client: pay402_client::L402Client) {
    /// println!("{}", client.max_price());
    /// # }
    /// ```
    pub fn max_price(&self) -> Msat {
        self.inner.max_price
    }
}

/// How a response relates to payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not asking for payment: hand it to the caller.
    Accepted,
    /// 402, or 401 carrying an L402 challenge.
    Challenge,
    /// 401 without an L402 challenge.
    Rejected,
}

fn challenge_values(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(HeaderValue::as_bytes)
}

pub(crate) fn verdict(response: &Response) -> Verdict {
    match response.status() {
        StatusCode::PAYMENT_REQUIRED => Verdict::Challenge,
        StatusCode::UNAUTHORIZED => {
            let offered = ChallengeSet::parse(challenge_values(response.headers()))
                .is_ok_and(|set| !set.all().is_empty());
            if offered {
                Verdict::Challenge
            } else {
                Verdict::Rejected
            }
        }
        _ => Verdict::Accepted,
    }
}

fn parse_challenge(response: &Response) -> Result<Challenge<'static>, ClientError> {
    let set = ChallengeSet::parse(challenge_values(response.headers()))?;
    match set.l402() {
        Ok(c) => Ok(c.clone().into_owned()),
        Err(ChallengeError::NoL402Challenge) => Err(ClientError::NoChallenge {
            status: response.status(),
        }),
        Err(e) => Err(e.into()),
    }
}

fn with_token(template: &Request, token: &Token) -> Result<Request, ClientError> {
    let mut request = template.try_clone().ok_or(ClientError::BodyNotCloneable)?;
    request
        .headers_mut()
        .insert(AUTHORIZATION, token.header.clone());
    Ok(request)
}

impl Inner {
    /// Sends `request` with the client's total timeout unless it has its own.
    async fn execute_timed(&self, mut request: Request) -> reqwest::Result<reqwest::Response> {
        crate::timeouts::apply(&mut request, self.timeout);
        self.http.execute(request).await
    }

    async fn run(self: Arc<Self>, mut request: Request) -> Result<Paid, ClientError> {
        let url = request.url().clone();
        let key = self.scope.key(&url);
        let template = request.try_clone();
        let mut sent = self.cache.get(&key);
        if let Some(token) = &sent {
            debug!(payment_hash = %token.payment_hash, "sending cached token");
            request
                .headers_mut()
                .insert(AUTHORIZATION, token.header.clone());
        }
        let mut response = self.execute_timed(request).await?;
        let mut tried_peer_token = false;
        loop {
            match verdict(&response) {
                Verdict::Accepted => {
                    return Ok(Paid {
                        response,
                        receipt: None,
                        reused_token: sent.is_some(),
                    });
                }
                Verdict::Rejected => {
                    if let Some(token) = &sent
                        && self.cache.evict_if_current(&key, token)
                    {
                        info!(payment_hash = %token.payment_hash, "token refused with 401; evicted");
                    }
                    return Ok(Paid {
                        response,
                        receipt: None,
                        reused_token: false,
                    });
                }
                Verdict::Challenge => {}
            }
            // Our credential, if we sent one, was refused.
            if let Some(token) = sent.take()
                && self.cache.evict_if_current(&key, &token)
            {
                info!(payment_hash = %token.payment_hash, status = %response.status(), "cached token refused; evicted");
            }
            let responded = origin_of(response.url());
            if responded != key.origin() {
                return Err(ClientError::CrossOriginChallenge {
                    requested: key.origin().to_owned(),
                    responded,
                });
            }
            let Some(template) = template.as_ref() else {
                return Err(ClientError::BodyNotCloneable);
            };
            let guard = self.cache.lock_key(&key).await;
            if !tried_peer_token && let Some(peer) = self.cache.get(&key) {
                // Someone paid while we waited: try their token once.
                drop(guard);
                tried_peer_token = true;
                debug!(payment_hash = %peer.payment_hash, "retrying with a token paid by a concurrent request");
                let retry = with_token(template, &peer)?;
                sent = Some(peer);
                response = self.execute_timed(retry).await?;
                continue;
            }
            let challenge = parse_challenge(&response)?;
            drop(response);
            let (token, receipt) = Arc::clone(&self)
                .pay(challenge, key.clone(), url.clone(), guard)
                .await?;
            return match self.present(template, &token, receipt).await {
                Err(e @ ClientError::StillUnpaid { .. }) => {
                    self.cache.evict_if_current(&key, &token);
                    Err(e)
                }
                other => other,
            };
        }
    }

    /// Sends `template` once with the paid `token` and judges the answer:
    /// [`ClientError::RetryFailed`] without one, [`ClientError::StillUnpaid`]
    /// when refused again (the caller evicts the token), and
    /// [`ClientError::ServerErrorAfterPayment`] on a 5xx (the token stays).
    pub(crate) async fn present(
        &self,
        template: &Request,
        token: &Arc<Token>,
        receipt: Receipt,
    ) -> Result<Paid, ClientError> {
        let retry = with_token(template, token)?;
        let response = match self.execute_timed(retry).await {
            Ok(r) => r,
            Err(source) => {
                warn!(error = %source, "paid, but the retry failed; token kept");
                return Err(ClientError::RetryFailed {
                    source,
                    receipt: Box::new(receipt),
                });
            }
        };
        if verdict(&response) != Verdict::Accepted {
            warn!(status = %response.status(), payment_hash = %receipt.payment_hash, "paid, but the server still refuses");
            return Err(ClientError::StillUnpaid {
                status: response.status(),
                receipt: Box::new(receipt),
            });
        }
        if response.status().is_server_error() {
            warn!(status = %response.status(), payment_hash = %receipt.payment_hash, "paid, but the server failed; token kept");
            return Err(ClientError::ServerErrorAfterPayment {
                status: response.status(),
                receipt: Box::new(receipt),
            });
        }
        Ok(Paid {
            response,
            receipt: Some(receipt),
            reused_token: false,
        })
    }

    /// The checks made before paying `challenge` ([`check_challenge`] with
    /// the client's network and maximum price, and a macaroon that fits a
    /// header); nothing is paid.
    /// The Lightning network this client pays on.
    pub(crate) fn network(&self) -> Network {
        self.network
    }

    /// The most one invoice may cost.
    pub(crate) fn max_price(&self) -> Msat {
        self.max_price
    }

    pub(crate) fn check(
        &self,
        challenge: &Challenge<'_>,
        now: UnixTime,
    ) -> Result<pay402_core::l402::Offer, ClientError> {
        let offer =
            check_challenge(challenge, self.network, now, self.max_price).inspect_err(|e| {
                warn!(reason = e.reason(), error = %e, "refusing to pay the challenge");
            })?;
        if HeaderValue::from_str(challenge.macaroon()).is_err() {
            return Err(ClientError::Invoice(InvoiceError::Macaroon(
                "not a valid header value".into(),
            )));
        }
        Ok(offer)
    }

    /// Pays `bolt11` (whose payment hash is `payment_hash`) with the
    /// client's fee cap and timeout, and checks the preimage. Run it in a
    /// task of its own so that a dropped caller does not lose the payment.
    pub(crate) async fn pay_bolt11(
        &self,
        bolt11: &str,
        payment_hash: PaymentHash,
    ) -> Result<LnPaid, ClientError> {
        let request = PayRequest {
            bolt11: bolt11.to_owned(),
            max_fee: self.max_fee,
            timeout: self.payment_timeout,
        };
        let paid_at = SystemTime::now();
        let started = Instant::now();
        let limit = self.payment_timeout.saturating_add(PAYER_GRACE);
        let payment = match tokio::time::timeout(limit, self.payer.pay_invoice(&request)).await {
            Ok(Ok(payment)) => payment,
            Ok(Err(e)) => {
                warn!(reason = e.reason(), error = %e, "payment failed");
                return Err(ClientError::from(e));
            }
            Err(_) => {
                warn!("payer did not answer in time; outcome unknown");
                return Err(ClientError::PaymentOutcomeUnknown { payment_hash });
            }
        };
        if payment.preimage.is_all_zero() || !payment.preimage.matches(&payment_hash) {
            warn!("payer returned an invalid preimage");
            return Err(ClientError::PreimageMismatch { payment_hash });
        }
        if payment.fee > self.max_fee {
            warn!(
                fee_msat = payment.fee.0,
                max_fee_msat = self.max_fee.0,
                "payer exceeded the fee cap"
            );
        }
        Ok(LnPaid {
            preimage: payment.preimage,
            amount: payment.amount,
            fee: payment.fee,
            paid_in: started.elapsed(),
            paid_at,
        })
    }

    /// Checks and pays `challenge` while holding the key's lock `guard`;
    /// caches the token and releases the lock. The payment runs in its own
    /// task so that a dropped caller does not lose a paid token.
    async fn pay(
        self: Arc<Self>,
        challenge: Challenge<'static>,
        key: CacheKey,
        url: Url,
        guard: KeyGuard,
    ) -> Result<(Arc<Token>, Receipt), ClientError> {
        let now = UnixTime::from_system(SystemTime::now());
        let offer = self.check(&challenge, now)?;
        let payment_hash = offer.invoice.payment_hash;
        let amount = offer.invoice.amount;
        let span = info_span!("l402.pay", amount_msat = amount.0, payment_hash = %payment_hash);
        let task = async move {
            let paid = self.pay_bolt11(challenge.invoice(), payment_hash).await?;
            let header = token_header(challenge.scheme(), challenge.macaroon(), &paid.preimage)?;
            let token = Arc::new(Token {
                header,
                payment_hash,
            });
            self.cache.insert(key.clone(), Arc::clone(&token));
            drop(guard);
            info!(
                fee_msat = paid.fee.0,
                paid_in_ms = u64::try_from(paid.paid_in.as_millis()).unwrap_or(u64::MAX),
                "paid; token cached"
            );
            let receipt = paid.receipt(payment_hash, key.origin().to_owned(), url);
            Ok((token, receipt))
        }
        .instrument(span);
        match tokio::spawn(task).await {
            Ok(result) => result,
            Err(e) => {
                warn!(error = %e, "payment task died; outcome unknown");
                Err(ClientError::PaymentOutcomeUnknown { payment_hash })
            }
        }
    }
}

/// A Lightning payment made and checked by [`Inner::pay_bolt11`].
pub(crate) struct LnPaid {
    pub(crate) preimage: Preimage,
    pub(crate) amount: Msat,
    pub(crate) fee: Msat,
    pub(crate) paid_in: Duration,
    pub(crate) paid_at: SystemTime,
}

impl LnPaid {
    pub(crate) fn receipt(&self, payment_hash: PaymentHash, origin: String, url: Url) -> Receipt {
        Receipt {
            amount: self.amount,
            fee: self.fee,
            payment_hash,
            paid_in: self.paid_in,
            paid_at: self.paid_at,
            origin,
            url,
        }
    }
}

/// The `Authorization` value (marked sensitive) presenting `macaroon`
/// with `preimage` under `scheme`.
pub(crate) fn token_header(
    scheme: Scheme,
    macaroon: &str,
    preimage: &Preimage,
) -> Result<HeaderValue, ClientError> {
    let credential = Credential::new(macaroon, preimage.clone());
    let value = match scheme {
        Scheme::L402 => credential.to_header_value(),
        Scheme::Lsat => credential.to_lsat_header_value(),
    };
    let mut header = HeaderValue::try_from(value).map_err(|_| {
        ClientError::Invoice(InvoiceError::Macaroon("not a valid header value".into()))
    })?;
    header.set_sensitive(true);
    Ok(header)
}
