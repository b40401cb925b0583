//! The x402 layer's behaviour: offers, v1/v2 intake, local refusals with the
//! reference reasons, settle-after / settle-before, pending settlements,
//! payment-identifier, replay, and two servers on one database (SQLite and
//! PostgreSQL) serving one payment once.
//!
//! Payments are really signed (EIP-712 with a dev key) and really verified
//! by the layer; the facilitator is `FaultInjectingFacilitator`, a named
//! test double that injects the settlement faults a chain cannot produce on
//! demand. The real facilitator on a real chain is in `anvil_x402_server.rs`.
#![cfg(feature = "x402")]

mod x402_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use pay402_core::x402::evm::EvmSignature;
use pay402_core::x402::{EvmTimestamp, HeaderValue, PaymentRequirements, TokenAmount};
use pay402_server::x402::store::{
    MemoryPaymentStore, PaymentState, PaymentStore, PostgresPaymentStore, SqlitePaymentStore,
};
use pay402_server::x402::{
    Clock, PaymentIdentifierMode, SettleTiming, X402Config, X402Layer, X402Payment, X402Route,
    exact_offer,
};
use x402_support::*;

const NETWORK: &str = "eip155:84532";
const ASSET: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const PRICE: u64 = 10_000;

fn offer() -> PaymentRequirements {
    exact_offer(
        NETWORK,
        ASSET,
        PAY_TO,
        TokenAmount::from_u64(PRICE),
        "USDC",
        "2",
    )
}

/// A second offer on another chain, to check several offers per route.
fn offer_base() -> PaymentRequirements {
    exact_offer(
        "eip155:8453",
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        PAY_TO,
        TokenAmount::from_u64(PRICE),
        "USD Coin",
        "2",
    )
}

struct Env {
    app: Router,
    facilitator: Arc<FaultInjectingFacilitator>,
    store: Arc<dyn PaymentStore>,
    /// How many times the paid handler ran.
    runs: Arc<AtomicUsize>,
    /// When set, the handler answers 500 this many more times.
    fail_next: Arc<AtomicUsize>,
}

fn app(layer: &X402Layer, runs: Arc<AtomicUsize>, fail_next: Arc<AtomicUsize>) -> Router {
    let route = X402Route::new([offer(), offer_base()])
        .unwrap()
        .description("Premium data")
        .mime_type("text/plain");
    let big_route = X402Route::new([offer()]).unwrap();
    let dynamic = X402Route::dynamic(|req| async move {
        let large = req.uri.query().is_some_and(|q| q.contains("size=large"));
        let price = if large { 5 * PRICE } else { PRICE };
        vec![exact_offer(
            NETWORK,
            ASSET,
            PAY_TO,
            TokenAmount::from_u64(price),
            "USDC",
            "2",
        )]
    });
    let free = X402Route::dynamic(|_req| async { Vec::new() });
    Router::new()
        .route(
            "/paid",
            get(move |p: X402Payment| {
                let runs = runs.clone();
                let fail_next = fail_next.clone();
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    if fail_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                        .is_ok()
                    {
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "handler broke".to_owned(),
                        );
                    }
                    (
                        StatusCode::OK,
                        format!(
                            "SECRET run={n} payer={} tx={}",
                            p.payer,
                            p.transaction.as_deref().unwrap_or("-")
                        ),
                    )
                }
            })
            .route_layer(layer.with_route(route)),
        )
        .route(
            "/big",
            get(|| async { "x".repeat(2048) }).route_layer(layer.with_route(big_route)),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "unreachable"
            })
            .route_layer(layer.with_route(X402Route::new([offer()]).unwrap())),
        )
        .route(
            "/dynamic",
            get(|| async { "dynamic" }).route_layer(layer.with_route(dynamic)),
        )
        .route(
            "/free",
            get(|| async { "free" }).route_layer(layer.with_route(free)),
        )
}

