//! Pays for a URL with L402 and prints what it paid.
//!
//! `cargo run --example l402_client -- <url>`
//!
//! By default it pays through the LND-compatible REST API of the simnet wallet
//! that `cargo run --example l402_server` starts (`http://127.0.0.1:8403`).
//! Point it at a real LND with `PAY402_LIGHTNING=lnd` and the `LND_*` variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_LIGHTNING` | `simnet` | `simnet` (simnet's REST face), `lnd`, `cln`, `lnbits` or `ldk` |
//! | `PAY402_SIMNET_URL` | `http://127.0.0.1:8403` | simnet wallet REST address |
//! | `PAY402_MAX_PRICE_SAT` | `1000` | refuse to pay more than this per request |
//! | `PAY402_MAX_FEE_SAT` | `10` | routing fee limit |
//! | `PAY402_NETWORK` | `regtest` (simnet), else the backend's | `bitcoin`, `testnet`, `signet`, `regtest` |
//!
//! Each backend's settings are listed by `--help` and in docs/backends.md.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pay402_backends::lnd::{LndConfig, LndRest};
use pay402_client::L402Client;
use pay402_core::lightning::{LightningPayer, Network};
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use pay402_examples::{env_or, ms, parse_network, sats};

const HELP: &str = "\
l402_client <url>: pay for a URL with L402 and print what was paid

environment:
  PAY402_LIGHTNING       simnet | lnd | cln | lnbits | ldk (default simnet)
  PAY402_SIMNET_URL      simnet wallet LND REST address   (default http://127.0.0.1:8403)
  PAY402_MAX_PRICE_SAT   maximum price per request        (default 1000)
  PAY402_MAX_FEE_SAT     maximum routing fee              (default 10)
  PAY402_NETWORK         bitcoin | testnet | signet | regtest (default regtest for simnet, else the backend's)
";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first().filter(|a| !a.starts_with('-')) else {
        println!("{HELP}\nbackends:\n{}", pay402_examples::LIGHTNING_ENV_HELP);
        return if args.iter().any(|a| a == "--help" || a == "-h") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    };
    pay402_examples::init_tracing();
    match run(url).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let max_price: u64 = env_or("PAY402_MAX_PRICE_SAT", "1000").parse()?;
    let max_fee: u64 = env_or("PAY402_MAX_FEE_SAT", "10").parse()?;
    let (payer, network): (Arc<dyn LightningPayer>, Network) =
        match env_or("PAY402_LIGHTNING", "simnet").as_str() {
            "simnet" => {
                let network = parse_network(&env_or("PAY402_NETWORK", "regtest"))?;
                let cfg = LndConfig {
                    url: env_or("PAY402_SIMNET_URL", "http://127.0.0.1:8403").parse()?,
                    macaroon_hex: None,
                    tls_cert_pem: None,
                    network,
                    timeout: Duration::from_secs(30),
                };
                println!("paying through simnet's LND REST API at {}", cfg.url);
                (Arc::new(LndRest::new(cfg)?), network)
            }
            other => {
                let ln = pay402_examples::lightning_from_env(other)?;
                println!("paying through {}", ln.describe);
                let network = match std::env::var("PAY402_NETWORK") {
                    Ok(n) => parse_network(&n)?,
                    Err(_) => ln.network,
                };
                (ln.payer, network)
            }
        };
    let client = L402Client::builder(payer)
        .network(network)
        .max_price(Sat(max_price).to_msat().ok_or("max price overflows")?)
        .max_fee(Sat(max_fee).to_msat().ok_or("max fee overflows")?)
        .build();
    match client.get(url).await {
        Ok(paid) => {
            match &paid.receipt {
                Some(r) => println!(
                    "paid {} + {} fee in {} (payment hash {})",
                    sats(r.amount),
                    sats(r.fee),
                    ms(r.paid_in),
                    r.payment_hash
                ),
                None => println!("nothing to pay"),
            }
            let status = paid.status();
            println!("{status}");
            print!("{}", paid.response.text().await?);
            Ok(if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("refused or failed ({}): {e}", e.reason());
            Ok(ExitCode::FAILURE)
        }
    }
}
