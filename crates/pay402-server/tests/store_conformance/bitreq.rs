//! `BitreqStore`: quotes and address indexes, on-chain replay, the
//! transfer ledger, payment channels.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{OutPoint, ScriptBuf, Txid};
use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;
use pay402_server::bitreq::store::{
    BitreqStore, ChannelRecord, ChannelState, CreditOutcome, OnChainRecord, OnChainState,
    PaymentOutcome, Quote, RedeemOutcome, Reservation, TransferOutcome, TransferRecord,
};
use pay402_server::database::Database;

use crate::backend::{Pair, join_all};

async fn open(db: Database) -> Arc<dyn BitreqStore> {
    pay402_server::bitreq::store::open(&db).await.unwrap()
}

type Stores = Pair<dyn BitreqStore>;

crate::conformance!(open;
    every_operation_and_its_refusals,
    concurrent_address_indexes_are_never_handed_out_twice,
    concurrent_onchain_reservations_redeem_a_txid_and_a_quote_once,
    concurrent_credits_with_one_reference_apply_once,
    concurrent_transfers_apply_once_and_never_overdraw,
    concurrent_channel_payments_and_redemptions_apply_once,
);
crate::conformance!(persistent open;
    the_ledger_and_channels_survive_reopening,
);

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

fn pk(k: &SecretKey) -> PublicKey {
    k.public_key(&Secp256k1::new())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A ready channel of customer `key(3)` whose deposit txid is `[d; 32]`.
async fn ready_channel(store: &Arc<dyn BitreqStore>, d: u8) -> (ChannelParams, SecretKey) {
    let customer = key(3);
    let redeem = RedeemScript::new(
        pk(&key(9)),
        pk(&customer),
        1_900_000_000,
        ExpiryEncoding::Two1Raw,
    )
    .unwrap();
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::new(Txid::from_byte_array([d; 32]), 0),
        deposit_value: Sat(111_000),
        fee: Sat(10_000),
        min_output: Sat(1_000),
    };
    let ch = ChannelRecord {
        deposit: params.deposit,
        deposit_value: params.deposit_value,
        redeem_script: redeem.to_script(),
        expiry: redeem.expiry,
        fee: params.fee,
        min_output: params.min_output,
        state: ChannelState::Ready,
        last_amount: Sat(0),
        latest_payment: None,
        close_txid: None,
        created_at: UnixTime(unix_now()),
    };
    assert!(store.insert_channel(&ch).await.unwrap());
    (params, customer)
}

