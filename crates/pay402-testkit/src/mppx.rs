//! mppx (npm `mppx` 0.11.0, the reference TypeScript SDK of MPP, the
//! `Payment` HTTP authentication scheme) as a test peer, driven by the
//! project's own script `peers/mppx/mppx.mjs`.
//!
//! [`install`] installs the pinned packages on first use (`npm ci` of
//! `peers/mppx/package.json` + lock file: `mppx` 0.11.0 and `viem` 2.56.8 —
//! viem pinned below the releases that declare a peer dependency on newer
//! mppx) into [`cache_dir`], and places the script next to that
//! `node_modules`. The script has three modes:
//!
//! - **server** ([`MppxServer::start`]): mppx's `Mppx.create` with its
//!   built-in `evm.charge` method (EIP-3009 `authorization` credentials) on
//!   a chain such as [`crate::anvil::Anvil`] with the real USDC, selling one
//!   `GET` route. mppx leaves settlement to the application; the script's
//!   `settle` hook submits `transferWithAuthorization` with viem (gas paid
//!   by a dev account) and waits for the receipt.
//! - **client** ([`pay`]): mppx's `Mppx.create({methods: [evm.charge(...)]})`
//!   fetch wrapper pays one URL.
//! - **parse** ([`parse`]): what mppx's core reads from a 402's
//!   `WWW-Authenticate` lines (`Challenge.fromHeadersList`, optionally
//!   `Challenge.verify` with a secret), an x402 `PAYMENT-REQUIRED` header,
//!   `Payment-Receipt` and `Authorization` values.
//!
//! By hand (after [`install`]): `cd <cache_dir> && node mppx.mjs server
//! --rpc http://127.0.0.1:8545 --currency 0x.. --recipient 0x.. --amount
//! 10000` with `PAY402_MPPX_SECRET` and `PAY402_MPPX_SETTLER_KEY` set;
//! `node mppx.mjs client --url http://127.0.0.1:8402/paid` with
//! `PAY402_MPPX_CLIENT_KEY`; `echo '{"wwwAuthenticate": ["Payment id=…"]}'
//! | node mppx.mjs parse`. The script's header comment documents every
//! option.
//!
//! A missing `node`/`npm` fails loudly ([`PeerError::MissingProgram`]).
//!
//! ```no_run
//! use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS};
//! use pay402_testkit::mppx::{MppxServer, MppxServerConfig};
//!
//! let chain = Anvil::start()?;
//! let usdc = chain.deploy_usdc()?;
//! let server = MppxServer::start(&MppxServerConfig::new(
//!     chain.rpc_url(),
//!     usdc.address,
//!     DEV_ACCOUNTS[2].address,
//!     10_000,
//! ))?;
//! println!("pay {}", server.url());
//! # Ok::<(), pay402_testkit::PeerError>(())
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use alloy_primitives::{Address, B256};
use serde_json::Value;

use crate::PeerError;
use crate::npm::{NpmInstall, place_file};
use crate::process::PeerProcess;
use crate::x402_sdk::{await_result, check_health, spawn_error_of, start_listening_as};

/// The pinned mppx version.
pub const MPPX_VERSION: &str = "0.11.0";

const PEER: &str = "mppx";
const PACKAGE_JSON: &str = include_str!("../peers/mppx/package.json");
const PACKAGE_LOCK: &str = include_str!("../peers/mppx/package-lock.json");
const SCRIPT: &str = include_str!("../peers/mppx/mppx.mjs");
const SCRIPT_NAME: &str = "mppx.mjs";

const READY: &str = "PAY402_MPPX_READY ";
const RESULT: &str = "PAY402_MPPX_RESULT ";
const FAILED: &str = "PAY402_MPPX_FAILED ";

const VERIFY_JS: &str = "\
const fs = require('fs');
const version = (p) => JSON.parse(fs.readFileSync('node_modules/' + p + '/package.json', 'utf8')).version;
if (version('mppx') !== '0.11.0') throw new Error('expected mppx 0.11.0, found ' + version('mppx'));
Promise.all(['mppx', 'mppx/server', 'mppx/client', 'mppx/x402', 'viem', 'viem/accounts']
  .map((m) => import(m))).catch((err) => { console.error(err); process.exit(1); });
