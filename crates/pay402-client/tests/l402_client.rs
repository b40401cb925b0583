//! End-to-end tests: a real axum L402 server (tests/common) charging through a
//! simnet merchant node, paid by the client through a simnet payer node.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{Mode, Shared, TestServer};
use pay402_backends::simnet::{FeePolicy, SimNet, SimNode};
use pay402_client::{ClientError, L402Client, Paid, TokenScope};
use pay402_core::l402::InvoiceError;
use pay402_core::lightning::{
    LightningError, LightningPayer, Network, PayRequest, Payment, Preimage,
};
use pay402_core::money::Msat;
use pay402_core::problem::Reason;
use reqwest::StatusCode;

const PRICE: Msat = Msat(100_000);
const MAX: Msat = Msat(200_000);
const START: Msat = Msat(10_000_000_000);
/// Simnet routing fee per payment (within the client's 10 sat cap).
const FEE: Msat = Msat(1_000);

struct World {
    _net: SimNet,
    merchant: SimNode,
    payer: SimNode,
}

fn world() -> World {
    let net = SimNet::new(Network::Regtest);
    net.set_fee(FeePolicy { base: FEE, ppm: 0 });
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", START);
    World {
        _net: net,
        merchant,
        payer,
    }
}

fn client_for(payer: Arc<dyn LightningPayer>) -> L402Client {
    L402Client::builder(payer)
        .network(Network::Regtest)
        .max_price(MAX)
        .max_fee(Msat(10_000))
        .build()
}

fn client(w: &World) -> L402Client {
    client_for(Arc::new(w.payer.clone()))
}

async fn server(w: &World) -> TestServer {
    TestServer::start(Arc::new(w.merchant.clone()), PRICE).await
}

async fn server_with(w: &World, price: Msat, mode: Mode) -> TestServer {
    TestServer::start_with(Arc::new(w.merchant.clone()), price, mode).await
}

/// The payer's balance after paying `receipts`, exactly.
fn spent(paid: &[&pay402_client::Receipt]) -> Msat {
    Msat(paid.iter().map(|r| r.amount.0 + r.fee.0).sum())
}

fn assert_untouched(w: &World) {
    assert_eq!(w.payer.payments_sent(), 0, "nothing may be paid");
    assert_eq!(w.payer.balance(), START, "payer balance must be unchanged");
    assert_eq!(w.merchant.balance(), Msat(0), "merchant must not be paid");
}

#[tokio::test]
async fn pays_once_then_reuses_the_token() {
    let w = world();
    let srv = server(&w).await;
    let client = client(&w);

    let first: Paid = client.get(srv.url("/hello")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(!first.reused_token);
    let receipt = first.receipt.clone().expect("first call pays");
    assert_eq!(receipt.amount, PRICE);
    assert_eq!(receipt.fee, FEE);
    assert_eq!(w.payer.payments_sent(), 1);
    assert_eq!(receipt.origin, format!("http://{}", srv.addr));
    assert_eq!(receipt.url.path(), "/hello");
    assert_eq!(Some(receipt.payment_hash), srv.last_hash());
    assert_eq!(receipt.total(), spent(&[&receipt]));
    assert_eq!(first.response.text().await.unwrap(), "paid /hello ");
    assert_eq!(w.merchant.balance(), PRICE);
    assert_eq!(w.payer.balance(), Msat(START.0 - receipt.total().0));
    assert_eq!(client.cached_tokens(), 1);

    // Same origin, another path: the cached token is sent first, no payment.
    let second = client.get(srv.url("/other")).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert!(second.reused_token);
    assert!(second.receipt.is_none());
    assert_eq!(second.response.text().await.unwrap(), "paid /other ");
    assert_eq!(w.merchant.balance(), PRICE);
    assert_eq!(w.payer.balance(), Msat(START.0 - receipt.total().0));
    assert_eq!(srv.challenges(), 1);

    let seen = srv.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].authorization.is_empty());
    assert_eq!(seen[0].status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        seen[1].authorization.len(),
        1,
        "exactly one Authorization header"
    );
    let cred = &seen[1].authorization[0];
    assert!(
        cred.starts_with("L402 "),
        "L402 preferred over LSAT: {cred}"
    );
    let (_, preimage) = cred.rsplit_once(':').unwrap();
    assert_eq!(preimage.len(), 64);
    assert!(
        preimage
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert!(
        Preimage::from_hex(preimage)
            .unwrap()
            .matches(&receipt.payment_hash)
    );
    assert_eq!(seen[2].authorization, seen[1].authorization);

    client.clear_cache();
    assert_eq!(client.cached_tokens(), 0);
}

