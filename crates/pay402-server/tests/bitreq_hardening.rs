#![cfg(feature = "bitreq")]
//! Issue 10 on the BitRequests server: safe on-chain defaults (at least one
//! confirmation; zero-conf only as a named, price-capped opt-in), a ledger
//! API that cannot be built with an empty token, a bound on the quotes
//! (derived addresses) unpaid requests create, and the caching headers of
//! paid responses and 402s.
//!
//! The chain backend is a real `BitcoindRpc` pointed at a closed loopback
//! port (these checks never reach the chain); the on-chain flows with and
//! without confirmations run on bcoin in `bcoin_bitreq_server.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Network, ScriptBuf};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_core::bitreq::{BitTransfer, PaymentInfo};
use pay402_core::money::Sat;
use pay402_server::Price;
use pay402_server::bitreq::store::{BitreqStore, MemoryBitreqStore, SqliteBitreqStore};
use pay402_server::bitreq::{
    BitreqConfig, BitreqPayment, BitreqServer, ConfigError, OnChainConfig, TransferConfig,
};
use pay402_server::cache::PaidCaching;
use tower::ServiceExt;

const PRICE: u64 = 5_000;
const ADMIN: &str = "operator-secret-token";

fn xpub() -> Xpub {
    let xprv = Xpriv::new_master(Network::Regtest, &[7; 32]).unwrap();
    Xpub::from_priv(&Secp256k1::new(), &xprv)
}

/// A real RPC client whose node is down (nothing listens on port 9).
fn dead_chain() -> Arc<BitcoindRpc> {
    Arc::new(
        BitcoindRpc::new(BitcoindConfig {
            url: "http://127.0.0.1:9".parse().unwrap(),
            user: "u".into(),
            password: "p".into(),
            timeout: Duration::from_secs(2),
        })
        .unwrap(),
    )
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    fn address(&self) -> Option<ScriptBuf> {
        PaymentInfo::from_header_map(&self.headers)
            .unwrap()
            .address(Network::Regtest)
            .unwrap()
            .map(|a| a.script_pubkey())
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path).header(header::HOST, "merchant.test");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Body::empty()).unwrap()
}

fn paid_app(server: &BitreqServer) -> Router {
    Router::new().route(
        "/report",
        get(|paid: BitreqPayment| async move {
            (
                [(header::CACHE_CONTROL, "public, max-age=600")],
                format!("report ({} sat)", paid.amount.0),
            )
        })
        .route_layer(server.layer(Price::sats(PRICE))),
    )
}

#[tokio::test]
async fn onchain_needs_a_confirmation_by_default_and_zero_conf_is_a_capped_opt_in() {
    // The default: one confirmation, no zero-conf.
    let cfg = OnChainConfig::derived(xpub());
    assert_eq!(cfg.confirmations, 1);
    assert_eq!(cfg.unconfirmed_up_to, None);
    assert_eq!(cfg.required_confirmations(Sat(1)), 1);
    assert_eq!(cfg.required_confirmations(Sat(u64::MAX)), 1);
    // Asking for 0 confirmations the old way is refused at build time.
    let store: Arc<dyn BitreqStore> = Arc::new(MemoryBitreqStore::new());
    let zero = BitreqConfig::new(Network::Regtest)
        .onchain(OnChainConfig::derived(xpub()).confirmations(0));
    assert_eq!(
        BitreqServer::new(zero, dead_chain(), store.clone()).unwrap_err(),
        ConfigError::ZeroConfirmations
    );
    // The opt-in serves unconfirmed only up to its cap.
    let capped = OnChainConfig::derived(xpub())
        .confirmations(2)
        .accept_unconfirmed_up_to(Sat(1_000));
    assert_eq!(capped.required_confirmations(Sat(1_000)), 0);
    assert_eq!(capped.required_confirmations(Sat(1_001)), 2);
    assert!(
        BitreqServer::new(
            BitreqConfig::new(Network::Regtest).onchain(capped),
            dead_chain(),
            store
        )
        .is_ok()
    );
}