fn env_with(cfg: X402Config, store: Arc<dyn PaymentStore>) -> Env {
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let layer = X402Layer::new(
        cfg.max_response_body(1024),
        facilitator.clone(),
        store.clone(),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let fail_next = Arc::new(AtomicUsize::new(0));
    Env {
        app: app(&layer, runs.clone(), fail_next.clone()),
        facilitator,
        store,
        runs,
        fail_next,
    }
}

fn env(cfg: X402Config) -> Env {
    env_with(cfg, Arc::new(MemoryPaymentStore::new()))
}

fn runs(env: &Env) -> usize {
    env.runs.load(Ordering::SeqCst)
}

async fn pay(env: &Env, header: &str) -> Resp {
    send(&env.app, req("/paid", &[("payment-signature", header)])).await
}

async fn state_of(env: &Env, header: &str) -> Option<PaymentState> {
    payment_state(env.store.as_ref(), NETWORK, ASSET, header).await
}

fn assert_refused(r: &Resp, status: u16, reason: &str) {
    assert_eq!(r.status.as_u16(), status, "{reason}: {}", r.text());
    assert_eq!(r.reason(), reason, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(!r.text().contains("SECRET"));
}

#[tokio::test]
async fn unpaid_request_gets_402_with_the_v2_header_and_a_v1_body() {
    let env = env(X402Config::new());
    let r = send(&env.app, req("/paid?q=1", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "payment_required");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(
        r.header("access-control-expose-headers")
            .unwrap()
            .contains("PAYMENT-REQUIRED")
    );
    // v2: the header, with both offers, the resource and the extension.
    let required = r.payment_required().expect("PAYMENT-REQUIRED");
    assert_eq!(required.x402_version, 2);
    assert_eq!(required.accepts, vec![offer(), offer_base()]);
    assert_eq!(required.resource.url, "http://shop.test/paid?q=1");
    assert_eq!(
        required.resource.description.as_deref(),
        Some("Premium data")
    );
    assert_eq!(required.resource.mime_type.as_deref(), Some("text/plain"));
    assert_eq!(
        required.error.as_deref(),
        Some("PAYMENT-SIGNATURE header is required")
    );
    let ext = required.extensions.unwrap();
    assert_eq!(ext["payment-identifier"]["info"]["required"], false);
    // v1: the body.
    let body = r.json();
    assert_eq!(body["x402Version"], 1);
    assert_eq!(body["accepts"].as_array().unwrap().len(), 2);
    assert_eq!(body["accepts"][0]["network"], "base-sepolia");
    assert_eq!(body["accepts"][0]["maxAmountRequired"], "10000");
    assert_eq!(body["accepts"][0]["resource"], "http://shop.test/paid?q=1");
    assert_eq!(body["accepts"][1]["network"], "base");
    assert_eq!(runs(&env), 0);
    // v1 off: no v1 members in the body.
    let env = x402_no_v1();
    let r = send(&env.app, req("/paid", &[])).await;
    assert!(r.json().get("x402Version").is_none());
    assert!(r.payment_required().is_some());
}

fn x402_no_v1() -> Env {
    env(X402Config::new().accept_v1(false))
}

#[tokio::test]
async fn free_routes_and_dynamic_prices() {
    let env = env(X402Config::new());
    let r = send(&env.app, req("/free", &[])).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "free"));

    let small = send(&env.app, req("/dynamic", &[])).await;
    let large = send(&env.app, req("/dynamic?size=large", &[])).await;
    let small_offer = small.payment_required().unwrap().accepts[0].clone();
    let large_offer = large.payment_required().unwrap().accepts[0].clone();
    assert_eq!(small_offer.amount, TokenAmount::from_u64(PRICE));
    assert_eq!(large_offer.amount, TokenAmount::from_u64(5 * PRICE));
    let payer = Payer::dev(1);
    // Paying the small price for the large request matches no offer.
    let cheap = pay_v2(&payer, &small_offer, None);
    let r = send(
        &env.app,
        req("/dynamic?size=large", &[("payment-signature", &cheap)]),
    )
    .await;
    assert_refused(&r, 402, "invalid_exact_evm_authorization_value");
    let right = pay_v2(&payer, &large_offer, None);
    let r = send(
        &env.app,
        req("/dynamic?size=large", &[("payment-signature", &right)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "dynamic");
}

#[tokio::test]
async fn paid_v2_request_is_served_once_with_a_receipt_and_replay_is_refused() {
    let env = env(X402Config::new());
    let payer = Payer::dev(1);
    let header = pay_v2(&payer, &offer(), None);
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.text(),
        format!("SECRET run=1 payer={} tx=-", payer.address)
    );
    let receipt = r.payment_response().expect("PAYMENT-RESPONSE");
    assert!(receipt.success);
    assert_eq!(receipt.network, NETWORK);
    assert_eq!(
        receipt.payer.as_deref(),
        Some(payer.address.to_string().as_str())
    );
    assert!(receipt.transaction.as_deref().unwrap().starts_with("0x"));
    assert!(
        r.header("access-control-expose-headers")
            .unwrap()
            .contains("PAYMENT-RESPONSE")
    );
    assert_eq!(env.facilitator.verify_count(), 1);
    assert_eq!(env.facilitator.settle_count(), 1);
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Settled));

    // The same payment again: refused with the reference reason, offered again.
    let again = pay(&env, &header).await;
    assert_refused(&again, 402, "invalid_exact_evm_nonce_already_used");
    assert!(again.payment_required().is_some());
    assert_eq!(runs(&env), 1);
    assert_eq!(env.facilitator.settle_count(), 1);

    // The second offer (another chain, another token) is payable too.
    let other = pay_v2(&payer, &offer_base(), None);
    let r = pay(&env, &other).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.payment_response().unwrap().network, "eip155:8453");
}

