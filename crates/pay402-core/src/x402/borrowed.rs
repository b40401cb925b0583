//! A borrowed decode path for `PAYMENT-SIGNATURE`: the hot path of a paid
//! request.
//!
//! [`PaymentPayloadV2Ref`] is deserialized straight out of a caller-owned
//! buffer holding the decoded JSON: its strings are [`Cow`]s that borrow from
//! that buffer (they only own when the JSON string has escapes), and the
//! numbers, addresses, nonce and 65-byte signature are parsed into fixed-size
//! values. Decoding the §5.2 vector allocates nothing beyond the reused
//! buffer. A hand-written scanner (`borrowed/scan.rs`) decides the documents
//! honest clients send; anything it does not accept goes to this type's
//! serde deserializer, the reference, so both accept the same documents. [`exact::verify_v2_ref`](super::exact::verify_v2_ref) verifies it
//! without converting; [`PaymentPayloadV2Ref::to_owned_payload`] converts to
//! the owned [`PaymentPayloadV2`] when it must outlive the buffer.
//!
//! ```
//! use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
//! use pay402_core::x402::{exact, ExactEvmPayload, HeaderValue, PaymentPayloadV2};
//! use pay402_core::time::UnixTime;
//! # let header = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
//! let offers = [PaymentPayloadV2::<ExactEvmPayload>::decode_header(header).unwrap().accepted]; // the server's offers
//! let mut buf = Vec::new(); // reuse across requests
//! let payment = PaymentPayloadV2Ref::decode_header(header, &mut buf).unwrap();
//! let chosen = payment.select_requirement(&offers).unwrap();
//! let ok = exact::verify_v2_ref(&payment, chosen, UnixTime(1_740_672_100)).unwrap();
//! assert_eq!(ok.chain_id, 84532);
//! ```

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::amount::{EvmTimestamp, TokenAmount};
use super::evm::{Bytes32, EvmAddress, EvmSignature, HexError, TransferAuthorization};
use super::header::{HeaderError, MAX_HEADER_LEN, decode_base64};

mod scan;
use super::types::{ExactEvmPayload, Extra, PaymentPayloadV2, PaymentRequirements, ResourceInfo};

fn own(s: &str) -> String {
    s.to_owned()
}

fn own_opt(s: &Option<Cow<'_, str>>) -> Option<String> {
    s.as_deref().map(str::to_owned)
}

/// A JSON value that is a string (borrowed when possible) or anything else.
enum StrOrValue<'a> {
    Str(Cow<'a, str>),
    Other(Value),
}

