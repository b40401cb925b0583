//! A 21 BitRequests merchant: `GET /report` costs 5 000 sat, payable on-chain,
//! by bit-transfer on the merchant's ledger, or through a payment channel.
//!
//! `cargo run -p pay402-examples --features bitreq --example bitrequests_server`
//!
//! It needs a Bitcoin node with a Bitcoin Core compatible JSON-RPC (bitcoind,
//! or bcoin): the server broadcasts on-chain payments and channel closes and
//! looks up deposits through it. Run `--help` for the settings.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_examples::{env_or, var};
use pay402_server::Price;
use pay402_server::bitreq::bitcoin::bip32::Xpub;
use pay402_server::bitreq::bitcoin::{Address, Network};
use pay402_server::bitreq::store::SqliteBitreqStore;
use pay402_server::bitreq::{
    BitreqConfig, BitreqPayment, BitreqServer, ChannelConfig, MerchantKey, OnChainConfig,
    TransferConfig,
};

const PRICE_SAT: u64 = 5_000;

const HELP: &str = "\
bitrequests_server: a 21 BitRequests merchant (GET /report costs 5000 sat)

Bitcoin node (required; Bitcoin Core JSON-RPC, e.g. bitcoind or bcoin):
  BITCOIND_RPC_URL        RPC endpoint              (default http://127.0.0.1:8332)
  BITCOIND_RPC_USER       RPC user
  BITCOIND_RPC_PASSWORD   RPC password
  BITCOIND_RPC_COOKIE     cookie file, if no user is set
  BITCOIND_TIMEOUT_SECS   per-call timeout          (default 30)

Server:
  PAY402_NETWORK          bitcoin | testnet | signet | regtest   (default regtest)
  PAY402_LISTEN           API address               (default 127.0.0.1:8402)
  PAY402_PUBLIC_URL       public origin for Bitcoin-Payment-Channel-Server
                          (default http://<PAY402_LISTEN>)
  PAY402_DB               SQLite file               (default pay402-bitreq-server.sqlite)

Methods (each enabled when its variable is set):
  PAY402_XPUB             on-chain: account xpub/tpub; a fresh address <xpub>/0/<i> per 402
  PAY402_ADDRESS          on-chain: one fixed address instead (two1 style, not bound to requests)
  PAY402_CONFIRMATIONS    on-chain: confirmations before serving (default 1, at least 1)
  PAY402_ACCEPT_UNCONFIRMED_UP_TO
                          on-chain: serve prices up to this many sat unconfirmed
                          (zero-conf: every such payment can be double-spent; off by default)
  PAY402_USERNAME         bit-transfer: the merchant's ledger username (default merchant)
  PAY402_CHANNEL_KEY      channels: merchant secret key, 64 hex digits
  PAY402_CHANNEL_FEE      channels: payment transaction fee in sat (default 125000, as two1)

Ledger operator API (open and credit payer accounts):
  PAY402_ADMIN_TOKEN      bearer token; the API is off when unset
  PAY402_ADMIN_LISTEN     its address               (default 127.0.0.1:8404)

Example (bcoin or bitcoind on regtest):
  BITCOIND_RPC_URL=http://127.0.0.1:18443 BITCOIND_RPC_USER=u BITCOIND_RPC_PASSWORD=p \\
  PAY402_XPUB=tpub... PAY402_CHANNEL_KEY=$(openssl rand -hex 32) PAY402_ADMIN_TOKEN=$(openssl rand -hex 16) \\
  cargo run -p pay402-examples --features bitreq --example bitrequests_server
";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return Ok(());
    }
    pay402_examples::init_tracing();
    let network = match env_or("PAY402_NETWORK", "regtest").as_str() {
        "bitcoin" | "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        other => return Err(format!("unknown PAY402_NETWORK {other}\n\n{HELP}").into()),
    };
    let listen: SocketAddr = env_or("PAY402_LISTEN", "127.0.0.1:8402").parse()?;
    let public_url = env_or("PAY402_PUBLIC_URL", &format!("http://{listen}"));
    let db = env_or("PAY402_DB", "pay402-bitreq-server.sqlite");

    let rpc = BitcoindRpc::new(
        BitcoindConfig::from_env().map_err(|e| format!("bitcoin node settings: {e}\n\n{HELP}"))?,
    )?;
    let height = rpc
        .block_height()
        .await
        .map_err(|e| format!("cannot reach the bitcoin node: {e}\n\n{HELP}"))?;
    println!("bitcoin node at height {height}");

    let mut config = BitreqConfig::new(network)
        .public_url(&public_url)
        .transfer(TransferConfig::new(env_or("PAY402_USERNAME", "merchant")));
    let confirmations: u32 = env_or("PAY402_CONFIRMATIONS", "1").parse()?;
    let zero_conf_cap: Option<u64> = var("PAY402_ACCEPT_UNCONFIRMED_UP_TO")
        .map(|v| v.trim().parse())
        .transpose()?;
    let onchain = |oc: OnChainConfig| {
        let oc = oc.confirmations(confirmations);
        match zero_conf_cap {
            Some(cap) => {
                println!("on-chain: ZERO-CONF up to {cap} sat (double-spendable)");
                oc.accept_unconfirmed_up_to(Sat(cap))
            }
            None => oc,
        }
    };
    if let Some(xpub) = var("PAY402_XPUB") {
        let xpub = Xpub::from_str(xpub.trim()).map_err(|e| format!("PAY402_XPUB: {e}"))?;
        config = config.onchain(onchain(OnChainConfig::derived(xpub)));
        println!("on-chain: a fresh address per 402 from PAY402_XPUB");
    } else if let Some(address) = var("PAY402_ADDRESS") {
        let address = Address::from_str(address.trim())?.require_network(network)?;
        config = config.onchain(onchain(OnChainConfig::fixed(address)));
        println!("on-chain: fixed address (payments are not bound to requests)");
    } else {
        println!("on-chain: off (set PAY402_XPUB or PAY402_ADDRESS)");
    }
    if let Some(hex_key) = var("PAY402_CHANNEL_KEY") {
        let key =
            MerchantKey::from_hex(&hex_key).map_err(|e| format!("PAY402_CHANNEL_KEY: {e}"))?;
        let fee: u64 = env_or("PAY402_CHANNEL_FEE", "125000").parse()?;
        println!("channels: merchant key {}", key.public_key());
        config = config.channel(ChannelConfig::new(key).fee(Sat(fee)));
    } else {
        println!("channels: off (set PAY402_CHANNEL_KEY)");
    }

    let store = Arc::new(if db == ":memory:" {
        SqliteBitreqStore::in_memory().await?
    } else {
        SqliteBitreqStore::open(&db).await?
    });
    let server = BitreqServer::new(config, Arc::new(rpc), store)?;
    let sync = server.spawn_sync(Duration::from_secs(60));

    let app = Router::new()
        .route(
            "/report",
            get(|paid: BitreqPayment| async move {
                format!(
                    "the report (paid {} sat by {}, {})\n",
                    paid.amount.0,
                    paid.method.as_str(),
                    paid.reference
                )
            })
            .route_layer(server.layer(Price::sats(PRICE_SAT))),
        )
        .route("/health", get(|| async { "ok\n" }))
        .merge(server.channel_router());

    let mut admin_task = None;
    if let Some(token) = var("PAY402_ADMIN_TOKEN") {
        let admin_listen = env_or("PAY402_ADMIN_LISTEN", "127.0.0.1:8404");
        let listener = tokio::net::TcpListener::bind(&admin_listen).await?;
        println!(
            "ledger operator API: http://{}/accounts (Authorization: Bearer $PAY402_ADMIN_TOKEN)",
            listener.local_addr()?
        );
        let admin = server.ledger_router(token)?;
        admin_task = Some(tokio::spawn(
            async move { axum::serve(listener, admin).await },
        ));
    } else {
        println!("ledger operator API: off (set PAY402_ADMIN_TOKEN)");
    }

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "BitRequests API: http://{}/report ({PRICE_SAT} sat), store {db}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    sync.abort();
    if let Some(t) = admin_task {
        t.abort();
    }
    Ok(())
}
