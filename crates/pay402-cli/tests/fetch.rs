//! `pay402 fetch` through the real binary, paying an L402 server (the
//! server's `L402Layer`, invoices from a simnet merchant node) with the
//! simnet wallet behind its LND REST face.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use common::{BIN, fetch, temp_dir};
use pay402_backends::simnet::{SimNet, SimNode};
use pay402_core::lightning::Network;
use pay402_core::money::{Msat, Sat};
use pay402_server::store::MemoryStore;
use pay402_server::{L402Config, L402Layer, Price};

/// An L402 API (`/paid`, 25 sat; `/dear`, 1500 sat; `/broken`, 10 sat,
/// answering 500; `/big`, 5 sat, 8 MiB;
/// `/echo`, 3 sat, echoing method, `X-Test`, `Content-Type` and body; `/free`) and the simnet wallet's REST face.
struct Server {
    api: SocketAddr,
    wallet: SimNode,
    rest: SocketAddr,
}

async fn start_server() -> Server {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let wallet = net.add_node("wallet", Sat(1_000_000).to_msat().unwrap());
    let rest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest = rest_listener.local_addr().unwrap();
    tokio::spawn(pay402_backends::simnet::rest::serve(
        wallet.clone(),
        rest_listener,
    ));
    let paywall = L402Layer::new(
        L402Config::new("fetch-test"),
        Arc::new(merchant),
        Arc::new(MemoryStore::new()),
    );
    let app = Router::new()
        .route(
            "/paid",
            get(|| async { "the paid body\n" }).route_layer(paywall.with_price(Price::sats(25))),
        )
        .route(
            "/dear",
            get(|| async { "dear\n" }).route_layer(paywall.with_price(Price::sats(1_500))),
        )
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down\n") })
                .route_layer(paywall.with_price(Price::sats(10))),
        )
        .route(
            "/big",
            get(|| async { common::big_body() }).route_layer(paywall.with_price(Price::sats(5))),
        )
        .route(
            "/echo",
            get(echo)
                .post(echo)
                .put(echo)
                .route_layer(paywall.with_price(Price::sats(3))),
        )
        .route("/free", get(|| async { "free\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { api, wallet, rest }
}

/// Echoes the method, `X-Test`, `Content-Type` and the body.
async fn echo(method: axum::http::Method, headers: axum::http::HeaderMap, body: String) -> String {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    format!("{method} {} {} {body}", h("x-test"), h("content-type"))
}

/// Writes a config paying through `rest` and returns its path.
fn write_config(dir: &Path, rest: SocketAddr) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!("[lightning]\nkind = \"simnet-rest\"\nurl = \"http://{rest}\"\n"),
    )
    .unwrap();
    path
}

/// Runs `pay402 tokens args... --config <config>`.
async fn tokens(config: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .arg("tokens")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await
        .expect("the pay402 binary runs")
}

#[tokio::test]
async fn pays_once_prints_the_body_and_reuses_the_token_on_the_next_run() {
    let server = start_server().await;
    let dir = temp_dir("fetch-pay");
    let config = write_config(&dir, server.rest);
    let url = format!("http://{}/paid", server.api);
    let before = server.wallet.balance();

    let first = fetch(&config, &[&url]).await;
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&first.stdout), "the paid body\n");
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("paid 25000 msat"),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(server.wallet.payments_sent(), 1);
    assert!(dir.join("journal.sqlite").exists());

    // A second process, the same journal: the token is reused, nothing paid.
    let second = fetch(&config, &["-i", &url]).await;
    assert_eq!(second.status.code(), Some(0));
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nthe paid body\n"), "{out}");
    assert!(String::from_utf8_lossy(&second.stderr).contains("token reused"));
    assert_eq!(server.wallet.payments_sent(), 1, "the second run paid");
    // The journal lists the one payment (without the preimage).
    let out = tokio::process::Command::new(BIN)
        .args(["receipts", "--json", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["state"], "served", "{text}");
    assert_eq!(lines[0]["rail"], "l402", "{text}");
    assert_eq!(lines[0]["target"], "/paid", "{text}");
    assert_eq!(lines[0]["origin"], format!("http://{}", server.api));
    assert!(lines[0].get("proof").is_none());

    assert_eq!(
        before.0 - server.wallet.balance().0,
        25_000,
        "the wallet paid the price once (simnet charges no fee)"
    );
}

#[tokio::test]
async fn json_receipt_parses_and_output_goes_to_a_file() {
    let server = start_server().await;
    let dir = temp_dir("fetch-json");
    let config = write_config(&dir, server.rest);
    let url = format!("http://{}/paid", server.api);
    let body = dir.join("body.txt");
    let out = fetch(
        &config,
        &["--json", "-s", "-o", body.to_str().unwrap(), &url],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "-s prints nothing");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["paid"], true, "{v}");
    assert_eq!(v["rail"], "l402", "{v}");
    assert_eq!(v["amount_value"], "25000", "{v}");
    assert_eq!(v["unit"], "msat", "{v}");
    assert_eq!(v["origin"], format!("http://{}", server.api), "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["proof_id"].as_str().unwrap().len(), 64, "{v}");
    assert!(v["time"].as_u64().unwrap() > 1_700_000_000, "{v}");
    assert_eq!(std::fs::read_to_string(&body).unwrap(), "the paid body\n");
    assert_eq!(server.wallet.payments_sent(), 1);
}