async fn every_operation_and_its_refusals(s: Stores) {
    let store = &s.a;
    let now = UnixTime(unix_now());
    // Quotes and on-chain replay.
    let i0 = store.next_address_index().await.unwrap();
    let i1 = store.next_address_index().await.unwrap();
    assert_eq!(i1, i0 + 1);
    let q = Quote {
        index: i0,
        script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
        price: Sat(5_000),
        resource: "GET /r".into(),
        created_at: now,
        expires_at: UnixTime(now.0 + 10),
    };
    store.insert_quote(&q).await.unwrap();
    assert_eq!(
        store.insert_quote(&q).await,
        Err(pay402_server::store::StoreError::Duplicate)
    );
    assert_eq!(s.b.count_quotes().await.unwrap(), 1);
    assert_eq!(
        store.quote_by_script(&q.script_pubkey).await.unwrap(),
        Some(q.clone())
    );
    let rec = OnChainRecord {
        txid: Txid::from_byte_array([1; 32]),
        quote_index: Some(i0),
        amount: Sat(5_000),
        resource: "GET /r".into(),
        return_address: Some("bcrt1qxyz".into()),
        state: OnChainState::Pending,
        created_at: now,
    };
    assert_eq!(
        store.reserve_onchain(&rec).await.unwrap(),
        Reservation::Reserved
    );
    assert!(matches!(
        store.reserve_onchain(&rec).await.unwrap(),
        Reservation::TxidUsed(_)
    ));
    let other = OnChainRecord {
        txid: Txid::from_byte_array([2; 32]),
        ..rec.clone()
    };
    assert_eq!(
        store.reserve_onchain(&other).await.unwrap(),
        Reservation::QuoteTaken
    );
    assert!(store.confirm_onchain(&rec.txid).await.unwrap());
    assert!(!store.confirm_onchain(&rec.txid).await.unwrap());
    assert_eq!(
        store.onchain(&rec.txid).await.unwrap().unwrap().state,
        OnChainState::Redeemed
    );
    assert!(store.release_onchain(&rec.txid).await.unwrap());
    assert_eq!(store.purge_quotes(UnixTime(now.0 + 11)).await.unwrap(), 1);

    // Ledger.
    let alice = pk(&key(1));
    assert!(store.open_account("alice", &alice).await.unwrap());
    assert!(!store.open_account("alice", &alice).await.unwrap());
    assert_eq!(
        store.credit("nobody", Sat(1), "x").await.unwrap(),
        CreditOutcome::UnknownAccount
    );
    assert_eq!(
        store.credit("alice", Sat(100), "c1").await.unwrap(),
        CreditOutcome::Credited { balance: Sat(100) }
    );
    assert_eq!(
        store.credit("alice", Sat(200), "c1").await.unwrap(),
        CreditOutcome::ReferenceConflict
    );
    assert_eq!(
        store
            .credit("alice", Sat(2_100_000_000_000_000), "c2")
            .await
            .unwrap(),
        CreditOutcome::LimitExceeded
    );
    let t = TransferRecord {
        id: [9; 32],
        payer: "alice".into(),
        payer_key: alice,
        payee: "shop".into(),
        amount: Sat(150),
        resource: "GET /r".into(),
        created_at: now,
    };
    assert_eq!(
        store.apply_transfer(&t).await.unwrap(),
        TransferOutcome::InsufficientBalance { balance: Sat(100) }
    );
    let cheap = TransferRecord {
        amount: Sat(60),
        ..t.clone()
    };
    assert_eq!(
        store.apply_transfer(&cheap).await.unwrap(),
        TransferOutcome::Applied {
            payer_balance: Sat(40)
        }
    );
    assert_eq!(
        store.apply_transfer(&cheap).await.unwrap(),
        TransferOutcome::Replayed
    );
    let wrong_key = TransferRecord {
        id: [8; 32],
        payer_key: pk(&key(2)),
        ..cheap.clone()
    };
    assert_eq!(
        store.apply_transfer(&wrong_key).await.unwrap(),
        TransferOutcome::KeyMismatch
    );
    let nobody = TransferRecord {
        id: [7; 32],
        payer: "nobody".into(),
        ..cheap.clone()
    };
    assert_eq!(
        store.apply_transfer(&nobody).await.unwrap(),
        TransferOutcome::UnknownPayer
    );
    assert_eq!(
        store.account("shop").await.unwrap().unwrap().balance,
        Sat(60)
    );

    // Channels: CAS on the amount, tokens redeemed once and only when they pay enough.
    let customer = key(3);
    let redeem = RedeemScript::new(
        pk(&key(9)),
        pk(&customer),
        1_900_000_000,
        ExpiryEncoding::Two1Raw,
    )
    .unwrap();
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::new(Txid::from_byte_array([4; 32]), 0),
        deposit_value: Sat(111_000),
        fee: Sat(10_000),
        min_output: Sat(1_000),
    };
    let ch = ChannelRecord {
        deposit: params.deposit,
        deposit_value: params.deposit_value,
        redeem_script: redeem.to_script(),
        expiry: redeem.expiry,
        fee: params.fee,
        min_output: params.min_output,
        state: ChannelState::Confirming,
        last_amount: Sat(0),
        latest_payment: None,
        close_txid: None,
        created_at: now,
    };
    let id = ch.deposit.txid;
    assert!(store.insert_channel(&ch).await.unwrap());
    assert!(!store.insert_channel(&ch).await.unwrap());
    let h1 = params.half_signed_payment(Sat(2_000), &customer).unwrap();
    let p1 = params.verify_half_signed(&h1, Sat(0)).unwrap();
    assert_eq!(
        store.record_payment(&id, Sat(0), &p1, &h1).await.unwrap(),
        PaymentOutcome::Stale,
        "not ready yet"
    );
    assert!(
        store
            .set_channel_state(&id, ChannelState::Confirming, ChannelState::Ready)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_channel_state(&id, ChannelState::Confirming, ChannelState::Ready)
            .await
            .unwrap()
    );
    assert_eq!(
        store.record_payment(&id, Sat(0), &p1, &h1).await.unwrap(),
        PaymentOutcome::Recorded
    );
    assert_eq!(
        store
            .record_payment(&id, Sat(2_000), &p1, &h1)
            .await
            .unwrap(),
        PaymentOutcome::TokenExists
    );
    let h2 = params.half_signed_payment(Sat(2_500), &customer).unwrap();
    let p2 = params.verify_half_signed(&h2, Sat(2_000)).unwrap();
    assert_eq!(
        store.record_payment(&id, Sat(0), &p2, &h2).await.unwrap(),
        PaymentOutcome::Stale,
        "stale amount"
    );
    assert_eq!(
        store
            .record_payment(&id, Sat(2_000), &p2, &h2)
            .await
            .unwrap(),
        PaymentOutcome::Recorded
    );
    let got = store.channel(&id).await.unwrap().unwrap();
    assert_eq!(
        (got.last_amount, got.latest_payment.as_ref()),
        (Sat(2_500), Some(&h2))
    );
    assert_eq!(
        store.redeem_token(&p2.token, Sat(1_000)).await.unwrap(),
        RedeemOutcome::Underpaid {
            increment: Sat(500)
        }
    );
    assert_eq!(
        store.redeem_token(&p2.token, Sat(500)).await.unwrap(),
        RedeemOutcome::Redeemed {
            increment: Sat(500),
            deposit_txid: id
        }
    );
    assert_eq!(
        store.redeem_token(&p2.token, Sat(500)).await.unwrap(),
        RedeemOutcome::AlreadyRedeemed
    );
    assert_eq!(
        store
            .redeem_token(&Txid::from_byte_array([0xee; 32]), Sat(1))
            .await
            .unwrap(),
        RedeemOutcome::Unknown
    );
    let close = Txid::from_byte_array([0xcc; 32]);
    assert!(
        !store
            .begin_close(&id, ChannelState::Ready, Sat(2_000), &close)
            .await
            .unwrap(),
        "stale amount"
    );
    assert!(
        store
            .begin_close(&id, ChannelState::Ready, Sat(2_500), &close)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .channels_in(&[ChannelState::Closing])
            .await
            .unwrap()
            .len(),
        1
    );
    // A token stays redeemable while closing.
    assert!(matches!(
        store.redeem_token(&p1.token, Sat(2_000)).await.unwrap(),
        RedeemOutcome::Redeemed { .. }
    ));
    assert!(store.abort_close(&id, &close).await.unwrap());
    assert!(
        store
            .set_channel_state(&id, ChannelState::Ready, ChannelState::Closed)
            .await
            .unwrap()
    );
    assert_eq!(
        store.redeem_token(&p1.token, Sat(1)).await.unwrap(),
        RedeemOutcome::AlreadyRedeemed
    );
    let h3 = params.half_signed_payment(Sat(3_000), &customer).unwrap();
    let p3 = params.verify_half_signed(&h3, Sat(2_500)).unwrap();
    assert_eq!(
        store
            .record_payment(&id, Sat(2_500), &p3, &h3)
            .await
            .unwrap(),
        PaymentOutcome::Stale,
        "closed"
    );
}

