//! `pay402 fetch URL`: curl that pays, through `pay402_client::Payer`.
//!
//! The means of payment (a Lightning node, an EVM key) come from the fetch
//! configuration file (`~/.config/pay402/config.toml`, see [`FetchConfig`])
//! or the environment; every payment is recorded in a SQLite journal, so a
//! second fetch of the same URL reuses the paid L402 token. Exit codes are
//! in [`exit`] and docs/cli.md.
//!
//! ```
//! use pay402_cli::fetch::parse_max;
//! use pay402_core::money::Sat;
//! use pay402_core::rates::Amount;
//! assert_eq!(parse_max("100sat").unwrap(), Amount::Sat(Sat(100)));
//! assert!(parse_max("0.5sat").is_err());
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use pay402_client::journal::Journal;
use pay402_client::{Choice, Payer, PayerBuilder, PayerError, PayerPaid, RefusalReason};
use pay402_core::lightning::{LightningPayer, Network};
use pay402_core::money::{Msat, Sat};
use pay402_core::offer::read_offers;
use pay402_core::problem::Reason;
use pay402_core::rates::{Amount, FixedRates};
use serde::Deserialize;
use zeroize::Zeroizing;

/// The exit codes of `pay402 fetch` (also in docs/cli.md).
///
/// ```
/// assert_eq!(pay402_cli::fetch::exit::OVER_BUDGET, 3);
/// ```
pub mod exit {
    /// A response was received (whatever its status when nothing was paid).
    pub const OK: u8 = 0;
    /// Another error: network, file, journal, before anything was paid.
    pub const ERROR: u8 = 1;
    /// Bad usage or configuration.
    pub const USAGE: u8 = 2;
    /// Every payable offer costs more than `--max`; nothing was paid.
    pub const OVER_BUDGET: u8 = 3;
    /// No offer of a rail this configuration can pay (or no offer at all);
    /// nothing was paid.
    pub const NO_RAIL: u8 = 4;
    /// The payment failed or its outcome is unknown (run again to resume:
    /// the journal never pays twice).
    pub const PAYMENT_FAILED: u8 = 5;
    /// Paid (or a paid token presented), and the server answered with an
    /// error status.
    pub const SERVER_ERROR_AFTER_PAYING: u8 = 6;
}

/// The options of `pay402 fetch`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The URL to fetch.
    #[arg(value_name = "URL")]
    pub url: String,
    /// The request method (default GET, or POST with `--data`).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The request body; `@FILE` reads it from a file.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,
    /// Write the response body to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the response status line and headers before the body.
    #[arg(short = 'i', long = "include")]
    pub include: bool,
    /// Silent: print nothing on standard error but errors.
    #[arg(short = 's', long = "silent")]
    pub silent: bool,
    /// The most this one request may pay: an integer with its unit, `sat`,
    /// `msat` or `usdcents` (e.g. `100sat`, `5usdcents`). Overrides the
    /// configured `max`; the default is 1000sat.
    #[arg(long, value_name = "AMOUNT")]
    pub max: Option<String>,
    /// Print the offers of the 402 and what would be paid; pay nothing.
    #[arg(long)]
    pub quote: bool,
    /// Print a JSON receipt on standard output instead of the body (which
    /// goes to `-o FILE` when given); on failure `{"error", "exit"}`.
    #[arg(long)]
    pub json: bool,
    /// The fetch configuration (default `~/.config/pay402/config.toml`;
    /// a missing default file means "environment only").
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The journal file (default `journal.sqlite` beside the config).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// A `--max` (or `max`) value that is not an integer with a known unit.
///
/// ```
/// use pay402_core::problem::Reason;
/// let e = pay402_cli::fetch::parse_max("5 dollars").unwrap_err();
/// assert_eq!(e.reason(), "invalid_max");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("invalid amount {0:?}: want an integer and sat, msat or usdcents (e.g. 100sat)")]
pub struct MaxError(String);

impl Reason for MaxError {
    fn reason(&self) -> &'static str {
        "invalid_max"
    }
}

