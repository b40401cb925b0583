//! What an L402 token grants: the scope (route) it was bought on, at a price
//! up to what it paid, for a bounded time; and what an unpaid request costs
//! the server (no durable write). On simnet.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::routing::get;
use common::*;
use http::StatusCode;
use pay402_core::l402::{
    ChallengeSet, Credential, Identifier, Macaroon, PresentedToken, TokenId, caveat,
};
use pay402_core::lightning::{Network, Preimage};
use pay402_core::money::Msat;
use pay402_core::time::UnixTime;
use pay402_server::store::{MemoryStore, RootKeyStore, RootSecret, SqliteStore};
use pay402_server::{L402Config, L402Layer, PaidToken, Price};

fn split(auth: &str) -> (String, String) {
    let (m, p) = auth
        .strip_prefix("L402 ")
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    (m.to_owned(), p.to_owned())
}

fn token_id_of(auth: &str) -> TokenId {
    let cred = Credential::parse(auth).unwrap();
    let mut buf = Vec::new();
    PresentedToken::decode(&cred, &mut buf).unwrap().token_id()
}

fn challenge_macaroon(r: &Reply) -> Macaroon {
    let ch = r.challenges();
    let set = ChallengeSet::parse(ch.iter().map(|c| c.as_bytes())).unwrap();
    Macaroon::from_base64(set.l402().unwrap().macaroon()).unwrap()
}

fn two_routes(cheap: L402Layer, dear: L402Layer) -> Router {
    Router::new()
        .route(
            "/cheap",
            get(|PaidToken(_): PaidToken| async { "cheap" }).route_layer(cheap),
        )
        .route(
            "/dear",
            get(|PaidToken(_): PaidToken| async { "dear" }).route_layer(dear),
        )
}

