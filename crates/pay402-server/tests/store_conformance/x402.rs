//! `PaymentStore`: reservations, the lease and attempt-id check-and-set,
//! pending/settled/released, the payment-identifier, pruning.

use std::sync::Arc;

use bytes::Bytes;
use pay402_core::time::UnixTime;
use pay402_server::database::Database;
use pay402_server::x402::store::{
    CachedResponse, Claim, NonceKey, PaymentState, PaymentStore, Reservation,
};

use crate::backend::{Pair, join_all};

const NETWORK: &str = "eip155:84532";
const ASSET: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const T: UnixTime = UnixTime(1_000_000);

async fn open(db: Database) -> Arc<dyn PaymentStore> {
    pay402_server::x402::store::open(&db).await.unwrap()
}

type Stores = Pair<dyn PaymentStore>;

crate::conformance!(open;
    a_reservation_moves_through_every_state,
    only_the_owner_moves_a_record_and_only_from_its_state,
    payment_identifiers_are_bound_to_one_payment,
    renew_is_a_check_and_set_on_the_owner,
    released_records_are_pruned_and_others_kept,
    records_are_listed_by_state_oldest_first,
    concurrent_reservations_of_one_payment_have_one_owner,
    concurrent_takeovers_of_a_pending_payment_have_one_owner,
    concurrent_claims_of_one_payment_id_have_one_owner,
);
crate::conformance!(persistent open;
    records_survive_reopening,
);

fn key(nonce: u32) -> NonceKey {
    NonceKey::new(NETWORK, ASSET, "0xb0b", &format!("0x{nonce:x}"))
}

fn claim(nonce: u32, fingerprint: u8) -> Claim {
    let mut c = Claim::new(
        key(nonce),
        [fingerprint; 32],
        "{\"x402Version\":2}",
        T.saturating_add_secs(60),
    );
    c.payer = "0xb0b".into();
    c.network = NETWORK.into();
    c.amount = "10000".into();
    c
}

fn response(body: &'static str) -> CachedResponse {
    CachedResponse {
        status: 200,
        content_type: Some("text/plain".into()),
        body: Bytes::from_static(body.as_bytes()),
    }
}

async fn acquire(
    store: &Arc<dyn PaymentStore>,
    c: &Claim,
    now: UnixTime,
) -> pay402_server::x402::store::Acquired {
    match store.reserve(c, now).await.unwrap() {
        Reservation::Acquired(a) => a,
        other => panic!("expected to acquire, got {other:?}"),
    }
}

async fn a_reservation_moves_through_every_state(s: Stores) {
    let c = claim(1, 1);
    let first = acquire(&s.a, &c, T).await;
    assert_eq!(first.attempt, c.attempt);
    assert!(first.resumed.is_none(), "a new record");
    let rec = s.b.get(&c.key).await.unwrap().unwrap();
    assert_eq!(rec.state, PaymentState::Reserved);
    assert_eq!(
        (rec.payer.as_str(), rec.amount.as_str()),
        ("0xb0b", "10000")
    );
    assert_eq!(rec.request, "{\"x402Version\":2}");
    assert_eq!(
        (rec.created_at, rec.lease_until),
        (T, T.saturating_add_secs(60))
    );
    // Held: the same payment again is in progress, on either handle.
    assert_eq!(
        s.b.reserve(&c.retry(), T).await.unwrap(),
        Reservation::InProgress
    );

    // Released: nothing moved, the same payment may come back.
    assert!(s.a.release(&c.key, &first.attempt, T).await.unwrap());
    let again = acquire(&s.b, &c.retry(), T).await;
    let resumed = again.resumed.clone().unwrap();
    assert_eq!(resumed.from, PaymentState::Released);
    assert!(!resumed.may_have_settled());

    // Pending with the handler's response: the next attempt resumes it.
    let kept = response("served once");
    assert!(
        s.b.mark_pending(&c.key, &again.attempt, Some("0xfeed"), Some(&kept), T)
            .await
            .unwrap()
    );
    assert_eq!(
        s.a.get(&c.key).await.unwrap().unwrap().state,
        PaymentState::Pending
    );
    let third = acquire(&s.a, &c.retry(), T).await;
    let resumed = third.resumed.unwrap();
    assert_eq!(resumed.from, PaymentState::Pending);
    assert_eq!(resumed.transaction.as_deref(), Some("0xfeed"));
    assert_eq!(resumed.response, Some(kept.clone()));
    assert!(resumed.may_have_settled());
    // Pending again without new values keeps the old ones.
    assert!(
        s.a.mark_pending(&c.key, &third.attempt, None, None, T)
            .await
            .unwrap()
    );
    let fourth = acquire(&s.b, &c.retry(), T).await;
    let r = fourth.resumed.unwrap();
    assert_eq!(
        (r.transaction.as_deref(), r.response),
        (Some("0xfeed"), Some(kept))
    );

    // Settled: the nonce is spent.
    let later = T.saturating_add_secs(5);
    assert!(
        s.b.mark_settled(
            &c.key,
            &fourth.attempt,
            "0xfeed",
            "eyJzdWNjZXNzIjp0cnVlfQ",
            None,
            later
        )
        .await
        .unwrap()
    );
    assert_eq!(
        s.a.reserve(&c.retry(), later).await.unwrap(),
        Reservation::Spent {
            cached: None,
            payment_response: Some("eyJzdWNjZXNzIjp0cnVlfQ".into())
        }
    );
    // A response attached after settling (settle-before) is kept.
    let attached = response("after settle");
    assert!(
        s.a.attach_response(&c.key, &fourth.attempt, &attached, later)
            .await
            .unwrap()
    );
    let rec = s.a.get(&c.key).await.unwrap().unwrap();
    assert_eq!(rec.state, PaymentState::Settled);
    assert_eq!(rec.transaction.as_deref(), Some("0xfeed"));
    assert_eq!(rec.response, Some(attached));
    assert_eq!((rec.created_at, rec.updated_at), (T, later));

    // Another authorization under the same nonce key: refused.
    assert_eq!(
        s.b.reserve(&claim(1, 2), later).await.unwrap(),
        Reservation::NonceConflict
    );
    // An expired lease counts as pending.
    let short = Claim {
        lease_until: T,
        ..claim(2, 3)
    };
    acquire(&s.a, &short, T).await;
    assert_eq!(
        s.b.reserve(&short.retry(), T).await.unwrap(),
        Reservation::InProgress
    );
    let taken = acquire(&s.b, &short.retry(), T.saturating_add_secs(1)).await;
    assert_eq!(taken.resumed.unwrap().from, PaymentState::Reserved);
}

