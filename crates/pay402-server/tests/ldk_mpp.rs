//! MPP `lightning`/`charge` over real Lightning: two embedded ldk-node
//! nodes with a real channel, funded and confirmed on a Bitcoin regtest
//! chain (bcoin). The merchant node mints the challenge's invoice through
//! the `Paywall`; the payer node pays it over the channel; the credential
//! (the preimage ldk-node returns) is served once with a receipt, the
//! merchant's balance rises by the price once, and a replay is refused.
//!
//! The test installs and starts bcoin on first use and fails (never skips)
//! with what is missing when it cannot.
#![cfg(all(feature = "x402", feature = "bitreq"))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pay402_backends::ldk::{ChainSource, LdkConfig, LdkLog, LdkNode};
use pay402_core::lightning::{LightningPayer, Network, PayRequest};
use pay402_core::money::{Msat, Sat};
use pay402_core::mpp::methods::lightning;
use pay402_core::mpp::{ChallengeList, Receipt};
use pay402_core::time::UnixTime;
use pay402_server::mpp::MppConfig;
use pay402_server::paywall::{Paywall, PaywallPrice};
use pay402_testkit::bcoin::Bcoin;
use tower::ServiceExt;

const PRICE: Sat = Sat(1_000);
const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, failing with `what` after
/// [`WAIT`].
fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node directory, removed at the end (kept when the test fails).
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "pay402-ldk-mpp-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a node directory");
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn node(btc: &Bcoin, dir: &Dir, alias: &str) -> LdkNode {
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
    LdkNode::start(config).unwrap_or_else(|e| panic!("the {alias} ldk node could not start: {e}"))
}

fn funded(btc: &Bcoin, n: &LdkNode, amount: Sat) {
    let address = n.new_onchain_address().expect("an on-chain address");
    btc.fund(&address, amount.0).expect("funding from bcoin");
}

#[test]
fn mpp_lightning_charge_over_a_real_ldk_channel() {
    let btc = Bcoin::start().unwrap_or_else(|e| {
        panic!("the bcoin regtest peer (npm bcoin, needs node + npm) could not start: {e}")
    });
    btc.mine(101).expect("mining");
    let (payer_dir, merchant_dir) = (Dir::new("payer"), Dir::new("merchant"));
    let payer = node(&btc, &payer_dir, "pay402-mpp-payer");
    let merchant = node(&btc, &merchant_dir, "pay402-mpp-merchant");
    funded(&btc, &payer, Sat(2_000_000));
    funded(&btc, &merchant, Sat(100_000));
    btc.mine(6).expect("mining");
    for (n, at_least) in [(&payer, Sat(2_000_000)), (&merchant, Sat(100_000))] {
        poll("on-chain funds", || {
            n.sync_wallets().ok()?;
            (n.balances().onchain_spendable >= at_least).then_some(())
        });
    }
    let addr: SocketAddr = *merchant.listening_addresses().first().expect("listening");
    let id = payer
        .open_channel(merchant.node_id(), addr, Sat(500_000), Msat(100_000_000))
        .expect("open_channel");
    let funding = poll("the funding transaction", || {
        payer
            .channels()
            .iter()
            .find(|c| c.user_channel_id == id)
            .and_then(|c| c.funding_txid)
    });
    btc.wait_for_tx(&funding.to_string(), WAIT)
        .expect("the funding transaction reaches bcoin");
    btc.mine(6).expect("mining");
    poll("a usable channel on both sides", || {
        payer.sync_wallets().ok()?;
        merchant.sync_wallets().ok()?;
        let usable = |n: &LdkNode| n.channels().iter().any(|c| c.is_usable);
        (usable(&payer) && usable(&merchant)).then_some(())
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mpp = MppConfig::new("shop.test", &[0x77; 32])
            .unwrap()
            .lightning(Arc::new(merchant.clone()));
        let paywall = Paywall::builder().mpp(mpp).build().unwrap();
        let app = Router::new().route(
            "/report",
            get(|| async { "paid report" }).route_layer(paywall.price(PaywallPrice::sats(PRICE.0))),
        );
        let send = |auth: Option<String>| {
            let app = app.clone();
            async move {
                let mut b = Request::get("/report").header(header::HOST, "shop.test");
                if let Some(a) = auth {
                    b = b.header(header::AUTHORIZATION, a);
                }
                let resp = app.oneshot(b.body(Body::empty()).unwrap()).await.unwrap();
                let (parts, body) = resp.into_parts();
                (parts, body.collect().await.unwrap().to_bytes())
            }
        };

        let (unpaid, _) = send(None).await;
        assert_eq!(unpaid.status, StatusCode::PAYMENT_REQUIRED);
        let list = ChallengeList::parse(
            unpaid
                .headers
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let ch = list.challenges()[0].clone().into_owned();
        let now = UnixTime::from_system(SystemTime::now());
        let payable = lightning::check_charge(&ch, Network::Regtest, now, Msat(2_000_000)).unwrap();
        assert_eq!(payable.amount, PRICE.to_msat().unwrap());
        let before = merchant.balances().lightning_outbound;
        let paid = payer
            .pay_invoice(&PayRequest::new(&payable.bolt11, Msat(10_000)))
            .await
            .expect("the payer's node pays over the channel");
        assert!(payable.accepts(&paid.preimage));
        let auth = lightning::credential(&ch, &paid.preimage, None);

        let (ok, body) = send(Some(auth.clone())).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(&body[..], b"paid report");
        let receipt = Receipt::decode(ok.headers["payment-receipt"].to_str().unwrap()).unwrap();
        assert_eq!(receipt.reference, payable.payment_hash.to_hex());
        assert_eq!(receipt.challenge_id.as_deref(), Some(&*ch.id));

        let (again, _) = send(Some(auth)).await;
        assert_eq!(again.status, StatusCode::FORBIDDEN);
        assert!(again.headers.get(header::WWW_AUTHENTICATE).is_none());

        // The merchant was paid the price, once.
        let want = Msat(before.0 + PRICE.to_msat().unwrap().0);
        let start = Instant::now();
        while merchant.balances().lightning_outbound != want {
            assert!(
                start.elapsed() < WAIT,
                "merchant outbound {} (want {want})",
                merchant.balances().lightning_outbound
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    drop(runtime);
    payer.stop().expect("payer stops");
    merchant.stop().expect("merchant stops");
}
