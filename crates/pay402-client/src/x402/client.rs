//! [`X402Client`] and its builder.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use alloy::primitives::U256;
use pay402_core::problem::Reason as _;
use pay402_core::time::UnixTime;
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::exact::VALID_BEFORE_MARGIN_SECS;
use pay402_core::x402::header::{PAYMENT_REQUIRED, PAYMENT_RESPONSE, X_PAYMENT_RESPONSE};
use pay402_core::x402::{HeaderValue as _, PaymentRequired, SettleResponse, TokenAmount};
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{
    IntoUrl, Method, Request, RequestBuilder, Response, ResponseBuilderExt as _, StatusCode, Url,
};
use serde_json::Value;
use tracing::{Instrument, debug, info, info_span, warn};

use super::error::X402Error;
use super::offer::{self, Challenge, MAX_BODY_BYTES, Offer};
use super::payment::{self, SignedPayment};
use super::policy::{AssetAllowance, Selection, SpendPolicy, normalize_network};
use super::receipt::{X402Paid, X402Receipt};
use super::signer::PaymentSigner;
use crate::body::read_bounded;
use crate::cache::origin_of;
use crate::redirect::default_http;

/// Default number of times the same payment is sent again after a
/// transport error or a `settlement_pending` answer.
///
/// ```
/// assert_eq!(pay402_client::x402::DEFAULT_MAX_RESENDS, 3);
/// ```
pub const DEFAULT_MAX_RESENDS: u32 = 3;

/// Default pause before sending the same payment again (multiplied by the
/// attempt number).
///
/// ```
/// assert_eq!(pay402_client::x402::DEFAULT_RESEND_DELAY.as_millis(), 500);
/// ```
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_millis(500);

/// Longest `Retry-After` honoured before resending (10 s).
///
/// ```
/// assert_eq!(pay402_client::x402::DEFAULT_MAX_RETRY_AFTER.as_secs(), 10);
/// ```
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Reasons meaning "this payment is being settled; send it again later":
/// `settlement_pending` (core's `FacilitatorError::Pending`, sent but not
/// yet mined), `settlement_unknown` (the facilitator's answer was lost) and
/// `payment_in_progress` (an earlier copy of the same payment is still
/// being processed).
const PENDING_REASONS: &[&str] = &[
    "settlement_pending",
    "settlement_unknown",
    "payment_in_progress",
];

fn is_pending(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| PENDING_REASONS.contains(&r))
}

/// A total spending limit for one asset over the client's lifetime.
#[derive(Clone, Debug)]
struct Budget {
    network: String,
    asset: EvmAddress,
    total: U256,
    spent: U256,
}

/// Configures an [`X402Client`]; see [`X402Client::builder`].
///
/// Defaults: the [`KNOWN_ASSETS`](super::KNOWN_ASSETS) (USDC on Base and
/// Base Sepolia) allowed up to
/// [`DEFAULT_MAX_PER_PAYMENT`](super::DEFAULT_MAX_PER_PAYMENT) (1 USDC)
/// each, every other asset refused; every network and recipient allowed;
/// [`Selection::FirstMatch`]; no budget; a total timeout of
/// [`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT) (60 s) per
/// HTTP attempt and a connect timeout of
/// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT) (10 s);
/// [`DEFAULT_MAX_RESENDS`] resends of the same payment,
/// [`DEFAULT_RESEND_DELAY`] apart; a reqwest client that follows redirects
/// only within the request's origin.
///
/// ```
/// use std::sync::Arc;
/// use pay402_client::x402::{LocalSigner, Selection, X402Client};
/// use pay402_core::x402::TokenAmount;
/// let signer = Arc::new(LocalSigner::random());
/// let usdc = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse().unwrap();
/// let client = X402Client::builder(signer)
///     .allow_asset("eip155:31337", usdc, TokenAmount::from_u64(10_000)) // 0.01 USDC per payment
///     .budget("eip155:31337", usdc, TokenAmount::from_u64(1_000_000))  // 1 USDC in total
///     .selection(Selection::Cheapest)
///     .timeout(std::time::Duration::from_secs(30))
///     .build();
/// assert_eq!(client.budget_remaining("eip155:31337", usdc), Some(TokenAmount::from_u64(1_000_000)));
/// ```
#[must_use]
pub struct X402ClientBuilder {
    signer: Arc<dyn PaymentSigner>,
    policy: SpendPolicy,
    budgets: Vec<Budget>,
    timeout: Option<Duration>,
    timeout_set: bool,
    connect_timeout: Duration,
    max_resends: u32,
    resend_delay: Duration,
    max_retry_after: Duration,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for X402ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X402ClientBuilder")
            .field("payer", &self.signer.address())
            .field("policy", &self.policy)
            .field("budgets", &self.budgets)
            .field("timeout", &self.timeout)
            .field("max_resends", &self.max_resends)
            .finish_non_exhaustive()
    }
}

