//! MPP (`WWW-Authenticate: Payment`) through the real `pay402` binary: the
//! proxy offering L402 and MPP in one 402 on simnet, paid by hand (the
//! library's core: challenge parsed, invoice paid through the simnet
//! wallet's LND REST face, credential built) and by `pay402 fetch`; and the
//! `[mpp]` configuration errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{BIN, Proxy, fetch, simnet_config, start_upstream, temp_dir};
use pay402_core::lightning::{LightningPayer, Network, PayRequest};
use pay402_core::money::Msat;
use pay402_core::mpp::ChallengeList;
use pay402_core::mpp::methods::lightning::{check_charge, credential};
use pay402_core::time::UnixTime;

/// A 44-byte secret, as `openssl rand -base64 32` writes.
const SECRET: &str = "q8S0Yt1f3mJc0Jx2Vq9bN5rW7uZk4dHp6eLs2aG1oTw=";

/// The proxy's config: simnet with a wallet, `[mpp]` with the secret in a
/// file, and `/paid/` behind L402 and MPP at 21 sat.
fn mpp_config(dir: &Path, upstream: std::net::SocketAddr) -> String {
    std::fs::write(dir.join("mpp.secret"), format!("{SECRET}\n")).unwrap();
    simnet_config(&format!(
        r#"[mpp]
realm = "pay402.test"
secret = {{ file = "{}/mpp.secret" }}
methods = ["lightning"]
challenge_ttl_secs = 120

[[services]]
name = "paid"
path = '^/paid/'
upstream = "http://{upstream}"
rails = ["l402", "mpp"]
price = {{ sats = 21 }}
identity_header = "X-Pay402-Payment"
"#,
        dir.display()
    ))
}

/// The simnet wallet's LND REST face, as a Lightning payer.
fn wallet(proxy: &Proxy) -> Arc<dyn LightningPayer> {
    let rest = proxy.simnet.expect("simnet wallet address");
    Arc::new(
        pay402_backends::lnd::LndRest::new(pay402_backends::lnd::LndConfig::new(
            format!("http://{rest}").parse().unwrap(),
            Network::Regtest,
        ))
        .unwrap(),
    )
}

/// Pays the `lightning`/`charge` challenge of the 402 `resp` (checking its
/// realm and that its invoice is for `amount`) through the simnet wallet;
/// the `Authorization` value and the payment hash.
async fn pay_lightning_charge(
    proxy: &Proxy,
    resp: &reqwest::Response,
    amount: Msat,
) -> (String, String) {
    let lines: Vec<&[u8]> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let list = ChallengeList::parse(lines);
    let challenge = list
        .challenges()
        .iter()
        .find(|c| c.method == "lightning" && c.intent == "charge")
        .expect("a lightning/charge challenge");
    assert_eq!(challenge.realm, "pay402.test");
    let now = UnixTime::from_system(std::time::SystemTime::now());
    let charge = check_charge(challenge, Network::Regtest, now, Msat(100_000)).unwrap();
    assert_eq!(charge.amount, amount);
    let payment = wallet(proxy)
        .pay_invoice(&PayRequest::new(charge.bolt11.clone(), Msat(10_000)))
        .await
        .unwrap();
    assert!(charge.accepts(&payment.preimage));
    (
        credential(challenge, &payment.preimage, None),
        hex::encode(payment.payment_hash.0),
    )
}

