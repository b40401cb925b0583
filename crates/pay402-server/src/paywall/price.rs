//! What a route charges: one amount in the operator's unit, converted per
//! rail, or a price per rail; fixed, or computed per request.
//!
//! # Conversion and rounding
//!
//! A [`Charge::Amount`] is converted into each enabled rail's own unit:
//! millisatoshis for L402, satoshis for BitRequests, base units of the
//! configured asset for x402. Every conversion is exact integer arithmetic
//! rounded **up** to the rail's smallest unit, so no rail charges less than
//! the price:
//!
//! - msat ↔ sat is fixed (1 sat = 1 000 msat) and never asks the rates;
//!   1 500 msat is 2 sat on BitRequests;
//! - an amount already in the rail's unit is charged as it is;
//! - anything else goes through the paywall's [`Rates`] port
//!   (`value × num / den`, rounded up): 5 US cents at 100 000 USD per BTC
//!   are 50 sat, 50 000 msat and 50 000 base units of a 6-decimal USD
//!   stablecoin.
//!
//! A rail whose conversion fails (no rate known, or the result does not fit
//! the unit) is left out of the offer and the failure is logged; a request
//! that no enabled rail can be offered for is refused (500 with the
//! conversion's reason, or `no_rail_priced`), never served free.
//!
//! ```
//! use pay402_core::money::{Msat, Sat};
//! use pay402_core::rates::{Amount, FixedRates};
//! use pay402_server::paywall::{Charge, RailPrices};
//! let rates = FixedRates::new();
//! let prices = Charge::Amount(Amount::Msat(Msat(1_500))).per_rail(&rates, true, None, true);
//! assert_eq!(prices.l402, Some(Msat(1_500)));
//! assert_eq!(prices.bitreq, Some(Sat(2)), "rounded up to whole satoshis");
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pay402_core::money::{Msat, Sat};
use pay402_core::offer::Rail;
use pay402_core::rates::{Amount, ConvertError, Rates, Rounding, TokenUnit, Unit};
use pay402_core::x402::TokenAmount;

use crate::PriceRequest;

/// A price per rail, given directly (nothing is converted). A rail without
/// a price (or with a zero price) is not offered on the route.
///
/// ```
/// use pay402_core::money::{Msat, Sat};
/// use pay402_core::x402::TokenAmount;
/// use pay402_server::paywall::RailPrices;
/// let p = RailPrices::new().l402(Msat(21_000)).x402(TokenAmount::from_u64(10_000)).bitreq(Sat(21));
/// assert_eq!(p.bitreq, Some(Sat(21)));
/// assert!(RailPrices::new().is_free());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RailPrices {
    /// The L402 price (the invoice amount).
    pub l402: Option<Msat>,
    /// The x402 price, in base units of the paywall's asset.
    pub x402: Option<TokenAmount>,
    /// The BitRequests price.
    pub bitreq: Option<Sat>,
    /// The MPP `lightning`/`charge` price (whole satoshis: the method's
    /// `amount` unit).
    pub mpp: Option<Sat>,
    /// The MPP `evm`/`charge` price, in base units of the MPP EVM asset.
    pub mpp_evm: Option<TokenAmount>,
}

impl RailPrices {
    /// No price on any rail.
    ///
    /// ```
    /// assert_eq!(pay402_server::paywall::RailPrices::new().l402, None);
    /// ```
    pub fn new() -> RailPrices {
        RailPrices::default()
    }

    /// Sets the L402 price.
    ///
    /// ```
    /// use pay402_core::money::Msat;
    /// assert_eq!(pay402_server::paywall::RailPrices::new().l402(Msat(5)).l402, Some(Msat(5)));
    /// ```
    pub fn l402(mut self, price: Msat) -> RailPrices {
        self.l402 = Some(price);
        self
    }

    /// Sets the x402 price, in base units of the paywall's asset.
    ///
    /// ```
    /// use pay402_core::x402::TokenAmount;
    /// let p = pay402_server::paywall::RailPrices::new().x402(TokenAmount::from_u64(10_000));
    /// assert_eq!(p.x402, Some(TokenAmount::from_u64(10_000)));
    /// ```
    pub fn x402(mut self, price: TokenAmount) -> RailPrices {
        self.x402 = Some(price);
        self
    }

