//! An x402 facilitator server: `POST /verify`, `POST /settle`,
//! `GET /supported`, settling EIP-3009 payments on an EVM chain with your
//! own account, for the tokens you allowlist, to callers holding one of
//! your bearer tokens. Never expose a facilitator without authentication:
//! whoever reaches `/settle` spends your gas.
//!
//! `cargo run -p pay402-examples --features x402 --example x402_facilitator`
//!
//! Resource servers (pay402's `x402_server`, or the official SDKs'
//! `HTTPFacilitatorClient`) point at it instead of a hosted facilitator.
//! The account whose key you give pays the gas of every settlement.
//!
//! Settings (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_X402_RPC_URL` | required | the chain's JSON-RPC URL (`https://`, or `http://` on loopback) |
//! | `PAY402_X402_FACILITATOR_KEY` | required | the facilitator account's private key (64 hex digits) |
//! | `PAY402_X402_ASSETS` | required | the tokens settled: `address:EIP-712 name:version`, comma-separated (`0x036C…CF7e:USDC:2`) |
//! | `PAY402_FACILITATOR_TOKENS` | required | bearer tokens accepted on `/verify` and `/settle`, comma-separated, 16+ characters each |
//! | `PAY402_X402_PAYEES` | any payee | a payee (`payTo`) allowlist, comma-separated addresses |
//! | `PAY402_X402_MAX_GAS` | `200000` | gas-limit ceiling per settlement |
//! | `PAY402_X402_MAX_FEE_PER_GAS_WEI` | `100000000000` (100 gwei) | fee-per-gas ceiling; above it settlements are refused |
//! | `PAY402_X402_GAS_BUDGET_PER_HOUR` | `20000000` | total gas per hour |
//! | `PAY402_X402_NETWORK` | the node's chain | the CAIP-2 network to serve, checked against `eth_chainId` |
//! | `PAY402_FACILITATOR_LISTEN` | `127.0.0.1:4021` | the address to serve on |
//! | `PAY402_X402_RECEIPT_TIMEOUT_SECS` | `45` | how long `/settle` waits for the receipt before answering 202 `settlement_pending` |
//!
//! Try it on a local chain (anvil, with a dev account's key):
//!
//! ```text
//! anvil &
//! PAY402_X402_RPC_URL=http://127.0.0.1:8545 \
//! PAY402_X402_FACILITATOR_KEY=59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d \
//! PAY402_X402_ASSETS='0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512:USD Coin:2' \
//! PAY402_FACILITATOR_TOKENS=$(openssl rand -hex 24) \
//!   cargo run -p pay402-examples --features x402 --example x402_facilitator
//! curl http://127.0.0.1:4021/supported
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use pay402_backends::x402::{FacilitatorKey, LocalFacilitator, RouterAuth, router};
use pay402_core::x402::Facilitator;
use pay402_examples::{env_or, init_tracing};

const HELP: &str = "\
x402_facilitator: an x402 facilitator (POST /verify, POST /settle, GET /supported)

