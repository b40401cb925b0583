#![allow(missing_docs)] // criterion_group! generates undocumented public functions
//! MPP benchmarks: challenge parsing, the HMAC id, credential decoding and a
//! full Lightning charge verification, each beside the cryptographic floor it
//! must pay. The fixture is the protocol reference's derived vector (§12.5):
//! a real regtest invoice, the challenge and credential mppx produces.
//!
//! Run: `cargo bench -p pay402-benches --bench mpp`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use pay402_core::lightning::Network;
use pay402_core::mpp::methods::lightning::{ChargeOffer, ChargeVerifier, issue_charge};
use pay402_core::mpp::{
    ChallengeKey, ChallengeKeys, ChallengeList, Credential, Receipt, binding, credential, jcs,
};
use pay402_core::time::UnixTime;
use sha2::{Digest, Sha256};

const SECRET: &[u8] = b"pay402-mpp-derived-vector-secret-0001";
const INVOICE: &str = "lnbcrt1u1p54twgqdpywpshjdpsxgsx6ursyp6x2um5ypmx2cm5daeqpp5qt2yngclhvn8ere496vk3fu78e0ujhqmh649qt7kg48tmedyhmwqsp5yg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3q9qrsgqxqrrsscqzys7dz5y6tks849lptg8k2c4yahuj5kr37mthak4fls76k8748h7ujrmqrqd4zhrdgx63qhymjansz6vxq4juhvtpraperrpjh5d7su99sqg8e6k7";
const T0: u64 = 1_767_225_600;

struct Fixture {
    keys: ChallengeKeys,
    /// The 402's `WWW-Authenticate` lines, as Aperture sends them: L402 then Payment.
    lines: Vec<String>,
    authorization: String,
    now: UnixTime,
}

fn fixture() -> Fixture {
    let keys = ChallengeKeys::new(ChallengeKey::new(SECRET).unwrap());
    let mut offer = ChargeOffer::new("api.example.com", INVOICE);
    offer.memo = Some("pay402 mpp test vector");
    offer.ttl_secs = 900;
    let c = issue_charge(&keys, &offer, UnixTime(T0)).unwrap();
    let payment = c.to_header_value().unwrap();
    let l402 = format!(
        "L402 macaroon=\"{}\", invoice=\"{INVOICE}\"",
        "A".repeat(260)
    );
    let pre = pay402_core::lightning::Preimage::from_bytes([0x11; 32]);
    let authorization = pay402_core::mpp::methods::lightning::credential(&c, &pre, None);
    Fixture {
        keys,
        lines: vec![l402, payment],
        authorization,
        now: UnixTime(T0 + 300),
    }
}

fn parsing(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("mpp_parse");
    g.bench_function("challenge_parse", |b| {
        b.iter(|| {
            let list = ChallengeList::parse(f.lines.iter().map(|s| s.as_bytes()));
            black_box(list.challenges()[0].request.len())
        })
    });
    g.bench_function("credential_decode", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let t = credential::find_token([f.authorization.as_bytes()])
                .unwrap()
                .unwrap();
            let cred = Credential::decode(black_box(t), &mut buf).unwrap();
            black_box(cred.challenge.id.len())
        })
    });
    g.bench_function("challenge_issue", |b| {
        let mut offer = ChargeOffer::new("api.example.com", INVOICE);
        offer.ttl_secs = 900;
        b.iter(|| {
            let c = issue_charge(&f.keys, black_box(&offer), UnixTime(T0)).unwrap();
            black_box(c.to_header_value().unwrap())
        })
    });
    g.bench_function("request_jcs", |b| {
        let v: serde_json::Value = serde_json::json!({"amount":"100","currency":"sat","description":"pay402 mpp test vector","methodDetails":{"network":"regtest","paymentHash":"02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc","invoice":INVOICE}});
        b.iter(|| black_box(jcs::encode_param(black_box(&v)).unwrap()))
    });
    g.bench_function("receipt_encode", |b| {
        let r = Receipt::lightning(
            &pay402_core::lightning::PaymentHash([2; 32]),
            "c_hwLQf4hEM6rJ-yw3W1wjL1i2lQuI9t1U71vZevJmI",
            UnixTime(T0),
        );
        b.iter(|| black_box(r.encode()))
    });
    g.finish();
}

fn verification(c: &mut Criterion) {
    let f = fixture();
    let token = credential::find_token([f.authorization.as_bytes()])
        .unwrap()
        .unwrap();
    let mut owned = Vec::new();
    let cred = Credential::decode(token, &mut owned).unwrap();
    let challenge = cred.challenge.clone().into_owned();
    let input = binding::binding_input(&challenge);
    let mut g = c.benchmark_group("mpp_verify");
    // The floor of the HMAC check: one HMAC-SHA256 over the bound input.
    g.bench_function("hmac_floor", |b| {
        b.iter(|| {
            let m = Hmac::<Sha256>::new_from_slice(black_box(SECRET))
                .unwrap()
                .chain_update(black_box(input.as_bytes()))
                .finalize()
                .into_bytes();
            black_box(m)
        })
    });
    g.bench_function("hmac_verify", |b| {
        b.iter(|| black_box(f.keys.verify(black_box(&challenge)).unwrap()))
    });
    // The floor of a full verification: that HMAC and one SHA-256 of the preimage.
    g.bench_function("crypto_floor", |b| {
        b.iter(|| {
            let m = Hmac::<Sha256>::new_from_slice(black_box(SECRET))
                .unwrap()
                .chain_update(black_box(input.as_bytes()))
                .finalize()
                .into_bytes();
            black_box((m, Sha256::digest(black_box([0x11u8; 32]))))
        })
    });
    let verifier = ChargeVerifier::new(&f.keys, "api.example.com", 100, Network::Regtest);
    g.bench_function("lightning_charge_full", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let t = credential::find_token([black_box(f.authorization.as_bytes())])
                .unwrap()
                .unwrap();
            let cred = Credential::decode(t, &mut buf).unwrap();
            black_box(verifier.verify(&cred, f.now).unwrap())
        })
    });
    // The invoice facts: the fast reader of the verify path, and lightning-invoice.
    g.bench_function("invoice_read_fast", |b| {
        b.iter(|| black_box(pay402_core::mpp::methods::bolt11::read(black_box(INVOICE)).unwrap()))
    });
    g.bench_function("invoice_read_full", |b| {
        b.iter(|| {
            black_box(
                pay402_core::mpp::methods::lightning::InvoiceFacts::read(black_box(INVOICE))
                    .unwrap(),
            )
        })
    });
    // The pieces of the full verification besides the HMAC.
    g.bench_function("request_decode", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let r: pay402_core::mpp::methods::lightning::ChargeRequest<'_> =
                pay402_core::mpp::verify::decode_request(black_box(&challenge), &mut buf).unwrap();
            black_box(r.amount.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parsing, verification);
criterion_main!(benches);
