//! `SettlementStore` (the x402 facilitator's claims and transaction
//! nonces): claim, takeover, sign-and-allocate, unsend, resync, finish,
//! release, listing, and races of many tasks through both handles.

use std::collections::HashSet;
use std::sync::Arc;

use pay402_core::time::UnixTime;
use pay402_core::x402::settlements::{
    AuthorizationKey, Claimed, Outcome, OwnerId, SettlementState, SettlementStore, SignNext,
    SignWith, Signed,
};
use pay402_server::database::Database;

use crate::backend::{Pair, join_all};

const CHAIN: u64 = 31337;
const SIGNER: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const T: UnixTime = UnixTime(1_000_000);

async fn open(db: Database) -> Arc<dyn SettlementStore> {
    pay402_server::x402::settlements::open(&db).await.unwrap()
}

type Stores = Pair<dyn SettlementStore>;

crate::conformance!(open;
    a_claim_moves_from_claimed_to_sent_to_succeeded,
    only_one_claim_holds_an_authorization_until_its_lease_runs_out,
    a_failed_settlement_may_be_claimed_again,
    nonces_are_allocated_in_order_and_raised_to_the_chain,
    only_the_owner_of_a_claimed_record_signs_and_a_failed_signature_allocates_nothing,
    unsend_gives_the_nonce_back_only_when_it_is_the_last,
    release_drops_only_an_unsigned_claim_of_its_owner,
    unfinished_claims_are_listed_oldest_first,
    concurrent_claims_of_one_authorization_have_one_owner,
    concurrent_signatures_never_share_a_nonce,
);
crate::conformance!(persistent open;
    claims_and_nonces_survive_reopening,
);

fn key(n: u8) -> AuthorizationKey {
    AuthorizationKey::new(CHAIN, &[0xaa; 20], &[0xbb; 20], &[n; 32])
}

fn owner(n: u8) -> OwnerId {
    OwnerId([n; 16])
}

fn signed(nonce: u64) -> Result<Signed, String> {
    Ok(Signed {
        transaction: format!("0x{nonce:064x}"),
        raw: format!("0x02{nonce:08x}"),
    })
}

/// `o`'s next transaction on `k` from [`SIGNER`], signed by `sign`.
fn next<'a>(
    k: &'a AuthorizationKey,
    o: &'a OwnerId,
    floor: u64,
    sign: SignWith<'a>,
) -> SignNext<'a> {
    SignNext {
        key: k,
        owner: o,
        chain_id: CHAIN,
        signer: SIGNER,
        floor,
        sign,
        now: T,
    }
}

async fn sign(
    store: &Arc<dyn SettlementStore>,
    k: &AuthorizationKey,
    o: &OwnerId,
    floor: u64,
) -> Option<u64> {
    store
        .sign_next(next(k, o, floor, &signed))
        .await
        .unwrap()
        .map(|(n, s)| {
            assert_eq!(s, signed(n).unwrap());
            n
        })
}

async fn a_claim_moves_from_claimed_to_sent_to_succeeded(s: Stores) {
    let k = key(1);
    let lease = T.saturating_add_secs(60);
    assert_eq!(
        s.a.claim(&k, &owner(1), "{\"x\":1}", lease, T)
            .await
            .unwrap(),
        Claimed::New
    );
    let r = s.b.get(&k).await.unwrap().expect("stored");
    assert_eq!(r.state, SettlementState::Claimed);
    assert_eq!(r.request, "{\"x\":1}");
    assert_eq!(r.owner, owner(1));
    assert!(r.transaction.is_none() && r.tx_nonce.is_none());
    assert_eq!(sign(&s.a, &k, &owner(1), 7).await, Some(7));
    let r = s.b.get(&k).await.unwrap().unwrap();
    assert_eq!(r.state, SettlementState::Sent);
    assert_eq!(r.tx_nonce, Some(7));
    assert_eq!(
        r.signer.as_deref(),
        Some(SIGNER.to_ascii_lowercase().as_str())
    );
    assert_eq!(r.transaction, Some(signed(7).unwrap().transaction));
    assert_eq!(r.raw_transaction, Some(signed(7).unwrap().raw));
    // Renew extends, never shortens; only the owner.
    assert!(
        s.a.renew(&k, &owner(1), T.saturating_add_secs(120), T)
            .await
            .unwrap()
    );
    assert!(s.a.renew(&k, &owner(1), T, T).await.unwrap());
    assert_eq!(
        s.b.get(&k).await.unwrap().unwrap().lease_until,
        T.saturating_add_secs(120)
    );
    assert!(
        !s.b.renew(&k, &owner(2), T.saturating_add_secs(999), T)
            .await
            .unwrap()
    );
    // Only the owner finishes it.
    assert!(
        !s.b.finish(&k, &owner(2), Outcome::Succeeded, None, None, T)
            .await
            .unwrap()
    );
    assert!(
        s.b.finish(&k, &owner(1), Outcome::Succeeded, None, None, T)
            .await
            .unwrap()
    );
    let r = s.a.get(&k).await.unwrap().unwrap();
    assert_eq!(r.state, SettlementState::Succeeded);
    assert_eq!(r.transaction, Some(signed(7).unwrap().transaction), "kept");
    // Final: nobody claims it again, not even after the lease.
    let later = T.saturating_add_secs(10_000);
    match s.b.claim(&k, &owner(3), "{}", later, later).await.unwrap() {
        Claimed::Held(r) => assert_eq!(r.state, SettlementState::Succeeded),
        other => panic!("a succeeded settlement is held, got {other:?}"),
    }
    assert!(
        !s.a.finish(&k, &owner(1), Outcome::Failed, None, None, T)
            .await
            .unwrap(),
        "final"
    );
}

