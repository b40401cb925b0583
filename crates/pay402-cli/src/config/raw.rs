//! The file as written: serde types, unknown keys refused.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

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
    /// `[bitrequests]`: the merchant's 21 BitRequests ledger.
    pub bitrequests: Option<Spanned<BitreqSettings>>,
    /// `[mpp]`: MPP, the `Payment` HTTP authentication scheme.
    pub mpp: Option<Spanned<MppSettings>>,
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

/// `[store]`: where root keys, revocations and payment records live, and
/// the pool that reaches them.
///
/// ```
/// let s = pay402_cli::config::StoreConfig::default();
/// assert_eq!(s.url.get_ref(), "sqlite://pay402.sqlite");
/// let pg: pay402_cli::config::StoreConfig = toml::from_str(
///     "url = \"postgres://pay402@db.internal/pay402\"\npassword = { env = \"PGPASSWORD\" }\nmax_connections = 20",
/// ).unwrap();
/// assert_eq!(pg.max_connections, Some(20));
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH`, `sqlite::memory:`, `memory:` or
    /// `postgres://USER@HOST[:PORT]/DB[?sslmode=…]` (no password in it).
    pub url: Spanned<String>,
    /// The PostgreSQL password, from a file or an environment variable.
    pub password: Option<SecretSource>,
    /// The most connections this instance opens (default 10 for
    /// PostgreSQL, 4 for a SQLite file).
    pub max_connections: Option<u32>,
    /// The longest one statement may run, in milliseconds (PostgreSQL
    /// `statement_timeout`; SQLite's busy timeout). Default 10000.
    pub statement_timeout_ms: Option<u64>,
    /// How long a request waits for a connection before it is answered
    /// 503 `store_unavailable`, in milliseconds. Default 5000.
    pub acquire_timeout_ms: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: Spanned::new(0..0, "sqlite://pay402.sqlite".into()),
            password: None,
            max_connections: None,
            statement_timeout_ms: None,
            acquire_timeout_ms: None,
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
    /// How long a payment's reservation is its request's alone before the
    /// same payload may take it over (default 60; the request renews it
    /// while it runs, so this bounds how long a crashed server's payment
    /// waits for its retry).
    pub reservation_lease_secs: Option<u64>,
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
        /// How long a settle waits for its receipt before the payment is
        /// recorded pending (default 45).
        receipt_timeout_secs: Option<u64>,
        /// How long a settle's claim on an authorization (kept in the
        /// proxy's store, with the key's transaction nonces) is its own
        /// before a reconcile may take it over (default the receipt
        /// timeout + 15).
        claim_lease_secs: Option<u64>,
    },
    /// A remote facilitator (`https://`).
    Remote {
        /// Its base URL.
        url: String,
        /// Per-call timeout.
        #[serde(default = "default_timeout_secs")]
        timeout_secs: u64,
        /// A bearer API key sent to the facilitator (a secret).
        api_key: Option<SecretSource>,
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
    /// 21 BitRequests (a bit-transfer on the merchant's ledger).
    Bitreq,
    /// MPP (`WWW-Authenticate: Payment`): `lightning`/`charge` and/or
    /// `evm`/`charge`, as `[mpp].methods` says.
    Mpp,
}

impl fmt::Display for RailName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RailName::L402 => "l402",
            RailName::X402 => "x402",
            RailName::Bitreq => "bitreq",
            RailName::Mpp => "mpp",
        })
    }
}

/// `[bitrequests]`: 21 BitRequests. Three methods, each on when its part
/// is configured: bit-transfers on the merchant's own ledger
/// (`transfer_username`; accounts opened and credited through the admin
/// API), on-chain transactions (`[bitrequests.onchain]`) and payment
/// channels (`[bitrequests.channel]`), the last two over
/// `[bitrequests.chain]`.
///
/// ```
/// let b: pay402_cli::config::BitreqSettings =
///     toml::from_str("network = \"regtest\"\ntransfer_username = \"shop\"").unwrap();
/// assert_eq!(b.transfer_username.as_deref(), Some("shop"));
/// assert!(b.onchain.is_none() && b.channel.is_none());
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BitreqSettings {
    /// The Bitcoin network (`bitcoin`, `testnet`, `signet`, `regtest`).
    pub network: String,
    /// The merchant's username on the ledger: bit-transfers pay it (the
    /// bit-transfer method is on when it is set).
    pub transfer_username: Option<String>,
    /// The public origin (`https://host[:port]`) announced in
    /// `Bitcoin-Payment-Channel-Server`; default: from each request's
    /// `Host` (and `X-Forwarded-Proto`).
    pub public_url: Option<String>,
    /// How often the chain is followed (quotes purged, deposits
    /// confirmed, channels closed before expiry), in seconds (default 60).
    pub sync_secs: Option<u64>,
    /// The Bitcoin backend (needed by `onchain` and `channel`).
    pub chain: Option<Spanned<BitreqChain>>,
    /// The on-chain method.
    pub onchain: Option<Spanned<BitreqOnChain>>,
    /// The payment channel method.
    pub channel: Option<Spanned<BitreqChannel>>,
}

/// `[bitrequests.chain]`: the Bitcoin backend the on-chain method and the
/// channels use (broadcast, lookups, confirmations).
///
/// ```
/// let c: pay402_cli::config::BitreqChain = toml::from_str(
///     "kind = \"bitcoind\"\nurl = \"http://127.0.0.1:8332\"\nuser = \"rpc\"\npassword = { env = \"RPC_PASSWORD\" }",
/// ).unwrap();
/// assert_eq!(c.kind, pay402_cli::config::BitreqChainKind::Bitcoind);
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BitreqChain {
    /// `bitcoind` (Bitcoin Core JSON-RPC) or `esplora` (REST).
    pub kind: BitreqChainKind,
    /// The RPC or REST address, without credentials.
    pub url: String,
    /// bitcoind: the RPC user.
    pub user: Option<String>,
    /// bitcoind: the RPC password (secret).
    pub password: Option<SecretSource>,
    /// Per-call timeout in seconds (default 30).
    pub timeout_secs: Option<u64>,
}

