//! `pay402 dev`: one command, no setup, no account. It starts an example
//! upstream, `pay402 proxy` in front of it (in this process, the same code)
//! with every rail on embedded defaults, funds a dev wallet for each rail,
//! writes a `pay402 fetch` configuration holding that wallet, prints the
//! proxy's URL and one `pay402 fetch` command per rail, and runs until
//! Ctrl-C (or SIGTERM), when it stops its peers.
//!
//! - L402: an embedded simnet Lightning network (real BOLT11 invoices); the
//!   dev wallet is its funded `wallet` node, reached through its
//!   LND-compatible REST API.
//! - x402: Circle's USDC (FiatTokenV2_2) on a local anvil chain, settled by
//!   the proxy's local facilitator; anvil and the contracts are installed
//!   from the npm registry on first use, as the demo does
//!   (`PAY402_DEMO_PEERS`: `install`, the default; `auto`, only when
//!   already installed; `off`, no x402). The dev wallet is a fresh EVM key
//!   holding minted USDC.
//! - BitRequests: the merchant's ledger; the dev wallet is a fresh Bitcoin
//!   wallet whose ledger account is opened and credited.
//!
//! Nothing here is money: the chains are local and the Lightning network is
//! simulated.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pay402_core::money::Sat;
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, USDC_DECIMALS, USDC_NAME, USDC_VERSION};

use crate::config::Config;
use crate::run::StartError;

/// The options of `pay402 dev`.
///
/// ```
/// use clap::Parser;
/// #[derive(clap::Parser)]
/// struct Cli { #[command(flatten)] dev: pay402_cli::dev::DevArgs }
/// let args = Cli::parse_from(["pay402", "--peers", "off"]).dev;
/// assert_eq!(args.listen, "127.0.0.1:8402");
/// assert_eq!(args.peers, pay402_cli::dev::PeerMode::Off);
/// ```
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// The proxy's address (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8402")]
    pub listen: String,
    /// Where the generated configuration, dev keys and fetch journal go
    /// (default: a fresh directory under the system's temporary directory,
    /// removed on exit).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The x402 peers (anvil and the USDC contracts from npm): `install`
    /// them on first use, use them only when already installed (`auto`), or
    /// leave x402 out (`off`).
    #[arg(
        long,
        value_name = "MODE",
        env = "PAY402_DEMO_PEERS",
        default_value = "install"
    )]
    pub peers: PeerMode,
}

/// Whether `pay402 dev` runs x402's peers (see [`DevArgs::peers`]).
///
/// ```
/// use clap::ValueEnum;
/// assert_eq!(pay402_cli::dev::PeerMode::from_str("off", false).unwrap(), pay402_cli::dev::PeerMode::Off);
/// ```
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerMode {
    /// Only if already installed.
    Auto,
    /// Install from npm if needed.
    Install,
    /// Never: no x402.
    Off,
}

/// The price of the example API: one US cent (10 sat, 10 000 USDC base
/// units at the rate below).
const PRICE_USD_CENTS: u64 = 1;
/// The fixed bitcoin price of the dev setup: 100 000 USD.
const USD_CENTS_PER_BTC: u64 = 10_000_000;
/// What the dev wallet holds on each rail.
const WALLET_SATS: u64 = 1_000_000;
const LEDGER_SATS: u64 = 10_000;
const WALLET_USDC_UNITS: u64 = 10_000_000;
/// The payer's ledger username and the merchant's.
const DEV_USER: &str = "dev";
const SHOP_USER: &str = "dev-shop";
/// The header naming the payment to the upstream.
const IDENTITY_HEADER: &str = "x-pay402-payment";
/// The paid path of the example API.
///
/// ```
/// assert!(pay402_cli::dev::PAID_PATH.starts_with('/'));
/// ```
pub const PAID_PATH: &str = "/api/joke";

