#![allow(missing_docs)] // criterion_group! generates undocumented public functions
//! The payer's side of MPP: what a `Payer` does with a 402 carrying MPP
//! `Payment` challenges beside the other rails, before and after paying.
//!
//! - `read_multi_rail_402`: `read_offers` on one 402 with an L402 challenge,
//!   two `Payment` challenges (`lightning`/`charge` with a real signed
//!   BOLT11 invoice, `evm`/`charge`) and an x402 v2 `PAYMENT-REQUIRED`; the
//!   L402 and MPP challenges share one invoice (decoded once);
//! - `read_multi_rail_402_two_invoices`: the same with one invoice per
//!   scheme (Aperture's shape): two invoice decodes;
//! - `check_lightning_charge`: the checks before paying a Lightning charge
//!   (decode and verify the invoice, budget on its amount, compare it with
//!   the declared `amount`, network, expiry);
//! - `credential_lightning`: the `Authorization: Payment` value once the
//!   preimage is known (the whole challenge echoed, base64url JSON);
//! - `credential_evm`: check an EVM charge, build the EIP-3009 message with
//!   the challenge hash as nonce, sign it (secp256k1) and encode the
//!   credential.
//!
//! Run: `cargo bench -p pay402-benches --bench mpp_payer`.

use std::hint::black_box;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use pay402_core::lightning::{Network, Preimage};
use pay402_core::money::Msat;
use pay402_core::mpp::methods::{evm, lightning};
use pay402_core::mpp::{ChallengeKey, ChallengeKeys, ChallengeList};
use pay402_core::offer::read_offers;
use pay402_core::time::UnixTime;
use pay402_core::x402::evm::{EvmAddress, EvmSignature};
use pay402_core::x402::{
    Extra, HeaderValue as _, PaymentRequired, PaymentRequirements, ResourceInfo, TokenAmount,
};
use secp256k1::{Message, Secp256k1, SecretKey};

const CREATED: u64 = 1_767_225_600;

fn invoice(preimage: &Preimage) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x11; 32]).unwrap();
    InvoiceBuilder::new(Currency::Regtest)
        .description("a report".into())
        .payment_hash(sha256::Hash::from_byte_array(preimage.payment_hash().0))
        .payment_secret(PaymentSecret([2; 32]))
        .duration_since_epoch(Duration::from_secs(CREATED))
        .min_final_cltv_expiry_delta(18)
        .expiry_time(Duration::from_secs(3600))
        .amount_milli_satoshis(100_000)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .unwrap()
        .to_string()
}

fn terms() -> evm::EvmTerms {
    let mut t = evm::EvmTerms::new(
        84532,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
            .parse()
            .unwrap(),
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
            .parse()
            .unwrap(),
        "USDC",
        "2",
    );
    t.decimals = Some(6);
    t
}

fn headers(bolt11: &str, l402_bolt11: &str, keys: &ChallengeKeys, now: UnixTime) -> HeaderMap {
    let ln = lightning::issue_charge(
        keys,
        &lightning::ChargeOffer::new("api.example.com", bolt11),
        now,
    )
    .unwrap();
    let ev = evm::issue_charge(
        keys,
        "api.example.com",
        &terms(),
        TokenAmount::from_u64(10_000),
        now,
        300,
        Some(&[1; 16]),
    )
    .unwrap();
    let l402 = pay402_core::l402::Challenge::new("AgEDbG5kAAAA", l402_bolt11)
        .to_header_value(pay402_core::l402::Scheme::L402);
    let offer = PaymentRequirements {
        scheme: "exact".into(),
        network: "eip155:84532".into(),
        amount: TokenAmount::from_u64(10_000),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712("USDC", "2")),
    };
    let required = PaymentRequired::new(
        ResourceInfo::new("https://api.example.com/report"),
        vec![offer],
    );
    let mut h = HeaderMap::new();
    for v in [
        l402,
        ln.to_header_value().unwrap(),
        ev.to_header_value().unwrap(),
    ] {
        h.append("www-authenticate", HeaderValue::from_str(&v).unwrap());
    }
    h.insert(
        "payment-required",
        HeaderValue::from_str(&required.encode_header()).unwrap(),
    );
    h
}

fn bench(c: &mut Criterion) {
    let preimage = Preimage::from_bytes([0x11; 32]);
    let bolt11 = invoice(&preimage);
    let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
    let now = UnixTime(CREATED + 60);
    let h = headers(&bolt11, &bolt11, &keys, now);
    let other = invoice(&Preimage::from_bytes([0x33; 32]));
    let h2 = headers(&bolt11, &other, &keys, now);
    assert_eq!(read_offers(&h2, b"").offers.len(), 4);
    assert_eq!(read_offers(&h, b"").offers.len(), 4);
    let lines: Vec<&[u8]> = h
        .get_all("www-authenticate")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let list = ChallengeList::parse(lines.iter().copied());
    let ln = list.challenges()[0].clone().into_owned();
    let ev = list.challenges()[1].clone().into_owned();
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x22; 32]).unwrap();
    let from = EvmAddress::default();
    let usdc: EvmAddress = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
        .parse()
        .unwrap();

    let mut g = c.benchmark_group("mpp_payer");
    g.bench_function("read_multi_rail_402", |b| {
        b.iter(|| black_box(read_offers(black_box(&h), b"")))
    });
    g.bench_function("read_multi_rail_402_two_invoices", |b| {
        b.iter(|| black_box(read_offers(black_box(&h2), b"")))
    });
    g.bench_function("check_lightning_charge", |b| {
        b.iter(|| {
            black_box(
                lightning::check_charge(black_box(&ln), Network::Regtest, now, Msat(1_000_000))
                    .unwrap(),
            )
        })
    });
    g.bench_function("credential_lightning", |b| {
        b.iter(|| black_box(lightning::credential(black_box(&ln), &preimage, None)))
    });
    g.bench_function("credential_evm", |b| {
        b.iter(|| {
            let charge = evm::check_charge(
                black_box(&ev),
                84532,
                &usdc,
                now,
                TokenAmount::from_u64(1_000_000),
            )
            .unwrap();
            let auth = evm::authorization_for(&ev, &charge, from, now);
            let digest = auth.signing_hash(&terms().domain());
            let msg = Message::from_digest(digest.0);
            let (id, sig) = secp.sign_ecdsa_recoverable(&msg, &key).serialize_compact();
            let mut bytes = sig.to_vec();
            bytes.push(27 + u8::try_from(id.to_i32()).unwrap());
            black_box(evm::credential(
                &ev,
                &auth,
                EvmSignature::from_bytes(bytes),
                84532,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
