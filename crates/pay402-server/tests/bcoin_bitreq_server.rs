#![cfg(feature = "bitreq")]
//! The BitRequests server on a real bcoin regtest node, over real HTTP, with
//! `BitcoindRpc` as its chain backend. The client side is built directly
//! with pay402-core's builders (keys funded by the node's wallet):
//!
//! - on-chain: a payment to a fresh quoted address is broadcast by the
//!   server, mined and served; the same transaction again is refused; a bad
//!   input table (malformed hex, wrong address, under/over payment, dust,
//!   zero fee, RBF, unknown input, double spend, expired quote) gets clear
//!   4xx answers and nothing is broadcast;
//! - bit-transfer: an account opened and funded through the operator API
//!   pays, and cannot pay twice with the same transfer;
//! - channel: opened, deposit mined, paid three times through the HTTP
//!   flow, an underpaying token refused without being burned, bad payments
//!   and a bad close signature refused, closed, and the mined close pays the
//!   merchant exactly the total; a channel past its close deadline refuses
//!   payments; the sync task closes a channel before its expiry.
//!
//! bcoin is installed on first use (npm); the test fails, never skips, when
//! the node cannot start.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, Amount, Network, OutPoint, ScriptBuf, Sequence, Transaction, Txid};
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_core::bitreq::channel::{
    MIN_OUTPUT_AMOUNT, build_deposit, close_signature, deposit_output_value,
};
use pay402_core::bitreq::onchain::{BuildOptions, build_payment, build_payment_with};
use pay402_core::bitreq::rest::{ChannelInfo, OpenRequest, PaymentRequest, encode_form};
use pay402_core::bitreq::{
    BitTransfer, ChannelParams, ExpiryEncoding, PaymentInfo, RedeemScript, SpendKind, SpendableUtxo,
};
use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;
use pay402_server::Price;
use pay402_server::bitreq::store::{ChannelState, OnChainState, SqliteBitreqStore};
use pay402_server::bitreq::{
    BitreqConfig, BitreqPayment, BitreqServer, ChannelConfig, MerchantKey, OnChainConfig,
    TransferConfig,
};
use pay402_testkit::bcoin::Bcoin;
use reqwest::StatusCode;

const PRICE: u64 = 5_000;
const CHEAP: u64 = 1_000;
const FEE: Sat = Sat(2_000);
const ADMIN: &str = "bcoin-test-operator-token";
const WAIT: Duration = Duration::from_secs(30);

fn secp() -> Secp256k1<bitcoin::secp256k1::All> {
    Secp256k1::new()
}

/// A fresh secret key (not reproducible across runs; tests only).
fn fresh_key(tag: &str) -> SecretKey {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seed = format!("pay402-bcoin-bitreq-{tag}-{}-{nanos}", std::process::id());
    SecretKey::from_slice(sha256::Hash::hash(seed.as_bytes()).as_byte_array()).unwrap()
}

fn pk(k: &SecretKey) -> PublicKey {
    k.public_key(&secp())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn p2wpkh(k: &SecretKey) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&bitcoin::CompressedPublicKey(pk(k)).wpubkey_hash())
}

fn p2pkh(k: &PublicKey) -> ScriptBuf {
    ScriptBuf::new_p2pkh(&bitcoin::PublicKey::new(*k).pubkey_hash())
}

struct Harness {
    node: Bcoin,
    rpc: Arc<BitcoindRpc>,
    server: BitreqServer,
    base: String,
    http: reqwest::Client,
    merchant_key: SecretKey,
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_owned()
    }
    fn info(&self) -> PaymentInfo {
        PaymentInfo::from_header_map(&self.headers).unwrap()
    }
}