async fn only_one_claim_holds_an_authorization_until_its_lease_runs_out(s: Stores) {
    let k = key(2);
    let lease = T.saturating_add_secs(60);
    assert_eq!(
        s.a.claim(&k, &owner(1), "{}", lease, T).await.unwrap(),
        Claimed::New
    );
    assert_eq!(sign(&s.a, &k, &owner(1), 3).await, Some(3));
    // Live: held, with its transaction.
    match s.b.claim(&k, &owner(2), "{}", lease, T).await.unwrap() {
        Claimed::Held(r) => {
            assert_eq!(r.owner, owner(1));
            assert_eq!(r.tx_nonce, Some(3));
        }
        other => panic!("expected held, got {other:?}"),
    }
    // Exactly at the lease: still held.
    assert!(matches!(
        s.b.claim(&k, &owner(2), "{}", lease, lease).await.unwrap(),
        Claimed::Held(_)
    ));
    // After it: taken over, transaction kept for the new owner to follow.
    let later = lease.saturating_add_secs(1);
    match s
        .b
        .claim(&k, &owner(2), "{}", later.saturating_add_secs(60), later)
        .await
        .unwrap()
    {
        Claimed::TakenOver(r) => {
            assert_eq!(r.owner, owner(2));
            assert_eq!(r.state, SettlementState::Sent);
            assert_eq!(r.transaction, Some(signed(3).unwrap().transaction));
            assert_eq!(r.raw_transaction, Some(signed(3).unwrap().raw));
        }
        other => panic!("expected a takeover, got {other:?}"),
    }
    // The old owner can no longer move it.
    assert!(
        !s.a.finish(&k, &owner(1), Outcome::Succeeded, None, None, later)
            .await
            .unwrap()
    );
    assert!(!s.a.unsend(&k, &owner(1), later).await.unwrap());
    assert!(
        s.b.finish(&k, &owner(2), Outcome::Succeeded, None, None, later)
            .await
            .unwrap()
    );
}

async fn a_failed_settlement_may_be_claimed_again(s: Stores) {
    let k = key(3);
    let lease = T.saturating_add_secs(60);
    s.a.claim(&k, &owner(1), "{}", lease, T).await.unwrap();
    assert_eq!(sign(&s.a, &k, &owner(1), 0).await, Some(0));
    assert!(
        s.a.finish(
            &k,
            &owner(1),
            Outcome::Failed,
            None,
            Some("invalid_exact_evm_transaction_failed"),
            T
        )
        .await
        .unwrap()
    );
    let r = s.b.get(&k).await.unwrap().unwrap();
    assert_eq!(r.state, SettlementState::Failed);
    assert_eq!(
        r.reason.as_deref(),
        Some("invalid_exact_evm_transaction_failed")
    );
    match s.b.claim(&k, &owner(2), "{}", lease, T).await.unwrap() {
        Claimed::TakenOver(r) => {
            assert_eq!(r.state, SettlementState::Claimed);
            assert!(r.transaction.is_none() && r.tx_nonce.is_none() && r.reason.is_none());
        }
        other => panic!("expected a takeover, got {other:?}"),
    }
    // The new owner signs with a new nonce (0 was used by the reverted one).
    assert_eq!(sign(&s.b, &k, &owner(2), 0).await, Some(1));
}

