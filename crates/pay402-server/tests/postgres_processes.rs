//! Several server processes on one PostgreSQL database, sharing nothing
//! else (no memory, no files): each child is this very test binary run
//! again in a role (`PAY402_INSTANCE_ROLE`), opening its own pool with
//! `Database::open(url)`.
//!
//! - `a_bitrequests_txid_used_on_one_process_is_refused_on_the_other`: two
//!   BitRequests servers on a real bcoin regtest node; a payment quoted and
//!   broadcast through one, mined, then presented ten times at once across
//!   both, is served exactly once; every other presentation, on either
//!   process, is refused `payment_already_used`.
//! - `x402_mock_leases_are_never_held_by_two_worker_processes_at_once`: two
//!   worker processes (three tasks each) race on one settlement queue with
//!   one-second leases and work that often outlasts them. Each worker adds
//!   one to a job's `attempts` per claim and saves with the lease it was
//!   given; were a job ever held by two workers at once, both would save
//!   the same count and an increment would be lost. The sum of the jobs'
//!   counts equals the number of successful saves across both processes,
//!   and saves after a lost lease were refused (`LeaseLost`). The store
//!   alone, driven by hand.
//! - `x402_mock_servers_on_two_processes_settle_each_permit_once_on_anvil`
//!   (in `x402_mock_processes/`): the real thing. Two x402_mock servers
//!   (`MockPaywall`: token endpoint, protected route, and its real
//!   `SettlementWorker` with the alloy settler, one spender key for both)
//!   on one queue, and one anvil with Circle's USDC mining a block a
//!   second. Twelve payers, thirteen permits: eight posted here (value
//!   three times the price, four of them to both servers at once), four
//!   paid by the real `MockClient`, and one payer's second permit, posted
//!   as soon as its first is executed. Workers lease a job for one second while an
//!   attempt waits for two blocks, so leases run out mid-attempt and jobs
//!   (and transactions already sent) pass from one process to the other.
//!   Every permit is accepted once (the duplicate: `permit_replayed`), its
//!   token opens the resource on both servers, every job ends `settled`
//!   with its `permit()` and `transferFrom()` mined, no token is revoked,
//!   the spender mined exactly two transactions per job and the two
//!   processes signed exactly those (each spender nonce, allocated in the
//!   database, signed once: no clash, no re-sign), each payer's nonce
//!   moved and it was charged once per permit (`pay_to` holds exactly the
//!   prices; each allowance kept `value - price`), each job was saved `settled` by
//!   exactly one process, both processes claimed jobs, jobs were claimed by
//!   both, and transactions journaled by one were finished by the other.
//!
//! The test harness is this file's own `main` (`harness = false`), so the
//! children need no other binary. PostgreSQL (`pay402-testkit`), bcoin and
//! anvil are started here; a test fails, never skips, when they cannot
//! start.
#![cfg(all(feature = "x402-mock", feature = "bitreq"))]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Address, Network, OutPoint, ScriptBuf, Txid};
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_core::bitreq::onchain::build_payment;
use pay402_core::bitreq::{PaymentInfo, SpendKind, SpendableUtxo};
use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_server::Price;
use pay402_server::bitreq::{BitreqConfig, BitreqPayment, BitreqServer, OnChainConfig};
use pay402_server::database::{Database, DatabaseOptions};
use pay402_server::x402_mock::{QueueError, SettlementStore};
use pay402_testkit::bcoin::Bcoin;
use pay402_testkit::postgres::Postgres;

#[path = "common/hooked_store.rs"]
mod hooked_store;
#[path = "common/mock_jobs.rs"]
mod mock_jobs;
#[path = "common/mock_permit.rs"]
mod mock_permit;
mod x402_mock_processes;