/// Parses `100sat`, `2500msat`, `5usdcents`: digits only, then the unit.
///
/// ```
/// use pay402_core::rates::Amount;
/// assert_eq!(pay402_cli::fetch::parse_max("5usdcents").unwrap(), Amount::UsdCents(5));
/// ```
pub fn parse_max(text: &str) -> Result<Amount, MaxError> {
    let err = || MaxError(text.chars().take(40).collect());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 19 {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    match unit {
        "sat" => Ok(Amount::Sat(Sat(n))),
        "msat" => Ok(Amount::Msat(Msat(n))),
        "usdcents" => Ok(Amount::UsdCents(n)),
        _ => Err(err()),
    }
}

/// The fetch configuration file (`~/.config/pay402/config.toml`).
///
/// ```
/// let c: pay402_cli::fetch::FetchConfig = toml::from_str(
///     "max = \"100sat\"\n[lightning]\nkind = \"simnet-rest\"\nurl = \"http://127.0.0.1:8403\"\n",
/// ).unwrap();
/// assert_eq!(c.lightning.unwrap().kind, "simnet-rest");
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// The default `--max`.
    pub max: Option<String>,
    /// The most paid to one origin in any 24 hours, across runs (counted
    /// from the journal), e.g. `"500sat"`.
    pub max_per_origin_per_day: Option<String>,
    /// The most paid in total in any 24 hours, across runs.
    pub max_per_day: Option<String>,
    /// US cents per bitcoin, to compare and cap offers of different units.
    pub usd_cents_per_btc: Option<u64>,
    /// The Lightning node that pays L402 offers.
    pub lightning: Option<LightningMeans>,
    /// The EVM key that pays x402 offers.
    pub x402: Option<X402Means>,
}

/// `[lightning]`: a node with an LND REST API.
///
/// ```
/// let l: pay402_cli::fetch::LightningMeans =
///     toml::from_str("kind = \"lnd\"\nurl = \"https://127.0.0.1:8080\"\nnetwork = \"bitcoin\"").unwrap();
/// assert_eq!(l.kind, "lnd");
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightningMeans {
    /// `simnet-rest` (simnet's LND REST face, no credentials) or `lnd`.
    pub kind: String,
    /// The REST address.
    pub url: String,
    /// `bitcoin`, `testnet`, `signet` or `regtest` (default: regtest for
    /// simnet-rest, bitcoin for lnd).
    pub network: Option<String>,
    /// LND: the macaroon file (binary, e.g. admin.macaroon).
    pub macaroon_file: Option<PathBuf>,
    /// LND: its TLS certificate (PEM) when not publicly trusted.
    pub tls_cert_file: Option<PathBuf>,
}

/// `[x402]`: the EVM key.
///
/// ```
/// let x: pay402_cli::fetch::X402Means = toml::from_str("evm_key_file = \"/k\"").unwrap();
/// assert_eq!(x.evm_key_file, std::path::PathBuf::from("/k"));
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X402Means {
    /// A file holding the private key in hex (mode 0600, please).
    pub evm_key_file: PathBuf,
    /// USD stablecoins to pay besides USDC on Base and Base Sepolia.
    #[serde(default)]
    pub tokens: Vec<X402Token>,
}

/// `[[x402.tokens]]`: a USD stablecoin the x402 client may pay.
///
/// ```
/// let t: pay402_cli::fetch::X402Token = toml::from_str(
///     "network = \"eip155:31337\"\nasset = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\ndecimals = 6\nmax_units = 1000000",
/// ).unwrap();
/// assert_eq!(t.decimals, 6);
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X402Token {
    /// The CAIP-2 network, e.g. `eip155:8453`.
    pub network: String,
    /// The token contract.
    pub asset: String,
    /// Its decimals (priced as one US dollar per whole token).
    pub decimals: u8,
    /// The most one payment may be, in base units (the x402 client's own
    /// cap, under `--max`).
    pub max_units: u64,
}

/// A failure with its exit code.
struct Fail(u8, String);

fn usage(e: impl std::fmt::Display) -> Fail {
    Fail(exit::USAGE, e.to_string())
}

/// The configuration directory: `$XDG_CONFIG_HOME/pay402` or
/// `~/.config/pay402`.
fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => Some(PathBuf::from(x).join("pay402")),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/pay402")),
    }
}

