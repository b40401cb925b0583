#![cfg(feature = "x402")]
//! The x402 client against small in-test resource servers (axum) that answer
//! with real `PAYMENT-REQUIRED` / v1 offers and check every payment they
//! receive with pay402-core's reference verification (`exact::verify_v2` /
//! `verify_v1`, no chain). The scripted answers (pending, rejection, failed
//! settlement, a dropped connection, hostile 402s) are fault injection the
//! real server cannot be made to produce on demand.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use pay402_client::x402::{
    LocalSigner, PaymentSigner, Selection, SignerError, X402Client, X402Error,
};
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::evm::{EvmAddress, EvmSignature};
use pay402_core::x402::{
    Extra, HeaderValue as _, PaymentPayloadV1, PaymentPayloadV2, PaymentRequirementsV1,
    SettleResponse, TokenAmount, exact, select_requirement_v1,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const UNKNOWN_TOKEN: &str = "0x1111111111111111111111111111111111111111";

fn now() -> u64 {
    UnixTime::from_system(SystemTime::now()).0
}

/// A v2 requirement as raw JSON, with members core does not know (they must
/// be echoed unchanged).
fn requirement(network: &str, asset: &str, amount: u64) -> Value {
    json!({
        "scheme": "exact",
        "network": network,
        "amount": amount.to_string(),
        "asset": asset,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2", "futureExtra": [1, 2]},
        "futureField": {"kept": true}
    })
}

fn offer_v2(accepts: Vec<Value>) -> Value {
    json!({
        "x402Version": 2,
        "error": "PAYMENT-SIGNATURE header is required",
        "resource": {"url": "http://test/paid", "description": "paid data", "futureResource": 7},
        "accepts": accepts,
        "extensions": {"bazaar": {"info": {"x": 1}}}
    })
}

fn offer_v1(amount: u64) -> Value {
    json!({
        "x402Version": 1,
        "error": "X-PAYMENT header is required",
        "accepts": [{
            "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": amount.to_string(),
            "resource": "http://test/paid", "description": "", "mimeType": "text/plain",
            "payTo": PAY_TO, "maxTimeoutSeconds": 120, "asset": SEPOLIA_USDC,
            "extra": {"name": "USDC", "version": "2"}
        }]
    })
}

/// What the server answers an unpaid request with.
#[derive(Clone)]
enum Challenge {
    V2(Value),
    V1(Value),
    /// Raw `PAYMENT-REQUIRED` values (hostile).
    RawHeaders(Vec<String>),
    /// A raw 402 body without header (hostile).
    RawBody(Vec<u8>),
}

/// How the server answers a paid request (scripted, in order; `Verify`
/// when the script is empty).
#[derive(Clone, Debug)]
enum Answer {
    /// Verify with core and serve with a successful `PAYMENT-RESPONSE`.
    Verify,
    /// 202 problem+json `settlement_pending`.
    Pending,
    /// 402 with a fresh `PAYMENT-REQUIRED` carrying this verify reason.
    Reject(&'static str),
    /// 402 with a failed `PAYMENT-RESPONSE`.
    SettleFail(&'static str),
    /// Sleep longer than the client's timeout, then verify.
    Slow(Duration),
}

struct ServerState {
    challenge: Challenge,
    script: VecDeque<Answer>,
    /// Every payment header value received, in order.
    received: Vec<String>,
    /// Every request body received (paid or not).
    bodies: Vec<Vec<u8>>,
    /// Payments that passed core's verification.
    verified: usize,
    /// Verification failures (reference reasons).
    failures: Vec<String>,
}

type Shared = Arc<Mutex<ServerState>>;

fn settle_header(network: &str, payer: &str, nonce: &str) -> String {
    // A fake transaction hash derived from the nonce: no chain here. The
    // report names the payment's own network (the client checks it).
    SettleResponse::success(nonce, network, payer).encode_header()
}

/// Checks a payment header with pay402-core, like a real server would.
fn verify(
    state: &ServerState,
    header_name: &str,
    value: &str,
) -> Result<(u32, String, String, String), String> {
    let now = UnixTime::from_system(SystemTime::now());
    match (&state.challenge, header_name) {
        (Challenge::V2(offer), "payment-signature") => {
            let payment = PaymentPayloadV2::decode_header(value).map_err(|e| e.to_string())?;
            // The echo must be one offered requirement, byte for byte as JSON
            // (unknown members included), and so must resource and extensions.
            let mut buf = Vec::new();
            let raw: Value = pay402_core::x402::header::decode_with(value, 1 << 16, &mut buf)
                .map_err(|e| e.to_string())?;
            let accepts = offer["accepts"].as_array().cloned().unwrap_or_default();
            let index = accepts
                .iter()
                .position(|a| *a == raw["accepted"])
                .ok_or("accepted is not an offered requirement (verbatim)")?;
            if raw["resource"] != offer["resource"] || raw["extensions"] != offer["extensions"] {
                return Err("resource/extensions not echoed".into());
            }
            let typed: pay402_core::x402::PaymentRequirements =
                serde_json::from_value(accepts[index].clone()).map_err(|e| e.to_string())?;
            let ok = exact::verify_v2(&payment, &typed, now).map_err(|e| e.reason().to_owned())?;
            Ok((
                2,
                typed.network.clone(),
                ok.payer.to_string(),
                payment.payload.authorization.nonce.to_string(),
            ))
        }
        (Challenge::V1(offer), "x-payment") => {
            let payment = PaymentPayloadV1::decode_header(value).map_err(|e| e.to_string())?;
            let accepts: Vec<PaymentRequirementsV1> =
                serde_json::from_value(offer["accepts"].clone()).map_err(|e| e.to_string())?;
            let req = select_requirement_v1(&accepts, &payment.scheme, &payment.network)
                .ok_or("no matching v1 requirement")?;
            let ok = exact::verify_v1(&payment, req, now).map_err(|e| e.reason().to_owned())?;
            Ok((
                1,
                payment.network.clone(),
                ok.payer.to_string(),
                payment.payload.authorization.nonce.to_string(),
            ))
        }
        _ => Err("unexpected payment header".into()),
    }
}

fn challenge_response(challenge: &Challenge, error: Option<&str>) -> Response {
    let mut response = (StatusCode::PAYMENT_REQUIRED, "{}").into_response();
    let headers = response.headers_mut();
    match challenge {
        Challenge::V2(offer) => {
            let mut offer = offer.clone();
            if let Some(e) = error {
                offer["error"] = json!(e);
            }
            let value = pay402_core::x402::header::encode(&offer);
            headers.insert("payment-required", HeaderValue::from_str(&value).unwrap());
        }
        Challenge::V1(offer) => {
            let mut offer = offer.clone();
            if let Some(e) = error {
                offer["error"] = json!(e);
            }
            return (StatusCode::PAYMENT_REQUIRED, axum::Json(offer)).into_response();
        }
        Challenge::RawHeaders(values) => {
            for v in values {
                headers.append("payment-required", HeaderValue::from_str(v).unwrap());
            }
        }
        Challenge::RawBody(body) => {
            return (StatusCode::PAYMENT_REQUIRED, body.clone()).into_response();
        }
    }
    response
}

async fn paid(State(state): State<Shared>, request: Request<Body>) -> Response {
    let headers: HeaderMap = request.headers().clone();
    let body = to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let payment = ["payment-signature", "x-payment"]
        .into_iter()
        .find_map(|name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name, v.to_owned()))
        });
    let answer = {
        let mut s = state.lock().unwrap();
        s.bodies.push(body.to_vec());
        let Some((_, value)) = &payment else {
            return challenge_response(&s.challenge, None);
        };
        s.received.push(value.clone());
        s.script.pop_front().unwrap_or(Answer::Verify)
    };
    let (name, value) = payment.unwrap();
    if let Answer::Slow(d) = answer {
        tokio::time::sleep(d).await;
    }
    let mut s = state.lock().unwrap();
    match answer {
        Answer::Verify | Answer::Slow(_) => match verify(&s, name, &value) {
            Ok((version, network, payer, nonce)) => {
                s.verified += 1;
                let header = if version == 1 {
                    "x-payment-response"
                } else {
                    "payment-response"
                };
                let mut r = (StatusCode::OK, "paid content").into_response();
                r.headers_mut().insert(
                    header,
                    HeaderValue::from_str(&settle_header(&network, &payer, &nonce)).unwrap(),
                );
                r
            }
            Err(reason) => {
                s.failures.push(reason.clone());
                challenge_response(&s.challenge, Some(&reason))
            }
        },
        Answer::Pending => {
            let mut r = (
                StatusCode::ACCEPTED,
                r#"{"type":"https://pay402.dev/problems/settlement_pending","title":"Settlement pending","status":202,"reason":"settlement_pending"}"#,
            )
                .into_response();
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/problem+json"),
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("0"));
            r
        }
        Answer::Reject(reason) => challenge_response(&s.challenge, Some(reason)),
        Answer::SettleFail(reason) => {
            let mut r = (StatusCode::PAYMENT_REQUIRED, "{}").into_response();
            r.headers_mut().insert(
                "payment-response",
                HeaderValue::from_str(
                    &SettleResponse::failure(reason, "eip155:84532").encode_header(),
                )
                .unwrap(),
            );
            r
        }
    }
}

