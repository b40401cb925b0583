//! Two real `pay402 facilitator` processes settling from one key, sharing
//! their settlement state in one PostgreSQL database (no shared memory),
//! on anvil with Circle's USDC: many distinct settlements split across
//! both, and one authorization sent to both many times at once. Every
//! distinct one is mined, the duplicate is settled once, no transaction
//! nonce is used twice and none is left as a gap. Needs anvil and
//! PostgreSQL (started by `pay402-testkit`); fails loudly without them.

mod facilitator_support;

use std::collections::HashSet;

use alloy_primitives::U256;
use facilitator_support::*;

const PRICE: u64 = 1_000;
const PAYERS: usize = 6;
const PER_PAYER: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_facilitator_processes_on_one_key_and_one_database_never_reuse_a_nonce_nor_settle_twice()
 {
    let (pg, db) = start_postgres();
    let chain = start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let dir = temp_dir("shared-key");
    let config = write_config(
        &dir,
        &chain,
        usdc.address,
        db.url(),
        "receipt_timeout_secs = 30",
    );
    let a = Facilitator::start(&config, &[]).await;
    let b = Facilitator::start(&config, &[]).await;
    let payee_before = usdc.balance_of(payee()).unwrap();
    let (mined_before, _) = chain_nonces(&chain, settling_address());

    let payers: Vec<_> = (0..PAYERS)
        .map(|_| funded_payer(&usdc, PRICE * (PER_PAYER as u64 + 1)))
        .collect();
    let mut distinct = Vec::new();
    for (i, payer) in payers.iter().enumerate() {
        for j in 0..PER_PAYER {
            distinct.push(payment(
                usdc.address,
                payer,
                PRICE,
                &format!("distinct {i} {j}"),
            ));
        }
    }
    let duplicate = payment(usdc.address, &payers[0], PRICE, "the duplicate");

    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for (i, p) in distinct.iter().enumerate() {
        let (http, p) = (http.clone(), p.clone());
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        tasks.push(tokio::spawn(async move {
            (false, settle(&http, addr, &p).await)
        }));
    }
    for i in 0..8 {
        let (http, p) = (http.clone(), duplicate.clone());
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        tasks.push(tokio::spawn(async move {
            (true, settle(&http, addr, &p).await)
        }));
    }
    let mut distinct_txs = HashSet::new();
    let mut duplicate_txs = HashSet::new();
    for t in tasks {
        let (dup, answer) = t.await.unwrap();
        let (status, body) = answer.expect("both facilitators answer");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true, "{body}");
        let tx = body["transaction"].as_str().unwrap().to_owned();
        if dup {
            duplicate_txs.insert(tx);
        } else {
            assert!(
                distinct_txs.insert(tx),
                "two settlements answered one transaction"
            );
        }
    }
    assert_eq!(
        distinct_txs.len(),
        distinct.len(),
        "every distinct one settled"
    );
    assert_eq!(
        duplicate_txs.len(),
        1,
        "the duplicate is answered with one transaction: {duplicate_txs:?}"
    );
    let dup_tx = duplicate_txs.into_iter().next().unwrap();
    assert!(!distinct_txs.contains(&dup_tx));

    // On chain: each payment moved once.
    let settled = distinct.len() as u64 + 1;
    assert_eq!(
        usdc.balance_of(payee()).unwrap() - payee_before,
        U256::from(PRICE * settled)
    );
    assert_eq!(
        transfers_to_payee(&chain, usdc.address, payers[0].address().0).len(),
        PER_PAYER + 1,
        "payer 0: its distinct payments and the duplicate once"
    );
    assert!(
        usdc.authorization_state(payers[0].address().0, nonce_of(&duplicate))
            .unwrap()
    );
    // Nonces: one per settlement, contiguous, each the one the store allocated, none pending.
    let (mined, pending) = chain_nonces(&chain, settling_address());
    assert_eq!(
        mined - mined_before,
        settled,
        "one transaction per settlement"
    );
    assert_eq!(pending, mined, "no transaction stuck behind a nonce gap");
    let mut nonces: Vec<u64> = distinct_txs
        .iter()
        .chain([&dup_tx])
        .map(|tx| tx_nonce(&chain, tx))
        .collect();
    nonces.sort_unstable();
    assert_eq!(nonces, (mined_before..mined).collect::<Vec<_>>());
    assert_eq!(
        store_next_nonce(pg, &db),
        mined.to_string(),
        "the store's counter is the chain's"
    );
    assert_eq!(
        sql(
            pg,
            &db,
            "SELECT count(*) FROM pay402_facilitator_settlements WHERE state = 'succeeded'"
        ),
        settled.to_string()
    );
    assert_eq!(
        sql(
            pg,
            &db,
            "SELECT count(*) FROM pay402_facilitator_settlements WHERE state <> 'succeeded'"
        ),
        "0"
    );
    assert_eq!(
        sql(
            pg,
            &db,
            &format!(
                "SELECT transaction_hash FROM pay402_facilitator_settlements WHERE auth_key LIKE '%/{}'",
                nonce_of(&duplicate)
            )
        ),
        dup_tx
    );
    // Both processes settled some, and neither ever met a used nonce.
    assert!(a.logged("settlement sent") && b.logged("settlement sent"));
    assert!(
        !a.logged("nonce clash") && !b.logged("nonce clash"),
        "a nonce was handed out twice"
    );
}
