//! One model of a payment offer, whatever the rail.

use std::fmt;

/// A payment rail pay402 speaks.
///
/// ```
/// use pay402_core::offer::Rail;
/// assert_eq!(Rail::X402Mock.as_str(), "x402_mock");
/// assert_eq!(Rail::BitRequests.to_string(), "bitreq");
/// assert_eq!(Rail::ALL.len(), 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rail {
    /// L402 (and legacy LSAT): macaroon + Lightning invoice.
    L402,
    /// x402 v1 and v2: the `exact` EVM scheme.
    X402,
    /// The x402_mock dialect: EIP-2612 permit exchanged for an access token.
    X402Mock,
    /// 21 BitRequests: on-chain, bit-transfer and payment channels.
    BitRequests,
}

impl Rail {
    /// Every rail, in a stable order.
    pub const ALL: [Rail; 4] = [Rail::L402, Rail::X402, Rail::X402Mock, Rail::BitRequests];

    /// The rail's stable name: `l402`, `x402`, `x402_mock`, `bitreq`.
    ///
    /// ```
    /// assert_eq!(pay402_core::offer::Rail::L402.as_str(), "l402");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Rail::L402 => "l402",
            Rail::X402 => "x402",
            Rail::X402Mock => "x402_mock",
            Rail::BitRequests => "bitreq",
        }
    }
}

impl fmt::Display for Rail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
