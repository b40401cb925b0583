//! `pay402 fetch URL`: curl that pays, through `pay402_client::Payer`.
//!
//! The means of payment (a Lightning node, an EVM key) come from the fetch
//! configuration file (`~/.config/pay402/config.toml`, see [`FetchConfig`])
//! or the environment; every payment is recorded in a SQLite journal, so a
//! second fetch of the same URL reuses the paid L402 token. Exit codes are
//! in [`exit`] and docs/cli.md.
//!
//! ```
//! use pay402_cli::fetch::parse_max;
//! use pay402_core::money::Sat;
//! use pay402_core::rates::Amount;
//! assert_eq!(parse_max("100sat").unwrap(), Amount::Sat(Sat(100)));
//! assert!(parse_max("0.5sat").is_err());
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use pay402_client::journal::Journal;
use pay402_client::{Choice, Payer, PayerBuilder, PayerError, PayerPaid, RefusalReason};
use pay402_core::lightning::{LightningPayer, Network};
use pay402_core::money::{Msat, Sat};
use pay402_core::offer::read_offers;
use pay402_core::problem::Reason;
use pay402_core::rates::{Amount, FixedRates};
use serde::Deserialize;
use zeroize::Zeroizing;

mod journal;
mod means;
mod quote;

use journal::open_journal;
pub use journal::{JournalArgs, ReceiptsArgs, TokensArgs, receipts, tokens};
pub use means::{
    BitreqChainMeans, BitreqChannelMeans, BitreqMeans, BitreqMethodName, FetchConfig,
    LightningMeans, MaxError, X402Means, X402Token, parse_max,
};
use means::{bitreq, bitreq_wallet, lightning, load_config_file, x402};
use quote::quote;

/// The exit codes of `pay402 fetch` (also in docs/cli.md).
///
/// ```
/// assert_eq!(pay402_cli::fetch::exit::OVER_BUDGET, 3);
/// ```
pub mod exit {
    /// A response was received (whatever its status when nothing was paid).
    pub const OK: u8 = 0;
    /// Another error: network, file, journal, before anything was paid.
    pub const ERROR: u8 = 1;
    /// Bad usage or configuration.
    pub const USAGE: u8 = 2;
    /// Every payable offer costs more than `--max`; nothing was paid.
    pub const OVER_BUDGET: u8 = 3;
    /// No offer of a rail this configuration can pay (or no offer at all);
    /// nothing was paid.
    pub const NO_RAIL: u8 = 4;
    /// The payment failed, its outcome is unknown, or it stands but is not
    /// served yet (an on-chain payment awaiting confirmations): run again
    /// to resume, the journal never pays twice.
    pub const PAYMENT_FAILED: u8 = 5;
    /// Paid (or a paid token presented), and the server answered with an
    /// error status.
    pub const SERVER_ERROR_AFTER_PAYING: u8 = 6;
}

