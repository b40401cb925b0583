//! MPP `evm`/`charge` through a `Paywall`, settled by pay402's
//! `LocalFacilitator` on anvil with Circle's real USDC: the EIP-3009
//! authorization's nonce is the challenge hash `keccak256(id ‖ realm)`; the
//! payee's balance rises by the price exactly once; a replay, a credential
//! for another route and a payer without funds move nothing more.
//!
//! Needs anvil (installed from npm by the testkit on first use); fails
//! loudly when it cannot start.
#![cfg(all(feature = "x402", feature = "bitreq"))]

mod x402_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pay402_backends::x402::LocalFacilitator;
use pay402_core::mpp::methods::evm;
use pay402_core::mpp::{Challenge, ChallengeList, Receipt};
use pay402_core::time::UnixTime;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::{Eip712Domain, EvmAddress};
use pay402_server::mpp::MppConfig;
use pay402_server::paywall::{Paid, Paywall, PaywallPrice, X402Asset};
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, DevAccount, USDC_NAME, USDC_VERSION, Usdc};
use pay402_testkit::x402_sdk::ANVIL_NETWORK;
use serde_json::{Value, json};
use tower::ServiceExt;

const REALM: &str = "shop.test";
/// 1 US cent = 10 000 USDC base units.
const PRICE_USDC: u64 = 10_000;
const FUNDS: u64 = 1_000_000;
const PAYER: DevAccount = DEV_ACCOUNTS[1];
const PAYEE: DevAccount = DEV_ACCOUNTS[2];
const FACILITATOR: DevAccount = DEV_ACCOUNTS[3];
/// Never funded with USDC.
const BROKE: DevAccount = DEV_ACCOUNTS[4];
const STEP: Duration = Duration::from_secs(90);
const CHAIN_ID: u64 = 31_337;

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

fn balance(usdc: &Usdc<'_>, who: DevAccount) -> TokenAmount {
    TokenAmount(usdc.balance_of(who.address).expect("balanceOf"))
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

impl Reply {
    fn evm(&self) -> Challenge<'static> {
        let list = ChallengeList::parse(
            self.headers
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .map(|v| v.as_bytes()),
        );
        list.challenges()
            .iter()
            .find(|c| c.method == "evm")
            .expect("an evm/charge challenge")
            .clone()
            .into_owned()
    }
    fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or_default()
    }
}

async fn send(app: &Router, path: &str, auth: Option<&str>) -> Reply {
    let mut b = Request::get(path).header(header::HOST, REALM);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Signs the EVM charge `challenge` as `who` would: the `Authorization`.
fn pay(challenge: &Challenge<'_>, who: DevAccount, token: EvmAddress) -> String {
    let payable = evm::check_charge(
        challenge,
        CHAIN_ID,
        &token,
        now(),
        TokenAmount::from_u64(1_000_000),
    )
    .unwrap();
    let auth = evm::authorization_for(challenge, &payable, EvmAddress(who.address), now());
    assert_eq!(
        auth.nonce,
        evm::challenge_hash(&challenge.id, &challenge.realm),
        "the challenge is bound into the nonce"
    );
    let domain = Eip712Domain::new(USDC_NAME, USDC_VERSION, CHAIN_ID, token);
    let sig = x402_support::sign(&who.private_key.0, &auth, &domain);
    evm::credential(challenge, &auth, sig, CHAIN_ID)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpp_evm_charge_settles_real_usdc_once() {
    let chain =
        Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"));
    let usdc = chain
        .deploy_usdc()
        .unwrap_or_else(|e| panic!("deploying USDC on anvil: {e}"));
    usdc.mint(PAYER.address, TokenAmount::from_u64(FUNDS).0)
        .unwrap_or_else(|e| panic!("minting USDC: {e}"));
    let token = EvmAddress(usdc.address);
    let facilitator = LocalFacilitator::builder(chain.rpc_url())
        .signer(FACILITATOR.private_key)
        .network(ANVIL_NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .build();
    let facilitator = tokio::time::timeout(STEP, facilitator)
        .await
        .expect("building the facilitator timed out")
        .expect("the local facilitator on anvil");
    let mpp = MppConfig::new(REALM, &[0x33; 32]).unwrap().evm(
        Arc::new(facilitator),
        EvmAddress(PAYEE.address),
        X402Asset::usdc(ANVIL_NETWORK, token),
    );
    let paywall = Paywall::builder().mpp(mpp).build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let report = get(move |paid: Paid| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({
                "rail": paid.rail.as_str(),
                "amount": paid.amount.to_string(),
                "payer": paid.payer,
                "receipt": paid.receipt.to_string(),
                "kind": paid.receipt.kind(),
            }))
        }
    });
    let app = Router::new()
        .route(
            "/report",
            report
                .clone()
                .route_layer(paywall.price(PaywallPrice::usd_cents(1))),
        )
        .route(
            "/dear",
            report.route_layer(paywall.price(PaywallPrice::usd_cents(100))),
        );

    let unpaid = send(&app, "/report", None).await;
    assert_eq!(unpaid.status, StatusCode::PAYMENT_REQUIRED);
    let ch = unpaid.evm();
    let auth = pay(&ch, PAYER, token);

    // A credential for the cheap route on the dear one: refused before
    // anything is submitted.
    let before = (balance(&usdc, PAYER), balance(&usdc, PAYEE));
    let wrong = send(&app, "/dear", Some(&auth)).await;
    assert_eq!(wrong.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(wrong.reason(), "challenge_route_mismatch");
    assert_eq!((balance(&usdc, PAYER), balance(&usdc, PAYEE)), before);

    // Paid: settled on chain, then served, with the receipt.
    let ok = send(&app, "/report", Some(&auth)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["rail"], "mpp");
    assert_eq!(ok.body["kind"], "mpp_evm");
    assert_eq!(
        ok.body["payer"].as_str().unwrap().to_lowercase(),
        EvmAddress(PAYER.address).to_string().to_lowercase()
    );
    let receipt = Receipt::decode(
        ok.headers
            .get("payment-receipt")
            .expect("a receipt")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(receipt.method, "evm");
    assert_eq!(receipt.challenge_id.as_deref(), Some(&*ch.id));
    assert_eq!(receipt.reference, ok.body["receipt"].as_str().unwrap());
    assert!(receipt.reference.starts_with("0x") && receipt.reference.len() == 66);
    assert_eq!(receipt.extra["chainId"], CHAIN_ID);
    let price = TokenAmount::from_u64(PRICE_USDC);
    assert_eq!(balance(&usdc, PAYEE).0, before.1.0 + price.0, "paid once");
    assert_eq!(balance(&usdc, PAYER).0, before.0.0 - price.0);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The same credential again: 403, no challenge, nothing moves.
    let again = send(&app, "/report", Some(&auth)).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert_eq!(again.reason(), "credential_replayed");
    assert!(again.headers.get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(balance(&usdc, PAYEE).0, before.1.0 + price.0);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // A payer without USDC: the facilitator's verdict (nothing moved) is a
    // 402 with a fresh challenge, and the handler does not run.
    let ch = send(&app, "/report", None).await.evm();
    let broke = pay(&ch, BROKE, token);
    let refused = send(&app, "/report", Some(&broke)).await;
    assert_eq!(
        refused.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        refused.body
    );
    assert_eq!(refused.reason(), "settlement_refused");
    assert!(refused.headers.get(header::WWW_AUTHENTICATE).is_some());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(balance(&usdc, PAYEE).0, before.1.0 + price.0);
}
