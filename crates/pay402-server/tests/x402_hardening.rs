//! Issue 10 on the x402 server: one payment is never served twice when a
//! reservation's lease runs out during a slow request (memory and SQLite
//! stores), the owner renews its lease, `validBefore` is bounded by the
//! offer, the layer prunes released records, and paid responses and 402s
//! carry the caching headers. (The stores' own renew and prune are checked
//! by the conformance suite, `store_conformance`.)
//!
//! Payments are really signed and verified by the layer; the facilitator is
//! the `FaultInjectingFacilitator` double of `x402_support` (it settles
//! every payment; the real facilitator is in `anvil_x402_server.rs`).
#![cfg(feature = "x402")]

mod x402_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use pay402_core::time::UnixTime;
use pay402_core::x402::{EvmTimestamp, HeaderValue, PaymentRequirements, TokenAmount};
use pay402_server::cache::PaidCaching;
use pay402_server::x402::store::{
    MemoryPaymentStore, NonceKey, PaymentState, PaymentStore, SqlitePaymentStore,
};
use pay402_server::x402::{Clock, X402Config, X402Layer, X402Route, exact_offer};
use tokio::sync::Notify;
use x402_support::*;

const NETWORK: &str = "eip155:84532";
const ASSET: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const PRICE: u64 = 10_000;

fn offer() -> PaymentRequirements {
    exact_offer(
        NETWORK,
        ASSET,
        PAY_TO,
        TokenAmount::from_u64(PRICE),
        "USDC",
        "2",
    )
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn new() -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(now())))
    }
    fn clock(&self) -> Clock {
        let t = self.0.clone();
        Clock::from_fn(move || UnixTime(t.load(Ordering::SeqCst)))
    }
    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(Ordering::SeqCst))
    }
}

/// A paid route whose handler, on its first run only, waits for `gate`
/// (a slow handler); `started` is notified when that first run begins.
/// `/broken` answers 500 (nothing charged: the payment is released).
struct Slow {
    app: Router,
    started: Arc<Notify>,
    gate: Arc<Notify>,
    runs: Arc<AtomicUsize>,
    facilitator: Arc<FaultInjectingFacilitator>,
}

fn slow_app(cfg: X402Config, store: Arc<dyn PaymentStore>) -> Slow {
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let layer = X402Layer::new(cfg, facilitator.clone(), store);
    let started = Arc::new(Notify::new());
    let gate = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let (s, g, r) = (started.clone(), gate.clone(), runs.clone());
    let app = Router::new()
        .route(
            "/paid",
            get(move || {
                let (s, g, r) = (s.clone(), g.clone(), r.clone());
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) == 0 {
                        s.notify_one();
                        g.notified().await;
                    }
                    (
                        [(http::header::CACHE_CONTROL, "public, max-age=3600")],
                        "SECRET",
                    )
                }
            })
            .route_layer(layer.with_route(X402Route::new([offer()]).unwrap())),
        )
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") })
                .route_layer(layer.with_route(X402Route::new([offer()]).unwrap())),
        );
    Slow {
        app,
        started,
        gate,
        runs,
        facilitator,
    }
}

fn key_of(header: &str) -> NonceKey {
    let p =
        pay402_core::x402::PaymentPayloadV2::<pay402_core::x402::ExactEvmPayload>::decode_header(
            header,
        )
        .unwrap();
    let a = &p.payload.authorization;
    NonceKey::new(NETWORK, ASSET, &a.from.to_string(), &a.nonce.to_string())
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pay402-x402-hardening-{name}-{}-{}",
        std::process::id(),
        now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("payments.sqlite")
}

