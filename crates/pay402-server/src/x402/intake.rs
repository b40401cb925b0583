//! Reading a payment off a request: header → decode → match an offer →
//! local `exact` verification. All synchronous and cheap; a bad payment is
//! refused here with the reference reason before any I/O.

use std::cell::RefCell;

use http::HeaderMap;
use pay402_core::time::UnixTime;
use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
use pay402_core::x402::evm::TransferAuthorization;
use pay402_core::x402::exact::{self, VerifiedExact};
use pay402_core::x402::facilitator::PaymentRequest;
use pay402_core::x402::header::{PAYMENT_SIGNATURE, X_PAYMENT};
use pay402_core::x402::network::{caip2_to_slug, slug_to_caip2};
use pay402_core::x402::{
    EvmTimestamp, ExactEvmPayload, HeaderError, HeaderValue, PaymentPayloadV1, PaymentRequirements,
    PaymentRequirementsV1, ResourceInfo,
};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::config::PaymentIdentifierMode;
use super::error::{Mismatch, X402Error};
use super::extract::X402Payment;
use super::store::NonceKey;

/// The extension name of `payment-identifier`.
pub(crate) const PAYMENT_IDENTIFIER: &str = "payment-identifier";

/// The offers of one request, in both protocol versions.
pub(crate) struct OfferSet {
    pub v2: std::sync::Arc<[PaymentRequirements]>,
    pub v1: Vec<PaymentRequirementsV1>,
    pub resource: ResourceInfo,
}

impl OfferSet {
    pub fn new(
        v2: std::sync::Arc<[PaymentRequirements]>,
        resource: ResourceInfo,
        v1_on: bool,
        output_schema: Option<&Value>,
    ) -> OfferSet {
        let v1 = if v1_on {
            v2.iter()
                .map(|o| to_v1(o, &resource, output_schema))
                .collect()
        } else {
            Vec::new()
        };
        OfferSet { v2, v1, resource }
    }
}

/// The v1 form of a v2 offer (the v1 network slug when there is one, else
/// the CAIP-2 id, which pay402's verifier and facilitator also read).
fn to_v1(
    o: &PaymentRequirements,
    resource: &ResourceInfo,
    output_schema: Option<&Value>,
) -> PaymentRequirementsV1 {
    PaymentRequirementsV1 {
        scheme: o.scheme.clone(),
        network: caip2_to_slug(&o.network).map_or_else(|| o.network.clone(), str::to_owned),
        max_amount_required: o.amount,
        asset: o.asset.clone(),
        pay_to: o.pay_to.clone(),
        resource: resource.url.clone(),
        description: resource.description.clone().unwrap_or_default(),
        mime_type: resource.mime_type.clone().unwrap_or_default(),
        output_schema: output_schema.cloned(),
        max_timeout_seconds: o.max_timeout_seconds,
        extra: o.extra.clone(),
    }
}

/// A payment that passed every local check.
pub(crate) struct Intake {
    /// What goes to the facilitator.
    pub request: PaymentRequest,
    /// Where the authorization is single-use.
    pub key: NonceKey,
    /// Identity of the payment (requirement + authorization).
    pub fingerprint: [u8; 32],
    /// The client's `payment-identifier`.
    pub payment_id: Option<String>,
    /// What the handler sees.
    pub payment: X402Payment,
}

thread_local! {
    /// Scratch space for the borrowed decode of `PAYMENT-SIGNATURE`.
    static PAYMENT_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(2048));
}

/// The single value of header `name`, or an error if it appears more than once.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, X402Error> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(X402Error::MultipleHeaders);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| X402Error::Header(HeaderError::Base64))
}

/// Reads the payment of a request, if any: `Ok(None)` when there is no
/// payment header at all.
pub(crate) fn read_payment(
    headers: &HeaderMap,
    offers: &OfferSet,
    v1_on: bool,
    id_mode: PaymentIdentifierMode,
    now: UnixTime,
    skew_secs: u64,
) -> Result<Option<Intake>, X402Error> {
    let v2 = single(headers, PAYMENT_SIGNATURE)?;
    let v1 = single(headers, X_PAYMENT)?;
    let intake = match (v2, v1) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(X402Error::MultipleHeaders),
        (Some(value), None) => read_v2(value, &offers.v2, now)?,
        (None, Some(_)) if !v1_on => return Err(X402Error::Version),
        (None, Some(value)) => read_v1(value, &offers.v1, now)?,
    };
    check_valid_before(&intake, now, skew_secs)?;
    match (id_mode, &intake.payment_id) {
        (PaymentIdentifierMode::Required, None) => Err(X402Error::PaymentIdRequired),
        (PaymentIdentifierMode::Off, Some(_)) => Ok(Some(Intake {
            payment_id: None,
            payment: X402Payment {
                payment_id: None,
                ..intake.payment
            },
            ..intake
        })),
        _ => Ok(Some(intake)),
    }
}