impl Harness {
    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("server answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        assert!(
            status.as_u16() < 500 || status.as_u16() == 503,
            "unexpected {status}: {body}"
        );
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.http.get(format!("{}{path}", self.base));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        self.send(req).await
    }

    async fn quote(&self, path: &str) -> ScriptBuf {
        let r = self.get(path, &[]).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
        r.info()
            .address(Network::Regtest)
            .unwrap()
            .unwrap()
            .script_pubkey()
    }

    /// Funds `script` with `sats` from the node's wallet (unconfirmed);
    /// returns the outpoint.
    async fn fund(&self, script: &ScriptBuf, sats: u64) -> OutPoint {
        let address = Address::from_script(script, Network::Regtest).unwrap();
        let txid: Txid = self
            .node
            .fund(&address.to_string(), sats)
            .expect("fund")
            .parse()
            .unwrap();
        let info = self
            .rpc
            .get_transaction(&txid)
            .await
            .unwrap()
            .expect("funding known");
        let vout = info
            .tx
            .output
            .iter()
            .position(|o| &o.script_pubkey == script)
            .unwrap();
        assert_eq!(info.tx.output[vout].value.to_sat(), sats);
        OutPoint::new(txid, u32::try_from(vout).unwrap())
    }

    fn mine(&self) {
        self.node.mine(1).expect("mine");
    }

    async fn tx(&self, txid: &Txid) -> Option<pay402_core::chain::TxInfo> {
        self.rpc.get_transaction(txid).await.expect("lookup")
    }
}

