//! `MppStore`: each payment consumed once, keyed on the payment (not on the
//! challenge id alone), pruned after its challenge expired.

use std::sync::Arc;

use pay402_core::time::UnixTime;
use pay402_server::database::Database;
use pay402_server::mpp::store::{Consumption, KEEP_AFTER_EXPIRY_SECS, MppStore};

use crate::backend::{Pair, join_all};

async fn open(db: Database) -> Arc<dyn MppStore> {
    pay402_server::mpp::store::open(&db).await.unwrap()
}

type Stores = Pair<dyn MppStore>;

crate::conformance!(open;
    a_payment_is_consumed_once_across_handles,
    the_key_is_the_payment_not_the_challenge_id,
    concurrent_consumes_of_one_payment_succeed_once,
    pruning_drops_only_rows_expired_past_the_grace,
);
crate::conformance!(persistent open;
    consumed_payments_survive_reopening,
);

fn c<'a>(method: &'a str, reference: &'a str, id: &'a str, expires: u64) -> Consumption<'a> {
    Consumption {
        method,
        reference,
        challenge_id: id,
        expires_at: UnixTime(expires),
    }
}

async fn a_payment_is_consumed_once_across_handles(s: Stores) {
    let first = c("lightning", "aa", "id1", 1_000);
    assert!(s.a.consume(&first, UnixTime(10)).await.unwrap());
    assert!(
        !s.b.consume(&first, UnixTime(11)).await.unwrap(),
        "replay on the other handle"
    );
    assert!(!s.a.consume(&first, UnixTime(12)).await.unwrap());
    assert_eq!(
        s.b.consumed_by("lightning", "aa").await.unwrap().as_deref(),
        Some("id1")
    );
    assert_eq!(s.a.consumed_by("lightning", "bb").await.unwrap(), None);
}

async fn the_key_is_the_payment_not_the_challenge_id(s: Stores) {
    // One Lightning payment cannot redeem a second challenge...
    assert!(
        s.a.consume(&c("lightning", "h1", "idA", 1_000), UnixTime(0))
            .await
            .unwrap()
    );
    assert!(
        !s.b.consume(&c("lightning", "h1", "idB", 1_000), UnixTime(0))
            .await
            .unwrap()
    );
    // ...while two payers of one challenge are two payments (the id is a
    // deterministic HMAC of the offer; the EVM reference is from ‖ nonce).
    assert!(
        s.a.consume(&c("evm", "payer1nonce", "idE", 1_000), UnixTime(0))
            .await
            .unwrap()
    );
    assert!(
        s.b.consume(&c("evm", "payer2nonce", "idE", 1_000), UnixTime(0))
            .await
            .unwrap()
    );
    // The method is part of the key.
    assert!(
        s.a.consume(&c("evm", "h1", "idA", 1_000), UnixTime(0))
            .await
            .unwrap()
    );
    assert_eq!(
        s.a.consumed_by("lightning", "h1").await.unwrap().as_deref(),
        Some("idA")
    );
}

async fn concurrent_consumes_of_one_payment_succeed_once(s: Stores) {
    let tasks = (0..32)
        .map(|i| {
            let store = s.pick(i);
            tokio::spawn(async move {
                let id = format!("id{i}");
                store
                    .consume(&c("lightning", "race", &id, 1_000), UnixTime(0))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let won = join_all(tasks).await.into_iter().filter(|w| *w).count();
    assert_eq!(won, 1, "exactly one racer consumed the payment");
    assert!(
        s.b.consumed_by("lightning", "race")
            .await
            .unwrap()
            .is_some()
    );
}

async fn pruning_drops_only_rows_expired_past_the_grace(s: Stores) {
    assert!(
        s.a.consume(&c("lightning", "old", "i1", 100), UnixTime(0))
            .await
            .unwrap()
    );
    assert!(
        s.a.consume(&c("lightning", "new", "i2", 5_000), UnixTime(0))
            .await
            .unwrap()
    );
    // Within the grace after expiry: kept.
    assert_eq!(
        s.b.prune(UnixTime(100 + KEEP_AFTER_EXPIRY_SECS))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.b.prune(UnixTime(101 + KEEP_AFTER_EXPIRY_SECS))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.a.consumed_by("lightning", "old").await.unwrap(), None);
    assert!(s.a.consumed_by("lightning", "new").await.unwrap().is_some());
}

async fn consumed_payments_survive_reopening(s: Stores) {
    assert!(
        s.a.consume(&c("evm", "kept", "i", 9_999), UnixTime(0))
            .await
            .unwrap()
    );
    let reopened = open(s.fresh.open().await).await;
    assert!(
        !reopened
            .consume(&c("evm", "kept", "j", 9_999), UnixTime(1))
            .await
            .unwrap()
    );
}
