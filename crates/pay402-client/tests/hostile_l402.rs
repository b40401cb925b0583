//! Hostile-server battery for [`L402Client`]: the servers in
//! `hostile_support::l402` charge through a simnet merchant node and the
//! client pays through a simnet payer node (pay402-backends' in-process
//! Lightning network with real signed BOLT11 invoices). Each server accepts
//! the paid credential (the invoice is settled) and then misbehaves in one
//! way. In every case the payer node sends at most one payment, the client
//! never pays a second invoice for the call, any later request carries the
//! identical credential (same preimage), and the outcome is typed.
//!
//! The x402 cases about a server's settlement report (`success: false` with
//! a mined transaction, a settlement for another amount) have no L402
//! counterpart: the client's own node settles the invoice and its preimage
//! is checked against the invoice's payment hash before anything is sent.

mod hostile_support;

use std::sync::Arc;
use std::time::Duration;

use hostile_support::l402::{HostileL402, Misbehaviour};
use pay402_backends::simnet::{FeePolicy, SimNet, SimNode};
use pay402_client::{L402Client, same_origin_redirects};
use pay402_core::lightning::Network;
use pay402_core::money::Msat;
use pay402_core::problem::Reason;
use reqwest::StatusCode;

const PRICE: Msat = Msat(100_000);
const START: Msat = Msat(10_000_000_000);
const FEE: Msat = Msat(1_000);

struct World {
    _net: SimNet,
    merchant: SimNode,
    payer: SimNode,
    server: HostileL402,
    client: L402Client,
}

/// A merchant, a funded payer, the hostile server and a client whose cap
/// (five times the price) would allow a raised price.
async fn world(mode: Misbehaviour) -> World {
    let net = SimNet::new(Network::Regtest);
    net.set_fee(FeePolicy { base: FEE, ppm: 0 });
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", START);
    let server = HostileL402::start(Arc::new(merchant.clone()), PRICE, mode).await;
    let http = reqwest::Client::builder()
        .redirect(same_origin_redirects())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let client = L402Client::builder(Arc::new(payer.clone()))
        .network(Network::Regtest)
        .max_price(Msat(5 * PRICE.0))
        .http(http)
        .build();
    World {
        _net: net,
        merchant,
        payer,
        server,
        client,
    }
}

/// Exactly one payment left the payer node, of the price plus its fee.
fn assert_paid_once(w: &World) {
    assert_eq!(
        w.payer.payments_sent(),
        1,
        "payments sent by the payer node"
    );
    assert_eq!(w.payer.balance(), Msat(START.0 - PRICE.0 - FEE.0));
    assert_eq!(w.merchant.balance(), PRICE);
}

/// Every paid credential the server saw is the same one (same macaroon,
/// same preimage), `n` times.
fn assert_one_credential(w: &World, n: usize) {
    let seen = w.server.paid_credentials();
    assert_eq!(seen.len(), n, "paid credentials presented");
    assert!(
        seen.iter().all(|c| *c == seen[0]),
        "the identical credential"
    );
}

/// After the hostile answer, an honest answer to the same client: it reuses
/// the token it paid for, and pays nothing more.
async fn reuses_the_paid_token(w: &World) {
    w.server.set_mode(Misbehaviour::Honest);
    let again = w.client.get(&w.server.url).await.expect("served");
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.reused_token);
    assert!(again.receipt.is_none());
}

#[tokio::test]
async fn a_500_after_settling_is_a_typed_error_and_the_token_is_kept() {
    let w = world(Misbehaviour::ServerErrorAfterSettling).await;
    let e = w
        .client
        .get(&w.server.url)
        .await
        .expect_err("a 500 to the paid request is not a success");
    assert_eq!(e.reason(), "server_error_after_payment", "{e}");
    assert!(e.may_have_paid());
    assert_eq!(e.receipt().expect("the receipt").amount, PRICE);
    assert_eq!(w.client.cached_tokens(), 1, "paid for: kept");
    reuses_the_paid_token(&w).await;
    assert_paid_once(&w);
    assert_one_credential(&w, 2);
}

#[tokio::test]
async fn a_timeout_after_settling_keeps_the_token_for_a_free_retry() {
    let w = world(Misbehaviour::HangAfterSettling).await;
    let e = w
        .client
        .get(&w.server.url)
        .await
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert!(e.may_have_paid());
    assert!(e.receipt().is_some());
    assert_eq!(w.client.cached_tokens(), 1);
    reuses_the_paid_token(&w).await;
    assert_paid_once(&w);
    assert_one_credential(&w, 2);
}

#[tokio::test]
async fn a_402_again_after_settling_is_never_paid_twice() {
    let w = world(Misbehaviour::AskAgainAfterSettling).await;
    let e = w
        .client
        .get(&w.server.url)
        .await
        .expect_err("a fresh challenge after payment is not a success");
    assert_eq!(e.reason(), "still_unpaid", "{e}");
    assert!(e.may_have_paid());
    assert_eq!(e.receipt().expect("the receipt").amount, PRICE);
    assert_paid_once(&w);
    assert_one_credential(&w, 1);
}

#[tokio::test]
async fn a_price_raised_on_the_retry_is_never_paid() {
    let w = world(Misbehaviour::RaisePriceOnRetry).await;
    let e = w
        .client
        .get(&w.server.url)
        .await
        .expect_err("a dearer challenge after payment is not a success");
    assert_eq!(e.reason(), "still_unpaid", "{e}");
    assert!(e.may_have_paid());
    assert_eq!(e.receipt().expect("the receipt").amount, PRICE);
    // The dearer invoice (within the client's cap) was not paid.
    assert_paid_once(&w);
    assert_one_credential(&w, 1);
}

#[tokio::test]
async fn a_connection_dropped_before_answering_keeps_the_token_for_a_free_retry() {
    let w = world(Misbehaviour::DropBeforeAnswering).await;
    let e = w
        .client
        .get(&w.server.url)
        .await
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert!(e.may_have_paid());
    assert!(e.receipt().is_some());
    assert_eq!(w.client.cached_tokens(), 1);
    reuses_the_paid_token(&w).await;
    assert_paid_once(&w);
    assert_one_credential(&w, 2);
}

#[tokio::test]
async fn a_connection_dropped_mid_response_is_typed_and_keeps_the_token() {
    let w = world(Misbehaviour::DropMidResponse).await;
    let paid = w
        .client
        .get(&w.server.url)
        .await
        .expect("the status and headers arrived");
    assert_eq!(paid.status(), StatusCode::OK);
    let e = paid.bytes().await.expect_err("the body was cut short");
    assert_eq!(e.reason(), "body_interrupted", "{e}");
    assert!(e.may_have_paid(), "{e}");
    assert_eq!(e.receipt().expect("the receipt").amount, PRICE);
    assert_eq!(w.client.cached_tokens(), 1);
    reuses_the_paid_token(&w).await;
    assert_paid_once(&w);
    assert_one_credential(&w, 2);
}
