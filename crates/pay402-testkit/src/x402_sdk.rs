//! The official x402 TypeScript SDK (npm `@x402/*` 2.27.0) as a test peer:
//! an official paying client and an official `@x402/express` resource server,
//! for interop tests against pay402's own x402 client, server and facilitator.
//!
//! [`install`] installs the pinned packages on first use (`npm ci` of
//! `peers/x402-sdk/package.json` + lock file shipped with this crate, into
//! [`cache_dir`]): `@x402/core`, `@x402/evm`, `@x402/fetch`, `@x402/express`,
//! `@x402/extensions` 2.27.0, `viem` and `express` 5. Two small ES-module
//! scripts shipped beside the package file are copied next to that
//! `node_modules` and run with `node`:
//!
//! - `client.mjs`, driven by [`pay`]: `wrapFetchWithPayment` over an
//!   `x402Client` with `registerExactEvmScheme` and a `privateKeyToAccount`
//!   signer; it pays one URL (v2, `exact`, EIP-3009) and reports the final
//!   status, body, headers and the decoded `PAYMENT-RESPONSE`
//!   ([`SdkPaymentOutcome`]). The SDK's spend controls refuse every asset
//!   they do not know (a locally deployed USDC among them), so the script
//!   allows exactly the [`SdkPayment::asset`] on [`SdkPayment::network`],
//!   capped at [`SdkPayment::max_amount`].
//! - `server.mjs`, started by [`SdkServer::start`]: an express app with
//!   `paymentMiddleware` selling one `GET` route, priced in a given token,
//!   with an `HTTPFacilitatorClient` pointed at a facilitator URL. It fetches
//!   the facilitator's `/supported` before listening (the kind
//!   `{x402Version: 2, scheme: "exact", network}` must be listed, or it
//!   fails to start), then prints a READY line with its port.
//! - `facilitator.mjs`, started by [`SdkFacilitator::start`]: the SDK's own
//!   facilitator engine (`x402Facilitator` + the `exact` EVM scheme, a viem
//!   wallet signer) behind a minimal express server with `/supported`,
//!   `/verify` and `/settle` (the SDK ships the engine, not a server).
//!
//! Together with pay402's own client, server and facilitator this gives
//! every pairing of the three roles; see `tests/anvil_x402_interop.rs`.
//!
//! Each process is stopped by its own PID (and the server also exits when its
//! stdin closes, so it cannot outlive a killed test process). Everything has
//! a deadline; a peer that cannot start fails with its log tail.
//!
//! ```no_run
//! use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS};
//! use pay402_testkit::x402_sdk::{self, SdkPayment};
//!
//! let chain = Anvil::start()?;
//! let usdc = chain.deploy_usdc()?;
//! // ... start a pay402 x402 server selling `/paid` for 10_000 base units ...
//! # let url = String::new();
//! let outcome = x402_sdk::pay(&SdkPayment::new(
//!     url,
//!     usdc.address,
//!     10_000,
//!     DEV_ACCOUNTS[1].private_key,
//! ))?;
//! assert_eq!(outcome.status, 200);
//! # Ok::<(), pay402_testkit::PeerError>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use serde_json::Value;

use crate::PeerError;
use crate::npm::{NODE_HINT, NpmInstall, place_file};
use crate::process::PeerProcess;

/// The pinned version of every `@x402/*` package this peer installs.
pub const X402_SDK_VERSION: &str = "2.27.0";

/// The CAIP-2 network id of [`crate::anvil::Anvil`] chains
/// (`eip155:` + [`crate::anvil::CHAIN_ID`]).
pub const ANVIL_NETWORK: &str = "eip155:31337";

const PEER: &str = "x402-sdk";
const PACKAGE_JSON: &str = include_str!("../peers/x402-sdk/package.json");
const PACKAGE_LOCK: &str = include_str!("../peers/x402-sdk/package-lock.json");
const CLIENT_JS: &str = include_str!("../peers/x402-sdk/client.mjs");
const SERVER_JS: &str = include_str!("../peers/x402-sdk/server.mjs");
const FACILITATOR_JS: &str = include_str!("../peers/x402-sdk/facilitator.mjs");

const READY: &str = "PAY402_X402_SDK_READY ";
const RESULT: &str = "PAY402_X402_SDK_RESULT ";
const FAILED: &str = "PAY402_X402_SDK_FAILED ";

