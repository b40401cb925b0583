//! The LND REST client against simnet's LND-compatible REST face, over real
//! HTTP on 127.0.0.1 with ephemeral ports.
#![cfg(all(feature = "lnd", feature = "simnet-rest"))]

use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lightning_invoice::Bolt11Invoice;
use pay402_backends::lnd::{LndConfig, LndRest, Url};
use pay402_backends::simnet::{FeePolicy, SimNet, SimNode, rest};
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, Network,
    PayRequest, PaymentHash,
};
use pay402_core::money::Msat;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

struct Face {
    url: Url,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Face {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn face(node: &SimNode) -> Face {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let task = tokio::spawn(rest::serve(node.clone(), listener));
    Face { url, task }
}

fn client(face: &Face) -> LndRest {
    LndRest::new(LndConfig {
        url: face.url.clone(),
        macaroon_hex: Some("0201036c6e6402f801".into()),
        tls_cert_pem: None,
        network: Network::Regtest,
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

struct World {
    net: SimNet,
    merchant: SimNode,
    payer: SimNode,
    merchant_face: Face,
    payer_face: Face,
}

async fn world() -> World {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(10_000_000));
    let merchant_face = face(&merchant).await;
    let payer_face = face(&payer).await;
    World {
        net,
        merchant,
        payer,
        merchant_face,
        payer_face,
    }
}

fn reason(res: Result<pay402_core::lightning::Payment, LightningError>) -> String {
    match res {
        Err(LightningError::PaymentFailed { reason }) => reason,
        other => panic!("expected PaymentFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn create_pay_lookup_round_trip() {
    let w = world().await;
    let merchant_lnd = client(&w.merchant_face);
    let payer_lnd = client(&w.payer_face);

    let req = InvoiceRequest::new(Msat(150_000), "GET /premium");
    let inv = merchant_lnd.create_invoice(&req).await.unwrap();
    let decoded = Bolt11Invoice::from_str(&inv.bolt11).unwrap();
    assert_eq!(decoded.amount_milli_satoshis(), Some(150_000));
    assert_eq!(decoded.recover_payee_pub_key(), w.merchant.node_id());
    assert!(w.merchant.invoice(&inv.payment_hash).is_some());
    assert_eq!(
        merchant_lnd
            .lookup_invoice(&inv.payment_hash)
            .await
            .unwrap(),
        InvoiceState::Open
    );

    let payment = payer_lnd
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(1_000)))
        .await
        .unwrap();
    assert_eq!(payment.payment_hash, inv.payment_hash);
    assert!(payment.preimage.matches(&inv.payment_hash));
    assert_eq!(payment.amount, Msat(150_000));
    assert_eq!(payment.fee, Msat(0));
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 150_000));
    assert_eq!(w.merchant.balance(), Msat(150_000));

    match merchant_lnd
        .lookup_invoice(&inv.payment_hash)
        .await
        .unwrap()
    {
        InvoiceState::Settled {
            preimage,
            amount_paid,
        } => {
            assert_eq!(preimage, payment.preimage);
            assert_eq!(amount_paid, Msat(150_000));
        }
        other => panic!("expected Settled, got {other:?}"),
    }
}

#[tokio::test]
async fn repaying_over_rest_tracks_the_first_payment() {
    let w = world().await;
    let payer_lnd = client(&w.payer_face);
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(4_000), "again"))
        .await
        .unwrap();
    let first = payer_lnd
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
        .await
        .unwrap();
    // The face answers 409 AlreadyExists like lnd; the client then tracks.
    let second = payer_lnd
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 4_000));
    assert_eq!(w.payer.payments_sent(), 1);
}

#[tokio::test]
async fn fees_over_rest() {
    let w = world().await;
    w.net.set_fee(FeePolicy {
        base: Msat(500),
        ppm: 0,
    });
    let payer_lnd = client(&w.payer_face);
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(10_000), "fee"))
        .await
        .unwrap();
    let r = reason(
        payer_lnd
            .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(499)))
            .await,
    );
    assert_eq!(r, "no route");
    let p = payer_lnd
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(500)))
        .await
        .unwrap();
    assert_eq!(p.fee, Msat(500));
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 10_500));
}

#[tokio::test]
async fn lookup_of_unknown_invoice_is_not_found() {
    let w = world().await;
    let merchant_lnd = client(&w.merchant_face);
    assert_eq!(
        merchant_lnd.lookup_invoice(&PaymentHash([5; 32])).await,
        Err(LightningError::NotFound)
    );
}

