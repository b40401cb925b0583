#![allow(missing_docs)] // criterion_group! generates undocumented public functions
//! The offer reader (`pay402_core::offer::read_offers`): every offer of one
//! 402, as a `Payer` reads it before choosing.
//!
//! - `paywall_402`: a 402 carrying every rail at once (L402 and LSAT
//!   challenges with a real signed BOLT11 invoice, x402 v2
//!   `PAYMENT-REQUIRED`, the BitRequests headers, an x402 v1 body);
//! - `l402_only`: one `WWW-Authenticate: L402` line;
//! - floors: what the reader cannot avoid, measured alone: decoding the
//!   BOLT11 invoice (signature recovery included) and decoding the
//!   `PAYMENT-REQUIRED` header.
//!
//! Target: `paywall_402` ≤ 1.5 × (invoice + header + body floors): the
//! LSAT twin of an L402 challenge repeats its invoice, which is decoded once.
//!
//! Run: `cargo bench -p pay402-benches --bench offers`.

use std::hint::black_box;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use pay402_core::l402::invoice::read_invoice;
use pay402_core::l402::{Challenge, Scheme};
use pay402_core::offer::{X402Required, read_offers};
use pay402_core::x402::{
    Extra, HeaderValue as _, PaymentRequired, PaymentRequirements, ResourceInfo, TokenAmount,
};
use secp256k1::{Secp256k1, SecretKey};

const V1_BODY: &str = r#"{"type":"https://pay402.dev/problems/payment_required","title":"Payment required","status":402,"reason":"payment_required","x402Version":1,"error":"X-PAYMENT header is required","accepts":[{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","resource":"https://api.example.com/report","description":"a report","mimeType":"application/json","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","extra":{"name":"USDC","version":"2"}}]}"#;

fn invoice() -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x11; 32]).unwrap();
    InvoiceBuilder::new(Currency::Regtest)
        .description("a report".into())
        .payment_hash(sha256::Hash::from_byte_array([0x17; 32]))
        .payment_secret(PaymentSecret([2; 32]))
        .duration_since_epoch(Duration::from_secs(1_700_000_000))
        .min_final_cltv_expiry_delta(18)
        .expiry_time(Duration::from_secs(3600))
        .amount_milli_satoshis(10_000_000)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .unwrap()
        .to_string()
}

fn payment_required() -> String {
    let offer = PaymentRequirements {
        scheme: "exact".into(),
        network: "eip155:84532".into(),
        amount: TokenAmount::from_u64(10_000),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712("USDC", "2")),
    };
    PaymentRequired::new(
        ResourceInfo::new("https://api.example.com/report"),
        vec![offer],
    )
    .encode_header()
}

fn offers(c: &mut Criterion) {
    let fixture = pay402_benches::fixture();
    let invoice = invoice();
    let challenge = Challenge::new(fixture.macaroon_b64.as_str(), invoice.as_str());
    let required = payment_required();
    let mut all = HeaderMap::new();
    for scheme in [Scheme::L402, Scheme::Lsat] {
        all.append(
            "www-authenticate",
            HeaderValue::from_str(&challenge.to_header_value(scheme)).unwrap(),
        );
    }
    all.insert(
        "payment-required",
        HeaderValue::from_str(&required).unwrap(),
    );
    all.insert("price", HeaderValue::from_static("10000"));
    all.insert(
        "bitcoin-address",
        HeaderValue::from_static("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"),
    );
    all.insert("username", HeaderValue::from_static("merchant"));
    all.insert(
        "content-type",
        HeaderValue::from_static("application/problem+json"),
    );
    let mut l402 = HeaderMap::new();
    l402.insert(
        "www-authenticate",
        HeaderValue::from_str(&challenge.to_header_value(Scheme::L402)).unwrap(),
    );
    assert_eq!(read_offers(&all, V1_BODY.as_bytes()).offers.len(), 6);
    assert_eq!(read_offers(&l402, b"").offers.len(), 1);

    let mut g = c.benchmark_group("offers");
    g.bench_function("paywall_402", |b| {
        b.iter(|| black_box(read_offers(black_box(&all), black_box(V1_BODY.as_bytes()))))
    });
    g.bench_function("l402_only", |b| {
        b.iter(|| black_box(read_offers(black_box(&l402), b"")))
    });
    g.bench_function("floor_bolt11_decode", |b| {
        b.iter(|| black_box(read_invoice(black_box(&invoice)).unwrap()))
    });
    g.bench_function("floor_payment_required_decode", |b| {
        b.iter(|| black_box(X402Required::from_header(black_box(required.as_bytes())).unwrap()))
    });
    g.bench_function("floor_v1_body_decode", |b| {
        b.iter(|| {
            let v: serde_json::Value =
                serde_json::from_slice(black_box(V1_BODY.as_bytes())).unwrap();
            black_box(X402Required::from_body(&v).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, offers);
criterion_main!(benches);
