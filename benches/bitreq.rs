#![allow(missing_docs)] // criterion_group! generates undocumented public functions
//! 21 BitRequests benchmarks: header parsing, on-chain transaction
//! verification, and bit-transfer verification beside the bare libsecp256k1
//! ECDSA verify it must pay (target: ≤ 1.2× the bare verify).
//!
//! Run: `cargo bench -p pay402-benches --bench bitreq`.

use std::hint::black_box;

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::{CompressedPublicKey, OutPoint, ScriptBuf};
use criterion::{Criterion, criterion_group, criterion_main};
use pay402_core::bitreq::onchain::{build_payment, verify_payment};
use pay402_core::bitreq::{
    BitTransfer, ChannelParams, ExpiryEncoding, OnChainPolicy, PaymentInfo, Proof, RedeemScript,
    SpendKind, SpendableUtxo, transfer,
};
use pay402_core::money::Sat;
use sha2::{Digest, Sha256};

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).expect("valid key")
}

fn headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("bitreq_headers");
    let info = [
        ("price", "3500"),
        ("bitcoin-address", "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM"),
        ("username", "HelloNakaMoto"),
        (
            "bitcoin-payment-channel-server",
            "https://example.com/payment",
        ),
        ("content-type", "text/plain"),
    ];
    g.bench_function("payment_info_parse", |b| {
        b.iter(|| black_box(PaymentInfo::from_pairs(black_box(info)).expect("parses")))
    });
    g.bench_function("payment_info_emit", |b| {
        let i = PaymentInfo::from_pairs(info).expect("parses");
        b.iter(|| black_box(i.header_pairs()))
    });
    let token = [(
        "bitcoin-payment-channel-token",
        "ebe4d541199430f0ae07f5250455e0fe612051848ec70f21ca81bb9ca5e9e096",
    )];
    g.bench_function("proof_parse_channel_token", |b| {
        b.iter(|| black_box(Proof::from_pairs(black_box(token)).expect("parses")))
    });
    g.finish();
}

