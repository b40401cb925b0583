//! An LND-compatible REST face for one [`SimNode`], so any HTTP client (the
//! [`lnd`](crate::lnd) client, curl, another language's LND library) can
//! create, look up and pay simnet invoices.
//!
//! It speaks LND's REST conventions: int64 values are JSON strings, `bytes`
//! fields are standard base64, errors are grpc-gateway bodies
//! `{"code": <grpc code>, "message": "...", "details": []}`. The
//! `Grpc-Metadata-macaroon` header is accepted and ignored. Request bodies are
//! limited to [`MAX_BODY_BYTES`]. It serves plain HTTP; bind it to loopback.
//!
//! | Endpoint | LND call |
//! |---|---|
//! | `GET /v1/getinfo` | `GetInfo` (identity key, alias, chain) |
//! | `POST /v1/invoices` | `AddInvoice` (`value_msat` or `value`, `memo`, `expiry`) |
//! | `GET /v1/invoice/{r_hash_hex}` | `LookupInvoice` |
//! | `GET /v2/invoices/lookup?payment_hash=<base64>` | `invoicesrpc.LookupInvoiceV2` |
//! | `POST /v2/router/send` | `routerrpc.SendPaymentV2` (NDJSON stream) |
//! | `GET /v2/router/track/{payment_hash}` | `routerrpc.TrackPaymentV2` (NDJSON stream) |
//!
//! Like LND, `send` answers `409` with `{"error":{"code":6,"message":"invoice is
//! already paid"}}` when this node already paid the invoice; `track` then
//! returns the earlier payment. If the node's latency exceeds the request's
//! `timeout_seconds`, the stream ends after `IN_FLIGHT` without a final
//! status, the way an interrupted LND stream does.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use pay402_backends::simnet::{rest, SimNet};
//! use pay402_core::lightning::Network;
//! use pay402_core::money::Msat;
//!
//! let net = SimNet::new(Network::Regtest);
//! let merchant = net.add_node("merchant", Msat(0));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let server = tokio::spawn(rest::serve(merchant, listener));
//! // ... point an LND REST client at http://{addr} ...
//! # let _ = addr;
//! server.abort();
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitcoin::hashes::Hash;
use futures_util::StreamExt;
use lightning_invoice::Bolt11Invoice;
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, Network,
    PayRequest, Payment, PaymentHash,
};
use pay402_core::money::Msat;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::SimNode;
use crate::wire::{b64, code, de_u64, hex_or_b64_32};

/// The largest request body the face accepts (64 KiB).
///
/// ```
/// assert_eq!(pay402_backends::simnet::rest::MAX_BODY_BYTES, 65_536);
/// ```
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The payment timeout used when a send request has no `timeout_seconds`.
const DEFAULT_TIMEOUT_SECONDS: u64 = 60;

/// LND's default invoice expiry, used when a request has none.
const DEFAULT_EXPIRY_SECONDS: u64 = 3600;

/// Serves `node`'s REST face on `listener` until the task is dropped or aborted.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use pay402_backends::simnet::{rest, SimNet};
/// use pay402_core::lightning::Network;
/// use pay402_core::money::Msat;
/// let node = SimNet::new(Network::Regtest).add_node("n", Msat(0));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let task = tokio::spawn(rest::serve(node, listener));
/// task.abort();
/// assert!(task.await.unwrap_err().is_cancelled());
/// # Ok(())
/// # }
/// ```
pub async fn serve(node: SimNode, listener: TcpListener) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(node = %node.name(), %addr, "simnet REST face listening");
    }
    axum::serve(listener, router(node)).await
}

/// The axum router of `node`'s REST face, to mount or serve yourself.
///
/// ```
/// use pay402_backends::simnet::{rest, SimNet};
/// use pay402_core::lightning::Network;
/// use pay402_core::money::Msat;
/// let node = SimNet::new(Network::Regtest).add_node("n", Msat(0));
/// let app: axum::Router = rest::router(node);
/// # let _ = app;
/// ```
pub fn router(node: SimNode) -> Router {
    Router::new()
        .route("/v1/getinfo", get(get_info))
        .route("/v1/invoices", post(add_invoice))
        .route("/v1/invoice/{r_hash}", get(lookup_invoice))
        .route("/v2/invoices/lookup", get(lookup_invoice_v2))
        .route("/v2/router/send", post(send_payment))
        .route("/v2/router/track/{payment_hash}", get(track_payment))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

/// A grpc-gateway error response `{"code","message","details":[]}`.
fn grpc_error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::debug!(status = status.as_u16(), code, %message, "simnet REST error");
    (
        status,
        axum::Json(json!({"code": code, "message": message, "details": []})),
    )
        .into_response()
}

