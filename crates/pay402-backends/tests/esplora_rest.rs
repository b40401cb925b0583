//! The Esplora client ([`Esplora`]) against an in-test fake Esplora server
//! (axum, real HTTP on 127.0.0.1) backed by a small in-memory chain. The
//! fake reproduces the endpoints the client uses and electrs' error texts
//! (`sendrawtransaction RPC error: {"code":..,"message":..}`).
#![cfg(all(feature = "esplora", feature = "simnet-rest"))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use pay402_backends::esplora::{Esplora, EsploraConfig};
use pay402_core::chain::{BitcoinChain, ChainError, FeeRate};
use pay402_core::money::Sat;
use pay402_core::problem::Reason;

/// The fake's chain: confirmed transactions with their heights, a mempool,
/// and which transaction spends each outpoint.
#[derive(Default)]
struct Chain {
    tip: u64,
    confirmed: HashMap<Txid, (Transaction, u64)>,
    mempool: HashMap<Txid, Transaction>,
    spends: HashMap<OutPoint, Txid>,
    fee_estimates: String,
}

impl Chain {
    fn lookup(&self, txid: &Txid) -> Option<(&Transaction, Option<u64>)> {
        self.confirmed
            .get(txid)
            .map(|(tx, h)| (tx, Some(*h)))
            .or_else(|| self.mempool.get(txid).map(|tx| (tx, None)))
    }

    fn output_exists(&self, outpoint: &OutPoint) -> bool {
        self.lookup(&outpoint.txid)
            .is_some_and(|(tx, _)| (outpoint.vout as usize) < tx.output.len())
    }

    /// Mines the mempool into a new block.
    fn mine(&mut self) {
        self.tip += 1;
        let height = self.tip;
        for (txid, tx) in self.mempool.drain() {
            self.confirmed.insert(txid, (tx, height));
        }
    }
}

type Shared = Arc<Mutex<Chain>>;

fn rpc_error(code: i64, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!(
            "sendrawtransaction RPC error: {}",
            serde_json::json!({"code": code, "message": message})
        ),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, what.to_owned()).into_response()
}

async fn post_tx(State(chain): State<Shared>, body: String) -> Response {
    let Ok(tx) = encode::deserialize_hex::<Transaction>(body.trim()) else {
        return rpc_error(-22, "TX decode failed");
    };
    let mut chain = chain.lock().unwrap();
    let txid = tx.compute_txid();
    if chain.confirmed.contains_key(&txid) {
        return rpc_error(-27, "Transaction already in block chain");
    }
    if chain.mempool.contains_key(&txid) {
        return rpc_error(-26, "txn-already-known");
    }
    if tx.output.iter().any(|o| o.value < Amount::from_sat(546)) {
        return rpc_error(-26, "dust");
    }
    for input in &tx.input {
        let op = input.previous_output;
        match chain.spends.get(&op) {
            Some(spender) if chain.mempool.contains_key(spender) => {
                return rpc_error(-26, "txn-mempool-conflict");
            }
            Some(_) => return rpc_error(-25, "bad-txns-inputs-missingorspent"),
            None if !chain.output_exists(&op) => {
                return rpc_error(-25, "bad-txns-inputs-missingorspent");
            }
            None => {}
        }
    }
    for input in &tx.input {
        chain.spends.insert(input.previous_output, txid);
    }
    chain.mempool.insert(txid, tx);
    txid.to_string().into_response()
}

async fn tx_hex(State(chain): State<Shared>, Path(txid): Path<String>) -> Response {
    let chain = chain.lock().unwrap();
    match txid.parse().ok().and_then(|t| chain.lookup(&t)) {
        Some((tx, _)) => encode::serialize_hex(tx).into_response(),
        None => not_found("Transaction not found"),
    }
}

async fn tx_status(State(chain): State<Shared>, Path(txid): Path<String>) -> Response {
    let chain = chain.lock().unwrap();
    match txid.parse().ok().and_then(|t| chain.lookup(&t)) {
        Some((_, Some(h))) => axum::Json(serde_json::json!({
            "confirmed": true,
            "block_height": h,
            "block_hash": "00".repeat(32),
            "block_time": 1_700_000_000 + h,
        }))
        .into_response(),
        Some((_, None)) => axum::Json(serde_json::json!({"confirmed": false})).into_response(),
        None => not_found("Transaction not found"),
    }
}

