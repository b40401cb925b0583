//! Real `pay402 facilitator` processes on anvil (Circle's USDC) and a
//! PostgreSQL test peer: configuration, start and kill, signed payments,
//! `/settle` calls, and reads of the chain and of the settlement store.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256, keccak256};
use pay402_client::x402::LocalSigner;
use pay402_core::x402::evm::{Bytes32, Eip712Domain, EvmAddress, TransferAuthorization};
use pay402_core::x402::{
    EvmTimestamp, ExactEvmPayload, Extra, PaymentPayloadV2, PaymentRequest, PaymentRequirements,
    TokenAmount,
};
use pay402_testkit::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION};
use pay402_testkit::postgres::{Database, Postgres};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_pay402");
pub const NETWORK: &str = "eip155:31337";
pub const API_KEY: &str = "facilitator-api-key-0123456789abcdef0123";

/// The facilitator's settling key (pays the gas) and the payee.
pub fn settling_key() -> B256 {
    DEV_ACCOUNTS[1].private_key
}
pub fn settling_address() -> Address {
    DEV_ACCOUNTS[1].address
}
pub fn payee() -> Address {
    DEV_ACCOUNTS[3].address
}

pub fn start_chain() -> Anvil {
    Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"))
}

pub fn start_postgres() -> (&'static Postgres, Database) {
    let pg = Postgres::shared()
        .unwrap_or_else(|e| panic!("PostgreSQL (the test peer) could not start: {e}"));
    let db = pg
        .create_database()
        .unwrap_or_else(|e| panic!("a fresh PostgreSQL database: {e}"));
    (pg, db)
}

/// A fresh directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir =
        std::env::temp_dir().join(format!("pay402-cli-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `facilitator.toml` (and its secret files) into `dir` for `asset`
/// on `chain`, with the store URL `store` and the extra keys `extra`.
pub fn write_config(
    dir: &Path,
    chain: &Anvil,
    asset: Address,
    store: &str,
    extra: &str,
) -> PathBuf {
    std::fs::write(dir.join("rpc_url"), chain.rpc_url()).unwrap();
    std::fs::write(dir.join("key"), format!("{}\n", settling_key())).unwrap();
    std::fs::write(dir.join("api-key"), API_KEY).unwrap();
    std::fs::write(dir.join("store_url"), store).unwrap();
    let path = dir.join("facilitator.toml");
    std::fs::write(
        &path,
        format!(
            r#"listen = "127.0.0.1:0"
network = "{NETWORK}"
rpc_url = {{ file = "{dir}/rpc_url" }}
key = {{ file = "{dir}/key" }}
api_keys = [{{ file = "{dir}/api-key" }}]
store = {{ file = "{dir}/store_url" }}
{extra}

[[assets]]
address = "{asset}"
name = "{USDC_NAME}"
version = "{USDC_VERSION}"
"#,
            dir = dir.display(),
        ),
    )
    .unwrap();
    path
}

/// A running `pay402 facilitator`; its log lines are kept.
pub struct Facilitator {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Facilitator {
    /// Starts `pay402 facilitator --config <config>` with `env` and waits
    /// for its address.
    pub async fn start(config: &Path, env: &[(&str, &str)]) -> Facilitator {
        let mut cmd = Command::new(BIN);
        cmd.args(["facilitator", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("PAY402_CRASH_AT")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the pay402 binary runs");
        let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = reader.next_line().await.unwrap() {
                eprintln!("[facilitator] {line}");
                lines.lock().unwrap().push(line.clone());
                if line.contains("pay402 facilitator listening") {
                    let v: Value = serde_json::from_str(&line).unwrap();
                    return v["address"].as_str().unwrap().parse().unwrap();
                }
            }
            panic!("the facilitator exited before listening");
        })
        .await
        .expect("the facilitator announced its address in time");
        let kept = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[facilitator] {line}");
                kept.lock().unwrap().push(line);
            }
        });
        Facilitator { child, addr, lines }
    }

    /// Whether a log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Waits for the process to end (it was killed) and returns its signal.
    pub async fn killed_by(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the facilitator ended")
            .unwrap();
        status.signal()
    }
}

