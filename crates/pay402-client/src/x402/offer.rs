//! Reading a 402: the v2 `PAYMENT-REQUIRED` header or the v1 JSON body,
//! bounded, into a list of [`Offer`]s.

use pay402_core::offer::{OfferError, X402Required};
use pay402_core::x402::network::{evm_chain_id, slug_to_caip2};
use pay402_core::x402::{
    Extra, PaymentRequirements, PaymentRequirementsV1, TokenAmount, X402_V1, X402_V2,
};
use serde_json::Value;

use super::error::X402Error;

/// Most requirements read from one 402; more is treated as malformed.
///
/// ```
/// assert_eq!(pay402_client::x402::MAX_OFFERS, 64);
/// ```
pub const MAX_OFFERS: usize = pay402_core::offer::MAX_OFFERS;

/// Longest 402 (or rejection) body read, in bytes (64 KiB).
///
/// ```
/// assert_eq!(pay402_client::x402::MAX_BODY_BYTES, 64 * 1024);
/// ```
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One way to pay offered by a 402, v1 and v2 alike, as the selection
/// policy sees it.
///
/// ```
/// use pay402_client::x402::Offer;
/// fn describe(o: &Offer) -> String {
///     format!("#{} {} {} of {} on {}", o.index, o.scheme, o.amount, o.asset, o.network)
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Offer {
    /// Position in the server's `accepts` list.
    pub index: usize,
    /// 1 or 2.
    pub x402_version: u32,
    /// The scheme (`exact`).
    pub scheme: String,
    /// The network as the server wrote it (a slug in v1, CAIP-2 in v2).
    pub network: String,
    /// The network as a CAIP-2 id (v1 slugs mapped), when known.
    pub caip2: Option<String>,
    /// The EVM chain id, when the network is an EVM chain.
    pub chain_id: Option<u64>,
    /// The asset (token contract on EVM).
    pub asset: String,
    /// The price in base units (v2 `amount`, v1 `maxAmountRequired`).
    pub amount: TokenAmount,
    /// The recipient.
    pub pay_to: String,
    /// How long the server waits for settlement; the authorization is
    /// valid for this long.
    pub max_timeout_seconds: u64,
    /// Scheme data (the token's EIP-712 `name` and `version`).
    pub extra: Option<Extra>,
}

impl Offer {
    fn from_v2(index: usize, r: &PaymentRequirements) -> Offer {
        Offer {
            index,
            x402_version: X402_V2,
            scheme: r.scheme.clone(),
            network: r.network.clone(),
            caip2: Some(r.network.clone()),
            chain_id: evm_chain_id(&r.network),
            asset: r.asset.clone(),
            amount: r.amount,
            pay_to: r.pay_to.clone(),
            max_timeout_seconds: r.max_timeout_seconds,
            extra: r.extra.clone(),
        }
    }

    fn from_v1(index: usize, r: &PaymentRequirementsV1) -> Offer {
        Offer {
            index,
            x402_version: X402_V1,
            scheme: r.scheme.clone(),
            network: r.network.clone(),
            caip2: slug_to_caip2(&r.network).map(str::to_owned),
            chain_id: evm_chain_id(&r.network),
            asset: r.asset.clone(),
            amount: r.max_amount_required,
            pay_to: r.pay_to.clone(),
            max_timeout_seconds: r.max_timeout_seconds,
            extra: r.extra.clone(),
        }
    }
}

/// A decoded 402 offer, with the raw JSON kept for echoing (core's
/// reader, shared with [`pay402_core::offer::read_offers`]).
pub(crate) type Challenge = X402Required;

/// The offers of `challenge`, as the selection policy sees them.
pub(crate) fn offers_of(challenge: &Challenge) -> Vec<Offer> {
    match challenge {
        Challenge::V2 { required, .. } => required
            .accepts
            .iter()
            .enumerate()
            .map(|(i, r)| Offer::from_v2(i, r))
            .collect(),
        Challenge::V1 { required } => required
            .accepts
            .iter()
            .enumerate()
            .map(|(i, r)| Offer::from_v1(i, r))
            .collect(),
    }
}

fn invalid(e: OfferError) -> X402Error {
    match e {
        OfferError::X402(what) => X402Error::InvalidPaymentRequired(what),
        other => X402Error::InvalidPaymentRequired(other.to_string()),
    }
}

