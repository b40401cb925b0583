#![allow(missing_docs)] // criterion_group! generates undocumented public functions
//! x402 benchmarks: `PAYMENT-SIGNATURE` decoding, full local verification of
//! an `exact` EVM payment (no chain), and beside it the floor it must pay:
//! bare libsecp256k1 recovery of the same digest.
//!
//! Targets: decode ≤ 1.25 µs (met by the borrowed path on a quiet machine,
//! `payment_signature_decode_borrowed`); full verify ≤ 1.3 × bare recovery.
//!
//! Run: `cargo bench -p pay402-benches --bench x402`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pay402_core::time::UnixTime;
use pay402_core::x402::borrowed::PaymentPayloadV2Ref;
use pay402_core::x402::header::{MAX_HEADER_LEN, decode_with};
use pay402_core::x402::{ExactEvmPayload, HeaderValue, PaymentPayloadV2, PaymentRequest, exact};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};

/// The §5.2 `PAYMENT-SIGNATURE` vector (it carries the §5.1 signature).
const PAYMENT_SIGNATURE: &str = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";

/// A time inside the vector's validity window.
const NOW: UnixTime = UnixTime(1_740_672_100);

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("x402_decode");
    g.bench_function("payment_signature_decode", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let p: PaymentPayloadV2<ExactEvmPayload> =
                decode_with(black_box(PAYMENT_SIGNATURE), MAX_HEADER_LEN, &mut buf).unwrap();
            black_box(p)
        })
    });
    // The borrowed path: strings borrow from the reused buffer, numbers,
    // addresses, nonce and signature are parsed into fixed-size values.
    g.bench_function("payment_signature_decode_borrowed", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let p =
                PaymentPayloadV2Ref::decode_header(black_box(PAYMENT_SIGNATURE), &mut buf).unwrap();
            black_box(&p);
        })
    });
    // Floor: the base64 step alone.
    g.bench_function("floor_base64_only", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            pay402_core::b64::decode_any_into(
                black_box(PAYMENT_SIGNATURE),
                MAX_HEADER_LEN,
                &mut buf,
            )
            .unwrap();
            black_box(buf.len())
        })
    });
    // The facilitator side: a `/verify` or `/settle` body (the payment and
    // the requirement it answers) into the version-dispatched PaymentRequest.
    let payment = PaymentPayloadV2::<ExactEvmPayload>::decode_header(PAYMENT_SIGNATURE).unwrap();
    let requirement = payment.accepted.clone();
    let body = serde_json::to_string(&PaymentRequest::v2(payment, requirement)).unwrap();
    g.bench_function("facilitator_request_decode", |b| {
        b.iter(|| black_box(PaymentRequest::from_json_slice(black_box(body.as_bytes())).unwrap()))
    });
    // The format-agnostic `Deserialize` impl (through a `serde_json::Value`).
    g.bench_function("facilitator_request_decode_via_value", |b| {
        b.iter(|| {
            let r: PaymentRequest = serde_json::from_str(black_box(&body)).unwrap();
            black_box(r)
        })
    });
    g.bench_function("payment_signature_decode_fresh_buf", |b| {
        b.iter(|| {
            black_box(
                PaymentPayloadV2::<ExactEvmPayload>::decode_header(black_box(PAYMENT_SIGNATURE))
                    .unwrap(),
            )
        })
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let payment = PaymentPayloadV2::<ExactEvmPayload>::decode_header(PAYMENT_SIGNATURE).unwrap();
    let requirements = payment.accepted.clone();
    let verified = exact::verify_v2(&payment, &requirements, NOW).unwrap();
    let sig = payment.payload.signature.as_bytes();
    let rsig = RecoverableSignature::from_compact(
        &sig[..64],
        RecoveryId::from_i32(i32::from(sig[64] - 27)).unwrap(),
    )
    .unwrap();
    let msg = secp256k1::Message::from_digest(verified.digest.0);

    let mut g = c.benchmark_group("x402_verify");
    // The floor: libsecp256k1 public-key recovery of the same digest.
    g.bench_function("bare_secp256k1_recover", |b| {
        b.iter(|| {
            black_box(
                secp256k1::SECP256K1
                    .recover_ecdsa(black_box(&msg), black_box(&rsig))
                    .unwrap(),
            )
        })
    });
    // Every local check: EIP-712 domain + struct hashing, recovery, address
    // derivation, recipient, time window, amount.
    g.bench_function("verify_v2_full", |b| {
        b.iter(|| {
            black_box(exact::verify_v2(black_box(&payment), black_box(&requirements), NOW).unwrap())
        })
    });
    // Decode + verify: what a server pays per paid request before the facilitator.
    g.bench_function("decode_and_verify_v2", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let p: PaymentPayloadV2<ExactEvmPayload> =
                decode_with(black_box(PAYMENT_SIGNATURE), MAX_HEADER_LEN, &mut buf).unwrap();
            black_box(exact::verify_v2(&p, &requirements, NOW).unwrap())
        })
    });
    // The same on the borrowed path.
    g.bench_function("decode_and_verify_v2_ref", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let p =
                PaymentPayloadV2Ref::decode_header(black_box(PAYMENT_SIGNATURE), &mut buf).unwrap();
            black_box(exact::verify_v2_ref(&p, &requirements, NOW).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, decode, verify);
criterion_main!(benches);