#[tokio::test]
async fn the_ledger_api_cannot_be_built_with_an_empty_token() {
    let server = BitreqServer::new(
        BitreqConfig::new(Network::Regtest).transfer(TransferConfig::new("shop")),
        dead_chain(),
        Arc::new(MemoryBitreqStore::new()),
    )
    .unwrap();
    for blank in ["", " ", "\t\n"] {
        assert!(
            matches!(
                server.ledger_router(blank),
                Err(ConfigError::EmptyAdminToken)
            ),
            "{blank:?}"
        );
    }
    let admin = server.ledger_router(ADMIN).unwrap();
    // An empty bearer never opens it.
    let r = send(
        &admin,
        Request::get("/accounts/alice")
            .header(header::AUTHORIZATION, "Bearer ")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
}

/// Unpaid requests cannot grow the quotes (and the address index) without
/// bound: past `max_open_quotes` the 402 leaves the on-chain address out
/// (the other methods are still offered); expired quotes are purged to make
/// room.
async fn quotes_are_bounded(store: Arc<dyn BitreqStore>) {
    let cfg = BitreqConfig::new(Network::Regtest)
        .onchain(OnChainConfig::derived(xpub()).max_open_quotes(3))
        .transfer(TransferConfig::new("shop"));
    let server = BitreqServer::new(cfg, dead_chain(), store.clone()).unwrap();
    let app = paid_app(&server);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = send(&app, get_with("/report", &[])).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
        seen.push(r.address().expect("a fresh address"));
    }
    for _ in 0..5 {
        let r = send(&app, get_with("/report", &[])).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(r.address(), None, "no address past the bound");
        assert!(
            r.header("username").is_some(),
            "the ledger is still offered"
        );
    }
    assert_eq!(store.count_quotes().await.unwrap(), 3);
    // Quotes that expired are purged to make room.
    let cfg = BitreqConfig::new(Network::Regtest).onchain(
        OnChainConfig::derived(xpub())
            .max_open_quotes(2)
            .quote_ttl(Duration::ZERO),
    );
    let store2: Arc<dyn BitreqStore> = Arc::new(MemoryBitreqStore::new());
    let server = BitreqServer::new(cfg, dead_chain(), store2.clone()).unwrap();
    let app = paid_app(&server);
    for _ in 0..2 {
        assert!(
            send(&app, get_with("/report", &[]))
                .await
                .address()
                .is_some()
        );
    }
    // Expired once the clock has moved past their (zero) lifetime.
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= start + 1
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        send(&app, get_with("/report", &[]))
            .await
            .address()
            .is_some()
    );
    assert_eq!(store2.count_quotes().await.unwrap(), 1);
}

#[tokio::test]
async fn unpaid_quotes_are_bounded_memory() {
    quotes_are_bounded(Arc::new(MemoryBitreqStore::new())).await;
}

#[tokio::test]
async fn unpaid_quotes_are_bounded_sqlite() {
    quotes_are_bounded(Arc::new(SqliteBitreqStore::in_memory().await.unwrap())).await;
}

fn signed_transfer(k: &SecretKey, amount: u64) -> (String, String) {
    let t = BitTransfer {
        payer: "alice".into(),
        payer_pubkey: k.public_key(&Secp256k1::new()),
        payee_address: String::new(),
        payee_username: "shop".into(),
        amount: Sat(amount),
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64(),
        description: "http://merchant.test/report".into(),
    };
    let s = t.sign(k).unwrap();
    (s.transfer, s.authorization)
}

async fn paid_transfer(caching: Option<PaidCaching>) -> (Reply, Reply) {
    let mut cfg = BitreqConfig::new(Network::Regtest)
        .public_url("http://merchant.test")
        .onchain(OnChainConfig::derived(xpub()))
        .transfer(TransferConfig::new("shop"));
    if let Some(c) = caching {
        cfg = cfg.paid_caching(c);
    }
    let server = BitreqServer::new(cfg, dead_chain(), Arc::new(MemoryBitreqStore::new())).unwrap();
    let alice = SecretKey::from_slice(&[21; 32]).unwrap();
    server
        .open_account("alice", &alice.public_key(&Secp256k1::new()))
        .await
        .unwrap();
    server.credit("alice", Sat(PRICE), "dep-1").await.unwrap();
    let app = paid_app(&server);
    let challenge = send(&app, get_with("/report", &[])).await;
    let (t, a) = signed_transfer(&alice, PRICE);
    let paid = send(
        &app,
        get_with(
            "/report",
            &[
                ("Bitcoin-Transfer", t.as_str()),
                ("Authorization", a.as_str()),
            ],
        ),
    )
    .await;
    (challenge, paid)
}

