//! An x402 facilitator server: `POST /verify`, `POST /settle`,
//! `GET /supported`, settling EIP-3009 payments on an EVM chain with your
//! own account.
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
//!   cargo run -p pay402-examples --features x402 --example x402_facilitator
//! curl http://127.0.0.1:4021/supported
//! ```

use std::sync::Arc;
use std::time::Duration;

use pay402_backends::x402::{FacilitatorKey, LocalFacilitator, router};
use pay402_core::x402::Facilitator;
use pay402_examples::{env_or, init_tracing};

const HELP: &str = "\
x402_facilitator: an x402 facilitator (POST /verify, POST /settle, GET /supported)

environment:
  PAY402_X402_RPC_URL               chain JSON-RPC URL            (required; https://, or http:// on loopback)
  PAY402_X402_FACILITATOR_KEY       facilitator account key (hex) (required; this account pays the gas)
  PAY402_X402_NETWORK               CAIP-2 network to serve       (default: the node's chain, e.g. eip155:84532)
  PAY402_FACILITATOR_LISTEN         address to serve on           (default 127.0.0.1:4021)
  PAY402_X402_RECEIPT_TIMEOUT_SECS  receipt wait before 'pending' (default 45)
  RUST_LOG                          log filter                    (e.g. info)

example (anvil's second dev account):
  PAY402_X402_RPC_URL=http://127.0.0.1:8545 \\
  PAY402_X402_FACILITATOR_KEY=59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d \\
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
    if rpc_url.is_empty() || key.is_empty() {
        eprintln!("PAY402_X402_RPC_URL and PAY402_X402_FACILITATOR_KEY are required.\n\n{HELP}");
        std::process::exit(2);
    }
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
        .receipt_timeout(Duration::from_secs(receipt_secs));
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

    // 4. Serve the HTTP API.
    let app = router(Arc::new(facilitator));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}  (POST /verify, POST /settle, GET /supported)");
    println!("try: curl http://{listen}/supported");
    axum::serve(listener, app).await?;
    Ok(())
}
