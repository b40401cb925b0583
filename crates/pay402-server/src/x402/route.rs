//! What one route charges: its offers (several networks and assets at
//! once, fixed or computed per request) and the resource they describe.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::exact::SCHEME_EXACT;
use pay402_core::x402::network::Caip2;
use pay402_core::x402::{Extra, PaymentRequirements, TokenAmount};
use serde_json::Value;

use crate::PriceRequest;

/// The offer of an `exact` EVM (EIP-3009) payment: `amount` base units of the
/// token `asset` on `network` (CAIP-2) to `pay_to`, signed under the token's
/// EIP-712 domain `(name, version)`, with a 60 s `maxTimeoutSeconds`.
///
/// ```
/// use pay402_server::x402::exact_offer;
/// use pay402_core::x402::TokenAmount;
/// let o = exact_offer("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
///     "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", TokenAmount::from_u64(10_000), "USD Coin", "2");
/// assert_eq!(o.scheme, "exact");
/// assert_eq!(o.extra.unwrap().name(), Some("USD Coin"));
/// ```
pub fn exact_offer(
    network: &str,
    asset: &str,
    pay_to: &str,
    amount: TokenAmount,
    name: &str,
    version: &str,
) -> PaymentRequirements {
    PaymentRequirements {
        scheme: SCHEME_EXACT.into(),
        network: network.into(),
        amount,
        asset: asset.into(),
        pay_to: pay_to.into(),
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712(name, version)),
    }
}

/// An offer this layer cannot take payments for.
///
/// ```
/// use pay402_server::x402::{check_offer, exact_offer};
/// use pay402_core::x402::TokenAmount;
/// let bad = exact_offer("base", "0x0", "0x0", TokenAmount::from_u64(1), "USDC", "2");
/// assert!(check_offer(&bad).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("offer for {network}: {problem}")]
pub struct OfferError {
    /// The offer's network.
    pub network: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Checks that an offer is an `exact` EVM requirement this layer can verify:
/// scheme `exact`, a CAIP-2 `eip155:<chain id>` network, EVM addresses for
/// `asset` and `payTo`, the EIP-712 `name` and `version` in `extra`, and a
/// non-zero amount.
///
/// ```
/// use pay402_server::x402::{check_offer, exact_offer};
/// use pay402_core::x402::TokenAmount;
/// let ok = exact_offer("eip155:31337", "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
///     "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", TokenAmount::from_u64(1), "USD Coin", "2");
/// assert!(check_offer(&ok).is_ok());
/// ```
pub fn check_offer(offer: &PaymentRequirements) -> Result<(), OfferError> {
    let fail = |problem| {
        Err(OfferError {
            network: offer.network.clone(),
            problem,
        })
    };
    if offer.scheme != SCHEME_EXACT {
        return fail("only the `exact` scheme is supported");
    }
    if Caip2::parse(&offer.network)
        .ok()
        .and_then(|c| c.evm_chain_id())
        .is_none()
    {
        return fail("network is not a CAIP-2 eip155:<chain id>");
    }
    if offer.asset.parse::<EvmAddress>().is_err() {
        return fail("asset is not an EVM address");
    }
    if offer.pay_to.parse::<EvmAddress>().is_err() {
        return fail("payTo is not an EVM address");
    }
    if offer
        .extra
        .as_ref()
        .is_none_or(|e| e.name().is_none() || e.version().is_none())
    {
        return fail("extra lacks the token's EIP-712 name and version");
    }
    if offer.amount == TokenAmount::default() {
        return fail("amount is zero (leave the route without offers to make it free)");
    }
    Ok(())
}

/// A boxed future of a route's offers.
///
/// ```
/// use pay402_server::x402::OffersFuture;
/// let f: OffersFuture = Box::pin(async { Vec::new() });
/// # let _ = f;
/// ```
pub type OffersFuture = Pin<Box<dyn Future<Output = Vec<PaymentRequirements>> + Send + 'static>>;

/// A route's offers: fixed, or computed from each request (an empty list
/// means the request is free).
///
/// A dynamic price must give the same offers for the paid retry as for the
/// request that got the 402: the payment echoes one offer, which is looked
/// for among the offers computed for the retry.
///
/// ```
/// use pay402_server::x402::{Offers, exact_offer};
/// use pay402_core::x402::TokenAmount;
/// let o = Offers::dynamic(|req| async move {
///     let big = req.uri.query().is_some_and(|q| q.contains("size=large"));
///     let amount = TokenAmount::from_u64(if big { 50_000 } else { 10_000 });
///     vec![exact_offer("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
///         "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", amount, "USD Coin", "2")]
/// });
/// # let _ = o;
/// ```
#[derive(Clone)]
pub enum Offers {
    /// The same offers for every request (checked when the route is built).
    Fixed(Arc<[PaymentRequirements]>),
    /// Offers computed from the request (checked per request).
    Dynamic(Arc<dyn Fn(PriceRequest) -> OffersFuture + Send + Sync>),
}

impl Offers {
    /// Offers computed by an async function of the request.
    ///
    /// ```
    /// let _ = pay402_server::x402::Offers::dynamic(|_req| async { Vec::new() });
    /// ```
    pub fn dynamic<F, Fut>(f: F) -> Offers
    where
        F: Fn(PriceRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<PaymentRequirements>> + Send + 'static,
    {
        Offers::Dynamic(Arc::new(move |r| Box::pin(f(r))))
    }
}

impl fmt::Debug for Offers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offers::Fixed(o) => f.debug_tuple("Offers::Fixed").field(o).finish(),
            Offers::Dynamic(_) => f.write_str("Offers::Dynamic(..)"),
        }
    }
}

