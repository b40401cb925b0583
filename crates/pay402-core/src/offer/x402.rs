//! x402 offers: the v2 `PAYMENT-REQUIRED` header and the v1 (or v2) JSON
//! body.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    MAX_HEADER_LINES, MAX_OFFERS, Offer, OfferError, OfferSet, RailChallenge, ReadOptions, Source,
};
use crate::offer::Rail;
use crate::rates::{Amount, TokenUnit};
use crate::x402::exact::SCHEME_EXACT;
use crate::x402::header::{self, MAX_HEADER_LEN, PAYMENT_REQUIRED};
use crate::x402::network::{evm_chain_id, slug_to_caip2};
use crate::x402::{
    Extra, PaymentRequired, PaymentRequiredV1, PaymentRequirements, TokenAmount, X402_V1, X402_V2,
};

/// A decoded x402 offer, v1 or v2. A v2 offer keeps `resource`, each
/// `accepts[i]` and `extensions` exactly as received, so that a payment
/// echoes them unchanged (unknown members included).
///
/// ```
/// use pay402_core::offer::X402Required;
/// let body: serde_json::Value = serde_json::from_str(r#"{"x402Version":1,"accepts":[]}"#).unwrap();
/// let r = X402Required::from_body(&body).unwrap().unwrap();
/// assert_eq!(r.version(), 1);
/// assert!(r.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "version")]
#[allow(clippy::large_enum_variant)]
pub enum X402Required {
    /// A v2 offer (`PAYMENT-REQUIRED`, or a v2 body).
    #[serde(rename = "2")]
    V2 {
        /// The typed offer.
        required: PaymentRequired,
        /// `resource` as received.
        raw_resource: Option<Value>,
        /// Each `accepts[i]` as received.
        raw_accepts: Vec<Value>,
        /// `extensions` as received.
        raw_extensions: Option<Value>,
    },
    /// A v1 offer (JSON body).
    #[serde(rename = "1")]
    V1 {
        /// The typed offer.
        required: PaymentRequiredV1,
    },
}

fn invalid(what: impl std::fmt::Display) -> OfferError {
    OfferError::X402(what.to_string().chars().take(256).collect())
}

impl X402Required {
    /// Decodes a v2 `PAYMENT-REQUIRED` header value (bounded by
    /// [`MAX_HEADER_LEN`], at most [`MAX_OFFERS`] requirements).
    ///
    /// ```
    /// use pay402_core::offer::X402Required;
    /// use pay402_core::problem::Reason;
    /// assert_eq!(X402Required::from_header(b"!!!").unwrap_err().reason(), "invalid_payment_required");
    /// ```
    pub fn from_header(value: &[u8]) -> Result<X402Required, OfferError> {
        let value = std::str::from_utf8(value).map_err(|_| invalid("header is not ASCII"))?;
        let mut buf = Vec::new();
        let json: Value = header::decode_with(value, MAX_HEADER_LEN, &mut buf).map_err(invalid)?;
        X402Required::from_v2_json(json)
    }

    fn from_v2_json(json: Value) -> Result<X402Required, OfferError> {
        let version = json.get("x402Version").and_then(Value::as_u64);
        if version != Some(u64::from(X402_V2)) {
            return Err(invalid(format_args!(
                "x402Version {} in PAYMENT-REQUIRED, expected 2",
                version.map_or_else(|| "missing".to_owned(), |v| v.to_string())
            )));
        }
        let raw_accepts = match json.get("accepts") {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(invalid("`accepts` is not an array")),
        };
        if raw_accepts.len() > MAX_OFFERS {
            return Err(invalid(format_args!(
                "{} requirements offered, at most {MAX_OFFERS} are read",
                raw_accepts.len()
            )));
        }
        let raw_resource = json.get("resource").cloned();
        let raw_extensions = json.get("extensions").cloned();
        let required: PaymentRequired = serde_json::from_value(json).map_err(invalid)?;
        Ok(X402Required::V2 {
            required,
            raw_resource,
            raw_accepts,
            raw_extensions,
        })
    }

