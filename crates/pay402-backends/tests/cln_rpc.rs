//! The Core Lightning JSON-RPC client ([`ClnRpc`]) against a fake
//! `lightningd` on a real unix socket (`<tmp>/regtest/lightning-rpc`), backed
//! by simnet nodes: invoices are real signed BOLT11 and payments move simnet
//! balances. See `common_cln` for the CLN behaviour the fake reproduces.
//!
//! ## Running the same checks against real nodes
//!
//! The example `node_check` runs them against real nodes (`--pair`:
//! merchant from the plain variables, payer from the `PAYER_`-prefixed ones). It needs two CLN nodes
//! with a channel from the payer to the merchant (e.g. a regtest pair from
//! `contrib/startup_regtest.sh`) and these variables:
//!
//! | Variable | Meaning |
//! |---|---|
//! | `CLN_RPC_PATH` (or `CLN_LIGHTNING_DIR`) | the merchant's `lightning-rpc` socket |
//! | `CLN_NETWORK` | e.g. `regtest` |
//! | `PAYER_CLN_RPC_PATH` (or `PAYER_CLN_LIGHTNING_DIR`) | the payer's `lightning-rpc` socket |
//! | `PAYER_CLN_NETWORK` | e.g. `regtest` |
//!
//! ```sh
//! CLN_RPC_PATH=/tmp/l2-regtest/regtest/lightning-rpc CLN_NETWORK=regtest \
//! PAYER_CLN_RPC_PATH=/tmp/l1-regtest/regtest/lightning-rpc PAYER_CLN_NETWORK=regtest \
//! PAY402_LIGHTNING=cln PAY402_PAYER_LIGHTNING=cln cargo run --example node_check -- --pair
//! ```
//!
//! It creates a 1 000 sat invoice on the merchant, checks it is `Open`, pays
//! it from the payer, checks it is `Settled` with the payer's preimage, and
//! pays it again to check that the earlier payment is returned.
#![cfg(all(feature = "cln", feature = "simnet-rest", unix))]

mod common_cln;

use std::str::FromStr;
use std::time::{Duration, Instant};

use common_cln::{FakeCln, Raw, SocketServer, serve_socket};
use lightning_invoice::Bolt11Invoice;
use pay402_backends::cln::{Cln, ClnRpc, ClnRpcConfig};
use pay402_backends::simnet::{FeePolicy, SimNet, SimNode};
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, Network,
    PayRequest, Payment, PaymentHash, Preimage,
};
use pay402_core::money::Msat;
use serde_json::json;

fn client(sock: &SocketServer) -> ClnRpc {
    client_with_timeout(sock, Duration::from_secs(5))
}

fn client_with_timeout(sock: &SocketServer, timeout: Duration) -> ClnRpc {
    let mut cfg = ClnRpcConfig::new(&sock.path, Network::Regtest);
    cfg.timeout = timeout;
    ClnRpc::new(cfg).unwrap()
}

struct World {
    net: SimNet,
    merchant: SimNode,
    payer: SimNode,
    fake_m: FakeCln,
    fake_p: FakeCln,
    sock_m: SocketServer,
    sock_p: SocketServer,
    m: ClnRpc,
    p: ClnRpc,
}

async fn world() -> World {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(10_000_000));
    let fake_m = FakeCln::new(merchant.clone());
    let fake_p = FakeCln::new(payer.clone());
    let sock_m = serve_socket(&fake_m).await;
    let sock_p = serve_socket(&fake_p).await;
    let m = client(&sock_m);
    let p = client(&sock_p);
    World {
        net,
        merchant,
        payer,
        fake_m,
        fake_p,
        sock_m,
        sock_p,
        m,
        p,
    }
}

fn failure(res: Result<Payment, LightningError>) -> String {
    match res {
        Err(LightningError::PaymentFailed { reason }) => reason,
        other => panic!("expected PaymentFailed, got {other:?}"),
    }
}

