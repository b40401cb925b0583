#![cfg(feature = "bitreq")]
//! The BitRequests client, its wallet and its channel client on a REAL bcoin
//! regtest node (pay402_testkit::bcoin), through
//! `pay402_backends::bitcoind::BitcoindRpc`:
//!
//! - the wallet is funded from the node, finds its coins (bcoin's address
//!   index via `list_unspent`) and pays on chain; the merchant (an in-test
//!   axum server verifying with `pay402_core::bitreq`, tests/bitreq_support)
//!   broadcasts the payment and the node mines it;
//! - a channel is opened (deposit mined), paid three times and closed: the
//!   node mines the merchant's close, whose merchant output is the total paid;
//! - a channel is left to expire and its refund is mined;
//! - end to end against pay402's own BitRequests server
//!   (`pay402_server::bitreq`): on-chain pay/serve to a fresh derived
//!   address, bit-transfers from a funded ledger account (until its balance
//!   runs out), and a channel opened, paid three times and closed, the
//!   merchant's close output equal to the total paid.
//!
//! bcoin is installed on first use (npm); the test fails, never skips, when
//! the node cannot start.

mod bitreq_support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Network, OutPoint, Txid};
use bitreq_support::{MerchantConfig, MerchantServer, Seen};
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_client::bitreq::{
    BitRequests, BitRequestsError, ChannelClient, ChannelConfig, ClientState, PaymentMethod,
    RequestOptions, Wallet, WalletConfig,
};
use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_testkit::bcoin::Bcoin;
use serde_json::json;

const PRICE: Sat = Sat(5_000);
const CHANNEL_FEE: Sat = Sat(10_000);

fn start() -> Bcoin {
    let t = Instant::now();
    let node = Bcoin::start().unwrap_or_else(|e| panic!("bcoin test peer could not start: {e}"));
    eprintln!("bcoin started in {:?} (pid {})", t.elapsed(), node.pid());
    node
}

fn chain_of(node: &Bcoin) -> Arc<dyn BitcoinChain> {
    Arc::new(
        BitcoindRpc::new(BitcoindConfig {
            url: node.rpc_url().parse().unwrap(),
            user: node.rpc_user().to_owned(),
            password: node.rpc_password().to_owned(),
            timeout: Duration::from_secs(30),
        })
        .unwrap(),
    )
}

/// 32 fresh bytes (not reproducible across runs; tests only).
fn fresh(label: &str) -> [u8; 32] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let text = format!(
        "pay402-bitreq-client-{label}-{}-{nanos}",
        std::process::id()
    );
    sha256::Hash::hash(text.as_bytes()).to_byte_array()
}

async fn funded_wallet(node: &Bcoin, chain: Arc<dyn BitcoinChain>, coins: &[u64]) -> Arc<Wallet> {
    funded_wallet_from(&fresh("wallet"), node, chain, coins).await
}

async fn funded_wallet_from(
    seed: &[u8],
    node: &Bcoin,
    chain: Arc<dyn BitcoinChain>,
    coins: &[u64],
) -> Arc<Wallet> {
    let wallet =
        Arc::new(Wallet::from_seed(seed, WalletConfig::new(Network::Regtest), chain).unwrap());
    for &sats in coins {
        let address = wallet.receive_address().await.unwrap();
        node.fund(&address.to_string(), sats)
            .expect("fund the wallet");
    }
    wallet
}

