//! [`MockClient`]: pays x402_mock 402 answers with EIP-2612 permits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use alloy::primitives::U256;
use pay402_core::x402::evm::{Bytes32, Eip2612Permit, EvmAddress, recover_signer};
use pay402_core::x402::mock::{
    AccessTokenResponse, EvmPaymentComponent, MOCK_PROTOCOL_VERSION, MockPaymentRequired,
    MockPermit, MockPermitRequest, MockPermitSignature, select_component,
};
use pay402_core::x402::mock_chain::PermitReader;
use pay402_core::x402::{EvmTimestamp, TokenAmount};
use reqwest::header::AUTHORIZATION;
use reqwest::{IntoUrl, Method, Request, Response, StatusCode, Url};
use tracing::Instrument;
use zeroize::Zeroizing;

use super::error::MockClientError;
use crate::redirect::default_http;
use crate::x402::{PaymentSigner, SignerError};

/// How long a signed permit stays valid (the seed's 600 s).
///
/// ```
/// assert_eq!(pay402_client::x402_mock::DEFAULT_PERMIT_VALIDITY.as_secs(), 600);
/// ```
pub const DEFAULT_PERMIT_VALIDITY: Duration = Duration::from_secs(600);

/// How long to wait for an earlier permit of the same payer to settle when
/// the server answers `permit_nonce_pending`.
///
/// ```
/// assert_eq!(pay402_client::x402_mock::DEFAULT_NONCE_WAIT.as_secs(), 60);
/// ```
pub const DEFAULT_NONCE_WAIT: Duration = Duration::from_secs(60);

/// Largest 402 or token-endpoint body read, in bytes.
///
/// ```
/// assert_eq!(pay402_client::x402_mock::MAX_MOCK_BODY_BYTES, 64 * 1024);
/// ```
pub const MAX_MOCK_BODY_BYTES: usize = 64 * 1024;

/// A cached token is not used during its last seconds.
const EXPIRY_MARGIN_SECS: u64 = 5;
/// Permits signed per request at most (the first, plus re-signs after
/// `permit_nonce_pending`).
const MAX_PERMITS: usize = 3;
const NONCE_POLL: Duration = Duration::from_millis(500);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One token the client pays with, and its cap per payment.
///
/// ```
/// use pay402_client::x402_mock::MockAccept;
/// use pay402_core::x402::TokenAmount;
/// let a = MockAccept { chain_id: 31337, token: Default::default(), max_per_payment: TokenAmount::from_u64(50_000) };
/// assert_eq!(a.chain_id, 31337);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockAccept {
    /// The chain id.
    pub chain_id: u64,
    /// The token contract.
    pub token: EvmAddress,
    /// The most paid in one permit, in base units.
    pub max_per_payment: TokenAmount,
}

/// What one permit paid for: enough to follow the payment on chain.
///
/// ```
/// # fn f(r: pay402_client::x402_mock::MockReceipt) {
/// println!("{} paid {} of {} (nonce {})", r.payer, r.amount, r.token, r.nonce);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockReceipt {
    /// The URL paid for.
    pub url: String,
    /// The payer (permit owner).
    pub payer: EvmAddress,
    /// The spender (the server wallet).
    pub spender: EvmAddress,
    /// The token contract.
    pub token: EvmAddress,
    /// The chain id.
    pub chain_id: u64,
    /// The permit value = the price, in base units.
    pub amount: TokenAmount,
    /// The permit nonce.
    pub nonce: U256,
    /// The permit deadline (unix seconds).
    pub deadline: u64,
    /// The permit's EIP-712 digest (the server's token `jti`).
    pub digest: Bytes32,
    /// When the access token expires (unix seconds), once obtained.
    pub token_expires_at: Option<u64>,
    /// The server's settlement id, if it gave one.
    pub settlement_id: Option<i64>,
}