async fn outspend(
    State(chain): State<Shared>,
    Path((txid, vout)): Path<(String, u32)>,
) -> Response {
    let chain = chain.lock().unwrap();
    let Ok(txid) = txid.parse::<Txid>() else {
        return not_found("Transaction not found");
    };
    if chain.lookup(&txid).is_none() {
        return not_found("Transaction not found");
    }
    match chain.spends.get(&OutPoint { txid, vout }) {
        Some(spender) => axum::Json(serde_json::json!({
            "spent": true, "txid": spender.to_string(), "vin": 0,
            "status": {"confirmed": chain.confirmed.contains_key(spender)},
        }))
        .into_response(),
        None => axum::Json(serde_json::json!({"spent": false})).into_response(),
    }
}

async fn fee_estimates(State(chain): State<Shared>) -> Response {
    let body = chain.lock().unwrap().fee_estimates.clone();
    ([("content-type", "application/json")], body).into_response()
}

async fn tip_height(State(chain): State<Shared>) -> String {
    chain.lock().unwrap().tip.to_string()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/api")
}

fn client(url: &str) -> Esplora {
    Esplora::new(EsploraConfig {
        url: url.parse().unwrap(),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

/// A funding transaction with two outputs, confirmed at height 100.
fn funding() -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(vec![0x01, 0x64]),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(50_000),
                script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
            },
            TxOut {
                value: Amount::from_sat(30_000),
                script_pubkey: ScriptBuf::from_bytes(vec![0x52]),
            },
        ],
    }
}

fn spend(prev: OutPoint, value: u64, marker: u8) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prev,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::from_slice(&[vec![marker]]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: ScriptBuf::from_bytes(
                vec![0x00, 0x14].into_iter().chain([marker; 20]).collect(),
            ),
        }],
    }
}

struct World {
    chain: Shared,
    esplora: Esplora,
    funding: Transaction,
}

async fn world() -> World {
    let funding = funding();
    let mut chain = Chain {
        tip: 100,
        fee_estimates: r#"{"1": 20.001, "2": 15.0, "3": 12.5, "6": 5.2, "144": 1.0, "1008": 0.5}"#
            .into(),
        ..Chain::default()
    };
    chain
        .confirmed
        .insert(funding.compute_txid(), (funding.clone(), 100));
    let chain = Arc::new(Mutex::new(chain));
    let router = Router::new()
        .route("/api/tx", post(post_tx))
        .route("/api/tx/{txid}/hex", get(tx_hex))
        .route("/api/tx/{txid}/status", get(tx_status))
        .route("/api/tx/{txid}/outspend/{vout}", get(outspend))
        .route("/api/fee-estimates", get(fee_estimates))
        .route("/api/blocks/tip/height", get(tip_height))
        .with_state(chain.clone());
    let url = serve(router).await;
    World {
        chain,
        esplora: client(&url),
        funding,
    }
}

