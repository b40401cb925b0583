//! An LND REST client implementing [`InvoiceIssuer`] and [`LightningPayer`].
//!
//! | Port method | LND REST call |
//! |---|---|
//! | [`InvoiceIssuer::create_invoice`] | `POST /v1/invoices` |
//! | [`InvoiceIssuer::lookup_invoice`] | `GET /v1/invoice/{r_hash_hex}` |
//! | [`LightningPayer::pay_invoice`] | `POST /v2/router/send` (NDJSON stream), then `GET /v2/router/track/{hash}` if lnd says the invoice is already paid |
//!
//! Safety properties:
//! - TLS: with [`LndConfig::tls_cert_pem`] set, lnd's `tls.cert` is the only
//!   trust root (public roots are not trusted); see below. Without it, the
//!   public web PKI roots are used (for hosted nodes with CA-issued
//!   certificates). Certificate verification is never disabled. Plain
//!   `http://` is allowed only to loopback hosts (e.g. simnet's REST face).
//! - Every preimage lnd returns is checked: `sha256(preimage) == payment_hash`
//!   and not all zero, else [`LightningError::InvalidResponse`].
//! - Invoices lnd creates are decoded and checked against the request (hash,
//!   amount, network).
//! - Paying never retries blindly. If the HTTP call times out or the stream
//!   ends while the payment is in flight, the result is
//!   [`LightningError::Unknown`] with the invoice's payment hash. Paying the
//!   same invoice again is safe: lnd refuses a second payment
//!   (`AlreadyExists`) and the client then fetches the first payment's result
//!   with `TrackPaymentV2`.
//! - Redirects are not followed, so the macaroon is only ever sent to the
//!   configured URL.
//!
//! ## Errors
//!
//! Errors name the call (`backend: "lnd"`, `call: "create_invoice" |
//! "lookup_invoice" | "pay_invoice"`). lnd's `{code, message}` error bodies
//! become [`LightningError::Rejected`]; an unknown invoice is
//! [`LightningError::NotFound`]; a `FAILED` payment is
//! [`LightningError::PaymentFailed`] with a reason such as `no route` or
//! `insufficient balance`. For `pay_invoice`, only `PaymentFailed`,
//! `Rejected` and `Unreachable` mean that nothing was sent.
//!
//! ## Why not rustls' usual root-certificate check
//!
//! lnd's self-signed `tls.cert` has `CA:TRUE`, which webpki refuses as a
//! server certificate (`CaUsedAsEndEntity`, lnd issue #5450). The client
//! therefore pins it: the server must present exactly that certificate (valid
//! for the URL's host name, with a handshake signature by its key), or a
//! certificate that chains to it under standard validation.
//!
//! ## Environment
//!
//! [`LndConfig::from_env`] reads:
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `LND_REST_URL` | REST endpoint | `https://127.0.0.1:8080` |
//! | `LND_MACAROON_HEX` | macaroon, hex | none |
//! | `LND_MACAROON_PATH` | macaroon file (e.g. `admin.macaroon`), used if `LND_MACAROON_HEX` is unset | none |
//! | `LND_TLS_CERT_PATH` | lnd's `tls.cert` (PEM), pinned as the only trust root | none: public roots |
//! | `LND_NETWORK` | `bitcoin` (or `mainnet`), `testnet`, `testnet4`, `signet`, `regtest` | `bitcoin` |
//! | `LND_TIMEOUT_SECS` | per-call HTTP timeout in seconds | `30` |
//!
//! ## Example: paying through simnet's LND face
//!
//! ```
//! # #[cfg(feature = "simnet-rest")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use pay402_backends::lnd::{LndConfig, LndRest};
//! use pay402_backends::simnet::{rest, SimNet};
//! use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, LightningPayer, Network, PayRequest};
//! use pay402_core::money::Msat;
//!
//! let net = SimNet::new(Network::Regtest);
//! let payer = net.add_node("payer", Msat(1_000_000));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?).parse()?;
//! let server = tokio::spawn(rest::serve(payer.clone(), listener));
//!
//! let lnd = LndRest::new(LndConfig {
//!     url,
//!     macaroon_hex: Some("0201036c6e64".into()),
//!     tls_cert_pem: None,
//!     network: Network::Regtest,
//!     timeout: Duration::from_secs(10),
//! })?;
//! let merchant = net.add_node("merchant", Msat(0));
//! let inv = merchant.create_invoice(&InvoiceRequest::new(Msat(5_000), "demo")).await?;
//! let paid = lnd.pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0))).await?;
//! assert!(paid.preimage.matches(&inv.payment_hash));
//! assert_eq!(payer.balance(), Msat(995_000));
//! server.abort();
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "simnet-rest"))]
//! # fn main() {}
//! ```

