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
//!   credential each time: a charge pays once) and a paid L402 request (64
//!   distinct tokens in turn, each with its key cached: the fast path),
//!   both through one `Paywall` offering L402 and MPP; `core_verify_issued`,
//!   the core's share; and `paywall_paid_mpp_ratio`, MPP ÷ L402. Target: at
//!   most 1.5 ×. Both rails are treated alike: per batch of 64, the MPP
//!   credentials (a 402 and a simnet payment each) and fresh copies of the
//!   L402 values are made outside the timing, interleaved; then the pairs
//!   are sent, MPP and L402 in alternating order, each request timed on
//!   its own, its `HeaderMap` built inside the timing around a shared slice
//!   of the value's bytes (checked when the batch was made), as hyper builds
//!   it from its read buffer after `httparse` checked it. The
//!   ratio is of the median requests of each sample (`mpp_median` and
//!   `l402_median` report those medians).
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

/// The `WWW-Authenticate` values of `resp`.
fn www_authenticate(resp: &Response) -> Vec<&[u8]> {
    resp.headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.as_bytes())
        .collect()
}

/// Pays the L402 challenge of the 402 `resp` with `payer`; the
/// `Authorization` value of the token bought.
async fn buy_l402(resp: &Response, payer: &pay402_backends::simnet::SimNode) -> String {
    assert_eq!(resp.status(), 402);
    let set = ChallengeSet::parse(www_authenticate(resp)).unwrap();
    let ch = set.l402().unwrap();
    let paid = payer
        .pay_invoice(&PayRequest::new(ch.invoice(), Msat(0)))
        .await
        .unwrap();
    Credential::new(ch.macaroon(), paid.preimage).to_header_value()
}

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
        buy_l402(&resp, &payer).await
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
    // goes first) and times each; the "time" criterion reports is the ratio
    // of the sample's median paywall request to its median L402-layer
    // request, in microseconds (1.000 µs = 1.0 ×), so machine load that
    // slows both alike cancels out and a preemption inside one request
    // moves a median by one place only.
    let mut g = c.benchmark_group("paywall_paid_l402_ratio");
    for (name, svc) in [
        ("paywall_l402_only", &mut alone),
        ("paywall_all_rails", &mut every),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let cap = usize::try_from(iters).unwrap_or(0);
                let (mut paywall, mut layer) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
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
                            paywall.push(took);
                        } else {
                            layer.push(took);
                        }
                    }
                }
                let ratio = median(&mut paywall).as_secs_f64()
                    / median(&mut layer).as_secs_f64().max(f64::MIN_POSITIVE);
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
/// payer, and [`L402_TOKENS`] L402 tokens bought (and their keys cached)
/// through it.
struct MppFixture {
    rt: tokio::runtime::Runtime,
    svc: PaywallSvc,
    payer: pay402_backends::simnet::SimNode,
    /// `Authorization` values of distinct paid L402 tokens.
    l402_tokens: Vec<String>,
    /// The next token to send (they are used in turn).
    next_l402: usize,
}

/// How many distinct L402 tokens the MPP comparison sends in turn: many
/// clients, each reusing its token (the L402 fast path), rather than one
/// token whose bytes and branch history stay hot.
const L402_TOKENS: usize = 64;

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
    let l402_tokens = rt.block_on(async {
        let mut tokens = Vec::with_capacity(L402_TOKENS);
        for _ in 0..L402_TOKENS {
            let resp = svc.call(request(None)).await.unwrap();
            let auth = buy_l402(&resp, &payer).await;
            // The first paid use records the token and caches its key.
            assert_eq!(svc.call(request(Some(&auth))).await.unwrap().status(), 200);
            tokens.push(auth);
        }
        tokens
    });
    MppFixture {
        rt,
        svc,
        payer,
        l402_tokens,
        next_l402: 0,
    }
}

impl MppFixture {
    /// A fresh paid `Authorization: Payment …` (a 402, a simnet payment).
    fn mpp_credential(&mut self) -> String {
        self.rt.block_on(async {
            let resp = self.svc.call(request(None)).await.unwrap();
            let list = pay402_core::mpp::ChallengeList::parse(www_authenticate(&resp));
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

    /// The next L402 token's `Authorization` value, as a fresh copy (its
    /// bytes are new memory, as the MPP credential's are).
    fn l402_authorization(&mut self) -> String {
        let t = self.l402_tokens[self.next_l402 % L402_TOKENS]
            .as_str()
            .to_owned();
        self.next_l402 += 1;
        t
    }

    /// A batch of `n` of each, made outside any timing and interleaved (so
    /// both sets of values were written at the same time), as the header
    /// values a server's HTTP parser produces: bytes of the connection's
    /// read buffer, already checked by the parser (hyper's `httparse` checks
    /// a header block with SIMD as it reads it).
    fn batch(&mut self, n: u64) -> Vec<(http::HeaderValue, http::HeaderValue)> {
        let value =
            |s: String| http::HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).unwrap();
        (0..n)
            .map(|_| {
                let mpp = self.mpp_credential();
                (value(mpp), value(self.l402_authorization()))
            })
            .collect()
    }

    /// One paid request with the `Authorization` value `auth`, timed. The
    /// request is built inside the timing as hyper builds it: a new
    /// `HeaderMap` holding the value as a shared slice of the read buffer
    /// (a reference count, not a copy), for both rails.
    fn paid(&mut self, auth: &http::HeaderValue) -> Duration {
        let t = Instant::now();
        let mut req = request(None);
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, auth.clone());
        let resp = self.rt.block_on(self.svc.call(req)).unwrap();
        let took = t.elapsed();
        assert_eq!(resp.status(), 200);
        black_box(resp);
        took
    }
}

/// How many MPP credentials (and L402 token copies) are made (untimed)
/// before being sent.
const BATCH: u64 = 64;

/// Sends each pair of a batch, MPP and L402 in alternating order, each
/// request timed on its own: both rails run in the same state of the caches
/// and branch predictors. Appends each request's time to `mpp` and `l402`.
fn send_pairs(
    f: &mut MppFixture,
    batch: &[(http::HeaderValue, http::HeaderValue)],
    mpp: &mut Vec<Duration>,
    l402: &mut Vec<Duration>,
) {
    for (i, (m, l)) in batch.iter().enumerate() {
        if i % 2 == 0 {
            mpp.push(f.paid(m));
            l402.push(f.paid(l));
        } else {
            l402.push(f.paid(l));
            mpp.push(f.paid(m));
        }
    }
}

/// The median of request times (a preemption on a busy machine lands in
/// one request and moves a median by one place, a sum by milliseconds).
fn median(times: &mut [Duration]) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let mid = times.len() / 2;
    *times.select_nth_unstable(mid).1
}

