#![cfg(feature = "x402")]
//! x402 facilitators against a real chain: anvil with Circle's real USDC
//! (FiatTokenV2_2), payments signed with pay402-core's EIP-712 hashing.
//!
//! - `LocalFacilitator`: verify + settle move exactly the value; replays,
//!   bad domains, expiry, wrong recipients, low balances are verdicts with
//!   the reference reasons; ten concurrent settlements through one signer
//!   all land; a settlement not mined within the bound is `Pending`, and
//!   settling again (or from a fresh facilitator) answers the same
//!   transaction once it is mined.
//! - `RemoteFacilitator` against the axum router serving that
//!   `LocalFacilitator` on 127.0.0.1.
//! - Fault-injection doubles the real peer cannot produce: a redirecting
//!   facilitator, a slow one and one giving malformed answers.
//!
//! Needs anvil (installed from npm on first use); fails, never skips, when
//! it cannot start.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use pay402_backends::x402::{
    Endpoint, INSUFFICIENT_FUNDS, LocalFacilitator, RemoteFacilitator, RouterAuth,
    TRANSACTION_FAILED, TransactionStatus, reasons, router,
};
use pay402_core::x402::evm::{
    Bytes32, Eip712Domain, EvmAddress, EvmSignature, TransferAuthorization,
};
use pay402_core::x402::{
    EvmTimestamp, ExactEvmPayload, Extra, Facilitator, FacilitatorError, PaymentPayloadV1,
    PaymentPayloadV2, PaymentRequest, PaymentRequirements, PaymentRequirementsV1, SettleResponse,
    SupportedResponse, TokenAmount, VerifyResponse,
};
use pay402_testkit::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION, Usdc};
use reqwest::header::{HeaderMap, HeaderValue};

const NETWORK: &str = "eip155:31337";

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
    PrivateKeySigner::from_bytes(&keccak256(format!("pay402 anvil_facilitator {seed}")))
        .expect("payer key")
}

/// One payment: the server's requirement and the payer's authorization,
/// each field adjustable to build faulty payments.
#[derive(Clone, Debug)]
struct Pay {
    asset: Address,
    pay_to: Address,
    amount: u64,
    name: String,
    version: String,
    network: String,
    to: Address,
    value: u64,
    signed_name: String,
    signed_version: String,
    valid_after: u64,
    valid_before: u64,
    nonce: B256,
}

impl Pay {
    fn new(asset: Address, pay_to: Address, amount: u64, nonce_seed: &str) -> Pay {
        Pay {
            asset,
            pay_to,
            amount,
            name: USDC_NAME.into(),
            version: USDC_VERSION.into(),
            network: NETWORK.into(),
            to: pay_to,
            value: amount,
            signed_name: USDC_NAME.into(),
            signed_version: USDC_VERSION.into(),
            valid_after: 0,
            valid_before: now() + 600,
            nonce: keccak256(nonce_seed),
        }
    }

    fn requirements(&self) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: self.network.clone(),
            amount: TokenAmount::from_u64(self.amount),
            asset: self.asset.to_string(),
            pay_to: self.pay_to.to_string(),
            max_timeout_seconds: 60,
            extra: Some(Extra::eip712(&self.name, &self.version)),
        }
    }

    fn payload(&self, payer: &PrivateKeySigner) -> ExactEvmPayload {
        let authorization = TransferAuthorization {
            from: EvmAddress(payer.address()),
            to: EvmAddress(self.to),
            value: TokenAmount::from_u64(self.value),
            valid_after: EvmTimestamp::from_u64(self.valid_after),
            valid_before: EvmTimestamp::from_u64(self.valid_before),
            nonce: Bytes32(self.nonce.0),
        };
        let domain = Eip712Domain::new(
            &*self.signed_name,
            &*self.signed_version,
            CHAIN_ID,
            EvmAddress(self.asset),
        );
        let signature = payer
            .sign_hash_sync(&authorization.signing_hash(&domain))
            .expect("sign");
        ExactEvmPayload {
            signature: EvmSignature::from_bytes(signature.as_bytes().to_vec()),
            authorization,
        }
    }

    fn v2(&self, payer: &PrivateKeySigner) -> PaymentRequest {
        let requirements = self.requirements();
        PaymentRequest::v2(
            PaymentPayloadV2 {
                x402_version: 2,
                resource: None,
                accepted: requirements.clone(),
                payload: self.payload(payer),
                extensions: None,
            },
            requirements,
        )
    }

    fn v1(&self, payer: &PrivateKeySigner) -> PaymentRequest {
        let requirements = PaymentRequirementsV1 {
            scheme: "exact".into(),
            network: self.network.clone(),
            max_amount_required: TokenAmount::from_u64(self.amount),
            asset: self.asset.to_string(),
            pay_to: self.pay_to.to_string(),
            resource: "http://127.0.0.1/paid".into(),
            description: String::new(),
            mime_type: String::new(),
            output_schema: None,
            max_timeout_seconds: 60,
            extra: Some(Extra::eip712(&self.name, &self.version)),
        };
        PaymentRequest::v1(
            PaymentPayloadV1 {
                x402_version: 1,
                scheme: "exact".into(),
                network: self.network.clone(),
                payload: self.payload(payer),
            },
            requirements,
        )
    }
}