async fn only_the_owner_moves_a_record_and_only_from_its_state(s: Stores) {
    let c = claim(3, 1);
    let owner = acquire(&s.a, &c, T).await;
    let stranger = c.retry().attempt;
    let r = response("x");
    assert!(!s.b.release(&c.key, &stranger, T).await.unwrap());
    assert!(
        !s.b.mark_pending(&c.key, &stranger, None, None, T)
            .await
            .unwrap()
    );
    assert!(
        !s.b.mark_settled(&c.key, &stranger, "0x1", "e30", None, T)
            .await
            .unwrap()
    );
    assert!(
        !s.b.renew(&c.key, &stranger, T.saturating_add_secs(90), T)
            .await
            .unwrap()
    );
    // Attaching needs a settled record.
    assert!(
        !s.a.attach_response(&c.key, &owner.attempt, &r, T)
            .await
            .unwrap()
    );
    // Unknown keys: nothing to move.
    assert!(!s.a.release(&key(99), &owner.attempt, T).await.unwrap());
    assert!(s.a.get(&key(99)).await.unwrap().is_none());

    // After a takeover the displaced attempt has lost it.
    assert!(
        s.a.mark_pending(&c.key, &owner.attempt, None, None, T)
            .await
            .unwrap()
    );
    let second = acquire(&s.b, &c.retry(), T).await;
    assert!(!s.a.release(&c.key, &owner.attempt, T).await.unwrap());
    assert!(
        !s.a.mark_settled(&c.key, &owner.attempt, "0x1", "e30", None, T)
            .await
            .unwrap()
    );
    // Settled is final: no release, no pending.
    assert!(
        s.b.mark_settled(&c.key, &second.attempt, "0x1", "e30", None, T)
            .await
            .unwrap()
    );
    assert!(!s.b.release(&c.key, &second.attempt, T).await.unwrap());
    assert!(
        !s.b.mark_pending(&c.key, &second.attempt, None, None, T)
            .await
            .unwrap()
    );
    assert!(
        !s.b.renew(&c.key, &second.attempt, T.saturating_add_secs(9), T)
            .await
            .unwrap()
    );
    assert_eq!(
        s.a.get(&c.key).await.unwrap().unwrap().state,
        PaymentState::Settled
    );
}

