//! The `pay402` binary (see the crate docs and docs/cli.md).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pay402_cli::config::{Config, LogFormat};

/// pay402: charge for HTTP APIs with L402 (Lightning) and x402 (stablecoins).
#[derive(Parser, Debug)]
#[command(name = "pay402", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a reverse proxy that answers unpaid requests with 402 and
    /// forwards paid ones to the service's upstream.
    ///
    /// Services are matched by host and path regexes in the order of the
    /// config file. Secrets (macaroons, keys, upstream credentials) are read
    /// from files or environment variables named in the config, never from
    /// the command line. SIGTERM or Ctrl-C stops accepting connections and
    /// lets in-flight requests finish (`server.shutdown_grace_secs`).
    Proxy {
        /// The configuration file (TOML; see `pay402 init`).
        #[arg(short, long, value_name = "FILE", default_value = "pay402.toml")]
        config: PathBuf,
        /// Read Aperture's YAML configuration instead of a pay402.toml: it
        /// is converted as `pay402 config from-aperture` does (every key
        /// changed, refused or ignored is listed on standard error) and run
        /// as converted.
        #[arg(long, value_name = "APERTURE_YAML", conflicts_with = "config")]
        aperture: Option<PathBuf>,
        /// With `--aperture`: lnd's REST URL (pay402 speaks lnd's REST API,
        /// Aperture its gRPC one); default `https://<lndhost's host>:8080`.
        #[arg(long, value_name = "URL", requires = "aperture")]
        lnd_rest: Option<String>,
        /// Validate the configuration, print the resolved services and exit
        /// (0 when valid, 2 when not). Reads no secrets, opens no sockets.
        #[arg(long)]
        check: bool,
    },
    /// Run pay402's x402 facilitator (`/verify`, `/settle`, `/supported`)
    /// for other x402 servers.
    ///
    /// It settles EIP-3009 transfers of the allowlisted tokens on one chain
    /// from the configured key (which pays the gas), answers only requests
    /// with one of the bearer API keys, and enforces the gas and fee caps,
    /// the gas budget and per-client and per-payer rate limits. The RPC URL,
    /// the key and the API keys come from files or environment variables.
    Facilitator {
        /// The configuration file (see docs/cli.md).
        #[arg(
            short,
            long,
            value_name = "FILE",
            default_value = "facilitator.toml",
            global = true
        )]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<FacilitatorAction>,
    },
    /// Fetch a URL like curl, paying its 402 (L402, x402) within `--max`.
    ///
    /// The means of payment come from ~/.config/pay402/config.toml (or
    /// `--config`) and the environment: a Lightning node with an LND REST
    /// API for L402, an EVM key file for x402. Every payment is recorded in
    /// a SQLite journal beside the config (`--journal`), so a second fetch
    /// of the same URL reuses the paid L402 token and a crash never pays
    /// twice. Exit codes: 0 response received, 1 other error, 2 usage or
    /// configuration, 3 over budget, 4 no rail this configuration can pay,
    /// 5 payment failed, 6 server error after paying.
    Fetch(pay402_cli::fetch::FetchArgs),
    /// List the payments `pay402 fetch` recorded in its journal, newest
    /// first: entry, state, rail, request, amount and proof id (never the
    /// proof itself).
    Receipts(pay402_cli::fetch::ReceiptsArgs),
    /// List the paid tokens `pay402 fetch` keeps in its journal (origin,
    /// rail, the payment, expiry; never the token itself), or forget
    /// them: `pay402 tokens rm ORIGIN`.
    Tokens(pay402_cli::fetch::TokensArgs),
    /// Try pay402 in one command: a paid example API behind `pay402 proxy`
    /// with every rail on embedded peers, and a funded dev wallet.
    ///
    /// Starts an example upstream and the proxy in front of it (L402 on an
    /// embedded simnet Lightning network, x402 with Circle's USDC on a
    /// local anvil chain, BitRequests on the merchant's ledger), funds a
    /// dev wallet on each rail, writes a `pay402 fetch` configuration
    /// holding it, and prints the proxy's URL and one `pay402 fetch`
    /// command per rail. anvil and the USDC contracts are installed from
    /// the npm registry on first use (`--peers`). Runs until Ctrl-C or
    /// SIGTERM, then stops anvil. Nothing here is money.
    Dev(pay402_cli::dev::DevArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write a commented example configuration.
    Init {
        /// Where to write it ("-" for standard output).
        #[arg(short, long, value_name = "FILE", default_value = "pay402.toml")]
        output: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FacilitatorAction {
    /// Finish or report the settlements a crash left unfinished in the
    /// facilitator's store (claims whose lease ran out), from the chain:
    /// prints a JSON report; exit 0 when all are settled, failed or
    /// released, 1 when some stay pending or unresolved.
    Reconcile,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Convert an Aperture configuration (YAML) into a pay402.toml.
    ///
    /// Services, their regexes, upstreams, prices, capabilities,
    /// constraints, token lifetimes and plain whitelist paths carry over;
    /// every key that is changed, refused or ignored is listed on standard
    /// error and as a comment in the output. Check the result with
    /// `pay402 proxy --check` before use.
    FromAperture {
        /// Aperture's YAML configuration.
        #[arg(value_name = "APERTURE_YAML")]
        input: PathBuf,
        /// Where to write the TOML ("-", the default, for standard output).
        #[arg(short, long, value_name = "FILE", default_value = "-")]
        output: PathBuf,
        /// lnd's REST URL (pay402 speaks lnd's REST API, Aperture its gRPC
        /// one); default `https://<lndhost's host>:8080`.
        #[arg(long, value_name = "URL")]
        lnd_rest: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Init { output, force } => init(&output, force),
        Command::Proxy {
            config,
            aperture,
            lnd_rest,
            check,
        } => {
            let opts = pay402_cli::aperture::Options {
                lnd_rest_url: lnd_rest,
            };
            proxy(&config, aperture.as_deref().map(|a| (a, &opts)), check)
        }
        Command::Config {
            command:
                ConfigCommand::FromAperture {
                    input,
                    output,
                    lnd_rest,
                },
        } => {
            let opts = pay402_cli::aperture::Options {
                lnd_rest_url: lnd_rest,
            };
            from_aperture(&input, &output, &opts)
        }
        Command::Facilitator {
            config,
            action: None,
        } => facilitator(&config),
        Command::Facilitator {
            config,
            action: Some(FacilitatorAction::Reconcile),
        } => facilitator_reconcile(&config),
        Command::Fetch(args) => {
            // `-s`: no log lines either (RUST_LOG still wins).
            let logs = if args.silent { "off" } else { "warn" };
            client(logs, pay402_cli::fetch::run(args))
        }
        Command::Dev(args) => dev(args),
        Command::Receipts(args) => client("warn", pay402_cli::fetch::receipts(args)),
        Command::Tokens(args) => client("warn", pay402_cli::fetch::tokens(args)),
    }
}

/// Runs a client command (`fetch`, `receipts`) to its exit code.
fn client(logs: &str, fut: impl std::future::Future<Output = u8>) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(logs));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => ExitCode::from(rt.block_on(fut)),
        Err(e) => {
            eprintln!("error: runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn facilitator(path: &std::path::Path) -> ExitCode {
    let file = match pay402_cli::facilitator::FacilitatorFile::load(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(LogFormat::Json);
    let metrics = match pay402_cli::facilitator_metrics::install() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: metrics: {e}");
            return ExitCode::FAILURE;
        }
    };
    block_on(pay402_cli::facilitator::serve(file, metrics))
}

fn facilitator_reconcile(path: &std::path::Path) -> ExitCode {
    let file = match pay402_cli::facilitator::FacilitatorFile::load(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    client("info", async move {
        match pay402_cli::facilitator::reconcile(&file).await {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        }
    })
}

/// Reads and converts an Aperture configuration, its notes on standard
/// error; `None` (said on standard error) when it cannot.
fn read_aperture(
    input: &std::path::Path,
    opts: &pay402_cli::aperture::Options,
) -> Option<pay402_cli::aperture::Converted> {
    let converted = std::fs::read_to_string(input)
        .map_err(|e| e.to_string())
        .and_then(|yaml| {
            pay402_cli::aperture::convert_with(&yaml, opts).map_err(|e| {
                for note in e.notes() {
                    eprintln!("note: {note}");
                }
                e.to_string()
            })
        });
    match converted {
        Ok(c) => {
            for note in &c.notes {
                eprintln!("note: {note}");
            }
            Some(c)
        }
        Err(e) => {
            eprintln!("error: {}: {e}", input.display());
            None
        }
    }
}

fn from_aperture(
    input: &std::path::Path,
    output: &std::path::Path,
    opts: &pay402_cli::aperture::Options,
) -> ExitCode {
    let Some(converted) = read_aperture(input, opts) else {
        return ExitCode::from(2);
    };
    if output.as_os_str() == "-" {
        print!("{}", converted.toml);
        return ExitCode::SUCCESS;
    }
    match std::fs::write(output, &converted.toml) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}: {e}", output.display());
            ExitCode::FAILURE
        }
    }
}