";

const INSTALL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// The directory mppx is installed into: `<peers_dir>/mppx-0.11.0`.
///
/// ```
/// assert!(pay402_testkit::mppx::cache_dir().ends_with("mppx-0.11.0"));
/// ```
pub fn cache_dir() -> PathBuf {
    crate::peers_dir().join(format!("{PEER}-{MPPX_VERSION}"))
}

/// Installs the pinned packages into [`cache_dir`] unless already there,
/// places `mppx.mjs` beside them, and returns the script's path.
///
/// # Errors
///
/// [`PeerError::MissingProgram`] / [`PeerError::UnusableProgram`] when
/// `node` or `npm` is missing or too old; [`PeerError::InstallFailed`] with
/// npm's output.
///
/// ```no_run
/// let script = pay402_testkit::mppx::install()?;
/// assert!(script.is_file());
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub fn install() -> Result<PathBuf, PeerError> {
    NpmInstall {
        peer: PEER,
        dir: cache_dir(),
        package_json: PACKAGE_JSON,
        package_lock: PACKAGE_LOCK,
        verify_js: VERIFY_JS,
        sentinel: "node_modules/mppx/package.json",
        timeout: INSTALL_TIMEOUT,
        lock_timeout: INSTALL_TIMEOUT + Duration::from_secs(60),
    }
    .ensure()?;
    place_file(&cache_dir(), SCRIPT_NAME, SCRIPT)
}

fn node() -> Command {
    let mut command = Command::new("node");
    command.arg(SCRIPT_NAME).current_dir(cache_dir());
    command
}

/// Runs a one-shot mode and returns its RESULT object.
fn run_once(mut command: Command, stdin: Option<&str>, what: &str) -> Result<Value, PeerError> {
    if stdin.is_none() {
        command.stdin(std::process::Stdio::null());
    }
    let (mut process, lines) = PeerProcess::spawn(PEER, command, &[RESULT, FAILED])
        .map_err(|e| spawn_error_of(PEER, "mppx.mjs", e))?;
    if let Some(input) = stdin {
        process
            .send_line(input)
            .map_err(|e| PeerError::io("writing to `node mppx.mjs parse`", e))?;
        // Closing stdin ends the input.
        let _ = process.finish(Duration::ZERO);
    }
    let label = format!("mppx {what}");
    let result = await_result(
        PEER,
        &mut process,
        &lines,
        [RESULT, FAILED],
        RUN_TIMEOUT,
        &label,
    )?;
    drop(lines);
    process.stop();
    serde_json::from_str(&result).map_err(|e| {
        PeerError::protocol(
            format!("the result of mppx {what}"),
            format!("{e}: {result}"),
        )
    })
}

/// What mppx's core reads: see [`parse`]. Every member is optional.
#[derive(Clone, Debug, Default)]
pub struct ParseInput {
    /// The `WWW-Authenticate` field lines of a 402 (joined with `", "` as
    /// fetch does before mppx sees them).
    pub www_authenticate: Vec<String>,
    /// An x402 v2 `PAYMENT-REQUIRED` header value.
    pub payment_required: Option<String>,
    /// `Payment-Receipt` values.
    pub receipts: Vec<String>,
    /// `Authorization: Payment …` values.
    pub credentials: Vec<String>,
    /// The HMAC secret (UTF-8) to `Challenge.verify` the challenges with.
    pub secret: Option<String>,
}

/// Feeds `input` to mppx's core (`node mppx.mjs parse`) and returns what it
/// read: `{"challenges": {"value": [{"challenge", "serialized", "verified"?}]}
/// | {"error"}, "perLine": [...], "paymentRequired": {...}, "receipts":
/// [{"value"} | {"error"}], "credentials": [...]}`.
///
/// Blocking; installs mppx first if needed.
///
/// # Errors
///
/// Any [`install`] error; [`PeerError::StartFailed`] when the script fails.
///
/// ```no_run
/// use pay402_testkit::mppx::{parse, ParseInput};
/// let out = parse(&ParseInput { receipts: vec!["e30".into()], ..Default::default() })?;
/// assert!(out["receipts"][0]["error"].is_string());
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub fn parse(input: &ParseInput) -> Result<Value, PeerError> {
    install()?;
    let mut json = serde_json::Map::new();
    if !input.www_authenticate.is_empty() {
        json.insert(
            "wwwAuthenticate".into(),
            input.www_authenticate.clone().into(),
        );
    }
    if let Some(p) = &input.payment_required {
        json.insert("paymentRequired".into(), p.clone().into());
    }
    if !input.receipts.is_empty() {
        json.insert("receipts".into(), input.receipts.clone().into());
    }
    if !input.credentials.is_empty() {
        json.insert("credentials".into(), input.credentials.clone().into());
    }
    if let Some(s) = &input.secret {
        json.insert("secret".into(), s.clone().into());
    }
    let mut command = node();
    command.arg("parse");
    run_once(command, Some(&Value::Object(json).to_string()), "parse")
}

