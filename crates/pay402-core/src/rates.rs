//! Amounts in any unit a rail charges in, and exact conversion between them.
//!
//! A [`Paywall`](https://docs.rs/pay402-server) is priced once, in a unit
//! the operator picks (satoshis, US cents, or a token amount); each rail is
//! then charged in its own unit. A payer compares offers of different rails
//! in one reference unit. Both go through the [`Rates`] port: a table of
//! exact ratios between units ([`FixedRates`] by default; a live source
//! implements the same synchronous trait from a cache it refreshes itself).
//!
//! Conversion is integer arithmetic on 256-bit values: `value × num / den`,
//! rounded in the direction the caller names ([`Rounding`]). A server rounds
//! a price **up** (it never charges less than it asked for); a payer rounds
//! an offer **up** when it checks it against a budget (it never spends more
//! than it allowed itself).
//!
//! ```
//! use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, Unit, TokenUnit};
//! use pay402_core::money::Sat;
//! let usdc = TokenUnit::new("eip155:8453", "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", 6);
//! let rates = FixedRates::new()
//!     .usd_cents_per_btc(10_000_000)          // 1 BTC = 100 000.00 USD
//!     .usd_stablecoin(usdc.clone());          // 1 USDC = 1 USD
//! // A price of 5 US cents, charged in sats and in USDC base units:
//! let price = Amount::UsdCents(5);
//! assert_eq!(rates.convert(&price, &Unit::Sat, Rounding::Up).unwrap(), Amount::Sat(Sat(50)));
//! assert_eq!(
//!     rates.convert(&price, &Unit::Token(usdc), Rounding::Up).unwrap().to_string(),
//!     "50000 base units of 0x833589fcd6edb6e08f4c7c32d4f71b54bda02913 on eip155:8453",
//! );
//! ```

use std::collections::HashMap;
use std::fmt;

use alloy_primitives::U256;

use crate::money::{Msat, Sat};
use crate::problem::Reason;
use crate::x402::TokenAmount;

/// A token: the CAIP-2 network, the asset (contract address, compared
/// case-insensitively: stored lowercase) and its decimals.
///
/// ```
/// use pay402_core::rates::TokenUnit;
/// let t = TokenUnit::new("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", 6);
/// assert_eq!(t.asset(), "0x036cbd53842c5426634e7929541ec2318f3dcf7e");
/// assert_eq!(t.decimals(), 6);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenUnit {
    network: String,
    asset: String,
    decimals: u8,
}

impl TokenUnit {
    /// The token `asset` on `network` with `decimals` decimals.
    ///
    /// ```
    /// let t = pay402_core::rates::TokenUnit::new("eip155:8453", "0xAB", 6);
    /// assert_eq!(t.network(), "eip155:8453");
    /// ```
    pub fn new(network: impl Into<String>, asset: impl AsRef<str>, decimals: u8) -> TokenUnit {
        TokenUnit {
            network: network.into(),
            asset: asset.as_ref().to_ascii_lowercase(),
            decimals,
        }
    }

    /// The CAIP-2 network id.
    ///
    /// ```
    /// assert_eq!(pay402_core::rates::TokenUnit::new("eip155:1", "0xab", 6).network(), "eip155:1");
    /// ```
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The asset, lowercase.
    ///
    /// ```
    /// assert_eq!(pay402_core::rates::TokenUnit::new("eip155:1", "0xAB", 6).asset(), "0xab");
    /// ```
    pub fn asset(&self) -> &str {
        &self.asset
    }

    /// The token's decimals.
    ///
    /// ```
    /// assert_eq!(pay402_core::rates::TokenUnit::new("eip155:1", "0xab", 18).decimals(), 18);
    /// ```
    pub fn decimals(&self) -> u8 {
        self.decimals
    }
}

/// A unit of account.
///
/// ```
/// use pay402_core::rates::Unit;
/// assert_eq!(Unit::Msat.to_string(), "msat");
/// assert_eq!(Unit::UsdCents.to_string(), "US cents");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// Millisatoshis (Lightning).
    Msat,
    /// Satoshis (on-chain Bitcoin).
    Sat,
    /// US cents.
    UsdCents,
    /// Base units of a token.
    Token(TokenUnit),
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Msat => f.write_str("msat"),
            Unit::Sat => f.write_str("sat"),
            Unit::UsdCents => f.write_str("US cents"),
            Unit::Token(t) => write!(f, "base units of {} on {}", t.asset, t.network),
        }
    }
}