    /// Decodes a 402 JSON body: a v1 offer (`x402Version: 1`), or a v2 one
    /// some servers also put in the body. `Ok(None)` when the body is no
    /// x402 offer.
    ///
    /// ```
    /// use pay402_core::offer::X402Required;
    /// let other: serde_json::Value = serde_json::from_str(r#"{"title":"nope"}"#).unwrap();
    /// assert!(X402Required::from_body(&other).unwrap().is_none());
    /// ```
    pub fn from_body(json: &Value) -> Result<Option<X402Required>, OfferError> {
        match json.get("x402Version").and_then(Value::as_u64) {
            Some(1) => {
                if json
                    .get("accepts")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.len() > MAX_OFFERS)
                {
                    return Err(invalid(format_args!(
                        "more than {MAX_OFFERS} requirements offered"
                    )));
                }
                let required: PaymentRequiredV1 =
                    serde_json::from_value(json.clone()).map_err(invalid)?;
                Ok(Some(X402Required::V1 { required }))
            }
            Some(2) if json.get("accepts").is_some() => {
                X402Required::from_v2_json(json.clone()).map(Some)
            }
            Some(v) if json.get("accepts").is_some() => {
                Err(invalid(format_args!("unsupported x402Version {v}")))
            }
            _ => Ok(None),
        }
    }

    /// 1 or 2.
    ///
    /// ```
    /// # fn f(r: &pay402_core::offer::X402Required) {
    /// assert!(matches!(r.version(), 1 | 2));
    /// # }
    /// ```
    pub fn version(&self) -> u32 {
        match self {
            X402Required::V2 { .. } => X402_V2,
            X402Required::V1 { .. } => X402_V1,
        }
    }

    /// How many requirements it offers.
    ///
    /// ```
    /// # fn f(r: &pay402_core::offer::X402Required) {
    /// println!("{} ways to pay", r.len());
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        match self {
            X402Required::V2 { required, .. } => required.accepts.len(),
            X402Required::V1 { required } => required.accepts.len(),
        }
    }

    /// Whether it offers no requirement.
    ///
    /// ```
    /// # fn f(r: &pay402_core::offer::X402Required) {
    /// if r.is_empty() { println!("nothing to pay"); }
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The server's `error` field, if not empty.
    ///
    /// ```
    /// use pay402_core::offer::X402Required;
    /// let body: serde_json::Value = serde_json::from_str(r#"{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[]}"#).unwrap();
    /// let r = X402Required::from_body(&body).unwrap().unwrap();
    /// assert_eq!(r.error(), Some("X-PAYMENT header is required"));
    /// ```
    pub fn error(&self) -> Option<&str> {
        match self {
            X402Required::V2 { required, .. } => required.error.as_deref(),
            X402Required::V1 { required } => Some(required.error.as_str()),
        }
        .filter(|e| !e.is_empty())
    }

    /// Requirement `index` in one shape, v1 and v2 alike.
    ///
    /// ```
    /// # fn f(r: &pay402_core::offer::X402Required) {
    /// if let Some(req) = r.requirement(0) { println!("{} of {}", req.amount, req.asset); }
    /// # }
    /// ```
    pub fn requirement(&self, index: usize) -> Option<Requirement<'_>> {
        match self {
            X402Required::V2 { required, .. } => {
                let r = required.accepts.get(index)?;
                Some(Requirement {
                    scheme: &r.scheme,
                    network: &r.network,
                    amount: r.amount,
                    asset: &r.asset,
                    pay_to: &r.pay_to,
                    max_timeout_seconds: r.max_timeout_seconds,
                    extra: r.extra.as_ref(),
                    description: required.resource.description.as_deref(),
                })
            }
            X402Required::V1 { required } => {
                let r = required.accepts.get(index)?;
                Some(Requirement {
                    scheme: &r.scheme,
                    network: &r.network,
                    amount: r.max_amount_required,
                    asset: &r.asset,
                    pay_to: &r.pay_to,
                    max_timeout_seconds: r.max_timeout_seconds,
                    extra: r.extra.as_ref(),
                    description: Some(r.description.as_str()),
                })
            }
        }
    }

    /// The v2 requirement `index`, if this is a v2 offer.
    ///
    /// ```
    /// # fn f(r: &pay402_core::offer::X402Required) {
    /// let _ = r.v2_requirement(0);
    /// # }
    /// ```
    pub fn v2_requirement(&self, index: usize) -> Option<&PaymentRequirements> {
        match self {
            X402Required::V2 { required, .. } => required.accepts.get(index),
            X402Required::V1 { .. } => None,
        }
    }
}

