//! [`Paywall`] and its builder: which rails are on, their shared state, and
//! the exchange rates.

use std::sync::Arc;

use http::HeaderValue;
use pay402_core::lightning::InvoiceIssuer;
use pay402_core::offer::Rail;
use pay402_core::rates::TokenUnit;
use pay402_core::rates::{FixedRates, Rates};

use super::error::{BuildError, PaywallError};
use super::layer::PaywallLayer;
use super::price::{Charge, PaywallPrice, Units};
use super::rail::PaywallRail;
use crate::l402::{L402Config, L402Layer};
use crate::mpp::{MppConfig, MppRail};
use crate::store::RootKeyStore;

#[cfg(feature = "x402")]
pub use crate::x402::paywall_rail::X402Asset;
#[cfg(feature = "x402")]
pub(crate) use crate::x402::paywall_rail::X402Rail;

/// The service name of the L402 rail enabled with [`PaywallBuilder::l402`]
/// (minted into `services=pay402:0`); give an [`L402Layer`] of your own
/// configuration with [`PaywallBuilder::l402_layer`] for another.
///
/// ```
/// assert_eq!(pay402_server::paywall::DEFAULT_L402_SERVICE, "pay402");
/// ```
pub const DEFAULT_L402_SERVICE: &str = "pay402";

/// The enabled rails and what every route of the paywall shares.
pub(crate) struct Shared {
    pub(crate) l402: Option<L402Layer>,
    #[cfg(feature = "x402")]
    pub(crate) x402: Option<Arc<X402Rail>>,
    #[cfg(feature = "bitreq")]
    pub(crate) bitreq: Option<crate::bitreq::BitreqServer>,
    pub(crate) mpp: Option<Arc<MppRail>>,
    /// Every enabled rail, in offer order (L402, MPP, x402, BitRequests).
    pub(crate) rails: Vec<Arc<dyn PaywallRail>>,
    /// The enabled rails other than L402 (the fast path asks them whether
    /// their proof is present).
    pub(crate) others: Vec<Arc<dyn PaywallRail>>,
    pub(crate) rates: Arc<dyn Rates>,
    /// The credential headers of the enabled rails (for `Vary`), each once.
    pub(crate) credentials: Box<[&'static str]>,
    /// The challenge headers of the enabled rails (for
    /// `Access-Control-Expose-Headers`).
    pub(crate) expose: HeaderValue,
}

impl Shared {
    pub(crate) fn has_x402(&self) -> bool {
        #[cfg(feature = "x402")]
        return self.x402.is_some();
        #[cfg(not(feature = "x402"))]
        return false;
    }

    pub(crate) fn has_bitreq(&self) -> bool {
        #[cfg(feature = "bitreq")]
        return self.bitreq.is_some();
        #[cfg(not(feature = "bitreq"))]
        return false;
    }

    /// The token unit of the x402 asset, when x402 is enabled.
    pub(crate) fn x402_unit(&self) -> Option<&TokenUnit> {
        #[cfg(feature = "x402")]
        return self.x402.as_ref().map(|r| &r.unit);
        #[cfg(not(feature = "x402"))]
        return None;
    }