#[tokio::test]
async fn free_endpoints_pass_through_untouched() {
    let w = world();
    let srv = server(&w).await;
    let client = client(&w);
    let paid = client.get(srv.url("/free")).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    assert!(paid.receipt.is_none());
    assert!(!paid.reused_token);
    assert_eq!(client.cached_tokens(), 0);
    assert_untouched(&w);
}

#[tokio::test]
async fn price_above_maximum_is_refused_without_paying() {
    let w = world();
    let srv = server_with(&w, Msat(300_000), Mode::default()).await;
    let client = client(&w);
    let err = client.get(srv.url("/hello")).await.unwrap_err();
    match &err {
        ClientError::PriceExceedsMaximum { price, max } => {
            assert_eq!(*price, Msat(300_000));
            assert_eq!(*max, MAX);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.reason(), "price_exceeds_maximum");
    assert!(!err.may_have_paid());
    assert_eq!(client.cached_tokens(), 0);
    assert_untouched(&w);

    // Exactly at the maximum is fine.
    let srv = server_with(&w, MAX, Mode::default()).await;
    let paid = client.get(srv.url("/hello")).await.unwrap();
    assert_eq!(paid.receipt.unwrap().amount, MAX);
}

#[tokio::test]
async fn wrong_network_invoice_is_refused() {
    let w = world();
    let testnet = SimNet::new(Network::Testnet);
    let foreign = testnet.add_node("foreign-merchant", Msat(0));
    let srv = TestServer::start(Arc::new(foreign.clone()), PRICE).await;
    let client = client(&w);
    let err = client.get(srv.url("/hello")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Invoice(InvoiceError::WrongNetwork { .. })),
        "{err:?}"
    );
    assert_eq!(err.reason(), "invoice_wrong_network");
    assert_untouched(&w);
    assert_eq!(foreign.balance(), Msat(0));
    assert_eq!(client.cached_tokens(), 0);
}

#[tokio::test]
async fn invoice_hash_differing_from_macaroon_is_refused() {
    let w = world();
    let mode = Mode {
        mismatched_hash: true,
        ..Mode::default()
    };
    let srv = server_with(&w, PRICE, mode).await;
    let client = client(&w);
    let err = client.get(srv.url("/hello")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Invoice(InvoiceError::HashMismatch)),
        "{err:?}"
    );
    assert_eq!(err.reason(), "invoice_hash_mismatch");
    assert_untouched(&w);
}

#[tokio::test]
async fn expired_invoice_is_refused() {
    let w = world();
    let mode = Mode {
        expiry: Duration::from_secs(1),
        hold: Duration::from_millis(1_100),
        ..Mode::default()
    };
    let srv = server_with(&w, PRICE, mode).await;
    let client = client(&w);
    let err = client.get(srv.url("/hello")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Invoice(InvoiceError::Expired)),
        "{err:?}"
    );
    assert_untouched(&w);
}

#[tokio::test]
async fn challenge_without_l402_is_typed() {
    let w = world();
    let mode = Mode {
        no_challenge: true,
        ..Mode::default()
    };
    let srv = server_with(&w, PRICE, mode).await;
    let err = client(&w).get(srv.url("/hello")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::NoChallenge { status } if status == StatusCode::PAYMENT_REQUIRED),
        "{err:?}"
    );
    assert_eq!(err.reason(), "no_l402_challenge");
    assert_untouched(&w);
}

async fn refused_token_is_evicted_and_paid_once(spec_401: bool) {
    let w = world();
    let mode = Mode {
        spec_401,
        ..Mode::default()
    };
    let srv = server_with(&w, PRICE, mode).await;
    let client = client(&w);
    let r1 = client
        .get(srv.url("/hello"))
        .await
        .unwrap()
        .receipt
        .unwrap();

    srv.revoke_all();
    let again = client.get(srv.url("/hello")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(!again.reused_token);
    let r2 = again.receipt.clone().expect("fresh challenge is paid");
    assert_ne!(r1.payment_hash, r2.payment_hash);
    assert_eq!(w.merchant.balance(), Msat(2 * PRICE.0));
    assert_eq!(w.payer.balance(), Msat(START.0 - spent(&[&r1, &r2]).0));
    assert_eq!(client.cached_tokens(), 1);

    let seen = srv.seen();
    // unpaid, paid retry, revoked token refused, fresh paid retry
    assert_eq!(seen.len(), 4);
    assert_eq!(
        seen[2].status,
        if spec_401 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::PAYMENT_REQUIRED
        }
    );
    assert_eq!(seen[2].authorization, seen[1].authorization);
    assert_ne!(seen[3].authorization, seen[1].authorization);

    // The new token is cached and reused.
    let third = client.get(srv.url("/hello")).await.unwrap();
    assert!(third.reused_token);
    assert!(third.receipt.is_none());
    assert_eq!(w.merchant.balance(), Msat(2 * PRICE.0));
}

