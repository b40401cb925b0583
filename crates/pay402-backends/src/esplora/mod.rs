//! An Esplora REST client (Blockstream, mempool.space, self-hosted electrs)
//! implementing [`BitcoinChain`].
//!
//! | Port method | Esplora endpoint |
//! |---|---|
//! | [`BitcoinChain::broadcast`] | `POST /tx` (raw hex body, answers the txid) |
//! | [`BitcoinChain::get_transaction`] | `GET /tx/{txid}/status`, `GET /tx/{txid}/hex` (+ `GET /blocks/tip/height` when confirmed) |
//! | [`BitcoinChain::get_tx_out`] | the transaction as above, then `GET /tx/{txid}/outspend/{vout}` |
//! | [`BitcoinChain::estimate_fee_rate`] | `GET /fee-estimates` |
//! | [`BitcoinChain::block_height`] | `GET /blocks/tip/height` |
//! | [`BitcoinChain::list_unspent`] | `GET /address/{address}/utxo` (+ the transaction, as above, for outputs younger than coinbase maturity, to tell coinbase outputs apart) |
//!
//! ## Security
//!
//! Esplora is a public, unauthenticated API: the client sends no credentials.
//! `https://` URLs are verified against the public web PKI roots; plain
//! `http://` is only accepted to loopback hosts (a local electrs). Redirects
//! are not followed, and every response body is capped at 16 MiB.
//!
//! ## Errors
//!
//! | Answer | Result |
//! |---|---|
//! | `POST /tx` 400 with `already in block chain`, `txn-already-known` or `txn-already-in-mempool` | [`ChainError::AlreadyKnown`] |
//! | `POST /tx` 400 with `bad-txns-inputs-missingorspent`, `txn-mempool-conflict` or `missing-inputs` | [`ChainError::Conflict`] |
//! | `POST /tx` other 400 | [`ChainError::Rejected`] |
//! | 404 on a lookup | `Ok(None)` |
//! | 429, 5xx, connection failures | [`ChainError::Unreachable`] |
//! | other HTTP errors | [`ChainError::Rejected`] (code: the HTTP status) |
//! | a body that does not parse | [`ChainError::InvalidResponse`] |
//!
//! The error code is the Core code embedded in electrs' message
//! (`sendrawtransaction RPC error: {"code":-26,...}`) when there is one, and
//! the HTTP status otherwise.
//!
//! ## Fee estimates
//!
//! `/fee-estimates` maps confirmation targets to sat/vB as floats. The
//! estimate for the largest listed target not above the requested one is
//! used (a faster target never pays less), rounded **up** to a whole
//! [`FeeRate`]. No listed target at or below it, or a zero rate, is `None`.
//!
//! ## Environment
//!
//! [`EsploraConfig::from_env`] reads:
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `ESPLORA_URL` | API base, e.g. `https://blockstream.info/testnet/api` | required |
//! | `ESPLORA_TIMEOUT_SECS` | per-call HTTP timeout in seconds | `30` |
//!
//! ## Example
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pay402_backends::esplora::{Esplora, EsploraConfig};
//! use pay402_core::chain::BitcoinChain;
//!
//! let esplora = Esplora::new(EsploraConfig::from_env()?)?;
//! println!("height {}", esplora.block_height().await?);
//! if let Some(rate) = esplora.estimate_fee_rate(6).await? {
//!     println!("6-block fee rate: {rate}");
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use crate::util::http::{
    api_base, api_https, client_builder, error_chain, secs_var, snippet, url_var,
};
use async_trait::async_trait;
use bitcoin::consensus::encode;
use bitcoin::{OutPoint, Transaction, Txid};
use pay402_core::chain::{BitcoinChain, ChainError, FeeRate, TxInfo, TxOutInfo};
use pay402_core::money::Sat;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value};

/// The URL type of [`EsploraConfig::url`] (re-exported from `reqwest`).
pub use reqwest::Url;

const BACKEND: &str = "esplora";
const CONFIGURE: &str = "configure";

