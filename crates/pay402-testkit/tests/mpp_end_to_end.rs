//! MPP end to end across crates: pay402's `Payer` paying pay402's `Paywall`
//! (over real TCP), and mppx's client (npm 0.11.0) paying pay402's
//! `Paywall`.
//!
//! | test | client | server | network |
//! |---|---|---|---|
//! | `payer_pays_paywall_mpp_lightning_charge_on_simnet` | `Payer` (L402 + MPP means, MPP first; then MPP only) | `Paywall` (L402 + MPP) | simnet (real BOLT11) |
//! | `payer_pays_paywall_mpp_evm_charge_on_anvil` | `Payer` (MPP EVM means) | `Paywall` (MPP `evm`/`charge`, `LocalFacilitator`) | anvil, Circle's USDC |
//! | `mppx_client_pays_a_pay402_paywall_through_evm_charge` | mppx (`mppx.mjs client`) | `Paywall` (MPP `evm`/`charge`) | anvil, Circle's USDC |
//! | `mppx_client_pays_a_multi_rail_paywall_through_mpp_once` | mppx | `Paywall` (L402 + MPP `evm`/`charge` + x402, one 402) | anvil, Circle's USDC |
//!
//! Charges are never cached: every request pays once, and one request is
//! never paid twice. Anvil and mppx are installed from npm by the testkit
//! on first use; a test fails loudly when its peer cannot start.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::U256;
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::get;
use pay402_backends::simnet::{SimNet, SimNode};
use pay402_backends::x402::LocalFacilitator;
use pay402_client::journal::Journal;
use pay402_client::mpp::{MppClient, MppToken};
use pay402_client::x402::LocalSigner;
use pay402_client::{Choice, Payer, RailReceipt};
use pay402_core::lightning::{InvoiceIssuer, LightningPayer, Network};
use pay402_core::money::Msat;
use pay402_core::offer::Rail;
use pay402_core::rates::FixedRates;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_server::mpp::store::MemoryMppStore;
use pay402_server::mpp::{CredentialHeader, MppConfig};
use pay402_server::paywall::{Paid, Paywall, PaywallPrice, X402Asset};
use pay402_server::store::MemoryStore;
use pay402_testkit::anvil::{
    Anvil, CHAIN_ID, DEV_ACCOUNTS, DevAccount, USDC_DECIMALS, USDC_NAME, USDC_VERSION, Usdc,
};
use pay402_testkit::mppx::{self, MppxPayment};
use pay402_testkit::x402_sdk::ANVIL_NETWORK;

const REALM: &str = "127.0.0.1";
const SECRET: [u8; 32] = [0x4d; 32];
const PRICE_SAT: u64 = 100;
/// 1 US cent = 10 000 USDC base units.
const PRICE_USDC: u64 = 10_000;
const FUNDS: u64 = 1_000_000;
const PAYER: DevAccount = DEV_ACCOUNTS[1];
const PAYEE: DevAccount = DEV_ACCOUNTS[2];
const FACILITATOR: DevAccount = DEV_ACCOUNTS[3];
const STEP: Duration = Duration::from_secs(90);

/// What the server saw: handler runs and every `Authorization` value.
#[derive(Clone, Default)]
struct Seen {
    runs: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<String>>>,
    /// The `Payment-Authorization` values received.
    payment_authorizations: Arc<Mutex<Vec<String>>>,
}

/// `GET /report` behind `paywall` priced `price`, served on a free port.
async fn serve(paywall: &Paywall, price: PaywallPrice, seen: &Seen) -> SocketAddr {
    let runs = seen.runs.clone();
    let report = get(move |paid: Paid| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            format!("paid by {} ({})", paid.rail.as_str(), paid.receipt.kind())
        }
    });
    let auths = seen.authorizations.clone();
    let payment_auths = seen.payment_authorizations.clone();
    let app = Router::new()
        .route("/report", report.route_layer(paywall.price(price)))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let auths = auths.clone();
            let payment_auths = payment_auths.clone();
            async move {
                for (name, seen) in [
                    ("authorization", &auths),
                    ("payment-authorization", &payment_auths),
                ] {
                    for v in req.headers().get_all(name) {
                        seen.lock()
                            .unwrap()
                            .push(v.to_str().unwrap_or_default().to_owned());
                    }
                }
                next.run(req).await
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

fn payment_credentials(seen: &Seen) -> Vec<String> {
    seen.authorizations
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v.starts_with("Payment "))
        .cloned()
        .collect()
}