#[tokio::test]
async fn broadcast_then_mine_counts_confirmations() {
    let w = world().await;
    assert_eq!(w.esplora.block_height().await.unwrap(), 100);
    let prev = OutPoint::new(w.funding.compute_txid(), 0);
    let tx = spend(prev, 49_000, 7);
    let txid = w.esplora.broadcast(&tx).await.unwrap();
    assert_eq!(txid, tx.compute_txid());

    let info = w.esplora.get_transaction(&txid).await.unwrap().unwrap();
    assert_eq!(info.tx, tx);
    assert_eq!(info.confirmations, 0);
    assert_eq!(info.block_height, None);
    assert!(!info.is_confirmed());

    // The new output is unspent (mempool), the funding output is now spent.
    let out = w
        .esplora
        .get_tx_out(&OutPoint::new(txid, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.value, Sat(49_000));
    assert_eq!(out.confirmations, 0);
    assert!(!out.coinbase);
    assert_eq!(w.esplora.get_tx_out(&prev).await.unwrap(), None);

    w.chain.lock().unwrap().mine();
    let info = w.esplora.get_transaction(&txid).await.unwrap().unwrap();
    assert_eq!((info.confirmations, info.block_height), (1, Some(101)));
    w.chain.lock().unwrap().mine();
    w.chain.lock().unwrap().mine();
    let info = w.esplora.get_transaction(&txid).await.unwrap().unwrap();
    assert_eq!((info.confirmations, info.block_height), (3, Some(101)));
    assert_eq!(w.esplora.block_height().await.unwrap(), 103);

    // The funding transaction's other output: confirmed at 100, tip 103.
    let other = w
        .esplora
        .get_tx_out(&OutPoint::new(w.funding.compute_txid(), 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.value, Sat(30_000));
    assert_eq!(other.script_pubkey, ScriptBuf::from_bytes(vec![0x52]));
    assert_eq!(other.confirmations, 4);
    assert!(other.coinbase);
}

#[tokio::test]
async fn already_known_and_conflicts_map() {
    let w = world().await;
    let prev = OutPoint::new(w.funding.compute_txid(), 0);
    let tx = spend(prev, 49_000, 7);
    w.esplora.broadcast(&tx).await.unwrap();

    // Again, while in the mempool: txn-already-known.
    let err = w.esplora.broadcast(&tx).await.unwrap_err();
    assert!(
        matches!(err, ChainError::AlreadyKnown { code: -26, .. }),
        "{err}"
    );
    assert_eq!(err.status(), 409);

    // A double spend of the same input while the first is in the mempool.
    let double = spend(prev, 48_000, 8);
    let err = w.esplora.broadcast(&double).await.unwrap_err();
    assert!(
        matches!(&err, ChainError::Conflict { code: -26, message, .. } if message.contains("txn-mempool-conflict")),
        "{err}"
    );
    assert_eq!(err.reason(), "chain_conflict");

    w.chain.lock().unwrap().mine();
    // Once mined: already in block chain, and the double spend is missingorspent.
    let err = w.esplora.broadcast(&tx).await.unwrap_err();
    assert!(
        matches!(err, ChainError::AlreadyKnown { code: -27, .. }),
        "{err}"
    );
    let err = w.esplora.broadcast(&double).await.unwrap_err();
    assert!(
        matches!(&err, ChainError::Conflict { code: -25, message, .. } if message.contains("bad-txns-inputs-missingorspent")),
        "{err}"
    );

    // An unknown parent is a conflict too.
    let orphan = spend(OutPoint::new(tx.compute_txid(), 5), 10_000, 9);
    let err = w.esplora.broadcast(&orphan).await.unwrap_err();
    assert!(
        matches!(err, ChainError::Conflict { code: -25, .. }),
        "{err}"
    );

    // Any other 400 is a rejection.
    let dust = spend(OutPoint::new(w.funding.compute_txid(), 1), 100, 10);
    let err = w.esplora.broadcast(&dust).await.unwrap_err();
    assert!(
        matches!(&err, ChainError::Rejected { code: -26, message, .. } if message.contains("dust")),
        "{err}"
    );
    assert_eq!(err.status(), 400);
}

#[tokio::test]
async fn unknown_transactions_and_outputs_are_none() {
    let w = world().await;
    let unknown = spend(OutPoint::new(w.funding.compute_txid(), 0), 1_000, 42).compute_txid();
    assert_eq!(w.esplora.get_transaction(&unknown).await.unwrap(), None);
    assert_eq!(
        w.esplora
            .get_tx_out(&OutPoint::new(unknown, 0))
            .await
            .unwrap(),
        None
    );
    // A vout past the end of a known transaction.
    let past = OutPoint::new(w.funding.compute_txid(), 2);
    assert_eq!(w.esplora.get_tx_out(&past).await.unwrap(), None);
}

#[tokio::test]
async fn fee_estimates_round_up() {
    let w = world().await;
    let e = &w.esplora;
    assert_eq!(e.estimate_fee_rate(1).await.unwrap(), Some(FeeRate(21)));
    assert_eq!(e.estimate_fee_rate(2).await.unwrap(), Some(FeeRate(15)));
    assert_eq!(e.estimate_fee_rate(3).await.unwrap(), Some(FeeRate(13)));
    // No entry for 4 or 5: the 3-block estimate (never less than asked for).
    assert_eq!(e.estimate_fee_rate(5).await.unwrap(), Some(FeeRate(13)));
    assert_eq!(e.estimate_fee_rate(6).await.unwrap(), Some(FeeRate(6)));
    assert_eq!(e.estimate_fee_rate(144).await.unwrap(), Some(FeeRate(1)));
    assert_eq!(e.estimate_fee_rate(1008).await.unwrap(), Some(FeeRate(1)));

    w.chain.lock().unwrap().fee_estimates = "{}".into();
    assert_eq!(e.estimate_fee_rate(6).await.unwrap(), None);

    for bad in [
        r#"{"1": "fast"}"#,
        r#"{"soon": 3.0}"#,
        r#"{"1": -2.0}"#,
        "[1, 2]",
        "<html>",
    ] {
        w.chain.lock().unwrap().fee_estimates = bad.into();
        let err = e.estimate_fee_rate(6).await.unwrap_err();
        assert!(
            matches!(err, ChainError::InvalidResponse { .. }),
            "{bad}: {err}"
        );
        assert_eq!(err.status(), 502);
    }
}

/// A server whose every answer is malformed.
#[tokio::test]
async fn malformed_bodies_are_invalid_responses() {
    let other = spend(OutPoint::null(), 1_000, 1);
    let other_hex = encode::serialize_hex(&other);
    let wanted = funding().compute_txid();
    let router = Router::new()
        .route("/tx", post(|| async { "not-a-txid" }))
        .route(
            "/tx/{txid}/status",
            get(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"confirmed": "yes"}"#,
                )
            }),
        )
        .route("/tx/{txid}/hex", get(move || async move { other_hex }))
        .route("/tx/{txid}/outspend/{vout}", get(|| async { "??" }))
        .route("/fee-estimates", get(|| async { "nope" }))
        .route("/blocks/tip/height", get(|| async { "tall" }));
    let url = serve(router).await;
    let esplora = client(url.trim_end_matches("/api"));

    let invalid = |r: Result<(), ChainError>| {
        let err = r.unwrap_err();
        assert!(matches!(err, ChainError::InvalidResponse { .. }), "{err}");
    };
    invalid(esplora.broadcast(&funding()).await.map(drop));
    invalid(esplora.get_transaction(&wanted).await.map(drop));
    invalid(esplora.estimate_fee_rate(6).await.map(drop));
    invalid(esplora.block_height().await.map(drop));

    // A well-formed status, but the hex is another transaction.
    let router = Router::new()
        .route(
            "/tx/{txid}/status",
            get(|| async { axum::Json(serde_json::json!({"confirmed": false})) }),
        )
        .route(
            "/tx/{txid}/hex",
            get(move || async move { encode::serialize_hex(&other) }),
        )
        .route(
            "/tx",
            post(|| async { Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()).to_string() }),
        );
    let esplora = client(&serve(router).await.replace("/api", ""));
    invalid(esplora.get_transaction(&wanted).await.map(drop));
    // The server answers a txid that is not the broadcast transaction's.
    invalid(esplora.broadcast(&funding()).await.map(drop));
}