/// The double-serve of issue 10: the first request's lease runs out while
/// its handler is slow, a second request with the same payment arrives;
/// exactly one of them is served, the other gets 409 with a stable reason.
async fn a_lease_running_out_never_serves_twice(store: Arc<dyn PaymentStore>) {
    let clock = ManualClock::new();
    let cfg = X402Config::new()
        .clock(clock.clock())
        .reservation_lease(Duration::from_secs(1));
    let env = slow_app(cfg, store);
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let first = {
        let app = env.app.clone();
        let header = header.clone();
        tokio::spawn(
            async move { send(&app, req("/paid", &[("payment-signature", &header)])).await },
        )
    };
    env.started.notified().await;
    // The first request's lease (1 s) is long gone on the server's clock.
    clock.advance(30);
    let second = send(&env.app, req("/paid", &[("payment-signature", &header)])).await;
    env.gate.notify_one();
    let first = first.await.unwrap();
    let answers = [first, second];
    let served: Vec<_> = answers.iter().filter(|r| r.status.is_success()).collect();
    assert_eq!(
        served.len(),
        1,
        "one payment served once: {:?}",
        answers
            .iter()
            .map(|r| (r.status, r.text()))
            .collect::<Vec<_>>()
    );
    assert_eq!(served[0].text(), "SECRET");
    let refused = answers.iter().find(|r| !r.status.is_success()).unwrap();
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
    assert!(
        ["payment_in_progress", "reservation_lost"].contains(&refused.reason().as_str()),
        "{}",
        refused.text()
    );
    assert!(!refused.text().contains("SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_running_out_during_a_slow_handler_never_serves_one_payment_twice_memory() {
    a_lease_running_out_never_serves_twice(Arc::new(MemoryPaymentStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_running_out_during_a_slow_handler_never_serves_one_payment_twice_sqlite() {
    let path = temp_db("lease");
    a_lease_running_out_never_serves_twice(Arc::new(
        SqlitePaymentStore::open(&path).await.unwrap(),
    ))
    .await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// The owner of a reservation renews its lease while its handler works:
/// a second request with the same payment, later than the first lease,
/// finds the payment still in progress, and the owner serves the payer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_renews_its_lease_while_its_handler_works() {
    let clock = ManualClock::new();
    let store = Arc::new(MemoryPaymentStore::new());
    let cfg = X402Config::new()
        .clock(clock.clock())
        .reservation_lease(Duration::from_secs(1));
    let env = slow_app(cfg, store.clone());
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let key = key_of(&header);
    let first = {
        let app = env.app.clone();
        let header = header.clone();
        tokio::spawn(
            async move { send(&app, req("/paid", &[("payment-signature", &header)])).await },
        )
    };
    env.started.notified().await;
    clock.advance(30);
    // Wait (bounded) for the owner to renew its lease past the new time.
    let mut renewed = false;
    for _ in 0..100 {
        let r = store.get(&key).await.unwrap().unwrap();
        if r.state == PaymentState::Reserved && r.lease_until >= clock.now() {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed, "the reservation's lease was never renewed");
    let second = send(&env.app, req("/paid", &[("payment-signature", &header)])).await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text());
    assert_eq!(second.reason(), "payment_in_progress");
    env.gate.notify_one();
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(env.runs.load(Ordering::SeqCst), 1);
    assert_eq!(env.facilitator.settle_count(), 1);
}

/// An authorization valid far beyond the offer's `maxTimeoutSeconds` is
/// refused before any I/O with a stable reason; one within it (plus the
/// clock skew) is served.
#[tokio::test]
async fn a_far_future_valid_before_is_refused_with_a_stable_reason() {
    let env = slow_app(X402Config::new(), Arc::new(MemoryPaymentStore::new()));
    env.gate.notify_one();
    let payer = Payer::dev(2);
    let o = offer();
    let signed = |valid_before: u64| {
        let mut auth = authorization_for(&payer, &o);
        auth.valid_before = EvmTimestamp::from_u64(valid_before);
        let sig = sign(&payer.key, &auth, &domain(&o, None, None));
        payment_v2(&o, auth, sig, None).encode_header()
    };
    for far in [now() + 3600, now() + 10 * 365 * 24 * 3600] {
        let r = send(
            &env.app,
            req("/paid", &[("payment-signature", &signed(far))]),
        )
        .await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
        assert_eq!(
            r.reason(),
            "invalid_exact_evm_payload_authorization_valid_before_too_far"
        );
        assert!(r.payment_required().is_some(), "the offer again");
    }
    assert_eq!(env.facilitator.verify_count(), 0, "refused before any I/O");
    assert_eq!(env.runs.load(Ordering::SeqCst), 0);
    // maxTimeoutSeconds (60) plus a little skew is fine.
    let r = send(
        &env.app,
        req("/paid", &[("payment-signature", &signed(now() + 75))]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn the_layer_prunes_released_records_after_the_retention() {
    let clock = ManualClock::new();
    let store = Arc::new(MemoryPaymentStore::new());
    let cfg = X402Config::new()
        .clock(clock.clock())
        .released_retention(Duration::from_secs(600));
    let env = slow_app(cfg, store.clone());
    let first = pay_v2(&Payer::dev(1), &offer(), None);
    let r = send(&env.app, req("/broken", &[("payment-signature", &first)])).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        store.get(&key_of(&first)).await.unwrap().unwrap().state,
        PaymentState::Released
    );
    clock.advance(700);
    // Signed for the server's (advanced) clock.
    let payer = Payer::dev(1);
    let o = offer();
    let mut auth = authorization_for(&payer, &o);
    auth.valid_before = EvmTimestamp::from_u64(clock.now().0 + o.max_timeout_seconds);
    let sig = sign(&payer.key, &auth, &domain(&o, None, None));
    let second = payment_v2(&o, auth, sig, None).encode_header();
    let r = send(&env.app, req("/broken", &[("payment-signature", &second)])).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        store.get(&key_of(&first)).await.unwrap().is_none(),
        "the old released record was pruned"
    );
    assert!(store.get(&key_of(&second)).await.unwrap().is_some());
}

/// Paid x402 responses are `private, no-store` whatever the handler said
/// (unless the operator opts in); every 402 is `no-store` and varies on the
/// payment headers.
#[tokio::test]
async fn paid_responses_are_not_cacheable_and_402s_vary_on_the_payment_headers() {
    let env = slow_app(X402Config::new(), Arc::new(MemoryPaymentStore::new()));
    env.gate.notify_one();
    let challenge = send(&env.app, req("/paid", &[])).await;
    assert_eq!(challenge.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        challenge.header("cache-control").as_deref(),
        Some("no-store")
    );
    let vary = challenge.header("vary").unwrap().to_ascii_lowercase();
    assert!(
        vary.contains("payment-signature") && vary.contains("x-payment"),
        "{vary}"
    );
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let paid = send(&env.app, req("/paid", &[("payment-signature", &header)])).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text());
    assert_eq!(
        paid.header("cache-control").as_deref(),
        Some("private, no-store")
    );
    assert!(paid.header("vary").unwrap().contains("PAYMENT-SIGNATURE"));
    // A refusal (replay) is not cacheable either.
    let replay = send(&env.app, req("/paid", &[("payment-signature", &header)])).await;
    assert_eq!(replay.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(replay.header("cache-control").as_deref(), Some("no-store"));
    assert!(replay.header("vary").is_some());

    // The operator's opt-in keeps the handler's own Cache-Control.
    let env = slow_app(
        X402Config::new().paid_caching(PaidCaching::HandlerDecides),
        Arc::new(MemoryPaymentStore::new()),
    );
    env.gate.notify_one();
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let paid = send(&env.app, req("/paid", &[("payment-signature", &header)])).await;
    assert_eq!(paid.status, StatusCode::OK);
    assert_eq!(
        paid.header("cache-control").as_deref(),
        Some("public, max-age=3600")
    );
}

/// `req` as if it came from `ip` over TCP (what axum's
/// `into_make_service_with_connect_info::<SocketAddr>()` inserts).
fn from_ip(mut req: http::Request<axum::body::Body>, ip: &str) -> http::Request<axum::body::Body> {
    let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

#[tokio::test]
async fn payments_are_rate_limited_per_client_address_before_the_store_and_the_facilitator() {
    use pay402_server::limit::RateLimit;
    let store = Arc::new(MemoryPaymentStore::new());
    let env = slow_app(
        X402Config::new().payment_rate_limit(RateLimit::per_period(2, Duration::from_secs(3_600))),
        store.clone(),
    );
    env.gate.notify_one();
    for i in 0..2 {
        let header = pay_v2(&Payer::dev(1), &offer(), None);
        let r = send(
            &env.app,
            from_ip(req("/paid", &[("payment-signature", &header)]), "192.0.2.7"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "payment {i}: {}", r.text());
    }
    let verified = env.facilitator.verify_count();
    let settled = env.facilitator.settle_count();

    // The third payment from the same client: 429 before any work.
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let limited = send(
        &env.app,
        from_ip(req("/paid", &[("payment-signature", &header)]), "192.0.2.7"),
    )
    .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.reason(), "rate_limited");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(
        env.facilitator.verify_count(),
        verified,
        "no facilitator call"
    );
    assert_eq!(env.facilitator.settle_count(), settled);
    assert!(
        store.get(&key_of(&header)).await.unwrap().is_none(),
        "no reservation for a refused payment"
    );
    // 402s cost no write and are not limited.
    let challenge = send(&env.app, from_ip(req("/paid", &[]), "192.0.2.7")).await;
    assert_eq!(challenge.status, StatusCode::PAYMENT_REQUIRED);
    // Another client has its own allowance; the same payment is served there.
    let other = send(
        &env.app,
        from_ip(req("/paid", &[("payment-signature", &header)]), "192.0.2.8"),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    assert_eq!(env.runs.load(Ordering::SeqCst), 3);
}
