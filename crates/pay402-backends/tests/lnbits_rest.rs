//! The LNbits client ([`Lnbits`]) against a fake LNbits instance whose
//! wallets are simnet nodes, over real HTTP on 127.0.0.1. See
//! `common_lnbits` for the LNbits behaviour the fake reproduces.
//!
//! ## Running the same checks against a real LNbits
//!
//! The example `node_check` runs them against real nodes (`--pair`:
//! merchant from the plain variables, payer from the `PAYER_`-prefixed ones). It needs two wallets
//! (on one instance or two) whose funding sources can pay each other, and:
//!
//! | Variable | Meaning |
//! |---|---|
//! | `LNBITS_URL` | the merchant wallet's instance, e.g. `https://lnbits.example` |
//! | `LNBITS_INVOICE_KEY` | the merchant wallet's invoice/read key |
//! | `LNBITS_NETWORK` | the funding source's network, e.g. `signet` |
//! | `PAYER_LNBITS_URL` | the payer wallet's instance |
//! | `PAYER_LNBITS_ADMIN_KEY` | the payer wallet's admin key (it needs 1 000 sat) |
//! | `PAYER_LNBITS_NETWORK` | e.g. `signet` |
//!
//! ```sh
//! LNBITS_URL=https://lnbits.example LNBITS_INVOICE_KEY=... LNBITS_NETWORK=signet \
//! PAYER_LNBITS_URL=https://lnbits.example PAYER_LNBITS_ADMIN_KEY=... PAYER_LNBITS_NETWORK=signet \
//! PAY402_LIGHTNING=lnbits PAY402_PAYER_LIGHTNING=lnbits cargo run --example node_check -- --pair
//! ```
#![cfg(all(feature = "lnbits", feature = "simnet-rest"))]

mod common_lnbits;

use std::time::{Duration, Instant};

use common_lnbits::{Bolt11Field, FakeLnbits, LnbitsServer, serve};
use pay402_backends::lnbits::{Lnbits, LnbitsConfig};
use pay402_backends::simnet::{FeePolicy, SimNet, SimNode};
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, Network,
    PayRequest, PaymentHash,
};
use pay402_core::money::Msat;
use serde_json::json;

struct World {
    net: SimNet,
    merchant: SimNode,
    payer: SimNode,
    fake: FakeLnbits,
    server: LnbitsServer,
    /// The merchant wallet with its invoice key.
    m: Lnbits,
    /// The payer wallet with its admin key.
    p: Lnbits,
}

fn wallet(
    server: &LnbitsServer,
    invoice_key: Option<&str>,
    admin_key: Option<&str>,
    timeout: Duration,
) -> Lnbits {
    let mut cfg = LnbitsConfig::new(server.url.parse().unwrap(), Network::Regtest);
    cfg.invoice_key = invoice_key.map(str::to_owned);
    cfg.admin_key = admin_key.map(str::to_owned);
    cfg.timeout = timeout;
    Lnbits::new(cfg).unwrap()
}

async fn world() -> World {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(10_000_000));
    let fake = FakeLnbits::new(&[&merchant, &payer]);
    let server = serve(&fake).await;
    let m = wallet(
        &server,
        Some(&fake.wallet("merchant").invoice_key),
        None,
        Duration::from_secs(5),
    );
    let p = wallet(
        &server,
        None,
        Some(&fake.wallet("payer").admin_key),
        Duration::from_secs(5),
    );
    World {
        net,
        merchant,
        payer,
        fake,
        server,
        m,
        p,
    }
}