/// `GET url` through `payer`: a 200 paid through MPP, and its receipt.
async fn paid_through_mpp(
    payer: &Payer,
    url: &str,
    n: u64,
) -> (pay402_client::PayerPaid, pay402_client::mpp::MppReceipt) {
    let paid = payer
        .get(url)
        .await
        .unwrap_or_else(|e| panic!("request {n}: {e}"));
    assert_eq!(paid.status(), 200, "request {n}");
    let receipt = paid.receipt.clone().expect("a payer receipt");
    assert_eq!(receipt.rail, Rail::Mpp, "request {n} paid through MPP");
    let Some(RailReceipt::Mpp(mpp)) = receipt.rail_receipt else {
        panic!("request {n}: no MPP receipt");
    };
    (paid, *mpp)
}

/// A simnet merchant (no funds), a funded payer wallet, and the merchant
/// as the paywall's invoice issuer.
fn simnet_parties() -> (SimNode, SimNode, Arc<dyn InvoiceIssuer>) {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let wallet = net.add_node("payer", Msat(1_000_000_000));
    let node: Arc<dyn InvoiceIssuer> = Arc::new(merchant.clone());
    (merchant, wallet, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_pays_paywall_mpp_lightning_charge_on_simnet() {
    let (merchant, wallet, node) = simnet_parties();
    let mpp = MppConfig::new(REALM, &SECRET)
        .unwrap()
        .lightning(node.clone())
        .store(Arc::new(MemoryMppStore::new()));
    let paywall = Paywall::builder()
        .l402(node, Arc::new(MemoryStore::new()))
        .mpp(mpp)
        .build()
        .unwrap();
    let seen = Seen::default();
    let addr = serve(&paywall, PaywallPrice::sats(PRICE_SAT), &seen).await;
    let url = format!("http://{addr}/report");
    let lightning: Arc<dyn LightningPayer> = Arc::new(wallet.clone());
    // One 402 offers both: L402 first, then the `Payment` challenge.
    let unpaid = reqwest::get(&url).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let schemes: Vec<String> = unpaid
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(schemes, ["L402", "Payment"]);

    // A payer holding L402 and MPP means, preferring MPP.
    let both = Payer::builder()
        .lightning(lightning.clone(), Network::Regtest)
        .mpp(MppClient::builder().lightning(lightning.clone(), Network::Regtest))
        .choose(Choice::RailOrder(vec![Rail::Mpp, Rail::L402]))
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    // A payer holding only MPP means.
    let only = Payer::builder()
        .mpp(MppClient::builder().lightning(lightning, Network::Regtest))
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();

    let mut references = Vec::new();
    for (i, payer) in [&both, &only, &both].into_iter().enumerate() {
        let n = i as u64 + 1;
        let paid = payer
            .get(&url)
            .await
            .unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!(paid.status(), 200, "request {n}");
        let receipt = paid.receipt.clone().expect("a payer receipt");
        assert_eq!(receipt.rail, Rail::Mpp, "request {n} paid through MPP");
        let Some(RailReceipt::Mpp(mpp)) = &receipt.rail_receipt else {
            panic!("request {n}: no MPP receipt");
        };
        assert_eq!(mpp.kind, "lightning/charge");
        let server = mpp
            .receipt
            .as_ref()
            .unwrap_or_else(|| panic!("Payment-Receipt unread: {:?}", mpp.receipt_error));
        assert_eq!(server.method, "lightning");
        assert_eq!(server.status, "success");
        assert_eq!(server.reference, mpp.reference, "the payment hash");
        assert_eq!(server.challenge_id.as_deref(), Some(&*mpp.challenge_id));
        assert_eq!(paid.text().await.unwrap(), "paid by mpp (mpp_lightning)");
        references.push(mpp.reference.clone());
        // Each request paid exactly once: one Lightning payment, one
        // presented credential, one handler run.
        assert_eq!(wallet.payments_sent(), n, "request {n}");
        assert_eq!(merchant.balance(), Msat(n * PRICE_SAT * 1000));
        assert_eq!(seen.runs.load(Ordering::SeqCst), i + 1);
        assert_eq!(payment_credentials(&seen).len(), i + 1);
    }
    // Three charges, three invoices: no credential was cached or reused.
    references.sort();
    references.dedup();
    assert_eq!(references.len(), 3);
    // L402 was offered beside MPP and never paid.
    assert!(
        seen.authorizations
            .lock()
            .unwrap()
            .iter()
            .all(|v| !v.starts_with("L402"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_pays_a_paywall_taking_payment_authorization_on_simnet() {
    let (merchant, wallet, node) = simnet_parties();
    let mpp = MppConfig::new(REALM, &SECRET)
        .unwrap()
        .lightning(node)
        .credential_header(CredentialHeader::PaymentAuthorization);
    let paywall = Paywall::builder().mpp(mpp).build().unwrap();
    let seen = Seen::default();
    let addr = serve(&paywall, PaywallPrice::sats(PRICE_SAT), &seen).await;
    let url = format!("http://{addr}/report");
    // The challenge names the field.
    let unpaid = reqwest::get(&url).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let www = unpaid.headers()["www-authenticate"].to_str().unwrap();
    assert!(www.contains(r#"header="Payment-Authorization""#), "{www}");

    let lightning: Arc<dyn LightningPayer> = Arc::new(wallet.clone());
    let payer = Payer::builder()
        .mpp(MppClient::builder().lightning(lightning, Network::Regtest))
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    for n in 1..=2u64 {
        let (paid, mpp) = paid_through_mpp(&payer, &url, n).await;
        let server = mpp.receipt.as_ref().expect("Payment-Receipt read");
        assert_eq!(server.challenge_id.as_deref(), Some(&*mpp.challenge_id));
        assert_eq!(paid.text().await.unwrap(), "paid by mpp (mpp_lightning)");
        // Paid once per request, the credential in Payment-Authorization
        // and never in Authorization.
        assert_eq!(wallet.payments_sent(), n);
        assert_eq!(merchant.balance(), Msat(n * PRICE_SAT * 1000));
        assert_eq!(seen.runs.load(Ordering::SeqCst), n as usize);
        let in_field = seen.payment_authorizations.lock().unwrap().clone();
        assert_eq!(in_field.len(), n as usize);
        assert!(in_field.iter().all(|v| v.starts_with("Payment ")));
        assert!(payment_credentials(&seen).is_empty());
    }
}

/// A `LocalFacilitator` settling `usdc` on `chain`, paying gas as
/// [`FACILITATOR`].
async fn facilitator(chain: &Anvil, usdc: &Usdc<'_>) -> LocalFacilitator {
    let facilitator = LocalFacilitator::builder(chain.rpc_url())
        .signer(FACILITATOR.private_key)
        .network(ANVIL_NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .build();
    tokio::time::timeout(STEP, facilitator)
        .await
        .expect("building the facilitator timed out")
        .expect("the local facilitator on anvil")
}

/// anvil with Circle's USDC deployed and [`FUNDS`] minted to [`PAYER`].
fn chain() -> Anvil {
    Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"))
}

fn usdc(chain: &Anvil) -> Usdc<'_> {
    let usdc = chain
        .deploy_usdc()
        .unwrap_or_else(|e| panic!("deploying USDC on anvil: {e}"));
    usdc.mint(PAYER.address, U256::from(FUNDS))
        .unwrap_or_else(|e| panic!("minting USDC: {e}"));
    usdc
}

/// A `Paywall` whose only rail is MPP `evm`/`charge`, paid to [`PAYEE`].
fn evm_paywall(usdc: &Usdc<'_>, facilitator: LocalFacilitator) -> Paywall {
    let mpp = MppConfig::new(REALM, &SECRET)
        .unwrap()
        .evm(
            Arc::new(facilitator),
            EvmAddress(PAYEE.address),
            X402Asset::usdc(ANVIL_NETWORK, EvmAddress(usdc.address)),
        )
        .store(Arc::new(MemoryMppStore::new()));
    Paywall::builder().mpp(mpp).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_pays_paywall_mpp_evm_charge_on_anvil() {
    let chain = chain();
    let usdc = usdc(&chain);
    let paywall = evm_paywall(&usdc, facilitator(&chain, &usdc).await);
    let seen = Seen::default();
    let addr = serve(&paywall, PaywallPrice::usd_cents(1), &seen).await;
    let url = format!("http://{addr}/report");
    let token = MppToken::new(
        CHAIN_ID,
        EvmAddress(usdc.address),
        USDC_DECIMALS,
        USDC_NAME,
        USDC_VERSION,
    )
    .max(TokenAmount::from_u64(50_000));
    let signer = LocalSigner::from_bytes(&PAYER.private_key.0).unwrap();
    let payer = Payer::builder()
        .mpp(MppClient::builder().evm(Arc::new(signer), token))
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();

    let payee_start = usdc.balance_of(PAYEE.address).unwrap();
    let payer_start = usdc.balance_of(PAYER.address).unwrap();
    let mut references = Vec::new();
    for n in 1..=2u64 {
        let (paid, mpp) = paid_through_mpp(&payer, &url, n).await;
        assert_eq!(mpp.kind, "evm/charge");
        let server = mpp
            .receipt
            .as_ref()
            .unwrap_or_else(|| panic!("Payment-Receipt unread: {:?}", mpp.receipt_error));
        assert_eq!(server.method, "evm");
        assert_eq!(server.challenge_id.as_deref(), Some(&*mpp.challenge_id));
        assert!(server.reference.starts_with("0x") && server.reference.len() == 66);
        assert_eq!(server.extra["chainId"], CHAIN_ID);
        assert_eq!(paid.text().await.unwrap(), "paid by mpp (mpp_evm)");
        references.push(server.reference.clone());
        // The price exactly once per request, on chain.
        let price = U256::from(n * PRICE_USDC);
        assert_eq!(
            usdc.balance_of(PAYEE.address).unwrap() - payee_start,
            price,
            "request {n}"
        );
        assert_eq!(payer_start - usdc.balance_of(PAYER.address).unwrap(), price);
        assert_eq!(seen.runs.load(Ordering::SeqCst) as u64, n);
        assert_eq!(payment_credentials(&seen).len() as u64, n);
    }
    // Two settlements, two transactions.
    assert_ne!(references[0], references[1]);
}

/// mppx's client pays `url` once as [`PAYER`], in `usdc`, at most the
/// price; its `PAY402_MPPX_RESULT`.
async fn mppx_pays(url: &str, usdc: &Usdc<'_>) -> serde_json::Value {
    let mut payment = MppxPayment::new(url, PAYER.private_key);
    payment.currency = Some(usdc.address);
    payment.max_atomic = Some(u128::from(PRICE_USDC));
    tokio::task::spawn_blocking(move || mppx::pay(&payment))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("mppx's client (node + npm needed) failed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mppx_client_pays_a_pay402_paywall_through_evm_charge() {
    let chain = chain();
    let usdc = usdc(&chain);
    let paywall = evm_paywall(&usdc, facilitator(&chain, &usdc).await);
    let seen = Seen::default();
    let addr = serve(&paywall, PaywallPrice::usd_cents(1), &seen).await;
    let url = format!("http://{addr}/report");
    let payee_start = usdc.balance_of(PAYEE.address).unwrap();
    let payer_start = usdc.balance_of(PAYER.address).unwrap();

    let out = mppx_pays(&url, &usdc).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"], "paid by mpp (mpp_evm)", "{out}");
    assert_eq!(out["receipt"]["method"], "evm", "{out}");
    assert_eq!(out["receipt"]["status"], "success", "{out}");
    let price = U256::from(PRICE_USDC);
    assert_eq!(usdc.balance_of(PAYEE.address).unwrap() - payee_start, price);
    assert_eq!(payer_start - usdc.balance_of(PAYER.address).unwrap(), price);
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1);

    // mppx's credential, as the server received it, read back by pay402.
    let credentials = payment_credentials(&seen);
    assert_eq!(credentials.len(), 1, "mppx presented one credential");
    let token = credentials[0].strip_prefix("Payment ").unwrap();
    let mut buf = Vec::new();
    let cred = pay402_core::mpp::Credential::decode(token, &mut buf).expect("mppx's credential");
    assert_eq!(cred.challenge.method, "evm");
    assert_eq!(cred.challenge.realm, REALM);

    // The same credential replayed: 403, no fresh challenge, nothing moves.
    let replay = reqwest::Client::new()
        .get(&url)
        .header("authorization", &credentials[0])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 403);
    assert!(replay.headers().get("www-authenticate").is_none());
    let body: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(body["reason"], "credential_replayed", "{body}");
    assert_eq!(usdc.balance_of(PAYEE.address).unwrap() - payee_start, price);
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1);
}

/// mppx's client facing a `Paywall` that offers every rail it could read —
/// L402, MPP `evm`/`charge` and x402's `PAYMENT-REQUIRED` on one 402 — pays
/// through MPP, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mppx_client_pays_a_multi_rail_paywall_through_mpp_once() {
    let chain = chain();
    let usdc = usdc(&chain);
    let facilitator = Arc::new(facilitator(&chain, &usdc).await);
    let asset =
        X402Asset::usdc(ANVIL_NETWORK, EvmAddress(usdc.address)).eip712(USDC_NAME, USDC_VERSION);
    let merchant = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    let mpp = MppConfig::new(REALM, &SECRET)
        .unwrap()
        .evm(
            facilitator.clone(),
            EvmAddress(PAYEE.address),
            asset.clone(),
        )
        .store(Arc::new(MemoryMppStore::new()));
    let paywall = Paywall::builder()
        .l402(Arc::new(merchant), Arc::new(MemoryStore::new()))
        .mpp(mpp)
        .x402(facilitator, EvmAddress(PAYEE.address), asset)
        .rates(Arc::new(FixedRates::new().usd_cents_per_btc(10_000_000)))
        .build()
        .unwrap();
    let seen = Seen::default();
    let addr = serve(&paywall, PaywallPrice::usd_cents(1), &seen).await;
    let url = format!("http://{addr}/report");
    let unpaid = reqwest::get(&url).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    assert!(unpaid.headers().contains_key("payment-required"));
    let payee_start = usdc.balance_of(PAYEE.address).unwrap();

    let out = mppx_pays(&url, &usdc).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"], "paid by mpp (mpp_evm)", "{out}");
    assert_eq!(
        usdc.balance_of(PAYEE.address).unwrap() - payee_start,
        U256::from(PRICE_USDC)
    );
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1);
    assert_eq!(payment_credentials(&seen).len(), 1);
}
