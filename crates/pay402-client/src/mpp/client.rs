//! [`MppClient`]: what the payer pays MPP charges with, and the rules it
//! applies before paying.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pay402_core::lightning::{LightningPayer, Network};
use pay402_core::mpp::{AcceptPayment, Challenge, Receipt};
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
#[cfg(feature = "x402")]
use pay402_core::rates::TokenUnit;
use pay402_core::time::UnixTime;
#[cfg(feature = "x402")]
use pay402_core::x402::TokenAmount;
#[cfg(feature = "x402")]
use pay402_core::x402::evm::EvmAddress;

use super::lightning;
use crate::client::{L402Client, L402ClientBuilder};
use crate::timeouts::TotalTimeout as _;

/// A token the payer signs MPP `evm`/`charge` authorizations in: its chain,
/// contract and decimals, its EIP-712 domain (`name`, `version`: MPP
/// challenges do not carry them), and the most one charge may cost.
///
/// ```
/// use pay402_client::mpp::MppToken;
/// use pay402_core::x402::TokenAmount;
/// let t = MppToken::new(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap(), 6, "USD Coin", "2")
///     .max(TokenAmount::from_u64(50_000));
/// assert_eq!(t.unit().network(), "eip155:31337");
/// ```
#[cfg(feature = "x402")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MppToken {
    chain_id: u64,
    currency: EvmAddress,
    decimals: u8,
    name: String,
    version: String,
    max: TokenAmount,
}

#[cfg(feature = "x402")]
impl MppToken {
    /// A token on chain `chain_id`, capped at 1 whole token (10^decimals
    /// base units) per charge.
    ///
    /// See [`MppToken`].
    ///
    /// ```
    /// let t = pay402_client::mpp::MppToken::new(1, Default::default(), 6, "USD Coin", "2");
    /// assert_eq!(t.max_amount().to_string(), "1000000");
    /// ```
    pub fn new(
        chain_id: u64,
        currency: EvmAddress,
        decimals: u8,
        name: &str,
        version: &str,
    ) -> MppToken {
        let one = alloy_primitives::U256::from(10u64).pow(alloy_primitives::U256::from(decimals));
        MppToken {
            chain_id,
            currency,
            decimals,
            name: name.to_owned(),
            version: version.to_owned(),
            max: TokenAmount(one),
        }
    }

    /// The most one charge may cost, in base units.
    ///
    /// ```
    /// use pay402_core::x402::TokenAmount;
    /// let t = pay402_client::mpp::MppToken::new(1, Default::default(), 6, "n", "1").max(TokenAmount::from_u64(5));
    /// assert_eq!(t.max_amount(), TokenAmount::from_u64(5));
    /// ```
    pub fn max(mut self, max: TokenAmount) -> MppToken {
        self.max = max;
        self
    }

    /// The cap.
    ///
    /// ```
    /// let t = pay402_client::mpp::MppToken::new(1, Default::default(), 0, "n", "1");
    /// assert_eq!(t.max_amount().to_string(), "1");
    /// ```
    pub fn max_amount(&self) -> TokenAmount {
        self.max
    }

    /// The token as a unit of account (`eip155:<chain>`, contract, decimals).
    ///
    /// ```
    /// let t = pay402_client::mpp::MppToken::new(8453, Default::default(), 6, "n", "1");
    /// assert_eq!(t.unit().decimals(), 6);
    /// ```
    pub fn unit(&self) -> TokenUnit {
        TokenUnit::new(
            format!("eip155:{}", self.chain_id),
            self.currency.to_string(),
            self.decimals,
        )
    }

    pub(crate) fn terms(&self, recipient: EvmAddress) -> super::evm::EvmTerms {
        super::evm::EvmTerms::new(
            self.chain_id,
            self.currency,
            recipient,
            &self.name,
            &self.version,
        )
    }
}

