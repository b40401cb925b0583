//! The pay402 demo: an L402 paywall and a paying client in one process, on
//! embedded defaults (simnet Lightning network, in-memory SQLite key store).
//!
//! `cargo run --example demo`
//!
//! 1. GET /hello without paying → 402 with an L402 challenge;
//! 2. GET /hello through pay402-client → it pays the invoice and retries → 200;
//! 3. GET /hello again → the cached token is reused → 200, nothing paid.
//!
//! When the local test peers are installed (the test suite installs them on
//! first use, or set `PAY402_DEMO_PEERS=install`), two more steps run:
//!
//! 4. x402 on anvil with Circle's real USDC contract: the pay402 x402 client
//!    signs an EIP-3009 authorization, the x402 layer settles it through
//!    pay402's local facilitator, and the chain shows the payee paid exactly
//!    the price;
//! 5. 21 BitRequests on a bcoin regtest node: a bit-transfer paid from a
//!    funded ledger account, and an on-chain payment broadcast and mined.
//!
//! `PAY402_DEMO_PEERS=off` skips them; the default (`auto`) runs them only
//! when the peers are already installed, so a fresh machine needs nothing.

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

    match peer_mode()? {
        PeerMode::Off => println!("\n(steps 4-5 skipped: PAY402_DEMO_PEERS=off)"),
        mode => {
            x402_step(mode).await?;
            bitreq_step(mode).await?;
        }
    }
    Ok(())
}

/// When the demo runs the steps that need local peers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PeerMode {
    /// Only if the peer is already installed.
    Auto,
    /// Install it from npm if needed.
    Install,
    /// Never.
    Off,
}

fn peer_mode() -> Result<PeerMode, String> {
    match pay402_examples::env_or("PAY402_DEMO_PEERS", "auto").as_str() {
        "auto" => Ok(PeerMode::Auto),
        "install" => Ok(PeerMode::Install),
        "off" => Ok(PeerMode::Off),
        other => Err(format!(
            "PAY402_DEMO_PEERS must be auto, install or off, not {other:?}"
        )),
    }
}

/// Whether a peer's pinned npm install is complete in `dir`.
fn installed(dir: &std::path::Path) -> bool {
    dir.join(".pay402-installed").is_file()
}