/// `iters` requests of each rail, interleaved in batches; the per-request
/// times of (MPP, L402).
fn interleaved(f: &mut MppFixture, iters: u64) -> (Vec<Duration>, Vec<Duration>) {
    let cap = usize::try_from(iters).unwrap_or(0);
    let (mut mpp, mut l402) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    let mut left = iters;
    while left > 0 {
        let batch = f.batch(left.min(BATCH));
        left -= batch.len() as u64;
        send_pairs(f, &batch, &mut mpp, &mut l402);
    }
    (mpp, l402)
}

fn paid_mpp(c: &mut Criterion) {
    let mut f = mpp_fixture();
    let mut g = c.benchmark_group("paywall_paid_mpp");
    // Each rail's time per request, measured in the interleaved loop of the
    // ratio below (the other rail's requests run between, untimed here):
    // criterion's time is the sum over the sample's requests.
    g.bench_function("l402", |b| {
        b.iter_custom(|iters| interleaved(&mut f, iters).1.iter().sum())
    });
    g.bench_function("mpp_lightning", |b| {
        b.iter_custom(|iters| interleaved(&mut f, iters).0.iter().sum())
    });
    // The core's part of it: find the token, decode the credential, verify
    // on the issuing server's path (no invoice decode; the HMAC path, as
    // this verifier has no memory of the issued challenges).
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

    // The ratio MPP / L402 of the same interleaved loop (1.000 µs = 1.0 ×):
    // per sample, the median MPP request over the median L402 request, so
    // load that slows both alike cancels out and a preemption inside one
    // request does not count as that rail's cost.
    let mut g = c.benchmark_group("paywall_paid_mpp_ratio");
    g.bench_function("mpp_lightning_over_l402", |b| {
        b.iter_custom(|iters| {
            let (mut mpp, mut l402) = interleaved(&mut f, iters);
            let ratio = median(&mut mpp).as_secs_f64()
                / median(&mut l402).as_secs_f64().max(f64::MIN_POSITIVE);
            Duration::from_secs_f64(ratio * 1e-6 * iters as f64)
        })
    });
    // The same loop, each rail's median request (criterion's time per
    // iteration is that median).
    for (name, rail) in [("mpp_median", 0), ("l402_median", 1)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (mut mpp, mut l402) = interleaved(&mut f, iters);
                let m = median(if rail == 0 { &mut mpp } else { &mut l402 });
                m * u32::try_from(iters).unwrap_or(u32::MAX)
            })
        });
    }
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
/// paywall (the tokens in turn); `mpp_pairs` makes and sends `n` of each
/// in batches as the ratio bench does (for a profiler: with
/// `PAY402_PERF_CTL=<fifo>` and `perf record -D -1 --control fifo:<fifo>`
/// only the sending is recorded).
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
            "mpp_pairs" => {
                // Made first, then sent: with `PAY402_PERF_CTL=<fifo>`, the
                // sending alone is profiled (`perf record -D -1 --control
                // fifo:<fifo>` starts disabled; "enable" is written here).
                let ctl = std::env::var("PAY402_PERF_CTL").ok();
                let perf = |cmd: &str| {
                    if let Some(ctl) = &ctl {
                        std::fs::write(ctl, cmd).expect("the perf control fifo");
                    }
                };
                let (mut mpp, mut l402) = (Vec::new(), Vec::new());
                let mut left = n;
                while left > 0 {
                    let batch = f.batch(left.min(BATCH));
                    left -= batch.len() as u64;
                    perf("enable\n");
                    send_pairs(&mut f, &batch, &mut mpp, &mut l402);
                    perf("disable\n");
                }
                black_box((mpp, l402));
                return;
            }
            "mpp_l402" => {
                let auth = f.l402_authorization();
                let resp = f.rt.block_on(f.svc.call(request(Some(&auth)))).unwrap();
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
