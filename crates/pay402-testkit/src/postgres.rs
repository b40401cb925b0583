//! A real PostgreSQL server for tests: Debian's `postgresql` package, one
//! private cluster per [`Postgres`] in a temporary directory, on loopback.
//!
//! [`Postgres::start`] finds the server binaries (`$PAY402_PG_BIN`, else the
//! newest `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`, else
//! `PATH`). When there are none and the process runs as root it installs
//! them with `apt-get install -y postgresql` (once, under a cross-process
//! file lock, so parallel test binaries install once); otherwise it fails
//! saying what to install.
//!
//! PostgreSQL refuses to run as root: as root, the cluster runs as the
//! `postgres` system user the package creates (or, when there is none, a
//! system user `pay402-postgres` created with `useradd`), switched to with
//! `setpriv`. The harness runs `initdb` (trust authentication, user
//! `postgres`, `fsync` off: test data only) in a fresh temporary directory
//! owned by that user, starts `postgres` on a free `127.0.0.1` port with
//! its Unix socket inside that directory, and waits for a real connection
//! (`psql -c 'SELECT 1'`).
//!
//! The server runs under a small supervisor shell that stops it (`SIGINT`,
//! fast shutdown) and deletes the directory when its stdin closes, so even
//! a test process that dies, or the process-wide cluster of
//! [`Postgres::shared`] that is never dropped, leaves nothing running.
//! Dropping a [`Postgres`] stops the server by its PID and removes the
//! directory.
//!
//! Each test should work in a database of its own: [`Postgres::create_database`].
//!
//! ```no_run
//! use pay402_testkit::postgres::Postgres;
//!
//! let cluster = Postgres::shared()?;
//! let db = cluster.create_database()?;
//! assert!(db.url().starts_with("postgres://postgres@127.0.0.1:"));
//! # Ok::<(), pay402_testkit::PeerError>(())
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::PeerError;
use crate::npm::FileLock;
use crate::process::PeerProcess;

const PEER: &str = "postgres";

/// Environment variable naming a directory holding `initdb`, `postgres`
/// and `psql`, used instead of the search described in the module docs.
pub const PG_BIN_ENV: &str = "PAY402_PG_BIN";

/// The database superuser of every cluster the harness starts (trust
/// authentication on loopback: no password).
pub const SUPERUSER: &str = "postgres";

/// The system user created (as root) when the `postgres` user is missing.
const FALLBACK_USER: &str = "pay402-postgres";

const HINT: &str = "install PostgreSQL's server (Debian/Ubuntu: `apt-get install -y postgresql`, \
     which puts initdb and postgres in /usr/lib/postgresql/<version>/bin) or set PAY402_PG_BIN \
     to a directory holding initdb, postgres and psql";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const STOP_GRACE: Duration = Duration::from_secs(15);
const PORT_ATTEMPTS: usize = 5;

/// The line the supervisor prints with the server's PID.
const PID_LINE: &str = "PAY402_POSTGRES_PID ";

/// Runs `postgres` in the background, reports its PID, and stops it when a
/// line or EOF arrives on stdin; removes the cluster directory unless that
/// line was `keep` (a restart of the same cluster).
///
/// `$1` postgres binary, `$2` data directory, `$3` port, `$4` the cluster's
/// root directory, `$5` `on` for PostgreSQL's durable defaults (`fsync`,
/// `synchronous_commit`, `full_page_writes`), `off` for test settings.
const SUPERVISOR: &str = r#"
"$1" -D "$2" -k "$2" -p "$3" -h 127.0.0.1 \
    -c fsync="$5" -c synchronous_commit="$5" -c full_page_writes="$5" \
    -c max_connections=300 -c unix_socket_permissions=0700 \
    -c log_min_messages=warning -c log_min_error_statement=panic </dev/null &
pg=$!
echo "PAY402_POSTGRES_PID $pg"
cmd=
read -r cmd || true
kill -INT "$pg" 2>/dev/null
wait "$pg"
if [ "$cmd" != keep ]; then rm -rf "$4"; fi
"#;

/// Where the PostgreSQL programs are.
#[derive(Clone, Debug)]
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
}

impl Binaries {
    fn in_dir(dir: &Path) -> Option<Binaries> {
        let b = Binaries {
            initdb: dir.join("initdb"),
            postgres: dir.join("postgres"),
            psql: dir.join("psql"),
        };
        (b.initdb.is_file() && b.postgres.is_file()).then(|| Binaries {
            psql: if b.psql.is_file() {
                b.psql.clone()
            } else {
                PathBuf::from("psql")
            },
            ..b
        })
    }

