//! An x402-paywalled API: `GET /weather` costs 0.01 USDC (an EIP-3009
//! transfer authorization), `GET /health` is free.
//!
//! `cargo run -p pay402-examples --features x402 --example x402_server`
//!
//! Payments are settled either by an in-process local facilitator (your own
//! account sends `transferWithAuthorization` on the chain behind
//! `PAY402_X402_RPC_URL`) or by a remote facilitator
//! (`PAY402_X402_FACILITATOR_URL`, e.g. pay402's `x402_facilitator` example
//! or a hosted one). Payments are recorded in SQLite: a replayed payment is
//! refused, a pending settlement is kept and served once mined.
//!
//! Settings (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_X402_FACILITATOR_URL` | (none) | a remote facilitator; without it the local one is used |
//! | `PAY402_X402_RPC_URL` | required for local | the chain's JSON-RPC URL (`https://`, or `http://` on loopback) |
//! | `PAY402_X402_FACILITATOR_KEY` | required for local | the settling account's private key (pays the gas) |
//! | `PAY402_X402_NETWORK` | the node's chain (local), `eip155:84532` (remote) | the CAIP-2 network to charge on |
//! | `PAY402_X402_ASSET` | USDC of the network (`0xe7f1…0512` on a fresh 31337) | the token contract |
//! | `PAY402_X402_ASSET_NAME` / `_VERSION` | USDC's EIP-712 domain on that network | the token's EIP-712 `name` / `version` |
//! | `PAY402_X402_PAY_TO` | required (a dev account on 31337) | who receives the payments |
//! | `PAY402_X402_PRICE` | `10000` | the price in the token's base units (10000 = 0.01 USDC) |
//! | `PAY402_X402_SETTLE` | `after` | `after` the handler (default) or `before` it |
//! | `PAY402_LISTEN` | `127.0.0.1:8402` | the API's address |
//! | `PAY402_DB` | `pay402-x402-server.sqlite` | SQLite payment records (`:memory:` for none) |
//!
//! On anvil with a USDC deployed by `pay402_testkit` (see docs/x402.md):
//!
//! ```text
//! PAY402_X402_RPC_URL=http://127.0.0.1:8545 \
//! PAY402_X402_FACILITATOR_KEY=59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d \
//!   cargo run -p pay402-examples --features x402 --example x402_server
//! PAY402_X402_KEY=<payer key> cargo run -p pay402-examples --features x402 \
//!   --example x402_client -- http://127.0.0.1:8402/weather
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use pay402_backends::x402::{FacilitatorKey, LocalFacilitator, RemoteFacilitator};
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::facilitator::Facilitator;
use pay402_core::x402::{PaymentRequirements, TokenAmount};
use pay402_examples::{env_or, init_tracing};
use pay402_server::x402::store::{MemoryPaymentStore, PaymentStore, SqlitePaymentStore};
use pay402_server::x402::{
    SettleTiming, X402Config, X402Layer, X402Payment, X402Route, check_offer, exact_offer,
};

const HELP: &str = "\
x402_server: an x402-paywalled API (GET /weather costs 0.01 USDC; GET /health is free)

