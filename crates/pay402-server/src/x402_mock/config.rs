//! What an x402_mock paywall accepts, how long its tokens last and how its
//! settlement worker retries.

use crate::cache::PaidCaching;
use crate::limit::{ClientLimiter, RateLimit};
use std::sync::Arc;
use std::time::Duration;

use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::mock::{EvmComponentMetadata, EvmPaymentComponent, MIN_KEY_LEN};
use zeroize::Zeroizing;

/// A token the paywall accepts: its contract, chain and EIP-712 domain.
///
/// ```
/// use pay402_server::x402_mock::AcceptedToken;
/// let usdc = AcceptedToken::usdc("0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap(), 84532, "base-sepolia");
/// assert_eq!((usdc.name.as_str(), usdc.version.as_str(), usdc.decimals), ("USD Coin", "2", 6));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedToken {
    /// The token contract.
    pub address: EvmAddress,
    /// The chain id (must be the settler's).
    pub chain_id: u64,
    /// EIP-712 domain `name` (`name()` of the contract for USDC: "USD Coin").
    pub name: String,
    /// EIP-712 domain `version` (USDC: "2").
    pub version: String,
    /// Symbol shown to clients.
    pub symbol: String,
    /// Currency label shown to clients.
    pub currency: String,
    /// Decimals.
    pub decimals: u8,
    /// A network label (e.g. `base-sepolia`).
    pub network: String,
}

impl AcceptedToken {
    /// Circle's USDC (FiatToken v2: domain "USD Coin", version "2", 6 decimals).
    ///
    /// ```
    /// use pay402_server::x402_mock::AcceptedToken;
    /// let t = AcceptedToken::usdc(Default::default(), 31337, "anvil");
    /// assert_eq!(t.symbol, "USDC");
    /// ```
    pub fn usdc(address: EvmAddress, chain_id: u64, network: &str) -> AcceptedToken {
        AcceptedToken {
            address,
            chain_id,
            name: "USD Coin".into(),
            version: "2".into(),
            symbol: "USDC".into(),
            currency: "USDC".into(),
            decimals: 6,
            network: network.into(),
        }
    }

    /// The seed's payment component for `amount` of this token, paid to
    /// `wallet` (the permit spender). Fails when the amount has no exact
    /// float form in human units.
    ///
    /// ```
    /// use pay402_server::x402_mock::AcceptedToken;
    /// use pay402_core::x402::TokenAmount;
    /// let t = AcceptedToken::usdc(Default::default(), 31337, "anvil");
    /// let c = t.component(TokenAmount::from_u64(10_000), Default::default()).unwrap();
    /// assert_eq!(c.amount, 0.01);
    /// assert_eq!(c.required_base_units().unwrap(), TokenAmount::from_u64(10_000));
    /// ```
    pub fn component(
        &self,
        amount: TokenAmount,
        wallet: EvmAddress,
    ) -> Result<EvmPaymentComponent, MockConfigError> {
        let human = to_human(amount, self.decimals);
        let float: f64 = human
            .parse()
            .map_err(|_| MockConfigError::InexactAmount(amount))?;
        let component = EvmPaymentComponent {
            payment_type: "evm".into(),
            amount: float,
            currency: self.currency.clone(),
            token: self.address,
            chain_id: self.chain_id,
            metadata: EvmComponentMetadata {
                symbol: self.symbol.clone(),
                name: self.name.clone(),
                decimals: self.decimals,
                network: self.network.clone(),
                version: self.version.clone(),
                wallet_address: wallet,
            },
            created_at: None,
        };
        // The float on the wire must read back as exactly this amount.
        match component.required_base_units() {
            Ok(back) if back == amount => Ok(component),
            _ => Err(MockConfigError::InexactAmount(amount)),
        }
    }
}