    /// Looks for the binaries without installing anything.
    fn find() -> Option<Binaries> {
        if let Some(dir) = std::env::var_os(PG_BIN_ENV).filter(|d| !d.is_empty()) {
            return Binaries::in_dir(Path::new(&dir));
        }
        // Debian: /usr/lib/postgresql/<major>/bin, newest first.
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        if let Some(found) = versions.iter().find_map(|(_, d)| Binaries::in_dir(d)) {
            return Some(found);
        }
        let bindir = Command::new("pg_config")
            .arg("--bindir")
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if let Some(found) = bindir.as_deref().and_then(Binaries::in_dir) {
            return Some(found);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).find_map(|d| Binaries::in_dir(&d))
    }

    /// Finds the binaries, installing Debian's `postgresql` when they are
    /// missing and this process is root.
    fn find_or_install() -> Result<Binaries, PeerError> {
        if let Some(found) = Binaries::find() {
            return Ok(found);
        }
        if !is_root() {
            return Err(PeerError::UnusableProgram {
                program: "initdb",
                peer: PEER,
                reason: format!(
                    "no PostgreSQL server binaries were found and this process is not root, \
                     so they cannot be installed here; {HINT}"
                ),
            });
        }
        let (dir, _lock) = install_lock()?;
        // Another process may have installed it while we waited.
        if let Some(found) = Binaries::find() {
            return Ok(found);
        }
        let log = dir.join("install.log");
        for args in [
            &["update"][..],
            &["install", "-y", "--no-install-recommends", "postgresql"][..],
        ] {
            run_logged("apt-get", args, &log, INSTALL_TIMEOUT)?;
        }
        Binaries::find().ok_or_else(|| PeerError::InstallFailed {
            peer: PEER,
            dir,
            reason: format!(
                "`apt-get install postgresql` succeeded but no initdb/postgres was found; {HINT}"
            ),
            output: tail(&log),
        })
    }
}

/// The harness's PostgreSQL directory under [`crate::peers_dir`], locked
/// against other processes installing at the same time.
fn install_lock() -> Result<(PathBuf, FileLock), PeerError> {
    let dir = crate::peers_dir().join("postgres");
    std::fs::create_dir_all(&dir)
        .map_err(|e| PeerError::io(format!("creating {}", dir.display()), e))?;
    let lock = FileLock::acquire(
        &dir.join(".pay402-install.lock"),
        INSTALL_TIMEOUT + Duration::from_secs(60),
        PEER,
    )?;
    Ok((dir, lock))
}

/// Runs `program args` with output appended to `log`; fails with the log's
/// tail unless it exits 0 within `timeout`.
fn run_logged(
    program: &'static str,
    args: &[&str],
    log: &Path,
    timeout: Duration,
) -> Result<(), PeerError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| PeerError::io(format!("opening {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| PeerError::io("duplicating the install log handle", e))?;
    let mut child = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| PeerError::MissingProgram {
            program,
            peer: PEER,
            hint: HINT,
            source,
        })?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(PeerError::InstallFailed {
                    peer: PEER,
                    dir: log.parent().map(PathBuf::from).unwrap_or_default(),
                    reason: format!("`{program} {}` exited with {status}", args.join(" ")),
                    output: tail(log),
                });
            }
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PeerError::InstallFailed {
                    peer: PEER,
                    dir: log.parent().map(PathBuf::from).unwrap_or_default(),
                    reason: format!(
                        "`{program} {}` did not finish in {timeout:?}",
                        args.join(" ")
                    ),
                    output: tail(log),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(PeerError::io(format!("waiting for {program}"), e)),
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(6000);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The unprivileged account a root process runs the cluster as.
#[derive(Clone, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id")
        .args([flag, user])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl RunAs {
    fn lookup(user: &str) -> Option<RunAs> {
        Some(RunAs {
            uid: id_of(user, "-u")?,
            gid: id_of(user, "-g")?,
        })
    }

    /// `postgres`, else `pay402-postgres` (created when missing).
    fn find_or_create() -> Result<RunAs, PeerError> {
        if let Some(found) = RunAs::lookup(SUPERUSER).or_else(|| RunAs::lookup(FALLBACK_USER)) {
            return Ok(found);
        }
        let (dir, _lock) = install_lock()?;
        if let Some(found) = RunAs::lookup(FALLBACK_USER) {
            return Ok(found);
        }
        run_logged(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                FALLBACK_USER,
            ],
            &dir.join("install.log"),
            Duration::from_secs(60),
        )?;
        RunAs::lookup(FALLBACK_USER).ok_or_else(|| PeerError::StartFailed {
            peer: PEER,
            reason: format!("`useradd {FALLBACK_USER}` succeeded but `id` cannot find the user"),
            stderr: String::new(),
        })
    }

    /// `command` run as this user (`setpriv`, which execs: the PID spawned is
    /// the program's own).
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        c
    }
}