async fn start() -> Harness {
    let t = Instant::now();
    let node = Bcoin::start().unwrap_or_else(|e| panic!("bcoin test peer could not start: {e}"));
    eprintln!("bcoin started in {:?} (pid {})", t.elapsed(), node.pid());
    let rpc = Arc::new(
        BitcoindRpc::new(BitcoindConfig {
            url: node.rpc_url().parse().unwrap(),
            user: node.rpc_user().to_owned(),
            password: node.rpc_password().to_owned(),
            timeout: Duration::from_secs(30),
        })
        .unwrap(),
    );
    let seed = fresh_key("seed");
    let xprv = Xpriv::new_master(Network::Regtest, &seed.secret_bytes()).unwrap();
    let xpub = Xpub::from_priv(&secp(), &xprv);
    let merchant_key = fresh_key("merchant");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = BitreqConfig::new(Network::Regtest)
        .public_url(&base)
        .onchain(OnChainConfig::derived(xpub))
        .transfer(TransferConfig::new("shop"))
        .channel(
            ChannelConfig::new(MerchantKey::from_slice(&merchant_key.secret_bytes()).unwrap())
                .fee(FEE)
                .min_duration(Duration::from_secs(3600))
                .close_margin(Duration::from_secs(24 * 3600)),
        );
    let db = std::env::temp_dir().join(format!(
        "pay402-bcoin-bitreq-{}-{}.sqlite",
        std::process::id(),
        unix_now()
    ));
    let store = Arc::new(SqliteBitreqStore::open(&db).await.unwrap());
    let server = BitreqServer::new(config, rpc.clone(), store).unwrap();
    let paid = |paid: BitreqPayment| async move {
        format!(
            "paid by {} ({} sat, {})",
            paid.method.as_str(),
            paid.amount.0,
            paid.reference
        )
    };
    let app = Router::new()
        .route(
            "/report",
            get(paid).route_layer(server.layer(Price::sats(PRICE))),
        )
        .route(
            "/cheap",
            get(paid).route_layer(server.layer(Price::sats(CHEAP))),
        )
        .merge(server.channel_router())
        .nest("/admin", server.ledger_router(ADMIN).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness {
        node,
        rpc,
        server,
        base,
        http: reqwest::Client::builder().timeout(WAIT).build().unwrap(),
        merchant_key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bitrequests_server_against_bcoin() {
    let h = start().await;
    onchain(&h).await;
    transfer(&h).await;
    channel(&h).await;
    channel_expiry(&h).await;
}

async fn onchain(h: &Harness) {
    let payer = fresh_key("payer");
    let change = p2wpkh(&payer);
    // Funding for the good payment and every bad-input row, confirmed at once.
    let mut outpoints = Vec::new();
    for _ in 0..12 {
        outpoints.push(h.fund(&change, 50_000).await);
    }
    h.mine();
    let utxo = |i: usize| SpendableUtxo {
        outpoint: outpoints[i],
        amount: Sat(50_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };

    // Pay the quoted address. By default a payment waits for one
    // confirmation: the server broadcasts and records it at once (202),
    // and serves it, once, when it is mined.
    let to = h.quote("/report").await;
    let tx = build_payment(&[utxo(0)], &to, Sat(PRICE), &change, Sat(1_000)).unwrap();
    let txid = tx.compute_txid();
    let hex_tx = serialize_hex(&tx);
    let r = h
        .get(
            "/report",
            &[
                ("Bitcoin-Transaction", &hex_tx),
                ("Return-Wallet-Address", "bcrt1qreturn"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::ACCEPTED, "awaiting_confirmations"),
        "{}",
        r.body
    );
    let seen = h.tx(&txid).await.expect("the server broadcast the payment");
    assert_eq!(seen.confirmations, 0);
    let rec = h.server.store().onchain(&txid).await.unwrap().unwrap();
    assert_eq!(rec.state, OnChainState::Pending, "not served unconfirmed");
    h.mine();
    assert_eq!(h.tx(&txid).await.unwrap().confirmations, 1);
    let r = h.get("/report", &[("Bitcoin-Transaction", &hex_tx)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, format!("paid by onchain ({PRICE} sat, {txid})"));
    let rec = h.server.store().onchain(&txid).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.amount, rec.quote_index.is_some()),
        (OnChainState::Redeemed, Sat(PRICE), true)
    );
    assert_eq!(rec.return_address.as_deref(), Some("bcrt1qreturn"));

    // The same transaction again, for the same or another quote: refused.
    let r = h.get("/report", &[("Bitcoin-Transaction", &hex_tx)]).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "payment_already_used")
    );

    // Bad input: every row gets its own fresh quote and its own coins.
    let stranger = p2wpkh(&fresh_key("stranger"));
    let mut rows: Vec<(&str, String, StatusCode, &str, Option<Txid>)> = Vec::new();
    rows.push((
        "malformed hex",
        "zz".into(),
        StatusCode::BAD_REQUEST,
        "invalid_transaction_hex",
        None,
    ));
    let mut add = |name, tx: Transaction, status, reason| {
        let id = tx.compute_txid();
        rows.push((name, serialize_hex(&tx), status, reason, Some(id)));
    };
    add(
        "wrong address",
        build_payment(&[utxo(1)], &stranger, Sat(PRICE), &change, Sat(1_000)).unwrap(),
        StatusCode::PAYMENT_REQUIRED,
        "not_paid_to_merchant",
    );
    let q = h.quote("/report").await;
    add(
        "underpayment",
        build_payment(&[utxo(2)], &q, Sat(PRICE - 1_000), &change, Sat(1_000)).unwrap(),
        StatusCode::PAYMENT_REQUIRED,
        "incorrect_payment_amount",
    );
    let q = h.quote("/report").await;
    add(
        "overpayment (exact by default)",
        build_payment(&[utxo(3)], &q, Sat(PRICE + 1), &change, Sat(1_000)).unwrap(),
        StatusCode::PAYMENT_REQUIRED,
        "incorrect_payment_amount",
    );
    let q = h.quote("/report").await;
    add(
        "dust",
        build_payment(&[utxo(4)], &q, Sat(2_000), &change, Sat(1_000)).unwrap(),
        StatusCode::PAYMENT_REQUIRED,
        "below_dust_limit",
    );
    let q = h.quote("/report").await;
    add(
        "zero fee",
        build_payment(&[utxo(5)], &q, Sat(PRICE), &change, Sat(0)).unwrap(),
        StatusCode::BAD_REQUEST,
        "fee_too_low",
    );
    let q = h.quote("/report").await;
    let rbf = BuildOptions {
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        ..Default::default()
    };
    add(
        "replaceable (RBF)",
        build_payment_with(&[utxo(6)], &q, Sat(PRICE), &change, Sat(1_000), &rbf).unwrap(),
        StatusCode::BAD_REQUEST,
        "rbf_signaled",
    );
    let q = h.quote("/report").await;
    let phantom = SpendableUtxo {
        outpoint: OutPoint::new(Txid::from_byte_array([0x42; 32]), 0),
        ..utxo(7)
    };
    add(
        "unknown input",
        build_payment(&[phantom], &q, Sat(PRICE), &change, Sat(1_000)).unwrap(),
        StatusCode::BAD_REQUEST,
        "input_not_found",
    );
    let q = h.quote("/report").await;
    add(
        "double spend of the paid coins",
        build_payment(&[utxo(0)], &q, Sat(PRICE), &change, Sat(2_000)).unwrap(),
        StatusCode::CONFLICT,
        "chain_conflict",
    );
    for (name, tx_hex, status, reason, id) in rows {
        let r = h.get("/report", &[("Bitcoin-Transaction", &tx_hex)]).await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (status, reason),
            "{name}: {}",
            r.body
        );
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{name}"
        );
        if status == StatusCode::PAYMENT_REQUIRED {
            assert_eq!(
                r.info().price,
                Sat(PRICE),
                "{name}: a fresh offer comes with the 402"
            );
        }
        if let Some(id) = id {
            assert!(h.tx(&id).await.is_none(), "{name}: nothing was broadcast");
            assert!(
                h.server.store().onchain(&id).await.unwrap().is_none(),
                "{name}: nothing was recorded"
            );
        }
    }

    // An expired quote: a second server with a zero quote lifetime, same node.
    let strict = BitreqServer::new(
        BitreqConfig::new(Network::Regtest).onchain(
            OnChainConfig::derived(Xpub::from_priv(
                &secp(),
                &Xpriv::new_master(Network::Regtest, &[3; 32]).unwrap(),
            ))
            .quote_ttl(Duration::ZERO),
        ),
        h.rpc.clone(),
        Arc::new(SqliteBitreqStore::in_memory().await.unwrap()),
    )
    .unwrap();
    let info = strict
        .offer(
            Sat(PRICE),
            &http::Method::GET,
            &"/report".parse().unwrap(),
            &http::HeaderMap::new(),
        )
        .await
        .unwrap();
    let q = info
        .address(Network::Regtest)
        .unwrap()
        .unwrap()
        .script_pubkey();
    let late = build_payment(&[utxo(8)], &q, Sat(PRICE), &change, Sat(1_000)).unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let app = Router::new().route(
        "/report",
        get(|| async { "x" }).route_layer(strict.layer(Price::sats(PRICE))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/report", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = h
        .send(
            h.http
                .get(url)
                .header("Bitcoin-Transaction", serialize_hex(&late)),
        )
        .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "quote_expired"),
        "{}",
        r.body
    );
    assert!(h.tx(&late.compute_txid()).await.is_none());

    // Requiring a confirmation: 202 with Retry-After until mined, then served once.
    let patient = BitreqServer::new(
        BitreqConfig::new(Network::Regtest).onchain(
            OnChainConfig::derived(Xpub::from_priv(
                &secp(),
                &Xpriv::new_master(Network::Regtest, &[4; 32]).unwrap(),
            ))
            .confirmations(1),
        ),
        h.rpc.clone(),
        Arc::new(SqliteBitreqStore::in_memory().await.unwrap()),
    )
    .unwrap();
    let app = Router::new().route(
        "/report",
        get(|| async { "confirmed report" }).route_layer(patient.layer(Price::sats(PRICE))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/report", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = h.send(h.http.get(&url)).await;
    let q = r
        .info()
        .address(Network::Regtest)
        .unwrap()
        .unwrap()
        .script_pubkey();
    let tx = build_payment(&[utxo(9)], &q, Sat(PRICE), &change, Sat(1_000)).unwrap();
    let present = || {
        h.http
            .get(&url)
            .header("Bitcoin-Transaction", serialize_hex(&tx))
    };
    for _ in 0..2 {
        let r = h.send(present()).await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (StatusCode::ACCEPTED, "awaiting_confirmations"),
            "{}",
            r.body
        );
        assert_eq!(r.headers["retry-after"], "30");
    }
    assert!(
        h.tx(&tx.compute_txid()).await.is_some(),
        "broadcast at the first presentation"
    );
    h.mine();
    let r = h.send(present()).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "confirmed report")
    );
    let r = h.send(present()).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "payment_already_used")
    );

    // Zero-conf is an explicit, price-capped opt-in: up to the cap a
    // payment is served as soon as it is broadcast; above it, it still waits
    // for its confirmation.
    let eager = BitreqServer::new(
        BitreqConfig::new(Network::Regtest).onchain(
            OnChainConfig::derived(Xpub::from_priv(
                &secp(),
                &Xpriv::new_master(Network::Regtest, &[5; 32]).unwrap(),
            ))
            .accept_unconfirmed_up_to(Sat(PRICE)),
        ),
        h.rpc.clone(),
        Arc::new(SqliteBitreqStore::in_memory().await.unwrap()),
    )
    .unwrap();
    let app = Router::new()
        .route(
            "/report",
            get(|| async { "unconfirmed report" }).route_layer(eager.layer(Price::sats(PRICE))),
        )
        .route(
            "/dear",
            get(|| async { "dear report" }).route_layer(eager.layer(Price::sats(2 * PRICE))),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    for (path, price, coin, status) in [
        ("/report", PRICE, 10, StatusCode::OK),
        ("/dear", 2 * PRICE, 11, StatusCode::ACCEPTED),
    ] {
        let url = format!("{base}{path}");
        let r = h.send(h.http.get(&url)).await;
        let q = r
            .info()
            .address(Network::Regtest)
            .unwrap()
            .unwrap()
            .script_pubkey();
        let tx = build_payment(&[utxo(coin)], &q, Sat(price), &change, Sat(1_000)).unwrap();
        let r = h
            .send(
                h.http
                    .get(&url)
                    .header("Bitcoin-Transaction", serialize_hex(&tx)),
            )
            .await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(
            h.tx(&tx.compute_txid()).await.unwrap().confirmations,
            0,
            "{path}: unconfirmed"
        );
    }
}