/// The options of `pay402 fetch`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The URL to fetch.
    #[arg(value_name = "URL")]
    pub url: String,
    /// The request method (default GET, or POST with `--data`).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The request body; `@FILE` reads it from a file.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,
    /// Write the response body to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the response status line and headers before the body.
    #[arg(short = 'i', long = "include")]
    pub include: bool,
    /// Silent: print nothing on standard error but errors.
    #[arg(short = 's', long = "silent")]
    pub silent: bool,
    /// The most this one request may pay: an integer with its unit, `sat`,
    /// `msat` or `usdcents` (e.g. `100sat`, `5usdcents`), or US dollars
    /// with at most two decimals (`0.05usd`). Overrides the configured
    /// `max`; the default is 1000sat.
    #[arg(long, value_name = "AMOUNT")]
    pub max: Option<String>,
    /// Pay only through this rail (repeatable): the means of the other
    /// rails are left unused, so an offer only they could pay exits 4.
    #[arg(long = "rail", value_name = "RAIL", value_enum)]
    pub rails: Vec<RailArg>,
    /// Print the offers of the 402 and what would be paid; pay nothing.
    #[arg(long)]
    pub quote: bool,
    /// Print a JSON receipt on standard output instead of the body (which
    /// goes to `-o FILE` when given); on failure `{"error", "exit"}`.
    #[arg(long)]
    pub json: bool,
    /// The fetch configuration (default `~/.config/pay402/config.toml`;
    /// a missing default file means "environment only").
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The journal file (default `journal.sqlite` beside the config).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// A rail `pay402 fetch --rail` may restrict payments to.
///
/// ```
/// use clap::ValueEnum;
/// let r = pay402_cli::fetch::RailArg::from_str("bitreq", false).unwrap();
/// assert_eq!(r, pay402_cli::fetch::RailArg::Bitreq);
/// ```
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RailArg {
    /// L402: Lightning, through the configured node.
    L402,
    /// x402: a USD stablecoin, signed with the EVM key.
    X402,
    /// 21 BitRequests: a bit-transfer from the ledger account, an on-chain
    /// transaction or a payment channel, from the configured wallet.
    Bitreq,
    /// MPP (`WWW-Authenticate: Payment`): `lightning`/`charge` through the
    /// configured Lightning node, `evm`/`charge` with the EVM key.
    Mpp,
}

/// A failure with its exit code.
struct Fail(u8, String);

fn usage(e: impl std::fmt::Display) -> Fail {
    Fail(exit::USAGE, e.to_string())
}

fn load_config(args: &FetchArgs) -> Result<(FetchConfig, PathBuf), Fail> {
    load_config_file(args.config.as_deref())
}

/// The request as given on the command line.
struct Req {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    body: Option<Vec<u8>>,
}