/// An amount with its unit.
///
/// ```
/// use pay402_core::rates::{Amount, Unit};
/// use pay402_core::money::Sat;
/// let a = Amount::Sat(Sat(21));
/// assert_eq!(a.unit(), Unit::Sat);
/// assert_eq!(a.to_string(), "21 sat");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Amount {
    /// Millisatoshis.
    Msat(Msat),
    /// Satoshis.
    Sat(Sat),
    /// US cents.
    UsdCents(u64),
    /// Base units of a token.
    Token(TokenAmount, TokenUnit),
}

impl Amount {
    /// The unit of this amount.
    ///
    /// ```
    /// use pay402_core::rates::{Amount, Unit};
    /// assert_eq!(Amount::UsdCents(3).unit(), Unit::UsdCents);
    /// ```
    pub fn unit(&self) -> Unit {
        match self {
            Amount::Msat(_) => Unit::Msat,
            Amount::Sat(_) => Unit::Sat,
            Amount::UsdCents(_) => Unit::UsdCents,
            Amount::Token(_, t) => Unit::Token(t.clone()),
        }
    }

    /// The number of units, as a 256-bit integer.
    ///
    /// ```
    /// use pay402_core::rates::Amount;
    /// assert_eq!(Amount::UsdCents(3).value(), alloy_primitives::U256::from(3u64));
    /// ```
    pub fn value(&self) -> U256 {
        match self {
            Amount::Msat(m) => U256::from(m.0),
            Amount::Sat(s) => U256::from(s.0),
            Amount::UsdCents(c) => U256::from(*c),
            Amount::Token(a, _) => a.0,
        }
    }

    /// `value` units of `unit`; `None` when it does not fit the unit's
    /// integer type (64 bits for msat, sat and cents).
    ///
    /// ```
    /// use pay402_core::rates::{Amount, Unit};
    /// use pay402_core::money::Msat;
    /// assert_eq!(Amount::from_value(alloy_primitives::U256::from(5u64), &Unit::Msat), Some(Amount::Msat(Msat(5))));
    /// assert_eq!(Amount::from_value(alloy_primitives::U256::MAX, &Unit::Msat), None);
    /// ```
    pub fn from_value(value: U256, unit: &Unit) -> Option<Amount> {
        let small = || u64::try_from(value).ok();
        Some(match unit {
            Unit::Msat => Amount::Msat(Msat(small()?)),
            Unit::Sat => Amount::Sat(Sat(small()?)),
            Unit::UsdCents => Amount::UsdCents(small()?),
            Unit::Token(t) => Amount::Token(TokenAmount(value), t.clone()),
        })
    }

    /// Whether the amount is zero.
    ///
    /// ```
    /// assert!(pay402_core::rates::Amount::UsdCents(0).is_zero());
    /// ```
    pub fn is_zero(&self) -> bool {
        self.value().is_zero()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value(), self.unit())
    }
}

/// How a conversion that does not come out even is rounded.
///
/// ```
/// use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, Unit};
/// use pay402_core::money::{Msat, Sat};
/// let r = FixedRates::new();
/// assert_eq!(r.convert(&Amount::Msat(Msat(1_500)), &Unit::Sat, Rounding::Up).unwrap(), Amount::Sat(Sat(2)));
/// assert_eq!(r.convert(&Amount::Msat(Msat(1_500)), &Unit::Sat, Rounding::Down).unwrap(), Amount::Sat(Sat(1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Towards +∞: what a server charges, and what a payer counts against
    /// its budget.
    Up,
    /// Towards zero.
    Down,
}

/// An exact exchange rate: one unit of `from` is `num / den` units of `to`.
///
/// ```
/// use pay402_core::rates::Ratio;
/// let r = Ratio::new(1, 1_000).unwrap(); // 1 msat = 1/1000 sat
/// assert_eq!(r.inverse(), Ratio::new(1_000, 1).unwrap());
/// assert!(Ratio::new(1, 0).is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    num: U256,
    den: U256,
}

impl Ratio {
    /// `num / den`; `None` when either is zero.
    ///
    /// ```
    /// assert!(pay402_core::rates::Ratio::new(0, 1).is_none());
    /// ```
    pub fn new(num: u128, den: u128) -> Option<Ratio> {
        (num != 0 && den != 0).then(|| Ratio {
            num: U256::from(num),
            den: U256::from(den),
        })
    }