async fn transfer(h: &Harness) {
    let alice = fresh_key("alice");
    let admin = |path: &str| {
        h.http
            .post(format!("{}/admin{path}", h.base))
            .bearer_auth(ADMIN)
    };
    let r = h
        .send(admin("/accounts").json(&serde_json::json!({"username": "alice", "public_key": hex::encode(pk(&alice).serialize())})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = h
        .send(
            admin("/accounts/alice/credits")
                .json(&serde_json::json!({"amount": 12_000, "reference": "deposit-1"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["balance"].as_u64()),
        (StatusCode::OK, Some(12_000))
    );

    let offer = h.get("/report", &[]).await.info();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let signed = BitTransfer {
        payer: "alice".into(),
        payer_pubkey: pk(&alice),
        payee_address: offer.bitcoin_address.clone().unwrap_or_default(),
        payee_username: offer.username.clone().unwrap(),
        amount: offer.price,
        timestamp: ts,
        description: format!("{}/report", h.base),
    }
    .sign(&alice)
    .unwrap();
    let hdrs = [
        ("Bitcoin-Transfer", signed.transfer.as_str()),
        ("Authorization", signed.authorization.as_str()),
    ];
    let r = h.get("/report", &hdrs).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .starts_with(&format!("paid by transfer ({PRICE} sat"))
    );
    let r = h.get("/report", &hdrs).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "payment_already_used")
    );
    let r = h
        .send(
            h.http
                .get(format!("{}/admin/accounts/alice", h.base))
                .bearer_auth(ADMIN),
        )
        .await;
    assert_eq!(r.json()["balance"], 12_000 - PRICE);
    assert_eq!(
        h.server.account("shop").await.unwrap().unwrap().balance,
        Sat(PRICE)
    );
    // A forged signature.
    let forged = [
        ("Bitcoin-Transfer", signed.transfer.as_str()),
        (
            "Authorization",
            &pay402_core::bitreq::transfer::sign_header(&signed.transfer, &fresh_key("eve")),
        ),
    ];
    let r = h.get("/report", &forged).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
}

/// Opens a channel of `deposit` sat expiring at `expiry`, deposit mined.
async fn open_channel(
    h: &Harness,
    customer: &SecretKey,
    expiry: u32,
    deposit: u64,
) -> (ChannelParams, Transaction) {
    let merchant = pk(&h.merchant_key);
    let redeem =
        RedeemScript::new(merchant, pk(customer), expiry, ExpiryEncoding::Two1Raw).unwrap();
    let value = deposit_output_value(Sat(deposit), MIN_OUTPUT_AMOUNT, FEE).unwrap();
    let own = p2wpkh(customer);
    let funding = h.fund(&own, deposit + 50_000).await;
    h.mine();
    let u = SpendableUtxo {
        outpoint: funding,
        amount: Sat(deposit + 50_000),
        kind: SpendKind::P2wpkh,
        key: customer,
    };
    let tx = build_deposit(&[u], &redeem, value, &own, Sat(1_000)).unwrap();
    let open = OpenRequest {
        deposit_tx: serialize_hex(&tx),
        redeem_script: hex::encode(redeem.to_script().as_bytes()),
    };
    let r = h
        .send(
            h.http
                .post(format!("{}/payment", h.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encode_form(&open)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["deposit_txid"], tx.compute_txid().to_string());
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::new(tx.compute_txid(), 0),
        deposit_value: value,
        fee: FEE,
        min_output: MIN_OUTPUT_AMOUNT,
    };
    (params, tx)
}

async fn put_payment(h: &Harness, params: &ChannelParams, half: &Transaction) -> Reply {
    let body = encode_form(&PaymentRequest {
        payment_tx: serialize_hex(half),
    });
    h.send(
        h.http
            .put(format!("{}/payment/{}", h.base, params.deposit.txid))
            .body(body),
    )
    .await
}

async fn channel(h: &Harness) {
    // Discover the channel server from the 402, and its key.
    let offer = h.get("/report", &[]).await.info();
    let url = offer.channel_server.clone().unwrap();
    assert_eq!(url, format!("{}/payment", h.base));
    let info: ChannelInfo = h.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(info.merchant_key().unwrap(), pk(&h.merchant_key));

    let customer = fresh_key("customer");
    let expiry = u32::try_from(unix_now() + 3 * 24 * 3600).unwrap();
    let merchant = pk(&h.merchant_key);
    let redeem =
        RedeemScript::new(merchant, pk(&customer), expiry, ExpiryEncoding::Two1Raw).unwrap();
    let value = deposit_output_value(Sat(100_000), MIN_OUTPUT_AMOUNT, FEE).unwrap();
    let own = p2wpkh(&customer);
    let funding = h.fund(&own, 150_000).await;
    h.mine();
    let u = SpendableUtxo {
        outpoint: funding,
        amount: Sat(150_000),
        kind: SpendKind::P2wpkh,
        key: &customer,
    };
    let deposit = build_deposit(&[u], &redeem, value, &own, Sat(1_000)).unwrap();
    let open = OpenRequest {
        deposit_tx: serialize_hex(&deposit),
        redeem_script: hex::encode(redeem.to_script().as_bytes()),
    };
    let r = h.send(h.http.post(&url).body(encode_form(&open))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = deposit.compute_txid();
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::new(id, 0),
        deposit_value: value,
        fee: FEE,
        min_output: MIN_OUTPUT_AMOUNT,
    };

    // Not ready before the deposit is broadcast, nor while unconfirmed.
    let first = params.half_signed_payment(Sat(PRICE), &customer).unwrap();
    let r = put_payment(h, &params, &first).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "channel_not_ready")
    );
    h.rpc
        .broadcast(&deposit)
        .await
        .expect("client broadcasts the deposit");
    let r = put_payment(h, &params, &first).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "channel_not_ready")
    );
    h.mine();
    let status: serde_json::Value = h
        .http
        .get(format!("{url}/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (status["status"].as_str(), status["balance"].as_u64()),
        (Some("ready"), Some(0))
    );

    // Three payments of PRICE through the HTTP flow.
    let mut total = 0;
    for n in 1..=3u64 {
        let half = params
            .half_signed_payment(Sat(PRICE * n), &customer)
            .unwrap();
        let r = put_payment(h, &params, &half).await;
        assert_eq!(r.status, StatusCode::OK, "payment {n}: {}", r.body);
        let token = r.json()["payment_txid"].as_str().unwrap().to_owned();
        assert_eq!(
            token,
            half.compute_txid().to_string(),
            "the token is the half-signed txid"
        );
        let r = h
            .get("/report", &[("Bitcoin-Payment-Channel-Token", &token)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "redeem {n}: {}", r.body);
        assert_eq!(r.body, format!("paid by channel ({PRICE} sat, {token})"));
        total += PRICE;
        let r = h
            .get("/report", &[("bitcoin-payment-channel-token", &token)])
            .await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (StatusCode::CONFLICT, "payment_already_used"),
            "reuse {n}"
        );
    }

    // An increment below the price is refused and the token is not burned.
    let small = params
        .half_signed_payment(Sat(total + CHEAP), &customer)
        .unwrap();
    let r = put_payment(h, &params, &small).await;
    let small_token = r.json()["payment_txid"].as_str().unwrap().to_owned();
    let r = h
        .get(
            "/report",
            &[("Bitcoin-Payment-Channel-Token", &small_token)],
        )
        .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "underpaid")
    );
    let r = h
        .get("/cheap", &[("Bitcoin-Payment-Channel-Token", &small_token)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    total += CHEAP;

    // Bad payments.
    let stale = params
        .half_signed_payment(Sat(total - 500), &customer)
        .unwrap();
    let r = put_payment(h, &params, &stale).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "incorrect_payment_amount")
    );
    let mut tampered = params
        .half_signed_payment(Sat(total + PRICE), &customer)
        .unwrap();
    tampered.output[1].value = Amount::from_sat(tampered.output[1].value.to_sat() - 1_000);
    let r = put_payment(h, &params, &tampered).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_transaction")
    );
    let other_signer = params
        .half_signed_payment(Sat(total + PRICE), &fresh_key("mallory"))
        .unwrap();
    let r = put_payment(h, &params, &other_signer).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    let r = h
        .get(
            "/report",
            &[("Bitcoin-Payment-Channel-Token", &"00".repeat(32))],
        )
        .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "unknown_token")
    );

    // Close: a bad signature first, then the customer's.
    let del = |sig: Vec<u8>| {
        h.http
            .delete(format!("{url}/{id}"))
            .body(format!("signature={}", hex::encode(sig)))
    };
    let r = h
        .send(del(close_signature(&id, &fresh_key("mallory"))))
        .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    let r = h.send(del(close_signature(&id, &customer))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let close_txid: Txid = r.json()["payment_txid"].as_str().unwrap().parse().unwrap();
    assert!(h.tx(&close_txid).await.is_some(), "the close is broadcast");
    h.mine();
    let close = h.tx(&close_txid).await.unwrap();
    assert_eq!(close.confirmations, 1);
    assert_eq!(close.tx.input[0].previous_output, params.deposit);
    assert_eq!(close.tx.output[0].script_pubkey, p2pkh(&merchant));
    assert_eq!(
        close.tx.output[0].value.to_sat(),
        total,
        "the merchant gets exactly what was paid"
    );
    assert_eq!(close.tx.output[1].script_pubkey, p2pkh(&pk(&customer)));
    assert_eq!(close.tx.output[1].value.to_sat(), value.0 - FEE.0 - total);

    // Closed for good.
    let more = params
        .half_signed_payment(Sat(total + PRICE), &customer)
        .unwrap();
    let r = put_payment(h, &params, &more).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "channel_closed")
    );
    let r = h.send(del(close_signature(&id, &customer))).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "channel_closed")
    );
    let report = h.server.sync_once(UnixTime(unix_now())).await;
    assert!(report.closed >= 1, "{report:?}");
    assert_eq!(
        h.server.store().channel(&id).await.unwrap().unwrap().state,
        ChannelState::Closed
    );
    let status: serde_json::Value = h
        .http
        .get(format!("{url}/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (status["status"].as_str(), status["balance"].as_u64()),
        (Some("closed"), Some(total))
    );
}