/// `amount / 10^decimals` as a plain decimal string.
fn to_human(amount: TokenAmount, decimals: u8) -> String {
    let digits = amount.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return digits;
    }
    let padded = if digits.len() <= d {
        format!("{}{digits}", "0".repeat(d + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

/// One way to pay for a resource: an amount of an accepted token.
///
/// ```
/// use pay402_server::x402_mock::MockPrice;
/// use pay402_core::x402::TokenAmount;
/// let p = MockPrice::new(Default::default(), TokenAmount::from_u64(10_000)); // 0.01 USDC
/// assert_eq!(p.amount, TokenAmount::from_u64(10_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockPrice {
    /// The token contract (one of the accepted tokens).
    pub token: EvmAddress,
    /// The price in the token's base units.
    pub amount: TokenAmount,
}

impl MockPrice {
    /// A price.
    ///
    /// ```
    /// let _ = pay402_server::x402_mock::MockPrice::new(Default::default(), pay402_core::x402::TokenAmount::from_u64(1));
    /// ```
    pub fn new(token: EvmAddress, amount: TokenAmount) -> MockPrice {
        MockPrice { token, amount }
    }
}

/// How the settlement worker retries transient failures.
///
/// ```
/// use std::time::Duration;
/// use pay402_server::x402_mock::RetryPolicy;
/// let p = RetryPolicy::default();
/// assert_eq!(p.delay(1), Duration::from_secs(2));
/// assert_eq!(p.delay(2), Duration::from_secs(4));
/// assert_eq!(p.delay(30), p.max_delay);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// After this many failed attempts the settlement fails for good.
    pub max_attempts: u32,
    /// Delay after the first failure; doubled after each further one.
    pub base_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// How long one attempt waits for a receipt before trying again later.
    pub receipt_timeout: Duration,
    /// How often an idle worker looks for due jobs.
    pub idle_poll: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
            receipt_timeout: Duration::from_secs(30),
            idle_poll: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempts`-th failure (1-based): exponential, capped.
    ///
    /// ```
    /// let p = pay402_server::x402_mock::RetryPolicy::default();
    /// assert!(p.delay(3) > p.delay(2));
    /// ```
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay)
    }

    /// How long a worker leases a job: long enough for the waits of one attempt.
    pub(crate) fn lease(&self) -> Duration {
        self.receipt_timeout
            .saturating_mul(4)
            .saturating_add(Duration::from_secs(60))
    }
}

/// The paywall's settings.
///
/// ```
/// use std::time::Duration;
/// use pay402_server::x402_mock::{AcceptedToken, MockConfig};
/// let config = MockConfig::new(zeroize::Zeroizing::new(vec![7u8; 32]))
///     .accept(AcceptedToken::usdc("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse().unwrap(), 31337, "anvil"))
///     .token_ttl(Duration::from_secs(600));
/// assert_eq!(config.token_endpoint, "/x402-mock/token");
/// ```
#[derive(Clone)]
pub struct MockConfig {
    pub(crate) key: Zeroizing<Vec<u8>>,
    /// The tokens accepted.
    pub tokens: Vec<AcceptedToken>,
    /// Path of the token endpoint (default `/x402-mock/token`).
    pub token_endpoint: String,
    /// Lifetime of an access token (default 3600 s, the seed's).
    pub token_ttl: Duration,
    /// A permit must stay valid at least this long after it is received, so
    /// that the queue can settle it (default 120 s).
    pub min_permit_validity: Duration,
    /// Largest permit request body (default 16 KiB).
    pub max_body: usize,
    /// Who receives the funds; `None` means the spender (the seed's choice).
    pub pay_to: Option<EvmAddress>,
    /// Settlement retries.
    pub retry: RetryPolicy,
    /// How long a settlement worker leases a job; `None` (the default)
    /// means long enough for the waits of one attempt (four receipt
    /// timeouts plus 60 s). See [`MockConfig::settlement_lease`].
    pub settlement_lease: Option<Duration>,
    /// Whether paid responses may be cached (default: `Cache-Control:
    /// private, no-store`; see [`crate::cache`]).
    pub paid_caching: PaidCaching,
    /// Rate limit on permits checked by the token endpoint, per client
    /// address (see [`crate::limit::client_ip`]): each costs chain reads
    /// (nonce, balance) and a queued settlement, so past it the endpoint
    /// answers 429 `rate_limited` after the local checks (signature,
    /// spender, deadline, amount) and before any chain call. `None` (the
    /// default) = no limit.
    pub token_limit: Option<Arc<ClientLimiter>>,
}