async fn payment_identifiers_are_bound_to_one_payment(s: Stores) {
    let id = Some("pay_0123456789abcdef".to_owned());
    let c = claim(4, 4).with_payment_id(id.clone());
    let a = acquire(&s.a, &c, T).await;
    // The same id with another payment: conflict.
    assert_eq!(
        s.b.reserve(&claim(5, 5).with_payment_id(id.clone()), T)
            .await
            .unwrap(),
        Reservation::IdConflict
    );
    // The same key and id with another authorization: an id conflict too.
    assert_eq!(
        s.b.reserve(&claim(4, 6).with_payment_id(id.clone()), T)
            .await
            .unwrap(),
        Reservation::IdConflict
    );
    let kept = response("for the same id");
    assert!(
        s.a.mark_settled(&c.key, &a.attempt, "0x2", "e30", Some(&kept), T)
            .await
            .unwrap()
    );
    // Same id and payment: the kept response is served again.
    assert_eq!(
        s.b.reserve(&c.retry(), T).await.unwrap(),
        Reservation::Spent {
            cached: Some(kept),
            payment_response: Some("e30".into())
        }
    );
    // Same payment without the id: spent, but no cached response.
    assert_eq!(
        s.b.reserve(&claim(4, 4), T).await.unwrap(),
        Reservation::Spent {
            cached: None,
            payment_response: Some("e30".into())
        }
    );
    // A record reserved without an id takes one on when it is resumed.
    let plain = claim(6, 6);
    let p = acquire(&s.a, &plain, T).await;
    assert!(s.a.release(&plain.key, &p.attempt, T).await.unwrap());
    let other_id = Some("pay_fedcba9876543210".to_owned());
    acquire(&s.b, &plain.retry().with_payment_id(other_id.clone()), T).await;
    assert_eq!(
        s.a.get(&plain.key).await.unwrap().unwrap().payment_id,
        other_id
    );
    // ...but not one that belongs to another record.
    let q = claim(7, 7);
    let qa = acquire(&s.a, &q, T).await;
    assert!(s.a.release(&q.key, &qa.attempt, T).await.unwrap());
    assert_eq!(
        s.b.reserve(&q.retry().with_payment_id(other_id), T)
            .await
            .unwrap(),
        Reservation::IdConflict
    );
}

async fn renew_is_a_check_and_set_on_the_owner(s: Stores) {
    let c = Claim {
        lease_until: T.saturating_add_secs(1),
        ..claim(8, 8)
    };
    let first = acquire(&s.a, &c, T).await;
    // Renewed: still held 10 s later.
    assert!(
        s.b.renew(&c.key, &first.attempt, T.saturating_add_secs(20), T)
            .await
            .unwrap()
    );
    let later = T.saturating_add_secs(10);
    assert_eq!(
        s.a.reserve(&c.retry(), later).await.unwrap(),
        Reservation::InProgress
    );
    // Not renewed: taken over once the lease ran out...
    let much_later = T.saturating_add_secs(30);
    let second = acquire(&s.b, &c.retry(), much_later).await;
    // ...and the displaced attempt can neither renew nor settle.
    assert!(
        !s.a.renew(
            &c.key,
            &first.attempt,
            much_later.saturating_add_secs(5),
            much_later
        )
        .await
        .unwrap()
    );
    assert!(
        !s.a.mark_settled(&c.key, &first.attempt, "0x1", "e30", None, much_later)
            .await
            .unwrap()
    );
    assert!(
        s.a.renew(
            &c.key,
            &second.attempt,
            much_later.saturating_add_secs(5),
            much_later
        )
        .await
        .unwrap()
    );
    // Renewal never shortens a lease.
    assert!(
        s.b.renew(&c.key, &second.attempt, T, much_later)
            .await
            .unwrap()
    );
    let r = s.a.get(&c.key).await.unwrap().unwrap();
    assert_eq!(r.lease_until, much_later.saturating_add_secs(5));
}

async fn released_records_are_pruned_and_others_kept(s: Stores) {
    let mut released = Vec::new();
    for (i, id) in [(10u32, None), (11, Some("pay_0123456789abcdef"))] {
        let c = claim(i, i as u8).with_payment_id(id.map(str::to_owned));
        let a = acquire(&s.a, &c, T).await;
        assert!(s.a.release(&c.key, &a.attempt, T).await.unwrap());
        released.push(c);
    }
    let settled = claim(12, 12);
    let a = acquire(&s.a, &settled, T).await;
    assert!(
        s.a.mark_settled(&settled.key, &a.attempt, "0x1", "e30", None, T)
            .await
            .unwrap()
    );
    let pending = claim(13, 13);
    let a = acquire(&s.b, &pending, T).await;
    assert!(
        s.b.mark_pending(&pending.key, &a.attempt, None, None, T)
            .await
            .unwrap()
    );
    let reserved = claim(14, 14);
    acquire(&s.b, &reserved, T).await;

    // Not old enough yet.
    assert_eq!(s.a.prune_released(T, 100).await.unwrap(), 0);
    // Old enough: both released records go, in batches.
    let later = T.saturating_add_secs(1);
    assert_eq!(s.a.prune_released(later, 1).await.unwrap(), 1);
    assert_eq!(s.b.prune_released(later, 100).await.unwrap(), 1);
    assert_eq!(s.b.prune_released(later, 100).await.unwrap(), 0);
    for c in &released {
        assert!(s.a.get(&c.key).await.unwrap().is_none());
    }
    for c in [&settled, &pending, &reserved] {
        assert!(s.b.get(&c.key).await.unwrap().is_some());
    }
    // A pruned payment (nothing moved) may be presented again, and its
    // payment-identifier is free again.
    assert!(matches!(
        s.b.reserve(&released[1].retry(), later).await.unwrap(),
        Reservation::Acquired(_)
    ));
}

