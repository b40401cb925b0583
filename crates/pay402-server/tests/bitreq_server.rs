#![cfg(feature = "bitreq")]
//! The BitRequests server over HTTP without a Bitcoin node: the 402 offer,
//! the bit-transfer ledger end to end, the channel endpoints' validation,
//! bad input of every kind (4xx problem+json with a stable reason, never a
//! panic, never a 5xx for a client fault), and replay refusal through two
//! servers sharing one database (the stores themselves are checked by the
//! conformance suite, `store_conformance`).
//!
//! The chain backend is a real `BitcoindRpc` pointed at a closed loopback
//! port, so every chain call fails with a genuine "unreachable" error: the
//! tests below either never need the chain, or check that its absence is a
//! 503. Flows that need a chain run on bcoin in `bcoin_bitreq_server.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, Network, OutPoint, ScriptBuf, Txid};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_core::bitreq::channel::{build_deposit, close_signature, deposit_output_value};
use pay402_core::bitreq::onchain::build_payment;
use pay402_core::bitreq::rest::{ChannelInfo, OpenRequest, PaymentRequest, encode_form};
use pay402_core::bitreq::{
    BitTransfer, ChannelParams, ExpiryEncoding, PaymentInfo, RedeemScript, SpendKind, SpendableUtxo,
};
use pay402_core::money::Sat;
use pay402_server::Price;
use pay402_server::bitreq::store::{
    BitreqStore, CreditOutcome, MemoryBitreqStore, PostgresBitreqStore, SqliteBitreqStore,
};
use pay402_server::bitreq::{
    BitreqConfig, BitreqPayment, BitreqServer, ChannelConfig, ConfigError, MerchantKey,
    OnChainConfig, TransferConfig,
};
use tower::ServiceExt;

const PRICE: u64 = 5_000;
const ADMIN: &str = "operator-secret-token";
const MERCHANT_SEED: [u8; 32] = [7; 32];
const MERCHANT_KEY: [u8; 32] = [9; 32];
const FEE: Sat = Sat(2_000);

fn secp() -> Secp256k1<bitcoin::secp256k1::All> {
    Secp256k1::new()
}

fn xpub() -> Xpub {
    let xprv = Xpriv::new_master(Network::Regtest, &MERCHANT_SEED).unwrap();
    Xpub::from_priv(&secp(), &xprv)
}

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
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

/// A real RPC client whose node is down (nothing listens on port 9).
fn dead_chain() -> Arc<BitcoindRpc> {
    Arc::new(
        BitcoindRpc::new(BitcoindConfig {
            url: "http://127.0.0.1:9".parse().unwrap(),
            user: "u".into(),
            password: "p".into(),
            timeout: Duration::from_secs(2),
        })
        .unwrap(),
    )
}

fn config() -> BitreqConfig {
    BitreqConfig::new(Network::Regtest)
        .public_url("http://merchant.test")
        .onchain(OnChainConfig::derived(xpub()))
        .transfer(TransferConfig::new("shop"))
        .channel(
            ChannelConfig::new(MerchantKey::from_slice(&MERCHANT_KEY).unwrap())
                .fee(FEE)
                .min_duration(Duration::from_secs(3600))
                .close_margin(Duration::from_secs(24 * 3600)),
        )
}

struct Env {
    server: BitreqServer,
    app: Router,
    admin: Router,
}

fn env_with(store: Arc<dyn BitreqStore>) -> Env {
    let server = BitreqServer::new(config(), dead_chain(), store).unwrap();
    let app = Router::new()
        .route(
            "/report",
            get(|paid: BitreqPayment| async move {
                format!(
                    "report paid by {} ({} sat)",
                    paid.method.as_str(),
                    paid.amount.0
                )
            })
            .post(|paid: BitreqPayment| async move { format!("posted {}", paid.amount.0) })
            .route_layer(server.layer(Price::sats(PRICE))),
        )
        .route(
            "/other",
            get(|| async { "other" }).route_layer(server.layer(Price::sats(PRICE))),
        )
        .route(
            "/free",
            get(|| async { "free" }).route_layer(server.layer(Price::sats(0))),
        )
        .merge(server.channel_router());
    let admin = server.ledger_router(ADMIN).unwrap();
    Env { server, app, admin }
}

