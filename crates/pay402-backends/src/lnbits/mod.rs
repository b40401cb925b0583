//! An LNbits client implementing [`InvoiceIssuer`] and [`LightningPayer`].
//!
//! LNbits is a wallet server: each wallet has an *invoice key* (create and
//! check invoices) and an *admin key* (also pay), sent as `X-Api-Key`.
//!
//! | Port method | LNbits call |
//! |---|---|
//! | [`InvoiceIssuer::create_invoice`] | `POST /api/v1/payments {"out": false, "amount": <sat>, "unit": "sat", "memo", "expiry"}` (invoice key) |
//! | [`InvoiceIssuer::lookup_invoice`] | `GET /api/v1/payments/{payment_hash}` (invoice key) |
//! | [`LightningPayer::pay_invoice`] | `GET /api/v1/payments/{hash}` (paid already?), `POST /api/v1/payments {"out": true, "bolt11"}`, then `GET /api/v1/payments/{hash}` until paid or failed (admin key) |
//!
//! Quirks handled:
//! - `out` is always sent: LNbits' request model defaults to `out = true`.
//! - The create response carries the invoice as `payment_request` (older
//!   versions) or `bolt11` (newer); both are accepted.
//! - LNbits invoices are in whole satoshis. A request with a millisatoshi
//!   fraction is refused with [`LightningError::Rejected`] instead of being
//!   rounded.
//! - A `paid` payment with an all-zero or missing preimage (LNbits issue
//!   #3070) is [`LightningError::InvalidResponse`]; every preimage must hash
//!   to the payment hash.
//! - Error bodies are FastAPI's `{"detail": "..."}`, or a list of validation
//!   errors as `detail`; both become readable messages.
//! - A check response without `details` describes a payment of another
//!   wallet (LNbits returns `details` only to the owning wallet), so it is
//!   treated as not this wallet's.
//!
//! Safety properties:
//! - Idempotent on payment hash: before paying, the payment is checked; an
//!   earlier successful payment from this wallet is returned as is, a
//!   pending one is waited for. If LNbits answers that the invoice is
//!   already paid, the earlier result is fetched the same way.
//! - Paying never retries blindly: a `POST` that times out, loses its
//!   connection or ends in a server error, or a payment still pending when
//!   the request's timeout has passed, is [`LightningError::Unknown`] with
//!   the invoice's payment hash (decoded locally).
//! - Invoices LNbits creates are decoded and checked (hash, amount, network).
//! - Plain `http://` is allowed only to loopback hosts; API keys never
//!   travel in clear text over a network. Redirects are not followed.
//!
//! ## Errors
//!
//! Errors carry `backend: "lnbits"` and `call: "create_invoice" |
//! "lookup_invoice" | "pay_invoice" | "check_payment"` (the status checks
//! made while paying) or `"configure"`. `{"detail"}` errors and other 4xx
//! answers are [`LightningError::Rejected`] (401: wrong key); an unknown
//! payment hash is [`LightningError::NotFound`]. When paying, a failed
//! payment (LNbits' HTTP 520 `PaymentError` with status `failed`, an
//! insufficient balance, or a check that reports `failed`) is
//! [`LightningError::PaymentFailed`]. For `pay_invoice`, only
//! `PaymentFailed`, `Rejected` and `Unreachable` mean that nothing was sent.
//!
//! ## Environment
//!
//! [`LnbitsConfig::from_env`] reads:
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `LNBITS_URL` | the LNbits instance, e.g. `https://legend.lnbits.com` | `http://127.0.0.1:5000` |
//! | `LNBITS_INVOICE_KEY` | the wallet's invoice/read key (create and check) | none |
//! | `LNBITS_ADMIN_KEY` | the wallet's admin key (pay; also used to create if no invoice key) | none |
//! | `LNBITS_NETWORK` | `bitcoin` (or `mainnet`), `testnet`, `testnet4`, `signet`, `regtest` | `bitcoin` |
//! | `LNBITS_TIMEOUT_SECS` | per-call HTTP timeout in seconds | `30` |
//!
//! At least one key is required.
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), pay402_core::lightning::LightningError> {
//! use pay402_backends::lnbits::{Lnbits, LnbitsConfig};
//! use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, LightningPayer, Network, PayRequest};
//! use pay402_core::money::Msat;
//!
//! let mut cfg = LnbitsConfig::new("https://lnbits.example".parse().unwrap(), Network::Bitcoin);
//! cfg.invoice_key = Some("<invoice key>".into());
//! cfg.admin_key = Some("<admin key>".into());
//! let wallet = Lnbits::new(cfg)?;
//! let inv = wallet.create_invoice(&InvoiceRequest::new(Msat(21_000), "GET /hello")).await?;
//! let state = wallet.lookup_invoice(&inv.payment_hash).await?;
//! # let _ = state;
//! let paid = wallet.pay_invoice(&PayRequest::new("lnbc...", Msat(1_000))).await?;
//! assert!(paid.preimage.matches(&paid.payment_hash));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use lightning_invoice::Bolt11Invoice;
use pay402_core::lightning::{
    CreatedInvoice, InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer,
    Network, PayRequest, Payment, PaymentHash,
};
use pay402_core::money::Msat;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::Instrument;

use crate::util::client::{
    ReadError, decode_for_payment, error_chain, read_limited, snippet, verify_created,
    verify_preimage,
};
use crate::util::http::{api_base, api_https, client_builder, secs_var, url_var};
use crate::util::{SecretText, network_var};

/// The URL type of [`LnbitsConfig::url`] (re-exported from `reqwest`).
pub use reqwest::Url;

const BACKEND: &str = "lnbits";
const CREATE: &str = "create_invoice";
const LOOKUP: &str = "lookup_invoice";
const PAY: &str = "pay_invoice";
const CHECK: &str = "check_payment";
const CONFIGURE: &str = "configure";

const API_KEY_HEADER: &str = "X-Api-Key";

/// The largest response body read (1 MiB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The default per-call HTTP timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The fewest status checks made after a payment was sent, even if the
/// request's timeout has already passed.
const MIN_CHECKS: u32 = 3;

/// The longest pause between status checks.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(1);

crate::util::backend_errors!(BACKEND);

/// How to reach an LNbits wallet.
///
/// `Debug` output redacts the keys.
///
/// ```
/// use pay402_backends::lnbits::LnbitsConfig;
/// use pay402_core::lightning::Network;
/// let mut cfg = LnbitsConfig::new("https://lnbits.example".parse().unwrap(), Network::Bitcoin);
/// cfg.invoice_key = Some("f3d5c2a1".into());
/// assert!(!format!("{cfg:?}").contains("f3d5c2a1"));
/// ```
#[derive(Clone)]
pub struct LnbitsConfig {
    /// The LNbits instance. `http://` is allowed only for loopback hosts.
    pub url: Url,
    /// The wallet's invoice (read) key: creates and checks invoices.
    pub invoice_key: Option<String>,
    /// The wallet's admin key: pays (and creates/checks if there is no invoice key).
    pub admin_key: Option<String>,
    /// The network of the instance's funding source; invoices for other
    /// networks are refused.
    pub network: Network,
    /// Per-call HTTP timeout (for the payment call: on top of the payment timeout).
    pub timeout: Duration,
}

impl fmt::Debug for LnbitsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LnbitsConfig")
            .field("url", &self.url.as_str())
            .field(
                "invoice_key",
                &self.invoice_key.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .field("network", &self.network)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl LnbitsConfig {
    /// A configuration without keys and with a 30 s timeout.
    ///
    /// ```
    /// use pay402_backends::lnbits::LnbitsConfig;
    /// use pay402_core::lightning::Network;
    /// let cfg = LnbitsConfig::new("http://127.0.0.1:5000".parse().unwrap(), Network::Regtest);
    /// assert!(cfg.admin_key.is_none() && cfg.invoice_key.is_none());
    /// ```
    pub fn new(url: Url, network: Network) -> LnbitsConfig {
        LnbitsConfig {
            url,
            invoice_key: None,
            admin_key: None,
            network,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Reads the configuration from the environment (see the
    /// [module docs](self#environment)).
    ///
    /// Errors are [`LightningError::Unreachable`] with `call: "configure"`.
    ///
    /// ```no_run
    /// use pay402_backends::lnbits::{Lnbits, LnbitsConfig};
    /// let wallet = Lnbits::new(LnbitsConfig::from_env()?)?;
    /// # Ok::<(), pay402_core::lightning::LightningError>(())
    /// ```
    pub fn from_env() -> Result<LnbitsConfig, LightningError> {
        LnbitsConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`LnbitsConfig::from_env`], reading variables through `var`.
    /// Empty values count as unset.
    ///
    /// ```
    /// use pay402_backends::lnbits::LnbitsConfig;
    /// use pay402_core::lightning::Network;
    /// let cfg = LnbitsConfig::from_vars(|name| match name {
    ///     "LNBITS_URL" => Some("https://lnbits.example".into()),
    ///     "LNBITS_INVOICE_KEY" => Some("inv".into()),
    ///     "LNBITS_NETWORK" => Some("signet".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(cfg.network, Network::Signet);
    /// assert!(LnbitsConfig::from_vars(|_| None).is_err(), "a key is required");
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<LnbitsConfig, LightningError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let url_text = get("LNBITS_URL").unwrap_or_else(|| "http://127.0.0.1:5000".into());
        let url = url_var("LNBITS_URL", &url_text).map_err(config_error)?;
        let invoice_key = get("LNBITS_INVOICE_KEY").map(|k| k.trim().to_owned());
        let admin_key = get("LNBITS_ADMIN_KEY").map(|k| k.trim().to_owned());
        if invoice_key.is_none() && admin_key.is_none() {
            return Err(config_error(
                "set LNBITS_INVOICE_KEY (to charge) and/or LNBITS_ADMIN_KEY (to pay)",
            ));
        }
        let network = network_var("LNBITS_NETWORK", get("LNBITS_NETWORK")).map_err(config_error)?;
        let timeout = secs_var(
            "LNBITS_TIMEOUT_SECS",
            get("LNBITS_TIMEOUT_SECS"),
            DEFAULT_TIMEOUT,
        )
        .map_err(config_error)?;
        Ok(LnbitsConfig {
            url,
            invoice_key,
            admin_key,
            network,
            timeout,
        })
    }
}

/// An LNbits wallet reached over its REST API.
///
/// Cheap to clone (the HTTP connection pool is shared).
///
/// ```
/// use pay402_backends::lnbits::{Lnbits, LnbitsConfig};
/// use pay402_core::lightning::{InvoiceIssuer, Network};
/// let mut cfg = LnbitsConfig::new("https://lnbits.example".parse().unwrap(), Network::Bitcoin);
/// cfg.invoice_key = Some("inv".into());
/// let wallet = Lnbits::new(cfg).unwrap();
/// assert_eq!(wallet.network(), Network::Bitcoin);
/// assert!(!wallet.can_pay());
/// ```
#[derive(Clone)]
pub struct Lnbits {
    http: reqwest::Client,
    base: Url,
    invoice_key: Option<HeaderValue>,
    admin_key: Option<HeaderValue>,
    network: Network,
    timeout: Duration,
}

impl fmt::Debug for Lnbits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lnbits")
            .field("url", &self.base.as_str())
            .field("network", &self.network)
            .field("can_pay", &self.can_pay())
            .finish_non_exhaustive()
    }
}

fn key_header(name: &str, key: Option<&String>) -> Result<Option<HeaderValue>, LightningError> {
    let Some(key) = key.map(|k| k.trim()).filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    let mut value = HeaderValue::from_str(key)
        .map_err(|_| config_error(format!("{name} is not a valid header value")))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Which key a call needs.
#[derive(Clone, Copy)]
enum Key {
    Invoice,
    Admin,
}

/// Why an HTTP exchange failed.
enum Fail {
    NotSent(String),
    NoAnswer(String),
    Invalid(String),
}

impl Fail {
    fn into_error(self, call: &'static str) -> LightningError {
        match self {
            Fail::NotSent(d) | Fail::NoAnswer(d) => unreachable(call, d),
            Fail::Invalid(d) => invalid(call, d),
        }
    }
}

/// FastAPI's error body.
#[derive(Deserialize)]
struct ErrorBody {
    detail: Value,
    #[serde(default)]
    status: Option<String>,
}

impl ErrorBody {
    fn text(&self) -> String {
        detail_text(&self.detail)
    }
}

fn detail_text(detail: &Value) -> String {
    match detail {
        Value::String(s) => s.trim().to_owned(),
        // FastAPI validation errors: [{"loc": ["body", "amount"], "msg": "...", "type": "..."}]
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let msg = item.get("msg").and_then(Value::as_str);
                let loc = item.get("loc").and_then(Value::as_array).map(|parts| {
                    parts
                        .iter()
                        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(".")
                });
                match (loc, msg) {
                    (Some(loc), Some(msg)) => format!("{loc}: {msg}"),
                    (None, Some(msg)) => msg.to_owned(),
                    _ => item.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    serde_json::from_slice::<ErrorBody>(body).ok()
}

/// Maps a non-2xx answer of a call that is not the payment itself.
fn http_error(call: &'static str, status: StatusCode, body: &[u8]) -> LightningError {
    match parse_error(body) {
        Some(e) => rejected(call, format!("{} (HTTP {})", e.text(), status.as_u16())),
        None if matches!(status.as_u16(), 502..=504) => {
            unreachable(call, format!("HTTP {}", status.as_u16()))
        }
        None => rejected(call, format!("HTTP {}: {}", status.as_u16(), snippet(body))),
    }
}

/// An integer that some versions send as a float (`1000.0`).
fn de_opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(serde::de::Error::custom(format!(
                    "expected an integer, got {n}"
                ))),
            }
        }
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

#[derive(Deserialize)]
struct CreateResponse {
    payment_hash: String,
    #[serde(default)]
    payment_request: Option<String>,
    #[serde(default)]
    bolt11: Option<String>,
}

#[derive(Deserialize)]
struct PayResponse {
    #[serde(default)]
    payment_hash: Option<String>,
}

/// The answer of `GET /api/v1/payments/{hash}`.
#[derive(Debug, Deserialize)]
struct Check {
    paid: bool,
    #[serde(default)]
    preimage: Option<SecretText>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Option<Details>,
}

#[derive(Debug, Deserialize)]
struct Details {
    #[serde(default)]
    payment_hash: Option<String>,
    /// Millisatoshis; negative for outgoing payments.
    #[serde(default, deserialize_with = "de_opt_int")]
    amount: Option<i64>,
    /// Millisatoshis (negative on some versions).
    #[serde(default, deserialize_with = "de_opt_int")]
    fee: Option<i64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    bolt11: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum CheckState {
    Paid,
    Pending,
    Failed,
}

impl Check {
    fn state(&self) -> CheckState {
        let status = self
            .status
            .as_deref()
            .or_else(|| self.details.as_ref().and_then(|d| d.status.as_deref()))
            .unwrap_or_default();
        if self.paid || status == "success" {
            CheckState::Paid
        } else if status == "failed" {
            CheckState::Failed
        } else {
            CheckState::Pending
        }
    }

    /// Whether LNbits shows this as an incoming payment of this wallet.
    fn is_incoming(&self) -> bool {
        self.details
            .as_ref()
            .and_then(|d| d.amount)
            .is_some_and(|a| a > 0)
    }

    /// Whether LNbits shows this as a payment of this wallet that is not
    /// incoming (outgoing, or of unknown direction).
    fn is_ours_outgoing(&self) -> bool {
        self.details.is_some() && !self.is_incoming()
    }

    fn into_payment(self, hash: PaymentHash, invoice_amount: Msat) -> Result<Payment, String> {
        let preimage = verify_preimage(self.preimage.as_deref(), &hash)
            .map_err(|e| format!("paid payment: {e}"))?;
        let (amount, fee) = match &self.details {
            Some(d) => (
                d.amount.map_or(invoice_amount.0, i64::unsigned_abs),
                d.fee.map_or(0, i64::unsigned_abs),
            ),
            None => (invoice_amount.0, 0),
        };
        Ok(Payment {
            payment_hash: hash,
            preimage,
            amount: Msat(amount),
            fee: Msat(fee),
        })
    }
}

impl Lnbits {
    /// A client for the wallet in `config`. No connection is made yet.
    ///
    /// Fails (with [`LightningError::Unreachable`], `call: "configure"`) if
    /// the URL is not `https://` (or `http://` to a loopback host), no key is
    /// set, a key is not a valid header value, or the timeout is zero.
    ///
    /// ```
    /// use pay402_backends::lnbits::{Lnbits, LnbitsConfig};
    /// use pay402_core::lightning::Network;
    /// let mut cfg = LnbitsConfig::new("http://203.0.113.9:5000".parse().unwrap(), Network::Bitcoin);
    /// cfg.admin_key = Some("adm".into());
    /// assert!(Lnbits::new(cfg).is_err(), "plain http to a remote host");
    /// ```
    pub fn new(config: LnbitsConfig) -> Result<Lnbits, LightningError> {
        let https = api_https(&config.url, config.timeout, "https://").map_err(config_error)?;
        let invoice_key = key_header("invoice_key", config.invoice_key.as_ref())?;
        let admin_key = key_header("admin_key", config.admin_key.as_ref())?;
        if invoice_key.is_none() && admin_key.is_none() {
            return Err(config_error("no API key: set invoice_key and/or admin_key"));
        }
        let http = client_builder(config.timeout)
            .https_only(https)
            .build()
            .map_err(|e| config_error(format!("cannot build HTTP client: {}", error_chain(&e))))?;
        Ok(Lnbits {
            http,
            base: api_base(config.url),
            invoice_key,
            admin_key,
            network: config.network,
            timeout: config.timeout,
        })
    }

    /// The base URL calls are made against.
    ///
    /// ```
    /// use pay402_backends::lnbits::{Lnbits, LnbitsConfig};
    /// use pay402_core::lightning::Network;
    /// let mut cfg = LnbitsConfig::new("https://example.org/lnbits".parse().unwrap(), Network::Bitcoin);
    /// cfg.invoice_key = Some("k".into());
    /// assert_eq!(Lnbits::new(cfg).unwrap().base_url().as_str(), "https://example.org/lnbits/");
    /// ```
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Whether an admin key is configured (needed to pay).
    ///
    /// ```
    /// use pay402_backends::lnbits::{Lnbits, LnbitsConfig};
    /// use pay402_core::lightning::Network;
    /// let mut cfg = LnbitsConfig::new("http://localhost:5000".parse().unwrap(), Network::Regtest);
    /// cfg.admin_key = Some("adm".into());
    /// assert!(Lnbits::new(cfg).unwrap().can_pay());
    /// ```
    pub fn can_pay(&self) -> bool {
        self.admin_key.is_some()
    }

    fn key(&self, call: &'static str, which: Key) -> Result<&HeaderValue, LightningError> {
        match which {
            Key::Invoice => self.invoice_key.as_ref().or(self.admin_key.as_ref()),
            Key::Admin => self.admin_key.as_ref(),
        }
        .ok_or_else(|| match which {
            Key::Invoice => rejected(call, "no API key configured"),
            Key::Admin => rejected(
                call,
                "paying needs the wallet's admin key (LNBITS_ADMIN_KEY)",
            ),
        })
    }

    fn endpoint(&self, call: &'static str, path: &str) -> Result<Url, LightningError> {
        self.base
            .join(path)
            .map_err(|e| unreachable(call, format!("cannot build URL for {path}: {e}")))
    }

    /// Sends a request and reads its (bounded) body.
    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<(StatusCode, Vec<u8>), Fail> {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_builder() => {
                return Err(Fail::NotSent(error_chain(&e)));
            }
            Err(e) if e.is_timeout() => {
                return Err(Fail::NoAnswer(format!("timed out: {}", error_chain(&e))));
            }
            Err(e) => return Err(Fail::NoAnswer(error_chain(&e))),
        };
        let status = resp.status();
        match read_limited(resp, MAX_BODY_BYTES).await {
            Ok(body) => Ok((status, body)),
            Err(ReadError::TooLarge(max)) => Err(Fail::Invalid(format!(
                "response body larger than {max} bytes"
            ))),
            Err(ReadError::Transport(e)) => Err(Fail::NoAnswer(format!("reading response: {e}"))),
        }
    }

    async fn create(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        if req.amount == Msat::ZERO {
            return Err(rejected(CREATE, "amount must be positive"));
        }
        if !req.amount.0.is_multiple_of(1000) {
            return Err(rejected(
                CREATE,
                format!(
                    "LNbits invoices are in whole satoshis; {} msat is not a whole number of sat",
                    req.amount.0
                ),
            ));
        }
        let key = self.key(CREATE, Key::Invoice)?;
        let body = json!({
            "out": false,
            "amount": req.amount.0 / 1000,
            "unit": "sat",
            "memo": req.memo,
            "expiry": req.expiry.as_secs().max(1),
        });
        let url = self.endpoint(CREATE, "api/v1/payments")?;
        let (status, bytes) = self
            .exchange(
                self.http
                    .post(url)
                    .header(API_KEY_HEADER, key.clone())
                    .json(&body),
            )
            .await
            .map_err(|f| f.into_error(CREATE))?;
        if !status.is_success() {
            return Err(http_error(CREATE, status, &bytes));
        }
        let resp: CreateResponse = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(CREATE, format!("malformed JSON: {e}")))?;
        let bolt11 = match (resp.payment_request, resp.bolt11) {
            (Some(a), Some(b))
                if !a.trim().is_empty() && !b.trim().is_empty() && a.trim() != b.trim() =>
            {
                return Err(invalid(CREATE, "payment_request and bolt11 differ"));
            }
            (Some(a), _) if !a.trim().is_empty() => a,
            (_, Some(b)) if !b.trim().is_empty() => b,
            _ => {
                return Err(invalid(
                    CREATE,
                    "response has neither payment_request nor bolt11",
                ));
            }
        };
        let bolt11 = bolt11.trim().to_owned();
        let payment_hash =
            verify_created(&bolt11, Some(&resp.payment_hash), req.amount, self.network)
                .map_err(|e| invalid(CREATE, e))?;
        tracing::Span::current().record("payment_hash", tracing::field::display(payment_hash));
        tracing::info!("lnbits invoice created");
        Ok(CreatedInvoice {
            bolt11,
            payment_hash,
        })
    }

    /// `GET /api/v1/payments/{hash}`; `Ok(None)` if LNbits does not know it.
    async fn check(
        &self,
        call: &'static str,
        hash: &PaymentHash,
        which: Key,
    ) -> Result<Option<Check>, LightningError> {
        let key = self.key(call, which)?;
        let url = self.endpoint(call, &format!("api/v1/payments/{}", hash.to_hex()))?;
        let (status, bytes) = self
            .exchange(self.http.get(url).header(API_KEY_HEADER, key.clone()))
            .await
            .map_err(|f| f.into_error(call))?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(http_error(call, status, &bytes));
        }
        let check: Check = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(call, format!("malformed JSON: {e}")))?;
        if let Some(h) = check
            .details
            .as_ref()
            .and_then(|d| d.payment_hash.as_deref())
            && h.trim().parse::<PaymentHash>().ok().as_ref() != Some(hash)
        {
            return Err(invalid(
                call,
                "details.payment_hash differs from the requested hash",
            ));
        }
        Ok(Some(check))
    }

    async fn lookup(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let Some(check) = self.check(LOOKUP, hash, Key::Invoice).await? else {
            return Err(LightningError::NotFound);
        };
        let Some(details) = &check.details else {
            // LNbits shows details only to the owning wallet.
            tracing::debug!("lnbits knows the hash but not as this wallet's invoice");
            return Err(LightningError::NotFound);
        };
        if details.amount.is_some_and(|a| a < 0) {
            tracing::debug!("the hash is an outgoing payment of this wallet, not an invoice");
            return Err(LightningError::NotFound);
        }
        let state = match check.state() {
            CheckState::Paid => {
                let preimage = verify_preimage(check.preimage.as_deref(), hash)
                    .map_err(|e| invalid(LOOKUP, format!("paid invoice: {e}")))?;
                let amount = match details.amount {
                    Some(a) => a.unsigned_abs(),
                    None => details
                        .bolt11
                        .as_deref()
                        .and_then(|b| Bolt11Invoice::from_str(b.trim()).ok())
                        .and_then(|i| i.amount_milli_satoshis())
                        .ok_or_else(|| invalid(LOOKUP, "paid invoice without an amount"))?,
                };
                InvoiceState::Settled {
                    preimage,
                    amount_paid: Msat(amount),
                }
            }
            CheckState::Failed => InvoiceState::Canceled,
            CheckState::Pending => {
                // Older versions keep expired invoices pending forever.
                let expired = details
                    .bolt11
                    .as_deref()
                    .and_then(|b| Bolt11Invoice::from_str(b.trim()).ok())
                    .is_some_and(|i| {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default();
                        i.would_expire(now)
                    });
                if expired {
                    InvoiceState::Canceled
                } else {
                    InvoiceState::Open
                }
            }
        };
        tracing::debug!(settled = state.is_settled(), "lnbits invoice looked up");
        Ok(state)
    }

    async fn pay(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let started = Instant::now();
        let admin = self.key(PAY, Key::Admin)?.clone();
        let bolt11 = req.bolt11.trim();
        let (hash, amount) = decode_for_payment(bolt11, self.network)?;
        tracing::Span::current().record("payment_hash", tracing::field::display(hash));
        let deadline = started + req.timeout;

        // Idempotency: did this wallet pay (or start paying) it already?
        if let Some(check) = self.check(CHECK, &hash, Key::Admin).await?
            && check.is_ours_outgoing()
        {
            match check.state() {
                CheckState::Paid => {
                    tracing::info!(
                        "invoice already paid by this wallet; returning the earlier payment"
                    );
                    return check
                        .into_payment(hash, amount)
                        .map_err(|e| invalid(CHECK, e));
                }
                CheckState::Pending => {
                    tracing::info!("a payment of this invoice is in flight; waiting for it");
                    return self.poll(hash, amount, deadline).await;
                }
                CheckState::Failed => {}
            }
        }

        let url = self.endpoint(PAY, "api/v1/payments")?;
        let body = json!({ "out": true, "bolt11": bolt11 });
        let http_timeout = req.timeout.saturating_add(self.timeout);
        let (status, bytes) = match self
            .exchange(
                self.http
                    .post(url)
                    .header(API_KEY_HEADER, admin)
                    .timeout(http_timeout)
                    .json(&body),
            )
            .await
        {
            Ok(r) => r,
            Err(Fail::NotSent(d)) => return Err(unreachable(PAY, d)),
            Err(Fail::NoAnswer(d) | Fail::Invalid(d)) => {
                tracing::warn!(why = %d, "lnbits payment call failed after sending; outcome unknown");
                return Err(LightningError::Unknown { payment_hash: hash });
            }
        };
        if status.is_success() {
            let resp: PayResponse = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(PAY, format!("malformed JSON: {e}")))?;
            if let Some(h) = resp.payment_hash.as_deref()
                && h.trim().parse::<PaymentHash>().ok() != Some(hash)
            {
                return Err(invalid(PAY, "payment_hash differs from the invoice's"));
            }
            return self.poll(hash, amount, deadline).await;
        }
        self.pay_refused(status, &bytes, hash, amount, deadline)
            .await
    }

    /// The payment call answered with an error status.
    async fn pay_refused(
        &self,
        status: StatusCode,
        body: &[u8],
        hash: PaymentHash,
        amount: Msat,
        deadline: Instant,
    ) -> Result<Payment, LightningError> {
        let unknown = LightningError::Unknown { payment_hash: hash };
        let Some(err) = parse_error(body) else {
            if status.is_server_error() {
                tracing::warn!(
                    status = status.as_u16(),
                    "lnbits payment got a server error; outcome unknown"
                );
                return Err(unknown);
            }
            return Err(rejected(
                PAY,
                format!("HTTP {}: {}", status.as_u16(), snippet(body)),
            ));
        };
        let text = err.text();
        let lower = text.to_ascii_lowercase();
        if lower.contains("already paid") || lower.contains("already pending") {
            tracing::info!(detail = %text, "lnbits says the invoice is already paid; looking up the earlier payment");
            return match self.check(CHECK, &hash, Key::Admin).await {
                Ok(Some(c)) if c.is_ours_outgoing() => match c.state() {
                    CheckState::Paid => c.into_payment(hash, amount).map_err(|e| invalid(CHECK, e)),
                    CheckState::Pending => self.poll(hash, amount, deadline).await,
                    CheckState::Failed => Err(LightningError::PaymentFailed { reason: text }),
                },
                // Paid, but not by this wallet.
                Ok(_) => Err(LightningError::PaymentFailed { reason: text }),
                Err(e @ LightningError::InvalidResponse { .. }) => Err(e),
                Err(_) => Err(unknown),
            };
        }
        if err.status.as_deref() == Some("pending") {
            tracing::info!(detail = %text, "lnbits payment pending");
            return self.poll(hash, amount, deadline).await;
        }
        let detail = format!("{text} (HTTP {})", status.as_u16());
        match status.as_u16() {
            // LNbits' PaymentError / PaymentFailure.
            520 => Err(LightningError::PaymentFailed { reason: text }),
            400..=499 if lower.contains("insufficient balance") => {
                Err(LightningError::PaymentFailed { reason: text })
            }
            400..=499 => Err(rejected(PAY, detail)),
            _ => {
                tracing::warn!(%detail, "lnbits payment got a server error; outcome unknown");
                Err(unknown)
            }
        }
    }

    /// Checks the payment until it is paid or failed; at least
    /// [`MIN_CHECKS`] times, then until `deadline`.
    async fn poll(
        &self,
        hash: PaymentHash,
        amount: Msat,
        deadline: Instant,
    ) -> Result<Payment, LightningError> {
        let mut pause = Duration::from_millis(50);
        let mut checks = 0u32;
        loop {
            checks += 1;
            match self.check(CHECK, &hash, Key::Admin).await {
                Ok(Some(c)) if c.is_ours_outgoing() => match c.state() {
                    CheckState::Paid => {
                        let p = c
                            .into_payment(hash, amount)
                            .map_err(|e| invalid(CHECK, e))?;
                        tracing::info!(
                            amount_msat = p.amount.0,
                            fee_msat = p.fee.0,
                            "lnbits payment succeeded"
                        );
                        return Ok(p);
                    }
                    CheckState::Failed => {
                        return Err(LightningError::PaymentFailed {
                            reason: "LNbits reports the payment failed".into(),
                        });
                    }
                    CheckState::Pending => {}
                },
                // Not (yet) recorded as this wallet's payment.
                Ok(_) => {}
                Err(e @ LightningError::InvalidResponse { .. }) => return Err(e),
                Err(e) => tracing::debug!(error = %e, "lnbits payment check failed; retrying"),
            }
            let now = Instant::now();
            if now >= deadline && checks >= MIN_CHECKS {
                tracing::warn!("lnbits payment not final at the deadline; outcome unknown");
                return Err(LightningError::Unknown { payment_hash: hash });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
        }
    }
}