#[tokio::test]
async fn v1_payments_are_accepted_with_x_payment_and_answered_with_x_payment_response() {
    let env = env(X402Config::new());
    let payer = Payer::dev(2);
    let header = pay_v1(&payer, &offer(), "base-sepolia");
    let r = send(&env.app, req("/paid", &[("x-payment", &header)])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let receipt = r.x_payment_response().expect("X-PAYMENT-RESPONSE");
    assert!(receipt.success);
    assert_eq!(receipt.network, "base-sepolia");
    assert!(r.payment_response().is_none());
    // Replayed.
    let r = send(&env.app, req("/paid", &[("x-payment", &header)])).await;
    assert_refused(&r, 402, "invalid_exact_evm_nonce_already_used");
    // A v1 payment for an unknown network slug.
    let wrong = pay_v1(&payer, &offer(), "polygon");
    let r = send(&env.app, req("/paid", &[("x-payment", &wrong)])).await;
    assert_refused(&r, 402, "invalid_exact_evm_network_mismatch");
    // v1 turned off: X-PAYMENT is refused as the wrong version.
    let env = x402_no_v1();
    let header = pay_v1(&payer, &offer(), "base-sepolia");
    let r = send(&env.app, req("/paid", &[("x-payment", &header)])).await;
    assert_refused(&r, 400, "invalid_x402_version");
    assert_eq!(runs(&env), 0);
}

#[tokio::test]
async fn failed_settlement_answers_402_with_the_receipt_and_never_the_body() {
    let env = env(X402Config::new());
    env.facilitator
        .script(&[SettleStep::Fail("invalid_exact_evm_insufficient_balance")]);
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let r = pay(&env, &header).await;
    assert_refused(&r, 402, "invalid_exact_evm_insufficient_balance");
    let receipt = r.payment_response().expect("PAYMENT-RESPONSE on failure");
    assert!(!receipt.success);
    assert_eq!(
        receipt.error_reason.as_deref(),
        Some("invalid_exact_evm_insufficient_balance")
    );
    assert_eq!(receipt.network, NETWORK);
    assert!(r.payment_required().is_some());
    assert_eq!(runs(&env), 1);
    // Nothing moved: the payment was released and can be presented again.
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Released));
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(env.facilitator.settle_count(), 2);
}

#[tokio::test]
async fn refused_or_broken_settlements_never_release_content() {
    // Refused: nothing was sent, released; 502.
    let env = env(X402Config::new());
    env.facilitator.script(&[SettleStep::Refused]);
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let r = pay(&env, &header).await;
    assert_refused(&r, 502, "facilitator_refused");
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Released));

    // success without a transaction: not trusted; recorded pending, withheld.
    env.facilitator
        .script(&[SettleStep::SuccessWithoutTransaction]);
    let r = pay(&env, &header).await;
    assert_refused(&r, 503, "settlement_unknown");
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Pending));
}