fn env() -> Env {
    env_with(Arc::new(MemoryBitreqStore::new()))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_owned()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn info(&self) -> PaymentInfo {
        PaymentInfo::from_header_map(&self.headers).unwrap()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path).header(header::HOST, "merchant.test");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Body::empty()).unwrap()
}

fn body_req(method: &str, path: &str, body: impl Into<Body>, auth: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, format!("Bearer {a}"));
    }
    b.body(body.into()).unwrap()
}

fn transfer(
    payer: &str,
    k: &SecretKey,
    amount: u64,
    ts: f64,
    description: &str,
) -> (String, String) {
    let t = BitTransfer {
        payer: payer.into(),
        payer_pubkey: pk(k),
        payee_address: String::new(),
        payee_username: "shop".into(),
        amount: Sat(amount),
        timestamp: ts,
        description: description.into(),
    };
    let s = t.sign(k).unwrap();
    (s.transfer, s.authorization)
}

fn now_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn open_and_credit(e: &Env, user: &str, k: &SecretKey, amount: u64) {
    let body = serde_json::json!({"username": user, "public_key": hex::encode(pk(k).serialize())});
    let r = send(
        &e.admin,
        body_req("POST", "/accounts", body.to_string(), Some(ADMIN)),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let body = serde_json::json!({"amount": amount, "reference": format!("dep-{user}")});
    let r = send(
        &e.admin,
        body_req(
            "POST",
            &format!("/accounts/{user}/credits"),
            body.to_string(),
            Some(ADMIN),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["balance"], amount);
    assert_eq!(r.json()["applied"], true);
}

#[tokio::test]
async fn offer_advertises_all_three_methods_with_fresh_addresses() {
    let e = env();
    let a = send(&e.app, get_with("/report", &[])).await;
    assert_eq!(a.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(a.reason(), "payment_required");
    let info = a.info();
    assert_eq!(info.price, Sat(PRICE));
    assert_eq!(info.username.as_deref(), Some("shop"));
    assert_eq!(
        info.channel_server.as_deref(),
        Some("http://merchant.test/payment")
    );
    let addr_a = info.address(Network::Regtest).unwrap().unwrap();
    assert!(addr_a.to_string().starts_with("bcrt1q"));
    // Index 0 of the external chain of the merchant xpub.
    let expected = pay402_server::bitreq::derived_script(
        &xpub(),
        pay402_server::bitreq::AddressKind::P2wpkh,
        Network::Regtest,
        0,
    )
    .unwrap();
    assert_eq!(addr_a.script_pubkey(), expected);
    let b = send(&e.app, get_with("/report", &[])).await;
    let addr_b = b.info().address(Network::Regtest).unwrap().unwrap();
    assert_ne!(addr_a, addr_b, "every 402 quotes a fresh address");
    let q = e
        .server
        .store()
        .quote_by_script(&addr_b.script_pubkey())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (q.index, q.price, q.resource.as_str()),
        (1, Sat(PRICE), "GET /report")
    );
    // Header names are exposed to browsers.
    assert!(
        a.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .contains("Bitcoin-Payment-Channel-Server")
    );
    // A free price passes straight through.
    let f = send(&e.app, get_with("/free", &[])).await;
    assert_eq!((f.status, f.text().as_str()), (StatusCode::OK, "free"));
}

#[tokio::test]
async fn bit_transfer_pays_from_the_ledger_once() {
    let e = env();
    let alice = key(21);
    open_and_credit(&e, "alice", &alice, 12_000).await;
    let (t, a) = transfer(
        "alice",
        &alice,
        PRICE,
        now_f(),
        "http://merchant.test/report",
    );
    let hdrs = [
        ("Bitcoin-Transfer", t.as_str()),
        ("Authorization", a.as_str()),
    ];
    let r = send(&e.app, get_with("/report", &hdrs)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), format!("report paid by transfer ({PRICE} sat)"));
    assert_eq!(
        e.server.account("alice").await.unwrap().unwrap().balance,
        Sat(7_000)
    );
    assert_eq!(
        e.server.account("shop").await.unwrap().unwrap().balance,
        Sat(PRICE)
    );

    // The same signed transfer again: refused, nothing moves.
    let r = send(&e.app, get_with("/report", &hdrs)).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "payment_already_used")
    );
    assert_eq!(
        e.server.account("alice").await.unwrap().unwrap().balance,
        Sat(7_000)
    );

    // A second transfer drains to 2 000; a third is refused with a fresh offer
    // and does not burn: after a credit the very same transfer goes through.
    let (t2, a2) = transfer("alice", &alice, PRICE, now_f() + 0.5, "/report");
    let r = send(
        &e.app,
        get_with(
            "/report",
            &[("Bitcoin-Transfer", &t2), ("Authorization", &a2)],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let (t3, a3) = transfer("alice", &alice, PRICE, now_f() + 1.0, "/report");
    let h3 = [
        ("Bitcoin-Transfer", t3.as_str()),
        ("Authorization", a3.as_str()),
    ];
    let r = send(&e.app, get_with("/report", &h3)).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "insufficient_balance")
    );
    assert_eq!(
        r.info().price,
        Sat(PRICE),
        "a refused proof comes with a fresh offer"
    );
    assert_eq!(
        e.server.account("alice").await.unwrap().unwrap().balance,
        Sat(2_000)
    );
    let out = e
        .server
        .credit("alice", Sat(10_000), "dep-2")
        .await
        .unwrap();
    assert_eq!(
        out,
        CreditOutcome::Credited {
            balance: Sat(12_000)
        }
    );
    // Credits are idempotent per reference.
    let again = e
        .server
        .credit("alice", Sat(10_000), "dep-2")
        .await
        .unwrap();
    assert_eq!(
        again,
        CreditOutcome::AlreadyApplied {
            balance: Sat(12_000)
        }
    );
    let r = send(&e.app, get_with("/report", &h3)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        e.server.account("shop").await.unwrap().unwrap().balance,
        Sat(3 * PRICE)
    );
}

