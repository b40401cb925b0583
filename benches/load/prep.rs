//! `pay402-load-prep`: what the end-to-end load benchmark
//! (`benches/load/run.sh`) needs before a run.
//!
//! ```text
//! pay402-load-prep x402 --url URL FILE:N [FILE:N ...]
//! pay402-load-prep l402-tokens --url URL --wallet URL --n N [--concurrency C] --out FILE
//! pay402-load-prep postgres --databases K [--durable on]
//! ```
//!
//! - `x402`: asks `URL` for its 402, takes the x402 v2 `exact` offer from
//!   `PAYMENT-REQUIRED`, and writes N distinct signed `PAYMENT-SIGNATURE`
//!   values (EIP-3009, one random nonce each, `validBefore` = now + the
//!   offer's `maxTimeoutSeconds`) to each FILE, one per line. The payloads
//!   expire with the offer's timeout (60 s): sign right before a run.
//! - `l402-tokens`: buys N L402 tokens from `pay402 proxy` at `URL`, each
//!   paid through the LND REST wallet at `--wallet` (the proxy's
//!   `simnet-rest` wallet) and used once (its first paid use records it in
//!   the proxy's store); writes the last token's `Authorization` value to
//!   FILE.
//! - `postgres`: starts a private PostgreSQL cluster (the testkit's peer),
//!   creates K databases, prints their URLs one per line, and stops the
//!   cluster on SIGTERM or SIGINT. Test settings (`fsync` and
//!   `synchronous_commit` off) unless `--durable on`: PostgreSQL's durable
//!   defaults, every commit flushed to disk, as in production.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pay402_backends::lnd::{LndConfig, LndRest};
use pay402_benches::BoxError;
use pay402_client::x402::LocalSigner;
use pay402_core::lightning::Network;
use pay402_core::x402::evm::{Bytes32, Eip712Domain, TransferAuthorization};
use pay402_core::x402::network::evm_chain_id;
use pay402_core::x402::{
    EvmTimestamp, ExactEvmPayload, HeaderValue, PaymentPayloadV2, PaymentRequired,
    PaymentRequirements,
};
use rand::RngCore;

fn usage() -> ! {
    eprintln!(
        "usage: pay402-load-prep x402 --url URL FILE:N...\n       \
         pay402-load-prep l402-tokens --url URL --wallet URL --n N [--concurrency C] --out FILE\n       \
         pay402-load-prep postgres --databases K [--durable on]"
    );
    std::process::exit(2)
}

/// `--name value` pairs and the remaining positional arguments.
fn options(args: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let mut named = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.strip_prefix("--") {
            Some(name) => match it.next() {
                Some(v) => named.push((name.to_owned(), v.clone())),
                None => usage(),
            },
            None => rest.push(a.clone()),
        }
    }
    (named, rest)
}

fn get<'a>(named: &'a [(String, String)], name: &str) -> Option<&'a str> {
    named
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The x402 v2 offer of the server at `url`.
async fn x402_offer(url: &str) -> Result<PaymentRequirements, BoxError> {
    let resp = reqwest::get(url).await?;
    if resp.status() != 402 {
        return Err(format!("{url}: expected 402, got {}", resp.status()).into());
    }
    let header = resp
        .headers()
        .get("payment-required")
        .ok_or("no PAYMENT-REQUIRED header")?
        .to_str()?;
    let required = PaymentRequired::decode_header(header)?;
    required
        .accepts
        .into_iter()
        .find(|r| r.scheme == "exact")
        .ok_or_else(|| "no exact offer".into())
}

