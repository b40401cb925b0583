//! A fake Core Lightning node for tests, backed by a simnet node, so its
//! invoices are real signed BOLT11 strings and its payments really move
//! simnet balances.
//!
//! It answers the JSON-RPC methods pay402 uses (`invoice`, `listinvoices`,
//! `pay`, `listpays`, plus `getinfo`) with CLN's result shapes, and serves
//! them over
//! - a real unix socket ([`serve_socket`]), the `lightning-rpc` protocol:
//!   JSON objects in, JSON objects out, each response followed by `"\n\n"`;
//! - clnrest over HTTPS ([`serve_rest`]): `POST /v1/<method>`, `Rune`
//!   header, HTTP 201 with the result, 401 with `{"code","message"}` on a bad
//!   rune, 500 with the error object on an RPC error.
//!
//! CLN behaviour reproduced: labels must be unique (code 900 "Duplicate
//! label"); `pay` returns the earlier success for an invoice already paid and
//! error 200 while a payment is in flight; failures carry pay error codes
//! (203 destination refused, 205 no route, 206 fee budget, 207 expired, 210
//! attempts failed); `listpays` reports `preimage` (not `payment_preimage`);
//! invoice status is `unpaid | paid | expired`. [`Quirks`] switches on
//! behaviour of older versions or misbehaving nodes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bitcoin::hashes::Hash;
use lightning_invoice::Bolt11Invoice;
use pay402_backends::simnet::SimNode;
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, PayRequest,
    Payment, PaymentHash,
};
use pay402_core::money::Msat;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// CLN's `server.pem` shape: issued by `ca.pem`, names `cln` and `localhost` only.
pub const CLN_CA: &[u8] = include_bytes!("../fixtures/cln-ca.pem");
pub const CLN_SERVER_CERT: &[u8] = include_bytes!("../fixtures/cln-server.pem");
pub const CLN_SERVER_KEY: &[u8] = include_bytes!("../fixtures/cln-server-key.pem");
/// Another node's CA (same subject name, different key).
pub const CLN_OTHER_CA: &[u8] = include_bytes!("../fixtures/cln-other-ca.pem");

/// A raw answer replacing the real one (after the real call ran).
#[derive(Clone, Debug)]
pub struct Raw {
    /// HTTP status (clnrest only).
    pub status: u16,
    /// The bytes written.
    pub body: Vec<u8>,
}

/// Behaviour switches.
#[derive(Clone, Debug, Default)]
pub struct Quirks {
    /// `msat` fields as `"<n>msat"` strings (CLN before v23.02).
    pub msat_strings: bool,
    /// The next N `invoice` calls fail with 900 "Duplicate label".
    pub duplicate_labels: u32,
    /// Methods refused with the given error (a restricted rune, a disabled plugin).
    pub refuse: HashMap<String, (i64, String)>,
    /// `pay` answers this late (after the payment completed).
    pub pay_delay: Duration,
    /// `pay` starts the payment but returns `status: pending` without completing it.
    pub pay_pending: bool,
    /// The next N `listpays` calls return no payments (a lagging node).
    pub listpays_lag: u32,
    /// A repeated `pay` of a completed invoice answers this error instead of
    /// the earlier success (xpay-like).
    pub repeat_pay_error: Option<(i64, String)>,
    /// Preimages are reported as 32 zero bytes.
    pub zero_preimage: bool,
    /// Per method: replace the real result with this value.
    pub result_override: HashMap<String, Value>,
    /// Per method: replace the whole answer with these bytes (the socket
    /// closes the connection afterwards).
    pub raw: HashMap<String, Raw>,
    /// Write socket responses in 7-byte pieces.
    pub split_writes: bool,
}

/// A JSON-RPC error.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcErr {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcErr {
    pub fn new(code: i64, message: impl Into<String>) -> RpcErr {
        RpcErr {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            v["data"] = d.clone();
        }
        v
    }
}

#[derive(Clone, Debug)]
struct PayAttempt {
    bolt11: String,
    hash: PaymentHash,
    destination: String,
    amount_msat: u64,
    status: &'static str,
    payment: Option<Payment>,
    created_at: u64,
}

struct NodeState {
    quirks: Quirks,
    labels: HashMap<String, PaymentHash>,
    pays: Vec<PayAttempt>,
    calls: Vec<String>,
    next_index: u64,
}

struct Inner {
    node: SimNode,
    state: Mutex<NodeState>,
}