struct TestServer {
    addr: SocketAddr,
    state: Shared,
}

impl TestServer {
    async fn start(challenge: Challenge, script: Vec<Answer>) -> TestServer {
        let state = Arc::new(Mutex::new(ServerState {
            challenge,
            script: script.into(),
            received: Vec::new(),
            bodies: Vec::new(),
            verified: 0,
            failures: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/paid", any(paid))
            .route("/free", any(|| async { "free content" }))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestServer { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<String> {
        self.state.lock().unwrap().received.clone()
    }

    fn verified(&self) -> usize {
        self.state.lock().unwrap().verified
    }

    fn failures(&self) -> Vec<String> {
        self.state.lock().unwrap().failures.clone()
    }
}

fn signer() -> Arc<LocalSigner> {
    Arc::new(LocalSigner::random())
}

fn client(signer: Arc<LocalSigner>) -> X402Client {
    X402Client::builder(signer)
        .resend_delay(Duration::from_millis(50))
        .build()
}

fn decode_v2(value: &str) -> PaymentPayloadV2 {
    PaymentPayloadV2::decode_header(value).unwrap()
}

#[tokio::test]
async fn v2_pays_once_with_a_verbatim_echo_and_returns_the_receipt() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            10_000,
        )])),
        vec![],
    )
    .await;
    let s = signer();
    let client = client(Arc::clone(&s));
    let before = now();
    let paid = client.get(server.url("/paid")).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    let receipt = paid.receipt.clone().expect("a receipt");
    assert_eq!(paid.into_response().text().await.unwrap(), "paid content");
    assert_eq!(server.verified(), 1, "failures: {:?}", server.failures());
    let received = server.received();
    assert_eq!(received.len(), 1);
    let payment = decode_v2(&received[0]);
    let auth = &payment.payload.authorization;
    // validAfter = 0 (v2 reference clients), validBefore = now + maxTimeoutSeconds.
    assert_eq!(auth.valid_after.to_string(), "0");
    let vb: u64 = auth.valid_before.to_string().parse().unwrap();
    assert!((before + 60..=now() + 60).contains(&vb), "{vb}");
    assert_eq!(auth.from, s.address());
    assert_eq!(auth.to, PAY_TO.parse::<EvmAddress>().unwrap());
    assert_eq!(auth.value, TokenAmount::from_u64(10_000));
    // The receipt.
    assert!(receipt.settled());
    assert_eq!(receipt.transaction(), Some(auth.nonce.to_string().as_str()));
    assert_eq!(receipt.payment.amount, TokenAmount::from_u64(10_000));
    assert_eq!(receipt.payment.nonce, auth.nonce);
    assert_eq!(receipt.payment.payer, s.address());
    assert_eq!(receipt.payment.x402_version, 2);
    assert_eq!(receipt.attempts, 1);
    assert_eq!(receipt.origin, format!("http://{}", server.addr));
    // A second call pays again with a fresh nonce (x402 has no token reuse).
    let again = client.get(server.url("/paid")).await.unwrap();
    let nonce2 = again.receipt.unwrap().payment.nonce;
    assert_ne!(nonce2, auth.nonce);
    assert_eq!(server.verified(), 2);
}

