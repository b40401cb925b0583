//! The clnrest client ([`ClnRest`]) against a fake clnrest over HTTPS with
//! CLN's certificate layout (a `ca.pem` CA and a `server.pem` for the names
//! `cln` and `localhost`), backed by simnet nodes. See `common_cln` for the
//! CLN behaviour the fake reproduces.
//!
//! ## Running the same checks against real nodes
//!
//! The example `node_check` runs them against real nodes (`--pair`:
//! merchant from the plain variables, payer from the `PAYER_`-prefixed ones). It needs two CLN nodes
//! (v23.08+) running clnrest, a channel from the payer to the merchant, and:
//!
//! | Variable | Meaning |
//! |---|---|
//! | `CLN_REST_URL` | the merchant's clnrest, e.g. `https://localhost:3010` |
//! | `CLN_RUNE` | a rune allowing `invoice` and `listinvoices` (`lightning-cli createrune`) |
//! | `CLN_TLS_CERT_PATH` | the merchant's `<lightning-dir>/<network>/ca.pem` |
//! | `CLN_NETWORK` | e.g. `regtest` |
//! | `PAYER_CLN_REST_URL`, `PAYER_CLN_RUNE`, `PAYER_CLN_TLS_CERT_PATH`, `PAYER_CLN_NETWORK` | the same for the payer (the rune must allow `pay` and `listpays`) |
//!
//! ```sh
//! CLN_REST_URL=https://localhost:3010 CLN_RUNE=... CLN_TLS_CERT_PATH=/tmp/l2/regtest/ca.pem CLN_NETWORK=regtest \
//! PAYER_CLN_REST_URL=https://localhost:3011 PAYER_CLN_RUNE=... PAYER_CLN_TLS_CERT_PATH=/tmp/l1/regtest/ca.pem PAYER_CLN_NETWORK=regtest \
//! PAY402_LIGHTNING=cln PAY402_PAYER_LIGHTNING=cln cargo run --example node_check -- --pair
//! ```
//!
//! Use `https://localhost:<port>`, not `https://127.0.0.1:<port>`: CLN's
//! `server.pem` names only `cln` and `localhost`.
#![cfg(all(feature = "cln", feature = "simnet-rest"))]

mod common_cln;

use std::time::{Duration, Instant};

use common_cln::{
    CLN_CA, CLN_OTHER_CA, CLN_SERVER_CERT, FakeCln, Raw, RestServer, serve_rest, serve_rest_plain,
};
use pay402_backends::cln::{Cln, ClnRest, ClnRestConfig};
use pay402_backends::simnet::{SimNet, SimNode};
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, Network,
    PayRequest,
};
use pay402_core::money::Msat;
use serde_json::json;

const MERCHANT_RUNE: &str = "mRXRPfWbKo5ERTsZp1EjkkSiqWgf-ow9uOgyl3rN4_Y9MCZtZXRob2Q9aW52b2ljZQ==";
const PAYER_RUNE: &str = "9nQKF_6Ta1hoYDCpVYnvsm3rA8F_crIXZb9SATDA49I9MSZtZXRob2Q9cGF5";

fn client(url: &str, rune: &str, pem: Option<&[u8]>, timeout: Duration) -> ClnRest {
    let mut cfg = ClnRestConfig::new(url.parse().unwrap(), rune, Network::Regtest);
    cfg.tls_cert_pem = pem.map(<[u8]>::to_vec);
    cfg.timeout = timeout;
    ClnRest::new(cfg).unwrap()
}

fn pinned(server: &RestServer, rune: &str) -> ClnRest {
    client(
        &format!("https://localhost:{}", server.port),
        rune,
        Some(CLN_CA),
        Duration::from_secs(5),
    )
}

struct World {
    merchant: SimNode,
    payer: SimNode,
    fake_m: FakeCln,
    fake_p: FakeCln,
    rest_m: RestServer,
    rest_p: RestServer,
    m: ClnRest,
    p: ClnRest,
}

async fn world() -> World {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(10_000_000));
    let fake_m = FakeCln::new(merchant.clone());
    let fake_p = FakeCln::new(payer.clone());
    let rest_m = serve_rest(&fake_m, MERCHANT_RUNE).await;
    let rest_p = serve_rest(&fake_p, PAYER_RUNE).await;
    let m = pinned(&rest_m, MERCHANT_RUNE);
    let p = pinned(&rest_p, PAYER_RUNE);
    World {
        merchant,
        payer,
        fake_m,
        fake_p,
        rest_m,
        rest_p,
        m,
        p,
    }
}

