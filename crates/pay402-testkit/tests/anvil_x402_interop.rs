//! Interop between pay402's x402 pieces and the official x402 TypeScript SDK
//! (npm `@x402/*` 2.27.0), settled on a real anvil chain with Circle's real
//! USDC contract (FiatTokenV2_2).
//!
//! Roles and who plays them in each test:
//!
//! | test | client | resource server | facilitator |
//! |---|---|---|---|
//! | `official_stack_control` | official | official (`@x402/express`) | official engine |
//! | `official_client_pays_pay402_server` | official | pay402 `X402Layer` | pay402 `LocalFacilitator` (in process) |
//! | `pay402_client_pays_official_server_via_pay402_facilitator` | pay402 `X402Client` | official | pay402 facilitator router (HTTP) |
//! | `official_client_official_server_pay402_facilitator` | official | official | pay402 facilitator router (HTTP) |
//! | `pay402_client_pays_official_server_via_official_facilitator` | pay402 | official | official engine |
//! | `official_client_pays_pay402_server_via_official_facilitator` | official | pay402 (`RemoteFacilitator`) | official engine |
//! | `official_server_reports_pay402_facilitator_refusal` | official | official | pay402 (payer without funds) |
//! | `pay402_client_echoes_lowercase_offer_to_official_server` | pay402 | official (lowercase addresses) | pay402 (HTTP) |
//! | `official_server_start_checks_pay402_supported_kinds` | — | official, for a network pay402 does not serve | pay402 (HTTP) |
//! | `official_server_handles_pay402_pending_settlement` | official | official | pay402 (HTTP), receipt bound 1 s, mining paused |
//!
//! The all-official row is the control: it shows the chain, the token and
//! the harness are right, so a failure in a mixed row is an interop fault.
//!
//! Every test starts its own anvil, deploys USDC, mints to the payer, and
//! checks the outcome on chain: the payee's balance rises by exactly the
//! price, the payer's falls by exactly the price, the EIP-3009 nonce the
//! client signed is spent, and the settlement transaction's receipt is
//! successful.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use axum::Router;
use axum::routing::get;
use pay402_backends::x402::{LocalFacilitator, RemoteFacilitator, RouterAuth, router};
use pay402_client::x402::{LocalSigner, X402Client, X402Error, X402Paid};
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::{Facilitator, TokenAmount};
use pay402_server::x402::store::MemoryPaymentStore;
use pay402_server::x402::{X402Config, X402Layer, X402Payment, X402Route, exact_offer};
use pay402_testkit::anvil::{
    Anvil, DEV_ACCOUNTS, DevAccount, FRESH_CHAIN_USDC, USDC_NAME, USDC_VERSION, Usdc,
};
use pay402_testkit::x402_sdk::{
    self, ANVIL_NETWORK, SdkFacilitator, SdkPayment, SdkPaymentOutcome, SdkServer, SdkServerConfig,
};
use tokio::task::JoinHandle;

/// The price of the paid route: 0.01 USDC.
const PRICE: u128 = 10_000;
/// What the payer starts with: 1 USDC.
const PAYER_FUNDS: u64 = 1_000_000;

const PAYER: DevAccount = DEV_ACCOUNTS[1];
const PAYEE: DevAccount = DEV_ACCOUNTS[2];
/// Pays the gas of pay402's facilitator's settlements.
const PAY402_FACILITATOR: DevAccount = DEV_ACCOUNTS[3];
/// Pays the gas of the official facilitator's settlements.
const SDK_FACILITATOR: DevAccount = DEV_ACCOUNTS[4];
/// Every await on the network has this bound.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// A fresh chain with USDC deployed; the payer holds [`PAYER_FUNDS`].
fn chain() -> Anvil {
    Anvil::start().unwrap_or_else(|e| panic!("anvil is required for this test: {e}"))
}

fn usdc(chain: &Anvil) -> Usdc<'_> {
    let usdc = chain
        .deploy_usdc()
        .unwrap_or_else(|e| panic!("deploying USDC on anvil: {e}"));
    usdc.mint(PAYER.address, U256::from(PAYER_FUNDS))
        .unwrap_or_else(|e| panic!("minting USDC to the payer: {e}"));
    usdc
}

