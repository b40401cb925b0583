//! A real Bitcoin regtest node for tests: bcoin 1.0.2 (npm), made to look like
//! Bitcoin Core's regtest to Rust clients.
//!
//! [`Bcoin::start`] installs bcoin on first use (`npm ci` of the pinned
//! `peers/bcoin/package.json` + lock file shipped with this crate, into
//! [`Bcoin::cache_dir`]), then runs `node peers/bcoin/launch.js`, an in-memory
//! regtest full node with the wallet plugin, whose JSON-RPC and wallet HTTP
//! servers listen on free `127.0.0.1` ports. The launcher applies the
//! adjustments rust-bitcoin and ldk-node need (Core's address prefixes, segwit
//! and csv active from genesis, Core-shaped `getblockheader`/`getblock`/
//! `estimatesmartfee`, mining of minimum-fee transactions); see the comment at
//! the top of `launch.js`.
//!
//! Every [`Bcoin`] is an independent node with its own chain; tests running in
//! parallel each start their own. Dropping the handle stops the node.
//!
//! What bcoin lacks compared to Bitcoin Core: taproot addresses,
//! `testmempoolaccept`, `scantxoutset`, `getdescriptorinfo`, `createwallet`,
//! and persistence (state lives in memory).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::npm::{NODE_HINT, NpmInstall, place_file};
use crate::process::PeerProcess;
use crate::{PeerError, poll_until};

/// The pinned bcoin version this harness installs and runs.
pub const BCOIN_VERSION: &str = "1.0.2";

/// The user name [`Bcoin::rpc_user`] returns (bcoin accepts any user name;
/// the API key is the password).
pub const RPC_USER: &str = "pay402";

/// Blocks mined before the first coinbase output can be spent (regtest
/// coinbase maturity is 100 confirmations).
pub const MATURITY_HEIGHT: u64 = 101;

const PEER: &str = "bcoin";
const PACKAGE_JSON: &str = include_str!("../peers/bcoin/package.json");
const PACKAGE_LOCK: &str = include_str!("../peers/bcoin/package-lock.json");
/// The launcher script, embedded and placed next to the install at start.
const LAUNCHER_JS: &str = include_str!("../peers/bcoin/launch.js");
const READY: &str = "PAY402_BCOIN_READY ";
const FAILED: &str = "PAY402_BCOIN_FAILED ";

/// Loaded after `npm ci`: fails unless bcoin and its native modules load.
const VERIFY_JS: &str = "\
const v = require('bcoin/package.json').version;
if (v !== '1.0.2') throw new Error('expected bcoin 1.0.2, found ' + v);
require('bcoin/lib/node/fullnode');
require('bcoin/lib/wallet/plugin');
require('mrmr');
";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(120);
const MEMPOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// A running bcoin regtest node (one OS process), stopped when dropped.
///
/// All methods are synchronous and the handle is `Send + Sync`, so it can be
/// shared (e.g. in an `Arc`) with threads or `spawn_blocking` tasks.
///
/// ```no_run
/// use pay402_testkit::bcoin::Bcoin;
///
/// let node = Bcoin::start()?;
/// assert_eq!(node.block_count()?, 0);
/// // Point a Bitcoin-Core-RPC client (e.g. ldk-node's bitcoind chain source) at it:
/// let (host, port) = (node.rpc_host(), node.rpc_port());
/// let (user, pass) = (node.rpc_user(), node.rpc_password());
/// # let _ = (host, port, user, pass);
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub struct Bcoin {
    process: Mutex<PeerProcess>,
    pid: u32,
    rpc_port: u16,
    wallet_port: u16,
    api_key: String,
    auth_header: String,
    agent: ureq::Agent,
    next_id: AtomicU64,
    mining_address: Mutex<Option<String>>,
}

impl std::fmt::Debug for Bcoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bcoin")
            .field("pid", &self.pid)
            .field("rpc_url", &self.rpc_url())
            .field("wallet_url", &self.wallet_url())
            .finish_non_exhaustive()
    }
}