async fn confirmations(chain: &dyn BitcoinChain, txid: &Txid) -> u64 {
    chain
        .get_transaction(txid)
        .await
        .unwrap()
        .map_or(0, |t| t.confirmations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_onchain_channel_and_refund_on_bcoin() {
    let node = start();
    let chain = chain_of(&node);
    let seed = fresh("wallet");
    let wallet = funded_wallet_from(&seed, &node, Arc::clone(&chain), &[600_000, 400_000]).await;

    // The wallet finds its coins through bcoin's address index, mempool first.
    let b = wallet.sync().await.unwrap();
    assert_eq!((b.confirmed, b.unconfirmed), (Sat(0), Sat(1_000_000)));
    node.mine(1).unwrap();
    let b = wallet.sync().await.unwrap();
    assert_eq!((b.confirmed, b.unconfirmed), (Sat(1_000_000), Sat(0)));

    let mut config = MerchantConfig::new(Network::Regtest, PRICE);
    config.channel_fee = CHANNEL_FEE;
    let merchant_key = SecretKey::from_slice(&fresh("merchant")).unwrap();
    let server = MerchantServer::start(config, merchant_key, Some(Arc::clone(&chain))).await;
    let merchant = Arc::clone(&server.merchant);
    let url = merchant.resource_url();

    // ---- On-chain: the merchant verifies, broadcasts; the node mines it.
    let client = BitRequests::on_chain(Arc::clone(&wallet)).build();
    let paid = client.get(&url).await.unwrap();
    assert_eq!(paid.status(), 200);
    let receipt = paid.receipt.clone().unwrap();
    assert_eq!(
        paid.response.text().await.unwrap(),
        "paid onchain /resource"
    );
    assert_eq!(receipt.method, PaymentMethod::OnChain);
    assert_eq!(receipt.amount, PRICE);
    assert!(
        receipt.fee > Sat(0) && receipt.fee < Sat(1_000),
        "fee {}",
        receipt.fee
    );
    let txid: Txid = receipt.proof_id.parse().unwrap();
    let accepted = merchant.accepted();
    assert!(matches!(accepted.as_slice(), [Seen::OnChain { txid: t, .. }] if *t == txid));
    assert_eq!(confirmations(&*chain, &txid).await, 0, "in the mempool");
    // A second payment right away must not reuse the locked coin.
    let again = client.get(&url).await.unwrap();
    let txid2: Txid = again.receipt.as_ref().unwrap().proof_id.parse().unwrap();
    let fee2 = again.receipt.as_ref().unwrap().fee;
    node.mine(1).unwrap();
    for t in [txid, txid2] {
        let info = chain.get_transaction(&t).await.unwrap().unwrap();
        assert_eq!(info.confirmations, 1, "{t} mined");
        assert_eq!(info.tx.output[0].value.to_sat(), PRICE.0);
        assert_eq!(info.tx.output[0].script_pubkey, merchant.script());
    }
    let b = wallet.sync().await.unwrap();
    assert_eq!(
        b.confirmed,
        Sat(1_000_000 - 2 * PRICE.0 - receipt.fee.0 - fee2.0),
        "{b:?}"
    );
    assert_eq!(b.locked, Sat(0));

    // ---- Channel: open (deposit mined), pay three times, close.
    let mut cc = ChannelConfig::default();
    cc.channel_fee = CHANNEL_FEE;
    let client = BitRequests::channel(Arc::clone(&wallet))
        .channel_config(cc)
        .build();
    let err = client.get(&url).await.unwrap_err();
    let BitRequestsError::ChannelNotReady { deposit_txid } = err else {
        panic!("expected channel_not_ready, got {err:?}");
    };
    assert_eq!(
        BitRequestsError::ChannelNotReady { deposit_txid }.reason(),
        "channel_not_ready"
    );
    node.wait_for_tx(&deposit_txid.to_string(), Duration::from_secs(10))
        .expect("the client broadcast the deposit");
    node.mine(1).unwrap();
    assert_eq!(confirmations(&*chain, &deposit_txid).await, 1);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let paid = client.get(&url).await.unwrap();
        assert_eq!(paid.status(), 200);
        let r = paid.receipt.clone().unwrap();
        assert_eq!((r.method, r.amount), (PaymentMethod::Channel, PRICE));
        assert_eq!(
            paid.response.text().await.unwrap(),
            "paid channel /resource"
        );
        tokens.push(r.proof_id);
    }
    let credited: Vec<Sat> = merchant
        .accepted()
        .iter()
        .filter_map(|s| match s {
            Seen::Channel { credited, .. } => Some(*credited),
            _ => None,
        })
        .collect();
    assert_eq!(credited, vec![PRICE, PRICE, PRICE]);
    assert_eq!(
        merchant.channel_amount(&deposit_txid),
        Some(Sat(3 * PRICE.0))
    );
    let channels = client.channels().unwrap();
    let summary = channels.channels().await;
    let [ch] = summary.as_slice() else {
        panic!("one channel: {summary:?}")
    };
    assert_eq!(
        (ch.deposit_txid, ch.paid, ch.state),
        (deposit_txid, Sat(3 * PRICE.0), ClientState::Ready)
    );

    let spend = channels
        .close(&merchant.channel_url())
        .await
        .unwrap()
        .expect("a channel to close");
    node.mine(1).unwrap();
    let close = chain
        .get_transaction(&spend)
        .await
        .unwrap()
        .expect("close broadcast");
    assert_eq!(close.confirmations, 1);
    assert_eq!(
        close.tx.input[0].previous_output,
        OutPoint::new(deposit_txid, 0)
    );
    assert_eq!(
        close.tx.output[0].value.to_sat(),
        3 * PRICE.0,
        "merchant output = total paid"
    );
    let change = close.tx.output[1].value.to_sat();
    assert_eq!(change, ch.deposit_value.0 - CHANNEL_FEE.0 - 3 * PRICE.0);
    let summary = channels.sync().await.unwrap();
    assert_eq!(summary[0].state, ClientState::Closed);
    assert_eq!(summary[0].spend_txid, Some(spend));
    // The customer's close output (P2PKH of the channel key) is the wallet's.
    wallet.sync().await.unwrap();
    let coins = wallet.coins().await;
    assert!(
        coins
            .iter()
            .any(|c| c.outpoint == OutPoint::new(spend, 1) && c.value == Sat(change)),
        "{coins:?}"
    );

    // ---- Refund: a channel left to expire; the refund is broadcast and mined.
    let mut cc = ChannelConfig::default();
    cc.channel_fee = CHANNEL_FEE;
    cc.duration = Duration::from_secs(2 * 3600);
    let refunder = ChannelClient::new(Arc::clone(&wallet), reqwest::Client::new(), cc);
    let opened = refunder.open(&merchant.channel_url()).await.unwrap();
    node.wait_for_tx(&opened.deposit_txid.to_string(), Duration::from_secs(10))
        .unwrap();
    node.mine(1).unwrap();
    let expiry = u64::from(opened.expiry);
    // Not due before expiry + 90 min.
    let early = refunder.sync_at(UnixTime(expiry + 60)).await.unwrap();
    assert_eq!(early[0].state, ClientState::Ready);
    // Due by our clock, but the node's median time past is before the
    // expiry: the node refuses the refund (not final); it is kept for later.
    let refused = refunder.sync_at(UnixTime(expiry + 5_401)).await.unwrap();
    assert_eq!(refused[0].state, ClientState::Ready, "{refused:?}");
    assert_eq!(refused[0].spend_txid, None);
    assert!(
        chain
            .get_transaction(&opened.refund_tx.compute_txid())
            .await
            .unwrap()
            .is_none()
    );
    // Move the node's clock past the expiry; 11 blocks move median time past too.
    node.rpc("setmocktime", json!([expiry + 3 * 3600])).unwrap();
    node.mine(11).unwrap();
    let late = refunder.sync_at(UnixTime(expiry + 5_401)).await.unwrap();
    assert_eq!(late[0].state, ClientState::Closed, "{late:?}");
    let refund_txid = late[0].spend_txid.expect("refund broadcast");
    assert_eq!(refund_txid, opened.refund_tx.compute_txid());
    node.mine(1).unwrap();
    let refund = chain.get_transaction(&refund_txid).await.unwrap().unwrap();
    assert_eq!(refund.confirmations, 1);
    let refunded = refund.tx.output[0].value.to_sat();
    assert_eq!(refunded, opened.deposit_value.0 - CHANNEL_FEE.0);
    wallet.sync().await.unwrap();
    assert!(
        wallet
            .coins()
            .await
            .iter()
            .any(|c| c.outpoint == OutPoint::new(refund_txid, 0) && c.value == Sat(refunded))
    );

    // A wallet restored from the same seed finds the same coins by scanning.
    let restored = Wallet::from_seed(
        &seed,
        WalletConfig::new(Network::Regtest),
        Arc::clone(&chain),
    )
    .unwrap();
    let mut a: Vec<_> = wallet
        .coins()
        .await
        .into_iter()
        .map(|c| c.outpoint)
        .collect();
    let mut b: Vec<_> = restored
        .coins()
        .await
        .into_iter()
        .map(|c| c.outpoint)
        .collect();
    assert!(b.is_empty());
    restored.sync().await.unwrap();
    b = restored
        .coins()
        .await
        .into_iter()
        .map(|c| c.outpoint)
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(restored.balance().await, wallet.balance().await);
}

/// pay402's BitRequests server on 127.0.0.1: `/report` costs [`PRICE`] with
/// every method, plus the channel endpoints.
struct Pay402Server {
    server: pay402_server::bitreq::BitreqServer,
    base: String,
    xpub: bitcoin::bip32::Xpub,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pay402Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pay402_server(chain: Arc<dyn BitcoinChain>) -> Pay402Server {
    use axum::Router;
    use axum::routing::get;
    use bitcoin::bip32::{Xpriv, Xpub};
    use pay402_server::Price;
    use pay402_server::bitreq::store::MemoryBitreqStore;
    use pay402_server::bitreq::{
        BitreqConfig, BitreqPayment, BitreqServer, ChannelConfig as ServerChannelConfig,
        MerchantKey, OnChainConfig, TransferConfig,
    };

    let secp = bitcoin::secp256k1::Secp256k1::new();
    let xprv = Xpriv::new_master(Network::Regtest, &fresh("merchant-xprv")).unwrap();
    let xpub = Xpub::from_priv(&secp, &xprv);
    // Zero-conf is an explicit opt-in on the pay402 server (default: one
    // confirmation); this test pays unconfirmed, up to the price.
    let config = BitreqConfig::new(Network::Regtest)
        .onchain(OnChainConfig::derived(xpub).accept_unconfirmed_up_to(PRICE))
        .transfer(TransferConfig::new("shop"))
        .channel(
            ServerChannelConfig::new(MerchantKey::from_slice(&fresh("channel-key")).unwrap())
                .fee(CHANNEL_FEE),
        );
    let server = BitreqServer::new(config, chain, Arc::new(MemoryBitreqStore::new())).unwrap();
    let app = Router::new()
        .route(
            "/report",
            get(|paid: BitreqPayment| async move {
                format!("{} {}", paid.method.as_str(), paid.amount.0)
            })
            .route_layer(server.layer(Price::sats(PRICE.0))),
        )
        .merge(server.channel_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Pay402Server {
        server,
        base,
        xpub,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_against_the_pay402_bitreq_server() {
    use pay402_server::bitreq::{AddressKind, derived_script};

    let node = start();
    let chain = chain_of(&node);
    let wallet = funded_wallet(&node, Arc::clone(&chain), &[700_000]).await;
    node.mine(1).unwrap();
    let shop = pay402_server(Arc::clone(&chain)).await;
    let url = format!("{}/report", shop.base);

    // ---- On-chain: pay the fresh address of the 402; the server broadcasts and serves.
    let client = BitRequests::on_chain(Arc::clone(&wallet)).build();
    let paid = client.get(&url).await.unwrap();
    assert_eq!(paid.status(), 200);
    let receipt = paid.receipt.clone().unwrap();
    assert_eq!(
        paid.response.text().await.unwrap(),
        format!("onchain {}", PRICE.0)
    );
    let txid: Txid = receipt.proof_id.parse().unwrap();
    node.mine(1).unwrap();
    let tx = chain
        .get_transaction(&txid)
        .await
        .unwrap()
        .expect("broadcast by the server");
    assert_eq!(tx.confirmations, 1);
    assert_eq!(tx.tx.output[0].value.to_sat(), PRICE.0);
    let derived: Vec<_> = (0..4)
        .filter_map(|i| derived_script(&shop.xpub, AddressKind::P2wpkh, Network::Regtest, i))
        .collect();
    assert!(
        derived.contains(&tx.tx.output[0].script_pubkey),
        "paid a derived address"
    );
    // The same transaction cannot buy a second request.
    let replay = reqwest::Client::new()
        .get(&url)
        .header(
            "Bitcoin-Transaction",
            bitcoin::consensus::encode::serialize_hex(&tx.tx),
        )
        .send()
        .await
        .unwrap();
    assert!(
        replay.status().is_client_error(),
        "replay answered {}",
        replay.status()
    );

    // A POST the route does not serve (405 before the paywall runs): the
    // server never broadcast the transaction, so nothing was paid and the
    // wallet releases its coins.
    let quote = client.get_402_info(&url).await.unwrap().expect("a 402");
    let before = wallet.balance().await;
    let answered = client
        .send(
            client.http().post(&url).body("x"),
            RequestOptions::default().quote(quote),
        )
        .await
        .unwrap();
    assert_eq!(answered.status(), 405);
    assert!(answered.receipt.is_none());
    assert_eq!(wallet.balance().await, before);

    // ---- Bit-transfer from a funded ledger account.
    let key = wallet.transfer_public_key().unwrap();
    assert!(shop.server.open_account("alice", &key).await.unwrap());
    shop.server
        .credit("alice", Sat(2 * PRICE.0 + 2_000), "deposit-1")
        .await
        .unwrap();
    let client = BitRequests::bit_transfer(Arc::clone(&wallet), "alice").build();
    for _ in 0..2 {
        let paid = client.get(&url).await.unwrap();
        assert_eq!(paid.status(), 200);
        assert_eq!(
            paid.receipt.as_ref().unwrap().method,
            PaymentMethod::BitTransfer
        );
        assert_eq!(
            paid.response.text().await.unwrap(),
            format!("transfer {}", PRICE.0)
        );
    }
    let account = shop.server.account("alice").await.unwrap().unwrap();
    assert_eq!(account.balance, Sat(2_000));
    let err = client.get(&url).await.unwrap_err();
    assert!(
        matches!(err, BitRequestsError::InsufficientBalance { needed, .. } if needed == PRICE),
        "{err:?}"
    );
    assert_eq!(err.reason(), "insufficient_balance");
    assert!(!err.may_have_paid());
    assert_eq!(
        shop.server.account("alice").await.unwrap().unwrap().balance,
        Sat(2_000)
    );
    // A payer the ledger does not know: refused, nothing spent.
    let stranger = BitRequests::bit_transfer(Arc::clone(&wallet), "mallory").build();
    let err = stranger.get(&url).await.unwrap_err();
    assert!(
        matches!(&err, BitRequestsError::PaymentRefused { reason, spent: false, .. } if reason == "unknown_payer"),
        "{err:?}"
    );

    // ---- Channel: open (deposit mined), pay three times, close.
    let mut cc = ChannelConfig::default();
    cc.channel_fee = CHANNEL_FEE;
    let client = BitRequests::channel(Arc::clone(&wallet))
        .channel_config(cc)
        .build();
    let err = client.get(&url).await.unwrap_err();
    let BitRequestsError::ChannelNotReady { deposit_txid } = err else {
        panic!("expected channel_not_ready, got {err:?}");
    };
    node.wait_for_tx(&deposit_txid.to_string(), Duration::from_secs(10))
        .expect("the client broadcast the deposit");
    node.mine(1).unwrap();
    let mut moved = 0;
    for _ in 0..3 {
        let paid = client.get(&url).await.unwrap();
        assert_eq!(paid.status(), 200);
        let r = paid.receipt.clone().unwrap();
        assert_eq!(r.method, PaymentMethod::Channel);
        moved += r.amount.0;
        assert_eq!(
            paid.response.text().await.unwrap(),
            format!("channel {}", r.amount.0)
        );
    }
    assert_eq!(moved, 3 * PRICE.0);
    let channels = client.channels().unwrap();
    let server_url = format!("{}/payment", shop.base);
    let spend = channels
        .close(&server_url)
        .await
        .unwrap()
        .expect("a channel to close");
    node.wait_for_tx(&spend.to_string(), Duration::from_secs(10))
        .expect("the server broadcast the close");
    node.mine(1).unwrap();
    let close = chain.get_transaction(&spend).await.unwrap().unwrap();
    assert_eq!(close.confirmations, 1);
    assert_eq!(
        close.tx.input[0].previous_output,
        OutPoint::new(deposit_txid, 0)
    );
    assert_eq!(
        close.tx.output[0].value.to_sat(),
        moved,
        "merchant close output = total paid"
    );
    let summary = channels.sync().await.unwrap();
    assert_eq!(summary[0].state, ClientState::Closed);
    assert_eq!(summary[0].paid, Sat(moved));
}

/// The `Payer` with BitRequests means (on-chain and bit-transfer clients
/// on one wallet) against pay402's BitRequests server on bcoin: it reads
/// the two1 headers as one offer per method, pays the chosen one through
/// the BitRequests client, and journals the txid / transfer hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payer_pays_bitrequests_on_bcoin() {
    use pay402_client::journal::{EntryState, Journal, Query};
    use pay402_client::{Choice, Payer};
    use pay402_core::offer::Rail;

    let node = start();
    let chain = chain_of(&node);
    let wallet = funded_wallet(&node, Arc::clone(&chain), &[700_000]).await;
    node.mine(1).unwrap();
    let shop = pay402_server(Arc::clone(&chain)).await;
    let url = format!("{}/report", shop.base);
    let key = wallet.transfer_public_key().unwrap();
    assert!(shop.server.open_account("alice", &key).await.unwrap());
    shop.server
        .credit("alice", Sat(PRICE.0), "deposit-1")
        .await
        .unwrap();
    let payer = |choice: Choice| {
        Payer::builder()
            .bitreq(BitRequests::on_chain(Arc::clone(&wallet)))
            .bitreq(BitRequests::bit_transfer(Arc::clone(&wallet), "alice"))
            .choose(choice)
            .journal(Journal::memory())
    };

    // On-chain (the cheapest offers tie; the server lists on-chain first).
    let onchain = payer(Choice::Cheapest).build().await.unwrap();
    let paid = onchain.get(&url).await.unwrap();
    assert_eq!(paid.status(), 200);
    let r = paid.receipt.clone().unwrap();
    assert_eq!(
        (r.rail, r.offer.as_str()),
        (Rail::BitRequests, "bitreq onchain")
    );
    assert_eq!(paid.text().await.unwrap(), format!("onchain {}", PRICE.0));
    let txid: Txid = r.proof_id.parse().unwrap();
    node.mine(1).unwrap();
    let tx = chain
        .get_transaction(&txid)
        .await
        .unwrap()
        .expect("broadcast");
    assert_eq!(tx.tx.output[0].value.to_sat(), PRICE.0);
    let e = &onchain.journal().payments(&Query::default()).await.unwrap()[0];
    assert_eq!(e.state, EntryState::Served);
    assert_eq!(e.proof_id.as_deref(), Some(r.proof_id.as_str()));
    assert_eq!(e.cost.as_deref(), Some("5000 sat"));

    // A closure choosing the ledger transfer.
    let transfer = payer(Choice::custom(|c| {
        c.iter().position(|c| c.offer.label() == "bitreq transfer")
    }))
    .build()
    .await
    .unwrap();
    let paid = transfer.get(&url).await.unwrap();
    assert_eq!(paid.receipt.as_ref().unwrap().offer, "bitreq transfer");
    assert_eq!(paid.text().await.unwrap(), format!("transfer {}", PRICE.0));
    // The account is empty now: the ledger refuses, typed, nothing paid.
    let e = transfer.get(&url).await.unwrap_err();
    assert_eq!(e.reason(), "insufficient_balance", "{e}");
    assert!(!e.may_have_paid());
}
