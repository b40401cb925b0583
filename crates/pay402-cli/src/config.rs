//! `pay402.toml`: the proxy's configuration, as written (serde, unknown keys
//! refused) and as resolved (regexes compiled, prices converted, secrets
//! named but not yet read).
//!
//! Every error names the file, the line and column, and the key:
//! `pay402.toml:12:11: services[0].upstream: ...`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pay402_core::money::Msat;
use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, TokenUnit, Unit};
use pay402_core::x402::TokenAmount;
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

/// A configuration error with its place in the file.
///
/// ```
/// let e = pay402_cli::config::ConfigError::new("a.toml", "x = 1\n", Some(0..1), "x", "bad");
/// assert_eq!(e.to_string(), "a.toml:1:1: x: bad");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column in characters (0 when unknown).
    pub column: usize,
    /// The key path, e.g. `services[0].upstream` (empty for the whole file).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error at byte range `span` of `source` (the file's text).
    ///
    /// ```
    /// let e = pay402_cli::config::ConfigError::new("a.toml", "a = 1\nb = 2\n", Some(6..7), "b", "no");
    /// assert_eq!((e.line, e.column), (2, 1));
    /// ```
    pub fn new(
        file: impl Into<PathBuf>,
        source: &str,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = span.map_or((0, 0), |s| line_column(source, s.start));
        ConfigError {
            file: file.into(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of byte `offset` in `source`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

// ---------------------------------------------------------------- as written

/// The file as written.
///
/// ```
/// let raw: pay402_cli::config::RawConfig = toml::from_str("[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
/// assert!(raw.services.is_empty());
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[rates]`.
    #[serde(default)]
    pub rates: RatesConfig,
    /// `[lightning]`: the node that issues L402 invoices.
    pub lightning: Option<Spanned<LightningConfig>>,
    /// `[x402]`: the asset offered and the facilitator settling it.
    pub x402: Option<Spanned<X402Settings>>,
    /// `[admin]`: the operator API, on its own listener.
    pub admin: Option<Spanned<AdminConfig>>,
    /// `[[services]]`, matched in order.
    #[serde(default)]
    pub services: Vec<Spanned<ServiceConfig>>,
}

/// `[admin]`: the operator API (list x402 payments, revoke L402 tokens),
/// served on its own address behind a bearer token.
///
/// ```
/// let a: pay402_cli::config::AdminConfig =
///     toml::from_str("listen = \"127.0.0.1:9403\"\ntoken = { env = \"PAY402_ADMIN_TOKEN\" }").unwrap();
/// assert_eq!(a.listen, "127.0.0.1:9403");
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin listener's address (keep it private).
    pub listen: String,
    /// The bearer token (at least 32 characters).
    pub token: SecretSource,
}

/// `[server]`.
///
/// ```
/// let s = pay402_cli::config::ServerConfig::default();
/// assert_eq!((s.listen.as_str(), s.shutdown_grace_secs), ("127.0.0.1:8402", 30));
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the proxy listens on.
    pub listen: String,
    /// Address of the operations listener (`/healthz`, `/readyz`,
    /// `/metrics`); `None` serves them on `listen`.
    pub ops_listen: Option<String>,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Largest upstream response buffered for x402 settle-after (bytes).
    pub max_settle_body: usize,
    /// TLS on `listen` (HTTPS, HTTP/2 by ALPN); none = plain HTTP.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: the certificate chain and key (PEM) the proxy serves.
///
/// ```
/// let t: pay402_cli::config::TlsConfig =
///     toml::from_str("cert_file = \"/etc/pay402/cert.pem\"\nkey_file = \"/etc/pay402/key.pem\"").unwrap();
/// assert!(t.key_file.ends_with("key.pem"));
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8402".into(),
            ops_listen: None,
            log_format: LogFormat::Text,
            shutdown_grace_secs: 30,
            max_settle_body: 4 * 1024 * 1024,
            tls: None,
        }
    }
}

/// Log output format.
///
/// ```
/// let f: pay402_cli::config::LogFormat = serde_json::from_str("\"json\"").unwrap();
/// assert_eq!(f, pay402_cli::config::LogFormat::Json);
/// ```
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[store]`.
///
/// ```
/// let s = pay402_cli::config::StoreConfig::default();
/// assert_eq!(s.url.get_ref(), "sqlite://pay402.sqlite");
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `sqlite::memory:` (PostgreSQL URLs later).
    pub url: Spanned<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: Spanned::new(0..0, "sqlite://pay402.sqlite".into()),
        }
    }
}

