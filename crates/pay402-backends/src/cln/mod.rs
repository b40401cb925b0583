//! Core Lightning (CLN) clients implementing [`InvoiceIssuer`] and [`LightningPayer`].
//!
//! Two transports speak the same JSON-RPC methods with the same result shapes:
//!
//! - [`ClnRpc`]: JSON-RPC 2.0 over the node's unix socket
//!   `<lightning-dir>/<network>/lightning-rpc` (what `lightning-cli` and
//!   pyln-client use). Access control is the socket's file permissions.
//! - [`ClnRest`]: clnrest (CLN v23.08+), `POST https://<host>:3010/v1/<method>`
//!   with the parameters as the JSON body and a `Rune` header.
//!
//! [`Cln`] is either one, chosen from the environment.
//!
//! | Port method | CLN call |
//! |---|---|
//! | [`InvoiceIssuer::create_invoice`] | `invoice {amount_msat, label, description, expiry}` with a fresh label `pay402-<32 hex>` |
//! | [`InvoiceIssuer::lookup_invoice`] | `listinvoices {payment_hash}` (`unpaid` → `Open`, `paid` → `Settled`, `expired` → `Canceled`) |
//! | [`LightningPayer::pay_invoice`] | `listpays {bolt11}` (was it paid already?), then `pay {bolt11, maxfee, retry_for}` |
//!
//! Safety properties:
//! - Idempotent on payment hash: before paying, `listpays` is asked for an
//!   earlier payment of the invoice; a `complete` one is returned as is, a
//!   `pending` one is waited for (until the request's timeout, then
//!   [`LightningError::Unknown`]). If `pay` itself answers that the hash is
//!   already paid or in progress (codes 200, 201, 219), the earlier result is
//!   fetched with `listpays` again. If `listpays` is not permitted (a
//!   restricted rune), `pay`'s own duplicate check (it returns the earlier
//!   success) still applies.
//! - Paying never retries blindly: a `pay` call that times out or loses its
//!   connection is [`LightningError::Unknown`] with the invoice's payment
//!   hash, decoded locally before anything is sent.
//! - Every preimage is checked (`sha256(preimage) == payment_hash`, not all
//!   zero, present), else [`LightningError::InvalidResponse`].
//! - Invoices CLN creates are decoded and checked against the request (hash,
//!   amount, network).
//! - `msat` values are accepted as integers or as `"1000msat"` strings
//!   (CLN before v23.02).
//! - clnrest TLS: with [`ClnRestConfig::tls_cert_pem`] set, that PEM (CLN's
//!   `ca.pem`, or `server.pem` itself) is the only trust root: the server
//!   must present exactly a pinned certificate or one that chains to it, and
//!   it must be valid for the URL's host (CLN's `server.pem` names `cln` and
//!   `localhost`). Verification is never disabled. Plain `http://` is allowed
//!   only to loopback hosts. Redirects are not followed, so the rune is only
//!   sent to the configured URL.
//! - Responses are bounded (8 MiB) and parsed without panicking.
//!
//! ## Errors
//!
//! Errors carry `backend: "cln"` and the CLN method that failed as `call`
//! (`"invoice"`, `"listinvoices"`, `"pay"`, `"listpays"`, or `"configure"`
//! for configuration errors).
//!
//! - A JSON-RPC error (`{"code", "message"}`) is [`LightningError::Rejected`]
//!   with the message and code, except for `pay`: codes 202–210 and 212–218
//!   (e.g. 205 route not found, 206 too expensive, 207 invoice expired, 210
//!   pay attempts failed) are [`LightningError::PaymentFailed`]; 211 (status
//!   unexpected) or an error whose `data.status` is `pending` is
//!   [`LightningError::Unknown`].
//! - A failed rune check (clnrest HTTP 401, codes 1501–1503) is `Rejected`.
//! - Unknown invoices are [`LightningError::NotFound`].
//! - For `pay_invoice`, only `PaymentFailed`, `Rejected` and `Unreachable`
//!   mean that nothing was sent.
//!
//! ## Environment
//!
//! [`Cln::from_env`] uses clnrest if `CLN_REST_URL` is set, else the socket.
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `CLN_RPC_PATH` | path of the `lightning-rpc` socket ([`ClnRpc`]) | `<CLN_LIGHTNING_DIR>/<network>/lightning-rpc` |
//! | `CLN_LIGHTNING_DIR` | CLN's `--lightning-dir` ([`ClnRpc`]) | `$HOME/.lightning` |
//! | `CLN_REST_URL` | clnrest endpoint ([`ClnRest`]) | `https://127.0.0.1:3010` |
//! | `CLN_RUNE` | rune for clnrest (`lightning-cli createrune`) | none (required for [`ClnRest`]) |
//! | `CLN_TLS_CERT_PATH` | PEM to pin for clnrest: CLN's `ca.pem` (or `server.pem`) | none: public roots |
//! | `CLN_NETWORK` | `bitcoin` (or `mainnet`), `testnet`, `testnet4`, `signet`, `regtest` | `bitcoin` |
//! | `CLN_TIMEOUT_SECS` | per-call timeout in seconds (for `pay`: on top of the payment timeout) | `30` |
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), pay402_core::lightning::LightningError> {
//! use pay402_backends::cln::{ClnRpc, ClnRpcConfig};
//! use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, LightningPayer, Network, PayRequest};
//! use pay402_core::money::Msat;
//!
//! let node = ClnRpc::new(ClnRpcConfig::new("/home/me/.lightning/regtest/lightning-rpc", Network::Regtest))?;
//! let inv = node.create_invoice(&InvoiceRequest::new(Msat(100_000), "GET /hello")).await?;
//! println!("pay this: {}", inv.bolt11);
//! let paid = node.pay_invoice(&PayRequest::new("lnbcrt1...", Msat(1_000))).await?;
//! assert!(paid.preimage.matches(&paid.payment_hash));
//! # Ok(())
//! # }
//! ```

mod model;
mod rest;
#[cfg(unix)]
mod socket;
use crate::tls;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pay402_core::lightning::{
    CreatedInvoice, InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer,
    Network, PayRequest, Payment, PaymentHash,
};
use pay402_core::money::Msat;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::Instrument;

use crate::util::client::{decode_for_payment, verify_created, verify_preimage};
use crate::util::http::{secs_var, url_var};
use crate::util::{file_var, network_var};
use model::{InvoiceResult, ListInvoices, ListPays, PayResult, RpcError, code as cln_code};

/// The URL type of [`ClnRestConfig::url`] (re-exported from `reqwest`).
pub use reqwest::Url;

const BACKEND: &str = "cln";
const INVOICE: &str = "invoice";
const LISTINVOICES: &str = "listinvoices";
const PAY: &str = "pay";
const LISTPAYS: &str = "listpays";
const CONFIGURE: &str = "configure";

/// The default per-call timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many fresh labels `create_invoice` tries when CLN says one is taken.
const LABEL_ATTEMPTS: u32 = 3;

/// The longest pause between `listpays` polls while waiting for a pending payment.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(1);

crate::util::backend_errors!(BACKEND);

/// The directory CLN uses for a network under its `--lightning-dir`.
fn network_dir(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "bitcoin",
        Network::Testnet => "testnet",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

fn read_network(get: &impl Fn(&str) -> Option<String>) -> Result<Network, LightningError> {
    network_var("CLN_NETWORK", get("CLN_NETWORK")).map_err(config_error)
}

fn read_timeout(get: &impl Fn(&str) -> Option<String>) -> Result<Duration, LightningError> {
    secs_var("CLN_TIMEOUT_SECS", get("CLN_TIMEOUT_SECS"), DEFAULT_TIMEOUT).map_err(config_error)
}

/// How to reach CLN's JSON-RPC unix socket.
///
/// ```
/// use pay402_backends::cln::ClnRpcConfig;
/// use pay402_core::lightning::Network;
/// let cfg = ClnRpcConfig::new("/var/lib/cln/regtest/lightning-rpc", Network::Regtest);
/// assert_eq!(cfg.timeout.as_secs(), 30);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClnRpcConfig {
    /// The `lightning-rpc` socket, e.g. `~/.lightning/bitcoin/lightning-rpc`.
    pub socket_path: PathBuf,
    /// The network the node runs on; invoices for other networks are refused.
    pub network: Network,
    /// Per-call timeout (for payments: on top of the payment timeout).
    pub timeout: Duration,
}

impl ClnRpcConfig {
    /// A configuration with a 30 s timeout.
    ///
    /// ```
    /// use pay402_backends::cln::ClnRpcConfig;
    /// use pay402_core::lightning::Network;
    /// let cfg = ClnRpcConfig::new("/tmp/lightning-rpc", Network::Signet);
    /// assert_eq!(cfg.network, Network::Signet);
    /// ```
    pub fn new(socket_path: impl Into<PathBuf>, network: Network) -> ClnRpcConfig {
        ClnRpcConfig {
            socket_path: socket_path.into(),
            network,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Reads the configuration from the environment (see the
    /// [module docs](self#environment)): `CLN_RPC_PATH`, else
    /// `<CLN_LIGHTNING_DIR or $HOME/.lightning>/<CLN_NETWORK>/lightning-rpc`.
    ///
    /// Errors are [`LightningError::Unreachable`] with `call: "configure"`.
    ///
    /// ```no_run
    /// use pay402_backends::cln::{ClnRpc, ClnRpcConfig};
    /// let node = ClnRpc::new(ClnRpcConfig::from_env()?)?;
    /// # Ok::<(), pay402_core::lightning::LightningError>(())
    /// ```
    pub fn from_env() -> Result<ClnRpcConfig, LightningError> {
        ClnRpcConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`ClnRpcConfig::from_env`], reading variables (including `HOME`)
    /// through `var`. Empty values count as unset.
    ///
    /// ```
    /// use pay402_backends::cln::ClnRpcConfig;
    /// use pay402_core::lightning::Network;
    /// let cfg = ClnRpcConfig::from_vars(|name| match name {
    ///     "CLN_LIGHTNING_DIR" => Some("/srv/cln".into()),
    ///     "CLN_NETWORK" => Some("regtest".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(cfg.socket_path, std::path::Path::new("/srv/cln/regtest/lightning-rpc"));
    /// assert_eq!(cfg.network, Network::Regtest);
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<ClnRpcConfig, LightningError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let network = read_network(&get)?;
        let socket_path = match get("CLN_RPC_PATH") {
            Some(p) => PathBuf::from(p.trim()),
            None => {
                let dir = match (get("CLN_LIGHTNING_DIR"), get("HOME")) {
                    (Some(dir), _) => PathBuf::from(dir.trim()),
                    (None, Some(home)) => PathBuf::from(home.trim()).join(".lightning"),
                    (None, None) => {
                        return Err(config_error(
                            "set CLN_RPC_PATH (or CLN_LIGHTNING_DIR) to find the lightning-rpc socket",
                        ));
                    }
                };
                dir.join(network_dir(network)).join("lightning-rpc")
            }
        };
        Ok(ClnRpcConfig {
            socket_path,
            network,
            timeout: read_timeout(&get)?,
        })
    }
}

/// How to reach clnrest.
///
/// `Debug` output redacts the rune.
///
/// ```
/// use pay402_backends::cln::ClnRestConfig;
/// use pay402_core::lightning::Network;
/// let cfg = ClnRestConfig::new("https://127.0.0.1:3010".parse().unwrap(), "tU-RLjMiDpY2U0o3W1oFowar36RFGpWloPbW9-RuZdo9MyZpZD0wMjRkMjM0NzU", Network::Regtest);
/// assert!(!format!("{cfg:?}").contains("tU-RL"));
/// ```
#[derive(Clone)]
pub struct ClnRestConfig {
    /// The clnrest endpoint, e.g. `https://127.0.0.1:3010`. `http://` is
    /// allowed only for loopback hosts.
    pub url: Url,
    /// The rune, sent as the `Rune` header.
    pub rune: String,
    /// A PEM to pin as the only trust root (CLN's `ca.pem` or `server.pem`).
    /// `None` uses the public web PKI roots.
    pub tls_cert_pem: Option<Vec<u8>>,
    /// The network the node runs on; invoices for other networks are refused.
    pub network: Network,
    /// Per-call HTTP timeout (for payments: on top of the payment timeout).
    pub timeout: Duration,
}

impl fmt::Debug for ClnRestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClnRestConfig")
            .field("url", &self.url.as_str())
            .field("rune", &"<redacted>")
            .field(
                "tls_cert_pem",
                &self
                    .tls_cert_pem
                    .as_ref()
                    .map(|p| format!("<{} bytes>", p.len())),
            )
            .field("network", &self.network)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ClnRestConfig {
    /// A configuration with no pinned certificate and a 30 s timeout.
    ///
    /// ```
    /// use pay402_backends::cln::ClnRestConfig;
    /// use pay402_core::lightning::Network;
    /// let cfg = ClnRestConfig::new("https://node.example:3010".parse().unwrap(), "rune", Network::Bitcoin);
    /// assert!(cfg.tls_cert_pem.is_none());
    /// ```
    pub fn new(url: Url, rune: impl Into<String>, network: Network) -> ClnRestConfig {
        ClnRestConfig {
            url,
            rune: rune.into(),
            tls_cert_pem: None,
            network,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Reads the configuration from the environment (see the
    /// [module docs](self#environment)): `CLN_REST_URL`, `CLN_RUNE`,
    /// `CLN_TLS_CERT_PATH`, `CLN_NETWORK`, `CLN_TIMEOUT_SECS`.
    ///
    /// ```no_run
    /// use pay402_backends::cln::{ClnRest, ClnRestConfig};
    /// let node = ClnRest::new(ClnRestConfig::from_env()?)?;
    /// # Ok::<(), pay402_core::lightning::LightningError>(())
    /// ```
    pub fn from_env() -> Result<ClnRestConfig, LightningError> {
        ClnRestConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`ClnRestConfig::from_env`], reading variables through `var`.
    /// Empty values count as unset.
    ///
    /// ```
    /// use pay402_backends::cln::ClnRestConfig;
    /// let cfg = ClnRestConfig::from_vars(|name| match name {
    ///     "CLN_REST_URL" => Some("https://localhost:3010".into()),
    ///     "CLN_RUNE" => Some("abc".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(cfg.rune, "abc");
    /// assert!(ClnRestConfig::from_vars(|_| None).is_err(), "a rune is required");
    /// ```
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<ClnRestConfig, LightningError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let url_text = get("CLN_REST_URL").unwrap_or_else(|| "https://127.0.0.1:3010".into());
        let url = url_var("CLN_REST_URL", &url_text).map_err(config_error)?;
        let rune = get("CLN_RUNE")
            .map(|r| r.trim().to_owned())
            .ok_or_else(|| config_error("CLN_RUNE is not set; clnrest needs a rune"))?;
        let cert_path = get("CLN_TLS_CERT_PATH").map(|p| p.trim().to_owned());
        let tls_cert_pem = file_var("CLN_TLS_CERT_PATH", cert_path).map_err(config_error)?;
        Ok(ClnRestConfig {
            url,
            rune,
            tls_cert_pem,
            network: read_network(&get)?,
            timeout: read_timeout(&get)?,
        })
    }
}

/// How a transport call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Nothing reached the node (connection refused, bad URL).
    NotSent(String),
    /// The request may have reached the node but no answer came (timeout,
    /// dropped connection, a 5xx without CLN's error body).
    NoAnswer(String),
    /// CLN answered with a JSON-RPC error.
    Rpc(RpcError),
    /// clnrest refused the request without CLN's error body (HTTP 4xx).
    Refused(String),
    /// The answer is malformed.
    Invalid(String),
}

impl CallError {
    /// The error for calls other than `pay`.
    fn into_error(self, call: &'static str) -> LightningError {
        match self {
            CallError::NotSent(d) | CallError::NoAnswer(d) => unreachable(call, d),
            CallError::Rpc(e) => rejected(call, e.to_string()),
            CallError::Refused(d) => rejected(call, d),
            CallError::Invalid(d) => invalid(call, d),
        }
    }
}

#[derive(Clone, Debug)]
enum Transport {
    #[cfg(unix)]
    Socket(Arc<socket::SocketTransport>),
    Rest(rest::RestTransport),
}

impl Transport {
    async fn call(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        match self {
            #[cfg(unix)]
            Transport::Socket(s) => s.call(method, params, timeout).await,
            Transport::Rest(r) => r.call(method, params, timeout).await,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            #[cfg(unix)]
            Transport::Socket(_) => "rpc",
            Transport::Rest(_) => "rest",
        }
    }
}

/// What `listpays` knows about earlier payments of an invoice.
enum Earlier {
    /// No payment was attempted.
    None,
    /// Every attempt failed; a new one may be made.
    Failed,
    /// An attempt is in flight.
    Pending,
    /// Paid: the earlier result.
    Complete(Payment),
}

/// A fresh invoice label: `pay402-` and 32 hex digits.
fn new_label() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = Sha256::new();
    // `RandomState` is seeded from the OS once per thread and varied per call.
    h.update(RandomState::new().hash_one(n).to_le_bytes());
    h.update(n.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    h.update(now.as_nanos().to_le_bytes());
    let digest = h.finalize();
    format!("pay402-{}", hex::encode(&digest[..16]))
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    let mut secs = d.as_secs();
    if d.subsec_nanos() > 0 || secs == 0 {
        secs = secs.saturating_add(1);
    }
    secs.min(u64::from(u32::MAX))
}

/// Builds a checked [`Payment`] from a `pay` or `listpays` entry.
fn payment_from(
    hash: PaymentHash,
    invoice_amount: Msat,
    preimage: Option<&str>,
    amount_msat: Option<u64>,
    amount_sent_msat: Option<u64>,
) -> Result<Payment, String> {
    let preimage = verify_preimage(preimage, &hash)?;
    let amount = amount_msat.unwrap_or(invoice_amount.0);
    let fee = match amount_sent_msat {
        Some(sent) => sent
            .checked_sub(amount)
            .ok_or("amount_sent_msat is less than amount_msat")?,
        None => 0,
    };
    Ok(Payment {
        payment_hash: hash,
        preimage,
        amount: Msat(amount),
        fee: Msat(fee),
    })
}

fn hash_matches(given: Option<&str>, hash: &PaymentHash) -> bool {
    given.is_none_or(|h| h.trim().parse::<PaymentHash>().ok().as_ref() == Some(hash))
}

/// A human reason for a `pay` failure code.
fn failure_reason(e: &RpcError) -> String {
    let kind = match e.code {
        202 => "unparseable onion",
        203 => "destination refused the payment",
        204 => "route failed",
        205 => "no route",
        206 => "route too expensive",
        207 => "invoice expired",
        208 => "no such payment",
        209 => "unspecified error",
        210 => "pay attempts failed",
        212 => "invalid invoice request",
        213 | 214 => "payment not approved",
        _ => "payment failed",
    };
    format!("{kind}: {e}")
}

#[derive(Clone, Debug)]
struct Core {
    transport: Transport,
    network: Network,
    timeout: Duration,
}

impl Core {
    async fn create(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        if req.amount == Msat::ZERO {
            return Err(rejected(INVOICE, "amount must be positive"));
        }
        let expiry = req.expiry.as_secs().max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let label = new_label();
            let params = json!({
                "amount_msat": req.amount.0,
                "label": label,
                "description": req.memo,
                "expiry": expiry,
            });
            let result = match self.transport.call(INVOICE, params, self.timeout).await {
                Ok(v) => v,
                Err(CallError::Rpc(e))
                    if e.code == cln_code::INVOICE_LABEL_ALREADY_EXISTS
                        && attempt < LABEL_ATTEMPTS =>
                {
                    tracing::warn!(%label, error = %e, "cln label taken; retrying with a fresh label");
                    continue;
                }
                Err(e) => return Err(e.into_error(INVOICE)),
            };
            let resp: InvoiceResult = serde_json::from_value(result)
                .map_err(|e| invalid(INVOICE, format!("unexpected result: {e}")))?;
            let payment_hash = verify_created(
                &resp.bolt11,
                Some(&resp.payment_hash),
                req.amount,
                self.network,
            )
            .map_err(|e| invalid(INVOICE, e))?;
            tracing::Span::current().record("payment_hash", tracing::field::display(payment_hash));
            tracing::info!(%label, "cln invoice created");
            return Ok(CreatedInvoice {
                bolt11: resp.bolt11.trim().to_owned(),
                payment_hash,
            });
        }
    }

    async fn lookup(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let result = self
            .transport
            .call(
                LISTINVOICES,
                json!({ "payment_hash": hash.to_hex() }),
                self.timeout,
            )
            .await
            .map_err(|e| e.into_error(LISTINVOICES))?;
        let list: ListInvoices = serde_json::from_value(result)
            .map_err(|e| invalid(LISTINVOICES, format!("unexpected result: {e}")))?;
        if list
            .invoices
            .iter()
            .any(|i| !hash_matches(i.payment_hash.as_deref(), hash))
        {
            return Err(invalid(
                LISTINVOICES,
                "listinvoices returned an invoice for another payment hash",
            ));
        }
        let Some(inv) = list.invoices.into_iter().next() else {
            return Err(LightningError::NotFound);
        };
        let state = match inv.status.as_str() {
            "unpaid" => InvoiceState::Open,
            "expired" => InvoiceState::Canceled,
            "paid" => {
                let preimage = verify_preimage(inv.payment_preimage.as_deref(), hash)
                    .map_err(|e| invalid(LISTINVOICES, format!("paid invoice: {e}")))?;
                let amount = inv
                    .amount_received_msat
                    .or(inv.amount_msat)
                    .ok_or_else(|| invalid(LISTINVOICES, "paid invoice without an amount"))?;
                InvoiceState::Settled {
                    preimage,
                    amount_paid: Msat(amount),
                }
            }
            other => {
                return Err(invalid(
                    LISTINVOICES,
                    format!("unknown invoice status {other:?}"),
                ));
            }
        };
        tracing::debug!(status = %inv.status, "cln invoice looked up");
        Ok(state)
    }

    /// Asks `listpays` about earlier payments of `bolt11`.
    async fn earlier(
        &self,
        bolt11: &str,
        hash: PaymentHash,
        amount: Msat,
    ) -> Result<Earlier, CallError> {
        let result = self
            .transport
            .call(LISTPAYS, json!({ "bolt11": bolt11 }), self.timeout)
            .await?;
        let list: ListPays = serde_json::from_value(result)
            .map_err(|e| CallError::Invalid(format!("unexpected result: {e}")))?;
        let (mut pending, mut failed) = (false, false);
        for pay in list.pays {
            if !hash_matches(pay.payment_hash.as_deref(), &hash) {
                return Err(CallError::Invalid(
                    "listpays returned a payment for another payment hash".into(),
                ));
            }
            match pay.status.as_str() {
                "complete" => {
                    return payment_from(
                        hash,
                        amount,
                        pay.preimage.as_deref(),
                        pay.amount_msat,
                        pay.amount_sent_msat,
                    )
                    .map(Earlier::Complete)
                    .map_err(|e| CallError::Invalid(format!("complete payment: {e}")));
                }
                "pending" => pending = true,
                "failed" => failed = true,
                other => {
                    return Err(CallError::Invalid(format!(
                        "unknown payment status {other:?}"
                    )));
                }
            }
        }
        Ok(if pending {
            Earlier::Pending
        } else if failed {
            Earlier::Failed
        } else {
            Earlier::None
        })
    }

    /// Waits (polling `listpays`) for an in-flight payment until `deadline`.
    async fn await_pending(
        &self,
        bolt11: &str,
        hash: PaymentHash,
        amount: Msat,
        deadline: Instant,
    ) -> Result<Payment, LightningError> {
        let unknown = LightningError::Unknown { payment_hash: hash };
        let mut pause = Duration::from_millis(100);
        loop {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!("cln payment still pending at the deadline; outcome unknown");
                return Err(unknown);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
            match self.earlier(bolt11, hash, amount).await {
                Ok(Earlier::Complete(p)) => {
                    tracing::info!("pending cln payment completed");
                    return Ok(p);
                }
                Ok(Earlier::Failed) => {
                    return Err(LightningError::PaymentFailed {
                        reason: "the in-flight payment attempt failed".into(),
                    });
                }
                Ok(Earlier::Pending | Earlier::None) => {}
                Err(CallError::NotSent(_) | CallError::NoAnswer(_)) => {}
                Err(CallError::Invalid(d)) => return Err(invalid(LISTPAYS, d)),
                Err(e @ (CallError::Rpc(_) | CallError::Refused(_))) => {
                    tracing::warn!(error = ?e, "cannot follow the pending payment with listpays");
                    return Err(unknown);
                }
            }
        }
    }

    async fn pay(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let started = Instant::now();
        let bolt11 = req.bolt11.trim();
        let (hash, amount) = decode_for_payment(bolt11, self.network)?;
        tracing::Span::current().record("payment_hash", tracing::field::display(hash));
        let deadline = started + req.timeout;

        match self.earlier(bolt11, hash, amount).await {
            Ok(Earlier::Complete(p)) => {
                tracing::info!("invoice already paid by this node; returning the earlier payment");
                return Ok(p);
            }
            Ok(Earlier::Pending) => {
                tracing::info!("a payment of this invoice is in flight; waiting for it");
                return self.await_pending(bolt11, hash, amount, deadline).await;
            }
            Ok(Earlier::None | Earlier::Failed) => {}
            Err(CallError::NotSent(d) | CallError::NoAnswer(d)) => {
                return Err(unreachable(LISTPAYS, d));
            }
            Err(CallError::Invalid(d)) => return Err(invalid(LISTPAYS, d)),
            Err(CallError::Rpc(e)) => tracing::warn!(
                error = %e,
                "cannot check for an earlier payment with listpays; relying on pay's duplicate check"
            ),
            Err(CallError::Refused(d)) => tracing::warn!(
                error = %d,
                "cannot check for an earlier payment with listpays; relying on pay's duplicate check"
            ),
        }

        let retry_for = ceil_secs(req.timeout);
        let params = json!({
            "bolt11": bolt11,
            "maxfee": req.max_fee.0,
            "retry_for": retry_for,
        });
        let call_timeout = Duration::from_secs(retry_for).saturating_add(self.timeout);
        let result = match self.transport.call(PAY, params, call_timeout).await {
            Ok(v) => v,
            Err(CallError::NotSent(d)) => return Err(unreachable(PAY, d)),
            Err(CallError::NoAnswer(d)) => {
                tracing::warn!(why = %d, "no answer to cln pay; outcome unknown");
                return Err(LightningError::Unknown { payment_hash: hash });
            }
            Err(CallError::Rpc(e)) => {
                return self.pay_error(e, bolt11, hash, amount, deadline).await;
            }
            Err(CallError::Refused(d)) => return Err(rejected(PAY, d)),
            Err(CallError::Invalid(d)) => return Err(invalid(PAY, d)),
        };
        let resp: PayResult = serde_json::from_value(result)
            .map_err(|e| invalid(PAY, format!("unexpected result: {e}")))?;
        if !hash_matches(resp.payment_hash.as_deref(), &hash) {
            return Err(invalid(PAY, "payment_hash differs from the invoice's"));
        }
        let status = match resp.status.as_deref() {
            Some(s) => s,
            // Very old versions had no status on success.
            None if resp.payment_preimage.is_some() => "complete",
            None => "",
        };
        match status {
            "complete" => {
                let p = payment_from(
                    hash,
                    amount,
                    resp.payment_preimage.as_deref(),
                    resp.amount_msat,
                    resp.amount_sent_msat,
                )
                .map_err(|e| invalid(PAY, e))?;
                tracing::info!(
                    amount_msat = p.amount.0,
                    fee_msat = p.fee.0,
                    "cln payment succeeded"
                );
                Ok(p)
            }
            "pending" => {
                tracing::warn!("cln pay returned while the payment is pending; outcome unknown");
                Err(LightningError::Unknown { payment_hash: hash })
            }
            "failed" => Err(LightningError::PaymentFailed {
                reason: "cln reports the payment failed".into(),
            }),
            other => Err(invalid(PAY, format!("unknown payment status {other:?}"))),
        }
    }

    /// `pay` answered with a JSON-RPC error.
    async fn pay_error(
        &self,
        e: RpcError,
        bolt11: &str,
        hash: PaymentHash,
        amount: Msat,
        deadline: Instant,
    ) -> Result<Payment, LightningError> {
        if e.code == cln_code::PAY_IN_PROGRESS || e.data_status() == Some("pending") {
            tracing::info!(error = %e, "cln payment in progress; waiting for it");
            return self.await_pending(bolt11, hash, amount, deadline).await;
        }
        let already = e.code == cln_code::PAY_RHASH_ALREADY_USED
            || e.code == cln_code::PAY_INJECTPAYMENTONION_ALREADY_PAID
            || e.message.to_ascii_lowercase().contains("already paid");
        if already {
            tracing::info!(error = %e, "cln says the hash is already paid; looking up the earlier payment");
            return match self.earlier(bolt11, hash, amount).await {
                Ok(Earlier::Complete(p)) => Ok(p),
                Ok(Earlier::Pending) => self.await_pending(bolt11, hash, amount, deadline).await,
                // Paid through another invoice with the same hash: this one
                // was not paid now.
                Ok(Earlier::None | Earlier::Failed) => Err(LightningError::PaymentFailed {
                    reason: format!("payment hash already used: {e}"),
                }),
                Err(CallError::Invalid(d)) => Err(invalid(LISTPAYS, d)),
                Err(other) => {
                    tracing::warn!(error = ?other, "cannot look up the earlier payment");
                    Err(LightningError::Unknown { payment_hash: hash })
                }
            };
        }
        match e.code {
            cln_code::PAY_STATUS_UNEXPECTED => Err(LightningError::Unknown { payment_hash: hash }),
            202..=218 => {
                tracing::info!(error = %e, "cln payment failed");
                Err(LightningError::PaymentFailed {
                    reason: failure_reason(&e),
                })
            }
            _ => Err(rejected(PAY, e.to_string())),
        }
    }
}

/// A CLN node reached over its `lightning-rpc` unix socket.
///
/// Cheap to clone. Each call opens its own connection.
///
/// ```
/// use pay402_backends::cln::{ClnRpc, ClnRpcConfig};
/// use pay402_core::lightning::{InvoiceIssuer, Network};
/// let node = ClnRpc::new(ClnRpcConfig::new("/tmp/lightning-rpc", Network::Regtest)).unwrap();
/// assert_eq!(node.network(), Network::Regtest);
/// ```
#[derive(Clone)]
pub struct ClnRpc {
    core: Core,
    socket_path: PathBuf,
}

impl fmt::Debug for ClnRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClnRpc")
            .field("socket_path", &self.socket_path)
            .field("network", &self.core.network)
            .finish_non_exhaustive()
    }
}

impl ClnRpc {
    /// A client for the socket in `config`. No connection is made yet.
    ///
    /// Fails (with [`LightningError::Unreachable`], `call: "configure"`) if
    /// the path is empty, the timeout is zero, or the platform has no unix
    /// sockets.
    ///
    /// ```
    /// use pay402_backends::cln::{ClnRpc, ClnRpcConfig};
    /// use pay402_core::lightning::Network;
    /// assert!(ClnRpc::new(ClnRpcConfig::new("", Network::Regtest)).is_err());
    /// ```
    pub fn new(config: ClnRpcConfig) -> Result<ClnRpc, LightningError> {
        if config.socket_path.as_os_str().is_empty() {
            return Err(config_error("the socket path is empty"));
        }
        if config.timeout.is_zero() {
            return Err(config_error("timeout must be positive"));
        }
        #[cfg(unix)]
        {
            let transport = Transport::Socket(Arc::new(socket::SocketTransport::new(
                config.socket_path.clone(),
            )));
            Ok(ClnRpc {
                socket_path: config.socket_path,
                core: Core {
                    transport,
                    network: config.network,
                    timeout: config.timeout,
                },
            })
        }
        #[cfg(not(unix))]
        {
            Err(config_error(
                "the lightning-rpc socket needs unix domain sockets; use ClnRest",
            ))
        }
    }

    /// The socket path calls go to.
    ///
    /// ```
    /// use pay402_backends::cln::{ClnRpc, ClnRpcConfig};
    /// use pay402_core::lightning::Network;
    /// let node = ClnRpc::new(ClnRpcConfig::new("/tmp/lightning-rpc", Network::Regtest)).unwrap();
    /// assert_eq!(node.socket_path(), std::path::Path::new("/tmp/lightning-rpc"));
    /// ```
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }
}

