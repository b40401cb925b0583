//! A Bitcoin Core JSON-RPC client implementing [`BitcoinChain`].
//!
//! | Port method | RPC call |
//! |---|---|
//! | [`BitcoinChain::broadcast`] | `getrawtransaction`/`gettxout` pre-checks, `sendrawtransaction <hex>`, then `getrawtransaction` to confirm the node holds it |
//! | [`BitcoinChain::get_transaction`] | `getrawtransaction <txid> true` (+ `getblockheader` for the height) |
//! | [`BitcoinChain::get_tx_out`] | `gettxout <txid> <vout> true` |
//! | [`BitcoinChain::estimate_fee_rate`] | `estimatesmartfee <blocks>` |
//! | [`BitcoinChain::block_height`] | `getblockcount` |
//! | [`BitcoinChain::list_unspent`] | `scantxoutset start ["addr(<address>)"]`; on nodes without it (bcoin), the node's REST `GET /coin/address/<address>` (needs bcoin's address index) |
//!
//! It speaks to Bitcoin Core and to nodes with a Core-compatible RPC (e.g.
//! bcoin).
//!
//! ## Security
//!
//! bitcoind's RPC server speaks plain HTTP, so `http://` URLs are accepted
//! (and `https://` for a TLS-terminating proxy). The credentials travel in
//! clear text with every call: **keep the RPC port on loopback or a private
//! network** (or behind a TLS proxy), never on the public internet. Redirects
//! are not followed, and every response body is capped at 16 MiB.
//!
//! ## Errors
//!
//! Core's JSON-RPC error codes map to [`ChainError`]:
//!
//! | Core code | Meaning | Result |
//! |---|---|---|
//! | -27 `RPC_VERIFY_ALREADY_IN_CHAIN` | already confirmed | [`ChainError::AlreadyKnown`] |
//! | -26 `txn-already-in-mempool` / `txn-already-known` | already in the mempool | [`ChainError::AlreadyKnown`] |
//! | -25 `RPC_VERIFY_ERROR` (missing inputs) | inputs missing or spent | [`ChainError::Conflict`] |
//! | -26 `txn-mempool-conflict` / `missing-inputs` / `bad-txns-inputs-missingorspent` | double spend | [`ChainError::Conflict`] |
//! | -26 (other) and any other code | rejected | [`ChainError::Rejected`] |
//! | -5 `RPC_INVALID_ADDRESS_OR_KEY` on a lookup | not found | `Ok(None)` |
//!
//! Recent Core versions answer a re-broadcast of a mempool transaction with
//! its txid, and bcoin relays asynchronously without reporting rejections.
//! So that every node reports the same outcome, [`BitcoindRpc::broadcast`]
//! first asks whether the node already knows the txid
//! ([`ChainError::AlreadyKnown`]) and whether every input is still unspent
//! ([`ChainError::Conflict`], code -25), and afterwards checks that the node
//! holds the transaction ([`ChainError::Rejected`] if it silently dropped it).
//! bcoin's "Transaction not found." (code -1) counts as not found too.
//!
//! ## Environment
//!
//! [`BitcoindConfig::from_env`] reads:
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `BITCOIND_RPC_URL` | RPC endpoint | `http://127.0.0.1:8332` |
//! | `BITCOIND_RPC_USER` | RPC user name | none |
//! | `BITCOIND_RPC_PASSWORD` | RPC password | none |
//! | `BITCOIND_RPC_COOKIE` | cookie file (`<datadir>/.cookie`, `user:password`), used if `BITCOIND_RPC_USER` is unset | none |
//! | `BITCOIND_TIMEOUT_SECS` | per-call HTTP timeout in seconds | `30` |
//!
//! ## Example
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
//! use pay402_core::chain::BitcoinChain;
//!
//! let rpc = BitcoindRpc::new(BitcoindConfig::from_env()?)?;
//! println!("height {}", rpc.block_height().await?);
//! if let Some(rate) = rpc.estimate_fee_rate(6).await? {
//!     println!("6-block fee rate: {rate}");
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::util::http::{error_chain, secs_var, snippet, url_var};
use async_trait::async_trait;
use base64::Engine;
use bitcoin::consensus::encode;
use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};
use pay402_core::chain::{BitcoinChain, ChainError, FeeRate, TxInfo, TxOutInfo};
use pay402_core::money::Sat;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The URL type of [`BitcoindConfig::url`] (re-exported from `reqwest`).
pub use reqwest::Url;