fn rejected(res: &Result<impl std::fmt::Debug, LightningError>) -> (&'static str, String) {
    match res {
        Err(LightningError::Rejected {
            backend: "lnbits",
            call,
            detail,
        }) => (call, detail.clone()),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn invalid(res: &Result<impl std::fmt::Debug, LightningError>) -> (&'static str, String) {
    match res {
        Err(LightningError::InvalidResponse {
            backend: "lnbits",
            call,
            detail,
        }) => (call, detail.clone()),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

fn failed(res: Result<impl std::fmt::Debug, LightningError>) -> String {
    match res {
        Err(LightningError::PaymentFailed { reason }) => reason,
        other => panic!("expected PaymentFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn create_pay_lookup_round_trip() {
    let w = world().await;
    w.net.set_fee(FeePolicy {
        base: Msat(1_000),
        ppm: 0,
    });
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(Msat(150_000), "GET /premium"))
            .await
            .unwrap();
    assert!(w.merchant.invoice(&inv.payment_hash).is_some());
    assert_eq!(
        w.m.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    let paid =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(5_000)))
            .await
            .unwrap();
    assert_eq!(paid.payment_hash, inv.payment_hash);
    assert!(paid.preimage.matches(&inv.payment_hash));
    assert_eq!((paid.amount, paid.fee), (Msat(150_000), Msat(1_000)));
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 151_000));
    assert_eq!(w.merchant.balance(), Msat(150_000));
    match w.m.lookup_invoice(&inv.payment_hash).await.unwrap() {
        InvoiceState::Settled {
            preimage,
            amount_paid,
        } => {
            assert_eq!(preimage, paid.preimage);
            assert_eq!(amount_paid, Msat(150_000));
        }
        other => panic!("expected Settled, got {other:?}"),
    }
}

#[tokio::test]
async fn out_is_always_sent_and_amounts_are_whole_sats() {
    let w = world().await;
    let mut req = InvoiceRequest::new(Msat(21_000), "memo");
    req.expiry = Duration::from_secs(600);
    let inv = w.m.create_invoice(&req).await.unwrap();
    w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
        .await
        .unwrap();
    let requests = w.fake.requests();
    let create = requests.iter().find(|r| r.0 == "create").unwrap();
    assert_eq!(create.1.as_deref(), Some("merchant"));
    assert_eq!(
        create.2,
        json!({"out": false, "amount": 21, "unit": "sat", "memo": "memo", "expiry": 600})
    );
    let pay = requests.iter().find(|r| r.0 == "pay").unwrap();
    assert_eq!(pay.2, json!({"out": true, "bolt11": inv.bolt11}));

    // Why `out` must be explicit: without it LNbits treats the request as a payment.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/payments", w.server.url))
        .header("X-Api-Key", w.fake.wallet("merchant").admin_key)
        .json(&json!({"amount": 21, "unit": "sat", "memo": "no out"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422, "a payment without bolt11");

    // Fractions of a sat are refused, not rounded; nothing is sent.
    let before = w.fake.count("create");
    for amount in [Msat(1_500), Msat(999), Msat(0)] {
        let res = w.m.create_invoice(&InvoiceRequest::new(amount, "x")).await;
        assert_eq!(rejected(&res).0, "create_invoice", "{amount}");
    }
    let res =
        w.m.create_invoice(&InvoiceRequest::new(Msat(1_500), "x"))
            .await;
    assert!(rejected(&res).1.contains("whole satoshis"));
    assert_eq!(w.fake.count("create"), before);
}

#[tokio::test]
async fn both_invoice_field_names_and_float_amounts_are_accepted() {
    let w = world().await;
    for field in [
        Bolt11Field::PaymentRequest,
        Bolt11Field::Bolt11,
        Bolt11Field::Both,
    ] {
        w.fake.quirks(|q| {
            q.bolt11_field = field;
            q.float_amounts = true;
        });
        let inv =
            w.m.create_invoice(&InvoiceRequest::new(Msat(3_000), "x"))
                .await
                .unwrap_or_else(|e| panic!("{field:?}: {e}"));
        let paid =
            w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
                .await
                .unwrap();
        assert_eq!(paid.amount, Msat(3_000));
        assert!(matches!(
            w.m.lookup_invoice(&inv.payment_hash).await.unwrap(),
            InvoiceState::Settled {
                amount_paid: Msat(3_000),
                ..
            }
        ));
    }
}

#[tokio::test]
async fn repaying_returns_the_earlier_payment_without_paying_twice() {
    let w = world().await;
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(4_000), "again"))
        .await
        .unwrap();
    let req = PayRequest::new(&inv.bolt11, Msat(0));
    let first = w.p.pay_invoice(&req).await.unwrap();
    let second = w.p.pay_invoice(&req).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(w.fake.count("pay"), 1);
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 4_000));

    // The check misses the payment once; LNbits answers "already paid"
    // and the earlier result is fetched.
    w.fake.quirks(|q| q.hide_checks = 1);
    let third = w.p.pay_invoice(&req).await.unwrap();
    assert_eq!(third, first);
    assert_eq!(w.fake.count("pay"), 2);
    assert_eq!(w.payer.payments_sent(), 1);
}