    /// Sets the BitRequests price.
    ///
    /// ```
    /// use pay402_core::money::Sat;
    /// assert_eq!(pay402_server::paywall::RailPrices::new().bitreq(Sat(3)).bitreq, Some(Sat(3)));
    /// ```
    pub fn bitreq(mut self, price: Sat) -> RailPrices {
        self.bitreq = Some(price);
        self
    }

    /// Sets the MPP `lightning`/`charge` price.
    ///
    /// ```
    /// use pay402_core::money::Sat;
    /// assert_eq!(pay402_server::paywall::RailPrices::new().mpp(Sat(100)).mpp, Some(Sat(100)));
    /// ```
    pub fn mpp(mut self, price: Sat) -> RailPrices {
        self.mpp = Some(price);
        self
    }

    /// Sets the MPP `evm`/`charge` price, in base units of its asset.
    ///
    /// ```
    /// use pay402_core::x402::TokenAmount;
    /// let p = pay402_server::paywall::RailPrices::new().mpp_evm(TokenAmount::from_u64(10_000));
    /// assert_eq!(p.mpp_evm, Some(TokenAmount::from_u64(10_000)));
    /// ```
    pub fn mpp_evm(mut self, price: TokenAmount) -> RailPrices {
        self.mpp_evm = Some(price);
        self
    }

    /// Whether no rail has a non-zero price.
    ///
    /// ```
    /// use pay402_core::money::Msat;
    /// use pay402_server::paywall::RailPrices;
    /// assert!(RailPrices::new().l402(Msat(0)).is_free());
    /// assert!(!RailPrices::new().l402(Msat(1)).is_free());
    /// ```
    pub fn is_free(&self) -> bool {
        self.l402.is_none_or(|m| m == Msat::ZERO)
            && self.x402.is_none_or(|t| t.0.is_zero())
            && self.bitreq.is_none_or(|s| s.0 == 0)
            && self.mpp.is_none_or(|s| s.0 == 0)
            && self.mpp_evm.is_none_or(|t| t.0.is_zero())
    }

    /// The same prices with zero prices removed (a zero price offers
    /// nothing).
    fn without_zeros(self) -> RailPrices {
        RailPrices {
            l402: self.l402.filter(|m| *m > Msat::ZERO),
            x402: self.x402.filter(|t| !t.0.is_zero()),
            bitreq: self.bitreq.filter(|s| s.0 > 0),
            mpp: self.mpp.filter(|s| s.0 > 0),
            mpp_evm: self.mpp_evm.filter(|t| !t.0.is_zero()),
        }
    }

    /// Whether no rail is priced.
    pub(crate) fn is_empty(&self) -> bool {
        self.l402.is_none()
            && self.x402.is_none()
            && self.bitreq.is_none()
            && self.mpp.is_none()
            && self.mpp_evm.is_none()
    }
}

/// What one request costs: one amount, converted to each rail's unit
/// (rounded up, see the [module docs](self)), or a price per rail.
///
/// ```
/// use pay402_core::rates::Amount;
/// use pay402_server::paywall::{Charge, RailPrices};
/// let one: Charge = Amount::UsdCents(5).into();
/// let each: Charge = RailPrices::new().l402(pay402_core::money::Msat(50_000)).into();
/// assert!(!one.is_free() && !each.is_free());
/// assert!(Charge::Amount(Amount::UsdCents(0)).is_free());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    /// One amount in any unit, converted per rail.
    Amount(Amount),
    /// A price per rail.
    PerRail(RailPrices),
}

impl From<Amount> for Charge {
    fn from(a: Amount) -> Charge {
        Charge::Amount(a)
    }
}

impl From<RailPrices> for Charge {
    fn from(p: RailPrices) -> Charge {
        Charge::PerRail(p)
    }
}