/// The kind of a `[bitrequests.chain]`.
///
/// ```
/// let k: pay402_cli::config::BitreqChainKind = serde_json::from_str("\"esplora\"").unwrap();
/// assert_eq!(k, pay402_cli::config::BitreqChainKind::Esplora);
/// ```
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BitreqChainKind {
    /// Bitcoin Core JSON-RPC (also bcoin's Core-compatible RPC).
    Bitcoind,
    /// An Esplora REST API (Blockstream, mempool.space, electrs).
    Esplora,
}

/// `[bitrequests.onchain]`: payments by transaction, to a fresh address
/// derived from `xpub` per 402 (bound to the request and its price) or to
/// one fixed `address` (two1's mode, binding nothing).
///
/// ```
/// let o: pay402_cli::config::BitreqOnChain =
///     toml::from_str("address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\nconfirmations = 2").unwrap();
/// assert_eq!(o.confirmations, Some(2));
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BitreqOnChain {
    /// The merchant's account xpub (`tpub…`/`xpub…`): a fresh P2WPKH
    /// address `<xpub>/0/<index>` per 402.
    pub xpub: Option<String>,
    /// One fixed address instead (exclusive with `xpub`).
    pub address: Option<String>,
    /// Confirmations before a payment is served (default 1, at least 1).
    pub confirmations: Option<u32>,
    /// Serve requests priced at most this many sat as soon as their
    /// transaction is broadcast, unconfirmed (default: never). Every such
    /// payment can be double-spent: this is what you accept to lose.
    pub accept_unconfirmed_up_to_sats: Option<u64>,
    /// How long a quote (a derived address and its price) stays payable,
    /// in seconds (default 3600).
    pub quote_ttl_secs: Option<u64>,
    /// The most unpaid quotes kept at once (default 10000).
    pub max_open_quotes: Option<u64>,
}

/// `[bitrequests.channel]`: two1's payment channels (protocol v2), served
/// at `path` on the proxy's listener.
///
/// ```
/// let c: pay402_cli::config::BitreqChannel =
///     toml::from_str("key = { file = \"/etc/pay402/channel.key\" }\nzeroconf = true").unwrap();
/// assert_eq!(c.zeroconf, Some(true));
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BitreqChannel {
    /// The merchant's channel key: 32 bytes in hex (secret).
    pub key: SecretSource,
    /// The endpoint path (default `/payment`): `GET`/`POST <path>`,
    /// `GET`/`PUT`/`DELETE <path>/<deposit txid>`. It is answered before
    /// any service is matched.
    pub path: Option<String>,
    /// Accept payments into a channel whose deposit is still in the
    /// mempool (default false).
    pub zeroconf: Option<bool>,
    /// The fee each payment transaction leaves to miners, in sat (default
    /// two1's 125000; clients must use the same).
    pub fee_sats: Option<u64>,
    /// The shortest channel accepted at open, in seconds (default 4 days).
    pub min_duration_secs: Option<u64>,
}

/// `[mpp]`: MPP, the `Payment` HTTP authentication scheme. The
/// `lightning` method issues invoices from `[lightning]`; the `evm` method
/// charges `[x402]`'s asset to its `pay_to` through its facilitator.
///
/// ```
/// let m: pay402_cli::config::MppSettings = toml::from_str(
///     "realm = \"api.example.com\"\nsecret = { file = \"/etc/pay402/mpp.secret\" }",
/// ).unwrap();
/// assert_eq!(m.methods, [pay402_cli::config::MppMethod::Lightning]);
/// assert_eq!(m.challenge_ttl_secs, 300);
/// ```
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MppSettings {
    /// The protection space (usually the public host name): bound into
    /// every challenge id.
    pub realm: String,
    /// The HMAC key binding challenge ids (at least 32 bytes; the same on
    /// every instance and across restarts), from a file or the environment.
    pub secret: SecretSource,
    /// The secret being rotated out: ids it bound still verify (keep it one
    /// `challenge_ttl_secs` after the change).
    pub previous_secret: Option<SecretSource>,
    /// The methods offered (default `["lightning"]`).
    #[serde(default = "default_mpp_methods")]
    pub methods: Vec<MppMethod>,
    /// How long a challenge may be paid, in seconds (default 300; 1 to
    /// 86400; a Lightning challenge never outlives its invoice).
    #[serde(default = "default_mpp_ttl")]
    pub challenge_ttl_secs: u64,
}

fn default_mpp_methods() -> Vec<MppMethod> {
    vec![MppMethod::Lightning]
}

fn default_mpp_ttl() -> u64 {
    300
}

/// An MPP payment method.
///
/// ```
/// let m: pay402_cli::config::MppMethod = serde_json::from_str("\"evm\"").unwrap();
/// assert_eq!(m, pay402_cli::config::MppMethod::Evm);
/// ```
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MppMethod {
    /// `lightning`/`charge`: a fresh invoice per challenge, priced in sat.
    Lightning,
    /// `evm`/`charge`: an EIP-3009 authorization of the x402 asset.
    Evm,
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
    /// The L402 and BitRequests price in sat.
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
    /// Speak HTTP/2 to the upstream (h2c with prior knowledge for
    /// `http://`, h2 for `https://`), as gRPC needs; default HTTP/1.1.
    #[serde(default)]
    pub upstream_http2: bool,
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