/// One requirement of an x402 offer, v1 and v2 alike (borrowed).
///
/// ```
/// # fn f(r: pay402_core::offer::Requirement<'_>) {
/// println!("{} {} of {} to {}", r.scheme, r.amount, r.asset, r.pay_to);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Requirement<'a> {
    /// The scheme (`exact`).
    pub scheme: &'a str,
    /// The network as written (a v1 slug or a CAIP-2 id).
    pub network: &'a str,
    /// The price in base units (v2 `amount`, v1 `maxAmountRequired`).
    pub amount: TokenAmount,
    /// The asset.
    pub asset: &'a str,
    /// The recipient.
    pub pay_to: &'a str,
    /// How long the server waits for settlement.
    pub max_timeout_seconds: u64,
    /// Scheme data (the token's EIP-712 domain).
    pub extra: Option<&'a Extra>,
    /// The resource's (v2) or requirement's (v1) description.
    pub description: Option<&'a str>,
}

impl Requirement<'_> {
    /// The network as a CAIP-2 id (v1 slugs mapped; unknown slugs as written).
    ///
    /// ```
    /// # fn f(r: pay402_core::offer::Requirement<'_>) {
    /// assert!(r.caip2().contains(':') || !r.caip2().is_empty());
    /// # }
    /// ```
    pub fn caip2(&self) -> &str {
        slug_to_caip2(self.network).unwrap_or(self.network)
    }
}

/// One requirement of an x402 offer: the whole decoded offer (shared by
/// the offers read from it) and the requirement's index in `accepts`.
///
/// ```
/// # fn f(c: &pay402_core::offer::X402Challenge) {
/// let r = c.requirement().expect("index is in range");
/// println!("v{} #{}: {} {}", c.version(), c.index, r.amount, r.asset);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct X402Challenge {
    /// The decoded offer.
    pub required: Arc<X402Required>,
    /// The index in `accepts`.
    pub index: usize,
    /// Read from the body (v1, or a v2 body without the header).
    pub from_body: bool,
}

impl X402Challenge {
    /// The challenge for requirement `index` of `required`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pay402_core::offer::{X402Challenge, X402Required};
    /// let body: serde_json::Value = serde_json::from_str(r#"{"x402Version":1,"accepts":[]}"#).unwrap();
    /// let r = Arc::new(X402Required::from_body(&body).unwrap().unwrap());
    /// assert!(X402Challenge::new(r, 0, true).requirement().is_none());
    /// ```
    pub fn new(required: Arc<X402Required>, index: usize, from_body: bool) -> X402Challenge {
        X402Challenge {
            required,
            index,
            from_body,
        }
    }

    /// 1 or 2.
    ///
    /// ```
    /// # fn f(c: &pay402_core::offer::X402Challenge) { assert!(c.version() >= 1); }
    /// ```
    pub fn version(&self) -> u32 {
        self.required.version()
    }

