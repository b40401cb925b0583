//! MPP, the `Payment` HTTP authentication scheme, as a rail of a
//! [`Paywall`](crate::paywall::Paywall): `lightning`/`charge` and
//! `evm`/`charge`.
//!
//! Enable it with [`PaywallBuilder::mpp`](crate::paywall::PaywallBuilder::mpp)
//! and an [`MppConfig`] (realm, HMAC secret of at least 32 bytes, the
//! methods, the replay store):
//!
//! - **Challenges.** An unpaid request gets, after L402's challenges, one
//!   `WWW-Authenticate: Payment …` per method priced on the route: a
//!   `lightning`/`charge` with a fresh invoice from the node (the same
//!   [`InvoiceIssuer`] port the L402 rail uses; one invoice per challenge,
//!   never shared with L402), and an `evm`/`charge` for the x402 asset and
//!   recipient (EIP-3009 `authorization`, the challenge bound into the nonce
//!   as `keccak256(id ‖ realm)`). Ids are HMAC-SHA256 of the parameters
//!   ([`pay402_core::mpp::binding`]); `expires` is now + the TTL (never
//!   after the invoice's expiry). The 402 has `Cache-Control: no-store` and
//!   exposes `WWW-Authenticate, Payment-Receipt` to browsers. A request's
//!   `Accept-Payment` orders the methods (q = 0 dropped, by q, server order
//!   on ties); a malformed one, or one leaving nothing, is ignored.
//! - **Credential field.** `Authorization` by default; with
//!   [`MppConfig::credential_header`] and
//!   [`CredentialHeader::PaymentAuthorization`] the challenges carry
//!   `header="Payment-Authorization"` (bound by the HMAC) and the
//!   credential is read from that field only.
//! - **Verification**, in the order of the protocol: decode → HMAC (under
//!   the current or the previous secret) → route pinning (realm, method,
//!   intent, amount, currency, network or chain, token and recipient) →
//!   `expires` → payload → method verification (`sha256(preimage) ==
//!   paymentHash`; or the EIP-3009 checks shared with x402 and the
//!   settlement through the facilitator) → atomic consume in the
//!   [`store::MppStore`] → the handler → `Payment-Receipt`.
//! - **Failure policy** (never invite a second payment): a malformed,
//!   foreign, expired, tampered or wrong proof gets a 402 with fresh
//!   challenges and the MPP problem type (`malformed-credential`,
//!   `invalid-challenge`, `payment-expired`, `verification-failed`,
//!   `invalid-payload`, `method-unsupported`) with its `challengeId`; a
//!   replayed valid credential gets 403 `verification-failed` and **no**
//!   challenge; a payment that may have landed (settlement outcome unknown)
//!   gets 500 `internal-payment-error` and **no** challenge; two `Payment`
//!   credentials get 400 `bad-request`; a store that is down gets 503 and no
//!   challenge (the credential stays good until it expires).
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use pay402_core::lightning::InvoiceIssuer;
//! use pay402_server::mpp::MppConfig;
//! use pay402_server::paywall::{Paid, Paywall, PaywallPrice};
//!
//! fn app(node: Arc<dyn InvoiceIssuer>, secret: &[u8; 32]) -> Router {
//!     let mpp = MppConfig::new("api.example.com", secret).unwrap().lightning(node);
//!     let paywall = Paywall::builder().mpp(mpp).build().unwrap();
//!     let hello = get(|paid: Paid| async move { format!("paid {} ({})", paid.amount, paid.receipt) });
//!     Router::new().route("/hello", hello.route_layer(paywall.price(PaywallPrice::sats(100))))
//! }
//! ```

use std::sync::Arc;
use std::time::Duration;

use pay402_core::lightning::InvoiceIssuer;
use pay402_core::mpp::{ChallengeKey, ChallengeKeys};
use pay402_core::problem::Reason;

use crate::cache::PaidCaching;

pub(crate) mod paywall_rail;
pub mod store;

pub(crate) use paywall_rail::MppRail;

