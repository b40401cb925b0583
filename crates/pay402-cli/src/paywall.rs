//! The seam: "the paywall layer for a service".
//!
//! [`ServicePaywall`] is the only place the proxy knows how payments are
//! taken. It builds one [`pay402_server::paywall::Paywall`] per service from
//! the service's rails (L402 through an [`L402Layer`], x402 through an
//! [`X402Layer`], BitRequests through its server, MPP through an
//! [`MppConfig`] shared by every service): an unpaid request gets one 402 carrying every rail's
//! challenge, a paid one is dispatched by the proof it carries (proofs of
//! two rails are refused with `multiple_payment_proofs`), and every
//! per-rail guarantee of those layers holds.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Request, header};
use pay402_core::lightning::InvoiceIssuer;
use pay402_core::money::Msat;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::facilitator::Facilitator;
use pay402_server::bitreq::BitreqServer;
use pay402_server::mpp::MppConfig;
use pay402_server::paywall::{Charge, Paywall, PaywallLayer, PaywallPrice, RailPrices, X402Asset};
use pay402_server::store::RootKeyStore;
use pay402_server::x402::store::PaymentStore;
use pay402_server::x402::{SettleTiming, X402Config, X402Layer, check_offer, exact_offer};
use pay402_server::{L402Config, L402Layer, PriceRequest};
use tower::Layer;
use tower::util::BoxCloneSyncService;

use crate::config::{MppMethod, RailName, Service as ServiceConfig, Settle, X402Settings};
use crate::pricer::{L402_PRICE_HEADER, X402_PRICE_HEADER};

/// A boxed request handler: the upstream, or the upstream behind a paywall.
///
/// ```
/// use tower::util::BoxCloneSyncService;
/// let h: pay402_cli::paywall::Handler = BoxCloneSyncService::new(tower::service_fn(|_req| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::from("hi")))
/// }));
/// # let _ = h;
/// ```
pub type Handler = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// What the paywalls of every service share: the node, the facilitator and
/// the stores.
///
/// ```
/// let none = pay402_cli::paywall::PaywallBackends {
///     issuer: None, l402_store: None, facilitator: None, x402_store: None, max_settle_body: 1 << 20,
///     bitreq: None, mpp: None,
/// };
/// # let _ = none;
/// ```
#[derive(Clone)]
pub struct PaywallBackends {
    /// The node issuing L402 invoices.
    pub issuer: Option<Arc<dyn InvoiceIssuer>>,
    /// L402 root keys and revocations.
    pub l402_store: Option<Arc<dyn RootKeyStore>>,
    /// The x402 facilitator.
    pub facilitator: Option<Arc<dyn Facilitator>>,
    /// x402 payment records.
    pub x402_store: Option<Arc<dyn PaymentStore>>,
    /// Largest response buffered for x402 settle-after.
    pub max_settle_body: usize,
    /// The BitRequests server (its ledger and store).
    pub bitreq: Option<BitreqServer>,
    /// The MPP rail (realm, secrets, methods and replay store), shared by
    /// every service that offers it.
    pub mpp: Option<MppConfig>,
}

/// The paywall of one service (see the module docs for the seam).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use pay402_cli::paywall::{PaywallBackends, ServicePaywall};
/// let toml = "[lightning]\nkind = \"simnet\"\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"l402\"]\nprice = { sats = 5 }\n";
/// let c = pay402_cli::config::Config::parse("p.toml", toml).unwrap();
/// let net = pay402_backends::simnet::SimNet::new(pay402_core::lightning::Network::Regtest);
/// let backends = PaywallBackends {
///     issuer: Some(Arc::new(net.add_node("merchant", pay402_core::money::Msat(0)))),
///     l402_store: Some(Arc::new(pay402_server::store::MemoryStore::new())),
///     facilitator: None, x402_store: None, max_settle_body: 1 << 20, bitreq: None, mpp: None,
/// };
/// let paywall = ServicePaywall::build(&c.services[0], None, &backends).unwrap().unwrap();
/// assert_eq!(paywall.rails(), ["l402"]);
/// # }
/// ```
#[derive(Clone)]
pub struct ServicePaywall {
    paywall: Paywall,
    layer: PaywallLayer,
}

/// Why a service's paywall cannot be built.
///
/// ```
/// let e = pay402_cli::paywall::PaywallError::Missing { service: "a".into(), rail: "x402", what: "[x402]" };
/// assert_eq!(e.to_string(), "service a: x402 is on but [x402] is not configured");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum PaywallError {
    /// A rail is on but its backend is missing.
    #[error("service {service}: {rail} is on but {what} is not configured")]
    Missing {
        /// The service.
        service: String,
        /// The rail.
        rail: &'static str,
        /// The missing piece.
        what: &'static str,
    },
    /// The x402 offer is not valid.
    #[error("service {service}: x402 offer: {message}")]
    Offer {
        /// The service.
        service: String,
        /// The reason.
        message: String,
    },
}