/// A CLN node reached over clnrest (HTTPS, rune).
///
/// Cheap to clone (the HTTP connection pool is shared).
///
/// ```
/// use pay402_backends::cln::{ClnRest, ClnRestConfig};
/// use pay402_core::lightning::{InvoiceIssuer, Network};
/// let node = ClnRest::new(ClnRestConfig::new("https://127.0.0.1:3010".parse().unwrap(), "rune", Network::Signet)).unwrap();
/// assert_eq!(node.network(), Network::Signet);
/// ```
#[derive(Clone)]
pub struct ClnRest {
    core: Core,
    base: Url,
}

impl fmt::Debug for ClnRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClnRest")
            .field("url", &self.base.as_str())
            .field("network", &self.core.network)
            .finish_non_exhaustive()
    }
}

impl ClnRest {
    /// A client for the clnrest endpoint in `config`. No connection is made yet.
    ///
    /// Fails (with [`LightningError::Unreachable`], `call: "configure"`) if
    /// the URL is not `https://` (or `http://` to a loopback host), the rune
    /// is empty, the certificate PEM does not parse, or the timeout is zero.
    ///
    /// ```
    /// use pay402_backends::cln::{ClnRest, ClnRestConfig};
    /// use pay402_core::lightning::Network;
    /// let remote = ClnRestConfig::new("http://203.0.113.7:3010".parse().unwrap(), "rune", Network::Bitcoin);
    /// assert!(ClnRest::new(remote).is_err());
    /// let local = ClnRestConfig::new("http://127.0.0.1:3010".parse().unwrap(), "rune", Network::Regtest);
    /// assert!(ClnRest::new(local).is_ok());
    /// ```
    pub fn new(config: ClnRestConfig) -> Result<ClnRest, LightningError> {
        let transport = rest::RestTransport::new(&config)?;
        let base = transport.base().clone();
        Ok(ClnRest {
            base,
            core: Core {
                transport: Transport::Rest(transport),
                network: config.network,
                timeout: config.timeout,
            },
        })
    }

