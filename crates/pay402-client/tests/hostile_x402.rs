#![cfg(feature = "x402")]
//! Hostile-server battery for [`X402Client`] on a real chain: anvil with
//! Circle's USDC (`pay402_testkit::anvil`) and pay402's local facilitator.
//! Each server in `hostile_support::x402` settles the payment for real and
//! then misbehaves in one way. In every case the client pays at most once
//! (checked on chain: the payer's `Transfer` events and USDC balance), sends
//! only the one signed payload (byte-identical on a resend), and ends with a
//! typed error that says whether money may have moved.
//!
//! The last tests put the hostile party behind pay402's honest x402 layer
//! instead: a facilitator that settles for real and then misbehaves.

mod hostile_support;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use hostile_support::x402::{
    FacilitatorMisbehaviour, HostileFacilitator, HostileX402, Misbehaviour, NETWORK, PRICE, START,
    facilitator, honest_server, offer, transfers_from,
};
use pay402_client::x402::{LocalSigner, X402Client};
use pay402_core::problem::Reason;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_testkit::anvil::{Anvil, Usdc};

struct Setup {
    payer: Address,
    server: HostileX402,
    client: X402Client,
}

fn chain() -> Anvil {
    Anvil::start().expect("anvil must start (npm registry + glibc >= 2.35 needed)")
}

/// A funded payer, the hostile server and a client allowed to pay up to
/// five times the price (so that a raised price would be within its cap).
async fn setup(chain: &Anvil, usdc: &Usdc<'_>, mode: Misbehaviour) -> Setup {
    let signer = Arc::new(LocalSigner::random());
    let payer = signer.address().0;
    usdc.mint(payer, U256::from(START)).expect("mint");
    let facilitator = facilitator(chain, usdc.address).await;
    let server = HostileX402::start(Arc::new(facilitator), offer(usdc.address, PRICE), mode).await;
    let client = X402Client::builder(signer)
        .allow_asset(
            NETWORK,
            EvmAddress(usdc.address),
            TokenAmount::from_u64(5 * PRICE),
        )
        .timeout(Duration::from_secs(3))
        .max_resends(1)
        .resend_delay(Duration::from_millis(10))
        .build();
    Setup {
        payer,
        server,
        client,
    }
}

/// On chain: exactly `transfers` transfers left the payer, each of the
/// price. At the server: only one signed payload ever arrived (resent
/// byte-identical if at all), `deliveries` times.
fn assert_paid(chain: &Anvil, usdc: &Usdc<'_>, s: &Setup, transfers: usize, deliveries: usize) {
    assert_eq!(
        transfers_from(chain, usdc.address, s.payer),
        transfers,
        "USDC transfers from the payer"
    );
    assert_eq!(
        usdc.balance_of(s.payer).unwrap(),
        U256::from(START - transfers as u64 * PRICE),
        "payer balance"
    );
    let received = s.server.received();
    assert_eq!(received.len(), deliveries, "deliveries of the payment");
    assert!(
        received.iter().all(|r| *r == received[0]),
        "one signed payload, resent unchanged"
    );
}

