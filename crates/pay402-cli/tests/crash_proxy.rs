//! Crash tests of a paying server: `pay402 proxy` (built with the
//! `fault-injection` feature) taking x402 with its in-process local
//! facilitator on anvil with Circle's USDC, its payment records and its
//! facilitator's settlement state in one store: a SQLite file, and (each
//! test again) a PostgreSQL database. For each settlement step it is killed
//! with SIGKILL there (`PAY402_CRASH_AT`), restarted on the same store, and
//! the client sends the identical payload again until it gets the content
//! or a clear refusal. On the chain and in the stores: nothing lost, the
//! payer charged exactly once, nothing served unpaid, the facilitator's
//! claim reconciled and no nonce gap left. Needs anvil and PostgreSQL
//! (started by `pay402-testkit`).

mod common;
mod facilitator_support;

use std::time::Duration;

use alloy_primitives::U256;
use common::start_upstream;
use facilitator_support::{
    ProxyProcess, assert_paid_once, chain_nonces, funded_payer, nonce_of, payee, payee_received,
    payment_for, settling_address, settling_key, start_chain, start_postgres, temp_dir,
    transfers_to_payee,
};
use pay402_core::x402::{HeaderValue, PaymentRequired, SettleResponse};
use pay402_server::database::Database;
use pay402_server::x402::store::{NonceKey, PaymentState};
use pay402_testkit::anvil::{USDC_NAME, USDC_VERSION};

const PRICE: u64 = 3_000;

/// Where the proxy keeps its payment records and settlement state.
#[derive(Clone, Copy)]
enum Store {
    Sqlite,
    Postgres,
}

fn proxy_config(
    dir: &std::path::Path,
    store_url: &str,
    upstream: std::net::SocketAddr,
    asset: impl std::fmt::Display,
) -> String {
    let dir = dir.display();
    format!(
        r#"[server]
listen = "127.0.0.1:0"
log_format = "json"
shutdown_grace_secs = 1

[store]
url = "{store_url}"

[x402]
network = "eip155:31337"
asset = "{asset}"
asset_name = "{USDC_NAME}"
asset_version = "{USDC_VERSION}"
pay_to = "{payee}"
reservation_lease_secs = 3

[x402.facilitator]
kind = "local"
rpc_url = {{ file = "{dir}/rpc_url" }}
key = {{ file = "{dir}/key" }}
receipt_timeout_secs = 3
claim_lease_secs = 4

[[services]]
name = "paid"
upstream = "http://{upstream}"
rails = ["x402"]
price = {{ x402_units = "{PRICE}" }}
"#,
        payee = payee(),
    )
}

