#![cfg(all(feature = "x402", feature = "x402-mock", feature = "bitreq"))]
//! Default timeouts of every paying client, and what a server that takes the
//! payment and then never answers yields.
//!
//! For each client: the defaults read back from the built client are the
//! documented ones (connect 10 s, total 60 s per attempt; 30 s for
//! BitRequests), `timeout(d)` and `no_timeout()` change them, and a server
//! that accepts the paid request and never answers gives, within a short
//! configured timeout and without any HTTP client of the test's own, the
//! client's typed `retry_failed` error carrying what was paid
//! (`may_have_paid()`), with exactly one payment made.
//!
//! L402 pays through the simnet (pay402-backends' in-process Lightning
//! network, real signed BOLT11 invoices) to the hostile L402 server of the
//! client battery; the x402, x402_mock and BitRequests servers are small
//! in-test axum servers, as in `x402_client.rs` and `bitreq_client.rs`.

mod hostile_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use bitcoin::Network as BtcNetwork;
use hostile_support::l402::{HostileL402, Misbehaviour};
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_backends::simnet::{FeePolicy, SimNet};
use pay402_client::bitreq::{BitRequests, Wallet, WalletConfig};
use pay402_client::x402::{LocalSigner, X402Client};
use pay402_client::x402_mock::MockClient;
use pay402_client::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, L402Client};
use pay402_core::bitreq::PaymentInfo;
use pay402_core::chain::BitcoinChain;
use pay402_core::lightning::{LightningPayer, Network};
use pay402_core::money::{Msat, Sat};
use pay402_core::problem::Reason;
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::mock::AccessTokenResponse;
use pay402_core::x402::mock_chain::{MockChainError, PermitReader};
use pay402_core::x402::{ExactEvmPayload, HeaderValue as _, PaymentPayloadV2, TokenAmount};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The short timeout the hang tests configure.
const SHORT: Duration = Duration::from_millis(500);
/// A guard so that a client without a timeout fails the test instead of
/// hanging it; far above `SHORT`, it is not a timing assertion.
const GUARD: Duration = Duration::from_secs(60);
/// What the hanging servers sleep before answering: longer than any test.
const FOREVER: Duration = Duration::from_secs(3600);

async fn serve(app: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn guarded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .expect("the client gave up on its own (it has a timeout)")
}

// ---------------------------------------------------------------- L402

fn l402_payer() -> (SimNet, Arc<dyn LightningPayer>) {
    let net = SimNet::new(Network::Regtest);
    let payer = net.add_node("payer", Msat(1_000_000_000));
    (net, Arc::new(payer))
}

#[test]
fn l402_defaults_are_the_documented_ones() {
    assert_eq!(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs(10));
    assert_eq!(DEFAULT_REQUEST_TIMEOUT, Duration::from_secs(60));
    let (_net, payer) = l402_payer();
    let client = L402Client::builder(Arc::clone(&payer)).build();
    assert_eq!(client.timeout(), Some(Duration::from_secs(60)));
    assert_eq!(client.connect_timeout(), Duration::from_secs(10));
    let client = L402Client::builder(Arc::clone(&payer))
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build();
    assert_eq!(client.timeout(), Some(Duration::from_secs(5)));
    assert_eq!(client.connect_timeout(), Duration::from_secs(2));
    let client = L402Client::builder(payer).no_timeout().build();
    assert_eq!(client.timeout(), None, "turned off for large downloads");
    assert_eq!(client.connect_timeout(), Duration::from_secs(10));
}

