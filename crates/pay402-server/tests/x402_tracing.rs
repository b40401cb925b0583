//! Tracing of the x402 request path: every step has its span, the outcome is
//! recorded, and no signature reaches the logs.
//!
//! Its own test binary with a global subscriber: tracing caches callsite
//! interest process-wide, and with a thread-scoped subscriber another test
//! reaching a callsite first from a thread without one would switch it off
//! for good.
#![cfg(feature = "x402")]

mod x402_support;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use pay402_core::x402::{ExactEvmPayload, HeaderValue, PaymentPayloadV2, TokenAmount};
use pay402_server::x402::store::MemoryPaymentStore;
use pay402_server::x402::{X402Config, X402Layer, X402Payment, X402Route, exact_offer};
use x402_support::*;

const NETWORK: &str = "eip155:84532";

#[tokio::test]
async fn the_request_path_is_traced_without_signatures() {
    let captured = pay402_testkit::logs::capture_global(tracing::Level::DEBUG);

    let offer = exact_offer(
        NETWORK,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        TokenAmount::from_u64(10_000),
        "USDC",
        "2",
    );
    let layer = X402Layer::new(
        X402Config::new(),
        Arc::new(FaultInjectingFacilitator::new(NETWORK)),
        Arc::new(MemoryPaymentStore::new()),
    );
    let app: Router = Router::new().route(
        "/paid",
        get(|p: X402Payment| async move { format!("paid by {}", p.payer) })
            .route_layer(layer.with_route(X402Route::new([offer.clone()]).unwrap())),
    );
    let header = pay_v2(&Payer::dev(1), &offer, None);
    let r = send(&app, req("/paid", &[("payment-signature", &header)])).await;
    assert_eq!(r.status, StatusCode::OK);

    let log = captured.text();
    for needle in [
        "x402.request",
        "x402.verify",
        "x402.reserve",
        "x402.facilitator_verify",
        "x402.handler",
        "x402.settle",
        "outcome=\"paid\"",
    ] {
        assert!(log.contains(needle), "missing {needle} in:\n{log}");
    }
    let sig = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&header)
        .unwrap()
        .payload
        .signature
        .to_string();
    assert!(!log.contains(&sig[2..20]), "signature logged:\n{log}");
    assert!(!log.contains(&header[..40]), "header logged:\n{log}");
}