/// Runs `pay402 facilitator reconcile --config <config>`: (exit code, the
/// JSON report).
pub async fn reconcile(config: &Path) -> (i32, Value) {
    let out = Command::new(BIN)
        .args(["facilitator", "reconcile", "--config"])
        .arg(config)
        .env_remove("PAY402_CRASH_AT")
        .output()
        .await
        .expect("the pay402 binary runs");
    eprintln!("[reconcile] {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "reconcile printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// A payer with `units` of USDC minted to it.
/// What the payee received since `before`, once it equals `expected` or
/// after 10 s: anvil mines a broadcast transaction on its own task, so a
/// transfer sent just before a crash may land a moment after it.
pub async fn payee_received(
    usdc: &pay402_testkit::anvil::Usdc<'_>,
    before: U256,
    expected: U256,
) -> U256 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let moved = usdc.balance_of(payee()).unwrap() - before;
        if moved == expected || tokio::time::Instant::now() > deadline {
            return moved;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn funded_payer(usdc: &pay402_testkit::anvil::Usdc<'_>, units: u64) -> LocalSigner {
    let payer = LocalSigner::random();
    usdc.mint(payer.address().0, U256::from(units))
        .expect("mint USDC");
    payer
}

/// A v2 `exact` payment of `amount` from `payer` to [`payee`], with a
/// nonce derived from `seed`.
pub fn payment(asset: Address, payer: &LocalSigner, amount: u64, seed: &str) -> PaymentRequest {
    let requirements = PaymentRequirements {
        scheme: "exact".into(),
        network: NETWORK.into(),
        amount: TokenAmount::from_u64(amount),
        asset: asset.to_string(),
        pay_to: payee().to_string(),
        max_timeout_seconds: 600,
        extra: Some(Extra::eip712(USDC_NAME, USDC_VERSION)),
    };
    payment_for(requirements, payer, seed)
}

/// A v2 `exact` payment of `requirements` (an offer of a 402) from
/// `payer`, with a nonce derived from `seed`.
pub fn payment_for(
    requirements: PaymentRequirements,
    payer: &LocalSigner,
    seed: &str,
) -> PaymentRequest {
    let asset: Address = requirements.asset.parse().expect("asset address");
    let pay_to: Address = requirements.pay_to.parse().expect("payTo address");
    let amount = requirements.amount;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let authorization = TransferAuthorization {
        from: payer.address(),
        to: EvmAddress(pay_to),
        value: amount,
        valid_after: EvmTimestamp::from_u64(0),
        valid_before: EvmTimestamp::from_u64(now + requirements.max_timeout_seconds.min(900)),
        nonce: Bytes32(keccak256(format!("pay402 shared-key {seed}")).0),
    };
    let domain = Eip712Domain::new(USDC_NAME, USDC_VERSION, CHAIN_ID, EvmAddress(asset));
    let signature = payer
        .sign_digest_sync(&authorization.signing_hash(&domain))
        .expect("sign");
    PaymentRequest::v2(
        PaymentPayloadV2 {
            x402_version: 2,
            resource: None,
            accepted: requirements.clone(),
            payload: ExactEvmPayload {
                signature,
                authorization,
            },
            extensions: None,
        },
        requirements,
    )
}

/// The authorization nonce of a payment.
pub fn nonce_of(p: &PaymentRequest) -> B256 {
    B256::from(p.exact_payload().authorization.nonce.0)
}

/// `POST /settle`: (status, body), or `None` when the connection failed
/// (the process died).
pub async fn settle(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    request: &PaymentRequest,
) -> Option<(u16, Value)> {
    let resp = http
        .post(format!("http://{addr}/settle"))
        .bearer_auth(API_KEY)
        .json(request)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.ok()?;
    Some((status, body))
}

/// The signer's nonce on chain: (mined, pending).
pub fn chain_nonces(chain: &Anvil, address: Address) -> (u64, u64) {
    let get = |tag: &str| {
        let v = chain
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([address.to_string(), tag]),
            )
            .unwrap();
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    (get("latest"), get("pending"))
}

/// The nonce of a mined transaction.
pub fn tx_nonce(chain: &Anvil, hash: &str) -> u64 {
    let v = chain
        .rpc("eth_getTransactionByHash", serde_json::json!([hash]))
        .unwrap();
    u64::from_str_radix(v["nonce"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The `Transfer` events of `asset` to [`payee`] from `from` (topics
/// filtered on chain).
pub fn transfers_to_payee(chain: &Anvil, asset: Address, from: Address) -> Vec<Value> {
    let transfer = keccak256("Transfer(address,address,uint256)");
    let logs = chain
        .rpc(
            "eth_getLogs",
            serde_json::json!([{
                "address": asset.to_string(),
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [transfer.to_string(), from.into_word().to_string(), payee().into_word().to_string()],
            }]),
        )
        .unwrap();
    logs.as_array().unwrap().clone()
}

/// One value of a psql query.
pub fn sql(pg: &Postgres, db: &Database, query: &str) -> String {
    pg.psql(db.name(), query)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .trim()
        .to_owned()
}

/// A running `pay402 proxy` (killed on drop), started with
/// `PAY402_CRASH_AT` set to a crash point or removed.
pub struct ProxyProcess {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl ProxyProcess {
    /// Writes `toml` to `dir/pay402.toml`, starts the proxy and waits for
    /// its address.
    pub async fn start(dir: &Path, toml: &str, crash_at: Option<&str>) -> ProxyProcess {
        let path = dir.join("pay402.toml");
        std::fs::write(&path, toml).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["proxy", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .env_remove("PAY402_CRASH_AT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(step) = crash_at {
            cmd.env("PAY402_CRASH_AT", step);
        }
        let mut child = cmd.spawn().expect("the pay402 binary runs");
        let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = reader.next_line().await.unwrap() {
                eprintln!("[proxy] {line}");
                if line.contains("pay402 proxy listening") {
                    let v: Value = serde_json::from_str(&line).unwrap();
                    return v["address"].as_str().unwrap().parse().unwrap();
                }
            }
            panic!("the proxy exited before listening");
        })
        .await
        .expect("the proxy announced its address in time");
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[proxy] {line}");
            }
        });
        ProxyProcess { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The store's next nonce of the settling key.
pub fn store_next_nonce(pg: &Postgres, db: &Database) -> String {
    let signer = settling_address().to_string().to_ascii_lowercase();
    sql(
        pg,
        db,
        &format!("SELECT next_nonce FROM pay402_facilitator_nonces WHERE address = '{signer}'"),
    )
}

/// Asserts that `payer` paid [`payee`] `price` exactly once since the
/// balances `before` (payee, payer) were read.
pub fn assert_paid_once(
    usdc: &pay402_testkit::anvil::Usdc<'_>,
    payer: Address,
    before: (U256, U256),
    price: u64,
) {
    assert_eq!(
        usdc.balance_of(payee()).unwrap() - before.0,
        U256::from(price),
        "the payee got the payment once"
    );
    assert_eq!(
        before.1 - usdc.balance_of(payer).unwrap(),
        U256::from(price),
        "the payer paid once"
    );
    assert_eq!(
        transfers_to_payee(usdc.anvil(), usdc.address, payer).len(),
        1,
        "one Transfer event"
    );
}
