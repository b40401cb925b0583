//! The means of payment and the caps: the fetch configuration file, the
//! environment, `--max`.

use super::*;

/// A `--max` (or `max`) value that is not an amount with a known unit.
///
/// ```
/// use pay402_core::problem::Reason;
/// let e = pay402_cli::fetch::parse_max("5 dollars").unwrap_err();
/// assert_eq!(e.reason(), "invalid_max");
/// ```
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid amount {0:?}: want an integer with sat, msat or usdcents (100sat), \
     or US dollars with at most two decimals (0.05usd)"
)]
pub struct MaxError(String);

impl Reason for MaxError {
    fn reason(&self) -> &'static str {
        "invalid_max"
    }
}

/// The longest amount text read.
const MAX_AMOUNT_LEN: usize = 40;

/// Parses `100sat`, `2500msat`, `5usdcents` (digits only, then the unit) and
/// `0.05usd`, `2usd` (US dollars, at most two decimals: exact cents; more
/// precision than a cent is refused, never rounded). No signs, spaces or
/// exponents; no floats anywhere.
///
/// ```
/// use pay402_core::rates::Amount;
/// assert_eq!(pay402_cli::fetch::parse_max("5usdcents").unwrap(), Amount::UsdCents(5));
/// assert_eq!(pay402_cli::fetch::parse_max("0.05usd").unwrap(), Amount::UsdCents(5));
/// assert!(pay402_cli::fetch::parse_max("0.055usd").is_err());
/// ```
pub fn parse_max(text: &str) -> Result<Amount, MaxError> {
    let err = || MaxError(text.chars().take(MAX_AMOUNT_LEN).collect());
    if text.len() > MAX_AMOUNT_LEN {
        return Err(err());
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, rest) = text.split_at(split);
    if digits.is_empty() || digits.len() > 19 {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    match rest {
        "sat" => Ok(Amount::Sat(Sat(n))),
        "msat" => Ok(Amount::Msat(Msat(n))),
        "usdcents" => Ok(Amount::UsdCents(n)),
        "usd" => n.checked_mul(100).map(Amount::UsdCents).ok_or_else(err),
        _ => {
            // Dollars with a fraction: `.`, one or two digits, `usd`.
            let fraction = rest
                .strip_prefix('.')
                .and_then(|r| r.strip_suffix("usd"))
                .ok_or_else(err)?;
            if fraction.is_empty()
                || fraction.len() > 2
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(err());
            }
            let mut cents: u64 = fraction.parse().map_err(|_| err())?;
            if fraction.len() == 1 {
                cents *= 10;
            }
            n.checked_mul(100)
                .and_then(|c| c.checked_add(cents))
                .map(Amount::UsdCents)
                .ok_or_else(err)
        }
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
    /// The Lightning node that pays L402 and MPP `lightning`/`charge` offers.
    pub lightning: Option<LightningMeans>,
    /// The EVM key that pays x402 and MPP `evm`/`charge` offers.
    pub x402: Option<X402Means>,
    /// The Bitcoin wallet and ledger account that pay BitRequests offers.
    pub bitrequests: Option<BitreqMeans>,
}

/// `[bitrequests]`: a Bitcoin wallet (its seed in a file) that pays
/// BitRequests offers: by bit-transfer from the payer's account on the
/// merchant's ledger (`username`), and, with a `[bitrequests.chain]`, by
/// on-chain transaction and through payment channels.
///
/// ```
/// let b: pay402_cli::fetch::BitreqMeans =
///     toml::from_str("seed_file = \"/s\"\nusername = \"me\"\nnetwork = \"regtest\"").unwrap();
/// assert_eq!(b.username.as_deref(), Some("me"));
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitreqMeans {
    /// A file holding the wallet's BIP32 seed in hex (32 to 128 digits;
    /// mode 0600, please). The merchant opens the ledger account for the
    /// wallet's transfer key.
    pub seed_file: PathBuf,
    /// The payer's username on the merchant's ledger (bit-transfers).
    pub username: Option<String>,
    /// `bitcoin`, `testnet`, `signet` or `regtest` (default `bitcoin`).
    pub network: Option<String>,
    /// The methods this wallet may pay with, among `transfer`, `onchain`,
    /// `channel` (default: every method it has means for).
    pub methods: Option<Vec<BitreqMethodName>>,
    /// On-chain: how long to keep presenting a transaction the server
    /// answers `202` (waiting for confirmations), in seconds (default
    /// 3600; 0: return the first 202). A 202 still standing then exits 5
    /// with the transaction kept open in the journal: the same fetch run
    /// again presents it instead of paying again.
    pub confirmation_wait_secs: Option<u64>,
    /// On-chain: the longest pause between two presentations, in seconds
    /// (default 30; the server's `Retry-After` when shorter).
    pub confirmation_poll_secs: Option<u64>,
    /// The chain backend of on-chain payments and channels.
    pub chain: Option<BitreqChainMeans>,
    /// Payment channel settings.
    pub channel: Option<BitreqChannelMeans>,
}

/// A BitRequests payment method, as the fetch configuration names it.
///
/// ```
/// let m: pay402_cli::fetch::BitreqMethodName = serde_json::from_str("\"onchain\"").unwrap();
/// assert_eq!(m, pay402_cli::fetch::BitreqMethodName::Onchain);
/// ```
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BitreqMethodName {
    /// A bit-transfer from the ledger account.
    Transfer,
    /// A transaction from the wallet.
    Onchain,
    /// A payment channel.
    Channel,
}

/// `[bitrequests.chain]`: the Bitcoin backend the wallet finds its coins
/// through (its password read from a file, never the command line).
///
/// ```
/// let c: pay402_cli::fetch::BitreqChainMeans = toml::from_str(
///     "kind = \"bitcoind\"\nurl = \"http://127.0.0.1:8332\"\nuser = \"me\"\npassword_file = \"/p\"",
/// ).unwrap();
/// assert_eq!(c.kind, pay402_cli::config::BitreqChainKind::Bitcoind);
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitreqChainMeans {
    /// `bitcoind` or `esplora`.
    pub kind: crate::config::BitreqChainKind,
    /// The RPC or REST address, without credentials.
    pub url: String,
    /// bitcoind: the RPC user.
    pub user: Option<String>,
    /// bitcoind: a file holding the RPC password.
    pub password_file: Option<PathBuf>,
    /// Per-call timeout in seconds (default 30).
    pub timeout_secs: Option<u64>,
}

/// `[bitrequests.channel]`: how channels are opened. A fetch opens a
/// channel, pays through it and closes it before exiting (channels are
/// not kept across runs).
///
/// ```
/// let c: pay402_cli::fetch::BitreqChannelMeans = toml::from_str("deposit_sats = 50000").unwrap();
/// assert_eq!(c.deposit_sats, Some(50_000));
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitreqChannelMeans {
    /// What a channel can pay in total (default 100000 sat).
    pub deposit_sats: Option<u64>,
    /// How long a channel lasts, in seconds (default 8 days).
    pub duration_secs: Option<u64>,
    /// The miner fee of payment transactions (default 125000 sat; must
    /// equal the server's).
    pub fee_sats: Option<u64>,
    /// How long to wait for the deposit to confirm before paying, in
    /// seconds (default 0: only servers accepting unconfirmed deposits).
    pub deposit_wait_secs: Option<u64>,
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
    /// The token's EIP-712 domain name (`"USD Coin"`): with `version`,
    /// lets MPP's `evm`/`charge` pay in it too.
    pub name: Option<String>,
    /// The token's EIP-712 domain version (`"2"`).
    pub version: Option<String>,
}

/// The EIP-712 domains of the known USDC deployments, for MPP's
/// `evm`/`charge` (network, name, version).
const KNOWN_DOMAINS: [(&str, &str, &str); 2] = [
    ("eip155:8453", "USD Coin", "2"),
    ("eip155:84532", "USDC", "2"),
];

/// The MPP `evm`/`charge` means: the signer and the tokens it may pay.
pub(super) type MppEvm = (
    Arc<dyn pay402_client::x402::PaymentSigner>,
    Vec<pay402_client::mpp::MppToken>,
);

/// An MPP token from a CAIP-2 network, an address, decimals, a domain and
/// a cap (`None` when the network is not `eip155:<chain id>`).
fn mpp_token(
    network: &str,
    asset: &str,
    decimals: u8,
    name: &str,
    version: &str,
    max: u64,
) -> Option<pay402_client::mpp::MppToken> {
    let chain_id = network.strip_prefix("eip155:")?.parse().ok()?;
    let asset = asset.parse().ok()?;
    Some(
        pay402_client::mpp::MppToken::new(chain_id, asset, decimals, name, version)
            .max(pay402_core::x402::TokenAmount::from_u64(max)),
    )
}

/// The configuration directory: `$XDG_CONFIG_HOME/pay402` or
/// `~/.config/pay402`.
fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => Some(PathBuf::from(x).join("pay402")),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/pay402")),
    }
}