/// Configures an [`MppClient`]; see [`MppClient::builder`].
///
/// ```
/// let b = pay402_client::mpp::MppClient::builder().prefer("lightning", "charge", 1000);
/// let p = pay402_client::Payer::builder().mpp(b);
/// # let _ = p;
/// ```
#[must_use]
pub struct MppClientBuilder {
    lightning: Option<L402ClientBuilder>,
    #[cfg(feature = "x402")]
    evm: Option<(Arc<dyn crate::x402::PaymentSigner>, Vec<MppToken>)>,
    prefs: Vec<(String, String, u16)>,
}

impl fmt::Debug for MppClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MppClientBuilder")
            .field("lightning", &self.lightning.is_some())
            .field("prefs", &self.prefs)
            .finish_non_exhaustive()
    }
}

impl MppClientBuilder {
    /// Pays `lightning`/`charge` with `node` on `network` (an L402 client's
    /// defaults: at most 1000 sat per invoice, 10 sat of fees).
    ///
    /// ```
    /// # fn f(node: std::sync::Arc<dyn pay402_core::lightning::LightningPayer>) {
    /// let b = pay402_client::mpp::MppClient::builder().lightning(node, pay402_core::lightning::Network::Regtest);
    /// # let _ = b; }
    /// ```
    pub fn lightning(self, node: Arc<dyn LightningPayer>, network: Network) -> Self {
        self.lightning_client(L402Client::builder(node).network(network))
    }

    /// Pays `lightning`/`charge` through a configured Lightning client
    /// (its network, price cap per invoice, fee cap and payment timeout).
    ///
    /// ```
    /// # fn f(node: std::sync::Arc<dyn pay402_core::lightning::LightningPayer>) {
    /// use pay402_client::L402Client;
    /// use pay402_core::money::Msat;
    /// let b = pay402_client::mpp::MppClient::builder()
    ///     .lightning_client(L402Client::builder(node).network(pay402_core::lightning::Network::Regtest).max_price(Msat(500_000)));
    /// # let _ = b; }
    /// ```
    pub fn lightning_client(mut self, builder: L402ClientBuilder) -> Self {
        self.lightning = Some(builder);
        self
    }

    /// Signs `evm`/`charge` EIP-3009 authorizations with `signer`, in
    /// `token` (call again for another token; one signer).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_client::mpp::{MppClient, MppToken};
    /// use pay402_client::x402::LocalSigner;
    /// let b = MppClient::builder().evm(Arc::new(LocalSigner::random()), MppToken::new(1, Default::default(), 6, "USD Coin", "2"));
    /// # let _ = b;
    /// ```
    #[cfg(feature = "x402")]
    pub fn evm(mut self, signer: Arc<dyn crate::x402::PaymentSigner>, token: MppToken) -> Self {
        match &mut self.evm {
            Some((_, tokens)) => tokens.push(token),
            None => self.evm = Some((signer, vec![token])),
        }
        self
    }

    /// A preference advertised in `Accept-Payment`: `method/intent` (either
    /// may be `*`) with weight `q` in thousandths (`0` refuses it, `1000` is
    /// `q=1`). Without any, the configured methods are advertised with
    /// `q=1`, Lightning first.
    ///
    /// ```
    /// let b = pay402_client::mpp::MppClient::builder().prefer("lightning", "charge", 1000).prefer("evm", "charge", 500);
    /// # let _ = b;
    /// ```
    pub fn prefer(mut self, method: &str, intent: &str, q: u16) -> Self {
        self.prefs
            .push((method.to_owned(), intent.to_owned(), q.min(1000)));
        self
    }

    /// Builds the client on the payer's HTTP client and timeout.
    pub(crate) fn build(
        self,
        http: reqwest::Client,
        timeout: Option<Option<Duration>>,
    ) -> MppClient {
        let mut prefs = self.prefs;
        if prefs.is_empty() {
            if self.lightning.is_some() {
                prefs.push((lightning::METHOD.into(), lightning::INTENT.into(), 1000));
            }
            #[cfg(feature = "x402")]
            if self.evm.is_some() {
                prefs.push((super::evm::METHOD.into(), super::evm::INTENT.into(), 1000));
            }
        }
        let accept =
            AcceptPayment::from_prefs(prefs.iter().map(|(m, i, q)| (m.as_str(), i.as_str(), *q)));
        MppClient {
            inner: Arc::new(MppInner {
                lightning: self
                    .lightning
                    .map(|b| b.http(http).total_timeout(timeout).build()),
                #[cfg(feature = "x402")]
                evm: self.evm,
                accept_header: accept.to_header_value(),
                accept,
            }),
        }
    }
}

