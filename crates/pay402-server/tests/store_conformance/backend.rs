//! The three backends and the macro that runs one test body on each.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use pay402_server::database::{Database, DatabaseOptions};
use pay402_testkit::postgres::Postgres;

/// Where a test's state lives.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

/// A fresh database of one backend, removed (SQLite) when dropped.
pub struct Fresh {
    backend: Backend,
    url: String,
    dir: Option<PathBuf>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Fresh {
    pub fn new(backend: Backend) -> Fresh {
        match backend {
            Backend::Memory => Fresh {
                backend,
                url: "memory:".into(),
                dir: None,
            },
            Backend::Sqlite => {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "pay402-conformance-{}-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .subsec_nanos()
                ));
                std::fs::create_dir_all(&dir).unwrap();
                Fresh {
                    backend,
                    url: format!("sqlite://{}", dir.join("store.sqlite").display()),
                    dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
                let db = pg.create_database().expect("a fresh PostgreSQL database");
                Fresh {
                    backend,
                    url: db.url().to_owned(),
                    dir: None,
                }
            }
        }
    }

    /// A new pool on this database (a new "process").
    pub async fn open(&self) -> Database {
        let options = DatabaseOptions::default().max_connections(8);
        Database::open(&self.url, &options)
            .await
            .unwrap_or_else(|e| panic!("opening {:?}: {e}", self.backend))
    }
}

/// Two handles on one state, and the database they live in.
pub struct Pair<T: ?Sized> {
    pub a: Arc<T>,
    pub b: Arc<T>,
    pub fresh: Fresh,
}

impl<T: ?Sized> Pair<T> {
    /// `a` for even `i`, `b` for odd: spreads racing tasks over both.
    pub fn pick(&self, i: usize) -> Arc<T> {
        if i.is_multiple_of(2) {
            self.a.clone()
        } else {
            self.b.clone()
        }
    }
}

/// Opens a pair of stores with `open` on a fresh database of `backend`.
pub async fn pair<T, F, Fut>(backend: Backend, open: F) -> Pair<T>
where
    T: ?Sized,
    F: Fn(Database) -> Fut,
    Fut: Future<Output = Arc<T>>,
{
    let fresh = Fresh::new(backend);
    let a = open(fresh.open().await).await;
    let b = match backend {
        // One process: the same store.
        Backend::Memory => a.clone(),
        _ => open(fresh.open().await).await,
    };
    Pair { a, b, fresh }
}

/// Runs each named body (an `async fn(Pair<dyn Trait>)` in the calling
/// module) on memory, SQLite and PostgreSQL, opening stores with `$open`
/// (an `async fn(Database) -> Arc<dyn Trait>`). `persistent:` bodies run on
/// SQLite and PostgreSQL only.
#[macro_export]
macro_rules! conformance {
    ($open:ident; $($test:ident),* $(,)?) => { $(
        $crate::conformance!(@on [Memory memory, Sqlite sqlite, Postgres postgres] $open $test);
    )* };
    (persistent $open:ident; $($test:ident),* $(,)?) => { $(
        $crate::conformance!(@on [Sqlite sqlite, Postgres postgres] $open $test);
    )* };
    (@on [$($backend:ident $name:ident),*] $open:ident $test:ident) => {
        mod $test {
            use $crate::backend::{pair, Backend};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$test(pair(Backend::$backend, super::$open).await).await
                }
            )*
        }
    };
}

/// Joins spawned tasks, panicking on a panicked task.
pub async fn join_all<R: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<R>>) -> Vec<R> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}
