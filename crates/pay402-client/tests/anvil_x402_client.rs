#![cfg(feature = "x402")]
//! End to end on a real chain: pay402's x402 client pays a pay402 x402
//! server (`pay402_server::x402::X402Layer`), which settles through
//! pay402's local facilitator (`pay402_backends::x402::LocalFacilitator`)
//! on anvil with Circle's real USDC contract (`pay402_testkit::anvil`).
//!
//! Checked on chain: the payee's balance rises by exactly the price, the
//! payer's falls by it, the EIP-3009 nonce is spent (`authorizationState`),
//! the settlement transaction succeeded; a replay of the same payment is
//! refused and moves nothing; a settlement left pending (mining paused) is
//! completed by resending the same payment, and is charged once.
//!
//! v1 (`X-PAYMENT`) is not exercised on chain: the v1 network names have no
//! entry for anvil's chain 31337 (as in the reference SDKs); the v1 path is
//! covered against core's verification in `x402_client.rs`.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use axum::Router;
use axum::routing::get;
use pay402_backends::x402::LocalFacilitator;
use pay402_client::x402::{LocalSigner, X402Client};
use pay402_core::problem::Reason;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_server::x402::store::MemoryPaymentStore;
use pay402_server::x402::{X402Config, X402Layer, X402Payment, X402Route, exact_offer};
use pay402_testkit::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION};
use serde_json::json;

const PRICE: u64 = 10_000; // 0.01 USDC
const NETWORK: &str = "eip155:31337";

struct World {
    server: String,
    payee: Address,
}

