#![cfg(feature = "x402")]
//! The local facilitator cannot be griefed: proved on anvil with Circle's
//! real USDC (FiatTokenV2_2) and two hostile token contracts
//! (`pay402_testkit::anvil::HostileToken`): one that burns about 5.2 million
//! gas in `transferWithAuthorization`, one that passes estimation and
//! reverts when mined.
//!
//! - Sent to the router, both are refused before any transaction: the
//!   facilitator account's ETH balance and nonce do not move.
//! - Allowlisted on purpose, they are still stopped before any transaction,
//!   by the gas ceiling and by the simulation of the exact transaction
//!   (gas limit and fees as sent).
//! - 50 concurrent settlements from a payer funded for 2 send at most 2
//!   transactions.
//!
//! Needs anvil (installed from npm on first use); fails, never skips, when
//! it cannot start.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use pay402_backends::x402::{LocalFacilitator, LocalFacilitatorError, RouterAuth, reasons, router};
use pay402_core::problem::Reason;
use pay402_core::x402::evm::{
    Bytes32, Eip712Domain, EvmAddress, EvmSignature, TransferAuthorization,
};
use pay402_core::x402::{
    EvmTimestamp, ExactEvmPayload, Extra, Facilitator, PaymentPayloadV2, PaymentRequest,
    PaymentRequirements, SettleResponse, TokenAmount,
};
use pay402_testkit::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS, HostileToken, USDC_NAME, USDC_VERSION};

const NETWORK: &str = "eip155:31337";
const TOKEN: &str = "griefing-test-token-0123456789";
const HOSTILE_NAME: &str = "Hostile";
const HOSTILE_VERSION: &str = "1";

fn start_chain() -> Anvil {
    Anvil::start().unwrap_or_else(|e| panic!("cannot start the anvil test peer: {e}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn key(seed: &str) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&keccak256(format!("pay402 griefing {seed}"))).expect("payer key")
}

/// A v2 `exact` payment of `amount` on `asset` (EIP-712 domain `name`,
/// `version`) to `pay_to`, signed by `payer`.
fn payment(
    payer: &PrivateKeySigner,
    asset: Address,
    (name, version): (&str, &str),
    pay_to: Address,
    amount: u64,
    nonce_seed: &str,
) -> PaymentRequest {
    let requirements = PaymentRequirements {
        scheme: "exact".into(),
        network: NETWORK.into(),
        amount: TokenAmount::from_u64(amount),
        asset: asset.to_string(),
        pay_to: pay_to.to_string(),
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712(name, version)),
    };
    let authorization = TransferAuthorization {
        from: EvmAddress(payer.address()),
        to: EvmAddress(pay_to),
        value: TokenAmount::from_u64(amount),
        valid_after: EvmTimestamp::from_u64(0),
        valid_before: EvmTimestamp::from_u64(now() + 600),
        nonce: Bytes32(keccak256(nonce_seed).0),
    };
    let domain = Eip712Domain::new(name, version, CHAIN_ID, EvmAddress(asset));
    let signature = payer
        .sign_hash_sync(&authorization.signing_hash(&domain))
        .expect("sign");
    PaymentRequest::v2(
        PaymentPayloadV2 {
            x402_version: 2,
            resource: None,
            accepted: requirements.clone(),
            payload: ExactEvmPayload {
                signature: EvmSignature::from_bytes(signature.as_bytes().to_vec()),
                authorization,
            },
            extensions: None,
        },
        requirements,
    )
}

/// The facilitator account's (ETH balance, nonce).
fn account_state(chain: &Anvil, account: Address) -> (U256, u64) {
    (
        chain.balance(account).expect("eth_getBalance"),
        chain
            .transaction_count(account)
            .expect("eth_getTransactionCount"),
    )
}

fn auth() -> RouterAuth {
    RouterAuth::bearer([TOKEN]).expect("router auth")
}

async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    addr
}