/// Balances of (payer, payee).
fn balances(usdc: &Usdc<'_>) -> (U256, U256) {
    let of = |a: Address| {
        usdc.balance_of(a)
            .unwrap_or_else(|e| panic!("balanceOf({a}): {e}"))
    };
    (of(PAYER.address), of(PAYEE.address))
}

/// Checks the chain moved exactly [`PRICE`] from payer to payee, spent
/// `nonce`, and that `transaction` is a successful, mined transaction.
fn assert_settled_on_chain(
    chain: &Anvil,
    usdc: &Usdc<'_>,
    before: (U256, U256),
    nonce: B256,
    transaction: &str,
    context: &dyn Fn() -> String,
) {
    let after = balances(usdc);
    assert_eq!(
        after.1,
        before.1 + U256::from(PRICE),
        "the payee's USDC balance must rise by exactly the price\n{}",
        context()
    );
    assert_eq!(
        after.0,
        before.0 - U256::from(PRICE),
        "the payer's USDC balance must fall by exactly the price\n{}",
        context()
    );
    assert!(
        usdc.authorization_state(PAYER.address, nonce)
            .unwrap_or_else(|e| panic!("authorizationState: {e}")),
        "the EIP-3009 nonce {nonce} must be spent\n{}",
        context()
    );
    let receipt = chain.wait_for_receipt(transaction).unwrap_or_else(|e| {
        panic!(
            "receipt of the settlement {transaction}: {e}\n{}",
            context()
        )
    });
    assert_eq!(
        receipt.status, 1,
        "settlement transaction reverted: {}",
        receipt.raw
    );
}

/// Checks what the official client reports after paying: 200, the body, and
/// a successful PAYMENT-RESPONSE (decoded by the SDK) naming the payer, the
/// network and a transaction. Returns (nonce, transaction).
fn assert_official_client_paid(
    outcome: &SdkPaymentOutcome,
    expected_body: &str,
    context: &dyn Fn() -> String,
) -> (B256, String) {
    assert_eq!(
        outcome.status,
        200,
        "the paid retry must be served\n{}",
        context()
    );
    assert!(
        outcome.body.contains(expected_body),
        "unexpected body {:?}\n{}",
        outcome.body,
        context()
    );
    assert_eq!(outcome.payer, PAYER.address);
    let version = outcome
        .payment_payload
        .as_ref()
        .map(|p| p["x402Version"].clone());
    assert_eq!(
        version,
        Some(2.into()),
        "the SDK must pay with x402 v2\n{}",
        context()
    );
    let receipt = outcome
        .payment_response
        .as_ref()
        .unwrap_or_else(|| panic!("no PAYMENT-RESPONSE on the 200\n{}", context()));
    assert_eq!(
        receipt["success"],
        true,
        "receipt: {receipt}\n{}",
        context()
    );
    assert_eq!(receipt["network"], ANVIL_NETWORK, "receipt: {receipt}");
    let payer: Option<Address> = receipt["payer"].as_str().and_then(|p| p.parse().ok());
    assert_eq!(payer, Some(PAYER.address), "receipt: {receipt}");
    let transaction = receipt["transaction"]
        .as_str()
        .filter(|t| t.len() == 66 && t.starts_with("0x"))
        .unwrap_or_else(|| panic!("no transaction hash in the receipt {receipt}"))
        .to_owned();
    let nonce = outcome
        .authorization_nonce()
        .unwrap_or_else(|| panic!("the SDK reported no signed authorization\n{}", context()));
    // The SDK paid what was asked, to whom it was asked.
    let auth = &outcome
        .payment_payload
        .as_ref()
        .map(|p| p["payload"]["authorization"].clone());
    let auth = auth.as_ref().unwrap_or_else(|| panic!("no authorization"));
    assert_eq!(auth["value"], PRICE.to_string(), "authorization: {auth}");
    let to: Option<Address> = auth["to"].as_str().and_then(|t| t.parse().ok());
    assert_eq!(to, Some(PAYEE.address), "authorization: {auth}");
    (nonce, transaction)
}