fn request(args: &FetchArgs) -> Result<Req, Fail> {
    use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
    let url: reqwest::Url = args
        .url
        .parse()
        .map_err(|e| usage(format!("URL {:?}: {e}", args.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage(format!("URL {:?}: http or https only", args.url)));
    }
    let body = match args.data.as_deref() {
        Some(d) => Some(match d.strip_prefix('@') {
            Some(file) => std::fs::read(file).map_err(|e| usage(format!("{file}: {e}")))?,
            None => d.as_bytes().to_vec(),
        }),
        None => None,
    };
    let method = match (&args.method, &body) {
        (Some(m), _) => m.parse().map_err(|_| usage(format!("method {m:?}")))?,
        (None, Some(_)) => reqwest::Method::POST,
        (None, None) => reqwest::Method::GET,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| usage(format!("header {h:?}: want \"Name: value\"")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| usage(format!("header name {name:?}")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| usage(format!("header value of {name}")))?;
        headers.append(name, value);
    }
    if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    Ok(Req {
        method,
        url,
        headers,
        body,
    })
}

impl Req {
    fn builder(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        let b = http
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        match &self.body {
            Some(body) => b.body(body.clone()),
            None => b,
        }
    }
}

/// Runs `pay402 fetch`; the result is the process exit code.
pub async fn run(args: FetchArgs) -> u8 {
    match fetch(&args).await {
        Ok(code) => code,
        Err(Fail(code, message)) => {
            if args.json {
                println!("{}", serde_json::json!({ "error": message, "exit": code }));
            }
            eprintln!("pay402 fetch: {message}");
            code
        }
    }
}

async fn fetch(args: &FetchArgs) -> Result<u8, Fail> {
    let (config, dir) = load_config(args)?;
    let req = request(args)?;
    let max_text = args
        .max
        .clone()
        .or(config.max.clone())
        .unwrap_or_else(|| "1000sat".into());
    let max = parse_max(&max_text).map_err(usage)?;
    let mut rates = FixedRates::new();
    if let Some(c) = config.usd_cents_per_btc {
        rates = rates.usd_cents_per_btc(c);
    }
    let allowed = |r: RailArg| args.rails.is_empty() || args.rails.contains(&r);
    let mut b = Payer::builder();
    let mut mpp = None;
    // One Lightning node pays L402 and MPP `lightning`/`charge`.
    let node = if allowed(RailArg::L402) || allowed(RailArg::Mpp) {
        lightning(config.lightning)?
    } else {
        None
    };
    if let Some((node, network)) = node {
        // The Lightning clients' own cap follows `--max` (their default is
        // 1000 sat); a cap in cents is enforced by the payer alone.
        let cap = match &max {
            Amount::Msat(m) => *m,
            Amount::Sat(s) => s.to_msat().unwrap_or(Msat(u64::MAX)),
            _ => Msat(u64::MAX),
        };
        let client = || {
            pay402_client::L402Client::builder(node.clone())
                .network(network)
                .max_price(cap)
        };
        if allowed(RailArg::L402) {
            b = b.l402(client());
        }
        if allowed(RailArg::Mpp) {
            mpp = Some(pay402_client::mpp::MppClient::builder().lightning_client(client()));
        }
    }
    // BitRequests prices are in sat: the client's own cap follows `--max`
    // in sat (rounded down), the payer's alone otherwise.
    let sat_cap = match &max {
        Amount::Msat(m) => Sat(m.0 / 1000),
        Amount::Sat(s) => *s,
        _ => Sat(u64::MAX),
    };
    let bitreq_setup = if allowed(RailArg::Bitreq) {
        bitreq_wallet(config.bitrequests)?
    } else {
        None
    };
    let mut channels = None;
    if let Some(setup) = &bitreq_setup {
        let (with, slot) = bitreq(b, setup, sat_cap);
        b = with;
        channels = slot;
        b = b.choose(setup.choice());
    }
    let (mut b, rates, evm) = x402(
        b,
        rates,
        config.x402,
        allowed(RailArg::X402),
        allowed(RailArg::Mpp),
    )?;
    // The EVM key pays MPP `evm`/`charge` in the tokens with a known domain.
    if let Some((signer, tokens)) = evm {
        for token in tokens {
            mpp = Some(
                mpp.unwrap_or_else(pay402_client::mpp::MppClient::builder)
                    .evm(signer.clone(), token),
            );
        }
    }
    if let Some(m) = mpp {
        b = b.mpp(m);
    }
    let mut b = b
        .rates(rates)
        .reference_unit(max.unit())
        .max_price(max.clone());
    if args.quote {
        return quote(args, &req, b).await;
    }
    if let Some(setup) = bitreq_setup.as_ref().filter(|s| s.uses_chain()) {
        // The wallet's coins are found on the chain at every run. Without
        // them only on-chain and channel payments fail: other rails go on.
        if let Err(e) = setup.wallet.sync().await {
            let message = format!("bitrequests wallet sync: {e}");
            if args.rails == [RailArg::Bitreq] {
                return Err(Fail(exit::ERROR, message));
            }
            if !args.silent {
                eprintln!("pay402 fetch: {message} (on-chain and channel payments will fail)");
            }
        }
    }
    const DAY: Duration = Duration::from_secs(24 * 3600);
    if let Some(text) = &config.max_per_origin_per_day {
        b = b.per_origin(parse_max(text).map_err(usage)?, DAY);
    }
    if let Some(text) = &config.max_per_day {
        b = b.total(parse_max(text).map_err(usage)?, DAY);
    }
    let journal = open_journal(args.journal.as_deref(), &dir).await?;
    let payer = b
        .journal(journal)
        .build()
        .await
        .map_err(|e| Fail(exit::USAGE, e.to_string()))?;
    let _span = tracing::info_span!("fetch", url = %req.url).entered();
    let result = match payer.send(req.builder(payer.http())).await {
        Ok(paid) => finish(args, paid).await,
        Err(e) => Err(refused(args.silent, &e)),
    };
    if let Some(slot) = channels {
        close_channels(args.silent, &slot).await;
    }
    result
}

/// Closes the payment channels this run opened (they are not kept across
/// runs): the server signs and broadcasts the last payment, the rest of
/// the deposit comes back to the wallet. A channel that cannot be closed
/// prints its signed refund, valid after the channel's expiry.
async fn close_channels(silent: bool, slot: &pay402_client::bitreq::ChannelSlot) {
    let Some(client) = slot.get() else { return };
    for ch in client.channels().await {
        if ch.spend_txid.is_some() || ch.state == pay402_client::bitreq::ClientState::Closed {
            continue;
        }
        let outcome = if ch.paid.0 > 0 {
            client.close(ch.server.as_str()).await
        } else {
            Ok(None)
        };
        match outcome {
            Ok(Some(txid)) => {
                if !silent {
                    eprintln!(
                        "closed payment channel {} (paid {} sat in all; close transaction {txid})",
                        ch.deposit_txid, ch.paid.0
                    );
                }
            }
            other => {
                // Always printed: without it the deposit waits for the server.
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) if ch.paid.0 == 0 => "nothing was paid into it".to_owned(),
                    Ok(_) => "the last payment is unsettled".to_owned(),
                };
                eprintln!(
                    "pay402 fetch: payment channel {} left open ({why}); its refund, valid after {}: {}",
                    ch.deposit_txid,
                    ch.expiry,
                    pay402_server::bitreq::bitcoin::consensus::encode::serialize_hex(&ch.refund_tx)
                );
            }
        }
    }
}

