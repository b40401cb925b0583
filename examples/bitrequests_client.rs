//! Pays for a URL with 21 BitRequests (on-chain, bit-transfer or payment
//! channel) from a BIP32 wallet and prints what it paid.
//!
//! `cargo run --example bitrequests_client --features bitreq -- <url>`
//! `cargo run --example bitrequests_client --features bitreq -- --address`
//! (prints a receive address to fund and the wallet's balance)
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_WALLET_SEED` | required | the wallet seed, 32 to 128 hex digits (keep it secret) |
//! | `PAY402_BITREQ_METHOD` | `onchain` | `onchain`, `transfer` or `channel` |
//! | `PAY402_BITREQ_USERNAME` | required for `transfer` | the payer's ledger account |
//! | `PAY402_NETWORK` | `regtest` | `bitcoin`, `testnet`, `signet`, `regtest` |
//! | `PAY402_CHAIN` | `bitcoind` | `bitcoind` (`BITCOIND_RPC_*`) or `esplora` (`ESPLORA_URL`) |
//! | `PAY402_MAX_PRICE_SAT` | `10000` | refuse to pay more per request; `0` = free only |
//! | `PAY402_HTTP_METHOD` | `GET` | for POST/PUT/DELETE/PATCH the price is first read with an unpaid GET, then the request is sent once, paid |
//! | `PAY402_BODY` | empty | request body |
//! | `PAY402_CHANNEL_DEPOSIT_SAT` | `100000` | deposit of a new channel |
//! | `PAY402_CHANNEL_FEE_SAT` | `125000` | channel fee; must equal the server's |
//! | `PAY402_CHANNEL_CLOSE` | `0` | `1`: close the channel after paying |

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_backends::esplora::{Esplora, EsploraConfig};
use pay402_client::bitreq::{
    BitRequests, BitRequestsBuilder, BitRequestsError, ChannelConfig, ClientState, RequestOptions,
    Wallet, WalletConfig,
};
use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use pay402_examples::env_or;
use pay402_server::bitreq::bitcoin::Network;

const HELP: &str = "\
bitrequests_client <url>: pay for a URL with 21 BitRequests and print what was paid
bitrequests_client --address: print a receive address to fund and the wallet's balance

environment:
  PAY402_WALLET_SEED          wallet seed, 32-128 hex digits (required; keep it secret)
  PAY402_BITREQ_METHOD        onchain | transfer | channel        (default onchain)
  PAY402_BITREQ_USERNAME      payer's ledger account (transfer)
  PAY402_NETWORK              bitcoin | testnet | signet | regtest (default regtest)
  PAY402_CHAIN                bitcoind | esplora                  (default bitcoind)
    bitcoind: BITCOIND_RPC_URL, BITCOIND_RPC_USER, BITCOIND_RPC_PASSWORD or BITCOIND_RPC_COOKIE
    esplora:  ESPLORA_URL
  PAY402_MAX_PRICE_SAT        maximum price per request, 0 = free only (default 10000)
  PAY402_HTTP_METHOD          GET | HEAD | POST | PUT | DELETE | PATCH (default GET);
                              other than GET/HEAD: priced by an unpaid GET first, then sent once, paid
  PAY402_BODY                 request body (default empty)
  PAY402_CHANNEL_DEPOSIT_SAT  deposit of a new channel            (default 100000)
  PAY402_CHANNEL_FEE_SAT      channel fee, must equal the server's (default 125000)
  PAY402_CHANNEL_CLOSE        1: close the channel after paying   (default 0)
";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let address_only = args.iter().any(|a| a == "--address");
    let url = args.iter().find(|a| !a.starts_with('-'));
    if url.is_none() && !address_only {
        println!("{HELP}");
        return if args.iter().any(|a| a == "--help" || a == "-h") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    pay402_examples::init_tracing();
    match run(url.map(String::as_str)).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_network(s: &str) -> Result<Network, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "bitcoin" | "mainnet" => Ok(Network::Bitcoin),
        "testnet" => Ok(Network::Testnet),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        other => Err(format!(
            "PAY402_NETWORK {other:?}: expected bitcoin, testnet, signet or regtest"
        )),
    }
}

fn sat_var(name: &str, default: &str) -> Result<Sat, String> {
    env_or(name, default)
        .trim()
        .parse::<u64>()
        .map(Sat)
        .map_err(|_| format!("{name}: expected a whole number of satoshis"))
}

async fn run(url: Option<&str>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let network = parse_network(&env_or("PAY402_NETWORK", "regtest"))?;
    let chain: Arc<dyn BitcoinChain> = match env_or("PAY402_CHAIN", "bitcoind").as_str() {
        "bitcoind" => Arc::new(BitcoindRpc::new(BitcoindConfig::from_env()?)?),
        "esplora" => Arc::new(Esplora::new(EsploraConfig::from_env()?)?),
        other => {
            return Err(format!("PAY402_CHAIN {other:?}: expected bitcoind or esplora").into());
        }
    };
    let seed = std::env::var("PAY402_WALLET_SEED")
        .map_err(|_| "set PAY402_WALLET_SEED to 32-128 hex digits (e.g. `openssl rand -hex 32`)")?;
    let wallet = Arc::new(Wallet::from_seed_hex(
        &seed,
        WalletConfig::new(network),
        chain,
    )?);
    drop(seed);

    let balance = wallet.sync().await?;
    let Some(url) = url else {
        println!("fund this address: {}", wallet.receive_address().await?);
        println!(
            "balance: {} confirmed, {} unconfirmed, {} locked",
            balance.confirmed, balance.unconfirmed, balance.locked
        );
        return Ok(ExitCode::SUCCESS);
    };

    let method = env_or("PAY402_BITREQ_METHOD", "onchain");
    let builder: BitRequestsBuilder = match method.as_str() {
        "onchain" => BitRequests::on_chain(Arc::clone(&wallet)),
        "transfer" => {
            let user = std::env::var("PAY402_BITREQ_USERNAME")
                .map_err(|_| "set PAY402_BITREQ_USERNAME for transfer payments")?;
            println!(
                "transfer key of {user}: {} (the ledger account must be opened with it)",
                wallet.transfer_public_key()?
            );
            BitRequests::bit_transfer(Arc::clone(&wallet), user)
        }
        "channel" => {
            let mut cc = ChannelConfig::default();
            cc.deposit = sat_var("PAY402_CHANNEL_DEPOSIT_SAT", "100000")?;
            cc.channel_fee = sat_var("PAY402_CHANNEL_FEE_SAT", "125000")?;
            // Wait for the deposit to confirm instead of failing at once.
            cc.deposit_wait = Duration::from_secs(30 * 60);
            BitRequests::channel(Arc::clone(&wallet)).channel_config(cc)
        }
        other => {
            return Err(format!(
                "PAY402_BITREQ_METHOD {other:?}: expected onchain, transfer or channel"
            )
            .into());
        }
    };
    let client = builder
        .max_price(sat_var("PAY402_MAX_PRICE_SAT", "10000")?)
        .build();
    println!(
        "paying {url} by {} (max {}), wallet balance {}",
        client.method(),
        client.max_price(),
        balance.spendable(true)
    );

    let http_method: reqwest::Method = env_or("PAY402_HTTP_METHOD", "GET")
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| "PAY402_HTTP_METHOD is not an HTTP method")?;
    let mut options = RequestOptions::default();
    if !matches!(http_method, reqwest::Method::GET | reqwest::Method::HEAD) {
        match client.get_402_info(url).await? {
            Some(quote) => {
                println!("quoted by an unpaid GET: {}", quote.price);
                options = options.quote(quote);
            }
            None => println!("the GET asked for no payment; sending {http_method} free-only"),
        }
        if options.quote.is_none() {
            options = options.max_price(Sat(0));
        }
    }
    let request = client
        .http()
        .request(http_method, url)
        .body(env_or("PAY402_BODY", ""));
    let result = client.send(request, options).await;
    let code = match result {
        Ok(paid) => {
            match &paid.receipt {
                Some(r) => println!(
                    "paid {} (+{} miner fee) by {}, proof {}",
                    r.amount, r.fee, r.method, r.proof_id
                ),
                None => println!("nothing was paid"),
            }
            let status = paid.status();
            println!("HTTP {status}");
            println!("{}", paid.response.text().await?);
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    };
    if let Some(channels) = client.channels() {
        if env_or("PAY402_CHANNEL_CLOSE", "0") == "1" {
            for ch in channels.channels().await {
                if let Some(txid) = channels.close(ch.server.as_str()).await? {
                    println!("closed the channel with {}: {txid}", ch.server);
                }
            }
        }
        for ch in channels.sync().await? {
            println!(
                "channel {} with {}: {} paid {}, {} left, expires at {}",
                ch.deposit_txid,
                ch.server,
                ch.state.as_str(),
                ch.paid,
                ch.balance,
                ch.expiry
            );
            if ch.state != ClientState::Closed {
                println!(
                    "  refund (broadcast it after the expiry if the server disappears): {}",
                    pay402_server::bitreq::bitcoin::consensus::encode::serialize_hex(&ch.refund_tx)
                );
            }
        }
    }
    Ok(code)
}

fn report(e: &BitRequestsError) {
    eprintln!("error ({}): {e}", e.reason());
    if let Some(r) = e.receipt() {
        eprintln!(
            "payment made: {} by {}, proof {} (money {})",
            r.amount,
            r.method,
            r.proof_id,
            if e.may_have_paid() {
                "may have moved"
            } else {
                "did not move"
            }
        );
    }
}
