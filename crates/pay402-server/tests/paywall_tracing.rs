//! Tracing of the paywall: one `paywall.request` span per request naming the
//! rail and the outcome, the rails' own spans and events inside it, and no
//! secret (macaroon, preimage) in any of it. Its own test binary, so that the
//! global subscriber sees every callsite.

mod common;

use std::sync::Arc;

use common::{get_req, pay, send};
use http::StatusCode;
use pay402_backends::simnet::SimNet;
use pay402_core::lightning::Network;
use pay402_core::money::Msat;
use pay402_server::paywall::{Paywall, PaywallPrice};
use pay402_server::store::MemoryStore;

#[tokio::test]
async fn the_paywall_span_names_rail_and_outcome_without_secrets() {
    let captured = pay402_testkit::logs::capture_global(tracing::Level::TRACE);
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let paywall = Paywall::builder()
        .l402(Arc::new(merchant), Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let app = axum::Router::new().route(
        "/paid",
        axum::routing::get(|| async { "paid" }).route_layer(paywall.price(PaywallPrice::sats(10))),
    );
    let r = send(&app, get_req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    let auth = pay(&payer, &r).await;
    for _ in 0..2 {
        // The full path, then the fast path.
        assert_eq!(
            send(&app, get_req("/paid", &[&auth])).await.status,
            StatusCode::OK
        );
    }
    let (mac, pre) = auth
        .strip_prefix("L402 ")
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    let bad = format!("L402 {mac}:{}", "ab".repeat(32));
    let r = send(&app, get_req("/paid", &[&bad])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);

    let logs = captured.text();
    assert!(logs.contains("paywall.request"), "{logs}");
    assert!(
        logs.contains("rail=\"l402\"") || logs.contains("rail=l402"),
        "{logs}"
    );
    assert!(logs.contains("l402.mint"), "{logs}");
    assert!(logs.contains("l402.verify"), "{logs}");
    assert!(logs.contains("preimage_mismatch"), "{logs}");
    assert!(!logs.contains(&mac[..40]), "macaroon leaked into logs");
    assert!(!logs.contains(pre), "preimage leaked into logs");
}