async fn facilitator(chain: &Anvil, usdc: Address, signer: usize) -> LocalFacilitator {
    LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[signer].private_key)
        .allow_asset(usdc, USDC_NAME, USDC_VERSION)
        .network(NETWORK)
        .receipt_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("build the local facilitator")
}

fn balance(usdc: &Usdc<'_>, who: Address) -> U256 {
    usdc.balance_of(who).expect("balanceOf")
}

fn assert_refused_verify(v: &VerifyResponse, reason: &str, what: &str) {
    assert!(!v.is_valid, "{what}: {v:?}");
    assert_eq!(v.invalid_reason.as_deref(), Some(reason), "{what}: {v:?}");
    assert!(v.payer.is_some(), "{what}: a verdict names the payer");
}

fn assert_refused_settle(s: &SettleResponse, reason: &str, what: &str) {
    assert!(!s.success, "{what}: {s:?}");
    assert_eq!(s.error_reason.as_deref(), Some(reason), "{what}: {s:?}");
    assert_eq!(s.network, NETWORK, "{what}");
}

/// The router's key in these tests, as `RemoteFacilitator` sends it.
const BEARER: &str = "Bearer anvil-facilitator-test-token";

fn router_auth() -> RouterAuth {
    RouterAuth::bearer(["anvil-facilitator-test-token"]).expect("router auth")
}