#[tokio::test]
async fn paid_responses_are_not_cacheable_and_402s_vary_on_the_proof_headers() {
    let (challenge, paid) = paid_transfer(None).await;
    assert_eq!(challenge.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        challenge.header("cache-control").as_deref(),
        Some("no-store")
    );
    let vary = challenge.header("vary").unwrap().to_ascii_lowercase();
    for h in [
        "bitcoin-transaction",
        "bitcoin-transfer",
        "bitcoin-payment-channel-token",
        "authorization",
    ] {
        assert!(vary.contains(h), "{h} in {vary}");
    }
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text());
    assert_eq!(
        paid.header("cache-control").as_deref(),
        Some("private, no-store"),
        "the handler's public caching is overridden"
    );
    assert!(paid.header("vary").unwrap().contains("Bitcoin-Transfer"));
    // The operator's opt-in keeps the handler's Cache-Control.
    let (_, paid) = paid_transfer(Some(PaidCaching::HandlerDecides)).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text());
    assert_eq!(
        paid.header("cache-control").as_deref(),
        Some("public, max-age=600")
    );
}

/// `req` as if it came from `ip` over TCP (what axum's
/// `into_make_service_with_connect_info::<SocketAddr>()` inserts).
fn from_ip(mut req: Request<Body>, ip: &str) -> Request<Body> {
    let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

#[tokio::test]
async fn challenges_and_onchain_proofs_are_rate_limited_per_client_address() {
    use pay402_server::limit::RateLimit;
    let store = Arc::new(MemoryBitreqStore::new());
    let cfg = BitreqConfig::new(Network::Regtest)
        .public_url("http://merchant.test")
        .onchain(OnChainConfig::derived(xpub()))
        .transfer(TransferConfig::new("shop"))
        .challenge_rate_limit(RateLimit::per_period(2, Duration::from_secs(3_600)));
    let server = BitreqServer::new(cfg, dead_chain(), store.clone()).unwrap();
    let alice = SecretKey::from_slice(&[21; 32]).unwrap();
    server
        .open_account("alice", &alice.public_key(&Secp256k1::new()))
        .await
        .unwrap();
    server.credit("alice", Sat(PRICE), "dep-1").await.unwrap();
    let app = paid_app(&server);

    for _ in 0..2 {
        let r = send(&app, from_ip(get_with("/report", &[]), "192.0.2.7")).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
    }
    let limited = send(&app, from_ip(get_with("/report", &[]), "192.0.2.7")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limited.text().contains("\"rate_limited\""),
        "{}",
        limited.text()
    );
    assert!(limited.header("retry-after").is_some());
    assert_eq!(store.count_quotes().await.unwrap(), 2, "no quote for a 429");

    // A new on-chain proof from the limited client: refused before the
    // quote and chain lookups (the dead chain would otherwise answer 503).
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![],
        output: vec![bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(PRICE),
            script_pubkey: ScriptBuf::new(),
        }],
    };
    let tx_hex = bitcoin::consensus::encode::serialize_hex(&tx);
    let proof = send(
        &app,
        from_ip(
            get_with("/report", &[("Bitcoin-Transaction", tx_hex.as_str())]),
            "192.0.2.7",
        ),
    )
    .await;
    assert_eq!(
        proof.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        proof.text()
    );
    assert!(proof.text().contains("\"rate_limited\""));
    assert!(proof.header("retry-after").is_some());

    // Bit-transfers are not limited: the limited client still pays.
    let (t, a) = signed_transfer(&alice, PRICE);
    let paid = send(
        &app,
        from_ip(
            get_with(
                "/report",
                &[
                    ("Bitcoin-Transfer", t.as_str()),
                    ("Authorization", a.as_str()),
                ],
            ),
            "192.0.2.7",
        ),
    )
    .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text());

    // Another client has its own allowance.
    let other = send(&app, from_ip(get_with("/report", &[]), "192.0.2.8")).await;
    assert_eq!(other.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(store.count_quotes().await.unwrap(), 3);
}