fn read_v2(
    value: &str,
    offers: &[PaymentRequirements],
    now: UnixTime,
) -> Result<Intake, X402Error> {
    PAYMENT_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => read_v2_in(value, offers, now, &mut buf),
        // Re-entered on this thread (cannot happen today): use a fresh buffer.
        Err(_) => read_v2_in(value, offers, now, &mut Vec::new()),
    })
}

fn read_v2_in(
    value: &str,
    offers: &[PaymentRequirements],
    now: UnixTime,
    buf: &mut Vec<u8>,
) -> Result<Intake, X402Error> {
    let span = tracing::debug_span!("x402.verify", version = 2u32);
    let _enter = span.enter();
    let payment = PaymentPayloadV2Ref::decode_header(value, buf)?;
    if payment.x402_version != 2 {
        return Err(X402Error::Version);
    }
    let chosen = match payment.select_requirement(offers) {
        Some(c) => c,
        None => {
            let accepted = payment.accepted.to_owned_requirements();
            return Err(X402Error::NoMatchingOffer(diagnose(&accepted, offers)));
        }
    };
    let verified = exact::verify_v2_ref(&payment, chosen, now)?;
    let payment_id = payment_id(payment.extensions.as_ref())?;
    let owned = payment.to_owned_payload();
    let fingerprint = fingerprint(2, chosen, &owned.payload.authorization);
    let key = nonce_key(&chosen.network, &verified);
    let payment = X402Payment {
        x402_version: 2,
        network: chosen.network.clone(),
        asset: chosen.asset.clone(),
        pay_to: chosen.pay_to.clone(),
        payer: verified.payer,
        amount: verified.authorization.value,
        nonce: verified.authorization.nonce,
        payment_id: payment_id.clone(),
        transaction: None,
    };
    tracing::debug!(payer = %payment.payer, network = %payment.network, "x402.verified");
    Ok(Intake {
        request: PaymentRequest::v2(owned, chosen.clone()),
        key,
        fingerprint,
        payment_id,
        payment,
    })
}