#[tokio::test]
async fn max_below_the_price_exits_over_budget_and_pays_nothing() {
    let server = start_server().await;
    let dir = temp_dir("fetch-max");
    let config = write_config(&dir, server.rest);
    let url = format!("http://{}/paid", server.api);
    let out = fetch(&config, &["--max", "24sat", &url]).await;
    assert_eq!(out.status.code(), Some(3), "the over-budget exit code");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(price_exceeds_maximum)"));
    assert_eq!(server.wallet.payments_sent(), 0);

    // With --json the refusal is JSON too.
    let out = fetch(&config, &["--json", "--max", "24sat", &url]).await;
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit"], 3, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no_payable_offer"),
        "{v}"
    );
    assert_eq!(server.wallet.payments_sent(), 0);

    // Exactly the price is within the cap.
    let out = fetch(&config, &["--max", "25000msat", &url]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(server.wallet.payments_sent(), 1);

    // A cap above the L402 client's default (1000 sat) is the cap.
    let dear = format!("http://{}/dear", server.api);
    let out = fetch(&config, &["--max", "1499sat", &dear]).await;
    assert_eq!(out.status.code(), Some(3));
    let out = fetch(&config, &["--max", "1500sat", &dear]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "dear\n");
    assert_eq!(server.wallet.payments_sent(), 2);

    // Not an integer with a unit: a usage error.
    let out = fetch(&config, &["--max", "0.5sat", &url]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn no_means_for_the_rail_exits_no_rail() {
    let server = start_server().await;
    let dir = temp_dir("fetch-norail");
    let config = dir.join("config.toml");
    std::fs::write(&config, "max = \"100sat\"\n").unwrap();
    let out = fetch(&config, &[&format!("http://{}/paid", server.api)]).await;
    assert_eq!(out.status.code(), Some(4), "the no-rail exit code");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rail"));
    assert_eq!(server.wallet.payments_sent(), 0);
}

#[tokio::test]
async fn quote_prints_the_offers_and_pays_nothing() {
    let server = start_server().await;
    let dir = temp_dir("fetch-quote");
    let config = write_config(&dir, server.rest);
    let url = format!("http://{}/paid", server.api);
    let out = fetch(&config, &["--quote", &url]).await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("402 Payment Required: 1 offer(s)"), "{text}");
    assert!(text.contains("would pay 25000 msat with l402"), "{text}");

    let out = fetch(&config, &["--quote", "--json", &url]).await;
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], 402, "{v}");
    assert_eq!(v["offers"][0]["rail"], "l402", "{v}");
    assert_eq!(v["would_pay"]["amount"], "25000 msat", "{v}");

    // Over the cap: nothing it would pay, the over-budget code.
    let out = fetch(&config, &["--quote", "--max", "1sat", &url]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("would pay nothing"));
    assert_eq!(server.wallet.payments_sent(), 0);
    assert!(
        !dir.join("journal.sqlite").exists(),
        "a quote opens no journal"
    );
}

#[tokio::test]
async fn free_urls_are_fetched_without_paying() {
    let server = start_server().await;
    let dir = temp_dir("fetch-free");
    let config = write_config(&dir, server.rest);
    let out = fetch(&config, &[&format!("http://{}/free", server.api)]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "free\n");
    assert_eq!(server.wallet.payments_sent(), 0);
}

#[tokio::test]
async fn a_server_error_after_paying_has_its_own_exit_code() {
    let server = start_server().await;
    let dir = temp_dir("fetch-broken");
    let config = write_config(&dir, server.rest);
    let out = fetch(&config, &[&format!("http://{}/broken", server.api)]).await;
    assert_eq!(
        out.status.code(),
        Some(6),
        "the server-error-after-paying code"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("server_error_after_payment"));
    assert_eq!(server.wallet.payments_sent(), 1);
}