    /// The charge in each enabled rail's unit, and the first conversion
    /// that failed.
    pub(crate) fn convert(
        &self,
        charge: &Charge,
    ) -> (
        super::RailPrices,
        Option<(Rail, pay402_core::rates::ConvertError)>,
    ) {
        charge.convert_for(
            self.rates.as_ref(),
            &Units {
                l402: self.l402.is_some(),
                x402: self.x402_unit(),
                bitreq: self.has_bitreq(),
                mpp: self.mpp.as_ref().is_some_and(|m| m.has_lightning()),
                mpp_evm: self.mpp.as_ref().and_then(|m| m.evm_unit()),
            },
        )
    }
}

/// The credential headers of each set of enabled rails (L402, x402,
/// BitRequests), in that order, each once.
pub(crate) fn credentials_of(l402: bool, x402: bool, bitreq: bool) -> &'static [&'static str] {
    match (l402, x402, bitreq) {
        (true, false, false) => &["Authorization"],
        (false, true, false) => &["PAYMENT-SIGNATURE", "X-PAYMENT"],
        (false, false, true) => crate::cache::BITREQ_CREDENTIALS,
        (true, true, false) => &["Authorization", "PAYMENT-SIGNATURE", "X-PAYMENT"],
        (true, false, true) => &[
            "Authorization",
            "Bitcoin-Transaction",
            "Bitcoin-Transfer",
            "Bitcoin-Payment-Channel-Token",
        ],
        (false, true, true) => &[
            "PAYMENT-SIGNATURE",
            "X-PAYMENT",
            "Bitcoin-Transaction",
            "Bitcoin-Transfer",
            "Bitcoin-Payment-Channel-Token",
            "Authorization",
        ],
        (true, true, true) => &[
            "Authorization",
            "PAYMENT-SIGNATURE",
            "X-PAYMENT",
            "Bitcoin-Transaction",
            "Bitcoin-Transfer",
            "Bitcoin-Payment-Channel-Token",
        ],
        (false, false, false) => &[],
    }
}

/// One paywall for every rail: the unpaid answer is one 402 carrying the
/// challenge of each enabled rail, and a paid request is served by the rail
/// whose proof it carries. Build it with [`Paywall::builder`], then put
/// [`Paywall::price`] in front of each route.
///
/// Two rails, L402 and x402, on one route:
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use pay402_core::rates::FixedRates;
/// use pay402_core::x402::facilitator::Facilitator;
/// use pay402_server::paywall::{Paid, Paywall, PaywallPrice, X402Asset};
/// use pay402_server::store::MemoryStore;
/// # use pay402_backends::simnet::SimNet;
/// # use pay402_core::{lightning::Network, money::Msat};
///
/// fn app(facilitator: Arc<dyn Facilitator>) -> Router {
/// #   let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
///     let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
///     let paywall = Paywall::builder()
///         .l402(node, Arc::new(MemoryStore::new()))
///         .x402(facilitator, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(), usdc)
///         .rates(Arc::new(FixedRates::new().usd_cents_per_btc(10_000_000)))
///         .build()
///         .unwrap();
///     let report = get(|paid: Paid| async move { format!("paid with {}", paid.rail) });
///     Router::new().route("/report", report.route_layer(paywall.price(PaywallPrice::usd_cents(5))))
/// }
/// ```
///
/// Clone it freely: the clones share the rails.
#[derive(Clone)]
pub struct Paywall {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Paywall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paywall")
            .field("rails", &self.rails())
            .finish_non_exhaustive()
    }
}

impl Paywall {
    /// A builder with no rail enabled and fixed rates.
    ///
    /// ```
    /// let b = pay402_server::paywall::Paywall::builder();
    /// # let _ = b;
    /// ```
    pub fn builder() -> PaywallBuilder {
        PaywallBuilder::default()
    }

    /// The layer charging `price` on the routes it wraps. A fixed price is
    /// converted per request through the rates (in the rail's own unit it
    /// is charged as given); a rail it cannot be converted for is left out
    /// of the offer. See [`Paywall::try_price`] to check a fixed price at
    /// start-up.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// use pay402_server::paywall::{Paywall, PaywallPrice};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// let paywall = Paywall::builder().l402(node, Arc::new(pay402_server::store::MemoryStore::new())).build().unwrap();
    /// let app: axum::Router = axum::Router::new().route(
    ///     "/hello",
    ///     axum::routing::get(|| async { "paid" }).route_layer(paywall.price(PaywallPrice::sats(100))),
    /// );
    /// ```
    pub fn price(&self, price: PaywallPrice) -> PaywallLayer {
        PaywallLayer::new(self.clone(), price)
    }

