//! Install-once of a pinned npm package set into a harness-owned cache directory.
//!
//! Several test binaries run in parallel and each may be the first to need the
//! peer, so installation is guarded by an exclusive `flock(2)` on a lock file in
//! the cache directory, and finished installs are recorded by a completion
//! marker holding a stamp of the pinned package files. Later runs see a
//! matching marker and skip npm entirely.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::PeerError;

const MARKER: &str = ".pay402-installed";
const LOCK: &str = ".pay402-install.lock";
const LOG: &str = "install.log";

/// Hint printed when `node`/`npm` cannot be run.
pub(crate) const NODE_HINT: &str = "install Node.js >= 18 together with npm (Debian/Ubuntu: \
     `apt-get install nodejs npm`) and make sure `node` and `npm` are on PATH";

/// Writes `contents` to `dir/name` unless it already holds exactly that
/// (atomically: a unique temporary file, then a rename), and returns the
/// path. The harness's scripts are embedded in the crate and placed at run
/// time, so a test binary never depends on the source tree it was built
/// from (two checkouts may share one target directory).
pub(crate) fn place_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, PeerError> {
    let path = dir.join(name);
    if fs::read_to_string(&path).is_ok_and(|old| old == contents) {
        return Ok(path);
    }
    // Unique per process and call: parallel tests in one binary may race here.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(dir)
        .and_then(|()| fs::write(&tmp, contents))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            PeerError::io(format!("writing {}", path.display()), e)
        })?;
    Ok(path)
}

/// A pinned set of npm packages to install into `dir`.
pub(crate) struct NpmInstall<'a> {
    /// Peer name for messages.
    pub peer: &'static str,
    /// Cache directory owned by the harness.
    pub dir: PathBuf,
    /// Contents of `package.json` (exact versions, overrides).
    pub package_json: &'a str,
    /// Contents of `package-lock.json`; the install runs `npm ci` with it.
    pub package_lock: &'a str,
    /// JavaScript run with `node -e` in `dir` after the install; it must exit 0
    /// only if the installed packages load (native modules built, etc.).
    pub verify_js: &'a str,
    /// A file (relative to `dir`) that exists only in a complete install,
    /// checked together with the marker, e.g. `node_modules/bcoin/package.json`.
    pub sentinel: &'a str,
    /// Upper bound for one `npm ci` run.
    pub timeout: Duration,
    /// Upper bound for waiting on another process's install.
    pub lock_timeout: Duration,
}

