//! `SettlementStore`: one live job per permit nonce, leases, the journal,
//! token revocations.

use std::collections::HashSet;
use std::sync::Arc;

use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::Bytes32;
use pay402_core::x402::mock::{MockPermit, MockPermitSignature};
use pay402_core::x402::mock_chain::SignedTx;
use pay402_server::database::Database;
use pay402_server::x402_mock::{NewSettlement, QueueError, SettlementState, SettlementStore};

use crate::backend::{Pair, join_all};

const T: u64 = 1_000_000_000;

async fn open(db: Database) -> Arc<dyn SettlementStore> {
    pay402_server::x402_mock::open_store(&db).await.unwrap()
}

type Stores = Pair<dyn SettlementStore>;

crate::conformance!(open;
    one_live_job_per_nonce_and_failed_jobs_free_it,
    claims_respect_due_time_and_leases_and_skip_final_jobs,
    the_journal_round_trips_and_unknown_jobs_are_errors,
    revocations_are_idempotent,
    concurrent_enqueues_of_one_nonce_accept_exactly_one,
    concurrent_claims_never_lease_one_job_twice,
);
crate::conformance!(persistent open;
    a_queued_job_and_its_journal_survive_reopening,
);

fn permit(nonce: u64, owner: &str) -> MockPermit {
    MockPermit {
        permit_type: "EIP2612".into(),
        owner: owner.parse().unwrap(),
        spender: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse()
            .unwrap(),
        token: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
            .parse()
            .unwrap(),
        value: 10_000u64.try_into().unwrap(),
        nonce: nonce.try_into().unwrap(),
        deadline: 2_000_000_000u64.try_into().unwrap(),
        chain_id: 31337,
        signature: MockPermitSignature {
            signature_type: "EIP2612".into(),
            v: 27,
            r: Bytes32([1; 32]),
            s: Bytes32([2; 32]),
        },
        created_at: None,
    }
}

const ALICE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const BOB: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

fn job(nonce: u64, digest: u8) -> NewSettlement {
    job_of(nonce, digest, ALICE)
}

fn job_of(nonce: u64, digest: u8, owner: &str) -> NewSettlement {
    NewSettlement {
        permit: permit(nonce, owner),
        digest: Bytes32([digest; 32]),
        resource: "/premium".into(),
        pay_to: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse()
            .unwrap(),
        amount: TokenAmount::from_u64(10_000),
        token_exp: T + 3_600,
        created_at: T,
    }
}

fn tx(b: u8, nonce: u64) -> SignedTx {
    SignedTx {
        hash: Bytes32([b; 32]),
        raw: vec![2, 0xf8, b],
        sender: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse()
            .unwrap(),
        sender_nonce: nonce,
    }
}

async fn one_live_job_per_nonce_and_failed_jobs_free_it(s: Stores) {
    let id = s.a.enqueue(job(3, 1)).await.unwrap();
    assert_eq!(
        s.b.enqueue(job(3, 1)).await,
        Err(QueueError::Duplicate { same_permit: true })
    );
    assert_eq!(
        s.b.enqueue(job(3, 2)).await,
        Err(QueueError::Duplicate { same_permit: false })
    );
    // Another nonce, or another owner's same nonce, is another job.
    let other = s.b.enqueue(job(4, 3)).await.unwrap();
    let bobs = s.a.enqueue(job_of(3, 9, BOB)).await.unwrap();
    assert_eq!(HashSet::from([id, other, bobs]).len(), 3);
    let mut failed = s.a.get(id).await.unwrap().unwrap();
    assert_eq!(failed.state, SettlementState::Queued);
    failed.state = SettlementState::Failed;
    failed.failure = Some("transfer_reverted".into());
    s.a.save(&failed).await.unwrap();
    // A failed job no longer holds the nonce: a new permit may use it.
    let again = s.b.enqueue(job(3, 4)).await.unwrap();
    assert_ne!(again, id);
    assert_eq!(
        s.b.get(id).await.unwrap().unwrap().state,
        SettlementState::Failed
    );
}

async fn claims_respect_due_time_and_leases_and_skip_final_jobs(s: Stores) {
    let a = s.a.enqueue(job(0, 1)).await.unwrap();
    let b = s.a.enqueue(job(1, 2)).await.unwrap();
    let mut sb = s.b.get(b).await.unwrap().unwrap();
    sb.next_attempt_at = T + 500;
    s.b.save(&sb).await.unwrap();
    let got = s.a.claim_due(T, T + 60, 10).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a]);
    assert_eq!(got[0].lease_until, T + 60);
    // Leased: not handed out again before the lease ends, on either handle.
    assert!(s.b.claim_due(T + 10, T + 70, 10).await.unwrap().is_empty());
    let mut sa = got[0].clone();
    sa.state = SettlementState::Settled;
    sa.lease_until = 0;
    s.a.save(&sa).await.unwrap();
    // Settled is final; b is due now.
    let got = s.b.claim_due(T + 600, T + 660, 10).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b]);
    // An expired lease is handed out again.
    let got = s.a.claim_due(T + 660, T + 720, 10).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b]);
    // The limit holds, earliest due first.
    let c = s.a.enqueue(job(2, 3)).await.unwrap();
    let d = s.a.enqueue(job(5, 4)).await.unwrap();
    let got = s.b.claim_due(T + 800, T + 860, 1).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![c]);
    // b's lease ran out at T + 720: due again, after d.
    let got = s.b.claim_due(T + 800, T + 860, 5).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![d, b]);
}