fn onchain(c: &mut Criterion) {
    let payer = key(0x11);
    let merchant = ScriptBuf::new_p2wpkh(
        &CompressedPublicKey(key(0x22).public_key(&Secp256k1::new())).wpubkey_hash(),
    );
    let u = SpendableUtxo {
        outpoint: OutPoint::null(),
        amount: Sat(20_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let tx =
        build_payment(&[u], &merchant, Sat(5_000), &u.script_pubkey(), Sat(1_000)).expect("builds");
    let hex = serialize_hex(&tx);
    let policy = OnChainPolicy::default();
    let mut g = c.benchmark_group("bitreq_onchain");
    g.bench_function("verify_payment_p2wpkh_1in_2out", |b| {
        b.iter(|| {
            black_box(
                verify_payment(
                    black_box(&hex),
                    &merchant,
                    Sat(5_000),
                    Some(&[Sat(20_000)]),
                    &policy,
                )
                .expect("verifies"),
            )
        })
    });
    g.bench_function("proof_parse_plus_verify", |b| {
        let pairs = [("bitcoin-transaction", hex.as_str())];
        b.iter(|| {
            let Ok(Proof::OnChain { tx_hex, .. }) = Proof::from_pairs(black_box(pairs)) else {
                unreachable!()
            };
            black_box(
                verify_payment(
                    &tx_hex,
                    &merchant,
                    Sat(5_000),
                    Some(&[Sat(20_000)]),
                    &policy,
                )
                .expect("verifies"),
            )
        })
    });
    // Channel: server-side check of a half-signed payment (template rebuild + ECDSA).
    let ck = key(0x44);
    let secp = Secp256k1::new();
    let redeem = RedeemScript::new(
        key(0x55).public_key(&secp),
        ck.public_key(&secp),
        1_600_000_000,
        ExpiryEncoding::Two1Raw,
    )
    .expect("valid");
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::null(),
        deposit_value: Sat(111_000),
        fee: Sat(10_000),
        min_output: Sat(3_000),
    };
    let half = params.half_signed_payment(Sat(5_000), &ck).expect("signs");
    g.bench_function("channel_verify_half_signed", |b| {
        b.iter(|| {
            black_box(
                params
                    .verify_half_signed(black_box(&half), Sat(0))
                    .expect("ok"),
            )
        })
    });
    g.finish();
}

fn bit_transfer(c: &mut Criterion) {
    let k = key(0x33);
    let secp = Secp256k1::new();
    let pk = k.public_key(&secp);
    let signed = BitTransfer {
        payer: "Bitcoiner11".into(),
        payer_pubkey: pk,
        payee_address: "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM".into(),
        payee_username: "HelloNakaMoto".into(),
        amount: Sat(1000),
        timestamp: 1_453_338_704.678_601,
        description: "https://example.com/resource".into(),
    }
    .sign(&k)
    .expect("signs");
    let pairs = [
        ("bitcoin-transfer", signed.transfer.as_str()),
        ("authorization", signed.authorization.as_str()),
    ];
    let digest: [u8; 32] = Sha256::digest(signed.transfer.as_bytes()).into();
    let msg = Message::from_digest(digest);
    let sig = transfer::parse_compact(&signed.authorization).expect("parses");
    let verifier = Secp256k1::verification_only();

    let mut g = c.benchmark_group("bitreq_transfer");
    g.bench_function("bare_secp256k1_verify", |b| {
        b.iter(|| {
            black_box(verifier.verify_ecdsa(black_box(&msg), black_box(&sig), black_box(&pk)))
        })
    });
    // The floor plus what any verifier of this format must also pay: SHA-256
    // of the header and decompressing the 33-byte payer key.
    let pk33 = pk.serialize();
    g.bench_function("bare_sha256_pubkey_parse_verify", |b| {
        b.iter(|| {
            let d: [u8; 32] = Sha256::digest(black_box(signed.transfer.as_bytes())).into();
            let pk = bitcoin::secp256k1::PublicKey::from_slice(black_box(&pk33)).expect("valid");
            black_box(verifier.verify_ecdsa(&Message::from_digest(d), black_box(&sig), &pk))
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            black_box(
                transfer::verify(
                    black_box(&signed.transfer),
                    black_box(&signed.authorization),
                )
                .expect("verifies"),
            )
        })
    });
    g.bench_function("headers_parse_plus_verify", |b| {
        b.iter(|| {
            let Ok(Proof::Transfer {
                transfer,
                authorization,
            }) = Proof::from_pairs(black_box(pairs))
            else {
                unreachable!()
            };
            black_box(transfer::verify(&transfer, &authorization).expect("verifies"))
        })
    });
    g.finish();
}

/// The pure channel server path of one `PUT` + redemption: form body decode,
/// the §4.5 checks inside `receive_payment`, and the single-use redeem.
fn channel_state(c: &mut Criterion) {
    use pay402_core::bitreq::rest::{PaymentRequest, decode_request, encode_form};
    use pay402_core::bitreq::state::ServerChannel;
    use pay402_core::time::UnixTime;

    let mut g = c.benchmark_group("bitreq_channel_state");
    let ck = key(0x44);
    let secp = Secp256k1::new();
    let redeem = RedeemScript::new(
        key(0x55).public_key(&secp),
        ck.public_key(&secp),
        1_600_000_000,
        ExpiryEncoding::Two1Raw,
    )
    .expect("valid");
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::null(),
        deposit_value: Sat(111_000),
        fee: Sat(10_000),
        min_output: Sat(3_000),
    };
    let half = params.half_signed_payment(Sat(5_000), &ck).expect("signs");
    let body = encode_form(&PaymentRequest {
        payment_tx: serialize_hex(&half),
    });
    let mut ready = ServerChannel::new(params, true);
    ready.on_deposit(0).expect("ready");
    g.bench_function("put_then_redeem", |b| {
        b.iter(|| {
            let mut ch = ready.clone();
            let req: PaymentRequest = decode_request(black_box(body.as_bytes())).expect("body");
            let tx = req.decode().expect("tx");
            let paid = ch
                .receive_payment(&tx, UnixTime(1_500_000_000))
                .expect("accepted");
            black_box(ch.redeem(&paid.token, Sat(5_000)).expect("redeemed"))
        })
    });
    g.finish();
}

criterion_group!(benches, headers, onchain, bit_transfer, channel_state);
criterion_main!(benches);
