//! 21 BitRequests on a real Bitcoin chain through the real binaries: a
//! `pay402 proxy` whose `[bitrequests]` offers on-chain payments (a fresh
//! address per 402 from an xpub) and payment channels over bcoin regtest
//! (`[bitrequests.chain]`, the testkit starts the node), paid by the real
//! `pay402 fetch` from a wallet named in its configuration file.
//!
//! - on-chain: paid once, broadcast by the proxy, the upstream sees the
//!   request once with the txid as identity; the same transaction presented
//!   again is refused with problem+json `payment_already_used`; `--max`
//!   under the price exits 3 with nothing spent; a dearer route waits for
//!   one confirmation (202 `awaiting_confirmations`, the upstream not
//!   called): a fetch giving up on the 202 exits 5 with the transaction
//!   kept open in its journal, and the same fetch run again presents the
//!   same transaction, waits for the block, served once, the wallet paying
//!   nothing more; the same after a fetch is killed while waiting; a
//!   resumed transaction refused for good ends `failed` in the journal;
//! - channel: `pay402 fetch` opens a channel at the proxy's channel
//!   endpoints, pays through it, and closes it; the close transaction,
//!   mined, pays the merchant exactly the price.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Proxy, config, fetch, temp_dir};
use pay402_server::bitreq::bitcoin::bip32::{Xpriv, Xpub};
use pay402_server::bitreq::bitcoin::consensus::encode::deserialize_hex;
use pay402_server::bitreq::bitcoin::{Network, Transaction, secp256k1::Secp256k1};
use pay402_testkit::bcoin::Bcoin;

/// The price of `/cheap/*` (served unconfirmed) and `/dear/*` (one
/// confirmation), in sat; both above the 3000-sat dust floor.
const CHEAP: u64 = 5_000;
const DEAR: u64 = 6_000;
/// The miner fee of channel payment transactions, the same on both sides.
const CHANNEL_FEE: u64 = 10_000;

fn start_node() -> Bcoin {
    Bcoin::start().unwrap_or_else(|e| panic!("bcoin test peer could not start: {e}"))
}

/// What the upstream saw: the identity header of each request.
type Seen = Arc<Mutex<Vec<String>>>;