/// `[rates]`: fixed exchange rates for prices given in US cents.
///
/// ```
/// assert!(pay402_cli::config::RatesConfig::default().usd_cents_per_btc.is_none());
/// ```
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RatesConfig {
    /// US cents per bitcoin.
    pub usd_cents_per_btc: Option<u64>,
}

/// A secret: read from a file or an environment variable, never inline.
///
/// ```
/// let s = pay402_cli::config::SecretSource { file: None, env: Some("KEY".into()) };
/// assert_eq!(s.to_string(), "env $KEY");
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Read the file (trailing whitespace trimmed).
    pub file: Option<PathBuf>,
    /// Read the environment variable.
    pub env: Option<String>,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, &self.env) {
            (Some(p), _) => write!(f, "file {}", p.display()),
            (None, Some(v)) => write!(f, "env ${v}"),
            (None, None) => f.write_str("(none)"),
        }
    }
}

/// `[lightning]`.
///
/// ```
/// let l: pay402_cli::config::LightningConfig = toml::from_str("kind = \"simnet\"").unwrap();
/// assert!(matches!(l, pay402_cli::config::LightningConfig::Simnet {}));
/// ```
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LightningConfig {
    /// An embedded simnet node (invoices payable only inside the process).
    Simnet {},
    /// An embedded simnet with a funded wallet node whose LND-compatible
    /// REST API listens on `listen`, so clients can pay.
    SimnetRest {
        /// The wallet's REST address.
        listen: String,
        /// The wallet's balance in sat.
        #[serde(default = "default_wallet_sats")]
        wallet_sats: u64,
    },
    /// LND over REST.
    Lnd {
        /// `https://host:8080` (`http://` only on loopback).
        url: String,
        /// `bitcoin`, `testnet`, `testnet4`, `signet` or `regtest`.
        network: String,
        /// The invoice macaroon (binary file, or hex in an environment variable).
        macaroon: Option<SecretSource>,
        /// lnd's `tls.cert`, pinned.
        tls_cert_file: Option<PathBuf>,
        /// Per-call timeout.
        #[serde(default = "default_timeout_secs")]
        timeout_secs: u64,
    },
}

fn default_wallet_sats() -> u64 {
    10_000_000
}

fn default_timeout_secs() -> u64 {
    30
}

/// `[x402]`.
///
/// ```
/// let c = pay402_cli::config::Config::parse("p.toml", pay402_cli::init::EXAMPLE).unwrap();
/// assert!(c.x402.is_none()); // commented out in the example
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X402Settings {
    /// CAIP-2 network, e.g. `eip155:8453`.
    pub network: String,
    /// Token contract (`0x…`).
    pub asset: String,
    /// The token's EIP-712 domain name (`USD Coin`).
    pub asset_name: String,
    /// The token's EIP-712 domain version.
    #[serde(default = "default_asset_version")]
    pub asset_version: String,
    /// The token's decimals (for prices in US cents).
    #[serde(default = "default_decimals")]
    pub asset_decimals: u8,
    /// The recipient (`0x…`).
    pub pay_to: String,
    /// `after` (default) or `before` the upstream answers.
    #[serde(default)]
    pub settle: Settle,
    /// Who verifies and settles.
    pub facilitator: FacilitatorConfig,
}

fn default_asset_version() -> String {
    "2".into()
}

fn default_decimals() -> u8 {
    6
}

/// When x402 payments settle.
///
/// ```
/// assert_eq!(pay402_cli::config::Settle::default(), pay402_cli::config::Settle::After);
/// ```
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Settle {
    /// After the upstream answered (its response is buffered, bounded).
    #[default]
    After,
    /// Before the request is forwarded (the response streams).
    Before,
}