    /// As [`Paywall::price`], but a fixed price must be offered on every
    /// enabled rail it names: an unconvertible price (no rate known), or
    /// one that prices no enabled rail, is an error now rather than a
    /// refused request later.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// use pay402_core::problem::Reason;
    /// use pay402_server::paywall::{Paywall, PaywallPrice};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// let paywall = Paywall::builder().l402(node, Arc::new(pay402_server::store::MemoryStore::new())).build().unwrap();
    /// assert!(paywall.try_price(PaywallPrice::sats(100)).is_ok());
    /// // No BTC price was given: US cents cannot be charged in msat.
    /// assert_eq!(paywall.try_price(PaywallPrice::usd_cents(5)).unwrap_err().reason(), "no_rate");
    /// ```
    pub fn try_price(&self, price: PaywallPrice) -> Result<PaywallLayer, PaywallError> {
        if let PaywallPrice::Fixed(charge) = &price
            && !charge.is_free()
        {
            let (prices, failed) = self.shared.convert(charge);
            if let Some((_, e)) = failed {
                return Err(PaywallError::Unconvertible(e));
            }
            if prices.is_empty() {
                return Err(PaywallError::NoRailPriced);
            }
        }
        Ok(self.price(price))
    }

    /// The enabled rails.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// use pay402_core::offer::Rail;
    /// let paywall = pay402_server::paywall::Paywall::builder()
    ///     .l402(node, Arc::new(pay402_server::store::MemoryStore::new())).build().unwrap();
    /// assert_eq!(paywall.rails(), [Rail::L402]);
    /// ```
    pub fn rails(&self) -> Vec<Rail> {
        self.shared.rails.iter().map(|r| r.rail()).collect()
    }

    /// The L402 layer (to revoke a token, for example), when L402 is on.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// let paywall = pay402_server::paywall::Paywall::builder()
    ///     .l402(node, Arc::new(pay402_server::store::MemoryStore::new())).build().unwrap();
    /// assert_eq!(paywall.l402().unwrap().config().service, "pay402");
    /// ```
    pub fn l402(&self) -> Option<&L402Layer> {
        self.shared.l402.as_ref()
    }

    /// The x402 layer (its payment store lists pending settlements), when
    /// x402 is on.
    ///
    /// ```no_run
    /// # async fn f(paywall: pay402_server::paywall::Paywall) {
    /// use pay402_server::x402::store::PaymentState;
    /// let pending = paywall.x402().unwrap().store().list(PaymentState::Pending, 100).await.unwrap();
    /// # }
    /// ```
    #[cfg(feature = "x402")]
    pub fn x402(&self) -> Option<&crate::x402::X402Layer> {
        self.shared.x402.as_ref().map(|r| &r.layer)
    }

    /// The BitRequests server (its channel and ledger routers), when
    /// BitRequests is on.
    ///
    /// ```no_run
    /// # fn f(paywall: pay402_server::paywall::Paywall) {
    /// let channels: axum::Router = paywall.bitreq().unwrap().channel_router();
    /// # }
    /// ```
    #[cfg(feature = "bitreq")]
    pub fn bitreq(&self) -> Option<&crate::bitreq::BitreqServer> {
        self.shared.bitreq.as_ref()
    }
}

/// Enables rails and sets the exchange rates of a [`Paywall`].
///
/// ```
/// # use std::sync::Arc;
/// # use pay402_backends::simnet::SimNet;
/// # use pay402_core::{lightning::Network, money::Msat};
/// use pay402_server::{L402Config, L402Layer, store::MemoryStore};
/// use pay402_server::paywall::Paywall;
/// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
/// let l402 = L402Layer::new(L402Config::new("weather").emit_lsat(true), node, Arc::new(MemoryStore::new()));
/// let paywall = Paywall::builder().l402_layer(l402).build().unwrap();
/// # let _ = paywall;
/// ```
#[derive(Default)]
pub struct PaywallBuilder {
    l402: Option<L402Layer>,
    #[cfg(feature = "x402")]
    x402: Option<(
        crate::x402::X402Layer,
        pay402_core::x402::evm::EvmAddress,
        X402Asset,
    )>,
    #[cfg(feature = "bitreq")]
    bitreq: Option<crate::bitreq::BitreqServer>,
    mpp: Option<MppConfig>,
    rates: Option<Arc<dyn Rates>>,
}