#[tokio::test]
async fn round_trip_over_pinned_https_and_idempotent_repay() {
    let w = world().await;
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(Msat(120_000), "GET /rest"))
            .await
            .unwrap();
    assert_eq!(
        w.m.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    let req = PayRequest::new(&inv.bolt11, Msat(1_000));
    let paid = w.p.pay_invoice(&req).await.unwrap();
    assert!(paid.preimage.matches(&inv.payment_hash));
    assert_eq!((paid.amount, paid.fee), (Msat(120_000), Msat(0)));
    match w.m.lookup_invoice(&inv.payment_hash).await.unwrap() {
        InvoiceState::Settled {
            preimage,
            amount_paid,
        } => {
            assert_eq!(preimage, paid.preimage);
            assert_eq!(amount_paid, Msat(120_000));
        }
        other => panic!("expected Settled, got {other:?}"),
    }
    assert_eq!(w.p.pay_invoice(&req).await.unwrap(), paid);
    assert_eq!(w.fake_p.count("pay"), 1);
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 120_000));
    assert_eq!(w.merchant.balance(), Msat(120_000));
}

#[tokio::test]
async fn the_node_certificate_is_pinned() {
    let w = world().await;
    let req = InvoiceRequest::new(Msat(1_000), "x");
    let url = format!("https://localhost:{}", w.rest_m.port);
    let t = Duration::from_secs(5);

    // Pinning server.pem itself works as well as pinning ca.pem.
    let leaf = client(&url, MERCHANT_RUNE, Some(CLN_SERVER_CERT), t);
    assert!(leaf.create_invoice(&req).await.is_ok());

    for (name, node, why) in [
        (
            "another node's CA",
            client(&url, MERCHANT_RUNE, Some(CLN_OTHER_CA), t),
            "not the pinned",
        ),
        (
            "public roots",
            client(&url, MERCHANT_RUNE, None, t),
            "UnknownIssuer",
        ),
        // server.pem names only `cln` and `localhost`.
        (
            "an IP address",
            client(
                &format!("https://127.0.0.1:{}", w.rest_m.port),
                MERCHANT_RUNE,
                Some(CLN_CA),
                t,
            ),
            "not valid for name",
        ),
    ] {
        let res = node.create_invoice(&req).await;
        assert!(
            matches!(&res, Err(LightningError::Unreachable { backend: "cln", call: "invoice", detail }) if detail.contains(why)),
            "{name}: {res:?}"
        );
    }
    assert_eq!(w.merchant.invoices_created(), 1);
}

#[tokio::test]
async fn a_wrong_rune_is_rejected_and_nothing_is_paid() {
    let w = world().await;
    let url = format!("https://localhost:{}", w.rest_m.port);
    let wrong = client(&url, PAYER_RUNE, Some(CLN_CA), Duration::from_secs(5));
    let res = wrong
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await;
    assert!(
        matches!(&res, Err(LightningError::Rejected { backend: "cln", call: "invoice", detail })
            if detail == "Not authorized: Not derived from master (cln error 1501)"),
        "{res:?}"
    );
    assert!(matches!(
        wrong
            .lookup_invoice(&pay402_core::lightning::PaymentHash([1; 32]))
            .await,
        Err(LightningError::Rejected {
            call: "listinvoices",
            ..
        })
    ));

    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await
        .unwrap();
    let payer_url = format!("https://localhost:{}", w.rest_p.port);
    let wrong_payer = client(
        &payer_url,
        MERCHANT_RUNE,
        Some(CLN_CA),
        Duration::from_secs(5),
    );
    let res = wrong_payer
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
        .await;
    assert!(
        matches!(&res, Err(LightningError::Rejected { call: "pay", detail, .. }) if detail.contains("1501")),
        "{res:?}"
    );
    assert_eq!(w.payer.balance(), Msat(10_000_000));
    assert_eq!(w.fake_p.count("pay"), 0, "refused by the rune check");
}

#[tokio::test]
async fn a_rune_restricted_to_pay_still_pays_once() {
    let w = world().await;
    w.fake_p.quirks(|q| {
        q.refuse.insert(
            "listpays".into(),
            (1502, "Not permitted: method is not equal to pay".into()),
        );
    });
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(2_500), "x"))
        .await
        .unwrap();
    let req = PayRequest::new(&inv.bolt11, Msat(0));
    let first = w.p.pay_invoice(&req).await.unwrap();
    let second = w.p.pay_invoice(&req).await.unwrap();
    assert_eq!(first, second, "pay answers the earlier success itself");
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 2_500));
}

