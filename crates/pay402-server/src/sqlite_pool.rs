//! The SQLite pools every store opens: a database file in WAL mode whose
//! writers wait for each other (the busy timeout is the
//! [`DatabaseOptions::statement_timeout`], 10 s by default), or a private
//! in-memory database; and the idempotent schema step of `from_pool`.
//!
//! Database files are created readable and writable by their owner only
//! (mode 0600 on Unix); SQLite gives the `-wal` and `-shm` files it creates
//! beside them the database file's permissions.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::path::Path;
use std::str::FromStr;

use crate::database::DatabaseOptions;

/// Opens (creating if needed, owner-only) the database file at `path`.
pub(crate) async fn file(path: impl AsRef<Path>) -> Result<SqlitePool, sqlx::Error> {
    file_with(path.as_ref(), &DatabaseOptions::default()).await
}

/// [`file`] with the pool size (default 4), the busy timeout (the
/// statement timeout) and the acquire timeout of `options`.
pub(crate) async fn file_with(
    path: &Path,
    options: &DatabaseOptions,
) -> Result<SqlitePool, sqlx::Error> {
    create_owner_only(path).map_err(sqlx::Error::Io)?;
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(options.statement_timeout);
    SqlitePoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(4).max(1))
        .acquire_timeout(options.acquire_timeout.max(options.statement_timeout))
        .connect_with(opts)
        .await
}

/// Creates `path` empty with mode 0600 if it does not exist (an empty file is
/// a valid empty SQLite database). An existing file keeps its permissions.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A private in-memory database, on a single connection that never closes:
/// every connection to `:memory:` is a database of its own.
pub(crate) async fn memory() -> Result<SqlitePool, sqlx::Error> {
    let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(opts)
        .await
}

/// Runs `schema` (`CREATE … IF NOT EXISTS` statements) in order.
pub(crate) async fn create(pool: &SqlitePool, schema: &[&str]) -> Result<(), sqlx::Error> {
    for stmt in schema {
        sqlx::query(stmt).execute(pool).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_pools_are_private_and_files_persist() {
        let schema = ["CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL)"];
        let a = memory().await.unwrap();
        create(&a, &schema).await.unwrap();
        create(&a, &schema).await.unwrap(); // idempotent
        sqlx::query("INSERT INTO t (v) VALUES (1)")
            .execute(&a)
            .await
            .unwrap();
        let b = memory().await.unwrap();
        assert!(sqlx::query("SELECT v FROM t").fetch_all(&b).await.is_err());

        let path = std::env::temp_dir().join(format!(
            "pay402-sqlite-pool-{}-{:?}.sqlite",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let f = file(&path).await.unwrap();
        create(&f, &schema).await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (7)")
            .execute(&f)
            .await
            .unwrap();
        f.close().await;
        let again = file(&path).await.unwrap();
        let (v,): (i64,) = sqlx::query_as("SELECT v FROM t")
            .fetch_one(&again)
            .await
            .unwrap();
        assert_eq!(v, 7);
        again.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "pay402-sqlite-mode-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.sqlite");
        let pool = file(&path).await.unwrap();
        create(
            &pool,
            &["CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL)"],
        )
        .await
        .unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (1)")
            .execute(&pool)
            .await
            .unwrap();
        // The WAL and shared-memory files exist while a connection is open.
        for suffix in ["", "-wal", "-shm"] {
            let p = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{p} has mode {mode:o}");
        }
        pool.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