#[tokio::test]
async fn v1_pays_with_x_payment() {
    let server = TestServer::start(Challenge::V1(offer_v1(25_000)), vec![]).await;
    let client = client(signer());
    let before = now();
    let paid = client.get(server.url("/paid")).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(server.verified(), 1, "failures: {:?}", server.failures());
    let receipt = paid.receipt.unwrap();
    assert_eq!(receipt.payment.x402_version, 1);
    assert_eq!(receipt.payment.network, "base-sepolia");
    assert_eq!(receipt.payment.chain_id, 84532);
    assert!(receipt.settled());
    let payment: PaymentPayloadV1 = PaymentPayloadV1::decode_header(&server.received()[0]).unwrap();
    let va: u64 = payment
        .payload
        .authorization
        .valid_after
        .to_string()
        .parse()
        .unwrap();
    assert!(
        (before - 600..=now() - 600).contains(&va),
        "validAfter = now - 600"
    );
    assert_eq!(payment.network, "base-sepolia");
}

#[tokio::test]
async fn free_endpoints_pass_through_and_bodies_are_replayed() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement("eip155:84532", SEPOLIA_USDC, 1)])),
        vec![],
    )
    .await;
    let client = client(signer());
    let free = client.get(server.url("/free")).await.unwrap();
    assert!(free.receipt.is_none());
    assert_eq!(free.into_response().text().await.unwrap(), "free content");

    let rb = client
        .request(reqwest::Method::POST, server.url("/paid"))
        .body("the body");
    let paid = client.send(rb).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    let bodies = server.state.lock().unwrap().bodies.clone();
    assert_eq!(bodies, vec![b"the body".to_vec(), b"the body".to_vec()]);

    // A streaming body cannot be replayed: refused before signing.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from("x"))]);
    let rb = client
        .request(reqwest::Method::POST, server.url("/paid"))
        .body(reqwest::Body::wrap_stream(stream));
    let e = client.send(rb).await.unwrap_err();
    assert_eq!(e.reason(), "body_not_cloneable");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn selection_policies_pick_the_expected_requirement() {
    let offers = offer_v2(vec![
        requirement("eip155:8453", BASE_USDC, 9_000),
        requirement("eip155:84532", SEPOLIA_USDC, 3_000),
        requirement("eip155:8453", BASE_USDC, 5_000),
    ]);
    let server = TestServer::start(Challenge::V2(offers), vec![]).await;
    let cases = [
        (Selection::FirstMatch, "eip155:8453", 9_000),
        (Selection::Cheapest, "eip155:84532", 3_000),
        (
            Selection::PreferNetworks(vec!["base-sepolia".into()]),
            "eip155:84532",
            3_000,
        ),
        (
            Selection::PreferNetworks(vec!["eip155:1".into()]),
            "eip155:8453",
            9_000,
        ),
    ];
    for (i, (selection, network, amount)) in cases.into_iter().enumerate() {
        let client = X402Client::builder(signer())
            .selection(selection.clone())
            .build();
        let paid = client.get(server.url("/paid")).await.unwrap();
        assert_eq!(paid.status(), StatusCode::OK, "{selection:?}");
        let p = decode_v2(&server.received()[i]);
        assert_eq!(p.accepted.network, network, "{selection:?}");
        assert_eq!(
            p.accepted.amount,
            TokenAmount::from_u64(amount),
            "{selection:?}"
        );
    }
    // Allowed networks restrict; caps skip the dear offers.
    let client = X402Client::builder(signer())
        .allow_networks(["eip155:8453"])
        .selection(Selection::Cheapest)
        .build();
    client.get(server.url("/paid")).await.unwrap();
    let p = decode_v2(server.received().last().unwrap());
    assert_eq!(
        (p.accepted.network.as_str(), p.accepted.amount),
        ("eip155:8453", TokenAmount::from_u64(5_000))
    );
    let client = X402Client::builder(signer())
        .allow_asset(
            "eip155:8453",
            BASE_USDC.parse().unwrap(),
            TokenAmount::from_u64(6_000),
        )
        .build();
    client.get(server.url("/paid")).await.unwrap();
    let p = decode_v2(server.received().last().unwrap());
    assert_eq!(
        p.accepted.amount,
        TokenAmount::from_u64(3_000),
        "first acceptable under the caps"
    );
    assert_eq!(server.verified(), 6, "failures: {:?}", server.failures());
}