/// Control: official client, official server, official facilitator engine.
#[test]
fn official_stack_control() {
    let chain = chain();
    let usdc = usdc(&chain);
    let facilitator = SdkFacilitator::start(&chain.rpc_url(), SDK_FACILITATOR.private_key)
        .unwrap_or_else(|e| panic!("starting the official facilitator: {e}"));
    let server = SdkServer::start(&SdkServerConfig::new(
        facilitator.url(),
        usdc.address,
        PAYEE.address,
        PRICE,
    ))
    .unwrap_or_else(|e| panic!("starting the official express server: {e}"));
    let before = balances(&usdc);

    let outcome = x402_sdk::pay(&SdkPayment::new(
        server.url(),
        usdc.address,
        PRICE,
        PAYER.private_key,
    ))
    .unwrap_or_else(|e| {
        panic!(
            "the official client failed: {e}\n--- server ---\n{}\n--- facilitator ---\n{}",
            server.log_tail(),
            facilitator.log_tail()
        )
    });
    let context = || {
        format!(
            "client: {outcome:?}\n--- server ---\n{}\n--- facilitator ---\n{}",
            server.log_tail(),
            facilitator.log_tail()
        )
    };
    let (nonce, transaction) = assert_official_client_paid(&outcome, "\"paid\":true", &context);
    assert_settled_on_chain(&chain, &usdc, before, nonce, &transaction, &context);
}

// ---------------------------------------------------------------------------
// pay402 pieces, served on 127.0.0.1 from the test's runtime
// ---------------------------------------------------------------------------