/// The same, wrapped in `{"error": ...}` as grpc-gateway does on streaming calls.
fn grpc_stream_error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::debug!(status = status.as_u16(), code, %message, "simnet REST stream error");
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message, "details": []}})),
    )
        .into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    grpc_error(StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT, message)
}

fn body_rejection(rejection: BytesRejection) -> Response {
    grpc_error(
        rejection.status(),
        code::INVALID_ARGUMENT,
        rejection.body_text(),
    )
}

fn parse_json<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Box<Response>> {
    let body = body.map_err(|r| Box::new(body_rejection(r)))?;
    serde_json::from_slice(&body)
        .map_err(|e| Box::new(invalid(format!("invalid request body: {e}"))))
}

fn lightning_error(err: &LightningError) -> Response {
    match err {
        LightningError::Rejected { detail, .. } => invalid(detail.clone()),
        LightningError::NotFound => grpc_error(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            "unable to locate invoice",
        ),
        other => grpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::UNKNOWN,
            other.to_string(),
        ),
    }
}

async fn fallback() -> Response {
    grpc_error(StatusCode::NOT_FOUND, code::NOT_FOUND, "Not Found")
}

fn lnd_network_name(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "mainnet",
        Network::Testnet => "testnet",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

async fn get_info(State(node): State<SimNode>) -> Response {
    axum::Json(json!({
        "identity_pubkey": node.node_id().to_string(),
        "alias": node.name(),
        "version": concat!("pay402-simnet ", env!("CARGO_PKG_VERSION")),
        "synced_to_chain": true,
        "synced_to_graph": true,
        "block_height": 0,
        "chains": [{"chain": "bitcoin", "network": lnd_network_name(node.network())}],
    }))
    .into_response()
}

#[derive(Deserialize)]
struct AddInvoiceRequest {
    #[serde(default)]
    memo: String,
    #[serde(default, deserialize_with = "de_u64")]
    value: u64,
    #[serde(default, deserialize_with = "de_u64")]
    value_msat: u64,
    #[serde(default, deserialize_with = "de_u64")]
    expiry: u64,
}

async fn add_invoice(State(node): State<SimNode>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: AddInvoiceRequest = match parse_json(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if req.value != 0 && req.value_msat != 0 {
        return invalid("value and value_msat are mutually exclusive");
    }
    let amount = if req.value_msat != 0 {
        Msat(req.value_msat)
    } else {
        match req.value.checked_mul(1000) {
            Some(v) => Msat(v),
            None => return invalid("value out of range"),
        }
    };
    if amount == Msat::ZERO {
        return invalid("simnet does not support amountless invoices: set value_msat or value");
    }
    let expiry = if req.expiry == 0 {
        DEFAULT_EXPIRY_SECONDS
    } else {
        req.expiry
    };
    let request = InvoiceRequest {
        amount,
        memo: req.memo,
        expiry: Duration::from_secs(expiry),
    };
    let created = match node.create_invoice(&request).await {
        Ok(c) => c,
        Err(e) => return lightning_error(&e),
    };
    let Some(info) = node.invoice(&created.payment_hash) else {
        return lightning_error(&LightningError::NotFound);
    };
    axum::Json(json!({
        "r_hash": b64(created.payment_hash.as_bytes()),
        "payment_request": created.bolt11,
        "add_index": info.add_index.to_string(),
        "payment_addr": b64(&info.payment_secret),
    }))
    .into_response()
}

fn invoice_json(node: &SimNode, hash: &PaymentHash) -> Response {
    let Some(inv) = node.invoice(hash) else {
        return grpc_error(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            "unable to locate invoice",
        );
    };
    let (state, settled, preimage, paid) = match &inv.state {
        InvoiceState::Open => ("OPEN", false, String::new(), Msat::ZERO),
        InvoiceState::Accepted => ("ACCEPTED", false, String::new(), Msat::ZERO),
        InvoiceState::Canceled => ("CANCELED", false, String::new(), Msat::ZERO),
        InvoiceState::Settled {
            preimage,
            amount_paid,
        } => ("SETTLED", true, b64(preimage.as_bytes()), *amount_paid),
    };
    axum::Json(json!({
        "memo": inv.memo,
        "r_preimage": preimage,
        "r_hash": b64(hash.as_bytes()),
        "value": inv.amount.to_sat_floor().0.to_string(),
        "value_msat": inv.amount.0.to_string(),
        "settled": settled,
        "creation_date": inv.created_at.as_secs().to_string(),
        "settle_date": inv.settled_at.map_or(0, |d| d.as_secs()).to_string(),
        "payment_request": inv.bolt11,
        "expiry": inv.expiry.as_secs().to_string(),
        "cltv_expiry": super::MIN_FINAL_CLTV_EXPIRY_DELTA.to_string(),
        "private": false,
        "add_index": inv.add_index.to_string(),
        "amt_paid": paid.0.to_string(),
        "amt_paid_sat": paid.to_sat_floor().0.to_string(),
        "amt_paid_msat": paid.0.to_string(),
        "state": state,
        "htlcs": [],
        "is_keysend": false,
        "payment_addr": b64(&inv.payment_secret),
    }))
    .into_response()
}

async fn lookup_invoice(State(node): State<SimNode>, Path(r_hash): Path<String>) -> Response {
    // LND's v1 lookup takes the hash as hex (`r_hash_str`).
    match PaymentHash::from_str(&r_hash) {
        Ok(hash) => invoice_json(&node, &hash),
        Err(_) => invalid("invalid r_hash: expected 64 hex digits"),
    }
}

#[derive(Deserialize)]
struct LookupV2Query {
    #[serde(default)]
    payment_hash: String,
}

async fn lookup_invoice_v2(
    State(node): State<SimNode>,
    query: Result<Query<LookupV2Query>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return invalid("invalid query");
    };
    match crate::wire::b64_32(&q.payment_hash) {
        Some(bytes) => invoice_json(&node, &PaymentHash(bytes)),
        None => invalid("invalid payment_hash: expected 32 bytes of base64"),
    }
}

#[derive(Deserialize)]
struct SendRequest {
    #[serde(default)]
    payment_request: String,
    #[serde(default, deserialize_with = "de_u64")]
    timeout_seconds: u64,
    #[serde(default, deserialize_with = "de_u64")]
    fee_limit_sat: u64,
    #[serde(default, deserialize_with = "de_u64")]
    fee_limit_msat: u64,
    #[serde(default, deserialize_with = "de_u64")]
    amt: u64,
    #[serde(default, deserialize_with = "de_u64")]
    amt_msat: u64,
    #[serde(default)]
    no_inflight_updates: bool,
}

/// Maps a simnet payment failure to LND's `FailureReason`.
fn failure_reason(err: &LightningError) -> &'static str {
    let LightningError::PaymentFailed { reason } = err else {
        return "FAILURE_REASON_ERROR";
    };
    if reason.starts_with("no route") {
        "FAILURE_REASON_NO_ROUTE"
    } else if reason.starts_with("insufficient balance") {
        "FAILURE_REASON_INSUFFICIENT_BALANCE"
    } else if reason.starts_with("incorrect payment details")
        || reason.starts_with("invoice expired")
        || reason.starts_with("invoice canceled")
        || reason.starts_with("invoice already paid")
    {
        "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS"
    } else {
        "FAILURE_REASON_ERROR"
    }
}