impl std::fmt::Debug for PaywallBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaywallBuilder")
            .field("l402", &self.l402.is_some())
            .field("rates", &self.rates.is_some())
            .finish_non_exhaustive()
    }
}

impl PaywallBuilder {
    /// Enables L402 with invoices from `node` and root keys in `store`,
    /// for the service [`DEFAULT_L402_SERVICE`] with the defaults of
    /// [`L402Config::new`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// let b = pay402_server::paywall::Paywall::builder().l402(node, Arc::new(pay402_server::store::MemoryStore::new()));
    /// # let _ = b;
    /// ```
    pub fn l402(self, node: Arc<dyn InvoiceIssuer>, store: Arc<dyn RootKeyStore>) -> Self {
        self.l402_layer(L402Layer::new(
            L402Config::new(DEFAULT_L402_SERVICE),
            node,
            store,
        ))
    }

    /// Enables L402 with the configuration, node and store of `layer` (its
    /// price, scope and capability are set per route by the paywall).
    /// Its free paths are free on every rail.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// use pay402_server::{L402Config, L402Layer, store::MemoryStore};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// let l402 = L402Layer::new(L402Config::new("api"), node, Arc::new(MemoryStore::new()));
    /// let b = pay402_server::paywall::Paywall::builder().l402_layer(l402);
    /// # let _ = b;
    /// ```
    pub fn l402_layer(mut self, layer: L402Layer) -> Self {
        self.l402 = Some(layer);
        self
    }

    /// Enables x402: `exact` payments of `asset` to `pay_to`, settled
    /// through `facilitator`, with the defaults of
    /// [`X402Config::new`](crate::x402::X402Config::new) and an in-memory
    /// payment store (give an [`X402Layer`](crate::x402::X402Layer) with a
    /// SQLite store to [`PaywallBuilder::x402_layer`] to keep pending
    /// settlements across restarts).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # fn f(facilitator: Arc<dyn pay402_core::x402::facilitator::Facilitator>) {
    /// use pay402_server::paywall::{Paywall, X402Asset};
    /// let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
    /// let b = Paywall::builder().x402(facilitator, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(), usdc);
    /// # }
    /// ```
    #[cfg(feature = "x402")]
    pub fn x402(
        self,
        facilitator: Arc<dyn pay402_core::x402::facilitator::Facilitator>,
        pay_to: pay402_core::x402::evm::EvmAddress,
        asset: X402Asset,
    ) -> Self {
        let layer = crate::x402::X402Layer::new(
            crate::x402::X402Config::new(),
            facilitator,
            Arc::new(crate::x402::store::MemoryPaymentStore::new()),
        );
        self.x402_layer(layer, pay_to, asset)
    }

    /// Enables x402 with the configuration, facilitator and payment store
    /// of `layer`: `exact` payments of `asset` to `pay_to`.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # async fn f(facilitator: Arc<dyn pay402_core::x402::facilitator::Facilitator>) {
    /// use pay402_server::paywall::{Paywall, X402Asset};
    /// use pay402_server::x402::{SettleTiming, X402Config, X402Layer, store::SqlitePaymentStore};
    /// let store = SqlitePaymentStore::open("payments.sqlite").await.unwrap();
    /// let layer = X402Layer::new(X402Config::new().settle(SettleTiming::BeforeHandler), facilitator, Arc::new(store));
    /// let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
    /// let b = Paywall::builder().x402_layer(layer, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(), usdc);
    /// # }
    /// ```
    #[cfg(feature = "x402")]
    pub fn x402_layer(
        mut self,
        layer: crate::x402::X402Layer,
        pay_to: pay402_core::x402::evm::EvmAddress,
        asset: X402Asset,
    ) -> Self {
        self.x402 = Some((layer, pay_to, asset));
        self
    }