impl Bcoin {
    /// The directory bcoin is installed into: `<peers_dir>/bcoin-1.0.2`
    /// (see [`crate::peers_dir`]).
    pub fn cache_dir() -> PathBuf {
        crate::peers_dir().join(format!("bcoin-{BCOIN_VERSION}"))
    }

    /// Installs bcoin into [`Bcoin::cache_dir`] unless a completed install of
    /// the same pinned package files is already there, and returns its
    /// `node_modules` directory.
    ///
    /// Safe to call from several processes at once: one installs (`npm ci`,
    /// with install scripts, about 20-60 s), the others wait on a file lock and
    /// then reuse it. [`Bcoin::start`] calls this itself.
    ///
    /// # Errors
    ///
    /// [`PeerError::MissingProgram`] / [`PeerError::UnusableProgram`] when
    /// `node` or `npm` is missing or too old, [`PeerError::InstallFailed`] with
    /// npm's output when the install or the post-install check fails.
    pub fn install() -> Result<PathBuf, PeerError> {
        NpmInstall {
            peer: PEER,
            dir: Self::cache_dir(),
            package_json: PACKAGE_JSON,
            package_lock: PACKAGE_LOCK,
            verify_js: VERIFY_JS,
            sentinel: "node_modules/bcoin/package.json",
            timeout: INSTALL_TIMEOUT,
            lock_timeout: INSTALL_TIMEOUT + Duration::from_secs(60),
        }
        .ensure()
    }

