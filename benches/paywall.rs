#![allow(missing_docs)] // criterion_group! generates undocumented public functions
//! `Paywall` benchmarks: what dispatching over several rails costs, against
//! the single-rail layer doing the same work, in the same run.
//!
//! - `paywall_paid_l402`: a paid L402 request (valid token, cached key)
//!   through `L402Layer`, through a `Paywall` with L402 alone, and through a
//!   `Paywall` with L402, x402 and BitRequests enabled. Target: the paywall
//!   costs at most 1.1 × the L402 layer.
//! - `paywall_paid_l402_ratio`: the same comparison interleaved, reported
//!   as a ratio (criterion's "time" in µs is paywall ÷ layer).
//! - `PAY402_BENCH_COUNT=<service>:<n>`: not a benchmark, a loop to run
//!   under cachegrind and count instructions per request (see [`count`]).
//! - `paywall_unpaid`: the 402 path — an unpaid request answered by
//!   `L402Layer` (invoice + macaroon), by `X402Layer` (offer), by
//!   `BitreqLayer` (the two1 headers), and by a `Paywall` with all three
//!   (one 402 carrying every challenge).
//!
//! - `paywall_paid_mpp`: a paid MPP `lightning`/`charge` request (a fresh
//!   credential each time: a charge pays once) and a paid L402 request,
//!   both through one `Paywall` offering L402 and MPP; `core_verify_issued`,
//!   the core's share; and `paywall_paid_mpp_ratio`, batches of both
//!   interleaved, reported as a ratio (MPP ÷ L402). Target: at most 1.5 ×.
//!   Making and paying the credentials (a 402, a simnet payment each, in
//!   batches of 64) is outside the timing.
//!
//! Run: `cargo bench -p pay402-benches --bench paywall`.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use criterion::{Criterion, criterion_group};
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_backends::simnet::SimNet;
use pay402_backends::x402::RemoteFacilitator;
use pay402_benches::SERVICE;
use pay402_core::l402::{ChallengeSet, Credential};
use pay402_core::lightning::{LightningPayer, Network, PayRequest};
use pay402_core::money::Msat;
use pay402_core::rates::FixedRates;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_server::bitreq::store::MemoryBitreqStore;
use pay402_server::bitreq::{BitreqConfig, BitreqServer, OnChainConfig, TransferConfig};
use pay402_server::mpp::MppConfig;
use pay402_server::paywall::{Paywall, PaywallPrice, PaywallService, X402Asset};
use pay402_server::store::MemoryStore;
use pay402_server::x402::store::MemoryPaymentStore;
use pay402_server::x402::{X402Config, X402Layer, X402Route, exact_offer};
use pay402_server::{L402Config, L402Layer, L402Service, Price};
use tower::{Layer, Service, ServiceExt};

const NETWORK: &str = "eip155:8453";
const USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// The price of every route: 100 sat, i.e. 0.10 USD at 100 000 USD per BTC.
const SATS: u64 = 100;

type Handler = tower::util::ServiceFn<
    fn(http::Request<Body>) -> std::future::Ready<Result<Response, Infallible>>,
>;

fn ok(_req: http::Request<Body>) -> std::future::Ready<Result<Response, Infallible>> {
    std::future::ready(Ok(Response::new(Body::from("ok"))))
}

/// The handler behind every layer: answers "ok" at once.
fn handler() -> Handler {
    tower::service_fn(ok as fn(_) -> _)
}