const ROLE: &str = "PAY402_INSTANCE_ROLE";
const DB_URL: &str = "PAY402_INSTANCE_DB_URL";
const PRICE: u64 = 5_000;

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("bitreq") => runtime().block_on(bitreq_instance()),
        Ok("lease-worker") => runtime().block_on(lease_worker()),
        Ok("mock-server") => runtime().block_on(x402_mock_processes::mock_server()),
        Ok(other) => panic!("unknown role {other:?}"),
        Err(_) => run_tests(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

type TestFn = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// Runs every test whose name contains the first free argument (all
/// without one), like libtest's filter; a failing test panics, which
/// fails the binary.
fn run_tests() {
    let tests: [(&str, TestFn); 3] = [
        (
            "a_bitrequests_txid_used_on_one_process_is_refused_on_the_other",
            || Box::pin(a_bitrequests_txid_used_on_one_process_is_refused_on_the_other()),
        ),
        (
            "x402_mock_leases_are_never_held_by_two_worker_processes_at_once",
            || Box::pin(x402_mock_leases_are_never_held_by_two_worker_processes_at_once()),
        ),
        (
            "x402_mock_servers_on_two_processes_settle_each_permit_once_on_anvil",
            || {
                Box::pin(
                    x402_mock_processes::x402_mock_servers_on_two_processes_settle_each_permit_once_on_anvil(),
                )
            },
        ),
    ];
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let chosen: Vec<_> = tests.iter().filter(|(n, _)| n.contains(&filter)).collect();
    println!("\nrunning {} tests", chosen.len());
    for (name, test) in &chosen {
        let started = Instant::now();
        runtime().block_on(test());
        println!("test {name} ... ok ({:?})", started.elapsed());
    }
    println!(
        "\ntest result: ok. {} passed; 0 failed; {} filtered out\n",
        chosen.len(),
        tests.len() - chosen.len()
    );
}

/// A child process of this binary in `role`, killed when dropped; its
/// stdin stays open (a child exits when it closes).
struct Instance {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Instance {
    fn spawn(role: &str, env: &[(&str, String)]) -> Instance {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("the test binary runs again as an instance");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Instance { child, lines }
    }

    /// Closes the child's stdin: it stops, printing what it has to say.
    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// The first line starting with `prefix`, without it.
    fn line(&self, prefix: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {prefix:?} line from the instance: {e}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // By its own PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Blocks until the parent closes our stdin (or dies).
async fn until_stdin_closes() {
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .unwrap();
}

fn options() -> DatabaseOptions {
    DatabaseOptions::default()
        .max_connections(6)
        .acquire_timeout(Duration::from_secs(5))
}

// ---------------------------------------------------------------- BitRequests

/// Role `bitreq`: a BitRequests on-chain server on its own pool.
async fn bitreq_instance() {
    let db = Database::open(&env(DB_URL), &options()).await.unwrap();
    let store = pay402_server::bitreq::store::open(&db).await.unwrap();
    let rpc = Arc::new(
        BitcoindRpc::new(BitcoindConfig {
            url: env("PAY402_INSTANCE_RPC_URL").parse().unwrap(),
            user: env("PAY402_INSTANCE_RPC_USER"),
            password: env("PAY402_INSTANCE_RPC_PASSWORD"),
            timeout: Duration::from_secs(30),
        })
        .unwrap(),
    );
    let xpub = Xpub::from_str(&env("PAY402_INSTANCE_XPUB")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = BitreqConfig::new(Network::Regtest)
        .public_url(format!("http://{addr}"))
        .onchain(OnChainConfig::derived(xpub));
    let server = BitreqServer::new(config, rpc, store).unwrap();
    let app = Router::new().route(
        "/report",
        get(|paid: BitreqPayment| async move { format!("paid {}", paid.reference) })
            .route_layer(server.layer(Price::sats(PRICE))),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("LISTENING {addr}");
    std::io::stdout().flush().unwrap();
    until_stdin_closes().await;
}

fn fresh_key(tag: &str) -> SecretKey {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seed = format!("pay402-processes-{tag}-{}-{nanos}", std::process::id());
    SecretKey::from_slice(sha256::Hash::hash(seed.as_bytes()).as_byte_array()).unwrap()
}

async fn a_bitrequests_txid_used_on_one_process_is_refused_on_the_other() {
    let node = Bcoin::start().unwrap_or_else(|e| panic!("the bcoin test peer must start: {e}"));
    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let secp = Secp256k1::new();
    let seed = fresh_key("seed");
    let xprv = Xpriv::new_master(Network::Regtest, &seed.secret_bytes()).unwrap();
    let xpub = Xpub::from_priv(&secp, &xprv);
    let vars = vec![
        (DB_URL, db.url().to_owned()),
        ("PAY402_INSTANCE_RPC_URL", node.rpc_url()),
        ("PAY402_INSTANCE_RPC_USER", node.rpc_user().to_owned()),
        (
            "PAY402_INSTANCE_RPC_PASSWORD",
            node.rpc_password().to_owned(),
        ),
        ("PAY402_INSTANCE_XPUB", xpub.to_string()),
    ];
    let one = Instance::spawn("bitreq", &vars);
    let two = Instance::spawn("bitreq", &vars);
    let wait = Duration::from_secs(60);
    let urls = [
        format!("http://{}/report", one.line("LISTENING", wait)),
        format!("http://{}/report", two.line("LISTENING", wait)),
    ];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Quotes from both processes never share an address (one counter).
    let mut quoted = Vec::new();
    for url in urls.iter().chain(urls.iter()) {
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 402);
        let info = PaymentInfo::from_header_map(r.headers()).unwrap();
        quoted.push(
            info.address(Network::Regtest)
                .unwrap()
                .unwrap()
                .script_pubkey(),
        );
    }
    let distinct: std::collections::HashSet<_> = quoted.iter().collect();
    assert_eq!(distinct.len(), quoted.len(), "an address was quoted twice");

    // Pay the first quote of process one; it broadcasts and records it.
    let payer = fresh_key("payer");
    let change = ScriptBuf::new_p2wpkh(
        &bitcoin::CompressedPublicKey(payer.public_key(&secp)).wpubkey_hash(),
    );
    let rpc = BitcoindRpc::new(BitcoindConfig {
        url: node.rpc_url().parse().unwrap(),
        user: node.rpc_user().to_owned(),
        password: node.rpc_password().to_owned(),
        timeout: Duration::from_secs(30),
    })
    .unwrap();
    let address = Address::from_script(&change, Network::Regtest).unwrap();
    let funding: Txid = node
        .fund(&address.to_string(), 50_000)
        .unwrap()
        .parse()
        .unwrap();
    let info = rpc.get_transaction(&funding).await.unwrap().unwrap();
    let vout = info
        .tx
        .output
        .iter()
        .position(|o| o.script_pubkey == change)
        .unwrap();
    node.mine(1).unwrap();
    let utxo = SpendableUtxo {
        outpoint: OutPoint::new(funding, u32::try_from(vout).unwrap()),
        amount: Sat(50_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let tx = build_payment(&[utxo], &quoted[0], Sat(PRICE), &change, Sat(1_000)).unwrap();
    let txid = tx.compute_txid();
    let hex_tx = serialize_hex(&tx);
    let r = http
        .get(&urls[0])
        .header("Bitcoin-Transaction", &hex_tx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "awaiting its confirmation");
    node.mine(1).unwrap();

    // Ten presentations at once, split across both processes.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let req = http
                .get(&urls[i % 2])
                .header("Bitcoin-Transaction", &hex_tx);
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                (i % 2, status, r.text().await.unwrap())
            })
        })
        .collect();
    let mut served = Vec::new();
    for t in tasks {
        let (process, status, body) = t.await.unwrap();
        match status {
            200 => {
                assert_eq!(body, format!("paid {txid}"));
                served.push(process);
            }
            409 => {
                let p: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(p["reason"], "payment_already_used", "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(served.len(), 1, "served exactly once: {served:?}");
    // And later, on each process: refused.
    for url in &urls {
        let r = http
            .get(url)
            .header("Bitcoin-Transaction", &hex_tx)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
    }
    drop((one, two));
}

// ------------------------------------------------------------ x402_mock leases

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Role `lease-worker`: three tasks claim jobs with one-second leases,
/// "work" 0 to 1.5 s, add one to the job's `attempts` and save with the
/// lease they were given (releasing it). Prints what happened.
async fn lease_worker() {
    let db = Database::open(&env(DB_URL), &options()).await.unwrap();
    let store = pay402_server::x402_mock::open_store(&db).await.unwrap();
    let run_for = Duration::from_secs(env("PAY402_INSTANCE_SECONDS").parse().unwrap());
    let deadline = Instant::now() + run_for;
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { lease_loop(store, deadline).await })
        })
        .collect();
    let (mut saves, mut lost, mut claims) = (0u64, 0u64, 0u64);
    for t in tasks {
        let (s, l, c) = t.await.unwrap();
        saves += s;
        lost += l;
        claims += c;
    }
    println!("RESULT {saves} {lost} {claims}");
    std::io::stdout().flush().unwrap();
}

async fn lease_loop(store: Arc<dyn SettlementStore>, deadline: Instant) -> (u64, u64, u64) {
    let (mut saves, mut lost, mut claims) = (0, 0, 0);
    while Instant::now() < deadline {
        let now = unix_now();
        let Some(mut job) = store.claim_due(now, now + 1, 1).await.unwrap().pop() else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        claims += 1;
        let held = job.lease_until;
        let work = rand::Rng::gen_range(&mut rand::thread_rng(), 0..1_500);
        tokio::time::sleep(Duration::from_millis(work)).await;
        job.attempts += 1;
        job.lease_until = 0;
        match store.save(&job, held).await {
            Ok(()) => saves += 1,
            Err(QueueError::LeaseLost { .. }) => lost += 1,
            Err(e) => panic!("save: {e}"),
        }
    }
    (saves, lost, claims)
}

async fn x402_mock_leases_are_never_held_by_two_worker_processes_at_once() {
    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let queue =
        pay402_server::x402_mock::open_store(&Database::open(db.url(), &options()).await.unwrap())
            .await
            .unwrap();
    let mut ids = Vec::new();
    for nonce in 0..4 {
        ids.push(
            queue
                .enqueue(mock_jobs::job(nonce, u8::try_from(nonce).unwrap()))
                .await
                .unwrap(),
        );
    }
    let vars = vec![
        (DB_URL, db.url().to_owned()),
        ("PAY402_INSTANCE_SECONDS", "6".to_owned()),
    ];
    let workers = [
        Instance::spawn("lease-worker", &vars),
        Instance::spawn("lease-worker", &vars),
    ];
    let (mut saves, mut lost, mut claims) = (0u64, 0u64, 0u64);
    for w in &workers {
        let result = w.line("RESULT", Duration::from_secs(60));
        let n: Vec<u64> = result.split(' ').map(|v| v.parse().unwrap()).collect();
        assert!(n[0] > 0, "each process saved some work: {result}");
        saves += n[0];
        lost += n[1];
        claims += n[2];
    }
    let mut counted = 0u64;
    for id in ids {
        counted += u64::from(queue.get(id).await.unwrap().unwrap().attempts);
    }
    assert_eq!(
        counted, saves,
        "every successful save counted once: no job was held by two workers at once"
    );
    assert!(
        lost > 0,
        "leases ran out and were taken over ({claims} claims)"
    );
    assert_eq!(saves + lost, claims);
}