/// `[x402.facilitator]`.
///
/// ```
/// let f: pay402_cli::config::FacilitatorConfig =
///     toml::from_str("kind = \"remote\"\nurl = \"https://f.example\"").unwrap();
/// assert!(matches!(f, pay402_cli::config::FacilitatorConfig::Remote { timeout_secs: 30, .. }));
/// ```
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FacilitatorConfig {
    /// Settle on chain from a key of ours; only `[x402].asset` is accepted.
    Local {
        /// The chain's JSON-RPC URL (`https://`, or `http://` on loopback).
        rpc_url: SecretSource,
        /// The settling account's private key (hex).
        key: SecretSource,
    },
    /// A remote facilitator (`https://`).
    Remote {
        /// Its base URL.
        url: String,
        /// Per-call timeout.
        #[serde(default = "default_timeout_secs")]
        timeout_secs: u64,
    },
}

/// A header value: a literal string, or a secret.
///
/// ```
/// use pay402_cli::config::HeaderValueSource;
/// let v: std::collections::BTreeMap<String, HeaderValueSource> =
///     toml::from_str("a = \"x\"\nb = { env = \"B\" }").unwrap();
/// assert_eq!(v["a"], HeaderValueSource::Literal("x".into()));
/// assert!(matches!(v["b"], HeaderValueSource::Secret(_)));
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum HeaderValueSource {
    /// Sent as written.
    Literal(String),
    /// Read from a file or the environment at start.
    Secret(SecretSource),
}

/// Which payment rails a service offers.
///
/// ```
/// assert_eq!(pay402_cli::config::RailName::L402.to_string(), "l402");
/// ```
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum RailName {
    /// L402 (Lightning).
    L402,
    /// x402 (EIP-3009 `exact`).
    X402,
}

impl fmt::Display for RailName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RailName::L402 => "l402",
            RailName::X402 => "x402",
        })
    }
}

/// `[services.price]`: one unit for every rail, or per rail.
///
/// ```
/// let p: pay402_cli::config::PriceConfig = toml::from_str("sats = 10").unwrap();
/// assert_eq!(p.sats, Some(10));
/// ```
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// The L402 price in sat.
    pub sats: Option<u64>,
    /// The x402 price in the token's base units (a decimal string).
    pub x402_units: Option<String>,
    /// One price in US cents for every rail (needs `[rates]` for L402).
    pub usd_cents: Option<u64>,
}

/// `[[services]]`.
///
/// ```
/// let s: pay402_cli::config::ServiceConfig =
///     toml::from_str("name = \"a\"\nupstream = \"http://127.0.0.1:1\"").unwrap();
/// assert_eq!((s.name.as_str(), s.timeout_secs), ("a", 30));
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// A name (also the L402 service name and token scope).
    pub name: String,
    /// Regex on the `Host` (port included), as Aperture's `hostregexp`.
    pub host: Option<Spanned<String>>,
    /// Regex on the path, as Aperture's `pathregexp`.
    pub path: Option<Spanned<String>>,
    /// Where requests go: `http://` or `https://`, with an optional path prefix.
    pub upstream: Spanned<String>,
    /// Extra CA (PEM) trusted for the upstream's certificate.
    pub upstream_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to the upstream.
    pub upstream_client_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub upstream_client_key_file: Option<PathBuf>,
    /// Longest wait on the upstream (for its response head, and between two
    /// reads of its body), in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Headers added to upstream requests.
    #[serde(default)]
    pub add_headers: BTreeMap<String, HeaderValueSource>,
    /// Headers removed from upstream requests.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Paths served without payment (`/health`, `/public/*`).
    #[serde(default)]
    pub free_paths: Vec<String>,
    /// Rails offered (`["l402", "x402"]`); empty = free service.
    #[serde(default)]
    pub rails: Vec<RailName>,
    /// The price.
    #[serde(default)]
    pub price: PriceConfig,
    /// L402 token lifetime in seconds (default one day).
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
    /// Capabilities minted into L402 tokens (`<name>_capabilities=`).
    #[serde(default)]
    pub l402_capabilities: Vec<String>,
    /// Extra first-party caveats (`key=value`) minted into L402 tokens.
    #[serde(default)]
    pub l402_caveats: Vec<String>,
    /// Header the upstream gets naming the paying token/payment.
    pub identity_header: Option<String>,
    /// Unpaid requests each client address gets per period.
    pub freebies: Option<FreebiesConfig>,
    /// A dynamic price from an HTTP pricer (instead of `price`).
    pub pricer: Option<PricerConfig>,
}

