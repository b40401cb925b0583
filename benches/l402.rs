#![allow(missing_docs)] // criterion_group! generates undocumented public functions
//! L402 benchmarks: parsing, decoding, verification, emission, and the server
//! layer's per-request overhead, each beside the cryptographic floor it must
//! pay so the ratio is visible in one run.
//!
//! Run: `cargo bench -p pay402-benches --bench l402`.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use pay402_backends::simnet::SimNet;
use pay402_benches::{SERVICE, fixture};
use pay402_core::l402::{
    Challenge, ChallengeSet, Credential, MacaroonRef, PresentedToken, Scheme, VerifyContext,
};
use pay402_core::lightning::Network;
use pay402_core::money::Msat;
use pay402_server::store::{MemoryStore, RootKeyStore, SqliteStore};
use pay402_server::{L402Config, L402Layer, Price};
use sha2::{Digest, Sha256};
use tower::{Layer, Service, ServiceExt};

fn parsing(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("l402_parse");
    g.bench_function("challenge_parse", |b| {
        b.iter(|| {
            let set = ChallengeSet::parse(f.challenges.iter().map(|s| s.as_bytes())).unwrap();
            black_box(set.l402().unwrap().invoice().len())
        })
    });
    g.bench_function("credential_parse", |b| {
        b.iter(|| black_box(Credential::parse(black_box(&f.authorization)).unwrap()))
    });
    g.bench_function("macaroon_decode", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            pay402_core::b64::decode_any_into(black_box(&f.macaroon_b64), 8192, &mut buf).unwrap();
            black_box(MacaroonRef::decode(&buf).unwrap().caveat_count())
        })
    });
    g.bench_function("challenge_emit", |b| {
        b.iter(|| {
            let b64 = f.macaroon.to_base64();
            black_box(Challenge::new(b64, pay402_benches::INVOICE).to_header_value(Scheme::L402))
        })
    });
    g.finish();
}

fn verification(c: &mut Criterion) {
    let f = fixture();
    let key = f.root.derive();
    let mut g = c.benchmark_group("l402_verify");
    // The floor: the HMAC chain over identifier + 3 caveats from the derived
    // key, and one SHA-256 of the preimage. Nothing a verifier can skip.
    let id = f.macaroon.identifier().to_vec();
    let caveats: Vec<Vec<u8>> = f.macaroon.caveats().to_vec();
    let preimage = [0x17u8; 32];
    // The same derived key the verifier uses, as raw bytes for the floor.
    let derived = Hmac::<Sha256>::new_from_slice(b"macaroons-key-generator")
        .unwrap()
        .chain_update(f.root.as_bytes())
        .finalize()
        .into_bytes();
    g.bench_function("crypto_floor", |b| {
        b.iter(|| {
            let mut sig: [u8; 32] = Hmac::<Sha256>::new_from_slice(black_box(&derived))
                .unwrap()
                .chain_update(black_box(&id))
                .finalize()
                .into_bytes()
                .into();
            for cav in &caveats {
                sig = Hmac::<Sha256>::new_from_slice(&sig)
                    .unwrap()
                    .chain_update(cav)
                    .finalize()
                    .into_bytes()
                    .into();
            }
            let h = Sha256::digest(black_box(preimage));
            black_box((sig, h))
        })
    });
    g.bench_function("full_verify", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            let cred = Credential::parse(black_box(&f.authorization)).unwrap();
            let token = PresentedToken::decode(&cred, &mut buf).unwrap();
            let ctx = VerifyContext::new(SERVICE, f.now);
            black_box(token.verify(&key, &[], &ctx).unwrap())
        })
    });
    // The same, with a key that remembers this macaroon (a token presented
    // again): the HMAC chain is skipped, the caveats are still checked.
    g.bench_function("cached_verify", |b| {
        let mut buf = Vec::new();
        let cached = pay402_core::l402::CachedKey::new(key.clone());
        b.iter(|| {
            let cred = Credential::parse(black_box(&f.authorization)).unwrap();
            let token = PresentedToken::decode(&cred, &mut buf).unwrap();
            let ctx = VerifyContext::new(SERVICE, f.now);
            black_box(token.verify_cached(&cached, &[], &ctx).unwrap())
        })
    });
    g.finish();
}