fn request(auth: Option<&str>) -> http::Request<Body> {
    let mut b = http::Request::get("/resource").header(http::header::HOST, "bench.test");
    if let Some(a) = auth {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    b.body(Body::empty()).unwrap()
}

/// The x402 layer of the benches: its facilitator is never reached (no
/// bench settles), so it points at a closed loopback port.
fn x402_layer() -> X402Layer {
    let facilitator = RemoteFacilitator::builder("http://127.0.0.1:9")
        .build()
        .unwrap();
    X402Layer::new(
        X402Config::new(),
        Arc::new(facilitator),
        Arc::new(MemoryPaymentStore::new()),
    )
}

/// A BitRequests merchant with a fixed on-chain address (a 402 writes no
/// quote), a transfer ledger; the chain is never reached.
fn bitreq_server() -> BitreqServer {
    let chain = BitcoindRpc::new(BitcoindConfig {
        url: "http://127.0.0.1:9".parse().unwrap(),
        user: "u".into(),
        password: "p".into(),
        timeout: Duration::from_secs(1),
    })
    .unwrap();
    let address: bitcoin::Address<bitcoin::address::NetworkUnchecked> =
        "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
            .parse()
            .unwrap();
    BitreqServer::new(
        BitreqConfig::new(bitcoin::Network::Regtest)
            .public_url("http://bench.test")
            .onchain(OnChainConfig::fixed(address.assume_checked()))
            .transfer(TransferConfig::new("shop")),
        Arc::new(chain),
        Arc::new(MemoryBitreqStore::new()),
    )
    .unwrap()
}

fn usdc() -> X402Asset {
    X402Asset::usdc(NETWORK, USDC.parse().unwrap())
}

/// A paywall with every rail, L402 through `l402`.
fn all_rails(l402: &L402Layer) -> Paywall {
    Paywall::builder()
        .l402_layer(l402.clone())
        .x402_layer(x402_layer(), PAY_TO.parse::<EvmAddress>().unwrap(), usdc())
        .bitreq(bitreq_server())
        .rates(Arc::new(
            FixedRates::new()
                .usd_cents_per_btc(10_000_000)
                .usd_stablecoin(usdc().unit()),
        ))
        .build()
        .unwrap()
}

type PaywallSvc = PaywallService<Handler>;

/// The three services of the paid benches (the L402 layer, a paywall with
/// L402 alone, one with every rail), and a token bought through them.
struct PaidFixture {
    rt: tokio::runtime::Runtime,
    single: L402Service<Handler>,
    alone: PaywallSvc,
    every: PaywallSvc,
    authorization: String,
}

fn paid_fixture() -> PaidFixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let net = SimNet::new(Network::Regtest);
    let node = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let l402 = L402Layer::new(
        L402Config::new(SERVICE),
        Arc::new(node),
        Arc::new(MemoryStore::new()),
    );
    // Every service shares the L402 layer (store, key cache) and the route
    // scope (the request path), so one token pays on all of them.
    let mut single = l402.with_price(Price::sats(SATS)).layer(handler());
    let mut alone = Paywall::builder()
        .l402_layer(l402.clone())
        .build()
        .unwrap()
        .price(PaywallPrice::sats(SATS))
        .layer(handler());
    let mut every = all_rails(&l402)
        .price(PaywallPrice::sats(SATS))
        .layer(handler());
    let authorization = rt.block_on(async {
        let resp = single
            .ready()
            .await
            .unwrap()
            .call(request(None))
            .await
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
        let paid = payer
            .pay_invoice(&PayRequest::new(ch.invoice(), Msat(0)))
            .await
            .unwrap();
        Credential::new(ch.macaroon(), paid.preimage).to_header_value()
    });
    // Warm the key cache through each (the first paid use records the token).
    rt.block_on(async {
        for resp in [
            single.call(request(Some(&authorization))).await.unwrap(),
            alone.call(request(Some(&authorization))).await.unwrap(),
            every.call(request(Some(&authorization))).await.unwrap(),
        ] {
            assert_eq!(resp.status(), 200);
        }
    });
    PaidFixture {
        rt,
        single,
        alone,
        every,
        authorization,
    }
}