fn invalid_call(res: &Result<impl std::fmt::Debug, LightningError>) -> (&'static str, String) {
    match res {
        Err(LightningError::InvalidResponse {
            backend: "cln",
            call,
            detail,
        }) => (call, detail.clone()),
        other => panic!("expected InvalidResponse, got {other:?}"),
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
    let decoded = Bolt11Invoice::from_str(&inv.bolt11).unwrap();
    assert_eq!(decoded.amount_milli_satoshis(), Some(150_000));
    assert_eq!(decoded.recover_payee_pub_key(), w.merchant.node_id());
    assert_eq!(w.fake_m.calls(), ["invoice"]);
    assert_eq!(
        w.m.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );

    let payment =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(2_000)))
            .await
            .unwrap();
    assert_eq!(payment.payment_hash, inv.payment_hash);
    assert!(payment.preimage.matches(&inv.payment_hash));
    assert_eq!(payment.amount, Msat(150_000));
    assert_eq!(payment.fee, Msat(1_000), "amount_sent_msat - amount_msat");
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 151_000));
    assert_eq!(w.merchant.balance(), Msat(150_000));
    assert_eq!(w.fake_p.calls(), ["listpays", "pay"]);

    match w.m.lookup_invoice(&inv.payment_hash).await.unwrap() {
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
    assert_eq!(
        w.fake_p.count("pay"),
        1,
        "the repeat is answered by listpays"
    );
    assert_eq!(w.fake_p.count("listpays"), 2);
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 4_000));
    assert_eq!(w.payer.payments_sent(), 1);
}

#[tokio::test]
async fn without_listpays_pays_own_duplicate_check_applies() {
    // e.g. a node whose pay plugin's listpays is unavailable.
    let w = world().await;
    w.fake_p.quirks(|q| {
        q.refuse.insert(
            "listpays".into(),
            (-32601, "Unknown command 'listpays'".into()),
        );
    });
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(7_000), "x"))
        .await
        .unwrap();
    let req = PayRequest::new(&inv.bolt11, Msat(0));
    let first = w.p.pay_invoice(&req).await.unwrap();
    let second = w.p.pay_invoice(&req).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(w.fake_p.count("pay"), 2);
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 7_000));
}

#[tokio::test]
async fn already_paid_errors_are_resolved_with_listpays() {
    let w = world().await;
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(9_000), "x"))
        .await
        .unwrap();
    let req = PayRequest::new(&inv.bolt11, Msat(0));
    let first = w.p.pay_invoice(&req).await.unwrap();
    // The pre-check misses the payment (a lagging listpays) and pay answers
    // with an error instead of the earlier success.
    w.fake_p.quirks(|q| {
        q.listpays_lag = 1;
        q.repeat_pay_error = Some((
            201,
            "Already paid with this hash using different amount or destination".into(),
        ));
    });
    let second = w.p.pay_invoice(&req).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        w.fake_p.calls(),
        ["listpays", "pay", "listpays", "pay", "listpays"]
    );
    assert_eq!(w.payer.payments_sent(), 1);

    // Same code, but the hash was paid through another invoice: nothing of
    // ours to return, and nothing was sent now.
    let other = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "other"))
        .await
        .unwrap();
    w.fake_p.quirks(|q| {
        q.refuse.insert(
            "pay".into(),
            (
                201,
                "Already paid with this hash using different amount or destination".into(),
            ),
        );
    });
    let reason = failure(
        w.p.pay_invoice(&PayRequest::new(&other.bolt11, Msat(0)))
            .await,
    );
    assert!(reason.contains("already used"), "{reason}");
}

#[tokio::test]
async fn failed_payments_move_nothing_and_name_the_cln_code() {
    let w = world().await;
    let poor = w.net.add_node("poor", Msat(1_000));
    let fake_poor = FakeCln::new(poor.clone());
    let sock_poor = serve_socket(&fake_poor).await;
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(150_000), "x"))
        .await
        .unwrap();
    let reason = failure(
        client(&sock_poor)
            .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
    );
    assert!(
        reason.starts_with("no route:") && reason.contains("(cln error 205)"),
        "{reason}"
    );
    assert_eq!(poor.balance(), Msat(1_000));

    w.payer.fail_next_payments(1);
    let reason = failure(
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
    );
    assert!(reason.contains("(cln error 210)"), "{reason}");

    w.net.set_fee(FeePolicy {
        base: Msat(10_000),
        ppm: 0,
    });
    let reason = failure(
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(1_000)))
            .await,
    );
    assert!(reason.contains("(cln error 206)"), "{reason}");

    let mut short = InvoiceRequest::new(Msat(1_000), "short-lived");
    short.expiry = Duration::from_secs(1);
    let expiring = w.merchant.create_invoice(&short).await.unwrap();
    w.net.advance_clock(Duration::from_secs(10));
    let reason = failure(
        w.p.pay_invoice(&PayRequest::new(&expiring.bolt11, Msat(100_000)))
            .await,
    );
    assert!(reason.contains("(cln error 207)"), "{reason}");

    assert_eq!(w.payer.balance(), Msat(10_000_000));
    assert_eq!(w.merchant.balance(), Msat(0));
    // A failed attempt does not block a new one.
    w.net.set_fee(FeePolicy::ZERO);
    let p =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await
            .unwrap();
    assert!(p.preimage.matches(&inv.payment_hash));
}