fn init(output: &std::path::Path, force: bool) -> ExitCode {
    if output.as_os_str() == "-" {
        print!("{}", pay402_cli::init::EXAMPLE);
        return ExitCode::SUCCESS;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let result = opts
        .open(output)
        .and_then(|mut f| std::io::Write::write_all(&mut f, pay402_cli::init::EXAMPLE.as_bytes()));
    match result {
        Ok(()) => {
            println!(
                "wrote {}; check it with: pay402 proxy --config {} --check",
                output.display(),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("{} exists; use --force to overwrite it", output.display());
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{}: {e}", output.display());
            ExitCode::FAILURE
        }
    }
}

fn proxy(
    path: &std::path::Path,
    aperture: Option<(&std::path::Path, &pay402_cli::aperture::Options)>,
    check: bool,
) -> ExitCode {
    let loaded = match aperture {
        None => Config::load(path),
        Some((input, opts)) => {
            let Some(converted) = read_aperture(input, opts) else {
                return ExitCode::from(2);
            };
            // Errors then point into the converted text.
            let name = format!("{} (converted)", input.display());
            Config::parse(name, &converted.toml)
        }
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if check {
        print!("{}", pay402_cli::check::describe(&config));
        return ExitCode::SUCCESS;
    }
    init_logs(config.server.log_format);
    let Some(metrics) = install_metrics() else {
        return ExitCode::FAILURE;
    };
    block_on(pay402_cli::run::serve(config, metrics))
}

/// The process-wide metrics recorder (an error is printed).
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    pay402_cli::metrics::install()
        .map_err(|e| eprintln!("error: metrics: {e}"))
        .ok()
}

fn dev(args: pay402_cli::dev::DevArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let Some(metrics) = install_metrics() else {
        return ExitCode::FAILURE;
    };
    block_on(pay402_cli::dev::run(args, metrics))
}

/// Runs `fut` on a multi-threaded runtime; the exit code says how it ended.
fn block_on(
    fut: impl std::future::Future<Output = Result<(), pay402_cli::run::StartError>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