#[tokio::test]
async fn failed_payments_are_payment_failed() {
    let w = world().await;
    let poor = w.net.add_node("poor", Msat(10));
    let poor_face = face(&poor).await;
    let poor_lnd = client(&poor_face);
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "too much"))
        .await
        .unwrap();
    let r = reason(
        poor_lnd
            .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
    );
    assert_eq!(r, "insufficient balance");
    assert_eq!(poor.balance(), Msat(10));

    let elsewhere = SimNet::new(Network::Regtest).add_node("elsewhere", Msat(0));
    let foreign = elsewhere
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "nowhere"))
        .await
        .unwrap();
    let payer_lnd = client(&w.payer_face);
    let r = reason(
        payer_lnd
            .pay_invoice(&PayRequest::new(&foreign.bolt11, Msat(0)))
            .await,
    );
    assert_eq!(r, "no route");

    w.payer.fail_next_payments(1);
    let r = reason(
        payer_lnd
            .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
    );
    assert_eq!(r, "error");
    assert_eq!(w.payer.balance(), Msat(10_000_000));
}

#[tokio::test]
async fn client_side_invoice_checks() {
    let w = world().await;
    let payer_lnd = client(&w.payer_face);
    assert!(
        reason(
            payer_lnd
                .pay_invoice(&PayRequest::new("lnbcrt1xyz", Msat(0)))
                .await
        )
        .contains("invalid invoice")
    );
    let mainnet = SimNet::new(Network::Bitcoin).add_node("m", Msat(0));
    let inv = mainnet
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "wrong chain"))
        .await
        .unwrap();
    assert!(
        reason(
            payer_lnd
                .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
                .await
        )
        .contains("bitcoin")
    );

    // A client configured for mainnet refuses the regtest invoices the node creates.
    let mut cfg = LndConfig::new(w.merchant_face.url.clone(), Network::Bitcoin);
    cfg.timeout = Duration::from_secs(5);
    let misconfigured = LndRest::new(cfg).unwrap();
    let res = misconfigured
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await;
    assert!(
        matches!(
            res,
            Err(LightningError::InvalidResponse {
                backend: "lnd",
                call: "create_invoice",
                ..
            })
        ),
        "{res:?}"
    );
}

#[tokio::test]
async fn node_errors_are_rejected_with_the_call_name() {
    let w = world().await;
    let merchant_lnd = client(&w.merchant_face);
    // BOLT11 descriptions are limited to 639 bytes; the face answers 400 {code:3}.
    let res = merchant_lnd
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x".repeat(1_000)))
        .await;
    match res {
        Err(LightningError::Rejected {
            backend,
            call,
            detail,
        }) => {
            assert_eq!((backend, call), ("lnd", "create_invoice"));
            assert!(detail.contains("grpc code 3"), "{detail}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_node() {
    // Bind and drop to get a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = LndConfig::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        Network::Regtest,
    );
    cfg.timeout = Duration::from_secs(5);
    let lnd = LndRest::new(cfg).unwrap();
    let res = lnd
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await;
    assert!(
        matches!(
            res,
            Err(LightningError::Unreachable {
                backend: "lnd",
                call: "create_invoice",
                ..
            })
        ),
        "{res:?}"
    );
    let res = lnd.lookup_invoice(&PaymentHash([1; 32])).await;
    assert!(matches!(
        res,
        Err(LightningError::Unreachable {
            call: "lookup_invoice",
            ..
        })
    ));
    let inv = SimNet::new(Network::Regtest)
        .add_node("m", Msat(0))
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    // Connection refused: nothing was sent, so this is not Unknown.
    let res = lnd
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
        .await;
    assert!(
        matches!(
            res,
            Err(LightningError::Unreachable {
                call: "pay_invoice",
                ..
            })
        ),
        "{res:?}"
    );
}

#[tokio::test]
async fn payment_timeout_is_unknown_and_a_retry_is_safe() {
    let w = world().await;
    let payer_lnd = client(&w.payer_face);
    w.payer.set_latency(Duration::from_secs(3));
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(8_000), "slow"))
        .await
        .unwrap();
    let mut req = PayRequest::new(&inv.bolt11, Msat(0));
    req.timeout = Duration::from_secs(1);
    // The node gives up after timeout_seconds=1 while the payment is in
    // flight: the stream ends after IN_FLIGHT.
    let res = payer_lnd.pay_invoice(&req).await;
    assert_eq!(
        res,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        })
    );
    // The stuck payment went through; paying again returns it, once.
    w.payer.set_latency(Duration::ZERO);
    let p = payer_lnd.pay_invoice(&req).await.unwrap();
    assert!(p.preimage.matches(&inv.payment_hash));
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 8_000));
    assert_eq!(w.merchant.payments_received(), 1);
}

