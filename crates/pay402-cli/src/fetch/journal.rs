//! `pay402 receipts` and `pay402 tokens`: the fetch journal, listed.

use super::*;

/// Opens the journal: `path`, else `journal.sqlite` in `dir`.
pub(super) async fn open_journal(path: Option<&Path>, dir: &Path) -> Result<Journal, Fail> {
    let path = path.map_or_else(|| dir.join("journal.sqlite"), Path::to_path_buf);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Fail(exit::ERROR, format!("{}: {e}", parent.display())))?;
    }
    Journal::sqlite(&path)
        .await
        .map_err(|e| Fail(exit::ERROR, format!("journal {}: {e}", path.display())))
}

/// The options `pay402 receipts` and `pay402 tokens` share.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(flatten)] j: pay402_cli::fetch::JournalArgs }
/// assert!(Cli::parse_from(["x", "--json"]).j.json);
/// ```
#[derive(clap::Args, Debug)]
pub struct JournalArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The fetch configuration (its directory holds the default journal).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The journal file.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

impl JournalArgs {
    async fn open(&self) -> Result<Journal, Fail> {
        let (_, dir) = load_config_file(self.config.as_deref())?;
        open_journal(self.journal.as_deref(), &dir).await
    }
}

/// Prints a journal command's failure; the exit code.
fn report(command: &str, result: Result<(), Fail>) -> u8 {
    match result {
        Ok(()) => exit::OK,
        Err(Fail(code, message)) => {
            eprintln!("pay402 {command}: {message}");
            code
        }
    }
}

/// The options of `pay402 receipts`.
#[derive(clap::Args, Debug)]
pub struct ReceiptsArgs {
    /// Only the payments to this origin (`https://host[:port]`).
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
    /// At most this many, newest first.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Where the journal is, and the output format.
    #[command(flatten)]
    pub common: JournalArgs,
}

/// Runs `pay402 receipts`: lists the journal's payments (the proof itself
/// is never printed); the result is the exit code.
pub async fn receipts(args: ReceiptsArgs) -> u8 {
    report("receipts", list_receipts(&args).await)
}

async fn list_receipts(args: &ReceiptsArgs) -> Result<(), Fail> {
    let journal = args.common.open().await?;
    let mut query = pay402_client::journal::Query::default().limit(args.limit);
    if let Some(o) = &args.origin {
        query = query.origin(o);
    }
    let list = journal
        .payments(&query)
        .await
        .map_err(|e| Fail(exit::ERROR, e.to_string()))?;
    for p in list {
        if args.common.json {
            let v = serde_json::json!({
                "entry": p.id,
                "state": p.state.to_string(),
                "rail": p.rail.to_string(),
                "offer": p.offer,
                "amount": p.amount,
                "cost": p.cost,
                "counted": p.counted,
                "proof_id": p.proof_id,
                "origin": p.key.origin,
                "method": p.key.method,
                "target": p.key.target,
                "status": p.status,
                "detail": p.detail,
                "time": p.created_ms / 1000,
            });
            println!("{v}");
        } else {
            println!(
                "{} {:<9} {:<5} {} {}{} {} proof {}",
                p.id,
                p.state,
                p.rail,
                p.key.method,
                p.key.origin,
                p.key.target,
                p.amount,
                p.proof_id.as_deref().unwrap_or("-"),
            );
        }
    }
    Ok(())
}

/// The options of `pay402 tokens`.
#[derive(clap::Args, Debug)]
pub struct TokensArgs {
    /// `rm ORIGIN`: forget the tokens kept for ORIGIN (the next fetch
    /// there pays again).
    #[arg(value_name = "rm ORIGIN", num_args = 0..=2)]
    pub command: Vec<String>,
    /// Where the journal is, and the output format.
    #[command(flatten)]
    pub common: JournalArgs,
}

/// Runs `pay402 tokens` (list the paid tokens kept in the journal, never
/// their secret) or `pay402 tokens rm ORIGIN`; the result is the exit code.
pub async fn tokens(args: TokensArgs) -> u8 {
    report("tokens", tokens_command(&args).await)
}

/// The origins with payments in the journal (at most the list bound).
async fn paid_origins(journal: &Journal) -> Result<Vec<String>, Fail> {
    let list = journal
        .payments(&pay402_client::journal::Query::default().limit(usize::MAX))
        .await
        .map_err(|e| Fail(exit::ERROR, e.to_string()))?;
    let mut origins: Vec<String> = list.into_iter().map(|p| p.key.origin).collect();
    origins.sort();
    origins.dedup();
    Ok(origins)
}

async fn tokens_command(args: &TokensArgs) -> Result<(), Fail> {
    let remove = match args.command.as_slice() {
        [] => None,
        [rm, origin] if rm == "rm" => Some(origin.trim_end_matches('/').to_owned()),
        _ => return Err(usage("usage: pay402 tokens [rm ORIGIN]")),
    };
    let journal = args.common.open().await?;
    let store = journal.store();
    let origins = match &remove {
        Some(o) => vec![o.clone()],
        None => paid_origins(&journal).await?,
    };
    let fail = |e: pay402_client::journal::JournalError| Fail(exit::ERROR, e.to_string());
    let mut removed = 0usize;
    for origin in origins {
        // `pay402 fetch` keeps tokens per origin (the payer's default scope,
        // whose scope string is the origin).
        for t in store.tokens(&origin, &origin).await.map_err(fail)? {
            if remove.is_some() {
                store
                    .remove_token(&t.origin, &t.scope, t.rail, &t.credential)
                    .await
                    .map_err(fail)?;
                removed += 1;
            } else if args.common.json {
                let v = serde_json::json!({
                    "origin": t.origin,
                    "rail": t.rail.to_string(),
                    "entry": t.entry_id,
                    "created": t.created_ms / 1000,
                    "expires": t.expires_ms.map(|ms| ms / 1000),
                });
                println!("{v}");
            } else {
                println!(
                    "{} {} paid by {} expires {}",
                    t.origin,
                    t.rail,
                    t.entry_id,
                    t.expires_ms
                        .map_or("-".to_owned(), |ms| format!("{}", ms / 1000)),
                );
            }
        }
    }
    if remove.is_some() {
        println!("removed {removed} token(s)");
    }
    Ok(())
}