    /// The base URL calls are made against (`<base>v1/<method>`).
    ///
    /// ```
    /// use pay402_backends::cln::{ClnRest, ClnRestConfig};
    /// use pay402_core::lightning::Network;
    /// let node = ClnRest::new(ClnRestConfig::new("https://localhost:3010".parse().unwrap(), "r", Network::Regtest)).unwrap();
    /// assert_eq!(node.base_url().as_str(), "https://localhost:3010/");
    /// ```
    pub fn base_url(&self) -> &Url {
        &self.base
    }
}

/// A CLN node over either transport.
///
/// ```no_run
/// use pay402_backends::cln::Cln;
/// // clnrest if CLN_REST_URL is set, else the lightning-rpc socket.
/// let node = Cln::from_env()?;
/// # Ok::<(), pay402_core::lightning::LightningError>(())
/// ```
#[derive(Clone, Debug)]
pub enum Cln {
    /// The `lightning-rpc` unix socket.
    Rpc(ClnRpc),
    /// clnrest.
    Rest(ClnRest),
}

impl Cln {
    /// [`ClnRest`] from [`ClnRestConfig::from_env`] if `CLN_REST_URL` is set,
    /// else [`ClnRpc`] from [`ClnRpcConfig::from_env`].
    ///
    /// ```no_run
    /// use pay402_backends::cln::Cln;
    /// let node = Cln::from_env()?;
    /// # Ok::<(), pay402_core::lightning::LightningError>(())
    /// ```
    pub fn from_env() -> Result<Cln, LightningError> {
        Cln::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`Cln::from_env`], reading variables through `var`.
    ///
    /// ```
    /// use pay402_backends::cln::Cln;
    /// let node = Cln::from_vars(|name| match name {
    ///     "CLN_RPC_PATH" => Some("/tmp/lightning-rpc".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert!(matches!(node, Cln::Rpc(_)));
    /// let node = Cln::from_vars(|name| match name {
    ///     "CLN_REST_URL" => Some("https://127.0.0.1:3010".into()),
    ///     "CLN_RUNE" => Some("r".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert!(matches!(node, Cln::Rest(_)));
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Cln, LightningError> {
        if var("CLN_REST_URL").is_some_and(|v| !v.trim().is_empty()) {
            Ok(Cln::Rest(ClnRest::new(ClnRestConfig::from_vars(var)?)?))
        } else {
            Ok(Cln::Rpc(ClnRpc::new(ClnRpcConfig::from_vars(var)?)?))
        }
    }