async fn concurrent_address_indexes_are_never_handed_out_twice(s: Stores) {
    let tasks = (0..48)
        .map(|i| {
            let store = s.pick(i);
            tokio::spawn(async move { store.next_address_index().await.unwrap() })
        })
        .collect();
    let got = join_all(tasks).await;
    let unique: HashSet<u32> = got.iter().copied().collect();
    assert_eq!(unique.len(), 48, "{got:?}");
    assert_eq!(unique, (0..48).collect(), "no gaps on a fresh store");
}

async fn concurrent_onchain_reservations_redeem_a_txid_and_a_quote_once(s: Stores) {
    let rec = |txid: u8| OnChainRecord {
        txid: Txid::from_byte_array([txid; 32]),
        quote_index: Some(7),
        amount: Sat(5_000),
        resource: "GET /r".into(),
        return_address: None,
        state: OnChainState::Pending,
        created_at: UnixTime(unix_now()),
    };
    // The same transaction, and other transactions for the same quote.
    let tasks = (0..24u8)
        .map(|i| {
            let store = s.pick(usize::from(i));
            let r = if i % 3 == 0 { rec(1) } else { rec(10 + i) };
            tokio::spawn(async move { store.reserve_onchain(&r).await.unwrap() })
        })
        .collect();
    let mut reserved = 0;
    for r in join_all(tasks).await {
        match r {
            Reservation::Reserved => reserved += 1,
            Reservation::TxidUsed(existing) => assert_eq!(existing.txid, rec(1).txid),
            Reservation::QuoteTaken => {}
        }
    }
    assert_eq!(reserved, 1, "one transaction pays the quote");
    // Confirming is a compare-and-swap too.
    let owner = if s.a.onchain(&rec(1).txid).await.unwrap().is_some() {
        rec(1).txid
    } else {
        let mut found = None;
        for i in 0..24u8 {
            if s.a.onchain(&rec(10 + i).txid).await.unwrap().is_some() {
                found = Some(rec(10 + i).txid);
            }
        }
        found.unwrap()
    };
    let tasks = (0..8)
        .map(|i| {
            let store = s.pick(i);
            tokio::spawn(async move { store.confirm_onchain(&owner).await.unwrap() })
        })
        .collect();
    assert_eq!(join_all(tasks).await.into_iter().filter(|c| *c).count(), 1);
}