/// The default challenge lifetime: 5 minutes (as mppx and pympp).
///
/// ```
/// assert_eq!(pay402_server::mpp::DEFAULT_TTL.as_secs(), 300);
/// ```
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Why an [`MppConfig`] cannot be made.
///
/// ```
/// use pay402_core::problem::Reason;
/// let e = pay402_server::mpp::MppConfig::new("api.example.com", b"short").unwrap_err();
/// assert_eq!(e.reason(), "mpp_secret_too_short");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MppConfigError {
    /// The HMAC secret is shorter than 32 bytes.
    #[error("the MPP secret must be at least 32 bytes")]
    SecretTooShort,
    /// The realm is empty, contains `|` (the HMAC delimiter), a quote, a
    /// backslash or a control character, or is longer than 256 bytes.
    #[error("invalid MPP realm: {0}")]
    InvalidRealm(&'static str),
}

impl Reason for MppConfigError {
    fn reason(&self) -> &'static str {
        match self {
            MppConfigError::SecretTooShort => "mpp_secret_too_short",
            MppConfigError::InvalidRealm(_) => "mpp_invalid_realm",
        }
    }
    fn status(&self) -> u16 {
        500
    }
}

/// The MPP rail of a paywall: realm, secrets, methods, replay store.
///
/// ```
/// # use std::sync::Arc;
/// # use pay402_backends::simnet::SimNet;
/// # use pay402_core::{lightning::Network, money::Msat};
/// use std::time::Duration;
/// use pay402_server::mpp::{MppConfig, store::MemoryMppStore};
/// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
/// let mpp = MppConfig::new("api.example.com", &[1; 32]).unwrap()
///     .previous_secret(&[2; 32]).unwrap()   // rotation: the old secret still verifies
///     .ttl(Duration::from_secs(120))
///     .store(Arc::new(MemoryMppStore::new()))
///     .lightning(node);
/// assert_eq!(mpp.realm(), "api.example.com");
/// ```
#[derive(Clone)]
pub struct MppConfig {
    pub(crate) realm: String,
    pub(crate) keys: Arc<ChallengeKeys>,
    pub(crate) ttl: Duration,
    pub(crate) lightning: Option<Arc<dyn InvoiceIssuer>>,
    #[cfg(feature = "x402")]
    pub(crate) evm: Option<EvmMethod>,
    pub(crate) store: Arc<dyn store::MppStore>,
    pub(crate) paid_caching: PaidCaching,
    pub(crate) memo: String,
    pub(crate) challenge_limit: Option<Arc<crate::limit::ClientLimiter>>,
    pub(crate) credential_header: CredentialHeader,
    pub(crate) issued_capacity: usize,
}

/// The request field a Payment credential is read from (mpp.md §3.3).
///
/// ```
/// use pay402_server::mpp::CredentialHeader;
/// assert_eq!(CredentialHeader::default(), CredentialHeader::Authorization);
/// assert_eq!(CredentialHeader::PaymentAuthorization.name(), "Payment-Authorization");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialHeader {
    /// `Authorization` (the default; not advertised, not bound).
    #[default]
    Authorization,
    /// `Payment-Authorization`, which leaves `Authorization` to the
    /// application (e.g. a Bearer token): challenges carry
    /// `header="Payment-Authorization"`, bound as the HMAC's eighth slot.
    PaymentAuthorization,
}

impl CredentialHeader {
    /// The field name.
    ///
    /// ```
    /// assert_eq!(pay402_server::mpp::CredentialHeader::Authorization.name(), "Authorization");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            CredentialHeader::Authorization => "Authorization",
            CredentialHeader::PaymentAuthorization => "Payment-Authorization",
        }
    }
}

/// The `evm`/`charge` method's settlement and terms.
#[cfg(feature = "x402")]
#[derive(Clone)]
pub(crate) struct EvmMethod {
    pub(crate) facilitator: Arc<dyn pay402_core::x402::facilitator::Facilitator>,
    pub(crate) pay_to: pay402_core::x402::evm::EvmAddress,
    pub(crate) asset: crate::paywall::X402Asset,
}

impl std::fmt::Debug for MppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("MppConfig");
        d.field("realm", &self.realm)
            .field("ttl", &self.ttl)
            .field("lightning", &self.lightning.is_some());
        #[cfg(feature = "x402")]
        d.field("evm", &self.evm.is_some());
        d.finish_non_exhaustive()
    }
}