/// A command running `program` as `run_as` (or as this process's user).
fn command_as(run_as: Option<&RunAs>, program: &Path) -> Command {
    let mut c = match run_as {
        Some(user) => user.command(program),
        None => Command::new(program),
    };
    // The cluster is configured by its arguments alone.
    for var in [
        "PGDATA",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGOPTIONS",
    ] {
        c.env_remove(var);
    }
    c.env("LC_ALL", "C");
    c
}

/// Whether `pid` is a live (not zombie) process, from `/proc`.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn free_port() -> Result<u16, PeerError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| PeerError::io("finding a free loopback port", e))
}

/// The running server: its supervisor shell and the server's own PID.
struct Running {
    supervisor: PeerProcess,
    pid: u32,
}

/// A private PostgreSQL cluster on loopback, stopped by its PID and deleted
/// when dropped (see the module docs).
///
/// ```no_run
/// use pay402_testkit::postgres::Postgres;
///
/// let pg = Postgres::start()?;
/// let db = pg.create_database()?;
/// pg.stop()?;            // the database goes away...
/// pg.restart()?;         // ...and comes back on the same port with its data
/// # let _ = db;
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub struct Postgres {
    binaries: Binaries,
    run_as: Option<RunAs>,
    root: PathBuf,
    port: u16,
    running: Mutex<Option<Running>>,
    next_db: AtomicU64,
    durable: bool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.root)
            .finish_non_exhaustive()
    }
}

/// A database of its own in a cluster, for one test.
///
/// ```no_run
/// let db = pay402_testkit::postgres::Postgres::shared()?.create_database()?;
/// println!("{} at {}", db.name(), db.url());
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    name: String,
    url: String,
}

impl Database {
    /// The database's name.
    ///
    /// ```no_run
    /// let db = pay402_testkit::postgres::Postgres::shared()?.create_database()?;
    /// assert!(db.name().starts_with("pay402_test_"));
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its connection URL: `postgres://postgres@127.0.0.1:<port>/<name>`.
    ///
    /// ```no_run
    /// let db = pay402_testkit::postgres::Postgres::shared()?.create_database()?;
    /// assert!(db.url().ends_with(db.name()));
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }
}

static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();