/// A client built with `http` (a reqwest client without any timeout of its
/// own) or without, and the hostile server that hangs after settling.
async fn l402_hang(own_http: bool) {
    let net = SimNet::new(Network::Regtest);
    net.set_fee(FeePolicy {
        base: Msat(1_000),
        ppm: 0,
    });
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let price = Msat(100_000);
    let server = HostileL402::start(
        Arc::new(merchant.clone()),
        price,
        Misbehaviour::HangAfterSettling,
    )
    .await;
    let mut builder = L402Client::builder(Arc::new(payer.clone()))
        .network(Network::Regtest)
        .timeout(SHORT);
    if own_http {
        builder = builder.http(reqwest::Client::new());
    }
    let client = builder.build();
    let e = guarded(client.get(&server.url))
        .await
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert!(e.may_have_paid());
    assert_eq!(e.receipt().expect("the receipt").amount, price);
    let source = std::error::Error::source(&e).expect("the transport error");
    let source = source
        .downcast_ref::<reqwest::Error>()
        .expect("a reqwest error");
    assert!(source.is_timeout(), "{source}");
    assert_eq!(payer.payments_sent(), 1, "exactly one payment");
    assert_eq!(merchant.balance(), price);
    assert_eq!(server.paid_credentials().len(), 1);
    assert_eq!(client.cached_tokens(), 1, "paid for: kept");
}

#[tokio::test]
async fn l402_a_server_hanging_after_payment_is_retry_failed_with_the_receipt() {
    l402_hang(false).await;
}

#[tokio::test]
async fn l402_the_timeout_also_holds_with_an_own_http_client() {
    l402_hang(true).await;
}

/// An own reqwest client's timeout is not overridden by the default: only a
/// `timeout()` call on the builder does that.
#[tokio::test]
async fn l402_an_own_clients_timeout_rules_without_a_builder_timeout() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let server = HostileL402::start(
        Arc::new(merchant.clone()),
        Msat(100_000),
        Misbehaviour::HangAfterSettling,
    )
    .await;
    let http = reqwest::Client::builder().timeout(SHORT).build().unwrap();
    let client = L402Client::builder(Arc::new(payer.clone()))
        .network(Network::Regtest)
        .http(http)
        .build();
    assert_eq!(client.timeout(), None, "left to the own client");
    // Far below the 60 s default: only the own client's timeout can end it.
    let e = tokio::time::timeout(Duration::from_secs(30), client.get(&server.url))
        .await
        .expect("the own client's timeout ended the call")
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert_eq!(payer.payments_sent(), 1);
}

// ---------------------------------------------------------------- x402

const SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

fn x402_offer() -> Value {
    json!({
        "x402Version": 2,
        "error": "PAYMENT-SIGNATURE header is required",
        "resource": {"url": "http://test/paid", "description": "paid data"},
        "accepts": [{
            "scheme": "exact",
            "network": "eip155:84532",
            "amount": "500",
            "asset": SEPOLIA_USDC,
            "payTo": PAY_TO,
            "maxTimeoutSeconds": 300,
            "extra": {"name": "USDC", "version": "2"}
        }]
    })
}

type Seen = Arc<Mutex<Vec<String>>>;

/// Answers 402 with the offer; records a paid request's payment and never
/// answers it.
async fn x402_hanging(State(seen): State<Seen>, headers: HeaderMap) -> Response {
    let Some(payment) = headers
        .get("payment-signature")
        .and_then(|v| v.to_str().ok())
    else {
        let mut r = (StatusCode::PAYMENT_REQUIRED, "{}").into_response();
        let value = pay402_core::x402::header::encode(&x402_offer());
        r.headers_mut()
            .insert("payment-required", HeaderValue::from_str(&value).unwrap());
        return r;
    };
    seen.lock().unwrap().push(payment.to_owned());
    tokio::time::sleep(FOREVER).await;
    StatusCode::OK.into_response()
}

fn usdc() -> EvmAddress {
    SEPOLIA_USDC.parse().unwrap()
}

#[test]
fn x402_defaults_are_the_documented_ones() {
    let signer = Arc::new(LocalSigner::random());
    let client = X402Client::builder(signer.clone()).build();
    assert_eq!(client.timeout(), Some(Duration::from_secs(60)));
    assert_eq!(client.connect_timeout(), Duration::from_secs(10));
    let client = X402Client::builder(signer.clone())
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build();
    assert_eq!(client.timeout(), Some(Duration::from_secs(5)));
    assert_eq!(client.connect_timeout(), Duration::from_secs(2));
    let client = X402Client::builder(signer).no_timeout().build();
    assert_eq!(client.timeout(), None);
}