/// The largest response body read from the server (16 MiB).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The default per-call HTTP timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach an Esplora server.
///
/// ```
/// use std::time::Duration;
/// use pay402_backends::esplora::EsploraConfig;
/// let cfg = EsploraConfig {
///     url: "https://blockstream.info/testnet/api".parse().unwrap(),
///     timeout: Duration::from_secs(10),
/// };
/// assert_eq!(cfg.url.host_str(), Some("blockstream.info"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EsploraConfig {
    /// The API base, e.g. `https://mempool.space/api`. `http://` only to
    /// loopback hosts.
    pub url: Url,
    /// Per-call HTTP timeout.
    pub timeout: Duration,
}

crate::util::backend_errors!(BACKEND, ChainError);

impl EsploraConfig {
    /// Reads the configuration from the environment (see the
    /// [module documentation](self)).
    ///
    /// ```no_run
    /// use pay402_backends::esplora::EsploraConfig;
    /// let cfg = EsploraConfig::from_env().expect("set ESPLORA_URL");
    /// println!("{}", cfg.url);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ChainError::Unreachable`] (call `configure`) when `ESPLORA_URL` is
    /// unset or a variable does not parse.
    pub fn from_env() -> Result<EsploraConfig, ChainError> {
        EsploraConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`EsploraConfig::from_env`], reading variables through `var`.
    /// Empty values count as unset.
    ///
    /// ```
    /// use pay402_backends::esplora::EsploraConfig;
    /// let cfg = EsploraConfig::from_vars(|name| match name {
    ///     "ESPLORA_URL" => Some("https://mempool.space/signet/api".into()),
    ///     "ESPLORA_TIMEOUT_SECS" => Some("5".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(cfg.timeout.as_secs(), 5);
    /// assert!(EsploraConfig::from_vars(|_| None).is_err()); // no URL
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`EsploraConfig::from_env`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<EsploraConfig, ChainError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let url_text = get("ESPLORA_URL").ok_or_else(|| {
            config_error("set ESPLORA_URL, e.g. https://blockstream.info/testnet/api")
        })?;
        let url = url_var("ESPLORA_URL", &url_text).map_err(config_error)?;
        let timeout = secs_var(
            "ESPLORA_TIMEOUT_SECS",
            get("ESPLORA_TIMEOUT_SECS"),
            DEFAULT_TIMEOUT,
        )
        .map_err(config_error)?;
        Ok(EsploraConfig { url, timeout })
    }
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

/// The Core error code electrs embeds in its message
/// (`sendrawtransaction RPC error: {"code":-26,"message":"..."}`).
fn embedded_code(message: &str) -> Option<i64> {
    let start = message.find('{')?;
    let v: Value = serde_json::from_str(message[start..].trim()).ok()?;
    v.get("code").and_then(Value::as_i64)
}

/// Maps a `POST /tx` 400 answer.
fn broadcast_error(message: String) -> ChainError {
    let code = embedded_code(&message).unwrap_or(400);
    let lower = message.to_ascii_lowercase();
    let already = [
        "already in block chain",
        "txn-already-known",
        "txn-already-in-mempool",
    ]
    .iter()
    .any(|m| lower.contains(m));
    let conflict = [
        "bad-txns-inputs-missingorspent",
        "txn-mempool-conflict",
        "missing-inputs",
    ]
    .iter()
    .any(|m| lower.contains(m));
    if already {
        ChainError::AlreadyKnown {
            backend: BACKEND,
            code,
            message,
        }
    } else if conflict {
        ChainError::Conflict {
            backend: BACKEND,
            code,
            message,
        }
    } else {
        ChainError::Rejected {
            backend: BACKEND,
            call: "broadcast",
            code,
            message,
        }
    }
}

/// An HTTP failure status as a [`ChainError`].
fn status_error(call: &'static str, status: StatusCode, body: &[u8]) -> ChainError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        unreachable(call, format!("HTTP {status}: {}", snippet(body)))
    } else {
        ChainError::Rejected {
            backend: BACKEND,
            call,
            code: i64::from(status.as_u16()),
            message: snippet(body),
        }
    }
}