/// The exit code and message of a payer error.
fn refused(silent: bool, e: &PayerError) -> Fail {
    if !silent {
        for r in e.refusals() {
            eprintln!(
                "  refused {}: {} ({})",
                r.offer,
                r.reason,
                r.reason.reason()
            );
        }
    }
    let code = match e {
        PayerError::NothingPayable { refused } => {
            let over = refused.iter().any(|r| {
                matches!(
                    r.reason,
                    RefusalReason::OverMaxPrice { .. }
                        | RefusalReason::OverOriginBudget { .. }
                        | RefusalReason::OverTotalBudget { .. }
                ) || matches!(
                    r.reason,
                    RefusalReason::Rail {
                        reason: "price_exceeds_maximum" | "price_above_max",
                        ..
                    }
                )
            });
            if over {
                exit::OVER_BUDGET
            } else {
                exit::NO_RAIL
            }
        }
        PayerError::NoOffer { .. } | PayerError::CrossOriginChallenge { .. } => exit::NO_RAIL,
        // The rail paid and the server then failed (L402: the token is
        // kept, a rerun presents it without paying again).
        e if e.reason() == "server_error_after_payment" => exit::SERVER_ERROR_AFTER_PAYING,
        e if e.may_have_paid() => exit::PAYMENT_FAILED,
        PayerError::Http(_) | PayerError::Journal { .. } | PayerError::BodyNotCloneable => {
            exit::ERROR
        }
        _ => exit::PAYMENT_FAILED,
    };
    let mut message = format!("{e} ({})", e.reason());
    if e.may_have_paid() {
        message.push_str(
            "; you may have paid: run the same fetch again to resume, it never pays twice",
        );
    }
    Fail(code, message)
}