/// The rail-own unit an amount is converted to: exact msat ↔ sat and
/// identity without the rates, everything else through them, rounded up.
fn to_unit(amount: &Amount, unit: &Unit, rates: &dyn Rates) -> Result<Amount, ConvertError> {
    match (amount, unit) {
        (a, u) if a.unit() == *u => Ok(a.clone()),
        (Amount::Sat(s), Unit::Msat) => {
            s.0.checked_mul(1_000)
                .map(|m| Amount::Msat(Msat(m)))
                .ok_or(ConvertError::Overflow { to: Unit::Msat })
        }
        (Amount::Msat(m), Unit::Sat) => Ok(Amount::Sat(m.to_sat_ceil())),
        _ => rates.convert(amount, unit, Rounding::Up),
    }
}

impl Charge {
    /// Whether this charge asks for nothing (a zero amount, or no non-zero
    /// price on any rail): the request is served free.
    ///
    /// ```
    /// use pay402_core::rates::Amount;
    /// assert!(pay402_server::paywall::Charge::Amount(Amount::UsdCents(0)).is_free());
    /// ```
    pub fn is_free(&self) -> bool {
        match self {
            Charge::Amount(a) => a.is_zero(),
            Charge::PerRail(p) => p.is_free(),
        }
    }

    /// The L402 price in msat alone (the fast path); `None` when L402 is
    /// not offered.
    pub(crate) fn l402(&self, rates: &dyn Rates) -> Result<Option<Msat>, ConvertError> {
        match self {
            Charge::PerRail(p) => Ok(p.l402.filter(|m| *m > Msat::ZERO)),
            Charge::Amount(a) => match to_unit(a, &Unit::Msat, rates)? {
                Amount::Msat(m) if m > Msat::ZERO => Ok(Some(m)),
                _ => Ok(None),
            },
        }
    }

    /// The price on each enabled rail (`l402`, the x402 asset's unit when
    /// x402 is enabled, `bitreq`), in the rail's own unit; a rail whose
    /// conversion fails is left out (see [`Charge::convert`] for the
    /// errors).
    ///
    /// ```
    /// use pay402_core::money::{Msat, Sat};
    /// use pay402_core::rates::{Amount, FixedRates, TokenUnit};
    /// use pay402_core::x402::TokenAmount;
    /// use pay402_server::paywall::Charge;
    /// let usdc = TokenUnit::new("eip155:8453", "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", 6);
    /// let rates = FixedRates::new().usd_cents_per_btc(10_000_000).usd_stablecoin(usdc.clone());
    /// let p = Charge::Amount(Amount::UsdCents(5)).per_rail(&rates, true, Some(&usdc), true);
    /// assert_eq!(p.l402, Some(Msat(50_000)));
    /// assert_eq!(p.x402, Some(TokenAmount::from_u64(50_000)));
    /// assert_eq!(p.bitreq, Some(Sat(50)));
    /// ```
    pub fn per_rail(
        &self,
        rates: &dyn Rates,
        l402: bool,
        x402: Option<&TokenUnit>,
        bitreq: bool,
    ) -> RailPrices {
        self.convert(rates, l402, x402, bitreq).0
    }

    /// As [`Charge::per_rail`], with the first conversion that failed (its
    /// rail left out).
    ///
    /// ```
    /// use pay402_core::offer::Rail;
    /// use pay402_core::rates::{Amount, FixedRates};
    /// use pay402_server::paywall::Charge;
    /// // No BTC price known: US cents cannot become sats.
    /// let (p, failed) = Charge::Amount(Amount::UsdCents(5)).convert(&FixedRates::new(), true, None, false);
    /// assert!(p.l402.is_none());
    /// let (rail, e) = failed.unwrap();
    /// assert_eq!((rail, pay402_core::problem::Reason::reason(&e)), (Rail::L402, "no_rate"));
    /// ```
    pub fn convert(
        &self,
        rates: &dyn Rates,
        l402: bool,
        x402: Option<&TokenUnit>,
        bitreq: bool,
    ) -> (RailPrices, Option<(Rail, ConvertError)>) {
        self.convert_for(
            rates,
            &Units {
                l402,
                x402,
                bitreq,
                mpp: false,
                mpp_evm: None,
            },
        )
    }