fn load_config(args: &FetchArgs) -> Result<(FetchConfig, PathBuf), Fail> {
    load_config_file(args.config.as_deref())
}

fn load_config_file(config: Option<&Path>) -> Result<(FetchConfig, PathBuf), Fail> {
    let (path, explicit) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (
            config_dir()
                .ok_or_else(|| usage("no HOME: give --config"))?
                .join("config.toml"),
            false,
        ),
    };
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((FetchConfig::default(), dir));
        }
        Err(e) => return Err(usage(format!("{}: {e}", path.display()))),
    };
    let config = toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok((config, dir))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_network(s: &str) -> Result<Network, Fail> {
    Ok(match s {
        "bitcoin" | "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        other => return Err(usage(format!("unknown Lightning network {other:?}"))),
    })
}

/// A Lightning node and its network.
type Node = (Arc<dyn LightningPayer>, Network);

/// The Lightning means: the environment (`PAY402_LIGHTNING`,
/// `PAY402_LIGHTNING_URL`, …) over the file.
fn lightning(config: Option<LightningMeans>) -> Result<Option<Node>, Fail> {
    let mut means = config;
    if let Some(kind) = env("PAY402_LIGHTNING") {
        if kind == "none" {
            return Ok(None);
        }
        let url = env("PAY402_LIGHTNING_URL")
            .or_else(|| means.as_ref().map(|m| m.url.clone()))
            .ok_or_else(|| usage("PAY402_LIGHTNING needs PAY402_LIGHTNING_URL"))?;
        means = Some(LightningMeans {
            kind,
            url,
            network: env("PAY402_LIGHTNING_NETWORK"),
            macaroon_file: env("PAY402_LND_MACAROON_FILE").map(PathBuf::from),
            tls_cert_file: env("PAY402_LND_TLS_CERT_FILE").map(PathBuf::from),
        });
    }
    let Some(m) = means else { return Ok(None) };
    let url = m
        .url
        .parse()
        .map_err(|e| usage(format!("lightning url {:?}: {e}", m.url)))?;
    let network = match (&m.network, m.kind.as_str()) {
        (Some(n), _) => parse_network(n)?,
        (None, "simnet-rest") => Network::Regtest,
        (None, _) => Network::Bitcoin,
    };
    let mut cfg = pay402_backends::lnd::LndConfig::new(url, network);
    cfg.timeout = Duration::from_secs(60);
    match m.kind.as_str() {
        "simnet-rest" => {}
        "lnd" => {
            if let Some(p) = &m.macaroon_file {
                let bytes = Zeroizing::new(
                    std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())))?,
                );
                cfg.macaroon_hex = Some(hex::encode(&*bytes));
            }
            if let Some(p) = &m.tls_cert_file {
                cfg.tls_cert_pem =
                    Some(std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())))?);
            }
        }
        other => {
            return Err(usage(format!(
                "unknown lightning kind {other:?} (simnet-rest, lnd, none)"
            )));
        }
    }
    let node = pay402_backends::lnd::LndRest::new(cfg).map_err(usage)?;
    Ok(Some((Arc::new(node), network)))
}

/// Adds the x402 means (an EVM key file) and the USD stablecoin rates.
fn x402(
    mut b: PayerBuilder,
    mut rates: FixedRates,
    config: Option<X402Means>,
) -> Result<(PayerBuilder, FixedRates), Fail> {
    use pay402_core::offer::{KNOWN_TOKENS, known_token};
    for t in KNOWN_TOKENS.iter().filter_map(|(n, a)| known_token(n, a)) {
        b = b.token(t.clone());
        rates = rates.usd_stablecoin(t);
    }
    let (file, extra) = match config {
        Some(x) => (Some(x.evm_key_file), x.tokens),
        None => (None, Vec::new()),
    };
    let file = env("PAY402_EVM_KEY_FILE").map(PathBuf::from).or(file);
    let Some(file) = file else {
        return Ok((b, rates));
    };
    let key = Zeroizing::new(
        std::fs::read_to_string(&file).map_err(|e| usage(format!("{}: {e}", file.display())))?,
    );
    let signer = pay402_client::x402::LocalSigner::from_hex(key.trim())
        .map_err(|e| usage(format!("{}: {e}", file.display())))?;
    let mut client = pay402_client::x402::X402Client::builder(Arc::new(signer));
    for t in extra {
        let asset = t
            .asset
            .parse()
            .map_err(|e| usage(format!("x402 token {}: {e}", t.asset)))?;
        client = client.allow_asset(
            &t.network,
            asset,
            pay402_core::x402::TokenAmount::from_u64(t.max_units),
        );
        let unit = pay402_core::rates::TokenUnit::new(t.network, t.asset, t.decimals);
        b = b.token(unit.clone());
        rates = rates.usd_stablecoin(unit);
    }
    Ok((b.x402(client), rates))
}

