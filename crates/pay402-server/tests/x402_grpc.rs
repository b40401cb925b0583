//! gRPC answers behind the x402 layer: with settle-after the buffered
//! response keeps its trailers (`grpc-status`, `grpc-message`) and sends
//! them after the data once settled; a gRPC error (HTTP 200 with a non-zero
//! `grpc-status`, in the trailers or in the headers of a trailers-only
//! answer) is passed on without being charged and the same payment stays
//! usable; trailers count against the buffer's bound; settle-before keeps
//! the trailers of the response it caches for a payment identifier.
//!
//! Payments are really signed and verified by the layer; the facilitator is
//! the `FaultInjectingFacilitator` test double (see `x402_layer.rs`); the
//! same paths through the proxy on anvil are in `pay402-cli`'s `grpc.rs`.
#![cfg(feature = "x402")]

mod x402_support;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use pay402_core::x402::HeaderValue as _;
use pay402_core::x402::{PaymentRequirements, TokenAmount};
use pay402_server::x402::store::{MemoryPaymentStore, PaymentState, PaymentStore};
use pay402_server::x402::{SettleTiming, X402Config, X402Layer, X402Route, exact_offer};
use tower::ServiceExt;
use x402_support::*;

const NETWORK: &str = "eip155:84532";
const ASSET: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

fn offer() -> PaymentRequirements {
    exact_offer(
        NETWORK,
        ASSET,
        PAY_TO,
        TokenAmount::from_u64(10_000),
        "USDC",
        "2",
    )
}

/// A gRPC message frame (uncompressed, length-prefixed).
fn frame(message: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

fn grpc_status(status: &'static str, message: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static(status));
    t.insert("grpc-message", HeaderValue::from_static(message));
    t
}

/// A gRPC answer: `data`, then `trailers`.
fn grpc_answer(data: Bytes, trailers: HeaderMap) -> Response {
    let body = Body::from(data).with_trailers(async move { Some(Ok(trailers)) });
    Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(body))
        .unwrap()
}

/// The services of a gRPC server: `Ok` answers two messages and status 0;
/// `Fail` one message then status 13 in the trailers; `Unavailable` a
/// trailers-only answer (status 14 in the headers, no body).
fn app(layer: &X402Layer) -> Router {
    let paid = || layer.with_route(X402Route::new([offer()]).unwrap());
    Router::new()
        .route(
            "/demo.Paid/Ok",
            post(|| async {
                let mut data = frame(b"first").to_vec();
                data.extend_from_slice(&frame(b"second"));
                grpc_answer(data.into(), grpc_status("0", "done"))
            })
            .route_layer(paid()),
        )
        .route(
            "/demo.Paid/Fail",
            post(|| async { grpc_answer(frame(b"partial"), grpc_status("13", "broke")) })
                .route_layer(paid()),
        )
        .route(
            "/demo.Paid/Unavailable",
            post(|| async {
                Response::builder()
                    .header("content-type", "application/grpc+proto")
                    .header("grpc-status", "14")
                    .header("grpc-message", "try later")
                    .body(Body::empty())
                    .unwrap()
            })
            .route_layer(paid()),
        )
}

struct Env {
    app: Router,
    facilitator: Arc<FaultInjectingFacilitator>,
    store: Arc<dyn PaymentStore>,
}

fn env(cfg: X402Config) -> Env {
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let store: Arc<dyn PaymentStore> = Arc::new(MemoryPaymentStore::new());
    let layer = X402Layer::new(cfg, facilitator.clone(), store.clone());
    Env {
        app: app(&layer),
        facilitator,
        store,
    }
}

/// A gRPC response read whole, with its trailers.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

