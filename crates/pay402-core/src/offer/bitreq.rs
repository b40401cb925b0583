//! BitRequests offers: the two1 headers, one offer per payment method.

use super::{Offer, OfferError, OfferSet, Rail, RailChallenge, Source};
use crate::bitreq::headers::PRICE;
use crate::bitreq::{BitreqError, PaymentInfo};
use crate::rates::Amount;

/// A BitRequests payment method.
///
/// ```
/// use pay402_core::offer::BitreqMethod;
/// assert_eq!(BitreqMethod::OnChain.as_str(), "onchain");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BitreqMethod {
    /// A transaction in `Bitcoin-Transaction`.
    OnChain,
    /// A signed ledger transfer in `Bitcoin-Transfer`.
    Transfer,
    /// A payment-channel token.
    Channel,
}

impl BitreqMethod {
    /// `onchain`, `transfer` or `channel` (the names of
    /// [`Proof::method`](crate::bitreq::Proof::method)).
    ///
    /// ```
    /// assert_eq!(pay402_core::offer::BitreqMethod::Channel.as_str(), "channel");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            BitreqMethod::OnChain => "onchain",
            BitreqMethod::Transfer => "transfer",
            BitreqMethod::Channel => "channel",
        }
    }
}

/// One BitRequests payment method offered, with the 402's payment
/// information.
///
/// ```
/// # fn f(c: &pay402_core::offer::BitreqChallenge) {
/// println!("{} for {}", c.method.as_str(), c.info.price);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BitreqChallenge {
    /// The method.
    pub method: BitreqMethod,
    /// The 402's payment information (every method's headers).
    pub info: PaymentInfo,
}

/// The network an address is for, from its prefix (`None`: unknown).
fn network_of(address: &str) -> Option<&'static str> {
    let lower = address.to_ascii_lowercase();
    if lower.starts_with("bcrt1") {
        Some("regtest")
    } else if lower.starts_with("bc1") || address.starts_with(['1', '3']) {
        Some("bitcoin")
    } else if lower.starts_with("tb1") || address.starts_with(['m', 'n', '2']) {
        Some("testnet")
    } else {
        None
    }
}

pub(super) fn read(headers: &http::HeaderMap, set: &mut OfferSet) {
    if !headers.contains_key(PRICE) {
        return;
    }
    let info = match PaymentInfo::from_header_map(headers) {
        Ok(i) if i.price.0 == 0 => Err(BitreqError::InvalidPrice),
        other => other,
    };
    let info = match info {
        Ok(i) => i,
        Err(e) => {
            set.skip(
                Some(Rail::BitRequests),
                Source::BitreqHeaders,
                "bitreq",
                OfferError::Bitreq(e),
            );
            return;
        }
    };
    // two1's server order: channel, on-chain, transfer.
    let methods = [
        (BitreqMethod::Channel, info.channel_server.clone()),
        (BitreqMethod::OnChain, info.bitcoin_address.clone()),
        (BitreqMethod::Transfer, info.username.clone()),
    ];
    for (method, pay_to) in methods {
        let Some(pay_to) = pay_to else {
            continue;
        };
        let network = match method {
            BitreqMethod::OnChain => network_of(&pay_to).map(str::to_owned),
            _ => None,
        };
        set.push(Offer {
            rail: Rail::BitRequests,
            amount: Amount::Sat(info.price),
            network,
            pay_to: Some(pay_to),
            expires_at: None,
            description: None,
            challenge: RailChallenge::BitRequests(BitreqChallenge {
                method,
                info: info.clone(),
            }),
        });
    }
}
