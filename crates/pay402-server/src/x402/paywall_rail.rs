//! x402 as a rail of a [`Paywall`](crate::paywall::Paywall): the asset it
//! is paid in, the `exact` offer of one request (`PAYMENT-REQUIRED` and the
//! v1 body members), and its proof (`PAYMENT-SIGNATURE` or `X-PAYMENT`),
//! served by the x402 layer's own flow.

use axum::response::Response;
use http::{HeaderMap, HeaderName};
use pay402_core::offer::Rail;
use pay402_core::rates::{Amount, TokenUnit};
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::{PaymentRequirements, TokenAmount};

use crate::paywall::rail::{ChallengePart, Next, Part, PaywallRail, Pending, RailFuture, Unpaid};
use crate::paywall::{Paid, RailPrices, Receipt};
use crate::x402::{OfferError, X402Layer, check_offer, exact_offer};

/// The x402 proof headers.
const X402_PROOFS: [HeaderName; 2] = [
    HeaderName::from_static("payment-signature"),
    HeaderName::from_static("x-payment"),
];

/// An EVM token a [`Paywall`](crate::paywall::Paywall) takes x402 payments in: its
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

    /// The token contract.
    pub(crate) fn address(&self) -> EvmAddress {
        self.address
    }

    /// The EIP-712 domain `(name, version)` transfers are signed under.
    pub(crate) fn eip712_domain(&self) -> (&str, &str) {
        (&self.name, &self.version)
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

impl PaywallRail for X402Rail {
    fn rail(&self) -> Rail {
        Rail::X402
    }

    fn credentials(&self) -> &'static [&'static str] {
        &["PAYMENT-SIGNATURE", "X-PAYMENT"]
    }

    fn expose(&self) -> &'static str {
        crate::x402::EXPOSE
    }

    fn has_proof(&self, headers: &HeaderMap) -> bool {
        crate::paywall::proof::any_of(headers, &X402_PROOFS)
    }

    fn is_priced(&self, prices: &RailPrices) -> bool {
        prices.x402.is_some()
    }

    fn challenge<'a>(&'a self, cx: &'a Unpaid<'a>) -> RailFuture<'a, Option<ChallengePart<'a>>> {
        Box::pin(async move {
            let amount = cx.prices.x402?;
            let set = cx.layer.x402_offer_set(self, amount, cx.parts);
            let (problem, error) = crate::x402::unpaid_problem();
            let mut headers = HeaderMap::new();
            if let Some(v) = crate::x402::payment_required_value(&set, self.layer.config(), error) {
                headers.insert(crate::x402::PAYMENT_REQUIRED.clone(), v);
            }
            let config = self.layer.config();
            Some(ChallengePart {
                headers,
                part: Part::On(Rail::X402, problem),
                body: Some(Box::new(move |json: &mut serde_json::Value| {
                    crate::x402::add_v1_offer(json, &set, config, error);
                })),
            })
        })
    }

    /// An x402 payment: read and checked as `X402Layer` does, then
    /// reserved, verified, served and settled by its flow (settle-after
    /// never releases the body unpaid).
    fn serve<'a>(&'a self, req: Pending<'a>, next: Next) -> RailFuture<'a, Response> {
        Box::pin(async move {
            let Some(amount) = req.prices.x402 else {
                return req.payment_required().await;
            };
            let set = req.layer.x402_offer_set(self, amount, &req.parts);
            let intake = match self.layer.read_payment(&req.parts, &set) {
                Ok(Some(intake)) => intake,
                Ok(None) => return req.payment_required().await,
                Err(e) => return self.layer.refusal(&set, &e),
            };
            let mut parts = req.parts;
            parts.extensions.insert(Paid {
                rail: Rail::X402,
                amount: Amount::Token(intake.payment.amount, self.unit.clone()),
                payer: Some(intake.payment.payer.to_string()),
                receipt: Receipt::X402Nonce(format!("0x{}", hex::encode(intake.payment.nonce.0))),
            });
            // The flow sets the caching headers of a served payment itself.
            self.layer
                .serve_payment(next, parts, req.body, intake, set)
                .await
        })
    }
}
