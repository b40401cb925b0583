//! A fake LNbits instance for tests: wallets backed by simnet nodes, so
//! invoices are real signed BOLT11 strings and payments really move simnet
//! balances. Served with axum over plain HTTP on 127.0.0.1.
//!
//! LNbits behaviour reproduced:
//! - `X-Api-Key` selects the wallet; an unknown key is 401 `{"detail":
//!   "Invalid key or wallet."}`, paying with an invoice key is 401
//!   `{"detail": "Invalid adminkey."}`.
//! - `POST /api/v1/payments`: `out` defaults to **true** when absent (the
//!   request model's default); a missing field is FastAPI's 422 with a list
//!   as `detail`; the create answer carries `payment_request` (older
//!   versions), `bolt11` (newer) or both ([`Bolt11Field`]); a failed payment
//!   is HTTP 520 `{"detail", "status": "failed"}`; paying an invoice already
//!   paid is 520 "Invoice already paid.".
//! - `GET /api/v1/payments/{hash}`: `{paid, status, preimage, details}`,
//!   `details` only for the owning wallet (a call without a key gets none);
//!   outgoing amounts are negative millisatoshis; unknown hashes are 404
//!   `{"detail": "Payment does not exist."}`.
//! - [`LnbitsQuirks`]: all-zero preimages (issue #3070), slow or pending
//!   payments, float amounts, raw replacement bodies.
#![allow(dead_code)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitcoin::hashes::Hash;
use lightning_invoice::Bolt11Invoice;
use pay402_backends::simnet::SimNode;
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, PayRequest,
    Payment, PaymentHash,
};
use pay402_core::money::Msat;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which field carries the invoice in the create answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bolt11Field {
    /// `payment_request` (LNbits before 1.0).
    #[default]
    PaymentRequest,
    /// `bolt11` (the full payment object of newer versions).
    Bolt11,
    /// Both.
    Both,
}

/// Behaviour switches.
#[derive(Clone, Debug, Default)]
pub struct LnbitsQuirks {
    pub bolt11_field: Bolt11Field,
    /// Paid payments report 32 zero bytes as preimage (issue #3070).
    pub zero_preimage: bool,
    /// The pay call answers this late (after paying).
    pub pay_delay: Duration,
    /// After a payment, the check call reports it pending this many times.
    pub pending_checks: u32,
    /// The pay call pays but answers 520 `{"status": "pending"}`.
    pub pay_answers_pending: bool,
    /// Amounts as JSON floats (`-150000.0`).
    pub float_amounts: bool,
    /// The next N check calls answer 404 (a lagging view of the wallet).
    pub hide_checks: u32,
    /// Per endpoint (`create`, `pay`, `check`): replace the answer (after the
    /// real work was done) with this status and body.
    pub raw: HashMap<&'static str, (u16, String)>,
}

/// An `X-Api-Key` no wallet has.
#[derive(Debug)]
pub struct UnknownKey;

fn invalid_key() -> Response {
    detail(401, "Invalid key or wallet.")
}

/// One wallet.
#[derive(Clone)]
pub struct Wallet {
    pub name: String,
    pub node: SimNode,
    pub invoice_key: String,
    pub admin_key: String,
}

#[derive(Clone, Debug)]
struct Outgoing {
    status: &'static str,
    payment: Option<Payment>,
    bolt11: String,
    amount_msat: u64,
    checks_left: u32,
}

struct LnbitsState {
    quirks: LnbitsQuirks,
    outgoing: HashMap<(usize, PaymentHash), Outgoing>,
    /// (endpoint, wallet, body) of every request.
    requests: Vec<(&'static str, Option<String>, Value)>,
}

struct Inner {
    wallets: Vec<Wallet>,
    state: Mutex<LnbitsState>,
}

/// The fake instance. Cheap to clone.
#[derive(Clone)]
pub struct FakeLnbits {
    inner: Arc<Inner>,
}

fn key_for(kind: &str, name: &str) -> String {
    hex::encode(&Sha256::digest(format!("{kind}:{name}").as_bytes())[..16])
}

fn detail(status: u16, detail: impl Into<Value>) -> Response {
    json_response(status, &json!({ "detail": detail.into() }))
}

fn json_response(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap(),
    )
        .into_response()
}