#[tokio::test]
async fn a_timed_out_pay_is_unknown_and_never_retried_blindly() {
    let w = world().await;
    w.fake_p.quirks(|q| q.pay_delay = Duration::from_secs(10));
    let p = client_with_timeout(&w.sock_p, Duration::from_millis(300));
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(5_000), "slow"))
        .await
        .unwrap();
    let mut req = PayRequest::new(&inv.bolt11, Msat(0));
    req.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let res = p.pay_invoice(&req).await;
    assert_eq!(
        res,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        })
    );
    // Bounded by the 1 s budget, far below the node's 10 s delay.
    assert!(started.elapsed() < Duration::from_secs(8));
    // The node went on and paid.
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 5_000));

    // Asking again returns the payment the node made, without paying again.
    // (through a client with an ordinary timeout: the 300 ms one could trip
    // on a loaded machine)
    let patient = client_with_timeout(&w.sock_p, Duration::from_secs(10));
    let again = patient.pay_invoice(&req).await.unwrap();
    assert!(again.preimage.matches(&inv.payment_hash));
    assert_eq!(w.fake_p.count("pay"), 1);
    assert_eq!(w.payer.payments_sent(), 1);
}

#[tokio::test]
async fn pending_payments_are_waited_for_then_unknown() {
    let w = world().await;
    w.fake_p.quirks(|q| q.pay_pending = true);
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(6_000), "stuck"))
        .await
        .unwrap();
    let req = PayRequest::new(&inv.bolt11, Msat(0));
    assert_eq!(
        w.p.pay_invoice(&req).await,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        }),
        "pay returned status pending"
    );

    // Still pending when the request's timeout passes: unknown again.
    let mut short = req.clone();
    short.timeout = Duration::from_millis(400);
    let started = Instant::now();
    assert!(matches!(
        w.p.pay_invoice(&short).await,
        Err(LightningError::Unknown { .. })
    ));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        w.fake_p.count("pay"),
        1,
        "a pending payment is never re-sent"
    );

    // The payment completes while the next call waits for it.
    let fake = w.fake_p.clone();
    let bolt11 = inv.bolt11.clone();
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        fake.complete_pending(&bolt11).await;
    });
    let paid = w.p.pay_invoice(&req).await.unwrap();
    finisher.await.unwrap();
    assert!(paid.preimage.matches(&inv.payment_hash));
    assert_eq!(w.fake_p.count("pay"), 1);
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 6_000));
}

#[tokio::test]
async fn in_progress_without_listpays_is_unknown() {
    let w = world().await;
    w.fake_p.quirks(|q| {
        q.pay_pending = true;
        q.refuse.insert(
            "listpays".into(),
            (-32601, "Unknown command 'listpays'".into()),
        );
    });
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(6_000), "stuck"))
        .await
        .unwrap();
    let req = PayRequest::new(&inv.bolt11, Msat(0));
    for _ in 0..2 {
        assert_eq!(
            w.p.pay_invoice(&req).await,
            Err(LightningError::Unknown {
                payment_hash: inv.payment_hash
            })
        );
    }
    // The second pay was answered with 200 "in progress".
    assert_eq!(w.fake_p.count("pay"), 2);
    assert_eq!(w.payer.balance(), Msat(10_000_000));
}