#[tokio::test]
async fn failed_payments_move_nothing() {
    let w = world().await;
    let poor = w.net.add_node("poor", Msat(1_000));
    let fake = FakeLnbits::new(&[&w.merchant, &poor]);
    let server = serve(&fake).await;
    let poor_wallet = wallet(
        &server,
        None,
        Some(&fake.wallet("poor").admin_key),
        Duration::from_secs(5),
    );
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(150_000), "x"))
        .await
        .unwrap();
    let reason = failed(
        poor_wallet
            .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
    );
    assert_eq!(reason, "Insufficient balance.");
    assert_eq!(poor.balance(), Msat(1_000));

    w.payer.fail_next_payments(1);
    let reason = failed(
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
    );
    assert!(
        reason.starts_with("Payment failed: simulated failure"),
        "{reason}"
    );

    let elsewhere = SimNet::new(Network::Regtest)
        .add_node("far", Msat(0))
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    let reason = failed(
        w.p.pay_invoice(&PayRequest::new(&elsewhere.bolt11, Msat(0)))
            .await,
    );
    assert!(reason.contains("no route"), "{reason}");
    assert_eq!(w.payer.balance(), Msat(10_000_000));
    assert_eq!(w.merchant.balance(), Msat(0));

    // A failed payment may be tried again.
    let paid =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await
            .unwrap();
    assert!(paid.preimage.matches(&inv.payment_hash));
}

#[tokio::test]
async fn a_timed_out_payment_is_unknown_and_never_retried_blindly() {
    let w = world().await;
    w.fake.quirks(|q| q.pay_delay = Duration::from_secs(10));
    let slow = wallet(
        &w.server,
        None,
        Some(&w.fake.wallet("payer").admin_key),
        Duration::from_millis(300),
    );
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(5_000), "slow"))
        .await
        .unwrap();
    let mut req = PayRequest::new(&inv.bolt11, Msat(0));
    req.timeout = Duration::from_secs(1);
    let started = Instant::now();
    assert_eq!(
        slow.pay_invoice(&req).await,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        })
    );
    // Bounded by the 1 s budget, far below the node's 10 s delay.
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 5_000));
    // Asked again through a client with an ordinary timeout (the 300 ms one
    // could trip on a loaded machine): the node's payment, not a new one.
    let patient = wallet(
        &w.server,
        None,
        Some(&w.fake.wallet("payer").admin_key),
        Duration::from_secs(10),
    );
    let again = patient.pay_invoice(&req).await.unwrap();
    assert!(again.preimage.matches(&inv.payment_hash));
    assert_eq!(w.fake.count("pay"), 1);
}

#[tokio::test]
async fn pending_payments_are_polled_with_a_bound() {
    let w = world().await;
    w.fake.quirks(|q| q.pending_checks = 3);
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(2_000), "x"))
        .await
        .unwrap();
    let paid =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await
            .unwrap();
    assert!(paid.preimage.matches(&inv.payment_hash));
    assert_eq!(
        w.fake.count("check"),
        1 + 4,
        "the pre-check, 3 pending, 1 paid"
    );

    // A 520 "pending" answer is followed up with checks too.
    w.fake.quirks(|q| {
        q.pending_checks = 0;
        q.pay_answers_pending = true;
    });
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(2_000), "y"))
        .await
        .unwrap();
    let paid =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await
            .unwrap();
    assert!(paid.preimage.matches(&inv.payment_hash));

    // Still pending when the request's timeout has passed: unknown.
    w.fake.quirks(|q| {
        q.pay_answers_pending = false;
        q.pending_checks = 1_000;
    });
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(2_000), "z"))
        .await
        .unwrap();
    let mut req = PayRequest::new(&inv.bolt11, Msat(0));
    req.timeout = Duration::from_millis(300);
    let checks_before = w.fake.count("check");
    assert_eq!(
        w.p.pay_invoice(&req).await,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        })
    );
    assert!(w.fake.count("check") - checks_before >= 4);
    // The next call finds it in flight and does not pay again.
    assert!(matches!(
        w.p.pay_invoice(&req).await,
        Err(LightningError::Unknown { .. })
    ));
    assert_eq!(w.payer.payments_sent(), 3);
}