#[tokio::test]
async fn failures_timeouts_and_server_errors() {
    let w = world().await;
    // No route: nothing moves.
    let poor_net = SimNet::new(Network::Regtest);
    let far = poor_net
        .add_node("far", Msat(0))
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "unreachable payee"))
        .await
        .unwrap();
    let res =
        w.p.pay_invoice(&PayRequest::new(&far.bolt11, Msat(0)))
            .await;
    assert!(
        matches!(&res, Err(LightningError::PaymentFailed { reason }) if reason.contains("(cln error 205)")),
        "{res:?}"
    );
    assert_eq!(w.payer.balance(), Msat(10_000_000));

    // A pay that does not answer in time is unknown; the node did pay.
    w.fake_p.quirks(|q| q.pay_delay = Duration::from_secs(10));
    let slow = client(
        &format!("https://localhost:{}", w.rest_p.port),
        PAYER_RUNE,
        Some(CLN_CA),
        Duration::from_millis(300),
    );
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(3_000), "slow"))
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
    assert_eq!(w.payer.balance(), Msat(10_000_000 - 3_000));
    // Asked again through a client with an ordinary timeout (the 300 ms one
    // could trip on a loaded machine): the node's payment, not a new one.
    let patient = client(
        &format!("https://localhost:{}", w.rest_p.port),
        PAYER_RUNE,
        Some(CLN_CA),
        Duration::from_secs(10),
    );
    let again = patient.pay_invoice(&req).await.unwrap();
    assert!(again.preimage.matches(&inv.payment_hash));
    assert_eq!(
        w.fake_p.count("pay"),
        2,
        "the no-route attempt and the slow one"
    );

    // A 500 without CLN's error body on pay: the node may have paid.
    w.fake_p.quirks(|q| {
        q.pay_delay = Duration::ZERO;
        q.raw.insert(
            "pay".into(),
            Raw {
                status: 500,
                body: b"<html>Internal Server Error</html>".to_vec(),
            },
        );
    });
    let inv = w
        .merchant
        .create_invoice(&InvoiceRequest::new(Msat(4_000), "proxy"))
        .await
        .unwrap();
    assert_eq!(
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        })
    );
    // ... and on invoice it is unreachable.
    w.fake_m.quirks(|q| {
        q.raw.insert(
            "invoice".into(),
            Raw {
                status: 502,
                body: b"Bad Gateway".to_vec(),
            },
        );
    });
    assert!(matches!(
        w.m.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await,
        Err(LightningError::Unreachable {
            call: "invoice",
            ..
        })
    ));
}

#[tokio::test]
async fn malformed_bodies_are_invalid_and_msat_strings_are_fine() {
    let w = world().await;
    w.fake_m.quirks(|q| {
        q.raw.insert(
            "invoice".into(),
            Raw {
                status: 201,
                body: b"{\"payment_hash\":".to_vec(),
            },
        );
    });
    let res =
        w.m.create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await;
    assert!(
        matches!(
            &res,
            Err(LightningError::InvalidResponse {
                call: "invoice",
                ..
            })
        ),
        "{res:?}"
    );
    w.fake_m.quirks(|q| {
        q.raw.clear();
        q.result_override
            .insert("listinvoices".into(), json!({"invoices": [{"status": 1}]}));
    });
    assert!(matches!(
        w.m.lookup_invoice(&pay402_core::lightning::PaymentHash([1; 32]))
            .await,
        Err(LightningError::InvalidResponse {
            call: "listinvoices",
            ..
        })
    ));
    w.fake_m.quirks(|q| {
        q.result_override.clear();
        q.msat_strings = true;
    });
    w.fake_p.quirks(|q| q.msat_strings = true);
    let inv =
        w.m.create_invoice(&InvoiceRequest::new(Msat(5_000), "x"))
            .await
            .unwrap();
    let paid =
        w.p.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await
            .unwrap();
    assert_eq!(paid.amount, Msat(5_000));
    assert!(matches!(
        w.m.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Settled {
            amount_paid: Msat(5_000),
            ..
        }
    ));
}

#[tokio::test]
async fn plain_http_on_loopback_and_unreachable_ports() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let fake = FakeCln::new(merchant.clone());
    let server = serve_rest_plain(&fake, MERCHANT_RUNE).await;
    let node = Cln::from_vars(|name| match name {
        "CLN_REST_URL" => Some(format!("http://127.0.0.1:{}", server.port)),
        "CLN_RUNE" => Some(MERCHANT_RUNE.into()),
        "CLN_NETWORK" => Some("regtest".into()),
        _ => None,
    })
    .unwrap();
    assert!(matches!(node, Cln::Rest(_)));
    let inv = node
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "plain"))
        .await
        .unwrap();
    assert_eq!(
        node.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );

    let port = server.port;
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let closed = client(
        &format!("http://127.0.0.1:{port}"),
        MERCHANT_RUNE,
        None,
        Duration::from_secs(2),
    );
    assert!(matches!(
        closed
            .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
            .await,
        Err(LightningError::Unreachable {
            call: "invoice",
            ..
        })
    ));
    assert!(matches!(
        closed
            .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
            .await,
        Err(LightningError::Unreachable {
            call: "listpays",
            ..
        })
    ));
}