#[tokio::test]
async fn duplicate_labels_are_retried_with_fresh_labels() {
    let w = world().await;
    w.fake_m.quirks(|q| q.duplicate_labels = 2);
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await
            .unwrap();
    assert!(w.merchant.invoice(&inv.payment_hash).is_some());
    assert_eq!(w.fake_m.count("invoice"), 3);

    w.fake_m.quirks(|q| q.duplicate_labels = 3);
    let res =
        w.m.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await;
    assert!(
        matches!(&res, Err(LightningError::Rejected { backend: "cln", call: "invoice", detail })
            if detail.contains("Duplicate label") && detail.contains("(cln error 900)")),
        "{res:?}"
    );
    assert_eq!(w.merchant.invoices_created(), 1);
}

#[tokio::test]
async fn msat_strings_of_old_versions_are_accepted() {
    let w = world().await;
    w.net.set_fee(FeePolicy {
        base: Msat(7),
        ppm: 0,
    });
    w.fake_m.quirks(|q| q.msat_strings = true);
    w.fake_p.quirks(|q| q.msat_strings = true);
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(Msat(21_000), "old"))
            .await
            .unwrap();
    let p =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(100)))
            .await
            .unwrap();
    assert_eq!((p.amount, p.fee), (Msat(21_000), Msat(7)));
    // The repeat goes through listpays, with msat strings too.
    let again =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(100)))
            .await
            .unwrap();
    assert_eq!(again, p);
    assert!(matches!(
        w.m.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Settled {
            amount_paid: Msat(21_000),
            ..
        }
    ));
}

#[tokio::test]
async fn responses_split_into_small_pieces_are_reassembled() {
    let w = world().await;
    w.fake_m.quirks(|q| q.split_writes = true);
    w.fake_p.quirks(|q| q.split_writes = true);
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(
            Msat(3_000),
            "a memo with } and { and \" quotes",
        ))
        .await
        .unwrap();
    let p =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await
            .unwrap();
    assert!(p.preimage.matches(&inv.payment_hash));
    assert!(
        w.m.lookup_invoice(&inv.payment_hash)
            .await
            .unwrap()
            .is_settled()
    );
}

#[tokio::test]
async fn all_zero_preimages_are_invalid() {
    let w = world().await;
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(Msat(2_000), "x"))
            .await
            .unwrap();
    w.fake_p.quirks(|q| q.zero_preimage = true);
    let res =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await;
    let (call, detail) = invalid_call(&res);
    assert_eq!(call, "pay");
    assert!(detail.contains("all-zero"), "{detail}");
    // The repeat finds the payment in listpays, with the same bad preimage.
    let res =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await;
    assert_eq!(invalid_call(&res).0, "listpays");

    w.fake_m.quirks(|q| q.zero_preimage = true);
    let res = w.m.lookup_invoice(&inv.payment_hash).await;
    let (call, detail) = invalid_call(&res);
    assert_eq!(call, "listinvoices");
    assert!(detail.contains("all-zero"), "{detail}");
}