fn check_realm(realm: &str) -> Result<(), MppConfigError> {
    if realm.is_empty() {
        return Err(MppConfigError::InvalidRealm("empty"));
    }
    if realm.len() > 256 {
        return Err(MppConfigError::InvalidRealm("longer than 256 bytes"));
    }
    if realm.contains('|') {
        return Err(MppConfigError::InvalidRealm(
            "contains '|', the HMAC input delimiter",
        ));
    }
    if realm
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'"' || b == b'\\' || b >= 0x80)
    {
        return Err(MppConfigError::InvalidRealm(
            "contains a quote, backslash, control or non-ASCII character",
        ));
    }
    Ok(())
}

impl MppConfig {
    /// MPP for `realm` (the protection space, usually the host name), with
    /// challenge ids bound under `secret` (at least 32 random bytes, e.g.
    /// `openssl rand -base64 32`; keep it across restarts and instances),
    /// no method yet, a 5-minute TTL, an in-memory replay store and
    /// `Cache-Control: private, no-store` on paid responses.
    ///
    /// # Errors
    ///
    /// [`MppConfigError`] for a short secret or an unusable realm.
    ///
    /// ```
    /// use pay402_server::mpp::MppConfig;
    /// assert!(MppConfig::new("api.example.com", &[7; 32]).is_ok());
    /// assert!(MppConfig::new("a|b", &[7; 32]).is_err());
    /// ```
    pub fn new(realm: impl Into<String>, secret: &[u8]) -> Result<MppConfig, MppConfigError> {
        let realm = realm.into();
        check_realm(&realm)?;
        let key = ChallengeKey::new(secret).map_err(|_| MppConfigError::SecretTooShort)?;
        Ok(MppConfig {
            realm,
            keys: Arc::new(ChallengeKeys::new(key)),
            ttl: DEFAULT_TTL,
            lightning: None,
            #[cfg(feature = "x402")]
            evm: None,
            store: Arc::new(store::MemoryMppStore::new()),
            paid_caching: PaidCaching::default(),
            memo: "pay402".to_owned(),
            challenge_limit: None,
            credential_header: CredentialHeader::Authorization,
            issued_capacity: pay402_core::mpp::methods::issued::DEFAULT_CAPACITY,
        })
    }

    /// Also verifies ids bound under `secret` (the one being rotated out):
    /// keep it until the challenges it signed have expired (one TTL).
    ///
    /// # Errors
    ///
    /// [`MppConfigError::SecretTooShort`].
    ///
    /// ```
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap().previous_secret(&[2; 32]);
    /// assert!(c.is_ok());
    /// ```
    pub fn previous_secret(mut self, secret: &[u8]) -> Result<MppConfig, MppConfigError> {
        let key = ChallengeKey::new(secret).map_err(|_| MppConfigError::SecretTooShort)?;
        let keys = ChallengeKeys::clone(&self.keys).with_previous(key);
        self.keys = Arc::new(keys);
        Ok(self)
    }

    /// Enables `lightning`/`charge`: one fresh invoice from `node` per
    /// challenge (the route's price in whole satoshis, rounded up).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap().lightning(node);
    /// # let _ = c;
    /// ```
    pub fn lightning(mut self, node: Arc<dyn InvoiceIssuer>) -> MppConfig {
        self.lightning = Some(node);
        self
    }

    /// Enables `evm`/`charge` with the EIP-3009 `authorization` credential:
    /// `asset` paid to `pay_to`, submitted through `facilitator` (the x402
    /// facilitator port) before the handler runs.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # fn f(facilitator: Arc<dyn pay402_core::x402::facilitator::Facilitator>) {
    /// use pay402_server::paywall::X402Asset;
    /// let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap()
    ///     .evm(facilitator, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(), usdc);
    /// # }
    /// ```
    #[cfg(feature = "x402")]
    pub fn evm(
        mut self,
        facilitator: Arc<dyn pay402_core::x402::facilitator::Facilitator>,
        pay_to: pay402_core::x402::evm::EvmAddress,
        asset: crate::paywall::X402Asset,
    ) -> MppConfig {
        self.evm = Some(EvmMethod {
            facilitator,
            pay_to,
            asset,
        });
        self
    }