/// One payment for mppx's client to make: see [`pay`]. `Debug` never shows
/// the key.
#[derive(Clone)]
pub struct MppxPayment {
    /// The URL to pay.
    pub url: String,
    /// The payer's private key (handed to the script through its environment).
    pub private_key: B256,
    /// The token's EIP-712 name (default "USD Coin").
    pub name: String,
    /// The token's EIP-712 version (default "2").
    pub version: String,
    /// The chain id allowed (default [`crate::anvil::CHAIN_ID`]).
    pub chain_id: u64,
    /// The only token allowed, if set.
    pub currency: Option<Address>,
    /// The most one charge may cost, in base units, if set.
    pub max_atomic: Option<u128>,
}

impl std::fmt::Debug for MppxPayment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MppxPayment")
            .field("url", &self.url)
            .field("chain_id", &self.chain_id)
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

impl MppxPayment {
    /// A payment of `url` with `private_key` on anvil's chain, in USDC's
    /// EIP-712 domain.
    ///
    /// ```
    /// use pay402_testkit::anvil::DEV_ACCOUNTS;
    /// let p = pay402_testkit::mppx::MppxPayment::new("http://127.0.0.1:1/paid", DEV_ACCOUNTS[1].private_key);
    /// assert_eq!(p.chain_id, 31337);
    /// assert!(!format!("{p:?}").contains("59c6995e"));
    /// ```
    pub fn new(url: impl Into<String>, private_key: B256) -> MppxPayment {
        MppxPayment {
            url: url.into(),
            private_key,
            name: crate::anvil::USDC_NAME.to_owned(),
            version: crate::anvil::USDC_VERSION.to_owned(),
            chain_id: crate::anvil::CHAIN_ID,
            currency: None,
            max_atomic: None,
        }
    }
}

/// Runs mppx's client (`node mppx.mjs client`) once against `payment.url`
/// and returns `{"status", "body", "headers", "receipt", "payer"}`.
///
/// Blocking; installs mppx first if needed.
///
/// # Errors
///
/// Any [`install`] error; [`PeerError::StartFailed`] with mppx's message
/// when it throws.
///
/// ```no_run
/// use pay402_testkit::anvil::DEV_ACCOUNTS;
/// use pay402_testkit::mppx::{pay, MppxPayment};
/// let out = pay(&MppxPayment::new("http://127.0.0.1:8402/paid", DEV_ACCOUNTS[1].private_key))?;
/// assert_eq!(out["status"], 200);
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub fn pay(payment: &MppxPayment) -> Result<Value, PeerError> {
    install()?;
    let mut command = node();
    command
        .args(["client", "--url", &payment.url])
        .args(["--name", &payment.name, "--version", &payment.version])
        .args(["--chain-id", &payment.chain_id.to_string()])
        .env(
            "PAY402_MPPX_CLIENT_KEY",
            format!("{:#x}", payment.private_key),
        );
    if let Some(c) = payment.currency {
        command.args(["--currency", &c.to_string()]);
    }
    if let Some(m) = payment.max_atomic {
        command.args(["--max-atomic", &m.to_string()]);
    }
    run_once(command, None, "client")
}

