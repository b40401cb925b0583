//! The x402 wire types, v1 and v2, with the exact JSON field names.
//!
//! Serialization writes fields in the order of the spec examples, so the
//! §5.2 header vectors round-trip byte for byte. Unknown fields are
//! ignored on input; `extra` objects and `extensions` are kept whole.
//!
//! ```
//! use pay402_core::x402::{PaymentRequirements, Extra, TokenAmount};
//! let r = PaymentRequirements {
//!     scheme: "exact".into(),
//!     network: "eip155:84532".into(),
//!     amount: TokenAmount::from_u64(10_000),
//!     asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
//!     pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
//!     max_timeout_seconds: 60,
//!     extra: Some(Extra::eip712("USDC", "2")),
//! };
//! let json = serde_json::to_string(&r).unwrap();
//! assert!(json.starts_with(r#"{"scheme":"exact","network":"eip155:84532","amount":"10000""#));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::amount::TokenAmount;
use super::evm::{EvmSignature, TransferAuthorization};

/// The scheme-specific `extra` object of a requirement (for `exact` EVM:
/// the token's EIP-712 `name` and `version`, and optionally
/// `assetTransferMethod`). Every member is kept, so it can be echoed.
///
/// `name` and `version` are held apart when they are strings (the hot path
/// needs them); any other member, or a non-string `name`/`version`, is in
/// `other`. Serialization writes `name`, `version`, then `other`. A repeated
/// `name` or `version` is refused: which domain name a signature is checked
/// against must not depend on a parser's first-wins or last-wins rule.
///
/// ```
/// use pay402_core::x402::Extra;
/// let e: Extra = serde_json::from_str(r#"{"name":"USDC","version":"2","other":1}"#).unwrap();
/// assert_eq!(e.name(), Some("USDC"));
/// assert_eq!(e.version(), Some("2"));
/// assert_eq!(e.other.len(), 1);
/// assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"name":"USDC","version":"2","other":1}"#);
/// assert!(serde_json::from_str::<Extra>(r#"{"name":"USDC","name":"USD Coin"}"#).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extra {
    /// The EIP-712 domain `name`, when a string.
    pub name: Option<String>,
    /// The EIP-712 domain `version`, when a string.
    pub version: Option<String>,
    /// Every other member.
    pub other: Map<String, Value>,
}