    /// The replay store (default: in memory; use
    /// [`store::open`] on a [`Database`](crate::database::Database) to
    /// share it between instances and keep it across restarts).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap()
    ///     .store(Arc::new(pay402_server::mpp::store::MemoryMppStore::new()));
    /// # let _ = c;
    /// ```
    pub fn store(mut self, store: Arc<dyn store::MppStore>) -> MppConfig {
        self.store = store;
        self
    }

    /// How long a challenge is valid (default [`DEFAULT_TTL`]; at least one
    /// second).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap().ttl(Duration::from_secs(60));
    /// # let _ = c;
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> MppConfig {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The memo of the Lightning invoices (default `pay402`).
    ///
    /// ```
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap().memo("weather report");
    /// # let _ = c;
    /// ```
    pub fn memo(mut self, memo: impl Into<String>) -> MppConfig {
        self.memo = memo.into();
        self
    }

    /// How paid responses may be cached (default: `private, no-store`;
    /// `HandlerDecides` still adds `private`, which a response carrying a
    /// receipt must have).
    ///
    /// ```
    /// use pay402_server::cache::PaidCaching;
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap().paid_caching(PaidCaching::HandlerDecides);
    /// # let _ = c;
    /// ```
    pub fn paid_caching(mut self, policy: PaidCaching) -> MppConfig {
        self.paid_caching = policy;
        self
    }

    /// Limits how many Payment challenges each client (by IP, from axum's
    /// `ConnectInfo`) gets: each one costs the node a fresh invoice. A
    /// client over the limit gets no Payment challenge (the other rails are
    /// still offered; alone, MPP answers 429 with `Retry-After`). Default:
    /// no limit.
    ///
    /// ```
    /// use pay402_server::limit::RateLimit;
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap()
    ///     .challenge_rate_limit(RateLimit::per_minute(60));
    /// # let _ = c;
    /// ```
    pub fn challenge_rate_limit(mut self, limit: crate::limit::RateLimit) -> MppConfig {
        self.challenge_limit = Some(Arc::new(crate::limit::ClientLimiter::new(limit)));
        self
    }

    /// The request field the credential is read from (default
    /// [`CredentialHeader::Authorization`]). With
    /// [`CredentialHeader::PaymentAuthorization`] every challenge carries
    /// `header="Payment-Authorization"` (bound by its HMAC), the credential
    /// is read from `Payment-Authorization` only, and a credential sent in
    /// `Authorization` is refused (`invalid-challenge` with fresh
    /// challenges), as is one whose echoed challenge names another field
    /// than the one it came in.
    ///
    /// ```
    /// use pay402_server::mpp::{CredentialHeader, MppConfig};
    /// let c = MppConfig::new("r.example", &[1; 32]).unwrap()
    ///     .credential_header(CredentialHeader::PaymentAuthorization);
    /// # let _ = c;
    /// ```
    pub fn credential_header(mut self, field: CredentialHeader) -> MppConfig {
        self.credential_header = field;
        self
    }

    /// How many issued `lightning`/`charge` challenges this instance
    /// remembers (default
    /// [`DEFAULT_CAPACITY`](pay402_core::mpp::methods::issued::DEFAULT_CAPACITY),
    /// about 1.2 KB each; 0 turns the memory off). A credential echoing one
    /// of them byte for byte is verified without recomputing its HMAC and
    /// decoding its `request` again
    /// ([`IssuedCharges`](pay402_core::mpp::methods::issued::IssuedCharges));
    /// any other credential, for example one issued by another instance,
    /// takes the HMAC path, with the same answer.
    ///
    /// ```
    /// let c = pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap().issued_memory(0);
    /// # let _ = c;
    /// ```
    pub fn issued_memory(mut self, capacity: usize) -> MppConfig {
        self.issued_capacity = capacity;
        self
    }

    /// The realm.
    ///
    /// ```
    /// assert_eq!(pay402_server::mpp::MppConfig::new("r.example", &[1; 32]).unwrap().realm(), "r.example");
    /// ```
    pub fn realm(&self) -> &str {
        &self.realm
    }
}