#[tokio::test]
async fn x402_a_server_hanging_after_payment_is_retry_failed_with_the_payment() {
    let seen: Seen = Arc::default();
    let url = serve(
        axum::Router::new()
            .route("/paid", any(x402_hanging))
            .with_state(Arc::clone(&seen)),
    )
    .await;
    let client = X402Client::builder(Arc::new(LocalSigner::random()))
        .allow_asset("eip155:84532", usdc(), TokenAmount::from_u64(1_000))
        .timeout(SHORT)
        .max_resends(1)
        .resend_delay(Duration::from_millis(10))
        .build();
    let e = guarded(client.get(format!("{url}/paid")))
        .await
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert!(e.may_have_paid());
    let payment = e.payment().expect("the payment sent");
    assert_eq!(payment.amount, TokenAmount::from_u64(500));
    let source = std::error::Error::source(&e).expect("the transport error");
    let source = source
        .downcast_ref::<reqwest::Error>()
        .expect("a reqwest error");
    assert!(source.is_timeout(), "{source}");
    // One payment: the resend carried the identical signed authorization.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "sent, then resent once");
    assert!(seen.iter().all(|s| *s == seen[0]), "the same payment");
    let sent = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&seen[0]).unwrap();
    assert_eq!(sent.payload.authorization.nonce, payment.nonce);
}

// ---------------------------------------------------------------- x402_mock

const MOCK_CHAIN: u64 = 84532;

/// A chain reader for a payer whose next permit nonce is 0.
struct FreshPayer;

#[async_trait]
impl PermitReader for FreshPayer {
    fn chain_id(&self) -> u64 {
        MOCK_CHAIN
    }
    async fn nonces(
        &self,
        _token: EvmAddress,
        _owner: EvmAddress,
    ) -> Result<alloy::primitives::U256, MockChainError> {
        Ok(alloy::primitives::U256::ZERO)
    }
    async fn balance_of(
        &self,
        _token: EvmAddress,
        _owner: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        Ok(TokenAmount::from_u64(1_000_000))
    }
    async fn allowance(
        &self,
        _token: EvmAddress,
        _owner: EvmAddress,
        _spender: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        Ok(TokenAmount::from_u64(0))
    }
}

#[derive(Default)]
struct MockSeen {
    permits: Vec<Bytes>,
    paid: usize,
}

async fn mock_resource(State(seen): State<Arc<Mutex<MockSeen>>>, headers: HeaderMap) -> Response {
    if headers.get("authorization").is_none() {
        let offer = json!({
            "reason": "payment required",
            "access_token_endpoint": "/token",
            "payment_scheme": {
                "payment_components": [{
                    "payment_type": "evm", "amount": 0.01, "currency": "USDC",
                    "token": SEPOLIA_USDC, "chain_id": MOCK_CHAIN,
                    "metadata": {"symbol": "USDC", "name": "USDC", "decimals": 6,
                        "network": "base-sepolia", "version": "2", "wallet_address": PAY_TO}
                }],
                "protocol_version": "Version 0.1"
            }
        });
        return (StatusCode::PAYMENT_REQUIRED, axum::Json(offer)).into_response();
    }
    seen.lock().unwrap().paid += 1;
    tokio::time::sleep(FOREVER).await;
    StatusCode::OK.into_response()
}

async fn mock_token(State(seen): State<Arc<Mutex<MockSeen>>>, body: Bytes) -> Response {
    seen.lock().unwrap().permits.push(body);
    axum::Json(AccessTokenResponse::bearer("t0k3n".into(), 3600)).into_response()
}

#[test]
fn mock_defaults_are_the_documented_ones() {
    let signer = Arc::new(LocalSigner::random());
    let client = MockClient::builder(signer.clone(), Arc::new(FreshPayer)).build();
    assert_eq!(client.timeout(), Some(Duration::from_secs(60)));
    assert_eq!(client.connect_timeout(), Duration::from_secs(10));
    let client = MockClient::builder(signer.clone(), Arc::new(FreshPayer))
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build();
    assert_eq!(client.timeout(), Some(Duration::from_secs(5)));
    assert_eq!(client.connect_timeout(), Duration::from_secs(2));
    let client = MockClient::builder(signer, Arc::new(FreshPayer))
        .no_timeout()
        .build();
    assert_eq!(client.timeout(), None);
}