#[tokio::test]
async fn caps_and_allow_lists_refuse_before_signing() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            2_000_000,
        )])),
        vec![],
    )
    .await;
    // Default cap: 1 USDC.
    let e = client(signer()).get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.reason(), "price_above_max");
    assert!(!e.may_have_paid());
    match &e {
        X402Error::PriceAboveMax { amount, max, .. } => {
            assert_eq!(*amount, TokenAmount::from_u64(2_000_000));
            assert_eq!(*max, TokenAmount::from_u64(1_000_000));
        }
        other => panic!("{other:?}"),
    }
    // Explicit lower cap.
    let c = X402Client::builder(signer())
        .allow_asset(
            "eip155:84532",
            SEPOLIA_USDC.parse().unwrap(),
            TokenAmount::from_u64(100),
        )
        .build();
    assert_eq!(
        c.get(server.url("/paid")).await.unwrap_err().reason(),
        "price_above_max"
    );
    // Unknown asset: refused by default.
    let unknown = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            UNKNOWN_TOKEN,
            1,
        )])),
        vec![],
    )
    .await;
    assert_eq!(
        client(signer())
            .get(unknown.url("/paid"))
            .await
            .unwrap_err()
            .reason(),
        "asset_not_allowed"
    );
    // Known asset after dropping the defaults.
    let cheap = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            10,
        )])),
        vec![],
    )
    .await;
    let c = X402Client::builder(signer())
        .without_default_assets()
        .build();
    assert_eq!(
        c.get(cheap.url("/paid")).await.unwrap_err().reason(),
        "asset_not_allowed"
    );
    // Network and recipient allow-lists.
    let c = X402Client::builder(signer())
        .allow_networks(["base"])
        .build();
    assert_eq!(
        c.get(cheap.url("/paid")).await.unwrap_err().reason(),
        "network_not_allowed"
    );
    let c = X402Client::builder(signer())
        .allow_pay_to([EvmAddress::default()])
        .build();
    assert_eq!(
        c.get(cheap.url("/paid")).await.unwrap_err().reason(),
        "pay_to_not_allowed"
    );
    // Budget: two payments of 10 fit in 25, the third does not.
    let usdc: EvmAddress = SEPOLIA_USDC.parse().unwrap();
    let c = X402Client::builder(signer())
        .budget("base-sepolia", usdc, TokenAmount::from_u64(25))
        .build();
    c.get(cheap.url("/paid")).await.unwrap();
    c.get(cheap.url("/paid")).await.unwrap();
    assert_eq!(
        c.budget_remaining("eip155:84532", usdc),
        Some(TokenAmount::from_u64(5))
    );
    let e = c.get(cheap.url("/paid")).await.unwrap_err();
    assert_eq!(e.reason(), "budget_exhausted");
    assert_eq!(cheap.received().len(), 2);
    // Nothing was ever sent to the refusing servers.
    assert!(server.received().is_empty());
    assert!(unknown.received().is_empty());
}