mod stream;
use crate::tls;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::hashes::Hash;
use lightning_invoice::Bolt11Invoice;
use pay402_core::lightning::{
    CreatedInvoice, InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer,
    Network, PayRequest, Payment, PaymentHash, Preimage,
};
use pay402_core::money::Msat;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use crate::util::http::{api_base, error_chain, secs_var, snippet, url_var};
use crate::util::{currency_for, currency_name};
use crate::util::{file_var, network_var};
use crate::wire::{EnumField, GrpcStatus, b64_32, b64url, code, de_u64, parse_grpc_error};
use stream::Outcome;

/// The URL type of [`LndConfig::url`] (re-exported from `reqwest`).
pub use reqwest::Url;

const BACKEND: &str = "lnd";
const CREATE: &str = "create_invoice";
const LOOKUP: &str = "lookup_invoice";
const PAY: &str = "pay_invoice";
const CONFIGURE: &str = "configure";

/// The largest non-streaming response body read from lnd (1 MiB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The default per-call HTTP timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const MACAROON_HEADER: &str = "grpc-metadata-macaroon";

const INVOICE_STATE: [&str; 4] = ["OPEN", "SETTLED", "CANCELED", "ACCEPTED"];

/// How to reach an lnd node's REST API.
///
/// `Debug` output redacts the macaroon.
///
/// ```
/// use std::time::Duration;
/// use pay402_backends::lnd::LndConfig;
/// use pay402_core::lightning::Network;
/// let cfg = LndConfig {
///     url: "https://127.0.0.1:8080".parse().unwrap(),
///     macaroon_hex: Some("0201036c6e64".into()),
///     tls_cert_pem: None,
///     network: Network::Regtest,
///     timeout: Duration::from_secs(30),
/// };
/// assert!(!format!("{cfg:?}").contains("0201036c6e64"));
/// ```
#[derive(Clone)]
pub struct LndConfig {
    /// The REST endpoint, e.g. `https://127.0.0.1:8080`. `http://` is allowed
    /// only for loopback hosts.
    pub url: Url,
    /// The macaroon as hex, sent as `Grpc-Metadata-macaroon`.
    pub macaroon_hex: Option<String>,
    /// lnd's `tls.cert` (PEM), pinned as the only trust root. `None` uses the
    /// public web PKI roots.
    pub tls_cert_pem: Option<Vec<u8>>,
    /// The network the node runs on; invoices for other networks are refused.
    pub network: Network,
    /// Per-call HTTP timeout (for payments: on top of the payment timeout).
    pub timeout: Duration,
}

impl fmt::Debug for LndConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LndConfig")
            .field("url", &self.url.as_str())
            .field(
                "macaroon_hex",
                &self.macaroon_hex.as_ref().map(|_| "<redacted>"),
            )
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

crate::util::backend_errors!(BACKEND);

