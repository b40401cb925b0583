//! The PostgreSQL test peer: a real cluster on loopback, a database per
//! test, stop and restart on the same port with the data kept, and nothing
//! left behind once dropped.

use pay402_testkit::postgres::Postgres;

#[test]
fn shared_cluster_hands_out_separate_databases() {
    let pg = Postgres::shared().expect("PostgreSQL must start");
    let a = pg.create_database().unwrap();
    let b = pg.create_database().unwrap();
    assert_ne!(a.name(), b.name());
    assert_eq!(a.url(), pg.database_url(a.name()));
    pg.psql(
        a.name(),
        "CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7)",
    )
    .unwrap();
    assert_eq!(pg.psql(a.name(), "SELECT v FROM t").unwrap().trim(), "7");
    // The other database does not see it.
    let err = pg.psql(b.name(), "SELECT v FROM t").unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    // It is a real server, on loopback, not running as root.
    let user = pg
        .psql(
            "postgres",
            "SELECT usename FROM pg_user WHERE usesuper LIMIT 1",
        )
        .unwrap();
    assert_eq!(user.trim(), "postgres");
    let addr = pg.psql("postgres", "SELECT inet_server_addr()").unwrap();
    assert_eq!(addr.trim(), "127.0.0.1");
    let pid = pg.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    assert_ne!(uid, "0", "postgres must not run as root");
}

#[test]
fn a_cluster_stops_by_its_pid_restarts_with_its_data_and_is_removed_on_drop() {
    let pg = Postgres::start().expect("PostgreSQL must start");
    let db = pg.create_database().unwrap();
    pg.psql(
        db.name(),
        "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept')",
    )
    .unwrap();
    let pid = pg.pid().unwrap();
    let port = pg.port();
    pg.stop().unwrap();
    assert!(pg.pid().is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z")),
        "the server process is gone"
    );
    assert!(pg.psql(db.name(), "SELECT 1").is_err(), "nothing answers");
    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_ne!(pg.pid(), Some(pid));
    assert_eq!(
        pg.psql(db.name(), "SELECT v FROM t").unwrap().trim(),
        "kept"
    );
    let data = std::path::PathBuf::from(pg.psql("postgres", "SHOW data_directory").unwrap().trim());
    assert!(data.is_dir());
    let pid = pg.pid().unwrap();
    drop(pg);
    assert!(!data.exists(), "the cluster directory is removed");
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z")),
        "the server is stopped"
    );
}
