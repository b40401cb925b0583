//! x402_mock offers: the seed's JSON 402 body.

use std::sync::Arc;

use serde_json::Value;

use super::{MAX_OFFERS, Offer, OfferError, OfferSet, Rail, RailChallenge, Source};
use crate::rates::{Amount, TokenUnit};
use crate::x402::mock::{EvmPaymentComponent, MockPaymentRequired};

/// One component of an x402_mock offer: the whole decoded body (shared by
/// the offers read from it) and the component's index.
///
/// ```
/// # fn f(c: &pay402_core::offer::MockChallenge) {
/// if let Some(comp) = c.component() {
///     println!("{} on chain {} via {}", comp.currency, comp.chain_id, c.required.access_token_endpoint);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MockChallenge {
    /// The decoded body.
    pub required: Arc<MockPaymentRequired>,
    /// The index in `payment_scheme.payment_components`.
    pub index: usize,
}

impl MockChallenge {
    /// The challenge for component `index` of `required`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_core::offer::MockChallenge;
    /// use pay402_core::x402::mock::MockPaymentRequired;
    /// let r: MockPaymentRequired = serde_json::from_str(r#"{"reason":"r","access_token_endpoint":"/token","payment_scheme":{"payment_components":[],"protocol_version":"Version 0.1"}}"#).unwrap();
    /// assert!(MockChallenge::new(Arc::new(r), 0).component().is_none());
    /// ```
    pub fn new(required: Arc<MockPaymentRequired>, index: usize) -> MockChallenge {
        MockChallenge { required, index }
    }

    /// The component this challenge is about.
    ///
    /// ```
    /// # fn f(c: &pay402_core::offer::MockChallenge) { let _ = c.component(); }
    /// ```
    pub fn component(&self) -> Option<&EvmPaymentComponent> {
        self.required
            .payment_scheme
            .payment_components
            .get(self.index)
    }
}

fn invalid(what: impl std::fmt::Display) -> OfferError {
    OfferError::Mock(what.to_string().chars().take(256).collect())
}

pub(super) fn read_body(json: &Value, set: &mut OfferSet) {
    if json.get("access_token_endpoint").is_none() || json.get("payment_scheme").is_none() {
        return;
    }
    if json
        .pointer("/payment_scheme/payment_components")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > MAX_OFFERS)
    {
        set.skip(
            Some(Rail::X402Mock),
            Source::Body,
            "x402_mock",
            invalid(format_args!("more than {MAX_OFFERS} components")),
        );
        return;
    }
    let required: MockPaymentRequired = match serde_json::from_value(json.clone()) {
        Ok(r) => r,
        Err(e) => {
            set.skip(Some(Rail::X402Mock), Source::Body, "x402_mock", invalid(e));
            return;
        }
    };
    let required = Arc::new(required);
    for index in 0..required.payment_scheme.payment_components.len() {
        let challenge = MockChallenge::new(Arc::clone(&required), index);
        match offer_of(challenge) {
            Ok(o) => set.push(o),
            Err((name, e)) => set.skip(Some(Rail::X402Mock), Source::Body, &name, e),
        }
    }
}

fn offer_of(c: MockChallenge) -> Result<Offer, (String, OfferError)> {
    let Some(comp) = c.component() else {
        return Err(("x402_mock".into(), invalid("component index out of range")));
    };
    let name = format!("x402_mock {} on chain {}", comp.payment_type, comp.chain_id);
    if comp.payment_type != "evm" {
        return Err((name.clone(), OfferError::UnsupportedScheme(name)));
    }
    let amount = comp
        .required_base_units()
        .map_err(|e| (name.clone(), invalid(e)))?;
    let network = format!("eip155:{}", comp.chain_id);
    let unit = TokenUnit::new(
        network.as_str(),
        comp.token.to_string(),
        comp.metadata.decimals,
    );
    Ok(Offer {
        rail: Rail::X402Mock,
        amount: Amount::Token(amount, unit),
        network: Some(network),
        pay_to: Some(comp.metadata.wallet_address.to_string()),
        expires_at: None,
        description: Some(c.required.reason.chars().take(256).collect::<String>())
            .filter(|d| !d.is_empty()),
        challenge: RailChallenge::X402Mock(c.clone()),
    })
}
