//! The pay402 demo: an L402 paywall and a paying client in one process, on
//! embedded defaults (simnet Lightning network, in-memory SQLite key store).
//!
//! `cargo run --example demo`
//!
//! 1. GET /hello without paying → 402 with an L402 challenge;
//! 2. GET /hello through pay402-client → it pays the invoice and retries → 200;
//! 3. GET /hello again → the cached token is reused → 200, nothing paid.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::get;
use pay402_backends::simnet::SimNet;
use pay402_client::L402Client;
use pay402_core::lightning::Network;
use pay402_core::money::{Msat, Sat};
use pay402_examples::{abbreviate_challenge, ms, sats};
use pay402_server::store::SqliteStore;
use pay402_server::{L402Config, L402Layer, PaidToken, Price};

const PRICE: Sat = Sat(100);

#[tokio::main]
async fn main() -> ExitCode {
    pay402_examples::init_tracing();
    match run().await {
        Ok(()) => {
            println!("\ndemo finished OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    println!("pay402 demo: L402 on simnet (an in-process Lightning network), no external node\n");

    // The Lightning network: a merchant node and a funded payer node.
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Sat(1_000_000).to_msat().ok_or("overflow")?);
    println!("[setup] merchant node {}", merchant.node_id());
    println!(
        "[setup] payer node    {} with {}",
        payer.node_id(),
        sats(payer.balance())
    );

    // The server: one paid route behind the L402 layer.
    let store = SqliteStore::in_memory().await?;
    let paywall = L402Layer::new(
        L402Config::new("hello-api").token_lifetime(std::time::Duration::from_secs(3600)),
        Arc::new(merchant.clone()),
        Arc::new(store),
    );
    let app = Router::new().route(
        "/hello",
        get(|PaidToken(token): PaidToken| async move {
            format!(
                "hello, paid world (token {})",
                &token.token_id.to_hex()[..12]
            )
        })
        .route_layer(paywall.with_price(Price::sats(PRICE.0))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hello", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("[setup] paywall: GET {url} costs {PRICE}, root keys in SQLite (in memory)\n");

    // Step 1: a plain HTTP client, no payment.
    println!("1. GET /hello without paying");
    let started = Instant::now();
    let resp = reqwest::get(&url).await?;
    let took = started.elapsed();
    println!("   <- {} ({})", resp.status(), ms(took));
    if resp.status() != 402 {
        return Err(format!("expected 402, got {}", resp.status()).into());
    }
    for v in resp.headers().get_all("www-authenticate") {
        println!(
            "   WWW-Authenticate: {}",
            abbreviate_challenge(v.to_str()?, 24)
        );
    }
    let problem: serde_json::Value = resp.json().await?;
    println!(
        "   problem+json reason: {}",
        problem["reason"].as_str().unwrap_or("?")
    );

    // Step 2: the pay402 client pays the challenge and retries.
    let client = L402Client::builder(Arc::new(payer.clone()))
        .network(Network::Regtest)
        .max_price(Sat(1_000).to_msat().ok_or("overflow")?)
        .build();
    println!("\n2. GET /hello through pay402-client (max price 1000 sat)");
    let started = Instant::now();
    let paid = client.get(&url).await?;
    let took = started.elapsed();
    let receipt = paid.receipt.clone().ok_or("the client did not pay")?;
    println!(
        "   paid {} + {} fee over Lightning in {} (payment hash {}…)",
        sats(receipt.amount),
        sats(receipt.fee),
        ms(receipt.paid_in),
        &receipt.payment_hash.to_hex()[..16]
    );
    let status = paid.status();
    let body = paid.response.text().await?;
    println!("   <- {status} ({} in total): {body:?}", ms(took));
    if status != 200 {
        return Err(format!("expected 200 after paying, got {status}").into());
    }

    // Step 3: the token is cached and reused.
    println!("\n3. GET /hello again");
    let started = Instant::now();
    let again = client.get(&url).await?;
    let took = started.elapsed();
    println!(
        "   <- {} ({}), token reused: {}, paid: {}",
        again.status(),
        ms(took),
        again.reused_token,
        if again.receipt.is_some() {
            "yes"
        } else {
            "nothing"
        }
    );
    if again.status() != 200 || !again.reused_token || again.receipt.is_some() {
        return Err("expected the cached token to be reused without paying".into());
    }

    println!(
        "\nbalances: merchant {}, payer {}",
        sats(merchant.balance()),
        sats(payer.balance())
    );
    if merchant.balance() != PRICE.to_msat().ok_or("overflow")? {
        return Err("the merchant should have been paid exactly once".into());
    }
    server.abort();
    Ok(())
}