/// A response, with the receipt when this call paid.
///
/// ```
/// # async fn f(client: pay402_client::x402_mock::MockClient) -> Result<(), pay402_client::x402_mock::MockClientError> {
/// let paid = client.get("http://127.0.0.1:8402/premium").await?;
/// if let Some(r) = &paid.receipt { println!("paid {}", r.amount); }
/// let text = paid.response.text().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MockPaid {
    /// The final response.
    pub response: Response,
    /// Set when this call signed a permit and obtained a token.
    pub receipt: Option<MockReceipt>,
    /// Whether a cached token was used.
    pub reused_token: bool,
}

struct CachedToken {
    token: Zeroizing<String>,
    exp: u64,
}

struct Inner {
    http: reqwest::Client,
    signer: Arc<dyn PaymentSigner>,
    chain: Arc<dyn PermitReader>,
    accepts: Vec<MockAccept>,
    permit_validity: Duration,
    nonce_wait: Duration,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    cache: Mutex<HashMap<String, CachedToken>>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Inner {
    /// Sends `request` with the client's total timeout unless it has its own.
    async fn execute(&self, mut request: Request) -> reqwest::Result<Response> {
        crate::timeouts::apply(&mut request, self.timeout);
        self.http.execute(request).await
    }
}

/// Pays x402_mock offers: on a 402 it picks a component (first accepted
/// token and chain within its cap), reads `nonces(owner)`, signs an EIP-2612
/// permit for exactly the price, POSTs it to the (same-origin) token
/// endpoint, caches the Bearer token until it expires and retries once.
///
/// Concurrent requests for the same URL pay once. A token the server
/// refuses (401) is evicted and the request paid again.
///
/// ```no_run
/// use std::sync::Arc;
/// use pay402_client::x402::LocalSigner;
/// use pay402_client::x402_mock::MockClient;
/// use pay402_core::x402::TokenAmount;
/// # async fn f(chain: Arc<dyn pay402_core::x402::mock_chain::PermitReader>) -> Result<(), Box<dyn std::error::Error>> {
/// let signer = Arc::new(LocalSigner::from_hex(&std::env::var("EVM_PRIVATE_KEY")?)?);
/// let usdc = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse()?;
/// let client = MockClient::builder(signer, chain)
///     .accept(31337, usdc, TokenAmount::from_u64(50_000)) // at most 0.05 USDC per payment
///     .build();
/// let paid = client.get("http://127.0.0.1:8402/premium").await?;
/// println!("{}", paid.response.text().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MockClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockClient")
            .field("payer", &self.inner.signer.address())
            .field("accepts", &self.inner.accepts)
            .finish_non_exhaustive()
    }
}

/// Configures a [`MockClient`]; see [`MockClient::builder`].
///
/// ```no_run
/// # use std::sync::Arc;
/// # fn f(signer: Arc<dyn pay402_client::x402::PaymentSigner>, chain: Arc<dyn pay402_core::x402::mock_chain::PermitReader>) {
/// let client = pay402_client::x402_mock::MockClient::builder(signer, chain)
///     .permit_validity(std::time::Duration::from_secs(300))
///     .build();
/// # }
/// ```
pub struct MockClientBuilder {
    http: Option<reqwest::Client>,
    signer: Arc<dyn PaymentSigner>,
    chain: Arc<dyn PermitReader>,
    accepts: Vec<MockAccept>,
    permit_validity: Duration,
    nonce_wait: Duration,
    timeout: Option<Duration>,
    timeout_set: bool,
    connect_timeout: Duration,
}

impl std::fmt::Debug for MockClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockClientBuilder")
            .field("accepts", &self.accepts)
            .finish_non_exhaustive()
    }
}

