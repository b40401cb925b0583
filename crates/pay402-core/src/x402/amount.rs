//! Token amounts and other `uint256` values carried as decimal strings.
//!
//! x402 writes every on-chain number as a JSON string of decimal digits.
//! They are parsed strictly (ASCII digits only, at most 78 of them, no sign,
//! no whitespace, no underscores) into [`U256`]; there are no floats.

use std::fmt;

use alloy_primitives::U256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest decimal string accepted (`2^256 - 1` has 78 digits).
///
/// ```
/// use pay402_core::x402::amount::{parse_u256_decimal, MAX_DECIMAL_DIGITS};
/// assert!(parse_u256_decimal(&"9".repeat(MAX_DECIMAL_DIGITS + 1)).is_err());
/// ```
pub const MAX_DECIMAL_DIGITS: usize = 78;

/// Why a decimal `uint256` string was rejected.
///
/// ```
/// use pay402_core::x402::amount::{parse_u256_decimal, DecimalError};
/// assert_eq!(parse_u256_decimal("1.5"), Err(DecimalError::NotDecimal));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// The string is empty.
    #[error("empty number")]
    Empty,
    /// A character is not an ASCII digit.
    #[error("not a decimal integer")]
    NotDecimal,
    /// The value does not fit in 256 bits.
    #[error("number exceeds 256 bits")]
    Overflow,
}

/// Parses a strict decimal string into a [`U256`].
///
/// ```
/// use pay402_core::x402::amount::parse_u256_decimal;
/// use alloy_primitives::U256;
/// assert_eq!(parse_u256_decimal("10000").unwrap(), U256::from(10_000u64));
/// assert!(parse_u256_decimal("-1").is_err());
/// assert!(parse_u256_decimal("1_000").is_err());
/// ```
pub fn parse_u256_decimal(s: &str) -> Result<U256, DecimalError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(DecimalError::Empty);
    }
    if b.len() > MAX_DECIMAL_DIGITS {
        return Err(DecimalError::Overflow);
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return Err(DecimalError::NotDecimal);
    }
    // Fast path: up to 19 digits fit in a u64.
    if b.len() <= 19 {
        let v = b
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        return Ok(U256::from(v));
    }
    let ten = U256::from(10u8);
    let mut acc = U256::ZERO;
    for &d in b {
        acc = acc
            .checked_mul(ten)
            .and_then(|a| a.checked_add(U256::from(d - b'0')))
            .ok_or(DecimalError::Overflow)?;
    }
    Ok(acc)
}

macro_rules! decimal_u256 {
    ($(#[$meta:meta])* $name:ident, $unit:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub U256);

        impl $name {
            /// Parses a strict decimal string.
            ///
            /// ```
            #[doc = concat!("use pay402_core::x402::amount::", stringify!($name), ";")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::parse(\"42\").unwrap(), ", stringify!($name), "::from_u64(42));")]
            /// ```
            pub fn parse(s: &str) -> Result<$name, DecimalError> {
                parse_u256_decimal(s).map($name)
            }

            /// From a `u64`.
            ///
            /// ```
            #[doc = concat!("use pay402_core::x402::amount::", stringify!($name), ";")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::from_u64(7).to_string(), \"7\");")]
            /// ```
            pub const fn from_u64(v: u64) -> $name {
                $name(U256::from_limbs([v, 0, 0, 0]))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a decimal string (", $unit, ")"))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::parse(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

decimal_u256!(
    /// An amount in the token's base units (e.g. 1 = 0.000001 USDC), as a `uint256`.
    ///
    /// On the wire it is a decimal string (`"10000"`).
    ///
    /// ```
    /// use pay402_core::x402::TokenAmount;
    /// let a: TokenAmount = serde_json::from_str("\"10000\"").unwrap();
    /// assert_eq!(a, TokenAmount::from_u64(10_000));
    /// assert_eq!(serde_json::to_string(&a).unwrap(), "\"10000\"");
    /// assert!(serde_json::from_str::<TokenAmount>("10000").is_err()); // numbers must be strings
    /// assert!(serde_json::from_str::<TokenAmount>("\"0.01\"").is_err()); // no decimals
    /// ```
    TokenAmount,
    "token base units"
);

decimal_u256!(
    /// A `uint256` in seconds since the UNIX epoch (`validAfter`, `validBefore`, `deadline`).
    ///
    /// ```
    /// use pay402_core::x402::EvmTimestamp;
    /// let t: EvmTimestamp = serde_json::from_str("\"1740672089\"").unwrap();
    /// assert_eq!(t, EvmTimestamp::from_u64(1_740_672_089));
    /// ```
    EvmTimestamp,
    "unix seconds"
);

impl TokenAmount {
    /// Converts a human decimal amount (`"0.01"`) into base units for a
    /// token with `decimals` decimals, exactly: more fractional digits than
    /// `decimals` is an error, never a rounding.
    ///
    /// ```
    /// use pay402_core::x402::TokenAmount;
    /// assert_eq!(TokenAmount::from_human("0.01", 6).unwrap(), TokenAmount::from_u64(10_000));
    /// assert_eq!(TokenAmount::from_human("12", 6).unwrap(), TokenAmount::from_u64(12_000_000));
    /// assert!(TokenAmount::from_human("0.0000001", 6).is_err());
    /// assert!(TokenAmount::from_human("1e3", 6).is_err());
    /// ```
    pub fn from_human(s: &str, decimals: u8) -> Result<TokenAmount, DecimalError> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(DecimalError::Empty);
        }
        if frac.len() > usize::from(decimals) || (s.contains('.') && frac.is_empty()) {
            return Err(DecimalError::NotDecimal);
        }
        let mut digits = String::with_capacity(int.len() + usize::from(decimals));
        digits.push_str(if int.is_empty() { "0" } else { int });
        digits.push_str(frac);
        for _ in frac.len()..usize::from(decimals) {
            digits.push('0');
        }
        parse_u256_decimal(&digits).map(TokenAmount)
    }
}
