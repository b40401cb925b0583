//! Two real x402_mock servers (token endpoint, protected route and their
//! own `SettlementWorker`) in two processes on one PostgreSQL queue, settling
//! real EIP-2612 permits of Circle's USDC on one anvil that mines a block
//! every second, with one-second settlement leases. See the test's comment.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use pay402_backends::x402_mock::{AlloyPermitReader, AlloyPermitSettler, SpenderKey};
use pay402_client::x402::LocalSigner;
use pay402_client::x402_mock::MockClient;
use pay402_core::x402::evm::{Eip2612Permit, EvmAddress};
use pay402_core::x402::mock::{EvmPaymentComponent, MockPermit, MockPermitRequest};
use pay402_core::x402::mock_chain::{PermitReader, PermitSettler, SignedTx, TxStatus};
use pay402_core::x402::{EvmTimestamp, TokenAmount};
use pay402_server::database::Database;
use pay402_server::x402_mock::{
    AcceptedToken, MockConfig, MockPaidToken, MockPaywall, MockPrice, QueueError, RetryPolicy,
    Settlement, SettlementState, SettlementStore,
};
use pay402_testkit::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS};
use pay402_testkit::postgres::Postgres;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::hooked_store::{Hooked, Hooks};
use super::{DB_URL, Instance, env, options, until_stdin_closes};

const PRICE: u64 = 10_000; // 0.01 USDC
const FUNDS: u64 = 1_000_000;
const RESOURCE: &str = "/premium";
/// The spender (both servers' settling key): dev account 1.
const SPENDER: usize = 1;
/// Seconds between two anvil blocks once the payers are funded.
const BLOCK_TIME: u64 = 1;
/// The workers' lease, in seconds: one attempt waits for two blocks
/// (`permit()`, then `transferFrom()`), so it outlasts its lease.
const LEASE: u64 = 1;
const RPC_URL: &str = "PAY402_INSTANCE_RPC_URL";
const USDC: &str = "PAY402_INSTANCE_USDC";
const PAY_TO: &str = "PAY402_INSTANCE_PAY_TO";

fn amount(v: u64) -> TokenAmount {
    TokenAmount::from_u64(v)
}

fn usdc_offer(token: EvmAddress) -> AcceptedToken {
    AcceptedToken::usdc(token, CHAIN_ID, "anvil")
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 20,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(2),
        receipt_timeout: Duration::from_secs(3),
        idle_poll: Duration::from_millis(100),
    }
}