impl ServicePaywall {
    /// The paywall `service` asks for (no rail on: `None`, the service is free).
    ///
    /// See [`ServicePaywall`] for a runnable example.
    pub fn build(
        service: &ServiceConfig,
        x402: Option<&X402Settings>,
        backends: &PaywallBackends,
    ) -> Result<Option<ServicePaywall>, PaywallError> {
        let missing = |rail, what| PaywallError::Missing {
            service: service.name.clone(),
            rail,
            what,
        };
        let l402_on = service.rails.contains(&RailName::L402);
        let x402_on = service.rails.contains(&RailName::X402);
        let bitreq_on = service.rails.contains(&RailName::Bitreq);
        let mut builder = Paywall::builder();
        let mut prices = RailPrices::new();
        let mut dynamic = false;
        if l402_on {
            let issuer = backends
                .issuer
                .clone()
                .ok_or_else(|| missing("l402", "[lightning]"))?;
            let store = backends
                .l402_store
                .clone()
                .ok_or_else(|| missing("l402", "the store"))?;
            let mut config = L402Config::new(service.name.clone())
                .token_lifetime(service.token_lifetime)
                .capabilities(service.l402_capabilities.iter().cloned());
            for caveat in &service.l402_caveats {
                config = config.caveat(caveat.clone());
            }
            builder = builder.l402_layer(L402Layer::new(config, issuer, store));
            match service.l402_price {
                Some(p) => prices = prices.l402(p),
                None => dynamic = true,
            }
        }
        match (x402_on, x402) {
            (false, _) => {}
            (true, None) => return Err(missing("x402", "[x402]")),
            (true, Some(x)) => {
                let facilitator = backends
                    .facilitator
                    .clone()
                    .ok_or_else(|| missing("x402", "the facilitator"))?;
                let store = backends
                    .x402_store
                    .clone()
                    .ok_or_else(|| missing("x402", "the store"))?;
                let offer_err = |message: String| PaywallError::Offer {
                    service: service.name.clone(),
                    message,
                };
                // The offer this service would make, checked once here.
                let probe = exact_offer(
                    &x.network,
                    &x.asset,
                    &x.pay_to,
                    service.x402_price.unwrap_or(TokenAmount::from_u64(1)),
                    &x.asset_name,
                    &x.asset_version,
                );
                check_offer(&probe).map_err(|e| offer_err(e.to_string()))?;
                let pay_to = x
                    .pay_to
                    .parse()
                    .map_err(|_| offer_err(format!("pay_to {:?} is not an address", x.pay_to)))?;
                let address = x
                    .asset
                    .parse()
                    .map_err(|_| offer_err(format!("asset {:?} is not an address", x.asset)))?;
                let asset = X402Asset::new(
                    x.network.clone(),
                    address,
                    x.asset_decimals,
                    x.asset_name.clone(),
                    x.asset_version.clone(),
                );
                let settle = match x.settle {
                    Settle::After => SettleTiming::AfterHandler,
                    Settle::Before => SettleTiming::BeforeHandler,
                };
                let mut config = X402Config::new()
                    .settle(settle)
                    .max_response_body(backends.max_settle_body);
                if let Some(secs) = x.reservation_lease_secs {
                    config = config.reservation_lease(std::time::Duration::from_secs(secs));
                }
                builder =
                    builder.x402_layer(X402Layer::new(config, facilitator, store), pay_to, asset);
                match service.x402_price {
                    Some(a) => prices = prices.x402(a),
                    None => dynamic = true,
                }
            }
        }
        if bitreq_on {
            let server = backends
                .bitreq
                .clone()
                .ok_or_else(|| missing("bitreq", "[bitrequests]"))?;
            builder = builder.bitreq(server);
            match service.bitreq_price {
                Some(p) => prices = prices.bitreq(p),
                // The pricer's `sats`.
                None => dynamic = true,
            }
        }
        let mpp_on = service.rails.contains(&RailName::Mpp);
        if mpp_on {
            let config = backends
                .mpp
                .clone()
                .ok_or_else(|| missing("mpp", "[mpp]"))?;
            builder = builder.mpp(config);
            if let Some(p) = service.mpp_price {
                prices = prices.mpp(p);
            }
            if let Some(p) = service.mpp_evm_price {
                prices = prices.mpp_evm(p);
            }
            // Without a static price, the pricer's.
            dynamic |= service.pricer.is_some();
        }
        let mpp_sat_dynamic = mpp_on && service.mpp_methods.contains(&MppMethod::Lightning);
        let mpp_evm_dynamic = mpp_on && service.mpp_methods.contains(&MppMethod::Evm);
        if !l402_on && !x402_on && !bitreq_on && !mpp_on {
            return Ok(None);
        }
        let paywall = builder.build().map_err(|e| PaywallError::Offer {
            service: service.name.clone(),
            message: e.to_string(),
        })?;
        // A static price, or the pricer's, which the proxy put in internal
        // headers (a missing one prices the request out of reach: never
        // free). Each rail verifies what is paid against this request's
        // price (BitRequests: the transfer's or token's amount, and an
        // on-chain quote priced at least as much).
        let price = if dynamic {
            let fixed = prices.clone();
            PaywallPrice::dynamic(move |req: PriceRequest| {
                let mut p = fixed.clone();
                let header = |name: &str| {
                    req.headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                if l402_on && p.l402.is_none() {
                    let msat = header(L402_PRICE_HEADER)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(u64::MAX);
                    p = p.l402(Msat(msat));
                }
                if x402_on && p.x402.is_none() {
                    let amount = header(X402_PRICE_HEADER)
                        .and_then(|v| TokenAmount::parse(&v).ok())
                        .unwrap_or(TokenAmount(alloy_primitives::U256::MAX));
                    p = p.x402(amount);
                }
                // BitRequests and the MPP lightning method charge whole
                // sat: the msat price rounded up.
                let sat = || {
                    let sat = header(L402_PRICE_HEADER)
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or(u64::MAX, |msat| msat.div_ceil(1000));
                    pay402_core::money::Sat(sat)
                };
                if bitreq_on && p.bitreq.is_none() {
                    p = p.bitreq(sat());
                }
                if mpp_sat_dynamic && p.mpp.is_none() {
                    p = p.mpp(sat());
                }
                if mpp_evm_dynamic && p.mpp_evm.is_none() {
                    let amount = header(X402_PRICE_HEADER)
                        .and_then(|v| TokenAmount::parse(&v).ok())
                        .unwrap_or(TokenAmount(alloy_primitives::U256::MAX));
                    p = p.mpp_evm(amount);
                }
                async move { Some(Charge::PerRail(p)) }
            })
        } else {
            PaywallPrice::per_rail(prices)
        };
        let layer = paywall.price(price).scope(service.name.clone());
        Ok(Some(ServicePaywall { paywall, layer }))
    }

    /// `inner` behind this paywall.
    ///
    /// ```no_run
    /// # fn f(p: pay402_cli::paywall::ServicePaywall, upstream: pay402_cli::paywall::Handler) {
    /// let paid = p.wrap(upstream);
    /// # let _ = paid; }
    /// ```
    pub fn wrap(&self, inner: Handler) -> Handler {
        BoxCloneSyncService::new(self.layer.layer(RecordPaid(inner)))
    }

    /// Revokes an L402 token on this service (a revocation record in the
    /// shared store, and this service's cached key dropped). Returns whether
    /// the token had been used paid and was not yet revoked; `Ok(false)`
    /// for a service without L402.
    ///
    /// ```no_run
    /// # async fn f(p: pay402_cli::paywall::ServicePaywall) {
    /// let existed = p.revoke(&pay402_core::l402::TokenId([7; 32])).await.unwrap();
    /// # let _ = existed; }
    /// ```
    pub async fn revoke(
        &self,
        token: &pay402_core::l402::TokenId,
    ) -> Result<bool, pay402_server::store::StoreError> {
        match self.paywall.l402() {
            Some(l) => l.revoke(token).await,
            None => Ok(false),
        }
    }

    /// The rails this paywall offers.
    ///
    /// See [`ServicePaywall`] for a runnable example.
    pub fn rails(&self) -> Vec<&'static str> {
        self.paywall
            .rails()
            .into_iter()
            .map(|r| r.as_str())
            .collect()
    }
}