/// A layer on a simnet merchant, and the `Authorization` value of a token
/// bought through it for `GET /resource` (so its caveats are the ones the
/// layer mints: services, scope, price, lifetime).
fn bought_token(rt: &tokio::runtime::Runtime, store: Arc<dyn RootKeyStore>) -> (L402Layer, String) {
    use pay402_core::lightning::{LightningPayer, PayRequest};
    let net = SimNet::new(Network::Regtest);
    let node = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let layer = L402Layer::new(L402Config::new(SERVICE), Arc::new(node), store)
        .with_price(Price::sats(100));
    let mut svc = layer.layer(tower::service_fn(|_req: http::Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    }));
    let resp = rt
        .block_on(async {
            let req = http::Request::get("/resource").body(Body::empty()).unwrap();
            svc.ready().await.unwrap().call(req).await
        })
        .unwrap();
    assert_eq!(resp.status(), 402);
    let values: Vec<&[u8]> = resp
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let set = ChallengeSet::parse(values).unwrap();
    let ch = set.l402().unwrap();
    let paid = rt
        .block_on(payer.pay_invoice(&PayRequest::new(ch.invoice(), Msat(0))))
        .unwrap();
    let auth = Credential::new(ch.macaroon(), paid.preimage).to_header_value();
    (layer, auth)
}

fn request(auth: Option<&str>) -> http::Request<Body> {
    let mut b = http::Request::get("/resource");
    if let Some(a) = auth {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    b.body(Body::empty()).unwrap()
}

fn layer_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (layer, authorization) = bought_token(&rt, Arc::new(MemoryStore::new()));
    let handler = tower::service_fn(|_req: http::Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    });
    let mut paid = layer.layer(handler);
    let mut bare = handler;
    // Warm the key cache (the first paid use records the token).
    let warm = rt.block_on(async {
        let svc = paid.ready().await.unwrap();
        svc.call(request(Some(&authorization))).await.unwrap()
    });
    assert_eq!(warm.status(), 200);

    let mut g = c.benchmark_group("l402_layer");
    // The bare handler gets the very same request (Authorization included), so
    // the difference is only what the layer does.
    g.bench_function("bare_handler", |b| {
        b.iter(|| {
            let resp = rt
                .block_on(bare.call(request(Some(&authorization))))
                .unwrap();
            black_box(resp.status())
        })
    });
    g.bench_function("paid_request", |b| {
        b.iter(|| {
            let resp = rt
                .block_on(paid.call(request(Some(&authorization))))
                .unwrap();
            assert_eq!(resp.status(), 200);
            black_box(resp.status())
        })
    });
    g.finish();
}

/// The 402 path (an unpaid request: invoice from simnet, token minted,
/// challenge answered) with the memory store and with a SQLite file store,
/// in the same run. Minting writes nothing to either store, so the two should
/// cost the same.
fn unpaid_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("pay402-bench-l402-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.sqlite");
    let _ = std::fs::remove_file(&path);
    let sqlite: Arc<dyn RootKeyStore> = Arc::new(rt.block_on(SqliteStore::open(&path)).unwrap());
    let memory: Arc<dyn RootKeyStore> = Arc::new(MemoryStore::new());
    let handler = tower::service_fn(|_req: http::Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    });
    let mut g = c.benchmark_group("l402_unpaid");
    for (name, store) in [("memory_store", memory), ("sqlite_store", sqlite)] {
        let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
        let layer = L402Layer::new(L402Config::new(SERVICE), Arc::new(node), store)
            .with_price(Price::sats(100));
        let mut svc = layer.layer(handler);
        g.bench_function(name, |b| {
            b.iter(|| {
                let resp = rt.block_on(svc.call(request(None))).unwrap();
                assert_eq!(resp.status(), 402);
                black_box(resp.status())
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn pieces(c: &mut Criterion) {
    use pay402_core::l402::caveat::verify_caveats;
    let f = fixture();
    let mut g = c.benchmark_group("l402_pieces");
    let bytes = f.macaroon.encode_v2();
    g.bench_function("base64_decode", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            pay402_core::b64::decode_any_into(black_box(&f.macaroon_b64), 8192, &mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.bench_function("macaroon_parse_bytes", |b| {
        b.iter(|| {
            black_box(
                MacaroonRef::decode(black_box(&bytes))
                    .unwrap()
                    .caveat_count(),
            )
        })
    });
    let mac = MacaroonRef::decode(&bytes).unwrap();
    g.bench_function("caveats", |b| {
        let ctx = VerifyContext::new(SERVICE, f.now);
        b.iter(|| black_box(verify_caveats(black_box(mac.caveats()), &[], &ctx)).unwrap())
    });
    let key = f.root.derive();
    g.bench_function("signature_chain", |b| {
        b.iter(|| black_box(black_box(&mac).verify_signature(&key)))
    });
    let pre = "17".repeat(32);
    g.bench_function("preimage_hex", |b| {
        b.iter(|| black_box(pay402_core::lightning::Preimage::from_hex(black_box(&pre)).unwrap()))
    });
    g.finish();
}

criterion_group!(
    benches,
    parsing,
    verification,
    layer_overhead,
    unpaid_path,
    pieces
);
criterion_main!(benches);