/// The MPP means of a [`Payer`](crate::Payer): a Lightning node for
/// `lightning`/`charge`, an EVM signer and tokens for `evm`/`charge`, and
/// the `Accept-Payment` preferences. See the [module documentation](super).
///
/// ```
/// # fn f(node: std::sync::Arc<dyn pay402_core::lightning::LightningPayer>) {
/// let payer = pay402_client::Payer::builder()
///     .mpp(pay402_client::mpp::MppClient::builder().lightning(node, pay402_core::lightning::Network::Regtest));
/// # let _ = payer; }
/// ```
#[derive(Clone)]
pub struct MppClient {
    inner: Arc<MppInner>,
}

struct MppInner {
    lightning: Option<L402Client>,
    #[cfg(feature = "x402")]
    evm: Option<(Arc<dyn crate::x402::PaymentSigner>, Vec<MppToken>)>,
    accept: AcceptPayment,
    accept_header: String,
}

impl fmt::Debug for MppClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MppClient")
            .field("lightning", &self.inner.lightning)
            .field("accept_payment", &self.inner.accept_header)
            .finish_non_exhaustive()
    }
}

/// Why the payer will not pay an MPP challenge (nothing is paid).
#[derive(Debug)]
pub(crate) enum Refused {
    /// The method/intent is weighed `q=0`, or no means pays it.
    NotAccepted(String),
    /// Lightning charge checks.
    Lightning(lightning::OfferError),
    /// EVM charge checks.
    #[cfg(feature = "x402")]
    Evm(super::evm::OfferError),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotAccepted(k) => write!(f, "{k} is not a method the payer accepts"),
            Refused::Lightning(e) => e.fmt(f),
            #[cfg(feature = "x402")]
            Refused::Evm(e) => e.fmt(f),
        }
    }
}

impl Reason for Refused {
    fn reason(&self) -> &'static str {
        match self {
            Refused::NotAccepted(_) => "payment_method_not_accepted",
            Refused::Lightning(e) => e.reason(),
            #[cfg(feature = "x402")]
            Refused::Evm(e) => e.reason(),
        }
    }
}

/// A checked challenge: what to pay.
#[derive(Debug)]
pub(crate) enum Payable {
    Lightning(lightning::PayableCharge),
    #[cfg(feature = "x402")]
    Evm(Box<(super::evm::PayableCharge, MppToken)>),
}

impl MppClient {
    /// Starts configuring the MPP means.
    ///
    /// ```
    /// let b = pay402_client::mpp::MppClient::builder();
    /// # let _ = b;
    /// ```
    pub fn builder() -> MppClientBuilder {
        MppClientBuilder {
            lightning: None,
            #[cfg(feature = "x402")]
            evm: None,
            prefs: Vec::new(),
        }
    }

    /// The `Accept-Payment` value advertised on every request.
    ///
    /// ```
    /// # fn f(c: &pay402_client::mpp::MppClient) {
    /// println!("Accept-Payment: {}", c.accept_payment());
    /// # }
    /// ```
    pub fn accept_payment(&self) -> &str {
        &self.inner.accept_header
    }

    /// The weight (thousandths) the payer gives `method/intent`.
    pub(crate) fn weight(&self, c: &Challenge<'_>) -> u16 {
        self.inner.accept.weight(&c.method, &c.intent)
    }

    pub(crate) fn lightning_client(&self) -> Option<&L402Client> {
        self.inner.lightning.as_ref()
    }

    #[cfg(feature = "x402")]
    pub(crate) fn signer(&self) -> Option<&Arc<dyn crate::x402::PaymentSigner>> {
        self.inner.evm.as_ref().map(|(s, _)| s)
    }

