//! Small helpers shared by the pay402 examples: reading settings from the
//! environment and printing steps readably.

use std::time::Duration;

/// Reads an environment variable, or `default` when unset or empty.
///
/// ```
/// assert_eq!(pay402_examples::env_or("PAY402_SURELY_UNSET_VAR", "x"), "x");
/// ```
pub fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_owned(),
    }
}

/// Shortens a long header value for display: `head…(N chars)`.
///
/// ```
/// assert_eq!(pay402_examples::abbreviate("abcdefghij", 4), "abcd…(10 chars)");
/// assert_eq!(pay402_examples::abbreviate("abc", 4), "abc");
/// ```
pub fn abbreviate(s: &str, keep: usize) -> String {
    if s.chars().count() <= keep {
        return s.to_owned();
    }
    let head: String = s.chars().take(keep).collect();
    format!("{head}…({} chars)", s.chars().count())
}

/// Abbreviates the quoted values inside a `WWW-Authenticate` challenge.
///
/// ```
/// let c = "L402 macaroon=\"AAAAAAAAAAAAAAAAAAAAAAAA\", invoice=\"lnbcrt1xxxxxxxxxxxxxxxxxx\"";
/// assert_eq!(
///     pay402_examples::abbreviate_challenge(c, 6),
///     "L402 macaroon=\"AAAAAA…(24 chars)\", invoice=\"lnbcrt…(25 chars)\""
/// );
/// ```
pub fn abbreviate_challenge(challenge: &str, keep: usize) -> String {
    let mut out = String::with_capacity(challenge.len());
    let mut rest = challenge;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..=start]);
        rest = &rest[start + 1..];
        match rest.find('"') {
            Some(end) => {
                out.push_str(&abbreviate(&rest[..end], keep));
                out.push('"');
                rest = &rest[end + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Formats a duration in milliseconds with one decimal.
///
/// ```
/// assert_eq!(pay402_examples::ms(std::time::Duration::from_micros(1500)), "1.5 ms");
/// ```
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Formats millisatoshis as satoshis, keeping any fraction exact.
///
/// ```
/// use pay402_core::money::Msat;
/// assert_eq!(pay402_examples::sats(Msat(100_000)), "100 sat");
/// assert_eq!(pay402_examples::sats(Msat(1_500)), "1.500 sat");
/// ```
pub fn sats(m: pay402_core::money::Msat) -> String {
    if m.0 % 1000 == 0 {
        format!("{} sat", m.0 / 1000)
    } else {
        format!("{}.{:03} sat", m.0 / 1000, m.0 % 1000)
    }
}

/// Installs a tracing subscriber driven by `RUST_LOG` (quiet by default).
///
/// ```
/// pay402_examples::init_tracing();
/// ```
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