async fn post_settle(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    request: &PaymentRequest,
) -> (u16, serde_json::Value) {
    let resp = http
        .post(format!("http://{addr}/settle"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(request)
        .send()
        .await
        .expect("POST /settle");
    let status = resp.status().as_u16();
    let body = resp.json().await.expect("a JSON answer");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_hostile_tokens_sent_to_the_router_are_refused_before_any_transaction() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let burner = chain
        .deploy_hostile_token(HostileToken::GasBurner)
        .expect("deploy the gas burner");
    let reverter = chain
        .deploy_hostile_token(HostileToken::RevertsWhenMined)
        .expect("deploy the late reverter");
    let signer = DEV_ACCOUNTS[1].address;
    let fac = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .receipt_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("build the local facilitator");
    let addr = serve(router(Arc::new(fac), auth())).await;
    let http = reqwest::Client::new();
    let payer = key("hostile payer");
    let payee = DEV_ACCOUNTS[2].address;
    let before = account_state(&chain, signer);

    for (token, what) in [(burner, "gas burner"), (reverter, "reverts when mined")] {
        let request = payment(
            &payer,
            token,
            (HOSTILE_NAME, HOSTILE_VERSION),
            payee,
            10_000,
            what,
        );
        let (status, body) = post_settle(&http, addr, &request).await;
        assert_eq!(status, 200, "{what}: a verdict: {body}");
        assert_eq!(body["success"], false, "{what}: {body}");
        assert_eq!(
            body["errorReason"], "facilitator_asset_not_allowed",
            "{what}: {body}"
        );
        assert_eq!(body["transaction"], "", "{what}: nothing sent: {body}");
        assert_eq!(
            account_state(&chain, signer),
            before,
            "{what}: the facilitator's ETH balance and nonce are unchanged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_allowlisted_hostile_tokens_are_stopped_by_the_gas_ceiling_and_the_priced_simulation()
{
    let chain = start_chain();
    let burner = chain
        .deploy_hostile_token(HostileToken::GasBurner)
        .expect("deploy the gas burner");
    let reverter = chain
        .deploy_hostile_token(HostileToken::RevertsWhenMined)
        .expect("deploy the late reverter");
    let signer = DEV_ACCOUNTS[1].address;
    // An operator mistake: both hostile contracts allowlisted.
    let fac = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(burner, HOSTILE_NAME, HOSTILE_VERSION)
        .allow_asset(reverter, HOSTILE_NAME, HOSTILE_VERSION)
        .receipt_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("build the local facilitator");
    let payer = key("allowlisted hostile payer");
    let payee = DEV_ACCOUNTS[2].address;
    let before = account_state(&chain, signer);

    let burn = payment(
        &payer,
        burner,
        (HOSTILE_NAME, HOSTILE_VERSION),
        payee,
        10_000,
        "burn",
    );
    // Verify's simulation is capped at the ceiling too.
    let verdict = fac.verify(&burn).await.expect("a verdict");
    assert!(!verdict.is_valid, "{verdict:?}");
    assert_eq!(
        verdict.invalid_reason.as_deref(),
        Some(reasons::GAS_LIMIT_EXCEEDED),
        "{verdict:?}"
    );
    let settled: SettleResponse = fac.settle(&burn).await.expect("a verdict");
    assert!(!settled.success, "{settled:?}");
    assert_eq!(
        settled.error_reason.as_deref(),
        Some("facilitator_gas_limit_exceeded"),
        "{settled:?}"
    );
    assert_eq!(
        account_state(&chain, signer),
        before,
        "gas burner: nothing sent"
    );

    let late = payment(
        &payer,
        reverter,
        (HOSTILE_NAME, HOSTILE_VERSION),
        payee,
        10_000,
        "late",
    );
    let settled = fac.settle(&late).await.expect("a verdict");
    assert!(!settled.success, "{settled:?}");
    assert_eq!(
        settled.error_reason.as_deref(),
        Some("invalid_exact_evm_transaction_simulation_failed"),
        "{settled:?}"
    );
    assert_eq!(
        account_state(&chain, signer),
        before,
        "reverts when mined: nothing sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_fifty_concurrent_settlements_from_a_payer_funded_for_two_send_at_most_two() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer = key("funded for two");
    let payee = DEV_ACCOUNTS[2].address;
    let amount = 10_000u64;
    usdc.mint(payer.address(), U256::from(2 * amount))
        .expect("mint");
    let signer = DEV_ACCOUNTS[1].address;
    let fac = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .receipt_timeout(Duration::from_secs(30))
        .build()
        .await
        .expect("build the local facilitator");
    let nonce_before = chain.transaction_count(signer).expect("nonce");

    let mut tasks = Vec::new();
    for i in 0..50 {
        let fac = fac.clone();
        let request = payment(
            &payer,
            usdc.address,
            (USDC_NAME, USDC_VERSION),
            payee,
            amount,
            &format!("one of fifty {i}"),
        );
        tasks.push(tokio::spawn(async move { fac.settle(&request).await }));
    }
    let mut settled = 0;
    let mut refused = Vec::new();
    for t in tasks {
        match t.await.expect("join") {
            Ok(s) if s.success => settled += 1,
            Ok(s) => refused.push(s.error_reason.unwrap_or_default()),
            Err(e) => panic!("no settlement should error: {e}"),
        }
    }
    let sent = chain.transaction_count(signer).expect("nonce") - nonce_before;
    assert!(
        sent <= 2,
        "{sent} transactions sent for a payer funded for 2"
    );
    assert_eq!(
        settled, 2,
        "both funded payments settle; refused: {refused:?}"
    );
    assert_eq!(
        usdc.balance_of(payee).expect("balanceOf"),
        U256::from(2 * amount)
    );
    assert_eq!(refused.len(), 48);
    assert!(
        refused
            .iter()
            .all(|r| r == reasons::IN_FLIGHT_EXCEEDS_BALANCE || r == reasons::INSUFFICIENT_BALANCE),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_fee_ceiling_and_gas_budget_refuse_before_sending() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer = key("fees and budget");
    let payee = DEV_ACCOUNTS[2].address;
    usdc.mint(payer.address(), U256::from(1_000_000u64))
        .expect("mint");
    let signer = DEV_ACCOUNTS[1].address;
    let pay = |seed: &str| {
        payment(
            &payer,
            usdc.address,
            (USDC_NAME, USDC_VERSION),
            payee,
            1_000,
            seed,
        )
    };

    // A fee ceiling below anvil's base fee (1 gwei): refused, not overpaid.
    let frugal = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .max_fee_per_gas_wei(1_000)
        .build()
        .await
        .expect("build");
    let before = account_state(&chain, signer);
    let s = frugal.settle(&pay("frugal")).await.expect("a verdict");
    assert_eq!(
        s.error_reason.as_deref(),
        Some(reasons::FEE_TOO_HIGH),
        "{s:?}"
    );
    assert_eq!(account_state(&chain, signer), before, "nothing sent");

    // A budget of 250,000 gas: each settlement is charged its gas limit
    // (at most the 200,000 ceiling), so a few land, then it is refused.
    let budgeted = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .gas_budget(250_000, Duration::from_secs(3600))
        .build()
        .await
        .expect("build");
    let mut landed = 0u64;
    let mut refusal = None;
    for i in 0..8 {
        let s = budgeted
            .settle(&pay(&format!("budget {i}")))
            .await
            .expect("a verdict");
        if s.success {
            landed += 1;
        } else {
            refusal = s.error_reason;
            break;
        }
    }
    assert!(landed >= 1, "the budget admits at least one settlement");
    assert_eq!(refusal.as_deref(), Some(reasons::GAS_BUDGET_EXHAUSTED));
    assert_eq!(
        chain.transaction_count(signer).expect("nonce"),
        before.1 + landed,
        "only the admitted settlements were sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_the_builder_requires_an_asset_allowlist_and_the_payee_allowlist_refuses_others() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    // No allowlist: a typed build error, before any connection.
    let err = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .build()
        .await
        .expect_err("an asset allowlist is required");
    assert_eq!(err, LocalFacilitatorError::NoAssetAllowlist);
    assert_eq!(err.reason(), "facilitator_no_asset_allowlist");
    let err = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .allow_asset(usdc.address, "", USDC_VERSION)
        .build()
        .await
        .expect_err("an empty EIP-712 name is refused");
    assert_eq!(
        err,
        LocalFacilitatorError::InvalidAllowedAsset(usdc.address)
    );

    let payer = key("payee allowlist");
    usdc.mint(payer.address(), U256::from(100_000u64))
        .expect("mint");
    let (allowed, other) = (DEV_ACCOUNTS[2].address, DEV_ACCOUNTS[3].address);
    let fac = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .allow_payee(allowed)
        .build()
        .await
        .expect("build");
    let signer = DEV_ACCOUNTS[1].address;
    let before = account_state(&chain, signer);
    let to_other = payment(
        &payer,
        usdc.address,
        (USDC_NAME, USDC_VERSION),
        other,
        1_000,
        "to other",
    );
    let v = fac.verify(&to_other).await.expect("a verdict");
    assert_eq!(
        v.invalid_reason.as_deref(),
        Some(reasons::PAYEE_NOT_ALLOWED),
        "{v:?}"
    );
    let s = fac.settle(&to_other).await.expect("a verdict");
    assert_eq!(
        s.error_reason.as_deref(),
        Some(reasons::PAYEE_NOT_ALLOWED),
        "{s:?}"
    );
    assert_eq!(account_state(&chain, signer), before, "nothing sent");
    let to_allowed = payment(
        &payer,
        usdc.address,
        (USDC_NAME, USDC_VERSION),
        allowed,
        1_000,
        "to allowed",
    );
    let s = fac.settle(&to_allowed).await.expect("settle");
    assert!(s.success, "{s:?}");
}