async fn nonces_are_allocated_in_order_and_raised_to_the_chain(s: Stores) {
    assert_eq!(s.a.next_nonce(CHAIN, SIGNER).await.unwrap(), None);
    let lease = T.saturating_add_secs(60);
    for (i, (floor, expected)) in [(5, 5), (0, 6), (6, 7), (20, 20), (3, 21)]
        .into_iter()
        .enumerate()
    {
        let k = key(10 + i as u8);
        let store = s.pick(i);
        store.claim(&k, &owner(1), "{}", lease, T).await.unwrap();
        assert_eq!(sign(&store, &k, &owner(1), floor).await, Some(expected));
    }
    assert_eq!(s.b.next_nonce(CHAIN, SIGNER).await.unwrap(), Some(22));
    // Case does not matter; other chains and signers are separate.
    assert_eq!(
        s.a.next_nonce(CHAIN, &SIGNER.to_ascii_lowercase())
            .await
            .unwrap(),
        Some(22)
    );
    assert_eq!(s.a.next_nonce(1, SIGNER).await.unwrap(), None);
    // Resync raises, never lowers.
    assert_eq!(s.a.resync_nonce(CHAIN, SIGNER, 30).await.unwrap(), 30);
    assert_eq!(s.b.resync_nonce(CHAIN, SIGNER, 2).await.unwrap(), 30);
    assert_eq!(s.b.resync_nonce(CHAIN, "0xother", 4).await.unwrap(), 4);
}

async fn only_the_owner_of_a_claimed_record_signs_and_a_failed_signature_allocates_nothing(
    s: Stores,
) {
    let k = key(4);
    let lease = T.saturating_add_secs(60);
    assert_eq!(sign(&s.a, &k, &owner(1), 0).await, None, "no claim");
    s.a.claim(&k, &owner(1), "{}", lease, T).await.unwrap();
    assert_eq!(sign(&s.b, &k, &owner(2), 0).await, None, "not the owner");
    let refused =
        s.b.sign_next(next(&k, &owner(1), 0, &|_| Err("no key".into())))
            .await;
    assert!(refused.is_err());
    assert_eq!(
        s.a.get(&k).await.unwrap().unwrap().state,
        SettlementState::Claimed
    );
    assert_eq!(
        sign(&s.b, &k, &owner(1), 0).await,
        Some(0),
        "nothing was allocated"
    );
    assert_eq!(sign(&s.a, &k, &owner(1), 0).await, None, "already sent");
}

async fn unsend_gives_the_nonce_back_only_when_it_is_the_last(s: Stores) {
    let lease = T.saturating_add_secs(60);
    let (k1, k2) = (key(5), key(6));
    s.a.claim(&k1, &owner(1), "{}", lease, T).await.unwrap();
    s.a.claim(&k2, &owner(2), "{}", lease, T).await.unwrap();
    assert_eq!(sign(&s.a, &k1, &owner(1), 0).await, Some(0));
    assert!(
        !s.b.unsend(&k1, &owner(2), T).await.unwrap(),
        "not the owner"
    );
    assert!(s.b.unsend(&k1, &owner(1), T).await.unwrap());
    let r = s.a.get(&k1).await.unwrap().unwrap();
    assert_eq!(r.state, SettlementState::Claimed);
    assert!(r.transaction.is_none() && r.tx_nonce.is_none() && r.raw_transaction.is_none());
    assert_eq!(
        s.a.next_nonce(CHAIN, SIGNER).await.unwrap(),
        Some(0),
        "given back"
    );
    assert!(!s.a.unsend(&k1, &owner(1), T).await.unwrap(), "not sent");
    // Signed again, then another after it: no longer the last, kept.
    assert_eq!(sign(&s.a, &k1, &owner(1), 0).await, Some(0));
    assert_eq!(sign(&s.b, &k2, &owner(2), 0).await, Some(1));
    assert!(s.a.unsend(&k1, &owner(1), T).await.unwrap());
    assert_eq!(s.b.next_nonce(CHAIN, SIGNER).await.unwrap(), Some(2));
    assert_eq!(sign(&s.a, &k1, &owner(1), 0).await, Some(2));
}

