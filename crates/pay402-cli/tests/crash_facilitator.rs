//! Crash tests of the `pay402 facilitator` process (built with the
//! `fault-injection` feature): for each settlement step it is killed with
//! SIGKILL there (`PAY402_CRASH_AT`), the settlement it left is reconciled
//! (on demand with `pay402 facilitator reconcile`, or by the reconcile a
//! restarted facilitator runs at start), and the client sends the
//! identical payload again. On the chain and in the PostgreSQL store:
//! nothing lost, the payer charged exactly once, no nonce gap left.
//! Needs anvil and PostgreSQL (started by `pay402-testkit`).

mod facilitator_support;

use std::time::Duration;

use alloy_primitives::U256;
use facilitator_support::*;

const PRICE: u64 = 2_500;

/// The state the store holds right after the crash at `step`.
fn left_behind(step: &str) -> &'static str {
    match step {
        "after_verify" => "claimed",
        "before_response" => "succeeded",
        _ => "sent",
    }
}

async fn killed_at(step: &str, reconcile_on_demand: bool) {
    let (pg, db) = start_postgres();
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let dir = temp_dir(&format!("crash-facilitator-{step}"));
    let every = if reconcile_on_demand { 0 } else { 1 };
    let config = write_config(
        &dir,
        &chain,
        usdc.address,
        db.url(),
        &format!("receipt_timeout_secs = 3\nclaim_lease_secs = 4\nreconcile_every_secs = {every}"),
    );
    let payer = funded_payer(&usdc, PRICE * 3);
    let payer_address = payer.address().0;
    let paid = payment(usdc.address, &payer, PRICE, &format!("crash {step}"));
    let payee_before = usdc.balance_of(payee()).unwrap();
    let payer_before = usdc.balance_of(payer_address).unwrap();
    let http = reqwest::Client::new();

    // 1. Killed at the step, mid-request.
    let mut first = Facilitator::start(&config, &[("PAY402_CRASH_AT", step)]).await;
    assert!(
        settle(&http, first.addr, &paid).await.is_none(),
        "the request dies with the process"
    );
    assert_eq!(first.killed_by().await, Some(9), "SIGKILL at {step}");
    let expected_now = if step == "after_verify" { 0 } else { PRICE };
    let moved = payee_received(&usdc, payee_before, U256::from(expected_now)).await;
    assert_eq!(
        moved,
        U256::from(expected_now),
        "on chain right after the crash"
    );
    assert_eq!(
        sql(pg, &db, "SELECT state FROM pay402_facilitator_settlements"),
        left_behind(step)
    );
    let recorded_tx = sql(
        pg,
        &db,
        "SELECT coalesce(transaction_hash, '') FROM pay402_facilitator_settlements",
    );

    // 2. Reconciled once the dead process's claim has run out.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarted;
    if reconcile_on_demand {
        let (code, report) = reconcile(&config).await;
        assert_eq!(code, 0, "{report}");
        let entries = report["settlements"].as_array().unwrap();
        match step {
            "before_response" => assert!(entries.is_empty(), "nothing unfinished: {report}"),
            "after_verify" => {
                assert_eq!(entries.len(), 1, "{report}");
                assert_eq!(entries[0]["outcome"], "released", "{report}");
            }
            _ => {
                assert_eq!(entries.len(), 1, "{report}");
                assert_eq!(entries[0]["outcome"], "settled", "{report}");
                assert_eq!(entries[0]["transaction"], recorded_tx.as_str(), "{report}");
            }
        }
        assert!(
            report["nonce_gaps"].as_array().unwrap().is_empty(),
            "{report}"
        );
        restarted = Facilitator::start(&config, &[]).await;
    } else {
        // The restarted facilitator reconciles at start.
        restarted = Facilitator::start(&config, &[]).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let open = sql(
                pg,
                &db,
                "SELECT count(*) FROM pay402_facilitator_settlements WHERE state IN ('claimed', 'sent')",
            );
            if open == "0" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "reconciled at start"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    match step {
        "after_verify" => assert_eq!(
            sql(
                pg,
                &db,
                "SELECT count(*) FROM pay402_facilitator_settlements"
            ),
            "0",
            "a claim never sent is dropped"
        ),
        _ => assert_eq!(
            sql(
                pg,
                &db,
                "SELECT state || ' ' || transaction_hash FROM pay402_facilitator_settlements"
            ),
            format!("succeeded {recorded_tx}")
        ),
    }

    // 3. The client sends the identical payload again: the payment's
    // transaction, never a second charge.
    for _ in 0..2 {
        let (status, body) = settle(&http, restarted.addr, &paid)
            .await
            .expect("the restarted facilitator answers");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true, "{body}");
        if step != "after_verify" {
            assert_eq!(
                body["transaction"],
                recorded_tx.as_str(),
                "the original transaction"
            );
        }
    }
    assert_paid_once(&usdc, payer_address, (payee_before, payer_before), PRICE);
    assert!(
        usdc.authorization_state(payer_address, nonce_of(&paid))
            .unwrap()
    );
    assert_eq!(
        sql(pg, &db, "SELECT state FROM pay402_facilitator_settlements"),
        "succeeded"
    );
    let (mined, pending) = chain_nonces(&chain, settling_address());
    assert_eq!(pending, mined, "no transaction stuck behind a nonce gap");
    assert_eq!(store_next_nonce(pg, &db), mined.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_killed_after_verify_sends_nothing_and_the_retry_settles_once() {
    killed_at("after_verify", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_killed_after_send_is_reconciled_at_restart_and_the_retry_gets_the_same_transaction()
 {
    killed_at("after_send", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_killed_after_mined_is_reconciled_on_demand_and_the_retry_gets_the_same_transaction()
 {
    killed_at("after_mined", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_killed_before_record_is_reconciled_on_demand_and_the_retry_gets_the_same_transaction()
 {
    killed_at("before_record", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_killed_before_response_answers_the_retry_from_its_record() {
    killed_at("before_response", true).await;
}