#[tokio::test]
async fn malformed_answers_are_invalid_responses() {
    let w = world().await;
    let req = InvoiceRequest::new(Msat(1_000), "x");
    let other = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(2_000), "other"))
        .await
        .unwrap();
    let raw = |body: &[u8]| Raw {
        status: 201,
        body: body.to_vec(),
    };

    // invoice
    for (what, quirk) in [
        ("not JSON", Some(raw(b"this is not json\n\n"))),
        ("a JSON array", Some(raw(b"[1,2,3]\n\n"))),
        (
            "another request's id",
            Some(raw(br#"{"jsonrpc":"2.0","id":"someone-else","result":{}}"#)),
        ),
        (
            "neither result nor error",
            Some(raw(br#"{"jsonrpc":"2.0","id":"pay402:invoice#1"}"#)),
        ),
    ] {
        let fresh = world().await;
        fresh.fake_m.quirks(|q| {
            q.raw.insert("invoice".into(), quirk.unwrap());
        });
        let res = fresh.m.create_invoice(&req).await;
        assert_eq!(invalid_call(&res).0, "invoice", "{what}");
    }
    for (what, result) in [
        ("wrong types", json!({"payment_hash": 42, "bolt11": []})),
        (
            "another invoice",
            json!({"payment_hash": other.payment_hash.to_hex(), "bolt11": other.bolt11}),
        ),
        (
            "hash and bolt11 disagree",
            json!({"payment_hash": "11".repeat(32), "bolt11": other.bolt11}),
        ),
        (
            "bolt11 garbage",
            json!({"payment_hash": "11".repeat(32), "bolt11": "lnbc1xyz"}),
        ),
    ] {
        w.fake_m.quirks(|q| {
            q.result_override.insert("invoice".into(), result);
        });
        let res = w.m.create_invoice(&req).await;
        assert_eq!(invalid_call(&res).0, "invoice", "{what}");
    }
    w.fake_m.quirks(|q| q.result_override.clear());

    // listinvoices
    let hash = other.payment_hash;
    for (what, result) in [
        (
            "bad preimage",
            json!({"invoices": [{"status": "paid", "payment_hash": hash.to_hex(), "payment_preimage": "zz", "amount_msat": 1}]}),
        ),
        (
            "preimage of another hash",
            json!({"invoices": [{"status": "paid", "payment_hash": hash.to_hex(), "payment_preimage": "22".repeat(32), "amount_msat": 1}]}),
        ),
        (
            "paid without preimage",
            json!({"invoices": [{"status": "paid", "payment_hash": hash.to_hex(), "amount_msat": 1}]}),
        ),
        (
            "unknown status",
            json!({"invoices": [{"status": "weird", "payment_hash": hash.to_hex()}]}),
        ),
        (
            "another hash",
            json!({"invoices": [{"status": "unpaid", "payment_hash": "33".repeat(32)}]}),
        ),
        (
            "msat nonsense",
            json!({"invoices": [{"status": "unpaid", "payment_hash": hash.to_hex(), "amount_msat": "lots"}]}),
        ),
        ("not a list", json!({"invoices": {}})),
    ] {
        w.fake_m.quirks(|q| {
            q.result_override.insert("listinvoices".into(), result);
        });
        let res = w.m.lookup_invoice(&hash).await;
        assert_eq!(invalid_call(&res).0, "listinvoices", "{what}");
    }
    w.fake_m.quirks(|q| {
        q.result_override.clear();
        // Over the 8 MiB response limit.
        let mut huge = br#"{"jsonrpc":"2.0","id":"x","result":{"pad":""#.to_vec();
        huge.resize(9 * 1024 * 1024, b'a');
        q.raw.insert("listinvoices".into(), raw(&huge));
    });
    let res = w.m.lookup_invoice(&hash).await;
    let (call, detail) = invalid_call(&res);
    assert_eq!(call, "listinvoices");
    assert!(detail.contains("larger than"), "{detail}");

    // pay (and its listpays pre-check); nothing is paid by the fake here.
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "p"))
        .await
        .unwrap();
    let wrong = Preimage::from_bytes([0x44; 32]);
    for (method, what, result) in [
        ("listpays", "not a list", json!({"pays": "nope"})),
        (
            "listpays",
            "complete without preimage",
            json!({"pays": [{"status": "complete", "payment_hash": inv.payment_hash.to_hex()}]}),
        ),
        (
            "listpays",
            "unknown status",
            json!({"pays": [{"status": "odd"}]}),
        ),
        (
            "pay",
            "wrong preimage",
            json!({"status": "complete", "payment_preimage": wrong.to_hex(), "payment_hash": inv.payment_hash.to_hex()}),
        ),
        ("pay", "status not a string", json!({"status": 7})),
        ("pay", "unknown status", json!({"status": "maybe"})),
        (
            "pay",
            "another hash",
            json!({"status": "complete", "payment_preimage": wrong.to_hex(), "payment_hash": wrong.payment_hash().to_hex()}),
        ),
    ] {
        let fresh = world().await;
        fresh.fake_p.quirks(|q| {
            q.result_override.insert(method.into(), result);
        });
        let res = fresh
            .p
            .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await;
        assert_eq!(invalid_call(&res).0, method, "{method}: {what}");
    }
}

#[tokio::test]
async fn a_dropped_connection_is_unreachable_or_unknown() {
    let w = world().await;
    let truncated = Raw {
        status: 201,
        body: br#"{"jsonrpc":"2.0","id":"pay402:listinvoices#1","result":{"invoi"#.to_vec(),
    };
    w.fake_m.quirks(|q| {
        q.raw.insert("listinvoices".into(), truncated.clone());
    });
    let res = w.m.lookup_invoice(&PaymentHash([1; 32])).await;
    assert!(
        matches!(&res, Err(LightningError::Unreachable { call: "listinvoices", detail, .. }) if detail.contains("closed")),
        "{res:?}"
    );
    // For pay the node may have acted: unknown.
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    w.fake_p.quirks(|q| {
        q.raw.insert("pay".into(), truncated);
    });
    assert_eq!(
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        })
    );
}