/// The fake node. Cheap to clone.
#[derive(Clone)]
pub struct FakeCln {
    inner: Arc<Inner>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn param_err(msg: impl Into<String>) -> RpcErr {
    RpcErr::new(-32602, msg)
}

/// Parses an msat parameter the way CLN does: an integer or `"<n>msat"`.
fn parse_msat(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.strip_suffix("msat").unwrap_or(s).parse().ok(),
        _ => None,
    }
}

impl FakeCln {
    pub fn new(node: SimNode) -> FakeCln {
        FakeCln {
            inner: Arc::new(Inner {
                node,
                state: Mutex::new(NodeState {
                    quirks: Quirks::default(),
                    labels: HashMap::new(),
                    pays: Vec::new(),
                    calls: Vec::new(),
                    next_index: 1,
                }),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn node(&self) -> &SimNode {
        &self.inner.node
    }

    /// Changes the quirks.
    pub fn quirks(&self, f: impl FnOnce(&mut Quirks)) {
        f(&mut self.lock().quirks);
    }

    /// Every method called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// How often `method` was called.
    pub fn count(&self, method: &str) -> usize {
        self.lock().calls.iter().filter(|m| *m == method).count()
    }

    fn raw_for(&self, method: &str) -> Option<Raw> {
        self.lock().quirks.raw.get(method).cloned()
    }

    fn msat(&self, q: &Quirks, v: u64) -> Value {
        if q.msat_strings {
            json!(format!("{v}msat"))
        } else {
            json!(v)
        }
    }

    /// Completes a payment left pending by [`Quirks::pay_pending`].
    pub async fn complete_pending(&self, bolt11: &str) {
        let res = self
            .inner
            .node
            .pay_invoice(&PayRequest::new(bolt11, Msat(u64::MAX)))
            .await;
        let mut st = self.lock();
        if let Some(a) = st
            .pays
            .iter_mut()
            .find(|a| a.bolt11 == bolt11 && a.status == "pending")
        {
            match res {
                Ok(p) => {
                    a.status = "complete";
                    a.payment = Some(p);
                }
                Err(_) => a.status = "failed",
            }
        }
    }

    /// Handles one JSON-RPC call.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcErr> {
        let (refused, override_result) = {
            let mut st = self.lock();
            st.calls.push(method.to_owned());
            (
                st.quirks.refuse.get(method).cloned(),
                st.quirks.result_override.get(method).cloned(),
            )
        };
        if let Some((code, message)) = refused {
            return Err(RpcErr::new(code, message));
        }
        if !params.is_object() {
            return Err(param_err("this fake only takes named parameters"));
        }
        let res = match method {
            "getinfo" => Ok(json!({
                "id": self.inner.node.node_id().to_string(),
                "alias": self.inner.node.name(),
                "network": "regtest",
                "version": "v24.11-fake",
            })),
            "invoice" => self.invoice(&params).await,
            "listinvoices" => self.listinvoices(&params),
            "pay" => self.pay(&params).await,
            "listpays" => self.listpays(&params),
            other => Err(RpcErr::new(-32601, format!("Unknown command '{other}'"))),
        };
        match override_result {
            Some(v) => Ok(v),
            None => res,
        }
    }

    async fn invoice(&self, params: &Value) -> Result<Value, RpcErr> {
        let amount = match params.get("amount_msat") {
            Some(Value::String(s)) if s == "any" => {
                return Err(param_err("amount_msat: this fake needs an amount"));
            }
            Some(v) => parse_msat(v)
                .ok_or_else(|| param_err("amount_msat: should be a millisatoshi amount"))?,
            None => return Err(param_err("missing required parameter: amount_msat")),
        };
        let label = match params.get("label") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(param_err("missing required parameter: label")),
        };
        let description = params
            .get("description")
            .and_then(Value::as_str)
            .ok_or_else(|| param_err("missing required parameter: description"))?
            .to_owned();
        let expiry = params
            .get("expiry")
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| param_err("expiry: should be an integer"))
            })
            .transpose()?
            .unwrap_or(604_800);
        {
            let mut st = self.lock();
            if st.quirks.duplicate_labels > 0 {
                st.quirks.duplicate_labels -= 1;
                return Err(RpcErr::new(900, format!("Duplicate label '{label}'")));
            }
            if st.labels.contains_key(&label) {
                return Err(RpcErr::new(900, format!("Duplicate label '{label}'")));
            }
        }
        let mut req = InvoiceRequest::new(Msat(amount), description);
        req.expiry = Duration::from_secs(expiry);
        let inv = self
            .inner
            .node
            .create_invoice(&req)
            .await
            .map_err(|e| RpcErr::new(-1, e.to_string()))?;
        let info = self
            .inner
            .node
            .invoice(&inv.payment_hash)
            .ok_or_else(|| RpcErr::new(-1, "invoice vanished"))?;
        let mut st = self.lock();
        st.labels.insert(label, inv.payment_hash);
        let index = st.next_index;
        st.next_index += 1;
        Ok(json!({
            "payment_hash": inv.payment_hash.to_hex(),
            "expires_at": (info.created_at + info.expiry).as_secs(),
            "bolt11": inv.bolt11,
            "payment_secret": hex::encode(info.payment_secret),
            "created_index": index,
        }))
    }

    fn listinvoices(&self, params: &Value) -> Result<Value, RpcErr> {
        let st = self.lock();
        let hashes: Vec<(String, PaymentHash)> =
            match (params.get("payment_hash"), params.get("label")) {
                (Some(h), _) => {
                    let hash = h
                        .as_str()
                        .and_then(|s| s.parse::<PaymentHash>().ok())
                        .ok_or_else(|| param_err("payment_hash: should be a 32 byte hex value"))?;
                    st.labels
                        .iter()
                        .filter(|(_, v)| **v == hash)
                        .map(|(l, v)| (l.clone(), *v))
                        .collect()
                }
                (None, Some(l)) => {
                    let l = l.as_str().unwrap_or_default();
                    st.labels
                        .get(l)
                        .map(|h| vec![(l.to_owned(), *h)])
                        .unwrap_or_default()
                }
                (None, None) => st.labels.iter().map(|(l, v)| (l.clone(), *v)).collect(),
            };
        let q = &st.quirks;
        let mut out = Vec::new();
        for (label, hash) in hashes {
            let Some(info) = self.inner.node.invoice(&hash) else {
                continue;
            };
            let mut entry = json!({
                "label": label,
                "bolt11": info.bolt11,
                "payment_hash": hash.to_hex(),
                "amount_msat": self.msat(q, info.amount.0),
                "description": info.memo,
                "expires_at": (info.created_at + info.expiry).as_secs(),
                "created_index": info.add_index,
            });
            match info.state {
                InvoiceState::Settled {
                    preimage,
                    amount_paid,
                } => {
                    entry["status"] = json!("paid");
                    entry["pay_index"] = json!(info.add_index);
                    entry["amount_received_msat"] = self.msat(q, amount_paid.0);
                    entry["paid_at"] = json!(info.settled_at.map(|d| d.as_secs()));
                    entry["payment_preimage"] = json!(if q.zero_preimage {
                        "0".repeat(64)
                    } else {
                        preimage.to_hex()
                    });
                }
                InvoiceState::Canceled => entry["status"] = json!("expired"),
                _ => entry["status"] = json!("unpaid"),
            }
            out.push(entry);
        }
        Ok(json!({ "invoices": out }))
    }

    fn pay_json(&self, q: &Quirks, a: &PayAttempt) -> Value {
        let mut v = json!({
            "destination": a.destination,
            "payment_hash": a.hash.to_hex(),
            "created_at": a.created_at as f64 + 0.5,
            "parts": 1,
            "amount_msat": self.msat(q, a.amount_msat),
            "status": a.status,
        });
        if let Some(p) = &a.payment {
            v["amount_sent_msat"] = self.msat(q, p.amount.0 + p.fee.0);
            v["payment_preimage"] = json!(if q.zero_preimage {
                "0".repeat(64)
            } else {
                p.preimage.to_hex()
            });
        } else {
            v["amount_sent_msat"] = self.msat(q, a.amount_msat);
        }
        v
    }

    fn failure(reason: &str, hash: &PaymentHash) -> RpcErr {
        let (code, message) = if reason.contains("fee") {
            (206, format!("Fee exceeds our fee budget: {reason}"))
        } else if reason.contains("no route") || reason.contains("insufficient balance") {
            (
                205,
                format!("Ran out of routes to try after 1 attempt: {reason}"),
            )
        } else if reason.contains("expired") {
            (207, "Invoice expired".to_owned())
        } else if reason.contains("simulated") {
            (210, format!("pay attempts failed: {reason}"))
        } else {
            (
                203,
                format!(
                    "Destination said it doesn't know invoice: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS ({reason})"
                ),
            )
        };
        RpcErr {
            code,
            message,
            data: Some(json!({"status": "failed", "payment_hash": hash.to_hex()})),
        }
    }

    async fn pay(&self, params: &Value) -> Result<Value, RpcErr> {
        let bolt11 = params
            .get("bolt11")
            .and_then(Value::as_str)
            .ok_or_else(|| param_err("missing required parameter: bolt11"))?
            .trim()
            .to_owned();
        let invoice = Bolt11Invoice::from_str(&bolt11)
            .map_err(|e| param_err(format!("Invalid bolt11: {e}")))?;
        let hash = PaymentHash(invoice.payment_hash().to_byte_array());
        let amount_msat = invoice
            .amount_milli_satoshis()
            .ok_or_else(|| param_err("amount_msat parameter required"))?;
        let maxfee = match params.get("maxfee") {
            None => 5_000 + amount_msat / 200,
            Some(v) => parse_msat(v).ok_or_else(|| param_err("maxfee: should be msat"))?,
        };
        let retry_for = params
            .get("retry_for")
            .and_then(Value::as_u64)
            .unwrap_or(60);
        let attempt = PayAttempt {
            bolt11: bolt11.clone(),
            hash,
            destination: invoice.recover_payee_pub_key().to_string(),
            amount_msat,
            status: "pending",
            payment: None,
            created_at: now_secs(),
        };
        {
            let mut st = self.lock();
            if let Some(done) = st
                .pays
                .iter()
                .find(|a| a.bolt11 == bolt11 && a.status == "complete")
            {
                if let Some((code, message)) = &st.quirks.repeat_pay_error {
                    return Err(RpcErr::new(*code, message.clone()));
                }
                // CLN: "If any part has succeeded, you can't start a new
                // payment": the earlier success is returned.
                return Ok(self.pay_json(&st.quirks, done));
            }
            if st
                .pays
                .iter()
                .any(|a| a.bolt11 == bolt11 && a.status == "pending")
            {
                return Err(RpcErr {
                    code: 200,
                    message: format!("Payment with payment_hash {hash} is in progress"),
                    data: None,
                });
            }
            if st.quirks.pay_pending {
                let v = self.pay_json(&st.quirks, &attempt);
                st.pays.push(attempt);
                return Ok(v);
            }
            st.pays.push(attempt);
        }
        let result = self
            .inner
            .node
            .pay_invoice(&PayRequest {
                bolt11: bolt11.clone(),
                max_fee: Msat(maxfee),
                timeout: Duration::from_secs(retry_for),
            })
            .await;
        let (outcome, delay) = {
            let mut st = self.lock();
            let q = st.quirks.clone();
            let Some(a) = st
                .pays
                .iter_mut()
                .rev()
                .find(|a| a.bolt11 == bolt11 && a.status == "pending")
            else {
                return Err(RpcErr::new(-1, "attempt vanished"));
            };
            let outcome = match result {
                Ok(p) => {
                    a.status = "complete";
                    a.payment = Some(p);
                    Ok(self.pay_json(&q, a))
                }
                Err(LightningError::PaymentFailed { reason }) => {
                    a.status = "failed";
                    Err(Self::failure(&reason, &hash))
                }
                Err(LightningError::Unknown { .. }) => match self.inner.node.payment(&hash) {
                    Some(p) => {
                        a.status = "complete";
                        a.payment = Some(p);
                        Ok(self.pay_json(&q, a))
                    }
                    None => Ok(self.pay_json(&q, a)),
                },
                Err(other) => {
                    a.status = "failed";
                    Err(RpcErr::new(-1, other.to_string()))
                }
            };
            (outcome, q.pay_delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        outcome
    }

    fn listpays(&self, params: &Value) -> Result<Value, RpcErr> {
        let mut st = self.lock();
        if st.quirks.listpays_lag > 0 {
            st.quirks.listpays_lag -= 1;
            return Ok(json!({ "pays": [] }));
        }
        let bolt11 = params.get("bolt11").and_then(Value::as_str);
        let hash = params
            .get("payment_hash")
            .and_then(Value::as_str)
            .and_then(|h| h.parse::<PaymentHash>().ok());
        let q = &st.quirks;
        let pays: Vec<Value> = st
            .pays
            .iter()
            .filter(|a| bolt11.is_none_or(|b| b.trim() == a.bolt11))
            .filter(|a| hash.is_none_or(|h| h == a.hash))
            .map(|a| {
                let mut v = json!({
                    "bolt11": a.bolt11,
                    "destination": a.destination,
                    "payment_hash": a.hash.to_hex(),
                    "status": a.status,
                    "created_at": a.created_at,
                    "amount_msat": self.msat(q, a.amount_msat),
                });
                if let Some(p) = &a.payment {
                    v["completed_at"] = json!(now_secs());
                    v["number_of_parts"] = json!(1);
                    v["amount_sent_msat"] = self.msat(q, p.amount.0 + p.fee.0);
                    v["preimage"] = json!(if q.zero_preimage {
                        "0".repeat(64)
                    } else {
                        p.preimage.to_hex()
                    });
                }
                v
            })
            .collect();
        Ok(json!({ "pays": pays }))
    }
}

// ---------------------------------------------------------------------------
// The lightning-rpc unix socket.

/// A fake node listening on `<tmp>/regtest/lightning-rpc`.
pub struct SocketServer {
    pub path: PathBuf,
    pub lightning_dir: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.lightning_dir);
    }
}