    /// Enables 21 BitRequests with every method `server` is configured for
    /// (on-chain, bit-transfer, payment channels). Merge its channel router
    /// ([`BitreqServer::channel_router`](crate::bitreq::BitreqServer::channel_router))
    /// into the application when channels are on.
    ///
    /// ```no_run
    /// # fn f(server: pay402_server::bitreq::BitreqServer) {
    /// let b = pay402_server::paywall::Paywall::builder().bitreq(server);
    /// # }
    /// ```
    #[cfg(feature = "bitreq")]
    pub fn bitreq(mut self, server: crate::bitreq::BitreqServer) -> Self {
        self.bitreq = Some(server);
        self
    }

    /// Enables MPP, the `Payment` HTTP authentication scheme, with the
    /// methods, secret, realm and replay store of `config`: one fresh
    /// `lightning`/`charge` invoice and / or one `evm`/`charge` offer per
    /// challenge, offered after L402 in the same 402 (see [`crate::mpp`]).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use pay402_backends::simnet::SimNet;
    /// # use pay402_core::{lightning::Network, money::Msat};
    /// use pay402_server::mpp::MppConfig;
    /// use pay402_server::paywall::{Paywall, PaywallPrice};
    /// # let node = Arc::new(SimNet::new(Network::Regtest).add_node("merchant", Msat(0)));
    /// let mpp = MppConfig::new("api.example.com", &[7; 32]).unwrap().lightning(node);
    /// let paywall = Paywall::builder().mpp(mpp).build().unwrap();
    /// let hello = paywall.price(PaywallPrice::sats(100));
    /// # let _ = hello;
    /// ```
    pub fn mpp(mut self, config: MppConfig) -> Self {
        self.mpp = Some(config);
        self
    }

    /// The exchange rates prices are converted with (default: fixed rates
    /// knowing msat ↔ sat only). Whatever the rates, an x402 asset declared
    /// a USD stablecoin ([`X402Asset::usdc`]) is worth one US dollar per
    /// token, unless the rates know its value themselves: give the bitcoin
    /// price (`FixedRates::usd_cents_per_btc`) and a price in US cents, sats
    /// or USDC is offered on every rail.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_core::rates::FixedRates;
    /// let b = pay402_server::paywall::Paywall::builder()
    ///     .rates(Arc::new(FixedRates::new().usd_cents_per_btc(10_000_000)));
    /// # let _ = b;
    /// ```
    pub fn rates(mut self, rates: Arc<dyn Rates>) -> Self {
        self.rates = Some(rates);
        self
    }