/// An upstream answering `served` to everything, recording the identity
/// header and that no payment proof reached it.
async fn start_counting_upstream() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: http::HeaderMap| {
        let record = record.clone();
        async move {
            for proof in [
                "bitcoin-transaction",
                "bitcoin-transfer",
                "bitcoin-payment-channel-token",
            ] {
                assert!(!headers.contains_key(proof), "{proof} reached the upstream");
            }
            let id = headers
                .get("x-paid-by")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            record.lock().unwrap().push(id);
            "served"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn seen(s: &Seen) -> Vec<String> {
    s.lock().unwrap().clone()
}

/// The `[bitrequests.chain]` table of `node` (its password in a file).
fn chain_section(node: &Bcoin, dir: &Path, fetch_side: bool) -> String {
    let password = dir.join("rpc.password");
    std::fs::write(&password, node.rpc_password()).unwrap();
    let secret = if fetch_side {
        format!("password_file = \"{}\"", password.display())
    } else {
        format!("password = {{ file = \"{}\" }}", password.display())
    };
    format!(
        "[bitrequests.chain]\nkind = \"bitcoind\"\nurl = \"{}\"\nuser = \"{}\"\n{secret}\n",
        node.rpc_url(),
        node.rpc_user()
    )
}

/// The proxy: on-chain to fresh addresses of a merchant xpub (prices up to
/// `CHEAP` served unconfirmed) and channels with zeroconf deposits.
async fn start_proxy(node: &Bcoin, dir: &Path, upstream: SocketAddr) -> Proxy {
    let xprv = Xpriv::new_master(Network::Regtest, &rand::random::<[u8; 32]>()).unwrap();
    let xpub = Xpub::from_priv(&Secp256k1::new(), &xprv);
    Proxy::start(dir, &config(&bitreq_sections(node, dir, upstream, &xpub))).await
}

/// The `[bitrequests]` and `[[services]]` of the proxy (the channel key
/// written to `dir/channel.key` unless there).
fn bitreq_sections(node: &Bcoin, dir: &Path, upstream: SocketAddr, xpub: &Xpub) -> String {
    let key = dir.join("channel.key");
    if !key.exists() {
        std::fs::write(&key, hex::encode(rand::random::<[u8; 32]>())).unwrap();
    }
    format!(
        r#"
[bitrequests]
network = "regtest"
sync_secs = 1
{chain}
[bitrequests.onchain]
xpub = "{xpub}"
confirmations = 1
accept_unconfirmed_up_to_sats = {CHEAP}

[bitrequests.channel]
key = {{ file = "{dir}/channel.key" }}
zeroconf = true
fee_sats = {CHANNEL_FEE}

{services}"#,
        chain = chain_section(node, dir, false),
        dir = dir.display(),
        services = [("cheap", CHEAP), ("dear", DEAR)]
            .map(|(name, sats)| format!(
                "[[services]]\nname = \"{name}\"\npath = \"^/{name}/\"\nupstream = \"http://{upstream}\"\n\
                 rails = [\"bitreq\"]\nprice = {{ sats = {sats} }}\nidentity_header = \"X-Paid-By\"\n\n"
            ))
            .concat()
    )
}

/// A fresh fetch wallet (its seed in `dir/wallet.seed`) funded with two
/// confirmed coins of `sats`, and its fetch configuration paying by
/// `method` only.
async fn fetch_wallet(node: &Bcoin, dir: &Path, method: &str, sats: u64) -> std::path::PathBuf {
    use pay402_client::bitreq::{Wallet, WalletConfig};
    let seed = hex::encode(rand::random::<[u8; 32]>());
    let seed_file = dir.join(format!("{method}.seed"));
    std::fs::write(&seed_file, &seed).unwrap();
    let wallet = Wallet::from_seed_hex(
        &seed,
        WalletConfig::new(Network::Regtest),
        Arc::new(pay402_cli::nochain::NoChain),
    )
    .unwrap();
    for _ in 0..2 {
        let address = wallet.receive_address().await.unwrap();
        node.fund(&address.to_string(), sats)
            .expect("fund the wallet");
    }
    node.mine(1).unwrap();
    let config = dir.join(format!("{method}.toml"));
    std::fs::write(
        &config,
        format!(
            "max = \"10000sat\"\n[bitrequests]\nseed_file = \"{}\"\nnetwork = \"regtest\"\nmethods = [\"{method}\"]\nconfirmation_poll_secs = 1\n{}\
             [bitrequests.channel]\ndeposit_sats = 20000\nfee_sats = {CHANNEL_FEE}\n",
            seed_file.display(),
            chain_section(node, dir, true)
        ),
    )
    .unwrap();
    config
}

/// `pay402 fetch --json --rail bitreq URL`: exit 0, its JSON receipt and
/// its standard error.
async fn pay(config: &Path, url: &str) -> (serde_json::Value, String) {
    let out = fetch(config, &["--json", "--rail", "bitreq", url]).await;
    assert_eq!(out.status.code(), Some(0));
    let receipt =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("a JSON receipt");
    (receipt, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The `pay402 receipts --json` line of journal entry `entry` (the journal
/// beside `config`).
async fn receipt_of(config: &Path, entry: &str) -> serde_json::Value {
    let out = tokio::process::Command::new(common::BIN)
        .args(["receipts", "--json", "--config"])
        .arg(config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["entry"] == entry)
        .unwrap_or_else(|| panic!("no entry {entry} in {text}"))
}

/// What the fetch wallet of `config` (seed in `onchain.seed` beside it)
/// holds on chain, confirmed and in the mempool, in sat.
async fn wallet_total(node: &Bcoin, config: &Path) -> u64 {
    let seed = std::fs::read_to_string(config.with_file_name("onchain.seed")).unwrap();
    let b = node_wallet(node, seed.trim()).sync().await.unwrap();
    b.confirmed.0 + b.unconfirmed.0 + b.immature.0 + b.locked.0
}

/// The wallet of `seed` (hex) following `node` over its RPC.
fn node_wallet(node: &Bcoin, seed: &str) -> pay402_client::bitreq::Wallet {
    use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    use pay402_client::bitreq::{Wallet, WalletConfig};
    let chain = BitcoindRpc::new(BitcoindConfig {
        url: node.rpc_url().parse().unwrap(),
        user: node.rpc_user().to_owned(),
        password: node.rpc_password().to_owned(),
        timeout: Duration::from_secs(30),
    })
    .unwrap();
    Wallet::from_seed_hex(seed, WalletConfig::new(Network::Regtest), Arc::new(chain)).unwrap()
}

/// Presents `tx_hex` as the on-chain proof for `path`.
async fn present(proxy: &Proxy, path: &str, tx_hex: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(proxy.url(path))
        .header("Bitcoin-Transaction", tx_hex)
        .send()
        .await
        .unwrap()
}

/// bcoin, the counting upstream, the proxy in front of it, and a funded
/// fetch wallet paying by `method`: (node, what the upstream saw, proxy,
/// fetch config).
async fn setup(method: &str, sats: u64) -> (Bcoin, Seen, Proxy, std::path::PathBuf) {
    let node = start_node();
    let dir = temp_dir(&format!("bitreq-chain-{method}"));
    let (upstream, upstream_seen) = start_counting_upstream().await;
    let proxy = start_proxy(&node, &dir, upstream).await;
    let config = fetch_wallet(&node, &dir, method, sats).await;
    (node, upstream_seen, proxy, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_pays_the_proxy_on_chain_once_and_a_replay_is_refused() {
    let (node, upstream_seen, proxy, config) = setup("onchain", 50_000).await;

    // Unpaid: a fresh address per 402, and the channel server.
    let unpaid = reqwest::get(proxy.url("/cheap/report")).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    assert_eq!(unpaid.headers()["price"], CHEAP.to_string().as_str());
    let first = unpaid.headers()["bitcoin-address"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(first.starts_with("bcrt1q"), "{first}");
    let again = reqwest::get(proxy.url("/cheap/report")).await.unwrap();
    assert_ne!(again.headers()["bitcoin-address"], first.as_str());
    assert_eq!(
        unpaid.headers()["bitcoin-payment-channel-server"],
        proxy.url("/payment").as_str()
    );

    // Over budget: exit 3, nothing spent, the upstream not called.
    let out = fetch(
        &config,
        &["--json", "--max", "4999sat", &proxy.url("/cheap/report")],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(seen(&upstream_seen).is_empty());

    // Paid on chain: the proxy broadcast it and the upstream saw it once.
    let (r, _) = pay(&config, &proxy.url("/cheap/report")).await;
    assert_eq!(r["rail"], "bitreq");
    assert_eq!(r["offer"], "bitreq onchain", "{r}");
    assert_eq!(r["amount"], format!("{CHEAP} sat"));
    assert_eq!(r["status"], 200);
    let txid = r["proof_id"].as_str().unwrap().to_owned();
    assert_eq!(seen(&upstream_seen), [format!("bitreq:onchain:{txid}")]);
    node.wait_for_tx(&txid, Duration::from_secs(10))
        .expect("the proxy broadcast the payment");
    let tx: Transaction = deserialize_hex(&node.get_raw_transaction_hex(&txid).unwrap()).unwrap();
    assert!(
        tx.output.iter().any(|o| o.value.to_sat() == CHEAP),
        "pays exactly the price: {tx:?}"
    );

    // The same transaction again: refused, problem+json, not served.
    let hex = node.get_raw_transaction_hex(&txid).unwrap();
    let replay = present(&proxy, "/cheap/report", &hex).await;
    assert_eq!(replay.status(), 409);
    assert_eq!(replay.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(problem["reason"], "payment_already_used", "{problem}");
    assert_eq!(seen(&upstream_seen).len(), 1);

    // A dearer route waits for one confirmation. Told to wait 2 s, fetch
    // gives up on the 202: exit 5, the payment stands, the upstream is not
    // called, and the journal keeps the transaction (entry open).
    let short_wait = config.with_file_name("onchain-short-wait.toml");
    std::fs::write(
        &short_wait,
        std::fs::read_to_string(&config).unwrap().replace(
            "confirmation_poll_secs = 1",
            "confirmation_poll_secs = 1\nconfirmation_wait_secs = 2",
        ),
    )
    .unwrap();
    let dear_url = proxy.url("/dear/report");
    let out = fetch(&short_wait, &["--json", "--rail", "bitreq", &dear_url]).await;
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run the same fetch again"), "{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(r["status"], 202, "{r}");
    assert_eq!(r["pending"], true, "{r}");
    assert_eq!(r["amount"], format!("{DEAR} sat"));
    let dear_txid = r["proof_id"].as_str().unwrap().to_owned();
    assert_eq!(seen(&upstream_seen).len(), 1);
    node.wait_for_tx(&dear_txid, Duration::from_secs(10))
        .unwrap();
    let dear_entry = r["entry"].as_str().unwrap().to_owned();
    let entry = receipt_of(&config, &dear_entry).await;
    assert_eq!(entry["state"], "presented", "{entry}");
    assert_eq!(entry["status"], 202, "{entry}");
    assert_eq!(entry["detail"], "awaiting_confirmations", "{entry}");
    assert_eq!(entry["proof_id"], dear_txid.as_str(), "{entry}");
    let before = wallet_total(&node, &config).await;

    // The same fetch again (a new process, waiting by default) presents the
    // SAME transaction from the journal and waits for it; mined, it is
    // served once and nothing is paid again.
    let (cfg, url) = (config.clone(), dear_url.clone());
    let resumed = tokio::spawn(async move { pay(&cfg, &url).await });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(seen(&upstream_seen).len(), 1, "served before it was mined");
    // In the mempool: the two payments so far (the first one, served
    // unconfirmed, and this one), no other.
    let pool = node.rpc("getrawmempool", serde_json::json!([])).unwrap();
    let mut pool: Vec<&str> = pool
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    pool.sort_unstable();
    let mut expected = [txid.as_str(), dear_txid.as_str()];
    expected.sort_unstable();
    assert_eq!(pool, expected, "a second payment was broadcast");
    node.mine(1).unwrap();
    let (r, _) = resumed.await.unwrap();
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["proof_id"], dear_txid.as_str(), "{r}");
    assert_eq!(r["resumed"], true, "{r}");
    assert_eq!(r["pending"], false, "{r}");
    assert_eq!(r["entry"], dear_entry.as_str(), "{r}");
    assert_eq!(
        seen(&upstream_seen),
        [
            format!("bitreq:onchain:{txid}"),
            format!("bitreq:onchain:{dear_txid}")
        ]
    );
    let pool = node.rpc("getrawmempool", serde_json::json!([])).unwrap();
    assert_eq!(
        pool,
        serde_json::json!([]),
        "a second payment was broadcast"
    );
    assert_eq!(
        wallet_total(&node, &config).await,
        before,
        "the wallet paid again"
    );
    let entry = receipt_of(&config, &dear_entry).await;
    assert_eq!(entry["state"], "served", "{entry}");
    assert_eq!(entry["status"], 200, "{entry}");
    let hex = node.get_raw_transaction_hex(&dear_txid).unwrap();
    let again = present(&proxy, "/dear/report", &hex).await;
    assert_eq!(again.status(), 409);
    assert_eq!(seen(&upstream_seen).len(), 2);
    // By default fetch waits: it presents the same transaction until it is
    // mined, then the upstream is called once.
    node.mine(1).unwrap();
    let (cfg, url) = (config.clone(), proxy.url("/dear/waited"));
    let waiting = tokio::spawn(async move { pay(&cfg, &url).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pool = node.rpc("getrawmempool", serde_json::json!([])).unwrap();
        if pool.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no payment broadcast");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(seen(&upstream_seen).len(), 2, "served before it was mined");
    node.mine(1).unwrap();
    let (r, _) = waiting.await.unwrap();
    assert_eq!(r["status"], 200, "{r}");
    let waited_txid = r["proof_id"].as_str().unwrap();
    assert_eq!(
        seen(&upstream_seen).last().unwrap(),
        &format!("bitreq:onchain:{waited_txid}")
    );
    assert_eq!(seen(&upstream_seen).len(), 3);

    // A fetch killed while it waits (a crash, or Ctrl-C) loses nothing: the
    // transaction is in its journal, and the same fetch run again presents
    // it instead of paying anew.
    let killed_url = proxy.url("/dear/killed");
    let mut child = tokio::process::Command::new(common::BIN)
        .arg("fetch")
        .arg("--config")
        .arg(&config)
        .args(["--json", "--rail", "bitreq", &killed_url])
        .env_remove("PAY402_LIGHTNING")
        .env_remove("PAY402_EVM_KEY_FILE")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let killed_txid = loop {
        let pool = node.rpc("getrawmempool", serde_json::json!([])).unwrap();
        if let Some(t) = pool.as_array().and_then(|a| a.first()) {
            break t.as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no payment broadcast");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().await.unwrap();
    let before = wallet_total(&node, &config).await;
    let (cfg, url) = (config.clone(), killed_url.clone());
    let resumed = tokio::spawn(async move { pay(&cfg, &url).await });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pool = node.rpc("getrawmempool", serde_json::json!([])).unwrap();
    assert_eq!(
        pool,
        serde_json::json!([killed_txid]),
        "a second payment was broadcast"
    );
    assert_eq!(seen(&upstream_seen).len(), 3, "served before it was mined");
    node.mine(1).unwrap();
    let (r, _) = resumed.await.unwrap();
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["proof_id"], killed_txid.as_str(), "{r}");
    assert_eq!(r["resumed"], true, "{r}");
    assert_eq!(
        seen(&upstream_seen).last().unwrap(),
        &format!("bitreq:onchain:{killed_txid}")
    );
    assert_eq!(seen(&upstream_seen).len(), 4);
    assert_eq!(wallet_total(&node, &config).await, before, "paid again");
    let entry = receipt_of(&config, r["entry"].as_str().unwrap()).await;
    assert_eq!(entry["state"], "served", "{entry}");

    // Refused for good when resumed (here: served meanwhile to another
    // client presenting the same transaction): the entry ends `failed` with
    // the reason, listed by `pay402 receipts`, and nothing is paid anew.
    let refused_url = proxy.url("/dear/refused");
    let out = fetch(&short_wait, &["--json", "--rail", "bitreq", &refused_url]).await;
    assert_eq!(out.status.code(), Some(5));
    let r: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(r["pending"], true, "{r}");
    let refused_txid = r["proof_id"].as_str().unwrap().to_owned();
    let refused_entry = r["entry"].as_str().unwrap().to_owned();
    node.wait_for_tx(&refused_txid, Duration::from_secs(10))
        .unwrap();
    node.mine(1).unwrap();
    let hex = node.get_raw_transaction_hex(&refused_txid).unwrap();
    assert_eq!(present(&proxy, "/dear/refused", &hex).await.status(), 200);
    let before = wallet_total(&node, &config).await;
    let out = fetch(&config, &["--json", "--rail", "bitreq", &refused_url]).await;
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("payment_already_used"), "{stderr}");
    let entry = receipt_of(&config, &refused_entry).await;
    assert_eq!(entry["state"], "failed", "{entry}");
    assert_eq!(entry["detail"], "payment_refused: payment_already_used");
    assert_eq!(entry["status"], 409, "{entry}");
    assert_eq!(entry["proof_id"], refused_txid.as_str(), "{entry}");
    assert_eq!(
        node.rpc("getrawmempool", serde_json::json!([])).unwrap(),
        serde_json::json!([]),
        "a second payment was broadcast"
    );
    assert_eq!(wallet_total(&node, &config).await, before, "paid again");
    assert_eq!(seen(&upstream_seen).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_opens_pays_and_closes_a_payment_channel_through_the_proxy() {
    let (node, upstream_seen, proxy, config) = setup("channel", 100_000).await;

    // Ready: the chain answers.
    let ready = common::get_json(proxy.url("/readyz")).await;
    assert_eq!(ready["bitcoin"], true, "{ready}");

    // The channel endpoints answer on the proxy's listener.
    let info: serde_json::Value = reqwest::get(proxy.url("/payment"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["version"], 2, "{info}");
    assert_eq!(info["zeroconf"], true);

    let (r, stderr) = pay(&config, &proxy.url("/cheap/report")).await;
    assert_eq!(r["offer"], "bitreq channel", "{r}");
    assert_eq!(r["amount"], format!("{CHEAP} sat"));
    assert_eq!(r["status"], 200);
    let token = r["proof_id"].as_str().unwrap().to_owned();
    assert_eq!(seen(&upstream_seen), [format!("bitreq:channel:{token}")]);

    // Closed before exiting: the merchant signed and broadcast the last
    // payment; mined, it pays the merchant exactly the price.
    let close_txid = stderr
        .split("close transaction ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("the channel was closed: {stderr}"))
        .to_owned();
    node.wait_for_tx(&close_txid, Duration::from_secs(10))
        .expect("the proxy broadcast the close");
    node.mine(1).unwrap();
    let close: Transaction =
        deserialize_hex(&node.get_raw_transaction_hex(&close_txid).unwrap()).unwrap();
    assert_eq!(close.output[0].value.to_sat(), CHEAP, "{close:?}");
    let confirmed = node.get_raw_transaction(&close_txid).unwrap();
    assert!(confirmed["confirmations"].as_u64().unwrap_or(0) >= 1);

    // The token was redeemed: presented again, refused.
    let replay = reqwest::Client::new()
        .get(proxy.url("/cheap/report"))
        .header("Bitcoin-Payment-Channel-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 409);
    let problem: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(problem["reason"], "payment_already_used", "{problem}");
    assert_eq!(seen(&upstream_seen).len(), 1);

    // Without `methods`, the wallet may pay on chain or through a channel:
    // of two offers at the same price it prefers on-chain (the default
    // order), whatever the order of the 402.
    let any = config.with_file_name("channel-any.toml");
    std::fs::write(
        &any,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("methods = [\"channel\"]\n", ""),
    )
    .unwrap();
    let (r, stderr) = pay(&any, &proxy.url("/cheap/report")).await;
    assert_eq!(r["offer"], "bitreq onchain", "{r}");
    assert!(!stderr.contains("payment channel"), "{stderr}");
    assert_eq!(seen(&upstream_seen).len(), 2);
}

/// Two proxy processes on one PostgreSQL `[store]` (the testkit starts a
/// private cluster), same merchant, sharing nothing else: an on-chain
/// payment served by one is refused by the other (the txid's replay
/// record is in the shared database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_on_one_postgres_refuse_each_others_onchain_payment() {
    use pay402_testkit::postgres::Postgres;
    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let node = start_node();
    let dir = temp_dir("bitreq-chain-postgres");
    let (upstream, upstream_seen) = start_counting_upstream().await;
    let xprv = Xpriv::new_master(Network::Regtest, &rand::random::<[u8; 32]>()).unwrap();
    let xpub = Xpub::from_priv(&Secp256k1::new(), &xprv);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nlog_format = \"json\"\n\n[store]\nurl = \"{}\"\n\n{}",
        db.url(),
        bitreq_sections(&node, &dir, upstream, &xpub)
    );
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    for d in [&dir_a, &dir_b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let a = Proxy::start(&dir_a, &toml).await;
    let b = Proxy::start(&dir_b, &toml).await;
    let config = fetch_wallet(&node, &dir, "onchain", 50_000).await;

    let (r, _) = pay(&config, &a.url("/cheap/report")).await;
    assert_eq!(r["status"], 200, "{r}");
    let txid = r["proof_id"].as_str().unwrap().to_owned();
    node.wait_for_tx(&txid, Duration::from_secs(10)).unwrap();
    let hex = node.get_raw_transaction_hex(&txid).unwrap();
    for proxy in [&b, &a] {
        let replay = present(proxy, "/cheap/report", &hex).await;
        assert_eq!(replay.status(), 409);
        let problem: serde_json::Value = replay.json().await.unwrap();
        assert_eq!(problem["reason"], "payment_already_used", "{problem}");
    }
    assert_eq!(seen(&upstream_seen), [format!("bitreq:onchain:{txid}")]);

    // The other instance takes its own payments on the same store.
    let (r, _) = pay(&config, &b.url("/cheap/report")).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(seen(&upstream_seen).len(), 2);
}

/// `/readyz` asks the chain: unreachable, the proxy is not ready (503,
/// `"bitcoin": false`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_an_unreachable_chain() {
    let dir = temp_dir("bitreq-chain-down");
    let (upstream, _) = start_counting_upstream().await;
    std::fs::write(dir.join("rpc.password"), "pw").unwrap();
    let toml = config(&format!(
        "[bitrequests]\nnetwork = \"regtest\"\n[bitrequests.chain]\nkind = \"bitcoind\"\n\
         url = \"http://127.0.0.1:1\"\nuser = \"rpc\"\npassword = {{ file = \"{}/rpc.password\" }}\ntimeout_secs = 1\n\
         [bitrequests.onchain]\naddress = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n\n\
         [[services]]\nname = \"a\"\nupstream = \"http://{upstream}\"\nrails = [\"bitreq\"]\nprice = {{ sats = {CHEAP} }}\n",
        dir.display()
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    let r = reqwest::get(proxy.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let ready: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ready["bitcoin"], false, "{ready}");
    // The 402 is still offered (it needs no chain).
    let unpaid = reqwest::get(proxy.url("/x")).await.unwrap();
    assert_eq!(unpaid.status(), 402);
}

/// A wallet of the test's own on `node` (not a fetch process's), funded
/// with one confirmed coin of `sats`.
async fn own_wallet(node: &Bcoin, sats: u64) -> pay402_client::bitreq::Wallet {
    let wallet = node_wallet(node, &hex::encode(rand::random::<[u8; 32]>()));
    let address = wallet.receive_address().await.unwrap();
    node.fund(&address.to_string(), sats)
        .expect("fund the wallet");
    node.mine(1).unwrap();
    wallet.sync().await.unwrap();
    wallet
}

/// A pricer-priced on-chain service: the 402's fresh address is quoted at
/// the pricer's price and `pay402 fetch` pays exactly that on chain; a
/// transaction paying a quote made before the price rose is refused
/// (`quote_below_price`) and never broadcast, and the same transaction is
/// served once the price is back within its quote; a pricer that is down
/// answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pricer_prices_onchain_payments_through_the_proxy() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let node = start_node();
    let dir = temp_dir("bitreq-chain-pricer");
    let (upstream, upstream_seen) = start_counting_upstream().await;
    let sats = Arc::new(AtomicU64::new(5_000));
    let pricer = common::start_sats_pricer("priced", sats.clone()).await;
    let xprv = Xpriv::new_master(Network::Regtest, &rand::random::<[u8; 32]>()).unwrap();
    let xpub = Xpub::from_priv(&Secp256k1::new(), &xprv);
    let toml = config(&format!(
        r#"
[bitrequests]
network = "regtest"
sync_secs = 1
{chain}
[bitrequests.onchain]
xpub = "{xpub}"
accept_unconfirmed_up_to_sats = 10000

{service}"#,
        chain = chain_section(&node, &dir, false),
        service = common::priced_bitreq_service(upstream, pricer),
    ));
    let proxy = Proxy::start(&dir, &toml).await;

    // The 402 quotes a fresh address at the pricer's price.
    let unpaid = reqwest::get(proxy.url("/report")).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    assert_eq!(unpaid.headers()["price"], "5000");
    let info = pay402_core::bitreq::PaymentInfo::from_header_map(unpaid.headers()).unwrap();
    let quoted = info
        .address(Network::Regtest)
        .unwrap()
        .expect("an on-chain offer");
    let wallet = own_wallet(&node, 50_000).await;
    let prepared = wallet
        .prepare_payment(&quoted.script_pubkey(), pay402_core::money::Sat(5_000))
        .await
        .unwrap();
    let tx_hex = pay402_server::bitreq::bitcoin::consensus::encode::serialize_hex(&prepared.tx);
    let txid = prepared.txid().to_string();

    // The price rises before the payment is presented: refused with the new
    // offer, not broadcast (the node never sees it), upstream not called.
    sats.store(6_000, Ordering::SeqCst);
    let stale = present(&proxy, "/report", &tx_hex).await;
    assert_eq!(stale.status(), 402);
    assert_eq!(stale.headers()["price"], "6000");
    let problem: serde_json::Value = stale.json().await.unwrap();
    assert_eq!(problem["reason"], "quote_below_price", "{problem}");
    assert!(
        node.get_raw_transaction_hex(&txid).is_err(),
        "not broadcast"
    );
    assert!(seen(&upstream_seen).is_empty());

    // `pay402 fetch` pays the new price, exactly, on chain.
    let config = fetch_wallet(&node, &dir, "onchain", 50_000).await;
    let (r, _) = pay(&config, &proxy.url("/report")).await;
    assert_eq!(r["offer"], "bitreq onchain", "{r}");
    assert_eq!(r["amount"], "6000 sat", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    let paid_txid = r["proof_id"].as_str().unwrap().to_owned();
    let tx: Transaction =
        deserialize_hex(&node.get_raw_transaction_hex(&paid_txid).unwrap()).unwrap();
    assert!(
        tx.output.iter().any(|o| o.value.to_sat() == 6_000),
        "{tx:?}"
    );

    // The price falls back within the first quote: its transaction is
    // served (broadcast by the proxy), at the quote's price.
    sats.store(5_000, Ordering::SeqCst);
    let served = present(&proxy, "/report", &tx_hex).await;
    assert_eq!(served.status(), 200);
    node.wait_for_tx(&txid, Duration::from_secs(10))
        .expect("the proxy broadcast the payment");
    assert_eq!(
        seen(&upstream_seen),
        [
            format!("bitreq:onchain:{paid_txid}"),
            format!("bitreq:onchain:{txid}")
        ]
    );

    // The pricer is down: 503, never free.
    sats.store(0, Ordering::SeqCst);
    let down = reqwest::get(proxy.url("/report")).await.unwrap();
    assert_eq!(down.status(), 503);
    assert_eq!(seen(&upstream_seen).len(), 2);
}
