//! Pays for a URL with x402 (an EIP-3009 USDC transfer authorization) and
//! prints the receipt.
//!
//! `PAY402_X402_KEY=0x… cargo run --features x402 --example x402_client -- <url>`
//!
//! Nothing is paid beyond the allowed asset and cap: the client refuses
//! unknown assets, and any requirement above `PAY402_X402_MAX_PRICE`.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_X402_KEY` | (required) | the payer's private key, hex (never logged) |
//! | `PAY402_X402_NETWORK` | `eip155:31337` | the network of the allowed asset (CAIP-2 or v1 name) |
//! | `PAY402_X402_ASSET` | USDC on Base Sepolia, or `0xe7f1…0512` on 31337 | the token contract to pay with |
//! | `PAY402_X402_MAX_PRICE` | `10000` | most one payment may be, in the token's base units (10000 = 0.01 USDC) |
//! | `PAY402_X402_TIMEOUT_SECS` | `30` | timeout of each HTTP attempt |

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pay402_client::x402::{LocalSigner, X402Client, X402Error};
use pay402_core::problem::Reason;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_examples::{env_or, ms};

const HELP: &str = "\
x402_client <url>: pay for a URL with x402 and print the receipt

environment:
  PAY402_X402_KEY           payer private key, hex               (required)
  PAY402_X402_NETWORK       network of the allowed asset         (default eip155:31337)
  PAY402_X402_ASSET         token contract allowed for payment   (default: USDC on the network,
                            0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512 on a fresh anvil)
  PAY402_X402_MAX_PRICE     max per payment, token base units    (default 10000 = 0.01 USDC)
  PAY402_X402_TIMEOUT_SECS  timeout of each HTTP attempt         (default 30)
";

/// The token a fresh anvil gets when `pay402_testkit` deploys USDC first.
const ANVIL_USDC: &str = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first().filter(|a| !a.starts_with('-')) else {
        println!("{HELP}");
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

fn default_asset(network: &str) -> &'static str {
    match network {
        "eip155:8453" | "base" => "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "eip155:84532" | "base-sepolia" => "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        _ => ANVIL_USDC,
    }
}

async fn run(url: &str) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let key = std::env::var("PAY402_X402_KEY")
        .map_err(|_| "PAY402_X402_KEY is not set (the payer's private key, hex)")?;
    let signer = Arc::new(LocalSigner::from_hex(&key)?);
    drop(key);
    let network = env_or("PAY402_X402_NETWORK", "eip155:31337");
    let asset: EvmAddress = env_or("PAY402_X402_ASSET", default_asset(&network))
        .parse()
        .map_err(|e| format!("PAY402_X402_ASSET: {e}"))?;
    let max = TokenAmount::parse(&env_or("PAY402_X402_MAX_PRICE", "10000"))
        .map_err(|e| format!("PAY402_X402_MAX_PRICE: {e} (an integer in base units)"))?;
    let timeout: u64 = env_or("PAY402_X402_TIMEOUT_SECS", "30")
        .parse()
        .map_err(|e| format!("PAY402_X402_TIMEOUT_SECS: {e}"))?;

    let client = X402Client::builder(signer)
        .without_default_assets()
        .allow_asset(&network, asset, max)
        .timeout(Duration::from_secs(timeout))
        .build();
    println!("payer   {}", client.address());
    println!("allowed {asset} on {network}, at most {max} base units per payment");

    match client.get(url).await {
        Ok(paid) => {
            let status = paid.status();
            match &paid.receipt {
                None => println!("status  {status} (no payment asked)"),
                Some(r) => {
                    println!("status  {status}");
                    println!(
                        "paid    {} of {} to {}",
                        r.payment.amount, r.payment.asset, r.payment.pay_to
                    );
                    println!(
                        "network {} (chain {}), x402 v{}",
                        r.payment.network, r.payment.chain_id, r.payment.x402_version
                    );
                    println!("nonce   {}", r.payment.nonce);
                    println!(
                        "settled {} tx {}",
                        r.settled(),
                        r.transaction().unwrap_or("-")
                    );
                    println!("took    {} in {} attempt(s)", ms(r.elapsed), r.attempts);
                }
            }
            let body = paid.into_response().text().await?;
            println!("\n{body}");
            Ok(if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("not paid: {} ({})", e, e.reason());
            if e.may_have_paid() {
                if let Some(p) = e.payment() {
                    eprintln!(
                        "the payment may still settle: check authorizationState({}, {}) on {}; do not pay again blindly",
                        p.payer, p.nonce, p.network
                    );
                }
            } else if matches!(
                e,
                X402Error::AssetNotAllowed { .. } | X402Error::PriceAboveMax { .. }
            ) {
                eprintln!(
                    "nothing was signed; adjust PAY402_X402_ASSET / PAY402_X402_MAX_PRICE to accept it"
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