#[tokio::test]
async fn handler_errors_are_not_settled_and_the_payment_stays_usable() {
    let env = env(X402Config::new());
    env.fail_next.store(1, Ordering::SeqCst);
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.text(), "handler broke");
    assert!(r.payment_response().is_none());
    assert_eq!(env.facilitator.settle_count(), 0);
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Released));
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(env.facilitator.settle_count(), 1);

    // A panicking handler: 500, nothing settled, released.
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let r = send(&env.app, req("/panic", &[("payment-signature", &header)])).await;
    assert_refused(&r, 500, "handler_failed");
    assert_eq!(env.facilitator.settle_count(), 1);
}

#[tokio::test]
async fn a_response_over_the_buffer_is_neither_served_nor_charged() {
    let env = env(X402Config::new());
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let r = send(&env.app, req("/big", &[("payment-signature", &header)])).await;
    assert_refused(&r, 500, "response_too_large");
    assert_eq!(env.facilitator.settle_count(), 0);
}

#[tokio::test]
async fn pending_settlement_is_recorded_and_the_same_payment_is_served_on_retry() {
    let env = env(X402Config::new());
    env.facilitator.script(&[SettleStep::Pending]);
    let payer = Payer::dev(1);
    let header = pay_v2(&payer, &offer(), None);
    let r = pay(&env, &header).await;
    assert_refused(&r, 202, "settlement_pending");
    assert_eq!(r.header("retry-after").as_deref(), Some("2"));
    let receipt = r.payment_response().expect("receipt with the transaction");
    assert!(!receipt.success);
    assert_eq!(receipt.error_reason.as_deref(), Some("settlement_pending"));
    let tx = receipt.transaction.clone().unwrap();
    assert!(tx.starts_with("0x"));
    // Recorded, never lost: pending, with the transaction and the request.
    let pending = env.store.list(PaymentState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].transaction.as_deref(), Some(tx.as_str()));
    assert_eq!(pending[0].payer, payer.address.to_string());
    assert!(pending[0].request.contains("paymentPayload"));
    assert_eq!(runs(&env), 1);

    // The same payment comes back: settled again (idempotently), served the
    // response the handler produced the first time, handler not run again.
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.text(),
        format!("SECRET run=1 payer={} tx=-", payer.address)
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        r.payment_response().unwrap().transaction.as_deref(),
        Some(tx.as_str())
    );
    assert_eq!(runs(&env), 1);
    assert_eq!(env.facilitator.settle_count(), 2);
    assert_eq!(
        env.facilitator.verify_count(),
        1,
        "no re-verify of a pending payment"
    );
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Settled));
    // And then it is spent.
    let r = pay(&env, &header).await;
    assert_refused(&r, 402, "invalid_exact_evm_nonce_already_used");
}

#[tokio::test]
async fn a_non_idempotent_facilitator_refusing_the_retry_of_a_pending_payment_keeps_it_pending() {
    // A reference facilitator answers a second settle of a payment that its
    // first (pending) transaction already mined with "nonce already used".
    // Releasing the payment then would charge the payer without serving
    // them: it stays pending, recorded with the first transaction.
    let env = env(X402Config::new());
    env.facilitator.script(&[
        SettleStep::Pending,
        SettleStep::Fail("invalid_exact_evm_nonce_already_used"),
    ]);
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let r = pay(&env, &header).await;
    assert_refused(&r, 202, "settlement_pending");
    let tx = r.payment_response().unwrap().transaction.unwrap();

    let r = pay(&env, &header).await;
    assert_refused(&r, 202, "settlement_pending");
    assert_eq!(
        r.payment_response().unwrap().transaction.as_deref(),
        Some(tx.as_str())
    );
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Pending));
    let pending = env.store.list(PaymentState::Pending, 10).await.unwrap();
    assert_eq!(pending[0].transaction.as_deref(), Some(tx.as_str()));
    assert_eq!(runs(&env), 1);
    assert_eq!(env.facilitator.settle_count(), 2);
}