impl X402ClientBuilder {
    /// Allows paying in `asset` on `network` (CAIP-2 id or v1 slug), at
    /// most `max_per_payment` base units per payment. Replaces an earlier
    /// allowance for the same asset (including a default one).
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// use pay402_core::x402::TokenAmount;
    /// let usdc = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap();
    /// b.allow_asset("eip155:8453", usdc, TokenAmount::from_human("0.05", 6).unwrap())
    /// # }
    /// ```
    pub fn allow_asset(
        mut self,
        network: &str,
        asset: EvmAddress,
        max_per_payment: TokenAmount,
    ) -> Self {
        self.policy
            .allow_asset(AssetAllowance::new(network, asset, max_per_payment));
        self
    }

    /// Drops the default allowances ([`KNOWN_ASSETS`](super::KNOWN_ASSETS)):
    /// only assets given to [`allow_asset`](Self::allow_asset) are paid.
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// b.without_default_assets()
    /// # }
    /// ```
    pub fn without_default_assets(mut self) -> Self {
        self.policy.assets.clear();
        self
    }

    /// Pays only on these networks (CAIP-2 ids or v1 slugs).
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// b.allow_networks(["eip155:8453", "base-sepolia"])
    /// # }
    /// ```
    pub fn allow_networks<I, S>(mut self, networks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.policy.networks = Some(
            networks
                .into_iter()
                .map(|n| normalize_network(n.as_ref()))
                .collect(),
        );
        self
    }

    /// Pays only these recipients (`payTo`).
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// b.allow_pay_to(["0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap()])
    /// # }
    /// ```
    pub fn allow_pay_to<I: IntoIterator<Item = EvmAddress>>(mut self, pay_to: I) -> Self {
        self.policy.pay_to = Some(pay_to.into_iter().collect());
        self
    }

    /// How to choose among acceptable offers; see [`Selection`].
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// b.selection(pay402_client::x402::Selection::Cheapest)
    /// # }
    /// ```
    pub fn selection(mut self, selection: Selection) -> Self {
        self.policy.selection = selection;
        self
    }

    /// Limits the total this client signs in `asset` on `network` to
    /// `total` base units. A payment is counted when it is signed and sent,
    /// whatever the server answers (a signed authorization can be settled
    /// until its `validBefore`), and never given back.
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// use pay402_core::x402::TokenAmount;
    /// let usdc = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap();
    /// b.budget("eip155:8453", usdc, TokenAmount::from_human("5", 6).unwrap())
    /// # }
    /// ```
    pub fn budget(mut self, network: &str, asset: EvmAddress, total: TokenAmount) -> Self {
        let network = normalize_network(network);
        self.budgets
            .retain(|b| !(b.network == network && b.asset == asset));
        self.budgets.push(Budget {
            network,
            asset,
            total: total.0,
            spent: U256::ZERO,
        });
        self
    }

    /// Total timeout of each HTTP attempt (the first request, and each
    /// sending of the payment), from connecting until the response body has
    /// been read (default
    /// [`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT), 60 s). It
    /// overrides the timeout of your own [`http`](Self::http) client (without
    /// this call, that client's settings rule). A timeout
    /// after paying is [`X402Error::RetryFailed`] carrying the payment.
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// b.timeout(std::time::Duration::from_secs(20))
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self.timeout_set = true;
        self
    }

    crate::timeouts::connect_and_no_timeout!("pay402_client::x402::X402ClientBuilder", "http");

    /// How many times the same signed payment may be sent again after a
    /// transport error or a `settlement_pending` answer (0: never).
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// b.max_resends(5)
    /// # }
    /// ```
    pub fn max_resends(mut self, n: u32) -> Self {
        self.max_resends = n;
        self
    }

    /// Pause before sending the same payment again, multiplied by the
    /// attempt number; a server's `Retry-After` (in seconds, at most
    /// [`max_retry_after`](Self::max_retry_after)) replaces it.
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// b.resend_delay(std::time::Duration::from_secs(1))
    /// # }
    /// ```
    pub fn resend_delay(mut self, delay: Duration) -> Self {
        self.resend_delay = delay;
        self
    }

    /// The longest `Retry-After` honoured.
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// b.max_retry_after(std::time::Duration::from_secs(30))
    /// # }
    /// ```
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Uses this reqwest client for HTTP. Build it with
    /// `.redirect(pay402_client::same_origin_redirects())` to keep the
    /// payment header inside the request's origin; either way, a 402 from
    /// another origin is never paid.
    ///
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) -> pay402_client::x402::X402ClientBuilder {
    /// let http = reqwest::Client::builder()
    ///     .redirect(pay402_client::same_origin_redirects())
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
    /// ```
    /// # fn f(b: pay402_client::x402::X402ClientBuilder) {
    /// let client = b.build();
    /// println!("paying from {}", client.address());
    /// # }
    /// ```
    pub fn build(self) -> X402Client {
        let timeout = crate::timeouts::per_request(self.timeout, self.timeout_set, &self.http);
        X402Client {
            inner: Arc::new(Inner {
                http: self
                    .http
                    .unwrap_or_else(|| default_http(self.connect_timeout, self.timeout)),
                connect_timeout: self.connect_timeout,
                signer: self.signer,
                policy: self.policy,
                budgets: Mutex::new(self.budgets),
                timeout,
                max_resends: self.max_resends,
                resend_delay: self.resend_delay,
                max_retry_after: self.max_retry_after,
            }),
        }
    }
}