/// Step 4: x402 on anvil with real USDC.
async fn x402_step(mode: PeerMode) -> Result<(), Box<dyn std::error::Error>> {
    use pay402_backends::x402::LocalFacilitator;
    use pay402_client::x402::{LocalSigner, X402Client};
    use pay402_core::x402::TokenAmount;
    use pay402_core::x402::evm::EvmAddress;
    use pay402_server::x402::store::MemoryPaymentStore;
    use pay402_server::x402::{X402Config, X402Layer, X402Payment, X402Route, exact_offer};
    use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION};

    const NETWORK: &str = "eip155:31337";
    const PRICE: u64 = 10_000; // 0.01 USDC (6 decimals)

    if mode == PeerMode::Auto && !installed(&Anvil::cache_dir()) {
        println!(
            "\n(step 4 skipped: anvil is not installed; run the tests once or set PAY402_DEMO_PEERS=install)"
        );
        return Ok(());
    }
    println!("\n4. x402: pay 0.01 USDC on a local EVM chain (anvil + Circle's FiatTokenV2_2)");
    let chain = tokio::task::spawn_blocking(Anvil::start).await??;
    let usdc = chain.deploy_usdc()?;
    let signer = Arc::new(LocalSigner::random());
    let payer = signer.address();
    usdc.mint(payer.0, alloy_primitives::U256::from(1_000_000u64))?;
    let payee = DEV_ACCOUNTS[2].address;
    println!(
        "   [setup] anvil at {}, USDC at {}, payer {} holds 1 USDC",
        chain.rpc_url(),
        usdc.address,
        payer
    );

    let facilitator = LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
        .build()
        .await?;
    let paywall = X402Layer::new(
        X402Config::new(),
        Arc::new(facilitator),
        Arc::new(MemoryPaymentStore::new()),
    );
    let offer = exact_offer(
        NETWORK,
        &usdc.address.to_string(),
        &payee.to_string(),
        TokenAmount::from_u64(PRICE),
        USDC_NAME,
        USDC_VERSION,
    );
    let app = Router::new().route(
        "/report",
        get(|p: X402Payment| async move { format!("market report for {}", p.payer) })
            .route_layer(paywall.with_route(X402Route::new([offer])?)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/report", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let unpaid = reqwest::get(&url).await?;
    println!(
        "   GET /report without paying <- {} with PAYMENT-REQUIRED ({} bytes)",
        unpaid.status(),
        unpaid
            .headers()
            .get("payment-required")
            .map_or(0, |v| v.len())
    );
    let client = X402Client::builder(signer.clone())
        .allow_asset(
            NETWORK,
            EvmAddress(usdc.address),
            TokenAmount::from_u64(PRICE),
        )
        .build();
    let started = Instant::now();
    let paid = client.get(&url).await?;
    let took = started.elapsed();
    let receipt = paid.receipt.clone().ok_or("the client did not pay")?;
    let status = paid.status();
    let body = paid.into_response().text().await?;
    println!(
        "   paid through pay402-client <- {status} in {}: {body:?}",
        ms(took)
    );
    println!(
        "   settled on chain in {}",
        receipt.transaction().unwrap_or("(no transaction reported)")
    );
    let payee_balance = usdc.balance_of(payee)?;
    println!("   payee USDC balance: {payee_balance} base units");
    server.abort();
    if status != 200 || !receipt.settled() || payee_balance != alloy_primitives::U256::from(PRICE) {
        return Err("x402 step: expected a settled payment of exactly the price".into());
    }
    Ok(())
}

/// Step 5: 21 BitRequests on bcoin regtest.
async fn bitreq_step(mode: PeerMode) -> Result<(), Box<dyn std::error::Error>> {
    use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    use pay402_client::bitreq::{BitRequests, Wallet, WalletConfig};
    use pay402_core::chain::BitcoinChain;
    use pay402_server::bitreq::bitcoin::bip32::{Xpriv, Xpub};
    use pay402_server::bitreq::bitcoin::{Network as BtcNetwork, secp256k1::Secp256k1};
    use pay402_server::bitreq::store::MemoryBitreqStore;
    use pay402_server::bitreq::{
        BitreqConfig, BitreqPayment, BitreqServer, OnChainConfig, TransferConfig,
    };
    use pay402_testkit::bcoin::Bcoin;

    const PRICE: Sat = Sat(5_000);

    if mode == PeerMode::Auto && !installed(&Bcoin::cache_dir()) {
        println!(
            "\n(step 5 skipped: bcoin is not installed; run the tests once or set PAY402_DEMO_PEERS=install)"
        );
        return Ok(());
    }
    println!("\n5. 21 BitRequests: pay 5000 sat on a Bitcoin regtest node (bcoin)");
    let node = tokio::task::spawn_blocking(Bcoin::start).await??;
    let chain: Arc<dyn BitcoinChain> = Arc::new(BitcoindRpc::new(BitcoindConfig {
        url: node.rpc_url().parse()?,
        user: node.rpc_user().to_owned(),
        password: node.rpc_password().to_owned(),
        timeout: std::time::Duration::from_secs(30),
    })?);

    // The payer's wallet (keys from a seed), funded and confirmed by the node.
    let wallet = Arc::new(Wallet::from_seed(
        &rand_seed(),
        WalletConfig::new(BtcNetwork::Regtest),
        Arc::clone(&chain),
    )?);
    let address = wallet.receive_address().await?;
    node.fund(&address.to_string(), 200_000)?;
    node.mine(1)?;
    println!(
        "   [setup] bcoin regtest at {}, payer wallet funded with 200000 sat",
        node.rpc_url()
    );

    // The merchant: a fresh address per 402 (from its xpub) and a ledger.
    let xprv = Xpriv::new_master(BtcNetwork::Regtest, &rand_seed())?;
    let xpub = Xpub::from_priv(&Secp256k1::new(), &xprv);
    // Zero-conf is an explicit, capped opt-in (the default waits for one
    // confirmation); the demo serves its on-chain payment unconfirmed.
    let config = BitreqConfig::new(BtcNetwork::Regtest)
        .onchain(OnChainConfig::derived(xpub).accept_unconfirmed_up_to(PRICE))
        .transfer(TransferConfig::new("shop"));
    let merchant = BitreqServer::new(
        config,
        Arc::clone(&chain),
        Arc::new(MemoryBitreqStore::new()),
    )?;
    let app = Router::new().route(
        "/report",
        get(|paid: BitreqPayment| async move {
            format!(
                "report (paid {} sat by {})",
                paid.amount.0,
                paid.method.as_str()
            )
        })
        .route_layer(merchant.layer(Price::sats(PRICE.0))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/report", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Bit-transfer from a ledger account the operator credited.
    merchant
        .open_account("alice", &wallet.transfer_public_key()?)
        .await?;
    merchant
        .credit("alice", Sat(20_000), "demo-deposit")
        .await?;
    let transfer = BitRequests::bit_transfer(Arc::clone(&wallet), "alice").build();
    let paid = transfer.get(&url).await?;
    let status = paid.status();
    let body = paid.response.text().await?;
    println!("   bit-transfer from ledger account alice <- {status}: {body:?}");
    let left = merchant
        .account("alice")
        .await?
        .map_or(0, |account| account.balance.0);
    println!("   alice's ledger balance now {left} sat");

    // On-chain: the client pays the 402's fresh address; the server broadcasts.
    let onchain = BitRequests::on_chain(Arc::clone(&wallet)).build();
    let paid = onchain.get(&url).await?;
    let status2 = paid.status();
    let receipt = paid.receipt.clone().ok_or("the client did not pay")?;
    let body2 = paid.response.text().await?;
    node.mine(1)?;
    let txid = receipt.proof_id.parse()?;
    let mined = chain
        .get_transaction(&txid)
        .await?
        .ok_or("payment transaction not found")?;
    println!("   on-chain <- {status2}: {body2:?}");
    println!(
        "   transaction {} mined ({} confirmation), pays the merchant {} sat, fee {} sat",
        receipt.proof_id,
        mined.confirmations,
        mined.tx.output[0].value.to_sat(),
        receipt.fee.0
    );
    server.abort();
    if status != 200 || status2 != 200 || mined.tx.output[0].value.to_sat() != PRICE.0 {
        return Err("BitRequests step: expected two paid requests".into());
    }
    Ok(())
}

/// 32 random bytes for a demo seed.
fn rand_seed() -> [u8; 32] {
    rand::random()
}