#[tokio::test]
async fn unreachable_facilitator_during_settlement_is_treated_as_pending() {
    let env = env(X402Config::new());
    env.facilitator
        .script(&[SettleStep::Unavailable, SettleStep::Pending]);
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let r = pay(&env, &header).await;
    assert_refused(&r, 503, "settlement_unknown");
    assert!(r.header("retry-after").is_some());
    assert_eq!(state_of(&env, &header).await, Some(PaymentState::Pending));
    let r = pay(&env, &header).await;
    assert_refused(&r, 202, "settlement_pending");
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(runs(&env), 1);
    assert_eq!(env.facilitator.settle_count(), 3);
}

#[tokio::test]
async fn settle_before_runs_the_handler_only_after_settlement() {
    let env = env(X402Config::new().settle(SettleTiming::BeforeHandler));
    let payer = Payer::dev(1);
    let header = pay_v2(&payer, &offer(), None);
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let tx = r.payment_response().unwrap().transaction.unwrap();
    // The handler saw the transaction.
    assert_eq!(
        r.text(),
        format!("SECRET run=1 payer={} tx={tx}", payer.address)
    );

    // A failed settlement: the handler never runs.
    env.facilitator
        .script(&[SettleStep::Fail("invalid_exact_evm_transaction_failed")]);
    let header = pay_v2(&payer, &offer(), None);
    let r = pay(&env, &header).await;
    assert_refused(&r, 402, "invalid_exact_evm_transaction_failed");
    assert_eq!(runs(&env), 1);

    // Pending: recorded, the handler has not run; the retry settles and runs it once.
    env.facilitator.script(&[SettleStep::Pending]);
    let header = pay_v2(&payer, &offer(), None);
    let r = pay(&env, &header).await;
    assert_refused(&r, 202, "settlement_pending");
    assert_eq!(runs(&env), 1);
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(runs(&env), 2);

    // Settle-before charges first: a handler error is still served (with the receipt).
    env.fail_next.store(1, Ordering::SeqCst);
    let header = pay_v2(&payer, &offer(), None);
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.payment_response().unwrap().success);
}

#[tokio::test]
async fn payment_identifier_replays_the_cached_response_and_conflicts_on_another_payment() {
    for timing in [SettleTiming::AfterHandler, SettleTiming::BeforeHandler] {
        let env = env(X402Config::new().settle(timing));
        let payer = Payer::dev(1);
        let id = "pay_7d5d747be160e280504c099d984bcfe0";
        let header = pay_v2(&payer, &offer(), Some(id));
        let first = pay(&env, &header).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text());
        // Same id, same payment: the cached response, byte for byte, and no
        // second run or settlement.
        let again = pay(&env, &header).await;
        assert_eq!(again.status, StatusCode::OK, "{timing:?}: {}", again.text());
        assert_eq!(again.body, first.body);
        assert_eq!(again.header("content-type"), first.header("content-type"));
        assert_eq!(
            again.header("payment-response"),
            first.header("payment-response")
        );
        assert_eq!(runs(&env), 1);
        assert_eq!(env.facilitator.settle_count(), 1);
        // Same id, another payment (a fresh nonce): 409.
        let other = pay_v2(&payer, &offer(), Some(id));
        let r = pay(&env, &other).await;
        assert_refused(&r, 409, "payment_identifier_conflict");
        assert!(r.payment_required().is_none());
        assert_eq!(runs(&env), 1);
        // A malformed id: 400.
        let bad = pay_v2(&payer, &offer(), Some("short"));
        assert_refused(&pay(&env, &bad).await, 400, "invalid_payment_identifier");
    }
    // Required: a payment without an id gets 400; the 402 says required.
    let required = env(X402Config::new().payment_identifier(PaymentIdentifierMode::Required));
    let r = send(&required.app, req("/paid", &[])).await;
    let ext = r.payment_required().unwrap().extensions.unwrap();
    assert_eq!(ext["payment-identifier"]["info"]["required"], true);
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    assert_refused(
        &pay(&required, &header).await,
        400,
        "payment_identifier_required",
    );
    // Off: not advertised.
    let off = env(X402Config::new().payment_identifier(PaymentIdentifierMode::Off));
    let r = send(&off.app, req("/paid", &[])).await;
    assert!(r.payment_required().unwrap().extensions.is_none());
}