const BACKEND: &str = "bitcoind";
const CONFIGURE: &str = "configure";

/// The largest response body read from the node (16 MiB).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The default per-call HTTP timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`BitcoindRpc::broadcast`] waits for the node to show a
/// transaction it accepted (bcoin adds it to its mempool asynchronously).
const ACCEPT_WAIT: Duration = Duration::from_secs(2);

/// Core: `RPC_INVALID_ADDRESS_OR_KEY` (unknown transaction).
const RPC_NOT_FOUND: i64 = -5;
/// Core: `RPC_VERIFY_ERROR` (e.g. missing inputs).
const RPC_VERIFY_ERROR: i64 = -25;
/// Core: `RPC_VERIFY_REJECTED`.
const RPC_VERIFY_REJECTED: i64 = -26;
/// Core: `RPC_VERIFY_ALREADY_IN_CHAIN`.
const RPC_ALREADY_IN_CHAIN: i64 = -27;
/// Core and bcoin: `RPC_MISC_ERROR`.
const RPC_MISC_ERROR: i64 = -1;
/// JSON-RPC 2.0 / Core / bcoin: method not found.
const RPC_METHOD_NOT_FOUND: i64 = -32601;

/// How to reach a bitcoind JSON-RPC server.
///
/// `Debug` output redacts the password.
///
/// ```
/// use std::time::Duration;
/// use pay402_backends::bitcoind::BitcoindConfig;
/// let cfg = BitcoindConfig {
///     url: "http://127.0.0.1:18443".parse().unwrap(),
///     user: "alice".into(),
///     password: "s3cret".into(),
///     timeout: Duration::from_secs(10),
/// };
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct BitcoindConfig {
    /// The RPC endpoint, e.g. `http://127.0.0.1:8332`. Keep it on loopback or
    /// a private network: the credentials are sent in clear text over `http`.
    pub url: Url,
    /// The RPC user name (`rpcuser`, or `__cookie__` for cookie auth).
    pub user: String,
    /// The RPC password.
    pub password: String,
    /// Per-call HTTP timeout.
    pub timeout: Duration,
}

impl fmt::Debug for BitcoindConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitcoindConfig")
            .field("url", &self.url.as_str())
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

crate::util::backend_errors!(BACKEND, ChainError);

impl BitcoindConfig {
    /// Reads the configuration from the environment (see the
    /// [module documentation](self)).
    ///
    /// # Errors
    ///
    /// [`ChainError::Unreachable`] (call `configure`) when a variable does not
    /// parse, the cookie file cannot be read, or no credentials are given.
    pub fn from_env() -> Result<BitcoindConfig, ChainError> {
        BitcoindConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`BitcoindConfig::from_env`], reading variables through `var`.
    /// Empty values count as unset.
    ///
    /// ```
    /// use pay402_backends::bitcoind::BitcoindConfig;
    /// let cfg = BitcoindConfig::from_vars(|name| match name {
    ///     "BITCOIND_RPC_URL" => Some("http://127.0.0.1:18443".into()),
    ///     "BITCOIND_RPC_USER" => Some("alice".into()),
    ///     "BITCOIND_RPC_PASSWORD" => Some("pw".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(cfg.user, "alice");
    /// assert_eq!(cfg.timeout.as_secs(), 30);
    /// assert!(BitcoindConfig::from_vars(|_| None).is_err()); // no credentials
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`BitcoindConfig::from_env`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<BitcoindConfig, ChainError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let url_text = get("BITCOIND_RPC_URL").unwrap_or_else(|| "http://127.0.0.1:8332".into());
        let url = url_var("BITCOIND_RPC_URL", &url_text).map_err(config_error)?;
        let (user, password) = match (get("BITCOIND_RPC_USER"), get("BITCOIND_RPC_COOKIE")) {
            (Some(user), _) => (
                user.trim().to_owned(),
                get("BITCOIND_RPC_PASSWORD").unwrap_or_default(),
            ),
            (None, Some(path)) => {
                let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                    config_error(format!("cannot read BITCOIND_RPC_COOKIE {path:?}: {e}"))
                })?);
                let (user, password) = text.trim().split_once(':').ok_or_else(|| {
                    config_error(format!(
                        "BITCOIND_RPC_COOKIE {path:?} is not of the form user:password"
                    ))
                })?;
                (user.to_owned(), password.to_owned())
            }
            (None, None) => {
                return Err(config_error(
                    "set BITCOIND_RPC_USER and BITCOIND_RPC_PASSWORD, or BITCOIND_RPC_COOKIE",
                ));
            }
        };
        let timeout = secs_var(
            "BITCOIND_TIMEOUT_SECS",
            get("BITCOIND_TIMEOUT_SECS"),
            DEFAULT_TIMEOUT,
        )
        .map_err(config_error)?;
        Ok(BitcoindConfig {
            url,
            user,
            password,
            timeout,
        })
    }
}