#[async_trait]
impl InvoiceIssuer for Lnbits {
    async fn create_invoice(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        let span = tracing::info_span!(
            "lnbits.create_invoice",
            amount_msat = req.amount.0,
            payment_hash = tracing::field::Empty,
        );
        self.create(req).instrument(span).await
    }

    async fn lookup_invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let span = tracing::debug_span!("lnbits.lookup_invoice", payment_hash = %hash);
        self.lookup(hash).instrument(span).await
    }

    fn network(&self) -> Network {
        self.network
    }
}

#[async_trait]
impl LightningPayer for Lnbits {
    async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let span = tracing::info_span!(
            "lnbits.pay_invoice",
            max_fee_msat = req.max_fee.0,
            payment_hash = tracing::field::Empty,
        );
        self.pay(req).instrument(span).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_check_debug_hides_the_preimage() {
        let pre = "22".repeat(32);
        let check: Check =
            serde_json::from_str(&format!(r#"{{"paid":true,"preimage":"{pre}"}}"#)).unwrap();
        assert_eq!(check.preimage.as_deref(), Some(pre.as_str()));
        let shown = format!("{check:?}");
        assert!(!shown.contains(&pre), "{shown}");
    }

    #[test]
    fn detail_texts() {
        assert_eq!(detail_text(&json!(" Invalid key ")), "Invalid key");
        let validation = json!([
            {"loc": ["body", "amount"], "msg": "field required", "type": "value_error.missing"},
            {"msg": "bad"},
            {"weird": 1}
        ]);
        assert_eq!(
            detail_text(&validation),
            r#"body.amount: field required; bad; {"weird":1}"#
        );
        assert_eq!(detail_text(&json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn http_errors() {
        assert!(matches!(
            http_error(CREATE, StatusCode::UNAUTHORIZED, br#"{"detail":"Invalid key or wallet."}"#),
            LightningError::Rejected { ref detail, .. } if detail == "Invalid key or wallet. (HTTP 401)"
        ));
        assert!(matches!(
            http_error(LOOKUP, StatusCode::BAD_GATEWAY, b"<html>"),
            LightningError::Unreachable { .. }
        ));
        assert!(matches!(
            http_error(LOOKUP, StatusCode::IM_A_TEAPOT, b"tea"),
            LightningError::Rejected { ref detail, .. } if detail == "HTTP 418: tea"
        ));
    }

    #[test]
    fn check_states_and_directions() {
        let parse = |s: &str| serde_json::from_str::<Check>(s).unwrap();
        let c = parse(r#"{"paid":false,"status":"failed"}"#);
        assert_eq!(c.state(), CheckState::Failed);
        let c = parse(r#"{"paid":false,"details":{"status":"success","amount":-1000.0}}"#);
        assert_eq!(c.state(), CheckState::Paid);
        assert!(c.is_ours_outgoing());
        let c = parse(r#"{"paid":false,"details":{"pending":true,"amount":5000}}"#);
        assert_eq!(c.state(), CheckState::Pending);
        assert!(c.is_incoming() && !c.is_ours_outgoing());
        let c = parse(r#"{"paid":true,"preimage":null}"#);
        assert!(
            !c.is_ours_outgoing(),
            "no details: another wallet's payment"
        );
        assert!(serde_json::from_str::<Check>(r#"{"preimage":"00"}"#).is_err());
        assert!(
            serde_json::from_str::<Check>(r#"{"paid":true,"details":{"amount":1.5}}"#).is_err()
        );
        assert!(
            serde_json::from_str::<Check>(r#"{"paid":true,"details":{"amount":"7"}}"#).is_err()
        );
    }

    #[test]
    fn config_validation() {
        let url = |s: &str| s.parse::<Url>().unwrap();
        let no_key = LnbitsConfig::new(url("https://x.example"), Network::Bitcoin);
        assert!(Lnbits::new(no_key.clone()).is_err());
        let mut ok = no_key.clone();
        ok.invoice_key = Some("k".into());
        assert!(Lnbits::new(ok.clone()).is_ok());
        let mut bad_key = ok.clone();
        bad_key.admin_key = Some("a\nb".into());
        assert!(Lnbits::new(bad_key).is_err());
        let mut zero = ok.clone();
        zero.timeout = Duration::ZERO;
        assert!(Lnbits::new(zero).is_err());
        let mut ftp = ok;
        ftp.url = url("ftp://127.0.0.1/");
        assert!(matches!(
            Lnbits::new(ftp),
            Err(LightningError::Unreachable {
                backend: "lnbits",
                call: "configure",
                ..
            })
        ));
        let cfg = LnbitsConfig::from_vars(|n| match n {
            "LNBITS_ADMIN_KEY" => Some(" adm ".into()),
            "LNBITS_TIMEOUT_SECS" => Some("4".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.url.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(cfg.admin_key.as_deref(), Some("adm"));
        assert_eq!(cfg.timeout, Duration::from_secs(4));
        assert_eq!(cfg.network, Network::Bitcoin);
        for (name, value) in [
            ("LNBITS_NETWORK", "moon"),
            ("LNBITS_TIMEOUT_SECS", "0"),
            ("LNBITS_URL", "::"),
        ] {
            let res = LnbitsConfig::from_vars(|n| match n {
                "LNBITS_ADMIN_KEY" => Some("adm".into()),
                n if n == name => Some(value.into()),
                _ => None,
            });
            assert!(res.is_err(), "{name}={value}");
        }
    }
}
