//! `pay402-load-server`: the HTTP servers of the end-to-end load benchmark
//! (`benches/load/run.sh`, docs/PERFORMANCE.md "End-to-end load").
//!
//! ```text
//! pay402-load-server --listen 127.0.0.1:PORT bare
//! pay402-load-server --listen 127.0.0.1:PORT paywall --rails l402[,x402] [--db URL] [--token-out FILE]
//! ```
//!
//! - `bare`: a plain axum handler answering `ok` on every path (also the
//!   upstream of `pay402 proxy` and nginx in the benchmark).
//! - `paywall`: the same handler behind a `pay402_server::paywall::Paywall`
//!   with the rails given (100 sat on L402, 0.01 USDC on x402), its stores
//!   opened with `pay402_server::database::Database::open(--db)` (`memory:`
//!   by default; `sqlite://…`, `postgres://…`). L402 invoices come from an
//!   in-process simnet node: each 402 creates a real signed BOLT11 invoice
//!   and mints a macaroon. x402 settles through [`StubFacilitator`], which
//!   answers `verify` and `settle` at once without a chain: the server still
//!   decodes, recovers the EIP-712 signature, and reserves and records every
//!   payment in the store (a replayed payload is refused), so the row
//!   measures the server, not a chain.
//!
//! With `--token-out`, an L402 token is bought before the listener opens
//! (402, simnet payment, first paid use so its key is cached) and its
//! `Authorization` value is written to the file.
//!
//! Worker threads: tokio's default (one per core), or `TOKIO_WORKER_THREADS`.
//! The server prints `listening <addr>` on stdout once it accepts, and stops
//! on SIGTERM or SIGINT.

use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::response::Response;
use pay402_backends::simnet::SimNet;
use pay402_benches::BoxError;
use pay402_core::lightning::{LightningPayer, Network};
use pay402_core::money::Msat;
use pay402_core::x402::facilitator::{Facilitator, FacilitatorError, PaymentRequest};
use pay402_core::x402::{
    SettleResponse, SupportedKind, SupportedResponse, TokenAmount, VerifyResponse,
};
use pay402_server::database::{Database, DatabaseOptions};
use pay402_server::paywall::{Paywall, PaywallPrice, RailPrices, X402Asset};
use pay402_server::x402::{X402Config, X402Layer};
use pay402_server::{L402Config, L402Layer};
use tower::{Layer, Service, ServiceExt};

/// The CAIP-2 network of the x402 offer (Base).
pub const NETWORK: &str = "eip155:8453";
/// USDC on Base.
const USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
/// The recipient of x402 payments.
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// The L402 price.
const SATS: u64 = 100;
/// The x402 price: 0.01 USDC in base units.
const X402_UNITS: u64 = 10_000;
/// A fixed transaction hash the stub facilitator reports.
const TX: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

/// A facilitator that accepts every payment the server's own verification
/// passed, at once and without a chain (the benchmark's x402 settlement).
struct StubFacilitator;

fn payer(r: &PaymentRequest) -> String {
    r.exact_payload().authorization.from.to_string()
}

#[async_trait]
impl Facilitator for StubFacilitator {
    async fn verify(&self, r: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        Ok(VerifyResponse {
            is_valid: true,
            payer: Some(payer(r)),
            ..VerifyResponse::default()
        })
    }
    async fn settle(&self, r: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        Ok(SettleResponse::success(TX, NETWORK, &payer(r)))
    }
    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        Ok(SupportedResponse {
            kinds: vec![SupportedKind {
                x402_version: 2,
                scheme: "exact".into(),
                network: NETWORK.into(),
                extra: None,
            }],
            ..SupportedResponse::default()
        })
    }
}

async fn ok(_req: http::Request<Body>) -> Result<Response, Infallible> {
    Ok(Response::new(Body::from("ok")))
}