/// A Bitcoin Core JSON-RPC client; see the [module documentation](self).
pub struct BitcoindRpc {
    http: reqwest::Client,
    url: Url,
    auth: HeaderValue,
    next_id: AtomicU64,
    /// Set once the node answered that it has no `scantxoutset` (bcoin).
    no_scantxoutset: AtomicBool,
}

impl fmt::Debug for BitcoindRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitcoindRpc")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// Why an RPC call failed, before it becomes a [`ChainError`].
enum RpcFail {
    /// A transport, HTTP or parse failure, already a `ChainError`.
    Chain(ChainError),
    /// The node answered a JSON-RPC error.
    Rpc { code: i64, message: String },
}

impl From<ChainError> for RpcFail {
    fn from(e: ChainError) -> Self {
        RpcFail::Chain(e)
    }
}

impl RpcFail {
    /// Any RPC error as [`ChainError::Rejected`].
    fn rejected(self, call: &'static str) -> ChainError {
        match self {
            RpcFail::Chain(e) => e,
            RpcFail::Rpc { code, message } => ChainError::Rejected {
                backend: BACKEND,
                call,
                code,
                message,
            },
        }
    }
}

/// Whether an RPC error means "no such transaction" (Core -5; bcoin -1
/// "Transaction not found.").
fn is_not_found(code: i64, message: &str) -> bool {
    code == RPC_NOT_FOUND
        || (code == RPC_MISC_ERROR && message.to_ascii_lowercase().contains("not found"))
}

/// Maps a `sendrawtransaction` error by Core's codes and reject reasons.
fn broadcast_error(code: i64, message: String) -> ChainError {
    let lower = message.to_ascii_lowercase();
    let already = [
        "already-in-mempool",
        "already-known",
        "already in block chain",
    ]
    .iter()
    .any(|m| lower.contains(m));
    let conflict = [
        "mempool-conflict",
        "missing-inputs",
        "missingorspent",
        "missing inputs",
    ]
    .iter()
    .any(|m| lower.contains(m));
    match code {
        RPC_ALREADY_IN_CHAIN => ChainError::AlreadyKnown {
            backend: BACKEND,
            code,
            message,
        },
        RPC_VERIFY_ERROR => ChainError::Conflict {
            backend: BACKEND,
            code,
            message,
        },
        RPC_VERIFY_REJECTED if already => ChainError::AlreadyKnown {
            backend: BACKEND,
            code,
            message,
        },
        RPC_VERIFY_REJECTED if conflict => ChainError::Conflict {
            backend: BACKEND,
            code,
            message,
        },
        _ => ChainError::Rejected {
            backend: BACKEND,
            call: "sendrawtransaction",
            code,
            message,
        },
    }
}

