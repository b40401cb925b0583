//! The x402 rail of a paywall: the asset it is paid in and the `exact`
//! offer of one request.

use pay402_core::rates::TokenUnit;
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::{PaymentRequirements, TokenAmount};

use crate::x402::{OfferError, X402Layer, check_offer, exact_offer};

/// An EVM token a [`Paywall`](super::Paywall) takes x402 payments in: its
/// network (CAIP-2), contract, decimals and EIP-712 domain (name, version).
///
/// ```
/// use pay402_server::paywall::X402Asset;
/// let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
/// assert_eq!(usdc.unit().decimals(), 6);
/// assert!(usdc.is_usd_stablecoin());
/// // Base Sepolia's USDC signs under the EIP-712 name "USDC".
/// let sepolia = X402Asset::usdc("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap())
///     .eip712("USDC", "2");
/// # let _ = sepolia;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X402Asset {
    network: String,
    address: EvmAddress,
    decimals: u8,
    name: String,
    version: String,
    usd: bool,
}

impl X402Asset {
    /// A token on `network` (CAIP-2 `eip155:<chain id>`) at `address`, with
    /// `decimals` and the EIP-712 domain `(name, version)` its transfers
    /// are signed under.
    ///
    /// ```
    /// use pay402_server::paywall::X402Asset;
    /// let t = X402Asset::new("eip155:1", "0xdAC17F958D2ee523a2206206994597C13D831ec7".parse().unwrap(), 6, "Tether USD", "1");
    /// assert!(!t.is_usd_stablecoin());
    /// ```
    pub fn new(
        network: impl Into<String>,
        address: EvmAddress,
        decimals: u8,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> X402Asset {
        X402Asset {
            network: network.into(),
            address,
            decimals,
            name: name.into(),
            version: version.into(),
            usd: false,
        }
    }

    /// Circle's USDC on `network` at `address`: 6 decimals, EIP-712 domain
    /// ("USD Coin", "2") as on mainnet and Base (change it with
    /// [`X402Asset::eip712`] where the deployment differs), worth one US
    /// dollar per token.
    ///
    /// ```
    /// use pay402_server::paywall::X402Asset;
    /// let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
    /// assert_eq!(usdc.network(), "eip155:8453");
    /// ```
    pub fn usdc(network: impl Into<String>, address: EvmAddress) -> X402Asset {
        X402Asset::new(network, address, 6, "USD Coin", "2").usd_stablecoin(true)
    }

    /// The same token with another EIP-712 domain name and version.
    ///
    /// ```
    /// use pay402_server::paywall::X402Asset;
    /// let t = X402Asset::usdc("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap()).eip712("USDC", "2");
    /// # let _ = t;
    /// ```
    pub fn eip712(mut self, name: impl Into<String>, version: impl Into<String>) -> X402Asset {
        self.name = name.into();
        self.version = version.into();
        self
    }

    /// Declares the token worth one US dollar per whole token (the
    /// paywall's default rates then convert US cents to it).
    ///
    /// ```
    /// use pay402_server::paywall::X402Asset;
    /// let t = X402Asset::new("eip155:1", "0xdAC17F958D2ee523a2206206994597C13D831ec7".parse().unwrap(), 6, "Tether USD", "1")
    ///     .usd_stablecoin(true);
    /// assert!(t.is_usd_stablecoin());
    /// ```
    pub fn usd_stablecoin(mut self, on: bool) -> X402Asset {
        self.usd = on;
        self
    }

    /// Whether the token is declared a USD stablecoin.
    ///
    /// ```
    /// use pay402_server::paywall::X402Asset;
    /// assert!(X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap()).is_usd_stablecoin());
    /// ```
    pub fn is_usd_stablecoin(&self) -> bool {
        self.usd
    }

    /// The CAIP-2 network.
    ///
    /// ```
    /// use pay402_server::paywall::X402Asset;
    /// let usdc = X402Asset::usdc("eip155:31337", "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse().unwrap());
    /// assert_eq!(usdc.network(), "eip155:31337");
    /// ```
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The unit prices are converted to: base units of this token.
    ///
    /// ```
    /// use pay402_server::paywall::X402Asset;
    /// let usdc = X402Asset::usdc("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap());
    /// assert_eq!(usdc.unit().asset(), "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913");
    /// ```
    pub fn unit(&self) -> TokenUnit {
        TokenUnit::new(
            self.network.clone(),
            self.address.to_string(),
            self.decimals,
        )
    }
}

/// The enabled x402 rail: its layer (configuration, facilitator, store),
/// the recipient and the asset.
pub(crate) struct X402Rail {
    pub(crate) layer: X402Layer,
    pub(crate) asset: X402Asset,
    pub(crate) unit: TokenUnit,
    /// The `exact` offer with a placeholder amount.
    template: PaymentRequirements,
}

impl X402Rail {
    pub(crate) fn new(
        layer: X402Layer,
        pay_to: EvmAddress,
        asset: X402Asset,
    ) -> Result<X402Rail, OfferError> {
        let template = exact_offer(
            &asset.network,
            &asset.address.to_string(),
            &pay_to.to_string(),
            TokenAmount::from_u64(1),
            &asset.name,
            &asset.version,
        );
        check_offer(&template)?;
        Ok(X402Rail {
            layer,
            unit: asset.unit(),
            asset,
            template,
        })
    }

    /// The offer of one request costing `amount`.
    pub(crate) fn offer(&self, amount: TokenAmount) -> PaymentRequirements {
        PaymentRequirements {
            amount,
            ..self.template.clone()
        }
    }
}