/// The request as given on the command line.
struct Req {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    body: Option<Vec<u8>>,
}

fn request(args: &FetchArgs) -> Result<Req, Fail> {
    use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
    let url: reqwest::Url = args
        .url
        .parse()
        .map_err(|e| usage(format!("URL {:?}: {e}", args.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage(format!("URL {:?}: http or https only", args.url)));
    }
    let body = match args.data.as_deref() {
        Some(d) => Some(match d.strip_prefix('@') {
            Some(file) => std::fs::read(file).map_err(|e| usage(format!("{file}: {e}")))?,
            None => d.as_bytes().to_vec(),
        }),
        None => None,
    };
    let method = match (&args.method, &body) {
        (Some(m), _) => m.parse().map_err(|_| usage(format!("method {m:?}")))?,
        (None, Some(_)) => reqwest::Method::POST,
        (None, None) => reqwest::Method::GET,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| usage(format!("header {h:?}: want \"Name: value\"")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| usage(format!("header name {name:?}")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| usage(format!("header value of {name}")))?;
        headers.append(name, value);
    }
    if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    Ok(Req {
        method,
        url,
        headers,
        body,
    })
}

impl Req {
    fn builder(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        let b = http
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        match &self.body {
            Some(body) => b.body(body.clone()),
            None => b,
        }
    }
}

/// Runs `pay402 fetch`; the result is the process exit code.
pub async fn run(args: FetchArgs) -> u8 {
    match fetch(&args).await {
        Ok(code) => code,
        Err(Fail(code, message)) => {
            if args.json {
                println!("{}", serde_json::json!({ "error": message, "exit": code }));
            }
            eprintln!("pay402 fetch: {message}");
            code
        }
    }
}

async fn fetch(args: &FetchArgs) -> Result<u8, Fail> {
    let (config, dir) = load_config(args)?;
    let req = request(args)?;
    let max_text = args
        .max
        .clone()
        .or(config.max.clone())
        .unwrap_or_else(|| "1000sat".into());
    let max = parse_max(&max_text).map_err(usage)?;
    let mut rates = FixedRates::new();
    if let Some(c) = config.usd_cents_per_btc {
        rates = rates.usd_cents_per_btc(c);
    }
    let mut b = Payer::builder();
    if let Some((node, network)) = lightning(config.lightning)? {
        // The L402 client's own cap follows `--max` (its default is
        // 1000 sat); a cap in cents is enforced by the payer alone.
        let cap = match &max {
            Amount::Msat(m) => *m,
            Amount::Sat(s) => s.to_msat().unwrap_or(Msat(u64::MAX)),
            _ => Msat(u64::MAX),
        };
        b = b.l402(
            pay402_client::L402Client::builder(node)
                .network(network)
                .max_price(cap),
        );
    }
    let (b, rates) = x402(b, rates, config.x402)?;
    let mut b = b
        .rates(rates)
        .reference_unit(max.unit())
        .max_price(max.clone());
    if args.quote {
        return quote(args, &req, b).await;
    }
    const DAY: Duration = Duration::from_secs(24 * 3600);
    if let Some(text) = &config.max_per_origin_per_day {
        b = b.per_origin(parse_max(text).map_err(usage)?, DAY);
    }
    if let Some(text) = &config.max_per_day {
        b = b.total(parse_max(text).map_err(usage)?, DAY);
    }
    let journal = open_journal(args.journal.as_deref(), &dir).await?;
    let payer = b
        .journal(journal)
        .build()
        .await
        .map_err(|e| Fail(exit::USAGE, e.to_string()))?;
    let _span = tracing::info_span!("fetch", url = %req.url).entered();
    match payer.send(req.builder(payer.http())).await {
        Ok(paid) => finish(args, paid).await,
        Err(e) => Err(refused(args.silent, &e)),
    }
}

/// Opens the journal: `path`, else `journal.sqlite` in `dir`.
async fn open_journal(path: Option<&Path>, dir: &Path) -> Result<Journal, Fail> {
    let path = path.map_or_else(|| dir.join("journal.sqlite"), Path::to_path_buf);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Fail(exit::ERROR, format!("{}: {e}", parent.display())))?;
    }
    Journal::sqlite(&path)
        .await
        .map_err(|e| Fail(exit::ERROR, format!("journal {}: {e}", path.display())))
}

