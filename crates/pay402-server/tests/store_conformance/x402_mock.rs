//! `SettlementStore`: one live job per permit nonce, leases, the journal,
//! token revocations, and the spender nonces allocated where a signed
//! transaction is journaled.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock_chain::{MockChainError, SignedTx, U256};
use pay402_server::database::Database;
use pay402_server::x402_mock::{
    JournalNext, JournalSlot, QueueError, Settlement, SettlementState, SettlementStore,
};

use crate::backend::{Pair, join_all};
use crate::mock_jobs::{ALICE, BOB, T, job, job_of};

async fn open(db: Database) -> Arc<dyn SettlementStore> {
    pay402_server::x402_mock::open_store(&db).await.unwrap()
}

type Stores = Pair<dyn SettlementStore>;

crate::conformance!(open;
    one_live_job_per_nonce_and_failed_jobs_free_it,
    the_live_job_of_a_permit_nonce_is_found_until_it_fails,
    claims_respect_due_time_and_leases_and_skip_final_jobs,
    the_journal_round_trips_and_unknown_jobs_are_errors,
    revocations_are_idempotent,
    concurrent_enqueues_of_one_nonce_accept_exactly_one,
    concurrent_claims_never_lease_one_job_twice,
    saves_need_the_lease_their_writer_holds,
    a_takeover_racing_the_old_holders_saves_lets_none_of_them_through_after_it,
    signing_journals_with_the_next_sender_nonce_under_the_lease,
    concurrent_signing_never_hands_out_one_sender_nonce_twice,
);
crate::conformance!(persistent open;
    a_queued_job_and_its_journal_survive_reopening,
    the_spender_nonce_counter_is_the_facilitators,
);

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
    s.a.save(&failed, 0).await.unwrap();
    // A failed job no longer holds the nonce: a new permit may use it.
    let again = s.b.enqueue(job(3, 4)).await.unwrap();
    assert_ne!(again, id);
    assert_eq!(
        s.b.get(id).await.unwrap().unwrap().state,
        SettlementState::Failed
    );
}

async fn the_live_job_of_a_permit_nonce_is_found_until_it_fails(s: Stores) {
    let id = s.a.enqueue(job(3, 1)).await.unwrap();
    let p = job(3, 1).permit;
    let (chain, token) = (p.chain_id, p.token);
    let live = |nonce: u64, owner: &str| {
        let b = s.b.clone();
        let owner = owner.parse().unwrap();
        async move {
            b.live(chain, token, owner, U256::from(nonce))
                .await
                .unwrap()
                .map(|j| j.id)
        }
    };
    assert_eq!(live(3, ALICE).await, Some(id));
    assert_eq!(live(2, ALICE).await, None, "another nonce");
    assert_eq!(live(3, BOB).await, None, "another owner");
    assert_eq!(
        s.b.live(p.chain_id + 1, p.token, p.owner, U256::from(3u8))
            .await
            .unwrap(),
        None,
        "another chain"
    );
    let mut failed = s.a.get(id).await.unwrap().unwrap();
    failed.state = SettlementState::Failed;
    s.a.save(&failed, 0).await.unwrap();
    assert_eq!(live(3, ALICE).await, None, "a failed job is not live");
    let again = s.a.enqueue(job(3, 2)).await.unwrap();
    assert_eq!(live(3, ALICE).await, Some(again));
}