async fn call(env: &Env, method: &str, payment: &str) -> Answer {
    let req = Request::post(format!("/demo.Paid/{method}"))
        .header("host", "grpc.test")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("payment-signature", payment)
        .body(Body::from(frame(b"ask")))
        .unwrap();
    let resp = env.app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

fn settled(a: &Answer) -> bool {
    a.headers
        .get("payment-response")
        .and_then(|v| pay402_core::x402::SettleResponse::decode_header(v.to_str().ok()?).ok())
        .is_some_and(|s| s.success && s.transaction.is_some())
}

async fn state_of(env: &Env, header: &str) -> Option<PaymentState> {
    payment_state(env.store.as_ref(), NETWORK, ASSET, header).await
}

/// After a gRPC error: nothing settled, the payment released; the same
/// signed payment then pays for a call that succeeds, once.
async fn released_then_pays_once(env: &Env, header: &str) {
    assert_eq!(env.facilitator.settle_count(), 0);
    assert_eq!(state_of(env, header).await, Some(PaymentState::Released));
    let a = call(env, "Ok", header).await;
    assert!(settled(&a));
    assert_eq!(a.trailers.unwrap()["grpc-status"], "0");
    assert_eq!(env.facilitator.settle_count(), 1);
    let again = call(env, "Ok", header).await;
    assert_eq!(again.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(env.facilitator.settle_count(), 1);
}

#[tokio::test]
async fn settle_after_sends_the_trailers_after_the_data_once_settled() {
    let env = env(X402Config::new());
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let a = call(&env, "Ok", &header).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(settled(&a), "{:?}", a.headers);
    let mut want = frame(b"first").to_vec();
    want.extend_from_slice(&frame(b"second"));
    assert_eq!(a.body, want);
    let trailers = a.trailers.expect("the trailers follow the data");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "done");
    assert_eq!(env.facilitator.settle_count(), 1);
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Settled));
}

#[tokio::test]
async fn a_grpc_error_in_the_trailers_is_passed_on_uncharged_and_the_payment_stays_usable() {
    let env = env(X402Config::new());
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let a = call(&env, "Fail", &header).await;
    assert_eq!(a.status, StatusCode::OK, "gRPC errors are HTTP 200");
    assert!(a.headers.get("payment-response").is_none(), "not settled");
    assert_eq!(a.body, frame(b"partial"), "the error passed on as it is");
    let trailers = a.trailers.expect("the error's trailers");
    assert_eq!(trailers["grpc-status"], "13");
    assert_eq!(trailers["grpc-message"], "broke");
    released_then_pays_once(&env, &header).await;
}

#[tokio::test]
async fn a_trailers_only_grpc_error_is_passed_on_uncharged_and_the_payment_stays_usable() {
    let env = env(X402Config::new());
    let header = pay_v2(&Payer::dev(2), &offer(), None);
    let a = call(&env, "Unavailable", &header).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.get("payment-response").is_none(), "not settled");
    assert_eq!(a.headers["grpc-status"], "14");
    assert_eq!(a.headers["grpc-message"], "try later");
    assert!(a.body.is_empty());
    released_then_pays_once(&env, &header).await;
}

#[tokio::test]
async fn trailers_count_against_the_settle_after_bound() {
    // Two messages (10 + 11 = 21 bytes) fit in 30; with their
    // trailers (grpc-status 0, grpc-message done: 28 bytes) they do not.
    let env = self::env(X402Config::new().max_response_body(30));
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let a = call(&env, "Ok", &header).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    let problem: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(problem["reason"], "response_too_large");
    assert_eq!(env.facilitator.settle_count(), 0);
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Released));
    // Within a bound that holds them too: served with them.
    let env = self::env(X402Config::new().max_response_body(49));
    let a = call(&env, "Ok", &header).await;
    assert!(settled(&a));
    assert_eq!(a.trailers.unwrap()["grpc-message"], "done");
}

#[tokio::test]
async fn settle_before_keeps_the_trailers_of_a_response_it_buffers() {
    // With a payment identifier settle-before buffers the response to keep
    // a copy; the trailers still reach the client, within the bound and
    // past it (streamed).
    for bound in [1 << 20, 8] {
        let env = env(X402Config::new()
            .settle(SettleTiming::BeforeHandler)
            .max_response_body(bound));
        let header = pay_v2(
            &Payer::dev(1),
            &offer(),
            Some("pay_1f0e3dad99908345f7439f8ffabdffc4"),
        );
        let a = call(&env, "Ok", &header).await;
        assert!(settled(&a), "bound {bound}");
        assert_eq!(a.body.len(), 21, "bound {bound}");
        let trailers = a.trailers.expect("trailers");
        assert_eq!(trailers["grpc-status"], "0", "bound {bound}");
        // Settle-before charges first: a gRPC error is charged and passed on.
        let header = pay_v2(&Payer::dev(2), &offer(), None);
        let a = call(&env, "Fail", &header).await;
        assert!(settled(&a));
        assert_eq!(a.trailers.unwrap()["grpc-status"], "13");
    }
}