fn payment_line(result: Value) -> Result<Bytes, Infallible> {
    let mut line = json!({ "result": result }).to_string();
    line.push('\n');
    Ok(Bytes::from(line))
}

fn in_flight_json(hash: &PaymentHash, bolt11: &str, amount: Msat) -> Value {
    json!({
        "payment_hash": hash.to_hex(),
        "value": amount.to_sat_floor().0.to_string(),
        "value_sat": amount.to_sat_floor().0.to_string(),
        "value_msat": amount.0.to_string(),
        "payment_preimage": "",
        "payment_request": bolt11,
        "status": "IN_FLIGHT",
        "fee": "0",
        "fee_sat": "0",
        "fee_msat": "0",
        "htlcs": [],
        "failure_reason": "FAILURE_REASON_NONE",
    })
}

fn succeeded_json(p: &Payment, bolt11: &str) -> Value {
    json!({
        "payment_hash": p.payment_hash.to_hex(),
        "value": p.amount.to_sat_floor().0.to_string(),
        "value_sat": p.amount.to_sat_floor().0.to_string(),
        "value_msat": p.amount.0.to_string(),
        "payment_preimage": p.preimage.to_hex(),
        "payment_request": bolt11,
        "status": "SUCCEEDED",
        "fee": p.fee.to_sat_floor().0.to_string(),
        "fee_sat": p.fee.to_sat_floor().0.to_string(),
        "fee_msat": p.fee.0.to_string(),
        "htlcs": [],
        "failure_reason": "FAILURE_REASON_NONE",
    })
}