fn read_v1(
    value: &str,
    offers: &[PaymentRequirementsV1],
    now: UnixTime,
) -> Result<Intake, X402Error> {
    let span = tracing::debug_span!("x402.verify", version = 1u32);
    let _enter = span.enter();
    let payment = PaymentPayloadV1::<ExactEvmPayload>::decode_header(value)?;
    if payment.x402_version != 1 {
        return Err(X402Error::Version);
    }
    let candidates: Vec<&PaymentRequirementsV1> = offers
        .iter()
        .filter(|o| o.scheme == payment.scheme && o.network == payment.network)
        .collect();
    if candidates.is_empty() {
        let mismatch = if offers.iter().any(|o| o.scheme == payment.scheme) {
            Mismatch::Network
        } else {
            Mismatch::Scheme
        };
        return Err(X402Error::NoMatchingOffer(mismatch));
    }
    // v1 names only scheme and network: with several assets on one network,
    // the offer is the one the authorization verifies against.
    let mut first_error = None;
    for chosen in candidates {
        match exact::verify_v1(&payment, chosen, now) {
            Ok(verified) => {
                let network = slug_to_caip2(&chosen.network).unwrap_or(&chosen.network);
                let key = nonce_key(network, &verified);
                let fingerprint = fingerprint(1, chosen, &payment.payload.authorization);
                let x402_payment = X402Payment {
                    x402_version: 1,
                    network: chosen.network.clone(),
                    asset: chosen.asset.clone(),
                    pay_to: chosen.pay_to.clone(),
                    payer: verified.payer,
                    amount: verified.authorization.value,
                    nonce: verified.authorization.nonce,
                    payment_id: None,
                    transaction: None,
                };
                tracing::debug!(payer = %x402_payment.payer, network = %x402_payment.network, "x402.verified");
                return Ok(Intake {
                    request: PaymentRequest::v1(payment, chosen.clone()),
                    key,
                    fingerprint,
                    payment_id: None,
                    payment: x402_payment,
                });
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.map_or(
        X402Error::NoMatchingOffer(Mismatch::Other),
        X402Error::Exact,
    ))
}

/// Refuses an authorization that stays spendable longer than the offer
/// allows: `validBefore` past `now + maxTimeoutSeconds + skew`. (A payer who
/// signs a far-future `validBefore` hands whoever sees the header a transfer
/// they can replay elsewhere much later, and keeps a reservation alive past
/// anything the server planned for.)
fn check_valid_before(intake: &Intake, now: UnixTime, skew_secs: u64) -> Result<(), X402Error> {
    let max_timeout = match &intake.request {
        PaymentRequest::V1(r) => r.payment_requirements.max_timeout_seconds,
        PaymentRequest::V2(r) => r.payment_requirements.max_timeout_seconds,
    };
    let latest = now.0.saturating_add(max_timeout).saturating_add(skew_secs);
    let valid_before = intake.request.exact_payload().authorization.valid_before;
    if valid_before > EvmTimestamp::from_u64(latest) {
        return Err(X402Error::ValidBeforeTooFar);
    }
    Ok(())
}

fn nonce_key(network: &str, v: &VerifiedExact) -> NonceKey {
    NonceKey::new(
        network,
        &v.asset.to_string(),
        &v.payer.to_string(),
        &v.authorization.nonce.to_string(),
    )
}

/// SHA-256 of (version, requirement, authorization) as compact JSON: two
/// payments with the same fingerprint are the same payment (the signature is
/// left out: both verified, so both authorize exactly this).
fn fingerprint<R: Serialize>(
    version: u8,
    requirement: &R,
    auth: &TransferAuthorization,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([version]);
    h.update(serde_json::to_vec(requirement).unwrap_or_default());
    h.update([0]);
    h.update(serde_json::to_vec(auth).unwrap_or_default());
    h.finalize().into()
}

/// The `payment-identifier` id of a v2 payment's extensions, if any.
fn payment_id(extensions: Option<&Map<String, Value>>) -> Result<Option<String>, X402Error> {
    let Some(id) = extensions
        .and_then(|e| e.get(PAYMENT_IDENTIFIER))
        .and_then(|e| e.get("info"))
        .and_then(|i| i.get("id"))
    else {
        return Ok(None);
    };
    match id {
        Value::Null => Ok(None),
        Value::String(s)
            if (16..=128).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(Some(s.clone()))
        }
        _ => Err(X402Error::InvalidPaymentId),
    }
}

/// Why `accepted` matches no offer: the first differing field (in the
/// reference check order) of the nearest offer.
fn diagnose(accepted: &PaymentRequirements, offers: &[PaymentRequirements]) -> Mismatch {
    offers
        .iter()
        .map(|o| mismatches(accepted, o))
        .min_by_key(Vec::len)
        .and_then(|m| m.first().copied())
        .unwrap_or(Mismatch::Other)
}

fn mismatches(a: &PaymentRequirements, o: &PaymentRequirements) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if a.scheme != o.scheme {
        out.push(Mismatch::Scheme);
    }
    if a.network != o.network {
        out.push(Mismatch::Network);
    }
    if a.pay_to != o.pay_to {
        out.push(Mismatch::PayTo);
    }
    if a.amount != o.amount {
        out.push(Mismatch::Amount);
    }
    if let Some(offered) = &o.extra {
        let echoed = a.extra.clone().unwrap_or_default();
        if offered.name.is_some() && offered.name != echoed.name {
            out.push(Mismatch::TokenName);
        }
        if offered.version.is_some() && offered.version != echoed.version {
            out.push(Mismatch::TokenVersion);
        }
        if offered
            .other
            .iter()
            .any(|(k, v)| echoed.other.get(k) != Some(v))
        {
            out.push(Mismatch::Other);
        }
    }
    if a.asset != o.asset || a.max_timeout_seconds != o.max_timeout_seconds {
        out.push(Mismatch::Other);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pay402_core::x402::{Extra, TokenAmount};

    fn offer() -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: "eip155:84532".into(),
            amount: TokenAmount::from_u64(10_000),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_seconds: 60,
            extra: Some(Extra::eip712("USDC", "2")),
        }
    }

    #[test]
    fn diagnoses_the_first_differing_field_of_the_nearest_offer() {
        let offers = [offer()];
        let mut a = offer();
        a.network = "eip155:1".into();
        assert_eq!(diagnose(&a, &offers), Mismatch::Network);
        let mut a = offer();
        a.pay_to = "0x0000000000000000000000000000000000000001".into();
        a.amount = TokenAmount::from_u64(1);
        assert_eq!(diagnose(&a, &offers), Mismatch::PayTo);
        let mut a = offer();
        a.extra = Some(Extra::eip712("USD Coin", "2"));
        assert_eq!(diagnose(&a, &offers), Mismatch::TokenName);
        let mut a = offer();
        a.max_timeout_seconds = 5;
        assert_eq!(diagnose(&a, &offers), Mismatch::Other);
    }

    #[test]
    fn payment_ids_are_checked() {
        let ext = |id: Value| {
            let mut m = Map::new();
            m.insert(
                PAYMENT_IDENTIFIER.into(),
                serde_json::json!({"info": {"id": id}}),
            );
            m
        };
        assert_eq!(payment_id(None), Ok(None));
        assert_eq!(
            payment_id(Some(&ext("pay_0123456789abcdef".into()))),
            Ok(Some("pay_0123456789abcdef".into()))
        );
        assert_eq!(
            payment_id(Some(&ext("short".into()))),
            Err(X402Error::InvalidPaymentId)
        );
        assert_eq!(
            payment_id(Some(&ext("pay 0123456789abcdef".into()))),
            Err(X402Error::InvalidPaymentId)
        );
        assert_eq!(
            payment_id(Some(&ext(7.into()))),
            Err(X402Error::InvalidPaymentId)
        );
    }
}