    fn core(&self) -> &Core {
        match self {
            Cln::Rpc(n) => &n.core,
            Cln::Rest(n) => &n.core,
        }
    }
}

async fn create_traced(
    core: &Core,
    req: &InvoiceRequest,
) -> Result<CreatedInvoice, LightningError> {
    let span = tracing::info_span!(
        "cln.create_invoice",
        transport = core.transport.name(),
        amount_msat = req.amount.0,
        payment_hash = tracing::field::Empty,
    );
    core.create(req).instrument(span).await
}

async fn lookup_traced(core: &Core, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
    let span = tracing::debug_span!(
        "cln.lookup_invoice",
        transport = core.transport.name(),
        payment_hash = %hash,
    );
    core.lookup(hash).instrument(span).await
}

async fn pay_traced(core: &Core, req: &PayRequest) -> Result<Payment, LightningError> {
    let span = tracing::info_span!(
        "cln.pay_invoice",
        transport = core.transport.name(),
        max_fee_msat = req.max_fee.0,
        payment_hash = tracing::field::Empty,
    );
    core.pay(req).instrument(span).await
}

macro_rules! impl_ports {
    ($ty:ty, $core:ident => $get:expr) => {
        #[async_trait]
        impl InvoiceIssuer for $ty {
            async fn create_invoice(
                &self,
                req: &InvoiceRequest,
            ) -> Result<CreatedInvoice, LightningError> {
                let $core = self;
                create_traced($get, req).await
            }

            async fn lookup_invoice(
                &self,
                hash: &PaymentHash,
            ) -> Result<InvoiceState, LightningError> {
                let $core = self;
                lookup_traced($get, hash).await
            }

            fn network(&self) -> Network {
                let $core = self;
                let core: &Core = $get;
                core.network
            }
        }

        #[async_trait]
        impl LightningPayer for $ty {
            async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError> {
                let $core = self;
                pay_traced($get, req).await
            }
        }
    };
}