#[tokio::test]
async fn errors_name_the_call_and_nothing_is_sent_for_bad_input() {
    let w = world().await;
    assert_eq!(
        w.m.lookup_invoice(&PaymentHash([7; 32])).await,
        Err(LightningError::NotFound)
    );
    assert!(matches!(
        w.m.create_invoice(&InvoiceRequest::new(Msat(0), "free"))
            .await,
        Err(LightningError::Rejected {
            backend: "cln",
            call: "invoice",
            ..
        })
    ));
    w.fake_m.quirks(|q| {
        q.refuse.insert(
            "invoice".into(),
            (-32602, "description: should be a string".into()),
        );
    });
    let res =
        w.m.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await;
    assert!(
        matches!(&res, Err(LightningError::Rejected { call: "invoice", detail, .. }) if detail == "description: should be a string (cln error -32602)"),
        "{res:?}"
    );

    // Invoices are decoded before anything is sent.
    let calls_before = w.fake_p.calls().len();
    assert!(
        failure(
            w.p.pay_invoice(&PayRequest::new("lnbcrt1garbage", Msat(0)))
                .await
        )
        .contains("invalid invoice")
    );
    let mainnet = SimNet::new(Network::Bitcoin).add_node("m", Msat(0));
    let main_inv = mainnet
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    assert!(
        failure(
            w.p.pay_invoice(&PayRequest::new(&main_inv.bolt11, Msat(0)))
                .await
        )
        .contains("is for bitcoin")
    );
    assert_eq!(w.fake_p.calls().len(), calls_before);

    // A node-side parameter error on pay is a rejection (nothing was sent).
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    w.fake_p.quirks(|q| {
        q.refuse.insert(
            "pay".into(),
            (-32602, "maxfee: should be a millisatoshi amount".into()),
        );
    });
    assert!(matches!(
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
        Err(LightningError::Rejected { call: "pay", .. })
    ));
}

#[tokio::test]
async fn a_missing_socket_is_unreachable() {
    let dir = common_cln::temp_lightning_dir();
    let node = ClnRpc::new(ClnRpcConfig::new(
        dir.join("regtest/lightning-rpc"),
        Network::Regtest,
    ))
    .unwrap();
    assert!(matches!(
        node.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await,
        Err(LightningError::Unreachable {
            backend: "cln",
            call: "invoice",
            ..
        })
    ));
    assert!(matches!(
        node.lookup_invoice(&PaymentHash([1; 32])).await,
        Err(LightningError::Unreachable {
            call: "listinvoices",
            ..
        })
    ));
    let net = SimNet::new(Network::Regtest);
    let inv = net
        .add_node("m", Msat(0))
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    assert!(matches!(
        node.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
        Err(LightningError::Unreachable {
            call: "listpays",
            ..
        })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn from_vars_finds_the_socket_under_the_lightning_dir() {
    let w = world().await;
    let dir = w.sock_m.lightning_dir.to_string_lossy().into_owned();
    let node = Cln::from_vars(|name| match name {
        "CLN_LIGHTNING_DIR" => Some(dir.clone()),
        "CLN_NETWORK" => Some("regtest".into()),
        _ => None,
    })
    .unwrap();
    assert!(matches!(node, Cln::Rpc(_)));
    assert_eq!(node.network(), Network::Regtest);
    let inv = node
        .create_invoice(&InvoiceRequest::new(Msat(8_000), "env"))
        .await
        .unwrap();
    assert_eq!(
        node.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    assert_eq!(w.merchant.invoices_created(), 1);
}