/// An axum app running on a free loopback port; aborted on drop.
struct Served {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Served {
    async fn start(app: Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("axum server on {addr} stopped: {e}");
            }
        });
        Served { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// pay402's facilitator on the chain, settling from [`PAY402_FACILITATOR`].
async fn pay402_facilitator(chain: &Anvil) -> Arc<LocalFacilitator> {
    let built = LocalFacilitator::builder(chain.rpc_url())
        .signer(PAY402_FACILITATOR.private_key)
        .network(ANVIL_NETWORK)
        .allow_asset(FRESH_CHAIN_USDC, USDC_NAME, USDC_VERSION)
        .build();
    let facilitator = tokio::time::timeout(STEP_TIMEOUT, built)
        .await
        .unwrap_or_else(|_| panic!("building the LocalFacilitator timed out"))
        .unwrap_or_else(|e| panic!("building the LocalFacilitator: {e}"));
    Arc::new(facilitator)
}

/// pay402's facilitator HTTP API (`/verify`, `/settle`, `/supported`) over
/// a [`LocalFacilitator`], served on 127.0.0.1.
async fn pay402_facilitator_server(chain: &Anvil) -> Served {
    let facilitator: Arc<dyn Facilitator> = pay402_facilitator(chain).await;
    Served::start(router(
        facilitator,
        RouterAuth::unauthenticated_do_not_expose(),
    ))
    .await
}

/// A pay402 resource server selling `GET /paid` for [`PRICE`] of `usdc` to
/// [`PAYEE`], settling through `facilitator`.
async fn pay402_server(usdc: Address, facilitator: Arc<dyn Facilitator>) -> Served {
    let paywall = X402Layer::new(
        X402Config::new(),
        facilitator,
        Arc::new(MemoryPaymentStore::new()),
    );
    let offer = exact_offer(
        ANVIL_NETWORK,
        &usdc.to_string(),
        &PAYEE.address.to_string(),
        TokenAmount::from_u64(PRICE as u64),
        USDC_NAME,
        USDC_VERSION,
    );
    let route = X402Route::new([offer])
        .unwrap_or_else(|e| panic!("the offer is refused by X402Route: {e}"))
        .description("pay402 interop test resource")
        .mime_type("application/json");
    let app = Router::new().route(
        "/paid",
        get(|payment: X402Payment| async move {
            axum::Json(serde_json::json!({"paid": true, "payer": payment.payer.to_string()}))
        })
        .route_layer(paywall.with_route(route)),
    );
    Served::start(app).await
}

/// pay402's client for [`PAYER`], allowed to pay up to [`PRICE`] of `usdc`.
fn pay402_client(usdc: Address) -> X402Client {
    let signer = LocalSigner::from_bytes(&PAYER.private_key.0)
        .unwrap_or_else(|e| panic!("the payer key: {e}"));
    X402Client::builder(Arc::new(signer))
        .allow_asset(
            ANVIL_NETWORK,
            EvmAddress(usdc),
            TokenAmount::from_u64(PRICE as u64),
        )
        .timeout(STEP_TIMEOUT)
        .build()
}

/// Runs the official client (a blocking child process) off the runtime, so
/// the in-process pay402 server keeps serving meanwhile.
async fn official_pay(payment: SdkPayment) -> Result<SdkPaymentOutcome, String> {
    tokio::task::spawn_blocking(move || x402_sdk::pay(&payment).map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| panic!("the official client's thread: {e}"))
}

/// Starts the official express server off the runtime (it calls the
/// facilitator's `/supported`, which may be served by this runtime).
async fn official_server(config: SdkServerConfig) -> SdkServer {
    tokio::task::spawn_blocking(move || SdkServer::start(&config))
        .await
        .unwrap_or_else(|e| panic!("the official server's start thread: {e}"))
        .unwrap_or_else(|e| panic!("starting the official express server: {e}"))
}

/// Pays `url` with pay402's client and checks its report: 200, the body, a
/// successful settlement naming a transaction. Returns (nonce, transaction).
async fn pay402_pays(
    usdc: Address,
    url: &str,
    expected_body: &str,
    context: &dyn Fn() -> String,
) -> (B256, String) {
    let client = pay402_client(usdc);
    let paid: Result<X402Paid, X402Error> = tokio::time::timeout(STEP_TIMEOUT, client.get(url))
        .await
        .unwrap_or_else(|_| panic!("pay402's client timed out\n{}", context()));
    let paid = paid.unwrap_or_else(|e| panic!("pay402's client failed: {e:?}\n{}", context()));
    let status = paid.status();
    let receipt = paid.receipt.clone();
    let body = paid
        .response
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading the body: {e}"));
    assert_eq!(status, 200, "body {body:?}\n{}", context());
    assert!(
        body.contains(expected_body),
        "unexpected body {body:?}\n{}",
        context()
    );
    let receipt =
        receipt.unwrap_or_else(|| panic!("pay402's client reports no payment\n{}", context()));
    assert!(
        receipt.settled(),
        "the PAYMENT-RESPONSE must report success: {:?}\n{}",
        receipt.settlement,
        context()
    );
    let settlement = receipt
        .settlement
        .as_ref()
        .map(|s| (s.network.clone(), s.payer.clone()));
    assert_eq!(
        settlement,
        Some((ANVIL_NETWORK.to_owned(), Some(PAYER.address.to_string()))),
        "settlement: {:?}",
        receipt.settlement
    );
    assert_eq!(receipt.payment.payer, EvmAddress(PAYER.address));
    assert_eq!(receipt.payment.pay_to, EvmAddress(PAYEE.address));
    assert_eq!(receipt.payment.amount, TokenAmount::from_u64(PRICE as u64));
    let transaction = receipt
        .transaction()
        .unwrap_or_else(|| panic!("no transaction in the PAYMENT-RESPONSE"))
        .to_owned();
    (B256::from(receipt.payment.nonce.0), transaction)
}

/// 1. The official client pays a pay402 server settling through pay402's
/// in-process facilitator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_pays_pay402_server() {
    let chain = chain();
    let usdc = usdc(&chain);
    let facilitator: Arc<dyn Facilitator> = pay402_facilitator(&chain).await;
    let server = pay402_server(usdc.address, facilitator).await;
    let before = balances(&usdc);

    let outcome = official_pay(SdkPayment::new(
        format!("{}/paid", server.url()),
        usdc.address,
        PRICE,
        PAYER.private_key,
    ))
    .await
    .unwrap_or_else(|e| panic!("the official client failed against pay402's server: {e}"));
    let context = || format!("official client: {outcome:#?}");
    let (nonce, transaction) = assert_official_client_paid(&outcome, "\"paid\":true", &context);
    assert_settled_on_chain(&chain, &usdc, before, nonce, &transaction, &context);
}