    /// Whether a means for this challenge's method/intent is held.
    pub(crate) fn pays(&self, c: &Challenge<'_>) -> bool {
        match (c.method.as_ref(), c.intent.as_ref()) {
            (lightning::METHOD, lightning::INTENT) => self.inner.lightning.is_some(),
            #[cfg(feature = "x402")]
            (super::evm::METHOD, super::evm::INTENT) => self.inner.evm.is_some(),
            _ => false,
        }
    }

    /// The checks before paying `c` at `now`; what to pay and its amount
    /// in its own unit (the invoice's amount for Lightning).
    pub(crate) fn check(
        &self,
        c: &Challenge<'_>,
        now: UnixTime,
    ) -> Result<(Payable, Amount), Refused> {
        if self.weight(c) == 0 || !self.pays(c) {
            return Err(Refused::NotAccepted(format!("{}/{}", c.method, c.intent)));
        }
        match (c.method.as_ref(), c.intent.as_ref()) {
            (lightning::METHOD, lightning::INTENT) => {
                let l =
                    self.inner.lightning.as_ref().ok_or_else(|| {
                        Refused::NotAccepted(format!("{}/{}", c.method, c.intent))
                    })?;
                let p = lightning::check_charge(c, l.rail().network(), now, l.rail().max_price())
                    .map_err(Refused::Lightning)?;
                if p.expires_at <= now {
                    return Err(Refused::Lightning(lightning::OfferError::Expired));
                }
                let amount = Amount::Msat(p.amount);
                Ok((Payable::Lightning(p), amount))
            }
            #[cfg(feature = "x402")]
            (super::evm::METHOD, super::evm::INTENT) => {
                let (_, tokens) =
                    self.inner.evm.as_ref().ok_or_else(|| {
                        Refused::NotAccepted(format!("{}/{}", c.method, c.intent))
                    })?;
                let mut last = super::evm::OfferError::WrongChainOrToken;
                for t in tokens {
                    match super::evm::check_charge(c, t.chain_id, &t.currency, now, t.max) {
                        Ok(p) => {
                            let amount = Amount::Token(p.request.amount, t.unit());
                            return Ok((Payable::Evm(Box::new((p, t.clone()))), amount));
                        }
                        Err(super::evm::OfferError::WrongChainOrToken) => {}
                        Err(e) => last = e,
                    }
                }
                Err(Refused::Evm(last))
            }
            _ => Err(Refused::NotAccepted(format!("{}/{}", c.method, c.intent))),
        }
    }
}

/// What an MPP payment returned: the challenge paid and the server's
/// `Payment-Receipt`, parsed.
///
/// ```
/// # fn f(r: &pay402_client::mpp::MppReceipt) {
/// if let Some(receipt) = &r.receipt { println!("{} {} {}", r.challenge_id, receipt.method, receipt.reference); }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MppReceipt {
    /// The challenge id paid.
    pub challenge_id: String,
    /// `method/intent`, e.g. `lightning/charge`.
    pub kind: String,
    /// The payment's reference: the Lightning payment hash, or the EIP-3009
    /// nonce (the challenge hash).
    pub reference: String,
    /// The server's `Payment-Receipt`, decoded; `None` when absent or
    /// unreadable (see [`receipt_error`](Self::receipt_error)).
    pub receipt: Option<Receipt>,
    /// Why a `Payment-Receipt` that was sent could not be read.
    pub receipt_error: Option<String>,
}

impl MppReceipt {
    pub(crate) fn from_headers(
        challenge_id: String,
        kind: String,
        reference: String,
        headers: &reqwest::header::HeaderMap,
    ) -> MppReceipt {
        let (receipt, receipt_error) = match headers.get(pay402_core::mpp::RECEIPT_HEADER) {
            None => (None, None),
            Some(v) => match v
                .to_str()
                .map_err(|_| "not ASCII".to_owned())
                .and_then(|s| Receipt::decode(s).map_err(|e| e.to_string()))
            {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e)),
            },
        };
        MppReceipt {
            challenge_id,
            kind,
            reference,
            receipt,
            receipt_error,
        }
    }
}
