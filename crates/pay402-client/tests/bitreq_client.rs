#![cfg(feature = "bitreq")]
//! The BitRequests client against small in-test axum servers that verify
//! what it sends with `pay402_core::bitreq` (tests/bitreq_support): the
//! headers it sends, max_price and free-only, no unpaid probing of
//! state-changing requests, typed errors for hostile 402 headers, refusals,
//! timeouts and bounded resends. Payments that need coins on a chain (on-chain
//! and channels) are tested against a real bcoin node in
//! `bcoin_bitreq_client.rs`; here the wallet's chain backend points at a
//! closed port, so any chain call would fail loudly.

mod bitreq_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bitcoin::Network;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::SecretKey;
use bitreq_support::{MerchantConfig, MerchantServer, Seen};
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_client::bitreq::{
    BitRequests, BitRequestsError, ChannelClient, ChannelConfig, PaymentMethod, RequestOptions,
    Wallet, WalletConfig,
};
use pay402_core::bitreq::PaymentInfo;
use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_core::problem::Reason;

const PRICE: Sat = Sat(4_000);
const SEED: [u8; 32] = [0x11; 32];

/// A chain backend on a port nothing listens on: these tests must not need
/// a chain; if the client called it, the call would fail with
/// `chain_unreachable`.
fn closed_chain() -> Arc<dyn BitcoinChain> {
    Arc::new(
        BitcoindRpc::new(BitcoindConfig {
            url: "http://127.0.0.1:9".parse().unwrap(),
            user: "u".into(),
            password: "p".into(),
            timeout: Duration::from_secs(2),
        })
        .unwrap(),
    )
}

fn wallet() -> Arc<Wallet> {
    Arc::new(Wallet::from_seed(&SEED, WalletConfig::new(Network::Regtest), closed_chain()).unwrap())
}

fn merchant_key() -> SecretKey {
    SecretKey::from_slice(&[0x22; 32]).unwrap()
}

async fn merchant(price: Sat) -> MerchantServer {
    MerchantServer::start(
        MerchantConfig::new(Network::Regtest, price),
        merchant_key(),
        None,
    )
    .await
}