/// Runs `pay402 dev` until Ctrl-C or SIGTERM.
///
/// ```no_run
/// # async fn f() -> Result<(), pay402_cli::run::StartError> {
/// use clap::Parser;
/// #[derive(clap::Parser)]
/// struct Cli { #[command(flatten)] dev: pay402_cli::dev::DevArgs }
/// let args = Cli::parse_from(["pay402", "--listen", "127.0.0.1:0", "--peers", "off"]).dev;
/// pay402_cli::dev::run(args, pay402_cli::metrics::install()?).await?;
/// # Ok(()) }
/// ```
pub async fn run(
    args: DevArgs,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<(), StartError> {
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("pay402-dev-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(&args, &dir, metrics).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(
    args: &DevArgs,
    dir: &Path,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<(), StartError> {
    let upstream = start_upstream().await?;

    // x402's chain: anvil with Circle's USDC, as the demo runs it.
    let with_x402 = match args.peers {
        PeerMode::Off => false,
        PeerMode::Auto => Anvil::cache_dir().join(".pay402-installed").is_file(),
        PeerMode::Install => true,
    };
    let anvil = if with_x402 {
        if !Anvil::cache_dir().join(".pay402-installed").is_file() {
            println!(
                "first run: installing anvil and Circle's USDC contracts from the npm registry into {} (about a minute, once)",
                Anvil::cache_dir().display()
            );
        }
        Some(tokio::task::spawn_blocking(Anvil::start).await??)
    } else {
        None
    };
    let result = with_peers(args, dir, upstream, anvil.as_ref(), metrics).await;
    if let Some(a) = anvil {
        let pid = a.pid();
        drop(a);
        println!("stopped anvil (pid {pid})");
    }
    result
}

async fn with_peers(
    args: &DevArgs,
    dir: &Path,
    upstream: SocketAddr,
    anvil: Option<&Anvil>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<(), StartError> {
    // The dev wallet's keys, owner-only files.
    let evm_key = hex::encode(rand::random::<[u8; 32]>());
    let seed = hex::encode(rand::random::<[u8; 32]>());
    write_private(&dir.join("bitreq.seed"), &seed)?;
    // MPP's HMAC secret (challenge binding): 32 random bytes, hex.
    write_private(
        &dir.join("mpp.secret"),
        &hex::encode(rand::random::<[u8; 32]>()),
    )?;

    let mut x402_sections = String::new();
    let mut fetch_x402 = String::new();
    let mut rails = vec!["l402", "mpp", "bitreq"];
    let mut usdc_address = None;
    if let Some(anvil) = anvil {
        let usdc = anvil.deploy_usdc()?;
        let signer = pay402_client::x402::LocalSigner::from_hex(&evm_key)?;
        usdc.mint(
            signer.address().0,
            alloy_primitives::U256::from(WALLET_USDC_UNITS),
        )?;
        usdc_address = Some(usdc.address);
        write_private(&dir.join("evm.key"), &evm_key)?;
        write_private(&dir.join("rpc_url"), &anvil.rpc_url())?;
        write_private(
            &dir.join("facilitator.key"),
            &hex::encode(DEV_ACCOUNTS[1].private_key),
        )?;
        let d = dir.display();
        x402_sections = format!(
            "[x402]\nnetwork = \"eip155:31337\"\nasset = \"{asset}\"\nasset_name = \"{USDC_NAME}\"\n\
             asset_version = \"{USDC_VERSION}\"\nasset_decimals = {USDC_DECIMALS}\npay_to = \"{payee}\"\n\n\
             [x402.facilitator]\nkind = \"local\"\n\
             rpc_url = {{ file = \"{d}/rpc_url\" }}\nkey = {{ file = \"{d}/facilitator.key\" }}\n\n",
            asset = usdc.address,
            payee = DEV_ACCOUNTS[2].address,
        );
        fetch_x402 = format!(
            "[x402]\nevm_key_file = \"{d}/evm.key\"\n\n[[x402.tokens]]\nnetwork = \"eip155:31337\"\n\
             asset = \"{asset}\"\ndecimals = {USDC_DECIMALS}\nmax_units = 1000000\n\n",
            asset = usdc.address,
        );
        rails.insert(2, "x402");
    }

    // The proxy's configuration: written out for the curious, then read
    // back through the same parser `pay402 proxy` uses.
    let rail_list = rails
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let proxy_toml = format!(
        "# pay402 dev: the proxy's configuration (generated)\n\n\
         [server]\nlisten = \"{listen}\"\nshutdown_grace_secs = 5\n\n\
         [store]\nurl = \"sqlite::memory:\"\n\n\
         [rates]\nusd_cents_per_btc = {USD_CENTS_PER_BTC}\n\n\
         [lightning]\nkind = \"simnet-rest\"\nlisten = \"127.0.0.1:0\"\nwallet_sats = {WALLET_SATS}\n\n\
         [mpp]\nrealm = \"pay402-dev\"\nsecret = {{ file = \"{d}/mpp.secret\" }}\nmethods = [\"lightning\"]\n\n\
         {x402_sections}\
         [bitrequests]\nnetwork = \"regtest\"\ntransfer_username = \"{SHOP_USER}\"\n\n\
         [[services]]\nname = \"dev\"\nupstream = \"http://{upstream}\"\nfree_paths = [\"/free/*\"]\n\
         rails = [{rail_list}]\nprice = {{ usd_cents = {PRICE_USD_CENTS} }}\n\
         identity_header = \"{IDENTITY_HEADER}\"\n",
        listen = args.listen,
        d = dir.display(),
    );
    let proxy_path = dir.join("pay402.toml");
    std::fs::write(&proxy_path, &proxy_toml)
        .map_err(|e| format!("{}: {e}", proxy_path.display()))?;
    let config = Config::parse(&proxy_path, &proxy_toml)?;
    let running = crate::run::build(&config).await?;

    // Fund the dev wallet on the ledger.
    let rest = running
        .lightning_rest
        .ok_or("the simnet wallet's REST API did not start")?;
    let ledger = running
        .bitreq
        .clone()
        .ok_or("the BitRequests ledger did not start")?;
    let wallet = pay402_client::bitreq::Wallet::from_seed_hex(
        &seed,
        pay402_client::bitreq::WalletConfig::new(pay402_server::bitreq::bitcoin::Network::Regtest),
        Arc::new(crate::nochain::NoChain),
    )?;
    ledger
        .open_account(DEV_USER, &wallet.transfer_public_key()?)
        .await?;
    ledger
        .credit(DEV_USER, Sat(LEDGER_SATS), "pay402-dev-funding")
        .await?;

    let d = dir.display();
    let fetch_toml = format!(
        "# pay402 dev: the dev wallet, for pay402 fetch (generated)\n\n\
         max = \"0.05usd\"\nusd_cents_per_btc = {USD_CENTS_PER_BTC}\n\n\
         [lightning]\nkind = \"simnet-rest\"\nurl = \"http://{rest}\"\n\n\
         {fetch_x402}\
         [bitrequests]\nseed_file = \"{d}/bitreq.seed\"\nusername = \"{DEV_USER}\"\nnetwork = \"regtest\"\n"
    );
    let fetch_path = dir.join("fetch.toml");
    std::fs::write(&fetch_path, fetch_toml)
        .map_err(|e| format!("{}: {e}", fetch_path.display()))?;

    let banner = move |addr: SocketAddr| {
        println!(
            "{}",
            banner(
                addr,
                upstream,
                rest,
                &fetch_path,
                &rails,
                usdc_address,
                anvil
            )
        );
    };
    crate::run::serve_built(
        config,
        running,
        metrics,
        crate::run::shutdown_signal(),
        banner,
    )
    .await
}

/// What `pay402 dev` prints once the proxy listens.
fn banner(
    addr: SocketAddr,
    upstream: SocketAddr,
    rest: SocketAddr,
    fetch: &Path,
    rails: &[&str],
    usdc: Option<alloy_primitives::Address>,
    anvil: Option<&Anvil>,
) -> String {
    let url = format!("http://{addr}");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pay402 dev: a paid API at {url}{PAID_PATH} ({PRICE_USD_CENTS} US cent a request), free at {url}/free/hello"
    );
    let _ = writeln!(s, "  upstream      http://{upstream} (an example API)");
    let _ = writeln!(
        s,
        "  l402          simnet Lightning; the dev wallet's LND REST API at http://{rest} ({WALLET_SATS} sat)"
    );
    let _ = writeln!(
        s,
        "  mpp           the Payment scheme's lightning/charge, paid from the same simnet wallet"
    );
    match (anvil, usdc) {
        (Some(a), Some(usdc)) => {
            let _ = writeln!(
                s,
                "  x402          anvil (pid {}) at {}, USDC at {usdc}; the dev wallet holds {} USDC",
                a.pid(),
                a.rpc_url(),
                WALLET_USDC_UNITS / 1_000_000
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "  x402          off (--peers off, or --peers auto with anvil not installed)"
            );
        }
    }
    let _ = writeln!(
        s,
        "  bitreq        the merchant's ledger; the dev wallet's account \"{DEV_USER}\" holds {LEDGER_SATS} sat"
    );
    let _ = writeln!(
        s,
        "  config        {}",
        fetch.with_file_name("pay402.toml").display()
    );
    let _ = writeln!(
        s,
        "\nTry it (each pays through one rail; nothing here is money):"
    );
    let _ = writeln!(s, "  curl -i {url}{PAID_PATH}");
    for rail in rails {
        let _ = writeln!(
            s,
            "  pay402 fetch --config {} --rail {rail} {url}{PAID_PATH}",
            fetch.display()
        );
    }
    let _ = writeln!(
        s,
        "  pay402 fetch --config {} --quote {url}{PAID_PATH}",
        fetch.display()
    );
    let _ = write!(s, "\nCtrl-C stops it.");
    s
}

/// Writes `text` to a new owner-only file.
fn write_private(path: &Path, text: &str) -> Result<(), StartError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// The example upstream: a free greeting and a paid joke that names what
/// paid for it (the proxy's identity header).
async fn start_upstream() -> Result<SocketAddr, StartError> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/free/hello",
            get(|| async { "hello from the pay402 dev upstream (free)\n" }),
        )
        .route(
            PAID_PATH,
            get(|headers: http::HeaderMap| async move {
                let paid = headers
                    .get(IDENTITY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nothing")
                    .to_owned();
                axum::Json(serde_json::json!({
                    "joke": "A satoshi walks into a bar. The bartender says: we don't serve fractions here.",
                    "paid_with": paid,
                }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