impl LndConfig {
    /// A configuration with no macaroon, no pinned certificate and a 30 s timeout.
    ///
    /// ```
    /// use pay402_backends::lnd::LndConfig;
    /// use pay402_core::lightning::Network;
    /// let cfg = LndConfig::new("http://127.0.0.1:8080".parse().unwrap(), Network::Regtest);
    /// assert_eq!(cfg.timeout.as_secs(), 30);
    /// assert!(cfg.macaroon_hex.is_none());
    /// ```
    pub fn new(url: Url, network: Network) -> LndConfig {
        LndConfig {
            url,
            macaroon_hex: None,
            tls_cert_pem: None,
            network,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Reads the configuration from the environment (see the
    /// [module docs](self#environment) for the variables and defaults).
    ///
    /// Errors are [`LightningError::Unreachable`] with `call: "configure"`.
    ///
    /// ```no_run
    /// use pay402_backends::lnd::{LndConfig, LndRest};
    /// let lnd = LndRest::new(LndConfig::from_env()?)?;
    /// # Ok::<(), pay402_core::lightning::LightningError>(())
    /// ```
    pub fn from_env() -> Result<LndConfig, LightningError> {
        LndConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`LndConfig::from_env`], reading variables through `var` (for
    /// tests, or configuration kept elsewhere). Empty values count as unset.
    ///
    /// ```
    /// use pay402_backends::lnd::LndConfig;
    /// use pay402_core::lightning::Network;
    /// let cfg = LndConfig::from_vars(|name| match name {
    ///     "LND_REST_URL" => Some("http://127.0.0.1:18080".into()),
    ///     "LND_MACAROON_HEX" => Some("abcd".into()),
    ///     "LND_NETWORK" => Some("regtest".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(cfg.network, Network::Regtest);
    /// assert_eq!(cfg.macaroon_hex.as_deref(), Some("abcd"));
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<LndConfig, LightningError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let url_text = get("LND_REST_URL").unwrap_or_else(|| "https://127.0.0.1:8080".into());
        let url = url_var("LND_REST_URL", &url_text).map_err(config_error)?;
        let network = network_var("LND_NETWORK", get("LND_NETWORK")).map_err(config_error)?;
        let macaroon_hex = match get("LND_MACAROON_HEX") {
            Some(hex) => Some(hex.trim().to_owned()),
            None => file_var("LND_MACAROON_PATH", get("LND_MACAROON_PATH"))
                .map_err(config_error)?
                .map(hex::encode),
        };
        let tls_cert_pem =
            file_var("LND_TLS_CERT_PATH", get("LND_TLS_CERT_PATH")).map_err(config_error)?;
        let timeout = secs_var("LND_TIMEOUT_SECS", get("LND_TIMEOUT_SECS"), DEFAULT_TIMEOUT)
            .map_err(config_error)?;
        Ok(LndConfig {
            url,
            macaroon_hex,
            tls_cert_pem,
            network,
            timeout,
        })
    }
}

/// An lnd node reached over its REST API.
///
/// Cheap to clone (the HTTP connection pool is shared).
///
/// ```
/// use pay402_backends::lnd::{LndConfig, LndRest};
/// use pay402_core::lightning::{InvoiceIssuer, Network};
/// let lnd = LndRest::new(LndConfig::new("http://localhost:8080".parse().unwrap(), Network::Signet)).unwrap();
/// assert_eq!(lnd.network(), Network::Signet);
/// ```
#[derive(Clone)]
pub struct LndRest {
    http: reqwest::Client,
    base: Url,
    network: Network,
    timeout: Duration,
}

impl fmt::Debug for LndRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LndRest")
            .field("url", &self.base.as_str())
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

fn transport_error(call: &'static str, err: &reqwest::Error) -> LightningError {
    let detail = if err.is_timeout() {
        format!("timed out: {}", error_chain(err))
    } else {
        error_chain(err)
    };
    unreachable(call, detail)
}

fn grpc_detail(g: &GrpcStatus, status: StatusCode) -> String {
    format!(
        "{} (grpc code {}, HTTP {})",
        g.message,
        g.code,
        status.as_u16()
    )
}

/// Maps a non-2xx response of a unary call.
fn http_error(call: &'static str, status: StatusCode, body: &[u8]) -> LightningError {
    match parse_grpc_error(body) {
        Some(g) => rejected(call, grpc_detail(&g, status)),
        None if matches!(status.as_u16(), 502..=504) => {
            unreachable(call, format!("HTTP {}", status.as_u16()))
        }
        None => rejected(call, format!("HTTP {}: {}", status.as_u16(), snippet(body))),
    }
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("response body larger than {MAX_BODY_BYTES} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct AddInvoiceResponse {
    #[serde(default)]
    r_hash: String,
    #[serde(default)]
    payment_request: String,
}

#[derive(Deserialize)]
struct InvoiceResponse {
    #[serde(default)]
    r_hash: String,
    #[serde(default)]
    r_preimage: String,
    #[serde(default)]
    state: Option<EnumField>,
    #[serde(default)]
    settled: bool,
    #[serde(default, deserialize_with = "de_u64")]
    amt_paid_msat: u64,
}

impl LndRest {
    /// A client for the node described by `config`. No connection is made yet.
    ///
    /// Fails (with [`LightningError::Unreachable`], `call: "configure"`) if
    /// the URL is not `https://` (or `http://` to a loopback host), the
    /// macaroon is not hex, the certificate PEM does not parse, or the timeout
    /// is zero.
    ///
    /// ```
    /// use pay402_backends::lnd::{LndConfig, LndRest};
    /// use pay402_core::lightning::Network;
    /// let plain_remote = LndConfig::new("http://203.0.113.7:8080".parse().unwrap(), Network::Bitcoin);
    /// assert!(LndRest::new(plain_remote).is_err());
    /// let local = LndConfig::new("http://127.0.0.1:8080".parse().unwrap(), Network::Regtest);
    /// assert!(LndRest::new(local).is_ok());
    /// ```
    pub fn new(config: LndConfig) -> Result<LndRest, LightningError> {
        let mut headers = HeaderMap::new();
        if let Some(mac) = &config.macaroon_hex {
            let mac = mac.trim();
            if mac.is_empty() || mac.len() % 2 != 0 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(config_error("macaroon_hex is not hex"));
            }
            let mut value = HeaderValue::from_str(mac)
                .map_err(|_| config_error("macaroon_hex is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(MACAROON_HEADER), value);
        }

        let http = tls::node_client(
            &config.url,
            config.timeout,
            config.tls_cert_pem.as_deref(),
            "https:// with the node's tls.cert",
            headers,
        )
        .map_err(config_error)?;

        Ok(LndRest {
            http,
            base: api_base(config.url),
            network: config.network,
            timeout: config.timeout,
        })
    }

    /// The base URL calls are made against.
    ///
    /// ```
    /// use pay402_backends::lnd::{LndConfig, LndRest};
    /// use pay402_core::lightning::Network;
    /// let lnd = LndRest::new(LndConfig::new("http://127.0.0.1:8080".parse().unwrap(), Network::Regtest)).unwrap();
    /// assert_eq!(lnd.base_url().as_str(), "http://127.0.0.1:8080/");
    /// ```
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn endpoint(&self, call: &'static str, path: &str) -> Result<Url, LightningError> {
        self.base
            .join(path)
            .map_err(|e| unreachable(call, format!("cannot build URL for {path}: {e}")))
    }

    /// Sends a unary request and reads its (bounded) body.
    async fn unary(
        &self,
        call: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), LightningError> {
        let resp = req.send().await.map_err(|e| transport_error(call, &e))?;
        let status = resp.status();
        let body = read_limited(resp)
            .await
            .map_err(|e| unreachable(call, format!("reading response: {e}")))?;
        Ok((status, body))
    }

    async fn create(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        if req.amount == Msat::ZERO {
            return Err(rejected(CREATE, "amount must be positive"));
        }
        let expiry = req.expiry.as_secs().max(1);
        let body = json!({
            "value_msat": req.amount.0.to_string(),
            "memo": req.memo,
            "expiry": expiry.to_string(),
            "private": false,
        });
        let url = self.endpoint(CREATE, "v1/invoices")?;
        let (status, bytes) = self.unary(CREATE, self.http.post(url).json(&body)).await?;
        if !status.is_success() {
            return Err(http_error(CREATE, status, &bytes));
        }
        let resp: AddInvoiceResponse = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(CREATE, format!("malformed JSON: {e}")))?;
        let r_hash = b64_32(&resp.r_hash)
            .ok_or_else(|| invalid(CREATE, "r_hash is not 32 bytes of base64"))?;
        let invoice = Bolt11Invoice::from_str(&resp.payment_request)
            .map_err(|e| invalid(CREATE, format!("payment_request does not parse: {e}")))?;
        if invoice.payment_hash().to_byte_array() != r_hash {
            return Err(invalid(CREATE, "payment_request hash differs from r_hash"));
        }
        let expected = currency_for(self.network);
        if invoice.currency() != expected {
            return Err(invalid(
                CREATE,
                format!(
                    "invoice is for {} but the node is configured for {}",
                    currency_name(invoice.currency()),
                    currency_name(expected)
                ),
            ));
        }
        if invoice.amount_milli_satoshis() != Some(req.amount.0) {
            return Err(invalid(CREATE, "invoice amount differs from the request"));
        }
        let payment_hash = PaymentHash(r_hash);
        tracing::Span::current().record("payment_hash", tracing::field::display(payment_hash));
        tracing::info!("lnd invoice created");
        Ok(CreatedInvoice {
            bolt11: resp.payment_request,
            payment_hash,
        })
    }

    async fn lookup(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let url = self.endpoint(LOOKUP, &format!("v1/invoice/{}", hash.to_hex()))?;
        let (status, bytes) = self.unary(LOOKUP, self.http.get(url)).await?;
        if !status.is_success() {
            if let Some(g) = parse_grpc_error(&bytes)
                && (g.code == code::NOT_FOUND || g.message.contains("unable to locate invoice"))
            {
                return Err(LightningError::NotFound);
            }
            return Err(http_error(LOOKUP, status, &bytes));
        }
        let resp: InvoiceResponse = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(LOOKUP, format!("malformed JSON: {e}")))?;
        if !resp.r_hash.is_empty() && b64_32(&resp.r_hash) != Some(hash.0) {
            return Err(invalid(LOOKUP, "r_hash differs from the requested hash"));
        }
        let state = match &resp.state {
            Some(s) => s.name(&INVOICE_STATE),
            None if resp.settled => "SETTLED",
            None => "OPEN",
        };
        let out = match state {
            "OPEN" => InvoiceState::Open,
            "ACCEPTED" => InvoiceState::Accepted,
            "CANCELED" => InvoiceState::Canceled,
            "SETTLED" => {
                let preimage = b64_32(&resp.r_preimage)
                    .map(Preimage::from_bytes)
                    .ok_or_else(|| {
                        invalid(LOOKUP, "settled invoice without a 32-byte r_preimage")
                    })?;
                if preimage.is_all_zero() {
                    return Err(invalid(LOOKUP, "settled invoice with an all-zero preimage"));
                }
                if !preimage.matches(hash) {
                    return Err(invalid(
                        LOOKUP,
                        "r_preimage does not hash to the payment hash",
                    ));
                }
                InvoiceState::Settled {
                    preimage,
                    amount_paid: Msat(resp.amt_paid_msat),
                }
            }
            other => return Err(invalid(LOOKUP, format!("unknown invoice state {other:?}"))),
        };
        tracing::debug!(state, "lnd invoice looked up");
        Ok(out)
    }

    async fn pay(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let bolt11 = req.bolt11.trim();
        let invoice =
            Bolt11Invoice::from_str(bolt11).map_err(|e| LightningError::PaymentFailed {
                reason: format!("invalid invoice: {e}"),
            })?;
        let hash = PaymentHash(invoice.payment_hash().to_byte_array());
        tracing::Span::current().record("payment_hash", tracing::field::display(hash));
        let expected = currency_for(self.network);
        if invoice.currency() != expected {
            return Err(LightningError::PaymentFailed {
                reason: format!(
                    "invoice is for {} but the node is on {}",
                    currency_name(invoice.currency()),
                    currency_name(expected)
                ),
            });
        }
        if invoice.amount_milli_satoshis().is_none() {
            return Err(LightningError::PaymentFailed {
                reason: "amountless invoices are not supported".into(),
            });
        }

        let mut timeout_seconds = req.timeout.as_secs();
        if req.timeout.subsec_nanos() > 0 || timeout_seconds == 0 {
            timeout_seconds = timeout_seconds.saturating_add(1);
        }
        let timeout_seconds = timeout_seconds.min(i32::MAX as u64);
        let body = json!({
            "payment_request": bolt11,
            "timeout_seconds": timeout_seconds,
            "fee_limit_msat": req.max_fee.0.to_string(),
            "no_inflight_updates": false,
        });
        let url = self.endpoint(PAY, "v2/router/send")?;
        let http_timeout = Duration::from_secs(timeout_seconds).saturating_add(self.timeout);
        let resp = match self
            .http
            .post(url)
            .timeout(http_timeout)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            // Nothing reached the node.
            Err(e) if e.is_connect() || e.is_builder() => return Err(transport_error(PAY, &e)),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "lnd payment request failed after sending; outcome unknown");
                return Err(LightningError::Unknown { payment_hash: hash });
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let body = read_limited(resp).await.unwrap_or_default();
            if let Some(g) = parse_grpc_error(&body) {
                return self.refused(g, status, hash).await;
            }
            if status.is_server_error() {
                // A proxy in front of lnd may have forwarded the request.
                tracing::warn!(
                    status = status.as_u16(),
                    "lnd payment got a non-lnd server error; outcome unknown"
                );
                return Err(LightningError::Unknown { payment_hash: hash });
            }
            return Err(rejected(
                PAY,
                format!("HTTP {}: {}", status.as_u16(), snippet(&body)),
            ));
        }
        match stream::read_pay_stream(resp.bytes_stream(), hash).await {
            Outcome::Succeeded(p) => {
                tracing::info!(
                    amount_msat = p.amount.0,
                    fee_msat = p.fee.0,
                    "lnd payment succeeded"
                );
                Ok(p)
            }
            Outcome::Failed(reason) => {
                tracing::info!(%reason, "lnd payment failed");
                Err(LightningError::PaymentFailed { reason })
            }
            Outcome::Refused(g) => self.refused(g, status, hash).await,
            Outcome::Unknown(why) => {
                tracing::warn!(%why, "lnd payment outcome unknown");
                Err(LightningError::Unknown { payment_hash: hash })
            }
            Outcome::Invalid(why) => Err(invalid(PAY, why)),
        }
    }

    /// lnd refused to start the payment.
    async fn refused(
        &self,
        g: GrpcStatus,
        status: StatusCode,
        hash: PaymentHash,
    ) -> Result<Payment, LightningError> {
        let already = g.code == code::ALREADY_EXISTS
            || g.message.contains("already paid")
            || g.message.contains("in transition");
        if already {
            tracing::info!(message = %g.message, "lnd already has a payment for this hash; tracking it");
            return self.track(hash).await;
        }
        Err(rejected(PAY, grpc_detail(&g, status)))
    }

    /// Fetches the result of an earlier payment (`TrackPaymentV2`).
    async fn track(&self, hash: PaymentHash) -> Result<Payment, LightningError> {
        let unknown = LightningError::Unknown { payment_hash: hash };
        let mut url =
            self.endpoint(PAY, &format!("v2/router/track/{}", b64url(hash.as_bytes())))?;
        url.query_pairs_mut()
            .append_pair("no_inflight_updates", "true");
        let resp = match self.http.get(url).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "tracking the earlier payment failed");
                return Err(unknown);
            }
        };
        if !resp.status().is_success() {
            let status = resp.status();
            let body = read_limited(resp).await.unwrap_or_default();
            tracing::warn!(status = status.as_u16(), body = %snippet(&body), "lnd could not track the earlier payment");
            return Err(unknown);
        }
        match stream::read_pay_stream(resp.bytes_stream(), hash).await {
            Outcome::Succeeded(p) => {
                tracing::info!("earlier lnd payment succeeded; returning its result");
                Ok(p)
            }
            Outcome::Failed(reason) => Err(LightningError::PaymentFailed { reason }),
            Outcome::Invalid(why) => Err(invalid(PAY, why)),
            Outcome::Refused(_) | Outcome::Unknown(_) => Err(unknown),
        }
    }
}