#[tokio::test]
async fn refused_token_402_is_evicted_and_fresh_challenge_paid_once() {
    refused_token_is_evicted_and_paid_once(false).await;
}

#[tokio::test]
async fn refused_token_401_is_evicted_and_fresh_challenge_paid_once() {
    refused_token_is_evicted_and_paid_once(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_one_origin_pay_once() {
    let w = world();
    w.payer.set_latency(Duration::from_millis(200));
    let srv = server(&w).await;
    let client = client(&w);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            let url = srv.url(&format!("/item/{i}"));
            tokio::spawn(async move { client.get(url).await })
        })
        .collect();
    let mut receipts = Vec::new();
    let mut reused = 0;
    for t in tasks {
        let paid = t.await.unwrap().unwrap();
        assert_eq!(paid.status(), StatusCode::OK);
        if paid.reused_token {
            reused += 1;
        }
        receipts.extend(paid.receipt);
    }
    assert_eq!(receipts.len(), 1, "exactly one request pays");
    assert_eq!(w.payer.payments_sent(), 1);
    assert_eq!(reused, 19);
    assert_eq!(w.merchant.balance(), PRICE);
    assert_eq!(w.payer.balance(), Msat(START.0 - receipts[0].total().0));
    assert_eq!(srv.accepted(), 20);
    assert_eq!(client.cached_tokens(), 1);
}

#[tokio::test]
async fn payer_failure_is_typed_and_nothing_is_cached() {
    let w = world();
    let srv = server(&w).await;
    let client = client(&w);
    w.payer.fail_next_payments(1);
    let err = client.get(srv.url("/hello")).await.unwrap_err();
    assert!(matches!(err, ClientError::Payment(_)), "{err:?}");
    assert!(!err.may_have_paid());
    assert_eq!(client.cached_tokens(), 0);
    assert_untouched(&w);

    // The next attempt pays normally, once.
    let paid = client.get(srv.url("/hello")).await.unwrap();
    let r = paid.receipt.unwrap();
    assert_eq!(w.merchant.balance(), PRICE);
    assert_eq!(w.payer.balance(), Msat(START.0 - r.total().0));
}

#[tokio::test]
async fn server_still_refusing_after_payment_reports_receipt() {
    let w = world();
    let mode = Mode {
        reject_all: true,
        ..Mode::default()
    };
    let srv = server_with(&w, PRICE, mode).await;
    let client = client(&w);
    let err = client.get(srv.url("/hello")).await.unwrap_err();
    let ClientError::StillUnpaid { status, receipt } = &err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(receipt.amount, PRICE);
    assert_eq!(err.reason(), "still_unpaid");
    assert!(err.may_have_paid());
    assert_eq!(err.receipt().unwrap().payment_hash, receipt.payment_hash);
    // Paid exactly once, token dropped.
    assert_eq!(w.merchant.balance(), PRICE);
    assert_eq!(w.payer.balance(), Msat(START.0 - receipt.total().0));
    assert_eq!(client.cached_tokens(), 0);
    assert_eq!(srv.seen().len(), 2);
}

#[tokio::test]
async fn post_body_and_headers_are_retried_identically() {
    let w = world();
    let srv = server(&w).await;
    let client = client(&w);
    let body = "{\"question\":\"what is 402?\"}";
    let rb = client
        .request(reqwest::Method::POST, srv.url("/ask"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    let paid = client.send(rb).await.unwrap();
    assert!(paid.receipt.is_some());
    assert_eq!(
        paid.response.text().await.unwrap(),
        format!("paid /ask {body}")
    );
    let seen = srv.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.method, reqwest::Method::POST);
        assert_eq!(s.body, body.as_bytes());
        assert_eq!(s.content_type.as_deref(), Some("application/json"));
    }
    assert!(seen[0].authorization.is_empty());
    assert_eq!(seen[1].authorization.len(), 1);
    assert_eq!(w.merchant.balance(), PRICE);
}

