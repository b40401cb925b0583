//! Differential: the `PAYMENT-SIGNATURE` zero-copy path (a hand-written
//! scanner with a serde fallback) against the serde deserializer of the same
//! borrowed type and against the owned derive. The input is the decoded JSON;
//! its base64 header form is checked the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::b64;
use pay402_core::time::UnixTime;
use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
use pay402_core::x402::{ExactEvmPayload, HeaderValue, PaymentPayloadV2, exact};

fuzz_target!(|data: &[u8]| {
    // The header path: base64, then the same decoders.
    let header = b64::encode_std(data);
    let mut buf = Vec::new();
    let by_ref =
        PaymentPayloadV2Ref::decode_header(&header, &mut buf).map(|p| p.to_owned_payload());
    let owned_header = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&header);
    if let Ok(p) = &by_ref {
        assert_eq!(
            owned_header.as_ref(),
            Ok(p),
            "header: borrowed accepted, owned disagrees"
        );
    }

    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let fast = PaymentPayloadV2Ref::from_json(json);
    let slow: Result<PaymentPayloadV2Ref<'_>, _> = serde_json::from_str(json);
    // The scanner decides exactly as serde would, with the same value.
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "scanner and serde decoded different values"),
        (Err(_), Err(_)) => {}
        _ => panic!("scanner {fast:?} vs serde {slow:?}"),
    }
    let Ok(p) = fast else {
        return;
    };
    // Everything the borrowed path accepts, the owned derive accepts alike.
    let owned: PaymentPayloadV2<ExactEvmPayload> =
        serde_json::from_str(json).expect("owned derive refused what the borrowed path accepted");
    assert_eq!(p.to_owned_payload(), owned);
    assert_eq!(by_ref.as_ref().ok(), Some(&owned));
    // Verification sees the same payment through both.
    let req = p.accepted.to_owned_requirements();
    let now = UnixTime(1_740_672_100);
    assert_eq!(
        exact::verify_v2_ref(&p, &req, now),
        exact::verify_v2(&owned, &req, now)
    );
    let offers = [req];
    assert_eq!(
        p.select_requirement(&offers).is_some(),
        pay402_core::x402::select_requirement_v2(&offers, &owned.accepted).is_some()
    );
});
