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

/// Many tasks racing on one entry id through two handles on one journal
/// (two pools where the store has them): exactly one insert wins, every
/// step lands on it, and one open entry answers for the request.
async fn race(a: Arc<dyn JournalStore>, b: Arc<dyn JournalStore>) {
    let key = RequestKey::new("http://race:1", "GET", "/r", b"");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tokio::spawn(async move { store.insert(&record("race", &key, 5_000)).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "one insert of an id");
    let steps: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store
                    .update("race", &Step::to(EntryState::Presented).status(100 + i))
                    .await
            })
        })
        .collect();
    for t in steps {
        t.await.unwrap().unwrap();
    }
    let r = b.open_for(&key).await.unwrap().unwrap();
    assert_eq!((r.id.as_str(), r.state), ("race", EntryState::Presented));
    assert!((100..116).contains(&r.status.unwrap()));
    assert_eq!(a.get("race").await.unwrap(), Some(r));
}

#[tokio::test]
async fn memory_journal() {
    exercise(&MemoryJournal::new()).await;
    let store: Arc<dyn JournalStore> = Arc::new(MemoryJournal::new());
    race(store.clone(), store).await;
}

/// The PostgreSQL journal, on a real server (`pay402-testkit`; fails when
/// it cannot start): every operation, races through two pools, and what
/// was recorded is there for a payer that opens it again, by URL.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_journal_through_two_pools_and_reopened_by_url() {
    let pg =
        pay402_testkit::postgres::Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let store = PostgresJournal::connect(db.url()).await.unwrap();
    exercise(&store).await;
    let other: Arc<dyn JournalStore> = Arc::new(PostgresJournal::connect(db.url()).await.unwrap());
    race(Arc::new(store), other).await;
    let again = Journal::open(db.url()).await.unwrap();
    assert!(again.location().starts_with("postgres://127.0.0.1:"));
    let r = again.entry("e1").await.unwrap().unwrap();
    assert_eq!(r.state, EntryState::Served);
    assert_eq!(again.payments(&Query::default()).await.unwrap().len(), 3);
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
    let other: Arc<dyn JournalStore> = Arc::new(SqliteJournal::open(&path).await.unwrap());
    race(Arc::new(store), other).await;
    let again = Journal::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let r = again.entry("e1").await.unwrap().unwrap();
    assert_eq!(r.state, EntryState::Served);
    assert_eq!(again.payments(&Query::default()).await.unwrap().len(), 3);
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
