//! A `Paywall` route offering L402, x402 and BitRequests at once, paid by
//! each rail's own client over real HTTP:
//!
//! - the official x402 TypeScript SDK client (`@x402/*`, driven by
//!   `pay402_testkit::x402_sdk`), settled by pay402's `LocalFacilitator` on
//!   anvil with Circle's real USDC; the chain must show exactly the price
//!   moved once;
//! - pay402's `L402Client` over simnet (real BOLT11 invoices and
//!   preimages), paying once and reusing its token;
//! - a payment signed here and sent twice: served once, settled once.
//!
//! Needs anvil and the SDK (installed from npm by the testkit on first use);
//! fails loudly when they cannot start.
#![cfg(all(feature = "x402", feature = "bitreq"))]

mod x402_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_backends::simnet::SimNet;
use pay402_backends::x402::LocalFacilitator;
use pay402_client::L402Client;
use pay402_core::lightning::Network;
use pay402_core::money::Msat;
use pay402_core::rates::FixedRates;
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::{HeaderValue as _, PaymentRequired, SettleResponse, TokenAmount};
use pay402_server::bitreq::store::MemoryBitreqStore;
use pay402_server::bitreq::{BitreqConfig, BitreqServer, TransferConfig};
use pay402_server::paywall::{Paid, Paywall, PaywallPrice, X402Asset};
use pay402_server::store::MemoryStore;
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, DevAccount, USDC_NAME, USDC_VERSION, Usdc};
use pay402_testkit::x402_sdk::{self, ANVIL_NETWORK, SdkPayment};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use x402_support::{Payer, pay_v2};

/// 1 US cent: 10 000 USDC base units, 10 sat at 100 000 USD per BTC.
const CENTS: u64 = 1;
const PRICE_USDC: u64 = 10_000;
const PRICE_MSAT: u64 = 10_000;
const FUNDS: u64 = 1_000_000;
const PAYER: DevAccount = DEV_ACCOUNTS[1];
const PAYEE: DevAccount = DEV_ACCOUNTS[2];
const FACILITATOR: DevAccount = DEV_ACCOUNTS[3];
const STEP: Duration = Duration::from_secs(90);

fn chain() -> Anvil {
    Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"))
}

fn usdc(chain: &Anvil) -> Usdc<'_> {
    let usdc = chain
        .deploy_usdc()
        .unwrap_or_else(|e| panic!("deploying USDC on anvil: {e}"));
    for who in [PAYER, DEV_ACCOUNTS[4]] {
        usdc.mint(who.address, TokenAmount::from_u64(FUNDS).0)
            .unwrap_or_else(|e| panic!("minting USDC: {e}"));
    }
    usdc
}

fn balance(usdc: &Usdc<'_>, who: DevAccount) -> TokenAmount {
    TokenAmount(usdc.balance_of(who.address).expect("balanceOf"))
}

/// The served app, aborted on drop.
struct Served {
    addr: SocketAddr,
    task: JoinHandle<()>,
    runs: Arc<AtomicUsize>,
    merchant: pay402_backends::simnet::SimNode,
    payer: pay402_backends::simnet::SimNode,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    fn url(&self) -> String {
        format!("http://{}/report", self.addr)
    }
}