#[tokio::test]
async fn a_large_paid_body_is_written_to_the_output_file_whole() {
    let server = start_server().await;
    let dir = temp_dir("fetch-big");
    let config = write_config(&dir, server.rest);
    let file = dir.join("big.bin");
    let out = fetch(
        &config,
        &[
            "--json",
            "-o",
            file.to_str().unwrap(),
            &format!("http://{}/big", server.api),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["body_bytes"], 8 * 1024 * 1024, "{v}");
    assert!(std::fs::read(&file).unwrap() == common::big_body());
    assert_eq!(server.wallet.payments_sent(), 1);
}

#[tokio::test]
async fn tokens_are_listed_without_their_secret_and_rm_forgets_them() {
    let server = start_server().await;
    let dir = temp_dir("fetch-tokens");
    let config = write_config(&dir, server.rest);
    let url = format!("http://{}/paid", server.api);
    let origin = format!("http://{}", server.api);
    assert_eq!(fetch(&config, &[&url]).await.status.code(), Some(0));

    let out = tokens(&config, &["--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let listed: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(listed["origin"], origin, "{text}");
    assert_eq!(listed["rail"], "l402", "{text}");
    assert!(!text.contains("L402 "), "the secret was printed: {text}");

    let out = tokens(&config, &["rm", &origin]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "removed 1 token(s)\n");
    assert!(tokens(&config, &[]).await.stdout.is_empty());
    // Forgotten: the next fetch pays again.
    assert_eq!(fetch(&config, &[&url]).await.status.code(), Some(0));
    assert_eq!(server.wallet.payments_sent(), 2);
    assert_eq!(tokens(&config, &["bad"]).await.status.code(), Some(2));
}

/// x402: `pay402 fetch` with an EVM key file pays a `pay402 proxy` whose
/// local facilitator settles on anvil with Circle's USDC; the payee's
/// balance shows the one payment. Needs anvil (installed by
/// `pay402_testkit` on first use); fails loudly when it cannot start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_x402_on_anvil_with_an_evm_key_file() {
    use alloy_primitives::U256;
    use pay402_client::x402::LocalSigner;
    use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS};
    const PRICE: u64 = 10_000; // 1 cent in USDC base units

    let chain =
        Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"));
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let key = DEV_ACCOUNTS[4].private_key.to_string();
    let payer = LocalSigner::from_hex(&key).unwrap().address().0;
    usdc.mint(payer, U256::from(1_000_000u64)).expect("mint");
    let payee = DEV_ACCOUNTS[3].address;
    let payee_before = usdc.balance_of(payee).unwrap();

    let dir = temp_dir("fetch-x402");
    std::fs::write(dir.join("rpc_url"), chain.rpc_url()).unwrap();
    std::fs::write(dir.join("key"), DEV_ACCOUNTS[1].private_key.to_string()).unwrap();
    let upstream = common::start_upstream().await;
    let proxy = common::Proxy::start(
        &dir,
        &common::config(&format!(
            r#"{x402}
[[services]]
name = "x402"
upstream = "http://{upstream}"
rails = ["x402"]
price = {{ x402_units = "{PRICE}" }}
"#,
            x402 = common::x402_anvil_sections(usdc.address, payee, &dir),
        )),
    )
    .await;

    let client_dir = dir.join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    std::fs::write(client_dir.join("evm.key"), &key).unwrap();
    let config = client_dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "max = \"5usdcents\"\n[x402]\nevm_key_file = \"{}\"\n[[x402.tokens]]\nnetwork = \"eip155:31337\"\nasset = \"{}\"\ndecimals = 6\nmax_units = 100000\n",
            client_dir.join("evm.key").display(),
            usdc.address
        ),
    )
    .unwrap();
    let url = proxy.url("/echo");

    // Under the price: over budget, nothing moves.
    let out = fetch(&config, &["--max", "0usdcents", &url]).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(usdc.balance_of(payee).unwrap(), payee_before);

    let out = fetch(&config, &["--json", &url]).await;
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["paid"], true, "{v}");
    assert_eq!(v["rail"], "x402", "{v}");
    assert_eq!(v["amount_value"], PRICE.to_string(), "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(PRICE),
        "settled on chain once"
    );
}

#[tokio::test]
async fn method_headers_and_a_body_from_a_file_reach_the_server_on_the_paid_request() {
    let server = start_server().await;
    let dir = temp_dir("fetch-post");
    let config = write_config(&dir, server.rest);
    let url = format!("http://{}/echo", server.api);
    let data = dir.join("data.json");
    std::fs::write(&data, "{\"q\":1}").unwrap();
    let at = format!("@{}", data.display());
    let out = fetch(
        &config,
        &[
            "-X",
            "PUT",
            "-H",
            "X-Test: yes",
            "-H",
            "Content-Type: application/json",
            "-d",
            &at,
            &url,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "PUT yes application/json {\"q\":1}"
    );
    // -d alone: POST, form-encoded as curl.
    let out = fetch(&config, &["-d", "a=1", &url]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "POST - application/x-www-form-urlencoded a=1"
    );
    // A malformed header is a usage error, before any request.
    let out = fetch(&config, &["-H", "no colon", &url]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(server.wallet.payments_sent(), 1, "one token for the origin");
}

#[tokio::test]
async fn the_daily_cap_holds_across_runs() {
    let a = start_server().await;
    let b = start_server().await;
    let dir = temp_dir("fetch-daily");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "max_per_day = \"30sat\"\n[lightning]\nkind = \"simnet-rest\"\nurl = \"http://{}\"\n",
            a.rest
        ),
    )
    .unwrap();
    let out = fetch(&config, &[&format!("http://{}/paid", a.api)]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(a.wallet.payments_sent(), 1);
    // Another origin, another process: 25 more would pass 30 sat a day.
    let out = fetch(&config, &[&format!("http://{}/paid", b.api)]).await;
    assert_eq!(out.status.code(), Some(3), "the over-budget exit code");
    assert!(String::from_utf8_lossy(&out.stderr).contains("total_budget_exhausted"));
    assert_eq!(a.wallet.payments_sent(), 1);
}
