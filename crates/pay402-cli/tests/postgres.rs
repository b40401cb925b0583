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

    // A token used before the outage (its key now cached), one bought but
    // not yet used (its first use writes to the store).
    let warm = buy(&proxy, &url).await;
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