/// `n` signed payloads for `offer`, each with its own nonce.
fn sign_payloads(offer: &PaymentRequirements, n: usize) -> Result<Vec<String>, BoxError> {
    let extra = offer.extra.as_ref().ok_or("offer without extra")?;
    let domain = Eip712Domain::new(
        extra.name().ok_or("no EIP-712 name")?,
        extra.version().ok_or("no EIP-712 version")?,
        evm_chain_id(&offer.network).ok_or("not an EVM network")?,
        offer.asset.parse()?,
    );
    let pay_to = offer.pay_to.parse()?;
    let valid_before = now() + offer.max_timeout_seconds;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads);
    let chunks: Vec<Result<Vec<String>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = per.min(n.saturating_sub(t * per));
                let domain = &domain;
                s.spawn(move || -> Result<Vec<String>, String> {
                    let signer = LocalSigner::random();
                    let mut rng = rand::thread_rng();
                    let mut out = Vec::with_capacity(count);
                    for _ in 0..count {
                        let mut nonce = [0u8; 32];
                        rng.fill_bytes(&mut nonce);
                        let authorization = TransferAuthorization {
                            from: signer.address(),
                            to: pay_to,
                            value: offer.amount,
                            valid_after: EvmTimestamp::from_u64(0),
                            valid_before: EvmTimestamp::from_u64(valid_before),
                            nonce: Bytes32(nonce),
                        };
                        let signature = signer
                            .sign_digest_sync(&authorization.signing_hash(domain))
                            .map_err(|e| e.to_string())?;
                        let payload = PaymentPayloadV2 {
                            x402_version: 2,
                            resource: None,
                            accepted: offer.clone(),
                            payload: ExactEvmPayload {
                                signature,
                                authorization,
                            },
                            extensions: None,
                        };
                        out.push(payload.encode_header());
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("signer thread panicked".into()))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(n);
    for c in chunks {
        all.extend(c?);
    }
    Ok(all)
}

async fn x402(args: &[String]) -> Result<(), BoxError> {
    let (named, files) = options(args);
    let url = get(&named, "url").unwrap_or_else(|| usage());
    if files.is_empty() {
        usage()
    }
    let offer = x402_offer(url).await?;
    let started = Instant::now();
    let mut total = 0;
    for spec in &files {
        let (path, n) = spec.rsplit_once(':').unwrap_or_else(|| usage());
        let n: usize = n.parse().unwrap_or_else(|_| usage());
        let payloads = sign_payloads(&offer, n)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for p in &payloads {
            writeln!(f, "{p}")?;
        }
        f.flush()?;
        total += n;
    }
    eprintln!(
        "signed {total} x402 payloads in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Buys one token from the proxy at `url`, paying with `wallet`, and uses it
/// once; returns its `Authorization` value.
async fn buy_token(
    http: &reqwest::Client,
    url: &str,
    wallet: &LndRest,
) -> Result<String, BoxError> {
    let resp = http.get(url).send().await?;
    if resp.status() != 402 {
        return Err(format!("{url}: expected 402, got {}", resp.status()).into());
    }
    let auth = pay402_benches::pay_l402_challenge(resp.headers(), wallet).await?;
    let resp = http.get(url).header("authorization", &auth).send().await?;
    if resp.status() != 200 {
        return Err(format!("paid request answered {}", resp.status()).into());
    }
    Ok(auth)
}

async fn l402_tokens(args: &[String]) -> Result<(), BoxError> {
    let (named, _) = options(args);
    let url = get(&named, "url").unwrap_or_else(|| usage()).to_owned();
    let wallet_url = get(&named, "wallet").unwrap_or_else(|| usage());
    let out = get(&named, "out").unwrap_or_else(|| usage());
    let n: usize = get(&named, "n")
        .unwrap_or_else(|| usage())
        .parse()
        .unwrap_or_else(|_| usage());
    let concurrency: usize = get(&named, "concurrency")
        .unwrap_or("32")
        .parse()
        .unwrap_or_else(|_| usage());
    let wallet = Arc::new(LndRest::new(LndConfig::new(
        wallet_url.parse()?,
        Network::Regtest,
    ))?);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (http, url, wallet, next) =
                (http.clone(), url.clone(), wallet.clone(), next.clone());
            tokio::spawn(async move {
                let mut last = None;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    last = Some(buy_token(&http, &url, &wallet).await?);
                }
                Ok::<_, BoxError>(last)
            })
        })
        .collect();
    let mut token = None;
    for w in workers {
        if let Some(t) = w.await?? {
            token = Some(t);
        }
    }
    std::fs::write(out, token.ok_or("no token bought")?)?;
    eprintln!(
        "bought and used {n} L402 tokens in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn postgres(args: &[String]) -> Result<(), BoxError> {
    let (named, _) = options(args);
    let k: usize = get(&named, "databases")
        .unwrap_or("1")
        .parse()
        .unwrap_or_else(|_| usage());
    let cluster = match get(&named, "durable") {
        Some("on") => pay402_testkit::postgres::Postgres::start_durable()?,
        None | Some("off") => pay402_testkit::postgres::Postgres::start()?,
        Some(_) => usage(),
    };
    let mut stdout = std::io::stdout();
    for _ in 0..k {
        writeln!(stdout, "{}", cluster.create_database()?.url())?;
    }
    stdout.flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(cluster);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        usage()
    };
    pay402_benches::run_main(async {
        match cmd.as_str() {
            "x402" => x402(rest).await,
            "l402-tokens" => l402_tokens(rest).await,
            "postgres" => postgres(rest).await,
            _ => usage(),
        }
    })
}