    /// The price in the unit of each rail `units` enables.
    pub(crate) fn convert_for(
        &self,
        rates: &dyn Rates,
        units: &Units<'_>,
    ) -> (RailPrices, Option<(Rail, ConvertError)>) {
        let a = match self {
            Charge::PerRail(p) => {
                let p = p.clone().without_zeros();
                return (
                    RailPrices {
                        l402: p.l402.filter(|_| units.l402),
                        x402: p.x402.filter(|_| units.x402.is_some()),
                        bitreq: p.bitreq.filter(|_| units.bitreq),
                        mpp: p.mpp.filter(|_| units.mpp),
                        mpp_evm: p.mpp_evm.filter(|_| units.mpp_evm.is_some()),
                    },
                    None,
                );
            }
            Charge::Amount(a) => a,
        };
        let mut failed = None;
        let mut one = |rail: Rail, unit: Unit| match to_unit(a, &unit, rates) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(rail = %rail, price = %a, error = %e, "paywall.price_unconvertible");
                failed.get_or_insert((rail, e));
                None
            }
        };
        let mut out = RailPrices::new();
        if units.l402
            && let Some(Amount::Msat(m)) = one(Rail::L402, Unit::Msat)
        {
            out.l402 = Some(m);
        }
        if let Some(t) = units.x402
            && let Some(Amount::Token(v, _)) = one(Rail::X402, Unit::Token(t.clone()))
        {
            out.x402 = Some(v);
        }
        if units.bitreq
            && let Some(Amount::Sat(s)) = one(Rail::BitRequests, Unit::Sat)
        {
            out.bitreq = Some(s);
        }
        if units.mpp
            && let Some(Amount::Sat(s)) = one(Rail::Mpp, Unit::Sat)
        {
            out.mpp = Some(s);
        }
        if let Some(t) = units.mpp_evm
            && let Some(Amount::Token(v, _)) = one(Rail::Mpp, Unit::Token(t.clone()))
        {
            out.mpp_evm = Some(v);
        }
        (out.without_zeros(), failed)
    }
}

/// The units a paywall's enabled rails are priced in.
#[derive(Clone, Debug, Default)]
pub(crate) struct Units<'a> {
    /// L402 (msat).
    pub(crate) l402: bool,
    /// x402's asset.
    pub(crate) x402: Option<&'a TokenUnit>,
    /// BitRequests (sat).
    pub(crate) bitreq: bool,
    /// MPP `lightning`/`charge` (sat).
    pub(crate) mpp: bool,
    /// MPP `evm`/`charge`'s asset.
    pub(crate) mpp_evm: Option<&'a TokenUnit>,
}

/// A boxed future of a request's [`Charge`] (`None` means free).
///
/// ```
/// use pay402_server::paywall::ChargeFuture;
/// let f: ChargeFuture = Box::pin(async { None });
/// # let _ = f;
/// ```
pub type ChargeFuture = Pin<Box<dyn Future<Output = Option<Charge>> + Send + 'static>>;

/// The price of a route: a fixed [`Charge`], or one computed per request by
/// an async function (`None` or a free charge means the request is free).
///
/// The paid retry is priced again, and each rail checks its payment against
/// that price: an L402 token must have paid at least it (the token carries
/// what it paid), an x402 payment must echo the offer made at it, a
/// BitRequests transfer must sign it, a channel token must cover it, and an
/// on-chain quote must be priced at least it (`quote_below_price`
/// otherwise). A price that changed between the 402 and the payment is
/// refused before anything is taken, with a fresh offer.
///
/// ```
/// use pay402_core::money::{Msat, Sat};
/// use pay402_core::rates::Amount;
/// use pay402_server::paywall::{Charge, PaywallPrice, RailPrices};
/// let five_cents = PaywallPrice::usd_cents(5);
/// let hundred_sats = PaywallPrice::sats(100);
/// let each = PaywallPrice::per_rail(RailPrices::new().l402(Msat(100_000)).bitreq(Sat(120)));
/// let by_size = PaywallPrice::dynamic(|req| async move {
///     let large = req.uri.query().is_some_and(|q| q.contains("size=large"));
///     Some(Charge::Amount(Amount::UsdCents(if large { 25 } else { 5 })))
/// });
/// # let _ = (five_cents, hundred_sats, each, by_size);
/// ```
#[derive(Clone)]
pub enum PaywallPrice {
    /// The same charge for every request.
    Fixed(Charge),
    /// A charge computed from the request.
    Dynamic(Arc<dyn Fn(PriceRequest) -> ChargeFuture + Send + Sync>),
}

