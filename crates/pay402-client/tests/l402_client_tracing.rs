//! Tracing of the L402 client: spans for the request and the payment, the
//! amount recorded, and never a macaroon or a preimage.
//!
//! Its own test binary with a global subscriber: tracing caches callsite
//! interest process-wide, and with a thread-scoped subscriber another test
//! reaching a callsite first from a thread without one would switch it off
//! for good.

mod common;

use std::sync::Arc;

use common::TestServer;
use pay402_backends::simnet::{FeePolicy, SimNet};
use pay402_client::L402Client;
use pay402_core::lightning::Network;
use pay402_core::money::Msat;

const PRICE: Msat = Msat(100_000);

#[tokio::test]
async fn traces_have_spans_but_never_secrets() {
    let captured = pay402_testkit::logs::capture_global(tracing::Level::TRACE);

    let net = SimNet::new(Network::Regtest);
    net.set_fee(FeePolicy {
        base: Msat(1_000),
        ppm: 0,
    });
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(10_000_000_000));
    let srv = TestServer::start(Arc::new(merchant), PRICE).await;
    let client = L402Client::builder(Arc::new(payer))
        .network(Network::Regtest)
        .max_price(Msat(200_000))
        .max_fee(Msat(10_000))
        .build();
    client.get(srv.url("/hello")).await.unwrap();
    srv.revoke_all();
    client.get(srv.url("/hello")).await.unwrap();
    client.get(srv.url("/hello")).await.unwrap();

    let text = captured.text();
    assert!(text.contains("l402.request"), "{text}");
    assert!(text.contains("l402.pay"), "{text}");
    assert!(text.contains(&format!("amount_msat={}", PRICE.0)), "{text}");
    let seen = srv.seen();
    assert!(seen.iter().any(|s| !s.authorization.is_empty()));
    for s in seen {
        for auth in s.authorization {
            let (scheme_mac, preimage) = auth.rsplit_once(':').unwrap();
            let mac = scheme_mac.trim_start_matches("L402 ");
            assert!(!text.contains(preimage), "preimage logged");
            assert!(!text.contains(mac), "macaroon logged");
        }
    }
    assert!(!format!("{client:?}").contains("L402 "));
}
