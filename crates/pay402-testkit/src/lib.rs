//! Real test peers for pay402's integration tests.
//!
//! pay402's tests exercise real payment-network peers, not only in-process
//! fakes. This crate installs and runs them on loopback:
//!
//! - [`bcoin::Bcoin`]: a real Bitcoin regtest full node (bcoin 1.0.2 from npm,
//!   adjusted to look like Bitcoin Core's regtest to Rust clients), with a
//!   JSON-RPC client, mining and wallet funding helpers.
//! - [`anvil::Anvil`]: a real EVM chain (Foundry's anvil 1.7.1 from npm) with
//!   Circle's FiatTokenV2_2 deployed and initialised like mainnet USDC
//!   ([`anvil::Anvil::deploy_usdc`]): real EIP-3009 and EIP-2612.
//! - [`mppx`]: mppx 0.11.0 from npm (the reference MPP SDK), driven by the
//!   project's own `peers/mppx/mppx.mjs`: its server with the built-in
//!   `evm`/`charge` method on anvil, its client, and its core parsers.
//! - [`postgres::Postgres`]: a real PostgreSQL server (Debian's package,
//!   installed with `apt-get` when missing), one private cluster per test
//!   process on loopback, a database per test.
//!
//! Peers are installed on first use into a cache directory the harness owns
//! (see [`peers_dir`]), guarded by a cross-process file lock so parallel test
//! binaries install once. Each started peer is an independent process on free
//! loopback ports, stopped by its own PID when its handle is dropped (also
//! when a test panics); the bcoin launcher also exits by itself when its stdin
//! closes, so it cannot outlive a killed test process (anvil cannot do that:
//! a SIGKILLed test run may leave an anvil behind).
//!
//! A test that needs a peer and cannot start it fails with a [`PeerError`]
//! saying what is missing; it is never silently skipped.
//!
//! ```no_run
//! use pay402_testkit::bcoin::Bcoin;
//!
//! let node = Bcoin::start()?;
//! node.mine(101)?;
//! let txid = node.fund("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", 100_000)?;
//! node.mine(1)?;
//! let tx = node.get_raw_transaction(&txid)?;
//! assert!(tx["confirmations"].as_u64() >= Some(1));
//! # Ok::<(), pay402_testkit::PeerError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anvil;
pub mod bcoin;
mod error;
pub mod logs;
pub mod mppx;
mod npm;
pub mod postgres;
mod process;
pub mod x402_sdk;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use error::PeerError;

/// Environment variable that overrides the peers cache directory (see [`peers_dir`]).
pub const PEERS_DIR_ENV: &str = "PAY402_PEERS_DIR";

/// The cargo workspace root: the nearest ancestor holding
/// `crates/pay402-testkit/Cargo.toml`, searched from the running package's
/// `CARGO_MANIFEST_DIR` (cargo sets it for tests and `cargo run`), then from
/// the current directory, then from where this crate was compiled.
///
/// The run-time lookups come first because two checkouts sharing one target
/// directory can leave a test binary with the other checkout's compile-time
/// path.
///
/// ```
/// let root = pay402_testkit::workspace_root();
/// assert!(root.join("crates/pay402-testkit/Cargo.toml").is_file());
/// ```
pub fn workspace_root() -> PathBuf {
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
        Some(compiled.clone()),
    ];
    starts
        .iter()
        .flatten()
        .find_map(|start| {
            start
                .ancestors()
                .find(|dir| dir.join("crates/pay402-testkit/Cargo.toml").is_file())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| {
            compiled
                .parent()
                .and_then(|crates| crates.parent())
                .map_or(compiled.clone(), PathBuf::from)
        })
}

/// The directory under which peers are installed, one subdirectory per
/// pinned peer version (e.g. `bcoin-1.0.2`).
///
/// It is `$PAY402_PEERS_DIR` when that is set and non-empty, otherwise
/// `<workspace>/target/pay402-peers`.
pub fn peers_dir() -> PathBuf {
    match std::env::var_os(PEERS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target").join("pay402-peers"),
    }
}

/// Calls `check` until it returns `Ok(Some(value))`, an error, or `timeout`
/// has passed, sleeping a little (10 ms growing to 100 ms) between calls.
///
/// Use it instead of fixed sleeps whenever a test waits for a peer's state.
///
/// # Errors
///
/// Returns the first error `check` returns, or [`PeerError::Timeout`] naming
/// `what` once `timeout` has passed.
///
/// ```no_run
/// use std::time::Duration;
/// use pay402_testkit::{bcoin::Bcoin, poll_until};
///
/// let node = Bcoin::start()?;
/// let height = poll_until("block 1", Duration::from_secs(5), || {
///     let n = node.block_count()?;
///     Ok((n >= 1).then_some(n))
/// });
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, PeerError>,
) -> Result<T, PeerError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Err(PeerError::Timeout {
                what: what.to_owned(),
                waited: elapsed,
                detail: String::new(),
            });
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