fn paid_l402(c: &mut Criterion) {
    let PaidFixture {
        rt,
        mut single,
        mut alone,
        mut every,
        authorization,
    } = paid_fixture();
    let mut bare = handler();

    let mut g = c.benchmark_group("paywall_paid_l402");
    g.bench_function("bare_handler", |b| {
        b.iter(|| {
            let resp = rt
                .block_on(bare.call(request(Some(&authorization))))
                .unwrap();
            black_box(resp.status())
        })
    });
    macro_rules! bench_paid {
        ($name:literal, $svc:ident) => {
            g.bench_function($name, |b| {
                b.iter(|| {
                    let resp = rt
                        .block_on($svc.call(request(Some(&authorization))))
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    black_box(resp.status())
                })
            });
        };
    }
    bench_paid!("l402_layer", single);
    bench_paid!("paywall_l402_only", alone);
    bench_paid!("paywall_all_rails", every);
    g.finish();

    // The same comparison, load-proof: each iteration sends one request
    // through the paywall and one through the L402 layer (alternating which
    // goes first) and times both; the "time" criterion reports is the ratio
    // paywall / L402 layer in microseconds (1.000 µs = 1.0 ×), so machine
    // load that slows both alike cancels out.
    let mut g = c.benchmark_group("paywall_paid_l402_ratio");
    for (name, svc) in [
        ("paywall_l402_only", &mut alone),
        ("paywall_all_rails", &mut every),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (mut paywall, mut layer) = (Duration::ZERO, Duration::ZERO);
                for i in 0..iters {
                    for first in [i % 2 == 0, i % 2 == 1] {
                        let t = Instant::now();
                        let resp = if first {
                            rt.block_on(svc.call(request(Some(&authorization))))
                        } else {
                            rt.block_on(single.call(request(Some(&authorization))))
                        }
                        .unwrap();
                        let took = t.elapsed();
                        assert_eq!(resp.status(), 200);
                        if first {
                            paywall += took;
                        } else {
                            layer += took;
                        }
                    }
                }
                let ratio = paywall.as_secs_f64() / layer.as_secs_f64().max(f64::MIN_POSITIVE);
                Duration::from_secs_f64(ratio * 1e-6 * iters as f64)
            })
        });
    }
    g.finish();
}

fn unpaid(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let node = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    let l402 = L402Layer::new(
        L402Config::new(SERVICE),
        Arc::new(node),
        Arc::new(MemoryStore::new()),
    );
    let offer = exact_offer(
        NETWORK,
        USDC,
        PAY_TO,
        TokenAmount::from_u64(100_000),
        "USD Coin",
        "2",
    );
    let mut l402_only = l402.with_price(Price::sats(SATS)).layer(handler());
    let mut x402_only = x402_layer()
        .with_route(X402Route::new([offer]).unwrap())
        .layer(handler());
    let mut bitreq_only = bitreq_server().layer(Price::sats(SATS)).layer(handler());
    let mut every = all_rails(&l402)
        .price(PaywallPrice::sats(SATS))
        .layer(handler());

    let mut g = c.benchmark_group("paywall_unpaid");
    macro_rules! bench_402 {
        ($name:literal, $svc:ident) => {
            g.bench_function($name, |b| {
                b.iter(|| {
                    let resp = rt.block_on($svc.call(request(None))).unwrap();
                    assert_eq!(resp.status(), 402);
                    black_box(resp.status())
                })
            });
        };
    }
    bench_402!("l402_layer", l402_only);
    bench_402!("x402_layer", x402_only);
    bench_402!("bitreq_layer", bitreq_only);
    bench_402!("paywall_all_rails", every);
    g.finish();
}

/// A paywall offering L402 and MPP `lightning`/`charge` on one route, a
/// payer, and an L402 token bought (and its key cached) through it.
struct MppFixture {
    rt: tokio::runtime::Runtime,
    svc: PaywallSvc,
    payer: pay402_backends::simnet::SimNode,
    l402_authorization: String,
}