/// `pricer = { url = "http://127.0.0.1:9000/price", timeout_ms = 500, cache_secs = 30 }`:
/// the price of each request asked from an HTTP endpoint (bounded in time,
/// cached per method and path, failing closed with 503).
///
/// ```
/// let p: pay402_cli::config::PricerConfig = toml::from_str("url = \"http://127.0.0.1:9/p\"").unwrap();
/// assert_eq!((p.timeout_ms, p.cache_secs), (1000, 60));
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PricerConfig {
    /// The pricer's URL (`https://`, or `http://` on loopback).
    pub url: String,
    /// How long one price query may take.
    #[serde(default = "default_pricer_timeout_ms")]
    pub timeout_ms: u64,
    /// How long a price is reused for the same method and path.
    #[serde(default = "default_pricer_cache_secs")]
    pub cache_secs: u64,
}

fn default_pricer_timeout_ms() -> u64 {
    1000
}

fn default_pricer_cache_secs() -> u64 {
    60
}

/// `freebies = { requests = 3, period_secs = 86400 }`: unpaid requests per
/// client address (IPv6 by /64), replenished evenly over the period.
///
/// ```
/// let f: pay402_cli::config::FreebiesConfig = toml::from_str("requests = 3\nperiod_secs = 60").unwrap();
/// assert_eq!(f.requests, 3);
/// ```
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FreebiesConfig {
    /// How many.
    pub requests: u32,
    /// Per how many seconds.
    pub period_secs: u64,
}

fn default_token_lifetime() -> u64 {
    86_400
}

// ---------------------------------------------------------------- resolved

/// The configuration, checked and resolved.
///
/// ```
/// let c = pay402_cli::config::Config::parse("p.toml", pay402_cli::init::EXAMPLE).unwrap();
/// assert_eq!(c.services[0].name, "api");
/// ```
#[derive(Debug)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// The store.
    pub store: StoreUrl,
    /// `[lightning]`, if any.
    pub lightning: Option<LightningConfig>,
    /// `[x402]`, if any (checked).
    pub x402: Option<X402Settings>,
    /// `[admin]`, if any.
    pub admin: Option<AdminConfig>,
    /// Services in match order.
    pub services: Vec<Service>,
}

/// Where records live.
///
/// ```
/// let c = pay402_cli::config::Config::parse("p.toml", pay402_cli::init::EXAMPLE).unwrap();
/// assert_eq!(c.store.to_string(), "sqlite://pay402.sqlite");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// An SQLite database in memory (lost on exit).
    SqliteMemory,
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            StoreUrl::SqliteMemory => f.write_str("sqlite::memory:"),
        }
    }
}

/// One resolved service.
///
/// ```
/// let c = pay402_cli::config::Config::parse("p.toml", pay402_cli::init::EXAMPLE).unwrap();
/// let api = &c.services[0];
/// assert!(api.host.is_match("anything") && api.l402_price.is_some());
/// ```
#[derive(Debug)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// Host regex.
    pub host: Regex,
    /// Path regex.
    pub path: Regex,
    /// Upstream base URL.
    pub upstream: reqwest::Url,
    /// Extra CA file.
    pub upstream_ca_file: Option<PathBuf>,
    /// Client certificate and key files.
    pub upstream_client_identity: Option<(PathBuf, PathBuf)>,
    /// Upstream timeout.
    pub timeout: Duration,
    /// Headers added (values not yet read).
    pub add_headers: Vec<(http::HeaderName, HeaderValueSource)>,
    /// Headers stripped.
    pub strip_headers: Vec<http::HeaderName>,
    /// Free path patterns.
    pub free_paths: Vec<String>,
    /// The L402 price, if L402 is on.
    pub l402_price: Option<Msat>,
    /// The x402 price in token base units, if x402 is on.
    pub x402_price: Option<TokenAmount>,
    /// L402 token lifetime.
    pub token_lifetime: Duration,
    /// Capabilities minted into L402 tokens.
    pub l402_capabilities: Vec<String>,
    /// Extra caveats minted into L402 tokens.
    pub l402_caveats: Vec<String>,
    /// Unpaid requests per client address and period.
    pub freebies: Option<FreebiesConfig>,
    /// The rails on.
    pub rails: Vec<RailName>,
    /// The dynamic pricer, when prices come from one (then `l402_price` and
    /// `x402_price` are `None`).
    pub pricer: Option<PricerConfig>,
    /// Identity header.
    pub identity_header: Option<http::HeaderName>,
}