#[tokio::test]
async fn bit_transfer_bad_input_table() {
    let e = env();
    let alice = key(21);
    let mallory = key(22);
    open_and_credit(&e, "alice", &alice, 100_000).await;
    let now = now_f();
    let ok_desc = "http://merchant.test/report";
    let mut rows: Vec<(&str, String, String, StatusCode, &str)> = Vec::new();
    let mut add = |name, (t, a): (String, String), st, reason| rows.push((name, t, a, st, reason));
    add(
        "wrong amount",
        transfer("alice", &alice, PRICE - 1, now, ok_desc),
        StatusCode::PAYMENT_REQUIRED,
        "incorrect_payment_amount",
    );
    add(
        "unknown payer",
        transfer("bob", &alice, PRICE, now, ok_desc),
        StatusCode::PAYMENT_REQUIRED,
        "unknown_payer",
    );
    add(
        "another key",
        transfer("alice", &mallory, PRICE, now, ok_desc),
        StatusCode::UNAUTHORIZED,
        "payer_key_mismatch",
    );
    add(
        "stale",
        transfer("alice", &alice, PRICE, now - 3_600.0, ok_desc),
        StatusCode::PAYMENT_REQUIRED,
        "transfer_expired",
    );
    add(
        "future",
        transfer("alice", &alice, PRICE, now + 3_600.0, ok_desc),
        StatusCode::PAYMENT_REQUIRED,
        "transfer_expired",
    );
    add(
        "other resource",
        transfer("alice", &alice, PRICE, now, "http://merchant.test/other"),
        StatusCode::BAD_REQUEST,
        "transfer_wrong_resource",
    );
    let (t, _) = transfer("alice", &alice, PRICE, now, ok_desc);
    let (_, other_sig) = transfer("alice", &alice, PRICE, now + 7.0, ok_desc);
    add(
        "signature of another transfer",
        (t.clone(), other_sig),
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
    );
    add(
        "signature not base64",
        (t.clone(), "!".repeat(88)),
        StatusCode::BAD_REQUEST,
        "malformed_signature",
    );
    add(
        "short signature",
        (t.clone(), "AAAA".into()),
        StatusCode::BAD_REQUEST,
        "malformed_signature",
    );
    add(
        "not json",
        ("{nope".into(), "AAAA".into()),
        StatusCode::BAD_REQUEST,
        "malformed_transfer",
    );
    let wrong_payee = BitTransfer {
        payer: "alice".into(),
        payer_pubkey: pk(&alice),
        payee_address: String::new(),
        payee_username: "someone-else".into(),
        amount: Sat(PRICE),
        timestamp: now,
        description: ok_desc.into(),
    }
    .sign(&alice)
    .unwrap();
    add(
        "wrong payee",
        (wrong_payee.transfer, wrong_payee.authorization),
        StatusCode::BAD_REQUEST,
        "payee_mismatch",
    );
    for (name, t, a, status, reason) in rows {
        let r = send(
            &e.app,
            get_with(
                "/report",
                &[("Bitcoin-Transfer", &t), ("Authorization", &a)],
            ),
        )
        .await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (status, reason),
            "{name}: {}",
            r.text()
        );
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/problem+json",
            "{name}"
        );
    }
    assert_eq!(
        e.server.account("alice").await.unwrap().unwrap().balance,
        Sat(100_000),
        "nothing was debited"
    );
    // A transfer to `/report` cannot pay `/other`.
    let (t, a) = transfer("alice", &alice, PRICE, now_f(), ok_desc);
    let r = send(
        &e.app,
        get_with("/other", &[("Bitcoin-Transfer", &t), ("Authorization", &a)]),
    )
    .await;
    assert_eq!(r.reason(), "transfer_wrong_resource");
}

