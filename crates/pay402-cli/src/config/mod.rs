//! `pay402.toml`: the proxy's configuration, as written (serde, unknown keys
//! refused) and as resolved (regexes compiled, prices converted, secrets
//! named but not yet read).
//!
//! Every error names the file, the line and column, and the key:
//! `pay402.toml:12:11: services[0].upstream: ...`.

mod error;
mod raw;
mod resolve;

pub use error::ConfigError;
pub use raw::*;
use resolve::Resolver;
pub use resolve::{parse_btc_network, parse_ln_network};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pay402_core::money::Msat;
use pay402_core::x402::TokenAmount;
use regex::Regex;

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
    /// `[bitrequests]`, if any (checked).
    pub bitrequests: Option<BitreqSettings>,
    /// `[mpp]`, if any (checked; secrets not yet read).
    pub mpp: Option<MppSettings>,
    /// Services in match order.
    pub services: Vec<Service>,
}

/// Where records live, and the pool that reaches them (`[store]`,
/// resolved): opened with [`pay402_server::database::Database::open_url`].
///
/// Its `Display` is the URL, which never holds a password (a password is
/// read from `store.password` at start).
///
/// ```
/// let c = pay402_cli::config::Config::parse("p.toml", pay402_cli::init::EXAMPLE).unwrap();
/// assert_eq!(c.store.to_string(), "sqlite://pay402.sqlite");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The parsed URL (PostgreSQL: without a password).
    pub url: pay402_server::database::StoreUrl,
    /// Where the PostgreSQL password is read from, if anywhere.
    pub password: Option<SecretSource>,
    /// Pool size and timeouts.
    pub options: pay402_server::database::DatabaseOptions,
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pay402_server::database::StoreUrl as U;
        match &self.url {
            U::Memory => f.write_str("memory:"),
            U::SqliteMemory => f.write_str("sqlite::memory:"),
            U::SqliteFile(p) => write!(f, "sqlite://{}", p.display()),
            // Resolving refused a password in it; strip one anyway.
            U::Postgres(url) => match reqwest::Url::parse(url) {
                Ok(mut u) => {
                    let _ = u.set_password(None);
                    f.write_str(u.as_str())
                }
                Err(_) => f.write_str("postgres://(unparsable)"),
            },
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
    /// HTTP/2 to the upstream (gRPC).
    pub upstream_http2: bool,
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
    /// The BitRequests price, if BitRequests is on.
    pub bitreq_price: Option<pay402_core::money::Sat>,
    /// The MPP `lightning`/`charge` price (whole sat, rounded up), if MPP
    /// is on with that method.
    pub mpp_price: Option<pay402_core::money::Sat>,
    /// The MPP `evm`/`charge` price in base units of the `[x402]` asset, if
    /// MPP is on with that method.
    pub mpp_evm_price: Option<TokenAmount>,
    /// The MPP methods offered, if MPP is on (`[mpp].methods`).
    pub mpp_methods: Vec<MppMethod>,
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