#[tokio::test]
async fn unsupported_requirements_are_listed() {
    let mut permit2 = requirement("eip155:84532", SEPOLIA_USDC, 1);
    permit2["extra"]["assetTransferMethod"] = json!("permit2");
    let mut upto = requirement("eip155:84532", SEPOLIA_USDC, 1);
    upto["scheme"] = json!("upto");
    let mut no_domain = requirement("eip155:84532", SEPOLIA_USDC, 1);
    no_domain["extra"] = json!({});
    let solana = json!({"scheme":"exact","network":"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp","amount":"1","asset":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v","payTo":"x","maxTimeoutSeconds":60});
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![permit2, upto, no_domain, solana])),
        vec![],
    )
    .await;
    let e = client(signer()).get(server.url("/paid")).await.unwrap_err();
    match &e {
        X402Error::NoAcceptableRequirement { offered, refused } => {
            assert_eq!(*offered, 4);
            assert_eq!(refused.len(), 4, "{refused:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.reason(), "no_acceptable_requirement");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn pending_answers_resend_the_same_payment() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            500,
        )])),
        vec![Answer::Pending, Answer::Pending],
    )
    .await;
    let paid = client(signer()).get(server.url("/paid")).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    let receipt = paid.receipt.unwrap();
    assert_eq!(receipt.attempts, 3);
    let received = server.received();
    assert_eq!(received.len(), 3);
    assert!(
        received.iter().all(|r| *r == received[0]),
        "byte-identical payment every time"
    );
    assert_eq!(server.verified(), 1);
}