/// GET `/paid/echo` with `authorization`, after another `Authorization`
/// line if given (the echo upstream shows the last line of a header, so a
/// leaked credential would show).
async fn send_paid(
    http: &reqwest::Client,
    proxy: &Proxy,
    authorization: &str,
    other: Option<&str>,
) -> reqwest::Response {
    let mut req = http.get(proxy.url("/paid/echo"));
    if let Some(other) = other {
        req = req.header("authorization", other);
    }
    req.header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

fn header_values(resp: &reqwest::Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_402_offers_l402_and_payment_and_mpp_pays_once_without_the_credential_upstream() {
    let dir = temp_dir("mpp-proxy");
    let upstream = start_upstream().await;
    let proxy = Proxy::start(&dir, &mpp_config(&dir, upstream)).await;
    let http = reqwest::Client::new();

    // Unpaid: one 402, L402 first, then the Payment challenge.
    let resp = http.get(proxy.url("/paid/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 402);
    let challenges = header_values(&resp, "www-authenticate");
    assert!(challenges[0].starts_with("L402 "), "{challenges:?}");
    assert!(
        challenges.iter().any(|c| c.starts_with("Payment ")),
        "{challenges:?}"
    );
    assert!(
        header_values(&resp, "cache-control")
            .iter()
            .any(|v| v.contains("no-store"))
    );

    // Pay the Payment challenge through the simnet wallet.
    let (authorization, hash) = pay_lightning_charge(&proxy, &resp, Msat(21_000)).await;

    // Paid: 200 with a receipt; the upstream saw the payment's identity and
    // no credential (another Authorization scheme passes).
    let paid = send_paid(&http, &proxy, &authorization, Some("Bearer upstream-token")).await;
    assert_eq!(paid.status(), 200);
    let receipt = paid
        .headers()
        .get("payment-receipt")
        .expect("Payment-Receipt")
        .to_str()
        .unwrap()
        .to_owned();
    let receipt = pay402_core::mpp::Receipt::decode(&receipt).unwrap();
    assert_eq!(receipt.reference, hash);
    let echo: serde_json::Value = paid.json().await.unwrap();
    let seen = &echo["headers"];
    assert_eq!(seen["authorization"], "Bearer upstream-token", "{seen}");
    assert_eq!(
        seen["x-pay402-payment"],
        format!("mpp:lightning:{hash}"),
        "{seen}"
    );

    // The same credential again: refused, and no challenge inviting a
    // second payment.
    let replay = send_paid(&http, &proxy, &authorization, None).await;
    assert_eq!(replay.status(), 403);
    assert!(
        !header_values(&replay, "www-authenticate")
            .iter()
            .any(|c| c.starts_with("Payment ")),
        "a replay gets no fresh challenge"
    );

    // Metrics count the MPP payment by rail and outcome.
    let metrics = common::get_text(proxy.url("/metrics")).await;
    let accepted = metrics.lines().any(|l| {
        l.starts_with("pay402_payments_total")
            && l.contains("rail=\"mpp\"")
            && l.contains("outcome=\"accepted\"")
            && l.ends_with(" 1")
    });
    let refused = metrics.lines().any(|l| {
        l.starts_with("pay402_payments_total")
            && l.contains("rail=\"mpp\"")
            && l.contains("outcome=\"refused\"")
            && l.ends_with(" 1")
    });
    assert!(accepted && refused, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pay402_revenue_total")
                && l.contains("rail=\"mpp\"")
                && l.contains("unit=\"sat\"")
                && l.ends_with(" 21")),
        "{metrics}"
    );
}

fn fetch_config(dir: &Path, proxy: &Proxy) -> PathBuf {
    let path = dir.join("fetch.toml");
    std::fs::write(
        &path,
        format!(
            "max = \"100sat\"\n[lightning]\nkind = \"simnet-rest\"\nurl = \"http://{}\"\n",
            proxy.simnet.unwrap()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn fetch_with_rail_mpp_pays_the_payment_challenge_and_never_reuses_it() {
    let dir = temp_dir("mpp-fetch");
    let upstream = start_upstream().await;
    let proxy = Proxy::start(&dir, &mpp_config(&dir, upstream)).await;
    let config = fetch_config(&dir, &proxy);
    let url = proxy.url("/paid/echo");
    let mut proofs = Vec::new();
    for run in 0..2 {
        let body = dir.join(format!("body-{run}"));
        let out = fetch(
            &config,
            &[
                "--rail",
                "mpp",
                "--json",
                "-i",
                "-o",
                body.to_str().unwrap(),
                &url,
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(0));
        let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(receipt["paid"], true, "{receipt}");
        assert_eq!(receipt["rail"], "mpp", "{receipt}");
        assert_eq!(receipt["status"], 200, "{receipt}");
        assert_eq!(receipt["amount_value"], "21000", "{receipt}");
        let written = std::fs::read_to_string(&body).unwrap();
        let (head, echo) = written.split_once("\r\n\r\n").unwrap();
        assert!(
            head.to_ascii_lowercase().contains("\npayment-receipt: "),
            "{head}"
        );
        let echo: serde_json::Value = serde_json::from_str(echo).unwrap();
        assert!(echo["headers"].get("authorization").is_none(), "{echo}");
        let id = echo["headers"]["x-pay402-payment"].as_str().unwrap();
        assert!(id.starts_with("mpp:lightning:"), "{id}");
        proofs.push(receipt["proof_id"].clone());
    }
    // A charge credential is single use: the second run paid again.
    assert_ne!(proofs[0], proofs[1]);

    // Restricted to L402, the same 402 is paid through L402 instead.
    let out = fetch(&config, &["--rail", "l402", "--json", &url]).await;
    assert_eq!(out.status.code(), Some(0));
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["rail"], "l402", "{receipt}");
}

/// `pay402 proxy --check --config <dir>/pay402.toml` with `toml`.
fn check(dir: &Path, toml: &str) -> std::process::Output {
    let path = dir.join("pay402.toml");
    std::fs::write(&path, toml).unwrap();
    std::process::Command::new(BIN)
        .args(["proxy", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn check_prints_the_mpp_rail_and_never_its_secret() {
    let dir = temp_dir("mpp-check");
    let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let out = check(&dir, &mpp_config(&dir, upstream));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "mpp: realm \"pay402.test\", lightning/charge, challenges valid 120 s, secret from file {}/mpp.secret",
            dir.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("  mpp lightning/charge 21 sat"), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");
}

#[test]
fn mpp_rail_without_an_mpp_section_is_refused() {
    let dir = temp_dir("mpp-no-section");
    let out = check(
        &dir,
        "[lightning]\nkind = \"simnet\"\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"mpp\"]\nprice = { sats = 5 }\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services[0].rails: mpp needs an [mpp] section"),
        "{err}"
    );
}

#[test]
fn mpp_section_errors_name_their_key() {
    let dir = temp_dir("mpp-bad-section");
    let section = |body: &str| {
        format!(
            "[lightning]\nkind = \"simnet\"\n[mpp]\n{body}\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"mpp\"]\nprice = {{ sats = 5 }}\n"
        )
    };
    let cases = [
        (
            "realm = \"a|b\"\nsecret = { env = \"S\" }",
            "mpp.realm: invalid MPP realm",
        ),
        (
            "realm = \"r\"\nsecret = { env = \"S\", file = \"/s\" }",
            "mpp.secret: give exactly one of",
        ),
        ("realm = \"r\"\nsecret = \"inline\"", "mpp.secret"),
        (
            "realm = \"r\"\nsecret = { env = \"S\" }\nmethods = [\"evm\"]",
            "mpp.methods: evm needs an [x402] section",
        ),
        (
            "realm = \"r\"\nsecret = { env = \"S\" }\nmethods = []",
            "mpp.methods: name at least one of",
        ),
        (
            "realm = \"r\"\nsecret = { env = \"S\" }\nchallenge_ttl_secs = 0",
            "mpp.challenge_ttl_secs: must be 1 to 86400",
        ),
    ];
    for (body, want) in cases {
        let out = check(&dir, &section(body));
        assert_eq!(out.status.code(), Some(2), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{body}: {err}");
    }
    // A pricer may price MPP, with an [mpp] section.
    let out = check(
        &dir,
        "[lightning]\nkind = \"simnet\"\n[mpp]\nrealm = \"r\"\nsecret = { env = \"S\" }\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"mpp\"]\npricer = { url = \"http://127.0.0.1:9/p\" }\n",
    );
    assert_eq!(out.status.code(), Some(0), "a pricer prices MPP");
    let out = check(
        &dir,
        "[lightning]\nkind = \"simnet\"\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"mpp\"]\npricer = { url = \"http://127.0.0.1:9/p\" }\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services[0].pricer: mpp needs an [mpp] section"),
        "{err}"
    );
}

#[tokio::test]
async fn a_secret_under_32_bytes_stops_the_proxy_at_start_without_printing_it() {
    let dir = temp_dir("mpp-short-secret");
    let toml = common::config(&format!(
        "[lightning]\nkind = \"simnet\"\n[mpp]\nrealm = \"r\"\nsecret = {{ file = \"{}/short\" }}\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"mpp\"]\nprice = {{ sats = 5 }}\n",
        dir.display()
    ));
    std::fs::write(dir.join("short"), "only-24-bytes-of-secret!").unwrap();
    let path = dir.join("pay402.toml");
    std::fs::write(&path, toml).unwrap();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(["proxy", "--config"])
            .arg(&path)
            .output(),
    )
    .await
    .expect("the proxy stops by itself")
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mpp.secret: the MPP secret must be at least 32 bytes"),
        "{err}"
    );
    assert!(!err.contains("only-24-bytes-of-secret!"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evm_charge_settles_on_anvil_through_the_proxy_facilitator_once() {
    use alloy_primitives::U256;
    use pay402_client::mpp::{MppClient, MppToken};
    use pay402_client::x402::LocalSigner;
    use pay402_client::{Payer, RailReceipt};
    use pay402_core::x402::TokenAmount;
    use pay402_core::x402::evm::EvmAddress;
    use pay402_testkit::anvil::{
        Anvil, CHAIN_ID, DEV_ACCOUNTS, USDC_DECIMALS, USDC_NAME, USDC_VERSION,
    };
    const PRICE: u64 = 10_000; // 1 cent in USDC base units

    let chain =
        Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"));
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let signer = LocalSigner::from_hex(DEV_ACCOUNTS[4].private_key.to_string().as_str()).unwrap();
    usdc.mint(signer.address().0, U256::from(1_000_000u64))
        .expect("mint");
    let payee = DEV_ACCOUNTS[3].address;
    let payee_before = usdc.balance_of(payee).unwrap();

    let dir = temp_dir("mpp-evm");
    std::fs::write(dir.join("rpc_url"), chain.rpc_url()).unwrap();
    std::fs::write(dir.join("key"), DEV_ACCOUNTS[1].private_key.to_string()).unwrap();
    std::fs::write(dir.join("mpp.secret"), SECRET).unwrap();
    let upstream = start_upstream().await;
    let proxy = Proxy::start(
        &dir,
        &common::config(&format!(
            r#"{x402}
[mpp]
realm = "pay402.test"
secret = {{ file = "{dir}/mpp.secret" }}
methods = ["evm"]

[[services]]
name = "paid"
upstream = "http://{upstream}"
rails = ["mpp"]
price = {{ x402_units = "{PRICE}" }}
identity_header = "X-Pay402-Payment"
"#,
            x402 = common::x402_anvil_sections(usdc.address, payee, &dir),
            dir = dir.display(),
        )),
    )
    .await;

    let token = MppToken::new(
        CHAIN_ID,
        EvmAddress(usdc.address),
        USDC_DECIMALS,
        USDC_NAME,
        USDC_VERSION,
    )
    .max(TokenAmount::from_u64(50_000));
    let payer = Payer::builder()
        .mpp(MppClient::builder().evm(Arc::new(signer), token))
        .journal(pay402_client::journal::Journal::memory())
        .build()
        .await
        .unwrap();
    let paid = payer.get(proxy.url("/paid/echo")).await.unwrap();
    assert_eq!(paid.status(), 200);
    let receipt = paid.receipt.clone().expect("paid");
    let Some(RailReceipt::Mpp(mpp)) = &receipt.rail_receipt else {
        panic!("no MPP receipt: {receipt:?}");
    };
    assert_eq!(mpp.kind, "evm/charge");
    let reference = mpp
        .receipt
        .as_ref()
        .expect("the proxy's Payment-Receipt")
        .reference
        .clone();
    assert!(reference.starts_with("0x"), "{reference}");
    let echo: serde_json::Value = paid.response.json().await.unwrap();
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert_eq!(
        echo["headers"]["x-pay402-payment"],
        format!("mpp:evm:{reference}")
    );
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(PRICE),
        "settled on chain once"
    );

    // `pay402 fetch --rail mpp` pays the same way with an EVM key file and a
    // token whose EIP-712 domain is configured.
    std::fs::write(dir.join("evm.key"), DEV_ACCOUNTS[4].private_key.to_string()).unwrap();
    let config = dir.join("fetch.toml");
    std::fs::write(
        &config,
        format!(
            "max = \"5usdcents\"\n[x402]\nevm_key_file = \"{}\"\n[[x402.tokens]]\nnetwork = \"eip155:{CHAIN_ID}\"\nasset = \"{}\"\ndecimals = {USDC_DECIMALS}\nmax_units = 100000\nname = \"{USDC_NAME}\"\nversion = \"{USDC_VERSION}\"\n",
            dir.join("evm.key").display(),
            usdc.address
        ),
    )
    .unwrap();
    let url = proxy.url("/paid/echo");
    // x402 alone cannot pay an MPP-only service: nothing paid.
    let out = fetch(&config, &["--rail", "x402", &url]).await;
    assert_eq!(out.status.code(), Some(4));
    let out = fetch(&config, &["--rail", "mpp", "--json", &url]).await;
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rail"], "mpp", "{v}");
    assert_eq!(v["amount_value"], PRICE.to_string(), "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(2 * PRICE),
        "the fetch settled on chain once"
    );
}

#[tokio::test]
async fn a_pricer_prices_the_lightning_charge_in_whole_sat() {
    use axum::routing::post;
    let dir = temp_dir("mpp-pricer");
    let upstream = start_upstream().await;
    let app = axum::Router::new().route(
        "/price",
        post(|| async { axum::Json(serde_json::json!({ "sats": 7 })) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pricer = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let toml = mpp_config(&dir, upstream).replace(
        "price = { sats = 21 }",
        &format!("pricer = {{ url = \"http://{pricer}/price\" }}"),
    );
    let proxy = Proxy::start(&dir, &toml).await;
    let http = reqwest::Client::new();
    let resp = http.get(proxy.url("/paid/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 402);
    let (authorization, _) = pay_lightning_charge(&proxy, &resp, Msat(7_000)).await;
    let paid = send_paid(&http, &proxy, &authorization, None).await;
    assert_eq!(paid.status(), 200);
    let echo: serde_json::Value = paid.json().await.unwrap();
    assert!(
        echo["headers"]
            .get("x-pay402-internal-price-msat")
            .is_none(),
        "{echo}"
    );
}
