//! The pay402 demo: an L402 paywall and a paying client in one process, on
//! embedded defaults (simnet Lightning network, in-memory SQLite key store).
//!
//! `cargo run --example demo`
//!
//! 1. GET /hello without paying → 402 with an L402 challenge;
//! 2. GET /hello through pay402-client → it pays the invoice and retries → 200;
//! 3. GET /hello again → the cached token is reused → 200, nothing paid.
//!
//! 4. one `Paywall` offering every rail on one route — L402 (simnet),
//!    x402 (Circle's real USDC contract on a local anvil chain, settled by
//!    pay402's facilitator), 21 BitRequests (a bit-transfer from the
//!    merchant's ledger) and MPP, the `Payment` scheme (`lightning`/`charge`
//!    on simnet, `evm`/`charge` in USDC on anvil) — in one 402, and one
//!    `Payer` holding a Lightning node, an EVM key and a Bitcoin wallet
//!    paying it through each rail in turn, within one budget, never twice.
//!
//! x402 and MPP `evm`/`charge` need anvil and the USDC contracts: on first
//! use they are installed from the npm registry (the progress is printed;
//! about a minute), then reused. `PAY402_DEMO_PEERS=off` leaves them out (no
//! install); `PAY402_DEMO_PEERS=auto` uses them only when already installed.

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

    paywall_step(&net, peer_mode()?).await
}

/// When the demo uses the local peers (anvil for x402).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerMode {
    /// Only if the peer is already installed.
    Auto,
    /// Install it from npm if needed.
    Install,
    /// Never.
    Off,
}