    /// The requirement this challenge is about.
    ///
    /// ```
    /// # fn f(c: &pay402_core::offer::X402Challenge) { let _ = c.requirement(); }
    /// ```
    pub fn requirement(&self) -> Option<Requirement<'_>> {
        self.required.requirement(self.index)
    }
}

/// Reads `PAYMENT-REQUIRED`; `true` when a v2 offer was read from it.
pub(super) fn read_header(
    headers: &http::HeaderMap,
    options: &ReadOptions,
    set: &mut OfferSet,
) -> bool {
    let mut values = headers.get_all(PAYMENT_REQUIRED).iter();
    let Some(value) = values.next() else {
        return false;
    };
    let extra = values.take(MAX_HEADER_LINES).count();
    if extra > 0 {
        // Which one is meant? Neither is paid.
        set.skip(
            Some(Rail::X402),
            Source::PaymentRequired,
            PAYMENT_REQUIRED,
            invalid("several PAYMENT-REQUIRED headers"),
        );
        return false;
    }
    match X402Required::from_header(value.as_bytes()) {
        Ok(required) => {
            add(required, false, options, set);
            true
        }
        Err(e) => {
            set.skip(
                Some(Rail::X402),
                Source::PaymentRequired,
                PAYMENT_REQUIRED,
                e,
            );
            false
        }
    }
}

/// Reads an x402 offer from the JSON body. A v2 body is ignored when the
/// header already carried a v2 offer (servers repeat it there).
pub(super) fn read_body(json: &Value, v2_read: bool, options: &ReadOptions, set: &mut OfferSet) {
    match X402Required::from_body(json) {
        Ok(Some(required)) if required.version() == X402_V2 && v2_read => {}
        Ok(Some(required)) => add(required, true, options, set),
        Ok(None) => {}
        Err(e) => set.skip(Some(Rail::X402), Source::Body, "x402", e),
    }
}

fn add(required: X402Required, from_body: bool, options: &ReadOptions, set: &mut OfferSet) {
    let required = Arc::new(required);
    let source = if from_body {
        Source::Body
    } else {
        Source::PaymentRequired
    };
    for index in 0..required.len() {
        let challenge = X402Challenge::new(Arc::clone(&required), index, from_body);
        match offer_of(challenge, options) {
            Ok(o) => set.push(o),
            Err((name, e)) => set.skip(Some(Rail::X402), source, &name, e),
        }
    }
}

fn offer_of(c: X402Challenge, options: &ReadOptions) -> Result<Offer, (String, OfferError)> {
    let Some(r) = c.requirement() else {
        return Err(("x402".into(), invalid("requirement index out of range")));
    };
    let name = || format!("x402 {} on {}", r.scheme, r.network);
    let network = r.caip2();
    if r.scheme != SCHEME_EXACT || evm_chain_id(network).is_none() {
        return Err((name(), OfferError::UnsupportedScheme(name())));
    }
    let decimals = extra_decimals(r.extra)
        .or_else(|| options.decimals(network, r.asset))
        .ok_or_else(|| {
            (
                name(),
                OfferError::UnknownToken {
                    network: network.chars().take(64).collect(),
                    asset: r.asset.chars().take(64).collect(),
                },
            )
        })?;
    let unit = TokenUnit::new(network, r.asset, decimals);
    let offer = Offer {
        rail: Rail::X402,
        amount: Amount::Token(r.amount, unit),
        network: Some(network.to_owned()),
        pay_to: Some(r.pay_to.to_owned()),
        expires_at: None,
        description: r.description.filter(|d| !d.is_empty()).map(str::to_owned),
        challenge: RailChallenge::X402(c.clone()),
    };
    Ok(offer)
}

/// `extra.decimals`, when a server states it (an integer up to 77).
fn extra_decimals(extra: Option<&Extra>) -> Option<u8> {
    extra?
        .other
        .get("decimals")?
        .as_u64()
        .filter(|d| *d <= 77)
        .and_then(|d| u8::try_from(d).ok())
}