/// How to configure mppx's server: see [`MppxServer::start`].
#[derive(Clone)]
pub struct MppxServerConfig {
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// The chain id (default [`crate::anvil::CHAIN_ID`]).
    pub chain_id: u64,
    /// The EIP-3009 token (USDC).
    pub currency: Address,
    /// Its decimals (default 6).
    pub decimals: u8,
    /// Its EIP-712 name and version (default "USD Coin", "2").
    pub name: String,
    /// See `name`.
    pub version: String,
    /// The payee.
    pub recipient: Address,
    /// The price in base units.
    pub amount: u128,
    /// The realm (default `127.0.0.1`).
    pub realm: String,
    /// The paid route (default `/paid`).
    pub path: String,
    /// The HMAC secret (at least 32 bytes; a fixed test value by default).
    pub secret: String,
    /// The key of the account that submits settlements and pays their gas
    /// (default the fifth anvil dev account).
    pub settler_key: B256,
}

impl std::fmt::Debug for MppxServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MppxServerConfig")
            .field("rpc_url", &self.rpc_url)
            .field("currency", &self.currency)
            .field("recipient", &self.recipient)
            .field("amount", &self.amount)
            .finish_non_exhaustive()
    }
}

impl MppxServerConfig {
    /// `GET /paid` for `amount` base units of the anvil USDC at `currency`,
    /// paid to `recipient`, settled on `rpc_url`.
    ///
    /// ```
    /// use pay402_testkit::anvil::DEV_ACCOUNTS;
    /// let c = pay402_testkit::mppx::MppxServerConfig::new("http://127.0.0.1:1", Default::default(), DEV_ACCOUNTS[2].address, 10_000);
    /// assert_eq!(c.path, "/paid");
    /// ```
    pub fn new(
        rpc_url: impl Into<String>,
        currency: Address,
        recipient: Address,
        amount: u128,
    ) -> MppxServerConfig {
        MppxServerConfig {
            rpc_url: rpc_url.into(),
            chain_id: crate::anvil::CHAIN_ID,
            currency,
            decimals: crate::anvil::USDC_DECIMALS,
            name: crate::anvil::USDC_NAME.to_owned(),
            version: crate::anvil::USDC_VERSION.to_owned(),
            recipient,
            amount,
            realm: "127.0.0.1".to_owned(),
            path: "/paid".to_owned(),
            secret: "pay402-mppx-interop-secret-0123456789abcdef".to_owned(),
            settler_key: crate::anvil::DEV_ACCOUNTS[4].private_key,
        }
    }
}

/// A running mppx server (one `node` process), stopped by its PID when
/// dropped; it also exits when its stdin closes.
pub struct MppxServer {
    process: PeerProcess,
    port: u16,
    path: String,
}

impl std::fmt::Debug for MppxServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MppxServer")
            .field("pid", &self.process.pid())
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl MppxServer {
    /// Installs mppx if needed and starts the server on a free loopback
    /// port; returns once it printed READY and answered `GET /health`.
    ///
    /// # Errors
    ///
    /// Any [`install`] error; [`PeerError::StartFailed`] with its output
    /// when it exits or fails (wrong chain id, RPC unreachable);
    /// [`PeerError::Timeout`].
    pub fn start(config: &MppxServerConfig) -> Result<MppxServer, PeerError> {
        install()?;
        let mut command = node();
        command
            .args(["server", "--rpc", &config.rpc_url])
            .args(["--chain-id", &config.chain_id.to_string()])
            .args(["--currency", &config.currency.to_string()])
            .args(["--decimals", &config.decimals.to_string()])
            .args(["--name", &config.name, "--version", &config.version])
            .args(["--recipient", &config.recipient.to_string()])
            .args(["--amount", &config.amount.to_string()])
            .args(["--realm", &config.realm, "--path", &config.path])
            .args(["--port", "0"])
            .env("PAY402_MPPX_SECRET", &config.secret)
            .env(
                "PAY402_MPPX_SETTLER_KEY",
                format!("{:#x}", config.settler_key),
            );
        let (process, port, _) = start_listening_as(PEER, &[READY, FAILED], SCRIPT_NAME, command)?;
        let server = MppxServer {
            process,
            port,
            path: config.path.clone(),
        };
        check_health(&format!("http://127.0.0.1:{}/health", server.port), || {
            server.log()
        })?;
        Ok(server)
    }

    /// The paid route's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The last ~32 KiB of its output (one line per request and settlement).
    pub fn log(&self) -> String {
        self.process.output()
    }
}
