//! Both rails on one service of the real `pay402` binary: x402 settled on
//! anvil with Circle's real USDC by the proxy's local facilitator, and L402
//! over simnet. Needs anvil (installed from npm by `pay402_testkit` on first
//! use); fails loudly when it cannot start.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::U256;
use common::{Proxy, config, start_upstream, temp_dir};
use pay402_client::x402::{LocalSigner, X402Client};
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION};

const PRICE: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_service_takes_x402_on_anvil_and_l402_on_simnet() {
    let chain =
        Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"));
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let signer = Arc::new(LocalSigner::random());
    let payer = signer.address().0;
    usdc.mint(payer, U256::from(1_000_000u64)).expect("mint");
    let payee = DEV_ACCOUNTS[3].address;
    let payee_before = usdc.balance_of(payee).unwrap();

    let upstream = start_upstream().await;
    let dir = temp_dir("anvil-x402");
    // Secrets from files, never the command line.
    std::fs::write(dir.join("rpc_url"), chain.rpc_url()).unwrap();
    std::fs::write(
        dir.join("key"),
        format!("{}\n", DEV_ACCOUNTS[1].private_key),
    )
    .unwrap();
    let admin_token = "x402-ledger-0123456789abcdef0123456789";
    std::fs::write(dir.join("admin-token"), admin_token).unwrap();
    let toml = config(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = {{ file = "{dir}/admin-token" }}

[lightning]
kind = "simnet-rest"
listen = "127.0.0.1:0"
{x402}
[[services]]
name = "both"
upstream = "http://{upstream}"
rails = ["l402", "x402"]
price = {{ sats = 10, x402_units = "{PRICE}" }}
identity_header = "X-Pay402-Payment"
"#,
        dir = dir.display(),
        x402 = common::x402_anvil_sections(usdc.address, payee, &dir),
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    let http = reqwest::Client::new();

    // One 402 carrying both rails' challenges.
    let resp = http.get(proxy.url("/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 402);
    assert!(
        resp.headers().contains_key("payment-required"),
        "{:?}",
        resp.headers()
    );
    let www = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(www.starts_with("L402 "), "{www}");

    // x402: paid, settled on chain, proof not forwarded.
    let client = x402_client(&signer, usdc.address);
    let paid = client
        .get(proxy.url("/echo"))
        .await
        .expect("x402 payment through the proxy");
    assert_eq!(paid.status(), reqwest::StatusCode::OK);
    let receipt = paid.receipt.clone().expect("receipt");
    assert!(receipt.settled(), "{:?}", receipt.settlement);
    let v: serde_json::Value =
        serde_json::from_str(&paid.into_response().text().await.unwrap()).unwrap();
    let h = &v["headers"];
    assert!(
        h.get("payment-signature").is_none() && h.get("x-payment").is_none(),
        "{h}"
    );
    let id = h["x-pay402-payment"].as_str().unwrap();
    assert!(
        id.starts_with(&format!("x402:{}:", signer.address())),
        "{id}"
    );
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(PRICE)
    );

    // The settlement ledger through the admin API.
    let ledger: serde_json::Value = http
        .get(format!(
            "http://{}/v1/x402/payments?state=settled",
            proxy.admin.unwrap()
        ))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let settled = ledger["payments"].as_array().unwrap();
    assert_eq!(settled.len(), 1, "{ledger}");
    assert_eq!(settled[0]["amount"], PRICE.to_string());
    assert!(
        settled[0]["payer"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(&signer.address().to_string()),
        "{ledger}"
    );
    assert!(
        settled[0]["transaction"]
            .as_str()
            .is_some_and(|t| t.starts_with("0x")),
        "{ledger}"
    );

    // L402 on the same service.
    let l402 = common::l402_client(&proxy);
    let paid = l402.get(proxy.url("/echo")).await.unwrap();
    assert_eq!(paid.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&paid.text().await.unwrap()).unwrap();
    assert!(
        v["headers"]["x-pay402-payment"]
            .as_str()
            .unwrap()
            .starts_with("l402:")
    );

    let ready = common::get_json(proxy.url("/readyz")).await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["facilitator"], true, "{ready}");
    assert_eq!(ready["lightning"], true, "{ready}");

    let metrics = common::get_text(proxy.url("/metrics")).await;
    for rail in ["x402", "l402"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("pay402_payments_total")
                    && l.contains(&format!("rail=\"{rail}\""))
                    && l.contains("outcome=\"accepted\"")),
            "{rail}: {metrics}"
        );
    }
    // Revenue per unit: the x402 payment in the token's base units, the
    // L402 token's price in msat.
    let token_unit = format!("token:eip155:31337:{}", usdc.address).to_lowercase();
    let revenue = |unit: &str| {
        metrics.lines().find_map(|l| {
            (l.starts_with("pay402_revenue_total{")
                && l.to_lowercase().contains(&format!("unit=\"{unit}\"")))
            .then(|| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        })
    };
    assert_eq!(revenue(&token_unit), Some(PRICE), "{metrics}");
    assert_eq!(revenue("msat"), Some(10_000), "{metrics}");
}

/// An x402 client with its cap on the test price of `usdc`.
fn x402_client(signer: &Arc<LocalSigner>, usdc: alloy_primitives::Address) -> X402Client {
    X402Client::builder(signer.clone())
        .allow_asset(
            "eip155:31337",
            EvmAddress(usdc),
            TokenAmount::from_u64(PRICE),
        )
        .timeout(Duration::from_secs(60))
        .build()
}

/// Starts `pay402 facilitator --config <file>` and waits for its address.
async fn start_facilitator(
    config: &std::path::Path,
) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(common::BIN)
        .args(["facilitator", "--config"])
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the pay402 binary runs");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("[facilitator] {line}");
            if line.contains("pay402 facilitator listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                return v["address"].as_str().unwrap().parse().unwrap();
            }
        }
        panic!("the facilitator exited before listening");
    })
    .await
    .expect("the facilitator announced its address in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facilitator_subcommand_settles_for_a_proxy_using_it_remotely() {
    let chain =
        Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"));
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let signer = Arc::new(LocalSigner::random());
    usdc.mint(signer.address().0, U256::from(1_000_000u64))
        .expect("mint");
    let payee = DEV_ACCOUNTS[3].address;
    let payee_before = usdc.balance_of(payee).unwrap();

    let dir = temp_dir("facilitator");
    let api_key = "facilitator-api-key-0123456789abcdef0123";
    std::fs::write(dir.join("rpc_url"), chain.rpc_url()).unwrap();
    std::fs::write(
        dir.join("key"),
        format!("{}\n", DEV_ACCOUNTS[1].private_key),
    )
    .unwrap();
    std::fs::write(dir.join("api-key"), api_key).unwrap();
    let fconf = dir.join("facilitator.toml");
    std::fs::write(
        &fconf,
        format!(
            r#"listen = "127.0.0.1:0"
network = "eip155:31337"
rpc_url = {{ file = "{dir}/rpc_url" }}
key = {{ file = "{dir}/key" }}
api_keys = [{{ file = "{dir}/api-key" }}]

[[assets]]
address = "{asset}"
name = "{USDC_NAME}"
version = "{USDC_VERSION}"
"#,
            dir = dir.display(),
            asset = usdc.address
        ),
    )
    .unwrap();
    let (_facilitator, faddr) = start_facilitator(&fconf).await;
    let http = reqwest::Client::new();
    // /verify and /settle want the API key; /supported is open (SDKs read it first).
    let verify = format!("http://{faddr}/verify");
    let refused = http
        .post(&verify)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let supported = http
        .get(format!("http://{faddr}/supported"))
        .send()
        .await
        .unwrap();
    assert_eq!(supported.status(), 200);
    assert_eq!(
        http.get(format!("http://{faddr}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A proxy settling through it.
    let upstream = start_upstream().await;
    let toml = config(&format!(
        r#"
[x402]
network = "eip155:31337"
asset = "{asset}"
asset_name = "{USDC_NAME}"
pay_to = "{payee}"

[x402.facilitator]
kind = "remote"
url = "http://{faddr}"
api_key = {{ file = "{dir}/api-key" }}

[[services]]
name = "remote"
upstream = "http://{upstream}"
rails = ["x402"]
price = {{ x402_units = "{PRICE}" }}
"#,
        asset = usdc.address,
        dir = dir.display(),
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    let client = x402_client(&signer, usdc.address);
    let paid = client
        .get(proxy.url("/echo"))
        .await
        .expect("x402 through a remote facilitator");
    assert_eq!(paid.status(), reqwest::StatusCode::OK);
    assert!(paid.receipt.as_ref().expect("receipt").settled());
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(PRICE)
    );
}
