//! Never pay twice, even across a crash: a real client process (this test
//! binary, started again as a child with `PAY402_CRASH_ROLE` set) is
//! killed with SIGKILL at a step of a purchase, then started again on the
//! same SQLite journal; the same request must finish the purchase without
//! a second payment, counted on the Lightning node (simnet behind its LND
//! REST face, reached by the child through pay402's LND client) and on the
//! chain (anvil with Circle's USDC).

mod payer_support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use axum::Router;
use axum::routing::get;
use pay402_backends::lnd::{LndConfig, LndRest};
use pay402_backends::simnet::{SimNet, SimNode, rest};
use pay402_client::journal::{EntryState, Journal, JournalRecord, Query};
use pay402_client::x402::{LocalSigner, X402Client};
use pay402_client::{Payer, PayerEvent};
use pay402_core::lightning::{LightningPayer, Network, PayRequest};
use pay402_core::money::Msat;
use pay402_core::offer::{RailChallenge, read_offers};
use pay402_core::problem::Reason;
use pay402_core::rates::TokenUnit;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_server::x402::X402Payment;
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, Usdc};
use payer_support::{l402_app, serve_merged};

const ROLE: &str = "PAY402_CRASH_ROLE";
const PRICE_SAT: u64 = 100;
const PRICE_USDC: u64 = 10_000;
use payer_support::NETWORK;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set for the child"))
}