#[tokio::test]
async fn facilitator_verdicts_and_outages_during_verify() {
    let env = env(X402Config::new());
    env.facilitator
        .verify_invalid(Some("invalid_exact_evm_nonce_already_used"));
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let r = pay(&env, &header).await;
    assert_refused(&r, 402, "invalid_exact_evm_nonce_already_used");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("injected verdict")
    );
    assert_eq!(runs(&env), 0);
    // A reason that is not a plain token is not echoed.
    env.facilitator.verify_invalid(Some("<script>"));
    let r = pay(&env, &header).await;
    assert_refused(&r, 402, "invalid_payment");
    env.facilitator.verify_invalid(None);
    // Unreachable: fail closed, nothing served, the payment stays usable.
    env.facilitator.verify_unavailable(true);
    let r = pay(&env, &header).await;
    assert_refused(&r, 503, "facilitator_unavailable");
    assert_eq!(runs(&env), 0);
    env.facilitator.verify_unavailable(false);
    let r = pay(&env, &header).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Verify can be turned off.
    let env2 = env_no_verify();
    let r = pay(&env2, &pay_v2(&Payer::dev(1), &offer(), None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(env2.facilitator.verify_count(), 0);
}

fn env_no_verify() -> Env {
    env(X402Config::new().facilitator_verify(false))
}

#[tokio::test]
async fn bad_input_gets_4xx_with_the_reference_reason_and_never_reaches_the_handler() {
    let store = Arc::new(MemoryPaymentStore::new());
    let env = env_with(X402Config::new(), store.clone());
    // An unpaid request: a 402 and no write.
    let r = send(&env.app, req("/paid", &[])).await;
    assert_eq!(r.status.as_u16(), 402);
    let payer = Payer::dev(1);
    let o = offer();
    let honest = |f: &dyn Fn(&mut pay402_core::x402::evm::TransferAuthorization)| {
        let mut auth = authorization_for(&payer, &o);
        f(&mut auth);
        let sig = sign(&payer.key, &auth, &domain(&o, None, None));
        payment_v2(&o, auth, sig, None).encode_header()
    };
    let echo = |f: &dyn Fn(&mut PaymentRequirements)| {
        let mut accepted = o.clone();
        f(&mut accepted);
        let auth = authorization_for(&payer, &accepted);
        let sig = sign(&payer.key, &auth, &domain(&accepted, None, None));
        payment_v2(&accepted, auth, sig, None).encode_header()
    };
    let other_domain = |name: Option<&str>, version: Option<&str>| {
        let auth = authorization_for(&payer, &o);
        let sig = sign(&payer.key, &auth, &domain(&o, name, version));
        payment_v2(&o, auth, sig, None).encode_header()
    };
    let with_sig = |f: &dyn Fn(&EvmSignature) -> EvmSignature| {
        let auth = authorization_for(&payer, &o);
        let sig = sign(&payer.key, &auth, &domain(&o, None, None));
        payment_v2(&o, auth, f(&sig), None).encode_header()
    };
    let now = now();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "not base64",
            "%%%not-base64%%%".into(),
            400,
            "invalid_payload",
        ),
        (
            "not JSON",
            pay402_core::b64::encode_std(b"{nope"),
            400,
            "invalid_payload",
        ),
        (
            "wrong shape",
            pay402_core::b64::encode_std(br#"{"x402Version":2}"#),
            400,
            "invalid_payload",
        ),
        (
            "oversize",
            "A".repeat(20_000),
            431,
            "payment_header_too_large",
        ),
        (
            "v1 payload in PAYMENT-SIGNATURE",
            pay_v1(&payer, &o, "base-sepolia"),
            400,
            "invalid_payload",
        ),
        (
            "wrong network",
            echo(&|a| a.network = "eip155:1".into()),
            402,
            "invalid_exact_evm_network_mismatch",
        ),
        (
            "wrong payTo (echo)",
            echo(&|a| a.pay_to = "0x0000000000000000000000000000000000000001".into()),
            402,
            "invalid_exact_evm_recipient_mismatch",
        ),
        (
            "wrong payTo (authorization)",
            honest(&|a| {
                a.to = "0x0000000000000000000000000000000000000001"
                    .parse()
                    .unwrap()
            }),
            402,
            "invalid_exact_evm_recipient_mismatch",
        ),
        (
            "expired validBefore",
            honest(&|a| a.valid_before = EvmTimestamp::from_u64(now - 1)),
            402,
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            "validBefore inside the margin",
            honest(&|a| a.valid_before = EvmTimestamp::from_u64(now + 3)),
            402,
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            "future validAfter",
            honest(&|a| a.valid_after = EvmTimestamp::from_u64(now + 3600)),
            402,
            "invalid_exact_evm_payload_authorization_valid_after",
        ),
        (
            "amount below the price",
            honest(&|a| a.value = TokenAmount::from_u64(PRICE - 1)),
            402,
            "invalid_exact_evm_authorization_value",
        ),
        (
            "amount above the price",
            honest(&|a| a.value = TokenAmount::from_u64(PRICE + 1)),
            402,
            "invalid_exact_evm_authorization_value",
        ),
        (
            "amount mismatch (echo)",
            echo(&|a| a.amount = TokenAmount::from_u64(1)),
            402,
            "invalid_exact_evm_authorization_value",
        ),
        (
            "wrong token name (echo)",
            echo(&|a| a.extra = Some(pay402_core::x402::Extra::eip712("USD Coin", "2"))),
            402,
            "invalid_exact_evm_token_name_mismatch",
        ),
        (
            "wrong token version (echo)",
            echo(&|a| a.extra = Some(pay402_core::x402::Extra::eip712("USDC", "1"))),
            402,
            "invalid_exact_evm_token_version_mismatch",
        ),
        (
            "wrong domain name",
            other_domain(Some("USD Coin"), None),
            402,
            "invalid_exact_evm_signature",
        ),
        (
            "wrong domain version",
            other_domain(None, Some("1")),
            402,
            "invalid_exact_evm_signature",
        ),
        (
            "garbage signature",
            with_sig(&|_| EvmSignature::from_bytes(vec![7; 65])),
            402,
            "invalid_exact_evm_signature",
        ),
        (
            "short signature",
            with_sig(&|s| EvmSignature::from_bytes(s.as_bytes()[..64].to_vec())),
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
            "signed by someone else",
            {
                let auth = authorization_for(&payer, &o);
                let sig = sign(&Payer::dev(3).key, &auth, &domain(&o, None, None));
                payment_v2(&o, auth, sig, None).encode_header()
            },
            402,
            "invalid_exact_evm_signature",
        ),
        (
            "wrong scheme (echo)",
            echo(&|a| a.scheme = "upto".into()),
            402,
            "invalid_exact_evm_scheme",
        ),
    ];
    for (what, header, status, reason) in &cases {
        let r = pay(&env, header).await;
        assert_eq!(r.status.as_u16(), *status, "{what}: {}", r.text());
        assert_eq!(r.reason(), *reason, "{what}: {}", r.text());
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{what}"
        );
        // Every refusal of a payment offers the requirements again, with the reason.
        let required = r
            .payment_required()
            .unwrap_or_else(|| panic!("{what}: no PAYMENT-REQUIRED"));
        assert_eq!(required.error.as_deref(), Some(*reason), "{what}");
        assert_eq!(r.json()["error"], *reason, "{what}: v1 body error");
    }
    // Two payment headers.
    let h = pay_v2(&payer, &o, None);
    let r = send(
        &env.app,
        req(
            "/paid",
            &[("payment-signature", &h), ("payment-signature", &h)],
        ),
    )
    .await;
    assert_refused(&r, 400, "multiple_payment_headers");
    let r = send(
        &env.app,
        req("/paid", &[("payment-signature", &h), ("x-payment", &h)]),
    )
    .await;
    assert_refused(&r, 400, "multiple_payment_headers");
    // Non-ASCII header value.
    let req = http::Request::get("/paid")
        .header(
            "payment-signature",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    assert_refused(&send(&env.app, req).await, 400, "invalid_payload");
    assert_eq!(runs(&env), 0);
    assert!(
        store.is_empty(),
        "neither an unpaid request nor a refused payment wrote a record"
    );
    assert_eq!(env.facilitator.settle_count(), 0);
    assert_eq!(env.facilitator.verify_count(), 0, "refused before any I/O");
}