#[tokio::test]
async fn mock_a_server_hanging_after_payment_is_retry_failed_with_the_receipt() {
    let seen: Arc<Mutex<MockSeen>> = Arc::default();
    let url = serve(
        axum::Router::new()
            .route("/premium", any(mock_resource))
            .route("/token", post(mock_token))
            .with_state(Arc::clone(&seen)),
    )
    .await;
    // An own reqwest client without any timeout: the builder's applies.
    let client = MockClient::builder(Arc::new(LocalSigner::random()), Arc::new(FreshPayer))
        .accept(MOCK_CHAIN, usdc(), TokenAmount::from_u64(50_000))
        .http_client(reqwest::Client::new())
        .timeout(SHORT)
        .build();
    let e = guarded(client.get(format!("{url}/premium")))
        .await
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert!(e.may_have_paid());
    assert_eq!(
        e.receipt().expect("the receipt").amount,
        TokenAmount::from_u64(10_000)
    );
    let source = std::error::Error::source(&e).expect("the transport error");
    let source = source
        .downcast_ref::<reqwest::Error>()
        .expect("a reqwest error");
    assert!(source.is_timeout(), "{source}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.permits.len(), 1, "exactly one permit");
    assert_eq!(seen.paid, 1);
}

// ---------------------------------------------------------------- BitRequests

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
    Arc::new(
        Wallet::from_seed(
            &[0x11; 32],
            WalletConfig::new(BtcNetwork::Regtest),
            closed_chain(),
        )
        .unwrap(),
    )
}

#[test]
fn bitreq_defaults_are_the_documented_ones() {
    let client = BitRequests::bit_transfer(wallet(), "alice").build();
    assert_eq!(client.timeout(), Some(Duration::from_secs(30)));
    assert_eq!(client.connect_timeout(), Duration::from_secs(10));
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build();
    assert_eq!(client.timeout(), Some(Duration::from_secs(5)));
    assert_eq!(client.connect_timeout(), Duration::from_secs(2));
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .no_timeout()
        .build();
    assert_eq!(client.timeout(), None);
}

/// Answers 402 asking for a bit-transfer; records a paid request's transfer
/// and never answers it.
async fn bitreq_hanging(State(seen): State<Seen>, headers: HeaderMap) -> Response {
    let Some(transfer) = headers
        .get("bitcoin-transfer")
        .and_then(|v| v.to_str().ok())
    else {
        let mut r = StatusCode::PAYMENT_REQUIRED.into_response();
        PaymentInfo::new(Sat(5))
            .with_username("merchant")
            .insert_into(r.headers_mut())
            .unwrap();
        return r;
    };
    seen.lock().unwrap().push(transfer.to_owned());
    tokio::time::sleep(FOREVER).await;
    StatusCode::OK.into_response()
}

#[tokio::test]
async fn bitreq_the_timeout_also_holds_with_an_own_http_client() {
    let seen: Seen = Arc::default();
    let url = serve(
        axum::Router::new()
            .route("/paid", any(bitreq_hanging))
            .with_state(Arc::clone(&seen)),
    )
    .await;
    let client = BitRequests::bit_transfer(wallet(), "alice")
        .http(reqwest::Client::new())
        .timeout(SHORT)
        .retries(1)
        .build();
    let e = guarded(client.get(format!("{url}/paid")))
        .await
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert!(e.may_have_paid());
    let source = std::error::Error::source(&e).expect("the transport error");
    let source = source
        .downcast_ref::<reqwest::Error>()
        .expect("a reqwest error");
    assert!(source.is_timeout(), "{source}");
    // One payment: the resend carried the identical signed transfer.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "sent, then resent once");
    assert!(seen.iter().all(|s| *s == seen[0]), "the same transfer");
}