/// The child: one request through a `Payer` on the journal file; it
/// announces every step on stdout and blocks forever at `PAY402_CRASH_STOP`.
async fn child() {
    let stop = std::env::var("PAY402_CRASH_STOP").ok();
    let journal = Journal::sqlite(var("PAY402_CRASH_JOURNAL")).await.unwrap();
    let mut builder = Payer::builder()
        .journal(journal)
        .on_event(move |e: &PayerEvent| {
            println!(
                "PAY402_CHILD step {} {}",
                e.state,
                e.proof_id.clone().unwrap_or_default()
            );
            if stop.as_deref() == Some(e.state.as_str()) {
                println!("PAY402_CHILD stopped");
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
        });
    builder = match var(ROLE).as_str() {
        "l402" => {
            let lnd = LndConfig::new(var("PAY402_CRASH_LND").parse().unwrap(), Network::Regtest);
            builder.lightning(Arc::new(LndRest::new(lnd).unwrap()), Network::Regtest)
        }
        "x402" => {
            let signer = Arc::new(LocalSigner::from_hex(&var("PAY402_CRASH_KEY")).unwrap());
            let usdc: EvmAddress = var("PAY402_CRASH_USDC").parse().unwrap();
            builder
                .x402(X402Client::builder(signer).allow_asset(
                    NETWORK,
                    usdc,
                    TokenAmount::from_u64(PRICE_USDC),
                ))
                .token(TokenUnit::new(NETWORK, usdc.to_string(), 6))
        }
        other => panic!("unknown role {other}"),
    };
    let payer = builder.build().await.unwrap();
    match payer.get(var("PAY402_CRASH_URL")).await {
        Ok(paid) => {
            let resumed = paid.receipt.as_ref().map(|r| r.resumed);
            let status = paid.status().as_u16();
            let body = paid.text().await.unwrap();
            println!("PAY402_CHILD served {status} resumed={resumed:?} {body}");
        }
        Err(e) => println!(
            "PAY402_CHILD error {} may_have_paid={} {e}",
            e.reason(),
            e.may_have_paid()
        ),
    }
}

/// A child process of this test, and its stdout lines.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(test: &str, envs: &[(&str, String)]) -> Running {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the child client");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // libtest may print `test <name> ... ` on the same line.
                if let Some(i) = line.find("PAY402_CHILD ") {
                    let _ = tx.send(line[i + "PAY402_CHILD ".len()..].to_owned());
                }
            }
        });
        Running { child, lines }
    }

    /// Waits (bounded) for a line starting with `prefix`.
    async fn expect(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let mut other = Vec::new();
        loop {
            match self.lines.try_recv() {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(l) => other.push(l),
                Err(mpsc::TryRecvError::Disconnected) => {
                    panic!("the child ended before printing {prefix:?}; it printed {other:?}")
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {prefix:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the child"); // SIGKILL on Unix
        self.child.wait().unwrap();
    }

    fn finish(mut self) {
        assert!(self.child.wait().unwrap().success());
    }
}

fn journal_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pay402-crash-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    dir.join("journal.sqlite")
}

async fn only_entry(path: &Path) -> JournalRecord {
    let j = Journal::sqlite(path).await.unwrap();
    let mut all = j.payments(&Query::default()).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// A simnet payer node behind its LND REST face, and an L402 server.
struct L402World {
    _net: SimNet,
    merchant: SimNode,
    node: SimNode,
    lnd: String,
    server: payer_support::Merged,
    journal: PathBuf,
}

async fn l402_world(name: &str) -> L402World {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let node = net.add_node("payer", Msat(10_000_000));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lnd = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(rest::serve(node.clone(), listener));
    let server = serve_merged(Some(l402_app(&merchant, PRICE_SAT)), None).await;
    L402World {
        _net: net,
        merchant,
        node,
        lnd,
        server,
        journal: journal_path(name),
    }
}

impl L402World {
    fn envs(&self, stop: Option<&str>) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (ROLE, "l402".to_owned()),
            ("PAY402_CRASH_URL", self.server.url("/paid")),
            ("PAY402_CRASH_LND", self.lnd.clone()),
            ("PAY402_CRASH_JOURNAL", self.journal.display().to_string()),
        ];
        if let Some(s) = stop {
            v.push(("PAY402_CRASH_STOP", s.to_owned()));
        }
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l402_killed_after_paying_pays_once_after_restart() {
    if std::env::var(ROLE).is_ok() {
        return child().await;
    }
    let w = l402_world("l402").await;
    let (node, merchant, server, journal) = (&w.node, &w.merchant, &w.server, &w.journal);
    let envs = |stop| w.envs(stop);
    let test = "l402_killed_after_paying_pays_once_after_restart";

    // Killed after paying (the preimage is in the journal), before the retry.
    let first = Running::start(test, &envs(Some("paid")));
    first.expect("stopped").await;
    first.kill();
    assert_eq!(node.payments_sent(), 1);
    assert_eq!(merchant.balance(), Msat(PRICE_SAT * 1000));
    assert!(server.seen().iter().all(|s| !s.paid), "no retry was sent");
    let entry = only_entry(journal).await;
    assert_eq!(entry.state, EntryState::Paid);

    // Restarted: the same request presents the kept preimage.
    let second = Running::start(test, &envs(None));
    let served = second.expect("served").await;
    second.finish();
    assert!(
        served.starts_with("served 200 resumed=Some(true) paid:"),
        "{served}"
    );
    assert_eq!(node.payments_sent(), 1, "one payment in total on the node");
    assert_eq!(merchant.balance(), Msat(PRICE_SAT * 1000));
    assert_eq!(only_entry(journal).await.state, EntryState::Served);
    assert_eq!(server.seen().iter().filter(|s| s.paid).count(), 1);

    // And once more: the kept token is reused, nothing is paid.
    let third = Running::start(test, &envs(None));
    let served = third.expect("served").await;
    third.finish();
    assert!(served.starts_with("served 200 resumed=None"), "{served}");
    assert_eq!(node.payments_sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l402_killed_between_paying_and_recording_pays_once_after_restart() {
    if std::env::var(ROLE).is_ok() {
        return child().await;
    }
    let w = l402_world("l402-intent").await;
    let (node, merchant, journal) = (&w.node, &w.merchant, &w.journal);
    let envs = |stop| w.envs(stop);
    let test = "l402_killed_between_paying_and_recording_pays_once_after_restart";

    // Killed with only the intent recorded...
    let first = Running::start(test, &envs(Some("intent")));
    first.expect("stopped").await;
    first.kill();
    let entry = only_entry(journal).await;
    assert_eq!(entry.state, EntryState::Intent);
    // ... after its payment had left (as if the node had paid the invoice
    // just before the crash): pay the journaled invoice on the node.
    let stored: serde_json::Value = serde_json::from_str(&entry.offer).unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    for pair in stored["headers"].as_array().unwrap() {
        headers.append(
            reqwest::header::HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(pair[1].as_str().unwrap()).unwrap(),
        );
    }
    let set = read_offers(&headers, stored["body"].as_str().unwrap().as_bytes());
    let RailChallenge::L402(c) = &set.offers[stored["index"].as_u64().unwrap() as usize].challenge
    else {
        panic!("not an L402 offer");
    };
    node.pay_invoice(&PayRequest {
        bolt11: c.invoice.clone(),
        max_fee: Msat(10_000),
        timeout: Duration::from_secs(10),
    })
    .await
    .unwrap();
    assert_eq!(node.payments_sent(), 1);

    // Restarted: the same invoice is paid again, which the node answers with
    // the first payment's preimage; nothing moves twice.
    let second = Running::start(test, &envs(None));
    let served = second.expect("served").await;
    second.finish();
    assert!(
        served.starts_with("served 200 resumed=Some(true)"),
        "{served}"
    );
    assert_eq!(node.payments_sent(), 1, "one payment in total on the node");
    assert_eq!(merchant.balance(), Msat(PRICE_SAT * 1000));
    assert_eq!(only_entry(journal).await.state, EntryState::Served);
}

struct X402World {
    usdc: alloy::primitives::Address,
    payee: alloy::primitives::Address,
    payer: alloy::primitives::Address,
    key: String,
    url: String,
    handled: Arc<AtomicUsize>,
}

async fn x402_world(chain: &Anvil, usdc: &Usdc<'_>, hold: Duration) -> X402World {
    let usdc_address = usdc.address;
    let account = &DEV_ACCOUNTS[3];
    usdc.mint(account.address, U256::from(1_000_000u64))
        .expect("mint");
    let payee = DEV_ACCOUNTS[2].address;
    let layer = payer_support::x402_layer(chain, usdc_address).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&handled);
    let app = Router::new().route(
        "/paid",
        get(move |p: X402Payment| {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                format!("report for {}", p.payer)
            }
        })
        .route_layer(layer.with_route(payer_support::usdc_route(
            usdc_address,
            payee,
            PRICE_USDC,
        ))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    X402World {
        usdc: usdc_address,
        payee,
        payer: account.address,
        key: format!("{}", account.private_key),
        url: format!("http://{addr}/paid"),
        handled,
    }
}

impl X402World {
    fn nonce_spent(&self, usdc: &Usdc<'_>, nonce: &str) -> bool {
        let nonce: B256 = nonce.parse().unwrap();
        usdc.authorization_state(self.payer, nonce).unwrap()
    }

    fn envs(&self, journal: &Path, stop: Option<&str>) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (ROLE, "x402".to_owned()),
            ("PAY402_CRASH_URL", self.url.clone()),
            ("PAY402_CRASH_KEY", self.key.clone()),
            ("PAY402_CRASH_USDC", self.usdc.to_string()),
            ("PAY402_CRASH_JOURNAL", journal.display().to_string()),
        ];
        if let Some(s) = stop {
            v.push(("PAY402_CRASH_STOP", s.to_owned()));
        }
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_killed_after_signing_sends_the_identical_payment_once_after_restart() {
    if std::env::var(ROLE).is_ok() {
        return child().await;
    }
    let chain = Anvil::start().expect("anvil must start (npm registry + glibc >= 2.35 needed)");
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let w = x402_world(&chain, &usdc, Duration::ZERO).await;
    let journal = &journal_path("x402");
    let test = "x402_killed_after_signing_sends_the_identical_payment_once_after_restart";
    let (payee0, payer0) = (
        usdc.balance_of(w.payee).unwrap(),
        usdc.balance_of(w.payer).unwrap(),
    );

    // Killed once the signed payment is journaled, before it is sent.
    let first = Running::start(test, &w.envs(journal, Some("paid")));
    let paid = first.expect("step paid").await;
    first.expect("stopped").await;
    first.kill();
    let nonce = paid.trim_start_matches("step paid ").trim().to_owned();
    let entry = only_entry(journal).await;
    assert_eq!(entry.state, EntryState::Paid);
    assert_eq!(entry.proof_id.as_deref(), Some(nonce.as_str()));
    let signed = entry.proof.clone().unwrap();
    assert!(!w.nonce_spent(&usdc, &nonce));
    assert_eq!(usdc.balance_of(w.payee).unwrap(), payee0);

    // Restarted: the very same signed payment is sent and settled, once.
    let second = Running::start(test, &w.envs(journal, None));
    let served = second.expect("served").await;
    second.finish();
    assert!(
        served.starts_with("served 200 resumed=Some(true) report for"),
        "{served}"
    );
    assert!(
        w.nonce_spent(&usdc, &nonce),
        "the journaled nonce is the one settled"
    );
    assert_eq!(
        usdc.balance_of(w.payee).unwrap(),
        payee0 + U256::from(PRICE_USDC)
    );
    assert_eq!(
        usdc.balance_of(w.payer).unwrap(),
        payer0 - U256::from(PRICE_USDC)
    );
    let entry = only_entry(journal).await;
    assert_eq!(entry.state, EntryState::Served);
    assert_eq!(
        entry.proof.as_deref(),
        Some(signed.as_str()),
        "never re-signed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_killed_while_the_payment_is_in_flight_never_pays_again() {
    if std::env::var(ROLE).is_ok() {
        return child().await;
    }
    // The handler takes 2 s: the child is killed while the server holds the
    // paid request; the server serves and settles it anyway.
    let chain = Anvil::start().expect("anvil must start (npm registry + glibc >= 2.35 needed)");
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let w = x402_world(&chain, &usdc, Duration::from_secs(2)).await;
    let journal = &journal_path("x402-flight");
    let test = "x402_killed_while_the_payment_is_in_flight_never_pays_again";
    let (payee0, payer0) = (
        usdc.balance_of(w.payee).unwrap(),
        usdc.balance_of(w.payer).unwrap(),
    );

    let first = Running::start(test, &w.envs(journal, None));
    let paid = first.expect("step paid").await;
    let nonce = paid.trim_start_matches("step paid ").trim().to_owned();
    payer_support::eventually("the paid request reaches the handler", || {
        w.handled.load(Ordering::SeqCst) == 1
    })
    .await;
    first.kill();
    payer_support::eventually("the settlement", || {
        usdc.balance_of(w.payee).unwrap() == payee0 + U256::from(PRICE_USDC)
    })
    .await;
    assert_eq!(only_entry(journal).await.state, EntryState::Presented);

    // Restarted: the identical payment is sent again (never a new one); the
    // server refuses it as already used; nothing moves twice.
    let second = Running::start(test, &w.envs(journal, None));
    let outcome = second.expect("").await;
    let outcome = if outcome.starts_with("step") {
        loop {
            let l = second.expect("").await;
            if !l.starts_with("step") {
                break l;
            }
        }
    } else {
        outcome
    };
    second.finish();
    assert!(
        outcome.starts_with("error payment_rejected may_have_paid=true"),
        "{outcome}"
    );
    assert!(w.nonce_spent(&usdc, &nonce));
    assert_eq!(
        usdc.balance_of(w.payee).unwrap(),
        payee0 + U256::from(PRICE_USDC)
    );
    assert_eq!(
        usdc.balance_of(w.payer).unwrap(),
        payer0 - U256::from(PRICE_USDC)
    );
    assert_eq!(w.handled.load(Ordering::SeqCst), 1, "served once");
    let entry = only_entry(journal).await;
    assert_eq!(entry.state, EntryState::Failed);
    assert!(entry.counted, "the payment counts against the budgets");
    assert_eq!(entry.proof_id.as_deref(), Some(nonce.as_str()));
}