#[tokio::test]
async fn wrong_or_missing_keys_are_rejected() {
    let w = world().await;
    let stranger = wallet(
        &w.server,
        Some("0123456789abcdef"),
        Some("fedcba9876543210"),
        Duration::from_secs(5),
    );
    let res = stranger
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await;
    assert_eq!(
        rejected(&res),
        ("create_invoice", "Invalid key or wallet. (HTTP 401)".into())
    );
    let res = stranger.lookup_invoice(&PaymentHash([1; 32])).await;
    assert_eq!(rejected(&res).0, "lookup_invoice");

    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    let res = stranger
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
        .await;
    assert_eq!(
        rejected(&res).0,
        "check_payment",
        "refused at the pre-check"
    );

    // The invoice key given as admin key.
    let read_only = wallet(
        &w.server,
        None,
        Some(&w.fake.wallet("payer").invoice_key),
        Duration::from_secs(5),
    );
    let res = read_only
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
        .await;
    assert_eq!(
        rejected(&res),
        ("pay_invoice", "Invalid adminkey. (HTTP 401)".into())
    );

    // No admin key at all: refused before any request.
    let before = w.fake.requests().len();
    let res =
        w.m.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await;
    assert!(rejected(&res).1.contains("admin key"));
    assert_eq!(w.fake.requests().len(), before);
    assert_eq!(w.payer.balance(), Msat(10_000_000));
}

#[tokio::test]
async fn all_zero_preimages_are_invalid() {
    let w = world().await;
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(Msat(2_000), "x"))
            .await
            .unwrap();
    w.fake.quirks(|q| q.zero_preimage = true);
    let res =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await;
    let (call, detail) = invalid(&res);
    assert_eq!(call, "check_payment");
    assert!(detail.contains("all-zero"), "{detail}");
    let res = w.m.lookup_invoice(&inv.payment_hash).await;
    let (call, detail) = invalid(&res);
    assert_eq!(call, "lookup_invoice");
    assert!(detail.contains("all-zero"), "{detail}");
}