/// Run with `node -e` after `npm ci`: fails unless the pinned versions are
/// installed and the ES modules the scripts import load.
const VERIFY_JS: &str = "\
const fs = require('fs');
const version = (p) => JSON.parse(fs.readFileSync('node_modules/' + p + '/package.json', 'utf8')).version;
for (const p of ['core', 'evm', 'fetch', 'express', 'extensions']) {
  const v = version('@x402/' + p);
  if (v !== '2.27.0') throw new Error('expected @x402/' + p + ' 2.27.0, found ' + v);
}
const e = version('express');
if (!e.startsWith('5.')) throw new Error('expected express 5.x, found ' + e);
Promise.all(['@x402/fetch', '@x402/evm/exact/client', '@x402/evm/exact/server',
  '@x402/express', '@x402/core/server', '@x402/core/http', 'viem/accounts', 'express']
  .map((m) => import(m))).catch((err) => { console.error(err); process.exit(1); });
";

const INSTALL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const START_TIMEOUT: Duration = Duration::from_secs(45);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time the harness gives the client script beyond its own deadline.
const CLIENT_GRACE: Duration = Duration::from_secs(15);

/// The directory the SDK is installed into: `<peers_dir>/x402-sdk-2.27.0`
/// (see [`crate::peers_dir`]).
///
/// ```
/// let dir = pay402_testkit::x402_sdk::cache_dir();
/// assert!(dir.ends_with("x402-sdk-2.27.0"));
/// ```
pub fn cache_dir() -> PathBuf {
    crate::peers_dir().join(format!("{PEER}-{X402_SDK_VERSION}"))
}

/// Installs the pinned SDK packages into [`cache_dir`] unless a completed
/// install of the same pinned files is already there, and returns its
/// `node_modules` directory.
///
/// Safe to call from several processes at once (file lock + completion
/// marker). [`pay`] and [`SdkServer::start`] call it themselves.
///
/// # Errors
///
/// [`PeerError::MissingProgram`] / [`PeerError::UnusableProgram`] when `node`
/// or `npm` is missing or too old, [`PeerError::InstallFailed`] with npm's
/// output when the install or the post-install check fails.
///
/// ```no_run
/// let modules = pay402_testkit::x402_sdk::install()?;
/// assert!(modules.join("@x402/fetch").is_dir());
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub fn install() -> Result<PathBuf, PeerError> {
    let modules = NpmInstall {
        peer: PEER,
        dir: cache_dir(),
        package_json: PACKAGE_JSON,
        package_lock: PACKAGE_LOCK,
        verify_js: VERIFY_JS,
        sentinel: "node_modules/@x402/express/package.json",
        timeout: INSTALL_TIMEOUT,
        lock_timeout: INSTALL_TIMEOUT + Duration::from_secs(60),
    }
    .ensure()?;
    // The scripts import the packages by bare name, so they must sit next to
    // that node_modules: copy them there (atomically, only when changed).
    place_script("client.mjs", CLIENT_JS)?;
    place_script("server.mjs", SERVER_JS)?;
    place_script("facilitator.mjs", FACILITATOR_JS)?;
    Ok(modules)
}

fn place_script(name: &str, contents: &str) -> Result<PathBuf, PeerError> {
    place_file(&cache_dir(), name, contents)
}

fn node_command(script: &str) -> Command {
    let mut command = Command::new("node");
    command.arg(script).current_dir(cache_dir());
    command
}

fn spawn_error(what: &'static str, source: std::io::Error) -> PeerError {
    spawn_error_of(PEER, what, source)
}

/// The error for a `node <what>` of `peer` that could not be spawned.
pub(crate) fn spawn_error_of(
    peer: &'static str,
    what: &'static str,
    source: std::io::Error,
) -> PeerError {
    if source.kind() == std::io::ErrorKind::NotFound {
        PeerError::MissingProgram {
            program: "node",
            peer,
            hint: NODE_HINT,
            source,
        }
    } else {
        PeerError::io(format!("spawning `node {what}` for {peer}"), source)
    }
}

/// Spawns a listening script and waits for its READY line (or its FAILED
/// line, its exit, or the deadline). Returns the process, its port and the
/// whole READY object.
fn start_listening(
    script: &'static str,
    command: Command,
) -> Result<(PeerProcess, u16, Value), PeerError> {
    start_listening_as(PEER, &[READY, FAILED], script, command)
}