fn bearer_headers(_endpoint: Endpoint) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static(BEARER));
    h
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_local_facilitator_verifies_and_settles_a_real_payment() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer = key("payer");
    let payee = DEV_ACCOUNTS[2].address;
    usdc.mint(payer.address(), U256::from(10_000_000u64))
        .expect("mint");
    let fac = facilitator(&chain, usdc.address, 1).await;

    let supported = fac.supported().await.expect("supported");
    assert!(supported.supports(2, "exact", NETWORK), "{supported:?}");
    assert!(supported.supports(1, "exact", NETWORK), "{supported:?}");
    assert_eq!(
        supported.signers.get("eip155:*"),
        Some(&vec![DEV_ACCOUNTS[1].address.to_string()])
    );

    let pay = Pay::new(usdc.address, payee, 10_000, "settle one");
    let request = pay.v2(&payer);
    let (payee_before, payer_before) = (balance(&usdc, payee), balance(&usdc, payer.address()));

    let verdict = fac.verify(&request).await.expect("verify");
    assert!(verdict.is_valid, "{verdict:?}");
    assert_eq!(verdict.payer, Some(payer.address().to_string()));
    // Verify moves nothing.
    assert_eq!(balance(&usdc, payee), payee_before);

    let settled = fac.settle(&request).await.expect("settle");
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.network, NETWORK);
    assert_eq!(settled.payer, Some(payer.address().to_string()));
    let tx = settled.transaction.clone().expect("transaction hash");
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(10_000u64));
    assert_eq!(
        payer_before - balance(&usdc, payer.address()),
        U256::from(10_000u64)
    );
    assert!(
        usdc.authorization_state(payer.address(), pay.nonce)
            .unwrap()
    );
    let receipt = chain.wait_for_receipt(&tx).expect("receipt");
    assert_eq!(receipt.status, 1);
    assert_eq!(
        receipt.raw["from"].as_str().map(str::to_lowercase),
        Some(DEV_ACCOUNTS[1].address.to_string().to_lowercase()),
        "sent by the facilitator's account"
    );
    assert_eq!(
        fac.transaction_status(&tx).await.unwrap(),
        TransactionStatus::Succeeded {
            block_number: receipt.block_number
        }
    );

    // A replay is refused by verify with the reference reason...
    let replay = fac.verify(&request).await.expect("verify replay");
    assert_refused_verify(&replay, reasons::NONCE_ALREADY_USED, "replay");
    // ...and settling it again answers the original transaction without
    // moving anything (idempotent settle: a server's retry is safe).
    let again = fac.settle(&request).await.expect("settle again");
    assert!(again.success, "{again:?}");
    assert_eq!(again.transaction.as_deref(), Some(tx.as_str()));
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(10_000u64));
    assert_eq!(
        fac.find_settlement(&request)
            .await
            .unwrap()
            .and_then(|s| s.transaction),
        Some(tx.clone())
    );

    // With idempotency off, a replayed settle is refused.
    let strict = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .idempotent_settle(false)
        .build()
        .await
        .expect("strict facilitator");
    let refused = strict.settle(&request).await.expect("strict settle");
    assert_refused_settle(&refused, reasons::NONCE_ALREADY_USED, "strict replay");
    assert_eq!(refused.transaction.as_deref(), Some(""));

    // Another authorization reusing the nonce (same payer, other value) is
    // not this payment: refused everywhere, never reported as settled.
    let mut other = pay.clone();
    other.amount = 5_000;
    other.value = 5_000;
    let other = other.v2(&payer);
    assert_refused_verify(
        &fac.verify(&other).await.unwrap(),
        reasons::NONCE_ALREADY_USED,
        "same nonce, other value",
    );
    assert_refused_settle(
        &fac.settle(&other).await.unwrap(),
        reasons::NONCE_ALREADY_USED,
        "same nonce, other value",
    );
    assert_eq!(fac.find_settlement(&other).await.unwrap(), None);
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(10_000u64));

    // A v1 payment (legacy body, network given as CAIP-2 on this chain).
    let v1 = Pay::new(usdc.address, payee, 2_500, "settle v1").v1(&payer);
    assert!(fac.verify(&v1).await.unwrap().is_valid);
    let s = fac.settle(&v1).await.expect("settle v1");
    assert!(s.success, "{s:?}");
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(12_500u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_local_facilitator_verdicts_carry_reference_reasons() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer = key("verdicts payer");
    let poor = key("verdicts poor");
    let payee = DEV_ACCOUNTS[2].address;
    usdc.mint(payer.address(), U256::from(1_000_000u64))
        .unwrap();
    usdc.mint(poor.address(), U256::from(1_000u64)).unwrap();
    // DEV_ACCOUNTS[4] (an address without code) is allowlisted on purpose.
    let fac = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .allow_asset(DEV_ACCOUNTS[4].address, USDC_NAME, USDC_VERSION)
        .build()
        .await
        .expect("build the local facilitator");
    let base = |seed: &str| Pay::new(usdc.address, payee, 10_000, seed);
    let payee_before = balance(&usdc, payee);

    let mut cases: Vec<(&str, PaymentRequest, &str)> = Vec::new();
    cases.push((
        "low balance v2",
        base("poor v2").v2(&poor),
        reasons::INSUFFICIENT_BALANCE,
    ));
    cases.push((
        "low balance v1",
        base("poor v1").v1(&poor),
        INSUFFICIENT_FUNDS,
    ));
    let mut p = base("wrong version signed");
    p.signed_version = "1".into();
    cases.push((
        "signed with domain version 1",
        p.v2(&payer),
        "invalid_exact_evm_signature",
    ));
    let mut p = base("version 1 everywhere");
    p.version = "1".into();
    p.signed_version = "1".into();
    cases.push((
        "requirement says version 1",
        p.v2(&payer),
        reasons::TOKEN_VERSION_MISMATCH,
    ));
    let mut p = base("wrong name");
    p.name = "USDC".into();
    p.signed_name = "USDC".into();
    cases.push((
        "requirement says name USDC",
        p.v2(&payer),
        reasons::TOKEN_NAME_MISMATCH,
    ));
    let mut p = base("expired");
    p.valid_before = now() - 10;
    cases.push((
        "expired",
        p.v2(&payer),
        "invalid_exact_evm_payload_authorization_valid_before",
    ));
    let mut p = base("not yet");
    p.valid_after = now() + 3_600;
    cases.push((
        "not yet valid",
        p.v2(&payer),
        "invalid_exact_evm_payload_authorization_valid_after",
    ));
    let mut p = base("wrong recipient");
    p.to = DEV_ACCOUNTS[3].address;
    cases.push((
        "pays someone else",
        p.v2(&payer),
        "invalid_exact_evm_recipient_mismatch",
    ));
    let mut p = base("short");
    p.value = 9_999;
    cases.push((
        "value below amount",
        p.v2(&payer),
        "invalid_exact_evm_authorization_value",
    ));
    let mut p = base("no token");
    p.asset = DEV_ACCOUNTS[4].address;
    cases.push((
        "asset without code",
        p.v2(&payer),
        reasons::EIP3009_NOT_SUPPORTED,
    ));
    let mut p = base("not allowlisted");
    p.asset = DEV_ACCOUNTS[3].address;
    cases.push((
        "asset not on the allowlist",
        p.v2(&payer),
        reasons::ASSET_NOT_ALLOWED,
    ));
    let mut tampered = base("tampered").v2(&payer);
    if let PaymentRequest::V2(r) = &mut tampered {
        let mut sig = r.payment_payload.payload.signature.as_bytes().to_vec();
        sig[10] ^= 0xff;
        r.payment_payload.payload.signature = EvmSignature::from_bytes(sig);
    }
    cases.push((
        "tampered signature",
        tampered,
        "invalid_exact_evm_signature",
    ));

    for (what, request, reason) in &cases {
        let v = fac
            .verify(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_refused_verify(&v, reason, what);
        let s = fac
            .settle(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_refused_settle(&s, reason, what);
        assert_eq!(
            s.transaction.as_deref(),
            Some(""),
            "{what}: nothing was sent"
        );
    }
    assert_eq!(
        balance(&usdc, payee),
        payee_before,
        "no verdict moved money"
    );
    assert_eq!(chain.transaction_count(DEV_ACCOUNTS[1].address).unwrap(), 0);

    // Kinds this facilitator does not serve are refused, not judged.
    let mut p = base("other chain");
    p.network = "eip155:8453".into();
    let err = fac.verify(&p.v2(&payer)).await.unwrap_err();
    assert!(
        matches!(err, FacilitatorError::Refused { status: 400, .. }),
        "{err:?}"
    );
    let mut upto = base("upto").v2(&payer);
    if let PaymentRequest::V2(r) = &mut upto {
        r.payment_requirements.scheme = "upto".into();
    }
    let err = fac.settle(&upto).await.unwrap_err();
    assert!(
        matches!(err, FacilitatorError::Refused { status: 400, .. }),
        "{err:?}"
    );

    // The clock is injectable: the same payment verified "after" its window.
    let late = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .clock(|| pay402_core::time::UnixTime(now() + 10_000))
        .build()
        .await
        .unwrap();
    let ok = base("clock").v2(&payer);
    assert!(fac.verify(&ok).await.unwrap().is_valid);
    assert_refused_verify(
        &late.verify(&ok).await.unwrap(),
        "invalid_exact_evm_payload_authorization_valid_before",
        "late clock",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anvil_concurrent_settlements_through_one_signer_all_land() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payee = DEV_ACCOUNTS[2].address;
    let payers: Vec<PrivateKeySigner> = (0..5).map(|i| key(&format!("concurrent {i}"))).collect();
    for p in &payers {
        usdc.mint(p.address(), U256::from(1_000_000u64)).unwrap();
    }
    let signer = DEV_ACCOUNTS[3].address;
    let fac = facilitator(&chain, usdc.address, 3).await;
    let payee_before = balance(&usdc, payee);

    let mut expected = 0u64;
    let mut tasks = Vec::new();
    for i in 0..10u64 {
        let value = 1_000 + i;
        expected += value;
        let pay = Pay::new(
            usdc.address,
            payee,
            value,
            &format!("concurrent payment {i}"),
        );
        let request = pay.v2(&payers[(i % 5) as usize]);
        let fac = fac.clone();
        tasks.push(tokio::spawn(async move { fac.settle(&request).await }));
    }
    let mut hashes = Vec::new();
    for t in tasks {
        let s = t.await.expect("task").expect("settle");
        assert!(s.success, "{s:?}");
        hashes.push(s.transaction.expect("hash"));
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 10, "ten distinct transactions");
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(expected));
    assert_eq!(
        chain.transaction_count(signer).unwrap(),
        10,
        "nonces 0..10, none lost"
    );

    // Several signers are used in turn.
    let pair = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[4].private_key)
        .signer(DEV_ACCOUNTS[1].private_key)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .build()
        .await
        .unwrap();
    assert_eq!(
        pair.signers(),
        vec![DEV_ACCOUNTS[4].address, DEV_ACCOUNTS[1].address]
    );
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let request = Pay::new(usdc.address, payee, 500, &format!("pair {i}")).v2(&payers[0]);
        let pair = pair.clone();
        tasks.push(tokio::spawn(async move { pair.settle(&request).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap().success);
    }
    assert_eq!(chain.transaction_count(DEV_ACCOUNTS[4].address).unwrap(), 2);
    assert_eq!(chain.transaction_count(DEV_ACCOUNTS[1].address).unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_pending_settlement_is_reconciled_not_failed() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer = key("pending payer");
    let payee = DEV_ACCOUNTS[2].address;
    usdc.mint(payer.address(), U256::from(1_000_000u64))
        .unwrap();
    let payee_before = balance(&usdc, payee);
    let fac = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .receipt_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let pay = Pay::new(usdc.address, payee, 7_000, "pending");
    let request = pay.v2(&payer);

    chain.set_automine(false).expect("automine off");
    let started = Instant::now();
    let err = fac.settle(&request).await.expect_err("not mined: pending");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded wait");
    let FacilitatorError::Pending {
        transaction,
        network,
    } = err
    else {
        panic!("expected Pending, got {err:?}");
    };
    assert_eq!(network, NETWORK);
    assert_eq!(
        fac.transaction_status(&transaction).await.unwrap(),
        TransactionStatus::Pending
    );
    assert_eq!(balance(&usdc, payee), payee_before);
    // Settling again while it is in flight follows the same transaction.
    let again = fac.settle(&request).await.expect_err("still pending");
    assert_eq!(
        again,
        FacilitatorError::Pending {
            transaction: transaction.clone(),
            network: NETWORK.into()
        }
    );

    chain.mine().expect("evm_mine");
    assert!(matches!(
        fac.transaction_status(&transaction).await.unwrap(),
        TransactionStatus::Succeeded { .. }
    ));
    let settled = fac.settle(&request).await.expect("settle after mining");
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction.as_deref(), Some(transaction.as_str()));

    // A fresh facilitator (a restarted server) finds it on chain.
    let fresh = facilitator(&chain, usdc.address, 1).await;
    let found = fresh.settle(&request).await.expect("settle after restart");
    assert!(found.success, "{found:?}");
    assert_eq!(found.transaction.as_deref(), Some(transaction.as_str()));
    assert_eq!(
        fresh
            .find_settlement(&request)
            .await
            .unwrap()
            .and_then(|s| s.transaction),
        Some(transaction.clone())
    );
    chain.set_automine(true).expect("automine on");
    assert_eq!(
        balance(&usdc, payee) - payee_before,
        U256::from(7_000u64),
        "paid once"
    );
    assert_eq!(
        chain.transaction_count(DEV_ACCOUNTS[1].address).unwrap(),
        1,
        "sent once"
    );
    assert_eq!(
        fac.transaction_status(&format!("0x{}", "ab".repeat(32)))
            .await
            .unwrap(),
        TransactionStatus::Unknown
    );
    assert!(TRANSACTION_FAILED.starts_with("invalid_exact_evm"));
}

/// Counts upstream `/supported` calls (a pass-through decorator over the
/// real facilitator, not a fault double).
struct Counting {
    inner: LocalFacilitator,
    supported_calls: AtomicUsize,
}

#[async_trait]
impl Facilitator for Counting {
    async fn verify(&self, r: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.inner.verify(r).await
    }
    async fn settle(&self, r: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        self.inner.settle(r).await
    }
    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.supported_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.supported().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_remote_facilitator_over_the_router() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer = key("remote payer");
    let payee = DEV_ACCOUNTS[2].address;
    usdc.mint(payer.address(), U256::from(1_000_000u64))
        .unwrap();
    let local = facilitator(&chain, usdc.address, 1).await;
    let counting = Arc::new(Counting {
        inner: local.clone(),
        supported_calls: AtomicUsize::new(0),
    });
    let addr = serve(router(counting.clone(), router_auth())).await;
    let remote = RemoteFacilitator::builder(format!("http://{addr}/"))
        .timeout(Duration::from_secs(30))
        .auth(bearer_headers)
        .build()
        .expect("remote facilitator");

    let s1 = remote.supported().await.expect("supported");
    let s2 = remote.supported().await.expect("supported (cached)");
    assert_eq!(s1, local.supported().await.unwrap());
    assert_eq!(s1, s2);
    assert_eq!(counting.supported_calls.load(Ordering::SeqCst), 1, "cached");

    let payee_before = balance(&usdc, payee);
    let request = Pay::new(usdc.address, payee, 4_000, "remote").v2(&payer);
    assert!(remote.verify(&request).await.expect("verify").is_valid);
    let settled = remote.settle(&request).await.expect("settle");
    assert!(settled.success, "{settled:?}");
    let tx = settled.transaction.clone().unwrap();
    assert_eq!(chain.wait_for_receipt(&tx).unwrap().status, 1);
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(4_000u64));
    // Verdicts travel as verdicts.
    assert_refused_verify(
        &remote.verify(&request).await.unwrap(),
        reasons::NONCE_ALREADY_USED,
        "remote replay",
    );
    let again = remote.settle(&request).await.unwrap();
    assert_eq!(again.transaction.as_deref(), Some(tx.as_str()));
    let mut expired = Pay::new(usdc.address, payee, 4_000, "remote expired");
    expired.valid_before = now() - 1;
    let refused = remote.settle(&expired.v2(&payer)).await.unwrap();
    assert_refused_settle(
        &refused,
        "invalid_exact_evm_payload_authorization_valid_before",
        "remote expired",
    );
    // Kinds not served come back as refusals.
    let mut elsewhere = Pay::new(usdc.address, payee, 4_000, "remote elsewhere");
    elsewhere.network = "eip155:8453".into();
    let err = remote.verify(&elsewhere.v2(&payer)).await.unwrap_err();
    assert!(
        matches!(err, FacilitatorError::Refused { status: 400, .. }),
        "{err:?}"
    );

    // Client faults are 4xx with a JSON problem, never 5xx.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("http://{addr}/verify"))
        .header("authorization", BEARER)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "invalid_facilitator_request");
    let resp = http
        .post(format!("http://{addr}/settle"))
        .header("authorization", BEARER)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .post(format!("http://{addr}/settle"))
        .header("authorization", BEARER)
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // The unread body means the connection is closed, not reused (a client
    // that reused it failed the next request with a broken pipe).
    assert_eq!(resp.headers()["connection"], "close");
    let resp = http
        .get(format!("http://{addr}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Pending travels as Pending (HTTP 202 + settlement_pending).
    let slow = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[3].private_key)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .receipt_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let slow_addr = serve(router(Arc::new(slow), router_auth())).await;
    let slow_remote = RemoteFacilitator::builder(format!("http://{slow_addr}"))
        .auth(bearer_headers)
        .build()
        .unwrap();
    let request = Pay::new(usdc.address, payee, 1_500, "remote pending").v2(&payer);
    chain.set_automine(false).unwrap();
    let err = slow_remote.settle(&request).await.expect_err("pending");
    let FacilitatorError::Pending { transaction, .. } = err else {
        panic!("expected Pending, got {err:?}");
    };
    chain.mine().unwrap();
    chain.set_automine(true).unwrap();
    let done = slow_remote.settle(&request).await.expect("settled");
    assert!(done.success);
    assert_eq!(done.transaction.as_deref(), Some(transaction.as_str()));
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(5_500u64));
}