impl MockClientBuilder {
    /// Accepts paying `token` on `chain_id`, at most `max_per_payment` base
    /// units per permit. Earlier calls have priority. Nothing is accepted by
    /// default.
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::x402_mock::MockClientBuilder, usdc: pay402_core::x402::evm::EvmAddress) {
    /// let b = b.accept(8453, usdc, pay402_core::x402::TokenAmount::from_u64(1_000_000));
    /// # }
    /// ```
    pub fn accept(
        mut self,
        chain_id: u64,
        token: EvmAddress,
        max_per_payment: TokenAmount,
    ) -> MockClientBuilder {
        self.accepts.push(MockAccept {
            chain_id,
            token,
            max_per_payment,
        });
        self
    }

    /// How long signed permits stay valid (default [`DEFAULT_PERMIT_VALIDITY`]).
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::x402_mock::MockClientBuilder) {
    /// let b = b.permit_validity(std::time::Duration::from_secs(900));
    /// # }
    /// ```
    pub fn permit_validity(mut self, d: Duration) -> MockClientBuilder {
        self.permit_validity = d;
        self
    }

    /// How long to wait for an earlier permit to settle on
    /// `permit_nonce_pending` (default [`DEFAULT_NONCE_WAIT`]).
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::x402_mock::MockClientBuilder) {
    /// let b = b.nonce_wait(std::time::Duration::from_secs(10));
    /// # }
    /// ```
    pub fn nonce_wait(mut self, d: Duration) -> MockClientBuilder {
        self.nonce_wait = d;
        self
    }

    /// Uses this reqwest client (give it [`same_origin_redirects`](crate::same_origin_redirects)
    /// so Bearer tokens never follow a redirect to another origin).
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::x402_mock::MockClientBuilder) {
    /// let http = reqwest::Client::builder().redirect(pay402_client::same_origin_redirects()).build().unwrap();
    /// let b = b.http_client(http);
    /// # }
    /// ```
    pub fn http_client(mut self, http: reqwest::Client) -> MockClientBuilder {
        self.http = Some(http);
        self
    }

    /// The total time each HTTP attempt may take, from connecting until the
    /// response body has been read (default
    /// [`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT), 60 s):
    /// the unpaid request, the token exchange and the paid request; it
    /// overrides the timeout of your own [`http_client`](Self::http_client)
    /// (without this call, that client's settings rule). A timeout after
    /// paying is [`MockClientError::RetryFailed`] with the receipt.
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::x402_mock::MockClientBuilder) {
    /// let b = b.timeout(std::time::Duration::from_secs(20));
    /// # }
    /// ```
    pub fn timeout(mut self, d: Duration) -> MockClientBuilder {
        self.timeout = Some(d);
        self.timeout_set = true;
        self
    }

    crate::timeouts::connect_and_no_timeout!(
        "pay402_client::x402_mock::MockClientBuilder",
        "http_client"
    );

    /// Builds the client (default HTTP client: same-origin redirects, the
    /// connect and total timeouts).
    ///
    /// ```no_run
    /// # fn f(b: pay402_client::x402_mock::MockClientBuilder) {
    /// let client = b.build();
    /// # }
    /// ```
    pub fn build(self) -> MockClient {
        let timeout = crate::timeouts::per_request(self.timeout, self.timeout_set, &self.http);
        let http = self
            .http
            .unwrap_or_else(|| default_http(self.connect_timeout, self.timeout));
        MockClient {
            inner: Arc::new(Inner {
                http,
                signer: self.signer,
                chain: self.chain,
                accepts: self.accepts,
                permit_validity: self.permit_validity,
                nonce_wait: self.nonce_wait,
                timeout,
                connect_timeout: self.connect_timeout,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// The cache key: origin and path (tokens are bound to one resource).
fn cache_key(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

async fn read_bounded(mut resp: Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_MOCK_BODY_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_MOCK_BODY_BYTES {
            break;
        }
    }
    Ok(out)
}

impl MockClient {
    /// A builder for a client paying with `signer`, reading permit nonces
    /// through `chain`.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # fn f(signer: Arc<dyn pay402_client::x402::PaymentSigner>, chain: Arc<dyn pay402_core::x402::mock_chain::PermitReader>) {
    /// let client = pay402_client::x402_mock::MockClient::builder(signer, chain).build();
    /// # }
    /// ```
    pub fn builder(
        signer: Arc<dyn PaymentSigner>,
        chain: Arc<dyn PermitReader>,
    ) -> MockClientBuilder {
        MockClientBuilder {
            http: None,
            signer,
            chain,
            accepts: Vec::new(),
            permit_validity: DEFAULT_PERMIT_VALIDITY,
            nonce_wait: DEFAULT_NONCE_WAIT,
            timeout: Some(crate::DEFAULT_REQUEST_TIMEOUT),
            timeout_set: false,
            connect_timeout: crate::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The underlying reqwest client.
    ///
    /// ```no_run
    /// # fn f(c: pay402_client::x402_mock::MockClient) {
    /// let req = c.http().get("http://127.0.0.1:8402/premium").build().unwrap();
    /// # }
    /// ```
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The total timeout the client sets on each HTTP attempt (`None`:
    /// turned off with [`MockClientBuilder::no_timeout`], or left to your
    /// own reqwest client).
    ///
    /// ```no_run
    /// # fn f(c: pay402_client::x402_mock::MockClient) {
    /// assert_eq!(c.timeout(), Some(pay402_client::DEFAULT_REQUEST_TIMEOUT));
    /// # }
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// The connect timeout of the client the builder built.
    ///
    /// ```no_run
    /// # fn f(c: pay402_client::x402_mock::MockClient) {
    /// assert_eq!(c.connect_timeout(), pay402_client::DEFAULT_CONNECT_TIMEOUT);
    /// # }
    /// ```
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// Forgets the cached token for `url`, if any.
    ///
    /// ```no_run
    /// # fn f(c: pay402_client::x402_mock::MockClient) {
    /// c.forget(&"http://127.0.0.1:8402/premium".parse().unwrap());
    /// # }
    /// ```
    pub fn forget(&self, url: &Url) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&cache_key(url));
    }

    /// `GET url`, paying if asked.
    ///
    /// ```no_run
    /// # async fn f(c: pay402_client::x402_mock::MockClient) {
    /// let paid = c.get("http://127.0.0.1:8402/premium").await;
    /// # }
    /// ```
    pub async fn get(&self, url: impl IntoUrl) -> Result<MockPaid, MockClientError> {
        let url = url.into_url().map_err(MockClientError::Http)?;
        self.execute(Request::new(Method::GET, url)).await
    }

    /// Sends `request`, paying if asked (the body must be cloneable).
    ///
    /// ```no_run
    /// # async fn f(c: pay402_client::x402_mock::MockClient) {
    /// let req = c.http().post("http://127.0.0.1:8402/premium").body("{}").build().unwrap();
    /// let paid = c.execute(req).await;
    /// # }
    /// ```
    pub async fn execute(&self, request: Request) -> Result<MockPaid, MockClientError> {
        let span = tracing::info_span!(
            "x402_mock.client",
            method = %request.method(),
            url = %request.url(),
        );
        self.run(request).instrument(span).await
    }

    fn cached(&self, key: &str) -> Option<Zeroizing<String>> {
        let cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|c| unix_now().saturating_add(EXPIRY_MARGIN_SECS) < c.exp)
            .map(|c| c.token.clone())
    }

    fn evict(&self, key: &str) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// Sends with the cached token; `None` when there is none or the server
    /// refused it (then evicted).
    async fn with_cached(
        &self,
        key: &str,
        request: &Request,
    ) -> Result<Option<Response>, MockClientError> {
        let Some(token) = self.cached(key) else {
            return Ok(None);
        };
        let mut req = request
            .try_clone()
            .ok_or(MockClientError::BodyNotCloneable)?;
        set_bearer(&mut req, &token)?;
        let resp = self
            .inner
            .execute(req)
            .await
            .map_err(MockClientError::Http)?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::PAYMENT_REQUIRED
        ) {
            tracing::info!(status = resp.status().as_u16(), "x402_mock.token_refused");
            self.evict(key);
            return Ok(None);
        }
        Ok(Some(resp))
    }

    async fn run(&self, request: Request) -> Result<MockPaid, MockClientError> {
        let url = request.url().clone();
        let key = cache_key(&url);
        if let Some(response) = self.with_cached(&key, &request).await? {
            return Ok(MockPaid {
                response,
                receipt: None,
                reused_token: true,
            });
        }
        // One payment per URL at a time; a request that waited reuses the token.
        let flight = self.flight(&key);
        let _guard = flight.lock().await;
        if let Some(response) = self.with_cached(&key, &request).await? {
            return Ok(MockPaid {
                response,
                receipt: None,
                reused_token: true,
            });
        }

        let first = request
            .try_clone()
            .ok_or(MockClientError::BodyNotCloneable)?;
        let resp = self
            .inner
            .execute(first)
            .await
            .map_err(MockClientError::Http)?;
        if resp.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(MockPaid {
                response: resp,
                receipt: None,
                reused_token: false,
            });
        }
        let responded = resp.url().clone();
        if responded.origin() != url.origin() {
            return Err(MockClientError::CrossOriginTokenEndpoint {
                endpoint: responded.to_string(),
            });
        }
        let body = read_bounded(resp).await.map_err(MockClientError::Http)?;
        let offer: MockPaymentRequired =
            serde_json::from_slice(&body).map_err(|e| MockClientError::NotMockChallenge {
                detail: e.to_string().chars().take(200).collect(),
            })?;
        let components = &offer.payment_scheme.payment_components;
        let component = self
            .inner
            .accepts
            .iter()
            .find_map(|a| select_component(components, a.chain_id, &a.token, a.max_per_payment))
            .ok_or(MockClientError::NoAcceptableComponent {
                offered: components.len(),
            })?;
        self.check_chain(component)?;
        let endpoint = token_endpoint(&responded, &url, &offer.access_token_endpoint)?;
        let (bearer, receipt) = self.buy(component, &endpoint, &url).await?;
        self.present(&request, &bearer, receipt).await
    }

    /// Whether `component` is one this client pays: an accepted token and
    /// chain within its cap, on the chain its reader reads.
    pub(crate) fn accepts(&self, component: &EvmPaymentComponent) -> Result<(), MockClientError> {
        let one = std::slice::from_ref(component);
        if !self
            .inner
            .accepts
            .iter()
            .any(|a| select_component(one, a.chain_id, &a.token, a.max_per_payment).is_some())
        {
            return Err(MockClientError::NoAcceptableComponent { offered: 1 });
        }
        self.check_chain(component)
    }

    fn check_chain(&self, component: &EvmPaymentComponent) -> Result<(), MockClientError> {
        let reader_chain = self.inner.chain.chain_id();
        if reader_chain != component.chain_id {
            return Err(MockClientError::ChainMismatch {
                reader: reader_chain,
                component: component.chain_id,
            });
        }
        Ok(())
    }

    /// Buys a token for `url` with a permit for `component` at `endpoint`
    /// and caches it until it expires.
    pub(crate) async fn buy(
        &self,
        component: &EvmPaymentComponent,
        endpoint: &Url,
        url: &Url,
    ) -> Result<(Zeroizing<String>, MockReceipt), MockClientError> {
        let (token, mut receipt) = self.buy_token(component, endpoint, url).await?;
        let exp = unix_now().saturating_add(token.expires_in);
        receipt.token_expires_at = Some(exp);
        let bearer = Zeroizing::new(token.access_token);
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                cache_key(url),
                CachedToken {
                    token: bearer.clone(),
                    exp,
                },
            );
        Ok((bearer, receipt))
    }

    /// Sends `request` once with `bearer`; a 401/402 evicts the token and
    /// is [`MockClientError::StillUnpaid`].
    pub(crate) async fn present(
        &self,
        request: &Request,
        bearer: &str,
        receipt: MockReceipt,
    ) -> Result<MockPaid, MockClientError> {
        let mut paid_req = request
            .try_clone()
            .ok_or(MockClientError::BodyNotCloneable)?;
        set_bearer(&mut paid_req, bearer)?;
        let response = match self.inner.execute(paid_req).await {
            Ok(r) => r,
            Err(source) => {
                return Err(MockClientError::RetryFailed {
                    source,
                    receipt: Box::new(receipt),
                });
            }
        };
        if matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::PAYMENT_REQUIRED
        ) {
            self.evict(&cache_key(request.url()));
            return Err(MockClientError::StillUnpaid {
                status: response.status().as_u16(),
                receipt: Box::new(receipt),
            });
        }
        tracing::info!(amount = %receipt.amount, token = %receipt.token, "x402_mock.paid");
        Ok(MockPaid {
            response,
            receipt: Some(receipt),
            reused_token: false,
        })
    }

    /// Signs a permit for `component`'s price and exchanges it for a token.
    async fn buy_token(
        &self,
        component: &EvmPaymentComponent,
        endpoint: &Url,
        url: &Url,
    ) -> Result<(AccessTokenResponse, MockReceipt), MockClientError> {
        let inner = &self.inner;
        let payer = inner.signer.address();
        // select_component only returns components whose amount converts.
        let price = component
            .required_base_units()
            .map_err(|_| MockClientError::NoAcceptableComponent { offered: 1 })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let nonce = inner
                .chain
                .nonces(component.token, payer)
                .await
                .map_err(MockClientError::Chain)?;
            let deadline = unix_now().saturating_add(inner.permit_validity.as_secs());
            let (permit, digest) = self
                .sign_permit(component, payer, price, nonce, deadline)
                .await?;
            let receipt = MockReceipt {
                url: url.to_string(),
                payer,
                spender: permit.spender,
                token: permit.token,
                chain_id: permit.chain_id,
                amount: price,
                nonce,
                deadline,
                digest,
                token_expires_at: None,
                settlement_id: None,
            };
            let body = MockPermitRequest {
                version: MOCK_PROTOCOL_VERSION.into(),
                permit,
            };
            let lost = |detail: String, receipt: &MockReceipt| MockClientError::TokenAnswerLost {
                detail,
                receipt: Box::new(receipt.clone()),
            };
            let mut exchange = inner.http.post(endpoint.clone()).json(&body);
            if let Some(t) = inner.timeout {
                exchange = exchange.timeout(t);
            }
            let resp = match exchange.send().await {
                Ok(r) => r,
                Err(e) => return Err(lost(e.without_url().to_string(), &receipt)),
            };
            let status = resp.status();
            let bytes = match read_bounded(resp).await {
                Ok(b) => b,
                Err(e) => return Err(lost(e.without_url().to_string(), &receipt)),
            };
            if status == StatusCode::OK {
                let token: AccessTokenResponse = serde_json::from_slice(&bytes)
                    .map_err(|e| lost(format!("token answer: {e}"), &receipt))?;
                if !token.token_type.eq_ignore_ascii_case("bearer") || token.access_token.is_empty()
                {
                    return Err(lost(
                        format!("token_type {:?} is not Bearer", token.token_type),
                        &receipt,
                    ));
                }
                let mut receipt = receipt;
                receipt.settlement_id = token
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get("settlement_id"))
                    .and_then(|v| v.as_i64());
                return Ok((token, receipt));
            }
            let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let reason = problem
                .get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or("unknown")
                .to_owned();
            if attempt < MAX_PERMITS {
                if reason == "permit_nonce_pending" {
                    // An earlier permit of ours is still settling.
                    tracing::info!(%nonce, "x402_mock.nonce_pending");
                    self.wait_nonce_past(component.token, payer, nonce).await;
                    continue;
                }
                if reason == "permit_replayed" {
                    match inner.chain.nonces(component.token, payer).await {
                        Ok(n) if n > nonce => {
                            // The nonce we read was used meanwhile (our earlier
                            // permit settled): this permit can never execute;
                            // sign the next one.
                            tracing::info!(%nonce, "x402_mock.nonce_moved");
                            continue;
                        }
                        Ok(_) => {
                            // The very same permit is queued: an earlier payment
                            // of ours signed in the same second (same nonce, same
                            // deadline) that has not settled yet. It is already
                            // paid for; wait for it, then sign the next nonce.
                            tracing::info!(%nonce, "x402_mock.same_permit_pending");
                            self.wait_nonce_past(component.token, payer, nonce).await;
                            continue;
                        }
                        Err(_) => {}
                    }
                }
            }
            return Err(MockClientError::PermitRefused {
                status: status.as_u16(),
                reason,
                detail: problem
                    .get("detail")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned),
            });
        }
    }

    /// Waits (bounded) until `nonces(payer)` moves past `nonce`.
    async fn wait_nonce_past(&self, token: EvmAddress, payer: EvmAddress, nonce: U256) {
        let deadline = tokio::time::Instant::now() + self.inner.nonce_wait;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(NONCE_POLL).await;
            match self.inner.chain.nonces(token, payer).await {
                Ok(n) if n > nonce => return,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "x402_mock.nonce_poll_failed"),
            }
        }
    }

    async fn sign_permit(
        &self,
        component: &EvmPaymentComponent,
        payer: EvmAddress,
        price: TokenAmount,
        nonce: U256,
        deadline: u64,
    ) -> Result<(MockPermit, Bytes32), MockClientError> {
        let message = Eip2612Permit {
            owner: payer,
            spender: component.metadata.wallet_address,
            value: price,
            nonce,
            deadline: EvmTimestamp::from_u64(deadline),
        };
        let digest = message.signing_hash(&component.domain());
        let signature = self
            .inner
            .signer
            .sign_digest(&digest)
            .await
            .map_err(MockClientError::Signer)?;
        let bytes = signature.as_bytes();
        if bytes.len() != 65 || recover_signer(&digest, bytes).ok() != Some(payer) {
            return Err(MockClientError::Signer(SignerError::Signing(
                "the signature does not recover to the signer's address".into(),
            )));
        }
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..64]);
        let v = if bytes[64] < 27 {
            bytes[64] + 27
        } else {
            bytes[64]
        };
        let permit = MockPermit {
            permit_type: "EIP2612".into(),
            owner: payer,
            spender: component.metadata.wallet_address,
            token: component.token,
            value: price.0,
            nonce,
            deadline: EvmTimestamp::from_u64(deadline).0,
            chain_id: component.chain_id,
            signature: MockPermitSignature {
                signature_type: "EIP2612".into(),
                v,
                r: Bytes32(r),
                s: Bytes32(s),
            },
            created_at: None,
        };
        Ok((permit, Bytes32(digest.0)))
    }
}

