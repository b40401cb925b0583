//! One client for every rail: pays whatever a URL's 402 offers (L402 with
//! a Lightning node, x402 with an EVM key), by policy and within a budget,
//! and records every payment in a journal that survives restarts.
//!
//! `cargo run --example payer -- <url>`, or `-- --journal` to list what
//! was paid.
//!
//! By default it pays L402 through the simnet wallet's LND REST API that
//! `cargo run --example l402_server` starts; give an EVM key to pay x402 too.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_LIGHTNING` | `simnet` | `simnet` (simnet's REST face), `lnd`, `cln`, `lnbits`, `ldk`, or `none` |
//! | `PAY402_SIMNET_URL` | `http://127.0.0.1:8403` | simnet wallet REST address |
//! | `PAY402_NETWORK` | `regtest` | the Lightning network |
//! | `PAY402_EVM_KEY` | unset | an EVM private key (hex): pay x402 offers |
//! | `PAY402_X402_NETWORK`, `PAY402_X402_ASSET` | unset | an x402 token to allow besides USDC on Base (CAIP-2 network, contract; 6 decimals) |
//! | `PAY402_RAILS` | unset (cheapest) | a rail order, e.g. `l402,x402` |
//! | `PAY402_MAX_PRICE_SAT` | `1000` | the most one request may pay, in sat (x402 offers are priced at `PAY402_BTC_USD`) |
//! | `PAY402_BTC_USD` | `100000` | the bitcoin price used to compare and budget USDC offers |
//! | `PAY402_JOURNAL` | `~/.local/share/pay402/journal.sqlite` | the journal file, or `memory` |

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pay402_backends::lnd::{LndConfig, LndRest};
use pay402_client::journal::{Journal, Query};
use pay402_client::{Choice, Payer, PayerBuilder};
use pay402_core::lightning::LightningPayer;
use pay402_core::money::Sat;
use pay402_core::offer::Rail;
use pay402_core::problem::Reason;
use pay402_core::rates::{Amount, FixedRates, Unit};
use pay402_examples::{env_or, parse_network};

const HELP: &str = "\
payer <url>: pay whatever the URL's 402 offers, by policy, and print the receipt
payer --journal: list the payments in the journal