fn validation_error(field: &str, msg: &str) -> Response {
    json_response(
        422,
        &json!({"detail": [{"loc": ["body", field], "msg": msg, "type": "value_error.missing"}]}),
    )
}

impl FakeLnbits {
    pub fn new(nodes: &[&SimNode]) -> FakeLnbits {
        let wallets = nodes
            .iter()
            .map(|n| Wallet {
                name: n.name().to_owned(),
                node: (*n).clone(),
                invoice_key: key_for("invoice", n.name()),
                admin_key: key_for("admin", n.name()),
            })
            .collect();
        FakeLnbits {
            inner: Arc::new(Inner {
                wallets,
                state: Mutex::new(LnbitsState {
                    quirks: LnbitsQuirks::default(),
                    outgoing: HashMap::new(),
                    requests: Vec::new(),
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LnbitsState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn wallet(&self, name: &str) -> Wallet {
        self.inner
            .wallets
            .iter()
            .find(|w| w.name == name)
            .cloned()
            .unwrap()
    }

    pub fn quirks(&self, f: impl FnOnce(&mut LnbitsQuirks)) {
        f(&mut self.lock().quirks);
    }

    /// Every request as (endpoint, wallet name, JSON body).
    pub fn requests(&self) -> Vec<(&'static str, Option<String>, Value)> {
        self.lock().requests.clone()
    }

    /// How many requests hit `endpoint` (`create`, `pay`, `check`).
    pub fn count(&self, endpoint: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|(e, _, _)| *e == endpoint)
            .count()
    }

    fn amount(&self, q: &LnbitsQuirks, msat: i64) -> Value {
        if q.float_amounts {
            json!(msat as f64)
        } else {
            json!(msat)
        }
    }

    /// `(wallet index, is admin key)`, `Ok(None)` without a key, `Err` for
    /// an unknown key.
    fn wallet_for(&self, headers: &HeaderMap) -> Result<Option<(usize, bool)>, UnknownKey> {
        let Some(key) = headers.get("x-api-key") else {
            return Ok(None);
        };
        let key = key.to_str().unwrap_or_default();
        for (i, w) in self.inner.wallets.iter().enumerate() {
            if w.admin_key == key {
                return Ok(Some((i, true)));
            }
            if w.invoice_key == key {
                return Ok(Some((i, false)));
            }
        }
        Err(UnknownKey)
    }

    fn record(&self, endpoint: &'static str, wallet: Option<usize>, body: Value) {
        let name = wallet.map(|i| self.inner.wallets[i].name.clone());
        self.lock().requests.push((endpoint, name, body));
    }

    fn raw(&self, endpoint: &str) -> Option<Response> {
        let (status, body) = self.lock().quirks.raw.get(endpoint).cloned()?;
        Some(
            (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
        )
    }

    async fn create(&self, wallet: usize, body: &Value) -> Response {
        let Some(amount) = body.get("amount").and_then(Value::as_f64) else {
            return validation_error("amount", "field required");
        };
        let unit = body.get("unit").and_then(Value::as_str).unwrap_or("sat");
        if unit != "sat" {
            return detail(400, format!("unit {unit} is not supported by this fake"));
        }
        if amount <= 0.0 {
            return detail(400, "Amount must be positive.");
        }
        // LNbits rounds whatever it is given; pay402 never sends fractions.
        let msat = (amount * 1000.0).round() as u64;
        let memo = body.get("memo").and_then(Value::as_str).unwrap_or_default();
        let mut req = InvoiceRequest::new(Msat(msat), memo);
        if let Some(expiry) = body.get("expiry").and_then(Value::as_u64) {
            req.expiry = Duration::from_secs(expiry);
        }
        let w = &self.inner.wallets[wallet];
        let inv = match w.node.create_invoice(&req).await {
            Ok(inv) => inv,
            Err(e) => return detail(400, e.to_string()),
        };
        let q = self.lock().quirks.clone();
        let hash = inv.payment_hash.to_hex();
        let mut out = match q.bolt11_field {
            Bolt11Field::PaymentRequest => json!({
                "payment_hash": hash,
                "payment_request": inv.bolt11,
                "checking_id": hash,
                "lnurl_response": null,
            }),
            Bolt11Field::Bolt11 | Bolt11Field::Both => json!({
                "checking_id": hash,
                "payment_hash": hash,
                "wallet_id": w.name,
                "amount": self.amount(&q, msat as i64),
                "fee": 0,
                "bolt11": inv.bolt11,
                "status": "pending",
                "memo": memo,
                "expiry": req.expiry.as_secs(),
            }),
        };
        if q.bolt11_field == Bolt11Field::Both {
            out["payment_request"] = json!(inv.bolt11);
        }
        self.raw("create")
            .unwrap_or_else(|| json_response(201, &out))
    }

    async fn pay(&self, wallet: usize, is_admin: bool, body: &Value) -> Response {
        if !is_admin {
            return detail(401, "Invalid adminkey.");
        }
        let Some(bolt11) = body.get("bolt11").and_then(Value::as_str) else {
            return validation_error("bolt11", "field required");
        };
        let bolt11 = bolt11.trim().to_owned();
        let Ok(invoice) = Bolt11Invoice::from_str(&bolt11) else {
            return detail(400, "Invalid bolt11 invoice.");
        };
        let hash = PaymentHash(invoice.payment_hash().to_byte_array());
        let Some(amount_msat) = invoice.amount_milli_satoshis() else {
            return detail(400, "Amountless invoices not supported.");
        };
        {
            let mut st = self.lock();
            match st.outgoing.get(&(wallet, hash)).map(|o| o.status) {
                Some("success") => {
                    return json_response(
                        520,
                        &json!({"detail": "Invoice already paid.", "status": "failed"}),
                    );
                }
                Some("pending") => {
                    return json_response(
                        520,
                        &json!({"detail": "Payment is already pending.", "status": "pending"}),
                    );
                }
                _ => {}
            }
            st.outgoing.insert(
                (wallet, hash),
                Outgoing {
                    status: "pending",
                    payment: None,
                    bolt11: bolt11.clone(),
                    amount_msat,
                    checks_left: 0,
                },
            );
        }
        let node = &self.inner.wallets[wallet].node;
        // LNbits reserves 1% (at least 2 sat) for routing fees.
        let reserve = Msat((amount_msat / 100).max(2_000));
        let result = node.pay_invoice(&PayRequest::new(&bolt11, reserve)).await;
        let (q, response) = {
            let mut st = self.lock();
            let q = st.quirks.clone();
            let Some(o) = st.outgoing.get_mut(&(wallet, hash)) else {
                return detail(500, "payment vanished");
            };
            let response = match result {
                Ok(p) => {
                    o.status = "success";
                    o.payment = Some(p);
                    o.checks_left = q.pending_checks;
                    if q.pay_answers_pending {
                        json_response(
                            520,
                            &json!({"detail": "Payment is pending.", "status": "pending"}),
                        )
                    } else {
                        json_response(
                            201,
                            &json!({"payment_hash": hash.to_hex(), "checking_id": hash.to_hex()}),
                        )
                    }
                }
                Err(LightningError::PaymentFailed { reason }) => {
                    o.status = "failed";
                    let text = if reason.contains("insufficient balance") {
                        "Insufficient balance.".to_owned()
                    } else {
                        format!("Payment failed: {reason}")
                    };
                    json_response(520, &json!({"detail": text, "status": "failed"}))
                }
                Err(other) => {
                    o.status = "failed";
                    json_response(500, &json!({"detail": other.to_string()}))
                }
            };
            (q, response)
        };
        if !q.pay_delay.is_zero() {
            tokio::time::sleep(q.pay_delay).await;
        }
        self.raw("pay").unwrap_or(response)
    }

    fn check(&self, wallet: Option<usize>, hash: &str) -> Response {
        let not_found = || detail(404, "Payment does not exist.");
        let Ok(hash) = hash.parse::<PaymentHash>() else {
            return not_found();
        };
        let mut st = self.lock();
        if st.quirks.hide_checks > 0 {
            st.quirks.hide_checks -= 1;
            return not_found();
        }
        let q = st.quirks.clone();
        let preimage_json = |p: &Payment| {
            if q.zero_preimage {
                json!("0".repeat(64))
            } else {
                json!(p.preimage.to_hex())
            }
        };
        // Outgoing payments of the wallet (any wallet without a key).
        let out_key = st
            .outgoing
            .keys()
            .find(|(w, h)| *h == hash && wallet.is_none_or(|mine| mine == *w))
            .copied();
        let answer = if let Some(k) = out_key {
            let Some(o) = st.outgoing.get_mut(&k) else {
                return not_found();
            };
            let mut status = o.status;
            if status == "success" && o.checks_left > 0 {
                o.checks_left -= 1;
                status = "pending";
            }
            let paid = status == "success";
            let fee = o.payment.as_ref().map_or(0, |p| p.fee.0 as i64);
            let mut v = json!({
                "paid": paid,
                "status": status,
                "preimage": match (&o.payment, paid) {
                    (Some(p), true) => preimage_json(p),
                    _ => Value::Null,
                },
            });
            if wallet.is_some() {
                v["details"] = json!({
                    "checking_id": hash.to_hex(),
                    "payment_hash": hash.to_hex(),
                    "wallet_id": self.inner.wallets[k.0].name,
                    "amount": self.amount(&q, -(o.amount_msat as i64)),
                    "fee": self.amount(&q, -fee),
                    "bolt11": o.bolt11,
                    "status": status,
                    "pending": status == "pending",
                });
            }
            v
        } else {
            // Incoming: an invoice of the wallet's node.
            let found = self
                .inner
                .wallets
                .iter()
                .enumerate()
                .filter(|(i, _)| wallet.is_none_or(|mine| mine == *i))
                .find_map(|(_, w)| w.node.invoice(&hash));
            let Some(info) = found else {
                return not_found();
            };
            let (paid, status, preimage) = match &info.state {
                InvoiceState::Settled { preimage, .. } => (
                    true,
                    "success",
                    if q.zero_preimage {
                        json!("0".repeat(64))
                    } else {
                        json!(preimage.to_hex())
                    },
                ),
                InvoiceState::Canceled => (false, "failed", Value::Null),
                _ => (false, "pending", Value::Null),
            };
            let mut v = json!({"paid": paid, "status": status, "preimage": preimage});
            if wallet.is_some() {
                v["details"] = json!({
                    "checking_id": hash.to_hex(),
                    "payment_hash": hash.to_hex(),
                    "amount": self.amount(&q, info.amount.0 as i64),
                    "fee": 0,
                    "bolt11": info.bolt11,
                    "memo": info.memo,
                    "status": status,
                    "pending": status == "pending",
                });
            }
            v
        };
        drop(st);
        self.raw("check")
            .unwrap_or_else(|| json_response(200, &answer))
    }
}

async fn post_payments(
    State(fake): State<FakeLnbits>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let wallet = match fake.wallet_for(&headers) {
        Ok(Some(w)) => w,
        Ok(None) | Err(UnknownKey) => return invalid_key(),
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            422,
            &json!({"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "value_error.jsondecode"}]}),
        );
    };
    // The request model's default: a request without `out` is a payment.
    let out = body.get("out").and_then(Value::as_bool).unwrap_or(true);
    fake.record(
        if out { "pay" } else { "create" },
        Some(wallet.0),
        body.clone(),
    );
    if out {
        fake.pay(wallet.0, wallet.1, &body).await
    } else {
        fake.create(wallet.0, &body).await
    }
}

async fn get_payment(
    State(fake): State<FakeLnbits>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let wallet = match fake.wallet_for(&headers) {
        Ok(w) => w.map(|(i, _)| i),
        Err(UnknownKey) => return invalid_key(),
    };
    fake.record("check", wallet, json!({ "hash": hash }));
    fake.check(wallet, &hash)
}

/// A fake LNbits on `http://127.0.0.1:<port>`.
pub struct LnbitsServer {
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for LnbitsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(fake: &FakeLnbits) -> LnbitsServer {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    let app = Router::new()
        .route("/api/v1/payments", post(post_payments))
        .route("/api/v1/payments/{hash}", get(get_payment))
        .with_state(fake.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(tcp, app).await;
    });
    LnbitsServer { url, task }
}
