//! 21 BitRequests through the real binaries: a `pay402 proxy` service with
//! `rails = ["bitreq"]` (the merchant's ledger, its accounts opened and
//! credited through the admin API) paid by the real `pay402 fetch`, whose
//! wallet comes from its config file or from the environment.

mod common;

use common::{BIN, Proxy, config, start_upstream, temp_dir};
use std::path::Path;

const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef-bitreq";

/// A proxy selling `/echo` for 25 sat (or 1 US cent = 10 sat) by
/// bit-transfer to "shop", with the admin API.
async fn start_proxy(dir: &Path) -> Proxy {
    let upstream = start_upstream().await;
    let toml = config(&format!(
        r#"{ledger}
[rates]
usd_cents_per_btc = 10000000

[[services]]
name = "cents"
path = "^/paid/"
upstream = "http://{upstream}"
rails = ["bitreq"]
price = {{ usd_cents = 1 }}

[[services]]
name = "paid"
upstream = "http://{upstream}"
rails = ["bitreq"]
price = {{ sats = 25 }}
identity_header = "X-Paid-By"
"#,
        ledger = ledger_sections(dir)
    ));
    Proxy::start(dir, &toml).await
}

/// The admin listener (its token in `dir/admin-token`) and the
/// `[bitrequests]` ledger paying "shop".
fn ledger_sections(dir: &Path) -> String {
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = {{ file = "{dir}/admin-token" }}

[bitrequests]
network = "regtest"
transfer_username = "shop"
"#,
        dir = dir.display()
    )
}

/// The balance of `user` on the proxy's ledger.
async fn balance(proxy: &Proxy, user: &str) -> u64 {
    let admin = proxy.admin.unwrap();
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{admin}/v1/bitreq/accounts/{user}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["balance"].as_u64().expect("a balance")
}

#[tokio::test]
async fn fetch_pays_a_bitreq_service_of_the_proxy_from_its_config_file() {
    let dir = temp_dir("bitreq-file");
    let proxy = start_proxy(&dir).await;
    let seed = common::open_account(&proxy, ADMIN_TOKEN, &dir, "alice", 100).await;
    let fetch_config = dir.join("fetch.toml");
    std::fs::write(
        &fetch_config,
        format!(
            "max = \"30sat\"\n[bitrequests]\nseed_file = \"{}\"\nusername = \"alice\"\nnetwork = \"regtest\"\n",
            seed.display()
        ),
    )
    .unwrap();

    // Unpaid: the 402 carries the BitRequests offer.
    let unpaid = reqwest::get(proxy.url("/echo")).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    assert_eq!(unpaid.headers()["price"], "25");
    assert_eq!(unpaid.headers()["username"], "shop");
    // A ledger needs no chain: `/readyz` does not ask one.
    let ready = common::get_json(proxy.url("/readyz")).await;
    assert!(ready["bitcoin"].is_null(), "{ready}");

    let out = tokio::process::Command::new(BIN)
        .args(["fetch", "--json", "--config"])
        .arg(&fetch_config)
        .arg("-o")
        .arg(dir.join("body.json"))
        .arg(proxy.url("/echo"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipt: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(receipt["rail"], "bitreq");
    assert_eq!(receipt["offer"], "bitreq transfer");
    assert_eq!(receipt["amount"], "25 sat");
    assert_eq!(receipt["status"], 200);
    assert_eq!(balance(&proxy, "alice").await, 75);

    // The upstream saw neither the transfer nor its signature, and was told
    // what paid.
    let echoed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("body.json")).unwrap()).unwrap();
    let headers = echoed["headers"].as_object().unwrap();
    assert!(!headers.contains_key("bitcoin-transfer"), "{headers:?}");
    assert!(!headers.contains_key("authorization"), "{headers:?}");
    let paid_by = headers["x-paid-by"].as_str().unwrap();
    assert!(paid_by.starts_with("bitreq:transfer:"), "{paid_by}");

    // Counted as a BitRequests payment.
    let metrics = common::get_text(proxy.url("/metrics")).await;
    assert!(
        metrics.contains(
            r#"pay402_payments_total{service="paid",rail="bitreq",outcome="accepted"} 1"#
        ),
        "{metrics}"
    );
    let services: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/v1/services", proxy.admin.unwrap()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services["services"][1]["rails"][0], "bitreq", "{services}");
}