fn mpp_fixture() -> MppFixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let net = SimNet::new(Network::Regtest);
    let node = Arc::new(net.add_node("merchant", Msat(0)));
    let payer = net.add_node("payer", Msat(u64::MAX / 4));
    let mpp = MppConfig::new("bench.test", &[0x42; 32])
        .unwrap()
        .lightning(node.clone());
    let mut svc = Paywall::builder()
        .l402(node, Arc::new(MemoryStore::new()))
        .mpp(mpp)
        .build()
        .unwrap()
        .price(PaywallPrice::sats(SATS))
        .layer(handler());
    let l402_authorization = rt.block_on(async {
        let resp = svc.call(request(None)).await.unwrap();
        assert_eq!(resp.status(), 402);
        let values: Vec<&[u8]> = resp
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let set = ChallengeSet::parse(values).unwrap();
        let ch = set.l402().unwrap();
        let paid = payer
            .pay_invoice(&PayRequest::new(ch.invoice(), Msat(0)))
            .await
            .unwrap();
        let auth = Credential::new(ch.macaroon(), paid.preimage).to_header_value();
        assert_eq!(svc.call(request(Some(&auth))).await.unwrap().status(), 200);
        auth
    });
    MppFixture {
        rt,
        svc,
        payer,
        l402_authorization,
    }
}

impl MppFixture {
    /// A fresh paid `Authorization: Payment …` (a 402, a simnet payment).
    fn mpp_credential(&mut self) -> String {
        self.rt.block_on(async {
            let resp = self.svc.call(request(None)).await.unwrap();
            let values: Vec<&[u8]> = resp
                .headers()
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let list = pay402_core::mpp::ChallengeList::parse(values);
            let ch = list.challenges().first().expect("a Payment challenge");
            let payable = pay402_core::mpp::methods::lightning::check_charge(
                ch,
                Network::Regtest,
                pay402_core::time::UnixTime::from_system(std::time::SystemTime::now()),
                Msat(u64::MAX),
            )
            .unwrap();
            let paid = self
                .payer
                .pay_invoice(&PayRequest::new(&payable.bolt11, Msat(0)))
                .await
                .unwrap();
            pay402_core::mpp::methods::lightning::credential(ch, &paid.preimage, None)
        })
    }
}

/// How many MPP credentials are made (untimed) before being sent back to
/// back.
const BATCH: u64 = 64;

fn paid_mpp(c: &mut Criterion) {
    let mut f = mpp_fixture();
    let mut g = c.benchmark_group("paywall_paid_mpp");
    g.bench_function("l402", |b| {
        b.iter(|| {
            let resp =
                f.rt.block_on(f.svc.call(request(Some(&f.l402_authorization))))
                    .unwrap();
            assert_eq!(resp.status(), 200);
            black_box(resp.status())
        })
    });
    g.bench_function("mpp_lightning", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // A batch of fresh credentials, made outside the timing, then
                // sent back to back (as a server sees them).
                let batch: Vec<String> = (0..left.min(BATCH)).map(|_| f.mpp_credential()).collect();
                left -= batch.len() as u64;
                let t = Instant::now();
                for auth in &batch {
                    let resp = f.rt.block_on(f.svc.call(request(Some(auth)))).unwrap();
                    assert_eq!(resp.status(), 200);
                    black_box(resp);
                }
                total += t.elapsed();
            }
            total
        })
    });
    // The core's part of it: find the token, decode the credential, verify
    // on the issuing server's path (no invoice decode).
    let keys = pay402_core::mpp::ChallengeKeys::new(
        pay402_core::mpp::ChallengeKey::new(&[0x42; 32]).unwrap(),
    );
    g.bench_function("core_verify_issued", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let auth = f.mpp_credential();
                let now = pay402_core::time::UnixTime::from_system(std::time::SystemTime::now());
                let t = Instant::now();
                let token = pay402_core::mpp::credential::find_token([auth.as_bytes()])
                    .unwrap()
                    .unwrap();
                let mut buf = Vec::new();
                let cred = pay402_core::mpp::Credential::decode(token, &mut buf).unwrap();
                let v = pay402_core::mpp::methods::lightning::ChargeVerifier::new(
                    &keys,
                    "bench.test",
                    SATS,
                    Network::Regtest,
                )
                .verify_issued(&cred, now)
                .unwrap();
                total += t.elapsed();
                black_box(v);
            }
            total
        })
    });
    g.finish();

    // Interleaved, as a ratio MPP / L402 (1.000 µs = 1.0 ×).
    let mut g = c.benchmark_group("paywall_paid_mpp_ratio");
    g.bench_function("mpp_lightning_over_l402", |b| {
        b.iter_custom(|iters| {
            let (mut mpp, mut l402) = (Duration::ZERO, Duration::ZERO);
            let mut left = iters;
            while left > 0 {
                let batch: Vec<String> = (0..left.min(BATCH)).map(|_| f.mpp_credential()).collect();
                left -= batch.len() as u64;
                let t = Instant::now();
                for auth in &batch {
                    let resp = f.rt.block_on(f.svc.call(request(Some(auth)))).unwrap();
                    assert_eq!(resp.status(), 200);
                }
                mpp += t.elapsed();
                let t = Instant::now();
                for _ in &batch {
                    let resp =
                        f.rt.block_on(f.svc.call(request(Some(&f.l402_authorization))))
                            .unwrap();
                    assert_eq!(resp.status(), 200);
                }
                l402 += t.elapsed();
            }
            let ratio = mpp.as_secs_f64() / l402.as_secs_f64().max(f64::MIN_POSITIVE);
            Duration::from_secs_f64(ratio * 1e-6 * iters as f64)
        })
    });
    g.finish();
}

