//! One paywall, every rail: `GET /report` costs 1 US cent, payable with
//! L402 (Lightning), x402 (USDC) or 21 BitRequests, all offered in one 402.
//!
//! `cargo run --example paywall_server`
//!
//! With no settings it offers L402 alone, on an in-process Lightning network
//! (simnet) whose funded `wallet` node answers LND's REST API on
//! `PAY402_SIMNET_LISTEN`, so `cargo run --example l402_client --
//! http://127.0.0.1:8402/report` pays it. x402 joins when a facilitator is
//! given (`cargo run --example x402_facilitator` runs one), BitRequests when
//! a bitcoin node is:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_LISTEN` | `127.0.0.1:8402` | the API's address |
//! | `PAY402_PRICE_CENTS` | `1` | the price of `/report`, in US cents |
//! | `PAY402_USD_PER_BTC` | `100000` | the bitcoin price the cents are converted with (L402, BitRequests) |
//! | `PAY402_DB` | `pay402-paywall` | SQLite file prefix (`-keys`, `-x402`, `-bitreq`), `:memory:` for none |
//! | `PAY402_LIGHTNING` | `simnet` | `simnet`, `lnd`, `cln`, `lnbits` or `ldk` (see `l402_server --help`) |
//! | `PAY402_SIMNET_LISTEN` | `127.0.0.1:8403` | simnet wallet's LND REST face |
//! | `PAY402_X402_FACILITATOR_URL` | (off) | x402 on: the facilitator settling payments |
//! | `PAY402_X402_PAY_TO` | required with x402 | who receives the USDC |
//! | `PAY402_X402_NETWORK` | `eip155:84532` | the CAIP-2 network |
//! | `PAY402_X402_ASSET` | Base Sepolia USDC | the token contract (a USD stablecoin, 6 decimals) |
//! | `PAY402_X402_ASSET_NAME` / `_VERSION` | `USDC` / `2` | the token's EIP-712 domain |
//! | `BITCOIND_RPC_URL` (+ `_USER`, `_PASSWORD` or `_COOKIE`) | (off) | BitRequests on: the node |
//! | `PAY402_USERNAME` | `merchant` | the BitRequests ledger's merchant account |
//! | `PAY402_XPUB` | (off) | BitRequests on-chain: a fresh address per 402 |

// Without the x402 or bitreq feature, their settings and rails are compiled out.
#![cfg_attr(
    not(all(feature = "x402", feature = "bitreq")),
    allow(unused_mut, dead_code)
)]

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use pay402_core::rates::FixedRates;
use pay402_examples::{env_or, var};
use pay402_server::paywall::{Paid, Paywall, PaywallPrice};
use pay402_server::store::{RootKeyStore, SqliteStore};

const HELP: &str = "\
paywall_server: GET /report for 1 US cent, by L402, x402 or BitRequests, in one 402

environment (see the table at the top of examples/paywall_server.rs):
  PAY402_LISTEN PAY402_PRICE_CENTS PAY402_USD_PER_BTC PAY402_DB
  PAY402_LIGHTNING PAY402_SIMNET_LISTEN                       L402 (always on)
  PAY402_X402_FACILITATOR_URL PAY402_X402_PAY_TO PAY402_X402_NETWORK
  PAY402_X402_ASSET PAY402_X402_ASSET_NAME PAY402_X402_ASSET_VERSION   x402 (on with a facilitator)
  BITCOIND_RPC_URL BITCOIND_RPC_USER BITCOIND_RPC_PASSWORD PAY402_USERNAME PAY402_XPUB
                                                              BitRequests (on with a node)
";