/// An HTTP client that pays x402 offers (v2 `PAYMENT-REQUIRED` and v1 JSON
/// bodies) with EIP-3009 `exact` payments signed by a [`PaymentSigner`].
///
/// For each request:
///
/// 1. The request is sent as is. Anything but a 402 is returned untouched.
/// 2. On 402 from the requested origin, the offer is read from the
///    `PAYMENT-REQUIRED` header (v2) or, without it, from a JSON body with
///    `x402Version: 1`, both bounded; a malformed one is
///    [`X402Error::InvalidPaymentRequired`].
/// 3. Every requirement is checked against the policy: scheme `exact` on an
///    EVM network with transfer method EIP-3009, an EIP-712 domain in
///    `extra`, an allowed network, asset and recipient, and an amount at
///    most the asset's cap. The [`Selection`] picks among the acceptable
///    ones; the budget, if any, is charged.
/// 4. The payment is signed: `from` = the signer, `to` = `payTo`, `value`
///    = the amount, `validAfter` = 0 (v2) or now − 600 s (v1),
///    `validBefore` = now + `maxTimeoutSeconds`, a random 32-byte nonce;
///    the EIP-712 domain is `{extra.name, extra.version, chainId, asset}`.
///    The result is checked with core's reference verification before it
///    leaves the process. A v2 payment echoes the chosen requirement, the
///    resource and the extensions exactly as the server sent them.
/// 5. The request is sent again with `PAYMENT-SIGNATURE` (v2) or
///    `X-PAYMENT` (v1). If no answer arrives, or the server answers
///    `settlement_pending`, **the same signed payment** is sent again (at
///    most [`max_resends`](X402ClientBuilder::max_resends) times, while it
///    is still valid), never a new one, so a retry cannot pay twice.
/// 6. A 402 to the paid request is never paid again, whatever it asks (a
///    higher price included): it becomes [`X402Error::SettlementFailed`] (a
///    `PAYMENT-RESPONSE` with `success: false`; it may have paid if it names
///    a transaction), [`X402Error::PaymentRequestedAgain`] (a successful
///    `PAYMENT-RESPONSE`, no reason, or the unpaid 402's own reason: the
///    server asks again after receiving a payment) or
///    [`X402Error::PaymentRejected`] with the server's reason.
/// 7. A server error (5xx, other than a pending settlement) becomes
///    [`X402Error::ServerErrorAfterPayment`]: the payment may have been
///    settled. A served answer whose successful `PAYMENT-RESPONSE` names
///    another amount, payer or network than the payment sent becomes
///    [`X402Error::SettlementMismatch`]. Any other answer is returned with
///    an [`X402Receipt`] holding the decoded `PAYMENT-RESPONSE`; should its
///    body then fail to arrive in full, the receipt still says what was
///    paid (do not pay again for it).
///
/// Every error after step 5 carries the signed payment, and
/// [`X402Error::may_have_paid`] says whether money may have moved: when it
/// does, you may have paid, so do not pay again (see [`X402Error`]).
///
/// Tracing: each call runs in an `x402.request` span (fields `origin`,
/// `method`), each payment in an `x402.pay` span (`version`, `network`,
/// `asset`, `amount`, `pay_to`, `payer`, `nonce`). Signatures and header
/// values are never logged; the payment header is marked sensitive.
///
/// The client is cheap to clone; clones share the budget.
///
/// ```no_run
/// use std::sync::Arc;
/// use pay402_client::x402::{LocalSigner, X402Client};
/// use pay402_core::x402::TokenAmount;
///
/// async fn fetch(key_hex: &str) -> Result<String, Box<dyn std::error::Error>> {
///     let signer = Arc::new(LocalSigner::from_hex(key_hex)?);
///     let usdc = "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse()?;
///     let client = X402Client::builder(signer)
///         .allow_asset("eip155:84532", usdc, TokenAmount::from_u64(10_000))
///         .build();
///     let paid = client.get("http://127.0.0.1:8402/paid").await?;
///     if let Some(r) = &paid.receipt {
///         println!("paid {} (tx {:?})", r.payment.amount, r.transaction());
///     }
///     Ok(paid.response.text().await?)
/// }
/// ```
#[derive(Clone)]
pub struct X402Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    signer: Arc<dyn PaymentSigner>,
    policy: SpendPolicy,
    budgets: Mutex<Vec<Budget>>,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    max_resends: u32,
    resend_delay: Duration,
    max_retry_after: Duration,
}