async fn records_are_listed_by_state_oldest_first(s: Stores) {
    for (i, at) in [(20u32, 30u64), (21, 10), (22, 20)] {
        let c = claim(i, i as u8);
        let a = acquire(&s.a, &c, T.saturating_add_secs(at)).await;
        assert!(
            s.a.mark_pending(
                &c.key,
                &a.attempt,
                Some("0xabc"),
                None,
                T.saturating_add_secs(at)
            )
            .await
            .unwrap()
        );
    }
    acquire(&s.b, &claim(23, 23), T).await;
    let pending = s.b.list(PaymentState::Pending, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
        vec![key(21), key(22), key(20)]
    );
    assert!(
        pending
            .iter()
            .all(|r| r.transaction.as_deref() == Some("0xabc"))
    );
    assert_eq!(s.a.list(PaymentState::Pending, 2).await.unwrap().len(), 2);
    assert_eq!(s.a.list(PaymentState::Reserved, 10).await.unwrap().len(), 1);
    assert!(
        s.a.list(PaymentState::Settled, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_reservations_of_one_payment_have_one_owner(s: Stores) {
    let c = claim(30, 30).with_payment_id(Some("pay_0123456789abcdef".into()));
    let tasks = (0..40)
        .map(|i| {
            let store = s.pick(i);
            let c = c.retry();
            tokio::spawn(async move { store.reserve(&c, T).await.unwrap() })
        })
        .collect();
    let mut owners = 0;
    for r in join_all(tasks).await {
        match r {
            Reservation::Acquired(a) => {
                assert!(a.resumed.is_none());
                owners += 1;
            }
            Reservation::InProgress => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(owners, 1, "exactly one owner");
}

async fn concurrent_takeovers_of_a_pending_payment_have_one_owner(s: Stores) {
    let c = claim(31, 31);
    let a = acquire(&s.a, &c, T).await;
    assert!(
        s.a.mark_pending(&c.key, &a.attempt, Some("0x1"), None, T)
            .await
            .unwrap()
    );
    let tasks = (0..24)
        .map(|i| {
            let store = s.pick(i);
            let c = c.retry();
            tokio::spawn(async move { store.reserve(&c, T).await.unwrap() })
        })
        .collect();
    let mut owners = Vec::new();
    for r in join_all(tasks).await {
        match r {
            Reservation::Acquired(a) => owners.push(a),
            Reservation::InProgress => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(owners.len(), 1, "exactly one resumes it");
    assert_eq!(
        owners[0].resumed.as_ref().unwrap().from,
        PaymentState::Pending
    );
    // And that one owns it: it can settle.
    assert!(
        s.b.mark_settled(&c.key, &owners[0].attempt, "0x1", "e30", None, T)
            .await
            .unwrap()
    );
}

async fn concurrent_claims_of_one_payment_id_have_one_owner(s: Stores) {
    let id = Some("pay_aaaaaaaaaaaaaaaa".to_owned());
    let tasks = (0..24u32)
        .map(|i| {
            let store = s.pick(i as usize);
            let c = claim(100 + i, 100u8.wrapping_add(i as u8)).with_payment_id(id.clone());
            tokio::spawn(async move { store.reserve(&c, T).await.unwrap() })
        })
        .collect();
    let mut owners = 0;
    for r in join_all(tasks).await {
        match r {
            Reservation::Acquired(_) => owners += 1,
            Reservation::IdConflict => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(owners, 1, "one payment holds the id");
}

async fn records_survive_reopening(s: Stores) {
    let c = claim(40, 40).with_payment_id(Some("pay_0123456789abcdef".into()));
    let a = acquire(&s.a, &c, T).await;
    let kept = response("kept");
    assert!(
        s.a.mark_pending(&c.key, &a.attempt, Some("0x9"), Some(&kept), T)
            .await
            .unwrap()
    );
    let reopened = open(s.fresh.open().await).await;
    let rec = reopened.get(&c.key).await.unwrap().unwrap();
    assert_eq!(rec.state, PaymentState::Pending);
    assert_eq!(rec.response, Some(kept));
    assert_eq!(rec.payment_id.as_deref(), Some("pay_0123456789abcdef"));
    let b = acquire(&reopened, &c.retry(), T).await;
    assert_eq!(b.resumed.unwrap().transaction.as_deref(), Some("0x9"));
}