#[tokio::test]
async fn pending_until_the_end_then_resend_by_hand() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            500,
        )])),
        vec![Answer::Pending, Answer::Pending],
    )
    .await;
    let client = X402Client::builder(signer())
        .max_resends(1)
        .resend_delay(Duration::from_millis(10))
        .build();
    let e = client.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.reason(), "settlement_pending");
    assert!(e.may_have_paid());
    let signed = e.signed_payment().unwrap().clone();
    let nonce = e.payment().unwrap().nonce;
    // Later: the same payment again, never a new one.
    let request = client.http().get(server.url("/paid")).build().unwrap();
    let paid = client.resend(request, &signed).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(paid.receipt.unwrap().payment.nonce, nonce);
    let received = server.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| *r == received[0]));
}

#[tokio::test]
async fn a_timed_out_paid_request_is_resent_unchanged() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            500,
        )])),
        vec![Answer::Slow(Duration::from_millis(4000))],
    )
    .await;
    // The timeout leaves the resend ample time on a loaded machine.
    let client = X402Client::builder(signer())
        .timeout(Duration::from_millis(2000))
        .resend_delay(Duration::from_millis(10))
        .build();
    let paid = client.get(server.url("/paid")).await.unwrap();
    assert_eq!(paid.receipt.as_ref().unwrap().attempts, 2);
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0], received[1]);
}

/// Fault injection: a TCP proxy in front of the test server that drops,
/// without answering, the first `drops` connections carrying a payment.
async fn dropping_proxy(backend: SocketAddr, drops: usize) -> (SocketAddr, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(Mutex::new(0usize));
    let counter = Arc::clone(&dropped);
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match inbound.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                if head.contains("payment-signature:") {
                    let mut c = counter.lock().unwrap();
                    if *c < drops {
                        *c += 1;
                        return; // drop the connection, no answer
                    }
                }
                let Ok(mut outbound) = TcpStream::connect(backend).await else {
                    return;
                };
                if outbound.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr, dropped)
}