/// The options `pay402 receipts` and `pay402 tokens` share.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(flatten)] j: pay402_cli::fetch::JournalArgs }
/// assert!(Cli::parse_from(["x", "--json"]).j.json);
/// ```
#[derive(clap::Args, Debug)]
pub struct JournalArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The fetch configuration (its directory holds the default journal).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The journal file.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

impl JournalArgs {
    async fn open(&self) -> Result<Journal, Fail> {
        let (_, dir) = load_config_file(self.config.as_deref())?;
        open_journal(self.journal.as_deref(), &dir).await
    }
}

/// Prints a journal command's failure; the exit code.
fn report(command: &str, result: Result<(), Fail>) -> u8 {
    match result {
        Ok(()) => exit::OK,
        Err(Fail(code, message)) => {
            eprintln!("pay402 {command}: {message}");
            code
        }
    }
}

/// The options of `pay402 receipts`.
#[derive(clap::Args, Debug)]
pub struct ReceiptsArgs {
    /// Only the payments to this origin (`https://host[:port]`).
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
    /// At most this many, newest first.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Where the journal is, and the output format.
    #[command(flatten)]
    pub common: JournalArgs,
}

/// Runs `pay402 receipts`: lists the journal's payments (the proof itself
/// is never printed); the result is the exit code.
pub async fn receipts(args: ReceiptsArgs) -> u8 {
    report("receipts", list_receipts(&args).await)
}

async fn list_receipts(args: &ReceiptsArgs) -> Result<(), Fail> {
    let journal = args.common.open().await?;
    let mut query = pay402_client::journal::Query::default().limit(args.limit);
    if let Some(o) = &args.origin {
        query = query.origin(o);
    }
    let list = journal
        .payments(&query)
        .await
        .map_err(|e| Fail(exit::ERROR, e.to_string()))?;
    for p in list {
        if args.common.json {
            let v = serde_json::json!({
                "entry": p.id,
                "state": p.state.to_string(),
                "rail": p.rail.to_string(),
                "offer": p.offer,
                "amount": p.amount,
                "cost": p.cost,
                "counted": p.counted,
                "proof_id": p.proof_id,
                "origin": p.key.origin,
                "method": p.key.method,
                "target": p.key.target,
                "status": p.status,
                "time": p.created_ms / 1000,
            });
            println!("{v}");
        } else {
            println!(
                "{} {:<9} {:<5} {} {}{} {} proof {}",
                p.id,
                p.state,
                p.rail,
                p.key.method,
                p.key.origin,
                p.key.target,
                p.amount,
                p.proof_id.as_deref().unwrap_or("-"),
            );
        }
    }
    Ok(())
}

/// The options of `pay402 tokens`.
#[derive(clap::Args, Debug)]
pub struct TokensArgs {
    /// `rm ORIGIN`: forget the tokens kept for ORIGIN (the next fetch
    /// there pays again).
    #[arg(value_name = "rm ORIGIN", num_args = 0..=2)]
    pub command: Vec<String>,
    /// Where the journal is, and the output format.
    #[command(flatten)]
    pub common: JournalArgs,
}