    /// Installs bcoin if needed (see [`Bcoin::install`]) and starts a fresh,
    /// empty regtest node (height 0) on free loopback ports.
    ///
    /// Returns once the node has printed its READY line and answered
    /// `getblockcount` (typically 0.5-1 s after an install), or fails after
    /// 30 s.
    ///
    /// # Errors
    ///
    /// Any [`Bcoin::install`] error; [`PeerError::StartFailed`] or
    /// [`PeerError::Timeout`] (with the node's stderr) when the node exits,
    /// reports a failure or does not answer in time.
    pub fn start() -> Result<Bcoin, PeerError> {
        let modules = Self::install()?;
        let launcher = place_file(&Self::cache_dir(), "launch.js", LAUNCHER_JS)?;

        let api_key = random_api_key();
        let mut command = Command::new("node");
        command
            .arg(launcher)
            .arg("--modules")
            .arg(&modules)
            .args(["--rpc-port", "0", "--wallet-port", "0"])
            .env("PAY402_BCOIN_API_KEY", &api_key)
            .current_dir(Self::cache_dir());

        let (process, lines) =
            PeerProcess::spawn(PEER, command, &[READY, FAILED]).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    PeerError::MissingProgram {
                        program: "node",
                        peer: PEER,
                        hint: NODE_HINT,
                        source,
                    }
                } else {
                    PeerError::io("spawning `node launch.js` for bcoin", source)
                }
            })?;
        let mut process = process;
        let deadline = Instant::now() + START_TIMEOUT;

        let ready = loop {
            match process.next_line(&lines, deadline) {
                Ok(Some(line)) => {
                    if let Some(info) = line.strip_prefix(READY) {
                        break info.to_owned();
                    }
                    if let Some(reason) = line.strip_prefix(FAILED) {
                        return Err(PeerError::StartFailed {
                            peer: PEER,
                            reason: reason.to_owned(),
                            stderr: process.output(),
                        });
                    }
                }
                Ok(None) => {
                    return Err(PeerError::Timeout {
                        what: "bcoin's READY line".to_owned(),
                        waited: START_TIMEOUT,
                        detail: format!("peer output:\n{}", process.output()),
                    });
                }
                Err(reason) => {
                    return Err(PeerError::StartFailed {
                        peer: PEER,
                        reason,
                        stderr: process.output(),
                    });
                }
            }
        };
        drop(lines);

        let info: Value = serde_json::from_str(&ready).map_err(|e| {
            PeerError::protocol("bcoin launcher READY line", format!("{e}: {ready}"))
        })?;
        let port = |key: &str| {
            info[key]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    PeerError::protocol("bcoin launcher READY line", format!("no {key}: {ready}"))
                })
        };
        let (rpc_port, wallet_port) = (port("rpcPort")?, port("walletPort")?);
        let pid = process.pid();
        if info["pid"].as_u64() != Some(u64::from(pid)) {
            return Err(PeerError::StartFailed {
                peer: PEER,
                reason: format!(
                    "the READY line came from PID {} but the spawned process is {pid}; \
                     the node would not be stoppable by its PID",
                    info["pid"]
                ),
                stderr: process.output(),
            });
        }

        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let auth_header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{RPC_USER}:{api_key}"))
        );
        let node = Bcoin {
            process: Mutex::new(process),
            pid,
            rpc_port,
            wallet_port,
            api_key,
            auth_header,
            agent,
            next_id: AtomicU64::new(1),
            mining_address: Mutex::new(None),
        };

        // READY means both servers listen; still, wait for a real RPC answer.
        loop {
            let last_error = match node.block_count() {
                Ok(_) => return Ok(node),
                Err(e) => e.to_string(),
            };
            if let Some(status) = node.lock_process().try_status() {
                return Err(PeerError::StartFailed {
                    peer: PEER,
                    reason: format!("the node exited with {status} before answering RPC"),
                    stderr: node.log_tail(),
                });
            }
            if Instant::now() > deadline {
                return Err(PeerError::Timeout {
                    what: "bcoin's first `getblockcount` answer".to_owned(),
                    waited: START_TIMEOUT,
                    detail: format!(
                        "last error: {last_error}\npeer output:\n{}",
                        node.log_tail()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock_process(&self) -> std::sync::MutexGuard<'_, PeerProcess> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The OS process id of the node (`node launch.js`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last ~32 KiB of the node's stderr and non-protocol stdout, for
    /// diagnostics (set `PAY402_BCOIN_LOG_LEVEL=debug` to make bcoin log).
    pub fn log_tail(&self) -> String {
        self.lock_process().output()
    }

    /// The host the JSON-RPC server listens on: always `127.0.0.1`.
    pub fn rpc_host(&self) -> &str {
        "127.0.0.1"
    }

    /// The JSON-RPC (and node HTTP API) port.
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    /// The RPC user name for HTTP basic auth ([`RPC_USER`]; any name works).
    pub fn rpc_user(&self) -> &str {
        RPC_USER
    }

    /// The RPC password: this node's random API key.
    pub fn rpc_password(&self) -> &str {
        &self.api_key
    }

    /// The JSON-RPC endpoint, `http://127.0.0.1:<rpc_port>`.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// The wallet HTTP API port.
    pub fn wallet_port(&self) -> u16 {
        self.wallet_port
    }

    /// The wallet HTTP API base URL, `http://127.0.0.1:<wallet_port>`
    /// (same basic-auth credentials as the RPC; the default wallet is
    /// `primary`).
    pub fn wallet_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.wallet_port)
    }

    fn http(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), PeerError> {
        let http_err = |e: ureq::Error| PeerError::Http {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let mut response = match (method, body) {
            ("GET", _) => self
                .agent
                .get(url)
                .header("Authorization", &self.auth_header)
                .call()
                .map_err(http_err)?,
            (_, body) => self
                .agent
                .post(url)
                .header("Authorization", &self.auth_header)
                .content_type("application/json")
                .send(body.map_or_else(|| "{}".to_owned(), Value::to_string))
                .map_err(http_err)?,
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(http_err)?;
        Ok((status, text))
    }

    /// Calls a Bitcoin-Core-style JSON-RPC method with HTTP basic auth and
    /// returns its `result`.
    ///
    /// `params` is normally a JSON array; `Value::Null` means no parameters.
    ///
    /// # Errors
    ///
    /// [`PeerError::Rpc`] when the node answers with a JSON-RPC error,
    /// [`PeerError::Http`] on transport errors or non-JSON answers.
    ///
    /// ```no_run
    /// # let node = pay402_testkit::bcoin::Bcoin::start()?;
    /// use serde_json::json;
    /// let hash = node.rpc("getblockhash", json!([0]))?;
    /// let header = node.rpc("getblockheader", json!([hash]))?;
    /// assert_eq!(header["bits"], "207fffff");
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, PeerError> {
        let params = if params.is_null() { json!([]) } else { params };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let url = self.rpc_url();
        let (status, text) = self.http("POST", &url, Some(&body))?;
        if status == 401 {
            return Err(PeerError::Http {
                url,
                message: format!("401 Unauthorized calling `{method}`: wrong RPC credentials"),
            });
        }
        let reply: Value = serde_json::from_str(&text).map_err(|_| PeerError::Http {
            url: url.clone(),
            message: format!(
                "`{method}`: HTTP {status} with a non-JSON body: {}",
                snippet(&text)
            ),
        })?;
        if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
            return Err(PeerError::Rpc {
                method: method.to_owned(),
                code: error["code"].as_i64().unwrap_or(0),
                message: error["message"]
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned),
            });
        }
        if !(200..300).contains(&status) {
            return Err(PeerError::Http {
                url,
                message: format!("`{method}`: HTTP {status}: {}", snippet(&text)),
            });
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Calls the wallet HTTP API: `method` is `"GET"` or `"POST"`, `path`
    /// starts with `/` (e.g. `/wallet/primary/balance`). Returns the JSON body.
    ///
    /// # Errors
    ///
    /// [`PeerError::Http`] on transport errors or a non-200 answer (with the
    /// wallet's error message).
    pub fn wallet_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PeerError> {
        let url = format!("{}{path}", self.wallet_url());
        let (status, text) = self.http(method, &url, body)?;
        let reply: Option<Value> = serde_json::from_str(&text).ok();
        if status != 200 {
            let message = reply
                .as_ref()
                .and_then(|r| r["error"]["message"].as_str())
                .map_or_else(|| snippet(&text), str::to_owned);
            return Err(PeerError::Http {
                url,
                message: format!("HTTP {status}: {message}"),
            });
        }
        reply.ok_or_else(|| PeerError::Http {
            url,
            message: format!("HTTP {status} with a non-JSON body: {}", snippet(&text)),
        })
    }

    /// The current chain height (`getblockcount`).
    ///
    /// # Errors
    ///
    /// Any [`Bcoin::rpc`] error.
    pub fn block_count(&self) -> Result<u64, PeerError> {
        let v = self.rpc("getblockcount", Value::Null)?;
        v.as_u64()
            .ok_or_else(|| PeerError::protocol("getblockcount", format!("not a height: {v}")))
    }

    /// The tip's block hash (`getbestblockhash`).
    ///
    /// # Errors
    ///
    /// Any [`Bcoin::rpc`] error.
    pub fn best_block_hash(&self) -> Result<String, PeerError> {
        as_string(
            "getbestblockhash",
            self.rpc("getbestblockhash", Value::Null)?,
        )
    }

    /// The hash of the block at `height` (`getblockhash`).
    ///
    /// # Errors
    ///
    /// Any [`Bcoin::rpc`] error (e.g. a height above the tip).
    pub fn get_block_hash(&self, height: u64) -> Result<String, PeerError> {
        as_string("getblockhash", self.rpc("getblockhash", json!([height]))?)
    }

    /// A fresh receive address of the node's `primary` wallet (a base58
    /// P2PKH `m…`/`n…` address with Bitcoin Core's regtest prefix, which
    /// rust-bitcoin accepts for `Network::Regtest`).
    ///
    /// # Errors
    ///
    /// Any [`Bcoin::wallet_request`] error.
    pub fn new_address(&self) -> Result<String, PeerError> {
        let reply = self.wallet_request(
            "POST",
            "/wallet/primary/address",
            Some(&json!({"account": "default"})),
        )?;
        reply["address"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| PeerError::protocol("POST /wallet/primary/address", reply.to_string()))
    }

    fn mining_address(&self) -> Result<String, PeerError> {
        let mut cached = self
            .mining_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(address) = cached.as_ref() {
            return Ok(address.clone());
        }
        let address = self.new_address()?;
        *cached = Some(address.clone());
        Ok(address)
    }

    /// Mines `blocks` blocks paying their coinbase to the node's own wallet
    /// (`generatetoaddress`), including every mempool transaction, and returns
    /// their hashes. Returns once the wallet has processed them.
    ///
    /// Mine [`MATURITY_HEIGHT`] (101) blocks before spending wallet coins;
    /// [`Bcoin::fund`] does that by itself when needed.
    ///
    /// # Errors
    ///
    /// Any [`Bcoin::rpc`] / [`Bcoin::wallet_request`] error.
    pub fn mine(&self, blocks: u32) -> Result<Vec<String>, PeerError> {
        let address = self.mining_address()?;
        self.mine_to(blocks, &address)
    }

    /// Mines `blocks` blocks paying their coinbase to `address`
    /// (`generatetoaddress`) and returns their hashes.
    ///
    /// # Errors
    ///
    /// Any [`Bcoin::rpc`] error (e.g. an address bcoin cannot parse).
    pub fn mine_to(&self, blocks: u32, address: &str) -> Result<Vec<String>, PeerError> {
        let hashes = self.rpc("generatetoaddress", json!([blocks, address]))?;
        let hashes: Option<Vec<String>> = hashes.as_array().and_then(|a| {
            a.iter()
                .map(|h| h.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        });
        match hashes {
            Some(h) if h.len() == blocks as usize => Ok(h),
            other => Err(PeerError::protocol(
                "generatetoaddress",
                format!("expected {blocks} block hashes, got {other:?}"),
            )),
        }
    }

    /// Sends `sats` satoshis from the node's wallet to `address` (any address
    /// bcoin can pay: `bcrt1q…`, `m…`/`n…`, `2…`; not taproot) and returns the
    /// txid once the transaction is in the mempool. Mine a block to confirm it.
    ///
    /// If the chain is below [`MATURITY_HEIGHT`], first mines blocks up to it
    /// so the wallet has a spendable coinbase. Uses the wallet HTTP API
    /// (`POST /wallet/primary/send`) at the wallet's default fee rate.
    ///
    /// # Errors
    ///
    /// [`PeerError::Http`] with the wallet's message (e.g. invalid address,
    /// not enough funds), or a [`PeerError::Timeout`] if the transaction does
    /// not reach the mempool within 10 s.
    pub fn fund(&self, address: &str, sats: u64) -> Result<String, PeerError> {
        let height = self.block_count()?;
        if height < MATURITY_HEIGHT {
            let missing = u32::try_from(MATURITY_HEIGHT - height).unwrap_or(u32::MAX);
            self.mine(missing)?;
        }
        let reply = self.wallet_request(
            "POST",
            "/wallet/primary/send",
            Some(&json!({"outputs": [{"address": address, "value": sats}]})),
        )?;
        let txid = reply["hash"].as_str().map(str::to_owned).ok_or_else(|| {
            PeerError::protocol("POST /wallet/primary/send", format!("no `hash` in {reply}"))
        })?;
        self.wait_for_tx(&txid, MEMPOOL_TIMEOUT)?;
        Ok(txid)
    }

    /// `getrawtransaction <txid> true`: the decoded transaction (Core-style
    /// JSON with `hex`, `vout`, `confirmations`, ...), from the mempool or the
    /// chain (the node indexes all transactions).
    ///
    /// # Errors
    ///
    /// [`PeerError::Rpc`] when the node does not know the transaction.
    pub fn get_raw_transaction(&self, txid: &str) -> Result<Value, PeerError> {
        self.rpc("getrawtransaction", json!([txid, true]))
    }

    /// `getrawtransaction <txid> false`: the transaction's consensus encoding
    /// as hex.
    ///
    /// # Errors
    ///
    /// [`PeerError::Rpc`] when the node does not know the transaction.
    pub fn get_raw_transaction_hex(&self, txid: &str) -> Result<String, PeerError> {
        as_string(
            "getrawtransaction",
            self.rpc("getrawtransaction", json!([txid, false]))?,
        )
    }

    /// `gettxout <txid> <vout> true`: the unspent output (Core-style JSON with
    /// `value` in BTC, `confirmations`, `scriptPubKey`), or `None` when it is
    /// spent or does not exist. Mempool outputs are included.
    ///
    /// # Errors
    ///
    /// Any [`Bcoin::rpc`] error.
    pub fn get_tx_out(&self, txid: &str, vout: u32) -> Result<Option<Value>, PeerError> {
        let v = self.rpc("gettxout", json!([txid, vout, true]))?;
        Ok((!v.is_null()).then_some(v))
    }

    /// `sendrawtransaction <hex>`: broadcasts a signed transaction, returns
    /// its txid.
    ///
    /// # Errors
    ///
    /// [`PeerError::Rpc`] when the node rejects it.
    pub fn send_raw_transaction(&self, tx_hex: &str) -> Result<String, PeerError> {
        as_string(
            "sendrawtransaction",
            self.rpc("sendrawtransaction", json!([tx_hex]))?,
        )
    }

    /// Polls `getrawtransaction` until the node knows `txid` (mempool or
    /// chain) and returns the decoded transaction.
    ///
    /// # Errors
    ///
    /// [`PeerError::Timeout`] after `timeout`; transport errors at once.
    pub fn wait_for_tx(&self, txid: &str, timeout: Duration) -> Result<Value, PeerError> {
        poll_until(
            &format!("transaction {txid} on bcoin"),
            timeout,
            || match self.get_raw_transaction(txid) {
                Ok(tx) => Ok(Some(tx)),
                Err(PeerError::Rpc { .. }) => Ok(None),
                Err(e) => Err(e),
            },
        )
    }

    /// Polls until `txid` has at least `confirmations` confirmations and
    /// returns the decoded transaction. It does not mine: call
    /// [`Bcoin::mine`] (or let the code under test do it).
    ///
    /// # Errors
    ///
    /// [`PeerError::Timeout`] after `timeout`; transport errors at once.
    pub fn wait_for_confirmations(
        &self,
        txid: &str,
        confirmations: u64,
        timeout: Duration,
    ) -> Result<Value, PeerError> {
        poll_until(
            &format!("{confirmations} confirmation(s) of {txid} on bcoin"),
            timeout,
            || match self.get_raw_transaction(txid) {
                Ok(tx) if tx["confirmations"].as_u64().unwrap_or(0) >= confirmations => {
                    Ok(Some(tx))
                }
                Ok(_) | Err(PeerError::Rpc { .. }) => Ok(None),
                Err(e) => Err(e),
            },
        )
    }

    /// Polls until the chain height is at least `height`; returns the height.
    ///
    /// # Errors
    ///
    /// [`PeerError::Timeout`] after `timeout`; transport errors at once.
    pub fn wait_for_block_count(&self, height: u64, timeout: Duration) -> Result<u64, PeerError> {
        poll_until(&format!("bcoin height {height}"), timeout, || {
            let n = self.block_count()?;
            Ok((n >= height).then_some(n))
        })
    }
}

fn as_string(context: &str, v: Value) -> Result<String, PeerError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| PeerError::protocol(context, format!("expected a string, got {v}")))
}

fn snippet(text: &str) -> String {
    let mut s: String = text.chars().take(500).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// 128 random bits as hex, from the OS; falls back to std's per-process
/// random hasher keys (still unpredictable enough for a loopback test key).
fn random_api_key() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_os.is_err() {
        use std::hash::{BuildHasher as _, Hasher as _};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