fn peer_mode() -> Result<PeerMode, String> {
    match pay402_examples::env_or("PAY402_DEMO_PEERS", "install").as_str() {
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

/// Step 4: one `Paywall` offering every rail, one `Payer` paying through
/// each in turn.
async fn paywall_step(net: &SimNet, mode: PeerMode) -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::Mutex;

    use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
    use pay402_backends::x402::LocalFacilitator;
    use pay402_client::bitreq::{BitRequests, Wallet, WalletConfig};
    use pay402_client::journal::Journal;
    use pay402_client::mpp::{MppClient, MppToken};
    use pay402_client::x402::{LocalSigner, X402Client};
    use pay402_client::{Choice, Payer, TokenScope};
    use pay402_core::offer::Rail;
    use pay402_core::rates::{FixedRates, TokenUnit, Unit};
    use pay402_core::x402::TokenAmount;
    use pay402_core::x402::evm::EvmAddress;
    use pay402_server::bitreq::bitcoin::Network as BtcNetwork;
    use pay402_server::bitreq::store::MemoryBitreqStore;
    use pay402_server::bitreq::{BitreqConfig, BitreqServer, TransferConfig};
    use pay402_server::mpp::MppConfig;
    use pay402_server::paywall::{Paid, Paywall, PaywallPrice, X402Asset};
    use pay402_testkit::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION};

    const NETWORK: &str = "eip155:31337";
    // 1 US cent: 10 sat at 100 000 USD per BTC, 10 000 USDC base units.
    const CENTS: u64 = 1;
    const USD_CENTS_PER_BTC: u64 = 10_000_000;

    println!("\n4. One Paywall, every rail; one Payer paying through each in turn");

    // x402 needs an EVM chain: anvil with Circle's FiatTokenV2_2 (USDC).
    let with_x402 = match mode {
        PeerMode::Off => false,
        PeerMode::Auto => installed(&Anvil::cache_dir()),
        PeerMode::Install => true,
    };
    let chain = if with_x402 {
        if !installed(&Anvil::cache_dir()) {
            println!(
                "   [setup] first run: installing anvil and Circle's USDC contracts from the npm registry \
                 into {} (about a minute, once), to show x402 on a real EVM chain",
                Anvil::cache_dir().display()
            );
        }
        Some(tokio::task::spawn_blocking(Anvil::start).await??)
    } else {
        println!(
            "   [setup] x402 and MPP evm/charge left out (PAY402_DEMO_PEERS={mode:?}): \
             L402, BitRequests and MPP lightning/charge only"
        );
        None
    };

    // The merchant.
    let merchant = net.add_node("merchant-2", Msat(0));
    // BitRequests: a bit-transfer is paid from the merchant's own ledger,
    // so this transfer-only server never calls its chain backend (the RPC
    // address below is never dialled).
    let never_dialled = BitcoindRpc::new(BitcoindConfig {
        url: "http://127.0.0.1:9".parse()?,
        user: "unused".into(),
        password: "unused".into(),
        timeout: std::time::Duration::from_secs(2),
    })?;
    let bitreq = BitreqServer::new(
        BitreqConfig::new(BtcNetwork::Regtest).transfer(TransferConfig::new("shop")),
        Arc::new(never_dialled),
        Arc::new(MemoryBitreqStore::new()),
    )?;
    // MPP: the `Payment` challenges are bound to a per-run HMAC secret; a
    // fresh invoice (or EVM offer) per challenge, each credential paid once.
    let mut mpp =
        MppConfig::new("pay402-demo", &rand_seed())?.lightning(Arc::new(merchant.clone()));
    let mut builder = Paywall::builder()
        .l402(
            Arc::new(merchant.clone()),
            Arc::new(SqliteStore::in_memory().await?),
        )
        .bitreq(bitreq.clone());
    let usdc = chain.as_ref().map(Anvil::deploy_usdc).transpose()?;
    let mut usdc_token = None;
    if let (Some(chain), Some(usdc)) = (&chain, &usdc) {
        let facilitator = Arc::new(
            LocalFacilitator::builder(chain.rpc_url())
                .signer(DEV_ACCOUNTS[1].private_key)
                .network(NETWORK)
                .allow_asset(usdc.address, USDC_NAME, USDC_VERSION)
                .build()
                .await?,
        );
        let asset =
            X402Asset::usdc(NETWORK, EvmAddress(usdc.address)).eip712(USDC_NAME, USDC_VERSION);
        builder = builder.x402(
            facilitator.clone(),
            EvmAddress(DEV_ACCOUNTS[2].address),
            asset.clone(),
        );
        mpp = mpp.evm(facilitator, EvmAddress(DEV_ACCOUNTS[2].address), asset);
        usdc_token = Some((
            usdc.address,
            TokenUnit::new(NETWORK, usdc.address.to_string(), 6),
        ));
        println!(
            "   [setup] anvil at {}, USDC at {}, payee {}",
            chain.rpc_url(),
            usdc.address,
            DEV_ACCOUNTS[2].address
        );
    }
    let rates = FixedRates::new().usd_cents_per_btc(USD_CENTS_PER_BTC);
    let paywall = builder.mpp(mpp).rates(Arc::new(rates.clone())).build()?;
    let report = get(|paid: Paid| async move {
        format!("market report, paid {} through {}", paid.amount, paid.rail)
    });
    let app = Router::new()
        .route("/report", report)
        .route_layer(paywall.price(PaywallPrice::usd_cents(CENTS)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "   [setup] GET {base}/report costs {CENTS} US cent, on {:?}",
        paywall.rails()
    );

    // One unpaid request: one 402, every rail's challenge.
    let unpaid = reqwest::get(format!("{base}/report")).await?;
    println!("   GET /report without paying <- {}", unpaid.status());
    for name in ["www-authenticate", "payment-required", "price", "username"] {
        for v in unpaid.headers().get_all(name) {
            let v = v.to_str()?;
            if name == "payment-required" {
                println!(
                    "     {name}: ({} bytes of base64 JSON: the x402 v2 offer)",
                    v.len()
                );
            } else {
                println!("     {name}: {}", abbreviate_challenge(v, 24));
            }
        }
    }

    // The payer: a Lightning node, an EVM key and a Bitcoin wallet, one
    // budget in US cents, a journal; which rail it pays is a policy (here a
    // closure following the demo's choice: the offer's label, such as
    // `x402 v2 #0` or `mpp lightning/charge #0`, starts with the turn's).
    let node = net.add_node("payer-2", Msat(10_000_000));
    let wallet = Arc::new(Wallet::from_seed(
        &rand_seed(),
        WalletConfig::new(BtcNetwork::Regtest),
        Arc::new(BitcoindRpc::new(BitcoindConfig {
            url: "http://127.0.0.1:9".parse()?,
            user: "unused".into(),
            password: "unused".into(),
            timeout: std::time::Duration::from_secs(2),
        })?),
    )?);
    bitreq
        .open_account("alice", &wallet.transfer_public_key()?)
        .await?;
    bitreq.credit("alice", Sat(1_000), "demo-deposit").await?;
    let signer = Arc::new(LocalSigner::random());
    let preferred = Arc::new(Mutex::new("l402"));
    let want = Arc::clone(&preferred);
    let mut mpp_means = MppClient::builder().lightning(Arc::new(node.clone()), Network::Regtest);
    let mut payer = Payer::builder()
        .lightning(Arc::new(node.clone()), Network::Regtest)
        .bitreq(BitRequests::bit_transfer(Arc::clone(&wallet), "alice"))
        .reference_unit(Unit::UsdCents)
        .max_price(pay402_core::rates::Amount::UsdCents(5))
        .scope(TokenScope::Path)
        .journal(Journal::memory())
        .choose(Choice::custom(move |candidates| {
            let label = *want.lock().ok()?;
            candidates
                .iter()
                .position(|c| c.offer.label().starts_with(label))
        }));
    let mut rates = rates;
    if let (Some(deployed), Some((usdc, token))) = (&usdc, &usdc_token) {
        deployed.mint(
            signer.address().0,
            alloy_primitives::U256::from(1_000_000u64),
        )?;
        payer = payer
            .x402(X402Client::builder(signer.clone()).allow_asset(
                NETWORK,
                EvmAddress(*usdc),
                TokenAmount::from_u64(50_000),
            ))
            .token(token.clone());
        mpp_means = mpp_means.evm(
            signer.clone(),
            MppToken::new(CHAIN_ID, EvmAddress(*usdc), 6, USDC_NAME, USDC_VERSION)
                .max(TokenAmount::from_u64(50_000)),
        );
        rates = rates.usd_stablecoin(token.clone());
    }
    let payer = payer.mpp(mpp_means).rates(rates).build().await?;
    println!(
        "   [setup] one Payer over {:?}, at most 5 US cents a request",
        payer.rails()
    );

    // Each turn: the offer to pay (by label) and its rail. MPP charges
    // are paid per request; L402 comes last, as its token is then reused.
    let mut turns = vec![
        ("bitreq", Rail::BitRequests),
        ("mpp lightning/charge", Rail::Mpp),
    ];
    if chain.is_some() {
        turns.insert(0, ("x402", Rail::X402));
        turns.push(("mpp evm/charge", Rail::Mpp));
    }
    turns.push(("l402", Rail::L402));
    let paid_before = node.balance();
    let mut l402_url = String::new();
    for (i, (label, rail)) in turns.iter().enumerate() {
        *preferred.lock().map_err(|_| "poisoned")? = label;
        let url = format!("{base}/report?turn={i}");
        if *rail == Rail::L402 {
            l402_url.clone_from(&url);
        }
        let started = Instant::now();
        let paid = payer.get(&url).await?;
        let took = started.elapsed();
        let receipt = paid.receipt.clone().ok_or("the payer did not pay")?;
        let status = paid.status();
        let body = paid.text().await?;
        let through = match &receipt.rail_receipt {
            Some(pay402_client::RailReceipt::Mpp(m)) => format!("mpp {}", m.kind),
            _ => receipt.rail.as_str().to_owned(),
        };
        println!(
            "   pay through {through:<20} <- {status} in {}: {body:?} (proof {}…{})",
            ms(took),
            &receipt.proof_id[..receipt.proof_id.len().min(10)],
            receipt
                .settlement
                .as_deref()
                .map(|tx| format!(", settled in {}…", &tx[..tx.len().min(12)]))
                .unwrap_or_default()
        );
        if status != 200 || receipt.rail != *rail || !receipt.offer.starts_with(label) {
            return Err(format!("expected a payment through {label}").into());
        }
    }
    // L402 again: the token bought a moment ago is reused, nothing paid.
    let again = payer.get(&l402_url).await?;
    println!(
        "   the same L402 URL again <- {}, token reused: {}, paid: {}",
        again.status(),
        again.reused_credential,
        if again.receipt.is_some() {
            "yes"
        } else {
            "nothing"
        }
    );
    if again.receipt.is_some() {
        return Err("expected the L402 token to be reused".into());
    }

    // What moved, once per rail.
    let left = bitreq.account("alice").await?.map_or(0, |a| a.balance.0);
    println!(
        "   Lightning: payer paid {} (+ fee); ledger: alice has {left} of 1000 sat left",
        sats(Msat(paid_before.0.saturating_sub(node.balance().0)))
    );
    // Lightning: the L402 invoice and the MPP lightning/charge invoice.
    if merchant.balance() != Msat(20_000) {
        return Err("the Lightning merchant should have been paid exactly once per rail".into());
    }
    if let Some(deployed) = &usdc {
        let got = deployed.balance_of(DEV_ACCOUNTS[2].address)?;
        println!("   USDC: the payee received {got} base units on chain (x402 and MPP evm/charge)");
        if got != alloy_primitives::U256::from(20_000u64) {
            return Err("the USDC payee should have been paid exactly once per rail".into());
        }
    }
    let journal = payer.journal().payments(&Default::default()).await?;
    println!("   the payer's journal holds {} payments", journal.len());
    if left != 990 || journal.len() != turns.len() {
        return Err("expected one payment per rail".into());
    }
    server.abort();
    Ok(())
}

/// 32 random bytes for a demo seed.
fn rand_seed() -> [u8; 32] {
    rand::random()
}