/// 2. pay402's client pays an official express server whose facilitator is
/// pay402's facilitator HTTP API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay402_client_pays_official_server_via_pay402_facilitator() {
    let chain = chain();
    let usdc = usdc(&chain);
    let facilitator = pay402_facilitator_server(&chain).await;
    let server = official_server(SdkServerConfig::new(
        facilitator.url(),
        usdc.address,
        PAYEE.address,
        PRICE,
    ))
    .await;
    let before = balances(&usdc);

    let context = || format!("--- official server ---\n{}", server.log_tail());
    let (nonce, transaction) =
        pay402_pays(usdc.address, &server.url(), "\"paid\":true", &context).await;
    assert_settled_on_chain(&chain, &usdc, before, nonce, &transaction, &context);
}

/// 3. Official client and official server, pay402's facilitator: the
/// facilitator alone is SDK-compatible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_official_server_pay402_facilitator() {
    let chain = chain();
    let usdc = usdc(&chain);
    let facilitator = pay402_facilitator_server(&chain).await;
    let server = official_server(SdkServerConfig::new(
        facilitator.url(),
        usdc.address,
        PAYEE.address,
        PRICE,
    ))
    .await;
    let before = balances(&usdc);

    let outcome = official_pay(SdkPayment::new(
        server.url(),
        usdc.address,
        PRICE,
        PAYER.private_key,
    ))
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the official client failed: {e}\n--- official server ---\n{}",
            server.log_tail()
        )
    });
    let context = || {
        format!(
            "official client: {outcome:#?}\n--- official server ---\n{}",
            server.log_tail()
        )
    };
    let (nonce, transaction) = assert_official_client_paid(&outcome, "\"paid\":true", &context);
    assert_settled_on_chain(&chain, &usdc, before, nonce, &transaction, &context);
}

/// pay402's client against the all-official server side: isolates the
/// client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay402_client_pays_official_server_via_official_facilitator() {
    let chain = chain();
    let usdc = usdc(&chain);
    let facilitator = SdkFacilitator::start(&chain.rpc_url(), SDK_FACILITATOR.private_key)
        .unwrap_or_else(|e| panic!("starting the official facilitator: {e}"));
    let server = official_server(SdkServerConfig::new(
        facilitator.url(),
        usdc.address,
        PAYEE.address,
        PRICE,
    ))
    .await;
    let before = balances(&usdc);

    let context = || {
        format!(
            "--- official server ---\n{}\n--- official facilitator ---\n{}",
            server.log_tail(),
            facilitator.log_tail()
        )
    };
    let (nonce, transaction) =
        pay402_pays(usdc.address, &server.url(), "\"paid\":true", &context).await;
    assert_settled_on_chain(&chain, &usdc, before, nonce, &transaction, &context);
}

/// The official client pays a pay402 server whose facilitator is the
/// official engine, reached through pay402's `RemoteFacilitator`: the
/// facilitator requests pay402 forwards are what the SDK expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_pays_pay402_server_via_official_facilitator() {
    let chain = chain();
    let usdc = usdc(&chain);
    let official = SdkFacilitator::start(&chain.rpc_url(), SDK_FACILITATOR.private_key)
        .unwrap_or_else(|e| panic!("starting the official facilitator: {e}"));
    let remote: Arc<dyn Facilitator> = Arc::new(
        RemoteFacilitator::builder(official.url())
            .timeout(STEP_TIMEOUT)
            .build()
            .unwrap_or_else(|e| panic!("RemoteFacilitator for {}: {e}", official.url())),
    );
    let server = pay402_server(usdc.address, remote).await;
    let before = balances(&usdc);

    let outcome = official_pay(SdkPayment::new(
        format!("{}/paid", server.url()),
        usdc.address,
        PRICE,
        PAYER.private_key,
    ))
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the official client failed: {e}\n--- official facilitator ---\n{}",
            official.log_tail()
        )
    });
    let context = || {
        format!(
            "official client: {outcome:#?}\n--- official facilitator ---\n{}",
            official.log_tail()
        )
    };
    let (nonce, transaction) = assert_official_client_paid(&outcome, "\"paid\":true", &context);
    assert_settled_on_chain(&chain, &usdc, before, nonce, &transaction, &context);
}