fn failed_json(hash: &PaymentHash, bolt11: &str, amount: Msat, err: &LightningError) -> Value {
    json!({
        "payment_hash": hash.to_hex(),
        "value": amount.to_sat_floor().0.to_string(),
        "value_sat": amount.to_sat_floor().0.to_string(),
        "value_msat": amount.0.to_string(),
        "payment_preimage": "",
        "payment_request": bolt11,
        "status": "FAILED",
        "fee": "0",
        "fee_sat": "0",
        "fee_msat": "0",
        "htlcs": [],
        "failure_reason": failure_reason(err),
    })
}

fn ndjson(
    stream: impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn send_payment(
    State(node): State<SimNode>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: SendRequest = match parse_json(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if req.payment_request.is_empty() {
        return invalid("payment_request is required (simnet does not support keysend)");
    }
    if req.amt != 0 || req.amt_msat != 0 {
        return invalid("amount must not be specified: simnet only pays invoices with an amount");
    }
    if req.fee_limit_sat != 0 && req.fee_limit_msat != 0 {
        return invalid("fee_limit_sat and fee_limit_msat are mutually exclusive");
    }
    let max_fee = if req.fee_limit_msat != 0 {
        Msat(req.fee_limit_msat)
    } else {
        match req.fee_limit_sat.checked_mul(1000) {
            Some(v) => Msat(v),
            None => return invalid("fee_limit_sat out of range"),
        }
    };
    let timeout = Duration::from_secs(if req.timeout_seconds == 0 {
        DEFAULT_TIMEOUT_SECONDS
    } else {
        req.timeout_seconds
    });
    let bolt11 = req.payment_request.trim().to_owned();
    let invoice = match Bolt11Invoice::from_str(&bolt11) {
        Ok(i) => i,
        Err(e) => return invalid(format!("invalid payment request: {e}")),
    };
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    let amount = Msat(invoice.amount_milli_satoshis().unwrap_or_default());
    if node.payment(&hash).is_some() {
        // LND refuses to pay a hash twice and points callers to TrackPaymentV2.
        return grpc_stream_error(
            StatusCode::CONFLICT,
            code::ALREADY_EXISTS,
            "invoice is already paid",
        );
    }

    // The payment runs in its own task so that, as on a real node, it
    // completes even if the HTTP client goes away.
    let pay_req = PayRequest {
        bolt11: bolt11.clone(),
        max_fee,
        timeout,
    };
    let payer = node.clone();
    let task = tokio::spawn(async move { payer.pay_invoice(&pay_req).await });

    let first =
        (!req.no_inflight_updates).then(|| payment_line(in_flight_json(&hash, &bolt11, amount)));
    let last = async move {
        match task.await {
            Ok(Ok(p)) => Some(payment_line(succeeded_json(&p, &bolt11))),
            // The attempt timed out while in flight: end the stream without a
            // final status, as an interrupted LND stream does.
            Ok(Err(LightningError::Unknown { .. })) => None,
            Ok(Err(e)) => Some(payment_line(failed_json(&hash, &bolt11, amount, &e))),
            Err(join) => {
                tracing::warn!(error = %join, "simnet payment task failed");
                let e = LightningError::PaymentFailed {
                    reason: "internal error".into(),
                };
                Some(payment_line(failed_json(&hash, &bolt11, amount, &e)))
            }
        }
    };
    let stream = futures_util::stream::iter(first)
        .chain(futures_util::stream::once(last).filter_map(|line| async move { line }));
    ndjson(stream)
}

async fn track_payment(State(node): State<SimNode>, Path(hash): Path<String>) -> Response {
    let Some(bytes) = hex_or_b64_32(&hash) else {
        return invalid("invalid payment_hash: expected 32 bytes as base64 or hex");
    };
    let hash = PaymentHash(bytes);
    match node.payment(&hash) {
        Some(p) => {
            let line = payment_line(succeeded_json(&p, ""));
            ndjson(futures_util::stream::iter([line]))
        }
        None => grpc_stream_error(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            "payment isn't initiated",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_map_to_lnd_names() {
        let f = |r: &str| LightningError::PaymentFailed { reason: r.into() };
        assert_eq!(
            failure_reason(&f("no route to payee x")),
            "FAILURE_REASON_NO_ROUTE"
        );
        assert_eq!(
            failure_reason(&f("insufficient balance: need 1")),
            "FAILURE_REASON_INSUFFICIENT_BALANCE"
        );
        assert_eq!(
            failure_reason(&f("invoice expired")),
            "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS"
        );
        assert_eq!(
            failure_reason(&f("simulated failure")),
            "FAILURE_REASON_ERROR"
        );
        assert_eq!(
            failure_reason(&LightningError::NotFound),
            "FAILURE_REASON_ERROR"
        );
    }
}