    /// `den / num`.
    ///
    /// ```
    /// let r = pay402_core::rates::Ratio::new(2, 3).unwrap();
    /// assert_eq!(r.inverse().inverse(), r);
    /// ```
    pub fn inverse(self) -> Ratio {
        Ratio {
            num: self.den,
            den: self.num,
        }
    }

    /// `self` then `next` (`a→b` then `b→c` gives `a→c`); `None` on overflow.
    ///
    /// ```
    /// use pay402_core::rates::Ratio;
    /// let a = Ratio::new(1, 1_000).unwrap();
    /// let b = Ratio::new(3, 1).unwrap();
    /// assert_eq!(a.then(b).unwrap(), Ratio::new(3, 1_000).unwrap());
    /// ```
    pub fn then(self, next: Ratio) -> Option<Ratio> {
        Some(
            Ratio {
                num: self.num.checked_mul(next.num)?,
                den: self.den.checked_mul(next.den)?,
            }
            .reduced(),
        )
    }

    /// The same ratio in lowest terms.
    fn reduced(self) -> Ratio {
        let (mut a, mut b) = (self.num, self.den);
        while !b.is_zero() {
            let r = a % b;
            a = b;
            b = r;
        }
        if a.is_zero() {
            return self;
        }
        Ratio {
            num: self.num / a,
            den: self.den / a,
        }
    }

    /// `value × num / den`, rounded as asked; `None` on overflow.
    ///
    /// ```
    /// use alloy_primitives::U256;
    /// use pay402_core::rates::{Ratio, Rounding};
    /// let r = Ratio::new(1, 3).unwrap();
    /// assert_eq!(r.apply(U256::from(10u64), Rounding::Up), Some(U256::from(4u64)));
    /// assert_eq!(r.apply(U256::from(10u64), Rounding::Down), Some(U256::from(3u64)));
    /// ```
    pub fn apply(self, value: U256, rounding: Rounding) -> Option<U256> {
        let product = value.checked_mul(self.num)?;
        let (q, r) = product.div_rem(self.den);
        match rounding {
            Rounding::Up if !r.is_zero() => q.checked_add(U256::from(1u8)),
            _ => Some(q),
        }
    }
}

/// Why an amount could not be converted.
///
/// ```
/// use pay402_core::problem::Reason;
/// use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, Unit};
/// let e = FixedRates::new().convert(&Amount::UsdCents(1), &Unit::Sat, Rounding::Up).unwrap_err();
/// assert_eq!(e.reason(), "no_rate");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// No rate is known between the two units.
    #[error("no rate from {from} to {to}")]
    NoRate {
        /// The source unit.
        from: Unit,
        /// The target unit.
        to: Unit,
    },
    /// The result does not fit the target unit.
    #[error("converting to {to} overflows")]
    Overflow {
        /// The target unit.
        to: Unit,
    },
}

impl Reason for ConvertError {
    fn reason(&self) -> &'static str {
        match self {
            ConvertError::NoRate { .. } => "no_rate",
            ConvertError::Overflow { .. } => "amount_overflow",
        }
    }
    fn status(&self) -> u16 {
        500
    }
}

/// The exchange-rate port: how many units of `to` one unit of `from` is
/// worth, exactly. Synchronous and sans-IO: a live source refreshes its own
/// cache and answers from it.
///
/// ```
/// use pay402_core::rates::{FixedRates, Rates, Ratio, Unit};
/// let r = FixedRates::new().usd_cents_per_btc(10_000_000);
/// // 1 sat = 10 000 000 / 100 000 000 cents
/// assert_eq!(r.rate(&Unit::Sat, &Unit::UsdCents), Some(Ratio::new(10_000_000, 100_000_000).unwrap()));
/// ```
pub trait Rates: Send + Sync {
    /// One `from` is worth `rate(from, to)` of `to`; `None` if unknown.
    /// Implementations answer the identity for `from == to`.
    fn rate(&self, from: &Unit, to: &Unit) -> Option<Ratio>;