#[tokio::test]
async fn a_dropped_connection_resends_the_same_payment() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            500,
        )])),
        vec![],
    )
    .await;
    let (proxy, dropped) = dropping_proxy(server.addr, 2).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let client = X402Client::builder(signer())
        .http(http.clone())
        .resend_delay(Duration::from_millis(10))
        .build();
    let paid = client.get(format!("http://{proxy}/paid")).await.unwrap();
    assert_eq!(*dropped.lock().unwrap(), 2);
    let receipt = paid.receipt.unwrap();
    assert_eq!(receipt.attempts, 3);
    assert_eq!(server.received().len(), 1);
    assert_eq!(server.verified(), 1);

    // Every resend dropped: retry_failed, with the payment to track.
    let (proxy, _) = dropping_proxy(server.addr, usize::MAX).await;
    let client = X402Client::builder(signer())
        .http(http)
        .max_resends(2)
        .resend_delay(Duration::from_millis(10))
        .build();
    let e = client
        .get(format!("http://{proxy}/paid"))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "retry_failed");
    assert!(e.may_have_paid());
    match &e {
        X402Error::RetryFailed { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.received().len(),
        1,
        "the dropped copies never reached the server"
    );
}

#[tokio::test]
async fn rejections_and_failed_settlements_are_typed_and_never_paid_twice() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            500,
        )])),
        vec![
            Answer::Reject("invalid_exact_evm_insufficient_balance"),
            Answer::SettleFail("insufficient_funds"),
        ],
    )
    .await;
    let client = client(signer());
    let e = client.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.reason(), "payment_rejected");
    assert_eq!(
        e.server_reason(),
        Some("invalid_exact_evm_insufficient_balance")
    );
    assert!(!e.may_have_paid());
    assert!(e.payment().is_some());
    assert_eq!(server.received().len(), 1, "no second payment after a 402");
    let e = client.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.reason(), "settlement_failed");
    assert_eq!(e.server_reason(), Some("insufficient_funds"));
    assert_eq!(server.received().len(), 2);

    // v1: the rejection reason comes from the JSON body's `error`.
    let v1 = TestServer::start(
        Challenge::V1(offer_v1(1)),
        vec![Answer::Reject("invalid_exact_evm_signature")],
    )
    .await;
    let e = client.get(v1.url("/paid")).await.unwrap_err();
    assert_eq!(e.server_reason(), Some("invalid_exact_evm_signature"));
    assert_eq!(v1.received().len(), 1);
}

/// Fault injection: a signer that claims one address and signs with another key.
struct LyingSigner {
    claimed: EvmAddress,
    real: LocalSigner,
}

#[async_trait::async_trait]
impl PaymentSigner for LyingSigner {
    fn address(&self) -> EvmAddress {
        self.claimed
    }
    async fn sign_digest(
        &self,
        digest: &alloy::primitives::B256,
    ) -> Result<EvmSignature, SignerError> {
        self.real.sign_digest_sync(digest)
    }
}

