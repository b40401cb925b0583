//! Small helpers shared by the pay402 examples: reading settings from the
//! environment and printing steps readably.

use std::time::Duration;

mod invoices;

pub use invoices::Invoices;

/// Reads an environment variable, or `default` when unset or empty.
///
/// ```
/// assert_eq!(pay402_examples::env_or("PAY402_SURELY_UNSET_VAR", "x"), "x");
/// ```
pub fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_owned(),
    }
}

/// Reads an environment variable, `None` when unset or empty.
///
/// ```
/// assert_eq!(pay402_examples::var("PAY402_SURELY_UNSET_VAR"), None);
/// ```
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Shortens a long header value for display: `head…(N chars)`.
///
/// ```
/// assert_eq!(pay402_examples::abbreviate("abcdefghij", 4), "abcd…(10 chars)");
/// assert_eq!(pay402_examples::abbreviate("abc", 4), "abc");
/// ```
pub fn abbreviate(s: &str, keep: usize) -> String {
    if s.chars().count() <= keep {
        return s.to_owned();
    }
    let head: String = s.chars().take(keep).collect();
    format!("{head}…({} chars)", s.chars().count())
}

/// Abbreviates the quoted values inside a `WWW-Authenticate` challenge.
///
/// ```
/// let c = "L402 macaroon=\"AAAAAAAAAAAAAAAAAAAAAAAA\", invoice=\"lnbcrt1xxxxxxxxxxxxxxxxxx\"";
/// assert_eq!(
///     pay402_examples::abbreviate_challenge(c, 6),
///     "L402 macaroon=\"AAAAAA…(24 chars)\", invoice=\"lnbcrt…(25 chars)\""
/// );
/// ```
pub fn abbreviate_challenge(challenge: &str, keep: usize) -> String {
    let mut out = String::with_capacity(challenge.len());
    let mut rest = challenge;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..=start]);
        rest = &rest[start + 1..];
        match rest.find('"') {
            Some(end) => {
                out.push_str(&abbreviate(&rest[..end], keep));
                out.push('"');
                rest = &rest[end + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Formats a duration in milliseconds with one decimal.
///
/// ```
/// assert_eq!(pay402_examples::ms(std::time::Duration::from_micros(1500)), "1.5 ms");
/// ```
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Formats millisatoshis as satoshis, keeping any fraction exact.
///
/// ```
/// use pay402_core::money::Msat;
/// assert_eq!(pay402_examples::sats(Msat(100_000)), "100 sat");
/// assert_eq!(pay402_examples::sats(Msat(1_500)), "1.500 sat");
/// ```
pub fn sats(m: pay402_core::money::Msat) -> String {
    if m.0.is_multiple_of(1000) {
        format!("{} sat", m.0 / 1000)
    } else {
        format!("{}.{:03} sat", m.0 / 1000, m.0 % 1000)
    }
}

/// Installs a tracing subscriber driven by `RUST_LOG` (quiet by default).
///
/// ```
/// pay402_examples::init_tracing();
/// ```
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

use std::sync::Arc;

use pay402_backends::cln::Cln;
use pay402_backends::ldk::{ChainSource, LdkConfig, LdkNode};
use pay402_backends::lnbits::{Lnbits, LnbitsConfig};
use pay402_backends::lnd::{LndConfig, LndRest};
use pay402_core::lightning::{InvoiceIssuer, LightningPayer, Network};

/// A Lightning backend chosen from the environment: something that can issue
/// invoices (servers) and pay them (clients).
pub struct Lightning {
    /// Issues invoices.
    pub issuer: Arc<dyn InvoiceIssuer>,
    /// Pays invoices.
    pub payer: Arc<dyn LightningPayer>,
    /// The network its invoices are for.
    pub network: Network,
    /// A one-line description for the startup banner.
    pub describe: String,
    /// The embedded node, when `PAY402_LIGHTNING=ldk` (kept to stop it cleanly).
    pub ldk: Option<LdkNode>,
}

/// The environment variables [`lightning_from_env`] reads, for `--help` texts.
pub const LIGHTNING_ENV_HELP: &str = "\
  PAY402_LIGHTNING       simnet | lnd | cln | lnbits | ldk
  lnd:    LND_REST_URL, LND_MACAROON_PATH | LND_MACAROON_HEX, LND_TLS_CERT_PATH, LND_NETWORK
  cln:    CLN_RPC_PATH | CLN_LIGHTNING_DIR (unix socket), or CLN_REST_URL + CLN_RUNE [+ CLN_TLS_CERT_PATH]; CLN_NETWORK
  lnbits: LNBITS_URL, LNBITS_INVOICE_KEY, LNBITS_ADMIN_KEY, LNBITS_NETWORK
  ldk:    PAY402_LDK_DIR (default ./pay402-ldk), PAY402_LDK_NETWORK (default regtest),
          PAY402_LDK_LISTEN (default 127.0.0.1:9735),
          PAY402_LDK_BITCOIND=host:port + PAY402_LDK_BITCOIND_USER + PAY402_LDK_BITCOIND_PASSWORD,
          or PAY402_LDK_ESPLORA=<url>";

/// Parses a network name (`bitcoin`/`mainnet`, `testnet`, `testnet4`, `signet`, `regtest`).
///
/// ```
/// use pay402_core::lightning::Network;
/// assert_eq!(pay402_examples::parse_network("regtest").unwrap(), Network::Regtest);
/// assert!(pay402_examples::parse_network("moon").is_err());
/// ```
pub fn parse_network(s: &str) -> Result<Network, String> {
    match s {
        "bitcoin" | "mainnet" => Ok(Network::Bitcoin),
        "testnet" => Ok(Network::Testnet),
        "testnet4" => Ok(Network::Testnet4),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        other => Err(format!("unknown network {other:?}")),
    }
}

/// Connects to (or, for `ldk`, starts) the Lightning backend named `kind`
/// (`lnd`, `cln`, `lnbits`, `ldk`), configured from the environment. `simnet`
/// is handled by each example itself.
///
/// ```no_run
/// # fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let ln = pay402_examples::lightning_from_env("lnd")?;
/// println!("{}", ln.describe);
/// # Ok(()) }
/// ```
pub fn lightning_from_env(kind: &str) -> Result<Lightning, Box<dyn std::error::Error>> {
    lightning_from_vars(kind, |name| std::env::var(name).ok())
}

/// Like [`lightning_from_env`], reading settings through `get` (for example
/// `PAYER_`-prefixed copies of the variables, to build a second node).
///
/// ```
/// let err = pay402_examples::lightning_from_vars("lnbits", |_| None);
/// assert!(err.is_err(), "LNbits needs a key");
/// ```
pub fn lightning_from_vars(
    kind: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Lightning, Box<dyn std::error::Error>> {
    let get_or = |name: &str, default: &str| {
        get(name)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    match kind {
        "lnd" => {
            let cfg = LndConfig::from_vars(&get)?;
            let network = cfg.network;
            let describe = format!("LND REST at {}", cfg.url);
            let node = Arc::new(LndRest::new(cfg)?);
            Ok(Lightning {
                issuer: node.clone(),
                payer: node,
                network,
                describe,
                ldk: None,
            })
        }
        "cln" => {
            let node = Arc::new(Cln::from_vars(&get)?);
            let network = node.network();
            let describe = match node.as_ref() {
                Cln::Rpc(_) => "Core Lightning (lightning-rpc socket)".to_owned(),
                Cln::Rest(_) => "Core Lightning (clnrest)".to_owned(),
            };
            Ok(Lightning {
                issuer: node.clone(),
                payer: node,
                network,
                describe,
                ldk: None,
            })
        }
        "lnbits" => {
            let cfg = LnbitsConfig::from_vars(&get)?;
            let network = cfg.network;
            let describe = format!("LNbits at {}", cfg.url);
            let node = Arc::new(Lnbits::new(cfg)?);
            Ok(Lightning {
                issuer: node.clone(),
                payer: node,
                network,
                describe,
                ldk: None,
            })
        }
        "ldk" => {
            let network = parse_network(&get_or("PAY402_LDK_NETWORK", "regtest"))?;
            let chain = if let Some(url) = get("PAY402_LDK_ESPLORA") {
                ChainSource::Esplora { url }
            } else {
                let hostport = get("PAY402_LDK_BITCOIND").ok_or({
                    "PAY402_LIGHTNING=ldk needs a chain source: PAY402_LDK_BITCOIND=host:port (with PAY402_LDK_BITCOIND_USER and PAY402_LDK_BITCOIND_PASSWORD) or PAY402_LDK_ESPLORA=<url>"
                })?;
                let (host, port) = hostport
                    .rsplit_once(':')
                    .ok_or("PAY402_LDK_BITCOIND must be host:port")?;
                ChainSource::BitcoindRpc {
                    host: host.to_owned(),
                    port: port.parse()?,
                    user: get_or("PAY402_LDK_BITCOIND_USER", ""),
                    password: get_or("PAY402_LDK_BITCOIND_PASSWORD", ""),
                }
            };
            let dir = get_or("PAY402_LDK_DIR", "pay402-ldk");
            let listen = get_or("PAY402_LDK_LISTEN", "127.0.0.1:9735").parse()?;
            let node = LdkNode::start(LdkConfig::new(network, &dir, chain).listen(listen))?;
            let describe = format!(
                "embedded ldk-node {} listening on {:?}, state in {dir}; fund it at {} (balances: {:?})",
                node.node_id(),
                node.listening_addresses(),
                node.new_onchain_address()?,
                node.balances()
            );
            let shared = Arc::new(node.clone());
            Ok(Lightning {
                issuer: shared.clone(),
                payer: shared,
                network,
                describe,
                ldk: Some(node),
            })
        }
        other => Err(
            format!("PAY402_LIGHTNING={other}: expected simnet, lnd, cln, lnbits or ldk").into(),
        ),
    }
}