#[tokio::test]
async fn fetch_takes_its_bitreq_wallet_from_the_environment_and_caps_in_dollars() {
    let dir = temp_dir("bitreq-env");
    let proxy = start_proxy(&dir).await;
    let seed = common::open_account(&proxy, ADMIN_TOKEN, &dir, "bob", 50).await;
    let fetch_config = dir.join("fetch.toml");
    // Only the rate in the file: the wallet comes from the environment.
    std::fs::write(&fetch_config, "usd_cents_per_btc = 10000000\n").unwrap();
    let fetch = |max: &'static str| {
        let mut c = tokio::process::Command::new(BIN);
        c.args(["fetch", "--json", "--max", max, "--config"])
            .arg(&fetch_config)
            .arg(proxy.url("/paid/echo"))
            .env("PAY402_BITREQ_SEED_FILE", &seed)
            .env("PAY402_BITREQ_USERNAME", "bob")
            .env("PAY402_BITREQ_NETWORK", "regtest");
        c
    };

    // 1 cent = 10 sat is over a cap of 0.00 USD: exit 3, nothing paid.
    let out = fetch("0.00usd").output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(balance(&proxy, "bob").await, 50);

    // Under 0.05 USD: paid by bit-transfer from the environment's wallet.
    let out = fetch("0.05usd").output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let receipt: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(receipt["rail"], "bitreq");
    assert_eq!(receipt["amount"], "10 sat");
    assert_eq!(receipt["cost"], "1 US cents");
    assert_eq!(balance(&proxy, "bob").await, 40);

    // A malformed dollar amount is a usage error.
    let out = fetch("0.055usd").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid amount"));

    // `--rail l402` leaves the wallet unused: no rail it can pay.
    let out = fetch("0.05usd")
        .arg("--rail")
        .arg("l402")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(balance(&proxy, "bob").await, 40);
}

/// A signed bit-transfer of `amount` from `payer` (key `k`) to the shop
/// for `url`: the `Bitcoin-Transfer` and `Authorization` values.
fn signed_transfer(
    payer: &str,
    k: &pay402_server::bitreq::bitcoin::secp256k1::SecretKey,
    amount: u64,
    url: &str,
) -> (String, String) {
    use pay402_server::bitreq::bitcoin::secp256k1::Secp256k1;
    let t = pay402_core::bitreq::BitTransfer {
        payer: payer.into(),
        payer_pubkey: k.public_key(&Secp256k1::new()),
        payee_address: String::new(),
        payee_username: "shop".into(),
        amount: pay402_core::money::Sat(amount),
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64(),
        description: url.into(),
    };
    let s = t.sign(k).unwrap();
    (s.transfer, s.authorization)
}