#[tokio::test]
async fn a_bad_signature_never_leaves_the_process() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            500,
        )])),
        vec![],
    )
    .await;
    let liar = Arc::new(LyingSigner {
        claimed: LocalSigner::random().address(),
        real: LocalSigner::random(),
    });
    let usdc: EvmAddress = SEPOLIA_USDC.parse().unwrap();
    let client = X402Client::builder(liar)
        .budget("eip155:84532", usdc, TokenAmount::from_u64(1_000))
        .build();
    let e = client.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.reason(), "signing_failed");
    assert!(server.received().is_empty());
    assert_eq!(
        client.budget_remaining("eip155:84532", usdc),
        Some(TokenAmount::from_u64(1_000)),
        "budget given back"
    );

    // A requirement whose timeout is below the verifier's 6 s margin.
    let mut short = requirement("eip155:84532", SEPOLIA_USDC, 500);
    short["maxTimeoutSeconds"] = json!(3);
    let server = TestServer::start(Challenge::V2(offer_v2(vec![short])), vec![]).await;
    let e = X402Client::builder(signer())
        .build()
        .get(server.url("/paid"))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "invalid_requirement");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn hostile_402s_are_typed_errors() {
    let b64 = |v: &Value| pay402_core::x402::header::encode(v);
    let mut missing_amount = requirement("eip155:84532", SEPOLIA_USDC, 1);
    missing_amount.as_object_mut().unwrap().remove("amount");
    let mut float_amount = requirement("eip155:84532", SEPOLIA_USDC, 1);
    float_amount["amount"] = json!("0.01");
    let many: Vec<Value> = (0..70).map(|_| json!({})).collect();
    let huge_header = "A".repeat(20 * 1024);
    let cases: Vec<(Challenge, &str)> = vec![
        (
            Challenge::RawHeaders(vec!["!!!not base64!!!".into()]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![huge_header]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![b64(&json!({"x402Version": 2}))]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![b64(&json!({"x402Version": 3, "accepts": []}))]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![b64(&offer_v2(vec![missing_amount]))]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![b64(&offer_v2(vec![float_amount]))]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![b64(
                &json!({"x402Version": 2, "resource": {"url": "u"}, "accepts": many}),
            )]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![b64(&json!([1, 2, 3]))]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![b64(&offer_v2(vec![])), b64(&offer_v2(vec![]))]),
            "invalid_payment_required",
        ),
        (
            Challenge::RawHeaders(vec![b64(&offer_v2(vec![]))]),
            "no_acceptable_requirement",
        ),
        (
            Challenge::RawBody(b"<html>pay me</html>".to_vec()),
            "no_x402_offer",
        ),
        (Challenge::RawBody(Vec::new()), "no_x402_offer"),
        (
            Challenge::RawBody(br#"{"x402Version":1,"accepts":[{"scheme":"exact"}]}"#.to_vec()),
            "invalid_payment_required",
        ),
        (
            Challenge::RawBody(vec![b' '; 200 * 1024]),
            "invalid_payment_required",
        ),
        (Challenge::RawBody(vec![0xff; 1000]), "no_x402_offer"),
    ];
    for (i, (challenge, reason)) in cases.into_iter().enumerate() {
        let server = TestServer::start(challenge, vec![]).await;
        let e = client(signer()).get(server.url("/paid")).await.unwrap_err();
        assert_eq!(e.reason(), reason, "case {i}: {e}");
        assert!(!e.may_have_paid());
        assert!(server.received().is_empty(), "case {i}");
    }
}

#[test]
fn the_signer_never_shows_its_key() {
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let s = LocalSigner::from_hex(key).unwrap();
    assert_eq!(
        s.address().to_string(),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    );
    let debug = format!("{s:?}");
    assert!(!debug.contains("59c6995e"), "{debug}");
    let client = X402Client::builder(Arc::new(s)).build();
    assert!(!format!("{client:?}").contains("59c6995e"));
    let _ = Extra::default();
}

/// A server on another origin (another port) that redirects `/paid` to `to`.
async fn redirector(to: String) -> String {
    let app = axum::Router::new().route(
        "/paid",
        any(move || {
            let to = to.clone();
            async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, to)],
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/paid")
}

#[tokio::test]
async fn a_402_from_another_origin_is_never_paid() {
    let server = TestServer::start(
        Challenge::V2(offer_v2(vec![requirement(
            "eip155:84532",
            SEPOLIA_USDC,
            10_000,
        )])),
        vec![],
    )
    .await;
    let entry = redirector(server.url("/paid")).await;

    // The default client follows redirects only within the origin: the
    // redirect comes back as the answer and the other origin is never asked.
    let paid = client(signer()).get(&entry).await.unwrap();
    assert_eq!(paid.status(), StatusCode::TEMPORARY_REDIRECT);
    assert!(paid.receipt.is_none());
    assert!(
        server.state.lock().unwrap().bodies.is_empty(),
        "not followed"
    );

    // With an own reqwest client that follows every redirect, the 402
    // arrives from the other origin: refused before signing.
    let follows_all = X402Client::builder(signer())
        .http(reqwest::Client::new())
        .build();
    let e = follows_all.get(&entry).await.unwrap_err();
    assert_eq!(e.reason(), "cross_origin_challenge", "{e}");
    assert!(!e.may_have_paid());
    assert!(server.received().is_empty(), "nothing signed or sent");
}