/// A payment pay402's facilitator refuses (the payer holds no USDC) reaches
/// the official client as a 402 carrying pay402's reason, and nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_server_reports_pay402_facilitator_refusal() {
    let chain = chain();
    // No mint to the payer this time.
    let usdc = chain
        .deploy_usdc()
        .unwrap_or_else(|e| panic!("deploying USDC on anvil: {e}"));
    let facilitator = pay402_facilitator_server(&chain).await;
    let server = official_server(SdkServerConfig::new(
        facilitator.url(),
        usdc.address,
        PAYEE.address,
        PRICE,
    ))
    .await;
    let before = balances(&usdc);
    assert_eq!(before.0, U256::ZERO);

    let outcome = official_pay(SdkPayment::new(
        server.url(),
        usdc.address,
        PRICE,
        PAYER.private_key,
    ))
    .await
    .unwrap_or_else(|e| panic!("the official client failed: {e}\n{}", server.log_tail()));
    let context = || {
        format!(
            "official client: {outcome:#?}\n--- official server ---\n{}",
            server.log_tail()
        )
    };
    assert_eq!(
        outcome.status,
        402,
        "an unfunded payment must not be served\n{}",
        context()
    );
    assert!(!outcome.body.contains("\"paid\":true"), "{}", context());
    let required = outcome
        .payment_required
        .as_ref()
        .unwrap_or_else(|| panic!("the final 402 has no PAYMENT-REQUIRED\n{}", context()));
    // The TypeScript reference facilitator's reason for this fault.
    assert_eq!(
        required["error"],
        "invalid_exact_evm_insufficient_balance",
        "the 402 must carry the facilitator's reason\n{}",
        context()
    );
    assert_eq!(balances(&usdc), before, "nothing may move\n{}", context());
    let nonce = outcome
        .authorization_nonce()
        .unwrap_or_else(|| panic!("the SDK signed nothing\n{}", context()));
    assert!(
        !usdc
            .authorization_state(PAYER.address, nonce)
            .unwrap_or_else(|e| panic!("authorizationState: {e}")),
        "the refused nonce must stay unused"
    );
}

/// The official server offers `asset` and `payTo` in lowercase hex and
/// matches the `accepted` echo by exact string comparison: pay402's client
/// must echo the offer as given, not re-checksummed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay402_client_echoes_lowercase_offer_to_official_server() {
    let chain = chain();
    let usdc = usdc(&chain);
    let facilitator = pay402_facilitator_server(&chain).await;
    let mut config = SdkServerConfig::new(facilitator.url(), usdc.address, PAYEE.address, PRICE);
    config.lowercase_addresses = true;
    let server = official_server(config).await;
    let before = balances(&usdc);

    let context = || format!("--- official server ---\n{}", server.log_tail());
    let (nonce, transaction) =
        pay402_pays(usdc.address, &server.url(), "\"paid\":true", &context).await;
    assert_settled_on_chain(&chain, &usdc, before, nonce, &transaction, &context);
}

/// The official server reads pay402's `/supported` at start-up and refuses
/// to start for a network pay402's facilitator does not serve (it serves
/// only the anvil chain); the harness reports that with the server's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_server_start_checks_pay402_supported_kinds() {
    let chain = chain();
    let usdc = usdc(&chain);
    let facilitator = pay402_facilitator_server(&chain).await;
    let mut config = SdkServerConfig::new(facilitator.url(), usdc.address, PAYEE.address, PRICE);
    config.network = "eip155:8453".to_owned();
    let started = tokio::task::spawn_blocking(move || SdkServer::start(&config))
        .await
        .unwrap_or_else(|e| panic!("the official server's start thread: {e}"));
    match started {
        Ok(server) => panic!(
            "the official server started for eip155:8453 although pay402's facilitator only \
             serves {ANVIL_NETWORK}: {server:?}"
        ),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(
                    "Facilitator does not support scheme \"exact\" on network \"eip155:8453\""
                ),
                "unexpected start failure: {message}"
            );
        }
    }
}