/// Spawns a listening Node script of `peer` whose stdout announces itself
/// with `markers` = `[READY, FAILED]` prefixes; as [`start_listening`].
pub(crate) fn start_listening_as(
    peer: &'static str,
    markers: &'static [&'static str; 2],
    script: &'static str,
    command: Command,
) -> Result<(PeerProcess, u16, Value), PeerError> {
    let [ready_prefix, failed_prefix] = *markers;
    let (mut process, lines) =
        PeerProcess::spawn(peer, command, markers).map_err(|e| spawn_error_of(peer, script, e))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let ready = loop {
        match process.next_line(&lines, deadline) {
            Ok(Some(line)) => {
                if let Some(info) = line.strip_prefix(ready_prefix) {
                    break info.to_owned();
                }
                if let Some(reason) = line.strip_prefix(failed_prefix) {
                    return Err(PeerError::StartFailed {
                        peer,
                        reason: format!("`node {script}`: {reason}"),
                        stderr: process.output(),
                    });
                }
            }
            Ok(None) => {
                return Err(PeerError::Timeout {
                    what: format!("the READY line of `node {script}`"),
                    waited: START_TIMEOUT,
                    detail: format!("peer output:\n{}", process.output()),
                });
            }
            Err(reason) => {
                return Err(PeerError::StartFailed {
                    peer,
                    reason: format!("`node {script}`: {reason}"),
                    stderr: process.output(),
                });
            }
        }
    };
    drop(lines);

    let context = format!("the READY line of `node {script}`");
    let info: Value = serde_json::from_str(&ready)
        .map_err(|e| PeerError::protocol(&context, format!("{e}: {ready}")))?;
    let port = info["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| PeerError::protocol(&context, format!("no port: {ready}")))?;
    let pid = process.pid();
    if info["pid"].as_u64() != Some(u64::from(pid)) {
        return Err(PeerError::StartFailed {
            peer,
            reason: format!(
                "the READY line came from PID {} but the spawned process is {pid}; it would not \
                 be stoppable by its PID",
                info["pid"]
            ),
            stderr: process.output(),
        });
    }
    Ok((process, port, info))
}

/// `GET url` must answer 200 within a few seconds.
pub(crate) fn check_health(url: &str, log: impl Fn() -> String) -> Result<(), PeerError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into();
    let status = agent
        .get(url)
        .call()
        .map_err(|e| PeerError::Http {
            url: url.to_owned(),
            message: format!("{e}\npeer output:\n{}", log()),
        })?
        .status()
        .as_u16();
    if status == 200 {
        Ok(())
    } else {
        Err(PeerError::Http {
            url: url.to_owned(),
            message: format!("HTTP {status}\npeer output:\n{}", log()),
        })
    }
}

/// One payment for the official SDK client to make: see [`pay`].
///
/// `Debug` never shows the private key.
#[derive(Clone)]
pub struct SdkPayment {
    /// The paid resource's URL.
    pub url: String,
    /// The CAIP-2 network the client registers the `exact` EVM scheme for
    /// (default [`ANVIL_NETWORK`]).
    pub network: String,
    /// The token the client's spend controls allow (every other asset is
    /// refused by the SDK's defaults for unknown tokens).
    pub asset: Address,
    /// The per-payment cap for `asset`, in its base units.
    pub max_amount: u128,
    /// The payer's secp256k1 private key (given to the script through its
    /// environment, never on its command line).
    pub private_key: B256,
    /// Upper bound for the whole payment (402, signing, paid retry,
    /// settlement); default 60 s.
    pub timeout: Duration,
}