#[tokio::test]
async fn http_timeout_while_paying_is_unknown() {
    // A server that accepts the request and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        }
    });
    let lnd = LndRest::new(LndConfig {
        url: format!("http://{addr}").parse().unwrap(),
        macaroon_hex: None,
        tls_cert_pem: None,
        network: Network::Regtest,
        timeout: Duration::from_millis(300),
    })
    .unwrap();
    let inv = SimNet::new(Network::Regtest)
        .add_node("m", Msat(0))
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    let mut req = PayRequest::new(&inv.bolt11, Msat(0));
    req.timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let res = lnd.pay_invoice(&req).await;
    assert_eq!(
        res,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        })
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    let res = lnd.lookup_invoice(&inv.payment_hash).await;
    assert!(
        matches!(res, Err(LightningError::Unreachable { ref detail, .. }) if detail.contains("timed out")),
        "{res:?}"
    );
    silent.abort();
}

// ---- The face's wire format, checked with a plain HTTP client ----

async fn post(url: &Url, path: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url.join(path).unwrap())
        .header("Grpc-Metadata-macaroon", "0201")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn get(url: &Url, path: &str) -> reqwest::Response {
    reqwest::get(url.join(path).unwrap()).await.unwrap()
}

fn b64_32(v: &Value) -> [u8; 32] {
    let bytes = STANDARD.decode(v.as_str().unwrap()).unwrap();
    bytes.try_into().unwrap()
}

#[tokio::test]
async fn face_add_and_lookup_invoice_wire_format() {
    let w = world().await;
    let url = &w.merchant_face.url;
    // value in sat, as a number; expiry as a string.
    let resp = post(
        url,
        "/v1/invoices",
        r#"{"value": 21, "memo": "wire", "expiry": "120"}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let added: Value = resp.json().await.unwrap();
    assert_eq!(added["add_index"], json!("1"));
    let r_hash = b64_32(&added["r_hash"]);
    b64_32(&added["payment_addr"]);
    let bolt11 = added["payment_request"].as_str().unwrap().to_owned();
    let inv = Bolt11Invoice::from_str(&bolt11).unwrap();
    assert_eq!(inv.amount_milli_satoshis(), Some(21_000));
    assert_eq!(inv.expiry_time(), Duration::from_secs(120));

    let path = format!("/v1/invoice/{}", hex::encode(r_hash));
    let open: Value = get(url, &path).await.json().await.unwrap();
    assert_eq!(open["state"], json!("OPEN"));
    assert_eq!(open["settled"], json!(false));
    assert_eq!(open["r_preimage"], json!(""));
    assert_eq!(open["value"], json!("21"));
    assert_eq!(open["value_msat"], json!("21000"));
    assert_eq!(open["amt_paid_msat"], json!("0"));
    assert_eq!(open["expiry"], json!("120"));
    assert_eq!(open["memo"], json!("wire"));
    assert_eq!(open["payment_request"], json!(bolt11));
    assert!(
        open["creation_date"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 1_600_000_000
    );

    // value_msat as a string.
    let resp = post(
        url,
        "/v1/invoices",
        r#"{"value_msat": "1500", "memo": "msat"}"#,
    )
    .await;
    let added2: Value = resp.json().await.unwrap();
    let inv2 = Bolt11Invoice::from_str(added2["payment_request"].as_str().unwrap()).unwrap();
    assert_eq!(inv2.amount_milli_satoshis(), Some(1_500));
    assert_eq!(inv2.expiry_time(), Duration::from_secs(3600));

    w.payer
        .pay_invoice(&PayRequest::new(&bolt11, Msat(0)))
        .await
        .unwrap();
    let settled: Value = get(url, &path).await.json().await.unwrap();
    assert_eq!(settled["state"], json!("SETTLED"));
    assert_eq!(settled["settled"], json!(true));
    assert_eq!(settled["amt_paid_msat"], json!("21000"));
    let preimage = b64_32(&settled["r_preimage"]);
    assert_eq!(
        pay402_core::lightning::Preimage::from_bytes(preimage).payment_hash(),
        PaymentHash(r_hash)
    );

    // LookupInvoiceV2 with URL-safe base64.
    let q = base64::engine::general_purpose::URL_SAFE.encode(r_hash);
    let v2: Value = get(url, &format!("/v2/invoices/lookup?payment_hash={q}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["state"], json!("SETTLED"));
}

#[tokio::test]
async fn face_error_shapes() {
    let w = world().await;
    let url = &w.merchant_face.url;

    let resp = get(url, &format!("/v1/invoice/{}", "ab".repeat(32))).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"code": 5, "message": "unable to locate invoice", "details": []})
    );

    let resp = get(url, "/v1/invoice/not-hex").await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], json!(3));

    for bad in [
        "{not json",
        r#"{"value_msat": "12x"}"#,
        r#"{"value_msat": -5}"#,
        r#"{"value": 1, "value_msat": "1000"}"#,
        r#"{"memo": "amountless"}"#,
    ] {
        let resp = post(url, "/v1/invoices", bad).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], json!(3), "{bad}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(body["details"], json!([]));
    }

    for bad in [
        "[]",
        r#"{"payment_request": ""}"#,
        r#"{"payment_request": "lnbcrt1nope"}"#,
        r#"{"payment_request": "x", "fee_limit_sat": "1", "fee_limit_msat": "1"}"#,
    ] {
        let resp = post(url, "/v2/router/send", bad).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], json!(3), "{bad}");
    }

    let huge = format!(r#"{{"memo": "{}"}}"#, "x".repeat(70 * 1024));
    let resp = post(url, "/v1/invoices", &huge).await;
    assert_eq!(resp.status(), 413);

    let resp = get(url, "/v1/nonexistent").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], json!(5));
}