async fn release_drops_only_an_unsigned_claim_of_its_owner(s: Stores) {
    let lease = T.saturating_add_secs(60);
    let k = key(7);
    s.a.claim(&k, &owner(1), "{}", lease, T).await.unwrap();
    assert!(!s.b.release(&k, &owner(2)).await.unwrap());
    assert!(s.b.release(&k, &owner(1)).await.unwrap());
    assert!(s.a.get(&k).await.unwrap().is_none());
    assert_eq!(
        s.b.claim(&k, &owner(2), "{}", lease, T).await.unwrap(),
        Claimed::New
    );
    assert_eq!(sign(&s.b, &k, &owner(2), 0).await, Some(0));
    assert!(!s.a.release(&k, &owner(2)).await.unwrap(), "signed: kept");
    assert!(s.a.get(&k).await.unwrap().is_some());
}

async fn unfinished_claims_are_listed_oldest_first(s: Stores) {
    let lease = T.saturating_add_secs(600);
    for (i, n) in [30u8, 31, 32, 33].into_iter().enumerate() {
        let at = T.saturating_add_secs(i as u64);
        s.pick(i)
            .claim(&key(n), &owner(n), "{}", lease, at)
            .await
            .unwrap();
    }
    assert_eq!(sign(&s.a, &key(31), &owner(31), 0).await, Some(0));
    assert!(
        s.a.finish(
            &key(32),
            &owner(32),
            Outcome::Succeeded,
            Some("0x1"),
            None,
            T
        )
        .await
        .unwrap()
    );
    let open: Vec<_> =
        s.b.unfinished(10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
    assert_eq!(open, vec![key(30), key(31), key(33)]);
    assert_eq!(s.a.unfinished(1).await.unwrap().len(), 1);
}

async fn concurrent_claims_of_one_authorization_have_one_owner(s: Stores) {
    let k = key(40);
    let lease = T.saturating_add_secs(60);
    let tasks = (0..20u8)
        .map(|i| {
            let (store, k) = (s.pick(i as usize), k.clone());
            tokio::spawn(async move { store.claim(&k, &owner(i), "{}", lease, T).await.unwrap() })
        })
        .collect();
    let results = join_all(tasks).await;
    assert_eq!(results.iter().filter(|c| **c == Claimed::New).count(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|c| matches!(c, Claimed::Held(_)))
            .count(),
        19
    );
    // After the lease: one takeover among many.
    let later = lease.saturating_add_secs(1);
    let tasks = (20..40u8)
        .map(|i| {
            let (store, k) = (s.pick(i as usize), k.clone());
            tokio::spawn(async move {
                store
                    .claim(&k, &owner(i), "{}", later.saturating_add_secs(60), later)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let results = join_all(tasks).await;
    assert_eq!(
        results
            .iter()
            .filter(|c| matches!(c, Claimed::TakenOver(_)))
            .count(),
        1
    );
}

async fn concurrent_signatures_never_share_a_nonce(s: Stores) {
    let lease = T.saturating_add_secs(60);
    let tasks = (0..24u8)
        .map(|i| {
            let store = s.pick(i as usize);
            tokio::spawn(async move {
                let k = key(100 + i);
                store.claim(&k, &owner(i), "{}", lease, T).await.unwrap();
                sign(&store, &k, &owner(i), 0).await.expect("signed")
            })
        })
        .collect();
    let nonces: HashSet<u64> = join_all(tasks).await.into_iter().collect();
    assert_eq!(nonces, (0..24).collect(), "24 distinct nonces, no gap");
    assert_eq!(s.a.next_nonce(CHAIN, SIGNER).await.unwrap(), Some(24));
}

async fn claims_and_nonces_survive_reopening(s: Stores) {
    let lease = T.saturating_add_secs(60);
    let k = key(50);
    s.a.claim(&k, &owner(1), "{\"kept\":true}", lease, T)
        .await
        .unwrap();
    assert_eq!(sign(&s.a, &k, &owner(1), 9).await, Some(9));
    let reopened = open(s.fresh.open().await).await;
    let r = reopened.get(&k).await.unwrap().expect("kept");
    assert_eq!(r.state, SettlementState::Sent);
    assert_eq!(r.request, "{\"kept\":true}");
    assert_eq!(r.tx_nonce, Some(9));
    assert_eq!(reopened.next_nonce(CHAIN, SIGNER).await.unwrap(), Some(10));
    assert_eq!(reopened.unfinished(10).await.unwrap().len(), 1);
}
