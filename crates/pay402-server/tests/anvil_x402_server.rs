//! The x402 layer against a real chain: anvil with Circle's real USDC
//! (FiatTokenV2_2), settled by `pay402_backends::x402::LocalFacilitator`,
//! served over real HTTP. Payments are signed here with a dev key (EIP-712
//! through core's typed-data hashing).
//!
//! Needs anvil (installed from npm by `pay402_testkit::anvil` on first use);
//! fails loudly when it cannot start.
#![cfg(feature = "x402")]

mod x402_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use pay402_backends::x402::LocalFacilitator;
use pay402_core::x402::evm::{EvmAddress, EvmSignature, TransferAuthorization};
use pay402_core::x402::facilitator::{Facilitator, FacilitatorError, PaymentRequest};
use pay402_core::x402::{
    EvmTimestamp, HeaderValue, PaymentPayloadV2, PaymentRequirements, SettleResponse,
    SupportedResponse, TokenAmount, VerifyResponse,
};
use pay402_server::x402::store::{MemoryPaymentStore, PaymentState, PaymentStore};
use pay402_server::x402::{X402Config, X402Layer, X402Payment, X402Route, exact_offer};
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION, Usdc};
use serde_json::json;
use x402_support::*;

const NETWORK: &str = "eip155:31337";
const PRICE: u64 = 10_000; // 0.01 USDC
const FUNDS: u64 = 1_000_000; // 1 USDC

/// Passes every call to the real facilitator and counts them (not a fault
/// injector: it changes nothing).
struct CountingFacilitator {
    inner: LocalFacilitator,
    verifies: AtomicUsize,
    settles: AtomicUsize,
}

#[async_trait::async_trait]
impl Facilitator for CountingFacilitator {
    async fn verify(&self, r: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.verifies.fetch_add(1, Ordering::SeqCst);
        self.inner.verify(r).await
    }
    async fn settle(&self, r: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        self.inner.settle(r).await
    }
    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.inner.supported().await
    }
}

struct Server {
    base: String,
    client: reqwest::Client,
    facilitator: Arc<CountingFacilitator>,
    store: Arc<dyn PaymentStore>,
    layer: X402Layer,
    runs: Arc<AtomicUsize>,
    offer: PaymentRequirements,
    payee: EvmAddress,
}

fn payee() -> EvmAddress {
    EvmAddress(DEV_ACCOUNTS[3].address)
}

fn start_chain() -> Anvil {
    Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"))
}

async fn serve(chain: &Anvil, usdc: &Usdc<'_>, receipt_timeout: Duration) -> Server {
    let local = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .receipt_timeout(receipt_timeout)
        .build()
        .await
        .expect("local facilitator on anvil");
    let facilitator = Arc::new(CountingFacilitator {
        inner: local,
        verifies: AtomicUsize::new(0),
        settles: AtomicUsize::new(0),
    });
    let store: Arc<dyn PaymentStore> = Arc::new(MemoryPaymentStore::new());
    let layer = X402Layer::new(X402Config::new(), facilitator.clone(), store.clone());
    let asset = usdc.address.to_string();
    let offer = exact_offer(
        NETWORK,
        &asset,
        &payee().to_string(),
        TokenAmount::from_u64(PRICE),
        USDC_NAME,
        USDC_VERSION,
    );
    // Misconfigured on purpose: the token's EIP-712 name is "USD Coin".
    let misnamed = exact_offer(
        NETWORK,
        &asset,
        &payee().to_string(),
        TokenAmount::from_u64(PRICE),
        "USDC",
        USDC_VERSION,
    );
    let missing = layer
        .unsupported_offers(std::slice::from_ref(&offer))
        .await
        .unwrap();
    assert!(missing.is_empty(), "facilitator cannot settle {missing:?}");
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let app = Router::new()
        .route(
            "/paid",
            get(move |p: X402Payment| {
                let counter = counter.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    format!("paid content #{n} for {}", p.payer)
                }
            })
            .route_layer(
                layer.with_route(
                    X402Route::new([offer.clone()])
                        .unwrap()
                        .mime_type("text/plain"),
                ),
            ),
        )
        .route(
            "/misnamed",
            get(|| async { "never" })
                .route_layer(layer.with_route(X402Route::new([misnamed]).unwrap())),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base,
        client: reqwest::Client::new(),
        facilitator,
        store,
        layer,
        runs,
        offer,
        payee: payee(),
    }
}