impl std::fmt::Debug for SdkPayment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkPayment")
            .field("url", &self.url)
            .field("network", &self.network)
            .field("asset", &self.asset)
            .field("max_amount", &self.max_amount)
            .field("private_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SdkPayment {
    /// A payment of at most `max_amount` base units of `asset` on
    /// [`ANVIL_NETWORK`], within 60 s.
    ///
    /// ```
    /// use pay402_testkit::anvil::DEV_ACCOUNTS;
    /// use pay402_testkit::x402_sdk::SdkPayment;
    ///
    /// let asset = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse().unwrap();
    /// let p = SdkPayment::new("http://127.0.0.1:1/paid", asset, 10_000, DEV_ACCOUNTS[1].private_key);
    /// assert_eq!(p.network, "eip155:31337");
    /// assert!(!format!("{p:?}").contains("59c6995e"));
    /// ```
    pub fn new(
        url: impl Into<String>,
        asset: Address,
        max_amount: u128,
        private_key: B256,
    ) -> SdkPayment {
        SdkPayment {
            url: url.into(),
            network: ANVIL_NETWORK.to_owned(),
            asset,
            max_amount,
            private_key,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What the official SDK client saw: the final response of its (at most one)
/// paid retry, as reported by `client.mjs`.
#[derive(Clone, Debug)]
pub struct SdkPaymentOutcome {
    /// The final HTTP status.
    pub status: u16,
    /// The final response body.
    pub body: String,
    /// The final response headers (names lowercase).
    pub headers: BTreeMap<String, String>,
    /// The final response's `PAYMENT-RESPONSE`, decoded by the SDK's
    /// `decodePaymentResponseHeader` (`None` when absent).
    pub payment_response: Option<Value>,
    /// The `PAYMENT-REQUIRED` the client paid against (or the final one, when
    /// the final response is a 402), decoded by the SDK.
    pub payment_required: Option<Value>,
    /// The `PaymentPayload` the SDK signed and sent in `PAYMENT-SIGNATURE`
    /// (`None` when it never paid).
    pub payment_payload: Option<Value>,
    /// The payer address the SDK derived from the key.
    pub payer: Address,
    /// The script's stderr (diagnostics).
    pub log: String,
}

impl SdkPaymentOutcome {
    /// The EIP-3009 nonce of the signed authorization, if the SDK paid.
    ///
    /// ```
    /// # use pay402_testkit::x402_sdk::SdkPaymentOutcome;
    /// # let mut o = SdkPaymentOutcome { status: 200, body: String::new(), headers: Default::default(),
    /// #   payment_response: None, payment_required: None, payment_payload: None,
    /// #   payer: Default::default(), log: String::new() };
    /// o.payment_payload = Some(serde_json::json!({"payload": {"authorization": {
    ///     "nonce": "0x4d1a01129742e8ab9c763285abe6da57a6ab084c0c7aa49708a985fbeef6cbd9"}}}));
    /// assert!(o.authorization_nonce().is_some());
    /// ```
    pub fn authorization_nonce(&self) -> Option<B256> {
        self.payment_payload.as_ref()?["payload"]["authorization"]["nonce"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// Runs the official SDK client (`client.mjs`) once: it requests
/// `payment.url`, pays the 402 with `exact` EIP-3009 (v2) and retries once.
///
/// Blocking: call it from `tokio::task::spawn_blocking` inside async tests.
/// Installs the SDK first if needed ([`install`]).
///
/// # Errors
///
/// Any [`install`] error; [`PeerError::StartFailed`] with the SDK's message
/// and stderr when the SDK throws (spend controls refusing the offer, a
/// second 402 — "Payment already attempted" —, a network error, ...);
/// [`PeerError::Timeout`] when no result arrives within `payment.timeout`
/// plus a grace period; [`PeerError::Protocol`] on a malformed result line.
///
/// ```no_run
/// # use pay402_testkit::x402_sdk::{pay, SdkPayment};
/// # let (url, asset, key) = (String::new(), Default::default(), Default::default());
/// let outcome = pay(&SdkPayment::new(url, asset, 10_000, key))?;
/// if let Some(receipt) = &outcome.payment_response {
///     assert_eq!(receipt["success"], true);
/// }
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub fn pay(payment: &SdkPayment) -> Result<SdkPaymentOutcome, PeerError> {
    install()?;
    let timeout_ms = payment.timeout.as_millis().max(1);
    let mut command = node_command("client.mjs");
    command
        .args(["--url", &payment.url, "--network", &payment.network])
        .args(["--asset", &payment.asset.to_string()])
        .args(["--max-amount", &payment.max_amount.to_string()])
        .args(["--timeout-ms", &timeout_ms.to_string()])
        .env(
            "PAY402_X402_SDK_PRIVATE_KEY",
            format!("{:#x}", payment.private_key),
        );
    let (mut process, lines) = PeerProcess::spawn(PEER, command, &[RESULT, FAILED])
        .map_err(|e| spawn_error("client.mjs", e))?;
    let waited = payment.timeout + CLIENT_GRACE;
    let what = format!("the official x402 client paying {}", payment.url);
    let result = await_result(PEER, &mut process, &lines, [RESULT, FAILED], waited, &what)?;
    drop(lines);
    process.stop();
    parse_outcome(&result, process.output())
}

/// Waits for the line starting with `markers[0]` (RESULT) of a one-shot
/// script and returns the rest of it; `markers[1]` (FAILED), the process's
/// exit or `waited` passing is an error naming `what`.
pub(crate) fn await_result(
    peer: &'static str,
    process: &mut PeerProcess,
    lines: &std::sync::mpsc::Receiver<crate::process::StdoutEvent>,
    markers: [&str; 2],
    waited: Duration,
    what: &str,
) -> Result<String, PeerError> {
    let deadline = Instant::now() + waited;
    loop {
        match process.next_line(lines, deadline) {
            Ok(Some(line)) => {
                if let Some(json) = line.strip_prefix(markers[0]) {
                    return Ok(json.to_owned());
                }
                if let Some(reason) = line.strip_prefix(markers[1]) {
                    return Err(PeerError::StartFailed {
                        peer,
                        reason: format!("{what} failed: {reason}"),
                        stderr: process.output(),
                    });
                }
            }
            Ok(None) => {
                return Err(PeerError::Timeout {
                    what: what.to_owned(),
                    waited,
                    detail: format!("output:\n{}", process.output()),
                });
            }
            Err(reason) => {
                return Err(PeerError::StartFailed {
                    peer,
                    reason: format!("{what} gave no result: {reason}"),
                    stderr: process.output(),
                });
            }
        }
    }
}

fn parse_outcome(json: &str, log: String) -> Result<SdkPaymentOutcome, PeerError> {
    const CONTEXT: &str = "the x402 SDK client's result line";
    let v: Value = serde_json::from_str(json)
        .map_err(|e| PeerError::protocol(CONTEXT, format!("{e}: {json}")))?;
    let status = v["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| PeerError::protocol(CONTEXT, format!("no status: {json}")))?;
    let body = v["body"]
        .as_str()
        .ok_or_else(|| PeerError::protocol(CONTEXT, format!("no body: {json}")))?
        .to_owned();
    let headers = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let payer = v["payer"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| PeerError::protocol(CONTEXT, format!("no payer: {json}")))?;
    let some = |key: &str| Some(v[key].clone()).filter(|x| !x.is_null());
    Ok(SdkPaymentOutcome {
        status,
        body,
        headers,
        payment_response: some("paymentResponse"),
        payment_required: some("paymentRequired"),
        payment_payload: some("paymentPayload"),
        payer,
        log,
    })
}

/// How to configure the official `@x402/express` server: see
/// [`SdkServer::start`].
#[derive(Clone, Debug)]
pub struct SdkServerConfig {
    /// The facilitator's base URL (it must serve `/supported`, `/verify`,
    /// `/settle`).
    pub facilitator_url: String,
    /// The CAIP-2 network (default [`ANVIL_NETWORK`]).
    pub network: String,
    /// The token the route is priced in.
    pub asset: Address,
    /// The payee.
    pub pay_to: Address,
    /// The price in the token's base units.
    pub amount: u128,
    /// The token's EIP-712 domain name (default "USD Coin").
    pub eip712_name: String,
    /// The token's EIP-712 domain version (default "2").
    pub eip712_version: String,
    /// `maxTimeoutSeconds` of the offer (default 60).
    pub max_timeout_seconds: u64,
    /// The paid `GET` route (default `/paid`).
    pub path: String,
    /// Offer `asset` and `payTo` in lowercase hex instead of the EIP-55
    /// checksummed form (default `false`). The SDK keeps them as given and
    /// matches a payment's `accepted` echo by exact string comparison, so a
    /// client must echo them unchanged.
    pub lowercase_addresses: bool,
}

impl SdkServerConfig {
    /// A route `GET /paid` selling for `amount` base units of the anvil USDC
    /// at `asset` (EIP-712 domain "USD Coin" / "2") on [`ANVIL_NETWORK`],
    /// paid to `pay_to`, settled through `facilitator_url`.
    ///
    /// ```
    /// use pay402_testkit::anvil::DEV_ACCOUNTS;
    /// use pay402_testkit::x402_sdk::SdkServerConfig;
    ///
    /// let asset = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse().unwrap();
    /// let c = SdkServerConfig::new("http://127.0.0.1:1", asset, DEV_ACCOUNTS[2].address, 10_000);
    /// assert_eq!((c.path.as_str(), c.eip712_name.as_str()), ("/paid", "USD Coin"));
    /// ```
    pub fn new(
        facilitator_url: impl Into<String>,
        asset: Address,
        pay_to: Address,
        amount: u128,
    ) -> SdkServerConfig {
        SdkServerConfig {
            facilitator_url: facilitator_url.into(),
            network: ANVIL_NETWORK.to_owned(),
            asset,
            pay_to,
            amount,
            eip712_name: crate::anvil::USDC_NAME.to_owned(),
            eip712_version: crate::anvil::USDC_VERSION.to_owned(),
            max_timeout_seconds: 60,
            path: "/paid".to_owned(),
            lowercase_addresses: false,
        }
    }
}

/// A running official `@x402/express` resource server (one `node` process),
/// stopped by its PID when dropped.
///
/// ```no_run
/// use pay402_testkit::anvil::DEV_ACCOUNTS;
/// use pay402_testkit::x402_sdk::{SdkServer, SdkServerConfig};
///
/// # let (facilitator_url, asset) = (String::new(), Default::default());
/// let server = SdkServer::start(&SdkServerConfig::new(
///     facilitator_url,
///     asset,
///     DEV_ACCOUNTS[2].address,
///     10_000,
/// ))?;
/// println!("pay {}", server.url());
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub struct SdkServer {
    process: PeerProcess,
    pid: u32,
    port: u16,
    path: String,
}

impl std::fmt::Debug for SdkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkServer")
            .field("pid", &self.pid)
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl SdkServer {
    /// Installs the SDK if needed ([`install`]) and starts the server on a
    /// free `127.0.0.1` port.
    ///
    /// Returns once the server has fetched the facilitator's `/supported`,
    /// listens, printed its READY line and answered `GET /health`; fails
    /// after 45 s.
    ///
    /// # Errors
    ///
    /// Any [`install`] error; [`PeerError::StartFailed`] with the server's
    /// output when it exits or reports a failure (for example the
    /// facilitator does not list `{x402Version: 2, scheme: "exact",
    /// network}`, or cannot be reached); [`PeerError::Timeout`] when it is not
    /// ready in time.
    pub fn start(config: &SdkServerConfig) -> Result<SdkServer, PeerError> {
        install()?;
        let render = |a: Address| {
            if config.lowercase_addresses {
                format!("{a:#x}")
            } else {
                a.to_string()
            }
        };
        let mut command = node_command("server.mjs");
        command
            .args(["--facilitator", &config.facilitator_url])
            .args(["--network", &config.network])
            .args(["--asset", &render(config.asset)])
            .args(["--pay-to", &render(config.pay_to)])
            .args(["--amount", &config.amount.to_string()])
            .args(["--name", &config.eip712_name])
            .args(["--version", &config.eip712_version])
            .args([
                "--max-timeout-seconds",
                &config.max_timeout_seconds.to_string(),
            ])
            .args(["--path", &config.path, "--port", "0"]);
        let (process, port, _info) = start_listening("server.mjs", command)?;
        let server = SdkServer {
            pid: process.pid(),
            process,
            port,
            path: config.path.clone(),
        };
        server.check_health()?;
        Ok(server)
    }

    fn check_health(&self) -> Result<(), PeerError> {
        check_health(&format!("{}/health", self.base_url()), || self.log_tail())
    }

    /// The OS process id of the `node` process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The paid route's URL, `http://127.0.0.1:<port><path>`.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url(), self.path)
    }

    /// The last ~32 KiB of the server's output (one line per request, and
    /// the SDK's own errors), for diagnostics.
    pub fn log_tail(&self) -> String {
        self.process.output()
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.process.try_status().is_none()
    }
}

/// A running official facilitator: the SDK's `x402Facilitator` engine with
/// the `exact` EVM scheme (`@x402/evm/exact/facilitator`, a viem wallet
/// signer), served over HTTP (`GET /supported`, `POST /verify`,
/// `POST /settle`) by `facilitator.mjs`; stopped by its PID when dropped.
///
/// The SDK ships the engine but no HTTP server; the script is the thinnest
/// one (request bodies go to the engine unchanged, answers come back as JSON
/// with status 200). It installs Multicall3 on the chain with
/// `anvil_setCode` when missing: the engine uses it to explain failed
/// payments.
///
/// ```no_run
/// use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS};
/// use pay402_testkit::x402_sdk::SdkFacilitator;
///
/// let chain = Anvil::start()?;
/// let facilitator = SdkFacilitator::start(&chain.rpc_url(), DEV_ACCOUNTS[4].private_key)?;
/// println!("verify at {}/verify", facilitator.url());
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub struct SdkFacilitator {
    process: PeerProcess,
    pid: u32,
    port: u16,
    address: Address,
}

impl std::fmt::Debug for SdkFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkFacilitator")
            .field("pid", &self.pid)
            .field("url", &self.url())
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl SdkFacilitator {
    /// Installs the SDK if needed ([`install`]) and starts the facilitator
    /// for [`ANVIL_NETWORK`] on a free `127.0.0.1` port, settling through
    /// the JSON-RPC endpoint `rpc_url` and paying gas from the account of
    /// `private_key` (handed to the script through its environment).
    ///
    /// Returns once it listens and has answered `GET /supported`; fails
    /// after 45 s.
    ///
    /// # Errors
    ///
    /// Any [`install`] error; [`PeerError::StartFailed`] with its output
    /// when it exits or reports a failure (wrong chain id, RPC unreachable);
    /// [`PeerError::Timeout`] when it is not ready in time.
    pub fn start(rpc_url: &str, private_key: B256) -> Result<SdkFacilitator, PeerError> {
        install()?;
        let mut command = node_command("facilitator.mjs");
        command
            .args(["--rpc", rpc_url, "--network", ANVIL_NETWORK])
            .args(["--port", "0", "--install-multicall3"])
            .env(
                "PAY402_X402_SDK_FACILITATOR_KEY",
                format!("{private_key:#x}"),
            );
        let (process, port, info) = start_listening("facilitator.mjs", command)?;
        let address = info["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                PeerError::protocol(
                    "the READY line of `node facilitator.mjs`",
                    format!("no address: {info}"),
                )
            })?;
        let facilitator = SdkFacilitator {
            pid: process.pid(),
            process,
            port,
            address,
        };
        check_health(&format!("{}/supported", facilitator.url()), || {
            facilitator.log_tail()
        })?;
        Ok(facilitator)
    }

    /// The OS process id of the `node` process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The facilitator's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The address that sends (and pays the gas of) settlements.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The last ~32 KiB of its output: every request body and answer.
    pub fn log_tail(&self) -> String {
        self.process.output()
    }
}

/// The path of a shipped script inside the cache directory (after
/// [`install`]), for running it by hand.
///
/// ```no_run
/// let client = pay402_testkit::x402_sdk::script_path("client.mjs")?;
/// assert!(client.is_file());
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
///
/// # Errors
///
/// As [`install`]; [`PeerError::Protocol`] for a name other than
/// `client.mjs`, `server.mjs` or `facilitator.mjs`.
pub fn script_path(name: &str) -> Result<PathBuf, PeerError> {
    if !matches!(name, "client.mjs" | "server.mjs" | "facilitator.mjs") {
        return Err(PeerError::protocol(
            "x402_sdk::script_path",
            format!("no shipped script named {name:?}"),
        ));
    }
    install()?;
    Ok(cache_dir().join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_result_line() {
        let line = r#"{"status":200,"body":"{}","headers":{"payment-response":"e30="},
            "paymentResponse":{"success":true},"paymentRequired":null,
            "paymentPayload":{"payload":{"authorization":{"nonce":"0x4d1a01129742e8ab9c763285abe6da57a6ab084c0c7aa49708a985fbeef6cbd9"}}},
            "payer":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8"}"#;
        let o = parse_outcome(line, String::new()).unwrap();
        assert_eq!(o.status, 200);
        assert_eq!(o.headers["payment-response"], "e30=");
        assert!(o.authorization_nonce().is_some());
        assert_eq!(o.payment_response.unwrap()["success"], true);
        assert!(o.payment_required.is_none());
        assert!(parse_outcome(r#"{"status":200}"#, String::new()).is_err());
    }
}