impl Service {
    /// Whether this service charges for anything.
    ///
    /// ```
    /// # let toml = "[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n";
    /// let c = pay402_cli::config::Config::parse("a.toml", toml).unwrap();
    /// assert!(!c.services[0].is_paid());
    /// ```
    pub fn is_paid(&self) -> bool {
        !self.rails.is_empty()
    }
}

impl Config {
    /// Reads and resolves `path`.
    ///
    /// ```no_run
    /// let c = pay402_cli::config::Config::load("pay402.toml".as_ref())?;
    /// # Ok::<(), pay402_cli::config::ConfigError>(())
    /// ```
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", None, "", format!("cannot read: {e}")))?;
        Config::parse(path, &text)
    }

    /// Parses and resolves `text` (from `file`).
    ///
    /// ```
    /// let e = pay402_cli::config::Config::parse("p.toml", "[server]\nlisten = \"x\"\nbogus = 1\n").unwrap_err();
    /// assert_eq!((e.line, e.key.as_str()), (3, "server.bogus"));
    /// ```
    pub fn parse(file: impl AsRef<Path>, text: &str) -> Result<Config, ConfigError> {
        let file = file.as_ref();
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::new(file, "", None, "", "file over 1 MiB"));
        }
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new(file, text, e.span(), "", e.message().to_owned()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            let key = if path == "." { String::new() } else { path };
            let key = unknown_field_key(&key, inner.message());
            ConfigError::new(file, text, inner.span(), key, inner.message().to_owned())
        })?;
        Resolver { file, text }.resolve(raw)
    }
}

const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// serde_path_to_error stops at the table holding an unknown key; append
/// the key so the error names it.
fn unknown_field_key(path: &str, message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return path.to_owned();
    };
    let Some(field) = rest.split('`').next() else {
        return path.to_owned();
    };
    if path == field || path.ends_with(&format!(".{field}")) {
        path.to_owned()
    } else if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