/// `GET /report` for 1 US cent on L402 (simnet), x402 (USDC on anvil,
/// settled by pay402's facilitator) and BitRequests (a transfer ledger).
async fn serve(chain: &Anvil, usdc: &Usdc<'_>) -> Served {
    let facilitator = LocalFacilitator::builder(chain.rpc_url())
        .signer(FACILITATOR.private_key)
        .network(ANVIL_NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .build();
    let facilitator = tokio::time::timeout(STEP, facilitator)
        .await
        .expect("building the facilitator timed out")
        .expect("the local facilitator on anvil");
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    // BitRequests beside them, so the 402 carries the two1 headers too (the
    // chain backend is never called for a transfer-only server).
    let chain_rpc = BitcoindRpc::new(BitcoindConfig {
        url: "http://127.0.0.1:9".parse().unwrap(),
        user: "u".into(),
        password: "p".into(),
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    let bitreq = BitreqServer::new(
        BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop")),
        Arc::new(chain_rpc),
        Arc::new(MemoryBitreqStore::new()),
    )
    .unwrap();
    let paywall = Paywall::builder()
        .l402(Arc::new(merchant.clone()), Arc::new(MemoryStore::new()))
        .x402(
            Arc::new(facilitator),
            EvmAddress(PAYEE.address),
            X402Asset::usdc(ANVIL_NETWORK, EvmAddress(usdc.address)),
        )
        .bitreq(bitreq)
        .rates(Arc::new(
            FixedRates::new()
                .usd_cents_per_btc(10_000_000)
                .usd_stablecoin(X402Asset::usdc(ANVIL_NETWORK, EvmAddress(usdc.address)).unit()),
        ))
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let report = get(move |paid: Paid| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({
                "paid": true,
                "rail": paid.rail.as_str(),
                "amount": paid.amount.to_string(),
                "payer": paid.payer,
                "receipt": paid.receipt.to_string(),
                "kind": paid.receipt.kind(),
            }))
        }
    });
    let app = Router::new().route(
        "/report",
        report.route_layer(
            paywall
                .price(PaywallPrice::usd_cents(CENTS))
                .description("pay402 paywall interop")
                .mime_type("application/json"),
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("the paywall server stopped: {e}");
        }
    });
    Served {
        addr,
        task,
        runs,
        merchant,
        payer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rails_client_pays_one_paywall_route() {
    let chain = chain();
    let usdc = usdc(&chain);
    let server = serve(&chain, &usdc).await;

    // The unpaid answer carries both challenges (and the two1 headers).
    let unpaid = reqwest::get(server.url()).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let h = unpaid.headers();
    assert!(h.get("www-authenticate").is_some());
    assert!(h.get("price").is_some());
    let required = PaymentRequired::decode_header(h["payment-required"].to_str().unwrap()).unwrap();
    assert_eq!(
        required.accepts[0].amount,
        TokenAmount::from_u64(PRICE_USDC)
    );

    // 1. The official x402 client pays (it reads PAYMENT-REQUIRED and ignores
    //    the rest), on chain, exactly once.
    let before = (balance(&usdc, PAYER), balance(&usdc, PAYEE));
    let payment = SdkPayment::new(
        server.url(),
        usdc.address,
        u128::from(PRICE_USDC),
        PAYER.private_key,
    );
    let outcome = tokio::task::spawn_blocking(move || x402_sdk::pay(&payment))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the official x402 client failed: {e}"));
    assert_eq!(outcome.status, 200, "{outcome:?}");
    let body: Value = serde_json::from_str(&outcome.body).unwrap();
    assert_eq!(body["rail"], "x402");
    assert_eq!(body["kind"], "x402_nonce");
    assert_eq!(
        body["payer"].as_str().map(str::to_lowercase),
        Some(PAYER.address.to_string().to_lowercase())
    );
    let nonce = outcome.authorization_nonce().expect("the SDK signed");
    assert_eq!(body["receipt"], format!("{nonce:#x}"));
    let receipt = outcome.payment_response.as_ref().expect("PAYMENT-RESPONSE");
    assert_eq!(receipt["success"], true, "{receipt}");
    let tx = receipt["transaction"].as_str().unwrap().to_owned();
    let mined = chain
        .wait_for_receipt(&tx)
        .expect("the settlement is mined");
    assert_eq!(mined.status, 1);
    let after = (balance(&usdc, PAYER), balance(&usdc, PAYEE));
    let price = TokenAmount::from_u64(PRICE_USDC).0;
    assert_eq!(
        after.0.0 + price,
        before.0.0,
        "the payer paid the price once"
    );
    assert_eq!(
        after.1.0,
        before.1.0 + price,
        "the payee got the price once"
    );
    assert!(usdc.authorization_state(PAYER.address, nonce).unwrap());
    assert_eq!(server.runs.load(Ordering::SeqCst), 1);

    // 2. pay402's L402 client pays the same route over Lightning, once, and
    //    its token keeps serving.
    let client = L402Client::builder(Arc::new(server.payer.clone()))
        .network(Network::Regtest)
        .max_price(Msat(PRICE_MSAT))
        .build();
    let paid = client
        .get(&server.url())
        .await
        .expect("the L402 client pays");
    assert_eq!(paid.status(), 200);
    assert_eq!(paid.receipt.as_ref().unwrap().amount, Msat(PRICE_MSAT));
    let body: Value = paid.response.json().await.unwrap();
    assert_eq!(
        (body["rail"].as_str(), body["amount"].as_str()),
        (Some("l402"), Some("10000 msat"))
    );
    let again = client.get(&server.url()).await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(again.reused_token);
    assert_eq!(server.merchant.payments_received(), 1);
    assert_eq!(server.merchant.balance(), Msat(PRICE_MSAT));
    assert_eq!(server.runs.load(Ordering::SeqCst), 3);
    // The x402 side did not move meanwhile.
    assert_eq!(balance(&usdc, PAYEE), after.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x402_payment_sent_twice_is_served_and_settled_once() {
    let chain = chain();
    let usdc = usdc(&chain);
    let server = serve(&chain, &usdc).await;
    let http = reqwest::Client::new();
    let unpaid = http.get(server.url()).send().await.unwrap();
    let required =
        PaymentRequired::decode_header(unpaid.headers()["payment-required"].to_str().unwrap())
            .unwrap();
    let payer = Payer::dev(4);
    let header = pay_v2(&payer, &required.accepts[0], None);
    let before = balance(&usdc, PAYEE);
    let first = http
        .get(server.url())
        .header("payment-signature", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let settled =
        SettleResponse::decode_header(first.headers()["payment-response"].to_str().unwrap())
            .unwrap();
    assert!(settled.success);
    assert_eq!(
        balance(&usdc, PAYEE).0,
        before.0 + TokenAmount::from_u64(PRICE_USDC).0
    );
    let second = http
        .get(server.url())
        .header("payment-signature", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 402);
    let problem: Value = second.json().await.unwrap();
    assert_eq!(problem["reason"], "invalid_exact_evm_nonce_already_used");
    assert_eq!(server.runs.load(Ordering::SeqCst), 1, "served once");
    assert_eq!(
        balance(&usdc, PAYEE).0,
        before.0 + TokenAmount::from_u64(PRICE_USDC).0,
        "settled once"
    );
}