/// Converts a BTC amount as Core prints it (a JSON number) to satoshis.
fn btc_to_sat(v: &Value) -> Option<u64> {
    let btc = v.as_f64()?;
    let sats = (btc * 100_000_000.0).round();
    (btc.is_finite() && (0.0..=2.1e15).contains(&sats)).then_some(sats as u64)
}

/// Reads a response body of at most `max` bytes.
async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
    call: &'static str,
) -> Result<Vec<u8>, ChainError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| unreachable(call, error_chain(&e)))?
    {
        if out.len() + chunk.len() > max {
            return Err(invalid(call, format!("response larger than {max} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl BitcoindRpc {
    /// Builds a client. No call is made until a port method is used.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    /// let rpc = BitcoindRpc::new(BitcoindConfig {
    ///     url: "http://127.0.0.1:18443".parse().unwrap(),
    ///     user: "u".into(),
    ///     password: "p".into(),
    ///     timeout: Duration::from_secs(5),
    /// });
    /// assert!(rpc.is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ChainError::Unreachable`] (call `configure`) when the URL is not
    /// `http`/`https`, carries credentials of its own, or the HTTP client
    /// cannot be built.
    pub fn new(config: BitcoindConfig) -> Result<BitcoindRpc, ChainError> {
        let url = config.url;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_error(format!(
                "RPC URL scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(config_error(
                "put the RPC credentials in user/password, not in the URL",
            ));
        }
        let token = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", config.user, config.password)),
        );
        let mut auth = HeaderValue::from_str(&format!("Basic {}", token.as_str()))
            .map_err(|_| config_error("the RPC credentials are not valid in a header"))?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| config_error(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(BitcoindRpc {
            http,
            url,
            auth,
            next_id: AtomicU64::new(1),
            no_scantxoutset: AtomicBool::new(false),
        })
    }

    /// One JSON-RPC call; returns `result`.
    async fn call(&self, method: &'static str, params: Value) -> Result<Value, RpcFail> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let resp = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(method, error_chain(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(unreachable(
                method,
                format!("HTTP {status}: wrong RPC credentials or address not allowed"),
            )
            .into());
        }
        let bytes = read_limited(resp, MAX_BODY_BYTES, method).await?;
        let reply: Value = serde_json::from_slice(&bytes).map_err(|_| {
            invalid(
                method,
                format!("HTTP {status} with a non-JSON body: {}", snippet(&bytes)),
            )
        })?;
        if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| err.to_string(), str::to_owned);
            return Err(RpcFail::Rpc { code, message });
        }
        if !status.is_success() {
            return Err(invalid(method, format!("HTTP {status}: {}", snippet(&bytes))).into());
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    /// `getrawtransaction <txid> true`, `None` when unknown.
    async fn raw_transaction(&self, txid: &Txid) -> Result<Option<Value>, ChainError> {
        const CALL: &str = "getrawtransaction";
        match self.call(CALL, json!([txid.to_string(), true])).await {
            Ok(v) if v.is_null() => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(RpcFail::Rpc { code, message }) if is_not_found(code, &message) => Ok(None),
            Err(e) => Err(e.rejected(CALL)),
        }
    }

    /// bcoin's REST `GET /coin/address/<address>` (mempool included, outputs
    /// spent in the mempool left out), for nodes without `scantxoutset`.
    async fn coins_by_address(
        &self,
        address: &bitcoin::Address,
    ) -> Result<Vec<(OutPoint, TxOutInfo)>, ChainError> {
        const CALL: &str = "coin/address";
        let url = self
            .url
            .join(&format!("coin/address/{address}"))
            .map_err(|e| config_error(format!("{CALL}: cannot build the URL: {e}")))?;
        let resp = self
            .http
            .get(url)
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| unreachable(CALL, error_chain(&e)))?;
        let status = resp.status();
        let bytes = read_limited(resp, MAX_BODY_BYTES, CALL).await?;
        if !status.is_success() {
            return Err(ChainError::Rejected {
                backend: BACKEND,
                call: "list_unspent",
                code: i64::from(status.as_u16()),
                message: format!(
                    "the node has neither `scantxoutset` nor an address index                      (`GET /coin/address` answered HTTP {status}: {})",
                    snippet(&bytes)
                ),
            });
        }
        let coins: Value = serde_json::from_slice(&bytes)
            .map_err(|_| invalid(CALL, format!("not JSON: {}", snippet(&bytes))))?;
        let tip = self.block_height().await?;
        // bcoin indexes addresses by hash160: the P2PKH and P2WPKH addresses
        // of one key list each other's coins. Keep the address's own.
        let script = address.script_pubkey();
        let mut listed = parse_bcoin_coins(&coins, tip)?;
        listed.retain(|(_, out)| out.script_pubkey == script);
        Ok(listed)
    }

    /// Waits up to [`ACCEPT_WAIT`] for the node to show `txid`.
    async fn wait_accepted(&self, txid: &Txid) -> Result<bool, ChainError> {
        let deadline = tokio::time::Instant::now() + ACCEPT_WAIT;
        loop {
            if self.raw_transaction(txid).await?.is_some() {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[async_trait]
impl BitcoinChain for BitcoindRpc {
    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        const CALL: &str = "sendrawtransaction";
        let txid = tx.compute_txid();
        if self.raw_transaction(&txid).await?.is_some() {
            return Err(ChainError::AlreadyKnown {
                backend: BACKEND,
                code: RPC_ALREADY_IN_CHAIN,
                message: format!("transaction {txid} is already in the mempool or the chain"),
            });
        }
        if !tx.is_coinbase() {
            for input in &tx.input {
                if self.get_tx_out(&input.previous_output).await?.is_none() {
                    return Err(ChainError::Conflict {
                        backend: BACKEND,
                        code: RPC_VERIFY_ERROR,
                        message: format!(
                            "bad-txns-inputs-missingorspent: input {} is missing or spent",
                            input.previous_output
                        ),
                    });
                }
            }
        }
        let hex = encode::serialize_hex(tx);
        let answer = match self.call(CALL, json!([hex])).await {
            Ok(v) => v,
            Err(RpcFail::Chain(e)) => return Err(e),
            Err(RpcFail::Rpc { code, message }) => return Err(broadcast_error(code, message)),
        };
        let returned = answer
            .as_str()
            .and_then(|s| s.parse::<Txid>().ok())
            .ok_or_else(|| invalid(CALL, format!("expected a txid, got {answer}")))?;
        if returned != txid {
            return Err(invalid(
                CALL,
                format!("node answered txid {returned}, expected {txid}"),
            ));
        }
        if !self.wait_accepted(&txid).await? {
            return Err(ChainError::Rejected {
                backend: BACKEND,
                call: CALL,
                code: RPC_VERIFY_REJECTED,
                message: format!(
                    "the node answered {txid} but does not hold the transaction \
                     (it was dropped without an error)"
                ),
            });
        }
        Ok(txid)
    }

    async fn get_transaction(&self, txid: &Txid) -> Result<Option<TxInfo>, ChainError> {
        const CALL: &str = "getrawtransaction";
        let Some(v) = self.raw_transaction(txid).await? else {
            return Ok(None);
        };
        let hex = v
            .get("hex")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(CALL, "no `hex` field"))?;
        let tx: Transaction = encode::deserialize_hex(hex)
            .map_err(|e| invalid(CALL, format!("transaction does not decode: {e}")))?;
        if tx.compute_txid() != *txid {
            return Err(invalid(CALL, "the returned transaction has another txid"));
        }
        let confirmations = match v.get("confirmations") {
            None | Some(Value::Null) => 0,
            Some(c) => c
                .as_i64()
                .ok_or_else(|| invalid(CALL, format!("`confirmations` {c} is not an integer")))?
                .max(0)
                .unsigned_abs(),
        };
        let block_hash = v.get("blockhash").and_then(Value::as_str);
        let block_height = match (confirmations, block_hash) {
            (0, _) | (_, None) => None,
            (_, Some(hash)) => {
                const HEADER: &str = "getblockheader";
                let header = self
                    .call(HEADER, json!([hash, true]))
                    .await
                    .map_err(|e| e.rejected(HEADER))?;
                Some(
                    header
                        .get("height")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| invalid(HEADER, "no `height` field"))?,
                )
            }
        };
        Ok(Some(TxInfo {
            tx,
            confirmations,
            block_height,
        }))
    }

    async fn get_tx_out(&self, outpoint: &OutPoint) -> Result<Option<TxOutInfo>, ChainError> {
        const CALL: &str = "gettxout";
        let v = match self
            .call(
                CALL,
                json!([outpoint.txid.to_string(), outpoint.vout, true]),
            )
            .await
        {
            Ok(v) => v,
            Err(RpcFail::Rpc { code, message }) if is_not_found(code, &message) => {
                return Ok(None);
            }
            Err(e) => return Err(e.rejected(CALL)),
        };
        if v.is_null() {
            return Ok(None);
        }
        let value = v
            .get("value")
            .and_then(btc_to_sat)
            .ok_or_else(|| invalid(CALL, "missing or invalid `value`"))?;
        let script_hex = v
            .pointer("/scriptPubKey/hex")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(CALL, "no `scriptPubKey.hex`"))?;
        let script_pubkey = ScriptBuf::from_hex(script_hex)
            .map_err(|e| invalid(CALL, format!("`scriptPubKey.hex` is not hex: {e}")))?;
        let confirmations = v
            .get("confirmations")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid(CALL, "no integer `confirmations`"))?
            .max(0)
            .unsigned_abs();
        let coinbase = v.get("coinbase").and_then(Value::as_bool).unwrap_or(false);
        Ok(Some(TxOutInfo {
            value: Sat(value),
            script_pubkey,
            confirmations,
            coinbase,
        }))
    }

    async fn estimate_fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError> {
        const CALL: &str = "estimatesmartfee";
        let v = self
            .call(CALL, json!([target_blocks]))
            .await
            .map_err(|e| e.rejected(CALL))?;
        match v.get("feerate") {
            None | Some(Value::Null) => Ok(None),
            Some(rate) => {
                let per_kvb = btc_to_sat(rate).ok_or_else(|| {
                    invalid(CALL, format!("`feerate` {rate} is not a BTC amount"))
                })?;
                // bcoin answers a negative or zero rate when it has no estimate.
                Ok((per_kvb > 0).then(|| FeeRate::from_sat_per_kvb(per_kvb)))
            }
        }
    }

    async fn block_height(&self) -> Result<u64, ChainError> {
        const CALL: &str = "getblockcount";
        let v = self
            .call(CALL, json!([]))
            .await
            .map_err(|e| e.rejected(CALL))?;
        v.as_u64()
            .ok_or_else(|| invalid(CALL, format!("expected a height, got {v}")))
    }

    async fn list_unspent(
        &self,
        address: &bitcoin::Address,
    ) -> Result<Vec<(OutPoint, TxOutInfo)>, ChainError> {
        const CALL: &str = "scantxoutset";
        if !self.no_scantxoutset.load(Ordering::Relaxed) {
            let scan = json!(["start", [format!("addr({address})")]]);
            match self.call(CALL, scan).await {
                Ok(v) => return parse_scan(&v, &address.script_pubkey()),
                Err(RpcFail::Rpc { code, .. }) if code == RPC_METHOD_NOT_FOUND => {
                    self.no_scantxoutset.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e.rejected(CALL)),
            }
        }
        self.coins_by_address(address).await
    }
}