pub fn temp_lightning_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pay402-cln-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("regtest")).unwrap();
    dir
}

pub async fn serve_socket(fake: &FakeCln) -> SocketServer {
    let lightning_dir = temp_lightning_dir();
    let path = lightning_dir.join("regtest").join("lightning-rpc");
    let listener = UnixListener::bind(&path).unwrap();
    let fake = fake.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(handle_conn(fake.clone(), stream));
        }
    });
    SocketServer {
        path,
        lightning_dir,
        task,
    }
}

async fn handle_conn(fake: FakeCln, mut stream: UnixStream) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(req)) => {
                    let used = it.byte_offset();
                    buf.drain(..used);
                    if !respond(&fake, &mut stream, req).await {
                        return;
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                None => {
                    buf.clear();
                    break;
                }
                // lightningd drops connections that send malformed JSON.
                Some(Err(_)) => return,
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Answers one request; `false` closes the connection.
async fn respond(fake: &FakeCln, stream: &mut UnixStream, req: Value) -> bool {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
    let outcome = fake.call(&method, params).await;
    if let Some(raw) = fake.raw_for(&method) {
        let _ = stream.write_all(&raw.body).await;
        let _ = stream.shutdown().await;
        return false;
    }
    let resp = match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
    };
    let mut bytes = serde_json::to_vec(&resp).unwrap();
    bytes.extend_from_slice(b"\n\n");
    let split = fake.lock().quirks.split_writes;
    if split {
        for piece in bytes.chunks(7) {
            if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    } else {
        stream.write_all(&bytes).await.is_ok()
    }
}

// ---------------------------------------------------------------------------
// clnrest over HTTPS.

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // Clients that reject the certificate abort the handshake.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A fake clnrest on `127.0.0.1:<port>`.
pub struct RestServer {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct RestState {
    fake: FakeCln,
    rune: Arc<str>,
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap(),
    )
        .into_response()
}

async fn rest_call(
    State(s): State<RestState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unauthorized = |message: &str| {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"code": 1501, "message": message}),
        )
    };
    match headers.get("rune").map(|v| v.to_str().unwrap_or_default()) {
        None => return unauthorized("Not authorized: Missing rune"),
        Some(r) if r != &*s.rune => return unauthorized("Not authorized: Not derived from master"),
        Some(_) => {}
    }
    let params = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("Failed to parse the request body as JSON: {e}"),
                )
                    .into_response();
            }
        }
    };
    let outcome = s.fake.call(&method, params).await;
    if let Some(raw) = s.fake.raw_for(&method) {
        return (
            StatusCode::from_u16(raw.status).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            raw.body,
        )
            .into_response();
    }
    match outcome {
        Ok(result) => json_response(StatusCode::CREATED, &result),
        Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_json()),
    }
}

/// Serves clnrest for `fake` over TLS with CLN's certificate shape.
pub async fn serve_rest(fake: &FakeCln, rune: &str) -> RestServer {
    serve_rest_with(fake, rune, CLN_SERVER_CERT, CLN_SERVER_KEY).await
}

pub async fn serve_rest_with(
    fake: &FakeCln,
    rune: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> RestServer {
    let mut certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .unwrap();
    // CLN serves server.pem alone; the chain is completed by the pinned CA.
    certs.truncate(1);
    let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let app = Router::new()
        .route("/v1/{method}", post(rest_call))
        .with_state(RestState {
            fake: fake.clone(),
            rune: rune.into(),
        });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    RestServer { port, task }
}

/// Serves clnrest for `fake` over plain HTTP on loopback (clnrest's
/// `clnrest-protocol=http`).
pub async fn serve_rest_plain(fake: &FakeCln, rune: &str) -> RestServer {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let app = Router::new()
        .route("/v1/{method}", post(rest_call))
        .with_state(RestState {
            fake: fake.clone(),
            rune: rune.into(),
        });
    let task = tokio::spawn(async move {
        let _ = axum::serve(tcp, app).await;
    });
    RestServer { port, task }
}