/// Decodes a v2 `PAYMENT-REQUIRED` header value (bounded by
/// [`MAX_HEADER_LEN`](pay402_core::x402::header::MAX_HEADER_LEN)).
pub(crate) fn parse_v2_header(value: &[u8]) -> Result<Challenge, X402Error> {
    X402Required::from_header(value).map_err(invalid)
}

/// Decodes a 402 JSON body: a v1 offer (`x402Version: 1`), or a v2 one some
/// servers also put in the body. `Ok(None)` when the body is no x402 offer.
pub(crate) fn parse_body(body: &[u8]) -> Result<Option<Challenge>, X402Error> {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    X402Required::from_body(&json).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pay402_core::problem::Reason;

    const SPEC_REQUIRED: &str = "eyJ4NDAyVmVyc2lvbiI6MiwiZXJyb3IiOiJQQVlNRU5ULVNJR05BVFVSRSBoZWFkZXIgaXMgcmVxdWlyZWQiLCJyZXNvdXJjZSI6eyJ1cmwiOiJodHRwczovL2FwaS5leGFtcGxlLmNvbS9wcmVtaXVtLWRhdGEiLCJkZXNjcmlwdGlvbiI6IkFjY2VzcyB0byBwcmVtaXVtIG1hcmtldCBkYXRhIiwibWltZVR5cGUiOiJhcHBsaWNhdGlvbi9qc29uIn0sImFjY2VwdHMiOlt7InNjaGVtZSI6ImV4YWN0IiwibmV0d29yayI6ImVpcDE1NTo4NDUzMiIsImFtb3VudCI6IjEwMDAwIiwiYXNzZXQiOiIweDAzNkNiRDUzODQyYzU0MjY2MzRlNzkyOTU0MWVDMjMxOGYzZENGN2UiLCJwYXlUbyI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsIm1heFRpbWVvdXRTZWNvbmRzIjo2MCwiZXh0cmEiOnsibmFtZSI6IlVTREMiLCJ2ZXJzaW9uIjoiMiJ9fV19";

    #[test]
    fn spec_header_decodes_into_one_offer() {
        let c = parse_v2_header(SPEC_REQUIRED.as_bytes()).unwrap();
        let offers = offers_of(&c);
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].chain_id, Some(84532));
        assert_eq!(offers[0].amount, TokenAmount::from_u64(10_000));
        assert_eq!(c.error(), Some("PAYMENT-SIGNATURE header is required"));
    }

    #[test]
    fn hostile_headers_are_typed_errors() {
        for bad in [
            &b"!!!"[..],
            b"",
            b"eyJ4NDAyVmVyc2lvbiI6MX0=", // {"x402Version":1}
            b"eyJ4NDAyVmVyc2lvbiI6Mn0=", // {"x402Version":2}: no accepts
            b"WzEsMiwzXQ==",             // [1,2,3]
            &[0xff, 0xfe, 0x00],
        ] {
            let e = parse_v2_header(bad).unwrap_err();
            assert_eq!(e.reason(), "invalid_payment_required", "{bad:?}");
        }
        let huge = "A".repeat(pay402_core::x402::header::MAX_HEADER_LEN + 4);
        assert_eq!(
            parse_v2_header(huge.as_bytes()).unwrap_err().reason(),
            "invalid_payment_required"
        );
    }

    #[test]
    fn bodies_v1_v2_and_unrelated() {
        let v1 = br#"{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","resource":"https://a/b","description":"","mimeType":"","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","extra":{"name":"USDC","version":"2"}}]}"#;
        let c = parse_body(v1).unwrap().unwrap();
        let offers = offers_of(&c);
        assert_eq!(offers[0].caip2.as_deref(), Some("eip155:84532"));
        assert_eq!(offers[0].x402_version, 1);
        assert!(parse_body(b"{}").unwrap().is_none());
        assert!(parse_body(b"not json").unwrap().is_none());
        assert!(parse_body(br#"{"x402Version":1,"accepts":[{"scheme":1}]}"#).is_err());
        assert!(parse_body(br#"{"x402Version":7,"accepts":[]}"#).is_err());
    }
}