impl PaywallPrice {
    /// One fixed amount in any unit, converted per rail.
    ///
    /// ```
    /// use pay402_core::rates::Amount;
    /// let p = pay402_server::paywall::PaywallPrice::amount(Amount::UsdCents(3));
    /// # let _ = p;
    /// ```
    pub fn amount(amount: Amount) -> PaywallPrice {
        PaywallPrice::Fixed(Charge::Amount(amount))
    }

    /// A fixed price in satoshis (L402 charges it in msat, exactly).
    ///
    /// ```
    /// use pay402_server::paywall::{Charge, PaywallPrice};
    /// assert!(matches!(PaywallPrice::sats(100), PaywallPrice::Fixed(Charge::Amount(_))));
    /// ```
    pub fn sats(sats: u64) -> PaywallPrice {
        PaywallPrice::amount(Amount::Sat(Sat(sats)))
    }

    /// A fixed price in US cents.
    ///
    /// ```
    /// let p = pay402_server::paywall::PaywallPrice::usd_cents(5);
    /// # let _ = p;
    /// ```
    pub fn usd_cents(cents: u64) -> PaywallPrice {
        PaywallPrice::amount(Amount::UsdCents(cents))
    }

    /// Fixed prices given per rail.
    ///
    /// ```
    /// use pay402_core::money::Msat;
    /// use pay402_server::paywall::{PaywallPrice, RailPrices};
    /// let p = PaywallPrice::per_rail(RailPrices::new().l402(Msat(1_000)));
    /// # let _ = p;
    /// ```
    pub fn per_rail(prices: RailPrices) -> PaywallPrice {
        PaywallPrice::Fixed(Charge::PerRail(prices))
    }

    /// A charge computed by an async function of the request (it sees the
    /// body only when the L402 configuration binds tokens to requests).
    ///
    /// ```
    /// let p = pay402_server::paywall::PaywallPrice::dynamic(|_req| async { None });
    /// # let _ = p;
    /// ```
    pub fn dynamic<F, Fut>(f: F) -> PaywallPrice
    where
        F: Fn(PriceRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Charge>> + Send + 'static,
    {
        PaywallPrice::Dynamic(Arc::new(move |r| Box::pin(f(r))))
    }
}

impl fmt::Debug for PaywallPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaywallPrice::Fixed(c) => f.debug_tuple("PaywallPrice::Fixed").field(c).finish(),
            PaywallPrice::Dynamic(_) => f.write_str("PaywallPrice::Dynamic(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pay402_core::rates::FixedRates;

    #[test]
    fn msat_and_sat_never_ask_the_rates() {
        struct NoRates;
        impl Rates for NoRates {
            fn rate(&self, _: &Unit, _: &Unit) -> Option<pay402_core::rates::Ratio> {
                None
            }
        }
        let p = Charge::Amount(Amount::Sat(Sat(7))).per_rail(&NoRates, true, None, true);
        assert_eq!((p.l402, p.bitreq), (Some(Msat(7_000)), Some(Sat(7))));
        let p = Charge::Amount(Amount::Msat(Msat(1))).per_rail(&NoRates, true, None, true);
        assert_eq!((p.l402, p.bitreq), (Some(Msat(1)), Some(Sat(1))));
    }

    #[test]
    fn overflow_leaves_the_rail_out() {
        let (p, failed) = Charge::Amount(Amount::Sat(Sat(u64::MAX))).convert(
            &FixedRates::new(),
            true,
            None,
            true,
        );
        assert_eq!((p.l402, p.bitreq), (None, Some(Sat(u64::MAX))));
        assert!(matches!(
            failed,
            Some((Rail::L402, ConvertError::Overflow { .. }))
        ));
    }

    #[test]
    fn per_rail_prices_only_offer_enabled_rails_and_drop_zeros() {
        let c = Charge::PerRail(RailPrices::new().l402(Msat(0)).bitreq(Sat(5)));
        let p = c.per_rail(&FixedRates::new(), true, None, true);
        assert_eq!((p.l402, p.bitreq), (None, Some(Sat(5))));
        let p = c.per_rail(&FixedRates::new(), true, None, false);
        assert!(p.is_empty());
    }
}