/// Runs `pay402 tokens` (list the paid tokens kept in the journal, never
/// their secret) or `pay402 tokens rm ORIGIN`; the result is the exit code.
pub async fn tokens(args: TokensArgs) -> u8 {
    report("tokens", tokens_command(&args).await)
}

/// The origins with payments in the journal (at most the list bound).
async fn paid_origins(journal: &Journal) -> Result<Vec<String>, Fail> {
    let list = journal
        .payments(&pay402_client::journal::Query::default().limit(usize::MAX))
        .await
        .map_err(|e| Fail(exit::ERROR, e.to_string()))?;
    let mut origins: Vec<String> = list.into_iter().map(|p| p.key.origin).collect();
    origins.sort();
    origins.dedup();
    Ok(origins)
}

async fn tokens_command(args: &TokensArgs) -> Result<(), Fail> {
    let remove = match args.command.as_slice() {
        [] => None,
        [rm, origin] if rm == "rm" => Some(origin.trim_end_matches('/').to_owned()),
        _ => return Err(usage("usage: pay402 tokens [rm ORIGIN]")),
    };
    let journal = args.common.open().await?;
    let store = journal.store();
    let origins = match &remove {
        Some(o) => vec![o.clone()],
        None => paid_origins(&journal).await?,
    };
    let fail = |e: pay402_client::journal::JournalError| Fail(exit::ERROR, e.to_string());
    let mut removed = 0usize;
    for origin in origins {
        // `pay402 fetch` keeps tokens per origin (the payer's default scope,
        // whose scope string is the origin).
        for t in store.tokens(&origin, &origin).await.map_err(fail)? {
            if remove.is_some() {
                store
                    .remove_token(&t.origin, &t.scope, t.rail, &t.credential)
                    .await
                    .map_err(fail)?;
                removed += 1;
            } else if args.common.json {
                let v = serde_json::json!({
                    "origin": t.origin,
                    "rail": t.rail.to_string(),
                    "entry": t.entry_id,
                    "created": t.created_ms / 1000,
                    "expires": t.expires_ms.map(|ms| ms / 1000),
                });
                println!("{v}");
            } else {
                println!(
                    "{} {} paid by {} expires {}",
                    t.origin,
                    t.rail,
                    t.entry_id,
                    t.expires_ms
                        .map_or("-".to_owned(), |ms| format!("{}", ms / 1000)),
                );
            }
        }
    }
    if remove.is_some() {
        println!("removed {removed} token(s)");
    }
    Ok(())
}

/// The exit code and message of a payer error.
fn refused(silent: bool, e: &PayerError) -> Fail {
    if !silent {
        for r in e.refusals() {
            eprintln!(
                "  refused {}: {} ({})",
                r.offer,
                r.reason,
                r.reason.reason()
            );
        }
    }
    let code = match e {
        PayerError::NothingPayable { refused } => {
            let over = refused.iter().any(|r| {
                matches!(
                    r.reason,
                    RefusalReason::OverMaxPrice { .. }
                        | RefusalReason::OverOriginBudget { .. }
                        | RefusalReason::OverTotalBudget { .. }
                ) || matches!(
                    r.reason,
                    RefusalReason::Rail {
                        reason: "price_exceeds_maximum" | "price_above_max",
                        ..
                    }
                )
            });
            if over {
                exit::OVER_BUDGET
            } else {
                exit::NO_RAIL
            }
        }
        PayerError::NoOffer { .. } | PayerError::CrossOriginChallenge { .. } => exit::NO_RAIL,
        // The rail paid and the server then failed (L402: the token is
        // kept, a rerun presents it without paying again).
        e if e.reason() == "server_error_after_payment" => exit::SERVER_ERROR_AFTER_PAYING,
        e if e.may_have_paid() => exit::PAYMENT_FAILED,
        PayerError::Http(_) | PayerError::Journal { .. } | PayerError::BodyNotCloneable => {
            exit::ERROR
        }
        _ => exit::PAYMENT_FAILED,
    };
    let mut message = format!("{e} ({})", e.reason());
    if e.may_have_paid() {
        message.push_str(
            "; you may have paid: run the same fetch again to resume, it never pays twice",
        );
    }
    Fail(code, message)
}