impl Serialize for Extra {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let len = usize::from(self.name.is_some())
            + usize::from(self.version.is_some())
            + self.other.len();
        let mut m = s.serialize_map(Some(len))?;
        if let Some(n) = &self.name {
            m.serialize_entry("name", n)?;
        }
        if let Some(v) = &self.version {
            m.serialize_entry("version", v)?;
        }
        for (k, v) in &self.other {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A key of `extra`, without allocating for the two hot ones.
enum ExtraKey {
    Name,
    Version,
    Other(String),
}

impl ExtraKey {
    fn into_string(self) -> String {
        match self {
            ExtraKey::Name => "name".into(),
            ExtraKey::Version => "version".into(),
            ExtraKey::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for ExtraKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ExtraKey, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ExtraKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExtraKey, E> {
                Ok(match v {
                    "name" => ExtraKey::Name,
                    "version" => ExtraKey::Version,
                    _ => ExtraKey::Other(v.to_owned()),
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Extra, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Extra;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Extra, A::Error> {
                use serde::de::Error;
                let mut out = Extra::default();
                // A repeated `name` or `version` is refused: which one an
                // EIP-712 domain uses must not depend on the parser.
                let (mut seen_name, mut seen_version) = (false, false);
                while let Some(key) = map.next_key::<ExtraKey>()? {
                    let seen = match key {
                        ExtraKey::Name => Some((&mut seen_name, "name")),
                        ExtraKey::Version => Some((&mut seen_version, "version")),
                        ExtraKey::Other(_) => None,
                    };
                    if let Some((seen, field)) = seen {
                        if *seen {
                            return Err(A::Error::duplicate_field(field));
                        }
                        *seen = true;
                    }
                    let value: Value = map.next_value()?;
                    match (key, value) {
                        (ExtraKey::Name, Value::String(s)) => out.name = Some(s),
                        (ExtraKey::Version, Value::String(s)) => out.version = Some(s),
                        (key, value) => {
                            out.other.insert(key.into_string(), value);
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl Extra {
    /// `{"name": name, "version": version}`.
    ///
    /// ```
    /// let e = pay402_core::x402::Extra::eip712("USD Coin", "2");
    /// assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"name":"USD Coin","version":"2"}"#);
    /// ```
    pub fn eip712(name: &str, version: &str) -> Extra {
        Extra {
            name: Some(name.into()),
            version: Some(version.into()),
            other: Map::new(),
        }
    }

    /// The EIP-712 domain `name`.
    ///
    /// ```
    /// assert_eq!(pay402_core::x402::Extra::eip712("USDC", "2").name(), Some("USDC"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The EIP-712 domain `version`.
    ///
    /// ```
    /// assert_eq!(pay402_core::x402::Extra::eip712("USDC", "2").version(), Some("2"));
    /// ```
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// True when there are no members.
    ///
    /// ```
    /// assert!(pay402_core::x402::Extra::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.version.is_none() && self.other.is_empty()
    }

    /// True when every member of `self` is in `other` with an equal value
    /// (how the reference server compares `extra` when matching an offer).
    ///
    /// ```
    /// use pay402_core::x402::Extra;
    /// let mut more = Extra::eip712("USDC", "2");
    /// more.other.insert("x".into(), 1.into());
    /// assert!(Extra::eip712("USDC", "2").is_subset_of(&more));
    /// assert!(!more.is_subset_of(&Extra::eip712("USDC", "2")));
    /// ```
    pub fn is_subset_of(&self, other: &Extra) -> bool {
        (self.name.is_none() || self.name == other.name)
            && (self.version.is_none() || self.version == other.version)
            && self
                .other
                .iter()
                .all(|(k, v)| other.other.get(k) == Some(v))
    }
}

/// A v2 payment requirement: one way to pay, offered in `accepts`.
///
/// `asset` and `payTo` are kept as strings because they are chain-specific
/// (EVM hex, Solana base58); [`crate::x402::exact`] parses them for EVM.
///
/// ```
/// use pay402_core::x402::PaymentRequirements;
/// let r: PaymentRequirements = serde_json::from_str(r#"{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"},"future":true}"#).unwrap();
/// assert_eq!(r.max_timeout_seconds, 60);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// The scheme, e.g. `exact`.
    pub scheme: String,
    /// The CAIP-2 network id, e.g. `eip155:84532`.
    pub network: String,
    /// The price in the asset's base units.
    pub amount: TokenAmount,
    /// The asset (token contract address on EVM).
    pub asset: String,
    /// The recipient.
    pub pay_to: String,
    /// How long the server will wait for settlement.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data (EIP-712 domain on EVM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Extra>,
}

/// The protected resource a v2 402 is about.
///
/// ```
/// use pay402_core::x402::ResourceInfo;
/// let r = ResourceInfo::new("https://api.example.com/x");
/// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"url":"https://api.example.com/x"}"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// The resource URL.
    pub url: String,
    /// A human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The media type of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Newer spec revision: the service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Newer spec revision: tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Newer spec revision: an icon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

impl ResourceInfo {
    /// A resource with only its URL.
    ///
    /// ```
    /// assert_eq!(pay402_core::x402::ResourceInfo::new("https://a/b").url, "https://a/b");
    /// ```
    pub fn new(url: impl Into<String>) -> ResourceInfo {
        ResourceInfo {
            url: url.into(),
            ..ResourceInfo::default()
        }
    }
}

/// The v2 402 offer, carried base64-encoded in `PAYMENT-REQUIRED`.
///
/// ```
/// use pay402_core::x402::{PaymentRequired, ResourceInfo};
/// let p = PaymentRequired::new(ResourceInfo::new("https://a/b"), vec![]);
/// assert_eq!(p.x402_version, 2);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: u32,
    /// Why payment is required (or why the last one failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource.
    pub resource: ResourceInfo,
    /// The ways to pay.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions (`bazaar`, `payment-identifier`, ...), kept whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

impl PaymentRequired {
    /// A v2 offer without error or extensions.
    ///
    /// ```
    /// use pay402_core::x402::{PaymentRequired, ResourceInfo};
    /// assert!(PaymentRequired::new(ResourceInfo::new("u"), vec![]).error.is_none());
    /// ```
    pub fn new(resource: ResourceInfo, accepts: Vec<PaymentRequirements>) -> PaymentRequired {
        PaymentRequired {
            x402_version: 2,
            error: None,
            resource,
            accepts,
            extensions: None,
        }
    }
}

/// The `payload` of an `exact` EVM (EIP-3009) payment.
///
/// ```
/// use pay402_core::x402::ExactEvmPayload;
/// let json = r#"{"signature":"0x00","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1","validAfter":"0","validBefore":"9","nonce":"0x0000000000000000000000000000000000000000000000000000000000000000"}}"#;
/// let p: ExactEvmPayload = serde_json::from_str(json).unwrap();
/// assert_eq!(serde_json::to_string(&p).unwrap(), json);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    /// The EIP-712 signature over the authorization.
    pub signature: EvmSignature,
    /// The signed `TransferWithAuthorization`.
    pub authorization: TransferAuthorization,
}

/// A v2 payment, carried base64-encoded in `PAYMENT-SIGNATURE`.
///
/// `P` is the scheme-specific payload: [`ExactEvmPayload`] by default, or
/// [`serde_json::Value`] to accept any scheme.
///
/// ```
/// use pay402_core::x402::{PaymentPayloadV2, HeaderValue};
/// let json = r#"{"x402Version":2,"accepted":{"scheme":"other","network":"solana:x","amount":"1","asset":"a","payTo":"b","maxTimeoutSeconds":5},"payload":{"transaction":"AQ=="}}"#;
/// let p: PaymentPayloadV2<serde_json::Value> = serde_json::from_str(json).unwrap();
/// assert_eq!(p.accepted.scheme, "other");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV2<P = ExactEvmPayload> {
    /// Must be 2.
    pub x402_version: u32,
    /// The resource, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The requirement the client chose, echoed verbatim.
    pub accepted: PaymentRequirements,
    /// The scheme-specific payload.
    pub payload: P,
    /// Extensions, echoed (the client may add, never remove).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

/// A v1 payment requirement (inside the v1 402 body's `accepts`).
///
/// ```
/// use pay402_core::x402::PaymentRequirementsV1;
/// let r: PaymentRequirementsV1 = serde_json::from_str(r#"{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","resource":"https://a/b","description":"","mimeType":"","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","extra":{"name":"USDC","version":"2"}}"#).unwrap();
/// assert_eq!(r.max_amount_required.to_string(), "10000");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    /// The scheme, e.g. `exact`.
    pub scheme: String,
    /// The v1 network slug, e.g. `base-sepolia`.
    pub network: String,
    /// The most the payment may be, in base units (the payment must be at least this).
    pub max_amount_required: TokenAmount,
    /// The asset (token contract on EVM).
    pub asset: String,
    /// The recipient.
    pub pay_to: String,
    /// The resource URL.
    #[serde(default)]
    pub resource: String,
    /// A human description.
    #[serde(default)]
    pub description: String,
    /// The media type of the resource.
    #[serde(default)]
    pub mime_type: String,
    /// Output schema, or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// How long the server will wait for settlement.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data (EIP-712 domain on EVM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Extra>,
}

/// The v1 402 body `{x402Version:1, error, accepts}`.
///
/// ```
/// use pay402_core::x402::PaymentRequiredV1;
/// let b: PaymentRequiredV1 = serde_json::from_str(r#"{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[]}"#).unwrap();
/// assert_eq!(b.x402_version, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    /// Always 1.
    pub x402_version: u32,
    /// Why payment is required.
    #[serde(default)]
    pub error: String,
    /// The ways to pay.
    pub accepts: Vec<PaymentRequirementsV1>,
}

/// A v1 payment, carried base64-encoded in `X-PAYMENT`.
///
/// ```
/// use pay402_core::x402::PaymentPayloadV1;
/// let p: PaymentPayloadV1<serde_json::Value> = serde_json::from_str(r#"{"x402Version":1,"scheme":"exact","network":"base","payload":{}}"#).unwrap();
/// assert_eq!(p.network, "base");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV1<P = ExactEvmPayload> {
    /// Must be 1.
    pub x402_version: u32,
    /// The scheme, e.g. `exact`.
    pub scheme: String,
    /// The v1 network slug.
    pub network: String,
    /// The scheme-specific payload.
    pub payload: P,
}

/// The settlement receipt: `X-PAYMENT-RESPONSE` (v1) or `PAYMENT-RESPONSE`
/// (v2), and the facilitator's `/settle` answer.
///
/// Never release a paid resource unless `success` is true.
///
/// ```
/// use pay402_core::x402::SettleResponse;
/// let s = SettleResponse::failure("insufficient_funds", "eip155:84532");
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"success":false,"errorReason":"insufficient_funds","network":"eip155:84532"}"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether the payment settled.
    pub success: bool,
    /// The stable failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// A human failure message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The transaction hash (`""` on a v1 failure; absent on a v2 failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// The network (CAIP-2 in v2, slug in v1).
    #[serde(default)]
    pub network: String,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The amount settled, in base units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<TokenAmount>,
    /// Extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

impl SettleResponse {
    /// A successful settlement.
    ///
    /// ```
    /// let s = pay402_core::x402::SettleResponse::success("0xabc", "eip155:8453", "0x857b06519E91e3A54538791bDbb0E22373e36b66");
    /// assert!(s.success);
    /// ```
    pub fn success(transaction: &str, network: &str, payer: &str) -> SettleResponse {
        SettleResponse {
            success: true,
            transaction: Some(transaction.into()),
            network: network.into(),
            payer: Some(payer.into()),
            ..SettleResponse::default()
        }
    }

    /// A failed settlement (v2 shape: no `transaction`).
    ///
    /// ```
    /// let s = pay402_core::x402::SettleResponse::failure("insufficient_funds", "eip155:8453");
    /// assert!(!s.success);
    /// ```
    pub fn failure(reason: &str, network: &str) -> SettleResponse {
        SettleResponse {
            success: false,
            error_reason: Some(reason.into()),
            network: network.into(),
            ..SettleResponse::default()
        }
    }
}

/// The facilitator's `/verify` answer.
///
/// ```
/// use pay402_core::x402::VerifyResponse;
/// let v: VerifyResponse = serde_json::from_str(r#"{"isValid":false,"invalidReason":"invalid_exact_evm_signature"}"#).unwrap();
/// assert_eq!(v.invalid_reason.as_deref(), Some("invalid_exact_evm_signature"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment is valid.
    pub is_valid: bool,
    /// The stable reason when invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// A human message when invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// The body of `POST /verify` and `POST /settle`:
/// `{x402Version, paymentPayload, paymentRequirements}`.
///
/// ```
/// use pay402_core::x402::{FacilitatorRequestV2, PaymentPayloadV2};
/// let json = r#"{"x402Version":2,"paymentPayload":{"x402Version":2,"accepted":{"scheme":"exact","network":"eip155:1","amount":"1","asset":"a","payTo":"b","maxTimeoutSeconds":5},"payload":{}},"paymentRequirements":{"scheme":"exact","network":"eip155:1","amount":"1","asset":"a","payTo":"b","maxTimeoutSeconds":5}}"#;
/// let r: FacilitatorRequestV2<serde_json::Value> = serde_json::from_str(json).unwrap();
/// assert_eq!(serde_json::to_string(&r).unwrap(), json);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest<P, R> {
    /// The protocol version of the payload.
    pub x402_version: u32,
    /// The client's payment.
    pub payment_payload: P,
    /// The requirement it is checked against.
    pub payment_requirements: R,
}

/// A v2 `/verify` or `/settle` body.
///
/// ```
/// use pay402_core::x402::FacilitatorRequestV2;
/// fn takes(_: &FacilitatorRequestV2) {}
/// ```
pub type FacilitatorRequestV2<P = ExactEvmPayload> =
    FacilitatorRequest<PaymentPayloadV2<P>, PaymentRequirements>;

/// A v1 `/verify` or `/settle` body.
///
/// ```
/// use pay402_core::x402::FacilitatorRequestV1;
/// fn takes(_: &FacilitatorRequestV1) {}
/// ```
pub type FacilitatorRequestV1<P = ExactEvmPayload> =
    FacilitatorRequest<PaymentPayloadV1<P>, PaymentRequirementsV1>;

/// One `(version, scheme, network)` a facilitator supports.
///
/// ```
/// use pay402_core::x402::SupportedKind;
/// let k: SupportedKind = serde_json::from_str(r#"{"x402Version":2,"scheme":"exact","network":"eip155:31337"}"#).unwrap();
/// assert_eq!(k.network, "eip155:31337");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// The protocol version.
    pub x402_version: u32,
    /// The scheme.
    pub scheme: String,
    /// The network (CAIP-2 in v2, slug in v1).
    pub network: String,
    /// Per-kind data (SVM `feePayer`, upto `facilitatorAddress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Extra>,
}

/// The facilitator's `GET /supported` answer.
///
/// ```
/// use pay402_core::x402::SupportedResponse;
/// let s: SupportedResponse = serde_json::from_str(r#"{"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:84532"}],"extensions":[],"signers":{"eip155:*":["0x209693Bc6afc0C5328bA36FaF03C514EF312287C"]}}"#).unwrap();
/// assert!(s.supports(2, "exact", "eip155:84532"));
/// assert!(!s.supports(1, "exact", "eip155:84532"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SupportedResponse {
    /// The supported kinds.
    pub kinds: Vec<SupportedKind>,
    /// Supported extension names.
    #[serde(default)]
    pub extensions: Vec<Value>,
    /// Signer addresses by CAIP-2 pattern (`eip155:*`).
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}

impl SupportedResponse {
    /// True when a kind matches exactly.
    ///
    /// ```
    /// assert!(!pay402_core::x402::SupportedResponse::default().supports(2, "exact", "eip155:1"));
    /// ```
    pub fn supports(&self, x402_version: u32, scheme: &str, network: &str) -> bool {
        self.kinds
            .iter()
            .any(|k| k.x402_version == x402_version && k.scheme == scheme && k.network == network)
    }
}

/// Picks the offered requirement a v2 payment answers: the one equal to
/// `accepted` in every field, `extra` compared as a subset (as the reference
/// server does).
///
/// ```
/// use pay402_core::x402::{select_requirement_v2, PaymentRequirements, Extra, TokenAmount};
/// let r = PaymentRequirements { scheme: "exact".into(), network: "eip155:1".into(), amount: TokenAmount::from_u64(1),
///     asset: "a".into(), pay_to: "b".into(), max_timeout_seconds: 5, extra: Some(Extra::eip712("USDC", "2")) };
/// let offers = [r.clone()];
/// assert!(select_requirement_v2(&offers, &r).is_some());
/// let mut other = r.clone();
/// other.amount = TokenAmount::from_u64(2);
/// assert!(select_requirement_v2(&offers, &other).is_none());
/// ```
pub fn select_requirement_v2<'r>(
    offers: &'r [PaymentRequirements],
    accepted: &PaymentRequirements,
) -> Option<&'r PaymentRequirements> {
    offers.iter().find(|o| {
        o.scheme == accepted.scheme
            && o.network == accepted.network
            && o.amount == accepted.amount
            && o.asset == accepted.asset
            && o.pay_to == accepted.pay_to
            && o.max_timeout_seconds == accepted.max_timeout_seconds
            && match (&o.extra, &accepted.extra) {
                (None, _) => true,
                (Some(offered), Some(echoed)) => offered.is_subset_of(echoed),
                (Some(offered), None) => offered.is_empty(),
            }
    })
}

/// Picks the offered v1 requirement with the payment's `scheme` and `network`.
///
/// ```
/// use pay402_core::x402::{select_requirement_v1, PaymentRequirementsV1, TokenAmount};
/// let r = PaymentRequirementsV1 { scheme: "exact".into(), network: "base".into(), max_amount_required: TokenAmount::from_u64(1),
///     asset: "a".into(), pay_to: "b".into(), resource: String::new(), description: String::new(),
///     mime_type: String::new(), output_schema: None, max_timeout_seconds: 5, extra: None };
/// assert!(select_requirement_v1(&[r], "exact", "base").is_some());
/// ```
pub fn select_requirement_v1<'r>(
    offers: &'r [PaymentRequirementsV1],
    scheme: &str,
    network: &str,
) -> Option<&'r PaymentRequirementsV1> {
    offers
        .iter()
        .find(|o| o.scheme == scheme && o.network == network)
}
