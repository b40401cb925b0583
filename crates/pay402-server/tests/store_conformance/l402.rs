//! `RootKeyStore`: the root secret, first-use binding, revocation.

use std::sync::Arc;

use pay402_core::l402::TokenId;
use pay402_core::lightning::PaymentHash;
use pay402_server::database::Database;
use pay402_server::store::{RootKeyStore, TokenRecord};

use crate::backend::{Pair, join_all};

async fn open(db: Database) -> Arc<dyn RootKeyStore> {
    pay402_server::store::open(&db).await.unwrap()
}

type Stores = Pair<dyn RootKeyStore>;

crate::conformance!(open;
    both_handles_derive_the_same_root_keys,
    minting_writes_nothing_and_the_first_use_binds_its_hash,
    revocation_before_and_after_first_use,
    concurrent_first_uses_bind_one_hash,
    concurrent_revocations_report_a_live_token_once,
);
crate::conformance!(persistent open;
    the_secret_and_records_survive_reopening,
);

async fn both_handles_derive_the_same_root_keys(s: Stores) {
    let id = TokenId([7; 32]);
    assert_eq!(
        s.a.secret().root_key(&id).as_bytes(),
        s.b.secret().root_key(&id).as_bytes()
    );
    assert_ne!(
        s.a.secret().root_key(&id).as_bytes(),
        s.a.secret().root_key(&TokenId([8; 32])).as_bytes()
    );
}

async fn minting_writes_nothing_and_the_first_use_binds_its_hash(s: Stores) {
    let id = TokenId([1; 32]);
    assert_eq!(s.a.get(&id).await.unwrap(), None);
    let rec = s.a.record_use(id, &PaymentHash([2; 32])).await.unwrap();
    assert_eq!(
        rec,
        TokenRecord {
            payment_hash: Some(PaymentHash([2; 32])),
            revoked: false
        }
    );
    // Another hash later (on the other handle): the first stays bound.
    let again = s.b.record_use(id, &PaymentHash([3; 32])).await.unwrap();
    assert_eq!(again.payment_hash, Some(PaymentHash([2; 32])));
    assert_eq!(s.b.get(&id).await.unwrap(), Some(rec));
    assert_eq!(s.a.get(&TokenId([9; 32])).await.unwrap(), None);
}

async fn revocation_before_and_after_first_use(s: Stores) {
    // Revoking a token never used writes a record that refuses it...
    let unused = TokenId([4; 32]);
    assert!(!s.a.revoke(&unused).await.unwrap(), "was not live");
    assert_eq!(
        s.b.get(&unused).await.unwrap(),
        Some(TokenRecord {
            payment_hash: None,
            revoked: true
        })
    );
    // ...and a first use after it binds nothing.
    let rec = s.b.record_use(unused, &PaymentHash([5; 32])).await.unwrap();
    assert!(rec.revoked);
    assert_eq!(rec.payment_hash, None);

    let used = TokenId([6; 32]);
    s.a.record_use(used, &PaymentHash([7; 32])).await.unwrap();
    assert!(s.b.revoke(&used).await.unwrap(), "was live");
    assert!(!s.a.revoke(&used).await.unwrap(), "already revoked");
    assert_eq!(
        s.a.get(&used).await.unwrap(),
        Some(TokenRecord {
            payment_hash: Some(PaymentHash([7; 32])),
            revoked: true
        })
    );
}

async fn concurrent_first_uses_bind_one_hash(s: Stores) {
    let id = TokenId([0x11; 32]);
    let tasks = (0..32u8)
        .map(|i| {
            let store = s.pick(usize::from(i));
            tokio::spawn(async move { store.record_use(id, &PaymentHash([i; 32])).await })
        })
        .collect();
    let records: Vec<TokenRecord> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let bound = records[0].payment_hash;
    assert!(bound.is_some());
    assert!(
        records
            .iter()
            .all(|r| r.payment_hash == bound && !r.revoked),
        "every racer sees the one bound hash: {records:?}"
    );
    assert_eq!(s.a.get(&id).await.unwrap().unwrap().payment_hash, bound);
}

async fn concurrent_revocations_report_a_live_token_once(s: Stores) {
    let id = TokenId([0x22; 32]);
    s.a.record_use(id, &PaymentHash([1; 32])).await.unwrap();
    let tasks = (0..16)
        .map(|i| {
            let store = s.pick(i);
            tokio::spawn(async move { store.revoke(&id).await.unwrap() })
        })
        .collect();
    let live = join_all(tasks).await.into_iter().filter(|l| *l).count();
    assert_eq!(live, 1, "exactly one revoker saw it live");
    assert!(s.b.get(&id).await.unwrap().unwrap().revoked);
}

async fn the_secret_and_records_survive_reopening(s: Stores) {
    let id = TokenId([0x33; 32]);
    let key = s.a.secret().root_key(&id);
    s.a.record_use(id, &PaymentHash([1; 32])).await.unwrap();
    s.a.revoke(&TokenId([0x44; 32])).await.unwrap();
    let reopened = open(s.fresh.open().await).await;
    assert_eq!(reopened.secret().root_key(&id).as_bytes(), key.as_bytes());
    assert_eq!(
        reopened.get(&id).await.unwrap().unwrap().payment_hash,
        Some(PaymentHash([1; 32]))
    );
    assert!(
        reopened
            .get(&TokenId([0x44; 32]))
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}
