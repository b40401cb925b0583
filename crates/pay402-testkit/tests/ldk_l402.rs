//! L402 over real Lightning: two embedded ldk-node nodes
//! (`pay402_backends::ldk::LdkNode`) with a real channel, funded and
//! confirmed on a real Bitcoin regtest chain (bcoin), and the full flow
//! through `pay402-server` and `pay402-client`:
//!
//! 1. unpaid request → 402 with an L402 challenge;
//! 2. the client pays the merchant node's invoice over the channel → 200;
//!    the merchant's balance rises by exactly the price and the payer's
//!    outbound capacity drops by the price plus the fee;
//! 3. the cached token is reused → 200 and nothing is paid;
//! 4. a route priced above the channel capacity → a typed
//!    `ClientError::Payment(PaymentFailed)`, nothing is charged, and the
//!    server still serves (and is paid for) the cheap route afterwards;
//! 5. the ports directly: invoice states, concurrent and repeated payment of
//!    one invoice (paid once), a payment timing out in flight (`Unknown`) and
//!    then tracked to completion without a second send, and a node refusing
//!    its own invoice;
//! 6. the merchant restarts from its storage directory with the same node id,
//!    channel and payment history.
//!
//! The test installs and starts bcoin on first use and fails (never skips)
//! with a message saying what is missing when it cannot.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use pay402_backends::ldk::{ChainSource, LdkConfig, LdkLog, LdkNode, Status};
use pay402_client::{ClientError, L402Client};
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, Network,
    PayRequest, PaymentHash,
};
use pay402_core::money::{Msat, Sat};
use pay402_server::store::MemoryStore;
use pay402_server::{L402Config, L402Layer, Price};
use pay402_testkit::bcoin::Bcoin;

const PAYER_FUNDING: Sat = Sat(2_000_000);
/// The merchant only needs an on-chain anchor reserve to accept the channel.
const MERCHANT_FUNDING: Sat = Sat(100_000);
const CHANNEL: Sat = Sat(500_000);
/// Pushed to the merchant at opening so its side starts above its channel
/// reserve: then its outbound capacity moves by exactly what it receives.
const PUSH: Sat = Sat(100_000);
const PRICE: Sat = Sat(1_000);
const OVER_CAPACITY_PRICE: Sat = Sat(600_000);
const MAX_FEE: Msat = Msat(10_000);

/// Bound on each wait for the chain or the channel.
const CHAIN_WAIT: Duration = Duration::from_secs(30);
/// Bound on each wait for balances to settle after a payment.
const SETTLE_WAIT: Duration = Duration::from_secs(15);

fn msat(s: Sat) -> Msat {
    s.to_msat().expect("amount fits in msat")
}