/// The confirmations of an output created at `height` when the tip is `tip`.
fn confirmations_at(tip: u64, height: u64) -> u64 {
    tip.saturating_sub(height).saturating_add(1)
}

/// Parses a `scantxoutset start` answer (Core 0.17+). Every output must pay
/// `script` (the scanned address).
fn parse_scan(v: &Value, script: &ScriptBuf) -> Result<Vec<(OutPoint, TxOutInfo)>, ChainError> {
    const CALL: &str = "scantxoutset";
    if v.get("success").and_then(Value::as_bool) == Some(false) {
        return Err(ChainError::Rejected {
            backend: BACKEND,
            call: CALL,
            code: 0,
            message: "the scan was aborted".to_owned(),
        });
    }
    let tip = v
        .get("height")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(CALL, "no `height`"))?;
    let unspents = v
        .get("unspents")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(CALL, "no `unspents` array"))?;
    let mut out = Vec::with_capacity(unspents.len());
    for u in unspents {
        let txid = u
            .get("txid")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Txid>().ok())
            .ok_or_else(|| invalid(CALL, "missing or invalid `txid`"))?;
        let vout = u
            .get("vout")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(CALL, "missing or invalid `vout`"))?;
        let value = u
            .get("amount")
            .and_then(btc_to_sat)
            .ok_or_else(|| invalid(CALL, "missing or invalid `amount`"))?;
        let spk = u
            .get("scriptPubKey")
            .and_then(Value::as_str)
            .and_then(|h| ScriptBuf::from_hex(h).ok())
            .ok_or_else(|| invalid(CALL, "missing or invalid `scriptPubKey`"))?;
        if spk != *script {
            return Err(invalid(CALL, "an output does not pay the scanned address"));
        }
        let height = u
            .get("height")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(CALL, "missing or invalid `height`"))?;
        out.push((
            OutPoint::new(txid, vout),
            TxOutInfo {
                value: Sat(value),
                script_pubkey: spk,
                confirmations: confirmations_at(tip, height),
                coinbase: u.get("coinbase").and_then(Value::as_bool).unwrap_or(false),
            },
        ));
    }
    Ok(out)
}