/// Presents a bit-transfer of `amount` from mallory for `/echo`.
async fn present_transfer(
    proxy: &Proxy,
    k: &pay402_server::bitreq::bitcoin::secp256k1::SecretKey,
    amount: u64,
) -> reqwest::Response {
    let url = proxy.url("/echo");
    let (transfer, authorization) = signed_transfer("mallory", k, amount, &url);
    reqwest::Client::new()
        .get(&url)
        .header("bitcoin-transfer", transfer)
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pricer_prices_bitreq_each_payment_checked_against_the_current_price() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = temp_dir("bitreq-pricer");
    let upstream = start_upstream().await;
    let sats = std::sync::Arc::new(AtomicU64::new(30));
    let pricer = common::start_sats_pricer("priced", sats.clone()).await;
    // Not cached: every request asks the pricer, so its price moves at once.
    let toml = config(&format!(
        r#"{ledger}
{service}"#,
        ledger = ledger_sections(&dir),
        service = common::priced_bitreq_service(upstream, pricer),
    ));
    let proxy = Proxy::start(&dir, &toml).await;

    // The 402's BitRequests offer carries the pricer's price; a client
    // cannot set its own.
    let unpaid = reqwest::Client::new()
        .get(proxy.url("/echo"))
        .header("x-pay402-internal-price-msat", "1000")
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    assert_eq!(unpaid.headers()["price"], "30");
    assert_eq!(unpaid.headers()["username"], "shop");

    // The real `pay402 fetch` pays that price by bit-transfer and is served.
    let seed = common::open_account(&proxy, ADMIN_TOKEN, &dir, "alice", 100).await;
    let fetch_config = dir.join("fetch.toml");
    std::fs::write(
        &fetch_config,
        format!(
            "max = \"100sat\"\n[bitrequests]\nseed_file = \"{}\"\nusername = \"alice\"\nnetwork = \"regtest\"\n",
            seed.display()
        ),
    )
    .unwrap();
    let out = common::fetch(&fetch_config, &["--json", &proxy.url("/echo")]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {out:?}");
    let receipt: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(receipt["rail"], "bitreq", "{receipt}");
    assert_eq!(receipt["amount"], "30 sat", "{receipt}");
    assert_eq!(receipt["status"], 200, "{receipt}");
    assert_eq!(balance(&proxy, "alice").await, 70);

    // Mallory's account, with a key of the test's own.
    let k = pay402_server::bitreq::bitcoin::secp256k1::SecretKey::from_slice(&[41; 32]).unwrap();
    let public_key = k
        .public_key(&pay402_server::bitreq::bitcoin::secp256k1::Secp256k1::new())
        .to_string();
    common::open_account_for_key(&proxy, ADMIN_TOKEN, "mallory", &public_key, 100).await;

    // Below the price: refused with a fresh offer, nothing debited.
    let low = present_transfer(&proxy, &k, 29).await;
    assert_eq!(low.status(), 402);
    assert_eq!(low.headers()["price"], "30");
    let p: serde_json::Value = low.json().await.unwrap();
    assert_eq!(p["reason"], "incorrect_payment_amount", "{p}");
    assert_eq!(balance(&proxy, "mallory").await, 100);

    // The price rises between the 402 and the payment: a transfer signed
    // for the old price is refused the same way (nothing is taken) and the
    // answer offers the new price, which pays.
    sats.store(40, Ordering::SeqCst);
    let stale = present_transfer(&proxy, &k, 30).await;
    assert_eq!(stale.status(), 402);
    assert_eq!(stale.headers()["price"], "40");
    assert_eq!(balance(&proxy, "mallory").await, 100);
    let paid = present_transfer(&proxy, &k, 40).await;
    assert_eq!(paid.status(), 200);
    let echoed: serde_json::Value = paid.json().await.unwrap();
    let headers = echoed["headers"].as_object().unwrap();
    assert!(
        headers["x-paid-by"]
            .as_str()
            .unwrap()
            .starts_with("bitreq:transfer:")
    );
    assert!(
        !headers.contains_key("x-pay402-internal-price-msat"),
        "{headers:?}"
    );
    assert_eq!(balance(&proxy, "mallory").await, 60);

    // The pricer is down: 503, never free, even with a valid payment, and
    // nothing debited.
    sats.store(0, Ordering::SeqCst);
    let down = reqwest::get(proxy.url("/echo")).await.unwrap();
    assert_eq!(down.status(), 503);
    let p: serde_json::Value = down.json().await.unwrap();
    assert_eq!(p["reason"], "pricer_unavailable");
    let down = present_transfer(&proxy, &k, 40).await;
    assert_eq!(down.status(), 503);
    assert_eq!(balance(&proxy, "mallory").await, 60);
}
