use super::*;

fn record(id: &str, key: &RequestKey, created_ms: i64) -> JournalRecord {
    JournalRecord {
        id: id.to_owned(),
        created_ms,
        updated_ms: created_ms,
        key: key.clone(),
        scope: key.origin.clone(),
        rail: Rail::L402,
        offer: "{}".into(),
        amount: "21000 msat".into(),
        cost: Some("21 sat".into()),
        counted: true,
        state: EntryState::Intent,
        proof: None,
        proof_id: None,
        status: None,
        detail: None,
    }
}

async fn exercise(store: &dyn JournalStore) {
    let key = RequestKey::new("http://h:1", "POST", "/a?b=1", b"body");
    let other = RequestKey::new("http://h:1", "POST", "/a?b=1", b"other body");
    assert!(store.open_for(&key).await.unwrap().is_none());
    store.insert(&record("e1", &key, 1_000)).await.unwrap();
    assert!(
        store.insert(&record("e1", &key, 1_000)).await.is_err(),
        "ids are unique"
    );
    store.insert(&record("e2", &other, 2_000)).await.unwrap();
    assert_eq!(store.open_for(&key).await.unwrap().unwrap().id, "e1");
    assert_eq!(
        store
            .list(&Query::default().open_only())
            .await
            .unwrap()
            .len(),
        2
    );

    // Steps keep what they do not change.
    store
        .update(
            "e1",
            &Step::to(EntryState::Paid).proof("pre".into(), "hash".into()),
        )
        .await
        .unwrap();
    store
        .update("e1", &Step::to(EntryState::Presented))
        .await
        .unwrap();
    let r = store.get("e1").await.unwrap().unwrap();
    assert_eq!(r.state, EntryState::Presented);
    assert_eq!(r.proof.as_deref(), Some("pre"));
    assert_eq!(r.proof_id.as_deref(), Some("hash"));
    assert!(!format!("{r:?}").contains("pre\""), "Debug hides the proof");
    assert_eq!(store.open_for(&key).await.unwrap().unwrap().id, "e1");
    store
        .update(
            "e1",
            &Step::to(EntryState::Served).status(200).detail("tx 0xab"),
        )
        .await
        .unwrap();
    assert!(store.open_for(&key).await.unwrap().is_none());
    let r = store.get("e1").await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.detail.as_deref()),
        (Some(200), Some("tx 0xab"))
    );
    assert!(matches!(
        store.update("nope", &Step::to(EntryState::Paid)).await,
        Err(JournalError::NotFound(_))
    ));

    // Listing: newest first, filters.
    store
        .update("e2", &Step::to(EntryState::Failed).counted(false))
        .await
        .unwrap();
    let all = store.list(&Query::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["e2", "e1"]
    );
    assert_eq!(
        store
            .list(&Query::default().counted_only())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .list(&Query::default().since_ms(1_500))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .list(&Query::default().origin("http://x"))
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store.list(&Query::default().limit(1)).await.unwrap().len(),
        1
    );
    assert!(
        store
            .list(&Query::default().open_only())
            .await
            .unwrap()
            .is_empty()
    );

    // Tokens by origin and scope, one per rail.
    let t1 = StoredToken::new(
        "http://h:1",
        "http://h:1",
        Rail::L402,
        "L402 a:1".into(),
        "e1",
        None,
    );
    let t2 = StoredToken::new(
        "http://h:1",
        "http://h:1",
        Rail::L402,
        "L402 b:2".into(),
        "e3",
        Some(9),
    );
    store.put_token(&t1).await.unwrap();
    store.put_token(&t2).await.unwrap();
    let got = store.tokens("http://h:1", "http://h:1").await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].credential, "L402 b:2");
    assert_eq!(got[0].expires_ms, Some(9));
    store
        .remove_token("http://h:1", "http://h:1", Rail::L402, "L402 a:1")
        .await
        .unwrap();
    assert_eq!(
        store
            .tokens("http://h:1", "http://h:1")
            .await
            .unwrap()
            .len(),
        1,
        "another credential stays"
    );
    store
        .remove_token("http://h:1", "http://h:1", Rail::L402, "L402 b:2")
        .await
        .unwrap();
    assert!(
        store
            .tokens("http://h:1", "http://h:1")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn memory_journal() {
    exercise(&MemoryJournal::new()).await;
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "pay402-journal-{name}-{}-{}",
        std::process::id(),
        new_id()
    ))
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_journal_persists_and_is_owner_only() {
    let dir = temp_path("sqlite");
    let path = dir.join("nested").join("journal.sqlite");
    let store = SqliteJournal::open(&path).await.unwrap();
    exercise(&store).await;
    drop(store);
    let again = Journal::sqlite(&path).await.unwrap();
    let r = again.entry("e1").await.unwrap().unwrap();
    assert_eq!(r.state, EntryState::Served);
    assert_eq!(again.payments(&Query::default()).await.unwrap().len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn abandon_closes_open_entries_only() {
    let j = Journal::memory();
    let key = RequestKey::new("http://h", "GET", "/", b"");
    j.store().insert(&record("e", &key, 1)).await.unwrap();
    j.abandon("e").await.unwrap();
    let r = j.entry("e").await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.detail.as_deref()),
        (EntryState::Failed, Some("abandoned"))
    );
    assert!(matches!(
        j.abandon("x").await,
        Err(JournalError::NotFound(_))
    ));
}

#[test]
fn default_location_order() {
    use std::ffi::OsString;
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    assert_eq!(
        default_location(env(&[("PAY402_JOURNAL", "/j.sqlite"), ("HOME", "/h")])).unwrap(),
        Some(PathBuf::from("/j.sqlite"))
    );
    assert_eq!(
        default_location(env(&[("PAY402_JOURNAL", "memory")])).unwrap(),
        None
    );
    assert_eq!(
        default_location(env(&[("XDG_DATA_HOME", "/d"), ("HOME", "/h")])).unwrap(),
        Some(PathBuf::from("/d/pay402/journal.sqlite"))
    );
    assert_eq!(
        default_location(env(&[("HOME", "/h")])).unwrap(),
        Some(PathBuf::from("/h/.local/share/pay402/journal.sqlite"))
    );
    assert!(default_location(env(&[])).is_err());
}
