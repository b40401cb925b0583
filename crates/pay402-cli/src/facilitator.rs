//! `pay402 facilitator --config facilitator.toml`: pay402's local x402
//! facilitator (`POST /verify`, `POST /settle`, `GET /supported`) as a
//! service for other x402 servers, behind bearer API keys, with the
//! library's hardening (asset allowlist, gas and fee caps, a gas budget,
//! per-client and per-payer rate limits) and `/healthz`.
//!
//! ```toml
//! listen = "127.0.0.1:8404"
//! network = "eip155:8453"
//! rpc_url = { env = "PAY402_X402_RPC_URL" }
//! key = { file = "/etc/pay402/facilitator.key" }
//! api_keys = [{ file = "/etc/pay402/facilitator-api-key" }]
//!
//! [[assets]]
//! address = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
//! name = "USD Coin"
//! version = "2"
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use pay402_backends::x402::{LocalFacilitator, RouterAuth, RouterConfig};
use serde::Deserialize;

use crate::config::{ConfigError, SecretSource};
use crate::run::{StartError, read_secret};

/// `facilitator.toml`.
///
/// ```
/// let c = pay402_cli::facilitator::FacilitatorFile::parse("f.toml", "listen = \"127.0.0.1:0\"\nnetwork = \"eip155:31337\"\nrpc_url = { env = \"R\" }\nkey = { env = \"K\" }\napi_keys = [{ env = \"A\" }]\n[[assets]]\naddress = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\nname = \"USD Coin\"\n").unwrap();
/// assert_eq!(c.assets[0].version, "2");
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilitatorFile {
    /// Where the facilitator listens.
    pub listen: String,
    /// The CAIP-2 network served (checked against the node's chain).
    pub network: String,
    /// The chain's JSON-RPC URL (a secret: it often carries an API key).
    pub rpc_url: SecretSource,
    /// The settling account's private key (it pays the gas).
    pub key: SecretSource,
    /// Bearer API keys accepted (each at least 32 characters).
    pub api_keys: Vec<SecretSource>,
    /// The tokens settled (the allowlist; nothing else is).
    pub assets: Vec<AssetEntry>,
    /// Highest gas one settlement may use.
    pub max_gas_per_settlement: Option<u64>,
    /// Highest fee per gas, in wei.
    pub max_fee_per_gas_wei: Option<u128>,
    /// Gas budget: at most `gas` per `period_secs`.
    pub gas_budget: Option<GasBudget>,
}

/// One allowlisted token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEntry {
    /// The token contract.
    pub address: String,
    /// Its EIP-712 domain name.
    pub name: String,
    /// Its EIP-712 domain version.
    #[serde(default = "two")]
    pub version: String,
}

fn two() -> String {
    "2".into()
}

/// A gas budget per period.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct GasBudget {
    /// Gas.
    pub gas: u64,
    /// Period in seconds.
    pub period_secs: u64,
}

impl FacilitatorFile {
    /// Reads `path`.
    ///
    /// ```no_run
    /// let f = pay402_cli::facilitator::FacilitatorFile::load("facilitator.toml".as_ref())?;
    /// # Ok::<(), pay402_cli::config::ConfigError>(())
    /// ```
    pub fn load(path: &Path) -> Result<FacilitatorFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", None, "", format!("cannot read: {e}")))?;
        FacilitatorFile::parse(path, &text)
    }

    /// Parses `text` (from `file`); errors name line, column and key.
    pub fn parse(file: impl Into<PathBuf>, text: &str) -> Result<FacilitatorFile, ConfigError> {
        let file = file.into();
        let f: FacilitatorFile = toml::from_str(text)
            .map_err(|e| ConfigError::new(&file, text, e.span(), "", e.message().to_owned()))?;
        if f.assets.is_empty() {
            return Err(ConfigError::new(
                &file,
                text,
                None,
                "assets",
                "at least one [[assets]] is needed",
            ));
        }
        if f.api_keys.is_empty() {
            return Err(ConfigError::new(
                &file,
                text,
                None,
                "api_keys",
                "at least one API key is needed",
            ));
        }
        for a in &f.assets {
            a.address
                .parse::<pay402_core::x402::evm::EvmAddress>()
                .map_err(|_| {
                    ConfigError::new(
                        &file,
                        text,
                        None,
                        "assets.address",
                        format!("{:?} is not a 0x address", a.address),
                    )
                })?;
        }
        Ok(f)
    }
}

/// Builds the facilitator and serves it until SIGTERM or Ctrl-C.
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_cli::run::StartError> {
/// let file = pay402_cli::facilitator::FacilitatorFile::load("facilitator.toml".as_ref())?;
/// pay402_cli::facilitator::serve(file).await?;
/// # Ok(()) }
/// ```
pub async fn serve(f: FacilitatorFile) -> Result<(), StartError> {
    let rpc = read_secret(&f.rpc_url)?;
    let key = read_secret(&f.key)?;
    let mut builder = LocalFacilitator::builder(rpc.as_str())
        .signer(key.as_str())
        .network(f.network.clone());
    for a in &f.assets {
        let address: pay402_core::x402::evm::EvmAddress =
            a.address.parse().map_err(|_| "assets.address")?;
        builder = builder.allow_asset(address.0, a.name.clone(), a.version.clone());
    }
    if let Some(g) = f.max_gas_per_settlement {
        builder = builder.max_gas_per_settlement(g);
    }
    if let Some(w) = f.max_fee_per_gas_wei {
        builder = builder.max_fee_per_gas_wei(w);
    }
    if let Some(b) = f.gas_budget {
        builder = builder.gas_budget(b.gas, Duration::from_secs(b.period_secs));
    }
    let facilitator = builder.build().await?;
    for signer in facilitator.signers() {
        tracing::info!(network = %facilitator.network(), %signer, "settling from");
    }
    let mut keys = Vec::with_capacity(f.api_keys.len());
    for k in &f.api_keys {
        keys.push(read_secret(k)?);
    }
    let auth = RouterAuth::bearer(keys.iter().map(|k| k.as_str()))?;
    let app: Router =
        pay402_backends::x402::router_with(Arc::new(facilitator), RouterConfig::new(auth))
            .route("/healthz", get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind(f.listen.as_str())
        .await
        .map_err(|e| format!("listen {}: {e}", f.listen))?;
    tracing::info!(address = %listener.local_addr()?, "pay402 facilitator listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(crate::run::shutdown_signal())
    .await?;
    Ok(())
}