    /// The paywall.
    ///
    /// # Errors
    ///
    /// [`BuildError::NoRail`] without any rail;
    /// `BuildError::X402Asset` when the x402 asset and recipient do not
    /// make a valid `exact` offer.
    ///
    /// ```
    /// assert!(pay402_server::paywall::Paywall::builder().build().is_err());
    /// ```
    pub fn build(self) -> Result<Paywall, BuildError> {
        #[cfg(feature = "x402")]
        let x402 = match self.x402 {
            Some((layer, pay_to, asset)) => Some(Arc::new(X402Rail::new(layer, pay_to, asset)?)),
            None => None,
        };
        let mpp = match self.mpp {
            Some(config) => Some(Arc::new(MppRail::new(config)?)),
            None => None,
        };
        // Offer order: L402 (and LSAT), then MPP's `Payment` challenges, as
        // Aperture orders them; then x402 and BitRequests.
        let mut rails: Vec<Arc<dyn PaywallRail>> = Vec::new();
        if self.l402.is_some() {
            rails.push(Arc::new(crate::l402::paywall_rail::L402Rail));
        }
        if let Some(m) = &mpp {
            rails.push(m.clone());
        }
        #[cfg(feature = "x402")]
        if let Some(x) = &x402 {
            rails.push(x.clone());
        }
        #[cfg(feature = "bitreq")]
        if let Some(b) = &self.bitreq {
            rails.push(Arc::new(b.clone()));
        }
        if rails.is_empty() {
            return Err(BuildError::NoRail);
        }
        let others = rails
            .iter()
            .filter(|r| r.rail() != Rail::L402)
            .cloned()
            .collect();
        let rates: Arc<dyn Rates> = self.rates.unwrap_or_else(|| Arc::new(FixedRates::new()));
        // An asset declared a USD stablecoin is worth one dollar per token,
        // whatever rates were given (theirs win where they know the token).
        #[cfg(feature = "x402")]
        let rates: Arc<dyn Rates> = match &x402 {
            Some(r) if r.asset.is_usd_stablecoin() => {
                Arc::new(StablecoinRates::new(rates, &r.unit))
            }
            _ => rates,
        };
        #[cfg(feature = "x402")]
        let rates: Arc<dyn Rates> = match mpp.as_ref().and_then(|m| m.evm_stablecoin()) {
            Some(unit) => Arc::new(StablecoinRates::new(rates, unit)),
            None => rates,
        };
        // Vary (credentials) and Access-Control-Expose-Headers (challenge
        // headers): every rail's own, in rail order, each once. Credentials
        // keep the order of L402, x402, BitRequests (the fast path's `Vary`
        // is that list; MPP's `Authorization` adds nothing to it).
        let mut credentials: Vec<&'static str> = Vec::new();
        let mut expose: Vec<&'static str> = Vec::new();
        let by_credentials = {
            let mut r: Vec<&Arc<dyn PaywallRail>> = rails.iter().collect();
            r.sort_by_key(|r| r.rail() == Rail::Mpp);
            r
        };
        for r in by_credentials {
            for c in r.credentials() {
                if !credentials.contains(c) {
                    credentials.push(c);
                }
            }
        }
        for r in &rails {
            for e in r.expose().split(", ") {
                if !expose.contains(&e) {
                    expose.push(e);
                }
            }
        }
        let expose = HeaderValue::try_from(expose.join(", "))
            .unwrap_or_else(|_| HeaderValue::from_static("WWW-Authenticate"));
        Ok(Paywall {
            shared: Arc::new(Shared {
                l402: self.l402,
                #[cfg(feature = "x402")]
                x402,
                #[cfg(feature = "bitreq")]
                bitreq: self.bitreq,
                mpp,
                rails,
                others,
                rates,
                credentials: credentials.into_boxed_slice(),
                expose,
            }),
        })
    }
}

/// Rates that also know a USD stablecoin's value: one dollar per whole
/// token (one cent is `10^(decimals - 2)` base units, kept exact), used
/// when the inner rates have no answer, directly or through US cents.
#[cfg(feature = "x402")]
struct StablecoinRates {
    inner: Arc<dyn Rates>,
    token: pay402_core::rates::Unit,
    /// One whole token in base units.
    whole: u128,
}

#[cfg(feature = "x402")]
impl StablecoinRates {
    fn new(inner: Arc<dyn Rates>, token: &TokenUnit) -> StablecoinRates {
        StablecoinRates {
            inner,
            token: pay402_core::rates::Unit::Token(token.clone()),
            whole: 10u128.saturating_pow(u32::from(token.decimals().min(36))),
        }
    }
}

#[cfg(feature = "x402")]
impl Rates for StablecoinRates {
    fn rate(
        &self,
        from: &pay402_core::rates::Unit,
        to: &pay402_core::rates::Unit,
    ) -> Option<pay402_core::rates::Ratio> {
        use pay402_core::rates::Unit;
        if let Some(r) = self.inner.rate(from, to) {
            return Some(r);
        }
        // One US cent in base units of the token.
        let cent = pay402_core::rates::Ratio::new(self.whole, 100)?;
        let cents = |u: &Unit| {
            if *u == Unit::UsdCents {
                pay402_core::rates::Ratio::new(1, 1)
            } else {
                None
            }
        };
        if *to == self.token {
            // from → cents → token
            let to_cents = cents(from).or_else(|| self.inner.rate(from, &Unit::UsdCents))?;
            return to_cents.then(cent);
        }
        if *from == self.token {
            // token → cents → to
            let from_cents = cents(to).or_else(|| self.inner.rate(&Unit::UsdCents, to))?;
            return cent.inverse().then(from_cents);
        }
        None
    }
}