async fn concurrent_credits_with_one_reference_apply_once(s: Stores) {
    assert!(s.a.open_account("alice", &pk(&key(1))).await.unwrap());
    let tasks = (0..16)
        .map(|i| {
            let store = s.pick(i);
            tokio::spawn(async move { store.credit("alice", Sat(700), "deposit-1").await.unwrap() })
        })
        .collect();
    let mut credited = 0;
    for r in join_all(tasks).await {
        match r {
            CreditOutcome::Credited { balance } => {
                assert_eq!(balance, Sat(700));
                credited += 1;
            }
            CreditOutcome::AlreadyApplied { balance } => assert_eq!(balance, Sat(700)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(credited, 1);
    assert_eq!(
        s.b.account("alice").await.unwrap().unwrap().balance,
        Sat(700)
    );
}

async fn concurrent_transfers_apply_once_and_never_overdraw(s: Stores) {
    let alice = pk(&key(1));
    assert!(s.a.open_account("alice", &alice).await.unwrap());
    assert_eq!(
        s.a.credit("alice", Sat(1_000), "c").await.unwrap(),
        CreditOutcome::Credited {
            balance: Sat(1_000)
        }
    );
    let transfer = |id: u8| TransferRecord {
        id: [id; 32],
        payer: "alice".into(),
        payer_key: alice,
        payee: "shop".into(),
        amount: Sat(150),
        resource: "GET /r".into(),
        created_at: UnixTime(unix_now()),
    };
    // One transfer presented 16 times at once: applied once.
    let tasks = (0..16)
        .map(|i| {
            let store = s.pick(i);
            let t = transfer(1);
            tokio::spawn(async move { store.apply_transfer(&t).await.unwrap() })
        })
        .collect();
    let results = join_all(tasks).await;
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, TransferOutcome::Applied { .. }))
            .count(),
        1
    );
    assert!(results.iter().all(|r| matches!(
        r,
        TransferOutcome::Applied { .. } | TransferOutcome::Replayed
    )));
    // 10 different transfers at once against 850 left: 5 fit, none overdraws.
    let tasks = (0..10u8)
        .map(|i| {
            let store = s.pick(usize::from(i));
            let t = transfer(10 + i);
            tokio::spawn(async move { store.apply_transfer(&t).await.unwrap() })
        })
        .collect();
    let applied = join_all(tasks)
        .await
        .into_iter()
        .filter(|r| matches!(r, TransferOutcome::Applied { .. }))
        .count();
    assert_eq!(applied, 5);
    assert_eq!(
        s.b.account("alice").await.unwrap().unwrap().balance,
        Sat(100)
    );
    assert_eq!(
        s.a.account("shop").await.unwrap().unwrap().balance,
        Sat(900)
    );
}

