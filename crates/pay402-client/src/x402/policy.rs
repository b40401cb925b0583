//! Which offer to pay: allow-lists (assets with a per-payment cap,
//! networks, recipients) and the [`Selection`] among the acceptable offers.

use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::exact::SCHEME_EXACT;
use pay402_core::x402::network::slug_to_caip2;

use super::error::X402Error;
use super::offer::Offer;

/// Default cap per payment for the [`KNOWN_ASSETS`]: 1 USDC (the official
/// SDKs' default spend control).
///
/// ```
/// use pay402_core::x402::TokenAmount;
/// assert_eq!(pay402_client::x402::DEFAULT_MAX_PER_PAYMENT, TokenAmount::from_u64(1_000_000));
/// ```
pub const DEFAULT_MAX_PER_PAYMENT: TokenAmount = TokenAmount::from_u64(1_000_000);

/// Assets allowed by default, each capped at [`DEFAULT_MAX_PER_PAYMENT`]:
/// USDC on Base and on Base Sepolia (network, token contract). Every other
/// asset is refused unless allowed with
/// [`X402ClientBuilder::allow_asset`](super::X402ClientBuilder::allow_asset).
///
/// ```
/// assert!(pay402_client::x402::KNOWN_ASSETS.iter().any(|(n, _)| *n == "eip155:8453"));
/// ```
pub const KNOWN_ASSETS: &[(&str, &str)] = &[
    ("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
    ("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
];

/// How to choose among the offers that pass the allow-lists and caps.
///
/// ```
/// use pay402_client::x402::Selection;
/// let s = Selection::PreferNetworks(vec!["eip155:8453".into(), "eip155:84532".into()]);
/// assert_ne!(s, Selection::FirstMatch);
/// assert_eq!(Selection::default(), Selection::FirstMatch);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selection {
    /// The first acceptable offer in the server's order (the reference
    /// clients' default).
    #[default]
    FirstMatch,
    /// The first acceptable offer on the earliest listed network (CAIP-2 ids
    /// or v1 slugs); if none is on a listed network, the first acceptable
    /// offer. To refuse other networks, use
    /// [`X402ClientBuilder::allow_networks`](super::X402ClientBuilder::allow_networks).
    PreferNetworks(Vec<String>),
    /// The acceptable offer with the smallest amount in base units (the
    /// earliest on ties). Amounts of different tokens are compared as
    /// integers, so this is meaningful among tokens with equal decimals
    /// (USDC on several chains, for instance).
    Cheapest,
}

/// One allowed asset and its cap per payment.
///
/// ```
/// use pay402_client::x402::AssetAllowance;
/// use pay402_core::x402::TokenAmount;
/// let a = AssetAllowance::new("base", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap(), TokenAmount::from_u64(50_000));
/// assert_eq!(a.network, "eip155:8453"); // v1 slugs are stored as CAIP-2
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssetAllowance {
    /// The network, as a CAIP-2 id.
    pub network: String,
    /// The token contract.
    pub asset: EvmAddress,
    /// The most one payment may be, in base units.
    pub max_per_payment: TokenAmount,
}

impl AssetAllowance {
    /// An allowance; a v1 network slug is converted to its CAIP-2 id.
    ///
    /// ```
    /// use pay402_client::x402::AssetAllowance;
    /// use pay402_core::x402::TokenAmount;
    /// let a = AssetAllowance::new("eip155:31337", Default::default(), TokenAmount::from_u64(1));
    /// assert_eq!(a.network, "eip155:31337");
    /// ```
    pub fn new(network: &str, asset: EvmAddress, max_per_payment: TokenAmount) -> AssetAllowance {
        AssetAllowance {
            network: normalize_network(network),
            asset,
            max_per_payment,
        }
    }
}

pub(crate) fn normalize_network(network: &str) -> String {
    slug_to_caip2(network).unwrap_or(network).to_owned()
}

/// Why one offer was refused, most specific first (the order in which the
/// error for "nothing acceptable" is picked).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    Price { max: TokenAmount },
    PayTo,
    Asset,
    Network,
    Unsupported(String),
}

/// The allow-lists, caps and selection of an
/// [`X402Client`](super::X402Client).
#[derive(Clone, Debug)]
pub(crate) struct SpendPolicy {
    pub(crate) assets: Vec<AssetAllowance>,
    pub(crate) networks: Option<Vec<String>>,
    pub(crate) pay_to: Option<Vec<EvmAddress>>,
    pub(crate) selection: Selection,
}