impl NpmInstall<'_> {
    fn stamp(&self) -> String {
        // FNV-1a 64 over the pinned inputs: a changed pin re-installs.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [
            self.package_json,
            "\0",
            self.package_lock,
            "\0",
            self.verify_js,
        ] {
            for byte in part.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{}:{hash:016x}", self.peer)
    }

    fn installed(&self, stamp: &str) -> bool {
        fs::read_to_string(self.dir.join(MARKER)).is_ok_and(|s| s.trim() == stamp)
            && self.dir.join(self.sentinel).is_file()
    }

    /// Makes sure the packages are installed and returns `<dir>/node_modules`.
    pub(crate) fn ensure(&self) -> Result<PathBuf, PeerError> {
        let modules = self.dir.join("node_modules");
        let stamp = self.stamp();
        if self.installed(&stamp) {
            return Ok(modules);
        }

        fs::create_dir_all(&self.dir).map_err(|e| {
            PeerError::io(
                format!("creating the peer cache directory {}", self.dir.display()),
                e,
            )
        })?;
        let _lock = FileLock::acquire(&self.dir.join(LOCK), self.lock_timeout, self.peer)?;

        // Another process may have finished the install while we waited.
        if self.installed(&stamp) {
            return Ok(modules);
        }

        let node_version = check_program("node", self.peer)?;
        let major = node_major(&node_version).ok_or_else(|| PeerError::UnusableProgram {
            program: "node",
            peer: self.peer,
            reason: format!("could not parse `node --version` output {node_version:?}"),
        })?;
        if major < 18 {
            return Err(PeerError::UnusableProgram {
                program: "node",
                peer: self.peer,
                reason: format!("found Node.js {node_version}, need >= 18; {NODE_HINT}"),
            });
        }
        check_program("npm", self.peer)?;

        let _ = fs::remove_file(self.dir.join(MARKER));
        self.write("package.json", self.package_json)?;
        self.write("package-lock.json", self.package_lock)?;

        self.run_npm_ci()?;
        self.verify()?;

        let tmp = self.dir.join(format!("{MARKER}.tmp"));
        fs::write(&tmp, format!("{stamp}\n"))
            .and_then(|()| fs::rename(&tmp, self.dir.join(MARKER)))
            .map_err(|e| PeerError::io("writing the install completion marker", e))?;
        Ok(modules)
    }

    fn write(&self, name: &str, contents: &str) -> Result<(), PeerError> {
        let path = self.dir.join(name);
        fs::write(&path, contents)
            .map_err(|e| PeerError::io(format!("writing {}", path.display()), e))
    }

    fn run_npm_ci(&self) -> Result<(), PeerError> {
        let log_path = self.dir.join(LOG);
        let log = File::create(&log_path)
            .map_err(|e| PeerError::io(format!("creating {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| PeerError::io("duplicating the install log handle", e))?;

        let mut child = Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--foreground-scripts",
                // Native modules (mrmr, bcrypto, leveldown, ...) are built by
                // install scripts; bcoin cannot start without them.
                "--ignore-scripts=false",
            ])
            .current_dir(&self.dir)
            .env("npm_config_ignore_scripts", "false")
            .env("npm_config_update_notifier", "false")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| PeerError::MissingProgram {
                program: "npm",
                peer: self.peer,
                hint: NODE_HINT,
                source,
            })?;

        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(PeerError::InstallFailed {
                        peer: self.peer,
                        dir: self.dir.clone(),
                        reason: format!("`npm ci` did not finish within {:?}", self.timeout),
                        output: tail_of_file(&log_path, 6000),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(PeerError::io("waiting for `npm ci`", e)),
            }
        };
        if !status.success() {
            return Err(PeerError::InstallFailed {
                peer: self.peer,
                dir: self.dir.clone(),
                reason: format!(
                    "`npm ci` exited with {status} (it needs the npm registry, and node-gyp \
                     with g++, make, python3 and the Node.js headers to build native modules)"
                ),
                output: tail_of_file(&log_path, 6000),
            });
        }
        Ok(())
    }

    fn verify(&self) -> Result<(), PeerError> {
        let out = Command::new("node")
            .args(["-e", self.verify_js])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PeerError::MissingProgram {
                program: "node",
                peer: self.peer,
                hint: NODE_HINT,
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(PeerError::InstallFailed {
            peer: self.peer,
            dir: self.dir.clone(),
            reason: format!(
                "`npm ci` succeeded but the installed packages do not load ({}); were the \
                 install scripts skipped or did a native build fail? See {}",
                out.status,
                self.dir.join(LOG).display()
            ),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// Runs `<program> --version`, returning its trimmed output.
pub(crate) fn check_program(
    program: &'static str,
    peer: &'static str,
) -> Result<String, PeerError> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| PeerError::MissingProgram {
            program,
            peer,
            hint: NODE_HINT,
            source,
        })?;
    if !out.status.success() {
        return Err(PeerError::UnusableProgram {
            program,
            peer,
            reason: format!(
                "`{program} --version` exited with {}: {}; {NODE_HINT}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn node_major(version: &str) -> Option<u32> {
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn tail_of_file(path: &Path, max: usize) -> String {
    let mut buf = Vec::new();
    if File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .is_err()
    {
        return format!("(could not read {})", path.display());
    }
    let start = buf.len().saturating_sub(max);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

/// An exclusive advisory lock (`flock(2)`), released on drop or process exit.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn acquire(
        path: &Path,
        timeout: Duration,
        peer: &'static str,
    ) -> Result<Self, PeerError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| PeerError::io(format!("opening the lock file {}", path.display()), e))?;
        let start = Instant::now();
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {
                    if start.elapsed() > timeout {
                        return Err(PeerError::Timeout {
                            what: format!(
                                "another process's install of the {peer} test peer (lock {})",
                                path.display()
                            ),
                            waited: timeout,
                            detail: String::new(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(PeerError::io(
                        format!("locking {}", path.display()),
                        e.into(),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::node_major;

    #[test]
    fn parses_node_versions() {
        assert_eq!(node_major("v20.20.2\n"), Some(20));
        assert_eq!(node_major("v18.0.0"), Some(18));
        assert_eq!(node_major("garbage"), None);
    }
}