async fn concurrent_channel_payments_and_redemptions_apply_once(s: Stores) {
    let (params, customer) = ready_channel(&s.a, 4).await;
    let id = params.deposit.txid;
    // Racing payments from the same previous amount: one moves it forward.
    let tasks = (0..12u64)
        .map(|i| {
            let store = s.pick(i as usize);
            let h = params
                .half_signed_payment(Sat(2_000 + 100 * i), &customer)
                .unwrap();
            let p = params.verify_half_signed(&h, Sat(0)).unwrap();
            tokio::spawn(
                async move { (store.record_payment(&id, Sat(0), &p, &h).await.unwrap(), p) },
            )
        })
        .collect();
    let results = join_all(tasks).await;
    let recorded: Vec<_> = results
        .iter()
        .filter(|(o, _)| *o == PaymentOutcome::Recorded)
        .collect();
    assert_eq!(
        recorded.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(
        results
            .iter()
            .all(|(o, _)| matches!(o, PaymentOutcome::Recorded | PaymentOutcome::Stale))
    );
    let winner = recorded[0].1;
    let ch = s.b.channel(&id).await.unwrap().unwrap();
    assert_eq!(ch.last_amount, winner.amount);
    // Its token is redeemed once.
    let tasks = (0..12)
        .map(|i| {
            let store = s.pick(i);
            let token = winner.token;
            tokio::spawn(async move { store.redeem_token(&token, Sat(1_000)).await.unwrap() })
        })
        .collect();
    let results = join_all(tasks).await;
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, RedeemOutcome::Redeemed { .. }))
            .count(),
        1
    );
    assert!(results.iter().all(|r| matches!(
        r,
        RedeemOutcome::Redeemed { .. } | RedeemOutcome::AlreadyRedeemed
    )));
}

async fn the_ledger_and_channels_survive_reopening(s: Stores) {
    let i = s.a.next_address_index().await.unwrap();
    let q = Quote {
        index: i,
        script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
        price: Sat(5_000),
        resource: "GET /r".into(),
        created_at: UnixTime(1),
        expires_at: UnixTime(u64::from(u32::MAX)),
    };
    s.a.insert_quote(&q).await.unwrap();
    assert!(s.a.open_account("alice", &pk(&key(1))).await.unwrap());
    s.a.credit("alice", Sat(42), "r").await.unwrap();
    let (params, _) = ready_channel(&s.a, 5).await;
    let reopened = open(s.fresh.open().await).await;
    assert_eq!(reopened.next_address_index().await.unwrap(), i + 1);
    assert_eq!(
        reopened.quote_by_script(&q.script_pubkey).await.unwrap(),
        Some(q)
    );
    assert_eq!(
        reopened.account("alice").await.unwrap().unwrap().balance,
        Sat(42)
    );
    assert_eq!(
        reopened
            .channel(&params.deposit.txid)
            .await
            .unwrap()
            .unwrap()
            .state,
        ChannelState::Ready
    );
}