async fn the_journal_round_trips_and_unknown_jobs_are_errors(s: Stores) {
    let id = s.a.enqueue(job(7, 7)).await.unwrap();
    let mut j = s.b.get(id).await.unwrap().unwrap();
    assert_eq!(j.job, job(7, 7));
    assert_eq!((j.attempts, j.next_attempt_at, j.lease_until), (0, T, 0));
    j.state = SettlementState::TransferSent;
    j.permit_tx = Some(tx(5, 12));
    j.transfer_tx = Some(tx(6, 13));
    j.attempts = 2;
    j.next_attempt_at = T + 30;
    j.last_error = Some("receipt timeout".into());
    j.updated_at = T + 31;
    s.b.save(&j).await.unwrap();
    assert_eq!(s.a.get(id).await.unwrap(), Some(j.clone()));
    assert_eq!(s.a.get(id + 1000).await.unwrap(), None);
    let mut ghost = j.clone();
    ghost.id = id + 1000;
    assert!(matches!(
        s.a.save(&ghost).await,
        Err(QueueError::Corrupt(_))
    ));
}

async fn revocations_are_idempotent(s: Stores) {
    let jti = Bytes32([9; 32]);
    assert!(!s.a.is_revoked(&jti).await.unwrap());
    s.a.revoke(&jti, T + 5, "transfer_reverted").await.unwrap();
    s.b.revoke(&jti, T + 5, "again").await.unwrap();
    assert!(s.b.is_revoked(&jti).await.unwrap());
    assert!(!s.b.is_revoked(&Bytes32([8; 32])).await.unwrap());
}

async fn concurrent_enqueues_of_one_nonce_accept_exactly_one(s: Stores) {
    let tasks = (0..16)
        .map(|i| {
            let store = s.pick(i);
            // Half the racers carry the same permit, half another one with its nonce.
            let digest = if i % 4 < 2 { 1 } else { 2 };
            tokio::spawn(async move { store.enqueue(job(0, digest)).await })
        })
        .collect();
    let mut accepted = 0;
    for r in join_all(tasks).await {
        match r {
            Ok(_) => accepted += 1,
            Err(QueueError::Duplicate { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(accepted, 1);
}

async fn concurrent_claims_never_lease_one_job_twice(s: Stores) {
    let mut ids = HashSet::new();
    for n in 0..30 {
        ids.insert(s.a.enqueue(job(100 + n, n as u8)).await.unwrap());
    }
    let tasks = (0..8)
        .map(|i| {
            let store = s.pick(i);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_due(T, T + 600, 3).await.unwrap();
                    if got.is_empty() {
                        break mine;
                    }
                    mine.extend(got.into_iter().map(|j| j.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    for mine in join_all(tasks).await {
        seen.extend(mine);
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), unique.len(), "a job was leased twice: {seen:?}");
    assert_eq!(unique, ids, "every due job was leased");
}

async fn a_queued_job_and_its_journal_survive_reopening(s: Stores) {
    let id = s.a.enqueue(job(0, 7)).await.unwrap();
    // A worker journals a signed permit() transaction, then "crashes".
    let mut j = s.a.claim_due(T, T + 100, 10).await.unwrap().remove(0);
    j.state = SettlementState::PermitSent;
    j.permit_tx = Some(tx(5, 12));
    s.a.save(&j).await.unwrap();
    s.a.revoke(&Bytes32([9; 32]), 5, "x").await.unwrap();
    let reopened = open(s.fresh.open().await).await;
    // Still leased by the crashed worker until T + 100.
    assert!(
        reopened
            .claim_due(T + 50, T + 200, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let jobs = reopened.claim_due(T + 100, T + 200, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!(
        (j.id, &j.job, j.state),
        (id, &job(0, 7), SettlementState::PermitSent)
    );
    assert_eq!(j.permit_tx, Some(tx(5, 12)));
    assert!(j.transfer_tx.is_none());
    assert!(reopened.is_revoked(&Bytes32([9; 32])).await.unwrap());
    assert_eq!(reopened.get(id).await.unwrap().as_ref(), Some(j));
}
