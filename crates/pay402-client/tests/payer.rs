//! The `Payer` against real L402 layers paid on simnet (real BOLT11
//! invoices, real preimages): one payment per purchase, tokens reused and
//! kept in the journal, single flight, the 402 of a POST as its quote,
//! budgets, refusals with reasons.

mod payer_support;

use std::sync::Arc;
use std::time::Duration;

use pay402_backends::simnet::{SimNet, SimNode};
use pay402_client::journal::{EntryState, Journal, Query};
use pay402_client::x402::LocalSigner;
use pay402_client::{Choice, Payer, PayerError, TokenScope};
use pay402_core::lightning::Network;
use pay402_core::money::{Msat, Sat};
use pay402_core::offer::Rail;
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use payer_support::{l402_app, serve_merged};

const PRICE_SAT: u64 = 100;

struct World {
    _net: SimNet,
    merchant: SimNode,
    payer: SimNode,
}

fn world() -> World {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(10_000_000));
    World {
        _net: net,
        merchant,
        payer,
    }
}

fn builder(w: &World) -> pay402_client::PayerBuilder {
    Payer::builder()
        .lightning(Arc::new(w.payer.clone()), Network::Regtest)
        .journal(Journal::memory())
}

#[tokio::test]
async fn pays_once_reuses_the_token_and_journals_the_purchase() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    let payer = builder(&w).build().await.unwrap();
    assert_eq!(payer.rails(), vec![Rail::L402]);

    let paid = payer.get(server.url("/paid")).await.unwrap();
    assert_eq!(paid.status(), 200);
    let receipt = paid.receipt.clone().expect("receipt");
    assert_eq!(receipt.rail, Rail::L402);
    assert_eq!(receipt.amount, Amount::Msat(Msat(PRICE_SAT * 1000)));
    assert_eq!(receipt.cost, Some(Amount::Sat(Sat(PRICE_SAT))));
    assert!(!receipt.resumed);
    assert!(paid.text().await.unwrap().starts_with("paid:"));

    // Reused, not paid again; free routes pass through.
    let again = payer.get(server.url("/paid")).await.unwrap();
    assert!(again.reused_credential && again.receipt.is_none());
    assert_eq!(again.status(), 200);
    let free = payer.get(server.url("/free")).await.unwrap();
    assert!(free.receipt.is_none());
    assert_eq!(w.payer.payments_sent(), 1);
    assert_eq!(w.merchant.balance(), Msat(PRICE_SAT * 1000));

    // The journal: what, where, when, how much, proof.
    let entries = payer.journal().payments(&Query::default()).await.unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.state, EntryState::Served);
    assert_eq!(e.status, Some(200));
    assert_eq!(e.rail, Rail::L402);
    assert_eq!(e.key.method, "GET");
    assert_eq!(e.key.target, "/paid");
    assert_eq!(e.amount, "100000 msat");
    assert_eq!(e.cost.as_deref(), Some("100 sat"));
    assert_eq!(e.proof_id.as_deref(), Some(receipt.proof_id.as_str()));
    assert_eq!(e.id, receipt.entry);
    assert!(e.proof.as_deref().is_some_and(|p| p.contains("preimage")));
}

#[tokio::test]
async fn a_restarted_payer_reuses_the_kept_token() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    let journal = Journal::memory();
    let first = builder(&w).journal(journal.clone()).build().await.unwrap();
    first.get(server.url("/paid")).await.unwrap();
    drop(first);
    let second = builder(&w).journal(journal).build().await.unwrap();
    let paid = second.get(server.url("/paid")).await.unwrap();
    assert_eq!(paid.status(), 200);
    assert!(paid.reused_credential && paid.receipt.is_none());
    assert_eq!(w.payer.payments_sent(), 1);
}