pub(super) fn load_config_file(config: Option<&Path>) -> Result<(FetchConfig, PathBuf), Fail> {
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
pub(super) fn lightning(config: Option<LightningMeans>) -> Result<Option<Node>, Fail> {
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

/// Adds the x402 means (an EVM key file) and the USD stablecoin rates;
/// with `mpp`, the same key and tokens (those with a known EIP-712 domain)
/// as MPP `evm`/`charge` means.
pub(super) fn x402(
    mut b: PayerBuilder,
    mut rates: FixedRates,
    config: Option<X402Means>,
    enabled: bool,
    mpp: bool,
) -> Result<(PayerBuilder, FixedRates, Option<MppEvm>), Fail> {
    use pay402_core::offer::{KNOWN_TOKENS, known_token};
    let mut mpp_tokens = Vec::new();
    for t in KNOWN_TOKENS.iter().filter_map(|(n, a)| known_token(n, a)) {
        if let Some((_, name, version)) = KNOWN_DOMAINS.iter().find(|d| d.0 == t.network()) {
            mpp_tokens.extend(mpp_token(
                t.network(),
                t.asset(),
                t.decimals(),
                name,
                version,
                1_000_000,
            ));
        }
        b = b.token(t.clone());
        rates = rates.usd_stablecoin(t);
    }
    let (file, extra) = match config {
        Some(x) => (Some(x.evm_key_file), x.tokens),
        None => (None, Vec::new()),
    };
    let file = env("PAY402_EVM_KEY_FILE").map(PathBuf::from).or(file);
    let Some(file) = file.filter(|_| enabled || mpp) else {
        return Ok((b, rates, None));
    };
    let key = Zeroizing::new(
        std::fs::read_to_string(&file).map_err(|e| usage(format!("{}: {e}", file.display())))?,
    );
    let signer: Arc<dyn pay402_client::x402::PaymentSigner> = Arc::new(
        pay402_client::x402::LocalSigner::from_hex(key.trim())
            .map_err(|e| usage(format!("{}: {e}", file.display())))?,
    );
    let mut client = pay402_client::x402::X402Client::builder(signer.clone());
    for t in extra {
        if let (Some(name), Some(version)) = (&t.name, &t.version) {
            let token = mpp_token(&t.network, &t.asset, t.decimals, name, version, t.max_units)
                .ok_or_else(|| {
                    usage(format!(
                        "x402 token {} on {}: not an eip155 token",
                        t.asset, t.network
                    ))
                })?;
            mpp_tokens.push(token);
        }
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
    let mpp = mpp.then_some((signer, mpp_tokens));
    let b = if enabled { b.x402(client) } else { b };
    Ok((b, rates, mpp))
}

/// The BitRequests means the configuration names: the wallet, the methods
/// it pays with (in order of preference) and, for channels, their
/// settings.
pub(super) struct BitreqSetup {
    /// The wallet (over the configured chain, or none).
    pub(super) wallet: Arc<pay402_client::bitreq::Wallet>,
    /// The methods, preferred first.
    pub(super) methods: Vec<BitreqMethodName>,
    /// The ledger username (bit-transfers).
    pub(super) username: Option<String>,
    /// Channel settings.
    pub(super) channel: pay402_client::bitreq::ChannelConfig,
    /// On-chain: how long to wait for confirmations, and the longest pause.
    pub(super) confirmations: (Duration, Duration),
}

impl BitreqSetup {
    /// Whether a method needs the wallet's coins (so a `sync` first).
    pub(super) fn uses_chain(&self) -> bool {
        self.methods
            .iter()
            .any(|m| *m != BitreqMethodName::Transfer)
    }

    /// Among offers of equal cost, the preferred method first (then the
    /// server's order), as [`Choice::Cheapest`] otherwise.
    pub(super) fn choice(&self) -> Choice {
        use pay402_core::offer::{BitreqMethod, RailChallenge};
        let order: Vec<BitreqMethod> = self
            .methods
            .iter()
            .map(|m| match m {
                BitreqMethodName::Transfer => BitreqMethod::Transfer,
                BitreqMethodName::Onchain => BitreqMethod::OnChain,
                BitreqMethodName::Channel => BitreqMethod::Channel,
            })
            .collect();
        Choice::custom(move |candidates| {
            let rank = |c: &pay402_client::Candidate<'_>| match &c.offer.challenge {
                RailChallenge::BitRequests(b) => order
                    .iter()
                    .position(|m| *m == b.method)
                    .unwrap_or(order.len()),
                _ => 0,
            };
            candidates
                .iter()
                .enumerate()
                .min_by_key(|(i, c)| {
                    (
                        c.cost.is_none(),
                        c.cost.map(Amount::value),
                        std::cmp::Reverse(c.weight),
                        rank(c),
                        *i,
                    )
                })
                .map(|(i, _)| i)
        })
    }
}

/// The chain backend of the fetch wallet (the password read from its file).
fn bitreq_chain(c: &BitreqChainMeans) -> Result<Arc<dyn pay402_core::chain::BitcoinChain>, Fail> {
    use crate::config::BitreqChainKind;
    let url: reqwest::Url = c
        .url
        .parse()
        .map_err(|e| usage(format!("bitrequests.chain.url {:?}: {e}", c.url)))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(usage(
            "bitrequests.chain.url: no credentials in the URL (user and password_file)",
        ));
    }
    let timeout = Duration::from_secs(c.timeout_secs.unwrap_or(30).max(1));
    Ok(match c.kind {
        BitreqChainKind::Bitcoind => {
            let (Some(user), Some(file)) = (&c.user, &c.password_file) else {
                return Err(usage(
                    "bitrequests.chain: bitcoind needs user and password_file",
                ));
            };
            let password = Zeroizing::new(
                std::fs::read_to_string(file)
                    .map_err(|e| usage(format!("{}: {e}", file.display())))?,
            );
            let config = pay402_backends::bitcoind::BitcoindConfig {
                url,
                user: user.clone(),
                password: password.trim_end().to_owned(),
                timeout,
            };
            Arc::new(pay402_backends::bitcoind::BitcoindRpc::new(config).map_err(usage)?)
        }
        BitreqChainKind::Esplora => {
            if c.user.is_some() || c.password_file.is_some() {
                return Err(usage(
                    "bitrequests.chain: esplora takes no user or password_file",
                ));
            }
            Arc::new(
                pay402_backends::esplora::Esplora::new(pay402_backends::esplora::EsploraConfig {
                    url,
                    timeout,
                })
                .map_err(usage)?,
            )
        }
    })
}

/// The BitRequests wallet the means name (`PAY402_BITREQ_SEED_FILE`,
/// `PAY402_BITREQ_USERNAME`, `PAY402_BITREQ_NETWORK` over the file), with
/// the methods it pays with.
pub(super) fn bitreq_wallet(config: Option<BitreqMeans>) -> Result<Option<BitreqSetup>, Fail> {
    use pay402_client::bitreq::{ChannelConfig, Wallet, WalletConfig};
    let seed_file = env("PAY402_BITREQ_SEED_FILE")
        .map(PathBuf::from)
        .or_else(|| config.as_ref().map(|c| c.seed_file.clone()));
    let Some(seed_file) = seed_file else {
        return Ok(None);
    };
    let username =
        env("PAY402_BITREQ_USERNAME").or_else(|| config.as_ref().and_then(|c| c.username.clone()));
    let network_name = env("PAY402_BITREQ_NETWORK")
        .or_else(|| config.as_ref().and_then(|c| c.network.clone()))
        .unwrap_or_else(|| "bitcoin".into());
    let network = crate::config::parse_btc_network(&network_name)
        .ok_or_else(|| usage(format!("bitrequests network {network_name:?}")))?;
    let chain_means = config.as_ref().and_then(|c| c.chain.as_ref());
    let available = |m: &BitreqMethodName| match m {
        BitreqMethodName::Transfer => username.is_some(),
        _ => chain_means.is_some(),
    };
    let methods = match config.as_ref().and_then(|c| c.methods.clone()) {
        Some(list) => {
            if list.is_empty() {
                return Err(usage("bitrequests.methods: name at least one method"));
            }
            if let Some(m) = list.iter().find(|m| !available(m)) {
                return Err(usage(format!(
                    "bitrequests.methods: {m:?} needs {}",
                    if *m == BitreqMethodName::Transfer {
                        "a username"
                    } else {
                        "[bitrequests.chain]"
                    }
                )));
            }
            let mut unique = Vec::with_capacity(list.len());
            for m in list {
                if !unique.contains(&m) {
                    unique.push(m);
                }
            }
            unique
        }
        None => [
            BitreqMethodName::Transfer,
            BitreqMethodName::Onchain,
            BitreqMethodName::Channel,
        ]
        .into_iter()
        .filter(available)
        .collect(),
    };
    if methods.is_empty() {
        return Err(usage(
            "bitrequests: a seed file needs a username (bit-transfers) or a [bitrequests.chain] (on-chain, channels)",
        ));
    }
    let chain: Arc<dyn pay402_core::chain::BitcoinChain> = match chain_means {
        Some(c) => bitreq_chain(c)?,
        None => Arc::new(crate::nochain::NoChain),
    };
    let seed = Zeroizing::new(
        std::fs::read_to_string(&seed_file)
            .map_err(|e| usage(format!("{}: {e}", seed_file.display())))?,
    );
    let wallet = Wallet::from_seed_hex(&seed, WalletConfig::new(network), chain)
        .map_err(|e| usage(format!("{}: {e}", seed_file.display())))?;
    let mut channel = ChannelConfig::default();
    if let Some(c) = config.as_ref().and_then(|c| c.channel.as_ref()) {
        if let Some(d) = c.deposit_sats {
            channel.deposit = Sat(d);
        }
        if let Some(d) = c.duration_secs {
            channel.duration = Duration::from_secs(d);
        }
        if let Some(f) = c.fee_sats {
            channel.channel_fee = Sat(f);
        }
        if let Some(w) = c.deposit_wait_secs {
            channel.deposit_wait = Duration::from_secs(w);
        }
    }
    let confirmations = (
        Duration::from_secs(
            config
                .as_ref()
                .and_then(|c| c.confirmation_wait_secs)
                .unwrap_or(3600),
        ),
        Duration::from_secs(
            config
                .as_ref()
                .and_then(|c| c.confirmation_poll_secs)
                .unwrap_or(30),
        ),
    );
    Ok(Some(BitreqSetup {
        wallet: Arc::new(wallet),
        methods,
        username,
        channel,
        confirmations,
    }))
}

/// Adds the BitRequests means (one per method), each capped like the L402
/// client by `cap`; returns where the channel client will be, to close
/// its channels after the request.
pub(super) fn bitreq(
    mut b: PayerBuilder,
    setup: &BitreqSetup,
    cap: Sat,
) -> (PayerBuilder, Option<pay402_client::bitreq::ChannelSlot>) {
    use pay402_client::bitreq::{BitRequests, ChannelSlot};
    let mut slot = None;
    for m in &setup.methods {
        let wallet = Arc::clone(&setup.wallet);
        let builder = match (m, &setup.username) {
            (BitreqMethodName::Transfer, Some(u)) => BitRequests::bit_transfer(wallet, u.clone()),
            (BitreqMethodName::Transfer, None) => continue,
            (BitreqMethodName::Onchain, _) => {
                let (wait, poll) = setup.confirmations;
                BitRequests::on_chain(wallet).await_confirmations(wait, poll)
            }
            (BitreqMethodName::Channel, _) => {
                let s = ChannelSlot::default();
                slot = Some(s.clone());
                BitRequests::channel(wallet)
                    .channel_config(setup.channel.clone())
                    .share_channels(s)
            }
        };
        b = b.bitreq(builder.max_price(cap));
    }
    (b, slot)
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Every malformed amount is refused with `invalid_max`, none panics.
    #[test]
    fn parse_max_bad_input_table() {
        let bad = [
            "",
            "sat",
            "usd",
            ".05usd",
            "0.usd",
            "0.055usd",
            "0.5.0usd",
            "1,5usd",
            "-1usd",
            "+1usd",
            "1e2usd",
            "0x10sat",
            " 5usd",
            "5usd ",
            "5 usd",
            "5USD",
            "5dollars",
            "0.05sat",
            "1.5usdcents",
            "1.5msat",
            "05.0a5usd",
            "184467440737095517usd",
            "99999999999999999999sat",
            "1.\u{0660}usd",
            "\u{0661}usd",
            "0.05usd\0",
            "00000000000000000000000000000000000000001usd",
        ];
        for text in bad {
            let e = parse_max(text).expect_err(text);
            assert_eq!(e.reason(), "invalid_max", "{text:?}");
        }
    }

    /// Exact conversions, up to the largest amount of cents.
    #[test]
    fn parse_max_good_input_table() {
        let good = [
            ("100sat", Amount::Sat(Sat(100))),
            ("0sat", Amount::Sat(Sat(0))),
            ("2500msat", Amount::Msat(Msat(2500))),
            ("5usdcents", Amount::UsdCents(5)),
            ("0.05usd", Amount::UsdCents(5)),
            ("0.5usd", Amount::UsdCents(50)),
            ("0.50usd", Amount::UsdCents(50)),
            ("1usd", Amount::UsdCents(100)),
            ("12.34usd", Amount::UsdCents(1234)),
            ("0.00usd", Amount::UsdCents(0)),
            (
                "184467440737095516usd",
                Amount::UsdCents(18_446_744_073_709_551_600),
            ),
            ("184467440737095516.15usd", Amount::UsdCents(u64::MAX)),
        ];
        for (text, want) in good {
            assert_eq!(parse_max(text).expect(text), want, "{text:?}");
        }
        assert!(parse_max("184467440737095516.16usd").is_err());
    }
}
