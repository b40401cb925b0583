//! The real `pay402 proxy` on a real PostgreSQL (`pay402-testkit` starts a
//! private cluster on loopback; a test that cannot start it fails).
//!
//! - the database goes away mid-run: paid requests that need it get 503
//!   problem+json `store_unavailable` and never reach the upstream; when it
//!   is back the same process serves them, with no restart;
//! - two proxy processes on one database, sharing nothing else: one x402
//!   payment submitted 20 times at once across both is served once and
//!   settled once on anvil; an L402 token revoked through one proxy's
//!   admin API is refused by the other within the stated bound.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Proxy, start_upstream, temp_dir};
use pay402_core::l402::{ChallengeSet, Credential};
use pay402_core::lightning::{LightningPayer, PayRequest};
use pay402_core::money::Msat;
use pay402_testkit::postgres::Postgres;

/// A proxy config on `store` (a `[store]` body) with JSON logs on port 0.
fn config_on(store: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nlog_format = \"json\"\nshutdown_grace_secs = 10\n\n\
         [store]\n{store}\n\n{rest}"
    )
}

/// An L402 service `paid` on the embedded simnet, and an admin API.
fn l402_service(upstream: std::net::SocketAddr, dir: &std::path::Path) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = {{ file = "{dir}/admin-token" }}

[lightning]
kind = "simnet-rest"
listen = "127.0.0.1:0"

[[services]]
name = "paid"
path = "^/paid/"
upstream = "http://{upstream}"
rails = ["l402"]
price = {{ sats = 25 }}
identity_header = "X-Pay402-Payment"
"#,
        dir = dir.display()
    )
}

const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef-admin";

/// The `[store]` body for database `url` of the test cluster, the
/// password read from `dir/pg-password`.
fn pg_store(url: &str, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("pg-password"), "not-on-the-command-line\n").unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    format!(
        "url = \"{url}\"\npassword = {{ file = \"{}/pg-password\" }}\n\
         max_connections = 4\nstatement_timeout_ms = 5000\nacquire_timeout_ms = 800",
        dir.display()
    )
}

/// Buys an L402 token for `url` through `proxy`'s simnet wallet without
/// using it: the `Authorization` value.
async fn buy(proxy: &Proxy, url: &str) -> String {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 402);
    let values: Vec<Vec<u8>> = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    let set = ChallengeSet::parse(values.iter().map(Vec::as_slice)).unwrap();
    let ch = set.l402().unwrap();
    let wallet = pay402_backends::lnd::LndRest::new(pay402_backends::lnd::LndConfig::new(
        format!("http://{}", proxy.simnet.unwrap()).parse().unwrap(),
        pay402_core::lightning::Network::Regtest,
    ))
    .unwrap();
    let paid = wallet
        .pay_invoice(&PayRequest::new(ch.invoice(), Msat(10_000)))
        .await
        .unwrap();
    Credential::new(ch.macaroon(), paid.preimage).to_header_value()
}

/// Waits until a proxy listens for revocation announcements on `db` (it
/// clears its key cache once then).
async fn listening(pg: &Postgres, db: &pay402_testkit::postgres::Database) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = pg
            .psql(
                db.name(),
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            )
            .unwrap();
        if n.trim() == "1" {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy listens for revocations"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_with(url: &str, authorization: &str) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .get(url)
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_answers_503_while_postgres_is_down_and_recovers_by_itself() {
    // A cluster of its own: this test stops it.
    let pg = Postgres::start().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let upstream = start_upstream().await;
    let dir = temp_dir("pg-outage");
    let toml = config_on(&pg_store(db.url(), &dir), &l402_service(upstream, &dir));
    let proxy = Proxy::start(&dir, &toml).await;
    let url = proxy.url("/paid/echo");
    listening(&pg, &db).await;

    // A token used before the outage (its key now cached), one bought but
    // not yet used (its first use writes to the store).
    let warm = buy(&proxy, &url).await;
    assert_eq!(get_with(&url, &warm).await.0, 200);
    assert_eq!(get_with(&url, &warm).await.0, 200);
    let cold = buy(&proxy, &url).await;

    pg.stop().unwrap();
    let (status, ct, body) = get_with(&url, &cold).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(ct, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["reason"], "store_unavailable", "{body}");
    assert!(!body.contains("headers"), "the upstream was not reached");
    // Unpaid requests still get their 402 (a challenge writes nothing).
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 402);
    // A warm token is verified from the key cache.
    assert_eq!(get_with(&url, &warm).await.0, 200);

    pg.restart().unwrap();
    // The same process, the same pool: the paid token is served now.
    let (status, _, body) = get_with(&url, &cold).await;
    assert_eq!(status, 200, "{body}");
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        echoed["headers"]["x-pay402-payment"]
            .as_str()
            .unwrap()
            .starts_with("l402:")
    );
    assert_eq!(get_with(&url, &cold).await.0, 200);
}