impl Default for SpendPolicy {
    fn default() -> SpendPolicy {
        let assets = KNOWN_ASSETS
            .iter()
            .filter_map(|(network, asset)| {
                Some(AssetAllowance::new(
                    network,
                    asset.parse().ok()?,
                    DEFAULT_MAX_PER_PAYMENT,
                ))
            })
            .collect();
        SpendPolicy {
            assets,
            networks: None,
            pay_to: None,
            selection: Selection::FirstMatch,
        }
    }
}

impl SpendPolicy {
    pub(crate) fn allow_asset(&mut self, allowance: AssetAllowance) {
        self.assets
            .retain(|a| !(a.network == allowance.network && a.asset == allowance.asset));
        self.assets.push(allowance);
    }

    fn check(&self, offer: &Offer) -> Result<(), Refusal> {
        if offer.scheme != SCHEME_EXACT {
            return Err(Refusal::Unsupported(format!(
                "scheme {:?} is not supported",
                offer.scheme
            )));
        }
        let (Some(network), Some(_)) = (offer.caip2.as_deref(), offer.chain_id) else {
            return Err(Refusal::Unsupported(format!(
                "network {:?} is not a known EVM chain",
                offer.network
            )));
        };
        if let Some(networks) = &self.networks
            && !networks.iter().any(|n| n == network)
        {
            return Err(Refusal::Network);
        }
        let extra = offer.extra.as_ref();
        if let Some(method) = extra.and_then(|e| e.other.get("assetTransferMethod"))
            && method.as_str() != Some("eip3009")
        {
            return Err(Refusal::Unsupported(format!(
                "asset transfer method {method} is not supported (only eip3009)"
            )));
        }
        if extra.is_none_or(|e| e.name().is_none() || e.version().is_none()) {
            return Err(Refusal::Unsupported(
                "extra.name / extra.version (EIP-712 domain) missing".into(),
            ));
        }
        let Ok(asset) = offer.asset.parse::<EvmAddress>() else {
            return Err(Refusal::Unsupported(format!(
                "asset {:?} is not an EVM address",
                offer.asset
            )));
        };
        let Ok(pay_to) = offer.pay_to.parse::<EvmAddress>() else {
            return Err(Refusal::Unsupported(format!(
                "payTo {:?} is not an EVM address",
                offer.pay_to
            )));
        };
        let Some(allowance) = self
            .assets
            .iter()
            .find(|a| a.network == network && a.asset == asset)
        else {
            return Err(Refusal::Asset);
        };
        if let Some(allowed) = &self.pay_to
            && !allowed.contains(&pay_to)
        {
            return Err(Refusal::PayTo);
        }
        if offer.amount > allowance.max_per_payment {
            return Err(Refusal::Price {
                max: allowance.max_per_payment,
            });
        }
        Ok(())
    }