#[tokio::test]
async fn face_send_streams_ndjson() {
    let w = world().await;
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(3_000), "stream"))
        .await
        .unwrap();
    let body = json!({"payment_request": inv.bolt11, "timeout_seconds": 60, "fee_limit_sat": "10"});
    let resp = post(&w.payer_face.url, "/v2/router/send", &body.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["result"]["status"], json!("IN_FLIGHT"));
    let done = &lines[1]["result"];
    assert_eq!(done["status"], json!("SUCCEEDED"));
    assert_eq!(done["failure_reason"], json!("FAILURE_REASON_NONE"));
    assert_eq!(done["payment_hash"], json!(inv.payment_hash.to_hex()));
    assert_eq!(done["value_msat"], json!("3000"));
    assert_eq!(done["fee_msat"], json!("0"));
    let pre =
        pay402_core::lightning::Preimage::from_hex(done["payment_preimage"].as_str().unwrap())
            .unwrap();
    assert!(pre.matches(&inv.payment_hash));

    // Paying again: 409 AlreadyExists, like lnd.
    let resp = post(&w.payer_face.url, "/v2/router/send", &body.to_string()).await;
    assert_eq!(resp.status(), 409);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], json!(6));

    // TrackPaymentV2 by URL-safe base64 and by hex.
    let b64url = base64::engine::general_purpose::URL_SAFE.encode(inv.payment_hash.0);
    for key in [b64url, inv.payment_hash.to_hex()] {
        let text = get(&w.payer_face.url, &format!("/v2/router/track/{key}"))
            .await
            .text()
            .await
            .unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["result"]["status"], json!("SUCCEEDED"));
    }
    let resp = get(
        &w.payer_face.url,
        &format!("/v2/router/track/{}", "00".repeat(32)),
    )
    .await;
    assert_eq!(resp.status(), 404);

    // no_inflight_updates: only the final line; failures carry a reason.
    let poor = w.net.add_node("poor", Msat(0));
    let poor_face = face(&poor).await;
    let inv2 = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(3_000), "stream2"))
        .await
        .unwrap();
    let body =
        json!({"payment_request": inv2.bolt11, "no_inflight_updates": true, "fee_limit_msat": 0});
    let text = post(&poor_face.url, "/v2/router/send", &body.to_string())
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["result"]["status"], json!("FAILED"));
    assert_eq!(
        lines[0]["result"]["failure_reason"],
        json!("FAILURE_REASON_INSUFFICIENT_BALANCE")
    );
    assert_eq!(
        lines[0]["result"]["payment_hash"],
        json!(inv2.payment_hash.to_hex())
    );
}

#[tokio::test]
async fn face_getinfo() {
    let w = world().await;
    let info: Value = get(&w.merchant_face.url, "/v1/getinfo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["identity_pubkey"],
        json!(w.merchant.node_id().to_string())
    );
    assert_eq!(info["alias"], json!("merchant"));
    assert_eq!(info["chains"][0]["network"], json!("regtest"));
}