/// An upstream counting the requests it serves on `/paid/echo`.
async fn counting_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let app = axum::Router::new().route(
        "/paid/echo",
        axum::routing::get(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                "SECRET"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, served)
}

/// A forward HTTP proxy for the x402 client that relays unpaid requests
/// and answers a paid one itself (200, never forwarded): the client signs
/// a real payment for the proxy's offer, and the test keeps it unused.
async fn signing_only_forward_proxy() -> std::net::SocketAddr {
    let relay = reqwest::Client::builder().no_proxy().build().unwrap();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let relay = relay.clone();
        async move {
            if req.headers().contains_key("payment-signature") {
                return axum::response::Response::new(axum::body::Body::from("kept"));
            }
            let r = relay.get(req.uri().to_string()).send().await.unwrap();
            let mut out = axum::response::Response::builder().status(r.status().as_u16());
            for (k, v) in r.headers() {
                out = out.header(k.as_str(), v.as_bytes());
            }
            out.body(axum::body::Body::from(r.bytes().await.unwrap()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

const X402_PRICE: u64 = 10_000;

/// Keccak-256 of `Transfer(address,address,uint256)`.
const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

fn topic(address: alloy_primitives::Address) -> String {
    format!("0x{:0>64}", hex::encode(address))
}

/// Two proxy processes on one PostgreSQL database (each its own local
/// facilitator with the same settling key): one x402 payment submitted 20
/// times at once, 10 to each, is served once (the upstream sees one
/// request) and settled once: one `Transfer` from the payer to the payee on
/// anvil, the settling account's nonce up by one, the payee up by the
/// price. Every other submission is refused with a problem body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_submissions_of_one_x402_payment_across_two_proxies_are_served_and_settled_once() {
    use alloy_primitives::U256;
    use pay402_client::x402::{LocalSigner, X402Client};
    use pay402_core::x402::TokenAmount;
    use pay402_core::x402::evm::EvmAddress;
    use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS};

    let chain = Anvil::start().unwrap_or_else(|e| panic!("anvil must start: {e}"));
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let signer = Arc::new(LocalSigner::random());
    let payer = signer.address().0;
    usdc.mint(payer, U256::from(1_000_000u64)).unwrap();
    let payee = DEV_ACCOUNTS[3].address;
    let settler = DEV_ACCOUNTS[1].address;
    let payee_before = usdc.balance_of(payee).unwrap();
    let settler_nonce = chain.transaction_count(settler).unwrap();

    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let (upstream, served) = counting_upstream().await;
    let mut proxies = Vec::new();
    for name in ["x402-one", "x402-two"] {
        let dir = temp_dir(&format!("pg-{name}"));
        std::fs::write(dir.join("rpc_url"), chain.rpc_url()).unwrap();
        std::fs::write(
            dir.join("key"),
            format!("{}\n", DEV_ACCOUNTS[1].private_key),
        )
        .unwrap();
        let rest = format!(
            "{x402}\n[[services]]\nname = \"paid\"\nupstream = \"http://{upstream}\"\n\
             rails = [\"x402\"]\nprice = {{ x402_units = \"{X402_PRICE}\" }}\n",
            x402 = common::x402_anvil_sections(usdc.address, payee, &dir)
        );
        let toml = config_on(&pg_store(db.url(), &dir), &rest);
        proxies.push(Proxy::start(&dir, &toml).await);
    }

    // A real payment for the first proxy's offer, signed but not used.
    let capture = signing_only_forward_proxy().await;
    let client = X402Client::builder(signer.clone())
        .allow_asset(
            "eip155:31337",
            EvmAddress(usdc.address),
            TokenAmount::from_u64(X402_PRICE),
        )
        .http(
            reqwest::Client::builder()
                .proxy(reqwest::Proxy::http(format!("http://{capture}")).unwrap())
                .build()
                .unwrap(),
        )
        .build();
    let signed = client
        .get(proxies[0].url("/paid/echo"))
        .await
        .expect("the client signs a payment")
        .receipt
        .expect("a payment was made")
        .signed;
    let header = signed.header_value().to_str().unwrap().to_owned();
    assert_eq!(served.load(Ordering::SeqCst), 0);

    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let req = http
                .get(proxies[i % 2].url("/paid/echo"))
                .header(signed.header_name().as_str(), header.as_str());
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let ct = r
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned());
                (status, ct, r.text().await.unwrap())
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let (status, ct, body) = t.await.unwrap();
        if status == 200 {
            assert_eq!(body, "SECRET");
            ok += 1;
        } else {
            assert!(matches!(status, 402 | 409), "{status}: {body}");
            assert_eq!(ct.as_deref(), Some("application/problem+json"), "{body}");
            assert!(!body.contains("SECRET"));
            let p: serde_json::Value = serde_json::from_str(&body).unwrap();
            *refused
                .entry(p["reason"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(ok, 1, "served exactly once; refused: {refused:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1, "the upstream saw it once");
    for reason in refused.keys() {
        assert!(
            [
                "payment_in_progress",
                "invalid_exact_evm_nonce_already_used"
            ]
            .contains(&reason.as_str()),
            "{refused:?}"
        );
    }

    // Settled once on chain.
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(X402_PRICE)
    );
    assert_eq!(chain.transaction_count(settler).unwrap(), settler_nonce + 1);
    let logs = chain
        .rpc(
            "eth_getLogs",
            serde_json::json!([{
                "address": format!("{:#x}", usdc.address),
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [TRANSFER_TOPIC, topic(payer), topic(payee)],
            }]),
        )
        .unwrap();
    assert_eq!(logs.as_array().unwrap().len(), 1, "{logs}");
    // And later, on either proxy: refused.
    for p in &proxies {
        let r = http
            .get(p.url("/paid/echo"))
            .header(signed.header_name().as_str(), header.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 402);
    }
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

/// The stated bound for a revocation announced through PostgreSQL to reach
/// another instance (milliseconds on loopback; margin for a loaded CI).
const ANNOUNCED_BOUND: Duration = Duration::from_secs(2);

/// Two proxy processes on one PostgreSQL database: an L402 token bought
/// through one is served by both; revoked through the first one's admin
/// API, it is refused by the second within [`ANNOUNCED_BOUND`] (its key
/// cache keeps keys 60 s: the announcement, not the TTL, does it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l402_token_revoked_through_one_proxy_is_refused_by_the_other_within_the_bound() {
    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let upstream = start_upstream().await;
    let mut proxies = Vec::new();
    for name in ["l402-one", "l402-two"] {
        let dir = temp_dir(&format!("pg-{name}"));
        let toml = config_on(&pg_store(db.url(), &dir), &l402_service(upstream, &dir));
        proxies.push(Proxy::start(&dir, &toml).await);
    }
    let urls = [proxies[0].url("/paid/echo"), proxies[1].url("/paid/echo")];
    let token = buy(&proxies[0], &urls[0]).await;
    for url in &urls {
        let (status, _, body) = get_with(url, &token).await;
        assert_eq!(status, 200, "{body}");
    }
    let cred = Credential::parse(&token).unwrap();
    let mut buf = Vec::new();
    let id = pay402_core::l402::PresentedToken::decode(&cred, &mut buf)
        .unwrap()
        .token_id();

    let done = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/l402/tokens/{id}/revoke",
            proxies[0].admin.unwrap()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let revoked_at = Instant::now();
    assert_eq!(
        get_with(&urls[0], &token).await.0,
        402,
        "at once where revoked"
    );
    loop {
        let (status, _, body) = get_with(&urls[1], &token).await;
        if status == 402 {
            let p: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(p["reason"], "unknown_token", "{body}");
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() <= ANNOUNCED_BOUND,
            "still served {:?} after the revocation",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