environment:
  PAY402_X402_FACILITATOR_URL   remote facilitator URL            (default: none, settle locally)
  PAY402_X402_RPC_URL           chain JSON-RPC URL                (required for local settlement)
  PAY402_X402_FACILITATOR_KEY   settling account key, hex         (required for local settlement; pays gas)
  PAY402_X402_NETWORK           CAIP-2 network to charge on       (default: the node's chain; eip155:84532 remote)
  PAY402_X402_ASSET             token contract                    (default: USDC of the network;
                                0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512 on a fresh anvil)
  PAY402_X402_ASSET_NAME        token EIP-712 name                (default: USDC's on that network)
  PAY402_X402_ASSET_VERSION     token EIP-712 version             (default 2)
  PAY402_X402_PAY_TO            recipient address                 (required; anvil dev account #3 on 31337)
  PAY402_X402_PRICE             price in token base units         (default 10000 = 0.01 USDC)
  PAY402_X402_SETTLE            after (default) | before the handler
  PAY402_LISTEN                 API address                       (default 127.0.0.1:8402)
  PAY402_DB                     SQLite payment records            (default pay402-x402-server.sqlite, ':memory:' for none)
  RUST_LOG                      log filter                        (e.g. info)

example (anvil, its second dev account settling):
  PAY402_X402_RPC_URL=http://127.0.0.1:8545 \\
  PAY402_X402_FACILITATOR_KEY=59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d \\
    cargo run -p pay402-examples --features x402 --example x402_server";

/// The token a fresh anvil gets when `pay402_testkit` deploys USDC first.
const ANVIL_USDC: &str = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";
/// anvil's fourth dev account (the default recipient on chain 31337).
const ANVIL_PAY_TO: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";

/// USDC and its EIP-712 domain name on the networks it knows.
fn default_asset(network: &str) -> Option<(&'static str, &'static str)> {
    match network {
        "eip155:8453" => Some(("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin")),
        "eip155:84532" => Some(("0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC")),
        "eip155:31337" => Some((ANVIL_USDC, "USD Coin")),
        _ => None,
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("{msg}\n\n{HELP}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return Ok(());
    }
    init_tracing();

    // 1. The facilitator: remote, or local on your RPC with your key.
    let remote = env_or("PAY402_X402_FACILITATOR_URL", "");
    let (facilitator, network): (Arc<dyn Facilitator>, String) = if !remote.is_empty() {
        let f = RemoteFacilitator::builder(remote.clone()).build()?;
        println!("settling through the facilitator at {}", f.url());
        (Arc::new(f), env_or("PAY402_X402_NETWORK", "eip155:84532"))
    } else {
        let rpc_url = env_or("PAY402_X402_RPC_URL", "");
        let key = env_or("PAY402_X402_FACILITATOR_KEY", "");
        if rpc_url.is_empty() || key.is_empty() {
            usage(
                "set PAY402_X402_FACILITATOR_URL, or PAY402_X402_RPC_URL and \
                 PAY402_X402_FACILITATOR_KEY to settle locally",
            );
        }
        // The key is never echoed, even when it does not parse.
        let key = FacilitatorKey::try_from(key)
            .map_err(|e| format!("PAY402_X402_FACILITATOR_KEY: {e}"))?;
        let network = env_or("PAY402_X402_NETWORK", "");
        // The local facilitator settles only the offered token (allowlist).
        let known = default_asset(&network);
        let asset: EvmAddress = env_or("PAY402_X402_ASSET", known.map_or("", |k| k.0))
            .parse()
            .unwrap_or_else(|_| {
                usage("settling locally: set PAY402_X402_NETWORK to a known chain, or PAY402_X402_ASSET")
            });
        let name = env_or("PAY402_X402_ASSET_NAME", known.map_or("", |k| k.1));
        let version = env_or("PAY402_X402_ASSET_VERSION", "2");
        let mut builder = LocalFacilitator::builder(rpc_url)
            .signer(key)
            .allow_asset(asset.0, name, version);
        if !network.is_empty() {
            builder = builder.network(network);
        }
        let f = builder.build().await?;
        let network = f.network().to_owned();
        for signer in f.signers() {
            println!("settling locally on {network} from {signer} (it pays the gas)");
        }
        (Arc::new(f), network)
    };

    // 2. The offer.
    let known = default_asset(&network);
    let asset = env_or("PAY402_X402_ASSET", known.map_or("", |k| k.0));
    let name = env_or("PAY402_X402_ASSET_NAME", known.map_or("", |k| k.1));
    let version = env_or("PAY402_X402_ASSET_VERSION", "2");
    let default_pay_to = if network == "eip155:31337" {
        ANVIL_PAY_TO
    } else {
        ""
    };
    let pay_to = env_or("PAY402_X402_PAY_TO", default_pay_to);
    if asset.is_empty() || name.is_empty() {
        usage(&format!(
            "no default token on {network}: set PAY402_X402_ASSET and PAY402_X402_ASSET_NAME"
        ));
    }
    if pay_to.parse::<EvmAddress>().is_err() {
        usage("PAY402_X402_PAY_TO must be the recipient's 0x address");
    }
    let price = TokenAmount::parse(&env_or("PAY402_X402_PRICE", "10000"))
        .map_err(|e| format!("PAY402_X402_PRICE: {e}"))?;
    let offer: PaymentRequirements = exact_offer(&network, &asset, &pay_to, price, &name, &version);
    check_offer(&offer)?;

    // 3. The paywall: SQLite payment records, settle after (or before) the handler.
    let db = env_or("PAY402_DB", "pay402-x402-server.sqlite");
    let store: Arc<dyn PaymentStore> = if db == ":memory:" {
        Arc::new(MemoryPaymentStore::new())
    } else {
        Arc::new(SqlitePaymentStore::open(&db).await?)
    };
    let settle = match env_or("PAY402_X402_SETTLE", "after").as_str() {
        "after" => SettleTiming::AfterHandler,
        "before" => SettleTiming::BeforeHandler,
        other => usage(&format!(
            "PAY402_X402_SETTLE: {other:?} is not after or before"
        )),
    };
    let listen = env_or("PAY402_LISTEN", "127.0.0.1:8402");
    let config = X402Config::new()
        .settle(settle)
        .base_url(format!("http://{listen}"));
    let paywall = X402Layer::new(config, facilitator, store);

    // Fail fast when the facilitator cannot settle what we offer.
    match tokio::time::timeout(
        Duration::from_secs(15),
        paywall.unsupported_offers(std::slice::from_ref(&offer)),
    )
    .await
    {
        Ok(Ok(missing)) if missing.is_empty() => {}
        Ok(Ok(missing)) => {
            return Err(format!(
                "the facilitator does not support {} on {} (v1 and v2 needed)",
                missing[0].scheme, missing[0].network
            )
            .into());
        }
        Ok(Err(e)) => return Err(format!("facilitator /supported: {e}").into()),
        Err(_) => return Err("facilitator /supported: no answer within 15 s".into()),
    }

    let pending = paywall
        .store()
        .list(pay402_server::x402::store::PaymentState::Pending, 1000)
        .await?;
    if !pending.is_empty() {
        println!(
            "{} payment(s) pending settlement from an earlier run (served when their payers retry)",
            pending.len()
        );
    }

    // 4. The API.
    let route = X402Route::new([offer.clone()])?
        .description("Today's weather")
        .mime_type("text/plain");
    let app = Router::new()
        .route(
            "/weather",
            get(|p: X402Payment| async move {
                format!(
                    "sunny, 21 °C (paid by {} on {}{})\n",
                    p.payer,
                    p.network,
                    p.transaction
                        .map(|t| format!(", transaction {t}"))
                        .unwrap_or_default()
                )
            })
            .route_layer(paywall.with_route(route)),
        )
        .route("/health", get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "GET http://{listen}/weather costs {} base units of {asset} ({name}) on {network}, paid to {pay_to}",
        offer.amount
    );
    println!("payment records: {db}; settlement: {settle:?}");
    println!("try: curl -i http://{listen}/weather   (402 with PAYMENT-REQUIRED)");
    println!(
        "pay: PAY402_X402_KEY=<payer key> cargo run -p pay402-examples --features x402 \
         --example x402_client -- http://{listen}/weather"
    );
    axum::serve(listener, app).await?;
    Ok(())
}