/// A server answering every request with `f(request number)`, counting them.
struct Scripted {
    base: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted<F>(f: F) -> Scripted
where
    F: Fn(usize, &HeaderMap) -> Response + Send + Sync + 'static,
{
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let f = Arc::new(f);
    let app = Router::new().route(
        "/{*path}",
        any(move |headers: HeaderMap| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let f = Arc::clone(&f);
            async move {
                let mut response = f(n, &headers);
                if let Some(ms) = response.headers_mut().remove(DELAY) {
                    let ms: u64 = ms.to_str().unwrap().parse().unwrap();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Scripted { base, hits, task }
}

/// A response header the scripted server strips and obeys: sleep that many
/// milliseconds before answering.
const DELAY: &str = "x-test-delay-ms";

fn delayed(ms: u64, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(DELAY, HeaderValue::from_str(&ms.to_string()).unwrap());
    response
}

fn with_headers(status: StatusCode, pairs: &[(&str, &str)]) -> Response {
    let mut headers = HeaderMap::new();
    for (n, v) in pairs {
        headers.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    (status, headers, "body").into_response()
}

fn has_proof(h: &HeaderMap) -> bool {
    [
        "bitcoin-transaction",
        "bitcoin-transfer",
        "authorization",
        "bitcoin-payment-channel-token",
    ]
    .iter()
    .any(|n| h.contains_key(*n))
}

#[tokio::test]
async fn bit_transfer_sends_signed_headers_the_merchant_verifies() {
    let server = merchant(PRICE).await;
    let w = wallet();
    let client = BitRequests::bit_transfer(Arc::clone(&w), "alice").build();
    let url = server.merchant.resource_url();
    let paid = client.get(&url).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    let receipt = paid.receipt.clone().unwrap();
    assert_eq!(
        paid.response.text().await.unwrap(),
        "paid transfer /resource"
    );
    assert_eq!(receipt.method, PaymentMethod::BitTransfer);
    assert_eq!(
        (receipt.price, receipt.amount, receipt.fee),
        (PRICE, PRICE, Sat(0))
    );
    assert_eq!(server.merchant.requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.merchant.proofs.load(Ordering::SeqCst), 1);

    let accepted = server.merchant.accepted();
    let [Seen::Transfer(t)] = accepted.as_slice() else {
        panic!("expected one transfer, got {accepted:?}");
    };
    assert_eq!(t.payer, "alice");
    assert_eq!(t.payer_pubkey, w.transfer_public_key().unwrap());
    assert_eq!(t.payee_username.as_deref(), Some("merchant"));
    assert_eq!(
        t.payee_address.as_deref(),
        Some(server.merchant.address().to_string().as_str())
    );
    assert_eq!(t.amount, PRICE);
    assert_eq!(t.description, url);
    assert_eq!(receipt.proof_id, t.id_hex());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(t.timestamp_secs().0.abs_diff(now) < 60);

    // A second request pays again with a new transfer (new timestamp → new id).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = client.get(&url).await.unwrap();
    assert_ne!(again.receipt.unwrap().proof_id, receipt.proof_id);
    assert_eq!(server.merchant.accepted().len(), 2);
}

#[tokio::test]
async fn the_transfer_proof_verifies_byte_for_byte() {
    // Capture the raw headers of the paid request.
    let captured: Arc<std::sync::Mutex<Option<(String, String)>>> = Default::default();
    let cap = Arc::clone(&captured);
    let server = scripted(move |n, h| {
        if n == 0 {
            return with_headers(
                StatusCode::PAYMENT_REQUIRED,
                &[
                    ("Price", "5000"),
                    ("Username", "shop"),
                    ("Bitcoin-Address", "mzBc4XEFSdzCDcTxAgf6EZXgsZWpztRhef"),
                ],
            );
        }
        let t = h["bitcoin-transfer"].to_str().unwrap().to_owned();
        let a = h["authorization"].to_str().unwrap().to_owned();
        *cap.lock().unwrap() = Some((t, a));
        (StatusCode::OK, "ok").into_response()
    })
    .await;
    let client = BitRequests::bit_transfer(wallet(), "bob").build();
    let paid = client.get(format!("{}/r", server.base)).await.unwrap();
    assert!(paid.status().is_success());
    let (t, a) = captured.lock().unwrap().clone().unwrap();
    let v = pay402_core::bitreq::transfer::verify(&t, &a).unwrap();
    assert!(t.starts_with("{\"payer\": \"bob\", \"payer_pubkey\": \""));
    assert!(t.contains("\"amount\": 5000, \"timestamp\": "));
    assert_eq!(a.len(), 88);
    assert_eq!(
        v.payee_address.as_deref(),
        Some("mzBc4XEFSdzCDcTxAgf6EZXgsZWpztRhef")
    );
    assert_eq!(
        paid.receipt.unwrap().proof_id,
        sha256::Hash::hash(t.as_bytes()).to_string()
    );
}

#[tokio::test]
async fn free_resources_pass_and_max_price_zero_means_free_only() {
    let server = scripted(|n, h| {
        assert!(!has_proof(h), "request {n} carried a proof");
        if n == 0 {
            (StatusCode::OK, "free").into_response()
        } else {
            with_headers(
                StatusCode::PAYMENT_REQUIRED,
                &[("Price", "3000"), ("Username", "m")],
            )
        }
    })
    .await;
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .max_price(Sat(0))
        .build();
    let free = client.get(format!("{}/free", server.base)).await.unwrap();
    assert_eq!(free.status(), StatusCode::OK);
    assert!(free.receipt.is_none());
    let err = client
        .get(format!("{}/paid", server.base))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BitRequestsError::PriceExceedsMaximum {
                price: Sat(3000),
                max: Sat(0)
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reason(), "price_exceeds_maximum");
    assert!(!err.may_have_paid());
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn price_above_max_is_refused_without_paying() {
    let server = merchant(Sat(12_000)).await;
    let client = BitRequests::bit_transfer(wallet(), "alice").build(); // default max 10 000
    let err = client
        .get(server.merchant.resource_url())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BitRequestsError::PriceExceedsMaximum {
            price: Sat(12_000),
            max: Sat(10_000)
        }
    ));
    // A per-request maximum overrides the client's.
    let paid = client
        .send(
            client.http().get(server.merchant.resource_url()),
            RequestOptions::default().max_price(Sat(12_000)),
        )
        .await
        .unwrap();
    assert!(paid.status().is_success());
    assert_eq!(server.merchant.proofs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unsupported_methods_are_typed_errors() {
    let mut config = MerchantConfig::new(Network::Regtest, PRICE);
    config.transfer = false;
    config.channel = false;
    let server = MerchantServer::start(config, merchant_key(), None).await;
    let client = BitRequests::bit_transfer(wallet(), "alice").build();
    let err = client
        .get(server.merchant.resource_url())
        .await
        .unwrap_err();
    match &err {
        BitRequestsError::UnsupportedMethod { method, offered } => {
            assert_eq!(*method, PaymentMethod::BitTransfer);
            assert_eq!(offered, &vec![PaymentMethod::OnChain]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.reason(), "unsupported_payment_method");
    let client = BitRequests::channel(wallet()).build();
    let err = client
        .get(server.merchant.resource_url())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BitRequestsError::UnsupportedMethod {
            method: PaymentMethod::Channel,
            ..
        }
    ));

    let mut config = MerchantConfig::new(Network::Regtest, PRICE);
    config.onchain = false;
    config.transfer = false;
    let server = MerchantServer::start(config, merchant_key(), None).await;
    let client = BitRequests::on_chain(wallet()).build();
    let err = client
        .get(server.merchant.resource_url())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BitRequestsError::UnsupportedMethod {
            method: PaymentMethod::OnChain,
            ..
        }
    ));
    assert_eq!(server.merchant.proofs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn hostile_402_headers_are_typed_errors_and_nothing_is_paid() {
    let long_user = "u".repeat(200);
    let long_url = format!("https://h/{}", "p".repeat(3000));
    type Case<'a> = (Vec<(&'a str, String)>, PaymentMethod, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("Username", "m".into())],
            PaymentMethod::BitTransfer,
            "missing_header",
        ),
        (
            vec![("Price", "-1".into()), ("Username", "m".into())],
            PaymentMethod::BitTransfer,
            "invalid_price",
        ),
        (
            vec![("Price", "1.5".into()), ("Username", "m".into())],
            PaymentMethod::BitTransfer,
            "invalid_price",
        ),
        (
            vec![("Price", "0x10".into()), ("Username", "m".into())],
            PaymentMethod::BitTransfer,
            "invalid_price",
        ),
        (
            vec![
                ("Price", "99999999999999999999".into()),
                ("Username", "m".into()),
            ],
            PaymentMethod::BitTransfer,
            "invalid_price",
        ),
        (
            vec![
                ("Price", "123456789012345678901234".into()),
                ("Username", "m".into()),
            ],
            PaymentMethod::BitTransfer,
            "header_too_long",
        ),
        (
            vec![("Price", "".into()), ("Username", "m".into())],
            PaymentMethod::BitTransfer,
            "invalid_price",
        ),
        (
            vec![("Price", "0".into()), ("Username", "m".into())],
            PaymentMethod::BitTransfer,
            "invalid_price",
        ),
        (
            vec![
                ("Price", "3000".into()),
                ("Price", "1".into()),
                ("Username", "m".into()),
            ],
            PaymentMethod::BitTransfer,
            "duplicate_header",
        ),
        (
            vec![
                ("Price", "3000".into()),
                ("Username", "a".into()),
                ("username", "b".into()),
            ],
            PaymentMethod::BitTransfer,
            "duplicate_header",
        ),
        (
            vec![("Price", "3000".into()), ("Username", long_user.clone())],
            PaymentMethod::BitTransfer,
            "header_too_long",
        ),
        (
            vec![("Price", "3000".into()), ("Username", "caf\u{e9}".into())],
            PaymentMethod::BitTransfer,
            "invalid_header_value",
        ),
        (
            vec![
                ("Price", "3000".into()),
                ("Bitcoin-Address", "not-an-address".into()),
            ],
            PaymentMethod::OnChain,
            "invalid_address",
        ),
        // A mainnet address offered to a regtest wallet.
        (
            vec![
                ("Price", "3000".into()),
                (
                    "Bitcoin-Address",
                    "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM".into(),
                ),
            ],
            PaymentMethod::OnChain,
            "invalid_address",
        ),
        (
            vec![
                ("Price", "3000".into()),
                ("Bitcoin-Address", "mz Bc4".into()),
            ],
            PaymentMethod::OnChain,
            "invalid_header_value",
        ),
        (
            vec![
                ("Price", "3000".into()),
                (
                    "Bitcoin-Payment-Channel-Server",
                    "http://merchant.example/payment".into(),
                ),
            ],
            PaymentMethod::Channel,
            "insecure_channel_server",
        ),
        (
            vec![
                ("Price", "3000".into()),
                (
                    "Bitcoin-Payment-Channel-Server",
                    "ftp://127.0.0.1/payment".into(),
                ),
            ],
            PaymentMethod::Channel,
            "insecure_channel_server",
        ),
        (
            vec![
                ("Price", "3000".into()),
                ("Bitcoin-Payment-Channel-Server", "not a url".into()),
            ],
            PaymentMethod::Channel,
            "invalid_header_value",
        ),
        (
            vec![
                ("Price", "3000".into()),
                ("Bitcoin-Payment-Channel-Server", long_url),
            ],
            PaymentMethod::Channel,
            "header_too_long",
        ),
    ];
    for (headers, method, reason) in cases {
        let owned = headers.clone();
        let server = scripted(move |_, h| {
            assert!(!has_proof(h));
            let pairs: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
            with_headers(StatusCode::PAYMENT_REQUIRED, &pairs)
        })
        .await;
        let builder = match method {
            PaymentMethod::OnChain => BitRequests::on_chain(wallet()),
            PaymentMethod::BitTransfer => BitRequests::bit_transfer(wallet(), "alice"),
            PaymentMethod::Channel => BitRequests::channel(wallet()),
        };
        let client = builder.retries(0).build();
        let err = client.get(format!("{}/r", server.base)).await.unwrap_err();
        assert_eq!(err.reason(), reason, "{headers:?}: {err}");
        assert!(!err.may_have_paid());
        assert_eq!(server.hits.load(Ordering::SeqCst), 1, "{headers:?}");
    }
}

#[tokio::test]
async fn state_changing_requests_are_never_probed_unpaid() {
    let server = merchant(PRICE).await;
    let client = BitRequests::bit_transfer(wallet(), "alice").build();
    let url = server.merchant.resource_url();
    // No quote: refused before anything is sent.
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let err = client
            .send(
                client.http().request(method.clone(), &url).body("x"),
                RequestOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(&err, BitRequestsError::QuoteRequired { method: m } if *m == method));
        assert_eq!(err.reason(), "quote_required");
    }
    assert_eq!(server.merchant.requests.load(Ordering::SeqCst), 0);

    // With a quote from a GET (two1's get_402_info), the POST is paid up front: one request.
    let quote = client.get_402_info(&url).await.unwrap().unwrap();
    assert_eq!(quote, server.merchant.info());
    assert_eq!(server.merchant.requests.load(Ordering::SeqCst), 1);
    let paid = client
        .send(
            client.http().post(&url).body("data"),
            RequestOptions::default().quote(quote.clone()),
        )
        .await
        .unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(server.merchant.requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.merchant.proofs.load(Ordering::SeqCst), 1);

    // A quote above the maximum: nothing is sent.
    let err = client
        .send(
            client.http().post(&url),
            RequestOptions::default().quote(quote).max_price(Sat(100)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "price_exceeds_maximum");
    assert_eq!(server.merchant.requests.load(Ordering::SeqCst), 2);

    // Free only: the POST may go out unpaid; a 402 is a price error, nothing paid.
    let err = client
        .send(
            client.http().post(&url),
            RequestOptions::default().max_price(Sat(0)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "price_exceeds_maximum");
    assert_eq!(server.merchant.requests.load(Ordering::SeqCst), 3);
    assert_eq!(server.merchant.proofs.load(Ordering::SeqCst), 1);

    // get_402_info of a free resource: None.
    let free = scripted(|_, _| (StatusCode::OK, "free").into_response()).await;
    assert_eq!(
        client
            .get_402_info(format!("{}/x", free.base))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_second_402_is_still_unpaid_and_never_paid_twice() {
    let server = scripted(|_, _| {
        with_headers(
            StatusCode::PAYMENT_REQUIRED,
            &[("Price", "3000"), ("Username", "m")],
        )
    })
    .await;
    let client = BitRequests::bit_transfer(wallet(), "alice").build();
    let err = client.get(format!("{}/r", server.base)).await.unwrap_err();
    assert!(
        matches!(
            err,
            BitRequestsError::StillUnpaid {
                status: StatusCode::PAYMENT_REQUIRED,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reason(), "still_unpaid");
    assert!(err.may_have_paid());
    assert_eq!(err.receipt().unwrap().amount, Sat(3000));
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn problem_answers_to_the_paid_request_are_payment_refused() {
    let server = scripted(|n, _| {
        if n == 0 {
            return with_headers(StatusCode::PAYMENT_REQUIRED, &[("Price", "3000"), ("Username", "m")]);
        }
        let mut r = (
            StatusCode::BAD_REQUEST,
            r#"{"type":"about:blank","title":"Bad","status":400,"reason":"payee_mismatch","detail":"not me"}"#,
        )
            .into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        r
    })
    .await;
    let client = BitRequests::bit_transfer(wallet(), "alice").build();
    let err = client.get(format!("{}/r", server.base)).await.unwrap_err();
    match &err {
        BitRequestsError::PaymentRefused {
            status,
            reason,
            spent,
            receipt,
        } => {
            assert_eq!(*status, StatusCode::BAD_REQUEST);
            assert_eq!(reason, "payee_mismatch");
            assert!(!*spent, "the merchant's ledger refused it");
            assert_eq!(receipt.amount, Sat(3000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.reason(), "payment_refused");
    // A plain-text 400 (two1's style) is the server's answer: returned as is.
    let plain = scripted(|n, _| {
        if n == 0 {
            return with_headers(
                StatusCode::PAYMENT_REQUIRED,
                &[("Price", "3000"), ("Username", "m")],
            );
        }
        (StatusCode::BAD_REQUEST, "Payment already redeemed.").into_response()
    })
    .await;
    let paid = client.get(format!("{}/r", plain.base)).await.unwrap();
    assert_eq!(paid.status(), StatusCode::BAD_REQUEST);
    assert!(paid.receipt.is_some());
}

#[tokio::test]
async fn the_merchant_refuses_a_transfer_for_someone_else() {
    // The 402 names another payee than the one verifying: the merchant's
    // core check fails with payee_mismatch, a typed refusal.
    let server = merchant(PRICE).await;
    let m = Arc::clone(&server.merchant);
    let proxy = scripted(move |_, h| {
        if !has_proof(h) {
            let info = PaymentInfo::new(PRICE)
                .with_username("someone-else")
                .with_bitcoin_address(m.address().to_string());
            let mut headers = HeaderMap::new();
            info.insert_into(&mut headers).unwrap();
            return (StatusCode::PAYMENT_REQUIRED, headers).into_response();
        }
        // Verify as the merchant does: the payee is not "someone-else".
        let t = h["bitcoin-transfer"].to_str().unwrap();
        let a = h["authorization"].to_str().unwrap();
        let v = pay402_core::bitreq::transfer::verify(t, a).unwrap();
        let e = v
            .check_payment(
                PRICE,
                pay402_core::bitreq::AmountRule::Exact,
                Some("merchant"),
                None,
            )
            .unwrap_err();
        let (status, body) = pay402_core::bitreq::rest::error_body(&e);
        let mut r = (StatusCode::from_u16(status).unwrap(), body.to_json()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    })
    .await;
    let client = BitRequests::bit_transfer(wallet(), "alice").build();
    let err = client.get(format!("{}/r", proxy.base)).await.unwrap_err();
    assert!(
        matches!(&err, BitRequestsError::PaymentRefused { reason, .. } if reason == "payee_mismatch"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_bounded_resends() {
    // The first request hangs past the client's timeout; the resend is answered.
    let server = scripted(|n, _| {
        let r = (StatusCode::OK, "late but fine").into_response();
        if n == 0 { delayed(4000, r) } else { r }
    })
    .await;
    // The timeout leaves the resend ample time on a loaded machine.
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .timeout(Duration::from_millis(2000))
        .retries(1)
        .build();
    let paid = client.get(format!("{}/r", server.base)).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);

    // Without resends the timeout is a typed HTTP error.
    let slow = scripted(|_, _| delayed(3000, (StatusCode::OK, "too late").into_response())).await;
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .timeout(Duration::from_millis(300))
        .retries(0)
        .build();
    let err = client.get(format!("{}/r", slow.base)).await.unwrap_err();
    assert_eq!(err.reason(), "http_error");
    assert!(!err.may_have_paid());

    // The paid request is resent with the same proof after a 503.
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let s = Arc::clone(&seen);
    let flaky = scripted(move |n, h| match n {
        0 => with_headers(
            StatusCode::PAYMENT_REQUIRED,
            &[("Price", "3000"), ("Username", "m")],
        ),
        1 => {
            s.lock()
                .unwrap()
                .push(h["bitcoin-transfer"].to_str().unwrap().to_owned());
            (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
        }
        _ => {
            s.lock()
                .unwrap()
                .push(h["bitcoin-transfer"].to_str().unwrap().to_owned());
            (StatusCode::OK, "ok").into_response()
        }
    })
    .await;
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .retries(2)
        .build();
    let paid = client.get(format!("{}/r", flaky.base)).await.unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "the resend carries the same proof");

    // Always 503: bounded, the last answer is returned with the receipt.
    let down = scripted(|n, _| {
        if n == 0 {
            return with_headers(
                StatusCode::PAYMENT_REQUIRED,
                &[("Price", "3000"), ("Username", "m")],
            );
        }
        (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
    })
    .await;
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .retries(2)
        .build();
    let paid = client.get(format!("{}/r", down.base)).await.unwrap();
    assert_eq!(paid.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(paid.receipt.is_some());
    assert_eq!(down.hits.load(Ordering::SeqCst), 1 + 3);
}

#[tokio::test]
async fn a_402_from_another_origin_is_not_paid() {
    let other = scripted(|_, _| {
        with_headers(
            StatusCode::PAYMENT_REQUIRED,
            &[("Price", "3000"), ("Username", "m")],
        )
    })
    .await;
    let target = format!("{}/r", other.base);
    let redirecting =
        scripted(move |_, _| with_headers(StatusCode::FOUND, &[("Location", target.as_str())]))
            .await;
    // The default client does not follow cross-origin redirects at all.
    let client = BitRequests::bit_transfer(wallet(), "alice").build();
    let resp = client
        .get(format!("{}/start", redirecting.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    // One that does: the 402 comes from elsewhere and is refused.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap();
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .http(http)
        .build();
    let err = client
        .get(format!("{}/start", redirecting.base))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "cross_origin_challenge");
    assert_eq!(other.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn channel_servers_are_checked_before_any_money_moves() {
    // Version 1 servers are refused (two1's client did the same).
    let v1 = scripted(|_, _| {
        (
            StatusCode::OK,
            r#"{"public_key":"0316f5d704b828c3252432886a843649730e08ae01bbbd5c6bde63756d7f54f961","version":1,"zeroconf":false}"#,
        )
            .into_response()
    })
    .await;
    let channels = ChannelClient::new(wallet(), reqwest::Client::new(), ChannelConfig::default());
    let err = channels
        .open(&format!("{}/payment", v1.base))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "unsupported_version");
    // A garbage info body.
    let junk = scripted(|_, _| (StatusCode::OK, "<html>").into_response()).await;
    let err = channels
        .open(&format!("{}/payment", junk.base))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "invalid_response");
    // An error answer keeps the server's reason.
    let err404 = scripted(|_, _| {
        let mut r = (
            StatusCode::NOT_FOUND,
            r#"{"reason":"channel_not_found","detail":"no"}"#,
        )
            .into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    })
    .await;
    let err = channels
        .open(&format!("{}/payment", err404.base))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BitRequestsError::ChannelServer { status, reason: Some(r), .. } if *status == StatusCode::NOT_FOUND && r == "channel_not_found"),
        "{err:?}"
    );
    // Plain http to a public host is refused unless allowed explicitly.
    assert_eq!(
        channels
            .check_server("http://merchant.example/payment")
            .unwrap_err()
            .reason(),
        "insecure_channel_server"
    );
    let mut config = ChannelConfig::default();
    config.allow_insecure_http = true;
    let lax = ChannelClient::new(wallet(), reqwest::Client::new(), config);
    assert!(lax.check_server("http://merchant.example/payment").is_ok());
    assert!(
        channels
            .check_server("https://merchant.example/payment")
            .is_ok()
    );
    // A price above the deposit: insufficient balance, nothing opened.
    let err = channels
        .pay(
            &format!("{}/payment", v1.base),
            Sat(200_000),
            Sat(1_000_000),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "insufficient_balance");
    // The first payment of a channel is raised to the minimum output: above max.
    let err = channels
        .pay(&format!("{}/payment", v1.base), Sat(1_000), Sat(2_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BitRequestsError::PriceExceedsMaximum {
                price: Sat(3_000),
                max: Sat(2_000)
            }
        ),
        "{err:?}"
    );
    assert!(channels.channels().await.is_empty());
}

#[tokio::test]
async fn on_chain_payments_fail_typed_when_the_chain_is_down() {
    let server = merchant(PRICE).await;
    let client = BitRequests::on_chain(wallet()).build();
    let err = client
        .get(server.merchant.resource_url())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "chain_unreachable");
    assert_eq!(err.status(), 503);
    assert!(!err.may_have_paid());
    assert_eq!(server.merchant.proofs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wallet_seed_and_keys() {
    let w = wallet();
    assert!(
        Wallet::from_seed(
            &[1; 15],
            WalletConfig::new(Network::Regtest),
            closed_chain()
        )
        .is_err()
    );
    let e = Wallet::from_seed_hex("zz", WalletConfig::new(Network::Regtest), closed_chain())
        .unwrap_err();
    assert_eq!(e.reason(), "invalid_seed");
    let same = Wallet::from_seed_hex(
        &"11".repeat(32),
        WalletConfig::new(Network::Regtest),
        closed_chain(),
    )
    .unwrap();
    assert_eq!(
        same.transfer_public_key().unwrap(),
        w.transfer_public_key().unwrap()
    );
    assert_eq!(same.return_address().unwrap(), w.return_address().unwrap());
    let a = w.receive_address().await.unwrap();
    let b = w.receive_address().await.unwrap();
    assert_ne!(a, b);
    assert_ne!(a, w.return_address().unwrap());
    assert!(a.to_string().starts_with("bcrt1q"));
    let debug = format!("{w:?}");
    assert!(debug.contains("Regtest") && !debug.contains(&hex_of(&SEED)));
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