/// Writes the response and the receipt.
async fn finish(args: &FetchArgs, paid: PayerPaid) -> Result<u8, Fail> {
    use std::io::Write;
    let status = paid.status();
    let paid_now = paid.receipt.is_some() || paid.reused_credential;
    let head = {
        let r = &paid.response;
        let mut s = format!("{:?} {}\r\n", r.version(), r.status());
        for (name, value) in r.headers() {
            s.push_str(&format!(
                "{name}: {}\r\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        s.push_str("\r\n");
        s
    };
    let receipt = receipt_json(&paid);
    if !args.silent && !args.json {
        match &paid.receipt {
            Some(r) => eprintln!(
                "paid {} with {} [{}], proof {}{}",
                r.amount,
                r.rail,
                r.offer,
                r.proof_id,
                if r.resumed { " (resumed)" } else { "" }
            ),
            None if paid.reused_credential => eprintln!("paid earlier: token reused"),
            None => {}
        }
    }
    // The body is streamed to its destination, never held whole.
    let read_fail = |e: reqwest::Error| {
        let code = if paid_now {
            exit::SERVER_ERROR_AFTER_PAYING
        } else {
            exit::ERROR
        };
        Fail(code, format!("reading the body: {e}"))
    };
    let io = |e: std::io::Error| Fail(exit::ERROR, e.to_string());
    let mut sink: Box<dyn Write> = match (&args.output, args.json) {
        (Some(path), _) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Fail(exit::ERROR, format!("{}: {e}", path.display())))?,
        )),
        (None, true) => Box::new(std::io::sink()),
        (None, false) => Box::new(std::io::stdout().lock()),
    };
    if args.include {
        sink.write_all(head.as_bytes()).map_err(io)?;
    }
    let mut response = paid.response;
    let bar = progress_bar(args, response.content_length());
    let mut body_bytes: u64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(read_fail)? {
        sink.write_all(&chunk).map_err(io)?;
        body_bytes = body_bytes.saturating_add(chunk.len() as u64);
        if let Some(bar) = &bar {
            bar.set_position(body_bytes);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    sink.flush().map_err(io)?;
    drop(sink);
    if args.json {
        let mut v = receipt;
        v["status"] = status.as_u16().into();
        v["body_bytes"] = body_bytes.into();
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{v}").map_err(io)?;
        stdout.flush().map_err(io)?;
    }
    if paid_now && !(status.is_success() || status.is_redirection()) {
        if !args.silent {
            eprintln!("pay402 fetch: the server answered {status} after the payment");
        }
        return Ok(exit::SERVER_ERROR_AFTER_PAYING);
    }
    Ok(exit::OK)
}

/// Bodies of at least this many bytes (or of unknown length) get a
/// progress bar.
const PROGRESS_FROM_BYTES: u64 = 1024 * 1024;

/// A progress bar on standard error, when it is a terminal, the body does
/// not go to the terminal, `-s` is not given and the body is large (or of
/// unknown length).
fn progress_bar(args: &FetchArgs, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let body_to_terminal = args.output.is_none() && !args.json && std::io::stdout().is_terminal();
    if args.silent || body_to_terminal || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(n) if n < PROGRESS_FROM_BYTES => return None,
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if total.is_some() {
        "{bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} {eta}"
    } else {
        "{spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

/// The receipt as JSON: rail, amount, proof id, origin, time.
fn receipt_json(paid: &PayerPaid) -> serde_json::Value {
    match &paid.receipt {
        Some(r) => serde_json::json!({
            "paid": true,
            "reused_token": false,
            "rail": r.rail.to_string(),
            "offer": r.offer,
            "amount": r.amount.to_string(),
            "amount_value": r.amount.value().to_string(),
            "unit": r.amount.unit().to_string(),
            "cost": r.cost.as_ref().map(ToString::to_string),
            "proof_id": r.proof_id,
            "origin": r.origin,
            "url": r.url.as_str(),
            "entry": r.entry,
            "settlement": r.settlement,
            "resumed": r.resumed,
            "time": r.paid_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }),
        None => serde_json::json!({
            "paid": false,
            "reused_token": paid.reused_credential,
            "url": paid.response.url().as_str(),
            "origin": paid.response.url().origin().ascii_serialization(),
            "time": std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }),
    }
}

/// What the payer would choose: (offer label, amount, cost).
type Chosen = Arc<Mutex<Option<(String, String, Option<String>)>>>;

/// `--quote`: one unpaid request for the offers, then the payer's choice,
/// declined, on an in-memory journal. Nothing is paid.
async fn quote(args: &FetchArgs, req: &Req, b: PayerBuilder) -> Result<u8, Fail> {
    let chosen: Chosen = Arc::default();
    let slot = Arc::clone(&chosen);
    let payer = b
        .journal(Journal::memory())
        .choose(Choice::custom(move |c| {
            let best = c
                .iter()
                .enumerate()
                .min_by_key(|(i, c)| (c.cost.is_none(), c.cost.map(Amount::value), *i));
            if let (Some((_, c)), Ok(mut slot)) = (best, slot.lock()) {
                *slot = Some((
                    c.offer.label(),
                    c.offer.amount.to_string(),
                    c.cost.map(ToString::to_string),
                ));
            }
            None
        }))
        .build()
        .await
        .map_err(usage)?;
    let resp = req
        .builder(payer.http())
        .send()
        .await
        .map_err(|e| Fail(exit::ERROR, e.to_string()))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_bounded(resp, 64 * 1024).await?;
    let set = read_offers(&headers, &body);
    let mut offers = Vec::new();
    for o in &set.offers {
        offers.push(serde_json::json!({
            "rail": o.rail.to_string(),
            "offer": o.label(),
            "amount": o.amount.to_string(),
            "network": o.network,
            "pay_to": o.pay_to,
            "description": o.description,
        }));
    }
    let skipped: Vec<String> = set
        .skipped
        .iter()
        .map(|s| format!("{}: {} ({})", s.name, s.error, s.error.reason()))
        .collect();
    let (code, would, refusals) = if status.as_u16() == 402 || status.as_u16() == 401 {
        match payer.send(req.builder(payer.http())).await {
            Err(e) => {
                let refusals: Vec<String> = e
                    .refusals()
                    .iter()
                    .filter(|r| !matches!(r.reason, RefusalReason::Declined))
                    .map(|r| format!("{}: {}", r.offer, r.reason))
                    .collect();
                let would = chosen.lock().ok().and_then(|c| c.clone());
                let code = match (&would, e) {
                    (Some(_), _) => exit::OK,
                    (None, e) => refused(true, &e).0,
                };
                (code, would, refusals)
            }
            Ok(_) => (exit::OK, None, Vec::new()),
        }
    } else {
        (exit::OK, None, Vec::new())
    };
    if args.json {
        let v = serde_json::json!({
            "status": status.as_u16(),
            "offers": offers,
            "skipped": skipped,
            "would_pay": would.as_ref().map(|(offer, amount, cost)| serde_json::json!({
                "offer": offer, "amount": amount, "cost": cost,
            })),
            "refused": refusals,
        });
        println!("{v}");
    } else {
        println!("{status}: {} offer(s)", offers.len());
        for o in &offers {
            println!(
                "  {} {}{}",
                o["offer"].as_str().unwrap_or("-"),
                o["amount"].as_str().unwrap_or("-"),
                o["description"]
                    .as_str()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
        for s in &skipped {
            println!("  skipped: {s}");
        }
        for r in &refusals {
            println!("  refused {r}");
        }
        match &would {
            Some((offer, amount, cost)) => println!(
                "would pay {amount} with {offer}{}",
                cost.as_ref()
                    .map(|c| format!(" (costs {c})"))
                    .unwrap_or_default()
            ),
            None => println!("would pay nothing"),
        }
    }
    Ok(code)
}

/// Reads at most `limit` bytes of a body (a 402 larger than that is
/// truncated: its offers are read from the headers).
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, Fail> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Fail(exit::ERROR, e.to_string()))?
    {
        if out.len() + chunk.len() > limit {
            out.clear();
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