/// A syntactically valid payment for the fault doubles (no chain involved).
fn some_request() -> PaymentRequest {
    Pay::new(
        DEV_ACCOUNTS[0].address,
        DEV_ACCOUNTS[2].address,
        1_000,
        "fault doubles",
    )
    .v2(&key("fault payer"))
}

/// Fault-injection double: a facilitator that redirects everything (the
/// 308 that once made middleware serve content unpaid).
#[tokio::test]
async fn redirecting_facilitator_double_is_an_error_never_followed() {
    let target_hits = Arc::new(AtomicUsize::new(0));
    let hits = target_hits.clone();
    let target = serve(Router::new().fallback(move || {
        hits.fetch_add(1, Ordering::SeqCst);
        async { r#"{"isValid":true,"kinds":[]}"# }
    }))
    .await;
    let location = format!("http://{target}/elsewhere");
    let redirect = serve(Router::new().fallback(move || {
        let location = location.clone();
        async move { (StatusCode::PERMANENT_REDIRECT, [("location", location)]).into_response() }
    }))
    .await;
    let remote = RemoteFacilitator::builder(format!("http://{redirect}"))
        .build()
        .unwrap();
    let err = remote.verify(&some_request()).await.unwrap_err();
    assert!(
        matches!(&err, FacilitatorError::InvalidResponse(m) if m.contains("redirect")),
        "{err:?}"
    );
    assert!(matches!(
        remote.settle(&some_request()).await.unwrap_err(),
        FacilitatorError::InvalidResponse(_)
    ));
    assert!(matches!(
        remote.supported().await.unwrap_err(),
        FacilitatorError::InvalidResponse(_)
    ));
    assert_eq!(target_hits.load(Ordering::SeqCst), 0, "never followed");
}

/// Fault-injection double: a facilitator slower than the client's timeout.
#[tokio::test]
async fn slow_facilitator_double_times_out() {
    let slow = serve(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        r#"{"isValid":true}"#
    }))
    .await;
    let remote = RemoteFacilitator::builder(format!("http://{slow}"))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = remote.verify(&some_request()).await.unwrap_err();
    assert!(matches!(err, FacilitatorError::Unavailable(_)), "{err:?}");
    // Bounded by the 300 ms timeout, far below the double's 60 s.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(matches!(
        remote.settle(&some_request()).await.unwrap_err(),
        FacilitatorError::Unavailable(_)
    ));
}