#[tokio::test]
async fn server_errors_and_unreachable() {
    let router = Router::new()
        .route(
            "/blocks/tip/height",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "busy") }),
        )
        .route(
            "/fee-estimates",
            get(|| async { (StatusCode::FORBIDDEN, "no") }),
        )
        .route(
            "/tx/{txid}/status",
            get(|| async { axum::response::Redirect::temporary("https://evil.example/") }),
        );
    let esplora = client(&serve(router).await.replace("/api", ""));
    let err = esplora.block_height().await.unwrap_err();
    assert!(matches!(err, ChainError::Unreachable { .. }), "{err}");
    let err = esplora.estimate_fee_rate(1).await.unwrap_err();
    assert!(
        matches!(err, ChainError::Rejected { code: 403, .. }),
        "{err}"
    );
    let err = esplora
        .get_transaction(&funding().compute_txid())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::Unreachable { .. }),
        "redirects are not followed: {err}"
    );

    // Nothing listens on a port that was just released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let esplora = client(&format!("http://{addr}"));
    let err = esplora.block_height().await.unwrap_err();
    assert!(matches!(err, ChainError::Unreachable { .. }), "{err}");
    assert_eq!(err.status(), 503);
    let err = esplora.broadcast(&funding()).await.unwrap_err();
    assert_eq!(err.reason(), "chain_unreachable");
}