/// Rounds a sat/vB float up to a whole [`FeeRate`]; `None` if it is not a
/// finite, non-negative rate below 2^53.
fn ceil_fee_rate(sat_per_vb: f64) -> Option<FeeRate> {
    const MAX: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if !sat_per_vb.is_finite() || sat_per_vb < 0.0 {
        return None;
    }
    let up = sat_per_vb.ceil();
    // `up` is a whole number in [0, 2^53), so the cast is exact.
    (up < MAX).then_some(FeeRate(up as u64))
}

/// Picks the estimate for `target` from a `/fee-estimates` map: the largest
/// listed target not above it, rounded up.
fn pick_fee_rate(map: &Map<String, Value>, target: u16) -> Result<Option<FeeRate>, ChainError> {
    const CALL: &str = "fee-estimates";
    let target = u32::from(target.max(1));
    let mut best: Option<(u32, FeeRate)> = None;
    for (key, value) in map {
        let blocks: u32 = key
            .trim()
            .parse()
            .map_err(|_| invalid(CALL, format!("target {key:?} is not a whole number")))?;
        let rate = value
            .as_f64()
            .and_then(ceil_fee_rate)
            .ok_or_else(|| invalid(CALL, format!("rate {value} for target {key} is not valid")))?;
        if blocks <= target && best.is_none_or(|(b, _)| blocks > b) {
            best = Some((blocks, rate));
        }
    }
    Ok(best.map(|(_, r)| r).filter(|r| r.0 > 0))
}

/// An Esplora REST client; see the [module documentation](self).
///
/// ```
/// use std::time::Duration;
/// use pay402_backends::esplora::{Esplora, EsploraConfig};
/// let esplora = Esplora::new(EsploraConfig {
///     url: "https://mempool.space/api".parse().unwrap(),
///     timeout: Duration::from_secs(10),
/// })
/// .unwrap();
/// assert!(format!("{esplora:?}").contains("mempool.space"));
/// ```
pub struct Esplora {
    http: reqwest::Client,
    base: Url,
}

impl fmt::Debug for Esplora {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Esplora")
            .field("url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Esplora {
    /// Builds a client. No call is made until a port method is used.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pay402_backends::esplora::{Esplora, EsploraConfig};
    /// let cfg = |url: &str| EsploraConfig { url: url.parse().unwrap(), timeout: Duration::from_secs(5) };
    /// assert!(Esplora::new(cfg("https://blockstream.info/api")).is_ok());
    /// assert!(Esplora::new(cfg("http://127.0.0.1:3002")).is_ok());
    /// assert!(Esplora::new(cfg("http://esplora.example")).is_err()); // http only to loopback
    /// ```
    ///
    /// # Errors
    ///
    /// [`ChainError::Unreachable`] (call `configure`) when the URL is not
    /// `https` (or `http` to a loopback host), has no host, carries
    /// credentials, the timeout is zero, or the HTTP client cannot be built.
    pub fn new(config: EsploraConfig) -> Result<Esplora, ChainError> {
        let https = api_https(&config.url, config.timeout, "https://").map_err(config_error)?;
        let base = config.url;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(config_error("the Esplora URL must not carry credentials"));
        }
        let http = client_builder(config.timeout)
            .https_only(https)
            .build()
            .map_err(|e| config_error(format!("cannot build HTTP client: {}", error_chain(&e))))?;
        Ok(Esplora {
            http,
            base: api_base(base),
        })
    }

    fn endpoint(&self, call: &'static str, path: &str) -> Result<Url, ChainError> {
        self.base
            .join(path)
            .map_err(|e| config_error(format!("{call}: cannot build URL for {path:?}: {e}")))
    }