criterion_group!(benches, paid_l402, unpaid, paid_mpp);

/// `PAY402_BENCH_COUNT=<service>:<n>` (`l402_layer`, `paywall_l402_only`,
/// `paywall_all_rails`; `mpp_make`, `mpp_paid`, `mpp_l402`, see
/// [`count_mpp`]) sends `n` paid requests through one service and
/// exits, instead of benchmarking: run it under
/// `valgrind --tool=cachegrind --cache-sim=no` with `n` = 0 and 2 000, and
/// the difference over 2 000 is the instructions one request costs, a
/// number machine load does not move.
fn count(spec: &str) {
    let (which, n) = spec.split_once(':').expect("<service>:<n>");
    let n: u64 = n.parse().expect("a count");
    if which.starts_with("mpp_") {
        return count_mpp(which, n);
    }
    let mut f = paid_fixture();
    for _ in 0..n {
        let req = request(Some(&f.authorization));
        let resp = match which {
            "l402_layer" => f.rt.block_on(f.single.call(req)),
            "paywall_l402_only" => f.rt.block_on(f.alone.call(req)),
            "paywall_all_rails" => f.rt.block_on(f.every.call(req)),
            other => panic!("unknown service {other}"),
        }
        .unwrap();
        assert_eq!(resp.status(), 200);
        black_box(resp);
    }
}

/// The MPP count modes, on the L402 + MPP paywall: `mpp_make` makes `n`
/// paid credentials (a 402 and a simnet payment each) without sending them;
/// `mpp_paid` makes and sends each (the difference over `n` is one paid MPP
/// request); `mpp_l402` sends `n` paid L402 requests through the same
/// paywall.
fn count_mpp(which: &str, n: u64) {
    let mut f = mpp_fixture();
    for _ in 0..n {
        match which {
            "mpp_make" => {
                black_box(f.mpp_credential());
            }
            "mpp_paid" => {
                let auth = f.mpp_credential();
                let resp = f.rt.block_on(f.svc.call(request(Some(&auth)))).unwrap();
                assert_eq!(resp.status(), 200);
            }
            "mpp_l402" => {
                let resp =
                    f.rt.block_on(f.svc.call(request(Some(&f.l402_authorization))))
                        .unwrap();
                assert_eq!(resp.status(), 200);
            }
            other => panic!("unknown service {other}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("PAY402_BENCH_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