environment:
  PAY402_LIGHTNING       simnet | lnd | cln | lnbits | ldk | none (default simnet)
  PAY402_SIMNET_URL      simnet wallet LND REST address   (default http://127.0.0.1:8403)
  PAY402_NETWORK         the Lightning network            (default regtest)
  PAY402_EVM_KEY         EVM private key (hex) to pay x402 offers
  PAY402_X402_NETWORK    CAIP-2 network of an extra x402 token (6 decimals)
  PAY402_X402_ASSET      its contract address
  PAY402_RAILS           rail order, e.g. l402,x402       (default: the cheapest)
  PAY402_MAX_PRICE_SAT   the most one request may pay     (default 1000)
  PAY402_BTC_USD         bitcoin price for USDC offers    (default 100000)
  PAY402_JOURNAL         journal file, or memory          (default ~/.local/share/pay402/journal.sqlite)
";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    pay402_examples::init_tracing();
    let result = match args.first().map(String::as_str) {
        Some("--journal") => list().await,
        Some(url) if !url.starts_with('-') => run(url).await,
        _ => {
            println!("{HELP}");
            return if args.iter().any(|a| a == "--help" || a == "-h") {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn list() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let journal = Journal::open_default().await?;
    println!("journal: {}", journal.location());
    for p in journal.payments(&Query::default().limit(50)).await? {
        println!(
            "{} {:>9} {:<9} {} {}{} {} ({}) proof {}",
            p.id,
            p.state,
            p.rail,
            p.key.method,
            p.key.origin,
            p.key.target,
            p.amount,
            p.cost.as_deref().unwrap_or("-"),
            p.proof_id.as_deref().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn lightning(b: PayerBuilder) -> Result<PayerBuilder, Box<dyn std::error::Error>> {
    let network = parse_network(&env_or("PAY402_NETWORK", "regtest"))?;
    let payer: Arc<dyn LightningPayer> = match env_or("PAY402_LIGHTNING", "simnet").as_str() {
        "none" => return Ok(b),
        "simnet" => {
            let url = env_or("PAY402_SIMNET_URL", "http://127.0.0.1:8403").parse()?;
            let mut cfg = LndConfig::new(url, network);
            cfg.timeout = Duration::from_secs(30);
            Arc::new(LndRest::new(cfg)?)
        }
        other => pay402_examples::lightning_from_env(other)?.payer,
    };
    Ok(b.lightning(payer, network))
}

#[cfg(feature = "x402")]
fn x402(
    mut b: PayerBuilder,
    rates: FixedRates,
) -> Result<(PayerBuilder, FixedRates), Box<dyn std::error::Error>> {
    use pay402_client::x402::{LocalSigner, X402Client};
    use pay402_core::offer::{KNOWN_TOKENS, known_token};
    use pay402_core::rates::TokenUnit;
    use pay402_core::x402::TokenAmount;
    let Ok(key) = std::env::var("PAY402_EVM_KEY") else {
        return Ok((b, rates));
    };
    let signer = Arc::new(LocalSigner::from_hex(&key)?);
    let mut client = X402Client::builder(signer);
    let mut tokens: Vec<TokenUnit> = KNOWN_TOKENS
        .iter()
        .filter_map(|(n, a)| known_token(n, a))
        .collect();
    if let (Ok(network), Ok(asset)) = (
        std::env::var("PAY402_X402_NETWORK"),
        std::env::var("PAY402_X402_ASSET"),
    ) {
        // Up to 1 USDC per payment, like the known tokens.
        client = client.allow_asset(&network, asset.parse()?, TokenAmount::from_u64(1_000_000));
        tokens.push(TokenUnit::new(network, asset, 6));
    }
    let mut rates = rates;
    for t in tokens {
        b = b.token(t.clone());
        rates = rates.usd_stablecoin(t);
    }
    Ok((b.x402(client), rates))
}

#[cfg(not(feature = "x402"))]
fn x402(
    b: PayerBuilder,
    rates: FixedRates,
) -> Result<(PayerBuilder, FixedRates), Box<dyn std::error::Error>> {
    Ok((b, rates))
}

async fn run(url: &str) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let max_price: u64 = env_or("PAY402_MAX_PRICE_SAT", "1000").parse()?;
    let btc_usd: u64 = env_or("PAY402_BTC_USD", "100000").parse()?;
    let rates = FixedRates::new().usd_cents_per_btc(btc_usd.saturating_mul(100));
    let (b, rates) = x402(lightning(Payer::builder())?, rates)?;
    let choice = match std::env::var("PAY402_RAILS") {
        Ok(order) => Choice::RailOrder(
            order
                .split(',')
                .map(|r| Rail::from_name(r.trim()).ok_or(format!("unknown rail {r:?}")))
                .collect::<Result<_, _>>()?,
        ),
        Err(_) => Choice::Cheapest,
    };
    let payer = b
        .rates(rates)
        .reference_unit(Unit::Sat)
        .max_price(Amount::Sat(Sat(max_price)))
        .choose(choice)
        .build()
        .await?;
    println!(
        "paying with {:?}; journal at {}",
        payer.rails(),
        payer.journal().location()
    );
    match payer.get(url).await {
        Ok(paid) => {
            match &paid.receipt {
                Some(r) => println!(
                    "paid {} ({}) with {} [{}]; proof {}; journal entry {}{}",
                    r.amount,
                    r.cost.as_ref().map_or("-".into(), ToString::to_string),
                    r.rail,
                    r.offer,
                    r.proof_id,
                    r.entry,
                    if r.resumed { " (resumed)" } else { "" }
                ),
                None if paid.reused_credential => println!("paid earlier: token reused"),
                None => println!("nothing to pay"),
            }
            let status = paid.status();
            println!("{status}");
            print!("{}", paid.text().await?);
            Ok(if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("refused or failed ({}): {e}", e.reason());
            for r in e.refusals() {
                eprintln!("  {}: {} ({})", r.offer, r.reason, r.reason.reason());
            }
            if e.may_have_paid() {
                eprintln!("  you may have paid: run again to resume, never pay again");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