impl Server {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.client.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("HTTP request to the test server");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }
    async fn pay(&self, header: &str) -> Resp {
        self.get("/paid", &[("payment-signature", header)]).await
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
    fn settles(&self) -> usize {
        self.facilitator.settles.load(Ordering::SeqCst)
    }
}

fn funded(usdc: &Usdc<'_>, i: usize) -> Payer {
    let p = Payer::dev(i);
    usdc.mint(p.address.0, TokenAmount::from_u64(FUNDS).0)
        .expect("mint USDC to the payer");
    p
}

fn balance(usdc: &Usdc<'_>, who: EvmAddress) -> TokenAmount {
    TokenAmount(usdc.balance_of(who.0).expect("balanceOf"))
}

fn plus(a: TokenAmount, b: u64) -> TokenAmount {
    TokenAmount(a.0 + TokenAmount::from_u64(b).0)
}

fn nonce_of(header: &str) -> (EvmAddress, [u8; 32]) {
    let p = PaymentPayloadV2::<pay402_core::x402::ExactEvmPayload>::decode_header(header).unwrap();
    (
        p.payload.authorization.from,
        p.payload.authorization.nonce.0,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_request_settles_on_chain_and_its_replay_is_refused() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC on anvil");
    let server = serve(&chain, &usdc, Duration::from_secs(20)).await;
    let payer = funded(&usdc, 2);

    // Unpaid: 402 offering USDC on the anvil chain.
    let r = server.get("/paid", &[]).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    let offered = r.payment_required().unwrap().accepts;
    assert_eq!(offered, vec![server.offer.clone()]);

    let payee_before = balance(&usdc, server.payee);
    let payer_before = balance(&usdc, payer.address);
    let header = pay_v2(&payer, &offered[0], None);
    let r = server.pay(&header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), format!("paid content #1 for {}", payer.address));
    let receipt = r.payment_response().expect("PAYMENT-RESPONSE");
    assert!(receipt.success);
    assert_eq!(receipt.network, NETWORK);
    let tx = receipt.transaction.unwrap();
    let mined = chain
        .wait_for_receipt(&tx)
        .expect("the settlement is on chain");
    assert_eq!(mined.status, 1);
    // Exactly the price moved, and the nonce is spent on chain.
    assert_eq!(balance(&usdc, server.payee), plus(payee_before, PRICE));
    assert_eq!(
        TokenAmount(balance(&usdc, payer.address).0 + TokenAmount::from_u64(PRICE).0),
        payer_before
    );
    let (from, nonce) = nonce_of(&header);
    assert!(usdc.authorization_state(from.0, nonce.into()).unwrap());

    // Replay: refused with the reference reason, nothing moves.
    let r = server.pay(&header).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
    assert_eq!(r.reason(), "invalid_exact_evm_nonce_already_used");
    assert_eq!(balance(&usdc, server.payee), plus(payee_before, PRICE));
    assert_eq!(server.runs(), 1);
    assert_eq!(server.settles(), 1);

    // A v1 client (X-PAYMENT; chain 31337 has no v1 slug, so its CAIP-2 id
    // is the v1 network name in the 402 body) pays too.
    let v1_network = r.json()["accepts"][0]["network"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(v1_network, NETWORK);
    let header = pay_v1(&payer, &server.offer, &v1_network);
    let r = server.get("/paid", &[("x-payment", &header)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.x_payment_response().unwrap().success);
    assert_eq!(balance(&usdc, server.payee), plus(payee_before, 2 * PRICE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_copies_of_one_payment_are_served_and_settled_once() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC on anvil");
    let server = Arc::new(serve(&chain, &usdc, Duration::from_secs(20)).await);
    let payer = funded(&usdc, 2);
    let payee_before = balance(&usdc, server.payee);
    let header = pay_v2(&payer, &server.offer, None);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let server = server.clone();
        let header = header.clone();
        tasks.push(tokio::spawn(async move { server.pay(&header).await }));
    }
    let mut served = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.status.as_u16() < 500, "{}: {}", r.status, r.text());
        match r.status {
            StatusCode::OK => served.push(r),
            StatusCode::CONFLICT => assert_eq!(r.reason(), "payment_in_progress"),
            StatusCode::PAYMENT_REQUIRED => {
                assert_eq!(r.reason(), "invalid_exact_evm_nonce_already_used")
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!(served.len(), 1, "exactly one served response");
    assert_eq!(server.runs(), 1, "the handler ran once");
    assert_eq!(server.settles(), 1, "one settlement");
    assert_eq!(balance(&usdc, server.payee), plus(payee_before, PRICE));
    let (from, nonce) = nonce_of(&header);
    assert!(usdc.authorization_state(from.0, nonce.into()).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_settlement_is_recorded_and_served_once_mined() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC on anvil");
    // A short receipt bound, and a chain that stops mining: the real
    // facilitator answers Pending.
    let server = serve(&chain, &usdc, Duration::from_secs(2)).await;
    let payer = funded(&usdc, 2);
    let payee_before = balance(&usdc, server.payee);
    chain
        .rpc("evm_setAutomine", json!([false]))
        .expect("evm_setAutomine");
    let header = pay_v2(&payer, &server.offer, None);
    let r = server.pay(&header).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.reason(), "settlement_pending");
    assert!(!r.text().contains("paid content"));
    let tx = r
        .payment_response()
        .unwrap()
        .transaction
        .expect("the pending transaction");
    let pending = server.store.list(PaymentState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].transaction.as_deref(), Some(tx.as_str()));
    assert_eq!(balance(&usdc, server.payee), payee_before, "not mined yet");

    // The chain mines; the same payment comes back and is served what the
    // handler produced the first time.
    chain.rpc("evm_mine", json!([])).expect("evm_mine");
    chain
        .rpc("evm_setAutomine", json!([true]))
        .expect("evm_setAutomine");
    let r = server.pay(&header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), format!("paid content #1 for {}", payer.address));
    assert_eq!(
        r.payment_response().unwrap().transaction.as_deref(),
        Some(tx.as_str())
    );
    assert_eq!(server.runs(), 1);
    assert_eq!(balance(&usdc, server.payee), plus(payee_before, PRICE));
    let r = server.pay(&header).await;
    assert_eq!(r.reason(), "invalid_exact_evm_nonce_already_used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_payments_are_refused_with_reference_reasons_and_move_nothing() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC on anvil");
    let server = serve(&chain, &usdc, Duration::from_secs(20)).await;
    let payer = funded(&usdc, 2);
    let broke = Payer::dev(4); // no USDC
    let o = server.offer.clone();
    let now = now();

    let signed = |p: &Payer, f: &dyn Fn(&mut TransferAuthorization)| {
        let mut auth = authorization_for(p, &o);
        f(&mut auth);
        let sig = sign(&p.key, &auth, &domain(&o, None, None));
        payment_v2(&o, auth, sig, None).encode_header()
    };
    let echo = |f: &dyn Fn(&mut PaymentRequirements)| {
        let mut accepted = o.clone();
        f(&mut accepted);
        let auth = authorization_for(&payer, &accepted);
        let sig = sign(&payer.key, &auth, &domain(&accepted, None, None));
        payment_v2(&accepted, auth, sig, None).encode_header()
    };
    let with_domain = |name: Option<&str>, version: Option<&str>| {
        let auth = authorization_for(&payer, &o);
        let sig = sign(&payer.key, &auth, &domain(&o, name, version));
        payment_v2(&o, auth, sig, None).encode_header()
    };
    let with_sig = |f: &dyn Fn(&EvmSignature) -> EvmSignature| {
        let auth = authorization_for(&payer, &o);
        let sig = sign(&payer.key, &auth, &domain(&o, None, None));
        payment_v2(&o, auth, f(&sig), None).encode_header()
    };
    // A payment settled elsewhere (straight through the facilitator) before
    // it reaches this server: its nonce is spent on chain.
    let spent = signed(&payer, &|_| {});
    let p = PaymentPayloadV2::decode_header(&spent).unwrap();
    let settled = server
        .facilitator
        .inner
        .settle(&PaymentRequest::v2(p, o.clone()))
        .await
        .unwrap();
    assert!(settled.success);

    let payee_before = balance(&usdc, server.payee);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed base64", "***".into(), 400, "invalid_payload"),
        (
            "malformed JSON",
            pay402_core::b64::encode_std(b"[1,2"),
            400,
            "invalid_payload",
        ),
        (
            "oversize",
            "QUFB".repeat(5000),
            431,
            "payment_header_too_large",
        ),
        (
            "wrong network",
            echo(&|a| a.network = "eip155:8453".into()),
            402,
            "invalid_exact_evm_network_mismatch",
        ),
        (
            "wrong payTo",
            signed(&payer, &|a| a.to = EvmAddress(DEV_ACCOUNTS[0].address)),
            402,
            "invalid_exact_evm_recipient_mismatch",
        ),
        (
            "expired validBefore",
            signed(&payer, &|a| {
                a.valid_before = EvmTimestamp::from_u64(now - 10)
            }),
            402,
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            "future validAfter",
            signed(&payer, &|a| {
                a.valid_after = EvmTimestamp::from_u64(now + 3600)
            }),
            402,
            "invalid_exact_evm_payload_authorization_valid_after",
        ),
        (
            "amount mismatch",
            signed(&payer, &|a| a.value = TokenAmount::from_u64(PRICE / 2)),
            402,
            "invalid_exact_evm_authorization_value",
        ),
        (
            "reused nonce (settled elsewhere)",
            spent.clone(),
            402,
            "invalid_exact_evm_nonce_already_used",
        ),
        (
            "bad signature",
            with_sig(&|_| EvmSignature::from_bytes(vec![0x11; 65])),
            402,
            "invalid_exact_evm_signature",
        ),
        (
            "high-s signature",
            with_sig(&|s| high_s(s)),
            402,
            "invalid_exact_evm_signature",
        ),
        (
            "wrong domain name",
            with_domain(Some("USDC"), None),
            402,
            "invalid_exact_evm_signature",
        ),
        (
            "wrong domain version",
            with_domain(None, Some("1")),
            402,
            "invalid_exact_evm_signature",
        ),
        (
            "wrong token name echoed",
            echo(&|a| a.extra = Some(pay402_core::x402::Extra::eip712("USDC", "2"))),
            402,
            "invalid_exact_evm_token_name_mismatch",
        ),
        (
            "insufficient balance",
            signed(&broke, &|_| {}),
            402,
            "invalid_exact_evm_insufficient_balance",
        ),
    ];
    for (what, header, status, reason) in &cases {
        let r = server.pay(header).await;
        assert_eq!(r.status.as_u16(), *status, "{what}: {}", r.text());
        assert_eq!(r.reason(), *reason, "{what}: {}", r.text());
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert!(r.payment_required().is_some(), "{what}: offered again");
    }
    // A route whose offer names the wrong EIP-712 domain: the client signs
    // what it is offered, the chain's simulation explains the failure.
    let r = server.get("/misnamed", &[]).await;
    let misnamed = r.payment_required().unwrap().accepts[0].clone();
    let h = pay_v2(&payer, &misnamed, None);
    let r = server.get("/misnamed", &[("payment-signature", &h)]).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
    assert_eq!(r.reason(), "invalid_exact_evm_token_name_mismatch");

    assert_eq!(balance(&usdc, server.payee), payee_before, "nothing moved");
    assert_eq!(server.runs(), 0, "no bad payment reached the handler");
    assert_eq!(server.settles(), 0);
    // The payments refused by the facilitator were released, not burned:
    // the broke payer, once funded, can use the very same payment.
    let h = &cases.last().unwrap().1;
    usdc.mint(broke.address.0, TokenAmount::from_u64(FUNDS).0)
        .unwrap();
    let r = server.pay(h).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(balance(&usdc, server.payee), plus(payee_before, PRICE));
    let _ = &server.layer;
}
