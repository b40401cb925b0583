//! Why a paywall refuses a request, or cannot be built.

use pay402_core::offer::Rail;
use pay402_core::problem::Reason;
use pay402_core::rates::ConvertError;

/// A request the paywall itself refuses (the rails' own refusals keep their
/// own reasons).
///
/// ```
/// use pay402_core::offer::Rail;
/// use pay402_core::problem::Reason;
/// use pay402_server::paywall::PaywallError;
/// let e = PaywallError::MultipleProofs(vec![Rail::L402, Rail::X402]);
/// assert_eq!((e.reason(), e.status()), ("multiple_payment_proofs", 400));
/// assert_eq!(e.to_string(), "proofs of payment for several rails in one request: l402, x402; send one");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaywallError {
    /// The request carries proofs of more than one rail: which one should
    /// pay is ambiguous, and paying twice is never the answer.
    #[error("proofs of payment for several rails in one request: {}; send one", rails(.0))]
    MultipleProofs(Vec<Rail>),
    /// The route's price could not be converted for any enabled rail.
    #[error("the price cannot be charged on any enabled rail: {0}")]
    Unconvertible(ConvertError),
    /// The route's price names no enabled rail.
    #[error("the price names no enabled rail")]
    NoRailPriced,
}

fn rails(rails: &[Rail]) -> String {
    rails
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Reason for PaywallError {
    fn reason(&self) -> &'static str {
        match self {
            PaywallError::MultipleProofs(_) => "multiple_payment_proofs",
            PaywallError::Unconvertible(e) => e.reason(),
            PaywallError::NoRailPriced => "no_rail_priced",
        }
    }
    fn status(&self) -> u16 {
        match self {
            PaywallError::MultipleProofs(_) => 400,
            PaywallError::Unconvertible(_) | PaywallError::NoRailPriced => 500,
        }
    }
}

/// Why a [`Paywall`](super::Paywall) cannot be built.
///
/// ```
/// use pay402_core::problem::Reason;
/// let e = pay402_server::paywall::Paywall::builder().build().unwrap_err();
/// assert_eq!(e.reason(), "no_rail");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No rail is enabled.
    #[error("no rail is enabled")]
    NoRail,
    /// The MPP configuration cannot be used (no method, an asset network
    /// that is not `eip155:<chain id>`, a node network MPP has no name for).
    #[error("MPP cannot be enabled: {0}")]
    Mpp(&'static str),
    /// The x402 asset or recipient cannot make a valid `exact` offer.
    #[cfg(feature = "x402")]
    #[error("the x402 asset cannot be offered: {0}")]
    X402Asset(#[from] crate::x402::OfferError),
}

impl Reason for BuildError {
    fn reason(&self) -> &'static str {
        match self {
            BuildError::NoRail => "no_rail",
            BuildError::Mpp(_) => "invalid_mpp",
            #[cfg(feature = "x402")]
            BuildError::X402Asset(_) => "invalid_x402_asset",
        }
    }
    fn status(&self) -> u16 {
        500
    }
}
