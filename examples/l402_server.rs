//! A standalone L402-paywalled API.
//!
//! `cargo run --example l402_server`
//!
//! Serves `GET /hello` for 100 sat (and a free `GET /health`). With the default
//! `PAY402_LIGHTNING=simnet` it runs an in-process Lightning network with two
//! nodes: `merchant`, which issues this server's invoices, and `wallet`, a
//! funded node whose LND-compatible REST API listens on `PAY402_SIMNET_LISTEN`,
//! so any client can pay the invoices with an HTTP call, for example
//! `cargo run --example l402_client -- http://127.0.0.1:8402/hello`.
//!
//! Settings (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAY402_LISTEN` | `127.0.0.1:8402` | the API's address |
//! | `PAY402_SIMNET_LISTEN` | `127.0.0.1:8403` | simnet wallet's LND REST face |
//! | `PAY402_DB` | `pay402-l402-server.sqlite` | SQLite file for root keys (`:memory:` for none) |
//! | `PAY402_LIGHTNING` | `simnet` | `simnet`, `lnd`, `cln`, `lnbits` or `ldk` (an embedded node) |
//!
//! The settings of each backend are listed by `--help` and in docs/backends.md.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use pay402_examples::env_or;
use pay402_server::store::{RootKeyStore, SqliteStore};
use pay402_server::{L402Config, L402Layer, PaidToken, Price};

const HELP: &str = "\
l402_server: an L402-paywalled API (GET /hello costs 100 sat)

environment:
  PAY402_LISTEN          API address            (default 127.0.0.1:8402)
  PAY402_SIMNET_LISTEN   simnet wallet REST     (default 127.0.0.1:8403)
  PAY402_DB              SQLite key store file  (default pay402-l402-server.sqlite, ':memory:' for none)
  PAY402_LIGHTNING       simnet (default) | lnd | cln | lnbits | ldk
";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}\nbackends:\n{}", pay402_examples::LIGHTNING_ENV_HELP);
        return Ok(());
    }
    pay402_examples::init_tracing();
    let listen = env_or("PAY402_LISTEN", "127.0.0.1:8402");
    let db = env_or("PAY402_DB", "pay402-l402-server.sqlite");

    // Invoices from simnet (or a real node, see `--help`).
    let invoices = pay402_examples::Invoices::from_env("").await?;

    let store: Arc<dyn RootKeyStore> = if db == ":memory:" {
        Arc::new(SqliteStore::in_memory().await?)
    } else {
        Arc::new(SqliteStore::open(&db).await?)
    };
    let paywall = L402Layer::new(
        L402Config::new("hello-api")
            .token_lifetime(std::time::Duration::from_secs(24 * 3600))
            .emit_lsat(true),
        invoices.issuer.clone(),
        store,
    );
    let app = Router::new()
        .route(
            "/hello",
            get(|PaidToken(t): PaidToken| async move {
                format!("hello, paid world (token {})\n", t.token_id)
            })
            .route_layer(paywall.with_price(Price::sats(100))),
        )
        .route("/health", get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "L402 API: http://{}/hello (100 sat), root keys in {db}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    invoices.stop()?;
    Ok(())
}