async fn killed_at(step: &str, store: Store) {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let upstream = start_upstream().await;
    let dir = temp_dir(&format!("crash-proxy-{}", step.replace(':', "-")));
    std::fs::write(dir.join("rpc_url"), chain.rpc_url()).unwrap();
    std::fs::write(dir.join("key"), format!("{}\n", settling_key())).unwrap();
    // A fresh database of the shared cluster (kept until the test ends).
    let (_pg, pg_db) = match store {
        Store::Sqlite => (None, None),
        Store::Postgres => {
            let (pg, db) = start_postgres();
            (Some(pg), Some(db))
        }
    };
    let store_url = match &pg_db {
        Some(db) => db.url().to_owned(),
        None => format!("sqlite://{}/pay402.sqlite", dir.display()),
    };
    let toml = proxy_config(&dir, &store_url, upstream, usdc.address);
    let payer = funded_payer(&usdc, PRICE * 3);
    let payer_address = payer.address().0;
    let payee_before = usdc.balance_of(payee()).unwrap();
    let payer_before = usdc.balance_of(payer_address).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // The server about to die at `step`.
    let mut first = ProxyProcess::start(&dir, &toml, Some(step)).await;
    let challenge = http.get(first.url("/echo")).send().await.unwrap();
    assert_eq!(challenge.status(), 402);
    let required =
        PaymentRequired::decode_header(challenge.headers()["payment-required"].to_str().unwrap())
            .expect("a v2 offer");
    let paid = payment_for(
        required.accepts[0].clone(),
        &payer,
        &format!("proxy crash {step}"),
    );
    let pay402_core::x402::PaymentRequest::V2(v2) = &paid else {
        unreachable!()
    };
    let header = v2.payment_payload.encode_header();
    let died = http
        .get(first.url("/echo"))
        .header("payment-signature", &header)
        .send()
        .await;
    assert!(died.is_err(), "the request dies with the server: {died:?}");
    use std::os::unix::process::ExitStatusExt;
    let status = tokio::time::timeout(Duration::from_secs(30), first.child.wait())
        .await
        .expect("the server ended")
        .unwrap();
    assert_eq!(status.signal(), Some(9), "SIGKILL at {step}");
    let expected_now = if step == "after_verify" { 0 } else { PRICE };
    let moved = payee_received(&usdc, payee_before, U256::from(expected_now)).await;
    assert_eq!(
        moved,
        U256::from(expected_now),
        "on chain right after the crash"
    );

    // Restarted on the same store; the client retries the identical payload.
    let second = ProxyProcess::start(&dir, &toml, None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (status, receipt, body) = loop {
        let resp = http
            .get(second.url("/echo"))
            .header("payment-signature", &header)
            .send()
            .await
            .expect("the restarted server answers");
        let status = resp.status().as_u16();
        let receipt = resp
            .headers()
            .get("payment-response")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.text().await.unwrap();
        // In progress (the dead request's lease) or pending: retry.
        if matches!(status, 202 | 409 | 503) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        break (status, receipt, body);
    };
    let onchain_tx = {
        let logs = transfers_to_payee(&chain, usdc.address, payer_address);
        assert_eq!(logs.len(), 1, "one Transfer event: {logs:?}");
        logs[0]["transactionHash"].as_str().unwrap().to_owned()
    };
    match status {
        200 => {
            // Served: only with the receipt of the payment's transaction.
            let receipt = SettleResponse::decode_header(&receipt.expect("PAYMENT-RESPONSE"))
                .expect("a receipt");
            assert!(receipt.success);
            assert_eq!(receipt.transaction.as_deref(), Some(onchain_tx.as_str()));
            assert!(
                body.contains("\"uri\":\"/echo\""),
                "the upstream's answer: {body}"
            );
        }
        _ => {
            // Settled and recorded, but the answer died with the server:
            // the retry is refused with a clear reason, never charged again.
            assert_eq!(step, "before_response", "{status} {body}");
            assert!((400..500).contains(&status), "{status} {body}");
            assert!(body.contains("nonce_already_used"), "{body}");
        }
    }
    assert_paid_once(&usdc, payer_address, (payee_before, payer_before), PRICE);
    assert!(
        usdc.authorization_state(payer_address, nonce_of(&paid))
            .unwrap()
    );

    // The stores: the payment recorded settled with that transaction, the
    // facilitator's claim finished (by the request or the reconcile).
    let db = Database::open(&store_url, &Default::default())
        .await
        .unwrap();
    let payments = pay402_server::x402::store::open(&db).await.unwrap();
    let a = &paid.exact_payload().authorization;
    let key = NonceKey::new(
        "eip155:31337",
        &usdc.address.to_string(),
        &a.from.to_string(),
        &nonce_of(&paid).to_string(),
    );
    let record = payments
        .get(&key)
        .await
        .unwrap()
        .expect("the payment record");
    assert_eq!(record.state, PaymentState::Settled, "{record:?}");
    assert_eq!(record.transaction.as_deref(), Some(onchain_tx.as_str()));
    let settlements = pay402_server::x402::settlements::open(&db).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !settlements.unfinished(10).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the facilitator's claim is finished by the reconcile"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (mined, pending) = chain_nonces(&chain, settling_address());
    assert_eq!(pending, mined, "no transaction stuck behind a nonce gap");
    drop(second);
}

/// One test per settlement step, in a module per store.
macro_rules! crash_tests {
    ($store:ident: $($name:ident => $step:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::killed_at($step, super::Store::$store).await;
            }
        )*
    };
}

macro_rules! every_step {
    ($store:ident) => {
        crash_tests! { $store:
            proxy_killed_after_verify_serves_the_retry_once_paid => "after_verify",
            proxy_killed_after_send_serves_the_retry_with_the_same_transaction => "after_send",
            proxy_killed_after_mined_serves_the_retry_with_the_same_transaction => "after_mined",
            proxy_killed_before_the_facilitator_record_serves_the_retry_with_the_same_transaction
                => "before_record",
            proxy_killed_before_the_payment_record_serves_the_retry_with_the_same_transaction
                => "before_record:2",
            proxy_killed_before_the_response_refuses_the_retry_clearly_without_charging_again
                => "before_response",
        }
    };
}

mod sqlite {
    every_step!(Sqlite);
}

mod postgres {
    every_step!(Postgres);
}