/// The token endpoint of an offer read from the 402 at `responded`: it
/// must be on the origin of the requested `url`.
pub(crate) fn token_endpoint(
    responded: &Url,
    url: &Url,
    endpoint: &str,
) -> Result<Url, MockClientError> {
    let endpoint = responded
        .join(endpoint)
        .map_err(|e| MockClientError::NotMockChallenge {
            detail: format!("access_token_endpoint: {e}"),
        })?;
    if endpoint.origin() != url.origin() {
        return Err(MockClientError::CrossOriginTokenEndpoint {
            endpoint: endpoint.to_string(),
        });
    }
    Ok(endpoint)
}

/// The cached token for `url`, if still valid.
pub(crate) fn cached_for(client: &MockClient, url: &Url) -> Option<Zeroizing<String>> {
    client.cached(&cache_key(url))
}

/// Caches `token` for `url` until `exp` (unix seconds), as if bought.
pub(crate) fn remember(client: &MockClient, url: &Url, token: Zeroizing<String>, exp: u64) {
    client
        .inner
        .cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(cache_key(url), CachedToken { token, exp });
}

/// Forgets the cached token for `url` if it is `token`.
pub(crate) fn evict_for(client: &MockClient, url: &Url, token: &str) {
    let key = cache_key(url);
    if client.cached(&key).is_some_and(|t| t.as_str() == token) {
        client.evict(&key);
    }
}

pub(crate) fn set_bearer(req: &mut Request, token: &str) -> Result<(), MockClientError> {
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            MockClientError::NotMockChallenge {
                detail: "access token is not a valid header value".into(),
            }
        })?;
    value.set_sensitive(true);
    req.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}