environment:
  PAY402_X402_RPC_URL               chain JSON-RPC URL            (required; https://, or http:// on loopback)
  PAY402_X402_FACILITATOR_KEY       facilitator account key (hex) (required; this account pays the gas)
  PAY402_X402_ASSETS                tokens settled                (required; address:name:version, comma-separated)
  PAY402_FACILITATOR_TOKENS         bearer tokens accepted        (required; comma-separated, 16+ characters each)
  PAY402_X402_PAYEES                payee allowlist               (default: any payee; comma-separated addresses)
  PAY402_X402_MAX_GAS               gas ceiling per settlement    (default 200000)
  PAY402_X402_MAX_FEE_PER_GAS_WEI   fee-per-gas ceiling, wei      (default 100000000000)
  PAY402_X402_GAS_BUDGET_PER_HOUR   total gas per hour            (default 20000000)
  PAY402_X402_NETWORK               CAIP-2 network to serve       (default: the node's chain, e.g. eip155:84532)
  PAY402_FACILITATOR_LISTEN         address to serve on           (default 127.0.0.1:4021)
  PAY402_X402_RECEIPT_TIMEOUT_SECS  receipt wait before 'pending' (default 45)
  RUST_LOG                          log filter                    (e.g. info)

example (anvil's second dev account, USDC as pay402-testkit deploys it on a fresh chain):
  PAY402_X402_RPC_URL=http://127.0.0.1:8545 \\
  PAY402_X402_FACILITATOR_KEY=59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d \\
  PAY402_X402_ASSETS='0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512:USD Coin:2' \\
  PAY402_FACILITATOR_TOKENS=$(openssl rand -hex 24) \\
    cargo run -p pay402-examples --features x402 --example x402_facilitator";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return Ok(());
    }
    init_tracing();

    // 1. Settings. The two required ones have no sensible default.
    let rpc_url = env_or("PAY402_X402_RPC_URL", "");
    let key = env_or("PAY402_X402_FACILITATOR_KEY", "");
    let assets = env_or("PAY402_X402_ASSETS", "");
    let tokens = env_or("PAY402_FACILITATOR_TOKENS", "");
    if rpc_url.is_empty() || key.is_empty() || assets.is_empty() || tokens.is_empty() {
        eprintln!(
            "PAY402_X402_RPC_URL, PAY402_X402_FACILITATOR_KEY, PAY402_X402_ASSETS and \
             PAY402_FACILITATOR_TOKENS are required.\n\n{HELP}"
        );
        std::process::exit(2);
    }
    // The tokens are never echoed, even when refused.
    let auth = RouterAuth::bearer(tokens.split(',').map(str::trim))
        .map_err(|e| format!("PAY402_FACILITATOR_TOKENS: {e}"))?;
    let number = |name: &str, default: &str| -> Result<u128, String> {
        env_or(name, default)
            .parse()
            .map_err(|_| format!("{name} must be a whole number"))
    };
    let max_gas = u64::try_from(number("PAY402_X402_MAX_GAS", "200000")?)
        .map_err(|_| "PAY402_X402_MAX_GAS is too large")?;
    let max_fee = number("PAY402_X402_MAX_FEE_PER_GAS_WEI", "100000000000")?;
    let budget = u64::try_from(number("PAY402_X402_GAS_BUDGET_PER_HOUR", "20000000")?)
        .map_err(|_| "PAY402_X402_GAS_BUDGET_PER_HOUR is too large")?;
    // The key string is wiped once parsed; a bad key is reported without echoing it.
    let key =
        FacilitatorKey::try_from(key).map_err(|e| format!("PAY402_X402_FACILITATOR_KEY: {e}"))?;
    let listen = env_or("PAY402_FACILITATOR_LISTEN", "127.0.0.1:4021");
    let receipt_secs: u64 = env_or("PAY402_X402_RECEIPT_TIMEOUT_SECS", "45")
        .parse()
        .map_err(|_| "PAY402_X402_RECEIPT_TIMEOUT_SECS must be a whole number of seconds")?;

    // 2. The facilitator: connects, checks the chain id, keeps the key.
    let mut builder = LocalFacilitator::builder(rpc_url)
        .signer(key)
        .receipt_timeout(Duration::from_secs(receipt_secs))
        .max_gas_per_settlement(max_gas)
        .max_fee_per_gas_wei(max_fee)
        .gas_budget(budget, Duration::from_secs(3600));
    for entry in assets.split(',') {
        let mut parts = entry.trim().splitn(3, ':');
        let (Some(address), Some(name), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(
                format!("PAY402_X402_ASSETS: {entry:?} is not address:name:version").into(),
            );
        };
        let address: Address = address
            .parse()
            .map_err(|_| format!("PAY402_X402_ASSETS: {address:?} is not an address"))?;
        builder = builder.allow_asset(address, name, version);
    }
    for payee in env_or("PAY402_X402_PAYEES", "").split(',').map(str::trim) {
        if !payee.is_empty() {
            let payee: Address = payee
                .parse()
                .map_err(|_| format!("PAY402_X402_PAYEES: {payee:?} is not an address"))?;
            builder = builder.allow_payee(payee);
        }
    }
    let network = env_or("PAY402_X402_NETWORK", "");
    if !network.is_empty() {
        builder = builder.network(network);
    }
    let facilitator = builder.build().await?;

    // 3. What it serves, as resource servers will see it at GET /supported.
    let supported = facilitator.supported().await?;
    println!("x402 facilitator for {}", facilitator.network());
    for kind in &supported.kinds {
        println!(
            "  kind: x402Version {} {} on {}",
            kind.x402_version, kind.scheme, kind.network
        );
    }
    for signer in facilitator.signers() {
        println!("  settles from {signer} (it pays the gas: keep it funded)");
    }

    // 4. Serve the HTTP API: bearer auth, rate limits per client address
    // (hence the connect info) and per payer.
    let app = router(Arc::new(facilitator), auth);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}  (POST /verify, POST /settle, GET /supported)");
    println!("try: curl http://{listen}/supported");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