#[tokio::test]
async fn streaming_body_fails_before_paying() {
    let w = world();
    let srv = server(&w).await;
    let client = client(&w);
    let stream =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"chunk"))]);
    let rb = client
        .http()
        .post(srv.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream));
    let err = client.send(rb).await.unwrap_err();
    assert!(matches!(err, ClientError::BodyNotCloneable), "{err:?}");
    assert_eq!(err.reason(), "body_not_cloneable");
    assert_untouched(&w);
}

#[tokio::test]
async fn different_origins_get_different_tokens() {
    let w = world();
    let a = server(&w).await;
    let b = server(&w).await;
    let client = client(&w);

    let ra = client.get(a.url("/x")).await.unwrap().receipt.unwrap();
    let pb = client.get(b.url("/x")).await.unwrap();
    let rb = pb.receipt.clone().expect("origin B needs its own payment");
    assert_ne!(ra.origin, rb.origin);
    assert_eq!(client.cached_tokens(), 2);
    assert_eq!(w.merchant.balance(), Msat(2 * PRICE.0));
    assert_eq!(w.payer.balance(), Msat(START.0 - spent(&[&ra, &rb]).0));

    // B never saw A's token: its first request carried no credential.
    assert!(b.seen()[0].authorization.is_empty());

    // Each origin keeps getting its own token.
    assert!(client.get(a.url("/y")).await.unwrap().reused_token);
    assert!(client.get(b.url("/y")).await.unwrap().reused_token);
    let (sa, sb) = (a.seen(), b.seen());
    assert_eq!(sa.last().unwrap().authorization, sa[1].authorization);
    assert_eq!(sb.last().unwrap().authorization, sb[1].authorization);
    assert_ne!(sa[1].authorization, sb[1].authorization);
    assert_eq!(w.merchant.balance(), Msat(2 * PRICE.0));
}

#[tokio::test]
async fn path_prefix_scope_keys_tokens_by_first_segment() {
    let w = world();
    let srv = server(&w).await;
    let client = L402Client::builder(Arc::new(w.payer.clone()))
        .network(Network::Regtest)
        .max_price(MAX)
        .scope(TokenScope::PathPrefix)
        .build();
    assert!(client.get(srv.url("/a/1")).await.unwrap().receipt.is_some());
    let same = client.get(srv.url("/a/2?q=1")).await.unwrap();
    assert!(same.reused_token);
    let other = client.get(srv.url("/b/1")).await.unwrap();
    assert!(
        other.receipt.is_some(),
        "another prefix pays for its own token"
    );
    assert_eq!(client.cached_tokens(), 2);
    assert_eq!(w.merchant.balance(), Msat(2 * PRICE.0));
    // The /b request was first sent without the /a token.
    let seen = srv.seen();
    let first_b = seen.iter().find(|s| s.path == "/b/1").unwrap();
    assert!(first_b.authorization.is_empty());
}

#[tokio::test]
async fn credentials_never_follow_cross_origin_redirects() {
    let w = world();
    let a = server(&w).await;
    let b = server(&w).await;

    // Default client: redirects are followed only within the origin.
    let client = client(&w);
    client.get(a.url("/hello")).await.unwrap();
    let same = client
        .get(a.url(&format!("/redirect?{}", a.url("/target"))))
        .await
        .unwrap();
    assert_eq!(
        same.status(),
        StatusCode::OK,
        "same-origin redirect followed"
    );
    assert!(same.reused_token);
    let cross = client
        .get(a.url(&format!("/redirect?{}", b.url("/hello"))))
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::TEMPORARY_REDIRECT);
    assert!(b.seen().is_empty(), "B was never contacted");

    // A caller-supplied client with reqwest's default policy follows the
    // redirect: reqwest strips Authorization, and the 402 of B is not paid.
    let client = L402Client::builder(Arc::new(w.payer.clone()))
        .network(Network::Regtest)
        .max_price(MAX)
        .http(reqwest::Client::new())
        .build();
    client.get(a.url("/hello")).await.unwrap();
    let before = (w.payer.balance(), w.merchant.balance());
    let err = client
        .get(a.url(&format!("/redirect?{}", b.url("/hello"))))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::CrossOriginChallenge { requested, responded }
            if *requested == format!("http://{}", a.addr) && *responded == format!("http://{}", b.addr)),
        "{err:?}"
    );
    assert_eq!((w.payer.balance(), w.merchant.balance()), before);
    let sb = b.seen();
    assert_eq!(sb.len(), 1);
    assert!(sb[0].authorization.is_empty(), "credential leaked to B");
}