struct Args {
    listen: String,
    mode: String,
    rails: Vec<String>,
    db: String,
    pool: Option<u32>,
    token_out: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: pay402-load-server --listen ADDR (bare | paywall --rails l402[,x402] [--db URL] [--pool N] [--token-out FILE])"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        listen: "127.0.0.1:0".into(),
        mode: String::new(),
        rails: vec!["l402".into()],
        db: "memory:".into(),
        pool: None,
        token_out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--listen" => args.listen = value(),
            "--rails" => args.rails = value().split(',').map(str::to_owned).collect(),
            "--db" => args.db = value(),
            "--pool" => args.pool = Some(value().parse().unwrap_or_else(|_| usage())),
            "--token-out" => args.token_out = Some(value()),
            "bare" | "paywall" => args.mode = a,
            _ => usage(),
        }
    }
    if args.mode.is_empty() {
        usage()
    }
    args
}

/// The paywalled router, and the L402 token bought through it (if asked).
async fn paywall(args: &Args) -> Result<(Router, Option<String>), BoxError> {
    let mut options = DatabaseOptions::default();
    if let Some(n) = args.pool {
        options = options.max_connections(n);
    }
    let db = Database::open(&args.db, &options).await?;
    let net = SimNet::new(Network::Regtest);
    let node = net.add_node("merchant", Msat(0));
    let wallet = net.add_node("payer", Msat(1_000_000_000_000));
    let mut builder = Paywall::builder();
    let mut prices = RailPrices::new();
    for rail in &args.rails {
        match rail.as_str() {
            "l402" => {
                let store = pay402_server::store::open(&db).await?;
                let layer = L402Layer::new(L402Config::new("bench"), Arc::new(node.clone()), store);
                builder = builder.l402_layer(layer);
                prices = prices.l402(Msat(SATS * 1000));
            }
            "x402" => {
                let store = pay402_server::x402::store::open(&db).await?;
                let layer = X402Layer::new(X402Config::new(), Arc::new(StubFacilitator), store);
                let asset = X402Asset::usdc(NETWORK, USDC.parse()?);
                builder = builder.x402_layer(layer, PAY_TO.parse()?, asset);
                prices = prices.x402(TokenAmount::from_u64(X402_UNITS));
            }
            other => return Err(format!("unknown rail {other}").into()),
        }
    }
    let layer = builder.build()?.price(PaywallPrice::per_rail(prices));
    let mut svc = layer.layer(tower::service_fn(ok));
    let token = match &args.token_out {
        Some(_) => Some(buy_token(&mut svc, &wallet).await?),
        None => None,
    };
    Ok((Router::new().fallback_service(svc), token))
}

fn request(auth: Option<&str>) -> http::Request<Body> {
    let mut b = http::Request::get("/resource").header(http::header::HOST, "127.0.0.1");
    if let Some(a) = auth {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    b.body(Body::empty()).unwrap_or_default()
}

/// Buys an L402 token through `svc` (402, pay with `wallet`) and uses it once
/// so that its key is cached; returns its `Authorization` value.
async fn buy_token<S>(svc: &mut S, wallet: &impl LightningPayer) -> Result<String, BoxError>
where
    S: Service<http::Request<Body>, Response = Response, Error = Infallible>,
{
    let resp = svc.ready().await?.call(request(None)).await?;
    if resp.status() != 402 {
        return Err(format!("expected 402, got {}", resp.status()).into());
    }
    let auth = pay402_benches::pay_l402_challenge(resp.headers(), wallet).await?;
    let resp = svc.ready().await?.call(request(Some(&auth))).await?;
    if resp.status() != 200 {
        return Err(format!("paid request answered {}", resp.status()).into());
    }
    Ok(auth)
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let router = match args.mode.as_str() {
        "bare" => Router::new().fallback_service(tower::service_fn(ok)),
        _ => {
            let (router, token) = paywall(&args).await?;
            if let (Some(path), Some(token)) = (&args.token_out, token) {
                std::fs::write(path, token)?;
            }
            router
        }
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    pay402_benches::run_main(run(parse_args()))
}