#[tokio::test]
async fn malformed_answers_are_invalid_responses() {
    let w = world().await;
    let other = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(9_000), "other"))
        .await
        .unwrap();
    let other_hash = other.payment_hash.to_hex();
    let req = InvoiceRequest::new(Msat(1_000), "x");
    for (what, body) in [
        ("not JSON", "not json".to_owned()),
        ("no invoice", json!({"payment_hash": other_hash}).to_string()),
        (
            "another invoice",
            json!({"payment_hash": other_hash, "payment_request": other.bolt11}).to_string(),
        ),
        (
            "fields disagree",
            json!({"payment_hash": other_hash, "payment_request": other.bolt11, "bolt11": "lnbcrt1other"}).to_string(),
        ),
        ("hash not hex", json!({"payment_hash": 5, "bolt11": other.bolt11}).to_string()),
    ] {
        w.fake.quirks(|q| {
            q.raw.insert("create", (201, body));
        });
        let res = w.m.create_invoice(&req).await;
        assert_eq!(invalid(&res).0, "create_invoice", "{what}");
    }
    w.fake.quirks(|q| q.raw.clear());

    for (what, body) in [
        ("paid not a bool", json!({"paid": "yes"})),
        ("no paid", json!({"preimage": null})),
        (
            "bad preimage",
            json!({"paid": true, "preimage": "zz", "details": {"amount": 9000}}),
        ),
        (
            "wrong preimage",
            json!({"paid": true, "preimage": "12".repeat(32), "details": {"amount": 9000}}),
        ),
        (
            "missing preimage",
            json!({"paid": true, "details": {"amount": 9000}}),
        ),
        (
            "another hash",
            json!({"paid": false, "details": {"payment_hash": "34".repeat(32)}}),
        ),
        (
            "amount not a number",
            json!({"paid": false, "details": {"amount": "9000"}}),
        ),
    ] {
        w.fake.quirks(|q| {
            q.raw.insert("check", (200, body.to_string()));
        });
        let res = w.m.lookup_invoice(&other.payment_hash).await;
        assert_eq!(invalid(&res).0, "lookup_invoice", "{what}");
    }
    w.fake.quirks(|q| q.raw.clear());

    for (what, body) in [
        ("not JSON", "garbage".to_owned()),
        (
            "another hash",
            json!({"payment_hash": "56".repeat(32)}).to_string(),
        ),
    ] {
        let inv = w
            .merchant
            .create_invoice(&InvoiceRequest::new(Msat(1_000), "p"))
            .await
            .unwrap();
        w.fake.quirks(|q| {
            q.raw.insert("pay", (201, body));
        });
        let res =
            w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
                .await;
        assert_eq!(invalid(&res).0, "pay_invoice", "{what}");
    }
}

#[tokio::test]
async fn error_bodies_become_readable_errors() {
    let w = world().await;
    w.fake.quirks(|q| {
        q.raw.insert(
            "create",
            (
                422,
                json!({"detail": [{"loc": ["body", "amount"], "msg": "field required", "type": "value_error.missing"}]})
                    .to_string(),
            ),
        );
    });
    let res =
        w.m.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await;
    assert_eq!(rejected(&res).1, "body.amount: field required (HTTP 422)");

    // Server errors around the payment call: the payment may have happened.
    for (status, body) in [
        (500, "<html>oops</html>"),
        (502, ""),
        (503, r#"{"detail":"Service Unavailable"}"#),
    ] {
        let inv = w
            .merchant
            .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await
            .unwrap();
        w.fake.quirks(|q| {
            q.raw.insert("pay", (status, body.to_owned()));
        });
        assert_eq!(
            w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
                .await,
            Err(LightningError::Unknown {
                payment_hash: inv.payment_hash
            }),
            "HTTP {status}"
        );
    }
}

#[tokio::test]
async fn lookup_states_and_unknown_hashes() {
    let w = world().await;
    assert_eq!(
        w.m.lookup_invoice(&PaymentHash([3; 32])).await,
        Err(LightningError::NotFound)
    );
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await
            .unwrap();
    w.merchant.cancel_invoice(&inv.payment_hash).unwrap();
    assert_eq!(
        w.m.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Canceled
    );

    // A hash this wallet paid is not one of its invoices.
    let bought = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "y"))
        .await
        .unwrap();
    w.p.pay_invoice(&PayRequest::new(&bought.bolt11, Msat(0)))
        .await
        .unwrap();
    assert_eq!(
        w.p.lookup_invoice(&bought.payment_hash).await,
        Err(LightningError::NotFound)
    );
}

#[tokio::test]
async fn an_unreachable_instance_is_unreachable() {
    let w = world().await;
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    let url = w.server.url.clone();
    let keys = w.fake.wallet("payer");
    drop(w.server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut cfg = LnbitsConfig::new(url.parse().unwrap(), Network::Regtest);
    cfg.invoice_key = Some(keys.invoice_key);
    cfg.admin_key = Some(keys.admin_key);
    cfg.timeout = Duration::from_secs(2);
    let gone = Lnbits::new(cfg).unwrap();
    assert!(matches!(
        gone.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await,
        Err(LightningError::Unreachable {
            backend: "lnbits",
            call: "create_invoice",
            ..
        })
    ));
    assert!(matches!(
        gone.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
        Err(LightningError::Unreachable {
            call: "check_payment",
            ..
        })
    ));
}