/// A settlement that is sent but not mined within pay402's bound: pay402's
/// facilitator answers 202 `settlement_pending` with the transaction hash;
/// the official server retries the settle once (the SDK's own rule for
/// `settlement_pending`), gets the same pending transaction back (pay402's
/// settle is idempotent: one transaction in the pool, not two), and then
/// answers the client 402 with that receipt and no body. Once mined, the
/// payer has paid exactly once. (Withholding the body of a payment that
/// later settles is the SDK server's behaviour; the client keeps the hash to
/// reconcile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_server_handles_pay402_pending_settlement() {
    let chain = chain();
    let usdc = usdc(&chain);
    let built = LocalFacilitator::builder(chain.rpc_url())
        .signer(PAY402_FACILITATOR.private_key)
        .network(ANVIL_NETWORK)
        .allow_asset(FRESH_CHAIN_USDC, USDC_NAME, USDC_VERSION)
        .receipt_timeout(Duration::from_secs(1))
        .build();
    let facilitator: Arc<dyn Facilitator> = Arc::new(
        tokio::time::timeout(STEP_TIMEOUT, built)
            .await
            .unwrap_or_else(|_| panic!("building the LocalFacilitator timed out"))
            .unwrap_or_else(|e| panic!("building the LocalFacilitator: {e}")),
    );
    let facilitator = Served::start(router(
        facilitator,
        RouterAuth::unauthenticated_do_not_expose(),
    ))
    .await;
    let server = official_server(SdkServerConfig::new(
        facilitator.url(),
        usdc.address,
        PAYEE.address,
        PRICE,
    ))
    .await;
    let before = balances(&usdc);
    chain
        .rpc("evm_setAutomine", serde_json::json!([false]))
        .unwrap_or_else(|e| panic!("evm_setAutomine: {e}"));

    let outcome = official_pay(SdkPayment::new(
        server.url(),
        usdc.address,
        PRICE,
        PAYER.private_key,
    ))
    .await
    .unwrap_or_else(|e| panic!("the official client failed: {e}\n{}", server.log_tail()));
    let context = || {
        format!(
            "official client: {outcome:#?}\n--- official server ---\n{}",
            server.log_tail()
        )
    };
    assert_eq!(outcome.status, 402, "{}", context());
    assert!(!outcome.body.contains("\"paid\":true"), "{}", context());
    let receipt = outcome
        .payment_response
        .as_ref()
        .unwrap_or_else(|| panic!("no PAYMENT-RESPONSE on the 402\n{}", context()));
    assert_eq!(receipt["success"], false, "{}", context());
    assert_eq!(
        receipt["errorReason"],
        "settlement_pending",
        "{}",
        context()
    );
    let transaction = receipt["transaction"]
        .as_str()
        .filter(|t| t.len() == 66 && t.starts_with("0x"))
        .unwrap_or_else(|| panic!("no transaction hash in the pending receipt\n{}", context()))
        .to_owned();

    // Two settle calls, one transaction.
    let pool = chain
        .rpc("txpool_content", serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("txpool_content: {e}"));
    let pending: Vec<&str> = pool["pending"]
        .as_object()
        .into_iter()
        .flat_map(|senders| senders.values())
        .filter_map(|txs| txs.as_object())
        .flat_map(|txs| txs.values())
        .filter_map(|tx| tx["hash"].as_str())
        .collect();
    assert_eq!(pending, vec![transaction.as_str()], "pool: {pool}");
    assert_eq!(balances(&usdc), before, "nothing is mined yet");

    chain
        .rpc("evm_mine", serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("evm_mine: {e}"));
    let nonce = outcome
        .authorization_nonce()
        .unwrap_or_else(|| panic!("the SDK signed nothing\n{}", context()));
    assert_settled_on_chain(&chain, &usdc, before, nonce, &transaction, &context);
}