/// Put by the proxy on a request it sends through a paywall; the paywall's
/// inner service fills it with what paid and how long the paywall took, so
/// the proxy can count revenue and verify latency once the answer is known.
///
/// ```
/// let slot = pay402_cli::paywall::PaidSlot::new();
/// assert!(slot.get().is_none());
/// ```
#[derive(Clone, Debug)]
pub struct PaidSlot {
    started: std::time::Instant,
    paid: Arc<std::sync::OnceLock<(pay402_server::paywall::Paid, std::time::Duration)>>,
}

impl PaidSlot {
    /// An empty slot; the paywall's time starts now.
    ///
    /// See [`PaidSlot`].
    pub fn new() -> PaidSlot {
        PaidSlot {
            started: std::time::Instant::now(),
            paid: Arc::default(),
        }
    }

    /// What paid, and how long the paywall took, once the upstream was
    /// called.
    ///
    /// See [`PaidSlot`].
    pub fn get(&self) -> Option<&(pay402_server::paywall::Paid, std::time::Duration)> {
        self.paid.get()
    }
}

impl Default for PaidSlot {
    fn default() -> Self {
        PaidSlot::new()
    }
}

/// The upstream behind a paywall: fills the request's [`PaidSlot`].
#[derive(Clone)]
struct RecordPaid(Handler);