    /// `amount` in `to`, rounded as asked.
    ///
    /// # Errors
    ///
    /// [`ConvertError::NoRate`] without a rate, [`ConvertError::Overflow`]
    /// when the result does not fit the target unit.
    ///
    /// ```
    /// use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, Unit};
    /// use pay402_core::money::{Msat, Sat};
    /// let r = FixedRates::new();
    /// assert_eq!(r.convert(&Amount::Sat(Sat(2)), &Unit::Msat, Rounding::Up).unwrap(), Amount::Msat(Msat(2_000)));
    /// ```
    fn convert(
        &self,
        amount: &Amount,
        to: &Unit,
        rounding: Rounding,
    ) -> Result<Amount, ConvertError> {
        let from = amount.unit();
        let ratio = self.rate(&from, to).ok_or_else(|| ConvertError::NoRate {
            from: from.clone(),
            to: to.clone(),
        })?;
        ratio
            .apply(amount.value(), rounding)
            .and_then(|v| Amount::from_value(v, to))
            .ok_or_else(|| ConvertError::Overflow { to: to.clone() })
    }
}

/// Fixed exchange rates: msat↔sat always; others as set. A rate set one
/// way is also used the other way (inverted), and a conversion with no
/// direct rate goes through one intermediate unit when that connects them
/// (sat → US cents → USDC).
///
/// ```
/// use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, TokenUnit, Unit};
/// use pay402_core::money::Msat;
/// let usdc = TokenUnit::new("eip155:84532", "0x036cbd53842c5426634e7929541ec2318f3dcf7e", 6);
/// let r = FixedRates::new().usd_cents_per_btc(10_000_000).usd_stablecoin(usdc.clone());
/// // 10 000 USDC base units (1 US cent) in msat: through sat, then cents.
/// let a = Amount::Token(pay402_core::x402::TokenAmount::from_u64(10_000), usdc);
/// assert_eq!(r.convert(&a, &Unit::Msat, Rounding::Up).unwrap(), Amount::Msat(Msat(10_000)));
/// ```
#[derive(Clone, Debug, Default)]
pub struct FixedRates {
    table: HashMap<(Unit, Unit), Ratio>,
}

impl FixedRates {
    /// msat↔sat only.
    ///
    /// ```
    /// use pay402_core::rates::{FixedRates, Rates, Unit};
    /// assert!(FixedRates::new().rate(&Unit::Sat, &Unit::UsdCents).is_none());
    /// ```
    pub fn new() -> FixedRates {
        FixedRates::default()
    }

    /// Sets one `from` = `num / den` `to` (and the inverse). A zero `num`
    /// or `den` is ignored.
    ///
    /// ```
    /// use pay402_core::rates::{FixedRates, Rates, Ratio, Unit};
    /// let r = FixedRates::new().set(Unit::UsdCents, Unit::Sat, 20, 1);
    /// assert_eq!(r.rate(&Unit::Sat, &Unit::UsdCents), Some(Ratio::new(1, 20).unwrap()));
    /// ```
    pub fn set(mut self, from: Unit, to: Unit, num: u128, den: u128) -> FixedRates {
        if let Some(r) = Ratio::new(num, den) {
            self.table.insert((to.clone(), from.clone()), r.inverse());
            self.table.insert((from, to), r);
        }
        self
    }

    /// The bitcoin price: one BTC (100 000 000 sat) is `cents` US cents.
    ///
    /// ```
    /// use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, Unit};
    /// let r = FixedRates::new().usd_cents_per_btc(6_000_000); // 60 000 USD
    /// assert_eq!(r.convert(&Amount::UsdCents(6), &Unit::Sat, Rounding::Up).unwrap().to_string(), "100 sat");
    /// ```
    pub fn usd_cents_per_btc(self, cents: u64) -> FixedRates {
        self.set(Unit::Sat, Unit::UsdCents, u128::from(cents), 100_000_000)
    }

    /// A token worth one US dollar per whole token (USDC): one cent is
    /// `10^(decimals − 2)` base units.
    ///
    /// ```
    /// use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, TokenUnit, Unit};
    /// let usdc = TokenUnit::new("eip155:8453", "0xab", 6);
    /// let r = FixedRates::new().usd_stablecoin(usdc.clone());
    /// assert_eq!(r.convert(&Amount::UsdCents(1), &Unit::Token(usdc), Rounding::Up).unwrap().value(), alloy_primitives::U256::from(10_000u64));
    /// ```
    pub fn usd_stablecoin(self, token: TokenUnit) -> FixedRates {
        // 1 cent = 10^decimals / 100 base units, kept exact as a ratio.
        let whole = 10u128.saturating_pow(u32::from(token.decimals.min(36)));
        self.set(Unit::UsdCents, Unit::Token(token), whole, 100)
    }