#[tokio::test]
async fn an_injected_clock_decides_expiry() {
    // The spec vector (2025 timestamps) verifies only inside its window.
    let vector = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
    use pay402_core::time::UnixTime;
    for (t, status, reason) in [
        (1_740_672_100, 200, ""),
        (
            1_740_672_149,
            402,
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            1_740_672_000,
            402,
            "invalid_exact_evm_payload_authorization_valid_after",
        ),
    ] {
        let env = env(X402Config::new().clock(Clock::fixed(UnixTime(t))));
        let r = pay(&env, vector).await;
        assert_eq!(r.status.as_u16(), status, "{t}: {}", r.text());
        if status != 200 {
            assert_eq!(r.reason(), reason);
        }
    }
}

#[tokio::test]
async fn twenty_concurrent_copies_of_one_payment_are_served_once() {
    let env = env(X402Config::new());
    env.facilitator.delay_settle(Duration::from_millis(300));
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = env.app.clone();
        let header = header.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, req("/paid", &[("payment-signature", &header)])).await
        }));
    }
    let mut served = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => served += 1,
            StatusCode::CONFLICT => assert_eq!(r.reason(), "payment_in_progress"),
            StatusCode::PAYMENT_REQUIRED => {
                assert_eq!(r.reason(), "invalid_exact_evm_nonce_already_used")
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
        assert!(r.status.as_u16() < 500);
    }
    assert_eq!(served, 1);
    assert_eq!(runs(&env), 1);
    assert_eq!(env.facilitator.settle_count(), 1);
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pay402-x402-{name}-{}-{}",
        std::process::id(),
        now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("payments.sqlite")
}

