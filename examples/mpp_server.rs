//! A standalone API paywalled with MPP, the `Payment` HTTP authentication
//! scheme (`lightning`/`charge`).
//!
//! `cargo run --example mpp_server`
//!
//! Serves `GET /hello` for 100 sat (and a free `GET /health`). An unpaid
//! request gets `402` with `WWW-Authenticate: Payment id="…", realm="…",
//! method="lightning", intent="charge", request="…", expires="…"`, whose
//! `request` carries a fresh BOLT11 invoice; pay it and retry with
//! `Authorization: Payment <base64url credential>` (the challenge echoed,
//! payload `{"preimage": "<hex>"}`): the answer is `200` with a
//! `Payment-Receipt`. Each credential pays once.
//!
//! With the default `PAY402_LIGHTNING=simnet` it runs an in-process
//! Lightning network with two nodes: `merchant`, which issues this server's
//! invoices, and `wallet`, a funded node whose LND-compatible REST API
//! listens on `PAY402_SIMNET_LISTEN` (the same subset as `l402_server`), so
//! any client can pay the invoices with an HTTP call.
//!
//! Settings (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_LISTEN` | `127.0.0.1:8402` | the API's address |
//! | `PAY402_SIMNET_LISTEN` | `127.0.0.1:8403` | simnet wallet's LND REST face |
//! | `PAY402_MPP_SECRET` | random per run | HMAC secret, 64 hex digits (32 bytes) or more |
//! | `PAY402_MPP_REALM` | the listen address | the challenges' `realm` |
//! | `PAY402_DB` | `pay402-mpp-server.sqlite` | SQLite file of consumed payments (`:memory:` for none) |
//! | `PAY402_LIGHTNING` | `simnet` | `simnet`, `lnd`, `cln`, `lnbits` or `ldk` (an embedded node) |

use axum::Router;
use axum::routing::get;
use pay402_examples::{env_or, var};
use pay402_server::database::{Database, DatabaseOptions};
use pay402_server::mpp::MppConfig;
use pay402_server::paywall::{Paid, Paywall, PaywallPrice};

const HELP: &str = "\
mpp_server: an MPP-paywalled API (GET /hello costs 100 sat, lightning/charge)

environment:
  PAY402_LISTEN          API address            (default 127.0.0.1:8402)
  PAY402_SIMNET_LISTEN   simnet wallet REST     (default 127.0.0.1:8403)
  PAY402_MPP_SECRET      HMAC secret, >= 64 hex digits (default: random per run)
  PAY402_MPP_REALM       challenge realm        (default: the listen address)
  PAY402_DB              SQLite replay store    (default pay402-mpp-server.sqlite, ':memory:' for none)
  PAY402_LIGHTNING       simnet (default) | lnd | cln | lnbits | ldk
";

/// The HMAC secret: `PAY402_MPP_SECRET` (hex), or 32 random bytes (the
/// challenges of one run are then not honoured by the next).
fn secret() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    match var("PAY402_MPP_SECRET") {
        Some(hex) => {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                        .ok_or("PAY402_MPP_SECRET must be hex digits")
                })
                .collect::<Result<Vec<u8>, _>>()?;
            Ok(bytes)
        }
        None => Ok(rand::random::<[u8; 32]>().to_vec()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}\nbackends:\n{}", pay402_examples::LIGHTNING_ENV_HELP);
        return Ok(());
    }
    pay402_examples::init_tracing();
    let listen = env_or("PAY402_LISTEN", "127.0.0.1:8402");
    let realm = env_or("PAY402_MPP_REALM", &listen);
    let db = env_or("PAY402_DB", "pay402-mpp-server.sqlite");

    // Invoices from simnet (or a real node, see `--help`).
    let invoices = pay402_examples::Invoices::from_env("").await?;

    // Consumed payments: one SQLite file (several processes may share it).
    let url = if db == ":memory:" {
        "sqlite::memory:".to_owned()
    } else {
        format!("sqlite://{db}")
    };
    let database = Database::open(&url, &DatabaseOptions::default()).await?;
    let store = pay402_server::mpp::store::open(&database).await?;
    let mpp = MppConfig::new(realm.clone(), &secret()?)?
        .lightning(invoices.issuer.clone())
        .store(store)
        .memo("pay402 mpp_server /hello");
    let paywall = Paywall::builder().mpp(mpp).build()?;
    let app = Router::new()
        .route(
            "/hello",
            get(|paid: Paid| async move {
                format!("hello, paid world (payment hash {})\n", paid.receipt)
            })
            .route_layer(paywall.price(PaywallPrice::sats(100))),
        )
        .route("/health", get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "MPP API: http://{}/hello (100 sat, lightning/charge, realm {realm}), consumed payments in {db}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    invoices.stop()?;
    Ok(())
}