/// The SQLite file of one store (`None`: in memory).
fn db(prefix: &str, part: &str) -> Option<String> {
    (prefix != ":memory:").then(|| format!("{prefix}-{part}.sqlite"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return Ok(());
    }
    pay402_examples::init_tracing();
    let listen = env_or("PAY402_LISTEN", "127.0.0.1:8402");
    let cents: u64 = env_or("PAY402_PRICE_CENTS", "1").parse()?;
    let usd_per_btc: u64 = env_or("PAY402_USD_PER_BTC", "100000").parse()?;
    let prefix = env_or("PAY402_DB", "pay402-paywall");
    let mut rates = FixedRates::new().usd_cents_per_btc(usd_per_btc.saturating_mul(100));

    // L402: invoices from simnet (or a real node), root keys in SQLite.
    let invoices = pay402_examples::Invoices::from_env("L402: ").await?;
    let keys: Arc<dyn RootKeyStore> = match db(&prefix, "keys") {
        Some(file) => Arc::new(SqliteStore::open(&file).await?),
        None => Arc::new(SqliteStore::in_memory().await?),
    };
    let mut builder = Paywall::builder().l402(invoices.issuer.clone(), keys);

    // x402: a remote facilitator settles; payments recorded in SQLite.
    #[cfg(feature = "x402")]
    if let Some(url) = var("PAY402_X402_FACILITATOR_URL") {
        use pay402_server::paywall::X402Asset;
        use pay402_server::x402::store::{MemoryPaymentStore, PaymentStore, SqlitePaymentStore};
        use pay402_server::x402::{X402Config, X402Layer};
        let facilitator = pay402_backends::x402::RemoteFacilitator::builder(&url).build()?;
        let pay_to = var("PAY402_X402_PAY_TO").ok_or("x402 needs PAY402_X402_PAY_TO")?;
        let network = env_or("PAY402_X402_NETWORK", "eip155:84532");
        let address = env_or(
            "PAY402_X402_ASSET",
            "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        );
        let asset = X402Asset::usdc(&network, address.parse()?).eip712(
            env_or("PAY402_X402_ASSET_NAME", "USDC"),
            env_or("PAY402_X402_ASSET_VERSION", "2"),
        );
        rates = rates.usd_stablecoin(asset.unit());
        let store: Arc<dyn PaymentStore> = match db(&prefix, "x402") {
            Some(file) => Arc::new(SqlitePaymentStore::open(&file).await?),
            None => Arc::new(MemoryPaymentStore::new()),
        };
        let layer = X402Layer::new(X402Config::new(), Arc::new(facilitator), store);
        println!("x402: USDC {address} on {network} to {pay_to}, settled by {url}");
        builder = builder.x402_layer(layer, pay_to.parse()?, asset);
    } else {
        println!("x402: off (set PAY402_X402_FACILITATOR_URL and PAY402_X402_PAY_TO)");
    }

    // BitRequests: the merchant's ledger, and on-chain with an xpub.
    #[cfg(feature = "bitreq")]
    let mut bitreq = None;
    #[cfg(feature = "bitreq")]
    if var("BITCOIND_RPC_URL").is_some() {
        use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
        use pay402_server::bitreq::store::SqliteBitreqStore;
        use pay402_server::bitreq::{BitreqConfig, BitreqServer, OnChainConfig, TransferConfig};
        let rpc = BitcoindRpc::new(BitcoindConfig::from_env()?)?;
        let mut config = BitreqConfig::new(pay402_server::bitreq::bitcoin::Network::Regtest)
            .public_url(format!("http://{listen}"))
            .transfer(TransferConfig::new(env_or("PAY402_USERNAME", "merchant")));
        if let Some(xpub) = var("PAY402_XPUB") {
            let xpub: pay402_server::bitreq::bitcoin::bip32::Xpub = xpub.trim().parse()?;
            config = config.onchain(OnChainConfig::derived(xpub));
        }
        let store = Arc::new(match db(&prefix, "bitreq") {
            Some(file) => SqliteBitreqStore::open(&file).await?,
            None => SqliteBitreqStore::in_memory().await?,
        });
        let server = BitreqServer::new(config, Arc::new(rpc), store)?;
        println!(
            "BitRequests: ledger account {}",
            server
                .config()
                .transfer
                .as_ref()
                .map_or("", |t| t.username.as_str())
        );
        builder = builder.bitreq(server.clone());
        bitreq = Some(server);
    } else {
        println!("BitRequests: off (set BITCOIND_RPC_URL and its credentials)");
    }

    let paywall = builder.rates(Arc::new(rates)).build()?;
    let price = paywall.try_price(PaywallPrice::usd_cents(cents))?;
    #[allow(unused_mut)]
    let mut app = Router::new()
        .route(
            "/report",
            get(|paid: Paid| async move {
                format!(
                    "the report, paid {} with {} (receipt {})\n",
                    paid.amount, paid.rail, paid.receipt
                )
            })
            .route_layer(price),
        )
        .route("/health", get(|| async { "ok\n" }));
    #[cfg(feature = "bitreq")]
    if let Some(server) = bitreq {
        app = app.merge(server.channel_router());
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let rails: Vec<&str> = paywall.rails().iter().map(|r| r.as_str()).collect();
    println!(
        "paywall: http://{}/report ({cents} US cent(s)) on {}",
        listener.local_addr()?,
        rails.join(", ")
    );
    axum::serve(listener, app).await?;
    invoices.stop()?;
    Ok(())
}
