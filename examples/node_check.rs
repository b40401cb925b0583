//! Checks a real Lightning node through the same pay402 backend code the
//! server and client use.
//!
//! `PAY402_LIGHTNING=lnd LND_REST_URL=… cargo run --example node_check`
//! creates a 1-sat invoice, looks it up (it must be open and agree with what
//! was asked), and, with `--pay <bolt11>`, pays an invoice and checks the
//! preimage. With `--pair` it checks a payer and a merchant against each
//! other: the merchant from the usual variables, the payer from
//! `PAY402_PAYER_LIGHTNING` and `PAYER_`-prefixed copies of the variables
//! (e.g. `PAYER_CLN_RPC_PATH`); the merchant's invoice is paid by the payer,
//! must then be settled with the payer's preimage, and paying it again must
//! return the same payment. The backend settings are the ones `--help` lists
//! (see also docs/backends.md).

use std::process::ExitCode;
use std::time::Duration;

use pay402_core::lightning::{InvoiceRequest, InvoiceState, PayRequest};
use pay402_core::money::Msat;
use pay402_examples::{env_or, lightning_from_env, ms, sats};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "node_check [--pay <bolt11>] [--pair] [--max-fee-sat N]: check a Lightning node through pay402's backend\n\nbackends:\n{}\n  --pair: the payer from PAY402_PAYER_LIGHTNING and PAYER_-prefixed variables",
            pay402_examples::LIGHTNING_ENV_HELP
        );
        return ExitCode::SUCCESS;
    }
    pay402_examples::init_tracing();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node check FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let kind = env_or("PAY402_LIGHTNING", "lnd");
    let ln = lightning_from_env(&kind)?;
    println!("backend: {} (network {})", ln.describe, ln.network);

    let started = std::time::Instant::now();
    let mut req = InvoiceRequest::new(Msat(1_000), "pay402 node_check");
    req.expiry = Duration::from_secs(600);
    let inv = ln.issuer.create_invoice(&req).await?;
    println!(
        "create_invoice: {} in {}",
        inv.payment_hash,
        ms(started.elapsed())
    );
    let state = ln.issuer.lookup_invoice(&inv.payment_hash).await?;
    println!("lookup_invoice: {state:?}");
    if state != InvoiceState::Open {
        return Err(format!("a new invoice should be open, the node says {state:?}").into());
    }

    let max_fee: u64 = match args.iter().position(|a| a == "--max-fee-sat") {
        Some(j) => args
            .get(j + 1)
            .ok_or("--max-fee-sat needs a number")?
            .parse()?,
        None => 10,
    };
    if args.iter().any(|a| a == "--pair") {
        let kind = env_or("PAY402_PAYER_LIGHTNING", &kind);
        let payer = pay402_examples::lightning_from_vars(&kind, |name| {
            std::env::var(format!("PAYER_{name}")).ok()
        })?;
        println!("payer: {}", payer.describe);
        let req = PayRequest::new(inv.bolt11.as_str(), Msat(max_fee * 1000));
        let started = std::time::Instant::now();
        let paid = payer.payer.pay_invoice(&req).await?;
        if !paid.preimage.matches(&inv.payment_hash) {
            return Err("the payer returned a preimage that does not match the invoice".into());
        }
        println!(
            "pay_invoice: {} + {} fee in {}",
            sats(paid.amount),
            sats(paid.fee),
            ms(started.elapsed())
        );
        match ln.issuer.lookup_invoice(&inv.payment_hash).await? {
            InvoiceState::Settled { preimage, .. } if preimage == paid.preimage => {
                println!("lookup_invoice: settled with the payer's preimage");
            }
            other => {
                return Err(
                    format!("the merchant should report it settled, says {other:?}").into(),
                );
            }
        }
        let again = payer.payer.pay_invoice(&req).await?;
        if again != paid {
            return Err("paying again must return the earlier payment".into());
        }
        println!("pay_invoice again: the earlier payment, nothing paid twice");
        if let Some(node) = payer.ldk {
            node.stop()?;
        }
    }
    if let Some(i) = args.iter().position(|a| a == "--pay") {
        let bolt11 = args.get(i + 1).ok_or("--pay needs an invoice")?;
        let started = std::time::Instant::now();
        let paid = ln
            .payer
            .pay_invoice(&PayRequest::new(bolt11.as_str(), Msat(max_fee * 1000)))
            .await?;
        if !paid.preimage.matches(&paid.payment_hash) {
            return Err("the node returned a preimage that does not match".into());
        }
        println!(
            "pay_invoice: {} + {} fee in {}, preimage checks out",
            sats(paid.amount),
            sats(paid.fee),
            ms(started.elapsed())
        );
    }
    if let Some(node) = ln.ldk {
        node.stop()?;
    }
    println!("node check OK");
    Ok(())
}