impl fmt::Debug for X402Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X402Client")
            .field("payer", &self.inner.signer.address())
            .field("policy", &self.inner.policy)
            .field("max_resends", &self.inner.max_resends)
            .finish_non_exhaustive()
    }
}

impl X402Client {
    /// Starts configuring a client that pays with `signer`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_client::x402::{LocalSigner, X402Client};
    /// let client = X402Client::builder(Arc::new(LocalSigner::random())).build();
    /// # let _ = client;
    /// ```
    pub fn builder(signer: Arc<dyn PaymentSigner>) -> X402ClientBuilder {
        X402ClientBuilder {
            signer,
            policy: SpendPolicy::default(),
            budgets: Vec::new(),
            timeout: Some(crate::DEFAULT_REQUEST_TIMEOUT),
            timeout_set: false,
            connect_timeout: crate::DEFAULT_CONNECT_TIMEOUT,
            max_resends: DEFAULT_MAX_RESENDS,
            resend_delay: DEFAULT_RESEND_DELAY,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            http: None,
        }
    }

    /// `GET url`, paying if asked.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), pay402_client::x402::X402Error> {
    /// let paid = client.get("http://127.0.0.1:8402/paid").await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub async fn get<U: IntoUrl>(&self, url: U) -> Result<X402Paid, X402Error> {
        let request = self.inner.http.get(url).build().map_err(X402Error::Http)?;
        self.execute(request).await
    }

    /// A request builder on the underlying HTTP client, to be sent with
    /// [`send`](Self::send).
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), pay402_client::x402::X402Error> {
    /// let rb = client.request(reqwest::Method::POST, "http://127.0.0.1:8402/paid").body("hi");
    /// let paid = client.send(rb).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub fn request<U: IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        self.inner.http.request(method, url)
    }

    /// Builds `builder` and executes it like [`execute`](Self::execute).
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), pay402_client::x402::X402Error> {
    /// let paid = client.send(client.http().post("http://127.0.0.1:8402/paid").body("{}")).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub async fn send(&self, builder: RequestBuilder) -> Result<X402Paid, X402Error> {
        self.execute(builder.build().map_err(X402Error::Http)?)
            .await
    }

    /// Executes `request`, paying one x402 offer if the server asks.
    ///
    /// The body must be cloneable ([`Request::try_clone`]; any buffered
    /// body is) to be sent again with the payment; a streaming body to a
    /// paid endpoint fails with [`X402Error::BodyNotCloneable`] before
    /// anything is signed.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let req = reqwest::Request::new(reqwest::Method::GET, "http://127.0.0.1:8402/paid".parse()?);
    /// let paid = client.execute(req).await?;
    /// # let _ = paid; Ok(()) }
    /// ```
    pub async fn execute(&self, request: Request) -> Result<X402Paid, X402Error> {
        let span = info_span!(
            "x402.request",
            origin = %origin_of(request.url()),
            method = %request.method(),
        );
        Arc::clone(&self.inner).run(request).instrument(span).await
    }

    /// Sends `request` with an already signed payment (from
    /// [`X402Error::signed_payment`]) without signing a new one: the way to
    /// retry a call that ended in [`X402Error::SettlementPending`] or
    /// [`X402Error::RetryFailed`] without risking a second charge. The
    /// budget is not charged again.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client, e: pay402_client::x402::X402Error) -> Result<(), pay402_client::x402::X402Error> {
    /// if let Some(signed) = e.signed_payment() {
    ///     let req = client.http().get("http://127.0.0.1:8402/paid").build().map_err(pay402_client::x402::X402Error::Http)?;
    ///     let paid = client.resend(req, signed).await?;
    ///     # let _ = paid;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn resend(
        &self,
        request: Request,
        signed: &SignedPayment,
    ) -> Result<X402Paid, X402Error> {
        let span = info_span!(
            "x402.request",
            origin = %origin_of(request.url()),
            method = %request.method(),
        );
        let url = request.url().clone();
        self.inner
            .deliver(request, signed, url, SystemTime::now(), None)
            .instrument(span)
            .await
    }

    /// The rail logic the [`Payer`](crate::Payer) calls into.
    pub(crate) fn rail(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The underlying reqwest client.
    ///
    /// ```
    /// # fn f(client: pay402_client::x402::X402Client) {
    /// let _rb = client.http().get("http://127.0.0.1:8402/");
    /// # }
    /// ```
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The total timeout the client sets on each HTTP attempt (`None`:
    /// turned off with [`X402ClientBuilder::no_timeout`], or left to your
    /// own reqwest client).
    ///
    /// ```
    /// # fn f(client: pay402_client::x402::X402Client) {
    /// assert_eq!(client.timeout(), Some(pay402_client::DEFAULT_REQUEST_TIMEOUT));
    /// # }
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// The connect timeout of the client the builder built.
    ///
    /// ```
    /// # fn f(client: pay402_client::x402::X402Client) {
    /// assert_eq!(client.connect_timeout(), pay402_client::DEFAULT_CONNECT_TIMEOUT);
    /// # }
    /// ```
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// The paying account.
    ///
    /// ```
    /// # fn f(client: pay402_client::x402::X402Client) {
    /// println!("{}", client.address());
    /// # }
    /// ```
    pub fn address(&self) -> EvmAddress {
        self.inner.signer.address()
    }

    /// The allowed assets and their caps.
    ///
    /// ```
    /// # fn f(client: pay402_client::x402::X402Client) {
    /// for a in client.allowed_assets() { println!("{} {} <= {}", a.network, a.asset, a.max_per_payment); }
    /// # }
    /// ```
    pub fn allowed_assets(&self) -> &[AssetAllowance] {
        &self.inner.policy.assets
    }

    /// What is left of the budget for `asset` on `network`, if one was set.
    ///
    /// ```
    /// # fn f(client: pay402_client::x402::X402Client) {
    /// let usdc = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap();
    /// println!("{:?}", client.budget_remaining("eip155:8453", usdc));
    /// # }
    /// ```
    pub fn budget_remaining(&self, network: &str, asset: EvmAddress) -> Option<TokenAmount> {
        let network = normalize_network(network);
        let budgets = self
            .inner
            .budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        budgets
            .iter()
            .find(|b| b.network == network && b.asset == asset)
            .map(|b| TokenAmount(b.total.saturating_sub(b.spent)))
    }
}

/// The `x402.pay` span of a payment of `offer` by `payer` (its `nonce` is
/// recorded once drawn).
pub(crate) fn pay_span(offer: &Offer, payer: EvmAddress) -> tracing::Span {
    info_span!(
        "x402.pay",
        version = offer.x402_version,
        network = %offer.network,
        asset = %offer.asset,
        amount = %offer.amount,
        pay_to = %offer.pay_to,
        payer = %payer,
        nonce = tracing::field::Empty,
    )
}

/// What a response to the paid request means (short-lived; not boxed).
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Served(Response, Option<SettleResponse>),
    Pending {
        retry_after: Option<Duration>,
        transaction: Option<String>,
    },
    Rejected {
        status: StatusCode,
        reason: String,
        message: Option<String>,
    },
    SettlementFailed {
        reason: String,
        message: Option<String>,
        transaction: Option<String>,
    },
    /// A 402 asking for payment again after receiving one.
    AskedAgain {
        status: StatusCode,
        settlement: Option<SettleResponse>,
    },
    /// Served, with a settlement report about another payment.
    Mismatch {
        field: &'static str,
        expected: String,
        reported: String,
        settlement: SettleResponse,
    },
    /// A 5xx that is not a pending settlement.
    ServerError {
        status: StatusCode,
        settlement: Option<SettleResponse>,
    },
}