#[tokio::test]
async fn concurrent_requests_to_one_origin_pay_once() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    w.payer.set_latency(Duration::from_millis(150));
    let payer = builder(&w).build().await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let payer = payer.clone();
            let url = server.url("/paid");
            tokio::spawn(async move { payer.get(url).await.map(|p| p.status()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    assert_eq!(w.payer.payments_sent(), 1);
    assert_eq!(
        payer
            .journal()
            .payments(&Query::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_post_is_sent_unpaid_once_and_replayed_identically() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    let payer = builder(&w).build().await.unwrap();
    let rb = payer
        .request(reqwest::Method::POST, server.url("/echo"))
        .header("content-type", "text/plain")
        .body("hello, state change");
    let paid = payer.send(rb).await.unwrap();
    assert_eq!(paid.status(), 200);
    assert_eq!(paid.text().await.unwrap(), "hello, state change");
    let posts: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == reqwest::Method::POST)
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(!posts[0].paid && posts[1].paid);
    assert_eq!(posts[0].body, posts[1].body);
    let e = &payer.journal().payments(&Query::default()).await.unwrap()[0];
    assert_eq!(e.key.method, "POST");
    assert_eq!(
        e.key,
        pay402_client::journal::RequestKey::new(
            &server.base,
            "POST",
            "/echo",
            b"hello, state change"
        )
    );
}

#[tokio::test]
async fn max_price_zero_pays_nothing() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    let payer = builder(&w)
        .max_price(Amount::Sat(Sat(0)))
        .build()
        .await
        .unwrap();
    let e = payer.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.reason(), "no_payable_offer");
    assert!(!e.may_have_paid());
    assert_eq!(e.refusals().len(), 1);
    assert_eq!(e.refusals()[0].reason.reason(), "price_above_max");
    assert_eq!(w.payer.payments_sent(), 0);
    assert!(
        payer
            .journal()
            .payments(&Query::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn every_refused_offer_is_reported_with_its_reason() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    // Only an EVM signer: the L402 offer has no means of payment.
    let payer = Payer::builder()
        .evm_signer(Arc::new(LocalSigner::random()))
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    let e = payer.get(server.url("/paid")).await.unwrap_err();
    let reasons: Vec<&str> = e.refusals().iter().map(|r| r.reason.reason()).collect();
    assert_eq!(reasons, ["rail_not_enabled"]);
    assert_eq!(e.refusals()[0].rail, Some(Rail::L402));
    // Above the per-request maximum (in the reference unit, rounded up).
    let payer = builder(&w)
        .max_price(Amount::Sat(Sat(99)))
        .build()
        .await
        .unwrap();
    let e = payer.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.refusals()[0].reason.reason(), "price_above_max");
    // The L402 client's own checks still hold (its own cap here).
    let payer = Payer::builder()
        .l402(
            pay402_client::L402Client::builder(Arc::new(w.payer.clone()))
                .network(Network::Regtest)
                .max_price(Msat(1_000)),
        )
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    let e = payer.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.refusals()[0].reason.reason(), "price_exceeds_maximum");
    // The wrong network is the L402 client's refusal too.
    let payer = Payer::builder()
        .lightning(Arc::new(w.payer.clone()), Network::Bitcoin)
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    let e = payer.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.refusals()[0].reason.reason(), "invoice_wrong_network");
    // A rail order without L402 never pays it.
    let payer = builder(&w)
        .choose(Choice::RailOrder(vec![Rail::X402]))
        .build()
        .await
        .unwrap();
    let e = payer.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.refusals()[0].reason.reason(), "rail_not_in_order");
    // A closure that declines.
    let payer = builder(&w)
        .choose(Choice::custom(|_| None))
        .build()
        .await
        .unwrap();
    let e = payer.get(server.url("/paid")).await.unwrap_err();
    assert_eq!(e.refusals()[0].reason.reason(), "declined_by_policy");
    assert_eq!(w.payer.payments_sent(), 0);
}