impl std::fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockConfig")
            .field("key", &"<redacted>")
            .field("tokens", &self.tokens)
            .field("token_endpoint", &self.token_endpoint)
            .field("token_ttl", &self.token_ttl)
            .field("min_permit_validity", &self.min_permit_validity)
            .field("max_body", &self.max_body)
            .field("pay_to", &self.pay_to)
            .field("retry", &self.retry)
            .field("settlement_lease", &self.settlement_lease)
            .field("paid_caching", &self.paid_caching)
            .field("token_limit", &self.token_limit)
            .finish()
    }
}

impl MockConfig {
    /// Settings with the HMAC key of the access tokens (at least 32 bytes,
    /// wiped on drop) and the defaults.
    ///
    /// ```
    /// let c = pay402_server::x402_mock::MockConfig::new(zeroize::Zeroizing::new(vec![1; 32]));
    /// assert!(format!("{c:?}").contains("<redacted>"));
    /// ```
    pub fn new(key: Zeroizing<Vec<u8>>) -> MockConfig {
        MockConfig {
            key,
            tokens: Vec::new(),
            token_endpoint: "/x402-mock/token".into(),
            token_ttl: Duration::from_secs(3600),
            min_permit_validity: Duration::from_secs(120),
            max_body: 16 * 1024,
            pay_to: None,
            retry: RetryPolicy::default(),
            settlement_lease: None,
            paid_caching: PaidCaching::PrivateNoStore,
            token_limit: None,
        }
    }

    /// Sets the caching policy of paid responses.
    ///
    /// ```
    /// use pay402_server::cache::PaidCaching;
    /// let cfg = pay402_server::x402_mock::MockConfig::new(zeroize::Zeroizing::new(vec![7; 32]))
    ///     .paid_caching(PaidCaching::HandlerDecides);
    /// assert_eq!(cfg.paid_caching, PaidCaching::HandlerDecides);
    /// ```
    pub fn paid_caching(mut self, policy: PaidCaching) -> MockConfig {
        self.paid_caching = policy;
        self
    }

    /// Limits the permits the token endpoint checks per client address (see
    /// [`MockConfig::token_limit`]). Serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`; behind a
    /// reverse proxy every client shares the proxy's address, so set the
    /// limit there instead.
    ///
    /// ```
    /// use pay402_server::limit::RateLimit;
    /// use pay402_server::x402_mock::MockConfig;
    /// let cfg = MockConfig::new(zeroize::Zeroizing::new(vec![7; 32]))
    ///     .token_rate_limit(RateLimit::per_minute(30));
    /// assert_eq!(cfg.token_limit.unwrap().limit().burst(), 30);
    /// ```
    pub fn token_rate_limit(mut self, limit: RateLimit) -> MockConfig {
        self.token_limit = Some(Arc::new(ClientLimiter::new(limit)));
        self
    }

    /// Accepts a token.
    ///
    /// ```
    /// use pay402_server::x402_mock::{AcceptedToken, MockConfig};
    /// let c = MockConfig::new(zeroize::Zeroizing::new(vec![1; 32])).accept(AcceptedToken::usdc(Default::default(), 1, "mainnet"));
    /// assert_eq!(c.tokens.len(), 1);
    /// ```
    pub fn accept(mut self, token: AcceptedToken) -> MockConfig {
        self.tokens.push(token);
        self
    }

    /// Sets the token endpoint path.
    ///
    /// ```
    /// let c = pay402_server::x402_mock::MockConfig::new(zeroize::Zeroizing::new(vec![1; 32])).token_endpoint("/token");
    /// assert_eq!(c.token_endpoint, "/token");
    /// ```
    pub fn token_endpoint(mut self, path: impl Into<String>) -> MockConfig {
        self.token_endpoint = path.into();
        self
    }