/// A served answer, unless its successful settlement report describes
/// another payment than `signed` (amount, payer or network).
fn served(
    response: Response,
    settlement: Option<SettleResponse>,
    signed: &SignedPayment,
) -> Outcome {
    let Some(s) = settlement.as_ref().filter(|s| s.success) else {
        return Outcome::Served(response, settlement);
    };
    let paid = signed.details();
    let mut mismatch = None;
    if let Some(amount) = s.amount
        && amount != paid.amount
    {
        mismatch = Some(("amount", paid.amount.to_string(), amount.to_string()));
    } else if let Some(payer) = s.payer.as_deref().filter(|p| !p.is_empty())
        && payer.parse::<EvmAddress>().ok() != Some(paid.payer)
    {
        mismatch = Some(("payer", paid.payer.to_string(), payer.to_owned()));
    } else if !s.network.is_empty()
        && normalize_network(&s.network) != normalize_network(&paid.network)
    {
        mismatch = Some(("network", paid.network.clone(), s.network.clone()));
    }
    match (mismatch, settlement) {
        (Some((field, expected, reported)), Some(settlement)) => Outcome::Mismatch {
            field,
            expected,
            reported: reported.chars().take(128).collect(),
            settlement,
        },
        (_, settlement) => Outcome::Served(response, settlement),
    }
}

fn pre_payment(e: reqwest::Error) -> X402Error {
    if e.is_timeout() {
        X402Error::Timeout(e)
    } else {
        X402Error::Http(e)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
}

fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(max))
}

