//! The base64-of-JSON x402 headers: `PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE`,
//! `PAYMENT-RESPONSE`, `X-PAYMENT`, `X-PAYMENT-RESPONSE`. Whatever decodes
//! re-encodes to a header that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::x402::{
    ExactEvmPayload, HeaderValue, PaymentPayloadV1, PaymentPayloadV2, PaymentRequired,
    SettleResponse, select_requirement_v2,
};

fn roundtrip<T: HeaderValue + PartialEq + std::fmt::Debug>(s: &str) -> Option<T> {
    let v = T::decode_header(s).ok()?;
    let again = T::decode_header(&v.encode_header()).expect("re-decode of an encoded header");
    assert_eq!(again, v);
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let required = roundtrip::<PaymentRequired>(s);
    let _ = roundtrip::<SettleResponse>(s);
    let _ = roundtrip::<PaymentPayloadV1<ExactEvmPayload>>(s);
    let _ = roundtrip::<PaymentPayloadV2<serde_json::Value>>(s);
    if let Some(p) = roundtrip::<PaymentPayloadV2<ExactEvmPayload>>(s) {
        let _ = select_requirement_v2(std::slice::from_ref(&p.accepted), &p.accepted);
    }
    if let Some(r) = required {
        for offer in &r.accepts {
            let _ = select_requirement_v2(&r.accepts, offer);
        }
    }
});