struct Resolver<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Resolver<'_> {
    fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        let span = if span.is_empty() && span.start == 0 {
            None
        } else {
            Some(span)
        };
        ConfigError::new(self.file, self.text, span, key, msg)
    }

    fn resolve(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let store = self.store(&raw.store)?;
        if let Some(l) = &raw.lightning {
            self.lightning(l)?;
        }
        if let Some(x) = &raw.x402 {
            self.x402(x)?;
        }
        if let Some(a) = &raw.admin {
            a.get_ref()
                .listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    self.err(
                        a.span(),
                        "admin.listen",
                        format!("{:?}: {e}", a.get_ref().listen),
                    )
                })?;
            self.secret(a.span(), "admin.token", &a.get_ref().token)?;
        }
        if raw.services.is_empty() {
            return Err(self.err(0..0, "services", "no [[services]]: nothing to proxy"));
        }
        let rates = raw.rates.usd_cents_per_btc.map(|c| {
            let mut r = FixedRates::new().usd_cents_per_btc(c);
            if let Some(x) = &raw.x402 {
                let x = x.get_ref();
                r = r.usd_stablecoin(TokenUnit::new(&x.network, &x.asset, x.asset_decimals));
            }
            r
        });
        let mut services = Vec::with_capacity(raw.services.len());
        let mut names = std::collections::HashSet::new();
        for (i, s) in raw.services.iter().enumerate() {
            let service = self.service(i, s, &raw, rates.as_ref())?;
            if !names.insert(service.name.clone()) {
                return Err(self.err(
                    s.span(),
                    format!("services[{i}].name"),
                    format!("{:?} is used by an earlier service", service.name),
                ));
            }
            services.push(service);
        }
        Ok(Config {
            file: self.file.to_owned(),
            server: raw.server,
            store,
            lightning: raw.lightning.map(Spanned::into_inner),
            x402: raw.x402.map(Spanned::into_inner),
            admin: raw.admin.map(Spanned::into_inner),
            services,
        })
    }

    fn store(&self, s: &StoreConfig) -> Result<StoreUrl, ConfigError> {
        let url = s.url.get_ref().trim();
        if url == "sqlite::memory:" {
            return Ok(StoreUrl::SqliteMemory);
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(self.err(s.url.span(), "store.url", "sqlite:// needs a file path"));
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        let msg = if url.starts_with("postgres") {
            "PostgreSQL stores are not available yet; use sqlite://PATH"
        } else {
            "expected sqlite://PATH or sqlite::memory:"
        };
        Err(self.err(s.url.span(), "store.url", msg))
    }

    fn lightning(&self, l: &Spanned<LightningConfig>) -> Result<(), ConfigError> {
        match l.get_ref() {
            LightningConfig::Simnet {} => Ok(()),
            LightningConfig::SimnetRest { listen, .. } => listen
                .parse::<std::net::SocketAddr>()
                .map(|_| ())
                .map_err(|e| self.err(l.span(), "lightning.listen", format!("{listen:?}: {e}"))),
            LightningConfig::Lnd {
                url,
                network,
                macaroon,
                ..
            } => {
                reqwest::Url::parse(url)
                    .map_err(|e| self.err(l.span(), "lightning.url", format!("{url:?}: {e}")))?;
                parse_ln_network(network).ok_or_else(|| {
                    self.err(
                        l.span(),
                        "lightning.network",
                        format!("{network:?} is not bitcoin, testnet, testnet4, signet or regtest"),
                    )
                })?;
                if let Some(m) = macaroon {
                    self.secret(l.span(), "lightning.macaroon", m)?;
                }
                Ok(())
            }
        }
    }

    fn secret(&self, span: Range<usize>, key: &str, s: &SecretSource) -> Result<(), ConfigError> {
        match (&s.file, &s.env) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(self.err(
                span,
                key,
                "give exactly one of file = \"PATH\" or env = \"VAR\"",
            )),
        }
    }

    fn x402(&self, x: &Spanned<X402Settings>) -> Result<(), ConfigError> {
        let span = x.span();
        let s = x.get_ref();
        if pay402_core::x402::network::Caip2::parse(&s.network).is_err() {
            return Err(self.err(
                span,
                "x402.network",
                format!(
                    "{:?} is not a CAIP-2 network id (eip155:<chain id>)",
                    s.network
                ),
            ));
        }
        for (key, v) in [("x402.asset", &s.asset), ("x402.pay_to", &s.pay_to)] {
            v.parse::<pay402_core::x402::evm::EvmAddress>()
                .map_err(|_| self.err(span.clone(), key, format!("{v:?} is not a 0x address")))?;
        }
        match &s.facilitator {
            FacilitatorConfig::Local { rpc_url, key } => {
                self.secret(span.clone(), "x402.facilitator.rpc_url", rpc_url)?;
                self.secret(span, "x402.facilitator.key", key)
            }
            FacilitatorConfig::Remote { url, .. } => reqwest::Url::parse(url)
                .map(|_| ())
                .map_err(|e| self.err(span, "x402.facilitator.url", format!("{url:?}: {e}"))),
        }
    }

    fn pricer(
        &self,
        span: Range<usize>,
        key: &str,
        pr: &PricerConfig,
        rails: &[RailName],
        raw: &RawConfig,
        price: &PriceConfig,
    ) -> Result<(), ConfigError> {
        if price.sats.is_some() || price.x402_units.is_some() || price.usd_cents.is_some() {
            return Err(self.err(span, key, "give a price or a pricer, not both"));
        }
        if rails.is_empty() {
            return Err(self.err(span, key, "a pricer on a service without rails"));
        }
        if rails.contains(&RailName::L402) && raw.lightning.is_none() {
            return Err(self.err(span, key, "l402 needs a [lightning] section"));
        }
        if rails.contains(&RailName::X402) && raw.x402.is_none() {
            return Err(self.err(span, key, "x402 needs an [x402] section"));
        }
        let url = reqwest::Url::parse(&pr.url)
            .map_err(|e| self.err(span.clone(), key, format!("url: {e}")))?;
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
            return Err(self.err(span, key, "url must be https:// (http:// only on loopback)"));
        }
        if pr.timeout_ms == 0 || pr.timeout_ms > 30_000 {
            return Err(self.err(span, key, "timeout_ms must be 1 to 30000"));
        }
        Ok(())
    }

    fn service(
        &self,
        i: usize,
        s: &Spanned<ServiceConfig>,
        raw: &RawConfig,
        rates: Option<&FixedRates>,
    ) -> Result<Service, ConfigError> {
        let span = s.span();
        let key = |k: &str| format!("services[{i}].{k}");
        let c = s.get_ref();
        let regex = |field: &Option<Spanned<String>>, k: &str| -> Result<Regex, ConfigError> {
            match field {
                None => Regex::new("").map_err(|e| self.err(span.clone(), key(k), e.to_string())),
                Some(r) => regex::RegexBuilder::new(r.get_ref())
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| self.err(r.span(), key(k), format!("not a regex: {e}"))),
            }
        };
        let host = regex(&c.host, "host")?;
        let path = regex(&c.path, "path")?;
        let upstream = reqwest::Url::parse(c.upstream.get_ref()).map_err(|e| {
            self.err(
                c.upstream.span(),
                key("upstream"),
                format!("not a URL: {e}"),
            )
        })?;
        if !matches!(upstream.scheme(), "http" | "https") || upstream.host().is_none() {
            return Err(self.err(
                c.upstream.span(),
                key("upstream"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        if upstream.query().is_some() || upstream.fragment().is_some() {
            return Err(self.err(
                c.upstream.span(),
                key("upstream"),
                "no query or fragment allowed",
            ));
        }
        let identity = match (&c.upstream_client_cert_file, &c.upstream_client_key_file) {
            (Some(a), Some(b)) => Some((a.clone(), b.clone())),
            (None, None) => None,
            _ => {
                return Err(self.err(
                    span,
                    key("upstream_client_cert_file"),
                    "give both upstream_client_cert_file and upstream_client_key_file",
                ));
            }
        };
        if c.timeout_secs == 0 {
            return Err(self.err(span, key("timeout_secs"), "must be at least 1"));
        }
        let mut add_headers = Vec::new();
        for (name, value) in &c.add_headers {
            let n = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.err(
                    span.clone(),
                    key(&format!("add_headers.{name}")),
                    "not a header name",
                )
            })?;
            match value {
                HeaderValueSource::Literal(v) => {
                    http::HeaderValue::from_str(v).map_err(|_| {
                        self.err(
                            span.clone(),
                            key(&format!("add_headers.{name}")),
                            "not a header value",
                        )
                    })?;
                }
                HeaderValueSource::Secret(sec) => {
                    self.secret(span.clone(), &key(&format!("add_headers.{name}")), sec)?
                }
            }
            add_headers.push((n, value.clone()));
        }
        let mut strip_headers = Vec::new();
        for name in &c.strip_headers {
            strip_headers.push(http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.err(
                    span.clone(),
                    key("strip_headers"),
                    format!("{name:?} is not a header name"),
                )
            })?);
        }
        for p in &c.free_paths {
            if !p.starts_with('/')
                || pay402_server::normalize_path(p.trim_end_matches('*')).is_none()
            {
                return Err(self.err(
                    span.clone(),
                    key("free_paths"),
                    format!("{p:?}: a free path is /exact or /prefix/* without . or .. segments"),
                ));
            }
        }
        for (k, list) in [
            ("l402_capabilities", &c.l402_capabilities),
            ("l402_caveats", &c.l402_caveats),
        ] {
            for v in list {
                let ok = if k == "l402_caveats" {
                    v.split_once('=').is_some_and(|(a, _)| !a.trim().is_empty())
                } else {
                    !v.is_empty() && !v.contains([',', '=', ' '])
                };
                if !ok || v.len() > 256 {
                    return Err(self.err(
                        span.clone(),
                        key(k),
                        format!("{v:?}: a capability is a word without , = or spaces; a caveat is key=value"),
                    ));
                }
            }
        }
        let identity_header = c
            .identity_header
            .as_ref()
            .map(|h| http::HeaderName::from_bytes(h.as_bytes()))
            .transpose()
            .map_err(|_| self.err(span.clone(), key("identity_header"), "not a header name"))?;

        // Prices: per rail, or one in US cents converted exactly (rounded up).
        let p = &c.price;
        let mut l402_price = None;
        let mut x402_price = None;
        let mut rails = c.rails.clone();
        rails.sort();
        rails.dedup();
        if let Some(pr) = &c.pricer {
            self.pricer(span.clone(), &key("pricer"), pr, &rails, raw, p)?;
        }
        for rail in rails.iter().filter(|_| c.pricer.is_none()) {
            match rail {
                RailName::L402 => {
                    if raw.lightning.is_none() {
                        return Err(self.err(
                            span.clone(),
                            key("rails"),
                            "l402 needs a [lightning] section",
                        ));
                    }
                    let msat = match (p.sats, p.usd_cents) {
                        (Some(s), None) => Sat(s).to_msat(),
                        (None, Some(cents)) => {
                            let rates = rates.ok_or_else(|| {
                                self.err(
                                    span.clone(),
                                    key("price.usd_cents"),
                                    "needs [rates] usd_cents_per_btc for l402",
                                )
                            })?;
                            match rates.convert(&Amount::UsdCents(cents), &Unit::Msat, Rounding::Up)
                            {
                                Ok(Amount::Msat(m)) => Some(m),
                                _ => None,
                            }
                        }
                        _ => {
                            return Err(self.err(
                                span.clone(),
                                key("price"),
                                "l402 needs exactly one of price.sats or price.usd_cents",
                            ));
                        }
                    };
                    match msat {
                        Some(m) if m > Msat::ZERO => l402_price = Some(m),
                        _ => {
                            return Err(self.err(
                                span.clone(),
                                key("price"),
                                "the l402 price must be above zero",
                            ));
                        }
                    }
                }
                RailName::X402 => {
                    let Some(x) = &raw.x402 else {
                        return Err(self.err(
                            span.clone(),
                            key("rails"),
                            "x402 needs an [x402] section",
                        ));
                    };
                    let x = x.get_ref();
                    let amount = match (&p.x402_units, p.usd_cents) {
                        (Some(u), None) => TokenAmount::parse(u).map_err(|e| {
                            self.err(span.clone(), key("price.x402_units"), e.to_string())
                        })?,
                        (None, Some(cents)) => {
                            let token = TokenUnit::new(&x.network, &x.asset, x.asset_decimals);
                            let r = FixedRates::new().usd_stablecoin(token.clone());
                            match r.convert(
                                &Amount::UsdCents(cents),
                                &Unit::Token(token),
                                Rounding::Up,
                            ) {
                                Ok(a) => TokenAmount(a.value()),
                                Err(e) => {
                                    return Err(self.err(
                                        span.clone(),
                                        key("price.usd_cents"),
                                        e.to_string(),
                                    ));
                                }
                            }
                        }
                        _ => {
                            return Err(self.err(
                                span.clone(),
                                key("price"),
                                "x402 needs exactly one of price.x402_units or price.usd_cents",
                            ));
                        }
                    };
                    if amount.0.is_zero() {
                        return Err(self.err(
                            span.clone(),
                            key("price"),
                            "the x402 price must be above zero",
                        ));
                    }
                    x402_price = Some(amount);
                }
            }
        }
        if let Some(f) = c.freebies {
            if f.requests == 0 || f.period_secs == 0 {
                return Err(self.err(
                    span,
                    key("freebies"),
                    "requests and period_secs must be at least 1",
                ));
            }
            if rails.is_empty() {
                return Err(self.err(span, key("freebies"), "freebies on a service without rails"));
            }
        }
        if rails.is_empty() && (p.sats.is_some() || p.x402_units.is_some() || p.usd_cents.is_some())
        {
            return Err(self.err(span, key("rails"), "a price is set but no rails are on"));
        }
        Ok(Service {
            name: c.name.clone(),
            host,
            path,
            upstream,
            upstream_ca_file: c.upstream_ca_file.clone(),
            upstream_client_identity: identity,
            timeout: Duration::from_secs(c.timeout_secs),
            add_headers,
            strip_headers,
            free_paths: c.free_paths.clone(),
            l402_price,
            x402_price,
            token_lifetime: Duration::from_secs(c.token_lifetime_secs.max(1)),
            l402_capabilities: c.l402_capabilities.clone(),
            l402_caveats: c.l402_caveats.clone(),
            freebies: c.freebies,
            rails,
            pricer: c.pricer.clone(),
            identity_header,
        })
    }
}

use pay402_core::money::Sat;

/// A Lightning network name.
///
/// ```
/// assert!(pay402_cli::config::parse_ln_network("regtest").is_some());
/// ```
pub fn parse_ln_network(s: &str) -> Option<pay402_core::lightning::Network> {
    use pay402_core::lightning::Network;
    Some(match s {
        "bitcoin" | "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "testnet4" => Network::Testnet4,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        _ => return None,
    })
}