#[tokio::test]
async fn token_bought_on_the_cheap_route_is_refused_on_the_dear_route() {
    let net = pay402_backends::simnet::SimNet::new(Network::Regtest);
    let merchant = net.add_node("m", Msat(0));
    let payer = net.add_node("p", Msat(1_000_000_000));
    let layer = L402Layer::new(
        L402Config::new("api"),
        Arc::new(merchant.clone()),
        Arc::new(MemoryStore::new()),
    );
    let app = two_routes(
        layer.with_price(Price::sats(1)),
        layer.with_price(Price::sats(1_000)),
    );
    let auth = pay(&payer, &send(&app, get_req("/cheap", &[])).await).await;
    // Accepted on its own route, again and again (cached and uncached).
    for _ in 0..2 {
        let r = send(&app, get_req("/cheap", &[&auth])).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = send(&app, get_req("/dear", &[&auth])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "wrong_route");
    assert_eq!(r.challenges().len(), 1, "a fresh challenge for /dear");
    assert_eq!(merchant.balance(), Msat(1_000), "only the 1 sat was paid");
}

#[tokio::test]
async fn a_shared_scope_still_refuses_a_price_above_what_was_paid() {
    let net = pay402_backends::simnet::SimNet::new(Network::Regtest);
    let merchant = net.add_node("m", Msat(0));
    let payer = net.add_node("p", Msat(1_000_000_000));
    let layer = L402Layer::new(
        L402Config::new("api"),
        Arc::new(merchant),
        Arc::new(MemoryStore::new()),
    )
    .with_scope("reports");
    let app = two_routes(
        layer.with_price(Price::sats(1)),
        layer.with_price(Price::sats(1_000)),
    );
    let cheap = pay(&payer, &send(&app, get_req("/cheap", &[])).await).await;
    assert_eq!(
        send(&app, get_req("/cheap", &[&cheap])).await.status,
        StatusCode::OK
    );
    let r = send(&app, get_req("/dear", &[&cheap])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "price_exceeds_paid");
    // A token bought at the dear price opens both routes of the scope.
    let dear = pay(&payer, &r).await;
    for path in ["/dear", "/cheap"] {
        assert_eq!(
            send(&app, get_req(path, &[&dear])).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn dynamic_price_token_is_refused_at_a_higher_price_and_accepted_at_equal_or_lower() {
    let net = pay402_backends::simnet::SimNet::new(Network::Regtest);
    let merchant = net.add_node("m", Msat(0));
    let payer = net.add_node("p", Msat(1_000_000_000));
    let layer = L402Layer::new(
        L402Config::new("api"),
        Arc::new(merchant),
        Arc::new(MemoryStore::new()),
    );
    let price = Price::dynamic(|req| async move {
        let n: u64 = req.uri.query()?.strip_prefix("n=")?.parse().ok()?;
        Some(Msat(n * 1000))
    });
    let app = Router::new().route(
        "/q",
        get(|PaidToken(_): PaidToken| async { "ok" }).route_layer(layer.with_price(price)),
    );
    let auth = pay(&payer, &send(&app, get_req("/q?n=7", &[])).await).await;
    for q in ["/q?n=7", "/q?n=3", "/q?n=7"] {
        assert_eq!(
            send(&app, get_req(q, &[&auth])).await.status,
            StatusCode::OK,
            "{q}"
        );
    }
    let r = send(&app, get_req("/q?n=8", &[&auth])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "price_exceeds_paid");
}

#[tokio::test]
async fn an_attenuated_token_cannot_raise_what_it_paid_or_change_its_route() {
    let env = env(L402Config::new("api"));
    let auth = buy(&env, "/paid").await;
    let (m, p) = split(&auth);
    for (cav, reason) in [
        ("api_paid_msat=18446744073709551615", "caveat_escalation"),
        ("api_scope=/echo", "caveat_escalation"),
    ] {
        let mut mac = Macaroon::from_base64(&m).unwrap();
        mac.add_first_party_caveat(cav);
        let forged = format!("L402 {}:{p}", mac.to_base64());
        let r = send(&env.app, get_req("/paid", &[&forged])).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{cav}");
        assert_eq!(r.reason(), reason, "{cav}");
    }
    // Lowering what it paid below the price is allowed, and then refused here.
    let mut mac = Macaroon::from_base64(&m).unwrap();
    mac.add_first_party_caveat("api_paid_msat=1");
    let lowered = format!("L402 {}:{p}", mac.to_base64());
    assert_eq!(
        send(&env.app, get_req("/paid", &[&lowered])).await.reason(),
        "price_exceeds_paid"
    );
}

#[tokio::test]
async fn tokens_are_minted_with_scope_price_and_a_24_hour_lifetime_by_default() {
    let env = env(L402Config::new("api"));
    let r = send(&env.app, get_req("/paid", &[])).await;
    let mac = challenge_macaroon(&r);
    let caveats: Vec<String> = mac
        .caveats()
        .iter()
        .map(|c| String::from_utf8(c.clone()).unwrap())
        .collect();
    assert!(
        caveats.contains(&"api_scope=/paid".to_owned()),
        "{caveats:?}"
    );
    assert!(
        caveats.contains(&format!("api_paid_msat={}", PRICE_SAT * 1000)),
        "{caveats:?}"
    );
    let now = UnixTime::from_system(SystemTime::now()).0;
    let until: u64 = caveats
        .iter()
        .find_map(|c| c.strip_prefix("api_valid_until="))
        .expect("a valid_until caveat by default")
        .parse()
        .unwrap();
    assert!(
        (now + 86_400 - 60..=now + 86_400 + 60).contains(&until),
        "valid until {until}, now {now}"
    );
    // Opting out is explicit.
    let env = env_with_no_expiry();
    let mac = challenge_macaroon(&send(&env.app, get_req("/paid", &[])).await);
    assert!(
        !mac.caveats()
            .iter()
            .any(|c| c.starts_with(b"api_valid_until="))
    );
}

fn env_with_no_expiry() -> Env {
    env(L402Config::new("api").no_token_expiry())
}

#[tokio::test]
async fn unpaid_requests_write_nothing_and_the_first_paid_use_records_the_payment_hash() {
    let store = Arc::new(MemoryStore::new());
    let env = env_with(L402Config::new("api"), store.clone());
    for _ in 0..20 {
        let r = send(&env.app, get_req("/paid", &[])).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    }
    assert_eq!(store.len(), 0, "an unpaid request stores nothing");
    let auth = buy(&env, "/paid").await;
    assert_eq!(store.len(), 0);
    assert_eq!(
        send(&env.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    let id = token_id_of(&auth);
    let (_, pre) = split(&auth);
    let hash = Preimage::from_hex(&pre).unwrap().payment_hash();
    let rec = store
        .get(&id)
        .await
        .unwrap()
        .expect("recorded at first use");
    assert_eq!(rec.payment_hash, Some(hash));
    assert!(!rec.revoked);
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn sqlite_store_gets_no_row_for_unpaid_requests() {
    let dir = std::env::temp_dir().join(format!("pay402-grants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.sqlite");
    let _ = std::fs::remove_file(&path);
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let env = env_with(L402Config::new("api"), store.clone());
    let mut ids = Vec::new();
    for _ in 0..10 {
        let r = send(&env.app, get_req("/paid", &[])).await;
        let mac = challenge_macaroon(&r);
        ids.push(Identifier::decode(mac.identifier()).unwrap().token_id);
    }
    for id in &ids {
        assert!(store.get(id).await.unwrap().is_none());
    }
    // The secret survives a restart: a token bought before is accepted after.
    let auth = buy(&env, "/paid").await;
    drop(env);
    let store2 = Arc::new(SqliteStore::open(&path).await.unwrap());
    let env2 = env_with(L402Config::new("api"), store2.clone());
    assert_eq!(
        send(&env2.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    assert!(store2.get(&token_id_of(&auth)).await.unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A token minted with the store's secret for `token_id` and `preimage`.
fn mint_with(secret: &RootSecret, token_id: TokenId, preimage: &Preimage) -> String {
    let root = secret.root_key(&token_id);
    let id = Identifier::new(preimage.payment_hash(), token_id);
    let mut mac = Macaroon::new(&root, Some("lsat"), &id.encode());
    mac.add_first_party_caveat(caveat::build::services("api", 0));
    mac.add_first_party_caveat(caveat::build::scope("api", "/paid"));
    mac.add_first_party_caveat(caveat::build::paid("api", Msat(PRICE_SAT * 1000)));
    Credential::new(&mac.to_base64(), preimage.clone()).to_header_value()
}

#[tokio::test]
async fn a_token_whose_payment_hash_differs_from_its_record_is_refused() {
    let secret = [0x33; 32];
    let store = Arc::new(MemoryStore::with_secret(RootSecret::from_bytes(secret)));
    let env = env_with(L402Config::new("api"), store.clone());
    let id = TokenId([0x44; 32]);
    let first = Preimage::from_bytes([1; 32]);
    let other = Preimage::from_bytes([2; 32]);
    // The token id was first used with one payment hash ...
    let auth = mint_with(&RootSecret::from_bytes(secret), id, &first);
    assert_eq!(
        send(&env.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    // ... the same id with another hash (and a valid signature) is refused.
    let fresh_env = env_with(L402Config::new("api"), store.clone());
    let reused = mint_with(&RootSecret::from_bytes(secret), id, &other);
    let r = send(&fresh_env.app, get_req("/paid", &[&reused])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "payment_hash_mismatch");
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().payment_hash,
        Some(first.payment_hash())
    );
    // A token minted under another secret does not verify at all.
    let stranger = mint_with(&RootSecret::from_bytes([0x55; 32]), id, &first);
    let r = send(&fresh_env.app, get_req("/paid", &[&stranger])).await;
    assert_eq!(r.reason(), "invalid_signature");
}

#[tokio::test]
async fn revocation_before_and_after_first_use_is_a_record_that_refuses_the_token() {
    let store = Arc::new(MemoryStore::new());
    let env = env_with(L402Config::new("api"), store.clone());
    // Revoked before it was ever used.
    let early = buy(&env, "/paid").await;
    assert!(!env.layer.revoke(&token_id_of(&early)).await.unwrap());
    let r = send(&env.app, get_req("/paid", &[&early])).await;
    assert_eq!(r.reason(), "unknown_token");
    // Revoked after use (and while its key is cached).
    let late = buy(&env, "/paid").await;
    assert_eq!(
        send(&env.app, get_req("/paid", &[&late])).await.status,
        StatusCode::OK
    );
    assert!(env.layer.revoke(&token_id_of(&late)).await.unwrap());
    let r = send(&env.app, get_req("/paid", &[&late])).await;
    assert_eq!(r.reason(), "unknown_token");
    assert!(
        store
            .get(&token_id_of(&late))
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

/// A store that counts the calls the layer makes.
struct CountingStore {
    inner: MemoryStore,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl RootKeyStore for CountingStore {
    fn secret(&self) -> &RootSecret {
        self.inner.secret()
    }
    async fn get(
        &self,
        id: &TokenId,
    ) -> Result<Option<pay402_server::store::TokenRecord>, pay402_server::store::StoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(id).await
    }
    async fn record_use(
        &self,
        id: TokenId,
        hash: &pay402_core::lightning::PaymentHash,
    ) -> Result<pay402_server::store::TokenRecord, pay402_server::store::StoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.record_use(id, hash).await
    }
    async fn revoke(&self, id: &TokenId) -> Result<bool, pay402_server::store::StoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.revoke(id).await
    }
}

#[tokio::test]
async fn unpaid_and_invalid_requests_make_no_store_call() {
    let store = Arc::new(CountingStore {
        inner: MemoryStore::new(),
        calls: Default::default(),
    });
    let env = env_with(L402Config::new("api"), store.clone());
    let calls = || store.calls.load(std::sync::atomic::Ordering::SeqCst);
    let r = send(&env.app, get_req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    let auth = pay(&env.payer, &r).await;
    let (m, p) = split(&auth);
    let mut tampered = Macaroon::from_base64(&m).unwrap().encode_v2();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let bad = [
        format!("L402 {m}:{}", "00".repeat(32)), // unpaid preimage
        format!("L402 {}:{p}", pay402_core::b64::encode_std(&tampered)), // bad signature
        format!("L402 !!!:{p}"),                 // malformed
    ];
    for b in &bad {
        let r = send(&env.app, get_req("/paid", &[b])).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{b}");
    }
    // A valid token on the wrong route is refused by its caveats, before any
    // store call.
    let post = http::Request::post("/echo")
        .header(http::header::AUTHORIZATION, &auth)
        .body(axum::body::Body::empty())
        .unwrap();
    let r = send(&env.app, post).await;
    assert_eq!(r.reason(), "wrong_route");
    assert_eq!(calls(), 0, "no store call before a token is valid");
    assert_eq!(
        send(&env.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    assert_eq!(calls(), 1, "one record at first paid use");
    for _ in 0..3 {
        send(&env.app, get_req("/paid", &[&auth])).await;
    }
    assert_eq!(calls(), 1, "warm tokens are served from the key cache");
}

fn path_app(cfg: L402Config) -> (Router, pay402_backends::simnet::SimNode) {
    let net = pay402_backends::simnet::SimNet::new(Network::Regtest);
    let merchant = net.add_node("m", Msat(0));
    let layer = L402Layer::new(
        cfg,
        Arc::new(merchant.clone()),
        Arc::new(MemoryStore::new()),
    )
    .with_price(Price::sats(1));
    let app = Router::new()
        .route("/public/{*rest}", get(|| async { "public" }))
        .route("/publicity", get(|| async { "publicity" }))
        .route("/paid/{*rest}", get(|| async { "paid" }))
        .route("/health", get(|| async { "health" }))
        .route("/{*any}", get(|| async { "any" }))
        .layer(layer);
    (app, merchant)
}

#[tokio::test]
async fn free_paths_match_whole_normalised_segments() {
    let (app, _) = path_app(
        L402Config::new("api")
            .free_path("/public*")
            .free_path("/health"),
    );
    for path in ["/public/a.css", "/public/x/y", "/health"] {
        let r = send(&app, get_req(path, &[])).await;
        assert_eq!(r.status, StatusCode::OK, "{path} is free");
    }
    // Equivalent spellings of a free path stay free.
    for path in ["//health", "/health/", "/%68ealth", "/public//a"] {
        let r = send(&app, get_req(path, &[])).await;
        assert_eq!(r.status, StatusCode::OK, "{path} is free");
    }
    // Not the same segment, or dot segments and encoded separators: priced.
    for path in [
        "/publicity",
        "/public/../paid/x",
        "/public/%2e%2e/paid/x",
        "/public%2F..%2Fpaid",
        "/paid/../public/x",
        "/public/./a",
        "/healthz",
    ] {
        let r = send(&app, get_req(path, &[])).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{path} is priced");
    }
}

#[tokio::test]
async fn challenges_are_rate_limited_per_client_address_over_tcp() {
    use pay402_server::limit::RateLimit;
    let net = pay402_backends::simnet::SimNet::new(Network::Regtest);
    let merchant = net.add_node("m", Msat(0));
    let payer = net.add_node("p", Msat(1_000_000_000));
    let layer = L402Layer::new(
        L402Config::new("api").challenge_rate_limit(RateLimit::per_period(
            3,
            std::time::Duration::from_secs(3_600),
        )),
        Arc::new(merchant.clone()),
        Arc::new(MemoryStore::new()),
    );
    let app = Router::new().route(
        "/paid",
        get(|PaidToken(_): PaidToken| async { "paid" })
            .route_layer(layer.with_price(Price::sats(1))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/paid");
    let mut first = None;
    for _ in 0..3 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 402);
        let reply = Reply {
            status: StatusCode::PAYMENT_REQUIRED,
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap(),
        };
        first.get_or_insert(reply);
    }
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "rate_limited");
    assert_eq!(merchant.invoices_created(), 3, "no invoice for a 429");
    // Paying a challenge already obtained still works: paid requests are
    // never limited.
    let auth = pay(&payer, &first.unwrap()).await;
    for _ in 0..5 {
        let r = http
            .get(&url)
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    server.abort();
}