/// The nonce of the payment the error carries, and whether it is spent.
fn nonce_spent(usdc: &Usdc<'_>, s: &Setup, e: &pay402_client::x402::X402Error) -> bool {
    let payment = e.payment().expect("the error carries the payment");
    assert_eq!(payment.payer.0, s.payer);
    usdc.authorization_state(s.payer, B256::from(payment.nonce.0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_after_settling_is_a_typed_error_not_a_success() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let s = setup(&chain, &usdc, Misbehaviour::ServerErrorAfterSettling).await;
    let e = s
        .client
        .get(&s.server.url)
        .await
        .expect_err("a 500 to the paid request is not a success");
    assert_eq!(e.reason(), "server_error_after_payment", "{e}");
    assert!(e.may_have_paid(), "{e}");
    assert!(nonce_spent(&usdc, &s, &e), "the server did settle it");
    assert_paid(&chain, &usdc, &s, 1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_settling_resends_the_same_payload_and_is_typed() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let s = setup(&chain, &usdc, Misbehaviour::HangAfterSettling).await;
    let e = s
        .client
        .get(&s.server.url)
        .await
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert!(e.may_have_paid(), "{e}");
    assert!(nonce_spent(&usdc, &s, &e));
    // Sent twice (one resend), the same payload both times; the second
    // settlement was refused by the facilitator, nothing moved twice.
    assert_paid(&chain, &usdc, &s, 1, 2);
    s.server.settled_transaction();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_402_again_after_settling_is_reported_as_asked_again_and_never_paid_twice() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let s = setup(&chain, &usdc, Misbehaviour::AskAgainAfterSettling).await;
    let e = s
        .client
        .get(&s.server.url)
        .await
        .expect_err("a fresh 402 after payment is not a success");
    assert_eq!(e.reason(), "payment_requested_again", "{e}");
    assert!(
        e.may_have_paid(),
        "the server holds a valid authorization: {e}"
    );
    assert!(nonce_spent(&usdc, &s, &e));
    assert_paid(&chain, &usdc, &s, 1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_false_naming_a_mined_transaction_may_have_paid() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let s = setup(&chain, &usdc, Misbehaviour::FailWithMinedTransaction).await;
    let e = s
        .client
        .get(&s.server.url)
        .await
        .expect_err("a failed settlement is an error");
    assert_eq!(e.reason(), "settlement_failed", "{e}");
    assert!(
        e.may_have_paid(),
        "a failure naming a transaction may have moved money: {e}"
    );
    assert_eq!(
        e.transaction(),
        Some(s.server.settled_transaction().as_str())
    );
    assert!(nonce_spent(&usdc, &s, &e));
    assert_paid(&chain, &usdc, &s, 1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_report_for_another_amount_is_a_mismatch() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let s = setup(&chain, &usdc, Misbehaviour::ReportOtherAmount).await;
    let e = s
        .client
        .get(&s.server.url)
        .await
        .expect_err("a settlement for another amount is not a success");
    assert_eq!(e.reason(), "settlement_mismatch", "{e}");
    assert!(e.may_have_paid(), "{e}");
    assert_eq!(
        e.transaction(),
        Some(s.server.settled_transaction().as_str())
    );
    assert!(nonce_spent(&usdc, &s, &e));
    // The signed amount is what moved, once.
    assert_paid(&chain, &usdc, &s, 1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_raised_on_the_retry_is_never_paid() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let s = setup(&chain, &usdc, Misbehaviour::RaisePriceOnRetry).await;
    let e = s
        .client
        .get(&s.server.url)
        .await
        .expect_err("a dearer 402 after payment is not a success");
    assert_eq!(e.reason(), "payment_requested_again", "{e}");
    // Nothing settled, but the server still holds a valid authorization.
    assert!(e.may_have_paid(), "{e}");
    assert!(!nonce_spent(&usdc, &s, &e));
    assert_eq!(e.payment().unwrap().amount, TokenAmount::from_u64(PRICE));
    assert_paid(&chain, &usdc, &s, 0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_before_answering_resends_the_same_payload() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let s = setup(&chain, &usdc, Misbehaviour::DropBeforeAnswering).await;
    let e = s
        .client
        .get(&s.server.url)
        .await
        .expect_err("no answer is not a success");
    assert_eq!(e.reason(), "retry_failed", "{e}");
    assert!(e.may_have_paid(), "{e}");
    assert!(nonce_spent(&usdc, &s, &e));
    assert_paid(&chain, &usdc, &s, 1, 2);
    s.server.settled_transaction();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_response_is_typed_and_keeps_the_receipt() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let s = setup(&chain, &usdc, Misbehaviour::DropMidResponse).await;
    let paid = s
        .client
        .get(&s.server.url)
        .await
        .expect("the status and headers arrived");
    let receipt = paid.receipt.clone().expect("a receipt");
    assert!(receipt.settled());
    let tx = s.server.settled_transaction();
    assert_eq!(receipt.transaction(), Some(tx.as_str()));
    let e = paid.bytes().await.expect_err("the body was cut short");
    assert_eq!(e.reason(), "body_interrupted", "{e}");
    assert!(e.may_have_paid(), "{e}");
    assert_eq!(e.transaction(), Some(tx.as_str()));
    assert!(nonce_spent(&usdc, &s, &e));
    assert_paid(&chain, &usdc, &s, 1, 1);
}

/// A funded payer and pay402's honest layer in front of a hostile
/// facilitator.
struct BehindLayer {
    payer: Address,
    facilitator: Arc<HostileFacilitator>,
    url: String,
    client: X402Client,
}

async fn behind_layer(
    chain: &Anvil,
    usdc: &Usdc<'_>,
    mode: FacilitatorMisbehaviour,
    settle_timeout: Duration,
) -> BehindLayer {
    let signer = Arc::new(LocalSigner::random());
    let payer = signer.address().0;
    usdc.mint(payer, U256::from(START)).expect("mint");
    let facilitator = Arc::new(HostileFacilitator::new(
        facilitator(chain, usdc.address).await,
        mode,
    ));
    let url = honest_server(facilitator.clone(), usdc.address, settle_timeout).await;
    let client = X402Client::builder(signer)
        .allow_asset(
            NETWORK,
            EvmAddress(usdc.address),
            TokenAmount::from_u64(PRICE),
        )
        .timeout(Duration::from_secs(20))
        .max_resends(1)
        .resend_delay(Duration::from_millis(10))
        .build();
    BehindLayer {
        payer,
        facilitator,
        url,
        client,
    }
}

/// One transfer on chain, and every settlement the facilitator was asked
/// for is of the one signed payload.
fn assert_paid_once_behind_layer(chain: &Anvil, usdc: &Usdc<'_>, b: &BehindLayer) {
    assert_eq!(transfers_from(chain, usdc.address, b.payer), 1);
    assert_eq!(usdc.balance_of(b.payer).unwrap(), U256::from(START - PRICE));
    let settled = b.facilitator.settled();
    assert!(!settled.is_empty());
    assert!(
        settled.iter().all(|(p, _)| *p == settled[0].0),
        "one signed payload, resent unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_failing_after_settling_leaves_a_pending_payment_paid_once() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let b = behind_layer(
        &chain,
        &usdc,
        FacilitatorMisbehaviour::ErrorAfterSettling,
        Duration::from_secs(30),
    )
    .await;
    let e = b
        .client
        .get(&b.url)
        .await
        .expect_err("an unknown settlement is not a success");
    assert_eq!(e.reason(), "settlement_pending", "{e}");
    assert!(e.may_have_paid(), "{e}");
    let payment = e.payment().expect("the payment");
    assert!(
        usdc.authorization_state(b.payer, B256::from(payment.nonce.0))
            .unwrap()
    );
    assert_paid_once_behind_layer(&chain, &usdc, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_timing_out_after_settling_leaves_a_pending_payment_paid_once() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let b = behind_layer(
        &chain,
        &usdc,
        FacilitatorMisbehaviour::HangAfterSettling,
        Duration::from_secs(2),
    )
    .await;
    let e = b
        .client
        .get(&b.url)
        .await
        .expect_err("an unknown settlement is not a success");
    assert_eq!(e.reason(), "settlement_pending", "{e}");
    assert!(e.may_have_paid(), "{e}");
    assert_paid_once_behind_layer(&chain, &usdc, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_reporting_failure_with_a_mined_transaction_may_have_paid() {
    let chain = chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let b = behind_layer(
        &chain,
        &usdc,
        FacilitatorMisbehaviour::FailWithMinedTransaction,
        Duration::from_secs(30),
    )
    .await;
    let e = b
        .client
        .get(&b.url)
        .await
        .expect_err("a failed settlement is an error");
    assert_eq!(e.reason(), "settlement_failed", "{e}");
    assert!(e.may_have_paid(), "{e}");
    let settled = b.facilitator.settled();
    assert_eq!(e.transaction(), settled[0].1.transaction.as_deref());
    assert_paid_once_behind_layer(&chain, &usdc, &b);
}