async fn channel_expiry(h: &Harness) {
    // Past its close deadline (2 h left, margin 1 day): payments are refused.
    let late_customer = fresh_key("late");
    let (late, deposit) = open_channel(
        h,
        &late_customer,
        u32::try_from(unix_now() + 2 * 3600).unwrap(),
        50_000,
    )
    .await;
    h.rpc.broadcast(&deposit).await.unwrap();
    h.mine();
    let half = late
        .half_signed_payment(Sat(PRICE), &late_customer)
        .unwrap();
    let r = put_payment(h, &late, &half).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "channel_expiring")
    );

    // A paid channel is closed by the sync task once its deadline comes.
    let customer = fresh_key("synced");
    let expiry = u32::try_from(unix_now() + 3 * 24 * 3600).unwrap();
    let (params, deposit) = open_channel(h, &customer, expiry, 50_000).await;
    h.rpc.broadcast(&deposit).await.unwrap();
    h.mine();
    let half = params.half_signed_payment(Sat(4_000), &customer).unwrap();
    let r = put_payment(h, &params, &half).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let report = h.server.sync_once(UnixTime(unix_now())).await;
    assert!(report.closed_by_server.is_empty(), "not yet: {report:?}");
    let report = h.server.sync_once(UnixTime(u64::from(expiry) - 3600)).await;
    assert_eq!(report.closed_by_server.len(), 1, "{report:?}");
    let (id, close_txid) = report.closed_by_server[0];
    assert_eq!(id, params.deposit.txid);
    h.mine();
    let close = h.tx(&close_txid).await.expect("close broadcast by sync");
    assert_eq!(close.confirmations, 1);
    assert_eq!(close.tx.output[0].value.to_sat(), 4_000);
    let report = h.server.sync_once(UnixTime(unix_now())).await;
    assert!(report.closed >= 1, "{report:?}");
    assert_eq!(
        h.server.store().channel(&id).await.unwrap().unwrap().state,
        ChannelState::Closed
    );
    // Once the channel is closed its unredeemed tokens no longer pay.
    let r = h
        .get(
            "/cheap",
            &[(
                "Bitcoin-Payment-Channel-Token",
                &half.compute_txid().to_string(),
            )],
        )
        .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "channel_closed")
    );
}