    /// The index (into `offers`) of the offer to pay, or why none is.
    pub(crate) fn choose(&self, offers: &[Offer]) -> Result<usize, X402Error> {
        let mut acceptable = Vec::new();
        let mut refusals = Vec::new();
        for (i, offer) in offers.iter().enumerate() {
            match self.check(offer) {
                Ok(()) => acceptable.push(i),
                Err(r) => refusals.push((i, r)),
            }
        }
        let chosen = match &self.selection {
            Selection::FirstMatch => acceptable.first().copied(),
            Selection::PreferNetworks(preferred) => preferred
                .iter()
                .map(|p| normalize_network(p))
                .find_map(|p| {
                    acceptable
                        .iter()
                        .copied()
                        .find(|&i| offers[i].caip2.as_deref() == Some(p.as_str()))
                })
                .or_else(|| acceptable.first().copied()),
            Selection::Cheapest => acceptable
                .iter()
                .copied()
                .min_by_key(|&i| (offers[i].amount, i)),
        };
        if let Some(i) = chosen {
            return Ok(i);
        }
        // Nothing acceptable: report the most specific refusal.
        let best = refusals.iter().min_by(|a, b| a.1.cmp(&b.1));
        Err(match best {
            Some((i, Refusal::Price { max })) => X402Error::PriceAboveMax {
                network: offers[*i].network.clone(),
                asset: offers[*i].asset.clone(),
                amount: offers[*i].amount,
                max: *max,
            },
            Some((i, Refusal::PayTo)) => X402Error::PayToNotAllowed {
                pay_to: offers[*i].pay_to.clone(),
            },
            Some((i, Refusal::Asset)) => X402Error::AssetNotAllowed {
                network: offers[*i].network.clone(),
                asset: offers[*i].asset.clone(),
            },
            Some((i, Refusal::Network)) => X402Error::NetworkNotAllowed {
                network: offers[*i].network.clone(),
            },
            Some((_, Refusal::Unsupported(_))) | None => X402Error::NoAcceptableRequirement {
                offered: offers.len(),
                refused: refusals
                    .iter()
                    .map(|(i, r)| match r {
                        Refusal::Unsupported(why) => format!("#{i}: {why}"),
                        other => format!("#{i}: {other:?}"),
                    })
                    .collect(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pay402_core::problem::Reason;
    use pay402_core::x402::Extra;

    fn offer(i: usize, network: &str, asset: &str, amount: u64) -> Offer {
        Offer {
            index: i,
            x402_version: 2,
            scheme: "exact".into(),
            network: network.into(),
            caip2: Some(normalize_network(network)),
            chain_id: pay402_core::x402::network::evm_chain_id(network),
            asset: asset.into(),
            amount: TokenAmount::from_u64(amount),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_seconds: 60,
            extra: Some(Extra::eip712("USDC", "2")),
        }
    }

    const BASE: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
    const SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

    #[test]
    fn defaults_allow_known_usdc_up_to_one_dollar() {
        let p = SpendPolicy::default();
        assert_eq!(
            p.choose(&[offer(0, "eip155:8453", BASE, 1_000_000)])
                .unwrap(),
            0
        );
        let e = p
            .choose(&[offer(0, "eip155:8453", BASE, 1_000_001)])
            .unwrap_err();
        assert_eq!(e.reason(), "price_above_max");
        let e = p.choose(&[offer(0, "eip155:31337", BASE, 1)]).unwrap_err();
        assert_eq!(e.reason(), "asset_not_allowed");
    }

    #[test]
    fn selection_policies() {
        let offers = [
            offer(0, "eip155:8453", BASE, 900),
            offer(1, "base-sepolia", SEPOLIA, 500),
            offer(2, "eip155:84532", SEPOLIA, 700),
        ];
        let mut p = SpendPolicy::default();
        assert_eq!(p.choose(&offers).unwrap(), 0);
        p.selection = Selection::Cheapest;
        assert_eq!(p.choose(&offers).unwrap(), 1);
        p.selection = Selection::PreferNetworks(vec!["base-sepolia".into()]);
        assert_eq!(p.choose(&offers).unwrap(), 1);
        p.selection = Selection::PreferNetworks(vec!["eip155:1".into()]);
        assert_eq!(p.choose(&offers).unwrap(), 0);
        p.networks = Some(vec!["eip155:84532".into()]);
        p.selection = Selection::FirstMatch;
        assert_eq!(p.choose(&offers).unwrap(), 1);
        p.networks = Some(vec!["eip155:1".into()]);
        assert_eq!(
            p.choose(&offers).unwrap_err().reason(),
            "network_not_allowed"
        );
    }

    #[test]
    fn unsupported_offers_are_listed() {
        let mut o = offer(0, "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "x", 1);
        o.scheme = "exact".into();
        let mut permit2 = offer(1, "eip155:8453", BASE, 1);
        permit2
            .extra
            .as_mut()
            .unwrap()
            .other
            .insert("assetTransferMethod".into(), "permit2".into());
        let mut upto = offer(2, "eip155:8453", BASE, 1);
        upto.scheme = "upto".into();
        let e = SpendPolicy::default()
            .choose(&[o, permit2, upto])
            .unwrap_err();
        match &e {
            X402Error::NoAcceptableRequirement { offered, refused } => {
                assert_eq!(*offered, 3);
                assert_eq!(refused.len(), 3);
                assert!(refused[1].contains("permit2"), "{refused:?}");
            }
            other => panic!("{other:?}"),
        }
        let e = SpendPolicy::default().choose(&[]).unwrap_err();
        assert_eq!(e.reason(), "no_acceptable_requirement");
    }

    #[test]
    fn pay_to_allow_list() {
        let p = SpendPolicy {
            pay_to: Some(vec![EvmAddress::default()]),
            ..SpendPolicy::default()
        };
        let e = p.choose(&[offer(0, "eip155:8453", BASE, 1)]).unwrap_err();
        assert_eq!(e.reason(), "pay_to_not_allowed");
    }
}
