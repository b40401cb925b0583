//! How a [`Payer`](crate::Payer) picks one offer among those it can pay
//! ([`Choice`]), and its budgets in the reference unit.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::U256;
use pay402_core::offer::{Offer, Rail};
use pay402_core::rates::{Amount, Unit};

use super::error::RefusalReason;

/// An offer the payer can pay, with its cost in the reference unit
/// (rounded up), when known.
///
/// ```
/// # fn f(c: &pay402_client::Candidate<'_>) {
/// println!("{} costs {:?}", c.offer.label(), c.cost);
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Candidate<'a> {
    /// The offer.
    pub offer: &'a Offer,
    /// Its cost in the reference unit, rounded up; `None` without a rate.
    pub cost: Option<&'a Amount>,
    /// The payer's own weight for it, in thousandths: the `Accept-Payment`
    /// q of an MPP offer's `method/intent`, `1000` for other rails.
    pub weight: u16,
}

/// A user's choice among candidates: the index of the one to pay, or
/// `None` to pay nothing.
///
/// ```
/// use pay402_client::{Choice, ChooseFn};
/// let f: ChooseFn = std::sync::Arc::new(|c| (!c.is_empty()).then_some(0));
/// let choice = Choice::Custom(f);
/// # let _ = choice;
/// ```
pub type ChooseFn = Arc<dyn Fn(&[Candidate<'_>]) -> Option<usize> + Send + Sync>;

/// How the payer picks one offer among those it can pay.
///
/// ```
/// use pay402_client::Choice;
/// use pay402_core::offer::Rail;
/// let order = Choice::RailOrder(vec![Rail::L402, Rail::X402]);
/// let mine = Choice::custom(|cands| cands.iter().position(|c| c.offer.rail == Rail::BitRequests));
/// assert!(matches!(Choice::default(), Choice::Cheapest));
/// # let _ = (order, mine);
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Choice {
    /// The cheapest in the reference unit (costs rounded up); ties by the
    /// higher [`Candidate::weight`], then, and for offers without a rate
    /// (last), in the server's order.
    #[default]
    Cheapest,
    /// The first payable offer of the first rail listed (of the highest
    /// [`Candidate::weight`] within it), then the next rail; rails not
    /// listed are never paid.
    RailOrder(Vec<Rail>),
    /// A user closure over the candidates (see [`Choice::custom`]).
    Custom(ChooseFn),
}

impl Choice {
    /// A [`Choice::Custom`] from a closure.
    ///
    /// ```
    /// let first = pay402_client::Choice::custom(|c| (!c.is_empty()).then_some(0));
    /// # let _ = first;
    /// ```
    pub fn custom<F>(f: F) -> Choice
    where
        F: Fn(&[Candidate<'_>]) -> Option<usize> + Send + Sync + 'static,
    {
        Choice::Custom(Arc::new(f))
    }

    /// Whether an offer of `rail` may be paid at all under this choice.
    pub(crate) fn allows(&self, rail: Rail) -> bool {
        match self {
            Choice::RailOrder(order) => order.contains(&rail),
            _ => true,
        }
    }

    /// The index (into `candidates`) to pay.
    pub(crate) fn pick(&self, candidates: &[Candidate<'_>]) -> Option<usize> {
        match self {
            Choice::Cheapest => candidates
                .iter()
                .enumerate()
                .min_by_key(|(i, c)| {
                    (
                        c.cost.is_none(),
                        c.cost.map(Amount::value),
                        std::cmp::Reverse(c.weight),
                        *i,
                    )
                })
                .map(|(i, _)| i),
            Choice::RailOrder(order) => order.iter().find_map(|rail| {
                candidates
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.offer.rail == *rail)
                    .min_by_key(|(i, c)| (std::cmp::Reverse(c.weight), *i))
                    .map(|(i, _)| i)
            }),
            Choice::Custom(f) => f(candidates).filter(|i| *i < candidates.len()),
        }
    }
}

impl fmt::Debug for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Cheapest => f.write_str("Cheapest"),
            Choice::RailOrder(o) => f.debug_tuple("RailOrder").field(o).finish(),
            Choice::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The budgets, in the reference unit.
#[derive(Clone, Debug)]
pub(crate) struct Budgets {
    pub(crate) unit: Unit,
    pub(crate) max_price: Option<U256>,
    pub(crate) per_origin: Option<(U256, Duration)>,
    pub(crate) total: Option<(U256, Duration)>,
}

impl Budgets {
    /// Whether an offer's cost must be known to judge it.
    pub(crate) fn need_cost(&self) -> bool {
        self.max_price.is_some() || self.per_origin.is_some() || self.total.is_some()
    }

    fn amount(&self, v: U256) -> Amount {
        Amount::from_value(v, &self.unit).unwrap_or(Amount::UsdCents(u64::MAX))
    }

    /// The per-request check.
    pub(crate) fn check_price(&self, cost: &Amount) -> Result<(), RefusalReason> {
        match self.max_price {
            // Zero pays nothing, not even a free offer.
            Some(max) if max.is_zero() || cost.value() > max => Err(RefusalReason::OverMaxPrice {
                cost: Box::new(cost.clone()),
                max: Box::new(self.amount(max)),
            }),
            _ => Ok(()),
        }
    }

    /// The period checks, given what was spent in each window.
    pub(crate) fn check_spent(
        &self,
        cost: &Amount,
        spent_origin: U256,
        spent_total: U256,
    ) -> Result<(), RefusalReason> {
        if let Some((limit, _)) = self.per_origin {
            let remaining = limit.saturating_sub(spent_origin);
            if cost.value() > remaining {
                return Err(RefusalReason::OverOriginBudget {
                    cost: Box::new(cost.clone()),
                    remaining: Box::new(self.amount(remaining)),
                });
            }
        }
        if let Some((limit, _)) = self.total {
            let remaining = limit.saturating_sub(spent_total);
            if cost.value() > remaining {
                return Err(RefusalReason::OverTotalBudget {
                    cost: Box::new(cost.clone()),
                    remaining: Box::new(self.amount(remaining)),
                });
            }
        }
        Ok(())
    }
}

/// The value of a stored cost (`"<value> <unit>"`) when it is in `unit`.
pub(crate) fn parse_cost(cost: &str, unit: &Unit) -> Option<U256> {
    let (value, u) = cost.split_once(' ')?;
    (u == unit.to_string())
        .then(|| U256::from_str_radix(value, 10).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pay402_core::money::Sat;

    #[test]
    fn zero_max_pays_nothing_and_costs_parse_back() {
        let b = Budgets {
            unit: Unit::Sat,
            max_price: Some(U256::ZERO),
            per_origin: None,
            total: None,
        };
        assert!(b.check_price(&Amount::Sat(Sat(0))).is_err());
        assert_eq!(parse_cost("21 sat", &Unit::Sat), Some(U256::from(21u64)));
        assert_eq!(parse_cost("21 msat", &Unit::Sat), None);
        assert_eq!(parse_cost("x sat", &Unit::Sat), None);
        assert_eq!(
            parse_cost(&Amount::UsdCents(7).to_string(), &Unit::UsdCents),
            Some(U256::from(7u64))
        );
    }
}