#[tokio::test]
async fn budgets_per_origin_hold_across_a_restart() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    let journal = Journal::memory();
    let make = |journal: Journal| {
        builder(&w)
            .journal(journal)
            .scope(TokenScope::Path)
            .per_origin(Amount::Sat(Sat(150)), Duration::from_secs(3_600))
            .total(Amount::Sat(Sat(1_000)), Duration::from_secs(3_600))
    };
    let payer = make(journal.clone()).build().await.unwrap();
    assert_eq!(payer.get(server.url("/paid")).await.unwrap().status(), 200);
    // A second path needs a second token: 100 more would exceed 150.
    let e = payer.get(server.url("/other")).await.unwrap_err();
    assert_eq!(e.refusals()[0].reason.reason(), "origin_budget_exhausted");
    drop(payer);
    let again = make(journal).build().await.unwrap();
    let e = again.get(server.url("/other")).await.unwrap_err();
    assert_eq!(e.refusals()[0].reason.reason(), "origin_budget_exhausted");
    assert_eq!(w.payer.payments_sent(), 1);
    // The total budget counts every origin.
    let total = builder(&w)
        .journal(Journal::memory())
        .scope(TokenScope::Path)
        .total(Amount::Sat(Sat(150)), Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    assert_eq!(total.get(server.url("/paid")).await.unwrap().status(), 200);
    let e = total.get(server.url("/other")).await.unwrap_err();
    assert_eq!(e.refusals()[0].reason.reason(), "total_budget_exhausted");
}

#[tokio::test]
async fn a_failed_payment_is_typed_and_journaled_as_unpaid() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    let payer = builder(&w).build().await.unwrap();
    w.payer.fail_next_payments(1);
    let e = payer.get(server.url("/paid")).await.unwrap_err();
    assert!(matches!(e, PayerError::L402 { .. }), "{e}");
    assert_eq!(e.reason(), "payment_failed");
    assert!(!e.may_have_paid());
    let entry = payer
        .journal()
        .entry(e.entry().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.state, EntryState::Failed);
    assert!(!entry.counted);
    // The next call is a new purchase, and pays.
    assert_eq!(payer.get(server.url("/paid")).await.unwrap().status(), 200);
    assert_eq!(w.payer.payments_sent(), 1);
}

#[tokio::test]
async fn events_follow_every_step() {
    let w = world();
    let server = serve_merged(Some(l402_app(&w.merchant, PRICE_SAT)), None).await;
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let payer = builder(&w)
        .on_event(move |e| seen.lock().unwrap().push(e.state))
        .build()
        .await
        .unwrap();
    payer.get(server.url("/paid")).await.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            EntryState::Intent,
            EntryState::Paid,
            EntryState::Presented,
            EntryState::Served
        ]
    );
}

#[tokio::test]
async fn an_lsat_twin_is_paid_as_l402() {
    use axum::Router;
    use axum::routing::get;
    use pay402_server::{L402Config, L402Layer, Price};
    let w = world();
    // Aperture's order: the LSAT challenge first, then the L402 one.
    let layer = L402Layer::new(
        L402Config::new("api").emit_lsat(true),
        Arc::new(w.merchant.clone()),
        Arc::new(pay402_server::store::MemoryStore::new()),
    );
    let app = Router::new().route(
        "/paid",
        get(|| async { "ok" }).route_layer(layer.with_price(Price::sats(PRICE_SAT))),
    );
    let server = serve_merged(Some(app), None).await;
    let payer = builder(&w).build().await.unwrap();
    let paid = payer.get(server.url("/paid")).await.unwrap();
    assert_eq!(paid.status(), 200);
    assert_eq!(paid.receipt.as_ref().unwrap().offer, "l402");
    // Refused, the LSAT twin says why.
    let capped = builder(&w)
        .max_price(Amount::Sat(Sat(1)))
        .build()
        .await
        .unwrap();
    let e = capped.get(server.url("/paid")).await.unwrap_err();
    let mut reasons: Vec<&str> = e.refusals().iter().map(|r| r.reason.reason()).collect();
    reasons.sort();
    assert_eq!(reasons, ["price_above_max", "superseded"]);
}

#[tokio::test]
async fn timeouts_apply_to_every_attempt() {
    use axum::Router;
    use axum::routing::get;
    let app = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let w = world();
    let payer = builder(&w)
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let e = payer.get(&url).await.unwrap_err();
    assert_eq!(e.reason(), "http_error");
    assert!(matches!(&e, PayerError::Http(h) if h.is_timeout()), "{e}");
    assert!(!e.may_have_paid());
}