/// The settlement report of a response: `PAYMENT-RESPONSE`, else
/// `X-PAYMENT-RESPONSE`. An unreadable one is logged and ignored.
fn settlement_of(headers: &HeaderMap) -> Option<SettleResponse> {
    let value = headers
        .get(PAYMENT_RESPONSE)
        .or_else(|| headers.get(X_PAYMENT_RESPONSE))?;
    let decoded = value
        .to_str()
        .map_err(|_| "not ASCII".to_owned())
        .and_then(|v| SettleResponse::decode_header(v).map_err(|e| e.to_string()));
    match decoded {
        Ok(s) => Some(s),
        Err(error) => {
            warn!(%error, "unreadable settlement report header; ignored");
            None
        }
    }
}

/// The reason and message in a JSON error body: problem+json `reason` /
/// `detail`, or the x402 fields `invalidReason`, `errorReason`, `error`.
fn reason_of_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let text = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(512).collect::<String>())
    };
    let reason = text("reason")
        .or_else(|| text("invalidReason"))
        .or_else(|| text("errorReason"))
        .or_else(|| text("error"));
    let message = text("detail")
        .or_else(|| text("invalidMessage"))
        .or_else(|| text("errorMessage"))
        .or_else(|| text("title"));
    (reason, message)
}

/// Whether the payment can still be verified by a server (the reference
/// verifier wants `validBefore >= now + 6`).
fn still_valid(signed: &SignedPayment) -> bool {
    let now = UnixTime::from_system(SystemTime::now()).0;
    now.saturating_add(VALID_BEFORE_MARGIN_SECS)
        .saturating_add(1)
        < signed.details().valid_before
}

/// Reads the offer of a 402 from the requested origin.
async fn read_challenge(response: Response) -> Result<Challenge, X402Error> {
    let mut values = response.headers().get_all(PAYMENT_REQUIRED).iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(X402Error::InvalidPaymentRequired(
                "several PAYMENT-REQUIRED headers".into(),
            ));
        }
        return offer::parse_v2_header(value.as_bytes());
    }
    let status = response.status();
    let (body, truncated) = read_bounded(response, MAX_BODY_BYTES)
        .await
        .map_err(pre_payment)?;
    if truncated {
        return Err(X402Error::InvalidPaymentRequired(format!(
            "402 body exceeds {MAX_BODY_BYTES} bytes and there is no PAYMENT-REQUIRED header"
        )));
    }
    offer::parse_body(&body)?.ok_or(X402Error::NoX402Offer { status })
}