#[async_trait]
impl InvoiceIssuer for LndRest {
    async fn create_invoice(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        let span = tracing::info_span!(
            "lnd.create_invoice",
            amount_msat = req.amount.0,
            payment_hash = tracing::field::Empty,
        );
        self.create(req).instrument(span).await
    }

    async fn lookup_invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let span = tracing::debug_span!("lnd.lookup_invoice", payment_hash = %hash);
        self.lookup(hash).instrument(span).await
    }

    fn network(&self) -> Network {
        self.network
    }
}

#[async_trait]
impl LightningPayer for LndRest {
    async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        let span = tracing::info_span!(
            "lnd.pay_invoice",
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
    fn http_errors_map_to_variants() {
        let body = br#"{"code":2,"message":"invoice expired","details":[]}"#;
        assert!(matches!(
            http_error(PAY, StatusCode::INTERNAL_SERVER_ERROR, body),
            LightningError::Rejected { call: "pay_invoice", ref detail, .. } if detail.contains("invoice expired")
        ));
        assert!(matches!(
            http_error(LOOKUP, StatusCode::BAD_GATEWAY, b"<html>"),
            LightningError::Unreachable { .. }
        ));
        assert!(matches!(
            http_error(CREATE, StatusCode::UNAUTHORIZED, b"nope\n"),
            LightningError::Rejected { ref detail, .. } if detail == "HTTP 401: nope"
        ));
    }

    #[test]
    fn config_validation() {
        let url = |s: &str| s.parse::<Url>().unwrap();
        let mut cfg = LndConfig::new(url("https://node.example:8080"), Network::Bitcoin);
        assert!(LndRest::new(cfg.clone()).is_ok());
        cfg.macaroon_hex = Some("xyz".into());
        assert!(LndRest::new(cfg.clone()).is_err());
        cfg.macaroon_hex = Some("abc".into());
        assert!(LndRest::new(cfg.clone()).is_err(), "odd-length hex");
        cfg.macaroon_hex = Some("ABCD".into());
        cfg.timeout = Duration::ZERO;
        assert!(LndRest::new(cfg.clone()).is_err());
        let mut local = LndConfig::new(url("http://127.0.0.1:8080"), Network::Regtest);
        local.tls_cert_pem = Some(b"x".to_vec());
        assert!(
            LndRest::new(local).is_err(),
            "a pinned cert with http:// is a mistake"
        );
        let ftp = LndConfig::new(url("ftp://127.0.0.1/"), Network::Regtest);
        assert!(matches!(
            LndRest::new(ftp),
            Err(LightningError::Unreachable {
                call: "configure",
                ..
            })
        ));
        let mut bad_pem = LndConfig::new(url("https://127.0.0.1:8080"), Network::Regtest);
        bad_pem.tls_cert_pem = Some(b"not a pem".to_vec());
        assert!(LndRest::new(bad_pem).is_err());
    }

    #[test]
    fn base_url_keeps_prefix() {
        let lnd = LndRest::new(LndConfig::new(
            "https://proxy.example/lnd?x=1".parse().unwrap(),
            Network::Bitcoin,
        ))
        .unwrap();
        assert_eq!(lnd.base_url().as_str(), "https://proxy.example/lnd/");
        assert_eq!(
            lnd.endpoint(PAY, "v2/router/send").unwrap().as_str(),
            "https://proxy.example/lnd/v2/router/send"
        );
    }

    #[test]
    fn from_vars_reads_files_and_defaults() {
        let dir = std::env::temp_dir().join(format!("pay402-lnd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mac = dir.join("admin.macaroon");
        std::fs::write(&mac, [0x02, 0x01, 0xff]).unwrap();
        let mac_path = mac.to_string_lossy().into_owned();
        let cfg = LndConfig::from_vars(|name| match name {
            "LND_MACAROON_PATH" => Some(mac_path.clone()),
            "LND_NETWORK" => Some("".into()),
            "LND_TIMEOUT_SECS" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.macaroon_hex.as_deref(), Some("0201ff"));
        assert_eq!(cfg.url.as_str(), "https://127.0.0.1:8080/");
        assert_eq!(cfg.network, Network::Bitcoin);
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert!(cfg.tls_cert_pem.is_none());

        let err = LndConfig::from_vars(|name| {
            (name == "LND_TLS_CERT_PATH")
                .then(|| dir.join("missing.cert").to_string_lossy().into_owned())
        })
        .unwrap_err();
        assert!(matches!(
            err,
            LightningError::Unreachable {
                call: "configure",
                ..
            }
        ));
        assert!(LndConfig::from_vars(|n| (n == "LND_NETWORK").then(|| "moon".into())).is_err());
        assert!(LndConfig::from_vars(|n| (n == "LND_TIMEOUT_SECS").then(|| "0".into())).is_err());
        assert!(LndConfig::from_vars(|n| (n == "LND_REST_URL").then(|| "::".into())).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