#[tokio::test]
async fn proof_header_bad_input_table() {
    let e = env();
    let long_tx = "0".repeat(200_002);
    let unknown_token = "ab".repeat(32);
    type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, StatusCode, &'a str);
    let rows: Vec<Row> = vec![
        (
            "tx not hex",
            vec![("Bitcoin-Transaction", "zz")],
            StatusCode::BAD_REQUEST,
            "invalid_transaction_hex",
        ),
        (
            "tx garbage",
            vec![("Bitcoin-Transaction", "0100")],
            StatusCode::BAD_REQUEST,
            "invalid_transaction",
        ),
        (
            "tx too long",
            vec![("Bitcoin-Transaction", &long_tx)],
            StatusCode::from_u16(431).unwrap(),
            "header_too_long",
        ),
        (
            "two txs",
            vec![("Bitcoin-Transaction", "00"), ("bitcoin-transaction", "00")],
            StatusCode::BAD_REQUEST,
            "duplicate_header",
        ),
        (
            "token not hex",
            vec![("Bitcoin-Payment-Channel-Token", "xyz")],
            StatusCode::BAD_REQUEST,
            "invalid_channel_token",
        ),
        (
            "unknown token",
            vec![("Bitcoin-Payment-Channel-Token", unknown_token.as_str())],
            StatusCode::PAYMENT_REQUIRED,
            "unknown_token",
        ),
        (
            "transfer without signature",
            vec![("Bitcoin-Transfer", "{}")],
            StatusCode::PAYMENT_REQUIRED,
            "payment_required",
        ),
    ];
    for (name, hdrs, status, reason) in rows {
        let r = send(&e.app, get_with("/report", &hdrs)).await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (status, reason),
            "{name}: {}",
            r.text()
        );
        if status == StatusCode::PAYMENT_REQUIRED {
            assert_eq!(r.info().price, Sat(PRICE), "{name}: 402 carries an offer");
        }
    }
}