/// Fault-injection double: a facilitator whose answers are malformed in
/// each way the client must catch, selected by a path prefix.
#[tokio::test]
async fn malformed_facilitator_double_answers_are_rejected() {
    async fn answer(
        axum::extract::Path((case, _endpoint)): axum::extract::Path<(String, String)>,
        headers: axum::http::HeaderMap,
    ) -> axum::response::Response {
        let tx = format!("0x{}", "11".repeat(32));
        let (status, body) = match case.as_str() {
            "no-reason" => (200, r#"{"isValid":false}"#.to_owned()),
            "not-json" => (200, "<html>oops</html>".to_owned()),
            "no-tx" => (200, format!(r#"{{"success":true,"network":"{NETWORK}"}}"#)),
            "bad-tx" => (
                200,
                format!(r#"{{"success":true,"transaction":"0x12","network":"{NETWORK}"}}"#),
            ),
            "wrong-network" => (
                200,
                format!(r#"{{"success":true,"transaction":"{tx}","network":"eip155:1"}}"#),
            ),
            "no-error-reason" => (
                200,
                format!(r#"{{"success":false,"transaction":"","network":"{NETWORK}"}}"#),
            ),
            "no-kinds" => (200, r#"{"signers":{}}"#.to_owned()),
            "huge" => (
                200,
                format!(r#"{{"isValid":true,"pad":"{}"}}"#, "x".repeat(1024 * 1024)),
            ),
            "boom" => (500, r#"{"error":"boom"}"#.to_owned()),
            "unauthorized" => (401, "who are you".to_owned()),
            "echo-auth" => {
                let seen = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                (
                    200,
                    serde_json::json!({"isValid": false, "invalidReason": "seen", "invalidMessage": seen})
                        .to_string(),
                )
            }
            _ => (404, String::new()),
        };
        (StatusCode::from_u16(status).unwrap(), body).into_response()
    }
    let addr = serve(Router::new().route("/{case}/{endpoint}", post(answer).get(answer))).await;
    let remote = |case: &str| {
        RemoteFacilitator::builder(format!("http://{addr}/{case}"))
            .build()
            .unwrap()
    };
    let request = some_request();
    let invalid = |r: Result<(), FacilitatorError>, what: &str| {
        assert!(
            matches!(r, Err(FacilitatorError::InvalidResponse(_))),
            "{what}: {r:?}"
        );
    };
    invalid(
        remote("no-reason").verify(&request).await.map(|_| ()),
        "verdict without reason",
    );
    invalid(
        remote("not-json").verify(&request).await.map(|_| ()),
        "not JSON",
    );
    invalid(
        remote("not-json").settle(&request).await.map(|_| ()),
        "not JSON",
    );
    invalid(
        remote("no-tx").settle(&request).await.map(|_| ()),
        "success without tx",
    );
    invalid(
        remote("bad-tx").settle(&request).await.map(|_| ()),
        "success with a bad tx",
    );
    invalid(
        remote("wrong-network").settle(&request).await.map(|_| ()),
        "other network",
    );
    invalid(
        remote("no-error-reason").settle(&request).await.map(|_| ()),
        "failure without reason",
    );
    invalid(
        remote("no-kinds").supported().await.map(|_| ()),
        "supported without kinds",
    );
    invalid(
        remote("huge").verify(&request).await.map(|_| ()),
        "oversized answer",
    );
    assert!(matches!(
        remote("boom").verify(&request).await,
        Err(FacilitatorError::Unavailable(_))
    ));
    assert!(matches!(
        remote("unauthorized").settle(&request).await,
        Err(FacilitatorError::Refused { status: 401, .. })
    ));

    // The auth hook adds headers per endpoint.
    let with_auth = RemoteFacilitator::builder(format!("http://{addr}/echo-auth"))
        .auth(|endpoint: Endpoint| {
            let mut h = HeaderMap::new();
            let value = format!("Bearer for-{}", endpoint.path());
            h.insert("authorization", HeaderValue::from_str(&value).unwrap());
            h
        })
        .build()
        .unwrap();
    let v = with_auth.verify(&request).await.unwrap();
    assert_eq!(v.invalid_message.as_deref(), Some("Bearer for-verify"));
}

/// A facilitator on `store` with short bounds (receipt 300 ms, claim lease
/// about a second).
async fn facilitator_on(
    chain: &Anvil,
    usdc: Address,
    store: Arc<dyn pay402_core::x402::settlements::SettlementStore>,
) -> LocalFacilitator {
    LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .allow_asset(usdc, USDC_NAME, USDC_VERSION)
        .receipt_timeout(Duration::from_millis(300))
        .claim_lease(Duration::from_secs(1))
        .settlement_store(store)
        .build()
        .await
        .unwrap()
}

/// A deployed USDC, a funded payer (seeded by `seed`), the payee and its
/// balance, and a facilitator on a fresh in-memory settlement store.
type OnStore<'a> = (
    Usdc<'a>,
    PrivateKeySigner,
    Address,
    U256,
    Arc<pay402_core::x402::settlements::MemorySettlementStore>,
    LocalFacilitator,
);

async fn on_store<'a>(chain: &'a Anvil, seed: &str) -> OnStore<'a> {
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer = key(seed);
    let payee = DEV_ACCOUNTS[2].address;
    usdc.mint(payer.address(), U256::from(1_000_000u64))
        .unwrap();
    let payee_before = balance(&usdc, payee);
    let store = Arc::new(pay402_core::x402::settlements::MemorySettlementStore::new());
    let fac = facilitator_on(chain, usdc.address, store.clone()).await;
    (usdc, payer, payee, payee_before, store, fac)
}

/// Waits until a claim of about a second has certainly run out.
async fn past_the_lease() {
    tokio::time::sleep(Duration::from_millis(2_600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_reconcile_follows_a_pending_claim_resends_a_dropped_one_and_records_it_once_mined() {
    use pay402_backends::x402::Reconciled;
    use pay402_core::x402::settlements::{SettlementState, SettlementStore};
    let chain = start_chain();
    let (usdc, payer, payee, payee_before, store, fac) = on_store(&chain, "reconcile payer").await;
    let request = Pay::new(usdc.address, payee, 4_000, "reconcile").v2(&payer);

    chain.set_automine(false).expect("automine off");
    let Err(FacilitatorError::Pending { transaction, .. }) = fac.settle(&request).await else {
        panic!("expected Pending");
    };
    let open = store.unfinished(10).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, SettlementState::Sent);
    assert_eq!(open[0].transaction.as_deref(), Some(transaction.as_str()));
    // A live claim is left alone.
    let report = fac.reconcile(10).await.unwrap();
    assert_eq!(report.settlements[0].outcome, Reconciled::InProgress);

    // Expired, still in the mempool: followed, reported pending.
    past_the_lease().await;
    let report = fac.reconcile(10).await.unwrap();
    assert_eq!(
        report.settlements[0].outcome,
        Reconciled::Pending {
            transaction: transaction.clone()
        }
    );
    // Dropped from the mempool: the recorded bytes are sent again (same
    // transaction, same nonce).
    chain
        .rpc("anvil_dropTransaction", serde_json::json!([transaction]))
        .expect("anvil_dropTransaction");
    assert_eq!(
        fac.transaction_status(&transaction).await.unwrap(),
        TransactionStatus::Unknown
    );
    past_the_lease().await;
    let report = fac.reconcile(10).await.unwrap();
    assert_eq!(
        report.settlements[0].outcome,
        Reconciled::Pending {
            transaction: transaction.clone()
        }
    );
    assert_eq!(
        fac.transaction_status(&transaction).await.unwrap(),
        TransactionStatus::Pending,
        "sent again"
    );
    // Mined: recorded succeeded, once.
    chain.mine().expect("evm_mine");
    past_the_lease().await;
    let report = fac.reconcile(10).await.unwrap();
    assert_eq!(
        report.settlements[0].outcome,
        Reconciled::Settled {
            transaction: transaction.clone()
        }
    );
    assert!(report.nonce_gaps.is_empty(), "{report:?}");
    assert!(store.unfinished(10).await.unwrap().is_empty());
    chain.set_automine(true).expect("automine on");
    let again = fac.settle(&request).await.expect("settled");
    assert!(again.success);
    assert_eq!(again.transaction.as_deref(), Some(transaction.as_str()));
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(4_000u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_reconcile_releases_a_claim_never_signed_and_fills_a_nonce_gap() {
    use pay402_backends::x402::Reconciled;
    use pay402_core::time::UnixTime;
    use pay402_core::x402::settlements::{AuthorizationKey, Claimed, OwnerId, SettlementStore};
    let chain = start_chain();
    let (usdc, payer, payee, payee_before, store, fac) = on_store(&chain, "gap payer").await;
    let pay = Pay::new(usdc.address, payee, 6_000, "gap");
    let request = pay.v2(&payer);
    let signer = DEV_ACCOUNTS[1].address;
    let pending = chain.transaction_count(signer).unwrap();

    // A process died after claiming (never signed), and two nonces were
    // allocated whose transactions never reached the node.
    let auth = AuthorizationKey::new(
        CHAIN_ID,
        &usdc.address.0.0,
        &payer.address().0.0,
        &pay.nonce.0,
    );
    let long_ago = UnixTime(now() - 100);
    let json = serde_json::to_string(&request).unwrap();
    assert_eq!(
        store
            .claim(
                &auth,
                &OwnerId([9; 16]),
                &json,
                UnixTime(now() - 50),
                long_ago
            )
            .await
            .unwrap(),
        Claimed::New
    );
    store
        .resync_nonce(CHAIN_ID, &signer.to_string(), pending + 2)
        .await
        .unwrap();

    let report = fac.reconcile(10).await.unwrap();
    assert_eq!(report.settlements.len(), 1, "{report:?}");
    assert_eq!(report.settlements[0].outcome, Reconciled::Released);
    assert_eq!(report.nonce_gaps.len(), 1, "{report:?}");
    let gap = &report.nonce_gaps[0];
    assert_eq!(
        (gap.chain_pending, gap.store_next, gap.filled),
        (pending, pending + 2, 2)
    );
    assert_eq!(
        chain.transaction_count(signer).unwrap(),
        pending + 2,
        "filled and mined"
    );
    assert_eq!(balance(&usdc, payee), payee_before, "nothing moved");
    assert!(
        store.get(&auth).await.unwrap().is_none(),
        "the claim is dropped"
    );

    // The payer's retry settles it, on the next nonce.
    let settled = fac.settle(&request).await.expect("settle");
    assert!(settled.success, "{settled:?}");
    assert_eq!(chain.transaction_count(signer).unwrap(), pending + 3);
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(6_000u64));
    let again = fac.reconcile(10).await.unwrap();
    assert!(
        again.settlements.is_empty() && again.nonce_gaps.is_empty(),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_a_settlement_whose_nonce_another_transaction_took_is_sent_afresh_once() {
    use pay402_core::x402::settlements::SettlementStore;
    let chain = start_chain();
    let (usdc, payer, payee, payee_before, store, fac) = on_store(&chain, "replaced payer").await;
    let request = Pay::new(usdc.address, payee, 5_000, "replaced").v2(&payer);
    let signer = DEV_ACCOUNTS[1].address;
    let nonce = chain.transaction_count(signer).unwrap();

    chain.set_automine(false).expect("automine off");
    let Err(FacilitatorError::Pending {
        transaction: first, ..
    }) = fac.settle(&request).await
    else {
        panic!("expected Pending");
    };
    // The settlement leaves the mempool and another transaction of the
    // same key takes its nonce.
    chain
        .rpc("anvil_dropTransaction", serde_json::json!([first]))
        .expect("anvil_dropTransaction");
    chain.set_automine(true).expect("automine on");
    chain
        .send_transaction(signer, Some(signer), &[])
        .expect("another transaction on the key");
    assert_eq!(chain.transaction_count(signer).unwrap(), nonce + 1);

    // The same payment again, once the claim ran out: the recorded
    // transaction can never be mined, so it is signed afresh, once.
    past_the_lease().await;
    let settled = fac.settle(&request).await.expect("settled");
    assert!(settled.success, "{settled:?}");
    let second = settled.transaction.clone().unwrap();
    assert_ne!(second, first);
    assert_eq!(
        fac.transaction_status(&first).await.unwrap(),
        TransactionStatus::Unknown
    );
    assert_eq!(chain.transaction_count(signer).unwrap(), nonce + 2);
    assert_eq!(
        store
            .next_nonce(CHAIN_ID, &signer.to_string())
            .await
            .unwrap(),
        Some(nonce + 2),
        "resynchronised past the nonce the other transaction took"
    );
    assert_eq!(balance(&usdc, payee) - payee_before, U256::from(5_000u64));
    let again = fac.settle(&request).await.expect("settled");
    assert_eq!(again.transaction.as_deref(), Some(second.as_str()));
}