    fn direct(&self, from: &Unit, to: &Unit) -> Option<Ratio> {
        if from == to {
            return Ratio::new(1, 1);
        }
        match (from, to) {
            (Unit::Msat, Unit::Sat) => return Ratio::new(1, 1_000),
            (Unit::Sat, Unit::Msat) => return Ratio::new(1_000, 1),
            _ => {}
        }
        self.table.get(&(from.clone(), to.clone())).copied()
    }
}

impl Rates for FixedRates {
    /// The direct rate, else the product of the rates along the shortest
    /// chain of known rates (breadth-first over msat, sat and every unit in
    /// the table); `None` if the units are not connected or the product
    /// overflows 256 bits.
    fn rate(&self, from: &Unit, to: &Unit) -> Option<Ratio> {
        if let Some(r) = self.direct(from, to) {
            return Some(r);
        }
        let mut units: Vec<&Unit> = vec![&Unit::Msat, &Unit::Sat];
        for (a, _) in self.table.keys() {
            if !units.contains(&a) {
                units.push(a);
            }
        }
        let mut reached: Vec<&Unit> = vec![from];
        let mut frontier: Vec<(&Unit, Ratio)> = vec![(from, Ratio::new(1, 1)?)];
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for (u, acc) in frontier {
                for v in &units {
                    if reached.contains(v) {
                        continue;
                    }
                    let Some(step) = self.direct(u, v) else {
                        continue;
                    };
                    let total = acc.then(step)?;
                    if let Some(last) = self.direct(v, to) {
                        return total.then(last);
                    }
                    reached.push(v);
                    next.push((*v, total));
                }
            }
            frontier = next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usdc() -> TokenUnit {
        TokenUnit::new("eip155:8453", "0xAB", 6)
    }

    fn rates() -> FixedRates {
        FixedRates::new()
            .usd_cents_per_btc(10_000_000)
            .usd_stablecoin(usdc())
    }

    #[test]
    fn conversions_are_exact_and_round_as_asked() {
        let r = rates();
        // 1 cent = 10 sat = 10 000 msat = 10 000 USDC base units.
        let cent = Amount::UsdCents(1);
        assert_eq!(
            r.convert(&cent, &Unit::Sat, Rounding::Up).unwrap(),
            Amount::Sat(Sat(10))
        );
        assert_eq!(
            r.convert(&cent, &Unit::Msat, Rounding::Up).unwrap(),
            Amount::Msat(Msat(10_000))
        );
        let usdc_cent = r
            .convert(&cent, &Unit::Token(usdc()), Rounding::Up)
            .unwrap();
        assert_eq!(usdc_cent.value(), U256::from(10_000u64));
        // msat → token needs two hops (msat → sat → cents → token).
        assert_eq!(
            r.convert(
                &Amount::Msat(Msat(10_000)),
                &Unit::Token(usdc()),
                Rounding::Up
            )
            .unwrap(),
            usdc_cent
        );
        // 1 sat = 0.1 cent: up gives 1, down gives 0.
        assert_eq!(
            r.convert(&Amount::Sat(Sat(1)), &Unit::UsdCents, Rounding::Up)
                .unwrap(),
            Amount::UsdCents(1)
        );
        assert_eq!(
            r.convert(&Amount::Sat(Sat(1)), &Unit::UsdCents, Rounding::Down)
                .unwrap(),
            Amount::UsdCents(0)
        );
        // Identity.
        assert_eq!(
            r.convert(&cent, &Unit::UsdCents, Rounding::Down).unwrap(),
            cent
        );
    }

    #[test]
    fn missing_rates_and_overflow_are_errors() {
        let r = FixedRates::new();
        assert_eq!(
            r.convert(&Amount::UsdCents(1), &Unit::Sat, Rounding::Up)
                .unwrap_err()
                .reason(),
            "no_rate"
        );
        let big = Amount::Token(TokenAmount(U256::MAX), usdc());
        let e = rates()
            .convert(&big, &Unit::Msat, Rounding::Up)
            .unwrap_err();
        assert_eq!(e.reason(), "amount_overflow");
        assert_eq!(
            FixedRates::new()
                .convert(&Amount::Sat(Sat(u64::MAX)), &Unit::Msat, Rounding::Up)
                .unwrap_err()
                .reason(),
            "amount_overflow"
        );
    }

    #[test]
    fn tokens_compare_case_insensitively() {
        assert_eq!(
            TokenUnit::new("eip155:8453", "0xAB", 6),
            TokenUnit::new("eip155:8453", "0xab", 6)
        );
    }
}