impl tower::Service<Request<Body>> for RecordPaid {
    type Response = Response;
    type Error = Infallible;
    type Future = <Handler as tower::Service<Request<Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let ext = req.extensions();
        if let (Some(slot), Some(paid)) = (
            ext.get::<PaidSlot>(),
            ext.get::<pay402_server::paywall::Paid>(),
        ) {
            let _ = slot.paid.set((paid.clone(), slot.started.elapsed()));
        }
        self.0.call(req)
    }
}

/// The rail whose proof a request carries, if any.
///
/// ```
/// use pay402_cli::paywall::proof_rail;
/// let mut h = http::HeaderMap::new();
/// assert_eq!(proof_rail(&h), None);
/// h.insert("authorization", "L402 abc:def".parse().unwrap());
/// assert_eq!(proof_rail(&h), Some("l402"));
/// h.insert("payment-signature", "e30=".parse().unwrap());
/// assert_eq!(proof_rail(&h), Some("x402"));
/// let mut b = http::HeaderMap::new();
/// b.insert("bitcoin-transfer", "{}".parse().unwrap());
/// assert_eq!(proof_rail(&b), Some("bitreq"));
/// let mut m = http::HeaderMap::new();
/// m.insert("authorization", "Payment eyJ9".parse().unwrap());
/// assert_eq!(proof_rail(&m), Some("mpp"));
/// ```
pub fn proof_rail(headers: &HeaderMap) -> Option<&'static str> {
    // One pass over the headers (a request carries a handful), not a
    // lookup by name per proof header.
    let (mut x402, mut bitreq, mut l402, mut mpp) = (false, false, false, false);
    for (name, value) in headers {
        if name == header::AUTHORIZATION {
            // (An L402 value decides: the MPP scan of a long value costs more.)
            if is_l402_authorization(value.as_bytes()) {
                l402 = true;
            } else {
                mpp |= is_payment_authorization(value.as_bytes());
            }
            continue;
        }
        let n = name.as_str();
        x402 |= n == "payment-signature" || n == "x-payment";
        bitreq |= BITREQ_PROOF_HEADERS.contains(&n);
    }
    [
        (x402, "x402"),
        (bitreq, "bitreq"),
        (l402, "l402"),
        (mpp, "mpp"),
    ]
    .into_iter()
    .find_map(|(carried, rail)| carried.then_some(rail))
}

/// The BitRequests proof headers (a bit-transfer also signs in
/// `Authorization`, which the upstream forwarding strips with them).
pub const BITREQ_PROOF_HEADERS: [&str; 3] = [
    "bitcoin-transaction",
    "bitcoin-transfer",
    "bitcoin-payment-channel-token",
];

/// Whether an `Authorization` value uses the `L402` or `LSAT` scheme.
///
/// ```
/// assert!(pay402_cli::paywall::is_l402_authorization(b"lsat x:y"));
/// assert!(!pay402_cli::paywall::is_l402_authorization(b"Bearer x"));
/// ```
pub fn is_l402_authorization(v: &[u8]) -> bool {
    let scheme = v.split(|b| *b == b' ').next().unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"L402") || scheme.eq_ignore_ascii_case(b"LSAT")
}

/// Whether an `Authorization` value carries an MPP `Payment` credential:
/// the `Payment` scheme (any case) at its start or at the start of one of
/// its comma-separated elements. Nothing is decoded.
///
/// ```
/// use pay402_cli::paywall::is_payment_authorization;
/// assert!(is_payment_authorization(b"Payment eyJjaGFsbGVuZ2UiOnt9fQ"));
/// assert!(is_payment_authorization(b"Bearer x, payment eyJ9"));
/// assert!(!is_payment_authorization(b"Payments x"));
/// assert!(!is_payment_authorization(b"Bearer Payment"));
/// ```
pub fn is_payment_authorization(v: &[u8]) -> bool {
    v.split(|b| *b == b',').any(|element| {
        let element = element.trim_ascii_start();
        element.len() > 8
            && element[..7].eq_ignore_ascii_case(b"Payment")
            && matches!(element[7], b' ' | b'\t')
    })
}
