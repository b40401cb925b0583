//! Pays for a URL with MPP (`Payment` HTTP authentication, `lightning`/`charge`)
//! and prints what it paid and the server's `Payment-Receipt`.
//!
//! `cargo run --example mpp_client [-- <url>]`
//!
//! By default it pays `GET http://127.0.0.1:8402/hello` — what
//! `cargo run --example mpp_server` serves — through the LND-compatible REST
//! API of the simnet wallet that server starts (`127.0.0.1:8403`). The payer
//! decodes the invoice and budgets on its own amount (refusing a challenge
//! whose declared `amount` differs), refuses expired challenges, echoes the
//! challenge unchanged, and treats a 5xx after paying as "outcome unknown"
//! (never a reason to pay again).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_URL` | `http://127.0.0.1:8402/hello` | the URL (or the first argument) |
//! | `PAY402_SIMNET_LISTEN` | `127.0.0.1:8403` | simnet wallet REST address |
//! | `PAY402_MAX_PRICE_SAT` | `1000` | refuse to pay more than this per request |
//! | `PAY402_MAX_FEE_SAT` | `10` | routing fee limit |
//! | `PAY402_NETWORK` | `regtest` | `bitcoin`, `signet`, `regtest` |
//! | `PAY402_JOURNAL` | the default journal file | `memory` for none |

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pay402_backends::lnd::{LndConfig, LndRest};
use pay402_client::mpp::MppClient;
use pay402_client::{L402Client, Payer, RailReceipt};
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_examples::{env_or, parse_network};

const HELP: &str = "\
mpp_client [url]: pay for a URL with MPP (lightning/charge) and print what was paid

environment:
  PAY402_URL             the URL                           (default http://127.0.0.1:8402/hello)
  PAY402_SIMNET_LISTEN   simnet wallet LND REST address    (default 127.0.0.1:8403)
  PAY402_MAX_PRICE_SAT   maximum price per request         (default 1000)
  PAY402_MAX_FEE_SAT     maximum routing fee               (default 10)
  PAY402_NETWORK         bitcoin | signet | regtest        (default regtest)
  PAY402_JOURNAL         memory, or the default journal file
";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| env_or("PAY402_URL", "http://127.0.0.1:8402/hello"));
    pay402_examples::init_tracing();
    match run(&url).await {
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
    let network = parse_network(&env_or("PAY402_NETWORK", "regtest"))?;
    let listen = env_or("PAY402_SIMNET_LISTEN", "127.0.0.1:8403");
    let node = LndRest::new(LndConfig {
        url: format!("http://{listen}").parse()?,
        macaroon_hex: None,
        tls_cert_pem: None,
        network,
        timeout: Duration::from_secs(30),
    })?;
    println!("paying through simnet's LND REST API at http://{listen}");
    let lightning = L402Client::builder(Arc::new(node))
        .network(network)
        .max_price(Sat(max_price).to_msat().ok_or("max price overflows")?)
        .max_fee(Sat(max_fee).to_msat().ok_or("max fee overflows")?);
    let payer = Payer::builder()
        .mpp(MppClient::builder().lightning_client(lightning))
        .max_price(Amount::Sat(Sat(max_price)))
        .build()
        .await?;
    match payer.get(url).await {
        Ok(paid) => {
            match &paid.receipt {
                Some(r) => {
                    println!("paid {} through {} ({})", r.amount, r.rail, r.offer);
                    if let Some(RailReceipt::Mpp(m)) = &r.rail_receipt {
                        println!(
                            "challenge {} ({}), payment hash {}",
                            m.challenge_id, m.kind, m.reference
                        );
                        match (&m.receipt, &m.receipt_error) {
                            (Some(receipt), _) => println!(
                                "Payment-Receipt: {} {} at {}",
                                receipt.status, receipt.reference, receipt.timestamp
                            ),
                            (None, Some(e)) => println!("unreadable Payment-Receipt: {e}"),
                            (None, None) => println!("no Payment-Receipt"),
                        }
                    }
                }
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
                eprintln!(
                    "  {} ({:?}): {} — {}",
                    r.offer,
                    r.amount,
                    r.reason.reason(),
                    r.reason
                );
            }
            if e.may_have_paid() {
                eprintln!(
                    "the payment may have been made: the same request resumes it, never pays twice"
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