    /// Sets the access token lifetime.
    ///
    /// ```
    /// let c = pay402_server::x402_mock::MockConfig::new(zeroize::Zeroizing::new(vec![1; 32])).token_ttl(std::time::Duration::from_secs(60));
    /// assert_eq!(c.token_ttl.as_secs(), 60);
    /// ```
    pub fn token_ttl(mut self, ttl: Duration) -> MockConfig {
        self.token_ttl = ttl;
        self
    }

    /// Sets the shortest remaining permit validity accepted.
    ///
    /// ```
    /// let c = pay402_server::x402_mock::MockConfig::new(zeroize::Zeroizing::new(vec![1; 32])).min_permit_validity(std::time::Duration::from_secs(30));
    /// assert_eq!(c.min_permit_validity.as_secs(), 30);
    /// ```
    pub fn min_permit_validity(mut self, d: Duration) -> MockConfig {
        self.min_permit_validity = d;
        self
    }

    /// Sends the funds to `pay_to` instead of the spender.
    ///
    /// ```
    /// let c = pay402_server::x402_mock::MockConfig::new(zeroize::Zeroizing::new(vec![1; 32])).pay_to(Default::default());
    /// assert!(c.pay_to.is_some());
    /// ```
    pub fn pay_to(mut self, to: EvmAddress) -> MockConfig {
        self.pay_to = Some(to);
        self
    }

    /// Sets the retry policy of the settlement worker.
    ///
    /// ```
    /// use pay402_server::x402_mock::{MockConfig, RetryPolicy};
    /// let c = MockConfig::new(zeroize::Zeroizing::new(vec![1; 32])).retry(RetryPolicy { max_attempts: 3, ..RetryPolicy::default() });
    /// assert_eq!(c.retry.max_attempts, 3);
    /// ```
    pub fn retry(mut self, retry: RetryPolicy) -> MockConfig {
        self.retry = retry;
        self
    }

    /// Sets how long a settlement worker leases a job (whole seconds, at
    /// least one). When the lease runs out before the worker saves its next
    /// step, another worker (of this instance or of another one sharing
    /// the store) takes the job over, and every later write of the first
    /// worker is refused (`settlement_lease_lost`): it neither records nor
    /// broadcasts anything new for that job, and never fails or revokes
    /// it. A short lease hands the jobs of a stalled instance over sooner,
    /// at the price of takeovers while a slow chain is still mining.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = pay402_server::x402_mock::MockConfig::new(zeroize::Zeroizing::new(vec![1; 32]))
    ///     .settlement_lease(Duration::from_secs(30));
    /// assert_eq!(c.settlement_lease, Some(Duration::from_secs(30)));
    /// ```
    pub fn settlement_lease(mut self, lease: Duration) -> MockConfig {
        self.settlement_lease = Some(lease);
        self
    }
}

/// The paywall cannot be built as configured.
///
/// ```
/// use pay402_server::x402_mock::MockConfigError;
/// assert_eq!(MockConfigError::KeyTooShort.to_string(), "access token key is shorter than 32 bytes");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MockConfigError {
    /// The HMAC key is shorter than 32 bytes.
    #[error("access token key is shorter than {MIN_KEY_LEN} bytes")]
    KeyTooShort,
    /// An accepted token is on another chain than the settler's.
    #[error("token {token} is on chain {token_chain}, the settler on chain {settler_chain}")]
    ChainMismatch {
        /// The token.
        token: EvmAddress,
        /// Its configured chain.
        token_chain: u64,
        /// The settler's chain.
        settler_chain: u64,
    },
    /// A price names a token that is not accepted.
    #[error("price in token {0}, which is not accepted")]
    UnknownToken(EvmAddress),
    /// A route has no price, or a zero price.
    #[error("a protected resource needs at least one non-zero price")]
    NoPrice,
    /// An amount has no exact float form in human units (the seed's wire
    /// format carries floats).
    #[error("amount {0} has no exact float form in human units")]
    InexactAmount(TokenAmount),
    /// The token endpoint path does not start with `/`.
    #[error("token endpoint path must start with '/'")]
    BadEndpoint,
}