/// What a route charges and describes.
///
/// ```
/// use pay402_server::x402::{X402Route, exact_offer};
/// use pay402_core::x402::TokenAmount;
/// let usdc_base = exact_offer("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
///     "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", TokenAmount::from_u64(10_000), "USD Coin", "2");
/// let usdc_sepolia = exact_offer("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
///     "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", TokenAmount::from_u64(10_000), "USDC", "2");
/// let route = X402Route::new([usdc_base, usdc_sepolia]).unwrap()
///     .description("Premium market data")
///     .mime_type("application/json");
/// assert_eq!(route.description.as_deref(), Some("Premium market data"));
/// ```
#[derive(Clone, Debug)]
pub struct X402Route {
    /// The offers.
    pub offers: Offers,
    /// A human description of the resource.
    pub description: Option<String>,
    /// The media type of the resource.
    pub mime_type: Option<String>,
    /// The resource URL; default: the layer's `base_url` (or the request's
    /// `Host`) + the request path.
    pub resource_url: Option<String>,
    /// v1 `outputSchema`.
    pub output_schema: Option<Value>,
}

impl X402Route {
    /// A route with fixed offers, each checked with [`check_offer`].
    ///
    /// ```
    /// use pay402_server::x402::X402Route;
    /// // No offers: free.
    /// assert!(X402Route::new([]).is_ok());
    /// ```
    pub fn new(
        offers: impl IntoIterator<Item = PaymentRequirements>,
    ) -> Result<X402Route, OfferError> {
        let offers: Vec<PaymentRequirements> = offers.into_iter().collect();
        offers.iter().try_for_each(check_offer)?;
        Ok(X402Route::with_offers(Offers::Fixed(offers.into())))
    }

    /// A route whose offers are computed per request (each checked with
    /// [`check_offer`] when computed; a bad one answers 500).
    ///
    /// ```
    /// use pay402_server::x402::X402Route;
    /// let r = X402Route::dynamic(|_req| async { Vec::new() });
    /// # let _ = r;
    /// ```
    pub fn dynamic<F, Fut>(f: F) -> X402Route
    where
        F: Fn(PriceRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<PaymentRequirements>> + Send + 'static,
    {
        X402Route::with_offers(Offers::dynamic(f))
    }

    fn with_offers(offers: Offers) -> X402Route {
        X402Route {
            offers,
            description: None,
            mime_type: None,
            resource_url: None,
            output_schema: None,
        }
    }

    /// Sets the description.
    ///
    /// ```
    /// let r = pay402_server::x402::X402Route::new([]).unwrap().description("x");
    /// assert_eq!(r.description.as_deref(), Some("x"));
    /// ```
    pub fn description(mut self, s: impl Into<String>) -> Self {
        self.description = Some(s.into());
        self
    }

    /// Sets the media type.
    ///
    /// ```
    /// let r = pay402_server::x402::X402Route::new([]).unwrap().mime_type("text/plain");
    /// assert_eq!(r.mime_type.as_deref(), Some("text/plain"));
    /// ```
    pub fn mime_type(mut self, s: impl Into<String>) -> Self {
        self.mime_type = Some(s.into());
        self
    }

    /// Sets the resource URL.
    ///
    /// ```
    /// let r = pay402_server::x402::X402Route::new([]).unwrap().resource_url("https://a/b");
    /// assert_eq!(r.resource_url.as_deref(), Some("https://a/b"));
    /// ```
    pub fn resource_url(mut self, s: impl Into<String>) -> Self {
        self.resource_url = Some(s.into());
        self
    }

    /// Sets the v1 `outputSchema`.
    ///
    /// ```
    /// let r = pay402_server::x402::X402Route::new([]).unwrap().output_schema(serde_json::json!({"type": "object"}));
    /// assert!(r.output_schema.is_some());
    /// ```
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = Some(schema);
        self
    }
}