impl StrOrValue<'_> {
    fn into_value(self) -> Value {
        match self {
            StrOrValue::Str(s) => Value::String(s.into_owned()),
            StrOrValue::Other(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for StrOrValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StrOrValue<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrOrValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOrValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOrValue::Str(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(StrOrValue::Other(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(StrOrValue::Other(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(StrOrValue::Other(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(StrOrValue::Other(
                    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrOrValue::Other(Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrOrValue::Other(Value::Null))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(StrOrValue::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(StrOrValue::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key, borrowed when possible.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        match StrOrValue::deserialize(d)? {
            StrOrValue::Str(s) => Ok(Key(s)),
            StrOrValue::Other(_) => Err(de::Error::custom("expected a string key")),
        }
    }
}

/// The borrowed form of [`Extra`]: `name` and `version` borrow from the
/// buffer; any other member (rare) is kept in `other`, as in [`Extra`].
///
/// ```
/// use pay402_core::x402::borrowed::ExtraRef;
/// let e: ExtraRef = serde_json::from_str(r#"{"name":"USDC","version":"2","x":[1]}"#).unwrap();
/// assert_eq!(e.name.as_deref(), Some("USDC"));
/// assert_eq!(e.other.len(), 1);
/// assert_eq!(e.to_owned_extra().version(), Some("2"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtraRef<'a> {
    /// The EIP-712 domain `name`, when a string.
    pub name: Option<Cow<'a, str>>,
    /// The EIP-712 domain `version`, when a string.
    pub version: Option<Cow<'a, str>>,
    /// Every other member (and a non-string `name`/`version`).
    pub other: Map<String, Value>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ExtraRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ExtraRef<'a>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtraRef<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtraRef<'de>, A::Error> {
                let mut out = ExtraRef::default();
                // As `Extra`: a repeated `name` or `version` is refused.
                let mut seen = 0u8;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "name" => seen_once(&mut seen, 1, "name")?,
                        "version" => seen_once(&mut seen, 2, "version")?,
                        _ => {}
                    }
                    let value: StrOrValue<'de> = map.next_value()?;
                    match (key.as_ref(), value) {
                        ("name", StrOrValue::Str(s)) => out.name = Some(s),
                        ("version", StrOrValue::Str(s)) => out.version = Some(s),
                        (_, value) => {
                            out.other.insert(key.into_owned(), value.into_value());
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl ExtraRef<'_> {
    /// The owned [`Extra`].
    ///
    /// ```
    /// use pay402_core::x402::{borrowed::ExtraRef, Extra};
    /// let e: ExtraRef = serde_json::from_str(r#"{"name":"USDC","version":"2"}"#).unwrap();
    /// assert_eq!(e.to_owned_extra(), Extra::eip712("USDC", "2"));
    /// ```
    pub fn to_owned_extra(&self) -> Extra {
        Extra {
            name: own_opt(&self.name),
            version: own_opt(&self.version),
            other: self.other.clone(),
        }
    }

    /// True when every member of `offered` is here with an equal value (the
    /// reference server's subset rule, as [`Extra::is_subset_of`]).
    ///
    /// ```
    /// use pay402_core::x402::{borrowed::ExtraRef, Extra};
    /// let e: ExtraRef = serde_json::from_str(r#"{"name":"USDC","version":"2","x":1}"#).unwrap();
    /// assert!(e.contains(&Extra::eip712("USDC", "2")));
    /// assert!(!e.contains(&Extra::eip712("USD Coin", "2")));
    /// ```
    pub fn contains(&self, offered: &Extra) -> bool {
        offered
            .name
            .as_deref()
            .is_none_or(|n| self.name.as_deref() == Some(n))
            && offered
                .version
                .as_deref()
                .is_none_or(|v| self.version.as_deref() == Some(v))
            && offered
                .other
                .iter()
                .all(|(k, v)| self.other.get(k) == Some(v))
    }
}

/// The borrowed form of [`PaymentRequirements`] (the `accepted` echo).
///
/// ```
/// use pay402_core::x402::borrowed::PaymentRequirementsRef;
/// let r: PaymentRequirementsRef = serde_json::from_str(r#"{"scheme":"exact","network":"eip155:1","amount":"5","asset":"a","payTo":"b","maxTimeoutSeconds":9}"#).unwrap();
/// assert_eq!(r.network, "eip155:1");
/// assert_eq!(r.to_owned_requirements().max_timeout_seconds, 9);
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsRef<'a> {
    /// The scheme, e.g. `exact`.
    #[serde(borrow)]
    pub scheme: Cow<'a, str>,
    /// The CAIP-2 network id.
    #[serde(borrow)]
    pub network: Cow<'a, str>,
    /// The price in base units.
    pub amount: TokenAmount,
    /// The asset.
    #[serde(borrow)]
    pub asset: Cow<'a, str>,
    /// The recipient.
    #[serde(borrow)]
    pub pay_to: Cow<'a, str>,
    /// How long the server will wait for settlement.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data.
    #[serde(default, borrow)]
    pub extra: Option<ExtraRef<'a>>,
}

impl PaymentRequirementsRef<'_> {
    /// The owned [`PaymentRequirements`].
    ///
    /// ```
    /// use pay402_core::x402::borrowed::PaymentRequirementsRef;
    /// let r: PaymentRequirementsRef = serde_json::from_str(r#"{"scheme":"exact","network":"eip155:1","amount":"5","asset":"a","payTo":"b","maxTimeoutSeconds":9}"#).unwrap();
    /// assert_eq!(r.to_owned_requirements().pay_to, "b");
    /// ```
    pub fn to_owned_requirements(&self) -> PaymentRequirements {
        PaymentRequirements {
            scheme: own(&self.scheme),
            network: own(&self.network),
            amount: self.amount,
            asset: own(&self.asset),
            pay_to: own(&self.pay_to),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: self.extra.as_ref().map(ExtraRef::to_owned_extra),
        }
    }

    /// True when this echo matches `offer` by the rule of
    /// [`select_requirement_v2`](super::select_requirement_v2): every field
    /// equal, the offer's `extra` a subset of the echoed one.
    ///
    /// ```
    /// use pay402_core::x402::borrowed::PaymentRequirementsRef;
    /// let r: PaymentRequirementsRef = serde_json::from_str(r#"{"scheme":"exact","network":"eip155:1","amount":"5","asset":"a","payTo":"b","maxTimeoutSeconds":9}"#).unwrap();
    /// let mut offer = r.to_owned_requirements();
    /// assert!(r.matches(&offer));
    /// offer.pay_to = "c".into();
    /// assert!(!r.matches(&offer));
    /// ```
    pub fn matches(&self, offer: &PaymentRequirements) -> bool {
        offer.scheme == self.scheme
            && offer.network == self.network
            && offer.amount == self.amount
            && offer.asset == self.asset
            && offer.pay_to == self.pay_to
            && offer.max_timeout_seconds == self.max_timeout_seconds
            && match (&offer.extra, &self.extra) {
                (None, _) => true,
                (Some(offered), Some(echoed)) => echoed.contains(offered),
                (Some(offered), None) => offered.is_empty(),
            }
    }
}

/// The borrowed form of [`ResourceInfo`].
///
/// ```
/// use pay402_core::x402::borrowed::ResourceInfoRef;
/// let r: ResourceInfoRef = serde_json::from_str(r#"{"url":"https://a/b","mimeType":"text/plain"}"#).unwrap();
/// assert_eq!(r.to_owned_resource().mime_type.as_deref(), Some("text/plain"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfoRef<'a> {
    /// The resource URL.
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    /// A human description.
    #[serde(default, borrow)]
    pub description: Option<Cow<'a, str>>,
    /// The media type.
    #[serde(default, borrow)]
    pub mime_type: Option<Cow<'a, str>>,
    /// Newer spec revision: the service's name.
    #[serde(default, borrow)]
    pub service_name: Option<Cow<'a, str>>,
    /// Newer spec revision: tags.
    #[serde(default, borrow)]
    pub tags: Option<Vec<Cow<'a, str>>>,
    /// Newer spec revision: an icon URL.
    #[serde(default, borrow)]
    pub icon_url: Option<Cow<'a, str>>,
}

impl ResourceInfoRef<'_> {
    /// The owned [`ResourceInfo`].
    ///
    /// ```
    /// use pay402_core::x402::borrowed::ResourceInfoRef;
    /// let r: ResourceInfoRef = serde_json::from_str(r#"{"url":"u"}"#).unwrap();
    /// assert_eq!(r.to_owned_resource().url, "u");
    /// ```
    pub fn to_owned_resource(&self) -> ResourceInfo {
        ResourceInfo {
            url: own(&self.url),
            description: own_opt(&self.description),
            mime_type: own_opt(&self.mime_type),
            service_name: own_opt(&self.service_name),
            tags: self
                .tags
                .as_ref()
                .map(|t| t.iter().map(|s| s.as_ref().to_owned()).collect()),
            icon_url: own_opt(&self.icon_url),
        }
    }
}

/// A payload signature without a heap allocation in the common case: a
/// 65-byte EOA `r ‖ s ‖ v` is held inline; any other length (ERC-1271/6492
/// smart-wallet signatures, which core fails closed) is held as
/// [`EvmSignature`].
///
/// ```
/// use pay402_core::x402::borrowed::InlineSignature;
/// let s: InlineSignature = serde_json::from_str(&format!("\"0x{}\"", "11".repeat(65))).unwrap();
/// assert!(matches!(s, InlineSignature::Eoa(_)));
/// let s: InlineSignature = serde_json::from_str("\"0x00ff\"").unwrap();
/// assert_eq!(s.as_bytes(), &[0, 255]);
/// assert!(serde_json::from_str::<InlineSignature>("\"00ff\"").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InlineSignature {
    /// A 65-byte signature.
    Eoa([u8; 65]),
    /// Any other length.
    Other(EvmSignature),
}

impl InlineSignature {
    /// The raw bytes.
    ///
    /// ```
    /// let s = pay402_core::x402::borrowed::InlineSignature::Eoa([1; 65]);
    /// assert_eq!(s.as_bytes().len(), 65);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            InlineSignature::Eoa(b) => b,
            InlineSignature::Other(s) => s.as_bytes(),
        }
    }

    /// The owned [`EvmSignature`].
    ///
    /// ```
    /// let s = pay402_core::x402::borrowed::InlineSignature::Eoa([1; 65]);
    /// assert!(s.to_evm_signature().is_eoa());
    /// ```
    pub fn to_evm_signature(&self) -> EvmSignature {
        match self {
            InlineSignature::Eoa(b) => EvmSignature::from_bytes(b.to_vec()),
            InlineSignature::Other(s) => s.clone(),
        }
    }
}

impl InlineSignature {
    /// `0x` + hex: 65 bytes inline, any other length as [`EvmSignature`].
    fn parse(v: &str) -> Result<InlineSignature, HexError> {
        let h = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X"));
        if let Some(h) = h.filter(|h| h.len() == 130) {
            let mut out = [0u8; 65];
            hex::decode_to_slice(h, &mut out).map_err(|_| HexError::Invalid)?;
            return Ok(InlineSignature::Eoa(out));
        }
        v.parse().map(InlineSignature::Other)
    }
}

impl<'de> Deserialize<'de> for InlineSignature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<InlineSignature, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = InlineSignature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 0x-prefixed hex signature")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<InlineSignature, E> {
                InlineSignature::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// The borrowed form of [`ExactEvmPayload`]. The authorization is already
/// fixed-size, so it is the owned [`TransferAuthorization`].
///
/// ```
/// use pay402_core::x402::borrowed::ExactEvmPayloadRef;
/// let json = r#"{"signature":"0x00","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1","validAfter":"0","validBefore":"9","nonce":"0x0000000000000000000000000000000000000000000000000000000000000000"}}"#;
/// let p: ExactEvmPayloadRef = serde_json::from_str(json).unwrap();
/// assert_eq!(p.to_owned_payload().signature.as_bytes(), &[0]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ExactEvmPayloadRef {
    /// The signature.
    pub signature: InlineSignature,
    /// The signed `TransferWithAuthorization`.
    pub authorization: TransferAuthorization,
}

impl ExactEvmPayloadRef {
    /// The owned [`ExactEvmPayload`].
    ///
    /// ```
    /// # use pay402_core::x402::borrowed::ExactEvmPayloadRef;
    /// # let json = r#"{"signature":"0x00","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1","validAfter":"0","validBefore":"9","nonce":"0x0000000000000000000000000000000000000000000000000000000000000000"}}"#;
    /// let p: ExactEvmPayloadRef = serde_json::from_str(json).unwrap();
    /// assert_eq!(p.to_owned_payload().authorization, p.authorization);
    /// ```
    pub fn to_owned_payload(&self) -> ExactEvmPayload {
        ExactEvmPayload {
            signature: self.signature.to_evm_signature(),
            authorization: self.authorization.clone(),
        }
    }
}

/// A v2 `exact` EVM payment borrowed from the decoded `PAYMENT-SIGNATURE`
/// JSON. Same fields and the same tolerance of unknown fields as
/// [`PaymentPayloadV2<ExactEvmPayload>`].
///
/// See the module example.
///
/// ```
/// use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
/// let mut buf = Vec::new();
/// assert!(PaymentPayloadV2Ref::decode_header("eyJ4NDAyVmVyc2lvbiI6Mn0=", &mut buf).is_err()); // no `accepted`
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PaymentPayloadV2Ref<'a> {
    /// Must be 2.
    pub x402_version: u32,
    /// The resource, echoed.
    pub resource: Option<ResourceInfoRef<'a>>,
    /// The requirement the client chose, echoed.
    pub accepted: PaymentRequirementsRef<'a>,
    /// The `exact` EVM payload.
    pub payload: ExactEvmPayloadRef,
    /// Extensions, echoed (owned: rare, and of any shape).
    pub extensions: Option<Map<String, Value>>,
}

// Deserialization writes `accepted`, `payload` and `payload.authorization`
// in place (through `DeserializeSeed`s holding `&mut` to their slots) instead
// of returning them by value up serde's nested frames: moving these large
// values was a tenth of the decode time. Same fields, same required fields,
// duplicates rejected and unknown fields ignored, as a derive would do.
// Unlike a derive, the array form of an object (`[2, …]`) is not accepted.

/// A string value, borrowed when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CowStr<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Records that field `bit` was seen; a second sighting is an error.
fn seen_once<E: de::Error>(seen: &mut u8, bit: u8, name: &'static str) -> Result<(), E> {
    if *seen & bit != 0 {
        return Err(E::duplicate_field(name));
    }
    *seen |= bit;
    Ok(())
}

/// Fails with `missing field` for the first required field not seen.
fn all_seen<E: de::Error>(seen: u8, required: &[(u8, &'static str)]) -> Result<(), E> {
    match required.iter().find(|(bit, _)| seen & bit == 0) {
        Some((_, name)) => Err(E::missing_field(name)),
        None => Ok(()),
    }
}

macro_rules! in_place_seed {
    ($seed:ident, $target:ty, $what:literal, |$out:ident, $map:ident, $key:ident, $seen:ident| $body:block, $required:expr) => {
        struct $seed<'o, 'a>(&'o mut $target, PhantomData<&'a ()>);

        impl<'de: 'a, 'a> de::DeserializeSeed<'de> for $seed<'_, 'a> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_map(self)
            }
        }

        impl<'de: 'a, 'a> Visitor<'de> for $seed<'_, 'a> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut $map: A) -> Result<(), A::Error> {
                let $out = self.0;
                let mut $seen = 0u8;
                while let Some(CowStr($key)) = $map.next_key::<CowStr<'de>>()? {
                    $body
                }
                all_seen($seen, $required)
            }
        }
    };
}

in_place_seed!(
    PayloadSeed,
    PaymentPayloadV2Ref<'a>,
    "a PaymentPayload object",
    |out, map, key, seen| {
        match key.as_ref() {
            "x402Version" => {
                seen_once(&mut seen, 1, "x402Version")?;
                out.x402_version = map.next_value()?;
            }
            "resource" => {
                seen_once(&mut seen, 2, "resource")?;
                out.resource = map.next_value()?;
            }
            "accepted" => {
                seen_once(&mut seen, 4, "accepted")?;
                map.next_value_seed(RequirementsSeed(&mut out.accepted, PhantomData))?;
            }
            "payload" => {
                seen_once(&mut seen, 8, "payload")?;
                map.next_value_seed(ExactSeed(&mut out.payload, PhantomData))?;
            }
            "extensions" => {
                seen_once(&mut seen, 16, "extensions")?;
                out.extensions = map.next_value()?;
            }
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
    },
    &[(1, "x402Version"), (4, "accepted"), (8, "payload")]
);

in_place_seed!(
    RequirementsSeed,
    PaymentRequirementsRef<'a>,
    "a PaymentRequirements object",
    |out, map, key, seen| {
        match key.as_ref() {
            "scheme" => {
                seen_once(&mut seen, 1, "scheme")?;
                out.scheme = map.next_value::<CowStr<'de>>()?.0;
            }
            "network" => {
                seen_once(&mut seen, 2, "network")?;
                out.network = map.next_value::<CowStr<'de>>()?.0;
            }
            "amount" => {
                seen_once(&mut seen, 4, "amount")?;
                out.amount = map.next_value()?;
            }
            "asset" => {
                seen_once(&mut seen, 8, "asset")?;
                out.asset = map.next_value::<CowStr<'de>>()?.0;
            }
            "payTo" => {
                seen_once(&mut seen, 16, "payTo")?;
                out.pay_to = map.next_value::<CowStr<'de>>()?.0;
            }
            "maxTimeoutSeconds" => {
                seen_once(&mut seen, 32, "maxTimeoutSeconds")?;
                out.max_timeout_seconds = map.next_value()?;
            }
            "extra" => {
                seen_once(&mut seen, 64, "extra")?;
                out.extra = map.next_value()?;
            }
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
    },
    &[
        (1, "scheme"),
        (2, "network"),
        (4, "amount"),
        (8, "asset"),
        (16, "payTo"),
        (32, "maxTimeoutSeconds"),
    ]
);

in_place_seed!(
    ExactSeed,
    ExactEvmPayloadRef,
    "an exact EVM payload object",
    |out, map, key, seen| {
        match key.as_ref() {
            "signature" => {
                seen_once(&mut seen, 1, "signature")?;
                out.signature = map.next_value()?;
            }
            "authorization" => {
                seen_once(&mut seen, 2, "authorization")?;
                map.next_value_seed(AuthorizationSeed(&mut out.authorization, PhantomData))?;
            }
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
    },
    &[(1, "signature"), (2, "authorization")]
);

in_place_seed!(
    AuthorizationSeed,
    TransferAuthorization,
    "an authorization object",
    |out, map, key, seen| {
        match key.as_ref() {
            "from" => {
                seen_once(&mut seen, 1, "from")?;
                out.from = map.next_value()?;
            }
            "to" => {
                seen_once(&mut seen, 2, "to")?;
                out.to = map.next_value()?;
            }
            "value" => {
                seen_once(&mut seen, 4, "value")?;
                out.value = map.next_value()?;
            }
            "validAfter" => {
                seen_once(&mut seen, 8, "validAfter")?;
                out.valid_after = map.next_value()?;
            }
            "validBefore" => {
                seen_once(&mut seen, 16, "validBefore")?;
                out.valid_before = map.next_value()?;
            }
            "nonce" => {
                seen_once(&mut seen, 32, "nonce")?;
                out.nonce = map.next_value()?;
            }
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
    },
    &[
        (1, "from"),
        (2, "to"),
        (4, "value"),
        (8, "validAfter"),
        (16, "validBefore"),
        (32, "nonce"),
    ]
);

impl<'de: 'a, 'a> Deserialize<'de> for PaymentPayloadV2Ref<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PaymentPayloadV2Ref<'a>, D::Error> {
        let mut out = PaymentPayloadV2Ref::empty();
        de::DeserializeSeed::deserialize(PayloadSeed(&mut out, PhantomData), d)?;
        Ok(out)
    }
}

impl<'a> PaymentPayloadV2Ref<'a> {
    /// The value both decoders fill in place.
    fn empty() -> PaymentPayloadV2Ref<'a> {
        PaymentPayloadV2Ref {
            x402_version: 0,
            resource: None,
            accepted: PaymentRequirementsRef {
                scheme: Cow::Borrowed(""),
                network: Cow::Borrowed(""),
                amount: TokenAmount::default(),
                asset: Cow::Borrowed(""),
                pay_to: Cow::Borrowed(""),
                max_timeout_seconds: 0,
                extra: None,
            },
            payload: ExactEvmPayloadRef {
                signature: InlineSignature::Eoa([0; 65]),
                authorization: TransferAuthorization {
                    from: EvmAddress::default(),
                    to: EvmAddress::default(),
                    value: TokenAmount::default(),
                    valid_after: EvmTimestamp::default(),
                    valid_before: EvmTimestamp::default(),
                    nonce: Bytes32::default(),
                },
            },
            extensions: None,
        }
    }

    /// Decodes a `PAYMENT-SIGNATURE` value (at most
    /// [`MAX_HEADER_LEN`] characters) into `buf`, which the result borrows.
    /// Reuse `buf` across requests to avoid its allocation too.
    ///
    /// ```
    /// use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
    /// use pay402_core::x402::HeaderError;
    /// let mut buf = Vec::new();
    /// assert_eq!(PaymentPayloadV2Ref::decode_header("", &mut buf), Err(HeaderError::Empty));
    /// ```
    pub fn decode_header(value: &str, buf: &'a mut Vec<u8>) -> Result<Self, HeaderError> {
        decode_base64(value, MAX_HEADER_LEN, buf)?;
        let buf: &'a [u8] = buf;
        match std::str::from_utf8(buf) {
            Ok(json) => Self::from_json(json),
            // As the owned path, which tolerates bad UTF-8 inside ignored
            // values: both paths accept exactly the same input.
            Err(_) => serde_json::from_slice(buf).map_err(|e| HeaderError::Json(e.to_string())),
        }
    }

    /// Decodes the JSON of a `PAYMENT-SIGNATURE` (already base64-decoded);
    /// the result borrows from `json`.
    ///
    /// A hand-written scanner decides the documents honest clients send;
    /// anything it does not accept goes to the serde deserializer of this
    /// type, which decides (and words the error). Both accept exactly the
    /// same documents with the same result.
    ///
    /// ```
    /// use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
    /// let json = r#"{"x402Version":2,"accepted":{"scheme":"exact","network":"eip155:1","amount":"1","asset":"a","payTo":"b","maxTimeoutSeconds":5},"payload":{"signature":"0x00","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1","validAfter":"0","validBefore":"9","nonce":"0x0000000000000000000000000000000000000000000000000000000000000000"}}}"#;
    /// let p = PaymentPayloadV2Ref::from_json(json).unwrap();
    /// assert_eq!(p.accepted.network, "eip155:1");
    /// assert!(PaymentPayloadV2Ref::from_json(&json.replace("\"x402Version\":2,", "")).is_err());
    /// ```
    pub fn from_json(json: &'a str) -> Result<Self, HeaderError> {
        let mut out = Self::empty();
        match scan::payment_payload(json, &mut out) {
            Ok(()) => Ok(out),
            Err(scan::Reject) => {
                serde_json::from_str(json).map_err(|e| HeaderError::Json(e.to_string()))
            }
        }
    }

    /// The requirement among `offers` that this payment's `accepted` echoes
    /// (the rule of [`select_requirement_v2`](super::select_requirement_v2)).
    ///
    /// See the module example.
    ///
    /// ```
    /// # use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
    /// # let p: PaymentPayloadV2Ref = serde_json::from_str(r#"{"x402Version":2,"accepted":{"scheme":"exact","network":"eip155:1","amount":"1","asset":"a","payTo":"b","maxTimeoutSeconds":5},"payload":{"signature":"0x00","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1","validAfter":"0","validBefore":"9","nonce":"0x0000000000000000000000000000000000000000000000000000000000000000"}}}"#).unwrap();
    /// assert!(p.select_requirement(&[]).is_none());
    /// ```
    pub fn select_requirement<'r>(
        &self,
        offers: &'r [PaymentRequirements],
    ) -> Option<&'r PaymentRequirements> {
        offers.iter().find(|o| self.accepted.matches(o))
    }

    /// The owned [`PaymentPayloadV2`], for when the payment must outlive
    /// the buffer.
    ///
    /// ```
    /// # use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
    /// # let p: PaymentPayloadV2Ref = serde_json::from_str(r#"{"x402Version":2,"accepted":{"scheme":"exact","network":"eip155:1","amount":"1","asset":"a","payTo":"b","maxTimeoutSeconds":5},"payload":{"signature":"0x00","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1","validAfter":"0","validBefore":"9","nonce":"0x0000000000000000000000000000000000000000000000000000000000000000"}}}"#).unwrap();
    /// assert_eq!(p.to_owned_payload().accepted.network, "eip155:1");
    /// ```
    pub fn to_owned_payload(&self) -> PaymentPayloadV2<ExactEvmPayload> {
        PaymentPayloadV2 {
            x402_version: self.x402_version,
            resource: self
                .resource
                .as_ref()
                .map(ResourceInfoRef::to_owned_resource),
            accepted: self.accepted.to_owned_requirements(),
            payload: self.payload.to_owned_payload(),
            extensions: self.extensions.clone(),
        }
    }
}