    /// Sends a request; returns the status and the (bounded) body.
    async fn send(
        &self,
        call: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), ChainError> {
        let resp = req
            .send()
            .await
            .map_err(|e| unreachable(call, error_chain(&e)))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(unreachable(
                call,
                format!("HTTP {status}: redirects are not followed"),
            ));
        }
        let body = read_limited(resp, MAX_BODY_BYTES, call).await?;
        Ok((status, body))
    }

    /// `GET path`: `None` on 404, the body on success.
    async fn get(&self, call: &'static str, path: &str) -> Result<Option<Vec<u8>>, ChainError> {
        let url = self.endpoint(call, path)?;
        let (status, body) = self.send(call, self.http.get(url)).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(call, status, &body));
        }
        Ok(Some(body))
    }

    /// `GET path` where 404 is not an answer.
    async fn get_required(&self, call: &'static str, path: &str) -> Result<Vec<u8>, ChainError> {
        self.get(call, path)
            .await?
            .ok_or_else(|| status_error(call, StatusCode::NOT_FOUND, b"not found"))
    }

    fn json(call: &'static str, body: &[u8]) -> Result<Value, ChainError> {
        serde_json::from_slice(body)
            .map_err(|_| invalid(call, format!("not JSON: {}", snippet(body))))
    }
}

#[async_trait]
impl BitcoinChain for Esplora {
    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        const CALL: &str = "broadcast";
        let txid = tx.compute_txid();
        let url = self.endpoint(CALL, "tx")?;
        let req = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "text/plain")
            .body(encode::serialize_hex(tx));
        let (status, body) = self.send(CALL, req).await?;
        if status == StatusCode::BAD_REQUEST {
            return Err(broadcast_error(
                String::from_utf8_lossy(&body[..body.len().min(1000)])
                    .trim()
                    .to_owned(),
            ));
        }
        if !status.is_success() {
            return Err(status_error(CALL, status, &body));
        }
        let returned = std::str::from_utf8(&body)
            .ok()
            .and_then(|s| s.trim().parse::<Txid>().ok())
            .ok_or_else(|| invalid(CALL, format!("expected a txid, got {}", snippet(&body))))?;
        if returned != txid {
            return Err(invalid(
                CALL,
                format!("server answered txid {returned}, expected {txid}"),
            ));
        }
        Ok(txid)
    }

    async fn get_transaction(&self, txid: &Txid) -> Result<Option<TxInfo>, ChainError> {
        const STATUS: &str = "tx-status";
        const HEX: &str = "tx-hex";
        let Some(body) = self.get(STATUS, &format!("tx/{txid}/status")).await? else {
            return Ok(None);
        };
        let status = Esplora::json(STATUS, &body)?;
        let confirmed = status
            .get("confirmed")
            .and_then(Value::as_bool)
            .ok_or_else(|| invalid(STATUS, "no boolean `confirmed`"))?;
        let height = if confirmed {
            Some(
                status
                    .get("block_height")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| invalid(STATUS, "confirmed without a `block_height`"))?,
            )
        } else {
            None
        };
        let Some(body) = self.get(HEX, &format!("tx/{txid}/hex")).await? else {
            return Ok(None);
        };
        let hex = std::str::from_utf8(&body)
            .map_err(|_| invalid(HEX, "the body is not text"))?
            .trim();
        let tx: Transaction = encode::deserialize_hex(hex)
            .map_err(|e| invalid(HEX, format!("transaction does not decode: {e}")))?;
        if tx.compute_txid() != *txid {
            return Err(invalid(HEX, "the returned transaction has another txid"));
        }
        let confirmations = match height {
            None => 0,
            // A lagging tip (load-balanced servers) still counts the block itself.
            Some(h) => self
                .block_height()
                .await?
                .saturating_sub(h)
                .saturating_add(1),
        };
        Ok(Some(TxInfo {
            tx,
            confirmations,
            block_height: height,
        }))
    }

    async fn get_tx_out(&self, outpoint: &OutPoint) -> Result<Option<TxOutInfo>, ChainError> {
        const CALL: &str = "outspend";
        let Some(info) = self.get_transaction(&outpoint.txid).await? else {
            return Ok(None);
        };
        let Some(out) = usize::try_from(outpoint.vout)
            .ok()
            .and_then(|i| info.tx.output.get(i))
        else {
            return Ok(None);
        };
        let path = format!("tx/{}/outspend/{}", outpoint.txid, outpoint.vout);
        let Some(body) = self.get(CALL, &path).await? else {
            return Ok(None);
        };
        let spent = Esplora::json(CALL, &body)?
            .get("spent")
            .and_then(Value::as_bool)
            .ok_or_else(|| invalid(CALL, "no boolean `spent`"))?;
        if spent {
            return Ok(None);
        }
        Ok(Some(TxOutInfo {
            value: Sat(out.value.to_sat()),
            script_pubkey: out.script_pubkey.clone(),
            confirmations: info.confirmations,
            coinbase: info.tx.is_coinbase(),
        }))
    }

    async fn estimate_fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError> {
        const CALL: &str = "fee-estimates";
        let body = self.get_required(CALL, "fee-estimates").await?;
        match Esplora::json(CALL, &body)? {
            Value::Object(map) => pick_fee_rate(&map, target_blocks),
            other => Err(invalid(CALL, format!("expected an object, got {other}"))),
        }
    }

    async fn list_unspent(
        &self,
        address: &bitcoin::Address,
    ) -> Result<Vec<(OutPoint, TxOutInfo)>, ChainError> {
        const CALL: &str = "address-utxo";
        let body = self
            .get_required(CALL, &format!("address/{address}/utxo"))
            .await?;
        let listed = parse_address_utxos(&Esplora::json(CALL, &body)?)?;
        let tip = if listed.iter().any(|u| u.height.is_some()) {
            self.block_height().await?
        } else {
            0
        };
        let script_pubkey = address.script_pubkey();
        let mut out = Vec::with_capacity(listed.len());
        for u in listed {
            let confirmations = u
                .height
                .map_or(0, |h| tip.saturating_sub(h).saturating_add(1));
            // Esplora does not flag coinbase outputs; only young ones matter.
            let coinbase = if u.height.is_some() && confirmations < COINBASE_MATURITY {
                self.get_transaction(&u.outpoint.txid)
                    .await?
                    .is_some_and(|t| t.tx.is_coinbase())
            } else {
                false
            };
            out.push((
                u.outpoint,
                TxOutInfo {
                    value: u.value,
                    script_pubkey: script_pubkey.clone(),
                    confirmations,
                    coinbase,
                },
            ));
        }
        Ok(out)
    }

    async fn block_height(&self) -> Result<u64, ChainError> {
        const CALL: &str = "tip-height";
        let body = self.get_required(CALL, "blocks/tip/height").await?;
        std::str::from_utf8(&body)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| invalid(CALL, format!("expected a height, got {}", snippet(&body))))
    }
}