impl Postgres {
    /// The cluster of this test process, started on first use and shared by
    /// every test in it (each should take a database of its own with
    /// [`Postgres::create_database`]). It is never dropped: its supervisor
    /// stops it and deletes its directory when the process exits.
    ///
    /// # Errors
    ///
    /// What [`Postgres::start`] failed with (every later call reports the
    /// same failure).
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::shared()?;
    /// assert!(pg.url().contains("127.0.0.1"));
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn shared() -> Result<&'static Postgres, PeerError> {
        match SHARED.get_or_init(|| Postgres::start().map_err(|e| e.to_string())) {
            Ok(pg) => Ok(pg),
            Err(reason) => Err(PeerError::StartFailed {
                peer: PEER,
                reason: reason.clone(),
                stderr: String::new(),
            }),
        }
    }

    /// Installs PostgreSQL if needed and possible, creates a fresh cluster
    /// in a temporary directory and starts it on a free loopback port (see
    /// the module docs). Returns once a client has connected.
    ///
    /// # Errors
    ///
    /// [`PeerError::UnusableProgram`] / [`PeerError::InstallFailed`] when the
    /// binaries are missing and cannot be installed;
    /// [`PeerError::StartFailed`] (with the server's output) when `initdb` or
    /// `postgres` fails; [`PeerError::Timeout`] when no connection succeeds
    /// within 30 s.
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::start()?;
    /// assert!(pg.pid().is_some());
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn start() -> Result<Postgres, PeerError> {
        Postgres::start_with(false)
    }

    /// As [`Postgres::start`], but with PostgreSQL's durable defaults
    /// (`fsync`, `synchronous_commit` and `full_page_writes` on: every commit
    /// waits for its WAL to reach the disk), as a production server runs;
    /// for benchmarks that must not flatter a store.
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::start_durable()?;
    /// assert_eq!(pg.psql("postgres", "SHOW fsync")?.trim(), "on");
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn start_durable() -> Result<Postgres, PeerError> {
        Postgres::start_with(true)
    }

    fn start_with(durable: bool) -> Result<Postgres, PeerError> {
        let binaries = Binaries::find_or_install()?;
        let run_as = if is_root() {
            Some(RunAs::find_or_create()?)
        } else {
            None
        };
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let pg = Postgres::init(binaries.clone(), run_as.clone(), free_port()?, durable)?;
            match pg.launch() {
                Ok(()) => return Ok(pg),
                // Another process took the port between our probe and the
                // server's bind: try another one.
                Err(PeerError::StartFailed { stderr, .. })
                    if stderr.contains("could not bind")
                        || stderr.contains("Address already in use") =>
                {
                    last = Some(stderr);
                }
                Err(e) => return Err(e),
            }
        }
        Err(PeerError::StartFailed {
            peer: PEER,
            reason: format!("no free port after {PORT_ATTEMPTS} attempts"),
            stderr: last.unwrap_or_default(),
        })
    }

    /// Creates the directory (owned by the cluster's user) and runs `initdb`.
    fn init(
        binaries: Binaries,
        run_as: Option<RunAs>,
        port: u16,
        durable: bool,
    ) -> Result<Postgres, PeerError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!(
            "pay402-pg-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&root)
            .map_err(|e| PeerError::io(format!("creating {}", root.display()), e))?;
        let pg = Postgres {
            binaries,
            run_as,
            root,
            port,
            running: Mutex::new(None),
            next_db: AtomicU64::new(0),
            durable,
        };
        if let Some(user) = &pg.run_as {
            rustix::fs::chown(
                &pg.root,
                Some(rustix::fs::Uid::from_raw(user.uid)),
                Some(rustix::fs::Gid::from_raw(user.gid)),
            )
            .map_err(|e| {
                PeerError::io(
                    format!("giving {} to the postgres user", pg.root.display()),
                    e.into(),
                )
            })?;
        }
        let out = command_as(pg.run_as.as_ref(), &pg.binaries.initdb)
            .current_dir(&pg.root)
            .arg("-D")
            .arg(pg.data_dir())
            .args(["--auth=trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PeerError::MissingProgram {
                program: if pg.run_as.is_some() {
                    "setpriv"
                } else {
                    "initdb"
                },
                peer: PEER,
                hint: "setpriv is part of util-linux (Debian: `apt-get install util-linux`); \
                       initdb of PostgreSQL's server package",
                source,
            })?;
        if !out.status.success() {
            return Err(PeerError::StartFailed {
                peer: PEER,
                reason: format!("`initdb` exited with {}", out.status),
                stderr: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the server on the cluster's directory and port and waits for
    /// a connection.
    fn launch(&self) -> Result<(), PeerError> {
        let mut running = self.lock();
        if running.is_some() {
            return Ok(());
        }
        let mut command = command_as(self.run_as.as_ref(), Path::new("/bin/sh"));
        command
            .current_dir(&self.root)
            .args(["-c", SUPERVISOR, "pay402-postgres"])
            .arg(&self.binaries.postgres)
            .arg(self.data_dir())
            .arg(self.port.to_string())
            .arg(&self.root)
            .arg(if self.durable { "on" } else { "off" });
        let (mut supervisor, lines) = PeerProcess::spawn(PEER, command, &[PID_LINE])
            .map_err(|e| PeerError::io("spawning the postgres supervisor shell", e))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = match supervisor.next_line(&lines, deadline) {
            Ok(Some(line)) => line
                .strip_prefix(PID_LINE)
                .and_then(|p| p.trim().parse::<u32>().ok())
                .ok_or_else(|| PeerError::protocol("the postgres supervisor", line.clone()))?,
            Ok(None) => {
                return Err(PeerError::Timeout {
                    what: "the postgres supervisor's PID line".into(),
                    waited: START_TIMEOUT,
                    detail: supervisor.output(),
                });
            }
            Err(reason) => {
                return Err(PeerError::StartFailed {
                    peer: PEER,
                    reason,
                    stderr: supervisor.output(),
                });
            }
        };
        let mut last_error;
        loop {
            if !alive(pid) {
                // Let the supervisor finish (keeping the directory for a retry
                // decision by the caller, who drops it anyway).
                let _ = supervisor.send_line("keep");
                supervisor.finish(STOP_GRACE);
                return Err(PeerError::StartFailed {
                    peer: PEER,
                    reason: format!("postgres (pid {pid}) exited before accepting connections"),
                    stderr: supervisor.output(),
                });
            }
            match self.psql("postgres", "SELECT 1") {
                Ok(out) if out.trim() == "1" => break,
                Ok(out) => last_error = format!("unexpected answer {out:?}"),
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() > deadline {
                signal(pid, rustix::process::Signal::KILL);
                supervisor.stop();
                return Err(PeerError::Timeout {
                    what: format!("a connection to postgres on 127.0.0.1:{}", self.port),
                    waited: START_TIMEOUT,
                    detail: format!("last error: {last_error}\n{}", supervisor.output()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        *running = Some(Running { supervisor, pid });
        Ok(())
    }

    /// Runs one SQL command with `psql` as the superuser in `database` and
    /// returns its unaligned output.
    ///
    /// # Errors
    ///
    /// [`PeerError::MissingProgram`] without `psql`; [`PeerError::Protocol`]
    /// with psql's message when the command fails.
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::shared()?;
    /// assert_eq!(pg.psql("postgres", "SELECT 1 + 1")?.trim(), "2");
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, PeerError> {
        let out = Command::new(&self.binaries.psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", SUPERUSER])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "2")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PeerError::MissingProgram {
                program: "psql",
                peer: PEER,
                hint: HINT,
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(PeerError::protocol(
                format!("psql on 127.0.0.1:{}", self.port),
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }

    /// Creates a fresh, empty database (`pay402_test_<n>`) for one test.
    ///
    /// # Errors
    ///
    /// What [`Postgres::psql`] fails with.
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::shared()?;
    /// assert_ne!(pg.create_database()?, pg.create_database()?);
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn create_database(&self) -> Result<Database, PeerError> {
        let name = format!(
            "pay402_test_{}",
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(Database {
            url: self.database_url(&name),
            name,
        })
    }

    /// The URL of the `postgres` database:
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::shared()?;
    /// assert_eq!(pg.url(), format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port()));
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` in this cluster.
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::shared()?;
    /// assert!(pg.database_url("x").ends_with("/x"));
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The loopback port the server listens on (the same across
    /// [`Postgres::restart`]).
    ///
    /// ```no_run
    /// assert_ne!(pay402_testkit::postgres::Postgres::shared()?.port(), 0);
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's PID while it runs.
    ///
    /// ```no_run
    /// assert!(pay402_testkit::postgres::Postgres::shared()?.pid().is_some());
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|r| r.pid)
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping
    /// its data for [`Postgres::restart`]. A no-op when it is not running.
    ///
    /// # Errors
    ///
    /// [`PeerError::Timeout`] when it has not exited after 15 s (it is then
    /// killed).
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::start()?;
    /// pg.stop()?;
    /// assert!(pg.pid().is_none());
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn stop(&self) -> Result<(), PeerError> {
        self.halt(true)
    }

    /// Starts the server again on the same directory and port after
    /// [`Postgres::stop`]; returns once a client has connected.
    ///
    /// # Errors
    ///
    /// As for [`Postgres::start`].
    ///
    /// ```no_run
    /// let pg = pay402_testkit::postgres::Postgres::start()?;
    /// pg.stop()?;
    /// pg.restart()?;
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn restart(&self) -> Result<(), PeerError> {
        self.launch()
    }

    fn halt(&self, keep: bool) -> Result<(), PeerError> {
        let Some(mut run) = self.lock().take() else {
            return Ok(());
        };
        // By its PID: SIGINT is PostgreSQL's fast shutdown.
        signal(run.pid, rustix::process::Signal::INT);
        if keep {
            let _ = run.supervisor.send_line("keep");
        }
        if run.supervisor.finish(STOP_GRACE) && !alive(run.pid) {
            return Ok(());
        }
        signal(run.pid, rustix::process::Signal::KILL);
        run.supervisor.stop();
        Err(PeerError::Timeout {
            what: format!("postgres (pid {}) to shut down", run.pid),
            waited: STOP_GRACE,
            detail: run.supervisor.output(),
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.halt(false);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