impl Inner {
    async fn run(self: Arc<Self>, request: Request) -> Result<X402Paid, X402Error> {
        let url = request.url().clone();
        let requested = origin_of(&url);
        let template = request.try_clone();
        let response = self
            .http
            .execute(self.with_timeout(request))
            .await
            .map_err(pre_payment)?;
        if response.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(X402Paid {
                response,
                receipt: None,
            });
        }
        let responded = origin_of(response.url());
        if responded != requested {
            return Err(X402Error::CrossOriginChallenge {
                requested,
                responded,
            });
        }
        let challenge = read_challenge(response).await.inspect_err(|e| {
            warn!(reason = e.reason(), error = %e, "unusable 402");
        })?;
        let template = template.ok_or(X402Error::BodyNotCloneable)?;
        let offers = offer::offers_of(&challenge);
        let index = self.policy.choose(&offers).inspect_err(|e| {
            warn!(reason = e.reason(), error = %e, "refusing to pay");
        })?;
        let offer = offers.get(index).ok_or(X402Error::InvalidRequirement {
            reason: "invalid_payment_requirements",
        })?;
        let now = SystemTime::now();
        let span = pay_span(offer, self.signer.address());
        let signed = self
            .sign_offer(&challenge, offer, now)
            .instrument(span.clone())
            .await?;
        let asked = challenge.error().map(str::to_owned);
        self.deliver(template, &signed, url, now, asked.as_deref())
            .instrument(span)
            .await
    }

    /// Charges the budget, then signs `offer` (one of `challenge`'s) at
    /// `now` with a fresh nonce; gives the budget back if signing fails
    /// (nothing left the process).
    pub(crate) async fn sign_offer(
        &self,
        challenge: &Challenge,
        offer: &Offer,
        now: SystemTime,
    ) -> Result<SignedPayment, X402Error> {
        let nonce = payment::random_nonce();
        tracing::Span::current().record("nonce", tracing::field::display(nonce));
        let charged = self.charge_budget(offer)?;
        let signed = payment::sign(
            self.signer.as_ref(),
            challenge,
            offer.index,
            UnixTime::from_system(now),
            nonce,
        )
        .await;
        if let Err(e) = &signed {
            self.refund_budget(charged);
            warn!(reason = e.reason(), error = %e, "cannot sign the payment");
        }
        signed
    }

    /// Whether the policy (allow-lists, caps) accepts `offer`, as
    /// [`choose`](SpendPolicy::choose) would judge it alone.
    pub(crate) fn accepts(&self, offer: &Offer) -> Result<(), X402Error> {
        self.policy.choose(std::slice::from_ref(offer)).map(|_| ())
    }

    fn with_timeout(&self, mut request: Request) -> Request {
        crate::timeouts::apply(&mut request, self.timeout);
        request
    }

    /// Charges the budget of the offer's asset (if one is set) before
    /// signing; returns what to give back should signing fail.
    fn charge_budget(&self, offer: &Offer) -> Result<Option<(usize, U256)>, X402Error> {
        let (Some(network), Ok(asset)) =
            (offer.caip2.as_deref(), offer.asset.parse::<EvmAddress>())
        else {
            return Ok(None);
        };
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((i, budget)) = budgets
            .iter_mut()
            .enumerate()
            .find(|(_, b)| b.network == network && b.asset == asset)
        else {
            return Ok(None);
        };
        let remaining = budget.total.saturating_sub(budget.spent);
        if offer.amount.0 > remaining {
            return Err(X402Error::BudgetExhausted {
                network: network.to_owned(),
                asset: offer.asset.clone(),
                amount: offer.amount,
                remaining: TokenAmount(remaining),
            });
        }
        budget.spent = budget.spent.saturating_add(offer.amount.0);
        Ok(Some((i, offer.amount.0)))
    }

    fn refund_budget(&self, charged: Option<(usize, U256)>) {
        let Some((i, amount)) = charged else {
            return;
        };
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = budgets.get_mut(i) {
            b.spent = b.spent.saturating_sub(amount);
        }
    }

    /// Sends `template` with `signed` (again with the same payment after a
    /// transport error or a pending answer) and interprets the answer.
    /// `asked` is the `error` of the unpaid 402 the payment answers, if
    /// known: a 402 repeating it is the server asking again.
    pub(crate) async fn deliver(
        &self,
        template: Request,
        signed: &SignedPayment,
        url: Url,
        paid_at: SystemTime,
        asked: Option<&str>,
    ) -> Result<X402Paid, X402Error> {
        let started = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            attempts = attempts.saturating_add(1);
            let mut request = template.try_clone().ok_or(X402Error::BodyNotCloneable)?;
            request
                .headers_mut()
                .insert(signed.header_name().clone(), signed.header_value().clone());
            let request = self.with_timeout(request);
            let outcome = match self.http.execute(request).await {
                Ok(response) => self.classify(response, signed, asked).await,
                Err(e) => Err(e),
            };
            let may_resend = attempts <= self.max_resends && still_valid(signed);
            match outcome {
                Err(source) => {
                    if may_resend {
                        warn!(attempt = attempts, error = %source, "no answer to the paid request; sending the same payment again");
                        tokio::time::sleep(self.resend_delay.saturating_mul(attempts)).await;
                        continue;
                    }
                    warn!(attempts, error = %source, "paid request failed; the payment may have been settled");
                    return Err(X402Error::RetryFailed {
                        source,
                        attempts,
                        payment: Box::new(signed.clone()),
                    });
                }
                Ok(Outcome::Pending {
                    retry_after,
                    transaction,
                }) => {
                    if may_resend {
                        let pause = retry_after
                            .unwrap_or_else(|| self.resend_delay.saturating_mul(attempts));
                        info!(
                            attempt = attempts,
                            pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                            "settlement pending; sending the same payment again"
                        );
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    warn!(attempts, "settlement still pending");
                    return Err(X402Error::SettlementPending {
                        attempts,
                        transaction,
                        payment: Box::new(signed.clone()),
                    });
                }
                Ok(Outcome::Rejected {
                    status,
                    reason,
                    message,
                }) => {
                    warn!(%status, %reason, "server rejected the payment");
                    return Err(X402Error::PaymentRejected {
                        status,
                        reason,
                        message,
                        resent: attempts > 1,
                        payment: Box::new(signed.clone()),
                    });
                }
                Ok(Outcome::SettlementFailed {
                    reason,
                    message,
                    transaction,
                }) => {
                    warn!(%reason, transaction = transaction.as_deref().unwrap_or(""), "settlement failed");
                    return Err(X402Error::SettlementFailed {
                        reason,
                        message,
                        transaction,
                        resent: attempts > 1,
                        payment: Box::new(signed.clone()),
                    });
                }
                Ok(Outcome::AskedAgain { status, settlement }) => {
                    warn!(%status, "server asked for payment again after receiving one; not paying again");
                    return Err(X402Error::PaymentRequestedAgain {
                        status,
                        settlement: settlement.map(Box::new),
                        resent: attempts > 1,
                        payment: Box::new(signed.clone()),
                    });
                }
                Ok(Outcome::Mismatch {
                    field,
                    expected,
                    reported,
                    settlement,
                }) => {
                    warn!(field, %expected, %reported, "settlement report does not match the payment");
                    return Err(X402Error::SettlementMismatch {
                        field,
                        expected,
                        reported,
                        settlement: Box::new(settlement),
                        payment: Box::new(signed.clone()),
                    });
                }
                Ok(Outcome::ServerError { status, settlement }) => {
                    warn!(%status, attempts, "server error after the payment; outcome unknown");
                    return Err(X402Error::ServerErrorAfterPayment {
                        status,
                        settlement: settlement.map(Box::new),
                        attempts,
                        payment: Box::new(signed.clone()),
                    });
                }
                Ok(Outcome::Served(response, settlement)) => {
                    let receipt = X402Receipt {
                        payment: signed.details().clone(),
                        signed: signed.clone(),
                        settlement,
                        origin: origin_of(&url),
                        url,
                        paid_at,
                        elapsed: started.elapsed(),
                        attempts,
                    };
                    info!(
                        status = %response.status(),
                        attempts,
                        settled = receipt.settled(),
                        transaction = receipt.transaction().unwrap_or(""),
                        "paid request answered"
                    );
                    return Ok(X402Paid {
                        response,
                        receipt: Some(receipt),
                    });
                }
            }
        }
    }

    /// Interprets the answer to a paid request. A transport error while
    /// reading an error body is `Err` (the same payment is then sent again).
    async fn classify(
        &self,
        response: Response,
        signed: &SignedPayment,
        asked: Option<&str>,
    ) -> Result<Outcome, reqwest::Error> {
        let status = response.status();
        let settlement = settlement_of(response.headers());
        let retry = retry_after(response.headers(), self.max_retry_after);
        if let Some(s) = &settlement
            && !s.success
            && is_pending(s.error_reason.as_deref())
        {
            return Ok(Outcome::Pending {
                retry_after: retry,
                transaction: s.transaction.clone().filter(|t| !t.is_empty()),
            });
        }
        let payment_status = matches!(status.as_u16(), 400 | 402 | 409 | 412);
        let error_json = is_json(response.headers())
            && (status == StatusCode::ACCEPTED
                || status.is_client_error()
                || status.is_server_error());
        if !payment_status && !error_json && !status.is_server_error() {
            return Ok(served(response, settlement, signed));
        }
        // A fresh offer's `error` (v2 servers put the verify reason there).
        let offer_error = response
            .headers()
            .get(PAYMENT_REQUIRED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| PaymentRequired::decode_header(v).ok())
            .and_then(|p| p.error)
            .filter(|e| !e.is_empty());
        let version = response.version();
        let headers = response.headers().clone();
        let url = response.url().clone();
        let (body, _truncated) = read_bounded(response, MAX_BODY_BYTES).await?;
        let (body_reason, message) = reason_of_body(&body);
        if is_pending(body_reason.as_deref()) {
            return Ok(Outcome::Pending {
                retry_after: retry,
                transaction: None,
            });
        }
        if status.is_server_error() {
            return Ok(Outcome::ServerError { status, settlement });
        }
        if status == StatusCode::PAYMENT_REQUIRED {
            match settlement {
                Some(s) if s.success => {
                    return Ok(Outcome::AskedAgain {
                        status,
                        settlement: Some(s),
                    });
                }
                Some(s) => {
                    return Ok(Outcome::SettlementFailed {
                        reason: s.error_reason.unwrap_or_else(|| "unspecified".to_owned()),
                        message: s.error_message.or(message),
                        transaction: s.transaction.filter(|t| !t.is_empty()),
                    });
                }
                None => {}
            }
            // The server's unpaid 402 again: no reason, its unpaid reason
            // (`payment_required` in problem+json), or the unpaid offer's
            // own `error`.
            let asked_again = (body_reason.is_none() && offer_error.is_none())
                || body_reason.as_deref() == Some("payment_required")
                || (asked.is_some() && offer_error.as_deref() == asked)
                || (asked.is_some() && body_reason.as_deref() == asked);
            if asked_again {
                return Ok(Outcome::AskedAgain {
                    status,
                    settlement: None,
                });
            }
            return Ok(Outcome::Rejected {
                status,
                reason: body_reason
                    .or(offer_error)
                    .unwrap_or_else(|| "unspecified".to_owned()),
                message,
            });
        }
        if payment_status && let Some(reason) = body_reason.clone().or(offer_error) {
            return Ok(Outcome::Rejected {
                status,
                reason,
                message,
            });
        }
        // Not about the payment: hand the response back, body restored.
        debug!(%status, "paid request answered with an error body");
        let mut builder = http::Response::builder()
            .status(status)
            .version(version)
            .url(url);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        match builder.body(body) {
            Ok(r) => Ok(served(Response::from(r), settlement, signed)),
            Err(e) => {
                warn!(error = %e, "cannot rebuild the response");
                Ok(Outcome::Rejected {
                    status,
                    reason: body_reason.unwrap_or_else(|| "unspecified".to_owned()),
                    message,
                })
            }
        }
    }
}