/// Parses bcoin's `GET /coin/address/<address>` answer: coins with `hash`
/// (txid), `index`, `value` (satoshis), `script` (hex), `height` (-1 in the
/// mempool) and `coinbase`.
fn parse_bcoin_coins(v: &Value, tip: u64) -> Result<Vec<(OutPoint, TxOutInfo)>, ChainError> {
    const CALL: &str = "coin/address";
    let coins = v
        .as_array()
        .ok_or_else(|| invalid(CALL, "expected an array of coins"))?;
    let mut out = Vec::with_capacity(coins.len());
    for c in coins {
        let txid = c
            .get("hash")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Txid>().ok())
            .ok_or_else(|| invalid(CALL, "missing or invalid `hash`"))?;
        let vout = c
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(CALL, "missing or invalid `index`"))?;
        let value = c
            .get("value")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(CALL, "missing or invalid `value`"))?;
        let script_pubkey = c
            .get("script")
            .and_then(Value::as_str)
            .and_then(|h| ScriptBuf::from_hex(h).ok())
            .ok_or_else(|| invalid(CALL, "missing or invalid `script`"))?;
        let height = c
            .get("height")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid(CALL, "missing or invalid `height`"))?;
        let confirmations = u64::try_from(height).map_or(0, |h| confirmations_at(tip, h));
        out.push((
            OutPoint::new(txid, vout),
            TxOutInfo {
                value: Sat(value),
                script_pubkey,
                confirmations,
                coinbase: c.get("coinbase").and_then(Value::as_bool).unwrap_or(false),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pay402_core::problem::Reason;

    #[test]
    fn broadcast_errors_map_by_code_and_reason() {
        let e = broadcast_error(-27, "Transaction already in block chain".into());
        assert!(matches!(e, ChainError::AlreadyKnown { code: -27, .. }));
        let e = broadcast_error(-26, "txn-already-in-mempool".into());
        assert!(matches!(e, ChainError::AlreadyKnown { .. }));
        let e = broadcast_error(-25, "bad-txns-inputs-missingorspent".into());
        assert!(matches!(e, ChainError::Conflict { .. }));
        let e = broadcast_error(-26, "txn-mempool-conflict".into());
        assert_eq!(e.reason(), "chain_conflict");
        let e = broadcast_error(-26, "min relay fee not met".into());
        assert!(matches!(e, ChainError::Rejected { code: -26, .. }));
        let e = broadcast_error(-22, "TX decode failed".into());
        assert_eq!(e.reason(), "chain_rejected");
    }

    #[test]
    fn not_found_and_amounts() {
        assert!(is_not_found(
            -5,
            "No such mempool or blockchain transaction"
        ));
        assert!(is_not_found(-1, "Transaction not found."));
        assert!(!is_not_found(-1, "boom"));
        assert_eq!(btc_to_sat(&json!(0.00012345)), Some(12_345));
        assert_eq!(
            btc_to_sat(&json!(21_000_000.0)),
            Some(2_100_000_000_000_000)
        );
        assert_eq!(btc_to_sat(&json!(-1)), None);
        assert_eq!(btc_to_sat(&json!("1")), None);
    }

    #[test]
    fn config_from_vars() {
        let dir = std::env::temp_dir().join(format!("pay402-bitcoind-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cookie = dir.join(".cookie");
        std::fs::write(&cookie, "__cookie__:abc123\n").unwrap();
        let path = cookie.to_string_lossy().into_owned();
        let cfg = BitcoindConfig::from_vars(|name| match name {
            "BITCOIND_RPC_COOKIE" => Some(path.clone()),
            "BITCOIND_TIMEOUT_SECS" => Some("7".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.user, "__cookie__");
        assert_eq!(cfg.password, "abc123");
        assert_eq!(cfg.url.as_str(), "http://127.0.0.1:8332/");
        assert_eq!(cfg.timeout, Duration::from_secs(7));
        assert!(!format!("{cfg:?}").contains("abc123"));

        let err = BitcoindConfig::from_vars(|name| match name {
            "BITCOIND_RPC_USER" => Some("u".into()),
            "BITCOIND_TIMEOUT_SECS" => Some("0".into()),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(err.reason(), "chain_unreachable");
        std::fs::remove_dir_all(&dir).ok();

        let bad = BitcoindConfig {
            url: "ftp://127.0.0.1".parse().unwrap(),
            ..cfg
        };
        assert!(BitcoindRpc::new(bad).is_err());
    }

    #[test]
    fn unspent_listings_parse() {
        let script = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        let txid = "7e1a558c84abd5aaf57999557f4a7205d4b69241b7c9cab6c0795fdd663a51ef";
        let scan = json!({"success": true, "height": 110, "unspents": [
            {"txid": txid, "vout": 1, "scriptPubKey": script.to_hex_string(),
             "amount": 0.001, "coinbase": false, "height": 101}]});
        let got = parse_scan(&scan, &script).unwrap();
        assert_eq!(got[0].0.vout, 1);
        assert_eq!(got[0].1.value, Sat(100_000));
        assert_eq!(got[0].1.confirmations, 10);
        let other = ScriptBuf::from_hex("0014000000000000000000000000000000000000000000").unwrap();
        assert!(parse_scan(&scan, &other).is_err());
        assert!(parse_scan(&json!({"success": false}), &script).is_err());

        let coins = json!([
            {"hash": txid, "index": 0, "value": 5000, "script": script.to_hex_string(), "height": -1, "coinbase": false},
            {"hash": txid, "index": 2, "value": 7000, "script": script.to_hex_string(), "height": 105, "coinbase": true}]);
        let got = parse_bcoin_coins(&coins, 110).unwrap();
        assert_eq!(got[0].1.confirmations, 0);
        assert_eq!((got[1].1.confirmations, got[1].1.coinbase), (6, true));
        assert!(parse_bcoin_coins(&json!({"error": 1}), 1).is_err());
        assert!(parse_bcoin_coins(&json!([{"hash": "zz"}]), 1).is_err());
    }

    #[tokio::test]
    async fn unreachable_node_is_503() {
        let rpc = BitcoindRpc::new(BitcoindConfig {
            url: "http://127.0.0.1:9".parse().unwrap(),
            user: "u".into(),
            password: "p".into(),
            timeout: Duration::from_secs(2),
        })
        .unwrap();
        let err = rpc.block_height().await.unwrap_err();
        assert_eq!(err.status(), 503, "{err}");
    }
}