/// Polls `check` (every 50 ms to 250 ms) until it returns `Ok(Some(_))`,
/// failing the test with `what` and the last observation after `timeout`.
fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(v)) => {
                eprintln!("  [{:>6.2?}] {what}", start.elapsed());
                return v;
            }
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last observation: {last}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Async twin of [`wait_until`] for checks made from the test's runtime.
async fn wait_until_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => {
                eprintln!("  [{:>6.2?}] {what}", start.elapsed());
                return v;
            }
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last observation: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node storage directory, removed when the test passes and kept (with
/// ldk-node's log in it) when it fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("pay402-ldk-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "keeping {} for inspection (ldk_node.log inside)",
                self.0.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn start_node(btc: &Bcoin, dir: &TempDir, alias: &str) -> LdkNode {
    let config = LdkConfig::new(
        Network::Regtest,
        &dir.0,
        ChainSource::BitcoindRpc {
            host: btc.rpc_host().to_owned(),
            port: btc.rpc_port(),
            user: btc.rpc_user().to_owned(),
            password: btc.rpc_password().to_owned(),
        },
    )
    .listen("127.0.0.1:0".parse().expect("socket address"))
    .alias(alias)
    .log(LdkLog::File(None))
    .call_timeout(Duration::from_secs(30));
    LdkNode::start(config).unwrap_or_else(|e| {
        panic!("the {alias} ldk node could not start against bcoin at {btc:?}: {e}")
    })
}

fn sync(node: &LdkNode, who: &str) -> Result<(), String> {
    node.sync_wallets()
        .map_err(|e| format!("{who} sync_wallets: {e}"))
}

fn mine(btc: &Bcoin, blocks: u32) {
    btc.mine(blocks)
        .unwrap_or_else(|e| panic!("mining {blocks} block(s) on bcoin failed: {e}"));
}

/// Funds a node's on-chain wallet from bcoin's wallet (the transaction is
/// left in the mempool).
fn fund(btc: &Bcoin, node: &LdkNode, who: &str, amount: Sat) {
    let address = node
        .new_onchain_address()
        .unwrap_or_else(|e| panic!("{who} new_onchain_address: {e}"));
    btc.fund(&address, amount.0).unwrap_or_else(|e| {
        panic!("funding {who} ({address}) with {amount} from bcoin failed: {e}")
    });
}

fn wait_onchain(node: &LdkNode, who: &str, at_least: Sat) {
    wait_until(
        &format!("{who} on-chain spendable >= {at_least}"),
        CHAIN_WAIT,
        || {
            sync(node, who)?;
            let b = node.balances();
            if b.onchain_spendable >= at_least {
                Ok(Some(()))
            } else {
                Err(format!("{who} balances {b:?}"))
            }
        },
    );
}

/// bcoin, a funded payer, a merchant, and a usable 500,000-sat channel
/// payer → merchant.
struct Setup {
    payer: LdkNode,
    merchant: LdkNode,
    btc: Bcoin,
    // Declared last: dropped after the nodes.
    _dirs: (TempDir, TempDir),
}

fn set_up() -> Setup {
    let t = Instant::now();
    let btc = Bcoin::start().unwrap_or_else(|e| {
        panic!("the bcoin regtest peer (npm bcoin 1.0.2, needs node + npm) could not start: {e}")
    });
    eprintln!("bcoin started in {:?}", t.elapsed());
    mine(&btc, 101);

    let payer_dir = TempDir::new("payer");
    let merchant_dir = TempDir::new("merchant");
    let t = Instant::now();
    let payer = start_node(&btc, &payer_dir, "pay402-payer");
    let merchant = start_node(&btc, &merchant_dir, "pay402-merchant");
    eprintln!(
        "ldk nodes started in {:?}: payer {} {:?}, merchant {} {:?}",
        t.elapsed(),
        payer.node_id(),
        payer.listening_addresses(),
        merchant.node_id(),
        merchant.listening_addresses()
    );
    assert_eq!(payer.network(), Network::Regtest);
    assert_ne!(payer.node_id(), merchant.node_id());

    fund(&btc, &payer, "payer", PAYER_FUNDING);
    fund(&btc, &merchant, "merchant", MERCHANT_FUNDING);
    mine(&btc, 6);
    wait_onchain(&payer, "payer", PAYER_FUNDING);
    wait_onchain(&merchant, "merchant", MERCHANT_FUNDING);

    let merchant_addr: SocketAddr = *merchant
        .listening_addresses()
        .first()
        .expect("the merchant listens on an address");
    let t = Instant::now();
    let user_channel_id = payer
        .open_channel(merchant.node_id(), merchant_addr, CHANNEL, msat(PUSH))
        .unwrap_or_else(|e| panic!("open_channel payer -> merchant: {e}"));
    eprintln!(
        "open_channel returned in {:?} (user channel id {user_channel_id})",
        t.elapsed()
    );
    // The funding transaction must be broadcast before blocks confirm it.
    let funding_txid = wait_until("funding transaction created", CHAIN_WAIT, || {
        let channels = payer.channels();
        match channels
            .iter()
            .find(|c| c.user_channel_id == user_channel_id)
            .and_then(|c| c.funding_txid)
        {
            Some(txid) => Ok(Some(txid)),
            None => Err(format!("payer channels: {channels:?}")),
        }
    });
    btc.wait_for_tx(&funding_txid.to_string(), CHAIN_WAIT)
        .unwrap_or_else(|e| panic!("funding transaction {funding_txid} never reached bcoin: {e}"));
    mine(&btc, 6);
    wait_until("channel usable on both sides", CHAIN_WAIT, || {
        sync(&payer, "payer")?;
        sync(&merchant, "merchant")?;
        let (p, m) = (payer.channels(), merchant.channels());
        let ok = p
            .iter()
            .any(|c| c.is_usable && c.counterparty == merchant.node_id())
            && m.iter()
                .any(|c| c.is_usable && c.counterparty == payer.node_id());
        if ok {
            Ok(Some(()))
        } else {
            Err(format!("payer channels {p:?}; merchant channels {m:?}"))
        }
    });
    let channel = payer
        .channels()
        .into_iter()
        .find(|c| c.user_channel_id == user_channel_id)
        .expect("the opened channel is listed");
    assert_eq!(channel.capacity, CHANNEL);
    assert!(channel.is_outbound && channel.is_ready);
    assert_eq!(channel.funding_txid, Some(funding_txid));
    let mchannel = &merchant.channels()[0];
    assert!(!mchannel.is_outbound);
    assert_eq!(mchannel.channel_id, channel.channel_id);

    Setup {
        payer,
        merchant,
        btc,
        _dirs: (payer_dir, merchant_dir),
    }
}

/// The nodes' sendable balances, waited on until they equal `expected`.
async fn settle(
    payer: &LdkNode,
    merchant: &LdkNode,
    expected_payer: Msat,
    expected_merchant: Msat,
    what: &str,
) {
    wait_until_async(what, SETTLE_WAIT, || async {
        let (p, m) = (
            payer.balances().lightning_outbound,
            merchant.balances().lightning_outbound,
        );
        if p == expected_payer && m == expected_merchant {
            Ok(Some(()))
        } else {
            Err(format!(
                "payer outbound {p} (want {expected_payer}), merchant outbound {m} (want {expected_merchant})"
            ))
        }
    })
    .await;
}

#[test]
fn ldk_l402_flow_over_a_real_channel() {
    let started = Instant::now();
    let setup = set_up();
    let setup_took = started.elapsed();
    eprintln!("setup (chain, nodes, funding, channel) took {setup_took:?}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let flow = Instant::now();
    let paid_hash = runtime.block_on(l402_flow(&setup));
    eprintln!("L402 flows took {:?}", flow.elapsed());
    drop(runtime);

    let t = Instant::now();
    setup.payer.stop().expect("payer stops cleanly");
    setup.merchant.stop().expect("merchant stops cleanly");
    setup.payer.stop().expect("stopping twice is a no-op");
    assert!(matches!(
        setup.payer.sync_wallets(),
        Err(LightningError::Unreachable { backend: "ldk", .. })
    ));
    eprintln!("nodes stopped in {:?}", t.elapsed());

    // 6. Restart the merchant from its storage directory: same identity,
    //    channel and payment history. This runs inside a current-thread
    //    runtime, where ldk-node's own blocking calls (start, stop) would
    //    panic if LdkNode made them on the caller's thread, and the node is
    //    stopped by dropping it there.
    let t = Instant::now();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("current-thread runtime")
        .block_on(async {
            let restarted = start_node(&setup.btc, &setup._dirs.1, "pay402-merchant");
            assert_eq!(restarted.node_id(), setup.merchant.node_id());
            let channels = restarted.channels();
            assert_eq!(
                channels.len(),
                1,
                "the channel survives a restart: {channels:?}"
            );
            assert_eq!(channels[0].counterparty, setup.payer.node_id());
            match restarted.lookup_invoice(&paid_hash).await {
                Ok(InvoiceState::Settled { amount_paid, .. }) => {
                    assert_eq!(amount_paid, msat(PRICE));
                }
                other => panic!("the paid invoice should survive a restart settled: {other:?}"),
            }
            let received = restarted.payment(&paid_hash).expect("payment history");
            assert_eq!(received.status, Status::Succeeded);
            drop(restarted);
        });
    eprintln!("merchant restarted and dropped in {:?}", t.elapsed());
    assert!(setup.btc.block_count().expect("bcoin still answers") >= 113);
    eprintln!("total {:?}", started.elapsed());
}

/// Runs steps 1-5; returns the payment hash of the first purchase.
async fn l402_flow(setup: &Setup) -> PaymentHash {
    let Setup {
        payer, merchant, ..
    } = setup;

    // The server: a cheap route and one priced above the channel capacity.
    let paywall = L402Layer::new(
        L402Config::new("ldk-l402-test"),
        Arc::new(merchant.clone()),
        Arc::new(MemoryStore::new()),
    );
    let app = Router::new()
        .route(
            "/cheap",
            get(|| async { "cheap content" }).route_layer(paywall.with_price(Price::sats(PRICE.0))),
        )
        .route(
            "/dear",
            get(|| async { "dear content" })
                .route_layer(paywall.with_price(Price::sats(OVER_CAPACITY_PRICE.0))),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the test server");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let cheap = format!("{base}/cheap");
    let dear = format!("{base}/dear");

    // 1. Unpaid → 402 with an L402 challenge carrying a regtest invoice of the merchant.
    let resp = reqwest::get(&cheap).await.expect("plain GET");
    assert_eq!(resp.status(), 402);
    let challenge = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("L402"))
        .expect("an L402 challenge")
        .to_owned();
    assert!(
        challenge.contains("invoice=\"lnbcrt"),
        "regtest invoice in {challenge}"
    );

    let client = L402Client::builder(Arc::new(payer.clone()))
        .network(Network::Regtest)
        .max_price(msat(PRICE))
        .max_fee(MAX_FEE)
        .payment_timeout(Duration::from_secs(30))
        .build();

    // 2. Pay over Lightning → 200; balances move by exactly the price (+ fee).
    let payer_before = payer.balances().lightning_outbound;
    let merchant_before = merchant.balances().lightning_outbound;
    assert!(
        merchant_before.0 > 0,
        "the push gives the merchant sendable balance"
    );
    let t = Instant::now();
    let paid = client
        .get(&cheap)
        .await
        .expect("the client pays and gets the content");
    let took = t.elapsed();
    assert_eq!(paid.status(), 200);
    assert!(!paid.reused_token);
    let receipt = paid.receipt.clone().expect("a payment receipt");
    eprintln!(
        "  paid {} + {} fee in {:?} (request total {took:?})",
        receipt.amount, receipt.fee, receipt.paid_in
    );
    assert_eq!(receipt.amount, msat(PRICE));
    assert!(receipt.fee <= MAX_FEE);
    assert_eq!(paid.response.text().await.expect("body"), "cheap content");
    let hash = receipt.payment_hash;
    let payer_after = Msat(payer_before.0 - receipt.amount.0 - receipt.fee.0);
    let merchant_after = Msat(merchant_before.0 + msat(PRICE).0);
    settle(
        payer,
        merchant,
        payer_after,
        merchant_after,
        "balances after the first payment",
    )
    .await;
    match merchant
        .lookup_invoice(&hash)
        .await
        .expect("merchant lookup")
    {
        InvoiceState::Settled {
            preimage,
            amount_paid,
        } => {
            assert!(preimage.matches(&hash));
            assert_eq!(amount_paid, msat(PRICE));
        }
        other => panic!("the merchant's invoice should be settled, is {other:?}"),
    }
    let sent = payer.payment(&hash).expect("the payer tracks the payment");
    assert_eq!(sent.status, Status::Succeeded);
    assert_eq!(sent.fee, Some(receipt.fee));

    // 3. The cached token is reused: 200, nothing paid.
    let again = client.get(&cheap).await.expect("token reuse");
    assert_eq!(again.status(), 200);
    assert!(again.reused_token);
    assert!(again.receipt.is_none());
    assert_eq!(payer.balances().lightning_outbound, payer_after);
    assert_eq!(merchant.balances().lightning_outbound, merchant_after);

    // 4. Above the channel capacity: a typed payment error, nothing charged.
    let big_client = L402Client::builder(Arc::new(payer.clone()))
        .network(Network::Regtest)
        .max_price(msat(Sat(1_000_000)))
        .max_fee(MAX_FEE)
        .payment_timeout(Duration::from_secs(30))
        .build();
    let t = Instant::now();
    let err = big_client
        .get(&dear)
        .await
        .expect_err("a payment above the channel capacity cannot succeed");
    eprintln!(
        "  over-capacity payment refused in {:?}: {err}",
        t.elapsed()
    );
    match &err {
        ClientError::Payment(LightningError::PaymentFailed { reason }) => {
            assert!(
                reason.contains("insufficient outbound liquidity"),
                "reason: {reason}"
            );
        }
        other => panic!("expected ClientError::Payment(PaymentFailed), got {other:?}"),
    }
    assert!(!err.may_have_paid());
    assert_eq!(payer.balances().lightning_outbound, payer_after);
    assert_eq!(merchant.balances().lightning_outbound, merchant_after);

    // ... and the server still serves, and is paid for, the cheap route.
    let fresh = L402Client::builder(Arc::new(payer.clone()))
        .network(Network::Regtest)
        .max_price(msat(PRICE))
        .build();
    let paid2 = fresh.get(&cheap).await.expect("a second, new purchase");
    assert_eq!(paid2.status(), 200);
    let receipt2 = paid2.receipt.clone().expect("paid again");
    assert_ne!(receipt2.payment_hash, hash);
    let payer_after2 = Msat(payer_after.0 - receipt2.amount.0 - receipt2.fee.0);
    let merchant_after2 = Msat(merchant_after.0 + msat(PRICE).0);
    settle(
        payer,
        merchant,
        payer_after2,
        merchant_after2,
        "balances after the second purchase",
    )
    .await;

    // 5. The ports directly.
    let invoice = merchant
        .create_invoice(&InvoiceRequest::new(msat(Sat(2_000)), "direct"))
        .await
        .expect("create_invoice");
    assert!(invoice.bolt11.starts_with("lnbcrt"));
    assert_eq!(
        merchant.lookup_invoice(&invoice.payment_hash).await,
        Ok(InvoiceState::Open)
    );
    let request = PayRequest::new(&invoice.bolt11, MAX_FEE);
    // Two concurrent calls for one invoice: one payment, the same result.
    let t = Instant::now();
    let (first, twin) = tokio::join!(payer.pay_invoice(&request), payer.pay_invoice(&request));
    eprintln!(
        "  direct payment (two concurrent calls) took {:?}",
        t.elapsed()
    );
    let first = first.expect("direct payment");
    assert_eq!(twin.expect("concurrent call for the same invoice"), first);
    assert!(first.preimage.matches(&invoice.payment_hash));
    assert_eq!(first.amount, msat(Sat(2_000)));
    // Paying the same invoice again returns the first payment, and pays nothing.
    let second = payer
        .pay_invoice(&request)
        .await
        .expect("idempotent re-payment");
    assert_eq!(second, first);
    let payer_after3 = Msat(payer_after2.0 - first.amount.0 - first.fee.0);
    let merchant_after3 = Msat(merchant_after2.0 + first.amount.0);
    settle(
        payer,
        merchant,
        payer_after3,
        merchant_after3,
        "balances after the direct payment (paid once)",
    )
    .await;
    assert!(
        merchant
            .lookup_invoice(&invoice.payment_hash)
            .await
            .expect("lookup")
            .is_settled()
    );
    // A payment still in flight at its timeout is `Unknown`; asking again
    // waits for that same payment instead of sending a second one.
    let slow = merchant
        .create_invoice(&InvoiceRequest::new(msat(Sat(3_000)), "slow"))
        .await
        .expect("create_invoice");
    let mut hurried = PayRequest::new(&slow.bolt11, MAX_FEE);
    hurried.timeout = Duration::from_millis(1);
    assert_eq!(
        payer.pay_invoice(&hurried).await,
        Err(LightningError::Unknown {
            payment_hash: slow.payment_hash
        })
    );
    let tracked = payer
        .pay_invoice(&PayRequest::new(&slow.bolt11, MAX_FEE))
        .await
        .expect("the in-flight payment completes");
    assert!(tracked.preimage.matches(&slow.payment_hash));
    let payer_after4 = Msat(payer_after3.0 - tracked.amount.0 - tracked.fee.0);
    let merchant_after4 = Msat(merchant_after3.0 + tracked.amount.0);
    settle(
        payer,
        merchant,
        payer_after4,
        merchant_after4,
        "balances after the timed-out then tracked payment (paid once)",
    )
    .await;

    // A node does not pay its own invoice; an unknown hash is not found.
    let own = merchant
        .create_invoice(&InvoiceRequest::new(msat(Sat(10)), "own"))
        .await
        .expect("create_invoice");
    assert!(matches!(
        merchant
            .pay_invoice(&PayRequest::new(&own.bolt11, MAX_FEE))
            .await,
        Err(LightningError::PaymentFailed { .. })
    ));
    assert_eq!(
        payer.lookup_invoice(&invoice.payment_hash).await,
        Err(LightningError::NotFound),
        "the payer did not issue that invoice"
    );

    server.abort();
    hash
}