async fn claims_respect_due_time_and_leases_and_skip_final_jobs(s: Stores) {
    let a = s.a.enqueue(job(0, 1)).await.unwrap();
    let b = s.a.enqueue(job(1, 2)).await.unwrap();
    let mut sb = s.b.get(b).await.unwrap().unwrap();
    sb.next_attempt_at = T + 500;
    s.b.save(&sb, 0).await.unwrap();
    let got = s.a.claim_due(T, T + 60, 10).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a]);
    assert_eq!(got[0].lease_until, T + 60);
    // Leased: not handed out again before the lease ends, on either handle.
    assert!(s.b.claim_due(T + 10, T + 70, 10).await.unwrap().is_empty());
    let mut sa = got[0].clone();
    sa.state = SettlementState::Settled;
    sa.lease_until = 0;
    s.a.save(&sa, T + 60).await.unwrap();
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
    s.b.save(&j, 0).await.unwrap();
    assert_eq!(s.a.get(id).await.unwrap(), Some(j.clone()));
    assert_eq!(s.a.get(id + 1000).await.unwrap(), None);
    let mut ghost = j.clone();
    ghost.id = id + 1000;
    assert!(matches!(
        s.a.save(&ghost, 0).await,
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
    s.a.save(&j, T + 100).await.unwrap();
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

async fn saves_need_the_lease_their_writer_holds(s: Stores) {
    let id = s.a.enqueue(job(0, 1)).await.unwrap();
    let mine = s.a.claim_due(T, T + 60, 10).await.unwrap().remove(0);
    assert_eq!(mine.lease_until, T + 60);
    // A lease it does not hold: refused, nothing written.
    let mut j = mine.clone();
    j.state = SettlementState::PermitSent;
    j.permit_tx = Some(tx(5, 1));
    assert_eq!(s.b.save(&j, 0).await, Err(QueueError::LeaseLost { id }));
    assert_eq!(
        s.b.save(&j, T + 59).await,
        Err(QueueError::LeaseLost { id })
    );
    assert_eq!(
        s.b.get(id).await.unwrap().unwrap().state,
        SettlementState::Queued
    );
    // Its own lease: written, and kept.
    s.a.save(&j, T + 60).await.unwrap();
    s.b.save(&j, T + 60).await.unwrap();
    // The lease runs out; another worker takes the job over and sees the journal.
    let theirs = s.b.claim_due(T + 60, T + 120, 10).await.unwrap().remove(0);
    assert_eq!(theirs.lease_until, T + 120);
    assert_eq!(theirs.permit_tx, Some(tx(5, 1)));
    // The first worker's late save is refused and writes nothing.
    let mut late = j.clone();
    late.state = SettlementState::TransferSent;
    late.transfer_tx = Some(tx(6, 2));
    assert_eq!(
        s.a.save(&late, T + 60).await,
        Err(QueueError::LeaseLost { id })
    );
    let stored = s.a.get(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.transfer_tx, stored.lease_until),
        (SettlementState::PermitSent, None, T + 120)
    );
    // The holder releases it; its old lease then holds nothing either.
    let mut done = theirs.clone();
    done.state = SettlementState::Settled;
    done.lease_until = 0;
    s.b.save(&done, T + 120).await.unwrap();
    assert_eq!(
        s.a.save(&done, T + 120).await,
        Err(QueueError::LeaseLost { id })
    );
    // A missing job is not a lost lease.
    let mut ghost = done.clone();
    ghost.id = id + 1000;
    assert!(matches!(
        s.a.save(&ghost, 0).await,
        Err(QueueError::Corrupt(_))
    ));
}

/// The old holder keeps saving while its lease runs out and other workers
/// race to take the job over: exactly one takeover wins, and no save of the
/// old holder lands after it (the row the takeover returned is the row
/// that stays).
async fn a_takeover_racing_the_old_holders_saves_lets_none_of_them_through_after_it(s: Stores) {
    let id = s.a.enqueue(job(0, 1)).await.unwrap();
    let held = s.a.claim_due(T, T + 1, 10).await.unwrap().remove(0);
    let tasks = (0..24)
        .map(|i| {
            let store = s.pick(i);
            let mut j = held.clone();
            tokio::spawn(async move {
                if i % 3 == 0 {
                    // Another worker, once the lease ran out.
                    Err(store.claim_due(T + 1, T + 2, 10).await.unwrap())
                } else {
                    j.attempts = u32::try_from(i).unwrap();
                    Ok(store.save(&j, T + 1).await.map(|()| j.attempts))
                }
            })
        })
        .collect();
    let mut takeovers = Vec::new();
    for r in join_all(tasks).await {
        match r {
            Err(claimed) => takeovers.extend(claimed),
            Ok(Ok(_)) | Ok(Err(QueueError::LeaseLost { .. })) => {}
            Ok(Err(e)) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(takeovers.len(), 1, "one takeover: {takeovers:?}");
    let stored = s.a.get(id).await.unwrap().unwrap();
    assert_eq!(stored.lease_until, T + 2);
    assert_eq!(
        stored.attempts, takeovers[0].attempts,
        "a save landed after the takeover"
    );
}

const SPENDER: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

type SignTx<'a> = &'a (dyn Fn(u64) -> Result<SignedTx, MockChainError> + Send + Sync);

fn spender() -> EvmAddress {
    SPENDER.parse().unwrap()
}

/// Signs and journals `job`'s transaction in `slot` with the next nonce
/// (at least `floor`), counting the signatures in `signs`.
async fn sign_next(
    store: &dyn SettlementStore,
    job: &Settlement,
    slot: JournalSlot,
    floor: u64,
    signs: &AtomicUsize,
) -> Result<SignedTx, QueueError> {
    let b = u8::try_from(job.id % 200).unwrap();
    let sign = |nonce: u64| -> Result<SignedTx, MockChainError> {
        signs.fetch_add(1, Ordering::SeqCst);
        Ok(tx(b, nonce))
    };
    store
        .sign_and_journal(JournalNext {
            job,
            slot,
            sender: spender(),
            floor,
            sign: &sign,
            now: T + 1,
        })
        .await
}

async fn signing_journals_with_the_next_sender_nonce_under_the_lease(s: Stores) {
    let a = s.a.enqueue(job(0, 1)).await.unwrap();
    let b = s.a.enqueue(job(1, 2)).await.unwrap();
    let jobs = s.a.claim_due(T, T + 60, 10).await.unwrap();
    let (ja, jb) = (&jobs[0], &jobs[1]);
    assert_eq!((ja.id, jb.id), (a, b));
    let chain = ja.job.permit.chain_id;
    let signs = AtomicUsize::new(0);
    assert_eq!(s.b.next_sender_nonce(chain, spender()).await.unwrap(), None);

    // The first nonce is the floor (the chain's pending nonce).
    let t = sign_next(&*s.a, ja, JournalSlot::Permit, 5, &signs)
        .await
        .unwrap();
    assert_eq!(t.sender_nonce, 5);
    let stored = s.b.get(a).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.state,
            stored.permit_tx.as_ref(),
            stored.lease_until,
            stored.updated_at
        ),
        (SettlementState::PermitSent, Some(&t), T + 60, T + 1)
    );
    // The next one follows, through the other handle, whatever lower floor.
    let t = sign_next(&*s.b, jb, JournalSlot::Permit, 3, &signs)
        .await
        .unwrap();
    assert_eq!(t.sender_nonce, 6);
    // A higher floor (the key used elsewhere) moves the counter up.
    let ja = s.a.get(a).await.unwrap().unwrap();
    let mut ja_done = ja.clone();
    ja_done.state = SettlementState::PermitDone;
    s.a.save(&ja_done, T + 60).await.unwrap();
    let t = sign_next(&*s.a, &ja_done, JournalSlot::Transfer, 10, &signs)
        .await
        .unwrap();
    assert_eq!(t.sender_nonce, 10);
    let stored = s.b.get(a).await.unwrap().unwrap();
    assert_eq!(stored.state, SettlementState::TransferSent);
    assert_eq!(stored.transfer_tx, Some(t));
    assert_eq!(stored.permit_tx, ja.permit_tx, "the permit journal is kept");
    assert_eq!(
        s.b.next_sender_nonce(chain, spender()).await.unwrap(),
        Some(11)
    );
    assert_eq!(
        s.a.next_sender_nonce(
            chain,
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                .parse()
                .unwrap()
        )
        .await
        .unwrap(),
        None,
        "one counter per sender"
    );
    assert_eq!(signs.load(Ordering::SeqCst), 3);

    // A lease the writer does not hold: nothing signed, allocated or written.
    let mut stale = s.a.get(b).await.unwrap().unwrap();
    stale.lease_until = T + 59;
    assert_eq!(
        sign_next(&*s.a, &stale, JournalSlot::Transfer, 0, &signs).await,
        Err(QueueError::LeaseLost { id: b })
    );
    let mut ghost = stale.clone();
    ghost.id = b + 1000;
    assert!(matches!(
        sign_next(&*s.b, &ghost, JournalSlot::Transfer, 0, &signs).await,
        Err(QueueError::Corrupt(_))
    ));
    assert_eq!(signs.load(Ordering::SeqCst), 3);
    let stored = s.b.get(b).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.transfer_tx),
        (SettlementState::PermitSent, None)
    );

    // A signer that fails, or signs another nonce: nothing allocated or written.
    let jb = s.a.get(b).await.unwrap().unwrap();
    let failing = |_: u64| -> Result<SignedTx, MockChainError> {
        Err(MockChainError::Config("no key".into()))
    };
    let wrong = |nonce: u64| -> Result<SignedTx, MockChainError> { Ok(tx(9, nonce + 1)) };
    for (store, sign) in [(&s.a, &failing as SignTx<'_>), (&s.b, &wrong as SignTx<'_>)] {
        let next = JournalNext {
            job: &jb,
            slot: JournalSlot::Transfer,
            sender: spender(),
            floor: 0,
            sign,
            now: T + 2,
        };
        assert!(matches!(
            store.sign_and_journal(next).await,
            Err(QueueError::Unavailable(_) | QueueError::Corrupt(_))
        ));
    }
    assert_eq!(
        s.a.next_sender_nonce(chain, spender()).await.unwrap(),
        Some(11)
    );
    assert_eq!(s.a.get(b).await.unwrap().unwrap(), jb);
    // The holder's own lease: the next nonce.
    let t = sign_next(&*s.b, &jb, JournalSlot::Transfer, 0, &signs)
        .await
        .unwrap();
    assert_eq!(t.sender_nonce, 11);
}

