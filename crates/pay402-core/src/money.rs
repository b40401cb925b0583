//! Exact money amounts with the unit in the type.
//!
//! Amounts are unsigned integers; there are no floats anywhere in pay402.
//! Conversions that could lose precision or overflow are checked.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount in millisatoshis (1/1000 of a satoshi), the unit of Lightning invoices.
///
/// ```
/// use pay402_core::money::{Msat, Sat};
/// let price = Sat(100).to_msat().unwrap();
/// assert_eq!(price, Msat(100_000));
/// assert_eq!(price.to_string(), "100000 msat");
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Msat(pub u64);

/// An amount in satoshis.
///
/// ```
/// use pay402_core::money::{Msat, Sat};
/// assert_eq!(Msat(2_500).to_sat_floor(), Sat(2));
/// assert_eq!(Msat(2_500).to_sat_ceil(), Sat(3));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Sat(pub u64);

impl Msat {
    /// Zero millisatoshis.
    ///
    /// ```
    /// assert_eq!(pay402_core::money::Msat::ZERO.0, 0);
    /// ```
    pub const ZERO: Msat = Msat(0);

    /// Whole satoshis, rounding down.
    ///
    /// ```
    /// assert_eq!(pay402_core::money::Msat(1_999).to_sat_floor().0, 1);
    /// ```
    pub const fn to_sat_floor(self) -> Sat {
        Sat(self.0 / 1000)
    }

    /// Whole satoshis, rounding up (what a payer must at least spend).
    ///
    /// ```
    /// assert_eq!(pay402_core::money::Msat(1_001).to_sat_ceil().0, 2);
    /// ```
    pub const fn to_sat_ceil(self) -> Sat {
        Sat(self.0.div_ceil(1000))
    }

    /// Checked addition.
    ///
    /// ```
    /// use pay402_core::money::Msat;
    /// assert_eq!(Msat(1).checked_add(Msat(2)), Some(Msat(3)));
    /// assert_eq!(Msat(u64::MAX).checked_add(Msat(1)), None);
    /// ```
    pub const fn checked_add(self, other: Msat) -> Option<Msat> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(Msat(v)),
            None => None,
        }
    }

    /// Checked subtraction.
    ///
    /// ```
    /// use pay402_core::money::Msat;
    /// assert_eq!(Msat(3).checked_sub(Msat(2)), Some(Msat(1)));
    /// assert_eq!(Msat(1).checked_sub(Msat(2)), None);
    /// ```
    pub const fn checked_sub(self, other: Msat) -> Option<Msat> {
        match self.0.checked_sub(other.0) {
            Some(v) => Some(Msat(v)),
            None => None,
        }
    }
}

impl Sat {
    /// Millisatoshis, or `None` on overflow.
    ///
    /// ```
    /// use pay402_core::money::{Msat, Sat};
    /// assert_eq!(Sat(1).to_msat(), Some(Msat(1000)));
    /// assert_eq!(Sat(u64::MAX).to_msat(), None);
    /// ```
    pub const fn to_msat(self) -> Option<Msat> {
        match self.0.checked_mul(1000) {
            Some(v) => Some(Msat(v)),
            None => None,
        }
    }
}

impl fmt::Display for Msat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} msat", self.0)
    }
}

impl fmt::Display for Sat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat", self.0)
    }
}