#[tokio::test]
async fn onchain_proofs_are_bound_to_their_quote() {
    let e = env();
    let payer = key(31);
    let utxo = SpendableUtxo {
        outpoint: OutPoint::new(Txid::from_byte_array([5; 32]), 0),
        amount: Sat(50_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let change = utxo.script_pubkey();
    // Pays an address the server never quoted.
    let stranger =
        ScriptBuf::new_p2wpkh(&bitcoin::CompressedPublicKey(pk(&key(32))).wpubkey_hash());
    let tx = build_payment(&[utxo], &stranger, Sat(PRICE), &change, Sat(1_000)).unwrap();
    let r = send(
        &e.app,
        get_with("/report", &[("Bitcoin-Transaction", &serialize_hex(&tx))]),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "not_paid_to_merchant")
    );

    // Pays the quote of /report but is presented for /other.
    let quoted = send(&e.app, get_with("/report", &[])).await.info();
    let to = quoted
        .address(Network::Regtest)
        .unwrap()
        .unwrap()
        .script_pubkey();
    let tx = build_payment(&[utxo], &to, Sat(PRICE), &change, Sat(1_000)).unwrap();
    let hex_tx = serialize_hex(&tx);
    let r = send(
        &e.app,
        get_with("/other", &[("Bitcoin-Transaction", &hex_tx)]),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "quote_other_resource")
    );

    // Presented for the right resource, the fee check needs the chain: down → 503,
    // and nothing was recorded (the same tx can be presented again later).
    let r = send(
        &e.app,
        get_with("/report", &[("Bitcoin-Transaction", &hex_tx)]),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "chain_unreachable")
    );
    assert!(
        e.server
            .store()
            .onchain(&tx.compute_txid())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn channel_endpoints_validate_everything() {
    let e = env();
    let merchant = pk(&key(MERCHANT_KEY[0]));
    let r = send(&e.app, get_with("/payment", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    let info: ChannelInfo = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(info.merchant_key().unwrap(), merchant);
    assert!(!info.zeroconf);

    // A deposit built (and never broadcast) by a customer.
    let customer = key(41);
    let expiry = u32::try_from(unix_now() + 3 * 24 * 3600).unwrap();
    let redeem =
        RedeemScript::new(merchant, pk(&customer), expiry, ExpiryEncoding::Two1Raw).unwrap();
    let value = deposit_output_value(Sat(100_000), Sat(3_000), FEE).unwrap();
    let utxo = SpendableUtxo {
        outpoint: OutPoint::new(Txid::from_byte_array([6; 32]), 1),
        amount: Sat(200_000),
        kind: SpendKind::P2pkh,
        key: &customer,
    };
    let deposit =
        build_deposit(&[utxo], &redeem, value, &utxo.script_pubkey(), Sat(1_000)).unwrap();
    let open = OpenRequest {
        deposit_tx: serialize_hex(&deposit),
        redeem_script: hex::encode(redeem.to_script().as_bytes()),
    };
    let r = send(
        &e.app,
        body_req("POST", "/payment", encode_form(&open), None),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = deposit.compute_txid();
    assert_eq!(r.json()["deposit_txid"], id.to_string());
    let r = send(
        &e.app,
        body_req(
            "POST",
            "/payment",
            serde_json::to_string(&open).unwrap(),
            None,
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "channel_exists")
    );

    let path = format!("/payment/{id}");
    let r = send(&e.app, get_with(&path, &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "confirming");
    assert_eq!(r.json()["balance"], 0);
    assert_eq!(r.json()["time_left"], expiry);

    // A valid half-signed payment, but the deposit's confirmation cannot be
    // checked with the node down.
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::new(id, 0),
        deposit_value: value,
        fee: FEE,
        min_output: Sat(3_000),
    };
    let half = params.half_signed_payment(Sat(5_000), &customer).unwrap();
    let put = PaymentRequest {
        payment_tx: serialize_hex(&half),
    };
    let r = send(&e.app, body_req("PUT", &path, encode_form(&put), None)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());

    // Close needs a payment; a bad signature is refused first.
    let bad = hex::encode(close_signature(&id, &key(42)));
    let r = send(
        &e.app,
        body_req("DELETE", &path, format!("signature={bad}"), None),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    let good = hex::encode(close_signature(&id, &customer));
    let r = send(
        &e.app,
        body_req("DELETE", &path, format!("signature={good}"), None),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::BAD_REQUEST, "no_payment")
    );

    let other_merchant =
        RedeemScript::new(pk(&key(43)), pk(&customer), expiry, ExpiryEncoding::Two1Raw).unwrap();
    let short = RedeemScript::new(
        merchant,
        pk(&customer),
        u32::try_from(unix_now() + 60).unwrap(),
        ExpiryEncoding::Two1Raw,
    )
    .unwrap();
    let small = build_deposit(
        &[utxo],
        &redeem,
        Sat(5_000),
        &utxo.script_pubkey(),
        Sat(1_000),
    )
    .unwrap();
    let rows: Vec<(&str, &str, String, String, StatusCode, &str)> = vec![
        (
            "open: not a body",
            "POST",
            "/payment".into(),
            "x=1".into(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "open: deposit not hex",
            "POST",
            "/payment".into(),
            "deposit_tx=zz&redeem_script=63".into(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "open: script not v2",
            "POST",
            "/payment".into(),
            format!("deposit_tx={}&redeem_script=6363", serialize_hex(&deposit)),
            StatusCode::BAD_REQUEST,
            "invalid_redeem_script",
        ),
        (
            "open: another merchant",
            "POST",
            "/payment".into(),
            format!(
                "deposit_tx={}&redeem_script={}",
                serialize_hex(&deposit),
                hex::encode(other_merchant.to_script().as_bytes())
            ),
            StatusCode::BAD_REQUEST,
            "invalid_redeem_script",
        ),
        (
            "open: too short",
            "POST",
            "/payment".into(),
            format!(
                "deposit_tx={}&redeem_script={}",
                serialize_hex(&deposit),
                hex::encode(short.to_script().as_bytes())
            ),
            StatusCode::BAD_REQUEST,
            "invalid_channel_parameter",
        ),
        (
            "open: deposit pays another script",
            "POST",
            "/payment".into(),
            format!(
                "deposit_tx={}&redeem_script={}",
                serialize_hex(&deposit),
                hex::encode(
                    RedeemScript::new(merchant, pk(&customer), expiry + 1, ExpiryEncoding::Two1Raw)
                        .unwrap()
                        .to_script()
                        .as_bytes()
                )
            ),
            StatusCode::BAD_REQUEST,
            "not_paid_to_merchant",
        ),
        (
            "open: deposit too small",
            "POST",
            "/payment".into(),
            format!(
                "deposit_tx={}&redeem_script={}",
                serialize_hex(&small),
                hex::encode(redeem.to_script().as_bytes())
            ),
            StatusCode::BAD_REQUEST,
            "invalid_channel_parameter",
        ),
        (
            "status: bad id",
            "GET",
            "/payment/xyz".into(),
            String::new(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "status: unknown",
            "GET",
            format!("/payment/{}", "cd".repeat(32)),
            String::new(),
            StatusCode::NOT_FOUND,
            "channel_not_found",
        ),
        (
            "pay: unknown",
            "PUT",
            format!("/payment/{}", "cd".repeat(32)),
            encode_form(&put),
            StatusCode::NOT_FOUND,
            "channel_not_found",
        ),
        (
            "pay: tx not hex",
            "PUT",
            path.clone(),
            "payment_tx=zz".into(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "pay: no field",
            "PUT",
            path.clone(),
            "{}".into(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "close: signature not hex",
            "DELETE",
            path.clone(),
            "signature=zz".into(),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            "close: unknown",
            "DELETE",
            format!("/payment/{}", "cd".repeat(32)),
            format!("signature={good}"),
            StatusCode::NOT_FOUND,
            "channel_not_found",
        ),
        (
            "body too large",
            "PUT",
            path.clone(),
            "a".repeat(300 * 1024),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (name, method, path, body, status, reason) in rows {
        let r = send(&e.app, body_req(method, &path, body, None)).await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (status, reason),
            "{name}: {}",
            r.text()
        );
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/problem+json",
            "{name}"
        );
    }
}

#[tokio::test]
async fn ledger_api_requires_the_operator_token() {
    let e = env();
    let body = serde_json::json!({"username": "alice", "public_key": hex::encode(pk(&key(1)).serialize())}).to_string();
    for auth in [None, Some("wrong"), Some("")] {
        let r = send(&e.admin, body_req("POST", "/accounts", body.clone(), auth)).await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
    }
    let r = send(
        &e.admin,
        body_req("POST", "/accounts", body.clone(), Some(ADMIN)),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = send(&e.admin, body_req("POST", "/accounts", body, Some(ADMIN))).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "account_exists")
    );
    let rows = [
        (
            "/accounts",
            r#"{"username":"","public_key":"02"}"#,
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "/accounts",
            r#"{"username":"bob","public_key":"zz"}"#,
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "/accounts/alice/credits",
            r#"{"amount":-5,"reference":"r"}"#,
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "/accounts/alice/credits",
            r#"{"amount":0,"reference":"r"}"#,
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "/accounts/alice/credits",
            r#"{"amount":2100000000000001,"reference":"r"}"#,
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "/accounts/nobody/credits",
            r#"{"amount":5,"reference":"r"}"#,
            StatusCode::NOT_FOUND,
            "account_not_found",
        ),
    ];
    for (path, body, status, reason) in rows {
        let r = send(&e.admin, body_req("POST", path, body, Some(ADMIN))).await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (status, reason),
            "{path} {body}"
        );
    }
    let credit =
        |amount: u64| serde_json::json!({"amount": amount, "reference": "inv-1"}).to_string();
    let r = send(
        &e.admin,
        body_req("POST", "/accounts/alice/credits", credit(500), Some(ADMIN)),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["balance"].as_u64()),
        (StatusCode::OK, Some(500))
    );
    let r = send(
        &e.admin,
        body_req("POST", "/accounts/alice/credits", credit(500), Some(ADMIN)),
    )
    .await;
    assert_eq!(
        (r.json()["balance"].as_u64(), r.json()["applied"].as_bool()),
        (Some(500), Some(false))
    );
    let r = send(
        &e.admin,
        body_req("POST", "/accounts/alice/credits", credit(600), Some(ADMIN)),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::CONFLICT, "reference_conflict")
    );
    let r = send(
        &e.admin,
        Request::get("/accounts/alice")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["balance"], 500);
}

#[tokio::test]
async fn config_is_checked() {
    let chain = dead_chain();
    let store: Arc<dyn BitreqStore> = Arc::new(MemoryBitreqStore::new());
    let no_method = BitreqServer::new(
        BitreqConfig::new(Network::Regtest),
        chain.clone(),
        store.clone(),
    );
    assert_eq!(no_method.unwrap_err(), ConfigError::NoMethod);
    let mainnet_xpub = Xpub::from_priv(
        &secp(),
        &Xpriv::new_master(Network::Bitcoin, &[1; 32]).unwrap(),
    );
    let wrong_net =
        BitreqConfig::new(Network::Regtest).onchain(OnChainConfig::derived(mainnet_xpub));
    assert_eq!(
        BitreqServer::new(wrong_net, chain.clone(), store.clone()).unwrap_err(),
        ConfigError::NetworkMismatch
    );
    let main_addr: Address = "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM"
        .parse::<Address<_>>()
        .unwrap()
        .assume_checked();
    let wrong_addr = BitreqConfig::new(Network::Regtest).onchain(OnChainConfig::fixed(main_addr));
    assert_eq!(
        BitreqServer::new(wrong_addr, chain.clone(), store.clone()).unwrap_err(),
        ConfigError::NetworkMismatch
    );
    let bad_path = BitreqConfig::new(Network::Regtest)
        .channel(ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap()).path("payment"));
    assert_eq!(
        BitreqServer::new(bad_path, chain.clone(), store.clone()).unwrap_err(),
        ConfigError::InvalidPath
    );
    let bad_user = BitreqConfig::new(Network::Regtest).transfer(TransferConfig::new("two words"));
    assert_eq!(
        BitreqServer::new(bad_user, chain, store).unwrap_err(),
        ConfigError::InvalidUsername
    );
    assert_eq!(
        MerchantKey::from_slice(&[0; 32]).unwrap_err(),
        ConfigError::InvalidKey
    );
}

/// Concurrent presentations of one transfer, through two stores sharing one
/// database (as two server processes would): exactly one is served, and
/// many different transfers at once never overdraw.
async fn transfer_replay_is_atomic_across_stores_sharing_a_database(
    s1: Arc<dyn BitreqStore>,
    s2: Arc<dyn BitreqStore>,
) {
    let e1 = env_with(s1);
    let e2 = env_with(s2);
    let alice = key(21);
    open_and_credit(&e1, "alice", &alice, 1_000_000).await;
    let (t, a) = transfer("alice", &alice, PRICE, now_f(), "/report");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let app = if i % 2 == 0 {
            e1.app.clone()
        } else {
            e2.app.clone()
        };
        let (t, a) = (t.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            send(
                &app,
                get_with(
                    "/report",
                    &[("Bitcoin-Transfer", &t), ("Authorization", &a)],
                ),
            )
            .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert_eq!(r.reason(), "payment_already_used"),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        e2.server.account("alice").await.unwrap().unwrap().balance,
        Sat(1_000_000 - PRICE)
    );
    // Many different transfers at once never overdraw.
    let mut tasks = Vec::new();
    let balance = e1.server.account("alice").await.unwrap().unwrap().balance.0;
    let affordable = balance / PRICE;
    for i in 0..(affordable + 10) {
        let app = if i % 2 == 0 {
            e1.app.clone()
        } else {
            e2.app.clone()
        };
        let (t, a) = transfer(
            "alice",
            &alice,
            PRICE,
            now_f() + (i as f64) / 1000.0,
            "/report",
        );
        tasks.push(tokio::spawn(async move {
            send(
                &app,
                get_with(
                    "/report",
                    &[("Bitcoin-Transfer", &t), ("Authorization", &a)],
                ),
            )
            .await
            .status
        }));
    }
    let mut served = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            served += 1;
        }
    }
    assert_eq!(served, affordable);
    let left = e1.server.account("alice").await.unwrap().unwrap().balance.0;
    assert_eq!(left, balance - affordable * PRICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_replay_is_atomic_across_two_servers_on_one_sqlite_file() {
    let path = std::env::temp_dir().join(format!(
        "pay402-bitreq-{}-{}.sqlite",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    transfer_replay_is_atomic_across_stores_sharing_a_database(
        Arc::new(SqliteBitreqStore::open(&path).await.unwrap()),
        Arc::new(SqliteBitreqStore::open(&path).await.unwrap()),
    )
    .await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_replay_is_atomic_across_two_servers_on_one_postgres_database() {
    let pg = pay402_testkit::postgres::Postgres::shared().expect("the PostgreSQL test peer");
    let db = pg.create_database().unwrap();
    let options = pay402_server::database::DatabaseOptions::default();
    transfer_replay_is_atomic_across_stores_sharing_a_database(
        Arc::new(
            PostgresBitreqStore::connect(db.url(), &options)
                .await
                .unwrap(),
        ),
        Arc::new(
            PostgresBitreqStore::connect(db.url(), &options)
                .await
                .unwrap(),
        ),
    )
    .await;
}

/// A well-formed (never broadcast) channel deposit of customer key `k`.
fn open_request(k: u8) -> (OpenRequest, Txid) {
    let merchant = pk(&key(MERCHANT_KEY[0]));
    let customer = key(k);
    let expiry = u32::try_from(unix_now() + 3 * 24 * 3600).unwrap();
    let redeem =
        RedeemScript::new(merchant, pk(&customer), expiry, ExpiryEncoding::Two1Raw).unwrap();
    let value = deposit_output_value(Sat(100_000), Sat(3_000), FEE).unwrap();
    let utxo = SpendableUtxo {
        outpoint: OutPoint::new(Txid::from_byte_array([k; 32]), 1),
        amount: Sat(200_000),
        kind: SpendKind::P2pkh,
        key: &customer,
    };
    let deposit =
        build_deposit(&[utxo], &redeem, value, &utxo.script_pubkey(), Sat(1_000)).unwrap();
    let open = OpenRequest {
        deposit_tx: serialize_hex(&deposit),
        redeem_script: hex::encode(redeem.to_script().as_bytes()),
    };
    (open, deposit.compute_txid())
}

#[tokio::test]
async fn channel_opens_count_against_the_client_rate_limit() {
    use pay402_server::limit::RateLimit;
    let store: Arc<dyn BitreqStore> = Arc::new(MemoryBitreqStore::new());
    let cfg = config().challenge_rate_limit(RateLimit::per_period(2, Duration::from_secs(3_600)));
    let server = BitreqServer::new(cfg, dead_chain(), store.clone()).unwrap();
    let app = server.channel_router();
    let from = |ip: &str, open: &OpenRequest| {
        let mut req = body_req("POST", "/payment", encode_form(open), None);
        let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        req
    };
    // A malformed open is refused for what it is, and is not counted.
    let r = send(
        &app,
        from(
            "192.0.2.7",
            &OpenRequest {
                deposit_tx: "00".into(),
                redeem_script: "00".into(),
            },
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    for k in [51, 52] {
        let (open, _) = open_request(k);
        let r = send(&app, from("192.0.2.7", &open)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let (open, id) = open_request(53);
    let r = send(&app, from("192.0.2.7", &open)).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(r.headers.contains_key("retry-after"));
    assert!(store.channel(&id).await.unwrap().is_none(), "not stored");
    // Another client has its own allowance.
    let r = send(&app, from("192.0.2.8", &open)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(store.channel(&id).await.unwrap().is_some());
}