/// Starts the paywalled app on a free port: `/paid` costs [`PRICE`].
async fn serve(chain: &Anvil, usdc: Address, receipt_timeout: Duration) -> World {
    let facilitator = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc, USDC_NAME, USDC_VERSION)
        .receipt_timeout(receipt_timeout)
        .build()
        .await
        .expect("build the local facilitator");
    let payee = DEV_ACCOUNTS[2].address;
    let paywall = X402Layer::new(
        X402Config::new().retry_after(Duration::from_secs(1)),
        Arc::new(facilitator),
        Arc::new(MemoryPaymentStore::new()),
    );
    let offer = exact_offer(
        NETWORK,
        &usdc.to_string(),
        &payee.to_string(),
        TokenAmount::from_u64(PRICE),
        USDC_NAME,
        USDC_VERSION,
    );
    let app = Router::new().route(
        "/paid",
        get(|p: X402Payment| async move { format!("report for {}", p.payer) })
            .route_layer(paywall.with_route(X402Route::new([offer]).expect("offer"))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    World {
        server: format!("http://{addr}/paid"),
        payee,
    }
}

fn client(signer: Arc<LocalSigner>, usdc: Address) -> X402Client {
    X402Client::builder(signer)
        .allow_asset(NETWORK, EvmAddress(usdc), TokenAmount::from_u64(PRICE))
        .resend_delay(Duration::from_millis(200))
        .max_resends(8)
        .timeout(Duration::from_secs(60))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_settles_on_chain_and_refuses_a_replay() {
    let chain = Anvil::start().expect("anvil must start (npm registry + glibc >= 2.35 needed)");
    assert_eq!(chain.chain_id().unwrap(), CHAIN_ID);
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let signer = Arc::new(LocalSigner::random());
    let payer = signer.address().0;
    usdc.mint(payer, U256::from(1_000_000u64)).expect("mint");
    let world = serve(&chain, usdc.address, Duration::from_secs(20)).await;
    let payee_before = usdc.balance_of(world.payee).unwrap();

    let client = client(Arc::clone(&signer), usdc.address);
    let paid = client.get(&world.server).await.expect("paid request");
    assert_eq!(paid.status(), reqwest::StatusCode::OK);
    let receipt = paid.receipt.clone().expect("receipt");
    let body = paid.into_response().text().await.unwrap();
    assert_eq!(body, format!("report for {}", signer.address()));

    // The receipt names a real, successful transaction.
    assert!(receipt.settled(), "{:?}", receipt.settlement);
    let tx = receipt.transaction().expect("transaction hash").to_owned();
    let mined = chain.wait_for_receipt(&tx).expect("mined");
    assert_eq!(mined.status, 1);
    assert_eq!(receipt.payment.amount, TokenAmount::from_u64(PRICE));
    assert_eq!(receipt.attempts, 1);

    // Money moved exactly once, by exactly the price.
    assert_eq!(
        usdc.balance_of(world.payee).unwrap(),
        payee_before + U256::from(PRICE)
    );
    assert_eq!(
        usdc.balance_of(payer).unwrap(),
        U256::from(1_000_000u64 - PRICE)
    );
    let nonce = B256::from(receipt.payment.nonce.0);
    assert!(
        usdc.authorization_state(payer, nonce).unwrap(),
        "nonce spent"
    );

    // Replaying the very same signed payment is refused and moves nothing.
    let request = client.http().get(&world.server).build().unwrap();
    let e = client
        .resend(request, &receipt.signed)
        .await
        .expect_err("a replay must be refused");
    assert_eq!(e.reason(), "payment_rejected", "{e}");
    assert_eq!(
        e.server_reason(),
        Some("invalid_exact_evm_nonce_already_used"),
        "{e}"
    );
    assert_eq!(
        usdc.balance_of(world.payee).unwrap(),
        payee_before + U256::from(PRICE)
    );
    assert_eq!(
        usdc.balance_of(payer).unwrap(),
        U256::from(1_000_000u64 - PRICE)
    );

    // A second call is a second, separate payment.
    let again = client
        .get(&world.server)
        .await
        .expect("second paid request");
    let second = again.receipt.expect("receipt");
    assert_ne!(second.payment.nonce, receipt.payment.nonce);
    assert_eq!(
        usdc.balance_of(world.payee).unwrap(),
        payee_before + U256::from(2 * PRICE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_settlement_is_completed_by_resending_the_same_payment() {
    let chain = Anvil::start().expect("anvil must start (npm registry + glibc >= 2.35 needed)");
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let signer = Arc::new(LocalSigner::random());
    let payer = signer.address().0;
    usdc.mint(payer, U256::from(1_000_000u64)).expect("mint");
    // The facilitator waits at most 1 s for a receipt, then reports Pending.
    let world = serve(&chain, usdc.address, Duration::from_secs(1)).await;
    let payee_before = usdc.balance_of(world.payee).unwrap();

    // Pause mining: the settlement transaction sits in the mempool.
    chain
        .rpc("evm_setAutomine", json!([false]))
        .expect("pause mining");
    let rpc = chain.rpc_url();
    let resume = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let http = reqwest::Client::new();
        for (method, params) in [("evm_setAutomine", json!([true])), ("evm_mine", json!([]))] {
            http.post(&rpc)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
                .send()
                .await
                .expect("resume mining");
        }
    });

    let client = client(Arc::clone(&signer), usdc.address);
    let paid = client.get(&world.server).await.expect("paid once settled");
    resume.await.unwrap();
    assert_eq!(paid.status(), reqwest::StatusCode::OK);
    let receipt = paid.receipt.expect("receipt");
    assert!(
        receipt.attempts >= 2,
        "the server answered pending first: {receipt:?}"
    );
    assert!(receipt.settled());
    let mined = chain
        .wait_for_receipt(receipt.transaction().unwrap())
        .unwrap();
    assert_eq!(mined.status, 1);
    // Charged exactly once despite several deliveries of the payment.
    assert_eq!(
        usdc.balance_of(world.payee).unwrap(),
        payee_before + U256::from(PRICE)
    );
    assert_eq!(
        usdc.balance_of(payer).unwrap(),
        U256::from(1_000_000u64 - PRICE)
    );
    assert!(
        usdc.authorization_state(payer, B256::from(receipt.payment.nonce.0))
            .unwrap()
    );
}