/// The real store with a tally of what this process's worker did to it,
/// printed when the process is told to stop: every transaction signed with
/// a spender nonce the store allocated, every claim, every job it saved as
/// settled, every write refused because another process had taken the job
/// over, the transactions it journaled, and those it found in flight
/// (`permit_sent`, `transfer_sent`) on the jobs it claimed.
struct Tally {
    /// Every transaction the store signed for this process: `nonce:hash`.
    signed: Mutex<Vec<String>>,
    claimed: Mutex<Vec<i64>>,
    settled: Mutex<Vec<i64>>,
    lost: AtomicU64,
    journaled: Mutex<BTreeSet<String>>,
    resumed: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl Hooks for Tally {
    async fn claimed(&self, jobs: &[Settlement]) {
        self.claimed
            .lock()
            .unwrap()
            .extend(jobs.iter().map(|j| j.id));
        self.resumed
            .lock()
            .unwrap()
            .extend(jobs.iter().filter_map(in_flight));
    }
    fn signed(&self, _job: &Settlement, outcome: &Result<SignedTx, QueueError>) {
        match outcome {
            Ok(tx) => {
                self.signed.lock().unwrap().push(format!(
                    "{}:{}",
                    tx.sender_nonce,
                    hex::encode(tx.hash.0)
                ));
                self.journaled
                    .lock()
                    .unwrap()
                    .insert(hex::encode(tx.hash.0));
            }
            Err(QueueError::LeaseLost { .. }) => {
                self.lost.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {}
        }
    }
    fn saved(&self, job: &Settlement, outcome: &Result<(), QueueError>) {
        match outcome {
            Ok(()) => {
                self.journaled.lock().unwrap().extend(in_flight(job));
                if job.state == SettlementState::Settled {
                    self.settled.lock().unwrap().push(job.id);
                }
            }
            Err(QueueError::LeaseLost { .. }) => {
                self.lost.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {}
        }
    }
}

/// The transaction a job in `state` waits for, if any.
fn in_flight(job: &Settlement) -> Option<String> {
    let tx = match job.state {
        SettlementState::PermitSent => job.permit_tx.as_ref(),
        SettlementState::TransferSent => job.transfer_tx.as_ref(),
        _ => None,
    };
    tx.map(|t| hex::encode(t.hash.0))
}

fn ids(list: &Mutex<Vec<i64>>) -> String {
    let list = list.lock().unwrap();
    list.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Role `mock-server`: an x402_mock server with its settlement worker, on
/// its own pool and its own connection to anvil.
pub async fn mock_server() {
    let db = Database::open(&env(DB_URL), &options()).await.unwrap();
    let store = Arc::new(Hooked {
        inner: pay402_server::x402_mock::open_store(&db).await.unwrap(),
        hooks: Tally {
            signed: Mutex::default(),
            claimed: Mutex::default(),
            settled: Mutex::default(),
            lost: AtomicU64::new(0),
            journaled: Mutex::default(),
            resumed: Mutex::default(),
        },
    });
    let settler = AlloyPermitSettler::connect(
        &env(RPC_URL),
        SpenderKey::from_hex(&DEV_ACCOUNTS[SPENDER].private_key.to_string()).unwrap(),
    )
    .await
    .unwrap()
    .with_poll_interval(Duration::from_millis(50));
    let token: EvmAddress = env(USDC).parse().unwrap();
    let config = MockConfig::new(Zeroizing::new(vec![0x42; 32]))
        .accept(usdc_offer(token))
        .retry(retry())
        .settlement_lease(Duration::from_secs(LEASE))
        .pay_to(env(PAY_TO).parse().unwrap());
    let paywall = MockPaywall::new(config, Arc::new(settler), store.clone()).unwrap();
    let layer = paywall
        .protect(RESOURCE, [MockPrice::new(token, amount(PRICE))])
        .unwrap();
    let app = Router::new()
        .route(
            RESOURCE,
            get(
                |MockPaidToken(c): MockPaidToken| async move { format!("premium for {}", c.payer) },
            )
            .route_layer(layer),
        )
        .merge(paywall.token_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let worker = paywall.spawn_worker();
    println!("LISTENING {addr}");
    std::io::stdout().flush().unwrap();
    until_stdin_closes().await;
    worker.shutdown().await;
    let tally = &store.hooks;
    println!("SIGNED {}", tally.signed.lock().unwrap().join(","));
    println!("CLAIMED {}", ids(&tally.claimed));
    println!("SETTLED {}", ids(&tally.settled));
    println!("LOST {}", tally.lost.load(Ordering::SeqCst));
    let list = |set: &Mutex<BTreeSet<String>>| {
        set.lock()
            .unwrap()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    };
    println!("JOURNALED {}", list(&tally.journaled));
    println!("RESUMED {}", list(&tally.resumed));
    std::io::stdout().flush().unwrap();
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A permit of `value` for the spender with `nonce`, signed by `payer`.
fn sign(
    payer: &LocalSigner,
    component: &EvmPaymentComponent,
    spender: EvmAddress,
    value: u64,
    nonce: u64,
) -> MockPermit {
    let deadline = unix_now() + 600;
    let message = Eip2612Permit {
        owner: payer.address(),
        spender,
        value: amount(value),
        nonce: amount(nonce).0,
        deadline: EvmTimestamp::from_u64(deadline),
    };
    let sig = payer
        .sign_digest_sync(&message.signing_hash(&component.domain()))
        .unwrap();
    super::mock_permit::wire(&message, component.token, CHAIN_ID, sig.as_bytes())
}

/// Posts `permit` to a server's token endpoint: the status and body.
async fn post(http: &reqwest::Client, base: &str, permit: &MockPermit) -> (u16, Value) {
    let body = MockPermitRequest {
        version: "Version 0.1".into(),
        permit: permit.clone(),
    };
    let r = http
        .post(format!("{base}/x402-mock/token?resource=%2Fpremium"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_paid(http: &reqwest::Client, base: &str, token: &str) -> (u16, String) {
    let r = http
        .get(format!("{base}{RESOURCE}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// One payer's purchase as the test made it.
struct Purchase {
    /// The payer's index.
    payer: usize,
    /// The permit's nonce.
    nonce: u64,
    /// The permit's value (the allowance it grants).
    value: u64,
    /// The settlement id the accepting server answered with.
    id: i64,
    /// The access token it issued.
    token: Option<String>,
}

fn parse_ids(line: &str) -> Vec<i64> {
    line.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Two x402_mock servers (real token endpoint, real `SettlementWorker`,
/// real alloy settler, all with one spender key) in two processes on one
/// PostgreSQL queue and one anvil with real USDC.
///
/// Twelve payers, thirteen permits: eight signed here with a value of
/// three times the price (so that a second `transferFrom()` of one job
/// would succeed on chain and show in the balances), four of them posted
/// to both servers at once, the other four to one server; four more paid
/// by the real `MockClient` (value = price); and payer 7's second permit
/// (nonce 1, value = price), posted to the other server as soon as its
/// first is executed, which a worker must hold back until the first job's
/// `transferFrom()` is mined (a permit sets the allowance, it does not add
/// to it; whether it had to wait is printed). anvil then mines one block a
/// second, and each worker leases a job for one second while one attempt
/// waits for two blocks: leases run out mid-attempt and the other process
/// takes jobs over while the first still holds its copy. Both processes
/// sign with the one key, each transaction with a nonce the shared store
/// allocated where it journals it.
///
/// Checked: every permit was accepted once (a duplicate answered
/// `permit_replayed`) and its token opens the resource on both servers;
/// every job ends `settled` (none failed, no token revoked), with its
/// `permit()` and `transferFrom()` mined successfully; the spender mined
/// exactly two transactions per job, and the two processes together signed
/// exactly two (each with its own nonce, together the run of nonces the
/// spender mined: no nonce signed twice, nothing re-signed after a clash),
/// each the job's mined transaction; each payer's nonce moved once per
/// permit and it was charged once per permit (`pay_to` got exactly the sum
/// of the prices, each allowance kept its last permit's `value - price`);
/// across both processes each job was saved `settled` exactly once; both
/// processes claimed jobs, at least one job was claimed by both (a lease
/// taken over across processes), and at least one transaction journaled
/// and sent by one process was found in flight and finished by the other.
pub async fn x402_mock_servers_on_two_processes_settle_each_permit_once_on_anvil() {
    let chain =
        Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"));
    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let usdc = chain.deploy_usdc().unwrap();
    let token = EvmAddress(usdc.address);
    let spender = EvmAddress(DEV_ACCOUNTS[SPENDER].address);
    let pay_to = LocalSigner::random().address();
    let component = usdc_offer(token).component(amount(PRICE), spender).unwrap();

    let keys: Vec<[u8; 32]> = (0..12).map(|_| rand::random()).collect();
    let payer = |i: usize| LocalSigner::from_bytes(&keys[i]).unwrap();
    for i in 0..keys.len() {
        usdc.mint(payer(i).address().0, amount(FUNDS).0).unwrap();
    }
    let reader = AlloyPermitReader::connect(&chain.rpc_url()).await.unwrap();
    let observer = AlloyPermitSettler::new(
        reader.clone(),
        SpenderKey::from_hex(&DEV_ACCOUNTS[SPENDER].private_key.to_string()).unwrap(),
    );
    let spender_sent_before = observer.mined_sender_nonce().await.unwrap();
    // From here on a block every second, not one per transaction.
    chain.set_automine(false).unwrap();
    chain
        .rpc("evm_setIntervalMining", json!([BLOCK_TIME]))
        .unwrap();

    let vars = vec![
        (DB_URL, db.url().to_owned()),
        (RPC_URL, chain.rpc_url()),
        (USDC, token.to_string()),
        (PAY_TO, pay_to.to_string()),
    ];
    let mut servers = [
        Instance::spawn("mock-server", &vars),
        Instance::spawn("mock-server", &vars),
    ];
    let wait = Duration::from_secs(60);
    let bases = [
        format!("http://{}", servers[0].line("LISTENING", wait)),
        format!("http://{}", servers[1].line("LISTENING", wait)),
    ];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Eight permits posted: 0..4 to both servers at once, 4..8 to one.
    let mut posts = Vec::new();
    for i in 0..8 {
        let permit = sign(&payer(i), &component, spender, 3 * PRICE, 0);
        let targets: Vec<usize> = if i < 4 { vec![0, 1] } else { vec![i % 2] };
        for server in targets {
            let (http, base, permit) = (http.clone(), bases[server].clone(), permit.clone());
            posts.push(tokio::spawn(async move {
                (i, post(&http, &base, &permit).await)
            }));
        }
    }
    // Four paid by the real client, two through each server.
    let mut clients = Vec::new();
    for i in 8..keys.len() {
        let client = MockClient::builder(Arc::new(payer(i)), Arc::new(reader.clone()))
            .accept(CHAIN_ID, token, amount(PRICE))
            .build();
        let url = format!("{}{RESOURCE}", bases[i % 2]);
        clients.push(tokio::spawn(async move {
            let paid = client.get(&url).await.unwrap();
            assert_eq!(paid.response.status(), 200);
            (i, paid.receipt.unwrap().settlement_id.unwrap())
        }));
    }

    let mut accepted: BTreeMap<usize, (i64, String)> = BTreeMap::new();
    for p in posts {
        let (i, (status, body)) = p.await.unwrap();
        match status {
            200 => {
                let id = body["metadata"]["settlement_id"].as_i64().unwrap();
                let token = body["access_token"].as_str().unwrap().to_owned();
                assert!(
                    accepted.insert(i, (id, token)).is_none(),
                    "permit {i} was accepted twice"
                );
            }
            409 => assert_eq!(body["reason"], "permit_replayed", "{body}"),
            other => panic!("permit {i}: {other} {body}"),
        }
    }
    assert_eq!(accepted.len(), 8, "each posted permit accepted once");
    let mut purchases = Vec::new();
    for (i, (id, token)) in accepted {
        // A token from one server opens the resource on both.
        for base in &bases {
            let (s, body) = get_paid(&http, base, &token).await;
            assert_eq!(s, 200, "{body}");
        }
        purchases.push(Purchase {
            payer: i,
            nonce: 0,
            value: 3 * PRICE,
            id,
            token: Some(token),
        });
    }
    for c in clients {
        let (i, id) = c.await.unwrap();
        purchases.push(Purchase {
            payer: i,
            nonce: 0,
            value: PRICE,
            id,
            token: None,
        });
    }
    // Payer 7's second permit (nonce 1, value = price), accepted once its
    // first is executed, on the other server: its worker must not execute
    // it before the first job's transferFrom() has used that allowance.
    let started = Instant::now();
    while reader.nonces(token, payer(7).address()).await.unwrap() != amount(1).0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "payer 7's first permit never executed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = sign(&payer(7), &component, spender, PRICE, 1);
    let (s, body) = post(&http, &bases[0], &second).await;
    assert_eq!(s, 200, "{body}");
    purchases.push(Purchase {
        payer: 7,
        nonce: 1,
        value: PRICE,
        id: body["metadata"]["settlement_id"].as_i64().unwrap(),
        token: body["access_token"].as_str().map(str::to_owned),
    });
    let ids: BTreeSet<i64> = purchases.iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), purchases.len(), "one job per permit");

    // Every job reaches a final state.
    let queue =
        pay402_server::x402_mock::open_store(&Database::open(db.url(), &options()).await.unwrap())
            .await
            .unwrap();
    let started = Instant::now();
    let second_id = purchases.last().unwrap().id;
    let mut second_waited = false;
    let jobs: BTreeMap<i64, Settlement> = loop {
        let mut jobs = BTreeMap::new();
        for id in &ids {
            jobs.insert(*id, queue.get(*id).await.unwrap().unwrap());
        }
        second_waited |= jobs[&second_id]
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("waiting for settlement"));
        if jobs.values().all(|j| j.state.is_final()) {
            break jobs;
        }
        let pending: Vec<_> = jobs
            .values()
            .filter(|j| !j.state.is_final())
            .map(|j| (j.id, j.state, j.attempts, j.last_error.clone()))
            .collect();
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "jobs still unsettled: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Settled tokens are still honoured by both servers.
    for token in purchases.iter().filter_map(|p| p.token.as_ref()) {
        for base in &bases {
            let (s, body) = get_paid(&http, base, token).await;
            assert_eq!(s, 200, "still served after settlement: {body}");
        }
    }

    // Stop both servers (their workers finish the job they are on) and
    // read what each did.
    let mut signed: Vec<(u64, String)> = Vec::new();
    let mut claimed = Vec::new();
    let mut settled_saves = Vec::new();
    let mut lost = 0u64;
    let (mut journaled, mut resumed) = (Vec::new(), Vec::new());
    let hashes = |line: String| -> BTreeSet<String> {
        line.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for server in &mut servers {
        server.close_stdin();
        for entry in server
            .line("SIGNED", wait)
            .split(',')
            .filter(|e| !e.is_empty())
        {
            let (nonce, hash) = entry.split_once(':').unwrap();
            signed.push((nonce.parse().unwrap(), hash.to_owned()));
        }
        let c: BTreeSet<i64> = parse_ids(&server.line("CLAIMED", wait))
            .into_iter()
            .collect();
        settled_saves.extend(parse_ids(&server.line("SETTLED", wait)));
        lost += server.line("LOST", wait).parse::<u64>().unwrap();
        journaled.push(hashes(server.line("JOURNALED", wait)));
        resumed.push(hashes(server.line("RESUMED", wait)));
        claimed.push(c);
    }
    // Transactions one process journaled and sent, found in flight and
    // driven on by the other.
    let handed_over = resumed[0].intersection(&journaled[1]).count()
        + resumed[1].intersection(&journaled[0]).count();
    chain.set_automine(true).unwrap();

    for p in &purchases {
        let job = &jobs[&p.id];
        assert_eq!(job.state, SettlementState::Settled, "{job:?}");
        assert_eq!(job.failure, None, "{job:?}");
        assert!(!queue.is_revoked(&job.job.digest).await.unwrap(), "{job:?}");
        for tx in [&job.permit_tx, &job.transfer_tx] {
            let hash = tx.as_ref().unwrap().hash;
            assert!(
                matches!(
                    observer.receipt(&hash).await.unwrap(),
                    Some(TxStatus::Success { .. })
                ),
                "{job:?}"
            );
        }
    }
    for i in 0..keys.len() {
        let mine: Vec<&Purchase> = purchases.iter().filter(|p| p.payer == i).collect();
        let count = u64::try_from(mine.len()).unwrap();
        let last = mine.iter().max_by_key(|p| p.nonce).unwrap();
        let owner = payer(i).address();
        assert_eq!(reader.nonces(token, owner).await.unwrap(), amount(count).0);
        assert_eq!(
            reader.balance_of(token, owner).await.unwrap(),
            amount(FUNDS - count * PRICE),
            "payer {owner} charged once per permit"
        );
        assert_eq!(
            reader.allowance(token, owner, spender).await.unwrap(),
            amount(last.value - PRICE),
            "one transferFrom() from {owner}'s last allowance"
        );
    }
    let n = u64::try_from(purchases.len()).unwrap();
    assert_eq!(
        reader.balance_of(token, pay_to).await.unwrap(),
        amount(n * PRICE),
        "pay_to got each price once"
    );
    assert_eq!(
        observer.mined_sender_nonce().await.unwrap(),
        spender_sent_before + 2 * n,
        "one permit() and one transferFrom() mined per job, nothing else"
    );
    // The spender's nonces, allocated in the database for both processes:
    // no nonce signed twice, no transaction signed again after a clash,
    // and every nonce from the first to the last used by a settlement
    // transaction that was mined.
    let mut nonces: Vec<u64> = signed.iter().map(|(n, _)| *n).collect();
    nonces.sort_unstable();
    let distinct: BTreeSet<u64> = nonces.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        nonces.len(),
        "a spender nonce was signed twice: {signed:?}"
    );
    assert_eq!(
        nonces,
        (spender_sent_before..spender_sent_before + 2 * n).collect::<Vec<u64>>(),
        "two signatures per job, one nonce each, none re-signed"
    );
    let signed_hashes: BTreeSet<String> = signed.iter().map(|(_, h)| h.clone()).collect();
    let mined_hashes: BTreeSet<String> = jobs
        .values()
        .flat_map(|j| [&j.permit_tx, &j.transfer_tx])
        .map(|t| hex::encode(t.as_ref().unwrap().hash.0))
        .collect();
    assert_eq!(
        signed_hashes, mined_hashes,
        "every signed transaction is a job's mined one"
    );
    settled_saves.sort_unstable();
    assert_eq!(
        settled_saves,
        ids.iter().copied().collect::<Vec<_>>(),
        "each job saved settled once, by one process"
    );
    let both: Vec<_> = claimed[0].intersection(&claimed[1]).collect();
    let attempts: Vec<_> = jobs.values().map(|j| j.attempts).collect();
    println!(
        "claims: process one {:?}, process two {:?}; taken over across processes {both:?}; \
         writes refused for a lost lease {lost}; transactions in flight handed over {handed_over}; \
         attempts per job {attempts:?}; payer 7's second permit held back {second_waited}; \
         spender transactions signed {} for {n} jobs",
        claimed[0],
        claimed[1],
        signed.len()
    );
    assert!(
        !claimed[0].is_empty() && !claimed[1].is_empty(),
        "both workers claimed jobs"
    );
    assert!(
        !both.is_empty(),
        "a lease ran out and the other process took the job over"
    );
    assert!(
        handed_over > 0,
        "a transaction sent by one process was finished by the other"
    );
}