/// Workers on both handles sign one job each, at once: every job gets its
/// own nonce, and together they are a run without gaps from the floor.
async fn concurrent_signing_never_hands_out_one_sender_nonce_twice(s: Stores) {
    for n in 0..40u64 {
        s.a.enqueue(job(200 + n, u8::try_from(n).unwrap()))
            .await
            .unwrap();
    }
    let jobs = s.a.claim_due(T, T + 600, 40).await.unwrap();
    assert_eq!(jobs.len(), 40);
    let signs = Arc::new(AtomicUsize::new(0));
    let tasks = jobs
        .into_iter()
        .enumerate()
        .map(|(i, j)| {
            let store = s.pick(i);
            let signs = signs.clone();
            tokio::spawn(async move {
                let t = sign_next(&*store, &j, JournalSlot::Permit, 7, &signs)
                    .await
                    .unwrap();
                (j.id, t.sender_nonce)
            })
        })
        .collect();
    let got = join_all(tasks).await;
    let mut nonces: Vec<u64> = got.iter().map(|(_, n)| *n).collect();
    nonces.sort_unstable();
    assert_eq!(
        nonces,
        (7..47).collect::<Vec<u64>>(),
        "one nonce each, no gap"
    );
    assert_eq!(signs.load(Ordering::SeqCst), 40, "nothing signed twice");
    for (id, nonce) in got {
        let j = s.b.get(id).await.unwrap().unwrap();
        assert_eq!(j.state, SettlementState::PermitSent);
        assert_eq!(j.permit_tx.unwrap().sender_nonce, nonce);
    }
    let chain = job(0, 0).permit.chain_id;
    assert_eq!(
        s.b.next_sender_nonce(chain, spender()).await.unwrap(),
        Some(47)
    );
}