/// Two servers, each with its own store (its own pool) on one database,
/// as two processes would run.
async fn two_servers_on_one_database_serve_one_payment_once(
    first: Arc<dyn PaymentStore>,
    second: Arc<dyn PaymentStore>,
) {
    let one = env_with(X402Config::new(), first);
    let two = env_with(X402Config::new(), second);
    one.facilitator.delay_settle(Duration::from_millis(300));
    two.facilitator.delay_settle(Duration::from_millis(300));
    let header = pay_v2(&Payer::dev(1), &offer(), None);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 {
            one.app.clone()
        } else {
            two.app.clone()
        };
        let header = header.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, req("/paid", &[("payment-signature", &header)])).await
        }));
    }
    let mut served = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.status.as_u16() < 500, "{}", r.text());
        if r.status == StatusCode::OK {
            served += 1;
        }
    }
    assert_eq!(served, 1);
    assert_eq!(runs(&one) + runs(&two), 1);
    assert_eq!(
        one.facilitator.settle_count() + two.facilitator.settle_count(),
        1
    );
    // Settled: refused by both servers afterwards.
    assert_refused(
        &pay(&one, &header).await,
        402,
        "invalid_exact_evm_nonce_already_used",
    );
    assert_refused(
        &pay(&two, &header).await,
        402,
        "invalid_exact_evm_nonce_already_used",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_sqlite_file_serve_one_payment_once() {
    let path = temp_db("servers");
    two_servers_on_one_database_serve_one_payment_once(
        Arc::new(SqlitePaymentStore::open(&path).await.unwrap()),
        Arc::new(SqlitePaymentStore::open(&path).await.unwrap()),
    )
    .await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_postgres_database_serve_one_payment_once() {
    let pg = pay402_testkit::postgres::Postgres::shared().expect("the PostgreSQL test peer");
    let db = pg.create_database().unwrap();
    let options = pay402_server::database::DatabaseOptions::default();
    two_servers_on_one_database_serve_one_payment_once(
        Arc::new(
            PostgresPaymentStore::connect(db.url(), &options)
                .await
                .unwrap(),
        ),
        Arc::new(
            PostgresPaymentStore::connect(db.url(), &options)
                .await
                .unwrap(),
        ),
    )
    .await;
}

#[tokio::test]
async fn the_extractor_refuses_outside_the_layer() {
    let app: Router = Router::new().route(
        "/x",
        get(|p: X402Payment| async move { p.payer.to_string() }),
    );
    let r = send(&app, req("/x", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "payment_required");
}