/// Confirmations after which a coinbase output may be spent.
const COINBASE_MATURITY: u64 = 100;

/// One entry of `GET /address/{address}/utxo`.
struct ListedUtxo {
    outpoint: OutPoint,
    value: Sat,
    /// The confirming block's height; `None` in the mempool.
    height: Option<u64>,
}

fn parse_address_utxos(v: &Value) -> Result<Vec<ListedUtxo>, ChainError> {
    const CALL: &str = "address-utxo";
    let items = v
        .as_array()
        .ok_or_else(|| invalid(CALL, "expected an array"))?;
    let mut out = Vec::with_capacity(items.len());
    for u in items {
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
            .get("value")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(CALL, "missing or invalid `value`"))?;
        let confirmed = u
            .pointer("/status/confirmed")
            .and_then(Value::as_bool)
            .ok_or_else(|| invalid(CALL, "no boolean `status.confirmed`"))?;
        let height = if confirmed {
            Some(
                u.pointer("/status/block_height")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| invalid(CALL, "confirmed without a `block_height`"))?,
            )
        } else {
            None
        };
        out.push(ListedUtxo {
            outpoint: OutPoint::new(txid, vout),
            value: Sat(value),
            height,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn broadcast_errors_map_by_reason() {
        let e = broadcast_error(
            r#"sendrawtransaction RPC error: {"code":-27,"message":"Transaction already in block chain"}"#.into(),
        );
        assert!(matches!(e, ChainError::AlreadyKnown { code: -27, .. }));
        let e = broadcast_error("txn-already-known".into());
        assert!(matches!(e, ChainError::AlreadyKnown { code: 400, .. }));
        let e = broadcast_error(
            r#"sendrawtransaction RPC error: {"code":-26,"message":"txn-mempool-conflict"}"#.into(),
        );
        assert!(matches!(e, ChainError::Conflict { code: -26, .. }));
        let e = broadcast_error("bad-txns-inputs-missingorspent".into());
        assert!(matches!(e, ChainError::Conflict { .. }));
        let e = broadcast_error("min relay fee not met".into());
        assert!(matches!(e, ChainError::Rejected { code: 400, .. }));
    }

    #[test]
    fn address_utxos_parse() {
        let txid = "7e1a558c84abd5aaf57999557f4a7205d4b69241b7c9cab6c0795fdd663a51ef";
        let v = json!([
            {"txid": txid, "vout": 0, "value": 5000, "status": {"confirmed": false}},
            {"txid": txid, "vout": 3, "value": 7000, "status": {"confirmed": true, "block_height": 42}}]);
        let got = parse_address_utxos(&v).unwrap();
        assert_eq!((got[0].value, got[0].height), (Sat(5000), None));
        assert_eq!((got[1].outpoint.vout, got[1].height), (3, Some(42)));
        assert!(parse_address_utxos(&json!({})).is_err());
        assert!(
            parse_address_utxos(
                &json!([{"txid": txid, "vout": 0, "value": 1, "status": {"confirmed": true}}])
            )
            .is_err()
        );
    }

    #[test]
    fn fee_rates_round_up() {
        assert_eq!(ceil_fee_rate(1.0), Some(FeeRate(1)));
        assert_eq!(ceil_fee_rate(1.001), Some(FeeRate(2)));
        assert_eq!(ceil_fee_rate(0.0), Some(FeeRate(0)));
        assert_eq!(ceil_fee_rate(-1.0), None);
        assert_eq!(ceil_fee_rate(f64::NAN), None);
        assert_eq!(ceil_fee_rate(1e300), None);
        let map = json!({"1": 20.5, "3": 10.2, "6": 5.0, "144": 1.01});
        let map = map.as_object().unwrap();
        assert_eq!(pick_fee_rate(map, 1).unwrap(), Some(FeeRate(21)));
        assert_eq!(pick_fee_rate(map, 2).unwrap(), Some(FeeRate(21)));
        assert_eq!(pick_fee_rate(map, 5).unwrap(), Some(FeeRate(11)));
        assert_eq!(pick_fee_rate(map, 6).unwrap(), Some(FeeRate(5)));
        assert_eq!(pick_fee_rate(map, 1000).unwrap(), Some(FeeRate(2)));
        assert_eq!(pick_fee_rate(&Map::new(), 6).unwrap(), None);
    }

    #[test]
    fn config_and_schemes() {
        let cfg = EsploraConfig::from_vars(|name| match name {
            "ESPLORA_URL" => Some("http://localhost:3002/api".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.timeout, DEFAULT_TIMEOUT);
        let esplora = Esplora::new(cfg.clone()).unwrap();
        assert_eq!(esplora.base.as_str(), "http://localhost:3002/api/");
        let err = EsploraConfig::from_vars(|name| match name {
            "ESPLORA_URL" => Some("https://x.example".into()),
            "ESPLORA_TIMEOUT_SECS" => Some("0".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(matches!(
            err,
            ChainError::Unreachable {
                call: "configure",
                ..
            }
        ));
        for bad in [
            "ftp://127.0.0.1",
            "http://10.0.0.1",
            "https://u:p@x.example",
        ] {
            let c = EsploraConfig {
                url: bad.parse().unwrap(),
                ..cfg.clone()
            };
            assert!(Esplora::new(c).is_err(), "{bad}");
        }
    }
}