/// On a database, x402_mock and the x402 facilitator count one key's
/// nonces in one row (`pay402_facilitator_nonces`): a key both sign with
/// never gets one nonce twice either.
async fn the_spender_nonce_counter_is_the_facilitators(s: Stores) {
    use pay402_core::time::UnixTime;
    use pay402_core::x402::settlements::{AuthorizationKey, OwnerId, SignNext, Signed};
    let facilitator = pay402_server::x402::settlements::open(&s.fresh.open().await)
        .await
        .unwrap();
    let key = AuthorizationKey::new(31337, &[1; 20], &[2; 20], &[3; 32]);
    let me = OwnerId([7; 16]);
    facilitator
        .claim(&key, &me, "{}", UnixTime(T + 60), UnixTime(T))
        .await
        .unwrap();
    let sign = |nonce: u64| -> Result<Signed, String> {
        Ok(Signed {
            transaction: format!("0x{nonce:064x}"),
            raw: "0x00".into(),
        })
    };
    let next = SignNext {
        key: &key,
        owner: &me,
        chain_id: 31337,
        signer: SPENDER,
        floor: 4,
        sign: &sign,
        now: UnixTime(T),
    };
    let (first, _) = facilitator.sign_next(next).await.unwrap().unwrap();
    assert_eq!(first, 4);
    s.a.enqueue(job(0, 1)).await.unwrap();
    let j = s.a.claim_due(T, T + 60, 1).await.unwrap().remove(0);
    let signs = AtomicUsize::new(0);
    let t = sign_next(&*s.b, &j, JournalSlot::Permit, 0, &signs)
        .await
        .unwrap();
    assert_eq!(t.sender_nonce, 5);
    assert_eq!(
        facilitator.next_nonce(31337, SPENDER).await.unwrap(),
        Some(6)
    );
}