/// Writes the response and the receipt.
async fn finish(args: &FetchArgs, paid: PayerPaid) -> Result<u8, Fail> {
    use std::io::Write;
    let status = paid.status();
    let paid_now = paid.receipt.is_some() || paid.reused_credential;
    let head = {
        let r = &paid.response;
        let mut s = format!("{:?} {}\r\n", r.version(), r.status());
        for (name, value) in r.headers() {
            s.push_str(&format!(
                "{name}: {}\r\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        s.push_str("\r\n");
        s
    };
    let receipt = receipt_json(&paid);
    if !args.silent && !args.json {
        match &paid.receipt {
            Some(r) => eprintln!(
                "paid {} with {} [{}], proof {}{}",
                r.amount,
                r.rail,
                r.offer,
                r.proof_id,
                if r.resumed { " (resumed)" } else { "" }
            ),
            None if paid.reused_credential => eprintln!("paid earlier: token reused"),
            None => {}
        }
    }
    // The body is streamed to its destination, never held whole.
    let read_fail = |e: reqwest::Error| {
        let code = if paid_now {
            exit::SERVER_ERROR_AFTER_PAYING
        } else {
            exit::ERROR
        };
        Fail(code, format!("reading the body: {e}"))
    };
    let io = |e: std::io::Error| Fail(exit::ERROR, e.to_string());
    let mut sink: Box<dyn Write> = match (&args.output, args.json) {
        (Some(path), _) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Fail(exit::ERROR, format!("{}: {e}", path.display())))?,
        )),
        (None, true) => Box::new(std::io::sink()),
        (None, false) => Box::new(std::io::stdout().lock()),
    };
    if args.include {
        sink.write_all(head.as_bytes()).map_err(io)?;
    }
    let mut response = paid.response;
    let bar = progress_bar(args, response.content_length());
    let mut body_bytes: u64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(read_fail)? {
        sink.write_all(&chunk).map_err(io)?;
        body_bytes = body_bytes.saturating_add(chunk.len() as u64);
        if let Some(bar) = &bar {
            bar.set_position(body_bytes);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    sink.flush().map_err(io)?;
    drop(sink);
    if args.json {
        let mut v = receipt;
        v["status"] = status.as_u16().into();
        v["body_bytes"] = body_bytes.into();
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{v}").map_err(io)?;
        stdout.flush().map_err(io)?;
    }
    if paid.receipt.as_ref().is_some_and(|r| r.pending) {
        // Paid, not served yet (on-chain, waiting for confirmations): the
        // journal entry stays open with the transaction.
        if !args.silent {
            eprintln!(
                "pay402 fetch: the server answered {status}: the payment stands but is not served yet (awaiting confirmations); run the same fetch again: it presents the same payment and never pays twice"
            );
        }
        return Ok(exit::PAYMENT_FAILED);
    }
    if paid_now && !(status.is_success() || status.is_redirection()) {
        if !args.silent {
            eprintln!("pay402 fetch: the server answered {status} after the payment");
        }
        return Ok(exit::SERVER_ERROR_AFTER_PAYING);
    }
    Ok(exit::OK)
}

/// Bodies of at least this many bytes (or of unknown length) get a
/// progress bar.
const PROGRESS_FROM_BYTES: u64 = 1024 * 1024;

/// A progress bar on standard error, when it is a terminal, the body does
/// not go to the terminal, `-s` is not given and the body is large (or of
/// unknown length).
fn progress_bar(args: &FetchArgs, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let body_to_terminal = args.output.is_none() && !args.json && std::io::stdout().is_terminal();
    if args.silent || body_to_terminal || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(n) if n < PROGRESS_FROM_BYTES => return None,
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if total.is_some() {
        "{bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} {eta}"
    } else {
        "{spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

/// The receipt as JSON: rail, amount, proof id, origin, time.
fn receipt_json(paid: &PayerPaid) -> serde_json::Value {
    match &paid.receipt {
        Some(r) => serde_json::json!({
            "paid": true,
            "reused_token": false,
            "rail": r.rail.to_string(),
            "offer": r.offer,
            "amount": r.amount.to_string(),
            "amount_value": r.amount.value().to_string(),
            "unit": r.amount.unit().to_string(),
            "cost": r.cost.as_ref().map(ToString::to_string),
            "proof_id": r.proof_id,
            "origin": r.origin,
            "url": r.url.as_str(),
            "entry": r.entry,
            "settlement": r.settlement,
            "resumed": r.resumed,
            "pending": r.pending,
            "time": r.paid_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }),
        None => serde_json::json!({
            "paid": false,
            "reused_token": paid.reused_credential,
            "url": paid.response.url().as_str(),
            "origin": paid.response.url().origin().ascii_serialization(),
            "time": std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }),
    }
}