#[tokio::test]
async fn lsat_only_server_gets_an_lsat_credential() {
    let w = world();
    let mode = Mode {
        lsat_only: true,
        ..Mode::default()
    };
    let srv = server_with(&w, PRICE, mode).await;
    let client = client(&w);
    let paid = client.get(srv.url("/old")).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    assert!(srv.seen()[1].authorization[0].starts_with("LSAT "));
    assert!(client.get(srv.url("/old")).await.unwrap().reused_token);
}

/// Pays for real, then claims the preimage is all zeros (LNbits #3070).
struct ZeroPreimage(SimNode);

#[async_trait]
impl LightningPayer for ZeroPreimage {
    async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let mut p = self.0.pay_invoice(req).await?;
        p.preimage = Preimage::from_bytes([0; 32]);
        Ok(p)
    }
}

/// Pays for real, then returns some other preimage.
struct WrongPreimage(SimNode);

#[async_trait]
impl LightningPayer for WrongPreimage {
    async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let mut p = self.0.pay_invoice(req).await?;
        p.preimage = Preimage::from_bytes([7; 32]);
        Ok(p)
    }
}

#[tokio::test]
async fn invalid_preimages_from_the_payer_are_rejected() {
    let w = world();
    let srv = server(&w).await;
    for payer in [
        Arc::new(ZeroPreimage(w.payer.clone())) as Arc<dyn LightningPayer>,
        Arc::new(WrongPreimage(w.payer.clone())),
    ] {
        let client = client_for(payer);
        let err = client.get(srv.url("/hello")).await.unwrap_err();
        assert!(
            matches!(err, ClientError::PreimageMismatch { payment_hash } if Some(payment_hash) == srv.last_hash()),
            "{err:?}"
        );
        assert_eq!(err.reason(), "preimage_mismatch");
        assert!(err.may_have_paid());
        assert_eq!(client.cached_tokens(), 0);
    }
    // Only the two credential-less attempts reached the server.
    assert_eq!(srv.seen().len(), 2);
}

/// Reports every payment as in flight with unknown outcome.
struct Unknown {
    shared: Arc<Shared>,
    calls: AtomicUsize,
}

#[async_trait]
impl LightningPayer for Unknown {
    async fn pay_invoice(&self, _req: &PayRequest) -> Result<Payment, LightningError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let payment_hash = self.shared.last_hash.lock().unwrap().unwrap();
        Err(LightningError::Unknown { payment_hash })
    }
}

#[tokio::test]
async fn unknown_payment_outcome_is_surfaced_and_never_retried() {
    let w = world();
    let srv = server(&w).await;
    let payer = Arc::new(Unknown {
        shared: Arc::clone(&srv.shared),
        calls: AtomicUsize::new(0),
    });
    let client = client_for(payer.clone());
    let err = client.get(srv.url("/hello")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::PaymentOutcomeUnknown { payment_hash } if Some(payment_hash) == srv.last_hash()),
        "{err:?}"
    );
    assert_eq!(err.payment_hash(), srv.last_hash());
    assert_eq!(err.reason(), "payment_unknown");
    assert!(err.may_have_paid());
    assert_eq!(payer.calls.load(Ordering::SeqCst), 1);
    assert_eq!(client.cached_tokens(), 0);
    assert_eq!(srv.seen().len(), 1);
}

#[tokio::test]
async fn fee_cap_is_passed_to_the_payer() {
    let w = world();
    let srv = server(&w).await;
    let client = L402Client::builder(Arc::new(w.payer.clone()))
        .network(Network::Regtest)
        .max_price(MAX)
        .max_fee(Msat(FEE.0 - 1))
        .build();
    let err = client.get(srv.url("/hello")).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Payment(LightningError::PaymentFailed { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.reason(), "payment_failed");
    assert_eq!(w.payer.balance(), START);
    assert_eq!(w.merchant.balance(), Msat(0));
    assert_eq!(client.cached_tokens(), 0);
}

#[tokio::test]
async fn dropping_the_call_mid_payment_still_caches_the_paid_token() {
    let w = world();
    w.payer.set_latency(Duration::from_millis(300));
    let srv = server(&w).await;
    let client = client(&w);
    let cut = tokio::time::timeout(Duration::from_millis(100), client.get(srv.url("/hello"))).await;
    assert!(cut.is_err(), "the call was cut off while paying");
    // The payment completes in the background and its token is kept.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.cached_tokens() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.merchant.balance(), PRICE);
    assert_eq!(client.cached_tokens(), 1);
    let paid = client.get(srv.url("/hello")).await.unwrap();
    assert!(paid.reused_token);
    assert_eq!(w.payer.payments_sent(), 1);
    assert_eq!(w.merchant.balance(), PRICE);
}