impl_ports!(ClnRpc, n => &n.core);
impl_ports!(ClnRest, n => &n.core);
impl_ports!(Cln, n => n.core());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_fresh() {
        let a = new_label();
        let b = new_label();
        assert_ne!(a, b);
        assert!(a.starts_with("pay402-"));
        assert_eq!(a.len(), "pay402-".len() + 32);
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(60)), 60);
    }

    #[test]
    fn rpc_config_from_vars() {
        let cfg = ClnRpcConfig::from_vars(|n| match n {
            "HOME" => Some("/home/u".into()),
            "CLN_NETWORK" => Some("testnet4".into()),
            "CLN_TIMEOUT_SECS" => Some("7".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            cfg.socket_path,
            Path::new("/home/u/.lightning/testnet4/lightning-rpc")
        );
        assert_eq!(cfg.timeout, Duration::from_secs(7));
        let cfg = ClnRpcConfig::from_vars(|n| {
            (n == "CLN_RPC_PATH").then(|| " /run/cln/lightning-rpc ".into())
        })
        .unwrap();
        assert_eq!(cfg.socket_path, Path::new("/run/cln/lightning-rpc"));
        assert_eq!(cfg.network, Network::Bitcoin);
        assert!(
            ClnRpcConfig::from_vars(|_| None).is_err(),
            "no HOME, no path"
        );
        assert!(
            ClnRpcConfig::from_vars(|n| match n {
                "CLN_RPC_PATH" => Some("/x".into()),
                "CLN_NETWORK" => Some("liquid".into()),
                _ => None,
            })
            .is_err()
        );
        assert!(
            ClnRpcConfig::from_vars(|n| match n {
                "CLN_RPC_PATH" => Some("/x".into()),
                "CLN_TIMEOUT_SECS" => Some("0".into()),
                _ => None,
            })
            .is_err()
        );
        let mut zero = ClnRpcConfig::new("/x", Network::Regtest);
        zero.timeout = Duration::ZERO;
        assert!(ClnRpc::new(zero).is_err());
    }

    #[test]
    fn rest_config_validation() {
        let url = |s: &str| s.parse::<Url>().unwrap();
        assert!(
            ClnRest::new(ClnRestConfig::new(
                url("https://n.example:3010"),
                "r",
                Network::Bitcoin
            ))
            .is_ok()
        );
        assert!(
            ClnRest::new(ClnRestConfig::new(
                url("https://n.example:3010"),
                " ",
                Network::Bitcoin
            ))
            .is_err()
        );
        assert!(
            ClnRest::new(ClnRestConfig::new(
                url("https://n.example:3010"),
                "a\nb",
                Network::Bitcoin
            ))
            .is_err()
        );
        assert!(
            ClnRest::new(ClnRestConfig::new(
                url("ftp://127.0.0.1"),
                "r",
                Network::Bitcoin
            ))
            .is_err()
        );
        let mut pem_http = ClnRestConfig::new(url("http://127.0.0.1:3010"), "r", Network::Regtest);
        pem_http.tls_cert_pem = Some(b"x".to_vec());
        assert!(ClnRest::new(pem_http).is_err());
        let mut bad_pem = ClnRestConfig::new(url("https://127.0.0.1:3010"), "r", Network::Regtest);
        bad_pem.tls_cert_pem = Some(b"not a pem".to_vec());
        assert!(matches!(
            ClnRest::new(bad_pem),
            Err(LightningError::Unreachable {
                backend: "cln",
                call: "configure",
                ..
            })
        ));
        let node = ClnRest::new(ClnRestConfig::new(
            url("https://proxy.example/cln?x=1"),
            "r",
            Network::Bitcoin,
        ))
        .unwrap();
        assert_eq!(node.base_url().as_str(), "https://proxy.example/cln/");
        let missing_cert = ClnRestConfig::from_vars(|n| match n {
            "CLN_RUNE" => Some("r".into()),
            "CLN_TLS_CERT_PATH" => Some("/nonexistent/ca.pem".into()),
            _ => None,
        });
        assert!(missing_cert.is_err());
    }

    #[test]
    fn payments_are_checked() {
        let pre = pay402_core::lightning::Preimage::from_bytes([9; 32]);
        let hash = pre.payment_hash();
        let p = payment_from(
            hash,
            Msat(1_000),
            Some(&pre.to_hex()),
            Some(1_000),
            Some(1_003),
        )
        .unwrap();
        assert_eq!((p.amount, p.fee), (Msat(1_000), Msat(3)));
        let p = payment_from(hash, Msat(1_000), Some(&pre.to_hex()), None, None).unwrap();
        assert_eq!((p.amount, p.fee), (Msat(1_000), Msat(0)));
        assert!(
            payment_from(
                hash,
                Msat(1_000),
                Some(&pre.to_hex()),
                Some(1_000),
                Some(999)
            )
            .is_err()
        );
        assert!(payment_from(hash, Msat(1_000), Some(&"0".repeat(64)), None, None).is_err());
        assert!(payment_from(hash, Msat(1_000), None, None, None).is_err());
    }

    #[test]
    fn failure_reasons_name_the_code() {
        let e = RpcError {
            code: 205,
            message: "Ran out of routes to try".into(),
            data: None,
        };
        assert_eq!(
            failure_reason(&e),
            "no route: Ran out of routes to try (cln error 205)"
        );
    }
}
