//! The facilitator's `/verify` and `/settle` request bodies (v1 and v2),
//! then local verification of the payment against its own requirements.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::time::UnixTime;
use pay402_core::x402::exact;
use pay402_core::x402::facilitator::PaymentRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = PaymentRequest::from_json_slice(data) else {
        return;
    };
    let _ = (
        req.x402_version(),
        req.network(),
        req.scheme(),
        req.exact_payload(),
    );
    let now = UnixTime(1_740_672_100);
    match &req {
        PaymentRequest::V1(r) => {
            let _ = exact::verify_v1(&r.payment_payload, &r.payment_requirements, now);
        }
        PaymentRequest::V2(r) => {
            let _ = exact::verify_v2(&r.payment_payload, &r.payment_requirements, now);
        }
    }
    // What the typed decode accepts re-encodes to an equal request.
    let json = match &req {
        PaymentRequest::V1(r) => serde_json::to_vec(r),
        PaymentRequest::V2(r) => serde_json::to_vec(r),
    }
    .expect("serialize a decoded request");
    assert_eq!(
        PaymentRequest::from_json_slice(&json).as_ref().ok(),
        Some(&req)
    );
});
